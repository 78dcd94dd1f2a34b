//! The record of what install-cni wrote, so `--uninstall` removes exactly that.
//!
//! Kept next to the config as a hidden file (`.install-cni-manifest`; no `.conf`/`.json`
//! extension, so no runtime loads it). Each entry stores the SHA-1 of the content written:
//! a file that someone replaced since is not ours any more and is left in place.

use crate::atomic::{file_sha1, write_atomic};
use crate::error::InstallError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

pub const MANIFEST_NAME: &str = ".install-cni-manifest";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// Absolute path → SHA-1 (hex) of the content install-cni left there.
    pub files: BTreeMap<PathBuf, String>,
}

impl Manifest {
    pub fn path(conf_dir: &Path) -> PathBuf {
        conf_dir.join(MANIFEST_NAME)
    }

    /// The manifest in `conf_dir`, `None` if there is none.
    pub fn load(conf_dir: &Path) -> Result<Option<Manifest>, InstallError> {
        let path = Manifest::path(conf_dir);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(InstallError::io("read", &path)(e)),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| InstallError::Manifest {
                path,
                reason: e.to_string(),
            })
    }

    /// Records `path` with its current content hash.
    pub fn record(&mut self, path: &Path) -> Result<(), InstallError> {
        let path = absolute(path);
        match file_sha1(&path).map_err(InstallError::io("hash", &path))? {
            Some(h) => {
                self.files.insert(path, h);
            }
            None => {
                self.files.remove(&path);
            }
        }
        Ok(())
    }

    pub fn save(&self, conf_dir: &Path) -> Result<(), InstallError> {
        let path = Manifest::path(conf_dir);
        let text = serde_json::to_vec_pretty(self).map_err(|e| InstallError::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &text, 0o600)
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
