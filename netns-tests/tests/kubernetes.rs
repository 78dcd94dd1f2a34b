//! The `calico` plugin in Kubernetes mode against the test API server (crates/test-apiserver):
//! the seed conflist (`datastore_type: kubernetes`, host-local `usePodCidr`), pod annotations,
//! the podIP annotations and their containerID guard, and API-down behaviour. The API server
//! listens inside each test's host namespace, where the plugins run.
//!
//! Needs the built binaries: `cargo build --bins` first (calico, host-local, portmap,
//! bandwidth).

mod common;

use common::k8s::{expect_err, pod_att, Cluster};
use netns_tests::{ipam_state, traffic, Netns};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::Path;

const NODE: &str = "master01";
const NODE_V4: &str = "10.244.7.0/24";
const NODE_V6: &str = "fd00:10:244:7::/64";
const POD_IP: &str = "cni.projectcalico.org/podIP";
const POD_IPS: &str = "cni.projectcalico.org/podIPs";
const CONTAINER_ID: &str = "cni.projectcalico.org/containerID";

impl Cluster {
    /// A host namespace with the API server listening in it, namespace `default` and the node.
    fn new(name: &str) -> Cluster {
        let c = Cluster::start(name, NODE);
        // What calico-node writes once the datastore is initialised; ADD refuses pods without it.
        c.api()
            .put(
                json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "ClusterInformation",
                "metadata": {"name": "default"}, "spec": {"datastoreReady": true}}),
            )
            .unwrap();
        c.node(json!({"podCIDR": NODE_V4, "podCIDRs": [NODE_V4, NODE_V6]}));
        c
    }

    fn node(&self, spec: Value) {
        self.api()
            .put(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}, "spec": spec}))
            .unwrap();
    }

    /// testdata/10-calico-kdd-hostlocal.conflist verbatim, except for the paths install-cni and
    /// calico-node would provide on a node: the kubeconfig install-cni writes, the nodename file
    /// calico-node writes, and (so tests don't share machine-wide state) the log file and
    /// host-local's data dir.
    fn seed_conflist(&self) -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/10-calico-kdd-hostlocal.conflist");
        let mut conf: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let nodename = self.tmp().join("nodename");
        std::fs::write(&nodename, NODE).unwrap();
        let calico = &mut conf["plugins"][0];
        assert_eq!(calico["datastore_type"], "kubernetes");
        assert_eq!(calico["ipam"]["subnet"], "usePodCidr");
        calico["kubernetes"]["kubeconfig"] = json!(self.api().kubeconfig_path());
        calico["nodename_file"] = json!(nodename);
        calico["log_file_path"] = json!(self.tmp().join("cni.log"));
        calico["ipam"]["dataDir"] = json!(self.tmp().join("ipam"));
        conf
    }

    /// Addresses host-local holds (its on-disk reservations).
    fn reserved(&self) -> Vec<String> {
        ipam_state::host_local_reservations(&self.tmp().join("ipam"), "k8s-pod-network")
    }

    /// Asserts the failed ADD left nothing behind: no veth, no reservation, no pod interface.
    fn assert_nothing_left(&self, ctr: &Netns) {
        assert!(self.cali_links().is_empty(), "{:?}", self.cali_links());
        assert!(self.reserved().is_empty(), "{:?}", self.reserved());
        assert!(
            ctr.link("eth0").unwrap().is_none(),
            "pod interface left behind"
        );
    }
}

fn ips(result: &Value) -> Vec<ipnetwork::IpNetwork> {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap().parse().unwrap())
        .collect()
}

fn first_ip(result: &Value) -> IpAddr {
    ips(result)[0].ip()
}

fn in_net(ip: IpAddr, net: &str) -> bool {
    net.parse::<ipnetwork::IpNetwork>().unwrap().contains(ip)
}

fn host_veth(pod: &str) -> String {
    // Calico's rule, computed here independently: cali + sha1("<ns>.<pod>")[..11].
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf default.{pod} | sha1sum"))
        .output()
        .unwrap();
    format!("cali{}", &String::from_utf8_lossy(&out.stdout)[..11])
}

