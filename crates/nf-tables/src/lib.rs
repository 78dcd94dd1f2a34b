//! nf_tables over netlink, synchronous and minimal: atomic batches of chain/rule changes, chain
//! lookups by name, rule lookups by handle, and per-chain rule dumps.
//!
//! Owns: the NETLINK_NETFILTER socket, nfnetlink message framing and batching
//! (`NFNL_MSG_BATCH_BEGIN`..`END`, one kernel transaction), the encoding of the expressions
//! callers build rules from ([`Expr`]), and decoding of dumped rules into [`Rule`]
//! (handle + raw expressions). Requests are plain functions of their inputs so they can be
//! unit-tested without root.
//!
//! Must NOT: know about iptables, CNI or any rule layout (callers compose expressions), fork
//! `nft`/`iptables`, enter namespaces (it works in the calling thread's netns), list whole
//! tables, or retry on its own.
//!
//! Why not a crates.io library: rustables is GPL-3.0 (this project is Apache-2.0) and nftnl-rs
//! needs the C libnftnl; the handful of messages needed here fit in a few hundred lines.

mod attr;
mod expr;

use std::io;
use std::os::fd::AsRawFd;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

pub use expr::{Expr, PayloadBase, RawExpr, NFT_META_L4PROTO};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_DELRULE: u16 = 8;

const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_HANDLE: u16 = 2;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_USE: u16 = 6;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_COMPAT: u16 = 5;
const NFTA_RULE_COMPAT_PROTO: u16 = 1;
const NFTA_RULE_COMPAT_FLAGS: u16 = 2;

const NLMSG_HDR_LEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const RECV_BUF_LEN: usize = 64 * 1024;
/// Batches up to this size fit any socket's default send buffer.
const DEFAULT_SEND_BUFFER: usize = 64 * 1024;
const DUMP_ATTEMPTS: usize = 5;

/// Address family of a table (`ip` or `ip6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    fn nfproto(self) -> u8 {
        match self {
            Family::Ipv4 => libc::NFPROTO_IPV4 as u8,
            Family::Ipv6 => libc::NFPROTO_IPV6 as u8,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("nf_tables socket: {0}")]
    Io(#[from] io::Error),
    #[error("nf_tables {op}: {}", io::Error::from_raw_os_error(*errno))]
    Kernel { op: String, errno: i32 },
    #[error("nf_tables protocol error: {0}")]
    Protocol(String),
}

impl Error {
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(libc::ENOENT)
    }

    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// A chain as GETCHAIN reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    pub handle: u64,
    /// The kernel's use count: rules in the chain plus rules jumping or going to it.
    pub use_count: u32,
}

/// A rule as GETRULE reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub chain: String,
    pub handle: u64,
    pub exprs: Vec<RawExpr>,
}

impl Rule {
    /// The chain this rule's final verdict jumps (or goes) to.
    pub fn jump_target(&self) -> Option<&str> {
        self.exprs.iter().rev().find_map(RawExpr::verdict_chain)
    }

    /// Whether the rule consists of exactly `exprs` (counter values ignored).
    pub fn matches(&self, exprs: &[Expr]) -> bool {
        self.exprs.len() == exprs.len()
            && self.exprs.iter().zip(exprs).all(|(have, want)| {
                if have.is_counter() && *want == Expr::Counter {
                    return true;
                }
                have.same_as(&RawExpr::of(want))
            })
    }
}

/// A new rule: its expressions and, for x_tables matches that check the protocol of the rule
/// (multiport, …), the layer-4 protocol passed to them as NFTA_RULE_COMPAT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRule {
    pub exprs: Vec<Expr>,
    pub compat_proto: Option<u8>,
}

fn header(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) {
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched by `finish`
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.push(family);
    buf.push(0); // NFNETLINK_V0
    buf.extend_from_slice(&res_id.to_be_bytes());
}

