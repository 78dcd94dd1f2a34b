//! Reading the network configuration host-local receives (the calling plugin's whole config):
//! `name`, `cniVersion`, `ipam` (`ranges`, legacy top-level range, `routes`, `dataDir`,
//! `resolvConf`), `runtimeConfig.ipRanges` / `runtimeConfig.ips`, `args.cni.ips`, and the
//! `IP=` key of `CNI_ARGS`.
//!
//! Keys are matched like Go's encoding/json: exact name first, else case-insensitively
//! (runtimes send arbitrary case). `null` counts as absent.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::ip::canonical;
use crate::range::{RangeSet, RangeSpec};
use crate::store::DEFAULT_DATA_DIR;

/// Everything host-local needs for one invocation, validated.
#[derive(Debug, Clone)]
pub struct IpamConfig {
    /// Network name: the data directory below `data_dir`.
    pub name: String,
    pub cni_version: String,
    /// Range sets in allocation order: `runtimeConfig.ipRanges`, legacy range, `ranges`.
    pub ranges: Vec<RangeSet>,
    /// Route objects copied into the result (each has a valid `dst`).
    pub routes: Vec<Value>,
    pub data_dir: PathBuf,
    pub resolv_conf: Option<PathBuf>,
    /// Requested addresses: `CNI_ARGS` `IP`, then `args.cni.ips`, then `runtimeConfig.ips`.
    pub requested_ips: Vec<IpAddr>,
}

/// Looks a key up the way Go's encoding/json matches struct fields.
pub(crate) fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key)
        .or_else(|| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Error::BadConfig(format!(
            "{key:?} must be a string, got {other}"
        ))),
    }
}

fn array_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a [Value]> {
    match field(obj, key) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(Error::BadConfig(format!(
            "{key:?} must be a list, got {other}"
        ))),
    }
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| Error::BadConfig(format!("{what} must be an object, got {v}")))
}

/// Plain address (Go `net.IP`); `""` means unset.
fn parse_ip(s: &str) -> Result<Option<IpAddr>> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<IpAddr>()
        .map(|ip| Some(canonical(ip)))
        .map_err(|_| Error::BadIp(s.to_string()))
}

/// A requested address: `ip` or `ip/prefix` (prefix validated, then ignored), like upstream's
/// `ip.IP` used for all three request sources.
fn parse_requested(s: &str) -> Result<IpAddr> {
    let ip = if s.contains('/') {
        s.parse::<IpNetwork>().ok().map(|n| n.ip())
    } else {
        s.parse::<IpAddr>().ok()
    };
    ip.map(canonical)
        .ok_or_else(|| Error::BadRequestedIp(s.to_string()))
}

fn parse_ip_field(obj: &Map<String, Value>, key: &str) -> Result<Option<IpAddr>> {
    str_field(obj, key)?.map_or(Ok(None), parse_ip)
}

fn is_pod_cidr_placeholder(s: &str) -> bool {
    s.eq_ignore_ascii_case("usePodCidr") || s.eq_ignore_ascii_case("usePodCidrIPv6")
}

fn parse_cidr(s: &str) -> Result<IpNetwork> {
    if is_pod_cidr_placeholder(s) {
        return Err(Error::PodCidrPlaceholder(s.to_string()));
    }
    // Go's ParseCIDR needs an explicit prefix; ipnetwork would default to a host route.
    if !s.contains('/') {
        return Err(Error::BadCidr(s.to_string()));
    }
    s.parse::<IpNetwork>()
        .map_err(|_| Error::BadCidr(s.to_string()))
}

/// One range object (`subnet`, `rangeStart`, `rangeEnd`, `gateway`).
fn parse_range(v: &Value) -> Result<RangeSpec> {
    let obj = object(v, "range")?;
    let subnet = str_field(obj, "subnet")?
        .ok_or_else(|| Error::BadConfig("range without \"subnet\"".into()))?;
    Ok(RangeSpec {
        subnet: parse_cidr(subnet)?,
        range_start: parse_ip_field(obj, "rangeStart")?,
        range_end: parse_ip_field(obj, "rangeEnd")?,
        gateway: parse_ip_field(obj, "gateway")?,
    })
}

