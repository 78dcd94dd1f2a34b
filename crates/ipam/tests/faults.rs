//! Datastore failures in the middle of an operation: the caller sees `Unavailable` (CNI code
//! 11) and nothing is lost — whatever was half-written is either rolled back or reachable via
//! its handle, so a later release-by-handle (the runtime's DEL) cleans it up.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use ipam::{
    AutoAssignRequest, CommitError, Ipam, Key, KvPair, ListPrefix, MemoryStore, Revision, Store,
    StoreError, StoreResult, WriteOp,
};

/// Fails the `fail_at`-th write. `applied`: the write happens but the caller is told
/// `Unavailable` anyway (an etcd timeout after commit). `atomic`: multi-key commits go to the
/// memory store's atomic commit as one write (as etcd's and SQLite's do); otherwise they take
/// the sequential fallback a Kubernetes store uses.
struct Flaky {
    inner: MemoryStore,
    writes: AtomicUsize,
    fail_at: usize,
    applied: bool,
    atomic: bool,
}

impl Flaky {
    fn write<T>(&self, f: impl FnOnce() -> StoreResult<T>) -> StoreResult<T> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n != self.fail_at {
            return f();
        }
        if self.applied {
            let _ = f();
        }
        Err(StoreError::Unavailable("injected".into()))
    }
}

impl Store for Flaky {
    fn get(&self, key: &Key) -> StoreResult<KvPair> {
        self.inner.get(key)
    }
    fn list(&self, prefix: &ListPrefix) -> StoreResult<Vec<KvPair>> {
        self.inner.list(prefix)
    }
    fn create(&self, key: &Key, value: &str) -> StoreResult<Revision> {
        self.write(|| self.inner.create(key, value))
    }
    fn update(&self, key: &Key, value: &str, rev: &Revision) -> StoreResult<Revision> {
        self.write(|| self.inner.update(key, value, rev))
    }
    fn delete(&self, key: &Key, rev: Option<&Revision>) -> StoreResult<()> {
        self.write(|| self.inner.delete(key, rev))
    }
    fn commit(&self, ops: &[WriteOp]) -> Result<Vec<Option<Revision>>, CommitError> {
        if !self.atomic {
            return ipam::store::commit_sequentially(self, ops);
        }
        let mut inner = None;
        let r = self.write(|| {
            let r = self.inner.commit(ops);
            let e = r.as_ref().err().map(|e| e.error.clone());
            inner = Some(r);
            e.map_or(Ok(()), Err)
        });
        match (r, inner) {
            (Ok(()), Some(r)) => r,
            (Err(error), Some(Err(e))) => Err(CommitError { error, ..e }),
            (Err(error), _) => Err(CommitError::atomic(0, error)),
            (Ok(()), None) => unreachable!("write ran the commit"),
        }
    }
    fn commits_atomically(&self) -> bool {
        self.atomic
    }
}

fn req(handle: &str, v4: usize, v6: usize) -> AutoAssignRequest {
    AutoAssignRequest {
        num_v4: v4,
        num_v6: v6,
        handle_id: handle.into(),
        hostname: "n1".into(),
        attrs: attrs("n1", handle),
        ..Default::default()
    }
}

