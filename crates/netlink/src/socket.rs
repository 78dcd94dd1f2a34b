//! The request/response engine: one NETLINK_ROUTE socket, sequence numbers, multi-message
//! receive, dumps, and errno-preserving errors (with the kernel's extended-ack text).

// The one rtnetlink socket of the workspace (clippy.toml keeps raw sockets out of other crates).
#![allow(clippy::disallowed_types)]

use std::cell::{Cell, RefCell};
use std::io;

use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use netns::NetNs;

use crate::error::{Error, Result};

/// Large enough for any single message the kernel puts in a dump skb (at most 32 KiB).
const RECV_BUF_LEN: usize = 64 * 1024;
const NLMSG_HDR_LEN: usize = 16;
/// Outer-header flags of an NLMSG_ERROR: the echoed request was capped / TLVs follow.
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
/// A dump that the kernel flagged as inconsistent is retried this many times.
const DUMP_ATTEMPTS: usize = 5;

/// A NETLINK_ROUTE socket bound in the netns of the thread that created it. It stays in that
/// netns for its whole life, whichever thread uses it later.
pub struct Handle {
    socket: Socket,
    seq: Cell<u32>,
    buf: RefCell<Vec<u8>>,
}

impl Handle {
    /// A socket in the calling thread's netns.
    pub fn new() -> Result<Handle> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Strict checking makes the kernel honour dump filters and reject malformed headers.
        socket.set_netlink_get_strict_chk(true)?;
        // Extended ack gives readable error text; capped ack keeps error replies small.
        socket.set_ext_ack(true)?;
        socket.set_cap_ack(true)?;
        Ok(Handle {
            socket,
            seq: Cell::new(0),
            buf: RefCell::new(Vec::with_capacity(RECV_BUF_LEN)),
        })
    }

    /// A socket bound inside `ns` (opened on a short-lived thread that joined `ns`).
    pub fn in_netns(ns: &NetNs) -> Result<Handle> {
        netns::in_netns(ns, Handle::new)?
    }

    /// Sends a request that expects only an ACK (create/change/delete).
    pub(crate) fn ack(&self, op: &str, msg: RouteNetlinkMessage, flags: u16) -> Result<()> {
        self.exchange(op, msg, flags | NLM_F_ACK).map(drop)
    }

    /// Sends a non-dump GET and returns its replies.
    pub(crate) fn get(
        &self,
        op: &str,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.exchange(op, msg, NLM_F_ACK)
    }

    /// Sends a dump request and collects every message until NLMSG_DONE.
    pub(crate) fn dump(
        &self,
        op: &str,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        for _ in 1..DUMP_ATTEMPTS {
            match self.exchange(op, msg.clone(), NLM_F_DUMP) {
                Err(Error::Protocol(ref m)) if m == DUMP_INTERRUPTED => continue,
                other => return other,
            }
        }
        self.exchange(op, msg, NLM_F_DUMP)
    }

    fn next_seq(&self) -> u32 {
        let seq = self.seq.get().wrapping_add(1).max(1);
        self.seq.set(seq);
        seq
    }

    fn exchange(
        &self,
        op: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let seq = self.next_seq();
        let request = encode_request(msg, flags, seq);
        log::trace!("netlink send seq={seq} {op}");
        self.socket.send(&request, 0)?;

        // Every exchange ends with NLMSG_DONE (dumps) or an ACK/error (NLM_F_ACK is always set
        // on non-dump requests), so the loop below always terminates on a kernel reply.
        debug_assert!(flags & NLM_F_DUMP == NLM_F_DUMP || flags & NLM_F_ACK != 0);
        let mut replies = Vec::new();
        let mut interrupted = false;
        let mut buf = self.buf.borrow_mut();
        loop {
            buf.clear();
            let n = match self.socket.recv(&mut *buf, libc::MSG_TRUNC) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n > buf.len() {
                return Err(Error::Protocol(format!(
                    "{op}: reply of {n} bytes truncated to {}",
                    buf.len()
                )));
            }
            for raw in split_messages(&buf[..n])? {
                let header_seq = u32::from_ne_bytes(raw[8..12].try_into().expect("4 bytes"));
                if header_seq != seq {
                    // Left over from an earlier request that failed half-way; not ours.
                    log::debug!("netlink: skipping message with seq {header_seq}, want {seq}");
                    continue;
                }
                let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw)
                    .map_err(|e| Error::Protocol(format!("{op}: cannot decode reply: {e}")))?;
                if parsed.header.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match parsed.payload {
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    NetlinkPayload::Error(e) => match e.code {
                        // An ACK ends a non-dump exchange.
                        None => return Ok(replies),
                        Some(code) => {
                            return Err(Error::Kernel {
                                op: op.to_string(),
                                errno: code.get().abs(),
                                ext_msg: extack_message(raw),
                            })
                        }
                    },
                    NetlinkPayload::Done(d) => {
                        if d.code < 0 {
                            return Err(Error::Kernel {
                                op: op.to_string(),
                                errno: d.code.abs(),
                                ext_msg: None,
                            });
                        }
                        if interrupted {
                            return Err(Error::Protocol(DUMP_INTERRUPTED.into()));
                        }
                        return Ok(replies);
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(Error::Protocol(format!("{op}: netlink overrun")))
                    }
                    _ => {}
                }
            }
        }
    }
}

