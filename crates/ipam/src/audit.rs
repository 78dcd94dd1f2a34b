//! Consistency audit of a whole IPAM datastore (for tests, admin tools and GC).
//!
//! Problems are split by consequence:
//! * **errors** — an address could be handed out twice or lost for good: overlapping blocks,
//!   unreadable blocks/handles, an allocation whose handle does not list its block (release by
//!   handle would miss it), allocations without a handle, two hosts confirmed on one block;
//! * **warnings** — leftovers of interrupted operations that the allocator heals by itself or
//!   that only waste an index entry: handle over-counts, pending affinities, affinities without
//!   or not matching their block, affine blocks without an affinity record.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::error::IpamResult;
use crate::keys::{Key, ListPrefix};
use crate::model::{AllocationBlock, BlockAffinity, IpamHandle};
use crate::store::Store;

/// One allocated address as seen by the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditedAllocation {
    pub block: IpNetwork,
    pub handle_id: Option<String>,
    /// The `node` attribute.
    pub node: Option<String>,
    /// The block's host affinity at audit time.
    pub block_host: Option<String>,
}

/// Audit outcome.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    pub allocations: BTreeMap<IpAddr, AuditedAllocation>,
    /// handle → block CIDR → count, as stored.
    pub handles: BTreeMap<String, BTreeMap<String, u64>>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl Audit {
    /// No errors and no warnings.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.warnings.is_empty()
    }

    /// Allocations in affine blocks whose `node` attribute is another host (only legitimate
    /// without strict affinity).
    pub fn borrowed(&self) -> Vec<IpAddr> {
        self.allocations
            .iter()
            .filter(|(_, a)| a.block_host.is_some() && a.node != a.block_host)
            .map(|(ip, _)| *ip)
            .collect()
    }
}

/// Read every block, handle and affinity and cross-check them.
pub fn audit(store: &dyn Store) -> IpamResult<Audit> {
    let mut out = Audit::default();
    let mut blocks: Vec<AllocationBlock> = Vec::new();
    for kv in store.list(&ListPrefix::Blocks { version: None })? {
        match AllocationBlock::from_json(&kv.value) {
            Ok(b) if Key::block(b.cidr) == kv.key => blocks.push(b),
            Ok(_) => out
                .errors
                .push(format!("{}: cidr does not match key", kv.key)),
            Err(e) => out.errors.push(format!("{}: {e}", kv.key)),
        }
    }
    for kv in store.list(&ListPrefix::Handles)? {
        let Key::Handle { id } = &kv.key else {
            continue;
        };
        match serde_json::from_str::<IpamHandle>(&kv.value) {
            Ok(h) => {
                if h.block.is_empty() {
                    out.warnings.push(format!("handle {id} is empty"));
                }
                out.handles.insert(id.clone(), h.block);
            }
            Err(e) => out.errors.push(format!("{}: {e}", kv.key)),
        }
    }

    let mut counted: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (i, b) in blocks.iter().enumerate() {
        for other in &blocks[..i] {
            if other.cidr.contains(b.cidr.network()) || b.cidr.contains(other.cidr.network()) {
                out.errors
                    .push(format!("blocks {} and {} overlap", other.cidr, b.cidr));
            }
        }
        for o in 0..b.allocations.len() {
            let Some(a) = b.attribute_of(o) else { continue };
            let ip = b.ordinal_to_ip(o);
            match &a.handle_id {
                Some(h) => *counted.entry((h.clone(), b.cidr.to_string())).or_default() += 1,
                None => out.errors.push(format!("{ip} allocated without a handle")),
            }
            let prev = out.allocations.insert(
                ip,
                AuditedAllocation {
                    block: b.cidr,
                    handle_id: a.handle_id.clone(),
                    node: a.secondary.get("node").cloned(),
                    block_host: b.host().map(str::to_string),
                },
            );
            if prev.is_some() {
                out.errors.push(format!("{ip} allocated twice"));
            }
        }
    }
    for ((h, cidr), n) in &counted {
        let listed = out
            .handles
            .get(h)
            .and_then(|m| m.get(cidr))
            .copied()
            .unwrap_or(0);
        if listed == 0 {
            out.errors.push(format!(
                "{n} allocations of handle {h} in {cidr} unreachable via the handle"
            ));
        } else if listed < *n {
            out.warnings
                .push(format!("handle {h} under-counts {cidr}: {listed} < {n}"));
        }
    }
    for (h, m) in &out.handles {
        for (cidr, n) in m {
            let actual = counted
                .get(&(h.clone(), cidr.clone()))
                .copied()
                .unwrap_or(0);
            if *n > actual {
                out.warnings
                    .push(format!("handle {h} over-counts {cidr}: {n} > {actual}"));
            }
        }
    }

    let mut confirmed_hosts: BTreeMap<IpNetwork, Vec<String>> = BTreeMap::new();
    let mut affinity_set = BTreeSet::new();
    for kv in store.list(&ListPrefix::Affinities {
        host: None,
        version: None,
    })? {
        let Key::Affinity { host, cidr, .. } = &kv.key else {
            continue;
        };
        let a = match BlockAffinity::from_json(&kv.value) {
            Ok(a) => a,
            Err(e) => {
                out.errors.push(format!("{}: {e}", kv.key));
                continue;
            }
        };
        if !a.state.is_confirmed() {
            out.warnings
                .push(format!("affinity {} is {:?}", kv.key, a.state));
        }
        match blocks.iter().find(|b| b.cidr == *cidr) {
            None => out
                .warnings
                .push(format!("affinity {} has no block", kv.key)),
            Some(b) if b.host() != Some(host.as_str()) => out.warnings.push(format!(
                "affinity {} but block is affine to {:?}",
                kv.key,
                b.host()
            )),
            Some(_) if a.state.is_confirmed() => {
                confirmed_hosts.entry(*cidr).or_default().push(host.clone());
            }
            Some(_) => {}
        }
        affinity_set.insert((host.clone(), *cidr));
    }
    for (cidr, hosts) in confirmed_hosts {
        if hosts.len() > 1 {
            out.errors.push(format!(
                "block {cidr} confirmed for several hosts: {hosts:?}"
            ));
        }
    }
    for b in &blocks {
        if let Some(h) = b.host() {
            if !affinity_set.contains(&(h.to_string(), b.cidr)) {
                out.warnings.push(format!(
                    "block {} affine to {h} has no affinity record",
                    b.cidr
                ));
            }
        }
    }
    Ok(out)
}
