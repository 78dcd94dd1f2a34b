//! Mapping between the store's keys/etcdv3 JSON values and Calico's KDD objects
//! (`crd.projectcalico.org/v1` or `projectcalico.org/v3` CRDs, see [`ApiGroup`], and
//! Kubernetes Nodes for Calico Nodes).
//!
//! Spec shapes follow what Calico's KDD backend writes: block `affinityClaimTime` (camelCase)
//! and `strictAffinity: false`, affinity `node`/`type`/`cidr` with `deleted` as a *string* in
//! v1 and a bool in v3, handle `handleID`, IPAM config `strictAffinity`/`autoAllocateBlocks`
//! (kind `IPAMConfig`, plural `ipamconfigs` in v1; `IPAMConfiguration`/`ipamconfigurations`
//! in v3). Unknown fields pass through both ways so nothing written by a newer Calico is
//! dropped. Reading accepts either shape whatever the group.

use ipam::keys::{IpVersion, Key, ResourceKind, AFFINITY_TYPE_HOST};
use ipam::StoreError;
use ipnetwork::IpNetwork;
use kube::api::{ApiResource, GroupVersionKind};
use serde_json::{json, Map, Value};

use crate::names;

/// Calico's CRD group/version.
pub const CRD_GROUP: &str = "crd.projectcalico.org";
pub const CRD_VERSION: &str = "v1";
/// Calico's native v3 group/version (`calico_api_group: projectcalico.org/v3`).
pub const V3_GROUP: &str = "projectcalico.org";
pub const V3_VERSION: &str = "v3";

/// Which API group holds Calico's objects (libcalico-go's `BackingAPIGroup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ApiGroup {
    /// `crd.projectcalico.org/v1` (the default).
    #[default]
    CrdV1,
    /// `projectcalico.org/v3`.
    V3,
}

impl ApiGroup {
    /// libcalico-go's auto-detection from the API server's group list (`GET /apis`):
    /// `projectcalico.org/v3` only when `projectcalico.org` is served and
    /// `crd.projectcalico.org` is not. With both, the v3 API is Calico's aggregated API
    /// server in front of the v1 CRDs, so the CRDs are used directly.
    pub fn from_served_groups<'a>(names: impl IntoIterator<Item = &'a str>) -> ApiGroup {
        let (mut v1, mut v3) = (false, false);
        for n in names {
            v1 |= n == CRD_GROUP;
            v3 |= n == V3_GROUP;
        }
        if v3 && !v1 {
            ApiGroup::V3
        } else {
            ApiGroup::CrdV1
        }
    }

    /// The `group/version` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiGroup::CrdV1 => "crd.projectcalico.org/v1",
            ApiGroup::V3 => "projectcalico.org/v3",
        }
    }

    fn group_version(self) -> (&'static str, &'static str) {
        match self {
            ApiGroup::CrdV1 => (CRD_GROUP, CRD_VERSION),
            ApiGroup::V3 => (V3_GROUP, V3_VERSION),
        }
    }
}
/// Annotation where Calico keeps v3 metadata on v1 CRD objects.
const V3_METADATA_ANNOTATION: &str = "projectcalico.org/metadata";

/// Which Kubernetes collection holds a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Block,
    Affinity,
    Handle,
    IpamConfig,
    /// A v3 resource kept as a v1 CRD of the same kind (IPPool, ClusterInformation, ...).
    Resource(ResourceKind),
    /// Calico Nodes are the Kubernetes Nodes in KDD (read-only here).
    Node,
}

impl Kind {
    /// The collection for a key; `Other` for kinds KDD does not store as objects.
    pub fn of(key: &Key) -> Result<Kind, StoreError> {
        Ok(match key {
            Key::Block { .. } => Kind::Block,
            Key::Affinity { .. } => Kind::Affinity,
            Key::Handle { .. } => Kind::Handle,
            Key::IpamConfig => Kind::IpamConfig,
            Key::Resource { kind, .. } => Self::of_resource(*kind)?,
        })
    }

