//! [`ipam::Store`] on etcd: values stored verbatim under [`ipam::Key::path`], the etcd
//! `mod_revision` as the CAS [`Revision`] (exactly what Calico's etcdv3 backend does, so
//! calicoctl and Calico's Go components read and CAS against the same objects).

use ipam::store::{check_distinct_keys, filter_listed};
use ipam::{
    CommitError, Key, KvPair, ListPrefix, Read, ReadResult, Revision, Store, StoreError,
    StoreResult, WriteOp,
};

use crate::client::{CasWrite, EtcdClient, KeyValue, RangeRead};
use crate::config::EtcdConfig;
use crate::error::EtcdError;

impl From<EtcdError> for StoreError {
    fn from(e: EtcdError) -> Self {
        match e {
            EtcdError::NotFound(k) => StoreError::NotFound(k),
            EtcdError::Conflict(k) => StoreError::Conflict(k),
            EtcdError::Unavailable(m) => StoreError::Unavailable(m),
            e @ (EtcdError::Config(_) | EtcdError::Other(_)) => StoreError::Other(e.to_string()),
        }
    }
}

/// Calico IPAM datastore in etcd v3.
#[derive(Debug)]
pub struct EtcdStore {
    client: EtcdClient,
}

impl EtcdStore {
    /// Connects (lazily; see [`EtcdClient::connect`]) with Calico's etcd settings.
    pub fn connect(cfg: &EtcdConfig) -> StoreResult<Self> {
        Ok(EtcdStore {
            client: EtcdClient::connect(cfg)?,
        })
    }

    /// Bounds every later operation by `deadline` (the plugin call's overall budget).
    pub fn with_deadline(self, deadline: std::time::Instant) -> Self {
        EtcdStore {
            client: self.client.with_deadline(deadline),
        }
    }

    /// Wraps an existing client.
    pub fn new(client: EtcdClient) -> Self {
        EtcdStore { client }
    }

    /// The underlying KV client (raw access for tools and tests).
    pub fn client(&self) -> &EtcdClient {
        &self.client
    }
}

fn utf8(kv: KeyValue) -> StoreResult<(String, String, Revision)> {
    let value = String::from_utf8(kv.value)
        .map_err(|_| StoreError::Other(format!("value of {} is not UTF-8", kv.key)))?;
    Ok((kv.key, value, Revision::from_i64(kv.mod_revision)))
}

/// The etcd revision inside an opaque [`Revision`]. One we did not make cannot be current.
fn etcd_revision(key: &Key, rev: &Revision) -> StoreResult<i64> {
    rev.as_i64().filter(|r| *r > 0).ok_or_else(|| {
        StoreError::Other(format!("revision {rev:?} of {key} is not an etcd revision"))
    })
}

/// A name segment containing `/` would alias another key: refuse to write it.
fn writable(key: &Key) -> StoreResult<String> {
    if key.is_valid() {
        Ok(key.path())
    } else {
        Err(StoreError::Other(format!("invalid key {key}")))
    }
}

impl Store for EtcdStore {
    fn get(&self, key: &Key) -> StoreResult<KvPair> {
        let path = key.path();
        let kv = self.client.get(&path)?.ok_or(StoreError::NotFound(path))?;
        let (_, value, revision) = utf8(kv)?;
        Ok(KvPair {
            key: key.clone(),
            value,
            revision,
        })
    }

    fn list(&self, prefix: &ListPrefix) -> StoreResult<Vec<KvPair>> {
        let rows = self
            .client
            .list(&prefix.path())?
            .into_iter()
            .map(utf8)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(filter_listed(prefix, rows))
    }

    fn create(&self, key: &Key, value: &str) -> StoreResult<Revision> {
        let path = writable(key)?;
        match self.client.create(&path, value.as_bytes()) {
            Ok(rev) => Ok(Revision::from_i64(rev)),
            Err(EtcdError::Conflict(k)) => Err(StoreError::AlreadyExists(k)),
            Err(e) => Err(e.into()),
        }
    }

    fn update(&self, key: &Key, value: &str, revision: &Revision) -> StoreResult<Revision> {
        let path = writable(key)?;
        let rev = etcd_revision(key, revision)?;
        Ok(Revision::from_i64(self.client.update(
            &path,
            value.as_bytes(),
            rev,
        )?))
    }

