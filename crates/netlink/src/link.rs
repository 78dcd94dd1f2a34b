//! Links: lookup, list, veth/ifb creation, up/down, MTU, MAC, netns move, delete.

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use netns::NetNs;
use std::os::fd::AsRawFd;

use crate::error::{Error, Result};
use crate::mac::MacAddr;
use crate::socket::Handle;

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// Longest alias the kernel stores (IFALIASZ - 1).
pub const MAX_ALIAS_LEN: usize = 255;

/// What we read back about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// None when the link has no 6-byte hardware address.
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// IFLA_INFO_KIND: "veth", "ifb", "bridge", ... (None for physical devices and `lo`).
    pub kind: Option<String>,
    /// IFLA_LINK: for a veth, the peer's ifindex (in the peer's netns).
    pub peer_index: Option<u32>,
    /// IFLA_LINK_NETNSID: set when the peer lives in another netns.
    pub link_netnsid: Option<i32>,
    pub txqueuelen: Option<u32>,
    pub num_tx_queues: Option<u32>,
    pub num_rx_queues: Option<u32>,
    /// IFLA_IFALIAS (`ip link set dev X alias …`): free text, used to record who owns a link.
    pub alias: Option<String>,
}

impl Link {
    pub fn is_veth(&self) -> bool {
        self.kind.as_deref() == Some("veth")
    }
}

/// A veth pair to create. The local end is created in the handle's netns; the peer is created in
/// `peer_netns` when given (directly, no move afterwards), else next to the local end.
#[derive(Debug, Clone)]
pub struct VethSpec<'a> {
    pub name: String,
    pub mac: Option<MacAddr>,
    /// Applied to both ends.
    pub mtu: Option<u32>,
    /// TX and RX queue count, applied to both ends.
    pub num_queues: Option<u32>,
    pub peer_name: String,
    pub peer_mac: Option<MacAddr>,
    pub peer_netns: Option<&'a NetNs>,
}

impl<'a> VethSpec<'a> {
    pub fn new(name: impl Into<String>, peer_name: impl Into<String>) -> Self {
        VethSpec {
            name: name.into(),
            mac: None,
            mtu: None,
            num_queues: None,
            peer_name: peer_name.into(),
            peer_mac: None,
            peer_netns: None,
        }
    }
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
    pub fn num_queues(mut self, n: u32) -> Self {
        self.num_queues = Some(n);
        self
    }
    pub fn peer_mac(mut self, mac: MacAddr) -> Self {
        self.peer_mac = Some(mac);
        self
    }
    pub fn peer_netns(mut self, ns: &'a NetNs) -> Self {
        self.peer_netns = Some(ns);
        self
    }
}

impl Handle {
    /// The link called `name`, or None.
    pub fn link_by_name(&self, name: &str) -> Result<Option<Link>> {
        check_name(name)?;
        self.get_link(&format!("get link {name}"), get_by_name_message(name))
    }

    /// The link with ifindex `index`, or None.
    pub fn link_by_index(&self, index: u32) -> Result<Option<Link>> {
        self.get_link(&format!("get link #{index}"), get_by_index_message(index))
    }

    /// The link called `name`; [`Error::LinkNotFound`] when absent.
    pub fn link(&self, name: &str) -> Result<Link> {
        self.link_by_name(name)?
            .ok_or_else(|| Error::LinkNotFound(name.to_string()))
    }

