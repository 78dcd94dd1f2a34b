//! Fuzzing of portmap's parsers: its config keys, `runtimeConfig.portMappings` entries, and
//! the `iptables-save` text it reads back from the host. Properties: never a panic; a config
//! refusal names a field; what parses as a save keeps every `-A` line's chain. Bounded here;
//! `PROPTEST_CASES` raises it (netns-tests/bench/fuzz.sh).

use cni::strategies::{any_json, cases, hostile_string, mutated};
use portmap::iptables::save::NatState;
use portmap::{PortMapConf, PortMapping};
use proptest::prelude::*;
use serde_json::{json, Value};

const CONF_FIELDS: &[&str] = &[
    "/snat",
    "/masqAll",
    "/markMasqBit",
    "/externalSetMarkChain",
    "/conditionsV4",
    "/conditionsV6",
    "/backend",
];
const MAPPING_FIELDS: &[&str] = &["/hostPort", "/containerPort", "/protocol", "/hostIP"];

fn base_mapping() -> Value {
    json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "192.0.2.1"})
}

/// iptables-save-like text: table headers, chain declarations, rules, COMMIT, and noise.
fn save_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("*nat".to_string()),
        Just("*filter".to_string()),
        Just("COMMIT".to_string()),
        "[:][A-Z-]{0,12} (ACCEPT|-) \\[[0-9]{1,3}:[0-9]{1,3}\\]",
        "-A [A-Z-]{0,16}( (-p|-m|--dport|-j|-s|--comment) [ -~]{0,16}){0,5}",
        "-A [A-Z-]{0,8} -m comment --comment \"[ -~]{0,20}",
        hostile_string(),
    ];
    proptest::collection::vec(line, 0..24).prop_map(|l| l.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn config(doc in prop_oneof![
            mutated(json!({"name": "n", "type": "portmap", "snat": true}), CONF_FIELDS),
            any_json(CONF_FIELDS)]) {
        if let Err(e) = PortMapConf::from_json(&doc) {
            let msg = e.to_string();
            prop_assert!(!msg.is_empty());
        }
    }

    #[test]
    fn mappings(doc in prop_oneof![mutated(base_mapping(), MAPPING_FIELDS), any_json(MAPPING_FIELDS)]) {
        match PortMapping::from_json(&doc) {
            Ok(m) => {
                prop_assert!(m.host_port > 0 && m.container_port > 0, "{m:?}");
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        let _ = PortMapping::list_from_json(Some(&json!([doc])));
    }

    #[test]
    fn iptables_save(text in save_text()) {
        let state = NatState::parse(&text);
        for r in &state.rules {
            prop_assert!(!r.chain.contains(' '), "{r:?}");
        }
        let _ = NatState::parse_listing(&text);
    }
}

/// The mutated documents start from valid ones.
#[test]
fn base_documents_parse() {
    PortMapping::from_json(&base_mapping()).unwrap();
    PortMapConf::from_json(&json!({"name": "n", "type": "portmap", "snat": true})).unwrap();
}
