//! `calico` + `calico-ipam` on the Kubernetes datastore (Calico's CRDs in
//! `crd.projectcalico.org/v1`) against the test API server (crates/test-apiserver): pods get
//! addresses from an IPPool CRD and reach each other, the API server then holds the IPAMBlock,
//! BlockAffinity and IPAMHandles Calico would write (read back over HTTPS with `curl`, not with
//! the plugin's own client), CHECK passes, DEL releases, and an unreachable API is CNI code 11
//! with nothing left behind.
//!
//! Needs the built binaries (`cargo build --bins`: calico, calico-ipam) and `curl`.

mod common;

use std::net::IpAddr;

use common::k8s::{expect_err, pod_att, Cluster};
use ipnetwork::{IpNetwork, Ipv4Network};
use netns_tests::{bins, exec_plugin, traffic, ExecOutput};
use serde_json::{json, Value};

const NODE: &str = "kdd-node1";
const NETWORK: &str = "k8s-pod-network";
const POOL: &str = "10.77.0.0/16";
const BLOCK_SIZE: u8 = 26;
const POD_IP: &str = "cni.projectcalico.org/podIP";
const CRDS: &str = "/apis/crd.projectcalico.org/v1";

impl Cluster {
    /// A host namespace with the API server listening in it, seeded with what the kubelet and
    /// calico-node would have created: namespace `default`, the Node, the datastore's
    /// ClusterInformation, an IPPool, the default IPAMConfig and the nodename file.
    fn new(name: &str) -> Cluster {
        let c = Cluster::start(name, NODE);
        for obj in [
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}, "spec": {}}),
            json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
                "metadata": {"name": "default-ipv4-ippool"},
                "spec": {"cidr": POOL, "blockSize": BLOCK_SIZE, "ipipMode": "Never",
                    "vxlanMode": "Never", "natOutgoing": true, "nodeSelector": "all()",
                    "allowedUses": ["Workload", "Tunnel"]}}),
            json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "ClusterInformation",
                "metadata": {"name": "default"},
                "spec": {"datastoreReady": true, "clusterType": "k8s,bgp,kdd"}}),
            json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMConfig",
                "metadata": {"name": "default"},
                "spec": {"strictAffinity": false, "autoAllocateBlocks": true}}),
        ] {
            c.api().put(obj).unwrap();
        }
        std::fs::write(c.tmp().join("nodename"), NODE).unwrap();
        c
    }

    /// The calico plugin object as an operator writes it for KDD with calico-ipam.
    fn calico(&self) -> Value {
        json!({
            "type": "calico",
            "log_level": "debug",
            "log_file_path": self.tmp().join("cni.log"),
            "datastore_type": "kubernetes",
            "nodename": NODE,
            // What calico-node writes on a real node; calico insists on it (calico#6309).
            "nodename_file": self.tmp().join("nodename"),
            "mtu": 0,
            "ipam_lock_file": self.tmp().join("ipam.lock"),
            "ipam": {"type": "calico-ipam"},
            "policy": {"type": "k8s"},
            "kubernetes": {"kubeconfig": self.api().kubeconfig_path()}
        })
    }

    fn conflist(&self) -> Value {
        json!({"cniVersion": "1.0.0", "name": NETWORK, "plugins": [self.calico()]})
    }

    /// LIST a Calico CRD collection over HTTPS with curl (independent of the plugins' client);
    /// items by name.
    fn list(&self, plural: &str) -> Vec<(String, Value)> {
        self.list_in(CRDS, plural)
    }

    /// [`Cluster::list`] in the API group at `group_path` (`/apis/<group>/<version>`).
    fn list_in(&self, group_path: &str, plural: &str) -> Vec<(String, Value)> {
        let auth = format!("Authorization: Bearer {}", self.api().token());
        let ca = self.api().ca_path();
        let url = format!("{}{group_path}/{plural}", self.api().url());
        let out = self
            .env
            .host
            .exec(
                "curl",
                &[
                    "-sS",
                    "--fail",
                    "--cacert",
                    ca.to_str().unwrap(),
                    "-H",
                    &auth,
                    &url,
                ],
            )
            .unwrap();
        let list: Value = serde_json::from_str(&out).unwrap();
        list["items"]
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {list}"))
            .iter()
            .map(|o| {
                (
                    o["metadata"]["name"].as_str().unwrap().to_string(),
                    o.clone(),
                )
            })
            .collect()
    }

    fn names(&self, plural: &str) -> Vec<String> {
        self.list(plural).into_iter().map(|(n, _)| n).collect()
    }

    fn crd(&self, plural: &str, name: &str) -> Value {
        self.list(plural)
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {plural}/{name} in {:?}", self.names(plural)))
            .1
    }
}

