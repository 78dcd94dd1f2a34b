//! Keeps the demo (`netns-tests/demo.sh`, README command 1) from rotting: runs its driver
//! `cni-demo` against the built plugins and requires the full variant (calico + calico-ipam on
//! the local store, portmap, bandwidth) to pass every one of its own checks. Needs root and
//! `cargo build --bins` first, like every netns test.

use std::process::Command;

#[test]
fn demo_runs_the_full_chain_and_leaves_nothing() {
    netns_tests::require_root().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cni-demo"))
        .args(["--ipam", "calico-ipam"])
        // Its temp files go under a dir we own, so we can check they are gone afterwards.
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("Done: variant calico + calico-ipam (local store) + portmap + bandwidth"),
        "{stdout}"
    );
    for expected in [
        "OK pod-b",
        "is answered by pod-a (portmap DNAT)",
        "is held near its 4 Mbit/s egress limit",
        "OK no cali/ifb links",
        "OK no IPAM allocations left",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "demo left files: {left:?}");
}
