//! The CNI verbs. Each invocation opens the datastore, does one allocator operation and
//! exits; all coordination between concurrent invocations is the datastore's CAS (plus the
//! optional host lock, see `lock`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use cni::{CniError, CniResult, Context, ErrorCode, Invocation, IpConfig, Plugin, Route};
use datastore::DatastoreKind;
use ipam::{
    AssignIpRequest, AutoAssignRequest, IntendedUse, IpVersion, Ipam, IpamError, IpamResult, Store,
};
use ipnetwork::IpNetwork;

use crate::config::IpamConf;
use crate::datastore as ds;
use crate::{lock, namespace, node};

/// The calico-ipam plugin.
#[derive(Debug, Default)]
pub struct CalicoIpam;

/// What every verb needs: config, node, handle and an open store.
struct Ctx {
    conf: IpamConf,
    node: String,
    handle: String,
    store: Box<dyn Store>,
}

impl Ctx {
    fn new(inv: &Invocation) -> Result<Ctx, CniError> {
        let started = std::time::Instant::now();
        let conf = IpamConf::from_netconf(&inv.config, |k| std::env::var(k).ok())?;
        let node = node::node_name(&conf)?;
        let handle = handle_id(&conf.network, &inv.container_id);
        let store = ds::open(&conf, started)?;
        log::debug!(
            "node {node}, handle {handle}, datastore {}",
            conf.datastore.describe()
        );
        Ok(Ctx {
            conf,
            node,
            handle,
            store,
        })
    }

    fn ipam(&self) -> Ipam<'_> {
        Ipam::with_options(&*self.store, ds::options(&self.conf))
    }

    /// The host lock, when configured (held until the returned guard drops).
    fn lock(&self) -> Option<lock::HostLock> {
        if self.conf.host_lock {
            lock::acquire(&self.conf.lock_file)
        } else {
            None
        }
    }

    /// Run `f`; if it failed only because this node has no Node object (etcd/kubernetes),
    /// register the node and run it once more.
    fn with_node<T>(&self, f: impl Fn() -> IpamResult<T>) -> Result<IpamResult<T>, CniError> {
        match f() {
            Err(IpamError::NodeNotFound(_)) if self.conf.datastore.kind != DatastoreKind::Local => {
                ds::register_node(&*self.store, &self.node)?;
                Ok(f())
            }
            r => Ok(r),
        }
    }
}

/// Calico's handle ID: `<network name>.<container ID>`.
pub fn handle_id(network: &str, container_id: &str) -> String {
    format!("{network}.{container_id}")
}

/// The handle Calico used before network-scoped handles (released too on DEL).
fn legacy_handle(inv: &Invocation) -> String {
    match (inv.args.k8s_pod_namespace(), inv.args.k8s_pod_name()) {
        (Some(ns), Some(pod)) => format!("{ns}.{pod}"),
        _ => inv.container_id.clone(),
    }
}

/// Allocation attributes: `node`, `timestamp`, and `pod`/`namespace` in Kubernetes mode.
fn attributes(inv: &Invocation, node: &str) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert("node".to_string(), node.to_string());
    a.insert(
        "timestamp".to_string(),
        ipam::clock::go_utc_string(std::time::SystemTime::now()),
    );
    if let (Some(ns), Some(pod)) = (inv.args.k8s_pod_namespace(), inv.args.k8s_pod_name()) {
        a.insert("namespace".to_string(), ns.to_string());
        a.insert("pod".to_string(), pod.to_string());
    }
    a
}

fn full_prefix(ip: IpAddr) -> IpNetwork {
    let len = if ip.is_ipv4() { 32 } else { 128 };
    IpNetwork::new(ip, len).unwrap_or(IpNetwork::from(ip))
}

