//! Crash consistency of the full chain (calico + calico-ipam on the local store, and on a
//! 3-member etcd cluster, + portmap + bandwidth): parallel ADD/DEL while plugin processes are killed with SIGKILL at random
//! moments, every failed ADD and DEL retried as a runtime does; afterwards nothing may be left
//! (allocations, handles, links, rules, qdiscs), no address may ever have been held by two live
//! pods, SQLite's `PRAGMA integrity_check` and `calicoctl ipam check` must pass. Also the local
//! store on a full and on a read-only filesystem: a clear error and nothing partial.
//! Needs the built binaries (`cargo build --bins`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use ipam_store_etcd::test_cluster::EtcdCluster;
use netns_tests::{bins, ipam_state, node, Attachment, Chain, Netns, TestEnv};
use serde_json::{json, Map, Value};

const NETWORK: &str = "k8s-pod-network";
/// Plugins the killer may hit (only processes running these very binaries).
const VICTIMS: [&str; 4] = ["calico", "calico-ipam", "portmap", "bandwidth"];
const WORKERS: usize = 3;
/// How long pods are added and deleted under fire; the whole test stays well under 90 s.
const CHAOS: Duration = Duration::from_secs(20);
/// The etcd variant also starts three members and `calicoctl datastore init`s them.
const CHAOS_ETCD: Duration = Duration::from_secs(15);

fn conflist(data: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "plugins": [
            {
                "type": "calico",
                "datastore_type": "local",
                "datastore_path": data.join("calico.db"),
                "nodename": "crash-node",
                "log_file_path": data.join("cni.log"),
                "ipam_lock_file": data.join("ipam.lock"),
                "ipam": {"type": "calico-ipam", "default_ipv4_pool": "10.244.0.0/16",
                         "default_ipv4_block_size": 26}
            },
            {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}},
            {"type": "bandwidth", "capabilities": {"bandwidth": true}}
        ]
    })
}

fn caps(port: u16) -> Map<String, Value> {
    let v = json!({
        "portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}],
        "bandwidth": {"ingressRate": 8_000_000, "ingressBurst": 80_000,
                      "egressRate": 8_000_000, "egressBurst": 80_000}
    });
    v.as_object().cloned().unwrap_or_default()
}

/// Tiny xorshift: the schedule only needs to vary, not to be good randomness.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A running plugin process of ours: pid, binary name, parent pid, `CNI_CONTAINERID`.
struct Proc {
    pid: i32,
    name: String,
    ppid: i32,
    container: Option<String>,
}

/// Processes whose executable is one of [`VICTIMS`] in this build's binary directory and whose
/// `CNI_CONTAINERID` starts with `ids` (this test's containers: nothing else on the machine, nor
/// another test of this file, is ever signalled).
fn our_plugins(bin_dir: &Path, ids: &str) -> Vec<Proc> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(exe) = std::fs::read_link(e.path().join("exe")) else {
            continue;
        };
        let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
            continue;
        };
        let name = name.to_string_lossy().into_owned();
        if dir != bin_dir || !VICTIMS.contains(&name.as_str()) {
            continue;
        }
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised command: state, ppid, ...
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split(' ').nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let container = environ
            .split(|b| *b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok())
            .find_map(|kv| kv.strip_prefix("CNI_CONTAINERID="))
            .map(str::to_string);
        if !container.as_deref().is_some_and(|c| c.starts_with(ids)) {
            continue;
        }
        out.push(Proc {
            pid,
            name,
            ppid,
            container,
        });
    }
    out
}

/// What the killer did: kills per binary, and the containers whose calico was killed while its
/// calico-ipam child was running (that child is orphaned and may still commit).
#[derive(Default)]
struct KillLog {
    kills: BTreeMap<String, usize>,
    orphaned_ipam: BTreeSet<String>,
}

