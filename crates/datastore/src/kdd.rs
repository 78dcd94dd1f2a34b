//! Kubernetes (CRD) datastore: Calico's `crd.projectcalico.org/v1` objects through the API
//! server named by a kubeconfig (the `ipam-store-kdd` crate does the mapping). Compiled only
//! with the `kubernetes` feature.

use std::path::Path;

use ipam::Store;

use crate::error::DatastoreError;

/// Opens Calico's CRDs through the API server described by `kubeconfig`. Connections are
/// lazy: an unreachable API server shows up as `StoreError::Unavailable` on the first call;
/// an unreadable or invalid kubeconfig is an error here.
pub(crate) fn open_kdd(kubeconfig: &Path) -> Result<Box<dyn Store>, DatastoreError> {
    ipam_store_kdd::KddStore::open(kubeconfig)
        .map(|s| Box::new(s) as Box<dyn Store>)
        .map_err(|source| DatastoreError::Open {
            kind: "kubernetes",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam::{Key, StoreError};

    #[test]
    fn missing_kubeconfig_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = open_kdd(&dir.path().join("nope")).err().expect("must fail");
        assert!(matches!(
            e,
            DatastoreError::Open {
                kind: "kubernetes",
                source: StoreError::Other(_)
            }
        ));
        assert!(!e.is_unavailable());
    }

    #[test]
    fn unreachable_api_server_is_unavailable_on_first_call() {
        let dir = tempfile::tempdir().unwrap();
        // A port nothing listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let kc = dir.path().join("kubeconfig");
        std::fs::write(
            &kc,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n"
            ),
        )
        .unwrap();
        let store = open_kdd(&kc).unwrap();
        assert!(matches!(
            store.get(&Key::IpamConfig),
            Err(StoreError::Unavailable(_))
        ));
    }
}
