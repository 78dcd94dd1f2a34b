//! install-cni's command line: flags (clap), the two layouts it runs in, and the `SLEEP=true`
//! watch loop. `bins/install-cni` only hands it the process's arguments and environment.
//!
//! Layouts: run as `install-cni` it works on this host's own directories (`/opt/cni/bin`,
//! `/etc/cni/net.d`). Run under the name `install` — how Calico's `calico/cni` image and the
//! manifests that use it call the installer (`/opt/cni/bin/install`) — it takes that image's
//! contract instead: the host's directories mounted at `/host/opt/cni/bin` and
//! `/host/etc/cni/net.d`, `CNI_NET_DIR` (default `/etc/cni/net.d`) as the host's view of the
//! conf dir, and `SLEEP` defaulting to true as in Calico's installer. Flags win in both.

use crate::settings::DEFAULT_SERVICEACCOUNT_DIR;
use crate::{InstallError, InstallReport, Installer, Paths, Settings};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgAction, CommandFactory, Parser};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often `SLEEP=true` looks for rotated inputs (Calico's installer polls every 10 s too).
pub const WATCH_INTERVAL: Duration = Duration::from_secs(10);

/// The program name Calico's image runs the installer under (`/opt/cni/bin/install`).
pub const IMAGE_PROGRAM_NAME: &str = "install";

/// Exit codes: Calico's installer exits 1 on any failure; 2 is a usage error.
pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

const ENV_HELP: &str = "\
Reads Calico's installer environment: CNI_NETWORK_CONFIG, CNI_NETWORK_CONFIG_FILE, CNI_CONF_NAME,
CNI_OLD_CONF_NAME, CNI_NET_DIR, CNI_MTU, KUBERNETES_NODE_NAME, SKIP_CNI_BINARIES,
UPDATE_CNI_BINARIES, TLS_ASSETS_DIR, SLEEP, SKIP_TLS_VERIFY, KUBERNETES_SERVICE_*, LOG_*,
DATASTORE_TYPE, ETCD_*, REQUIRE_MTU_FILE, CALICO_API_GROUP.

Run as `install` (Calico's image: /opt/cni/bin/install), the defaults are the image's:
--bin-dir /host/opt/cni/bin, --conf-dir /host/etc/cni/net.d, CNI_NET_DIR /etc/cni/net.d, SLEEP true.";

/// The flags.
#[derive(Parser, Debug, Default, PartialEq)]
#[command(
    name = "install-cni",
    version,
    disable_version_flag = true,
    about = "Installs the suite's CNI plugins, network config and kubeconfig on this host.",
    after_help = ENV_HELP
)]
pub struct Flags {
    /// CNI bin dir [default: /opt/cni/bin]
    #[arg(long, value_name = "DIR", value_parser = non_empty_path)]
    pub bin_dir: Option<PathBuf>,
    /// CNI conf dir [default: $CNI_NET_DIR or /etc/cni/net.d]
    #[arg(long, value_name = "DIR", value_parser = non_empty_path)]
    pub conf_dir: Option<PathBuf>,
    /// Where the suite's binaries are [default: next to this program]
    #[arg(long, value_name = "DIR", value_parser = non_empty_path)]
    pub source_dir: Option<PathBuf>,
    /// token + ca.crt for the kubeconfig [default: /var/run/secrets/kubernetes.io/serviceaccount]
    #[arg(long, value_name = "DIR", value_parser = non_empty_path)]
    pub serviceaccount_dir: Option<PathBuf>,
    /// Remove what a previous install wrote, and nothing else
    #[arg(long)]
    pub uninstall: bool,
    /// Print the version
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    pub version: (),
}

/// A directory flag given as the empty string.
#[derive(Debug, thiserror::Error)]
#[error("needs a non-empty value")]
pub struct EmptyPath;

/// An empty directory flag is a mistake, not "the current directory".
fn non_empty_path(s: &str) -> Result<PathBuf, EmptyPath> {
    if s.is_empty() {
        return Err(EmptyPath);
    }
    Ok(PathBuf::from(s))
}

