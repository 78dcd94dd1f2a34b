//! The bad-input catalogue (table in `bad_input/catalogue.rs`): every plugin binary exec'd the
//! way a runtime does, in private namespaces, with hostile environment, stdin and config
//! fields. For each case: no panic, an exit within [`CASE_LIMIT`], a CNI error with a code and
//! a message naming the field (or, for DEL, success), and a before/after snapshot of links,
//! addresses, routes, rules, qdiscs, nftables, files and datastore rows that shows nothing left.
//! Cases run on a few worker threads, each with its own host namespace and scratch dir.
//!
//! Needs the built binaries (`cargo build --bins`) and root.

#[path = "bad_input/catalogue.rs"]
mod catalogue;

use catalogue::{Case, Edit, EnvVal, Expect, Stdin, PLUGINS};
use netns_tests::exec::run_in;
use netns_tests::{bins, veth_pair, HarnessError, Netns, TestEnv};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A plugin must answer any single bad input within this (generous for a loaded 2-core box).
const CASE_LIMIT: Duration = Duration::from_secs(10);
const WORKERS: usize = 4;
const CTR_ID: &str = "bad-input-ctr";

/// One thread's private world: a host namespace, a container namespace per plugin, scratch
/// files for the placeholders, and the plugins' state under `tmp`.
struct Worker {
    env: TestEnv,
    ctrs: BTreeMap<&'static str, Netns>,
    bin_dir: PathBuf,
}

