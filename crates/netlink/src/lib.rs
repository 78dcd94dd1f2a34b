//! Synchronous rtnetlink for the CNI plugins: links, addresses, routes, neighbours, tc.
//!
//! Owns: one NETLINK_ROUTE socket per netns ([`Handle`]), building every request as a plain
//! function (unit-tested without root) and decoding dumps into small structs ([`Link`],
//! [`Address`], [`Route`], [`Neighbour`], [`Qdisc`], [`Filter`]). Kernel errors keep their errno
//! ([`Error::errno`], [`Error::is_not_found`], [`Error::is_exists`]).
//!
//! Must NOT: enter namespaces on the caller's thread (a socket opened through
//! [`Handle::in_netns`] stays bound to that netns; `/proc/sys` work belongs to `netns`), exec
//! `ip`/`tc`, retry or roll back on its own (callers decide), or use an async runtime.
//!
//! Built on netlink-packet-route (pinned, its API churns); tbf options are encoded by hand in
//! [`tc::tbf`] because the crate has no tbf support.

mod addr;
mod error;
mod family;
mod link;
mod mac;
mod neigh;
mod route;
mod socket;
pub mod tc;

pub use addr::{AddrOptions, Address};
pub use error::{Error, Result};
pub use family::IpFamily;
pub use link::{Link, VethSpec, MAX_ALIAS_LEN, MAX_IFNAME_LEN};
pub use mac::{MacAddr, ParseMacError};
pub use neigh::{Neighbour, NUD_PERMANENT};
pub use route::{
    Route, RouteFilter, Scope, RTN_UNICAST, RTPROT_BOOT, RTPROT_KERNEL, RTPROT_STATIC,
    RT_TABLE_LOCAL, RT_TABLE_MAIN,
};
pub use socket::Handle;
pub use tc::{Filter, Qdisc, Tbf};
