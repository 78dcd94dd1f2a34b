//! End-to-end tests of the `portmap` plugin's iptables backend (the default): the built binary
//! in a private host namespace, real TCP/UDP traffic from a client namespace, from the host
//! itself, from 127.0.0.1 and hairpin from the pod; IPv6, `hostIP`, conntrack, `masqAll`,
//! iptables-legacy, interop with Debian's Go portmap, the netlink rule path against iptables-nft,
//! and the calico → portmap chain as a runtime runs it. Needs the built binaries:
//! `cargo build --bins` first. The fixture is in `common/hostport.rs`.

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};

use common::hostport::{self, *};
use netns_tests::Netns;
use serde_json::{json, Value};

/// Debian's Go portmap (containernetworking-plugins 1.1.1), the interop and benchmark peer.
const GO_PORTMAP: &str = "/usr/lib/cni/portmap";

#[test]
fn datapath_iptables() {
    hostport::datapath("pm-dp-ipt", "iptables");
}

#[test]
fn host_ip_restricts_the_mapping() {
    hostport::host_ip_restricts_the_mapping("iptables");
}

#[test]
fn ipv6_dual_stack() {
    hostport::ipv6_dual_stack("iptables");
}

#[test]
fn del_removes_only_its_own_rules() {
    hostport::del_removes_only_its_own_rules("iptables");
}

#[test]
fn repeated_add_then_del_leaves_nothing() {
    hostport::repeated_add_then_del_leaves_nothing("iptables");
}

#[test]
fn sctp_mappings_are_installed_and_removed() {
    hostport::sctp_mappings_are_installed_and_removed("iptables");
}

#[test]
fn udp_conntrack_is_flushed_on_add_and_del() {
    hostport::udp_conntrack_is_flushed_on_add_and_del("iptables");
}

#[test]
fn masq_all_masquerades_outside_clients() {
    hostport::masq_all_masquerades_outside_clients("iptables");
}

#[test]
fn calico_then_portmap_chain_serves_http_via_host_port() {
    hostport::calico_then_portmap_chain_serves_http_via_host_port(None);
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
        // The shared rules: ADD reads them over netlink to see they are in place.
        rules.extend(render::shared_rules(&req).into_iter().map(|sh| sh.rule));
        // The chains the rules jump to, then the rules as iptables makes them.
        let dn = req.attachment.dnat_chain();
        for chain in [
            "REF",
            "CNI-HOSTPORT-SETMARK",
            "CNI-HOSTPORT-DNAT",
            "CNI-HOSTPORT-MASQ",
            "KUBE-MARK-MASQ",
            dn.as_str(),
        ] {
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
    // No iptables tool at all; this pod has no IPv6 rules, which nf_tables and the absence of
    // an x_tables nat table tell.
    assert!(!del_b.contains("exec "), "{del_b}");
    assert!(
        del_b.contains("ipv6 DEL over nf_tables netlink: no nat rules of ours"),
        "{del_b}"
    );
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
        again.contains("ipv4 DEL over nf_tables netlink: no chain of this container"),
        "{again}"
    );
    assert!(!again.contains("exec "), "{again}");
    assert_eq!(leftovers(&t, "iptables"), "");
}

/// On an iptables-nft node whose shared rules exist, a steady ADD and DEL exec no netfilter
/// tool at all (shared chains read over netlink, the tool's version remembered, no IPv6 work
/// for an IPv4-only pod). PATH wrappers log every exec of `iptables*`/`ip6tables*`/`nft`.
#[test]
fn iptables_steady_add_and_del_exec_nothing() {
    let mut t = Topology::new("pm-noexec");
    let a = t.pod(53);
    let b = t.pod(54);
    let _sb = Servers::start(&t.pods[b]);
    let execs = t.env.tmp().join("execs.log");
    let wrappers = exec_logging_path_dir(t.env.tmp(), &execs);
    let path = format!(
        "{}:{}",
        wrappers.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |verb: &str, pod: usize, port: u16| -> String {
        let p = &t.pods[pod];
        let maps = json!([{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]);
        let prev = (verb == "ADD").then(|| p.prev_result(false));
        let c = conf(Some("iptables"), maps, prev);
        let _ = std::fs::remove_file(&execs);
        let r = run_plugin_env(t.host(), &our_portmap(), verb, p, &c, &[("PATH", &path)]);
        assert!(r.ok, "{verb} pod {pod}: {r:?}");
        std::fs::read_to_string(&execs).unwrap_or_default()
    };
    // The node's first ADD creates the shared chains through the tools.
    assert!(run("ADD", a, 8080).contains("iptables-restore"));
    // The first steady ADD may ask `iptables -V` once; nothing else.
    let warm = run("ADD", b, 8090);
    assert!(warm.lines().all(|l| l == "iptables -V"), "{warm}");
    assert_eq!(run("DEL", b, 8090), "", "steady DEL");
    assert_eq!(run("ADD", b, 8090), "", "steady ADD");
    assert_eq!(
        tcp_get(&t.client, "192.0.2.1:8090"),
        Ok("tcp 192.0.2.2".into())
    );
    assert_eq!(run("DEL", b, 8090), "", "steady DEL");
    assert!(tcp_get(&t.client, "192.0.2.1:8090").is_err());
    // Rules iptables-restore wrote are found over netlink too; a repeated DEL finds nothing.
    assert_eq!(run("DEL", a, 8080), "", "DEL of the first pod");
    assert_eq!(run("DEL", a, 8080), "", "repeated DEL");
    assert_eq!(leftovers(&t, "iptables"), "");
}

/// A directory of wrappers that append "<tool> <args>" to `log` and exec the real tool.
fn exec_logging_path_dir(under: &Path, log: &Path) -> PathBuf {
    let dir = under.join("logging-bin");
    std::fs::create_dir_all(&dir).unwrap();
    for tool in [
        "iptables",
        "iptables-save",
        "iptables-restore",
        "ip6tables",
        "ip6tables-save",
        "ip6tables-restore",
        "nft",
    ] {
        let real = ["/usr/sbin", "/sbin", "/usr/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{tool} not installed"));
        let script = format!(
            "#!/bin/sh\necho \"{tool} $*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        );
        let file = dir.join(tool);
        std::fs::write(&file, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
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
