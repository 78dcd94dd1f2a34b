//! bins/host-local end to end, and on-disk compatibility with Debian's Go host-local
//! (`/usr/lib/cni/host-local`, package containernetworking-plugins): a data directory written by
//! one is read and released correctly by the other, and both serialise on the same lock.
//! Needs `cargo build --bins` first.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use netns_tests::bins::{self, DEBIAN_PLUGIN_DIR};
use netns_tests::traffic::ping;
use netns_tests::{exec_plugin, Attachment, ExecOutput, Netns, TestEnv};
use serde_json::{json, Value};

fn ours() -> PathBuf {
    bins::binary("host-local").unwrap()
}

fn go() -> PathBuf {
    let p = Path::new(DEBIAN_PLUGIN_DIR).join("host-local");
    assert!(
        p.is_file(),
        "{} missing: install the Debian package containernetworking-plugins",
        p.display()
    );
    p
}

/// Runs one host-local command the way a main plugin delegates to it.
struct Ipam<'a> {
    host: &'a Netns,
    ctr: &'a Netns,
    conf: Value,
}

impl Ipam<'_> {
    fn run(&self, bin: &Path, cmd: &str, id: &str, args: &str) -> ExecOutput {
        let netns = self.ctr.path().to_string_lossy().into_owned();
        let stdin = serde_json::to_vec(&self.conf).unwrap();
        exec_plugin(
            self.host,
            bin,
            &[
                ("CNI_COMMAND", cmd),
                ("CNI_CONTAINERID", id),
                ("CNI_NETNS", &netns),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/nonexistent"),
                ("CNI_ARGS", args),
            ],
            &stdin,
        )
        .unwrap()
    }

    /// ADD that must succeed; returns the allocated addresses.
    fn add(&self, bin: &Path, id: &str) -> Vec<String> {
        let out = self.run(bin, "ADD", id, "");
        assert!(
            out.success(),
            "{} ADD {id}: {}",
            bin.display(),
            out.stdout_str()
        );
        out.stdout_json().unwrap()["ips"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["address"].as_str().unwrap().to_string())
            .collect()
    }

    fn ok(&self, bin: &Path, cmd: &str, id: &str) {
        let out = self.run(bin, cmd, id, "");
        assert!(
            out.success(),
            "{} {cmd} {id}: {} {}",
            bin.display(),
            out.stdout_str(),
            out.stderr_str()
        );
    }

    /// (code, msg) of a failing command.
    fn err(&self, bin: &Path, cmd: &str, id: &str, args: &str) -> (u64, String) {
        let out = self.run(bin, cmd, id, args);
        assert!(
            !out.success(),
            "{} {cmd} {id} unexpectedly succeeded",
            bin.display()
        );
        let v = out.stdout_json().unwrap();
        (
            v["code"].as_u64().unwrap(),
            v["msg"].as_str().unwrap().to_string(),
        )
    }
}

fn conf(data_dir: &Path, version: &str) -> Value {
    json!({
        "cniVersion": version, "name": "hl-net", "type": "bridge",
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.44.0.0/29"}], [{"subnet": "2001:db8:44::/125"}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": data_dir.to_string_lossy()
        }
    })
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn go_writes_rust_reads_and_releases() {
    let env = TestEnv::new("hl-go-rust").unwrap();
    let ctr = env.container("ctr").unwrap();
    let data = env.tmp().join("ipam");
    let ipam = Ipam {
        host: &env.host,
        ctr: &ctr,
        conf: conf(&data, "0.3.1"),
    };
    let (go, ours) = (go(), ours());
    let dir = data.join("hl-net");

    assert_eq!(
        ipam.add(&go, "ctr-go"),
        ["10.44.0.2/29", "2001:db8:44::2/125"]
    );
    // Round robin continues from Go's last_reserved_ip files.
    assert_eq!(
        ipam.add(&ours, "ctr-rs"),
        ["10.44.0.3/29", "2001:db8:44::3/125"]
    );
    // Our duplicate detection and CHECK see Go's reservation.
    assert_eq!(
        ipam.err(&ours, "ADD", "ctr-go", "").1,
        "failed to allocate for range 0: 10.44.0.2 has been allocated to ctr-go, duplicate allocation is not allowed"
    );
    let mut v1 = conf(&data, "1.0.0");
    v1["ipam"]["ranges"] = ipam.conf["ipam"]["ranges"].clone();
    let ipam_v1 = Ipam {
        host: &env.host,
        ctr: &ctr,
        conf: v1,
    };
    ipam_v1.ok(&ours, "CHECK", "ctr-go");
    // Our DEL releases Go's files; Go's DEL releases ours.
    ipam.ok(&ours, "DEL", "ctr-go");
    ipam.ok(&go, "DEL", "ctr-rs");
    assert_eq!(
        files(&dir),
        ["last_reserved_ip.0", "last_reserved_ip.1", "lock"]
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("last_reserved_ip.0")).unwrap(),
        "10.44.0.3"
    );
    // DEL is idempotent for both.
    ipam.ok(&ours, "DEL", "ctr-go");
    ipam.ok(&go, "DEL", "ctr-go");
}

