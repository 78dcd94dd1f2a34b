//! Calico's `cni.projectcalico.org/*` annotations: names, and parsing with the rules (and
//! where possible the words) Calico uses. Every error names the annotation.

use crate::error::Error;
use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

pub const IPV4_POOLS: &str = "cni.projectcalico.org/ipv4pools";
pub const IPV6_POOLS: &str = "cni.projectcalico.org/ipv6pools";
pub const IP_FAMILIES: &str = "cni.projectcalico.org/ipFamilies";
pub const IP_ADDRS: &str = "cni.projectcalico.org/ipAddrs";
pub const IP_ADDRS_NO_IPAM: &str = "cni.projectcalico.org/ipAddrsNoIpam";
pub const FLOATING_IPS: &str = "cni.projectcalico.org/floatingIPs";
pub const HW_ADDR: &str = "cni.projectcalico.org/hwAddr";
pub const ALLOWED_SOURCE_PREFIXES: &str = "cni.projectcalico.org/allowedSourcePrefixes";
/// Written by the plugin after ADD (KDD): first pod IP in CIDR form, all of them, and the
/// sandbox that owns them.
pub const POD_IP: &str = "cni.projectcalico.org/podIP";
pub const POD_IPS: &str = "cni.projectcalico.org/podIPs";
pub const CONTAINER_ID: &str = "cni.projectcalico.org/containerID";

/// `ipFamilies`: which families IPAM should assign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpFamilies {
    pub ipv4: bool,
    pub ipv6: bool,
}

/// The annotations that change what the CNI plugin does, parsed. Absent or empty-string
/// annotations are `None`/empty, as Calico treats them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations {
    /// Pool names or CIDRs; the pod's value wins over the namespace's.
    pub ipv4_pools: Option<Vec<String>>,
    pub ipv6_pools: Option<Vec<String>>,
    pub ip_families: Option<IpFamilies>,
    /// Specific addresses to request from IPAM (at most one per family).
    pub ip_addrs: Vec<IpAddr>,
    /// Addresses to use without IPAM (at most one per family).
    pub ip_addrs_no_ipam: Vec<IpAddr>,
    /// External addresses NATed to the pod's addresses (Felix programs them).
    pub floating_ips: Vec<IpAddr>,
    /// MAC for the pod's interface, as written (the dataplane parses it).
    pub hw_addr: Option<String>,
    /// Source prefixes the pod may send from besides its own addresses (network form).
    pub allowed_source_prefixes: Vec<IpNetwork>,
}

fn invalid(annotation: &'static str, reason: impl Into<String>) -> Error {
    Error::Annotation {
        annotation,
        reason: reason.into(),
    }
}

fn get<'a>(map: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    map.get(key)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

fn json_strings(annotation: &'static str, raw: &str) -> Result<Vec<String>, Error> {
    serde_json::from_str::<Vec<String>>(raw)
        .map_err(|e| invalid(annotation, format!("failed to parse '{raw}' as JSON: {e}")))
}

/// Pod value if set, else the namespace's.
fn pod_over_namespace<'a>(
    pod: &'a BTreeMap<String, String>,
    namespace: &'a BTreeMap<String, String>,
    key: &str,
) -> Option<&'a str> {
    get(pod, key).or_else(|| get(namespace, key))
}

fn ips(annotation: &'static str, raw: &str, one_per_family: bool) -> Result<Vec<IpAddr>, Error> {
    let list = json_strings(annotation, raw)?;
    if list.is_empty() {
        return Err(invalid(
            annotation,
            format!("annotation \"{annotation}\" specified but empty"),
        ));
    }
    let parsed: Vec<IpAddr> = list
        .iter()
        .map(|s| {
            s.trim()
                .parse::<IpAddr>()
                .map_err(|_| invalid(annotation, format!("invalid IP format: {s}")))
        })
        .collect::<Result<_, _>>()?;
    if one_per_family {
        for (v4, family) in [(true, "IPv4"), (false, "IPv6")] {
            if parsed.iter().filter(|ip| ip.is_ipv4() == v4).count() > 1 {
                return Err(invalid(
                    annotation,
                    format!("cannot have more than one {family} address for \"{annotation}\" annotation"),
                ));
            }
        }
    }
    Ok(parsed)
}

