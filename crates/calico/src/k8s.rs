//! Kubernetes mode: what the API server adds to an ADD/DEL.
//!
//! * `policy.type: k8s` and a pod in `CNI_ARGS`: GET the namespace and the pod and apply
//!   Calico's annotations (pools/families rewrite calico-ipam's config, `ipAddrs` asks IPAM for
//!   specific addresses — after releasing those of the pod's existing WorkloadEndpoint, as
//!   Calico does —, `ipAddrsNoIpam` bypasses IPAM, `hwAddr` sets the pod MAC,
//!   `floatingIPs` is validated — Felix reads it from the pod itself in KDD mode).
//! * host-local `usePodCidr`: the Node's `spec.podCIDRs`.
//! * `datastore_type: kubernetes`: publish the pod's IPs on the pod after ADD, clear them on
//!   DEL only when this sandbox set them.
//!
//! The API client is built on first use, so invocations that need none make no connection.
//! Without the `kubernetes` cargo feature every step that needs the API fails clearly.

use crate::config::CalicoConfig;
use crate::ipam::{Ipam, PodCidrs};
use cni::{CniError, CniResult, ErrorCode, Invocation, IpConfig};
use ipnetwork::IpNetwork;
use netlink::MacAddr;
use serde_json::Value;
use std::net::IpAddr;

/// The pod this invocation is for, when `CNI_ARGS` names one.
fn pod_ref(inv: &Invocation) -> Option<(&str, &str)> {
    Some((inv.args.k8s_pod_namespace()?, inv.args.k8s_pod_name()?))
}

/// Per-invocation Kubernetes access.
pub struct Kube<'a> {
    inv: &'a Invocation,
    conf: &'a CalicoConfig,
    node: &'a str,
    #[cfg(feature = "kubernetes")]
    client: std::cell::OnceCell<kubernetes::Client>,
}

/// What the pod's annotations ask of this ADD.
#[derive(Debug, Default)]
pub struct PodSettings {
    /// calico-ipam config with the pool/family annotations applied.
    pub ipam_config: Option<Value>,
    pub ip_addrs: Vec<IpAddr>,
    pub ip_addrs_no_ipam: Vec<IpAddr>,
    pub floating_ips: Vec<IpAddr>,
    pub hw_addr: Option<MacAddr>,
    /// The pod's labels and service account (Kubernetes policy), for the etcd WorkloadEndpoint.
    pub labels: std::collections::BTreeMap<String, String>,
    pub service_account: Option<String>,
    pub ports: Vec<crate::endpoint::EndpointPort>,
    pub allowed_source_prefixes: Vec<IpNetwork>,
}

/// The addresses a pod gets and whether IPAM holds them (and must release them on failure).
pub struct Allocation {
    pub result: CniResult,
    pub from_ipam: bool,
    /// Annotation-driven addresses always get host routes here (Calico leaves them to Felix
    /// when calico-ipam is configured, which leaves the pod unreachable until Felix runs).
    pub force_host_routes: bool,
}

fn generic(msg: String) -> CniError {
    CniError::new(ErrorCode::Other(999), msg)
}

/// Addresses from the annotation with full-length prefixes, as Calico synthesises them.
fn host_prefixes(ips: &[IpAddr]) -> Vec<IpConfig> {
    ips.iter()
        .map(|ip| IpConfig {
            address: IpNetwork::from(*ip),
            gateway: None,
            interface: None,
        })
        .collect()
}

impl PodSettings {
    /// The annotated ways of getting addresses, else a plain IPAM ADD.
    pub fn allocate(&self, ipam: &Ipam) -> Result<Allocation, CniError> {
        if !self.ip_addrs_no_ipam.is_empty() {
            return Ok(Allocation {
                result: CniResult {
                    ips: host_prefixes(&self.ip_addrs_no_ipam),
                    ..Default::default()
                },
                from_ipam: false,
                force_host_routes: true,
            });
        }
        if self.ip_addrs.is_empty() {
            return Ok(Allocation {
                result: ipam.add()?,
                from_ipam: true,
                force_host_routes: false,
            });
        }
        // One IPAM ADD per requested address, as Calico does; the handle (network + container
        // id) is the same for all, so a single DEL releases whatever was taken before a failure.
        let mut merged = CniResult::default();
        for ip in &self.ip_addrs {
            let one = ipam
                .add_ip(*ip)
                .inspect_err(|_| ipam.release_after_failure())?;
            let Some(first) = one.ips.into_iter().next() else {
                ipam.release_after_failure();
                return Err(generic(format!(
                    "IPAM plugin returned no address for requested IP {ip}"
                )));
            };
            if first.address.ip() != *ip {
                ipam.release_after_failure();
                return Err(generic(format!(
                    "IPAM plugin returned {} instead of the requested IP {ip}",
                    first.address
                )));
            }
            merged.ips.push(first);
            merged.routes.extend(one.routes);
        }
        Ok(Allocation {
            result: merged,
            from_ipam: true,
            force_host_routes: true,
        })
    }

