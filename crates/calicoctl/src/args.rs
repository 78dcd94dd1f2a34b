//! Command-line parsing: calicoctl's verbs and flags (the subset we implement), into a
//! [`Command`]. Flags accept `--flag value`, `--flag=value` and, for short ones, `-o value` /
//! `-o=value` / `-ovalue`, as Go's docopt-based calicoctl does.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::error::{CtlError, CtlResult};

/// Top-level usage text (also printed by `--help`).
pub const USAGE: &str = "\
Usage:
  calicoctl [options] <command> [<args>...]

    datastore init   Prepare an empty datastore (ClusterInformation, default IP pool, IPAM config).
    apply            Apply a resource by file or stdin.
    create           Create a resource by file or stdin.
    get              Get a resource identified by name (ippools).
    delete           Delete a resource identified by file, stdin or name.
    ipam show        Show IP pool and block usage.
    ipam check       Check IPAM for inconsistencies (non-zero exit when any).
    ipam release     Release an IP address.
    version          Display the version of this binary.

Examples:
  calicoctl datastore init [--no-default-pool] [--ipv4-pool=<CIDR>] [--ipv6-pool=<CIDR>]
  calicoctl apply -f pool.yaml
  calicoctl create --filename=-
  calicoctl get ippools [<NAME>] [-o yaml|json|wide]
  calicoctl delete ippool <NAME> [--skip-not-exists]
  calicoctl delete -f pool.yaml
  calicoctl ipam show [--show-blocks] [--show-configuration] [--ip=<IP>]
  calicoctl ipam check
  calicoctl ipam release --ip=<IP>

Options:
  -h --help                  Show this screen.
     --allow-version-mismatch Accepted for compatibility; ignored.

The datastore is selected like calicoctl: DATASTORE_TYPE (etcdv3, kubernetes, local; default
etcdv3 when ETCD_ENDPOINTS is set, else kubernetes), ETCD_ENDPOINTS, ETCD_CA_CERT_FILE,
ETCD_CERT_FILE, ETCD_KEY_FILE, KUBECONFIG, K8S_API_ENDPOINT, K8S_API_TOKEN, K8S_CA_FILE,
CALICO_API_GROUP (each also with a CALICO_ prefix), and DATASTORE_PATH for the local store.
";

/// Output format of `get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Table,
    Wide,
    Yaml,
    Json,
}

impl OutputFormat {
    fn parse(s: &str) -> CtlResult<Self> {
        match s {
            "ps" => Ok(OutputFormat::Table),
            "wide" => Ok(OutputFormat::Wide),
            "yaml" => Ok(OutputFormat::Yaml),
            "json" => Ok(OutputFormat::Json),
            other => Err(CtlError::Usage(format!(
                "unrecognized output format '{other}' (supported: ps, wide, yaml, json)"
            ))),
        }
    }
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
    /// `delete ippool NAME`
    Name(String),
    /// `delete -f FILE` (`-` = stdin)
    File(String),
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    DatastoreInit(InitOptions),
    Apply {
        file: String,
    },
    Create {
        file: String,
    },
    GetPools {
        name: Option<String>,
        output: OutputFormat,
    },
    Delete {
        target: DeleteTarget,
        /// `--skip-not-exists`: a missing resource counts as deleted.
        skip_not_exists: bool,
    },
    IpamShow {
        show_blocks: bool,
        show_configuration: bool,
        ip: Option<IpAddr>,
    },
    IpamCheck,
    IpamRelease {
        ip: IpAddr,
    },
}

/// Flags with a value and boolean switches seen after the verb.
#[derive(Debug, Default)]
struct Parsed {
    positional: Vec<String>,
    values: Vec<(String, String)>,
    switches: Vec<String>,
}

impl Parsed {
    fn value(&self, names: &[&str]) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, v)| v.as_str())
    }

    fn switch(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }
}

/// Split `args` (after the verb) into positionals and flags. `valued` lists the flags that take
/// a value; `switches` the boolean ones. Anything else is a usage error.
fn split(args: &[String], valued: &[&str], switches: &[&str]) -> CtlResult<Parsed> {
    let mut p = Parsed::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-" || !a.starts_with('-') {
            p.positional.push(a.clone());
            continue;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        // `-oyaml`: short flag with the value glued on.
        let (name, inline) = if inline.is_none()
            && !name.starts_with("--")
            && name.len() > 2
            && valued.contains(&&name[..2])
        {
            (name[..2].to_string(), Some(name[2..].to_string()))
        } else {
            (name, inline)
        };
        if name == "--allow-version-mismatch" {
            continue;
        }
        if valued.contains(&name.as_str()) {
            let v = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| CtlError::Usage(format!("flag {name} needs a value")))?,
            };
            p.values.push((name, v));
        } else if switches.contains(&name.as_str()) && inline.is_none() {
            p.switches.push(name);
        } else {
            return Err(CtlError::Usage(format!("unknown flag {a}")));
        }
    }
    Ok(p)
}

