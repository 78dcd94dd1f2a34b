//! The ifb device name, derived from the attachment identity only (DEL has nothing else).

use sha2::{Digest, Sha512};

/// `"bwp" + hex(sha512(network + containerID))`, cut to 15 characters (IFNAMSIZ − 1), exactly
/// like upstream so either plugin's DEL removes the other's ifb.
pub fn ifb_name(network: &str, container_id: &str) -> String {
    let mut h = Sha512::new();
    h.update(network.as_bytes());
    h.update(container_id.as_bytes());
    let mut name = String::from("bwp");
    for b in h.finalize().iter().take(6) {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_vectors() {
        assert_eq!(
            ifb_name("cni-plugin-bandwidth-test", "dummy"),
            "bwpa8eda89404b7"
        );
        assert_eq!(
            ifb_name(
                "k8s-pod-network",
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            ),
            "bwpce0bd88d2c9c"
        );
        assert_eq!(ifb_name("n", "c").len(), 15);
    }
}
