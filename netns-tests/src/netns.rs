//! Private network namespaces owned by a test.
//!
//! Each namespace is held by a parked "keeper" thread that called `unshare(CLONE_NEWNET)`; its path
//! `/proc/<pid>/task/<tid>/ns/net` is usable as `CNI_NETNS`. Because the keeper is a thread of the
//! test process, nothing outlives the process even on SIGKILL, and dropping the [`Netns`] (also
//! during a panic unwind) stops the keeper, so the path disappears and the kernel frees the
//! namespace once the last plugin-held reference is gone. The test's own threads never change
//! namespace: code runs inside a namespace on a short-lived scoped thread (see [`Netns::run`]).

use std::path::Path;
use std::process::{Child, Command};

use netns::testutil::TempNetNs;
use nix::sched::CloneFlags;

use crate::error::{HarnessError, Result};
use crate::root::require_root;

/// A network namespace that lives as long as this value.
pub struct Netns {
    name: String,
    /// The keeper thread and an open handle used for `setns` (netns crate's test utility).
    ns: TempNetNs,
}

impl Netns {
    /// Creates a fresh, empty network namespace (only `lo`, down). `name` is for messages only.
    pub fn new(name: &str) -> Result<Netns> {
        require_root()?;
        let ns = TempNetNs::with_thread_name(&format!("netns-{name}"))
            .map_err(|e| HarnessError::Namespace(format!("creating {name}: {e}")))?;
        Ok(Netns {
            name: name.to_string(),
            ns,
        })
    }

    /// Creates a namespace playing the node ("host"): `lo` up and `net.ipv4.ip_forward=1`.
    pub fn new_host(name: &str) -> Result<Netns> {
        let ns = Netns::new(name)?;
        ns.set_link_up("lo")?;
        ns.set_sysctl("net.ipv4.ip_forward", "1")?;
        Ok(ns)
    }

    /// Human-readable name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path usable as `CNI_NETNS` (and by `nsenter --net=`).
    pub fn path(&self) -> &Path {
        self.ns.path()
    }

    /// Thread id holding the namespace; `ip link set X netns <tid>` moves a link into it.
    pub fn tid(&self) -> i32 {
        self.ns.tid()
    }

    /// Runs `f` on a scoped thread that entered this namespace; the caller's thread is untouched.
    /// Sockets created inside `f` stay bound to this namespace after it returns. A panic in `f`
    /// is propagated to the caller.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        std::thread::scope(|s| {
            let handle = s.spawn(|| -> Result<T> {
                nix::sched::setns(self.ns.netns(), CloneFlags::CLONE_NEWNET).map_err(|e| {
                    HarnessError::Namespace(format!("setns into {}: {e}", self.name))
                })?;
                Ok(f())
            });
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Spawns `cmd` inside this namespace (the child inherits the entering thread's netns).
    /// Retries a few times on ETXTBSY, which parallel tests writing scripts can cause.
    pub fn spawn(&self, cmd: &mut Command) -> Result<Child> {
        let what = crate::exec::describe(cmd);
        self.run(|| crate::exec::spawn_retrying(cmd))?
            .map_err(|e| HarnessError::io(format!("spawning `{what}` in netns {}", self.name), e))
    }
}

impl std::fmt::Debug for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Netns({} at {})", self.name, self.path().display())
    }
}
