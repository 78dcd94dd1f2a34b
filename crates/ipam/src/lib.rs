//! Calico block IPAM: data model, allocator, datastore trait.
//!
//! This crate owns Calico's IPAM *logic*: the etcdv3 value shapes and key paths
//! ([`model`], [`keys`]), the [`store::Store`] contract that backends implement, and the
//! allocator. It must NOT do I/O of its own (no files, sockets, processes, clocks beyond
//! `SystemTime::now`), know about CNI, or depend on a concrete datastore; backends live in
//! `ipam-store-*` crates.

pub mod allocator;
pub mod audit;
pub mod blockgen;
pub mod clock;
pub mod conformance;
pub mod error;
pub mod keys;
pub mod memory;
pub mod meta;
pub mod model;
pub mod reserved;
pub mod selector;
pub mod store;

pub use allocator::{
    AllocationInfo, AssignIpRequest, AutoAssignRequest, AutoAssignResult, BlockInfo, IntendedUse,
    Ipam, IpamOptions, PoolUsage, ReleaseRequest,
};
pub use error::{InvalidArgument, IpamError, IpamResult, NoPools};
pub use keys::{IpVersion, Key, ListPrefix, ResourceKind};
pub use memory::MemoryStore;
pub use reserved::Reservations;
pub use store::{
    CommitError, KvPair, Read, ReadResult, Revision, Store, StoreError, StoreResult, WriteOp,
};
