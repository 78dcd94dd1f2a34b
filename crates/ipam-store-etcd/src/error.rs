//! Error type of the etcd client, classified the way the IPAM layer needs it.

/// What went wrong talking to etcd.
///
/// The classes mirror what the allocator reacts to: `NotFound` and `Conflict` drive its
/// read-modify-CAS loops, `Unavailable` must surface as CNI code 11 ("try again later"),
/// everything else is a hard failure.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The key does not exist (get/update/delete of an absent key).
    #[error("key not found: {0}")]
    NotFound(String),
    /// A compare failed: create of an existing key, or a stale revision on update/delete.
    #[error("update conflict on key {0}")]
    Conflict(String),
    /// No etcd member answered within the configured timeout (refused, unreachable, no
    /// leader, TLS handshake failure, ...). Retrying later may succeed.
    #[error("etcd unavailable: {0}")]
    Unavailable(String),
    /// Bad configuration (endpoints, TLS files, SRV record) detected before any request.
    #[error("invalid etcd configuration: {0}")]
    Config(String),
    /// Any other error reported by etcd or the client library.
    #[error("etcd error: {0}")]
    Other(String),
}

impl EtcdError {
    /// True when the caller should report "try again later" (CNI code 11).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, EtcdError::Unavailable(_))
    }
}

/// Error of one attempt inside the client's retry loop. A private wrapper so operation
/// code can use `?` on etcd-client results without exposing that conversion publicly.
/// The flag says the member actively refused the connection (nothing listens there), which
/// the retry loop treats differently from silence.
pub(crate) struct Failure(pub(crate) EtcdError, pub(crate) bool);

impl From<EtcdError> for Failure {
    fn from(e: EtcdError) -> Self {
        Failure(e, false)
    }
}

impl From<etcd_client::Error> for Failure {
    fn from(e: etcd_client::Error) -> Self {
        let refused = match &e {
            etcd_client::Error::GRpcStatus(status) => is_refused(status),
            etcd_client::Error::TransportError(t) => is_refused(t),
            other => is_refused(other),
        };
        Failure(classify(e), refused)
    }
}

/// Whether a connection refusal (`ECONNREFUSED`) is somewhere in the error's cause chain.
fn is_refused(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Classifies an etcd-client error. gRPC status codes that mean "no usable member right now"
/// become `Unavailable`; so do transport errors, which is how tonic reports refused
/// connections and failed TLS handshakes.
pub(crate) fn classify(err: etcd_client::Error) -> EtcdError {
    use etcd_client::Error as E;
    use tonic::Code;
    match err {
        E::GRpcStatus(status) => {
            let msg = format!(
                "{:?}: {}{}",
                status.code(),
                status.message(),
                causes(&status)
            );
            match status.code() {
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
                    EtcdError::Unavailable(msg)
                }
                // etcd answers "etcdserver: request timed out" / "no leader" with Unknown
                // on some paths; both clear up once a leader is elected again.
                Code::Unknown if is_transient_message(status.message()) => {
                    EtcdError::Unavailable(msg)
                }
                _ => EtcdError::Other(msg),
            }
        }
        E::TransportError(e) => EtcdError::Unavailable(format!("{e}{}", causes(&e))),
        E::IoError(e) => EtcdError::Unavailable(format!("i/o error: {e}")),
        E::InvalidArgs(_) | E::InvalidUri(_) | E::EndpointError(_) => {
            EtcdError::Config(err.to_string())
        }
        other => EtcdError::Other(other.to_string()),
    }
}

fn is_transient_message(msg: &str) -> bool {
    const TRANSIENT: [&str; 5] = [
        "request timed out",
        "no leader",
        "leader changed",
        "too many requests",
        // tonic reports refused connections and failed TLS handshakes as Unknown with
        // this message; the cause is in the source chain.
        "transport error",
    ];
    TRANSIENT.iter().any(|t| msg.contains(t))
}

/// The error's `source()` chain as ": cause: cause": tonic's own text ("transport error")
/// says nothing about refused connections or rejected certificates, its causes do.
fn causes(err: &dyn std::error::Error) -> String {
    let mut msg = String::new();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    msg
}
