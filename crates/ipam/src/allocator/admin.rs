//! Read-only views for admin tools (`calicoctl ipam show`-style) and garbage collection.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::Ipam;
use crate::blockgen;
use crate::error::IpamResult;
use crate::keys::IpVersion;

/// One block's occupancy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    pub cidr: IpNetwork,
    /// `host:<node>` or `None` for an unaffine block.
    pub affinity: Option<String>,
    pub allocated: usize,
    pub free: usize,
    pub size: usize,
}

/// One allocated address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationInfo {
    pub ip: IpAddr,
    pub block: IpNetwork,
    pub handle_id: Option<String>,
    pub attrs: BTreeMap<String, String>,
    pub sequence_number: Option<u64>,
}

/// One pool's occupancy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUsage {
    pub name: String,
    pub cidr: IpNetwork,
    pub disabled: bool,
    /// Addresses in the pool (saturating).
    pub capacity: u128,
    /// Blocks that exist inside the pool / could exist.
    pub blocks: usize,
    pub max_blocks: u128,
    pub allocated: usize,
}

impl Ipam<'_> {
    /// Every block (optionally of one family), ascending by key.
    pub fn block_infos(&self, version: Option<IpVersion>) -> IpamResult<Vec<BlockInfo>> {
        Ok(self
            .list_blocks(version)?
            .into_iter()
            .map(|b| BlockInfo {
                cidr: b.block.cidr,
                affinity: b.block.affinity.clone().or(b
                    .block
                    .host_affinity
                    .as_ref()
                    .map(|h| format!("host:{h}"))),
                allocated: b.block.allocated_count(),
                free: b.block.free_count(),
                size: b.block.allocations.len(),
            })
            .collect())
    }

    /// Every allocated address (optionally of one family).
    pub fn list_allocations(&self, version: Option<IpVersion>) -> IpamResult<Vec<AllocationInfo>> {
        let mut out = Vec::new();
        for b in self.list_blocks(version)? {
            for o in 0..b.block.allocations.len() {
                if let Some(a) = b.block.attribute_of(o) {
                    out.push(AllocationInfo {
                        ip: b.block.ordinal_to_ip(o),
                        block: b.block.cidr,
                        handle_id: a.handle_id.clone(),
                        attrs: a.secondary.clone(),
                        sequence_number: b.block.sequence_number_of(o),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Who holds `ip`, if anyone.
    pub fn get_assignment(&self, ip: IpAddr) -> IpamResult<Option<AllocationInfo>> {
        let pools = self.all_pools()?;
        let cidr = pools
            .iter()
            .find(|p| p.cidr.contains(ip))
            .and_then(|p| p.block_of(ip));
        let block = match cidr {
            Some(c) => self.get_block(c)?,
            None => self
                .list_blocks(Some(IpVersion::of(ip)))?
                .into_iter()
                .find(|b| b.block.cidr.contains(ip)),
        };
        let Some(b) = block else {
            return Ok(None);
        };
        let Some(o) = b.block.ip_to_ordinal(ip) else {
            return Ok(None);
        };
        Ok(b.block.attribute_of(o).map(|a| AllocationInfo {
            ip,
            block: b.block.cidr,
            handle_id: a.handle_id.clone(),
            attrs: a.secondary.clone(),
            sequence_number: b.block.sequence_number_of(o),
        }))
    }

    /// Occupancy per pool.
    pub fn pool_usage(&self) -> IpamResult<Vec<PoolUsage>> {
        let blocks = self.block_infos(None)?;
        Ok(self
            .all_pools()?
            .into_iter()
            .map(|p| {
                let inside: Vec<&BlockInfo> = blocks
                    .iter()
                    .filter(|b| p.cidr.contains(b.cidr.ip()))
                    .collect();
                let host_bits =
                    if p.cidr.is_ipv4() { 32 } else { 128 } - u32::from(p.cidr.prefix());
                PoolUsage {
                    name: p.name.clone(),
                    cidr: p.cidr,
                    disabled: p.pool.spec.disabled,
                    capacity: 1u128.checked_shl(host_bits).unwrap_or(u128::MAX),
                    blocks: inside.len(),
                    max_blocks: blockgen::num_blocks(&p.cidr, p.block_prefix),
                    allocated: inside.iter().map(|b| b.allocated).sum(),
                }
            })
            .collect())
    }
}
