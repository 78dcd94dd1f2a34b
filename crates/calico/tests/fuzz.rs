//! Fuzzing of the calico plugin's network config: every Calico key with hostile values, and
//! the datastore settings read from it. Properties: never a panic; a refusal is a config
//! error (code 6 or 7) with a message. Bounded here; `PROPTEST_CASES` raises it.

use calico::config::CalicoConfig;
use cni::strategies::{any_json, cases, mutated};
use proptest::prelude::*;
use serde_json::{json, Value};

const FIELDS: &[&str] = &[
    "/datastore_type",
    "/datastore_path",
    "/etcd_endpoints",
    "/etcd_discovery_srv",
    "/etcd_key_file",
    "/nodename",
    "/nodename_file",
    "/nodename_file_optional",
    "/hostname",
    "/mtu",
    "/log_level",
    "/log_file_path",
    "/log_file_max_size",
    "/log_file_max_age",
    "/log_file_max_count",
    "/ipam",
    "/ipam/type",
    "/ipam/assign_ipv4",
    "/ipam/ipv4_pools",
    "/policy",
    "/policy/type",
    "/kubernetes",
    "/kubernetes/kubeconfig",
    "/container_settings",
    "/container_settings/allow_ip_forwarding",
    "/feature_control",
    "/feature_control/floating_ips",
    "/num_queues",
    "/require_mtu_file",
    "/endpoint_status_dir",
];

fn base() -> Value {
    json!({"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "calico",
        "datastore_type": "kubernetes", "nodename": "node-1", "mtu": 1440,
        "log_level": "info", "log_file_path": "/var/log/calico/cni/cni.log",
        "ipam": {"type": "calico-ipam", "assign_ipv4": "true"},
        "policy": {"type": "k8s"},
        "kubernetes": {"kubeconfig": "/etc/cni/net.d/calico-kubeconfig"}})
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn calico_config(doc in prop_oneof![mutated(base(), FIELDS), any_json(FIELDS)]) {
        match CalicoConfig::from_value(&doc) {
            Ok(c) => {
                let _ = c.datastore();
                let _ = c.nodename_file();
            }
            Err(e) => {
                prop_assert!(matches!(e.code.as_u32(), 6 | 7), "{:?}: {}", e.code, e.msg);
                prop_assert!(!e.msg.is_empty());
            }
        }
        let _ = datastore::DatastoreSettings::from_calico_config(&doc, |_| None);
        let _ = cni_log::rotation(&doc);
    }
}

#[test]
fn base_document_parses() {
    CalicoConfig::from_value(&base()).unwrap();
}
