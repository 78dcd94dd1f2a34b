//! Network configuration: the conflist a runtime reads, and the per-plugin object a plugin
//! receives on stdin (with `prevResult`, `runtimeConfig` and everything else it did not ask for).

// Go decodes config keys case-insensitively (exact match first); so do we.
use crate::caps::{self, ci_get as lookup, BandwidthEntry, CiObject, PortMapping};
use crate::env::is_valid_identifier;
use crate::error::{CniError, ErrorCode};
use crate::result::{CniResult, Dns};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// `runtimeConfig` as the runtime fills it for declared capabilities.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConfig {
    pub port_mappings: Vec<PortMapping>,
    pub bandwidth: Option<BandwidthEntry>,
    /// `ips` capability: `ip[/prefix]` strings.
    pub ips: Vec<String>,
    pub mac: Option<String>,
    /// The whole object, for capabilities not modelled here (e.g. `ipRanges`).
    pub raw: CiObject,
}

impl RuntimeConfig {
    fn from_value(v: &Value) -> Result<RuntimeConfig, CniError> {
        let Some(o) = CiObject::from_value(v) else {
            return Err(CniError::new(
                ErrorCode::Decode,
                "invalid runtimeConfig: not a JSON object",
            ));
        };
        let get = |k: &str| o.get(k).filter(|v| !v.is_null());
        Ok(RuntimeConfig {
            port_mappings: get("portMappings")
                .map(|v| caps::decode("portMappings", v))
                .transpose()?
                .unwrap_or_default(),
            bandwidth: get("bandwidth")
                .map(|v| caps::decode("bandwidth", v))
                .transpose()?,
            ips: get("ips")
                .map(|v| caps::decode("ips", v))
                .transpose()?
                .unwrap_or_default(),
            mac: get("mac").map(|v| caps::decode("mac", v)).transpose()?,
            raw: o,
        })
    }
}

/// One attachment in GC's `cni.dev/valid-attachments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// One plugin's configuration as received on stdin.
#[derive(Debug, Clone, Default)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub plugin_type: String,
    pub capabilities: BTreeMap<String, bool>,
    pub ipam: Option<Value>,
    pub dns: Option<Dns>,
    pub args: Option<Value>,
    pub runtime_config: RuntimeConfig,
    /// `prevResult`, labelled with the config's version when it has none.
    pub prev_result: Option<CniResult>,
    /// GC's valid attachments (`cni.dev/valid-attachments`, or the older `cni.dev/attachments`).
    pub valid_attachments: Option<Vec<Attachment>>,
    /// The whole object exactly as received.
    pub raw: Value,
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(ErrorCode::InvalidConfig, msg)
}

fn decode(msg: impl Into<String>) -> CniError {
    CniError::new(ErrorCode::Decode, msg)
}

fn opt_field<T: DeserializeOwned>(
    obj: &Map<String, Value>,
    key: &str,
) -> Result<Option<T>, CniError> {
    match lookup(obj, key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => T::deserialize(v)
            .map(Some)
            .map_err(|e| decode(format!("invalid field {key:?}: {e}"))),
    }
}

