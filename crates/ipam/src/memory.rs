//! In-memory [`Store`]: a mutex-guarded ordered map with an etcd-like global revision counter.
//! For tests and simulations only (nothing is persisted); shareable between threads.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::keys::{Key, ListPrefix};
use crate::store::{
    check_distinct_keys, filter_listed, CommitError, KvPair, Read, ReadResult, Revision, Store,
    StoreError, StoreResult, WriteOp,
};

#[derive(Default)]
struct Inner {
    /// path → (value, mod revision)
    kv: BTreeMap<String, (String, i64)>,
    revision: i64,
}

/// See module docs.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic in another test thread must not hide this store's contents.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every stored `(path, value)`, ascending (for assertions and dumps).
    pub fn dump(&self) -> Vec<(String, String)> {
        self.lock()
            .kv
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }
}

impl Inner {
    fn bump(&mut self) -> i64 {
        self.revision += 1;
        self.revision
    }

    fn get_opt(&self, key: &Key) -> Option<KvPair> {
        self.kv.get(&key.path()).map(|(value, rev)| KvPair {
            key: key.clone(),
            value: value.clone(),
            revision: Revision::from_i64(*rev),
        })
    }

    fn list(&self, prefix: &ListPrefix) -> Vec<KvPair> {
        let p = prefix.path();
        let rows = self
            .kv
            .range(p.clone()..)
            .take_while(|(k, _)| k.starts_with(&p))
            .map(|(k, (v, r))| (k.clone(), v.clone(), Revision::from_i64(*r)));
        filter_listed(prefix, rows)
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &Key) -> StoreResult<KvPair> {
        let path = key.path();
        let g = self.lock();
        let (value, rev) = g.kv.get(&path).ok_or(StoreError::NotFound(path))?;
        Ok(KvPair {
            key: key.clone(),
            value: value.clone(),
            revision: Revision::from_i64(*rev),
        })
    }

    fn list(&self, prefix: &ListPrefix) -> StoreResult<Vec<KvPair>> {
        Ok(self.lock().list(prefix))
    }

    fn create(&self, key: &Key, value: &str) -> StoreResult<Revision> {
        let path = key.path();
        let mut g = self.lock();
        if g.kv.contains_key(&path) {
            return Err(StoreError::AlreadyExists(path));
        }
        let rev = g.bump();
        g.kv.insert(path, (value.to_string(), rev));
        Ok(Revision::from_i64(rev))
    }

    fn update(&self, key: &Key, value: &str, revision: &Revision) -> StoreResult<Revision> {
        let path = key.path();
        let mut g = self.lock();
        match g.kv.get(&path) {
            None => return Err(StoreError::NotFound(path)),
            Some((_, cur)) if Some(*cur) != revision.as_i64() => {
                return Err(StoreError::Conflict(path))
            }
            Some(_) => {}
        }
        let rev = g.bump();
        g.kv.insert(path, (value.to_string(), rev));
        Ok(Revision::from_i64(rev))
    }

    fn delete(&self, key: &Key, revision: Option<&Revision>) -> StoreResult<()> {
        let path = key.path();
        let mut g = self.lock();
        match (g.kv.get(&path), revision) {
            (None, _) => return Err(StoreError::NotFound(path)),
            (Some((_, cur)), Some(r)) if Some(*cur) != r.as_i64() => {
                return Err(StoreError::Conflict(path))
            }
            _ => {}
        }
        g.kv.remove(&path);
        // Deletes advance the counter too, so a re-created key never reuses a revision.
        g.bump();
        Ok(())
    }

    /// All compares are checked under the lock before anything is written. Like etcd, one
    /// commit is one revision: every key it writes gets the same new revision.
    fn commit(&self, ops: &[WriteOp]) -> Result<Vec<Option<Revision>>, CommitError> {
        check_distinct_keys(ops)?;
        let mut g = self.lock();
        if let Some((i, e)) = ops.iter().enumerate().find_map(|(i, op)| {
            let cur =
                g.kv.get(&op.key().path())
                    .map(|(_, r)| Revision::from_i64(*r));
            op.compare_error(cur.as_ref()).map(|e| (i, e))
        }) {
            return Err(CommitError::atomic(i, e));
        }
        let rev = g.bump();
        Ok(ops
            .iter()
            .map(|op| match op {
                WriteOp::Create { key, value } | WriteOp::Update { key, value, .. } => {
                    g.kv.insert(key.path(), (value.clone(), rev));
                    Some(Revision::from_i64(rev))
                }
                WriteOp::Delete { key, .. } => {
                    g.kv.remove(&key.path());
                    None
                }
            })
            .collect())
    }

    fn commits_atomically(&self) -> bool {
        true
    }

    fn get_many(&self, keys: &[Key]) -> StoreResult<Vec<Option<KvPair>>> {
        let g = self.lock();
        Ok(keys.iter().map(|k| g.get_opt(k)).collect())
    }

    /// Under one lock: one snapshot.
    fn read_many(&self, reads: &[Read]) -> Vec<StoreResult<ReadResult>> {
        let g = self.lock();
        reads
            .iter()
            .map(|r| {
                Ok(match r {
                    Read::Get(k) => ReadResult::Got(g.get_opt(k)),
                    Read::List(p) => ReadResult::Listed(g.list(p)),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_store_conforms() {
        crate::conformance::run_all(&super::MemoryStore::new());
    }
}
