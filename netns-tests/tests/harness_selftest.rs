//! Self-tests of the harness that need no plugin of ours: namespaces, veth, traffic, cleanup, and
//! the chain runner driven by small recording shell plugins.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use netns_tests::traffic::{
    http_get, http_server, ping, tcp_echo, tcp_echo_server, udp_echo, udp_echo_server,
};
use netns_tests::{exec_plugin, veth_pair, Attachment, ChainError, Netns, TestEnv};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(3);

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn host_namespace_has_lo_up_and_forwarding() {
    let env = TestEnv::new("selftest-host").unwrap();
    assert!(env.host.link_is_up("lo").unwrap());
    assert_eq!(env.host.sysctl("net.ipv4.ip_forward").unwrap(), "1");
    assert!(ping(&env.host, ip("127.0.0.1")).unwrap());
    // A fresh container namespace is what a runtime hands to plugins: lo exists but is down.
    let ctr = env.container("c").unwrap();
    assert!(!ctr.link_is_up("lo").unwrap());
    assert!(ctr.addrs("lo").unwrap().is_empty());
    // IPv4 settings of a new namespace come from the root namespace, as on a real node
    // (where forwarding is usually on): the harness must not hide that from the plugins.
    let root = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    assert_eq!(ctr.sysctl("net.ipv4.ip_forward").unwrap(), root.trim());
}

#[test]
fn run_enters_namespace_without_moving_the_caller() {
    let env = TestEnv::new("selftest-run").unwrap();
    let own = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
    let inside = env
        .host
        .run(|| std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino())
        .unwrap();
    let target = std::fs::metadata(env.host.path()).unwrap().ino();
    assert_eq!(inside, target);
    assert_ne!(inside, own);
    assert_eq!(
        std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino(),
        own
    );
}

#[test]
fn veth_traffic_across_namespaces_and_cleanup() {
    let env = TestEnv::new("selftest-traffic").unwrap();
    let c1 = env.container("c1").unwrap();
    let c2 = env.container("c2").unwrap();
    // c1 —(192.0.2.0/24)— host —(198.51.100.0/24)— c2, host routes between them.
    veth_pair(&env.host, "st-h1", &c1, "eth0").unwrap();
    veth_pair(&env.host, "st-h2", &c2, "eth0").unwrap();
    env.host.add_addr("st-h1", "192.0.2.1/24").unwrap();
    env.host.add_addr("st-h2", "198.51.100.1/24").unwrap();
    env.host.add_addr("st-h1", "2001:db8:1::1/64").unwrap();
    c1.add_addr("eth0", "192.0.2.2/24").unwrap();
    c1.add_addr("eth0", "2001:db8:1::2/64").unwrap();
    c2.add_addr("eth0", "198.51.100.2/24").unwrap();
    c1.ip(&["route", "add", "default", "via", "192.0.2.1"])
        .unwrap();
    c2.ip(&["route", "add", "default", "via", "198.51.100.1"])
        .unwrap();
    c1.set_link_up("lo").unwrap();
    c2.set_link_up("lo").unwrap();

    assert!(c1
        .addrs("eth0")
        .unwrap()
        .contains(&"192.0.2.2/24".parse().unwrap()));
    assert!(c1
        .routes("-4", "main")
        .unwrap()
        .iter()
        .any(|r| r["dst"] == "default" && r["gateway"] == "192.0.2.1"));
    // The harness's own links never show up in the namespace the test process started in.
    let root_links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&root_links.stdout).contains("st-h1"));

    assert!(ping(&c1, ip("192.0.2.1")).unwrap());
    assert!(
        ping(&c1, ip("198.51.100.2")).unwrap(),
        "forwarded ping c1 -> c2"
    );
    assert!(ping(&c1, ip("2001:db8:1::1")).unwrap());
    assert!(
        !ping(&c1, ip("203.0.113.9")).unwrap(),
        "unrouted address must not answer"
    );
    assert!(!env.host.neighs().unwrap().is_empty());

    let echo = tcp_echo_server(&c2, sa("198.51.100.2:7000")).unwrap();
    assert_eq!(
        tcp_echo(&c1, echo.addr(), b"hello tcp", T).unwrap(),
        b"hello tcp"
    );
    let uecho = udp_echo_server(&c2, sa("198.51.100.2:7001")).unwrap();
    assert_eq!(
        udp_echo(&c1, uecho.addr(), b"hello udp", T).unwrap(),
        b"hello udp"
    );
    let web = http_server(&c2, sa("198.51.100.2:8080"), "hi from c2").unwrap();
    assert_eq!(
        http_get(&c1, web.addr(), "/", T).unwrap(),
        (200, "hi from c2".to_string())
    );
    // Negative control: a port nothing listens on is refused, so the echo checks can fail.
    assert!(tcp_echo(&c1, sa("198.51.100.2:7999"), b"x", T).is_err());
    drop((echo, uecho, web));

    let (p1, p2, ph) = (
        c1.path().to_path_buf(),
        c2.path().to_path_buf(),
        env.host.path().to_path_buf(),
    );
    assert!(p1.exists() && p2.exists() && ph.exists());
    drop(c1);
    assert!(
        !p1.exists(),
        "container namespace path must be gone after drop"
    );
    // Destroying c1's namespace destroys its veth end, which takes the host end with it.
    wait_until("host veth of c1 to disappear", || {
        env.host.link("st-h1").unwrap().is_none()
    });
    assert!(env.host.link("st-h2").unwrap().is_some());
    drop(c2);
    drop(env);
    assert!(!p2.exists() && !ph.exists());
}

