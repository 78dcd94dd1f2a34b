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
