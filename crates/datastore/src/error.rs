//! Why a datastore could not be selected or opened.

use ipam::StoreError;

/// Selection/opening failures. [`DatastoreError::is_unavailable`] tells "try again later"
/// (CNI code 11) apart from configuration mistakes (CNI code 7).
#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    /// The settings are unusable (unknown `datastore_type`, wrong JSON type, no kubeconfig…).
    #[error("{0}")]
    Config(String),
    /// This binary was built without the backend the settings ask for.
    #[error("datastore_type {0}: this build has no Kubernetes support")]
    Unsupported(String),
    /// The backend failed while opening (unreachable, unreadable file, bad TLS material…).
    #[error("failed to open the {kind} datastore: {source}")]
    Open {
        kind: &'static str,
        #[source]
        source: StoreError,
    },
}

/// Configuration mistakes are code 7 (the message names the field), an unreachable or
/// not-ready datastore is 11 (try again later), anything else while opening is generic.
impl cni::CniCode for DatastoreError {
    fn cni_code(&self) -> cni::ErrorCode {
        match self {
            DatastoreError::Config(_) | DatastoreError::Unsupported(_) => {
                cni::ErrorCode::InvalidConfig
            }
            e if e.is_unavailable() => cni::ErrorCode::TryAgainLater,
            _ => cni::error::GENERIC,
        }
    }
}

impl DatastoreError {
    /// Whether retrying later may succeed (the datastore is down or busy).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            DatastoreError::Open {
                source: StoreError::Unavailable(_),
                ..
            }
        )
    }
}
