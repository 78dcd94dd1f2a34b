//! Stored value shapes, serialising exactly as Calico's etcdv3 backend stores them.
//!
//! Unknown fields are preserved (`extra`) so a read-modify-write by us never drops data written
//! by a newer Calico.

mod block;
mod resources;

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

pub use block::{AllocationAttribute, AllocationBlock, CorruptBlock, Taken};
pub use resources::{
    ClusterInformation, ClusterInformationSpec, IpPool, IpPoolSpec, IpReservation,
    IpReservationSpec, Node, ObjectMeta, Resource, API_VERSION,
};

/// Prefix of a host block affinity (`host:<node>`).
pub const AFFINITY_HOST_PREFIX: &str = "host:";

/// Deserialize JSON `null` (Go nil slice/map) as the type's default.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Affinity state (`pending` while a claim is in flight; only `confirmed` means ownership).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AffinityState {
    /// Legacy value without a state: treated as confirmed.
    #[default]
    #[serde(rename = "")]
    Legacy,
    #[serde(rename = "pending")]
    Pending,
    #[serde(rename = "confirmed")]
    Confirmed,
    #[serde(rename = "pendingDeletion")]
    PendingDeletion,
}

impl AffinityState {
    /// Whether this state means the host owns the block.
    pub fn is_confirmed(self) -> bool {
        matches!(self, AffinityState::Confirmed | AffinityState::Legacy)
    }
}

/// Value at `/calico/ipam/v2/host/<node>/ipv4/block/<cidr>`: `{"state":"confirmed","deleted":false}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BlockAffinity {
    #[serde(default)]
    pub state: AffinityState,
    #[serde(default)]
    pub deleted: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl BlockAffinity {
    /// An affinity in `state`.
    pub fn new(state: AffinityState) -> Self {
        BlockAffinity {
            state,
            deleted: false,
            extra: Map::new(),
        }
    }

    /// Parse; an empty value is a legacy (confirmed) affinity.
    pub fn from_json(s: &str) -> serde_json::Result<Self> {
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_json::from_str(s)
    }
}

/// Value at `/calico/ipam/v2/handle/<id>`: `{"block":{"10.244.1.0/26":1},"deleted":false}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct IpamHandle {
    #[serde(default, deserialize_with = "null_default")]
    pub block: BTreeMap<String, u64>,
    #[serde(default)]
    pub deleted: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Value at `/calico/ipam/v2/config`. All keys are omitempty in Calico; note that when the
/// object exists, an absent `auto_allocate_blocks` therefore reads as `false` (Go zero value),
/// while a missing object means the defaults of [`IpamConfig::default_when_absent`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct IpamConfig {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict_affinity: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_allocate_blocks: bool,
    #[serde(rename = "maxBlocksPerHost", default, skip_serializing_if = "is_zero")]
    pub max_blocks_per_host: u32,
    /// Seconds a released address cools down before it is free again (Calico's
    /// `ipCooldownSeconds`; 0 = at once, still FIFO).
    #[serde(
        rename = "ipCooldownSeconds",
        default,
        skip_serializing_if = "is_zero_i64"
    )]
    pub ip_cooldown_seconds: i64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

/// Per-host block cap when none is configured (Calico's default).
pub const DEFAULT_MAX_BLOCKS_PER_HOST: u32 = 20;

impl IpamConfig {
    /// Settings used when no config object is stored.
    pub fn default_when_absent() -> Self {
        IpamConfig {
            strict_affinity: false,
            auto_allocate_blocks: true,
            max_blocks_per_host: 0,
            ip_cooldown_seconds: 0,
            extra: Map::new(),
        }
    }

    /// Calico's write-time validation.
    pub fn validate(&self) -> Result<(), InvalidIpamConfig> {
        if !self.strict_affinity && !self.auto_allocate_blocks {
            return Err(InvalidIpamConfig::NoAffinityNorAutoAllocate);
        }
        if self.max_blocks_per_host > 0 && !self.strict_affinity {
            return Err(InvalidIpamConfig::BlockLimitWithoutStrictAffinity);
        }
        Ok(())
    }

    /// The effective per-host block cap given an optional per-request cap (0 = unset).
    pub fn effective_block_cap(&self, request: u32) -> u32 {
        match (request, self.max_blocks_per_host) {
            (0, 0) => DEFAULT_MAX_BLOCKS_PER_HOST,
            (r, 0) => r,
            (0, c) => c,
            (r, c) => r.min(c),
        }
    }
}

/// An [`IpamConfig`] Calico refuses to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidIpamConfig {
    #[error("Cannot disable 'StrictAffinity' and 'AutoAllocateBlocks' at the same time")]
    NoAffinityNorAutoAllocate,
    #[error("MaxBlocksPerHost requires StrictAffinity to be enabled")]
    BlockLimitWithoutStrictAffinity,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_shapes() {
        let a = BlockAffinity::new(AffinityState::Confirmed);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"state":"confirmed","deleted":false}"#
        );
        assert_eq!(
            BlockAffinity::from_json("").unwrap().state,
            AffinityState::Legacy
        );
        assert!(BlockAffinity::from_json("{}").unwrap().state.is_confirmed());
        let p = BlockAffinity::from_json(r#"{"state":"pendingDeletion","deleted":false}"#).unwrap();
        assert!(!p.state.is_confirmed());
    }

    #[test]
    fn handle_shape() {
        let h = IpamHandle {
            block: BTreeMap::from([("10.244.1.0/26".to_string(), 1)]),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"{"block":{"10.244.1.0/26":1},"deleted":false}"#
        );
    }

    #[test]
    fn config_omitempty_and_validation() {
        let c = IpamConfig::default_when_absent();
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"auto_allocate_blocks":true}"#
        );
        let stored: IpamConfig = serde_json::from_str(r#"{"strict_affinity":true}"#).unwrap();
        assert!(
            !stored.auto_allocate_blocks,
            "Go zero value when key absent"
        );
        assert!(stored.validate().is_ok());
        let bad = IpamConfig {
            strict_affinity: false,
            auto_allocate_blocks: false,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        assert_eq!(c.effective_block_cap(0), 20);
        assert_eq!(c.effective_block_cap(3), 3);
        let capped = IpamConfig {
            max_blocks_per_host: 2,
            ..c
        };
        assert_eq!(capped.effective_block_cap(5), 2);
        assert_eq!(capped.effective_block_cap(0), 2);
    }
}
