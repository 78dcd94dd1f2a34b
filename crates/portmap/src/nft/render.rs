//! Pure rendering of the nftables `cni_hostport` tables and per-attachment transactions.
//!
//! Layout (per family, `table ip cni_hostport` / `table ip6 cni_hostport`):
//! * upstream's chains `prerouting`/`output` (nat, priority -100, `fib daddr type local jump
//!   hostports_all`, conditions prepended), `hostports_all`, and the legacy per-rule chains
//!   `hostip_hostports`/`hostports` (kept so rules written by upstream's nft backend keep working);
//! * per-attachment state lives only in **set/map elements** keyed by `[hostIP .] proto . port`:
//!   `hostip_hostport_dnat`/`hostport_dnat` (→ `podIP . containerPort`), the masquerade key sets,
//!   and `hostport_owner` (`token . hostIP|any . proto . port`, token = hash of name+container ID).
//!
//! The static part (table, sets, chains, rules) is an `nft -f` script, run by the first ADD on a
//! node and whenever an ADD finds a chain we own not ending with the [`static_marker`] comment
//! (flushed or re-created by someone else, or written for another config); per-attachment
//! changes are [`ElemOp`]s, sent as one nf_tables netlink batch (their nft form is shown by
//! [`Txn::text`] for review and logs).
//!
//! Why elements instead of upstream's comment-tagged rules: an element is added and deleted
//! without reading the ruleset, whereas deleting a rule needs its handle (a listing that grows
//! with every mapping on the node: upstream DEL takes 1.2 s at 10k mappings), and `nft` fetches all
//! chains of a table before adding a rule, so per-container chains would make ADD grow too.
//! The owner element makes DEL safe without reading: it is created together with the DNAT
//! element (`create` = fail if present) and deleted together with it, so a DEL only succeeds for
//! keys this attachment really owns.
//!
//! Masquerading needs no per-pod address either: hairpin traffic is recognised after DNAT as
//! "the new destination is routed back out of the interface the packet came in on"
//! (`fib daddr . iif oif exists`) and marked (`markMasqBit`, like the iptables backend);
//! `masqAll` keys are marked before DNAT; localhost traffic is recognised by its 127.0.0.1
//! source. A marked connection is masqueraded in `hostports_masquerade`. Hairpin matches, like
//! the iptables `-s <podIP/prefix>` rule, any source behind the pod's host interface (with a
//! bridge: sibling pods; with Calico's per-pod veth: only the pod itself).
//!
//! Known limits of this layout (compared with upstream's comment-tagged rules):
//! * DEL removes the keys its own `portMappings` name; a DEL sent with different mappings than
//!   the ADD leaves the other keys (libcni-based runtimes replay the ADD's capability args).
//! * A second container mapping an already mapped host port is refused (`Conflict`) instead of
//!   being shadowed by the first one's rule.
//! * Rules written by upstream's nft backend keep working (reached through `hostports_all`) but
//!   are not removed by our DEL, and an upstream ADD re-creates `hostports_all` without our map
//!   lookups (restored by our next ADD, which finds the marker gone).

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::mapping::{Family, PortMapping, Protocol};
use crate::Request;

pub const TABLE: &str = "cni_hostport";

/// Priority of the hairpin-marking chain: after DNAT (-100) so the new destination is visible.
const MARK_PRIORITY: i32 = -90;

fn fam(f: Family) -> &'static str {
    match f {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    }
}

fn addr_type(f: Family) -> &'static str {
    match f {
        Family::V4 => "ipv4_addr",
        Family::V6 => "ipv6_addr",
    }
}

/// One host-side match: the destination address (if restricted), protocol and host port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub host_ip: Option<IpAddr>,
    pub proto: Protocol,
    pub port: u16,
}

impl Key {
    fn dnat_map(&self) -> &'static str {
        if self.host_ip.is_some() {
            "hostip_hostport_dnat"
        } else {
            "hostport_dnat"
        }
    }

    fn masq_set(&self, all: bool) -> &'static str {
        match (self.host_ip.is_some(), all) {
            (true, false) => "hostip_hostport_masq",
            (false, false) => "hostport_masq",
            (true, true) => "hostip_hostport_masq_all",
            (false, true) => "hostport_masq_all",
        }
    }

    fn text(&self) -> String {
        match self.host_ip {
            Some(ip) => format!("{ip} . {} . {}", self.proto, self.port),
            None => format!("{} . {}", self.proto, self.port),
        }
    }

    fn owner_text(&self, family: Family, token: &str) -> String {
        let ip = self.host_ip.unwrap_or_else(|| family.unspecified());
        format!("\"{token}\" . {ip} . {} . {}", self.proto, self.port)
    }
}

