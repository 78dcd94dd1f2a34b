//! The plugin's verbs in-process on the local store (no root, no network): what ADD records,
//! what DEL/GC release, what CHECK verifies, and how failures are reported.

use std::path::Path;

use calico_ipam::CalicoIpam;
use cni::{CniArgs, Command, ErrorCode, Invocation, NetConf, Plugin};
use ipam::{Ipam, Store};
use ipam_store_local::LocalStore;
use serde_json::{json, Value};

fn conf(dir: &Path, extra: Value) -> Value {
    let mut c = json!({
        "cniVersion": "1.1.0", "name": "net", "type": "calico",
        "datastore_type": "local", "datastore_path": dir.join("ipam.db"),
        "nodename": "node-1", "ipam_lock_file": dir.join("ipam.lock"),
        "ipam": {"type": "calico-ipam"}
    });
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

fn inv(command: Command, cid: &str, args: &str, conf: &Value) -> Invocation {
    let stdin = conf.to_string().into_bytes();
    Invocation {
        command,
        container_id: cid.into(),
        netns: None,
        ifname: "eth0".into(),
        args: CniArgs::parse(args).unwrap(),
        args_raw: args.into(),
        cni_path: Vec::new(),
        config: NetConf::parse(&stdin).unwrap(),
        stdin,
    }
}

fn store(dir: &Path) -> LocalStore {
    LocalStore::open(dir.join("ipam.db")).unwrap()
}

#[test]
fn add_records_handle_and_attributes_del_releases_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let c = conf(dir.path(), json!({}));
    let p = CalicoIpam;
    let args = "K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web-0";
    let r = p.add(&inv(Command::Add, "cid1", args, &c)).unwrap();
    assert_eq!(r.ips.len(), 1);
    let addr = r.ips[0].address;
    assert_eq!(addr.prefix(), 26, "block mask, as Calico's calico-ipam");
    assert_eq!(r.routes.len(), 1);
    assert_eq!(r.routes[0].dst, addr);

    let s = store(dir.path());
    let ipam = Ipam::new(&s);
    let a = ipam.get_assignment(addr.ip()).unwrap().expect("allocated");
    assert_eq!(a.handle_id.as_deref(), Some("net.cid1"));
    assert_eq!(a.attrs["node"], "node-1");
    assert_eq!(a.attrs["pod"], "web-0");
    assert_eq!(a.attrs["namespace"], "ns1");
    assert!(a.attrs["timestamp"].ends_with(" +0000 UTC"));
    // Zero setup: the empty store got Calico's default pool and a ready ClusterInformation.
    assert_eq!(
        ipam.list_pools().unwrap()[0].metadata.name,
        "default-ipv4-ippool"
    );

    p.check(&inv(Command::Check, "cid1", args, &c)).unwrap();
    p.del(&inv(Command::Del, "cid1", args, &c)).unwrap();
    assert!(ipam.get_assignment(addr.ip()).unwrap().is_none());
    assert!(s.list(&ipam::ListPrefix::Handles).unwrap().is_empty());
    p.del(&inv(Command::Del, "cid1", args, &c)).unwrap();
    let e = p.check(&inv(Command::Check, "cid1", args, &c)).unwrap_err();
    assert!(e.msg.contains("net.cid1"), "{}", e.msg);
}

#[test]
fn del_also_releases_the_legacy_handle() {
    let dir = tempfile::tempdir().unwrap();
    let c = conf(dir.path(), json!({}));
    let p = CalicoIpam;
    // An allocation made under Calico's pre-network handle (`<namespace>.<pod>`).
    let args = "K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=old";
    p.add(&inv(Command::Add, "x", "", &c)).unwrap();
    let s = store(dir.path());
    let ipam = Ipam::new(&s);
    ipam.assign_ip(&ipam::AssignIpRequest {
        ip: Some("10.244.9.9".parse().unwrap()),
        handle_id: "ns1.old".into(),
        hostname: "node-1".into(),
        ..Default::default()
    })
    .unwrap();
    p.del(&inv(Command::Del, "cid-new", args, &c)).unwrap();
    assert!(ipam
        .get_assignment("10.244.9.9".parse().unwrap())
        .unwrap()
        .is_none());
    assert_eq!(
        ipam.ips_by_handle("net.x").unwrap().len(),
        1,
        "others untouched"
    );
}

