//! Datastore keys: the typed identity of every object the IPAM touches, and their etcdv3 paths.
//!
//! Paths are byte-for-byte Calico's etcdv3 layout (libcalico-go `model` keys), because Felix,
//! calicoctl and kube-controllers read the same keys. Stores that are plain KV (etcd, SQLite,
//! memory) use [`Key::path`] / [`Key::from_path`]; a store that maps objects elsewhere (e.g.
//! Kubernetes CRDs) can match on the typed variants instead.

use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// Root of all IPAM (v2) keys.
pub const IPAM_ROOT: &str = "/calico/ipam/v2/";
/// Root of v3 API resources.
pub const RESOURCES_ROOT: &str = "/calico/resources/v3/projectcalico.org/";
/// Default affinity type (`host:<node>` affinities); load balancers use `virtual`.
pub const AFFINITY_TYPE_HOST: &str = "host";

/// IP family of a block, affinity or pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpVersion {
    V4,
    V6,
}

impl IpVersion {
    /// Of an address.
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() {
            IpVersion::V4
        } else {
            IpVersion::V6
        }
    }

    /// Of a network.
    pub fn of_net(net: &IpNetwork) -> Self {
        Self::of(net.ip())
    }

    /// `4` or `6`.
    pub fn number(self) -> u8 {
        match self {
            IpVersion::V4 => 4,
            IpVersion::V6 => 6,
        }
    }

    /// Path segment `ipv4` / `ipv6`.
    pub fn segment(self) -> &'static str {
        match self {
            IpVersion::V4 => "ipv4",
            IpVersion::V6 => "ipv6",
        }
    }

    fn from_segment(s: &str) -> Option<Self> {
        match s {
            "ipv4" => Some(IpVersion::V4),
            "ipv6" => Some(IpVersion::V6),
            _ => None,
        }
    }
}

/// Kinds of `projectcalico.org/v3` resources stored under [`RESOURCES_ROOT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    IpPool,
    Node,
    ClusterInformation,
    WorkloadEndpoint,
    Profile,
    IpReservation,
}

impl ResourceKind {
    /// All known kinds.
    pub const ALL: [ResourceKind; 6] = [
        ResourceKind::IpPool,
        ResourceKind::Node,
        ResourceKind::ClusterInformation,
        ResourceKind::WorkloadEndpoint,
        ResourceKind::Profile,
        ResourceKind::IpReservation,
    ];

    /// The lower-case plural used in paths (and CRD plural names).
    pub fn plural(self) -> &'static str {
        match self {
            ResourceKind::IpPool => "ippools",
            ResourceKind::Node => "nodes",
            ResourceKind::ClusterInformation => "clusterinformations",
            ResourceKind::WorkloadEndpoint => "workloadendpoints",
            ResourceKind::Profile => "profiles",
            ResourceKind::IpReservation => "ipreservations",
        }
    }

    /// The `kind` field of the stored object.
    pub fn kind_name(self) -> &'static str {
        match self {
            ResourceKind::IpPool => "IPPool",
            ResourceKind::Node => "Node",
            ResourceKind::ClusterInformation => "ClusterInformation",
            ResourceKind::WorkloadEndpoint => "WorkloadEndpoint",
            ResourceKind::Profile => "Profile",
            ResourceKind::IpReservation => "IPReservation",
        }
    }

    /// Whether objects of this kind live in a namespace (`…/<plural>/<ns>/<name>`).
    pub fn namespaced(self) -> bool {
        matches!(self, ResourceKind::WorkloadEndpoint)
    }

    fn from_plural(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.plural() == s)
    }
}

/// Identity of one stored object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// `/calico/ipam/v2/assignment/ipv4/block/10.244.1.0-26` → `AllocationBlock`.
    Block { cidr: IpNetwork },
    /// `/calico/ipam/v2/<affinity_type>/<host>/ipv4/block/10.244.1.0-26` → `BlockAffinity`.
    /// `affinity_type` is `host` for nodes (`virtual` for load balancers).
    Affinity {
        affinity_type: String,
        host: String,
        cidr: IpNetwork,
    },
    /// `/calico/ipam/v2/handle/<id>` → `IpamHandle`.
    Handle { id: String },
    /// `/calico/ipam/v2/config` → `IpamConfig`.
    IpamConfig,
    /// `/calico/resources/v3/projectcalico.org/<plural>[/<namespace>]/<name>` → v3 resource JSON.
    Resource {
        kind: ResourceKind,
        namespace: Option<String>,
        name: String,
    },
}

