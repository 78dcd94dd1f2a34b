//! The wire protocol seen by a plain HTTPS client (curl): auth, routing, verbs, Status errors.

use serde_json::{json, Value};
use std::process::Command;
use test_apiserver::TestApiServer;

struct Resp {
    code: u16,
    body: Value,
}

/// One curl request; `token` None sends no Authorization header.
fn curl(
    api: &TestApiServer,
    method: &str,
    path: &str,
    ctype: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Resp {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "10", "--cacert"])
        .arg(api.ca_path())
        .args(["-X", method, "-w", "\n%{http_code}"]);
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        c.args(["-H", &format!("Content-Type: {ctype}"), "--data-binary", b]);
    }
    c.arg(format!("{}{path}", api.url()));
    let out = c.output().expect("curl must be installed (apt: curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    Resp {
        code: code.trim().parse().unwrap_or_else(|_| {
            panic!(
                "curl failed: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        }),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

const BLOCKS: &str = "/apis/crd.projectcalico.org/v1/ipamblocks";

fn block(name: &str) -> String {
    json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMBlock",
           "metadata": {"name": name}, "spec": {"cidr": "10.0.0.0/26"}})
    .to_string()
}

#[test]
fn auth_is_required() {
    let api = TestApiServer::start().unwrap();
    let none = curl(&api, "GET", BLOCKS, "", None, None);
    assert_eq!(none.code, 401);
    assert_eq!(none.body["kind"], "Status");
    assert_eq!(none.body["reason"], "Unauthorized");
    assert_eq!(curl(&api, "GET", BLOCKS, "", None, Some("wrong")).code, 401);
    let ok = curl(&api, "GET", BLOCKS, "", None, Some(api.token()));
    assert_eq!(ok.code, 200);
    assert_eq!(ok.body["kind"], "IPAMBlockList");
    // Client-certificate auth works too.
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(api.ca_path())
        .arg("--cert")
        .arg(api.client_cert_path())
        .arg("--key")
        .arg(api.client_key_path())
        .arg(format!("{}{BLOCKS}", api.url()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
}

#[test]
fn crud_versions_and_conflicts() {
    let api = TestApiServer::start().unwrap();
    let t = Some(api.token());
    let j = "application/json";
    let created = curl(&api, "POST", BLOCKS, j, Some(&block("10-0-0-0-26")), t);
    assert_eq!(created.code, 201, "{}", created.body);
    let rv1 = created.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(created.body["metadata"]["uid"].as_str().unwrap().len() == 36);
    assert!(created.body["metadata"]["creationTimestamp"].is_string());

    let dup = curl(&api, "POST", BLOCKS, j, Some(&block("10-0-0-0-26")), t);
    assert_eq!(
        (dup.code, dup.body["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );
    assert_eq!(
        dup.body["message"],
        "ipamblocks.crd.projectcalico.org \"10-0-0-0-26\" already exists"
    );

    let path = format!("{BLOCKS}/10-0-0-0-26");
    let mut obj = curl(&api, "GET", &path, "", None, t).body;
    obj["spec"]["deleted"] = json!(false);
    let put = curl(&api, "PUT", &path, j, Some(&obj.to_string()), t);
    assert_eq!(put.code, 200, "{}", put.body);
    let rv2 = put.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(rv1, rv2);
    assert_eq!(put.body["metadata"]["uid"], created.body["metadata"]["uid"]);

    // Stale resourceVersion → 409 Conflict, object unchanged.
    obj["spec"]["deleted"] = json!(true);
    let stale = curl(&api, "PUT", &path, j, Some(&obj.to_string()), t);
    assert_eq!(
        (stale.code, stale.body["reason"].as_str()),
        (409, Some("Conflict"))
    );
    assert_eq!(api.get(&path).unwrap()["spec"]["deleted"], false);

    // Custom resources refuse unconditional updates.
    obj["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    assert_eq!(
        curl(&api, "PUT", &path, j, Some(&obj.to_string()), t).code,
        422
    );

    // Merge patch with a stale resourceVersion is a precondition failure.
    let p = json!({"metadata": {"resourceVersion": rv1}, "spec": {"deleted": true}}).to_string();
    assert_eq!(
        curl(
            &api,
            "PATCH",
            &path,
            "application/merge-patch+json",
            Some(&p),
            t
        )
        .code,
        409
    );
    let p = json!({"metadata": {"resourceVersion": rv2}, "spec": {"deleted": true}}).to_string();
    let patched = curl(
        &api,
        "PATCH",
        &path,
        "application/merge-patch+json",
        Some(&p),
        t,
    );
    assert_eq!(patched.code, 200, "{}", patched.body);
    assert_eq!(patched.body["spec"]["deleted"], true);
    let rv3 = patched.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    // CRDs have no strategic merge schema.
    assert_eq!(
        curl(
            &api,
            "PATCH",
            &path,
            "application/strategic-merge-patch+json",
            Some("{}"),
            t
        )
        .code,
        415
    );

    // Delete with preconditions.
    let pre = |rv: &str| json!({"preconditions": {"resourceVersion": rv}}).to_string();
    let d = curl(&api, "DELETE", &path, j, Some(&pre(&rv2)), t);
    assert_eq!((d.code, d.body["reason"].as_str()), (409, Some("Conflict")));
    assert_eq!(
        curl(&api, "DELETE", &path, j, Some(&pre(&rv3)), t).code,
        200
    );
    let gone = curl(&api, "GET", &path, "", None, t);
    assert_eq!(
        (gone.code, gone.body["reason"].as_str()),
        (404, Some("NotFound"))
    );
    assert_eq!(
        curl(&api, "PUT", &path, j, Some(&block("10-0-0-0-26")), t).code,
        404
    );
    assert_eq!(curl(&api, "DELETE", &path, "", None, t).code, 404);
    assert_eq!(api.count_responses(201), 1);
    assert!(api.count_responses(409) >= 4);
    assert_eq!(api.response_codes().len() as u64, api.request_count());
}

#[test]
fn rejects_what_a_real_server_rejects() {
    let api = TestApiServer::start().unwrap();
    let t = Some(api.token());
    let j = "application/json";
    // Unknown resource / version / group.
    for p in [
        "/apis/crd.projectcalico.org/v1/ipamblockz",
        "/apis/crd.projectcalico.org/v2/ipamblocks",
        "/api/v1/namespaces/default/nodes",
        "/nope",
    ] {
        assert_eq!(curl(&api, "GET", p, "", None, t).code, 404, "{p}");
    }
    assert_eq!(
        curl(&api, "POST", BLOCKS, j, Some("{not json"), t).code,
        400
    );
    let wrong_kind = json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMHandle",
                            "metadata": {"name": "x"}, "spec": {}});
    assert_eq!(
        curl(&api, "POST", BLOCKS, j, Some(&wrong_kind.to_string()), t).code,
        400
    );
    let wrong_group = json!({"apiVersion": "projectcalico.org/v3", "kind": "IPAMBlock",
                             "metadata": {"name": "x"}, "spec": {}});
    assert_eq!(
        curl(&api, "POST", BLOCKS, j, Some(&wrong_group.to_string()), t).code,
        400
    );
    // Upper case names are invalid (handles must be lower-cased by the client).
    let bad_name = curl(&api, "POST", BLOCKS, j, Some(&block("Bad_Name")), t);
    assert_eq!(
        (bad_name.code, bad_name.body["reason"].as_str()),
        (422, Some("Invalid"))
    );
    // Invalid label values are refused.
    let bad_label = json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMBlock",
        "metadata": {"name": "l", "labels": {"a": "x/y"}}, "spec": {}});
    assert_eq!(
        curl(&api, "POST", BLOCKS, j, Some(&bad_label.to_string()), t).code,
        422
    );
    let long_label = json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMBlock",
        "metadata": {"name": "l", "labels": {"projectcalico.org/hostname-hash": "A".repeat(64)}}, "spec": {}});
    assert_eq!(
        curl(&api, "POST", BLOCKS, j, Some(&long_label.to_string()), t).code,
        422
    );
    // Name in body must match the URL on PUT.
    curl(&api, "POST", BLOCKS, j, Some(&block("a")), t);
    let mut other = api.get(&format!("{BLOCKS}/a")).unwrap();
    other["metadata"]["name"] = json!("b");
    assert_eq!(
        curl(
            &api,
            "PUT",
            &format!("{BLOCKS}/a"),
            j,
            Some(&other.to_string()),
            t
        )
        .code,
        400
    );
    // Pods need an existing namespace.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}});
    let r = curl(
        &api,
        "POST",
        "/api/v1/namespaces/ghost/pods",
        j,
        Some(&pod.to_string()),
        t,
    );
    assert_eq!(r.code, 404);
    assert_eq!(r.body["message"], "namespaces \"ghost\" not found");
}

#[test]
fn list_selectors_and_pod_status_patch() {
    let api = TestApiServer::start().unwrap();
    let t = Some(api.token());
    for (n, host) in [("n1-a", "n1"), ("n2-a", "n2"), ("n1-b", "n1")] {
        api.put(
            json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "BlockAffinity",
            "metadata": {"name": n, "labels": {"host": host}}, "spec": {"node": host}}),
        )
        .unwrap();
    }
    let l = curl(
        &api,
        "GET",
        "/apis/crd.projectcalico.org/v1/blockaffinities?labelSelector=host%3Dn1",
        "",
        None,
        t,
    );
    let names: Vec<&str> = l.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["n1-a", "n1-b"]);
    assert!(
        l.body["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 3
    );

    api.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}))
        .unwrap();
    api.put(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "annotations": {"keep": "1"}},
        "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}))
        .unwrap();
    let path = "/api/v1/namespaces/default/pods/p/status";
    let uid = api.get("/api/v1/namespaces/default/pods/p").unwrap()["metadata"]["uid"].clone();
    let smp = json!({"metadata": {"annotations": {"cni.projectcalico.org/podIP": "10.0.0.5/32"}},
                     "spec": {"nodeName": "evil"}});
    let r = curl(
        &api,
        "PATCH",
        path,
        "application/strategic-merge-patch+json",
        Some(&smp.to_string()),
        t,
    );
    assert_eq!(r.code, 200, "{}", r.body);
    let pod = api.get("/api/v1/namespaces/default/pods/p").unwrap();
    assert_eq!(
        pod["metadata"]["annotations"]["cni.projectcalico.org/podIP"],
        "10.0.0.5/32"
    );
    assert_eq!(pod["metadata"]["annotations"]["keep"], "1");
    assert_eq!(
        pod["spec"]["nodeName"], "n1",
        "status subresource must not change spec"
    );
    // uid precondition in a patch: a stale uid is a conflict, the current one applies.
    for (uid, want) in [
        (json!("00000000-0000-0000-0000-000000000000"), 409),
        (uid, 200),
    ] {
        let patch =
            json!({"metadata": {"uid": uid, "annotations": {"cni.projectcalico.org/podIP": ""}}});
        let r = curl(
            &api,
            "PATCH",
            path,
            "application/merge-patch+json",
            Some(&patch.to_string()),
            t,
        );
        assert_eq!(r.code, want, "uid {uid}: {:?}", r.body);
    }
    // JSON patch on the main resource.
    let jp = json!([{"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}]);
    let r = curl(
        &api,
        "PATCH",
        "/api/v1/namespaces/default/pods/p",
        "application/json-patch+json",
        Some(&jp.to_string()),
        t,
    );
    assert_eq!(r.code, 200, "{}", r.body);
    // Core list items carry no kind.
    let l = curl(
        &api,
        "GET",
        "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1",
        "",
        None,
        t,
    );
    assert_eq!(l.body["kind"], "PodList");
    assert_eq!(l.body["items"].as_array().unwrap().len(), 1);
    assert!(l.body["items"][0].get("kind").is_none());
    assert_eq!(
        api.requests().last().unwrap(),
        "GET /api/v1/pods?fieldSelector=spec.nodeName%3Dn1"
    );
}

#[test]
fn down_refuses_and_recovers() {
    let api = TestApiServer::start().unwrap();
    let t = Some(api.token());
    assert_eq!(curl(&api, "GET", BLOCKS, "", None, t).code, 200);
    api.set_down(true);
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(api.ca_path())
        .arg(format!("{}{BLOCKS}", api.url()))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "curl exit 7 = connection refused"
    );
    api.set_down(false);
    assert_eq!(curl(&api, "GET", BLOCKS, "", None, t).code, 200);
    let before = api.request_count();
    api.set_stall(true);
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "1", "--cacert"])
        .arg(api.ca_path())
        .args(["-H", &format!("Authorization: Bearer {}", api.token())])
        .arg(format!("{}{BLOCKS}", api.url()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(28), "curl exit 28 = timeout");
    api.set_stall(false);
    assert_eq!(api.request_count(), before + 1);
}
