//! Why a datastore could not be selected or opened.

use ipam::StoreError;

/// Selection/opening failures. [`DatastoreError::is_unavailable`] tells "try again later"
/// (CNI code 11) apart from configuration mistakes (CNI code 7).
#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    /// The network config is not a JSON object at all.
    #[error("network config is not a JSON object")]
    NotAnObject,
    /// A nested settings object (`kubernetes`, `policy`) is not an object.
    #[error("failed to load netconf: {field:?} is not an object")]
    FieldNotAnObject { field: &'static str },
    /// A settings field has the wrong JSON type.
    #[error("failed to load netconf: {0}")]
    Field(#[source] cni::caps::FieldError),
    /// `datastore_type` names no backend we know.
    #[error("unknown datastore_type {value:?} (expected etcdv3, kubernetes or local)")]
    UnknownDatastoreType { value: String },
    /// One entry of `etcd_endpoints` is not a `host:port` or `http(s)://host:port`.
    #[error("invalid etcd_endpoints {list:?}: {endpoint:?} {reason}")]
    InvalidEtcdEndpoint {
        list: String,
        endpoint: String,
        reason: &'static str,
    },
    /// `datastore_type` kubernetes with nothing that says how to reach an API server.
    #[error(
        "datastore_type kubernetes: no kubeconfig (kubernetes.kubeconfig or KUBECONFIG), no API \
         endpoint (kubernetes.k8s_api_root or K8S_API_ENDPOINT), and not running in a cluster"
    )]
    NoKubernetesClient,
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

/// Unreachable or busy is "try again later" (11); a bad or unsupported selection is a config
/// error (7); anything else while opening is generic (999).
impl cni::CniCode for DatastoreError {
    fn cni_code(&self) -> cni::ErrorCode {
        match self {
            e if e.is_unavailable() => cni::ErrorCode::TryAgainLater,
            DatastoreError::Open { source, .. } => source.cni_code(),
            _ => cni::ErrorCode::InvalidConfig,
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
