//! Allocator behaviour against the in-memory store.

mod common;

use std::net::IpAddr;

use common::*;
use ipam::model::{AffinityState, AllocationBlock, BlockAffinity, IpamConfig};
use ipam::{
    AssignIpRequest, AutoAssignRequest, Ipam, IpamError, IpamOptions, Key, MemoryStore,
    ReleaseRequest, Store,
};

fn req(node: &str, handle: &str, v4: usize, v6: usize) -> AutoAssignRequest {
    AutoAssignRequest {
        num_v4: v4,
        num_v6: v6,
        handle_id: handle.into(),
        hostname: node.into(),
        attrs: attrs(node, handle),
        ..Default::default()
    }
}

fn setup() -> MemoryStore {
    let s = MemoryStore::new();
    add_pool(&s, "default-ipv4-ippool", "10.244.0.0/16", None, None);
    add_node(&s, "node1", &[]);
    add_node(&s, "node2", &[]);
    s
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn first_assign_claims_block_and_writes_calico_shapes() {
    let s = setup();
    let ipam = Ipam::new(&s);
    let r = ipam.auto_assign(&req("node1", "net.c1", 1, 0)).unwrap();
    assert_eq!(r.ipv4.len(), 1);
    let a = r.ipv4[0];
    assert_eq!(a.prefix(), 26, "result carries the block mask");
    let block = a.network();
    let cidr = ipnetwork::IpNetwork::new(block, 26).unwrap();
    assert_eq!(a.ip(), block, "first ordinal of a fresh block");

    let kv = s.get(&Key::block(cidr)).unwrap();
    let b = AllocationBlock::from_json(&kv.value).unwrap();
    assert_eq!(b.affinity.as_deref(), Some("host:node1"));
    assert!(b.affinity_claim_time.is_some());
    assert_eq!(b.handle_of(0), Some("net.c1"));
    assert_eq!(b.attribute_of(0).unwrap().secondary["node"], "node1");
    assert!(kv.value.contains(r#""unallocated":[1,2,3"#));

    let aff = s.get(&Key::host_affinity("node1", cidr)).unwrap();
    assert_eq!(aff.value, r#"{"state":"confirmed","deleted":false}"#);
    let h = s.get(&Key::handle("net.c1")).unwrap();
    assert_eq!(
        h.value,
        format!(r#"{{"block":{{"{cidr}":1}},"deleted":false}}"#)
    );
    check_invariants(&s, false);
}

#[test]
fn same_host_reuses_block_other_host_gets_its_own() {
    let s = setup();
    let ipam = Ipam::new(&s);
    let a = ipam.auto_assign(&req("node1", "h1", 2, 0)).unwrap().ipv4;
    let b = ipam.auto_assign(&req("node1", "h2", 1, 0)).unwrap().ipv4;
    let c = ipam.auto_assign(&req("node2", "h3", 1, 0)).unwrap().ipv4;
    assert_eq!(a[0].network(), b[0].network());
    assert_ne!(a[0].network(), c[0].network());
    let all: std::collections::BTreeSet<_> = a.iter().chain(&b).chain(&c).map(|n| n.ip()).collect();
    assert_eq!(all.len(), 4);
    assert_eq!(allocations(&s).len(), 4);
    check_invariants(&s, false);
}

#[test]
fn release_by_handle_is_complete_and_reports_missing_handle() {
    let s = setup();
    let ipam = Ipam::new(&s);
    let a = ipam.auto_assign(&req("node1", "h1", 3, 0)).unwrap().ipv4;
    ipam.auto_assign(&req("node1", "h2", 1, 0)).unwrap();
    let mut freed = ipam.release_by_handle("h1").unwrap();
    freed.sort();
    assert_eq!(freed, a.iter().map(|n| n.ip()).collect::<Vec<_>>());
    assert_eq!(allocations(&s).len(), 1);
    assert!(s.get_opt(&Key::handle("h1")).unwrap().is_none());
    assert_eq!(
        ipam.release_by_handle("h1"),
        Err(IpamError::HandleNotFound("h1".into()))
    );
    // Affine blocks stay with the host even when empty.
    ipam.release_by_handle("h2").unwrap();
    assert_eq!(blocks(&s).len(), 1);
    assert!(allocations(&s).is_empty() && handles(&s).is_empty());
    // Freed addresses go to the back of the free list: the next allocation is a new address.
    let next = ipam.auto_assign(&req("node1", "h3", 1, 0)).unwrap().ipv4[0];
    assert!(!a.contains(&next), "released address reused immediately");
    check_invariants(&s, false);
}

#[test]
fn strict_affinity_forbids_borrowing_and_non_strict_borrows() {
    let s = MemoryStore::new();
    // Two /26 blocks in the pool.
    add_pool(&s, "small", "10.9.0.0/25", None, None);
    for n in ["a", "b", "c"] {
        add_node(&s, n, &[]);
    }
    let ipam = Ipam::new(&s);
    ipam.auto_assign(&req("a", "ha", 1, 0)).unwrap();
    ipam.auto_assign(&req("b", "hb", 1, 0)).unwrap();

    ipam.set_config(&IpamConfig {
        strict_affinity: true,
        auto_allocate_blocks: true,
        ..Default::default()
    })
    .unwrap();
    let e = ipam.auto_assign(&req("c", "hc", 1, 0)).unwrap_err();
    assert!(
        matches!(&e, IpamError::Exhausted { message: m, .. } if m.starts_with("Assigned 0 out of 1 requested IPv4 addresses") && m.contains("strict affinity")),
        "{e}"
    );
    assert!(s.get_opt(&Key::handle("hc")).unwrap().is_none());
    check_invariants(&s, true);

    ipam.set_config(&IpamConfig {
        strict_affinity: false,
        auto_allocate_blocks: true,
        ..Default::default()
    })
    .unwrap();
    let got = ipam.auto_assign(&req("c", "hc", 1, 0)).unwrap().ipv4[0];
    let owner = blocks(&s)
        .into_iter()
        .find(|b| b.cidr.contains(got.ip()))
        .unwrap();
    assert!(
        matches!(owner.host(), Some("a") | Some("b")),
        "borrowed from an existing block"
    );
    check_invariants(&s, false);
}

#[test]
fn block_limit_per_host() {
    let s = MemoryStore::new();
    add_pool(&s, "p", "10.9.0.0/24", Some(30), None);
    add_node(&s, "a", &[]);
    let ipam = Ipam::new(&s);
    ipam.set_config(&IpamConfig {
        strict_affinity: true,
        auto_allocate_blocks: true,
        max_blocks_per_host: 2,
        ..Default::default()
    })
    .unwrap();
    ipam.auto_assign(&req("a", "h1", 8, 0)).unwrap();
    let e = ipam.auto_assign(&req("a", "h2", 1, 0)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot allocate new block due to per host block limit"
    );
    assert!(matches!(e, IpamError::BlockLimit { limit: 2, .. }), "{e:?}");
    check_invariants(&s, true);
}

#[test]
fn partial_fulfilment_is_rolled_back() {
    let s = MemoryStore::new();
    add_pool(&s, "p", "10.9.0.0/30", Some(30), None);
    add_node(&s, "a", &[]);
    let ipam = Ipam::new(&s);
    let e = ipam.auto_assign(&req("a", "h1", 5, 0)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("Assigned 4 out of 5 requested IPv4 addresses"),
        "{e}"
    );
    assert!(allocations(&s).is_empty() && handles(&s).is_empty());
    // Dual stack without a v6 pool: v4 succeeds, v6 fails → v4 released again.
    let e = ipam.auto_assign(&req("a", "h2", 1, 1)).unwrap_err();
    assert!(
        matches!(e, IpamError::NoPools(ipam::NoPools::NoneEnabled))
            && e.to_string() == "cannot find a qualified ippool",
        "{e}"
    );
    assert!(allocations(&s).is_empty() && handles(&s).is_empty());
    check_invariants(&s, false);
}

#[test]
fn dual_stack_and_requested_pools() {
    let s = setup();
    add_pool(&s, "v6", "fd00:10:244::/48", None, None);
    add_pool(&s, "other", "10.250.0.0/16", None, None);
    let ipam = Ipam::new(&s);
    let r = ipam.auto_assign(&req("node1", "h1", 1, 1)).unwrap();
    assert_eq!(r.ipv6[0].prefix(), 122);
    assert!(r.ipv6[0].ip().to_string().starts_with("fd00:10:244:"));
    let pools = ipam
        .resolve_pools(&["other".into()], ipam::IpVersion::V4)
        .unwrap();
    assert_eq!(pools[0].to_string(), "10.250.0.0/16");
    let mut q = req("node1", "h2", 1, 0);
    q.ipv4_pools = pools;
    let got = ipam.auto_assign(&q).unwrap().ipv4[0];
    assert!(got.ip().to_string().starts_with("10.250."));
    assert!(ipam
        .resolve_pools(&["nope".into()], ipam::IpVersion::V4)
        .is_err());
    let e = ipam
        .resolve_pools(&["fd00::/64".into()], ipam::IpVersion::V4)
        .unwrap_err();
    assert_eq!(e.to_string(), "\"fd00::\" isn't a IPv4 address");
    q.ipv4_pools = vec!["10.251.0.0/16".parse().unwrap()];
    let e = ipam.auto_assign(&q).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the given pool (10.251.0.0/16) does not exist, or is not enabled"
    );
    check_invariants(&s, false);
}

#[test]
fn node_selector_and_missing_node() {
    let s = MemoryStore::new();
    add_pool(&s, "zone-a", "10.1.0.0/16", None, Some("zone == 'a'"));
    add_pool(&s, "zone-b", "10.2.0.0/16", None, Some("zone == 'b'"));
    add_node(&s, "na", &[("zone", "a")]);
    add_node(&s, "nx", &[]);
    let ipam = Ipam::new(&s);
    let got = ipam.auto_assign(&req("na", "h1", 1, 0)).unwrap().ipv4[0];
    assert!(got.ip().to_string().starts_with("10.1."));
    let e = ipam.auto_assign(&req("nx", "h2", 1, 0)).unwrap_err();
    assert_eq!(e.to_string(), "no configured Calico pools for node nx");
    let e = ipam.auto_assign(&req("ghost", "h3", 1, 0)).unwrap_err();
    assert_eq!(e, IpamError::NodeNotFound("ghost".into()));
    // Without require_node, a missing node has no labels.
    add_pool(&s, "all", "10.3.0.0/16", None, None);
    let lax = Ipam::with_options(
        &s,
        IpamOptions {
            require_node: false,
            ..Default::default()
        },
    );
    let got = lax.auto_assign(&req("ghost", "h3", 1, 0)).unwrap().ipv4[0];
    assert!(got.ip().to_string().starts_with("10.3."));
    check_invariants(&s, false);
}

#[test]
fn assign_specific_ip() {
    let s = setup();
    let ipam = Ipam::new(&s);
    let r = AssignIpRequest {
        ip: Some(ip("10.244.7.9")),
        handle_id: "h1".into(),
        hostname: "node1".into(),
        attrs: attrs("node1", "p"),
        ..Default::default()
    };
    assert_eq!(ipam.assign_ip(&r).unwrap().to_string(), "10.244.7.9/26");
    let b = blocks(&s);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].cidr.to_string(), "10.244.7.0/26");
    assert_eq!(b[0].host(), Some("node1"));
    assert_eq!(
        ipam.assign_ip(&r),
        Err(IpamError::AlreadyAssigned(ip("10.244.7.9")))
    );
    let mut out = r.clone();
    out.ip = Some(ip("192.0.2.1"));
    assert_eq!(
        ipam.assign_ip(&out),
        Err(IpamError::NotInPool(ip("192.0.2.1")))
    );
    assert_eq!(ipam.ips_by_handle("h1").unwrap(), vec![ip("10.244.7.9")]);
    let info = ipam.get_assignment(ip("10.244.7.9")).unwrap().unwrap();
    assert_eq!(info.handle_id.as_deref(), Some("h1"));
    check_invariants(&s, false);
    // Auto-assign on node1 now uses that block.
    let got = ipam.auto_assign(&req("node1", "h2", 1, 0)).unwrap().ipv4[0];
    assert_eq!(got.to_string(), "10.244.7.0/26");
}

#[test]
fn release_ips_guards_and_unallocated() {
    let s = setup();
    let ipam = Ipam::new(&s);
    let a = ipam.auto_assign(&req("node1", "h1", 2, 0)).unwrap().ipv4;
    let wrong = ReleaseRequest {
        ip: a[0].ip(),
        handle_id: Some("other".into()),
        sequence_number: None,
    };
    assert!(matches!(
        ipam.release_ips(&[wrong]),
        Err(IpamError::ReleaseRefused { .. })
    ));
    let seq = ipam
        .get_assignment(a[0].ip())
        .unwrap()
        .unwrap()
        .sequence_number
        .unwrap();
    let stale = ReleaseRequest {
        ip: a[0].ip(),
        handle_id: None,
        sequence_number: Some(seq + 1),
    };
    assert!(matches!(
        ipam.release_ips(&[stale]),
        Err(IpamError::ReleaseRefused { .. })
    ));
    let ok = ReleaseRequest {
        ip: a[0].ip(),
        handle_id: Some("h1".into()),
        sequence_number: Some(seq),
    };
    let unalloc = ipam
        .release_ips(&[
            ok,
            ReleaseRequest::ip(ip("10.244.200.1")),
            ReleaseRequest::ip(ip("192.0.2.1")),
        ])
        .unwrap();
    assert_eq!(unalloc, vec![ip("192.0.2.1"), ip("10.244.200.1")]);
    assert_eq!(handles(&s)["h1"].block.values().sum::<u64>(), 1);
    ipam.release_ips(&[ReleaseRequest::ip(a[1].ip())]).unwrap();
    assert!(
        handles(&s).is_empty(),
        "handle deleted with its last address"
    );
    check_invariants(&s, false);
}

#[test]
fn recovers_half_done_claims_and_stale_affinities() {
    let s = setup();
    let ipam = Ipam::new(&s);
    // A crash left a pending affinity with no block.
    let cidr: ipnetwork::IpNetwork = "10.244.3.0/26".parse().unwrap();
    let pending = serde_json::to_string(&BlockAffinity::new(AffinityState::Pending)).unwrap();
    s.create(&Key::host_affinity("node1", cidr), &pending)
        .unwrap();
    // And a stale affinity for a block owned by node2.
    let other: ipnetwork::IpNetwork = "10.244.2.0/26".parse().unwrap();
    let b = AllocationBlock::new(other, Some("host:node2".into()), None, 1);
    s.create(&Key::block(other), &b.to_json()).unwrap();
    s.create(
        &Key::host_affinity("node2", other),
        r#"{"state":"confirmed","deleted":false}"#,
    )
    .unwrap();
    s.create(
        &Key::host_affinity("node1", other),
        r#"{"state":"confirmed","deleted":false}"#,
    )
    .unwrap();

    let got = ipam.auto_assign(&req("node1", "h1", 1, 0)).unwrap().ipv4[0];
    assert_eq!(
        got.to_string(),
        "10.244.3.0/26",
        "pending claim completed and used"
    );
    assert!(
        s.get_opt(&Key::host_affinity("node1", other))
            .unwrap()
            .is_none(),
        "stale affinity removed"
    );
    check_invariants(&s, false);
}

#[test]
fn reclaims_old_empty_blocks_of_other_hosts() {
    let s = MemoryStore::new();
    add_pool(&s, "one", "10.9.0.0/26", None, None);
    add_node(&s, "a", &[]);
    add_node(&s, "b", &[]);
    let ipam = Ipam::new(&s);
    ipam.auto_assign(&req("a", "h1", 1, 0)).unwrap();
    ipam.release_by_handle("h1").unwrap();
    // Too young to reclaim: b borrows from a's (empty) block instead.
    let got = ipam.auto_assign(&req("b", "h2", 1, 0)).unwrap().ipv4[0];
    assert_eq!(blocks(&s)[0].host(), Some("a"));
    ipam.release_by_handle("h2").unwrap();
    let _ = got;
    // With a zero minimum age, b takes the block over.
    let eager = Ipam::with_options(
        &s,
        IpamOptions {
            reclaim_min_age: std::time::Duration::ZERO,
            ..Default::default()
        },
    );
    eager.auto_assign(&req("b", "h3", 1, 0)).unwrap();
    assert_eq!(blocks(&s)[0].host(), Some("b"));
    assert!(s
        .get_opt(&Key::host_affinity("a", "10.9.0.0/26".parse().unwrap()))
        .unwrap()
        .is_none());
    check_invariants(&s, false);
}

#[test]
fn release_host_affinities_unaffines_or_deletes() {
    let s = setup();
    let ipam = Ipam::new(&s);
    ipam.auto_assign(&req("node1", "h1", 1, 0)).unwrap();
    ipam.auto_assign(&req("node2", "h2", 1, 0)).unwrap();
    ipam.release_by_handle("h2").unwrap();
    assert_eq!(ipam.release_host_affinities("node1").unwrap(), 1);
    assert_eq!(ipam.release_host_affinities("node2").unwrap(), 1);
    let bl = blocks(&s);
    assert_eq!(bl.len(), 1, "node2's empty block deleted");
    assert_eq!(bl[0].affinity, None, "node1's used block kept, unaffine");
    check_invariants(&s, false);
    // Releasing the last address of an unaffine block deletes the block.
    ipam.release_by_handle("h1").unwrap();
    assert!(blocks(&s).is_empty());
}

#[test]
fn rejects_bad_arguments_and_config() {
    let s = setup();
    let ipam = Ipam::new(&s);
    assert!(matches!(
        ipam.auto_assign(&req("no/de", "h", 1, 0)),
        Err(IpamError::InvalidArgument(_))
    ));
    assert!(matches!(
        ipam.auto_assign(&req("node1", "a/b", 1, 0)),
        Err(IpamError::InvalidArgument(_))
    ));
    assert!(
        ipam.set_config(&IpamConfig::default()).is_err(),
        "strict=false + auto=false rejected"
    );
    let usage = ipam.pool_usage().unwrap();
    assert_eq!(usage[0].max_blocks, 1024);
    assert_eq!(usage[0].capacity, 65536);
}

#[test]
fn audit_detects_lost_handles_and_double_affinities() {
    let s = setup();
    let ipam = Ipam::new(&s);
    let got = ipam.auto_assign(&req("node1", "h1", 1, 0)).unwrap().ipv4[0];
    let cidr = ipnetwork::IpNetwork::new(got.network(), 26).unwrap();
    assert!(ipam::audit::audit(&s).unwrap().is_clean());
    // A second host confirmed on the same block (the ECMP-route bug of calico#6486).
    s.create(
        &Key::host_affinity("node2", cidr),
        r#"{"state":"confirmed","deleted":false}"#,
    )
    .unwrap();
    let a = ipam::audit::audit(&s).unwrap();
    assert!(
        a.warnings.iter().any(|w| w.contains("node2")),
        "{:?}",
        a.warnings
    );
    s.delete(&Key::host_affinity("node2", cidr), None).unwrap();
    // Handle lost: the allocation can no longer be released by handle.
    s.delete(&Key::handle("h1"), None).unwrap();
    let a = ipam::audit::audit(&s).unwrap();
    assert_eq!(a.errors.len(), 1, "{:?}", a.errors);
    assert!(a.errors[0].contains("unreachable via the handle"));
    assert_eq!(a.allocations.len(), 1);
}

#[test]
fn creating_a_pool_that_exists_is_already_exists_and_overlap_is_invalid() {
    let s = setup();
    let ipam = Ipam::new(&s);
    // The same name (what a concurrent first-use initialisation runs into): AlreadyExists, so
    // the loser can treat it as done.
    let spec = ipam::model::IpPoolSpec {
        cidr: "10.244.0.0/16".into(),
        ..Default::default()
    };
    let again = ipam::model::IpPool::new("IPPool", "default-ipv4-ippool", spec.clone());
    let e = ipam.create_pool(&again).unwrap_err();
    assert!(
        matches!(e, IpamError::Store(ipam::StoreError::AlreadyExists(_))),
        "{e:?}"
    );
    // Another name over the same range: refused as an overlap.
    let other = ipam::model::IpPool::new("IPPool", "other", spec);
    let e = ipam.create_pool(&other).unwrap_err();
    assert!(
        matches!(
            &e,
            IpamError::InvalidArgument(ipam::InvalidArgument::PoolOverlap { .. })
        ) && e.to_string().contains("overlaps"),
        "{e:?}"
    );
}
