//! Opening the configured datastore for one invocation and preparing it the way each kind
//! needs, plus the mapping of datastore/allocator failures to CNI errors.
//!
//! * local: zero setup — an empty store is seeded with the default pool(s) and
//!   ClusterInformation (`ipam_store_local::init`); a missing Node object is treated as a node
//!   without labels (there is no calico-node to create one).
//! * etcdv3 / kubernetes: contents are managed by calico-node or `calicoctl datastore init`;
//!   the plugin only registers its own Node object when it is missing, and says clearly what
//!   to do when there are no pools at all.
//!
//! Every "cannot reach the datastore" outcome is CNI code 11 (try again later). The whole
//! invocation is bounded by [`CALL_DEADLINE`], as Calico bounds its IPAM work by a 90 s
//! context.

use std::time::Instant;

use cni::{CniError, Context};
use datastore::DatastoreKind;
use ipam::model::Node;
use ipam::{IpVersion, Ipam, IpamError, IpamOptions, Key, ResourceKind, Store, StoreError};

use crate::config::IpamConf;

/// Budget of one calico-ipam invocation (Calico's IPAM context timeout), shared with the
/// `calico` plugin's own datastore calls.
pub use datastore::CALL_DEADLINE;

/// The store for `conf`, opened (etcd connections are lazy: unreachable shows up on first
/// use); no datastore call runs past `started + CALL_DEADLINE`.
pub fn open(conf: &IpamConf, started: Instant) -> Result<Box<dyn Store>, CniError> {
    Ok(datastore::open_until(
        &conf.datastore,
        started + CALL_DEADLINE,
    )?)
}

/// Allocator options for the configured datastore kind.
pub fn options(conf: &IpamConf) -> IpamOptions {
    IpamOptions {
        require_node: conf.datastore.kind != DatastoreKind::Local,
        ..IpamOptions::default()
    }
}

/// Seed an empty local store (no-op for other kinds and for an initialised store).
pub fn initialise(store: &dyn Store, conf: &IpamConf) -> Result<(), CniError> {
    if conf.datastore.kind != DatastoreKind::Local {
        return Ok(());
    }
    ipam_store_local::init::ensure_initialised(store, &conf.local_defaults)
        .map(|_| ())
        .context("failed to initialise the local datastore")
}

/// Create this node's Calico Node object (Calico's allocator needs it for pool node
/// selectors). Create-if-absent: a concurrent creator or calico-node winning is fine.
pub fn register_node(store: &dyn Store, node: &str) -> Result<(), CniError> {
    let mut n = Node::new("Node", node, Default::default());
    n.metadata.creation_timestamp = Some(ipam::clock::rfc3339(std::time::SystemTime::now()));
    match store.create(&Key::resource(ResourceKind::Node, node), &n.to_json()) {
        Ok(_) => {
            log::info!("registered Node {node} in the datastore");
            Ok(())
        }
        Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(CniError::from(e).context(format_args!("failed to register Node {node}"))),
    }
}

/// When an assignment found no pool: if the datastore has no pools at all (and is not the
/// self-initialising local store), the operator has not set it up yet — say so.
pub fn explain_no_pools(ipam: &Ipam<'_>, conf: &IpamConf, err: IpamError) -> CniError {
    if conf.datastore.kind != DatastoreKind::Local
        && matches!(err, IpamError::NoPools(_))
        && ipam.list_pools().is_ok_and(|p| p.is_empty())
    {
        return CniError::generic(format!(
            "the {} datastore has no IP pools: run `calicoctl datastore init` (or install \
             Calico) before using calico-ipam",
            conf.datastore.describe()
        ));
    }
    CniError::from(err).context("failed to assign IP addresses")
}

/// `Assigned 0 out of 1 requested IPv4 addresses; …` prefixed the way Calico prints it.
pub fn shortfall(version: IpVersion, e: IpamError) -> CniError {
    CniError::from(e).context(format_args!(
        "failed to request IPv{} addresses",
        version.number()
    ))
}
