//! Calico's KDD object names and labels (libcalico-go `names` / KDD resource converters).

use ipnetwork::IpNetwork;
use sha2::{Digest, Sha256};
use sha3::Sha3_256;

/// Label keys Calico (v3.31+) puts on BlockAffinity objects so per-host listing is a label query.
pub const LABEL_HOSTNAME_HASH: &str = "projectcalico.org/hostname-hash";
pub const LABEL_AFFINITY_TYPE: &str = "projectcalico.org/affinity-type";
pub const LABEL_IP_VERSION: &str = "projectcalico.org/ip-version";

/// Longest Kubernetes object name.
const MAX_NAME: usize = 253;

/// IPAMBlock name: the CIDR with `.`, `:` and `/` replaced by `-`
/// (`10.244.1.0/26` → `10-244-1-0-26`, `fd00:10:244::/122` → `fd00-10-244---122`).
pub fn block_name(cidr: &IpNetwork) -> String {
    cidr.to_string().replace(['.', ':', '/'], "-")
}

/// Inverse of [`block_name`] (for objects whose spec lacks a CIDR).
pub fn parse_block_name(name: &str) -> Option<IpNetwork> {
    let (addr, prefix) = name.rsplit_once('-')?;
    let prefix: u8 = prefix.parse().ok()?;
    let dashes = addr.matches('-').count();
    let text = if dashes == 3 && !addr.contains(|c: char| c.is_ascii_alphabetic()) {
        addr.replace('-', ".")
    } else {
        addr.replace('-', ":")
    };
    let net = IpNetwork::new(text.parse().ok()?, prefix).ok()?;
    (block_name(&net) == name).then_some(net)
}

/// BlockAffinity name: `<host>-<blockname>`; when that is too long for a Kubernetes name, the
/// host is truncated and a hash of the full pair keeps names unique.
pub fn affinity_name(host: &str, cidr: &IpNetwork) -> String {
    let block = block_name(cidr);
    let name = format!("{host}-{block}");
    if name.len() < MAX_NAME {
        return name;
    }
    let keep = (MAX_NAME - 1).saturating_sub(block.len() + 13);
    let digest = Sha256::digest(format!("{host}+{block}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let mut cut = keep.min(host.len());
    while !host.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{block}-{}", &host[..cut], &hex[..11])
}

/// IPAMHandle name: the handle id lower-cased.
pub fn handle_name(id: &str) -> String {
    id.to_lowercase()
}

/// `projectcalico.org/hostname-hash` label value: unpadded base32 (RFC 4648 alphabet) of
/// SHA3-256 of the node name.
pub fn hostname_hash(host: &str) -> String {
    base32(&Sha3_256::digest(host.as_bytes()))
}

fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn calico_names() {
        assert_eq!(block_name(&net("10.244.1.0/26")), "10-244-1-0-26");
        assert_eq!(block_name(&net("fd00:10:244::/122")), "fd00-10-244---122");
        for c in [
            "10.244.1.0/26",
            "fd00:10:244::/122",
            "fd00::/122",
            "::/122",
            "1.2.3.4/32",
        ] {
            assert_eq!(parse_block_name(&block_name(&net(c))), Some(net(c)), "{c}");
        }
        assert_eq!(parse_block_name("k8s-pod-network"), None);
        assert_eq!(
            affinity_name("node1", &net("10.244.1.0/26")),
            "node1-10-244-1-0-26"
        );
        let long = "n".repeat(300);
        let a = affinity_name(&long, &net("10.244.1.0/26"));
        assert_eq!(a.len(), 252);
        assert!(a.contains("-10-244-1-0-26-"));
        assert_ne!(a, affinity_name(&"n".repeat(301), &net("10.244.1.0/26")));
        assert_eq!(handle_name("K8s-Pod-Network.ABC"), "k8s-pod-network.abc");
    }

    #[test]
    fn base32_matches_rfc4648() {
        // RFC 4648 test vectors, padding stripped.
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"fo"), "MZXQ");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(hostname_hash("node1").len(), 52);
    }
}