fn cidr_segment(cidr: &IpNetwork) -> String {
    // Only the `/` becomes `-` (IPv6 colons stay).
    format!("{}-{}", cidr.ip(), cidr.prefix())
}

fn parse_cidr_segment(s: &str) -> Option<IpNetwork> {
    let (ip, prefix) = s.rsplit_once('-')?;
    let ip: IpAddr = ip.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    IpNetwork::new(ip, prefix).ok()
}

/// A path segment must not be empty or contain `/` (it would change the key's shape).
fn valid_segment(s: &str) -> bool {
    !s.is_empty() && !s.contains('/')
}

impl Key {
    /// Block key for a block CIDR.
    pub fn block(cidr: IpNetwork) -> Self {
        Key::Block { cidr }
    }

    /// Host affinity key (`host` type).
    pub fn host_affinity(host: &str, cidr: IpNetwork) -> Self {
        Key::Affinity {
            affinity_type: AFFINITY_TYPE_HOST.to_string(),
            host: host.to_string(),
            cidr,
        }
    }

    /// Handle key.
    pub fn handle(id: &str) -> Self {
        Key::Handle { id: id.to_string() }
    }

    /// Cluster-scoped resource key.
    pub fn resource(kind: ResourceKind, name: &str) -> Self {
        Key::Resource {
            kind,
            namespace: None,
            name: name.to_string(),
        }
    }

    /// The etcdv3 path.
    pub fn path(&self) -> String {
        match self {
            Key::Block { cidr } => format!(
                "{IPAM_ROOT}assignment/{}/block/{}",
                IpVersion::of_net(cidr).segment(),
                cidr_segment(cidr)
            ),
            Key::Affinity {
                affinity_type,
                host,
                cidr,
            } => format!(
                "{IPAM_ROOT}{affinity_type}/{host}/{}/block/{}",
                IpVersion::of_net(cidr).segment(),
                cidr_segment(cidr)
            ),
            Key::Handle { id } => format!("{IPAM_ROOT}handle/{id}"),
            Key::IpamConfig => format!("{IPAM_ROOT}config"),
            Key::Resource {
                kind,
                namespace,
                name,
            } => match namespace {
                Some(ns) => format!("{RESOURCES_ROOT}{}/{ns}/{name}", kind.plural()),
                None => format!("{RESOURCES_ROOT}{}/{name}", kind.plural()),
            },
        }
    }

    /// Whether every name segment is usable in a path (non-empty, no `/`). Writers must check
    /// this before storing: a node name or handle with `/` would alias another key.
    pub fn is_valid(&self) -> bool {
        match self {
            Key::Block { .. } | Key::IpamConfig => true,
            Key::Affinity {
                affinity_type,
                host,
                ..
            } => valid_segment(affinity_type) && valid_segment(host),
            Key::Handle { id } => valid_segment(id),
            Key::Resource {
                kind,
                namespace,
                name,
            } => {
                valid_segment(name)
                    && match namespace {
                        Some(ns) => kind.namespaced() && valid_segment(ns),
                        None => !kind.namespaced(),
                    }
            }
        }
    }

    /// Parse an etcdv3 path back into a key. `None` for paths that are not one of our keys
    /// (e.g. the legacy host marker `/calico/ipam/v2/host/<node>`), so listers can skip them.
    pub fn from_path(path: &str) -> Option<Key> {
        if let Some(rest) = path.strip_prefix(IPAM_ROOT) {
            return Self::parse_ipam(rest);
        }
        let rest = path.strip_prefix(RESOURCES_ROOT)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let (kind, namespace, name) = match parts.as_slice() {
            [plural, name] => (ResourceKind::from_plural(plural)?, None, *name),
            [plural, ns, name] => (
                ResourceKind::from_plural(plural)?,
                Some(ns.to_string()),
                *name,
            ),
            _ => return None,
        };
        let key = Key::Resource {
            kind,
            namespace,
            name: name.to_string(),
        };
        key.is_valid().then_some(key)
    }

