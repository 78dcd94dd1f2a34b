#!/usr/bin/env bash
# Long fuzzing run (not part of the test command, which runs each property with a small,
# bounded case count): every parser's proptest properties with PROPTEST_CASES cases each.
#   usage: netns-tests/bench/fuzz.sh [CASES=20000]
# Targets: cni (network config, conflist, CNI_ARGS, results of every version), ipam (datastore
# objects, key paths), ipam-store-kdd (KDD objects, block names), kubernetes (Calico
# annotations), portmap (config, portMappings, iptables-save text), calico (plugin config,
# datastore settings, log rotation numbers), host-local (IPAM config, CNI_ARGS IP).
# A failure prints proptest's minimal case; turn it into a row of the bad-input catalogue
# (netns-tests/tests/bad_input/catalogue.rs) once fixed.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PROPTEST_CASES="${1:-20000}"
start=$(date +%s)
cargo test -q -p cni --test fuzz
cargo test -q -p ipam --test fuzz_objects
cargo test -q -p ipam-store-kdd --lib fuzz
cargo test -q -p kubernetes --test fuzz
cargo test -q -p portmap --test fuzz
cargo test -q -p calico --test fuzz
cargo test -q -p host-local --test fuzz
echo "fuzz: ${PROPTEST_CASES} cases per property, all passed in $(( $(date +%s) - start ))s"
