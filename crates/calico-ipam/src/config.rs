//! calico-ipam's view of the network config. Keys are matched like Go's `encoding/json`
//! (exact, else case-insensitive), unknown keys are ignored, a wrong JSON type is an error.
//! Datastore selection is the `datastore` crate's (netconf values win over the
//! `DATASTORE_TYPE` / `ETCD_*` environment, with or without the `CALICO_` prefix, as in Calico).

use std::path::PathBuf;

use cni::caps::CiObject;
use cni::{CniError, Context, ErrorCode, NetConf};
use datastore::{DatastoreKind, DatastoreSettings};
use ipam_store_local::init::LocalDefaults;
use ipnetwork::IpNetwork;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use datastore::DEFAULT_NODENAME_FILE;
/// Calico's default host lock.
pub const DEFAULT_LOCK_FILE: &str = "/var/run/calico/ipam.lock";

/// Everything calico-ipam reads from its config.
#[derive(Debug, Clone, PartialEq)]
pub struct IpamConf {
    /// Network name (handle prefix).
    pub network: String,
    /// Which datastore and how to reach it (`datastore_type`, `datastore_path`, `etcd_*`,
    /// `kubernetes.kubeconfig`, and the matching environment).
    pub datastore: DatastoreSettings,
    pub nodename: Option<String>,
    pub nodename_file: PathBuf,
    pub hostname: Option<String>,
    /// `ipam_lock_file`.
    pub lock_file: PathBuf,
    /// `ipam.host_lock` (our extension; default true: see `lock` module docs).
    pub host_lock: bool,
    pub assign_ipv4: bool,
    pub assign_ipv6: bool,
    pub ipv4_pools: Vec<String>,
    pub ipv6_pools: Vec<String>,
    /// `ipam.default_ipv4_pool` etc.: what an empty local datastore is seeded with.
    pub local_defaults: LocalDefaults,
    /// How to reach the Kubernetes API for the pod's namespace labels.
    pub k8s: K8sAccess,
}

/// Calico's ipam plugin reads the pod's namespace (for IPPool `namespaceSelector`) when
/// `kubernetes.kubeconfig` is set or `policy.type` is `k8s`; the client itself comes from the
/// datastore settings (`datastore::kube_client_options`), as every other API client here.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct K8sAccess {
    pub kubeconfig: Option<String>,
    pub policy_k8s: bool,
}

impl K8sAccess {
    /// Whether Calico would look the namespace up.
    pub fn enabled(&self) -> bool {
        self.kubeconfig.is_some() || self.policy_k8s
    }

    fn from_top(top: &CiObject) -> Result<Self, CniError> {
        let section = |key: &str| -> Result<CiObject, CniError> {
            match top.get(key) {
                None | Some(Value::Null) => Ok(CiObject::default()),
                Some(v) => CiObject::from_value(v).ok_or_else(|| {
                    invalid(format!(
                        "failed to load netconf: \"{key}\" is not an object"
                    ))
                }),
            }
        };
        let k = section("kubernetes")?;
        let p = section("policy")?;
        let s = |o: &CiObject, key: &str| -> Result<Option<String>, CniError> {
            Ok(non_empty(field::<String>(o, key)?))
        };
        Ok(K8sAccess {
            kubeconfig: s(&k, "kubeconfig")?,
            policy_k8s: s(&p, "type")?.as_deref() == Some("k8s"),
        })
    }
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(ErrorCode::InvalidConfig, msg)
}

fn field<T: DeserializeOwned>(o: &CiObject, key: &str) -> Result<Option<T>, CniError> {
    o.field(key).context("failed to load netconf")
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// Calico's `assign_ipv4`/`assign_ipv6` are JSON strings compared exactly (`"false"` turns
/// IPv4 off, `"true"` turns IPv6 on); booleans are accepted too.
fn flag(o: &CiObject, key: &str, default: bool) -> Result<bool, CniError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if default => Ok(s != "false"),
        Some(Value::String(s)) => Ok(s == "true"),
        Some(other) => Err(invalid(format!(
            "failed to load netconf: field {key:?}: expected a string \"true\"/\"false\", got {other}"
        ))),
    }
}

