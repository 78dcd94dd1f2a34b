//! bandwidth: per-pod traffic shaping for chained CNI attachments, a drop-in for the
//! containernetworking `bandwidth` plugin.
//!
//! Owns: the `ingressRate`/`ingressBurst`/`egressRate`/`egressBurst` config (top level wins over
//! `runtimeConfig.bandwidth`, keys in any case; rates in bit/s, bursts in bits) and its
//! validation ([`config`]); upstream's tbf arithmetic ([`tbf`]); the ifb name ([`naming`]);
//! finding the host veth ([`veth`]); and the tc objects ([`dataplane`]):
//! * into the pod: root `tbf 1:` on the host veth;
//! * out of the pod: `ingress ffff:` on the host veth, a u32 match-all filter redirecting to the
//!   ifb `bwp<12 hex>` (mirred egress redirect), root `tbf 1:` on the ifb, which is appended to
//!   the result's interfaces.
//!
//! Names and numbers equal upstream's so a node can switch between this plugin and the Go one
//! (CHECK of either accepts the other's qdiscs). Deliberate differences:
//! * tbf values that overflow upstream's 32-bit fields are **clamped** to `u32::MAX`, never
//!   wrapped (upstream wraps `buffer` when the burst lasts longer than ≈274.9 s at the rate,
//!   which containerd's default burst of 2^32−1 bits triggers below ≈15.6 Mbit/s). Clamping is
//!   chosen over rejecting because that default is what every pod with only a rate annotation
//!   gets; the clamped bucket is the largest one tbf can express. A warning is logged.
//! * rates below 8 bit/s and bursts below 8 bits (0 bytes inside tc) are rejected instead of
//!   producing a division by zero or a bucket the kernel refuses.
//! * DEL never fails because of bandwidth values (it only needs the ifb name), so a pod with a
//!   bad annotation can always be torn down; it logs the problem instead.
//! * the redirect filter carries one mirred action (upstream's Go library sends a redundant
//!   second one); CHECK also verifies that filter and the ingress qdisc.
//!
//! Must NOT: exec `tc`/`ip`, touch qdiscs other than the ones listed above, delete the host veth
//! or its qdiscs on DEL (they go with the veth when the main plugin deletes it), or change the
//! prevResult beyond appending the ifb.

pub mod config;
pub mod dataplane;
pub mod error;
pub mod naming;
mod plugin;
pub mod tbf;
pub mod veth;

pub use config::{Limit, Shaping};
pub use error::BandwidthError;
pub use plugin::Bandwidth;