impl Worker {
    fn new(i: usize) -> Worker {
        let env = TestEnv::calico_node(&format!("badin{i}")).unwrap();
        let mut ctrs = BTreeMap::new();
        for &p in PLUGINS {
            ctrs.insert(p, env.container(&format!("badin{i}-{p}")).unwrap());
        }
        let tmp = env.tmp();
        std::fs::write(tmp.join("regular"), "").unwrap();
        std::fs::create_dir(tmp.join("dir")).unwrap();
        let fifo = std::ffi::CString::new(tmp.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        // bandwidth needs a real veth pair whose host side prevResult names.
        veth_pair(&env.host, "bwhost0", &ctrs["bandwidth"], "eth0").unwrap();
        // portmap sets route_localnet on the host interface prevResult names.
        veth_pair(&env.host, "calihost0", &ctrs["portmap"], "eth0").unwrap();
        // No IPv6 on these veths: link-local addresses and routes appear after DAD, at a
        // time of the kernel's choosing, and would show up as state changes.
        for (ns, dev) in [
            (&env.host, "bwhost0"),
            (&env.host, "calihost0"),
            (&ctrs["bandwidth"], "eth0"),
            (&ctrs["portmap"], "eth0"),
        ] {
            ns.set_sysctl(&format!("net/ipv6/conf/{dev}/disable_ipv6"), "1")
                .unwrap();
        }
        let bin_dir = bins::binary("calico")
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf();
        Worker { env, ctrs, bin_dir }
    }

    fn fill(&self, plugin: &str, s: &str) -> String {
        let tmp = self.env.tmp();
        s.replace("@FIFO@", &tmp.join("fifo").to_string_lossy())
            .replace("@REG@", &tmp.join("regular").to_string_lossy())
            .replace("@DIR@", &tmp.join("dir").to_string_lossy())
            .replace("@NOTEXIST@", &tmp.join("no/such/netns").to_string_lossy())
            .replace("@CTR@", &self.ctrs[plugin].path().to_string_lossy())
            .replace("@TMP@", &tmp.to_string_lossy())
    }

    /// A config the plugin accepts (checked by the warm-up), so a case's one edit is the
    /// reason it fails.
    fn base(&self, plugin: &str) -> Value {
        let calico = json!({
            "cniVersion": "1.0.0", "name": "badnet", "type": "calico",
            "datastore_type": "local", "datastore_path": "@TMP@/ipam.db",
            "nodename": "node-1", "mtu": 1440,
            "log_file_path": "@TMP@/calico.log", "ipam_lock_file": "@TMP@/ipam.lock",
            "ipam": {"type": "calico-ipam", "default_ipv4_pool": "10.97.0.0/16"}
        });
        let prev = |host: &str| {
            json!({"cniVersion": "1.0.0",
                "interfaces": [{"name": host}, {"name": "eth0", "sandbox": "@CTR@"}],
                "ips": [{"address": "10.96.0.2/24", "interface": 1}]})
        };
        let v = match plugin {
            "loopback" => json!({"cniVersion": "1.0.0", "name": "badnet", "type": "loopback"}),
            "host-local" => json!({"cniVersion": "1.0.0", "name": "badnet", "type": "host-local",
                "ipam": {"type": "host-local", "subnet": "10.98.0.0/24", "dataDir": "@TMP@/hl"}}),
            "calico" | "calico-ipam" => calico,
            "portmap" => json!({"cniVersion": "1.0.0", "name": "badnet", "type": "portmap",
                "log_file_path": "@TMP@/portmap.log",
                "capabilities": {"portMappings": true},
                "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
                "prevResult": prev("calihost0")}),
            "bandwidth" => json!({"cniVersion": "1.0.0", "name": "badnet", "type": "bandwidth",
                "log_file_path": "@TMP@/bandwidth.log",
                "ingressRate": 1_000_000, "ingressBurst": 100_000,
                "prevResult": prev("bwhost0")}),
            other => panic!("no base config for {other}"),
        };
        serde_json::from_str(&self.fill(plugin, &v.to_string())).unwrap()
    }

    fn stdin(&self, case: &Case) -> Vec<u8> {
        match &case.stdin {
            Stdin::Raw(b) => b.clone(),
            Stdin::Base(edits) => {
                let mut v = self.base(case.plugin);
                for e in edits {
                    apply(&mut v, e);
                }
                self.fill(case.plugin, &v.to_string()).into_bytes()
            }
        }
    }

    fn exec(
        &self,
        plugin: &str,
        command: &str,
        overrides: &[(&str, EnvVal)],
        stdin: &[u8],
    ) -> Result<netns_tests::ExecOutput, HarnessError> {
        let mut vars: BTreeMap<&str, Option<Vec<u8>>> = BTreeMap::new();
        let netns = self.ctrs[plugin].path().as_os_str().as_bytes().to_vec();
        vars.insert("CNI_COMMAND", Some(command.as_bytes().to_vec()));
        vars.insert("CNI_CONTAINERID", Some(CTR_ID.as_bytes().to_vec()));
        vars.insert("CNI_NETNS", Some(netns));
        vars.insert("CNI_IFNAME", Some(b"eth0".to_vec()));
        vars.insert(
            "CNI_PATH",
            Some(self.bin_dir.as_os_str().as_bytes().to_vec()),
        );
        for (k, v) in overrides {
            vars.insert(
                k,
                match v {
                    EnvVal::Set(s) => Some(self.fill(plugin, s).into_bytes()),
                    EnvVal::Bytes(b) => Some(b.clone()),
                    EnvVal::Unset => None,
                },
            );
        }
        let mut cmd = Command::new(self.bin_dir.join(plugin));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for (k, v) in vars {
            if let Some(v) = v {
                cmd.env(k, OsStr::from_bytes(&v));
            }
        }
        run_in(&self.env.host, &mut cmd, stdin, CASE_LIMIT)
    }

    /// Everything a plugin could leave behind, as comparable text.
    fn snapshot(&self, plugin: &str) -> String {
        const NET: &str = "ip -d -j addr show; ip -j route show table all; \
            ip -6 -j route show table all; ip -j rule; ip -6 -j rule; tc -j qdisc show; \
            tc -j filter show dev bwhost0 parent ffff: 2>/dev/null";
        let host = self
            .env
            .host
            .output("sh", &["-c", &format!("{NET}; nft list ruleset")])
            .unwrap();
        let ctr = self.ctrs[plugin].output("sh", &["-c", NET]).unwrap();
        let mut out = format!(
            "host:\n{}\ncontainer:\n{}\nfiles:\n",
            one_per_line(&host.stdout_str()),
            one_per_line(&ctr.stdout_str())
        );
        files(self.env.tmp(), self.env.tmp(), &mut out);
        if matches!(plugin, "calico" | "calico-ipam") {
            let db = self.env.tmp().join("ipam.db");
            if db.exists() {
                let rows = Command::new("sqlite3")
                    .arg("-readonly")
                    .arg(&db)
                    .arg("SELECT key, value FROM kv ORDER BY key")
                    .output()
                    .unwrap();
                out.push_str("datastore:\n");
                for row in String::from_utf8_lossy(&rows.stdout).lines() {
                    out.push_str(&datastore_row(row));
                    out.push('\n');
                }
            }
        }
        out
    }

    /// A valid ADD and DEL per plugin: proves each base config works (so the cases' errors
    /// come from their one edit) and creates the state every later invocation expects
    /// (datastore initialised, data directories, shared netfilter chains).
    fn warm_up(&self) {
        for &p in PLUGINS {
            let stdin = self.fill(p, &self.base(p).to_string()).into_bytes();
            let add = self.exec(p, "ADD", &[], &stdin).unwrap();
            assert!(
                add.success(),
                "warm-up ADD of {p} failed: {} {}",
                add.stdout_str(),
                add.stderr_str()
            );
            let del = self.exec(p, "DEL", &[], &stdin).unwrap();
            assert!(del.success(), "warm-up DEL of {p}: {}", del.stdout_str());
        }
        // bandwidth's DEL leaves the host veth's root qdisc to the main plugin, which deletes
        // the veth; ours stays, so remove the qdisc by hand.
        let _ = self
            .env
            .host
            .output("tc", &["qdisc", "del", "dev", "bwhost0", "root"]);
    }
}

/// Tool output with each element of a JSON array on its own line, so a difference names the
/// link, address, route or rule that changed.
fn one_per_line(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Array(items)) => {
                for i in items {
                    out.push_str(&i.to_string());
                    out.push('\n');
                }
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// A datastore row as compared: blocks by what they hold (addresses in use and the set of free
/// ordinals), since a rolled-back allocation legitimately bumps sequence numbers and reorders
/// the free list; every other row as stored.
fn datastore_row(row: &str) -> String {
    let Some((key, value)) = row.split_once('|') else {
        return row.to_string();
    };
    if !key.contains("/assignment/") {
        return row.to_string();
    }
    let Ok(v) = serde_json::from_str::<Value>(value) else {
        return row.to_string();
    };
    let used = v["allocations"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|x| !x.is_null()).count());
    let mut free: Vec<u64> = v["unallocated"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    free.sort_unstable();
    format!("{key} affinity={} used={used} free={free:?}", v["affinity"])
}

/// Relative path, kind and size of every file under `dir`, except logs (they grow with every
/// invocation by design) and the placeholders themselves.
fn files(root: &Path, dir: &Path, out: &mut String) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).collect())
        .unwrap_or_default();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.contains(".log") {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        if meta.is_dir() {
            out.push_str(&format!("{rel}/\n"));
            files(root, &path, out);
        } else if name.starts_with("ipam.db") {
            // SQLite's size moves with page reuse; the rows are compared instead.
            out.push_str(&format!("{rel}\n"));
        } else {
            out.push_str(&format!("{rel} {}\n", meta.len()));
        }
    }
}

