//! calicoctl's leak clean-up workflow: `ipam check` cross-references every IPAM allocation
//! with the addresses workloads and nodes actually use, and `-o FILE` writes Calico's JSON
//! report (`version`, `clusterGUID`, `datastoreLocked`, `clusterInformationRevision`,
//! `clusterType`, `allocations` by IP, `leakedHandles`); `ipam release --from-report` then
//! releases the addresses the report(s) marked as not in use (guarded by handle and sequence
//! number, so a reused address is never freed) and deletes leaked handles still at the
//! reported revision.
//!
//! In use means: an address of a WorkloadEndpoint's `ipNetworks`, a node's tunnel address, or
//! an allocation under Calico's Windows reserved handle. On the Kubernetes datastore workload
//! endpoints are pods, which this store does not read; there, and on a datastore that stores no
//! endpoint at all (calico-ipam used without the calico plugin), an allocation counts as in use
//! while its handle object exists (only allocations whose handle is gone are reported), which
//! never frees a running pod's address.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use ipam::model::{AllocationBlock, ClusterInformation};
use ipam::{Ipam, Key, ListPrefix, ReleaseRequest, ResourceKind, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{CtlError, CtlResult};

/// Calico's handle for addresses Windows nodes hold back.
const WINDOWS_RESERVED_HANDLE: &str = "windows-reserved-ipam-handle";

/// One allocation in the report (Calico's `Allocation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Allocation {
    pub ip: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub handle: String,
    #[serde(
        rename = "sequenceNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sequence_number: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(
        rename = "creationTimestamp",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub creation_timestamp: String,
    #[serde(rename = "inUse", default)]
    pub in_use: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub borrowed: bool,
    #[serde(
        rename = "coolingDown",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub cooling_down: bool,
    /// Go nil slice: `null` when nobody uses the address.
    #[serde(default)]
    pub owners: Option<Vec<String>>,
}

/// A handle without allocations (Calico's `HandleInfo`, Go field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandleInfo {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "UID", default)]
    pub uid: Option<String>,
    #[serde(rename = "Revision")]
    pub revision: String,
}

/// Calico's `CheckReport`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CheckReport {
    pub version: String,
    #[serde(rename = "clusterGUID")]
    pub cluster_guid: String,
    #[serde(rename = "datastoreLocked")]
    pub datastore_locked: bool,
    #[serde(rename = "clusterInformationRevision")]
    pub cluster_info_revision: String,
    #[serde(rename = "clusterType")]
    pub cluster_type: String,
    pub allocations: BTreeMap<String, Vec<Allocation>>,
    #[serde(
        rename = "leakedHandles",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub leaked_handles: Vec<HandleInfo>,
}

/// The version written into reports (and required of them on release).
pub fn version() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

/// Outcome of the scan.
#[derive(Debug, Default)]
pub struct Scan {
    pub report: CheckReport,
    /// Allocated but used by nothing.
    pub leaked_ips: Vec<String>,
    /// Used by a workload/node inside an active pool without an allocation.
    pub unallocated_in_use: Vec<String>,
    /// Used by a workload/node outside every active pool.
    pub outside_pools: Vec<String>,
    pub text: String,
}

impl Scan {
    /// Problems counted by Calico's check (leaked handles are counted by the caller).
    pub fn problems(&self) -> usize {
        self.leaked_ips.len() + self.unallocated_in_use.len() + self.outside_pools.len()
    }
}

fn host_part(s: &str) -> Option<IpAddr> {
    s.split('/').next()?.trim().parse().ok()
}