/// The keys of `family`, deduplicated (the first mapping of a key wins, as the first matching
/// DNAT rule does with iptables).
pub fn keys<'a>(req: &'a Request, family: Family) -> Vec<(Key, &'a PortMapping)> {
    let mut out: Vec<(Key, &PortMapping)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for m in req.mappings.iter().filter(|m| m.applies_to(family)) {
        let key = Key {
            host_ip: m.dest_ip(),
            proto: m.protocol,
            port: m.host_port,
        };
        if seen.insert(key) {
            out.push((key, m));
        }
    }
    out
}

/// What a line of a transaction is, so refused changes can be attributed to their key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tag {
    /// Table, chains, sets and static rules.
    Static,
    /// The owner element of group N.
    Owner(usize),
    /// The DNAT element of group N.
    Dnat(usize),
    /// Any other line of group N.
    Other(usize),
}

impl Tag {
    pub fn group(self) -> Option<usize> {
        match self {
            Tag::Static => None,
            Tag::Owner(g) | Tag::Dnat(g) | Tag::Other(g) => Some(g),
        }
    }
}

/// What an element change does (`create` fails if the key is present, `delete` if absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Create,
    Add,
    Delete,
}

/// The key of an element: an owner key (`token . hostIP|any . proto . port`) or a mapping key
/// (`[hostIP .] proto . port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElemKey {
    Owner { token: String, key: Key },
    Mapping(Key),
}

/// One element change of one family's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElemOp {
    pub change: Change,
    pub family: Family,
    pub set: &'static str,
    pub key: ElemKey,
    /// DNAT map datum: pod address and container port.
    pub data: Option<(IpAddr, u16)>,
    pub comment: Option<String>,
}

impl ElemOp {
    /// The same change as an nft command.
    pub fn text(&self) -> String {
        let verb = match self.change {
            Change::Create => "create",
            Change::Add => "add",
            Change::Delete => "delete",
        };
        let key = match &self.key {
            ElemKey::Owner { token, key } => key.owner_text(self.family, token),
            ElemKey::Mapping(key) => key.text(),
        };
        let data = self
            .data
            .map(|(ip, port)| format!(" : {ip} . {port}"))
            .unwrap_or_default();
        let comment = self
            .comment
            .as_ref()
            .map(|c| format!(" comment \"{c}\""))
            .unwrap_or_default();
        format!(
            "{verb} element {} {TABLE} {} {{ {key}{data}{comment} }}",
            fam(self.family),
            self.set
        )
    }
}

/// A line of a transaction: nft text (static structures) or an element change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Text(String),
    Elem(ElemOp),
}

impl Line {
    pub fn text(&self) -> String {
        match self {
            Line::Text(t) => t.clone(),
            Line::Elem(e) => e.text(),
        }
    }
}

/// A transaction whose lines are tagged: static lines run as an `nft -f -` script, element
/// changes as one netlink batch.
#[derive(Debug, Default, Clone)]
pub struct Txn {
    pub lines: Vec<(Tag, Line)>,
}

impl Txn {
    fn push(&mut self, tag: Tag, line: String) {
        self.lines.push((tag, Line::Text(line)));
    }

    fn elem(&mut self, tag: Tag, op: ElemOp) {
        self.lines.push((tag, Line::Elem(op)));
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        for (_, l) in &self.lines {
            s.push_str(&l.text());
            s.push('\n');
        }
        s
    }

    /// The element changes, in order, with their tags.
    pub fn elems(&self) -> impl Iterator<Item = (Tag, &ElemOp)> {
        self.lines.iter().filter_map(|(t, l)| match l {
            Line::Elem(e) => Some((*t, e)),
            Line::Text(_) => None,
        })
    }

