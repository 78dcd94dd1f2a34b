//! install-cni: installs (or with --uninstall removes) the suite on a node. Logic lives in the
//! `installer` crate; this file only maps flags and environment onto it.

use installer::settings::DEFAULT_SERVICEACCOUNT_DIR;
use installer::{Installer, Paths, Settings};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// How often `SLEEP=true` looks for rotated inputs (Calico's installer polls every 10 s too).
const WATCH_INTERVAL: Duration = Duration::from_secs(10);

const USAGE: &str = "\
usage: install-cni [--bin-dir DIR] [--conf-dir DIR] [--source-dir DIR]
                   [--serviceaccount-dir DIR] [--uninstall]

Installs the suite's CNI plugins, network config and kubeconfig on this host, reading
Calico's installer environment (CNI_NETWORK_CONFIG, CNI_NETWORK_CONFIG_FILE, CNI_CONF_NAME,
CNI_OLD_CONF_NAME, CNI_NET_DIR, CNI_MTU, KUBERNETES_NODE_NAME, SKIP_CNI_BINARIES,
UPDATE_CNI_BINARIES, TLS_ASSETS_DIR, SLEEP, SKIP_TLS_VERIFY, KUBERNETES_SERVICE_*, LOG_*,
DATASTORE_TYPE, ETCD_*, REQUIRE_MTU_FILE, CALICO_API_GROUP).

  --bin-dir DIR             CNI bin dir (default /opt/cni/bin)
  --conf-dir DIR            CNI conf dir (default $CNI_NET_DIR or /etc/cni/net.d)
  --source-dir DIR          where the suite's binaries are (default: next to install-cni)
  --serviceaccount-dir DIR  token + ca.crt for the kubeconfig
                            (default /var/run/secrets/kubernetes.io/serviceaccount)
  --uninstall               remove what a previous install wrote, and nothing else
";

struct Flags {
    bin_dir: Option<PathBuf>,
    conf_dir: Option<PathBuf>,
    source_dir: Option<PathBuf>,
    serviceaccount_dir: Option<PathBuf>,
    uninstall: bool,
}

enum Parsed {
    Run(Flags),
    Help,
    Version,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut f = Flags {
        bin_dir: None,
        conf_dir: None,
        source_dir: None,
        serviceaccount_dir: None,
        uninstall: false,
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let slot = match name.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-v" | "--version" => return Ok(Parsed::Version),
            "--uninstall" if inline.is_none() => {
                f.uninstall = true;
                continue;
            }
            "--bin-dir" => &mut f.bin_dir,
            "--conf-dir" => &mut f.conf_dir,
            "--source-dir" => &mut f.source_dir,
            "--serviceaccount-dir" => &mut f.serviceaccount_dir,
            _ => return Err(format!("unknown argument {arg:?}")),
        };
        let value = match inline {
            Some(v) => v,
            None => args.next().ok_or_else(|| format!("{name} needs a value"))?,
        };
        if value.is_empty() {
            return Err(format!("{name} needs a non-empty value"));
        }
        *slot = Some(PathBuf::from(value));
    }
    Ok(Parsed::Run(f))
}

fn run(flags: Flags) -> Result<(), String> {
    let settings = Settings::from_env().map_err(|e| e.to_string())?;
    let source_dir = match flags.source_dir {
        Some(d) => d,
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .ok_or("cannot find the directory of install-cni; pass --source-dir")?,
    };
    let paths = Paths {
        bin_dir: flags.bin_dir.unwrap_or_else(|| "/opt/cni/bin".into()),
        conf_dir: flags
            .conf_dir
            .or_else(|| settings.net_dir.clone())
            .unwrap_or_else(|| "/etc/cni/net.d".into()),
        source_dir,
        serviceaccount_dir: flags
            .serviceaccount_dir
            .unwrap_or_else(|| DEFAULT_SERVICEACCOUNT_DIR.into()),
    };
    // Paths end up inside the config and the manifest: make them absolute.
    let abs = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    let paths = Paths {
        bin_dir: abs(paths.bin_dir),
        conf_dir: abs(paths.conf_dir),
        source_dir: abs(paths.source_dir),
        serviceaccount_dir: abs(paths.serviceaccount_dir),
    };
    let sleep = settings.sleep;
    let inst = Installer::new(paths, settings);
    if flags.uninstall {
        let r = inst.uninstall().map_err(|e| e.to_string())?;
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
        return Ok(());
    }
    let r = inst.install().map_err(|e| e.to_string())?;
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
    if sleep {
        // Calico's long-running container mode: stay up so the pod is not restarted, and keep
        // the node's copies of rotated tokens and certificates current.
        log::info!(
            "done; SLEEP=true: checking the service-account token, etcd TLS assets and template every {}s",
            WATCH_INTERVAL.as_secs()
        );
        let mut last = inst.inputs_fingerprint();
        loop {
            std::thread::sleep(WATCH_INTERVAL);
            match inst.reinstall_if_changed(&mut last) {
                Ok(Some(r)) => log::info!(
                    "inputs changed: installed again, wrote {}",
                    r.conf_path.display()
                ),
                Ok(None) => {}
                Err(e) => log::error!("inputs changed but installing again failed (retrying): {e}"),
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    cni_log::install(
        log::LevelFilter::Info,
        "install-cni".into(),
        None,
        cni_log::Rotation {
            max_size_bytes: 0,
            max_age_days: 0,
            max_backups: 0,
        },
    );
    match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Parsed::Version) => {
            println!("install-cni {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Parsed::Run(flags)) => match run(flags) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("install-cni: error: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("install-cni: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