    /// Calico maps each floating IP to the pod's address of the same family; a family the pod
    /// does not have is an error (Felix would have nothing to NAT to).
    pub fn check_floating_ips(&self, addresses: &[IpNetwork]) -> Result<(), CniError> {
        for ext in &self.floating_ips {
            let internal = addresses.iter().find(|a| a.is_ipv4() == ext.is_ipv4());
            match internal {
                Some(int) => log::info!("floating IP {ext} -> {}", int.ip()),
                None => {
                    return Err(generic(format!(
                        "invalid annotation {}: the pod has no {} address for floating IP {ext}",
                        FLOATING_IPS,
                        if ext.is_ipv4() { "IPv4" } else { "IPv6" }
                    )))
                }
            }
        }
        Ok(())
    }
}

const FLOATING_IPS: &str = "cni.projectcalico.org/floatingIPs";

impl<'a> Kube<'a> {
    pub fn new(inv: &'a Invocation, conf: &'a CalicoConfig, node: &'a str) -> Kube<'a> {
        Kube {
            inv,
            conf,
            node,
            #[cfg(feature = "kubernetes")]
            client: std::cell::OnceCell::new(),
        }
    }

    /// Kubernetes datastore and a pod: the pod carries its IPs (Calico's KDD WorkloadEndpoint).
    fn publishes_pod_ips(&self) -> bool {
        self.conf.datastore() == "kubernetes" && pod_ref(self.inv).is_some()
    }

    /// The node name for the `usePodCidr` lookup (`kubernetes.node_name` overrides).
    fn pod_cidr_node(&self) -> &str {
        self.conf
            .kubernetes
            .node_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(self.node)
    }
}

#[cfg(not(feature = "kubernetes"))]
mod api {
    use super::*;

    fn unsupported(what: &str) -> CniError {
        CniError::new(
            ErrorCode::UnsupportedField,
            format!("{what} needs the Kubernetes API, but this calico binary was built without the `kubernetes` feature"),
        )
    }

    impl Kube<'_> {
        pub fn require_datastore_ready(&self) -> Result<(), CniError> {
            if self.conf.datastore() == "kubernetes" {
                return Err(unsupported("datastore_type kubernetes"));
            }
            Ok(())
        }

        pub fn pod_settings(&self) -> Result<PodSettings, CniError> {
            if self.conf.policy.policy_type == "k8s" && pod_ref(self.inv).is_some() {
                return Err(unsupported("policy.type k8s"));
            }
            Ok(PodSettings::default())
        }

        pub fn record_pod_ips(&self, _addresses: &[IpNetwork]) -> Result<(), CniError> {
            if self.publishes_pod_ips() {
                return Err(unsupported("datastore_type kubernetes"));
            }
            Ok(())
        }

        pub fn clear_pod_ips(&self) -> Result<(), CniError> {
            if self.publishes_pod_ips() {
                return Err(unsupported("datastore_type kubernetes"));
            }
            Ok(())
        }
    }

    impl PodCidrs for Kube<'_> {
        fn pod_cidrs(&self) -> Option<Result<(String, Vec<IpNetwork>), CniError>> {
            let _ = self.pod_cidr_node();
            None
        }
    }
}

#[cfg(feature = "kubernetes")]
mod api {
    use super::*;
    use cni::Context;
    use kubernetes::{annotations, podip, Annotations, ClientOptions};

