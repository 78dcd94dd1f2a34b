//! nfnetlink framing: message type and attribute numbers, building one message, and walking
//! the messages of a received datagram.

use crate::{attr, expr};
use crate::{ChainInfo, Rule};

pub(crate) const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub(crate) const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub(crate) const NFNL_MSG_BATCH_END: u16 = 0x11;
pub(crate) const NFT_MSG_NEWCHAIN: u16 = 3;
pub(crate) const NFT_MSG_GETCHAIN: u16 = 4;
pub(crate) const NFT_MSG_DELCHAIN: u16 = 5;
pub(crate) const NFT_MSG_NEWRULE: u16 = 6;
pub(crate) const NFT_MSG_GETRULE: u16 = 7;
pub(crate) const NFT_MSG_DELRULE: u16 = 8;
pub(crate) const NFT_MSG_NEWSETELEM: u16 = 12;
pub(crate) const NFT_MSG_GETSETELEM: u16 = 13;
pub(crate) const NFT_MSG_DELSETELEM: u16 = 14;

pub(crate) const NFTA_CHAIN_TABLE: u16 = 1;
pub(crate) const NFTA_CHAIN_HANDLE: u16 = 2;
pub(crate) const NFTA_CHAIN_NAME: u16 = 3;
pub(crate) const NFTA_CHAIN_USE: u16 = 6;
pub(crate) const NFTA_RULE_TABLE: u16 = 1;
pub(crate) const NFTA_RULE_CHAIN: u16 = 2;
pub(crate) const NFTA_RULE_HANDLE: u16 = 3;
pub(crate) const NFTA_RULE_EXPRESSIONS: u16 = 4;
pub(crate) const NFTA_RULE_COMPAT: u16 = 5;
pub(crate) const NFTA_RULE_USERDATA: u16 = 7;
pub(crate) const NFTA_RULE_COMPAT_PROTO: u16 = 1;
pub(crate) const NFTA_RULE_COMPAT_FLAGS: u16 = 2;

pub(crate) const NLMSG_HDR_LEN: usize = 16;
pub(crate) const NFGENMSG_LEN: usize = 4;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_DUMP_INTR: u16 = 0x10;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLM_F_EXCL: u16 = 0x200;
pub(crate) const NLM_F_CREATE: u16 = 0x400;
pub(crate) const NLM_F_APPEND: u16 = 0x800;

fn header(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) {
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched by `message`
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.push(family);
    buf.push(0); // NFNETLINK_V0
    buf.extend_from_slice(&res_id.to_be_bytes());
}

/// One nfnetlink message: header, nfgenmsg and attributes.
pub(crate) fn message(
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    attrs: &attr::Writer,
) -> Vec<u8> {
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

/// One netlink message received: type, flags, sequence number and payload after nfgenmsg
/// (for NLMSG_ERROR: the error code and echoed header).
pub(crate) struct Reply<'a> {
    pub(crate) kind: u16,
    pub(crate) flags: u16,
    pub(crate) seq: u32,
    pub(crate) body: &'a [u8],
}

pub(crate) fn replies(buf: &[u8]) -> impl Iterator<Item = Reply<'_>> {
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
pub(crate) fn error_code(body: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(body.get(..4)?.try_into().ok()?))
}

/// Attributes of a NEWCHAIN/NEWRULE body (after nfgenmsg).
pub(crate) fn attrs_of(body: &[u8]) -> &[u8] {
    body.get(NFGENMSG_LEN..).unwrap_or_default()
}

pub(crate) fn parse_rule(body: &[u8]) -> Option<Rule> {
    let a = attrs_of(body);
    Some(Rule {
        chain: attr::as_str(attr::find(a, NFTA_RULE_CHAIN)?)?.to_string(),
        handle: attr::as_be64(attr::find(a, NFTA_RULE_HANDLE)?)?,
        exprs: attr::find(a, NFTA_RULE_EXPRESSIONS)
            .map(expr::read_list)
            .unwrap_or_default(),
        comment: attr::find(a, NFTA_RULE_USERDATA).and_then(crate::set::udata_comment),
    })
}

pub(crate) fn parse_chain(body: &[u8]) -> Option<ChainInfo> {
    let a = attrs_of(body);
    Some(ChainInfo {
        handle: attr::as_be64(attr::find(a, NFTA_CHAIN_HANDLE)?)?,
        use_count: attr::find(a, NFTA_CHAIN_USE)
            .and_then(attr::as_be32)
            .unwrap_or(0),
    })
}
