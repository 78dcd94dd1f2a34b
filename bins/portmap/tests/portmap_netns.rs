//! Root tests: the built `portmap` binary in a private host netns, real TCP/UDP traffic from a
//! client netns, from the host itself and from 127.0.0.1, hairpin from the pod, both backends,
//! IPv6, DEL without prevResult, and interop with Debian's Go portmap.

mod common;

use common::*;
use serde_json::{json, Value};

const BACKENDS: [&str; 2] = ["iptables", "nftables"];

fn tcp_udp() -> Value {
    json!([
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"HostPort": 5353, "ContainerPort": 53, "Protocol": "UDP"}
    ])
}

fn add(t: &Topology, pod: usize, backend: &str, maps: &Value, dual: bool) -> Exec {
    let p = &t.pods[pod];
    let c = conf(Some(backend), maps.clone(), Some(p.prev_result(dual)));
    exec_plugin(&t.host, &our_portmap(), "ADD", p, &c)
}

fn del(t: &Topology, pod: usize, backend: &str, maps: &Value) -> Exec {
    let p = &t.pods[pod];
    exec_plugin(
        &t.host,
        &our_portmap(),
        "DEL",
        p,
        &conf(Some(backend), maps.clone(), None),
    )
}

fn check(t: &Topology, pod: usize, backend: &str, maps: &Value, dual: bool) -> Exec {
    let p = &t.pods[pod];
    let c = conf(Some(backend), maps.clone(), Some(p.prev_result(dual)));
    exec_plugin(&t.host, &our_portmap(), "CHECK", p, &c)
}

/// Names of the per-container iptables chains / nft owner elements left on the host.
fn leftovers(t: &Topology, backend: &str) -> String {
    match backend {
        "iptables" => t
            .iptables_save()
            .lines()
            .filter(|l| l.contains("CNI-DN-"))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => {
            let rs = t.nft_ruleset();
            rs.lines()
                .filter(|l| l.contains("elements ="))
                .collect::<Vec<_>>()
                .join("\n")
        }
    }
}

fn datapath(backend: &str) {
    let mut t = Topology::new();
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
    let own = tcp_get(&t.host, "192.0.2.1:8080").expect("host -> own address");
    assert!(own.starts_with("tcp "), "{own}");
    assert!(udp_get(&t.host, "198.51.100.1:5353").is_ok());
    // From 127.0.0.1: needs route_localnet and masquerading.
    let local = tcp_get(&t.host, "127.0.0.1:8080").expect("host localhost");
    assert!(
        local.starts_with("tcp ") && local != "tcp 127.0.0.1",
        "{local}"
    );
    let local_udp = udp_get(&t.host, "127.0.0.1:5353").expect("host localhost udp");
    assert_ne!(local_udp, "udp 127.0.0.1");
    let rl = sh(
        &t.host,
        &format!("cat /proc/sys/net/ipv4/conf/{}/route_localnet", p.host_veth),
    );
    assert_eq!(rl.trim(), "1");
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
    datapath("iptables");
}

#[test]
fn datapath_nftables() {
    datapath("nftables");
}

#[test]
fn host_ip_restricts_the_mapping() {
    for backend in BACKENDS {
        let mut t = Topology::new();
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
        let mut t = Topology::new();
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
        let mut t = Topology::new();
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
        let mut t = Topology::new();
        let pod = t.pod(13);
        let _srv = Servers::start(&t.pods[pod]);
        let maps = tcp_udp();
        assert!(add(&t, pod, backend, &maps, true).ok);
        let again = add(&t, pod, backend, &maps, true);
        assert!(again.ok, "{backend} repeated ADD: {again:?}");
        assert_eq!(
            tcp_get(&t.client, "192.0.2.1:8080"),
            Ok("tcp 192.0.2.2".into())
        );
        assert!(del(&t, pod, backend, &maps).ok);
        assert!(tcp_get(&t.client, "192.0.2.1:8080").is_err());
        assert_eq!(leftovers(&t, backend), "", "{backend}");
    }
}

