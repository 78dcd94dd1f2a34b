//! Shared fixtures for the allocator tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipam::model::{AllocationBlock, IpPool, IpPoolSpec, IpamHandle, Node};
use ipam::{Ipam, IpamOptions, Key, ListPrefix, ResourceKind, Store};

pub fn opts() -> IpamOptions {
    IpamOptions {
        require_node: true,
        ..Default::default()
    }
}

pub fn add_pool(
    store: &dyn Store,
    name: &str,
    cidr: &str,
    block: Option<u8>,
    selector: Option<&str>,
) {
    let spec = IpPoolSpec {
        cidr: cidr.into(),
        block_size: block,
        node_selector: selector.map(str::to_string),
        ..Default::default()
    };
    Ipam::new(store)
        .create_pool(&IpPool::new("IPPool", name, spec))
        .expect("create pool");
}

pub fn add_node(store: &dyn Store, name: &str, labels: &[(&str, &str)]) {
    let mut n = Node::new("Node", name, Default::default());
    n.metadata.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    store
        .create(&Key::resource(ResourceKind::Node, name), &n.to_json())
        .expect("create node");
}

pub fn attrs(node: &str, pod: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("node".to_string(), node.to_string()),
        ("pod".to_string(), pod.to_string()),
        ("namespace".to_string(), "default".to_string()),
    ])
}

/// Every block in the store, parsed (panics on corrupt ones: they must never be written).
pub fn blocks(store: &dyn Store) -> Vec<AllocationBlock> {
    store
        .list(&ListPrefix::Blocks { version: None })
        .unwrap()
        .into_iter()
        .map(|kv| AllocationBlock::from_json(&kv.value).expect("valid block"))
        .collect()
}

/// Every allocated (ip → handle) in the store; panics on duplicates.
pub fn allocations(store: &dyn Store) -> BTreeMap<IpAddr, String> {
    let mut out = BTreeMap::new();
    for b in blocks(store) {
        for o in 0..b.allocations.len() {
            if let Some(h) = b.handle_of(o) {
                let prev = out.insert(b.ordinal_to_ip(o), h.to_string());
                assert!(
                    prev.is_none(),
                    "duplicate allocation of {}",
                    b.ordinal_to_ip(o)
                );
            }
        }
    }
    out
}

pub fn handles(store: &dyn Store) -> BTreeMap<String, IpamHandle> {
    store
        .list(&ListPrefix::Handles)
        .unwrap()
        .into_iter()
        .map(|kv| match kv.key {
            Key::Handle { id } => (id, serde_json::from_str(&kv.value).expect("valid handle")),
            _ => unreachable!(),
        })
        .collect()
}

/// Global invariants that must hold whenever no operation is in flight: a clean audit (see
/// `ipam::audit`: no duplicates, everything reachable by handle with exact counts, affinities
/// and blocks agree) and, with `strict`, no allocation borrowed from another host's block.
pub fn check_invariants(store: &dyn Store, strict: bool) {
    let a = ipam::audit::audit(store).unwrap();
    assert!(
        a.is_clean(),
        "audit errors {:?} warnings {:?}",
        a.errors,
        a.warnings
    );
    if strict {
        assert!(
            a.borrowed().is_empty(),
            "strict affinity violated: {:?}",
            a.borrowed()
        );
    }
}
