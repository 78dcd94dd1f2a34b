//! kube-rs (the client the suite uses) against the double: kubeconfig loading, typed core
//! objects, dynamic CRD objects, 409 conflicts, patches, delete preconditions, 401, API down.

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, Preconditions,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;
use test_apiserver::TestApiServer;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn client(path: &std::path::Path) -> Client {
    let kc = Kubeconfig::read_from(path).unwrap();
    let mut cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    cfg.connect_timeout = Some(std::time::Duration::from_secs(2));
    cfg.read_timeout = Some(std::time::Duration::from_secs(2));
    Client::try_from(cfg).unwrap()
}

fn code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn blocks(c: Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("crd.projectcalico.org", "v1", "IPAMBlock");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "ipamblocks");
    Api::all_with(c, &ar)
}

#[test]
fn crd_optimistic_concurrency() {
    let api = TestApiServer::start().unwrap();
    block_on(async {
        let b = blocks(client(&api.kubeconfig_path()).await);
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMBlock",
            "metadata": {"name": "10-244-1-0-26"}, "spec": {"cidr": "10.244.1.0/26"}}))
        .unwrap();
        let created = b.create(&PostParams::default(), &obj).await.unwrap();
        assert_eq!(
            code(b.create(&PostParams::default(), &obj).await.unwrap_err()),
            409
        );
        let mut a = b.get("10-244-1-0-26").await.unwrap();
        let mut stale = a.clone();
        a.data["spec"]["sequenceNumber"] = json!(1);
        let a2 = b
            .replace("10-244-1-0-26", &PostParams::default(), &a)
            .await
            .unwrap();
        assert_ne!(
            a2.metadata.resource_version,
            created.metadata.resource_version
        );
        stale.data["spec"]["sequenceNumber"] = json!(2);
        assert_eq!(
            code(
                b.replace("10-244-1-0-26", &PostParams::default(), &stale)
                    .await
                    .unwrap_err()
            ),
            409
        );
        let list = b.list(&ListParams::default()).await.unwrap();
        assert_eq!(list.items.len(), 1);
        assert_eq!(list.items[0].data["spec"]["sequenceNumber"], 1);
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: created.metadata.resource_version.clone(),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        assert_eq!(code(b.delete("10-244-1-0-26", &dp).await.unwrap_err()), 409);
        b.delete("10-244-1-0-26", &DeleteParams::default())
            .await
            .unwrap();
        assert_eq!(code(b.get("10-244-1-0-26").await.unwrap_err()), 404);
    });
}

#[test]
fn typed_pods_and_patches() {
    let api = TestApiServer::start().unwrap();
    block_on(async {
        let c = client(&api.kubeconfig_path()).await;
        let ns: Api<Namespace> = Api::all(c.clone());
        ns.create(
            &PostParams::default(),
            &serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}))
            .unwrap(),
        )
        .await
        .unwrap();
        api.put(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": "n1"}}))
            .unwrap();
        let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
        let p = pods.get("p").await.unwrap();
        assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("n1"));
        let patch =
            json!({"metadata": {"annotations": {"cni.projectcalico.org/podIP": "10.0.0.1/32"}}});
        pods.patch_status("p", &PatchParams::default(), &Patch::Strategic(&patch))
            .await
            .unwrap();
        let p = pods.get("p").await.unwrap();
        assert_eq!(
            p.metadata.annotations.unwrap()["cni.projectcalico.org/podIP"],
            "10.0.0.1/32"
        );
        let all: Api<Pod> = Api::all(c);
        assert_eq!(
            all.list(&ListParams::default().fields("spec.nodeName=n1"))
                .await
                .unwrap()
                .items
                .len(),
            1
        );
        assert_eq!(
            all.list(&ListParams::default().fields("spec.nodeName=n2"))
                .await
                .unwrap()
                .items
                .len(),
            0
        );
    });
}

#[test]
fn wrong_token_and_api_down() {
    let api = TestApiServer::start().unwrap();
    let bad = api.kubeconfig_path().with_file_name("bad-kubeconfig");
    api.write_kubeconfig(&bad, "not-the-token").unwrap();
    block_on(async {
        let b = blocks(client(&bad).await);
        assert_eq!(code(b.list(&ListParams::default()).await.unwrap_err()), 401);
        let good = blocks(client(&api.kubeconfig_path()).await);
        good.list(&ListParams::default()).await.unwrap();
        api.set_down(true);
        let e = good.list(&ListParams::default()).await.unwrap_err();
        assert!(
            !matches!(e, kube::Error::Api(_)),
            "expected a transport error, got {e:?}"
        );
        api.set_down(false);
        good.list(&ListParams::default()).await.unwrap();
        api.set_stall(true);
        let t0 = std::time::Instant::now();
        let e = good.list(&ListParams::default()).await.unwrap_err();
        assert!(
            !matches!(e, kube::Error::Api(_)),
            "expected a timeout, got {e:?}"
        );
        assert!(t0.elapsed() < std::time::Duration::from_secs(10));
        api.set_stall(false);
    });
}