    /// All links of the handle's netns.
    pub fn links(&self) -> Result<Vec<Link>> {
        let replies = self.dump(
            "list links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
        )?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_link(l)),
                _ => None,
            })
            .collect())
    }

    /// Creates a veth pair (create-exclusive: an existing name gives EEXIST) and returns the
    /// local end as the kernel reports it.
    pub fn create_veth(&self, spec: &VethSpec<'_>) -> Result<Link> {
        check_name(&spec.name)?;
        check_name(&spec.peer_name)?;
        let op = format!("add veth {} (peer {})", spec.name, spec.peer_name);
        self.ack(
            &op,
            RouteNetlinkMessage::NewLink(veth_message(spec)),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        self.link(&spec.name)
    }

    /// Creates an ifb device (down; the caller sets it up once configured).
    pub fn create_ifb(&self, name: &str, mtu: Option<u32>, txqueuelen: u32) -> Result<Link> {
        check_name(name)?;
        self.ack(
            &format!("add ifb {name}"),
            RouteNetlinkMessage::NewLink(ifb_message(name, mtu, txqueuelen)),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        self.link(name)
    }

    pub fn set_link_up(&self, index: u32) -> Result<()> {
        self.set_link(
            &format!("set link #{index} up"),
            set_up_message(index, true),
        )
    }

    pub fn set_link_down(&self, index: u32) -> Result<()> {
        self.set_link(
            &format!("set link #{index} down"),
            set_up_message(index, false),
        )
    }

    pub fn set_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        self.set_link(
            &format!("set link #{index} mtu {mtu}"),
            set_attr_message(index, LinkAttribute::Mtu(mtu)),
        )
    }

    pub fn set_mac(&self, index: u32, mac: MacAddr) -> Result<()> {
        self.set_link(
            &format!("set link #{index} address {mac}"),
            set_attr_message(index, LinkAttribute::Address(mac.0.to_vec())),
        )
    }

    /// Sets the link's alias (IFLA_IFALIAS, at most 255 bytes; the kernel cannot set it when
    /// the link is created, hence a separate request).
    pub fn set_alias(&self, index: u32, alias: &str) -> Result<()> {
        if alias.len() > MAX_ALIAS_LEN {
            return Err(Error::Invalid(format!(
                "link alias must be at most {MAX_ALIAS_LEN} bytes"
            )));
        }
        self.set_link(
            &format!("set link #{index} alias"),
            set_attr_message(index, LinkAttribute::IfAlias(alias.to_string())),
        )
    }

    /// Moves a link into another netns (it disappears from this handle's netns).
    pub fn set_link_netns(&self, index: u32, ns: &NetNs) -> Result<()> {
        self.set_link(
            &format!("move link #{index} to netns {}", ns.path().display()),
            set_attr_message(index, LinkAttribute::NetNsFd(ns.as_raw_fd())),
        )
    }

    /// Deletes a link (for a veth, both ends). Missing link: error with `is_not_found()` (ENODEV).
    pub fn delete_link(&self, index: u32) -> Result<()> {
        self.ack(
            &format!("delete link #{index}"),
            RouteNetlinkMessage::DelLink(get_by_index_message(index)),
            0,
        )
    }

    /// Deletes a link by name. Missing link: error with `is_not_found()` (ENODEV).
    pub fn delete_link_by_name(&self, name: &str) -> Result<()> {
        check_name(name)?;
        self.ack(
            &format!("delete link {name}"),
            RouteNetlinkMessage::DelLink(get_by_name_message(name)),
            0,
        )
    }

    /// For the veth `name` in this handle's netns (the container side), the ifindex of its peer
    /// in the peer's netns (the host). Errors: [`Error::LinkNotFound`], [`Error::NotVeth`],
    /// [`Error::NoVethPeer`].
    pub fn veth_peer_index(&self, name: &str) -> Result<u32> {
        let link = self.link(name)?;
        if !link.is_veth() {
            return Err(Error::NotVeth(name.to_string()));
        }
        match link.peer_index {
            Some(i) if i != 0 => Ok(i),
            _ => Err(Error::NoVethPeer(name.to_string())),
        }
    }

    fn get_link(&self, op: &str, msg: LinkMessage) -> Result<Option<Link>> {
        match self.get(op, RouteNetlinkMessage::GetLink(msg)) {
            Ok(replies) => Ok(replies.iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_link(l)),
                _ => None,
            })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn set_link(&self, op: &str, msg: LinkMessage) -> Result<()> {
        self.ack(op, RouteNetlinkMessage::SetLink(msg), 0)
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_IFNAME_LEN
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
    {
        return Err(Error::Invalid(format!(
            "interface name {name:?} must be 1-{MAX_IFNAME_LEN} bytes without '/', ':' or spaces"
        )));
    }
    Ok(())
}

pub(crate) fn get_by_name_message(name: &str) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    msg
}

pub(crate) fn get_by_index_message(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg
}

pub(crate) fn set_up_message(index: u32, up: bool) -> LinkMessage {
    let mut msg = get_by_index_message(index);
    msg.header.change_mask = LinkFlags::Up;
    if up {
        msg.header.flags = LinkFlags::Up;
    }
    msg
}

pub(crate) fn set_attr_message(index: u32, attr: LinkAttribute) -> LinkMessage {
    let mut msg = get_by_index_message(index);
    msg.attributes.push(attr);
    msg
}

/// One end of a veth: name, MAC, MTU, queues (shared by both ends of the request).
fn veth_end(
    name: &str,
    mac: Option<MacAddr>,
    mtu: Option<u32>,
    queues: Option<u32>,
) -> Vec<LinkAttribute> {
    let mut attrs = vec![LinkAttribute::IfName(name.to_string())];
    if let Some(mac) = mac {
        attrs.push(LinkAttribute::Address(mac.0.to_vec()));
    }
    if let Some(mtu) = mtu {
        attrs.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(q) = queues {
        attrs.push(LinkAttribute::NumTxQueues(q));
        attrs.push(LinkAttribute::NumRxQueues(q));
    }
    attrs
}

pub(crate) fn veth_message(spec: &VethSpec<'_>) -> LinkMessage {
    let mut peer = LinkMessage::default();
    peer.attributes = veth_end(&spec.peer_name, spec.peer_mac, spec.mtu, spec.num_queues);
    if let Some(ns) = spec.peer_netns {
        peer.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
    }
    let mut msg = LinkMessage::default();
    msg.attributes = veth_end(&spec.name, spec.mac, spec.mtu, spec.num_queues);
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    msg
}

pub(crate) fn ifb_message(name: &str, mtu: Option<u32>, txqueuelen: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    if let Some(mtu) = mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    msg.attributes.push(LinkAttribute::TxQueueLen(txqueuelen));
    msg.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Ifb)]));
    msg
}

