//! The portmap end-to-end fixture (tests/portmap*.rs): the harness's host namespace with a veth
//! to a "client" namespace (192.0.2.1 + 198.51.100.1 + 2001:db8:1::1 on the host side) and
//! Calico-like pods (veth, /32 and /128 host routes, default route via 169.254.1.1 / fe80::1),
//! plugin execution as a runtime does it, and the test bodies both backends share.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use netns_tests::traffic::{tcp_get, udp_get, udp_get_from};
use netns_tests::{bins, exec_plugin, traffic, Attachment, ExecOutput, Netns, TestEnv};
use serde_json::{json, Value};

pub const HOST_IP: &str = "192.0.2.1";
pub const HOST_IP2: &str = "198.51.100.1";
pub const HOST_IP6: &str = "2001:db8:1::1";
pub const CLIENT_IP: &str = "192.0.2.2";
pub const NETWORK: &str = "k8s-pod-network";

// ---------------------------------------------------------------------------------------------
// Topology

pub fn our_portmap() -> PathBuf {
    bins::binary("portmap").expect("portmap binary (cargo build --bins)")
}

/// Runs `sh -c script` inside `ns` and panics with its output on failure.
pub fn sh(ns: &Netns, script: &str) -> String {
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
pub fn sh_lenient(ns: &Netns, script: &str) -> String {
    ns.output("sh", &["-c", script])
        .expect("run sh")
        .stdout_str()
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// One container attached to the host: the netns, its addresses and the host-side veth.
pub struct Pod {
    pub ns: Netns,
    pub id: String,
    pub host_veth: String,
    pub v4: String,
    pub v6: String,
}

impl Pod {
    /// The result calico would have produced (host veth without sandbox, /32 and /128).
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

/// The harness's host + a client namespace; pods are added with [`Topology::pod`].
pub struct Topology {
    pub env: TestEnv,
    pub client: Netns,
    pub pods: Vec<Pod>,
}

impl Topology {
    pub fn new(name: &str) -> Topology {
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

    pub fn host(&self) -> &Netns {
        &self.env.host
    }

    /// Adds a Calico-style pod number `n` (10.244.1.<n>/32, fd00:1::<n>/128).
    pub fn pod(&mut self, n: u8) -> usize {
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
    pub fn iptables_save(&self) -> String {
        sh_lenient(self.host(), "iptables-save -t nat; ip6tables-save -t nat")
    }

    pub fn nft_ruleset(&self) -> String {
        sh(self.host(), "nft list ruleset")
    }
}

// ---------------------------------------------------------------------------------------------
// Plugin execution

/// Result of one plugin execution.
#[derive(Debug)]
pub struct Exec {
    pub ok: bool,
    pub stdout: String,
    /// Only read through `Debug` in assertion messages (the plugin's log on failure).
    #[allow(dead_code)]
    pub stderr: String,
}

impl Exec {
    pub fn json(&self) -> Value {
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
pub fn run_plugin(host: &Netns, binary: &Path, command: &str, pod: &Pod, conf: &Value) -> Exec {
    run_plugin_env(host, binary, command, pod, conf, &[])
}

/// [`run_plugin`] with extra environment variables (e.g. a PATH selecting iptables-legacy).
pub fn run_plugin_env(
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

pub fn add(t: &Topology, pod: usize, backend: &str, maps: &Value, dual: bool) -> Exec {
    let p = &t.pods[pod];
    let c = conf(Some(backend), maps.clone(), Some(p.prev_result(dual)));
    run_plugin(t.host(), &our_portmap(), "ADD", p, &c)
}

pub fn del(t: &Topology, pod: usize, backend: &str, maps: &Value) -> Exec {
    let p = &t.pods[pod];
    let c = conf(Some(backend), maps.clone(), None);
    run_plugin(t.host(), &our_portmap(), "DEL", p, &c)
}

pub fn check(t: &Topology, pod: usize, backend: &str, maps: &Value, dual: bool) -> Exec {
    let p = &t.pods[pod];
    let c = conf(Some(backend), maps.clone(), Some(p.prev_result(dual)));
    run_plugin(t.host(), &our_portmap(), "CHECK", p, &c)
}

/// Per-container iptables chains / nft elements left on the host (empty when clean).
pub fn leftovers_in(host: &Netns, backend: &str) -> String {
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

pub fn leftovers(t: &Topology, backend: &str) -> String {
    leftovers_in(t.host(), backend)
}

pub fn tcp_udp() -> Value {
    json!([
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"HostPort": 5353, "ContainerPort": 53, "Protocol": "UDP"}
    ])
}

/// TCP and UDP servers inside a pod: port 80/tcp answers `tcp <peer>`, 53/udp answers
/// `udp <peer>` (the address the pod saw: shows whether the host masqueraded the connection).
pub struct Servers {
    _tcp: traffic::Server,
    _udp: traffic::Server,
}

impl Servers {
    pub fn start(pod: &Pod) -> Servers {
        let any = |port| SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
        Servers {
            _tcp: traffic::tcp_peer_server(&pod.ns, any(80)).expect("tcp server in the pod"),
            _udp: traffic::udp_peer_server(&pod.ns, any(53)).expect("udp server in the pod"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Test bodies run once per backend (tests/portmap_iptables.rs, tests/portmap_nftables.rs)

/// ADD, traffic from outside, from the host, from 127.0.0.1 and hairpin, CHECK, DEL without
/// prevResult, second DEL, CHECK after DEL.
pub fn datapath(name: &str, backend: &str) {
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

pub fn host_ip_restricts_the_mapping(backend: &str) {
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

pub fn ipv6_dual_stack(backend: &str) {
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

pub fn del_removes_only_its_own_rules(backend: &str) {
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

pub fn repeated_add_then_del_leaves_nothing(backend: &str) {
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

/// SCTP mappings are installed with the protocol's own match in both backends and removed again
/// (the kernel here has no SCTP sockets, so no traffic is sent).
pub fn sctp_mappings_are_installed_and_removed(backend: &str) {
    let mut t = Topology::new("pm-sctp");
    let pod = t.pod(35);
    let maps = json!([{"hostPort": 3868, "containerPort": 3868, "protocol": "sctp"}]);
    let r = add(&t, pod, backend, &maps, true);
    assert!(r.ok, "{backend} ADD: {r:?}");
    if backend == "iptables" {
        let save = t.iptables_save();
        assert!(
            save.contains("-p sctp -m sctp --dport 3868 -j DNAT --to-destination 10.244.1.35:3868"),
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

/// Stale UDP conntrack entries are removed on ADD (an unanswered flow to the host port would
/// otherwise never be DNATed) and on DEL (the flow would otherwise keep going to the old pod).
pub fn udp_conntrack_is_flushed_on_add_and_del(backend: &str) {
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
    let host_server = "0.0.0.0:5353".parse().unwrap();
    let _host = traffic::udp_text_server(t.host(), host_server, "host").unwrap();
    assert_eq!(
        udp_get_from(&t.client, from, "192.0.2.1:5353"),
        Ok("host".into()),
        "{backend}: flow no longer DNATed after DEL"
    );
}

/// `masqAll`: every connection to the host port is masqueraded (for plugins whose pods' traffic
/// bypasses the host's routing); without it, outside clients keep their address.
pub fn masq_all_masquerades_outside_clients(backend: &str) {
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

/// The seed conflist's shape end to end, through the harness's libcni-like runner: calico with
/// host-local IPAM (a concrete subnet; local datastore and no `policy`, which would need a
/// Kubernetes API) then portmap (`snat`, capability `portMappings`), cniVersion
/// 0.3.1 (so DEL gets no prevResult). HTTP reaches the pod through the host port from another
/// namespace and from the host's 127.0.0.1; after DEL no rule of the pod is left.
pub fn calico_then_portmap_chain_serves_http_via_host_port(backend: Option<&str>) {
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

    let _web = traffic::http_server(&pod, SocketAddr::new(pod_ip, 80), "hello from pod").unwrap();
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
