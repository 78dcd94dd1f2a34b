//! Reusable conformance checks for [`Store`] implementations.
//!
//! Backend crates call [`run_all`] from their tests on an EMPTY store, so every backend is held
//! to the same contract (see [`crate::store`]). Panics (with a message) on the first violation.

use crate::keys::{IpVersion, Key, ListPrefix, ResourceKind};
use crate::store::{Store, StoreError};

fn net(s: &str) -> ipnetwork::IpNetwork {
    s.parse().expect("static test CIDR")
}

/// Run every check below. The store must be empty.
pub fn run_all(store: &dyn Store) {
    crud_and_cas(store);
    listing(store);
    reservations(store);
}

/// get / create / update / delete semantics including revision checks.
pub fn crud_and_cas(store: &dyn Store) {
    let k = Key::handle("conformance.crud");
    assert!(
        matches!(store.get(&k), Err(StoreError::NotFound(_))),
        "get of absent key must be NotFound"
    );
    assert_eq!(store.get_opt(&k).expect("get_opt"), None);
    let r1 = store.create(&k, r#"{"a":1}"#).expect("create");
    assert!(
        matches!(store.create(&k, "{}"), Err(StoreError::AlreadyExists(_))),
        "second create must be AlreadyExists"
    );
    let got = store.get(&k).expect("get after create");
    assert_eq!(got.value, r#"{"a":1}"#);
    assert_eq!(got.revision, r1);
    assert_eq!(got.key, k);

    let r2 = store.update(&k, r#"{"a":2}"#, &r1).expect("update");
    assert_ne!(r1, r2, "update must change the revision");
    assert!(
        matches!(store.update(&k, "{}", &r1), Err(StoreError::Conflict(_))),
        "update with stale revision must be Conflict"
    );
    assert_eq!(store.get(&k).expect("get").value, r#"{"a":2}"#);
    assert!(
        matches!(store.delete(&k, Some(&r1)), Err(StoreError::Conflict(_))),
        "delete with stale revision must be Conflict"
    );
    store.delete(&k, Some(&r2)).expect("delete");
    assert!(matches!(
        store.delete(&k, None),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.update(&k, "{}", &r2),
        Err(StoreError::NotFound(_))
    ));

    // Re-creating must not resurrect an old revision (ABA protection).
    let r3 = store.create(&k, "{}").expect("re-create");
    assert!(r3 != r1 && r3 != r2, "re-created key reused a revision");
    assert!(matches!(
        store.update(&k, "{}", &r2),
        Err(StoreError::Conflict(_))
    ));
    store.delete(&k, None).expect("unconditional delete");
}

/// Prefix listing: filtering, ordering, foreign keys skipped.
pub fn listing(store: &dyn Store) {
    let keys = [
        Key::block(net("10.9.0.64/26")),
        Key::block(net("10.9.0.0/26")),
        Key::block(net("fd00:9::/122")),
        Key::host_affinity("n1", net("10.9.0.0/26")),
        Key::host_affinity("n1", net("fd00:9::/122")),
        Key::host_affinity("n10", net("10.9.0.64/26")),
        Key::handle("h1"),
        Key::IpamConfig,
        Key::resource(ResourceKind::IpPool, "p1"),
    ];
    for k in &keys {
        store.create(k, "{}").expect("create for listing");
    }
    let paths = |p: ListPrefix| -> Vec<String> {
        store
            .list(&p)
            .expect("list")
            .into_iter()
            .map(|kv| kv.key.path())
            .collect()
    };
    assert_eq!(
        paths(ListPrefix::Blocks {
            version: Some(IpVersion::V4)
        }),
        vec![
            "/calico/ipam/v2/assignment/ipv4/block/10.9.0.0-26",
            "/calico/ipam/v2/assignment/ipv4/block/10.9.0.64-26"
        ]
    );
    assert_eq!(paths(ListPrefix::Blocks { version: None }).len(), 3);
    // `n1` must not match `n10`.
    assert_eq!(
        paths(ListPrefix::Affinities {
            host: Some("n1".into()),
            version: None
        }),
        vec![
            "/calico/ipam/v2/host/n1/ipv4/block/10.9.0.0-26",
            "/calico/ipam/v2/host/n1/ipv6/block/fd00:9::-122"
        ]
    );
    assert_eq!(
        paths(ListPrefix::Affinities {
            host: None,
            version: Some(IpVersion::V4)
        })
        .len(),
        2
    );
    assert_eq!(
        paths(ListPrefix::Handles),
        vec!["/calico/ipam/v2/handle/h1"]
    );
    assert_eq!(
        paths(ListPrefix::Resources {
            kind: ResourceKind::IpPool,
            namespace: None
        }),
        vec!["/calico/resources/v3/projectcalico.org/ippools/p1"]
    );
    assert!(paths(ListPrefix::Resources {
        kind: ResourceKind::Node,
        namespace: None
    })
    .is_empty());
    for k in &keys {
        store.delete(k, None).expect("cleanup");
    }
}

/// IPReservations round-trip through the store in their v3 shape and the allocator honours
/// them: filling a small pool hands out every unreserved address and no reserved one, and the
/// wholly reserved block is never created. Leaves the store empty again.
pub fn reservations(store: &dyn Store) {
    use crate::model::{IpPool, IpPoolSpec, IpReservation, IpReservationSpec};
    use crate::{AutoAssignRequest, Ipam, IpamOptions};

    let rkey = Key::resource(ResourceKind::IpReservation, "conformance-reserved");
    let r = IpReservation::new(
        "IPReservation",
        "conformance-reserved",
        IpReservationSpec {
            reserved_cidrs: vec!["10.123.0.4/30".into(), "10.123.0.9".into()],
            ..Default::default()
        },
    );
    store
        .create(&rkey, &r.to_json())
        .expect("create reservation");
    let back = IpReservation::from_json(&store.get(&rkey).expect("get reservation").value)
        .expect("reservation reads back");
    assert_eq!(back.spec.reserved_cidrs, r.spec.reserved_cidrs);
    assert_eq!(back.metadata.name, "conformance-reserved");

    let ipam = Ipam::with_options(
        store,
        IpamOptions {
            require_node: false,
            ..Default::default()
        },
    );
    let pool = IpPool::new(
        "IPPool",
        "conformance-pool",
        IpPoolSpec {
            cidr: "10.123.0.0/28".into(),
            block_size: Some(30),
            ..Default::default()
        },
    );
    ipam.create_pool(&pool).expect("create pool");
    let got = ipam
        .auto_assign(&AutoAssignRequest {
            num_v4: 11,
            handle_id: "conformance.reserved".into(),
            hostname: "conformance-node".into(),
            ..Default::default()
        })
        .expect("11 unreserved addresses fit");
    for n in &got.ipv4 {
        let last = match n.ip() {
            std::net::IpAddr::V4(a) => a.octets()[3],
            other => panic!("unexpected {other}"),
        };
        assert!(
            !(4..8).contains(&last) && last != 9,
            "reserved address {n} handed out"
        );
    }
    assert!(store
        .get_opt(&Key::block(net("10.123.0.4/30")))
        .expect("get block")
        .is_none());
    assert!(
        ipam.auto_assign(&AutoAssignRequest {
            num_v4: 1,
            handle_id: "conformance.more".into(),
            hostname: "conformance-node".into(),
            ..Default::default()
        })
        .is_err(),
        "only reserved addresses left"
    );

    // Clean up: addresses, affinities/blocks, pool, reservation.
    ipam.release_by_handle("conformance.reserved")
        .expect("release");
    ipam.release_host_affinities("conformance-node")
        .expect("release affinities");
    for prefix in [
        ListPrefix::Blocks { version: None },
        ListPrefix::Affinities {
            host: None,
            version: None,
        },
        ListPrefix::Handles,
        ListPrefix::Resources {
            kind: ResourceKind::IpPool,
            namespace: None,
        },
    ] {
        for kv in store.list(&prefix).expect("list for cleanup") {
            store.delete(&kv.key, None).expect("cleanup");
        }
    }
    store.delete(&rkey, None).expect("delete reservation");
}