/// CIDRs or plain addresses (host prefixes), normalised to their network like Calico's
/// `ParseCIDROrIP`.
fn prefixes(raw: &str) -> Result<Vec<IpNetwork>, Error> {
    let a = ALLOWED_SOURCE_PREFIXES;
    json_strings(a, raw)?
        .iter()
        .map(|s| {
            // ipnetwork reads a bare address as a full-length prefix.
            let s = s.trim();
            let net: IpNetwork = s
                .parse()
                .map_err(|_| invalid(a, format!("invalid CIDR or IP: {s}")))?;
            IpNetwork::new(net.network(), net.prefix())
                .map_err(|e| invalid(a, format!("invalid CIDR or IP: {s}: {e}")))
        })
        .collect()
}

fn families(raw: &str) -> Result<IpFamilies, Error> {
    let list = json_strings(IP_FAMILIES, raw)?;
    let mut f = IpFamilies {
        ipv4: false,
        ipv6: false,
    };
    for s in &list {
        match s.as_str() {
            "IPv4" => f.ipv4 = true,
            "IPv6" => f.ipv6 = true,
            other => {
                return Err(invalid(
                    IP_FAMILIES,
                    format!("unknown IP family {other:?} (expected \"IPv4\" or \"IPv6\")"),
                ))
            }
        }
    }
    if !f.ipv4 && !f.ipv6 {
        return Err(invalid(IP_FAMILIES, "no IP family requested"));
    }
    Ok(f)
}

