//! End-to-end tests of the `bandwidth` plugin chained after `calico` (host-local IPAM) in private
//! namespaces: tc/ifb state read back with `tc -j`/`ip -j`, real TCP transfers measured against
//! the configured rates, validation errors from the binary, and CHECK/DEL interoperability with
//! Debian's Go `bandwidth` (/usr/lib/cni). Needs the built binaries: `cargo build --bins` first.

use netns_tests::{bins, exec_plugin, veth_pair, Attachment, ExecOutput, Netns, TestEnv};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const NETWORK: &str = "k8s-pod-network";
/// With NETWORK this id gives the ifb `bwpce0bd88d2c9c` (upstream's naming, see the reference).
const CTR_ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const IFB: &str = "bwpce0bd88d2c9c";
const HOST_IP: &str = "192.0.2.1";
const MTU: u64 = 1440;
const GO_BANDWIDTH: &str = "/usr/lib/cni/bandwidth";

/// calico (host-local on a concrete subnet) + bandwidth, state under `dir`.
fn conflist(dir: &Path, bandwidth: Value) -> Value {
    let mut bw = json!({"type": "bandwidth", "capabilities": {"bandwidth": true}});
    if let (Some(o), Some(extra)) = (bw.as_object_mut(), bandwidth.as_object()) {
        o.extend(extra.clone());
    }
    json!({
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "plugins": [{
            "type": "calico",
            "datastore_type": "local",
            "nodename": "node-1",
            "mtu": MTU,
            "log_file_path": dir.join("cni.log"),
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.7.0/24"}]],
                     "dataDir": dir.join("ipam")}
        }, bw]
    })
}

fn env(name: &str) -> TestEnv {
    let env = TestEnv::new(name).unwrap();
    env.host.add_addr("lo", &format!("{HOST_IP}/32")).unwrap();
    env
}

fn pod_ip(result: &Value) -> IpAddr {
    let a = result["ips"][0]["address"].as_str().unwrap();
    a.split('/').next().unwrap().parse().unwrap()
}

fn host_veth(result: &Value) -> String {
    let name = result["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(name.starts_with("cali"), "{result}");
    name
}

fn qdisc<'a>(qdiscs: &'a [Value], kind: &str) -> Option<&'a Value> {
    qdiscs.iter().find(|q| q["kind"] == kind)
}

fn bwp_links(host: &Netns) -> Vec<String> {
    host.links()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .filter(|n| n.starts_with("bwp"))
        .map(str::to_string)
        .collect()
}

/// TCP goodput from `from` to a listener in `to`, measured at the receiver from the first to
/// the last byte (so connection setup and the sender's socket buffers do not count), converted
/// to the L2 rate tbf shapes: each MSS of payload costs 66 more bytes (Ethernet 14 + IPv4 20 +
/// TCP with timestamps 32).
fn wire_rate(from: &Netns, to: &Netns, dst: IpAddr, bytes: usize) -> f64 {
    let listener = to.run(|| TcpListener::bind((dst, 0))).unwrap().unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let (mut first, mut total, mut t0, mut t1) = (0usize, 0usize, None, Instant::now());
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            if t0.is_none() {
                t0 = Some(Instant::now());
                first = n;
            }
            total += n;
            t1 = Instant::now();
        }
        (total, total - first, t1 - t0.unwrap())
    });
    let mut s = from
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(5)))
        .unwrap()
        .unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&vec![0x5a; bytes]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let (total, measured, elapsed) = receiver.join().unwrap();
    assert_eq!(total, bytes);
    let mss = (MTU - 52) as f64;
    measured as f64 * 8.0 / elapsed.as_secs_f64() * (mss + 66.0) / mss
}

/// Asserts a transfer runs at `rate` ±15 %, measuring a second time before failing (the box is
/// shared; one slow sample should not fail the suite, two should).
fn assert_rate(what: &str, rate: f64, mut measure: impl FnMut() -> f64) {
    let mut samples = Vec::new();
    for _ in 0..2 {
        let got = measure();
        samples.push(got);
        if (got - rate).abs() <= 0.15 * rate {
            eprintln!(
                "{what}: {:.2} Mbit/s (configured {:.2})",
                got / 1e6,
                rate / 1e6
            );
            return;
        }
    }
    panic!("{what}: measured {samples:?} bit/s, configured {rate} ±15 %");
}

