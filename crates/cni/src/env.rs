//! The `CNI_*` environment of one plugin execution, validated the way the spec describes.

use crate::args::CniArgs;
use crate::error::{CniError, ErrorCode};
use std::fmt;
use std::path::PathBuf;

/// The verb in `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Gc,
    Status,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Gc => "GC",
            Command::Status => "STATUS",
        }
    }

    /// Variables that must be present (non-empty) for this verb.
    fn required(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => {
                &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
            }
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
            Command::Gc => &["CNI_PATH"],
            Command::Version | Command::Status => &[],
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The validated environment.
#[derive(Debug, Clone)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    /// `None` when `CNI_NETNS` is empty (allowed on DEL).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: CniArgs,
    /// The raw `CNI_ARGS` string, kept for delegation.
    pub args_raw: String,
    pub cni_path: Vec<PathBuf>,
    /// `CNI_NETNS_OVERRIDE`: skip the "netns is my own" check.
    pub netns_override: bool,
}

/// Why no plugin verb should run.
#[derive(Debug)]
pub enum EnvOutcome {
    /// No `CNI_COMMAND` at all: print the about text and exit 0.
    NoCommand,
    /// A usable environment.
    Ready(Env),
}

impl Env {
    /// Reads and validates the environment through `get` (so tests need not touch the process env).
    pub fn load(get: impl Fn(&str) -> Option<String>) -> Result<EnvOutcome, CniError> {
        let var = |k: &str| get(k).unwrap_or_default();
        let cmd_raw = var("CNI_COMMAND");
        if cmd_raw.is_empty() {
            return Ok(EnvOutcome::NoCommand);
        }
        let command = Command::parse(&cmd_raw).ok_or_else(|| {
            CniError::new(
                ErrorCode::InvalidEnvironment,
                format!("unknown CNI_COMMAND: {cmd_raw}"),
            )
        })?;
        let missing: Vec<&str> = command
            .required()
            .iter()
            .copied()
            .filter(|k| var(k).is_empty())
            .collect();
        if !missing.is_empty() {
            return Err(CniError::new(
                ErrorCode::InvalidEnvironment,
                format!("required env variables [{}] missing", missing.join(",")),
            ));
        }
        let container_id = var("CNI_CONTAINERID");
        let ifname = var("CNI_IFNAME");
        if matches!(command, Command::Add | Command::Del | Command::Check) {
            validate_container_id(&container_id)?;
            validate_ifname(&ifname)?;
        }
        let args_raw = var("CNI_ARGS");
        let args = CniArgs::parse(&args_raw)?;
        let netns = Some(var("CNI_NETNS"))
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        let cni_path = var("CNI_PATH")
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
        let ov = var("CNI_NETNS_OVERRIDE");
        Ok(EnvOutcome::Ready(Env {
            command,
            container_id,
            netns,
            ifname,
            args,
            args_raw,
            cni_path,
            netns_override: ov == "1" || ov.eq_ignore_ascii_case("true"),
        }))
    }
}

