//! The embedded default IPAM datastore: Calico's etcd key/value layout in a local SQLite file.
//!
//! One table `kv(key TEXT PRIMARY KEY, value TEXT, revision INTEGER)` holds exactly the keys and
//! JSON values the etcdv3 backend would hold; a global counter (table `meta`, row `revision`)
//! gives etcd-like revisions: every create/update/delete bumps it, so a revision is never reused
//! for a key (no ABA after delete + re-create).
//!
//! Safety: WAL journal + `synchronous=FULL` (a committed write survives a process crash or power
//! loss); every write is one `BEGIN IMMEDIATE` transaction (check revision, bump counter, write),
//! so writers from any number of processes serialise on SQLite's file lock and wait up to the
//! busy timeout for it. A lock that cannot be obtained in time is `StoreError::Unavailable`
//! (CNI "try again later"). The file must be on a local filesystem (WAL needs shared memory).
//!
//! [`init::ensure_initialised`] seeds an empty store (default pool, ClusterInformation).
//!
//! This crate must NOT contain IPAM logic (that is the `ipam` crate) or know about CNI.

pub mod init;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ipam::store::{check_distinct_keys, filter_listed};
use ipam::{
    CommitError, Key, KvPair, ListPrefix, Read, ReadResult, Revision, Store, StoreError,
    StoreResult, WriteOp,
};
use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};

/// Default database path (`datastore_path` in the plugin config).
pub const DEFAULT_PATH: &str = "/var/lib/calico/ipam.db";

/// How long a writer waits for another process's transaction before giving up.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// See crate docs. Internally one connection behind a mutex, so one `LocalStore` may be shared
/// between threads; separate processes each open their own.
pub struct LocalStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

fn map_err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(format!("local datastore busy: {e}"))
        }
        // SQLite rolls the transaction back on these, so the store is unchanged.
        Some(ErrorCode::DiskFull) => StoreError::Storage(format!(
            "local datastore: {e} (the filesystem holding datastore_path is full)"
        )),
        Some(ErrorCode::ReadOnly) => StoreError::Storage(format!(
            "local datastore: {e} (is the filesystem holding datastore_path read-only?)"
        )),
        Some(ErrorCode::CannotOpen | ErrorCode::SystemIoFailure) => {
            StoreError::Storage(format!("local datastore: {e}"))
        }
        _ => StoreError::Other(format!("local datastore: {e}")),
    }
}

