//! portmap leaves nothing behind: a failed ADD (refused before the first change, or undone
//! after a late failure) and a DEL of many mappings on a node whose other family has no table
//! (one bounded transaction instead of one `nft` run per mapping). Needs the built binaries
//! (`cargo build --bins`).

use std::path::{Path, PathBuf};

use netns_tests::{bins, exec_plugin, Netns, TestEnv};
use serde_json::{json, Value};

const NETWORK: &str = "k8s-pod-network";
const POD_IP: &str = "10.244.1.5";

fn sh(ns: &Netns, script: &str) -> String {
    let out = ns.output("sh", &["-c", script]).expect("run sh");
    assert!(
        out.success(),
        "script failed: {script}\nstdout: {}\nstderr: {}",
        out.stdout_str(),
        out.stderr_str()
    );
    out.stdout_str()
}

fn sh_lenient(ns: &Netns, script: &str) -> String {
    ns.output("sh", &["-c", script])
        .expect("run sh")
        .stdout_str()
}

/// prevResult of a Calico-like pod whose host interface is `host_if`.
fn prev_result(host_if: &str, sandbox: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": host_if}, {"name": "eth0", "sandbox": sandbox}],
        "ips": [{"address": format!("{POD_IP}/32"), "interface": 1}]
    })
}

fn conf(backend: &str, mappings: &Value, prev: Option<Value>) -> Value {
    let mut c = json!({
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "type": "portmap",
        "backend": backend,
        "snat": true,
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": mappings}
    });
    if let Some(p) = prev {
        c["prevResult"] = p;
    }
    c
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs our portmap in `host` (DEL without netns, like a runtime whose sandbox is gone).
fn portmap(
    host: &Netns,
    command: &str,
    id: &str,
    netns: &Path,
    conf: &Value,
    extra: &[(&str, &str)],
) -> Run {
    let bin: PathBuf = bins::binary("portmap").expect("portmap binary (cargo build --bins)");
    let netns = if command == "DEL" {
        String::new()
    } else {
        netns.display().to_string()
    };
    let mut env = vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    env.extend_from_slice(extra);
    let out = exec_plugin(host, &bin, &env, &serde_json::to_vec(conf).unwrap()).expect("exec");
    Run {
        ok: out.success(),
        stdout: out.stdout_str(),
        stderr: out.stderr_str(),
    }
}

/// Every line of the host's netfilter state that mentions the pod or a per-pod object.
fn pod_state(host: &Netns) -> String {
    let text = sh_lenient(
        host,
        "iptables-save -t nat; ip6tables-save -t nat; nft list ruleset",
    );
    text.lines()
        .filter(|l| l.contains(POD_IP) || l.contains("CNI-DN-") || l.contains("elements ="))
        .collect::<Vec<_>>()
        .join("\n")
}

fn mappings(n: u16) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"hostPort": 20000 + i, "containerPort": 80, "protocol": "tcp"}))
            .collect(),
    )
}

/// A host interface named in prevResult that does not exist (and no route to the pod): the
/// `route_localnet` step would fail after the rules were in place. ADD is refused up front
/// (code 7 naming the field) and nothing is installed, in either backend.
#[test]
fn add_with_a_missing_host_interface_changes_nothing() {
    for backend in ["iptables", "nftables"] {
        let env = TestEnv::new(&format!("pm-missing-if-{backend}")).expect("env");
        let ctr = env.container("pm-ctr").expect("ctr");
        let maps = mappings(2);
        let c = conf(backend, &maps, Some(prev_result("nosuch0", ctr.path())));
        let r = portmap(&env.host, "ADD", "ctr-missing", ctr.path(), &c, &[]);
        assert!(!r.ok, "{backend}: ADD must fail: {}", r.stdout);
        let err: Value = serde_json::from_str(&r.stdout).expect("CNI error JSON");
        assert_eq!(err["code"], 7, "{backend}: {err}");
        let msg = err["msg"].as_str().unwrap_or_default();
        assert!(
            msg.contains("prevResult.interfaces") && msg.contains("nosuch0"),
            "{backend}: {msg}"
        );
        assert_eq!(pod_state(&env.host), "", "{backend}: state left behind");
        // Nothing of ours at all: not even the shared chains or the table.
        let all = sh_lenient(&env.host, "iptables-save -t nat; nft list ruleset");
        assert!(
            !all.contains("CNI-HOSTPORT") && !all.contains("cni_hostport"),
            "{backend}: {all}"
        );
        let d = portmap(
            &env.host,
            "DEL",
            "ctr-missing",
            ctr.path(),
            &conf(backend, &maps, None),
            &[],
        );
        assert!(
            d.ok,
            "{backend}: DEL after a failed ADD: {} {}",
            d.stdout, d.stderr
        );
    }
}

