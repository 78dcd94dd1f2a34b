//! Calico parity of the allocator (issue #13 items 5, 6 and 8): block limits without
//! borrowing, pendingDeletion affinities taken back, affinities released when a pool stops
//! selecting the node, namespaceSelector, Allocatable=False, unparsable selectors, IP cooldown.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use common::*;
use ipam::clock;
use ipam::model::{AffinityState, AllocationBlock, BlockAffinity, IpPool, IpPoolSpec, IpamConfig};
use ipam::{
    AutoAssignRequest, Ipam, IpamError, Key, MemoryStore, ReleaseRequest, ResourceKind, Store,
};
use ipnetwork::IpNetwork;

fn req(node: &str, handle: &str, v4: usize) -> AutoAssignRequest {
    AutoAssignRequest {
        num_v4: v4,
        handle_id: handle.into(),
        hostname: node.into(),
        attrs: attrs(node, handle),
        ..Default::default()
    }
}

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

fn block(s: &dyn Store, cidr: &str) -> Option<AllocationBlock> {
    s.get_opt(&Key::block(net(cidr)))
        .unwrap()
        .map(|kv| AllocationBlock::from_json(&kv.value).unwrap())
}

fn affinity(s: &dyn Store, host: &str, cidr: &str) -> Option<BlockAffinity> {
    s.get_opt(&Key::host_affinity(host, net(cidr)))
        .unwrap()
        .map(|kv| BlockAffinity::from_json(&kv.value).unwrap())
}

fn relabel(s: &dyn Store, node: &str, labels: &[(&str, &str)]) {
    let key = Key::resource(ResourceKind::Node, node);
    let kv = s.get(&key).unwrap();
    let mut n = ipam::model::Node::from_json(&kv.value).unwrap();
    n.metadata.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s.update(&key, &n.to_json(), &kv.revision).unwrap();
}

fn put_pool(s: &dyn Store, name: &str, spec: IpPoolSpec, status: Option<serde_json::Value>) {
    let mut p = IpPool::new("IPPool", name, spec);
    if let Some(st) = status {
        p.extra.insert("status".into(), st);
    }
    s.create(&Key::resource(ResourceKind::IpPool, name), &p.to_json())
        .unwrap();
}

fn pool_spec(cidr: &str, block: u8) -> IpPoolSpec {
    IpPoolSpec {
        cidr: cidr.into(),
        block_size: Some(block),
        ..Default::default()
    }
}

// ---- item 5: block limits and borrowing ----

