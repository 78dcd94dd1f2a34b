//! `projectcalico.org/v3` resources as stored under `/calico/resources/v3/projectcalico.org/`:
//! `{"kind","apiVersion","metadata":{…},"spec":{…}}`. Only the fields the IPAM reads are typed;
//! everything else is preserved in `extra` maps.

use std::collections::BTreeMap;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{Map, Value};

use super::null_default;

/// `apiVersion` of every v3 resource.
pub const API_VERSION: &str = "projectcalico.org/v3";

/// Kubernetes-style object metadata (subset; rest preserved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(
        rename = "creationTimestamp",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub creation_timestamp: Option<String>,
    #[serde(
        rename = "deletionTimestamp",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub deletion_timestamp: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A v3 resource with a typed spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "S: Serialize + DeserializeOwned + Default")]
pub struct Resource<S> {
    #[serde(default)]
    pub kind: String,
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: S,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl<S: Serialize + DeserializeOwned + Default> Resource<S> {
    /// A new resource of `kind` named `name`.
    pub fn new(kind: &str, name: &str, spec: S) -> Self {
        Resource {
            kind: kind.to_string(),
            api_version: API_VERSION.to_string(),
            metadata: ObjectMeta {
                name: name.to_string(),
                ..Default::default()
            },
            spec,
            extra: Map::new(),
        }
    }

    /// Parse a stored value.
    pub fn from_json(s: &str) -> serde_json::Result<Self> {
        serde_json::from_str(s)
    }

    /// Serialise for storage.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// IPPool spec (`projectcalico.org/v3`). Optional fields stay absent when unset, like Go's
/// omitempty; use the accessor methods for effective values with Calico's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct IpPoolSpec {
    #[serde(default)]
    pub cidr: String,
    #[serde(rename = "vxlanMode", default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<String>,
    #[serde(rename = "ipipMode", default, skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<String>,
    #[serde(
        rename = "natOutgoing",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub nat_outgoing: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    #[serde(
        rename = "disableBGPExport",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub disable_bgp_export: bool,
    #[serde(rename = "blockSize", default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u8>,
    #[serde(
        rename = "nodeSelector",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub node_selector: Option<String>,
    /// Selector over the labels of the pod's namespace (absent = every namespace).
    #[serde(
        rename = "namespaceSelector",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub namespace_selector: Option<String>,
    #[serde(
        rename = "allowedUses",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub allowed_uses: Option<Vec<String>>,
    #[serde(
        rename = "assignmentMode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub assignment_mode: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `IPPool` resource.
pub type IpPool = Resource<IpPoolSpec>;

impl Resource<IpPoolSpec> {
    /// False when the pool controller (kube-controllers) set the status condition
    /// `Allocatable=False` (overlapping CIDR, terminating, ...): Calico allocates nothing from it.
    pub fn is_allocatable(&self) -> bool {
        let conditions = self
            .extra
            .get("status")
            .and_then(|s| s.get("conditions"))
            .and_then(Value::as_array);
        !conditions.is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Allocatable")
                    && c.get("status").and_then(Value::as_str) == Some("False")
            })
        })
    }
}

impl IpPoolSpec {
    /// Block size with Calico's default (26 for IPv4, 122 for IPv6).
    pub fn effective_block_size(&self, is_v6: bool) -> u8 {
        self.block_size.unwrap_or(if is_v6 { 122 } else { 26 })
    }

    /// The pool's IP family; `None` when the CIDR does not parse.
    pub fn ip_version(&self) -> Option<crate::IpVersion> {
        self.cidr
            .parse::<ipnetwork::IpNetwork>()
            .ok()
            .map(|c| crate::IpVersion::of_net(&c))
    }

    /// Node selector with the default `all()`.
    pub fn effective_node_selector(&self) -> &str {
        match self.node_selector.as_deref() {
            None | Some("") => "all()",
            Some(s) => s,
        }
    }

    /// Whether `use_` (`Workload`, `Tunnel`, `LoadBalancer`) is allowed; default
    /// `[Workload, Tunnel]`.
    pub fn allows_use(&self, use_: &str) -> bool {
        match &self.allowed_uses {
            None => use_ == "Workload" || use_ == "Tunnel",
            Some(v) if v.is_empty() => use_ == "Workload" || use_ == "Tunnel",
            Some(v) => v.iter().any(|u| u == use_),
        }
    }

    /// `Automatic` unless explicitly `Manual`.
    pub fn is_automatic(&self) -> bool {
        self.assignment_mode.as_deref() != Some("Manual")
    }

    /// IP-in-IP mode, honouring the legacy v1 `ipip{enabled,mode}` field; default `Never`.
    pub fn effective_ipip_mode(&self) -> String {
        if let Some(m) = &self.ipip_mode {
            return m.clone();
        }
        match self.extra.get("ipip") {
            Some(Value::Object(o)) if o.get("enabled") == Some(&Value::Bool(true)) => {
                match o.get("mode").and_then(Value::as_str) {
                    Some("cross-subnet") => "CrossSubnet".into(),
                    _ => "Always".into(),
                }
            }
            _ => "Never".into(),
        }
    }