/// A late failure after the first change: the IPv4 rules are in place when the IPv6 family
/// fails (its iptables tools are replaced by failing stand-ins). The ADD fails and the IPv4
/// rules are removed again.
#[test]
fn iptables_failure_in_the_second_family_removes_the_first() {
    let env = TestEnv::new("pm-v6-fails").expect("env");
    let ctr = env.container("pm-ctr6").expect("ctr");
    sh(
        &env.host,
        "ip link add calipm0 type veth peer name calipm0p && ip link set calipm0 up",
    );
    let fake = env.tmp().join("fakebin");
    std::fs::create_dir_all(&fake).unwrap();
    for tool in ["ip6tables", "ip6tables-restore", "ip6tables-save"] {
        let p = fake.join(tool);
        std::fs::write(&p, "#!/bin/sh\necho \"$0: induced failure\" >&2\nexit 1\n").unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        fake.display()
    );
    let maps = mappings(2);
    let mut prev = prev_result("calipm0", ctr.path());
    prev["ips"]
        .as_array_mut()
        .unwrap()
        .push(json!({"address": "fd00:1::5/128", "interface": 1}));
    let c = conf("iptables", &maps, Some(prev));
    let r = portmap(
        &env.host,
        "ADD",
        "ctr-v6",
        ctr.path(),
        &c,
        &[("PATH", &path)],
    );
    assert!(!r.ok, "ADD must fail: {}", r.stdout);
    assert!(r.stdout.contains("induced failure"), "{}", r.stdout);
    assert_eq!(
        pod_state(&env.host),
        "",
        "IPv4 rules of the failed ADD left behind"
    );
}

/// 1,000 mappings on a node that never mapped an IPv6 pod: DEL removes everything. (It used
/// to attribute the missing ip6 table's errors ten at a time and then run `nft` once per
/// mapping: over a minute here, and the DNAT stayed live when the runtime gave up.)
#[test]
fn nftables_del_of_1000_mappings_without_an_ip6_table() {
    let env = TestEnv::new("pm-nft-1000").expect("env");
    let ctr = env.container("pm-ctr1k").expect("ctr");
    sh(
        &env.host,
        "ip link add calipm1 type veth peer name calipm1p && ip link set calipm1 up",
    );
    let maps = mappings(1000);
    let c = conf("nftables", &maps, Some(prev_result("calipm1", ctr.path())));
    let r = portmap(&env.host, "ADD", "ctr-1k", ctr.path(), &c, &[]);
    assert!(r.ok, "ADD: {} {}", r.stdout, r.stderr);
    let ruleset = sh(&env.host, "nft list ruleset");
    assert!(!ruleset.contains("table ip6 "), "{ruleset}");
    assert!(
        ruleset.contains("tcp . 20999 : 10.244.1.5 . 80"),
        "mappings not installed"
    );
    let d = portmap(
        &env.host,
        "DEL",
        "ctr-1k",
        ctr.path(),
        &conf("nftables", &maps, None),
        &[],
    );
    assert!(d.ok, "DEL: {} {}", d.stdout, d.stderr);
    let after = sh(&env.host, "nft list ruleset");
    assert!(!after.contains(POD_IP), "DNAT left after DEL:\n{after}");
    assert!(
        !after.contains("elements ="),
        "elements left after DEL:\n{after}"
    );
    assert!(
        !after.contains("table ip6 "),
        "DEL created an ip6 table:\n{after}"
    );
    // A second DEL (nothing left) succeeds too.
    let d = portmap(
        &env.host,
        "DEL",
        "ctr-1k",
        ctr.path(),
        &conf("nftables", &maps, None),
        &[],
    );
    assert!(d.ok, "second DEL: {} {}", d.stdout, d.stderr);
}