pub(crate) fn parse_link(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
        kind: None,
        peer_index: None,
        link_netnsid: None,
        txqueuelen: None,
        num_tx_queues: None,
        num_rx_queues: None,
        alias: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Address(a) => link.mac = MacAddr::from_slice(a),
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::Link(i) => link.peer_index = Some(*i),
            LinkAttribute::LinkNetNsId(id) => link.link_netnsid = Some(*id),
            LinkAttribute::TxQueueLen(q) => link.txqueuelen = Some(*q),
            LinkAttribute::NumTxQueues(q) => link.num_tx_queues = Some(*q),
            LinkAttribute::NumRxQueues(q) => link.num_rx_queues = Some(*q),
            LinkAttribute::IfAlias(a) if !a.is_empty() => link.alias = Some(a.clone()),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{Emitable, Parseable};

    fn round_trip(msg: &LinkMessage) -> LinkMessage {
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        LinkMessage::parse(&buf[..]).unwrap()
    }

    #[test]
    fn veth_message_nests_peer_with_netns_fd() {
        let ns = NetNs::current_thread().unwrap();
        let spec = VethSpec::new("eth0", "cali12345")
            .mtu(1440)
            .num_queues(2)
            .mac("0a:0b:0c:0d:0e:0f".parse().unwrap())
            .peer_mac("ee:ee:ee:ee:ee:ee".parse().unwrap())
            .peer_netns(&ns);
        let msg = veth_message(&spec);
        assert_eq!(msg.header.index, 0);
        let attrs = &msg.attributes;
        assert!(attrs.contains(&LinkAttribute::IfName("eth0".into())));
        assert!(attrs.contains(&LinkAttribute::Mtu(1440)));
        assert!(attrs.contains(&LinkAttribute::NumTxQueues(2)));
        assert!(attrs.contains(&LinkAttribute::Address(vec![10, 11, 12, 13, 14, 15])));
        let Some(LinkAttribute::LinkInfo(info)) = attrs.last() else {
            panic!("no linkinfo")
        };
        assert_eq!(info[0], LinkInfo::Kind(InfoKind::Veth));
        let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) = &info[1] else {
            panic!("no peer")
        };
        assert_eq!(
            peer.attributes,
            vec![
                LinkAttribute::IfName("cali12345".into()),
                LinkAttribute::Address(vec![0xee; 6]),
                LinkAttribute::Mtu(1440),
                LinkAttribute::NumTxQueues(2),
                LinkAttribute::NumRxQueues(2),
                LinkAttribute::NetNsFd(ns.as_raw_fd()),
            ]
        );
        // The bytes parse back to the same structure (what the kernel will see).
        assert_eq!(round_trip(&msg), msg);
    }

    #[test]
    fn veth_without_optional_fields_sends_names_only() {
        let msg = veth_message(&VethSpec::new("a", "b"));
        assert_eq!(msg.attributes[0], LinkAttribute::IfName("a".into()));
        assert_eq!(msg.attributes.len(), 2);
    }

    #[test]
    fn ifb_message_sets_kind_mtu_txqueuelen() {
        let msg = ifb_message("bwp123", Some(1500), 0);
        assert_eq!(
            msg.attributes,
            vec![
                LinkAttribute::IfName("bwp123".into()),
                LinkAttribute::Mtu(1500),
                LinkAttribute::TxQueueLen(0),
                LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Ifb)]),
            ]
        );
    }

    #[test]
    fn up_down_touch_only_the_up_flag() {
        let up = set_up_message(7, true);
        assert_eq!(up.header.index, 7);
        assert_eq!(up.header.change_mask, LinkFlags::Up);
        assert_eq!(up.header.flags, LinkFlags::Up);
        let down = set_up_message(7, false);
        assert_eq!(down.header.change_mask, LinkFlags::Up);
        assert!(down.header.flags.is_empty());
    }

    #[test]
    fn parses_veth_peer_fields() {
        let mut msg = LinkMessage::default();
        msg.header.index = 3;
        msg.header.flags = LinkFlags::Up | LinkFlags::LowerUp;
        msg.attributes = vec![
            LinkAttribute::IfName("eth0".into()),
            LinkAttribute::Address(vec![1, 2, 3, 4, 5, 6]),
            LinkAttribute::Mtu(1400),
            LinkAttribute::Link(12),
            LinkAttribute::LinkNetNsId(0),
            LinkAttribute::IfAlias("cni:abc".into()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]),
        ];
        let link = parse_link(&round_trip(&msg));
        assert_eq!(link.index, 3);
        assert_eq!(link.name, "eth0");
        assert_eq!(link.mac.unwrap().to_string(), "01:02:03:04:05:06");
        assert!(link.up && link.is_veth());
        assert_eq!(link.peer_index, Some(12));
        assert_eq!(link.link_netnsid, Some(0));
        assert_eq!(link.alias.as_deref(), Some("cni:abc"));
    }

    #[test]
    fn names_are_checked_before_sending() {
        assert!(check_name("sixteen_chars_xx").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("fifteen_chars_x").is_ok());
    }
}
