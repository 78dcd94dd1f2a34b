//! nf_tables over netlink, synchronous and minimal: atomic batches of chain/rule changes and of
//! set/map element changes, chain lookups by name, rule lookups by handle, element lookups by
//! key, and per-chain rule dumps.
//!
//! Owns: the NETLINK_NETFILTER socket, nfnetlink message framing and batching
//! (`NFNL_MSG_BATCH_BEGIN`..`END`, one kernel transaction), the encoding of the expressions
//! callers build rules from ([`Expr`]), the layout of set/map keys and data ([`Concat`],
//! [`Element`]), and decoding of dumped rules into [`Rule`]
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
mod batch;
mod expr;
mod set;
mod socket;
mod wire;

use std::io;

pub use batch::{Batch, ElementChange};
pub use expr::{Expr, PayloadBase, RawExpr, NFT_META_L4PROTO, NFT_META_MARK};
pub use set::{Concat, Element};
pub use socket::{ElementLookup, NfSocket, Refusal};

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
    /// A value that cannot be encoded (too long a name or comment).
    #[error("nf_tables value: {0}")]
    Value(String),
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
    /// The comment nft stores in the rule's userdata (`comment "..."`).
    pub comment: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_comparison_ignores_counter_values() {
        let mut counted = RawExpr::of(&Expr::Counter);
        counted.data[8..12].copy_from_slice(&[1, 2, 3, 4]);
        let rule = Rule {
            chain: "c".into(),
            handle: 7,
            exprs: vec![counted, RawExpr::of(&Expr::Jump("CNI-DN-y".into()))],
            comment: None,
        };
        assert!(rule.matches(&[Expr::Counter, Expr::Jump("CNI-DN-y".into())]));
        assert!(!rule.matches(&[Expr::Counter, Expr::Jump("CNI-DN-z".into())]));
        assert!(!rule.matches(&[Expr::Jump("CNI-DN-y".into())]));
        assert_eq!(rule.jump_target(), Some("CNI-DN-y"));
    }
}
