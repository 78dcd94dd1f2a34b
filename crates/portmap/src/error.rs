//! Error type of the portmap library.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PortmapError {
    /// Bad plugin configuration (maps to CNI code 7).
    #[error("{0}")]
    InvalidConfig(String),
    /// Bad `runtimeConfig.portMappings` entry (upstream reports these as plain errors).
    #[error("{0}")]
    InvalidMapping(String),
    /// ADD/CHECK called without `prevResult`.
    #[error("{0}")]
    MissingPrevResult(&'static str),
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
