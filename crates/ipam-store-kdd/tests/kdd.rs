//! KddStore against the test API server: the store contract, Calico's object shapes as seen
//! on the wire, concurrent allocation through the allocator, and API-down behaviour.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use ipam::keys::{Key, ListPrefix};
use ipam::model::AllocationBlock;
use ipam::{AutoAssignRequest, Ipam, IpamError, Store, StoreError};
use ipam_store_kdd::{KddStore, Timeouts};
use serde_json::json;
use test_apiserver::TestApiServer;

const CRD: &str = "/apis/crd.projectcalico.org/v1";

fn store(api: &TestApiServer) -> KddStore {
    KddStore::open(&api.kubeconfig_path()).expect("open KDD store")
}

/// A Calico IPPool CRD and Kubernetes Nodes, as a cluster with Calico installed has them.
fn seed_cluster(api: &TestApiServer, pool_cidr: &str, block: u8, nodes: &[&str]) {
    api.put(
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
        "metadata": {"name": "default-ipv4-ippool"},
        "spec": {"cidr": pool_cidr, "blockSize": block, "ipipMode": "Never",
                 "vxlanMode": "Never", "natOutgoing": true, "nodeSelector": "all()"}}),
    )
    .unwrap();
    for n in nodes {
        api.put(json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}}}))
            .unwrap();
    }
}

fn assign(ipam: &Ipam<'_>, node: &str, handle: &str) -> Result<Vec<IpAddr>, IpamError> {
    let req = AutoAssignRequest {
        num_v4: 1,
        handle_id: handle.into(),
        hostname: node.into(),
        attrs: [
            ("node".to_string(), node.to_string()),
            ("pod".to_string(), handle.to_string()),
            ("namespace".to_string(), "default".to_string()),
        ]
        .into(),
        ..Default::default()
    };
    Ok(ipam
        .auto_assign(&req)?
        .ipv4
        .iter()
        .map(|n| n.ip())
        .collect())
}

#[test]
fn conforms_to_the_store_contract() {
    let api = TestApiServer::start().unwrap();
    ipam::conformance::run_all(&store(&api));
}

#[test]
fn keeps_calicos_json_field_by_field() {
    let api = TestApiServer::start().unwrap();
    ipam::conformance::calico_fixtures(&store(&api));
}

