//! [`NfSocket`]: the NETLINK_NETFILTER socket, applying batches and answering lookups.

// The one nfnetlink socket of the workspace (clippy.toml keeps raw sockets out of other crates).
#![allow(clippy::disallowed_types)]

use std::io;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt};

use crate::attr;
use crate::wire::*;
use crate::{Batch, ChainInfo, Error, Family, Result, Rule};

const RECV_BUF_LEN: usize = 64 * 1024;
/// Batches up to this size fit any socket's default send buffer.
const DEFAULT_SEND_BUFFER: usize = 64 * 1024;
const DUMP_ATTEMPTS: usize = 5;
/// What one queued error reply costs the receive buffer (socket buffer overhead included).
const ERROR_REPLY_TRUESIZE: usize = 1024;
/// Below this the default receive buffer (net.core.rmem_default, 208 KiB) is left alone.
const DEFAULT_RECEIVE_BUFFER: usize = 128 * 1024;

/// One element to look up with [`NfSocket::elements_exist`].
#[derive(Debug, Clone, Copy)]
pub struct ElementLookup<'a> {
    pub family: Family,
    pub table: &'a str,
    pub set: &'a str,
    pub element: &'a crate::Element,
}

/// A change of a batch the kernel refused: its index in the batch and the (positive) errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub index: usize,
    pub errno: i32,
}

enum Buffer {
    Send,
    Receive,
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
        self.grow_buffer(Buffer::Send, len + 4096)
    }

    fn grow_buffer(&self, which: Buffer, size: usize) -> io::Result<()> {
        // The kernel takes an int; larger requests could never fit anyway.
        let size = size.min(libc::c_int::MAX as usize);
        let s = &self.socket;
        // FORCE ignores net.core.[rw]mem_max (needs CAP_NET_ADMIN, which changing rules needs
        // too); without it the kernel caps the size.
        let done = match which {
            Buffer::Send => setsockopt(s, sockopt::SndBufForce, &size)
                .or_else(|_| setsockopt(s, sockopt::SndBuf, &size)),
            Buffer::Receive => setsockopt(s, sockopt::RcvBufForce, &size)
                .or_else(|_| setsockopt(s, sockopt::RcvBuf, &size)),
        };
        done.map_err(io::Error::from)
    }

    /// Every refused change of a batch is answered with its own error message, queued while
    /// the kernel handles the batch; once the receive buffer is full the rest are dropped
    /// (ENOBUFS) and the refusals cannot be told. Grow the buffer to hold one per change.
    fn fit_receive_buffer(&mut self, changes: usize) -> io::Result<()> {
        let size = changes.saturating_mul(ERROR_REPLY_TRUESIZE);
        if size <= DEFAULT_RECEIVE_BUFFER {
            return Ok(());
        }
        self.grow_buffer(Buffer::Receive, size)
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
        match self.apply_or_refusals(batch)?.first() {
            None => Ok(()),
            Some(r) => Err(Error::Kernel {
                op: batch.describe(r.index).unwrap_or("transaction").to_string(),
                errno: r.errno,
            }),
        }
    }

    /// Applies `batch` like [`apply`](Self::apply), but a transaction the kernel refuses is
    /// answered with every refused change (the kernel checks them all before aborting), in
    /// batch order; an empty list means it was committed. Errors that concern no single change
    /// are errors.
    pub fn apply_or_refusals(&mut self, batch: &Batch) -> Result<Vec<Refusal>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let n = batch.ops.len() as u32;
        let first = self.next_seqs(n + 2);
        let last_change = first.wrapping_add(n);
        let ours = |seq: u32| seq.wrapping_sub(first) <= n + 1;
        let wire = batch.encode(first);
        self.fit_send_buffer(wire.len())?;
        self.fit_receive_buffer(batch.ops.len())?;
        self.socket.send(&wire, 0)?;
        // The kernel handles the whole batch inside sendmsg, so every reply is queued by now:
        // wait for the first one, then drain without blocking.
        let mut acked = false;
        let mut refused: Vec<Refusal> = Vec::new();
        let mut frame_error: Option<i32> = None;
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
                let index = r.seq.wrapping_sub(first).wrapping_sub(1) as usize;
                if code == 0 {
                    acked |= r.seq == last_change;
                } else if index < batch.ops.len() {
                    refused.push(Refusal {
                        index,
                        errno: -code,
                    });
                } else {
                    // BATCH_BEGIN or END refused: the batch as a whole.
                    frame_error.get_or_insert(-code);
                }
            }
        }
        refused.sort_by_key(|r| r.index);
        match frame_error {
            Some(errno) if refused.is_empty() => Err(Error::Kernel {
                op: "transaction".into(),
                errno,
            }),
            _ if !refused.is_empty() || acked => Ok(refused),
            _ => Err(Error::Protocol(
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

    /// Which of `lookups` (family, table, set, element) have an element with that key, all
    /// asked in one datagram: one round trip whatever their number. A missing table or set
    /// counts as absent. Nothing is changed, so nothing is committed or aborted.
    pub fn elements_exist(&mut self, lookups: &[ElementLookup<'_>]) -> Result<Vec<bool>> {
        if lookups.is_empty() {
            return Ok(Vec::new());
        }
        let n = lookups.len() as u32;
        let first = self.next_seqs(n);
        let mut wire = Vec::new();
        for (i, l) in lookups.iter().enumerate() {
            let a = crate::batch::element_attrs(l.table, l.set, l.element, true)?;
            let seq = first.wrapping_add(i as u32);
            let flags = NLM_F_REQUEST | NLM_F_ACK;
            wire.extend_from_slice(&message(
                NFT_MSG_GETSETELEM,
                flags,
                seq,
                l.family.nfproto(),
                &a,
            ));
        }
        self.fit_send_buffer(wire.len())?;
        // Each answer is an element message and an acknowledgement, or an error.
        self.fit_receive_buffer(2 * lookups.len())?;
        self.socket.send(&wire, 0)?;
        let mut found = vec![false; lookups.len()];
        let mut answered = 0;
        let mut failure: Option<(usize, i32)> = None;
        while answered < lookups.len() {
            match self.recv(0) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    return Err(Error::Protocol("receive buffer overrun".into()))
                }
                Err(e) => return Err(e.into()),
            }
            for r in replies(&self.buf) {
                let i = r.seq.wrapping_sub(first) as usize;
                if i >= lookups.len() {
                    continue; // a late reply to an earlier request on this socket
                }
                if r.kind != NLMSG_ERROR {
                    found[i] = true;
                    continue;
                }
                answered += 1;
                match -error_code(r.body).unwrap_or(-libc::EPROTO) {
                    0 | libc::ENOENT => {}
                    errno => {
                        failure.get_or_insert((i, errno));
                    }
                }
            }
            if let Some((i, errno)) = failure {
                // Read the remaining answers first, so the socket stays usable.
                self.drain_answers(first, n, lookups.len() - answered);
                return Err(Error::Kernel {
                    op: format!("get element of {}", lookups[i].set),
                    errno,
                });
            }
        }
        Ok(found)
    }

    /// Reads and drops up to `rest` outstanding answers to requests `first..first + n`.
    fn drain_answers(&mut self, first: u32, n: u32, mut rest: usize) {
        while rest > 0 && self.recv(0).is_ok() {
            for r in replies(&self.buf) {
                if r.kind == NLMSG_ERROR && r.seq.wrapping_sub(first) < n {
                    rest = rest.saturating_sub(1);
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
