//! Locating the workspace's built plugin binaries.
//!
//! The tests exec the REAL binaries, which `cargo test -p netns-tests` does not build: run
//! `cargo build --bins` first (same `CARGO_TARGET_DIR`). Search order:
//! 1. `$CNI_BIN_DIR` (colon-separated) if set: nothing else is searched;
//! 2. `$CARGO_TARGET_DIR/debug` (relative values are relative to the workspace root);
//! 3. the profile directory of the running executable (`<target>/<profile>/deps/..` for a test,
//!    the executable's own directory for a binary such as the demo driver);
//! 4. `<workspace>/target/debug`.

use std::path::{Path, PathBuf};

use crate::error::{HarnessError, Result};

/// Where Debian's `containernetworking-plugins` (the Go peers) are installed.
pub const DEBIAN_PLUGIN_DIR: &str = "/usr/lib/cni";

fn workspace_root() -> PathBuf {
    // netns-tests sits directly under the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Candidate directories, in search order, deduplicated; only existing directories.
pub fn bin_dirs() -> Vec<PathBuf> {
    if let Some(dirs) = std::env::var_os("CNI_BIN_DIR").filter(|v| !v.is_empty()) {
        return std::env::split_paths(&dirs).collect();
    }
    let mut dirs = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        dirs.push(workspace_root().join(t).join("debug"));
    }
    if let Ok(exe) = std::env::current_exe() {
        match exe.parent() {
            // A test executable: <target>/<profile>/deps/<test>.
            Some(deps) if deps.ends_with("deps") => {
                if let Some(profile) = deps.parent() {
                    dirs.push(profile.to_path_buf());
                }
            }
            // A binary of this crate (the demo driver) sits next to the plugins.
            Some(profile) => dirs.push(profile.to_path_buf()),
            None => {}
        }
    }
    dirs.push(workspace_root().join("target").join("debug"));
    let mut unique: Vec<PathBuf> = Vec::new();
    for d in dirs {
        let d = d.canonicalize().unwrap_or(d);
        if d.is_dir() && !unique.contains(&d) {
            unique.push(d);
        }
    }
    unique
}

/// Full path of the built binary `name` (e.g. "loopback", "host-local").
pub fn binary(name: &str) -> Result<PathBuf> {
    find_in(name, &bin_dirs())
}

/// First `dir/name` that exists, or an error telling the user to build the binaries.
pub fn find_in(name: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| HarnessError::BinaryNotFound {
            name: name.to_string(),
            searched: dirs.to_vec(),
        })
}
