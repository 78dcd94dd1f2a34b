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
//! `-m comment`, `-m multiport --destination-ports`, `-m addrtype --dst-type LOCAL`,
//! `-m mark`, jumps, `DNAT --to-destination`, `MARK --set-xmark`, `MASQUERADE`); anything else
//! (SCTP, `conditionsV4/V6`, prefixes) returns `None` and the caller uses `iptables-restore`.
//! ADD takes this path only when every shared rule this configuration needs is in nf_tables
//! exactly as iptables-nft writes it (one netlink dump per shared chain, no `iptables -S`) and
//! the family's iptables tool is the nf_tables variant, 1.8.9 or newer (older ones encode
//! `--dport` differently; the answer is remembered per binary, so only the first such ADD
//! execs `iptables -V`). DEL only ever deletes by handle rules that jump to this container's
//! chain. When nf_tables holds no chain of this container and x_tables has no nat table in
//! this netns (no iptables-legacy rules can exist), there is nothing to delete in that family
//! and nothing is exec'd (an IPv4-only pod's IPv6 side); every other case it cannot decide
//! from nf_tables alone goes to iptables-restore, so iptables-legacy nodes and nodes that
//! switched variants are handled there.
//!
//! Handles: ADD sends the new `CNI-DN-…` chain first and the entry rules right after it, so
//! the kernel (which numbers chains and rules of a table from one counter, within one
//! transaction) gives the entry rules the handles following the chain's. DEL looks those
//! handles up one by one and deletes them only if they still jump to this container's chain;
//! when they do not (rules made by `iptables` or the Go plugin), it lists `CNI-HOSTPORT-DNAT`
//! once over netlink.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use nf_tables::{Batch, Expr, NewRule, NfSocket, PayloadBase, NFT_META_L4PROTO, NFT_META_MARK};

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
/// `1 << RTN_LOCAL`.
const XT_ADDRTYPE_LOCAL: u16 = 1 << 2;
/// `struct nf_nat_ipv4_multi_range_compat` (4 + one 20-byte range).
const MASQ_V4_INFO_LEN: usize = 24;
/// `struct nf_nat_range` (flags, two 16-byte addresses, two 2-byte ports).
const MASQ_V6_INFO_LEN: usize = 40;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;

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

/// `struct xt_addrtype_info_v1` for `--dst-type LOCAL`: source, dest (u16 type bits), flags.
fn addrtype_dst_local_info() -> Vec<u8> {
    let mut info = 0u16.to_ne_bytes().to_vec();
    info.extend_from_slice(&XT_ADDRTYPE_LOCAL.to_ne_bytes());
    info.extend_from_slice(&0u32.to_ne_bytes());
    info
}

/// Parses iptables' `VALUE/MASK` (hex as `iptables -S` prints it, or decimal).
fn value_mask(text: &str) -> Option<(u32, u32)> {
    let num = |s: &str| match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    };
    let (v, m) = text.split_once('/')?;
    Some((num(v)?, num(m)?))
}

