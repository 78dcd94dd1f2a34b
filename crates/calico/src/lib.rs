//! The `calico` CNI plugin: Calico's network config, workload identity (Kubernetes pod or plain
//! container), IPAM delegation (`calico-ipam`, `host-local`) and the Linux dataplane (veth,
//! /32 addresses, 169.254.1.1 next hop, host routes, sysctls).
//!
//! In Kubernetes mode (`kubernetes` cargo feature, see [`k8s`]) it also reads the pod and
//! namespace annotations, resolves host-local's `usePodCidr` from the Node, and publishes the
//! pod's IPs on the pod (`datastore_type: kubernetes`). With `datastore_type: etcdv3` it writes
//! the WorkloadEndpoint (and the network's default profile) Felix reads ([`endpoint`]).
//! ADD also honours Calico's gates: `readiness_gates` before allocating ([`readiness`]) and the
//! wait for Felix's endpoint status after wiring a pod ([`policy`]); [`cli`] has `-v`/`-t`.
//!
//! Owns: wiring one pod interface and undoing it; every failure after IPAM rolls back.
//! Must not: allocate addresses itself (IPAM plugins do, by exec), touch firewall rules or
//! shaping (portmap, bandwidth), or enter a namespace on the calling thread.

pub mod cli;
pub mod config;
pub mod dataplane;
pub mod endpoint;
pub mod identity;
pub mod ipam;
pub mod k8s;
pub mod node;
pub mod policy;
pub mod readiness;
pub mod rollback;

use cni::{
    CniError, CniResult, Command, Context, ErrorCode, Interface, Invocation, IpConfig, Plugin,
};
use config::CalicoConfig;
use dataplane::PodInterface;
use identity::Workload;
use ipam::Ipam;
use ipnetwork::IpNetwork;
use netns::NetNs;
use rollback::{Journal, Step, Undo};
use serde_json::Value;

#[derive(Debug, Default)]
pub struct Calico;

fn open_netns(inv: &Invocation) -> Result<NetNs, CniError> {
    let path = inv
        .netns
        .as_deref()
        .ok_or_else(|| CniError::new(ErrorCode::InvalidEnvironment, "CNI_NETNS is required"))?;
    NetNs::open(path).map_err(|e| {
        let code = if e.is_not_found() {
            ErrorCode::UnknownContainer
        } else {
            ErrorCode::Other(999)
        };
        CniError::new(code, e.to_string())
    })
}

/// Destinations routed through the next hop inside the pod: host-local's `ipam.routes` when
/// given (plus the defaults with `include_default_routes`), else the default routes.
fn pod_routes(conf: &CalicoConfig, raw: &Value) -> Result<Vec<IpNetwork>, CniError> {
    let defaults: Vec<IpNetwork> = vec![
        "0.0.0.0/0".parse().expect("v4"),
        "::/0".parse().expect("v6"),
    ];
    if raw.pointer("/ipam/type").and_then(Value::as_str) != Some("host-local") {
        return Ok(defaults);
    }
    let mut routes = Vec::new();
    for r in raw
        .pointer("/ipam/routes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match r.get("dst") {
            None => {}
            Some(Value::String(s)) => routes.push(s.parse::<IpNetwork>().map_err(|e| {
                CniError::new(
                    ErrorCode::InvalidConfig,
                    format!("invalid ipam.routes dst {s:?}: {e}"),
                )
            })?),
            Some(other) => {
                return Err(CniError::new(
                    ErrorCode::InvalidConfig,
                    format!("invalid ipam.routes dst {other}: not a string"),
                ))
            }
        }
    }
    if routes.is_empty() {
        return Ok(defaults);
    }
    if conf.include_default_routes {
        routes.extend(defaults);
    }
    Ok(routes)
}

/// The host veth name (`FELIX_INTERFACEPREFIX` applies).
fn host_veth_name(workload: &Workload) -> String {
    let prefix = std::env::var("FELIX_INTERFACEPREFIX").ok();
    workload.host_veth_name(prefix.as_deref())
}

/// The pod interface described by the config and a set of addresses.
fn pod_interface(
    inv: &Invocation,
    conf: &CalicoConfig,
    addresses: Vec<IpNetwork>,
    host_routes: bool,
    mtu: u32,
) -> Result<PodInterface, CniError> {
    let workload = Workload::from_args(&inv.args, &inv.container_id);
    Ok(PodInterface {
        host_veth: host_veth_name(&workload),
        owner: workload.veth_owner(),
        ifname: inv.ifname.clone(),
        addresses,
        routes: pod_routes(conf, &inv.config.raw)?,
        mtu,
        num_queues: conf.num_queues(),
        allow_ip_forwarding: conf.container_settings.allow_ip_forwarding,
        container_mac: None,
        host_routes,
    })
}