    /// Calico's client sources, resolved by the datastore rule calico-ipam uses too: the
    /// kubeconfig (`kubernetes.kubeconfig`, `KUBECONFIG`, `$HOME/.kube/config`), the
    /// `kubernetes`/`policy` overrides and their `K8S_*` variables, else the in-cluster
    /// service account.
    pub(crate) fn client_options(conf: &CalicoConfig) -> ClientOptions {
        datastore::kube_client_options(&conf.datastore_settings)
    }

    impl Kube<'_> {
        fn client(&self) -> Result<&kubernetes::Client, CniError> {
            if let Some(c) = self.client.get() {
                return Ok(c);
            }
            let c = kubernetes::Client::connect(&client_options(self.conf))
                .context("failed to create the Kubernetes client")?;
            Ok(self.client.get_or_init(|| c))
        }

        /// Calico refuses pods until calico-node has marked the datastore ready
        /// (ClusterInformation `default`, `datastoreReady: true`). Checked on ADD only with the
        /// Kubernetes datastore: that is where this binary has a client; on DEL we do not
        /// check, so a paused cluster can still tear pods down (a deliberate difference).
        pub fn require_datastore_ready(&self) -> Result<(), CniError> {
            if self.conf.datastore() != "kubernetes" {
                return Ok(());
            }
            let client = self.client()?;
            // Unset `calico_api_group`: one discovery request, as Calico's client makes.
            let group = datastore::kube_api_group(&self.conf.datastore_settings, client)
                .context("error discovering Calico's API group")?;
            let ready = client
                .datastore_ready(group.as_str())
                .context("error getting ClusterInformation")?;
            if !ready {
                // Code 11, not Calico's generic error: the runtime should simply retry later.
                return Err(CniError::new(
                    ErrorCode::TryAgainLater,
                    "Calico is currently not ready to process requests",
                ));
            }
            Ok(())
        }

        /// Reads the namespace and pod and turns their annotations into [`PodSettings`]
        /// (only with `policy.type: k8s`, as Calico).
        pub fn pod_settings(&self) -> Result<PodSettings, CniError> {
            let Some((ns, pod)) = pod_ref(self.inv) else {
                return Ok(PodSettings::default());
            };
            if self.conf.policy.policy_type != "k8s" {
                return Ok(PodSettings::default());
            }
            let client = self.client()?;
            let namespace = client.namespace(ns).context("error getting namespace")?;
            let pod = client.pod(ns, pod).context("error getting pod")?;
            let calico_ipam = self.inv.config.ipam_type() == Some("calico-ipam");
            let a = Annotations::parse(&pod.annotations, &namespace.annotations, calico_ipam)
                .context("pod annotations")?;
            let mut settings = self.settings(a)?;
            if !settings.ip_addrs.is_empty() {
                // Calico: when the endpoint already exists (a new sandbox of the pod, e.g.
                // after a node reboot where the old DEL never ran), release its addresses
                // first, or asking IPAM for the same ones would fail.
                let previous = self.workload_endpoint_ips(&pod)?;
                release_ip_addrs(self.inv, &previous)?;
            }
            settings.labels = pod.labels;
            settings.service_account = pod.service_account;
            settings.ports = pod
                .ports
                .into_iter()
                .map(|p| crate::endpoint::EndpointPort {
                    name: p.name.unwrap_or_default(),
                    protocol: p.protocol,
                    port: p.port,
                    host_port: p.host_port,
                    host_ip: p.host_ip,
                })
                .collect();
            Ok(settings)
        }

        /// Applies Calico's gates and IPAM compatibility rules.
        fn settings(&self, a: Annotations) -> Result<PodSettings, CniError> {
            let ipam_type = self.inv.config.ipam_type().unwrap_or_default();
            let features = &self.conf.feature_control;
            if !a.ip_addrs_no_ipam.is_empty() && !features.ip_addrs_no_ipam {
                return Err(generic(
                    "requested feature is not enabled: ip_addrs_no_ipam".into(),
                ));
            }
            if !a.floating_ips.is_empty() && !features.floating_ips {
                return Err(generic(
                    "requested feature is not enabled: floating_ips".into(),
                ));
            }
            if !a.ip_addrs.is_empty() && ipam_type != "calico-ipam" {
                return Err(generic(format!(
                    "ipAddrs is not compatible with configured IPAM: {ipam_type}"
                )));
            }
            let hw_addr = a
                .hw_addr
                .as_deref()
                .map(|s| {
                    s.parse::<MacAddr>().map_err(|e| {
                        generic(format!(
                            "invalid annotation {}: {s:?}: {e}",
                            annotations::HW_ADDR
                        ))
                    })
                })
                .transpose()?;
            Ok(PodSettings {
                ipam_config: (ipam_type == "calico-ipam")
                    .then(|| ipam_config(&self.inv.config.raw, &a))
                    .flatten(),
                ip_addrs: a.ip_addrs,
                ip_addrs_no_ipam: a.ip_addrs_no_ipam,
                floating_ips: a.floating_ips,
                hw_addr,
                allowed_source_prefixes: a.allowed_source_prefixes,
                ..Default::default()
            })
        }

