//! The installer's error type: each variant says what failed and where, for an operator's log.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("invalid {var}={value:?}: {reason}")]
    InvalidEnv {
        var: &'static str,
        value: String,
        reason: String,
    },

    #[error(
        "binaries missing in source dir {dir}: {names} (build them, pass --source-dir, or list them in SKIP_CNI_BINARIES)"
    )]
    MissingBinaries { dir: PathBuf, names: String },

    /// The rendered template. The text itself is not included: it may carry a token.
    #[error("rendered network config {name} is invalid: {reason}")]
    InvalidConfig { name: String, reason: String },

    #[error("service account in {dir}: {reason}")]
    ServiceAccount { dir: PathBuf, reason: String },

    #[error("manifest {path} is unreadable: {reason}")]
    Manifest { path: PathBuf, reason: String },
}

impl InstallError {
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| InstallError::Io {
            action,
            path,
            source,
        }
    }
}
