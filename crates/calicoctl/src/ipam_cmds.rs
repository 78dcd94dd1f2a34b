//! `calicoctl ipam show | check | release | configure`.
//!
//! `check` runs Calico's leak scan ([`crate::leaks`]: allocations no workload or node uses,
//! addresses in use without an allocation) and reports three more classes of problems
//! (any → non-zero exit):
//! * allocations without a live handle (no handle id, the handle object is missing, or it does
//!   not list the allocation's block — release-by-handle on CNI DEL would miss the address);
//! * handles without allocations (a handle object none of whose addresses is allocated — a
//!   leaked index entry, e.g. from an ADD that died between writing the handle and the block);
//! * blocks without affinity (an unaffine block, or a block naming a host that holds no
//!   affinity record for it: nobody advertises a route for it).
//!
//! plus every other consistency error of `ipam::audit` (duplicate allocations, overlapping
//! blocks, unreadable objects, two confirmed owners). Self-healing leftovers (pending
//! affinities, partial handle over-counts, affinities without a block) are printed as
//! warnings and do not fail the check.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use ipam::audit::audit;
use ipam::model::AllocationBlock;
use ipam::{Ipam, ListPrefix, ReleaseRequest, Reservations, Store};

use crate::error::{CtlError, CtlResult};
use crate::{leaks, output};

fn pct(n: u128, total: u128) -> String {
    if total == 0 {
        return "0%".into();
    }
    format!("{:.0}%", n as f64 * 100.0 / total as f64)
}

/// One usage row: IN USE counts allocated addresses, RESERVED those an IPReservation covers
/// (an address allocated before it was reserved counts in both, as in calicoctl), FREE those
/// that are neither.
fn usage_cells(
    group: &str,
    cidr: String,
    total: u128,
    used: u128,
    reserved: u128,
    both: u128,
) -> Vec<String> {
    let free = total.saturating_sub(used + reserved).saturating_add(both);
    vec![
        group.to_string(),
        cidr,
        total.to_string(),
        format!("{used} ({})", pct(used, total)),
        format!("{reserved} ({})", pct(reserved, total)),
        format!("{free} ({})", pct(free, total)),
    ]
}

fn node_of(affinity: &Option<String>) -> String {
    match affinity.as_deref() {
        Some(a) => a.strip_prefix("host:").unwrap_or(a).to_string(),
        None => "(none)".into(),
    }
}

/// `ipam show [--show-blocks]`: one row per pool; with blocks, one row per block (with the
/// node the block is affine to) after its pool, and blocks outside every pool at the end.
pub fn show(store: &dyn Store, show_blocks: bool) -> CtlResult<String> {
    let ipam = Ipam::new(store);
    let pools = ipam.pool_usage()?;
    let blocks = if show_blocks {
        ipam.block_infos(None)?
    } else {
        Vec::new()
    };
    let reserved = Reservations::load(store)?;
    // Allocated addresses that are also reserved, for FREE.
    let both: Vec<IpAddr> = if reserved.is_empty() {
        Vec::new()
    } else {
        ipam.list_allocations(None)?
            .into_iter()
            .map(|a| a.ip)
            .filter(|ip| reserved.matches_ip(*ip))
            .collect()
    };
    let both_in =
        |n: &ipnetwork::IpNetwork| both.iter().filter(|ip| n.contains(**ip)).count() as u128;
    let mut rows = Vec::new();
    let mut shown = BTreeSet::new();
    let block_row = |b: &ipam::BlockInfo| {
        let mut r = usage_cells(
            "Block",
            b.cidr.to_string(),
            b.size as u128,
            b.allocated as u128,
            reserved.count_in(&b.cidr),
            both_in(&b.cidr),
        );
        r.push(node_of(&b.affinity));
        r
    };
    for p in &pools {
        let mut r = usage_cells(
            "IP Pool",
            p.cidr.to_string(),
            p.capacity,
            p.allocated as u128,
            reserved.count_in(&p.cidr),
            both_in(&p.cidr),
        );
        if show_blocks {
            r.push(String::new());
        }
        rows.push(r);
        for b in blocks.iter().filter(|b| p.cidr.contains(b.cidr.network())) {
            shown.insert(b.cidr);
            rows.push(block_row(b));
        }
    }
    for b in blocks.iter().filter(|b| !shown.contains(&b.cidr)) {
        rows.push(block_row(b));
    }
    let mut headers = vec![
        "GROUPING",
        "CIDR",
        "IPS TOTAL",
        "IPS IN USE",
        "IPS RESERVED",
        "IPS FREE",
    ];
    if show_blocks {
        headers.push("NODE");
    }
    Ok(output::boxed(&headers, &rows))
}

