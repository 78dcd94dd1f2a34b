//! Error type of the portmap library.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PortmapError {
    /// Bad plugin configuration or `runtimeConfig.portMappings` entry (CNI code 7). `field` is
    /// the JSON path of the offending value (e.g. `runtimeConfig.portMappings[1].protocol`),
    /// `msg` upstream's wording where upstream has one, so both the field and the familiar
    /// message appear in the error.
    #[error("invalid network config field {field:?}: {msg}")]
    InvalidField { field: String, msg: String },
    /// Bad plugin configuration not tied to one field (CNI code 7).
    #[error("{0}")]
    InvalidConfig(String),
    /// A helper binary could not be started or failed.
    #[error("{0}")]
    Exec(String),
    /// Netfilter state does not match what CHECK expects.
    #[error("{0}")]
    CheckFailed(String),
    /// A host port is already mapped by another attachment (nftables backend).
    #[error("{0}")]
    Conflict(String),
    /// Anything else that went wrong while programming the host.
    #[error("{0}")]
    Setup(String),
}

/// Config mistakes are 7 (the message names the field); failures while programming the host
/// are generic (999), as upstream reports them.
impl cni::CniCode for PortmapError {
    fn cni_code(&self) -> cni::ErrorCode {
        match self {
            PortmapError::InvalidConfig(_) | PortmapError::InvalidField { .. } => {
                cni::ErrorCode::InvalidConfig
            }
            _ => cni::error::GENERIC,
        }
    }
}

impl PortmapError {
    /// An [`PortmapError::InvalidField`] for `field`.
    pub fn field(field: impl Into<String>, msg: impl Into<String>) -> PortmapError {
        PortmapError::InvalidField {
            field: field.into(),
            msg: msg.into(),
        }
    }

    /// Prefixes the field path of an [`PortmapError::InvalidField`] with `parent` (e.g. the
    /// list index a mapping came from); other errors are returned unchanged.
    pub fn within(self, parent: &str) -> PortmapError {
        match self {
            PortmapError::InvalidField { field, msg } => PortmapError::InvalidField {
                field: if field.is_empty() {
                    parent.to_string()
                } else {
                    format!("{parent}.{field}")
                },
                msg,
            },
            other => other,
        }
    }
}
