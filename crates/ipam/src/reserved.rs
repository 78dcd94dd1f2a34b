//! IPReservations: addresses Calico IPAM never hands out automatically (libcalico-go
//! `getReservedIPs` + its address filter).
//!
//! Every automatic assignment loads all `IPReservation` resources once; the allocator then
//! skips reserved free addresses inside blocks, never claims a new block whose whole CIDR is
//! reserved, and skips such blocks when borrowing. Like Calico, a specific-address request
//! (`assign_ip`) is not filtered, addresses allocated before a reservation existed stay
//! allocated, and a malformed entry is ignored with a log line rather than failing allocation.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use log::error;

use crate::error::{IpamError, IpamResult};
use crate::keys::{ListPrefix, ResourceKind};
use crate::model::{AllocationBlock, IpReservation};
use crate::store::{KvPair, Store, StoreError, StoreResult};

/// The reserved CIDRs of every IPReservation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reservations {
    cidrs: Vec<IpNetwork>,
}

/// Parse one `reservedCIDRs` entry like Calico's `ParseCIDROrIP`: a bare address is a host
/// route, a CIDR with host bits set means its network.
pub fn parse_reserved(s: &str) -> Option<IpNetwork> {
    let n: IpNetwork = s.trim().parse().ok()?;
    IpNetwork::new(n.network(), n.prefix()).ok()
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Inclusive numeric range of a network.
fn range(n: &IpNetwork) -> (u128, u128) {
    let bits: u32 = if n.is_ipv4() { 32 } else { 128 };
    let host_bits = bits - u32::from(n.prefix());
    let start = to_u128(n.network());
    let span = if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    (start, start.saturating_add(span))
}

impl Reservations {
    /// No reservations.
    pub fn none() -> Self {
        Self::default()
    }

    /// From explicit CIDRs (tests, tools).
    pub fn from_cidrs(cidrs: impl IntoIterator<Item = IpNetwork>) -> Self {
        Reservations {
            cidrs: cidrs.into_iter().collect(),
        }
    }

    /// From resources; malformed entries are logged and ignored (as Calico does).
    pub fn from_resources<'a>(items: impl IntoIterator<Item = &'a IpReservation>) -> Self {
        let mut cidrs = Vec::new();
        for r in items {
            for c in r
                .spec
                .reserved_cidrs
                .iter()
                .filter(|c| !c.trim().is_empty())
            {
                match parse_reserved(c) {
                    Some(n) => cidrs.push(n),
                    None => error!(
                        "ignoring malformed CIDR {c:?} in IPReservation {}",
                        r.metadata.name
                    ),
                }
            }
        }
        Reservations { cidrs }
    }

    /// Every IPReservation in `store`. An unreadable object fails the load (like Calico's
    /// failing List): allocating while blind to reservations is worse.
    pub fn load(store: &dyn Store) -> IpamResult<Self> {
        Self::from_listing(store.list(&Self::list_prefix()))
    }

    /// What [`Reservations::load`] lists.
    pub fn list_prefix() -> ListPrefix {
        ListPrefix::Resources {
            kind: ResourceKind::IpReservation,
            namespace: None,
        }
    }

    /// The reservations from the answer to a list of [`Reservations::list_prefix`] (as
    /// [`Reservations::load`] reads them).
    pub fn from_listing(listed: StoreResult<Vec<KvPair>>) -> IpamResult<Self> {
        let kvs = match listed {
            Ok(kvs) => kvs,
            // A Kubernetes API without the IPReservation CRD (Calico before 3.21): none exist.
            Err(StoreError::NotFound(_)) => return Ok(Self::none()),
            Err(e) => return Err(e.into()),
        };
        let mut items = Vec::with_capacity(kvs.len());
        for kv in kvs {
            let r = IpReservation::from_json(&kv.value)
                .map_err(|e| IpamError::corrupt(&kv.key, e.to_string()))?;
            items.push(r);
        }
        Ok(Self::from_resources(&items))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.cidrs.is_empty()
    }

    /// The reserved CIDRs.
    pub fn cidrs(&self) -> &[IpNetwork] {
        &self.cidrs
    }

    /// Whether `ip` is reserved.
    pub fn matches_ip(&self, ip: IpAddr) -> bool {
        self.cidrs.iter().any(|c| c.contains(ip))
    }

    /// Whether any address of `net` is reserved.
    pub fn matches_some(&self, net: &IpNetwork) -> bool {
        let (s, e) = range(net);
        self.same_family(net).any(|c| {
            let (cs, ce) = range(c);
            cs <= e && s <= ce
        })
    }

    /// Whether every address of `net` is reserved (possibly by several entries together).
    pub fn matches_whole(&self, net: &IpNetwork) -> bool {
        let (s, e) = range(net);
        let mut parts: Vec<(u128, u128)> = self
            .same_family(net)
            .map(range)
            .filter(|&(cs, ce)| cs <= e && s <= ce)
            .map(|(cs, ce)| (cs.max(s), ce.min(e)))
            .collect();
        parts.sort_unstable();
        let mut next = s;
        for (ps, pe) in parts {
            if ps > next {
                return false;
            }
            if pe >= e {
                return true;
            }
            next = next.max(pe + 1);
        }
        false
    }

    /// How many addresses of `net` are reserved (each counted once).
    pub fn count_in(&self, net: &IpNetwork) -> u128 {
        let (s, e) = range(net);
        let mut parts: Vec<(u128, u128)> = self
            .same_family(net)
            .map(range)
            .filter(|&(cs, ce)| cs <= e && s <= ce)
            .map(|(cs, ce)| (cs.max(s), ce.min(e)))
            .collect();
        parts.sort_unstable();
        let mut total = 0u128;
        let mut next = s;
        for (ps, pe) in parts {
            let from = ps.max(next);
            if from > pe {
                continue;
            }
            total = total.saturating_add(pe - from).saturating_add(1);
            next = match pe.checked_add(1) {
                Some(n) => n,
                None => return total,
            };
        }
        total
    }

    /// Upper bound on the number of `block_prefix` blocks of `pool` that reservations cover
    /// entirely (bounds the new-block search, which skips them).
    pub fn max_whole_blocks(&self, pool: IpNetwork, block_prefix: u8) -> u128 {
        self.same_family(&pool)
            .filter(|c| pool.contains(c.network()) || c.contains(pool.network()))
            .map(
                |c| match block_prefix.checked_sub(c.prefix().max(pool.prefix())) {
                    // A CIDR no larger than a block covers at most one (together with others).
                    None | Some(0) => 1,
                    Some(d) => 1u128.checked_shl(u32::from(d)).unwrap_or(u128::MAX),
                },
            )
            .fold(0u128, u128::saturating_add)
    }

    /// Free addresses of `block` that are not reserved (Calico `NumFreeAddresses`).
    pub fn free_in(&self, block: &AllocationBlock) -> usize {
        if !self.matches_some(&block.cidr) {
            return block.free_count();
        }
        block
            .unallocated
            .iter()
            .filter(|&&o| !self.matches_ip(block.ordinal_to_ip(o)))
            .count()
    }

    fn same_family<'a>(&'a self, net: &IpNetwork) -> impl Iterator<Item = &'a IpNetwork> {
        let v4 = net.is_ipv4();
        self.cidrs.iter().filter(move |c| c.is_ipv4() == v4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn whole_and_partial_matches() {
        let r = Reservations::from_cidrs([net("10.0.0.0/27"), net("10.0.0.32/27")]);
        assert!(r.matches_whole(&net("10.0.0.0/26")), "two halves cover it");
        assert!(!r.matches_whole(&net("10.0.0.0/25")));
        assert!(r.matches_some(&net("10.0.0.0/25")));
        assert!(!r.matches_some(&net("10.0.1.0/26")));
        assert!(!r.matches_some(&net("fd00::/64")), "families never mix");
        let gap = Reservations::from_cidrs([net("10.0.0.0/27"), net("10.0.0.33/32")]);
        assert!(!gap.matches_whole(&net("10.0.0.0/26")));
        let all6 = Reservations::from_cidrs([net("::/0")]);
        assert!(all6.matches_whole(&net("fd00::/122")));
        assert_eq!(all6.count_in(&net("fd00::/120")), 256);
        let overlapping =
            Reservations::from_cidrs([net("10.0.0.0/30"), net("10.0.0.2/31"), net("10.0.0.9/32")]);
        assert_eq!(overlapping.count_in(&net("10.0.0.0/28")), 5);
        assert_eq!(overlapping.count_in(&net("10.0.0.8/30")), 1);
    }

    #[test]
    fn parses_like_calico() {
        assert_eq!(parse_reserved("10.0.0.7"), Some(net("10.0.0.7/32")));
        assert_eq!(parse_reserved(" 10.0.0.7/24 "), Some(net("10.0.0.0/24")));
        assert_eq!(
            parse_reserved("cafe:f00d::/123"),
            Some(net("cafe:f00d::/123"))
        );
        assert_eq!(parse_reserved("nope"), None);
        let r = IpReservation::from_json(
            r#"{"kind":"IPReservation","apiVersion":"projectcalico.org/v3","metadata":{"name":"r"},"spec":{"reservedCIDRs":["10.0.0.1","bad",""]}}"#,
        )
        .unwrap();
        assert_eq!(
            Reservations::from_resources([&r]).cidrs(),
            &[net("10.0.0.1/32")]
        );
    }

    /// A Kubernetes API without the IPReservation CRD answers the list with 404.
    struct WithoutCrd(crate::MemoryStore);

    impl Store for WithoutCrd {
        fn get(&self, k: &crate::Key) -> crate::StoreResult<crate::KvPair> {
            self.0.get(k)
        }
        fn list(&self, p: &ListPrefix) -> crate::StoreResult<Vec<crate::KvPair>> {
            match p {
                ListPrefix::Resources {
                    kind: ResourceKind::IpReservation,
                    ..
                } => Err(StoreError::NotFound("ipreservations".into())),
                p => self.0.list(p),
            }
        }
        fn create(&self, k: &crate::Key, v: &str) -> crate::StoreResult<crate::Revision> {
            self.0.create(k, v)
        }
        fn update(
            &self,
            k: &crate::Key,
            v: &str,
            r: &crate::Revision,
        ) -> crate::StoreResult<crate::Revision> {
            self.0.update(k, v, r)
        }
        fn delete(&self, k: &crate::Key, r: Option<&crate::Revision>) -> crate::StoreResult<()> {
            self.0.delete(k, r)
        }
    }

    #[test]
    fn missing_crd_means_no_reservations() {
        let s = WithoutCrd(crate::MemoryStore::new());
        assert_eq!(Reservations::load(&s).unwrap(), Reservations::none());
        // An ADD reads the reservations with its other opening reads: the 404 does not end
        // the batch (the pools, node and affinities are still read) nor fail the ADD.
        let ipam = crate::Ipam::with_options(
            &s,
            crate::IpamOptions {
                require_node: false,
                ..Default::default()
            },
        );
        let pool = crate::model::IpPool::from_json(
            r#"{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"p"},"spec":{"cidr":"10.50.0.0/24","blockSize":29}}"#,
        )
        .unwrap();
        ipam.create_pool(&pool).unwrap();
        let got = ipam
            .auto_assign(&crate::AutoAssignRequest {
                num_v4: 1,
                handle_id: "net.h".into(),
                hostname: "n1".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(got.ipv4.len(), 1);
        assert!(net("10.50.0.0/24").contains(got.ipv4[0].ip()), "{got:?}");
    }

    #[test]
    fn block_assignment_skips_reserved_and_keeps_fifo_order() {
        let mut b = AllocationBlock::new(net("10.0.0.0/29"), None, None, 1);
        let r = Reservations::from_cidrs([net("10.0.0.0/31"), net("10.0.0.4/32")]);
        assert_eq!(r.free_in(&b), 5);
        let got = b.auto_assign_skipping(3, "h", &BTreeMap::new(), |ip| r.matches_ip(ip));
        let ips: Vec<String> = got.iter().map(|t| t.ip.to_string()).collect();
        assert_eq!(ips, ["10.0.0.2", "10.0.0.3", "10.0.0.5"]);
        assert_eq!(
            b.unallocated,
            vec![0, 1, 4, 6, 7],
            "reserved stay free in place"
        );
        assert_eq!(r.free_in(&b), 2);
        b.check().unwrap();
    }
}
