//! The `calico` plugin object, with Calico's field names and defaults.

use cni::{CniError, ErrorCode};
use serde::Deserialize;
use serde_json::Value;

/// Where `calico-node` publishes the node name and the detected MTU.
pub const DEFAULT_NODENAME_FILE: &str = "/var/lib/calico/nodename";
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
    /// Parses and validates the plugin object.
    pub fn from_value(raw: &Value) -> Result<CalicoConfig, CniError> {
        let conf: CalicoConfig = cni::config::parse_named(raw)?;
        if let Some(obj) = raw.as_object() {
            for key in obj.keys().filter(|k| !KNOWN_KEYS.contains(&k.as_str())) {
                log::info!("ignoring unknown calico config key {key:?}");
            }
        }
        conf.validate()?;
        Ok(conf)
    }

    fn validate(&self) -> Result<(), CniError> {
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
            return Err(invalid(
                "policy_setup_timeout_seconds",
                "must not be negative",
            ));
        }
        if let Some(opts) = &self.dataplane_options {
            let kind = opts.get("type").and_then(Value::as_str).unwrap_or_default();
            return Err(CniError::new(
                ErrorCode::UnsupportedField,
                format!("dataplane_options type {kind:?} is not supported: only the Linux netlink dataplane is built in"),
            ));
        }
        if !self.readiness_gates.is_empty() {
            return Err(CniError::new(
                ErrorCode::UnsupportedField,
                "readiness_gates is not supported by this calico plugin",
            ));
        }
        Ok(())
    }

    /// The datastore in use, with Calico's default (etcdv3 when endpoints are configured,
    /// kubernetes otherwise) and our embedded store as `local`.
    pub fn datastore(&self) -> &str {
        match self.datastore_type.as_deref() {
            Some(t) if !t.is_empty() => t,
            _ if self
                .etcd_endpoints
                .as_deref()
                .is_some_and(|e| !e.is_empty()) =>
            {
                "etcdv3"
            }
            _ => "kubernetes",
        }
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
        let c =
            CalicoConfig::from_value(&json!({"etcd_endpoints":"http://127.0.0.1:2379"})).unwrap();
        assert_eq!(c.datastore(), "etcdv3");
        assert_eq!(
            CalicoConfig::from_value(&json!({})).unwrap().datastore(),
            "kubernetes"
        );
        let c = CalicoConfig::from_value(&json!({"datastore_type":"local"})).unwrap();
        assert_eq!(c.datastore(), "local");
    }

    #[test]
    fn wrong_types_and_values_name_the_field() {
        let e = CalicoConfig::from_value(&json!({"mtu":"big"})).unwrap_err();
        assert!(e.msg.contains("mtu"), "{}", e.msg);
        let e = CalicoConfig::from_value(&json!({"mtu":-1})).unwrap_err();
        assert!(e.msg.contains("mtu"));
        let e = CalicoConfig::from_value(&json!({"device_type":"macvlan"})).unwrap_err();
        assert!(e.msg.contains("device_type"));
        let e =
            CalicoConfig::from_value(&json!({"dataplane_options":{"type":"grpc"}})).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnsupportedField);
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
    fn defaults() {
        let c = CalicoConfig::from_value(&json!({"unknown_key": 1})).unwrap();
        assert_eq!(c.num_queues(), 1);
        assert_eq!(c.nodename_file(), DEFAULT_NODENAME_FILE);
        assert!(!c.container_settings.allow_ip_forwarding);
    }
}
