//! Calico WorkloadEndpoints in etcd mode: the v3 `WorkloadEndpoint` resource that Felix reads
//! to program policy and routes for a pod, written on ADD and removed on DEL.
//!
//! With the Kubernetes datastore there is no such object (the pod is the endpoint, see
//! [`crate::k8s`]); with our embedded store nothing reads it. So only `datastore_type: etcdv3`
//! stores endpoints, at `/calico/resources/v3/projectcalico.org/workloadendpoints/<ns>/<name>`.
//!
//! Like Calico, ADD also refuses to run until the datastore is initialised (ClusterInformation
//! `default` with `datastoreReady: true`, written by calico-node or `calicoctl datastore init`).
//!
//! Names follow Calico: `<node>-<orchestrator>-<pod or container id>-<endpoint>`, every `-`
//! inside a segment doubled. A DEL in Kubernetes mode leaves an endpoint that another sandbox
//! (container id) owns, like Calico, so a late DEL of an old sandbox never unplugs a live pod.

use std::collections::BTreeMap;
use std::time::Instant;

use cni::{CniError, Context, ErrorCode, Invocation};

use crate::identity::Workload;
use ipam::keys::{Key, ListPrefix, ResourceKind};
use ipam::store::{KvPair, Store, StoreError};
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::{json, Map, Value};

/// A stored Calico document (`what`: its kind) that does not decode; Calico's generic 999.
#[derive(Debug, thiserror::Error)]
#[error("error parsing {what}: {source}")]
pub struct StoredDocError {
    pub what: &'static str,
    #[source]
    pub source: serde_json::Error,
}

impl cni::CniCode for StoredDocError {
    fn cni_code(&self) -> ErrorCode {
        cni::error::GENERIC
    }
}

/// Label keys Calico adds to Kubernetes endpoints.
const LABEL_NAMESPACE: &str = "projectcalico.org/namespace";
const LABEL_ORCHESTRATOR: &str = "projectcalico.org/orchestrator";
const LABEL_SERVICE_ACCOUNT: &str = "projectcalico.org/serviceaccount";

fn invalid(msg: String) -> CniError {
    CniError::new(ErrorCode::InvalidConfig, msg)
}

/// Joins name segments with `-`, doubling the dashes inside each (Calico's escaping).
pub fn endpoint_name(segments: &[&str]) -> Result<String, CniError> {
    let mut parts = Vec::with_capacity(segments.len());
    for s in segments {
        if s.is_empty() || s.starts_with('-') || s.ends_with('-') {
            return Err(invalid(format!(
                "invalid WorkloadEndpoint name segment {s:?}: must be non-empty and not start or end with '-'"
            )));
        }
        parts.push(s.replace('-', "--"));
    }
    Ok(parts.join("-"))
}

fn name_of(workload: &Workload, node: &str, ifname: &str) -> Result<String, CniError> {
    endpoint_name(&[node, workload.orchestrator(), workload.name(), ifname])
}

/// The datastore key of the endpoint of one attachment.
pub fn key_of(workload: &Workload, node: &str, ifname: &str) -> Result<Key, CniError> {
    Ok(Key::Resource {
        kind: ResourceKind::WorkloadEndpoint,
        namespace: Some(workload.namespace().to_string()),
        name: name_of(workload, node, ifname)?,
    })
}

/// Everything an endpoint records about one attachment.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub workload: Workload,
    pub node: String,
    pub container_id: String,
    /// CNI_IFNAME.
    pub endpoint: String,
    pub ip_networks: Vec<IpNetwork>,
    pub profiles: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub service_account: Option<String>,
    pub interface_name: String,
    pub mac: String,
    /// `floatingIPs`: (pod address, external address) pairs, Felix's 1:1 NAT.
    pub ip_nats: Vec<(IpAddr, IpAddr)>,
    /// `allowedSourcePrefixes`: sources the pod may send from besides its own addresses.
    pub allowed_source_prefixes: Vec<IpNetwork>,
    /// The pod's named and host-mapped container ports.
    pub ports: Vec<EndpointPort>,
}

/// A container port as the endpoint lists it (Calico's `WorkloadEndpointPort`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointPort {
    pub name: String,
    pub protocol: String,
    pub port: u16,
    pub host_port: Option<u16>,
    pub host_ip: Option<String>,
}

