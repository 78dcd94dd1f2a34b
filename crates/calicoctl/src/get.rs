//! `calicoctl get <TYPE> [NAME] [-o ps|wide|yaml|json]`: calicoctl's output shapes and
//! columns. A named get prints the object, otherwise a `kind: <Kind>List`; YAML/JSON objects
//! carry `metadata.resourceVersion` (the datastore revision), as calicoctl shows them.
//!
//! IPAM objects are shown in their `projectcalico.org/v3` form whatever the datastore stores:
//! the IPAM config as IPAMConfiguration `default`, host affinities as BlockAffinity objects
//! named `<node>-<cidr>` (KDD's names).

use ipam::model::{BlockAffinity, IpamConfig};
use ipam::{Key, KvPair, ListPrefix, ResourceKind, Store};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::args::{Kind, OutputFormat};
use crate::error::{CtlError, CtlResult};
use crate::{output, pools, reservations};

/// Render `kind` resources (`name` selects one; `namespace` `None` = all namespaces).
pub fn get(
    store: &dyn Store,
    kind: Kind,
    name: Option<&str>,
    format: OutputFormat,
    namespace: Option<&str>,
) -> CtlResult<String> {
    let items = match kind {
        Kind::IpPool => return ippools(store, name, format),
        Kind::IpReservation => match name {
            Some(n) => vec![reservations::get(store, n)?],
            None => reservations::list(store)?,
        }
        .iter()
        .map(|r| to_value(&r.with_resource_version()))
        .collect(),
        Kind::Node => resources(store, ResourceKind::Node, None, name)?,
        Kind::WorkloadEndpoint => {
            resources(store, ResourceKind::WorkloadEndpoint, namespace, name)?
        }
        Kind::IpamConfig => ipam_configs(store, name)?,
        Kind::BlockAffinity => block_affinities(store, name)?,
    };
    match format {
        OutputFormat::Json | OutputFormat::Yaml => render_items(kind, name, items, format),
        OutputFormat::Ps | OutputFormat::Wide => {
            let wide = format == OutputFormat::Wide;
            let all_ns = namespace.is_none() && kind == Kind::WorkloadEndpoint;
            let (headers, rows) = table(kind, &items, wide, all_ns);
            Ok(output::columns(&headers, &rows))
        }
    }
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn with_rv(kv: &KvPair) -> CtlResult<Value> {
    let mut v: Value = serde_json::from_str(&kv.value).map_err(|e| CtlError::Parse {
        what: kv.key.path(),
        reason: e.to_string(),
    })?;
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(kv.revision.to_string()));
    }
    Ok(v)
}

/// Stored v3 resources of `rk` (one when `name` is given).
fn resources(
    store: &dyn Store,
    rk: ResourceKind,
    namespace: Option<&str>,
    name: Option<&str>,
) -> CtlResult<Vec<Value>> {
    if let Some(n) = name {
        let key = Key::Resource {
            kind: rk,
            namespace: rk
                .namespaced()
                .then(|| namespace.unwrap_or("default").to_string()),
            name: n.to_string(),
        };
        return match store.get_opt(&key)? {
            Some(kv) => Ok(vec![with_rv(&kv)?]),
            None => Err(CtlError::NotFound {
                kind: rk.kind_name(),
                name: n.to_string(),
            }),
        };
    }
    store
        .list(&ListPrefix::Resources {
            kind: rk,
            namespace: namespace.filter(|_| rk.namespaced()).map(str::to_string),
        })?
        .iter()
        .map(with_rv)
        .collect()
}

/// The IPAM config as calicoctl shows it: IPAMConfiguration `default` (none when unset).
fn ipam_configs(store: &dyn Store, name: Option<&str>) -> CtlResult<Vec<Value>> {
    let not_found = |n: &str| CtlError::NotFound {
        kind: "IPAMConfiguration",
        name: n.to_string(),
    };
    if let Some(n) = name.filter(|n| *n != "default") {
        return Err(not_found(n));
    }
    let Some(kv) = store.get_opt(&Key::IpamConfig)? else {
        return match name {
            Some(n) => Err(not_found(n)),
            None => Ok(Vec::new()),
        };
    };
    let c: IpamConfig = serde_json::from_str(&kv.value).map_err(|e| CtlError::Parse {
        what: kv.key.path(),
        reason: e.to_string(),
    })?;
    Ok(vec![json!({
        "kind": "IPAMConfiguration",
        "apiVersion": ipam::model::API_VERSION,
        "metadata": {"name": "default", "resourceVersion": kv.revision.to_string()},
        "spec": {
            "strictAffinity": c.strict_affinity,
            "autoAllocateBlocks": c.auto_allocate_blocks,
            "maxBlocksPerHost": c.max_blocks_per_host,
        },
    })])
}