#[test]
fn writes_calico_kdd_objects() {
    let api = TestApiServer::start().unwrap();
    seed_cluster(&api, "10.244.0.0/16", 26, &["node1"]);
    let s = store(&api);
    let ipam = Ipam::new(&s);
    let handle = "k8s-pod-network.ABCDEF0123";
    let ips = assign(&ipam, "node1", handle).unwrap();
    assert_eq!(ips.len(), 1);
    // Calico picks a random free block of the pool; find which one from the address.
    let net = ipnetwork::IpNetwork::new(ips[0], 26).unwrap();
    let cidr = ipnetwork::IpNetwork::new(net.network(), 26).unwrap();
    let bname = ipam_store_kdd::names::block_name(&cidr);
    assert!(
        bname.starts_with("10-244-") && bname.ends_with("-26"),
        "{bname}"
    );
    let block = api
        .get(&format!("{CRD}/ipamblocks/{bname}"))
        .expect("IPAMBlock");
    let spec = &block["spec"];
    assert_eq!(spec["cidr"], cidr.to_string());
    assert_eq!(spec["affinity"], "host:node1");
    assert_eq!(spec["strictAffinity"], false);
    assert_eq!(spec["allocations"].as_array().unwrap().len(), 64);
    assert_eq!(
        spec["allocations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| **a == 0)
            .count(),
        1
    );
    assert_eq!(spec["attributes"][0]["handle_id"], handle);
    assert_eq!(spec["attributes"][0]["secondary"]["node"], "node1");
    assert!(spec.get("affinity_claim_time").is_none());

    let aff = api
        .get(&format!("{CRD}/blockaffinities/node1-{bname}"))
        .expect("BlockAffinity");
    assert_eq!(aff["spec"]["state"], "confirmed");
    assert_eq!(aff["spec"]["node"], "node1");
    assert_eq!(aff["spec"]["cidr"], cidr.to_string());
    assert_eq!(aff["spec"]["deleted"], "false");
    assert_eq!(
        aff["metadata"]["labels"]["projectcalico.org/ip-version"],
        "4"
    );
    assert_eq!(
        aff["metadata"]["labels"]["projectcalico.org/hostname-hash"]
            .as_str()
            .unwrap()
            .len(),
        52
    );

    let h = api
        .get(&format!("{CRD}/ipamhandles/k8s-pod-network.abcdef0123"))
        .expect("IPAMHandle named by the lower-cased id");
    assert_eq!(h["spec"]["handleID"], handle);
    assert_eq!(h["spec"]["block"][cidr.to_string()], 1);

    // The allocator reads back what it wrote, by the original (mixed-case) handle.
    assert_eq!(ipam.release_by_handle(handle).unwrap(), ips);
    assert!(api
        .get(&format!("{CRD}/ipamhandles/k8s-pod-network.abcdef0123"))
        .is_none());
    let block = api.get(&format!("{CRD}/ipamblocks/{bname}")).unwrap();
    assert!(block["spec"]["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a.is_null()));
}

#[test]
fn reads_objects_calico_wrote_and_finishes_soft_deletes() {
    let api = TestApiServer::start().unwrap();
    // An IPAMConfig and a soft-deleted handle as Calico's KDD backend leaves them.
    api.put(
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMConfig",
        "metadata": {"name": "default"},
        "spec": {"strictAffinity": true, "autoAllocateBlocks": true, "maxBlocksPerHost": 4}}),
    )
    .unwrap();
    api.put(
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMHandle",
        "metadata": {"name": "gone"}, "spec": {"handleID": "gone", "block": {}, "deleted": true}}),
    )
    .unwrap();
    let s = store(&api);
    let cfg = s.get(&Key::IpamConfig).unwrap();
    let v: serde_json::Value = serde_json::from_str(&cfg.value).unwrap();
    assert_eq!(
        v,
        json!({"strict_affinity": true, "auto_allocate_blocks": true, "maxBlocksPerHost": 4})
    );
    assert!(s.list(&ListPrefix::Handles).unwrap().is_empty());
    assert!(matches!(
        s.get(&Key::handle("gone")),
        Err(StoreError::NotFound(_))
    ));
    assert!(
        api.get(&format!("{CRD}/ipamhandles/gone")).is_none(),
        "reader must finish Calico's two-step delete"
    );
}