        /// The `ipNetworks` of the pod's existing WorkloadEndpoint, if it has one: in the
        /// Kubernetes datastore the endpoint is the pod itself (any scheduled pod that is not
        /// host-networked, as Calico's conversion), in etcd the stored WorkloadEndpoint.
        fn workload_endpoint_ips(&self, pod: &kubernetes::Pod) -> Result<Vec<IpAddr>, CniError> {
            match self.conf.datastore() {
                "kubernetes" if pod.host_network => Ok(Vec::new()),
                "kubernetes" => kdd_endpoint_ips(&pod.status_pod_ips, &pod.annotations),
                _ => self.etcd_endpoint_ips(),
            }
        }

        fn etcd_endpoint_ips(&self) -> Result<Vec<IpAddr>, CniError> {
            let Some(store) = crate::endpoint::open_store(self.conf)? else {
                return Ok(Vec::new());
            };
            let workload =
                crate::identity::Workload::from_args(&self.inv.args, &self.inv.container_id);
            let key = crate::endpoint::key_of(&workload, self.node, &self.inv.ifname)?;
            let wep = store
                .get_opt(&key)
                .context("error reading WorkloadEndpoint")?;
            let Some(kv) = wep else {
                return Ok(Vec::new());
            };
            let v: Value = serde_json::from_str(&kv.value)
                .map_err(|e| generic(format!("unreadable WorkloadEndpoint {}: {e}", key.path())))?;
            let nets: Vec<String> = v
                .pointer("/spec/ipNetworks")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            nets.iter().map(|n| parse_cidr_or_ip(n)).collect()
        }

        /// After ADD (Kubernetes datastore): podIP/podIPs/containerID on the pod.
        pub fn record_pod_ips(&self, addresses: &[IpNetwork]) -> Result<(), CniError> {
            let Some((ns, pod)) = pod_ref(self.inv).filter(|_| self.publishes_pod_ips()) else {
                return Ok(());
            };
            podip::record(self.client()?, ns, pod, &self.inv.container_id, addresses)
                .context("error updating pod IP annotations")
        }

