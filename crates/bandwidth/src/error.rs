//! Errors of the bandwidth plugin and their CNI codes.

use cni::error::{CniCode, ErrorCode, GENERIC};

#[derive(Debug, thiserror::Error)]
pub enum BandwidthError {
    /// Bad rate/burst values or config shape (CNI code 7).
    #[error("{0}")]
    InvalidConfig(String),
    /// ADD/CHECK without prevResult, or a prevResult that does not list the host veth (code 7:
    /// the chain hands us a result we cannot work with).
    #[error("{0}")]
    PrevResult(String),
    /// CNI_NETNS missing or not openable (code 4).
    #[error("{0}")]
    Netns(String),
    /// The container interface or its host peer is not what a veth setup looks like.
    #[error("{0}")]
    HostVeth(String),
    /// A kernel request failed.
    #[error("{op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: netlink::Error,
    },
    /// CHECK found state different from the config.
    #[error("{0}")]
    CheckFailed(String),
    /// `/proc/net/psched` unreadable or malformed.
    #[error("{0}")]
    Psched(String),
}

impl BandwidthError {
    pub fn netlink(op: impl Into<String>) -> impl FnOnce(netlink::Error) -> BandwidthError {
        let op = op.into();
        move |source| BandwidthError::Netlink { op, source }
    }
}

impl CniCode for BandwidthError {
    fn cni_code(&self) -> ErrorCode {
        match self {
            BandwidthError::InvalidConfig(_) | BandwidthError::PrevResult(_) => {
                ErrorCode::InvalidConfig
            }
            BandwidthError::Netns(_) => ErrorCode::InvalidEnvironment,
            _ => GENERIC,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cni::CniError;

    #[test]
    fn codes() {
        let c: CniError = BandwidthError::InvalidConfig("x".into()).into();
        assert_eq!((c.code, c.msg.as_str()), (ErrorCode::InvalidConfig, "x"));
        assert_eq!(
            BandwidthError::PrevResult("p".into()).cni_code(),
            ErrorCode::InvalidConfig
        );
        assert_eq!(
            BandwidthError::Netns("n".into()).cni_code(),
            ErrorCode::InvalidEnvironment
        );
        let e = BandwidthError::netlink("create ifb")(netlink::Error::LinkNotFound("x".into()));
        assert_eq!(e.cni_code().as_u32(), 999);
        assert!(e.to_string().starts_with("create ifb: "), "{e}");
    }
}
