//! Port mappings as the runtime sends them (`runtimeConfig.portMappings`), validated.
//!
//! JSON keys are matched case-insensitively because containerd sends Go field names
//! (`HostPort`) while podman and cnitool send camelCase (`hostPort`).

use std::fmt;
use std::net::IpAddr;

use serde_json::Value;

use crate::error::PortmapError;

/// Address family of a rule set (iptables vs ip6tables, nft `ip` vs `ip6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The unspecified address of this family, used as the "any host IP" key part.
    pub fn unspecified(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        }
    }

    /// The nf_tables table family (`ip` / `ip6`) both backends' netlink paths address.
    pub fn nf_tables(self) -> nf_tables::Family {
        match self {
            Family::V4 => nf_tables::Family::Ipv4,
            Family::V6 => nf_tables::Family::Ipv6,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        })
    }
}

/// Transport protocol of a mapping. Upstream passes the string through verbatim; we accept the
/// three protocols runtimes actually send (any case) and reject the rest up front instead of
/// letting iptables/nft fail half-way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Sctp,
    Tcp,
    Udp,
}

impl Protocol {
    pub fn parse(s: &str) -> Result<Protocol, PortmapError> {
        match s.to_ascii_lowercase().as_str() {
            // Kubernetes defaults an empty protocol to TCP.
            "tcp" | "" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "sctp" => Ok(Protocol::Sctp),
            _ => Err(PortmapError::field(
                "protocol",
                format!("unsupported protocol {s:?} (expected tcp, udp or sctp)"),
            )),
        }
    }

    /// IPPROTO_* number (nftables `inet_proto`).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => libc::IPPROTO_TCP as u8,
            Protocol::Udp => libc::IPPROTO_UDP as u8,
            Protocol::Sctp => libc::IPPROTO_SCTP as u8,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validated `runtimeConfig.portMappings` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    /// `None` when absent or empty. An unspecified address (`0.0.0.0`, `::`) is kept: it restricts
    /// the mapping to that family without adding a destination match (upstream semantics).
    pub host_ip: Option<IpAddr>,
}

impl PortMapping {
    /// Whether this mapping applies to a container address of `family`.
    pub fn applies_to(&self, family: Family) -> bool {
        self.host_ip.is_none_or(|ip| Family::of(&ip) == family)
    }

    /// The host IP to match on, if any (unspecified addresses match everything).
    pub fn dest_ip(&self) -> Option<IpAddr> {
        self.host_ip.filter(|ip| !ip.is_unspecified())
    }

    /// Validates one mapping given as raw values (upstream's checks and messages; the container
    /// port is checked first, as upstream does).
    pub fn from_parts(
        host_port: i64,
        container_port: i64,
        protocol: &str,
        host_ip: &str,
    ) -> Result<PortMapping, PortmapError> {
        let port = |n: i64, what: &str, field: &str| -> Result<u16, PortmapError> {
            u16::try_from(n).ok().filter(|p| *p > 0).ok_or_else(|| {
                PortmapError::field(field, format!("Invalid {what} port number: {n}"))
            })
        };
        let container_port = port(container_port, "container", "containerPort")?;
        let host_port = port(host_port, "host", "hostPort")?;
        let protocol = Protocol::parse(protocol)?;
        let host_ip = if host_ip.is_empty() {
            None
        } else {
            Some(host_ip.parse::<IpAddr>().map_err(|_| {
                PortmapError::field("hostIP", format!("invalid IP address {host_ip:?}"))
            })?)
        };
        Ok(PortMapping {
            host_port,
            container_port,
            protocol,
            host_ip,
        })
    }