/// `ipam show --show-configuration`.
pub fn show_configuration(store: &dyn Store) -> CtlResult<String> {
    let c = Ipam::new(store).get_config()?;
    Ok(output::boxed(
        &["PROPERTY", "VALUE"],
        &[
            vec!["StrictAffinity".into(), c.strict_affinity.to_string()],
            vec![
                "AutoAllocateBlocks".into(),
                c.auto_allocate_blocks.to_string(),
            ],
            vec!["MaxBlocksPerHost".into(), c.max_blocks_per_host.to_string()],
        ],
    ))
}

/// `ipam show --ip=IP`.
pub fn show_ip(store: &dyn Store, ip: IpAddr) -> CtlResult<String> {
    let Some(a) = Ipam::new(store).get_assignment(ip)? else {
        return Ok(format!("IP {ip} is not currently assigned\n"));
    };
    let mut s = format!("IP {ip} is in use\n");
    if let Some(h) = &a.handle_id {
        let _ = writeln!(s, "Handle: {h}");
    }
    let _ = writeln!(s, "Block: {}", a.block);
    if !a.attrs.is_empty() {
        s.push_str("Attributes:\n");
        for (k, v) in &a.attrs {
            let _ = writeln!(s, "  {k}: {v}");
        }
    }
    Ok(s)
}

/// Outcome of `ipam check`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub allocations_without_handle: Vec<String>,
    pub handles_without_allocations: Vec<String>,
    pub blocks_without_affinity: Vec<String>,
    /// Other audit errors.
    pub other_errors: Vec<String>,
    /// Problems of the leak scan (leaked IPs, in-use IPs without allocation).
    pub leaks: usize,
    /// Not counted as problems.
    pub warnings: Vec<String>,
    /// Human-readable report.
    pub text: String,
}

impl CheckReport {
    /// Number of problems (the exit status is non-zero when > 0).
    pub fn problems(&self) -> usize {
        self.allocations_without_handle.len()
            + self.handles_without_allocations.len()
            + self.blocks_without_affinity.len()
            + self.other_errors.len()
            + self.leaks
    }
}

fn section(text: &mut String, title: &str, items: &[String], what: &str) {
    let _ = writeln!(text, "\n{title}");
    for i in items {
        let _ = writeln!(text, "  {i}");
    }
    let _ = writeln!(text, "Found {} {what}.", items.len());
}

/// Options of `ipam check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    pub show_all_ips: bool,
    pub show_problem_ips: bool,
    /// Write Calico's JSON report here.
    pub report_file: Option<String>,
    /// WorkloadEndpoints are stored objects (false on Kubernetes: see [`crate::leaks`]).
    pub endpoints_stored: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            show_all_ips: false,
            show_problem_ips: false,
            report_file: None,
            endpoints_stored: true,
        }
    }
}