        /// Before DEL tears anything down (Kubernetes datastore): clear the pod's IPs if this
        /// sandbox owns them. An API failure aborts the DEL so the runtime retries, rather
        /// than tearing down a pod whose state we cannot see.
        pub fn clear_pod_ips(&self) -> Result<(), CniError> {
            let Some((ns, pod)) = pod_ref(self.inv).filter(|_| self.publishes_pod_ips()) else {
                return Ok(());
            };
            match podip::clear(self.client()?, ns, pod, &self.inv.container_id)
                .context("error clearing pod IP annotations")?
            {
                podip::Cleared::OtherContainer(owner) => log::warn!(
                    "CNI_CONTAINERID does not match WorkloadEndpoint ContainerID ({owner}), don't delete WEP."
                ),
                podip::Cleared::PodGone => log::info!("pod {ns}/{pod} is gone"),
                podip::Cleared::Cleared => {}
            }
            Ok(())
        }
    }

    /// Calico's `getPodIPs`, the `ipNetworks` of a pod's KDD WorkloadEndpoint: the status
    /// (`podIPs`, else `podIP`), else the `podIPs` / `podIP` annotations, else AWS's
    /// `vpc.amazonaws.com/pod-ips`. An entry that does not parse fails, as Calico's conversion.
    fn kdd_endpoint_ips(
        status: &[String],
        annotations: &std::collections::BTreeMap<String, String>,
    ) -> Result<Vec<IpAddr>, CniError> {
        let annotation = |k: &str| annotations.get(k).filter(|v| !v.is_empty());
        let listed: Vec<&str> = if !status.is_empty() {
            status.iter().map(String::as_str).collect()
        } else if let Some(ips) = annotation(annotations::POD_IPS) {
            ips.split(',').collect()
        } else if let Some(ip) = annotation(annotations::POD_IP) {
            vec![ip.as_str()]
        } else if let Some(ips) = annotation(AWS_POD_IPS) {
            ips.split(',').collect()
        } else {
            Vec::new()
        };
        listed.into_iter().map(parse_cidr_or_ip).collect()
    }

    /// AWS VPC CNI's pod IP annotation, which Calico's conversion also reads.
    const AWS_POD_IPS: &str = "vpc.amazonaws.com/pod-ips";

    /// An address written as `10.0.0.5` or `10.0.0.5/32`.
    fn parse_cidr_or_ip(s: &str) -> Result<IpAddr, CniError> {
        let s = s.trim();
        s.parse::<IpNetwork>()
            .map(|n| n.ip())
            .map_err(|e| generic(format!("failed to parse pod IP {s:?}: {e}")))
    }

    /// Calico's `releaseIPAddrs`: release each address straight in Calico IPAM (no handle
    /// check; `ipAddrs` implies calico-ipam). An address that is not allocated only warns.
    fn release_ip_addrs(inv: &Invocation, ips: &[IpAddr]) -> Result<(), CniError> {
        if ips.is_empty() {
            return Ok(());
        }
        log::info!("Endpoint already exists and ipAddrs is set. Release any old IPs: {ips:?}");
        let settings = datastore::DatastoreSettings::from_calico_config(&inv.config.raw, |k| {
            std::env::var(k).ok()
        })?;
        let store = datastore::open(&settings).context("failed to release ipAddrs")?;
        let reqs: Vec<ipam::ReleaseRequest> =
            ips.iter().map(|ip| ipam::ReleaseRequest::ip(*ip)).collect();
        let unallocated = ipam::Ipam::new(&*store)
            .release_ips(&reqs)
            .context("failed to release ipAddrs")?;
        for ip in unallocated {
            log::warn!("Asked to release address {ip} but it doesn't exist.");
        }
        Ok(())
    }

    /// calico-ipam's netconf with `ipv4_pools`/`ipv6_pools`/`assign_ipv4`/`assign_ipv6` set from
    /// the annotations; `None` when nothing changes.
    fn ipam_config(raw: &Value, a: &Annotations) -> Option<Value> {
        if a.ipv4_pools.is_none() && a.ipv6_pools.is_none() && a.ip_families.is_none() {
            return None;
        }
        let mut conf = raw.clone();
        let ipam = conf.get_mut("ipam")?.as_object_mut()?;
        if let Some(p) = &a.ipv4_pools {
            ipam.insert("ipv4_pools".into(), Value::from(p.clone()));
        }
        if let Some(p) = &a.ipv6_pools {
            ipam.insert("ipv6_pools".into(), Value::from(p.clone()));
        }
        if let Some(f) = a.ip_families {
            ipam.insert("assign_ipv4".into(), Value::from(f.ipv4.to_string()));
            ipam.insert("assign_ipv6".into(), Value::from(f.ipv6.to_string()));
        }
        Some(conf)
    }

    impl PodCidrs for Kube<'_> {
        fn pod_cidrs(&self) -> Option<Result<(String, Vec<IpNetwork>), CniError>> {
            if !client_options(self.conf).is_configured() {
                return None;
            }
            let node = self.pod_cidr_node();
            Some(self.client().and_then(|c| {
                c.node(node)
                    .map(|n| (node.to_string(), n.pod_cidrs))
                    .context(format_args!("error getting node {node}"))
            }))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use kubernetes::Error;
        use serde_json::json;

        #[test]
        fn pool_annotations_rewrite_calico_ipam_config() {
            let raw = json!({"name":"n","ipam":{"type":"calico-ipam","ipv4_pools":["old"],"x":1}});
            let a = Annotations {
                ipv4_pools: Some(vec!["pool-a".into()]),
                ip_families: Some(kubernetes::IpFamilies {
                    ipv4: true,
                    ipv6: false,
                }),
                ..Default::default()
            };
            let c = ipam_config(&raw, &a).unwrap();
            assert_eq!(c["ipam"]["ipv4_pools"], json!(["pool-a"]));
            assert_eq!(c["ipam"]["assign_ipv6"], "false");
            assert_eq!(c["ipam"]["x"], 1, "other keys kept");
            assert!(ipam_config(&raw, &Annotations::default()).is_none());
        }

        #[test]
        fn kdd_endpoint_ips_follow_calicos_conversion() {
            let ann = |kv: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            };
            let ip = |s: &str| s.parse::<IpAddr>().unwrap();
            let both = ann(&[
                (annotations::POD_IPS, "10.0.0.1/32,fd00::1/128"),
                (annotations::POD_IP, "10.0.0.1/32"),
            ]);
            // The status wins over the annotations.
            let status = vec!["10.9.9.9".to_string()];
            assert_eq!(
                kdd_endpoint_ips(&status, &both).unwrap(),
                vec![ip("10.9.9.9")]
            );
            assert_eq!(
                kdd_endpoint_ips(&[], &both).unwrap(),
                vec![ip("10.0.0.1"), ip("fd00::1")]
            );
            let single = ann(&[
                (annotations::POD_IPS, ""),
                (annotations::POD_IP, "10.0.0.2"),
            ]);
            assert_eq!(
                kdd_endpoint_ips(&[], &single).unwrap(),
                vec![ip("10.0.0.2")]
            );
            let aws = ann(&[(AWS_POD_IPS, "10.0.0.3")]);
            assert_eq!(kdd_endpoint_ips(&[], &aws).unwrap(), vec![ip("10.0.0.3")]);
            // Cleared by a DEL (podIP set to ""): no endpoint addresses.
            let cleared = ann(&[(annotations::POD_IP, ""), (annotations::POD_IPS, "")]);
            assert!(kdd_endpoint_ips(&[], &cleared).unwrap().is_empty());
            let bad = ann(&[(annotations::POD_IP, "10.0.0.300")]);
            assert!(kdd_endpoint_ips(&[], &bad).is_err());
        }

        #[test]
        fn client_options_from_calico_keys() {
            let conf = CalicoConfig::from_value_env(
                &json!({
                    "kubernetes": {"kubeconfig": "/etc/cni/net.d/calico-kubeconfig"},
                    "policy": {"type": "k8s", "k8s_api_root": "https://10.0.0.1/api/v1/",
                               "k8s_auth_token": "tok", "k8s_certificate_authority": "/ca.pem"}
                }),
                |_| None,
            )
            .unwrap();
            let o = client_options(&conf);
            assert_eq!(
                o.kubeconfig.as_deref(),
                Some(std::path::Path::new("/etc/cni/net.d/calico-kubeconfig"))
            );
            assert_eq!(o.api_root.as_deref(), Some("https://10.0.0.1/api/v1/"));
            assert_eq!(o.token.as_deref(), Some("tok"));
            assert!(o.certificate_authority.is_some());
            let none = client_options(&CalicoConfig::from_value_env(&json!({}), |_| None).unwrap());
            assert!(!none.is_configured());
            // In a pod (install-cni's environment), the service account is enough.
            let env = |k: &str| match k {
                "KUBERNETES_SERVICE_HOST" => Some("10.96.0.1".to_string()),
                "KUBERNETES_SERVICE_PORT" => Some("443".to_string()),
                _ => None,
            };
            let o = client_options(&CalicoConfig::from_value_env(&json!({}), env).unwrap());
            assert!(o.is_configured());
            assert_eq!(
                o.in_cluster.map(|i| i.server).as_deref(),
                Some("https://10.96.0.1:443")
            );
        }

        #[test]
        fn api_errors_map_to_cni_codes() {
            let api_err = |e: Error| CniError::from(e).context("x");
            let e = api_err(Error::Unavailable("refused".into()));
            assert_eq!(e.code, ErrorCode::TryAgainLater);
            let e = api_err(Error::Config("bad".into()));
            assert_eq!(e.code, ErrorCode::InvalidConfig);
            let e = api_err(Error::Annotation {
                annotation: annotations::IP_ADDRS,
                reason: "r".into(),
            });
            assert!(e.msg.contains(annotations::IP_ADDRS));
        }
    }
}
