//! `calico-ipam -upgrade`: Calico's one-off migration of a node from `host-local` to
//! calico-ipam, run by the `upgrade-ipam` init container of calico-node before the node's
//! conflist is switched. Always the Kubernetes datastore (the client settings come from the
//! environment, as calicoctl's: `KUBECONFIG`, `K8S_API_ENDPOINT`, …, or in-cluster), the node
//! from `KUBERNETES_NODE_NAME`, and host-local's data under Calico's fixed path
//! [`HOST_LOCAL_DIR`] (Calico does not read the conflist for it).
//!
//! What it does, in Calico's order:
//! 1. no data dir: nothing to migrate (a node that never used host-local, or already migrated:
//!    this is what makes a second run a no-op);
//! 2. the node's IPIP tunnel address: when the Node has no
//!    `projectcalico.org/IPv4IPIPTunnelAddr`, the first address of an IPv4 podCIDR (the one
//!    Calico picks under host-local) is assigned in calico-ipam under
//!    `ipip-tunnel-addr-<node>` and recorded on the Node;
//! 3. an empty data dir is removed and that is all;
//! 4. otherwise CNI is paused (`ClusterInformation default` `datastoreReady: false`, and the
//!    `calico` and `host-local` binaries under `/host/opt/cni/bin` removed; install-cni puts
//!    them back), host-local's lock is taken, and each reservation file becomes a calico-ipam
//!    allocation of that address on this node — handle `k8s-pod-network.<containerID>`,
//!    attributes `node`/`pod`/`namespace` from the pod whose `status.podIP` it is — in the
//!    pool's block affine to the node (claimed on first use). Reservations of no pod on the
//!    node are dropped. Each file is deleted once migrated, so a rerun after a failure goes on
//!    where it stopped; an address already assigned counts as migrated;
//! 5. `datastoreReady` back to true and the data dir removed.
//!
//! Any failure is logged and the whole migration retried every second until it succeeds
//! (the init container then exits 0), as Calico does.

use std::collections::{BTreeMap, HashMap};
use std::io::ErrorKind;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use datastore::{DatastoreError, DatastoreKind, DatastoreSettings};
use ipam::{
    AssignIpRequest, IntendedUse, Ipam, IpamError, IpamOptions, Key, ResourceKind, Store,
    StoreError,
};
use ipnetwork::IpNetwork;
use serde_json::Value;

use crate::plugin::handle_id;

/// Where Calico expects host-local's reservations for its network (`k8s-pod-network`).
pub const HOST_LOCAL_DIR: &str = "/var/lib/cni/networks/k8s-pod-network";

/// The network name of Calico's manifests, which names the migrated handles.
const NETWORK: &str = "k8s-pod-network";

/// The binaries removed while migrating, so the kubelet cannot start pods with host-local.
const BINARIES_TO_DISABLE: [&str; 2] = ["/host/opt/cni/bin/calico", "/host/opt/cni/bin/host-local"];

/// Where the Kubernetes datastore keeps a node's IPIP tunnel address.
const IPIP_ANNOTATION: &str = "projectcalico.org/IPv4IPIPTunnelAddr";

/// Calico's wait after disabling CNI, for host-local invocations already running to finish.
const DRAIN: Duration = Duration::from_secs(5);

/// Why one migration attempt failed (the attempt is then retried).
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Kube(#[from] kubernetes::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
    /// Boxed: the allocator's error is large and this one travels through every step.
    #[error("failed to assign {ip} to calico-ipam: {source}")]
    Assign { ip: IpAddr, source: Box<IpamError> },
    /// The cluster is not in a state the migration can work with (what, in Calico's words).
    #[error("{problem}")]
    Invalid { problem: String },
}

