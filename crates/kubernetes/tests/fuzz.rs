//! Fuzzing of Calico's pod and namespace annotations (`cni.projectcalico.org/*`): pools,
//! families, requested and floating addresses, MAC, source prefixes. Properties: never a
//! panic; a refusal is an error naming the annotation; what parses keeps at most one
//! requested address per family. Bounded here; `PROPTEST_CASES` raises it.

use cni::strategies::{cases, hostile_string};
use kubernetes::annotations::{
    Annotations, ALLOWED_SOURCE_PREFIXES, FLOATING_IPS, HW_ADDR, IPV4_POOLS, IPV6_POOLS, IP_ADDRS,
    IP_ADDRS_NO_IPAM, IP_FAMILIES,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

const KEYS: &[&str] = &[
    IPV4_POOLS,
    IPV6_POOLS,
    IP_FAMILIES,
    IP_ADDRS,
    IP_ADDRS_NO_IPAM,
    FLOATING_IPS,
    HW_ADDR,
    ALLOWED_SOURCE_PREFIXES,
];

/// Annotation values: JSON lists of (hostile) strings, near-valid addresses, or noise.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(
            prop_oneof![
                Just("10.0.0.1".to_string()),
                Just("fd00::1".to_string()),
                Just("10.0.0.0/24".to_string()),
                Just("default-ipv4-ippool".to_string()),
                Just("IPv4".to_string()),
                Just("IPv6".to_string()),
                hostile_string(),
            ],
            0..4
        )
        .prop_map(|v| serde_json::to_string(&v).unwrap()),
        Just("[\"10.0.0.1\",\"10.0.0.2\"]".to_string()),
        Just("{\"a\":1}".to_string()),
        hostile_string(),
    ]
}

fn annotations() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(
        proptest::sample::select(KEYS).prop_map(str::to_string),
        value(),
        0..5,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn calico_annotations(pod in annotations(), ns in annotations(), calico_ipam in any::<bool>()) {
        match Annotations::parse(&pod, &ns, calico_ipam) {
            Ok(a) => {
                for list in [&a.ip_addrs, &a.ip_addrs_no_ipam] {
                    prop_assert!(list.iter().filter(|ip| ip.is_ipv4()).count() <= 1, "{a:?}");
                    prop_assert!(list.iter().filter(|ip| ip.is_ipv6()).count() <= 1, "{a:?}");
                }
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains("cni.projectcalico.org/") || msg.contains("ipAddrs"), "{msg}");
            }
        }
    }
}
