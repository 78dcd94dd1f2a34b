//! Network namespaces for the CNI plugins.
//!
//! Owns: opening a netns file (`/run/netns/x`, `/proc/<pid>/ns/net`, ...) as an owned fd ([`NetNs`]),
//! running a closure inside a netns on a scoped std thread ([`in_netns`]), and `/proc/sys` access
//! ([`sysctl`]), which resolves against the netns of the *calling thread*.
//!
//! Must NOT: call `setns` on the caller's own thread (a thread that changed netns is never reused;
//! that is what keeps tokio workers and the main thread in the host netns), create or delete
//! persistent namespaces (runtimes own those), or know anything about netlink.
//!
//! With the `test-util` feature, [`testutil`] offers throwaway namespaces and the root check for
//! root tests (the netns-tests harness builds on them too).

mod error;
mod ns;
pub mod sysctl;
#[cfg(any(test, feature = "test-util"))]
pub mod testutil;

pub use error::Error;
pub use ns::{in_netns, NetNs};