/// How a failed ADD takes its steps back (see [`rollback`]).
struct AddUndo<'a> {
    inv: &'a Invocation,
    ipam: &'a Ipam<'a>,
}

impl Undo for AddUndo<'_> {
    fn undo(&self, step: &Step) {
        match step {
            Step::Allocated => self.ipam.release_after_failure(),
            // Interfaces first; the routes go with them.
            Step::PodInterface { host_veth, owner } => {
                if let Err(e) = dataplane::remove(self.inv.netns.as_deref(), &self.inv.ifname) {
                    log::error!("rollback: {e}");
                }
                if let Err(e) = dataplane::remove_host_veth(host_veth, owner) {
                    log::error!("rollback: {e}");
                }
            }
        }
    }
}

/// Plain mode on etcd: an attachment that reused its container's endpoint has no interface or
/// addresses of its own to check (Calico's CHECK checks nothing at all).
fn reused_attachment(inv: &Invocation, conf: &CalicoConfig) -> Result<bool, CniError> {
    let workload = Workload::from_args(&inv.args, &inv.container_id);
    if !matches!(workload, Workload::Plain { .. }) {
        return Ok(false);
    }
    let Some(store) = endpoint::open_store(conf)? else {
        return Ok(false);
    };
    let node = node::node_name(conf)?;
    let key = endpoint::key_of(&workload, &node, &inv.ifname)?;
    endpoint::is_reused_attachment(store.as_ref(), &workload, &node, &inv.container_id, &key)
}

/// A pod addressed by its `ipAddrsNoIpam` annotation holds nothing in IPAM, so there is
/// nothing for an IPAM CHECK to find (Calico's CHECK checks nothing at all).
fn bypasses_ipam(kube: &k8s::Kube) -> Result<bool, CniError> {
    Ok(!kube.pod_settings()?.ip_addrs_no_ipam.is_empty())
}

/// Calico leaves host routes to Felix when calico-ipam returns no routes (KubeVirt targets).
fn wants_host_routes(ipam_plugin: &str, ipam_result: &CniResult) -> bool {
    !(ipam_plugin == "calico-ipam" && ipam_result.routes.is_empty())
}

impl Calico {
    fn prologue(inv: &Invocation) -> Result<CalicoConfig, CniError> {
        // Resolves the datastore settings too: an unknown datastore_type is reported as such,
        // before the nodename file check could hide it.
        let conf = CalicoConfig::from_value(&inv.config.raw)?;
        // Files kube and the etcd client open themselves: a FIFO there would block them.
        let ds = &conf.datastore_settings;
        cni::file::check_files([
            ("kubernetes.kubeconfig", ds.kubeconfig.as_deref()),
            ("etcd_ca_cert_file", ds.etcd.ca_cert_file.as_deref()),
            ("etcd_cert_file", ds.etcd.cert_file.as_deref()),
            ("etcd_key_file", ds.etcd.key_file.as_deref()),
        ])?;
        node::require_nodename_file(&conf)?;
        Ok(conf)
    }
}

impl Plugin for Calico {
    fn init(&self, inv: &Invocation) -> Result<(), CniError> {
        cni_log::setup(inv, Some(cni_log::CALICO_LOG_FILE))
    }

