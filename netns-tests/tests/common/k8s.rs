//! The Kubernetes fixture of tests/kubernetes.rs and tests/kubernetes_ipam.rs: a private host
//! namespace with the test API server (crates/test-apiserver) listening inside it, so that
//! 127.0.0.1 in the kubeconfig is the plugins' loopback. Each test file adds its own seeding
//! (`Cluster::new`) and helpers in an `impl Cluster` block of its own.

use netns_tests::{Attachment, ChainError, Netns, TestEnv};
use serde_json::{json, Value};
use std::path::Path;
use test_apiserver::TestApiServer;

pub struct Cluster {
    /// `Some` until drop. The server's own wake-up connections (drop, set_down) go to
    /// 127.0.0.1, so they must be made from inside the host namespace: see [`Cluster::api_ctl`].
    api: Option<TestApiServer>,
    pub env: TestEnv,
    /// The node the plugins run on; pods are scheduled to it.
    node: &'static str,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let api = self.api.take();
        let _ = self.env.host.run(move || drop(api));
    }
}

impl Cluster {
    /// A calico node's host namespace with the API server listening in it and namespace
    /// `default`; pods
    /// created with [`Cluster::pod`] run on `node` (which the caller creates).
    pub fn start(name: &str, node: &'static str) -> Cluster {
        let env = TestEnv::calico_node(name).unwrap();
        // Started on a thread inside the host namespace, so 127.0.0.1 is the plugins' loopback.
        let api = env.host.run(TestApiServer::start).unwrap().unwrap();
        api.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}))
            .unwrap();
        Cluster {
            api: Some(api),
            env,
            node,
        }
    }

    pub fn api(&self) -> &TestApiServer {
        self.api.as_ref().expect("set until drop")
    }

    /// Runs a fault-injection call in the host namespace (where the server's loopback is).
    pub fn api_ctl(&self, f: impl FnOnce(&TestApiServer) + Send) {
        let api = self.api();
        self.env.host.run(|| f(api)).unwrap();
    }

    pub fn tmp(&self) -> &Path {
        self.env.tmp()
    }

    /// Creates (or replaces) pod `name` in `default` on the cluster's node.
    pub fn pod(&self, name: &str, annotations: Value) {
        self.api()
            .put(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default", "annotations": annotations},
                "spec": {"nodeName": self.node,
                    "containers": [{"name": "c", "image": "busybox"}]}}))
            .unwrap();
    }

    pub fn pod_annotations(&self, name: &str) -> Value {
        self.api()
            .get(&format!("/api/v1/namespaces/default/pods/{name}"))
            .unwrap_or_else(|| panic!("pod {name} missing"))["metadata"]["annotations"]
            .clone()
    }

    /// Calico's host-side veths in the host namespace.
    pub fn cali_links(&self) -> Vec<String> {
        self.env.host.link_names_with_prefix("cali").unwrap()
    }
}

/// The attachment the kubelet's runtime makes for `pod` in `default`.
pub fn pod_att(container_id: &str, ns: &Netns, pod: &str) -> Attachment {
    Attachment::new(container_id, ns)
        .arg("IgnoreUnknown", "1")
        .arg("K8S_POD_NAMESPACE", "default")
        .arg("K8S_POD_NAME", pod)
        .arg("K8S_POD_INFRA_CONTAINER_ID", container_id)
}

pub fn expect_err(r: Result<Value, ChainError>) -> ChainError {
    match r {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e,
    }
}
