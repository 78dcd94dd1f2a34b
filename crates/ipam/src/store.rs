//! The datastore contract every IPAM backend implements.
//!
//! # Model
//!
//! A [`Store`] is a *revisioned object store* keyed by [`Key`]. Each object's value is the JSON
//! text exactly as Calico's etcdv3 backend stores it (see [`crate::model`]): plain KV stores
//! (etcd, SQLite, memory) store it verbatim under [`Key::path`]; a store that keeps objects
//! elsewhere (e.g. Kubernetes CRDs) converts between that JSON and its own representation,
//! using the typed [`Key`] variant to know which model type it holds.
//!
//! Every stored object carries a [`Revision`]: an opaque token that changes on every write of
//! that object (etcd `ModRevision`, SQLite global counter, k8s `resourceVersion`). Writers
//! read `(value, revision)`, compute a new value, and write it back *only if the revision is
//! unchanged* (compare-and-swap). The allocator never blind-writes.
//!
//! # Semantics (all implementations must follow these)
//!
//! | call | success | errors |
//! |---|---|---|
//! | `get(k)` | current value + revision | `NotFound` if absent |
//! | `list(p)` | every object whose key `p.matches`, **ascending by `Key::path()`** | (empty vec if none) |
//! | `create(k, v)` | new revision; only if `k` is absent | `AlreadyExists` if present |
//! | `update(k, v, rev)` | new revision; only if current revision == `rev` | `NotFound` if absent, `Conflict` if revision differs |
//! | `delete(k, Some(rev))` | removed; only if current revision == `rev` | `NotFound` if absent, `Conflict` if revision differs |
//! | `delete(k, None)` | removed unconditionally | `NotFound` if absent |
//!
//! | `commit(ops)` | every op of `ops` applied, or none | [`CommitError`] naming the first op whose compare failed; refused whole beyond `max_commit_ops()` ops |
//! | `get_many(ks)` | each key's value + revision (or `None`), one snapshot when the store can | as `get` |
//! | `read_many(rs)` | one [`ReadResult`] per [`Read`], in order: a get's value (or `None`), a list as `list` gives it; one snapshot when the store can | per read, as `get`/`list` |
//!
//! * Each call is atomic and linearizable with respect to all other calls on the same
//!   datastore, from any thread or process.
//! * A revision returned for one key must never be accepted as current for that key after any
//!   later write to it (no ABA: a deleted-then-recreated key gets a fresh revision). Revisions
//!   of different keys are not compared by the allocator.
//! * `Unavailable` means the datastore could not be reached or did not answer in time and the
//!   operation **may or may not** have been applied (callers re-read before retrying);
//!   callers surface it as CNI error code 11 ("try again later").
//! * `Other` is any other failure (bad data, permissions, I/O corruption, ...).
//! * The trait is synchronous: async backends hide their own (current-thread) runtime.
//!   No `Send`/`Sync` supertrait is required; concrete stores that are shared between threads
//!   (the memory and SQLite stores are) implement them themselves.

use std::fmt;

use crate::keys::{Key, ListPrefix};

/// Opaque per-object version token used for compare-and-swap.
///
/// Stores backed by integer revisions (etcd `ModRevision`, SQLite counter) use
/// [`Revision::from_i64`]/[`Revision::as_i64`]; others may put any string here (a Kubernetes
/// store could encode `resourceVersion` plus UID). The allocator only compares and passes
/// revisions back, it never interprets them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Revision(String);

impl Revision {
    /// A revision from an opaque string.
    pub fn new(s: impl Into<String>) -> Self {
        Revision(s.into())
    }

    /// A revision from an integer counter.
    pub fn from_i64(n: i64) -> Self {
        Revision(n.to_string())
    }

    /// The integer form, if this revision was made by [`Revision::from_i64`].
    pub fn as_i64(&self) -> Option<i64> {
        self.0.parse().ok()
    }

    /// The opaque string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvPair {
    pub key: Key,
    /// JSON text in Calico's etcdv3 value shape.
    pub value: String,
    pub revision: Revision,
}

