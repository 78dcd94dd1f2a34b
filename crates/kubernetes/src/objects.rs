//! The three core objects the plugins read, reduced to the fields they use. Fetched as
//! dynamic objects so the binary does not carry deserializers for whole Pod/Node types.

use crate::client::Client;
use crate::error::Error;
use ipnetwork::IpNetwork;
use k8s_openapi::api::core::v1 as core;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use serde_json::Value;
use std::collections::BTreeMap;

/// A pod: identity, preconditions for updates, and its labels/annotations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub service_account: Option<String>,
    pub host_network: bool,
    /// Ports of containers and init containers that Calico lists on the endpoint: a container
    /// port with a name or a host port.
    pub ports: Vec<ContainerPort>,
    /// `status.podIPs[].ip`, else `status.podIP` (what the kubelet last reported).
    pub status_pod_ips: Vec<String>,
}

/// One entry of a container's `ports`, as Calico's WorkloadEndpoint carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerPort {
    pub name: Option<String>,
    /// `TCP`, `UDP` or `SCTP` (Kubernetes defaults an absent protocol to TCP).
    pub protocol: String,
    pub port: u16,
    pub host_port: Option<u16>,
    pub host_ip: Option<String>,
}

fn container_ports(spec: &Value) -> Vec<ContainerPort> {
    let port_of = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_u64)
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n != 0)
    };
    ["containers", "initContainers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("ports").and_then(Value::as_array))
        .flatten()
        .filter_map(|p| {
            let port = port_of(p, "containerPort")?;
            let name = str_at(p, "/name");
            let host_port = port_of(p, "hostPort");
            (name.is_some() || host_port.is_some()).then(|| ContainerPort {
                name,
                protocol: str_at(p, "/protocol").unwrap_or_else(|| "TCP".to_string()),
                port,
                host_port,
                host_ip: str_at(p, "/hostIP"),
            })
        })
        .collect()
}

/// A namespace: its annotations (pool/family settings) and labels (IPPool `namespaceSelector`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Namespace {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A node: its pod CIDRs (`spec.podCIDRs`, else `spec.podCIDR`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    pub name: String,
    pub pod_cidrs: Vec<IpNetwork>,
}

fn resource<K: kube::Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<K>(&())
}

fn str_at(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl Pod {
    fn from_object(o: DynamicObject) -> Pod {
        let m = o.metadata;
        Pod {
            namespace: m.namespace.unwrap_or_default(),
            name: m.name.unwrap_or_default(),
            uid: m.uid,
            resource_version: m.resource_version,
            labels: m.labels.unwrap_or_default(),
            annotations: m.annotations.unwrap_or_default(),
            service_account: str_at(&o.data, "/spec/serviceAccountName"),
            host_network: o
                .data
                .pointer("/spec/hostNetwork")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            ports: o.data.get("spec").map(container_ports).unwrap_or_default(),
            status_pod_ips: status_pod_ips(&o.data),
        }
    }
}

fn status_pod_ips(data: &Value) -> Vec<String> {
    let plural: Vec<String> = data
        .pointer("/status/podIPs")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|ip| str_at(ip, "/ip")).collect())
        .unwrap_or_default();
    if !plural.is_empty() {
        return plural;
    }
    str_at(data, "/status/podIP").into_iter().collect()
}