/// `IP=` in CNI_ARGS: exactly these addresses (as /32, /128), all or nothing.
fn assign_specific(
    ctx: &Ctx,
    inv: &Invocation,
    ips: &[IpAddr],
) -> Result<Vec<IpNetwork>, CniError> {
    let ipam = ctx.ipam();
    let mut out = Vec::new();
    for &ip in ips {
        let req = AssignIpRequest {
            ip: Some(ip),
            handle_id: ctx.handle.clone(),
            hostname: ctx.node.clone(),
            attrs: attributes(inv, &ctx.node),
            intended_use: IntendedUse::Workload,
        };
        match ctx.with_node(|| ipam.assign_ip(&req))? {
            Ok(_) => out.push(full_prefix(ip)),
            Err(e) => {
                if !out.is_empty() {
                    if let Err(r) = ipam.release_by_handle(&ctx.handle) {
                        log::warn!("rollback of {} failed: {r}", ctx.handle);
                    }
                }
                return Err(CniError::from(e).context(format_args!("failed to assign {ip}")));
            }
        }
    }
    Ok(out)
}

/// Automatic assignment: one address per enabled family, from the configured pools.
fn assign_auto(ctx: &Ctx, inv: &Invocation) -> Result<Vec<IpNetwork>, CniError> {
    let ipam = ctx.ipam();
    let pools = |on: bool, entries: &[String], v: IpVersion| -> Result<Vec<IpNetwork>, CniError> {
        if !on {
            return Ok(Vec::new());
        }
        ipam.resolve_pools(entries, v)
            .context("invalid pool in ipam config")
    };
    let req = AutoAssignRequest {
        num_v4: usize::from(ctx.conf.assign_ipv4),
        num_v6: usize::from(ctx.conf.assign_ipv6),
        handle_id: ctx.handle.clone(),
        hostname: ctx.node.clone(),
        ipv4_pools: pools(ctx.conf.assign_ipv4, &ctx.conf.ipv4_pools, IpVersion::V4)?,
        ipv6_pools: pools(ctx.conf.assign_ipv6, &ctx.conf.ipv6_pools, IpVersion::V6)?,
        attrs: attributes(inv, &ctx.node),
        max_blocks_per_host: 0,
        intended_use: IntendedUse::Workload,
        namespace_labels: namespace::labels(&ctx.conf, inv, &ipam)?,
    };
    match ctx.with_node(|| ipam.auto_assign(&req))? {
        Ok(r) => Ok(r.ipv4.into_iter().chain(r.ipv6).collect()),
        Err(IpamError::Exhausted { version, message }) => Err(ds::shortfall(
            version,
            IpamError::Exhausted { version, message },
        )),
        Err(e @ IpamError::NoPools(_)) => Err(ds::explain_no_pools(&ipam, &ctx.conf, e)),
        Err(e) => Err(CniError::from(e).context("failed to assign IP addresses")),
    }
}

/// Calico's calico-ipam result: block-masked addresses, one route per address.
fn result(ips: Vec<IpNetwork>) -> CniResult {
    CniResult {
        routes: ips.iter().map(|n| Route::new(*n, None)).collect(),
        ips: ips
            .into_iter()
            .map(|address| IpConfig {
                address,
                gateway: None,
                interface: None,
            })
            .collect(),
        ..CniResult::default()
    }
}

/// Release `handle`; a handle that does not exist is already released.
fn release(ipam: &Ipam<'_>, handle: &str) -> Result<Vec<IpAddr>, CniError> {
    match ipam.release_by_handle(handle) {
        Ok(ips) => Ok(ips),
        Err(IpamError::HandleNotFound(_)) => Ok(Vec::new()),
        Err(IpamError::InvalidArgument(m)) => {
            // A legacy handle built from odd CNI_ARGS cannot exist in the datastore.
            log::debug!("skipping release of {handle:?}: {m}");
            Ok(Vec::new())
        }
        Err(e) => Err(CniError::from(e).context(format_args!("failed to release {handle}"))),
    }
}

impl Plugin for CalicoIpam {
    fn init(&self, inv: &Invocation) -> Result<(), CniError> {
        cni_log::setup(inv, None)
    }

