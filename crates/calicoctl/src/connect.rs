//! Opening the datastore from calicoctl's environment (`DATASTORE_TYPE`, `ETCD_*`,
//! `KUBECONFIG`, `K8S_*`, `CALICO_API_GROUP`, `DATASTORE_PATH`, each also with a `CALICO_`
//! prefix), through the shared `datastore` crate so calicoctl and the plugins select
//! datastores identically (Calico's default: etcdv3 when `ETCD_ENDPOINTS` is set, else
//! kubernetes).

use ipam::Store;

use crate::error::{CtlError, CtlResult};

/// Environment lookup (tests pass their own instead of the process environment).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// An open datastore.
pub struct Opened {
    pub store: Box<dyn Store>,
    /// `etcdv3 (http://…)`, `kubernetes (…)`, `local (…)`, for error messages.
    pub describe: String,
    /// Whether WorkloadEndpoints are stored objects (not on Kubernetes, where they are pods).
    pub endpoints_stored: bool,
}

/// Open the datastore the environment selects.
pub fn open_store(env: Env<'_>) -> CtlResult<Opened> {
    let settings =
        datastore::DatastoreSettings::from_env(env).map_err(CtlError::DatastoreSettings)?;
    let describe = settings.describe();
    let store = datastore::open(&settings).map_err(|source| CtlError::DatastoreOpen {
        describe: describe.clone(),
        source,
    })?;
    Ok(Opened {
        store,
        describe,
        endpoints_stored: settings.kind != datastore::DatastoreKind::Kubernetes,
    })
}
