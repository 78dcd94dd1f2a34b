//! Results: one version-neutral [`CniResult`], read from and written as every spec version.
//!
//! Reading accepts any family (0.1/0.2 `ip4`/`ip6`, 0.3/0.4, 1.x); writing renders the
//! requested family, which is how "conversion in every direction" falls out: parse, then print.

use crate::error::{CniError, ErrorCode};
use crate::version::{Family, Version};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::net::IpAddr;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for container-side interfaces; absent for host-side ones.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_is_none"
    )]
    pub sandbox: Option<String>,
    #[serde(
        default,
        rename = "socketPath",
        skip_serializing_if = "Option::is_none"
    )]
    pub socket_path: Option<String>,
    #[serde(default, rename = "pciID", skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// Address with the prefix of its subnet (host bits kept), e.g. `10.0.0.5/24`.
    pub address: IpNetwork,
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`; IPAM plugins leave it out.
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

impl Route {
    pub fn new(dst: IpNetwork, gw: Option<IpAddr>) -> Route {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        *self == Dns::default()
    }
}

/// A result independent of the spec version it came from or will be printed as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

fn empty_is_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

fn decode_err(what: &str, e: impl std::fmt::Display) -> CniError {
    CniError::new(ErrorCode::Decode, format!("failed to parse {what}: {e}"))
}

/// An `ips[]` entry as written in 0.3+ (version only in the 0.3/0.4 family).
#[derive(Serialize, Deserialize)]
struct IpDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    address: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interface: Option<i64>,
}

/// An `ip4`/`ip6` object of the 0.1/0.2 family.
#[derive(Serialize, Deserialize)]
struct LegacyIp {
    ip: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<LegacyRoute>,
}

#[derive(Serialize, Deserialize)]
struct LegacyRoute {
    dst: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gw: Option<IpAddr>,
}

fn field<T: serde::de::DeserializeOwned + Default>(
    obj: &Map<String, Value>,
    key: &str,
) -> Result<T, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => T::deserialize(v).map_err(|e| decode_err(&format!("result field {key:?}"), e)),
    }
}

/// `prevResult.ips[ip].interface` points past the `interfaces` list (code 7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid network config field \"prevResult.ips[{ip}].interface\": index {index} is out of \
     range (prevResult lists {interfaces} interfaces)"
)]
pub struct InterfaceIndexError {
    /// Position in `ips`.
    pub ip: usize,
    /// The out-of-range interface index.
    pub index: usize,
    /// How many interfaces the result lists.
    pub interfaces: usize,
}

impl crate::error::CniCode for InterfaceIndexError {
    fn cni_code(&self) -> ErrorCode {
        ErrorCode::InvalidConfig
    }
}

impl CniResult {
    /// Reads a result document. `fallback_version` labels documents without `cniVersion`
    /// (a prevResult takes its config's version).
    pub fn from_value(v: &Value, fallback_version: &str) -> Result<CniResult, CniError> {
        let obj = v
            .as_object()
            .ok_or_else(|| decode_err("result", "not a JSON object"))?;
        let version_str = match obj.get("cniVersion").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => s,
            _ => fallback_version,
        };
        let version = Version::parse(version_str)
            .ok_or_else(|| decode_err("result", format!("invalid cniVersion {version_str:?}")))?;
        let dns: Dns = field(obj, "dns")?;
        if version.family() == Family::Legacy {
            let mut out = CniResult {
                dns,
                ..Default::default()
            };
            for key in ["ip4", "ip6"] {
                if let Some(ip) = field::<Option<LegacyIp>>(obj, key)? {
                    out.ips.push(IpConfig {
                        address: ip.ip,
                        gateway: ip.gateway,
                        interface: None,
                    });
                    out.routes
                        .extend(ip.routes.into_iter().map(|r| Route::new(r.dst, r.gw)));
                }
            }
            return Ok(out);
        }
        // 0.3.0 briefly spelled the list `ip`; accept it.
        let ip_key = if obj.contains_key("ips") { "ips" } else { "ip" };
        let ips: Vec<IpDoc> = field(obj, ip_key)?;
        Ok(CniResult {
            interfaces: field(obj, "interfaces")?,
            ips: ips
                .into_iter()
                .map(|d| IpConfig {
                    address: d.address,
                    gateway: d.gateway,
                    interface: d.interface.and_then(|i| usize::try_from(i).ok()),
                })
                .collect(),
            routes: field(obj, "routes")?,
            dns,
        })
    }

    pub fn from_slice(bytes: &[u8], fallback_version: &str) -> Result<CniResult, CniError> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| decode_err("result", e))?;
        CniResult::from_value(&v, fallback_version)
    }

    /// Renders the result as the given spec version.
    pub fn to_value(&self, version: &str) -> Result<Value, CniError> {
        let parsed = Version::parse(version).ok_or_else(|| {
            CniError::new(ErrorCode::Decode, format!("invalid cniVersion {version:?}"))
        })?;
        let dns = serde_json::to_value(&self.dns).expect("dns serialises");
        match parsed.family() {
            Family::Legacy => self.to_legacy(version, dns),
            family => {
                let mut doc = Map::new();
                doc.insert("cniVersion".into(), json!(version));
                let interfaces: Vec<Value> = self
                    .interfaces
                    .iter()
                    .map(|i| {
                        let mut i = i.clone();
                        if family == Family::V04 {
                            i.mtu = None;
                            i.socket_path = None;
                            i.pci_id = None;
                        }
                        serde_json::to_value(i).expect("interface serialises")
                    })
                    .collect();
                if !interfaces.is_empty() {
                    doc.insert("interfaces".into(), Value::Array(interfaces));
                }
                let ips: Vec<Value> = self
                    .ips
                    .iter()
                    .map(|ip| {
                        let d = IpDoc {
                            version: (family == Family::V04)
                                .then(|| if ip.address.is_ipv4() { "4" } else { "6" }.to_string()),
                            address: ip.address,
                            gateway: ip.gateway,
                            interface: ip.interface.map(|i| i as i64),
                        };
                        serde_json::to_value(d).expect("ip serialises")
                    })
                    .collect();
                if !ips.is_empty() {
                    doc.insert("ips".into(), Value::Array(ips));
                }
                if !self.routes.is_empty() {
                    doc.insert(
                        "routes".into(),
                        serde_json::to_value(&self.routes).expect("routes serialise"),
                    );
                }
                // 0.3/0.4 always print dns; 1.x omits it when empty.
                if family == Family::V04 || !self.dns.is_empty() {
                    doc.insert("dns".into(), dns);
                }
                Ok(Value::Object(doc))
            }
        }
    }

    fn to_legacy(&self, version: &str, dns: Value) -> Result<Value, CniError> {
        let first = |v4: bool| self.ips.iter().find(|ip| ip.address.is_ipv4() == v4);
        if first(true).is_none() && first(false).is_none() {
            return Err(CniError::new(
                ErrorCode::IncompatibleVersion,
                format!("cannot convert result to version {version}: no valid IP addresses"),
            ));
        }
        let mut doc = Map::new();
        doc.insert("cniVersion".into(), json!(version));
        for (key, v4) in [("ip4", true), ("ip6", false)] {
            if let Some(ip) = first(v4) {
                let legacy = LegacyIp {
                    ip: ip.address,
                    gateway: ip.gateway,
                    routes: self
                        .routes
                        .iter()
                        .filter(|r| r.dst.is_ipv4() == v4)
                        .map(|r| LegacyRoute {
                            dst: r.dst,
                            gw: r.gw,
                        })
                        .collect(),
                };
                doc.insert(
                    key.into(),
                    serde_json::to_value(legacy).expect("ip serialises"),
                );
            }
        }
        doc.insert("dns".into(), dns);
        Ok(Value::Object(doc))
    }

    /// Refuses an `ips[i].interface` index that points past `interfaces`: such a result cannot
    /// say which interface the address is on, and guessing could act on another interface. The
    /// message names the field (`prevResult.ips[<i>].interface`); callers report it as code 7.
    pub fn check_interface_indexes(&self) -> Result<(), InterfaceIndexError> {
        let interfaces = self.interfaces.len();
        match self.ips.iter().enumerate().find_map(|(ip, c)| {
            c.interface
                .filter(|x| *x >= interfaces)
                .map(|index| (ip, index))
        }) {
            Some((ip, index)) => Err(InterfaceIndexError {
                ip,
                index,
                interfaces,
            }),
            None => Ok(()),
        }
    }

    /// Index of the first interface with this name that has no sandbox (host side).
    pub fn host_interface(&self, name: &str) -> Option<usize> {
        self.interfaces
            .iter()
            .position(|i| i.name == name && i.sandbox.is_none())
    }
}

/// Why an address cannot be given to a pod, if it cannot.
fn unusable(ip: IpAddr) -> Option<&'static str> {
    let link_local = match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    };
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if link_local {
        Some("link-local")
    } else if matches!(ip, IpAddr::V4(a) if a.is_broadcast()) {
        Some("broadcast")
    } else {
        None
    }
}

impl CniResult {
    /// Sanity check of what an IPAM plugin returned, before a plugin wires any of it: every
    /// address usable by a pod (not loopback, multicast, unspecified, link-local or broadcast),
    /// every gateway of its address's family, every route's gateway of its destination's family.
    pub fn validate_ipam(&self, plugin: &str) -> Result<(), CniError> {
        let bad = |what: String| {
            CniError::generic(format!(
                "IPAM plugin {plugin:?} returned an unusable result: {what}"
            ))
        };
        if self.ips.is_empty() {
            return Err(bad("no IP addresses".to_string()));
        }
        for ipc in &self.ips {
            let ip = ipc.address.ip();
            if let Some(why) = unusable(ip) {
                return Err(bad(format!("address {} is {why}", ipc.address)));
            }
            if let Some(gw) = ipc.gateway {
                if gw.is_ipv4() != ip.is_ipv4() {
                    return Err(bad(format!("gateway {gw} is not of the family of {ip}")));
                }
            }
        }
        for r in &self.routes {
            if let Some(gw) = r.gw {
                if gw.is_ipv4() != r.dst.is_ipv4() {
                    return Err(bad(format!(
                        "route to {} has gateway {gw} of the other family",
                        r.dst
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipam_results_are_sanity_checked() {
        let r = |ips: &[&str]| CniResult {
            ips: ips
                .iter()
                .map(|a| IpConfig {
                    address: a.parse().unwrap(),
                    gateway: None,
                    interface: None,
                })
                .collect(),
            ..Default::default()
        };
        r(&["10.0.0.2/24", "fd00::2/64"])
            .validate_ipam("x")
            .unwrap();
        for bad in [
            "127.0.0.1/8",
            "::1/128",
            "224.0.0.1/32",
            "ff02::1/128",
            "0.0.0.0/0",
            "::/0",
            "169.254.3.4/16",
            "fe80::1/64",
            "255.255.255.255/32",
        ] {
            let e = r(&[bad]).validate_ipam("x").unwrap_err();
            assert!(e.msg.contains(bad), "{}", e.msg);
        }
        assert!(r(&[]).validate_ipam("x").is_err());
        let mut mixed = r(&["10.0.0.2/24"]);
        mixed.ips[0].gateway = Some("fd00::1".parse().unwrap());
        assert!(mixed.validate_ipam("x").is_err());
        let mut route = r(&["10.0.0.2/24"]);
        route.routes = vec![Route::new(
            "0.0.0.0/0".parse().unwrap(),
            Some("fd00::1".parse().unwrap()),
        )];
        assert!(route.validate_ipam("x").is_err());
    }

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "cali12345678901".into(),
                    mac: "ee:ee:ee:ee:ee:ee".into(),
                    mtu: Some(1440),
                    ..Default::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: "02:42:ac:11:00:02".into(),
                    mtu: Some(1440),
                    sandbox: Some("/run/netns/x".into()),
                    ..Default::default()
                },
            ],
            ips: vec![
                IpConfig {
                    address: "10.244.1.5/32".parse().unwrap(),
                    gateway: None,
                    interface: Some(1),
                },
                IpConfig {
                    address: "fd00::5/128".parse().unwrap(),
                    gateway: None,
                    interface: Some(1),
                },
            ],
            routes: vec![
                Route::new(
                    "0.0.0.0/0".parse().unwrap(),
                    Some("169.254.1.1".parse().unwrap()),
                ),
                Route {
                    mtu: Some(1400),
                    ..Route::new("::/0".parse().unwrap(), None)
                },
            ],
            dns: Dns::default(),
        }
    }

    #[test]
    fn renders_v1() {
        let v = sample().to_value("1.0.0").unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert!(v["ips"][0].get("version").is_none());
        assert_eq!(v["ips"][0]["interface"], 1);
        assert_eq!(v["interfaces"][0]["mtu"], 1440);
        assert!(v["interfaces"][0].get("sandbox").is_none());
        assert_eq!(v["interfaces"][1]["sandbox"], "/run/netns/x");
        assert_eq!(v["routes"][1]["mtu"], 1400);
        assert!(v.get("dns").is_none(), "empty dns omitted in 1.x");
    }

    #[test]
    fn renders_v04_family() {
        for ver in ["0.3.0", "0.3.1", "0.4.0"] {
            let v = sample().to_value(ver).unwrap();
            assert_eq!(v["cniVersion"], ver);
            assert_eq!(v["ips"][0]["version"], "4");
            assert_eq!(v["ips"][1]["version"], "6");
            assert!(
                v["interfaces"][0].get("mtu").is_none(),
                "mtu dropped below 1.0"
            );
            assert_eq!(v["dns"], json!({}), "dns always present in 0.3/0.4");
        }
    }

    #[test]
    fn renders_legacy() {
        let v = sample().to_value("0.2.0").unwrap();
        assert_eq!(
            v,
            json!({
                "cniVersion": "0.2.0",
                "ip4": {"ip": "10.244.1.5/32", "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]},
                "ip6": {"ip": "fd00::5/128", "routes": [{"dst": "::/0"}]},
                "dns": {}
            })
        );
    }

    #[test]
    fn legacy_needs_an_ip() {
        let mut r = sample();
        r.ips.clear();
        for ver in ["0.1.0", "0.2.0"] {
            let e = r.to_value(ver).unwrap_err();
            assert!(e.msg.contains("no valid IP addresses"), "{}", e.msg);
        }
        assert!(r.to_value("0.4.0").is_ok());
    }

    #[test]
    fn conversion_matrix_round_trips() {
        let versions = crate::version::ALL;
        let original = sample();
        for from in versions {
            let doc = original.to_value(from).unwrap();
            let parsed = CniResult::from_value(&doc, "").unwrap();
            for to in versions {
                let out = parsed.to_value(to).unwrap();
                let again = CniResult::from_value(&out, "").unwrap();
                let from_f = Version::parse(from).unwrap().family();
                let to_f = Version::parse(to).unwrap().family();
                // What survives: the narrowest of the two families.
                let mut expect = original.clone();
                if from_f == Family::Legacy || to_f == Family::Legacy {
                    expect.interfaces.clear();
                    for ip in &mut expect.ips {
                        ip.interface = None;
                    }
                    for r in &mut expect.routes {
                        *r = Route::new(r.dst, r.gw);
                    }
                } else if from_f == Family::V04 || to_f == Family::V04 {
                    for i in &mut expect.interfaces {
                        i.mtu = None;
                    }
                }
                assert_eq!(again, expect, "{from} -> {to}");
                assert_eq!(out["cniVersion"], *to);
            }
        }
    }

    #[test]
    fn legacy_takes_first_ip_per_family() {
        let mut r = sample();
        r.ips.insert(
            1,
            IpConfig {
                address: "10.9.9.9/32".parse().unwrap(),
                gateway: None,
                interface: None,
            },
        );
        let v = r.to_value("0.1.0").unwrap();
        assert_eq!(v["ip4"]["ip"], "10.244.1.5/32");
    }

    #[test]
    fn reads_ipam_style_and_missing_version() {
        let doc = json!({"ips":[{"address":"10.1.0.5/16","gateway":"10.1.0.1"}],"routes":[{"dst":"0.0.0.0/0"}]});
        let r = CniResult::from_value(&doc, "1.0.0").unwrap();
        assert_eq!(r.ips[0].gateway, Some("10.1.0.1".parse().unwrap()));
        assert!(r.interfaces.is_empty());
        // Without a version and with a legacy fallback, the document is read as 0.2.0.
        let legacy = json!({"ip4":{"ip":"10.1.0.5/16"}});
        let r = CniResult::from_value(&legacy, "0.2.0").unwrap();
        assert_eq!(r.ips.len(), 1);
    }

    #[test]
    fn interface_index_past_the_list_is_named() {
        let doc = json!({"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/x"}],
            "ips":[{"address":"10.0.0.2/24","interface":0},{"address":"10.0.0.3/24","interface":1}]});
        let r = CniResult::from_value(&doc, "1.0.0").unwrap();
        let e = r.check_interface_indexes().unwrap_err();
        assert!(e.to_string().contains("prevResult.ips[1].interface"), "{e}");
        assert_eq!(CniError::from(e).code, ErrorCode::InvalidConfig);
        let ok = json!({"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],
            "ips":[{"address":"10.0.0.2/24","interface":0},{"address":"10.0.0.3/24"}]});
        assert!(CniResult::from_value(&ok, "1.0.0")
            .unwrap()
            .check_interface_indexes()
            .is_ok());
    }

    #[test]
    fn reads_typo_ip_key_and_negative_interface() {
        let doc = json!({"cniVersion":"0.3.0","ip":[{"version":"4","address":"10.0.0.2/24","interface":-1}]});
        let r = CniResult::from_value(&doc, "").unwrap();
        assert_eq!(r.ips[0].interface, None);
    }

    #[test]
    fn empty_sandbox_is_host_side() {
        let doc = json!({"cniVersion":"1.0.0","interfaces":[{"name":"cali1","sandbox":""},{"name":"eth0","sandbox":"/x"}]});
        let r = CniResult::from_value(&doc, "").unwrap();
        assert_eq!(r.host_interface("cali1"), Some(0));
        assert_eq!(r.host_interface("eth0"), None);
    }

    #[test]
    fn bad_documents_are_decode_errors() {
        for bad in [
            json!([]),
            json!({"cniVersion":"x.y"}),
            json!({"cniVersion":"1.0.0","ips":[{"address":"nope"}]}),
        ] {
            assert_eq!(
                CniResult::from_value(&bad, "1.0.0").unwrap_err().code,
                ErrorCode::Decode
            );
        }
    }
}