/// A numeric config field checked against `range`: `Ok(None)` when absent or null, a code-7
/// error naming the field when it is not an integer or out of range (so no caller multiplies
/// or adds an unchecked number). Accepts integers only; Go rejects `1.5` for an int field too.
pub fn bounded_u64(
    obj: &Value,
    field: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, CniError> {
    let v = match obj.as_object().and_then(|o| lookup(o, field)) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let out_of_range = || {
        invalid(format!(
            "{field} must be an integer from {} to {}, got {v}",
            range.start(),
            range.end()
        ))
    };
    match v.as_u64() {
        Some(n) if range.contains(&n) => Ok(Some(n)),
        Some(_) => Err(out_of_range()),
        None if v.is_number() => Err(out_of_range()),
        None => Err(invalid(format!("{field} must be an integer, got {v}"))),
    }
}

/// Network names follow the same rule as container ids.
pub fn validate_network_name(name: &str) -> Result<(), CniError> {
    if name.is_empty() {
        return Err(invalid("missing network name"));
    }
    if !is_valid_identifier(name) {
        return Err(invalid(format!(
            "invalid network name {name:?}: must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$"
        )));
    }
    Ok(())
}

impl NetConf {
    /// Parses stdin. Checks JSON shape and the network name; leaves version checks to the skel.
    pub fn parse(bytes: &[u8]) -> Result<NetConf, CniError> {
        let raw: Value = serde_json::from_slice(bytes)
            .map_err(|e| decode(format!("failed to parse network config: {e}")))?;
        let obj = raw
            .as_object()
            .ok_or_else(|| decode("failed to parse network config: not a JSON object"))?;
        let name: String = opt_field(obj, "name")?.unwrap_or_default();
        validate_network_name(&name)?;
        let cni_version: String = opt_field(obj, "cniVersion")?.unwrap_or_default();
        let prev_result = match lookup(obj, "prevResult") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                CniResult::from_value(v, &cni_version)
                    .map_err(|e| decode(format!("could not parse prevResult: {}", e.msg)))?,
            ),
        };
        let runtime_config = match lookup(obj, "runtimeConfig") {
            None | Some(Value::Null) => RuntimeConfig::default(),
            Some(v) => RuntimeConfig::from_value(v)?,
        };
        let valid_attachments = match opt_field(obj, "cni.dev/valid-attachments")? {
            Some(v) => Some(v),
            None => opt_field(obj, "cni.dev/attachments")?,
        };
        Ok(NetConf {
            cni_version,
            name,
            plugin_type: opt_field(obj, "type")?.unwrap_or_default(),
            capabilities: opt_field(obj, "capabilities")?.unwrap_or_default(),
            ipam: lookup(obj, "ipam").filter(|v| !v.is_null()).cloned(),
            dns: opt_field(obj, "dns")?,
            args: lookup(obj, "args").filter(|v| !v.is_null()).cloned(),
            runtime_config,
            prev_result,
            valid_attachments,
            raw,
        })
    }

    /// Parses the whole object into a plugin's own config type (unknown keys are the type's
    /// call). Errors name the offending field by its path, e.g. `ipam.routes[0].dst`.
    pub fn plugin_config<T: DeserializeOwned>(&self) -> Result<T, CniError> {
        parse_named(&self.raw)
    }

    /// `ipam.type`, if any.
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam.as_ref()?.get("type")?.as_str()
    }

    /// `args.cni.ips` (the args-convention form of requested IPs).
    pub fn args_ips(&self) -> Vec<String> {
        self.args
            .as_ref()
            .and_then(|a| a.pointer("/cni/ips"))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }
}

/// Deserialises `v`, naming the failing field's path in the error (code 7).
pub fn parse_named<T: DeserializeOwned>(v: &Value) -> Result<T, CniError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        invalid(format!(
            "invalid network config field {path:?}: {}",
            e.inner()
        ))
    })
}

/// A bool that may also be written as the strings "true"/"false" (any case), as libcni accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct LooseBool(pub bool);

impl<'de> Deserialize<'de> for LooseBool {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(b) => Ok(LooseBool(b)),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(LooseBool(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(LooseBool(false)),
            other => Err(serde::de::Error::custom(format!(
                "expected true/false, got {other}"
            ))),
        }
    }
}

/// A `.conflist` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConfList {
    #[serde(default)]
    pub cni_version: String,
    #[serde(default)]
    pub cni_versions: Vec<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub disable_check: LooseBool,
    #[serde(default, rename = "disableGC")]
    pub disable_gc: LooseBool,
    #[serde(default)]
    pub load_only_inlined_plugins: LooseBool,
    #[serde(default)]
    pub plugins: Vec<Value>,
}

impl NetConfList {
    /// Parses and validates a conflist: name, non-empty plugins, each with a bare `type`.
    pub fn parse(bytes: &[u8]) -> Result<NetConfList, CniError> {
        let list: NetConfList = serde_json::from_slice(bytes)
            .map_err(|e| decode(format!("failed to parse network config list: {e}")))?;
        validate_network_name(&list.name)?;
        if list.plugins.is_empty() {
            return Err(invalid(format!("network {:?} has no plugins", list.name)));
        }
        for (i, p) in list.plugins.iter().enumerate() {
            match p.get("type").and_then(Value::as_str) {
                Some(t) if !t.is_empty() && !t.contains('/') => {}
                _ => {
                    return Err(invalid(format!(
                        "plugins[{i}]: missing or invalid \"type\""
                    )))
                }
            }
        }
        Ok(list)
    }