/// A cluster seeded like [`Cluster::new`], but with Calico's objects in `api_version`
/// (`crd.projectcalico.org/v1` or `projectcalico.org/v3`, where the IPAM config is an
/// `IPAMConfiguration`).
fn cluster_in(name: &str, api_version: &str) -> Cluster {
    let c = Cluster::start(name, NODE);
    let ipam_config_kind = if api_version == "projectcalico.org/v3" {
        "IPAMConfiguration"
    } else {
        "IPAMConfig"
    };
    for obj in [
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}, "spec": {}}),
        json!({"apiVersion": api_version, "kind": "IPPool",
            "metadata": {"name": "default-ipv4-ippool"},
            "spec": {"cidr": POOL, "blockSize": BLOCK_SIZE, "ipipMode": "Never",
                "vxlanMode": "Never", "natOutgoing": true, "nodeSelector": "all()"}}),
        json!({"apiVersion": api_version, "kind": "ClusterInformation",
            "metadata": {"name": "default"},
            "spec": {"datastoreReady": true, "clusterType": "k8s,bgp,kdd"}}),
        json!({"apiVersion": api_version, "kind": ipam_config_kind,
            "metadata": {"name": "default"},
            "spec": {"strictAffinity": false, "autoAllocateBlocks": true}}),
    ] {
        c.api().put(obj).unwrap();
    }
    std::fs::write(c.tmp().join("nodename"), NODE).unwrap();
    c
}

/// The seed conflist's shape (kubeconfig only, calico-ipam) with no `datastore_type`: both
/// plugins must pick the Kubernetes datastore (Calico's rule without etcd endpoints) and
/// use Calico's objects in `api_version`, named by `calico_api_group` when `explicit`, else
/// found by discovery; the other group (when served) stays untouched.
fn seed_style_add_del(
    k: &Cluster,
    api_version: &str,
    explicit: bool,
    other_group_path: Option<&str>,
) {
    let mut calico = k.calico();
    calico.as_object_mut().unwrap().remove("datastore_type");
    if explicit {
        calico["calico_api_group"] = json!(api_version);
    }
    let conflist = json!({"cniVersion": "1.0.0", "name": NETWORK, "plugins": [calico]});
    let chain = k.env.chain(&conflist).unwrap();
    k.pod("pod-s", json!({}));
    let ctr = k.env.container("s").unwrap();
    let att = pod_att("sb-s", &ctr, "pod-s");
    let r = chain.add(&att).unwrap();
    let ip = only_ip(&r);
    assert!(POOL.parse::<IpNetwork>().unwrap().contains(ip.ip()), "{ip}");
    assert!(ctr.addrs("eth0").unwrap().iter().any(|a| a.ip() == ip.ip()));

    let group_path = format!("/apis/{api_version}");
    let block = block_name(block_of(ip.ip()));
    let blocks = k.list_in(&group_path, "ipamblocks");
    assert_eq!(
        blocks.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        vec![block.clone()]
    );
    assert_eq!(blocks[0].1["apiVersion"], api_version);
    assert_eq!(
        block_allocations(&blocks[0].1),
        vec![(ip.ip(), format!("{NETWORK}.sb-s"))]
    );
    let handles = k.list_in(&group_path, "ipamhandles");
    assert_eq!(handles.len(), 1, "{handles:?}");
    assert_eq!(handles[0].1["spec"]["handleID"], format!("{NETWORK}.sb-s"));
    let affinities = k.list_in(&group_path, "blockaffinities");
    assert_eq!(affinities.len(), 1, "{affinities:?}");
    for plural in ["ipamblocks", "ipamhandles", "blockaffinities"] {
        let Some(other) = other_group_path else {
            break;
        };
        assert!(
            k.list_in(other, plural).is_empty(),
            "{plural} written to {other}"
        );
    }

    chain.del(&att).unwrap();
    assert!(k.list_in(&group_path, "ipamhandles").is_empty());
    let b = &k.list_in(&group_path, "ipamblocks")[0].1;
    assert!(block_allocations(b).is_empty(), "{b}");
}