/// One nfnetlink message: header, nfgenmsg and attributes.
fn message(kind: u16, flags: u16, seq: u32, family: u8, attrs: &attr::Writer) -> Vec<u8> {
    let mut buf = Vec::with_capacity(NLMSG_HDR_LEN + NFGENMSG_LEN + attrs.buf.len());
    let res_id = if kind == NFNL_MSG_BATCH_BEGIN || kind == NFNL_MSG_BATCH_END {
        NFNL_SUBSYS_NFTABLES
    } else {
        0
    };
    let kind = if res_id != 0 {
        kind
    } else {
        (NFNL_SUBSYS_NFTABLES << 8) | kind
    };
    header(&mut buf, kind, flags, seq, family, res_id);
    buf.extend_from_slice(&attrs.buf);
    let len = buf.len() as u32;
    buf[..4].copy_from_slice(&len.to_ne_bytes());
    buf
}

/// The changes of one transaction, applied all or nothing by [`Socket::apply`].
#[derive(Debug, Default, Clone)]
pub struct Batch {
    ops: Vec<(u16, u16, u8, attr::Writer, String)>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Creates a regular chain; fails (EEXIST) if it exists.
    pub fn add_chain(&mut self, family: Family, table: &str, chain: &str) -> &mut Self {
        let mut a = attr::Writer::default();
        a.str(NFTA_CHAIN_TABLE, table).str(NFTA_CHAIN_NAME, chain);
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.push(
            NFT_MSG_NEWCHAIN,
            flags,
            family,
            a,
            format!("add chain {chain}"),
        )
    }

    /// Appends a rule at the end of `chain`.
    pub fn append_rule(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        rule: &NewRule,
    ) -> &mut Self {
        let mut a = attr::Writer::default();
        a.str(NFTA_RULE_TABLE, table).str(NFTA_RULE_CHAIN, chain);
        expr::write_list(&mut a, NFTA_RULE_EXPRESSIONS, &rule.exprs);
        if let Some(proto) = rule.compat_proto {
            a.nested(NFTA_RULE_COMPAT, |c| {
                c.be32(NFTA_RULE_COMPAT_PROTO, proto.into())
                    .be32(NFTA_RULE_COMPAT_FLAGS, 0);
            });
        }
        let flags = NLM_F_CREATE | NLM_F_APPEND;
        self.push(
            NFT_MSG_NEWRULE,
            flags,
            family,
            a,
            format!("add rule to {chain}"),
        )
    }

    /// Deletes the rule `handle` of `chain`.
    pub fn delete_rule(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        handle: u64,
    ) -> &mut Self {
        let mut a = attr::Writer::default();
        a.str(NFTA_RULE_TABLE, table)
            .str(NFTA_RULE_CHAIN, chain)
            .be64(NFTA_RULE_HANDLE, handle);
        let op = format!("delete rule {handle} of {chain}");
        self.push(NFT_MSG_DELRULE, 0, family, a, op)
    }

    /// Deletes every rule of `chain`.
    pub fn flush_chain(&mut self, family: Family, table: &str, chain: &str) -> &mut Self {
        let mut a = attr::Writer::default();
        a.str(NFTA_RULE_TABLE, table).str(NFTA_RULE_CHAIN, chain);
        self.push(
            NFT_MSG_DELRULE,
            0,
            family,
            a,
            format!("flush chain {chain}"),
        )
    }

    /// Deletes an empty, unreferenced chain.
    pub fn delete_chain(&mut self, family: Family, table: &str, chain: &str) -> &mut Self {
        let mut a = attr::Writer::default();
        a.str(NFTA_CHAIN_TABLE, table).str(NFTA_CHAIN_NAME, chain);
        self.push(
            NFT_MSG_DELCHAIN,
            0,
            family,
            a,
            format!("delete chain {chain}"),
        )
    }

    fn push(
        &mut self,
        kind: u16,
        flags: u16,
        family: Family,
        a: attr::Writer,
        op: String,
    ) -> &mut Self {
        self.ops.push((kind, flags, family.nfproto(), a, op));
        self
    }

    /// The wire form: BATCH_BEGIN, every change, BATCH_END. Message `i` of the batch has
    /// sequence number `first_seq + 1 + i`. Only the last change asks for an acknowledgement:
    /// the kernel reports every failing change anyway, and one ack per change would overrun
    /// the socket's receive buffer for batches of a few hundred changes.
    fn encode(&self, first_seq: u32) -> Vec<u8> {
        let none = attr::Writer::default();
        let unspec = libc::AF_UNSPEC as u8;
        let mut buf = message(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            first_seq,
            unspec,
            &none,
        );
        let last = self.ops.len().saturating_sub(1);
        for (i, (kind, flags, family, a, _)) in self.ops.iter().enumerate() {
            let seq = first_seq.wrapping_add(1 + i as u32);
            let ack = if i == last { NLM_F_ACK } else { 0 };
            let flags = flags | NLM_F_REQUEST | ack;
            buf.extend_from_slice(&message(*kind, flags, seq, *family, a));
        }
        let end_seq = first_seq.wrapping_add(1 + self.ops.len() as u32);
        buf.extend_from_slice(&message(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            end_seq,
            unspec,
            &none,
        ));
        buf
    }
}