#[test]
fn seed_conflist_runs_add_check_del_against_the_api_server() {
    let k = Cluster::new("k8s-seed");
    k.env.host.add_addr("lo", "192.0.2.1/32").unwrap();
    for (round, version) in ["0.3.1", "1.0.0"].iter().enumerate() {
        let mut conf = k.seed_conflist();
        // Round 0 is the file as shipped (0.3.1); round 1 as newer installers write it, so the
        // runtime sends CHECK.
        conf["cniVersion"] = json!(version);
        let chain = k.env.chain(&conf).unwrap();
        let (pa, pb) = (format!("pod-a{round}"), format!("pod-b{round}"));
        k.pod(&pa, json!({}));
        k.pod(&pb, json!({}));
        let ca = k.env.container(&format!("a{round}")).unwrap();
        let cb = k.env.container(&format!("b{round}")).unwrap();
        let (aa, ab) = (
            pod_att(&format!("sb-a{round}"), &ca, &pa),
            pod_att(&format!("sb-b{round}"), &cb, &pb),
        );
        let ra = chain.add(&aa).unwrap();
        let rb = chain.add(&ab).unwrap();

        // Addresses come from the Node's spec.podCIDR (host-local got the concrete range).
        let (ipa, ipb) = (first_ip(&ra), first_ip(&rb));
        assert!(in_net(ipa, NODE_V4) && in_net(ipb, NODE_V4), "{ra} {rb}");
        assert_eq!(ips(&ra)[0].prefix(), 32);
        assert_eq!(ra["interfaces"][0]["name"], host_veth(&pa));
        assert!(k.env.host.link(&host_veth(&pa)).unwrap().is_some());
        assert_eq!(k.reserved().len(), 2);

        // The pod carries its IP for everyone watching the API (Calico's KDD WorkloadEndpoint).
        let ann = k.pod_annotations(&pa);
        assert_eq!(ann[POD_IP], format!("{ipa}/32"));
        assert_eq!(ann[POD_IPS], format!("{ipa}/32"));
        assert_eq!(ann[CONTAINER_ID], format!("sb-a{round}"));

        assert!(traffic::ping_eventually(&ca, ipb, 3).unwrap(), "a -> b");
        assert!(traffic::ping_eventually(&cb, ipa, 3).unwrap(), "b -> a");
        assert!(
            traffic::ping_eventually(&ca, "192.0.2.1".parse().unwrap(), 3).unwrap(),
            "a -> host"
        );

        if *version == "1.0.0" {
            chain.check(&aa).unwrap();
            chain.check(&ab).unwrap();
        } else {
            assert!(
                chain.check(&aa).is_err(),
                "libcni does not CHECK 0.3.1 lists"
            );
        }

        chain.del(&aa).unwrap();
        chain.del(&ab).unwrap();
        let ann = k.pod_annotations(&pa);
        assert_eq!(ann[POD_IP], "", "DEL clears the pod IP");
        assert_eq!(ann[POD_IPS], "");
        assert_eq!(
            ann[CONTAINER_ID],
            format!("sb-a{round}"),
            "containerID is kept"
        );
        assert!(k.cali_links().is_empty(), "{:?}", k.cali_links());
        assert!(k.reserved().is_empty(), "{:?}", k.reserved());
        // A repeated DEL (pod already cleared, interfaces gone) still succeeds.
        chain.del(&aa).unwrap();
    }
    let reqs = k.api().requests();
    assert!(
        reqs.iter()
            .any(|r| r.starts_with(&format!("GET /api/v1/nodes/{NODE}"))),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("PATCH /api/v1/namespaces/default/pods/pod-a0/status")),
        "{reqs:?}"
    );
}

