//! Test topology and helpers for the portmap root tests.
//!
//! Per test: a private "host" netns (plugins run there), a Calico-like "container" netns (veth,
//! pod IP as a /32 route on the host side, default route via 169.254.1.1) and a "client" netns
//! wired to the host with TEST-NET addresses. Everything is a `netns::testutil::TempNetNs`, so it
//! disappears when the test ends, even on panic. Traffic is real TCP/UDP through std sockets.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use netns::testutil::TempNetNs;
use serde_json::{json, Value};

pub const HOST_IP: &str = "192.0.2.1";
pub const HOST_IP2: &str = "198.51.100.1";
pub const HOST_IP6: &str = "2001:db8:1::1";
pub const CLIENT_IP: &str = "192.0.2.2";
pub const NETWORK: &str = "k8s-pod-network";
/// Debian's Go portmap (containernetworking-plugins 1.1.1), the interop peer.
pub const GO_PORTMAP: &str = "/usr/lib/cni/portmap";

pub fn our_portmap() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portmap"))
}

/// Runs `sh -c script` inside `ns` and panics with its output on failure.
pub fn sh(ns: &TempNetNs, script: &str) -> String {
    let out = ns
        .run(|| {
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .output()
                .expect("run sh")
        })
        .expect("enter netns");
    assert!(
        out.status.success(),
        "script failed: {script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Like [`sh`] but returns stdout even when the command fails.
pub fn sh_lenient(ns: &TempNetNs, script: &str) -> String {
    let out = ns
        .run(|| {
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .output()
                .expect("run sh")
        })
        .expect("enter netns");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// One container attached to the host: the netns, its addresses and the host-side veth.
pub struct Pod {
    pub ns: TempNetNs,
    pub id: String,
    pub host_veth: String,
    pub v4: String,
    pub v6: String,
}

impl Pod {
    pub fn prev_result(&self, dual_stack: bool) -> Value {
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

/// Host + client namespaces; pods are added with [`Topology::pod`].
pub struct Topology {
    pub host: TempNetNs,
    pub client: TempNetNs,
    pub pods: Vec<Pod>,
}

pub fn require_root() {
    netns::testutil::require_root();
}

impl Topology {
    pub fn new() -> Topology {
        require_root();
        let host = TempNetNs::new().expect("host netns");
        let client = TempNetNs::new().expect("client netns");
        let client_path = client.path().display().to_string();
        sh(
            &host,
            &format!(
                "set -e
                 ip link set lo up
                 echo 1 > /proc/sys/net/ipv4/ip_forward
                 echo 1 > /proc/sys/net/ipv6/conf/all/forwarding
                 ip link add kh type veth peer name kc netns {client_path}
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
            host,
            client,
            pods: Vec::new(),
        }
    }

    /// Adds a Calico-style pod number `n` (10.244.1.<n>/32, fd00:1::<n>/128).
    pub fn pod(&mut self, n: u8) -> usize {
        let ns = TempNetNs::new().expect("pod netns");
        let k = NEXT.fetch_add(1, Ordering::SeqCst);
        let host_veth = format!("cali{n:02x}{k:04x}");
        let v4 = format!("10.244.1.{n}");
        let v6 = format!("fd00:1::{n:x}");
        let mac = format!("02:00:00:00:02:{n:02x}");
        let path = ns.path().display().to_string();
        sh(
            &self.host,
            &format!(
                "set -e
                 ip link add {host_veth} type veth peer name eth0 netns {path}
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
    pub fn iptables_save(&self) -> String {
        sh_lenient(&self.host, "iptables-save -t nat; ip6tables-save -t nat")
    }

    pub fn nft_ruleset(&self) -> String {
        sh(&self.host, "nft list ruleset")
    }
}

/// Result of one plugin execution.
#[derive(Debug)]
pub struct Exec {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Exec {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }
}

/// Executes a CNI plugin binary inside the host netns.
pub fn exec_plugin(
    host: &TempNetNs,
    binary: &Path,
    command: &str,
    pod: &Pod,
    conf: &Value,
) -> Exec {
    exec_plugin_env(host, binary, command, pod, conf, &[])
}

/// [`exec_plugin`] with extra environment variables (e.g. a PATH selecting iptables-legacy).
pub fn exec_plugin_env(
    host: &TempNetNs,
    binary: &Path,
    command: &str,
    pod: &Pod,
    conf: &Value,
    env: &[(&str, String)],
) -> Exec {
    let stdin = serde_json::to_vec(conf).unwrap();
    let netns = if command == "DEL" {
        String::new()
    } else {
        pod.ns.path().display().to_string()
    };
    let out = host
        .run(|| {
            let mut child = Command::new(binary)
                .env("CNI_COMMAND", command)
                .env("CNI_CONTAINERID", &pod.id)
                .env("CNI_NETNS", &netns)
                .env("CNI_IFNAME", "eth0")
                .env("CNI_PATH", "/usr/lib/cni")
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn plugin");
            child.stdin.take().unwrap().write_all(&stdin).unwrap();
            child.wait_with_output().expect("wait plugin")
        })
        .expect("enter host netns");
    Exec {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The portmap config a runtime would send.
pub fn conf(backend: Option<&str>, mappings: Value, prev: Option<Value>) -> Value {
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

/// TCP and UDP servers inside a pod: port 80/tcp answers `tcp <peer>`, 53/udp answers
/// `udp <peer>` (the peer address shows whether the host masqueraded the connection).
pub struct Servers {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl Servers {
    pub fn start(pod: &Pod) -> Servers {
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
pub fn tcp_get(ns: &TempNetNs, addr: &str) -> Result<String, String> {
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
pub fn udp_get(ns: &TempNetNs, addr: &str) -> Result<String, String> {
    let bind = if addr.starts_with('[') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    udp_get_from(ns, bind, addr)
}

/// [`udp_get`] from a fixed local address and port (to reuse a conntrack entry).
pub fn udp_get_from(ns: &TempNetNs, bind: &str, addr: &str) -> Result<String, String> {
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
pub struct UdpResponder {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl UdpResponder {
    pub fn start(ns: &TempNetNs, bind: &str, text: &'static str) -> UdpResponder {
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

/// A directory whose `iptables*` tools are the legacy (x_tables) variants, to put first in PATH.
pub struct LegacyPath {
    pub dir: PathBuf,
}

impl LegacyPath {
    pub fn new() -> LegacyPath {
        let multi = Path::new("/usr/sbin/xtables-legacy-multi");
        assert!(
            multi.exists(),
            "iptables-legacy (xtables-legacy-multi) is required"
        );
        let k = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("portmap-legacy-{}-{k}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for tool in [
            "iptables",
            "iptables-save",
            "iptables-restore",
            "ip6tables",
            "ip6tables-save",
            "ip6tables-restore",
        ] {
            let link = dir.join(tool);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(multi, &link).unwrap();
        }
        LegacyPath { dir }
    }

    pub fn path_env(&self) -> String {
        format!(
            "{}:{}",
            self.dir.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }
}

impl Drop for LegacyPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