/// A list of range sets (`ranges` or the `ipRanges` capability).
fn parse_range_sets(sets: &[Value]) -> Result<Vec<Vec<RangeSpec>>> {
    sets.iter()
        .map(|set| match set {
            Value::Array(ranges) => ranges.iter().map(parse_range).collect(),
            other => Err(Error::BadConfig(format!(
                "a range set must be a list, got {other}"
            ))),
        })
        .collect()
}

fn parse_route(v: &Value) -> Result<Value> {
    let obj = object(v, "route")?;
    let dst =
        str_field(obj, "dst")?.ok_or_else(|| Error::BadConfig("route without \"dst\"".into()))?;
    parse_cidr(dst)?;
    parse_ip_field(obj, "gw")?;
    Ok(v.clone())
}

/// `IP` (and `IgnoreUnknown`) from `CNI_ARGS`, with Go `LoadArgs` semantics: every pair must be
/// `K=V`; unknown keys are an error unless `IgnoreUnknown` is true. Empty segments (`a=b;`) are
/// skipped, as the `cni` crate's parser does, instead of failing like Go.
pub fn parse_cni_args_ip(args: &str) -> Result<Option<IpAddr>> {
    if args.is_empty() {
        return Ok(None);
    }
    let mut ip = None;
    let mut unknown = Vec::new();
    let mut ignore_unknown = false;
    for pair in args.split(';').filter(|p| !p.is_empty()) {
        let kv: Vec<&str> = pair.split('=').collect();
        let [k, v] = kv.as_slice() else {
            return Err(Error::ArgsInvalidPair(pair.to_string()));
        };
        let bad = |reason: String| Error::ArgsBadValue {
            pair: pair.to_string(),
            reason,
        };
        match *k {
            // An empty value means "not set", as Go's text unmarshalling of an empty IP.
            "IP" if v.is_empty() => ip = None,
            "IP" => ip = Some(parse_requested(v).map_err(|e| bad(e.to_string()))?),
            "IgnoreUnknown" => {
                ignore_unknown = match v.to_ascii_lowercase().as_str() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(bad(format!("boolean unmarshal error: invalid input {v}"))),
                }
            }
            _ => unknown.push(pair.to_string()),
        }
    }
    if !unknown.is_empty() && !ignore_unknown {
        return Err(Error::ArgsUnknown(unknown));
    }
    Ok(ip)
}

/// `true` when `v` is a valid version ≥ 0.3.0 (unparseable counts as older, like upstream).
fn supports_multiple_per_family(v: &str) -> bool {
    let parts: Vec<u64> = v.split('.').filter_map(|p| p.parse().ok()).collect();
    parts.len() == 3 && v.split('.').count() == 3 && (parts[0], parts[1]) >= (0, 3)
}

impl IpamConfig {
    /// Parses the plugin's stdin bytes.
    pub fn from_slice(stdin: &[u8], cni_args: &str) -> Result<IpamConfig> {
        let v: Value =
            serde_json::from_slice(stdin).map_err(|e| Error::BadConfig(e.to_string()))?;
        IpamConfig::from_value(&v, cni_args)
    }