impl Node {
    /// Reads `spec.podCIDRs` (dual-stack clusters) or the older single `spec.podCIDR`.
    fn from_object(o: DynamicObject) -> Result<Node, Error> {
        let name = o.metadata.name.unwrap_or_default();
        let mut raw: Vec<&str> = o
            .data
            .pointer("/spec/podCIDRs")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if raw.is_empty() {
            raw.extend(o.data.pointer("/spec/podCIDR").and_then(Value::as_str));
        }
        let pod_cidrs = raw
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNetwork>().map_err(|e| {
                    Error::Decode(format!("node {name:?} has an invalid podCIDR {s:?}: {e}"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Node { name, pod_cidrs })
    }
}

impl Client {
    fn namespaced(&self, ns: &str, ar: &ApiResource) -> Api<DynamicObject> {
        Api::namespaced_with(self.kube().clone(), ns, ar)
    }

    /// GET `namespaces/<ns>/pods/<name>`.
    pub fn pod(&self, namespace: &str, name: &str) -> Result<Pod, Error> {
        let api = self.namespaced(namespace, &resource::<core::Pod>());
        let label = format!("{namespace}/{name}");
        self.call("pod", &label, api.get(name))
            .map(Pod::from_object)
    }

    /// GET `namespaces/<name>`.
    pub fn namespace(&self, name: &str) -> Result<Namespace, Error> {
        let api: Api<DynamicObject> =
            Api::all_with(self.kube().clone(), &resource::<core::Namespace>());
        let o = self.call("namespace", name, api.get(name))?;
        Ok(Namespace {
            name: name.to_string(),
            labels: o.metadata.labels.unwrap_or_default(),
            annotations: o.metadata.annotations.unwrap_or_default(),
        })
    }

    /// GET `nodes/<name>`.
    pub fn node(&self, name: &str) -> Result<Node, Error> {
        let api: Api<DynamicObject> = Api::all_with(self.kube().clone(), &resource::<core::Node>());
        Node::from_object(self.call("node", name, api.get(name))?)
    }

    /// LIST pods scheduled to `node` in every namespace (`fieldSelector=spec.nodeName=<node>`;
    /// also filtered here, so a server that ignores the selector gives the same answer).
    pub fn pods_on_node(&self, node: &str) -> Result<Vec<Pod>, Error> {
        let api: Api<DynamicObject> = Api::all_with(self.kube().clone(), &resource::<core::Pod>());
        let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
        let list = self.call("pod", "", api.list(&lp))?;
        Ok(list
            .items
            .into_iter()
            .filter(|o| o.data.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node))
            .map(Pod::from_object)
            .collect())
    }

    /// The annotations of `nodes/<name>` (where the Kubernetes datastore keeps Calico's
    /// per-node fields such as `projectcalico.org/IPv4IPIPTunnelAddr`).
    pub fn node_annotations(&self, name: &str) -> Result<BTreeMap<String, String>, Error> {
        let api: Api<DynamicObject> = Api::all_with(self.kube().clone(), &resource::<core::Node>());
        let o = self.call("node", name, api.get(name))?;
        Ok(o.metadata.annotations.unwrap_or_default())
    }

    /// Set one annotation on `nodes/<name>` (JSON merge patch: no read-modify-write race).
    pub fn annotate_node(&self, name: &str, key: &str, value: &str) -> Result<(), Error> {
        let api: Api<DynamicObject> = Api::all_with(self.kube().clone(), &resource::<core::Node>());
        let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
        self.call(
            "node",
            name,
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .map(|_| ())
    }

    /// GET `/apis`: the names of the API groups the server serves (discovery; Calico uses it
    /// to pick its API group when `calico_api_group` is unset).
    pub fn served_api_groups(&self) -> Result<Vec<String>, Error> {
        let client = self.kube().clone();
        let list = self.call("API group list", "/apis", async move {
            client.list_api_groups().await
        })?;
        Ok(list.groups.into_iter().map(|g| g.name).collect())
    }

    /// GET `clusterinformations.crd.projectcalico.org/default` and read `spec.datastoreReady`
    /// (absent counts as not ready, as in Calico: calico-node sets it once the datastore is
    /// initialised, and an operator clears it to pause pod networking during upgrades).
    ///
    /// `api_group` is Calico's `calico_api_group`: `crd.projectcalico.org/v1` or
    /// `projectcalico.org/v3` (`group/version`).
    pub fn datastore_ready(&self, api_group: &str) -> Result<bool, Error> {
        let (group, version) = api_group
            .split_once('/')
            .ok_or_else(|| Error::Config(format!("invalid Calico API group {api_group:?}")))?;
        let gvk = GroupVersionKind::gvk(group, version, "ClusterInformation");
        let ar = ApiResource::from_gvk_with_plural(&gvk, "clusterinformations");
        let api: Api<DynamicObject> = Api::all_with(self.kube().clone(), &ar);
        let o = self.call("clusterinformation", "default", api.get("default"))?;
        Ok(o.data
            .pointer("/spec/datastoreReady")
            .and_then(Value::as_bool)
            .unwrap_or(false))
    }

    /// Strategic-merge PATCH of `pods/<name>/status` (what Calico's RBAC allows the CNI).
    pub fn patch_pod_status(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<(), Error> {
        let api = self.namespaced(namespace, &resource::<core::Pod>());
        let label = format!("{namespace}/{name}");
        self.call(
            "pod",
            &label,
            api.patch_status(name, &PatchParams::default(), &Patch::Strategic(patch)),
        )
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dynamic(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn node_cidrs_prefer_the_list() {
        let n = Node::from_object(dynamic(json!({"metadata":{"name":"n1"},
            "spec":{"podCIDR":"10.0.0.0/24","podCIDRs":["10.0.0.0/24","fd00::/64"]}})))
        .unwrap();
        assert_eq!(n.pod_cidrs.len(), 2);
        let n = Node::from_object(dynamic(
            json!({"metadata":{"name":"n1"},"spec":{"podCIDR":"10.0.1.0/24"}}),
        ))
        .unwrap();
        assert_eq!(
            n.pod_cidrs,
            vec!["10.0.1.0/24".parse::<IpNetwork>().unwrap()]
        );
        let n = Node::from_object(dynamic(json!({"metadata":{"name":"n1"},"spec":{}}))).unwrap();
        assert!(n.pod_cidrs.is_empty());
        let e = Node::from_object(dynamic(
            json!({"metadata":{"name":"n1"},"spec":{"podCIDR":"banana"}}),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("banana"), "{e}");
    }

    #[test]
    fn pod_fields() {
        let p = Pod::from_object(dynamic(
            json!({"metadata":{"name":"p","namespace":"ns","uid":"u1",
            "resourceVersion":"7","annotations":{"a":"b"}},
            "spec":{"serviceAccountName":"sa","hostNetwork":true}}),
        ));
        assert_eq!(p.uid.as_deref(), Some("u1"));
        assert_eq!(p.resource_version.as_deref(), Some("7"));
        assert_eq!(p.annotations["a"], "b");
        assert_eq!(p.service_account.as_deref(), Some("sa"));
        assert!(p.host_network);
        assert!(p.ports.is_empty());
    }

    #[test]
    fn pod_ports_named_or_host_mapped() {
        let p = Pod::from_object(dynamic(json!({"metadata":{"name":"p"},"spec":{
            "containers":[{"name":"web","ports":[
                {"name":"http","containerPort":80},
                {"containerPort":443,"hostPort":8443,"protocol":"TCP","hostIP":"10.0.0.1"},
                {"containerPort":9000}]}],
            "initContainers":[{"name":"init","ports":[{"name":"dns","containerPort":53,"protocol":"UDP"}]}]}})));
        let want = |name: Option<&str>, protocol: &str, port, host_port, host_ip: Option<&str>| {
            ContainerPort {
                name: name.map(String::from),
                protocol: protocol.into(),
                port,
                host_port,
                host_ip: host_ip.map(String::from),
            }
        };
        assert_eq!(
            p.ports,
            [
                want(Some("http"), "TCP", 80, None, None),
                want(None, "TCP", 443, Some(8443), Some("10.0.0.1")),
                want(Some("dns"), "UDP", 53, None, None),
            ]
        );
    }
}
