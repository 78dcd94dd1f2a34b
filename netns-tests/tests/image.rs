//! The OCI image that replaces calico/cni (deploy/image/build.sh), run the way a cluster runs
//! it: podman runs the image's `/opt/cni/bin/install` with the host's CNI dirs mounted where
//! Calico's manifest mounts them (/host/opt/cni/bin, /host/etc/cni/net.d), the service-account
//! mount, and the install-cni container's environment from Calico's calico.yaml (template from
//! the calico-config ConfigMap in testdata/calico-manifest). Asserted on the host: the
//! binaries, conflist and kubeconfig it installed, a pod wired by exactly those binaries and that
//! conflist against the test API server, exit codes, and an in-place upgrade while a loop execs
//! the installed plugins (no ETXTBSY, no half-written file).
//!
//! Needs root, podman and buildah (`run-tests.sh` installs them; missing → the test fails), and
//! the static binaries the image is made of: `run-tests.sh` builds them
//! (`RUSTFLAGS="-C target-feature=+crt-static" cargo build --target x86_64-unknown-linux-gnu
//! --bins`, the dev profile: see README "Deploy"); `IMAGE_BIN_DIR` points elsewhere.

// Only the cluster fixture is used here, not every helper the other Kubernetes tests share.
#[allow(dead_code)]
mod common;

use common::k8s::{pod_att, Cluster};
use netns_tests::bins;
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};

const NODE: &str = "node-img";
const POOL: &str = "10.78.0.0/16";
const TRIPLE: &str = "x86_64-unknown-linux-gnu";
const PLUGINS: [&str; 6] = [
    "bandwidth",
    "calico",
    "calico-ipam",
    "host-local",
    "loopback",
    "portmap",
];

fn top() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The static binaries: `$IMAGE_BIN_DIR`, else `<target>/x86_64-unknown-linux-gnu/debug`.
fn static_bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("IMAGE_BIN_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    // <target>/debug/calico -> <target>
    let target = bins::binary("calico").unwrap();
    let target = target.parent().and_then(Path::parent).unwrap();
    target.join(TRIPLE).join("debug")
}

fn require_tools() {
    for tool in ["podman", "buildah"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "{tool} not found: apt-get install podman buildah (netns-tests/run-tests.sh does)"
        );
    }
}

/// Builds the image from `bin_dir` into `out` with deploy/image/build.sh; returns its name.
fn build_image(bin_dir: &Path, out: &Path, tag: &str) -> String {
    let o = Command::new(top().join("deploy/image/build.sh"))
        .arg(out)
        .env("BIN_DIR", bin_dir)
        .env("TAG", tag)
        .output()
        .unwrap();
    assert!(o.status.success(), "build.sh: {}", stderr(&o));
    let o = podman(&["load", "-q", "-i", out.to_str().unwrap()]);
    assert!(o.status.success(), "podman load: {}", stderr(&o));
    format!("localhost/{tag}")
}

/// Removes the loaded images at the end, also on failure.
struct Images(Vec<String>);
impl Drop for Images {
    fn drop(&mut self) {
        for i in &self.0 {
            let _ = podman(&["rmi", "-f", i]);
        }
    }
}

/// podman, in a private mount namespace. Two quirks of hosts like this test machine are
/// handled there without touching the host: a hybrid cgroup layout (crun refuses cgroup v2
/// controllers next to v1, so the unified mount is hidden from it), and no CAP_SYS_RESOURCE
/// (podman's default rlimits cannot be set, so modest explicit ones are passed to `run`).
fn podman(args: &[&str]) -> Output {
    let script = "if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi; exec podman \"$@\"";
    let mut full: Vec<&str> = Vec::new();
    if args.first() == Some(&"run") {
        full.extend([
            "run",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ]);
        full.extend(&args[1..]);
    } else {
        full.extend(args);
    }
    Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "podman",
        ])
        .args(full)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `cni_network_config` value of the calico-config ConfigMap in Calico's manifest.
fn manifest_template() -> String {
    let text = fs::read_to_string(top().join("testdata/calico-manifest/calico.yaml")).unwrap();
    let mut lines = text
        .lines()
        .skip_while(|l| l.trim_end() != "  cni_network_config: |-")
        .skip(1);
    let mut out = Vec::new();
    for l in lines.by_ref() {
        match l.strip_prefix("    ") {
            Some(rest) => out.push(rest),
            None if l.trim().is_empty() => out.push(""),
            None => break,
        }
    }
    assert!(
        !out.is_empty(),
        "no cni_network_config in the manifest excerpt"
    );
    out.join("\n")
}

/// The node's directories and the install-cni container's view of them.
struct Node {
    dir: PathBuf,
}

impl Node {
    fn bin(&self) -> PathBuf {
        self.dir.join("opt/cni/bin")
    }
    fn net(&self) -> PathBuf {
        self.dir.join("etc/cni/net.d")
    }
    fn sa(&self) -> PathBuf {
        self.dir.join("serviceaccount")
    }

