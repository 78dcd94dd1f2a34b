//! Real-client conformance: the upstream `cnitool` (libcni 1.1.2, built offline from Debian by
//! `tools/build-cnitool.sh`) runs our binaries over the conflists in `testdata/demo/` at
//! cniVersion 0.3.1, 0.4.0 and 1.0.0, with `CAP_ARGS` (portMappings, bandwidth) and `CNI_ARGS`.
//! Asserted from outside: result shape per version, pod-to-pod ping, HTTP through the hostPort
//! from a client namespace, the shaping installed, and a clean teardown (no pod links, routes,
//! qdiscs, rules, IPAM allocations or libcni cache entries left).
//!
//! Needs root, the built binaries (`cargo build --bins`) and cnitool (`run-tests.sh` builds it).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use netns_tests::cnitool::{self, Cnitool};
use netns_tests::node::{self, HOST_IP};
use netns_tests::{bins, ipam_state, traffic, Netns, TestEnv};
use serde_json::{json, Value};

const HOST_PORT: u16 = 8080;
const TIMEOUT: Duration = Duration::from_secs(5);
/// Ingress (to the pod) and egress rates in bits/s, as a kubelet passes them.
const INGRESS_RATE: u64 = 8_000_000;
const EGRESS_RATE: u64 = 4_000_000;

#[derive(Clone, Copy, PartialEq)]
enum Setup {
    HostLocal,
    CalicoIpam,
    /// calico-ipam with every Calico NetConf key README's parity table lists as honoured.
    CalicoAllFields,
}

impl Setup {
    fn file(self) -> &'static str {
        match self {
            Setup::HostLocal => "calico-hostlocal.conflist",
            Setup::CalicoIpam => "calico-ipam-local.conflist",
            Setup::CalicoAllFields => "calico-all-fields.conflist",
        }
    }
}

/// The testdata conflist with `__DATA_DIR__`, `cniVersion` and `name` filled in.
fn conflist(ipam: Setup, version: &str, name: &str, dir: &Path) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/demo")
        .join(ipam.file());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = text.replace("__DATA_DIR__", &dir.to_string_lossy());
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["cniVersion"] = json!(version);
    v["name"] = json!(name);
    v
}

/// Calico's veth name for a Kubernetes pod: "cali" + sha1("<namespace>.<pod>")[..11].
fn calico_veth_name(namespace: &str, pod: &str) -> String {
    let mut child = Command::new("sha1sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{namespace}.{pod}").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!("cali{}", &String::from_utf8_lossy(&out.stdout)[..11])
}

/// IPAM allocations still recorded: host-local's reservation files or calico-ipam's handles.
fn allocations(ipam: Setup, dir: &Path, name: &str) -> Vec<String> {
    match ipam {
        Setup::HostLocal => ipam_state::host_local_reservations(&dir.join("host-local"), name),
        Setup::CalicoIpam | Setup::CalicoAllFields => {
            ipam_state::calico_local_handles(&dir.join("calico.db")).unwrap()
        }
    }
}

fn ipv4(result: &Value) -> IpAddr {
    node::result_ips(result)
        .into_iter()
        .find(IpAddr::is_ipv4)
        .unwrap_or_else(|| panic!("no IPv4 address in {result}"))
}

/// Result shape libcni hands back at `version`: converted by libcni from whatever the last
/// plugin printed, so our plugins' results must be valid at that version.
fn assert_result_shape(result: &Value, version: &str, netns: &Netns) {
    assert_eq!(result["cniVersion"], version, "{result}");
    let ips = result["ips"]
        .as_array()
        .unwrap_or_else(|| panic!("no ips: {result}"));
    assert!(!ips.is_empty(), "{result}");
    for ip in ips {
        if version == "1.0.0" {
            assert!(
                ip.get("version").is_none(),
                "1.0.0 has no ips[].version: {result}"
            );
        } else {
            assert_eq!(ip["version"], "4", "{result}");
        }
        let idx = ip["interface"].as_u64().unwrap() as usize;
        assert_eq!(
            result["interfaces"][idx]["sandbox"],
            netns.path().to_string_lossy().as_ref(),
            "{result}"
        );
    }
}

fn qdisc_kinds(host: &Netns, dev: &str) -> Vec<(String, Value)> {
    host.qdiscs(dev)
        .unwrap()
        .into_iter()
        .map(|q| (q["kind"].as_str().unwrap_or_default().to_string(), q))
        .collect()
}

