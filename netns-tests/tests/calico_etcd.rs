//! The etcd seed conflist (testdata/10-calico-etcd-tls.conflist: etcd v3 over TLS, calico-ipam,
//! Kubernetes policy, portmap and bandwidth) end to end: a real TLS etcd and the test API
//! server listen inside the test's host namespace; ADD wires the pod, allocates from Calico's
//! blocks and writes the WorkloadEndpoint Felix reads (labels, profiles, addresses, interface);
//! DEL removes both. Everything is read back from etcd with the stock `etcdctl`.
//!
//! Needs the built binaries (`cargo build --bins`), `etcd` and `etcdctl`.

// Each test file uses part of the shared fixture.
#[allow(dead_code)]
mod common;

use std::path::Path;

use std::sync::mpsc;

use common::k8s::{pod_att, Cluster};
use ipam_store_etcd::test_cluster::EtcdCluster;
use ipam_store_etcd::{EtcdClient, EtcdConfig};
use netns_tests::Netns;
use serde_json::{json, Value};

const NODE: &str = "fueltank-1";
const POOL: &str = "10.48.0.0/16";
const WEP: &str =
    "/calico/resources/v3/projectcalico.org/workloadendpoints/default/fueltank--1-k8s-web--0-eth0";
const HANDLE: &str = "/calico/ipam/v2/handle/k8s-pod-network.sandbox-1";

/// A TLS etcd running inside the host namespace. Its members die with the thread that spawned
/// them (PR_SET_PDEATHSIG), so they are started on a thread that joins the namespace and stays
/// parked there until the cluster has been dropped (killed).
struct HostEtcd {
    cluster: Option<EtcdCluster>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostEtcd {
    fn start(host: &Netns) -> HostEtcd {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let path = host.path().to_path_buf();
        let thread = std::thread::spawn(move || {
            let ns = std::fs::File::open(path).unwrap();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            ready_tx.send(EtcdCluster::start_tls(1).unwrap()).unwrap();
            let _ = stop_rx.recv();
        });
        let cluster = ready_rx.recv().expect("etcd started");
        HostEtcd {
            cluster: Some(cluster),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn cluster(&self) -> &EtcdCluster {
        self.cluster.as_ref().expect("running until drop")
    }

    /// Client settings: endpoints and the accepted client certificate.
    fn config(&self) -> EtcdConfig {
        self.cluster().config()
    }

    /// Reads `key` with the stock etcdctl from inside the host namespace.
    fn get(&self, host: &Netns, key: &str) -> Option<Value> {
        let cluster = self.cluster();
        host.run(|| cluster.etcdctl_get(key).unwrap())
            .unwrap()
            .map(|v| serde_json::from_slice(&v).unwrap())
    }
}

impl Drop for HostEtcd {
    fn drop(&mut self) {
        drop(self.cluster.take()); // kills the members while their parent thread still lives
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The seed conflist verbatim except for what a node provides: etcd endpoints and certificate
/// paths (the file names hosts `fueltank-1..3`), the kubeconfig, the nodename file and the log.
fn seed_conflist(k: &Cluster, etcd: &HostEtcd) -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/10-calico-etcd-tls.conflist");
    let mut conf: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let nodename = k.tmp().join("nodename");
    std::fs::write(&nodename, NODE).unwrap();
    let calico = &mut conf["plugins"][0];
    assert!(calico["etcd_endpoints"]
        .as_str()
        .unwrap()
        .contains("fueltank-1"));
    assert_eq!(calico["ipam"]["type"], "calico-ipam");
    assert_eq!(calico["policy"]["type"], "k8s");
    let cfg = etcd.config();
    calico["etcd_endpoints"] = json!(cfg.endpoints.join(","));
    calico["etcd_key_file"] = json!(cfg.key_file);
    calico["etcd_cert_file"] = json!(cfg.cert_file);
    calico["etcd_ca_cert_file"] = json!(cfg.ca_cert_file);
    calico["kubernetes"]["kubeconfig"] = json!(k.api().kubeconfig_path());
    calico["nodename_file"] = json!(nodename);
    calico["log_file_path"] = json!(k.tmp().join("cni.log"));
    conf
}

/// What `calicoctl datastore init` / calico-node leave in etcd: a pool, a ready datastore.
fn seed_etcd(k: &Cluster, etcd: &HostEtcd) {
    let pool = json!({"kind": "IPPool", "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": "default-ipv4-ippool"},
        "spec": {"cidr": POOL, "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never",
                 "natOutgoing": true, "nodeSelector": "all()"}});
    let ci = json!({"kind": "ClusterInformation", "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": "default"}, "spec": {"datastoreReady": true}});
    k.env
        .host
        .run(|| {
            let client = EtcdClient::connect(&etcd.config()).unwrap();
            client
                .put(
                    "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool",
                    pool.to_string().as_bytes(),
                )
                .unwrap();
            client
                .put(
                    "/calico/resources/v3/projectcalico.org/clusterinformations/default",
                    ci.to_string().as_bytes(),
                )
                .unwrap()
        })
        .unwrap();
}

#[test]
fn seed_etcd_tls_conflist_writes_the_pods_workload_endpoint() {
    let k = Cluster::start("etcd-seed", NODE);
    let etcd = HostEtcd::start(&k.env.host);
    seed_etcd(&k, &etcd);
    k.api()
        .put(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "default", "labels": {"app": "web"},
                "annotations": {"cni.projectcalico.org/allowedSourcePrefixes": "[\"192.0.2.77/24\"]"}},
            "spec": {"nodeName": NODE, "serviceAccountName": "web-sa",
                     "containers": [{"name": "c", "image": "busybox", "ports": [
                         {"name": "http", "containerPort": 80},
                         {"containerPort": 53, "hostPort": 5353, "protocol": "UDP"},
                         {"containerPort": 9000}]}]}}))
        .unwrap();

    let chain = k.env.chain(&seed_conflist(&k, &etcd)).unwrap();
    let ctr = k.env.container("web").unwrap();
    let att = pod_att("sandbox-1", &ctr, "web-0");
    let r = chain.add(&att).unwrap();
    let ip = r["ips"][0]["address"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.48."), "{r}");
    assert!(ip.ends_with("/32"), "{r}");

    let wep = etcd
        .get(&k.env.host, WEP)
        .expect("WorkloadEndpoint written");
    assert_eq!(
        wep["metadata"]["labels"],
        json!({"app": "web", "projectcalico.org/namespace": "default",
               "projectcalico.org/orchestrator": "k8s",
               "projectcalico.org/serviceaccount": "web-sa"})
    );
    let spec = &wep["spec"];
    assert_eq!(spec["orchestrator"], "k8s");
    assert_eq!(spec["node"], NODE);
    assert_eq!(spec["pod"], "web-0");
    assert_eq!(spec["containerID"], "sandbox-1");
    assert_eq!(spec["serviceAccountName"], "web-sa");
    assert_eq!(
        spec["profiles"],
        json!(["kns.default", "ksa.default.web-sa"])
    );
    assert_eq!(spec["ipNetworks"], json!([ip]));
    assert_eq!(spec["interfaceName"], r["interfaces"][0]["name"]);
    assert_eq!(spec["mac"], r["interfaces"][1]["mac"]);
    // Named and host-mapped ports (not the anonymous 9000), and the annotation's prefixes.
    assert_eq!(
        spec["ports"],
        json!([{"name": "http", "protocol": "TCP", "port": 80},
               {"name": "", "protocol": "UDP", "port": 53, "hostPort": 5353}])
    );
    assert_eq!(spec["allowSpoofedSourcePrefixes"], json!(["192.0.2.0/24"]));
    assert!(etcd.get(&k.env.host, HANDLE).is_some(), "IPAM handle");
    // The host side exists and routes the pod's address to it.
    let veth = r["interfaces"][0]["name"].as_str().unwrap();
    assert!(k.env.host.link(veth).unwrap().is_some());

    chain.del(&att).unwrap();
    assert!(
        etcd.get(&k.env.host, WEP).is_none(),
        "WorkloadEndpoint removed"
    );
    assert!(etcd.get(&k.env.host, HANDLE).is_none(), "address released");
    assert!(k.env.host.link(veth).unwrap().is_none());
    chain.del(&att).unwrap();
}