/// Datastore failures, classified so the allocator can decide between retrying and failing.
/// The `String` carries the key path or a human-readable cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("resource does not exist: {0}")]
    NotFound(String),
    /// `create` of an object that already exists.
    #[error("resource already exists: {0}")]
    AlreadyExists(String),
    /// CAS failed: the object changed since it was read.
    #[error("update conflict: {0}")]
    Conflict(String),
    /// The datastore cannot be reached / timed out (CNI code 11). The write may have happened.
    #[error("datastore unavailable: {0}")]
    Unavailable(String),
    /// The datastore's own storage failed (disk full, read-only filesystem, I/O error): CNI
    /// code 5. Nothing was written.
    #[error("datastore storage failure: {0}")]
    Storage(String),
    /// Anything else.
    #[error("datastore error: {0}")]
    Other(String),
}

/// An unreachable datastore is "try again later" (11); a local store that cannot write (disk full,
/// read-only) is an I/O error (5); anything else is generic (999).
impl cni::CniCode for StoreError {
    fn cni_code(&self) -> cni::ErrorCode {
        match self {
            StoreError::Unavailable(_) => cni::ErrorCode::TryAgainLater,
            StoreError::Storage(_) => cni::ErrorCode::Io,
            _ => cni::error::GENERIC,
        }
    }
}

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// One conditional write of a [`Store::commit`]. Each op carries its own compare: `Create`
/// only if the key is absent, `Update`/`Delete` only if the key's revision is still the one
/// given (the allocator never blind-writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Create {
        key: Key,
        value: String,
    },
    Update {
        key: Key,
        value: String,
        revision: Revision,
    },
    Delete {
        key: Key,
        revision: Revision,
    },
}

impl WriteOp {
    /// The key this op writes.
    pub fn key(&self) -> &Key {
        match self {
            WriteOp::Create { key, .. }
            | WriteOp::Update { key, .. }
            | WriteOp::Delete { key, .. } => key,
        }
    }

    /// Why this op's compare fails against the key's current revision (`None`: absent), if
    /// it does: what the single-key call would return.
    pub fn compare_error(&self, current: Option<&Revision>) -> Option<StoreError> {
        let path = || self.key().path();
        match (self, current) {
            (WriteOp::Create { .. }, None) => None,
            (WriteOp::Create { .. }, Some(_)) => Some(StoreError::AlreadyExists(path())),
            (WriteOp::Update { .. } | WriteOp::Delete { .. }, None) => {
                Some(StoreError::NotFound(path()))
            }
            (WriteOp::Update { revision, .. } | WriteOp::Delete { revision, .. }, Some(cur)) => {
                (cur != revision).then(|| StoreError::Conflict(path()))
            }
        }
    }

    /// The op alone, through the single-key calls (what [`Store::commit`]'s sequential
    /// fallback does for each op). Returns the new revision (`None` for a delete).
    pub fn apply_alone<S: Store + ?Sized>(&self, store: &S) -> StoreResult<Option<Revision>> {
        match self {
            WriteOp::Create { key, value } => store.create(key, value).map(Some),
            WriteOp::Update {
                key,
                value,
                revision,
            } => store.update(key, value, revision).map(Some),
            WriteOp::Delete { key, revision } => store.delete(key, Some(revision)).map(|()| None),
        }
    }
}

/// A [`Store::commit`] that did not (entirely) happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("write {failed} of a commit ({applied} written before it): {error}")]
pub struct CommitError {
    /// Index in `ops` of the op whose compare failed (`error` is what that op alone would
    /// have returned: `AlreadyExists`, `Conflict` or `NotFound`, naming its key), or of the
    /// op during which the store failed.
    pub failed: usize,
    /// How many leading ops are written even so: always 0 for a store whose
    /// [`Store::commits_atomically`] is true; for the sequential fallback, the ops before
    /// `failed`. With `Unavailable`, op `failed` (and, for an atomic store, the whole commit)
    /// may or may not have been applied, as for a single call.
    pub applied: usize,
    pub error: StoreError,
}

impl CommitError {
    /// A failure of an atomic commit: nothing was written (or, when `Unavailable`, the whole
    /// commit may have been).
    pub fn atomic(failed: usize, error: StoreError) -> Self {
        CommitError {
            failed,
            applied: 0,
            error,
        }
    }
}

/// A commit writing one key twice is refused as a whole (etcd refuses such a Txn; no caller
/// needs it): `Other` at the second op on that key, nothing written.
pub fn check_distinct_keys(ops: &[WriteOp]) -> Result<(), CommitError> {
    let mut seen = std::collections::HashSet::new();
    for (i, op) in ops.iter().enumerate() {
        if !seen.insert(op.key()) {
            return Err(CommitError::atomic(
                i,
                StoreError::Other(format!("{} written twice in one commit", op.key())),
            ));
        }
    }
    Ok(())
}

