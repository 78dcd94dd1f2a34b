//! End-to-end tests of the `portmap` plugin: the built binary in a private host namespace, real
//! TCP/UDP traffic from a client namespace, from the host itself and from 127.0.0.1, hairpin from
//! the pod, both backends, IPv6, `hostIP`, DEL without prevResult, conntrack, `masqAll`,
//! iptables-legacy, interop with Debian's Go portmap, and the calico → portmap chain as a runtime
//! runs it. Needs the built binaries: `cargo build --bins` first.
//!
//! Topology per test: the harness's host namespace with a veth to a "client" namespace
//! (192.0.2.1 + 198.51.100.1 + 2001:db8:1::1 on the host side) and Calico-like pods (veth, /32
//! and /128 host routes, default route via 169.254.1.1 / fe80::1).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use netns_tests::{bins, exec_plugin, traffic, Attachment, ExecOutput, Netns, TestEnv};
use serde_json::{json, Value};

const HOST_IP: &str = "192.0.2.1";
const HOST_IP2: &str = "198.51.100.1";
const HOST_IP6: &str = "2001:db8:1::1";
const CLIENT_IP: &str = "192.0.2.2";
const NETWORK: &str = "k8s-pod-network";
/// Debian's Go portmap (containernetworking-plugins 1.1.1), the interop and benchmark peer.
const GO_PORTMAP: &str = "/usr/lib/cni/portmap";
const BACKENDS: [&str; 2] = ["iptables", "nftables"];

// ---------------------------------------------------------------------------------------------
// Topology

fn our_portmap() -> PathBuf {
    bins::binary("portmap").expect("portmap binary (cargo build --bins)")
}

/// Runs `sh -c script` inside `ns` and panics with its output on failure.
fn sh(ns: &Netns, script: &str) -> String {
    let out = ns.output("sh", &["-c", script]).expect("run sh");
    assert!(
        out.success(),
        "script failed in {}: {script}\nstdout: {}\nstderr: {}",
        ns.name(),
        out.stdout_str(),
        out.stderr_str()
    );
    out.stdout_str()
}

/// Like [`sh`] but returns stdout even when the command fails.
fn sh_lenient(ns: &Netns, script: &str) -> String {
    ns.output("sh", &["-c", script])
        .expect("run sh")
        .stdout_str()
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// One container attached to the host: the netns, its addresses and the host-side veth.
struct Pod {
    ns: Netns,
    id: String,
    host_veth: String,
    v4: String,
    v6: String,
}

impl Pod {
    /// The result calico would have produced (host veth without sandbox, /32 and /128).
    fn prev_result(&self, dual_stack: bool) -> Value {
        let mut ips = vec![json!({"address": format!("{}/32", self.v4), "interface": 1})];
        if dual_stack {
            ips.push(json!({"address": format!("{}/128", self.v6), "interface": 1}));
        }
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": self.host_veth},
                {"name": "eth0", "sandbox": self.ns.path()}
            ],
            "ips": ips,
            "dns": {}
        })
    }
}

/// The harness's host + a client namespace; pods are added with [`Topology::pod`].
struct Topology {
    env: TestEnv,
    client: Netns,
    pods: Vec<Pod>,
}

impl Topology {
    fn new(name: &str) -> Topology {
        let env = TestEnv::new(name).expect("test env");
        let client = env.container(&format!("{name}-client")).expect("client");
        let client_tid = client.tid();
        sh(
            &env.host,
            &format!(
                "set -e
                 echo 1 > /proc/sys/net/ipv6/conf/all/forwarding
                 ip link add kh type veth peer name kc netns {client_tid}
                 ip addr add {HOST_IP}/24 dev kh
                 ip addr add {HOST_IP2}/24 dev kh
                 ip -6 addr add {HOST_IP6}/64 dev kh nodad
                 ip link set kh address 02:00:00:00:01:01 up"
            ),
        );
        sh(
            &client,
            &format!(
                "set -e
                 ip link set lo up
                 ip link set kc address 02:00:00:00:01:02 up
                 ip addr add {CLIENT_IP}/24 dev kc
                 ip addr add 198.51.100.2/24 dev kc
                 ip -6 addr add 2001:db8:1::2/64 dev kc nodad
                 ip neigh add {HOST_IP} lladdr 02:00:00:00:01:01 dev kc nud permanent
                 ip neigh add {HOST_IP2} lladdr 02:00:00:00:01:01 dev kc nud permanent
                 ip -6 neigh add {HOST_IP6} lladdr 02:00:00:00:01:01 dev kc nud permanent"
            ),
        );
        Topology {
            env,
            client,
            pods: Vec::new(),
        }
    }

    fn host(&self) -> &Netns {
        &self.env.host
    }

    /// Adds a Calico-style pod number `n` (10.244.1.<n>/32, fd00:1::<n>/128).
    fn pod(&mut self, n: u8) -> usize {
        let k = NEXT.fetch_add(1, Ordering::SeqCst);
        let ns = self
            .env
            .container(&format!("pod{n}-{k}"))
            .expect("pod netns");
        let host_veth = format!("cali{n:02x}{k:04x}");
        let v4 = format!("10.244.1.{n}");
        let v6 = format!("fd00:1::{n:x}");
        let mac = format!("02:00:00:00:02:{n:02x}");
        let tid = ns.tid();
        sh(
            self.host(),
            &format!(
                "set -e
                 ip link add {host_veth} type veth peer name eth0 netns {tid}
                 ip link set {host_veth} address ee:ee:ee:ee:ee:ee up
                 ip -6 addr add fe80::1/64 dev {host_veth} nodad
                 ip route add {v4}/32 dev {host_veth} scope link
                 ip -6 route add {v6}/128 dev {host_veth}
                 ip neigh add {v4} lladdr {mac} dev {host_veth} nud permanent
                 ip -6 neigh add {v6} lladdr {mac} dev {host_veth} nud permanent"
            ),
        );
        sh(
            &ns,
            &format!(
                "set -e
                 ip link set lo up
                 ip link set eth0 address {mac} up
                 ip addr add {v4}/32 dev eth0
                 ip -6 addr add {v6}/128 dev eth0 nodad
                 ip route add 169.254.1.1 dev eth0 scope link
                 ip route add default via 169.254.1.1 dev eth0
                 ip neigh add 169.254.1.1 lladdr ee:ee:ee:ee:ee:ee dev eth0 nud permanent
                 ip -6 route add default via fe80::1 dev eth0
                 ip -6 neigh add fe80::1 lladdr ee:ee:ee:ee:ee:ee dev eth0 nud permanent"
            ),
        );
        self.pods.push(Pod {
            ns,
            id: format!("ctr{n}-{k}-0123456789abcdef"),
            host_veth,
            v4,
            v6,
        });
        self.pods.len() - 1
    }

