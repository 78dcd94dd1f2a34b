//! The flat path of the iptables backend on iptables-nft nodes: the per-container rules are
//! written and removed over nf_tables netlink in one transaction, encoded exactly as
//! iptables-nft encodes the same rule text (so `iptables -S`, `iptables -D` by rule spec, and
//! the Go plugin's DEL see them as their own), and found again by rule handle instead of by
//! listing `CNI-HOSTPORT-DNAT`.
//!
//! Why: `iptables-restore` (nft variant) loads every rule of the nat table for any `-A`/`-D`,
//! so its cost grows with the node's mappings and kube-proxy's rules; these netlink messages
//! cost the same at 10 mappings and at 10,000.
//!
//! Scope: only rules this module can encode exactly (`-p tcp|udp`, host addresses, `--dport`,
//! `-m comment`, `-m multiport --destination-ports`, jumps, `DNAT --to-destination`);
//! anything else (SCTP, `conditionsV4/V6`, prefixes) returns `None` and the caller uses
//! `iptables-restore`. ADD takes this path only when `CNI-HOSTPORT-DNAT` exists in nf_tables
//! with PREROUTING jumping to it (the shared rules are live there) and the family's iptables
//! tool is the nf_tables variant, 1.8.9 or newer (older ones encode `--dport` differently). DEL
//! only ever deletes by handle rules that jump to this container's chain, and leaves every case
//! it cannot decide from nf_tables alone (no shared chain, no pod chain) to iptables-restore,
//! so iptables-legacy nodes and nodes that switched variants are handled there.
//!
//! Handles: ADD sends the new `CNI-DN-…` chain first and the entry rules right after it, so
//! the kernel (which numbers chains and rules of a table from one counter, within one
//! transaction) gives the entry rules the handles following the chain's. DEL looks those
//! handles up one by one and deletes them only if they still jump to this container's chain;
//! when they do not (rules made by `iptables` or the Go plugin), it lists `CNI-HOSTPORT-DNAT`
//! once over netlink.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use nf_tables::{Batch, Expr, NewRule, NfSocket, PayloadBase, NFT_META_L4PROTO};

use super::render::{self, Rule, TOP_DNAT_CHAIN};
use crate::mapping::Family;
use crate::Request;

const TABLE: &str = "nat";
/// iptables-nft loads every match operand into register 1.
const REG: u32 = 1;
const XT_COMMENT_LEN: usize = 256;
const XT_MULTI_PORTS: usize = 15;
const XT_MULTIPORT_DESTINATION: u8 = 1;
/// `struct nf_nat_range2` padded to x_tables' 8-byte alignment.
const NAT_RANGE2_LEN: usize = 48;
const NF_NAT_RANGE_MAP_IPS: u32 = 1;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;

fn nf_family(family: Family) -> nf_tables::Family {
    match family {
        Family::V4 => nf_tables::Family::Ipv4,
        Family::V6 => nf_tables::Family::Ipv6,
    }
}

fn proto_number(name: &str) -> Option<u8> {
    match name {
        "tcp" => Some(libc::IPPROTO_TCP as u8),
        "udp" => Some(libc::IPPROTO_UDP as u8),
        _ => None,
    }
}

/// `payload load` of a source/destination address plus `cmp eq` (host addresses only).
fn address(family: Family, value: &str, source: bool) -> Option<Vec<Expr>> {
    let net: IpNetwork = value.parse().ok()?;
    if net.prefix() == 0 {
        return Some(Vec::new()); // `-s 0.0.0.0/0` matches everything: iptables emits nothing
    }
    let (offset, data) = match (net.ip(), family) {
        (IpAddr::V4(ip), Family::V4) if net.prefix() == 32 => {
            (if source { 12 } else { 16 }, ip.octets().to_vec())
        }
        (IpAddr::V6(ip), Family::V6) if net.prefix() == 128 => {
            (if source { 8 } else { 24 }, ip.octets().to_vec())
        }
        _ => return None,
    };
    let len = data.len() as u32;
    Some(vec![
        Expr::Payload {
            base: PayloadBase::Network,
            offset,
            len,
            dreg: REG,
        },
        Expr::CmpEq { sreg: REG, data },
    ])
}

