//! Delegation: run another plugin found on `CNI_PATH` (calico runs its IPAM plugin this way),
//! with our environment, given stdin, a timeout, and its result or CNI error captured.
//!
//! A delegated child never outlives its parent's intent: it gets `PR_SET_PDEATHSIG=SIGKILL`
//! (a runtime that SIGKILLs a timed-out ADD takes the IPAM child with it), and before committing
//! an allocation the child calls [`ensure_delegator_alive`] (closing the window between the
//! parent's death and the signal). Delegation depth is carried to children in
//! [`DEPTH_ENV`] and bounded, so a config that makes a plugin delegate to itself fails at once
//! instead of forking until the timeout.

use crate::env::Command;
use crate::error::{CniError, ErrorCode};
use crate::result::CniResult;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a delegated plugin may run before it is killed (Calico's IPAM allows 90 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);

/// How deep in a delegation chain this process runs (0 for a plugin the runtime started).
pub const DEPTH_ENV: &str = "CNI_RS_DELEGATION_DEPTH";
/// The pid of the plugin that delegated to this process.
pub const DELEGATOR_ENV: &str = "CNI_RS_DELEGATOR_PID";
/// Longest chain allowed: calico → calico-ipam is 1; nothing real needs more than 2.
pub const MAX_DEPTH: u32 = 3;

/// The most a delegated plugin may print on stdout, and the most of its stderr kept: a CNI
/// result is a few KiB; a plugin printing without end must not grow calico's memory with it.
/// What it prints beyond is read (so it never blocks on a full pipe) and dropped.
pub const MAX_PLUGIN_OUTPUT: usize = 4 << 20;

/// Plugin types that cannot be IPAM plugins: interface and chained plugins. Naming one as
/// `ipam.type` would, for calico, make the plugin run itself.
pub const NOT_IPAM: &[&str] = &[
    "calico",
    "portmap",
    "bandwidth",
    "loopback",
    "tuning",
    "bridge",
    "ptp",
    "macvlan",
    "ipvlan",
    "vlan",
    "host-device",
    "firewall",
    "sbr",
    "vrf",
    "flannel",
    "tap",
    "dummy",
];

/// Refuses an `ipam.type` that names a plugin that is not an IPAM plugin.
pub fn check_ipam_type(name: &str) -> Result<(), CniError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(CniError::new(
            ErrorCode::InvalidConfig,
            format!("ipam.type {name:?} is not a plugin name"),
        ));
    }
    if NOT_IPAM.contains(&name) {
        return Err(CniError::new(
            ErrorCode::InvalidConfig,
            format!("ipam.type {name:?} is not an IPAM plugin"),
        ));
    }
    Ok(())
}

/// This process's delegation depth, from [`DEPTH_ENV`] (absent or unreadable: 0).
pub fn current_depth() -> u32 {
    std::env::var(DEPTH_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// For a delegated plugin, right before it commits state: fails when the plugin that ran it
/// has gone (we were re-parented), so an ADD the runtime already gave up on (and DELeted)
/// allocates nothing. A plugin the runtime ran directly always passes.
pub fn ensure_delegator_alive() -> Result<(), CniError> {
    let Some(delegator) = std::env::var(DELEGATOR_ENV)
        .ok()
        .and_then(|v| v.parse::<libc::pid_t>().ok())
    else {
        return Ok(());
    };
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    if parent != delegator {
        return Err(CniError::generic(format!(
            "the plugin that delegated to us (pid {delegator}) has exited; not committing"
        )));
    }
    Ok(())
}

fn check_depth(depth: u32, name: &str) -> Result<(), CniError> {
    if depth >= MAX_DEPTH {
        return Err(CniError::new(
            ErrorCode::InvalidConfig,
            format!(
                "refusing to run plugin {name}: delegation depth {depth} reached the limit of \
                 {MAX_DEPTH} (does ipam.type name a plugin that delegates back?)"
            ),
        ));
    }
    Ok(())
}

/// Finds `name` in the `CNI_PATH` directories.
pub fn find_plugin(name: &str, cni_path: &[PathBuf]) -> Result<PathBuf, CniError> {
    if name.is_empty() || name.contains('/') {
        return Err(CniError::new(
            ErrorCode::InvalidConfig,
            format!("invalid plugin type {name:?}"),
        ));
    }
    cni_path
        .iter()
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::generic(format!(
                "failed to find plugin {name:?} in path {:?}",
                cni_path
            ))
        })
}