/// Root tbf rate in bytes/s (`tc -j` reports bytes per second).
fn tbf_rate(qdiscs: &[(String, Value)]) -> Option<u64> {
    qdiscs
        .iter()
        .find(|(k, _)| k == "tbf")
        .and_then(|(_, q)| q["options"]["rate"].as_u64())
}

/// Removes libcni's cached results of a test's network (in /var/lib/cni, outside the
/// namespaces) when created and when dropped, so a failed run leaves no stale entries.
struct CacheGuard(String);

impl CacheGuard {
    fn new(net: &str) -> CacheGuard {
        let guard = CacheGuard(net.to_string());
        guard.clear();
        guard
    }

    fn clear(&self) {
        for f in cnitool::cached_results(&self.0) {
            let _ = std::fs::remove_file(Path::new(cnitool::RESULT_CACHE_DIR).join(f));
        }
    }
}

impl Drop for CacheGuard {
    fn drop(&mut self) {
        self.clear();
    }
}

fn full_chain(ipam: Setup, version: &str, tag: &str) {
    full_chain_with(ipam, version, tag, bins::bin_dirs(), true);
}

/// The scenario with `cni_path` as `CNI_PATH` (search order decides whose binary runs);
/// `check` = run CHECK (from 0.4.0) on both pods.
fn full_chain_with(ipam: Setup, version: &str, tag: &str, cni_path: Vec<PathBuf>, check: bool) {
    let env = TestEnv::new(tag).unwrap();
    let client = node::client(&env.host, &format!("{tag}-client")).unwrap();
    let net = format!("net-{tag}");
    let _cache = CacheGuard::new(&net);
    let netconf = env.tmp().join("net.d");
    std::fs::create_dir_all(&netconf).unwrap();
    let data = env.tmp().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        netconf.join("10-calico.conflist"),
        conflist(ipam, version, &net, &data).to_string(),
    )
    .unwrap();
    let pod_a = env.container("pod-a").unwrap();
    let pod_b = env.container("pod-b").unwrap();
    // The all-fields conflist's readiness gate, answered on the node's loopback.
    let _gate = (ipam == Setup::CalicoAllFields).then(|| {
        traffic::http_server(
            &env.host,
            SocketAddr::new("127.0.0.1".parse().unwrap(), 9099),
            "ready",
        )
        .unwrap()
    });

    // pod-a: a hostPort and shaping, as kubelet would pass them; pod-b: plain.
    let tool_a = Cnitool::new(&netconf, cni_path.clone())
        .unwrap()
        .cap_args(json!({
            "portMappings": [{"hostPort": HOST_PORT, "containerPort": 80, "protocol": "tcp"}],
            "bandwidth": {"ingressRate": INGRESS_RATE, "ingressBurst": 80_000,
                          "egressRate": EGRESS_RATE, "egressBurst": 40_000}
        }))
        .arg("IgnoreUnknown", "1")
        .arg("K8S_POD_NAMESPACE", "default")
        .arg("K8S_POD_NAME", "pod-a")
        .arg("K8S_POD_INFRA_CONTAINER_ID", "infra-a");
    let tool_b = Cnitool::new(&netconf, cni_path).unwrap();

    let ra = tool_a.add(&env.host, &net, pod_a.path()).unwrap();
    let rb = tool_b.add(&env.host, &net, pod_b.path()).unwrap();
    assert_result_shape(&ra, version, &pod_a);
    assert_result_shape(&rb, version, &pod_b);
    let (ip_a, ip_b) = (ipv4(&ra), ipv4(&rb));
    assert_ne!(ip_a, ip_b);
    let veth_a = node::host_interface(&ra).unwrap();
    assert_eq!(
        veth_a,
        calico_veth_name("default", "pod-a"),
        "K8S_POD_* from CNI_ARGS name the veth"
    );
    let veth_b = node::host_interface(&rb).unwrap();
    assert!(veth_b.starts_with("cali"), "{rb}");
    for (pod, ip) in [(&pod_a, ip_a), (&pod_b, ip_b)] {
        let addrs = pod.addrs("eth0").unwrap();
        assert!(
            addrs.iter().any(|a| a.ip() == ip && a.prefix() == 32),
            "{addrs:?}"
        );
    }
    assert_eq!(
        allocations(ipam, &data, &net).len(),
        2,
        "one allocation per pod"
    );
    if ipam == Setup::CalicoAllFields {
        // The pool named by CIDR, forwarding allowed in the pod, the MTU and the log file.
        let pool: ipnetwork::IpNetwork = "10.245.0.0/16".parse().unwrap();
        assert!(pool.contains(ip_a) && pool.contains(ip_b), "{ip_a} {ip_b}");
        assert_eq!(pod_a.sysctl("net.ipv4.ip_forward").unwrap(), "1");
        let eth0 = pod_a.link("eth0").unwrap().expect("eth0");
        assert_eq!(eth0["mtu"], json!(1440), "{eth0}");
        assert!(data.join("cni.log").exists(), "log_file_path honoured");
    }

    // Pod to pod, both ways, through the host's /32 routes.
    assert!(
        traffic::ping_eventually(&pod_a, ip_b, 3).unwrap(),
        "pod-a -> pod-b {ip_b}"
    );
    assert!(
        traffic::ping_eventually(&pod_b, ip_a, 3).unwrap(),
        "pod-b -> pod-a {ip_a}"
    );

    // HTTP through the hostPort, from a client outside the node and from the other pod.
    let _server = traffic::http_server(
        &pod_a,
        SocketAddr::new("0.0.0.0".parse().unwrap(), 80),
        "hello from pod-a",
    )
    .unwrap();
    let host_port = SocketAddr::new(HOST_IP.parse().unwrap(), HOST_PORT);
    let (status, body) = traffic::http_get(&client, host_port, "/", TIMEOUT).unwrap();
    assert_eq!((status, body.as_str()), (200, "hello from pod-a"));
    let (status, body) = traffic::http_get(&pod_b, host_port, "/", TIMEOUT).unwrap();
    assert_eq!((status, body.as_str()), (200, "hello from pod-a"));

    // Shaping: tbf at the ingress rate on the host veth (traffic towards the pod), and an ifb
    // carrying the egress tbf, fed by an ingress qdisc on the veth.
    let q = qdisc_kinds(&env.host, &veth_a);
    assert_eq!(tbf_rate(&q), Some(INGRESS_RATE / 8), "{q:?}");
    assert!(q.iter().any(|(k, _)| k == "ingress"), "{q:?}");
    let ifbs: Vec<String> = node::links_with_kind(&env.host)
        .unwrap()
        .into_iter()
        .filter(|(_, k)| k == "ifb")
        .map(|(n, _)| n)
        .collect();
    assert_eq!(ifbs.len(), 1, "{ifbs:?}");
    assert_eq!(
        tbf_rate(&qdisc_kinds(&env.host, &ifbs[0])),
        Some(EGRESS_RATE / 8)
    );
    assert!(
        ra["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == ifbs[0].as_str()),
        "ifb in the result: {ra}"
    );
    assert!(
        qdisc_kinds(&env.host, &veth_b)
            .iter()
            .all(|(k, _)| k != "tbf"),
        "pod-b is not shaped"
    );

    // CHECK: from 0.4.0 on with the cached result; libcni itself refuses it for 0.3.1.
    if version == "0.3.1" {
        let out = tool_a.run(&env.host, "check", &net, pod_a.path()).unwrap();
        assert!(!out.success());
        assert!(
            out.stderr_str()
                .contains("does not support the CHECK command"),
            "{}",
            out.stderr_str()
        );
    } else if check {
        tool_a.check(&env.host, &net, pod_a.path()).unwrap();
        tool_b.check(&env.host, &net, pod_b.path()).unwrap();
    }
    assert_eq!(cnitool::cached_results(&net).len(), 2);

    // DEL (reverse order, cached result as prevResult from 0.4.0), then again: idempotent.
    tool_a.del(&env.host, &net, pod_a.path()).unwrap();
    tool_b.del(&env.host, &net, pod_b.path()).unwrap();
    tool_a.del(&env.host, &net, pod_a.path()).unwrap();
    tool_b.del(&env.host, &net, pod_b.path()).unwrap();

    let left = node::leftovers(&env.host, &[ip_a, ip_b], &[HOST_PORT]).unwrap();
    assert!(
        left.is_empty(),
        "left behind after DEL:\n{}",
        left.join("\n")
    );
    assert!(pod_a.link("eth0").unwrap().is_none());
    assert_eq!(allocations(ipam, &data, &net), Vec::<String>::new());
    assert_eq!(cnitool::cached_results(&net), Vec::<String>::new());
    assert!(traffic::http_get(&client, host_port, "/", Duration::from_secs(1)).is_err());
}

