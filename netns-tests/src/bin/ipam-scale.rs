//! Scale benchmark of Calico's block IPAM (run by `netns-tests/bench/scale.sh`; not a test).
//!
//! Grows one cluster on one datastore to each size in turn (nodes with `--pods` pods each, ADDs
//! from 4 threads as nodes do them in parallel), and at every size measures `--probe` new nodes
//! doing what a node does: its first ADD (the block claim), `--pods` steady ADDs, then random
//! DEL churn with re-ADDs. Prints per size the latencies (p50/p99), datastore requests per
//! ADD and CAS conflicts per ADD (each conflict is one retry of the allocator's loop), and
//! checks at the end that no address was ever handed out twice (live set + store audit).
//!
//! Usage: `ipam-scale <local|etcd|kdd> [--sizes 10,100,1000,5000] [--pods 20] [--probe 40]`.
//! `etcd` starts a 3-member cluster on loopback (needs Debian's etcd-server) compacting its
//! history every 5 minutes as production clusters do (`SCALE_ETCD_ARGS` replaces those flags),
//! `kdd` the test API server in this process, `local` an SQLite file in a temp dir. All are
//! removed on exit. `SCALE_SEQUENTIAL=1` hides the stores' atomic commits, so the allocator
//! writes handle and block one after the other (the comparison for one commit per ADD).

use std::cell::Cell;
use std::collections::HashSet;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use ipam::model::{IpPool, IpPoolSpec};
use ipam::{
    AutoAssignRequest, CommitError, IntendedUse, Ipam, IpamOptions, Key, KvPair, ListPrefix, Read,
    ReadResult, Revision, Store, StoreError, StoreResult, WriteOp,
};

thread_local! {
    /// Requests and conflicts of the calling thread since its last `take_thread_counts`.
    static THREAD_COUNTS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Counts every request (per thread, so concurrent nodes each see their own) and every CAS
/// conflict (an update/delete on a stale revision, or a create that lost the race).
struct Counting {
    inner: Box<dyn Store + Send + Sync>,
    requests: AtomicUsize,
    /// Hide the store's atomic commits (`SCALE_SEQUENTIAL=1`): the allocator then writes the
    /// handle and the block one after the other, as before it had commits (and as on KDD).
    sequential: bool,
}

impl Counting {
    /// Whether multi-key reads go one key at a time: when hidden (`SCALE_SEQUENTIAL=1`), and
    /// on a store without multi-key operations (KDD: `commits_atomically` false), whose
    /// `get_many`/`read_many` are the trait's one-request-per-read defaults. Counting them
    /// through our own get/list then counts what the store really sends.
    fn one_by_one(&self) -> bool {
        self.sequential || !self.inner.commits_atomically()
    }

    fn count<T>(&self, r: StoreResult<T>) -> StoreResult<T> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let conflict = matches!(
            r,
            Err(StoreError::Conflict(_) | StoreError::AlreadyExists(_))
        );
        THREAD_COUNTS.with(|c| {
            let (req, conf) = c.get();
            c.set((req + 1, conf + usize::from(conflict)));
        });
        r
    }
}

fn take_thread_counts() -> (usize, usize) {
    THREAD_COUNTS.with(|c| c.replace((0, 0)))
}

impl Store for Counting {
    fn get(&self, key: &Key) -> StoreResult<KvPair> {
        self.count(self.inner.get(key))
    }
    fn list(&self, prefix: &ListPrefix) -> StoreResult<Vec<KvPair>> {
        self.count(self.inner.list(prefix))
    }
    fn create(&self, key: &Key, value: &str) -> StoreResult<Revision> {
        self.count(self.inner.create(key, value))
    }
    fn update(&self, key: &Key, value: &str, rev: &Revision) -> StoreResult<Revision> {
        self.count(self.inner.update(key, value, rev))
    }
    fn delete(&self, key: &Key, rev: Option<&Revision>) -> StoreResult<()> {
        self.count(self.inner.delete(key, rev))
    }
    /// One request: the store's own (atomic) commit is one round trip.
    fn commit(&self, ops: &[WriteOp]) -> Result<Vec<Option<Revision>>, CommitError> {
        if self.sequential {
            return ipam::store::commit_sequentially(self, ops);
        }
        let r = self.inner.commit(ops);
        let e = r.as_ref().err().map(|e| e.error.clone());
        self.count(e.map_or(Ok(()), Err)).ok();
        r
    }
    fn commits_atomically(&self) -> bool {
        !self.sequential && self.inner.commits_atomically()
    }
    fn max_commit_ops(&self) -> usize {
        self.inner.max_commit_ops()
    }
    fn get_many(&self, keys: &[Key]) -> StoreResult<Vec<Option<KvPair>>> {
        if self.one_by_one() {
            return keys.iter().map(|k| self.get_opt(k)).collect();
        }
        self.count(self.inner.get_many(keys))
    }
    /// One request: the store's own multi-read is one round trip (one call per read when
    /// sequential, as on KDD).
    fn read_many(&self, reads: &[Read]) -> Vec<StoreResult<ReadResult>> {
        if self.one_by_one() {
            return ipam::store::read_sequentially(self, reads);
        }
        let r = self.inner.read_many(reads);
        let e = r.iter().find_map(|r| r.as_ref().err().cloned());
        self.count(e.map_or(Ok(()), Err)).ok();
        r
    }
}