const DUMP_INTERRUPTED: &str = "dump interrupted by a concurrent change";

/// Serializes one request message with our flags and sequence number.
pub(crate) fn encode_request(msg: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut nl = NetlinkMessage::from(msg);
    nl.header.flags = NLM_F_REQUEST | flags;
    nl.header.sequence_number = seq;
    nl.finalize();
    let mut buf = vec![0u8; nl.buffer_len()];
    nl.serialize(&mut buf);
    buf
}

/// Splits a datagram into its netlink messages (each 4-byte aligned).
pub(crate) fn split_messages(mut data: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    while data.len() >= NLMSG_HDR_LEN {
        let len = u32::from_ne_bytes(data[0..4].try_into().expect("4 bytes")) as usize;
        if len < NLMSG_HDR_LEN || len > data.len() {
            return Err(Error::Protocol(format!(
                "bad message length {len} in a {}-byte reply",
                data.len()
            )));
        }
        out.push(&data[..len]);
        let advance = (len + 3) & !3;
        data = &data[advance.min(data.len())..];
    }
    Ok(out)
}

/// Extracts NLMSGERR_ATTR_MSG from a raw NLMSG_ERROR message, if the kernel attached one.
pub(crate) fn extack_message(raw: &[u8]) -> Option<String> {
    let flags = u16::from_ne_bytes(raw.get(6..8)?.try_into().ok()?);
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    // nlmsghdr | error code | echoed request header (+ its payload unless capped) | TLVs
    let echoed = raw.get(NLMSG_HDR_LEN + 4..)?;
    let echoed_len = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDR_LEN
    } else {
        u32::from_ne_bytes(echoed.get(0..4)?.try_into().ok()?) as usize
    };
    let mut tlvs = echoed.get((echoed_len + 3) & !3..)?;
    while tlvs.len() >= 4 {
        let len = u16::from_ne_bytes([tlvs[0], tlvs[1]]) as usize;
        let kind = u16::from_ne_bytes([tlvs[2], tlvs[3]]) & 0x3fff;
        if len < 4 || len > tlvs.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let value = &tlvs[4..len];
            let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
            return Some(String::from_utf8_lossy(&value[..end]).into_owned());
        }
        tlvs = &tlvs[((len + 3) & !3).min(tlvs.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::LinkMessage;

    fn nlmsg(len_extra: &[u8], typ: u16, flags: u16, seq: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((16 + len_extra.len()) as u32).to_ne_bytes());
        v.extend_from_slice(&typ.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(len_extra);
        v
    }

    #[test]
    fn request_header_has_flags_seq_and_length() {
        let bytes = encode_request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            42,
        );
        assert_eq!(
            u32::from_ne_bytes(bytes[0..4].try_into().unwrap()) as usize,
            bytes.len()
        );
        assert_eq!(u16::from_ne_bytes([bytes[4], bytes[5]]), libc::RTM_GETLINK);
        assert_eq!(
            u16::from_ne_bytes([bytes[6], bytes[7]]),
            NLM_F_REQUEST | NLM_F_DUMP
        );
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 42);
    }

    #[test]
    fn splits_aligned_messages() {
        let mut data = nlmsg(&[1, 2, 3], 3, 0, 1); // 19 bytes, padded to 20
        data.push(0);
        data.extend(nlmsg(&[], 3, 0, 2));
        let parts = split_messages(&data).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].len(), 19);
        assert_eq!(parts[1].len(), 16);
    }

    #[test]
    fn rejects_bad_length() {
        let mut data = nlmsg(&[], 3, 0, 1);
        data[0] = 200;
        assert!(split_messages(&data).is_err());
    }

    #[test]
    fn extracts_extack_text() {
        // error code, capped echoed header, then NLMSGERR_ATTR_MSG "Invalid prefix\0"
        let mut payload = Vec::new();
        payload.extend_from_slice(&(-22i32).to_ne_bytes());
        payload.extend(nlmsg(&[], libc::RTM_NEWROUTE, 5, 7));
        let text = b"Invalid prefix\0";
        payload.extend_from_slice(&((4 + text.len()) as u16).to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(text);
        payload.push(0); // padding
        let raw = nlmsg(&payload, 2, NLM_F_CAPPED | NLM_F_ACK_TLVS, 7);
        assert_eq!(extack_message(&raw).as_deref(), Some("Invalid prefix"));

        let raw = nlmsg(&payload, 2, NLM_F_CAPPED, 7);
        assert_eq!(extack_message(&raw), None, "no TLV flag, no message");
    }
}
