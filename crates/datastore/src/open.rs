//! [`open`]: settings → boxed [`ipam::Store`].

use ipam::Store;

use crate::error::DatastoreError;
use crate::settings::{DatastoreKind, DatastoreSettings};

/// Opens the selected datastore. Local: opens (creating file and schema) the SQLite store.
/// etcd: builds the client; connections are lazy, so an unreachable cluster shows up as
/// `StoreError::Unavailable` on the first call, not here. Contents are never modified.
pub fn open(settings: &DatastoreSettings) -> Result<Box<dyn Store>, DatastoreError> {
    match settings.kind {
        DatastoreKind::Local => ipam_store_local::LocalStore::open(&settings.local_path)
            .map(|s| Box::new(s) as Box<dyn Store>)
            .map_err(|source| DatastoreError::Open {
                kind: "local",
                source,
            }),
        DatastoreKind::Etcdv3 => ipam_store_etcd::EtcdStore::connect(&settings.etcd)
            .map(|s| Box::new(s) as Box<dyn Store>)
            .map_err(|source| DatastoreError::Open {
                kind: "etcdv3",
                source,
            }),
        DatastoreKind::Kubernetes => open_kubernetes(settings),
    }
}

#[cfg(feature = "kubernetes")]
fn open_kubernetes(settings: &DatastoreSettings) -> Result<Box<dyn Store>, DatastoreError> {
    let kubeconfig = settings.kubeconfig.as_deref().ok_or_else(|| {
        DatastoreError::Config(
            "datastore_type kubernetes: no kubeconfig (set kubernetes.kubeconfig or KUBECONFIG)"
                .into(),
        )
    })?;
    crate::kdd::open_kdd(kubeconfig)
}

#[cfg(not(feature = "kubernetes"))]
fn open_kubernetes(_: &DatastoreSettings) -> Result<Box<dyn Store>, DatastoreError> {
    Err(DatastoreError::Unsupported("kubernetes".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam::{Key, StoreError};

    #[test]
    fn local_store_opens_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let s = DatastoreSettings {
            kind: DatastoreKind::Local,
            local_path: dir.path().join("a/ipam.db"),
            ..Default::default()
        };
        open(&s).unwrap().create(&Key::handle("h"), "{}").unwrap();
        assert_eq!(
            open(&s).unwrap().get(&Key::handle("h")).unwrap().value,
            "{}"
        );
    }

    #[test]
    fn unreachable_etcd_is_unavailable_on_first_use() {
        // A port nobody listens on: bind then drop.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = DatastoreSettings::default();
        s.etcd.endpoints = vec![format!("http://127.0.0.1:{port}")];
        s.etcd.timeout = std::time::Duration::from_millis(300);
        let store = open(&s).unwrap();
        let e = store.get(&Key::handle("h")).unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    }

    #[cfg(not(feature = "kubernetes"))]
    #[test]
    fn kubernetes_without_feature_is_a_clear_error() {
        let s = DatastoreSettings {
            kind: DatastoreKind::Kubernetes,
            ..Default::default()
        };
        let e = open(&s).err().unwrap();
        assert_eq!(
            e.to_string(),
            "datastore_type kubernetes: this build has no Kubernetes support"
        );
        assert!(!e.is_unavailable());
    }
}
