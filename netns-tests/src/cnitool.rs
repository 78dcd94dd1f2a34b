//! Driving the upstream `cnitool` (libcni's reference client) inside a test's host namespace,
//! so our plugins are exercised by the real libcni rather than only by our own chain runner.
//!
//! The binary is built offline from Debian packages by `netns-tests/tools/build-cnitool.sh`
//! (run by `run-tests.sh`) and found via `$CNITOOL`, else the script's cache
//! [`DEFAULT_CNITOOL`]. cnitool reads the conflist named `<net>` from `NETCONFPATH`, derives the
//! container id from the netns path (`cnitool-<20 hex>`) and caches results under
//! `/var/lib/cni/results` (a file, not netns state; DEL removes it).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::error::{HarnessError, Result};
use crate::exec::{run_in, ExecOutput};
use crate::netns::Netns;
use crate::plugin::PLUGIN_TIMEOUT;

/// Where `tools/build-cnitool.sh` caches the binary by default.
pub const DEFAULT_CNITOOL: &str = "/var/cache/cni-suite/cnitool";

/// libcni's default result cache directory (cnitool does not change it).
pub const RESULT_CACHE_DIR: &str = "/var/lib/cni/results";

/// Path of the cnitool binary, or an error saying how to build it (tests never skip).
pub fn locate() -> Result<PathBuf> {
    let path = std::env::var_os("CNITOOL")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CNITOOL));
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::ToolMissing {
            tool: path.display().to_string(),
            hint: "build it with `netns-tests/tools/build-cnitool.sh` (run-tests.sh does) or set CNITOOL".into(),
        })
    }
}

/// One cnitool configuration: conflist dir, plugin path, capability and CNI args, ifname.
#[derive(Debug, Clone)]
pub struct Cnitool {
    bin: PathBuf,
    netconf_dir: PathBuf,
    cni_path: Vec<PathBuf>,
    cap_args: Option<Value>,
    cni_args: Vec<(String, String)>,
    ifname: Option<String>,
}

impl Cnitool {
    /// cnitool reading conflists from `netconf_dir`, with `cni_path` as `CNI_PATH`.
    pub fn new(netconf_dir: &Path, cni_path: Vec<PathBuf>) -> Result<Cnitool> {
        Ok(Cnitool {
            bin: locate()?,
            netconf_dir: netconf_dir.to_path_buf(),
            cni_path,
            cap_args: None,
            cni_args: Vec::new(),
            ifname: None,
        })
    }

    /// `CAP_ARGS` (e.g. `{"portMappings": [...], "bandwidth": {...}}`).
    pub fn cap_args(mut self, args: Value) -> Self {
        self.cap_args = Some(args);
        self
    }

    /// Adds a `K=V` pair to `CNI_ARGS`.
    pub fn arg(mut self, key: &str, value: &str) -> Self {
        self.cni_args.push((key.to_string(), value.to_string()));
        self
    }

    /// `CNI_IFNAME` (cnitool's default is eth0).
    pub fn ifname(mut self, ifname: &str) -> Self {
        self.ifname = Some(ifname.to_string());
        self
    }

    /// Runs `cnitool <verb> <net> <netns>` inside `host`; returns the output whatever the status.
    pub fn run(&self, host: &Netns, verb: &str, net: &str, netns: &Path) -> Result<ExecOutput> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg(verb).arg(net).arg(netns);
        // Only what we set reaches libcni (a stray CNI_* from the caller's shell must not).
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("CNI_") || k == "CAP_ARGS" || k == "NETCONFPATH" {
                cmd.env_remove(k);
            }
        }
        cmd.env("NETCONFPATH", &self.netconf_dir);
        let path = std::env::join_paths(&self.cni_path)
            .map_err(|e| HarnessError::Conflist(format!("CNI_PATH: {e}")))?;
        cmd.env("CNI_PATH", path);
        if let Some(caps) = &self.cap_args {
            cmd.env("CAP_ARGS", caps.to_string());
        }
        if !self.cni_args.is_empty() {
            let args: Vec<String> = self
                .cni_args
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            cmd.env("CNI_ARGS", args.join(";"));
        }
        if let Some(ifname) = &self.ifname {
            cmd.env("CNI_IFNAME", ifname);
        }
        run_in(host, &mut cmd, &[], PLUGIN_TIMEOUT)
    }

    /// `cnitool add`; returns the printed result.
    pub fn add(&self, host: &Netns, net: &str, netns: &Path) -> Result<Value> {
        let out = self.run_ok(host, "add", net, netns)?;
        out.stdout_json()
    }

    /// `cnitool check`.
    pub fn check(&self, host: &Netns, net: &str, netns: &Path) -> Result<()> {
        self.run_ok(host, "check", net, netns).map(drop)
    }

    /// `cnitool del`.
    pub fn del(&self, host: &Netns, net: &str, netns: &Path) -> Result<()> {
        self.run_ok(host, "del", net, netns).map(drop)
    }

    fn run_ok(&self, host: &Netns, verb: &str, net: &str, netns: &Path) -> Result<ExecOutput> {
        let out = self.run(host, verb, net, netns)?;
        if out.success() {
            Ok(out)
        } else {
            Err(HarnessError::Command {
                cmd: format!("cnitool {verb} {net} {}", netns.display()),
                status: out.status.to_string(),
                stderr: format!("{} {}", out.stderr_str().trim(), out.stdout_str().trim()),
            })
        }
    }
}

/// libcni's cached results for network `net` (file names `<net>-<containerID>-<ifname>`).
pub fn cached_results(net: &str) -> Vec<String> {
    let prefix = format!("{net}-");
    std::fs::read_dir(RESULT_CACHE_DIR)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}
