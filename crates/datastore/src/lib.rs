//! Chooses and opens the IPAM datastore: Calico's `etcdv3` or `kubernetes` (picked by
//! Calico's rule when not named: etcdv3 when etcd endpoints are given, else kubernetes), or
//! our embedded `local` SQLite store (only when asked for).
//!
//! Owns: reading the datastore selection the way Calico does — from a `calico`/`calico-ipam`
//! network config (`datastore_type`, `datastore_path`, `etcd_*`, `kubernetes.*`, `policy.k8s_*`,
//! `calico_api_group`; the config wins over the `DATASTORE_TYPE`/`ETCD_*`/`KUBECONFIG`/`K8S_*`
//! environment, `CALICO_`-prefixed or not) or from calicoctl's environment alone — into
//! [`DatastoreSettings`], and turning those into a boxed [`ipam::Store`] with [`open`]; and
//! the node name the plugins work for ([`node_name`]), which keys their datastore entries.
//!
//! Must NOT: implement IPAM logic (the `ipam` crate), initialise or modify datastore contents
//! (callers decide: the plugin seeds an empty local store, `calicoctl datastore init` the
//! others), or know about CNI verbs. The Kubernetes backend lives in `kdd` (cargo feature
//! `kubernetes`); without it, `datastore_type: kubernetes` is a clear error.

mod error;
#[cfg(feature = "kubernetes")]
mod kdd;
#[cfg(feature = "kubernetes")]
pub use kdd::{client_options as kube_client_options, kube_api_group};
mod node;
mod open;
mod settings;

pub use error::DatastoreError;
pub use ipam_store_etcd::EtcdConfig;
pub use node::{node_name, HostnameError, NodeNameSources, DEFAULT_NODENAME_FILE};
pub use open::{open, open_until, CALL_DEADLINE};
pub use settings::{
    ApiGroup, DatastoreKind, DatastoreSettings, KubeSettings, DEFAULT_ETCD_ENDPOINT,
    DEFAULT_LOCAL_PATH, SERVICE_ACCOUNT_DIR,
};
