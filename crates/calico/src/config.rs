//! The `calico` plugin object, with Calico's field names and defaults.

use cni::{CniError, ErrorCode};
use serde::Deserialize;
use serde_json::Value;

/// Where `calico-node` publishes the node name and the detected MTU.
pub use datastore::DEFAULT_NODENAME_FILE;
pub const MTU_FILE: &str = "/var/lib/calico/mtu";
/// veth default when neither config nor calico-node says otherwise (the kernel's own default).
pub const DEFAULT_MTU: u32 = 1500;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ContainerSettings {
    pub allow_ip_forwarding: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FeatureControl {
    pub ip_addrs_no_ipam: bool,
    pub floating_ips: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Policy {
    #[serde(rename = "type")]
    pub policy_type: String,
    pub k8s_api_root: Option<String>,
    pub k8s_auth_token: Option<String>,
    pub k8s_client_certificate: Option<String>,
    pub k8s_client_key: Option<String>,
    pub k8s_certificate_authority: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Kubernetes {
    pub kubeconfig: Option<String>,
    pub k8s_api_root: Option<String>,
    pub node_name: Option<String>,
}

/// Every key of Calico's Linux network config that changes behaviour, plus the ones it accepts
/// and ignores on Linux. Unknown keys are tolerated (and logged).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CalicoConfig {
    pub datastore_type: Option<String>,
    /// Our embedded store's database file (`datastore_type: local`).
    pub datastore_path: Option<String>,
    pub etcd_endpoints: Option<String>,
    pub etcd_discovery_srv: Option<String>,
    pub etcd_key_file: Option<String>,
    pub etcd_cert_file: Option<String>,
    pub etcd_ca_cert_file: Option<String>,
    pub etcd_scheme: Option<String>,
    pub etcd_authority: Option<String>,
    pub nodename: Option<String>,
    pub nodename_file: Option<String>,
    pub nodename_file_optional: bool,
    pub hostname: Option<String>,
    pub mtu: i64,
    pub num_queues: i64,
    pub device_type: Option<String>,
    pub require_mtu_file: bool,
    pub log_level: Option<String>,
    pub log_file_path: Option<String>,
    pub log_file_max_size: Option<u64>,
    pub log_file_max_age: Option<u64>,
    pub log_file_max_count: Option<u64>,
    pub ipam_lock_file: Option<String>,
    pub include_default_routes: bool,
    pub container_settings: ContainerSettings,
    pub feature_control: FeatureControl,
    pub policy: Policy,
    pub kubernetes: Kubernetes,
    pub readiness_gates: Vec<String>,
    pub policy_setup_timeout_seconds: i64,
    pub endpoint_status_dir: Option<String>,
    pub dataplane_options: Option<Value>,
    pub qps: Option<f64>,
    pub burst: Option<i64>,
    pub calico_api_group: Option<String>,
    pub mode: Option<String>,
    pub vxlan_mac_prefix: Option<String>,
    pub vxlan_vni: Option<u64>,
    /// The datastore by the rule `calico-ipam` and `calicoctl` use too (config keys, then the
    /// environment; Calico's default), resolved once in [`CalicoConfig::from_value_env`].
    #[serde(skip)]
    pub datastore_settings: datastore::DatastoreSettings,
}

/// Keys this plugin knows (its own and the CNI protocol's); anything else is logged.
const KNOWN_KEYS: &[&str] = &[
    "cniVersion",
    "name",
    "type",
    "ipam",
    "dns",
    "args",
    "runtimeConfig",
    "RuntimeConfig",
    "prevResult",
    "capabilities",
    "datastore_type",
    "datastore_path",
    "etcd_endpoints",
    "etcd_discovery_srv",
    "etcd_key_file",
    "etcd_cert_file",
    "etcd_ca_cert_file",
    "etcd_scheme",
    "etcd_authority",
    "nodename",
    "nodename_file",
    "nodename_file_optional",
    "hostname",
    "mtu",
    "num_queues",
    "device_type",
    "require_mtu_file",
    "log_level",
    "log_file_path",
    "log_file_max_size",
    "log_file_max_age",
    "log_file_max_count",
    "ipam_lock_file",
    "include_default_routes",
    "container_settings",
    "feature_control",
    "policy",
    "kubernetes",
    "readiness_gates",
    "policy_setup_timeout_seconds",
    "endpoint_status_dir",
    "dataplane_options",
    "qps",
    "burst",
    "calico_api_group",
    "mode",
    "vxlan_mac_prefix",
    "vxlan_vni",
    "windows_use_single_network",
    "windows_pod_deletion_timestamp_timeout",
    "windows_disable_default_deny_all_policy",
    "windows_loopback_DSR",
    "cni.dev/valid-attachments",
    "cni.dev/attachments",
];

fn invalid(field: &str, msg: impl std::fmt::Display) -> CniError {
    CniError::new(ErrorCode::InvalidConfig, format!("invalid {field}: {msg}"))
}

impl CalicoConfig {
    /// Parses and validates the plugin object (the datastore settings also read the process
    /// environment, as Calico's client does).
    pub fn from_value(raw: &Value) -> Result<CalicoConfig, CniError> {
        Self::from_value_env(raw, |k| std::env::var(k).ok())
    }

    /// [`CalicoConfig::from_value`] with the environment lookup supplied by the caller.
    pub fn from_value_env(
        raw: &Value,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<CalicoConfig, CniError> {
        let mut conf: CalicoConfig = cni::config::parse_named(raw)?;
        conf.datastore_settings = datastore::DatastoreSettings::from_calico_config(raw, env)?;
        if let Some(obj) = raw.as_object() {
            for key in obj.keys().filter(|k| !KNOWN_KEYS.contains(&k.as_str())) {
                log::info!("ignoring unknown calico config key {key:?}");
            }
        }
        conf.validate()?;
        Ok(conf)
    }

    /// Checks shared by every verb: none. What only ADD uses is checked by
    /// [`CalicoConfig::validate_for_add`], so a DEL or CHECK never fails over it (a DEL refused
    /// for configuration leaves the pod stuck in Terminating).
    fn validate(&self) -> Result<(), CniError> {
        Ok(())
    }

    /// Checks of the keys only ADD uses (MTU, queues, device, dataplane, readiness gates, policy
    /// wait). Called at the start of ADD, before anything is allocated or created.
    pub fn validate_for_add(&self) -> Result<(), CniError> {
        // 0 means "from the MTU file or the default"; below 68 the kernel refuses the veth.
        if self.mtu < 0 || self.mtu > 65535 || (1..68).contains(&self.mtu) {
            return Err(invalid(
                "mtu",
                format!("{} is out of range (0, or 68-65535)", self.mtu),
            ));
        }
        if self.num_queues > 1024 {
            return Err(invalid(
                "num_queues",
                format!("{} is more than 1024", self.num_queues),
            ));
        }
        match self.device_type.as_deref() {
            None | Some("") | Some("veth") | Some("netkit") => {}
            Some(other) => {
                return Err(invalid(
                    "device_type",
                    format!("unknown device_type {other:?}"),
                ))
            }
        }
        if self.policy_setup_timeout_seconds < 0 {
            // Calico's words: "invalid pod startup delay of -1".
            return Err(invalid(
                "policy_setup_timeout_seconds",
                format!(
                    "invalid pod startup delay of {}",
                    self.policy_setup_timeout_seconds
                ),
            ));
        }
        self.dataplane()?;
        for gate in &self.readiness_gates {
            crate::readiness::Gate::parse(gate)?;
        }
        Ok(())
    }

    /// `dataplane_options` selects the dataplane as Calico's GetDataplane does: no `type` (or no
    /// options at all) is the Linux netlink dataplane; `grpc` is Calico's external dataplane
    /// (VPP), which this plugin does not implement; anything else is invalid.
    pub fn dataplane(&self) -> Result<(), CniError> {
        let Some(opts) = &self.dataplane_options else {
            return Ok(());
        };
        if !opts.is_object() {
            return Err(invalid("dataplane_options", "not a JSON object"));
        }
        match opts.get("type") {
            None => Ok(()),
            Some(Value::String(t)) if t == "grpc" => Err(invalid(
                "dataplane_options.type",
                "the gRPC dataplane (type \"grpc\") is not built into this calico plugin: only the Linux dataplane (no type) is",
            )),
            Some(other) => Err(invalid(
                "dataplane_options.type",
                format!("invalid dataplane type: {other}"),
            )),
        }
    }

    /// The datastore in use (`etcdv3`, `kubernetes` or `local`), by the shared rule: the
    /// config's `datastore_type`, else `DATASTORE_TYPE`, else etcdv3 when etcd endpoints are
    /// configured or in the environment, else kubernetes.
    pub fn datastore(&self) -> &'static str {
        self.datastore_settings.kind.as_str()
    }

    pub fn num_queues(&self) -> u32 {
        self.num_queues.max(1) as u32
    }

    pub fn nodename_file(&self) -> &str {
        self.nodename_file
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_NODENAME_FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_configs_parse_verbatim() {
        for f in [
            "10-calico-kdd-hostlocal.conflist",
            "10-calico-etcd-tls.conflist",
        ] {
            let path = format!("{}/../../testdata/{f}", env!("CARGO_MANIFEST_DIR"));
            let list: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
            let c = CalicoConfig::from_value(&list["plugins"][0]).unwrap();
            assert_eq!(c.policy.policy_type, "k8s");
            assert!(c.kubernetes.kubeconfig.is_some());
        }
    }

    #[test]
    fn datastore_defaults_like_calico() {
        let none = |_: &str| None;
        let c =
            CalicoConfig::from_value_env(&json!({"etcd_endpoints":"http://127.0.0.1:2379"}), none)
                .unwrap();
        assert_eq!(c.datastore(), "etcdv3");
        assert_eq!(
            CalicoConfig::from_value_env(&json!({}), none)
                .unwrap()
                .datastore(),
            "kubernetes"
        );
        let c = CalicoConfig::from_value_env(&json!({"datastore_type":"local"}), none).unwrap();
        assert_eq!(c.datastore(), "local");
        // The environment counts too, as for calico-ipam (it did not before).
        let env = |k: &str| (k == "ETCD_ENDPOINTS").then(|| "http://10.0.0.1:2379".to_string());
        let c = CalicoConfig::from_value_env(&json!({}), env).unwrap();
        assert_eq!(c.datastore(), "etcdv3");
        let env = |k: &str| (k == "DATASTORE_TYPE").then(|| "local".to_string());
        let c = CalicoConfig::from_value_env(&json!({}), env).unwrap();
        assert_eq!(c.datastore(), "local");
        let e = CalicoConfig::from_value_env(&json!({"etcd_endpoints":"http://a:b"}), none)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert!(e.msg.contains("etcd_endpoints"), "{}", e.msg);
    }

    #[test]
    fn wrong_types_and_values_name_the_field() {
        let e = CalicoConfig::from_value(&json!({"mtu":"big"})).unwrap_err();
        assert!(e.msg.contains("mtu"), "{}", e.msg);
        let add_err = |v: Value| {
            CalicoConfig::from_value(&v)
                .unwrap()
                .validate_for_add()
                .unwrap_err()
        };
        assert!(add_err(json!({"mtu":-1})).msg.contains("mtu"));
        assert!(add_err(json!({"device_type":"macvlan"}))
            .msg
            .contains("device_type"));
        let e = add_err(json!({"policy_setup_timeout_seconds":-1}));
        assert!(
            e.msg.contains("invalid pod startup delay of -1"),
            "{}",
            e.msg
        );
        let e = add_err(json!({"readiness_gates":["not a url"]}));
        assert!(e.msg.contains("readiness_gates"), "{}", e.msg);
        let e = CalicoConfig::from_value(&json!({"dataplane_options":{"type":"grpc"}}))
            .unwrap()
            .validate_for_add()
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert!(e.msg.contains("dataplane_options.type"), "{}", e.msg);
        let e = CalicoConfig::from_value(&json!({"nodename_file_optional":"yes"})).unwrap_err();
        assert!(e.msg.contains("nodename_file_optional"), "{}", e.msg);
        let e = CalicoConfig::from_value(&json!({"container_settings":{"allow_ip_forwarding":1}}))
            .unwrap_err();
        assert!(
            e.msg.contains("container_settings.allow_ip_forwarding"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn add_only_keys_never_fail_parsing() {
        // What DEL and CHECK see: these parse, whatever ADD would say about them.
        for v in [
            json!({"dataplane_options":{}}),
            json!({"dataplane_options":{"type":"grpc","socket":"/run/vpp.sock"}}),
            json!({"readiness_gates":["ftp://nowhere"]}),
            json!({"policy_setup_timeout_seconds":-5}),
            json!({"mtu":70000,"device_type":"macvlan"}),
        ] {
            CalicoConfig::from_value(&v).unwrap();
        }
        let linux = CalicoConfig::from_value(&json!({"dataplane_options":{"x":1}})).unwrap();
        linux.validate_for_add().unwrap();
    }

    #[test]
    fn defaults() {
        let c = CalicoConfig::from_value(&json!({"unknown_key": 1})).unwrap();
        assert_eq!(c.num_queues(), 1);
        assert_eq!(c.nodename_file(), DEFAULT_NODENAME_FILE);
        assert!(!c.container_settings.allow_ip_forwarding);
    }
}
