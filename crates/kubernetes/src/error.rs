//! What can go wrong talking to the API server, sorted by what a caller should do about it.

/// Errors of this crate; [`Error::is_transient`] tells "try again later" apart.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig or the overrides are unusable (missing file, no server, bad cert).
    #[error("invalid Kubernetes client configuration: {0}")]
    Config(String),
    /// The API server could not be reached or did not answer in time (or answered 429/5xx).
    #[error("Kubernetes API server unreachable: {0}")]
    Unavailable(String),
    /// The object does not exist (HTTP 404).
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    /// A precondition (resourceVersion/UID) failed (HTTP 409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Any other refusal by the API server (401, 403, 422, …).
    #[error("Kubernetes API error {code}: {message}")]
    Api { code: u16, message: String },
    /// The server answered something we cannot read.
    #[error("unexpected answer from the Kubernetes API server: {0}")]
    Decode(String),
    /// A Calico annotation has a value Calico would reject; the message names the annotation.
    #[error("invalid annotation {annotation}: {reason}")]
    Annotation {
        annotation: &'static str,
        reason: String,
    },
}

/// Transient failures are "try again later" (11) so the runtime retries; configuration
/// problems are 7; everything else (refusals, bad annotations) is generic (999), as Calico.
impl cni::CniCode for Error {
    fn cni_code(&self) -> cni::ErrorCode {
        match self {
            e if e.is_transient() => cni::ErrorCode::TryAgainLater,
            Error::Config(_) => cni::ErrorCode::InvalidConfig,
            _ => cni::error::GENERIC,
        }
    }
}

impl Error {
    /// True when retrying later may succeed (the CNI "try again later" class).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Conflict(_))
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Classifies a kube-rs error for the object `kind`/`name` being accessed (public so
    /// callers using [`crate::Client::kube`] directly classify errors the same way).
    pub fn from_kube(e: kube::Error, kind: &'static str, name: &str) -> Error {
        match e {
            kube::Error::Api(status) => match status.code {
                404 => Error::NotFound {
                    kind,
                    name: name.to_string(),
                },
                409 => Error::Conflict(status.message),
                429 | 500..=599 => {
                    Error::Unavailable(format!("{}: {}", status.code, status.message))
                }
                code => Error::Api {
                    code,
                    message: status.message,
                },
            },
            kube::Error::HyperError(e) => Error::Unavailable(e.to_string()),
            // Connection refused, TLS handshake failures and tower timeouts all surface here;
            // include the source chain, the top level alone says only "client error".
            kube::Error::Service(e) => Error::Unavailable(chain(e.as_ref())),
            kube::Error::SerdeError(e) => Error::Decode(e.to_string()),
            kube::Error::FromUtf8(e) => Error::Decode(e.to_string()),
            other => Error::Config(chain(&other)),
        }
    }
}

/// `error: cause: cause` for errors whose Display hides the cause.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        next = s.source();
    }
    out
}