#[test]
fn namespaces_are_removed_on_panic() {
    let paths = std::sync::Mutex::new(Vec::<PathBuf>::new());
    let r = std::panic::catch_unwind(|| {
        let env = TestEnv::new("selftest-panic").unwrap();
        let c = env.container("c").unwrap();
        paths
            .lock()
            .unwrap()
            .extend([env.host.path().to_path_buf(), c.path().to_path_buf()]);
        panic!("simulated test failure");
    });
    assert!(r.is_err());
    let paths = paths.into_inner().unwrap();
    assert_eq!(paths.len(), 2);
    for p in paths {
        assert!(!p.exists(), "{} survived the panic", p.display());
    }
}

/// A plugin that records its stdin and CNI_* environment into `log` and prints a result naming
/// itself on ADD; fails with a CNI error when `$FAKE_FAIL` names it.
fn write_recorder(dir: &Path, log: &Path, names: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::create_dir_all(log).unwrap();
    let script = format!(
        r#"#!/bin/sh
me=$(basename "$0")
n=$(ls "{log}" | wc -l)
f="{log}/$(printf %03d "$n")-$CNI_COMMAND-$me"
cat > "$f.stdin"
env | grep '^CNI_' | sort > "$f.env"
if [ "$FAKE_FAIL" = "$me" ]; then
  echo "about to fail" >&2
  printf '{{"code":7,"msg":"bad config","details":"from %s"}}' "$me"
  exit 1
fi
if [ "$CNI_COMMAND" = ADD ]; then
  printf '{{"cniVersion":"1.0.0","interfaces":[{{"name":"%s"}}],"ips":[],"dns":{{}}}}' "$me"
fi
"#,
        log = log.display()
    );
    for n in names {
        let p = dir.join(n);
        std::fs::write(&p, &script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// Recorded calls in order: (command, plugin, stdin JSON, env lines).
fn calls(log: &Path) -> Vec<(String, String, Value, Vec<String>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "stdin"))
        .collect();
    files.sort();
    let out = files
        .iter()
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            let mut parts = stem.splitn(3, '-');
            let _ = parts.next();
            let cmd = parts.next().unwrap().to_string();
            let plugin = parts.next().unwrap().to_string();
            let stdin: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            let env = std::fs::read_to_string(p.with_extension("env"))
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect();
            (cmd, plugin, stdin, env)
        })
        .collect();
    for f in files {
        std::fs::remove_file(f.with_extension("env")).unwrap();
        std::fs::remove_file(f).unwrap();
    }
    out
}

fn conflist(version: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": "selftest-net",
        "plugins": [
            {"type": "fake-a", "capabilities": {"portMappings": true, "bandwidth": false}, "name": "ignored"},
            {"type": "fake-b", "capabilities": {"bandwidth": true}, "keep": {"x": 1}}
        ]
    })
}

