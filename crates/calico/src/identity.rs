//! Who the workload is (Kubernetes pod or plain container) and the names derived from it.

use cni::CniArgs;

/// Default host-side interface prefix; Felix matches `cali*`.
pub const DEFAULT_PREFIX: &str = "cali";
/// Start of the host veth alias that names its owner ([`Workload::veth_owner`]).
pub const VETH_OWNER_PREFIX: &str = "owner=";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workload {
    /// `K8S_POD_NAMESPACE` and `K8S_POD_NAME` both present.
    Kubernetes { namespace: String, pod: String },
    /// Anything else (cnitool, podman, `ctr run --cni`): orchestrator `cni`.
    Plain { container_id: String },
}

impl Workload {
    pub fn from_args(args: &CniArgs, container_id: &str) -> Workload {
        match (args.k8s_pod_namespace(), args.k8s_pod_name()) {
            (Some(ns), Some(pod)) => Workload::Kubernetes {
                namespace: ns.to_string(),
                pod: pod.to_string(),
            },
            _ => Workload::Plain {
                container_id: container_id.to_string(),
            },
        }
    }

    /// Calico's orchestrator name: `k8s` or `cni`.
    pub fn orchestrator(&self) -> &'static str {
        match self {
            Workload::Kubernetes { .. } => "k8s",
            Workload::Plain { .. } => "cni",
        }
    }

    /// The namespace Calico files the workload's endpoint under (`default` outside Kubernetes).
    pub fn namespace(&self) -> &str {
        match self {
            Workload::Kubernetes { namespace, .. } => namespace,
            Workload::Plain { .. } => "default",
        }
    }

    /// The workload segment of endpoint names: the pod, or the container id.
    pub fn name(&self) -> &str {
        match self {
            Workload::Kubernetes { pod, .. } => pod,
            Workload::Plain { container_id } => container_id,
        }
    }

    /// Who owns the host veth, as recorded in its alias (`owner=k8s:<namespace>/<pod>` or
    /// `owner=cni:<container id>`): the pod in Kubernetes (every sandbox of a pod has the same
    /// veth name, and a new sandbox replaces an old one's veth, as with Calico), the container
    /// otherwise. Longer than an alias can hold: a SHA-1 of it.
    pub fn veth_owner(&self) -> String {
        let who = match self {
            Workload::Kubernetes { namespace, pod } => format!("k8s:{namespace}/{pod}"),
            Workload::Plain { container_id } => format!("cni:{container_id}"),
        };
        let alias = format!("{VETH_OWNER_PREFIX}{who}");
        if alias.len() <= netlink::MAX_ALIAS_LEN {
            alias
        } else {
            format!(
                "{VETH_OWNER_PREFIX}sha1:{}",
                sha1_smol::Sha1::from(who).digest()
            )
        }
    }

    /// The host-side veth name, exactly as Calico derives it so Felix finds it:
    /// Kubernetes: prefix + first 11 hex chars of SHA-1(`"<namespace>.<pod>"`);
    /// plain: `cali` + the first 11 characters of the container id.
    /// `interface_prefix` is `FELIX_INTERFACEPREFIX` (its first entry applies, Kubernetes only).
    pub fn host_veth_name(&self, interface_prefix: Option<&str>) -> String {
        match self {
            Workload::Kubernetes { namespace, pod } => {
                let prefix = interface_prefix
                    .and_then(|p| p.split(',').next())
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .unwrap_or(DEFAULT_PREFIX);
                let digest = sha1_smol::Sha1::from(format!("{namespace}.{pod}"))
                    .digest()
                    .to_string();
                format!("{prefix}{}", &digest[..11])
            }
            Workload::Plain { container_id } => {
                let cut = container_id
                    .char_indices()
                    .nth(11)
                    .map_or(container_id.len(), |(i, _)| i);
                format!("{DEFAULT_PREFIX}{}", &container_id[..cut])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> CniArgs {
        CniArgs::parse(s).unwrap()
    }

    #[test]
    fn kubernetes_name_is_sha1_of_namespace_dot_pod() {
        let w = Workload::from_args(&args("K8S_POD_NAMESPACE=default;K8S_POD_NAME=nginx"), "abc");
        let expect = sha1_smol::Sha1::from("default.nginx").digest().to_string();
        assert_eq!(w.host_veth_name(None), format!("cali{}", &expect[..11]));
        assert_eq!(w.host_veth_name(None).len(), 15);
        assert_eq!(
            w.host_veth_name(Some("tap,cali")),
            format!("tap{}", &expect[..11])
        );
    }

    #[test]
    fn known_vector() {
        // Computed with `printf default.nginx | sha1sum`, outside this code.
        let w = Workload::Kubernetes {
            namespace: "default".into(),
            pod: "nginx".into(),
        };
        assert_eq!(w.host_veth_name(None), "calic440f455693");
    }

    #[test]
    fn veth_owner_names_the_pod_or_the_container() {
        let k = Workload::from_args(&args("K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p"), "abc");
        assert_eq!(k.veth_owner(), "owner=k8s:ns/p");
        let c = Workload::from_args(&args(""), "0123456789abcdef");
        assert_eq!(c.veth_owner(), "owner=cni:0123456789abcdef");
        let long = Workload::from_args(&args(""), &"x".repeat(300));
        assert!(long.veth_owner().starts_with("owner=sha1:"));
        assert!(long.veth_owner().len() <= 255);
    }

    #[test]
    fn plain_name_is_container_id_prefix() {
        let w = Workload::from_args(&args(""), "0123456789abcdef");
        assert_eq!(w.host_veth_name(Some("tap")), "cali0123456789a");
        let short = Workload::from_args(&args("K8S_POD_NAME=only-name"), "abc");
        assert_eq!(
            short,
            Workload::Plain {
                container_id: "abc".into()
            }
        );
        assert_eq!(short.host_veth_name(None), "caliabc");
    }
}
