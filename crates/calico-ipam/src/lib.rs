//! The `calico-ipam` IPAM plugin: CNI glue around the `ipam` crate's allocator.
//!
//! Owns: reading calico-ipam's network config (Calico's keys and quirks), node-name
//! resolution, choosing and opening the datastore, the host-wide lock, the handle/attribute
//! conventions (`<network>.<containerID>`, `node`/`timestamp`/`pod`/`namespace`), reading the
//! pod's namespace labels from the Kubernetes API for IPPool `namespaceSelector`, and the
//! mapping of allocator outcomes to CNI results and error codes, for ADD, DEL, CHECK, GC and
//! STATUS; and `-upgrade`, Calico's host-local → calico-ipam migration of a node (`upgrade`:
//! host-local's data dir, the node's annotations and pods from the Kubernetes API).
//! Must NOT: implement allocation logic (that is `ipam`), talk to a datastore directly (only
//! through `ipam::Store`), or touch the network.

pub mod cli;
pub mod config;
pub mod datastore;
pub mod lock;
mod namespace;
pub mod node;
mod plugin;
#[cfg(feature = "kubernetes")]
pub mod upgrade;

pub use plugin::CalicoIpam;
