//! The pod's namespace labels for IPPool `namespaceSelector`, looked up from the Kubernetes
//! API by calico-ipam itself, as Calico's ipam plugin does (so it works under any calico
//! plugin). Only when Calico would look (`kubernetes.kubeconfig` set or `policy.type: k8s`,
//! and `K8S_POD_NAMESPACE` given) and — a deliberate saving — only when some pool has a
//! namespaceSelector: without one the labels cannot change the outcome, so the API round
//! trip (and its failure modes) is skipped.

use std::collections::BTreeMap;

use cni::{CniError, Context, Invocation};
use ipam::Ipam;

use crate::config::IpamConf;

/// `None`: no namespace to consider (selectors then see no labels, as Calico's).
pub fn labels(
    conf: &IpamConf,
    inv: &Invocation,
    ipam: &Ipam<'_>,
) -> Result<Option<BTreeMap<String, String>>, CniError> {
    let Some(ns) = inv.args.k8s_pod_namespace().filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if !conf.k8s.enabled() {
        return Ok(None);
    }
    let needed = ipam
        .uses_namespace_selectors()
        .context("failed to read IP pools")?;
    if !needed {
        return Ok(None);
    }
    fetch(conf, ns).map(Some)
}

#[cfg(feature = "kubernetes")]
fn fetch(conf: &IpamConf, ns: &str) -> Result<BTreeMap<String, String>, CniError> {
    let opts = datastore::kube_client_options(&conf.datastore);
    let what = || format!("failed to get namespace {ns}");
    let client = kubernetes::Client::connect(&opts).context(what())?;
    Ok(client.namespace(ns).context(what())?.labels)
}

#[cfg(not(feature = "kubernetes"))]
fn fetch(_conf: &IpamConf, ns: &str) -> Result<BTreeMap<String, String>, CniError> {
    Err(CniError::new(
        cni::ErrorCode::UnsupportedField,
        format!(
            "an IPPool namespaceSelector needs namespace {ns}'s labels from the Kubernetes API, \
             but this calico-ipam was built without the `kubernetes` feature"
        ),
    ))
}