    fn delete(&self, key: &Key, revision: Option<&Revision>) -> StoreResult<()> {
        let rev = revision.map(|r| etcd_revision(key, r)).transpose()?;
        Ok(self.client.delete(&key.path(), rev)?)
    }

    /// One etcd Txn: one round trip and one Raft entry for all ops.
    fn commit(&self, ops: &[WriteOp]) -> Result<Vec<Option<Revision>>, CommitError> {
        check_distinct_keys(ops)?;
        let paths = ops
            .iter()
            .enumerate()
            .map(|(i, op)| writable(op.key()).map_err(|e| CommitError::atomic(i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut writes = Vec::with_capacity(ops.len());
        for (i, (op, path)) in ops.iter().zip(&paths).enumerate() {
            let revision =
                |key, rev| etcd_revision(key, rev).map_err(|e| CommitError::atomic(i, e));
            writes.push(match op {
                WriteOp::Create { value, .. } => CasWrite::Create {
                    key: path,
                    value: value.as_bytes(),
                },
                WriteOp::Update {
                    key,
                    value,
                    revision: rev,
                } => CasWrite::Update {
                    key: path,
                    value: value.as_bytes(),
                    expected: revision(key, rev)?,
                },
                WriteOp::Delete { key, revision: rev } => CasWrite::Delete {
                    key: path,
                    expected: revision(key, rev)?,
                },
            });
        }
        match self.client.commit(&writes) {
            Ok(rev) => Ok(ops
                .iter()
                .map(|op| match op {
                    WriteOp::Delete { .. } => None,
                    _ => Some(Revision::from_i64(rev)),
                })
                .collect()),
            Err((i, e)) => {
                let error = match (&ops[i], e) {
                    (WriteOp::Create { .. }, EtcdError::Conflict(k)) => {
                        StoreError::AlreadyExists(k)
                    }
                    (_, e) => e.into(),
                };
                Err(CommitError::atomic(i, error))
            }
        }
    }

    fn commits_atomically(&self) -> bool {
        true
    }

    fn max_commit_ops(&self) -> usize {
        crate::client::MAX_TXN_OPS
    }

    fn get_many(&self, keys: &[Key]) -> StoreResult<Vec<Option<KvPair>>> {
        let paths: Vec<String> = keys.iter().map(Key::path).collect();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        self.client
            .get_many(&refs)?
            .into_iter()
            .zip(keys)
            .map(|(kv, key)| {
                kv.map(|kv| {
                    let (_, value, revision) = utf8(kv)?;
                    Ok(KvPair {
                        key: key.clone(),
                        value,
                        revision,
                    })
                })
                .transpose()
            })
            .collect()
    }

    /// One Txn of ranges (see [`EtcdClient::read_many`]): one round trip, one snapshot.
    fn read_many(&self, reads: &[Read]) -> Vec<StoreResult<ReadResult>> {
        let paths: Vec<String> = reads
            .iter()
            .map(|r| match r {
                Read::Get(k) => k.path(),
                Read::List(p) => p.path(),
            })
            .collect();
        let ranges: Vec<RangeRead> = reads
            .iter()
            .zip(&paths)
            .map(|(r, path)| match r {
                Read::Get(_) => RangeRead::Get(path),
                Read::List(_) => RangeRead::Prefix(path),
            })
            .collect();
        let answers = match self.client.read_many(&ranges) {
            Ok(a) => a,
            Err(e) => {
                let e = StoreError::from(e);
                return reads.iter().map(|_| Err(e.clone())).collect();
            }
        };
        reads
            .iter()
            .zip(answers)
            .map(|(r, kvs)| {
                let rows = kvs.into_iter().map(utf8).collect::<StoreResult<Vec<_>>>()?;
                Ok(match r {
                    Read::Get(key) => {
                        ReadResult::Got(rows.into_iter().next().map(|(_, value, revision)| {
                            KvPair {
                                key: key.clone(),
                                value,
                                revision,
                            }
                        }))
                    }
                    Read::List(prefix) => ReadResult::Listed(filter_listed(prefix, rows)),
                })
            })
            .collect()
    }
}
