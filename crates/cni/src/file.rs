//! Opening paths that come from a network config or the environment without trusting what they
//! name. A FIFO blocks `open(2)` until a peer appears, `/dev/zero` never ends, `/dev/null` makes
//! SQLite create `/dev/null-journal`: every such path is checked for its kind before anything
//! blocks on it, opened non-blocking and checked again on the open fd (closing the race), and
//! read with a size bound. Errors name the config field or variable the path came from.

use crate::error::{CniCode, ErrorCode};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Bound for small text files (resolv.conf, nodename, ...): far above any real one.
pub const SMALL_FILE_LIMIT: u64 = 1 << 20;

/// A path named by `field` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{field}: {path:?} does not exist")]
    NotFound { field: String, path: PathBuf },
    #[error("{field}: {path:?} is a {kind}, not a regular file")]
    NotRegular {
        field: String,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("{field}: {path:?} is larger than {limit} bytes")]
    TooLarge {
        field: String,
        path: PathBuf,
        limit: u64,
    },
    #[error("{field}: {path:?} is not valid UTF-8")]
    NotUtf8 { field: String, path: PathBuf },
    #[error("{field}: cannot open {path:?}: {source}")]
    Io {
        field: String,
        path: PathBuf,
        source: io::Error,
    },
}

impl FileError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::NotFound { .. })
    }
}

impl CniCode for FileError {
    fn cni_code(&self) -> ErrorCode {
        match self {
            // The config named something unusable: a config error, whatever the file system says.
            FileError::NotFound { .. }
            | FileError::NotRegular { .. }
            | FileError::TooLarge { .. }
            | FileError::NotUtf8 { .. } => ErrorCode::InvalidConfig,
            FileError::Io { .. } => ErrorCode::Io,
        }
    }
}

/// What a file type is called in messages.
pub fn kind_name(t: std::fs::FileType) -> &'static str {
    if t.is_file() {
        "regular file"
    } else if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else if t.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

fn io_err(field: &str, path: &Path, source: io::Error) -> FileError {
    if source.kind() == io::ErrorKind::NotFound {
        FileError::NotFound {
            field: field.to_string(),
            path: path.to_path_buf(),
        }
    } else {
        FileError::Io {
            field: field.to_string(),
            path: path.to_path_buf(),
            source,
        }
    }
}

fn require_regular(field: &str, path: &Path, t: std::fs::FileType) -> Result<(), FileError> {
    if t.is_file() {
        Ok(())
    } else {
        Err(FileError::NotRegular {
            field: field.to_string(),
            path: path.to_path_buf(),
            kind: kind_name(t),
        })
    }
}

/// For a path another library opens (SQLite, a lock we create): `Ok(false)` when it does not
/// exist yet, `Ok(true)` when it is a regular file (symlinks followed), an error otherwise.
pub fn check_regular_or_absent(path: &Path, field: &str) -> Result<bool, FileError> {
    match std::fs::metadata(path) {
        Ok(m) => require_regular(field, path, m.file_type()).map(|_| true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(field, path, e)),
    }
}

/// For files a library will open itself later (a kubeconfig, TLS keys): each named path must
/// be a regular file or absent (the library then reports it missing), so none of them can
/// block that library's open or read.
pub fn check_files<'a>(
    paths: impl IntoIterator<Item = (&'a str, Option<&'a Path>)>,
) -> Result<(), FileError> {
    for (field, path) in paths {
        if let Some(p) = path {
            check_regular_or_absent(p, field)?;
        }
    }
    Ok(())
}

/// Opens `path` with `options`, refusing anything but a regular file. The open is
/// non-blocking (a FIFO swapped in after the check cannot hang us) and the kind is checked
/// again on the opened fd; the returned file is switched back to blocking mode.
pub fn open_with(path: &Path, field: &str, options: &OpenOptions) -> Result<File, FileError> {
    check_regular_or_absent(path, field)?;
    let mut options = options.clone();
    options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC);
    let file = options.open(path).map_err(|e| io_err(field, path, e))?;
    let meta = file.metadata().map_err(|e| io_err(field, path, e))?;
    require_regular(field, path, meta.file_type())?;
    // SAFETY: fcntl on an fd we own; clearing O_NONBLOCK changes nothing for a regular file
    // but keeps later users (locks, appends) in their usual mode.
    unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    Ok(file)
}

/// Opens a regular file for reading (see [`open_with`]).
pub fn open_regular(path: &Path, field: &str) -> Result<File, FileError> {
    open_with(path, field, OpenOptions::new().read(true))
}

