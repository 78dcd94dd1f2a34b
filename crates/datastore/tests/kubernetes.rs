//! The Kubernetes datastore opened from Calico's settings against the test API server: every
//! way Calico's client reaches the API server works for the store too (kubeconfig, API root
//! with token and CA from the `policy` keys or `K8S_*` variables, in-cluster service account),
//! and `calico_api_group` picks the group the objects go to (else discovery does).
#![cfg(feature = "kubernetes")]

use datastore::{ApiGroup, DatastoreKind, DatastoreSettings};
use ipam::Key;
use serde_json::{json, Value};
use test_apiserver::TestApiServer;

fn env<'a>(vars: &'a [(&'a str, String)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
}

/// Opens the store and writes the IPAM config singleton through it.
fn write_config(settings: &DatastoreSettings) {
    assert_eq!(settings.kind, DatastoreKind::Kubernetes, "{settings:?}");
    let store = datastore::open(settings).unwrap_or_else(|e| panic!("{settings:?}: {e}"));
    store
        .create(&Key::IpamConfig, r#"{"auto_allocate_blocks":true}"#)
        .unwrap_or_else(|e| panic!("{}: {e}", settings.describe()));
}

fn take_v1_config(api: &TestApiServer) -> Option<Value> {
    api.remove("/apis/crd.projectcalico.org/v1/ipamconfigs/default")
}

#[test]
fn api_root_with_policy_token_and_ca_keys() {
    let api = TestApiServer::start().unwrap();
    let conf = json!({
        "kubernetes": {"k8s_api_root": api.url()},
        "policy": {"type": "k8s", "k8s_auth_token": api.token(),
                   "k8s_certificate_authority": api.ca_path()}
    });
    let s = DatastoreSettings::from_calico_config(&conf, env(&[])).unwrap();
    write_config(&s);
    assert!(take_v1_config(&api).is_some());
}

#[test]
fn k8s_environment_variables() {
    let api = TestApiServer::start().unwrap();
    let vars = [
        ("K8S_API_ENDPOINT", api.url()),
        ("K8S_API_TOKEN", api.token().to_string()),
        ("K8S_CA_FILE", api.ca_path().display().to_string()),
    ];
    let s = DatastoreSettings::from_calico_config(&json!({}), env(&vars)).unwrap();
    write_config(&s);
    assert!(take_v1_config(&api).is_some());
    // calicoctl reads the same variables.
    let s = DatastoreSettings::from_env(env(&vars)).unwrap();
    write_config(&s);
    assert!(take_v1_config(&api).is_some());
}

#[test]
fn in_cluster_service_account() {
    let api = TestApiServer::start().unwrap();
    // The test server keeps `token` and `ca.crt` side by side: a service-account directory.
    let sa_dir = api.token_path().parent().unwrap().to_path_buf();
    let vars = [
        ("KUBERNETES_SERVICE_HOST", api.addr().ip().to_string()),
        ("KUBERNETES_SERVICE_PORT", api.addr().port().to_string()),
    ];
    let mut s = DatastoreSettings::from_calico_config(&json!({}), env(&vars)).unwrap();
    s.kubernetes.service_account_dir = sa_dir;
    write_config(&s);
    assert!(take_v1_config(&api).is_some());
}

#[test]
fn calico_api_group_v3() {
    let api = TestApiServer::start().unwrap();
    let conf = json!({
        "kubernetes": {"kubeconfig": api.kubeconfig_path()},
        "calico_api_group": "projectcalico.org/v3"
    });
    let s = DatastoreSettings::from_calico_config(&conf, env(&[])).unwrap();
    assert_eq!(s.kubernetes.api_group, Some(ApiGroup::V3));
    write_config(&s);
    assert!(take_v1_config(&api).is_none());
    let o = api
        .get("/apis/projectcalico.org/v3/ipamconfigurations/default")
        .expect("IPAMConfiguration in projectcalico.org/v3");
    assert_eq!(o["spec"]["autoAllocateBlocks"], true);
}

/// Without `calico_api_group` the group comes from the API server's discovery: v3 only
/// when the v3 CRDs are installed without the v1 ones (libcalico-go's rule), for the store
/// and for `kube_api_group` alike.
#[test]
fn calico_api_group_discovered_when_unset() {
    for (uninstall, want) in [
        ("crd.projectcalico.org", ApiGroup::V3),
        ("projectcalico.org", ApiGroup::CrdV1),
    ] {
        let api = TestApiServer::start().unwrap();
        api.uninstall_group(uninstall);
        let conf = json!({"kubernetes": {"kubeconfig": api.kubeconfig_path()}});
        let s = DatastoreSettings::from_calico_config(&conf, env(&[])).unwrap();
        assert_eq!(s.kubernetes.api_group, None);
        let client = kubernetes::Client::connect(&datastore::kube_client_options(&s)).unwrap();
        assert_eq!(datastore::kube_api_group(&s, &client).unwrap(), want);
        write_config(&s);
        let v3 = api.get("/apis/projectcalico.org/v3/ipamconfigurations/default");
        assert_eq!(
            v3.is_some(),
            want == ApiGroup::V3,
            "{uninstall} not installed"
        );
        assert_eq!(take_v1_config(&api).is_some(), want == ApiGroup::CrdV1);
    }
    // An explicit group is used as given, without asking.
    let api = TestApiServer::start().unwrap();
    let conf = json!({"kubernetes": {"kubeconfig": api.kubeconfig_path()},
                      "calico_api_group": "crd.projectcalico.org/v1"});
    let s = DatastoreSettings::from_calico_config(&conf, env(&[])).unwrap();
    let client = kubernetes::Client::connect(&datastore::kube_client_options(&s)).unwrap();
    assert_eq!(
        datastore::kube_api_group(&s, &client).unwrap(),
        ApiGroup::CrdV1
    );
    write_config(&s);
    assert!(!api.requests().iter().any(|r| r == "GET /apis"));
}

#[test]
fn discovery_against_an_unreachable_api_server_is_transient() {
    let api = TestApiServer::start().unwrap();
    let conf = json!({"kubernetes": {"kubeconfig": api.kubeconfig_path()}});
    let s = DatastoreSettings::from_calico_config(&conf, env(&[])).unwrap();
    let client = kubernetes::Client::connect(&datastore::kube_client_options(&s)).unwrap();
    api.set_down(true);
    let e = datastore::kube_api_group(&s, &client).unwrap_err();
    assert!(e.is_transient(), "{e}");
}