    /// nat table of the host as iptables-save prints it (both families).
    fn iptables_save(&self) -> String {
        sh_lenient(self.host(), "iptables-save -t nat; ip6tables-save -t nat")
    }

    fn nft_ruleset(&self) -> String {
        sh(self.host(), "nft list ruleset")
    }
}

// ---------------------------------------------------------------------------------------------
// Plugin execution

/// Result of one plugin execution.
#[derive(Debug)]
struct Exec {
    ok: bool,
    stdout: String,
    /// Only read through `Debug` in assertion messages (the plugin's log on failure).
    #[allow(dead_code)]
    stderr: String,
}

impl Exec {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }
}

impl From<ExecOutput> for Exec {
    fn from(o: ExecOutput) -> Exec {
        Exec {
            ok: o.success(),
            stdout: o.stdout_str(),
            stderr: o.stderr_str(),
        }
    }
}

/// Executes a CNI plugin binary in the host namespace like a runtime (DEL gets no netns).
fn run_plugin(host: &Netns, binary: &Path, command: &str, pod: &Pod, conf: &Value) -> Exec {
    run_plugin_env(host, binary, command, pod, conf, &[])
}

/// [`run_plugin`] with extra environment variables (e.g. a PATH selecting iptables-legacy).
fn run_plugin_env(
    host: &Netns,
    binary: &Path,
    command: &str,
    pod: &Pod,
    conf: &Value,
    extra: &[(&str, &str)],
) -> Exec {
    let stdin = serde_json::to_vec(conf).unwrap();
    let netns = if command == "DEL" {
        String::new()
    } else {
        pod.ns.path().display().to_string()
    };
    let mut env = vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", pod.id.as_str()),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    env.extend_from_slice(extra);
    exec_plugin(host, binary, &env, &stdin)
        .expect("exec plugin")
        .into()
}

/// The portmap config a runtime would send.
fn conf(backend: Option<&str>, mappings: Value, prev: Option<Value>) -> Value {
    let mut c = json!({
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "type": "portmap",
        "snat": true,
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": mappings}
    });
    if let Some(b) = backend {
        c["backend"] = json!(b);
    }
    if let Some(p) = prev {
        c["prevResult"] = p;
    }
    c
}

fn add(t: &Topology, pod: usize, backend: &str, maps: &Value, dual: bool) -> Exec {
    let p = &t.pods[pod];
    let c = conf(Some(backend), maps.clone(), Some(p.prev_result(dual)));
    run_plugin(t.host(), &our_portmap(), "ADD", p, &c)
}

fn del(t: &Topology, pod: usize, backend: &str, maps: &Value) -> Exec {
    let p = &t.pods[pod];
    let c = conf(Some(backend), maps.clone(), None);
    run_plugin(t.host(), &our_portmap(), "DEL", p, &c)
}

fn check(t: &Topology, pod: usize, backend: &str, maps: &Value, dual: bool) -> Exec {
    let p = &t.pods[pod];
    let c = conf(Some(backend), maps.clone(), Some(p.prev_result(dual)));
    run_plugin(t.host(), &our_portmap(), "CHECK", p, &c)
}

/// Per-container iptables chains / nft elements left on the host (empty when clean).
fn leftovers_in(host: &Netns, backend: &str) -> String {
    let text = match backend {
        "iptables" => sh_lenient(host, "iptables-save -t nat; ip6tables-save -t nat"),
        _ => sh(host, "nft list ruleset"),
    };
    let marker = if backend == "iptables" {
        "CNI-DN-"
    } else {
        "elements ="
    };
    text.lines()
        .filter(|l| l.contains(marker))
        .collect::<Vec<_>>()
        .join("\n")
}

fn leftovers(t: &Topology, backend: &str) -> String {
    leftovers_in(t.host(), backend)
}

fn tcp_udp() -> Value {
    json!([
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"HostPort": 5353, "ContainerPort": 53, "Protocol": "UDP"}
    ])
}

