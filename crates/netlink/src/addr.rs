//! IPv4/IPv6 addresses on links.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::Result;
use crate::family::{address_family, IpFamily};
use crate::socket::Handle;

/// An address as listed by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    /// The local address with its prefix length (host bits kept, like `ip addr`).
    pub addr: IpNetwork,
    /// RT_SCOPE_* (0 universe, 253 link, 254 host).
    pub scope: u8,
    /// IFA_F_* flags (IFA_FLAGS when present, else the header's 8 bits).
    pub flags: u32,
    pub label: Option<String>,
}

impl Address {
    pub fn is_link_local_scope(&self) -> bool {
        self.scope == libc::RT_SCOPE_LINK
    }
    /// IPv6 DAD still running (IFA_F_TENTATIVE).
    pub fn is_tentative(&self) -> bool {
        self.flags & AddressFlags::Tentative.bits() != 0
    }
}

/// Options for [`Handle::add_address`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddrOptions {
    /// IFA_F_NODAD: skip duplicate address detection (IPv6 only; ignored by the kernel for v4).
    pub nodad: bool,
}

impl Handle {
    /// Adds `addr` (e.g. `10.0.0.5/32`) to link `index`. Already present: EEXIST.
    pub fn add_address(&self, index: u32, addr: IpNetwork, opts: AddrOptions) -> Result<()> {
        self.ack(
            &format!("add address {addr} to link #{index}"),
            RouteNetlinkMessage::NewAddress(address_message(index, addr, opts)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Removes `addr` from link `index`. Absent: EADDRNOTAVAIL (`is_not_found()` is true).
    pub fn delete_address(&self, index: u32, addr: IpNetwork) -> Result<()> {
        self.ack(
            &format!("delete address {addr} from link #{index}"),
            RouteNetlinkMessage::DelAddress(address_message(index, addr, AddrOptions::default())),
            0,
        )
    }

    /// Addresses, optionally only of one link and/or one family.
    pub fn addresses(&self, index: Option<u32>, family: Option<IpFamily>) -> Result<Vec<Address>> {
        let mut req = AddressMessage::default();
        req.header.family = address_family(family);
        // Strict checking lets the kernel filter by ifindex; we filter again below anyway.
        req.header.index = index.unwrap_or(0);
        let replies = self.dump("list addresses", RouteNetlinkMessage::GetAddress(req))?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => parse_address(a),
                _ => None,
            })
            .filter(|a| index.is_none_or(|i| a.index == i))
            .filter(|a| family.is_none_or(|f| IpFamily::of(&a.addr.ip()) == f))
            .collect())
    }
}

pub(crate) fn address_message(index: u32, addr: IpNetwork, opts: AddrOptions) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.index = index;
    msg.header.prefix_len = addr.prefix();
    msg.header.scope = AddressScope::Universe;
    let ip = addr.ip();
    msg.header.family = address_family(Some(IpFamily::of(&ip)));
    match (ip, addr) {
        (IpAddr::V4(v4), IpNetwork::V4(net)) => {
            // IFA_LOCAL is the interface address; IFA_ADDRESS the peer (same on non-p2p links).
            msg.attributes.push(AddressAttribute::Local(ip));
            msg.attributes.push(AddressAttribute::Address(ip));
            // Like iproute2's `brd +` and Go's netlink: a broadcast for prefixes that have one.
            if net.prefix() < 31 && !v4.is_unspecified() {
                msg.attributes
                    .push(AddressAttribute::Broadcast(net.broadcast()));
            }
        }
        _ => msg.attributes.push(AddressAttribute::Address(ip)),
    }
    if opts.nodad {
        msg.header.flags = AddressHeaderFlags::Nodad;
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    msg
}

fn parse_address(msg: &AddressMessage) -> Option<Address> {
    let mut local = None;
    let mut address = None;
    let mut flags = None;
    let mut label = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Flags(f) => flags = Some(f.bits()),
            AddressAttribute::Label(l) => label = Some(l.clone()),
            _ => {}
        }
    }
    // IPv4 reports the local address in IFA_LOCAL; IPv6 only has IFA_ADDRESS.
    let ip = local.or(address)?;
    let addr = IpNetwork::new(ip, msg.header.prefix_len).ok()?;
    Some(Address {
        index: msg.header.index,
        addr,
        scope: u8::from(msg.header.scope),
        flags: flags.unwrap_or(u32::from(msg.header.flags.bits())),
        label,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::AddressFamily;

    #[test]
    fn ipv4_sets_local_address_and_broadcast() {
        let msg = address_message(4, "10.1.2.3/24".parse().unwrap(), AddrOptions::default());
        assert_eq!(msg.header.family, AddressFamily::Inet);
        assert_eq!(msg.header.prefix_len, 24);
        assert_eq!(msg.header.index, 4);
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            msg.attributes,
            vec![
                AddressAttribute::Local(ip),
                AddressAttribute::Address(ip),
                AddressAttribute::Broadcast("10.1.2.255".parse().unwrap()),
            ]
        );
    }

    #[test]
    fn ipv4_host_address_has_no_broadcast() {
        let msg = address_message(4, "10.1.2.3/32".parse().unwrap(), AddrOptions::default());
        assert_eq!(msg.attributes.len(), 2);
    }

    #[test]
    fn ipv6_nodad_sets_header_and_attribute_flags() {
        let msg = address_message(
            9,
            "fd00::5/128".parse().unwrap(),
            AddrOptions { nodad: true },
        );
        assert_eq!(msg.header.family, AddressFamily::Inet6);
        assert_eq!(msg.header.flags, AddressHeaderFlags::Nodad);
        assert_eq!(
            msg.attributes,
            vec![
                AddressAttribute::Address("fd00::5".parse().unwrap()),
                AddressAttribute::Flags(AddressFlags::Nodad),
            ]
        );
    }

    #[test]
    fn parse_prefers_local_and_flags_attribute() {
        let mut msg = address_message(2, "192.0.2.9/24".parse().unwrap(), AddrOptions::default());
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Permanent));
        let a = parse_address(&msg).unwrap();
        assert_eq!(a.addr, "192.0.2.9/24".parse::<IpNetwork>().unwrap());
        assert_eq!(a.flags, AddressFlags::Permanent.bits());
        assert_eq!(a.index, 2);
    }
}