/// Reads a regular file of at most `limit` bytes.
pub fn read_bounded(path: &Path, field: &str, limit: u64) -> Result<Vec<u8>, FileError> {
    let file = open_regular(path, field)?;
    let mut buf = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| io_err(field, path, e))?;
    if buf.len() as u64 > limit {
        return Err(FileError::TooLarge {
            field: field.to_string(),
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(buf)
}

/// Reads a small regular text file ([`SMALL_FILE_LIMIT`]).
pub fn read_small_string(path: &Path, field: &str) -> Result<String, FileError> {
    String::from_utf8(read_bounded(path, field, SMALL_FILE_LIMIT)?).map_err(|_| {
        FileError::NotUtf8 {
            field: field.to_string(),
            path: path.to_path_buf(),
        }
    })
}

/// `NSFS_MAGIC` from linux/magic.h: the file system of namespace files.
const NSFS_MAGIC: i64 = 0x6e73_6673;
/// `ioctl(fd, NS_GET_NSTYPE)` (`_IO(0xb7, 0x3)`).
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// What a `CNI_NETNS` path turned out to be.
#[derive(Debug)]
pub enum NetnsPath {
    /// A network namespace file.
    Netns,
    /// Nothing at that path.
    Missing,
    /// Something else (its kind for the message).
    NotNetns(String),
    /// It could not be examined.
    Unreadable(io::Error),
}

/// Classifies a `CNI_NETNS` path without blocking: a non-blocking open (FIFOs included),
/// `fstatfs` for nsfs, and `NS_GET_NSTYPE` for the namespace kind.
pub fn classify_netns(path: &Path) -> NetnsPath {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return NetnsPath::Missing,
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return NetnsPath::Missing,
        Err(e) => return NetnsPath::Unreadable(e),
    };
    let kind = match file.metadata() {
        Ok(m) => kind_name(m.file_type()),
        Err(e) => return NetnsPath::Unreadable(e),
    };
    // SAFETY: fstatfs fills a zeroed struct for an fd we own.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) } != 0 {
        return NetnsPath::Unreadable(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    if fs.f_type as i64 != NSFS_MAGIC {
        return NetnsPath::NotNetns(kind.to_string());
    }
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd.
    let ns_type = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    if ns_type >= 0 && ns_type != libc::CLONE_NEWNET {
        return NetnsPath::NotNetns("namespace of another kind".to_string());
    }
    NetnsPath::Netns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fifo(dir: &Path) -> PathBuf {
        let p = dir.join("fifo");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        p
    }

    #[test]
    fn special_files_are_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let f = fifo(d.path());
        let e = read_small_string(&f, "resolvConf").unwrap_err();
        assert!(e.to_string().contains("resolvConf") && e.to_string().contains("FIFO"));
        assert_eq!(e.cni_code(), ErrorCode::InvalidConfig);
        let e = open_with(&f, "ipam_lock_file", OpenOptions::new().write(true)).unwrap_err();
        assert!(matches!(e, FileError::NotRegular { .. }), "{e}");
        let e = read_small_string(Path::new("/dev/zero"), "resolvConf").unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let e = check_regular_or_absent(Path::new("/dev/null"), "datastore_path").unwrap_err();
        assert!(e.to_string().contains("datastore_path"), "{e}");
        let e = read_small_string(d.path(), "resolvConf").unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
    }

    #[test]
    fn regular_files_are_read_within_bounds() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, "nameserver 192.0.2.1\n").unwrap();
        assert_eq!(
            read_small_string(&p, "resolvConf").unwrap(),
            "nameserver 192.0.2.1\n"
        );
        let e = read_bounded(&p, "x", 4).unwrap_err();
        assert!(matches!(e, FileError::TooLarge { .. }), "{e}");
        assert!(!check_regular_or_absent(&d.path().join("new"), "x").unwrap());
        assert!(read_small_string(&d.path().join("new"), "x")
            .unwrap_err()
            .is_not_found());
        std::fs::write(&p, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            read_small_string(&p, "x").unwrap_err(),
            FileError::NotUtf8 { .. }
        ));
    }

    #[test]
    fn netns_paths_are_classified() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            classify_netns(Path::new("/proc/thread-self/ns/net")),
            NetnsPath::Netns
        ));
        assert!(matches!(
            classify_netns(Path::new("/proc/thread-self/ns/uts")),
            NetnsPath::NotNetns(_)
        ));
        assert!(matches!(
            classify_netns(&d.path().join("gone")),
            NetnsPath::Missing
        ));
        let p = d.path().join("reg");
        std::fs::write(&p, "").unwrap();
        assert!(matches!(classify_netns(&p), NetnsPath::NotNetns(k) if k == "regular file"));
        assert!(matches!(classify_netns(&fifo(d.path())), NetnsPath::NotNetns(k) if k == "FIFO"));
        assert!(matches!(classify_netns(d.path()), NetnsPath::NotNetns(k) if k == "directory"));
    }
}
