//! Errors of calicoctl commands. Every variant renders as the one-line message printed on
//! stderr; the binary maps any error to exit status 1.

use ipam::{IpamError, StoreError};

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Bad command line (message already says what and how to fix it).
    #[error("{0}")]
    Usage(String),
    /// The datastore could not be selected or opened.
    #[error("failed to open the datastore: {0}")]
    Datastore(String),
    /// Reading an input file.
    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Input is not valid YAML/JSON or not a resource we understand.
    #[error("failed to parse {what}: {reason}")]
    Parse { what: String, reason: String },
    /// A resource failed validation; `field` is the JSON path (`spec.cidr`).
    #[error("error with field {field} = '{value}' ({reason})")]
    Validation {
        field: String,
        value: String,
        reason: String,
    },
    /// Datastore failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Allocator failure.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// The named resource does not exist.
    #[error("resource does not exist: {kind}({name})")]
    NotFound { kind: &'static str, name: String },
    /// `create` of a resource that exists.
    #[error("resource already exists: {kind}({name})")]
    AlreadyExists { kind: &'static str, name: String },
    /// A command ran but could not do what it was asked (message is calicoctl's wording).
    #[error("{0}")]
    Failed(String),
    /// Any of the above that happened while working on a datastore, naming it.
    #[error("{source} (datastore: {datastore})")]
    InDatastore {
        source: Box<CtlError>,
        datastore: String,
    },
}

impl CtlError {
    /// Name the datastore `describe` in errors that came from working on it (input and
    /// usage errors are about the command line, not the datastore).
    pub fn on_datastore(self, describe: &str) -> Self {
        match self {
            e @ (CtlError::Usage(_)
            | CtlError::Read { .. }
            | CtlError::Parse { .. }
            | CtlError::Validation { .. }
            | CtlError::Datastore(_)
            | CtlError::InDatastore { .. }) => e,
            e => CtlError::InDatastore {
                source: Box::new(e),
                datastore: describe.to_string(),
            },
        }
    }

    /// Validation error helper.
    pub fn field(field: &str, value: impl ToString, reason: impl Into<String>) -> Self {
        CtlError::Validation {
            field: field.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Result alias.
pub type CtlResult<T> = Result<T, CtlError>;
