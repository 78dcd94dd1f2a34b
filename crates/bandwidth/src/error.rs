//! Errors of the bandwidth plugin and their CNI codes.

use std::path::PathBuf;

use cni::error::{CniCode, ErrorCode, GENERIC};

/// Where the tick factor is read from.
pub(crate) const PSCHED: &str = "/proc/net/psched";

#[derive(Debug, thiserror::Error)]
pub enum BandwidthError {
    /// One direction's rate/burst pair is unusable (code 7).
    #[error("{direction}: {reason}")]
    InvalidLimit {
        direction: &'static str,
        reason: String,
    },
    /// A top-level bandwidth field has the wrong type (code 7).
    #[error("invalid network config: {0}")]
    Field(#[source] cni::caps::FieldError),
    /// ADD/CHECK without prevResult (code 7: the chain hands us nothing to work with).
    #[error("must be called as chained plugin: prevResult is missing")]
    NoPrevResult,
    /// prevResult lists no interfaces (code 7).
    #[error("no interfaces provided in prevResult")]
    NoInterfaces,
    /// prevResult does not list the host veth as a host-side interface (code 7).
    #[error(
        "no veth peer of container interface found in host ns: prevResult does not list host \
         interface {host_veth:?} without a sandbox"
    )]
    HostVethNotInResult { host_veth: String },
    /// prevResult's `ips[].interface` points past its interfaces (code 7).
    #[error(transparent)]
    InterfaceIndex(#[from] cni::result::InterfaceIndexError),
    /// CNI_NETNS is not set (code 4).
    #[error("CNI_NETNS is required to find the host veth")]
    NoNetns,
    /// CNI_NETNS cannot be opened (code 4).
    #[error("failed to open netns {}: {source}", path.display())]
    OpenNetns {
        path: PathBuf,
        #[source]
        source: netns::Error,
    },
    /// The container interface is not in the container's namespace.
    #[error("container interface {ifname:?} not found in netns {}", netns.display())]
    NoContainerInterface { ifname: String, netns: PathBuf },
    /// The container interface is not a veth.
    #[error("interface {ifname:?} was not a veth interface")]
    NotVeth { ifname: String },
    /// The container veth has no peer.
    #[error("container interface {ifname:?} has no veth peer")]
    NoVethPeer { ifname: String },
    /// The veth peer is not a veth in the host namespace.
    #[error("veth peer with index {peer} is not in host ns")]
    PeerNotInHost { peer: u32 },
    /// A kernel request failed.
    #[error("{op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: netlink::Error,
    },
    /// CHECK: the ifb device for egress shaping is gone.
    #[error("get ifb device: link {ifb} not found")]
    IfbMissing { ifb: String },
    /// CHECK: the host veth has no ingress qdisc.
    #[error("no ingress qdisc on {link}")]
    NoIngressQdisc { link: String },
    /// CHECK: no ingress filter redirects the host veth to the ifb.
    #[error("no filter on {link} redirects to {ifb}")]
    NoRedirect { link: String, ifb: String },
    /// CHECK: the root qdisc is not a tbf (`found` is its kind, if any).
    #[error("Failed to find qdisc: no root tbf on {link} (found {found:?})")]
    NoRootTbf { link: String, found: Option<String> },
    /// CHECK: the root tbf's parameters differ from the config (`mismatch` in upstream's words).
    #[error("{mismatch} on {link}")]
    TbfMismatch { link: String, mismatch: String },
    /// `/proc/net/psched` unreadable.
    #[error("reading {PSCHED}: {0}")]
    ReadPsched(#[source] std::io::Error),
    /// `/proc/net/psched` malformed.
    #[error("unexpected {PSCHED} content {content:?}")]
    BadPsched { content: String },
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
            BandwidthError::InvalidLimit { .. }
            | BandwidthError::Field(_)
            | BandwidthError::NoPrevResult
            | BandwidthError::NoInterfaces
            | BandwidthError::HostVethNotInResult { .. }
            | BandwidthError::InterfaceIndex(_) => ErrorCode::InvalidConfig,
            BandwidthError::NoNetns | BandwidthError::OpenNetns { .. } => {
                ErrorCode::InvalidEnvironment
            }
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
        let c: CniError = BandwidthError::InvalidLimit {
            direction: "ingress",
            reason: "x".into(),
        }
        .into();
        assert_eq!(
            (c.code, c.msg.as_str()),
            (ErrorCode::InvalidConfig, "ingress: x")
        );
        assert_eq!(
            BandwidthError::NoPrevResult.cni_code(),
            ErrorCode::InvalidConfig
        );
        assert_eq!(
            BandwidthError::NoNetns.cni_code(),
            ErrorCode::InvalidEnvironment
        );
        let e = BandwidthError::netlink("create ifb")(netlink::Error::LinkNotFound("x".into()));
        assert_eq!(e.cni_code().as_u32(), 999);
        assert!(e.to_string().starts_with("create ifb: "), "{e}");
    }
}
