//! End-to-end tests of the `calico` plugin with `host-local` IPAM in private namespaces:
//! dataplane state asserted from outside, real packets, failure injection with nothing left
//! behind. Needs the built binaries: `cargo build --bins` first.

use netns_tests::{ipam_state, traffic, Attachment, Netns, TestEnv};
use serde_json::{json, Value};
use std::path::Path;

const V4_SUBNET: &str = "10.244.1.0/24";
const V6_SUBNET: &str = "fd00:10:244:1::/64";

/// A calico conflist on host-local with its state under `dir`.
fn conflist(version: &str, dir: &Path, ranges: Value) -> Value {
    json!({
        "cniVersion": version,
        "name": "k8s-pod-network",
        "plugins": [{
            "type": "calico",
            "datastore_type": "local",
            "nodename": "node-1",
            "mtu": 1440,
            "log_file_path": dir.join("cni.log"),
            "ipam": {"type": "host-local", "ranges": ranges, "dataDir": dir.join("ipam")}
        }]
    })
}

fn dual_stack(dir: &Path) -> Value {
    conflist(
        "1.0.0",
        dir,
        json!([[{"subnet": V4_SUBNET}], [{"subnet": V6_SUBNET}]]),
    )
}

/// Addresses host-local holds for the network (its on-disk reservations).
fn reserved(dir: &Path) -> Vec<String> {
    ipam_state::host_local_reservations(&dir.join("ipam"), "k8s-pod-network")
}

fn cali_links(host: &Netns) -> Vec<String> {
    host.link_names_with_prefix("cali").unwrap()
}

fn pod_ip(result: &Value, v4: bool) -> std::net::IpAddr {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["address"].as_str())
        .map(|a| {
            a.split('/')
                .next()
                .unwrap()
                .parse::<std::net::IpAddr>()
                .unwrap()
        })
        .find(|ip| ip.is_ipv4() == v4)
        .unwrap_or_else(|| panic!("no {} address in {result}", if v4 { "v4" } else { "v6" }))
}