    fn add(&self, inv: &Invocation) -> Result<CniResult, CniError> {
        let conf = Self::prologue(inv)?;
        conf.validate_for_add()?;
        let mtu = node::mtu(&conf)?;
        let node = node::node_name(&conf)?;
        let ns = open_netns(inv)?;
        // Refuse before allocating: a repeated ADD must not disturb the interface it would collide with.
        dataplane::ensure_absent(&ns, &inv.ifname).context("ADD")?;
        let workload = Workload::from_args(&inv.args, &inv.container_id);
        dataplane::ensure_host_veth_free(&host_veth_name(&workload), &workload.veth_owner())
            .context("ADD")?;
        // Kubernetes lookups come before IPAM, so an unreachable API server fails the ADD
        // with nothing allocated or created.
        let kube = k8s::Kube::new(inv, &conf, &node);
        kube.require_datastore_ready()?;
        let settings = kube.pod_settings()?;
        let endpoints = endpoint::open_store(&conf)?;
        if let Some(store) = &endpoints {
            endpoint::require_datastore_ready(store.as_ref())?;
        }
        readiness::wait(&conf.readiness_gates)?;
        // A plain container's second attachment reuses its endpoint (no IPAM, no veth).
        let existing =
            endpoint::reuse_container_endpoint(endpoints.as_deref(), inv, &conf, &node, mtu)?;
        if let Some(result) = existing {
            return Ok(result);
        }
        let mut ipam = Ipam::new(inv)?.with_pod_cidrs(&kube);
        if let Some(c) = settings.ipam_config.clone() {
            ipam = ipam.with_config(c);
        }

        // From here on every change is recorded; any `?` undoes what was done, in reverse.
        let undo = AddUndo { inv, ipam: &ipam };
        let mut journal = Journal::new(&undo);
        let allocation = settings.allocate(&ipam)?;
        if allocation.from_ipam {
            journal.record(Step::Allocated);
        }
        let allocated = &allocation.result;
        if allocated.ips.is_empty() {
            return Err(CniError::generic("IPAM plugin returned missing IP config"));
        }
        let addresses: Vec<IpNetwork> = allocated
            .ips
            .iter()
            .map(|ip| dataplane::host_prefix(ip.address))
            .collect();
        settings.check_floating_ips(&addresses)?;
        let mut pod = pod_interface(
            inv,
            &conf,
            addresses.clone(),
            allocation.force_host_routes || wants_host_routes(ipam.plugin(), allocated),
            mtu,
        )?;
        pod.container_mac = settings.hw_addr;
        log::info!(
            "ADD node={node} container={} host_veth={} ips={:?}",
            inv.container_id,
            pod.host_veth,
            addresses
        );
        // Recorded first: a setup that fails half way leaves a partial interface to remove.
        journal.record(Step::PodInterface {
            host_veth: pod.host_veth.clone(),
            owner: pod.owner.clone(),
        });
        let mac = dataplane::setup(&ns, &pod).context("failed to set up the pod interface")?;
        kube.record_pod_ips(&addresses)?;
        if let Some(store) = &endpoints {
            let workload = Workload::from_args(&inv.args, &inv.container_id);
            let k8s_policy = conf.policy.policy_type == "k8s";
            let sa = settings.service_account.as_deref();
            let ep = endpoint::Endpoint {
                profiles: endpoint::profiles(k8s_policy, &workload, sa, &inv.config.name),
                workload,
                node: node.clone(),
                container_id: inv.container_id.clone(),
                endpoint: inv.ifname.clone(),
                ip_networks: addresses.clone(),
                labels: settings.labels.clone(),
                service_account: settings.service_account.clone(),
                interface_name: pod.host_veth.clone(),
                mac: mac.to_string(),
                ip_nats: endpoint::ip_nats(&addresses, &settings.floating_ips),
                allowed_source_prefixes: settings.allowed_source_prefixes.clone(),
                ports: settings.ports.clone(),
            };
            if conf.policy.policy_type.is_empty() {
                let kubernetes = matches!(ep.workload, Workload::Kubernetes { .. });
                endpoint::ensure_profile(store.as_ref(), &inv.config.name, kubernetes)?;
            }
            endpoint::write(store.as_ref(), &ep)?;
        }
        policy::wait_for_felix(&conf, &workload, &inv.ifname);
        journal.commit();
        Ok(CniResult {
            interfaces: vec![
                Interface {
                    name: pod.host_veth.clone(),
                    ..Default::default()
                },
                Interface {
                    name: inv.ifname.clone(),
                    mac: mac.to_string(),
                    mtu: Some(mtu),
                    sandbox: inv.netns.as_ref().map(|p| p.display().to_string()),
                    ..Default::default()
                },
            ],
            ips: addresses
                .into_iter()
                .map(|address| IpConfig {
                    address,
                    gateway: None,
                    interface: Some(1),
                })
                .collect(),
            routes: allocation.result.routes,
            dns: allocation.result.dns,
        })
    }

