//! Traffic control: qdiscs (tbf, ingress) and the u32 match-all filter that redirects a link's
//! ingress traffic to an ifb (what the bandwidth plugin needs), plus dumps to read them back.

pub mod tbf;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionMirrorOption, TcActionOption, TcActionType, TcAttribute,
    TcFilterU32Option, TcHandle, TcMessage, TcMirror, TcMirrorActionType, TcOption, TcU32Key,
    TcU32Selector, TcU32SelectorFlags,
};
use netlink_packet_route::RouteNetlinkMessage;

pub use self::tbf::Tbf;
use crate::error::Result;
use crate::socket::Handle;

/// `TC_H_ROOT`.
pub const HANDLE_ROOT: u32 = 0xFFFF_FFFF;
/// `TC_H_INGRESS` (parent of the ingress qdisc).
pub const HANDLE_INGRESS_PARENT: u32 = 0xFFFF_FFF1;
/// `ffff:`, the ingress qdisc's handle and its filters' parent.
pub const HANDLE_INGRESS: u32 = 0xFFFF_0000;
/// `1:`, the handle of the root tbf.
pub const HANDLE_TBF: u32 = 0x0001_0000;
/// `ETH_P_ALL`, in host byte order.
pub const ETH_P_ALL: u16 = 0x0003;

/// A qdisc as dumped by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qdisc {
    pub index: u32,
    pub handle: u32,
    pub parent: u32,
    pub kind: String,
    /// Parameters when `kind == "tbf"`.
    pub tbf: Option<Tbf>,
}

/// A filter as dumped by the kernel. u32 filters dump several entries (hash table and keys);
/// the key entry carries `classid` and the actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub index: u32,
    pub parent: u32,
    pub handle: u32,
    pub prio: u16,
    /// Ethernet protocol in host byte order (`ETH_P_ALL` = 3).
    pub protocol: u16,
    pub kind: String,
    pub classid: Option<u32>,
    /// Target ifindex of a `mirred egress redirect` action.
    pub redirect_to: Option<u32>,
}

impl Handle {
    /// Qdiscs of one link (or of all links).
    pub fn qdiscs(&self, index: Option<u32>) -> Result<Vec<Qdisc>> {
        let replies = self.dump(
            "list qdiscs",
            RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()),
        )?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewQueueDiscipline(q) => Some(parse_qdisc(q)),
                _ => None,
            })
            .filter(|q| index.is_none_or(|i| q.index == i))
            .collect())
    }

    /// `tc qdisc add dev <index> root handle 1: tbf ...` (EEXIST if a root qdisc 1: exists).
    pub fn add_root_tbf(&self, index: u32, tbf: &Tbf) -> Result<()> {
        self.ack(
            &format!("create qdisc: tbf on link #{index}"),
            RouteNetlinkMessage::NewQueueDiscipline(tbf_qdisc_message(index, tbf)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// `tc qdisc add dev <index> handle ffff: ingress`.
    pub fn add_ingress_qdisc(&self, index: u32) -> Result<()> {
        self.ack(
            &format!("create ingress qdisc on link #{index}"),
            RouteNetlinkMessage::NewQueueDiscipline(ingress_qdisc_message(index)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Deletes the root qdisc of a link (ENOENT when there is only the default one).
    pub fn delete_root_qdisc(&self, index: u32) -> Result<()> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = HANDLE_ROOT.into();
        self.ack(
            &format!("delete root qdisc of link #{index}"),
            RouteNetlinkMessage::DelQueueDiscipline(msg),
            0,
        )
    }

    /// Deletes the ingress qdisc of a link (and its filters).
    pub fn delete_ingress_qdisc(&self, index: u32) -> Result<()> {
        let msg = ingress_qdisc_message(index);
        self.ack(
            &format!("delete ingress qdisc of link #{index}"),
            RouteNetlinkMessage::DelQueueDiscipline(msg),
            0,
        )
    }

    /// `tc filter add dev <index> parent ffff: protocol all prio 1 u32 match u32 0 0 flowid 1:1
    /// action mirred egress redirect dev <ifb>`.
    pub fn add_redirect_filter(&self, index: u32, ifb_index: u32) -> Result<()> {
        self.ack(
            &format!("add filter: redirect link #{index} to #{ifb_index}"),
            RouteNetlinkMessage::NewTrafficFilter(redirect_filter_message(index, ifb_index)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Filters attached to `parent` (e.g. [`HANDLE_INGRESS`]) of link `index`.
    pub fn filters(&self, index: u32, parent: u32) -> Result<Vec<Filter>> {
        let mut req = TcMessage::with_index(index as i32);
        req.header.parent = parent.into();
        let replies = self.dump(
            &format!("list filters of link #{index}"),
            RouteNetlinkMessage::GetTrafficFilter(req),
        )?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewTrafficFilter(f) => Some(parse_filter(f)),
                _ => None,
            })
            .collect())
    }
}

pub(crate) fn tbf_qdisc_message(index: u32, tbf: &Tbf) -> TcMessage {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.handle = HANDLE_TBF.into();
    msg.header.parent = HANDLE_ROOT.into();
    msg.attributes = vec![
        TcAttribute::Kind("tbf".into()),
        TcAttribute::Options(tbf::encode(tbf)),
    ];
    msg
}

pub(crate) fn ingress_qdisc_message(index: u32) -> TcMessage {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.handle = HANDLE_INGRESS.into();
    msg.header.parent = HANDLE_INGRESS_PARENT.into();
    msg.attributes = vec![TcAttribute::Kind("ingress".into())];
    msg
}

pub(crate) fn redirect_filter_message(index: u32, ifb_index: u32) -> TcMessage {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.parent = HANDLE_INGRESS.into();
    // tcm_info = TC_H_MAKE(prio << 16, protocol); the protocol is in network byte order.
    msg.header.info = (1u32 << 16) | u32::from(ETH_P_ALL.to_be());

    let mut selector = TcU32Selector::default();
    selector.flags = TcU32SelectorFlags::Terminal;
    selector.nkeys = 1;
    // One key with mask 0 matches every packet.
    selector.keys = vec![TcU32Key::default()];

    let mut mirred = TcMirror::default();
    mirred.generic.action = TcActionType::Stolen;
    mirred.eaction = TcMirrorActionType::EgressRedir;
    mirred.ifindex = ifb_index;
    let mut action = TcAction::default();
    action.attributes = vec![
        TcActionAttribute::Kind("mirred".into()),
        TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
            mirred,
        ))]),
    ];

    msg.attributes = vec![
        TcAttribute::Kind("u32".into()),
        TcAttribute::Options(vec![
            TcOption::U32(TcFilterU32Option::ClassId(TcHandle { major: 1, minor: 1 })),
            TcOption::U32(TcFilterU32Option::Selector(selector)),
            TcOption::U32(TcFilterU32Option::Action(vec![action])),
        ]),
    ];
    msg
}

