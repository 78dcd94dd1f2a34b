//! The on-disk store shared with upstream host-local (`<dataDir>/<network>/`):
//! one file per reserved address named after it and holding `<containerID>\r\n<ifname>`
//! (older versions wrote only the id; still matched), `last_reserved_ip.<setIndex>`, and `lock`
//! (flock) serialising every operation across processes (Go and Rust alike).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Upstream default `dataDir`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";
const LAST_IP_PREFIX: &str = "last_reserved_ip.";
const LINE_BREAK: &str = "\r\n";

/// One network's directory plus its lock file.
pub struct Store {
    dir: PathBuf,
    lock: File,
}

/// Proof that the store is flock'ed; all data operations go through it.
pub struct Locked<'a> {
    store: &'a Store,
}

impl Store {
    /// Opens (creating with mode 0755) `<data_dir>/<network>` and its `lock` file.
    pub fn open(data_dir: &Path, network: &str) -> Result<Store> {
        if network.is_empty() || network.contains('/') || network == "." || network == ".." {
            return Err(Error::BadNetworkName(network.to_string()));
        }
        let dir = data_dir.join(network);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .map_err(|e| Error::io("mkdir", &dir, e))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| Error::io("open", &lock_path, e))?;
        Ok(Store { dir, lock })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the exclusive flock; released when the guard is dropped.
    pub fn lock(&self) -> Result<Locked<'_>> {
        self.lock
            .lock()
            .map_err(|e| Error::io("flock", self.dir.join("lock"), e))?;
        Ok(Locked { store: self })
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = self.store.lock.unlock();
    }
}

fn key(id: &str, ifname: &str) -> String {
    format!("{}{LINE_BREAK}{ifname}", id.trim())
}