#[test]
fn concurrent_allocation_never_duplicates() {
    let api = TestApiServer::start().unwrap();
    // Small blocks so threads on a node contend on the same block and borrow across nodes.
    seed_cluster(&api, "10.50.0.0/24", 29, &["node-a", "node-b"]);
    // As in the issue: 2 nodes x 25 parallel ADDs, plus a second round on each thread.
    let threads = 50;
    let rounds = 2;
    let barrier = Arc::new(Barrier::new(threads));
    let got: Arc<Mutex<Vec<(String, IpAddr)>>> = Arc::default();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (barrier, got) = (barrier.clone(), got.clone());
            // One store (client + runtime) per thread, like separate plugin processes.
            let s = store(&api);
            std::thread::spawn(move || {
                let ipam = Ipam::new(&s);
                let node = if t % 2 == 0 { "node-a" } else { "node-b" };
                barrier.wait();
                for r in 0..rounds {
                    let h = format!("k8s-pod-network.t{t}r{r}");
                    let ips = assign(&ipam, node, &h).unwrap_or_else(|e| panic!("{h}: {e}"));
                    let mut g = got.lock().unwrap();
                    g.extend(ips.into_iter().map(|ip| (h.clone(), ip)));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), threads * rounds);
    let distinct: HashSet<IpAddr> = got.iter().map(|(_, ip)| *ip).collect();
    assert_eq!(distinct.len(), got.len(), "an IP was handed out twice");
    eprintln!(
        "{} assignments, {} requests, {} answered 409",
        got.len(),
        api.request_count(),
        api.count_responses(409)
    );
    assert!(
        api.count_responses(409) > 0,
        "the test must actually exercise 409 retries"
    );

    // The datastore agrees with what was handed out.
    let s = store(&api);
    let mut stored = HashSet::new();
    for kv in s.list(&ListPrefix::Blocks { version: None }).unwrap() {
        let b = AllocationBlock::from_json(&kv.value).unwrap();
        for o in 0..b.allocations.len() {
            if b.handle_of(o).is_some() {
                assert!(stored.insert(b.ordinal_to_ip(o)));
            }
        }
    }
    assert_eq!(stored, distinct);

    let ipam = Ipam::new(&s);
    for (h, _) in &got {
        ipam.release_by_handle(h).unwrap();
    }
    assert!(s.list(&ListPrefix::Handles).unwrap().is_empty());
    for kv in s.list(&ListPrefix::Blocks { version: None }).unwrap() {
        let b = AllocationBlock::from_json(&kv.value).unwrap();
        assert!((0..b.allocations.len()).all(|o| b.handle_of(o).is_none()));
    }
}

#[test]
fn api_down_is_unavailable() {
    let api = TestApiServer::start().unwrap();
    seed_cluster(&api, "10.60.0.0/16", 26, &["node1"]);
    let timeouts = Timeouts {
        connect: Duration::from_secs(1),
        read: Duration::from_secs(1),
        call: Duration::from_secs(2),
    };
    let s = KddStore::open_with(&api.kubeconfig_path(), timeouts).unwrap();
    s.list(&ListPrefix::Handles).unwrap();

    api.set_down(true);
    assert!(matches!(
        s.get(&Key::IpamConfig),
        Err(StoreError::Unavailable(_))
    ));
    let ipam = Ipam::new(&s);
    match assign(&ipam, "node1", "k8s-pod-network.down") {
        Err(IpamError::Store(StoreError::Unavailable(_))) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    api.set_down(false);
    assert_eq!(
        assign(&ipam, "node1", "k8s-pod-network.up").unwrap().len(),
        1
    );

    api.set_stall(true);
    let t0 = Instant::now();
    assert!(matches!(
        s.list(&ListPrefix::Handles),
        Err(StoreError::Unavailable(_))
    ));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "timeouts must bound a stalled call"
    );
    api.set_stall(false);

    // Wrong credentials are not "try again later".
    let bad = api.kubeconfig_path().with_file_name("bad-kubeconfig");
    api.write_kubeconfig(&bad, "wrong-token").unwrap();
    let s = KddStore::open(&bad).unwrap();
    assert!(matches!(s.get(&Key::IpamConfig), Err(StoreError::Other(_))));
}

#[test]
fn finds_and_labels_affinities_written_before_calico_3_31() {
    let api = TestApiServer::start().unwrap();
    let path = format!("{CRD}/blockaffinities/node1-10-70-0-0-26");
    api.put(json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "BlockAffinity",
        "metadata": {"name": "node1-10-70-0-0-26"},
        "spec": {"state": "confirmed", "node": "node1", "cidr": "10.70.0.0/26", "deleted": "false"}}))
        .unwrap();
    let s = store(&api);
    let mine = ListPrefix::Affinities {
        host: Some("node1".into()),
        version: None,
    };
    let all_v4 = ListPrefix::Affinities {
        host: None,
        version: Some(ipam::IpVersion::V4),
    };
    assert_eq!(
        s.list(&all_v4).unwrap().len(),
        1,
        "cluster-wide listing sees unlabelled rows"
    );
    let found = s.list(&mine).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].key,
        Key::host_affinity("node1", "10.70.0.0/26".parse().unwrap())
    );
    let labels = &api.get(&path).unwrap()["metadata"]["labels"];
    assert_eq!(labels["projectcalico.org/ip-version"], "4");
    // The returned revision is the labelled object's, so a CAS on it succeeds.
    assert_eq!(
        api.get(&path).unwrap()["metadata"]["resourceVersion"],
        found[0].revision.as_str()
    );
    let before = api.request_count();
    assert_eq!(s.list(&mine).unwrap().len(), 1);
    assert_eq!(
        api.request_count(),
        before + 1,
        "labelled rows need one LIST"
    );
    let other = ListPrefix::Affinities {
        host: Some("node2".into()),
        version: None,
    };
    assert!(s.list(&other).unwrap().is_empty());
}