fn comment_info(text: &str) -> Option<Vec<u8>> {
    if text.len() >= XT_COMMENT_LEN {
        return None;
    }
    let mut info = text.as_bytes().to_vec();
    info.resize(XT_COMMENT_LEN, 0);
    Some(info)
}

/// `struct xt_multiport_v1` for destination ports (single ports, no ranges).
fn multiport_info(list: &str) -> Option<Vec<u8>> {
    let ports: Vec<u16> = list
        .split(',')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if ports.is_empty() || ports.len() > XT_MULTI_PORTS {
        return None;
    }
    let mut info = vec![XT_MULTIPORT_DESTINATION, ports.len() as u8];
    for i in 0..XT_MULTI_PORTS {
        info.extend_from_slice(&ports.get(i).copied().unwrap_or(0).to_ne_bytes());
    }
    info.extend_from_slice(&[0; XT_MULTI_PORTS]); // pflags: no ranges
    info.push(0); // invert
    Some(info)
}

/// `struct nf_nat_range2` for `--to-destination ADDR:PORT` (`[ADDR]:PORT` for IPv6).
fn dnat_info(family: Family, to: &str) -> Option<Vec<u8>> {
    let (ip, port) = to.rsplit_once(':')?;
    let ip: IpAddr = ip
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let port: u16 = port.parse().ok()?;
    let addr = match (ip, family) {
        (IpAddr::V4(a), Family::V4) => a.octets().to_vec(),
        (IpAddr::V6(a), Family::V6) => a.octets().to_vec(),
        _ => return None,
    };
    let mut info = Vec::with_capacity(NAT_RANGE2_LEN);
    info.extend_from_slice(&(NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED).to_ne_bytes());
    for _ in 0..2 {
        let mut a = addr.clone();
        a.resize(16, 0);
        info.extend_from_slice(&a);
    }
    info.extend_from_slice(&port.to_be_bytes()); // min_proto
    info.extend_from_slice(&port.to_be_bytes()); // max_proto
    info.resize(NAT_RANGE2_LEN, 0); // base_proto and padding
    Some(info)
}

/// Encodes one rule given as iptables arguments the way iptables-nft does: protocol, source,
/// destination, matches in order, counter, target. `None` for anything outside this module's
/// vocabulary.
pub fn encode(family: Family, args: &[String]) -> Option<NewRule> {
    let mut proto: Option<u8> = None;
    let (mut src, mut dst) = (Vec::new(), Vec::new());
    let mut matches: Vec<Expr> = Vec::new();
    let mut target: Option<Expr> = None;
    let mut module: Option<&str> = None;
    let mut it = args.iter().map(String::as_str);
    while let Some(arg) = it.next() {
        match arg {
            "-p" => proto = Some(proto_number(it.next()?)?),
            "-s" => src = address(family, it.next()?, true)?,
            "-d" => dst = address(family, it.next()?, false)?,
            "-m" => {
                module = Some(it.next()?);
                if !matches!(module, Some("comment" | "multiport")) {
                    return None;
                }
            }
            "--comment" if module == Some("comment") => matches.push(Expr::Match {
                name: "comment".into(),
                rev: 0,
                info: comment_info(it.next()?)?,
            }),
            "--destination-ports" | "--dports" if module == Some("multiport") => {
                proto?; // multiport needs -p before it (iptables refuses it too)
                matches.push(Expr::Match {
                    name: "multiport".into(),
                    rev: 1,
                    info: multiport_info(it.next()?)?,
                });
            }
            // The implicit tcp/udp match of `-p tcp --dport N`, which iptables-nft encodes
            // natively: transport header bytes 2..4.
            "--dport" => {
                proto?;
                let port: u16 = it.next()?.parse().ok()?;
                matches.push(Expr::Payload {
                    base: PayloadBase::Transport,
                    offset: 2,
                    len: 2,
                    dreg: REG,
                });
                matches.push(Expr::CmpEq {
                    sreg: REG,
                    data: port.to_be_bytes().to_vec(),
                });
            }
            "-j" => {
                let name = it.next()?;
                target = Some(if name == "DNAT" {
                    if it.next()? != "--to-destination" {
                        return None;
                    }
                    Expr::Target {
                        name: "DNAT".into(),
                        rev: 2,
                        info: dnat_info(family, it.next()?)?,
                    }
                } else if name.contains('-') {
                    // A user chain (ours are all `CNI-…`; an external mark chain too, like
                    // `KUBE-MARK-MASQ`). Built-in targets have no dash and are not handled.
                    Expr::Jump(name.to_string())
                } else {
                    return None;
                });
            }
            _ => return None,
        }
    }
    let mut exprs = Vec::new();
    if let Some(p) = proto {
        exprs.push(Expr::Meta {
            key: NFT_META_L4PROTO,
            dreg: REG,
        });
        exprs.push(Expr::CmpEq {
            sreg: REG,
            data: vec![p],
        });
    }
    exprs.extend(src);
    exprs.extend(dst);
    exprs.extend(matches);
    exprs.push(Expr::Counter);
    exprs.push(target?);
    Some(NewRule {
        exprs,
        compat_proto: proto,
    })
}