    /// VXLAN mode, default `Never`.
    pub fn effective_vxlan_mode(&self) -> &str {
        self.vxlan_mode.as_deref().unwrap_or("Never")
    }
}

/// ClusterInformation spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ClusterInformationSpec {
    #[serde(
        rename = "clusterGUID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cluster_guid: Option<String>,
    #[serde(
        rename = "clusterType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cluster_type: Option<String>,
    #[serde(
        rename = "calicoVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub calico_version: Option<String>,
    /// `None` is treated as not ready.
    #[serde(
        rename = "datastoreReady",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub datastore_ready: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `ClusterInformation` resource (name `default`).
pub type ClusterInformation = Resource<ClusterInformationSpec>;

impl ClusterInformation {
    /// ClusterInformation `default` as written into a datastore being initialised (calico-node's
    /// startup; calicoctl / the local store without one): `datastoreReady: true`, the given
    /// `clusterGUID` and `calicoVersion`, created now.
    pub fn new_ready(cluster_guid: String, calico_version: String) -> ClusterInformation {
        let mut ci = ClusterInformation::new(
            "ClusterInformation",
            "default",
            ClusterInformationSpec {
                cluster_guid: Some(cluster_guid),
                calico_version: Some(calico_version),
                datastore_ready: Some(true),
                ..Default::default()
            },
        );
        ci.metadata.creation_timestamp = Some(crate::clock::rfc3339(std::time::SystemTime::now()));
        ci
    }
}

/// IPReservation spec: addresses/CIDRs Calico IPAM never hands out automatically. Entries
/// are kept as written (Calico accepts bare addresses too; see [`crate::reserved`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct IpReservationSpec {
    #[serde(
        rename = "reservedCIDRs",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub reserved_cidrs: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `IPReservation` resource (cluster scoped).
pub type IpReservation = Resource<IpReservationSpec>;

/// `Node` resource; the IPAM only needs `metadata.labels` (node selectors), the spec is opaque.
pub type Node = Resource<Map<String, Value>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ready_cluster_information_is_ready_and_stamped() {
        let ci = ClusterInformation::new_ready("ab".repeat(16), "rust-calico-v1".into());
        let v: Value = serde_json::from_str(&ci.to_json()).unwrap();
        assert_eq!(v["kind"], "ClusterInformation");
        assert_eq!(v["metadata"]["name"], "default");
        assert!(v["metadata"]["creationTimestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
        assert_eq!(v["spec"]["datastoreReady"], true);
        assert_eq!(v["spec"]["clusterGUID"], "ab".repeat(16));
        assert_eq!(v["spec"]["calicoVersion"], "rust-calico-v1");
    }

    #[test]
    fn pool_round_trip_matches_calico_example() {
        let s = r#"{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"default-ipv4-ippool","uid":"u","creationTimestamp":"2026-08-01T10:00:00Z"},"spec":{"cidr":"10.244.0.0/16","vxlanMode":"Never","ipipMode":"Always","natOutgoing":true,"blockSize":26,"nodeSelector":"all()","allowedUses":["Workload","Tunnel"],"assignmentMode":"Automatic"}}"#;
        let p = IpPool::from_json(s).unwrap();
        assert_eq!(p.spec.effective_block_size(false), 26);
        assert!(p.spec.allows_use("Workload") && !p.spec.allows_use("LoadBalancer"));
        assert_eq!(p.to_json(), s);
    }

    #[test]
    fn pool_defaults_and_legacy_fields() {
        let p = IpPool::from_json(
            r#"{"kind":"IPPool","metadata":{"name":"p"},"spec":{"cidr":"fd00::/48","ipip":{"enabled":true,"mode":"cross-subnet"}}}"#,
        )
        .unwrap();
        assert_eq!(p.spec.effective_block_size(true), 122);
        assert_eq!(p.spec.effective_node_selector(), "all()");
        assert!(p.spec.allows_use("Tunnel") && p.spec.is_automatic());
        assert_eq!(p.spec.effective_ipip_mode(), "CrossSubnet");
        assert!(p
            .to_json()
            .contains(r#""ipip":{"enabled":true,"mode":"cross-subnet"}"#));
    }

    #[test]
    fn cluster_information_ready_flag() {
        let c = ClusterInformation::from_json(
            r#"{"kind":"ClusterInformation","apiVersion":"projectcalico.org/v3","metadata":{"name":"default"},"spec":{"datastoreReady":true}}"#,
        )
        .unwrap();
        assert_eq!(c.spec.datastore_ready, Some(true));
        let n = Node::from_json(
            r#"{"kind":"Node","metadata":{"name":"n1","labels":{"zone":"a"}},"spec":{"bgp":{"ipv4Address":"192.0.2.10/24"}}}"#,
        )
        .unwrap();
        assert_eq!(n.metadata.labels["zone"], "a");
        assert!(n.to_json().contains("192.0.2.10/24"));
    }
}