/// A block size within the range Calico allows for IP pools of that family.
fn block_size(
    o: &CiObject,
    key: &str,
    range: std::ops::RangeInclusive<u8>,
) -> Result<Option<u8>, CniError> {
    match field::<u8>(o, key)? {
        Some(n) if !range.contains(&n) => Err(invalid(format!(
            "failed to load netconf: field {key:?}: {n} is outside {}-{}",
            range.start(),
            range.end()
        ))),
        n => Ok(n),
    }
}

fn cidr(
    o: &CiObject,
    key: &str,
    default: Option<IpNetwork>,
) -> Result<Option<IpNetwork>, CniError> {
    match field::<String>(o, key)? {
        None => Ok(default),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s
            .parse::<IpNetwork>()
            .ok()
            .filter(|n| n.network() == n.ip())
            .map(Some)
            .ok_or_else(|| invalid(format!("invalid ipam.{key} {s:?}: not a network CIDR"))),
    }
}

impl IpamConf {
    /// Read from the invocation's config; `env` looks up environment variables.
    pub fn from_netconf(
        nc: &NetConf,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, CniError> {
        let top = CiObject::from_value(&nc.raw)
            .ok_or_else(|| invalid("network config is not a JSON object"))?;
        let ipam = match top.get("ipam") {
            None | Some(Value::Null) => CiObject::default(),
            Some(v) => CiObject::from_value(v)
                .ok_or_else(|| invalid("failed to load netconf: \"ipam\" is not an object"))?,
        };
        let s = |o: &CiObject, key: &str| -> Result<Option<String>, CniError> {
            Ok(non_empty(field::<String>(o, key)?))
        };
        let datastore = DatastoreSettings::from_calico_config(&nc.raw, env)?;
        // Files kube and the etcd client open themselves: a FIFO there would block them.
        cni::file::check_files([
            ("kubernetes.kubeconfig", datastore.kubeconfig.as_deref()),
            ("etcd_ca_cert_file", datastore.etcd.ca_cert_file.as_deref()),
            ("etcd_cert_file", datastore.etcd.cert_file.as_deref()),
            ("etcd_key_file", datastore.etcd.key_file.as_deref()),
        ])?;
        if datastore.kind == DatastoreKind::Local {
            // SQLite would open a device or FIFO and create `<path>-journal` beside it.
            cni::file::check_regular_or_absent(&datastore.local_path, "datastore_path")?;
        }
        let lock_file =
            PathBuf::from(s(&top, "ipam_lock_file")?.unwrap_or_else(|| DEFAULT_LOCK_FILE.into()));
        // A FIFO would block the lock's open(2) until the timeout.
        cni::file::check_regular_or_absent(&lock_file, "ipam_lock_file")?;
        let pools = |key: &str| -> Result<Vec<String>, CniError> {
            Ok(field::<Vec<String>>(&ipam, key)?.unwrap_or_default())
        };
        let (ipv4_pools, ipv6_pools) = (pools("ipv4_pools")?, pools("ipv6_pools")?);
        let d = LocalDefaults::default();
        let local_defaults = LocalDefaults {
            ipv4_pool: cidr(&ipam, "default_ipv4_pool", d.ipv4_pool)?,
            ipv4_block_size: block_size(&ipam, "default_ipv4_block_size", 20..=32)?
                .unwrap_or(d.ipv4_block_size),
            ipv6_pool: cidr(&ipam, "default_ipv6_pool", d.ipv6_pool)?,
            ipv6_block_size: block_size(&ipam, "default_ipv6_block_size", 116..=128)?
                .unwrap_or(d.ipv6_block_size),
            // Entries that are network CIDRs (others are pool names).
            named_pools: ipv4_pools
                .iter()
                .chain(&ipv6_pools)
                .filter_map(|p| p.parse::<IpNetwork>().ok())
                .filter(|n| n.network() == n.ip())
                .collect(),
        };
        Ok(IpamConf {
            network: nc.name.clone(),
            datastore,
            nodename: s(&top, "nodename")?,
            nodename_file: PathBuf::from(
                s(&top, "nodename_file")?.unwrap_or_else(|| DEFAULT_NODENAME_FILE.into()),
            ),
            hostname: s(&top, "hostname")?,
            lock_file,
            host_lock: field(&ipam, "host_lock")?.unwrap_or(true),
            assign_ipv4: flag(&ipam, "assign_ipv4", true)?,
            assign_ipv6: flag(&ipam, "assign_ipv6", false)?,
            ipv4_pools,
            ipv6_pools,
            local_defaults,
            k8s: K8sAccess::from_top(&top)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datastore::DatastoreKind;
    use serde_json::json;

    fn conf(v: Value) -> Result<IpamConf, CniError> {
        conf_env(v, &[])
    }

    fn conf_env(v: Value, env: &[(&str, &str)]) -> Result<IpamConf, CniError> {
        let nc = NetConf::parse(v.to_string().as_bytes()).unwrap();
        IpamConf::from_netconf(&nc, |k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults_follow_calico() {
        let c = conf(json!({"name":"k8s-pod-network","cniVersion":"1.0.0","type":"calico","ipam":{"type":"calico-ipam"}})).unwrap();
        assert_eq!(c.network, "k8s-pod-network");
        assert_eq!(
            c.datastore.kind,
            DatastoreKind::Kubernetes,
            "Calico's default without etcd endpoints"
        );
        assert!(c.assign_ipv4 && !c.assign_ipv6);
        assert_eq!(c.nodename_file, PathBuf::from(DEFAULT_NODENAME_FILE));
        assert_eq!(c.lock_file, PathBuf::from(DEFAULT_LOCK_FILE));
        assert_eq!(
            c.datastore.local_path,
            PathBuf::from("/var/lib/calico/ipam.db")
        );
        assert_eq!(c.local_defaults, LocalDefaults::default());
        assert!(c.host_lock);
    }

    #[test]
    fn kubernetes_access_for_namespace_labels() {
        let c = conf(json!({"name":"n","kubernetes":{"kubeconfig":"/k"},
            "policy":{"type":"k8s","k8s_api_root":"https://a","K8s_Auth_Token":"t"}}))
        .unwrap();
        assert!(c.k8s.enabled() && c.k8s.policy_k8s);
        assert_eq!(c.k8s.kubeconfig.as_deref(), Some("/k"));
        let plain = conf(json!({"name":"n","policy":{"type":""}})).unwrap();
        assert!(
            !plain.k8s.enabled(),
            "Calico looks only with a kubeconfig or policy k8s"
        );
        let e = conf(json!({"name":"n","kubernetes":"x"})).unwrap_err();
        assert!(e.msg.contains("kubernetes"), "{}", e.msg);
    }

    #[test]
    fn assign_flags_strings_and_bools() {
        let f = |a4: Value, a6: Value| {
            let c = conf(json!({"name":"n","ipam":{"assign_ipv4":a4,"assign_ipv6":a6}})).unwrap();
            (c.assign_ipv4, c.assign_ipv6)
        };
        assert_eq!(f(json!("false"), json!("true")), (false, true));
        assert_eq!(
            f(json!("FALSE"), json!("TRUE")),
            (true, false),
            "exact string match as Calico"
        );
        assert_eq!(f(json!(false), json!(true)), (false, true));
        assert_eq!(f(json!("yes"), json!("no")), (true, false));
        let e = conf(json!({"name":"n","ipam":{"assign_ipv4":1}})).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert!(e.msg.contains("assign_ipv4"), "{}", e.msg);
    }

    #[test]
    fn keys_are_case_insensitive_and_types_checked() {
        let c = conf(
            json!({"name":"n","Datastore_Type":"local","IPAM":{"IPv4_Pools":["a","10.0.0.0/16"]}}),
        )
        .unwrap();
        assert_eq!(c.datastore.kind, DatastoreKind::Local);
        assert_eq!(c.ipv4_pools, vec!["a", "10.0.0.0/16"]);
        assert_eq!(
            c.local_defaults.named_pools,
            vec!["10.0.0.0/16".parse::<IpNetwork>().unwrap()],
            "pools named by CIDR are what an empty local store gets"
        );
        let e = conf(json!({"name":"n","ipam":{"ipv4_pools":"x"}})).unwrap_err();
        assert!(e.msg.contains("ipv4_pools"), "{}", e.msg);
        let e = conf(json!({"name":"n","nodename":5})).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
    }

    #[test]
    fn datastore_type_precedence() {
        let c = conf_env(
            json!({"name":"n","etcd_endpoints":"http://conf:2379"}),
            &[
                ("ETCD_ENDPOINTS", "http://env:2379"),
                ("CALICO_DATASTORE_TYPE", "local"),
            ],
        )
        .unwrap();
        assert_eq!(c.datastore.kind, DatastoreKind::Local);
        assert_eq!(c.datastore.etcd.endpoints, vec!["http://conf:2379"]);
        let c = conf_env(
            json!({"name":"n","datastore_type":"etcdv3"}),
            &[("DATASTORE_TYPE", "local")],
        )
        .unwrap();
        assert_eq!(c.datastore.kind, DatastoreKind::Etcdv3);
        let e = conf(json!({"name":"n","datastore_type":"zookeeper"})).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        let e = conf(json!({"name":"n","etcd_endpoints":"http://127.0.0.1:notaport"})).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert!(e.msg.contains("etcd_endpoints"), "{}", e.msg);
    }

    /// The `calico` plugin's rule: no datastore_type and no etcd endpoints is kubernetes
    /// (it was etcdv3 at 127.0.0.1:2379 here while `calico` used kubernetes).
    #[test]
    fn kdd_seed_conflist_selects_kubernetes() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/10-calico-kdd-hostlocal.conflist"
        );
        let list: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut plugin = list["plugins"][0].clone();
        plugin["name"] = list["name"].clone();
        plugin["ipam"] = json!({"type": "calico-ipam"});
        let c = conf(plugin).unwrap();
        assert_eq!(c.datastore.kind, DatastoreKind::Kubernetes);
        assert_eq!(
            c.datastore.kubeconfig.as_deref(),
            Some(std::path::Path::new("/etc/cni/net.d/calico-kubeconfig"))
        );
    }

    #[test]
    fn local_default_pool_knobs() {
        let c = conf(json!({"name":"n","ipam":{"default_ipv4_pool":"10.77.0.0/16","default_ipv4_block_size":28,"default_ipv6_pool":"fd00:77::/48"}})).unwrap();
        assert_eq!(
            c.local_defaults.ipv4_pool.unwrap().to_string(),
            "10.77.0.0/16"
        );
        assert_eq!(c.local_defaults.ipv4_block_size, 28);
        assert_eq!(
            c.local_defaults.ipv6_pool.unwrap().to_string(),
            "fd00:77::/48"
        );
        let c = conf(json!({"name":"n","ipam":{"default_ipv4_pool":""}})).unwrap();
        assert_eq!(c.local_defaults.ipv4_pool, None);
        assert!(conf(json!({"name":"n","ipam":{"default_ipv4_pool":"10.77.0.1/16"}})).is_err());
    }
}

#[cfg(test)]
mod seed_tests {
    use super::*;
    use datastore::DatastoreKind;

    /// The real-world etcd + TLS conflist parses verbatim into calico-ipam's view.
    #[test]
    fn seed_etcd_tls_conflist() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/10-calico-etcd-tls.conflist"
        );
        let list: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut plugin = list["plugins"][0].clone();
        plugin["name"] = list["name"].clone();
        plugin["cniVersion"] = list["cniVersion"].clone();
        let nc = NetConf::parse(plugin.to_string().as_bytes()).unwrap();
        let c = IpamConf::from_netconf(&nc, |_| None).unwrap();
        assert_eq!(c.network, "k8s-pod-network");
        assert_eq!(c.datastore.kind, DatastoreKind::Etcdv3);
        assert_eq!(c.datastore.etcd.endpoints.len(), 3);
        assert_eq!(
            c.datastore.etcd.ca_cert_file.as_deref(),
            Some(std::path::Path::new("/etc/cni/net.d/calico-tls/etcd-ca"))
        );
        assert_eq!(
            c.datastore.kubeconfig.as_deref(),
            Some(std::path::Path::new("/etc/cni/net.d/calico-kubeconfig"))
        );
        assert!(c.assign_ipv4 && !c.assign_ipv6 && c.host_lock);
    }
}