/// Addresses used by nodes (tunnel and WireGuard addresses), with owner names.
fn node_ips(store: &dyn Store) -> CtlResult<Vec<(IpAddr, String)>> {
    let mut out = Vec::new();
    for kv in store.list(&ListPrefix::Resources {
        kind: ResourceKind::Node,
        namespace: None,
    })? {
        let v: Value = serde_json::from_str(&kv.value).unwrap_or(Value::Null);
        let name = v["metadata"]["name"].as_str().unwrap_or_default();
        let spec = &v["spec"];
        for a in [
            &spec["ipv4VXLANTunnelAddr"],
            &spec["ipv6VXLANTunnelAddr"],
            &spec["bgp"]["ipv4IPIPTunnelAddr"],
            &spec["wireguard"]["interfaceIPv4Address"],
            &spec["wireguard"]["interfaceIPv6Address"],
        ] {
            if let Some(ip) = a.as_str().and_then(host_part) {
                out.push((ip, format!("Node({name})")));
            }
        }
    }
    Ok(out)
}

/// How workloads' addresses are known. Either way the set holds the handles that exist:
/// when endpoints cannot be read (Kubernetes: they are pods) or none are stored at all, an
/// allocation whose handle exists counts as in use.
#[derive(Debug, Clone, Copy)]
pub enum Users<'a> {
    /// From stored WorkloadEndpoints (etcd, local).
    Endpoints(&'a BTreeSet<String>),
    /// Endpoints are pods (Kubernetes).
    Pods(&'a BTreeSet<String>),
}

/// Addresses of stored WorkloadEndpoints.
fn workload_ips(store: &dyn Store) -> CtlResult<Vec<(IpAddr, String)>> {
    let kvs = store.list(&ListPrefix::Resources {
        kind: ResourceKind::WorkloadEndpoint,
        namespace: None,
    })?;
    let mut out = Vec::new();
    for kv in kvs {
        let v: Value = serde_json::from_str(&kv.value).unwrap_or(Value::Null);
        let owner = format!(
            "Workload({}/{})",
            v["metadata"]["namespace"].as_str().unwrap_or_default(),
            v["metadata"]["name"].as_str().unwrap_or_default()
        );
        for n in v["spec"]["ipNetworks"].as_array().into_iter().flatten() {
            if let Some(ip) = n.as_str().and_then(host_part) {
                out.push((ip, owner.clone()));
            }
        }
    }
    Ok(out)
}

fn cluster_information(store: &dyn Store) -> CtlResult<(ClusterInformation, String)> {
    let key = Key::resource(ResourceKind::ClusterInformation, "default");
    let kv = store.get(&key).map_err(|e| match e {
        StoreError::NotFound(_) => CtlError::NotFound {
            kind: "ClusterInformation",
            name: "default".into(),
        },
        e => e.into(),
    })?;
    let ci = ClusterInformation::from_json(&kv.value).map_err(|e| CtlError::Parse {
        what: key.path(),
        reason: e.to_string(),
    })?;
    Ok((ci, kv.revision.to_string()))
}

fn attr_string(handle: Option<&str>, attrs: &BTreeMap<String, String>) -> String {
    let kvs: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "Main:{} Extra:{}",
        handle.unwrap_or("<none>"),
        kvs.join(",")
    )
}

