//! Block-sized subnets of a pool, visited in a per-host order.
//!
//! Calico starts each host's walk at a pseudo-random block index seeded by the FNV-1 (32-bit)
//! hash of the host name, then increments with wrap-around. We keep that contract (stable
//! per host, different hosts spread out) without reproducing Go's PRNG bit-for-bit.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

/// Number of block-sized subnets in `pool` (saturating for absurd IPv6 pools).
pub fn num_blocks(pool: &IpNetwork, block_prefix: u8) -> u128 {
    let bits = u32::from(block_prefix.saturating_sub(pool.prefix()));
    1u128.checked_shl(bits).unwrap_or(u128::MAX)
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn host_bits(pool: &IpNetwork, block_prefix: u8) -> u32 {
    let width = if pool.is_ipv4() { 32 } else { 128 };
    width - u32::from(block_prefix)
}

/// The `idx`-th block of `pool`.
pub fn subnet_at(pool: &IpNetwork, block_prefix: u8, idx: u128) -> IpNetwork {
    let off = idx.checked_shl(host_bits(pool, block_prefix)).unwrap_or(0);
    let base = to_u128(pool.network()).wrapping_add(off);
    let ip = if pool.is_ipv4() {
        IpAddr::V4(Ipv4Addr::from(base as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(base))
    };
    // Prefix is valid by construction (block_prefix ≤ width was checked by the caller).
    IpNetwork::new(ip, block_prefix).unwrap_or(*pool)
}

/// Index of block `cidr` inside `pool` (caller ensures containment).
pub fn index_of(pool: &IpNetwork, block_prefix: u8, cidr: &IpNetwork) -> u128 {
    let off = to_u128(cidr.network()).wrapping_sub(to_u128(pool.network()));
    off.checked_shr(host_bits(pool, block_prefix)).unwrap_or(0)
}

/// The block containing `ip` for a pool block size.
pub fn block_of(ip: IpAddr, block_prefix: u8) -> Option<IpNetwork> {
    let n = IpNetwork::new(ip, block_prefix).ok()?;
    IpNetwork::new(n.network(), block_prefix).ok()
}

/// FNV-1 32-bit (not 1a), as Go's `fnv.New32`.
pub fn fnv1_32(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(b);
    }
    h
}

/// Per-host start index in `[0, n)`.
pub fn start_index(host: &str, n: u128) -> u128 {
    if n <= 1 {
        return 0;
    }
    // splitmix64 spreads the 32-bit hash over the whole range for large pools.
    let mut z = u64::from(fnv1_32(host)).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let wide = (u128::from(z) << 64) | u128::from(z.rotate_left(17));
    wide % n
}

/// Walk order position of block index `idx` for a walk starting at `start` (0 = first visited).
pub fn walk_position(idx: u128, start: u128, n: u128) -> u128 {
    if idx >= start {
        idx - start
    } else {
        n - start + idx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1_matches_reference_vectors() {
        // FNV-1 32 test vectors.
        assert_eq!(fnv1_32(""), 0x811c_9dc5);
        assert_eq!(fnv1_32("a"), 0x050c_5d7e);
        assert_eq!(fnv1_32("foobar"), 0x31f0_b262);
    }

    #[test]
    fn subnet_indexing() {
        let pool: IpNetwork = "10.244.0.0/16".parse().unwrap();
        assert_eq!(num_blocks(&pool, 26), 1024);
        let b = subnet_at(&pool, 26, 5);
        assert_eq!(b.to_string(), "10.244.1.64/26");
        assert_eq!(index_of(&pool, 26, &b), 5);
        let v6: IpNetwork = "fd00:10::/48".parse().unwrap();
        assert_eq!(num_blocks(&v6, 122), 1 << 74);
        let b = subnet_at(&v6, 122, 3);
        assert_eq!(b.to_string(), "fd00:10::c0/122");
        assert_eq!(index_of(&v6, 122, &b), 3);
        assert_eq!(
            block_of("10.244.1.70".parse().unwrap(), 26)
                .unwrap()
                .to_string(),
            "10.244.1.64/26"
        );
    }

    #[test]
    fn start_is_stable_and_spread() {
        assert_eq!(start_index("node1", 1024), start_index("node1", 1024));
        let starts: std::collections::BTreeSet<u128> = (0..20)
            .map(|i| start_index(&format!("node{i}"), 1024))
            .collect();
        assert!(starts.len() > 15, "hosts should start at different blocks");
        assert!(starts.iter().all(|s| *s < 1024));
        assert_eq!(walk_position(3, 5, 10), 8);
        assert_eq!(walk_position(7, 5, 10), 2);
    }
}