/// Why the command failed after its flags parsed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Settings, install or uninstall failed (the error names the path and action).
    #[error(transparent)]
    Install(#[from] InstallError),
    /// No `--source-dir` and the program's own directory is unknown.
    #[error("cannot find the directory of install-cni; pass --source-dir")]
    NoSourceDir,
}

/// Where the installer's defaults point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// This host's own directories (`install-cni` run on the node or by a package).
    Host,
    /// Calico's image: host directories under `/host`, SLEEP defaults to true.
    Image,
}

impl Layout {
    /// The layout for a program invoked as `argv0`.
    pub fn for_program(argv0: &str) -> Layout {
        match Path::new(argv0).file_name() {
            Some(n) if n == IMAGE_PROGRAM_NAME => Layout::Image,
            _ => Layout::Host,
        }
    }

    fn default_bin_dir(self) -> &'static str {
        match self {
            Layout::Host => "/opt/cni/bin",
            Layout::Image => "/host/opt/cni/bin",
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    Run(Flags),
    /// Help or version text for stdout.
    Print(String),
    /// A usage error for stderr.
    Usage(String),
}

/// Parses `args` (without the program name).
pub fn parse(args: &[String]) -> Parsed {
    let argv = std::iter::once("install-cni".to_string()).chain(args.iter().cloned());
    match Flags::try_parse_from(argv) {
        Ok(f) => Parsed::Run(f),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            Parsed::Print(e.render().to_string())
        }
        Err(e) => Parsed::Usage(usage_message(&e)),
    }
}

/// A one-line reason naming the argument, then the usage.
fn usage_message(e: &clap::Error) -> String {
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.split_whitespace().next().unwrap_or(s).to_string(),
        _ => String::new(),
    };
    let reason = match e.kind() {
        ErrorKind::UnknownArgument => format!("unknown argument {arg:?}"),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => match e
            .get(ContextKind::InvalidValue)
        {
            Some(ContextValue::String(v)) if !v.is_empty() => format!("{arg}: invalid value {v:?}"),
            _ => format!("{arg} needs a value"),
        },
        _ if arg.is_empty() => e.kind().to_string(),
        _ => format!("{arg}: {}", e.kind()),
    };
    format!("{reason}\n\n{}", Flags::command().render_usage())
}

/// Resolves flags, layout and environment into an installer and whether to keep watching.
pub fn installer(
    flags: &Flags,
    layout: Layout,
    env: &dyn Fn(&str) -> Option<String>,
    program_dir: Option<PathBuf>,
) -> Result<(Installer, bool), CliError> {
    let mut settings = Settings::from_lookup(env)?;
    let unset = |k: &str| env(k).is_none_or(|v| v.is_empty());
    if layout == Layout::Image {
        // The config must name the host's paths, not the container's /host/... mounts.
        if settings.net_dir.is_none() {
            settings.net_dir = Some("/etc/cni/net.d".into());
        }
        // Calico's installer sleeps unless told otherwise.
        if unset("SLEEP") {
            settings.sleep = true;
        }
    }
    let source_dir = match (&flags.source_dir, program_dir) {
        (Some(d), _) => d.clone(),
        (None, Some(d)) => d,
        (None, None) => return Err(CliError::NoSourceDir),
    };
    let conf_dir = match (&flags.conf_dir, layout) {
        (Some(d), _) => d.clone(),
        (None, Layout::Image) => "/host/etc/cni/net.d".into(),
        (None, Layout::Host) => settings
            .net_dir
            .clone()
            .unwrap_or_else(|| "/etc/cni/net.d".into()),
    };
    // Paths end up inside the config and the manifest: make them absolute.
    let abs = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    let paths = Paths {
        bin_dir: abs(flags
            .bin_dir
            .clone()
            .unwrap_or_else(|| layout.default_bin_dir().into())),
        conf_dir: abs(conf_dir),
        source_dir: abs(source_dir),
        serviceaccount_dir: abs(flags
            .serviceaccount_dir
            .clone()
            .unwrap_or_else(|| DEFAULT_SERVICEACCOUNT_DIR.into())),
    };
    let sleep = settings.sleep;
    Ok((Installer::new(paths, settings), sleep))
}

