//! Property tests: random assign/release sequences across simulated nodes, checking after every
//! step that no address is handed out twice, nothing leaks, and affinity rules hold.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use common::*;
use ipam::model::IpamConfig;
use ipam::{
    AssignIpRequest, AutoAssignRequest, Ipam, IpamError, IpamOptions, MemoryStore, ReleaseRequest,
};
use proptest::prelude::*;

const NODES: [&str; 3] = ["n0", "n1", "n2"];

#[derive(Debug, Clone)]
enum Op {
    Assign {
        node: usize,
        handle: u8,
        v4: usize,
        v6: usize,
    },
    AssignIp {
        node: usize,
        handle: u8,
        offset: u16,
    },
    ReleaseHandle {
        handle: u8,
    },
    ReleaseOneIp {
        pick: usize,
    },
    ReleaseHostAffinities {
        node: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..3usize, 0..12u8, 0..4usize, 0..3usize).prop_map(|(node, handle, v4, v6)| Op::Assign { node, handle, v4, v6 }),
        1 => (0..3usize, 0..12u8, 0..128u16).prop_map(|(node, handle, offset)| Op::AssignIp { node, handle, offset }),
        3 => (0..12u8).prop_map(|handle| Op::ReleaseHandle { handle }),
        2 => any::<usize>().prop_map(|pick| Op::ReleaseOneIp { pick }),
        1 => (0..3usize).prop_map(|node| Op::ReleaseHostAffinities { node }),
    ]
}

