//! One pod's ADD never takes another live pod's host veth: the owner is recorded in the veth's
//! alias, and a name collision (plain mode: container ids sharing their first 11 characters)
//! fails the second ADD cleanly instead of deleting the first pod's interface. Stale veths (no
//! owner record, the same owner, or a peer no longer in a container) are still replaced, as
//! Calico does. Needs the built binaries: `cargo build --bins` first.

use netns_tests::{ipam_state, traffic, Attachment, Netns, TestEnv};
use serde_json::{json, Value};
use std::path::Path;

fn conflist(dir: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "k8s-pod-network",
        "plugins": [{
            "type": "calico",
            "datastore_type": "local",
            "nodename": "node-1",
            "log_file_path": dir.join("cni.log"),
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.7.0/24"}]],
                     "dataDir": dir.join("ipam")}
        }]
    })
}

fn reserved(dir: &Path) -> Vec<String> {
    ipam_state::host_local_reservations(&dir.join("ipam"), "k8s-pod-network")
}

fn ipv4(result: &Value) -> std::net::IpAddr {
    result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {result}"))
}

fn alias(host: &Netns, name: &str) -> Option<String> {
    let links = host.ip_json(&["-d", "link", "show", "dev", name]).ok()?;
    links[0]["ifalias"].as_str().map(str::to_string)
}

#[test]
fn plain_mode_ids_sharing_11_chars_second_add_fails_first_keeps_working() {
    let env = TestEnv::calico_node("cal-owner").unwrap();
    let chain = env.chain(&conflist(env.tmp())).unwrap();
    let (p1, p2, p3) = (
        env.container("o1").unwrap(),
        env.container("o2").unwrap(),
        env.container("o3").unwrap(),
    );
    let first = Attachment::new("0123456789a-first", &p1);
    let second = Attachment::new("0123456789a-second", &p2);
    let r1 = chain.add(&first).unwrap();
    assert_eq!(r1["interfaces"][0]["name"], "cali0123456789a");
    assert_eq!(
        alias(&env.host, "cali0123456789a").as_deref(),
        Some("owner=cni:0123456789a-first")
    );
    let r3 = chain.add(&Attachment::new("other-pod", &p3)).unwrap();

    let err = chain.add(&second).unwrap_err();
    let msg = err.msg();
    assert!(
        msg.contains("cali0123456789a") && msg.contains("0123456789a-first"),
        "{msg}"
    );
    assert!(msg.contains("another live container"), "{msg}");
    // Nothing of the failed ADD is left, and the first pod is untouched.
    assert!(p2.link("eth0").unwrap().is_none());
    assert_eq!(reserved(env.tmp()).len(), 2, "{:?}", reserved(env.tmp()));
    assert!(
        traffic::ping_eventually(&p3, ipv4(&r1), 3).unwrap(),
        "first pod still reachable"
    );
    assert!(traffic::ping_eventually(&p1, ipv4(&r3), 3).unwrap());
    // The failed container's DEL (a runtime sends one) must not hurt the first pod either.
    chain.del(&second).unwrap();
    assert!(traffic::ping_eventually(&p3, ipv4(&r1), 3).unwrap());

    // Once the first pod is gone, the name is free for the second.
    chain.del(&first).unwrap();
    let r2 = chain.add(&second).unwrap();
    assert!(traffic::ping_eventually(&p3, ipv4(&r2), 3).unwrap());
}

#[test]
fn stale_host_veths_are_still_replaced() {
    let env = TestEnv::calico_node("cal-stale").unwrap();
    let chain = env.chain(&conflist(env.tmp())).unwrap();
    let elsewhere = env.container("stale-peer").unwrap();
    let tid = elsewhere.tid().to_string();

    // No owner record (Calico's, or ours before owners were recorded), peer in a live netns.
    env.host
        .ip(&[
            "link",
            "add",
            "calistale-one",
            "type",
            "veth",
            "peer",
            "name",
            "x1",
            "netns",
            &tid,
        ])
        .unwrap();
    let p1 = env.container("s1").unwrap();
    let r1 = chain.add(&Attachment::new("stale-one", &p1)).unwrap();
    assert_eq!(r1["interfaces"][0]["name"], "calistale-one");
    assert!(
        elsewhere.link("x1").unwrap().is_none(),
        "stale veth replaced"
    );

    // Someone else's record, but the peer is back in the host namespace (never attached).
    env.host
        .ip(&[
            "link",
            "add",
            "calistale-two",
            "type",
            "veth",
            "peer",
            "name",
            "x2",
        ])
        .unwrap();
    env.host
        .ip(&[
            "link",
            "set",
            "calistale-two",
            "alias",
            "owner=cni:someone-else",
        ])
        .unwrap();
    let p2 = env.container("s2").unwrap();
    chain.add(&Attachment::new("stale-two", &p2)).unwrap();
    assert_eq!(
        alias(&env.host, "calistale-two").as_deref(),
        Some("owner=cni:stale-two")
    );

    // Kubernetes: a new sandbox of the same pod replaces the old sandbox's veth, as Calico does.
    let (k1, k2) = (env.container("k1").unwrap(), env.container("k2").unwrap());
    let pod = |id: &str, ns: &Netns| {
        Attachment::new(id, ns)
            .arg("K8S_POD_NAMESPACE", "default")
            .arg("K8S_POD_NAME", "web")
    };
    let old = chain.add(&pod("sandbox-old", &k1)).unwrap();
    let new = chain.add(&pod("sandbox-new", &k2)).unwrap();
    assert_eq!(old["interfaces"][0]["name"], new["interfaces"][0]["name"]);
    assert!(
        k1.link("eth0").unwrap().is_none(),
        "old sandbox's veth replaced"
    );
}
