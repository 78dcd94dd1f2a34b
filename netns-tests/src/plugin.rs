//! Executing one plugin binary the way a runtime does (env + stdin, inside the host netns), and
//! reading its CNI error output.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::error::Result;
use crate::exec::{run_in, ExecOutput};
use crate::netns::Netns;

/// Limit for one plugin invocation; a hung plugin fails the test instead of hanging it.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the plugin at `bin` inside `host` with exactly these `CNI_*`/extra variables and raw
/// `stdin`. The rest of the environment is inherited except any `CNI_*` variable, so a
/// variable the test leaves out is really absent (for protocol tests).
pub fn exec_plugin(
    host: &Netns,
    bin: &Path,
    env: &[(&str, &str)],
    stdin: &[u8],
) -> Result<ExecOutput> {
    exec_plugin_timeout(host, bin, env, stdin, PLUGIN_TIMEOUT)
}

/// [`exec_plugin`] with an explicit time limit.
pub fn exec_plugin_timeout(
    host: &Netns,
    bin: &Path,
    env: &[(&str, &str)],
    stdin: &[u8],
    timeout: Duration,
) -> Result<ExecOutput> {
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CNI_") {
            cmd.env_remove(&k);
        }
    }
    cmd.envs(env.iter().copied());
    run_in(host, &mut cmd, stdin, timeout)
}

/// A plugin that ran and reported failure (non-zero exit), as libcni would see it.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginFailure {
    /// The plugin's `type` (binary name).
    pub plugin: String,
    /// CNI command: ADD, DEL, CHECK, GC, STATUS, VERSION.
    pub command: String,
    /// `code` from the error JSON on stdout; `None` when stdout was not a CNI error.
    pub code: Option<u64>,
    /// `msg` from the error JSON, or libcni's stand-in text when stdout was empty/not JSON.
    pub msg: String,
    pub details: String,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl PluginFailure {
    /// Interprets a failed run the way libcni does (`netplugin failed: …` for an empty stdout).
    pub fn from_output(plugin: &str, command: &str, out: &ExecOutput) -> PluginFailure {
        let stdout = out.stdout_str();
        let stderr = out.stderr_str();
        let (code, msg, details) = match serde_json::from_str::<Value>(&stdout) {
            Ok(v) if v.is_object() => (
                v.get("code").and_then(Value::as_u64),
                v.get("msg")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                v.get("details")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            ),
            _ if stdout.trim().is_empty() && stderr.trim().is_empty() => (
                None,
                "netplugin failed with no error message".into(),
                String::new(),
            ),
            _ if stdout.trim().is_empty() => (
                None,
                format!("netplugin failed: {:?}", stderr),
                String::new(),
            ),
            _ => (
                None,
                format!("netplugin failed but error parsing its diagnostic message {stdout:?}"),
                String::new(),
            ),
        };
        PluginFailure {
            plugin: plugin.to_string(),
            command: command.to_string(),
            code,
            msg,
            details,
            exit_code: out.status.code(),
            stdout,
            stderr,
        }
    }
}

impl std::fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "plugin {} {} failed: code {:?} msg {:?} details {:?} (exit {:?}); stderr: {}",
            self.plugin,
            self.command,
            self.code,
            self.msg,
            self.details,
            self.exit_code,
            self.stderr.trim()
        )
    }
}
