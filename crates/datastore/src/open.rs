//! [`open`]: settings → boxed [`ipam::Store`].

use std::time::{Duration, Instant};

use ipam::Store;

use crate::error::DatastoreError;
use crate::settings::{DatastoreKind, DatastoreSettings};

/// Budget of one plugin call's datastore work (Calico bounds its IPAM work by a 90 s
/// context): calico-ipam's whole invocation, and the `calico` plugin's endpoint writes.
pub const CALL_DEADLINE: Duration = Duration::from_secs(90);

/// Opens the selected datastore. Local: opens (creating file and schema) the SQLite store.
/// etcd: builds the client; connections are lazy, so an unreachable cluster shows up as
/// `StoreError::Unavailable` on the first call, not here. Contents are never modified.
pub fn open(settings: &DatastoreSettings) -> Result<Box<dyn Store>, DatastoreError> {
    open_inner(settings, None)
}

/// [`open`] for one plugin call that must end by `deadline` (Calico bounds IPAM work by a
/// 90 s context): etcd and Kubernetes calls get at most the time left, and none starts
/// after it (they fail as unavailable, CNI code 11). The local store's calls are short and
/// bounded by SQLite's busy timeout.
pub fn open_until(
    settings: &DatastoreSettings,
    deadline: Instant,
) -> Result<Box<dyn Store>, DatastoreError> {
    open_inner(settings, Some(deadline))
}

fn open_inner(
    settings: &DatastoreSettings,
    deadline: Option<Instant>,
) -> Result<Box<dyn Store>, DatastoreError> {
    match settings.kind {
        DatastoreKind::Local => ipam_store_local::LocalStore::open(&settings.local_path)
            .map(|s| Box::new(s) as Box<dyn Store>)
            .map_err(|source| DatastoreError::Open {
                kind: "local",
                source,
            }),
        DatastoreKind::Etcdv3 => ipam_store_etcd::EtcdStore::connect(&settings.etcd)
            .map(|s| match deadline {
                Some(d) => Box::new(s.with_deadline(d)) as Box<dyn Store>,
                None => Box::new(s),
            })
            .map_err(|source| DatastoreError::Open {
                kind: "etcdv3",
                source,
            }),
        DatastoreKind::Kubernetes => open_kubernetes(settings, deadline),
    }
}

#[cfg(feature = "kubernetes")]
fn open_kubernetes(
    settings: &DatastoreSettings,
    deadline: Option<Instant>,
) -> Result<Box<dyn Store>, DatastoreError> {
    crate::kdd::open_kdd(settings, deadline)
}

#[cfg(not(feature = "kubernetes"))]
fn open_kubernetes(
    _: &DatastoreSettings,
    _: Option<Instant>,
) -> Result<Box<dyn Store>, DatastoreError> {
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
        let mut s = DatastoreSettings {
            kind: DatastoreKind::Etcdv3,
            ..Default::default()
        };
        s.etcd.endpoints = vec![format!("http://127.0.0.1:{port}")];
        s.etcd.timeout = std::time::Duration::from_millis(300);
        let store = open(&s).unwrap();
        let e = store.get(&Key::handle("h")).unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    }

    #[test]
    fn refused_etcd_fails_fast_and_the_deadline_bounds_everything() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = DatastoreSettings {
            kind: DatastoreKind::Etcdv3,
            ..Default::default()
        };
        s.etcd.endpoints = vec![format!("http://127.0.0.1:{port}")];
        // Default 10 s timeout: a refusal must not use it up.
        let store = open(&s).unwrap();
        let started = std::time::Instant::now();
        let e = store.get(&Key::handle("h")).unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "refused took {:?}",
            started.elapsed()
        );

        // A member that accepts but never answers: the call's deadline, not the 10 s
        // per-operation timeout, ends it.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        s.etcd.endpoints = vec![format!("http://{}", silent.local_addr().unwrap())];
        let started = std::time::Instant::now();
        let store = open_until(&s, started + std::time::Duration::from_millis(1500)).unwrap();
        let e = store.get(&Key::handle("h")).unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(4),
            "deadline ignored: {took:?}"
        );
        // Past the deadline nothing is attempted.
        let e = store.get(&Key::handle("h")).unwrap_err();
        assert!(e.to_string().contains("deadline"), "{e}");
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