/// Cross-reference allocations with users (see module docs). With `need_cluster_info` the
/// report metadata comes from ClusterInformation `default`, which must exist.
pub fn scan(
    store: &dyn Store,
    show_all_ips: bool,
    show_problem_ips: bool,
    need_cluster_info: bool,
    users: Users<'_>,
) -> CtlResult<Scan> {
    let mut s = Scan::default();
    let mut t = String::new();
    if need_cluster_info {
        let (ci, rev) = cluster_information(store)?;
        s.report.version = version();
        s.report.cluster_guid = ci.spec.cluster_guid.unwrap_or_default();
        s.report.cluster_type = ci.spec.cluster_type.unwrap_or_default();
        s.report.datastore_locked = ci.spec.datastore_ready == Some(false);
        s.report.cluster_info_revision = rev;
    }
    // Allocations by IP.
    let mut allocs: BTreeMap<IpAddr, Vec<Allocation>> = BTreeMap::new();
    let mut handle_of: BTreeMap<IpAddr, Option<String>> = BTreeMap::new();
    let mut attr_text: BTreeMap<IpAddr, String> = BTreeMap::new();
    for kv in store.list(&ListPrefix::Blocks { version: None })? {
        let Ok(b) = AllocationBlock::from_json(&kv.value) else {
            continue; // reported by the consistency checks
        };
        let owner = b.host().unwrap_or_default().to_string();
        for o in 0..b.allocations.len() {
            let Some(a) = b.attribute_of(o) else { continue };
            let ip = b.ordinal_to_ip(o);
            let sec = &a.secondary;
            let node = sec.get("node").cloned().unwrap_or_else(|| owner.clone());
            let al = Allocation {
                ip: ip.to_string(),
                handle: a.handle_id.clone().unwrap_or_default(),
                sequence_number: b.sequence_number_of(o),
                pod: sec.get("pod").cloned().unwrap_or_default(),
                namespace: sec.get("namespace").cloned().unwrap_or_default(),
                kind: sec.get("type").cloned().unwrap_or_default(),
                creation_timestamp: sec.get("timestamp").cloned().unwrap_or_default(),
                borrowed: node != owner,
                node,
                cooling_down: a.extra.contains_key("releasedAt"),
                ..Default::default()
            };
            let attrs = attr_string(a.handle_id.as_deref(), sec);
            if show_all_ips {
                let _ = writeln!(t, "  {ip} allocated; attrs {attrs}");
            }
            attr_text.insert(ip, attrs);
            handle_of.insert(ip, a.handle_id.clone());
            allocs.entry(ip).or_default().push(al);
        }
    }
    // Users.
    let mut in_use: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
    let nodes = node_ips(store)?;
    let _ = writeln!(
        t,
        "Loading all nodes.\nFound {} node tunnel IPs.\n",
        nodes.len()
    );
    for (ip, owner) in nodes {
        in_use.entry(ip).or_default().push(owner);
    }
    let _ = writeln!(t, "Loading all workload endpoints.");
    let weps = match users {
        Users::Endpoints(_) => workload_ips(store)?,
        Users::Pods(_) => Vec::new(),
    };
    let fallback = match users {
        Users::Pods(live) => Some((
            live,
            "Workload endpoints are pods on this datastore and are not read",
        )),
        // IPAM used without the calico plugin (or calico-ipam on its own): nothing to
        // cross-reference, and calling every address leaked would be wrong.
        Users::Endpoints(live) if weps.is_empty() && !handle_of.is_empty() => Some((
            live,
            "No workload endpoints are stored (IPAM used without the calico plugin)",
        )),
        Users::Endpoints(_) => None,
    };
    match fallback {
        None => {
            let _ = writeln!(t, "Found {} workload IPs.", weps.len());
            for (ip, owner) in weps {
                in_use.entry(ip).or_default().push(owner);
            }
        }
        Some((live_handles, why)) => {
            let _ = writeln!(
                t,
                "{why}: allocations whose handle exists are counted as in use."
            );
            for (ip, h) in &handle_of {
                if let Some(h) = h.as_ref().filter(|h| live_handles.contains(*h)) {
                    in_use.entry(*ip).or_default().push(format!("Handle({h})"));
                }
            }
        }
    }
    for (ip, h) in &handle_of {
        if h.as_deref() == Some(WINDOWS_RESERVED_HANDLE) {
            in_use
                .entry(*ip)
                .or_default()
                .push("Reserved for Windows".into());
        }
    }
    let _ = writeln!(t, "Workloads and nodes are using {} IPs.\n", in_use.len());
    for (ip, owners) in &in_use {
        if show_all_ips {
            for o in owners {
                let _ = writeln!(t, "  {ip} belongs to {o}");
            }
        }
        for a in allocs.get_mut(ip).into_iter().flatten() {
            a.in_use = true;
            a.owners = Some(owners.clone());
        }
    }

    let _ = writeln!(
        t,
        "Scanning for IPs that are allocated but not actually in use..."
    );
    for (ip, list) in &allocs {
        if in_use.contains_key(ip) || list.iter().any(|a| a.cooling_down) {
            continue;
        }
        if show_problem_ips {
            for _ in list {
                let attrs = attr_text.get(ip).map(String::as_str).unwrap_or("<missing>");
                let _ = writeln!(t, "  {ip} leaked; attrs {attrs}");
            }
        }
        s.leaked_ips.push(ip.to_string());
    }
    let _ = writeln!(
        t,
        "Found {} IPs that are allocated in IPAM but not actually in use.",
        s.leaked_ips.len()
    );

    let _ = writeln!(
        t,
        "Scanning for IPs that are in use by a workload or node but not allocated in IPAM..."
    );
    let pools: Vec<ipnetwork::IpNetwork> = Ipam::new(store)
        .list_pools()?
        .into_iter()
        .filter(|p| !p.spec.disabled)
        .filter_map(|p| p.spec.cidr.parse().ok())
        .collect();
    for (ip, owners) in &in_use {
        if show_problem_ips && owners.len() > 1 {
            let _ = writeln!(t, "  {ip} has multiple owners.");
        }
        if allocs.contains_key(ip) {
            continue;
        }
        let in_pool = pools.iter().any(|p| p.contains(*ip));
        if show_problem_ips {
            for o in owners {
                if in_pool {
                    let _ = writeln!(
                        t,
                        "  {ip} in use by {o} and in active IPAM pool but has no IPAM allocation."
                    );
                } else {
                    let _ = writeln!(t, "  {ip} in use by {o} is not in any active IP pool.");
                }
            }
        }
        if in_pool {
            s.unallocated_in_use.push(ip.to_string());
        } else {
            s.outside_pools.push(ip.to_string());
        }
    }
    let _ = writeln!(
        t,
        "Found {} in-use IPs that are not in active IP pools.",
        s.outside_pools.len()
    );
    let _ = writeln!(
        t,
        "Found {} in-use IPs that are in active IP pools but have no corresponding IPAM allocation.",
        s.unallocated_in_use.len()
    );
    s.report.allocations = allocs
        .into_iter()
        .map(|(ip, v)| (ip.to_string(), v))
        .collect();
    s.text = t;
    Ok(s)
}