#[test]
fn host_local_chain_v0_3_1() {
    full_chain(Setup::HostLocal, "0.3.1", "ct-hl-031");
}

#[test]
fn host_local_chain_v0_4_0() {
    full_chain(Setup::HostLocal, "0.4.0", "ct-hl-040");
}

#[test]
fn host_local_chain_v1_0_0() {
    full_chain(Setup::HostLocal, "1.0.0", "ct-hl-100");
}

#[test]
fn calico_all_fields_chain_v0_3_1() {
    full_chain(Setup::CalicoAllFields, "0.3.1", "ct-af-031");
}

#[test]
fn calico_all_fields_chain_v0_4_0() {
    full_chain(Setup::CalicoAllFields, "0.4.0", "ct-af-040");
}

#[test]
fn calico_all_fields_chain_v1_0_0() {
    full_chain(Setup::CalicoAllFields, "1.0.0", "ct-af-100");
}

#[test]
fn calico_ipam_chain_v0_3_1() {
    full_chain(Setup::CalicoIpam, "0.3.1", "ct-ci-031");
}

#[test]
fn calico_ipam_chain_v0_4_0() {
    full_chain(Setup::CalicoIpam, "0.4.0", "ct-ci-040");
}

#[test]
fn calico_ipam_chain_v1_0_0() {
    full_chain(Setup::CalicoIpam, "1.0.0", "ct-ci-100");
}

