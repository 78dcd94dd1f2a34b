//! `calico-ipam -upgrade` (the `upgrade-ipam` init container) against the test API server:
//! pods started with host-local `usePodCidr` keep their addresses once the node moves to
//! calico-ipam. The migration runs in a private mount namespace where the test's host-local
//! data dir is bind-mounted on Calico's fixed path (/var/lib/cni/networks), with the
//! environment the init container gets (`KUBERNETES_NODE_NAME`, a kubeconfig).
//!
//! Needs the built binaries (`cargo build --bins`: calico, calico-ipam, host-local), `curl`
//! and `unshare`.

// Each test file uses part of the shared fixture.
#[allow(dead_code)]
mod common;

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use common::k8s::{pod_att, Cluster};
use netns_tests::exec::run_in;
use netns_tests::{bins, ExecOutput};
use serde_json::{json, Value};

const NODE: &str = "upg-node1";
const NETWORK: &str = "k8s-pod-network";
/// The node's podCIDR is the pool's only block, so calico-ipam without the migration would
/// hand out the host-local pods' addresses again (it fills a block from its first ordinal).
const POD_CIDR: &str = "10.78.1.0/26";
const CRDS: &str = "/apis/crd.projectcalico.org/v1";

impl Cluster {
    fn upgrade_cluster(name: &str) -> Cluster {
        let c = Cluster::start(name, NODE);
        for obj in [
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
                "spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]}}),
            json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
                "metadata": {"name": "default-ipv4-ippool"},
                "spec": {"cidr": POD_CIDR, "blockSize": 26, "ipipMode": "Never",
                    "vxlanMode": "Never", "natOutgoing": true, "nodeSelector": "all()"}}),
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

    /// The node's conflist with `ipam` as given.
    fn conflist_with(&self, ipam: Value) -> Value {
        json!({"cniVersion": "1.0.0", "name": NETWORK, "plugins": [{
            "type": "calico",
            "log_level": "debug",
            "log_file_path": self.tmp().join("cni.log"),
            "datastore_type": "kubernetes",
            "nodename": NODE,
            "nodename_file": self.tmp().join("nodename"),
            "mtu": 0,
            "ipam": ipam,
            "policy": {"type": "k8s"},
            "kubernetes": {"kubeconfig": self.api().kubeconfig_path()}
        }]})
    }

    /// The parent of host-local's per-network dirs (what /var/lib/cni/networks is on a node).
    fn networks_dir(&self) -> std::path::PathBuf {
        self.tmp().join("networks")
    }

    /// `calico-ipam -upgrade` as the init container runs it, with the test's data dir on
    /// Calico's path in a mount namespace of its own.
    fn upgrade(&self) -> ExecOutput {
        // The bind-mount target; on a node it exists, here it may not.
        std::fs::create_dir_all("/var/lib/cni/networks").unwrap();
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$1" /var/lib/cni/networks && exec "$2" -upgrade"#)
            .arg("sh")
            .arg(self.networks_dir())
            .arg(bins::binary("calico-ipam").unwrap())
            .env("KUBERNETES_NODE_NAME", NODE)
            .env("KUBECONFIG", self.api().kubeconfig_path());
        run_in(&self.env.host, &mut cmd, b"", Duration::from_secs(60)).unwrap()
    }

    /// Marks pod `name` running with `ip`, as the kubelet reports it.
    fn set_pod_ip(&self, name: &str, ip: IpAddr) {
        let path = format!("/api/v1/namespaces/default/pods/{name}");
        let mut pod = self.api().get(&path).unwrap();
        pod["status"] = json!({"phase": "Running", "podIP": ip.to_string(),
            "podIPs": [{"ip": ip.to_string()}]});
        self.api().put(pod).unwrap();
    }

    /// A Calico CRD collection, listed over HTTPS with curl (not with the plugin's client).
    fn list(&self, path: &str) -> Vec<Value> {
        let auth = format!("Authorization: Bearer {}", self.api().token());
        let ca = self.api().ca_path();
        let url = format!("{}{path}", self.api().url());
        let args = [
            "-sS",
            "--fail",
            "--cacert",
            ca.to_str().unwrap(),
            "-H",
            &auth,
            &url,
        ];
        let out = self.env.host.exec("curl", &args).unwrap();
        let list: Value = serde_json::from_str(&out).unwrap();
        list["items"].as_array().unwrap().clone()
    }