    fn del(&self, inv: &Invocation) -> Result<(), CniError> {
        let conf = Self::prologue(inv)?;
        let node = node::node_name(&conf)?;
        // First, and fatal on API errors: a DEL that cannot see the pod must not tear it down
        // (the runtime retries).
        k8s::Kube::new(inv, &conf, &node).clear_pod_ips()?;
        // etcd mode: the WorkloadEndpoint, with the same rule (a failure stops the DEL).
        let mut reused = false;
        if let Some(store) = endpoint::open_store(&conf)? {
            let workload = Workload::from_args(&inv.args, &inv.container_id);
            let check_owner = matches!(workload, Workload::Kubernetes { .. });
            let key = endpoint::key_of(&workload, &node, &inv.ifname)?;
            reused = endpoint::is_reused_attachment(
                store.as_ref(),
                &workload,
                &node,
                &inv.container_id,
                &key,
            )?;
            endpoint::remove(store.as_ref(), &key, &inv.container_id, check_owner)?;
        }
        // The interface goes first: releasing an address still configured on a live interface
        // could hand it to another pod while this one still answers for it. The IPAM plugin is
        // started before (it loads while the kernel tears the veth down) but fed its config, and
        // so releases, only after.
        let release = if reused {
            log::info!("attachment reused the container's endpoint: its addresses stay allocated");
            None
        } else {
            // A config IPAM cannot run is reported after the interface is gone, as before.
            Some(Ipam::new(inv).and_then(|ipam| ipam.start(Command::Del)))
        };
        dataplane::remove(inv.netns.as_deref(), &inv.ifname)
            .context("failed to remove the pod interface")?;
        match release {
            Some(started) => started?.finish(),
            None => Ok(()),
        }
    }

    fn check(&self, inv: &Invocation) -> Result<(), CniError> {
        let conf = Self::prologue(inv)?;
        if reused_attachment(inv, &conf)? {
            return Ok(());
        }
        let prev = inv.config.prev_result.as_ref().ok_or_else(|| {
            CniError::new(
                ErrorCode::InvalidConfig,
                "calico CHECK requires a prevResult",
            )
        })?;
        prev.check_interface_indexes()?;
        let ns = open_netns(inv)?;
        let ours = prev
            .interfaces
            .iter()
            .position(|i| i.name == inv.ifname && i.sandbox.is_some());
        let addresses: Vec<IpNetwork> = prev
            .ips
            .iter()
            .filter(|ip| ip.interface.is_none() || ip.interface == ours)
            .map(|ip| dataplane::host_prefix(ip.address))
            .collect();
        if addresses.is_empty() {
            return Err(CniError::generic(format!(
                "prevResult has no IP address for interface {}",
                inv.ifname
            )));
        }
        let node = node::node_name(&conf)?;
        let kube = k8s::Kube::new(inv, &conf, &node);
        let ipam = Ipam::new(inv)?.with_pod_cidrs(&kube);
        let pod = pod_interface(
            inv,
            &conf,
            addresses,
            wants_host_routes(ipam.plugin(), prev),
            0,
        )?;
        dataplane::check(&ns, &pod).context("CHECK")?;
        if bypasses_ipam(&kube)? {
            return Ok(());
        }
        ipam.run(Command::Check)
    }

    fn gc(&self, inv: &Invocation) -> Result<(), CniError> {
        Ipam::new(inv)?.run(Command::Gc)
    }

    fn status(&self, inv: &Invocation) -> Result<(), CniError> {
        Ipam::new(inv)?.run(Command::Status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn routes_default_and_host_local() {
        let conf = CalicoConfig::default();
        let r = pod_routes(
            &conf,
            &json!({"ipam":{"type":"calico-ipam","routes":[{"dst":"10.0.0.0/8"}]}}),
        )
        .unwrap();
        assert_eq!(r.len(), 2, "calico-ipam: defaults only");
        let hl =
            json!({"ipam":{"type":"host-local","routes":[{"dst":"10.0.0.0/8"},{"gw":"1.2.3.4"}]}});
        assert_eq!(
            pod_routes(&conf, &hl).unwrap(),
            vec!["10.0.0.0/8".parse::<IpNetwork>().unwrap()]
        );
        let with_defaults = CalicoConfig {
            include_default_routes: true,
            ..Default::default()
        };
        assert_eq!(pod_routes(&with_defaults, &hl).unwrap().len(), 3);
        let bad = json!({"ipam":{"type":"host-local","routes":[{"dst":"nope"}]}});
        assert!(pod_routes(&conf, &bad).unwrap_err().msg.contains("nope"));
        let bad = json!({"ipam":{"type":"host-local","routes":[{"dst":5}]}});
        assert!(pod_routes(&conf, &bad)
            .unwrap_err()
            .msg
            .contains("not a string"));
    }

    #[test]
    fn host_routes_rule() {
        let empty = CniResult::default();
        assert!(!wants_host_routes("calico-ipam", &empty));
        assert!(wants_host_routes("host-local", &empty));
    }
}
