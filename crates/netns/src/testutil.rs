//! Throwaway network namespaces for root tests (feature `test-util`).
//!
//! libtest runs every test on its own thread, so [`unshare_current_thread_netns`] at the top of a
//! test gives it a private "host" netns; [`TempNetNs`] adds "container" namespaces whose path can be
//! passed as `CNI_NETNS` to a plugin binary. Both vanish with their thread: nothing leaks into the
//! machine's real namespaces, even when a test panics.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use nix::sched::{unshare, CloneFlags};
use nix::unistd::{geteuid, gettid};

use crate::{in_netns, Error, NetNs};

/// The process is not running as root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "this test needs root (CAP_NET_ADMIN/CAP_SYS_ADMIN to create network namespaces); \
     run the test suite as root (euid is {euid})"
)]
pub struct NotRoot {
    pub euid: u32,
}

/// `Err` unless the effective uid is 0 (network tests need CAP_NET_ADMIN/CAP_SYS_ADMIN).
pub fn check_root() -> Result<(), NotRoot> {
    let euid = geteuid();
    if euid.is_root() {
        Ok(())
    } else {
        Err(NotRoot {
            euid: euid.as_raw(),
        })
    }
}

/// Panics with a clear message unless running as root.
pub fn require_root() {
    if let Err(e) = check_root() {
        panic!("{e}");
    }
}

/// Moves the calling thread into a new, empty network namespace (only `lo`, down).
pub fn unshare_current_thread_netns() -> Result<(), Error> {
    require_root();
    unshare(CloneFlags::CLONE_NEWNET).map_err(Error::Unshare)
}

/// A new network namespace kept alive by a parked "keeper" thread; destroyed on drop.
///
/// It is created from the calling thread, so it is independent of the caller's netns.
/// [`TempNetNs::path`] is `/proc/<pid>/task/<tid>/ns/net`, valid while the value lives. Because
/// the keeper is a thread of this process, nothing outlives the process, even on SIGKILL.
pub struct TempNetNs {
    netns: Option<NetNs>,
    path: PathBuf,
    tid: i32,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TempNetNs {
    pub fn new() -> Result<TempNetNs, Error> {
        TempNetNs::with_thread_name("temp-netns")
    }

    /// Like [`TempNetNs::new`], naming the keeper thread (seen in debuggers and `ps -L`).
    pub fn with_thread_name(name: &str) -> Result<TempNetNs, Error> {
        require_root();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<i32, Error>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                if let Err(e) = unshare(CloneFlags::CLONE_NEWNET) {
                    let _ = ready_tx.send(Err(Error::Unshare(e)));
                    return;
                }
                let _ = ready_tx.send(Ok(gettid().as_raw()));
                // Park until the sender is dropped.
                let _ = stop_rx.recv();
            })
            .map_err(|source| Error::Thread {
                path: PathBuf::from("<new netns>"),
                source,
            })?;
        let tid = match ready_rx.recv() {
            Ok(Ok(tid)) => tid,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(Error::Panicked {
                    path: PathBuf::from("<new netns>"),
                    message: "netns thread exited early".into(),
                });
            }
        };
        let path = PathBuf::from(format!("/proc/{}/task/{tid}/ns/net", std::process::id()));
        let netns = NetNs::open(&path);
        let mut me = TempNetNs {
            netns: None,
            path,
            tid,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        me.netns = Some(netns?);
        Ok(me)
    }

    /// Path usable as `CNI_NETNS` (by this process and by children) while `self` lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Id of the keeper thread (`ip link set X netns <tid>` moves a link into the namespace).
    pub fn tid(&self) -> i32 {
        self.tid
    }

    pub fn netns(&self) -> &NetNs {
        self.netns
            .as_ref()
            .expect("netns is set after construction")
    }

    /// Runs `f` inside this namespace (see [`in_netns`]).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, Error> {
        in_netns(self.netns(), f)
    }

    /// Raw fd of the open namespace (e.g. for creating a veth peer in it).
    pub fn raw_fd(&self) -> i32 {
        self.netns().as_raw_fd()
    }
}

impl Drop for TempNetNs {
    fn drop(&mut self) {
        // Close our fd first, then let the parked thread exit: the kernel frees the netns (and
        // the links inside it) once nothing references it.
        self.netns = None;
        self.stop = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