#[test]
fn failure_at_every_write_is_reported_and_recoverable() {
    for (applied, atomic) in [(false, false), (true, false), (false, true), (true, true)] {
        for fail_at in 1..=16 {
            let f = Flaky {
                inner: MemoryStore::new(),
                writes: AtomicUsize::new(0),
                fail_at: usize::MAX,
                applied,
                atomic,
            };
            add_pool(&f.inner, "v4", "10.40.0.0/24", Some(29), None);
            add_pool(&f.inner, "v6", "fd00:40::/120", Some(126), None);
            add_node(&f.inner, "n1", &[]);
            // An existing allocation so that release paths touch shared blocks too.
            Ipam::new(&f.inner).auto_assign(&req("old", 1, 0)).unwrap();
            let f = Flaky { fail_at, ..f };
            let ipam = Ipam::new(&f);
            // Dual stack, more than one v6 block: claims, handle writes, block writes.
            match ipam.auto_assign(&req("new", 2, 5)) {
                Ok(r) => assert_eq!((r.ipv4.len(), r.ipv6.len()), (2, 5)),
                Err(e) => assert!(e.is_unavailable(), "fail_at {fail_at}: {e}"),
            }
            // Every allocation is reachable from its handle (over-counts are tolerated).
            let a = ipam::audit::audit(&f.inner).unwrap();
            assert!(
                a.errors.is_empty(),
                "fail_at {fail_at} applied {applied} atomic {atomic}: {:?}",
                a.errors
            );
            // Recovery with a healthy store: the runtime's DEL, then another ADD/DEL cycle
            // (which also completes any half-done claim).
            let ipam = Ipam::new(&f.inner);
            let _ = ipam.release_by_handle("new");
            ipam.auto_assign(&req("later", 1, 1)).unwrap();
            for h in ["old", "later"] {
                ipam.release_by_handle(h).unwrap();
            }
            assert!(
                allocations(&f.inner).is_empty(),
                "fail_at {fail_at}: leaked"
            );
            assert!(
                handles(&f.inner).is_empty(),
                "fail_at {fail_at}: handle left"
            );
            check_invariants(&f.inner, false);
        }
    }
}

/// Reads (one by one: no `read_many` of its own, as on Kubernetes) fail with `Unavailable`
/// from the `fail_from`-th on; counts the read calls made.
struct ReadsFail {
    inner: MemoryStore,
    reads: AtomicUsize,
    fail_from: usize,
}

impl ReadsFail {
    fn read<T>(&self, f: impl FnOnce() -> StoreResult<T>) -> StoreResult<T> {
        if self.reads.fetch_add(1, Ordering::SeqCst) + 1 >= self.fail_from {
            return Err(StoreError::Unavailable("injected".into()));
        }
        f()
    }
}

impl Store for ReadsFail {
    fn get(&self, key: &Key) -> StoreResult<KvPair> {
        self.read(|| self.inner.get(key))
    }
    fn list(&self, prefix: &ListPrefix) -> StoreResult<Vec<KvPair>> {
        self.read(|| self.inner.list(prefix))
    }
    fn create(&self, key: &Key, value: &str) -> StoreResult<Revision> {
        self.inner.create(key, value)
    }
    fn update(&self, key: &Key, value: &str, rev: &Revision) -> StoreResult<Revision> {
        self.inner.update(key, value, rev)
    }
    fn delete(&self, key: &Key, rev: Option<&Revision>) -> StoreResult<()> {
        self.inner.delete(key, rev)
    }
}

/// A datastore that stops answering during an ADD's opening reads (config, reservations,
/// pools, node, affinities, made one by one on such a store) fails the ADD with
/// `Unavailable` after that one failed read: the reads after it are not attempted (each
/// would wait for its own timeout), and nothing is written.
#[test]
fn a_failed_opening_read_ends_the_batch() {
    for fail_from in 1..=5 {
        let s = ReadsFail {
            inner: MemoryStore::new(),
            reads: AtomicUsize::new(0),
            fail_from,
        };
        add_pool(&s.inner, "v4", "10.41.0.0/24", Some(29), None);
        add_node(&s.inner, "n1", &[]);
        let before = s.inner.dump();
        let e = Ipam::new(&s).auto_assign(&req("h", 1, 0)).unwrap_err();
        assert!(e.is_unavailable(), "fail_from {fail_from}: {e}");
        assert_eq!(
            s.reads.load(Ordering::SeqCst),
            fail_from,
            "reads made when read {fail_from} fails"
        );
        assert_eq!(s.inner.dump(), before, "nothing written");
    }
}
