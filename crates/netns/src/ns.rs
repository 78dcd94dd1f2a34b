use std::any::Any;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};
use nix::sys::statfs::{fstatfs, NSFS_MAGIC, PROC_SUPER_MAGIC};

use crate::Error;

/// `ioctl(fd, NS_GET_NSTYPE)` (`_IO(0xb7, 0x3)`), available since Linux 4.11.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// An open network namespace file. Holding it keeps the namespace alive.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Opens a netns file such as `/run/netns/x`, `/var/run/netns/x` or `/proc/<pid>/ns/net`.
    ///
    /// A missing path gives [`Error::NotFound`] (CNI DEL treats that as success); a file that is not
    /// a network namespace gives [`Error::NotNetns`].
    pub fn open(path: impl AsRef<Path>) -> Result<NetNs, Error> {
        let path = path.as_ref().to_path_buf();
        // Non-blocking: a FIFO given as a netns path must not hang the open (it is then refused
        // as not a netns); namespace files ignore the flag.
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::NotFound { path }),
            Err(source) => return Err(Error::Open { path, source }),
        };
        check_is_netns(&file, &path)?;
        Ok(NetNs { file, path })
    }

    /// The netns of the calling thread (not of the process: `setns`/`unshare` are per thread).
    pub fn current_thread() -> Result<NetNs, Error> {
        Self::open("/proc/thread-self/ns/net")
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// The path this namespace was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Identity of the namespace (device and inode of the nsfs file): equal ids mean the same netns,
    /// whatever path was used to open it.
    pub fn id(&self) -> Result<(u64, u64), Error> {
        let meta = self.file.metadata().map_err(|source| Error::Open {
            path: self.path.clone(),
            source,
        })?;
        Ok((meta.dev(), meta.ino()))
    }

    /// True when both handles refer to the same namespace.
    pub fn same_as(&self, other: &NetNs) -> Result<bool, Error> {
        Ok(self.id()? == other.id()?)
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for NetNs {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

fn check_is_netns(file: &File, path: &Path) -> Result<(), Error> {
    let not_netns = || Error::NotNetns {
        path: path.to_path_buf(),
    };
    let fs = fstatfs(file).map_err(|e| Error::Open {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    // Old kernels exposed namespace files on procfs; current ones on nsfs.
    if fs.filesystem_type() != NSFS_MAGIC && fs.filesystem_type() != PROC_SUPER_MAGIC {
        return Err(not_netns());
    }
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    if kind >= 0 {
        if kind != libc::CLONE_NEWNET {
            return Err(not_netns());
        }
    } else if fs.filesystem_type() != NSFS_MAGIC {
        // No way to tell the kind of a procfs file: accept only nsfs when the ioctl is unsupported.
        return Err(not_netns());
    }
    Ok(())
}

/// Runs `f` on a fresh scoped thread that first joined `ns`, and returns `f`'s value.
///
/// The thread ends with `f`, so nothing has to be restored and no other thread ever changes netns.
/// A panic inside `f` comes back as [`Error::Panicked`] (with `panic = "abort"` builds the process
/// aborts instead, as for any panic).
pub fn in_netns<T, F>(ns: &NetNs, f: F) -> Result<T, Error>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("netns".into())
            .spawn_scoped(scope, || -> Result<T, Error> {
                setns(ns.fd(), CloneFlags::CLONE_NEWNET).map_err(|source| Error::Setns {
                    path: ns.path.clone(),
                    source,
                })?;
                Ok(f())
            })
            .map_err(|source| Error::Thread {
                path: ns.path.clone(),
                source,
            })?;
        match handle.join() {
            Ok(result) => result,
            Err(payload) => Err(Error::Panicked {
                path: ns.path.clone(),
                message: panic_message(payload.as_ref()),
            }),
        }
    })
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_path_is_not_found() {
        let err = NetNs::open("/nonexistent/netns/x").unwrap_err();
        assert!(err.is_not_found(), "{err}");
    }

    #[test]
    fn regular_file_is_rejected() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let err = NetNs::open(f.path()).unwrap_err();
        assert!(matches!(err, Error::NotNetns { .. }), "{err}");
    }

    #[test]
    fn other_namespace_kind_is_rejected() {
        let err = NetNs::open("/proc/thread-self/ns/uts").unwrap_err();
        assert!(matches!(err, Error::NotNetns { .. }), "{err}");
    }

    #[test]
    fn current_thread_netns_is_same_as_self() {
        let a = NetNs::current_thread().unwrap();
        let b = NetNs::open("/proc/thread-self/ns/net").unwrap();
        assert!(a.same_as(&b).unwrap());
        assert_eq!(a.path(), Path::new("/proc/thread-self/ns/net"));
    }
}