/// Non-strict affinity would let the host borrow from another host's block; Calico fails with
/// its block-limit error instead once the host owns its limit of (full) blocks.
#[test]
fn block_limit_fails_instead_of_borrowing() {
    let s = MemoryStore::new();
    add_pool(&s, "p", "10.9.0.0/24", Some(30), None);
    add_node(&s, "a", &[]);
    add_node(&s, "b", &[]);
    let ipam = Ipam::new(&s);
    let limited = |handle: &str, n: usize| AutoAssignRequest {
        max_blocks_per_host: 1,
        ..req("a", handle, n)
    };
    ipam.auto_assign(&limited("h1", 4)).unwrap();
    let b = ipam.auto_assign(&req("b", "hb", 1)).unwrap().ipv4[0];
    let e = ipam.auto_assign(&limited("h2", 1)).unwrap_err();
    assert!(matches!(e, IpamError::BlockLimit { limit: 1, .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "cannot allocate new block due to per host block limit"
    );
    let bb = block(&s, &IpNetwork::new(b.network(), 30).unwrap().to_string()).unwrap();
    assert_eq!(bb.allocated_count(), 1, "nothing borrowed from b's block");
    assert!(ipam.ips_by_handle("h2").is_err(), "h2 holds nothing");
    check_invariants(&s, false);
}

/// A release marked the affinity pendingDeletion and stopped (crash, lost race): the owner's
/// next request confirms it again and keeps using the block, as Calico's getBlockFromAffinity.
#[test]
fn pending_deletion_affinity_is_confirmed_again() {
    let s = MemoryStore::new();
    add_pool(&s, "p", "10.9.0.0/24", Some(30), None);
    add_node(&s, "a", &[]);
    let ipam = Ipam::new(&s);
    let first = ipam.auto_assign(&req("a", "h1", 1)).unwrap().ipv4[0];
    let cidr = IpNetwork::new(first.network(), 30).unwrap();
    let key = Key::host_affinity("a", cidr);
    let kv = s.get(&key).unwrap();
    s.update(
        &key,
        &serde_json::to_string(&BlockAffinity::new(AffinityState::PendingDeletion)).unwrap(),
        &kv.revision,
    )
    .unwrap();
    let before = block(&s, &cidr.to_string()).unwrap().sequence_number;

    let second = ipam.auto_assign(&req("a", "h2", 1)).unwrap().ipv4[0];
    assert_eq!(
        second.network(),
        first.network(),
        "same block, no new claim"
    );
    assert_eq!(
        affinity(&s, "a", &cidr.to_string()).unwrap().state,
        AffinityState::Confirmed
    );
    assert_eq!(common::blocks(&s).len(), 1);
    // The block was rewritten before confirming (fences the interrupted release's CAS).
    assert!(block(&s, &cidr.to_string()).unwrap().sequence_number >= before + 2);
    check_invariants(&s, false);
}

/// An affinity for an empty block whose pool no longer selects the node is released on the
/// node's next request (prepareAffinityBlocksForHost), and right after the release that
/// empties such a block (ensureConsistentAffinity).
#[test]
fn affinities_of_pools_no_longer_selecting_the_node_are_released() {
    let s = MemoryStore::new();
    add_pool(&s, "zone-a", "10.1.0.0/24", Some(30), Some("zone == 'a'"));
    add_pool(&s, "zone-b", "10.2.0.0/24", Some(30), Some("zone == 'b'"));
    add_node(&s, "n", &[("zone", "a")]);
    let ipam = Ipam::new(&s);

    // (1) On assignment: an emptied block of a pool that stopped selecting the node.
    let a1 = ipam.auto_assign(&req("n", "h1", 1)).unwrap().ipv4[0];
    let blk_a = IpNetwork::new(a1.network(), 30).unwrap().to_string();
    ipam.release_by_handle("h1").unwrap();
    assert!(
        affinity(&s, "n", &blk_a).is_some(),
        "empty but still selected"
    );
    relabel(&s, "n", &[("zone", "b")]);
    let b1 = ipam.auto_assign(&req("n", "h2", 1)).unwrap().ipv4[0];
    assert!(net("10.2.0.0/24").contains(b1.ip()));
    assert!(affinity(&s, "n", &blk_a).is_none(), "affinity released");
    assert!(block(&s, &blk_a).is_none(), "empty block deleted");

    // (2) On release: the node moves back to zone a while holding an address in zone b.
    relabel(&s, "n", &[("zone", "a")]);
    let blk_b = IpNetwork::new(b1.network(), 30).unwrap().to_string();
    ipam.release_by_handle("h2").unwrap();
    assert!(
        affinity(&s, "n", &blk_b).is_none(),
        "released with the last address"
    );
    assert!(block(&s, &blk_b).is_none());

    // A block still holding addresses keeps its affinity (Calico requires it empty).
    let a2 = ipam.auto_assign(&req("n", "h3", 2)).unwrap().ipv4;
    relabel(&s, "n", &[("zone", "b")]);
    ipam.release_ips(&[ReleaseRequest::ip(a2[0].ip())]).unwrap();
    let blk = IpNetwork::new(a2[0].network(), 30).unwrap().to_string();
    assert!(affinity(&s, "n", &blk).is_some());

    // (3) The same through a CNI DEL, which reads the node and the pools with the blocks.
    let freed = ipam.release_handles(&["h3", "legacy-h3"], "n").unwrap();
    assert_eq!(freed, vec![a2[1].ip()]);
    assert!(
        affinity(&s, "n", &blk).is_none(),
        "released with the last address"
    );
    assert!(block(&s, &blk).is_none());
    check_invariants(&s, false);
}

// ---- item 6: pool selection ----

#[test]
fn namespace_selector_picks_the_pool() {
    let s = MemoryStore::new();
    put_pool(
        &s,
        "team-x",
        IpPoolSpec {
            namespace_selector: Some("team == 'x'".into()),
            ..pool_spec("10.1.0.0/24", 28)
        },
        None,
    );
    put_pool(
        &s,
        "team-y",
        IpPoolSpec {
            namespace_selector: Some("team == 'y'".into()),
            ..pool_spec("10.2.0.0/24", 28)
        },
        None,
    );
    add_node(&s, "n", &[]);
    let ipam = Ipam::new(&s);
    let in_ns = |h: &str, team: &str| AutoAssignRequest {
        namespace_labels: Some(BTreeMap::from([("team".to_string(), team.to_string())])),
        ..req("n", h, 1)
    };
    let x = ipam.auto_assign(&in_ns("h1", "x")).unwrap().ipv4[0];
    assert!(net("10.1.0.0/24").contains(x.ip()), "{x}");
    let y = ipam.auto_assign(&in_ns("h2", "y")).unwrap().ipv4[0];
    assert!(net("10.2.0.0/24").contains(y.ip()), "{y}");
    let e = ipam.auto_assign(&req("n", "h3", 1)).unwrap_err();
    assert!(matches!(e, IpamError::NoPools(_)), "{e:?}");
}

#[test]
fn allocatable_false_pools_are_not_used() {
    let s = MemoryStore::new();
    let not_allocatable = serde_json::json!({"conditions": [{"type": "Allocatable",
        "status": "False", "reason": "CIDROverlap", "message": "overlaps",
        "lastTransitionTime": "2026-08-01T10:00:00Z"}]});
    put_pool(
        &s,
        "a-overlapping",
        pool_spec("10.1.0.0/24", 28),
        Some(not_allocatable),
    );
    let ok = serde_json::json!({"conditions": [{"type": "Allocatable", "status": "True",
        "reason": "OK", "message": "", "lastTransitionTime": "2026-08-01T10:00:00Z"}]});
    put_pool(&s, "b-ok", pool_spec("10.2.0.0/24", 28), Some(ok));
    add_node(&s, "n", &[]);
    let ipam = Ipam::new(&s);
    for i in 0..3 {
        let ip = ipam
            .auto_assign(&req("n", &format!("h{i}"), 1))
            .unwrap()
            .ipv4[0];
        assert!(net("10.2.0.0/24").contains(ip.ip()), "{ip}");
    }
    let e = ipam
        .assign_ip(&ipam::AssignIpRequest {
            ip: Some("10.1.0.5".parse().unwrap()),
            handle_id: "h9".into(),
            hostname: "n".into(),
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(e, IpamError::NotInPool(_)), "{e:?}");
}

#[test]
fn unparsable_node_selector_is_an_error_naming_the_pool() {
    let s = MemoryStore::new();
    add_pool(&s, "good", "10.1.0.0/24", Some(28), None);
    put_pool(
        &s,
        "broken",
        IpPoolSpec {
            node_selector: Some("zone == ".into()),
            ..pool_spec("10.2.0.0/24", 28)
        },
        None,
    );
    add_node(&s, "n", &[]);
    let e = Ipam::new(&s).auto_assign(&req("n", "h", 1)).unwrap_err();
    assert!(
        matches!(&e, IpamError::InvalidPoolSelector { pool, field, .. }
            if pool == "broken" && *field == "nodeSelector"),
        "{e:?}"
    );
    assert!(e.to_string().contains("IPPool broken"), "{e}");
    assert!(common::blocks(&s).is_empty(), "nothing allocated");
}

// ---- item 8: IP cooldown ----

fn cooldown_store(secs: i64) -> MemoryStore {
    let s = MemoryStore::new();
    add_pool(&s, "p", "10.9.0.0/24", Some(30), None);
    add_node(&s, "a", &[]);
    Ipam::new(&s)
        .set_config(&IpamConfig {
            strict_affinity: true,
            auto_allocate_blocks: true,
            max_blocks_per_host: 1,
            ip_cooldown_seconds: secs,
            ..Default::default()
        })
        .unwrap();
    s
}

/// Moves every releasedAt of `cidr` `by` into the past (as if time had passed).
fn age_cooldowns(s: &dyn Store, cidr: &str, by: Duration) {
    let key = Key::block(net(cidr));
    let kv = s.get(&key).unwrap();
    let mut b = AllocationBlock::from_json(&kv.value).unwrap();
    for a in &mut b.attributes {
        if let Some(t) = a.released_at.as_deref().and_then(clock::parse_rfc3339) {
            a.released_at = Some(clock::rfc3339(t - by));
        }
    }
    s.update(&key, &b.to_json(), &kv.revision).unwrap();
}

#[test]
fn released_addresses_cool_down_before_reuse() {
    let s = cooldown_store(60);
    let ipam = Ipam::new(&s);
    let ips = ipam.auto_assign(&req("a", "h1", 4)).unwrap().ipv4;
    let cidr = IpNetwork::new(ips[0].network(), 30).unwrap().to_string();
    let freed = ipam.release_by_handle("h1").unwrap();
    assert_eq!(freed.len(), 4);

    // Stored as Calico does: every ordinal points at one {releasedAt} attribute.
    let raw = s.get(&Key::block(net(&cidr))).unwrap().value;
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["allocations"], serde_json::json!([0, 0, 0, 0]));
    assert_eq!(v["unallocated"], serde_json::json!([]));
    let attrs = v["attributes"].as_array().unwrap();
    assert_eq!(attrs.len(), 1);
    let obj = attrs[0].as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), vec!["releasedAt"]);
    let t = clock::parse_rfc3339(obj["releasedAt"].as_str().unwrap()).unwrap();
    assert!(SystemTime::now().duration_since(t).unwrap() < Duration::from_secs(5));
    // The block is not empty while addresses cool down: the affinity stays.
    assert!(affinity(&s, "a", &cidr).is_some());
    assert!(ipam.ips_by_handle("h1").is_err(), "handle gone");
    // Releasing a cooling address again: not allocated (Calico skips it).
    let again = ipam
        .release_ips(&[ReleaseRequest::ip(ips[0].ip())])
        .unwrap();
    assert_eq!(again, vec![ips[0].ip()]);

    // Still cooling: the host's only block has nothing free and it may not claim another.
    let e = ipam.auto_assign(&req("a", "h2", 1)).unwrap_err();
    assert!(matches!(e, IpamError::BlockLimit { .. }), "{e:?}");

    // After the cooldown every address is free again, in ordinal order.
    age_cooldowns(&s, &cidr, Duration::from_secs(61));
    let again: Vec<IpAddr> = ipam
        .auto_assign(&req("a", "h3", 4))
        .unwrap()
        .ipv4
        .iter()
        .map(|n| n.ip())
        .collect();
    assert_eq!(again, ips.iter().map(|n| n.ip()).collect::<Vec<_>>());
    let b = block(&s, &cidr).unwrap();
    assert!(b.attributes.iter().all(|a| a.released_at.is_none()));
    check_invariants(&s, true);
}