/// Write the report as calicoctl does (indented JSON).
pub fn write_report(report: &CheckReport, path: &str) -> CtlResult<()> {
    let json = serde_json::to_string_pretty(report).map_err(|source| CtlError::Encode {
        what: "the report",
        source,
    })?;
    std::fs::write(path, json).map_err(|source| CtlError::Write {
        path: path.to_string(),
        source,
    })
}

fn read_report(path: &str) -> CtlResult<CheckReport> {
    let text = std::fs::read_to_string(path).map_err(|source| CtlError::Read {
        path: path.to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| CtlError::Parse {
        what: path.to_string(),
        reason: e.to_string(),
    })
}

/// Addresses and handles every report agrees are leaked (Calico's `mergeReports`).
fn merge(reports: &[CheckReport]) -> (BTreeMap<String, ReleaseRequest>, Vec<HandleInfo>) {
    let mut ips: Option<BTreeMap<String, ReleaseRequest>> = None;
    let mut handles: Option<BTreeMap<String, HandleInfo>> = None;
    for r in reports {
        let mut merged = BTreeMap::new();
        for a in r.allocations.values().flatten() {
            if a.in_use || a.cooling_down {
                continue;
            }
            if ips.as_ref().is_some_and(|m| !m.contains_key(&a.ip)) {
                continue;
            }
            let Ok(ip) = a.ip.parse() else { continue };
            merged.insert(
                a.ip.clone(),
                ReleaseRequest {
                    ip,
                    handle_id: (!a.handle.is_empty()).then(|| a.handle.clone()),
                    sequence_number: a.sequence_number,
                },
            );
        }
        ips = Some(merged);
        let mut mh = BTreeMap::new();
        for h in &r.leaked_handles {
            let keep = match &handles {
                None => true,
                Some(old) => old.get(&h.id).is_some_and(|o| o.revision == h.revision),
            };
            if keep {
                mh.insert(h.id.clone(), h.clone());
            }
        }
        handles = Some(mh);
    }
    (
        ips.unwrap_or_default(),
        handles.unwrap_or_default().into_values().collect(),
    )
}

/// `ipam release --from-report FILE...` (Calico's checks and messages).
pub fn release_from_reports(store: &dyn Store, files: &[String], force: bool) -> CtlResult<String> {
    let (ci, rev) = cluster_information(store)?;
    let guid = ci.spec.cluster_guid.clone().unwrap_or_default();
    let mut out = String::new();
    let mut reports = Vec::new();
    let mut current = false;
    for f in files {
        let r = read_report(f)?;
        if r.cluster_guid != guid {
            return Err(CtlError::ReportOtherCluster {
                report: f.to_string(),
            });
        }
        if r.version != version() {
            if !force {
                return Err(CtlError::ReportOtherVersion {
                    report: f.to_string(),
                    version: r.version.clone(),
                });
            }
            out.push_str("WARNING: Report was produced using a different version of calicoctl. Ignoring due to --force option\n");
        }
        current |= r.cluster_info_revision == rev;
        reports.push(r);
    }
    if !current {
        return Err(CtlError::ReportsStale);
    }
    if ci.spec.datastore_ready != Some(false) {
        if !force {
            return Err(CtlError::NotLocked);
        }
        out.push_str("WARNING: Data store is not locked. Ignoring due to --force option\n");
    }
    let (ips, handles) = merge(&reports);
    if ips.is_empty() {
        out.push_str("Report didn't contain any leaked IPs to clean up.\n");
    } else {
        let reqs: Vec<ReleaseRequest> = ips.into_values().collect();
        let _ = writeln!(out, "Releasing {} old IPs...", reqs.len());
        match Ipam::new(store).release_ips(&reqs) {
            Ok(unallocated) => {
                let _ = writeln!(
                    out,
                    "Released {} IPs successfully",
                    reqs.len() - unallocated.len()
                );
                if !unallocated.is_empty() {
                    let _ = writeln!(
                        out,
                        "{} addresses marked as leaked in the report had already been cleaned up.",
                        unallocated.len()
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "An error occurred while releasing some IPs: {e}.  Problems are often caused by an out-of-date IPAM report.  Try regenerating the IPAM report and retry."
                );
            }
        }
    }
    if handles.is_empty() {
        out.push_str("Report didn't contain any handles to clean up.\n");
    } else {
        release_handles(store, &handles, &mut out);
    }
    Ok(out)
}

fn release_handles(store: &dyn Store, handles: &[HandleInfo], out: &mut String) {
    let _ = writeln!(
        out,
        "Deleting {} handles...\nKey: '.' = Deleted OK; 'x' = skip, handle missing/changed.",
        handles.len()
    );
    let (mut ok, mut skipped, mut errors) = (0, 0, 0);
    let mut failures = String::new();
    for h in handles {
        let key = Key::handle(&h.id);
        let r = match store.get(&key) {
            Ok(kv) if kv.revision.to_string() == h.revision => {
                store.delete(&key, Some(&kv.revision))
            }
            Ok(_) => Err(StoreError::Conflict(key.path())),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => {
                ok += 1;
                out.push('.');
            }
            Err(StoreError::NotFound(_) | StoreError::Conflict(_)) => {
                skipped += 1;
                out.push('x');
            }
            Err(e) => {
                errors += 1;
                let _ = write!(failures, "\nDeleting handle {} failed: {e}.", h.id);
            }
        }
    }
    out.push_str(&failures);
    let _ = writeln!(
        out,
        "\nReleased {ok} handles; {skipped} skipped; {errors} errors."
    );
}
