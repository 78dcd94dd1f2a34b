//! The ipam allocator on a real etcd: 2 nodes x 25 parallel assignments, each on its own
//! connection (like 50 concurrent calico-ipam processes, here without the per-node flock so
//! the CAS paths are exercised), then parallel release of everything.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipam::model::{AllocationBlock, IpPool, IpPoolSpec, Node};
use ipam::{AutoAssignRequest, Ipam, Key, ListPrefix, ResourceKind, Store};
use ipam_store_etcd::test_cluster::EtcdCluster;
use ipam_store_etcd::{EtcdConfig, EtcdStore};

const NODES: [&str; 2] = ["node-a", "node-b"];
const PER_NODE: usize = 25;

fn connect(cfg: &EtcdConfig) -> EtcdStore {
    EtcdStore::connect(cfg).expect("connect")
}

/// Runs `f(node, i)` for every node and index on its own thread with its own connection.
fn parallel<T: Send>(cfg: &EtcdConfig, f: impl Fn(&EtcdStore, &str, usize) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = NODES
            .iter()
            .flat_map(|node| (0..PER_NODE).map(move |i| (*node, i)))
            .map(|(node, i)| {
                let f = &f;
                s.spawn(move || f(&connect(cfg), node, i))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn handle(node: &str, i: usize) -> String {
    format!("k8s-pod-network.{node}-c{i}")
}

#[test]
fn two_nodes_times_25_parallel_assignments_then_release() {
    let etcd = EtcdCluster::start(1).expect("start etcd");
    let mut cfg = etcd.config();
    cfg.timeout = std::time::Duration::from_secs(30);
    let admin = connect(&cfg);
    // /29 blocks: each node needs several blocks, so block claims race too.
    let spec = IpPoolSpec {
        cidr: "10.77.0.0/24".into(),
        block_size: Some(29),
        ..Default::default()
    };
    Ipam::new(&admin)
        .create_pool(&IpPool::new("IPPool", "pool-a", spec))
        .unwrap();
    for node in NODES {
        let n = Node::new("Node", node, Default::default());
        admin
            .create(&Key::resource(ResourceKind::Node, node), &n.to_json())
            .unwrap();
    }

    let start = std::time::Instant::now();
    let assigned: Vec<(String, String, IpAddr)> = parallel(&cfg, |store, node, i| {
        let req = AutoAssignRequest {
            num_v4: 1,
            handle_id: handle(node, i),
            hostname: node.to_string(),
            attrs: BTreeMap::from([("node".to_string(), node.to_string())]),
            ..Default::default()
        };
        let r = Ipam::new(store).auto_assign(&req).expect("auto_assign");
        assert_eq!(r.ipv4.len(), 1);
        (node.to_string(), handle(node, i), r.ipv4[0].ip())
    });
    eprintln!("50 parallel assignments took {:?}", start.elapsed());

    let ips: BTreeSet<IpAddr> = assigned.iter().map(|(_, _, ip)| *ip).collect();
    assert_eq!(ips.len(), 50, "duplicate addresses: {assigned:?}");
    let pool: ipnetwork::IpNetwork = "10.77.0.0/24".parse().unwrap();
    assert!(ips.iter().all(|ip| pool.contains(*ip)));

    // What etcd holds (read through etcdctl, i.e. as Calico tooling sees it): every address
    // allocated exactly once, under its handle, in a block affine to the requesting node.
    let mut stored: BTreeMap<IpAddr, (String, String)> = BTreeMap::new();
    for kv in admin.list(&ListPrefix::Blocks { version: None }).unwrap() {
        let raw = etcd.etcdctl_get(&kv.key.path()).unwrap().unwrap();
        let block = AllocationBlock::from_json(std::str::from_utf8(&raw).unwrap()).unwrap();
        let host = block.host().unwrap_or_default().to_string();
        for o in 0..block.allocations.len() {
            if let Some(h) = block.handle_of(o) {
                let prev = stored.insert(block.ordinal_to_ip(o), (h.to_string(), host.clone()));
                assert!(prev.is_none(), "{} allocated twice", block.ordinal_to_ip(o));
            }
        }
    }
    assert_eq!(stored.len(), 50);
    for (node, h, ip) in &assigned {
        assert_eq!(stored[ip], (h.clone(), node.clone()), "{ip}");
        let handle_json = etcd
            .etcdctl_get(&format!("/calico/ipam/v2/handle/{h}"))
            .unwrap()
            .expect("handle written");
        assert!(String::from_utf8(handle_json).unwrap().contains(":1}"));
    }
    for node in NODES {
        let affinities = admin
            .list(&ListPrefix::Affinities {
                host: Some(node.into()),
                version: None,
            })
            .unwrap();
        assert!(
            affinities.len() >= PER_NODE.div_ceil(8),
            "{node}: {affinities:?}"
        );
    }

    let start = std::time::Instant::now();
    let released = parallel(&cfg, |store, node, i| {
        Ipam::new(store)
            .release_by_handle(&handle(node, i))
            .expect("release")
    });
    eprintln!("50 parallel releases took {:?}", start.elapsed());
    let released: BTreeSet<IpAddr> = released.into_iter().flatten().collect();
    assert_eq!(released, ips);

    assert!(admin.list(&ListPrefix::Handles).unwrap().is_empty());
    for kv in admin.list(&ListPrefix::Blocks { version: None }).unwrap() {
        let block = AllocationBlock::from_json(&kv.value).unwrap();
        assert_eq!(block.allocated_count(), 0, "{}", kv.key);
    }
}

/// A handle holding addresses in more blocks than etcd takes operations in one Txn (128):
/// the DEL's release frees all of them and deletes the handle, instead of failing on every
/// retry with "too many operations in txn request" and leaking the pod's addresses.
#[test]
fn a_handle_spanning_more_blocks_than_one_txn_is_released_whole() {
    let etcd = EtcdCluster::start(1).expect("start etcd");
    let store = connect(&etcd.config());
    let ipam = Ipam::new(&store);
    let spec = IpPoolSpec {
        cidr: "10.78.0.0/16".into(),
        block_size: Some(29),
        ..Default::default()
    };
    ipam.create_pool(&IpPool::new("IPPool", "pool-big", spec))
        .unwrap();
    let n = Node::new("Node", "node-a", Default::default());
    store
        .create(&Key::resource(ResourceKind::Node, "node-a"), &n.to_json())
        .unwrap();
    let big = "k8s-pod-network.big";
    // One address in each of 130 /29 blocks, all under one handle.
    let ips: BTreeSet<IpAddr> = (0..130u32)
        .map(|i| IpAddr::from(std::net::Ipv4Addr::from(0x0a4e_0000 + i * 8 + 1)))
        .collect();
    for ip in &ips {
        ipam.assign_ip(&ipam::AssignIpRequest {
            ip: Some(*ip),
            handle_id: big.into(),
            hostname: "node-a".into(),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("assign {ip}: {e}"));
    }
    assert_eq!(
        store
            .list(&ListPrefix::Blocks { version: None })
            .unwrap()
            .len(),
        130
    );

    let freed: BTreeSet<IpAddr> = ipam
        .release_handles(&[big, "big"], "node-a")
        .expect("release a 130-block handle")
        .into_iter()
        .collect();
    assert_eq!(freed, ips);
    assert!(store.list(&ListPrefix::Handles).unwrap().is_empty());
    for kv in store.list(&ListPrefix::Blocks { version: None }).unwrap() {
        let block = AllocationBlock::from_json(&kv.value).unwrap();
        assert_eq!(block.allocated_count(), 0, "{}", kv.key);
    }
}