    /// The same transaction without the lines of `groups`.
    pub fn without_groups(&self, groups: &[usize]) -> Txn {
        // A set: a pod with 10,000 mappings has 60,000 lines.
        let groups: std::collections::HashSet<usize> = groups.iter().copied().collect();
        Txn {
            lines: self
                .lines
                .iter()
                .filter(|(t, _)| t.group().is_none_or(|g| !groups.contains(&g)))
                .cloned()
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn append(&mut self, other: Txn) {
        self.lines.extend(other.lines);
    }
}

/// The sets and maps holding per-attachment elements (`add`: idempotent when present).
fn sets(family: Family) -> Txn {
    let t = format!("{} {TABLE}", fam(family));
    let at = addr_type(family);
    let mut x = Txn::default();
    let mut s = |line: String| x.push(Tag::Static, line);
    s(format!(
        "add set {t} hostport_owner {{ type ifname . {at} . inet_proto . inet_service; }}"
    ));
    s(format!(
        "add map {t} hostip_hostport_dnat {{ type {at} . inet_proto . inet_service : {at} . inet_service; }}"
    ));
    s(format!(
        "add map {t} hostport_dnat {{ type inet_proto . inet_service : {at} . inet_service; }}"
    ));
    for all in ["", "_all"] {
        s(format!(
            "add set {t} hostip_hostport_masq{all} {{ type {at} . inet_proto . inet_service; }}"
        ));
        s(format!(
            "add set {t} hostport_masq{all} {{ type inet_proto . inet_service; }}"
        ));
    }
    x
}

/// The chains whose rules we own (flushed and refilled by [`static_part`]); the last rule of each
/// carries the [`static_marker`].
pub fn marked_chains(req: &Request) -> &'static [&'static str] {
    if req.conf.snat {
        &[
            "hostports_all",
            "prerouting",
            "output",
            "hostports_mark",
            "hostports_masquerade",
        ]
    } else {
        &["hostports_all", "prerouting", "output"]
    }
}

/// The comment on the last rule of each chain we own: a digest of the whole static part, so
/// one dump per chain tells whether the chains are as this ADD would write them (a flush by
/// someone else, rules appended after ours, or another config's conditions or mark all change
/// the last rule or its comment).
pub fn static_marker(req: &Request, family: Family) -> String {
    use sha2::{Digest, Sha256};
    let text = static_unmarked(req, family).text();
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("cni-portmap static {hex}")
}

/// Table, sets, chains and static rules of one family, applied with `nft -f` when the steady
/// path finds them missing or stale (the `add` commands are idempotent; the chains we own are
/// flushed and refilled, so the conditions and mark of the latest ADD apply, as with upstream).
pub fn static_part(req: &Request, family: Family) -> Txn {
    let mut x = static_unmarked(req, family);
    let comment = format!(" comment \"{}\"", static_marker(req, family));
    let t = format!("{} {TABLE}", fam(family));
    for chain in marked_chains(req) {
        let prefix = format!("add rule {t} {chain} ");
        let last = x.lines.iter_mut().rev().find_map(|(_, l)| match l {
            Line::Text(text) if text.starts_with(&prefix) => Some(text),
            _ => None,
        });
        if let Some(text) = last {
            text.push_str(&comment);
        }
    }
    x
}

fn static_unmarked(req: &Request, family: Family) -> Txn {
    let f = fam(family);
    let t = format!("{f} {TABLE}");
    let mut x = Txn::default();
    x.push(
        Tag::Static,
        format!("add table {t} {{ comment \"CNI portmap plugin\"; }}"),
    );
    x.append(sets(family));
    let mut s = |line: String| x.push(Tag::Static, line);
    for chain in ["hostports", "hostip_hostports", "hostports_all"] {
        s(format!("add chain {t} {chain}"));
    }
    s(format!(
        "add chain {t} prerouting {{ type nat hook prerouting priority -100; }}"
    ));
    s(format!(
        "add chain {t} output {{ type nat hook output priority -100; }}"
    ));
    // masqAll keys are marked here, before DNAT, where the packet is known to be on a host port
    // path (`fib daddr type local`): marking later by original port could also catch other
    // software's DNATs to the same port. The mark rules are always present; set membership
    // decides (keys only enter the sets with snat).
    let mark = format!("{:#x}", req.conf.mark());
    let set_mark = format!("meta mark set meta mark | {mark}");
    s(format!("flush chain {t} hostports_all"));
    s(format!(
        "add rule {t} hostports_all {f} daddr . meta l4proto . th dport @hostip_hostport_masq_all {set_mark}"
    ));
    s(format!(
        "add rule {t} hostports_all dnat {f} to {f} daddr . meta l4proto . th dport map @hostip_hostport_dnat"
    ));
    s(format!("add rule {t} hostports_all jump hostip_hostports"));
    s(format!(
        "add rule {t} hostports_all meta l4proto . th dport @hostport_masq_all {set_mark}"
    ));
    s(format!(
        "add rule {t} hostports_all dnat {f} to meta l4proto . th dport map @hostport_dnat"
    ));
    s(format!("add rule {t} hostports_all jump hostports"));
    let conditions = match family {
        Family::V4 => &req.conf.conditions_v4,
        Family::V6 => &req.conf.conditions_v6,
    };
    let cond: String = conditions.iter().map(|c| format!("{c} ")).collect();
    for chain in ["prerouting", "output"] {
        s(format!("flush chain {t} {chain}"));
        s(format!(
            "add rule {t} {chain} {cond}fib daddr type local jump hostports_all"
        ));
    }
    if req.conf.snat {
        let protos = "meta l4proto { tcp, udp, sctp }";
        let orig_hostip = format!("ct original {f} daddr . meta l4proto . ct original proto-dst");
        let orig = "meta l4proto . ct original proto-dst";
        s(format!(
            "add chain {t} hostports_mark {{ type filter hook prerouting priority {MARK_PRIORITY}; }}"
        ));
        s(format!(
            "add chain {t} hostports_masquerade {{ type nat hook postrouting priority 100; }}"
        ));
        // Hairpin is only recognisable after DNAT: the new destination is routed back out of the
        // interface the packet came in on.
        s(format!("flush chain {t} hostports_mark"));
        let hairpin = "fib daddr . iif oif exists";
        let new_dnat = format!("ct state new ct status dnat {protos}");
        s(format!(
            "add rule {t} hostports_mark {new_dnat} {orig_hostip} @hostip_hostport_masq {hairpin} {set_mark}"
        ));
        s(format!(
            "add rule {t} hostports_mark {new_dnat} {orig} @hostport_masq {hairpin} {set_mark}"
        ));
        s(format!("flush chain {t} hostports_masquerade"));
        s(format!(
            "add rule {t} hostports_masquerade meta mark & {mark} == {mark} masquerade"
        ));
        if family == Family::V4 {
            // Connections from 127.0.0.1 are DNATed in the output hook, which hostports_mark does
            // not see; they are recognised by their source here (route_localnet lets them out).
            let local = format!("ip saddr 127.0.0.1 ct status dnat {protos}");
            s(format!(
                "add rule {t} hostports_masquerade {local} {orig_hostip} @hostip_hostport_masq masquerade"
            ));
            s(format!(
                "add rule {t} hostports_masquerade {local} {orig} @hostport_masq masquerade"
            ));
        }
    }
    x
}

fn dnat_data(addr: &IpNetwork, m: &PortMapping) -> (IpAddr, u16) {
    (addr.ip(), m.container_port)
}

/// Builds the element changes of one key of one family.
struct KeyOps<'a> {
    req: &'a Request<'a>,
    family: Family,
    key: Key,
}