#[test]
fn seed_style_conflist_without_datastore_type_uses_the_crds() {
    let k = cluster_in("kdd-nodst", "crd.projectcalico.org/v1");
    // No `calico_api_group`: discovery finds both groups served (v3 being Calico's API
    // server over the v1 CRDs) and uses the CRDs.
    seed_style_add_del(
        &k,
        "crd.projectcalico.org/v1",
        false,
        Some("/apis/projectcalico.org/v3"),
    );
}

#[test]
fn only_v3_crds_installed_are_discovered_without_calico_api_group() {
    let k = cluster_in("kdd-disc", "projectcalico.org/v3");
    k.api().uninstall_group("crd.projectcalico.org");
    // Both plugins discover the group: calico reads the v3 ClusterInformation (the only
    // one), calico-ipam allocates in v3.
    seed_style_add_del(&k, "projectcalico.org/v3", false, None);
    let asked = k.api().requests();
    assert!(asked.iter().any(|r| r == "GET /apis"), "{asked:?}");
    assert!(
        !asked.iter().any(|r| r.contains("crd.projectcalico.org")),
        "{asked:?}"
    );
}

#[test]
fn calico_api_group_v3_uses_projectcalico_org_v3() {
    let k = cluster_in("kdd-v3", "projectcalico.org/v3");
    seed_style_add_del(&k, "projectcalico.org/v3", true, Some(CRDS));
    // The v3 BlockAffinity carries `deleted` as a bool (a string in v1).
    let aff = &k.list_in("/apis/projectcalico.org/v3", "blockaffinities")[0].1;
    assert_eq!(aff["spec"]["deleted"], json!(false), "{aff}");
}

fn only_ip(result: &Value) -> IpNetwork {
    let ips = result["ips"].as_array().unwrap();
    assert_eq!(ips.len(), 1, "{result}");
    ips[0]["address"].as_str().unwrap().parse().unwrap()
}

/// The /26 block holding `ip`, computed here from the pool's block size.
fn block_of(ip: IpAddr) -> Ipv4Network {
    let IpAddr::V4(v4) = ip else {
        panic!("{ip} is not IPv4")
    };
    let net = Ipv4Network::new(v4, BLOCK_SIZE).unwrap();
    Ipv4Network::new(net.network(), BLOCK_SIZE).unwrap()
}

/// Calico's object names, spelled out here rather than taken from ipam-store-kdd.
fn block_name(block: Ipv4Network) -> String {
    block.to_string().replace(['.', '/'], "-")
}

fn handle_name(container_id: &str) -> String {
    format!("{NETWORK}.{container_id}").to_lowercase()
}