// ---------------------------------------------------------------------------------------------
// Traffic: servers that answer with the peer address they saw (shows whether the host
// masqueraded the connection), and clients with short timeouts.

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// TCP and UDP servers inside a pod: port 80/tcp answers `tcp <peer>`, 53/udp answers
/// `udp <peer>`.
struct Servers {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Servers {
    fn start(pod: &Pod) -> Servers {
        let (tcp, udp) = pod
            .ns
            .run(|| {
                (
                    TcpListener::bind("[::]:80").expect("bind tcp"),
                    UdpSocket::bind("[::]:53").expect("bind udp"),
                )
            })
            .expect("enter pod netns");
        tcp.set_nonblocking(true).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s1 = stop.clone();
        let t = std::thread::spawn(move || {
            while !s1.load(Ordering::SeqCst) {
                match tcp.accept() {
                    Ok((mut conn, peer)) => {
                        let _ =
                            conn.write_all(format!("tcp {}\n", canonical(peer.ip())).as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        let s2 = stop.clone();
        let u = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !s2.load(Ordering::SeqCst) {
                if let Ok((_, peer)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(format!("udp {}\n", canonical(peer.ip())).as_bytes(), peer);
                }
            }
        });
        Servers {
            stop,
            handles: vec![t, u],
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Connects from `ns` to `addr` and returns the server's reply line.
fn tcp_get(ns: &Netns, addr: &str) -> Result<String, String> {
    let addr: SocketAddr = addr.parse().unwrap();
    ns.run(|| {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out)
            .map_err(|e| format!("read {addr}: {e}"))?;
        Ok(out.trim().to_string())
    })
    .expect("enter netns")
}

/// Sends a datagram from `ns` to `addr` (up to 3 tries) and returns the reply.
fn udp_get(ns: &Netns, addr: &str) -> Result<String, String> {
    let bind = if addr.starts_with('[') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    udp_get_from(ns, bind, addr)
}

/// [`udp_get`] from a fixed local address and port (to reuse a conntrack entry).
fn udp_get_from(ns: &Netns, bind: &str, addr: &str) -> Result<String, String> {
    let addr: SocketAddr = addr.parse().unwrap();
    ns.run(|| {
        let s = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        s.connect(addr).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 128];
        let mut last = String::new();
        for _ in 0..3 {
            s.send(b"ping").map_err(|e| e.to_string())?;
            match s.recv(&mut buf) {
                Ok(n) => return Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string()),
                Err(e) => last = format!("recv from {addr}: {e}"),
            }
        }
        Err(last)
    })
    .expect("enter netns")
}

/// A UDP responder bound in `ns` that answers `text` to every datagram until dropped.
struct UdpResponder {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl UdpResponder {
    fn start(ns: &Netns, bind: &str, text: &'static str) -> UdpResponder {
        let bind = bind.to_string();
        let sock = ns
            .run(move || UdpSocket::bind(bind).expect("bind responder"))
            .expect("enter netns");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !s.load(Ordering::SeqCst) {
                if let Ok((_, peer)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(text.as_bytes(), peer);
                }
            }
        });
        UdpResponder {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for UdpResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A directory whose `iptables*` tools are the legacy (x_tables) variants, to put first in PATH
/// (as the node's alternatives would select them).
fn legacy_path_dir(under: &Path) -> PathBuf {
    let multi = Path::new("/usr/sbin/xtables-legacy-multi");
    assert!(
        multi.exists(),
        "iptables-legacy (xtables-legacy-multi) is required"
    );
    let dir = under.join("legacy-bin");
    std::fs::create_dir_all(&dir).unwrap();
    for tool in [
        "iptables",
        "iptables-save",
        "iptables-restore",
        "ip6tables",
        "ip6tables-save",
        "ip6tables-restore",
    ] {
        std::os::unix::fs::symlink(multi, dir.join(tool)).unwrap();
    }
    dir
}

fn go_portmap() -> PathBuf {
    let go = PathBuf::from(GO_PORTMAP);
    assert!(
        go.exists(),
        "interop test needs Debian's containernetworking-plugins ({GO_PORTMAP}): \
         apt-get install containernetworking-plugins"
    );
    go
}

// ---------------------------------------------------------------------------------------------
// Tests

fn datapath(name: &str, backend: &str) {
    let mut t = Topology::new(name);
    let pod = t.pod(5);
    let _srv = Servers::start(&t.pods[pod]);
    let maps = tcp_udp();
    let p = &t.pods[pod];
    assert!(
        tcp_get(&t.client, "192.0.2.1:8080").is_err(),
        "no DNAT before ADD"
    );

    let r = add(&t, pod, backend, &maps, false);
    assert!(r.ok, "ADD failed: {r:?}");
    let out = r.json();
    assert_eq!(out["ips"], p.prev_result(false)["ips"], "prevResult echoed");
    assert_eq!(out["interfaces"], p.prev_result(false)["interfaces"]);

    // From outside: DNAT only, the pod sees the real client address.
    assert_eq!(
        tcp_get(&t.client, "192.0.2.1:8080"),
        Ok("tcp 192.0.2.2".into())
    );
    assert_eq!(
        udp_get(&t.client, "192.0.2.1:5353"),
        Ok("udp 192.0.2.2".into())
    );
    // From the host to its own address (OUTPUT hook).
    let own = tcp_get(t.host(), "192.0.2.1:8080").expect("host -> own address");
    assert!(own.starts_with("tcp "), "{own}");
    assert!(udp_get(t.host(), "198.51.100.1:5353").is_ok());
    // From 127.0.0.1: needs route_localnet and masquerading.
    let local = tcp_get(t.host(), "127.0.0.1:8080").expect("host localhost");
    assert!(
        local.starts_with("tcp ") && local != "tcp 127.0.0.1",
        "{local}"
    );
    let local_udp = udp_get(t.host(), "127.0.0.1:5353").expect("host localhost udp");
    assert_ne!(local_udp, "udp 127.0.0.1");
    let rl = t
        .host()
        .sysctl(&format!("net/ipv4/conf/{}/route_localnet", p.host_veth))
        .unwrap();
    assert_eq!(rl, "1");
    // Hairpin: the pod reaches itself through the host port, masqueraded (an unmasqueraded
    // packet from its own address would be dropped by the pod).
    let hp = tcp_get(&p.ns, "192.0.2.1:8080").expect("hairpin");
    assert_ne!(hp, format!("tcp {}", p.v4));
    assert!(udp_get(&p.ns, "192.0.2.1:5353").is_ok(), "hairpin udp");

    // CHECK passes for an IPv4-only pod.
    let c = check(&t, pod, backend, &maps, false);
    assert!(c.ok, "CHECK failed: {c:?}");

    // DEL without prevResult and without netns removes everything.
    let d = del(&t, pod, backend, &maps);
    assert!(d.ok, "DEL failed: {d:?}");
    assert!(
        tcp_get(&t.client, "192.0.2.1:8080").is_err(),
        "DNAT gone after DEL"
    );
    assert!(udp_get(&t.client, "192.0.2.1:5353").is_err());
    assert_eq!(leftovers(&t, backend), "");
    let d2 = del(&t, pod, backend, &maps);
    assert!(d2.ok, "second DEL must succeed: {d2:?}");
    let c2 = check(&t, pod, backend, &maps, false);
    assert!(!c2.ok, "CHECK after DEL must fail");
}

#[test]
fn datapath_iptables() {
    datapath("pm-dp-ipt", "iptables");
}

#[test]
fn datapath_nftables() {
    datapath("pm-dp-nft", "nftables");
}

#[test]
fn host_ip_restricts_the_mapping() {
    for backend in BACKENDS {
        let mut t = Topology::new("pm-hostip");
        let pod = t.pod(7);
        let _srv = Servers::start(&t.pods[pod]);
        let maps = json!([
            {"hostPort": 8081, "containerPort": 80, "protocol": "tcp", "hostIP": HOST_IP2},
            {"hostPort": 8082, "containerPort": 80, "protocol": "tcp", "hostIP": "2001:db8::99"}
        ]);
        let r = add(&t, pod, backend, &maps, false);
        assert!(r.ok, "{backend} ADD: {r:?}");
        assert_eq!(
            tcp_get(&t.client, "198.51.100.1:8081"),
            Ok("tcp 198.51.100.2".into()),
            "{backend}: mapped host IP"
        );
        assert!(
            tcp_get(&t.client, "192.0.2.1:8081").is_err(),
            "{backend}: other host IP must not be forwarded"
        );
        assert!(tcp_get(&t.client, "192.0.2.1:8082").is_err());
        let c = check(&t, pod, backend, &maps, false);
        assert!(c.ok, "{backend} CHECK: {c:?}");
        let d = del(&t, pod, backend, &maps);
        assert!(d.ok, "{backend} DEL: {d:?}");
        assert!(tcp_get(&t.client, "198.51.100.1:8081").is_err());
        assert_eq!(leftovers(&t, backend), "", "{backend}");
    }
}

#[test]
fn ipv6_dual_stack() {
    for backend in BACKENDS {
        let mut t = Topology::new("pm-v6");
        let pod = t.pod(9);
        let _srv = Servers::start(&t.pods[pod]);
        let maps = tcp_udp();
        let r = add(&t, pod, backend, &maps, true);
        assert!(r.ok, "{backend} ADD: {r:?}");
        let p = &t.pods[pod];
        assert_eq!(
            tcp_get(&t.client, "[2001:db8:1::1]:8080"),
            Ok("tcp 2001:db8:1::2".into()),
            "{backend} v6 tcp"
        );
        assert_eq!(
            udp_get(&t.client, "[2001:db8:1::1]:5353"),
            Ok("udp 2001:db8:1::2".into()),
            "{backend} v6 udp"
        );
        assert_eq!(
            tcp_get(&t.client, "192.0.2.1:8080"),
            Ok("tcp 192.0.2.2".into())
        );
        let hp = tcp_get(&p.ns, "[2001:db8:1::1]:8080").expect("v6 hairpin");
        assert_ne!(
            hp,
            format!("tcp {}", p.v6),
            "{backend} v6 hairpin masqueraded"
        );
        let c = check(&t, pod, backend, &maps, true);
        assert!(c.ok, "{backend} CHECK: {c:?}");
        let d = del(&t, pod, backend, &maps);
        assert!(d.ok, "{backend} DEL: {d:?}");
        assert!(tcp_get(&t.client, "[2001:db8:1::1]:8080").is_err());
        assert_eq!(leftovers(&t, backend), "", "{backend}");
    }
}

#[test]
fn del_removes_only_its_own_rules() {
    for backend in BACKENDS {
        let mut t = Topology::new("pm-delown");
        let a = t.pod(11);
        let b = t.pod(12);
        let _sa = Servers::start(&t.pods[a]);
        let _sb = Servers::start(&t.pods[b]);
        let maps_a = json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]);
        let maps_b = json!([{"hostPort": 8090, "containerPort": 80, "protocol": "tcp"}]);
        assert!(add(&t, a, backend, &maps_a, true).ok);
        assert!(add(&t, b, backend, &maps_b, true).ok);
        assert!(tcp_get(&t.client, "192.0.2.1:8080").is_ok());
        assert!(tcp_get(&t.client, "192.0.2.1:8090").is_ok());

        let d = del(&t, a, backend, &maps_a);
        assert!(d.ok, "{backend} DEL a: {d:?}");
        assert!(
            tcp_get(&t.client, "192.0.2.1:8080").is_err(),
            "{backend}: a removed"
        );
        assert_eq!(
            tcp_get(&t.client, "192.0.2.1:8090"),
            Ok("tcp 192.0.2.2".into()),
            "{backend}: b untouched"
        );
        assert!(tcp_get(&t.client, "[2001:db8:1::1]:8090").is_ok());
        assert!(
            check(&t, b, backend, &maps_b, true).ok,
            "{backend}: CHECK b"
        );
        assert!(
            !check(&t, a, backend, &maps_a, true).ok,
            "{backend}: CHECK a"
        );
        // A DEL of `a` that names b's port too must not remove b's mapping.
        let both = json!([
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 8090, "containerPort": 80, "protocol": "tcp"}
        ]);
        assert!(del(&t, a, backend, &both).ok);
        assert!(
            tcp_get(&t.client, "192.0.2.1:8090").is_ok(),
            "{backend}: b survives"
        );
        assert!(del(&t, b, backend, &maps_b).ok);
        assert_eq!(leftovers(&t, backend), "", "{backend}");
    }
}

#[test]
fn repeated_add_then_del_leaves_nothing() {
    for backend in BACKENDS {
        let mut t = Topology::new("pm-readd");
        let pod = t.pod(13);
        let _srv = Servers::start(&t.pods[pod]);
        let maps = tcp_udp();
        assert!(add(&t, pod, backend, &maps, true).ok);
        let again = add(&t, pod, backend, &maps, true);
        assert!(again.ok, "{backend} repeated ADD: {again:?}");
        if backend == "iptables" {
            let save = t.iptables_save();
            let entries = save
                .lines()
                .filter(|l| l.starts_with("-A CNI-HOSTPORT-DNAT") && l.contains("--dports 8080"))
                .count();
            assert_eq!(
                entries, 2,
                "one v4 + one v6 entry rule, no duplicates:\n{save}"
            );
        }
        assert_eq!(
            tcp_get(&t.client, "192.0.2.1:8080"),
            Ok("tcp 192.0.2.2".into())
        );
        assert!(del(&t, pod, backend, &maps).ok);
        assert!(tcp_get(&t.client, "192.0.2.1:8080").is_err());
        assert_eq!(leftovers(&t, backend), "", "{backend}");
    }
}

/// iptables: a DEL whose mappings differ from the ADD's (the entry rules no longer match the
/// rendering) still removes every rule of the container, found through the chains upstream puts
/// them in, and nothing of another container.
#[test]
fn iptables_del_with_changed_mappings_removes_everything() {
    let mut t = Topology::new("pm-delchg");
    let a = t.pod(15);
    let b = t.pod(16);
    let _sa = Servers::start(&t.pods[a]);
    let _sb = Servers::start(&t.pods[b]);
    let maps_a = json!([
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 8081, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}
    ]);
    let maps_b = json!([{"hostPort": 8090, "containerPort": 80, "protocol": "tcp"}]);
    assert!(add(&t, a, "iptables", &maps_a, true).ok);
    assert!(add(&t, b, "iptables", &maps_b, true).ok);
    let only_one = json!([{"hostPort": 8081, "containerPort": 80, "protocol": "tcp"}]);
    let d = del(&t, a, "iptables", &only_one);
    assert!(d.ok, "DEL with changed mappings: {d:?}");
    let save = t.iptables_save();
    assert!(
        !save.contains(&t.pods[a].id),
        "entry rules of a left:\n{save}"
    );
    assert!(tcp_get(&t.client, "192.0.2.1:8080").is_err());
    assert!(udp_get(&t.client, "192.0.2.1:5353").is_err());
    assert_eq!(
        tcp_get(&t.client, "192.0.2.1:8090"),
        Ok("tcp 192.0.2.2".into()),
        "b untouched"
    );
    assert!(check(&t, b, "iptables", &maps_b, true).ok);
    assert!(del(&t, b, "iptables", &maps_b).ok);
    assert_eq!(leftovers(&t, "iptables"), "");
}

/// nftables keeps one owner per host port: a second container cannot take a port that is
/// mapped, and its DEL (which runtimes send after a failed ADD) leaves the first one alone.
#[test]
fn nftables_port_conflict_is_refused_and_del_is_safe() {
    let mut t = Topology::new("pm-conflict");
    let a = t.pod(21);
    let b = t.pod(22);
    let _sa = Servers::start(&t.pods[a]);
    let maps = json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]);
    assert!(add(&t, a, "nftables", &maps, false).ok);
    let r = add(&t, b, "nftables", &maps, false);
    assert!(!r.ok, "conflicting ADD must fail");
    let msg = r.json()["msg"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("already mapped"), "{msg}");
    assert!(del(&t, b, "nftables", &maps).ok);
    assert_eq!(
        tcp_get(&t.client, "192.0.2.1:8080"),
        Ok("tcp 192.0.2.2".into())
    );
    assert!(check(&t, a, "nftables", &maps, false).ok);
}

#[test]
fn add_requires_prev_result_and_no_mappings_is_a_noop() {
    let mut t = Topology::new("pm-noop");
    let pod = t.pod(31);
    let p = &t.pods[pod];
    let maps = tcp_udp();
    let r = run_plugin(t.host(), &our_portmap(), "ADD", p, &conf(None, maps, None));
    assert!(!r.ok);
    assert_eq!(
        r.json()["msg"],
        "must be called as chained plugin: prevResult is missing"
    );

    // No mappings: prevResult echoed, DEL ok, and no netfilter state is created at all.
    let prev = p.prev_result(false);
    let r = run_plugin(
        t.host(),
        &our_portmap(),
        "ADD",
        p,
        &conf(None, json!([]), Some(prev.clone())),
    );
    assert!(r.ok, "{r:?}");
    assert_eq!(r.json()["ips"], prev["ips"]);
    let mut no_caps = conf(None, json!([]), None);
    no_caps.as_object_mut().unwrap().remove("runtimeConfig");
    assert!(run_plugin(t.host(), &our_portmap(), "DEL", p, &no_caps).ok);
    assert_eq!(t.nft_ruleset().trim(), "");
    assert!(!t.iptables_save().contains("CNI-"));
}

/// Bad configuration is refused with code 7 and an error naming the field, before anything is
/// installed (also on DEL, like upstream).
#[test]
fn invalid_config_names_the_field() {
    let mut t = Topology::new("pm-badconf");
    let pod = t.pod(33);
    let p = &t.pods[pod];
    let prev = Some(p.prev_result(false));
    let one = json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]);
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut c = conf(Some("iptables"), one.clone(), prev.clone());
    c["markMasqBit"] = json!(32);
    cases.push((c, "\"markMasqBit\": MasqMarkBit must be between 0 and 31"));
    let mut c = conf(Some("iptables"), one.clone(), prev.clone());
    c["markMasqBit"] = json!(5);
    c["externalSetMarkChain"] = json!("KUBE-MARK-MASQ");
    cases.push((c, "Cannot specify externalSetMarkChain and markMasqBit"));
    let c = conf(
        Some("iptables"),
        json!([one[0].clone(), {"hostPort": 9000, "containerPort": 90, "protocol": "icmp"}]),
        prev.clone(),
    );
    cases.push((c, "\"runtimeConfig.portMappings[1].protocol\""));
    let c = conf(
        Some("nftables"),
        json!([{"hostPort": 0, "containerPort": 80, "protocol": "tcp"}]),
        prev.clone(),
    );
    cases.push((
        c,
        "\"runtimeConfig.portMappings[0].hostPort\": Invalid host port number: 0",
    ));
    let c = conf(
        Some("nftables"),
        json!([{"hostPort": 70000, "containerPort": 80}]),
        prev.clone(),
    );
    cases.push((c, "hostPort"));
    let c = conf(Some("bpf"), one.clone(), prev.clone());
    cases.push((c, "\"backend\": unrecognized backend \"bpf\""));
    for (c, want) in cases {
        for cmd in ["ADD", "DEL"] {
            let r = run_plugin(t.host(), &our_portmap(), cmd, p, &c);
            assert!(!r.ok, "{cmd} {c} must fail");
            let e = r.json();
            assert!(
                e["msg"].as_str().unwrap_or_default().contains(want),
                "{cmd}: {e} should mention {want}"
            );
            assert!(
                e["code"] == 7 || e["code"] == 6,
                "{cmd}: config errors are code 7 (6 when undecodable): {e}"
            );
        }
    }
    assert_eq!(t.nft_ruleset().trim(), "");
    assert!(!t.iptables_save().contains("CNI-"));
}