impl EndpointPort {
    fn to_json(&self) -> Value {
        let mut v = json!({"name": self.name, "protocol": self.protocol, "port": self.port});
        if let Some(hp) = self.host_port {
            v["hostPort"] = json!(hp);
        }
        if let Some(ip) = &self.host_ip {
            v["hostIP"] = json!(ip);
        }
        v
    }
}

impl Endpoint {
    /// `<node>-<k8s|cni>-<pod|container id>-<endpoint>`.
    pub fn name(&self) -> Result<String, CniError> {
        name_of(&self.workload, &self.node, &self.endpoint)
    }

    /// The datastore key.
    pub fn key(&self) -> Result<Key, CniError> {
        key_of(&self.workload, &self.node, &self.endpoint)
    }

    /// The v3 resource as libcalico-go stores it (`uid` and `creationTimestamp` are kept from
    /// the endpoint being replaced, if any).
    pub fn to_json(&self, uid: &str, created: &str) -> Result<Value, CniError> {
        let mut labels: Map<String, Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let mut spec = Map::new();
        spec.insert("orchestrator".into(), json!(self.workload.orchestrator()));
        // Calico's client sets these two on every endpoint it stores, whatever the orchestrator.
        labels.insert(LABEL_NAMESPACE.into(), json!(self.workload.namespace()));
        labels.insert(
            LABEL_ORCHESTRATOR.into(),
            json!(self.workload.orchestrator()),
        );
        match &self.workload {
            Workload::Kubernetes { pod, .. } => {
                if let Some(sa) = self.service_account.as_deref().filter(|s| s.len() < 63) {
                    labels.insert(LABEL_SERVICE_ACCOUNT.into(), json!(sa));
                }
                spec.insert("node".into(), json!(self.node));
                spec.insert("containerID".into(), json!(self.container_id));
                spec.insert("pod".into(), json!(pod));
            }
            Workload::Plain { .. } => {
                // Felix names a non-Kubernetes workload `<namespace>/<workload>`.
                spec.insert("workload".into(), json!(self.container_id));
                spec.insert("node".into(), json!(self.node));
                spec.insert("containerID".into(), json!(self.container_id));
            }
        }
        spec.insert("endpoint".into(), json!(self.endpoint));
        if let Some(sa) = &self.service_account {
            spec.insert("serviceAccountName".into(), json!(sa));
        }
        let nets: Vec<String> = self.ip_networks.iter().map(|n| n.to_string()).collect();
        spec.insert("ipNetworks".into(), json!(nets));
        spec.insert("profiles".into(), json!(self.profiles));
        if !self.ip_nats.is_empty() {
            let nats: Vec<Value> = self
                .ip_nats
                .iter()
                .map(|(internal, external)| {
                    json!({"internalIP": internal.to_string(), "externalIP": external.to_string()})
                })
                .collect();
            spec.insert("ipNATs".into(), json!(nats));
        }
        if !self.allowed_source_prefixes.is_empty() {
            let p: Vec<String> = self
                .allowed_source_prefixes
                .iter()
                .map(|n| n.to_string())
                .collect();
            spec.insert("allowSpoofedSourcePrefixes".into(), json!(p));
        }
        if !self.ports.is_empty() {
            let p: Vec<Value> = self.ports.iter().map(EndpointPort::to_json).collect();
            spec.insert("ports".into(), json!(p));
        }
        spec.insert("interfaceName".into(), json!(self.interface_name));
        spec.insert("mac".into(), json!(self.mac));
        let mut metadata = json!({
            "name": self.name()?,
            "namespace": self.workload.namespace(),
            "uid": uid,
            "creationTimestamp": created,
        });
        if !labels.is_empty() {
            metadata["labels"] = Value::Object(labels);
        }
        Ok(json!({
            "kind": "WorkloadEndpoint",
            "apiVersion": "projectcalico.org/v3",
            "metadata": metadata,
            "spec": spec,
        }))
    }
}

