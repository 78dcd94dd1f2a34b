//! Fuzzing of the protocol parsers on stable (proptest): network configs, conflists,
//! `CNI_ARGS`, results of every spec version. Properties: never a panic; a refusal is a CNI
//! error with a spec code and a message; whatever parses can be printed in every version and
//! read back. Bounded here (`PROPTEST_CASES` raises it: netns-tests/bench/fuzz.sh).

use cni::strategies::{any_json, cases, hostile_string, mutated};
use cni::version::ALL;
use cni::{CniArgs, CniResult, NetConf, NetConfList};
use proptest::prelude::*;
use serde_json::{json, Value};

const CONF_FIELDS: &[&str] = &[
    "/cniVersion",
    "/name",
    "/type",
    "/ipam",
    "/ipam/type",
    "/dns",
    "/dns/nameservers",
    "/args",
    "/args/cni/ips",
    "/capabilities",
    "/prevResult",
    "/prevResult/ips",
    "/prevResult/interfaces",
    "/prevResult/routes",
    "/prevResult/cniVersion",
    "/runtimeConfig",
    "/runtimeConfig/portMappings",
    "/runtimeConfig/bandwidth",
    "/runtimeConfig/ips",
    "/runtimeConfig/mac",
    "/cni.dev/valid-attachments",
];

const RESULT_FIELDS: &[&str] = &[
    "/cniVersion",
    "/interfaces",
    "/ips",
    "/routes",
    "/dns",
    "/ip4",
    "/ip6",
    "/ip4/ip",
    "/ip4/gateway",
    "/ip4/routes",
    "/dns/nameservers",
];

fn base_conf() -> Value {
    json!({
        "cniVersion": "1.0.0", "name": "net", "type": "calico",
        "ipam": {"type": "calico-ipam"},
        "dns": {"nameservers": ["10.96.0.10"]},
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}],
            "bandwidth": {"ingressRate": 1000, "ingressBurst": 100}},
        "prevResult": base_result(),
    })
}

fn base_result() -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "cali1"}, {"name": "eth0", "sandbox": "/run/netns/x"}],
        "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.96.0.10"]}
    })
}

fn legacy_result() -> Value {
    json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24", "gateway": "10.0.0.1",
        "routes": [{"dst": "0.0.0.0/0"}]}, "dns": {}})
}

/// Codes the parsers may answer with: spec codes for version, config, decode, environment.
fn spec_code(code: u32) -> bool {
    matches!(code, 1 | 2 | 4 | 6 | 7)
}

fn check_error(e: &cni::CniError) -> Result<(), TestCaseError> {
    prop_assert!(spec_code(e.code.as_u32()), "code {:?}: {}", e.code, e.msg);
    prop_assert!(!e.msg.is_empty());
    Ok(())
}

/// A parsed result prints in every version and reads back.
fn round_trips(r: &CniResult) -> Result<(), TestCaseError> {
    for v in ALL {
        if let Ok(doc) = r.to_value(v) {
            let back = CniResult::from_value(&doc, v);
            prop_assert!(
                back.is_ok(),
                "{v}: {doc} does not read back: {:?}",
                back.err()
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn network_config(doc in prop_oneof![mutated(base_conf(), CONF_FIELDS), any_json(CONF_FIELDS)]) {
        match NetConf::parse(doc.to_string().as_bytes()) {
            Ok(c) => {
                if let Some(r) = &c.prev_result {
                    round_trips(r)?;
                }
            }
            Err(e) => check_error(&e)?,
        }
    }

    #[test]
    fn network_config_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Err(e) = NetConf::parse(&bytes) {
            check_error(&e)?;
        }
    }

    #[test]
    fn conflist(plugins in proptest::collection::vec(
            prop_oneof![mutated(base_conf(), CONF_FIELDS), any_json(CONF_FIELDS)], 0..4),
        name in prop_oneof![Just("net".to_string()), hostile_string()],
        version in prop_oneof![Just(json!("1.0.0")), any_json(&[])],
        versions in any_json(&[])) {
        let doc = json!({"cniVersion": version, "cniVersions": versions, "name": name, "plugins": plugins});
        match NetConfList::parse(doc.to_string().as_bytes()) {
            Ok(list) => {
                let _ = list.effective_version();
                for i in 0..list.plugins.len() {
                    let _ = list.plugin_stdin(i);
                }
            }
            Err(e) => check_error(&e)?,
        }
    }

    #[test]
    fn cni_args(raw in prop_oneof![
            "[A-Za-z_=;]{0,40}",
            "(K8S_POD_NAME|IP|IgnoreUnknown|K8S_POD_NAMESPACE)=[ -~]{0,20}(;[ -~]{0,20}){0,4}",
            any::<String>()]) {
        match CniArgs::parse(&raw) {
            Ok(a) => {
                let _ = a.ignore_unknown();
                let _ = a.k8s_pod_name();
                if let Err(e) = a.ips() {
                    check_error(&e)?;
                }
            }
            Err(e) => check_error(&e)?,
        }
    }

    #[test]
    fn results_of_every_version(
        doc in prop_oneof![
            mutated(base_result(), RESULT_FIELDS),
            mutated(legacy_result(), RESULT_FIELDS),
            any_json(RESULT_FIELDS)],
        version in proptest::sample::select(ALL)) {
        match CniResult::from_value(&doc, version) {
            Ok(r) => {
                round_trips(&r)?;
                let _ = r.validate_ipam("fuzz");
            }
            Err(e) => check_error(&e)?,
        }
    }
}

/// The mutated documents start from valid ones, or the properties above would be vacuous.
#[test]
fn base_documents_parse() {
    let c = NetConf::parse(base_conf().to_string().as_bytes()).unwrap();
    assert!(c.prev_result.is_some());
    CniResult::from_value(&base_result(), "1.0.0").unwrap();
    CniResult::from_value(&legacy_result(), "0.2.0").unwrap();
}
