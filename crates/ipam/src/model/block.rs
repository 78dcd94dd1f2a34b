//! `AllocationBlock`: one block of addresses and who holds each of them
//! (etcd value at `/calico/ipam/v2/assignment/ipv4/block/<cidr>`).
//!
//! Invariants kept by every mutator here (and checked by [`AllocationBlock::check`]):
//! * `allocations.len()` = block size; each ordinal is either in `unallocated` exactly once
//!   (and `allocations[o]` is null) or allocated (`allocations[o]` indexes `attributes`).
//! * every attribute entry is referenced by at least one allocation.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{null_default, AFFINITY_HOST_PREFIX};
use crate::clock;

/// Per-allocation metadata (`handle_id` + the `secondary` attribute map). Empty fields are
/// left out as Calico's `omitempty` tags do, so a cooling-down entry reads `{"releasedAt":…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AllocationAttribute {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub secondary: BTreeMap<String, String>,
    /// Set while the ordinals pointing here cool down after a release (`ipCooldownSeconds`):
    /// RFC 3339, second precision, as Go's `metav1.Time`.
    #[serde(
        rename = "releasedAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub released_at: Option<String>,
    /// Fields written by newer Calico versions (`alternateOwnerAttrs`, ...), kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The block value. Field order follows Calico's Go struct so our JSON reads the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocationBlock {
    pub cidr: IpNetwork,
    /// `host:<node>` (or `virtual:<name>`); null for an unaffine block.
    #[serde(default)]
    pub affinity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_claim_time: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub allocations: Vec<Option<usize>>,
    #[serde(default, deserialize_with = "null_default")]
    pub unallocated: Vec<usize>,
    #[serde(default, deserialize_with = "null_default")]
    pub attributes: Vec<AllocationAttribute>,
    #[serde(rename = "sequenceNumber", default)]
    pub sequence_number: u64,
    #[serde(
        rename = "sequenceNumberForAllocation",
        default,
        deserialize_with = "null_default"
    )]
    pub sequence_number_for_allocation: BTreeMap<String, u64>,
    #[serde(default)]
    pub deleted: bool,
    /// Deprecated form of `affinity` (`<node>`), only read.
    #[serde(
        rename = "hostAffinity",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub host_affinity: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A block whose stored JSON violates the invariants (we refuse to write on top of it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt block {cidr}: {reason}")]
pub struct CorruptBlock {
    pub cidr: String,
    pub reason: String,
}

/// One address taken from a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub ordinal: usize,
    pub ip: IpAddr,
}

fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl AllocationBlock {
    /// A fresh, empty block affine to `affinity` (`host:<node>`), as Calico creates it:
    /// every ordinal free in ascending order, `sequenceNumber` = creation time in ns so that a
    /// re-created block never repeats sequence numbers.
    pub fn new(
        cidr: IpNetwork,
        affinity: Option<String>,
        claim_time: Option<String>,
        seq: u64,
    ) -> Self {
        let n = Self::size_of(&cidr);
        AllocationBlock {
            cidr,
            affinity,
            affinity_claim_time: claim_time,
            allocations: vec![None; n],
            unallocated: (0..n).collect(),
            attributes: Vec::new(),
            sequence_number: seq,
            sequence_number_for_allocation: BTreeMap::new(),
            deleted: false,
            host_affinity: None,
            extra: Map::new(),
        }
    }

    /// Number of addresses in a block CIDR (blocks are at most /20 resp. /116 → ≤ 4096; larger
    /// prefixes are clamped to keep memory bounded — such blocks fail [`Self::check`]).
    pub fn size_of(cidr: &IpNetwork) -> usize {
        let bits = match cidr {
            IpNetwork::V4(n) => 32 - u32::from(n.prefix()),
            IpNetwork::V6(n) => 128 - u32::from(n.prefix()),
        };
        1usize << bits.min(16)
    }

    /// Parse and validate a stored value.
    pub fn from_json(s: &str) -> Result<Self, CorruptBlock> {
        let b: AllocationBlock = serde_json::from_str(s).map_err(|e| CorruptBlock {
            cidr: "?".into(),
            reason: e.to_string(),
        })?;
        b.check()?;
        Ok(b)
    }

    /// Serialise for storage.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The node this block is affine to (`host:<node>`, or legacy `hostAffinity`).
    pub fn host(&self) -> Option<&str> {
        match &self.affinity {
            Some(a) => a.strip_prefix(AFFINITY_HOST_PREFIX),
            None => self.host_affinity.as_deref(),
        }
    }

    /// Whether the block is affine to node `host`.
    pub fn is_affine_to(&self, host: &str) -> bool {
        self.host() == Some(host)
    }

    /// Whether the block has any affinity at all.
    pub fn has_affinity(&self) -> bool {
        self.affinity.is_some() || self.host_affinity.is_some()
    }

    /// Address at `ordinal`.
    pub fn ordinal_to_ip(&self, ordinal: usize) -> IpAddr {
        let base = ip_to_u128(self.cidr.network());
        let v = base + ordinal as u128;
        match self.cidr {
            IpNetwork::V4(_) => IpAddr::V4((v as u32).into()),
            IpNetwork::V6(_) => IpAddr::V6(v.into()),
        }
    }

    /// Ordinal of `ip`, if inside this block.
    pub fn ip_to_ordinal(&self, ip: IpAddr) -> Option<usize> {
        if !self.cidr.contains(ip) {
            return None;
        }
        let o = ip_to_u128(ip) - ip_to_u128(self.cidr.network());
        usize::try_from(o)
            .ok()
            .filter(|o| *o < self.allocations.len())
    }

    /// Number of free addresses.
    pub fn free_count(&self) -> usize {
        self.unallocated.len()
    }

    /// Number of allocated addresses (cooling-down ones included: they are not free yet).
    pub fn allocated_count(&self) -> usize {
        self.allocations.iter().filter(|a| a.is_some()).count()
    }

    /// Whether nothing is allocated. A cooling-down address counts as allocated, as in
    /// Calico's `empty()`: the block (and the address's cooldown) must survive.
    pub fn is_empty(&self) -> bool {
        self.allocations.iter().all(|a| a.is_none())
    }

    /// Whether `ordinal` is cooling down after a release (neither held nor free).
    pub fn is_cooling(&self, ordinal: usize) -> bool {
        self.cooling_attribute(ordinal).is_some()
    }

    fn cooling_attribute(&self, ordinal: usize) -> Option<&AllocationAttribute> {
        let idx = (*self.allocations.get(ordinal)?)?;
        self.attributes.get(idx).filter(|a| a.released_at.is_some())
    }

    /// Whether `ordinal` is held by an allocation (allocated and not cooling down).
    pub fn is_held(&self, ordinal: usize) -> bool {
        self.allocations.get(ordinal).is_some_and(Option::is_some) && !self.is_cooling(ordinal)
    }

    /// Verify the structural invariants (see module docs).
    pub fn check(&self) -> Result<(), CorruptBlock> {
        let bad = |reason: String| CorruptBlock {
            cidr: self.cidr.to_string(),
            reason,
        };
        let n = Self::size_of(&self.cidr);
        if self.cidr.network() != self.cidr.ip() {
            return Err(bad("cidr is not a network address".into()));
        }
        if self.allocations.len() != n {
            return Err(bad(format!(
                "{} allocations for a block of {n}",
                self.allocations.len()
            )));
        }
        let mut seen = BTreeSet::new();
        for &o in &self.unallocated {
            if o >= n || self.allocations[o].is_some() || !seen.insert(o) {
                return Err(bad(format!("bad unallocated ordinal {o}")));
            }
        }
        for (o, a) in self.allocations.iter().enumerate() {
            match a {
                Some(i) if *i >= self.attributes.len() => {
                    return Err(bad(format!("ordinal {o} points at missing attribute {i}")))
                }
                // A cooling-down/foreign-state ordinal is neither free nor pointing at
                // attributes we understand; the only thing we require is accounting.
                None if !seen.contains(&o) => {
                    return Err(bad(format!("ordinal {o} neither allocated nor free")))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Take up to `num` free ordinals from the head of the free list (FIFO: the longest-free
    /// address first), recording `handle` + `attrs` in one (deduplicated) attribute entry and
    /// the per-ordinal sequence number. Does not touch `sequence_number` (the writer bumps it).
    pub fn auto_assign(
        &mut self,
        num: usize,
        handle: &str,
        attrs: &BTreeMap<String, String>,
    ) -> Vec<Taken> {
        self.auto_assign_skipping(num, handle, attrs, |_| false)
    }

    /// [`Self::auto_assign`] passing over free addresses `skip` matches (IPReservations): they
    /// stay in the free list at their place, as in Calico's block `autoAssign`.
    pub fn auto_assign_skipping(
        &mut self,
        num: usize,
        handle: &str,
        attrs: &BTreeMap<String, String>,
        skip: impl Fn(IpAddr) -> bool,
    ) -> Vec<Taken> {
        let mut ordinals = Vec::new();
        let mut kept = Vec::with_capacity(self.unallocated.len());
        for &o in &self.unallocated {
            if ordinals.len() < num && !skip(self.ordinal_to_ip(o)) {
                ordinals.push(o);
            } else {
                kept.push(o);
            }
        }
        if ordinals.is_empty() {
            return Vec::new();
        }
        self.unallocated = kept;
        let idx = self.attribute_index(handle, attrs);
        ordinals
            .into_iter()
            .map(|o| {
                self.mark_allocated(o, idx);
                Taken {
                    ordinal: o,
                    ip: self.ordinal_to_ip(o),
                }
            })
            .collect()
    }

    /// Allocate one specific address. `Ok(false)` if it is already allocated.
    pub fn assign_ordinal(
        &mut self,
        ordinal: usize,
        handle: &str,
        attrs: &BTreeMap<String, String>,
    ) -> bool {
        let Some(pos) = self.unallocated.iter().position(|&o| o == ordinal) else {
            return false;
        };
        self.unallocated.remove(pos);
        let idx = self.attribute_index(handle, attrs);
        self.mark_allocated(ordinal, idx);
        true
    }

    fn mark_allocated(&mut self, o: usize, attr_idx: usize) {
        self.allocations[o] = Some(attr_idx);
        self.sequence_number_for_allocation
            .insert(o.to_string(), self.sequence_number);
    }

    fn attribute_index(&mut self, handle: &str, attrs: &BTreeMap<String, String>) -> usize {
        let existing = self.attributes.iter().position(|a| {
            a.handle_id.as_deref() == Some(handle) && &a.secondary == attrs && a.extra.is_empty()
        });
        existing.unwrap_or_else(|| {
            self.attributes.push(AllocationAttribute {
                handle_id: Some(handle.to_string()),
                secondary: attrs.clone(),
                released_at: None,
                extra: Map::new(),
            });
            self.attributes.len() - 1
        })
    }

    /// Attribute of a held ordinal (`None` when free or cooling down).
    pub fn attribute_of(&self, ordinal: usize) -> Option<&AllocationAttribute> {
        let idx = (*self.allocations.get(ordinal)?)?;
        self.attributes.get(idx).filter(|a| a.released_at.is_none())
    }

    /// Handle of an allocated ordinal.
    pub fn handle_of(&self, ordinal: usize) -> Option<&str> {
        self.attribute_of(ordinal)?.handle_id.as_deref()
    }

    /// Allocated ordinals held by `handle`.
    pub fn ordinals_of_handle(&self, handle: &str) -> Vec<usize> {
        (0..self.allocations.len())
            .filter(|&o| self.handle_of(o) == Some(handle))
            .collect()
    }

    /// Sequence number recorded when `ordinal` was allocated.
    pub fn sequence_number_of(&self, ordinal: usize) -> Option<u64> {
        self.sequence_number_for_allocation
            .get(&ordinal.to_string())
            .copied()
    }

    /// Release the given held ordinals as Calico does: each points at one new attribute
    /// `{releasedAt: now}` (cooling down), then [`Self::garbage_collect`] frees whatever has
    /// cooled for `cooldown_secs` (≤ 0: at once). With `stamp_sequence`, the per-ordinal
    /// sequence number is set to the block's (Calico's release by address does, by handle does
    /// not). Returns, per released ordinal, the handle it had.
    pub fn release_ordinals(
        &mut self,
        ordinals: &[usize],
        now: SystemTime,
        cooldown_secs: i64,
        stamp_sequence: bool,
    ) -> Vec<(usize, Option<String>)> {
        let mut out = Vec::new();
        for &o in ordinals {
            if !self.is_held(o) || out.iter().any(|(p, _)| *p == o) {
                continue;
            }
            out.push((o, self.handle_of(o).map(str::to_string)));
        }
        if out.is_empty() {
            return out;
        }
        self.attributes.push(AllocationAttribute {
            released_at: Some(clock::rfc3339(now)),
            ..Default::default()
        });
        let cooling = self.attributes.len() - 1;
        for (o, _) in &out {
            self.allocations[*o] = Some(cooling);
            if stamp_sequence {
                self.sequence_number_for_allocation
                    .insert(o.to_string(), self.sequence_number);
            }
        }
        self.garbage_collect(now, cooldown_secs);
        out
    }

    /// Calico's `garbageCollect`: every cooling ordinal released more than `cooldown_secs`
    /// before `now` (any, when ≤ 0) goes to the free-list tail in ordinal order, loses its
    /// sequence number; unreferenced attributes are dropped. Returns whether anything changed.
    pub fn garbage_collect(&mut self, now: SystemTime, cooldown_secs: i64) -> bool {
        let before_attrs = self.attributes.len();
        let mut freed = false;
        for o in 0..self.allocations.len() {
            let Some(a) = self.cooling_attribute(o) else {
                continue;
            };
            if !cooled(a.released_at.as_deref(), now, cooldown_secs) {
                continue;
            }
            self.allocations[o] = None;
            self.unallocated.push(o);
            self.sequence_number_for_allocation.remove(&o.to_string());
            freed = true;
        }
        self.compact_attributes();
        freed || self.attributes.len() != before_attrs
    }

    /// Remove attribute entries no allocation references and re-index the rest.
    fn compact_attributes(&mut self) {
        let used: BTreeSet<usize> = self.allocations.iter().flatten().copied().collect();
        let mut remap = vec![None; self.attributes.len()];
        let mut kept = Vec::with_capacity(used.len());
        for (i, a) in std::mem::take(&mut self.attributes).into_iter().enumerate() {
            if used.contains(&i) {
                remap[i] = Some(kept.len());
                kept.push(a);
            }
        }
        self.attributes = kept;
        for a in self.allocations.iter_mut().flatten() {
            if let Some(Some(n)) = remap.get(*a) {
                *a = *n;
            }
        }
    }
}

/// Whether an address released at `released_at` has finished a `cooldown_secs` cooldown.
/// An unreadable time cannot be waited out, so it counts as cooled (the address is not lost).
fn cooled(released_at: Option<&str>, now: SystemTime, cooldown_secs: i64) -> bool {
    if cooldown_secs <= 0 {
        return true;
    }
    let Some(t) = released_at.and_then(clock::parse_rfc3339) else {
        log::warn!("unreadable releasedAt {released_at:?}: treating the address as cooled down");
        return true;
    };
    t + Duration::from_secs(cooldown_secs.unsigned_abs()) < now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pod: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("pod".to_string(), pod.to_string())])
    }

    #[test]
    fn new_block_json_shape() {
        let b = AllocationBlock::new(
            "10.244.1.0/30".parse().unwrap(),
            Some("host:node1".into()),
            Some("2026-08-01T10:00:00Z".into()),
            7,
        );
        assert_eq!(
            b.to_json(),
            r#"{"cidr":"10.244.1.0/30","affinity":"host:node1","affinity_claim_time":"2026-08-01T10:00:00Z","allocations":[null,null,null,null],"unallocated":[0,1,2,3],"attributes":[],"sequenceNumber":7,"sequenceNumberForAllocation":{},"deleted":false}"#
        );
    }

    #[test]
    fn parses_calico_example_and_preserves_unknown_fields() {
        let s = r#"{"cidr":"10.244.1.0/30","affinity":"host:node1","strictAffinity":false,
          "allocations":[0,null,null,null],"unallocated":[1,2,3],
          "attributes":[{"handle_id":"k8s-pod-network.3f1c","secondary":{"namespace":"default","node":"node1","pod":"nginx","timestamp":"t"}}],
          "sequenceNumber":1754042400000000001,"sequenceNumberForAllocation":{"0":1754042400000000000},"deleted":false}"#;
        let b = AllocationBlock::from_json(s).unwrap();
        assert_eq!(b.host(), Some("node1"));
        assert_eq!(b.handle_of(0), Some("k8s-pod-network.3f1c"));
        assert_eq!(b.sequence_number_of(0), Some(1_754_042_400_000_000_000));
        assert!(b.to_json().contains(r#""strictAffinity":false"#));
        // Nulls where Go wrote nil slices/maps.
        let s = r#"{"cidr":"10.0.0.0/31","affinity":null,"allocations":[null,null],"unallocated":[0,1],"attributes":null,"sequenceNumber":0,"sequenceNumberForAllocation":null,"deleted":false}"#;
        let b = AllocationBlock::from_json(s).unwrap();
        assert!(b.attributes.is_empty() && !b.has_affinity());
    }

    #[test]
    fn rejects_corrupt_blocks() {
        for s in [
            r#"{"cidr":"10.0.0.0/31","allocations":[null],"unallocated":[0]}"#,
            r#"{"cidr":"10.0.0.0/31","allocations":[null,null],"unallocated":[0,0]}"#,
            r#"{"cidr":"10.0.0.0/31","allocations":[0,null],"unallocated":[1]}"#,
            r#"{"cidr":"10.0.0.1/31","allocations":[null,null],"unallocated":[0,1]}"#,
            r#"{"cidr":"10.0.0.0/31","allocations":[null,null],"unallocated":[0]}"#,
        ] {
            assert!(AllocationBlock::from_json(s).is_err(), "{s}");
        }
    }

    #[test]
    fn assign_release_fifo_and_attribute_compaction() {
        let mut b = AllocationBlock::new("fd00::/126".parse().unwrap(), None, None, 5);
        let t = b.auto_assign(2, "h1", &attrs("a"));
        assert_eq!(t.iter().map(|t| t.ordinal).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(t[1].ip, "fd00::1".parse::<IpAddr>().unwrap());
        assert_eq!(b.attributes.len(), 1, "one call shares one attribute entry");
        b.auto_assign(1, "h2", &attrs("b"));
        b.auto_assign(1, "h1", &attrs("a"));
        assert_eq!(b.attributes.len(), 2, "identical attrs are deduplicated");
        assert_eq!(b.free_count(), 0);
        assert!(b.auto_assign(1, "h3", &attrs("c")).is_empty());

        let freed = b.release_ordinals(&b.ordinals_of_handle("h1"), SystemTime::now(), 0, false);
        assert_eq!(freed.len(), 3);
        assert_eq!(b.unallocated, vec![0, 1, 3]);
        assert_eq!(b.attributes.len(), 1);
        assert_eq!(b.handle_of(2), Some("h2"));
        b.check().unwrap();
        assert!(b.assign_ordinal(1, "h4", &attrs("d")));
        assert!(!b.assign_ordinal(1, "h5", &attrs("e")));
        assert_eq!(b.unallocated, vec![0, 3]);
        b.check().unwrap();
    }

    #[test]
    fn ordinal_ip_mapping() {
        let b = AllocationBlock::new("10.244.1.64/26".parse().unwrap(), None, None, 0);
        assert_eq!(b.ordinal_to_ip(5), "10.244.1.69".parse::<IpAddr>().unwrap());
        assert_eq!(b.ip_to_ordinal("10.244.1.127".parse().unwrap()), Some(63));
        assert_eq!(b.ip_to_ordinal("10.244.1.128".parse().unwrap()), None);
    }
}
