//! The bad-input catalogue: one row per hostile input, for every plugin binary it applies to.
//!
//! Paths in values use placeholders the runner fills per worker: `@TMP@` (scratch dir),
//! `@FIFO@`, `@REG@` (regular empty file), `@DIR@`, `@NOTEXIST@`, `@CTR@` (the case's
//! container netns). Each row names the field its error message must mention.

use serde_json::{json, Value};

/// Every plugin binary the catalogue execs.
pub const PLUGINS: &[&str] = &[
    "loopback",
    "host-local",
    "calico-ipam",
    "calico",
    "portmap",
    "bandwidth",
];
/// Plugins that read Calico's logging and datastore keys.
const CALICO: &[&str] = &["calico", "calico-ipam"];
/// Plugins that log through cni-log (log_file_*).
const LOGGING: &[&str] = &["calico", "calico-ipam", "portmap", "bandwidth"];

/// Codes a config error may carry: 6 (could not decode) or 7 (invalid value).
pub const CONFIG: &[u64] = &[6, 7];

#[derive(Debug, Clone)]
pub enum EnvVal {
    Set(String),
    /// Raw bytes (invalid UTF-8).
    Bytes(Vec<u8>),
    Unset,
}

#[derive(Debug, Clone)]
pub enum Edit {
    /// Set the value at a JSON pointer, creating missing objects on the way.
    Set(String, Value),
    Remove(String),
}

#[derive(Debug, Clone)]
pub enum Stdin {
    /// The plugin's valid base config with these edits.
    Base(Vec<Edit>),
    /// Exactly these bytes.
    Raw(Vec<u8>),
}

