//! calicoctl end to end on the embedded local store (SQLite file in a temp dir).

mod common;

use common::{scenario, Ctl};

#[test]
fn admin_workflow_on_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ipam.db");
    let ctl = Ctl::new(&[
        ("DATASTORE_TYPE", "local"),
        ("DATASTORE_PATH", db.to_str().unwrap()),
    ]);
    // The binary creates the file on first use; the test opens the same file.
    ctl.run(&["get", "ippools"]).ok();
    let store = ipam_store_local::LocalStore::open(&db).unwrap();
    scenario(&ctl, &store, &["--ipv4-pool=192.168.0.0/16"], "Never");
}

#[test]
fn calico_prefixed_variables_and_init_options() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sub/ipam.db");
    let ctl = Ctl::new(&[
        ("CALICO_DATASTORE_TYPE", "local"),
        ("CALICO_DATASTORE_PATH", db.to_str().unwrap()),
    ]);
    let o = ctl
        .run(&[
            "datastore",
            "init",
            "--ipv4-pool=10.70.0.0/16",
            "--ipv6-pool",
            "fd00:70::/48",
        ])
        .ok();
    assert!(
        o.stdout
            .contains("Created IPPool default-ipv6-ippool (fd00:70::/48)"),
        "{o:#?}"
    );
    let store = ipam_store_local::LocalStore::open(&db).unwrap();
    let v6 = common::pool(&store, "default-ipv6-ippool");
    assert_eq!(v6.spec.block_size, Some(122));
    assert_eq!(v6.spec.ipip_mode.as_deref(), Some("Never"));
    assert!(!v6.spec.nat_outgoing);
    assert_eq!(
        common::pool(&store, "default-ipv4-ippool").spec.cidr,
        "10.70.0.0/16"
    );
    let wide = ctl.run(&["get", "ippools", "-o", "wide"]).ok().stdout;
    assert!(wide.starts_with("NAME                  CIDR           NAT     IPIPMODE   VXLANMODE   DISABLED   DISABLEBGPEXPORT   SELECTOR"), "{wide}");
    assert!(wide.contains("default-ipv6-ippool   fd00:70::/48   false   Never      Never       false      false              all()"), "{wide}");

    // --no-default-pool on a fresh store: ready, but no pool.
    let db2 = dir.path().join("two.db");
    let ctl2 = Ctl::new(&[
        ("DATASTORE_TYPE", "local"),
        ("DATASTORE_PATH", db2.to_str().unwrap()),
    ]);
    let o = ctl2.run(&["datastore", "init", "--no-default-pool"]).ok();
    assert!(o.stdout.contains("No default IPPool created"), "{o:#?}");
    assert_eq!(ctl2.run(&["get", "ippools"]).ok().stdout.lines().count(), 1);
}

#[test]
fn usage_and_datastore_errors_are_messages_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ipam.db");
    let local = Ctl::new(&[
        ("DATASTORE_TYPE", "local"),
        ("DATASTORE_PATH", db.to_str().unwrap()),
    ]);
    let o = local.run(&["get", "globalnetworkpolicies"]).failed();
    assert!(o.stderr.contains("not supported"), "{o:#?}");
    let o = local.run(&["ipam", "release"]).failed();
    assert!(o.stderr.contains("--ip"), "{o:#?}");
    let o = local
        .run(&["apply", "-f", "/nonexistent/pool.yaml"])
        .failed();
    assert!(o.stderr.contains("/nonexistent/pool.yaml"), "{o:#?}");
    let o = local.run_stdin(&["apply", "-f", "-"], "kind: [").failed();
    assert!(o.stderr.contains("failed to parse"), "{o:#?}");
    let o = local
        .run_stdin(
            &["apply", "-f", "-"],
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n}\n",
        )
        .failed();
    assert!(o.stderr.contains("'Node' is not supported"), "{o:#?}");
    assert!(local.run(&["--help"]).ok().stdout.contains("Usage:"));

    let o = Ctl::new(&[("DATASTORE_TYPE", "bogus")])
        .run(&["get", "ippools"])
        .failed();
    assert!(
        o.stderr.contains("unknown datastore_type \"bogus\""),
        "{o:#?}"
    );
    // A path that cannot be created.
    let o = Ctl::new(&[
        ("DATASTORE_TYPE", "local"),
        ("DATASTORE_PATH", "/proc/nope/ipam.db"),
    ])
    .run(&["ipam", "show"])
    .failed();
    assert!(o.stderr.contains("/proc/nope"), "{o:#?}");
}

#[test]
fn delete_by_file_skip_not_exists_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ipam.db");
    let ctl = Ctl::new(&[
        ("DATASTORE_TYPE", "local"),
        ("DATASTORE_PATH", db.to_str().unwrap()),
    ]);
    let f = common::testdata("ippool.yaml");
    let f = f.to_str().unwrap();
    ctl.run(&["create", "-f", f]).ok();
    let o = ctl.run(&["delete", "-f", f]).ok();
    assert_eq!(o.stdout, "Successfully deleted 1 'IPPool' resource(s)\n");
    assert_eq!(o.stderr, "", "no allocations, no warning");
    let o = ctl.run(&["delete", "ippool", "pods-ipv4-ippool"]).failed();
    assert!(
        o.stderr
            .contains("Failed to delete 'IPPool' resource: [resource does not exist: IPPool(pods-ipv4-ippool)]"),
        "{o:#?}"
    );
    ctl.run(&["delete", "--skip-not-exists", "ippool", "pods-ipv4-ippool"])
        .ok();

    // version: ours, then the cluster's (from ClusterInformation once initialised).
    let o = ctl.run(&["version"]).ok();
    assert!(o.stdout.starts_with("Client Version:    v"), "{o:#?}");
    assert!(
        o.stderr.contains("Unable to retrieve Cluster Version"),
        "{o:#?}"
    );
    ctl.run(&["datastore", "init"]).ok();
    let o = ctl.run(&["version"]).ok();
    assert!(
        o.stdout.contains("Cluster Version:   rust-calico-v"),
        "{o:#?}"
    );
}

#[test]
fn operator_workflow_on_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ipam.db");
    let ctl = Ctl::new(&[
        ("DATASTORE_TYPE", "local"),
        ("DATASTORE_PATH", db.to_str().unwrap()),
    ]);
    ctl.run(&["get", "ippools"]).ok();
    let store = ipam_store_local::LocalStore::open(&db).unwrap();
    common::operator_scenario(&ctl, &store, true, "local (");
}
