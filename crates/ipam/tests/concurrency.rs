//! Many threads (simulating processes on two nodes) allocating and releasing concurrently on
//! one store: every CAS race must be retried, never overwrite.

mod common;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Barrier, Mutex};

use common::*;
use ipam::{
    AutoAssignRequest, CommitError, Ipam, IpamError, Key, KvPair, ListPrefix, MemoryStore,
    Revision, Store, StoreResult, WriteOp,
};

/// Yields before every call so threads interleave between read and CAS-write. With `.1`,
/// multi-key commits and reads are the memory store's atomic ones (as on etcd and SQLite);
/// without, the sequential fallback a Kubernetes store uses.
struct Yielding(MemoryStore, bool);

impl Store for Yielding {
    fn get(&self, key: &Key) -> StoreResult<KvPair> {
        std::thread::yield_now();
        self.0.get(key)
    }
    fn list(&self, prefix: &ListPrefix) -> StoreResult<Vec<KvPair>> {
        std::thread::yield_now();
        self.0.list(prefix)
    }
    fn create(&self, key: &Key, value: &str) -> StoreResult<Revision> {
        std::thread::yield_now();
        self.0.create(key, value)
    }
    fn update(&self, key: &Key, value: &str, rev: &Revision) -> StoreResult<Revision> {
        std::thread::yield_now();
        self.0.update(key, value, rev)
    }
    fn delete(&self, key: &Key, rev: Option<&Revision>) -> StoreResult<()> {
        std::thread::yield_now();
        self.0.delete(key, rev)
    }
    fn commit(&self, ops: &[WriteOp]) -> Result<Vec<Option<Revision>>, CommitError> {
        if !self.1 {
            return ipam::store::commit_sequentially(self, ops);
        }
        std::thread::yield_now();
        self.0.commit(ops)
    }
    fn commits_atomically(&self) -> bool {
        self.1
    }
    fn get_many(&self, keys: &[Key]) -> StoreResult<Vec<Option<KvPair>>> {
        std::thread::yield_now();
        self.0.get_many(keys)
    }
}

fn hammer(pool_cidr: &str, block: u8, threads: usize, rounds: usize, per_call: usize) {
    for atomic in [false, true] {
        hammer_on(
            Yielding(MemoryStore::new(), atomic),
            pool_cidr,
            block,
            threads,
            rounds,
            per_call,
        );
    }
}

fn hammer_on(
    store: Yielding,
    pool_cidr: &str,
    block: u8,
    threads: usize,
    rounds: usize,
    per_call: usize,
) {
    let store = Arc::new(store);
    add_pool(&*store, "p", pool_cidr, Some(block), None);
    add_node(&*store, "node-a", &[]);
    add_node(&*store, "node-b", &[]);
    let live: Arc<Mutex<HashSet<IpAddr>>> = Arc::default();
    let barrier = Arc::new(Barrier::new(threads));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (store, live, barrier) = (store.clone(), live.clone(), barrier.clone());
            std::thread::spawn(move || {
                let ipam = Ipam::new(&*store);
                let node = if t % 2 == 0 { "node-a" } else { "node-b" };
                barrier.wait();
                let mut mine: Vec<(String, Vec<IpAddr>)> = Vec::new();
                for r in 0..rounds {
                    let h = format!("net.t{t}r{r}");
                    let req = AutoAssignRequest {
                        num_v4: per_call,
                        handle_id: h.clone(),
                        hostname: node.into(),
                        attrs: attrs(node, &h),
                        ..Default::default()
                    };
                    match ipam.auto_assign(&req) {
                        Ok(res) => {
                            let ips: Vec<IpAddr> = res.ipv4.iter().map(|n| n.ip()).collect();
                            let mut l = live.lock().unwrap();
                            for ip in &ips {
                                assert!(l.insert(*ip), "{ip} handed out twice");
                            }
                            mine.push((h, ips));
                        }
                        Err(IpamError::Exhausted { .. }) => {}
                        Err(e) => panic!("thread {t}: {e}"),
                    }
                    // Release every other round's handle to mix frees with allocations.
                    if r % 2 == 1 && !mine.is_empty() {
                        let (h, ips) = mine.remove(0);
                        // Out of the live set first: once the store frees them, another
                        // thread may legitimately get them at once.
                        {
                            let mut l = live.lock().unwrap();
                            for ip in &ips {
                                assert!(l.remove(ip), "{ip} was not live");
                            }
                        }
                        let mut freed = ipam.release_by_handle(&h).unwrap();
                        freed.sort();
                        let mut want = ips.clone();
                        want.sort();
                        assert_eq!(freed, want, "release of {h}");
                    }
                }
                mine.into_iter().map(|(h, _)| h).collect::<Vec<_>>()
            })
        })
        .collect();
    let remaining: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let exhausted = (threads * rounds).saturating_sub(remaining.len() + threads * rounds / 2);
    eprintln!(
        "{} handles still live, ~{exhausted} requests exhausted",
        remaining.len()
    );
    let s = &store.0;
    check_invariants(s, false);
    let allocated: HashSet<IpAddr> = allocations(s).into_keys().collect();
    assert_eq!(
        allocated,
        *live.lock().unwrap(),
        "store and handed-out set differ"
    );
    let ipam = Ipam::new(s);
    for h in remaining {
        ipam.release_by_handle(&h).unwrap();
    }
    assert!(allocations(s).is_empty(), "leaked allocations");
    assert!(handles(s).is_empty(), "leaked handles");
    check_invariants(s, false);
}

#[test]
fn threads_on_two_nodes_roomy_pool() {
    hammer("10.30.0.0/16", 26, 8, 40, 1);
}

#[test]
fn threads_on_two_nodes_tight_pool_forces_borrowing_and_exhaustion() {
    // 4 blocks of 4 addresses for 8 threads asking 2 at a time.
    hammer("10.31.0.0/28", 30, 8, 30, 2);
}