/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`, the rule for container ids and network names.
pub fn is_valid_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn validate_container_id(id: &str) -> Result<(), CniError> {
    if is_valid_identifier(id) {
        Ok(())
    } else {
        Err(CniError::new(
            ErrorCode::InvalidEnvironment,
            "invalid characters in CNI_CONTAINERID",
        )
        .details(id.to_string()))
    }
}

/// Interface names: 1–15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let problem = if name.is_empty() {
        Some("is empty")
    } else if name.len() > 15 {
        Some("is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("may not be . or ..")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        Some("may not contain '/', ':' or whitespace")
    } else {
        None
    };
    match problem {
        Some(p) => Err(CniError::new(
            ErrorCode::InvalidEnvironment,
            format!("invalid CNI_IFNAME {name:?}: interface name {p}"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<EnvOutcome, CniError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::load(|k| m.get(k).cloned())
    }

    fn ready(vars: &[(&str, &str)]) -> Env {
        match load(vars).unwrap() {
            EnvOutcome::Ready(e) => e,
            EnvOutcome::NoCommand => panic!("no command"),
        }
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];

    fn with(
        base: &[(&'static str, &'static str)],
        k: &'static str,
        v: &'static str,
    ) -> Vec<(&'static str, &'static str)> {
        let mut out: Vec<_> = base.iter().copied().filter(|(bk, _)| *bk != k).collect();
        out.push((k, v));
        out
    }

    #[test]
    fn complete_add_env() {
        let e = ready(ADD);
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.netns, Some(PathBuf::from("/run/netns/x")));
        assert_eq!(e.cni_path.len(), 2);
        assert!(!e.netns_override);
    }

    #[test]
    fn no_command_is_about() {
        assert!(matches!(load(&[]).unwrap(), EnvOutcome::NoCommand));
    }

    #[test]
    fn unknown_command() {
        let e = load(&[("CNI_COMMAND", "FROB")]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidEnvironment);
        assert!(e.msg.contains("FROB"));
    }

    #[test]
    fn missing_vars_are_named() {
        let e = load(&[("CNI_COMMAND", "ADD")]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidEnvironment);
        assert_eq!(
            e.msg,
            "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"
        );
        let e = load(&with(ADD, "CNI_NETNS", "")).unwrap_err();
        assert_eq!(e.msg, "required env variables [CNI_NETNS] missing");
        let e = load(&[("CNI_COMMAND", "DEL"), ("CNI_PATH", "/x")]).unwrap_err();
        assert_eq!(
            e.msg,
            "required env variables [CNI_CONTAINERID,CNI_IFNAME] missing"
        );
        let e = load(&[("CNI_COMMAND", "GC")]).unwrap_err();
        assert_eq!(e.msg, "required env variables [CNI_PATH] missing");
    }

    #[test]
    fn del_allows_empty_netns() {
        let e = ready(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/x"),
        ]);
        assert_eq!(e.netns, None);
    }

    #[test]
    fn version_and_status_need_nothing() {
        assert_eq!(
            ready(&[("CNI_COMMAND", "VERSION")]).command,
            Command::Version
        );
        assert_eq!(ready(&[("CNI_COMMAND", "STATUS")]).command, Command::Status);
    }

    #[test]
    fn container_id_rules() {
        for bad in ["-abc", "a b", "a/b", "_x", "ab$"] {
            let e = load(&with(ADD, "CNI_CONTAINERID", bad)).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidEnvironment, "{bad}");
            assert!(e.msg.contains("CNI_CONTAINERID"));
        }
        for good in ["a", "0abc-DEF_1.2", "cnitool-0123456789abcdef0123"] {
            ready(&with(ADD, "CNI_CONTAINERID", good));
        }
    }

    #[test]
    fn ifname_rules() {
        for bad in [".", "..", "a/b", "a:b", "a b", "a\tb", "0123456789abcdef"] {
            let e = load(&with(ADD, "CNI_IFNAME", bad)).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidEnvironment, "{bad}");
            assert!(e.msg.contains("CNI_IFNAME"), "{}", e.msg);
        }
        ready(&with(ADD, "CNI_IFNAME", "0123456789abcde"));
        ready(&with(ADD, "CNI_IFNAME", "eth0.100"));
    }

    #[test]
    fn bad_cni_args_are_code_4() {
        let e = load(&with(ADD, "CNI_ARGS", "A=1=2")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidEnvironment);
        let e = ready(&with(ADD, "CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p"));
        assert_eq!(e.args.k8s_pod_name(), Some("p"));
    }

    #[test]
    fn netns_override_flag() {
        assert!(ready(&with(ADD, "CNI_NETNS_OVERRIDE", "true")).netns_override);
        assert!(ready(&with(ADD, "CNI_NETNS_OVERRIDE", "1")).netns_override);
    }
}