fn no_positionals(p: &Parsed, cmd: &str) -> CtlResult<()> {
    match p.positional.first() {
        None => Ok(()),
        Some(x) => Err(CtlError::Usage(format!(
            "unexpected argument '{x}' for '{cmd}'"
        ))),
    }
}

/// Whether `s` names the IPPool resource type (calicoctl's aliases).
pub fn is_ippool_kind(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "ippool" | "ippools" | "ipp" | "ipps" | "pool" | "pools"
    )
}

fn kind_arg(p: &Parsed, verb: &str) -> CtlResult<()> {
    match p.positional.first() {
        None => Err(CtlError::Usage(format!(
            "'{verb}' needs a resource type: calicoctl {verb} ippools ..."
        ))),
        Some(k) if is_ippool_kind(k) => Ok(()),
        Some(k) => Err(CtlError::Usage(format!(
            "resource type '{k}' is not supported by this calicoctl (supported: ippools)"
        ))),
    }
}

fn parse_cidr(flag: &str, s: &str) -> CtlResult<IpNetwork> {
    let n: IpNetwork = s
        .parse()
        .map_err(|e| CtlError::Usage(format!("invalid {flag} '{s}': {e}")))?;
    if n.network() != n.ip() {
        return Err(CtlError::Usage(format!(
            "invalid {flag} '{s}': not a network address (did you mean {}/{}?)",
            n.network(),
            n.prefix()
        )));
    }
    Ok(n)
}

fn parse_ip(flag: &str, s: &str) -> CtlResult<IpAddr> {
    s.parse()
        .map_err(|_| CtlError::Usage(format!("invalid {flag} '{s}': not an IP address")))
}

fn parse_u8(flag: &str, s: &str) -> CtlResult<u8> {
    s.parse()
        .map_err(|_| CtlError::Usage(format!("invalid {flag} '{s}': not a prefix length")))
}

fn file_flag(p: &Parsed, verb: &str) -> CtlResult<String> {
    no_positionals(p, verb)?;
    p.value(&["-f", "--filename"])
        .map(str::to_string)
        .ok_or_else(|| CtlError::Usage(format!("'{verb}' needs --filename=<FILE> (or -f -)")))
}

/// Parse `argv[1..]`.
pub fn parse(args: &[String]) -> CtlResult<Command> {
    // Global flags before the verb.
    let mut rest = args;
    while let Some(first) = rest.first() {
        match first.as_str() {
            "--allow-version-mismatch" => rest = &rest[1..],
            "-h" | "--help" | "help" => return Ok(Command::Help),
            _ => break,
        }
    }
    let Some((verb, rest)) = rest.split_first() else {
        return Ok(Command::Help);
    };
    if rest.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Command::Help);
    }
    match verb.as_str() {
        "version" | "--version" | "-v" => Ok(Command::Version),
        "datastore" => parse_datastore(rest),
        "apply" => Ok(Command::Apply {
            file: file_flag(&split(rest, &["-f", "--filename"], &[])?, "apply")?,
        }),
        "create" => Ok(Command::Create {
            file: file_flag(&split(rest, &["-f", "--filename"], &[])?, "create")?,
        }),
        "get" => {
            let p = split(rest, &["-o", "--output"], &[])?;
            kind_arg(&p, "get")?;
            if p.positional.len() > 2 {
                return Err(CtlError::Usage("'get' takes at most one name".into()));
            }
            Ok(Command::GetPools {
                name: p.positional.get(1).cloned(),
                output: match p.value(&["-o", "--output"]) {
                    Some(o) => OutputFormat::parse(o)?,
                    None => OutputFormat::Table,
                },
            })
        }
        "delete" => {
            let p = split(rest, &["-f", "--filename"], &["--skip-not-exists"])?;
            let skip_not_exists = p.switch("--skip-not-exists");
            if let Some(f) = p.value(&["-f", "--filename"]) {
                no_positionals(&p, "delete -f")?;
                return Ok(Command::Delete {
                    target: DeleteTarget::File(f.to_string()),
                    skip_not_exists,
                });
            }
            kind_arg(&p, "delete")?;
            match p.positional.as_slice() {
                [_, name] => Ok(Command::Delete {
                    target: DeleteTarget::Name(name.clone()),
                    skip_not_exists,
                }),
                _ => Err(CtlError::Usage(
                    "usage: calicoctl delete ippool <NAME> | calicoctl delete -f <FILE>".into(),
                )),
            }
        }
        "ipam" => parse_ipam(rest),
        other => Err(CtlError::Usage(format!(
            "unknown command '{other}'; run 'calicoctl --help'"
        ))),
    }
}