#[test]
fn pools_by_name_or_cidr_and_family_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = CalicoIpam;
    let c = conf(dir.path(), json!({}));
    p.add(&inv(Command::Add, "seed", "", &c)).unwrap();
    let s = store(dir.path());
    let mut pool = ipam::model::IpPool::from_json(
        &s.get(&ipam::Key::resource(
            ipam::ResourceKind::IpPool,
            "default-ipv4-ippool",
        ))
        .unwrap()
        .value,
    )
    .unwrap();
    pool.metadata.name = "second".into();
    pool.spec.cidr = "10.99.0.0/24".into();
    pool.spec.block_size = Some(28);
    Ipam::new(&s).create_pool(&pool).unwrap();

    for (i, entry) in ["second", "10.99.0.0/24"].into_iter().enumerate() {
        let c = conf(
            dir.path(),
            json!({"ipam": {"type": "calico-ipam", "ipv4_pools": [entry]}}),
        );
        let r = p.add(&inv(Command::Add, &format!("c{i}"), "", &c)).unwrap();
        let a = r.ips[0].address;
        assert!(a.to_string().starts_with("10.99.0."), "{a}");
        assert_eq!(a.prefix(), 28);
    }
    let c = conf(
        dir.path(),
        json!({"ipam": {"type": "calico-ipam", "ipv4_pools": ["fd00::/48"]}}),
    );
    let e = p.add(&inv(Command::Add, "bad", "", &c)).unwrap_err();
    assert!(e.msg.contains("isn't a IPv4 address"), "{}", e.msg);
    let c = conf(
        dir.path(),
        json!({"ipam": {"type": "calico-ipam", "ipv4_pools": ["nope"]}}),
    );
    let e = p.add(&inv(Command::Add, "bad", "", &c)).unwrap_err();
    assert!(e.msg.contains("error parsing pool \"nope\""), "{}", e.msg);
    assert!(
        Ipam::new(&s).ips_by_handle("net.bad").is_err(),
        "nothing allocated"
    );
}

#[test]
fn exhausted_pool_reports_calicos_message_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = CalicoIpam;
    // A /30 default pool with /30 blocks: four addresses.
    let c = conf(
        dir.path(),
        json!({"ipam": {"type": "calico-ipam", "default_ipv4_pool": "10.50.0.0/30", "default_ipv4_block_size": 30}}),
    );
    for i in 0..4 {
        p.add(&inv(Command::Add, &format!("c{i}"), "", &c)).unwrap();
    }
    let e = p.add(&inv(Command::Add, "c4", "", &c)).unwrap_err();
    assert!(
        e.msg.contains(
            "failed to request IPv4 addresses: Assigned 0 out of 1 requested IPv4 addresses"
        ),
        "{}",
        e.msg
    );
    let s = store(dir.path());
    assert!(Ipam::new(&s).ips_by_handle("net.c4").is_err());
}

#[test]
fn gc_releases_only_this_nodes_stale_handles_of_this_network() {
    let dir = tempfile::tempdir().unwrap();
    let p = CalicoIpam;
    let c = conf(dir.path(), json!({}));
    for cid in ["keep", "stale"] {
        p.add(&inv(Command::Add, cid, "", &c)).unwrap();
    }
    // Another node, and another network on this node: not ours to collect.
    let other_node = conf(dir.path(), json!({"nodename": "node-2"}));
    p.add(&inv(Command::Add, "remote", "", &other_node))
        .unwrap();
    let other_net = conf(dir.path(), json!({"name": "net2"}));
    p.add(&inv(Command::Add, "n2", "", &other_net)).unwrap();

    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    p.gc(&inv(Command::Gc, "", "", &gc)).unwrap();
    let s = store(dir.path());
    let ipam = Ipam::new(&s);
    assert_eq!(ipam.ips_by_handle("net.keep").unwrap().len(), 1);
    assert!(ipam.ips_by_handle("net.stale").is_err());
    assert_eq!(ipam.ips_by_handle("net.remote").unwrap().len(), 1);
    assert_eq!(ipam.ips_by_handle("net2.n2").unwrap().len(), 1);
    p.status(&inv(Command::Status, "", "", &c)).unwrap();
}

