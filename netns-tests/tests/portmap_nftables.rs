//! End-to-end tests of the `portmap` plugin's nftables backend (`"backend": "nftables"`): the
//! built binary in a private host namespace, real TCP/UDP traffic from a client namespace, from
//! the host itself, from 127.0.0.1 and hairpin from the pod; IPv6, `hostIP`, conntrack,
//! `masqAll`, one owner per host port, and the calico → portmap chain as a runtime runs it.
//! Needs the built binaries: `cargo build --bins` first. The fixture is in `common/hostport.rs`.

#[allow(dead_code)]
mod common;

use common::hostport::{self, *};
use serde_json::json;

#[test]
fn datapath_nftables() {
    hostport::datapath("pm-dp-nft", "nftables");
}

#[test]
fn host_ip_restricts_the_mapping() {
    hostport::host_ip_restricts_the_mapping("nftables");
}

#[test]
fn ipv6_dual_stack() {
    hostport::ipv6_dual_stack("nftables");
}

#[test]
fn del_removes_only_its_own_rules() {
    hostport::del_removes_only_its_own_rules("nftables");
}

#[test]
fn repeated_add_then_del_leaves_nothing() {
    hostport::repeated_add_then_del_leaves_nothing("nftables");
}

#[test]
fn sctp_mappings_are_installed_and_removed() {
    hostport::sctp_mappings_are_installed_and_removed("nftables");
}

#[test]
fn udp_conntrack_is_flushed_on_add_and_del() {
    hostport::udp_conntrack_is_flushed_on_add_and_del("nftables");
}

#[test]
fn masq_all_masquerades_outside_clients() {
    hostport::masq_all_masquerades_outside_clients("nftables");
}

