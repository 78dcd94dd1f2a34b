//! Command-line parsing with clap: calicoctl's verbs, flag names and resource aliases (the
//! subset we implement), turned into a [`Command`]. Flags accept `--flag value`,
//! `--flag=value` and, for short ones, `-o value` / `-o=value` / `-ovalue`, as calicoctl does.
//! Help and shell completions are generated from the same definitions.

use std::net::IpAddr;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use ipnetwork::IpNetwork;

/// The datastore is chosen from the environment, described in `--help`.
const ENV_HELP: &str = "\
The datastore is selected like calicoctl: DATASTORE_TYPE (etcdv3, kubernetes, local; default
etcdv3 when ETCD_ENDPOINTS is set, else kubernetes), ETCD_ENDPOINTS, ETCD_CA_CERT_FILE,
ETCD_CERT_FILE, ETCD_KEY_FILE, KUBECONFIG, K8S_API_ENDPOINT, K8S_API_TOKEN, K8S_CA_FILE,
CALICO_API_GROUP (each also with a CALICO_ prefix), and DATASTORE_PATH for the local store.";

/// Resource types `get`/`apply`/`create`/`delete` know (calicoctl's names and aliases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    IpPool,
    IpReservation,
    Node,
    WorkloadEndpoint,
    IpamConfig,
    BlockAffinity,
}

impl Kind {
    /// Every kind, in help order.
    pub const ALL: [Kind; 6] = [
        Kind::IpPool,
        Kind::IpReservation,
        Kind::Node,
        Kind::WorkloadEndpoint,
        Kind::IpamConfig,
        Kind::BlockAffinity,
    ];

    /// The `kind` of the v3 object.
    pub fn name(self) -> &'static str {
        match self {
            Kind::IpPool => "IPPool",
            Kind::IpReservation => "IPReservation",
            Kind::Node => "Node",
            Kind::WorkloadEndpoint => "WorkloadEndpoint",
            Kind::IpamConfig => "IPAMConfiguration",
            Kind::BlockAffinity => "BlockAffinity",
        }
    }

    fn aliases(self) -> &'static [&'static str] {
        match self {
            Kind::IpPool => &["ippool", "ippools", "ipp", "ipps", "pool", "pools"],
            Kind::IpReservation => &[
                "ipreservation",
                "ipreservations",
                "reservation",
                "reservations",
            ],
            Kind::Node => &["node", "nodes", "no", "nos"],
            Kind::WorkloadEndpoint => &["workloadendpoint", "workloadendpoints", "wep", "weps"],
            Kind::IpamConfig => &[
                "ipamconfiguration",
                "ipamconfigurations",
                "ipamconfig",
                "ipamconfigs",
            ],
            Kind::BlockAffinity => &["blockaffinity", "blockaffinities", "affinity", "affinities"],
        }
    }

    /// Parse a resource type argument (case-insensitive, any alias).
    pub fn parse(s: &str) -> Result<Kind, UnknownKind> {
        let l = s.to_ascii_lowercase();
        Kind::ALL
            .into_iter()
            .find(|k| k.aliases().contains(&l.as_str()))
            .ok_or_else(|| UnknownKind {
                kind: s.to_string(),
            })
    }

    /// Whether `apply`/`create`/`delete` manage this kind (the others are read-only here).
    pub fn writable(self) -> bool {
        matches!(self, Kind::IpPool | Kind::IpReservation)
    }
}

/// Output format of `get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    /// Table (calicoctl's default).
    #[default]
    Ps,
    /// Table with more columns.
    Wide,
    Yaml,
    Json,
}

/// Shells `completion` can generate for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Options of `datastore init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitOptions {
    /// IPv4 default pool (`None` with `--no-default-pool`).
    pub ipv4_pool: Option<IpNetwork>,
    /// `--ipv4-pool` or `--no-default-pool` was given: otherwise the datastore's own default
    /// applies (calico-node's `192.168.0.0/16`, or on the local store the pool the plugin
    /// creates on first use).
    pub ipv4_pool_given: bool,
    pub ipv4_block_size: u8,
    /// IPv6 default pool; only created when asked for (calico-node: `CALICO_IPV6POOL_CIDR`).
    pub ipv6_pool: Option<IpNetwork>,
    pub ipv6_block_size: u8,
}

