//! Synchronous etcd v3 KV client with compare-and-swap semantics.
//!
//! Wraps the async `etcd-client` crate in a private current-thread tokio runtime driven by
//! `block_on`, so callers (CNI plugins, exec'd once per pod) stay plain synchronous code and
//! never run on a multi-thread runtime. Every operation is bounded by the configured timeout,
//! retries included, so an unreachable datastore becomes [`EtcdError::Unavailable`] in bounded
//! time instead of a hang.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KvClient, Txn, TxnOp,
    TxnOpResponse, TxnResponse,
};

use crate::config::EtcdConfig;
use crate::error::{classify, EtcdError, Failure};
use crate::srv;
use crate::tls::tls_options;

/// Pause after every member failed in turn: lets a leader election progress without
/// hammering; short against the 90 s IPAM budget.
const RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// How long every member may keep refusing connections before an operation gives up: long
/// enough to ride out a restarting etcd, far shorter than the timeout (nothing listening is
/// not going to answer in 10 s either, and the runtime retries code 11 anyway).
const REFUSED_GRACE: Duration = Duration::from_millis(750);

/// etcd's default `--max-txn-ops`: a Txn with more compares or operations is refused.
pub(crate) const MAX_TXN_OPS: usize = 128;

/// Floor of one attempt's budget however many endpoints share the timeout.
const MIN_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(500);

/// One key with the revision that last modified it (the CAS token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// etcd `mod_revision`; Calico's KV "revision".
    pub mod_revision: i64,
}

impl KeyValue {
    fn from_etcd(kv: &etcd_client::KeyValue) -> Self {
        KeyValue {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
        }
    }
}