#[test]
fn shaped_pod_state_rates_check_and_del() {
    let env = env("bw-shaped");
    let (in_rate, out_rate) = (10_000_000u64, 16_000_000u64);
    let chain = env
        .chain(&conflist(env.tmp(), json!({})))
        .unwrap()
        .capability_arg(
            "bandwidth",
            json!({"ingressRate": in_rate, "ingressBurst": 200_000,
                   "egressRate": out_rate, "egressBurst": 200_000}),
        );
    let pod = env.container("bw-pod").unwrap();
    let att = Attachment::new(CTR_ID, &pod);
    let result = chain.add(&att).unwrap();

    // The result echoes calico's and appends the ifb (host side, no sandbox, its MAC).
    let veth = host_veth(&result);
    let ifaces = result["interfaces"].as_array().unwrap();
    assert_eq!(ifaces.len(), 3, "{result}");
    let ifb = &ifaces[2];
    assert_eq!(ifb["name"], IFB);
    assert!(ifb.get("sandbox").is_none(), "{result}");
    let ifb_link = env.host.ip_json(&["-d", "link", "show", IFB]).unwrap()[0].clone();
    assert_eq!(ifb["mac"], ifb_link["address"]);
    assert_eq!(ifb_link["linkinfo"]["info_kind"], "ifb");
    assert_eq!(ifb_link["mtu"], MTU);
    assert!(ifb_link["flags"].as_array().unwrap().contains(&json!("UP")));
    assert!(ifb_link["txqlen"].as_u64().unwrap_or(0) == 0, "{ifb_link}");

    // Host veth: root tbf 1: at 10 Mbit/s (1.25 MB/s) with a 25,000-byte bucket, ingress ffff:.
    let q = env.host.qdiscs(&veth).unwrap();
    let tbf = qdisc(&q, "tbf").unwrap_or_else(|| panic!("no tbf on {veth}: {q:?}"));
    assert_eq!(tbf["handle"], "1:");
    assert_eq!(tbf["root"], true);
    assert_eq!(tbf["options"]["rate"], in_rate / 8);
    assert_eq!(tbf["options"]["burst"], 25_000, "{tbf}");
    assert_eq!(tbf["options"]["lat"], 25000, "limit = rate × 25 ms + burst");
    let ingress = qdisc(&q, "ingress").unwrap_or_else(|| panic!("no ingress qdisc: {q:?}"));
    assert_eq!(ingress["handle"], "ffff:");
    // ifb: root tbf at 16 Mbit/s.
    let q = env.host.qdiscs(IFB).unwrap();
    let tbf = qdisc(&q, "tbf").unwrap();
    assert_eq!(
        (tbf["handle"].as_str(), tbf["root"].as_bool()),
        (Some("1:"), Some(true))
    );
    assert_eq!(tbf["options"]["rate"], out_rate / 8);
    // The match-all redirect on the host veth's ingress.
    let filters = env
        .host
        .tc_json(&["filter", "show", "dev", &veth, "ingress"])
        .unwrap();
    let key = filters
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["options"]["actions"].is_array())
        .unwrap_or_else(|| panic!("no filter with actions: {filters}"));
    assert_eq!(key["kind"], "u32");
    assert_eq!(key["protocol"], "all");
    assert_eq!(key["pref"], 1);
    assert_eq!(key["options"]["flowid"], "1:1");
    let action = &key["options"]["actions"][0];
    assert_eq!(action["kind"], "mirred");
    assert_eq!(action["mirred_action"], "redirect");
    assert_eq!(action["direction"], "egress");
    assert_eq!(action["to_dev"], IFB);

    chain.check(&att).unwrap();

    // Real traffic: into the pod is shaped by the veth's tbf, out of it by the ifb's.
    let ip = pod_ip(&result);
    let host_ip: IpAddr = HOST_IP.parse().unwrap();
    assert_rate("host -> pod (ingress)", in_rate as f64, || {
        wire_rate(&env.host, &pod, ip, 3_000_000)
    });
    assert_rate("pod -> host (egress)", out_rate as f64, || {
        wire_rate(&pod, &env.host, host_ip, 4_000_000)
    });

    // CHECK notices a qdisc that no longer matches the config.
    env.host
        .exec(
            "tc",
            &[
                "qdisc", "change", "dev", IFB, "root", "handle", "1:", "tbf", "rate", "20mbit",
                "burst", "25000", "latency", "25ms",
            ],
        )
        .unwrap();
    let e = chain.check(&att).unwrap_err();
    assert!(e.msg().contains("Rate doesn't match"), "{e}");

    // DEL: ifb gone (bandwidth), veth and its qdiscs gone (calico); twice and without netns.
    chain.del(&att).unwrap();
    assert!(bwp_links(&env.host).is_empty());
    assert!(env.host.link(&veth).unwrap().is_none());
    chain.del(&att).unwrap();
    chain.del(&Attachment::without_netns(CTR_ID)).unwrap();
}