/// issue #13 item 7 in etcd mode: the pod's WorkloadEndpoint from a sandbox whose DEL never ran
/// (node reboot) still holds the `ipAddrs` address; the new sandbox's ADD releases it first,
/// as Calico does, and gets it again.
#[test]
fn ip_addrs_pod_restarts_after_its_del_never_ran_on_etcd() {
    let k = Cluster::start("etcd-ipaddrs", NODE);
    let etcd = HostEtcd::start(&k.env.host);
    seed_etcd(&k, &etcd);
    k.api()
        .put(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "default",
                "annotations": {"cni.projectcalico.org/ipAddrs": "[\"10.48.3.3\"]"}},
            "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]}}))
        .unwrap();
    let chain = k.env.chain(&seed_conflist(&k, &etcd)).unwrap();
    let old = k.env.container("old").unwrap();
    let r = chain.add(&pod_att("sandbox-1", &old, "web-0")).unwrap();
    assert_eq!(r["ips"][0]["address"], "10.48.3.3/32", "{r}");
    drop(old); // the reboot: no DEL

    let new = k.env.container("new").unwrap();
    let att = pod_att("sandbox-2", &new, "web-0");
    let r = chain.add(&att).unwrap();
    assert_eq!(r["ips"][0]["address"], "10.48.3.3/32", "{r}");
    let wep = etcd.get(&k.env.host, WEP).expect("WorkloadEndpoint");
    assert_eq!(wep["spec"]["containerID"], "sandbox-2");
    assert!(
        etcd.get(&k.env.host, HANDLE).is_none(),
        "old handle released"
    );
    assert!(etcd
        .get(
            &k.env.host,
            "/calico/ipam/v2/handle/k8s-pod-network.sandbox-2"
        )
        .is_some());
    chain.del(&att).unwrap();
    assert!(etcd.get(&k.env.host, WEP).is_none());
}