#[derive(Debug, Clone)]
pub enum Expect {
    /// A CNI error with one of `codes` whose msg or details mention `field`.
    Error {
        codes: &'static [u64],
        field: &'static str,
    },
    /// Success with nothing changed, or a CNI error naming `field` (DEL cleans up what it can).
    CleanOrError { field: &'static str },
}

#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub plugin: &'static str,
    pub command: &'static str,
    pub env: Vec<(&'static str, EnvVal)>,
    pub stdin: Stdin,
    pub expect: Expect,
}

fn set(v: &str) -> EnvVal {
    EnvVal::Set(v.to_string())
}

fn err(codes: &'static [u64], field: &'static str) -> Expect {
    Expect::Error { codes, field }
}

/// Hostile values for `CNI_NETNS` and the code ADD/CHECK must answer with.
fn netns_values() -> Vec<(&'static str, EnvVal, u64)> {
    vec![
        ("regular-file", set("@REG@"), 4),
        ("fifo", set("@FIFO@"), 4),
        ("directory", set("@DIR@"), 4),
        ("dev-null", set("/dev/null"), 4),
        ("dev-zero", set("/dev/zero"), 4),
        ("missing", set("@NOTEXIST@"), 3),
        ("missing-parent-is-file", set("@REG@/x"), 3),
        ("traversal-to-uts", set("/proc/self/../self/ns/uts"), 4),
        ("other-ns-kind", set("/proc/self/ns/mnt"), 4),
        ("own-netns", set("/proc/self/ns/net"), 8),
    ]
}

/// Hostile values for the other variables; all are code 4 on every verb.
fn env_values() -> Vec<(&'static str, &'static str, EnvVal)> {
    let long_id = format!("{}/", "a".repeat(4096));
    vec![
        ("CNI_NETNS", "netns-unset", EnvVal::Unset),
        (
            "CNI_NETNS",
            "netns-invalid-utf8",
            EnvVal::Bytes(b"/run/netns/\xff\xfe".to_vec()),
        ),
        ("CNI_CONTAINERID", "id-traversal", set("../../etc/passwd")),
        ("CNI_CONTAINERID", "id-slash", set("a/b")),
        ("CNI_CONTAINERID", "id-leading-dash", set("-rf")),
        ("CNI_CONTAINERID", "id-shell", set("a;reboot")),
        (
            "CNI_CONTAINERID",
            "id-long-with-slash",
            EnvVal::Set(long_id),
        ),
        (
            "CNI_CONTAINERID",
            "id-invalid-utf8",
            EnvVal::Bytes(b"ctr\xff".to_vec()),
        ),
        ("CNI_CONTAINERID", "id-unset", EnvVal::Unset),
        ("CNI_IFNAME", "ifname-traversal", set("../../x")),
        ("CNI_IFNAME", "ifname-too-long", set("eth0123456789abc")),
        ("CNI_IFNAME", "ifname-dot", set(".")),
        ("CNI_IFNAME", "ifname-dotdot", set("..")),
        ("CNI_IFNAME", "ifname-space", set("eth 0")),
        ("CNI_IFNAME", "ifname-newline", set("eth0\n")),
        ("CNI_IFNAME", "ifname-colon", set("eth0:1")),
        (
            "CNI_IFNAME",
            "ifname-invalid-utf8",
            EnvVal::Bytes(b"et\xffh".to_vec()),
        ),
        ("CNI_IFNAME", "ifname-unset", EnvVal::Unset),
        ("CNI_COMMAND", "command-unknown", set("FROB")),
        ("CNI_COMMAND", "command-lowercase", set("add")),
        ("CNI_ARGS", "args-double-equals", set("A=1=2")),
        ("CNI_ARGS", "args-no-equals", set("K8S_POD_NAME")),
        ("CNI_ARGS", "args-empty-key", set("IgnoreUnknown=1;=b")),
        ("CNI_PATH", "path-unset", EnvVal::Unset),
    ]
}

/// Bytes that are not a usable config document, for every plugin (code 6 or 7).
fn raw_stdins() -> Vec<(&'static str, Vec<u8>, &'static [u64], &'static str)> {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut huge = br#"{"cniVersion":"1.0.0","name":"n","type":"x","pad":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'a', 8 << 20));
    huge.extend(br#"""#);
    let mut oversized = br#"{"cniVersion":"1.0.0","name":"n","pad":""#.to_vec();
    oversized.extend(std::iter::repeat_n(b'a', 17 << 20));
    oversized.extend(br#""}"#);
    vec![
        ("empty", Vec::new(), &[6][..], "config"),
        ("oversized-17MiB", oversized, &[6], "config"),
        (
            "truncated",
            br#"{"cniVersion":"1.0.0","name":"#.to_vec(),
            &[6],
            "config",
        ),
        ("not-an-object", b"[]".to_vec(), &[6], "config"),
        ("string", br#""x""#.to_vec(), &[6], "config"),
        ("deeply-nested", deep.into_bytes(), &[6], "config"),
        ("huge-unterminated", huge, &[6], "config"),
        (
            "invalid-utf8",
            b"{\"cniVersion\":\"1.0.0\",\"name\":\"n\xff\xfe\"}".to_vec(),
            &[6],
            "config",
        ),
        (
            "nul-in-name",
            br#"{"cniVersion":"1.0.0","name":"net\u0000x"}"#.to_vec(),
            &[7],
            "name",
        ),
        ("binary", vec![0, 1, 2, 0xff, 0x80], &[6], "config"),
    ]
}

/// Edits of any plugin's base config (code, field).
fn common_edits() -> Vec<(&'static str, Vec<Edit>, &'static [u64], &'static str)> {
    let e = |p: &str, v: Value| vec![Edit::Set(p.to_string(), v)];
    vec![
        (
            "name-missing",
            vec![Edit::Remove("/name".into())],
            &[7][..],
            "name",
        ),
        (
            "name-traversal",
            e("/name", json!("../../etc")),
            &[7],
            "name",
        ),
        ("name-slash", e("/name", json!("a/b")), &[7], "name"),
        ("name-number", e("/name", json!(5)), CONFIG, "name"),
        ("name-shell", e("/name", json!("n;rm -rf /")), &[7], "name"),
        (
            "version-unknown",
            e("/cniVersion", json!("9.9.9")),
            &[1],
            "version",
        ),
        (
            "version-garbage",
            e("/cniVersion", json!("x.y")),
            &[6],
            "cniVersion",
        ),
        (
            "version-number",
            e("/cniVersion", json!(1)),
            &[6],
            "cniVersion",
        ),
        (
            "prevresult-string",
            e("/prevResult", json!("x")),
            &[6],
            "prevResult",
        ),
        (
            "prevresult-bad-address",
            e(
                "/prevResult",
                json!({"ips": [{"address": "10.0.0.300/24"}]}),
            ),
            &[6],
            "prevResult",
        ),
        (
            "prevresult-ips-not-array",
            e("/prevResult", json!({"ips": {"address": "10.0.0.3/24"}})),
            &[6],
            "prevResult",
        ),
        (
            "runtimeconfig-string",
            e("/runtimeConfig", json!("x")),
            &[6],
            "runtimeConfig",
        ),
        (
            "portmappings-string",
            e("/runtimeConfig/portMappings", json!("x")),
            &[6, 7],
            "portMappings",
        ),
        (
            "bandwidth-string",
            e("/runtimeConfig/bandwidth", json!([1])),
            &[6, 7],
            "bandwidth",
        ),
        (
            "valid-attachments-string",
            e("/cni.dev~1valid-attachments", json!("x")),
            &[6],
            "valid-attachments",
        ),
    ]
}

/// Per-plugin config fields.
fn field_edits(plugin: &str) -> Vec<(&'static str, Vec<Edit>, &'static [u64], &'static str)> {
    let e = |p: &str, v: Value| vec![Edit::Set(p.to_string(), v)];
    let mut out = Vec::new();
    if LOGGING.contains(&plugin) {
        for (n, f, v) in [
            ("log-size-2^44", "log_file_max_size", json!(1u64 << 44)),
            ("log-size-u64max", "log_file_max_size", json!(u64::MAX)),
            ("log-size-negative", "log_file_max_size", json!(-1)),
            ("log-size-float", "log_file_max_size", json!(1.5)),
            ("log-size-string", "log_file_max_size", json!("100")),
            ("log-age-u64max", "log_file_max_age", json!(u64::MAX)),
            ("log-age-huge", "log_file_max_age", json!(1u64 << 50)),
            ("log-count-negative", "log_file_max_count", json!(-1)),
            ("log-count-u64max", "log_file_max_count", json!(u64::MAX)),
            ("log-path-fifo", "log_file_path", json!("@FIFO@")),
            ("log-path-dev-null", "log_file_path", json!("/dev/null")),
            ("log-path-dir", "log_file_path", json!("@DIR@")),
            ("log-path-number", "log_file_path", json!(7)),
        ] {
            out.push((n, e(&format!("/{f}"), v), &[7][..], f));
        }
    }
    if CALICO.contains(&plugin) {
        for (n, f, v) in [
            ("lock-fifo", "ipam_lock_file", json!("@FIFO@")),
            ("lock-dev-null", "ipam_lock_file", json!("/dev/null")),
            ("lock-dir", "ipam_lock_file", json!("@DIR@")),
            ("datastore-dev-null", "datastore_path", json!("/dev/null")),
            ("datastore-fifo", "datastore_path", json!("@FIFO@")),
            ("datastore-dir", "datastore_path", json!("@DIR@")),
            ("datastore-type-bogus", "datastore_type", json!("bogus")),
            ("etcd-key-fifo", "etcd_key_file", json!("@FIFO@")),
            ("etcd-ca-dev-zero", "etcd_ca_cert_file", json!("/dev/zero")),
            ("datastore-type-number", "datastore_type", json!(3)),
        ] {
            out.push((n, e(&format!("/{f}"), v), CONFIG, f));
        }
        let mut kubeconfig_fifo = e("/kubernetes/kubeconfig", json!("@FIFO@"));
        kubeconfig_fifo.push(Edit::Set("/datastore_type".into(), json!("kubernetes")));
        out.push(("kubeconfig-fifo", kubeconfig_fifo, &[7][..], "kubeconfig"));
        let mut kubeconfig_dir = e("/kubernetes/kubeconfig", json!("@DIR@"));
        kubeconfig_dir.push(Edit::Set("/datastore_type".into(), json!("kubernetes")));
        out.push(("kubeconfig-dir", kubeconfig_dir, &[7][..], "kubeconfig"));
        let mut nodename_fifo = e("/nodename_file", json!("@FIFO@"));
        nodename_fifo.push(Edit::Remove("/nodename".into()));
        out.push((
            "nodename-file-fifo",
            nodename_fifo,
            &[7][..],
            "nodename_file",
        ));
        let mut nodename_dev = e("/nodename_file", json!("/dev/zero"));
        nodename_dev.push(Edit::Remove("/nodename".into()));
        out.push((
            "nodename-file-dev-zero",
            nodename_dev,
            &[7][..],
            "nodename_file",
        ));
        out.push((
            "ipv4-pool-garbage",
            e("/ipam/default_ipv4_pool", json!("10.0.0.0/99")),
            CONFIG,
            "default_ipv4_pool",
        ));
        for (n, v) in [
            ("block-size-300", json!(300)),
            ("block-size-negative", json!(-1)),
            ("block-size-33", json!(33)),
            ("block-size-0", json!(0)),
        ] {
            out.push((n, e("/ipam/default_ipv4_block_size", v), CONFIG, "block"));
        }
        out.push((
            "ipv4-pools-string",
            e("/ipam/ipv4_pools", json!("x")),
            CONFIG,
            "ipv4_pools",
        ));
        out.push((
            "assign-ipv4-number",
            e("/ipam/assign_ipv4", json!(5)),
            CONFIG,
            "assign_ipv4",
        ));
    }
    match plugin {
        "calico" => {
            for (n, t) in [
                ("ipam-type-calico", "calico"),
                ("ipam-type-portmap", "portmap"),
                ("ipam-type-bandwidth", "bandwidth"),
                ("ipam-type-loopback", "loopback"),
                ("ipam-type-traversal", "../../bin/sh"),
                ("ipam-type-empty", ""),
            ] {
                out.push((n, e("/ipam/type", json!(t)), &[7][..], "ipam"));
            }
            for (n, v) in [
                ("mtu-u64max", json!(u64::MAX)),
                ("mtu-negative", json!(-1)),
                ("mtu-string", json!("x")),
                ("mtu-2^32", json!(1u64 << 32)),
                ("mtu-below-ipv4-minimum", json!(67)),
            ] {
                out.push((n, e("/mtu", v), CONFIG, "mtu"));
            }
            for (n, v) in [
                ("num-queues-2000", json!(2000)),
                ("num-queues-u64max", json!(u64::MAX)),
                ("num-queues-string", json!("4")),
            ] {
                out.push((n, e("/num_queues", v), CONFIG, "num_queues"));
            }
            out.push((
                "ipam-missing",
                vec![Edit::Remove("/ipam".into())],
                &[7][..],
                "ipam",
            ));
            // A real IPAM plugin handing out addresses no pod can use: calico must refuse them
            // before wiring anything and release them (host-local shares the host-local
            // plugin's data directory here, so its files are already there).
            for (n, subnet, why) in [
                ("ipam-returns-loopback", "127.0.0.0/8", "loopback"),
                ("ipam-returns-multicast", "224.1.0.0/24", "multicast"),
            ] {
                out.push((
                    n,
                    e(
                        "/ipam",
                        json!({"type": "host-local", "subnet": subnet, "dataDir": "@TMP@/hl"}),
                    ),
                    &[][..],
                    why,
                ));
            }
        }
        "host-local" => {
            for (n, v) in [
                ("resolvconf-fifo", json!("@FIFO@")),
                ("resolvconf-dev-zero", json!("/dev/zero")),
                ("resolvconf-dev-null", json!("/dev/null")),
                ("resolvconf-dir", json!("@DIR@")),
            ] {
                out.push((n, e("/ipam/resolvConf", v), CONFIG, "resolvConf"));
            }
            for (n, p, v, f) in [
                ("subnet-garbage", "/ipam/subnet", json!("bogus"), "CIDR"),
                (
                    "subnet-prefix-33",
                    "/ipam/subnet",
                    json!("10.0.0.0/33"),
                    "CIDR",
                ),
                ("subnet-number", "/ipam/subnet", json!(10), "subnet"),
                ("ranges-string", "/ipam/ranges", json!("x"), "ranges"),
                (
                    "range-start-outside",
                    "/ipam/rangeStart",
                    json!("10.1.0.5"),
                    "RangeStart",
                ),
                // host-local keeps upstream's texts: "invalid CIDR address: x".
                (
                    "routes-bad-dst",
                    "/ipam/routes",
                    json!([{"dst": "x"}]),
                    "CIDR",
                ),
                ("datadir-number", "/ipam/dataDir", json!(5), "dataDir"),
            ] {
                out.push((n, e(p, v), CONFIG, f));
            }
        }
        "portmap" => {
            for (n, v, f) in [
                (
                    "hostport-70000",
                    json!([{"hostPort": 70000, "containerPort": 80, "protocol": "tcp"}]),
                    "hostPort",
                ),
                (
                    "hostport-negative",
                    json!([{"hostPort": -1, "containerPort": 80, "protocol": "tcp"}]),
                    "hostPort",
                ),
                (
                    "hostport-string",
                    json!([{"hostPort": "80", "containerPort": 80, "protocol": "tcp"}]),
                    "hostPort",
                ),
                (
                    "containerport-0",
                    json!([{"hostPort": 8080, "containerPort": 0, "protocol": "tcp"}]),
                    "containerPort",
                ),
                (
                    "protocol-icmp",
                    json!([{"hostPort": 8080, "containerPort": 80, "protocol": "icmp"}]),
                    "protocol",
                ),
                (
                    "protocol-shell",
                    json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp; reboot"}]),
                    "protocol",
                ),
                (
                    "hostip-garbage",
                    json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "1.2.3"}]),
                    "hostIP",
                ),
                (
                    "hostip-injection",
                    json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "1.2.3.4 -j ACCEPT"}]),
                    "hostIP",
                ),
            ] {
                out.push((n, e("/runtimeConfig/portMappings", v), CONFIG, f));
            }
            for (n, p, v, f) in [
                ("markmasqbit-40", "/markMasqBit", json!(40), "markMasqBit"),
                (
                    "markmasqbit-negative",
                    "/markMasqBit",
                    json!(-1),
                    "markMasqBit",
                ),
                ("backend-bogus", "/backend", json!("bpf"), "backend"),
                (
                    "external-chain-injection",
                    "/externalSetMarkChain",
                    json!("KUBE; reboot"),
                    "externalSetMarkChain",
                ),
                (
                    "external-chain-long",
                    "/externalSetMarkChain",
                    json!("X".repeat(300)),
                    "externalSetMarkChain",
                ),
                (
                    "conditions-string",
                    "/conditionsV4",
                    json!("-j ACCEPT"),
                    "conditionsV4",
                ),
                ("snat-string", "/snat", json!("yes"), "snat"),
            ] {
                out.push((n, e(p, v), CONFIG, f));
            }
            out.push((
                "prevresult-missing",
                vec![Edit::Remove("/prevResult".into())],
                CONFIG,
                "prevResult",
            ));
        }
        "bandwidth" => {
            for (n, p, v, f) in [
                (
                    "ingress-rate-negative",
                    "/ingressRate",
                    json!(-1),
                    "ingressRate",
                ),
                (
                    "ingress-burst-u64max",
                    "/ingressBurst",
                    json!(u64::MAX),
                    "ingress",
                ),
                (
                    "ingress-rate-string",
                    "/ingressRate",
                    json!("1M"),
                    "ingressRate",
                ),
                ("egress-burst-only", "/egressBurst", json!(1000), "egress"),
                ("egress-rate-float", "/egressRate", json!(1.5), "egressRate"),
                (
                    "runtime-rate-negative",
                    "/runtimeConfig/bandwidth",
                    json!({"ingressRate": -5, "ingressBurst": 8}),
                    "ingressRate",
                ),
            ] {
                out.push((n, e(p, v), CONFIG, f));
            }
            out.push((
                "prevresult-missing",
                vec![Edit::Remove("/prevResult".into())],
                CONFIG,
                "prevResult",
            ));
            out.push((
                "prevresult-no-interfaces",
                e("/prevResult/interfaces", json!([])),
                CONFIG,
                "prevResult",
            ));
            // Contradictory: the "host" interface claims to be in the container.
            out.push((
                "prevresult-host-iface-in-sandbox",
                e("/prevResult/interfaces/0/sandbox", json!("@CTR@")),
                CONFIG,
                "prevResult",
            ));
            out.push((
                "prevresult-hostile-host-name",
                e(
                    "/prevResult/interfaces/0/name",
                    json!("../../../proc/sys/net"),
                ),
                CONFIG,
                "prevResult",
            ));
        }
        _ => {}
    }
    out
}

