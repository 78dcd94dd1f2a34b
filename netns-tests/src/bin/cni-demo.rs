//! The demo (run by `netns-tests/demo.sh`, README command 1): Calico's real conflist chain
//! (calico + calico-ipam on the embedded local store, portmap, bandwidth) run through the
//! harness's libcni-like chain runner for two pods, in private namespaces, printing what each
//! step did; then DEL and proof that nothing is left. Exits non-zero when anything is wrong.
//!
//! Usage: `cni-demo [--ipam calico-ipam|host-local|auto] [--conflist-dir DIR]`; plugins are
//! found via `CNI_BIN_DIR` (demo.sh sets it). Everything lives in namespaces held by this
//! process and in one temp dir, so nothing outlives it, even on a crash.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use netns_tests::node::{self, CLIENT_IP, HOST_IP};
use netns_tests::{bins, ipam_state, traffic, Attachment, Chain, Netns, TestEnv};
use serde_json::{json, Value};

const HOST_PORT: u16 = 8080;
const INGRESS_RATE: u64 = 8_000_000;
const EGRESS_RATE: u64 = 4_000_000;
/// Body served by pod-a for the shaping measurement (~1 s at the egress rate).
const BULK_BYTES: usize = 512 * 1024;

type DemoResult<T> = Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

#[derive(Clone, Copy, PartialEq)]
enum Ipam {
    CalicoIpam,
    HostLocal,
}

struct Options {
    ipam: Option<Ipam>,
    conflist_dir: PathBuf,
}

fn parse_args() -> DemoResult<Options> {
    let mut opts = Options {
        ipam: None,
        conflist_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/demo"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ipam" => {
                opts.ipam = match args.next().as_deref() {
                    Some("calico-ipam") => Some(Ipam::CalicoIpam),
                    Some("host-local") => Some(Ipam::HostLocal),
                    Some("auto") => None,
                    other => {
                        return Err(format!(
                            "--ipam: expected calico-ipam, host-local or auto, got {other:?}"
                        ))
                    }
                }
            }
            "--conflist-dir" => {
                opts.conflist_dir = args
                    .next()
                    .map(PathBuf::from)
                    .ok_or("--conflist-dir needs a value")?;
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (see the source's doc comment)"
                ))
            }
        }
    }
    Ok(opts)
}

// ---------- printing ----------

/// ANSI styling only on a terminal (logs and the demo test get plain text).
fn styled(code: &str, text: &str) -> String {
    if std::io::stdout().is_terminal() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn section(title: &str) {
    println!("\n{}", styled("1", &format!("== {title}")));
}

fn note(text: &str) {
    println!("   {text}");
}

fn indent(text: &str) {
    for line in text.trim_end().lines() {
        println!("     {line}");
    }
}

/// Runs a tool in `ns`, printing the command line (with the namespace) and its output.
fn show(ns: &Netns, program: &str, args: &[&str]) -> DemoResult<String> {
    let shown: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    println!("   [{}] $ {program} {}", ns.name(), shown.join(" "));
    let out = ns.output(program, args).map_err(err)?;
    let text = format!("{}{}", out.stdout_str(), out.stderr_str());
    indent(if text.trim().is_empty() {
        "(no output)"
    } else {
        &text
    });
    if out.success() {
        Ok(out.stdout_str())
    } else {
        Err(format!(
            "`{program} {}` in {} failed ({})",
            args.join(" "),
            ns.name(),
            out.status
        ))
    }
}

/// An argument as a shell user would type it (quoted when it has spaces or escapes).
fn shell_quote(arg: &str) -> String {
    if arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:=%{}@+,".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\n', "\\n").replace('\'', "'\\''"))
    }
}

fn check(ok: bool, what: &str) -> DemoResult<()> {
    if ok {
        println!("   {} {what}", styled("32", "OK"));
        Ok(())
    } else {
        Err(format!("expected: {what}"))
    }
}

// ---------- plugin availability ----------

