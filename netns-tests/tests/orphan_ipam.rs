//! A killed ADD must not leak an address after the runtime's DEL: when calico is SIGKILLed
//! while its calico-ipam child waits for the host IPAM lock, the child must die with it
//! (PR_SET_PDEATHSIG) instead of committing an allocation after DEL has returned; and a
//! delegated calico-ipam whose delegator is gone commits nothing. Observed from outside: the
//! process table and the local datastore read with `sqlite3`.

use netns_tests::{bins, ipam_state, plugin::exec_plugin, Netns, TestEnv};
use serde_json::{json, Value};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn conf(dir: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0", "name": "orphan-net", "type": "calico",
        "datastore_type": "local", "datastore_path": dir.join("ipam.db"),
        "nodename": "node-1", "mtu": 1440,
        "log_file_path": dir.join("cni.log"), "ipam_lock_file": dir.join("ipam.lock"),
        "ipam": {"type": "calico-ipam", "default_ipv4_pool": "10.95.0.0/16"}
    })
}

fn vars<'a>(cmd: &'a str, netns: &'a str, cni_path: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "orphan-ctr"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", cni_path),
    ]
}

/// Pids whose parent is `ppid` and whose command name is `comm`.
fn children(ppid: u32, comm: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..."; comm may hold spaces, so split at the last ')'.
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map(|x| x.1).unwrap_or("");
        let parent: u32 = tail
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if parent == ppid && name == comm {
            out.push(pid);
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    // A zombie has been killed already; only count processes still running.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .and_then(|(_, t)| t.split_whitespace().next().map(|st| st != "Z"))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn start_add(host: &Netns, ctr: &Netns, cni_path: &str, stdin: &[u8]) -> std::process::Child {
    let netns = ctr.path().to_string_lossy().into_owned();
    let mut cmd = Command::new(bins::binary("calico").unwrap());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(vars("ADD", &netns, cni_path))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = host.spawn(&mut cmd).unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child
}

#[test]
fn killed_add_leaves_no_allocation_after_del() {
    let env = TestEnv::calico_node("orphan").unwrap();
    let ctr = env.container("orphan-ctr").unwrap();
    let dir = env.tmp();
    let stdin = conf(dir).to_string().into_bytes();
    let cni_path = bins::binary("calico-ipam")
        .unwrap()
        .parent()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // The test holds the host IPAM lock, so calico-ipam blocks right before allocating.
    let lock = File::create(dir.join("ipam.lock")).unwrap();
    lock.lock().unwrap();

    let mut calico = start_add(&env.host, &ctr, &cni_path, &stdin);
    let ipam = wait_for(Duration::from_secs(20), || {
        children(calico.id(), "calico-ipam").first().copied()
    })
    .expect("calico never started calico-ipam");
    // Let calico-ipam get as far as the lock.
    std::thread::sleep(Duration::from_millis(500));
    assert!(alive(ipam), "calico-ipam should be waiting for the lock");

    // The runtime gives up on the ADD: SIGKILL, as kubelet's timeout does.
    calico.kill().unwrap();
    calico.wait().unwrap();
    let orphan_gone = wait_for(Duration::from_secs(3), || (!alive(ipam)).then_some(()));

    // Then it cleans up with DEL (whose calico-ipam queues on the lock too), and only then
    // the lock frees: a surviving orphan could commit after DEL released the handle.
    let netns = ctr.path().to_string_lossy().into_owned();
    let calico_bin = bins::binary("calico").unwrap();
    let del = std::thread::scope(|s| {
        let del = s.spawn(|| {
            exec_plugin(
                &env.host,
                &calico_bin,
                &vars("DEL", &netns, &cni_path),
                &stdin,
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        drop(lock);
        del.join().unwrap()
    });
    // Give a survivor the time to commit.
    std::thread::sleep(Duration::from_secs(1));
    let handles = ipam_state::calico_local_handles(&dir.join("ipam.db")).unwrap();

    assert!(
        orphan_gone.is_some(),
        "calico-ipam outlived the calico that ran it"
    );
    let del = del.unwrap();
    assert!(del.success(), "DEL failed: {}", del.stdout_str());
    assert!(handles.is_empty(), "allocation left behind: {handles:?}");
    let blocks = ipam_state::calico_local_blocks(&dir.join("ipam.db")).unwrap();
    assert!(blocks.iter().all(|(_, n)| *n == 0), "{blocks:?}");
}

#[test]
fn delegated_ipam_commits_nothing_once_its_delegator_is_gone() {
    let env = TestEnv::calico_node("orphan-ppid").unwrap();
    let ctr = env.container("orphan-ppid-ctr").unwrap();
    let dir = env.tmp();
    let stdin = conf(dir).to_string().into_bytes();
    let netns = ctr.path().to_string_lossy().into_owned();
    let mut vars = vars("ADD", &netns, "/nonexistent");
    // What calico-ipam sees when calico died between exec and commit: it was told pid 1 is
    // nothing like its delegator (its parent is the test).
    vars.push(("CNI_RS_DELEGATOR_PID", "1"));
    let out = exec_plugin(
        &env.host,
        &bins::binary("calico-ipam").unwrap(),
        &vars,
        &stdin,
    )
    .unwrap();
    assert!(!out.success(), "ADD succeeded: {}", out.stdout_str());
    let v = out.stdout_json().unwrap();
    assert!(v["msg"].as_str().unwrap().contains("delegated"), "{v}");
    assert!(ipam_state::calico_local_handles(&dir.join("ipam.db"))
        .unwrap()
        .is_empty());
    assert!(ipam_state::calico_local_blocks(&dir.join("ipam.db"))
        .unwrap()
        .iter()
        .all(|(_, n)| *n == 0));
}

#[test]
fn delegated_host_local_keeps_nothing_once_its_delegator_is_gone() {
    let env = TestEnv::new("orphan-hl").unwrap();
    let ctr = env.container("orphan-hl-ctr").unwrap();
    let data = env.tmp().join("hl");
    let stdin = json!({"cniVersion": "1.0.0", "name": "orphan-net",
        "ipam": {"type": "host-local", "subnet": "10.94.0.0/24", "dataDir": data}})
    .to_string();
    let netns = ctr.path().to_string_lossy().into_owned();
    let mut vars = vars("ADD", &netns, "/nonexistent");
    vars.push(("CNI_RS_DELEGATOR_PID", "1"));
    let bin = bins::binary("host-local").unwrap();
    let out = exec_plugin(&env.host, &bin, &vars, stdin.as_bytes()).unwrap();
    assert!(!out.success(), "ADD succeeded: {}", out.stdout_str());
    assert!(ipam_state::host_local_reservations(&data, "orphan-net").is_empty());
    // The same ADD run by the runtime itself allocates.
    vars.pop();
    let out = exec_plugin(&env.host, &bin, &vars, stdin.as_bytes()).unwrap();
    assert!(out.success(), "{}", out.stdout_str());
    assert_eq!(
        ipam_state::host_local_reservations(&data, "orphan-net").len(),
        1
    );
}
