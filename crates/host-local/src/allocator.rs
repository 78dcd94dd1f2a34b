//! Allocation from one range set: requested address, duplicate detection, round robin.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::error::{Error, Result};
use crate::ip::{canonical, next};
use crate::range::RangeSet;
use crate::store::Locked;

/// One allocated address: `ip/subnet-prefix` and the range's gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub address: IpNetwork,
    pub gateway: IpAddr,
}

/// Allocator for range set number `range_id` (the index also names `last_reserved_ip.<n>`).
pub struct Allocator<'a> {
    set: &'a RangeSet,
    range_id: usize,
}

impl<'a> Allocator<'a> {
    pub fn new(set: &'a RangeSet, range_id: usize) -> Allocator<'a> {
        Allocator { set, range_id }
    }

    /// Reserves `requested`, or else the next free address after the last reserved one.
    pub fn get(
        &self,
        store: &Locked<'_>,
        id: &str,
        ifname: &str,
        requested: Option<IpAddr>,
    ) -> Result<Allocation> {
        if let Some(ip) = requested.map(canonical) {
            let r = self.set.range_for(ip).ok_or_else(|| Error::NotInRangeSet {
                ip,
                set: self.set.to_string(),
            })?;
            if ip == r.gateway {
                return Err(Error::RequestedGateway(ip));
            }
            if !store.reserve(id, ifname, ip, self.range_id)? {
                return Err(Error::RequestedUnavailable {
                    ip,
                    set: self.set.to_string(),
                });
            }
            return Ok(Allocation {
                address: r.address(ip),
                gateway: r.gateway,
            });
        }

        // The spec forbids a second ADD for the same attachment without a DEL in between.
        if let Some(ip) = store
            .get_by_id(id, ifname)?
            .into_iter()
            .find(|ip| self.set.contains(*ip))
        {
            return Err(Error::Duplicate {
                ip,
                id: id.to_string(),
            });
        }

        let mut iter = RoundRobin::new(self.set, store.last_reserved_ip(self.range_id));
        while let Some((ip, idx)) = iter.next_candidate() {
            if store.reserve(id, ifname, ip, self.range_id)? {
                let r = &self.set.ranges()[idx];
                return Ok(Allocation {
                    address: r.address(ip),
                    gateway: r.gateway,
                });
            }
        }
        Err(Error::Exhausted(self.set.to_string()))
    }
}

/// Walks the set starting after the last reserved address (or at the first range's start),
/// through the ranges in order with wrap-around, skipping gateways, until back at the start.
/// Mirrors upstream's iterator so Go and Rust hand out addresses in the same order.
pub struct RoundRobin<'a> {
    set: &'a RangeSet,
    idx: usize,
    cur: Option<IpAddr>,
    start: Option<IpAddr>,
}