/// `ipam check` (see module docs).
pub fn check(store: &dyn Store, o: &CheckOptions) -> CtlResult<CheckReport> {
    let a = audit(store)?;
    let blocks = Ipam::new(store).block_infos(None)?;
    let mut r = CheckReport::default();
    let mut text =
        String::from("Checking IPAM for inconsistencies...\n\nLoading all IPAM blocks...\n");
    let _ = writeln!(text, "Found {} IPAM blocks.", blocks.len());
    for b in &blocks {
        let _ = writeln!(
            text,
            " IPAM block {} affinity={}:",
            b.cidr,
            b.affinity.as_deref().unwrap_or("<none>")
        );
    }
    let _ = writeln!(
        text,
        "IPAM blocks record {} allocations.",
        a.allocations.len()
    );
    let _ = writeln!(
        text,
        "\nLoading all IPAM handles...\nFound {} IPAM handles.\n",
        a.handles.len()
    );
    let live: BTreeSet<String> = a.handles.keys().cloned().collect();
    let mut scan = leaks::scan(
        store,
        o.show_all_ips,
        o.show_problem_ips,
        o.report_file.is_some(),
        if o.endpoints_stored {
            leaks::Users::Endpoints(&live)
        } else {
            leaks::Users::Pods(&live)
        },
    )?;
    text.push_str(&scan.text);
    r.leaks = scan.problems();

    let mut used_handles = BTreeSet::new();
    for (ip, al) in &a.allocations {
        let block = al.block.to_string();
        match &al.handle_id {
            None => r
                .allocations_without_handle
                .push(format!("{ip} (block {block}) has no handle")),
            Some(h) => {
                used_handles.insert(h.clone());
                match a.handles.get(h) {
                    None => r
                        .allocations_without_handle
                        .push(format!("{ip} (block {block}): handle {h} does not exist")),
                    Some(m) if !m.contains_key(&block) => r.allocations_without_handle.push(
                        format!("{ip} (block {block}): handle {h} does not reference the block"),
                    ),
                    Some(_) => {}
                }
            }
        }
    }
    let revisions: std::collections::BTreeMap<String, String> = store
        .list(&ListPrefix::Handles)?
        .into_iter()
        .filter_map(|kv| match kv.key {
            ipam::Key::Handle { id } => Some((id, kv.revision.to_string())),
            _ => None,
        })
        .collect();
    for h in a.handles.keys().filter(|h| !used_handles.contains(*h)) {
        r.handles_without_allocations
            .push(format!("handle {h} has no allocations"));
        scan.report.leaked_handles.push(leaks::HandleInfo {
            id: h.clone(),
            uid: None,
            revision: revisions.get(h).cloned().unwrap_or_default(),
        });
    }
    for b in &blocks {
        if b.affinity.is_none() {
            r.blocks_without_affinity.push(format!(
                "block {} has no affinity ({} allocations)",
                b.cidr, b.allocated
            ));
        }
    }
    // Covered by the classes above; everything else the audit flags is reported as is.
    let covered = |m: &str| {
        m.contains("allocated without a handle")
            || m.contains("unreachable via the handle")
            || m.contains("has no affinity record")
            || (m.starts_with("handle ") && m.ends_with(" is empty"))
    };
    for e in &a.errors {
        if !covered(e) {
            r.other_errors.push(e.clone());
        }
    }
    for w in &a.warnings {
        if w.contains("has no affinity record") {
            r.blocks_without_affinity.push(w.clone());
        } else if w.starts_with("handle ") && w.ends_with(" is empty") {
            // Counted above as a handle without allocations.
        } else {
            r.warnings.push(w.clone());
        }
    }
    section(
        &mut text,
        "Scanning for allocations without a live handle...",
        &r.allocations_without_handle,
        "allocations without a live handle",
    );
    section(
        &mut text,
        "Scanning for handles without allocations...",
        &r.handles_without_allocations,
        "handles without allocations",
    );
    section(
        &mut text,
        "Scanning for blocks without affinity...",
        &r.blocks_without_affinity,
        "blocks without affinity",
    );
    section(
        &mut text,
        "Checking other consistency rules...",
        &r.other_errors,
        "other problems",
    );
    if !r.warnings.is_empty() {
        section(
            &mut text,
            "Warnings (self-healing, not counted as problems):",
            &r.warnings,
            "warnings",
        );
    }
    let _ = writeln!(text, "\nCheck complete; found {} problems.", r.problems());
    if let Some(path) = &o.report_file {
        leaks::write_report(&scan.report, path)?;
    }
    r.text = text;
    Ok(r)
}