/// Whether the built plugin `name` answers `VERSION` (the not-yet-written stubs do not).
fn plugin_works(name: &str) -> bool {
    let Ok(bin) = bins::binary(name) else {
        return false;
    };
    std::process::Command::new(bin)
        .env("CNI_COMMAND", "VERSION")
        .stdin(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

fn load_conflist(opts: &Options, ipam: Ipam, data: &Path) -> DemoResult<Value> {
    let file = match ipam {
        Ipam::CalicoIpam => "calico-ipam-local.conflist",
        Ipam::HostLocal => "calico-hostlocal.conflist",
    };
    let path = opts.conflist_dir.join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text.replace("__DATA_DIR__", &data.to_string_lossy()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

// ---------- the demo ----------

struct Pod<'e> {
    ns: Netns,
    att: Attachment,
    chain: Chain<'e>,
    result: Value,
    ip: IpAddr,
    veth: String,
}

fn add_pod<'e>(
    env: &'e TestEnv,
    conf: &Value,
    name: &str,
    caps: Option<Value>,
) -> DemoResult<Pod<'e>> {
    let ns = env.container(name).map_err(err)?;
    let att = Attachment::new(&format!("ctr-{name}"), &ns)
        .arg("IgnoreUnknown", "1")
        .arg("K8S_POD_NAMESPACE", "demo")
        .arg("K8S_POD_NAME", name);
    let mut chain = env.chain(conf).map_err(err)?;
    if let Some(Value::Object(caps)) = caps {
        for (k, v) in caps {
            chain = chain.capability_arg(&k, v);
        }
    }
    let started = Instant::now();
    let outputs = chain
        .add_each(&att)
        .map_err(|e| format!("ADD {name}: {e}"))?;
    note(&format!(
        "ADD {name}: CNI_CONTAINERID={} CNI_IFNAME=eth0 CNI_ARGS=K8S_POD_NAMESPACE=demo;K8S_POD_NAME={name}  ({} ms)",
        att.container_id,
        started.elapsed().as_millis()
    ));
    for (plugin, out) in conf["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .zip(&outputs)
    {
        let ifaces: Vec<&str> = out["interfaces"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["name"].as_str())
            .collect();
        let ips: Vec<&str> = out["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["address"].as_str())
            .collect();
        note(&format!(
            "  {:<10} -> interfaces [{}], ips [{}]",
            plugin["type"].as_str().unwrap_or("?"),
            ifaces.join(", "),
            ips.join(", ")
        ));
    }
    let result = outputs.last().cloned().unwrap_or(Value::Null);
    let ip = node::result_ips(&result)
        .into_iter()
        .find(IpAddr::is_ipv4)
        .ok_or("no IPv4 address in the result")?;
    let veth = node::host_interface(&result).ok_or("no host interface in the result")?;
    Ok(Pod {
        ns,
        att,
        chain,
        result,
        ip,
        veth,
    })
}

fn show_allocations(ipam: Ipam, data: &Path, network: &str) -> DemoResult<usize> {
    match ipam {
        Ipam::CalicoIpam => {
            let db = data.join("calico.db");
            note(&format!("calico-ipam local store {}:", db.display()));
            let blocks = ipam_state::calico_local_blocks(&db).map_err(err)?;
            for (block, used) in &blocks {
                indent(&format!("block {block}: {used} address(es) in use"));
            }
            let handles = ipam_state::calico_local_handles(&db).map_err(err)?;
            for h in &handles {
                indent(&format!("handle {h}"));
            }
            if handles.is_empty() {
                indent("no handles");
            }
            Ok(handles.len() + blocks.iter().map(|(_, n)| n).sum::<usize>())
        }
        Ipam::HostLocal => {
            let dir = data.join("host-local");
            note(&format!(
                "host-local reservations in {}/{network}:",
                dir.display()
            ));
            let r = ipam_state::host_local_reservations(&dir, network);
            indent(&if r.is_empty() {
                "none".to_string()
            } else {
                r.join(", ")
            });
            Ok(r.len())
        }
    }
}

fn run(opts: &Options) -> DemoResult<()> {
    let ipam = match opts.ipam {
        Some(i) => i,
        None if plugin_works("calico-ipam") => Ipam::CalicoIpam,
        None => {
            note("calico-ipam is not available in this build: using host-local instead");
            Ipam::HostLocal
        }
    };
    let with_bandwidth = plugin_works("bandwidth");

    section("1. Namespaces (private to this process; the machine's own network is not touched)");
    let env = TestEnv::new("demo").map_err(err)?;
    let client = node::client(&env.host, "client").map_err(err)?;
    note(&format!(
        "host   : plays the node; plugins run here; {HOST_IP}/24 on {}",
        node::HOST_UPLINK
    ));
    note(&format!(
        "client : a machine outside the node, {CLIENT_IP}/24, wired to the host"
    ));
    note("pod-a, pod-b: created empty (lo down), as a container runtime does");
    note(&format!("plugins from {:?}", bins::bin_dirs()));

    section("2. The network config (conflist)");
    let data = env.tmp().join("data");
    std::fs::create_dir_all(&data).map_err(err)?;
    let mut conf = load_conflist(opts, ipam, &data)?;
    if !with_bandwidth {
        note("bandwidth is not available in this build: running the chain without it");
        if let Some(plugins) = conf["plugins"].as_array_mut() {
            plugins.retain(|p| p["type"] != "bandwidth");
        }
    }
    let network = conf["name"].as_str().unwrap_or_default().to_string();
    indent(&serde_json::to_string_pretty(&conf).map_err(err)?);

    let order: Vec<&str> = conf["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["type"].as_str())
        .collect();
    section(&format!(
        "3. ADD: the chain runs {} for each pod",
        order.join(" -> ")
    ));
    note(&format!(
        "pod-a gets capability args: portMappings {HOST_PORT}->80/tcp, bandwidth ingress {} / egress {} Mbit/s",
        INGRESS_RATE / 1_000_000,
        EGRESS_RATE / 1_000_000
    ));
    let caps = json!({
        "portMappings": [{"hostPort": HOST_PORT, "containerPort": 80, "protocol": "tcp"}],
        "bandwidth": {"ingressRate": INGRESS_RATE, "ingressBurst": 80_000, "egressRate": EGRESS_RATE, "egressBurst": 40_000}
    });
    let pod_a = add_pod(&env, &conf, "pod-a", Some(caps))?;
    let pod_b = add_pod(&env, &conf, "pod-b", None)?;
    note("final result of pod-a (what the runtime gets):");
    indent(&serde_json::to_string_pretty(&pod_a.result).map_err(err)?);

    section("4. What calico wired");
    show(&pod_a.ns, "ip", &["-br", "addr", "show", "eth0"])?;
    show(&pod_a.ns, "ip", &["route"])?;
    show(&pod_a.ns, "ip", &["neigh"])?;
    show(&env.host, "ip", &["-br", "link", "show"])?;
    show(&env.host, "ip", &["route"])?;
    let proxy_arp = env
        .host
        .sysctl(&format!("net/ipv4/conf/{}/proxy_arp", pod_a.veth))
        .map_err(err)?;
    note(&format!(
        "net.ipv4.conf.{}.proxy_arp = {proxy_arp} (answers the pod's ARP for 169.254.1.1)",
        pod_a.veth
    ));
    show_allocations(ipam, &data, &network)?;

    section("5. Traffic");
    show(
        &pod_b.ns,
        "ping",
        &[
            "-n",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            &pod_a.ip.to_string(),
        ],
    )?;
    check(
        true,
        &format!(
            "pod-b ({}) reaches pod-a ({}) through the host's /32 routes",
            pod_b.ip, pod_a.ip
        ),
    )?;
    let web = traffic::http_server(
        &pod_a.ns,
        SocketAddr::new([0, 0, 0, 0].into(), 80),
        "hello from pod-a\n",
    )
    .map_err(err)?;
    note("pod-a serves HTTP on port 80; the client asks the NODE's address on the hostPort:");
    let url = format!("http://{HOST_IP}:{HOST_PORT}/");
    let body = show(&client, "curl", &["-sS", "--max-time", "5", &url])?;
    check(
        body == "hello from pod-a\n",
        &format!("{url} is answered by pod-a (portmap DNAT)"),
    )?;
    let rules = node::rules_mentioning(&env.host, &[pod_a.ip], &[HOST_PORT]).map_err(err)?;
    note("portmap's rules for it (nft list ruleset, lines naming the pod or the port):");
    indent(&rules.join("\n"));
    drop(web);

    if with_bandwidth {
        section("6. Shaping installed by bandwidth");
        show(&env.host, "tc", &["qdisc", "show", "dev", &pod_a.veth])?;
        let ifb = node::links_with_kind(&env.host)
            .map_err(err)?
            .into_iter()
            .find(|(_, k)| k == "ifb")
            .map(|(n, _)| n)
            .ok_or("no ifb device for pod-a's egress")?;
        show(&env.host, "tc", &["qdisc", "show", "dev", &ifb])?;
        show(
            &env.host,
            "tc",
            &["filter", "show", "dev", &pod_a.veth, "ingress"],
        )?;
        note(&format!("tbf on {} limits traffic TO the pod; pod egress is redirected to {ifb} and limited there", pod_a.veth));
        let big = "x".repeat(BULK_BYTES);
        let _bulk = traffic::http_server(&pod_a.ns, SocketAddr::new([0, 0, 0, 0].into(), 80), &big)
            .map_err(err)?;
        let speed = show(
            &client,
            "curl",
            &[
                "-sS",
                "-o",
                "/dev/null",
                "--max-time",
                "20",
                "-w",
                "%{size_download} bytes in %{time_total} s = %{speed_download} B/s\n",
                &url,
            ],
        )?;
        let bps: f64 = speed
            .split_whitespace()
            .rev()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);
        let limit = EGRESS_RATE as f64 / 8.0;
        check(bps > 0.0 && bps < limit * 1.5, &format!("download from pod-a ({:.0} kB/s) is held near its {} Mbit/s egress limit ({:.0} kB/s)", bps / 1000.0, EGRESS_RATE / 1_000_000, limit / 1000.0))?;
    } else {
        section("6. Shaping: skipped (bandwidth plugin not available in this build)");
    }

    section("7. CHECK (the runtime verifies both attachments against the cached results)");
    for pod in [&pod_a, &pod_b] {
        pod.chain
            .check(&pod.att)
            .map_err(|e| format!("CHECK {}: {e}", pod.ns.name()))?;
        check(true, &format!("CHECK {}", pod.ns.name()))?;
    }

    let reversed: Vec<&str> = order.iter().rev().copied().collect();
    section(&format!("8. DEL (reverse order: {})", reversed.join(", ")));
    for pod in [&pod_a, &pod_b] {
        let started = Instant::now();
        pod.chain
            .del(&pod.att)
            .map_err(|e| format!("DEL {}: {e}", pod.ns.name()))?;
        note(&format!(
            "DEL {}  ({} ms)",
            pod.ns.name(),
            started.elapsed().as_millis()
        ));
    }
    pod_a
        .chain
        .del(&pod_a.att)
        .map_err(|e| format!("second DEL pod-a: {e}"))?;
    check(true, "a repeated DEL succeeds (idempotent)")?;

    section("9. Proof that nothing is left");
    show(&env.host, "ip", &["-br", "link", "show"])?;
    show(&env.host, "ip", &["route"])?;
    show(&env.host, "tc", &["qdisc", "show"])?;
    show(&pod_a.ns, "ip", &["-br", "addr"])?;
    let left = node::leftovers(&env.host, &[pod_a.ip, pod_b.ip], &[HOST_PORT]).map_err(err)?;
    check(left.is_empty(), "no cali/ifb links, pod routes, tbf/ingress qdiscs or rules naming the pods or the hostPort")
        .map_err(|e| format!("{e}; left: {left:?}"))?;
    let allocations = show_allocations(ipam, &data, &network)?;
    check(
        allocations == 0,
        "no IPAM allocations left in the datastore",
    )?;
    check(
        pod_a.ns.link("eth0").map_err(err)?.is_none(),
        "pod-a has no eth0 any more",
    )?;
    let refused = traffic::http_get(
        &client,
        SocketAddr::new(HOST_IP.parse().map_err(err)?, HOST_PORT),
        "/",
        Duration::from_secs(1),
    )
    .is_err();
    check(refused, "the hostPort no longer answers")?;

    section(&format!(
        "Done: variant {} + portmap{}; namespaces and temp files are removed on exit",
        if ipam == Ipam::CalicoIpam {
            "calico + calico-ipam (local store)"
        } else {
            "calico + host-local"
        },
        if with_bandwidth {
            " + bandwidth"
        } else {
            " (no bandwidth)"
        }
    ));
    Ok(())
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cni-demo: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nDEMO FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