/// `floatingIPs` as NAT pairs: each external address maps to the pod's address of its family
/// (skipped when the pod has none, as Calico does).
pub fn ip_nats(addresses: &[IpNetwork], floating: &[IpAddr]) -> Vec<(IpAddr, IpAddr)> {
    floating
        .iter()
        .filter_map(|ext| {
            addresses
                .iter()
                .find(|a| a.is_ipv4() == ext.is_ipv4())
                .map(|a| (a.ip(), *ext))
        })
        .collect()
}

/// Refuses pods until calico-node (or `calicoctl datastore init`) has initialised the
/// datastore; code 11 so the runtime retries instead of giving up on the pod.
pub fn require_datastore_ready(store: &dyn Store) -> Result<(), CniError> {
    let key = Key::resource(ResourceKind::ClusterInformation, "default");
    let not_ready = |msg: String| CniError::new(ErrorCode::TryAgainLater, msg);
    let Some(kv) = store
        .get_opt(&key)
        .context("error getting ClusterInformation")?
    else {
        return Err(not_ready(format!(
            "error getting ClusterInformation: {} does not exist (calico-node or `calicoctl datastore init` creates it)",
            key.path()
        )));
    };
    let ready = ipam::model::ClusterInformation::from_json(&kv.value)
        .map_err(|source| StoredDocError {
            what: "ClusterInformation",
            source,
        })?
        .spec
        .datastore_ready
        == Some(true);
    if !ready {
        return Err(not_ready(
            "Calico is currently not ready to process requests".into(),
        ));
    }
    Ok(())
}

/// Profiles Calico gives an endpoint: `kns.<namespace>` and `ksa.<namespace>.<account>` with
/// Kubernetes policy, else the network name.
pub fn profiles(
    k8s_policy: bool,
    workload: &Workload,
    sa: Option<&str>,
    network: &str,
) -> Vec<String> {
    match workload {
        Workload::Kubernetes { namespace, .. } if k8s_policy => {
            let mut v = vec![format!("kns.{namespace}")];
            if let Some(sa) = sa.filter(|s| !s.is_empty()) {
                v.push(format!("ksa.{namespace}.{sa}"));
            }
            v
        }
        _ => vec![network.to_string()],
    }
}

/// The store endpoints go to: etcd when that is the datastore, else none. Its calls are
/// bounded like calico-ipam's: none runs past [`datastore::CALL_DEADLINE`] from now (the
/// store is opened early in the call), and refused connections fail at once (the etcd
/// store's own rule).
pub fn open_store(conf: &crate::config::CalicoConfig) -> Result<Option<Box<dyn Store>>, CniError> {
    open_store_until(conf, Instant::now() + datastore::CALL_DEADLINE)
}

/// [`open_store`] with an explicit end for every call.
fn open_store_until(
    conf: &crate::config::CalicoConfig,
    deadline: Instant,
) -> Result<Option<Box<dyn Store>>, CniError> {
    if conf.datastore() != "etcdv3" {
        return Ok(None);
    }
    // Same codes as calico-ipam opening the same store: 11 unreachable, 7 bad settings.
    let store = datastore::open_until(&conf.datastore_settings, deadline).map_err(|e| {
        let unreachable = e.is_unavailable();
        let err = CniError::from(e);
        if unreachable {
            // The runtime retries the pod later; say what to check meanwhile.
            err.context("check that etcd_endpoints are reachable from this node; retrying later can succeed")
        } else {
            err
        }
    })?;
    Ok(Some(store))
}

/// Creates or replaces the endpoint (Calico overwrites on a repeated ADD for a pod).
pub fn write(store: &dyn Store, ep: &Endpoint) -> Result<(), CniError> {
    let key = ep.key()?;
    for _ in 0..5 {
        let existing = store
            .get_opt(&key)
            .context("error reading WorkloadEndpoint")?;
        let (uid, created) = existing
            .as_ref()
            .and_then(|kv| serde_json::from_str::<Value>(&kv.value).ok())
            .map(|v| {
                (
                    v["metadata"]["uid"].as_str().map(String::from),
                    v["metadata"]["creationTimestamp"]
                        .as_str()
                        .map(String::from),
                )
            })
            .unwrap_or_default();
        let value = ep
            .to_json(
                &uid.unwrap_or_else(ipam::meta::new_uid),
                &created.unwrap_or_else(ipam::meta::now),
            )?
            .to_string();
        let done = match &existing {
            None => store.create(&key, &value).map(drop),
            Some(kv) => store.update(&key, &value, &kv.revision).map(drop),
        };
        match done {
            Ok(()) => return Ok(()),
            // Someone else wrote it in between: read again.
            Err(StoreError::Conflict(_)) | Err(StoreError::AlreadyExists(_)) => continue,
            Err(e) => return Err(CniError::from(e).context("error writing WorkloadEndpoint")),
        }
    }
    Err(CniError::new(
        ErrorCode::TryAgainLater,
        format!(
            "WorkloadEndpoint {} kept changing while being written",
            key.path()
        ),
    ))
}