/// Sets or removes the value at a JSON pointer, creating missing objects on the way.
fn apply(v: &mut Value, edit: &Edit) {
    let (ptr, new) = match edit {
        Edit::Set(p, x) => (p, Some(x.clone())),
        Edit::Remove(p) => (p, None),
    };
    let parts: Vec<String> = ptr
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    let (last, parents) = parts.split_last().expect("non-empty pointer");
    let mut cur = v;
    for p in parents {
        cur = match cur {
            Value::Array(a) => &mut a[p.parse::<usize>().expect("array index")],
            Value::Object(o) => o.entry(p.clone()).or_insert_with(|| json!({})),
            other => panic!("cannot descend into {other}"),
        };
    }
    match (cur, new) {
        (Value::Object(o), Some(x)) => {
            o.insert(last.clone(), x);
        }
        (Value::Object(o), None) => {
            o.remove(last);
        }
        (Value::Array(a), Some(x)) => a[last.parse::<usize>().expect("index")] = x,
        (other, _) => panic!("cannot edit {other}"),
    }
}

/// What went wrong with one case, if anything.
fn judge(case: &Case, out: &netns_tests::ExecOutput, elapsed: Duration) -> Option<String> {
    let stdout = out.stdout_str();
    let stderr = out.stderr_str();
    if stderr.contains("panicked") || out.status.code() == Some(101) {
        return Some(format!("panicked: {stderr}"));
    }
    if out.status.code().is_none() {
        return Some(format!("killed by a signal: {}", out.status));
    }
    if elapsed > CASE_LIMIT {
        return Some(format!("took {elapsed:?}"));
    }
    let (codes, field): (&[u64], &str) = match &case.expect {
        Expect::Error { codes, field } => (codes, field),
        // DEL may succeed (it cleans up what it can) but must print nothing then.
        Expect::CleanOrError { field } if out.success() => {
            return (!stdout.trim().is_empty()).then(|| format!("DEL printed {stdout:?}"));
        }
        Expect::CleanOrError { field } => (&[], field),
    };
    if out.success() {
        return Some(format!("succeeded: {stdout}"));
    }
    let v: Value = match serde_json::from_str(&stdout) {
        Ok(v) => v,
        Err(e) => {
            return Some(format!(
                "stdout is not one JSON document ({e}): {stdout:?}; stderr {stderr}"
            ))
        }
    };
    let Some(code) = v["code"].as_u64() else {
        return Some(format!("no code in {stdout}"));
    };
    let text = format!(
        "{} {}",
        v["msg"].as_str().unwrap_or(""),
        v["details"].as_str().unwrap_or("")
    );
    if !codes.is_empty() && !codes.contains(&code) {
        Some(format!("code {code}, expected one of {codes:?}: {text}"))
    } else if !text.contains(field) {
        Some(format!(
            "code {code}, message does not name {field:?}: {text}"
        ))
    } else {
        None
    }
}