/// A node's first ADD (no affinity yet) asks the API server for its own affinities and for
/// unlabelled ones (none in an upgraded cluster), never for every affinity of the cluster; an
/// older node's unlabelled row is left to that node.
#[test]
fn first_add_on_a_new_node_lists_no_other_nodes_affinities() {
    let api = TestApiServer::start().unwrap();
    seed_cluster(&api, "10.80.0.0/16", 26, &["new-node"]);
    let s = store(&api);
    for i in 0..20u8 {
        let key = Key::host_affinity(
            &format!("node{i}"),
            format!("10.80.{i}.0/26").parse().unwrap(),
        );
        s.create(&key, r#"{"state":"confirmed","deleted":false}"#)
            .unwrap();
    }
    let old = format!("{CRD}/blockaffinities/old-node-10-80-100-0-26");
    api.put(json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "BlockAffinity",
        "metadata": {"name": "old-node-10-80-100-0-26"},
        "spec": {"state": "confirmed", "node": "old-node", "cidr": "10.80.100.0/26", "deleted": "false"}}))
        .unwrap();
    let before = api.requests().len();
    let ipam = Ipam::new(&s);
    assert_eq!(
        assign(&ipam, "new-node", "k8s-pod-network.first")
            .unwrap()
            .len(),
        1
    );
    let lists: Vec<String> = api.requests()[before..]
        .iter()
        .filter(|r| {
            r.starts_with(&format!("GET {CRD}/blockaffinities")) && !r.contains("/blockaffinities/")
        })
        .cloned()
        .collect();
    let hash = ipam_store_kdd::names::hostname_hash("new-node");
    assert_eq!(lists.len(), 2, "{lists:?}");
    assert!(
        lists[0].contains(&format!(
            "labelSelector=projectcalico.org%2Fhostname-hash%3D{hash}"
        )),
        "{lists:?}"
    );
    assert!(
        lists[1].ends_with("labelSelector=%21projectcalico.org%2Faffinity-type"),
        "{lists:?}"
    );
    assert!(
        api.get(&old).unwrap()["metadata"]["labels"].is_null(),
        "old-node's row untouched"
    );
    // The claim is labelled: the next ADD finds it with one LIST.
    let before = api.requests().len();
    assign(&ipam, "new-node", "k8s-pod-network.second").unwrap();
    let lists = api.requests()[before..]
        .iter()
        .filter(|r| r.starts_with(&format!("GET {CRD}/blockaffinities?")))
        .count();
    assert_eq!(lists, 1);
}

const V3: &str = "/apis/projectcalico.org/v3";

fn v3_store(api: &TestApiServer) -> KddStore {
    store(api).with_api_group(ipam_store_kdd::ApiGroup::V3)
}

#[test]
fn conforms_to_the_store_contract_in_projectcalico_org_v3() {
    let api = TestApiServer::start().unwrap();
    ipam::conformance::run_all(&v3_store(&api));
}

