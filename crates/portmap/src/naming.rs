//! Names derived from the attachment identity (network name + container ID).
//!
//! These are the only keys DEL has, so they must be stable and identical to upstream's where
//! upstream defines them (chain names, comments), otherwise a node could not switch plugins.

use sha2::{Digest, Sha512};

/// iptables chain names are limited to 28 characters (upstream truncates to that).
const MAX_CHAIN_LENGTH: usize = 28;

/// iptables comments are limited to 255 characters.
const MAX_COMMENT_LENGTH: usize = 255;

/// nftables element comments are limited to 128 characters.
const MAX_NFT_COMMENT_LENGTH: usize = 128;

/// The identity of one attachment: what DEL finds everything by.
#[derive(Debug, Clone, Copy)]
pub struct Attachment<'a> {
    pub network: &'a str,
    pub container_id: &'a str,
}

impl Attachment<'_> {
    fn hash_hex(&self) -> String {
        let mut h = Sha512::new();
        h.update(self.network.as_bytes());
        h.update(self.container_id.as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn hashed(&self, prefix: &str) -> String {
        let mut s = format!("{prefix}{}", self.hash_hex());
        s.truncate(MAX_CHAIN_LENGTH);
        s
    }

    /// Per-container DNAT chain `CNI-DN-<21 hex>`.
    pub fn dnat_chain(&self) -> String {
        self.hashed("CNI-DN-")
    }

    /// Pre-2017 per-container SNAT chain, only ever torn down.
    pub fn old_snat_chain(&self) -> String {
        self.hashed("CNI-SN-")
    }

    /// Comment on the entry rules in `CNI-HOSTPORT-DNAT`.
    pub fn dnat_comment(&self) -> String {
        trim(
            format!(
                "dnat name: \"{}\" id: \"{}\"",
                self.network, self.container_id
            ),
            MAX_COMMENT_LENGTH,
            MAX_COMMENT_LENGTH - 2,
        )
    }

    /// nftables ownership token: 15 hex digits (fits nft's `ifname` type), the same digest as the
    /// iptables chain so the two can be correlated by eye.
    pub fn nft_token(&self) -> String {
        self.hash_hex()[..15].to_string()
    }

    /// Human-readable element comment for the nftables ownership set. Names and IDs are
    /// restricted to `[A-Za-z0-9_.-]` by the CNI skeleton, so no quoting is needed.
    pub fn nft_comment(&self) -> String {
        trim(
            format!("{} {}", self.network, self.container_id),
            MAX_NFT_COMMENT_LENGTH,
            MAX_NFT_COMMENT_LENGTH - 3,
        )
    }
}

/// Cuts values longer than `max` to `keep` bytes plus `...` (upstream's `trimComment` keeps 253
/// of a 255 limit, i.e. yields 256 bytes; we reproduce that exactly for iptables).
fn trim(mut s: String, max: usize, keep: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut cut = keep;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str("...");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_chain_name_vectors() {
        let a = Attachment {
            network: "testNetName",
            container_id: "icee6giejonei6sohng6ahngee7laquohquee9shiGo7fohferakah3Feiyoolu2pei7ciPhoh7shaoX6vai3vuf0ahfaeng8yohb9ceu0daez5hashee8ooYai5wa3y",
        };
        assert_eq!(a.dnat_chain(), "CNI-DN-bfd599665540dd91d5d28");
        let b = Attachment {
            network: "k8s-pod-network",
            container_id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        };
        assert_eq!(b.dnat_chain(), "CNI-DN-ce0bd88d2c9cb28103e1a");
        assert_eq!(b.old_snat_chain().len(), 28);
        assert!(b.old_snat_chain().starts_with("CNI-SN-"));
        assert_eq!(b.nft_token(), "ce0bd88d2c9cb28");
    }

    #[test]
    fn comments() {
        let a = Attachment {
            network: "net",
            container_id: "cid",
        };
        assert_eq!(a.dnat_comment(), r#"dnat name: "net" id: "cid""#);
        let long = "x".repeat(300);
        let b = Attachment {
            network: "net",
            container_id: &long,
        };
        let c = b.dnat_comment();
        assert_eq!(c.len(), 256);
        assert!(c.ends_with("..."));
        assert_eq!(b.nft_comment().len(), 128);
    }
}