    /// `(address, handle, attributes)` of every allocation in every IPAMBlock.
    fn allocations(&self) -> Vec<(IpAddr, String, Value)> {
        let mut out = Vec::new();
        for block in self.list(&format!("{CRDS}/ipamblocks")) {
            let cidr: ipnetwork::Ipv4Network =
                block["spec"]["cidr"].as_str().unwrap().parse().unwrap();
            let attrs = block["spec"]["attributes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for (ordinal, a) in block["spec"]["allocations"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
            {
                if let Some(idx) = a.as_u64() {
                    let ip = IpAddr::V4(cidr.nth(ordinal as u32).unwrap());
                    let at = &attrs[idx as usize];
                    out.push((
                        ip,
                        at["handle_id"].as_str().unwrap().to_string(),
                        at["secondary"].clone(),
                    ));
                }
            }
        }
        out.sort_by_key(|(ip, _, _)| *ip);
        out
    }

    fn handles(&self) -> Vec<String> {
        let mut h: Vec<String> = self
            .list(&format!("{CRDS}/ipamhandles"))
            .iter()
            .map(|o| o["spec"]["handleID"].as_str().unwrap().to_string())
            .collect();
        h.sort();
        h
    }

    fn datastore_ready(&self) -> Value {
        self.api()
            .get(&format!("{CRDS}/clusterinformations/default"))
            .unwrap()["spec"]["datastoreReady"]
            .clone()
    }
}

fn result_ip(result: &Value) -> IpAddr {
    let ips = result["ips"].as_array().unwrap();
    assert_eq!(ips.len(), 1, "{result}");
    ips[0]["address"]
        .as_str()
        .unwrap()
        .parse::<ipnetwork::IpNetwork>()
        .unwrap()
        .ip()
}

fn handle(container_id: &str) -> String {
    format!("{NETWORK}.{container_id}")
}

fn assert_ok(out: &ExecOutput) {
    assert!(
        out.success(),
        "exit {:?}: {}\n{}",
        out.status.code(),
        out.stdout_str(),
        out.stderr_str()
    );
}

#[test]
fn host_local_pods_move_to_calico_ipam_and_keep_their_addresses() {
    let k = Cluster::upgrade_cluster("ipam-upg");
    let data = k.networks_dir();
    let host_local = k.conflist_with(json!({"type": "host-local", "subnet": "usePodCidr",
        "dataDir": data}));
    let chain = k.env.chain(&host_local).unwrap();

    // Two running pods on host-local.
    let mut old = Vec::new();
    for (pod, ctr_id) in [("pod-a", "ctr-a"), ("pod-b", "ctr-b")] {
        k.pod(pod, json!({}));
        let ctr = k.env.container(pod).unwrap();
        let att = pod_att(ctr_id, &ctr, pod);
        let ip = result_ip(&chain.add(&att).unwrap());
        k.set_pod_ip(pod, ip);
        old.push((pod, ctr_id, ctr, att, ip));
    }
    // A reservation left by a pod that no longer exists: dropped, not migrated.
    let stale: IpAddr = "10.78.1.40".parse().unwrap();
    std::fs::write(
        data.join(NETWORK).join(stale.to_string()),
        "ctr-gone\r\neth0",
    )
    .unwrap();
    assert!(k.allocations().is_empty());

    let out = k.upgrade();
    assert_ok(&out);

    // Each pod's address is now a calico-ipam allocation on this node under the handle
    // calico-ipam would have made, in the node's affine block; plus the IPIP tunnel address
    // Calico gives a host-local node (podCIDR + 1).
    let tunnel: IpAddr = "10.78.1.1".parse().unwrap();
    let mut want = vec![(
        tunnel,
        format!("ipip-tunnel-addr-{NODE}"),
        json!({"node": NODE, "type": "ipipTunnelAddress"}),
    )];
    for (pod, ctr_id, _, _, ip) in &old {
        want.push((
            *ip,
            handle(ctr_id),
            json!({"node": NODE, "pod": pod, "namespace": "default"}),
        ));
    }
    want.sort_by_key(|(ip, _, _)| *ip);
    assert_eq!(k.allocations(), want);
    let mut want_handles: Vec<String> = want.iter().map(|(_, h, _)| h.clone()).collect();
    want_handles.sort();
    assert_eq!(k.handles(), want_handles);
    let affinities = k.list(&format!("{CRDS}/blockaffinities"));
    assert_eq!(affinities.len(), 1, "{affinities:?}");
    assert_eq!(affinities[0]["spec"]["node"], NODE);
    assert_eq!(affinities[0]["spec"]["cidr"], POD_CIDR);
    let node = k.api().get(&format!("/api/v1/nodes/{NODE}")).unwrap();
    assert_eq!(
        node["metadata"]["annotations"]["projectcalico.org/IPv4IPIPTunnelAddr"],
        "10.78.1.1"
    );
    // CNI was paused during the move and is enabled again; host-local's data is gone.
    assert_eq!(k.datastore_ready(), json!(true));
    assert!(!data.join(NETWORK).exists());

    // A second run finds nothing to do and changes nothing.
    let before = (
        k.list(&format!("{CRDS}/ipamblocks")),
        k.list(&format!("{CRDS}/ipamhandles")),
    );
    let out = k.upgrade();
    assert_ok(&out);
    assert_eq!(
        (
            k.list(&format!("{CRDS}/ipamblocks")),
            k.list(&format!("{CRDS}/ipamhandles"))
        ),
        before
    );

    // A run interrupted after assigning but before deleting the file (the file is back): the
    // address already assigned counts as migrated, nothing changes, the data dir goes.
    let (_, ctr_a, _, _, ip_a) = &old[0];
    std::fs::create_dir_all(data.join(NETWORK)).unwrap();
    std::fs::write(
        data.join(NETWORK).join(ip_a.to_string()),
        format!("{ctr_a}\r\neth0"),
    )
    .unwrap();
    assert_ok(&k.upgrade());
    assert_eq!(k.allocations(), want);
    assert_eq!(k.handles(), want_handles);
    assert_eq!(k.datastore_ready(), json!(true));
    assert!(!data.join(NETWORK).exists());

    // The node switches to calico-ipam: new pods never get an address already in use.
    let chain = k
        .env
        .chain(&k.conflist_with(json!({"type": "calico-ipam"})))
        .unwrap();
    let taken: Vec<IpAddr> = want.iter().map(|(ip, _, _)| *ip).collect();
    for (pod, ctr_id) in [("pod-c", "ctr-c"), ("pod-d", "ctr-d"), ("pod-e", "ctr-e")] {
        k.pod(pod, json!({}));
        let ctr = k.env.container(pod).unwrap();
        let ip = result_ip(&chain.add(&pod_att(ctr_id, &ctr, pod)).unwrap());
        assert!(
            !taken.contains(&ip),
            "{pod} got {ip}, already in use: {taken:?}"
        );
    }

    // The old pods still have their addresses, and their DEL now releases through calico-ipam.
    for (_, ctr_id, ctr, att, ip) in &old {
        assert!(ctr.addrs("eth0").unwrap().iter().any(|a| a.ip() == *ip));
        chain.del(att).unwrap();
        assert!(
            !k.allocations().iter().any(|(a, _, _)| a == ip),
            "{ip} still allocated after DEL"
        );
        assert!(!k.handles().contains(&handle(ctr_id)));
    }
    assert!(!k.allocations().iter().any(|(a, _, _)| *a == stale));
}

#[test]
fn nothing_to_migrate_without_host_local_data() {
    let k = Cluster::upgrade_cluster("ipam-upg-none");
    // The node never used host-local: no data dir under the mounted path.
    std::fs::create_dir_all(k.networks_dir()).unwrap();
    let out = k.upgrade();
    assert_ok(&out);
    assert!(k.allocations().is_empty());
    assert!(k.handles().is_empty());
    let node = k.api().get(&format!("/api/v1/nodes/{NODE}")).unwrap();
    assert!(node["metadata"]["annotations"]
        .get("projectcalico.org/IPv4IPIPTunnelAddr")
        .is_none());
    assert_eq!(k.datastore_ready(), json!(true));
}
