//! host-local IPAM, compatible with upstream's on-disk format so the Go plugin and this one can
//! share `/var/lib/cni/networks` during upgrades.
//!
//! Owns: configuration parsing ([`config`]), range canonicalisation ([`range`]), the file store
//! with its flock ([`store`]), round-robin allocation ([`allocator`]), resolv.conf parsing
//! ([`dns`]) and the ADD/DEL/CHECK operations ([`ops`]). The CNI protocol glue ([`HostLocal`])
//! only translates between these types and the `cni` crate.
//!
//! Must NOT: resolve calico's `usePodCidr` placeholders (calico substitutes them before
//! delegating; we reject them), touch network interfaces, or change the on-disk format
//! (file per address containing `<id>\r\n<ifname>`, `last_reserved_ip.<set>`, `lock`).

pub mod allocator;
pub mod config;
pub mod dns;
pub mod error;
mod ip;
pub mod ops;
mod plugin;
pub mod range;
pub mod store;

pub use allocator::Allocation;
pub use config::IpamConfig;
pub use error::{Error, Result};
pub use ops::{add, check, del, gc, AddOutcome};
pub use plugin::HostLocal;
