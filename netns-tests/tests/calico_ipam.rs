//! `calico` with `calico-ipam` (Calico's block IPAM) on the embedded local store and on a real
//! etcd: pods wired and reachable, CHECK, DEL releasing what ADD took (asserted by reading the
//! datastore from outside: `sqlite3` for the local store, `etcdctl` for etcd), and bursts of
//! parallel `calico-ipam` processes from two simulated nodes, exec'd like a runtime would.
//! Needs the built binaries (`cargo build --bins`), `sqlite3`, `etcd` and `etcdctl`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use netns_tests::{bins, traffic, Attachment, Netns, TestEnv};
use serde_json::{json, Value};

const NETWORK: &str = "k8s-pod-network";
const V4_POOL: &str = "10.244.0.0/16";
const V6_POOL: &str = "fd00:10:244::/48";

/// The calico plugin object with calico-ipam on the local store under `dir`.
fn calico_local(dir: &Path, node: &str) -> Value {
    json!({
        "type": "calico",
        "datastore_type": "local",
        "datastore_path": dir.join("ipam.db"),
        "nodename": node,
        "mtu": 1440,
        "log_file_path": dir.join("cni.log"),
        "ipam_lock_file": dir.join("ipam.lock"),
        "ipam": {
            "type": "calico-ipam",
            "assign_ipv6": "true",
            "default_ipv4_pool": V4_POOL,
            "default_ipv6_pool": V6_POOL
        }
    })
}

fn conflist(plugin: Value) -> Value {
    json!({"cniVersion": "1.0.0", "name": NETWORK, "plugins": [plugin]})
}

/// calico-ipam's own stdin (what `calico` hands it): the plugin object as a single config.
fn ipam_stdin(plugin: &Value) -> Vec<u8> {
    let mut conf = plugin.clone();
    conf["cniVersion"] = json!("1.0.0");
    conf["name"] = json!(NETWORK);
    conf.to_string().into_bytes()
}

fn result_ips(result: &Value) -> Vec<IpAddr> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["address"].as_str())
        .map(|a| a.split('/').next().unwrap().parse().unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Reading a datastore from outside.

/// `(key, JSON value)` rows under a key prefix.
trait Dump {
    fn dump(&self, prefix: &str) -> Vec<(String, Value)>;

    /// Handle ids present.
    fn handles(&self) -> BTreeSet<String> {
        let p = "/calico/ipam/v2/handle/";
        self.dump(p)
            .into_iter()
            .map(|(k, _)| k.trim_start_matches(p).to_string())
            .collect()
    }

    /// Every allocated address with its block's affinity and the allocation's attributes.
    fn allocations(&self) -> BTreeMap<IpAddr, Alloc> {
        let mut out = BTreeMap::new();
        for (key, block) in self.dump("/calico/ipam/v2/assignment/") {
            let cidr: IpNetwork = block["cidr"].as_str().unwrap().parse().unwrap();
            let affinity = block["affinity"].as_str().map(str::to_string);
            let allocations = block["allocations"].as_array().unwrap();
            for (ordinal, attr) in allocations.iter().enumerate() {
                let Some(idx) = attr.as_u64() else { continue };
                let a = &block["attributes"][idx as usize];
                let ip = nth(cidr, ordinal);
                let prev = out.insert(
                    ip,
                    Alloc {
                        affinity: affinity.clone(),
                        handle: a["handle_id"].as_str().unwrap_or_default().to_string(),
                        attrs: a["secondary"].clone(),
                    },
                );
                assert!(prev.is_none(), "{ip} allocated twice ({key})");
            }
        }
        out
    }

    /// Affinity keys (`<node>/<family>/block/<cidr>`).
    fn affinities(&self) -> Vec<String> {
        let p = "/calico/ipam/v2/host/";
        self.dump(p)
            .into_iter()
            .map(|(k, _)| k.trim_start_matches(p).to_string())
            .collect()
    }
}

#[derive(Debug, Clone)]
struct Alloc {
    affinity: Option<String>,
    handle: String,
    attrs: Value,
}

fn nth(cidr: IpNetwork, n: usize) -> IpAddr {
    match cidr.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + n as u32).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + n as u128).into()),
    }
}

