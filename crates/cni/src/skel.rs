//! The plugin skeleton: read environment and stdin, check versions, dispatch the verb, print
//! the result or the error. A plugin implements [`Plugin`] and its `main` calls [`run`].

use crate::args::CniArgs;
use crate::config::NetConf;
use crate::env::{Command, Env, EnvOutcome};
use crate::error::{CniError, ErrorCode};
use crate::file::{self, NetnsPath};
use crate::result::CniResult;
use crate::version::{self, Version};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// What a plugin does per verb. GC and STATUS succeed by default, as the spec allows for plugins
/// without state to collect or dependencies to report.
pub trait Plugin {
    /// Spec versions this plugin accepts in its config (string-equal match, as Go's skel).
    fn supported_versions(&self) -> &'static [&'static str] {
        version::ALL
    }
    /// Runs once the invocation is validated, before the verb (e.g. to set up logging). An
    /// error fails ADD and CHECK; DEL, GC and STATUS only log it, so a config mistake never
    /// keeps a runtime from cleaning up.
    fn init(&self, _inv: &Invocation) -> Result<(), CniError> {
        Ok(())
    }
    fn add(&self, inv: &Invocation) -> Result<CniResult, CniError>;
    fn del(&self, inv: &Invocation) -> Result<(), CniError>;
    fn check(&self, inv: &Invocation) -> Result<(), CniError>;
    fn gc(&self, _inv: &Invocation) -> Result<(), CniError> {
        Ok(())
    }
    fn status(&self, _inv: &Invocation) -> Result<(), CniError> {
        Ok(())
    }
}

/// Everything one execution was given.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub command: Command,
    pub container_id: String,
    /// `None` when `CNI_NETNS` is empty (DEL after the sandbox is gone).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: CniArgs,
    /// `CNI_ARGS` exactly as received, for delegation.
    pub args_raw: String,
    pub cni_path: Vec<PathBuf>,
    pub config: NetConf,
    /// stdin exactly as received, for delegation.
    pub stdin: Vec<u8>,
}

/// Set once anything (result, error, panic report) has been written to stdout, so a panic
/// after that point cannot add a second JSON document.
static STDOUT_USED: AtomicBool = AtomicBool::new(false);
static CONFIG_VERSION: OnceLock<String> = OnceLock::new();

/// Prints a CNI error for any panic, so the runtime always gets a JSON error instead of a
/// bare Rust backtrace (release builds abort on panic; this hook still runs first).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info.to_string();
        eprintln!("plugin panicked: {msg}");
        if !STDOUT_USED.swap(true, Ordering::SeqCst) {
            let version = CONFIG_VERSION
                .get()
                .map(String::as_str)
                .unwrap_or(version::LATEST);
            let doc = CniError::generic("plugin panicked")
                .details(msg)
                .to_json(version);
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{doc}");
            let _ = out.flush();
        }
    }));
}

/// Largest config accepted on stdin; real ones are kilobytes. Reading is bounded so a runaway
/// writer cannot exhaust memory.
pub const MAX_STDIN: u64 = 16 << 20;

/// Runs a plugin as a process: reads the real environment and stdin, exits with its code.
pub fn run<P: Plugin>(plugin: &P, about: &str) -> ! {
    install_panic_hook();
    let mut stdin = Vec::new();
    let read = std::io::stdin().take(MAX_STDIN + 1).read_to_end(&mut stdin);
    let code = match read {
        Ok(n) if n as u64 > MAX_STDIN => {
            let err = CniError::new(
                ErrorCode::Decode,
                format!("network config on stdin is larger than {MAX_STDIN} bytes"),
            );
            emit_error(&err, version::LATEST, &mut std::io::stdout())
        }
        Ok(_) => run_with(
            plugin,
            about,
            |k| std::env::var(k).ok(),
            &stdin,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        ),
        Err(e) => {
            let err = CniError::new(ErrorCode::Io, format!("error reading from stdin: {e}"));
            emit_error(&err, version::LATEST, &mut std::io::stdout())
        }
    };
    std::process::exit(code)
}