    fn parse_ipam(rest: &str) -> Option<Key> {
        if rest == "config" {
            return Some(Key::IpamConfig);
        }
        if let Some(id) = rest.strip_prefix("handle/") {
            return valid_segment(id).then(|| Key::handle(id));
        }
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["assignment", ver, "block", cidr] => {
                let cidr = parse_cidr_segment(cidr)?;
                (IpVersion::from_segment(ver)? == IpVersion::of_net(&cidr))
                    .then_some(Key::Block { cidr })
            }
            [aff_type, host, ver, "block", cidr] if valid_segment(host) => {
                let cidr = parse_cidr_segment(cidr)?;
                (IpVersion::from_segment(ver)? == IpVersion::of_net(&cidr)).then(|| Key::Affinity {
                    affinity_type: aff_type.to_string(),
                    host: host.to_string(),
                    cidr,
                })
            }
            _ => None,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// A typed "list" request. Plain KV stores list [`ListPrefix::path`] and keep only the keys
/// for which [`ListPrefix::matches`] holds (see [`crate::store::filter_listed`]); other stores
/// may translate the variant into their own query (e.g. a label selector).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListPrefix {
    /// All blocks, optionally of one family.
    Blocks { version: Option<IpVersion> },
    /// Affinities, optionally restricted to one host (of type `host`) and/or one family.
    Affinities {
        host: Option<String>,
        version: Option<IpVersion>,
    },
    /// All handles.
    Handles,
    /// All resources of a kind, optionally within one namespace.
    Resources {
        kind: ResourceKind,
        namespace: Option<String>,
    },
    /// Resources of a kind in one namespace whose names start with `name_prefix` (Calico's
    /// prefix list of a workload's endpoints: one etcd range read, not the whole namespace).
    NamedResources {
        kind: ResourceKind,
        namespace: String,
        name_prefix: String,
    },
}

impl ListPrefix {
    /// The longest etcd key prefix that covers every matching key.
    pub fn path(&self) -> String {
        match self {
            ListPrefix::Blocks { version: None } => format!("{IPAM_ROOT}assignment/"),
            ListPrefix::Blocks { version: Some(v) } => {
                format!("{IPAM_ROOT}assignment/{}/block/", v.segment())
            }
            ListPrefix::Affinities {
                host: Some(h),
                version: Some(v),
            } => format!("{IPAM_ROOT}{AFFINITY_TYPE_HOST}/{h}/{}/block/", v.segment()),
            ListPrefix::Affinities {
                host: Some(h),
                version: None,
            } => format!("{IPAM_ROOT}{AFFINITY_TYPE_HOST}/{h}/"),
            // Affinity types other than `host` live beside `host/`, so an unrestricted list
            // must scan the whole IPAM root and filter.
            ListPrefix::Affinities { host: None, .. } => IPAM_ROOT.to_string(),
            ListPrefix::Handles => format!("{IPAM_ROOT}handle/"),
            ListPrefix::Resources {
                kind,
                namespace: Some(ns),
            } => format!("{RESOURCES_ROOT}{}/{ns}/", kind.plural()),
            ListPrefix::Resources {
                kind,
                namespace: None,
            } => format!("{RESOURCES_ROOT}{}/", kind.plural()),
            ListPrefix::NamedResources {
                kind,
                namespace,
                name_prefix,
            } => format!(
                "{RESOURCES_ROOT}{}/{namespace}/{name_prefix}",
                kind.plural()
            ),
        }
    }