/// SCTP mappings are installed with the protocol's own match in both backends and removed again
/// (the kernel here has no SCTP sockets, so no traffic is sent).
#[test]
fn sctp_mappings_are_installed_and_removed() {
    for backend in BACKENDS {
        let mut t = Topology::new("pm-sctp");
        let pod = t.pod(35);
        let maps = json!([{"hostPort": 3868, "containerPort": 3868, "protocol": "sctp"}]);
        let r = add(&t, pod, backend, &maps, true);
        assert!(r.ok, "{backend} ADD: {r:?}");
        if backend == "iptables" {
            let save = t.iptables_save();
            assert!(
                save.contains(
                    "-p sctp -m sctp --dport 3868 -j DNAT --to-destination 10.244.1.35:3868"
                ),
                "{save}"
            );
            assert!(
                save.contains("--to-destination [fd00:1::23]:3868"),
                "{save}"
            );
        } else {
            let rs = t.nft_ruleset();
            assert!(rs.contains("sctp . 3868 : 10.244.1.35 . 3868"), "{rs}");
            assert!(rs.contains("sctp . 3868 : fd00:1::23 . 3868"), "{rs}");
        }
        assert!(check(&t, pod, backend, &maps, true).ok, "{backend} CHECK");
        assert!(del(&t, pod, backend, &maps).ok, "{backend} DEL");
        assert_eq!(leftovers(&t, backend), "", "{backend}");
    }
}