fn emit(out: &mut dyn Write, doc: &serde_json::Value) {
    if STDOUT_USED.swap(true, Ordering::SeqCst) {
        return;
    }
    let _ = writeln!(out, "{doc}");
    let _ = out.flush();
}

fn emit_error(err: &CniError, cni_version: &str, out: &mut dyn Write) -> i32 {
    log::error!("{err}");
    emit(out, &err.to_json(cni_version));
    1
}

/// The version found in stdin, for labelling errors that happen before the config is parsed.
fn sniff_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| version::LATEST.to_string())
}

/// The testable core of [`run`]: returns the exit code.
pub fn run_with<P: Plugin>(
    plugin: &P,
    about: &str,
    get_env: impl Fn(&str) -> Option<String>,
    stdin: &[u8],
    out: &mut dyn Write,
    err_out: &mut dyn Write,
) -> i32 {
    STDOUT_USED.store(false, Ordering::SeqCst);
    let env = match Env::load(get_env) {
        Ok(EnvOutcome::Ready(env)) => env,
        Ok(EnvOutcome::NoCommand) => {
            let _ = writeln!(
                err_out,
                "{about}\nCNI protocol versions supported: {}",
                plugin.supported_versions().join(", ")
            );
            return 0;
        }
        Err(e) => return emit_error(&e, &sniff_version(stdin), out),
    };
    if env.command == Command::Version {
        let doc = serde_json::json!({
            "cniVersion": version::LATEST,
            "supportedVersions": plugin.supported_versions(),
        });
        emit(out, &doc);
        return 0;
    }
    let config = match NetConf::parse(stdin) {
        Ok(c) => c,
        Err(e) => return emit_error(&e, &sniff_version(stdin), out),
    };
    let _ = CONFIG_VERSION.set(config.cni_version.clone());
    let cfg_version = config.cni_version.clone();
    match dispatch(plugin, env, config, stdin) {
        Ok(Some(doc)) => {
            emit(out, &doc);
            0
        }
        Ok(None) => 0,
        Err(e) => emit_error(&e, &cfg_version, out),
    }
}

fn check_version<P: Plugin>(plugin: &P, command: Command, cfg: &str) -> Result<(), CniError> {
    let effective = if cfg.is_empty() { "0.1.0" } else { cfg };
    let supported = plugin.supported_versions();
    let parsed = Version::parse(effective)
        .ok_or_else(|| CniError::new(ErrorCode::Decode, format!("invalid cniVersion {cfg:?}")))?;
    if !supported.contains(&effective) {
        return Err(
            CniError::new(ErrorCode::IncompatibleVersion, "incompatible CNI versions").details(
                format!("config is {effective:?}, plugin supports {supported:?}"),
            ),
        );
    }
    let minimum = match command {
        Command::Check => Some(Version::V0_4_0),
        Command::Gc | Command::Status => Some(Version::V1_1_0),
        _ => None,
    };
    if let Some(min) = minimum {
        if parsed < min {
            return Err(CniError::new(
                ErrorCode::IncompatibleVersion,
                format!("config version does not allow {command}"),
            )
            .details(format!(
                "config is {effective:?}, {command} needs {min} or later"
            )));
        }
    }
    Ok(())
}

