//! IPv4/IPv6 routes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::{Error, Result};
use crate::family::{address_family, IpFamily};
use crate::socket::Handle;

pub const RT_TABLE_MAIN: u32 = 254;
pub const RT_TABLE_LOCAL: u32 = 255;
/// Protocol `boot`: what `ip route add` and Go's netlink use by default.
pub const RTPROT_BOOT: u8 = 3;
pub const RTPROT_KERNEL: u8 = 2;
pub const RTPROT_STATIC: u8 = 4;
/// RTN_UNICAST.
pub const RTN_UNICAST: u8 = 1;

/// Route scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Universe,
    Site,
    Link,
    Host,
    Nowhere,
    Other(u8),
}

impl From<Scope> for RouteScope {
    fn from(s: Scope) -> RouteScope {
        match s {
            Scope::Universe => RouteScope::Universe,
            Scope::Site => RouteScope::Site,
            Scope::Link => RouteScope::Link,
            Scope::Host => RouteScope::Host,
            Scope::Nowhere => RouteScope::NoWhere,
            Scope::Other(v) => RouteScope::from(v),
        }
    }
}

impl From<RouteScope> for Scope {
    fn from(s: RouteScope) -> Scope {
        match s {
            RouteScope::Universe => Scope::Universe,
            RouteScope::Site => Scope::Site,
            RouteScope::Link => Scope::Link,
            RouteScope::Host => Scope::Host,
            RouteScope::NoWhere => Scope::Nowhere,
            other => Scope::Other(u8::from(other)),
        }
    }
}

/// A route to add/replace/delete, or one listed by the kernel.
///
/// `Route::new(dst)` gives table main, protocol boot, scope universe, type unicast; chain
/// `.via()`, `.dev()`, `.scope()`, `.table()`, `.protocol()`, `.priority()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination network (host bits are cleared when sending).
    pub dst: IpNetwork,
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    pub scope: Scope,
    pub table: u32,
    pub protocol: u8,
    /// RTN_* (1 unicast, 2 local, ...).
    pub kind: u8,
    pub priority: Option<u32>,
    pub prefsrc: Option<IpAddr>,
}

impl Route {
    pub fn new(dst: IpNetwork) -> Route {
        Route {
            dst,
            gateway: None,
            oif: None,
            scope: Scope::Universe,
            table: RT_TABLE_MAIN,
            protocol: RTPROT_BOOT,
            kind: RTN_UNICAST,
            priority: None,
            prefsrc: None,
        }
    }

    /// The default route of `family` (`0.0.0.0/0` or `::/0`).
    pub fn default_route(family: IpFamily) -> Route {
        let dst = match family {
            IpFamily::V4 => IpNetwork::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            IpFamily::V6 => IpNetwork::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        };
        Route::new(dst.expect("prefix 0 is valid"))
    }

    pub fn via(mut self, gw: IpAddr) -> Self {
        self.gateway = Some(gw);
        self
    }
    pub fn dev(mut self, oif: u32) -> Self {
        self.oif = Some(oif);
        self
    }
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }
    pub fn table(mut self, table: u32) -> Self {
        self.table = table;
        self
    }
    pub fn protocol(mut self, protocol: u8) -> Self {
        self.protocol = protocol;
        self
    }
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = Some(priority);
        self
    }

    pub fn family(&self) -> IpFamily {
        IpFamily::of(&self.dst.ip())
    }

    /// The destination with host bits cleared (what the kernel stores).
    pub fn dst_network(&self) -> IpNetwork {
        IpNetwork::new(self.dst.network(), self.dst.prefix()).expect("same prefix is valid")
    }
}

/// Which routes [`Handle::routes`] returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteFilter {
    pub family: Option<IpFamily>,
    pub oif: Option<u32>,
    /// None = every table (main, local, ...).
    pub table: Option<u32>,
}