/// calico-node's `CALICO_IPV4POOL_CIDR` default.
pub const DEFAULT_IPV4_POOL: &str = "192.168.0.0/16";

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            ipv4_pool: DEFAULT_IPV4_POOL.parse().ok(),
            ipv4_pool_given: false,
            ipv4_block_size: 26,
            ipv6_pool: None,
            ipv6_block_size: 122,
        }
    }
}

/// What `delete` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteTarget {
    /// `delete <kind> NAME`
    Name(Kind, String),
    /// `delete -f FILE` (`-` = stdin)
    File(String),
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Version,
    Completion(Shell),
    DatastoreInit(InitOptions),
    Apply {
        file: String,
    },
    Create {
        file: String,
    },
    Get {
        kind: Kind,
        name: Option<String>,
        output: OutputFormat,
        /// Namespace of namespaced kinds; `None` = all namespaces.
        namespace: Option<String>,
    },
    Delete {
        target: DeleteTarget,
        /// `--skip-not-exists`: a missing resource counts as deleted.
        skip_not_exists: bool,
    },
    IpamShow {
        show_blocks: bool,
        show_borrowed: bool,
        show_configuration: bool,
        ip: Option<IpAddr>,
    },
    IpamCheck {
        show_all_ips: bool,
        show_problem_ips: bool,
        /// `-o FILE`: write calicoctl's JSON report there.
        output: Option<String>,
    },
    IpamRelease {
        ip: Option<IpAddr>,
        from_report: Vec<String>,
        force: bool,
    },
    IpamConfigure {
        strict_affinity: Option<bool>,
        max_blocks_per_host: Option<u32>,
    },
}

#[derive(Parser, Debug)]
#[command(
    name = "calicoctl",
    about = "Calico's admin CLI for the CNI layer: resources and IP address management.",
    after_help = ENV_HELP,
    disable_version_flag = true
)]
struct Cli {
    /// Accepted for compatibility; ignored.
    #[arg(long, global = true)]
    allow_version_mismatch: bool,
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Create a resource by file or stdin.
    Create(FileArgs),
    /// Apply a resource by file or stdin.
    Apply(FileArgs),
    /// Delete a resource identified by file, stdin or type and name.
    Delete(DeleteArgs),
    /// Get resources by type (and name).
    Get(GetArgs),
    /// IP address management.
    #[command(subcommand)]
    Ipam(IpamSub),
    /// Calico datastore management.
    #[command(subcommand)]
    Datastore(DatastoreSub),
    /// Display the version of this binary.
    Version,
    /// Print a shell completion script.
    Completion {
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Args, Debug)]
struct FileArgs {
    /// Filename to use to create/apply the resource ('-' for stdin).
    #[arg(short = 'f', long = "filename", value_name = "FILENAME")]
    filename: String,
}

#[derive(Args, Debug)]
struct DeleteArgs {
    /// Resource type (ippool, ipreservation).
    #[arg(value_name = "TYPE", required_unless_present = "filename")]
    kind: Option<String>,
    /// Resource name.
    #[arg(value_name = "NAME", requires = "kind")]
    name: Option<String>,
    /// Filename with the resources to delete ('-' for stdin).
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILENAME",
        conflicts_with = "kind"
    )]
    filename: Option<String>,
    /// Do not fail if any of the resources do not exist.
    #[arg(long)]
    skip_not_exists: bool,
}

#[derive(Args, Debug)]
struct GetArgs {
    /// Resource type: ippools, ipreservations, nodes, workloadendpoints, ipamconfigs,
    /// blockaffinities.
    #[arg(value_name = "TYPE")]
    kind: String,
    /// Resource name.
    #[arg(value_name = "NAME")]
    name: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "ps")]
    output: OutputFormat,
    /// Namespace of namespaced resources (workloadendpoints).
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    namespace: String,
    /// List resources of all namespaces.
    #[arg(short = 'A', long = "all-namespaces")]
    all_namespaces: bool,
}