#[test]
fn two_dual_stack_pods_are_wired_like_calico_and_reach_each_other() {
    let env = TestEnv::calico_node("cal-2pods").unwrap();
    // An address on the host for pods to reach (nodes have one; our stand-in gets a test one).
    env.host.add_addr("lo", "192.0.2.1/32").unwrap();
    let conf = dual_stack(env.tmp());
    let chain = env.chain(&conf).unwrap();
    let p1 = env.container("p1").unwrap();
    let p2 = env.container("p2").unwrap();
    let a1 = Attachment::new("ctr-one", &p1)
        .arg("K8S_POD_NAMESPACE", "default")
        .arg("K8S_POD_NAME", "pod-one");
    let a2 = Attachment::new("ctr-two", &p2);
    let r1 = chain.add(&a1).unwrap();
    let r2 = chain.add(&a2).unwrap();

    // Result shape: host veth without sandbox, container interface with it, /32 and /128.
    let host_veth = r1["interfaces"][0]["name"].as_str().unwrap().to_string();
    // sha1("default.pod-one") prefix, as Calico names it (printf default.pod-one | sha1sum).
    assert_eq!(host_veth.len(), 15);
    assert!(host_veth.starts_with("cali"));
    assert!(r1["interfaces"][0].get("sandbox").is_none(), "{r1}");
    assert_eq!(r1["interfaces"][1]["name"], "eth0");
    assert_eq!(
        r1["interfaces"][1]["sandbox"],
        p1.path().to_string_lossy().as_ref()
    );
    assert_eq!(r1["interfaces"][1]["mtu"], 1440);
    assert_eq!(
        r2["interfaces"][0]["name"], "calictr-two",
        "plain mode: cali + container id"
    );
    for ip in r1["ips"].as_array().unwrap() {
        assert_eq!(ip["interface"], 1);
        assert!(ip.get("gateway").is_none());
    }
    let (v4, v6) = (pod_ip(&r1, true), pod_ip(&r1, false));
    let (v4b, v6b) = (pod_ip(&r2, true), pod_ip(&r2, false));

    // Container side.
    let addrs = p1.addrs("eth0").unwrap();
    assert!(
        addrs.contains(&format!("{v4}/32").parse().unwrap()),
        "{addrs:?}"
    );
    assert!(
        addrs.contains(&format!("{v6}/128").parse().unwrap()),
        "{addrs:?}"
    );
    let link = p1.link("eth0").unwrap().unwrap();
    assert_eq!(link["mtu"], 1440);
    let routes4 = p1.routes("-4", "main").unwrap();
    assert!(
        routes4
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "169.254.1.1" && r["dev"] == "eth0"),
        "{routes4:?}"
    );
    assert!(
        routes4
            .iter()
            .any(|r| r["dst"] == "169.254.1.1" && r["scope"] == "link"),
        "{routes4:?}"
    );
    let routes6 = p1.routes("-6", "main").unwrap();
    assert!(
        routes6
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "fe80::ecee:eeff:feee:eeee"),
        "{routes6:?}"
    );
    let neighs = p1.neighs().unwrap();
    assert!(
        neighs
            .iter()
            .any(|n| n["dst"] == "169.254.1.1" && n["lladdr"] == "ee:ee:ee:ee:ee:ee"),
        "{neighs:?}"
    );
    assert_eq!(p1.sysctl("net.ipv4.ip_forward").unwrap(), "0");
    assert_eq!(p1.sysctl("net.ipv6.conf.eth0.accept_dad").unwrap(), "0");

    // Host side.
    let hl = env.host.link(&host_veth).unwrap().unwrap();
    assert_eq!(hl["address"], "ee:ee:ee:ee:ee:ee");
    assert_eq!(hl["mtu"], 1440);
    let h4 = env.host.routes("-4", "main").unwrap();
    assert!(
        h4.iter().any(|r| r["dst"] == v4.to_string()
            && r["dev"] == host_veth.as_str()
            && r["scope"] == "link"),
        "{h4:?}"
    );
    let h6 = env.host.routes("-6", "main").unwrap();
    assert!(
        h6.iter()
            .any(|r| r["dst"] == v6.to_string() && r["dev"] == host_veth.as_str()),
        "{h6:?}"
    );
    for (key, want) in [
        (format!("net/ipv4/conf/{host_veth}/proxy_arp"), "1"),
        (format!("net/ipv4/conf/{host_veth}/route_localnet"), "1"),
        (format!("net/ipv4/conf/{host_veth}/forwarding"), "1"),
        (format!("net/ipv4/neigh/{host_veth}/proxy_delay"), "0"),
        (format!("net/ipv6/conf/{host_veth}/proxy_ndp"), "1"),
        (format!("net/ipv6/conf/{host_veth}/forwarding"), "1"),
        (format!("net/ipv6/conf/{host_veth}/accept_ra"), "0"),
    ] {
        assert_eq!(env.host.sysctl(&key).unwrap(), want, "{key}");
    }

    // Packets: pod to pod (both families) and pod to host.
    assert!(
        traffic::ping_eventually(&p1, v4b, 3).unwrap(),
        "p1 -> p2 v4"
    );
    assert!(traffic::ping_eventually(&p2, v4, 3).unwrap(), "p2 -> p1 v4");
    assert!(
        traffic::ping_eventually(&p1, v6b, 3).unwrap(),
        "p1 -> p2 v6"
    );
    assert!(
        traffic::ping_eventually(&p1, "192.0.2.1".parse().unwrap(), 3).unwrap(),
        "p1 -> host"
    );
    let srv = traffic::tcp_echo_server(&p2, (v4b, 7070).into()).unwrap();
    traffic::tcp_echo(&p1, srv.addr(), b"hello", std::time::Duration::from_secs(3)).unwrap();

    chain.check(&a1).unwrap();
    chain.del(&a1).unwrap();
    chain.del(&a2).unwrap();
    assert!(
        cali_links(&env.host).is_empty(),
        "{:?}",
        cali_links(&env.host)
    );
    assert!(reserved(env.tmp()).is_empty(), "{:?}", reserved(env.tmp()));
    assert!(p1.link("eth0").unwrap().is_none());
}

#[test]
fn every_version_gets_its_result_shape() {
    let env = TestEnv::calico_node("cal-versions").unwrap();
    for (i, version) in [
        "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
    ]
    .iter()
    .enumerate()
    {
        let conf = conflist(version, env.tmp(), json!([[{"subnet": V4_SUBNET}]]));
        let chain = env.chain(&conf).unwrap();
        let ctr = env.container(&format!("v{i}")).unwrap();
        let att = Attachment::new(&format!("ver-{i}"), &ctr);
        let r = chain.add(&att).unwrap();
        assert_eq!(r["cniVersion"], *version);
        if version.starts_with("0.1") || version.starts_with("0.2") {
            assert!(r["ip4"]["ip"].as_str().unwrap().ends_with("/32"), "{r}");
        } else if version.starts_with("0.") {
            assert_eq!(r["ips"][0]["version"], "4", "{r}");
        } else {
            assert!(r["ips"][0].get("version").is_none(), "{r}");
        }
        chain.del(&att).unwrap();
    }
    assert!(reserved(env.tmp()).is_empty());
}

