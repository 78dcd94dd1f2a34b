//! Fuzzing of what the datastores hand back (etcd values and keys are read by these parsers
//! for every backend): blocks, affinities, handles, IPAM config, v3 resources, key paths.
//! Properties: never a panic; a block that parses passes its own consistency check and
//! serialises back to something that parses again. Bounded here; `PROPTEST_CASES` raises it.

use cni::strategies::{any_json, cases, hostile_string, mutated};
use ipam::keys::Key;

use ipam::model::{
    AllocationBlock, BlockAffinity, ClusterInformationSpec, IpPoolSpec, IpamConfig, IpamHandle,
    Resource,
};
use proptest::prelude::*;
use serde_json::{json, Value};

const BLOCK_FIELDS: &[&str] = &[
    "/cidr",
    "/affinity",
    "/allocations",
    "/unallocated",
    "/attributes",
    "/deleted",
    "/sequenceNumber",
    "/sequenceNumberForAllocation",
    "/strictAffinity",
];

fn base_block() -> Value {
    let mut allocations = vec![Value::Null; 64];
    allocations[1] = json!(0);
    json!({
        "cidr": "10.244.1.0/26",
        "affinity": "host:node-1",
        "allocations": allocations,
        "unallocated": (2..64).chain([0]).collect::<Vec<u32>>(),
        "attributes": [{"handle_id": "net.ctr", "secondary": {"node": "node-1"}}],
        "deleted": false
    })
}

const POOL_FIELDS: &[&str] = &[
    "/kind",
    "/apiVersion",
    "/metadata",
    "/metadata/name",
    "/spec",
    "/spec/cidr",
    "/spec/blockSize",
    "/spec/ipipMode",
    "/spec/natOutgoing",
    "/spec/disabled",
    "/spec/nodeSelector",
    "/spec/allowedUses",
];

fn base_pool() -> Value {
    json!({"kind": "IPPool", "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": "default-ipv4-ippool"},
        "spec": {"cidr": "10.244.0.0/16", "blockSize": 26, "ipipMode": "Always",
            "natOutgoing": true, "nodeSelector": "all()"}})
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn blocks(doc in prop_oneof![mutated(base_block(), BLOCK_FIELDS), any_json(BLOCK_FIELDS)]) {
        if let Ok(b) = AllocationBlock::from_json(&doc.to_string()) {
            prop_assert!(b.check().is_ok());
            let again = serde_json::to_string(&b).unwrap();
            prop_assert!(AllocationBlock::from_json(&again).is_ok(), "{again}");
        }
    }

    #[test]
    fn small_documents(doc in any_json(&["state", "deleted", "block", "strictAffinity",
            "autoAllocateBlocks", "maxBlocksPerHost"])) {
        let s = doc.to_string();
        let _ = BlockAffinity::from_json(&s);
        let _ = serde_json::from_str::<IpamHandle>(&s);
        let _ = serde_json::from_str::<IpamConfig>(&s);
        let _ = Resource::<ClusterInformationSpec>::from_json(&s);
    }

    #[test]
    fn pools(doc in prop_oneof![mutated(base_pool(), POOL_FIELDS), any_json(POOL_FIELDS)]) {
        if let Ok(p) = Resource::<IpPoolSpec>::from_json(&doc.to_string()) {
            let again = p.to_json();
            prop_assert!(Resource::<IpPoolSpec>::from_json(&again).is_ok(), "{again}");
        }
    }

    #[test]
    fn key_paths(path in prop_oneof![
            "/calico/ipam/v2/(assignment/ipv[46]/block|handle|host/[a-z-]{0,8}/ipv[46]/block)/[ -~]{0,30}",
            "/calico/resources/v3/projectcalico.org/[a-z]{0,12}(/[ -~]{0,12}){0,3}",
            hostile_string()]) {
        if let Some(k) = Key::from_path(&path) {
            // What parses maps back to a path that parses to the same key.
            prop_assert_eq!(Key::from_path(&k.path()), Some(k));
        }
    }
}

/// The mutated documents start from valid ones, or the properties above would be vacuous.
#[test]
fn base_documents_parse() {
    AllocationBlock::from_json(&base_block().to_string()).unwrap();
    Resource::<IpPoolSpec>::from_json(&base_pool().to_string()).unwrap();
}