/// One netlink message received: type, flags, sequence number and payload after nfgenmsg
/// (for NLMSG_ERROR: the error code and echoed header).
struct Reply<'a> {
    kind: u16,
    flags: u16,
    seq: u32,
    body: &'a [u8],
}

fn replies(buf: &[u8]) -> impl Iterator<Item = Reply<'_>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < NLMSG_HDR_LEN {
            return None;
        }
        let len = u32::from_ne_bytes(rest[0..4].try_into().ok()?) as usize;
        if len < NLMSG_HDR_LEN || len > rest.len() {
            return None;
        }
        let reply = Reply {
            kind: u16::from_ne_bytes([rest[4], rest[5]]),
            flags: u16::from_ne_bytes([rest[6], rest[7]]),
            seq: u32::from_ne_bytes(rest[8..12].try_into().ok()?),
            body: &rest[NLMSG_HDR_LEN..len],
        };
        rest = &rest[attr::align4(len).min(rest.len())..];
        Some(reply)
    })
}

/// The (negative) errno of an NLMSG_ERROR body; 0 is an acknowledgement.
fn error_code(body: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(body.get(..4)?.try_into().ok()?))
}

/// Attributes of a NEWCHAIN/NEWRULE body (after nfgenmsg).
fn attrs_of(body: &[u8]) -> &[u8] {
    body.get(NFGENMSG_LEN..).unwrap_or_default()
}

fn parse_rule(body: &[u8]) -> Option<Rule> {
    let a = attrs_of(body);
    Some(Rule {
        chain: attr::as_str(attr::find(a, NFTA_RULE_CHAIN)?)?.to_string(),
        handle: attr::as_be64(attr::find(a, NFTA_RULE_HANDLE)?)?,
        exprs: attr::find(a, NFTA_RULE_EXPRESSIONS)
            .map(expr::read_list)
            .unwrap_or_default(),
    })
}

fn parse_chain(body: &[u8]) -> Option<ChainInfo> {
    let a = attrs_of(body);
    Some(ChainInfo {
        handle: attr::as_be64(attr::find(a, NFTA_CHAIN_HANDLE)?)?,
        use_count: attr::find(a, NFTA_CHAIN_USE)
            .and_then(attr::as_be32)
            .unwrap_or(0),
    })
}

/// A NETLINK_NETFILTER socket in the calling thread's netns.
pub struct NfSocket {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl NfSocket {
    pub fn new() -> Result<NfSocket> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Error replies quote only the failing message's header, not the whole message.
        socket.set_cap_ack(true)?;
        Ok(NfSocket {
            socket,
            seq: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(1),
            buf: Vec::with_capacity(RECV_BUF_LEN),
        })
    }

    fn next_seqs(&mut self, n: u32) -> u32 {
        let first = self.seq.wrapping_add(1);
        self.seq = self.seq.wrapping_add(n);
        first
    }

