//! calicoctl end to end on real etcd (Debian `etcd-server`, started on free loopback ports),
//! plain and with mutual TLS; and a clear failure when etcd is unreachable.

mod common;

use std::time::{Duration, Instant};

use common::{scenario, Ctl};
use ipam_store_etcd::test_cluster::EtcdCluster;
use ipam_store_etcd::EtcdStore;

#[test]
fn admin_workflow_on_etcd() {
    let etcd = EtcdCluster::start(1).expect("start etcd (apt-get install etcd-server)");
    let eps = etcd.endpoints_csv();
    let ctl = Ctl::new(&[("DATASTORE_TYPE", "etcdv3"), ("ETCD_ENDPOINTS", &eps)]);
    let store = EtcdStore::connect(&etcd.config()).unwrap();
    scenario(&ctl, &store, &[], "Always");
    // Calico's own tooling sees the same keys: read one back with stock etcdctl.
    let raw = etcd
        .etcdctl_get("/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool")
        .unwrap()
        .expect("pool key present for etcdctl");
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["spec"]["cidr"], "192.168.0.0/16");
}

#[test]
fn etcd_with_mutual_tls() {
    let etcd = EtcdCluster::start_tls(1).expect("start etcd with TLS");
    let t = etcd.tls().unwrap().clone();
    let eps = etcd.endpoints_csv();
    let ctl = Ctl::new(&[
        ("ETCD_ENDPOINTS", &eps),
        ("ETCD_CA_CERT_FILE", t.ca_cert.to_str().unwrap()),
        ("ETCD_CERT_FILE", t.client_cert.to_str().unwrap()),
        ("ETCD_KEY_FILE", t.client_key.to_str().unwrap()),
    ]);
    // DATASTORE_TYPE defaults to etcdv3 when ETCD_ENDPOINTS is set.
    ctl.run(&["datastore", "init", "--ipv4-pool", "10.60.0.0/16"])
        .ok();
    let out = ctl.run(&["get", "ippools", "-o", "json"]).ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["items"][0]["spec"]["cidr"], "10.60.0.0/16");
    // A client certificate from another CA is refused: error, not a hang or a panic.
    let bad = Ctl::new(&[
        ("ETCD_ENDPOINTS", &eps),
        ("ETCD_CA_CERT_FILE", t.ca_cert.to_str().unwrap()),
        ("ETCD_CERT_FILE", t.foreign_client_cert.to_str().unwrap()),
        ("ETCD_KEY_FILE", t.foreign_client_key.to_str().unwrap()),
    ]);
    let o = bad.run(&["get", "ippools"]).failed();
    assert!(!o.stderr.is_empty(), "{o:#?}");
}

#[test]
fn unreachable_etcd_fails_clearly() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ep = format!("http://127.0.0.1:{port}");
    let ctl = Ctl::new(&[("DATASTORE_TYPE", "etcdv3"), ("ETCD_ENDPOINTS", &ep)]);
    let t = Instant::now();
    let o = ctl.run(&["ipam", "show"]).failed();
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        o.stderr.contains("unavailable") || o.stderr.contains(&ep),
        "{o:#?}"
    );
}

#[test]
fn operator_workflow_on_etcd() {
    let etcd = EtcdCluster::start(1).expect("start etcd");
    let eps = etcd.endpoints_csv();
    let ctl = Ctl::new(&[("DATASTORE_TYPE", "etcdv3"), ("ETCD_ENDPOINTS", &eps)]);
    let store = EtcdStore::connect(&etcd.config()).unwrap();
    common::operator_scenario(&ctl, &store, true, &format!("etcdv3 ({eps})"));
    // The reservation was kept where Calico keeps it until deleted; now gone.
    assert!(etcd
        .etcdctl_get("/calico/resources/v3/projectcalico.org/ipreservations/keep-out")
        .unwrap()
        .is_none());
}
