//! Allocator errors. Messages reproduce Calico's where the plugin surfaces them to users.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::store::StoreError;

/// Everything the allocator can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// Datastore failure (see [`IpamError::is_unavailable`]).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Caller passed something unusable (bad host name, handle, family mismatch, ...).
    #[error(transparent)]
    InvalidArgument(#[from] InvalidArgument),
    /// A stored value could not be parsed or violates invariants; we never write over it.
    #[error("corrupt datastore value at {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// No pool qualifies (`cannot find a qualified ippool`, `no configured Calico pools for
    /// node …`, `the given pool (…) does not exist, or is not enabled`).
    #[error(transparent)]
    NoPools(#[from] NoPools),
    /// Fewer addresses available than requested (nothing stays allocated for this request):
    /// `Assigned 0 out of 1 requested IPv4 addresses; <reasons>`.
    #[error("{message}")]
    Exhausted {
        version: crate::keys::IpVersion,
        message: String,
    },
    /// `AssignIP` of an address outside every enabled pool.
    #[error("The provided IP address is not in a configured pool: {0}")]
    NotInPool(IpAddr),
    /// `AssignIP` of an address that is already allocated.
    #[error("Address already assigned in block: {0}")]
    AlreadyAssigned(IpAddr),
    /// `AssignIP` into a block affine to another host while strict affinity is on.
    #[error("block {0} is not affine to this host and strict affinity is enabled")]
    NotAffine(String),
    /// Release by handle of an unknown handle.
    #[error("resource does not exist: IPAMHandle({0})")]
    HandleNotFound(String),
    /// The Calico Node object for the host is missing.
    #[error("failed to get node for host {0}: resource does not exist")]
    NodeNotFound(String),
    /// A release was refused because the address now belongs to another handle / generation.
    #[error("release of {ip} refused: {reason}")]
    ReleaseRefused { ip: IpAddr, reason: String },
    /// A pool's selector does not parse: the request fails (as Calico's) instead of silently
    /// leaving the pool out.
    #[error("IPPool {pool} has an invalid {field} {selector:?}: {source}")]
    InvalidPoolSelector {
        pool: String,
        field: &'static str,
        selector: String,
        #[source]
        source: crate::selector::SelectorError,
    },
    /// The host owns `maxBlocksPerHost` blocks, all full, and needs another: Calico fails the
    /// request here (no borrowing from other hosts' blocks).
    #[error("cannot allocate new block due to per host block limit")]
    BlockLimit {
        version: crate::keys::IpVersion,
        limit: u32,
    },
    /// CAS retry budget exhausted.
    #[error("Max retries hit - excessive concurrent IPAM requests")]
    MaxRetries,
}

/// Which argument is unusable and why (CNI code 7 through [`IpamError::InvalidArgument`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidArgument {
    #[error("invalid host name {host:?}")]
    HostName { host: String },
    #[error("invalid handle ID {handle:?}")]
    Handle { handle: String },
    /// An `ipv4_pools`/`ipv6_pools` entry that is neither a CIDR nor a pool name.
    #[error("error parsing pool \"{pool}\": no pool with this name or CIDR")]
    UnknownPool { pool: String },
    /// A pool of the other IP family in `ipv4_pools`/`ipv6_pools`.
    #[error("\"{ip}\" isn't a IPv{version} address")]
    PoolFamily { ip: IpAddr, version: u8 },
    #[error("pool {name}: invalid cidr or blockSize")]
    PoolCidr { name: String },
    #[error("invalid pool name {name:?}")]
    PoolName { name: String },
    #[error("IPPool({name}) CIDR overlaps with IPPool({other}) CIDR {other_cidr}")]
    PoolOverlap {
        name: String,
        other: String,
        other_cidr: IpNetwork,
    },
    /// `AssignIP` without an address.
    #[error("no IP address given")]
    NoAddress,
    /// An address no block of its pool can hold.
    #[error("bad address {ip}")]
    BadAddress { ip: IpAddr },
    #[error("{ip} not in block {block}")]
    NotInBlock { ip: IpAddr, block: IpNetwork },
    /// An IPAM configuration Calico refuses to write.
    #[error(transparent)]
    Config(#[from] crate::model::InvalidIpamConfig),
}

/// Why no pool can serve a request (CNI code 999 through [`IpamError::NoPools`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoPools {
    /// No enabled pool of the family.
    #[error("cannot find a qualified ippool")]
    NoneEnabled,
    #[error("the given pool ({pool}) does not exist, or is not enabled")]
    RequestedNotEnabled { pool: IpNetwork },
    /// No enabled, automatic pool selects the node and the namespace.
    #[error("no configured Calico pools for node {host}")]
    NoneForNode { host: String },
    #[error("cannot find a qualified ippool, no pools match the required use ({intended_use})")]
    NoneForUse { intended_use: &'static str },
    #[error("the provided IP address is in pool {pool} which does not allow use {intended_use}")]
    UseNotAllowed {
        pool: String,
        intended_use: &'static str,
    },
    #[error("block {block} does not exist and automatic block allocation is disabled")]
    NoBlock { block: IpNetwork },
}

impl IpamError {
    /// Whether the datastore was unreachable (CNI error code 11, "try again later").
    pub fn is_unavailable(&self) -> bool {
        matches!(self, IpamError::Store(StoreError::Unavailable(_)))
    }

    pub(crate) fn corrupt(key: &crate::keys::Key, reason: impl ToString) -> Self {
        IpamError::Corrupt {
            key: key.path(),
            reason: reason.to_string(),
        }
    }
}

/// Codes a runtime can act on: 11 where retrying later can succeed (datastore down, or too
/// much concurrent IPAM work), 7 for unusable arguments from the config, 999 otherwise.
impl cni::CniCode for IpamError {
    fn cni_code(&self) -> cni::ErrorCode {
        match self {
            IpamError::Store(e) => e.cni_code(),
            IpamError::MaxRetries => cni::ErrorCode::TryAgainLater,
            IpamError::InvalidArgument(_) => cni::ErrorCode::InvalidConfig,
            _ => cni::error::GENERIC,
        }
    }
}

/// Result alias.
pub type IpamResult<T> = Result<T, IpamError>;