/// Block affinities as v3 BlockAffinity objects.
fn block_affinities(store: &dyn Store, name: Option<&str>) -> CtlResult<Vec<Value>> {
    let mut out = Vec::new();
    for kv in store.list(&ListPrefix::Affinities {
        host: None,
        version: None,
    })? {
        let Key::Affinity {
            affinity_type,
            host,
            cidr,
        } = &kv.key
        else {
            continue;
        };
        let a = BlockAffinity::from_json(&kv.value).map_err(|e| CtlError::Parse {
            what: kv.key.path(),
            reason: e.to_string(),
        })?;
        let block = cidr.to_string().replace(['.', ':', '/'], "-");
        let n = format!("{host}-{block}");
        if name.is_some_and(|want| want != n) {
            continue;
        }
        let state = to_value(&a.state);
        out.push(json!({
            "kind": "BlockAffinity",
            "apiVersion": ipam::model::API_VERSION,
            "metadata": {"name": n, "resourceVersion": kv.revision.to_string()},
            "spec": {
                "state": if state == json!("") { json!("confirmed") } else { state },
                "node": host,
                "type": affinity_type,
                "cidr": cidr.to_string(),
                "deleted": a.deleted.to_string(),
            },
        }));
    }
    match name {
        Some(n) if out.is_empty() => Err(CtlError::NotFound {
            kind: "BlockAffinity",
            name: n.to_string(),
        }),
        _ => Ok(out),
    }
}

fn render_items(
    kind: Kind,
    name: Option<&str>,
    mut items: Vec<Value>,
    format: OutputFormat,
) -> CtlResult<String> {
    if name.is_some() && items.len() == 1 {
        return render(&items.remove(0), format);
    }
    render(
        &json!({
            "kind": format!("{}List", kind.name()),
            "apiVersion": ipam::model::API_VERSION,
            "metadata": {},
            "items": items,
        }),
        format,
    )
}

fn text(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(n) => cur = n,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(a) => a.iter().map(|x| text(x, &[])).collect::<Vec<_>>().join(","),
        Value::Object(o) => {
            // ipNATs entries: Go's `join` prints `{internal external}`.
            let parts: Vec<String> = o.values().map(|x| text(x, &[])).collect();
            format!("{{{}}}", parts.join(" "))
        }
        other => other.to_string(),
    }
}

/// calicoctl's `joinAndTruncate … 80`.
fn truncate(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        return s;
    }
    let cut: String = s.chars().take(max.saturating_sub(3)).collect();
    cut + "..."
}

/// Renders one table row of an object.
type RowFn<'a> = Box<dyn Fn(&Value) -> Vec<String> + 'a>;