/// One delegated execution.
#[derive(Debug, Clone)]
pub struct Delegation<'a> {
    pub plugin: &'a str,
    pub cni_path: &'a [PathBuf],
    /// Extra environment set for the child (e.g. a rewritten `CNI_ARGS`).
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

impl<'a> Delegation<'a> {
    pub fn new(plugin: &'a str, cni_path: &'a [PathBuf]) -> Self {
        Delegation {
            plugin,
            cni_path,
            env: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs ADD and parses the plugin's result (labelled with `cni_version` if it has none).
    pub fn add(&self, stdin: &[u8], cni_version: &str) -> Result<CniResult, CniError> {
        let out = self.exec(Command::Add, stdin)?;
        CniResult::from_slice(&out, cni_version).map_err(|e| {
            CniError::new(
                ErrorCode::Decode,
                format!(
                    "plugin {:?} printed an invalid result: {}",
                    self.plugin, e.msg
                ),
            )
        })
    }

    /// Runs a verb that prints nothing on success (DEL, CHECK, GC, STATUS).
    pub fn run(&self, command: Command, stdin: &[u8]) -> Result<(), CniError> {
        self.exec(command, stdin).map(|_| ())
    }

    /// Starts the plugin for `command` now and lets the caller feed its config later (see
    /// [`Spawned`]): its exec and start-up overlap with whatever the caller does meanwhile.
    pub fn spawn(&self, command: Command) -> Result<Spawned, CniError> {
        let path = find_plugin(self.plugin, self.cni_path)?;
        spawn_path(&path, command, &self.env, self.timeout)
    }

    /// Executes the plugin and returns its stdout on success.
    pub fn exec(&self, command: Command, stdin: &[u8]) -> Result<Vec<u8>, CniError> {
        let path = find_plugin(self.plugin, self.cni_path)?;
        exec_path(&path, command, stdin, &self.env, self.timeout)
    }
}

/// Executes a plugin binary by path.
pub fn exec_path(
    path: &Path,
    command: Command,
    stdin: &[u8],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<Vec<u8>, CniError> {
    spawn_path(path, command, env, timeout)?.finish(stdin)
}

/// A delegated plugin already started and waiting for its stdin (see [`Delegation::spawn`]).
/// Dropped without [`Spawned::finish`], the child is killed before it could read any config.
#[derive(Debug)]
pub struct Spawned {
    name: String,
    child: Option<Child>,
    deadline: Instant,
    timeout: Duration,
}

/// Starts a plugin binary by path; it runs nothing until [`Spawned::finish`] feeds its stdin
/// (every plugin reads its whole config before acting).
pub fn spawn_path(
    path: &Path,
    command: Command,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<Spawned, CniError> {
    let name = path.display().to_string();
    let depth = current_depth();
    check_depth(depth, &name)?;
    let me = std::process::id() as libc::pid_t;
    let mut process = Process::new(path);
    process
        .env("CNI_COMMAND", command.as_str())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(DEPTH_ENV, (depth + 1).to_string())
        .env(DELEGATOR_ENV, me.to_string());
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    unsafe {
        process.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl: then no signal will ever come.
            if libc::getppid() != me {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let child = process
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CniError::generic(format!("failed to execute plugin {name}: {e}")))?;
    Ok(Spawned {
        name,
        child: Some(child),
        deadline: Instant::now() + timeout,
        timeout,
    })
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Spawned {
    /// Feeds `stdin`, waits for the plugin (within the timeout counted from the spawn) and
    /// returns its stdout on success.
    pub fn finish(mut self, stdin: &[u8]) -> Result<Vec<u8>, CniError> {
        let Some(mut child) = self.child.take() else {
            return Err(CniError::generic(format!(
                "plugin {} already ran",
                self.name
            )));
        };
        let name = std::mem::take(&mut self.name);
        let (deadline, timeout) = (self.deadline, self.timeout);
        let timed_out = || {
            CniError::new(
                ErrorCode::TryAgainLater,
                format!("plugin {name} timed out after {}s", timeout.as_secs()),
            )
        };
        let ended = communicate(&mut child, stdin, deadline)
            .map_err(|e| CniError::generic(format!("failed to run plugin {name}: {e}")))?;
        match ended {
            Ended::Done(output) => outcome(&name, output),
            // The plugin has exited; a process it left behind still holds the pipes open.
            Ended::PipesOpen => Err(timed_out()),
            Ended::Running => {
                // Not reaped (only `communicate` reaps): the pid is still the child's.
                let _ = child.kill();
                let _ = child.wait();
                Err(timed_out())
            }
        }
    }
}

/// How [`communicate`] ended.
enum Ended {
    /// Exited and both output pipes reached their end.
    Done(Output),
    /// The deadline passed while the child was still running (it is not reaped).
    Running,
    /// The child exited (and is reaped) but its pipes were still open at the deadline.
    PipesOpen,
}

/// Feeds `input` to the child's stdin and drains its stdout and stderr on the calling thread
/// with `poll(2)`, woken by the child's exit through a pidfd. No helper threads and no sleeps:
/// a delegation used to start three threads (whose start-up a loaded node delays) and to poll
/// for the exit that follows the end of stdout. A plugin that writes before reading, or fills a
/// pipe, cannot deadlock this: every pipe is non-blocking and served as it becomes ready.
fn communicate(child: &mut Child, input: &[u8], deadline: Instant) -> std::io::Result<Ended> {
    use std::os::fd::AsRawFd;
    let mut stdin = if input.is_empty() {
        None // dropped: the plugin reads an empty config
    } else {
        child.stdin.take()
    };
    drop(child.stdin.take());
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    for fd in [
        stdin.as_ref().map(|p| p.as_raw_fd()),
        stdout.as_ref().map(|p| p.as_raw_fd()),
        stderr.as_ref().map(|p| p.as_raw_fd()),
    ]
    .into_iter()
    .flatten()
    {
        set_nonblocking(fd)?;
    }
    // Without pidfds (Linux < 5.3) the exit is noticed by polling every few milliseconds.
    let pidfd = pidfd_open(child.id());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut written = 0;
    let mut status = None;
    loop {
        if status.is_none() {
            status = child.try_wait()?;
        }
        if let (Some(status), None, None) = (status, &stdout, &stderr) {
            return Ok(Ended::Done(Output {
                status,
                stdout: out,
                stderr: err,
            }));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(if status.is_some() {
                Ended::PipesOpen
            } else {
                Ended::Running
            });
        }
        let wait = match (&pidfd, status) {
            (None, None) => left.min(Duration::from_millis(5)),
            _ => left,
        };
        let mut fds = Vec::with_capacity(4);
        let mut push = |fd: Option<i32>, events: libc::c_short| {
            fds.push(libc::pollfd {
                fd: fd.unwrap_or(-1), // negative fds are ignored by poll
                events,
                revents: 0,
            })
        };
        push(stdin.as_ref().map(|p| p.as_raw_fd()), libc::POLLOUT);
        push(stdout.as_ref().map(|p| p.as_raw_fd()), libc::POLLIN);
        push(stderr.as_ref().map(|p| p.as_raw_fd()), libc::POLLIN);
        let exit_fd = pidfd.as_ref().filter(|_| status.is_none());
        push(exit_fd.map(|f| f.as_raw_fd()), libc::POLLIN);
        // Rounded up so a sub-millisecond remainder waits instead of spinning.
        let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a live array of `fds.len()` pollfd structs for the call's duration.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[0].revents != 0 {
            if let Some(pipe) = stdin.as_mut() {
                match pipe.write(&input[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // The plugin closed its stdin (or exited): it takes no more input.
                    Err(_) => written = input.len(),
                }
                if written >= input.len() {
                    stdin = None;
                }
            }
        }
        if fds[1].revents != 0 {
            drain(&mut stdout, &mut out);
        }
        if fds[2].revents != 0 {
            drain(&mut stderr, &mut err);
        }
    }
}

/// Reads what `pipe` holds now into `buf`; at its end (or on an error) the pipe is closed.
/// `buf` keeps at most [`MAX_PLUGIN_OUTPUT`] + 1 bytes: one more than allowed marks an
/// overflow.
fn drain(pipe: &mut Option<impl Read>, buf: &mut Vec<u8>) {
    let Some(p) = pipe.as_mut() else { return };
    let mut chunk = [0u8; 8192];
    loop {
        match p.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                let room = (MAX_PLUGIN_OUTPUT + 1).saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    *pipe = None;
}

fn set_nonblocking(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a pipe fd we own; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A pidfd of our own child (readable once it exits), or `None` where the kernel has none.
fn pidfd_open(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a non-negative result is a fresh fd that nothing else owns.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// The plugin's stdout on success, else its CNI error (or one made from what it printed).
fn outcome(name: &str, output: Output) -> Result<Vec<u8>, CniError> {
    let kept = output.stderr.len().min(MAX_PLUGIN_OUTPUT);
    let stderr = String::from_utf8_lossy(&output.stderr[..kept]);
    if !stderr.is_empty() {
        // Pass the delegate's logs through, as Go's invoke does.
        eprint!("{stderr}");
    }
    if output.stdout.len() > MAX_PLUGIN_OUTPUT {
        return Err(CniError::generic(format!(
            "plugin {name} printed more than {MAX_PLUGIN_OUTPUT} bytes on stdout; no CNI \
             result is that large"
        )));
    }
    if output.status.success() {
        return Ok(output.stdout);
    }
    if let Some(err) = CniError::from_json(&output.stdout) {
        return Err(err);
    }
    let trimmed = stderr.trim();
    Err(CniError::generic(if !output.stdout.is_empty() {
        format!(
            "plugin {name} failed and printed no CNI error: {:?}",
            String::from_utf8_lossy(&output.stdout)
        )
    } else if trimmed.is_empty() {
        format!("netplugin {name} failed with no error message")
    } else {
        format!("netplugin {name} failed: {trimmed:?}")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn finds_plugins_on_path() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        script(b.path(), "ipam", "true");
        let path = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(find_plugin("ipam", &path).unwrap(), b.path().join("ipam"));
        let e = find_plugin("missing", &path).unwrap_err();
        assert!(e.msg.contains("missing"));
        assert_eq!(
            find_plugin("../x", &path).unwrap_err().code,
            ErrorCode::InvalidConfig
        );
    }

    #[test]
    fn add_parses_result_and_passes_env_and_stdin() {
        let d = tempfile::tempdir().unwrap();
        // Echo stdin's "name" back via the result's dns domain, and CNI_COMMAND + an env var.
        script(
            d.path(),
            "ipam",
            r#"in=$(cat); n=$(printf '%s' "$in" | sed 's/.*"name":"\([^"]*\)".*/\1/')
printf '{"ips":[{"address":"10.0.0.9/32"}],"dns":{"domain":"%s-%s-%s"}}' "$n" "$CNI_COMMAND" "$EXTRA""#,
        );
        let path = vec![d.path().to_path_buf()];
        let r = Delegation::new("ipam", &path)
            .env("EXTRA", "x1")
            .add(br#"{"name":"net7"}"#, "1.0.0")
            .unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.9/32");
        assert_eq!(r.dns.domain, "net7-ADD-x1");
    }

    #[test]
    fn spawned_plugin_acts_only_when_fed_and_is_killed_when_dropped() {
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("ran");
        script(
            d.path(),
            "ipam",
            &format!(r#"in=$(cat); printf '%s' "$in" > {}"#, marker.display()),
        );
        let path = vec![d.path().to_path_buf()];
        let started = Delegation::new("ipam", &path).spawn(Command::Del).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !marker.exists(),
            "the plugin acted before getting its config"
        );
        started.finish(b"conf-1").unwrap();
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "conf-1");
        std::fs::remove_file(&marker).unwrap();
        drop(Delegation::new("ipam", &path).spawn(Command::Del).unwrap());
        std::thread::sleep(Duration::from_millis(100));
        assert!(!marker.exists(), "a dropped plugin ran anyway");
    }

    #[test]
    fn errors_are_passed_through() {
        let d = tempfile::tempdir().unwrap();
        script(
            d.path(),
            "cnierr",
            r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"busy","details":"etcd"}'; exit 1"#,
        );
        script(d.path(), "silent", "echo 'oops on stderr' >&2; exit 3");
        script(d.path(), "mute", "exit 3");
        script(d.path(), "garbage", "echo hello; exit 1");
        script(
            d.path(),
            "badresult",
            "echo '{\"ips\":[{\"address\":\"x\"}]}'",
        );
        let path = vec![d.path().to_path_buf()];
        let e = Delegation::new("cnierr", &path)
            .run(Command::Del, b"{}")
            .unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str(), e.details.as_str()),
            (ErrorCode::TryAgainLater, "busy", "etcd")
        );
        let e = Delegation::new("silent", &path)
            .run(Command::Del, b"{}")
            .unwrap_err();
        assert!(e.msg.contains("oops on stderr"), "{}", e.msg);
        let e = Delegation::new("mute", &path)
            .run(Command::Del, b"{}")
            .unwrap_err();
        assert!(e.msg.contains("no error message"), "{}", e.msg);
        let e = Delegation::new("garbage", &path)
            .run(Command::Del, b"{}")
            .unwrap_err();
        assert!(e.msg.contains("hello"), "{}", e.msg);
        let e = Delegation::new("badresult", &path)
            .add(b"{}", "1.0.0")
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Decode);
    }

    #[test]
    fn timeout_kills_and_says_try_again() {
        let d = tempfile::tempdir().unwrap();
        script(d.path(), "slow", "sleep 30");
        let path = vec![d.path().to_path_buf()];
        let mut del = Delegation::new("slow", &path);
        del.timeout = Duration::from_millis(200);
        let t = std::time::Instant::now();
        let e = del.run(Command::Add, b"{}").unwrap_err();
        assert_eq!(e.code, ErrorCode::TryAgainLater);
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    /// The timed-out plugin is gone (killed and reaped) by the time the error is returned, also
    /// when it closed its stdout early and the wait had to poll.
    #[test]
    fn timeout_kills_and_reaps_the_plugin() {
        let d = tempfile::tempdir().unwrap();
        let pidfile = d.path().join("pid");
        let pf = pidfile.display();
        script(d.path(), "slow", &format!("echo $$ > {pf}; exec sleep 30"));
        script(
            d.path(),
            "mute",
            &format!("exec >&- 2>&-; echo $$ > {pf}; exec sleep 30"),
        );
        let path = vec![d.path().to_path_buf()];
        for plugin in ["slow", "mute"] {
            let mut del = Delegation::new(plugin, &path);
            del.timeout = Duration::from_millis(300);
            let e = del.run(Command::Add, b"{}").unwrap_err();
            assert_eq!(e.code, ErrorCode::TryAgainLater, "{plugin}");
            let pid = std::fs::read_to_string(&pidfile).unwrap();
            let proc_dir = format!("/proc/{}", pid.trim());
            assert!(
                !Path::new(&proc_dir).exists(),
                "{plugin}: {proc_dir} still exists (not killed or not reaped)"
            );
        }
    }

    #[test]
    fn output_of_a_plugin_that_exits_before_the_timeout_is_kept() {
        let d = tempfile::tempdir().unwrap();
        script(d.path(), "quick", "sleep 0.2; echo done; echo log >&2");
        let path = vec![d.path().to_path_buf()];
        let mut del = Delegation::new("quick", &path);
        del.timeout = Duration::from_secs(10);
        let t = std::time::Instant::now();
        assert_eq!(del.exec(Command::Add, b"{}").unwrap(), b"done\n");
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    /// Pipes larger than the kernel's buffers in both directions, a plugin that writes before
    /// reading, and one that exits without reading its config: none blocks the delegation.
    #[test]
    fn large_output_before_large_input_does_not_deadlock() {
        let d = tempfile::tempdir().unwrap();
        script(
            d.path(),
            "chatty",
            "head -c 300000 /dev/zero | tr '\\0' o; head -c 100000 /dev/zero | tr '\\0' e >&2; wc -c",
        );
        script(d.path(), "deaf", "echo ignored");
        let path = vec![d.path().to_path_buf()];
        let input = vec![b'i'; 500_000];
        let out = Delegation::new("chatty", &path)
            .exec(Command::Add, &input)
            .unwrap();
        assert_eq!(out.len(), 300_000 + "500000\n".len());
        assert!(out.starts_with(b"ooo") && out.ends_with(b"500000\n"));
        let out = Delegation::new("deaf", &path)
            .exec(Command::Add, &input)
            .unwrap();
        assert_eq!(out, b"ignored\n");
    }

    /// A plugin printing far more than any result is read to its end (it never blocks on a
    /// full pipe) but not kept: the delegation fails naming the plugin, its memory bounded.
    #[test]
    fn endless_output_is_refused_not_kept() {
        let d = tempfile::tempdir().unwrap();
        script(
            d.path(),
            "flood",
            "head -c 20000000 /dev/zero; head -c 20000000 /dev/zero >&2",
        );
        let path = vec![d.path().to_path_buf()];
        let mut del = Delegation::new("flood", &path);
        del.timeout = Duration::from_secs(30);
        let e = del.exec(Command::Add, b"{}").unwrap_err();
        assert!(
            e.msg.contains("flood") && e.msg.contains("more than"),
            "{}",
            e.msg
        );
        let mut buf = Vec::new();
        drain(&mut Some(&[7u8; 3 * MAX_PLUGIN_OUTPUT][..]), &mut buf);
        assert_eq!(
            buf.len(),
            MAX_PLUGIN_OUTPUT + 1,
            "kept one byte past the limit"
        );
    }

    #[test]
    fn children_know_their_depth_and_delegator() {
        let d = tempfile::tempdir().unwrap();
        script(
            d.path(),
            "who",
            r#"printf '{"ips":[{"address":"10.0.0.9/32"}],"dns":{"domain":"%s-%s"}}' "$CNI_RS_DELEGATION_DEPTH" "$CNI_RS_DELEGATOR_PID""#,
        );
        let path = vec![d.path().to_path_buf()];
        let r = Delegation::new("who", &path).add(b"{}", "1.0.0").unwrap();
        assert_eq!(r.dns.domain, format!("1-{}", std::process::id()));
    }

    #[test]
    fn non_ipam_types_are_refused() {
        for t in ["calico", "portmap", "bandwidth", "loopback"] {
            let e = check_ipam_type(t).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidConfig);
            assert!(e.msg.contains("ipam.type"), "{}", e.msg);
        }
        check_ipam_type("calico-ipam").unwrap();
        check_ipam_type("host-local").unwrap();
    }

    #[test]
    fn delegation_depth_is_bounded() {
        check_depth(0, "calico-ipam").unwrap();
        check_depth(MAX_DEPTH - 1, "x").unwrap();
        let e = check_depth(MAX_DEPTH, "calico").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert!(e.msg.contains("delegation depth"), "{}", e.msg);
    }

    #[test]
    fn delegator_check_passes_without_delegation() {
        // The test process was not delegated to (no DELEGATOR_ENV): nothing to refuse.
        if std::env::var_os(DELEGATOR_ENV).is_none() {
            ensure_delegator_alive().unwrap();
        }
    }
}