impl Handle {
    /// Adds a route (create-exclusive: an existing identical route gives EEXIST).
    pub fn add_route(&self, route: &Route) -> Result<()> {
        let msg = route_message(route, false)?;
        self.ack(
            &format!("add route {}", describe(route)),
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Adds or replaces the route with the same destination/table/metric.
    pub fn replace_route(&self, route: &Route) -> Result<()> {
        let msg = route_message(route, false)?;
        self.ack(
            &format!("replace route {}", describe(route)),
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Deletes a matching route (unset fields match anything). Absent: ESRCH.
    pub fn delete_route(&self, route: &Route) -> Result<()> {
        let msg = route_message(route, true)?;
        self.ack(
            &format!("delete route {}", describe(route)),
            RouteNetlinkMessage::DelRoute(msg),
            0,
        )
    }

    /// The route the kernel picks for `dst`, like `ip route get` (one RTM_GETROUTE, so policy
    /// routing is honoured). `None` when `dst` is unreachable (ENETUNREACH, EHOSTUNREACH).
    pub fn route_get(&self, dst: IpAddr) -> Result<Option<Route>> {
        let replies = match self.get(
            &format!("get route to {dst}"),
            RouteNetlinkMessage::GetRoute(route_get_message(dst)),
        ) {
            Ok(replies) => replies,
            Err(e) if matches!(e.errno(), Some(libc::ENETUNREACH | libc::EHOSTUNREACH)) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        Ok(replies.iter().find_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r) => parse_route(r),
            _ => None,
        }))
    }

    /// Lists routes matching `filter`.
    pub fn routes(&self, filter: RouteFilter) -> Result<Vec<Route>> {
        let mut req = RouteMessage::default();
        req.header.address_family = address_family(filter.family);
        let replies = self.dump("list routes", RouteNetlinkMessage::GetRoute(req))?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => parse_route(r),
                _ => None,
            })
            .filter(|r| filter.family.is_none_or(|f| r.family() == f))
            .filter(|r| filter.oif.is_none_or(|o| r.oif == Some(o)))
            .filter(|r| filter.table.is_none_or(|t| r.table == t))
            .collect())
    }
}

fn describe(r: &Route) -> String {
    let mut s = r.dst_network().to_string();
    if let Some(gw) = r.gateway {
        s.push_str(&format!(" via {gw}"));
    }
    if let Some(oif) = r.oif {
        s.push_str(&format!(" dev #{oif}"));
    }
    if r.scope != Scope::Universe {
        s.push_str(&format!(" scope {:?}", r.scope).to_lowercase());
    }
    if r.table != RT_TABLE_MAIN {
        s.push_str(&format!(" table {}", r.table));
    }
    s
}

pub(crate) fn route_message(route: &Route, delete: bool) -> Result<RouteMessage> {
    let family = route.family();
    if let Some(gw) = route.gateway {
        if IpFamily::of(&gw) != family {
            return Err(Error::Invalid(format!(
                "route {}: gateway {gw} is not in the destination's address family",
                route.dst
            )));
        }
    }
    let mut msg = RouteMessage::default();
    let h = &mut msg.header;
    h.address_family = address_family(Some(family));
    h.destination_prefix_length = route.dst.prefix();
    // Tables above 255 only fit in RTA_TABLE (iproute2 does the same).
    h.table = u8::try_from(route.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    if delete {
        // Like `ip route del`: match any scope/protocol/type unless told otherwise.
        h.scope = RouteScope::NoWhere;
        h.protocol = RouteProtocol::Unspec;
        h.kind = RouteType::Unspec;
    } else {
        h.scope = route.scope.into();
        h.protocol = RouteProtocol::from(route.protocol);
        h.kind = RouteType::from(route.kind);
    }
    if route.dst.prefix() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(route.dst_network().ip().into()));
    }
    if route.table > 255 {
        msg.attributes.push(RouteAttribute::Table(route.table));
    }
    if let Some(gw) = route.gateway {
        msg.attributes.push(RouteAttribute::Gateway(gw.into()));
    }
    if let Some(oif) = route.oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    if let Some(p) = route.priority {
        msg.attributes.push(RouteAttribute::Priority(p));
    }
    if let Some(src) = route.prefsrc {
        msg.attributes.push(RouteAttribute::PrefSource(src.into()));
    }
    Ok(msg)
}

/// An RTM_GETROUTE for one host address (a full-length prefix, as strict checking requires).
pub(crate) fn route_get_message(dst: IpAddr) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = address_family(Some(IpFamily::of(&dst)));
    msg.header.destination_prefix_length = match dst {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    msg.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(dst)));
    msg
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