impl<'a> RoundRobin<'a> {
    pub fn new(set: &'a RangeSet, last_reserved: Option<IpAddr>) -> RoundRobin<'a> {
        // A stale last-reserved address (ranges changed) just loses round robin once.
        match last_reserved.and_then(|ip| set.index_of(ip).map(|i| (ip, i))) {
            Some((ip, idx)) => RoundRobin {
                set,
                idx,
                cur: Some(ip),
                start: None,
            },
            None => RoundRobin {
                set,
                idx: 0,
                cur: None,
                start: set.ranges().first().map(|r| r.range_start),
            },
        }
    }

    /// Next candidate address and the index of its range; `None` once exhausted.
    pub fn next_candidate(&mut self) -> Option<(IpAddr, usize)> {
        let ranges = self.set.ranges();
        if ranges.is_empty() {
            return None;
        }
        loop {
            let mut r = &ranges[self.idx];
            let cur = match self.cur {
                None => {
                    self.start = Some(r.range_start);
                    r.range_start
                }
                Some(cur) => {
                    let n = if cur == r.range_end {
                        self.idx = (self.idx + 1) % ranges.len();
                        r = &ranges[self.idx];
                        r.range_start
                    } else {
                        next(cur)
                    };
                    match self.start {
                        None => self.start = Some(n),
                        Some(s) if s == n => return None,
                        Some(_) => {}
                    }
                    n
                }
            };
            self.cur = Some(cur);
            if cur != r.gateway {
                return Some((cur, self.idx));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::RangeSpec;
    use crate::store::Store;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// (subnet, rangeStart, rangeEnd, gateway)
    type Spec<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);

    fn set(specs: &[Spec<'_>]) -> RangeSet {
        let specs: Vec<RangeSpec> = specs
            .iter()
            .map(|(s, a, b, g)| RangeSpec {
                subnet: s.parse().unwrap(),
                range_start: a.map(ip),
                range_end: b.map(ip),
                gateway: g.map(ip),
            })
            .collect();
        RangeSet::canonicalize(&specs).unwrap()
    }

    fn walk(set: &RangeSet, last: Option<&str>) -> Vec<String> {
        let mut it = RoundRobin::new(set, last.map(ip));
        std::iter::from_fn(|| it.next_candidate().map(|(ip, _)| ip.to_string())).collect()
    }

    #[test]
    fn iteration_skips_gateway_and_wraps() {
        let s = set(&[("10.0.0.0/29", None, None, None)]);
        assert_eq!(
            walk(&s, None),
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
        assert_eq!(
            walk(&s, Some("10.0.0.4")),
            ["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
        );
        // Last reserved outside the set: start from the beginning.
        assert_eq!(walk(&s, Some("192.0.2.1")).len(), 5);
        let two = set(&[
            ("10.0.0.0/30", None, None, None),
            ("10.0.1.0/30", None, None, Some("10.0.1.2")),
        ]);
        assert_eq!(walk(&two, None), ["10.0.0.2", "10.0.1.1"]);
        assert_eq!(walk(&two, Some("10.0.0.2")), ["10.0.1.1", "10.0.0.2"]);
        // A range holding only its gateway yields nothing and terminates.
        let gw_only = set(&[("10.0.0.0/30", Some("10.0.0.1"), Some("10.0.0.1"), None)]);
        assert!(walk(&gw_only, None).is_empty());
    }

    #[test]
    fn round_robin_requested_duplicate_and_exhaustion() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), "n").unwrap();
        let l = store.lock().unwrap();
        let s = set(&[("10.0.0.0/29", None, None, None)]);
        let a = Allocator::new(&s, 0);
        let got = |id: &str| a.get(&l, id, "eth0", None).map(|x| x.address.to_string());

        assert_eq!(got("c1").unwrap(), "10.0.0.2/29");
        assert_eq!(
            a.get(&l, "c2", "eth0", None).unwrap().gateway,
            ip("10.0.0.1")
        );
        assert_eq!(
            got("c1").unwrap_err().to_string(),
            "10.0.0.2 has been allocated to c1, duplicate allocation is not allowed"
        );
        // Another interface of the same container is a different attachment.
        assert_eq!(
            a.get(&l, "c1", "net1", None).unwrap().address.to_string(),
            "10.0.0.4/29"
        );
        // Releasing does not rewind round robin: freed .2 comes back only after wrap-around.
        l.release_by_id("c2", "eth0").unwrap();
        assert_eq!(got("c3").unwrap(), "10.0.0.5/29");
        assert_eq!(got("c4").unwrap(), "10.0.0.6/29");
        assert_eq!(got("c5").unwrap(), "10.0.0.3/29");
        assert_eq!(
            got("c6").unwrap_err().to_string(),
            "no IP addresses available in range set: 10.0.0.1-10.0.0.6"
        );

        // Requested addresses.
        l.release_by_id("c4", "eth0").unwrap();
        let req = |id: &str, r: &str| {
            a.get(&l, id, "eth0", Some(ip(r)))
                .map(|x| x.address.to_string())
        };
        assert_eq!(req("c7", "10.0.0.6").unwrap(), "10.0.0.6/29");
        assert_eq!(
            req("c8", "10.0.0.6").unwrap_err().to_string(),
            "requested IP address 10.0.0.6 is not available in range set 10.0.0.1-10.0.0.6"
        );
        assert_eq!(
            req("c8", "10.0.0.1").unwrap_err().to_string(),
            "requested ip 10.0.0.1 is subnet's gateway"
        );
        assert_eq!(
            req("c8", "10.0.1.1").unwrap_err().to_string(),
            "10.0.1.1 not in range set 10.0.0.1-10.0.0.6"
        );
    }
}