    /// Whether `key` belongs to this listing.
    pub fn matches(&self, key: &Key) -> bool {
        let fam_ok = |v: &Option<IpVersion>, cidr: &IpNetwork| {
            v.is_none_or(|v| v == IpVersion::of_net(cidr))
        };
        match (self, key) {
            (ListPrefix::Blocks { version }, Key::Block { cidr }) => fam_ok(version, cidr),
            (
                ListPrefix::Affinities { host, version },
                Key::Affinity {
                    affinity_type,
                    host: kh,
                    cidr,
                },
            ) => {
                fam_ok(version, cidr)
                    && host
                        .as_ref()
                        .is_none_or(|h| h == kh && affinity_type == AFFINITY_TYPE_HOST)
            }
            (ListPrefix::Handles, Key::Handle { .. }) => true,
            (
                ListPrefix::Resources { kind, namespace },
                Key::Resource {
                    kind: kk,
                    namespace: kn,
                    ..
                },
            ) => kind == kk && (namespace.is_none() || namespace == kn),
            (
                ListPrefix::NamedResources {
                    kind,
                    namespace,
                    name_prefix,
                },
                Key::Resource {
                    kind: kk,
                    namespace: kn,
                    name,
                },
            ) => kind == kk && kn.as_deref() == Some(namespace) && name.starts_with(name_prefix),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn named_resources_list_one_name_prefix() {
        let prefix = ListPrefix::NamedResources {
            kind: ResourceKind::WorkloadEndpoint,
            namespace: "default".into(),
            name_prefix: "node--1-cni-abc-".into(),
        };
        assert_eq!(
            prefix.path(),
            "/calico/resources/v3/projectcalico.org/workloadendpoints/default/node--1-cni-abc-"
        );
        let wep = |ns: &str, name: &str| Key::Resource {
            kind: ResourceKind::WorkloadEndpoint,
            namespace: Some(ns.into()),
            name: name.into(),
        };
        assert!(prefix.matches(&wep("default", "node--1-cni-abc-eth1")));
        assert!(!prefix.matches(&wep("other", "node--1-cni-abc-eth1")));
        assert!(!prefix.matches(&wep("default", "node--1-cni-abd-eth0")));
    }

    #[test]
    fn paths_match_calico_layout() {
        assert_eq!(
            Key::block(net("10.244.1.0/26")).path(),
            "/calico/ipam/v2/assignment/ipv4/block/10.244.1.0-26"
        );
        assert_eq!(
            Key::block(net("fd00:10:244::/122")).path(),
            "/calico/ipam/v2/assignment/ipv6/block/fd00:10:244::-122"
        );
        assert_eq!(
            Key::host_affinity("node1", net("10.244.1.0/26")).path(),
            "/calico/ipam/v2/host/node1/ipv4/block/10.244.1.0-26"
        );
        assert_eq!(
            Key::handle("k8s-pod-network.abc").path(),
            "/calico/ipam/v2/handle/k8s-pod-network.abc"
        );
        assert_eq!(Key::IpamConfig.path(), "/calico/ipam/v2/config");
        assert_eq!(
            Key::resource(ResourceKind::IpPool, "default-ipv4-ippool").path(),
            "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool"
        );
        let wep = Key::Resource {
            kind: ResourceKind::WorkloadEndpoint,
            namespace: Some("default".into()),
            name: "node1-k8s-nginx-eth0".into(),
        };
        assert_eq!(
            wep.path(),
            "/calico/resources/v3/projectcalico.org/workloadendpoints/default/node1-k8s-nginx-eth0"
        );
    }

    #[test]
    fn paths_round_trip() {
        let keys = [
            Key::block(net("10.244.1.0/26")),
            Key::block(net("fd00:10:244::/122")),
            Key::host_affinity("node-1.example", net("fd00:10:244::40/122")),
            Key::handle("k8s-pod-network.3f1c"),
            Key::IpamConfig,
            Key::resource(ResourceKind::ClusterInformation, "default"),
            Key::resource(ResourceKind::Node, "node1"),
        ];
        for k in keys {
            assert_eq!(Key::from_path(&k.path()), Some(k.clone()), "{k}");
        }
    }

    #[test]
    fn foreign_paths_are_skipped() {
        assert_eq!(Key::from_path("/calico/ipam/v2/host/node1"), None);
        assert_eq!(
            Key::from_path("/calico/ipam/v2/assignment/ipv6/block/10.0.0.0-26"),
            None
        );
        assert_eq!(
            Key::from_path("/calico/resources/v3/projectcalico.org/ippools/a/b"),
            None
        );
        assert_eq!(Key::from_path("/other"), None);
    }

    #[test]
    fn list_prefixes_filter() {
        let all = ListPrefix::Affinities {
            host: None,
            version: Some(IpVersion::V4),
        };
        let mine = ListPrefix::Affinities {
            host: Some("n1".into()),
            version: None,
        };
        let a = Key::host_affinity("n1", net("10.0.0.0/26"));
        let b = Key::host_affinity("n2", net("fd00::/122"));
        assert!(all.matches(&a) && !all.matches(&b));
        assert!(mine.matches(&a) && !mine.matches(&b));
        assert!(a.path().starts_with(&mine.path()));
        assert!(b.path().starts_with(&all.path()));
        assert!(!ListPrefix::Handles.matches(&a));
    }

    #[test]
    fn invalid_segments_are_rejected() {
        assert!(!Key::handle("a/b").is_valid());
        assert!(!Key::host_affinity("", net("10.0.0.0/26")).is_valid());
        assert!(Key::host_affinity("n", net("10.0.0.0/26")).is_valid());
    }
}