/// Without a policy type, Calico points every endpoint at a profile named after the network
/// and creates it when missing: allow all egress; ingress from everything (Kubernetes pods) or
/// only from endpoints of the same network (other containers). Existing profiles are never
/// changed.
pub fn ensure_profile(store: &dyn Store, network: &str, kubernetes: bool) -> Result<(), CniError> {
    let key = Key::resource(ResourceKind::Profile, network);
    if store
        .get_opt(&key)
        .context("error getting profile")?
        .is_some()
    {
        return Ok(());
    }
    let ingress = if kubernetes {
        json!([{"action": "Allow"}])
    } else {
        json!([{"action": "Allow", "source": {"selector": format!("has({network})")}}])
    };
    let profile = json!({
        "kind": "Profile",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": network, "uid": ipam::meta::new_uid(), "creationTimestamp": ipam::meta::now()},
        "spec": {"ingress": ingress, "egress": [{"action": "Allow"}], "labelsToApply": {network: ""}},
    });
    match store.create(&key, &profile.to_string()) {
        Ok(_) | Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(CniError::from(e).context("error creating profile")),
    }
}

/// The endpoint another attachment of this plain (non-Kubernetes) container already has on
/// this node, whatever its CNI_IFNAME: Calico matches node, orchestrator and container, not the
/// interface, because it wires one interface per workload.
pub fn container_endpoint(
    store: &dyn Store,
    workload: &Workload,
    node: &str,
    container_id: &str,
) -> Result<Option<KvPair>, CniError> {
    if !matches!(workload, Workload::Plain { .. }) {
        return Ok(None);
    }
    // `<node>-cni-<container>-`: the name of every endpoint of this workload, any interface.
    let name_prefix = format!(
        "{}-",
        endpoint_name(&[node, workload.orchestrator(), workload.name()])?
    );
    let rows = store
        .list(&ListPrefix::NamedResources {
            kind: ResourceKind::WorkloadEndpoint,
            namespace: workload.namespace().to_string(),
            name_prefix,
        })
        .context("error listing WorkloadEndpoints")?;
    Ok(rows.into_iter().find(|kv| {
        serde_json::from_str::<Value>(&kv.value).is_ok_and(|v| {
            let spec = &v["spec"];
            spec["orchestrator"] == "cni"
                && spec["node"] == node
                && spec["containerID"] == container_id
        })
    }))
}

/// A plain container already attached by another CNI_IFNAME: as Calico, reuse that endpoint
/// (no IPAM, no veth) and answer with its addresses, adding this network's profile to it.
/// `None` when there is nothing to reuse (Kubernetes pods, no etcd store, first attachment).
pub fn reuse_container_endpoint(
    store: Option<&dyn Store>,
    inv: &Invocation,
    conf: &crate::config::CalicoConfig,
    node: &str,
    mtu: u32,
) -> Result<Option<cni::CniResult>, CniError> {
    let Some(store) = store else {
        return Ok(None);
    };
    let workload = Workload::from_args(&inv.args, &inv.container_id);
    let Some(existing) = container_endpoint(store, &workload, node, &inv.container_id)? else {
        return Ok(None);
    };
    log::info!(
        "Calico CNI found existing endpoint {} for container {}: reusing it",
        existing.key.path(),
        inv.container_id
    );
    let spec = add_profile(store, existing, &inv.config.name)?;
    if conf.policy.policy_type.is_empty() {
        ensure_profile(store, &inv.config.name, false)?;
    }
    result_from_endpoint(&spec, inv, mtu).map(Some)
}