#[test]
fn unshaped_pod_is_not_limited() {
    let env = env("bw-unshaped");
    // The plugin is in the chain, but the runtime passes no bandwidth capability.
    let chain = env.chain(&conflist(env.tmp(), json!({}))).unwrap();
    let pod = env.container("bw-free").unwrap();
    let att = Attachment::new("free-pod", &pod);
    let result = chain.add(&att).unwrap();
    let veth = host_veth(&result);
    assert_eq!(
        result["interfaces"].as_array().unwrap().len(),
        2,
        "{result}"
    );
    let q = env.host.qdiscs(&veth).unwrap();
    assert!(
        qdisc(&q, "tbf").is_none() && qdisc(&q, "ingress").is_none(),
        "{q:?}"
    );
    assert!(bwp_links(&env.host).is_empty());
    // Far above the 10–16 Mbit/s the shaped test configures, even on a loaded machine.
    let got = wire_rate(&env.host, &pod, pod_ip(&result), 8_000_000);
    assert!(got > 100e6, "unshaped transfer only reached {got} bit/s");
    chain.del(&att).unwrap();
}

#[test]
fn containerd_style_capability_args() {
    let env = env("bw-containerd");
    // containerd sends Go field names and 2^32-1 bits of burst when the pod sets only a rate.
    let chain = env
        .chain(&conflist(env.tmp(), json!({})))
        .unwrap()
        .capability_arg(
            "bandwidth",
            json!({"IngressRate": 8_000_000, "IngressBurst": 4_294_967_295u64,
                   "EgressRate": 20_000_000, "EgressBurst": 4_294_967_295u64}),
        );
    let pod = env.container("bw-ctrd").unwrap();
    let att = Attachment::new(CTR_ID, &pod);
    let result = chain.add(&att).unwrap();
    let veth = host_veth(&result);
    let q = env.host.qdiscs(&veth).unwrap();
    let tbf = qdisc(&q, "tbf").unwrap();
    assert_eq!(tbf["options"]["rate"], 1_000_000);
    // 536,870,911 B at 1 MB/s would take 537 s; tbf's 32-bit buffer holds at most 2^32 ticks of
    // 64 ns (274.88 s), so the bucket is clamped to 274,877,906 B. Upstream wraps it to
    // 261,993,004 B instead.
    assert_eq!(tbf["options"]["burst"], 274_877_906, "{tbf}");
    // At 20 Mbit/s (2.5 MB/s) the same burst fits (buffer 3,355,443,187 ticks, as upstream);
    // tc converts those ticks back to 536,870,907 B.
    let q = env.host.qdiscs(IFB).unwrap();
    let tbf = qdisc(&q, "tbf").unwrap();
    assert_eq!(tbf["options"]["rate"], 2_500_000);
    assert_eq!(tbf["options"]["burst"], 536_870_907, "{tbf}");
    chain.check(&att).unwrap();
    chain.del(&att).unwrap();
    assert!(bwp_links(&env.host).is_empty());
}

/// A host veth `vethhost0` ⇄ `eth0` in `ctr` and a prevResult listing it like calico does.
fn fixture(env: &TestEnv, ctr: &Netns) -> Value {
    veth_pair(&env.host, "vethhost0", ctr, "eth0").unwrap();
    json!({"cniVersion": "0.4.0",
           "interfaces": [{"name": "vethhost0"}, {"name": "eth0", "sandbox": ctr.path()}],
           "ips": [{"version": "4", "address": "10.244.9.2/32", "interface": 1}], "dns": {}})
}

fn run(
    env: &TestEnv,
    bin: &Path,
    cmd: &str,
    netns: &str,
    ifname: &str,
    conf: &Value,
) -> ExecOutput {
    let vars = [
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", CTR_ID),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", ifname),
        ("CNI_PATH", "/nonexistent"),
    ];
    exec_plugin(&env.host, bin, &vars, conf.to_string().as_bytes()).unwrap()
}

fn bw_conf(fields: Value, prev: Option<&Value>) -> Value {
    let mut c = json!({"cniVersion": "0.4.0", "name": NETWORK, "type": "bandwidth"});
    let o = c.as_object_mut().unwrap();
    o.extend(fields.as_object().unwrap().clone());
    if let Some(p) = prev {
        o.insert("prevResult".into(), p.clone());
    }
    c
}