/// A connection to an etcd cluster.
///
/// Like etcd's Go client, requests stick to one member and fail over to the next endpoint
/// when it is unreachable, silent or has no leader. (etcd-client's own balancer keeps
/// picking dead members at random, which costs a retry per request.)
///
/// `Send + Sync`; concurrent calls from several threads are allowed (they take turns
/// driving the single-threaded runtime).
pub struct EtcdClient {
    // Declared before `rt` so the channels are dropped while the runtime still exists.
    /// One single-endpoint client per entry of `endpoints`; connections are lazy. Without
    /// authentication each is built up front; with it, building one authenticates, so that
    /// happens on the member's first attempt, inside the retry loop (a down member then
    /// fails over like any other failure instead of failing the whole connect).
    members: Vec<Mutex<Option<Client>>>,
    /// Options for building a member's client later (authentication).
    connect_opts: ConnectOptions,
    /// Index of the member that answered last: where the next request goes first.
    preferred: AtomicUsize,
    endpoints: Vec<String>,
    timeout: Duration,
    /// Budget of one attempt on one member: the whole timeout shared by the members, so a
    /// silent member cannot use it all before the others are tried.
    attempt_timeout: Duration,
    /// End of the whole plugin call (Calico bounds IPAM by a 90 s context): no operation
    /// runs past it, whatever its own timeout.
    deadline: Option<Instant>,
    /// Keys per page of a list.
    list_page: i64,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClient")
            .field("endpoints", &self.endpoints)
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded value is a cached client: a panic elsewhere cannot leave it half-written.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Endpoint URLs from the config and SRV discovery, all with an explicit scheme.
/// etcd-client applies TLS to every endpoint or to none, so http and https cannot be mixed;
/// a bare `host:port` takes the scheme of the others (http when there are none).
pub fn resolve_endpoints(cfg: &EtcdConfig) -> Result<Vec<String>, EtcdError> {
    let mut endpoints = cfg.endpoints.clone();
    if let Some(domain) = cfg
        .discovery_srv
        .as_deref()
        .filter(|d| !d.trim().is_empty())
    {
        endpoints.extend(srv::discover_endpoints(domain, cfg.timeout)?);
    }
    if endpoints.is_empty() {
        return Err(EtcdError::Config("no etcd endpoints specified".into()));
    }
    let https = endpoints.iter().any(|e| e.starts_with("https://"));
    let http = endpoints.iter().any(|e| e.starts_with("http://"));
    if https && http {
        return Err(EtcdError::Config(format!(
            "cannot mix http and https etcd endpoints: {}",
            endpoints.join(",")
        )));
    }
    let scheme = if https { "https://" } else { "http://" };
    Ok(endpoints
        .into_iter()
        .map(|e| {
            if e.contains("://") {
                e
            } else {
                format!("{scheme}{e}")
            }
        })
        .collect())
}

impl EtcdClient {
    /// Builds the client. Connections are made lazily by the first request, so this only
    /// fails for configuration problems (no endpoints, unreadable TLS files, SRV lookup).
    pub fn connect(cfg: &EtcdConfig) -> Result<Self, EtcdError> {
        let endpoints = resolve_endpoints(cfg)?;
        let members = u32::try_from(endpoints.len()).unwrap_or(u32::MAX);
        let attempt_timeout = (cfg.timeout / members)
            .max(MIN_ATTEMPT_TIMEOUT)
            .min(cfg.timeout);
        let mut opts = ConnectOptions::new()
            .with_timeout(attempt_timeout)
            .with_connect_timeout(attempt_timeout)
            // A member cut off from the quorum answers at once instead of stalling.
            .with_require_leader(true);
        if endpoints[0].starts_with("https://") {
            opts = opts.with_tls(tls_options(cfg)?);
        } else if cfg.cert_file.is_some() || cfg.ca_cert_file.is_some() {
            log::warn!("etcd TLS files are configured but all endpoints are http; TLS unused");
        }
        let auth = cfg.username.as_deref().filter(|u| !u.is_empty());
        if let Some(user) = auth {
            opts = opts.with_user(user, cfg.password.clone().unwrap_or_default());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| EtcdError::Other(format!("cannot start I/O runtime: {e}")))?;
        let members = if auth.is_some() {
            endpoints.iter().map(|_| Mutex::new(None)).collect()
        } else {
            endpoints
                .iter()
                .map(|ep| rt.block_on(Client::connect([ep], Some(opts.clone()))))
                .map(|c| c.map(|c| Mutex::new(Some(c))))
                .collect::<Result<Vec<_>, _>>()
                .map_err(classify)?
        };
        Ok(EtcdClient {
            members,
            connect_opts: opts,
            preferred: AtomicUsize::new(0),
            endpoints,
            timeout: cfg.timeout,
            attempt_timeout,
            deadline: None,
            list_page: LIST_PAGE,
            rt,
        })
    }

