//! `route_localnet` for connections from 127.0.0.1 to a host port.
//!
//! A packet from 127.0.0.1 that is DNATed to a pod must leave through the interface that routes
//! to the pod; the kernel drops it as a martian unless `net.ipv4.conf.<dev>.route_localnet=1`.
//! The interface is found like `ip route get <podIP>` (so policy routing is honoured), falling
//! back to the single host-side interface of prevResult.

use std::net::{IpAddr, Ipv4Addr};

use netns::sysctl;

use crate::error::PortmapError;

/// The name of the interface the kernel routes `dst` through (`Ok(None)`: no route).
fn route_dev(dst: Ipv4Addr) -> Result<Option<String>, netlink::Error> {
    let handle = netlink::Handle::new()?;
    let Some(oif) = handle.route_get(IpAddr::V4(dst))?.and_then(|r| r.oif) else {
        return Ok(None);
    };
    Ok(handle.link_by_index(oif)?.map(|link| link.name))
}

/// The host interface that routes to `pod`, else `fallback` (prevResult's host interface).
pub fn host_interface(pod: Ipv4Addr, fallback: Option<&str>) -> Option<String> {
    match route_dev(pod) {
        Ok(Some(name)) => return Some(name),
        Ok(None) => log::debug!("no route to {pod}"),
        Err(e) => log::warn!("route lookup for {pod} failed: {e}"),
    }
    fallback.map(str::to_string)
}

/// Sets `net.ipv4.conf.<ifname>.route_localnet=1` (unless it already is).
pub fn enable(ifname: &str) -> Result<(), PortmapError> {
    sysctl::ipv4_conf(ifname, "route_localnet")
        .and_then(|key| sysctl::write(&key, "1"))
        .map(drop)
        .map_err(PortmapError::RouteLocalnet)
}