fn parse_datastore(rest: &[String]) -> CtlResult<Command> {
    match rest.split_first() {
        Some((sub, rest)) if sub == "init" => {
            let p = split(
                rest,
                &[
                    "--ipv4-pool",
                    "--ipv6-pool",
                    "--ipv4-block-size",
                    "--ipv6-block-size",
                ],
                &["--no-default-pool"],
            )?;
            no_positionals(&p, "datastore init")?;
            let mut o = InitOptions::default();
            if let Some(c) = p.value(&["--ipv4-pool"]) {
                o.ipv4_pool = Some(parse_cidr("--ipv4-pool", c)?);
                o.ipv4_pool_given = true;
            }
            if let Some(c) = p.value(&["--ipv6-pool"]) {
                o.ipv6_pool = Some(parse_cidr("--ipv6-pool", c)?);
            }
            if let Some(b) = p.value(&["--ipv4-block-size"]) {
                o.ipv4_block_size = parse_u8("--ipv4-block-size", b)?;
            }
            if let Some(b) = p.value(&["--ipv6-block-size"]) {
                o.ipv6_block_size = parse_u8("--ipv6-block-size", b)?;
            }
            if p.switch("--no-default-pool") {
                if p.value(&["--ipv4-pool"]).is_some() || p.value(&["--ipv6-pool"]).is_some() {
                    return Err(CtlError::Usage(
                        "--no-default-pool cannot be combined with --ipv4-pool/--ipv6-pool".into(),
                    ));
                }
                o.ipv4_pool = None;
                o.ipv4_pool_given = true;
                o.ipv6_pool = None;
            }
            if o.ipv4_pool.is_some_and(|c| !c.is_ipv4()) {
                return Err(CtlError::Usage("--ipv4-pool must be an IPv4 CIDR".into()));
            }
            if o.ipv6_pool.is_some_and(|c| !c.is_ipv6()) {
                return Err(CtlError::Usage("--ipv6-pool must be an IPv6 CIDR".into()));
            }
            Ok(Command::DatastoreInit(o))
        }
        Some((sub, _)) => Err(CtlError::Usage(format!(
            "unknown datastore command '{sub}' (supported: init)"
        ))),
        None => Err(CtlError::Usage(
            "usage: calicoctl datastore init [--no-default-pool] [--ipv4-pool=<CIDR>] [--ipv6-pool=<CIDR>]"
                .into(),
        )),
    }
}

fn parse_ipam(rest: &[String]) -> CtlResult<Command> {
    match rest.split_first() {
        Some((sub, rest)) if sub == "show" => {
            let p = split(rest, &["--ip"], &["--show-blocks", "--show-configuration"])?;
            no_positionals(&p, "ipam show")?;
            Ok(Command::IpamShow {
                show_blocks: p.switch("--show-blocks"),
                show_configuration: p.switch("--show-configuration"),
                ip: p
                    .value(&["--ip"])
                    .map(|s| parse_ip("--ip", s))
                    .transpose()?,
            })
        }
        Some((sub, rest)) if sub == "check" => {
            no_positionals(&split(rest, &[], &[])?, "ipam check")?;
            Ok(Command::IpamCheck)
        }
        Some((sub, rest)) if sub == "release" => {
            let p = split(rest, &["--ip"], &[])?;
            no_positionals(&p, "ipam release")?;
            let ip = p
                .value(&["--ip"])
                .ok_or_else(|| CtlError::Usage("usage: calicoctl ipam release --ip=<IP>".into()))?;
            Ok(Command::IpamRelease {
                ip: parse_ip("--ip", ip)?,
            })
        }
        Some((sub, _)) => Err(CtlError::Usage(format!(
            "unknown ipam command '{sub}' (supported: show, check, release)"
        ))),
        None => Err(CtlError::Usage(
            "usage: calicoctl ipam (show|check|release) [options]".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> CtlResult<Command> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn verbs_and_flag_spellings() {
        assert_eq!(
            p("get ippools -o yaml").unwrap(),
            Command::GetPools {
                name: None,
                output: OutputFormat::Yaml
            }
        );
        for s in [
            "get ipp p1 --output=json",
            "get pool p1 -ojson",
            "get IPPool p1 -o=json",
        ] {
            assert_eq!(
                p(s).unwrap(),
                Command::GetPools {
                    name: Some("p1".into()),
                    output: OutputFormat::Json
                },
                "{s}"
            );
        }
        assert_eq!(
            p("apply --filename=-").unwrap(),
            Command::Apply { file: "-".into() }
        );
        assert_eq!(
            p("--allow-version-mismatch delete ippool x").unwrap(),
            Command::Delete {
                target: DeleteTarget::Name("x".into()),
                skip_not_exists: false
            }
        );
        assert_eq!(
            p("ipam release --ip 10.0.0.1").unwrap(),
            Command::IpamRelease {
                ip: "10.0.0.1".parse().unwrap()
            }
        );
        assert_eq!(p("").unwrap(), Command::Help);
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
        assert!(e("get nodes").contains("'nodes' is not supported"));
        assert!(e("get ippools -o xml").contains("'xml'"));
        assert!(e("apply").contains("--filename"));
        assert!(e("ipam release --ip nope").contains("'nope'"));
        assert!(e("datastore init --ipv4-pool 10.0.0.1/16").contains("10.0.0.0/16"));
        assert!(e("datastore init --ipv4-pool fd00::/48").contains("IPv4"));
        assert!(e("get ippools --bogus").contains("--bogus"));
        assert!(e("frobnicate").contains("unknown command"));
        assert!(e("get ippools -o").contains("needs a value"));
    }
}
