//! Failure test (issue 4): a 3-member real etcd cluster loses its leader (SIGKILL) during a
//! burst of parallel `calico-ipam` ADDs from several simulated nodes.
//!
//! Expected: every ADD either succeeds with an address no other ADD got, or fails with CNI
//! code 11 ("try again later") — never another error, never a duplicate; afterwards the
//! datastore is consistent (`calicoctl ipam check` exits 0, talking to the same endpoint list
//! with one member dead), every successful address is recorded under its container's handle,
//! and DEL of every container (what a runtime does after success and after failure alike)
//! leaves no allocation behind.
//!
//! No network namespaces are needed: calico-ipam only talks to etcd, which listens on the
//! root namespace's loopback. Needs Debian `etcd-server` + `etcd-client`, and the binaries
//! built first (`cargo build --bins`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipam_store_etcd::test_cluster::EtcdCluster;
use serde_json::{json, Value};

/// Parallel ADD processes in the burst.
const PROCS: usize = 30;
/// Simulated nodes (each with its own host lock, so nodes really run concurrently).
const NODES: usize = 3;
/// Limit for one plugin/calicoctl run; a hang fails the test instead of hanging it.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);
const NETWORK: &str = "failover-net";
const POOL: &str = "10.50.0.0/16";

struct Run {
    /// When the process exited.
    ended: Instant,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn read_pipe(p: Option<impl Read>) -> String {
    let mut s = String::new();
    if let Some(mut p) = p {
        let _ = p.read_to_string(&mut s);
    }
    s
}

/// Wait for `child` at most [`RUN_TIMEOUT`] (then SIGKILL and panic).
fn finish(mut child: Child, what: &str) -> Run {
    let deadline = Instant::now() + RUN_TIMEOUT;
    let (out, err) = (child.stdout.take(), child.stderr.take());
    // Drain the pipes concurrently so a chatty child cannot block on a full pipe.
    let out = std::thread::spawn(move || read_pipe(out));
    let err = std::thread::spawn(move || read_pipe(err));
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not finish within {RUN_TIMEOUT:?}");
            }
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    };
    Run {
        ended: Instant::now(),
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

fn spawn(bin: &Path, args: &[&str], env: &[(&str, String)], stdin: &[u8]) -> Child {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    if let Some(mut i) = child.stdin.take() {
        // A process may exit without reading stdin; EPIPE is not a failure here.
        let _ = i.write_all(stdin);
    }
    child
}

fn binary(name: &str) -> PathBuf {
    netns_tests::bins::binary(name)
        .unwrap_or_else(|e| panic!("{e} (run `cargo build --bins` first)"))
}

struct Cluster {
    etcd: EtcdCluster,
    tmp: tempfile::TempDir,
    ipam: PathBuf,
    ctl: PathBuf,
    /// The namespace every invocation names as CNI_NETNS: plugins refuse one that does not
    /// exist, and calico-ipam never enters it.
    ctr: netns_tests::Netns,
}

impl Cluster {
    /// Three etcd members, initialised with `calicoctl datastore init` and the test pool.
    fn start() -> Cluster {
        let c = Cluster {
            etcd: EtcdCluster::start(3)
                .expect("start 3 etcd members (apt-get install etcd-server)"),
            tmp: tempfile::tempdir().unwrap(),
            ipam: binary("calico-ipam"),
            ctl: binary("calicoctl"),
            ctr: netns_tests::Netns::new("failover-ctr").expect("container namespace"),
        };
        let init = c.calicoctl(&["datastore", "init", &format!("--ipv4-pool={POOL}")]);
        assert_eq!(init.code, Some(0), "datastore init: {init:?}");
        c
    }

    /// The log tails of the members still running, for failure messages.
    fn survivor_logs(&self, victim: usize) -> String {
        (0..3)
            .filter(|m| *m != victim)
            .map(|m| format!("--- etcd member {m}\n{}", self.etcd.log_tail(m)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn calicoctl(&self, args: &[&str]) -> Run {
        let env = [
            ("DATASTORE_TYPE", "etcdv3".to_string()),
            ("ETCD_ENDPOINTS", self.etcd.endpoints_csv()),
        ];
        finish(
            spawn(&self.ctl, args, &env, b""),
            &format!("calicoctl {args:?}"),
        )
    }

    fn netconf(&self, node: usize) -> Vec<u8> {
        json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "type": "calico",
            "datastore_type": "etcdv3",
            "etcd_endpoints": self.etcd.endpoints_csv(),
            "nodename": format!("node-{node}"),
            "ipam_lock_file": self.tmp.path().join(format!("node-{node}.lock")),
            "log_level": "debug",
            "ipam": {"type": "calico-ipam"}
        })
        .to_string()
        .into_bytes()
    }

    /// Start one calico-ipam `command` for container `i` (node `i % NODES`).
    fn plugin(&self, command: &str, i: usize) -> Child {
        let env = [
            ("CNI_COMMAND", command.to_string()),
            ("CNI_CONTAINERID", container(i)),
            ("CNI_NETNS", self.ctr.path().display().to_string()),
            ("CNI_IFNAME", "eth0".to_string()),
            (
                "CNI_PATH",
                self.ipam.parent().unwrap().display().to_string(),
            ),
        ];
        spawn(&self.ipam, &[], &env, &self.netconf(i % NODES))
    }
}

fn container(i: usize) -> String {
    format!("failover-ctr-{i:02}")
}

/// Index of the current raft leader, asked with stock etcdctl. Every member must answer
/// (a member already gone would make the kill leave no quorum and prove nothing); an
/// election in progress is waited out for up to 5 s.
fn leader(etcd: &EtcdCluster) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = Command::new("etcdctl")
            .args([
                "--endpoints",
                &etcd.endpoints_csv(),
                "endpoint",
                "status",
                "-w",
                "json",
            ])
            .env("ETCDCTL_API", "3")
            .output()
            .expect("run etcdctl (apt-get install etcd-client)");
        let eps = serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null);
        let eps = eps.as_array().map(Vec::as_slice).unwrap_or_default();
        let eps_list = etcd.endpoints();
        let leader = eps
            .iter()
            .find(|e| {
                let s = &e["Status"];
                s["header"]["member_id"].as_u64().is_some()
                    && s["header"]["member_id"] == s["leader"]
            })
            .and_then(|e| e["Endpoint"].as_str())
            .and_then(|ep| eps_list.iter().position(|x| x == ep));
        match leader {
            Some(i) if out.status.success() && eps.len() == eps_list.len() => return i,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => panic!(
                "no leader among all {} members: {}{}",
                eps_list.len(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}

/// The address of a successful calico-ipam ADD result.
fn result_ip(r: &Run) -> IpAddr {
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    let addr = v["ips"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no ips[0].address: {r:?}"));
    let ip = addr.split('/').next().unwrap_or_default();
    ip.parse()
        .unwrap_or_else(|e| panic!("bad address {addr}: {e}"))
}

fn error_code(r: &Run) -> Option<u64> {
    serde_json::from_str::<Value>(&r.stdout)
        .ok()
        .and_then(|v| v["code"].as_u64())
}

#[test]
fn adds_during_etcd_leader_loss_succeed_uniquely_or_ask_to_retry() {
    let mut c = Cluster::start();

    // The burst: half the ADDs start, the leader dies while they run, the rest start
    // against the degraded (2 of 3) cluster.
    let victim = leader(&c.etcd);
    for m in 0..3 {
        assert!(c.etcd.is_running(m), "member {m} died before the burst");
    }
    let mut children = Vec::new();
    let mut killed_at = Instant::now();
    for i in 0..PROCS {
        if i == PROCS / 2 {
            std::thread::sleep(Duration::from_millis(150));
            c.etcd.kill_member(victim).expect("kill leader");
            killed_at = Instant::now();
        }
        children.push((i, c.plugin("ADD", i)));
    }
    assert!(!c.etcd.is_running(victim));
    let runs: Vec<(usize, Run)> = std::thread::scope(|s| {
        let hs: Vec<_> = children
            .into_iter()
            .map(|(i, ch)| {
                (
                    i,
                    s.spawn(move || finish(ch, &format!("ADD {}", container(i)))),
                )
            })
            .collect();
        hs.into_iter()
            .map(|(i, h)| (i, h.join().expect("waiter thread")))
            .collect()
    });

    let mut got: BTreeMap<IpAddr, usize> = BTreeMap::new();
    let mut retry_later = Vec::new();
    let pool: ipnetwork::IpNetwork = POOL.parse().unwrap();
    for (i, r) in &runs {
        if r.code == Some(0) {
            let ip = result_ip(r);
            assert!(pool.contains(ip), "ADD {i} got {ip} outside {POOL}: {r:?}");
            if let Some(other) = got.insert(ip, *i) {
                panic!("{ip} handed out twice: to ADD {other} and ADD {i}");
            }
        } else {
            assert_eq!(
                error_code(r),
                Some(11),
                "ADD {i} failed with something other than code 11: {r:?}"
            );
            retry_later.push(*i);
        }
    }
    // The kill must hit ADDs in flight, or this test proves nothing about failover.
    let in_flight = runs[..PROCS / 2]
        .iter()
        .filter(|(_, r)| r.ended > killed_at)
        .count();
    eprintln!(
        "burst: {} succeeded, {} failed with code 11, {in_flight} in flight when the leader \
         (member {victim}) was killed",
        got.len(),
        retry_later.len()
    );
    assert!(in_flight > 0, "every early ADD finished before the kill");
    assert!(
        !got.is_empty(),
        "no ADD succeeded with 2 of 3 members alive: {:?}",
        runs.first()
    );

    // Consistent right after the burst, read through the same endpoint list (one dead).
    let check = c.calicoctl(&["ipam", "check"]);
    assert_eq!(
        check.code,
        Some(0),
        "ipam check after the burst: {check:?}\n{}",
        c.survivor_logs(victim)
    );
    assert!(
        check
            .stdout
            .contains(&format!("IPAM blocks record {} allocations.", got.len())),
        "{check:?}"
    );
    for (ip, i) in &got {
        let show = c.calicoctl(&["ipam", "show", "--ip", &ip.to_string()]);
        assert!(
            show.stdout
                .contains(&format!("Handle: {NETWORK}.{}", container(*i))),
            "{ip} not recorded under ADD {i}'s handle: {show:?}"
        );
    }

    // The runtime DELs every container (also the failed ones); nothing may remain.
    let dels: Vec<(usize, Child)> = (0..PROCS).map(|i| (i, c.plugin("DEL", i))).collect();
    for (i, ch) in dels {
        let r = finish(ch, &format!("DEL {}", container(i)));
        assert_eq!(r.code, Some(0), "DEL {i}: {r:?}");
    }
    let check = c.calicoctl(&["ipam", "check"]);
    assert_eq!(check.code, Some(0), "ipam check after DELs: {check:?}");
    assert!(
        check.stdout.contains("IPAM blocks record 0 allocations."),
        "{check:?}"
    );
}

#[test]
fn adds_without_quorum_fail_with_code_11() {
    let mut c = Cluster::start();
    // 1 of 3 left: no quorum, nothing can be read or written.
    c.etcd.kill_member(0).unwrap();
    c.etcd.kill_member(1).unwrap();
    let children: Vec<(usize, Child)> = (0..NODES).map(|i| (i, c.plugin("ADD", i))).collect();
    for (i, ch) in children {
        let r = finish(ch, &format!("ADD {}", container(i)));
        assert_ne!(r.code, Some(0), "ADD {i} succeeded without quorum: {r:?}");
        assert_eq!(error_code(&r), Some(11), "ADD {i}: {r:?}");
    }
    // calicoctl says so too, on stderr, with a non-zero exit.
    let check = c.calicoctl(&["ipam", "check"]);
    assert_eq!(check.code, Some(1), "{check:?}");
    assert!(check.stderr.contains("unavailable"), "{check:?}");
}