    /// `podman run` of Calico's install-cni init container (command, env, mounts).
    fn install(&self, image: &str, api_port: u16, template: &str) -> Output {
        let (bin, net, sa) = (self.bin(), self.net(), self.sa());
        let port = api_port.to_string();
        let (vb, vn, vs) = (
            format!("{}:/host/opt/cni/bin", bin.display()),
            format!("{}:/host/etc/cni/net.d", net.display()),
            format!(
                "{}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
                sa.display()
            ),
        );
        let net_dir = net.display().to_string();
        let env = [
            "CNI_CONF_NAME=10-calico.conflist".to_string(),
            format!("CNI_NETWORK_CONFIG={template}"),
            format!("KUBERNETES_NODE_NAME={NODE}"),
            // calico-config's veth_mtu.
            "CNI_MTU=0".to_string(),
            "SLEEP=false".to_string(),
            // What the kubelet sets in every container.
            "KUBERNETES_SERVICE_HOST=127.0.0.1".to_string(),
            format!("KUBERNETES_SERVICE_PORT={port}"),
            // The hostPath of cni-net-dir, as a manifest for a node with a non-default conf
            // dir sets it: here the node's conf dir is the test's temp dir.
            format!("CNI_NET_DIR={net_dir}"),
        ];
        let mut args = vec!["run", "--rm", "--network", "none", "--privileged"];
        for v in [&vb, &vn, &vs] {
            args.extend(["-v", v.as_str()]);
        }
        for e in &env {
            args.extend(["-e", e.as_str()]);
        }
        args.extend([image, "/opt/cni/bin/install"]);
        podman(&args)
    }

    fn installed(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.bin())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

impl Cluster {
    /// What the kubelet and calico-node would have created for a pod on NODE.
    fn seeded(name: &str) -> Cluster {
        let c = Cluster::start(name, NODE);
        for obj in [
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}, "spec": {}}),
            json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
                "metadata": {"name": "default-ipv4-ippool"},
                "spec": {"cidr": POOL, "blockSize": 26, "ipipMode": "Never",
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
        c
    }
}

/// `CNI_COMMAND=VERSION` of an installed plugin: Err with what went wrong.
fn exec_version(p: &Path) -> Result<(), String> {
    let o = Command::new(p)
        .env("CNI_COMMAND", "VERSION")
        .output()
        .map_err(|e| format!("{}: {e}", p.display()))?;
    if !o.status.success() {
        return Err(format!("{}: {} {}", p.display(), o.status, stderr(&o)));
    }
    let v: Value = serde_json::from_slice(&o.stdout)
        .map_err(|e| format!("{}: {e}: {:?}", p.display(), o.stdout))?;
    match v["supportedVersions"].as_array() {
        Some(a) if a.contains(&json!("1.0.0")) => Ok(()),
        _ => Err(format!("{}: {v}", p.display())),
    }
}