/// The whole catalogue.
pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for &plugin in PLUGINS {
        for (n, v, code) in netns_values() {
            for command in ["ADD", "CHECK"] {
                out.push(Case {
                    name: format!("{plugin}/{command}/netns-{n}"),
                    plugin,
                    command,
                    env: vec![("CNI_NETNS", v.clone())],
                    stdin: Stdin::Base(Vec::new()),
                    expect: Expect::Error {
                        codes: match code {
                            3 => &[3],
                            8 => &[8],
                            _ => &[4],
                        },
                        field: "CNI_NETNS",
                    },
                });
            }
            out.push(Case {
                name: format!("{plugin}/DEL/netns-{n}"),
                plugin,
                command: "DEL",
                env: vec![("CNI_NETNS", v)],
                stdin: Stdin::Base(Vec::new()),
                expect: Expect::CleanOrError { field: "CNI_NETNS" },
            });
        }
        for (var, n, v) in env_values() {
            // DEL may run without CNI_NETNS; every other variable is required on every verb.
            let commands: &[&str] = if var == "CNI_NETNS" {
                &["ADD"]
            } else {
                &["ADD", "DEL"]
            };
            for &command in commands {
                // For CNI_COMMAND the override replaces the verb itself.
                let env = vec![(var, v.clone())];
                out.push(Case {
                    name: format!("{plugin}/{command}/{n}"),
                    plugin,
                    command,
                    env,
                    stdin: Stdin::Base(Vec::new()),
                    expect: err(&[4], var),
                });
            }
        }
        if plugin == "calico" {
            // A delegation chain already at its limit (what a loop reaches): refused at once.
            out.push(Case {
                name: "calico/ADD/delegation-depth-at-limit".into(),
                plugin,
                command: "ADD",
                env: vec![("CNI_RS_DELEGATION_DEPTH", set("3"))],
                stdin: Stdin::Base(Vec::new()),
                expect: err(&[7], "delegation depth"),
            });
        }
        for (n, bytes, codes, field) in raw_stdins() {
            out.push(Case {
                name: format!("{plugin}/ADD/stdin-{n}"),
                plugin,
                command: "ADD",
                env: Vec::new(),
                stdin: Stdin::Raw(bytes),
                expect: err(codes, field),
            });
        }
        for (n, edits, codes, field) in common_edits().into_iter().chain(field_edits(plugin)) {
            out.push(Case {
                name: format!("{plugin}/ADD/{n}"),
                plugin,
                command: "ADD",
                env: Vec::new(),
                stdin: Stdin::Base(edits.clone()),
                expect: err(codes, field),
            });
            // DEL with the same config: it may clean up (nothing was added) or refuse, naming
            // the field, but never hang, panic or leave anything.
            out.push(Case {
                name: format!("{plugin}/DEL/{n}"),
                plugin,
                command: "DEL",
                env: Vec::new(),
                stdin: Stdin::Base(edits),
                expect: Expect::CleanOrError { field },
            });
        }
    }
    out
}