#[test]
fn chain_runner_follows_libcni_rules() {
    let env = TestEnv::new("selftest-chain").unwrap();
    let bin = env.tmp().join("bin");
    let log = env.tmp().join("log");
    write_recorder(&bin, &log, &["fake-a", "fake-b"]);
    let ctr = env.container("c").unwrap();
    let pm = json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]);
    let chain = env
        .chain(&conflist("1.0.0"))
        .unwrap()
        .plugin_dirs(vec![bin.clone()])
        .capability_arg("portMappings", pm.clone());
    let att = Attachment::new("ctr-1", &ctr).arg("K8S_POD_NAME", "p");

    // ADD: in order, injection, prevResult chaining, capabilities filtered per plugin.
    let result = chain.add(&att).unwrap();
    assert_eq!(result["interfaces"][0]["name"], "fake-b");
    let c = calls(&log);
    assert_eq!(
        c.iter()
            .map(|x| (x.0.as_str(), x.1.as_str()))
            .collect::<Vec<_>>(),
        [("ADD", "fake-a"), ("ADD", "fake-b")]
    );
    let (a_in, b_in) = (&c[0].2, &c[1].2);
    assert_eq!(a_in["name"], "selftest-net");
    assert_eq!(a_in["cniVersion"], "1.0.0");
    assert!(a_in.get("prevResult").is_none());
    assert_eq!(a_in["runtimeConfig"], json!({"portMappings": pm}));
    assert!(
        b_in.get("runtimeConfig").is_none(),
        "bandwidth cap not supplied"
    );
    assert_eq!(b_in["prevResult"]["interfaces"][0]["name"], "fake-a");
    assert_eq!(b_in["keep"], json!({"x": 1}));
    let netns = format!("CNI_NETNS={}", ctr.path().display());
    for needed in [
        "CNI_COMMAND=ADD",
        "CNI_CONTAINERID=ctr-1",
        "CNI_IFNAME=eth0",
        "CNI_ARGS=K8S_POD_NAME=p",
        &format!("CNI_PATH={}", bin.display()),
        &netns,
    ] {
        assert!(
            c[0].3.iter().any(|l| l == needed),
            "missing {needed} in {:?}",
            c[0].3
        );
    }
    let cache = chain.cache().path("selftest-net", "ctr-1", "eth0");
    let cached: Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(cached["kind"], "cniCacheV1");
    assert_eq!(cached["result"], result);

    // CHECK: list order, cached result as prevResult.
    chain.check(&att).unwrap();
    let c = calls(&log);
    assert_eq!(
        c.iter().map(|x| x.1.as_str()).collect::<Vec<_>>(),
        ["fake-a", "fake-b"]
    );
    assert!(c
        .iter()
        .all(|x| x.0 == "CHECK" && x.2["prevResult"] == result));

    // DEL: reverse order, cached prevResult (≥ 0.4.0), cache removed.
    chain.del(&att).unwrap();
    let c = calls(&log);
    assert_eq!(
        c.iter().map(|x| x.1.as_str()).collect::<Vec<_>>(),
        ["fake-b", "fake-a"]
    );
    assert!(c
        .iter()
        .all(|x| x.0 == "DEL" && x.2["prevResult"] == result));
    assert!(!cache.exists());

    // A second DEL (no cache) and a DEL with empty netns send no prevResult / empty CNI_NETNS.
    chain.del(&Attachment::without_netns("ctr-1")).unwrap();
    let c = calls(&log);
    assert!(c.iter().all(|x| x.2.get("prevResult").is_none()));
    assert!(c[0].3.iter().any(|l| l == "CNI_NETNS="));

    // Failures carry the CNI error and stderr; ADD stops at the failing plugin.
    let failing = env
        .chain(&conflist("1.0.0"))
        .unwrap()
        .plugin_dirs(vec![bin.clone()])
        .env("FAKE_FAIL", "fake-a");
    let err = failing.add(&att).unwrap_err();
    let f = err.plugin_failure().expect("plugin failure");
    assert_eq!(
        (
            f.plugin.as_str(),
            f.code,
            f.msg.as_str(),
            f.details.as_str()
        ),
        ("fake-a", Some(7), "bad config", "from fake-a")
    );
    assert!(f.stderr.contains("about to fail"));
    assert_eq!(calls(&log).len(), 1);
}

