//! End-to-end tests of bins/loopback through the libcni-like chain runner.
//! Needs the built binary: `cargo build --bins` first.

use netns_tests::{bins, exec_plugin, Attachment, TestEnv};
use serde_json::{json, Value};

fn conflist(version: &str) -> Value {
    json!({"cniVersion": version, "name": "lo-net", "plugins": [{"type": "loopback"}]})
}

fn has_addr(result: &Value, addr: &str) -> bool {
    result["ips"]
        .as_array()
        .is_some_and(|ips| ips.iter().any(|i| i["address"] == addr))
}

#[test]
fn add_check_del_brings_lo_up_with_127_0_0_1() {
    let env = TestEnv::new("lo-add").unwrap();
    let ctr = env.container("ctr").unwrap();
    let chain = env.chain(&conflist("1.0.0")).unwrap();
    let att = Attachment::new("lo-ctr-1", &ctr);
    assert!(
        !ctr.link_is_up("lo").unwrap(),
        "precondition: fresh netns has lo down"
    );

    let result = chain.add(&att).unwrap();
    assert!(ctr.link_is_up("lo").unwrap(), "lo must be UP after ADD");
    assert!(
        ctr.addrs("lo")
            .unwrap()
            .contains(&"127.0.0.1/8".parse().unwrap()),
        "lo must carry 127.0.0.1/8: {:?}",
        ctr.addrs("lo").unwrap()
    );
    // Upstream's result: the sandboxed `lo` interface and its addresses.
    assert_eq!(result["cniVersion"], "1.0.0");
    assert_eq!(result["interfaces"][0]["name"], "lo");
    assert_eq!(
        result["interfaces"][0]["sandbox"],
        ctr.path().to_string_lossy().as_ref()
    );
    assert!(has_addr(&result, "127.0.0.1/8"), "result: {result}");
    // The host namespace was not modified beyond what the harness set up.
    assert!(env.host.link_is_up("lo").unwrap());

    chain.check(&att).unwrap();
    chain.del(&att).unwrap();
    // Idempotent: a second DEL (no cached result any more) succeeds too.
    chain.del(&att).unwrap();
}

#[test]
fn del_takes_lo_down_like_upstream() {
    let env = TestEnv::new("lo-down").unwrap();
    let ctr = env.container("ctr").unwrap();
    let chain = env.chain(&conflist("1.0.0")).unwrap();
    let att = Attachment::new("lo-ctr-2", &ctr);
    chain.add(&att).unwrap();
    assert!(ctr.link_is_up("lo").unwrap());
    chain.del(&att).unwrap();
    assert!(
        !ctr.link_is_up("lo").unwrap(),
        "upstream loopback DEL sets lo down"
    );
}

#[test]
fn works_with_our_conflist_version_0_3_1() {
    let env = TestEnv::new("lo-031").unwrap();
    let ctr = env.container("ctr").unwrap();
    let chain = env.chain(&conflist("0.3.1")).unwrap();
    let att = Attachment::new("lo-ctr-3", &ctr);
    let result = chain.add(&att).unwrap();
    assert_eq!(result["cniVersion"], "0.3.1");
    // 0.3.x results carry ips[].version.
    let v4 = result["ips"]
        .as_array()
        .and_then(|ips| ips.iter().find(|i| i["address"] == "127.0.0.1/8"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(v4["version"], "4", "result: {result}");
    assert!(ctr.link_is_up("lo").unwrap());
    chain.del(&att).unwrap();
}

#[test]
fn del_with_empty_netns_and_no_prev_result_succeeds() {
    let env = TestEnv::new("lo-del-nons").unwrap();
    // Through the runner: a 0.3.1 list sends no prevResult; CNI_NETNS is empty.
    let chain = env.chain(&conflist("0.3.1")).unwrap();
    chain.del(&Attachment::without_netns("lo-gone")).unwrap();

    // And byte-exact, the way containerd's second DEL looks.
    let bin = bins::binary("loopback").unwrap();
    let stdin = br#"{"cniVersion":"1.0.0","name":"lo-net","type":"loopback"}"#;
    let path = bins::bin_dirs()
        .iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let out = exec_plugin(
        &env.host,
        &bin,
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "lo-gone"),
            ("CNI_NETNS", ""),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", &path),
        ],
        stdin,
    )
    .unwrap();
    assert!(
        out.success(),
        "stdout {:?} stderr {:?}",
        out.stdout_str(),
        out.stderr_str()
    );
    assert!(
        out.stdout_str().trim().is_empty(),
        "DEL prints nothing on success"
    );
}

#[test]
fn add_with_missing_netns_fails_with_cni_error() {
    let env = TestEnv::new("lo-badns").unwrap();
    let chain = env.chain(&conflist("1.0.0")).unwrap();
    let mut att = Attachment::without_netns("lo-ctr-4");
    att.netns = Some(env.tmp().join("no-such-netns"));
    let err = chain.add(&att).unwrap_err();
    let f = err
        .plugin_failure()
        .unwrap_or_else(|| panic!("expected a plugin failure, got {err}"));
    assert!(f.code.is_some(), "error must be CNI JSON on stdout: {f}");
}