/// One rule for `CNI_NETNS` in every plugin, before any plugin code runs: a path that does not
/// exist is an unknown container (3) on ADD and CHECK; anything that is not a network namespace
/// (a regular file, a FIFO, a directory, another namespace kind) is a bad variable (4). DEL
/// treats both like a namespace that is gone (there is nothing to enter; the plugin still
/// releases what it holds). The path is examined without blocking (see [`file::classify_netns`]).
fn classify_netns(env: &mut Env) -> Result<(), CniError> {
    let Some(path) = env.netns.as_ref() else {
        return Ok(());
    };
    let problem = match file::classify_netns(path) {
        NetnsPath::Netns => return Ok(()),
        NetnsPath::Missing => CniError::new(
            ErrorCode::UnknownContainer,
            format!("CNI_NETNS {path:?} does not exist"),
        ),
        NetnsPath::NotNetns(kind) => CniError::new(
            ErrorCode::InvalidEnvironment,
            format!("CNI_NETNS {path:?} is a {kind}, not a network namespace"),
        ),
        NetnsPath::Unreadable(e) => CniError::new(
            ErrorCode::InvalidEnvironment,
            format!("CNI_NETNS {path:?} cannot be opened: {e}"),
        ),
    };
    if env.command == Command::Del {
        log::warn!("{problem}; deleting as if the namespace were gone");
        env.netns = None;
        return Ok(());
    }
    Err(problem)
}

/// Refuses to work on the plugin's own network namespace unless CNI_NETNS_OVERRIDE says so:
/// configuring "the container" would then reconfigure the host.
fn check_not_own_netns(env: &Env) -> Result<(), CniError> {
    use std::os::unix::fs::MetadataExt;
    let Some(path) = env.netns.as_ref().filter(|_| !env.netns_override) else {
        return Ok(());
    };
    let (Ok(theirs), Ok(ours)) = (
        std::fs::metadata(path),
        std::fs::metadata("/proc/thread-self/ns/net"),
    ) else {
        return Ok(());
    };
    if theirs.dev() == ours.dev() && theirs.ino() == ours.ino() {
        return Err(CniError::new(
            ErrorCode::InvalidNetns,
            format!("CNI_NETNS {:?} is the plugin's own network namespace", path),
        ));
    }
    Ok(())
}

