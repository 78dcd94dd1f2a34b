//! Shared end-to-end scenario: the real `calicoctl` binary against a datastore selected by
//! environment variables, with the test reading/writing the same datastore through the
//! `ipam` crate to make allocations and to verify what the binary wrote.

#![allow(dead_code)] // each test file uses a different subset

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ipam::model::IpPool;
use ipam::{AutoAssignRequest, Ipam, IpamOptions, Key, ResourceKind, Store};
use serde_json::{json, Value};

/// Output of one calicoctl run.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Exit 0 or panic with both streams.
    pub fn ok(self) -> Out {
        assert_eq!(self.code, 0, "calicoctl failed: {self:#?}");
        self
    }

    /// Exit 1 without a panic message.
    pub fn failed(self) -> Out {
        assert_eq!(self.code, 1, "expected exit 1: {self:#?}");
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
        self
    }
}

/// The calicoctl binary with a fixed environment.
pub struct Ctl {
    pub env: Vec<(String, String)>,
}

pub fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata")
        .join(name)
}

impl Ctl {
    pub fn new(env: &[(&str, &str)]) -> Ctl {
        Ctl {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Out {
        self.run_stdin(args, "")
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Out {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_calicoctl"));
        cmd.args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn calicoctl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        let o = child.wait_with_output().expect("wait calicoctl");
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

fn stored_pool(store: &dyn Store, name: &str) -> (Value, String) {
    let kv = store
        .get(&Key::resource(ResourceKind::IpPool, name))
        .expect("pool stored");
    (
        serde_json::from_str(&kv.value).expect("pool JSON"),
        kv.revision.to_string(),
    )
}

/// Key of the WorkloadEndpoint [`assign`] writes for `handle`.
pub fn wep_key(handle: &str) -> Key {
    Key::Resource {
        kind: ResourceKind::WorkloadEndpoint,
        namespace: Some("default".into()),
        name: handle.replace('.', "-"),
    }
}

/// Allocate one address in 10.244.0.0/16 and record the WorkloadEndpoint the calico plugin
/// writes with it.
fn assign(store: &dyn Store, handle: &str, host: &str) -> IpAddr {
    let ip = assign_in(store, handle, host, "10.244.0.0/16");
    write_wep(store, handle, host, ip);
    ip
}

pub fn write_wep(store: &dyn Store, handle: &str, host: &str, ip: IpAddr) {
    let name = handle.replace('.', "-");
    let v = json!({"kind": "WorkloadEndpoint", "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"orchestrator": "k8s", "node": host, "pod": name, "endpoint": "eth0",
                 "ipNetworks": [format!("{ip}/32")], "profiles": ["kns.default"],
                 "interfaceName": format!("cali{}", &name[name.len().saturating_sub(6)..])}});
    store
        .create(&wep_key(handle), &v.to_string())
        .expect("write WorkloadEndpoint");
}

/// Allocate one address of `pool` for `host` under `handle` (no endpoint).
pub fn assign_in(store: &dyn Store, handle: &str, host: &str, pool: &str) -> IpAddr {
    try_assign_in(store, handle, host, pool).expect("auto_assign")
}

pub fn try_assign_in(
    store: &dyn Store,
    handle: &str,
    host: &str,
    pool: &str,
) -> Result<IpAddr, ipam::IpamError> {
    let ipam = Ipam::with_options(
        store,
        IpamOptions {
            require_node: false,
            ..Default::default()
        },
    );
    let r = ipam.auto_assign(&AutoAssignRequest {
        num_v4: 1,
        handle_id: handle.into(),
        hostname: host.into(),
        ipv4_pools: vec![pool.parse().unwrap()],
        attrs: BTreeMap::from([("node".to_string(), host.to_string())]),
        ..Default::default()
    })?;
    Ok(r.ipv4[0].ip())
}

/// The whole admin workflow; `store` is the same datastore `ctl` is configured for.
/// `init` is what the scenario's `datastore init` adds to pick 192.168.0.0/16 and `ipip` the
/// encapsulation that store's default pool gets (calico-node's `Always` on etcd; none on the
/// local store, whose pools are the plugin's own).
pub fn scenario(ctl: &Ctl, store: &dyn Store, init: &[&str], ipip: &str) {
    // Empty datastore: nothing to complain about.
    ctl.run(&["ipam", "check"]).ok();

    // init: calico-node's defaults, written where Calico keeps them.
    let init_cmd: Vec<&str> = ["datastore", "init"].iter().chain(init).copied().collect();
    let o = ctl.run(&init_cmd).ok();
    assert!(
        o.stdout
            .contains("Created IPPool default-ipv4-ippool (192.168.0.0/16)"),
        "{o:#?}"
    );
    let (pool, rev) = stored_pool(store, "default-ipv4-ippool");
    assert_eq!(pool["spec"]["cidr"], "192.168.0.0/16");
    assert_eq!(pool["spec"]["blockSize"], 26);
    assert_eq!(pool["spec"]["ipipMode"], ipip);
    assert_eq!(pool["spec"]["vxlanMode"], "Never");
    assert_eq!(pool["spec"]["natOutgoing"], true);
    assert_eq!(pool["spec"]["nodeSelector"], "all()");
    let ci = store
        .get(&Key::resource(ResourceKind::ClusterInformation, "default"))
        .expect("ClusterInformation");
    let ci: Value = serde_json::from_str(&ci.value).unwrap();
    assert_eq!(ci["spec"]["datastoreReady"], true);
    assert!(ci["spec"]["clusterGUID"]
        .as_str()
        .is_some_and(|g| g.len() == 32));
    assert!(store.get(&Key::IpamConfig).is_ok(), "IPAM config written");
    // Idempotent: the pool is not rewritten.
    ctl.run(&init_cmd).ok();
    assert_eq!(stored_pool(store, "default-ipv4-ippool").1, rev);

    // get: calicoctl's table.
    assert_eq!(
        ctl.run(&["get", "ippools"]).ok().stdout,
        "NAME                  CIDR             SELECTOR   \n\
         default-ipv4-ippool   192.168.0.0/16   all()      \n"
    );

    // apply a pool from YAML, then read it back as JSON: what the store holds, plus
    // resourceVersion = the store's revision.
    let f = testdata("ippool.yaml");
    let o = ctl.run(&["apply", "-f", f.to_str().unwrap()]).ok();
    assert_eq!(o.stdout, "Successfully applied 1 'IPPool' resource(s)\n");
    let (mut stored, rev) = stored_pool(store, "pods-ipv4-ippool");
    let got: Value = serde_json::from_str(
        &ctl.run(&["get", "ippool", "pods-ipv4-ippool", "-o", "json"])
            .ok()
            .stdout,
    )
    .expect("get -o json prints JSON");
    stored["metadata"]["resourceVersion"] = json!(rev);
    assert_eq!(got, stored);
    assert_eq!(
        got["spec"],
        json!({"cidr":"10.244.0.0/16","blockSize":24,"ipipMode":"Always","vxlanMode":"Never",
               "natOutgoing":true,"nodeSelector":"all()","allowedUses":["Workload","Tunnel"],
               "assignmentMode":"Automatic"})
    );
    // The list form, in YAML, carries the same objects.
    let list: Value =
        serde_norway::from_str(&ctl.run(&["get", "ippools", "-o", "yaml"]).ok().stdout).unwrap();
    assert_eq!(list["kind"], "IPPoolList");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert_eq!(list["items"][1], got);
    // Apply again from stdin with a change: same uid, new revision.
    let yaml = std::fs::read_to_string(&f)
        .unwrap()
        .replace("natOutgoing: true", "natOutgoing: false");
    ctl.run_stdin(&["apply", "-f", "-"], &yaml).ok();
    let (after, rev2) = stored_pool(store, "pods-ipv4-ippool");
    assert_eq!(
        after["spec"].get("natOutgoing"),
        None,
        "false is omitted like Go's omitempty"
    );
    assert_eq!(after["metadata"]["uid"], got["metadata"]["uid"]);
    assert_ne!(rev2, rev);

    // Bad input: non-zero exit, a message naming the field, nothing written.
    let o = ctl
        .run_stdin(
            &["create", "-f", "-"],
            &yaml.replace("blockSize: 24", "blockSize: 33"),
        )
        .failed();
    assert!(o.stderr.contains("spec.blockSize"), "{o:#?}");
    let o = ctl
        .run_stdin(&["create", "-f", "-"], &yaml.replace("cidr:", "cdir:"))
        .failed();
    assert!(o.stderr.contains("spec.cdir"), "{o:#?}");
    let o = ctl.run(&["create", "-f", f.to_str().unwrap()]).failed();
    assert!(
        o.stderr
            .contains("resource already exists: IPPool(pods-ipv4-ippool)"),
        "{o:#?}"
    );
    let seed = testdata("ippool-default.yaml");
    let o = ctl.run(&["apply", "-f", seed.to_str().unwrap()]).failed();
    assert!(
        o.stderr.contains("spec.cidr") && o.stderr.contains("cannot be modified"),
        "{o:#?}"
    );
    assert_eq!(stored_pool(store, "pods-ipv4-ippool").1, rev2);

    // Allocations made by the IPAM library show up per pool and per block with the node.
    let a1 = assign(store, "net.c1", "node-a");
    let a2 = assign(store, "net.c2", "node-a");
    let a3 = assign(store, "net.c3", "node-a");
    let b1 = assign(store, "net.c4", "node-b");
    assert_eq!(
        [a1, a2, a3, b1]
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        4
    );
    let show = ctl.run(&["ipam", "show", "--show-blocks"]).ok().stdout;
    let row = |needle: &str| {
        show.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no row with {needle} in\n{show}"))
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("10.244.0.0/16"),
        [
            "IP Pool",
            "10.244.0.0/16",
            "65536",
            "4 (0%)",
            "0 (0%)",
            "65532 (100%)"
        ]
    );
    assert_eq!(row("192.168.0.0/16")[3], "0 (0%)");
    let block_a = format!("{}/24", ipnet24(a1));
    assert_eq!(
        row(&block_a),
        [
            "Block",
            block_a.as_str(),
            "256",
            "3 (1%)",
            "0 (0%)",
            "253 (99%)",
            "node-a"
        ]
    );
    let block_b = format!("{}/24", ipnet24(b1));
    assert_eq!(row(&block_b)[6], "node-b");

    // Clean, then a crafted leak: the handle of a2 disappears behind the allocator's back.
    let o = ctl.run(&["ipam", "check"]).ok();
    assert!(
        o.stdout.ends_with("Check complete; found 0 problems.\n"),
        "{o:#?}"
    );
    store.delete(&Key::handle("net.c2"), None).unwrap();
    let o = ctl.run(&["ipam", "check"]).failed();
    assert!(
        o.stdout
            .contains("Found 1 allocations without a live handle."),
        "{o:#?}"
    );
    assert!(
        o.stdout.contains(&format!(
            "{a2} (block {block_a}): handle net.c2 does not exist"
        )),
        "{o:#?}"
    );
    assert!(o.stdout.ends_with("found 1 problems.\n"), "{o:#?}");

    // release fixes it (the pod is gone too); releasing again is an error.
    store.delete(&wep_key("net.c2"), None).unwrap();
    let o = ctl.run(&["ipam", "release", &format!("--ip={a2}")]).ok();
    assert_eq!(o.stdout, format!("Successfully released IP address {a2}\n"));
    ctl.run(&["ipam", "check"]).ok();
    let o = ctl
        .run(&["ipam", "release", "--ip", &a2.to_string()])
        .failed();
    assert!(
        o.stderr
            .contains(&format!("IP address {a2} is not assigned")),
        "{o:#?}"
    );
    assert!(ctl
        .run(&["ipam", "show", "--ip", &a1.to_string()])
        .ok()
        .stdout
        .contains("Handle: net.c1"));

    // Deleting a pool in use: done, with a warning; the addresses stay allocated in now
    // unaffine blocks, which check reports until they are released.
    let o = ctl.run(&["delete", "ippool", "pods-ipv4-ippool"]).ok();
    assert_eq!(o.stdout, "Successfully deleted 1 'IPPool' resource(s)\n");
    assert!(
        o.stderr
            .contains("still had 3 allocated address(es) in 2 block(s)"),
        "{o:#?}"
    );
    ctl.run(&["get", "ippool", "pods-ipv4-ippool"]).failed();
    let o = ctl.run(&["ipam", "check"]).failed();
    assert!(
        o.stdout.contains("Found 2 blocks without affinity."),
        "{o:#?}"
    );
    for (ip, h) in [(a1, "net.c1"), (a3, "net.c3"), (b1, "net.c4")] {
        ctl.run(&["ipam", "release", "--ip", &ip.to_string()]).ok();
        store.delete(&wep_key(h), None).unwrap();
    }
    let o = ctl.run(&["ipam", "check"]).ok();
    assert!(o.stdout.contains("Found 0 IPAM blocks."), "{o:#?}");
}

/// The /24 network of an IPv4 address.
fn ipnet24(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v) => {
            let [a, b, c, _] = v.octets();
            IpAddr::from([a, b, c, 0])
        }
        v6 => v6,
    }
}

/// Parse a pool as stored (for tests that inspect one directly).
pub fn pool(store: &dyn Store, name: &str) -> IpPool {
    IpPool::from_json(&stored_pool(store, name).0.to_string()).unwrap()
}

const RESERVATION: &str = "apiVersion: projectcalico.org/v3
kind: IPReservation
metadata:
  name: keep-out
spec:
  reservedCIDRs:
  - 10.99.0.4/30
  - 10.99.0.9
";

/// What an operator of the CNI layer does beyond pools: reservations, the read-only views,
/// IPAM configuration and the leak clean-up workflow. `weps`: the datastore stores
/// WorkloadEndpoints (etcd, local); on KDD they are pods and leaks are found by handle.
/// `datastore` is a fragment of the datastore's description that errors must name.
pub fn operator_scenario(ctl: &Ctl, store: &dyn Store, weps: bool, datastore: &str) {
    ctl.run(&[
        "datastore",
        "init",
        "--ipv4-pool=10.99.0.0/28",
        "--ipv4-block-size=30",
    ])
    .ok();

    // Reservations: apply from stdin, stored in Calico's v3 shape, shown with calicoctl's
    // columns.
    let o = ctl.run_stdin(&["apply", "-f", "-"], RESERVATION).ok();
    assert_eq!(
        o.stdout,
        "Successfully applied 1 'IPReservation' resource(s)\n"
    );
    let kv = store
        .get(&Key::resource(ResourceKind::IpReservation, "keep-out"))
        .expect("reservation stored");
    let v: Value = serde_json::from_str(&kv.value).unwrap();
    assert_eq!(v["kind"], "IPReservation");
    assert_eq!(
        v["spec"]["reservedCIDRs"],
        json!(["10.99.0.4/30", "10.99.0.9"])
    );
    assert_eq!(
        ctl.run(&["get", "ipreservations"]).ok().stdout,
        "NAME       \nkeep-out   \n"
    );
    let wide = ctl.run(&["get", "reservations", "-o", "wide"]).ok().stdout;
    assert!(wide.contains("keep-out   10.99.0.4/30,10.99.0.9"), "{wide}");
    let y: Value = serde_norway::from_str(
        &ctl.run(&["get", "ipreservation", "keep-out", "-o", "yaml"])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        y["metadata"]["resourceVersion"],
        json!(kv.revision.to_string())
    );
    let o = ctl.run_stdin(&["create", "-f", "-"], RESERVATION).failed();
    assert!(
        o.stderr
            .contains("resource already exists: IPReservation(keep-out)")
            && o.stderr.contains(datastore),
        "{o:#?}"
    );
    let o = ctl
        .run_stdin(
            &["apply", "-f", "-"],
            &RESERVATION.replace("10.99.0.9", "10.99.0.300"),
        )
        .failed();
    assert!(o.stderr.contains("spec.reservedCIDRs[1]"), "{o:#?}");

    // The allocator honours it: 11 of the 16 addresses are assignable, none reserved, and
    // the wholly reserved block is never created.
    let mut got = BTreeSet::new();
    for i in 0..11 {
        let h = format!("op.p{i}");
        let ip = assign_in(store, &h, "node-a", "10.99.0.0/28");
        if weps {
            write_wep(store, &h, "node-a", ip);
        }
        got.insert(ip);
    }
    for r in [
        "10.99.0.4",
        "10.99.0.5",
        "10.99.0.6",
        "10.99.0.7",
        "10.99.0.9",
    ] {
        assert!(
            !got.contains(&r.parse::<IpAddr>().unwrap()),
            "{r} handed out"
        );
    }
    assert!(try_assign_in(store, "op.extra", "node-a", "10.99.0.0/28").is_err());
    let show = ctl.run(&["ipam", "show"]).ok().stdout;
    assert!(
        show.contains(
            "| IP Pool  | 10.99.0.0/28 |        16 | 11 (69%)   | 5 (31%)      | 0 (0%)   |"
        ),
        "{show}"
    );

    // Read-only views.
    let aff = ctl
        .run(&["get", "blockaffinities", "-o", "wide"])
        .ok()
        .stdout;
    assert_eq!(aff.lines().count(), 4, "{aff}");
    assert!(
        aff.contains("node-a-10-99-0-8-30    node-a   10.99.0.8/30    confirmed   host   false"),
        "{aff}"
    );
    assert!(!aff.contains("10.99.0.4/30"), "{aff}");
    let nodes = ctl.run(&["get", "nodes"]).ok().stdout;
    assert!(nodes.starts_with("NAME"), "{nodes}");
    if weps {
        let w = ctl.run(&["get", "weps", "--all-namespaces"]).ok().stdout;
        assert_eq!(
            w.split_whitespace().take(6).collect::<Vec<_>>(),
            [
                "NAMESPACE",
                "WORKLOAD",
                "NODE",
                "NETWORKS",
                "INTERFACE",
                "default"
            ],
            "{w}"
        );
        assert_eq!(w.lines().count(), 12, "{w}");
        let one: Value = serde_json::from_str(
            &ctl.run(&["get", "wep", "op-p0", "-n", "default", "-o", "json"])
                .ok()
                .stdout,
        )
        .unwrap();
        assert_eq!(one["spec"]["node"], "node-a");
    } else {
        let o = ctl.run(&["get", "workloadendpoints"]).failed();
        assert!(
            o.stderr.contains("workloadendpoints") && o.stderr.contains(datastore),
            "{o:#?}"
        );
    }

    // IPAM configuration.
    let o = ctl
        .run(&["ipam", "configure", "--strictaffinity=true"])
        .ok();
    assert_eq!(o.stdout, "Successfully set StrictAffinity to: true\n");
    assert_eq!(
        ctl.run(&["get", "ipamconfigs"]).ok().stdout,
        "NAME      STRICTAFFINITY   AUTOALLOCATEBLOCKS   \ndefault   true             true                 \n"
    );
    ctl.run(&["ipam", "configure", "--strictaffinity", "false"])
        .ok();
    let cfg: Value = serde_json::from_str(&store.get(&Key::IpamConfig).unwrap().value).unwrap();
    assert_eq!(cfg.get("strict_affinity"), None, "false is omitted");

    // Leak clean-up: a pod is gone (endpoint deleted, or on KDD its handle) but its address
    // was never released.
    let leaked = *got.iter().next().unwrap();
    let leaked_handle = Ipam::new(store)
        .get_assignment(leaked)
        .unwrap()
        .unwrap()
        .handle_id
        .unwrap();
    let leaked_handle = leaked_handle.as_str();
    if weps {
        store.delete(&wep_key(leaked_handle), None).unwrap();
    } else {
        store.delete(&Key::handle(leaked_handle), None).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let report = report.to_str().unwrap();
    let o = ctl
        .run(&["ipam", "check", "--show-problem-ips", "-o", report])
        .failed();
    assert!(
        o.stdout.contains(&format!("  {leaked} leaked; attrs")),
        "{o:#?}"
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    assert_eq!(r["allocations"][leaked.to_string()][0]["inUse"], false);
    let other = got.iter().nth(1).unwrap().to_string();
    assert_eq!(r["allocations"][&other][0]["inUse"], true);
    let o = ctl
        .run(&["ipam", "release", "--from-report", report])
        .failed();
    assert!(o.stderr.contains("data store is not locked"), "{o:#?}");
    let o = ctl
        .run(&["ipam", "release", "--from-report", report, "--force"])
        .ok();
    assert!(o.stdout.contains("Released 1 IPs successfully"), "{o:#?}");
    assert!(Ipam::new(store).get_assignment(leaked).unwrap().is_none());
    let o = ctl.run(&["ipam", "check"]).ok();
    assert!(o.stdout.ends_with("found 0 problems.\n"), "{o:#?}");

    // Deleting the reservation frees its addresses for assignment.
    let o = ctl.run(&["delete", "ipreservation", "keep-out"]).ok();
    assert_eq!(
        o.stdout,
        "Successfully deleted 1 'IPReservation' resource(s)\n"
    );
    let o = ctl.run(&["delete", "ipreservation", "keep-out"]).failed();
    assert!(
        o.stderr
            .contains("resource does not exist: IPReservation(keep-out)")
            && o.stderr.contains(datastore),
        "{o:#?}"
    );
    ctl.run(&["delete", "reservations", "keep-out", "--skip-not-exists"])
        .ok();
    let o = ctl
        .run_stdin(&["delete", "--skip-not-exists", "-f", "-"], RESERVATION)
        .ok();
    assert_eq!(
        o.stdout,
        "Successfully deleted 1 'IPReservation' resource(s)\n"
    );
    // The released address and 10.99.0.9 (its block exists) are assignable again.
    let mut more = BTreeSet::new();
    for i in 0..2 {
        more.insert(assign_in(
            store,
            &format!("op.q{i}"),
            "node-a",
            "10.99.0.0/28",
        ));
    }
    assert!(
        more.contains(&"10.99.0.9".parse::<IpAddr>().unwrap()),
        "{more:?}"
    );

    // Generated help and completions.
    let h = ctl.run(&["--help"]).ok().stdout;
    assert!(h.contains("ipam") && h.contains("DATASTORE_TYPE"), "{h}");
    let c = ctl.run(&["completion", "bash"]).ok().stdout;
    assert!(
        c.contains("calicoctl") && c.contains("--strictaffinity"),
        "{c}"
    );
}
