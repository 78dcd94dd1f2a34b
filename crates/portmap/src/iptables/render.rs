//! Pure rendering of upstream-compatible iptables rules and `iptables-restore` scripts.
//!
//! Chain names, rule shapes, comments and marks are upstream's (containernetworking/plugins
//! portmap) so that either plugin can delete what the other created.

use std::fmt::Write as _;

use ipnetwork::IpNetwork;

use super::save::NatState;
use crate::mapping::{Family, Protocol};
use crate::Request;

pub const TOP_DNAT_CHAIN: &str = "CNI-HOSTPORT-DNAT";
pub const SETMARK_CHAIN: &str = "CNI-HOSTPORT-SETMARK";
pub const MASQ_CHAIN: &str = "CNI-HOSTPORT-MASQ";
/// Parent of the pre-2017 per-container SNAT chains (only ever torn down).
pub const OLD_SNAT_CHAIN: &str = "CNI-HOSTPORT-SNAT";

/// `multiport` accepts at most 15 ports per rule.
const MULTIPORT_MAX: usize = 15;

/// Arguments of one rule after the chain name.
pub type Rule = Vec<String>;

fn rule(args: &[&str]) -> Rule {
    args.iter().map(|s| s.to_string()).collect()
}

/// How a shared rule is placed when it is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Append,
    /// `-I <chain> 1` (the POSTROUTING jump must precede bridge/ptp ipMasq rules).
    First,
}

/// A rule in a chain shared by all containers, created once and never deleted.
#[derive(Debug, Clone)]
pub struct SharedRule {
    pub chain: &'static str,
    pub rule: Rule,
    pub placement: Placement,
}

fn mark_def(req: &Request) -> String {
    let m = req.conf.mark();
    format!("{m:#x}/{m:#x}")
}

/// Whether this configuration uses our own SETMARK/MASQ chains.
fn own_mark_chains(req: &Request) -> bool {
    req.conf.snat && req.conf.external_set_mark_chain.is_none()
}

/// Shared chains this configuration needs (created when missing, never flushed).
pub fn shared_chains(req: &Request) -> Vec<&'static str> {
    let mut v = vec![TOP_DNAT_CHAIN];
    if own_mark_chains(req) {
        v.push(SETMARK_CHAIN);
        v.push(MASQ_CHAIN);
    }
    v
}

/// Shared rules in the exact form `iptables-save` prints them (so presence can be compared).
pub fn shared_rules(req: &Request) -> Vec<SharedRule> {
    let entry = rule(&[
        "-m",
        "addrtype",
        "--dst-type",
        "LOCAL",
        "-j",
        TOP_DNAT_CHAIN,
    ]);
    let mut v = vec![
        SharedRule {
            chain: "PREROUTING",
            rule: entry.clone(),
            placement: Placement::Append,
        },
        SharedRule {
            chain: "OUTPUT",
            rule: entry,
            placement: Placement::Append,
        },
    ];
    if own_mark_chains(req) {
        let mark = mark_def(req);
        v.push(SharedRule {
            chain: SETMARK_CHAIN,
            rule: rule(&[
                "-m",
                "comment",
                "--comment",
                "CNI portfwd masquerade mark",
                "-j",
                "MARK",
                "--set-xmark",
                &mark,
            ]),
            placement: Placement::Append,
        });
        v.push(SharedRule {
            chain: MASQ_CHAIN,
            rule: rule(&["-m", "mark", "--mark", &mark, "-j", "MASQUERADE"]),
            placement: Placement::Append,
        });
        v.push(SharedRule {
            chain: "POSTROUTING",
            rule: rule(&[
                "-m",
                "comment",
                "--comment",
                "CNI portfwd requiring masquerade",
                "-j",
                MASQ_CHAIN,
            ]),
            placement: Placement::First,
        });
    }
    v
}