fn dispatch<P: Plugin>(
    plugin: &P,
    mut env: Env,
    config: NetConf,
    stdin: &[u8],
) -> Result<Option<serde_json::Value>, CniError> {
    check_version(plugin, env.command, &config.cni_version)?;
    if matches!(env.command, Command::Add | Command::Check | Command::Del) {
        classify_netns(&mut env)?;
        check_not_own_netns(&env)?;
    }
    let inv = Invocation {
        command: env.command,
        container_id: env.container_id,
        netns: env.netns,
        ifname: env.ifname,
        args: env.args,
        args_raw: env.args_raw,
        cni_path: env.cni_path,
        config,
        stdin: stdin.to_vec(),
    };
    if let Err(e) = plugin.init(&inv) {
        if matches!(inv.command, Command::Add | Command::Check) {
            return Err(e);
        }
        log::warn!(
            "{e}; continuing with defaults so {} can clean up",
            inv.command
        );
    }
    log::debug!(
        "{} container={} ifname={} netns={:?}",
        inv.command,
        inv.container_id,
        inv.ifname,
        inv.netns
    );
    match inv.command {
        Command::Add => {
            let result = plugin.add(&inv)?;
            let version = if inv.config.cni_version.is_empty() {
                "0.1.0"
            } else {
                &inv.config.cni_version
            };
            result.to_value(version).map(Some)
        }
        Command::Del => plugin.del(&inv).map(|_| None),
        Command::Check => plugin.check(&inv).map(|_| None),
        Command::Gc => plugin.gc(&inv).map(|_| None),
        Command::Status => plugin.status(&inv).map(|_| None),
        Command::Version => unreachable!("VERSION is answered before the config is read"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::IpConfig;
    use serde_json::{json, Value};
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Records which verb ran and answers ADD with a fixed IP.
    #[derive(Default)]
    struct Fake {
        calls: RefCell<Vec<Command>>,
        fail_del: bool,
        versions: Option<&'static [&'static str]>,
    }

    impl Plugin for Fake {
        fn supported_versions(&self) -> &'static [&'static str] {
            self.versions.unwrap_or(version::ALL)
        }
        fn add(&self, inv: &Invocation) -> Result<CniResult, CniError> {
            self.calls.borrow_mut().push(inv.command);
            Ok(CniResult {
                ips: vec![IpConfig {
                    address: "10.0.0.2/24".parse().unwrap(),
                    gateway: None,
                    interface: None,
                }],
                ..Default::default()
            })
        }
        fn del(&self, inv: &Invocation) -> Result<(), CniError> {
            self.calls.borrow_mut().push(inv.command);
            if self.fail_del {
                return Err(CniError::new(ErrorCode::TryAgainLater, "datastore down"));
            }
            Ok(())
        }
        fn check(&self, inv: &Invocation) -> Result<(), CniError> {
            self.calls.borrow_mut().push(inv.command);
            Ok(())
        }
    }

    struct Outcome {
        code: i32,
        stdout: String,
        stderr: String,
    }

    impl Outcome {
        fn json(&self) -> Value {
            serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", self.stdout))
        }
    }

    fn exec(p: &Fake, cmd: &str, stdin: Value, extra: &[(&str, &str)]) -> Outcome {
        let mut env: HashMap<String, String> = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "ctr1"),
            // Our own netns with the override: a real namespace that needs no root to open.
            ("CNI_NETNS", "/proc/thread-self/ns/net"),
            ("CNI_NETNS_OVERRIDE", "1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_with(
            p,
            "fake plugin v0",
            |k| env.get(k).cloned(),
            stdin.to_string().as_bytes(),
            &mut out,
            &mut err,
        );
        Outcome {
            code,
            stdout: String::from_utf8(out).unwrap(),
            stderr: String::from_utf8(err).unwrap(),
        }
    }

    fn conf(v: &str) -> Value {
        json!({"cniVersion": v, "name": "net1", "type": "fake"})
    }

    #[test]
    fn version_output() {
        let o = exec(
            &Fake::default(),
            "VERSION",
            json!({"cniVersion":"0.3.1"}),
            &[],
        );
        assert_eq!(o.code, 0);
        assert_eq!(
            o.json(),
            json!({"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]})
        );
        // VERSION ignores stdin entirely, even garbage.
        let mut out = Vec::new();
        let code = run_with(
            &Fake::default(),
            "x",
            |k| (k == "CNI_COMMAND").then(|| "VERSION".to_string()),
            b"not json",
            &mut out,
            &mut Vec::new(),
        );
        assert_eq!(code, 0);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("supportedVersions"));
    }

    #[test]
    fn add_prints_result_in_config_version() {
        for v in version::ALL {
            let p = Fake::default();
            let o = exec(&p, "ADD", conf(v), &[]);
            assert_eq!(o.code, 0, "{}", o.stdout);
            let doc = o.json();
            assert_eq!(doc["cniVersion"], *v);
            assert_eq!(*p.calls.borrow(), vec![Command::Add]);
            assert_eq!(o.stdout.lines().count(), 1);
        }
    }

    #[test]
    fn del_and_check_print_nothing() {
        let p = Fake::default();
        let o = exec(&p, "DEL", conf("1.0.0"), &[]);
        assert_eq!((o.code, o.stdout.as_str()), (0, ""));
        let o = exec(&p, "CHECK", conf("1.0.0"), &[]);
        assert_eq!((o.code, o.stdout.as_str()), (0, ""));
        assert_eq!(*p.calls.borrow(), vec![Command::Del, Command::Check]);
    }

    #[test]
    fn plugin_errors_keep_their_code() {
        let p = Fake {
            fail_del: true,
            ..Default::default()
        };
        let o = exec(&p, "DEL", conf("0.4.0"), &[]);
        assert_eq!(o.code, 1);
        assert_eq!(
            o.json(),
            json!({"cniVersion":"0.4.0","code":11,"msg":"datastore down"})
        );
    }

    #[test]
    fn incompatible_version_names_both() {
        let p = Fake {
            versions: Some(&["0.3.0", "0.3.1"]),
            ..Default::default()
        };
        let o = exec(&p, "ADD", conf("1.0.0"), &[]);
        let doc = o.json();
        assert_eq!(o.code, 1);
        assert_eq!(doc["code"], 1);
        let details = doc["details"].as_str().unwrap();
        assert!(
            details.contains("1.0.0") && details.contains("0.3.1"),
            "{details}"
        );
        assert!(p.calls.borrow().is_empty());
        let o = exec(&Fake::default(), "ADD", conf("0.9.0"), &[]);
        assert_eq!(o.json()["code"], 1);
        let o = exec(&Fake::default(), "ADD", conf("bogus"), &[]);
        assert_eq!(o.json()["code"], 6);
    }

    #[test]
    fn check_gc_status_version_floors() {
        for (cmd, low, ok) in [
            ("CHECK", "0.3.1", "0.4.0"),
            ("GC", "1.0.0", "1.1.0"),
            ("STATUS", "1.0.0", "1.1.0"),
        ] {
            let o = exec(&Fake::default(), cmd, conf(low), &[]);
            assert_eq!(o.json()["code"], 1, "{cmd} at {low}");
            assert!(o.json()["msg"].as_str().unwrap().contains(cmd));
            let o = exec(&Fake::default(), cmd, conf(ok), &[]);
            assert_eq!(o.code, 0, "{cmd} at {ok}: {}", o.stdout);
        }
    }

    #[test]
    fn env_errors_are_code_4_with_config_version() {
        let o = exec(
            &Fake::default(),
            "ADD",
            conf("0.3.1"),
            &[("CNI_IFNAME", "")],
        );
        let doc = o.json();
        assert_eq!(doc["code"], 4);
        assert_eq!(doc["cniVersion"], "0.3.1");
        assert!(doc["msg"].as_str().unwrap().contains("CNI_IFNAME"));
    }

    #[test]
    fn bad_config_codes() {
        let o = exec(&Fake::default(), "ADD", json!({"cniVersion":"1.0.0"}), &[]);
        assert_eq!(o.json()["code"], 7);
        let mut out = Vec::new();
        let code = run_with(
            &Fake::default(),
            "x",
            |k| match k {
                "CNI_COMMAND" => Some("DEL".into()),
                "CNI_CONTAINERID" => Some("c".into()),
                "CNI_IFNAME" => Some("eth0".into()),
                "CNI_PATH" => Some("/x".into()),
                _ => None,
            },
            b"{broken",
            &mut out,
            &mut Vec::new(),
        );
        assert_eq!(code, 1);
        let doc: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["code"], 6);
    }

    #[test]
    fn no_command_prints_about_to_stderr() {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = run_with(
            &Fake::default(),
            "fake plugin v0",
            |_| None,
            b"",
            &mut out,
            &mut err,
        );
        assert_eq!(code, 0);
        assert!(out.is_empty());
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.contains("fake plugin v0") && err.contains("1.1.0"),
            "{err}"
        );
    }

    #[test]
    fn own_netns_is_refused_unless_overridden() {
        let o = exec(
            &Fake::default(),
            "ADD",
            conf("1.0.0"),
            &[
                ("CNI_NETNS", "/proc/thread-self/ns/net"),
                ("CNI_NETNS_OVERRIDE", "0"),
            ],
        );
        assert_eq!(o.json()["code"], 8);
        let o = exec(
            &Fake::default(),
            "ADD",
            conf("1.0.0"),
            &[
                ("CNI_NETNS", "/proc/thread-self/ns/net"),
                ("CNI_NETNS_OVERRIDE", "1"),
            ],
        );
        assert_eq!(o.code, 0, "{}", o.stdout);
        assert!(o.stderr.is_empty());
    }

    #[test]
    fn legacy_result_without_ip_is_an_error() {
        struct NoIp;
        impl Plugin for NoIp {
            fn add(&self, _: &Invocation) -> Result<CniResult, CniError> {
                Ok(CniResult::default())
            }
            fn del(&self, _: &Invocation) -> Result<(), CniError> {
                Ok(())
            }
            fn check(&self, _: &Invocation) -> Result<(), CniError> {
                Ok(())
            }
        }
        let mut out = Vec::new();
        let env: HashMap<&str, &str> = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_NETNS", "/proc/thread-self/ns/net"),
            ("CNI_NETNS_OVERRIDE", "1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/x"),
        ]
        .into();
        let code = run_with(
            &NoIp,
            "x",
            |k| env.get(k).map(|v| v.to_string()),
            conf("0.2.0").to_string().as_bytes(),
            &mut out,
            &mut Vec::new(),
        );
        assert_eq!(code, 1);
        let doc: Value = serde_json::from_slice(&out).unwrap();
        assert!(doc["msg"]
            .as_str()
            .unwrap()
            .contains("no valid IP addresses"));
    }

    #[test]
    fn netns_rule_is_the_same_for_every_plugin() {
        let d = tempfile::tempdir().unwrap();
        let reg = d.path().join("reg");
        std::fs::write(&reg, "").unwrap();
        let reg = reg.to_str().unwrap();
        let gone = d.path().join("gone");
        let gone = gone.to_str().unwrap();
        for (cmd, path, code) in [
            ("ADD", gone, 3),
            ("CHECK", gone, 3),
            ("ADD", reg, 4),
            ("CHECK", reg, 4),
            ("ADD", "/proc/thread-self/ns/uts", 4),
        ] {
            let p = Fake::default();
            let o = exec(&p, cmd, conf("1.0.0"), &[("CNI_NETNS", path)]);
            assert_eq!(o.json()["code"], code, "{cmd} {path}: {}", o.stdout);
            assert!(o.json()["msg"].as_str().unwrap().contains("CNI_NETNS"));
            assert!(p.calls.borrow().is_empty());
        }
        // DEL goes ahead as if the namespace were gone.
        for path in [gone, reg] {
            let p = Fake::default();
            let o = exec(&p, "DEL", conf("1.0.0"), &[("CNI_NETNS", path)]);
            assert_eq!(o.code, 0, "{}", o.stdout);
            assert_eq!(*p.calls.borrow(), vec![Command::Del]);
        }
    }

    #[test]
    fn init_errors_fail_add_but_not_del() {
        struct BadInit;
        impl Plugin for BadInit {
            fn init(&self, _: &Invocation) -> Result<(), CniError> {
                Err(CniError::new(
                    ErrorCode::InvalidConfig,
                    "log_file_max_size is bad",
                ))
            }
            fn add(&self, _: &Invocation) -> Result<CniResult, CniError> {
                Ok(CniResult::default())
            }
            fn del(&self, _: &Invocation) -> Result<(), CniError> {
                Ok(())
            }
            fn check(&self, _: &Invocation) -> Result<(), CniError> {
                Ok(())
            }
        }
        let env: HashMap<&str, &str> = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_NETNS", "/proc/thread-self/ns/net"),
            ("CNI_NETNS_OVERRIDE", "1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/x"),
        ]
        .into();
        for (cmd, code) in [("ADD", 1), ("DEL", 0)] {
            let mut out = Vec::new();
            let rc = run_with(
                &BadInit,
                "x",
                |k| match k {
                    "CNI_COMMAND" => Some(cmd.to_string()),
                    k => env.get(k).map(|v| v.to_string()),
                },
                conf("1.0.0").to_string().as_bytes(),
                &mut out,
                &mut Vec::new(),
            );
            assert_eq!(rc, code, "{cmd}: {}", String::from_utf8_lossy(&out));
        }
    }
}