    fn add(&self, inv: &Invocation) -> Result<CniResult, CniError> {
        let ctx = Ctx::new(inv)?;
        ds::initialise(&*ctx.store, &ctx.conf)?;
        let requested = inv.args.ips()?;
        let _lock = ctx.lock();
        // Waiting for the lock can take long; if calico was killed meanwhile, its DEL may
        // already have run: an allocation now would be orphaned.
        cni::delegate::ensure_delegator_alive()?;
        let ips = if requested.is_empty() {
            assign_auto(&ctx, inv)?
        } else {
            assign_specific(&ctx, inv, &requested)?
        };
        log::info!(
            "assigned {:?} to handle {} on node {}",
            ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ctx.handle,
            ctx.node
        );
        Ok(result(ips))
    }

    fn del(&self, inv: &Invocation) -> Result<(), CniError> {
        let ctx = Ctx::new(inv)?;
        let ipam = ctx.ipam();
        let _lock = ctx.lock();
        // Calico also frees the handle it used before network-scoped handles.
        let legacy = legacy_handle(inv);
        let mut handles = vec![ctx.handle.as_str()];
        if legacy != ctx.handle {
            handles.push(&legacy);
        }
        let freed = ipam.release_handles(&handles, &ctx.node).map_err(|e| {
            CniError::from(e).context(format_args!("failed to release {}", ctx.handle))
        })?;
        log::info!(
            "released {} address(es) of handles {handles:?}",
            freed.len()
        );
        Ok(())
    }

    /// Confirms the handle holds addresses, and every address of prevResult (if any).
    fn check(&self, inv: &Invocation) -> Result<(), CniError> {
        let ctx = Ctx::new(inv)?;
        let held: BTreeSet<IpAddr> = match ctx.ipam().ips_by_handle(&ctx.handle) {
            Ok(ips) => ips.into_iter().collect(),
            Err(IpamError::HandleNotFound(_)) => BTreeSet::new(),
            Err(e) => return Err(CniError::from(e).context("failed to read the allocation")),
        };
        if held.is_empty() {
            return Err(CniError::generic(format!(
                "no IP address is allocated to handle {}",
                ctx.handle
            )));
        }
        if let Some(prev) = &inv.config.prev_result {
            for ipc in &prev.ips {
                if !held.contains(&ipc.address.ip()) {
                    return Err(CniError::generic(format!(
                        "{} is not allocated to handle {} (it holds {:?})",
                        ipc.address.ip(),
                        ctx.handle,
                        held
                    )));
                }
            }
        }
        Ok(())
    }

    /// Releases this node's handles of this network whose container is not a valid
    /// attachment any more.
    fn gc(&self, inv: &Invocation) -> Result<(), CniError> {
        let ctx = Ctx::new(inv)?;
        let ipam = ctx.ipam();
        let valid: BTreeSet<String> = inv
            .config
            .valid_attachments
            .iter()
            .flatten()
            .map(|a| handle_id(&ctx.conf.network, &a.container_id))
            .collect();
        let prefix = format!("{}.", ctx.conf.network);
        let stale: BTreeSet<String> = ipam
            .list_allocations(None)
            .context("failed to list allocations")?
            .into_iter()
            .filter(|a| a.attrs.get("node") == Some(&ctx.node))
            .filter_map(|a| a.handle_id)
            .filter(|h| h.starts_with(&prefix) && !valid.contains(h))
            .collect();
        let _lock = ctx.lock();
        for h in &stale {
            let ips = release(&ipam, h)?;
            log::info!("GC released {ips:?} of stale handle {h}");
        }
        Ok(())
    }

    /// Ready when the datastore answers (and, beyond the local store, has pools).
    fn status(&self, inv: &Invocation) -> Result<(), CniError> {
        let ctx = Ctx::new(inv)?;
        let pools = ctx.ipam().list_pools().map_err(|e| {
            CniError::new(
                ErrorCode::PluginNotAvailable,
                format!(
                    "datastore {} not usable: {e}",
                    ctx.conf.datastore.describe()
                ),
            )
        })?;
        if pools.is_empty() && ctx.conf.datastore.kind != DatastoreKind::Local {
            return Err(CniError::new(
                ErrorCode::PluginNotAvailable,
                format!(
                    "the {} datastore has no IP pools: run `calicoctl datastore init` (or \
                     install Calico)",
                    ctx.conf.datastore.describe()
                ),
            ));
        }
        Ok(())
    }
}