/// Entry rules in `CNI-HOSTPORT-DNAT` for one family: one per protocol (sorted) and group of at
/// most 15 host ports (in mapping order). Every mapping's port is listed, even ones later skipped
/// for a hostIP family mismatch: that is what upstream does, and DEL must reproduce it exactly.
pub fn entry_rules(req: &Request, family: Family) -> Vec<Rule> {
    let comment = req.attachment.dnat_comment();
    let chain = req.attachment.dnat_chain();
    let conditions = match family {
        Family::V4 => &req.conf.conditions_v4,
        Family::V6 => &req.conf.conditions_v6,
    };
    let mut protos: Vec<Protocol> = req.mappings.iter().map(|m| m.protocol).collect();
    protos.sort_by_key(|p| p.as_str());
    protos.dedup();
    let mut out = Vec::new();
    for proto in protos {
        let ports: Vec<String> = req
            .mappings
            .iter()
            .filter(|m| m.protocol == proto)
            .map(|m| m.host_port.to_string())
            .collect();
        for group in ports.chunks(MULTIPORT_MAX) {
            let mut r = rule(&["-m", "comment", "--comment", &comment]);
            r.extend(rule(&["-m", "multiport", "-p", proto.as_str()]));
            r.extend(rule(&["--destination-ports", &group.join(",")]));
            r.extend(conditions.iter().cloned());
            r.extend(rule(&["-j", &chain]));
            out.push(r);
        }
    }
    out
}

fn fmt_ip_port(addr: &IpNetwork, port: u16) -> String {
    match addr {
        IpNetwork::V4(n) => format!("{}:{port}", n.ip()),
        IpNetwork::V6(n) => format!("[{}]:{port}", n.ip()),
    }
}

/// Rules of the per-container `CNI-DN-…` chain for the container address `addr`: per mapping a
/// hairpin mark, a localhost mark (IPv4) and the DNAT, in that order.
pub fn dnat_rules(req: &Request, addr: &IpNetwork) -> Vec<Rule> {
    let family = Family::of(&addr.ip());
    let set_mark = req
        .conf
        .external_set_mark_chain
        .as_deref()
        .unwrap_or(SETMARK_CHAIN);
    let mut out = Vec::new();
    for m in req.mappings.iter().filter(|m| m.applies_to(family)) {
        let mut base = rule(&[
            "-p",
            m.protocol.as_str(),
            "--dport",
            &m.host_port.to_string(),
        ]);
        if let Some(ip) = m.dest_ip() {
            base.extend(rule(&["-d", &ip.to_string()]));
        }
        if req.conf.snat {
            let src = if req.conf.masq_all {
                match family {
                    Family::V4 => "0.0.0.0/0".to_string(),
                    Family::V6 => "::/0".to_string(),
                }
            } else {
                addr.to_string()
            };
            let mut hairpin = base.clone();
            hairpin.extend(rule(&["-s", &src, "-j", set_mark]));
            out.push(hairpin);
            if family == Family::V4 && !req.conf.masq_all {
                let mut local = base.clone();
                local.extend(rule(&["-s", "127.0.0.1", "-j", set_mark]));
                out.push(local);
            }
        }
        let mut dnat = base;
        dnat.extend(rule(&[
            "-j",
            "DNAT",
            "--to-destination",
            &fmt_ip_port(addr, m.container_port),
        ]));
        out.push(dnat);
    }
    out
}

/// Quotes one argument for `iptables-restore` (double quotes, backslash escapes).
fn quote(arg: &str) -> String {
    let needs = arg.is_empty()
        || arg
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\\' || c == '\'');
    if !needs {
        return arg.to_string();
    }
    let mut s = String::with_capacity(arg.len() + 2);
    s.push('"');
    for c in arg.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// An `iptables-restore --noflush` script for the nat table.
#[derive(Debug, Default)]
pub struct Script {
    lines: Vec<String>,
}

impl Script {
    fn new() -> Script {
        Script {
            lines: vec!["*nat".to_string()],
        }
    }

    /// `:CHAIN - [0:0]`: in --noflush mode this creates the chain, or flushes it if it exists.
    fn declare(&mut self, chain: &str) {
        self.lines.push(format!(":{chain} - [0:0]"));
    }

    fn cmd(&mut self, op: &str, chain: &str, args: &[String]) {
        let mut line = format!("{op} {chain}");
        for a in args {
            let _ = write!(line, " {}", quote(a));
        }
        self.lines.push(line);
    }

    fn raw(&mut self, line: String) {
        self.lines.push(line);
    }

    fn finish(mut self) -> String {
        self.lines.push("COMMIT".to_string());
        let mut s = self.lines.join("\n");
        s.push('\n');
        s
    }

    /// Line `n` (1-based, as iptables-restore reports it).
    pub fn line_of(text: &str, n: usize) -> Option<&str> {
        text.lines().nth(n.checked_sub(1)?)
    }
}

