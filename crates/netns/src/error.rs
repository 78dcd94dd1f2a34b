use std::io;
use std::path::PathBuf;

/// Errors of this crate. `is_not_found()` lets CNI DEL treat a vanished netns as success.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("netns {path:?} does not exist")]
    NotFound { path: PathBuf },
    #[error("failed to open netns {path:?}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path:?} is not a network namespace")]
    NotNetns { path: PathBuf },
    #[error("failed to enter netns {path:?}: {source}")]
    Setns {
        path: PathBuf,
        source: nix::errno::Errno,
    },
    #[error("failed to unshare network namespace: {0}")]
    Unshare(nix::errno::Errno),
    #[error("failed to start a thread for netns {path:?}: {source}")]
    Thread { path: PathBuf, source: io::Error },
    #[error("code running in netns {path:?} panicked: {message}")]
    Panicked { path: PathBuf, message: String },
    #[error("sysctl {key}: {source}")]
    Sysctl { key: String, source: io::Error },
    #[error("invalid sysctl key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
}

impl Error {
    /// True when the netns (or the sysctl file) does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::NotFound { .. } => true,
            Error::Sysctl { source, .. } => source.kind() == io::ErrorKind::NotFound,
            _ => false,
        }
    }
}