    /// A batch goes out in one sendmsg, which netlink refuses (EMSGSIZE) when it is larger
    /// than the socket's send buffer: grow the buffer to fit, like nft does.
    fn fit_send_buffer(&mut self, len: usize) -> io::Result<()> {
        if len <= DEFAULT_SEND_BUFFER {
            return Ok(());
        }
        let size = libc::c_int::try_from(len + 4096).unwrap_or(libc::c_int::MAX);
        let set = |opt: libc::c_int| {
            // SAFETY: a valid socket fd and a pointer to an int of the size passed.
            let rc = unsafe {
                libc::setsockopt(
                    self.socket.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        // FORCE ignores net.core.wmem_max (needs CAP_NET_ADMIN, which changing rules needs too).
        set(libc::SO_SNDBUFFORCE).or_else(|_| set(libc::SO_SNDBUF))
    }

    fn recv(&mut self, flags: i32) -> io::Result<usize> {
        self.buf.clear();
        loop {
            match self.socket.recv(&mut self.buf, flags | libc::MSG_TRUNC) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(n) if n > self.buf.capacity() => {
                    return Err(io::Error::other(format!("reply of {n} bytes truncated")))
                }
                other => return other,
            }
        }
    }

    /// Applies `batch` as one transaction: either every change takes effect or none does.
    /// The error names the first change the kernel refused. An overrun receive buffer is
    /// reported as a protocol error: the transaction's outcome is then unknown.
    pub fn apply(&mut self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.ops.len() as u32;
        let first = self.next_seqs(n + 2);
        let last_change = first.wrapping_add(n);
        let ours = |seq: u32| seq.wrapping_sub(first) <= n + 1;
        let wire = batch.encode(first);
        self.fit_send_buffer(wire.len())?;
        self.socket.send(&wire, 0)?;
        // The kernel handles the whole batch inside sendmsg, so every reply is queued by now:
        // wait for the first one, then drain without blocking.
        let mut acked = false;
        let mut first_error: Option<(u32, i32)> = None;
        let mut seen_ours = false;
        loop {
            let flags = if seen_ours { libc::MSG_DONTWAIT } else { 0 };
            match self.recv(flags) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    return Err(Error::Protocol(
                        "receive buffer overrun: the transaction's outcome is unknown".into(),
                    ))
                }
                Err(e) => return Err(e.into()),
            }
            for r in replies(&self.buf) {
                if r.kind != NLMSG_ERROR || !ours(r.seq) {
                    continue; // a late reply to an earlier request on this socket
                }
                seen_ours = true;
                let code = error_code(r.body).unwrap_or(-libc::EPROTO);
                if code != 0 {
                    first_error.get_or_insert((r.seq, code));
                } else if r.seq == last_change {
                    acked = true;
                }
            }
        }
        match first_error {
            Some((seq, code)) => {
                let index = seq.wrapping_sub(first).wrapping_sub(1) as usize;
                let op = batch
                    .ops
                    .get(index)
                    .map(|o| o.4.clone())
                    .unwrap_or_else(|| "transaction".to_string());
                Err(Error::Kernel { op, errno: -code })
            }
            None if acked => Ok(()),
            None => Err(Error::Protocol(
                "the kernel neither acknowledged nor refused the transaction".into(),
            )),
        }
    }

    /// Sends one GET request and returns the bodies of its data replies (until ACK or DONE).
    fn get(
        &mut self,
        kind: u16,
        flags: u16,
        family: Family,
        a: &attr::Writer,
        op: &str,
    ) -> Result<Vec<Vec<u8>>> {
        let seq = self.next_seqs(1);
        let msg = message(kind, NLM_F_REQUEST | flags, seq, family.nfproto(), a);
        self.socket.send(&msg, 0)?;
        let mut out = Vec::new();
        // A dump the kernel marks inconsistent is still read to its end: a new request on this
        // socket would otherwise find the old dump running (EBUSY).
        let mut interrupted = false;
        loop {
            self.recv(0)?;
            for r in replies(&self.buf) {
                if r.seq != seq {
                    continue;
                }
                interrupted |= r.flags & NLM_F_DUMP_INTR != 0;
                match r.kind {
                    NLMSG_ERROR => {
                        let code = error_code(r.body).unwrap_or(-libc::EPROTO);
                        if code != 0 {
                            return Err(Error::Kernel {
                                op: op.to_string(),
                                errno: -code,
                            });
                        }
                        return Ok(out);
                    }
                    NLMSG_DONE if interrupted => {
                        return Err(Error::Protocol(format!("{op}: dump interrupted")));
                    }
                    NLMSG_DONE => return Ok(out),
                    _ => out.push(r.body.to_vec()),
                }
            }
        }
    }