impl Locked<'_> {
    fn path(&self, name: &str) -> PathBuf {
        self.store.dir.join(name)
    }

    /// Exclusively creates the file for `ip`; false when it is already taken. On success
    /// `last_reserved_ip.<range_id>` is updated.
    pub fn reserve(&self, id: &str, ifname: &str, ip: IpAddr, range_id: usize) -> Result<bool> {
        let path = self.path(&ip.to_string());
        let mut f = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        if let Err(e) = f.write_all(key(id, ifname).as_bytes()) {
            drop(f);
            let _ = std::fs::remove_file(&path);
            return Err(Error::io("write", &path, e));
        }
        let last = self.path(&format!("{LAST_IP_PREFIX}{range_id}"));
        write_mode_0600(&last, ip.to_string().as_bytes())
            .map_err(|e| Error::io("write", &last, e))?;
        Ok(true)
    }

    /// Deletes the reservation of `ip` if `id`+`ifname` holds it (undo of a failed ADD).
    pub fn release_ip(&self, ip: IpAddr, id: &str, ifname: &str) -> Result<()> {
        let path = self.path(&ip.to_string());
        match std::fs::read_to_string(&path) {
            Ok(c) if c.trim() == key(id, ifname) => {
                std::fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("read", &path, e)),
        }
    }

    /// Puts `last_reserved_ip.<range_id>` back to `ip`, or removes it when there was none.
    pub fn restore_last_reserved_ip(&self, range_id: usize, ip: Option<IpAddr>) -> Result<()> {
        let last = self.path(&format!("{LAST_IP_PREFIX}{range_id}"));
        match ip {
            Some(ip) => write_mode_0600(&last, ip.to_string().as_bytes())
                .map_err(|e| Error::io("write", &last, e)),
            None => match std::fs::remove_file(&last) {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io("remove", &last, e)),
                _ => Ok(()),
            },
        }
    }

    /// The address recorded for round-robin in set `range_id`, if any and parseable.
    pub fn last_reserved_ip(&self, range_id: usize) -> Option<IpAddr> {
        let text =
            std::fs::read_to_string(self.path(&format!("{LAST_IP_PREFIX}{range_id}"))).ok()?;
        text.trim().parse().ok()
    }

    /// (address, trimmed content) of every reservation file.
    fn reservations(&self) -> Result<Vec<(IpAddr, PathBuf, String)>> {
        let dir = &self.store.dir;
        let rd = std::fs::read_dir(dir).map_err(|e| Error::io("readdir", dir, e))?;
        let mut out = Vec::new();
        for entry in rd.flatten() {
            // Only address-named files are reservations; `lock` and `last_reserved_ip.*` never are.
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let path = entry.path();
            if let Ok(content) = std::fs::read_to_string(&path) {
                out.push((ip, path, content.trim().to_string()));
            }
        }
        out.sort_by_key(|(ip, _, _)| *ip);
        Ok(out)
    }

    /// Addresses held by `id`+`ifname` (or by `id` alone in the old format).
    pub fn get_by_id(&self, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        let (new, old) = (key(id, ifname), id.trim().to_string());
        Ok(self
            .reservations()?
            .into_iter()
            .filter(|(_, _, c)| *c == new || *c == old)
            .map(|(ip, _, _)| ip)
            .collect())
    }

    /// Whether `id`+`ifname` (or, failing that, `id` in the old format) holds any address.
    pub fn find_by_id(&self, id: &str, ifname: &str) -> Result<bool> {
        let (new, old) = (key(id, ifname), id.trim().to_string());
        let all = self.reservations()?;
        Ok(all.iter().any(|(_, _, c)| *c == new) || all.iter().any(|(_, _, c)| *c == old))
    }

    /// Deletes every file of `id`+`ifname`; only if there is none, those of `id` in the old
    /// format. Missing files are not errors (DEL must be idempotent).
    pub fn release_by_id(&self, id: &str, ifname: &str) -> Result<()> {
        let all = self.reservations()?;
        let remove = |want: &str| -> Result<bool> {
            let mut found = false;
            let mut errors = Vec::new();
            for (_, path, _) in all.iter().filter(|(_, _, c)| c == want) {
                match std::fs::remove_file(path) {
                    Ok(()) => found = true,
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => errors.push(Error::io("remove", path, e)),
                }
            }
            match errors.len() {
                0 => Ok(found),
                1 => Err(errors.remove(0)),
                _ => Err(Error::Multiple(errors)),
            }
        };
        if !remove(&key(id, ifname))? {
            remove(id.trim())?;
        }
        Ok(())
    }
}

impl Locked<'_> {
    /// GC: deletes reservations not held by any `valid` (containerID, ifname) pair and returns
    /// the released addresses. Old-format files (id only) are kept while their id is valid.
    pub fn release_all_except(&self, valid: &[(&str, &str)]) -> Result<Vec<IpAddr>> {
        let keep = |content: &str| {
            valid
                .iter()
                .any(|(id, ifname)| content == key(id, ifname) || content == id.trim())
        };
        let mut released = Vec::new();
        let mut errors = Vec::new();
        for (ip, path, content) in self.reservations()? {
            if keep(&content) {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => released.push(ip),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => errors.push(Error::io("remove", &path, e)),
            }
        }
        match errors.len() {
            0 => Ok(released),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Multiple(errors)),
        }
    }
}

