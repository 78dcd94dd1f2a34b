//! Calico's host-wide IPAM lock: `flock(LOCK_EX)` on `ipam_lock_file` (default
//! `/var/run/calico/ipam.lock`, parent created 0777), held across the whole allocator call so
//! concurrent invocations on one node queue instead of racing on the same block.
//!
//! Like Calico, failing to create or lock the file is logged and the invocation continues
//! unlocked: correctness never depends on the lock (every datastore write is a CAS), it only
//! trades parallelism for fewer lost races. Whether it is on is `ipam.host_lock`; see the
//! crate README for the measurements behind the default.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

/// Held lock; released when dropped (closing the file releases the flock).
#[derive(Debug)]
pub struct HostLock {
    _file: File,
}

/// Take the lock, blocking until it is free. `None` (logged) if the file cannot be used.
pub fn acquire(path: &Path) -> Option<HostLock> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o777)
            .create(dir)
        {
            log::warn!(
                "cannot create {}: {e}; continuing without the host lock",
                dir.display()
            );
            return None;
        }
    }
    // Non-blocking open with a kind check: a FIFO swapped in after the config check must not
    // hang us (it is refused and we go on unlocked, as for any unusable lock file).
    let file = match cni::file::open_with(
        path,
        "ipam_lock_file",
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644),
    ) {
        Ok(f) => f,
        Err(e) => {
            log::warn!(
                "cannot open {}: {e}; continuing without the host lock",
                path.display()
            );
            return None;
        }
    };
    let start = Instant::now();
    if let Err(e) = file.lock() {
        log::warn!(
            "cannot lock {}: {e}; continuing without the host lock",
            path.display()
        );
        return None;
    }
    log::debug!(
        "host lock {} acquired after {:?}",
        path.display(),
        start.elapsed()
    );
    Some(HostLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn serialises_holders_and_creates_parent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/calico/ipam.lock");
        let inside = AtomicUsize::new(0);
        let max = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    // Separate open file descriptions, like separate processes.
                    let _l = acquire(&path).expect("lock");
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    inside.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        assert_eq!(max.load(Ordering::SeqCst), 1);
        assert!(path.exists());
    }

    #[test]
    fn unusable_path_is_not_fatal() {
        assert!(acquire(Path::new("/proc/no-such-dir/ipam.lock")).is_none());
    }
}