/// Handle ids of the non-free ordinals of an IPAMBlock, by address.
fn block_allocations(block: &Value) -> Vec<(IpAddr, String)> {
    let cidr: Ipv4Network = block["spec"]["cidr"].as_str().unwrap().parse().unwrap();
    let attrs = block["spec"]["attributes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    block["spec"]["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter_map(|(ordinal, a)| {
            let idx = a.as_u64()? as usize;
            let ip = IpAddr::V4(cidr.nth(ordinal as u32).unwrap());
            let handle = attrs[idx]["handle_id"].as_str().unwrap_or_default();
            Some((ip, handle.to_string()))
        })
        .collect()
}

/// The CNI error code of a plugin run that must have failed.
fn error_code(out: &ExecOutput) -> Value {
    assert!(!out.success(), "expected a failure: {}", out.stdout_str());
    let err: Value = serde_json::from_str(&out.stdout_str()).unwrap();
    err["code"].clone()
}

#[test]
fn calico_ipam_on_crds_runs_add_check_del() {
    let k = Cluster::new("kdd-ipam");
    let chain = k.env.chain(&k.conflist()).unwrap();
    k.pod("pod-a", json!({}));
    k.pod("pod-b", json!({}));
    let (ca, cb) = (k.env.container("a").unwrap(), k.env.container("b").unwrap());
    let (aa, ab) = (pod_att("sb-a", &ca, "pod-a"), pod_att("sb-b", &cb, "pod-b"));
    let ra = chain.add(&aa).unwrap();
    let rb = chain.add(&ab).unwrap();

    // Addresses from the IPPool CRD, as /32s, on the pods' eth0.
    let (ipa, ipb) = (only_ip(&ra), only_ip(&rb));
    let pool: IpNetwork = POOL.parse().unwrap();
    for (ip, ns) in [(ipa, &ca), (ipb, &cb)] {
        assert!(pool.contains(ip.ip()), "{ip} outside {POOL}");
        assert_eq!(ip.prefix(), 32);
        assert!(ns.addrs("eth0").unwrap().iter().any(|a| a.ip() == ip.ip()));
    }
    assert_ne!(ipa.ip(), ipb.ip());
    assert!(
        traffic::ping_eventually(&ca, ipb.ip(), 3).unwrap(),
        "a -> b"
    );
    assert!(
        traffic::ping_eventually(&cb, ipa.ip(), 3).unwrap(),
        "b -> a"
    );

    // The pods carry their IPs for everyone watching the API.
    assert_eq!(
        k.pod_annotations("pod-a")[POD_IP],
        format!("{}/32", ipa.ip())
    );
    assert_eq!(
        k.pod_annotations("pod-b")[POD_IP],
        format!("{}/32", ipb.ip())
    );

    // Both pods came from this node's one block: the API server holds it, affine to the node,
    // with each address owned by its pod's handle.
    let block = block_of(ipa.ip());
    assert_eq!(block, block_of(ipb.ip()), "one affine block per node");
    assert_eq!(k.names("ipamblocks"), vec![block_name(block)]);
    let b = k.crd("ipamblocks", &block_name(block));
    assert_eq!(b["spec"]["affinity"], format!("host:{NODE}"), "{b}");
    let mut allocs = block_allocations(&b);
    allocs.sort();
    let mut want = vec![
        (ipa.ip(), format!("{NETWORK}.sb-a")),
        (ipb.ip(), format!("{NETWORK}.sb-b")),
    ];
    want.sort();
    assert_eq!(allocs, want, "{b}");

    let aff_name = format!("{NODE}-{}", block_name(block));
    assert_eq!(k.names("blockaffinities"), vec![aff_name.clone()]);
    let aff = k.crd("blockaffinities", &aff_name);
    assert_eq!(aff["spec"]["node"], NODE, "{aff}");
    assert_eq!(aff["spec"]["cidr"], block.to_string(), "{aff}");
    assert_eq!(aff["spec"]["state"], "confirmed", "{aff}");

    let mut handles = k.names("ipamhandles");
    handles.sort();
    assert_eq!(handles, vec![handle_name("sb-a"), handle_name("sb-b")]);
    let h = k.crd("ipamhandles", &handle_name("sb-a"));
    assert_eq!(h["spec"]["handleID"], format!("{NETWORK}.sb-a"), "{h}");
    assert_eq!(h["spec"]["block"][block.to_string()], 1, "{h}");

    chain.check(&aa).unwrap();
    chain.check(&ab).unwrap();

    // DEL releases: handles gone, the block (still affine, as Calico keeps it) empty.
    chain.del(&aa).unwrap();
    assert_eq!(k.names("ipamhandles"), vec![handle_name("sb-b")]);
    chain.del(&ab).unwrap();
    assert!(
        k.names("ipamhandles").is_empty(),
        "{:?}",
        k.names("ipamhandles")
    );
    let b = k.crd("ipamblocks", &block_name(block));
    assert!(block_allocations(&b).is_empty(), "{b}");
    assert_eq!(b["spec"]["affinity"], format!("host:{NODE}"), "{b}");
    assert_eq!(
        k.pod_annotations("pod-a")[POD_IP],
        "",
        "DEL clears the pod IP"
    );
    assert!(k.cali_links().is_empty(), "{:?}", k.cali_links());
    assert!(ca.link("eth0").unwrap().is_none());

    // A repeated DEL (nothing left to release) still succeeds.
    chain.del(&aa).unwrap();
    chain.del(&ab).unwrap();

    // The freed address is handed out again from the same block.
    let ra2 = chain.add(&aa).unwrap();
    assert_eq!(block_of(only_ip(&ra2).ip()), block);
    chain.del(&aa).unwrap();
    assert!(k.names("ipamhandles").is_empty());
}

#[test]
fn api_down_is_code_11_and_leaves_nothing() {
    let k = Cluster::new("kdd-ipam-down");
    let chain = k.env.chain(&k.conflist()).unwrap();
    k.pod("p", json!({}));
    let ctr = k.env.container("p").unwrap();
    let att = pod_att("sb-p", &ctr, "p");

    // Through the chain: calico cannot read the pod, so ADD stops before IPAM and the dataplane.
    k.api_ctl(|a| a.set_down(true));
    let e = expect_err(chain.add(&att));
    assert_eq!(e.code(), Some(11), "{}", e.msg());
    assert!(k.cali_links().is_empty(), "{:?}", k.cali_links());
    assert!(ctr.link("eth0").unwrap().is_none(), "pod interface left");

    // calico-ipam on its own (as calico delegates to it): the CRD store is unreachable.
    let mut stdin = k.calico();
    stdin["cniVersion"] = json!("1.0.0");
    stdin["name"] = json!(NETWORK);
    let ctr_path = ctr.path().to_str().unwrap().to_string();
    let bin = bins::binary("calico-ipam").unwrap();
    // Runs calico-ipam `cmd` for the pod.
    let ipam = |cmd: &str| {
        let env = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "sb-p"),
            ("CNI_NETNS", ctr_path.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/nonexistent"),
            ("CNI_ARGS", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p"),
        ];
        exec_plugin(&k.env.host, &bin, &env, stdin.to_string().as_bytes()).unwrap()
    };
    assert_eq!(error_code(&ipam("ADD")), 11);

    // Back up: the failed ADDs wrote nothing.
    k.api_ctl(|a| a.set_down(false));
    assert!(k.names("ipamhandles").is_empty());
    assert!(k.names("ipamblocks").is_empty());
    assert!(k.names("blockaffinities").is_empty());

    // DEL of a live pod while the API is down: code 11, the address stays held and wired.
    let r = chain.add(&att).unwrap();
    let ip = only_ip(&r).ip();
    k.api_ctl(|a| a.set_down(true));
    let e = chain.del(&att).unwrap_err();
    assert_eq!(e.code(), Some(11), "{}", e.msg());
    assert_eq!(error_code(&ipam("DEL")), 11);
    k.api_ctl(|a| a.set_down(false));
    assert!(ctr.addrs("eth0").unwrap().iter().any(|a| a.ip() == ip));
    assert_eq!(k.names("ipamhandles"), vec![handle_name("sb-p")]);
    chain.del(&att).unwrap();
    assert!(k.names("ipamhandles").is_empty());
    assert!(k.cali_links().is_empty(), "{:?}", k.cali_links());

    // A server that accepts but never answers: calico-ipam's request deadline turns it into
    // code 11 well inside the runtime's budget, and nothing is held afterwards.
    k.api_ctl(|a| a.set_stall(true));
    let started = std::time::Instant::now();
    let out = ipam("ADD");
    let took = started.elapsed();
    k.api_ctl(|a| a.set_stall(false));
    assert_eq!(error_code(&out), 11);
    assert!(took < std::time::Duration::from_secs(40), "{took:?}");
    assert!(k.names("ipamhandles").is_empty());
    for (name, b) in k.list("ipamblocks") {
        assert!(block_allocations(&b).is_empty(), "{name}: {b}");
    }
}

#[test]
fn pool_and_ip_annotations_and_a_second_node_on_crds() {
    let k = Cluster::new("kdd-ipam-ann");
    let other = "10.78.0.0/16";
    k.api()
        .put(
            json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
            "metadata": {"name": "other"},
            "spec": {"cidr": other, "blockSize": 28, "ipipMode": "Never", "vxlanMode": "Never",
                "nodeSelector": "all()"}}),
        )
        .unwrap();
    let node2 = "kdd-node2";
    k.api()
        .put(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node2}, "spec": {}}))
        .unwrap();
    // With two pools, unannotated pods are pinned to the first by the config.
    let conf_for = |node: &str| {
        let mut calico = k.calico();
        calico["nodename"] = json!(node);
        calico["ipam"]["ipv4_pools"] = json!([POOL]);
        json!({"cniVersion": "1.0.0", "name": NETWORK, "plugins": [calico]})
    };
    let chain1 = k.env.chain(&conf_for(NODE)).unwrap();
    let chain2 = k.env.chain(&conf_for(node2)).unwrap();

    // The pod's pool annotation (by pool name) wins over the config: a /28 block of `other`.
    k.pod(
        "in-other",
        json!({"cni.projectcalico.org/ipv4pools": "[\"other\"]"}),
    );
    let c1 = k.env.container("c1").unwrap();
    let a1 = pod_att("sb-other", &c1, "in-other");
    let ip1 = only_ip(&chain1.add(&a1).unwrap()).ip();
    assert!(other.parse::<IpNetwork>().unwrap().contains(ip1), "{ip1}");
    let IpAddr::V4(v4) = ip1 else { unreachable!() };
    let block28 = Ipv4Network::new(Ipv4Network::new(v4, 28).unwrap().network(), 28).unwrap();
    let b = k.crd("ipamblocks", &block_name(block28));
    assert_eq!(b["spec"]["affinity"], format!("host:{NODE}"), "{b}");
    assert_eq!(
        block_allocations(&b),
        vec![(ip1, format!("{NETWORK}.sb-other"))]
    );

    // ipAddrs: exactly the requested address; its block is claimed for this node.
    k.pod(
        "fixed",
        json!({"cni.projectcalico.org/ipAddrs": "[\"10.77.9.9\"]"}),
    );
    let c2 = k.env.container("c2").unwrap();
    let a2 = pod_att("sb-fixed", &c2, "fixed");
    let r2 = chain1.add(&a2).unwrap();
    assert_eq!(only_ip(&r2), "10.77.9.9/32".parse::<IpNetwork>().unwrap());
    let fixed_block = block_of("10.77.9.9".parse().unwrap());
    let b = k.crd("ipamblocks", &block_name(fixed_block));
    assert_eq!(
        block_allocations(&b),
        vec![("10.77.9.9".parse().unwrap(), format!("{NETWORK}.sb-fixed"))],
        "{b}"
    );
    assert!(traffic::ping_eventually(&c1, "10.77.9.9".parse().unwrap(), 3).unwrap());

    // A pod on the second node gets its own block and affinity.
    k.pod("on-node2", json!({}));
    let c3 = k.env.container("c3").unwrap();
    let a3 = pod_att("sb-node2", &c3, "on-node2");
    let ip3 = only_ip(&chain2.add(&a3).unwrap()).ip();
    assert!(POOL.parse::<IpNetwork>().unwrap().contains(ip3), "{ip3}");
    let block3 = block_of(ip3);
    assert_ne!(block3, fixed_block);
    let b = k.crd("ipamblocks", &block_name(block3));
    assert_eq!(b["spec"]["affinity"], format!("host:{node2}"), "{b}");
    let aff = k.crd(
        "blockaffinities",
        &format!("{node2}-{}", block_name(block3)),
    );
    assert_eq!(aff["spec"]["node"], node2, "{aff}");
    let mut affinities = k.names("blockaffinities");
    affinities.sort();
    let mut want = vec![
        format!("{NODE}-{}", block_name(block28)),
        format!("{NODE}-{}", block_name(fixed_block)),
        format!("{node2}-{}", block_name(block3)),
    ];
    want.sort();
    assert_eq!(affinities, want);

    for (chain, att) in [(&chain1, &a1), (&chain1, &a2), (&chain2, &a3)] {
        chain.del(att).unwrap();
    }
    assert!(k.names("ipamhandles").is_empty());
    for (name, b) in k.list("ipamblocks") {
        assert!(block_allocations(&b).is_empty(), "{name}: {b}");
    }
    // The annotated address can be requested again once released.
    let r2 = chain1.add(&a2).unwrap();
    assert_eq!(only_ip(&r2), "10.77.9.9/32".parse::<IpNetwork>().unwrap());
    chain1.del(&a2).unwrap();
}

