//! `route_localnet` for connections from 127.0.0.1 to a host port.
//!
//! A packet from 127.0.0.1 that is DNATed to a pod must leave through the interface that routes
//! to the pod; the kernel drops it as a martian unless `net.ipv4.conf.<dev>.route_localnet=1`.
//! The interface is found like `ip route get <podIP>` (one RTM_GETROUTE, so policy routing is
//! honoured), falling back to the single host-side interface of prevResult.

use std::net::Ipv4Addr;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::error::PortmapError;

/// The output interface index of the route to `dst`, as the kernel resolves it.
fn route_oif(dst: Ipv4Addr) -> Result<Option<u32>, String> {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.destination_prefix_length = 32;
    msg.attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetRoute(msg));
    req.header.flags = NLM_F_REQUEST;
    req.header.sequence_number = 1;
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);

    let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| format!("netlink socket: {e}"))?;
    socket
        .bind_auto()
        .map_err(|e| format!("netlink bind: {e}"))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(|e| format!("netlink connect: {e}"))?;
    socket
        .send(&buf, 0)
        .map_err(|e| format!("netlink send: {e}"))?;
    let mut rbuf = Vec::with_capacity(16 * 1024);
    let n = socket
        .recv(&mut rbuf, 0)
        .map_err(|e| format!("netlink recv: {e}"))?;
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rbuf[..n])
        .map_err(|e| format!("netlink decode: {e}"))?;
    match reply.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
            Ok(r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            }))
        }
        // ENETUNREACH and friends: no route, nothing to enable.
        NetlinkPayload::Error(e) if e.code.is_some() => Ok(None),
        other => Err(format!("unexpected netlink reply {other:?}")),
    }
}

fn if_name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires; the result is checked.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success if_indextoname wrote a NUL-terminated name into buf.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// The host interface that routes to `pod`, else `fallback` (prevResult's host interface).
pub fn host_interface(pod: Ipv4Addr, fallback: Option<&str>) -> Option<String> {
    match route_oif(pod) {
        Ok(Some(index)) => {
            if let Some(name) = if_name(index) {
                return Some(name);
            }
        }
        Ok(None) => log::debug!("no route to {pod}"),
        Err(e) => log::warn!("route lookup for {pod} failed: {e}"),
    }
    fallback.map(str::to_string)
}

/// Sets `net.ipv4.conf.<ifname>.route_localnet=1` (path with `/`, so dotted names work).
pub fn enable(ifname: &str) -> Result<(), PortmapError> {
    let path = format!("/proc/sys/net/ipv4/conf/{ifname}/route_localnet");
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(&path, "1")
        .map_err(|e| PortmapError::Setup(format!("unable to enable route_localnet: {path}: {e}")))
}