/// A node can switch between Debian's Go portmap (1.1.1) and ours in both directions: each DEL
/// removes the rules the other plugin created, and the shared chains are compatible.
#[test]
fn interop_with_go_portmap() {
    let go = go_portmap();
    let mut t = Topology::new("pm-interop");
    let a = t.pod(41);
    let b = t.pod(42);
    let _sa = Servers::start(&t.pods[a]);
    let _sb = Servers::start(&t.pods[b]);
    let maps_a = json!([
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}
    ]);
    let maps_b = json!([{"hostPort": 8090, "containerPort": 80, "protocol": "tcp"}]);

    // Go ADD a, our ADD b (reusing the Go-created shared chains).
    let pa = &t.pods[a];
    let r = run_plugin(
        t.host(),
        &go,
        "ADD",
        pa,
        &conf(None, maps_a.clone(), Some(pa.prev_result(false))),
    );
    assert!(r.ok, "Go ADD: {r:?}");
    assert!(add(&t, b, "iptables", &maps_b, false).ok);
    assert_eq!(
        tcp_get(&t.client, "192.0.2.1:8080"),
        Ok("tcp 192.0.2.2".into())
    );
    assert_eq!(
        tcp_get(&t.client, "192.0.2.1:8090"),
        Ok("tcp 192.0.2.2".into())
    );
    assert!(
        tcp_get(t.host(), "127.0.0.1:8090").is_ok(),
        "our localhost path with Go's chains"
    );
    let save = t.iptables_save();
    assert_eq!(
        save.matches("-A POSTROUTING -m comment --comment \"CNI portfwd requiring masquerade\"")
            .count(),
        1,
        "shared rules not duplicated:\n{save}"
    );

    // Our DEL removes Go's rules for a; Go's DEL removes ours for b.
    let d = del(&t, a, "iptables", &maps_a);
    assert!(d.ok, "our DEL of Go rules: {d:?}");
    assert!(tcp_get(&t.client, "192.0.2.1:8080").is_err());
    assert!(tcp_get(&t.client, "192.0.2.1:8090").is_ok());
    let pb = &t.pods[b];
    let r = run_plugin(t.host(), &go, "DEL", pb, &conf(None, maps_b.clone(), None));
    assert!(r.ok, "Go DEL of our rules: {r:?}");
    assert!(tcp_get(&t.client, "192.0.2.1:8090").is_err());
    assert_eq!(leftovers(&t, "iptables"), "");

    // The other order on a clean node: our ADD creates the shared chains, Go's DEL cleans up.
    let mut t2 = Topology::new("pm-interop2");
    let c = t2.pod(43);
    let _sc = Servers::start(&t2.pods[c]);
    assert!(add(&t2, c, "iptables", &maps_a, false).ok);
    assert_eq!(
        tcp_get(&t2.client, "192.0.2.1:8080"),
        Ok("tcp 192.0.2.2".into())
    );
    let r = run_plugin(
        t2.host(),
        &go,
        "DEL",
        &t2.pods[c],
        &conf(None, maps_a.clone(), None),
    );
    assert!(r.ok, "Go DEL: {r:?}");
    assert!(tcp_get(&t2.client, "192.0.2.1:8080").is_err());
    assert_eq!(leftovers(&t2, "iptables"), "");
}