/// The local store, read with the `sqlite3` CLI (independent of the plugin's code).
struct LocalDb(PathBuf);

impl Dump for LocalDb {
    fn dump(&self, prefix: &str) -> Vec<(String, Value)> {
        if !self.0.exists() {
            return Vec::new();
        }
        let out = Command::new("sqlite3")
            .args(["-readonly", "-json"])
            .arg(&self.0)
            .arg(format!(
                "SELECT key, value FROM kv WHERE key LIKE '{prefix}%' ORDER BY key"
            ))
            .output()
            .expect("sqlite3 (Debian package sqlite3)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Vec::new();
        }
        let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        rows.into_iter()
            .map(|r| {
                let v = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
                (r["key"].as_str().unwrap().to_string(), v)
            })
            .collect()
    }
}

/// A throw-away one-member etcd on loopback inside the test's host namespace; killed and its
/// data removed on drop (also when the test panics).
struct Etcd<'a> {
    host: &'a Netns,
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

fn free_port(host: &Netns) -> u16 {
    host.run(|| {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    })
    .unwrap()
}

impl<'a> Etcd<'a> {
    fn start(host: &'a Netns) -> Etcd<'a> {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(host), free_port(host));
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = host
            .spawn(
                Command::new("etcd")
                    .args(["--name", "m0", "--data-dir"])
                    .arg(dir.path().join("data"))
                    .args(["--listen-client-urls", &endpoint])
                    .args(["--advertise-client-urls", &endpoint])
                    .args(["--listen-peer-urls", &peer_url])
                    .args(["--initial-advertise-peer-urls", &peer_url])
                    .args(["--initial-cluster", &format!("m0={peer_url}")])
                    .stdout(Stdio::null())
                    .stderr(log),
            )
            .unwrap();
        let etcd = Etcd {
            host,
            child,
            endpoint,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !etcd.healthy() {
            assert!(Instant::now() < deadline, "etcd did not become healthy");
            std::thread::sleep(Duration::from_millis(100));
        }
        etcd
    }

    fn etcdctl(&self, args: &[&str]) -> String {
        let mut all = vec!["--endpoints", &self.endpoint];
        all.extend_from_slice(args);
        self.host.exec("etcdctl", &all).unwrap()
    }

    fn healthy(&self) -> bool {
        let addr = self.endpoint.trim_start_matches("http://").to_string();
        self.host
            .run(|| TcpStream::connect(addr).is_ok())
            .unwrap_or(false)
            && self
                .host
                .output(
                    "etcdctl",
                    &["--endpoints", &self.endpoint, "endpoint", "health"],
                )
                .is_ok_and(|o| o.success())
    }

    /// What calico-node (or `calicoctl datastore init`) writes once the datastore is usable.
    fn put_cluster_information(&self) {
        let ci = json!({"kind": "ClusterInformation", "apiVersion": "projectcalico.org/v3",
            "metadata": {"name": "default"},
            "spec": {"datastoreReady": true, "clusterGUID": "0123456789abcdef"}});
        self.etcdctl(&[
            "put",
            "/calico/resources/v3/projectcalico.org/clusterinformations/default",
            &ci.to_string(),
        ]);
    }

    /// What `calicoctl datastore init` (or calico-node) would have written: a default pool.
    fn put_pool(&self, name: &str, cidr: &str, block_size: u8) {
        let pool = json!({
            "kind": "IPPool", "apiVersion": "projectcalico.org/v3",
            "metadata": {"name": name},
            "spec": {"cidr": cidr, "blockSize": block_size, "ipipMode": "Never", "vxlanMode": "Never",
                     "natOutgoing": true, "nodeSelector": "all()", "allowedUses": ["Workload", "Tunnel"]}
        });
        self.etcdctl(&[
            "put",
            &format!("/calico/resources/v3/projectcalico.org/ippools/{name}"),
            &pool.to_string(),
        ]);
    }
}

impl Dump for Etcd<'_> {
    fn dump(&self, prefix: &str) -> Vec<(String, Value)> {
        // Plain output alternates key and value lines; every value is one line of JSON.
        let out = self.etcdctl(&["get", "--prefix", prefix]);
        let lines: Vec<&str> = out.lines().collect();
        lines
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].to_string(), serde_json::from_str(c[1]).unwrap()))
            .collect()
    }
}