/// ADDs that fail after calico-ipam allocated must give the address back in the CRDs.
#[test]
fn failed_add_releases_its_crd_allocation() {
    let k = Cluster::new("kdd-ipam-rollback");
    let assert_released = |why: &str| {
        assert!(
            k.names("ipamhandles").is_empty(),
            "{why}: {:?}",
            k.names("ipamhandles")
        );
        for (name, b) in k.list("ipamblocks") {
            assert!(block_allocations(&b).is_empty(), "{why}: {name}: {b}");
        }
        assert!(k.cali_links().is_empty(), "{why}: {:?}", k.cali_links());
    };

    // An interface already named eth0 in the pod: refused before IPAM, so nothing to release.
    let chain = k.env.chain(&k.conflist()).unwrap();
    k.pod("p", json!({}));
    let ctr = k.env.container("p").unwrap();
    ctr.ip(&[
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0-peer",
    ])
    .unwrap();
    let e = expect_err(chain.add(&pod_att("sb-taken", &ctr, "p")));
    assert!(e.msg().contains("\"eth0\" already exists"), "{}", e.msg());
    assert!(k.names("ipamblocks").is_empty(), "no IPAM for a doomed ADD");
    assert_released("interface exists");
    assert_eq!(k.pod_annotations("p")[POD_IP], Value::Null);
    ctr.ip(&["link", "del", "eth0"]).unwrap();

    // The pod IP update fails after the dataplane: without policy k8s the pod is not read
    // first, so the PATCH is the first request to find it missing.
    let mut conf = k.conflist();
    conf["plugins"][0]["policy"] = json!({});
    let chain = k.env.chain(&conf).unwrap();
    let e = expect_err(chain.add(&pod_att("sb-ghost", &ctr, "ghost")));
    assert!(e.msg().contains("pod IP annotations"), "{}", e.msg());
    assert_eq!(
        k.names("ipamblocks").len(),
        1,
        "IPAM allocated before the update failed"
    );
    assert_released("pod update failure");
    assert!(ctr.link("eth0").unwrap().is_none(), "pod interface left");
}

