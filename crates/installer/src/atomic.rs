//! Replacing files so that a reader (a kubelet exec'ing a plugin, a runtime loading a conflist)
//! sees either the complete old file or the complete new one, never a partial write.
//!
//! The new content goes to a temporary file in the target's directory (same filesystem, so
//! rename is atomic), is fsync'd, given its final mode, and renamed over the target; the
//! directory is then fsync'd so the rename survives a crash. The file being exec'd is never
//! opened for writing, so neither side can hit ETXTBSY.

use crate::error::InstallError;
use std::fs::{self, File, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Atomically replaces `dst` with `bytes`, mode `mode`.
pub fn write_atomic(dst: &Path, bytes: &[u8], mode: u32) -> Result<(), InstallError> {
    replace(dst, mode, |f| f.write_all(bytes))
}

/// Atomically replaces `dst` with a copy of `src`, mode `mode`.
pub fn copy_atomic(src: &Path, dst: &Path, mode: u32) -> Result<(), InstallError> {
    let mut input = File::open(src).map_err(InstallError::io("open", src))?;
    replace(dst, mode, |f| io::copy(&mut input, f).map(drop))
}

fn replace(
    dst: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), InstallError> {
    let dir = parent(dst);
    let name = dst.file_name().map(|n| n.to_string_lossy().into_owned());
    // Hidden prefix: a runtime scanning the conf dir or a human listing the bin dir must not
    // mistake the temporary for a real plugin or config. Dropped (and deleted) on any error.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.as_deref().unwrap_or("install")))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(InstallError::io("create temporary file in", dir))?;
    let write_err = InstallError::io("write", tmp.path());
    fill(tmp.as_file_mut())
        .and_then(|()| tmp.as_file().set_permissions(Permissions::from_mode(mode)))
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(write_err)?;
    // Close our write handle *before* the rename: once the file is in place a kubelet may exec
    // it, and execve fails with ETXTBSY while any process holds it open for writing.
    let tmp = tmp.into_temp_path();
    tmp.persist(dst)
        .map_err(|e| InstallError::io("rename into", dst)(e.error))?;
    sync_dir(dir)
}

/// The directory holding `path` ("." for a bare file name).
pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes renames/unlinks in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), InstallError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(InstallError::io("sync directory", dir))
}

/// True when both files exist with identical bytes (size compared first, then content).
pub fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let (Some(ma), Some(mb)) = (metadata_opt(a)?, metadata_opt(b)?) else {
        return Ok(false);
    };
    if ma.len() != mb.len() || !ma.is_file() || !mb.is_file() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn metadata_opt(p: &Path) -> io::Result<Option<fs::Metadata>> {
    match fs::metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads until `buf` is full or EOF, so chunk boundaries line up between two files.
fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// SHA-1 of a file's content, hex; `None` when it does not exist.
pub fn file_sha1(path: &Path) -> io::Result<Option<String>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut h = sha1_smol::Sha1::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(h.digest().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_sets_mode_and_leaves_no_temporaries() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn same_content_compares_bytes() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        fs::write(&a, b"xyz").unwrap();
        fs::write(&b, b"xyw").unwrap();
        assert!(!same_content(&a, &b).unwrap());
        fs::write(&b, b"xyz").unwrap();
        assert!(same_content(&a, &b).unwrap());
        assert!(!same_content(&a, &d.path().join("missing")).unwrap());
    }
}