/// MASQUERADE with no options, as iptables fills it: IPv4's
/// `struct nf_nat_ipv4_multi_range_compat` (rangesize 1, one zeroed range), IPv6's zeroed
/// `struct nf_nat_range`.
fn masquerade_info(family: Family) -> Vec<u8> {
    match family {
        Family::V4 => {
            let mut info = 1u32.to_ne_bytes().to_vec();
            info.resize(MASQ_V4_INFO_LEN, 0);
            info
        }
        Family::V6 => vec![0; MASQ_V6_INFO_LEN],
    }
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
                if !matches!(module, Some("comment" | "multiport" | "addrtype" | "mark")) {
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
            // `-m addrtype --dst-type LOCAL` (the shared PREROUTING/OUTPUT entry rules).
            "--dst-type" if module == Some("addrtype") => {
                if it.next()? != "LOCAL" {
                    return None;
                }
                matches.push(Expr::Match {
                    name: "addrtype".into(),
                    rev: 1,
                    info: addrtype_dst_local_info(),
                });
            }
            // `-m mark --mark V/M`, which iptables-nft encodes natively: meta mark & M == V.
            "--mark" if module == Some("mark") => {
                let (value, mask) = value_mask(it.next()?)?;
                matches.push(Expr::Meta {
                    key: NFT_META_MARK,
                    dreg: REG,
                });
                matches.push(Expr::Bitwise {
                    reg: REG,
                    mask: mask.to_ne_bytes().to_vec(),
                    xor: vec![0; 4],
                });
                matches.push(Expr::CmpEq {
                    sreg: REG,
                    data: value.to_ne_bytes().to_vec(),
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
                } else if name == "MARK" {
                    if it.next()? != "--set-xmark" {
                        return None;
                    }
                    let (value, mask) = value_mask(it.next()?)?;
                    // struct xt_mark_tginfo2
                    let mut info = value.to_ne_bytes().to_vec();
                    info.extend_from_slice(&mask.to_ne_bytes());
                    Expr::Target {
                        name: "MARK".into(),
                        rev: 2,
                        info,
                    }
                } else if name == "MASQUERADE" {
                    Expr::Target {
                        name: "MASQUERADE".into(),
                        rev: 0,
                        info: masquerade_info(family),
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

/// Whether this family's iptables tool is a recent enough nft variant for our encoding. The
/// answer is kept per tool binary (see [`version_cache`]), so a steady ADD execs nothing.
fn tool_writes_our_encoding(family: Family) -> Result<(), String> {
    let tool = super::iptables_tool(family);
    let identity = version_cache::identity(tool);
    let version = match identity.as_ref().and_then(version_cache::lookup) {
        Some(v) => Some(v),
        None => {
            let out = crate::exec::run(tool, &["-V"], None).map_err(|e| e.to_string())?;
            let v = nft_variant_version(&out.stdout);
            if let (Some(id), Some(v)) = (&identity, v) {
                version_cache::store(id, v);
            }
            if v.is_none() {
                return Err(format!(
                    "{tool} is not the nf_tables variant: {}",
                    out.stdout.trim()
                ));
            }
            v
        }
    };
    match version {
        Some(v) if v >= MIN_IPTABLES => Ok(()),
        Some(v) => Err(format!("{tool} {v:?} is older than {MIN_IPTABLES:?}")),
        None => Err(format!("{tool} is not the nf_tables variant")),
    }
}

/// The nf_tables variant's version per iptables binary, in `/run` (tmpfs: gone at reboot, when
/// packages may have changed anyway). Keyed by the binary's resolved path, inode, size and
/// mtime, so switching alternatives or upgrading the package asks the tool again. Best effort:
/// an unreadable or unwritable cache only costs the `-V` exec.
mod version_cache {
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;

    const DIR: &str = "/run/cni-portmap-rs";

    /// The key: what identifies the binary `tool` resolves to.
    pub struct Identity {
        pub(super) file: PathBuf,
        pub(super) key: String,
    }

    pub fn identity(tool: &str) -> Option<Identity> {
        let path = crate::exec::find_program(tool, None)?;
        let real = std::fs::canonicalize(&path).ok()?;
        let m = real.metadata().ok()?;
        Some(Identity {
            file: PathBuf::from(DIR).join(format!("{tool}.version")),
            key: format!(
                "{} {} {} {} {}.{}",
                real.display(),
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec()
            ),
        })
    }

    pub fn lookup(id: &Identity) -> Option<(u32, u32, u32)> {
        let text = std::fs::read_to_string(&id.file).ok()?;
        let (key, version) = text.trim_end().rsplit_once('\n')?;
        if key != id.key {
            return None;
        }
        let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
        Some((parts.next()??, parts.next()??, parts.next()??))
    }

    pub fn store(id: &Identity, version: (u32, u32, u32)) {
        store_in(std::path::Path::new(DIR), id, version)
    }

    pub(super) fn store_in(dir: &std::path::Path, id: &Identity, (a, b, c): (u32, u32, u32)) {
        let tmp = id.file.with_extension(format!("tmp{}", std::process::id()));
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, format!("{}\n{a}.{b}.{c}\n", id.key)))
            .and_then(|()| std::fs::rename(&tmp, &id.file));
        if let Err(e) = written {
            log::debug!("iptables version not cached: {e}");
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// Whether every shared rule this configuration needs is in nf_tables exactly as iptables-nft
/// writes it (read over netlink, one dump per shared chain, instead of `iptables -S`). A rule
/// outside the encoder's vocabulary counts as missing: the caller then asks iptables.
fn shared_rules_present(
    sock: &mut NfSocket,
    req: &Request,
    family: Family,
) -> nf_tables::Result<bool> {
    let f = family.nf_tables();
    for (chain, rules) in render::shared_rules_by_chain(req) {
        let Some(wanted) = encode_all(family, &rules) else {
            return Ok(false);
        };
        let have = sock.rules(f, TABLE, chain)?;
        if !wanted
            .iter()
            .all(|w| have.iter().any(|h| h.matches(&w.exprs)))
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether x_tables (iptables-legacy) has a nat table of `family` in this thread's netns: only
/// then can it hold rules of ours. The kernel lists the instantiated tables in
/// `/proc/net/ip{,6}_tables_names` (absent when the module is not even loaded).
fn legacy_nat_exists(family: Family) -> bool {
    let file = match family {
        Family::V4 => "ip_tables_names",
        Family::V6 => "ip6_tables_names",
    };
    match std::fs::read_to_string(format!("/proc/thread-self/net/{file}")) {
        Ok(names) => names.lines().any(|l| l.trim() == TABLE),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        // Unknown: assume it may, so iptables itself decides.
        Err(_) => true,
    }
}

/// The ADD transaction: the container chain, its entry rules (right after it, see the module
/// doc), then its DNAT rules.
pub fn add_batch(req: &Request, addr: &IpNetwork) -> Option<Batch> {
    let family = Family::of(&addr.ip());
    let entries = encode_all(family, &render::entry_rules(req, family))?;
    let dnats = encode_all(family, &render::dnat_rules(req, addr))?;
    let chain = req.attachment.dnat_chain();
    let f = family.nf_tables();
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
        .and_then(|mut sock| add_with(&mut sock, req, family, &batch))
        .unwrap_or_else(|e| Outcome::Fallback(e.to_string()))
}

fn add_with(
    sock: &mut NfSocket,
    req: &Request,
    family: Family,
    batch: &Batch,
) -> nf_tables::Result<Outcome> {
    if !shared_rules_present(sock, req, family)? {
        return Ok(Outcome::Fallback(
            "the shared rules are not all in nf_tables".into(),
        ));
    }
    if let Err(why) = tool_writes_our_encoding(family) {
        return Ok(Outcome::Fallback(why));
    }
    // EEXIST on the container chain (a repeated ADD) aborts the whole transaction.
    sock.apply(batch)?;
    Ok(Outcome::Done("pod rules added"))
}

/// `Done` when neither nf_tables (checked for this container's chains) nor x_tables (no nat
/// table in this netns) can hold rules of this container; otherwise a fallback for `why`.
fn nothing_here_unless_legacy(
    sock: &mut NfSocket,
    req: &Request,
    family: Family,
    why: String,
) -> nf_tables::Result<Outcome> {
    if legacy_nat_exists(family) {
        return Ok(Outcome::Fallback(why));
    }
    let f = family.nf_tables();
    for chain in [req.attachment.dnat_chain(), req.attachment.old_snat_chain()] {
        if sock.chain(f, TABLE, &chain)?.is_some() {
            return Ok(Outcome::Fallback(format!("{why} but {chain} is")));
        }
    }
    Ok(Outcome::Done("no nat rules of ours in this family"))
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
    let f = family.nf_tables();
    // Without the shared chain in nf_tables (iptables-legacy, or nothing of ours in this
    // family), only iptables itself can tell, unless x_tables has no nat table at all.
    if sock.chain(f, TABLE, TOP_DNAT_CHAIN)?.is_none() {
        return nothing_here_unless_legacy(
            sock,
            req,
            family,
            format!("{TOP_DNAT_CHAIN} is not in nf_tables"),
        );
    }
    if sock
        .chain(f, TABLE, &req.attachment.old_snat_chain())?
        .is_some()
    {
        return Ok(Outcome::Fallback("a pre-2017 CNI-SN chain exists".into()));
    }
    let chain = req.attachment.dnat_chain();
    let Some(info) = sock.chain(f, TABLE, &chain)? else {
        // A repeated DEL, no address of this family, or rules iptables-legacy holds (a node
        // that switched variants): only the last needs iptables-restore.
        if legacy_nat_exists(family) {
            return Ok(Outcome::Fallback(
                "no chain of this container in nf_tables".into(),
            ));
        }
        return Ok(Outcome::Done(
            "no chain of this container in nf_tables, no x_tables nat table",
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
    fn shared_rules_encode_mark_masquerade_and_addrtype() {
        let r = encode(
            Family::V4,
            &args("-m mark --mark 0x2000/0x2000 -j MASQUERADE"),
        )
        .unwrap();
        assert_eq!(
            r.exprs[1],
            Expr::Bitwise {
                reg: 1,
                mask: 0x2000u32.to_ne_bytes().to_vec(),
                xor: vec![0; 4]
            }
        );
        let Some(Expr::Target { name, info, .. }) = r.exprs.last() else {
            panic!()
        };
        assert_eq!(
            (name.as_str(), info.len()),
            ("MASQUERADE", MASQ_V4_INFO_LEN)
        );
        let r = encode(
            Family::V6,
            &args("-m comment --comment 'x' -j MARK --set-xmark 0x4000/0x4000"),
        )
        .unwrap();
        let Some(Expr::Target { name, rev, info }) = r.exprs.last() else {
            panic!()
        };
        assert_eq!((name.as_str(), *rev), ("MARK", 2));
        assert_eq!(
            info[..],
            [0x4000u32.to_ne_bytes(), 0x4000u32.to_ne_bytes()].concat()
        );
        let r = encode(
            Family::V4,
            &args("-m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT"),
        )
        .unwrap();
        let Expr::Match { name, info, .. } = &r.exprs[0] else {
            panic!()
        };
        assert_eq!(
            (name.as_str(), &info[2..4]),
            ("addrtype", &4u16.to_ne_bytes()[..])
        );
        assert_eq!(value_mask("0x10/255"), Some((16, 255)));
        assert_eq!(value_mask("0x10"), None);
    }

    #[test]
    fn version_cache_answers_only_for_the_same_binary() {
        let dir = tempfile::tempdir().unwrap();
        let id = |key: &str| version_cache::Identity {
            file: dir.path().join("iptables.version"),
            key: key.to_string(),
        };
        assert_eq!(version_cache::lookup(&id("a 1 2")), None);
        version_cache::store_in(dir.path(), &id("a 1 2"), (1, 8, 9));
        assert_eq!(version_cache::lookup(&id("a 1 2")), Some((1, 8, 9)));
        assert_eq!(version_cache::lookup(&id("a 1 3")), None, "another binary");
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
            "-p tcp --dport 80 -j SNAT --to-source 10.0.0.1",
            "-m addrtype --dst-type UNICAST -j CNI-HOSTPORT-DNAT",
            "-p tcp --dport 80 ! -s 10.0.0.1 -j CNI-X",
            "-p tcp --dport 80 -j DNAT --to-destination [fd00::1]:80",
        ] {
            assert!(encode(Family::V4, &args(rule)).is_none(), "{rule}");
        }
    }
}