/// Runs one case; returns a failure description, if any.
fn run_case(w: &Worker, case: &Case, before: &mut String) -> Option<String> {
    let stdin = w.stdin(case);
    let start = Instant::now();
    let out = match w.exec(case.plugin, case.command, &case.env, &stdin) {
        Ok(o) => o,
        Err(e) => return Some(format!("did not finish: {e}")),
    };
    let mut problem = judge(case, &out, start.elapsed());
    let after = w.snapshot(case.plugin);
    if after != *before {
        let diff: Vec<String> = after
            .lines()
            .filter(|l| !before.lines().any(|b| b == *l))
            .take(5)
            .map(str::to_string)
            .collect();
        problem
            .get_or_insert_with(String::new)
            .push_str(&format!("; state changed (new lines: {diff:?})"));
        // Undo what we can so the next case starts from a known state.
        let base = w.fill(case.plugin, &w.base(case.plugin).to_string());
        let _ = w.exec(case.plugin, "DEL", &[], base.as_bytes());
        *before = w.snapshot(case.plugin);
    }
    problem
}

#[test]
fn bad_input_catalogue() {
    let cases = catalogue::cases();
    assert!(cases.len() >= 300, "only {} cases", cases.len());
    let filter = std::env::var("BAD_INPUT_FILTER").unwrap_or_default();
    let cases: Vec<&Case> = cases.iter().filter(|c| c.name.contains(&filter)).collect();
    let start = Instant::now();
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WORKERS)
            .map(|i| {
                let mine: Vec<&Case> = cases.iter().skip(i).step_by(WORKERS).copied().collect();
                s.spawn(move || {
                    let w = Worker::new(i);
                    w.warm_up();
                    let mut failures = Vec::new();
                    let mut snaps: BTreeMap<&str, String> = BTreeMap::new();
                    for case in mine {
                        let before = snaps
                            .entry(case.plugin)
                            .or_insert_with(|| w.snapshot(case.plugin));
                        if let Some(p) = run_case(&w, case, before) {
                            failures.push(format!("{}: {p}", case.name));
                        }
                    }
                    failures
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker panicked"))
            .collect()
    });
    eprintln!(
        "bad-input catalogue: {} cases in {:.1}s, {} failures",
        cases.len(),
        start.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
