//! EtcdStore (ipam::Store) against a real etcd: the shared conformance suite plus checks that
//! the data sits at Calico's etcdv3 paths, readable by the stock etcdctl.

use ipam::{Key, Revision, Store, StoreError};
use ipam_store_etcd::test_cluster::EtcdCluster;
use ipam_store_etcd::EtcdStore;

fn start() -> (EtcdCluster, EtcdStore) {
    let etcd = EtcdCluster::start(1).expect("start etcd (apt-get install etcd-server etcd-client)");
    let store = EtcdStore::connect(&etcd.config()).unwrap();
    (etcd, store)
}

#[test]
fn conformance() {
    let (_etcd, store) = start();
    ipam::conformance::run_all(&store);
}

#[test]
fn keeps_calicos_json_field_by_field() {
    let (_etcd, store) = start();
    ipam::conformance::calico_fixtures(&store);
}

#[test]
fn objects_live_at_calico_paths_verbatim() {
    let (etcd, store) = start();
    let cidr = "10.244.1.0/26".parse().unwrap();
    let block = r#"{"cidr":"10.244.1.0/26","affinity":"host:node1","allocations":[],"unallocated":[],"attributes":[],"deleted":false}"#;
    let rev = store.create(&Key::block(cidr), block).unwrap();
    store
        .create(
            &Key::host_affinity("node1", cidr),
            r#"{"state":"confirmed","deleted":false}"#,
        )
        .unwrap();
    store
        .create(
            &Key::handle("k8s-pod-network.abc"),
            r#"{"block":{"10.244.1.0/26":1},"deleted":false}"#,
        )
        .unwrap();

    let raw = |path: &str| String::from_utf8(etcd.etcdctl_get(path).unwrap().unwrap()).unwrap();
    assert_eq!(
        raw("/calico/ipam/v2/assignment/ipv4/block/10.244.1.0-26"),
        block
    );
    assert_eq!(
        raw("/calico/ipam/v2/host/node1/ipv4/block/10.244.1.0-26"),
        r#"{"state":"confirmed","deleted":false}"#
    );
    assert_eq!(
        raw("/calico/ipam/v2/handle/k8s-pod-network.abc"),
        r#"{"block":{"10.244.1.0/26":1},"deleted":false}"#
    );
    // The revision is etcd's mod_revision, as in Calico (KVPair.Revision).
    let kv = store
        .client()
        .get("/calico/ipam/v2/assignment/ipv4/block/10.244.1.0-26")
        .unwrap()
        .unwrap();
    assert_eq!(rev, Revision::from_i64(kv.mod_revision));
}

#[test]
fn foreign_rows_are_skipped_and_bad_input_is_an_error() {
    let (_etcd, store) = start();
    let c = store.client();
    // Calico's legacy host marker sits under the affinity prefix and is not an affinity.
    c.put("/calico/ipam/v2/host/node1", b"{}").unwrap();
    c.put("/calico/ipam/v2/host/node1/ipv4/block/10.0.0.0-26", b"{}")
        .unwrap();
    let listed = store
        .list(&ipam::ListPrefix::Affinities {
            host: Some("node1".into()),
            version: None,
        })
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].key,
        Key::host_affinity("node1", "10.0.0.0/26".parse().unwrap())
    );

    // A revision we did not hand out is rejected rather than sent to etcd.
    let k = Key::handle("h");
    store.create(&k, "{}").unwrap();
    assert!(matches!(
        store.update(&k, "{}", &Revision::new("abc")),
        Err(StoreError::Other(_))
    ));
    assert!(matches!(
        store.update(&k, "{}", &Revision::from_i64(0)),
        Err(StoreError::Other(_))
    ));
    // A '/' in a handle id would alias another key.
    assert!(matches!(
        store.create(&Key::handle("a/b"), "{}"),
        Err(StoreError::Other(_))
    ));
    assert_eq!(c.get("/calico/ipam/v2/handle/a/b").unwrap(), None);
    // Non-UTF-8 bytes written by someone else: an error, not a panic.
    c.put("/calico/ipam/v2/handle/bin", &[0xff, 0xfe]).unwrap();
    assert!(matches!(
        store.get(&Key::handle("bin")),
        Err(StoreError::Other(_))
    ));
}

#[test]
fn unreachable_store_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = ipam_store_etcd::EtcdConfig::with_endpoints(&format!("127.0.0.1:{port}"));
    cfg.timeout = std::time::Duration::from_millis(500);
    let store = EtcdStore::connect(&cfg).unwrap();
    assert!(matches!(
        store.get(&Key::IpamConfig),
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.create(&Key::IpamConfig, "{}"),
        Err(StoreError::Unavailable(_))
    ));
}

/// The plugin call's deadline bounds every operation on a live cluster too; once the whole
/// cluster is down, refused connections are reported at once, not after the 10 s timeout.
#[test]
fn call_deadline_and_refused_cluster_fail_fast() {
    let mut etcd = EtcdCluster::start(1).expect("start etcd");
    let mut cfg = etcd.config();
    cfg.timeout = std::time::Duration::from_secs(10);
    let live = EtcdStore::connect(&cfg)
        .unwrap()
        .with_deadline(std::time::Instant::now() + std::time::Duration::from_secs(30));
    live.create(&Key::handle("h"), "{}").unwrap();
    let expired = EtcdStore::connect(&cfg)
        .unwrap()
        .with_deadline(std::time::Instant::now());
    let e = expired.get(&Key::handle("h")).unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert!(e.to_string().contains("deadline"), "{e}");

    etcd.kill_member(0).unwrap();
    let started = std::time::Instant::now();
    let e = live.get(&Key::handle("h")).unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(3), "took {took:?}");
}

#[test]
fn ipreservations_at_calico_path_and_honoured() {
    let (etcd, store) = start();
    let key = ipam::Key::resource(ipam::ResourceKind::IpReservation, "keep-out");
    // The v3 JSON Calico's etcd backend writes for `calicoctl apply` of an IPReservation.
    let calico = r#"{"kind":"IPReservation","apiVersion":"projectcalico.org/v3","metadata":{"name":"keep-out","uid":"u1","creationTimestamp":"2026-08-01T10:00:00Z"},"spec":{"reservedCIDRs":["10.55.0.0/31"]}}"#;
    store.create(&key, calico).unwrap();
    let raw = etcd
        .etcdctl_get("/calico/resources/v3/projectcalico.org/ipreservations/keep-out")
        .unwrap()
        .expect("reservation at Calico's path");
    assert_eq!(String::from_utf8(raw).unwrap(), calico);
    let ipam = ipam::Ipam::with_options(
        &store,
        ipam::IpamOptions {
            require_node: false,
            ..Default::default()
        },
    );
    ipam.create_pool(&ipam::model::IpPool::new(
        "IPPool",
        "p",
        ipam::model::IpPoolSpec {
            cidr: "10.55.0.0/30".into(),
            block_size: Some(30),
            ..Default::default()
        },
    ))
    .unwrap();
    let got = ipam
        .auto_assign(&ipam::AutoAssignRequest {
            num_v4: 2,
            handle_id: "h".into(),
            hostname: "n1".into(),
            ..Default::default()
        })
        .unwrap();
    let ips: Vec<String> = got.ipv4.iter().map(|n| n.ip().to_string()).collect();
    assert_eq!(ips, ["10.55.0.2", "10.55.0.3"]);
}