fn encode_all(family: Family, rules: &[Rule]) -> Option<Vec<NewRule>> {
    rules.iter().map(|r| encode(family, r)).collect()
}

/// The oldest iptables-nft whose encoding of these rules we write (checked byte for byte by
/// the netns tests): older releases encode `--dport` as an x_tables match and may not read
/// the native form back, which would make `iptables-save` (kube-proxy's too) choke on the table.
const MIN_IPTABLES: (u32, u32, u32) = (1, 8, 9);

/// Parses `iptables v1.8.9 (nf_tables)`: the version when it is the nf_tables variant.
pub fn nft_variant_version(banner: &str) -> Option<(u32, u32, u32)> {
    if !banner.contains("(nf_tables)") {
        return None;
    }
    let v = banner
        .split_whitespace()
        .find_map(|w| w.strip_prefix('v'))?;
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// Whether this family's iptables tool is a recent enough nft variant for our encoding.
fn tool_writes_our_encoding(family: Family) -> Result<(), String> {
    let tool = super::iptables_tool(family);
    let out = crate::exec::run(tool, &["-V"], None).map_err(|e| e.to_string())?;
    match nft_variant_version(&out.stdout) {
        Some(v) if v >= MIN_IPTABLES => Ok(()),
        Some(v) => Err(format!("{tool} {v:?} is older than {MIN_IPTABLES:?}")),
        None => Err(format!(
            "{tool} is not the nf_tables variant: {}",
            out.stdout.trim()
        )),
    }
}

/// Whether the shared rules live in nf_tables and are in use there: `CNI-HOSTPORT-DNAT` exists
/// and PREROUTING jumps to it (a stale copy left by an earlier iptables variant does not count).
fn nft_managed(sock: &mut NfSocket, family: Family) -> nf_tables::Result<bool> {
    let f = nf_family(family);
    if sock.chain(f, TABLE, TOP_DNAT_CHAIN)?.is_none() {
        return Ok(false);
    }
    Ok(sock
        .rules(f, TABLE, "PREROUTING")?
        .iter()
        .any(|r| r.jump_target() == Some(TOP_DNAT_CHAIN)))
}

/// The ADD transaction: the container chain, its entry rules (right after it, see the module
/// doc), then its DNAT rules.
pub fn add_batch(req: &Request, addr: &IpNetwork) -> Option<Batch> {
    let family = Family::of(&addr.ip());
    let entries = encode_all(family, &render::entry_rules(req, family))?;
    let dnats = encode_all(family, &render::dnat_rules(req, addr))?;
    let chain = req.attachment.dnat_chain();
    let f = nf_family(family);
    let mut b = Batch::new();
    b.add_chain(f, TABLE, &chain);
    for r in &entries {
        b.append_rule(f, TABLE, TOP_DNAT_CHAIN, r);
    }
    for r in &dnats {
        b.append_rule(f, TABLE, &chain, r);
    }
    Some(b)
}

/// Outcome of a direct attempt.
#[derive(Debug)]
pub enum Outcome {
    /// Applied (or nothing to do); says how, for the debug log.
    Done(&'static str),
    /// Not applicable or refused: the caller falls back to `iptables-restore` (the reason is
    /// for the debug log).
    Fallback(String),
}

/// ADD of the container rules (the shared rules must already be in place).
pub fn add(req: &Request, addr: &IpNetwork) -> Outcome {
    let Some(batch) = add_batch(req, addr) else {
        return Outcome::Fallback("rules outside the netlink encoder's vocabulary".into());
    };
    let family = Family::of(&addr.ip());
    NfSocket::new()
        .and_then(|mut sock| add_with(&mut sock, family, &batch))
        .unwrap_or_else(|e| Outcome::Fallback(e.to_string()))
}

fn add_with(sock: &mut NfSocket, family: Family, batch: &Batch) -> nf_tables::Result<Outcome> {
    if !nft_managed(sock, family)? {
        return Ok(Outcome::Fallback(format!(
            "{TOP_DNAT_CHAIN} is not in use in nf_tables"
        )));
    }
    if let Err(why) = tool_writes_our_encoding(family) {
        return Ok(Outcome::Fallback(why));
    }
    // EEXIST on the container chain (a repeated ADD) aborts the whole transaction.
    sock.apply(batch)?;
    Ok(Outcome::Done("pod rules added"))
}

/// DEL of one family: every rule in `CNI-HOSTPORT-DNAT` jumping to this container's chain, the
/// chain's rules, the chain. Falls back when the chain is referenced from elsewhere or an old
/// `CNI-SN-…` chain exists (both only left by very old or foreign setups).
pub fn del(req: &Request, family: Family) -> Outcome {
    NfSocket::new()
        .and_then(|mut sock| del_with(&mut sock, req, family))
        .unwrap_or_else(|e| Outcome::Fallback(e.to_string()))
}

fn del_with(sock: &mut NfSocket, req: &Request, family: Family) -> nf_tables::Result<Outcome> {
    let f = nf_family(family);
    // Without the shared chain in nf_tables (iptables-legacy, or nothing of ours in this
    // family), only iptables itself can tell: fall back.
    if sock.chain(f, TABLE, TOP_DNAT_CHAIN)?.is_none() {
        return Ok(Outcome::Fallback(format!(
            "{TOP_DNAT_CHAIN} is not in nf_tables"
        )));
    }
    if sock
        .chain(f, TABLE, &req.attachment.old_snat_chain())?
        .is_some()
    {
        return Ok(Outcome::Fallback("a pre-2017 CNI-SN chain exists".into()));
    }
    let chain = req.attachment.dnat_chain();
    let Some(info) = sock.chain(f, TABLE, &chain)? else {
        // A repeated DEL, or rules iptables-legacy holds (a node that switched variants):
        // iptables-restore finds out, cheaply, as there is no chain to list.
        return Ok(Outcome::Fallback(
            "no chain of this container in nf_tables".into(),
        ));
    };
    // The kernel's use count of a chain covers its own rules as well as the rules jumping to it.
    let own_rules = sock.rules(f, TABLE, &chain)?.len();
    let wanted = (info.use_count as usize).saturating_sub(own_rules);
    let mut how = "entry rules at the handles ADD gave them";
    let mut handles = Vec::with_capacity(wanted);
    for h in (info.handle + 1..).take(wanted) {
        match sock.rule(f, TABLE, TOP_DNAT_CHAIN, h)? {
            Some(r) if r.jump_target() == Some(chain.as_str()) => handles.push(h),
            _ => break,
        }
    }
    if handles.len() != wanted {
        how = "entry rules found by listing CNI-HOSTPORT-DNAT";
        handles = sock
            .rules(f, TABLE, TOP_DNAT_CHAIN)?
            .into_iter()
            .filter(|r| r.jump_target() == Some(chain.as_str()))
            .map(|r| r.handle)
            .collect();
        if handles.len() != wanted {
            return Ok(Outcome::Fallback(format!(
                "{chain} is referenced {wanted} times, {} of them from {TOP_DNAT_CHAIN}",
                handles.len()
            )));
        }
    }
    let mut b = Batch::new();
    for h in handles {
        b.delete_rule(f, TABLE, TOP_DNAT_CHAIN, h);
    }
    b.flush_chain(f, TABLE, &chain)
        .delete_chain(f, TABLE, &chain);
    sock.apply(&b)?;
    Ok(Outcome::Done(how))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        // Test helper: whitespace split, with one quoted comment allowed.
        let mut out = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('\'') {
                let (q, tail) = r.split_once('\'').unwrap();
                out.push(q.to_string());
                rest = tail;
            } else {
                let (w, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push(w.to_string());
                rest = tail;
            }
        }
        out
    }

    #[test]
    fn dnat_rule_layout() {
        let r = encode(
            Family::V4,
            &args("-p tcp --dport 8080 -j DNAT --to-destination 10.244.0.5:80"),
        )
        .unwrap();
        assert_eq!(r.compat_proto, Some(6));
        let names: Vec<_> = r
            .exprs
            .iter()
            .map(|e| {
                format!("{e:?}")
                    .split([' ', '(', '{'])
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            ["Meta", "CmpEq", "Payload", "CmpEq", "Counter", "Target"]
        );
        let Expr::Target { info, .. } = &r.exprs[5] else {
            panic!()
        };
        assert_eq!(info.len(), NAT_RANGE2_LEN);
        assert_eq!(&info[4..8], [10, 244, 0, 5]);
        assert_eq!(&info[20..24], [10, 244, 0, 5]);
        assert_eq!(&info[36..40], [0, 80, 0, 80]);
    }

    #[test]
    fn address_matches_follow_the_protocol() {
        let r = encode(
            Family::V6,
            &args("-p udp --dport 53 -d fd00::1 -s fd00::5/128 -j CNI-HOSTPORT-SETMARK"),
        )
        .unwrap();
        assert_eq!(
            r.exprs[2],
            Expr::Payload {
                base: PayloadBase::Network,
                offset: 8,
                len: 16,
                dreg: 1
            }
        );
        assert_eq!(
            r.exprs[4],
            Expr::Payload {
                base: PayloadBase::Network,
                offset: 24,
                len: 16,
                dreg: 1
            }
        );
        assert_eq!(
            r.exprs.last(),
            Some(&Expr::Jump("CNI-HOSTPORT-SETMARK".into()))
        );
        // masqAll's source matches everything: no expression at all.
        let all = encode(
            Family::V4,
            &args("-p tcp --dport 1 -s 0.0.0.0/0 -j CNI-HOSTPORT-SETMARK"),
        )
        .unwrap();
        assert_eq!(all.exprs.len(), 6);
    }

    #[test]
    fn entry_rule_uses_comment_and_multiport_matches() {
        let r = encode(
            Family::V4,
            &args("-m comment --comment 'dnat name: \"n\" id: \"c\"' -m multiport -p tcp --destination-ports 80,443 -j CNI-DN-abc"),
        )
        .unwrap();
        let Expr::Match { name, info, .. } = &r.exprs[2] else {
            panic!()
        };
        assert_eq!((name.as_str(), info.len()), ("comment", 256));
        assert!(info.starts_with(b"dnat name: \"n\" id: \"c\"\0"));
        let Expr::Match { name, rev, info } = &r.exprs[3] else {
            panic!()
        };
        assert_eq!((name.as_str(), *rev, info.len()), ("multiport", 1, 48));
        assert_eq!(&info[..2], [XT_MULTIPORT_DESTINATION, 2]);
        assert_eq!(
            &info[2..6],
            [80u16.to_ne_bytes(), 443u16.to_ne_bytes()].concat()
        );
    }

    #[test]
    fn iptables_banner() {
        assert_eq!(
            nft_variant_version("iptables v1.8.9 (nf_tables)\n"),
            Some((1, 8, 9))
        );
        assert_eq!(
            nft_variant_version("ip6tables v1.8.10 (nf_tables)"),
            Some((1, 8, 10))
        );
        assert_eq!(nft_variant_version("iptables v1.8.9 (legacy)"), None);
        assert_eq!(
            nft_variant_version("iptables v1.8 (nf_tables)"),
            Some((1, 8, 0))
        );
        assert!(nft_variant_version("iptables v1.8.7 (nf_tables)").unwrap() < MIN_IPTABLES);
        assert!(nft_variant_version("iptables v1.10.0 (nf_tables)").unwrap() > MIN_IPTABLES);
        assert_eq!(nft_variant_version("garbage"), None);
    }

    #[test]
    fn anything_else_is_left_to_iptables_restore() {
        for rule in [
            "-p sctp --dport 80 -j DNAT --to-destination 10.0.0.1:80",
            "-p tcp --dport 80 -s 10.0.0.0/8 -j CNI-HOSTPORT-SETMARK",
            "-p tcp --dport 80 -j MASQUERADE",
            "-p tcp --dport 80 ! -s 10.0.0.1 -j CNI-X",
            "-m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
            "-p tcp --dport 80 -j DNAT --to-destination [fd00::1]:80",
        ] {
            assert!(encode(Family::V4, &args(rule)).is_none(), "{rule}");
        }
    }
}