#[test]
fn rust_writes_go_reads_and_releases() {
    let env = TestEnv::new("hl-rust-go").unwrap();
    let ctr = env.container("ctr").unwrap();
    let data = env.tmp().join("ipam");
    let ipam = Ipam {
        host: &env.host,
        ctr: &ctr,
        conf: conf(&data, "1.0.0"),
    };
    let (go, ours) = (go(), ours());
    let dir = data.join("hl-net");

    assert_eq!(
        ipam.add(&ours, "ctr-rs"),
        ["10.44.0.2/29", "2001:db8:44::2/125"]
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("10.44.0.2")).unwrap(),
        "ctr-rs\r\neth0"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("2001:db8:44::2")).unwrap(),
        "ctr-rs\r\neth0"
    );
    assert_eq!(
        ipam.add(&go, "ctr-go"),
        ["10.44.0.3/29", "2001:db8:44::3/125"]
    );
    ipam.ok(&go, "CHECK", "ctr-rs");
    let (_, msg) = ipam.err(&go, "ADD", "ctr-rs", "");
    assert!(msg.contains("duplicate allocation is not allowed"), "{msg}");
    // A requested address Go reserved is unavailable to us, with the same message as Go's.
    let args = "IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.44.0.3";
    let ours_err = ipam.err(&ours, "ADD", "ctr-x", args).1;
    let go_err = ipam.err(&go, "ADD", "ctr-y", args).1;
    assert_eq!(ours_err, go_err);
    ipam.ok(&go, "DEL", "ctr-rs");
    ipam.ok(&ours, "DEL", "ctr-go");
    assert_eq!(
        files(&dir),
        ["last_reserved_ip.0", "last_reserved_ip.1", "lock"]
    );
}

#[test]
fn exhaustion_and_errors_match_go() {
    let env = TestEnv::new("hl-errors").unwrap();
    let ctr = env.container("ctr").unwrap();
    let (go, ours) = (go(), ours());
    let data = env.tmp().join("ipam");
    let small = json!({"cniVersion": "0.3.1", "name": "small", "ipam": {
        "type": "host-local", "subnet": "10.45.0.0/30", "dataDir": data.to_string_lossy()}});
    let ipam = Ipam {
        host: &env.host,
        ctr: &ctr,
        conf: small,
    };
    ipam.add(&ours, "only");
    assert_eq!(
        ipam.err(&ours, "ADD", "more", "").1,
        ipam.err(&go, "ADD", "more", "").1
    );
    assert_eq!(
        ipam.err(&ours, "ADD", "more", "IP=10.45.0.1").1,
        "failed to allocate for range 0: requested ip 10.45.0.1 is subnet's gateway"
    );

    for bad in [
        json!({"subnet": "10.0.0.0/31"}),
        json!({"subnet": "10.0.0.5/24"}),
        json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/25"}]]}),
        json!({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "2001:db8::/64"}]]}),
        json!({"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.1"}),
        json!({"type": "host-local"}),
    ] {
        let mut ipam_conf = bad.clone();
        ipam_conf["dataDir"] = json!(data.to_string_lossy());
        let ipam = Ipam {
            host: &env.host,
            ctr: &ctr,
            conf: json!({"cniVersion": "0.3.1", "name": "bad", "ipam": ipam_conf}),
        };
        let (code, msg) = ipam.err(&ours, "ADD", "c", "");
        assert_eq!(msg, ipam.err(&go, "ADD", "c", "").1, "config {bad}");
        assert_eq!(code, 7, "config errors use code 7 (invalid network config)");
    }
}

#[test]
fn usepodcidr_is_rejected_with_a_clear_error() {
    let env = TestEnv::new("hl-podcidr").unwrap();
    let ctr = env.container("ctr").unwrap();
    let ipam = Ipam {
        host: &env.host,
        ctr: &ctr,
        conf: json!({"cniVersion": "0.3.1", "name": "k8s-pod-network",
            "ipam": {"type": "host-local", "subnet": "usePodCidr", "dataDir": env.tmp().to_string_lossy()}}),
    };
    let (code, msg) = ipam.err(&ours(), "ADD", "c", "");
    assert_eq!(code, 7);
    assert!(
        msg.contains("usePodCidr") && msg.contains("calico"),
        "{msg}"
    );
}

