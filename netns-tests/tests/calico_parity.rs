//! Calico parity of the `calico` binary (issue #14), in private namespaces with real veths:
//! ADD-only configuration never blocks DEL/CHECK, readiness gates served over HTTP, the wait for
//! Felix's endpoint status file, the IPv6 next hop read from the host veth, the command-line
//! flags of `calico`/`calico-ipam`, and error codes a runtime can act on.
//! Needs the built binaries: `cargo build --bins` first.

// Each test file uses part of the shared fixture.
#[allow(dead_code)]
mod common;

use netns_tests::exec::run_in;
use netns_tests::{bins, ipam_state, traffic, Attachment, Chain, Netns, TestEnv};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A calico conflist on host-local (embedded store, no calico-node needed).
fn conflist(dir: &Path, ranges: Value) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "k8s-pod-network",
        "plugins": [{
            "type": "calico",
            "datastore_type": "local",
            "nodename": "node-1",
            "log_file_path": dir.join("cni.log"),
            "ipam": {"type": "host-local", "ranges": ranges, "dataDir": dir.join("ipam")}
        }]
    })
}

fn v4(dir: &Path) -> Value {
    conflist(dir, json!([[{"subnet": "10.244.1.0/24"}]]))
}

fn dual(dir: &Path) -> Value {
    conflist(
        dir,
        json!([[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:10:244:1::/64"}]]),
    )
}

fn reserved(dir: &Path) -> Vec<String> {
    ipam_state::host_local_reservations(&dir.join("ipam"), "k8s-pod-network")
}

fn cali_links(host: &Netns) -> Vec<String> {
    host.link_names_with_prefix("cali").unwrap()
}

fn pod(id: &str, ns: &Netns, name: &str) -> Attachment {
    Attachment::new(id, ns)
        .arg("K8S_POD_NAMESPACE", "default")
        .arg("K8S_POD_NAME", name)
}

// ---- 1. configuration only ADD uses never blocks DEL or CHECK ------------------------------

#[test]
fn add_only_config_never_blocks_del_or_check() {
    let env = TestEnv::calico_node("par-addonly").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let ctr = env.container("ctr").unwrap();
    let att = Attachment::new("addonly", &ctr);

    // `dataplane_options` without a type is the Linux dataplane, as in Calico.
    let mut conf = v4(env.tmp());
    conf["plugins"][0]["dataplane_options"] = json!({});
    let chain = Chain::with_cache_dir(&env.host, &conf, cache.path()).unwrap();
    chain.add(&att).unwrap();
    assert!(ctr.link("eth0").unwrap().is_some());

    // The pod is now being deleted under a config whose ADD-only keys are all unusable: CHECK
    // and DEL must still work, or the pod stays Terminating.
    let mut later = v4(env.tmp());
    let p = &mut later["plugins"][0];
    p["dataplane_options"] = json!({"type": "grpc", "socket": "/run/nowhere.sock"});
    p["readiness_gates"] = json!(["not a url", "http://127.0.0.1:1/never"]);
    p["policy_setup_timeout_seconds"] = json!(-1);
    p["device_type"] = json!("macvlan");
    p["mtu"] = json!(70000);
    let later_chain = Chain::with_cache_dir(&env.host, &later, cache.path()).unwrap();
    later_chain.check(&att).unwrap();
    later_chain.del(&att).unwrap();
    assert!(ctr.link("eth0").unwrap().is_none());
    assert!(cali_links(&env.host).is_empty());
    assert!(reserved(env.tmp()).is_empty(), "{:?}", reserved(env.tmp()));

    // ADD refuses each of them clearly, naming the key, before allocating anything.
    for (key, value, needle) in [
        (
            "dataplane_options",
            json!({"type": "grpc"}),
            "dataplane_options.type",
        ),
        (
            "dataplane_options",
            json!({"type": "vpp"}),
            "invalid dataplane type",
        ),
        (
            "readiness_gates",
            json!(["localhost:9099"]),
            "readiness_gates",
        ),
        (
            "policy_setup_timeout_seconds",
            json!(-1),
            "invalid pod startup delay of -1",
        ),
    ] {
        let mut bad = v4(env.tmp());
        bad["plugins"][0][key] = value;
        let err = env.chain(&bad).unwrap().add(&att).unwrap_err();
        assert_eq!(err.code(), Some(7), "{key}: {}", err.msg());
        assert!(err.msg().contains(needle), "{key}: {}", err.msg());
        assert!(reserved(env.tmp()).is_empty());
        assert!(cali_links(&env.host).is_empty());
    }
}

// ---- 2. readiness gates --------------------------------------------------------------------

/// An HTTP server in the host namespace answering 503 until `ready_after`, then 200.
struct Gate {
    url: String,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn gate(host: &Netns, ready_after: Option<Duration>) -> Gate {
    let listener = host
        .run(|| TcpListener::bind("127.0.0.1:0"))
        .unwrap()
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/readiness", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (h, s) = (hits.clone(), stop.clone());
    let start = Instant::now();
    std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            let Ok((mut conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let _ = conn.set_nonblocking(false);
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 2048];
            let _ = conn.read(&mut buf);
            h.fetch_add(1, Ordering::SeqCst);
            let ready = ready_after.is_some_and(|d| start.elapsed() >= d);
            let status = if ready {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    Gate { url, hits, stop }
}

#[test]
fn readiness_gate_holds_add_until_it_answers_ready() {
    let env = TestEnv::calico_node("par-gate").unwrap();
    let g = gate(&env.host, Some(Duration::from_secs(3)));
    let mut conf = v4(env.tmp());
    conf["plugins"][0]["readiness_gates"] = json!([g.url]);
    let chain = env.chain(&conf).unwrap();
    let ctr = env.container("ctr").unwrap();
    let att = Attachment::new("gated", &ctr);
    let t = Instant::now();
    chain.add(&att).unwrap();
    let took = t.elapsed();
    // Not ready at the first poll (t=0), ready at the next one, Calico's 5 s later.
    assert!(took >= Duration::from_millis(4500), "ADD took {took:?}");
    assert!(took < Duration::from_secs(20), "ADD took {took:?}");
    assert!(g.hits.load(Ordering::SeqCst) >= 2);
    assert!(ctr.link("eth0").unwrap().is_some());
    chain.del(&att).unwrap();
}

#[test]
fn readiness_gate_never_ready_fails_add_with_code_11_and_nothing_allocated() {
    let env = TestEnv::calico_node("par-gatefail").unwrap();
    let g = gate(&env.host, None);
    let mut conf = v4(env.tmp());
    conf["plugins"][0]["readiness_gates"] = json!([g.url]);
    let ctr = env.container("ctr").unwrap();
    let t = Instant::now();
    let err = env
        .chain(&conf)
        .unwrap()
        .add(&Attachment::new("never", &ctr))
        .unwrap_err();
    let took = t.elapsed();
    assert_eq!(err.code(), Some(11), "{}", err.msg());
    assert!(
        err.msg().contains("response code returned:503"),
        "{}",
        err.msg()
    );
    assert!(err.msg().contains(&g.url), "{}", err.msg());
    // Calico gives a gate 30 s.
    assert!(took >= Duration::from_secs(29), "gave up after {took:?}");
    assert!(g.hits.load(Ordering::SeqCst) >= 5);
    assert!(reserved(env.tmp()).is_empty());
    assert!(cali_links(&env.host).is_empty());
    assert!(ctr.link("eth0").unwrap().is_none());
}

#[test]
fn https_readiness_gate_uses_the_system_trust_store() {
    // The test API server's /readyz over TLS, trusted through SSL_CERT_FILE as Go's client would.
    let k = common::k8s::Cluster::start("par-gatetls", "node-1");
    let mut conf = v4(k.tmp());
    conf["plugins"][0]["readiness_gates"] = json!([format!("{}/readyz", k.api().url())]);
    let ca = k.api().ca_path();
    let chain = k
        .env
        .chain(&conf)
        .unwrap()
        .env("SSL_CERT_FILE", ca.to_str().unwrap());
    let ctr = k.env.container("ctr").unwrap();
    let att = Attachment::new("tls-gated", &ctr);
    let t = Instant::now();
    chain.add(&att).unwrap();
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert!(
        k.api().requests().iter().any(|r| r.contains("/readyz")),
        "{:?}",
        k.api().requests()
    );
    chain.del(&att).unwrap();
}

// ---- 3. policy_setup_timeout_seconds: waiting for Felix ------------------------------------

#[test]
fn add_waits_for_felix_endpoint_status_file() {
    let env = TestEnv::calico_node("par-felix").unwrap();
    let status_dir = env.tmp().join("endpoint-status");
    std::fs::create_dir(&status_dir).unwrap();
    let mut conf = v4(env.tmp());
    conf["plugins"][0]["policy_setup_timeout_seconds"] = json!(15);
    conf["plugins"][0]["endpoint_status_dir"] = json!(status_dir);
    let chain = env.chain(&conf).unwrap();

    // Felix's file for pod default/web-0, eth0: fields path-escaped, space separated; content
    // as Felix's status reporter writes it. A helper process writes it 2 s from now.
    let file = status_dir.join("k8s default%2Fweb-0 eth0");
    let script = format!(
        "sleep 2; n=$(printf default.web-0 | sha1sum | cut -c1-11); printf '{{\"ifaceName\":\"cali%s\",\"ipv4Nets\":[\"10.244.1.0/32\"]}}' \"$n\" > '{}'",
        file.display()
    );
    let mut writer = Command::new("sh").arg("-c").arg(script).spawn().unwrap();
    let c1 = env.container("web0").unwrap();
    let a1 = pod("sb-web-0", &c1, "web-0");
    let t = Instant::now();
    chain.add(&a1).unwrap();
    let took = t.elapsed();
    assert!(writer.wait().unwrap().success());
    assert!(
        took >= Duration::from_millis(1900),
        "ADD did not wait: {took:?}"
    );
    assert!(
        took < Duration::from_secs(10),
        "ADD waited too long: {took:?}"
    );
    let written: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(written["ifaceName"].as_str().unwrap().starts_with("cali"));

    // No file: Calico unblocks the pod after the timeout with a warning, the ADD succeeds.
    let mut short = conf.clone();
    short["plugins"][0]["policy_setup_timeout_seconds"] = json!(2);
    let chain2 = env.chain(&short).unwrap();
    let c2 = env.container("web1").unwrap();
    let a2 = pod("sb-web-1", &c2, "web-1");
    let t = Instant::now();
    chain2.add(&a2).unwrap();
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(c2.link("eth0").unwrap().is_some());
    let log = std::fs::read_to_string(env.tmp().join("cni.log")).unwrap();
    assert!(
        log.contains("timed out waiting for endpoint status file")
            && log.contains("k8s default%2Fweb-1 eth0"),
        "{log}"
    );

    // Calico waits only for Kubernetes workloads.
    let c3 = env.container("plain").unwrap();
    let t = Instant::now();
    chain2.add(&Attachment::new("plain-ctr", &c3)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

// ---- 5. IPv6 next hop ----------------------------------------------------------------------

#[test]
fn ipv6_next_hop_is_the_host_veths_eui64_link_local_or_add_fails_loudly() {
    let env = TestEnv::calico_node("par-v6gw").unwrap();
    let chain = env.chain(&dual(env.tmp())).unwrap();
    let ctr = env.container("ctr").unwrap();
    let att = Attachment::new("v6gw", &ctr);

    // addr_gen_mode random (3) and none (1): the host veth's link-local is not the EUI-64 one
    // every pod's next hop must be, or there is none. ADD must fail and leave nothing.
    for (mode, needle) in [
        ("3", "wrong link-local IP address"),
        ("1", "failed to get IPv6 link-local address"),
    ] {
        env.host
            .set_sysctl("net.ipv6.conf.default.addr_gen_mode", mode)
            .unwrap();
        let err = chain.add(&att).unwrap_err();
        assert!(err.msg().contains(needle), "mode {mode}: {}", err.msg());
        assert!(err.msg().contains("addr_gen_mode"), "{}", err.msg());
        assert!(
            cali_links(&env.host).is_empty(),
            "{:?}",
            cali_links(&env.host)
        );
        assert!(ctr.link("eth0").unwrap().is_none());
        assert!(reserved(env.tmp()).is_empty(), "{:?}", reserved(env.tmp()));
    }

    // eui64 (0): the route goes via the link-local address the host veth really has.
    env.host
        .set_sysctl("net.ipv6.conf.default.addr_gen_mode", "0")
        .unwrap();
    env.host.add_addr("lo", "fd00:ffff::1/128").unwrap();
    let r = chain.add(&att).unwrap();
    let host_veth = r["interfaces"][0]["name"].as_str().unwrap();
    let ll: Vec<_> = env
        .host
        .addrs(host_veth)
        .unwrap()
        .into_iter()
        .filter(|a| a.is_ipv6())
        .collect();
    assert_eq!(ll.len(), 1, "{ll:?}");
    let routes6 = ctr.routes("-6", "main").unwrap();
    assert!(
        routes6
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == ll[0].ip().to_string()),
        "{routes6:?} vs {ll:?}"
    );
    assert!(traffic::ping_eventually(&ctr, "fd00:ffff::1".parse().unwrap(), 3).unwrap());
    chain.del(&att).unwrap();
}

// ---- 6. command-line flags -----------------------------------------------------------------

fn run_bin(host: &Netns, name: &str, args: &[&str], stdin: &[u8]) -> netns_tests::ExecOutput {
    let mut cmd = Command::new(bins::binary(name).unwrap());
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CNI_") {
            cmd.env_remove(&k);
        }
    }
    run_in(host, &mut cmd, stdin, Duration::from_secs(30)).unwrap()
}

#[test]
fn flags_like_calicos_binaries() {
    let env = TestEnv::new("par-flags").unwrap();
    for bin in ["calico", "calico-ipam"] {
        for flag in ["-v", "--v", "-v=true"] {
            let out = run_bin(&env.host, bin, &[flag], b"");
            assert!(out.success(), "{bin} {flag}: {}", out.stderr_str());
            assert_eq!(
                out.stdout_str(),
                format!("v{}\n", env!("CARGO_PKG_VERSION"))
            );
        }
        let out = run_bin(&env.host, bin, &["-nope"], b"");
        assert_eq!(out.status.code(), Some(2), "{bin}");
        assert!(
            out.stderr_str()
                .starts_with("flag provided but not defined: -nope\nUsage of "),
            "{}",
            out.stderr_str()
        );
        assert!(out.stdout_str().is_empty());
    }
    // calico-ipam -upgrade needs the node (Calico's fatal exit without it, before any
    // datastore access; tests/ipam_upgrade.rs runs the migration); calico has no such flag.
    let mut cmd = Command::new(bins::binary("calico-ipam").unwrap());
    cmd.arg("-upgrade").env_remove("KUBERNETES_NODE_NAME");
    let out = run_in(&env.host, &mut cmd, b"", Duration::from_secs(30)).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr_str()
            .contains("KUBERNETES_NODE_NAME not specified, refusing to migrate"),
        "{}",
        out.stderr_str()
    );
    let out = run_bin(&env.host, "calico", &["-upgrade"], b"");
    assert_eq!(out.status.code(), Some(2));

    // -t: the datastore of the netconf on stdin; an unreachable etcd is Calico's code 100.
    let ok = json!({"cniVersion": "1.0.0", "name": "n", "type": "calico",
        "datastore_type": "local", "nodename": "n1",
        "datastore_path": env.tmp().join("ipam.db"), "ipam": {"type": "calico-ipam"}});
    let out = run_bin(&env.host, "calico", &["-t"], ok.to_string().as_bytes());
    assert!(out.success(), "{} {}", out.stdout_str(), out.stderr_str());
    let down = json!({"cniVersion": "1.0.0", "name": "n", "type": "calico", "nodename": "n1",
        "datastore_type": "etcdv3", "etcd_endpoints": "http://127.0.0.1:1",
        "ipam": {"type": "calico-ipam"}});
    let out = run_bin(&env.host, "calico", &["-t"], down.to_string().as_bytes());
    assert_eq!(out.status.code(), Some(1));
    let doc = out.stdout_json().unwrap();
    assert_eq!(doc["code"], 100, "{doc}");
    assert_eq!(doc["msg"], "data store connection failed");
    assert!(!doc["details"].as_str().unwrap().is_empty(), "{doc}");
}

// ---- 8. error codes a runtime can act on ---------------------------------------------------

#[test]
fn missing_nodename_file_and_unreachable_etcd_are_code_11() {
    let env = TestEnv::calico_node("par-codes").unwrap();
    let nodename = env.tmp().join("nodename");
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "k8s-pod-network",
        "plugins": [{
            "type": "calico",
            "datastore_type": "etcdv3",
            "etcd_endpoints": "http://127.0.0.1:1",
            "nodename_file": nodename,
            "log_file_path": env.tmp().join("cni.log"),
            "ipam": {"type": "host-local", "subnet": "10.244.1.0/24", "dataDir": env.tmp().join("ipam")}
        }]
    });
    let chain = env.chain(&conf).unwrap();
    let ctr = env.container("ctr").unwrap();
    let att = Attachment::new("codes", &ctr);
    for err in [chain.add(&att).unwrap_err(), chain.del(&att).unwrap_err()] {
        assert_eq!(err.code(), Some(11), "{}", err.msg());
        assert!(
            err.msg()
                .contains("check that the calico/node container is running"),
            "{}",
            err.msg()
        );
    }
    std::fs::write(&nodename, "node-1").unwrap();
    let err = chain.add(&att).unwrap_err();
    assert_eq!(err.code(), Some(11), "{}", err.msg());
    assert!(reserved(env.tmp()).is_empty());
    assert!(cali_links(&env.host).is_empty());
}

// ---- 4. plain (non-Kubernetes) mode on etcd ------------------------------------------------

/// A plain-http etcd inside the host namespace; its members die with the thread that started
/// them (PR_SET_PDEATHSIG), so that thread stays parked in the namespace until drop.
struct HostEtcd {
    cluster: Option<ipam_store_etcd::test_cluster::EtcdCluster>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostEtcd {
    fn start(host: &Netns) -> HostEtcd {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let path = host.path().to_path_buf();
        let thread = std::thread::spawn(move || {
            let ns = std::fs::File::open(path).unwrap();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            ready_tx
                .send(ipam_store_etcd::test_cluster::EtcdCluster::start(1).unwrap())
                .unwrap();
            let _ = stop_rx.recv();
        });
        HostEtcd {
            cluster: Some(ready_rx.recv().expect("etcd started")),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn cluster(&self) -> &ipam_store_etcd::test_cluster::EtcdCluster {
        self.cluster.as_ref().expect("running until drop")
    }

    fn put(&self, host: &Netns, key: &str, value: &Value) {
        let cfg = self.cluster().config();
        host.run(|| {
            ipam_store_etcd::EtcdClient::connect(&cfg)
                .unwrap()
                .put(key, value.to_string().as_bytes())
                .unwrap()
        })
        .unwrap();
    }

    fn get(&self, host: &Netns, key: &str) -> Option<Value> {
        let cluster = self.cluster();
        host.run(|| cluster.etcdctl_get(key).unwrap())
            .unwrap()
            .map(|v| serde_json::from_slice(&v).unwrap())
    }
}

impl Drop for HostEtcd {
    fn drop(&mut self) {
        drop(self.cluster.take());
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const WEPS: &str = "/calico/resources/v3/projectcalico.org/workloadendpoints/default/";

#[test]
fn plain_mode_second_attachment_reuses_the_endpoint_and_keeps_the_first_working() {
    let env = TestEnv::calico_node("par-plain").unwrap();
    env.host.add_addr("lo", "192.0.2.1/32").unwrap();
    let etcd = HostEtcd::start(&env.host);
    etcd.put(
        &env.host,
        "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool",
        &json!({"kind": "IPPool", "apiVersion": "projectcalico.org/v3",
            "metadata": {"name": "default-ipv4-ippool"},
            "spec": {"cidr": "10.48.0.0/16", "blockSize": 26, "nodeSelector": "all()"}}),
    );
    etcd.put(
        &env.host,
        "/calico/resources/v3/projectcalico.org/clusterinformations/default",
        &json!({"kind": "ClusterInformation", "apiVersion": "projectcalico.org/v3",
            "metadata": {"name": "default"}, "spec": {"datastoreReady": true}}),
    );
    let net = |name: &str| {
        json!({
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [{
                "type": "calico",
                "datastore_type": "etcdv3",
                "etcd_endpoints": etcd.cluster().endpoints_csv(),
                "nodename": "node-1",
                "nodename_file_optional": true,
                "log_file_path": env.tmp().join("cni.log"),
                "ipam": {"type": "calico-ipam"}
            }]
        })
    };
    let chain = env.chain(&net("net-a")).unwrap();
    let ctr = env.container("ctr").unwrap();
    let first = Attachment::new("plain-ctr", &ctr);
    let r1 = chain.add(&first).unwrap();
    let ip = r1["ips"][0]["address"].as_str().unwrap().to_string();
    let veth = r1["interfaces"][0]["name"].as_str().unwrap().to_string();
    let ifindex = env.host.link(&veth).unwrap().unwrap()["ifindex"].clone();
    let wep_key = format!("{WEPS}node--1-cni-plain--ctr-eth0");
    let wep = etcd.get(&env.host, &wep_key).expect("endpoint written");
    assert_eq!(
        wep["metadata"]["labels"],
        json!({"projectcalico.org/namespace": "default", "projectcalico.org/orchestrator": "cni"})
    );
    let handle = "/calico/ipam/v2/handle/net-a.plain-ctr";
    let held = etcd.get(&env.host, handle).expect("IPAM handle");
    let host_ip: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    assert!(traffic::ping_eventually(&ctr, host_ip, 3).unwrap());

    // Second attachment (same network, eth1) and third (another network, eth2): the endpoint
    // is reused; no allocation, no new veth, the first keeps working.
    let second = Attachment::new("plain-ctr", &ctr).ifname("eth1");
    let r2 = chain.add(&second).unwrap();
    let chain_b = env.chain(&net("net-b")).unwrap();
    let third = Attachment::new("plain-ctr", &ctr).ifname("eth2");
    let r3 = chain_b.add(&third).unwrap();
    for r in [&r2, &r3] {
        assert_eq!(r["ips"][0]["address"], ip.as_str(), "{r}");
        assert_eq!(r["interfaces"][0]["name"], veth.as_str(), "{r}");
    }
    assert_eq!(r2["interfaces"][1]["name"], "eth1");
    assert_eq!(cali_links(&env.host), vec![veth.clone()]);
    assert_eq!(
        env.host.link(&veth).unwrap().unwrap()["ifindex"],
        ifindex,
        "host veth re-created"
    );
    assert!(ctr.link("eth1").unwrap().is_none());
    assert_eq!(
        etcd.get(&env.host, handle),
        Some(held.clone()),
        "IPAM untouched"
    );
    assert!(etcd
        .get(&env.host, "/calico/ipam/v2/handle/net-b.plain-ctr")
        .is_none());
    assert!(etcd
        .get(&env.host, &format!("{WEPS}node--1-cni-plain--ctr-eth1"))
        .is_none());
    let wep = etcd.get(&env.host, &wep_key).unwrap();
    assert_eq!(wep["spec"]["profiles"], json!(["net-a", "net-b"]));
    assert!(traffic::ping_eventually(&ctr, host_ip, 3).unwrap());

    // CHECK passes for every attachment (the reused ones have nothing of their own).
    chain.check(&first).unwrap();
    chain.check(&second).unwrap();
    chain_b.check(&third).unwrap();

    // Their DELs leave the first attachment alone.
    chain.del(&second).unwrap();
    chain_b.del(&third).unwrap();
    assert!(etcd.get(&env.host, &wep_key).is_some());
    assert_eq!(etcd.get(&env.host, handle), Some(held));
    assert!(ctr.link("eth0").unwrap().is_some());
    assert!(traffic::ping_eventually(&ctr, host_ip, 3).unwrap());

    chain.del(&first).unwrap();
    assert!(etcd.get(&env.host, &wep_key).is_none());
    assert!(etcd.get(&env.host, handle).is_none());
    assert!(cali_links(&env.host).is_empty());
}