#[test]
fn chain_runner_version_gates() {
    let env = TestEnv::new("selftest-gates").unwrap();
    let bin = env.tmp().join("bin");
    let log = env.tmp().join("log");
    write_recorder(&bin, &log, &["fake-a", "fake-b"]);
    let ctr = env.container("c").unwrap();
    let att = Attachment::new("ctr-2", &ctr);

    // 0.3.1 (our conflist's version): no CHECK, no prevResult on DEL, no STATUS.
    let old = env
        .chain(&conflist("0.3.1"))
        .unwrap()
        .plugin_dirs(vec![bin.clone()]);
    old.add(&att).unwrap();
    let _ = calls(&log);
    assert!(matches!(old.check(&att), Err(ChainError::Refused(_))));
    old.status().unwrap();
    assert!(calls(&log).is_empty());
    old.del(&att).unwrap();
    let c = calls(&log);
    assert_eq!(c.len(), 2);
    assert!(c
        .iter()
        .all(|x| x.2.get("prevResult").is_none() && x.2["cniVersion"] == "0.3.1"));

    // disableCheck: CHECK succeeds without running anything.
    let mut list = conflist("1.0.0");
    list["disableCheck"] = json!("TRUE");
    let nocheck = env.chain(&list).unwrap().plugin_dirs(vec![bin.clone()]);
    nocheck.check(&att).unwrap();
    assert!(calls(&log).is_empty());

    // cniVersions: the highest version the library knows wins.
    let mut list = conflist("0.3.1");
    list["cniVersions"] = json!(["1.0.0", "1.1.0", "2.0.0"]);
    assert_eq!(env.chain(&list).unwrap().version(), "1.1.0");
}

#[test]
fn chain_runner_gc_and_status() {
    let env = TestEnv::new("selftest-gc").unwrap();
    let bin = env.tmp().join("bin");
    let log = env.tmp().join("log");
    write_recorder(&bin, &log, &["fake-a", "fake-b"]);
    let ctr = env.container("c").unwrap();
    let chain = env
        .chain(&conflist("1.1.0"))
        .unwrap()
        .plugin_dirs(vec![bin.clone()])
        .capability_arg(
            "portMappings",
            json!([{"hostPort": 1, "containerPort": 2, "protocol": "udp"}]),
        );
    let keep = Attachment::new("keep", &ctr);
    let stale = Attachment::new("stale", &ctr).ifname("net1").arg("A", "b");
    chain.add(&keep).unwrap();
    chain.add(&stale).unwrap();
    let _ = calls(&log);

    chain.gc(&[("keep", "eth0")]).unwrap();
    let c = calls(&log);
    let seq: Vec<(&str, &str)> = c.iter().map(|x| (x.0.as_str(), x.1.as_str())).collect();
    assert_eq!(
        seq,
        [
            ("DEL", "fake-b"),
            ("DEL", "fake-a"),
            ("GC", "fake-a"),
            ("GC", "fake-b")
        ]
    );
    // The stale attachment is deleted with its cached netns, ifname, args and capability args.
    assert!(c[1].3.iter().any(|l| l == "CNI_CONTAINERID=stale"));
    assert!(c[1].3.iter().any(|l| l == "CNI_IFNAME=net1"));
    assert!(c[1].3.iter().any(|l| l == "CNI_ARGS=A=b"));
    assert_eq!(c[1].2["runtimeConfig"]["portMappings"][0]["hostPort"], 1);
    let valid = json!([{"containerID": "keep", "ifname": "eth0"}]);
    assert_eq!(c[2].2["cni.dev/valid-attachments"], valid);
    assert!(c[2].2.get("prevResult").is_none());
    assert!(!c[2].3.iter().any(|l| l.starts_with("CNI_CONTAINERID")));
    assert!(chain.cached_result(&keep).is_some());
    assert!(chain.cached_result(&stale).is_none());

    chain.status().unwrap();
    let c = calls(&log);
    assert_eq!(
        c.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
        ["STATUS", "STATUS"]
    );
}

#[test]
fn exec_plugin_passes_exactly_the_given_cni_env() {
    let env = TestEnv::new("selftest-exec").unwrap();
    let bin = env.tmp().join("bin");
    let log = env.tmp().join("log");
    write_recorder(&bin, &log, &["fake-a"]);
    let out = exec_plugin(
        &env.host,
        &bin.join("fake-a"),
        &[("CNI_COMMAND", "DEL")],
        b"{\"x\":1}",
    )
    .unwrap();
    assert!(out.success(), "{}", out.stderr_str());
    let c = calls(&log);
    assert_eq!(c[0].3, ["CNI_COMMAND=DEL"]);
    assert_eq!(c[0].2, json!({"x": 1}));
}

#[test]
fn missing_binary_names_the_build_step() {
    let env = TestEnv::new("selftest-missing").unwrap();
    let ctr: Netns = env.container("c").unwrap();
    let chain = env
        .chain(
            &json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "no-such-plugin"}]}),
        )
        .unwrap()
        .plugin_dirs(vec![env.tmp().to_path_buf()]);
    let err = chain.add(&Attachment::new("c", &ctr)).unwrap_err();
    assert!(err.to_string().contains("cargo build --bins"), "{err}");
}