/// etcd as a production cluster runs: its history compacted every 5 minutes (what
/// kube-apiserver does to its etcd, and what etcd's `--auto-compaction-*` flags do for a
/// Calico etcd datastore). etcd's default is never to compact, so its MVCC history (every
/// revision of every handle and block) and its bbolt file only grow. `SCALE_ETCD_ARGS`
/// replaces these flags (an empty value: etcd's defaults).
const ETCD_PRODUCTION_ARGS: &str = "--auto-compaction-mode=periodic --auto-compaction-retention=5m";

/// etcd's own figures after each size (member 0): what grows with the cluster.
const ETCD_METRICS: [&str; 9] = [
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_debugging_mvcc_keys_total",
    "etcd_debugging_mvcc_db_compaction_keys_total",
    "etcd_server_proposals_committed_total",
    "go_memstats_heap_inuse_bytes",
    "go_gc_duration_seconds_sum",
    "etcd_disk_backend_commit_duration_seconds_sum",
    "etcd_disk_wal_fsync_duration_seconds_sum",
];

fn etcd_metrics(backend: &Backend) -> Option<String> {
    let Backend::Etcd(cluster) = backend else {
        return None;
    };
    let text = cluster.metrics(0).ok()?;
    let picked: Vec<String> = ETCD_METRICS
        .iter()
        .filter_map(|m| {
            let line = text.lines().find(|l| l.starts_with(&format!("{m} ")))?;
            Some(format!("{m}={}", line.split_whitespace().nth(1)?))
        })
        .collect();
    Some(picked.join(" "))
}