/// `ipam release --ip=IP`.
pub fn release(store: &dyn Store, ip: IpAddr) -> CtlResult<String> {
    let unallocated = Ipam::new(store).release_ips(&[ReleaseRequest::ip(ip)])?;
    if unallocated.contains(&ip) {
        return Err(CtlError::NotAssigned { ip });
    }
    Ok(format!("Successfully released IP address {ip}\n"))
}

/// `ipam configure --strictaffinity=… --max-blocks-per-host=…` (calicoctl's messages).
pub fn configure(
    store: &dyn Store,
    strict_affinity: Option<bool>,
    max_blocks_per_host: Option<u32>,
) -> CtlResult<String> {
    let ipam = Ipam::new(store);
    let mut c = ipam.get_config()?;
    if let Some(v) = strict_affinity {
        c.strict_affinity = v;
    }
    if let Some(v) = max_blocks_per_host {
        c.max_blocks_per_host = v;
    }
    ipam.set_config(&c).map_err(CtlError::Configure)?;
    let mut out = String::new();
    if let Some(v) = strict_affinity {
        let _ = writeln!(out, "Successfully set StrictAffinity to: {v}");
    }
    if let Some(v) = max_blocks_per_host {
        let _ = writeln!(out, "Successfully set MaxBlocksPerHost to: {v}");
    }
    Ok(out)
}

