//! Kubernetes (CRD) datastore: Calico's objects through the API server, reached the ways
//! Calico's client is (kubeconfig, `k8s_api_root`/`K8S_API_ENDPOINT`, token and certificate
//! overrides, in-cluster service account); the `ipam-store-kdd` crate does the mapping.
//! Compiled only with the `kubernetes` feature.

use std::time::Instant;

use ipam::{Store, StoreError};
use kubernetes::{ClientOptions, InCluster};

use crate::error::DatastoreError;
use crate::settings::{ApiGroup, DatastoreSettings};

/// The kubernetes crate's client options for `settings`: the one builder behind the IPAM
/// store, the `calico` plugin's pod lookups and calico-ipam's namespace lookups, so every
/// binary reaches the API server the same way.
pub fn client_options(settings: &DatastoreSettings) -> ClientOptions {
    let k = &settings.kubernetes;
    ClientOptions {
        kubeconfig: settings.kubeconfig.clone(),
        api_root: k.api_endpoint.clone(),
        token: k.token.clone(),
        client_certificate: k.cert_file.clone(),
        client_key: k.key_file.clone(),
        certificate_authority: k.ca_file.clone(),
        insecure_skip_tls_verify: k.insecure_skip_tls_verify,
        in_cluster: k.in_cluster_server.clone().map(|server| InCluster {
            server,
            service_account_dir: k.service_account_dir.clone(),
        }),
        ..ClientOptions::default()
    }
}

/// Opens Calico's CRDs through the API server `settings` describe. Connections are lazy: an
/// unreachable API server shows up as `StoreError::Unavailable` on the first call; an
/// unreadable or invalid kubeconfig, or no way to reach a server at all, is an error here.
pub(crate) fn open_kdd(
    settings: &DatastoreSettings,
    deadline: Option<Instant>,
) -> Result<Box<dyn Store>, DatastoreError> {
    let opts = client_options(settings);
    if !opts.is_configured() {
        return Err(DatastoreError::NoKubernetesClient);
    }
    let open_err = |source| DatastoreError::Open {
        kind: "kubernetes",
        source,
    };
    let kc = opts
        .to_kubeconfig()
        .map_err(|e| open_err(StoreError::Other(e.to_string())))?;
    let origin = settings.describe();
    let group = match settings.kubernetes.api_group {
        ApiGroup::CrdV1 => ipam_store_kdd::ApiGroup::CrdV1,
        ApiGroup::V3 => ipam_store_kdd::ApiGroup::V3,
    };
    let store =
        ipam_store_kdd::KddStore::from_kubeconfig(kc, &origin, ipam_store_kdd::Timeouts::default())
            .map_err(open_err)?
            .with_api_group(group);
    Ok(match deadline {
        Some(d) => Box::new(store.with_deadline(d)),
        None => Box::new(store),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::DatastoreKind;
    use ipam::Key;

    fn settings() -> DatastoreSettings {
        DatastoreSettings {
            kind: DatastoreKind::Kubernetes,
            ..Default::default()
        }
    }

    #[test]
    fn missing_kubeconfig_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = DatastoreSettings {
            kubeconfig: Some(dir.path().join("nope")),
            ..settings()
        };
        let e = open_kdd(&s, None).err().expect("must fail");
        assert!(matches!(
            e,
            DatastoreError::Open {
                kind: "kubernetes",
                source: StoreError::Other(_)
            }
        ));
        assert!(!e.is_unavailable());
        let e = open_kdd(&settings(), None).err().expect("must fail");
        assert!(matches!(e, DatastoreError::NoKubernetesClient), "{e:?}");
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
        let s = DatastoreSettings {
            kubeconfig: Some(kc),
            ..settings()
        };
        let store = open_kdd(&s, None).unwrap();
        assert!(matches!(
            store.get(&Key::IpamConfig),
            Err(StoreError::Unavailable(_))
        ));
    }
}