#[test]
fn go_and_rust_in_parallel_never_hand_out_the_same_address() {
    let env = TestEnv::new("hl-parallel").unwrap();
    let ctr = env.container("ctr").unwrap();
    let data = env.tmp().join("ipam");
    let ipam = Ipam {
        host: &env.host,
        ctr: &ctr,
        conf: json!({"cniVersion": "0.3.1", "name": "par", "ipam": {
            "type": "host-local", "subnet": "10.46.0.0/27", "dataDir": data.to_string_lossy()}}),
    };
    let (go, ours) = (go(), ours());
    let got: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..24)
            .map(|i| {
                let (ipam, bin) = (&ipam, if i % 2 == 0 { &go } else { &ours });
                s.spawn(move || ipam.add(bin, &format!("c{i}")).remove(0))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let unique: std::collections::HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), 24, "{got:?}");
    assert_eq!(files(&data.join("par")).len(), 24 + 2);
}

#[test]
fn chain_add_check_gc_del_through_the_runner() {
    let env = TestEnv::new("hl-chain").unwrap();
    let ctr = env.container("ctr").unwrap();
    let data = env.tmp().join("ipam");
    // host-local as the only plugin of a list: it reads the `ipam` section of its own config.
    let list = json!({"cniVersion": "1.1.0", "name": "hl-list", "plugins": [
        {"type": "host-local", "capabilities": {"ips": true},
         "ipam": {"type": "host-local", "subnet": "10.47.0.0/24", "dataDir": data.to_string_lossy(),
                  "routes": [{"dst": "0.0.0.0/0", "gw": "10.47.0.1"}]}}
    ]});
    let chain = env
        .chain(&list)
        .unwrap()
        .capability_arg("ips", json!(["10.47.0.77/24"]));
    let a = Attachment::new("ctr-a", &ctr);
    let b = Attachment::new("ctr-b", &ctr);
    let ra = chain.add(&a).unwrap();
    assert_eq!(ra["cniVersion"], "1.1.0");
    assert_eq!(ra["ips"][0]["address"], "10.47.0.77/24");
    assert_eq!(ra["ips"][0]["gateway"], "10.47.0.1");
    assert_eq!(
        ra["routes"][0],
        json!({"dst": "0.0.0.0/0", "gw": "10.47.0.1"})
    );
    let chain = chain.capability_arg("ips", json!([]));
    let rb = chain.add(&b).unwrap();
    assert_eq!(
        rb["ips"][0]["address"], "10.47.0.78/24",
        "round robin after the requested address"
    );
    chain.check(&a).unwrap();
    chain.check(&b).unwrap();
    chain.status().unwrap();

    // GC: b is no longer valid → the runner DELs it; host-local's own GC keeps a only.
    let dir = data.join("hl-list");
    std::fs::write(dir.join("10.47.0.99"), "leaked\r\neth0").unwrap();
    chain.gc(&[("ctr-a", "eth0")]).unwrap();
    assert!(dir.join("10.47.0.77").exists());
    assert!(!dir.join("10.47.0.78").exists());
    assert!(
        !dir.join("10.47.0.99").exists(),
        "GC releases reservations of unknown attachments"
    );
    let err = chain.check(&b).unwrap_err();
    assert_eq!(
        err.msg(),
        "host-local: Failed to find address added by container ctr-b"
    );

    chain.del(&a).unwrap();
    chain.del(&a).unwrap();
    assert!(!dir.join("10.47.0.77").exists());
}

#[test]
fn go_bridge_delegating_to_our_host_local_gives_working_connectivity() {
    let env = TestEnv::new("hl-bridge").unwrap();
    let ctr = env.container("ctr").unwrap();
    let data = env.tmp().join("ipam");
    let list = json!({"cniVersion": "1.0.0", "name": "hl-bridge", "plugins": [{
        "type": "bridge", "bridge": "hlbr0", "isGateway": true,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.48.0.0/24"}]],
                 "routes": [{"dst": "0.0.0.0/0"}], "dataDir": data.to_string_lossy()}
    }]});
    // Our binaries first in CNI_PATH, so Debian's bridge delegates to our host-local.
    let mut dirs = bins::bin_dirs();
    assert!(
        bins::find_in("host-local", &dirs).is_ok(),
        "build the binaries first"
    );
    dirs.push(PathBuf::from(DEBIAN_PLUGIN_DIR));
    let chain = env.chain(&list).unwrap().plugin_dirs(dirs);
    let a = Attachment::new("ctr-br", &ctr);
    let r = chain.add(&a).unwrap();
    assert!(
        r["ips"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["address"] == "10.48.0.2/24"),
        "{r}"
    );
    // Mode 0600 proves the reservation was written by our plugin (Go 1.1.1 writes 0644).
    let mode = std::fs::metadata(data.join("hl-bridge/10.48.0.2"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "bridge must have delegated to our host-local"
    );
    assert!(ctr
        .addrs("eth0")
        .unwrap()
        .contains(&"10.48.0.2/24".parse().unwrap()));
    assert!(ping(&ctr, "10.48.0.1".parse::<IpAddr>().unwrap()).unwrap());
    chain.del(&a).unwrap();
    assert!(!data.join("hl-bridge/10.48.0.2").exists());
}