fn error_of(out: &ExecOutput) -> (u64, String) {
    assert!(!out.success(), "expected failure, got {}", out.stdout_str());
    let v = out.stdout_json().unwrap();
    (
        v["code"].as_u64().unwrap(),
        v["msg"].as_str().unwrap().to_string(),
    )
}

#[test]
fn validation_errors_have_clear_codes() {
    let env = env("bw-invalid");
    let ctr = env.container("bw-inv").unwrap();
    let prev = fixture(&env, &ctr);
    let ns = ctr.path().to_string_lossy().into_owned();
    let ours = bins::binary("bandwidth").unwrap();
    let ok = json!({"ingressRate": 8_000_000, "ingressBurst": 80_000});
    let fail = |what: &str, conf: Value, netns: &str, ifname: &str, code: u64, msg: &str| {
        let (got_code, got_msg) = error_of(&run(&env, &ours, "ADD", netns, ifname, &conf));
        assert_eq!(got_code, code, "{what}: {got_msg}");
        assert!(got_msg.contains(msg), "{what}: {got_msg:?} lacks {msg:?}");
    };
    let with_prev = |fields: Value| bw_conf(fields, Some(&prev));
    let msg = "ingress: if rate is set, burst must also be set";
    fail(
        "rate without burst",
        with_prev(json!({"ingressRate": 1000})),
        &ns,
        "eth0",
        7,
        msg,
    );
    let msg = "egress: if burst is set, rate must also be set";
    let conf = with_prev(json!({"egressRate": 0, "egressBurst": 1000}));
    fail("burst with zero rate", conf, &ns, "eth0", 7, msg);
    let conf = with_prev(json!({"egressRate": 1000, "egressBurst": 34_359_738_360u64}));
    fail(
        "burst over 4GB",
        conf,
        &ns,
        "eth0",
        7,
        "egress: burst cannot be more than 4GB",
    );
    let conf = with_prev(json!({"ingressRate": 18_446_744_073_709_551_616f64, "ingressBurst": 8}));
    fail("rate beyond u64", conf, &ns, "eth0", 7, "ingressRate");
    let conf = with_prev(json!({"ingressRate": 7, "ingressBurst": 800}));
    fail("rate below one byte", conf, &ns, "eth0", 7, "below 8 bit/s");
    let msg = "must be called as chained plugin";
    fail(
        "no prevResult",
        bw_conf(ok.clone(), None),
        &ns,
        "eth0",
        7,
        msg,
    );
    let ip = json!([{"version": "4", "address": "10.244.9.2/32"}]);
    let other =
        json!({"cniVersion": "0.4.0", "interfaces": [{"name": "cali0000000000a"}], "ips": ip});
    let conf = bw_conf(ok.clone(), Some(&other));
    fail(
        "host veth not in prevResult",
        conf,
        &ns,
        "eth0",
        7,
        "vethhost0",
    );
    // Calico 3.2.x put a sandbox on the host veth (plugins#242).
    let sandboxed = json!({"cniVersion": "0.4.0",
        "interfaces": [{"name": "vethhost0", "sandbox": "eth0"}], "ips": ip});
    let conf = bw_conf(ok.clone(), Some(&sandboxed));
    fail(
        "host veth listed with a sandbox",
        conf,
        &ns,
        "eth0",
        7,
        "vethhost0",
    );
    let bare = json!({"cniVersion": "0.4.0", "ips": ip});
    let conf = bw_conf(ok.clone(), Some(&bare));
    fail(
        "prevResult without interfaces",
        conf,
        &ns,
        "eth0",
        7,
        "no interfaces provided",
    );
    let msg = "interface \"lo\" was not a veth interface";
    fail(
        "container interface not a veth",
        with_prev(ok.clone()),
        &ns,
        "lo",
        999,
        msg,
    );
    let msg = "\"eth9\" not found";
    fail(
        "container interface missing",
        with_prev(ok.clone()),
        &ns,
        "eth9",
        999,
        msg,
    );
    fail(
        "no netns",
        with_prev(ok.clone()),
        "",
        "eth0",
        4,
        "CNI_NETNS",
    );
    // Nothing was installed by any of them.
    let q = env.host.qdiscs("vethhost0").unwrap();
    assert!(
        qdisc(&q, "tbf").is_none() && qdisc(&q, "ingress").is_none(),
        "{q:?}"
    );
    assert!(bwp_links(&env.host).is_empty());

    // All-zero limits are a pass-through: prevResult comes back unchanged.
    let conf = bw_conf(json!({"ingressRate": 0, "egressRate": 0}), Some(&prev));
    let out = run(&env, &ours, "ADD", &ns, "eth0", &conf);
    assert!(out.success(), "{}", out.stdout_str());
    assert_eq!(out.stdout_json().unwrap(), prev);
    // A repeated ADD fails (create-exclusive, like upstream) and DEL still cleans up.
    let conf = bw_conf(
        json!({"egressRate": 8000, "egressBurst": 80_000}),
        Some(&prev),
    );
    assert!(run(&env, &ours, "ADD", &ns, "eth0", &conf).success());
    let (code, msg) = error_of(&run(&env, &ours, "ADD", &ns, "eth0", &conf));
    assert!(code == 999 && msg.contains("exists"), "{code} {msg}");
    // DEL ignores bad values (the ifb name needs none) and needs no netns.
    let bad = bw_conf(json!({"egressRate": 8000}), None);
    assert!(run(&env, &ours, "DEL", "", "eth0", &bad).success());
    assert!(bwp_links(&env.host).is_empty());
}