/// calicoctl's columns of `kind`.
fn table(
    kind: Kind,
    items: &[Value],
    wide: bool,
    all_ns: bool,
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let name = |v: &Value| text(v, &["metadata", "name"]);
    let (mut headers, row): (Vec<&str>, RowFn) = match (kind, wide) {
        (Kind::IpReservation, false) => (vec!["NAME"], Box::new(|v| vec![name(v)])),
        (Kind::IpReservation, true) => (
            vec!["NAME", "CIDRS"],
            Box::new(|v| vec![name(v), truncate(text(v, &["spec", "reservedCIDRs"]), 80)]),
        ),
        (Kind::Node, false) => (vec!["NAME"], Box::new(|v| vec![name(v)])),
        (Kind::Node, true) => (
            vec!["NAME", "ASN", "IPV4", "IPV6"],
            Box::new(|v| {
                let asn = match (v["spec"].get("bgp"), text(v, &["spec", "bgp", "asNumber"])) {
                    (None, _) => String::new(),
                    // Calico shows the cluster default in brackets.
                    (Some(_), a) if a.is_empty() => "(64512)".into(),
                    (Some(_), a) => a,
                };
                vec![
                    name(v),
                    asn,
                    text(v, &["spec", "bgp", "ipv4Address"]),
                    text(v, &["spec", "bgp", "ipv6Address"]),
                ]
            }),
        ),
        (Kind::WorkloadEndpoint, w) => {
            let workload = |v: &Value| {
                let w = text(v, &["spec", "workload"]);
                if w.is_empty() {
                    text(v, &["spec", "pod"])
                } else {
                    w
                }
            };
            if w {
                (
                    vec![
                        "NAME",
                        "WORKLOAD",
                        "NODE",
                        "NETWORKS",
                        "INTERFACE",
                        "PROFILES",
                        "NATS",
                    ],
                    Box::new(move |v| {
                        vec![
                            name(v),
                            workload(v),
                            text(v, &["spec", "node"]),
                            text(v, &["spec", "ipNetworks"]),
                            text(v, &["spec", "interfaceName"]),
                            text(v, &["spec", "profiles"]),
                            text(v, &["spec", "ipNATs"]),
                        ]
                    }),
                )
            } else {
                (
                    vec!["WORKLOAD", "NODE", "NETWORKS", "INTERFACE"],
                    Box::new(move |v| {
                        vec![
                            workload(v),
                            text(v, &["spec", "node"]),
                            text(v, &["spec", "ipNetworks"]),
                            text(v, &["spec", "interfaceName"]),
                        ]
                    }),
                )
            }
        }
        (Kind::IpamConfig, w) => {
            let mut h = vec!["NAME", "STRICTAFFINITY", "AUTOALLOCATEBLOCKS"];
            if w {
                h.push("MAXBLOCKSPERHOST");
            }
            (
                h,
                Box::new(move |v| {
                    let mut r = vec![
                        name(v),
                        text(v, &["spec", "strictAffinity"]),
                        text(v, &["spec", "autoAllocateBlocks"]),
                    ];
                    if w {
                        r.push(text(v, &["spec", "maxBlocksPerHost"]));
                    }
                    r
                }),
            )
        }
        (Kind::BlockAffinity, w) => {
            let mut h = vec!["NAME", "NODE", "CIDR", "STATE"];
            if w {
                h.extend(["TYPE", "DELETED"]);
            }
            (
                h,
                Box::new(move |v| {
                    let mut r = vec![
                        name(v),
                        text(v, &["spec", "node"]),
                        text(v, &["spec", "cidr"]),
                        text(v, &["spec", "state"]),
                    ];
                    if w {
                        r.push(text(v, &["spec", "type"]));
                        r.push(text(v, &["spec", "deleted"]));
                    }
                    r
                }),
            )
        }
        (Kind::IpPool, _) => (vec!["NAME"], Box::new(|v| vec![name(v)])),
    };
    let mut rows: Vec<Vec<String>> = items.iter().map(&row).collect();
    if all_ns {
        headers.insert(0, "NAMESPACE");
        for (r, v) in rows.iter_mut().zip(items) {
            r.insert(0, text(v, &["metadata", "namespace"]));
        }
    }
    (headers, rows)
}

/// `kind: IPPoolList` wrapper of `get` without a name.
#[derive(Serialize)]
struct PoolList {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: Map<String, Value>,
    items: Vec<ipam::model::IpPool>,
}

/// Render the pools `name` selects (all when `None`).
pub fn ippools(store: &dyn Store, name: Option<&str>, format: OutputFormat) -> CtlResult<String> {
    let found = match name {
        Some(n) => vec![pools::get(store, n)?],
        None => pools::list(store)?,
    };
    match format {
        OutputFormat::Json | OutputFormat::Yaml => {
            let mut items: Vec<_> = found.iter().map(|p| p.with_resource_version()).collect();
            match (name, items.pop()) {
                // A named get prints the object itself, as calicoctl does.
                (Some(_), Some(one)) => render(&one, format),
                (_, last) => {
                    items.extend(last);
                    render(
                        &PoolList {
                            kind: "IPPoolList",
                            api_version: ipam::model::API_VERSION,
                            metadata: Map::new(),
                            items,
                        },
                        format,
                    )
                }
            }
        }
        OutputFormat::Ps | OutputFormat::Wide => {
            let wide = format == OutputFormat::Wide;
            let rows: Vec<Vec<String>> = found
                .iter()
                .map(|p| {
                    let s = &p.pool.spec;
                    let sel = s.effective_node_selector().to_string();
                    if wide {
                        vec![
                            p.pool.metadata.name.clone(),
                            s.cidr.clone(),
                            s.nat_outgoing.to_string(),
                            s.effective_ipip_mode(),
                            s.effective_vxlan_mode().to_string(),
                            s.disabled.to_string(),
                            s.disable_bgp_export.to_string(),
                            sel,
                        ]
                    } else {
                        vec![p.pool.metadata.name.clone(), s.cidr.clone(), sel]
                    }
                })
                .collect();
            let headers: &[&str] = if wide {
                &[
                    "NAME",
                    "CIDR",
                    "NAT",
                    "IPIPMODE",
                    "VXLANMODE",
                    "DISABLED",
                    "DISABLEBGPEXPORT",
                    "SELECTOR",
                ]
            } else {
                &["NAME", "CIDR", "SELECTOR"]
            };
            Ok(output::columns(headers, &rows))
        }
    }
}

fn render<T: Serialize>(v: &T, format: OutputFormat) -> CtlResult<String> {
    match format {
        OutputFormat::Json => output::json(v),
        _ => output::yaml(v),
    }
}