#[test]
fn calico_then_portmap_chain_serves_http_via_host_port() {
    hostport::calico_then_portmap_chain_serves_http_via_host_port(Some("nftables"));
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

/// A PATH directory whose `nft` records each call in `calls`, then runs the real nft
/// (`passthrough`) or fails.
struct NftSpy {
    dir: tempfile::TempDir,
}

impl NftSpy {
    fn new(passthrough: bool) -> NftSpy {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let calls = dir.path().join("calls");
        let then = if passthrough {
            "exec /usr/sbin/nft \"$@\""
        } else {
            "echo 'nft must not run' >&2; exit 1"
        };
        let script = dir.path().join("nft");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho \"$*\" >> {}\n{then}\n", calls.display()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        NftSpy { dir }
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    fn calls(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("calls"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    fn run(&self, t: &Topology, pod: usize, command: &str, maps: &serde_json::Value) -> Exec {
        let p = &t.pods[pod];
        let prev = (command != "DEL").then(|| p.prev_result(false));
        let c = conf(Some("nftables"), maps.clone(), prev);
        run_plugin_env(
            t.host(),
            &our_portmap(),
            command,
            p,
            &c,
            &[("PATH", self.path())],
        )
    }
}

/// The elements of `set` in `nft -j list table ip cni_hostport`, as nft prints them in JSON.
fn elements(t: &Topology, set: &str) -> Vec<serde_json::Value> {
    let out = sh(t.host(), "nft -j list table ip cni_hostport");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("set").or_else(|| o.get("map")))
        .filter(|s| s["name"] == set)
        .flat_map(|s| s["elem"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Once the node's tables exist, ADD, repeated ADD, CHECK, a refused ADD and DEL change only
/// elements over netlink: the `nft` in PATH fails and records being called, and is never called.
#[test]
fn steady_add_and_del_run_no_nft() {
    let mut t = Topology::new("pm-nft-steady");
    let a = t.pod(31);
    let b = t.pod(32);
    let _sa = Servers::start(&t.pods[a]);
    let _sb = Servers::start(&t.pods[b]);
    let maps_a = json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]);
    let maps_b = json!([
        {"hostPort": 8081, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "198.51.100.1"}
    ]);
    // The node's first ADD writes the tables with one nft run.
    let first = NftSpy::new(true);
    let r = first.run(&t, a, "ADD", &maps_a);
    assert!(r.ok, "{r:?}");
    assert_eq!(first.calls(), 1, "one nft run for the static structures");

    let spy = NftSpy::new(false);
    let r = spy.run(&t, b, "ADD", &maps_b);
    assert!(r.ok, "steady ADD: {r:?}");
    assert_eq!(
        tcp_get(&t.client, "192.0.2.1:8081"),
        Ok("tcp 192.0.2.2".into())
    );
    // (The client reaches 198.51.100.1 from its address on that subnet.)
    assert_eq!(
        udp_get(&t.client, "198.51.100.1:5353"),
        Ok("udp 198.51.100.2".into())
    );
    assert!(
        udp_get(&t.client, "192.0.2.1:5353").is_err(),
        "hostIP restricts"
    );
    let dnat = elements(&t, "hostport_dnat");
    assert_eq!(dnat.len(), 2, "{dnat:?}");
    assert!(
        dnat.iter().any(|e| e[0]["concat"] == json!(["tcp", 8081])
            && e[1]["concat"] == json!([t.pods[b].v4, 80])),
        "{dnat:?}"
    );
    let hostip = elements(&t, "hostip_hostport_dnat");
    assert!(
        hostip
            .iter()
            .any(|e| e[0]["concat"] == json!(["198.51.100.1", "udp", 5353])),
        "{hostip:?}"
    );
    assert_eq!(elements(&t, "hostport_owner").len(), 3);
    assert_eq!(elements(&t, "hostport_masq").len(), 2);

    // Repeated ADD replaces the attachment's own keys; CHECK passes.
    let r = spy.run(&t, b, "ADD", &maps_b);
    assert!(r.ok, "repeated ADD: {r:?}");
    assert!(spy.run(&t, b, "CHECK", &maps_b).ok);
    // A port another container owns is refused, and that container's DEL leaves it alone.
    let r = spy.run(&t, b, "ADD", &maps_a);
    assert!(!r.ok);
    let msg = r.json()["msg"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("already mapped"), "{msg}");
    // DEL removes exactly b's elements; a second DEL succeeds.
    let d = spy.run(&t, b, "DEL", &maps_b);
    assert!(d.ok, "{d:?}");
    assert!(tcp_get(&t.client, "192.0.2.1:8081").is_err());
    assert_eq!(
        tcp_get(&t.client, "192.0.2.1:8080"),
        Ok("tcp 192.0.2.2".into())
    );
    assert_eq!(elements(&t, "hostport_owner").len(), 1);
    assert!(elements(&t, "hostip_hostport_dnat").is_empty());
    let d = spy.run(&t, b, "DEL", &maps_b);
    assert!(d.ok, "second DEL: {d:?}");
    assert!(
        spy.run(&t, b, "DEL", &maps_a).ok,
        "DEL of keys b never owned"
    );
    assert_eq!(elements(&t, "hostport_dnat").len(), 1, "a's mapping stays");
    assert_eq!(spy.calls(), 0, "steady ADD/CHECK/DEL ran nft");
    // A DEL on a node whose table was never created runs nothing either.
    let d = spy.run(&t, a, "DEL", &maps_a);
    assert!(d.ok);
    assert_eq!(leftovers(&t, "nftables"), "");
}

/// An upstream ADD re-creates `hostports_all` without our map lookups; our next ADD notices
/// (the chain no longer ends with our marker) and rewrites the static structures with one nft
/// run, after which every mapping works again.
#[test]
fn clobbered_chains_are_repaired_by_the_next_add() {
    let mut t = Topology::new("pm-nft-repair");
    let a = t.pod(33);
    let b = t.pod(34);
    let _sa = Servers::start(&t.pods[a]);
    let maps_a = json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]);
    let maps_b = json!([{"hostPort": 8081, "containerPort": 80, "protocol": "tcp"}]);
    assert!(add(&t, a, "nftables", &maps_a, false).ok);
    assert_eq!(
        tcp_get(&t.client, "192.0.2.1:8080"),
        Ok("tcp 192.0.2.2".into())
    );
    sh(
        t.host(),
        "nft flush chain ip cni_hostport hostports_all
         nft add rule ip cni_hostport hostports_all jump hostip_hostports
         nft add rule ip cni_hostport hostports_all jump hostports",
    );
    assert!(
        tcp_get(&t.client, "192.0.2.1:8080").is_err(),
        "lookups gone"
    );
    let spy = NftSpy::new(true);
    let r = spy.run(&t, b, "ADD", &maps_b);
    assert!(r.ok, "{r:?}");
    assert_eq!(spy.calls(), 1, "one nft run repairs");
    assert_eq!(
        tcp_get(&t.client, "192.0.2.1:8080"),
        Ok("tcp 192.0.2.2".into())
    );
    // A set deleted by hand (the chains still intact) is restored too.
    assert!(spy.run(&t, b, "DEL", &maps_b).ok);
    sh(t.host(), "nft delete set ip cni_hostport hostport_owner");
    let r = spy.run(&t, b, "ADD", &maps_b);
    assert!(r.ok, "{r:?}");
    assert_eq!(spy.calls(), 2);
    assert_eq!(elements(&t, "hostport_owner").len(), 1);
    // Steady again.
    assert!(spy.run(&t, b, "DEL", &maps_b).ok);
    assert!(spy.run(&t, b, "ADD", &maps_b).ok);
    assert_eq!(spy.calls(), 2);
}