/// Appends `profile` to the endpoint's profiles unless present; returns the stored spec.
fn add_profile(store: &dyn Store, mut kv: KvPair, profile: &str) -> Result<Value, CniError> {
    for _ in 0..5 {
        let mut v: Value = serde_json::from_str(&kv.value).map_err(|source| StoredDocError {
            what: "WorkloadEndpoint",
            source,
        })?;
        let profiles = v["spec"]["profiles"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if profiles.iter().any(|p| p == profile) {
            return Ok(v["spec"].take());
        }
        let mut updated = profiles;
        updated.push(json!(profile));
        v["spec"]["profiles"] = json!(updated);
        match store.update(&kv.key, &v.to_string(), &kv.revision) {
            Ok(_) => return Ok(v["spec"].take()),
            Err(StoreError::Conflict(_)) => {
                kv = store
                    .get(&kv.key)
                    .context("error reading WorkloadEndpoint")?;
            }
            Err(e) => return Err(CniError::from(e).context("error updating WorkloadEndpoint")),
        }
    }
    Err(CniError::new(
        ErrorCode::TryAgainLater,
        "error updating WorkloadEndpoint: it kept changing while adding the profile",
    ))
}

/// Calico's result for a reused endpoint: its addresses on the container interface, which is
/// named after this attachment's CNI_IFNAME and carries the endpoint's MAC.
fn result_from_endpoint(
    spec: &Value,
    inv: &Invocation,
    mtu: u32,
) -> Result<cni::CniResult, CniError> {
    let mut ips = Vec::new();
    for net in spec["ipNetworks"].as_array().into_iter().flatten() {
        let address = net
            .as_str()
            .and_then(|s| s.parse::<IpNetwork>().ok())
            .ok_or_else(|| {
                CniError::generic(format!("WorkloadEndpoint has an invalid ipNetwork {net}"))
            })?;
        ips.push(cni::IpConfig {
            address,
            gateway: None,
            interface: Some(1),
        });
    }
    let text = |k: &str| spec[k].as_str().unwrap_or_default().to_string();
    Ok(cni::CniResult {
        interfaces: vec![
            cni::Interface {
                name: text("interfaceName"),
                ..Default::default()
            },
            cni::Interface {
                name: inv.ifname.clone(),
                mac: text("mac"),
                mtu: Some(mtu),
                sandbox: inv.netns.as_ref().map(|p| p.display().to_string()),
                ..Default::default()
            },
        ],
        ips,
        ..Default::default()
    })
}

/// DEL of an attachment that reused another attachment's endpoint (plain mode): it has no
/// endpoint of its own while the container's other one exists. Its IPAM handle may be the
/// other attachment's (same network, calico-ipam), so IPAM must not be released for it.
pub fn is_reused_attachment(
    store: &dyn Store,
    workload: &Workload,
    node: &str,
    container_id: &str,
    own: &Key,
) -> Result<bool, CniError> {
    if !matches!(workload, Workload::Plain { .. }) {
        return Ok(false);
    }
    let mine = store
        .get_opt(own)
        .context("error reading WorkloadEndpoint")?;
    Ok(mine.is_none() && container_endpoint(store, workload, node, container_id)?.is_some())
}

/// Removes the endpoint of `ep_key` unless (Kubernetes mode) another sandbox owns it. Absent is
/// fine; any other datastore failure is returned so the DEL stops before tearing anything down.
pub fn remove(
    store: &dyn Store,
    key: &Key,
    container_id: &str,
    check_owner: bool,
) -> Result<(), CniError> {
    for _ in 0..6 {
        let Some(kv) = store
            .get_opt(key)
            .context("error reading WorkloadEndpoint")?
        else {
            log::info!("WorkloadEndpoint {} does not exist", key.path());
            return Ok(());
        };
        if check_owner {
            let owner = serde_json::from_str::<Value>(&kv.value)
                .ok()
                .and_then(|v| v["spec"]["containerID"].as_str().map(String::from))
                .unwrap_or_default();
            if !owner.is_empty() && owner != container_id {
                log::warn!(
                    "CNI_CONTAINERID does not match WorkloadEndpoint ContainerID ({owner}), don't delete WEP."
                );
                return Ok(());
            }
        }
        match store.delete(key, Some(&kv.revision)) {
            Ok(()) | Err(StoreError::NotFound(_)) => return Ok(()),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(CniError::from(e).context("error deleting WorkloadEndpoint")),
        }
    }
    Err(CniError::generic(
        "error deleting endpoint: endpoint was modified before it could be deleted",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam::memory::MemoryStore;

    fn pod_endpoint() -> Endpoint {
        Endpoint {
            workload: Workload::Kubernetes {
                namespace: "team-a".into(),
                pod: "nginx-abc".into(),
            },
            node: "node-1".into(),
            container_id: "c1".into(),
            endpoint: "eth0".into(),
            ip_networks: vec!["10.244.0.5/32".parse().unwrap()],
            profiles: profiles(
                true,
                &Workload::Kubernetes {
                    namespace: "team-a".into(),
                    pod: "x".into(),
                },
                Some("web"),
                "net",
            ),
            labels: BTreeMap::from([("app".to_string(), "nginx".to_string())]),
            service_account: Some("web".into()),
            interface_name: "cali12345678901".into(),
            mac: "aa:bb:cc:dd:ee:ff".into(),
            ip_nats: Vec::new(),
            allowed_source_prefixes: vec!["192.0.2.0/24".parse().unwrap()],
            ports: vec![
                EndpointPort {
                    name: "http".into(),
                    protocol: "TCP".into(),
                    port: 80,
                    host_port: None,
                    host_ip: None,
                },
                EndpointPort {
                    name: String::new(),
                    protocol: "UDP".into(),
                    port: 53,
                    host_port: Some(5353),
                    host_ip: Some("10.0.0.1".into()),
                },
            ],
        }
    }

    /// An etcd that accepts connections but never answers: calls end at the plugin call's
    /// deadline (code 11), not after the etcd client's own, longer timeout.
    #[test]
    fn etcd_calls_end_at_the_call_deadline() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let conf = crate::config::CalicoConfig::from_value(&serde_json::json!({
            "cniVersion": "1.0.0", "name": "n", "type": "calico", "nodename": "n1",
            "etcd_endpoints": format!("http://{}", silent.local_addr().unwrap()),
        }))
        .unwrap();
        let started = Instant::now();
        let store = open_store_until(&conf, started + std::time::Duration::from_millis(700))
            .unwrap()
            .expect("etcd store");
        let e = require_datastore_ready(&*store).unwrap_err();
        assert_eq!(e.code, ErrorCode::TryAgainLater, "{e}");
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(4),
            "took {took:?}, the etcd timeout is {:?}",
            ipam_store_etcd_timeout()
        );
    }

    /// Nothing listening: the endpoint calls fail at once with code 11, as calico-ipam's do,
    /// instead of retrying until the etcd timeout.
    #[test]
    fn refused_etcd_fails_fast() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = crate::config::CalicoConfig::from_value(&serde_json::json!({
            "cniVersion": "1.0.0", "name": "n", "type": "calico", "nodename": "n1",
            "etcd_endpoints": format!("http://127.0.0.1:{port}"),
        }))
        .unwrap();
        let started = Instant::now();
        let store = open_store(&conf).unwrap().expect("etcd store");
        let e = require_datastore_ready(&*store).unwrap_err();
        assert_eq!(e.code, ErrorCode::TryAgainLater, "{e}");
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(4), "took {took:?}");
    }

    fn ipam_store_etcd_timeout() -> std::time::Duration {
        datastore::EtcdConfig::default().timeout
    }

    #[test]
    fn names_double_inner_dashes() {
        assert_eq!(
            endpoint_name(&["node-1", "k8s", "nginx-abc", "eth0"]).unwrap(),
            "node--1-k8s-nginx--abc-eth0"
        );
        assert!(endpoint_name(&["-node", "k8s", "p", "eth0"]).is_err());
        assert!(endpoint_name(&["node", "k8s", "", "eth0"]).is_err());
    }

    #[test]
    fn kubernetes_endpoint_resource() {
        let ep = pod_endpoint();
        assert_eq!(
            ep.key().unwrap().path(),
            "/calico/resources/v3/projectcalico.org/workloadendpoints/team-a/node--1-k8s-nginx--abc-eth0"
        );
        let v = ep.to_json("u-1", "2026-11-23T10:00:00Z").unwrap();
        assert_eq!(v["kind"], "WorkloadEndpoint");
        assert_eq!(v["apiVersion"], "projectcalico.org/v3");
        assert_eq!(v["metadata"]["namespace"], "team-a");
        assert_eq!(v["metadata"]["uid"], "u-1");
        assert_eq!(
            v["metadata"]["labels"],
            json!({"app": "nginx", "projectcalico.org/namespace": "team-a",
                   "projectcalico.org/orchestrator": "k8s", "projectcalico.org/serviceaccount": "web"})
        );
        let s = &v["spec"];
        assert_eq!(s["orchestrator"], "k8s");
        assert_eq!(s["pod"], "nginx-abc");
        assert_eq!(s["containerID"], "c1");
        assert_eq!(s["endpoint"], "eth0");
        assert_eq!(s["serviceAccountName"], "web");
        assert_eq!(s["ipNetworks"], json!(["10.244.0.5/32"]));
        assert_eq!(s["profiles"], json!(["kns.team-a", "ksa.team-a.web"]));
        assert_eq!(s["interfaceName"], "cali12345678901");
        assert_eq!(s["mac"], "aa:bb:cc:dd:ee:ff");
        assert!(s.get("workload").is_none());
        assert_eq!(s["allowSpoofedSourcePrefixes"], json!(["192.0.2.0/24"]));
        assert_eq!(
            s["ports"],
            json!([{"name": "http", "protocol": "TCP", "port": 80},
                   {"name": "", "protocol": "UDP", "port": 53, "hostPort": 5353, "hostIP": "10.0.0.1"}])
        );
    }

    #[test]
    fn plain_container_endpoint() {
        let ep = Endpoint {
            workload: Workload::Plain {
                container_id: "abc-def".into(),
            },
            container_id: "abc-def".into(),
            profiles: profiles(
                false,
                &Workload::Plain {
                    container_id: "abc-def".into(),
                },
                None,
                "k8s-pod-network",
            ),
            labels: BTreeMap::new(),
            service_account: None,
            ports: Vec::new(),
            allowed_source_prefixes: Vec::new(),
            ..pod_endpoint()
        };
        assert_eq!(ep.name().unwrap(), "node--1-cni-abc--def-eth0");
        let v = ep.to_json("u", "t").unwrap();
        assert_eq!(v["metadata"]["namespace"], "default");
        assert_eq!(
            v["metadata"]["labels"],
            json!({"projectcalico.org/namespace": "default", "projectcalico.org/orchestrator": "cni"})
        );
        assert_eq!(v["spec"]["workload"], "abc-def");
        assert_eq!(v["spec"]["orchestrator"], "cni");
        assert_eq!(v["spec"]["profiles"], json!(["k8s-pod-network"]));
        assert!(v["spec"].get("ports").is_none());
        assert!(v["spec"].get("allowSpoofedSourcePrefixes").is_none());
    }

    #[test]
    fn a_containers_endpoint_is_found_whatever_its_interface() {
        let store = MemoryStore::new();
        let plain = |cid: &str, ifname: &str| Endpoint {
            workload: Workload::Plain {
                container_id: cid.into(),
            },
            container_id: cid.into(),
            endpoint: ifname.into(),
            labels: BTreeMap::new(),
            service_account: None,
            ..pod_endpoint()
        };
        // "abc-x" shares the name prefix of "abc" (node--1-cni-abc--x-…): not a match.
        write(&store, &plain("abc-x", "eth0")).unwrap();
        let w = Workload::Plain {
            container_id: "abc".into(),
        };
        assert!(container_endpoint(&store, &w, "node-1", "abc")
            .unwrap()
            .is_none());
        write(&store, &plain("abc", "eth0")).unwrap();
        let found = container_endpoint(&store, &w, "node-1", "abc")
            .unwrap()
            .unwrap();
        assert_eq!(found.key, plain("abc", "eth0").key().unwrap());
        let eth1 = plain("abc", "eth1").key().unwrap();
        assert!(is_reused_attachment(&store, &w, "node-1", "abc", &eth1).unwrap());
        let eth0 = plain("abc", "eth0").key().unwrap();
        assert!(!is_reused_attachment(&store, &w, "node-1", "abc", &eth0).unwrap());
        assert!(container_endpoint(&store, &w, "node-2", "abc")
            .unwrap()
            .is_none());
    }

    #[test]
    fn floating_ips_pair_with_the_pod_address_of_their_family() {
        let pod: Vec<IpNetwork> = vec!["10.244.0.5/32".parse().unwrap()];
        let fips: Vec<IpAddr> = vec!["192.0.2.7".parse().unwrap(), "2001:db8::7".parse().unwrap()];
        let nats = ip_nats(&pod, &fips);
        assert_eq!(
            nats,
            [(pod[0].ip(), fips[0])],
            "no v6 pod address: v6 skipped"
        );
        let ep = Endpoint {
            ip_nats: nats,
            ..pod_endpoint()
        };
        assert_eq!(
            ep.to_json("u", "t").unwrap()["spec"]["ipNATs"],
            json!([{"internalIP": "10.244.0.5", "externalIP": "192.0.2.7"}])
        );
        assert!(pod_endpoint().to_json("u", "t").unwrap()["spec"]
            .get("ipNATs")
            .is_none());
    }

    #[test]
    fn datastore_readiness() {
        let store = MemoryStore::new();
        let e = require_datastore_ready(&store).unwrap_err();
        assert_eq!(e.code, ErrorCode::TryAgainLater);
        assert!(e.msg.contains("datastore init"), "{}", e.msg);
        let key = Key::resource(ResourceKind::ClusterInformation, "default");
        store
            .create(
                &key,
                r#"{"kind":"ClusterInformation","spec":{"datastoreReady":false}}"#,
            )
            .unwrap();
        let e = require_datastore_ready(&store).unwrap_err();
        assert!(e.msg.contains("not ready"), "{}", e.msg);
        let rev = store.get(&key).unwrap().revision;
        store
            .update(
                &key,
                r#"{"kind":"ClusterInformation","spec":{"datastoreReady":true}}"#,
                &rev,
            )
            .unwrap();
        require_datastore_ready(&store).unwrap();
    }

    #[test]
    fn network_profile_is_created_once() {
        let store = MemoryStore::new();
        ensure_profile(&store, "net-a", false).unwrap();
        let key = Key::resource(ResourceKind::Profile, "net-a");
        let v: Value = serde_json::from_str(&store.get(&key).unwrap().value).unwrap();
        assert_eq!(v["spec"]["ingress"][0]["source"]["selector"], "has(net-a)");
        assert_eq!(v["spec"]["egress"], json!([{"action": "Allow"}]));
        assert_eq!(v["spec"]["labelsToApply"], json!({"net-a": ""}));
        // An operator's edit survives the next ADD.
        let edited = v.to_string().replace("has(net-a)", "all()");
        let rev = store.get(&key).unwrap().revision;
        store.update(&key, &edited, &rev).unwrap();
        ensure_profile(&store, "net-a", true).unwrap();
        assert!(store.get(&key).unwrap().value.contains("all()"));
    }

    #[test]
    fn write_keeps_identity_and_remove_respects_the_owner() {
        let store = MemoryStore::new();
        let mut ep = pod_endpoint();
        write(&store, &ep).unwrap();
        let key = ep.key().unwrap();
        let first: Value = serde_json::from_str(&store.get(&key).unwrap().value).unwrap();
        // A new sandbox for the same pod replaces the endpoint, keeping uid and creation time.
        ep.container_id = "c2".into();
        ep.ip_networks = vec!["10.244.0.9/32".parse().unwrap()];
        write(&store, &ep).unwrap();
        let second: Value = serde_json::from_str(&store.get(&key).unwrap().value).unwrap();
        assert_eq!(second["metadata"]["uid"], first["metadata"]["uid"]);
        assert_eq!(second["spec"]["containerID"], "c2");
        // The old sandbox's DEL leaves it; the owner's DEL removes it; a repeat is fine.
        remove(&store, &key, "c1", true).unwrap();
        assert!(store.get_opt(&key).unwrap().is_some());
        remove(&store, &key, "c2", true).unwrap();
        assert!(store.get_opt(&key).unwrap().is_none());
        remove(&store, &key, "c2", true).unwrap();
    }
}
