//! Block claims at cluster scale: what a node's first ADD reads must not grow with the number of
//! nodes already holding blocks, and nodes claiming at the same moment never share or leak a
//! block.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use common::*;
use ipam::model::AllocationBlock;
use ipam::{
    AutoAssignRequest, CommitError, IntendedUse, Ipam, Key, KvPair, ListPrefix, MemoryStore, Read,
    ReadResult, Revision, Store, StoreResult, WriteOp,
};
use proptest::prelude::*;

/// Counts requests and the values they returned (a list of N blocks is N values read).
#[derive(Default)]
struct Counting {
    inner: MemoryStore,
    requests: AtomicUsize,
    values: AtomicUsize,
    /// Commits (one round trip each, however many objects they write).
    writes: AtomicUsize,
    yield_between: bool,
}

impl Counting {
    fn note(&self, values: usize) {
        if self.yield_between {
            std::thread::yield_now();
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.values.fetch_add(values, Ordering::SeqCst);
    }

    fn take(&self) -> (usize, usize) {
        (
            self.requests.swap(0, Ordering::SeqCst),
            self.values.swap(0, Ordering::SeqCst),
        )
    }
}

impl Store for Counting {
    fn get(&self, key: &Key) -> StoreResult<KvPair> {
        self.note(1);
        self.inner.get(key)
    }
    fn list(&self, prefix: &ListPrefix) -> StoreResult<Vec<KvPair>> {
        let r = self.inner.list(prefix);
        self.note(r.as_ref().map_or(0, Vec::len));
        r
    }
    fn create(&self, key: &Key, value: &str) -> StoreResult<Revision> {
        self.note(0);
        self.inner.create(key, value)
    }
    fn update(&self, key: &Key, value: &str, rev: &Revision) -> StoreResult<Revision> {
        self.note(0);
        self.inner.update(key, value, rev)
    }
    fn delete(&self, key: &Key, rev: Option<&Revision>) -> StoreResult<()> {
        self.note(0);
        self.inner.delete(key, rev)
    }
    fn commit(&self, ops: &[WriteOp]) -> Result<Vec<Option<Revision>>, CommitError> {
        self.note(0);
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.commit(ops)
    }
    fn commits_atomically(&self) -> bool {
        self.inner.commits_atomically()
    }
    fn get_many(&self, keys: &[Key]) -> StoreResult<Vec<Option<KvPair>>> {
        let r = self.inner.get_many(keys);
        self.note(r.as_ref().map_or(0, |v| v.iter().flatten().count()));
        r
    }
    fn read_many(&self, reads: &[Read]) -> Vec<StoreResult<ReadResult>> {
        let r = self.inner.read_many(reads);
        let values = r
            .iter()
            .map(|r| match r {
                Ok(ReadResult::Got(kv)) => usize::from(kv.is_some()),
                Ok(ReadResult::Listed(kvs)) => kvs.len(),
                Err(_) => 0,
            })
            .sum();
        self.note(values);
        r
    }
}

fn first_add(store: &dyn Store, node: &str) {
    let req = AutoAssignRequest {
        num_v4: 1,
        num_v6: 0,
        handle_id: format!("net.{node}-pod"),
        hostname: node.to_string(),
        ipv4_pools: vec![],
        ipv6_pools: vec![],
        attrs: attrs(node, "pod"),
        max_blocks_per_host: 0,
        intended_use: IntendedUse::Workload,
        ..Default::default()
    };
    let r = Ipam::with_options(store, opts()).auto_assign(&req).unwrap();
    assert_eq!(r.ipv4.len(), 1, "{node} got an address");
}

/// The reads of one new node's first ADD once `nodes` nodes hold a block each.
fn first_add_cost(nodes: usize) -> (usize, usize) {
    let store = Counting::default();
    // A /12 of /26 blocks: 16,384 blocks, room for the 5,000-node goal.
    add_pool(&store, "pool", "10.64.0.0/12", Some(26), None);
    for n in 0..nodes {
        let node = format!("node-{n}");
        add_node(&store, &node, &[]);
        first_add(&store, &node);
    }
    add_node(&store, "newcomer", &[]);
    store.take();
    first_add(&store, "newcomer");
    store.take()
}

#[test]
fn a_first_claim_reads_the_same_whatever_the_cluster_size() {
    let (small_requests, small_values) = first_add_cost(10);
    let (large_requests, large_values) = first_add_cost(2_000);
    // Equal up to a probe or two (a start index may land on a taken subnet); never a read of
    // every block, which is what made claims grow with the cluster.
    assert!(
        large_values <= small_values + 4 && large_requests <= small_requests + 4,
        "10 nodes: {small_requests} requests / {small_values} values; \
         2,000 nodes: {large_requests} requests / {large_values} values"
    );
}

/// A node's steady ADD (its block claimed) and DEL on a store with atomic commits: each one
/// commit (handle and block together), the ADD one read of block and handle after one read of
/// the config, reservations, pools, node and affinities, the DEL two reads; nothing more, at
/// any cluster size.
#[test]
fn a_steady_add_and_del_are_one_commit_each() {
    let store = Counting::default();
    add_pool(&store, "pool", "10.64.0.0/12", Some(26), None);
    for n in 0..50 {
        let node = format!("node-{n}");
        add_node(&store, &node, &[]);
        first_add(&store, &node);
    }
    let ipam = Ipam::with_options(&store, opts());
    for i in 0..5 {
        store.take();
        store.writes.store(0, Ordering::SeqCst);
        let handle = format!("net.steady-{i}");
        let req = AutoAssignRequest {
            num_v4: 1,
            handle_id: handle.clone(),
            hostname: "node-7".into(),
            attrs: attrs("node-7", "steady"),
            ..Default::default()
        };
        assert_eq!(ipam.auto_assign(&req).unwrap().ipv4.len(), 1);
        let (requests, _) = store.take();
        assert_eq!(
            store.writes.swap(0, Ordering::SeqCst),
            1,
            "one commit per ADD"
        );
        // config, reservations, pools, node and affinities in one read; block + handle;
        // commit.
        assert_eq!(requests, 3, "requests of a steady ADD");
        // A CNI DEL: the handle and Calico's legacy one (absent).
        let legacy = format!("steady-{i}");
        let freed = ipam.release_handles(&[&handle, &legacy], "node-7").unwrap();
        assert_eq!(freed.len(), 1, "the ADD's address freed");
        let (requests, _) = store.take();
        assert_eq!(
            store.writes.swap(0, Ordering::SeqCst),
            1,
            "one commit per DEL"
        );
        // The config and both handles; the handle's blocks with the node and the pools (for
        // Calico's affinity check after a release); the commit.
        assert_eq!(requests, 3, "requests of a DEL");
    }
}

#[test]
fn a_crowded_pool_still_finds_the_last_free_block() {
    // 8 blocks, 7 nodes already in: probes from most start indexes hit taken subnets, and the
    // full walk has to finish the search.
    let store = MemoryStore::new();
    add_pool(&store, "pool", "10.9.0.0/23", Some(26), None);
    for n in 0..8 {
        let node = format!("node-{n}");
        add_node(&store, &node, &[]);
        first_add(&store, &node);
    }
    let hosts: HashSet<String> = blocks(&store)
        .iter()
        .filter_map(|b| b.host().map(str::to_string))
        .collect();
    assert_eq!(hosts.len(), 8, "every node claimed its own block");
    check_invariants(&store, true);
}

/// `nodes` threads, each a node doing `pods` ADDs at the same moment on one store.
fn claim_at_once(nodes: usize, pods: usize, block: u8) {
    let store = Arc::new(Counting {
        yield_between: true,
        ..Default::default()
    });
    add_pool(&*store, "pool", "10.80.0.0/20", Some(block), None);
    for n in 0..nodes {
        add_node(&*store, &format!("node-{n}"), &[]);
    }
    let barrier = Arc::new(Barrier::new(nodes));
    let workers: Vec<_> = (0..nodes)
        .map(|n| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                let node = format!("node-{n}");
                barrier.wait();
                for p in 0..pods {
                    let req = AutoAssignRequest {
                        num_v4: 1,
                        num_v6: 0,
                        handle_id: format!("net.{node}-{p}"),
                        hostname: node.clone(),
                        ipv4_pools: vec![],
                        ipv6_pools: vec![],
                        attrs: attrs(&node, &format!("pod{p}")),
                        max_blocks_per_host: 0,
                        intended_use: IntendedUse::Workload,
                        ..Default::default()
                    };
                    Ipam::with_options(&*store, opts())
                        .auto_assign(&req)
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("node thread");
    }
    // No address twice, every allocation reachable by handle, affinities and blocks agree.
    check_invariants(&*store, false);
    let all = blocks(&*store);
    let by_host: BTreeMap<String, Vec<&AllocationBlock>> =
        all.iter().fold(BTreeMap::new(), |mut m, b| {
            m.entry(b.host().unwrap_or("<none>").to_string())
                .or_default()
                .push(b);
            m
        });
    assert!(
        !by_host.contains_key("<none>"),
        "a block without a host leaked"
    );
    // No node holds an empty block it claimed and never used beyond its needs: blocks of a
    // node are all in use except possibly its newest one.
    for (host, bs) in &by_host {
        let empty = bs.iter().filter(|b| b.is_empty()).count();
        assert!(
            empty <= 1,
            "{host} holds {empty} empty blocks: leaked claims"
        );
    }
    assert_eq!(allocations(&*store).len(), nodes * pods);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn nodes_claiming_at_once_never_share_or_leak_a_block(
        nodes in 2usize..9,
        pods in 1usize..12,
        block in 28u8..31,
    ) {
        claim_at_once(nodes, pods, block);
    }
}
