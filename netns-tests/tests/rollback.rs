//! A failed ADD leaves nothing behind, plugin by plugin (portmap: `portmap_rollback.rs`,
//! calico: `calico.rs`, `calico_veth_owner.rs`): a late failure is induced after the plugin's
//! first change and the host is compared with what it was before. loopback makes a single change
//! (setting `lo` up), so it has nothing to undo. Needs the built binaries (`cargo build --bins`).

use std::collections::BTreeMap;
use std::path::Path;

use netns_tests::{bins, exec_plugin, veth_pair, ExecOutput, Netns, TestEnv};
use serde_json::{json, Value};

const NETWORK: &str = "k8s-pod-network";
/// The ifb bandwidth derives from [`NETWORK`] and this id (see tests/bandwidth.rs).
const CTR_ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const IFB: &str = "bwpce0bd88d2c9c";

fn run(
    host: &Netns,
    plugin: &str,
    command: &str,
    netns: &Path,
    id: &str,
    conf: &Value,
) -> ExecOutput {
    let bin = bins::binary(plugin).expect("built binary (cargo build --bins)");
    let netns = netns.display().to_string();
    let env = [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    exec_plugin(host, &bin, &env, &serde_json::to_vec(conf).unwrap()).expect("exec")
}

fn error_of(out: &ExecOutput) -> Value {
    assert!(!out.success(), "must fail: {}", out.stdout_str());
    serde_json::from_str(&out.stdout_str())
        .unwrap_or_else(|e| panic!("not a CNI error ({e}): {}", out.stdout_str()))
}

fn qdisc_kinds(host: &Netns, dev: &str) -> Vec<String> {
    host.tc_json(&["qdisc", "show", "dev", dev])
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|q| q["kind"].as_str().map(str::to_string))
        .collect()
}

/// A pod veth (host `calibw0`, container `eth0`) and the bandwidth config chained after it.
fn bandwidth_setup(name: &str) -> (TestEnv, Netns, Value) {
    let env = TestEnv::new(name).unwrap();
    let ctr = env.container(&format!("{name}-c")).unwrap();
    veth_pair(&env.host, "calibw0", &ctr, "eth0").unwrap();
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "type": "bandwidth",
        "ingressRate": 8_000_000, "ingressBurst": 800_000,
        "egressRate": 8_000_000, "egressBurst": 800_000,
        "prevResult": {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "calibw0"}, {"name": "eth0", "sandbox": ctr.path()}],
            "ips": [{"address": "10.244.7.2/32", "interface": 1}]
        }
    });
    (env, ctr, conf)
}

/// The ifb cannot be created (its name is taken) after the ingress tbf is already on the host
/// veth: the ADD fails and the tbf is removed again; the link that blocked it is untouched.
#[test]
fn bandwidth_late_failure_removes_its_qdiscs() {
    let (env, ctr, conf) = bandwidth_setup("rb-bw");
    env.host
        .ip(&[
            "link", "add", IFB, "type", "veth", "peer", "name", "bwblock",
        ])
        .unwrap();
    let before = qdisc_kinds(&env.host, "calibw0");
    let out = run(&env.host, "bandwidth", "ADD", ctr.path(), CTR_ID, &conf);
    let err = error_of(&out);
    assert!(
        err["msg"].as_str().unwrap_or_default().contains(IFB),
        "{err}"
    );
    assert_eq!(
        qdisc_kinds(&env.host, "calibw0"),
        before,
        "qdiscs left on the host veth"
    );
    assert!(!qdisc_kinds(&env.host, "calibw0").contains(&"tbf".to_string()));
    assert!(
        env.host.link(IFB).unwrap().is_some(),
        "foreign link untouched"
    );
    assert_eq!(
        qdisc_kinds(&env.host, IFB),
        qdisc_kinds(&env.host, "bwblock")
    );
}

/// An IP whose `interface` index points past prevResult's interfaces is refused (code 7, the
/// field named) before anything is shaped.
#[test]
fn bandwidth_refuses_an_interface_index_past_the_list() {
    let (env, ctr, mut conf) = bandwidth_setup("rb-bwidx");
    conf["prevResult"]["ips"][0]["interface"] = json!(5);
    let out = run(&env.host, "bandwidth", "ADD", ctr.path(), CTR_ID, &conf);
    let err = error_of(&out);
    assert_eq!(err["code"], 7, "{err}");
    let msg = err["msg"].as_str().unwrap_or_default();
    assert!(msg.contains("prevResult.ips[0].interface"), "{msg}");
    assert!(!qdisc_kinds(&env.host, "calibw0").contains(&"tbf".to_string()));
    assert!(env.host.link(IFB).unwrap().is_none());
}

/// Every file of the host-local store with its content.
fn store_files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir.join(NETWORK))
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let content = std::fs::read_to_string(e.path()).unwrap_or_default();
                    (e.file_name().to_string_lossy().into_owned(), content)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Range set 1 is full when set 0 has already been reserved: the ADD fails and the store is
/// byte for byte what it was (no lease, round-robin marker of set 0 unmoved).
#[test]
fn host_local_late_failure_leaves_the_store_as_it_was() {
    let env = TestEnv::new("rb-hl").unwrap();
    let ctr = env.container("rb-hl-c").unwrap();
    let dir = env.tmp().join("ipam");
    let ipam = json!({
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "type": "host-local",
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.1.0.0/30"}]],
            "dataDir": dir,
        }
    });
    let first = run(&env.host, "host-local", "ADD", ctr.path(), "first", &ipam);
    assert!(first.success(), "{}", first.stdout_str());
    let before = store_files(&dir);
    let out = run(&env.host, "host-local", "ADD", ctr.path(), "second", &ipam);
    let err = error_of(&out);
    assert!(
        err["msg"].as_str().unwrap_or_default().contains("range 1"),
        "{err}"
    );
    assert_eq!(store_files(&dir), before);
    // An unmatched requested address is refused before anything is written.
    let mut requested = ipam.clone();
    requested["ipam"]["ranges"] = json!([[{"subnet": "10.2.0.0/24"}]]);
    requested["args"] = json!({"cni": {"ips": ["10.9.9.9"]}});
    let fresh = env.tmp().join("ipam-fresh");
    requested["ipam"]["dataDir"] = json!(fresh);
    let out = run(
        &env.host,
        "host-local",
        "ADD",
        ctr.path(),
        "third",
        &requested,
    );
    error_of(&out);
    assert!(!fresh.exists(), "nothing written for a refused ADD");
}
