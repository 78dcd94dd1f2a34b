//! Running the netfilter user-space tools (iptables-restore, nft, conntrack).

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::PortmapError;

/// Searched after `$PATH`: runtimes sometimes exec plugins with a minimal environment.
const FALLBACK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Finds `name` in `path` (default: `$PATH`), then in the standard system directories.
pub fn find_program(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    let env_path: Option<OsString> = match path {
        Some(p) => Some(p.to_os_string()),
        None => std::env::var_os("PATH"),
    };
    let mut dirs: Vec<PathBuf> = env_path
        .as_deref()
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    if path.is_none() {
        dirs.extend(std::env::split_paths(FALLBACK_PATH));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// True when `p` is an executable regular file.
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Outcome of a finished command.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program args…`, feeding `stdin`, and collects its output.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<Output, PortmapError> {
    let path = find_program(program, None).ok_or_else(|| PortmapError::ToolNotFound {
        tool: program.to_string(),
    })?;
    log::debug!("exec {program} {}", args.join(" "));
    let mut child = Command::new(&path)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| PortmapError::ToolStart {
            tool: program.to_string(),
            source,
        })?;
    // Feed stdin from a scoped thread while collecting output: a tool that reports many errors
    // could otherwise fill its stderr pipe while we are still writing a large script.
    let pipe = child.stdin.take();
    let out = std::thread::scope(|scope| {
        if let (Some(mut pipe), Some(input)) = (pipe, stdin) {
            scope.spawn(move || {
                // EPIPE means the tool exited early; its exit status tells why.
                if let Err(e) = pipe.write_all(input.as_bytes()) {
                    log::debug!("{program}: writing stdin: {e}");
                }
                // Dropping the pipe closes it: the tool sees EOF.
            });
        }
        child.wait_with_output()
    })
    .map_err(|source| PortmapError::ToolWait {
        tool: program.to_string(),
        source,
    })?;
    Ok(Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