#[test]
fn use_pod_cidr_follows_the_node_spec() {
    let k = Cluster::new("k8s-podcidr");
    let mut conf = k.seed_conflist();
    conf["cniVersion"] = json!("1.0.0");
    conf["plugins"][0]["ipam"] = json!({"type": "host-local", "dataDir": k.tmp().join("ipam"),
        "ranges": [[{"subnet": "usePodCidr"}], [{"subnet": "usePodCidrIPv6"}]]});
    let chain = k.env.chain(&conf).unwrap();
    k.pod("dual", json!({}));
    let ctr = k.env.container("dual").unwrap();
    let att = pod_att("sb-dual", &ctr, "dual");
    let r = chain.add(&att).unwrap();
    let got = ips(&r);
    assert_eq!(got.len(), 2, "{r}");
    assert!(
        in_net(got[0].ip(), NODE_V4) && in_net(got[1].ip(), NODE_V6),
        "{r}"
    );
    assert_eq!(
        k.pod_annotations("dual")[POD_IPS],
        format!("{}/32,{}/128", got[0].ip(), got[1].ip())
    );
    chain.check(&att).unwrap();
    chain.del(&att).unwrap();

    // The node moves to another range: the next pod follows it.
    k.node(json!({"podCIDRs": ["10.244.9.0/24", "fd00:10:244:9::/64"]}));
    let ctr2 = k.env.container("moved").unwrap();
    let r = chain.add(&pod_att("sb-moved", &ctr2, "dual")).unwrap();
    assert!(in_net(first_ip(&r), "10.244.9.0/24"), "{r}");
    chain.del(&pod_att("sb-moved", &ctr2, "dual")).unwrap();

    // No IPv6 range on the node but usePodCidrIPv6 configured; then no podCIDR at all.
    let ctr3 = k.env.container("bad").unwrap();
    k.node(json!({"podCIDR": NODE_V4}));
    let e = expect_err(chain.add(&pod_att("sb-bad", &ctr3, "dual")));
    assert!(
        e.msg()
            .contains("usePodCidr found but there is no IPv6 CIDR configured"),
        "{}",
        e.msg()
    );
    k.assert_nothing_left(&ctr3);
    k.node(json!({}));
    let e = expect_err(chain.add(&pod_att("sb-bad", &ctr3, "dual")));
    assert!(
        e.msg().contains(&format!("no podCidr for node {NODE}")),
        "{}",
        e.msg()
    );
    k.assert_nothing_left(&ctr3);
}

#[test]
fn hw_addr_annotation_sets_the_pod_mac() {
    let k = Cluster::new("k8s-hwaddr");
    let chain = k.env.chain(&k.seed_conflist()).unwrap();
    k.pod(
        "mac",
        json!({"cni.projectcalico.org/hwAddr": "0a:58:0a:f4:07:63"}),
    );
    let ctr = k.env.container("mac").unwrap();
    let att = pod_att("sb-mac", &ctr, "mac");
    let r = chain.add(&att).unwrap();
    assert_eq!(
        ctr.link("eth0").unwrap().unwrap()["address"],
        "0a:58:0a:f4:07:63"
    );
    assert_eq!(r["interfaces"][1]["mac"], "0a:58:0a:f4:07:63", "{r}");
    chain.del(&att).unwrap();
}

#[test]
fn invalid_annotations_are_named_and_leave_nothing() {
    let k = Cluster::new("k8s-badann");
    let chain = k.env.chain(&k.seed_conflist()).unwrap();
    let ctr = k.env.container("bad").unwrap();
    let cases = [
        (
            json!({"cni.projectcalico.org/hwAddr": "not-a-mac"}),
            "cni.projectcalico.org/hwAddr",
        ),
        (
            json!({"cni.projectcalico.org/ipAddrs": "10.244.7.9"}),
            "cni.projectcalico.org/ipAddrs",
        ),
        (
            json!({"cni.projectcalico.org/ipAddrs": "[\"10.244.7.9\",\"10.244.7.10\"]"}),
            "more than one IPv4",
        ),
        (
            json!({"cni.projectcalico.org/ipAddrs": "[\"10.244.7.300\"]"}),
            "invalid IP format: 10.244.7.300",
        ),
        // Calico honours ipAddrs only with calico-ipam.
        (
            json!({"cni.projectcalico.org/ipAddrs": "[\"10.244.7.9\"]"}),
            "ipAddrs is not compatible with configured IPAM: host-local",
        ),
        // Feature gates off in the seed config.
        (
            json!({"cni.projectcalico.org/ipAddrsNoIpam": "[\"10.244.7.9\"]"}),
            "requested feature is not enabled: ip_addrs_no_ipam",
        ),
        (
            json!({"cni.projectcalico.org/floatingIPs": "[\"198.51.100.7\"]"}),
            "requested feature is not enabled: floating_ips",
        ),
        (
            json!({"cni.projectcalico.org/ipAddrs": "[\"10.244.7.9\"]",
                "cni.projectcalico.org/ipAddrsNoIpam": "[\"10.244.7.9\"]"}),
            "can't have both annotations",
        ),
    ];
    for (i, (annotations, want)) in cases.iter().enumerate() {
        let pod = format!("bad{i}");
        k.pod(&pod, annotations.clone());
        let e = expect_err(chain.add(&pod_att(&format!("sb-bad{i}"), &ctr, &pod)));
        assert!(e.msg().contains(want), "case {i}: {}", e.msg());
        k.assert_nothing_left(&ctr);
        assert!(
            k.pod_annotations(&pod).get(POD_IP).is_none(),
            "no podIP for a failed ADD"
        );
    }
    // Pool annotations only matter to calico-ipam: with host-local even a broken one is ignored.
    k.pod(
        "pools",
        json!({"cni.projectcalico.org/ipv4pools": "not json"}),
    );
    let att = pod_att("sb-pools", &ctr, "pools");
    chain.add(&att).unwrap();
    chain.del(&att).unwrap();
}