#[derive(Subcommand, Debug)]
enum IpamSub {
    /// Show IP pool and block usage, or one address.
    Show {
        /// Report whether this IP address is in use.
        #[arg(long)]
        ip: Option<IpAddr>,
        /// Show detailed information for IP blocks as well as pools.
        #[arg(long)]
        show_blocks: bool,
        /// Show detailed information for "borrowed" IP addresses.
        #[arg(long)]
        show_borrowed: bool,
        /// Show the current IPAM configuration.
        #[arg(long)]
        show_configuration: bool,
    },
    /// Check IPAM for inconsistencies and leaked addresses.
    Check {
        /// Print all IPs that are checked.
        #[arg(long)]
        show_all_ips: bool,
        /// Print all IPs that are leaked or not allocated properly.
        #[arg(long)]
        show_problem_ips: bool,
        /// Path to write a machine-readable report to.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<String>,
    },
    /// Release an IP address, or the leaks listed in reports from 'ipam check -o'.
    Release {
        /// IP address to release.
        #[arg(
            long,
            required_unless_present = "from_report",
            conflicts_with = "from_report"
        )]
        ip: Option<IpAddr>,
        /// Report file(s) produced by 'calicoctl ipam check -o'.
        #[arg(long = "from-report", value_name = "REPORT")]
        from_report: Vec<String>,
        /// Release even if the datastore is not locked or the report is from another version.
        #[arg(long)]
        force: bool,
    },
    /// Change the IPAM configuration.
    Configure {
        /// Set StrictAffinity (when true, borrowing IP addresses is not allowed).
        #[arg(long = "strictaffinity", value_name = "true|false")]
        strict_affinity: Option<bool>,
        /// Set the maximum number of blocks a host may own (0 = unlimited).
        #[arg(long = "max-blocks-per-host", value_name = "NUMBER")]
        max_blocks_per_host: Option<u32>,
    },
}

#[derive(Subcommand, Debug)]
enum DatastoreSub {
    /// Prepare an empty datastore (ClusterInformation, default IP pool, IPAM config).
    Init {
        /// Do not create a default IP pool.
        #[arg(long, conflicts_with_all = ["ipv4_pool", "ipv6_pool"])]
        no_default_pool: bool,
        /// IPv4 default pool.
        #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
        ipv4_pool: Option<IpNetwork>,
        /// IPv6 default pool (none unless given).
        #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
        ipv6_pool: Option<IpNetwork>,
        /// Block size of the IPv4 pool.
        #[arg(long, default_value_t = 26)]
        ipv4_block_size: u8,
        /// Block size of the IPv6 pool.
        #[arg(long, default_value_t = 122)]
        ipv6_block_size: u8,
    },
}

/// A resource type argument that names no kind (the message lists the supported ones).
#[derive(Debug, thiserror::Error)]
#[error(
    "resource type '{kind}' is not supported by this calicoctl (supported: {})",
    Kind::ALL.iter().map(|k| k.aliases()[1]).collect::<Vec<_>>().join(", ")
)]
pub struct UnknownKind {
    pub kind: String,
}

