//! The discovery documents a real API server serves (`/api`, `/apis`, `/apis/<group>`,
//! `/apis/<group>/<version>`), built from [`RESOURCES`] minus the groups a test marked as not
//! installed. Clients such as Calico's use `/apis` to tell which of its API groups is served.

use serde_json::{json, Value};

use crate::resources::{Resource, RESOURCES};

/// The document for a discovery path, or `None` when `path` is not one (then it is routed as
/// an object path, which answers 404 for unknown groups).
pub fn answer(method: &str, path: &str, uninstalled: &[String]) -> Option<Value> {
    if method != "GET" {
        return None;
    }
    let served = |r: &&Resource| !uninstalled.iter().any(|g| g == r.group);
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api"] => Some(json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        })),
        ["api", "v1"] => Some(resource_list("v1", "")),
        ["apis"] => {
            let mut groups: Vec<&str> = Vec::new();
            for r in RESOURCES.iter().filter(served).filter(|r| !r.is_core()) {
                if !groups.contains(&r.group) {
                    groups.push(r.group);
                }
            }
            let groups: Vec<Value> = groups.into_iter().filter_map(group).collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        ["apis", g] if !uninstalled.iter().any(|u| u == g) => group(g).map(|mut v| {
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            v
        }),
        ["apis", g, v] if !uninstalled.iter().any(|u| u == g) => RESOURCES
            .iter()
            .any(|r| r.group == *g && r.version == *v)
            .then(|| resource_list(&format!("{g}/{v}"), g)),
        _ => None,
    }
}

/// One entry of an `APIGroupList` (each group here serves one version).
fn group(name: &str) -> Option<Value> {
    let r = RESOURCES.iter().find(|r| r.group == name)?;
    let gv = json!({"groupVersion": r.api_version(), "version": r.version});
    Some(json!({"name": name, "versions": [gv], "preferredVersion": gv}))
}

/// The `APIResourceList` of one group/version.
fn resource_list(group_version: &str, group: &str) -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.api_version() == group_version)
        .map(|r| {
            json!({
                "name": r.plural,
                "singularName": r.kind.to_ascii_lowercase(),
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update"],
            })
        })
        .collect();
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group_names(v: &Value) -> Vec<&str> {
        v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn apis_lists_served_groups_only() {
        let all = answer("GET", "/apis", &[]).unwrap();
        let names = group_names(&all);
        assert!(names.contains(&"crd.projectcalico.org"));
        assert!(names.contains(&"projectcalico.org"));
        let v1_only = answer("GET", "/apis", &["projectcalico.org".into()]).unwrap();
        assert!(!group_names(&v1_only).contains(&"projectcalico.org"));
        assert!(answer(
            "GET",
            "/apis/projectcalico.org",
            &["projectcalico.org".into()]
        )
        .is_none());
        let g = answer("GET", "/apis/projectcalico.org", &[]).unwrap();
        assert_eq!(
            g["preferredVersion"]["groupVersion"],
            "projectcalico.org/v3"
        );
        let l = answer("GET", "/apis/crd.projectcalico.org/v1", &[]).unwrap();
        assert!(l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "ipamblocks"));
        assert!(answer("GET", "/apis/crd.projectcalico.org/v9", &[]).is_none());
        assert!(answer("POST", "/apis", &[]).is_none());
    }
}
