//! Copying the suite's plugin binaries into the host's CNI bin dir.

use crate::atomic::{copy_atomic, same_content};
use crate::error::InstallError;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The plugins the suite ships to the node (what Calico's CNI image puts in /opt/cni/bin,
/// minus the Go peers the suite does not reimplement). calicoctl and install-cni stay out:
/// they are tools, not plugins a runtime execs.
pub const SUITE_BINARIES: &[&str] = &[
    "calico",
    "calico-ipam",
    "bandwidth",
    "host-local",
    "loopback",
    "portmap",
];

/// Mode of an installed plugin.
pub const BINARY_MODE: u32 = 0o755;

/// What happened to one binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryAction {
    /// Written (new or changed).
    Installed,
    /// Already identical on the host; not touched (same inode and mtime).
    Unchanged,
    /// Named in `SKIP_CNI_BINARIES`.
    Skipped,
    /// Different binary already present and `UPDATE_CNI_BINARIES=false`: left alone.
    KeptExisting,
}

#[derive(Debug, Clone)]
pub struct BinaryOutcome {
    pub name: String,
    pub target: PathBuf,
    pub action: BinaryAction,
}

impl BinaryOutcome {
    /// The file on the host is now our binary (so uninstall may remove it).
    pub fn is_ours(&self) -> bool {
        matches!(
            self.action,
            BinaryAction::Installed | BinaryAction::Unchanged
        )
    }
}

/// Fails (naming them) if any binary to install is missing from `source_dir`.
pub fn check_sources(
    source_dir: &Path,
    names: &[String],
    skip: &[String],
) -> Result<(), InstallError> {
    let missing: Vec<&str> = names
        .iter()
        .filter(|n| !skip.contains(n) && !source_dir.join(n.as_str()).is_file())
        .map(|n| n.as_str())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(InstallError::MissingBinaries {
        dir: source_dir.to_path_buf(),
        names: missing.join(", "),
    })
}

/// Copies `names` from `source_dir` to `bin_dir`. Every binary to install is checked to exist
/// first, so a missing one fails the run before anything on the host changes.
pub fn install_binaries(
    source_dir: &Path,
    bin_dir: &Path,
    names: &[String],
    skip: &[String],
    update: bool,
) -> Result<Vec<BinaryOutcome>, InstallError> {
    check_sources(source_dir, names, skip)?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let target = bin_dir.join(name);
        let action = if skip.contains(name) {
            BinaryAction::Skipped
        } else {
            install_one(&source_dir.join(name), &target, update)?
        };
        log::info!("{}: {action:?}", target.display());
        out.push(BinaryOutcome {
            name: name.clone(),
            target,
            action,
        });
    }
    Ok(out)
}

fn install_one(src: &Path, dst: &Path, update: bool) -> Result<BinaryAction, InstallError> {
    let identical = same_content(src, dst).map_err(InstallError::io("compare", dst))?;
    if identical {
        // Fix the mode in place if needed; the content (and the inode) stay.
        let meta = fs::metadata(dst).map_err(InstallError::io("stat", dst))?;
        if meta.permissions().mode() & 0o7777 != BINARY_MODE {
            fs::set_permissions(dst, fs::Permissions::from_mode(BINARY_MODE))
                .map_err(InstallError::io("chmod", dst))?;
        }
        return Ok(BinaryAction::Unchanged);
    }
    if !update && fs::symlink_metadata(dst).is_ok() {
        return Ok(BinaryAction::KeptExisting);
    }
    copy_atomic(src, dst, BINARY_MODE)?;
    Ok(BinaryAction::Installed)
}