    /// The version the list runs at (`cniVersions` preferred, libcni's rule).
    pub fn effective_version(&self) -> String {
        crate::version::pick_list_version(&self.cni_version, &self.cni_versions)
    }

    /// The stdin object for plugin `i`: the plugin object with `name` and `cniVersion` injected.
    pub fn plugin_stdin(&self, i: usize) -> Value {
        let mut p = self.plugins[i].clone();
        if let Some(o) = p.as_object_mut() {
            o.insert("name".into(), Value::String(self.name.clone()));
            o.insert("cniVersion".into(), Value::String(self.effective_version()));
        }
        p
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn bounded_numbers_name_the_field() {
        let v = json!({"mtu": 1500, "big": 18446744073709551615u64, "neg": -1, "f": 1.5, "s": "9", "n": null});
        assert_eq!(bounded_u64(&v, "mtu", 68..=65535).unwrap(), Some(1500));
        assert_eq!(bounded_u64(&v, "absent", 0..=1).unwrap(), None);
        assert_eq!(bounded_u64(&v, "n", 0..=1).unwrap(), None);
        for k in ["big", "neg", "f", "s"] {
            let e = bounded_u64(&v, k, 0..=1 << 20).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidConfig, "{k}");
            assert!(e.msg.starts_with(k), "{}", e.msg);
        }
    }
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<NetConf, CniError> {
        NetConf::parse(v.to_string().as_bytes())
    }

    #[test]
    fn keeps_unknown_keys_and_reads_known_ones() {
        let c = parse(json!({
            "cniVersion":"0.3.1","name":"k8s-pod-network","type":"calico","mtu":1440,
            "ipam":{"type":"calico-ipam"},"capabilities":{"portMappings":true},
            "dns":{"nameservers":["10.96.0.10"]},"args":{"cni":{"ips":["10.0.0.7"]}}
        }))
        .unwrap();
        assert_eq!(c.plugin_type, "calico");
        assert_eq!(c.ipam_type(), Some("calico-ipam"));
        assert_eq!(c.capabilities.get("portMappings"), Some(&true));
        assert_eq!(c.raw["mtu"], 1440);
        assert_eq!(c.dns.as_ref().unwrap().nameservers, vec!["10.96.0.10"]);
        assert_eq!(c.args_ips(), vec!["10.0.0.7"]);
        #[derive(Debug, Deserialize)]
        struct Mine {
            mtu: u32,
        }
        let mut c2 = parse(json!({"name":"n","mtu":9000})).unwrap();
        assert_eq!(c2.plugin_config::<Mine>().unwrap().mtu, 9000);
        c2.raw = json!({"name":"n","mtu":"big"});
        let e = c2.plugin_config::<Mine>().unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert!(e.msg.contains("\"mtu\""), "{}", e.msg);
    }

    #[test]
    fn name_is_required_and_validated() {
        let e = parse(json!({"cniVersion":"1.0.0"})).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert!(e.msg.contains("name"));
        let e = parse(json!({"name":"bad name"})).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert!(e.msg.contains("bad name"));
        assert_eq!(
            NetConf::parse(b"{nope").unwrap_err().code,
            ErrorCode::Decode
        );
        assert_eq!(NetConf::parse(b"[]").unwrap_err().code, ErrorCode::Decode);
    }