    /// Parses an already decoded network configuration.
    pub fn from_value(netconf: &Value, cni_args: &str) -> Result<IpamConfig> {
        let top = object(netconf, "network configuration")?;
        let name = str_field(top, "name")?.unwrap_or("").to_string();
        let cni_version = str_field(top, "cniVersion")?.unwrap_or("").to_string();
        let ipam = field(top, "ipam").ok_or(Error::MissingIpam)?;
        let ipam = object(ipam, "ipam")?;
        let runtime = match field(top, "runtimeConfig") {
            Some(v) => Some(object(v, "runtimeConfig")?),
            None => None,
        };

        let mut requested: Vec<IpAddr> = Vec::new();
        if let Some(ip) = parse_cni_args_ip(cni_args)? {
            requested.push(ip);
        }
        let args_ips = match field(top, "args")
            .and_then(Value::as_object)
            .and_then(|a| field(a, "cni"))
        {
            Some(cni) => array_field(object(cni, "args.cni")?, "ips")?,
            None => &[],
        };
        let rt_ips = match runtime {
            Some(rt) => array_field(rt, "ips")?,
            None => &[],
        };
        for v in args_ips.iter().chain(rt_ips) {
            let s = v
                .as_str()
                .ok_or_else(|| Error::BadRequestedIp(v.to_string()))?;
            requested.push(parse_requested(s)?);
        }

        let mut specs: Vec<Vec<RangeSpec>> = Vec::new();
        if let Some(rt) = runtime {
            specs.extend(parse_range_sets(array_field(rt, "ipRanges")?)?);
        }
        // Legacy single range: only when the top-level subnet is set.
        if let Some(subnet) = str_field(ipam, "subnet")? {
            specs.push(vec![RangeSpec {
                subnet: parse_cidr(subnet)?,
                range_start: parse_ip_field(ipam, "rangeStart")?,
                range_end: parse_ip_field(ipam, "rangeEnd")?,
                gateway: parse_ip_field(ipam, "gateway")?,
            }]);
        }
        specs.extend(parse_range_sets(array_field(ipam, "ranges")?)?);
        if specs.is_empty() {
            return Err(Error::NoRanges);
        }

        let mut ranges = Vec::with_capacity(specs.len());
        for (index, set) in specs.iter().enumerate() {
            let set = RangeSet::canonicalize(set).map_err(|e| Error::InvalidRangeSet {
                index,
                source: Box::new(e),
            })?;
            ranges.push(set);
        }
        let v4 = ranges.iter().filter(|s| s.is_ipv4()).count();
        if (v4 > 1 || ranges.len() - v4 > 1) && !supports_multiple_per_family(&cni_version) {
            return Err(Error::TooManyPerFamily(cni_version));
        }
        for (i, a) in ranges.iter().enumerate() {
            if let Some(j) = ranges[i + 1..].iter().position(|b| a.overlaps(b)) {
                return Err(Error::RangeSetsOverlap(i, i + j + 1));
            }
        }

        let routes = array_field(ipam, "routes")?
            .iter()
            .map(parse_route)
            .collect::<Result<Vec<_>>>()?;
        let data_dir = str_field(ipam, "dataDir")?
            .filter(|d| !d.is_empty())
            .unwrap_or(DEFAULT_DATA_DIR);
        let resolv_conf = str_field(ipam, "resolvConf")?
            .filter(|r| !r.is_empty())
            .map(PathBuf::from);

        Ok(IpamConfig {
            name,
            cni_version,
            ranges,
            routes,
            data_dir: PathBuf::from(data_dir),
            resolv_conf,
            requested_ips: requested,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(v: Value) -> Result<IpamConfig> {
        IpamConfig::from_value(&v, "")
    }

    fn err(v: Value) -> String {
        load(v).unwrap_err().to_string()
    }

    #[test]
    fn range_set_order_and_defaults() {
        let c = IpamConfig::from_value(
            &json!({
                "cniVersion": "1.0.0", "name": "net",
                "ipam": {
                    "type": "host-local",
                    "subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "gateway": "10.1.0.254",
                    "ranges": [[{"subnet": "2001:db8::/64"}]],
                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "2001:db8::1"}],
                    "resolvConf": "/etc/resolv.conf"
                },
                "runtimeConfig": {"ipRanges": [[{"subnet": "10.2.0.0/24"}]]}
            }),
            "",
        )
        .unwrap();
        let sets: Vec<String> = c.ranges.iter().map(ToString::to_string).collect();
        assert_eq!(
            sets,
            [
                "10.2.0.1-10.2.0.254",
                "10.1.0.10-10.1.0.254",
                "2001:db8::1-2001:db8::ffff:ffff:ffff:ffff"
            ]
        );
        assert_eq!(
            c.ranges[1].ranges()[0].gateway,
            "10.1.0.254".parse::<IpAddr>().unwrap()
        );
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/cni/networks"));
        assert_eq!(c.resolv_conf, Some(PathBuf::from("/etc/resolv.conf")));
        assert_eq!(c.name, "net");
    }

    #[test]
    fn keys_match_case_insensitively_and_legacy_needs_subnet() {
        let c = load(json!({"name": "n", "cniVersion": "0.3.1", "IPAM": {
            "Ranges": [[{"Subnet": "10.0.0.0/24", "RANGESTART": "10.0.0.5"}]],
            "rangeStart": "10.9.9.9", "DataDir": "/tmp/x"}}))
        .unwrap();
        assert_eq!(c.ranges.len(), 1);
        assert_eq!(c.ranges[0].to_string(), "10.0.0.5-10.0.0.254");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn requested_ips_from_all_sources() {
        let c = IpamConfig::from_value(
            &json!({"name": "n", "cniVersion": "1.0.0",
                "ipam": {"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "2001:db8::/64"}]]},
                "args": {"cni": {"ips": ["10.0.0.7/24"]}},
                "runtimeConfig": {"ips": ["2001:db8::9/64"]}}),
            "IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.0.0.5",
        )
        .unwrap();
        let want: Vec<IpAddr> = ["10.0.0.5", "10.0.0.7", "2001:db8::9"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(c.requested_ips, want);
    }

    #[test]
    fn cni_args_follow_go_load_args() {
        assert_eq!(parse_cni_args_ip("").unwrap(), None);
        assert_eq!(
            parse_cni_args_ip("IP=10.0.0.1").unwrap(),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(parse_cni_args_ip("IP=").unwrap(), None);
        assert_eq!(
            parse_cni_args_ip("IP=10.0.0.7/24").unwrap(),
            Some("10.0.0.7".parse().unwrap())
        );
        assert!(parse_cni_args_ip("IP=10.0.0.7/99").is_err());
        assert_eq!(
            parse_cni_args_ip("K8S_POD_NAME=p;FOO=1")
                .unwrap_err()
                .to_string(),
            r#"ARGS: unknown args ["K8S_POD_NAME=p" "FOO=1"]"#
        );
        assert_eq!(
            parse_cni_args_ip("IP=1=2").unwrap_err().to_string(),
            r#"ARGS: invalid pair "IP=1=2""#
        );
        assert_eq!(
            parse_cni_args_ip("IP=1.2.3.4;").unwrap(),
            Some("1.2.3.4".parse().unwrap())
        );
        assert_eq!(
            parse_cni_args_ip("IP=nope").unwrap_err().to_string(),
            r#"ARGS: error parsing value of pair "IP=nope": invalid IP address nope"#
        );
        assert!(parse_cni_args_ip("IgnoreUnknown=maybe").is_err());
        assert!(parse_cni_args_ip("IgnoreUnknown=TRUE;X=y").is_ok());
    }

    #[test]
    fn config_errors_use_upstream_wording() {
        assert_eq!(err(json!({"name": "n"})), "IPAM config missing 'ipam' key");
        assert_eq!(
            err(json!({"name": "n", "ipam": null})),
            "IPAM config missing 'ipam' key"
        );
        assert_eq!(
            err(json!({"name": "n", "ipam": {"type": "host-local"}})),
            "no IP ranges specified"
        );
        assert_eq!(
            err(json!({"name": "n", "ipam": {"subnet": "10.0.0.0/31"}})),
            "invalid range set 0: Network 10.0.0.0/31 too small to allocate from"
        );
        assert_eq!(
            err(
                json!({"name": "n", "cniVersion": "0.3.1", "ipam": {"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/25"}]]}})
            ),
            "range set 0 overlaps with 1"
        );
        assert_eq!(
            err(
                json!({"name": "n", "cniVersion": "0.2.0", "ipam": {"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.1.0.0/24"}]]}})
            ),
            "CNI version 0.2.0 does not support more than 1 address per family"
        );
        assert_eq!(
            err(json!({"name": "n", "ipam": {"subnet": "10.0.0.0"}})),
            "invalid CIDR address: 10.0.0.0"
        );
        assert_eq!(
            err(
                json!({"name": "n", "ipam": {"ranges": [[{"subnet": "10.0.0.0/24", "gateway": "x"}]]}})
            ),
            "invalid IP address: x"
        );
        assert!(err(
            json!({"name": "n", "ipam": {"subnet": "10.0.0.0/24", "routes": [{"dst": "bad"}]}})
        )
        .contains("invalid CIDR address: bad"));
    }

    #[test]
    fn pod_cidr_placeholder_is_rejected_clearly() {
        for v in [
            json!({"name": "n", "ipam": {"type": "host-local", "subnet": "usePodCidr"}}),
            json!({"name": "n", "ipam": {"ranges": [[{"subnet": "usepodcidrIPv6"}]]}}),
        ] {
            let e = load(v).unwrap_err();
            assert!(matches!(e, Error::PodCidrPlaceholder(_)), "{e}");
            assert!(e.to_string().contains("calico"));
        }
    }
}