    /// Bounds every later operation by `deadline` as well as by the per-operation timeout.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The endpoint URLs in use (after SRV discovery).
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Runs `op` on the preferred member, moving on to the next one whenever a member is
    /// unavailable (refused, timed out, no leader), until it succeeds, fails for another
    /// reason, or the overall timeout expires. After every member failed in turn it pauses
    /// briefly (leader elections take a few hundred ms).
    /// A write retried after a lost *answer* may find its own change already applied: the
    /// write methods recognise that (the key holds exactly the bytes they wrote, or is gone for
    /// a delete) and report success instead of a `Conflict` that would make a CAS loop apply
    /// the change a second time (an address allocated twice for one pod). `op` is told whether
    /// an earlier attempt was made.
    fn run<T, F, Fut>(&self, what: &str, key: &str, mut op: F) -> Result<T, EtcdError>
    where
        F: FnMut(KvClient, bool) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let started = Instant::now();
        let deadline = match self.deadline {
            Some(d) => d.min(started + self.timeout),
            None => started + self.timeout,
        };
        let n = self.members.len();
        self.rt.block_on(async {
            let mut member = self.preferred.load(Ordering::Relaxed) % n;
            let mut failures = 0usize;
            // Consecutive attempts refused outright; a full round of them past the grace
            // period ends the operation early.
            let mut refused_in_a_row = 0usize;
            let last = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let budget = left.min(self.attempt_timeout);
                let retried = failures > 0;
                if budget.is_zero() {
                    break "the plugin call's deadline has passed".to_string();
                }
                let attempt = async {
                    // Go's etcd client accepts answers up to 2 GiB; tonic's default is 4 MiB.
                    let kv = self
                        .member(member)
                        .await?
                        .kv_client()
                        .max_decoding_message_size(MAX_ANSWER);
                    op(kv, retried).await
                };
                let err = match tokio::time::timeout(budget, attempt).await {
                    Ok(Err(Failure(EtcdError::Unavailable(msg), refused))) => {
                        refused_in_a_row = if refused { refused_in_a_row + 1 } else { 0 };
                        msg
                    }
                    Ok(done) => {
                        // Answered (even NotFound/Conflict): this member is healthy.
                        self.preferred.store(member, Ordering::Relaxed);
                        return done.map_err(|Failure(e, _)| e);
                    }
                    Err(_elapsed) => {
                        refused_in_a_row = 0;
                        format!("no answer within {budget:?}")
                    }
                };
                log::debug!("etcd {what} {key} on {}: {err}", self.endpoints[member]);
                member = (member + 1) % n;
                failures += 1;
                if refused_in_a_row >= n && started.elapsed() >= REFUSED_GRACE {
                    break err;
                }
                if failures.is_multiple_of(n) {
                    if Instant::now() + RETRY_BACKOFF >= deadline {
                        break err;
                    }
                    tokio::time::sleep(RETRY_BACKOFF).await;
                } else if Instant::now() >= deadline {
                    break err;
                }
            };
            Err(EtcdError::Unavailable(format!(
                "{what} {key}: no etcd member of [{}] answered within {:.1?} (last error: {last})",
                self.endpoints.join(","),
                started.elapsed(),
            )))
        })
    }

    /// Member `i`'s client, built (and authenticated) on first use when it was not up front.
    async fn member(&self, i: usize) -> Result<Client, Failure> {
        let slot = &self.members[i];
        if let Some(c) = lock(slot).clone() {
            return Ok(c);
        }
        let c = Client::connect([&self.endpoints[i]], Some(self.connect_opts.clone())).await?;
        Ok(lock(slot).get_or_insert(c).clone())
    }

    /// The key's value and revision, `None` when absent.
    pub fn get(&self, key: &str) -> Result<Option<KeyValue>, EtcdError> {
        self.run("get", key, |mut kv, _| async move {
            let resp = kv.get(key, None).await?;
            Ok(resp.kvs().first().map(KeyValue::from_etcd))
        })
    }

    /// All keys starting with `prefix`, in key order.
    ///
    /// In pages, all read at the first page's revision (one consistent snapshot), so no
    /// answer grows with the cluster: a large cluster's blocks or handles in one answer
    /// passed tonic's 4 MiB default (seen with 1,000 nodes of 20 pods). Each page is its own
    /// operation with its own timeout (and member failover); only the plugin call's deadline
    /// ([`EtcdClient::with_deadline`]) bounds the whole list: 103,360 handles of a
    /// 5,000-node cluster did not fit in one operation's timeout.
    pub fn list(&self, prefix: &str) -> Result<Vec<KeyValue>, EtcdError> {
        let end = prefix_end(prefix.as_bytes());
        let mut restarts = 0;
        'snapshot: loop {
            let mut from = prefix.as_bytes().to_vec();
            let mut at_revision = 0;
            let mut out = Vec::new();
            loop {
                let (from_ref, end_ref) = (&from, &end);
                let page = self.run("list", prefix, |mut kv, _| async move {
                    let mut opts = GetOptions::new()
                        .with_range(end_ref.clone())
                        .with_limit(self.list_page);
                    if at_revision != 0 {
                        opts = opts.with_revision(at_revision);
                    }
                    let resp = kv.get(from_ref.clone(), Some(opts)).await?;
                    let kvs: Vec<KeyValue> = resp.kvs().iter().map(KeyValue::from_etcd).collect();
                    Ok((resp.header().map_or(0, |h| h.revision()), kvs, resp.more()))
                });
                let (revision, kvs, more) = match page {
                    // The snapshot was compacted away between pages (a long list on a
                    // cluster compacting often): start again at a fresh revision.
                    Err(EtcdError::Other(m))
                        if is_compacted(&m) && restarts < MAX_LIST_RESTARTS =>
                    {
                        restarts += 1;
                        log::debug!("etcd list {prefix}: {m}; listing again");
                        continue 'snapshot;
                    }
                    r => r?,
                };
                if at_revision == 0 {
                    at_revision = revision;
                }
                let last = kvs.last().filter(|_| more).map(|kv| kv.key.clone());
                out.extend(kvs);
                let Some(last) = last else {
                    return Ok(out);
                };
                from = last.into_bytes();
                from.push(0);
            }
        }
    }

    /// Keys per page of [`EtcdClient::list`] (default 500; blocks of a /26 are a few KiB each).
    pub fn with_list_page(mut self, keys: i64) -> Self {
        self.list_page = keys.max(1);
        self
    }

    /// Creates `key` only if it does not exist (`create_revision == 0`); returns the new
    /// revision. An existing key gives `Conflict`.
    pub fn create(&self, key: &str, value: &[u8]) -> Result<i64, EtcdError> {
        self.run("create", key, |mut kv, retried| async move {
            let txn = Txn::new()
                .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, value, None)])
                .or_else([TxnOp::get(key, None)]);
            let resp = kv.txn(txn).await?;
            if resp.succeeded() {
                return Ok(revision(&resp));
            }
            match current(&resp) {
                Some(kv) if retried && kv.value == value => Ok(kv.mod_revision),
                _ => Err(EtcdError::Conflict(key.to_string()).into()),
            }
        })
    }

    /// Replaces `key` only if its `mod_revision` is still `expected`; returns the new
    /// revision. A changed key gives `Conflict`, an absent one `NotFound`.
    pub fn update(&self, key: &str, value: &[u8], expected: i64) -> Result<i64, EtcdError> {
        check_revision(key, expected)?;
        self.run("update", key, |mut kv, retried| async move {
            let txn = Txn::new()
                .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
                .and_then([TxnOp::put(key, value, None)])
                .or_else([TxnOp::get(key, None)]);
            let resp = kv.txn(txn).await?;
            if retried && !resp.succeeded() {
                if let Some(kv) = current(&resp).filter(|kv| kv.value == value) {
                    return Ok(kv.mod_revision);
                }
            }
            compare_outcome(key, &resp)?;
            Ok(revision(&resp))
        })
    }

    /// Deletes `key`; with `expected`, only if its `mod_revision` still matches.
    /// An absent key gives `NotFound`, a changed one `Conflict`.
    pub fn delete(&self, key: &str, expected: Option<i64>) -> Result<(), EtcdError> {
        if let Some(rev) = expected {
            check_revision(key, rev)?;
        }
        self.run("delete", key, |mut kv, retried| async move {
            let outcome: Result<(), Failure> = match expected {
                Some(rev) => {
                    let txn = Txn::new()
                        .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
                        .and_then([TxnOp::delete(key, None)])
                        .or_else([TxnOp::get(key, None)]);
                    let resp = kv.txn(txn).await?;
                    compare_outcome(key, &resp).map_err(Failure::from)
                }
                None => {
                    let resp = kv.delete(key, Some(DeleteOptions::new())).await?;
                    if resp.deleted() == 0 {
                        Err(EtcdError::NotFound(key.to_string()).into())
                    } else {
                        Ok(())
                    }
                }
            };
            match outcome {
                // Gone after a retry: the first attempt deleted it.
                Err(Failure(EtcdError::NotFound(_), _)) if retried => Ok(()),
                other => other,
            }
        })
    }

    /// Applies every write of `writes` in one etcd Txn whose compares cover every key (a
    /// create: the key is absent; an update or delete: its `mod_revision` is still the one
    /// read), or none of them; returns the commit's revision, which becomes the
    /// `mod_revision` of every key it puts. A failed compare gives the index of the first
    /// write whose compare failed with `Conflict` (or `NotFound` for an update or delete of
    /// an absent key); the keys must be distinct (etcd refuses a Txn putting one key twice).
    pub fn commit(&self, writes: &[CasWrite<'_>]) -> Result<i64, (usize, EtcdError)> {
        for (i, w) in writes.iter().enumerate() {
            if let CasWrite::Update { key, expected, .. } | CasWrite::Delete { key, expected } = w {
                check_revision(key, *expected).map_err(|e| (i, e))?;
            }
        }
        let first = writes.first().map_or("", |w| w.key());
        let failed = std::cell::Cell::new(0);
        let failed_at = &failed;
        let r = self.run("commit", first, |mut kv, retried| {
            async move {
                let compares: Vec<Compare> = writes.iter().map(CasWrite::compare).collect();
                let puts: Vec<TxnOp> = writes.iter().map(CasWrite::op).collect();
                let gets: Vec<TxnOp> = writes.iter().map(|w| TxnOp::get(w.key(), None)).collect();
                let txn = Txn::new().when(compares).and_then(puts).or_else(gets);
                let resp = kv.txn(txn).await?;
                if resp.succeeded() {
                    return Ok(revision(&resp));
                }
                let now = currents(&resp);
                // A retry after a lost answer may find its own commit applied: every key
                // holds what it wrote (or is gone), all at one revision.
                if retried {
                    if let Some(rev) = already_applied(writes, &now) {
                        return Ok(rev);
                    }
                }
                let (i, e) = first_failed(writes, &now);
                failed_at.set(i);
                Err(e.into())
            }
        });
        r.map_err(|e| (failed.get(), e))
    }

    /// The values and revisions of `keys` (`None`: absent), read in one Txn, so in one round
    /// trip and at one revision.
    pub fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<KeyValue>>, EtcdError> {
        let reads: Vec<RangeRead> = keys.iter().map(|k| RangeRead::Get(k)).collect();
        Ok(self
            .read_many(&reads)?
            .into_iter()
            .map(|kvs| kvs.into_iter().next())
            .collect())
    }

    /// Several gets and prefix lists in one Txn (no compares), so in one round trip and at
    /// one revision: for each read, the key's value (none or one) or the prefix's keys in key
    /// order. A prefix range holds at most a list page of keys, as [`EtcdClient::list`]'s
    /// pages do, so the answer stays within the message size limit whatever the cluster
    /// size; a prefix with more keys than that is listed again, in pages, on its own (then
    /// at a later revision than the other reads). More reads than etcd takes in one Txn
    /// (128 by default) go in several, each its own snapshot.
    pub fn read_many(&self, reads: &[RangeRead<'_>]) -> Result<Vec<Vec<KeyValue>>, EtcdError> {
        let mut out = Vec::with_capacity(reads.len());
        for chunk in reads.chunks(MAX_TXN_OPS) {
            out.extend(self.read_txn(chunk)?);
        }
        Ok(out)
    }

    /// [`EtcdClient::read_many`] of at most [`MAX_TXN_OPS`] reads: one Txn.
    fn read_txn(&self, reads: &[RangeRead<'_>]) -> Result<Vec<Vec<KeyValue>>, EtcdError> {
        let first = reads.first().map_or("", |r| r.key());
        let answers = self.run("read", first, |mut kv, _| async move {
            let ops: Vec<TxnOp> = reads
                .iter()
                .map(|r| match r {
                    RangeRead::Get(key) => TxnOp::get(*key, None),
                    RangeRead::Prefix(prefix) => TxnOp::get(
                        *prefix,
                        Some(
                            GetOptions::new()
                                .with_range(prefix_end(prefix.as_bytes()))
                                .with_limit(self.list_page),
                        ),
                    ),
                })
                .collect();
            let resp = kv.txn(Txn::new().and_then(ops)).await?;
            let answers: Vec<(Vec<KeyValue>, bool)> = resp
                .op_responses()
                .iter()
                .filter_map(|r| match r {
                    TxnOpResponse::Get(get) => Some((
                        get.kvs().iter().map(KeyValue::from_etcd).collect(),
                        get.more(),
                    )),
                    _ => None,
                })
                .collect();
            Ok(answers)
        })?;
        if answers.len() != reads.len() {
            return Err(EtcdError::Other(format!(
                "etcd answered {} of {} reads",
                answers.len(),
                reads.len()
            )));
        }
        reads
            .iter()
            .zip(answers)
            .map(|(r, (kvs, more))| match r {
                RangeRead::Prefix(prefix) if more => self.list(prefix),
                _ => Ok(kvs),
            })
            .collect()
    }

    /// Unconditional write (tools and test fixtures; IPAM code uses create/update).
    pub fn put(&self, key: &str, value: &[u8]) -> Result<i64, EtcdError> {
        self.run("put", key, |mut kv, _| async move {
            let resp = kv.put(key, value, None).await?;
            Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
        })
    }
}

/// A revision of 0 would make the `mod_revision ==` compare match an absent key and turn
/// an update into a create.
fn check_revision(key: &str, rev: i64) -> Result<(), EtcdError> {
    if rev <= 0 {
        return Err(EtcdError::Other(format!(
            "invalid revision {rev} for CAS on {key}"
        )));
    }
    Ok(())
}

fn revision(resp: &TxnResponse) -> i64 {
    resp.header().map(|h| h.revision()).unwrap_or_default()
}

/// The key as the `or_else` get of a failed compare saw it.
fn current(resp: &TxnResponse) -> Option<KeyValue> {
    resp.op_responses().iter().find_map(|r| match r {
        TxnOpResponse::Get(get) => get.kvs().first().map(KeyValue::from_etcd),
        _ => None,
    })
}

/// One read of [`EtcdClient::read_many`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRead<'a> {
    /// One key.
    Get(&'a str),
    /// Every key starting with this prefix.
    Prefix(&'a str),
}

impl RangeRead<'_> {
    fn key(&self) -> &str {
        match self {
            RangeRead::Get(k) | RangeRead::Prefix(k) => k,
        }
    }
}

/// One conditional write of [`EtcdClient::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasWrite<'a> {
    /// Put only if the key does not exist.
    Create { key: &'a str, value: &'a [u8] },
    /// Put only if the key's `mod_revision` is `expected`.
    Update {
        key: &'a str,
        value: &'a [u8],
        expected: i64,
    },
    /// Delete only if the key's `mod_revision` is `expected`.
    Delete { key: &'a str, expected: i64 },
}

impl CasWrite<'_> {
    fn key(&self) -> &str {
        match self {
            CasWrite::Create { key, .. }
            | CasWrite::Update { key, .. }
            | CasWrite::Delete { key, .. } => key,
        }
    }

    fn compare(&self) -> Compare {
        match *self {
            CasWrite::Create { key, .. } => Compare::create_revision(key, CompareOp::Equal, 0),
            CasWrite::Update { key, expected, .. } | CasWrite::Delete { key, expected } => {
                Compare::mod_revision(key, CompareOp::Equal, expected)
            }
        }
    }

    fn op(&self) -> TxnOp {
        match *self {
            CasWrite::Create { key, value } | CasWrite::Update { key, value, .. } => {
                TxnOp::put(key, value, None)
            }
            CasWrite::Delete { key, .. } => TxnOp::delete(key, None),
        }
    }
}

/// What each get of a Txn's branch found, in order.
fn currents(resp: &TxnResponse) -> Vec<Option<KeyValue>> {
    resp.op_responses()
        .iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(get) => Some(get.kvs().first().map(KeyValue::from_etcd)),
            _ => None,
        })
        .collect()
}