    #[test]
    fn runtime_config_both_cases() {
        let c = parse(json!({"name":"n","runtimeConfig":{
            "portMappings":[{"HostPort":8080,"ContainerPort":80,"Protocol":"tcp","HostIP":""}],
            "bandwidth":{"IngressRate":1000,"IngressBurst":4294967295u64},
            "ips":["10.0.0.5/24"],"mac":"c2:11:22:33:44:55","ipRanges":[[{"subnet":"10.1.0.0/24"}]]
        }}))
        .unwrap();
        let rc = &c.runtime_config;
        assert_eq!(rc.port_mappings[0].host_port, 8080);
        assert_eq!(
            rc.bandwidth.as_ref().unwrap().ingress_burst,
            Some(4_294_967_295)
        );
        assert_eq!(rc.ips, vec!["10.0.0.5/24"]);
        assert_eq!(rc.mac.as_deref(), Some("c2:11:22:33:44:55"));
        assert!(rc.raw.get("ipranges").is_some());
        let c = parse(
            json!({"name":"n","RuntimeConfig":{"PortMappings":[{"hostPort":1,"containerPort":2,"protocol":"udp"}]}}),
        );
        assert_eq!(c.unwrap().runtime_config.port_mappings[0].container_port, 2);
        let e = parse(json!({"name":"n","runtimeConfig":{"portMappings":[{"hostPort":"x"}]}}))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Decode);
        assert!(e.msg.contains("portMappings"));
    }

    #[test]
    fn prev_result_takes_config_version() {
        let c = parse(
            json!({"name":"n","cniVersion":"0.2.0","prevResult":{"ip4":{"ip":"10.0.0.2/24"}}}),
        )
        .unwrap();
        assert_eq!(c.prev_result.unwrap().ips.len(), 1);
        let c = parse(json!({"name":"n","cniVersion":"1.0.0","prevResult":{"ips":[{"address":"10.0.0.2/24"}]}})).unwrap();
        assert_eq!(c.prev_result.unwrap().ips.len(), 1);
        let e =
            parse(json!({"name":"n","cniVersion":"1.0.0","prevResult":{"ips":[{"address":"x"}]}}))
                .unwrap_err();
        assert!(e.msg.contains("prevResult"));
    }

    #[test]
    fn gc_attachments_both_names() {
        let c = parse(
            json!({"name":"n","cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}),
        )
        .unwrap();
        assert_eq!(c.valid_attachments.unwrap()[0].container_id, "c1");
        let c =
            parse(json!({"name":"n","cni.dev/attachments":[{"containerID":"c2","ifname":"eth0"}]}))
                .unwrap();
        assert_eq!(c.valid_attachments.unwrap()[0].container_id, "c2");
        assert!(parse(json!({"name":"n"}))
            .unwrap()
            .valid_attachments
            .is_none());
    }

    #[test]
    fn conflist_parsing() {
        let l = NetConfList::parse(
            json!({"name":"k8s-pod-network","cniVersion":"0.3.1","cniVersions":["1.0.0","0.4.0"],
                   "disableCheck":"TRUE","disableGC":false,
                   "plugins":[{"type":"calico","name":"other","cniVersion":"9"},{"type":"portmap"}]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert!(l.disable_check.0);
        assert!(!l.disable_gc.0);
        assert_eq!(l.effective_version(), "1.0.0");
        let p = l.plugin_stdin(0);
        assert_eq!(p["name"], "k8s-pod-network");
        assert_eq!(p["cniVersion"], "1.0.0");
        for bad in [
            json!({"name":"n","plugins":[]}),
            json!({"name":"n","plugins":[{"type":"a/b"}]}),
            json!({"name":"n","plugins":[{}]}),
            json!({"plugins":[{"type":"x"}]}),
        ] {
            assert_eq!(
                NetConfList::parse(bad.to_string().as_bytes())
                    .unwrap_err()
                    .code,
                ErrorCode::InvalidConfig,
                "{bad}"
            );
        }
        let e =
            NetConfList::parse(br#"{"name":"n","disableCheck":"maybe","plugins":[{"type":"x"}]}"#)
                .unwrap_err();
        assert_eq!(e.code, ErrorCode::Decode);
    }

    #[test]
    fn seed_conflists_parse() {
        for f in [
            "10-calico-kdd-hostlocal.conflist",
            "10-calico-etcd-tls.conflist",
        ] {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/");
            let bytes = std::fs::read(format!("{path}{f}")).unwrap();
            let l = NetConfList::parse(&bytes).unwrap();
            assert_eq!(l.name, "k8s-pod-network");
            for i in 0..l.plugins.len() {
                let stdin = serde_json::to_vec(&l.plugin_stdin(i)).unwrap();
                NetConf::parse(&stdin).unwrap();
            }
        }
    }
}