#[test]
fn interoperates_with_go_bandwidth() {
    let go = Path::new(GO_BANDWIDTH);
    assert!(
        go.exists(),
        "{GO_BANDWIDTH} missing: apt-get install containernetworking-plugins"
    );
    let env = env("bw-interop");
    let ctr = env.container("bw-go").unwrap();
    let prev = fixture(&env, &ctr);
    let ns = ctr.path().to_string_lossy().into_owned();
    let ours = bins::binary("bandwidth").unwrap();
    // Rates below and above the 32-bit buffer limit of the default burst: CHECK must agree in
    // the range where upstream does not wrap.
    let conf = bw_conf(
        json!({"ingressRate": 8_000_000, "ingressBurst": 80_000,
               "egressRate": 20_000_000, "egressBurst": 4_294_967_295u64}),
        Some(&prev),
    );
    let pairs = [(go, ours.as_path()), (ours.as_path(), go)];
    for (adder, checker) in pairs {
        let out = run(&env, adder, "ADD", &ns, "eth0", &conf);
        assert!(out.success(), "{}: {}", adder.display(), out.stdout_str());
        assert_eq!(out.stdout_json().unwrap()["interfaces"][2]["name"], IFB);
        let out = run(&env, checker, "CHECK", &ns, "eth0", &conf);
        assert!(
            out.success(),
            "{} CHECK after {} ADD: {}",
            checker.display(),
            adder.display(),
            out.stdout_str()
        );
        // The checker's DEL removes the adder's ifb; the veth qdiscs stay until the veth goes.
        let out = run(&env, checker, "DEL", &ns, "eth0", &conf);
        assert!(out.success(), "{}", out.stdout_str());
        assert!(bwp_links(&env.host).is_empty());
        env.host
            .exec("tc", &["qdisc", "del", "dev", "vethhost0", "root"])
            .unwrap();
        env.host
            .exec("tc", &["qdisc", "del", "dev", "vethhost0", "ingress"])
            .unwrap();
    }
}

#[test]
fn failed_add_rolls_back_only_what_it_created() {
    let env = env("bw-rollback");
    let ctr = env.container("bw-rb").unwrap();
    let prev = fixture(&env, &ctr);
    let ns = ctr.path().to_string_lossy().into_owned();
    let ours = bins::binary("bandwidth").unwrap();
    // Another tc user (e.g. an eBPF dataplane) already owns the host veth's ingress hook.
    env.host
        .exec("tc", &["qdisc", "add", "dev", "vethhost0", "ingress"])
        .unwrap();
    let conf = bw_conf(
        json!({"ingressRate": 8_000_000, "ingressBurst": 80_000,
               "egressRate": 8_000_000, "egressBurst": 80_000}),
        Some(&prev),
    );
    let (code, msg) = error_of(&run(&env, &ours, "ADD", &ns, "eth0", &conf));
    assert_eq!(code, 999, "{msg}");
    assert!(msg.contains("create ingress qdisc on vethhost0"), "{msg}");
    // Our root tbf and ifb are gone again; the foreign ingress qdisc is untouched.
    let q = env.host.qdiscs("vethhost0").unwrap();
    assert!(qdisc(&q, "tbf").is_none(), "{q:?}");
    assert!(qdisc(&q, "ingress").is_some(), "{q:?}");
    assert!(bwp_links(&env.host).is_empty());
}
