//! Errors of the harness itself (namespace setup, process spawning, parsing tool output).
//!
//! A plugin that *ran* and failed is not a harness error: that is a [`crate::PluginFailure`].

use std::path::PathBuf;

/// Something the harness could not do; the test should fail with this message.
#[derive(thiserror::Error)]
pub enum HarnessError {
    #[error("not running as root (euid {0}): netns tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN); run them as root, e.g. `sudo -E cargo test -p netns-tests`")]
    NotRoot(u32),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("namespace operation failed: {0}")]
    Namespace(String),
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("`{cmd}` did not finish within {secs} s and was killed")]
    Timeout { cmd: String, secs: u64 },
    #[error("binary {name:?} not found in {searched:?}; build the workspace binaries first: `cargo build --bins` (or set CNI_BIN_DIR)")]
    BinaryNotFound {
        name: String,
        searched: Vec<PathBuf>,
    },
    #[error("{tool} not found: {hint}")]
    ToolMissing { tool: String, hint: String },
    #[error("cannot parse {what}: {detail}")]
    Parse { what: String, detail: String },
    #[error("invalid conflist: {0}")]
    Conflist(String),
    #[error("traffic check failed: {0}")]
    Traffic(String),
}

impl HarnessError {
    /// Wraps an I/O error with a description of what was being attempted.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        HarnessError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn parse(what: impl Into<String>, detail: impl ToString) -> Self {
        HarnessError::Parse {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

// Debug prints the Display text so `unwrap()`/`?` in tests show a readable message.
impl std::fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
