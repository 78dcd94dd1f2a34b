//! IPReservations: reserved addresses are never handed out automatically (affine blocks, new
//! blocks, borrowing), wholly reserved blocks are never claimed, and a pool is only reported
//! exhausted when every unreserved address is in use.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;

use common::*;
use ipam::model::{IpReservation, IpReservationSpec};
use ipam::{
    AssignIpRequest, AutoAssignRequest, Ipam, IpamError, Key, MemoryStore, Reservations,
    ResourceKind, Store,
};
use proptest::prelude::*;

fn reserve(store: &dyn Store, name: &str, cidrs: &[&str]) {
    let r = IpReservation::new(
        "IPReservation",
        name,
        IpReservationSpec {
            reserved_cidrs: cidrs.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        },
    );
    store
        .create(
            &Key::resource(ResourceKind::IpReservation, name),
            &r.to_json(),
        )
        .expect("create reservation");
}

fn assign(ipam: &Ipam<'_>, node: &str, handle: &str, n: usize) -> Result<Vec<IpAddr>, IpamError> {
    let r = ipam.auto_assign(&AutoAssignRequest {
        num_v4: n,
        handle_id: handle.into(),
        hostname: node.into(),
        attrs: attrs(node, handle),
        ..Default::default()
    })?;
    Ok(r.ipv4.iter().map(|n| n.ip()).collect())
}