fn killer(bin_dir: &Path, ids: &str, stop: &AtomicBool, log: &Mutex<KillLog>) {
    let mut rng = Rng::new(0x5eed ^ u64::from(std::process::id()));
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5 + rng.below(40)));
        let procs = our_plugins(bin_dir, ids);
        if procs.is_empty() || rng.below(3) != 0 {
            continue;
        }
        let victim = &procs[rng.below(procs.len() as u64) as usize];
        let has_ipam_child = procs
            .iter()
            .any(|p| p.ppid == victim.pid && p.name == "calico-ipam");
        // SAFETY: plain kill(2) on a pid just read from /proc whose executable is ours.
        if unsafe { libc::kill(victim.pid, libc::SIGKILL) } == 0 {
            let mut l = log.lock().unwrap();
            *l.kills.entry(victim.name.clone()).or_default() += 1;
            if victim.name == "calico" && has_ipam_child {
                if let Some(c) = &victim.container {
                    l.orphaned_ipam.insert(c.clone());
                }
            }
        }
    }
}

/// A runtime's DEL: repeated until it succeeds (bounded).
fn del_until_ok(chain: &mut Chain<'_>, att: &Attachment, port: u16) -> Result<(), String> {
    chain.set_capability_args(caps(port));
    let mut last = String::new();
    for _ in 0..40 {
        match chain.del(att) {
            Ok(()) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(last)
}

fn ipv4_of(result: &Value) -> Option<IpAddr> {
    node::result_ips(result).into_iter().find(IpAddr::is_ipv4)
}

/// Shared bookkeeping: addresses of live pods and every violation seen.
#[derive(Default)]
struct Ledger {
    live: HashMap<IpAddr, String>,
    violations: Vec<String>,
    /// Attachments whose final DEL never succeeded during the chaos (retried afterwards).
    undeleted: Vec<(String, PathBuf, u16)>,
    adds_ok: usize,
    adds_failed: usize,
    ips: BTreeSet<IpAddr>,
}

struct Pod {
    att: Attachment,
    _ns: Netns,
    port: u16,
    ip: Option<IpAddr>,
}

/// Where one worker runs: the test env, the conflist and the container id prefix.
struct Site<'a> {
    env: &'a TestEnv,
    conf: &'a Value,
    ids: &'a str,
}

fn worker(site: &Site<'_>, w: usize, deadline: Instant, ledger: &Mutex<Ledger>) {
    let env = site.env;
    let mut chain = env.chain(site.conf).expect("chain");
    let mut rng = Rng::new(0xc0ffee + w as u64);
    let mut pods: Vec<Pod> = Vec::new();
    let mut n = 0u16;
    while Instant::now() < deadline {
        let add = pods.len() < 2 || (pods.len() < 4 && rng.below(2) == 0);
        if add {
            n += 1;
            let name = format!("cc{w}-{n}");
            let ns = env.container(&name).expect("netns");
            let id = format!("{}{w}-{n}", site.ids);
            let port = 20000 + (w as u16) * 1000 + n;
            let att = Attachment::new(&id, &ns)
                .arg("K8S_POD_NAMESPACE", "crash")
                .arg("K8S_POD_NAME", &name);
            chain.set_capability_args(caps(port));
            match chain.add(&att) {
                Ok(result) => {
                    let ip = ipv4_of(&result);
                    let mut l = ledger.lock().unwrap();
                    l.adds_ok += 1;
                    if let Some(ip) = ip {
                        l.ips.insert(ip);
                        if let Some(other) = l.live.insert(ip, id.clone()) {
                            l.violations
                                .push(format!("{ip} given to {id} while {other} holds it"));
                        }
                    }
                    drop(l);
                    pods.push(Pod {
                        att,
                        _ns: ns,
                        port,
                        ip,
                    });
                }
                Err(_) => {
                    ledger.lock().unwrap().adds_failed += 1;
                    // A runtime cleans up a failed ADD with DEL.
                    if del_until_ok(&mut chain, &att, port).is_err() {
                        let p = att.netns.clone().unwrap_or_default();
                        ledger.lock().unwrap().undeleted.push((id, p, port));
                        pods_keep(ns);
                    }
                }
            }
        } else {
            let pod = pods.remove(rng.below(pods.len() as u64) as usize);
            finish(&mut chain, pod, ledger);
        }
    }
    for pod in pods {
        finish(&mut chain, pod, ledger);
    }
}

/// A netns whose DEL is still owed is kept until the end of the test (leaked on purpose: the
/// harness removes namespaces when the test env goes away).
fn pods_keep(ns: Netns) {
    std::mem::forget(ns);
}

fn finish(chain: &mut Chain<'_>, pod: Pod, ledger: &Mutex<Ledger>) {
    let ok = del_until_ok(chain, &pod.att, pod.port).is_ok();
    let mut l = ledger.lock().unwrap();
    if let Some(ip) = pod.ip {
        l.live.remove(&ip);
    }
    if !ok {
        let p = pod.att.netns.clone().unwrap_or_default();
        l.undeleted
            .push((pod.att.container_id.clone(), p, pod.port));
        drop(l);
        pods_keep(pod._ns);
    }
}

fn sqlite(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `program` with `vars` inside `host` (where the datastore is reachable).
fn run_in(host: &Netns, vars: &[(&str, String)], program: &str, args: &[&str]) -> (bool, String) {
    let mut full: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
    full.push(program.to_string());
    full.extend(args.iter().map(|a| a.to_string()));
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    let out = host.output("env", &full).expect("run in host netns");
    (
        out.success(),
        format!("{}{}", out.stdout_str(), out.stderr_str()),
    )
}

fn calicoctl(host: &Netns, vars: &[(&str, String)], args: &[&str]) -> (bool, String) {
    let bin = bins::binary("calicoctl").expect("calicoctl");
    run_in(host, vars, &bin.display().to_string(), args)
}

/// A 3-member etcd cluster inside the test's host namespace (plugins run there, so its
/// loopback is where they look). The members die with the thread that started them
/// (PR_SET_PDEATHSIG), so that thread joins the namespace and stays parked until drop.
struct HostEtcd {
    cluster: Option<EtcdCluster>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostEtcd {
    fn start(host: &Netns) -> HostEtcd {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let path = host.path().to_path_buf();
        let thread = std::thread::spawn(move || {
            let ns = std::fs::File::open(path).expect("host netns");
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let cluster = EtcdCluster::start(3).expect("3 etcd members (etcd-server)");
            let _ = ready_tx.send(cluster);
            let _ = stop_rx.recv();
        });
        let cluster = ready_rx.recv().expect("etcd started");
        HostEtcd {
            cluster: Some(cluster),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn endpoints(&self) -> String {
        self.cluster
            .as_ref()
            .map(EtcdCluster::endpoints_csv)
            .unwrap_or_default()
    }
}

impl Drop for HostEtcd {
    fn drop(&mut self) {
        drop(self.cluster.take()); // kills the members while their parent thread still lives
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn wait_for_quiet(bin_dir: &Path, ids: &str) {
    let until = Instant::now() + Duration::from_secs(15);
    while !our_plugins(bin_dir, ids).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where calico-ipam keeps its state, and how the test reads it back.
enum Store {
    Local(PathBuf),
    Etcd(Box<HostEtcd>),
}

impl Store {
    /// The calico plugin entry's datastore keys.
    fn configure(&self, calico: &mut Value) {
        match self {
            Store::Local(db) => calico["datastore_path"] = json!(db),
            Store::Etcd(c) => {
                if let Some(o) = calico.as_object_mut() {
                    o.remove("datastore_path");
                }
                calico["datastore_type"] = json!("etcdv3");
                // There is no calico-node writing /var/lib/calico/nodename here.
                calico["nodename_file_optional"] = json!(true);
                calico["etcd_endpoints"] = json!(c.endpoints());
            }
        }
    }

    fn calicoctl_env(&self) -> Vec<(&'static str, String)> {
        match self {
            Store::Local(db) => vec![
                ("DATASTORE_TYPE", "local".into()),
                ("DATASTORE_PATH", db.display().to_string()),
            ],
            Store::Etcd(c) => vec![
                ("DATASTORE_TYPE", "etcdv3".into()),
                ("ETCD_ENDPOINTS", c.endpoints()),
            ],
        }
    }

    /// `(key, value)` of everything under `prefix` in etcd, read with the stock etcdctl.
    fn etcd_prefix(host: &Netns, c: &HostEtcd, prefix: &str) -> Vec<(String, String)> {
        let vars = [("ETCDCTL_API", "3".to_string())];
        let eps = c.endpoints();
        let args = ["--endpoints", &eps, "get", "--prefix", prefix];
        let (ok, text) = run_in(host, &vars, "etcdctl", &args);
        assert!(ok, "etcdctl get {prefix}: {text}");
        let lines: Vec<&str> = text.lines().collect();
        lines
            .chunks(2)
            .map(|kv| (kv[0].to_string(), kv.get(1).unwrap_or(&"").to_string()))
            .collect()
    }

    /// IPAM handles (one per attachment holding addresses).
    fn handles(&self, host: &Netns) -> Vec<String> {
        match self {
            Store::Local(db) => ipam_state::calico_local_handles(db).unwrap(),
            Store::Etcd(c) => Self::etcd_prefix(host, c, "/calico/ipam/v2/handle/")
                .into_iter()
                .map(|(k, _)| k)
                .collect(),
        }
    }

    /// Blocks with addresses still allocated, and (etcd) WorkloadEndpoints left.
    fn allocations_left(&self, host: &Netns) -> Vec<String> {
        match self {
            Store::Local(db) => ipam_state::calico_local_blocks(db)
                .unwrap()
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(b, n)| format!("{b}: {n}"))
                .collect(),
            Store::Etcd(c) => {
                let allocated = |v: &str| {
                    serde_json::from_str::<Value>(v).ok().is_some_and(|b| {
                        b["allocations"]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|x| !x.is_null()))
                    })
                };
                let mut left: Vec<String> =
                    Self::etcd_prefix(host, c, "/calico/ipam/v2/assignment/")
                        .into_iter()
                        .filter(|(_, v)| allocated(v))
                        .map(|(k, _)| k)
                        .collect();
                let weps = "/calico/resources/v3/projectcalico.org/workloadendpoints/";
                left.extend(Self::etcd_prefix(host, c, weps).into_iter().map(|(k, _)| k));
                left
            }
        }
    }

    /// Whether any IPAM block exists (proves the reads below look in the right place).
    fn has_blocks(&self, host: &Netns) -> bool {
        match self {
            Store::Local(db) => !ipam_state::calico_local_blocks(db).unwrap().is_empty(),
            Store::Etcd(c) => !Self::etcd_prefix(host, c, "/calico/ipam/v2/assignment/").is_empty(),
        }
    }

    fn assert_integrity(&self) {
        if let Store::Local(db) = self {
            assert_eq!(sqlite(db, "PRAGMA integrity_check"), "ok");
        }
    }
}

/// Whether IPAM handle `handle` (`<network>.<container id>`) is container `id`'s.
fn owned_by(handle: &str, id: &str) -> bool {
    handle
        .rsplit_once('.')
        .is_some_and(|(_, container)| container == id)
}

/// The chaos run and every check afterwards (see the module docs).
fn chaos(env: &TestEnv, name: &str, store: &Store, duration: Duration) {
    let started = Instant::now();
    let data = env.tmp().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut conf = conflist(&data);
    store.configure(&mut conf["plugins"][0]);
    let bin_dir = bins::binary("calico")
        .expect("calico binary")
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let stop = AtomicBool::new(false);
    let kills = Mutex::new(KillLog::default());
    let ledger = Mutex::new(Ledger::default());
    let deadline = Instant::now() + duration;
    let ids = format!("{name}-");
    let site = Site {
        env,
        conf: &conf,
        ids: &ids,
    };
    std::thread::scope(|s| {
        let k = s.spawn(|| killer(&bin_dir, &ids, &stop, &kills));
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (site, ledger) = (&site, &ledger);
                s.spawn(move || worker(site, w, deadline, ledger))
            })
            .collect();
        for w in workers {
            w.join().expect("worker");
        }
        stop.store(true, Ordering::SeqCst);
        k.join().expect("killer");
    });
    // Orphaned children (a plugin's iptables, a killed calico's calico-ipam) finish first.
    wait_for_quiet(&bin_dir, &ids);
    let mut ledger = ledger.into_inner().unwrap();
    let kills = kills.into_inner().unwrap();
    let mut chain = env.chain(&conf).unwrap();
    for (id, netns, port) in std::mem::take(&mut ledger.undeleted) {
        let mut att = Attachment::without_netns(&id);
        att.netns = Some(netns);
        if let Err(e) = del_until_ok(&mut chain, &att, port) {
            panic!("DEL of {id} never succeeded: {e}");
        }
    }
    eprintln!(
        "{name}: {} ADDs ok, {} failed, kills {:?} ({} calico-ipam orphaned), {} addresses \
         used, {:.1} s",
        ledger.adds_ok,
        ledger.adds_failed,
        kills.kills,
        kills.orphaned_ipam.len(),
        ledger.ips.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(ledger.violations.is_empty(), "{:?}", ledger.violations);
    assert!(ledger.adds_ok > 0, "no ADD ever succeeded");
    assert!(!kills.kills.is_empty(), "the killer never hit a plugin");

    let mut handles = store.handles(&env.host);
    if !handles.is_empty() {
        // Known: a calico killed while its calico-ipam child runs leaves that child to commit
        // an allocation after the runtime's DEL (fixed separately with PR_SET_PDEATHSIG).
        let orphaned: Vec<&String> = handles
            .iter()
            .filter(|h| kills.orphaned_ipam.iter().any(|c| owned_by(h, c)))
            .collect();
        eprintln!(
            "{name}: handles left after every DEL succeeded: {handles:?}; from orphaned \
             calico-ipam children: {orphaned:?}"
        );
        assert_eq!(
            orphaned.len(),
            handles.len(),
            "allocations left that no orphaned calico-ipam explains: {handles:?}"
        );
        // The runtime's next DEL (or GC) releases them.
        for h in handles.clone() {
            let id = kills
                .orphaned_ipam
                .iter()
                .find(|c| owned_by(&h, c))
                .cloned()
                .unwrap_or_default();
            del_until_ok(&mut chain, &Attachment::without_netns(&id), 1).unwrap();
        }
        handles = store.handles(&env.host);
    }
    assert!(handles.is_empty(), "handles left: {handles:?}");
    assert!(
        store.has_blocks(&env.host),
        "no IPAM block found: the checks below would see nothing"
    );
    let allocations = store.allocations_left(&env.host);
    assert!(allocations.is_empty(), "allocations left: {allocations:?}");
    let ips: Vec<IpAddr> = ledger.ips.iter().copied().collect();
    let left = node::leftovers(&env.host, &ips, &[]).unwrap();
    assert!(left.is_empty(), "left on the node: {left:#?}");
    let rules = node::ruleset(&env.host).unwrap();
    assert!(
        !rules
            .lines()
            .any(|l| l.contains("CNI-DN-") || l.contains("elements = {")),
        "per-pod netfilter state left:\n{rules}"
    );
    store.assert_integrity();
    let (ok, text) = calicoctl(&env.host, &store.calicoctl_env(), &["ipam", "check"]);
    assert!(ok, "calicoctl ipam check: {text}");
}

#[test]
fn sigkill_during_parallel_add_del_leaves_a_consistent_node() {
    let started = Instant::now();
    let env = TestEnv::calico_node("crash-local").unwrap();
    let db = env.tmp().join("calico.db");
    chaos(&env, "crash-local", &Store::Local(db), CHAOS);
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "took {:?}",
        started.elapsed()
    );
}

/// The same on a 3-member etcd cluster (calico also writes WorkloadEndpoints there).
#[test]
fn sigkill_during_parallel_add_del_on_etcd_leaves_a_consistent_node() {
    let started = Instant::now();
    let env = TestEnv::calico_node("crash-etcd").unwrap();
    let store = Store::Etcd(Box::new(HostEtcd::start(&env.host)));
    let (ok, text) = calicoctl(
        &env.host,
        &store.calicoctl_env(),
        &["datastore", "init", "--ipv4-pool=10.244.0.0/16"],
    );
    assert!(ok, "datastore init: {text}");
    chaos(&env, "crash-etcd", &store, CHAOS_ETCD);
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "took {:?}",
        started.elapsed()
    );
}

/// A tmpfs mounted for one test, unmounted (lazily, so a busy file cannot keep it) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("mount");
        assert!(st.success(), "mount tmpfs on {}", at.display());
        Tmpfs(at.to_path_buf())
    }

    fn remount(&self, opts: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .expect("mount");
        assert!(st.success(), "remount {opts}");
    }

    /// Writes zeros until the filesystem is full.
    fn fill(&self) {
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=4k"])
            .arg(format!("of={}", self.0.join("filler").display()))
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The chain's config with the store on `store_dir` and logs/locks elsewhere.
fn conflist_on(store_dir: &Path, other: &Path) -> Value {
    let mut c = conflist(other);
    c["plugins"][0]["datastore_path"] = json!(store_dir.join("calico.db"));
    c
}

/// After a refused ADD: no link, rule, qdisc or allocation of the pod, and a sane store.
fn assert_nothing_partial(env: &TestEnv, db: &Path) {
    let left = node::leftovers(&env.host, &[], &[]).unwrap();
    assert!(left.is_empty(), "left on the node: {left:#?}");
    if db.exists() {
        assert_eq!(
            ipam_state::calico_local_handles(db).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(sqlite(db, "PRAGMA integrity_check"), "ok");
    }
}

#[test]
fn local_store_on_a_full_disk_fails_cleanly() {
    let env = TestEnv::calico_node("crash-full").unwrap();
    let other = env.tmp().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let fs = Tmpfs::mount(&env.tmp().join("store"), "1M");
    let db = fs.0.join("calico.db");
    let conf = conflist_on(&fs.0, &other);
    let mut chain = env.chain(&conf).unwrap();
    chain.set_capability_args(caps(21000));
    // A store in use (a pod added and removed), then the disk fills up.
    let ns = env.container("full0").unwrap();
    let first = Attachment::new("full-0", &ns);
    chain.add(&first).unwrap();
    chain.del(&first).unwrap();
    fs.fill();
    let mut refused = None;
    for i in 1..=20 {
        let ns = env.container(&format!("full{i}")).unwrap();
        let att = Attachment::new(&format!("full-{i}"), &ns);
        match chain.add(&att) {
            Ok(_) => chain.del(&att).unwrap(),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("an ADD on a full disk must fail");
    eprintln!("full disk: code {:?}: {}", e.code(), e.msg());
    assert_eq!(e.code(), Some(5), "{e}");
    assert!(e.msg().contains("full"), "{}", e.msg());
    assert_nothing_partial(&env, &db);
}

#[test]
fn local_store_on_a_read_only_filesystem_fails_cleanly() {
    let env = TestEnv::calico_node("crash-ro").unwrap();
    let other = env.tmp().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let fs = Tmpfs::mount(&env.tmp().join("store"), "8M");
    let db = fs.0.join("calico.db");
    let conf = conflist_on(&fs.0, &other);
    let mut chain = env.chain(&conf).unwrap();
    chain.set_capability_args(caps(21001));
    let ns = env.container("ro0").unwrap();
    let first = Attachment::new("ro-0", &ns);
    chain.add(&first).unwrap();
    chain.del(&first).unwrap();
    fs.remount("ro");
    let ns = env.container("ro1").unwrap();
    let e = chain.add(&Attachment::new("ro-1", &ns)).unwrap_err();
    eprintln!("read-only: code {:?}: {}", e.code(), e.msg());
    assert_eq!(e.code(), Some(5), "{e}");
    assert!(e.msg().contains("read-only"), "{}", e.msg());
    assert_nothing_partial(&env, &db);
    fs.remount("rw");
}