/// Writes `data` as the whole content of `path` (created with mode 0600).
///
/// Overwrites in place and then trims, instead of opening with `O_TRUNC`: on ext4 (default
/// `auto_da_alloc`) truncating a file to zero makes its next `close` start writeback, which under
/// disk load stalled every ADD's `last_reserved_ip` update by milliseconds (seen with
/// `strace -T`). The file is a round-robin hint read under the same flock, so a torn write
/// after a crash only moves where the next search starts.
fn write_mode_0600(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.set_len(data.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn reserve_writes_upstream_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), "net1").unwrap();
        let l = store.lock().unwrap();
        assert!(l.reserve(" ctr1 ", "eth0", ip("10.0.0.2"), 0).unwrap());
        assert!(!l.reserve("ctr2", "eth0", ip("10.0.0.2"), 0).unwrap());
        let dir = tmp.path().join("net1");
        assert_eq!(
            std::fs::read_to_string(dir.join("10.0.0.2")).unwrap(),
            "ctr1\r\neth0"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("last_reserved_ip.0")).unwrap(),
            "10.0.0.2"
        );
        assert!(dir.join("lock").is_file());
        assert_eq!(l.last_reserved_ip(0), Some(ip("10.0.0.2")));
        assert_eq!(l.last_reserved_ip(1), None);
        assert!(l.reserve("ctr1", "eth0", ip("2001:db8::5"), 1).unwrap());
        assert!(dir.join("2001:db8::5").is_file());
        assert_eq!(
            l.get_by_id("ctr1", "eth0").unwrap(),
            [ip("10.0.0.2"), ip("2001:db8::5")]
        );
        assert!(l.get_by_id("ctr1", "eth1").unwrap().is_empty());
    }

    #[test]
    fn shorter_last_reserved_ip_replaces_longer_one_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), "net").unwrap();
        let l = store.lock().unwrap();
        assert!(l.reserve("a", "eth0", ip("10.0.0.100"), 0).unwrap());
        assert!(l.reserve("b", "eth0", ip("10.0.0.7"), 0).unwrap());
        let last = store.dir().join("last_reserved_ip.0");
        assert_eq!(std::fs::read_to_string(&last).unwrap(), "10.0.0.7");
        l.restore_last_reserved_ip(0, Some(ip("2001:db8::1")))
            .unwrap();
        assert_eq!(std::fs::read_to_string(&last).unwrap(), "2001:db8::1");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&last).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn release_matches_new_then_old_format() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), "net").unwrap();
        let dir = store.dir().to_path_buf();
        std::fs::write(dir.join("10.0.0.3"), "ctr1").unwrap(); // pre-ifname format
        let l = store.lock().unwrap();
        assert!(l.reserve("ctr1", "eth0", ip("10.0.0.2"), 0).unwrap());
        assert!(l.find_by_id("ctr1", "eth0").unwrap());
        // New-style match exists: only it is released.
        l.release_by_id("ctr1", "eth0").unwrap();
        assert!(!dir.join("10.0.0.2").exists());
        assert!(dir.join("10.0.0.3").exists());
        // Now only the old-style file matches.
        assert!(l.find_by_id("ctr1", "eth9").unwrap());
        l.release_by_id("ctr1", "eth9").unwrap();
        assert!(!dir.join("10.0.0.3").exists());
        assert!(!l.find_by_id("ctr1", "eth0").unwrap());
        // Idempotent; lock and bookkeeping files survive.
        l.release_by_id("ctr1", "eth0").unwrap();
        assert!(dir.join("lock").exists() && dir.join("last_reserved_ip.0").exists());
    }

    #[test]
    fn gc_keeps_only_valid_attachments() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), "net").unwrap();
        let dir = store.dir().to_path_buf();
        let l = store.lock().unwrap();
        l.reserve("keep", "eth0", ip("10.0.0.2"), 0).unwrap();
        l.reserve("keep", "eth1", ip("10.0.0.3"), 0).unwrap();
        l.reserve("gone", "eth0", ip("10.0.0.4"), 0).unwrap();
        std::fs::write(dir.join("10.0.0.5"), "keep").unwrap();
        std::fs::write(dir.join("10.0.0.6"), "old-gone").unwrap();
        let released = l.release_all_except(&[("keep", "eth0")]).unwrap();
        assert_eq!(released, [ip("10.0.0.3"), ip("10.0.0.4"), ip("10.0.0.6")]);
        assert!(dir.join("10.0.0.2").exists() && dir.join("10.0.0.5").exists());
        assert!(dir.join("lock").exists() && dir.join("last_reserved_ip.0").exists());
    }

    #[test]
    fn bad_network_names_are_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        for n in ["", ".", "..", "a/b"] {
            assert!(matches!(
                Store::open(tmp.path(), n),
                Err(Error::BadNetworkName(_))
            ));
        }
    }
}