/// The whole program: `args[0]` is the program name. Returns the exit code.
pub fn main(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let program = args.first().map_or("install-cni", String::as_str);
    let flags = match parse(args.get(1..).unwrap_or_default()) {
        Parsed::Run(f) => f,
        Parsed::Print(text) => {
            let _ = write!(out, "{text}");
            return EXIT_OK;
        }
        Parsed::Usage(msg) => {
            let _ = writeln!(err, "install-cni: {msg}");
            return EXIT_USAGE;
        }
    };
    let program_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from));
    let result = installer(&flags, Layout::for_program(program), env, program_dir).and_then(
        |(inst, sleep)| {
            if flags.uninstall {
                Ok(uninstall(&inst)?)
            } else {
                install(&inst)?;
                if sleep {
                    watch(&inst, WATCH_INTERVAL, || true);
                }
                Ok(())
            }
        },
    );
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => {
            let _ = writeln!(err, "install-cni: error: {e}");
            EXIT_FAILED
        }
    }
}

fn install(inst: &Installer) -> Result<InstallReport, InstallError> {
    let r = inst.install()?;
    if let Some(v) = &r.plugin_version {
        log::info!("CNI plugin version: {v}");
    }
    if let Some(k) = &r.kubeconfig {
        log::info!("wrote {}", k.display());
    }
    if let Some(o) = &r.removed_old_conf {
        log::info!("removed old config {}", o.display());
    }
    log::info!("wrote {}", r.conf_path.display());
    Ok(r)
}

fn uninstall(inst: &Installer) -> Result<(), InstallError> {
    let r = inst.uninstall()?;
    if !r.had_manifest {
        log::warn!(
            "no install manifest in {}: nothing recorded as installed, nothing removed",
            inst.paths.conf_dir.display()
        );
    }
    for p in &r.removed {
        log::info!("removed {}", p.display());
    }
    for p in &r.kept_modified {
        log::warn!("kept {}: changed since install-cni wrote it", p.display());
    }
    Ok(())
}