fn parse_qdisc(msg: &TcMessage) -> Qdisc {
    let mut kind = String::new();
    let mut options: &[TcOption] = &[];
    for attr in &msg.attributes {
        match attr {
            TcAttribute::Kind(k) => kind = k.clone(),
            TcAttribute::Options(o) => options = o,
            _ => {}
        }
    }
    let tbf = if kind == "tbf" {
        tbf::decode(options)
    } else {
        None
    };
    Qdisc {
        index: msg.header.index as u32,
        handle: msg.header.handle.into(),
        parent: msg.header.parent.into(),
        kind,
        tbf,
    }
}

fn parse_filter(msg: &TcMessage) -> Filter {
    let mut f = Filter {
        index: msg.header.index as u32,
        parent: msg.header.parent.into(),
        handle: msg.header.handle.into(),
        prio: (msg.header.info >> 16) as u16,
        protocol: u16::from_be(msg.header.info as u16),
        kind: String::new(),
        classid: None,
        redirect_to: None,
    };
    for attr in &msg.attributes {
        match attr {
            TcAttribute::Kind(k) => f.kind = k.clone(),
            TcAttribute::Options(opts) => {
                for opt in opts {
                    match opt {
                        TcOption::U32(TcFilterU32Option::ClassId(c)) => {
                            f.classid = Some((*c).into())
                        }
                        TcOption::U32(TcFilterU32Option::Action(actions)) => {
                            f.redirect_to = f.redirect_to.or(redirect_target(actions))
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    f
}

fn redirect_target(actions: &[TcAction]) -> Option<u32> {
    actions
        .iter()
        .flat_map(|a| &a.attributes)
        .find_map(|attr| match attr {
            TcActionAttribute::Options(opts) => opts.iter().find_map(|o| match o {
                TcActionOption::Mirror(TcActionMirrorOption::Parms(p))
                    if p.eaction == TcMirrorActionType::EgressRedir =>
                {
                    Some(p.ifindex)
                }
                _ => None,
            }),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{Emitable, Parseable};

    fn round_trip(msg: &TcMessage) -> TcMessage {
        let mut b = vec![0u8; msg.buffer_len()];
        msg.emit(&mut b);
        TcMessage::parse(&b[..]).unwrap()
    }

    #[test]
    fn tbf_qdisc_header_and_round_trip() {
        let t = Tbf {
            rate: 1_000_000,
            buffer: 156_250,
            limit: 35_000,
        };
        let msg = tbf_qdisc_message(4, &t);
        let mut b = vec![0u8; msg.buffer_len()];
        msg.emit(&mut b);
        // tcmsg: family(1) pad(3) ifindex(4) handle(4) parent(4) info(4)
        assert_eq!(i32::from_ne_bytes(b[4..8].try_into().unwrap()), 4);
        assert_eq!(
            u32::from_ne_bytes(b[8..12].try_into().unwrap()),
            0x0001_0000
        );
        assert_eq!(
            u32::from_ne_bytes(b[12..16].try_into().unwrap()),
            0xFFFF_FFFF
        );
        let q = parse_qdisc(&round_trip(&msg));
        assert_eq!(q.kind, "tbf");
        assert_eq!(q.tbf, Some(t));
    }

    #[test]
    fn ingress_qdisc_handles() {
        let msg = ingress_qdisc_message(9);
        assert_eq!(u32::from(msg.header.handle), 0xFFFF_0000);
        assert_eq!(u32::from(msg.header.parent), 0xFFFF_FFF1);
    }

    #[test]
    fn redirect_filter_protocol_is_network_order_all() {
        let msg = redirect_filter_message(4, 7);
        let mut b = vec![0u8; msg.buffer_len()];
        msg.emit(&mut b);
        // tcm_info: high 16 bits = prio 1; low 16 bits = htons(ETH_P_ALL), i.e. bytes 00 03.
        // (Sending 0x0003 unswapped would show up as `protocol [768]` and match nothing.)
        let info = u32::from_ne_bytes(b[16..20].try_into().unwrap());
        assert_eq!(info >> 16, 1);
        assert_eq!((info as u16).to_ne_bytes(), [0, 3]);
        let f = parse_filter(&round_trip(&msg));
        assert_eq!(f.kind, "u32");
        assert_eq!(f.prio, 1);
        assert_eq!(f.protocol, ETH_P_ALL);
        assert_eq!(f.parent, HANDLE_INGRESS);
        assert_eq!(f.classid, Some(0x0001_0001));
        assert_eq!(f.redirect_to, Some(7));
    }
}
