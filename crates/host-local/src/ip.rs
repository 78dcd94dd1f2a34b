//! Address arithmetic on one integer type for both families.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub(crate) fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Builds an address of the same family as `like`; `v` must fit that family.
pub(crate) fn from_u128(v: u128, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

/// `ip + 1`, wrapping inside the family (never reached inside a canonical range).
pub(crate) fn next(ip: IpAddr) -> IpAddr {
    let max = match ip {
        IpAddr::V4(_) => u128::from(u32::MAX),
        IpAddr::V6(_) => u128::MAX,
    };
    let v = to_u128(ip);
    from_u128(if v == max { 0 } else { v + 1 }, ip)
}

/// IPv4-mapped IPv6 addresses are treated as IPv4, as Go's `To4()` does.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

pub(crate) fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_crosses_octets_and_wraps() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(next(ip("10.0.0.255")), ip("10.0.1.0"));
        assert_eq!(next(ip("255.255.255.255")), ip("0.0.0.0"));
        assert_eq!(next(ip("2001:db8::ffff")), ip("2001:db8::1:0"));
        assert_eq!(canonical(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
    }
}
