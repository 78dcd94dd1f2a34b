//! Neighbour (ARP/NDP) entries.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::Result;
use crate::family::{address_family, IpFamily};
use crate::mac::MacAddr;
use crate::socket::Handle;

/// NUD_PERMANENT.
pub const NUD_PERMANENT: u16 = 0x80;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub index: u32,
    pub ip: IpAddr,
    pub mac: Option<MacAddr>,
    /// NUD_* bits.
    pub state: u16,
}

impl Neighbour {
    pub fn is_permanent(&self) -> bool {
        self.state & NUD_PERMANENT != 0
    }
}

impl Handle {
    /// Adds a PERMANENT entry `ip lladdr mac dev index` (EEXIST if one exists).
    pub fn add_neighbour(&self, index: u32, ip: IpAddr, mac: MacAddr) -> Result<()> {
        self.ack(
            &format!("add neighbour {ip} lladdr {mac} dev #{index}"),
            RouteNetlinkMessage::NewNeighbour(neighbour_message(index, ip, Some(mac))),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Adds or overwrites a PERMANENT entry.
    pub fn replace_neighbour(&self, index: u32, ip: IpAddr, mac: MacAddr) -> Result<()> {
        self.ack(
            &format!("replace neighbour {ip} lladdr {mac} dev #{index}"),
            RouteNetlinkMessage::NewNeighbour(neighbour_message(index, ip, Some(mac))),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Deletes the entry for `ip` on link `index` (absent: ENOENT).
    pub fn delete_neighbour(&self, index: u32, ip: IpAddr) -> Result<()> {
        self.ack(
            &format!("delete neighbour {ip} dev #{index}"),
            RouteNetlinkMessage::DelNeighbour(neighbour_message(index, ip, None)),
            0,
        )
    }

    /// Neighbour entries, optionally of one link and/or family.
    pub fn neighbours(
        &self,
        index: Option<u32>,
        family: Option<IpFamily>,
    ) -> Result<Vec<Neighbour>> {
        let mut req = NeighbourMessage::default();
        req.header.family = address_family(family);
        let replies = self.dump("list neighbours", RouteNetlinkMessage::GetNeighbour(req))?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => parse_neighbour(n),
                _ => None,
            })
            .filter(|n| index.is_none_or(|i| n.index == i))
            .filter(|n| family.is_none_or(|f| IpFamily::of(&n.ip) == f))
            .collect())
    }
}

pub(crate) fn neighbour_message(index: u32, ip: IpAddr, mac: Option<MacAddr>) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = address_family(Some(IpFamily::of(&ip)));
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.attributes
        .push(NeighbourAttribute::Destination(match ip {
            IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
            IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
        }));
    if let Some(mac) = mac {
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
    }
    msg
}

fn parse_neighbour(msg: &NeighbourMessage) -> Option<Neighbour> {
    let mut ip = None;
    let mut mac = None;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                ip = Some(IpAddr::V4(*v4))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                ip = Some(IpAddr::V6(*v6))
            }
            NeighbourAttribute::LinkLayerAddress(a) => mac = MacAddr::from_slice(a),
            _ => {}
        }
    }
    Some(Neighbour {
        index: msg.header.ifindex,
        ip: ip?,
        mac,
        state: u16::from(msg.header.state),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    #[test]
    fn permanent_ipv4_entry_bytes() {
        let msg = neighbour_message(5, "169.254.1.1".parse().unwrap(), Some(MacAddr([0xee; 6])));
        let mut b = vec![0u8; msg.buffer_len()];
        msg.emit(&mut b);
        // ndmsg: family, pad(3), ifindex(4), state(2), flags, type
        assert_eq!(b[0], libc::AF_INET as u8);
        assert_eq!(u32::from_ne_bytes(b[4..8].try_into().unwrap()), 5);
        assert_eq!(u16::from_ne_bytes([b[8], b[9]]), NUD_PERMANENT);
        let back = parse_neighbour(&msg).unwrap();
        assert_eq!(back.ip, "169.254.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(back.mac, Some(MacAddr([0xee; 6])));
        assert!(back.is_permanent());
    }
}