impl KeyOps<'_> {
    fn op(&self, change: Change, set: &'static str, owner: bool) -> ElemOp {
        let key = if owner {
            ElemKey::Owner {
                token: self.req.attachment.nft_token(),
                key: self.key,
            }
        } else {
            ElemKey::Mapping(self.key)
        };
        ElemOp {
            change,
            family: self.family,
            set,
            key,
            data: None,
            comment: None,
        }
    }

    fn owner(&self, change: Change) -> ElemOp {
        let mut op = self.op(change, OWNER_SET, true);
        if change != Change::Delete {
            op.comment = Some(self.req.attachment.nft_comment());
        }
        op
    }

    fn dnat(&self, change: Change, data: Option<(IpAddr, u16)>) -> ElemOp {
        ElemOp {
            data,
            ..self.op(change, self.key.dnat_map(), false)
        }
    }
}

const OWNER_SET: &str = "hostport_owner";

/// Elements of one key: owner (create), DNAT (create), masquerade key (add).
fn add_lines(x: &mut Txn, g: usize, req: &Request, family: Family, key: &Key, data: (IpAddr, u16)) {
    let k = KeyOps {
        req,
        family,
        key: *key,
    };
    x.elem(Tag::Owner(g), k.owner(Change::Create));
    x.elem(Tag::Dnat(g), k.dnat(Change::Create, Some(data)));
    if req.conf.snat {
        let set = key.masq_set(req.conf.masq_all);
        x.elem(Tag::Other(g), k.op(Change::Add, set, false));
    }
}

