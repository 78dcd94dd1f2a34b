//! Errors with the exact texts of upstream host-local, so operators' greps and tests carry over.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- configuration -------------------------------------------------------------------
    /// A `routes` entry that does not decode as a route (code 7).
    #[error("invalid route {route}: {source}")]
    InvalidRoute {
        route: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("IPAM config missing 'ipam' key")]
    MissingIpam,
    #[error("no IP ranges specified")]
    NoRanges,
    #[error("invalid range set {index}: {source}")]
    InvalidRangeSet {
        index: usize,
        #[source]
        source: Box<Error>,
    },
    #[error("CNI version {0} does not support more than 1 address per family")]
    TooManyPerFamily(String),
    #[error("range set {0} overlaps with {1}")]
    RangeSetsOverlap(usize, usize),
    #[error("invalid CIDR address: {0}")]
    BadCidr(String),
    #[error("invalid IP address: {0}")]
    BadIp(String),
    /// A requested address (`CNI_ARGS` `IP`, `args.cni.ips`, `runtimeConfig.ips`); upstream's
    /// `ip.IP` type words it without a colon.
    #[error("invalid IP address {0}")]
    BadRequestedIp(String),
    #[error("invalid IPAM config: {0}")]
    BadConfig(String),
    /// Calico's placeholders are resolved by calico before it delegates; reaching us is a bug
    /// in the caller's configuration, not something host-local can fix.
    #[error("subnet {0:?} is a placeholder that calico replaces with the node's pod CIDR before delegating to host-local; host-local cannot resolve it (configure a real subnet, or use the calico plugin with a Kubernetes datastore)")]
    PodCidrPlaceholder(String),
    #[error("invalid network name {0:?} for a data directory")]
    BadNetworkName(String),
    #[error("ARGS: invalid pair {0:?}")]
    ArgsInvalidPair(String),
    #[error("ARGS: unknown args [{}]", .0.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(" "))]
    ArgsUnknown(Vec<String>),
    #[error("ARGS: error parsing value of pair {pair:?}: {reason}")]
    ArgsBadValue { pair: String, reason: String },

    // --- range canonicalisation -------------------------------------------------------
    #[error("Network {0} too small to allocate from")]
    NetworkTooSmall(IpNetwork),
    #[error("IPNet IP and Mask version mismatch")]
    FamilyMismatch,
    #[error("Network has host bits set. For a subnet mask of length {prefix} the network address is {network}")]
    HostBitsSet { prefix: u8, network: IpAddr },
    #[error("RangeStart {ip} not in network {subnet}")]
    RangeStartOutside { ip: IpAddr, subnet: IpNetwork },
    #[error("RangeEnd {ip} not in network {subnet}")]
    RangeEndOutside { ip: IpAddr, subnet: IpNetwork },
    #[error("empty range set")]
    EmptyRangeSet,
    #[error("mixed address families")]
    MixedFamilies,
    #[error("subnets {0} and {1} overlap")]
    SubnetsOverlap(String, String),

    // --- allocation -------------------------------------------------------------------
    #[error("requested ip {0} is subnet's gateway")]
    RequestedGateway(IpAddr),
    #[error("requested IP address {ip} is not available in range set {set}")]
    RequestedUnavailable { ip: IpAddr, set: String },
    #[error("{ip} not in range set {set}")]
    NotInRangeSet { ip: IpAddr, set: String },
    #[error("{ip} has been allocated to {id}, duplicate allocation is not allowed")]
    Duplicate { ip: IpAddr, id: String },
    #[error("no IP addresses available in range set: {0}")]
    Exhausted(String),
    #[error("failed to allocate for range {index}: {source}")]
    RangeAllocation {
        index: usize,
        #[source]
        source: Box<Error>,
    },
    #[error("failed to allocate all requested IPs:{}", .0.iter().map(|ip| format!(" {ip}")).collect::<String>())]
    RequestedLeftOver(Vec<IpAddr>),
    #[error("host-local: Failed to find address added by container {0}")]
    NotFound(String),
    /// Several failures of one DEL, joined with ";" like upstream.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(";"))]
    Multiple(Vec<Error>),

    // --- filesystem -------------------------------------------------------------------
    #[error("{op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Upstream prints every error with code 999; we keep its messages but use the spec's codes
/// where one fits (7 bad config, 4 bad `CNI_ARGS`, 5 I/O), 999 otherwise.
impl cni::CniCode for Error {
    fn cni_code(&self) -> cni::ErrorCode {
        use cni::ErrorCode;
        match self {
            Error::MissingIpam
            | Error::InvalidRoute { .. }
            | Error::NoRanges
            | Error::InvalidRangeSet { .. }
            | Error::TooManyPerFamily(_)
            | Error::RangeSetsOverlap(..)
            | Error::BadCidr(_)
            | Error::BadIp(_)
            | Error::BadRequestedIp(_)
            | Error::BadConfig(_)
            | Error::PodCidrPlaceholder(_)
            | Error::BadNetworkName(_) => ErrorCode::InvalidConfig,
            Error::ArgsInvalidPair(_) | Error::ArgsUnknown(_) | Error::ArgsBadValue { .. } => {
                ErrorCode::InvalidEnvironment
            }
            Error::Io { .. } => ErrorCode::Io,
            _ => cni::error::GENERIC,
        }
    }
}