/// [`Store::commit`]'s default: the ops one by one through `store`'s single-key calls, in
/// order, stopping at the first failure (for wrappers that want it around their own calls).
pub fn commit_sequentially<S: Store + ?Sized>(
    store: &S,
    ops: &[WriteOp],
) -> Result<Vec<Option<Revision>>, CommitError> {
    check_distinct_keys(ops)?;
    let mut out = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        match op.apply_alone(store) {
            Ok(rev) => out.push(rev),
            Err(error) => {
                return Err(CommitError {
                    failed: i,
                    applied: i,
                    error,
                })
            }
        }
    }
    Ok(out)
}

impl From<CommitError> for StoreError {
    fn from(e: CommitError) -> Self {
        e.error
    }
}

/// One read of a [`Store::read_many`] batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// [`Store::get_opt`] of the key.
    Get(Key),
    /// [`Store::list`] of the prefix.
    List(ListPrefix),
}

/// What one [`Read`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadResult {
    /// A [`Read::Get`]'s object, `None` when absent.
    Got(Option<KvPair>),
    /// A [`Read::List`]'s objects, ascending by key path.
    Listed(Vec<KvPair>),
}

impl ReadResult {
    /// The object of a [`Read::Get`] (`Other` if this answers a list: a store bug).
    pub fn into_got(self) -> StoreResult<Option<KvPair>> {
        match self {
            ReadResult::Got(kv) => Ok(kv),
            ReadResult::Listed(_) => Err(StoreError::Other("a list answered a get".into())),
        }
    }

    /// The objects of a [`Read::List`] (`Other` if this answers a get: a store bug).
    pub fn into_listed(self) -> StoreResult<Vec<KvPair>> {
        match self {
            ReadResult::Listed(kvs) => Ok(kvs),
            ReadResult::Got(_) => Err(StoreError::Other("a get answered a list".into())),
        }
    }
}

/// The answers of one [`Store::read_many`], taken in the order of its reads.
pub struct Answers(std::vec::IntoIter<StoreResult<ReadResult>>);

impl Answers {
    pub fn new(answers: Vec<StoreResult<ReadResult>>) -> Self {
        Answers(answers.into_iter())
    }

    fn next_answer(&mut self) -> StoreResult<ReadResult> {
        self.0.next().unwrap_or_else(|| {
            Err(StoreError::Other(
                "the store answered fewer reads than asked".into(),
            ))
        })
    }

    /// The next answer, to a [`Read::Get`].
    pub fn get(&mut self) -> StoreResult<Option<KvPair>> {
        self.next_answer().and_then(ReadResult::into_got)
    }

    /// The next answer, to a [`Read::List`].
    pub fn list(&mut self) -> StoreResult<Vec<KvPair>> {
        self.next_answer().and_then(ReadResult::into_listed)
    }
}

/// [`Store::read_many`]'s default: the reads one by one, in order. A read that fails with
/// anything but `NotFound` (a store's answer about that one read, e.g. a Kubernetes API
/// without a resource type) ends the batch: every later read gets the same error, so a
/// datastore that is down costs one timeout, not one per read.
pub fn read_sequentially<S: Store + ?Sized>(
    store: &S,
    reads: &[Read],
) -> Vec<StoreResult<ReadResult>> {
    let mut out = Vec::with_capacity(reads.len());
    let mut failed: Option<StoreError> = None;
    for r in reads {
        if let Some(e) = &failed {
            out.push(Err(e.clone()));
            continue;
        }
        let got = match r {
            Read::Get(k) => store.get_opt(k).map(ReadResult::Got),
            Read::List(p) => store.list(p).map(ReadResult::Listed),
        };
        if let Err(e) = &got {
            if !matches!(e, StoreError::NotFound(_)) {
                failed = Some(e.clone());
            }
        }
        out.push(got);
    }
    out
}

/// A revisioned object store over Calico's keys. See the module docs for the exact contract.
pub trait Store {
    /// Read one object.
    fn get(&self, key: &Key) -> StoreResult<KvPair>;

    /// All objects matching `prefix`, ascending by key path.
    fn list(&self, prefix: &ListPrefix) -> StoreResult<Vec<KvPair>>;

    /// Create `key` with `value` if it does not exist; returns the new revision.
    fn create(&self, key: &Key, value: &str) -> StoreResult<Revision>;