/// Removal of one key. The owner delete fails unless this attachment owns the key, which aborts
/// the whole transaction before anything of another attachment could be removed. The masquerade
/// sets are cleared with add+delete so DEL succeeds whatever `snat`/`masqAll` were at ADD time.
fn del_lines(x: &mut Txn, g: usize, req: &Request, family: Family, key: &Key) {
    let k = KeyOps {
        req,
        family,
        key: *key,
    };
    x.elem(Tag::Owner(g), k.owner(Change::Delete));
    x.elem(Tag::Dnat(g), k.dnat(Change::Delete, None));
    for all in [false, true] {
        let set = key.masq_set(all);
        x.elem(Tag::Other(g), k.op(Change::Add, set, false));
        x.elem(Tag::Other(g), k.op(Change::Delete, set, false));
    }
}

/// The families of `addrs`, each once, in order.
pub fn families_of(addrs: &[IpNetwork]) -> Vec<Family> {
    let mut out = Vec::new();
    for a in addrs {
        let f = Family::of(&a.ip());
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// The static structures of `families`: the script run when they are missing or stale.
pub fn static_txn(req: &Request, families: &[Family]) -> Txn {
    let mut x = Txn::default();
    for family in families {
        x.append(static_part(req, *family));
    }
    x
}

/// ADD as a whole, for review (golden files): the static structures (run only when missing or
/// stale) and this attachment's elements (one netlink batch). Group numbers index
/// [`add_groups`].
pub fn add(req: &Request, addrs: &[IpNetwork]) -> Txn {
    let mut x = static_txn(req, &families_of(addrs));
    x.append(add_elements(req, addrs));
    x
}

/// The element changes of an ADD: one group per key and family.
pub fn add_elements(req: &Request, addrs: &[IpNetwork]) -> Txn {
    let mut x = Txn::default();
    for (g, (family, key, data)) in add_groups(req, addrs).iter().enumerate() {
        add_lines(&mut x, g, req, *family, key, *data);
    }
    x
}

/// A key of an ADD: family, key and DNAT datum.
pub type Group = (Family, Key, (IpAddr, u16));

/// The (family, key, DNAT data) groups of an ADD, in group-number order.
pub fn add_groups(req: &Request, addrs: &[IpNetwork]) -> Vec<Group> {
    let mut out = Vec::new();
    for addr in addrs {
        let family = Family::of(&addr.ip());
        for (key, m) in keys(req, family) {
            out.push((family, key, dnat_data(addr, m)));
        }
    }
    out
}

/// Replacement of groups this attachment already owns (a repeated ADD): delete, then create
/// with the new data, in the same transaction.
pub fn replace(req: &Request, groups: &[(usize, Group)]) -> Txn {
    let mut x = Txn::default();
    for (g, (family, key, data)) in groups {
        del_lines(&mut x, *g, req, *family, key);
        add_lines(&mut x, *g, req, *family, key, *data);
    }
    x
}

/// DEL transaction: every key of both families (the container address is unknown at DEL).
pub fn del(req: &Request) -> Txn {
    del_existing(req, &Family::BOTH)
}

/// DEL transaction for the families whose table exists. Group numbers are those of [`del`]
/// whatever families are left out.
pub fn del_existing(req: &Request, families: &[Family]) -> Txn {
    let mut x = Txn::default();
    let mut g = 0;
    for family in Family::BOTH {
        for (key, _) in keys(req, family) {
            if families.contains(&family) {
                del_lines(&mut x, g, req, family, &key);
            }
            g += 1;
        }
    }
    x
}

/// CHECK transaction: delete and re-add each expected element. It commits only if every element
/// exists (a delete of a missing element fails the whole transaction) and leaves the same state.
pub fn check(req: &Request, addrs: &[IpNetwork]) -> Txn {
    let mut x = Txn::default();
    for (g, (family, key, data)) in add_groups(req, addrs).iter().enumerate() {
        let k = KeyOps {
            req,
            family: *family,
            key: *key,
        };
        x.elem(Tag::Owner(g), k.owner(Change::Delete));
        x.elem(Tag::Owner(g), k.owner(Change::Add));
        x.elem(Tag::Dnat(g), k.dnat(Change::Delete, None));
        x.elem(Tag::Dnat(g), k.dnat(Change::Add, Some(*data)));
        if req.conf.snat {
            let set = key.masq_set(req.conf.masq_all);
            x.elem(Tag::Other(g), k.op(Change::Delete, set, false));
            x.elem(Tag::Other(g), k.op(Change::Add, set, false));
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PortMapConf;
    use serde_json::json;

    fn mappings() -> Vec<PortMapping> {
        PortMapping::list_from_json(Some(&json!([
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 8080, "containerPort": 81, "protocol": "tcp"},
            {"hostPort": 53, "containerPort": 53, "protocol": "udp", "hostIP": "192.0.2.1"},
            {"hostPort": 9000, "containerPort": 90, "protocol": "tcp", "hostIP": "2001:db8::1"},
        ])))
        .unwrap()
    }

    #[test]
    fn keys_are_deduplicated_and_family_filtered() {
        let (conf, m) = (PortMapConf::default(), mappings());
        let req = Request::for_test(&conf, &m);
        let v4 = keys(&req, Family::V4);
        assert_eq!(v4.len(), 2);
        assert_eq!(v4[0].1.container_port, 80);
        assert_eq!(v4[1].0.host_ip, Some("192.0.2.1".parse().unwrap()));
        let v6 = keys(&req, Family::V6);
        assert_eq!(v6.len(), 2);
        assert_eq!(v6[1].0.text(), "2001:db8::1 . tcp . 9000");
    }

    #[test]
    fn del_existing_skips_absent_families_and_keeps_group_numbers() {
        let (conf, m) = (PortMapConf::default(), mappings());
        let req = Request::for_test(&conf, &m);
        let d = del_existing(&req, &[Family::V4]);
        assert!(d.elems().all(|(_, e)| e.family == Family::V4));
        // Element lines are exactly the v4 groups of the full DEL, with the same group numbers.
        let full = del(&req);
        let v4: Vec<_> = full
            .lines
            .iter()
            .filter(|(_, l)| matches!(l, Line::Elem(e) if e.family == Family::V4))
            .cloned()
            .collect();
        assert_eq!(d.lines, v4);
        assert!(del_existing(&req, &[]).is_empty());
    }

    #[test]
    fn owned_chains_end_with_a_marker_of_the_whole_static_part() {
        let m = mappings();
        let conf = PortMapConf::default();
        let req = Request::for_test(&conf, &m);
        let marker = static_marker(&req, Family::V4);
        let text = static_part(&req, Family::V4).text();
        assert_eq!(text.matches(&marker).count(), marked_chains(&req).len());
        assert!(text.contains(&format!("jump hostports comment \"{marker}\"\n")));
        assert_ne!(marker, static_marker(&req, Family::V6));
        let other: PortMapConf =
            PortMapConf::from_json(&serde_json::json!({"markMasqBit": 14})).unwrap();
        let req2 = Request::for_test(&other, &m);
        assert_ne!(
            marker,
            static_marker(&req2, Family::V4),
            "the mark is covered"
        );
        let nosnat = PortMapConf::from_json(&serde_json::json!({"snat": false})).unwrap();
        let req3 = Request::for_test(&nosnat, &m);
        assert_eq!(marked_chains(&req3).len(), 3);
        let t3 = static_part(&req3, Family::V4).text();
        assert_eq!(t3.matches(&static_marker(&req3, Family::V4)).count(), 3);
    }

    #[test]
    fn txn_tags_and_group_removal() {
        let (conf, m) = (PortMapConf::default(), mappings());
        let req = Request::for_test(&conf, &m);
        let d = del(&req);
        assert_eq!(d.lines.len(), 4 * 6);
        assert_eq!(d.lines[0].0, Tag::Owner(0));
        assert_eq!(d.lines[6].0, Tag::Owner(1));
        let rest = d.without_groups(&[0, 2]);
        assert_eq!(rest.lines.len(), 12);
        assert!(rest
            .lines
            .iter()
            .all(|(t, _)| matches!(t.group(), Some(1) | Some(3))));
    }
}