impl Drop for Etcd<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Running calico-ipam directly, like a runtime (or the calico plugin) does.

struct Invocation<'a> {
    command: &'a str,
    container_id: String,
    args: String,
    stdin: Vec<u8>,
}

/// Starts one calico-ipam process in `host` (stdin written, not waited for).
fn spawn_ipam(host: &Netns, netns: &Path, inv: &Invocation) -> Child {
    let bin = bins::binary("calico-ipam").unwrap();
    let mut child = host
        .spawn(
            Command::new(bin)
                .env("CNI_COMMAND", inv.command)
                .env("CNI_CONTAINERID", &inv.container_id)
                .env("CNI_NETNS", netns)
                .env("CNI_IFNAME", "eth0")
                .env("CNI_PATH", "/nonexistent")
                .env("CNI_ARGS", &inv.args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .unwrap();
    child.stdin.take().unwrap().write_all(&inv.stdin).unwrap();
    child
}

fn run_ipam(host: &Netns, netns: &Path, inv: &Invocation) -> Output {
    spawn_ipam(host, netns, inv).wait_with_output().unwrap()
}

fn stdout_json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "bad stdout ({e}): {} / stderr {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// 2 nodes × 25 parallel ADD processes, then 50 parallel DELs, against the datastore that
/// `plugin_for(node)` selects; `store` reads that datastore from outside.
fn burst_two_nodes(env: &TestEnv, plugin_for: impl Fn(&str) -> Value, store: &dyn Dump) {
    const PER_NODE: usize = 25;
    let netns = env.container("burst").unwrap();
    let nodes = ["node-a", "node-b"];
    let invs: Vec<(&str, Invocation)> = nodes
        .iter()
        .flat_map(|node| {
            let stdin = ipam_stdin(&plugin_for(node));
            (0..PER_NODE).map(move |i| {
                (
                    *node,
                    Invocation {
                        command: "ADD",
                        container_id: format!("{node}-ctr-{i}"),
                        args: format!("K8S_POD_NAMESPACE=burst;K8S_POD_NAME={node}-pod-{i}"),
                        stdin: stdin.clone(),
                    },
                )
            })
        })
        .collect();
    let started = Instant::now();
    let children: Vec<Child> = invs
        .iter()
        .map(|(_, inv)| spawn_ipam(&env.host, netns.path(), inv))
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    eprintln!("{} parallel ADDs took {:?}", invs.len(), started.elapsed());

    let mut got: BTreeMap<IpAddr, (&str, String)> = BTreeMap::new();
    for ((node, inv), out) in invs.iter().zip(&outputs) {
        assert!(
            out.status.success(),
            "ADD {} failed: {} {}",
            inv.container_id,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let r = stdout_json(out);
        let ips = result_ips(&r);
        assert_eq!(ips.len(), 1, "{r}");
        let prev = got.insert(ips[0], (*node, inv.container_id.clone()));
        assert!(prev.is_none(), "{} handed out twice", ips[0]);
    }
    assert_eq!(got.len(), 2 * PER_NODE, "distinct addresses");

    // The datastore agrees: each address held by its handle, in a block affine to its node.
    let allocs = store.allocations();
    assert_eq!(allocs.len(), 2 * PER_NODE, "{allocs:?}");
    for (ip, (node, cid)) in &got {
        let a = allocs
            .get(ip)
            .unwrap_or_else(|| panic!("{ip} not in the datastore"));
        assert_eq!(a.handle, format!("{NETWORK}.{cid}"));
        assert_eq!(
            a.affinity.as_deref(),
            Some(&*format!("host:{node}")),
            "{ip}"
        );
        assert_eq!(a.attrs["node"], *node);
        assert_eq!(a.attrs["namespace"], "burst");
        assert!(a.attrs["pod"].as_str().unwrap().starts_with(node));
        assert!(a.attrs["timestamp"]
            .as_str()
            .unwrap()
            .ends_with("+0000 UTC"));
    }
    assert_eq!(store.handles().len(), 2 * PER_NODE);
    for aff in store.affinities() {
        assert!(
            aff.starts_with("node-a/") || aff.starts_with("node-b/"),
            "{aff}"
        );
    }

    // All DELs at once: nothing left allocated, no handle left.
    let children: Vec<Child> = invs
        .iter()
        .map(|(_, inv)| {
            let mut del = clone_inv(inv);
            del.command = "DEL";
            spawn_ipam(&env.host, netns.path(), &del)
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "DEL failed: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(store.allocations().is_empty(), "{:?}", store.allocations());
    assert!(store.handles().is_empty(), "{:?}", store.handles());
}

fn clone_inv<'a>(inv: &Invocation<'a>) -> Invocation<'a> {
    Invocation {
        command: inv.command,
        container_id: inv.container_id.clone(),
        args: inv.args.clone(),
        stdin: inv.stdin.clone(),
    }
}

// ---------------------------------------------------------------------------------------
// Tests.

#[test]
fn two_dual_stack_pods_on_calico_ipam_reach_each_other_and_del_releases() {
    let env = TestEnv::calico_node("cipam-2pods").unwrap();
    let dir = env.tmp();
    let db = LocalDb(dir.join("ipam.db"));
    let chain = env.chain(&conflist(calico_local(dir, "node-1"))).unwrap();
    let p1 = env.container("p1").unwrap();
    let p2 = env.container("p2").unwrap();
    let a1 = Attachment::new("ctr-one", &p1)
        .arg("K8S_POD_NAMESPACE", "default")
        .arg("K8S_POD_NAME", "pod-one");
    let a2 = Attachment::new("ctr-two", &p2);
    let r1 = chain.add(&a1).unwrap();
    let r2 = chain.add(&a2).unwrap();

    let (ips1, ips2) = (result_ips(&r1), result_ips(&r2));
    assert_eq!(ips1.len(), 2, "{r1}");
    assert_eq!(ips2.len(), 2, "{r2}");
    let pool4: IpNetwork = V4_POOL.parse().unwrap();
    let pool6: IpNetwork = V6_POOL.parse().unwrap();
    for ip in ips1.iter().chain(&ips2) {
        assert!(
            pool4.contains(*ip) || pool6.contains(*ip),
            "{ip} outside the pools"
        );
    }
    // Container side: full-length prefixes (the IPAM's block mask is not used on the link).
    let addrs = p1.addrs("eth0").unwrap();
    for ip in &ips1 {
        let len = if ip.is_ipv4() { 32 } else { 128 };
        assert!(
            addrs.contains(&format!("{ip}/{len}").parse().unwrap()),
            "{addrs:?}"
        );
    }
    // Both pods' addresses come from this node's blocks (one /26 and one /122).
    let allocs = db.allocations();
    assert_eq!(allocs.len(), 4, "{allocs:?}");
    for a in allocs.values() {
        assert_eq!(a.affinity.as_deref(), Some("host:node-1"));
        assert_eq!(a.attrs["node"], "node-1");
    }
    let one = &allocs[&ips1[0]];
    assert_eq!(one.handle, "k8s-pod-network.ctr-one");
    assert_eq!(one.attrs["pod"], "pod-one");
    assert_eq!(one.attrs["namespace"], "default");
    assert!(
        allocs[&ips2[0]].attrs.get("pod").is_none(),
        "plain mode has no pod attribute"
    );
    assert_eq!(
        db.affinities().len(),
        2,
        "one v4 and one v6 block: {:?}",
        db.affinities()
    );

    // Packets both ways, both families.
    assert!(
        traffic::ping_eventually(&p1, ips2[0], 3).unwrap(),
        "p1 -> p2 {}",
        ips2[0]
    );
    assert!(
        traffic::ping_eventually(&p2, ips1[0], 3).unwrap(),
        "p2 -> p1 {}",
        ips1[0]
    );
    assert!(
        traffic::ping_eventually(&p1, ips2[1], 3).unwrap(),
        "p1 -> p2 {}",
        ips2[1]
    );

    chain.check(&a1).unwrap();
    chain.check(&a2).unwrap();

    chain.del(&a1).unwrap();
    assert_eq!(
        db.handles(),
        BTreeSet::from(["k8s-pod-network.ctr-two".to_string()])
    );
    assert_eq!(db.allocations().len(), 2);
    // The remaining pod keeps its address; the deleted one's is gone from the network.
    assert!(p2.addrs("eth0").unwrap().iter().any(|a| a.ip() == ips2[0]));
    assert!(
        !traffic::ping(&p2, ips1[0]).unwrap(),
        "p1's address still answers"
    );
    // Repeated DEL, DEL without netns: fine, nothing else released.
    chain.del(&a1).unwrap();
    chain.del(&Attachment::without_netns("ctr-one")).unwrap();
    assert_eq!(db.allocations().len(), 2);
    chain.del(&Attachment::without_netns("ctr-two")).unwrap();
    assert!(db.handles().is_empty(), "{:?}", db.handles());
    assert!(db.allocations().is_empty(), "{:?}", db.allocations());
    // Calico keeps the empty blocks affine to the node for the next pods.
    assert_eq!(db.affinities().len(), 2);
}

#[test]
fn ipam_result_check_gc_and_specific_ip() {
    let env = TestEnv::calico_node("cipam-verbs").unwrap();
    let dir = env.tmp();
    let db = LocalDb(dir.join("ipam.db"));
    let plugin = calico_local(dir, "node-1");
    let stdin = ipam_stdin(&plugin);
    let netns = env.container("c").unwrap();
    let inv = |command: &'static str, cid: &str, args: &str| Invocation {
        command,
        container_id: cid.to_string(),
        args: args.to_string(),
        stdin: stdin.clone(),
    };
    // Calico's calico-ipam result: block-masked addresses, one route per address.
    let out = run_ipam(&env.host, netns.path(), &inv("ADD", "c1", ""));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let r = stdout_json(&out);
    let a4 = r["ips"][0]["address"].as_str().unwrap();
    let a6 = r["ips"][1]["address"].as_str().unwrap();
    assert!(a4.ends_with("/26"), "{r}");
    assert!(a6.ends_with("/122"), "{r}");
    assert_eq!(r["routes"], json!([{"dst": a4}, {"dst": a6}]));
    assert!(r.get("interfaces").is_none(), "{r}");

    // IP= in CNI_ARGS: exactly that address, /32; taking it twice fails without side effects.
    let out = run_ipam(&env.host, netns.path(), &inv("ADD", "c2", "IP=10.244.77.7"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        stdout_json(&out)["ips"],
        json!([{"address": "10.244.77.7/32"}])
    );
    let out = run_ipam(&env.host, netns.path(), &inv("ADD", "c3", "IP=10.244.77.7"));
    assert!(!out.status.success());
    let e = stdout_json(&out);
    assert!(
        e["msg"].as_str().unwrap().contains("already assigned"),
        "{e}"
    );
    assert!(!db.handles().contains("k8s-pod-network.c3"));

    // CHECK: allocated handle OK; prevResult address not held → error; unknown handle → error.
    assert!(run_ipam(&env.host, netns.path(), &inv("CHECK", "c1", ""))
        .status
        .success());
    let mut with_prev: Value = serde_json::from_slice(&stdin).unwrap();
    with_prev["prevResult"] =
        json!({"cniVersion": "1.0.0", "ips": [{"address": "10.244.99.1/32"}]});
    let mut bad = inv("CHECK", "c1", "");
    bad.stdin = with_prev.to_string().into_bytes();
    assert!(!run_ipam(&env.host, netns.path(), &bad).status.success());
    let out = run_ipam(&env.host, netns.path(), &inv("CHECK", "nope", ""));
    assert!(!out.status.success());
    assert!(stdout_json(&out)["msg"]
        .as_str()
        .unwrap()
        .contains("k8s-pod-network.nope"));

    // GC (CNI 1.1): c1 still valid, c2 not → only c2's address goes.
    let mut gc_conf: Value = serde_json::from_slice(&stdin).unwrap();
    gc_conf["cniVersion"] = json!("1.1.0");
    gc_conf["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    let mut gc = inv("GC", "", "");
    gc.stdin = gc_conf.to_string().into_bytes();
    let out = run_ipam(&env.host, netns.path(), &gc);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        db.handles(),
        BTreeSet::from(["k8s-pod-network.c1".to_string()])
    );
    assert!(!db
        .allocations()
        .contains_key(&"10.244.77.7".parse().unwrap()));

    // STATUS (CNI 1.1): the local store is usable.
    let mut st = inv("STATUS", "", "");
    st.stdin = gc.stdin.clone();
    assert!(run_ipam(&env.host, netns.path(), &st).status.success());

    // IPv4 off, no pools of a family: a clear error, nothing allocated.
    let mut v6only = plugin.clone();
    v6only["ipam"]["assign_ipv4"] = json!("false");
    let mut i6 = inv("ADD", "c6", "");
    i6.stdin = ipam_stdin(&v6only);
    let r = stdout_json(&run_ipam(&env.host, netns.path(), &i6));
    assert_eq!(r["ips"].as_array().unwrap().len(), 1, "{r}");
    assert!(r["ips"][0]["address"]
        .as_str()
        .unwrap()
        .starts_with("fd00:10:244:"));
}

#[test]
fn parallel_adds_from_two_nodes_on_the_local_store() {
    let env = TestEnv::calico_node("cipam-burst-local").unwrap();
    let dir = env.tmp().to_path_buf();
    let db = LocalDb(dir.join("ipam.db"));
    burst_two_nodes(
        &env,
        |node| {
            let mut p = calico_local(&dir, node);
            p["ipam"]["assign_ipv6"] = json!("false");
            // Each simulated node has its own host lock, like separate machines.
            p["ipam_lock_file"] = json!(dir.join(format!("{node}.lock")));
            p
        },
        &db,
    );
}

fn calico_etcd(endpoint: &str, node: &str, dir: &Path) -> Value {
    json!({
        "type": "calico",
        "datastore_type": "etcdv3",
        "etcd_endpoints": endpoint,
        "nodename": node,
        "log_file_path": dir.join("cni.log"),
        "ipam_lock_file": dir.join(format!("{node}.lock")),
        "ipam": {"type": "calico-ipam"}
    })
}

#[test]
fn parallel_adds_from_two_nodes_on_etcd() {
    let env = TestEnv::calico_node("cipam-burst-etcd").unwrap();
    let etcd = Etcd::start(&env.host);
    let dir = env.tmp().to_path_buf();
    let netns = env.container("c").unwrap();

    // An empty etcd: calico-ipam refuses clearly instead of inventing pools.
    let stdin = ipam_stdin(&calico_etcd(&etcd.endpoint, "node-a", &dir));
    let inv = Invocation {
        command: "ADD",
        container_id: "first".into(),
        args: String::new(),
        stdin,
    };
    let out = run_ipam(&env.host, netns.path(), &inv);
    assert!(!out.status.success());
    let e = stdout_json(&out);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("calicoctl datastore init"),
        "{e}"
    );
    assert!(etcd.handles().is_empty());

    etcd.put_pool("default-ipv4-ippool", V4_POOL, 26);
    burst_two_nodes(&env, |node| calico_etcd(&etcd.endpoint, node, &dir), &etcd);
    // The plugin registered each node's Calico Node object (needed for pool node selectors).
    let nodes = etcd.dump("/calico/resources/v3/projectcalico.org/nodes/");
    let names: Vec<&str> = nodes
        .iter()
        .map(|(_, v)| v["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["node-a", "node-b"]);
}

#[test]
fn unreachable_datastore_is_try_again_later_and_allocates_nothing() {
    let env = TestEnv::calico_node("cipam-down").unwrap();
    let dir = env.tmp().to_path_buf();
    let netns = env.container("c").unwrap();
    let etcd = Etcd::start(&env.host);
    etcd.put_pool("default-ipv4-ippool", V4_POOL, 26);
    let endpoint = etcd.endpoint.clone();
    let stdin = ipam_stdin(&calico_etcd(&endpoint, "node-a", &dir));
    let inv = |command: &'static str| Invocation {
        command,
        container_id: "down".into(),
        args: String::new(),
        stdin: stdin.clone(),
    };
    // Works while etcd is up…
    assert!(run_ipam(&env.host, netns.path(), &inv("ADD"))
        .status
        .success());
    assert!(run_ipam(&env.host, netns.path(), &inv("DEL"))
        .status
        .success());
    assert!(etcd.allocations().is_empty());
    // …then etcd goes away: ADD and DEL both answer code 11 (the runtime retries later).
    drop(etcd);
    for verb in ["ADD", "DEL"] {
        let started = Instant::now();
        let out = run_ipam(&env.host, netns.path(), &inv(verb));
        assert!(!out.status.success(), "{verb}");
        let e = stdout_json(&out);
        assert_eq!(e["code"], 11, "{verb}: {e}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{verb} bounded in time"
        );
    }
}

/// etcd mode: `calico` writes the pod's WorkloadEndpoint (what Felix reads) on ADD and removes
/// it on DEL; in Kubernetes mode a DEL from another sandbox leaves the endpoint alone, and a
/// repeated ADD for the pod replaces it with the same uid.
#[test]
fn etcd_mode_writes_and_removes_workload_endpoints() {
    const WEPS: &str = "/calico/resources/v3/projectcalico.org/workloadendpoints/";
    let env = TestEnv::calico_node("cipam-wep").unwrap();
    let etcd = Etcd::start(&env.host);
    etcd.put_pool("default-ipv4-ippool", V4_POOL, 26);
    let dir = env.tmp().to_path_buf();
    let mut calico = calico_etcd(&etcd.endpoint, "node-1", &dir);
    calico["nodename_file_optional"] = json!(true);
    let chain = env.chain(&conflist(calico)).unwrap();
    let p1 = env.container("p1").unwrap();
    let p2 = env.container("p2").unwrap();

    // Until the datastore is initialised, ADD is "try again later" and leaves nothing behind.
    let plain = Attachment::new("ctr-one", &p1);
    let e = chain.add(&plain).unwrap_err();
    assert_eq!(e.code(), Some(11), "{e:?}");
    assert!(etcd.handles().is_empty(), "{:?}", etcd.handles());
    assert!(env.host.link_names_with_prefix("cali").unwrap().is_empty());
    etcd.put_cluster_information();

    // A plain container: orchestrator cni, namespace default, profile = network name.
    let r1 = chain.add(&plain).unwrap();
    let ip1 = result_ips(&r1)[0];
    let weps = etcd.dump(WEPS);
    assert_eq!(weps.len(), 1, "{weps:?}");
    let (key, wep) = &weps[0];
    assert_eq!(key, &format!("{WEPS}default/node--1-cni-ctr--one-eth0"));
    assert_eq!(wep["kind"], "WorkloadEndpoint");
    assert_eq!(wep["metadata"]["name"], "node--1-cni-ctr--one-eth0");
    let spec = &wep["spec"];
    assert_eq!(spec["orchestrator"], "cni");
    assert_eq!(spec["node"], "node-1");
    assert_eq!(spec["containerID"], "ctr-one");
    assert_eq!(spec["workload"], "ctr-one");
    assert_eq!(spec["endpoint"], "eth0");
    assert_eq!(spec["ipNetworks"], json!([format!("{ip1}/32")]));
    assert_eq!(spec["profiles"], json!([NETWORK]));
    assert_eq!(spec["interfaceName"], r1["interfaces"][0]["name"]);
    assert_eq!(spec["mac"], r1["interfaces"][1]["mac"]);
    // Without a policy type the endpoint's profile (the network) is created, allowing traffic
    // from the same network.
    let profiles = etcd.dump("/calico/resources/v3/projectcalico.org/profiles/");
    assert_eq!(profiles.len(), 1, "{profiles:?}");
    assert_eq!(profiles[0].1["metadata"]["name"], NETWORK);
    assert_eq!(
        profiles[0].1["spec"]["ingress"][0]["source"]["selector"],
        format!("has({NETWORK})")
    );

    // A pod: orchestrator k8s, the pod's namespace.
    let p3 = env.container("p3").unwrap();
    let pod = |cid: &str, netns: &Netns| {
        Attachment::new(cid, netns)
            .arg("K8S_POD_NAMESPACE", "team-a")
            .arg("K8S_POD_NAME", "web-0")
    };
    chain.add(&pod("sandbox-1", &p2)).unwrap();
    let pod_key = format!("{WEPS}team-a/node--1-k8s-web--0-eth0");
    let first = etcd.dump(&pod_key);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].1["spec"]["pod"], "web-0");
    assert_eq!(first[0].1["spec"]["containerID"], "sandbox-1");
    assert_eq!(
        first[0].1["metadata"]["labels"]["projectcalico.org/namespace"],
        "team-a"
    );

    // A new sandbox for the same pod takes the endpoint over (same uid); the old sandbox's
    // late DEL leaves it and still cleans up its own interface and addresses.
    let r2 = chain.add(&pod("sandbox-2", &p3)).unwrap();
    chain.del(&pod("sandbox-1", &p2)).unwrap();
    let second = etcd.dump(&pod_key);
    assert_eq!(
        second.len(),
        1,
        "the live sandbox's endpoint survives: {second:?}"
    );
    assert_eq!(second[0].1["spec"]["containerID"], "sandbox-2");
    assert_eq!(
        second[0].1["metadata"]["uid"],
        first[0].1["metadata"]["uid"]
    );
    assert_eq!(
        second[0].1["spec"]["ipNetworks"],
        json!([format!("{}/32", result_ips(&r2)[0])])
    );
    assert!(
        p2.link("eth0").unwrap().is_none(),
        "old sandbox's interface removed"
    );
    assert_eq!(
        etcd.handles(),
        BTreeSet::from([
            "k8s-pod-network.ctr-one".to_string(),
            "k8s-pod-network.sandbox-2".to_string()
        ])
    );

    // DELs remove them; repeated DEL is fine.
    chain.del(&pod("sandbox-2", &p3)).unwrap();
    chain.del(&plain).unwrap();
    chain.del(&plain).unwrap();
    assert!(etcd.dump(WEPS).is_empty(), "{:?}", etcd.dump(WEPS));
    assert!(etcd.handles().is_empty(), "{:?}", etcd.handles());
}