/// The first write whose compare fails against `now` (the keys as the failed Txn saw them).
fn first_failed(writes: &[CasWrite<'_>], now: &[Option<KeyValue>]) -> (usize, EtcdError) {
    for (i, (w, cur)) in writes.iter().zip(now).enumerate() {
        let key = w.key().to_string();
        match (w, cur) {
            (CasWrite::Create { .. }, Some(_)) => return (i, EtcdError::Conflict(key)),
            (CasWrite::Update { .. } | CasWrite::Delete { .. }, None) => {
                return (i, EtcdError::NotFound(key))
            }
            (CasWrite::Update { expected, .. } | CasWrite::Delete { expected, .. }, Some(kv))
                if kv.mod_revision != *expected =>
            {
                return (i, EtcdError::Conflict(key))
            }
            _ => {}
        }
    }
    // The compares and the gets ran at one revision, so one of the above matched; if etcd
    // ever answered otherwise, still report a lost race (the caller re-reads).
    let key = writes.first().map_or("", |w| w.key()).to_string();
    (0, EtcdError::Conflict(key))
}

/// The commit's revision if `now` is exactly what `writes` would have left.
fn already_applied(writes: &[CasWrite<'_>], now: &[Option<KeyValue>]) -> Option<i64> {
    let mut rev = None;
    for (w, cur) in writes.iter().zip(now) {
        match (w, cur) {
            (CasWrite::Delete { .. }, None) => {}
            (CasWrite::Create { value, .. } | CasWrite::Update { value, .. }, Some(kv))
                if kv.value == *value && rev.is_none_or(|r| r == kv.mod_revision) =>
            {
                rev = Some(kv.mod_revision)
            }
            _ => return None,
        }
    }
    Some(rev.unwrap_or_default())
}

/// Outcome of a `mod_revision` compare whose failure branch reads the key back.
fn compare_outcome(key: &str, resp: &TxnResponse) -> Result<(), EtcdError> {
    if resp.succeeded() {
        return Ok(());
    }
    if current(resp).is_some() {
        Err(EtcdError::Conflict(key.to_string()))
    } else {
        Err(EtcdError::NotFound(key.to_string()))
    }
}

/// Keys per page of a list (see [`EtcdClient::list`]): blocks of a /26 are a few KiB each.
const LIST_PAGE: i64 = 500;

/// How often a list starts again after its snapshot was compacted away.
const MAX_LIST_RESTARTS: usize = 3;

/// etcd's answer to a read at a compacted revision (`ErrCompacted`).
fn is_compacted(msg: &str) -> bool {
    msg.contains("required revision has been compacted")
}

/// The largest answer accepted, as Go's etcd client (`MaxCallRecvMsgSize`: `math.MaxInt32`).
const MAX_ANSWER: usize = i32::MAX as usize;

/// The end of the key range holding every key that starts with `prefix` (etcd's rule: the
/// prefix with its last byte below 0xff incremented; all keys when there is none).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {

    #[test]
    fn prefix_end_covers_exactly_the_prefix() {
        assert_eq!(
            prefix_end(b"/calico/ipam/v2/handle/"),
            b"/calico/ipam/v2/handle0"
        );
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    use super::*;

    #[test]
    fn endpoints_get_a_scheme_and_cannot_mix() {
        let cfg = EtcdConfig::with_endpoints("127.0.0.1:2379,http://a:1");
        assert_eq!(
            resolve_endpoints(&cfg).unwrap(),
            vec!["http://127.0.0.1:2379", "http://a:1"]
        );
        let cfg = EtcdConfig::with_endpoints("127.0.0.1:2379,https://a:1");
        assert_eq!(
            resolve_endpoints(&cfg).unwrap(),
            vec!["https://127.0.0.1:2379", "https://a:1"]
        );
        let cfg = EtcdConfig::with_endpoints("http://b:1,https://a:1");
        assert!(matches!(resolve_endpoints(&cfg), Err(EtcdError::Config(_))));
        let cfg = EtcdConfig::with_endpoints(" , ");
        assert!(matches!(resolve_endpoints(&cfg), Err(EtcdError::Config(_))));
    }

    #[test]
    fn lone_client_cert_is_a_config_error() {
        let mut cfg = EtcdConfig::with_endpoints("https://127.0.0.1:1");
        cfg.cert_file = Some("/nonexistent/cert.pem".into());
        let err = EtcdClient::connect(&cfg).unwrap_err();
        assert!(matches!(err, EtcdError::Config(_)), "{err}");
        cfg.key_file = Some("/nonexistent/key.pem".into());
        let err = EtcdClient::connect(&cfg).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }
}