/// Whatever keeps the datastore alive for the run (etcd processes, the API server, a temp dir).
enum Backend {
    Local(#[allow(dead_code)] tempfile::TempDir),
    Etcd(#[allow(dead_code)] ipam_store_etcd::test_cluster::EtcdCluster),
    Kdd(#[allow(dead_code)] test_apiserver::TestApiServer),
}

fn open(kind: &str) -> Result<(Backend, Box<dyn Store + Send + Sync>), String> {
    match kind {
        "local" => {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let store = ipam_store_local::LocalStore::open(dir.path().join("ipam.db"))
                .map_err(|e| e.to_string())?;
            Ok((Backend::Local(dir), Box::new(store)))
        }
        "etcd" => {
            let args = std::env::var("SCALE_ETCD_ARGS")
                .unwrap_or_else(|_| ETCD_PRODUCTION_ARGS.to_string());
            let args: Vec<&str> = args.split_whitespace().collect();
            eprintln!("etcd: 3 members with {args:?}");
            let cluster = ipam_store_etcd::test_cluster::EtcdCluster::start_with_args(3, &args)
                .map_err(|e| e.to_string())?;
            let store = ipam_store_etcd::EtcdStore::connect(&cluster.config())
                .map_err(|e| e.to_string())?;
            Ok((Backend::Etcd(cluster), Box::new(store)))
        }
        "kdd" => {
            let api = test_apiserver::TestApiServer::start().map_err(|e| e.to_string())?;
            let store = ipam_store_kdd::KddStore::open(&api.kubeconfig_path())
                .map_err(|e| e.to_string())?;
            Ok((Backend::Kdd(api), Box::new(store)))
        }
        other => Err(format!("unknown datastore {other:?}: local, etcd or kdd")),
    }
}

struct Args {
    kind: String,
    sizes: Vec<usize>,
    pods: usize,
    probe: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let kind = it.next().ok_or(
        "usage: ipam-scale <local|etcd|kdd> [--sizes 10,100,1000,5000] [--pods 20] [--probe 40]",
    )?;
    let mut a = Args {
        kind,
        sizes: vec![10, 100, 1000, 5000],
        pods: 20,
        probe: 40,
    };
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |s: &str| s.parse::<usize>().map_err(|e| format!("{flag} {s:?}: {e}"));
        match flag.as_str() {
            "--sizes" => a.sizes = v.split(',').map(num).collect::<Result<_, _>>()?,
            "--pods" => a.pods = num(&v)?,
            "--probe" => a.probe = num(&v)?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

/// The shared state of a run: the store, and every address currently held (a second holder
/// of one address is the bug this bench must never see).
struct Cluster {
    store: Counting,
    live: Mutex<HashSet<IpAddr>>,
    seq: AtomicUsize,
}

#[derive(Default)]
struct Samples {
    ms: Vec<f64>,
    requests: usize,
    conflicts: usize,
}

impl Samples {
    fn add(&mut self, ms: f64, (requests, conflicts): (usize, usize)) {
        self.ms.push(ms);
        self.requests += requests;
        self.conflicts += conflicts;
    }

    fn merge(&mut self, other: Samples) {
        self.ms.extend(other.ms);
        self.requests += other.requests;
        self.conflicts += other.conflicts;
    }

    fn pct(&self, p: f64) -> f64 {
        let mut v = self.ms.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 * p / 100.0).ceil() as usize).clamp(1, v.len());
        v[i - 1]
    }

    fn per_op(&self, n: usize) -> f64 {
        n as f64 / self.ms.len().max(1) as f64
    }
}

impl Cluster {
    fn ipam(&self) -> Ipam<'_> {
        Ipam::with_options(
            &self.store,
            IpamOptions {
                require_node: false,
                ..IpamOptions::default()
            },
        )
    }

    /// One pod ADD on `node`; returns its handle and the time taken.
    fn add(&self, node: &str) -> Result<(String, f64), String> {
        let handle = format!(
            "k8s-pod-network.{}",
            self.seq.fetch_add(1, Ordering::Relaxed)
        );
        let req = AutoAssignRequest {
            num_v4: 1,
            handle_id: handle.clone(),
            hostname: node.to_string(),
            attrs: [("node".to_string(), node.to_string())].into(),
            intended_use: IntendedUse::Workload,
            ..Default::default()
        };
        let t = Instant::now();
        let r = self
            .ipam()
            .auto_assign(&req)
            .map_err(|e| format!("ADD on {node}: {e}"))?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let mut live = self.live.lock().expect("live set");
        for ip in r.ipv4 {
            if !live.insert(ip.ip()) {
                return Err(format!("{} handed out twice", ip.ip()));
            }
        }
        Ok((handle, ms))
    }

    /// One pod DEL on `node`, as calico-ipam makes it: the handle and Calico's legacy one
    /// (the container ID alone, never written here) in one release.
    fn del(&self, node: &str, handle: &str) -> Result<f64, String> {
        let legacy = handle.rsplit('.').next().unwrap_or(handle);
        let t = Instant::now();
        let ips = self
            .ipam()
            .release_handles(&[handle, legacy], node)
            .map_err(|e| format!("DEL {handle}: {e}"))?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let mut live = self.live.lock().expect("live set");
        for ip in ips {
            live.remove(&ip);
        }
        Ok(ms)
    }
}

/// Nodes `from..to`, each with `pods` pods, from `threads` threads.
fn grow(c: &Cluster, from: usize, to: usize, pods: usize, threads: usize) -> Result<(), String> {
    std::thread::scope(|s| {
        let jobs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || -> Result<(), String> {
                    for n in (from..to).filter(|n| n % threads == t) {
                        for _ in 0..pods {
                            c.add(&format!("node-{n}"))?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        jobs.into_iter()
            .try_for_each(|j| j.join().map_err(|_| "grow thread panicked".to_string())?)
    })
}

#[derive(Default)]
struct Measured {
    first: Samples,
    steady: Samples,
    del: Samples,
}

/// `probe` new nodes (2 at a time) doing a first ADD, `pods` ADDs, then churn: DEL a random
/// half of their pods and ADD as many again.
fn measure(c: &Cluster, size: usize, probe: usize, pods: usize) -> Result<Measured, String> {
    let results: Vec<Result<Measured, String>> = std::thread::scope(|s| {
        let jobs: Vec<_> = (0..2)
            .map(|t| {
                s.spawn(move || -> Result<Measured, String> {
                    let mut m = Measured::default();
                    let mut rng = 0x9e37_79b9_u64 ^ (size as u64) << 8 ^ t;
                    for p in (0..probe).filter(|p| p % 2 == t as usize) {
                        let node = format!("probe-{size}-{p}");
                        take_thread_counts();
                        let (h, ms) = c.add(&node)?;
                        m.first.add(ms, take_thread_counts());
                        let mut held = vec![h];
                        for _ in 0..pods {
                            let (h, ms) = c.add(&node)?;
                            m.steady.add(ms, take_thread_counts());
                            held.push(h);
                        }
                        for _ in 0..pods / 2 {
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            let h = held.swap_remove((rng % held.len() as u64) as usize);
                            let ms = c.del(&node, &h)?;
                            m.del.add(ms, take_thread_counts());
                            let (h, ms) = c.add(&node)?;
                            m.steady.add(ms, take_thread_counts());
                            held.push(h);
                        }
                    }
                    Ok(m)
                })
            })
            .collect();
        jobs.into_iter()
            .map(|j| {
                j.join()
                    .unwrap_or_else(|_| Err("probe thread panicked".into()))
            })
            .collect()
    });
    let mut all = Measured::default();
    for r in results {
        let m = r?;
        all.first.merge(m.first);
        all.steady.merge(m.steady);
        all.del.merge(m.del);
    }
    Ok(all)
}

fn run(a: &Args) -> Result<(), String> {
    let (backend, inner) = open(&a.kind)?;
    let c = Cluster {
        store: Counting {
            inner,
            requests: AtomicUsize::new(0),
            sequential: std::env::var_os("SCALE_SEQUENTIAL").is_some_and(|v| v == "1"),
        },
        live: Mutex::default(),
        seq: AtomicUsize::new(0),
    };
    // A /12 of /26 blocks: 16,384 blocks, enough for 5,000 nodes and their probes.
    let spec = IpPoolSpec {
        cidr: "10.64.0.0/12".into(),
        block_size: Some(26),
        ..Default::default()
    };
    c.ipam()
        .create_pool(&IpPool::new("IPPool", "scale-pool", spec))
        .map_err(|e| format!("create pool: {e}"))?;
    println!(
        "# store nodes first_p50 first_p99 first_req first_conf steady_p50 steady_p99 steady_req steady_conf del_p50 del_p99 del_req (ms; req/conf per op)"
    );
    let mut have = 0;
    for &size in &a.sizes {
        let t = Instant::now();
        grow(&c, have, size, a.pods, 4)?;
        have = size;
        eprintln!(
            "{}: {size} nodes x {} pods in {:.1} s",
            a.kind,
            a.pods,
            t.elapsed().as_secs_f64()
        );
        let m = measure(&c, size, a.probe, a.pods)?;
        if let Some(figures) = etcd_metrics(&backend) {
            eprintln!("etcd at {size} nodes: {figures}");
        }
        println!(
            "{} {size} {:.2} {:.2} {:.1} {:.2} {:.2} {:.2} {:.1} {:.3} {:.2} {:.2} {:.1}",
            a.kind,
            m.first.pct(50.0),
            m.first.pct(99.0),
            m.first.per_op(m.first.requests),
            m.first.per_op(m.first.conflicts),
            m.steady.pct(50.0),
            m.steady.pct(99.0),
            m.steady.per_op(m.steady.requests),
            m.steady.per_op(m.steady.conflicts),
            m.del.pct(50.0),
            m.del.pct(99.0),
            m.del.per_op(m.del.requests),
        );
    }
    // The store's own view: no address in two allocations, everything reachable by handle.
    let audit = ipam::audit::audit(&c.store).map_err(|e| format!("audit: {e}"))?;
    if !audit.errors.is_empty() {
        return Err(format!("audit found errors: {:?}", audit.errors));
    }
    let live = c.live.lock().expect("live set").len();
    if audit.allocations.len() != live {
        return Err(format!(
            "store holds {} allocations, the bench {live}",
            audit.allocations.len()
        ));
    }
    eprintln!(
        "{}: no address handed out twice; {live} allocations, {} datastore requests in all",
        a.kind,
        c.store.requests.load(Ordering::Relaxed)
    );
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(|a| run(&a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipam-scale: {e}");
            ExitCode::FAILURE
        }
    }
}