#[test]
fn ip_addrs_no_ipam_uses_the_annotated_address() {
    let k = Cluster::new("k8s-noipam");
    let mut conf = k.seed_conflist();
    conf["plugins"][0]["feature_control"] = json!({"ip_addrs_no_ipam": true, "floating_ips": true});
    conf["cniVersion"] = json!("1.0.0"); // for CHECK
    let chain = k.env.chain(&conf).unwrap();
    k.pod(
        "fixed",
        json!({"cni.projectcalico.org/ipAddrsNoIpam": "[\"10.244.7.200\"]",
                          "cni.projectcalico.org/floatingIPs": "[\"198.51.100.7\"]"}),
    );
    k.pod("peer", json!({}));
    let (cf, cp) = (
        k.env.container("fixed").unwrap(),
        k.env.container("peer").unwrap(),
    );
    let af = pod_att("sb-fixed", &cf, "fixed");
    let ap = pod_att("sb-peer", &cp, "peer");
    let rf = chain.add(&af).unwrap();
    let rp = chain.add(&ap).unwrap();
    assert_eq!(ips(&rf), vec!["10.244.7.200/32".parse().unwrap()], "{rf}");
    assert!(cf
        .addrs("eth0")
        .unwrap()
        .contains(&"10.244.7.200/32".parse().unwrap()));
    assert_eq!(
        k.reserved().len(),
        1,
        "only the peer went through IPAM: {:?}",
        k.reserved()
    );
    assert_eq!(k.pod_annotations("fixed")[POD_IP], "10.244.7.200/32");
    assert!(traffic::ping_eventually(&cp, "10.244.7.200".parse().unwrap(), 3).unwrap());
    assert!(traffic::ping_eventually(&cf, first_ip(&rp), 3).unwrap());
    // CHECK passes for the pod IPAM knows nothing about (and still checks the other).
    chain.check(&af).unwrap();
    chain.check(&ap).unwrap();
    chain.del(&af).unwrap();
    chain.del(&ap).unwrap();
    assert!(k.reserved().is_empty());
    assert!(k.cali_links().is_empty());
}

#[test]
fn late_del_of_an_old_sandbox_keeps_the_new_sandboxs_ip() {
    let k = Cluster::new("k8s-guard");
    let chain = k.env.chain(&k.seed_conflist()).unwrap();
    k.pod("web", json!({}));
    k.pod("client", json!({}));
    let (old_ns, new_ns, cli) = (
        k.env.container("old").unwrap(),
        k.env.container("new").unwrap(),
        k.env.container("cli").unwrap(),
    );
    let old = pod_att("sandbox-old", &old_ns, "web");
    let new = pod_att("sandbox-new", &new_ns, "web");
    let r_old = chain.add(&old).unwrap();
    // The runtime replaces the sandbox before the old one's DEL arrives.
    let r_new = chain.add(&new).unwrap();
    let rc = chain.add(&pod_att("sb-cli", &cli, "client")).unwrap();
    let new_ip = first_ip(&r_new);
    assert_ne!(first_ip(&r_old), new_ip);
    assert_eq!(k.pod_annotations("web")[CONTAINER_ID], "sandbox-new");

    chain.del(&old).unwrap();
    let ann = k.pod_annotations("web");
    assert_eq!(
        ann[POD_IP],
        format!("{new_ip}/32"),
        "old sandbox's DEL must not clear the new IP"
    );
    assert_eq!(ann[CONTAINER_ID], "sandbox-new");
    assert!(
        !k.reserved().contains(&first_ip(&r_old).to_string()),
        "old sandbox's IP released"
    );
    assert!(k.reserved().contains(&new_ip.to_string()));
    assert!(
        traffic::ping_eventually(&cli, new_ip, 3).unwrap(),
        "new sandbox still reachable"
    );
    let _ = rc;

    chain.del(&new).unwrap();
    assert_eq!(k.pod_annotations("web")[POD_IP], "");
}