/// issue #13 item 7: a pod with `ipAddrs` whose old sandbox was never DELeted (node reboot)
/// starts again: the ADD of the new sandbox releases the addresses the pod (its KDD
/// WorkloadEndpoint: the podIP annotations) still has, as Calico does, then takes them anew.
#[test]
fn ip_addrs_pod_restarts_after_its_del_never_ran() {
    let k = Cluster::new("kdd-ipaddrs-reboot");
    let chain = k.env.chain(&k.conflist()).unwrap();
    k.pod(
        "fixed",
        json!({"cni.projectcalico.org/ipAddrs": "[\"10.77.9.9\"]"}),
    );
    let fixed: IpAddr = "10.77.9.9".parse().unwrap();
    let old = k.env.container("old").unwrap();
    let r = chain
        .add(&pod_att("sb-before-reboot", &old, "fixed"))
        .unwrap();
    assert_eq!(only_ip(&r).ip(), fixed);
    assert_eq!(k.pod_annotations("fixed")[POD_IP], "10.77.9.9/32");
    // The node reboots: the sandbox and its interfaces vanish, no DEL ever runs.
    drop(old);

    let new = k.env.container("new").unwrap();
    let att = pod_att("sb-after-reboot", &new, "fixed");
    let r = chain.add(&att).unwrap();
    assert_eq!(only_ip(&r).ip(), fixed);
    let block = k.crd("ipamblocks", &block_name(block_of(fixed)));
    assert_eq!(
        block_allocations(&block),
        vec![(fixed, format!("{NETWORK}.sb-after-reboot"))],
        "{block}"
    );
    assert_eq!(
        k.names("ipamhandles"),
        vec![handle_name("sb-after-reboot")],
        "the old sandbox's handle went with its address"
    );
    // And the new sandbox answers on it.
    k.pod("peer", json!({}));
    let peer = k.env.container("peer").unwrap();
    let peer_att = pod_att("sb-peer", &peer, "peer");
    chain.add(&peer_att).unwrap();
    assert!(traffic::ping_eventually(&peer, fixed, 3).unwrap());
    for a in [&att, &peer_att] {
        chain.del(a).unwrap();
    }
    assert!(k.names("ipamhandles").is_empty());
}