/// Calico's exact JSON (cooling blocks, affinities in every state, handle, config, pool with a
/// status) through the native v3 objects, read back field by field and allocated from.
#[test]
fn calico_fixtures_in_projectcalico_org_v3() {
    let api = TestApiServer::start().unwrap();
    ipam::conformance::calico_fixtures(&v3_store(&api));
}

#[test]
fn v3_group_writes_projectcalico_org_v3_objects_only() {
    let api = TestApiServer::start().unwrap();
    api.put(
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
        "metadata": {"name": "default-ipv4-ippool"},
        "spec": {"cidr": "10.245.0.0/16", "blockSize": 26, "ipipMode": "Never",
                 "vxlanMode": "Never", "natOutgoing": true, "nodeSelector": "all()"}}),
    )
    .unwrap();
    api.put(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"}}))
        .unwrap();
    let s = v3_store(&api);
    let ipam = Ipam::new(&s);
    let handle = "k8s-pod-network.V3";
    let ips = assign(&ipam, "node1", handle).unwrap();
    let net = ipnetwork::IpNetwork::new(ips[0], 26).unwrap();
    let cidr = ipnetwork::IpNetwork::new(net.network(), 26).unwrap();
    let bname = ipam_store_kdd::names::block_name(&cidr);
    let block = api
        .get(&format!("{V3}/ipamblocks/{bname}"))
        .expect("v3 IPAMBlock");
    assert_eq!(block["apiVersion"], "projectcalico.org/v3");
    assert_eq!(block["spec"]["affinity"], "host:node1");
    let aff = api
        .get(&format!("{V3}/blockaffinities/node1-{bname}"))
        .expect("v3 BlockAffinity");
    assert_eq!(aff["spec"]["deleted"], json!(false), "a bool in v3");
    assert_eq!(aff["spec"]["state"], "confirmed");
    let h = api
        .get(&format!("{V3}/ipamhandles/k8s-pod-network.v3"))
        .expect("v3 IPAMHandle");
    assert_eq!(h["spec"]["handleID"], handle);
    // The IPAM config singleton is an IPAMConfiguration in v3.
    s.create(&Key::IpamConfig, r#"{"strict_affinity":true}"#)
        .unwrap();
    let cfg = api
        .get(&format!("{V3}/ipamconfigurations/default"))
        .expect("v3 IPAMConfiguration");
    assert_eq!(cfg["kind"], "IPAMConfiguration");
    assert_eq!(cfg["spec"]["strictAffinity"], true);
    // Nothing in the v1 group.
    for path in [
        format!("ipamblocks/{bname}"),
        format!("blockaffinities/node1-{bname}"),
        "ipamhandles/k8s-pod-network.v3".to_string(),
        "ipamconfigs/default".to_string(),
    ] {
        assert!(api.get(&format!("{CRD}/{path}")).is_none(), "{path} in v1");
    }
    assert_eq!(ipam.release_by_handle(handle).unwrap(), ips);
    assert!(api
        .get(&format!("{V3}/ipamhandles/k8s-pod-network.v3"))
        .is_none());
}

#[test]
fn ipreservations_are_calico_crds_and_honoured() {
    let api = TestApiServer::start().unwrap();
    seed_cluster(&api, "10.66.0.0/30", 30, &["node1"]);
    // As Calico's KDD backend stores `calicoctl apply` of an IPReservation.
    api.put(
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPReservation",
        "metadata": {"name": "from-calico"},
        "spec": {"reservedCIDRs": ["10.66.0.0/31"]}}),
    )
    .unwrap();
    let s = store(&api);
    let ipam = Ipam::new(&s);
    let mut got: Vec<IpAddr> = (0..2)
        .flat_map(|i| assign(&ipam, "node1", &format!("h{i}")).unwrap())
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "10.66.0.2".parse::<IpAddr>().unwrap(),
            "10.66.0.3".parse().unwrap()
        ]
    );
    assert!(
        assign(&ipam, "node1", "h3").is_err(),
        "only reserved addresses left"
    );

    // Written through the store: a crd.projectcalico.org/v1 object with the same spec.
    let key = Key::resource(ipam::ResourceKind::IpReservation, "ours");
    s.create(
        &key,
        r#"{"kind":"IPReservation","apiVersion":"projectcalico.org/v3","metadata":{"name":"ours"},"spec":{"reservedCIDRs":["10.9.9.9"]}}"#,
    )
    .unwrap();
    let o = api
        .get(&format!("{CRD}/ipreservations/ours"))
        .expect("IPReservation CRD");
    assert_eq!(o["apiVersion"], "crd.projectcalico.org/v1");
    assert_eq!(o["kind"], "IPReservation");
    assert_eq!(o["spec"]["reservedCIDRs"], json!(["10.9.9.9"]));
    let back: serde_json::Value = serde_json::from_str(&s.get(&key).unwrap().value).unwrap();
    assert_eq!(back["spec"]["reservedCIDRs"], json!(["10.9.9.9"]));
    assert_eq!(back["apiVersion"], "projectcalico.org/v3");
}