/// `cooldown`: `ipCooldownSeconds` of an hour, so every released address must stay unused for
/// the rest of the run.
fn run(ops: Vec<Op>, strict: bool, reclaim_zero: bool, cooldown: bool) {
    let s = MemoryStore::new();
    // Small pools so blocks run out and borrowing / reclaiming / exhaustion all happen:
    // v4 = 4 blocks of 8 addresses, v6 = 2 blocks of 4.
    add_pool(&s, "v4", "10.20.0.0/27", Some(29), None);
    add_pool(&s, "v6", "fd00:20::/125", Some(126), None);
    for n in NODES {
        add_node(&s, n, &[]);
    }
    let opts = IpamOptions {
        reclaim_min_age: if reclaim_zero {
            Duration::ZERO
        } else {
            Duration::from_secs(60)
        },
        ..Default::default()
    };
    let ipam = Ipam::with_options(&s, opts);
    if strict || cooldown {
        ipam.set_config(&IpamConfig {
            strict_affinity: strict,
            auto_allocate_blocks: true,
            ip_cooldown_seconds: if cooldown { 3600 } else { 0 },
            ..Default::default()
        })
        .unwrap();
    }
    // Model: handle → addresses it holds; addresses released while cooldown is on.
    let mut model: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
    // With cooldown: what is cooling in the store (released, or rolled back by a failed
    // request); nothing may leave it within the run.
    let mut cooling: BTreeSet<IpAddr> = BTreeSet::new();
    let mut released: BTreeSet<IpAddr> = BTreeSet::new();
    for op in ops {
        match op {
            Op::Assign {
                node,
                handle,
                v4,
                v6,
            } => {
                let h = format!("h{handle}");
                let r = ipam.auto_assign(&AutoAssignRequest {
                    num_v4: v4,
                    num_v6: v6,
                    handle_id: h.clone(),
                    hostname: NODES[node].into(),
                    attrs: attrs(NODES[node], &h),
                    ..Default::default()
                });
                match r {
                    Ok(r) => {
                        assert_eq!((r.ipv4.len(), r.ipv6.len()), (v4, v6));
                        for n in r.ipv4.iter().chain(&r.ipv6) {
                            let fresh = model.values().all(|ips| !ips.contains(&n.ip()));
                            assert!(fresh, "{} handed out twice", n.ip());
                            assert!(!cooling.contains(&n.ip()), "{} still cooling", n.ip());
                            model.entry(h.clone()).or_default().insert(n.ip());
                        }
                    }
                    Err(IpamError::Exhausted { .. }) => {}
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
            Op::AssignIp {
                node,
                handle,
                offset,
            } => {
                let h = format!("h{handle}");
                let ip: IpAddr = std::net::Ipv4Addr::from(
                    u32::from(std::net::Ipv4Addr::new(10, 20, 0, 0)) + u32::from(offset % 40),
                )
                .into();
                let r = ipam.assign_ip(&AssignIpRequest {
                    ip: Some(ip),
                    handle_id: h.clone(),
                    hostname: NODES[node].into(),
                    attrs: attrs(NODES[node], &h),
                    ..Default::default()
                });
                let held = model.values().any(|ips| ips.contains(&ip));
                match r {
                    Ok(_) => {
                        assert!(!held, "{ip} assigned twice");
                        assert!(!cooling.contains(&ip), "{ip} still cooling");
                        model.entry(h).or_default().insert(ip);
                    }
                    Err(IpamError::AlreadyAssigned(_)) => {
                        assert!(held || cooling.contains(&ip), "{ip} refused but free")
                    }
                    Err(IpamError::NotInPool(_)) => assert!(offset % 40 >= 32),
                    Err(IpamError::NotAffine(_)) => assert!(strict),
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
            Op::ReleaseHandle { handle } => {
                let h = format!("h{handle}");
                let want = model.remove(&h).unwrap_or_default();
                released.extend(want.iter().copied());
                match ipam.release_by_handle(&h) {
                    Ok(freed) => assert_eq!(freed.into_iter().collect::<BTreeSet<_>>(), want),
                    Err(IpamError::HandleNotFound(_)) => assert!(want.is_empty()),
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
            Op::ReleaseOneIp { pick } => {
                let all: Vec<(String, IpAddr)> = model
                    .iter()
                    .flat_map(|(h, ips)| ips.iter().map(move |i| (h.clone(), *i)))
                    .collect();
                if all.is_empty() {
                    continue;
                }
                let (h, ip) = all[pick % all.len()].clone();
                let unalloc = ipam
                    .release_ips(&[ReleaseRequest {
                        ip,
                        handle_id: Some(h.clone()),
                        sequence_number: None,
                    }])
                    .unwrap();
                assert!(unalloc.is_empty());
                released.insert(ip);
                let set = model.get_mut(&h).unwrap();
                set.remove(&ip);
                if set.is_empty() {
                    model.remove(&h);
                }
            }
            Op::ReleaseHostAffinities { node } => {
                ipam.release_host_affinities(NODES[node]).unwrap();
            }
        }
        // Store and model agree exactly, and the global invariants hold.
        let got: BTreeMap<IpAddr, String> = allocations(&s);
        let want: BTreeMap<IpAddr, String> = model
            .iter()
            .flat_map(|(h, ips)| ips.iter().map(move |i| (*i, h.clone())))
            .collect();
        assert_eq!(got, want);
        check_invariants(&s, strict);
        let now_cooling = cooling_addresses(&s);
        if cooldown {
            assert!(now_cooling.is_superset(&cooling), "left cooldown early");
            assert!(
                now_cooling.is_superset(&released),
                "released but not cooling"
            );
        } else {
            assert!(now_cooling.is_empty(), "cooling without ipCooldownSeconds");
        }
        cooling = now_cooling;
        released.clear();
    }
    // Releasing every handle leaves nothing allocated and no handle behind.
    for h in model.keys() {
        ipam.release_by_handle(h).unwrap();
    }
    assert!(allocations(&s).is_empty());
    assert!(handles(&s).is_empty());
    check_invariants(&s, strict);
}

/// Addresses of the store's blocks that are cooling down.
fn cooling_addresses(s: &MemoryStore) -> BTreeSet<IpAddr> {
    blocks(s)
        .iter()
        .flat_map(|b| {
            (0..b.allocations.len())
                .filter(|&o| b.is_cooling(o))
                .map(|o| b.ordinal_to_ip(o))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_non_strict(ops in prop::collection::vec(op(), 1..60)) {
        run(ops, false, false, false);
    }

    #[test]
    fn random_sequences_strict(ops in prop::collection::vec(op(), 1..60)) {
        run(ops, true, false, false);
    }

    #[test]
    fn random_sequences_with_reclaim(ops in prop::collection::vec(op(), 1..60)) {
        run(ops, false, true, false);
    }

    #[test]
    fn random_sequences_with_cooldown(ops in prop::collection::vec(op(), 1..60)) {
        run(ops, false, true, true);
    }
}
