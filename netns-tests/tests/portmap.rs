//! End-to-end tests of the `portmap` plugin that do not depend on a backend: it must be chained,
//! no mappings means no netfilter state at all, and bad configuration is refused before anything
//! is installed. The backends' own tests are in `portmap_iptables.rs` and `portmap_nftables.rs`.
//! Needs the built binaries: `cargo build --bins` first.

#[allow(dead_code)]
mod common;

use common::hostport::*;
use serde_json::{json, Value};

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