/// Allocates one address through a store that discovers its API group; returns the block's
/// object name.
fn assign_discovered(api: &TestApiServer) -> String {
    let s = store(api).with_discovered_api_group();
    let ips = assign(&Ipam::new(&s), "node1", "k8s-pod-network.disc").unwrap();
    let net = ipnetwork::IpNetwork::new(ips[0], 26).unwrap();
    let cidr = ipnetwork::IpNetwork::new(net.network(), 26).unwrap();
    ipam_store_kdd::names::block_name(&cidr)
}

fn discovery_requests(api: &TestApiServer) -> usize {
    api.requests().iter().filter(|r| *r == "GET /apis").count()
}

#[test]
fn discovers_projectcalico_org_v3_when_only_the_v3_crds_are_installed() {
    let api = TestApiServer::start().unwrap();
    api.uninstall_group("crd.projectcalico.org");
    api.put(
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
        "metadata": {"name": "default-ipv4-ippool"},
        "spec": {"cidr": "10.245.0.0/16", "blockSize": 26, "nodeSelector": "all()"}}),
    )
    .unwrap();
    api.put(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"}}))
        .unwrap();
    let bname = assign_discovered(&api);
    assert!(api.get(&format!("{V3}/ipamblocks/{bname}")).is_some());
    assert!(api.get(&format!("{CRD}/ipamblocks/{bname}")).is_none());
    assert_eq!(discovery_requests(&api), 1, "asked once per store");
}

#[test]
fn discovers_crd_projectcalico_org_v1_when_the_v1_crds_are_installed() {
    for uninstall_v3 in [true, false] {
        let api = TestApiServer::start().unwrap();
        if uninstall_v3 {
            api.uninstall_group("projectcalico.org");
        }
        // With both groups served (v3 is Calico's API server over the v1 CRDs), v1 is used.
        seed_cluster(&api, "10.246.0.0/16", 26, &["node1"]);
        let bname = assign_discovered(&api);
        assert!(api.get(&format!("{CRD}/ipamblocks/{bname}")).is_some());
        assert!(api.get(&format!("{V3}/ipamblocks/{bname}")).is_none());
        assert_eq!(discovery_requests(&api), 1);
    }
}

#[test]
fn discovery_against_an_unreachable_server_is_unavailable_and_retried() {
    let api = TestApiServer::start().unwrap();
    api.uninstall_group("crd.projectcalico.org");
    let s = store(&api).with_discovered_api_group();
    api.set_down(true);
    assert!(matches!(
        s.get(&Key::IpamConfig),
        Err(StoreError::Unavailable(_))
    ));
    api.set_down(false);
    s.create(&Key::IpamConfig, r#"{"strict_affinity":true}"#)
        .unwrap();
    assert!(api
        .get(&format!("{V3}/ipamconfigurations/default"))
        .is_some());
}