#[test]
fn release_by_address_stamps_the_sequence_number_and_partial_cooldown() {
    let s = cooldown_store(60);
    let ipam = Ipam::new(&s);
    let ips = ipam.auto_assign(&req("a", "h1", 2)).unwrap().ipv4;
    let cidr = IpNetwork::new(ips[0].network(), 30).unwrap().to_string();
    ipam.release_ips(&[ReleaseRequest::ip(ips[1].ip())])
        .unwrap();
    let b = block(&s, &cidr).unwrap();
    assert!(b.is_cooling(1) && b.is_held(0));
    assert_eq!(
        b.sequence_number_of(1),
        Some(b.sequence_number - 1),
        "stamped with the block's sequence number at release (before the write bumped it)"
    );
    // Fresh addresses keep coming from the free list; the cooling one is skipped.
    let next = ipam.auto_assign(&req("a", "h2", 2)).unwrap().ipv4;
    assert!(next.iter().all(|n| n.ip() != ips[1].ip()), "{next:?}");
    assert_eq!(ipam.ips_by_handle("h1").unwrap(), vec![ips[0].ip()]);
    check_invariants(&s, true);
}

#[test]
fn zero_cooldown_frees_at_once_and_fifo() {
    let s = cooldown_store(0);
    let ipam = Ipam::new(&s);
    let ips = ipam.auto_assign(&req("a", "h1", 4)).unwrap().ipv4;
    ipam.release_ips(&[ReleaseRequest::ip(ips[2].ip())])
        .unwrap();
    let again = ipam.auto_assign(&req("a", "h2", 1)).unwrap().ipv4;
    assert_eq!(again[0].ip(), ips[2].ip());
    let cidr = IpNetwork::new(ips[0].network(), 30).unwrap().to_string();
    assert!(block(&s, &cidr)
        .unwrap()
        .attributes
        .iter()
        .all(|a| a.released_at.is_none()));
}

// ---- datastore compatibility: Calico's exact JSON in, Calico's shapes out ----

#[test]
fn calico_fixtures_on_the_memory_store() {
    ipam::conformance::calico_fixtures(&MemoryStore::new());
}