impl LocalStore {
    /// Open (creating file, parent directories and schema as needed) with the default busy
    /// timeout.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        Self::open_with_timeout(path, DEFAULT_BUSY_TIMEOUT)
    }

    /// Open with an explicit busy timeout.
    pub fn open_with_timeout(path: impl AsRef<Path>, busy: Duration) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Other(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(&path).map_err(map_err)?;
        conn.busy_timeout(busy).map_err(map_err)?;
        // Every plugin process opens, writes twice and exits. By default the last connection
        // to close checkpoints the WAL into the database and deletes it, and the next process
        // recreates it: two extra fsyncs plus a directory fsync per invocation, the bulk of
        // an ADD's latency. Leave the WAL in place; SQLite's auto-checkpoint (every 1000
        // pages, during a commit) keeps it bounded. Durability is unchanged (still one WAL
        // fsync per commit).
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(map_err)?;
        init(&conn, busy)?;
        Ok(LocalStore {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SQLite's `PRAGMA integrity_check` ("ok" when the file is sound).
    pub fn integrity_check(&self) -> StoreResult<String> {
        self.conn()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(map_err)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panicking thread cannot leave SQLite state half-applied (transactions roll back
        // on drop), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` inside a write transaction that bumps the global revision first.
    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>, i64) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let rev: i64 = tx
            .query_row(
                "UPDATE meta SET value = value + 1 WHERE name = 'revision' RETURNING value",
                [],
                |r| r.get(0),
            )
            .map_err(map_err)?;
        let out = f(&tx, rev)?;
        tx.commit().map_err(map_err)?;
        Ok(out)
    }
}

/// WAL + schema. Switching a fresh file to WAL takes a write lock that a racing process may
/// hold; retry within the busy budget.
fn init(conn: &Connection, busy: Duration) -> StoreResult<()> {
    let deadline = std::time::Instant::now() + busy;
    loop {
        let r = conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS kv (
                 key TEXT PRIMARY KEY NOT NULL,
                 value TEXT NOT NULL,
                 revision INTEGER NOT NULL
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);
             INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0);
             COMMIT;",
        );
        match r {
            Ok(()) => return Ok(()),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                let busy = matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                );
                if !busy || std::time::Instant::now() >= deadline {
                    return Err(map_err(e));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn current_rev(tx: &rusqlite::Transaction<'_>, path: &str) -> StoreResult<Option<i64>> {
    tx.query_row("SELECT revision FROM kv WHERE key = ?1", [path], |r| {
        r.get(0)
    })
    .optional()
    .map_err(map_err)
}

/// The object at `key` as `conn` (or a transaction on it) sees it.
fn get_in(conn: &Connection, key: &Key) -> StoreResult<Option<KvPair>> {
    let row: Option<(String, i64)> = conn
        .query_row(
            "SELECT value, revision FROM kv WHERE key = ?1",
            [key.path()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(map_err)?;
    Ok(row.map(|(value, rev)| KvPair {
        key: key.clone(),
        value,
        revision: Revision::from_i64(rev),
    }))
}

/// The objects under `prefix` as `conn` (or a transaction on it) sees them.
fn list_in(conn: &Connection, prefix: &ListPrefix) -> StoreResult<Vec<KvPair>> {
    let p = prefix.path();
    let mut stmt = conn
        .prepare("SELECT key, value, revision FROM kv WHERE key >= ?1 ORDER BY key")
        .map_err(map_err)?;
    let mut rows = stmt.query([&p]).map_err(map_err)?;
    let mut out = Vec::new();
    // Index range scan from the prefix; stop at the first key past it.
    while let Some(row) = rows.next().map_err(map_err)? {
        let key: String = row.get(0).map_err(map_err)?;
        if !key.starts_with(&p) {
            break;
        }
        let value: String = row.get(1).map_err(map_err)?;
        let rev: i64 = row.get(2).map_err(map_err)?;
        out.push((key, value, Revision::from_i64(rev)));
    }
    Ok(filter_listed(prefix, out))
}

impl Store for LocalStore {
    fn get(&self, key: &Key) -> StoreResult<KvPair> {
        get_in(&self.conn(), key)?.ok_or_else(|| StoreError::NotFound(key.path()))
    }

    fn list(&self, prefix: &ListPrefix) -> StoreResult<Vec<KvPair>> {
        list_in(&self.conn(), prefix)
    }

    fn create(&self, key: &Key, value: &str) -> StoreResult<Revision> {
        let path = key.path();
        self.write(|tx, rev| {
            if current_rev(tx, &path)?.is_some() {
                return Err(StoreError::AlreadyExists(path.clone()));
            }
            tx.execute(
                "INSERT INTO kv (key, value, revision) VALUES (?1, ?2, ?3)",
                params![path, value, rev],
            )
            .map_err(map_err)?;
            Ok(Revision::from_i64(rev))
        })
    }

    fn update(&self, key: &Key, value: &str, revision: &Revision) -> StoreResult<Revision> {
        let path = key.path();
        self.write(|tx, rev| {
            match current_rev(tx, &path)? {
                None => return Err(StoreError::NotFound(path.clone())),
                Some(cur) if Some(cur) != revision.as_i64() => {
                    return Err(StoreError::Conflict(path.clone()))
                }
                Some(_) => {}
            }
            tx.execute(
                "UPDATE kv SET value = ?2, revision = ?3 WHERE key = ?1",
                params![path, value, rev],
            )
            .map_err(map_err)?;
            Ok(Revision::from_i64(rev))
        })
    }

    fn delete(&self, key: &Key, revision: Option<&Revision>) -> StoreResult<()> {
        let path = key.path();
        self.write(|tx, _| {
            match (current_rev(tx, &path)?, revision) {
                (None, _) => return Err(StoreError::NotFound(path.clone())),
                (Some(cur), Some(r)) if Some(cur) != r.as_i64() => {
                    return Err(StoreError::Conflict(path.clone()))
                }
                _ => {}
            }
            tx.execute("DELETE FROM kv WHERE key = ?1", [&path])
                .map_err(map_err)?;
            Ok(())
        })
    }

    /// One `BEGIN IMMEDIATE` transaction (one WAL commit, one fsync): every compare is checked
    /// first, then every op written under one new revision; a failed compare rolls back.
    fn commit(&self, ops: &[WriteOp]) -> Result<Vec<Option<Revision>>, CommitError> {
        check_distinct_keys(ops)?;
        let mut failed = 0;
        self.write(|tx, rev| {
            for (i, op) in ops.iter().enumerate() {
                failed = i;
                let cur = current_rev(tx, &op.key().path())?.map(Revision::from_i64);
                if let Some(error) = op.compare_error(cur.as_ref()) {
                    return Err(error);
                }
            }
            failed = ops.len().saturating_sub(1);
            ops.iter()
                .map(|op| {
                    let path = op.key().path();
                    match op {
                        WriteOp::Create { value, .. } | WriteOp::Update { value, .. } => {
                            tx.execute(
                                "INSERT INTO kv (key, value, revision) VALUES (?1, ?2, ?3)
                                 ON CONFLICT (key) DO UPDATE SET value = ?2, revision = ?3",
                                params![path, value, rev],
                            )
                            .map_err(map_err)?;
                            Ok(Some(Revision::from_i64(rev)))
                        }
                        WriteOp::Delete { .. } => {
                            tx.execute("DELETE FROM kv WHERE key = ?1", [&path])
                                .map_err(map_err)?;
                            Ok(None)
                        }
                    }
                })
                .collect()
        })
        .map_err(|error| CommitError::atomic(failed, error))
    }

    fn commits_atomically(&self) -> bool {
        true
    }

    /// One read transaction, so the objects are from one snapshot.
    fn get_many(&self, keys: &[Key]) -> StoreResult<Vec<Option<KvPair>>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(map_err)?;
        let out = keys
            .iter()
            .map(|k| get_in(&tx, k))
            .collect::<StoreResult<Vec<_>>>()?;
        tx.commit().map_err(map_err)?;
        Ok(out)
    }

    /// One read transaction, so every get and list sees one snapshot; a failure of the
    /// transaction itself is every read's error.
    fn read_many(&self, reads: &[Read]) -> Vec<StoreResult<ReadResult>> {
        let mut conn = self.conn();
        let tx = match conn.transaction().map_err(map_err) {
            Ok(tx) => tx,
            Err(e) => return reads.iter().map(|_| Err(e.clone())).collect(),
        };
        let out: Vec<StoreResult<ReadResult>> = reads
            .iter()
            .map(|r| match r {
                Read::Get(k) => get_in(&tx, k).map(ReadResult::Got),
                Read::List(p) => list_in(&tx, p).map(ReadResult::Listed),
            })
            .collect();
        match tx.commit().map_err(map_err) {
            Ok(()) => out,
            Err(e) => reads.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conforms_to_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path().join("sub/dir/ipam.db")).unwrap();
        ipam::conformance::run_all(&s);
    }

    #[test]
    fn keeps_calicos_json_field_by_field() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path().join("ipam.db")).unwrap();
        ipam::conformance::calico_fixtures(&s);
    }

    #[test]
    fn data_and_revisions_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.db");
        let k = Key::handle("h");
        let r1 = {
            let s = LocalStore::open(&path).unwrap();
            assert_eq!(s.create(&k, r#"{"block":{}}"#).unwrap().as_i64(), Some(1));
            s.delete(&k, None).unwrap();
            s.create(&k, r#"{"block":{"x":1}}"#).unwrap()
        };
        let s = LocalStore::open(&path).unwrap();
        let kv = s.get(&k).unwrap();
        assert_eq!(
            (kv.value.as_str(), &kv.revision),
            (r#"{"block":{"x":1}}"#, &r1)
        );
        assert_eq!(
            r1.as_i64(),
            Some(3),
            "global counter: create, delete, create"
        );
        let mode: String = s
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn busy_lock_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.db");
        let s = LocalStore::open_with_timeout(&path, Duration::from_millis(50)).unwrap();
        // Another connection (as another process would) holds the write lock.
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let e = s.create(&Key::handle("h"), "{}").unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        // Reads still work under WAL while a writer holds the lock.
        assert!(matches!(
            s.get(&Key::handle("h")),
            Err(StoreError::NotFound(_))
        ));
        other.execute_batch("ROLLBACK").unwrap();
        s.create(&Key::handle("h"), "{}").unwrap();
    }
}