/// Calico's long-running container mode: stays up (so the pod is not restarted) and keeps the
/// node's copies of rotated tokens, certificates and template current, checking every
/// `interval` while `keep_going()` says so. Returns how many times it installed again.
pub fn watch(inst: &Installer, interval: Duration, mut keep_going: impl FnMut() -> bool) -> usize {
    log::info!(
        "done; SLEEP=true: checking the service-account token, etcd TLS assets and template every {}s",
        interval.as_secs()
    );
    let mut last = inst.inputs_fingerprint();
    let mut reinstalls = 0;
    while keep_going() {
        std::thread::sleep(interval);
        match inst.reinstall_if_changed(&mut last) {
            Ok(Some(r)) => {
                reinstalls += 1;
                log::info!(
                    "inputs changed: installed again, wrote {}",
                    r.conf_path.display()
                );
            }
            Ok(None) => {}
            Err(e) => log::error!("inputs changed but installing again failed (retrying): {e}"),
        }
    }
    reinstalls
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn flags(a: &[&str]) -> Flags {
        match parse(&args(a)) {
            Parsed::Run(f) => f,
            other => panic!("{a:?}: {other:?}"),
        }
    }

    #[test]
    fn flags_take_separate_and_inline_values() {
        let f = flags(&[
            "--bin-dir",
            "/b",
            "--conf-dir=/c",
            "--source-dir",
            "s",
            "--serviceaccount-dir=/sa",
            "--uninstall",
        ]);
        assert_eq!(f.bin_dir.as_deref(), Some(Path::new("/b")));
        assert_eq!(f.conf_dir.as_deref(), Some(Path::new("/c")));
        assert_eq!(f.source_dir.as_deref(), Some(Path::new("s")));
        assert_eq!(f.serviceaccount_dir.as_deref(), Some(Path::new("/sa")));
        assert!(f.uninstall);
        assert_eq!(flags(&[]), Flags::default());
    }

    #[test]
    fn usage_errors_name_the_argument() {
        for (a, needle) in [
            (&["--frobnicate"][..], "unknown argument \"--frobnicate\""),
            (&["--bin-dir"][..], "--bin-dir needs a value"),
            (&["--conf-dir="][..], "--conf-dir needs a value"),
            (&["--uninstall=yes"][..], "--uninstall"),
            (&["positional"][..], "unknown argument \"positional\""),
        ] {
            match parse(&args(a)) {
                Parsed::Usage(m) => {
                    assert!(m.contains(needle), "{a:?}: {m}");
                    assert!(m.contains("Usage:"), "{a:?}: {m}");
                }
                other => panic!("{a:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn help_and_version_are_printed() {
        for a in [["--help"], ["-h"]] {
            let Parsed::Print(t) = parse(&args(&a)) else {
                panic!("{a:?}")
            };
            assert!(
                t.contains("--uninstall") && t.contains("CNI_NETWORK_CONFIG"),
                "{t}"
            );
        }
        for a in [["-v"], ["--version"]] {
            let Parsed::Print(t) = parse(&args(&a)) else {
                panic!("{a:?}")
            };
            assert_eq!(
                t.trim(),
                format!("install-cni {}", env!("CARGO_PKG_VERSION"))
            );
        }
    }

    #[test]
    fn the_program_name_picks_the_layout() {
        assert_eq!(Layout::for_program("/opt/cni/bin/install"), Layout::Image);
        assert_eq!(Layout::for_program("install"), Layout::Image);
        assert_eq!(Layout::for_program("/usr/bin/install-cni"), Layout::Host);
        assert_eq!(Layout::for_program("/opt/cni/bin/installer"), Layout::Host);
    }

    #[test]
    fn host_layout_defaults() {
        let (inst, sleep) = installer(
            &Flags::default(),
            Layout::Host,
            &env_of(&[]),
            Some("/src".into()),
        )
        .unwrap();
        assert_eq!(inst.paths.bin_dir, Path::new("/opt/cni/bin"));
        assert_eq!(inst.paths.conf_dir, Path::new("/etc/cni/net.d"));
        assert_eq!(inst.paths.source_dir, Path::new("/src"));
        assert_eq!(
            inst.paths.serviceaccount_dir,
            Path::new(DEFAULT_SERVICEACCOUNT_DIR)
        );
        assert!(!sleep);
        // CNI_NET_DIR is the conf dir when no flag names one.
        let (inst, _) = installer(
            &Flags::default(),
            Layout::Host,
            &env_of(&[("CNI_NET_DIR", "/n")]),
            Some("/src".into()),
        )
        .unwrap();
        assert_eq!(inst.paths.conf_dir, Path::new("/n"));
    }

    #[test]
    fn image_layout_is_calicos_contract() {
        let (inst, sleep) = installer(
            &Flags::default(),
            Layout::Image,
            &env_of(&[]),
            Some("/opt/cni/bin".into()),
        )
        .unwrap();
        assert_eq!(inst.paths.bin_dir, Path::new("/host/opt/cni/bin"));
        assert_eq!(inst.paths.conf_dir, Path::new("/host/etc/cni/net.d"));
        assert_eq!(inst.paths.source_dir, Path::new("/opt/cni/bin"));
        // Paths written into the config are the host's.
        assert_eq!(inst.host_conf_dir(), Path::new("/etc/cni/net.d"));
        assert!(sleep, "Calico's installer sleeps by default");
        // Calico's manifest: SLEEP=false, a non-default CNI_NET_DIR.
        let env = env_of(&[
            ("SLEEP", "false"),
            ("CNI_NET_DIR", "/etc/kubernetes/cni/net.d"),
        ]);
        let (inst, sleep) =
            installer(&Flags::default(), Layout::Image, &env, Some("/x".into())).unwrap();
        assert!(!sleep);
        assert_eq!(inst.paths.conf_dir, Path::new("/host/etc/cni/net.d"));
        assert_eq!(inst.host_conf_dir(), Path::new("/etc/kubernetes/cni/net.d"));
        // Flags still win.
        let f = flags(&["--bin-dir", "/b", "--conf-dir", "/c"]);
        let (inst, _) = installer(&f, Layout::Image, &env_of(&[]), Some("/x".into())).unwrap();
        assert_eq!(
            (inst.paths.bin_dir.as_path(), inst.paths.conf_dir.as_path()),
            (Path::new("/b"), Path::new("/c"))
        );
    }

    #[test]
    fn bad_environment_is_an_error_not_a_default() {
        let e = installer(
            &Flags::default(),
            Layout::Image,
            &env_of(&[("SLEEP", "sometimes")]),
            Some("/x".into()),
        )
        .unwrap_err();
        assert!(e.to_string().contains("SLEEP"), "{e}");
    }

    #[test]
    fn main_exit_codes() {
        let run = |a: &[&str], env: &[(&str, &str)]| {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let code = main(&args(a), &env_of(env), &mut out, &mut err);
            (
                code,
                String::from_utf8(out).unwrap(),
                String::from_utf8(err).unwrap(),
            )
        };
        let (code, out, _) = run(&["install-cni", "-v"], &[]);
        assert_eq!((code, out.starts_with("install-cni ")), (EXIT_OK, true));
        let (code, _, err) = run(&["install-cni", "--nope"], &[]);
        assert_eq!(code, EXIT_USAGE, "{err}");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        // A missing source binary fails the install: exit 1, the host untouched.
        let (code, _, err) = run(
            &[
                "install",
                "--source-dir",
                &d,
                "--bin-dir",
                &format!("{d}/bin"),
                "--conf-dir",
                &format!("{d}/net.d"),
            ],
            &[("KUBERNETES_NODE_NAME", "n"), ("SLEEP", "false")],
        );
        assert_eq!(code, EXIT_FAILED, "{err}");
        assert!(err.contains("calico"), "{err}");
        assert!(!dir.path().join("net.d").exists());
    }

    #[test]
    fn watch_installs_again_when_the_token_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        fs::create_dir_all(p("src")).unwrap();
        for b in crate::SUITE_BINARIES {
            fs::write(p("src").join(b), "#!/bin/sh\n").unwrap();
            fs::set_permissions(p("src").join(b), fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::create_dir_all(p("sa")).unwrap();
        fs::write(p("sa/token"), "t1").unwrap();
        fs::write(p("sa/ca.crt"), "ca").unwrap();
        let f = flags(&[
            "--source-dir",
            p("src").to_str().unwrap(),
            "--bin-dir",
            p("bin").to_str().unwrap(),
            "--conf-dir",
            p("net.d").to_str().unwrap(),
            "--serviceaccount-dir",
            p("sa").to_str().unwrap(),
        ]);
        let env = env_of(&[
            ("KUBERNETES_NODE_NAME", "n"),
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
        ]);
        let (inst, _) = installer(&f, Layout::Host, &env, None).unwrap();
        install(&inst).unwrap();
        let kubeconfig = || fs::read_to_string(p("net.d/calico-kubeconfig")).unwrap();
        assert!(kubeconfig().contains("t1"));
        let mut rounds = 0;
        let reinstalls = watch(&inst, Duration::from_millis(1), || {
            rounds += 1;
            if rounds == 2 {
                fs::write(p("sa/token"), "t2").unwrap();
            }
            rounds <= 3
        });
        assert_eq!(reinstalls, 1);
        assert!(kubeconfig().contains("t2"));
    }
}
