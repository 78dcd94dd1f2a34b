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

/// The API group holding Calico's objects: `calico_api_group` when set, else asked of the
/// API server with one discovery request, by libcalico-go's rule
/// ([`ipam_store_kdd::ApiGroup::from_served_groups`]). An unreachable server is an error
/// (transient); any other discovery failure falls back to `crd.projectcalico.org/v1`, as
/// Calico does. Callers keep the answer for the rest of their plugin call.
pub fn kube_api_group(
    settings: &DatastoreSettings,
    client: &kubernetes::Client,
) -> Result<ApiGroup, kubernetes::Error> {
    if let Some(g) = settings.kubernetes.api_group {
        return Ok(g);
    }
    let found = match client.served_api_groups() {
        Ok(names) => ipam_store_kdd::ApiGroup::from_served_groups(names.iter().map(String::as_str)),
        Err(e) if e.is_transient() => return Err(e),
        Err(e) => {
            log::warn!("discovering Calico's API group: {e}; using crd.projectcalico.org/v1");
            ipam_store_kdd::ApiGroup::CrdV1
        }
    };
    log::info!("Calico API group (discovered): {}", found.as_str());
    Ok(match found {
        ipam_store_kdd::ApiGroup::CrdV1 => ApiGroup::CrdV1,
        ipam_store_kdd::ApiGroup::V3 => ApiGroup::V3,
    })
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
    let store =
        ipam_store_kdd::KddStore::from_kubeconfig(kc, &origin, ipam_store_kdd::Timeouts::default())
            .map_err(open_err)?;
    // Unset: the store asks the API server on its first call (one request per store).
    let store = match settings.kubernetes.api_group {
        Some(ApiGroup::CrdV1) => store.with_api_group(ipam_store_kdd::ApiGroup::CrdV1),
        Some(ApiGroup::V3) => store.with_api_group(ipam_store_kdd::ApiGroup::V3),
        None => store.with_discovered_api_group(),
    };
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