fn setup(pool: &str, block: u8) -> MemoryStore {
    let s = MemoryStore::new();
    add_pool(&s, "p", pool, Some(block), None);
    for n in ["n0", "n1"] {
        add_node(&s, n, &[]);
    }
    s
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn one_host_fills_a_pool_around_reservations() {
    // 4 blocks of 4; 10.0.0.4/30 entirely reserved, plus two single addresses.
    let s = setup("10.0.0.0/28", 30);
    reserve(&s, "r1", &["10.0.0.4/30", "10.0.0.9"]);
    reserve(&s, "r2", &["10.0.0.14/32"]);
    let ipam = Ipam::with_options(&s, opts());
    let got = assign(&ipam, "n0", "h", 10).unwrap();
    let want: BTreeSet<IpAddr> = (0..16u8)
        .map(|i| IpAddr::from([10, 0, 0, i]))
        .filter(|a| {
            !matches!(
                a.to_string().as_str(),
                "10.0.0.4" | "10.0.0.5" | "10.0.0.6" | "10.0.0.7" | "10.0.0.9" | "10.0.0.14"
            )
        })
        .collect();
    assert_eq!(got.iter().copied().collect::<BTreeSet<_>>(), want);
    let cidrs: BTreeSet<String> = blocks(&s).iter().map(|b| b.cidr.to_string()).collect();
    assert!(
        !cidrs.contains("10.0.0.4/30"),
        "reserved block claimed: {cidrs:?}"
    );
    assert_eq!(cidrs.len(), 3);
    // Only reserved addresses are left: exhausted, not handed out.
    let e = assign(&ipam, "n0", "h2", 1).unwrap_err();
    assert!(matches!(e, IpamError::Exhausted { .. }), "{e}");
    check_invariants(&s, false);
}

#[test]
fn borrowing_skips_reserved_addresses() {
    // Two blocks of 4: n0 takes one address of block 0, n1 fills block 1 and then borrows.
    let s = setup("10.0.1.0/29", 30);
    let ipam = Ipam::with_options(&s, opts());
    let a = assign(&ipam, "n0", "a", 1).unwrap()[0];
    let b0 = if a < ip("10.0.1.4") { 0u8 } else { 4 };
    let other = 4 - b0;
    // Reserve two of the free addresses of n0's block after the fact (allocation stays).
    let r1 = IpAddr::from([10, 0, 1, b0 + 1]);
    let r2 = IpAddr::from([10, 0, 1, b0 + 3]);
    reserve(
        &s,
        "r",
        &[&r1.to_string(), &format!("{r2}/32"), &a.to_string()],
    );
    let got = assign(&ipam, "n1", "b", 5).unwrap();
    let got: BTreeSet<IpAddr> = got.into_iter().collect();
    let mut want: BTreeSet<IpAddr> = (0..4)
        .map(|i| IpAddr::from([10, 0, 1, other + i]))
        .collect();
    want.insert(IpAddr::from([10, 0, 1, b0 + 2]));
    assert_eq!(got, want, "borrowed only the unreserved free address");
    assert!(
        Ipam::new(&s).get_assignment(a).unwrap().is_some(),
        "pre-existing allocation kept"
    );
    check_invariants(&s, false);
}

#[test]
fn affine_block_with_only_reserved_space_moves_on() {
    let s = setup("10.0.2.0/29", 30);
    let ipam = Ipam::with_options(&s, opts());
    let a = assign(&ipam, "n0", "a", 1).unwrap()[0];
    let base = if a < ip("10.0.2.4") { 0u8 } else { 4 };
    let rest: Vec<String> = (0..4)
        .map(|i| IpAddr::from([10, 0, 2, base + i]).to_string())
        .filter(|x| *x != a.to_string())
        .collect();
    reserve(
        &s,
        "r",
        &rest.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let next = assign(&ipam, "n0", "b", 1).unwrap()[0];
    assert_eq!(
        ipnetwork::IpNetwork::new(next, 30).unwrap().network(),
        IpAddr::from([10, 0, 2, 4 - base]),
        "a new block was claimed instead of handing out a reserved address"
    );
}

#[test]
fn specific_address_requests_are_not_filtered() {
    // Calico's AssignIP does not consult reservations (they only apply to automatic
    // assignment); neither do we.
    let s = setup("10.0.3.0/28", 30);
    reserve(&s, "r", &["10.0.3.0/28"]);
    let ipam = Ipam::with_options(&s, opts());
    assert!(matches!(
        assign(&ipam, "n0", "a", 1),
        Err(IpamError::Exhausted { .. })
    ));
    ipam.assign_ip(&AssignIpRequest {
        ip: Some(ip("10.0.3.5")),
        handle_id: "m".into(),
        hostname: "n0".into(),
        ..Default::default()
    })
    .unwrap();
}

#[test]
fn unreadable_reservation_fails_assignment() {
    let s = setup("10.0.4.0/28", 30);
    s.create(
        &Key::resource(ResourceKind::IpReservation, "bad"),
        "not json",
    )
    .unwrap();
    let e = assign(&Ipam::with_options(&s, opts()), "n0", "a", 1).unwrap_err();
    assert!(e.to_string().contains("ipreservations/bad"), "{e}");
}

fn reservation_sets() -> impl Strategy<Value = Vec<String>> {
    // Addresses and /30s of 10.9.0.0/27 (4 blocks of 8), plus the odd IPv6 entry.
    let entry = prop_oneof![
        4 => (0..32u8).prop_map(|i| format!("10.9.0.{i}")),
        1 => (0..8u8).prop_map(|i| format!("10.9.0.{}/30", i * 4)),
        1 => Just("10.9.0.8/29".to_string()),
        1 => Just("fd00::1".to_string()),
    ];
    prop::collection::vec(entry, 0..12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random reservations and random assign/release sequences on three nodes: no reserved
    /// address is ever allocated, no wholly reserved block is ever created, and a request only
    /// fails when fewer unreserved addresses than requested are free.
    #[test]
    fn reserved_addresses_are_never_handed_out(
        reserved in reservation_sets(),
        ops in prop::collection::vec((0..3usize, 0..6u8, 1..5usize, any::<bool>()), 1..40),
    ) {
        let s = MemoryStore::new();
        add_pool(&s, "p", "10.9.0.0/27", Some(29), None);
        for n in ["n0", "n1", "n2"] {
            add_node(&s, n, &[]);
        }
        reserve(&s, "r", &reserved.iter().map(String::as_str).collect::<Vec<_>>());
        let rs = Reservations::load(&s).unwrap();
        let unreserved: BTreeSet<IpAddr> = (0..32u8)
            .map(|i| IpAddr::from([10, 9, 0, i]))
            .filter(|a| !rs.matches_ip(*a))
            .collect();
        let ipam = Ipam::with_options(&s, opts());
        for (node, handle, n, release) in ops {
            let h = format!("h{handle}");
            if release {
                match ipam.release_by_handle(&h) {
                    Ok(_) | Err(IpamError::HandleNotFound(_)) => {}
                    Err(e) => prop_assert!(false, "release failed: {e}"),
                }
                continue;
            }
            let before = allocations(&s);
            let free = unreserved.iter().filter(|a| !before.contains_key(a)).count();
            match assign(&ipam, ["n0", "n1", "n2"][node], &h, n) {
                Ok(ips) => prop_assert_eq!(ips.len(), n),
                Err(IpamError::Exhausted { .. }) => {
                    prop_assert!(free < n, "{free} unreserved free but {n} refused");
                }
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
            for a in allocations(&s).keys() {
                prop_assert!(!rs.matches_ip(*a), "reserved {a} allocated");
            }
            for b in blocks(&s) {
                prop_assert!(!rs.matches_whole(&b.cidr), "reserved block {} created", b.cidr);
            }
            check_invariants(&s, false);
        }
    }
}