/// nftables keeps one owner per host port: a second container cannot take a port that is
/// mapped, and its DEL (which runtimes send after a failed ADD) leaves the first one alone.
#[test]
fn nftables_port_conflict_is_refused_and_del_is_safe() {
    let mut t = Topology::new();
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
    let mut t = Topology::new();
    let pod = t.pod(31);
    let p = &t.pods[pod];
    let maps = tcp_udp();
    let r = exec_plugin(&t.host, &our_portmap(), "ADD", p, &conf(None, maps, None));
    assert!(!r.ok);
    assert_eq!(r.json()["msg"], "must be called as chained plugin");

    // No mappings: prevResult echoed, DEL ok, and no netfilter state is created at all.
    let prev = p.prev_result(false);
    let r = exec_plugin(
        &t.host,
        &our_portmap(),
        "ADD",
        p,
        &conf(None, json!([]), Some(prev.clone())),
    );
    assert!(r.ok, "{r:?}");
    assert_eq!(r.json()["ips"], prev["ips"]);
    let mut no_caps = conf(None, json!([]), None);
    no_caps.as_object_mut().unwrap().remove("runtimeConfig");
    assert!(exec_plugin(&t.host, &our_portmap(), "DEL", p, &no_caps).ok);
    assert_eq!(t.nft_ruleset().trim(), "");
    assert!(!t.iptables_save().contains("CNI-"));
}

fn go_portmap_present() {
    assert!(
        std::path::Path::new(GO_PORTMAP).exists(),
        "interop test needs Debian's containernetworking-plugins ({GO_PORTMAP}): \
         apt-get install containernetworking-plugins"
    );
}

/// A node can switch between Debian's Go portmap (1.1.1) and ours in both directions: each DEL
/// removes the rules the other plugin created, and the shared chains are compatible.
#[test]
fn interop_with_go_portmap() {
    go_portmap_present();
    let go = std::path::PathBuf::from(GO_PORTMAP);
    let mut t = Topology::new();
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
    let r = exec_plugin(
        &t.host,
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
        tcp_get(&t.host, "127.0.0.1:8090").is_ok(),
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
    let r = exec_plugin(&t.host, &go, "DEL", pb, &conf(None, maps_b.clone(), None));
    assert!(r.ok, "Go DEL of our rules: {r:?}");
    assert!(tcp_get(&t.client, "192.0.2.1:8090").is_err());
    assert_eq!(leftovers(&t, "iptables"), "");

    // The other order on a clean node: our ADD creates the shared chains, Go's DEL cleans up.
    let mut t2 = Topology::new();
    let c = t2.pod(43);
    let _sc = Servers::start(&t2.pods[c]);
    assert!(add(&t2, c, "iptables", &maps_a, false).ok);
    assert_eq!(
        tcp_get(&t2.client, "192.0.2.1:8080"),
        Ok("tcp 192.0.2.2".into())
    );
    let r = exec_plugin(
        &t2.host,
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
        let mut t = Topology::new();
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
        let _host = UdpResponder::start(&t.host, "0.0.0.0:5353", "host");
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
        let mut t = Topology::new();
        let pod = t.pod(61);
        let _srv = Servers::start(&t.pods[pod]);
        let maps = tcp_udp();
        let p = &t.pods[pod];
        let mut c = conf(Some(backend), maps.clone(), Some(p.prev_result(true)));
        c["masqAll"] = json!(true);
        let r = exec_plugin(&t.host, &our_portmap(), "ADD", p, &c);
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
            tcp_get(&t.host, "127.0.0.1:8080").is_ok(),
            "{backend} localhost"
        );
        assert!(
            tcp_get(&p.ns, "192.0.2.1:8080").is_ok(),
            "{backend} hairpin"
        );
        let mut d = conf(Some(backend), maps.clone(), None);
        d["masqAll"] = json!(true);
        assert!(exec_plugin(&t.host, &our_portmap(), "DEL", p, &d).ok);
        assert_eq!(leftovers(&t, backend), "", "{backend}");
    }
}

/// The iptables backend works the same with iptables-legacy (selected through PATH, as the
/// node's alternatives would): ADD, repeated ADD, DEL through the save-based path, second DEL.
#[test]
fn datapath_iptables_legacy() {
    let legacy = LegacyPath::new();
    let env = [("PATH", legacy.path_env())];
    let mut t = Topology::new();
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
        exec_plugin_env(&t.host, &our_portmap(), cmd, p, &c, &env)
    };
    let r = run("ADD", true);
    assert!(r.ok, "ADD: {r:?}");
    assert!(run("ADD", true).ok, "repeated ADD");
    let legacy_save = || sh(&t.host, "iptables-legacy-save -t nat");
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
    assert!(tcp_get(&t.host, "127.0.0.1:8080").is_ok());
    assert!(tcp_get(&p.ns, "192.0.2.1:8080").is_ok(), "hairpin");
    assert!(run("CHECK", true).ok);
    assert!(run("DEL", false).ok);
    assert!(!legacy_save().contains("CNI-DN-"), "{}", legacy_save());
    assert!(tcp_get(&t.client, "192.0.2.1:8080").is_err());
    assert!(run("DEL", false).ok, "second DEL");
}