    pub fn of_resource(kind: ResourceKind) -> Result<Kind, StoreError> {
        match kind {
            ResourceKind::Node => Ok(Kind::Node),
            ResourceKind::IpPool
            | ResourceKind::ClusterInformation
            | ResourceKind::IpReservation => Ok(Kind::Resource(kind)),
            // KDD derives these from Pods and Namespaces; there is no object to write.
            ResourceKind::WorkloadEndpoint | ResourceKind::Profile => {
                Err(StoreError::Other(format!(
                    "{} are not stored in the Kubernetes datastore",
                    kind.plural()
                )))
            }
        }
    }

    /// The collection in `api` (Nodes are always core `v1`).
    pub fn api_resource(self, api: ApiGroup) -> ApiResource {
        let (g, v) = api.group_version();
        let (group, version, kind, plural) = match self {
            Kind::Block => (g, v, "IPAMBlock", "ipamblocks"),
            Kind::Affinity => (g, v, "BlockAffinity", "blockaffinities"),
            Kind::Handle => (g, v, "IPAMHandle", "ipamhandles"),
            Kind::IpamConfig if api == ApiGroup::V3 => {
                (g, v, "IPAMConfiguration", "ipamconfigurations")
            }
            Kind::IpamConfig => (g, v, "IPAMConfig", "ipamconfigs"),
            Kind::Resource(k) => (g, v, k.kind_name(), k.plural()),
            Kind::Node => ("", "v1", "Node", "nodes"),
        };
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    }
}

/// The object name for a key.
pub fn object_name(key: &Key) -> String {
    match key {
        Key::Block { cidr } => names::block_name(cidr),
        Key::Affinity { host, cidr, .. } => names::affinity_name(host, cidr),
        Key::Handle { id } => names::handle_name(id),
        Key::IpamConfig => "default".to_string(),
        Key::Resource { name, .. } => name.clone(),
    }
}

fn other(key: &Key, why: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("{key}: {why}"))
}

/// Parse a stored value as a JSON object (an empty affinity value is the legacy `{}`).
fn value_object(key: &Key, value: &str) -> Result<Map<String, Value>, StoreError> {
    if value.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str(value) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(other(key, "value is not a JSON object")),
        Err(e) => Err(other(key, format!("value is not valid JSON: {e}"))),
    }
}

fn rename(m: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(v) = m.remove(from) {
        m.insert(to.to_string(), v);
    }
}

fn ip_version_label(cidr: &IpNetwork) -> &'static str {
    match IpVersion::of_net(cidr) {
        IpVersion::V4 => "4",
        IpVersion::V6 => "6",
    }
}

/// Labels Calico puts on a BlockAffinity.
pub fn affinity_labels(affinity_type: &str, host: &str, cidr: &IpNetwork) -> Map<String, Value> {
    let mut l = Map::new();
    l.insert(
        names::LABEL_HOSTNAME_HASH.into(),
        json!(names::hostname_hash(host)),
    );
    l.insert(names::LABEL_AFFINITY_TYPE.into(), json!(affinity_type));
    l.insert(
        names::LABEL_IP_VERSION.into(),
        json!(ip_version_label(cidr)),
    );
    l
}