/// `ipam show --show-borrowed`: addresses whose allocating node (the `node` attribute) is
/// not the block's owner, as calicoctl lists them.
pub fn show_borrowed(store: &dyn Store) -> CtlResult<String> {
    let mut rows = Vec::new();
    let mut unclassified = 0;
    for kv in store.list(&ListPrefix::Blocks { version: None })? {
        let Ok(b) = AllocationBlock::from_json(&kv.value) else {
            continue;
        };
        let owner = b
            .affinity
            .as_deref()
            .map(|a| a.split_once(':').map_or(a, |(_, h)| h))
            .unwrap_or_default()
            .to_string();
        for o in 0..b.allocations.len() {
            let Some(a) = b.attribute_of(o) else { continue };
            let Some(node) = a.secondary.get("node") else {
                unclassified += 1;
                continue;
            };
            if *node == owner {
                continue;
            }
            let ns = a.secondary.get("namespace").cloned().unwrap_or_default();
            let (kind, to) = if let Some(vm) = a.secondary.get("vmi") {
                ("vmi".to_string(), format!("{ns}/{vm}"))
            } else if let Some(pod) = a.secondary.get("pod") {
                ("pod".to_string(), format!("{ns}/{pod}"))
            } else {
                (
                    a.secondary.get("type").cloned().unwrap_or_default(),
                    String::new(),
                )
            };
            rows.push(vec![
                b.ordinal_to_ip(o).to_string(),
                node.clone(),
                b.cidr.to_string(),
                owner.clone(),
                kind,
                to,
            ]);
        }
    }
    let mut out = output::boxed(
        &[
            "IP",
            "BORROWING-NODE",
            "BLOCK",
            "BLOCK OWNER",
            "TYPE",
            "ALLOCATED-TO",
        ],
        &rows,
    );
    if unclassified > 0 {
        let _ = writeln!(
            out,
            "\nNote: found {unclassified} IP allocations without an explicit node association. Unable to determine if they are borrowed."
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::InitOptions;
    use ipam::model::IpamHandle;
    use ipam::{AutoAssignRequest, IpamOptions, Key, MemoryStore};

    fn setup() -> MemoryStore {
        let s = MemoryStore::new();
        let o = InitOptions {
            ipv4_pool: "10.8.0.0/24".parse().ok(),
            ..Default::default()
        };
        crate::init::init(&s, &o).unwrap();
        s
    }

    fn wep_key(name: &str) -> Key {
        Key::Resource {
            kind: ipam::ResourceKind::WorkloadEndpoint,
            namespace: Some("default".into()),
            name: name.into(),
        }
    }

    /// The WorkloadEndpoint the calico plugin writes next to each allocation.
    fn wep(s: &MemoryStore, name: &str, host: &str, ip: IpAddr) {
        let v = serde_json::json!({"kind": "WorkloadEndpoint", "apiVersion": "projectcalico.org/v3",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"node": host, "pod": name, "ipNetworks": [format!("{ip}/32")],
                     "interfaceName": "cali0"}});
        s.create(&wep_key(name), &v.to_string()).unwrap();
    }

    fn assign(s: &MemoryStore, handle: &str, host: &str) -> IpAddr {
        let ip = assign_only(s, handle, host);
        wep(s, handle, host, ip);
        ip
    }

    fn assign_only(s: &MemoryStore, handle: &str, host: &str) -> IpAddr {
        let ipam = Ipam::with_options(
            s,
            IpamOptions {
                require_node: false,
                ..Default::default()
            },
        );
        let r = ipam
            .auto_assign(&AutoAssignRequest {
                num_v4: 1,
                handle_id: handle.into(),
                hostname: host.into(),
                attrs: [
                    ("node".to_string(), host.to_string()),
                    ("pod".to_string(), handle.to_string()),
                    ("namespace".to_string(), "default".to_string()),
                ]
                .into(),
                ..Default::default()
            })
            .unwrap();
        r.ipv4[0].ip()
    }

    #[test]
    fn show_counts_pools_and_blocks() {
        let s = setup();
        assign(&s, "h1", "node-a");
        assign(&s, "h2", "node-a");
        let a = assign(&s, "h3", "node-a");
        let t = show(&s, true).unwrap();
        assert!(
            t.contains("| IP Pool  | 10.8.0.0/24  |       256 | 3 (1%)     | 0 (0%)       | 253 (99%) |        |"),
            "{t}"
        );
        assert!(t.contains("| Block    |"), "{t}");
        assert!(
            t.contains("|        64 | 3 (5%)     | 0 (0%)       | 61 (95%)  | node-a |"),
            "{t}"
        );
        // Reserve the /30 holding the three allocated addresses: RESERVED counts 4, FREE
        // loses only the one of them that was free.
        let r = ipam::model::IpReservation::new(
            "IPReservation",
            "r",
            ipam::model::IpReservationSpec {
                reserved_cidrs: vec![format!("{a}/30")],
                ..Default::default()
            },
        );
        s.create(
            &Key::resource(ipam::ResourceKind::IpReservation, "r"),
            &r.to_json(),
        )
        .unwrap();
        let t = show(&s, true).unwrap();
        assert!(
            t.contains("|       256 | 3 (1%)     | 4 (2%)       | 252 (98%) |        |"),
            "{t}"
        );
        assert!(
            t.contains("|        64 | 3 (5%)     | 4 (6%)       | 60 (94%)  | node-a |"),
            "{t}"
        );
        assert!(!show(&s, false).unwrap().contains("Block"));
        let c = show_configuration(&s).unwrap();
        assert!(c.contains("| AutoAllocateBlocks | true  |"), "{c}");
    }

    #[test]
    fn check_finds_each_class_and_release_fixes_a_leak() {
        let s = setup();
        let ip = assign(&s, "h1", "node-a");
        let r = check(&s, &CheckOptions::default()).unwrap();
        assert_eq!(r.problems(), 0, "{}", r.text);
        assert!(r.text.ends_with("found 0 problems.\n"));

        // Leak: drop the handle behind the allocator's back.
        s.delete(&Key::handle("h1"), None).unwrap();
        // Leaked handle: a handle pointing at a block with none of its addresses.
        let h = IpamHandle {
            block: [("10.8.0.0/26".to_string(), 1)].into(),
            ..Default::default()
        };
        s.create(&Key::handle("ghost"), &serde_json::to_string(&h).unwrap())
            .unwrap();
        let r = check(&s, &CheckOptions::default()).unwrap();
        assert_eq!(r.allocations_without_handle.len(), 1, "{}", r.text);
        assert!(r.allocations_without_handle[0].contains(&ip.to_string()));
        assert_eq!(
            r.handles_without_allocations,
            vec!["handle ghost has no allocations"]
        );
        assert_eq!(r.problems(), 2);

        assert_eq!(
            release(&s, ip).unwrap(),
            format!("Successfully released IP address {ip}\n")
        );
        s.delete(&Key::handle("ghost"), None).unwrap();
        // The endpoint still claims the released address: in use without an allocation.
        let r = check(&s, &CheckOptions::default()).unwrap();
        assert_eq!(r.problems(), 1, "{}", r.text);
        assert!(r.text.contains("Found 1 in-use IPs that are in active IP pools but have no corresponding IPAM allocation."), "{}", r.text);
        s.delete(&wep_key("h1"), None).unwrap();
        let r = check(&s, &CheckOptions::default()).unwrap();
        assert_eq!(r.problems(), 0, "{}", r.text);
        let e = release(&s, ip).unwrap_err();
        assert_eq!(e.to_string(), format!("IP address {ip} is not assigned"));
        assert!(show_ip(&s, ip).unwrap().contains("not currently assigned"));
    }

    #[test]
    fn unaffine_block_is_a_problem() {
        let s = setup();
        assign(&s, "h1", "node-a");
        Ipam::new(&s).release_host_affinities("node-a").unwrap();
        let r = check(&s, &CheckOptions::default()).unwrap();
        assert_eq!(r.blocks_without_affinity.len(), 1, "{}", r.text);
        assert_eq!(r.problems(), 1);
    }

    #[test]
    fn leak_report_and_release_from_it() {
        let s = setup();
        let kept = assign(&s, "k8s-pod-network.kept", "node-a");
        // A pod whose endpoint is gone but whose address was never released.
        let leaked = assign_only(&s, "k8s-pod-network.leaked", "node-a");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        let o = CheckOptions {
            show_problem_ips: true,
            report_file: Some(path.to_str().unwrap().into()),
            ..Default::default()
        };
        let r = check(&s, &o).unwrap();
        assert_eq!(r.problems(), 1, "{}", r.text);
        assert!(r.text.contains(&format!("  {leaked} leaked; attrs Main:k8s-pod-network.leaked Extra:namespace=default,node=node-a,pod=k8s-pod-network.leaked")), "{}", r.text);
        assert!(r
            .text
            .contains("Found 1 IPs that are allocated in IPAM but not actually in use."));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["version"], leaks::version());
        assert_eq!(v["clusterGUID"].as_str().unwrap().len(), 32);
        assert_eq!(v["datastoreLocked"], false);
        let a = &v["allocations"][leaked.to_string()][0];
        assert_eq!(a["ip"], leaked.to_string());
        assert_eq!(a["handle"], "k8s-pod-network.leaked");
        assert_eq!(a["inUse"], false);
        assert_eq!(a["owners"], serde_json::Value::Null);
        assert_eq!(a["pod"], "k8s-pod-network.leaked");
        assert!(a["sequenceNumber"].is_u64());
        let k = &v["allocations"][kept.to_string()][0];
        assert_eq!(k["inUse"], true);
        assert_eq!(
            k["owners"],
            serde_json::json!(["Workload(default/k8s-pod-network.kept)"])
        );

        let files = vec![path.to_str().unwrap().to_string()];
        let e = leaks::release_from_reports(&s, &files, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "data store is not locked. Either lock the data store, or re-run with --force"
        );
        let out = leaks::release_from_reports(&s, &files, true).unwrap();
        assert!(
            out.contains("Releasing 1 old IPs...\nReleased 1 IPs successfully\n"),
            "{out}"
        );
        assert!(Ipam::new(&s).get_assignment(leaked).unwrap().is_none());
        assert!(Ipam::new(&s).get_assignment(kept).unwrap().is_some());
        // The ClusterInformation did not change, so the report is current; the address was
        // already released: nothing happens to anything else.
        let out = leaks::release_from_reports(&s, &files, true).unwrap();
        assert!(
            out.contains("1 addresses marked as leaked in the report had already been cleaned up."),
            "{out}"
        );
        assert!(Ipam::new(&s).get_assignment(kept).unwrap().is_some());
        assert_eq!(check(&s, &CheckOptions::default()).unwrap().problems(), 0);
    }

    #[test]
    fn without_any_endpoint_a_live_handle_means_in_use() {
        // calico-ipam used on its own: no WorkloadEndpoints to cross-reference.
        let s = setup();
        let a = assign_only(&s, "h1", "node-a");
        let b = assign_only(&s, "h2", "node-a");
        let r = check(&s, &CheckOptions::default()).unwrap();
        assert_eq!(r.problems(), 0, "{}", r.text);
        assert!(
            r.text.contains("No workload endpoints are stored"),
            "{}",
            r.text
        );
        s.delete(&Key::handle("h2"), None).unwrap();
        let o = CheckOptions {
            show_problem_ips: true,
            ..Default::default()
        };
        let r = check(&s, &o).unwrap();
        assert!(r.text.contains(&format!("  {b} leaked;")), "{}", r.text);
        assert!(!r.text.contains(&format!("  {a} leaked;")), "{}", r.text);
        // Same rule on Kubernetes, where endpoints are pods.
        let pods = CheckOptions {
            endpoints_stored: false,
            ..o
        };
        wep(&s, "h1", "node-a", a);
        let r = check(&s, &pods).unwrap();
        assert!(r.text.contains("are pods"), "{}", r.text);
        assert!(r.text.contains(&format!("  {b} leaked;")), "{}", r.text);
    }

    #[test]
    fn configure_and_show_borrowed() {
        let s = setup();
        assert_eq!(
            configure(&s, Some(true), None).unwrap(),
            "Successfully set StrictAffinity to: true\n"
        );
        assert!(Ipam::new(&s).get_config().unwrap().strict_affinity);
        configure(&s, Some(false), None).unwrap();
        assert!(!Ipam::new(&s).get_config().unwrap().strict_affinity);
        let e = configure(&s, None, Some(3)).unwrap_err();
        assert!(e.to_string().contains("StrictAffinity"), "{e}");

        let a = assign(&s, "h1", "node-a");
        // node-b allocates from node-a's block by address (a borrowed address).
        let borrowed = IpAddr::from([
            10,
            8,
            0,
            match a {
                IpAddr::V4(v) => v.octets()[3] + 1,
                _ => 0,
            },
        ]);
        Ipam::new(&s)
            .assign_ip(&ipam::AssignIpRequest {
                ip: Some(borrowed),
                handle_id: "h2".into(),
                hostname: "node-b".into(),
                attrs: [
                    ("node".to_string(), "node-b".to_string()),
                    ("namespace".to_string(), "ns".to_string()),
                    ("pod".to_string(), "p2".to_string()),
                ]
                .into(),
                ..Default::default()
            })
            .unwrap();
        let t = show_borrowed(&s).unwrap();
        assert!(t.contains("BORROWING-NODE"), "{t}");
        let row = t
            .lines()
            .find(|l| l.contains(&borrowed.to_string()))
            .expect(&t);
        for cell in ["node-b", "node-a", "pod", "ns/p2"] {
            assert!(row.contains(cell), "{row}");
        }
        assert_eq!(t.lines().filter(|l| l.contains("node-a")).count(), 1, "{t}");
    }
}