/// Stale UDP conntrack entries are removed on ADD (an unanswered flow to the host port would
/// otherwise never be DNATed) and on DEL (the flow would otherwise keep going to the old pod).
#[test]
fn udp_conntrack_is_flushed_on_add_and_del() {
    for backend in BACKENDS {
        let mut t = Topology::new("pm-ct");
        let pod = t.pod(51);
        let _srv = Servers::start(&t.pods[pod]);
        let maps = json!([{"hostPort": 5353, "containerPort": 53, "protocol": "udp"}]);
        let from = "192.0.2.2:40053";
        // Before ADD: the flow reaches the host, nobody answers, conntrack remembers it.
        assert!(udp_get_from(&t.client, from, "192.0.2.1:5353").is_err());
        assert!(add(&t, pod, backend, &maps, false).ok);
        assert_eq!(
            udp_get_from(&t.client, from, "192.0.2.1:5353"),
            Ok("udp 192.0.2.2".into()),
            "{backend}: same 5-tuple is DNATed after ADD"
        );
        // After DEL a host process on the port must get the same flow, not the old pod.
        assert!(del(&t, pod, backend, &maps).ok);
        let _host = UdpResponder::start(t.host(), "0.0.0.0:5353", "host");
        assert_eq!(
            udp_get_from(&t.client, from, "192.0.2.1:5353"),
            Ok("host".into()),
            "{backend}: flow no longer DNATed after DEL"
        );
    }
}

/// `masqAll`: every connection to the host port is masqueraded (for plugins whose pods' traffic
/// bypasses the host's routing); without it, outside clients keep their address.
#[test]
fn masq_all_masquerades_outside_clients() {
    for backend in BACKENDS {
        let mut t = Topology::new("pm-masqall");
        let pod = t.pod(61);
        let _srv = Servers::start(&t.pods[pod]);
        let maps = tcp_udp();
        let p = &t.pods[pod];
        let mut c = conf(Some(backend), maps.clone(), Some(p.prev_result(true)));
        c["masqAll"] = json!(true);
        let r = run_plugin(t.host(), &our_portmap(), "ADD", p, &c);
        assert!(r.ok, "{backend} ADD: {r:?}");
        let seen = tcp_get(&t.client, "192.0.2.1:8080").expect("client");
        assert!(
            seen.starts_with("tcp ") && seen != "tcp 192.0.2.2",
            "{backend}: {seen}"
        );
        let seen = udp_get(&t.client, "192.0.2.1:5353").expect("client udp");
        assert_ne!(seen, "udp 192.0.2.2", "{backend}");
        let seen6 = tcp_get(&t.client, "[2001:db8:1::1]:8080").expect("client v6");
        assert_ne!(seen6, "tcp 2001:db8:1::2", "{backend}");
        assert!(
            tcp_get(t.host(), "127.0.0.1:8080").is_ok(),
            "{backend} localhost"
        );
        assert!(
            tcp_get(&p.ns, "192.0.2.1:8080").is_ok(),
            "{backend} hairpin"
        );
        let mut d = conf(Some(backend), maps.clone(), None);
        d["masqAll"] = json!(true);
        assert!(run_plugin(t.host(), &our_portmap(), "DEL", p, &d).ok);
        assert_eq!(leftovers(&t, backend), "", "{backend}");
    }
}