#[test]
fn del_is_idempotent_and_needs_no_netns() {
    let env = TestEnv::calico_node("cal-del").unwrap();
    let chain = env.chain(&dual_stack(env.tmp())).unwrap();
    let ctr = env.container("ctr").unwrap();
    let att = Attachment::new("del-ctr", &ctr);
    chain.add(&att).unwrap();
    // The runtime's second DEL: empty CNI_NETNS, no cached result; and the netns gone entirely.
    chain.del(&Attachment::without_netns("del-ctr")).unwrap();
    assert!(
        reserved(env.tmp()).is_empty(),
        "DEL without netns releases the IPs"
    );
    chain.del(&att).unwrap();
    drop(ctr);
    chain.del(&att).unwrap();
    assert!(cali_links(&env.host).is_empty());
}

#[test]
fn ipam_failure_leaves_nothing() {
    let env = TestEnv::calico_node("cal-ipamfail").unwrap();
    // A range with exactly one address: the second pod cannot get one.
    let conf = conflist(
        "1.0.0",
        env.tmp(),
        json!([[{"subnet": "10.244.9.0/29", "rangeStart": "10.244.9.2", "rangeEnd": "10.244.9.2"}]]),
    );
    let chain = env.chain(&conf).unwrap();
    let p1 = env.container("p1").unwrap();
    let p2 = env.container("p2").unwrap();
    chain.add(&Attachment::new("full-1", &p1)).unwrap();
    let err = chain.add(&Attachment::new("full-2", &p2)).unwrap_err();
    assert!(
        err.msg().contains("no IP addresses available"),
        "{}",
        err.msg()
    );
    assert_eq!(cali_links(&env.host), vec!["califull-1".to_string()]);
    assert!(p2.link("eth0").unwrap().is_none());
    assert_eq!(reserved(env.tmp()), vec!["10.244.9.2".to_string()]);

    // A missing IPAM plugin is a clear error too.
    let mut bad = conf.clone();
    bad["plugins"][0]["ipam"]["type"] = json!("no-such-ipam");
    let err = env
        .chain(&bad)
        .unwrap()
        .add(&Attachment::new("noipam", &p2))
        .unwrap_err();
    assert!(err.msg().contains("no-such-ipam"), "{}", err.msg());
    assert!(p2.link("eth0").unwrap().is_none());
}

#[test]
fn dataplane_failure_rolls_back_and_releases_the_ip() {
    let env = TestEnv::calico_node("cal-rollback").unwrap();
    let conf = conflist(
        "1.0.0",
        env.tmp(),
        json!([[{"subnet": "10.244.9.0/29", "rangeStart": "10.244.9.2", "rangeEnd": "10.244.9.3"}]]),
    );
    // Another interface already owns the route to the address IPAM will hand out.
    env.host
        .ip(&["route", "add", "10.244.9.2/32", "dev", "lo"])
        .unwrap();
    let chain = env.chain(&conf).unwrap();
    let ctr = env.container("ctr").unwrap();
    let err = chain.add(&Attachment::new("rb-1", &ctr)).unwrap_err();
    assert!(
        err.msg()
            .contains("already exists for an interface other than"),
        "{}",
        err.msg()
    );
    assert!(err.msg().contains("lo"), "{}", err.msg());
    assert!(cali_links(&env.host).is_empty(), "veth removed");
    assert!(
        ctr.link("eth0").unwrap().is_none(),
        "container interface removed"
    );
    assert!(
        reserved(env.tmp()).is_empty(),
        "IP released: {:?}",
        reserved(env.tmp())
    );
    // The foreign route is untouched.
    assert!(env
        .host
        .routes("-4", "main")
        .unwrap()
        .iter()
        .any(|r| r["dst"] == "10.244.9.2" && r["dev"] == "lo"));
}

#[test]
fn vanished_netns_fails_cleanly_before_ipam() {
    let env = TestEnv::calico_node("cal-nonetns").unwrap();
    let chain = env.chain(&dual_stack(env.tmp())).unwrap();
    let ctr = env.container("ctr").unwrap();
    let att = Attachment::new("gone", &ctr);
    drop(ctr);
    let err = chain.add(&att).unwrap_err();
    assert_eq!(err.code(), Some(3), "{}", err.msg());
    assert!(reserved(env.tmp()).is_empty());
    assert!(cali_links(&env.host).is_empty());
}