    /// Replace `key`'s value if its current revision is `revision`; returns the new revision.
    fn update(&self, key: &Key, value: &str, revision: &Revision) -> StoreResult<Revision>;

    /// Delete `key`, if `revision` is given only when it is still current.
    fn delete(&self, key: &Key, revision: Option<&Revision>) -> StoreResult<()>;

    /// Apply every op of `ops`, each only if its compare holds; returns the new revision of
    /// each op (`None` for deletes). A store that can do so atomically (one etcd Txn, one
    /// SQLite transaction) overrides this and [`Store::commits_atomically`]: if any compare
    /// fails nothing is written. This default, for stores without multi-object transactions
    /// (Kubernetes), applies the ops one by one in order and stops at the first failure,
    /// so callers order ops so that a prefix on its own is safe (see the allocator).
    fn commit(&self, ops: &[WriteOp]) -> Result<Vec<Option<Revision>>, CommitError> {
        commit_sequentially(self, ops)
    }

    /// Whether [`Store::commit`] is all-or-nothing.
    fn commits_atomically(&self) -> bool {
        false
    }

    /// The most operations one [`Store::commit`] may hold; a larger commit is refused whole
    /// (etcd's `--max-txn-ops`). Unlimited by default.
    fn max_commit_ops(&self) -> usize {
        usize::MAX
    }

    /// Several objects at once (`None` for an absent one), in the order of `keys`. Stores that
    /// can read them in one round trip at one revision override this; the default reads
    /// them one by one.
    fn get_many(&self, keys: &[Key]) -> StoreResult<Vec<Option<KvPair>>> {
        keys.iter().map(|k| self.get_opt(k)).collect()
    }

    /// Several gets and lists at once: one result per read, in the order of `reads`, each
    /// what the single call would give (a get's `NotFound` as `None`). Stores that can read
    /// them all in one round trip at one revision override this (a failure of that one
    /// request is then every read's error); the default, for stores without multi-object
    /// reads (Kubernetes), is [`read_sequentially`].
    fn read_many(&self, reads: &[Read]) -> Vec<StoreResult<ReadResult>> {
        read_sequentially(self, reads)
    }

    /// [`Store::get`] mapping `NotFound` to `None`.
    fn get_opt(&self, key: &Key) -> StoreResult<Option<KvPair>> {
        match self.get(key) {
            Ok(kv) => Ok(Some(kv)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl<S: Store + ?Sized> Store for &S {
    fn get(&self, key: &Key) -> StoreResult<KvPair> {
        (**self).get(key)
    }
    fn list(&self, prefix: &ListPrefix) -> StoreResult<Vec<KvPair>> {
        (**self).list(prefix)
    }
    fn create(&self, key: &Key, value: &str) -> StoreResult<Revision> {
        (**self).create(key, value)
    }
    fn update(&self, key: &Key, value: &str, revision: &Revision) -> StoreResult<Revision> {
        (**self).update(key, value, revision)
    }
    fn delete(&self, key: &Key, revision: Option<&Revision>) -> StoreResult<()> {
        (**self).delete(key, revision)
    }
    fn commit(&self, ops: &[WriteOp]) -> Result<Vec<Option<Revision>>, CommitError> {
        (**self).commit(ops)
    }
    fn commits_atomically(&self) -> bool {
        (**self).commits_atomically()
    }
    fn max_commit_ops(&self) -> usize {
        (**self).max_commit_ops()
    }
    fn get_many(&self, keys: &[Key]) -> StoreResult<Vec<Option<KvPair>>> {
        (**self).get_many(keys)
    }
    fn read_many(&self, reads: &[Read]) -> Vec<StoreResult<ReadResult>> {
        (**self).read_many(reads)
    }
}

/// Helper for plain KV stores: turn raw `(path, value, revision)` rows fetched by a prefix scan
/// of `prefix.path()` into the typed listing — rows whose path is not one of our keys, or not
/// matched by `prefix`, are dropped; the result is sorted by path.
pub fn filter_listed<I>(prefix: &ListPrefix, rows: I) -> Vec<KvPair>
where
    I: IntoIterator<Item = (String, String, Revision)>,
{
    let mut out: Vec<(String, KvPair)> = rows
        .into_iter()
        .filter_map(|(path, value, revision)| {
            let key = Key::from_path(&path)?;
            prefix.matches(&key).then_some((
                path,
                KvPair {
                    key,
                    value,
                    revision,
                },
            ))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, kv)| kv).collect()
}