    /// The chain `chain` of `table`, `None` when it (or the table) does not exist.
    pub fn chain(&mut self, family: Family, table: &str, chain: &str) -> Result<Option<ChainInfo>> {
        let mut a = attr::Writer::default();
        a.str(NFTA_CHAIN_TABLE, table).str(NFTA_CHAIN_NAME, chain);
        match self.get(
            NFT_MSG_GETCHAIN,
            NLM_F_ACK,
            family,
            &a,
            &format!("get chain {chain}"),
        ) {
            Ok(bodies) => Ok(bodies.first().and_then(|b| parse_chain(b))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The rule `handle` of `chain`, `None` when there is no such rule.
    pub fn rule(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        handle: u64,
    ) -> Result<Option<Rule>> {
        let mut a = attr::Writer::default();
        a.str(NFTA_RULE_TABLE, table)
            .str(NFTA_RULE_CHAIN, chain)
            .be64(NFTA_RULE_HANDLE, handle);
        let op = format!("get rule {handle} of {chain}");
        match self.get(NFT_MSG_GETRULE, NLM_F_ACK, family, &a, &op) {
            Ok(bodies) => Ok(bodies.first().and_then(|b| parse_rule(b))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every rule of one chain (the kernel filters the dump by chain).
    pub fn rules(&mut self, family: Family, table: &str, chain: &str) -> Result<Vec<Rule>> {
        let mut a = attr::Writer::default();
        a.str(NFTA_RULE_TABLE, table).str(NFTA_RULE_CHAIN, chain);
        let op = format!("list chain {chain}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.get(NFT_MSG_GETRULE, NLM_F_DUMP, family, &a, &op) {
                Ok(bodies) => return Ok(bodies.iter().filter_map(|b| parse_rule(b)).collect()),
                Err(Error::Protocol(_)) if attempt < DUMP_ATTEMPTS => continue,
                Err(e) if e.is_not_found() => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_frames_changes_with_consecutive_sequence_numbers() {
        // Only the last change asks for an acknowledgement (failures are reported anyway).
        let mut b = Batch::new();
        b.add_chain(Family::Ipv4, "nat", "CNI-DN-x")
            .delete_chain(Family::Ipv4, "nat", "CNI-DN-x");
        let wire = b.encode(100);
        let msgs: Vec<_> = replies(&wire).map(|r| (r.kind, r.flags, r.seq)).collect();
        assert_eq!(
            msgs,
            [
                (NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 100),
                (
                    (10 << 8) | NFT_MSG_NEWCHAIN,
                    NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL,
                    101
                ),
                ((10 << 8) | NFT_MSG_DELCHAIN, NLM_F_REQUEST | NLM_F_ACK, 102),
                (NFNL_MSG_BATCH_END, NLM_F_REQUEST, 103),
            ]
        );
        // The batch frame names the nftables subsystem (big-endian res_id).
        assert_eq!(&wire[16..20], [0, 0, 0, 10]);
        // Changes carry the table family (NFPROTO_IPV4 = 2).
        assert_eq!(wire[36], 2);
    }

    #[test]
    fn append_rule_carries_compat_protocol() {
        let mut b = Batch::new();
        let rule = NewRule {
            exprs: vec![Expr::Counter],
            compat_proto: Some(6),
        };
        b.append_rule(Family::Ipv6, "nat", "CNI-HOSTPORT-DNAT", &rule);
        let wire = b.encode(1);
        let msg = replies(&wire).nth(1).unwrap();
        assert_eq!(msg.body[0], libc::NFPROTO_IPV6 as u8);
        let compat = attr::find(attrs_of(msg.body), NFTA_RULE_COMPAT).unwrap();
        assert_eq!(
            attr::as_be32(attr::find(compat, NFTA_RULE_COMPAT_PROTO).unwrap()),
            Some(6)
        );
        assert!(msg.flags & NLM_F_APPEND != 0);
    }

    #[test]
    fn rule_comparison_ignores_counter_values() {
        let mut counted = RawExpr::of(&Expr::Counter);
        counted.data[8..12].copy_from_slice(&[1, 2, 3, 4]);
        let rule = Rule {
            chain: "c".into(),
            handle: 7,
            exprs: vec![counted, RawExpr::of(&Expr::Jump("CNI-DN-y".into()))],
        };
        assert!(rule.matches(&[Expr::Counter, Expr::Jump("CNI-DN-y".into())]));
        assert!(!rule.matches(&[Expr::Counter, Expr::Jump("CNI-DN-z".into())]));
        assert!(!rule.matches(&[Expr::Jump("CNI-DN-y".into())]));
        assert_eq!(rule.jump_target(), Some("CNI-DN-y"));
    }
}
