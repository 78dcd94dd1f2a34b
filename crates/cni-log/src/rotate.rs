//! A log file rotated like lumberjack (what Calico uses): when a write would pass the size limit
//! the file is renamed to `<name>-<2006-01-02T15-04-05.000><ext>` and a new one started; backups
//! beyond the count or older than the age limit are removed. Many plugin processes append at once,
//! so rotation takes an exclusive lock on a sidecar file and re-checks the size under it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    pub max_size_bytes: u64,
    pub max_age_days: u64,
    pub max_backups: u64,
}

pub struct RotatingFile {
    path: PathBuf,
    file: File,
    rotation: Rotation,
}

/// Opens for appending, refusing anything but a regular file (without blocking on a FIFO).
fn open_append(path: &Path) -> io::Result<File> {
    cni::file::open_with(
        path,
        "log_file_path",
        OpenOptions::new().create(true).append(true),
    )
    .map_err(|e| match e {
        cni::file::FileError::Io { source, .. } => source,
        other => io::Error::new(io::ErrorKind::InvalidInput, other.to_string()),
    })
}

impl Default for Rotation {
    /// Calico's defaults: 100 MiB, 30 days, 10 backups.
    fn default() -> Self {
        Rotation {
            max_size_bytes: 100 << 20,
            max_age_days: 30,
            max_backups: 10,
        }
    }
}

impl RotatingFile {
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<RotatingFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file: open_append(path)?,
            rotation,
        })
    }

    /// Appends one line, rotating first when it would overflow. Errors are swallowed: a plugin
    /// must not fail because its log could not be written.
    pub fn write_line(&mut self, line: &[u8]) {
        let size = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        if size.saturating_add(line.len() as u64) > self.rotation.max_size_bytes {
            if let Err(e) = self.rotate() {
                eprintln!("log rotation of {} failed: {e}", self.path.display());
            }
        }
        let _ = self.file.write_all(line);
    }

    fn lock_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".lock");
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> io::Result<()> {
        let lock = open_append(&self.lock_path())?;
        lock.lock()?;
        // Another process may have rotated while we waited: then the path names a new file and
        // we only reopen it.
        if same_file(&self.file, &self.path) {
            std::fs::rename(&self.path, self.backup_name())?;
        }
        self.file = open_append(&self.path)?;
        self.prune()?;
        lock.unlock()
    }

    fn split_name(&self) -> (String, String) {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match name.rfind('.') {
            Some(i) if i > 0 => (name[..i].to_string(), name[i..].to_string()),
            _ => (name, String::new()),
        }
    }

    fn backup_name(&self) -> PathBuf {
        let (stem, ext) = self.split_name();
        self.path
            .with_file_name(format!("{stem}-{}{ext}", crate::time::backup_stamp()))
    }

    /// Backups sorted newest first.
    fn backups(&self) -> io::Result<Vec<(PathBuf, SystemTime)>> {
        let (stem, ext) = self.split_name();
        let prefix = format!("{stem}-");
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && name.ends_with(&ext) && !name.ends_with(".lock") {
                let modified = entry.metadata()?.modified()?;
                out.push((entry.path(), modified));
            }
        }
        // Backup names embed the timestamp, so the name order is the age order.
        out.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(out)
    }

    fn prune(&self) -> io::Result<()> {
        let max_age = Duration::from_secs(self.rotation.max_age_days.saturating_mul(86_400));
        let now = SystemTime::now();
        for (i, (path, modified)) in self.backups()?.into_iter().enumerate() {
            let too_many = self.rotation.max_backups > 0 && i as u64 >= self.rotation.max_backups;
            let too_old = self.rotation.max_age_days > 0
                && now.duration_since(modified).unwrap_or_default() > max_age;
            if too_many || too_old {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(())
    }
}

fn same_file(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn rotates_by_size_and_keeps_count() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sub/cni.log");
        let rot = Rotation {
            max_size_bytes: 100,
            max_age_days: 30,
            max_backups: 2,
        };
        let mut f = RotatingFile::open(&path, rot).unwrap();
        for i in 0..6 {
            f.write_line(format!("{i:0>59}\n").as_bytes());
            // Distinct backup timestamps.
            std::thread::sleep(Duration::from_millis(3));
        }
        let names = files(path.parent().unwrap());
        assert!(names.contains(&"cni.log".to_string()));
        let backups: Vec<_> = names.iter().filter(|n| n.starts_with("cni-")).collect();
        assert_eq!(backups.len(), 2, "{names:?}");
        assert!(backups
            .iter()
            .all(|n| n.ends_with(".log") && n.len() == "cni-2006-01-02T15-04-05.000.log".len()));
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.len() <= 100);
        assert_eq!(current, format!("{:0>59}\n", 5));
    }

    #[test]
    fn picks_up_existing_size() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("cni.log");
        std::fs::write(&path, vec![b'x'; 90]).unwrap();
        let rot = Rotation {
            max_size_bytes: 100,
            max_age_days: 0,
            max_backups: 0,
        };
        RotatingFile::open(&path, rot)
            .unwrap()
            .write_line(b"0123456789abcdef\n");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "0123456789abcdef\n"
        );
        assert_eq!(files(d.path()).len(), 2);
    }
}