#[test]
fn bad_config_and_unsupported_datastores_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = CalicoIpam;
    let c = conf(dir.path(), json!({"datastore_type": "kubernetes"}));
    let e = p.add(&inv(Command::Add, "k", "", &c)).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidConfig);
    // Without the `kubernetes` feature the build says so; with it (cargo unifies features
    // across the workspace) the missing kubeconfig is the config error.
    assert!(
        e.msg.contains("no Kubernetes support") || e.msg.contains("no kubeconfig"),
        "{}",
        e.msg
    );
    let c = conf(
        dir.path(),
        json!({"ipam": {"type": "calico-ipam", "assign_ipv4": 1}}),
    );
    assert_eq!(
        p.add(&inv(Command::Add, "k", "", &c)).unwrap_err().code,
        ErrorCode::InvalidConfig
    );
}

#[test]
fn unreachable_etcd_is_code_11() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let c = conf(
        dir.path(),
        json!({"datastore_type": "etcdv3", "etcd_endpoints": format!("http://127.0.0.1:{port}")}),
    );
    let p = CalicoIpam;
    for command in [Command::Add, Command::Del] {
        let i = inv(command, "c", "", &c);
        let started = std::time::Instant::now();
        let e = match command {
            Command::Add => p.add(&i).unwrap_err(),
            _ => p.del(&i).unwrap_err(),
        };
        assert_eq!(e.code, ErrorCode::TryAgainLater, "{command:?}: {}", e.msg);
        // A refusal is an answer: reported at once, not after the 10 s operation timeout.
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(3),
            "{command:?} took {took:?}"
        );
    }
    let e = p.status(&inv(Command::Status, "", "", &c)).unwrap_err();
    assert_eq!(e.code, ErrorCode::PluginNotAvailable);
}

#[test]
fn malformed_etcd_endpoints_are_code_7_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = CalicoIpam;
    for endpoints in [
        "http://127.0.0.1:notaport",
        "ftp://127.0.0.1:2379",
        "http://[::1:2379",
    ] {
        let c = conf(
            dir.path(),
            json!({"datastore_type": "etcdv3", "etcd_endpoints": endpoints}),
        );
        for command in [Command::Add, Command::Del] {
            let i = inv(command, "c", "", &c);
            let e = match command {
                Command::Add => p.add(&i).unwrap_err(),
                _ => p.del(&i).unwrap_err(),
            };
            assert_eq!(e.code, ErrorCode::InvalidConfig, "{endpoints}: {}", e.msg);
            assert!(e.msg.contains("etcd_endpoints"), "{}", e.msg);
        }
    }
}

/// Zero setup on the local store: a config naming its pool by CIDR works on an empty store
/// (the named pool is created, not an unused default next to a "pool does not exist" error).
#[test]
fn empty_local_store_gets_the_pools_the_config_names() {
    let dir = tempfile::tempdir().unwrap();
    let c = conf(
        dir.path(),
        json!({"ipam": {"type": "calico-ipam", "ipv4_pools": ["10.88.0.0/16"]}}),
    );
    let r = CalicoIpam.add(&inv(Command::Add, "c1", "", &c)).unwrap();
    let ip = r.ips[0].address.ip();
    assert!(
        "10.88.0.0/16"
            .parse::<ipnetwork::IpNetwork>()
            .unwrap()
            .contains(ip),
        "{ip}"
    );
    let pools = Ipam::new(&store(dir.path())).list_pools().unwrap();
    let cidrs: Vec<&str> = pools.iter().map(|p| p.spec.cidr.as_str()).collect();
    assert_eq!(cidrs, vec!["10.88.0.0/16"], "no unused default pool");
}