fn push_container_rules(s: &mut Script, req: &Request, addr: &IpNetwork) {
    let family = Family::of(&addr.ip());
    for r in entry_rules(req, family) {
        s.cmd("-A", TOP_DNAT_CHAIN, &r);
    }
    let chain = req.attachment.dnat_chain();
    for r in dnat_rules(req, addr) {
        s.cmd("-A", &chain, &r);
    }
}

/// ADD for a first attachment, once the shared chains and rules were seen (see
/// `iptables::add`). `-N` fails when the container chain already exists (a repeated ADD, or
/// leftovers of another plugin), which aborts the transaction so [`add_full`] can replace the old
/// entry rules instead of duplicating them. No `-C` here: with iptables-nft each `-C` of a rule
/// jumping to a user chain makes the tool load every rule of the table (kube-proxy's included).
pub fn add_fast(req: &Request, addr: &IpNetwork) -> String {
    let mut s = Script::new();
    s.cmd("-N", &req.attachment.dnat_chain(), &[]);
    push_container_rules(&mut s, req, addr);
    s.finish()
}

/// The shared chains whose listings prove the shared rules are in place, with the rules each
/// must contain.
pub fn shared_rules_by_chain(req: &Request) -> Vec<(&'static str, Vec<Rule>)> {
    let mut out: Vec<(&'static str, Vec<Rule>)> = Vec::new();
    for sh in shared_rules(req) {
        match out.iter_mut().find(|(c, _)| *c == sh.chain) {
            Some((_, rules)) => rules.push(sh.rule),
            None => out.push((sh.chain, vec![sh.rule])),
        }
    }
    out
}

/// ADD from a known table state: creates what is missing, replaces this container's entries.
pub fn add_full(req: &Request, addr: &IpNetwork, state: &NatState) -> String {
    let mut s = Script::new();
    for chain in shared_chains(req) {
        if !state.has_chain(chain) {
            s.declare(chain);
        }
    }
    let chain = req.attachment.dnat_chain();
    s.declare(&chain);
    for old in state.rules_jumping_to(&chain) {
        s.raw(format!("-D {} {}", old.chain, old.raw));
    }
    for sh in shared_rules(req) {
        if state.has_rule(sh.chain, &sh.rule) {
            continue;
        }
        match sh.placement {
            Placement::Append => s.cmd("-A", sh.chain, &sh.rule),
            Placement::First => s.cmd("-I", &format!("{} 1", sh.chain), &sh.rule),
        }
    }
    push_container_rules(&mut s, req, addr);
    s.finish()
}

/// DEL assuming the entry rules are exactly what this configuration renders.
pub fn del_fast(req: &Request, family: Family) -> String {
    let mut s = Script::new();
    for r in entry_rules(req, family) {
        s.cmd("-D", TOP_DNAT_CHAIN, &r);
    }
    let chain = req.attachment.dnat_chain();
    s.cmd("-F", &chain, &[]);
    s.cmd("-X", &chain, &[]);
    s.finish()
}

/// DEL from a known table state: removes every rule jumping to this container's chains (whatever
/// their shape), then the chains. `None` when nothing of this container exists.
pub fn del_full(req: &Request, state: &NatState) -> Option<String> {
    let chains = [req.attachment.dnat_chain(), req.attachment.old_snat_chain()];
    let present: Vec<&String> = chains.iter().filter(|c| state.has_chain(c)).collect();
    if present.is_empty() {
        return None;
    }
    let mut s = Script::new();
    for chain in &present {
        for old in state.rules_jumping_to(chain) {
            s.raw(format!("-D {} {}", old.chain, old.raw));
        }
    }
    for chain in &present {
        s.cmd("-F", chain, &[]);
        s.cmd("-X", chain, &[]);
    }
    Some(s.finish())
}

/// CHECK: a script of `-C` commands only; it changes nothing and fails if any rule is missing.
pub fn check(req: &Request, addr: &IpNetwork) -> String {
    let family = Family::of(&addr.ip());
    let mut s = Script::new();
    for r in entry_rules(req, family) {
        s.cmd("-C", TOP_DNAT_CHAIN, &r);
    }
    let chain = req.attachment.dnat_chain();
    for r in dnat_rules(req, addr) {
        s.cmd("-C", &chain, &r);
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PortMapConf;
    use crate::mapping::PortMapping;
    use crate::naming::Attachment;
    use serde_json::json;

    const CID: &str = "icee6giejonei6sohng6ahngee7laquohquee9shiGo7fohferakah3Feiyoolu2pei7ciPhoh7shaoX6vai3vuf0ahfaeng8yohb9ceu0daez5hashee8ooYai5wa3y";

    fn upstream_mappings() -> Vec<PortMapping> {
        PortMapping::list_from_json(Some(&json!([
            { "hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            { "hostPort": 8081, "containerPort": 80, "protocol": "tcp"},
            { "hostPort": 8080, "containerPort": 81, "protocol": "udp"},
            { "hostPort": 8082, "containerPort": 82, "protocol": "udp"},
            { "hostPort": 8083, "containerPort": 83, "protocol": "tcp", "hostIP": "192.168.0.2"},
            { "hostPort": 8084, "containerPort": 84, "protocol": "tcp", "hostIP": "0.0.0.0"},
            { "hostPort": 8085, "containerPort": 85, "protocol": "tcp", "hostIP": "2001:db8:a::1"},
            { "hostPort": 8086, "containerPort": 86, "protocol": "tcp", "hostIP": "::"}
        ])))
        .unwrap()
    }

    /// Expected rules, one string each with white-space separated arguments (no argument of
    /// these vectors contains white space).
    fn rules(lines: &[&str]) -> Vec<Rule> {
        lines
            .iter()
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    }

    /// The vectors of upstream's portmap_iptables_test.go ("generates a correct standard
    /// container chain").
    #[test]
    fn matches_upstream_test_vectors() {
        let mut conf = PortMapConf::from_json(&json!({
            "snat": true, "conditionsV4": ["-a", "b"], "conditionsV6": ["-c", "d"]
        }))
        .unwrap();
        let mappings = upstream_mappings();
        let att = Attachment {
            network: "test",
            container_id: CID,
        };
        assert_eq!(att.dnat_chain(), "CNI-DN-67e92b96e692a494b6b85");
        let comment = format!("dnat name: \"test\" id: \"{CID}\"");
        let req = Request {
            conf: &conf,
            attachment: att,
            mappings: &mappings,
        };
        // The comment has spaces, so it is prepended as whole arguments.
        let commented = |r: Rule| [rule(&["-m", "comment", "--comment", &comment]), r].concat();
        assert_eq!(
            entry_rules(&req, Family::V4),
            rules(&[
                "-m multiport -p tcp --destination-ports 8080,8081,8083,8084,8085,8086 -a b -j CNI-DN-67e92b96e692a494b6b85",
                "-m multiport -p udp --destination-ports 8080,8082 -a b -j CNI-DN-67e92b96e692a494b6b85",
            ])
            .into_iter()
            .map(commented)
            .collect::<Vec<_>>()
        );
        let v4: IpNetwork = "10.0.0.2/24".parse().unwrap();
        assert_eq!(
            dnat_rules(&req, &v4),
            rules(&[
                "-p tcp --dport 8080 -s 10.0.0.2/24 -j CNI-HOSTPORT-SETMARK",
                "-p tcp --dport 8080 -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK",
                "-p tcp --dport 8080 -j DNAT --to-destination 10.0.0.2:80",
                "-p tcp --dport 8081 -s 10.0.0.2/24 -j CNI-HOSTPORT-SETMARK",
                "-p tcp --dport 8081 -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK",
                "-p tcp --dport 8081 -j DNAT --to-destination 10.0.0.2:80",
                "-p udp --dport 8080 -s 10.0.0.2/24 -j CNI-HOSTPORT-SETMARK",
                "-p udp --dport 8080 -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK",
                "-p udp --dport 8080 -j DNAT --to-destination 10.0.0.2:81",
                "-p udp --dport 8082 -s 10.0.0.2/24 -j CNI-HOSTPORT-SETMARK",
                "-p udp --dport 8082 -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK",
                "-p udp --dport 8082 -j DNAT --to-destination 10.0.0.2:82",
                "-p tcp --dport 8083 -d 192.168.0.2 -s 10.0.0.2/24 -j CNI-HOSTPORT-SETMARK",
                "-p tcp --dport 8083 -d 192.168.0.2 -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK",
                "-p tcp --dport 8083 -d 192.168.0.2 -j DNAT --to-destination 10.0.0.2:83",
                "-p tcp --dport 8084 -s 10.0.0.2/24 -j CNI-HOSTPORT-SETMARK",
                "-p tcp --dport 8084 -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK",
                "-p tcp --dport 8084 -j DNAT --to-destination 10.0.0.2:84",
            ])
        );
        let v6: IpNetwork = "2001:db8::2/64".parse().unwrap();
        assert_eq!(
            dnat_rules(&req, &v6),
            rules(&[
                "-p tcp --dport 8080 -s 2001:db8::2/64 -j CNI-HOSTPORT-SETMARK",
                "-p tcp --dport 8080 -j DNAT --to-destination [2001:db8::2]:80",
                "-p tcp --dport 8081 -s 2001:db8::2/64 -j CNI-HOSTPORT-SETMARK",
                "-p tcp --dport 8081 -j DNAT --to-destination [2001:db8::2]:80",
                "-p udp --dport 8080 -s 2001:db8::2/64 -j CNI-HOSTPORT-SETMARK",
                "-p udp --dport 8080 -j DNAT --to-destination [2001:db8::2]:81",
                "-p udp --dport 8082 -s 2001:db8::2/64 -j CNI-HOSTPORT-SETMARK",
                "-p udp --dport 8082 -j DNAT --to-destination [2001:db8::2]:82",
                "-p tcp --dport 8085 -d 2001:db8:a::1 -s 2001:db8::2/64 -j CNI-HOSTPORT-SETMARK",
                "-p tcp --dport 8085 -d 2001:db8:a::1 -j DNAT --to-destination [2001:db8::2]:85",
                "-p tcp --dport 8086 -s 2001:db8::2/64 -j CNI-HOSTPORT-SETMARK",
                "-p tcp --dport 8086 -j DNAT --to-destination [2001:db8::2]:86",
            ])
        );
        conf.snat = false;
        let req = Request {
            conf: &conf,
            attachment: att,
            mappings: &mappings,
        };
        assert_eq!(dnat_rules(&req, &v4).len(), 6);
        assert!(dnat_rules(&req, &v4)
            .iter()
            .all(|r| r.contains(&"DNAT".to_string())));
    }

    #[test]
    fn external_mark_chain_and_mark_bit() {
        let conf =
            PortMapConf::from_json(&json!({"externalSetMarkChain": "PLZ-SET-MARK"})).unwrap();
        let mappings = PortMapping::list_from_json(Some(&json!([
            { "hostPort": 8080, "containerPort": 80, "protocol": "tcp"}
        ])))
        .unwrap();
        let req = Request::for_test(&conf, &mappings);
        let v4: IpNetwork = "10.0.0.2/24".parse().unwrap();
        assert_eq!(
            dnat_rules(&req, &v4)[..2],
            rules(&[
                "-p tcp --dport 8080 -s 10.0.0.2/24 -j PLZ-SET-MARK",
                "-p tcp --dport 8080 -s 127.0.0.1 -j PLZ-SET-MARK",
            ])[..]
        );
        assert_eq!(shared_chains(&req), vec![TOP_DNAT_CHAIN]);
        assert_eq!(shared_rules(&req).len(), 2);

        let conf = PortMapConf::from_json(&json!({"markMasqBit": 5})).unwrap();
        let req = Request { conf: &conf, ..req };
        let sr = shared_rules(&req);
        assert_eq!(sr[2].rule.last().unwrap(), "0x20/0x20");
        assert_eq!(sr[3].rule[3], "0x20/0x20");
    }

    #[test]
    fn multiport_groups_of_fifteen() {
        let list: Vec<serde_json::Value> = (1..=31)
            .map(|p| json!({"hostPort": 1000 + p, "containerPort": 80}))
            .collect();
        let mappings = PortMapping::list_from_json(Some(&json!(list))).unwrap();
        let conf = PortMapConf::default();
        let req = Request::for_test(&conf, &mappings);
        let e = entry_rules(&req, Family::V4);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0][9].split(',').count(), 15);
        assert_eq!(e[2][9], "1031");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("abc"), "abc");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(
            super::super::save::tokenize(&quote(r#"a "b" \c"#)),
            vec![r#"a "b" \c"#]
        );
    }
}
