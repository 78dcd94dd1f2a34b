//! Ranges and range sets: canonicalisation (defaults + validation), membership, overlap.

use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::error::{Error, Result};
use crate::ip::{canonical, from_u128, next, same_family, to_u128};

/// A range as configured: everything but the subnet is optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSpec {
    /// As written, possibly with host bits (rejected by [`RangeSpec::canonicalize`]).
    pub subnet: IpNetwork,
    pub range_start: Option<IpAddr>,
    pub range_end: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
}

/// A validated range with all defaults filled in. Start and end are inclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNetwork,
    pub range_start: IpAddr,
    pub range_end: IpAddr,
    pub gateway: IpAddr,
}

impl RangeSpec {
    /// Upstream rules: network address only, at least 4 addresses, gateway default network+1,
    /// start default network+1 (the gateway is skipped while iterating), end default
    /// broadcast−1 (IPv4) or the last address (IPv6); start/end inside the subnet, end ≥ start.
    pub fn canonicalize(&self) -> Result<Range> {
        let subnet = self.subnet;
        let prefix = subnet.prefix();
        let bits: u8 = if subnet.is_ipv4() { 32 } else { 128 };
        if prefix > bits - 2 {
            return Err(Error::NetworkTooSmall(subnet));
        }
        // An IPv4-mapped IPv6 "subnet" has a v4 address but a v6 mask (Go's wording).
        if subnet.is_ipv6() && canonical(subnet.ip()).is_ipv4() {
            return Err(Error::FamilyMismatch);
        }
        if subnet.network() != subnet.ip() {
            return Err(Error::HostBitsSet {
                prefix,
                network: subnet.network(),
            });
        }
        let first = next(subnet.network());
        let gateway = self.gateway.map(canonical).unwrap_or(first);
        let partial = Range {
            subnet,
            range_start: first,
            range_end: last_ip(subnet),
            gateway,
        };
        let range_start = match self.range_start.map(canonical) {
            Some(ip) if partial.in_subnet(ip) => ip,
            Some(ip) => return Err(Error::RangeStartOutside { ip, subnet }),
            None => first,
        };
        let range_end = match self.range_end.map(canonical) {
            // Upstream checks the end with Contains(), i.e. also against the start.
            Some(ip) if partial.in_subnet(ip) && to_u128(ip) >= to_u128(range_start) => ip,
            Some(ip) => return Err(Error::RangeEndOutside { ip, subnet }),
            None => partial.range_end,
        };
        Ok(Range {
            range_start,
            range_end,
            ..partial
        })
    }
}

/// Last usable address: broadcast − 1 for IPv4, the very last address for IPv6.
fn last_ip(subnet: IpNetwork) -> IpAddr {
    let b = to_u128(subnet.broadcast());
    if subnet.is_ipv4() {
        from_u128(b - 1, subnet.ip())
    } else {
        from_u128(b, subnet.ip())
    }
}

impl Range {
    fn in_subnet(&self, ip: IpAddr) -> bool {
        same_family(ip, self.subnet.ip()) && self.subnet.contains(ip)
    }

    /// Whether `ip` is inside the subnet and between start and end.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.in_subnet(ip)
            && to_u128(ip) >= to_u128(self.range_start)
            && to_u128(ip) <= to_u128(self.range_end)
    }

    pub fn overlaps(&self, other: &Range) -> bool {
        same_family(self.range_start, other.range_start)
            && (self.contains(other.range_start)
                || self.contains(other.range_end)
                || other.contains(self.range_start)
                || other.contains(self.range_end))
    }

    /// Prefix length of the subnet: results report `ip/prefix`.
    pub fn address(&self, ip: IpAddr) -> IpNetwork {
        // Cannot fail: the prefix comes from a valid network of the same family.
        IpNetwork::new(ip, self.subnet.prefix()).unwrap_or(self.subnet)
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.range_start, self.range_end)
    }
}

/// Ranges from which one address is allocated (one file-backed allocator per set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>);

impl RangeSet {
    /// Canonicalises every range; one family per set; no overlaps inside the set.
    pub fn canonicalize(specs: &[RangeSpec]) -> Result<RangeSet> {
        if specs.is_empty() {
            return Err(Error::EmptyRangeSet);
        }
        let mut ranges: Vec<Range> = Vec::with_capacity(specs.len());
        for spec in specs {
            let r = spec.canonicalize()?;
            if let Some(first) = ranges.first() {
                if !same_family(first.range_start, r.range_start) {
                    return Err(Error::MixedFamilies);
                }
            }
            ranges.push(r);
        }
        for (i, a) in ranges.iter().enumerate() {
            if let Some(b) = ranges[i + 1..].iter().find(|b| a.overlaps(b)) {
                return Err(Error::SubnetsOverlap(a.to_string(), b.to_string()));
            }
        }
        Ok(RangeSet(ranges))
    }

    pub fn ranges(&self) -> &[Range] {
        &self.0
    }