    /// Parses one JSON object with case-insensitive keys.
    pub fn from_json(v: &Value) -> Result<PortMapping, PortmapError> {
        let obj = v.as_object().ok_or_else(|| {
            PortmapError::field("", format!("port mapping must be an object, got {v}"))
        })?;
        let get = |key: &str| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        };
        let int = |key: &str| -> Result<i64, PortmapError> {
            match get(key) {
                None | Some(Value::Null) => Ok(0),
                Some(v) => v.as_i64().ok_or_else(|| {
                    PortmapError::field(key, format!("must be an integer, got {v}"))
                }),
            }
        };
        let string = |key: &str| -> Result<String, PortmapError> {
            match get(key) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(v) => Err(PortmapError::field(
                    key,
                    format!("must be a string, got {v}"),
                )),
            }
        };
        PortMapping::from_parts(
            int("hostPort")?,
            int("containerPort")?,
            &string("protocol")?,
            &string("hostIP")?,
        )
    }

    /// Parses `runtimeConfig.portMappings` (absent or null means no mappings).
    pub fn list_from_json(v: Option<&Value>) -> Result<Vec<PortMapping>, PortmapError> {
        match v {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    PortMapping::from_json(m).map_err(|e| e.within(&format!("portMappings[{i}]")))
                })
                .collect(),
            Some(other) => Err(PortmapError::field(
                "portMappings",
                format!("must be a list, got {other}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_case_insensitive() {
        let go = json!({"HostPort": 8080, "ContainerPort": 80, "Protocol": "TCP", "HostIP": ""});
        let camel = json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp"});
        let a = PortMapping::from_json(&go).unwrap();
        assert_eq!(a, PortMapping::from_json(&camel).unwrap());
        assert_eq!(a.host_port, 8080);
        assert_eq!(a.protocol, Protocol::Tcp);
        assert_eq!(a.host_ip, None);
    }

    #[test]
    fn invalid_ports_use_upstream_messages() {
        let e = PortMapping::from_json(&json!({"hostPort": 1, "containerPort": 0})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid network config field \"containerPort\": Invalid container port number: 0"
        );
        let e = PortMapping::from_json(&json!({"hostPort": -3, "containerPort": 80})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid network config field \"hostPort\": Invalid host port number: -3"
        );
        let e = PortMapping::list_from_json(Some(&json!([
            {"hostPort": 80, "containerPort": 80},
            {"hostPort": 70000, "containerPort": 80}
        ])))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid network config field \"portMappings[1].hostPort\": Invalid host port number: 70000"
        );
    }

    #[test]
    fn protocol_and_host_ip_validation() {
        let e =
            PortMapping::from_json(&json!({"hostPort": 1, "containerPort": 1, "protocol": "icmp"}))
                .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid network config field \"protocol\": unsupported protocol \"icmp\" (expected tcp, udp or sctp)"
        );
        let e = PortMapping::from_json(
            &json!({"hostPort": 1, "containerPort": 1, "hostIP": "not-an-ip"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("field \"hostIP\""), "{e}");
        let m = PortMapping::from_json(
            &json!({"hostPort": 1, "containerPort": 1, "protocol": "udp", "hostIP": "0.0.0.0"}),
        )
        .unwrap();
        assert!(m.applies_to(Family::V4));
        assert!(!m.applies_to(Family::V6));
        assert_eq!(m.dest_ip(), None);
        let m = PortMapping::from_json(
            &json!({"hostPort": 1, "containerPort": 1, "hostIP": "2001:db8::1"}),
        )
        .unwrap();
        assert!(!m.applies_to(Family::V4));
        assert_eq!(m.dest_ip(), Some("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn list_parsing() {
        assert!(PortMapping::list_from_json(None).unwrap().is_empty());
        assert!(PortMapping::list_from_json(Some(&Value::Null))
            .unwrap()
            .is_empty());
        assert!(PortMapping::list_from_json(Some(&json!({"a": 1}))).is_err());
        let l = PortMapping::list_from_json(Some(&json!([
            {"hostPort": 1, "containerPort": 2},
            {"hostPort": 3, "containerPort": 4, "protocol": "sctp"}
        ])))
        .unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].protocol, Protocol::Sctp);
    }
}
