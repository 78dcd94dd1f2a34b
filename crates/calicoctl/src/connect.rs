//! Opening the datastore from calicoctl's environment (`DATASTORE_TYPE`, `ETCD_*`,
//! `KUBECONFIG`, `DATASTORE_PATH`, each also with a `CALICO_` prefix), through the shared
//! `datastore` crate so calicoctl and the plugins select datastores identically
//! (default: etcdv3 at `http://127.0.0.1:2379`, like calicoctl).

use ipam::Store;

use crate::error::{CtlError, CtlResult};

/// Environment lookup (tests pass their own instead of the process environment).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Open the datastore the environment selects; also returns its description (`etcdv3
/// (http://…)`, `kubernetes (…)`, `local (…)`) for error messages.
pub fn open_store(env: Env<'_>) -> CtlResult<(Box<dyn Store>, String)> {
    let settings = datastore::DatastoreSettings::from_env(env)
        .map_err(|e| CtlError::Datastore(e.to_string()))?;
    let describe = settings.describe();
    let store =
        datastore::open(&settings).map_err(|e| CtlError::Datastore(format!("{describe}: {e}")))?;
    Ok((store, describe))
}
