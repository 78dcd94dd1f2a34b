//! Process plumbing: spawn (with ETXTBSY retry), feed stdin, collect output, enforce a timeout.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};
use crate::netns::Netns;

/// Default limit for tools (`ip`, `tc`, `ping`) run by the harness.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a finished process produced.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Parses stdout as one JSON document.
    pub fn stdout_json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.stdout).map_err(|e| {
            HarnessError::parse(
                "stdout as JSON",
                format!("{e}; stdout was {:?}", self.stdout_str()),
            )
        })
    }
}

/// `program arg1 arg2` for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Spawns, retrying on ETXTBSY: a script written by one test can still be open for writing in a
/// child forked concurrently by another test thread (libcni retries the same way).
pub(crate) fn spawn_retrying(cmd: &mut Command) -> std::io::Result<Child> {
    let mut attempt = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 20 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

/// Runs `cmd` inside `ns` with `stdin` bytes, waiting at most `timeout` (then SIGKILL).
pub fn run_in(
    ns: &Netns,
    cmd: &mut Command,
    stdin: &[u8],
    timeout: Duration,
) -> Result<ExecOutput> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = describe(cmd);
    let child = ns.spawn(cmd)?;
    wait_output(child, stdin, timeout, &what)
}

fn wait_output(
    mut child: Child,
    stdin: &[u8],
    timeout: Duration,
    what: &str,
) -> Result<ExecOutput> {
    let stdin_pipe = child.stdin.take();
    let stdout_pipe = child.stdout.take();
    let stderr_pipe = child.stderr.take();
    std::thread::scope(|s| {
        if let Some(mut pipe) = stdin_pipe {
            // A plugin may exit without reading stdin; EPIPE is not our failure.
            s.spawn(move || {
                let _ = pipe.write_all(stdin);
            });
        }
        let out = s.spawn(move || read_all(stdout_pipe));
        let err = s.spawn(move || read_all(stderr_pipe));
        let waited = wait_until(&mut child, Instant::now() + timeout);
        let Ok(Some(status)) = waited else {
            // Not reaped yet (only `wait_until` reaps), so the pid is still our child's.
            let _ = child.kill();
            let _ = child.wait();
            return Err(match waited {
                Err(e) => HarnessError::io(format!("waiting for `{what}`"), e),
                _ => HarnessError::Timeout {
                    cmd: what.to_string(),
                    secs: timeout.as_secs(),
                },
            });
        };
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        Ok(ExecOutput {
            status,
            stdout,
            stderr,
        })
    })
}

/// Polls `child` until it exits or `deadline` passes (`None`: still running).
fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

fn read_all(pipe: Option<impl Read>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut p) = pipe {
        let _ = p.read_to_end(&mut buf);
    }
    buf
}

impl Netns {
    /// Runs `program args…` in this namespace; returns the output whatever the exit status.
    pub fn output(&self, program: &str, args: &[&str]) -> Result<ExecOutput> {
        run_in(self, Command::new(program).args(args), &[], TOOL_TIMEOUT)
    }

    /// Runs `program args…` in this namespace and requires exit status 0; returns stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(program);
        cmd.args(args);
        let what = describe(&cmd);
        let out = run_in(self, &mut cmd, &[], TOOL_TIMEOUT)?;
        if !out.success() {
            return Err(HarnessError::Command {
                cmd: format!("{what} (netns {})", self.name()),
                status: out.status.to_string(),
                stderr: out.stderr_str().trim().to_string(),
            });
        }
        Ok(out.stdout_str())
    }
}