/// Interop through libcni: our calico delegating to Debian's Go host-local, with Debian's Go
/// portmap and bandwidth consuming our result (Go binaries first in `CNI_PATH`, ours fill in
/// calico). No CHECK: Go 1.1.1's portmap CHECK fails on IPv4-only pods when ip6tables works
/// (containernetworking/plugins#819) and its bandwidth CHECK crashes on unshaped pods.
#[test]
fn mixed_chain_with_debian_go_plugins_v1_0_0() {
    for go in ["host-local", "portmap", "bandwidth"] {
        let p = Path::new(bins::DEBIAN_PLUGIN_DIR).join(go);
        assert!(
            p.is_file(),
            "{} missing: install containernetworking-plugins",
            p.display()
        );
    }
    let mut path = vec![PathBuf::from(bins::DEBIAN_PLUGIN_DIR)];
    path.extend(bins::bin_dirs());
    full_chain_with(Setup::HostLocal, "1.0.0", "ct-go-100", path, false);
}

/// A plugin failing in the middle of the chain (portmap with an invalid `markMasqBit`, after
/// calico wired the pod): libcni reports it naming the plugin, and the runtime's DEL leaves
/// nothing behind.
#[test]
fn add_failure_is_reported_by_libcni_and_del_cleans_up() {
    let env = TestEnv::new("ct-fail").unwrap();
    let net = "net-ct-fail";
    let _cache = CacheGuard::new(net);
    let netconf = env.tmp().join("net.d");
    std::fs::create_dir_all(&netconf).unwrap();
    let data = env.tmp().join("data");
    let mut conf = conflist(Setup::HostLocal, "1.0.0", net, &data);
    conf["plugins"][1]["markMasqBit"] = json!(32);
    std::fs::write(netconf.join("10-calico.conflist"), conf.to_string()).unwrap();
    let pod = env.container("pod").unwrap();
    let tool = Cnitool::new(&netconf, bins::bin_dirs()).unwrap().cap_args(
        json!({"portMappings": [{"hostPort": HOST_PORT, "containerPort": 80, "protocol": "tcp"}]}),
    );
    let out = tool.run(&env.host, "add", net, pod.path()).unwrap();
    assert!(!out.success(), "{}", out.stdout_str());
    let err = out.stderr_str();
    assert!(
        err.contains("plugin type=\"portmap\" failed (add)"),
        "libcni names the plugin: {err}"
    );
    assert!(
        err.contains("MasqMarkBit must be between 0 and 31"),
        "the plugin's message is passed on: {err}"
    );
    assert_eq!(
        allocations(Setup::HostLocal, &data, net).len(),
        1,
        "calico ran before portmap failed"
    );
    tool.del(&env.host, net, pod.path()).unwrap_err(); // portmap's DEL rejects the same config
    conf["plugins"][1]
        .as_object_mut()
        .unwrap()
        .remove("markMasqBit");
    std::fs::write(netconf.join("10-calico.conflist"), conf.to_string()).unwrap();
    tool.del(&env.host, net, pod.path()).unwrap();
    let left = node::leftovers(&env.host, &[], &[HOST_PORT]).unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        allocations(Setup::HostLocal, &data, net),
        Vec::<String>::new()
    );
}