#[test]
fn api_down_is_code_11_and_leaves_nothing_half_done() {
    let k = Cluster::new("k8s-down");
    let chain = k.env.chain(&k.seed_conflist()).unwrap();
    k.pod("p", json!({}));
    let ctr = k.env.container("p").unwrap();
    let att = pod_att("sb-p", &ctr, "p");

    // Refused connections: ADD fails before IPAM or the dataplane.
    k.api_ctl(|a| a.set_down(true));
    let e = expect_err(chain.add(&att));
    assert_eq!(e.code(), Some(11), "{}", e.msg());
    k.assert_nothing_left(&ctr);

    // DEL of a live pod while the API is down: refused, and the pod keeps working.
    k.api_ctl(|a| a.set_down(false));
    let r = chain.add(&att).unwrap();
    k.api_ctl(|a| a.set_down(true));
    let e = chain.del(&att).unwrap_err();
    assert_eq!(e.code(), Some(11), "{}", e.msg());
    assert!(
        ctr.addrs("eth0")
            .unwrap()
            .iter()
            .any(|a| a.ip() == first_ip(&r)),
        "pod still wired"
    );
    assert_eq!(k.reserved(), vec![first_ip(&r).to_string()]);
    k.api_ctl(|a| a.set_down(false));
    chain.del(&att).unwrap();
    k.assert_nothing_left(&ctr);

    // A server that accepts but never answers hits the request deadline: also code 11.
    k.api_ctl(|a| a.set_stall(true));
    let started = std::time::Instant::now();
    let e = expect_err(chain.add(&att));
    k.api_ctl(|a| a.set_stall(false));
    assert_eq!(e.code(), Some(11), "{}", e.msg());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    k.assert_nothing_left(&ctr);
}

#[test]
fn add_waits_for_calico_node_to_mark_the_datastore_ready() {
    let k = Cluster::new("k8s-notready");
    let chain = k.env.chain(&k.seed_conflist()).unwrap();
    k.pod("p", json!({}));
    let ctr = k.env.container("p").unwrap();
    let att = pod_att("sb-p", &ctr, "p");

    // An operator (or an upgrade) paused Calico: retryable error, nothing wired or reserved.
    k.api()
        .put(
            json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "ClusterInformation",
            "metadata": {"name": "default"}, "spec": {"datastoreReady": false}}),
        )
        .unwrap();
    let e = expect_err(chain.add(&att));
    assert_eq!(e.code(), Some(11), "{}", e.msg());
    assert!(e.msg().contains("not ready"), "{}", e.msg());
    k.assert_nothing_left(&ctr);

    // calico-node never initialised the datastore: the missing object is named.
    k.api()
        .remove("/apis/crd.projectcalico.org/v1/clusterinformations/default")
        .unwrap();
    let e = expect_err(chain.add(&att));
    assert!(e.msg().contains("ClusterInformation"), "{}", e.msg());
    k.assert_nothing_left(&ctr);

    // Ready again: the same ADD goes through.
    k.api()
        .put(
            json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "ClusterInformation",
            "metadata": {"name": "default"}, "spec": {"datastoreReady": true}}),
        )
        .unwrap();
    chain.add(&att).unwrap();
    chain.del(&att).unwrap();
    k.assert_nothing_left(&ctr);
}

#[test]
fn failed_pod_ip_update_rolls_back_the_add() {
    let k = Cluster::new("k8s-rollback");
    let mut conf = k.seed_conflist();
    // Without policy k8s the plugin does not read the pod first; the PATCH after the dataplane
    // is the first request to find it missing.
    conf["plugins"][0]["policy"] = json!({});
    let chain = k.env.chain(&conf).unwrap();
    let ctr = k.env.container("ghost").unwrap();
    let e = expect_err(chain.add(&pod_att("sb-ghost", &ctr, "ghost")));
    assert!(e.msg().contains("pod IP annotations"), "{}", e.msg());
    k.assert_nothing_left(&ctr);
}

#[test]
fn wrong_token_is_a_clear_non_retryable_error() {
    let k = Cluster::new("k8s-401");
    let bad = k.tmp().join("bad-kubeconfig");
    k.api().write_kubeconfig(&bad, "wrong-token").unwrap();
    let mut conf = k.seed_conflist();
    conf["plugins"][0]["kubernetes"]["kubeconfig"] = json!(bad);
    let chain = k.env.chain(&conf).unwrap();
    k.pod("p", json!({}));
    let ctr = k.env.container("p").unwrap();
    let e = expect_err(chain.add(&pod_att("sb-p", &ctr, "p")));
    assert_ne!(e.code(), Some(11), "{}", e.msg());
    assert!(e.msg().contains("401"), "{}", e.msg());
    k.assert_nothing_left(&ctr);

    // Calico's overrides: the token from policy.k8s_auth_token fixes it.
    conf["plugins"][0]["policy"]["k8s_auth_token"] = json!(k.api().token());
    let chain = k.env.chain(&conf).unwrap();
    let att = pod_att("sb-p", &ctr, "p");
    chain.add(&att).unwrap();
    chain.del(&att).unwrap();
}

