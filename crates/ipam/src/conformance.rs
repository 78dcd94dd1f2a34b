//! Reusable conformance checks for [`Store`] implementations.
//!
//! Backend crates call [`run_all`] from their tests on an EMPTY store, so every backend is held
//! to the same contract (see [`crate::store`]). Panics (with a message) on the first violation.

use crate::keys::{IpVersion, Key, ListPrefix, ResourceKind};
use crate::store::{Read, ReadResult, Store, StoreError, WriteOp};

fn net(s: &str) -> ipnetwork::IpNetwork {
    s.parse().expect("static test CIDR")
}

/// Run every check below. The store must be empty.
pub fn run_all(store: &dyn Store) {
    crud_and_cas(store);
    commits(store);
    listing(store);
    reservations(store);
    multi_read(store);
}

/// `read_many`: one answer per read, in order, each what the single `get_opt`/`list` gives
/// (absent gets as `None`, empty lists empty, lists ascending by path).
pub fn multi_read(store: &dyn Store) {
    let present = Key::handle("conformance.mr");
    let absent = Key::handle("conformance.mr.absent");
    let rev = store.create(&present, r#"{"block":{}}"#).expect("create");
    // Created out of order; `mr-n10` and the IPv6 one must not show in `mr-n1`'s IPv4 list.
    for k in [
        Key::host_affinity("mr-n1", net("10.11.0.64/26")),
        Key::host_affinity("mr-n10", net("10.11.0.128/26")),
        Key::host_affinity("mr-n1", net("fd00:11::/122")),
        Key::host_affinity("mr-n1", net("10.11.0.0/26")),
    ] {
        store.create(&k, "{}").expect("create for multi-read");
    }
    let affine = ListPrefix::Affinities {
        host: Some("mr-n1".into()),
        version: Some(IpVersion::V4),
    };
    let empty = ListPrefix::Affinities {
        host: Some("mr-nobody".into()),
        version: None,
    };
    let all_blocks = ListPrefix::Blocks { version: None };
    let reads = [
        Read::Get(absent.clone()),
        Read::List(empty.clone()),
        Read::Get(present.clone()),
        Read::List(affine.clone()),
        Read::List(all_blocks.clone()),
    ];
    let got: Vec<ReadResult> = store
        .read_many(&reads)
        .into_iter()
        .map(|r| r.expect("read_many"))
        .collect();
    assert_eq!(got.len(), reads.len(), "one answer per read");
    assert_eq!(got[0], ReadResult::Got(None), "absent get");
    assert_eq!(got[1], ReadResult::Listed(vec![]), "empty list");
    let ReadResult::Got(Some(kv)) = &got[2] else {
        panic!("present get answered {:?}", got[2]);
    };
    assert_eq!(
        (&kv.key, kv.value.as_str(), &kv.revision),
        (&present, r#"{"block":{}}"#, &rev)
    );
    let paths: Vec<String> = match &got[3] {
        ReadResult::Listed(kvs) => kvs.iter().map(|kv| kv.key.path()).collect(),
        other => panic!("list answered {other:?}"),
    };
    assert_eq!(
        paths,
        vec![
            "/calico/ipam/v2/host/mr-n1/ipv4/block/10.11.0.0-26",
            "/calico/ipam/v2/host/mr-n1/ipv4/block/10.11.0.64-26"
        ]
    );
    // Each answer is exactly the single call's.
    assert_eq!(
        got[3],
        ReadResult::Listed(store.list(&affine).expect("list"))
    );
    assert_eq!(
        got[4],
        ReadResult::Listed(store.list(&all_blocks).expect("list"))
    );
    assert_eq!(store.read_many(&[]), vec![], "no reads, no answers");
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

/// Multi-key commits and reads: a failing compare on one key names that op (index, and its
/// key in the error) and, on a store
/// that claims atomic commits, writes nothing at all (the sequential fallback writes exactly
/// the ops before it); a successful commit applies every op and returns revisions the store
/// then accepts. Leaves the store empty again.
pub fn commits(store: &dyn Store) {
    let a = Key::handle("conformance.commit-a");
    let b = Key::handle("conformance.commit-b");
    let c = Key::block(net("10.77.0.0/26"));
    let ra = store.create(&a, r#"{"a":1}"#).expect("create a");
    let rb = store.create(&b, r#"{"b":1}"#).expect("create b");
    let rb2 = store.update(&b, r#"{"b":2}"#, &rb).expect("update b");
    let atomic = store.commits_atomically();
    let value = |k: &Key| {
        store
            .get_opt(k)
            .expect("get")
            .map(|kv| (kv.value, kv.revision))
    };

    // Stale revision on the last op.
    let e = store
        .commit(&[
            WriteOp::Update {
                key: a.clone(),
                value: r#"{"a":2}"#.into(),
                revision: ra.clone(),
            },
            WriteOp::Create {
                key: c.clone(),
                value: "{}".into(),
            },
            WriteOp::Update {
                key: b.clone(),
                value: r#"{"b":3}"#.into(),
                revision: rb.clone(),
            },
        ])
        .expect_err("stale revision of b must fail the commit");
    assert_eq!(e.failed, 2, "{e}");
    assert!(
        matches!(&e.error, StoreError::Conflict(m) if m.contains(&b.path())),
        "{e}"
    );
    assert_eq!(value(&b), Some((r#"{"b":2}"#.into(), rb2.clone())));
    let ra = if atomic {
        assert_eq!(
            e.applied, 0,
            "an atomic commit wrote part of a failed commit: {e}"
        );
        assert_eq!(
            value(&a),
            Some((r#"{"a":1}"#.into(), ra.clone())),
            "a failed atomic commit changed another key"
        );
        assert_eq!(value(&c), None, "a failed atomic commit created a key");
        ra
    } else {
        assert_eq!(
            e.applied, 2,
            "the fallback writes the ops before the failed one: {e}"
        );
        let (v, r) = value(&a).expect("a");
        assert_eq!(v, r#"{"a":2}"#);
        store.delete(&c, None).expect("fallback created c");
        r
    };

    // Each kind of compare failure names its op.
    let e = store
        .commit(&[WriteOp::Create {
            key: a.clone(),
            value: "{}".into(),
        }])
        .expect_err("create of an existing key");
    assert!(
        e.failed == 0 && matches!(&e.error, StoreError::AlreadyExists(m) if m.contains(&a.path())),
        "{e}"
    );
    let e = store
        .commit(&[
            WriteOp::Create {
                key: c.clone(),
                value: "{}".into(),
            },
            WriteOp::Delete {
                key: Key::handle("conformance.commit-absent"),
                revision: ra.clone(),
            },
        ])
        .expect_err("delete of an absent key");
    let absent = Key::handle("conformance.commit-absent").path();
    assert!(
        e.failed == 1 && matches!(&e.error, StoreError::NotFound(m) if m.contains(&absent)),
        "{e}"
    );
    if atomic {
        assert_eq!(value(&c), None, "a failed atomic commit created a key");
    } else {
        store.delete(&c, None).expect("fallback created c");
    }
    // One key twice: refused whole.
    let e = store
        .commit(&[
            WriteOp::Update {
                key: a.clone(),
                value: "{}".into(),
                revision: ra.clone(),
            },
            WriteOp::Delete {
                key: a.clone(),
                revision: ra.clone(),
            },
        ])
        .expect_err("one key twice");
    assert!(
        matches!(e.error, StoreError::Other(_)) && e.applied == 0,
        "{e}"
    );
    assert_eq!(value(&a).map(|(_, r)| r), Some(ra.clone()));

    // Success: update, delete and create at once.
    let revs = store
        .commit(&[
            WriteOp::Update {
                key: a.clone(),
                value: r#"{"a":3}"#.into(),
                revision: ra.clone(),
            },
            WriteOp::Delete {
                key: b.clone(),
                revision: rb2.clone(),
            },
            WriteOp::Create {
                key: c.clone(),
                value: r#"{"c":1}"#.into(),
            },
        ])
        .expect("commit");
    assert_eq!(revs.len(), 3);
    assert!(revs[1].is_none(), "a delete has no new revision");
    let ra2 = revs[0].clone().expect("revision of a");
    let rc = revs[2].clone().expect("revision of c");
    assert_ne!(ra2, ra);
    assert_eq!(value(&a), Some((r#"{"a":3}"#.into(), ra2.clone())));
    assert_eq!(value(&b), None);
    assert_eq!(value(&c), Some((r#"{"c":1}"#.into(), rc.clone())));

    // Reading several keys at once.
    let got = store
        .get_many(&[c.clone(), b.clone(), a.clone()])
        .expect("get_many");
    let got: Vec<_> = got
        .into_iter()
        .map(|kv| kv.map(|kv| (kv.key, kv.value, kv.revision)))
        .collect();
    assert_eq!(
        got,
        vec![
            Some((c.clone(), r#"{"c":1}"#.to_string(), rc.clone())),
            None,
            Some((a.clone(), r#"{"a":3}"#.to_string(), ra2.clone())),
        ]
    );

    // The returned revisions are current: the next CAS succeeds with them.
    store
        .commit(&[
            WriteOp::Delete {
                key: a.clone(),
                revision: ra2,
            },
            WriteOp::Delete {
                key: c.clone(),
                revision: rc,
            },
        ])
        .expect("delete with the commit's revisions");
    assert_eq!((value(&a), value(&c)), (None, None));
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

/// Calico's exact JSON — a block with cooling-down (`releasedAt`) entries, affinities in every
/// state, a handle, an IPAM config with `maxBlocksPerHost`/`ipCooldownSeconds`, a pool with a
/// status — must read back field by field as written, and the allocator must work on it as
/// Calico would: cooled addresses freed, cooling ones kept (with their entry untouched), the
/// block limit enforced, a `pending` claim finished, a `pendingDeletion` affinity confirmed
/// again. Keys under `10.96.0.0/28`; the store must not hold them yet. Node objects are not
/// needed (the allocator runs with `require_node: false`), so KDD stores can run it too.
pub fn calico_fixtures(store: &dyn Store) {
    use serde_json::{json, Value};
    use std::time::{Duration, SystemTime};

    use crate::allocator::{AutoAssignRequest, Ipam, IpamOptions};
    use crate::clock::rfc3339;
    use crate::error::IpamError;

    let now = SystemTime::now();
    let cooled = rfc3339(now - Duration::from_secs(7200));
    let cooling = rfc3339(now - Duration::from_secs(5));
    let block_a = net("10.96.0.0/30");
    let block_b = net("10.96.0.4/30");
    let block_c = net("10.96.0.8/30");
    let attr_c0 = json!({"handle_id": "k8s-pod-network.c0", "secondary": {"namespace": "default",
        "node": "node-a", "pod": "p0", "timestamp": "2026-08-01 10:00:00.000000001 +0000 UTC"}});
    let fixtures: Vec<(Key, Value)> = vec![
        (
            Key::IpamConfig,
            json!({"strict_affinity": true, "auto_allocate_blocks": true,
                "maxBlocksPerHost": 1, "ipCooldownSeconds": 600}),
        ),
        (
            Key::resource(ResourceKind::IpPool, "fixture-pool"),
            json!({"kind": "IPPool", "apiVersion": "projectcalico.org/v3",
                "metadata": {"name": "fixture-pool"},
                "spec": {"cidr": "10.96.0.0/28", "blockSize": 30, "ipipMode": "Never",
                    "vxlanMode": "Never", "natOutgoing": true, "nodeSelector": "all()",
                    "allowedUses": ["Workload", "Tunnel"]},
                "status": {"conditions": [{"type": "Allocatable", "status": "True",
                    "reason": "OK", "message": "", "lastTransitionTime": "2026-08-01T10:00:00Z"}]}}),
        ),
        (
            Key::block(block_a),
            json!({"cidr": "10.96.0.0/30", "affinity": "host:node-a",
                "affinity_claim_time": "2026-08-01T10:00:00Z",
                "allocations": [0, 1, null, 2], "unallocated": [2],
                "attributes": [attr_c0, {"releasedAt": cooled}, {"releasedAt": cooling}],
                "sequenceNumber": 1754042400000000005_u64,
                "sequenceNumberForAllocation": {"0": 1754042400000000000_u64,
                    "1": 1754042400000000003_u64, "3": 1754042400000000004_u64},
                "deleted": false}),
        ),
        (
            Key::block(block_c),
            json!({"cidr": "10.96.0.8/30", "affinity": "host:node-c",
                "affinity_claim_time": "2026-08-01T10:00:00Z",
                "allocations": [null, null, null, null], "unallocated": [0, 1, 2, 3],
                "attributes": [], "sequenceNumber": 7, "sequenceNumberForAllocation": {},
                "deleted": false}),
        ),
        (
            Key::host_affinity("node-a", block_a),
            json!({"state": "confirmed", "deleted": false}),
        ),
        (
            Key::host_affinity("node-b", block_b),
            json!({"state": "pending", "deleted": false}),
        ),
        (
            Key::host_affinity("node-c", block_c),
            json!({"state": "pendingDeletion", "deleted": false}),
        ),
        (
            Key::handle("k8s-pod-network.c0"),
            json!({"block": {"10.96.0.0/30": 1}, "deleted": false}),
        ),
    ];
    let read = |k: &Key| -> Value {
        let kv = store.get(k).unwrap_or_else(|e| panic!("read {k}: {e}"));
        let mut v: Value =
            serde_json::from_str(&kv.value).unwrap_or_else(|e| panic!("{k} is not JSON: {e}"));
        // Fields an API server assigns to every object it stores (KDD) are not Calico's data.
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in ["uid", "creationTimestamp", "resourceVersion"] {
                m.remove(f);
            }
        }
        v
    };
    for (k, v) in &fixtures {
        store
            .create(k, &v.to_string())
            .unwrap_or_else(|e| panic!("create {k}: {e}"));
    }
    for (k, v) in &fixtures {
        assert_eq!(&read(k), v, "{k} reads back as Calico wrote it");
    }

    let ipam = Ipam::with_options(
        store,
        IpamOptions {
            require_node: false,
            ..Default::default()
        },
    );
    let req = |host: &str, handle: &str, n: usize| AutoAssignRequest {
        num_v4: n,
        handle_id: handle.into(),
        hostname: host.into(),
        ..Default::default()
    };
    let ips = |r: crate::AutoAssignResult| -> Vec<String> {
        r.ipv4.iter().map(|n| n.ip().to_string()).collect()
    };

    // node-a: ordinal 2 was free, ordinal 1 has cooled (freed behind it), 3 still cools.
    let got = ipam
        .auto_assign(&req("node-a", "k8s-pod-network.c1", 2))
        .expect("assign from the fixture block");
    assert_eq!(ips(got), vec!["10.96.0.2", "10.96.0.1"]);
    let e = ipam
        .auto_assign(&req("node-a", "k8s-pod-network.c2", 1))
        .expect_err("only a cooling address left and maxBlocksPerHost 1");
    assert!(matches!(e, IpamError::BlockLimit { limit: 1, .. }), "{e:?}");
    let b = read(&Key::block(block_a));
    assert_eq!(b["allocations"][0], json!(0), "{b}");
    assert_eq!(b["attributes"][0], attr_c0, "{b}");
    let cooling_idx = b["allocations"][3]
        .as_u64()
        .expect("ordinal 3 still cooling") as usize;
    assert_eq!(
        b["attributes"][cooling_idx],
        json!({"releasedAt": cooling}),
        "the cooling entry is kept verbatim: {b}"
    );
    assert_eq!(b["unallocated"], json!([]), "{b}");
    assert_eq!(
        b["sequenceNumberForAllocation"]["3"],
        json!(1754042400000000004_u64),
        "{b}"
    );
    assert_eq!(b["affinity_claim_time"], json!("2026-08-01T10:00:00Z"));

    // Releasing c1 puts both addresses into one new cooling entry holding only releasedAt.
    ipam.release_by_handle("k8s-pod-network.c1")
        .expect("release c1");
    let b = read(&Key::block(block_a));
    let idx1 = b["allocations"][1].as_u64().expect("cooling") as usize;
    assert_eq!(
        b["allocations"][2],
        json!(idx1),
        "one entry per release: {b}"
    );
    let entry = b["attributes"][idx1].as_object().expect("attribute object");
    assert_eq!(entry.keys().collect::<Vec<_>>(), vec!["releasedAt"], "{b}");
    assert!(store
        .get_opt(&Key::handle("k8s-pod-network.c1"))
        .unwrap()
        .is_none());

    // node-b: a pending affinity without a block (crashed claim) is finished.
    let got = ipam
        .auto_assign(&req("node-b", "k8s-pod-network.c3", 1))
        .expect("node-b assign");
    assert_eq!(ips(got), vec!["10.96.0.4"]);
    assert_eq!(
        read(&Key::host_affinity("node-b", block_b)),
        json!({"state": "confirmed", "deleted": false})
    );
    // node-c: its pendingDeletion affinity is confirmed again and its block used.
    let got = ipam
        .auto_assign(&req("node-c", "k8s-pod-network.c4", 1))
        .expect("node-c assign");
    assert_eq!(ips(got), vec!["10.96.0.8"]);
    assert_eq!(
        read(&Key::host_affinity("node-c", block_c)),
        json!({"state": "confirmed", "deleted": false})
    );
    assert_eq!(
        read(&Key::handle("k8s-pod-network.c4")),
        json!({"block": {"10.96.0.8/30": 1}, "deleted": false})
    );
    // The pool (with its status) and the config are untouched.
    for (k, v) in &fixtures[..2] {
        assert_eq!(&read(k), v, "{k}");
    }
}