pub(crate) fn parse_route(msg: &RouteMessage) -> Option<Route> {
    let h = &msg.header;
    let unspecified = match h.address_family {
        netlink_packet_route::AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        netlink_packet_route::AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let mut route = Route::new(IpNetwork::new(unspecified, h.destination_prefix_length).ok()?);
    route.scope = h.scope.into();
    route.table = u32::from(h.table);
    route.protocol = u8::from(h.protocol);
    route.kind = u8::from(h.kind);
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => {
                route.dst = IpNetwork::new(route_ip(a)?, h.destination_prefix_length).ok()?
            }
            RouteAttribute::Gateway(a) => route.gateway = route_ip(a),
            RouteAttribute::Oif(i) => route.oif = Some(*i),
            RouteAttribute::Table(t) => route.table = *t,
            RouteAttribute::Priority(p) => route.priority = Some(*p),
            RouteAttribute::PrefSource(a) => route.prefsrc = route_ip(a),
            _ => {}
        }
    }
    Some(route)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{Emitable, Parseable};
    use netlink_packet_route::AddressFamily;

    fn bytes(msg: &RouteMessage) -> Vec<u8> {
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        buf
    }

    #[test]
    fn scope_link_host_route() {
        let r = Route::new("169.254.1.1/32".parse().unwrap())
            .dev(2)
            .scope(Scope::Link);
        let msg = route_message(&r, false).unwrap();
        let b = bytes(&msg);
        // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type
        assert_eq!(&b[..8], &[libc::AF_INET as u8, 32, 0, 0, 254, 3, 253, 1]);
        assert_eq!(
            msg.attributes,
            vec![
                RouteAttribute::Destination(RouteAddress::Inet("169.254.1.1".parse().unwrap())),
                RouteAttribute::Oif(2),
            ]
        );
        let back = parse_route(&RouteMessage::parse(&b[..]).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn default_route_via_gateway_has_no_dst_attribute() {
        let r = Route::default_route(IpFamily::V4)
            .via("169.254.1.1".parse().unwrap())
            .dev(2);
        let msg = route_message(&r, false).unwrap();
        assert_eq!(msg.header.destination_prefix_length, 0);
        assert_eq!(msg.header.scope, RouteScope::Universe);
        assert_eq!(
            msg.attributes,
            vec![
                RouteAttribute::Gateway(RouteAddress::Inet("169.254.1.1".parse().unwrap())),
                RouteAttribute::Oif(2),
            ]
        );
    }

    #[test]
    fn host_bits_are_cleared_and_big_tables_use_attribute() {
        let r = Route::new("10.1.2.3/24".parse().unwrap()).table(1000);
        let msg = route_message(&r, false).unwrap();
        assert_eq!(msg.header.table, 0);
        assert!(msg.attributes.contains(&RouteAttribute::Table(1000)));
        assert!(msg
            .attributes
            .contains(&RouteAttribute::Destination(RouteAddress::Inet(
                "10.1.2.0".parse().unwrap()
            ))));
    }

    #[test]
    fn ipv6_route_and_family_mismatch() {
        let r = Route::default_route(IpFamily::V6)
            .via("fe80::1".parse().unwrap())
            .dev(3);
        let msg = route_message(&r, false).unwrap();
        assert_eq!(msg.header.address_family, AddressFamily::Inet6);
        let bad = Route::default_route(IpFamily::V6).via("10.0.0.1".parse().unwrap());
        assert!(route_message(&bad, false).is_err());
    }

    #[test]
    fn route_get_asks_for_one_host_address() {
        let msg = route_get_message("10.244.1.5".parse().unwrap());
        let b = bytes(&msg);
        // Strict checking rejects a GETROUTE with a table, protocol, scope or type set.
        assert_eq!(&b[..8], &[libc::AF_INET as u8, 32, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            msg.attributes,
            vec![RouteAttribute::Destination(RouteAddress::Inet(
                "10.244.1.5".parse().unwrap()
            ))]
        );
        let v6 = route_get_message("fd00::5".parse().unwrap());
        assert_eq!(v6.header.address_family, AddressFamily::Inet6);
        assert_eq!(v6.header.destination_prefix_length, 128);
    }

    #[test]
    fn delete_matches_any_scope_and_protocol() {
        let r = Route::new("10.0.0.0/8".parse().unwrap()).scope(Scope::Link);
        let msg = route_message(&r, true).unwrap();
        assert_eq!(msg.header.scope, RouteScope::NoWhere);
        assert_eq!(msg.header.protocol, RouteProtocol::Unspec);
    }
}