#[test]
fn calico_ipam_honours_ip_addrs_and_pool_annotations() {
    let k = Cluster::new("k8s-cipam");
    let mut conf = k.seed_conflist();
    conf["cniVersion"] = json!("1.0.0");
    // calico-ipam on the embedded store (the CRD store has its own tests); pods and namespaces
    // still come from the API server.
    let calico = &mut conf["plugins"][0];
    calico["datastore_type"] = json!("local");
    calico["datastore_path"] = json!(k.tmp().join("ipam.db"));
    calico["ipam_lock_file"] = json!(k.tmp().join("ipam.lock"));
    calico["ipam"] = json!({"type": "calico-ipam", "default_ipv4_pool": "10.77.0.0/16"});
    let chain = k.env.chain(&conf).unwrap();
    let ctr = k.env.container("c").unwrap();

    // ipAddrs: exactly the requested address, through IPAM (so it is released on DEL and can
    // be requested again).
    k.pod(
        "fixed",
        json!({"cni.projectcalico.org/ipAddrs": "[\"10.77.3.9\"]"}),
    );
    for sandbox in ["sb-fixed-1", "sb-fixed-2"] {
        let att = pod_att(sandbox, &ctr, "fixed");
        let r = chain.add(&att).unwrap();
        assert_eq!(ips(&r), vec!["10.77.3.9/32".parse().unwrap()], "{r}");
        assert!(ctr
            .addrs("eth0")
            .unwrap()
            .contains(&"10.77.3.9/32".parse().unwrap()));
        chain.del(&att).unwrap();
    }

    // Pools: the namespace's annotation applies, the pod's wins over it.
    k.api()
        .put(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default",
            "annotations": {"cni.projectcalico.org/ipv4pools": "[\"10.77.0.0/16\"]"}}}),
        )
        .unwrap();
    k.pod("ns-pool", json!({}));
    let att = pod_att("sb-ns-pool", &ctr, "ns-pool");
    let r = chain.add(&att).unwrap();
    assert!(in_net(first_ip(&r), "10.77.0.0/16"), "{r}");
    chain.del(&att).unwrap();
    k.pod(
        "own-pool",
        json!({"cni.projectcalico.org/ipv4pools": "[\"no-such-pool\"]"}),
    );
    let e = expect_err(chain.add(&pod_att("sb-own-pool", &ctr, "own-pool")));
    assert!(
        e.msg().contains("no-such-pool"),
        "the pod's pool reached IPAM: {}",
        e.msg()
    );
    assert!(k.cali_links().is_empty());
    assert!(ctr.link("eth0").unwrap().is_none());
}

#[test]
fn client_from_calico_overrides_without_a_kubeconfig() {
    let k = Cluster::new("k8s-overrides");
    k.pod("p", json!({}));
    let ctr = k.env.container("p").unwrap();
    let base = k.seed_conflist();
    let ca = k.api().ca_path();
    let (cert, key) = (k.api().client_cert_path(), k.api().client_key_path());
    // API root + CA + bearer token; then API root + CA + client certificate (legacy policy keys,
    // with the old `/api/v1/` suffix Calico strips).
    let token_conf = json!({"type": "k8s", "k8s_auth_token": k.api().token(),
        "k8s_certificate_authority": ca});
    let cert_conf = json!({"type": "k8s", "k8s_api_root": format!("{}/api/v1/", k.api().url()),
        "k8s_client_certificate": cert, "k8s_client_key": key, "k8s_certificate_authority": ca});
    for (i, (kubernetes, policy)) in [
        (json!({"k8s_api_root": k.api().url()}), token_conf),
        (json!({}), cert_conf),
    ]
    .into_iter()
    .enumerate()
    {
        let mut conf = base.clone();
        conf["plugins"][0]["kubernetes"] = kubernetes;
        conf["plugins"][0]["policy"] = policy;
        let chain = k.env.chain(&conf).unwrap();
        let att = pod_att(&format!("sb-{i}"), &ctr, "p");
        let r = chain.add(&att).unwrap();
        assert_eq!(
            k.pod_annotations("p")[POD_IP],
            format!("{}/32", first_ip(&r)),
            "case {i}"
        );
        chain.del(&att).unwrap();
    }
}