impl UpgradeError {
    fn invalid(problem: impl Into<String>) -> Self {
        UpgradeError::Invalid {
            problem: problem.into(),
        }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> UpgradeError {
    let what = what.into();
    move |source| UpgradeError::Io { what, source }
}

/// Runs `-upgrade` with the process environment; the exit code.
pub fn run(env: impl Fn(&str) -> Option<String>) -> i32 {
    let Some(node) = env("KUBERNETES_NODE_NAME").filter(|n| !n.is_empty()) else {
        log_line("KUBERNETES_NODE_NAME not specified, refusing to migrate...");
        return 1;
    };
    log_line(&format!(
        "migrating node {node} from host-local to calico-ipam..."
    ));
    let (store, client) = match connect(&env) {
        Ok(c) => c,
        Err(e) => {
            log_line(&format!("failed to initialize the api client: {e}"));
            return 1;
        }
    };
    let m = Migration {
        store: &*store,
        client: &client,
        node: &node,
        dir: PathBuf::from(HOST_LOCAL_DIR),
    };
    while let Err(e) = m.migrate() {
        log_line(&format!("failed to migrate ipam, retrying...: {e}"));
        std::thread::sleep(Duration::from_secs(1));
    }
    log_line("migration from host-local to calico-ipam complete");
    0
}

/// Progress goes to stderr (the init container's log), as Calico's logrus output does.
fn log_line(msg: &str) {
    eprintln!("calico-ipam -upgrade: {msg}");
}

/// The Kubernetes datastore and API client from the environment (the datastore type is
/// forced to kubernetes, as Calico's upgrade does).
fn connect(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Box<dyn Store>, kubernetes::Client), UpgradeError> {
    let mut settings = DatastoreSettings::from_env(env)?;
    settings.kind = DatastoreKind::Kubernetes;
    let store = datastore::open(&settings)?;
    let client = kubernetes::Client::connect(&datastore::kube_client_options(&settings))?;
    Ok((store, client))
}

/// One node's migration.
struct Migration<'a> {
    store: &'a dyn Store,
    client: &'a kubernetes::Client,
    node: &'a str,
    dir: PathBuf,
}

impl Migration<'_> {
    fn ipam(&self) -> Ipam<'_> {
        Ipam::with_options(
            self.store,
            IpamOptions {
                require_node: true,
                ..IpamOptions::default()
            },
        )
    }

    fn migrate(&self) -> Result<(), UpgradeError> {
        match std::fs::metadata(&self.dir) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                log_line("host-local IPAM data dir not found; no migration necessary");
                return Ok(());
            }
            Err(e) => return Err(io(format!("failed to stat {}", self.dir.display()))(e)),
            Ok(_) => {}
        }
        self.ensure_tunnel_address()?;
        if self.dir_is_empty()? {
            log_line("host-local IPAM data dir empty; removing it");
            return std::fs::remove_dir(&self.dir)
                .map_err(io(format!("failed to remove {}", self.dir.display())));
        }
        set_datastore_ready(self.store, false)?;
        disable_binaries()?;
        std::thread::sleep(DRAIN);
        self.migrate_reservations()?;
        set_datastore_ready(self.store, true)?;
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            log_line(&format!("failed to remove {}: {e}", self.dir.display()));
        }
        Ok(())
    }

    fn dir_is_empty(&self) -> Result<bool, UpgradeError> {
        let mut entries = std::fs::read_dir(&self.dir)
            .map_err(io(format!("failed to read {}", self.dir.display())))?;
        Ok(entries.next().is_none())
    }

    /// Step 2: the IPIP tunnel address host-local nodes had implicitly (podCIDR + 1).
    fn ensure_tunnel_address(&self) -> Result<(), UpgradeError> {
        let annotations = self.client.node_annotations(self.node)?;
        if annotations
            .get(IPIP_ANNOTATION)
            .is_some_and(|a| !a.is_empty())
        {
            return Ok(());
        }
        let node = self.client.node(self.node)?;
        let Some(cidr) = node.pod_cidrs.first() else {
            return Err(UpgradeError::invalid(format!(
                "node {} has no podCIDR to take the IPIP tunnel address from",
                self.node
            )));
        };
        let IpNetwork::V4(v4) = cidr else {
            log_line("IPv6 podCIDR - no need to migrate IPIP address");
            return Ok(());
        };
        let o = v4.ip().octets();
        let tunnel = IpAddr::from([o[0], o[1], o[2], o[3].wrapping_add(1)]);
        let attrs = BTreeMap::from([
            ("node".to_string(), self.node.to_string()),
            ("type".to_string(), "ipipTunnelAddress".to_string()),
        ]);
        self.assign(tunnel, format!("ipip-tunnel-addr-{}", self.node), attrs)?;
        self.client
            .annotate_node(self.node, IPIP_ANNOTATION, &tunnel.to_string())?;
        log_line(&format!(
            "assigned IPIP tunnel address {tunnel} to the node"
        ));
        Ok(())
    }

    /// `AssignIP` of exactly `ip` on this node; already assigned counts as done (a rerun).
    fn assign(
        &self,
        ip: IpAddr,
        handle: String,
        attrs: BTreeMap<String, String>,
    ) -> Result<(), UpgradeError> {
        let req = AssignIpRequest {
            ip: Some(ip),
            handle_id: handle,
            hostname: self.node.to_string(),
            attrs,
            intended_use: IntendedUse::Workload,
        };
        match self.ipam().assign_ip(&req) {
            Ok(_) => Ok(()),
            Err(IpamError::AlreadyAssigned(_)) => {
                log_line(&format!("{ip} already assigned, skipping"));
                Ok(())
            }
            Err(source) => Err(UpgradeError::Assign {
                ip,
                source: Box::new(source),
            }),
        }
    }

    /// Step 4, under host-local's own lock so no late host-local call races the move.
    fn migrate_reservations(&self) -> Result<(), UpgradeError> {
        let lock_path = self.dir.join("lock");
        let Some(_lock) = crate::lock::acquire(&lock_path) else {
            return Err(UpgradeError::invalid(format!(
                "failed to acquire lock on host-local IPAM ({})",
                lock_path.display()
            )));
        };
        let pods: HashMap<String, kubernetes::objects::Pod> = self
            .client
            .pods_on_node(self.node)?
            .into_iter()
            .filter_map(|p| Some((p.status_pod_ips.first()?.clone(), p)))
            .collect();
        let entries = std::fs::read_dir(&self.dir)
            .map_err(io(format!("failed to read {}", self.dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(io(format!("failed to read {}", self.dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            self.migrate_file(&entry.path(), &name, &pods)?;
        }
        Ok(())
    }

    fn migrate_file(
        &self,
        path: &Path,
        name: &str,
        pods: &HashMap<String, kubernetes::objects::Pod>,
    ) -> Result<(), UpgradeError> {
        if name == "lock" {
            return Ok(());
        }
        if name.contains("last") {
            return remove(path);
        }
        let ip: IpAddr = name.parse().map_err(|e| {
            UpgradeError::invalid(format!(
                "failed to parse IP {name} ({}): {e}",
                path.display()
            ))
        })?;
        let Some(pod) = pods.get(name) else {
            log_line(&format!(
                "pod not found for IP {name}, dropping its reservation"
            ));
            return remove(path);
        };
        let text = std::fs::read_to_string(path)
            .map_err(io(format!("failed to read {}", path.display())))?;
        let container_id = text.split('\n').next().unwrap_or_default().trim();
        let attrs = BTreeMap::from([
            ("node".to_string(), self.node.to_string()),
            ("pod".to_string(), pod.name.clone()),
            ("namespace".to_string(), pod.namespace.clone()),
        ]);
        self.assign(ip, handle_id(NETWORK, container_id), attrs)?;
        log_line(&format!(
            "{ip} of pod {}/{} assigned in calico-ipam",
            pod.namespace, pod.name
        ));
        remove(path)
    }
}

fn remove(path: &Path) -> Result<(), UpgradeError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(io(format!("failed to remove {}", path.display()))(e))
        }
        _ => Ok(()),
    }
}

fn disable_binaries() -> Result<(), UpgradeError> {
    BINARIES_TO_DISABLE
        .iter()
        .try_for_each(|b| remove(Path::new(b)))
}

/// Set `ClusterInformation default`'s `spec.datastoreReady` (compare-and-swap, retried on a
/// conflicting writer).
fn set_datastore_ready(store: &dyn Store, ready: bool) -> Result<(), UpgradeError> {
    let key = Key::resource(ResourceKind::ClusterInformation, "default");
    let mut last = None;
    for _ in 0..5 {
        let kv = store.get(&key)?;
        let mut v: Value = serde_json::from_str(&kv.value)
            .map_err(|e| UpgradeError::invalid(format!("unreadable ClusterInformation: {e}")))?;
        if v.pointer("/spec/datastoreReady").and_then(Value::as_bool) == Some(ready) {
            return Ok(());
        }
        v["spec"]["datastoreReady"] = Value::Bool(ready);
        match store.update(&key, &v.to_string(), &kv.revision) {
            Ok(_) => {
                log_line(&format!("set datastore readiness to {ready}"));
                return Ok(());
            }
            Err(e @ StoreError::Conflict(_)) => {
                last = Some(e);
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(|| UpgradeError::invalid("update conflict"), Into::into))
}
