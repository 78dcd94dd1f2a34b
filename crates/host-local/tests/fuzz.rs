//! Fuzzing of host-local's IPAM config (ranges, subnets, gateways, routes, dataDir,
//! resolvConf, requested addresses) and the `CNI_ARGS` it reads. Properties: never a panic;
//! what parses has at least one range set. Bounded here; `PROPTEST_CASES` raises it.

use cni::strategies::{any_json, cases, hostile_string, mutated};
use host_local::config::IpamConfig;
use proptest::prelude::*;
use serde_json::{json, Value};

const FIELDS: &[&str] = &[
    "/ipam/subnet",
    "/ipam/rangeStart",
    "/ipam/rangeEnd",
    "/ipam/gateway",
    "/ipam/ranges",
    "/ipam/routes",
    "/ipam/dataDir",
    "/ipam/resolvConf",
    "/ipam/type",
    "/args",
    "/args/cni/ips",
    "/runtimeConfig",
    "/runtimeConfig/ips",
    "/runtimeConfig/ipRanges",
    "/cniVersion",
    "/name",
];

fn base() -> Value {
    json!({"cniVersion": "1.0.0", "name": "net", "type": "bridge",
        "ipam": {"type": "host-local", "dataDir": "/tmp/hl-fuzz-never-written",
            "ranges": [[{"subnet": "10.0.0.0/24", "gateway": "10.0.0.1"}],
                       [{"subnet": "fd00::/64"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}})
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn host_local_config(doc in prop_oneof![mutated(base(), FIELDS), any_json(FIELDS)],
        args in prop_oneof![Just(String::new()), "IP=[0-9a-f.:,]{0,30}", hostile_string()]) {
        if let Ok(c) = IpamConfig::from_value(&doc, &args) {
            prop_assert!(!c.ranges.is_empty());
        }
    }
}

#[test]
fn base_document_parses() {
    IpamConfig::from_value(&base(), "").unwrap();
}