/// issue #13 item 6: an IPPool's namespaceSelector is matched against the labels of the pod's
/// namespace, which calico-ipam reads from the API itself (as Calico's ipam plugin does).
#[test]
fn namespace_selector_picks_the_pool_from_namespace_labels() {
    let k = Cluster::new("kdd-ns-selector");
    k.api()
        .put(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "default", "labels": {"team": "x"}}}))
        .unwrap();
    // The default pool now serves other teams only; team x has its own pool.
    for (name, cidr, selector) in [
        ("default-ipv4-ippool", POOL, "team != 'x'"),
        ("team-x", "10.78.0.0/16", "team == 'x'"),
    ] {
        k.api()
            .put(
                json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
                "metadata": {"name": name},
                "spec": {"cidr": cidr, "blockSize": BLOCK_SIZE, "ipipMode": "Never",
                    "vxlanMode": "Never", "natOutgoing": true, "nodeSelector": "all()",
                    "namespaceSelector": selector}}),
            )
            .unwrap();
    }
    let chain = k.env.chain(&k.conflist()).unwrap();
    k.pod("p", json!({}));
    let ctr = k.env.container("p").unwrap();
    let att = pod_att("sb-ns", &ctr, "p");
    let ip = only_ip(&chain.add(&att).unwrap()).ip();
    assert!(
        "10.78.0.0/16".parse::<IpNetwork>().unwrap().contains(ip),
        "{ip} is not from team-x's pool"
    );
    chain.del(&att).unwrap();
}