/// The Kubernetes object in `api` (without resourceVersion) that stores `value` under `key`.
pub fn to_object(key: &Key, value: &str, api: ApiGroup) -> Result<Value, StoreError> {
    let kind = Kind::of(key)?;
    let ar = kind.api_resource(api);
    let mut metadata = json!({"name": object_name(key)});
    let mut status = None;
    let spec: Value = match key {
        Key::Block { .. } => {
            let mut s = value_object(key, value)?;
            rename(&mut s, "affinity_claim_time", "affinityClaimTime");
            s.entry("strictAffinity").or_insert(json!(false));
            Value::Object(s)
        }
        Key::Affinity {
            affinity_type,
            host,
            cidr,
        } => {
            let mut s = value_object(key, value)?;
            let deleted = s.get("deleted").and_then(Value::as_bool).unwrap_or(false);
            // A string in the v1 CRD, a bool in v3.
            let deleted = match api {
                ApiGroup::CrdV1 => json!(deleted.to_string()),
                ApiGroup::V3 => json!(deleted),
            };
            s.insert("deleted".into(), deleted);
            s.insert("node".into(), json!(host));
            s.insert("type".into(), json!(affinity_type));
            s.insert("cidr".into(), json!(cidr.to_string()));
            metadata["labels"] = Value::Object(affinity_labels(affinity_type, host, cidr));
            Value::Object(s)
        }
        Key::Handle { id } => {
            let mut s = value_object(key, value)?;
            s.insert("handleID".into(), json!(id));
            Value::Object(s)
        }
        Key::IpamConfig => {
            let mut s = value_object(key, value)?;
            rename(&mut s, "strict_affinity", "strictAffinity");
            rename(&mut s, "auto_allocate_blocks", "autoAllocateBlocks");
            // Not omitempty in the CRD type: Go zero values are written explicitly.
            s.entry("strictAffinity").or_insert(json!(false));
            s.entry("autoAllocateBlocks").or_insert(json!(false));
            Value::Object(s)
        }
        Key::Resource { .. } => {
            if kind == Kind::Node {
                return Err(other(
                    key,
                    "Nodes are Kubernetes Nodes in the Kubernetes datastore (owned by the kubelet)",
                ));
            }
            let v = value_object(key, value)?;
            let meta = v.get("metadata").cloned().unwrap_or(json!({}));
            for f in ["labels", "annotations"] {
                if let Some(x) = meta.get(f).filter(|x| x.is_object()) {
                    metadata[f] = x.clone();
                }
            }
            status = v.get("status").filter(|s| s.is_object()).cloned();
            v.get("spec").cloned().unwrap_or(json!({}))
        }
    };
    let mut obj = json!({
        "apiVersion": ar.api_version,
        "kind": ar.kind,
        "metadata": metadata,
        "spec": spec,
    });
    // Resources keep their status (IPPool conditions such as Allocatable); an API server with
    // the status subresource ignores it on create/update, so this only matters for reading.
    if let Some(st) = status {
        obj["status"] = st;
    }
    Ok(obj)
}

/// A KDD object read back: its key, the etcdv3-shaped value, and whether Calico marked it
/// deleted (first step of its two-step delete; readers treat it as absent).
pub struct Decoded {
    pub key: Key,
    pub value: String,
    pub soft_deleted: bool,
}

fn spec_of(obj: &Value) -> Map<String, Value> {
    obj.get("spec")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn meta_str<'a>(obj: &'a Value, f: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(f)?.as_str()
}

/// Convert an object of `kind` back; `None` for objects that are not valid Calico objects
/// of that kind (listings skip them like plain KV stores skip foreign keys).
pub fn from_object(kind: Kind, obj: &Value) -> Option<Decoded> {
    let name = meta_str(obj, "name")?;
    let mut s = spec_of(obj);
    let (key, soft_deleted) = match kind {
        Kind::Block => {
            let cidr = s
                .get("cidr")
                .and_then(Value::as_str)
                .and_then(|c| c.parse().ok())
                .or_else(|| names::parse_block_name(name))?;
            rename(&mut s, "affinityClaimTime", "affinity_claim_time");
            if s.get("strictAffinity") == Some(&json!(false)) {
                s.remove("strictAffinity");
            }
            let deleted = s.get("deleted") == Some(&json!(true));
            (Key::block(cidr), deleted)
        }
        Kind::Affinity => {
            let host = s.remove("node")?.as_str()?.to_string();
            let cidr: IpNetwork = s.remove("cidr")?.as_str()?.parse().ok()?;
            let affinity_type = match s.remove("type") {
                Some(Value::String(t)) if !t.is_empty() => t,
                _ => AFFINITY_TYPE_HOST.to_string(),
            };
            // `deleted` is a string in v1 CRDs; accept a bool too (v3 objects).
            let deleted = matches!(s.get("deleted"), Some(Value::String(d)) if d == "true")
                || s.get("deleted") == Some(&json!(true));
            s.insert("deleted".into(), json!(deleted));
            let key = Key::Affinity {
                affinity_type,
                host,
                cidr,
            };
            (key, deleted)
        }
        Kind::Handle => {
            let id = match s.remove("handleID") {
                Some(Value::String(id)) if !id.is_empty() => id,
                _ => name.to_string(),
            };
            let deleted = s.get("deleted") == Some(&json!(true));
            (Key::handle(&id), deleted)
        }
        Kind::IpamConfig => {
            if name != "default" {
                return None;
            }
            rename(&mut s, "strictAffinity", "strict_affinity");
            rename(&mut s, "autoAllocateBlocks", "auto_allocate_blocks");
            // The etcd shape is omitempty.
            for f in ["strict_affinity", "auto_allocate_blocks"] {
                if s.get(f) == Some(&json!(false)) {
                    s.remove(f);
                }
            }
            (Key::IpamConfig, false)
        }
        Kind::Resource(rk) => {
            let v = v3_object(rk.kind_name(), obj, Value::Object(s));
            return Some(Decoded {
                key: Key::resource(rk, name),
                value: v.to_string(),
                soft_deleted: false,
            });
        }
        Kind::Node => {
            let v = node_object(obj);
            return Some(Decoded {
                key: Key::resource(ResourceKind::Node, name),
                value: v.to_string(),
                soft_deleted: false,
            });
        }
    };
    key.is_valid().then(|| Decoded {
        key,
        value: Value::Object(s).to_string(),
        soft_deleted,
    })
}