#[test]
fn image_installs_like_calico_cni_and_upgrades_in_place() {
    netns_tests::require_root().unwrap();
    require_tools();
    let k = Cluster::seeded("image");
    let tmp = k.tmp().to_path_buf();
    let static_dir = static_bin_dir();
    assert!(
        static_dir.join("install-cni").is_file(),
        "no static binaries in {} (run-tests.sh builds them; see the header of this file)",
        static_dir.display()
    );
    let tag = |v: &str| format!("calico-cni-rs:test-{}-{v}", std::process::id());
    let mut images = Images(Vec::new());
    let v1 = build_image(&static_dir, &tmp.join("v1.tar"), &tag("v1"));
    images.0.push(v1.clone());

    // The image: exactly the binaries and the contract (CMD, PATH) of calico/cni.
    let o = podman(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        v1.as_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let config: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(config["Cmd"], json!(["/opt/cni/bin/install"]), "{config}");
    assert_eq!(config["WorkingDir"], "/opt/cni/bin", "{config}");
    assert!(config["Env"]
        .as_array()
        .unwrap()
        .contains(&json!("PATH=/opt/cni/bin")));

    // The node: empty CNI dirs, the pod's service-account mount (token and CA of the API server).
    let node = Node {
        dir: tmp.join("node"),
    };
    for d in [node.bin(), node.net(), node.sa()] {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(node.sa().join("token"), k.api().token()).unwrap();
    fs::copy(k.api().ca_path(), node.sa().join("ca.crt")).unwrap();
    fs::write(node.sa().join("namespace"), "kube-system").unwrap();
    let port = k.api().addr().port();
    let template = manifest_template();

    let o = node.install(&v1, port, &template);
    assert!(o.status.success(), "install: {}", stderr(&o));
    assert!(stderr(&o).contains("CNI plugin version"), "{}", stderr(&o));

    // Binaries: the image's, byte for byte, executable, and no installer among them.
    assert_eq!(node.installed(), PLUGINS);
    for b in PLUGINS {
        let p = node.bin().join(b);
        assert_eq!(
            fs::read(&p).unwrap(),
            fs::read(static_dir.join(b)).unwrap(),
            "{b}"
        );
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o755
        );
        exec_version(&p).unwrap();
    }

    // The conflist: the manifest's template rendered for this node, naming host paths.
    let conf_path = node.net().join("10-calico.conflist");
    let conf: Value = serde_json::from_slice(&fs::read(&conf_path).unwrap()).unwrap();
    let calico = &conf["plugins"][0];
    assert_eq!(conf["name"], "k8s-pod-network");
    assert_eq!(calico["type"], "calico");
    assert_eq!(calico["nodename"], NODE);
    assert_eq!(calico["mtu"], 0);
    assert_eq!(calico["datastore_type"], "kubernetes");
    assert_eq!(calico["ipam"]["type"], "calico-ipam");
    let kubeconfig = node.net().join("calico-kubeconfig");
    assert_eq!(
        calico["kubernetes"]["kubeconfig"],
        kubeconfig.to_str().unwrap()
    );
    assert_eq!(conf["plugins"][1]["type"], "portmap");

    // The kubeconfig: the service's address, the mounted token and CA.
    let kc = fs::read_to_string(&kubeconfig).unwrap();
    assert!(
        kc.contains(&format!("server: https://127.0.0.1:{port}")),
        "{kc}"
    );
    assert!(kc.contains(k.api().token()), "{kc}");
    assert!(kc.contains("certificate-authority-data: "), "{kc}");
    assert_eq!(
        fs::metadata(&kubeconfig).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A pod wired by what was installed: the installed binaries, the installed conflist and
    // kubeconfig. Only node paths that calico-node provides on a real node (nodename file,
    // IPAM lock, log dir) are pointed into the test's directory, to leave the machine alone.
    fs::write(tmp.join("nodename"), NODE).unwrap();
    let mut pod_conf = conf.clone();
    pod_conf["plugins"][0]["nodename_file"] = json!(tmp.join("nodename"));
    pod_conf["plugins"][0]["ipam_lock_file"] = json!(tmp.join("ipam.lock"));
    pod_conf["plugins"][0]["log_file_path"] = json!(tmp.join("cni.log"));
    let chain = k
        .env
        .chain(&pod_conf)
        .unwrap()
        .plugin_dirs(vec![node.bin()]);
    k.pod("pod-a", json!({}));
    let ns = k.env.container("a").unwrap();
    let att = pod_att("sb-img-a", &ns, "pod-a");
    let r = chain.add(&att).unwrap();
    let ip = r["ips"][0]["address"].as_str().unwrap().to_string();
    let pool: ipnetwork::IpNetwork = POOL.parse().unwrap();
    let addr: ipnetwork::IpNetwork = ip.parse().unwrap();
    assert!(pool.contains(addr.ip()), "{ip} outside {POOL}");
    assert!(ns
        .addrs("eth0")
        .unwrap()
        .iter()
        .any(|a| a.ip() == addr.ip()));
    assert!(
        k.pod_annotations("pod-a")["cni.projectcalico.org/podIP"]
            .as_str()
            .is_some_and(|a| a.starts_with(&addr.ip().to_string())),
        "podIP annotation"
    );
    chain.del(&att).unwrap();
    assert!(k.cali_links().is_empty());

    // A bad template fails the init container with Calico's exit code 1, the node unchanged.
    let before = fs::read(&conf_path).unwrap();
    let o = node.install(&v1, port, "{ not json");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(fs::read(&conf_path).unwrap(), before);

    // Upgrade in place: a second image with different binaries (each with a trailer, which
    // the ELF loader ignores) while a loop keeps exec'ing the installed plugins, as kubelet
    // does for pods during a rolling update.
    let v2_dir = tmp.join("v2-bins");
    fs::create_dir_all(&v2_dir).unwrap();
    for b in PLUGINS.iter().chain(&["install-cni"]) {
        let mut bytes = fs::read(static_dir.join(b)).unwrap();
        bytes.extend_from_slice(b"\ncalico-cni-rs upgrade test v2\n");
        let p = v2_dir.join(b);
        fs::write(&p, bytes).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let v2 = build_image(&v2_dir, &tmp.join("v2.tar"), &tag("v2"));
    images.0.push(v2.clone());
    let stop = AtomicBool::new(false);
    let (execs, errors) = std::thread::scope(|s| {
        let looper = s.spawn(|| {
            let (mut n, mut errors) = (0usize, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                for b in PLUGINS {
                    n += 1;
                    if let Err(e) = exec_version(&node.bin().join(b)) {
                        errors.push(e);
                    }
                }
            }
            (n, errors)
        });
        let o = node.install(&v2, port, &template);
        stop.store(true, Ordering::Relaxed);
        assert!(o.status.success(), "upgrade: {}", stderr(&o));
        looper.join().unwrap()
    });
    assert!(
        errors.is_empty(),
        "{} of {execs} execs failed: {errors:?}",
        errors.len()
    );
    assert!(execs >= PLUGINS.len(), "the loop ran during the upgrade");
    for b in PLUGINS {
        assert_eq!(
            fs::read(node.bin().join(b)).unwrap(),
            fs::read(v2_dir.join(b)).unwrap(),
            "{b} upgraded"
        );
    }
    assert_eq!(node.installed(), PLUGINS, "no temp files left behind");
}
