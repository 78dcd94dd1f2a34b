//! Opening the datastore from calicoctl's environment (`DATASTORE_TYPE`, `ETCD_*`,
//! `KUBECONFIG`, `K8S_*`, `CALICO_API_GROUP`, `DATASTORE_PATH`, each also with a `CALICO_`
//! prefix), through the shared `datastore` crate so calicoctl and the plugins select
//! datastores identically (Calico's default: etcdv3 when `ETCD_ENDPOINTS` is set, else
//! kubernetes).

use ipam::Store;

use crate::error::{CtlError, CtlResult};

/// Environment lookup (tests pass their own instead of the process environment).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Open the datastore the environment selects.
pub fn open_store(env: Env<'_>) -> CtlResult<Box<dyn Store>> {
    let settings = datastore::DatastoreSettings::from_env(env)
        .map_err(|e| CtlError::Datastore(e.to_string()))?;
    datastore::open(&settings)
        .map_err(|e| CtlError::Datastore(format!("{}: {e}", settings.describe())))
}