    pub fn is_ipv4(&self) -> bool {
        self.0.first().is_some_and(|r| r.range_start.is_ipv4())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    /// The range holding `ip`.
    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    /// Index of the range holding `ip`.
    pub(crate) fn index_of(&self, ip: IpAddr) -> Option<usize> {
        self.0.iter().position(|r| r.contains(ip))
    }

    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.0.iter().any(|a| other.0.iter().any(|b| a.overlaps(b)))
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(subnet: &str) -> RangeSpec {
        RangeSpec {
            subnet: subnet.parse().unwrap(),
            range_start: None,
            range_end: None,
            gateway: None,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_for_ipv4_and_ipv6() {
        let r = spec("10.1.2.0/24").canonicalize().unwrap();
        assert_eq!(
            (r.range_start, r.range_end, r.gateway),
            (ip("10.1.2.1"), ip("10.1.2.254"), ip("10.1.2.1"))
        );
        assert_eq!(r.to_string(), "10.1.2.1-10.1.2.254");
        let r = spec("2001:db8:1::/64").canonicalize().unwrap();
        assert_eq!(
            (r.range_start, r.range_end, r.gateway),
            (
                ip("2001:db8:1::1"),
                ip("2001:db8:1::ffff:ffff:ffff:ffff"),
                ip("2001:db8:1::1")
            )
        );
        // Smallest allocatable networks.
        assert!(spec("10.0.0.0/30").canonicalize().is_ok());
        assert!(spec("2001:db8::/126").canonicalize().is_ok());
    }

    #[test]
    fn rejects_small_networks_and_host_bits() {
        for s in [
            "10.0.0.0/31",
            "10.0.0.1/32",
            "2001:db8::/127",
            "2001:db8::/128",
        ] {
            let e = spec(s).canonicalize().unwrap_err().to_string();
            assert_eq!(e, format!("Network {s} too small to allocate from"));
        }
        assert_eq!(
            spec("10.1.2.3/24").canonicalize().unwrap_err().to_string(),
            "Network has host bits set. For a subnet mask of length 24 the network address is 10.1.2.0"
        );
    }

    #[test]
    fn explicit_bounds_are_validated() {
        let mut s = spec("10.1.2.0/24");
        s.range_start = Some(ip("10.1.2.10"));
        s.range_end = Some(ip("10.1.2.20"));
        s.gateway = Some(ip("10.1.2.254"));
        let r = s.canonicalize().unwrap();
        assert_eq!(r.to_string(), "10.1.2.10-10.1.2.20");
        assert_eq!(r.gateway, ip("10.1.2.254"));
        assert!(r.contains(ip("10.1.2.10")) && r.contains(ip("10.1.2.20")));
        assert!(!r.contains(ip("10.1.2.9")) && !r.contains(ip("10.1.2.21")));
        assert!(!r.contains(ip("2001:db8::1")));

        s.range_start = Some(ip("10.1.3.1"));
        assert_eq!(
            s.canonicalize().unwrap_err().to_string(),
            "RangeStart 10.1.3.1 not in network 10.1.2.0/24"
        );
        s.range_start = Some(ip("10.1.2.30"));
        assert_eq!(
            s.canonicalize().unwrap_err().to_string(),
            "RangeEnd 10.1.2.20 not in network 10.1.2.0/24"
        );
        s.range_start = Some(ip("::ffff:10.1.2.5"));
        assert_eq!(s.canonicalize().unwrap().range_start, ip("10.1.2.5"));
    }

    #[test]
    fn sets_reject_mixed_families_and_overlaps() {
        assert_eq!(
            RangeSet::canonicalize(&[]).unwrap_err().to_string(),
            "empty range set"
        );
        assert_eq!(
            RangeSet::canonicalize(&[spec("10.0.0.0/24"), spec("2001:db8::/64")])
                .unwrap_err()
                .to_string(),
            "mixed address families"
        );
        assert_eq!(
            RangeSet::canonicalize(&[spec("10.0.0.0/16"), spec("10.0.5.0/24")])
                .unwrap_err()
                .to_string(),
            "subnets 10.0.0.1-10.0.255.254 and 10.0.5.1-10.0.5.254 overlap"
        );
        let set = RangeSet::canonicalize(&[spec("10.0.0.0/24"), spec("10.0.1.0/24")]).unwrap();
        assert_eq!(set.to_string(), "10.0.0.1-10.0.0.254,10.0.1.1-10.0.1.254");
        assert_eq!(set.index_of(ip("10.0.1.7")), Some(1));
        assert!(!set.contains(ip("10.0.2.1")));
        let other = RangeSet::canonicalize(&[spec("10.0.1.0/24")]).unwrap();
        assert!(set.overlaps(&other));
        let v6 = RangeSet::canonicalize(&[spec("2001:db8::/64")]).unwrap();
        assert!(!set.overlaps(&v6));
    }
}