/// v3 metadata from a Kubernetes object (server fields plus labels/annotations).
fn v3_metadata(obj: &Value) -> Value {
    let mut m = Map::new();
    for f in [
        "name",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "labels",
    ] {
        if let Some(v) = obj.get("metadata").and_then(|x| x.get(f)) {
            m.insert(f.into(), v.clone());
        }
    }
    if let Some(Value::Object(a)) = obj.get("metadata").and_then(|x| x.get("annotations")) {
        let mut a = a.clone();
        a.remove(V3_METADATA_ANNOTATION);
        if !a.is_empty() {
            m.insert("annotations".into(), Value::Object(a));
        }
    }
    Value::Object(m)
}

fn v3_object(kind: &str, obj: &Value, spec: Value) -> Value {
    let mut v = json!({
        "kind": kind,
        "apiVersion": ipam::model::API_VERSION,
        "metadata": v3_metadata(obj),
        "spec": spec,
    });
    // IPPool status conditions (Allocatable=False) decide whether Calico allocates from it.
    if let Some(st) = obj.get("status").filter(|s| s.is_object()) {
        v["status"] = st.clone();
    }
    v
}

/// Calico's view of a Kubernetes Node: labels from the Node, BGP addresses from Calico's
/// node annotations, and the k8s orchestrator reference.
fn node_object(obj: &Value) -> Value {
    let name = meta_str(obj, "name").unwrap_or_default();
    let ann = |k: &str| {
        obj.pointer("/metadata/annotations")
            .and_then(|a| a.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let mut spec = json!({"orchRefs": [{"nodeName": name, "orchestrator": "k8s"}]});
    let mut bgp = Map::new();
    if let Some(a) = ann("projectcalico.org/IPv4Address") {
        bgp.insert("ipv4Address".into(), json!(a));
    }
    if let Some(a) = ann("projectcalico.org/IPv6Address") {
        bgp.insert("ipv6Address".into(), json!(a));
    }
    if !bgp.is_empty() {
        spec["bgp"] = Value::Object(bgp);
    }
    let mut meta = v3_metadata(obj);
    if let Some(m) = meta.as_object_mut() {
        m.remove("annotations");
    }
    json!({
        "kind": "Node",
        "apiVersion": ipam::model::API_VERSION,
        "metadata": meta,
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    fn round_trip(key: &Key, value: &str) -> (Value, Decoded) {
        round_trip_in(key, value, ApiGroup::CrdV1)
    }

    fn round_trip_in(key: &Key, value: &str, api: ApiGroup) -> (Value, Decoded) {
        let obj = to_object(key, value, api).unwrap();
        let d = from_object(Kind::of(key).unwrap(), &obj).unwrap();
        assert_eq!(&d.key, key);
        (obj, d)
    }

    #[test]
    fn block_shape() {
        let v = r#"{"affinity":"host:n1","affinity_claim_time":"2026-08-01T10:00:00Z","allocations":[0,null],"attributes":[{"handle_id":"h","secondary":{"node":"n1"}}],"cidr":"10.0.0.0/31","deleted":false,"sequenceNumber":5,"sequenceNumberForAllocation":{"0":4},"unallocated":[1]}"#;
        let (obj, d) = round_trip(&Key::block(net("10.0.0.0/31")), v);
        assert_eq!(obj["metadata"]["name"], "10-0-0-0-31");
        assert_eq!(obj["kind"], "IPAMBlock");
        assert_eq!(obj["apiVersion"], "crd.projectcalico.org/v1");
        assert_eq!(obj["spec"]["affinityClaimTime"], "2026-08-01T10:00:00Z");
        assert_eq!(obj["spec"]["strictAffinity"], false);
        assert!(obj["spec"].get("affinity_claim_time").is_none());
        assert_eq!(
            serde_json::from_str::<Value>(&d.value).unwrap(),
            serde_json::from_str::<Value>(v).unwrap()
        );
    }

    #[test]
    fn affinity_shape() {
        let key = Key::host_affinity("node1", net("10.244.1.0/26"));
        let (obj, d) = round_trip(&key, r#"{"state":"confirmed","deleted":false}"#);
        assert_eq!(obj["metadata"]["name"], "node1-10-244-1-0-26");
        assert_eq!(
            obj["spec"],
            json!({"state": "confirmed", "node": "node1", "type": "host",
                   "cidr": "10.244.1.0/26", "deleted": "false"})
        );
        assert_eq!(
            obj["metadata"]["labels"]["projectcalico.org/ip-version"],
            "4"
        );
        assert_eq!(
            obj["metadata"]["labels"]["projectcalico.org/affinity-type"],
            "host"
        );
        assert_eq!(d.value, r#"{"deleted":false,"state":"confirmed"}"#);
        assert!(!d.soft_deleted);
        let mut gone = obj.clone();
        gone["spec"]["deleted"] = json!("true");
        assert!(from_object(Kind::Affinity, &gone).unwrap().soft_deleted);
    }

    #[test]
    fn handle_config_and_pool_shapes() {
        let key = Key::handle("K8s-Pod-Network.ABC");
        let (obj, d) = round_trip(&key, r#"{"block":{"10.0.0.0/26":1},"deleted":false}"#);
        assert_eq!(obj["metadata"]["name"], "k8s-pod-network.abc");
        assert_eq!(obj["spec"]["handleID"], "K8s-Pod-Network.ABC");
        assert_eq!(d.value, r#"{"block":{"10.0.0.0/26":1},"deleted":false}"#);

        let (obj, d) = round_trip(&Key::IpamConfig, r#"{"auto_allocate_blocks":true}"#);
        assert_eq!(obj["metadata"]["name"], "default");
        assert_eq!(
            obj["spec"],
            json!({"strictAffinity": false, "autoAllocateBlocks": true})
        );
        assert_eq!(d.value, r#"{"auto_allocate_blocks":true}"#);

        let pool = r#"{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"p","labels":{"a":"b"}},"spec":{"cidr":"10.0.0.0/16","blockSize":26}}"#;
        let (obj, d) = round_trip(&Key::resource(ResourceKind::IpPool, "p"), pool);
        assert_eq!(obj["apiVersion"], "crd.projectcalico.org/v1");
        assert_eq!(obj["metadata"]["labels"]["a"], "b");
        let back: Value = serde_json::from_str(&d.value).unwrap();
        assert_eq!(back["apiVersion"], "projectcalico.org/v3");
        assert_eq!(back["spec"]["blockSize"], 26);
        assert!(Kind::of(&Key::resource(ResourceKind::Profile, "x")).is_err());
    }

    #[test]
    fn v3_group_shapes() {
        let v3 = ApiGroup::V3;
        let key = Key::host_affinity("node1", net("10.244.1.0/26"));
        let (obj, d) = round_trip_in(&key, r#"{"state":"confirmed","deleted":false}"#, v3);
        assert_eq!(obj["apiVersion"], "projectcalico.org/v3");
        assert_eq!(obj["kind"], "BlockAffinity");
        assert_eq!(obj["metadata"]["name"], "node1-10-244-1-0-26");
        assert_eq!(obj["spec"]["deleted"], json!(false), "a bool in v3");
        assert_eq!(d.value, r#"{"deleted":false,"state":"confirmed"}"#);
        let mut gone = obj.clone();
        gone["spec"]["deleted"] = json!(true);
        assert!(from_object(Kind::Affinity, &gone).unwrap().soft_deleted);

        let (obj, _) = round_trip_in(&Key::IpamConfig, r#"{"strict_affinity":true}"#, v3);
        assert_eq!(obj["kind"], "IPAMConfiguration");
        assert_eq!(obj["apiVersion"], "projectcalico.org/v3");
        assert_eq!(obj["metadata"]["name"], "default");
        let ar = Kind::IpamConfig.api_resource(v3);
        assert_eq!(
            (ar.group.as_str(), ar.plural.as_str()),
            ("projectcalico.org", "ipamconfigurations")
        );
        let ar = Kind::Block.api_resource(v3);
        assert_eq!(ar.api_version, "projectcalico.org/v3");
        assert_eq!(Kind::Node.api_resource(v3).api_version, "v1");

        let (obj, _) = round_trip_in(
            &Key::block(net("10.0.0.0/30")),
            r#"{"cidr":"10.0.0.0/30","allocations":[null,null,null,null],"unallocated":[0,1,2,3],"attributes":[]}"#,
            v3,
        );
        assert_eq!(obj["kind"], "IPAMBlock");
        assert_eq!(obj["metadata"]["name"], "10-0-0-0-30");
        let pool = r#"{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"p"},"spec":{"cidr":"10.0.0.0/16"}}"#;
        let (obj, _) = round_trip_in(&Key::resource(ResourceKind::IpPool, "p"), pool, v3);
        assert_eq!(obj["apiVersion"], "projectcalico.org/v3");
    }
}

/// Fuzzing of the KDD object decoder (what an API server hands back, possibly written by
/// something else): never a panic, and what decodes converts back into an object.
/// Bounded here; `PROPTEST_CASES` raises it (netns-tests/bench/fuzz.sh).
#[cfg(test)]
mod fuzz {
    use super::*;
    use cni::strategies::{any_json, cases, mutated};
    use proptest::prelude::*;

    const FIELDS: &[&str] = &[
        "/metadata",
        "/metadata/name",
        "/metadata/annotations",
        "/spec",
        "/spec/cidr",
        "/spec/node",
        "/spec/type",
        "/spec/deleted",
        "/spec/handleID",
        "/spec/block",
        "/spec/allocations",
        "/spec/unallocated",
        "/spec/attributes",
        "/spec/affinityClaimTime",
        "/spec/strictAffinity",
    ];

    fn base() -> Value {
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMBlock",
            "metadata": {"name": "10-244-1-0-26"},
            "spec": {"cidr": "10.244.1.0/26", "affinity": "host:node-1", "node": "node-1",
                "type": "host", "deleted": "false", "handleID": "net.ctr",
                "allocations": [0, null], "unallocated": [1], "attributes": [],
                "strictAffinity": false}})
    }

    fn kinds() -> impl Strategy<Value = Kind> {
        prop_oneof![
            Just(Kind::Block),
            Just(Kind::Affinity),
            Just(Kind::Handle),
            Just(Kind::IpamConfig),
            Just(Kind::Node),
            proptest::sample::select(&ResourceKind::ALL[..]).prop_map(Kind::Resource),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

        #[test]
        fn kdd_objects(kind in kinds(), obj in prop_oneof![mutated(base(), FIELDS), any_json(FIELDS)]) {
            for api in [ApiGroup::CrdV1, ApiGroup::V3] {
                if let Some(d) = from_object(kind, &obj) {
                    let _ = to_object(&d.key, &d.value, api);
                }
            }
        }

        #[test]
        fn block_names(name in "[0-9a-f:-]{0,40}") {
            if let Some(cidr) = names::parse_block_name(&name) {
                prop_assert_eq!(names::parse_block_name(&names::block_name(&cidr)), Some(cidr));
            }
        }
    }
}
