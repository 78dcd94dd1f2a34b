//! The resource types this server knows and how request paths map onto them.
//!
//! A real API server answers 404 for any group/version/plural it does not serve; so does this
//! one, so a client typo (wrong plural, wrong group) fails here the way it would in a cluster.

/// One served resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Whether `status` is a subresource (main-resource writes keep the old status, `/status`
    /// writes keep everything but status and metadata).
    pub status_subresource: bool,
}

const fn core(
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    status: bool,
) -> Resource {
    Resource {
        group: "",
        version: "v1",
        plural,
        kind,
        namespaced,
        status_subresource: status,
    }
}

const fn crd(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
) -> Resource {
    Resource {
        group,
        version,
        plural,
        kind,
        namespaced: false,
        status_subresource: false,
    }
}

const CALICO_V1: &str = "crd.projectcalico.org";
const CALICO_V3: &str = "projectcalico.org";

/// Every served resource.
pub const RESOURCES: &[Resource] = &[
    core("namespaces", "Namespace", false, true),
    core("nodes", "Node", false, true),
    core("pods", "Pod", true, true),
    core("serviceaccounts", "ServiceAccount", true, false),
    core("configmaps", "ConfigMap", true, false),
    crd(CALICO_V1, "v1", "ippools", "IPPool"),
    crd(CALICO_V1, "v1", "ipamblocks", "IPAMBlock"),
    crd(CALICO_V1, "v1", "blockaffinities", "BlockAffinity"),
    crd(CALICO_V1, "v1", "ipamhandles", "IPAMHandle"),
    crd(CALICO_V1, "v1", "ipamconfigs", "IPAMConfig"),
    crd(CALICO_V1, "v1", "clusterinformations", "ClusterInformation"),
    crd(CALICO_V1, "v1", "ipreservations", "IPReservation"),
    crd(CALICO_V1, "v1", "felixconfigurations", "FelixConfiguration"),
    crd(CALICO_V1, "v1", "bgpconfigurations", "BGPConfiguration"),
    crd(CALICO_V3, "v3", "ippools", "IPPool"),
    crd(CALICO_V3, "v3", "ipamblocks", "IPAMBlock"),
    crd(CALICO_V3, "v3", "blockaffinities", "BlockAffinity"),
    crd(CALICO_V3, "v3", "ipamhandles", "IPAMHandle"),
    crd(CALICO_V3, "v3", "ipamconfigurations", "IPAMConfiguration"),
    crd(CALICO_V3, "v3", "clusterinformations", "ClusterInformation"),
    crd(CALICO_V3, "v3", "ipreservations", "IPReservation"),
    Resource {
        group: "kubevirt.io",
        version: "v1",
        plural: "virtualmachineinstances",
        kind: "VirtualMachineInstance",
        namespaced: true,
        status_subresource: true,
    },
    Resource {
        group: "kubevirt.io",
        version: "v1",
        plural: "virtualmachines",
        kind: "VirtualMachine",
        namespaced: true,
        status_subresource: true,
    },
];

impl Resource {
    /// `v1` or `group/version`, as in an object's `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `ipamblocks.crd.projectcalico.org`, as used in error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether this is a core (built-in) type: list items then carry no kind/apiVersion, and
    /// unconditional updates are allowed.
    pub fn is_core(&self) -> bool {
        self.group.is_empty()
    }

    /// Find by `apiVersion` and `kind` (for seeding).
    pub fn by_type(api_version: &str, kind: &str) -> Option<&'static Resource> {
        RESOURCES
            .iter()
            .find(|r| r.kind == kind && r.api_version() == api_version)
    }

    fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
        RESOURCES
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }
}

/// A parsed request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub resource: &'static Resource,
    /// The namespace from the URL (`None` for cluster-scoped or all-namespace requests).
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// Subresource (`status`).
    pub sub: Option<String>,
}

/// Why a path did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// Unknown group/version/resource or malformed path: 404 like a real server.
    NotFound,
}

/// Parse `/api/v1/...` or `/apis/<group>/<version>/...`.
pub fn parse_path(path: &str) -> Result<Target, PathError> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return Err(PathError::NotFound);
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(PathError::NotFound),
    };
    let lookup =
        |plural: &str| Resource::by_plural(group, version, plural).ok_or(PathError::NotFound);
    let own = |s: &&str| Some(s.to_string());
    let t = match rest {
        // `/api/v1/namespaces/<ns>/<plural>[/<name>[/<sub>]]` is namespaced; the 2-segment form
        // `/api/v1/namespaces/<name>` is the Namespace object itself.
        ["namespaces", ns, plural, tail @ ..] if *plural != "status" => {
            let resource = lookup(plural)?;
            if !resource.namespaced {
                return Err(PathError::NotFound);
            }
            let (name, sub) = match tail {
                [] => (None, None),
                [n] => (own(n), None),
                [n, s] => (own(n), own(s)),
                _ => return Err(PathError::NotFound),
            };
            Target {
                resource,
                namespace: own(ns),
                name,
                sub,
            }
        }
        [plural, tail @ ..] => {
            let resource = lookup(plural)?;
            let (name, sub) = match tail {
                [] => (None, None),
                [n] => (own(n), None),
                [n, s] => (own(n), own(s)),
                _ => return Err(PathError::NotFound),
            };
            // Namespaced objects are only addressable by name inside their namespace; a bare
            // `/api/v1/pods` lists across namespaces.
            if resource.namespaced && name.is_some() {
                return Err(PathError::NotFound);
            }
            Target {
                resource,
                namespace: None,
                name,
                sub,
            }
        }
        _ => return Err(PathError::NotFound),
    };
    match t.sub.as_deref() {
        None => Ok(t),
        Some("status") if t.resource.status_subresource => Ok(t),
        Some(_) => Err(PathError::NotFound),
    }
}

/// The path of an object (for seeding and lookups).
pub fn object_path(r: &Resource, namespace: Option<&str>, name: &str) -> String {
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    match namespace {
        Some(ns) if r.namespaced => format!("{base}/namespaces/{ns}/{}/{name}", r.plural),
        _ => format!("{base}/{}/{name}", r.plural),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve() {
        let t = parse_path("/api/v1/namespaces/default/pods/nginx/status").unwrap();
        assert_eq!(t.resource.kind, "Pod");
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("nginx"));
        assert_eq!(t.sub.as_deref(), Some("status"));
        let t = parse_path("/api/v1/namespaces/default").unwrap();
        assert_eq!(t.resource.kind, "Namespace");
        assert_eq!(t.name.as_deref(), Some("default"));
        let t = parse_path("/apis/crd.projectcalico.org/v1/ipamblocks/10-0-0-0-26").unwrap();
        assert_eq!(t.resource.kind, "IPAMBlock");
        assert!(parse_path("/api/v1/pods").unwrap().name.is_none());
        for bad in [
            "/api/v1/pods/x",
            "/apis/crd.projectcalico.org/v1/ipamblockz",
            "/apis/crd.projectcalico.org/v2/ipamblocks",
            "/api/v1/namespaces/default/nodes/n1",
            "/apis/crd.projectcalico.org/v1/ipamblocks/x/status",
            "/api/v1/nodes/a/b/c",
            "/foo",
        ] {
            assert_eq!(parse_path(bad), Err(PathError::NotFound), "{bad}");
        }
        let pod = Resource::by_type("v1", "Pod").unwrap();
        assert_eq!(
            object_path(pod, Some("ns"), "p"),
            "/api/v1/namespaces/ns/pods/p"
        );
    }
}