impl Annotations {
    /// Parses the pod's and its namespace's annotations. The pool and family annotations
    /// only mean something to calico-ipam, and Calico reads them only then (`calico_ipam`):
    /// a bad value must not break pods on other IPAM plugins.
    pub fn parse(
        pod: &BTreeMap<String, String>,
        namespace: &BTreeMap<String, String>,
        calico_ipam: bool,
    ) -> Result<Annotations, Error> {
        let read = |key: &str| pod_over_namespace(pod, namespace, key).filter(|_| calico_ipam);
        let pools = |key: &'static str| read(key).map(|raw| json_strings(key, raw)).transpose();
        let ip_addrs = get(pod, IP_ADDRS);
        let no_ipam = get(pod, IP_ADDRS_NO_IPAM);
        if ip_addrs.is_some() && no_ipam.is_some() {
            return Err(invalid(
                IP_ADDRS,
                "can't have both annotations: 'ipAddrs' and 'ipAddrsNoIpam' in use at the same time",
            ));
        }
        Ok(Annotations {
            ipv4_pools: pools(IPV4_POOLS)?,
            ipv6_pools: pools(IPV6_POOLS)?,
            ip_families: read(IP_FAMILIES).map(families).transpose()?,
            ip_addrs: ip_addrs
                .map(|raw| ips(IP_ADDRS, raw, true))
                .transpose()?
                .unwrap_or_default(),
            ip_addrs_no_ipam: no_ipam
                .map(|raw| ips(IP_ADDRS_NO_IPAM, raw, true))
                .transpose()?
                .unwrap_or_default(),
            floating_ips: get(pod, FLOATING_IPS)
                .map(|raw| ips(FLOATING_IPS, raw, false))
                .transpose()?
                .unwrap_or_default(),
            hw_addr: get(pod, HW_ADDR).map(|s| s.trim().to_string()),
            allowed_source_prefixes: get(pod, ALLOWED_SOURCE_PREFIXES)
                .map(prefixes)
                .transpose()?
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err(pod: &[(&str, &str)]) -> String {
        Annotations::parse(&map(pod), &map(&[]), true)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn allowed_source_prefixes_are_normalised() {
        let a = Annotations::parse(
            &map(&[(
                ALLOWED_SOURCE_PREFIXES,
                r#"["10.1.2.3/16", "192.0.2.7", "fd00::1/64"]"#,
            )]),
            &map(&[]),
            false,
        )
        .unwrap();
        let want: Vec<IpNetwork> = ["10.1.0.0/16", "192.0.2.7/32", "fd00::/64"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(a.allowed_source_prefixes, want);
        let e = err(&[(ALLOWED_SOURCE_PREFIXES, r#"["nope"]"#)]);
        assert!(
            e.contains("allowedSourcePrefixes") && e.contains("nope"),
            "{e}"
        );
    }

    #[test]
    fn none_is_default() {
        let a =
            Annotations::parse(&map(&[("other", "x"), (HW_ADDR, "")]), &map(&[]), true).unwrap();
        assert_eq!(a, Annotations::default());
    }

    #[test]
    fn pod_pools_win_over_namespace() {
        let ns = map(&[
            (IPV4_POOLS, r#"["ns-pool"]"#),
            (IPV6_POOLS, r#"["fd00::/64"]"#),
        ]);
        let a = Annotations::parse(
            &map(&[(IPV4_POOLS, r#"["pod-pool","10.1.0.0/16"]"#)]),
            &ns,
            true,
        )
        .unwrap();
        assert_eq!(a.ipv4_pools.unwrap(), vec!["pod-pool", "10.1.0.0/16"]);
        assert_eq!(
            a.ipv6_pools.unwrap(),
            vec!["fd00::/64"],
            "namespace value used"
        );
        let a = Annotations::parse(&map(&[]), &ns, true).unwrap();
        assert_eq!(a.ipv4_pools.unwrap(), vec!["ns-pool"]);
        let other_ipam = Annotations::parse(&map(&[(IPV4_POOLS, "not json")]), &ns, false).unwrap();
        assert_eq!(other_ipam.ipv4_pools, None, "ignored unless calico-ipam");
    }

    #[test]
    fn ip_addrs_and_limits() {
        let a = Annotations::parse(
            &map(&[
                (IP_ADDRS, r#"["10.0.0.5"," fd00::5"]"#),
                (HW_ADDR, "0a:58:0a:00:00:05"),
            ]),
            &map(&[]),
            false,
        )
        .unwrap();
        assert_eq!(a.ip_addrs.len(), 2);
        assert_eq!(a.hw_addr.as_deref(), Some("0a:58:0a:00:00:05"));
        let e = err(&[(IP_ADDRS, r#"["10.0.0.5","10.0.0.6"]"#)]);
        assert!(
            e.contains(IP_ADDRS) && e.contains("more than one IPv4"),
            "{e}"
        );
        let e = err(&[(IP_ADDRS, r#"["10.0.0.300"]"#)]);
        assert!(e.contains("invalid IP format: 10.0.0.300"), "{e}");
        let e = err(&[(IP_ADDRS, "10.0.0.5")]);
        assert!(e.contains(IP_ADDRS) && e.contains("as JSON"), "{e}");
        let e = err(&[(IP_ADDRS_NO_IPAM, "[]")]);
        assert!(e.contains("specified but empty"), "{e}");
        let e = err(&[
            (IP_ADDRS, r#"["10.0.0.5"]"#),
            (IP_ADDRS_NO_IPAM, r#"["10.0.0.6"]"#),
        ]);
        assert!(e.contains("can't have both"), "{e}");
    }

    #[test]
    fn floating_ips_allow_several_per_family() {
        let a = Annotations::parse(
            &map(&[(FLOATING_IPS, r#"["1.2.3.4","1.2.3.5"]"#)]),
            &map(&[]),
            false,
        )
        .unwrap();
        assert_eq!(a.floating_ips.len(), 2);
        assert!(err(&[(FLOATING_IPS, r#"["nope"]"#)]).contains(FLOATING_IPS));
    }

    #[test]
    fn families() {
        let a = Annotations::parse(&map(&[(IP_FAMILIES, r#"["IPv6"]"#)]), &map(&[]), true).unwrap();
        assert_eq!(
            a.ip_families,
            Some(IpFamilies {
                ipv4: false,
                ipv6: true
            })
        );
        assert!(err(&[(IP_FAMILIES, r#"["IPv5"]"#)]).contains("IPv5"));
    }

    #[test]
    fn bad_pool_json_names_the_annotation() {
        let e =
            Annotations::parse(&map(&[]), &map(&[(IPV6_POOLS, "fd00::/64")]), true).unwrap_err();
        assert!(e.to_string().contains(IPV6_POOLS), "{e}");
    }
}