#[test]
fn existing_interface_is_refused_and_left_alone() {
    let env = TestEnv::calico_node("cal-exists").unwrap();
    let chain = env.chain(&dual_stack(env.tmp())).unwrap();
    let ctr = env.container("ctr").unwrap();
    ctr.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
    ])
    .unwrap();
    let err = chain.add(&Attachment::new("exists", &ctr)).unwrap_err();
    assert!(err.msg().contains("already exists"), "{}", err.msg());
    assert!(
        ctr.link("eth0").unwrap().is_some(),
        "pre-existing interface untouched"
    );
    assert!(reserved(env.tmp()).is_empty());
    assert!(cali_links(&env.host).is_empty());
}

#[test]
fn second_add_does_not_disturb_the_running_pod() {
    let env = TestEnv::calico_node("cal-readd").unwrap();
    let chain = env.chain(&dual_stack(env.tmp())).unwrap();
    let p1 = env.container("p1").unwrap();
    let p2 = env.container("p2").unwrap();
    let a1 = Attachment::new("readd-1", &p1);
    let r1 = chain.add(&a1).unwrap();
    let r2 = chain.add(&Attachment::new("readd-2", &p2)).unwrap();
    let before = reserved(env.tmp());
    assert!(chain.add(&a1).is_err(), "ADD twice without DEL must fail");
    assert_eq!(reserved(env.tmp()), before, "no IP allocated or lost");
    assert!(
        traffic::ping_eventually(&p2, pod_ip(&r1, true), 3).unwrap(),
        "first pod still reachable"
    );
    assert!(traffic::ping_eventually(&p1, pod_ip(&r2, true), 3).unwrap());
}

#[test]
fn bad_config_names_the_field() {
    let env = TestEnv::calico_node("cal-badconf").unwrap();
    let mut conf = dual_stack(env.tmp());
    conf["plugins"][0]["mtu"] = json!("jumbo");
    let ctr = env.container("ctr").unwrap();
    let err = env
        .chain(&conf)
        .unwrap()
        .add(&Attachment::new("bad", &ctr))
        .unwrap_err();
    assert_eq!(err.code(), Some(7));
    assert!(err.msg().contains("mtu"), "{}", err.msg());
    assert!(reserved(env.tmp()).is_empty());
}

#[test]
fn check_detects_what_went_missing() {
    let env = TestEnv::calico_node("cal-check").unwrap();
    let chain = env.chain(&dual_stack(env.tmp())).unwrap();
    let ctr = env.container("ctr").unwrap();
    let att = Attachment::new("chk", &ctr);
    let r = chain.add(&att).unwrap();
    chain.check(&att).unwrap();
    let v4 = pod_ip(&r, true);
    // Someone removes the host route: CHECK must say so.
    env.host.ip(&["route", "del", &format!("{v4}/32")]).unwrap();
    let err = chain.check(&att).unwrap_err();
    assert!(
        err.msg().contains(&format!("host route {v4}/32")),
        "{}",
        err.msg()
    );
    // And a missing pod address.
    env.host
        .ip(&[
            "route",
            "add",
            &format!("{v4}/32"),
            "dev",
            "calichk",
            "scope",
            "link",
        ])
        .unwrap();
    chain.check(&att).unwrap();
    ctr.ip(&["addr", "del", &format!("{v4}/32"), "dev", "eth0"])
        .unwrap();
    let err = chain.check(&att).unwrap_err();
    assert!(
        err.msg().contains(&format!("address {v4}/32 missing")),
        "{}",
        err.msg()
    );
    chain.del(&att).unwrap();
}

#[test]
fn gc_and_status_are_forwarded_to_ipam() {
    let env = TestEnv::calico_node("cal-gc").unwrap();
    let mut conf = dual_stack(env.tmp());
    conf["cniVersion"] = json!("1.1.0");
    let chain = env.chain(&conf).unwrap();
    let (c1, c2) = (env.container("c1").unwrap(), env.container("c2").unwrap());
    chain.add(&Attachment::new("keep", &c1)).unwrap();
    chain.add(&Attachment::new("stale", &c2)).unwrap();
    assert_eq!(reserved(env.tmp()).len(), 4);
    chain.status().unwrap();
    // Forget "stale" in the runtime's cache, so only the GC forwarded by calico to host-local
    // (not a runtime DEL) can release its addresses.
    chain
        .cache()
        .remove("k8s-pod-network", "stale", "eth0")
        .unwrap();
    chain.gc(&[("keep", "eth0")]).unwrap();
    assert_eq!(reserved(env.tmp()).len(), 2, "{:?}", reserved(env.tmp()));
    assert!(c1.link("eth0").unwrap().is_some());
}
