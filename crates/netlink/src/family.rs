use std::net::IpAddr;

use netlink_packet_route::AddressFamily;

/// IP version selector for dumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    pub fn of(ip: &IpAddr) -> IpFamily {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }
}

/// Netlink family for an optional selector (None = all families).
pub(crate) fn address_family(family: Option<IpFamily>) -> AddressFamily {
    match family {
        None => AddressFamily::Unspec,
        Some(IpFamily::V4) => AddressFamily::Inet,
        Some(IpFamily::V6) => AddressFamily::Inet6,
    }
}