/// A `--cidr` value that is not a network.
#[derive(Debug, thiserror::Error)]
enum CidrArgError {
    #[error(transparent)]
    Parse(#[from] ipnetwork::IpNetworkError),
    /// An address with host bits set.
    #[error("not a network address (did you mean {}/{}?)", .0.network(), .0.prefix())]
    HostBits(IpNetwork),
}

fn parse_cidr(s: &str) -> Result<IpNetwork, CidrArgError> {
    let n: IpNetwork = s.parse()?;
    if n.network() != n.ip() {
        return Err(CidrArgError::HostBits(n));
    }
    Ok(n)
}

/// The clap definition (for help and completions).
pub fn command() -> clap::Command {
    Cli::command()
}

fn usage_error(msg: String) -> clap::Error {
    command().error(clap::error::ErrorKind::ValueValidation, msg)
}

/// Parse `argv[1..]`. Help and usage errors come back as clap errors (see [`crate::run`]).
pub fn parse(args: &[String]) -> Result<Command, clap::Error> {
    let cli =
        Cli::try_parse_from(std::iter::once("calicoctl".to_string()).chain(args.iter().cloned()))?;
    Ok(match cli.cmd {
        Sub::Version => Command::Version,
        Sub::Completion { shell } => Command::Completion(shell),
        Sub::Create(f) => Command::Create { file: f.filename },
        Sub::Apply(f) => Command::Apply { file: f.filename },
        Sub::Get(g) => {
            let kind = Kind::parse(&g.kind).map_err(|e| usage_error(e.to_string()))?;
            Command::Get {
                kind,
                name: g.name,
                output: g.output,
                namespace: (!g.all_namespaces).then_some(g.namespace),
            }
        }
        Sub::Delete(d) => {
            let target = match (d.filename, d.kind, d.name) {
                (Some(f), _, _) => DeleteTarget::File(f),
                (None, Some(k), Some(n)) => {
                    let kind = Kind::parse(&k).map_err(|e| usage_error(e.to_string()))?;
                    if !kind.writable() {
                        return Err(usage_error(format!(
                            "resource type '{k}' cannot be deleted by this calicoctl (supported: ippools, ipreservations)"
                        )));
                    }
                    DeleteTarget::Name(kind, n)
                }
                _ => {
                    return Err(usage_error(
                        "usage: calicoctl delete <TYPE> <NAME> | calicoctl delete -f <FILE>".into(),
                    ))
                }
            };
            Command::Delete {
                target,
                skip_not_exists: d.skip_not_exists,
            }
        }
        Sub::Ipam(IpamSub::Show {
            ip,
            show_blocks,
            show_borrowed,
            show_configuration,
        }) => Command::IpamShow {
            show_blocks,
            show_borrowed,
            show_configuration,
            ip,
        },
        Sub::Ipam(IpamSub::Check {
            show_all_ips,
            show_problem_ips,
            output,
        }) => Command::IpamCheck {
            show_all_ips,
            show_problem_ips,
            output,
        },
        Sub::Ipam(IpamSub::Release {
            ip,
            from_report,
            force,
        }) => Command::IpamRelease {
            ip,
            from_report,
            force,
        },
        Sub::Ipam(IpamSub::Configure {
            strict_affinity,
            max_blocks_per_host,
        }) => {
            if strict_affinity.is_none() && max_blocks_per_host.is_none() {
                return Err(usage_error(
                    "usage: calicoctl ipam configure --strictaffinity=<true/false> [--max-blocks-per-host=<NUMBER>]".into(),
                ));
            }
            Command::IpamConfigure {
                strict_affinity,
                max_blocks_per_host,
            }
        }
        Sub::Datastore(DatastoreSub::Init {
            no_default_pool,
            ipv4_pool,
            ipv6_pool,
            ipv4_block_size,
            ipv6_block_size,
        }) => {
            let mut o = InitOptions {
                ipv4_block_size,
                ipv6_block_size,
                ..Default::default()
            };
            if let Some(p) = ipv4_pool {
                o.ipv4_pool = Some(p);
                o.ipv4_pool_given = true;
            }
            o.ipv6_pool = ipv6_pool;
            if no_default_pool {
                o.ipv4_pool = None;
                o.ipv4_pool_given = true;
                o.ipv6_pool = None;
            }
            if o.ipv4_pool.is_some_and(|c| !c.is_ipv4()) {
                return Err(usage_error("--ipv4-pool must be an IPv4 CIDR".into()));
            }
            if o.ipv6_pool.is_some_and(|c| !c.is_ipv6()) {
                return Err(usage_error("--ipv6-pool must be an IPv6 CIDR".into()));
            }
            Command::DatastoreInit(o)
        }
    })
}

/// Write the completion script for `shell`.
pub fn completion(shell: Shell, out: &mut dyn std::io::Write) {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut command(), "calicoctl", &mut buf);
    let _ = out.write_all(&buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, clap::Error> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    fn get(kind: Kind, name: Option<&str>, output: OutputFormat) -> Command {
        Command::Get {
            kind,
            name: name.map(str::to_string),
            output,
            namespace: Some("default".into()),
        }
    }

    #[test]
    fn verbs_and_flag_spellings() {
        assert_eq!(
            p("get ippools -o yaml").unwrap(),
            get(Kind::IpPool, None, OutputFormat::Yaml)
        );
        for s in [
            "get ipp p1 --output=json",
            "get pool p1 -ojson",
            "get IPPool p1 -o=json",
        ] {
            assert_eq!(
                p(s).unwrap(),
                get(Kind::IpPool, Some("p1"), OutputFormat::Json),
                "{s}"
            );
        }
        assert_eq!(
            p("get reservations").unwrap(),
            get(Kind::IpReservation, None, OutputFormat::Ps)
        );
        assert_eq!(
            p("get weps -A -o wide").unwrap(),
            Command::Get {
                kind: Kind::WorkloadEndpoint,
                name: None,
                output: OutputFormat::Wide,
                namespace: None
            }
        );
        assert_eq!(
            p("apply --filename=-").unwrap(),
            Command::Apply { file: "-".into() }
        );
        assert_eq!(
            p("--allow-version-mismatch delete ippool x").unwrap(),
            Command::Delete {
                target: DeleteTarget::Name(Kind::IpPool, "x".into()),
                skip_not_exists: false
            }
        );
        assert_eq!(
            p("ipam release --ip 10.0.0.1").unwrap(),
            Command::IpamRelease {
                ip: Some("10.0.0.1".parse().unwrap()),
                from_report: vec![],
                force: false
            }
        );
        assert_eq!(
            p("ipam release --from-report r.json --force").unwrap(),
            Command::IpamRelease {
                ip: None,
                from_report: vec!["r.json".into()],
                force: true
            }
        );
        assert_eq!(
            p("ipam check --show-problem-ips -o report.json").unwrap(),
            Command::IpamCheck {
                show_all_ips: false,
                show_problem_ips: true,
                output: Some("report.json".into())
            }
        );
        assert_eq!(
            p("ipam configure --strictaffinity=true").unwrap(),
            Command::IpamConfigure {
                strict_affinity: Some(true),
                max_blocks_per_host: None
            }
        );
    }

    #[test]
    fn init_options() {
        assert_eq!(
            p("datastore init").unwrap(),
            Command::DatastoreInit(InitOptions::default())
        );
        let Command::DatastoreInit(o) =
            p("datastore init --ipv4-pool=10.9.0.0/16 --ipv6-pool fd00:9::/48").unwrap()
        else {
            panic!()
        };
        assert_eq!(o.ipv4_pool.unwrap().to_string(), "10.9.0.0/16");
        assert_eq!(o.ipv6_pool.unwrap().to_string(), "fd00:9::/48");
        let Command::DatastoreInit(o) = p("datastore init --no-default-pool").unwrap() else {
            panic!()
        };
        assert_eq!((o.ipv4_pool, o.ipv6_pool), (None, None));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = |s: &str| p(s).unwrap_err().to_string();
        assert!(e("get frobs").contains("'frobs' is not supported"));
        assert!(e("get ippools -o xml").contains("xml"));
        assert!(e("apply").contains("--filename"));
        assert!(e("ipam release --ip nope").contains("nope"));
        assert!(e("ipam release").contains("--ip"));
        assert!(e("ipam configure --strictaffinity=maybe").contains("maybe"));
        assert!(e("datastore init --ipv4-pool 10.0.0.1/16").contains("10.0.0.0/16"));
        assert!(e("datastore init --ipv4-pool fd00::/48").contains("IPv4"));
        assert!(e("get ippools --bogus").contains("--bogus"));
        assert!(e("frobnicate").contains("frobnicate"));
        assert!(e("get ippools -o").contains("-o"));
        assert!(e("delete nodes n1").contains("cannot be deleted"));
        assert_eq!(
            p("--help").unwrap_err().kind(),
            clap::error::ErrorKind::DisplayHelp
        );
    }

    #[test]
    fn completions_name_the_commands() {
        for (shell, needle) in [
            (Shell::Bash, "ipam"),
            (Shell::Zsh, "--show-borrowed"),
            (Shell::Fish, "strictaffinity"),
        ] {
            let mut out = Vec::new();
            completion(shell, &mut out);
            let s = String::from_utf8(out).unwrap();
            assert!(s.contains(needle), "{shell:?}: {s}");
        }
    }
}
