//! The CNI protocol, complete and version-aware: network configs and conflists, the `CNI_*`
//! environment, `CNI_ARGS`, capability payloads, results in every spec version with conversion,
//! errors, the plugin skeleton ([`skel::run`]) and delegation to other plugins.
//!
//! Owns: everything a plugin needs to speak the protocol correctly.
//! Also owns the one safe way to open a path named by config or environment ([`file`](mod@file): kind
//! check before blocking, bounded reads, `CNI_NETNS` classification) and bounded numbers
//! ([`config::bounded_u64`]), so every plugin refuses bad input the same way.
//! Must not: touch the network, the filesystem beyond stdin/stdout/exec and [`file`](mod@file), or know any plugin's
//! own config fields (plugins parse those through [`config::NetConf::plugin_config`]).

pub mod args;
pub mod caps;
pub mod config;
pub mod delegate;
pub mod env;
pub mod error;
pub mod file;
pub mod flags;
pub mod result;
pub mod skel;
#[cfg(feature = "proptest")]
pub mod strategies;
pub mod version;

pub use args::CniArgs;
pub use caps::{BandwidthEntry, PortMapping};
pub use config::{NetConf, NetConfList, RuntimeConfig};
pub use env::Command;
pub use error::{CniCode, CniError, Context, ErrorCode};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use skel::{Invocation, Plugin};
