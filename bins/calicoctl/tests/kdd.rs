//! calicoctl end to end on the Kubernetes datastore (the test API server serving Calico's
//! CRDs): the operator workflow, with IPReservations as crd.projectcalico.org/v1 objects.

mod common;

use common::Ctl;
use ipam_store_kdd::KddStore;
use serde_json::json;
use test_apiserver::TestApiServer;

#[test]
fn operator_workflow_on_kdd() {
    let api = TestApiServer::start().unwrap();
    api.put(json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-a", "labels": {"kubernetes.io/hostname": "node-a"}}}))
        .unwrap();
    let kubeconfig = api.kubeconfig_path();
    let ctl = Ctl::new(&[
        ("DATASTORE_TYPE", "kubernetes"),
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
    ]);
    let store = KddStore::open(&kubeconfig).unwrap();
    common::operator_scenario(&ctl, &store, false, "kubernetes (");
    assert!(ctl.run(&["get", "nodes"]).ok().stdout.contains("node-a"));
}

#[test]
fn reservations_are_crds_calico_can_read() {
    let api = TestApiServer::start().unwrap();
    let kubeconfig = api.kubeconfig_path();
    let ctl = Ctl::new(&[
        ("DATASTORE_TYPE", "kubernetes"),
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
    ]);
    ctl.run_stdin(
        &["create", "-f", "-"],
        "apiVersion: projectcalico.org/v3\nkind: IPReservation\nmetadata:\n  name: r1\nspec:\n  reservedCIDRs: [10.1.2.3]\n",
    )
    .ok();
    let o = api
        .get("/apis/crd.projectcalico.org/v1/ipreservations/r1")
        .expect("IPReservation CRD object");
    assert_eq!(o["apiVersion"], "crd.projectcalico.org/v1");
    assert_eq!(o["spec"]["reservedCIDRs"], json!(["10.1.2.3"]));
    // One Calico wrote shows up in calicoctl.
    api.put(
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPReservation",
        "metadata": {"name": "r2"}, "spec": {"reservedCIDRs": ["10.1.2.4/31"]}}),
    )
    .unwrap();
    let wide = ctl
        .run(&["get", "ipreservations", "-o", "wide"])
        .ok()
        .stdout;
    assert!(wide.contains("r2     10.1.2.4/31"), "{wide}");
}
