//! etcd v3 datastore for Calico IPAM.
//!
//! Owns: connecting to etcd the way Calico's `etcd_*` settings describe (endpoint list,
//! DNS SRV discovery, mutual TLS from files, bounded timeouts), a synchronous KV client with
//! compare-and-swap on `mod_revision` ([`EtcdClient`]), and the error classes the IPAM
//! layer reacts to ([`EtcdError`]; `Unavailable` maps to CNI code 11), and the
//! [`ipam::Store`] implementation on top of it ([`EtcdStore`]).
//! With feature `test-cluster`, the `test_cluster` module starts real throw-away etcd
//! clusters for tests (also usable by other crates as a dev-dependency feature).
//!
//! Must NOT: know IPAM semantics (blocks, handles, affinities are the `ipam` crate's), or
//! invent its own key layout or value encoding: keys and JSON values are Calico's etcdv3
//! ones so calicoctl/etcdctl read what we write. It never starts a multi-thread runtime.
//!
//! Build needs `protoc` (Debian `protobuf-compiler` + `libprotobuf-dev`, for etcd-client's
//! generated gRPC code). Tests need `etcd-server` (etcd), `etcd-client` (etcdctl) and
//! `openssl` (certificate generation).

mod client;
mod config;
mod error;
pub mod srv;
mod store;
#[cfg(feature = "test-cluster")]
pub mod test_cluster;
mod tls;

pub use client::{resolve_endpoints, EtcdClient, KeyValue, RangeRead};
pub use config::{parse_endpoints, EtcdConfig, DEFAULT_TIMEOUT};
pub use error::EtcdError;
pub use store::EtcdStore;
