//! The node name, resolved the way Calico resolves it (shared by the `calico` and `calico-ipam`
//! plugins).

use std::path::Path;

use cni::{CniError, ErrorCode};

/// Calico's default nodename file (written by calico-node).
pub const DEFAULT_NODENAME_FILE: &str = "/var/lib/calico/nodename";

/// Where a plugin config says the node name comes from, in Calico's order of precedence.
#[derive(Debug, Clone, Copy)]
pub struct NodeNameSources<'a> {
    /// `nodename`.
    pub nodename: Option<&'a str>,
    /// `nodename_file` (or [`DEFAULT_NODENAME_FILE`]).
    pub nodename_file: &'a Path,
    /// The deprecated `hostname`.
    pub hostname: Option<&'a str>,
}

/// `nodename` → contents of `nodename_file` (if readable and non-empty) → deprecated `hostname`
/// → the OS hostname, lower-cased. Values are trimmed: a trailing newline in the file would
/// otherwise end up in datastore keys.
pub fn node_name(sources: NodeNameSources<'_>) -> Result<String, CniError> {
    node_name_from(sources, Path::new("/proc/sys/kernel/hostname"))
}

fn node_name_from(sources: NodeNameSources<'_>, os_hostname: &Path) -> Result<String, CniError> {
    let set = |v: Option<&str>| {
        v.map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    if let Some(n) = set(sources.nodename) {
        return Ok(n);
    }
    match cni::file::read_small_string(sources.nodename_file, "nodename_file") {
        Ok(s) => {
            if let Some(n) = set(Some(&s)) {
                return Ok(n);
            }
        }
        // Calico reads the file only "if readable": absent is fine, a FIFO or device is not.
        Err(e @ cni::file::FileError::NotRegular { .. }) => return Err(e.into()),
        Err(_) => {}
    }
    if let Some(h) = set(sources.hostname) {
        return Ok(h);
    }
    let h = std::fs::read_to_string(os_hostname).map_err(HostnameError)?;
    Ok(h.trim().to_lowercase())
}

/// The kernel's host name could not be read (CNI code 5, I/O).
#[derive(Debug, thiserror::Error)]
#[error("failed to read the hostname: {0}")]
pub struct HostnameError(#[source] pub std::io::Error);

impl cni::CniCode for HostnameError {
    fn cni_code(&self) -> ErrorCode {
        ErrorCode::Io
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources<'a>(
        nodename: Option<&'a str>,
        file: &'a Path,
        hostname: Option<&'a str>,
    ) -> NodeNameSources<'a> {
        NodeNameSources {
            nodename,
            nodename_file: file,
            hostname,
        }
    }

    #[test]
    fn precedence() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nodename");
        let h = Some("h");
        assert_eq!(
            node_name(sources(Some("explicit"), &file, h)).unwrap(),
            "explicit"
        );
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(node_name(sources(None, &file, h)).unwrap(), "from-file");
        assert_eq!(
            node_name(sources(Some("  "), &file, h)).unwrap(),
            "from-file",
            "a blank nodename does not count"
        );
        std::fs::write(&file, "").unwrap();
        assert_eq!(node_name(sources(None, &file, h)).unwrap(), "h");
        let missing = dir.path().join("none");
        assert_eq!(
            node_name(sources(None, &missing, Some(" legacy "))).unwrap(),
            "legacy"
        );
    }

    #[test]
    fn os_hostname_is_the_last_resort_and_lower_cased() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none");
        let os = dir.path().join("hostname");
        std::fs::write(&os, "Node-A\n").unwrap();
        assert_eq!(
            node_name_from(sources(None, &missing, None), &os).unwrap(),
            "node-a"
        );
        let real = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(
            node_name(sources(None, &missing, None)).unwrap(),
            real.trim().to_lowercase()
        );
        let e = node_name_from(sources(None, &missing, None), &missing).unwrap_err();
        assert_eq!(e.code, ErrorCode::Io);
    }
}