/// The iptables backend works the same with iptables-legacy (selected through PATH, as the
/// node's alternatives would): ADD, repeated ADD, DEL through the save-based path, second DEL.
#[test]
fn datapath_iptables_legacy() {
    let mut t = Topology::new("pm-legacy");
    let legacy = legacy_path_dir(t.env.tmp());
    let path = format!(
        "{}:{}",
        legacy.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let pod = t.pod(71);
    let _srv = Servers::start(&t.pods[pod]);
    let maps = tcp_udp();
    let p = &t.pods[pod];
    let run = |cmd: &str, prev: bool| {
        let c = conf(
            Some("iptables"),
            maps.clone(),
            prev.then(|| p.prev_result(false)),
        );
        run_plugin_env(t.host(), &our_portmap(), cmd, p, &c, &[("PATH", &path)])
    };
    let r = run("ADD", true);
    assert!(r.ok, "ADD: {r:?}");
    assert!(run("ADD", true).ok, "repeated ADD");
    let legacy_save = || sh(t.host(), "iptables-legacy-save -t nat");
    assert!(
        legacy_save().contains("CNI-DN-"),
        "rules are in the legacy tables"
    );
    assert!(
        !t.iptables_save().contains("CNI-DN-"),
        "nothing in the nft-based tables"
    );
    assert_eq!(
        tcp_get(&t.client, "192.0.2.1:8080"),
        Ok("tcp 192.0.2.2".into())
    );
    assert!(tcp_get(t.host(), "127.0.0.1:8080").is_ok());
    assert!(tcp_get(&p.ns, "192.0.2.1:8080").is_ok(), "hairpin");
    assert!(run("CHECK", true).ok);
    assert!(run("DEL", false).ok);
    assert!(!legacy_save().contains("CNI-DN-"), "{}", legacy_save());
    assert!(tcp_get(&t.client, "192.0.2.1:8080").is_err());
    assert!(run("DEL", false).ok, "second DEL");
}

/// The seed conflist's shape end to end, through the harness's libcni-like runner: calico with
/// host-local IPAM (a concrete subnet; local datastore and no `policy`, which would need a
/// Kubernetes API) then portmap (`snat`, capability `portMappings`), cniVersion
/// 0.3.1 (so DEL gets no prevResult). HTTP reaches the pod through the host port from another
/// namespace and from the host's 127.0.0.1; after DEL no rule of the pod is left.
#[test]
fn calico_then_portmap_chain_serves_http_via_host_port() {
    for backend in [None, Some("nftables")] {
        let label = backend.unwrap_or("default");
        let env = TestEnv::new(&format!("pm-chain-{}", &label[..3])).unwrap();
        let client = env.container("pm-chain-client").unwrap();
        netns_tests::veth_pair(&env.host, "kh", &client, "kc").unwrap();
        env.host.add_addr("kh", "192.0.2.1/24").unwrap();
        client.add_addr("kc", "192.0.2.2/24").unwrap();
        client.set_link_up("lo").unwrap();

        let dir = env.tmp();
        let mut portmap =
            json!({"type": "portmap", "snat": true, "capabilities": {"portMappings": true}});
        if let Some(b) = backend {
            portmap["backend"] = json!(b);
        }
        let conflist = json!({
            "name": NETWORK,
            "cniVersion": "0.3.1",
            "plugins": [
                {
                    "type": "calico",
                    "log_level": "info",
                    "log_file_path": dir.join("cni.log"),
                    "datastore_type": "local",
                    "nodename": "node-1",
                    "mtu": 0,
                    "ipam": {"type": "host-local", "subnet": "10.244.7.0/24", "dataDir": dir.join("ipam")}
                },
                portmap
            ]
        });
        let chain = env.chain(&conflist).unwrap().capability_arg(
            "portMappings",
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
        );
        let pod = env.container("pm-chain-pod").unwrap();
        let att = Attachment::new("ctr-portmap-e2e", &pod)
            .arg("K8S_POD_NAMESPACE", "default")
            .arg("K8S_POD_NAME", "web");
        let result = chain.add(&att).unwrap();
        let pod_ip: IpAddr = result["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no pod address in {result}"));
        assert!(
            pod_ip.to_string().starts_with("10.244.7."),
            "{label}: {result}"
        );
        let host_veth = result["interfaces"][0]["name"].as_str().unwrap();
        assert_eq!(
            env.host
                .sysctl(&format!("net/ipv4/conf/{host_veth}/route_localnet"))
                .unwrap(),
            "1",
            "{label}"
        );

        let _web =
            traffic::http_server(&pod, SocketAddr::new(pod_ip, 80), "hello from pod").unwrap();
        let timeout = Duration::from_secs(3);
        let via_host: SocketAddr = "192.0.2.1:8080".parse().unwrap();
        assert_eq!(
            traffic::http_get(&client, via_host, "/", timeout).unwrap(),
            (200, "hello from pod".to_string()),
            "{label}: from another namespace"
        );
        let localhost: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            traffic::http_get(&env.host, localhost, "/", timeout).unwrap(),
            (200, "hello from pod".to_string()),
            "{label}: from the host's 127.0.0.1"
        );

        chain.del(&att).unwrap();
        assert!(
            traffic::http_get(&client, via_host, "/", Duration::from_secs(1)).is_err(),
            "{label}: host port closed after DEL"
        );
        let ipt = leftovers_in(&env.host, "iptables");
        assert_eq!(ipt, "", "{label}: iptables rules left");
        let nft = leftovers_in(&env.host, "nftables");
        assert_eq!(nft, "", "{label}: nft elements left");
        let save = sh_lenient(&env.host, "iptables-save -t nat");
        assert!(
            !save.contains("ctr-portmap-e2e"),
            "{label}: entry rule left:\n{save}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The iptables backend's netlink path against iptables-nft itself

/// Every rule shape the iptables backend writes over netlink is byte-identical (counters aside)
/// to what iptables-nft makes of the same rule text, and lists back as that text: this is what
/// lets `iptables -D` (the Go plugin's DEL) and `iptables-save` treat our rules as their own.
#[test]
fn iptables_netlink_rules_are_encoded_like_iptables_nft() {
    use portmap::iptables::{direct, render};
    use portmap::{Attachment as PmAttachment, Family, PortMapConf, PortMapping, Request};

    let ns = Netns::new_host("pm-encoding").unwrap();
    /// (host port, container port, protocol, hostIP)
    type Mappings<'a> = &'a [(u16, u16, &'a str, &'a str)];
    let cases: [(Value, Mappings, &str); 7] = [
        (
            json!({}),
            &[(8080, 80, "tcp", ""), (5353, 53, "udp", "")],
            "10.244.0.5/32",
        ),
        (
            json!({}),
            &[(8080, 80, "tcp", ""), (5353, 53, "udp", "")],
            "fd00::5/128",
        ),
        (
            json!({}),
            &[
                (8080, 80, "tcp", "192.0.2.10"),
                (8081, 81, "tcp", "0.0.0.0"),
            ],
            "10.244.0.6/32",
        ),
        (
            json!({"masqAll": true}),
            &[(8080, 80, "tcp", "")],
            "10.244.0.7/32",
        ),
        (
            json!({"masqAll": true}),
            &[(8080, 80, "udp", "2001:db8::1")],
            "fd00::7/128",
        ),
        (
            json!({"externalSetMarkChain": "KUBE-MARK-MASQ"}),
            &[(8080, 80, "tcp", "")],
            "10.244.0.8/32",
        ),
        (
            json!({"snat": false}),
            &[(8080, 80, "tcp", "")],
            "10.244.0.9/32",
        ),
    ];
    let many: Vec<(u16, u16, &str, &str)> = (0..17).map(|i| (9000 + i, 80, "tcp", "")).collect();
    let many_case = (json!({}), many.as_slice(), "10.244.0.10/32");
    let mut checked = 0;
    for (i, (extra, maps, addr)) in cases.iter().cloned().chain([many_case]).enumerate() {
        let mut conf_json = json!({"cniVersion": "1.0.0", "name": NETWORK, "type": "portmap"});
        conf_json
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let conf = PortMapConf::from_json(&conf_json).unwrap();
        let mappings: Vec<PortMapping> = maps
            .iter()
            .map(|(h, c, p, ip)| PortMapping::from_parts(*h as i64, *c as i64, p, ip).unwrap())
            .collect();
        let container_id = format!("enc{i}");
        let req = Request {
            conf: &conf,
            attachment: PmAttachment {
                network: NETWORK,
                container_id: &container_id,
            },
            mappings: &mappings,
        };
        let addr: ipnetwork::IpNetwork = addr.parse().unwrap();
        let family = Family::of(&addr.ip());
        let (tool, nf) = match family {
            Family::V4 => ("iptables", nf_tables::Family::Ipv4),
            Family::V6 => ("ip6tables", nf_tables::Family::Ipv6),
        };
        let mut rules = render::entry_rules(&req, family);
        rules.extend(render::dnat_rules(&req, &addr));
        // The chains the rules jump to, then the rules as iptables makes them.
        let dn = req.attachment.dnat_chain();
        for chain in ["REF", "CNI-HOSTPORT-SETMARK", "KUBE-MARK-MASQ", dn.as_str()] {
            let _ = ns.output(tool, &["-t", "nat", "-N", chain]);
        }
        for r in &rules {
            let mut args = vec!["-t", "nat", "-A", "REF"];
            args.extend(r.iter().map(String::as_str));
            let out = ns.output(tool, &args).unwrap();
            assert!(out.success(), "{tool} {args:?}: {}", out.stderr_str());
        }
        let encoded: Vec<_> = rules
            .iter()
            .map(|r| direct::encode(family, r).expect("encodable"))
            .collect();
        let reference = ns
            .run(|| {
                nf_tables::NfSocket::new()
                    .unwrap()
                    .rules(nf, "nat", "REF")
                    .unwrap()
            })
            .unwrap();
        assert_eq!(reference.len(), rules.len());
        for ((have, want), text) in reference.iter().zip(&encoded).zip(&rules) {
            assert!(
                have.matches(&want.exprs),
                "case {i}: {text:?}\niptables-nft: {:?}\nours:         {:?}",
                have.exprs,
                want.exprs
            );
            checked += 1;
        }
        // Written over netlink into a twin chain, the rules list back as the same text.
        ns.run(|| {
            let mut b = nf_tables::Batch::new();
            b.add_chain(nf, "nat", "OURS");
            for r in &encoded {
                b.append_rule(nf, "nat", "OURS", r);
            }
            nf_tables::NfSocket::new().unwrap().apply(&b).unwrap();
        })
        .unwrap();
        let listing = |chain: &str| -> Vec<String> {
            let out = ns.output(tool, &["-t", "nat", "-S", chain]).unwrap();
            assert!(out.success(), "{}", out.stderr_str());
            out.stdout_str()
                .lines()
                .skip(1)
                .map(|l| l.replacen(chain, "X", 1))
                .collect()
        };
        assert_eq!(listing("OURS"), listing("REF"), "case {i}");
        for chain in ["REF", "OURS", dn.as_str()] {
            sh(
                &ns,
                &format!("{tool} -t nat -F {chain} && {tool} -t nat -X {chain}"),
            );
        }
    }
    assert!(checked > 30, "only {checked} rules compared");
}

/// On an iptables-nft node whose shared rules exist, a pod's rules go over nf_tables netlink and
/// DEL finds the entry rules at the handles ADD gave them; rules written by iptables-restore (the
/// node's first ADD) are found by listing `CNI-HOSTPORT-DNAT` instead. Traffic decides that the
/// rules work; the plugin's debug log says which path was taken.
#[test]
fn iptables_pod_rules_go_over_netlink() {
    let mut t = Topology::new("pm-netlink");
    let a = t.pod(51);
    let b = t.pod(52);
    let _sa = Servers::start(&t.pods[a]);
    let _sb = Servers::start(&t.pods[b]);
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("portmap.log");
    let run = |verb: &str, pod: usize, port: u16| {
        let p = &t.pods[pod];
        let maps = json!([{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]);
        let prev = (verb == "ADD").then(|| p.prev_result(false));
        let mut c = conf(Some("iptables"), maps, prev);
        c["log_level"] = json!("debug");
        c["log_file_path"] = json!(log.to_str().unwrap());
        let _ = std::fs::remove_file(&log);
        let r = run_plugin(t.host(), &our_portmap(), verb, p, &c);
        assert!(r.ok, "{verb} pod {pod}: {r:?}");
        std::fs::read_to_string(&log).unwrap_or_default()
    };

    let first = run("ADD", a, 8080);
    // The node's first ADD creates the shared chains and rules: iptables-restore.
    assert!(first.contains("exec iptables-restore"), "{first}");
    assert!(!first.contains("over nf_tables netlink"), "{first}");
    let second = run("ADD", b, 8090);
    assert!(
        second.contains("ipv4 ADD over nf_tables netlink: pod rules added"),
        "{second}"
    );
    assert_eq!(
        tcp_get(&t.client, "192.0.2.1:8080"),
        Ok("tcp 192.0.2.2".into())
    );
    assert_eq!(
        tcp_get(&t.client, "192.0.2.1:8090"),
        Ok("tcp 192.0.2.2".into())
    );
    assert!(tcp_get(t.host(), "127.0.0.1:8090").is_ok());

    let del_b = run("DEL", b, 8090);
    assert!(
        del_b.contains("ipv4 DEL over nf_tables netlink: entry rules at the handles ADD gave them"),
        "{del_b}"
    );
    // IPv4 needed no iptables tool at all; this pod has no IPv6 rules, which only ip6tables
    // can tell for sure.
    assert!(!del_b.contains("exec iptables"), "{del_b}");
    assert!(del_b.contains("ipv6 netlink DEL not used"), "{del_b}");
    assert!(tcp_get(&t.client, "192.0.2.1:8090").is_err());
    assert_eq!(
        tcp_get(&t.client, "192.0.2.1:8080"),
        Ok("tcp 192.0.2.2".into())
    );

    let del_a = run("DEL", a, 8080);
    assert!(
        del_a.contains("found by listing CNI-HOSTPORT-DNAT"),
        "{del_a}"
    );
    assert!(tcp_get(&t.client, "192.0.2.1:8080").is_err());
    let again = run("DEL", a, 8080);
    assert!(
        again.contains("no chain of this container in nf_tables"),
        "{again}"
    );
    assert_eq!(leftovers(&t, "iptables"), "");
}
