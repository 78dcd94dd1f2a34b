//! Capability payloads that runtimes put in `runtimeConfig`.
//!
//! Runtimes disagree on key case: containerd 1.6 sends Go field names (`HostPort`, `IngressRate`),
//! podman and cnitool send camelCase. Go's decoder matches keys case-insensitively (exact match
//! first), so ours does too, through [`CiObject`].

use crate::error::{CniError, ErrorCode};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Looks a key up the way Go's `encoding/json` matches fields: exact key, else any-case key.
pub fn ci_get<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).or_else(|| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A JSON object looked up the way Go's `encoding/json` does: exact key, else any-case key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CiObject(pub Map<String, Value>);

impl CiObject {
    pub fn from_value(v: &Value) -> Option<CiObject> {
        v.as_object().map(|m| CiObject(m.clone()))
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        ci_get(&self.0, key)
    }

    /// Decodes one field; absent and `null` are `None`; a wrong type names the field.
    pub fn field<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, FieldError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => T::deserialize(v).map(Some).map_err(|source| FieldError {
                field: key.to_string(),
                source,
            }),
        }
    }
}

/// A config field whose value has the wrong type or shape. Code 7: the config must be fixed.
#[derive(Debug, thiserror::Error)]
#[error("field {field:?}: {source}")]
pub struct FieldError {
    pub field: String,
    #[source]
    pub source: serde_json::Error,
}

impl crate::error::CniCode for FieldError {
    fn cni_code(&self) -> ErrorCode {
        ErrorCode::InvalidConfig
    }
}

impl<'de> Deserialize<'de> for CiObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Map::deserialize(d).map(CiObject)
    }
}

/// One entry of the `portMappings` capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// Lower-cased protocol as given (`tcp`, `udp`, `sctp`); validated by portmap.
    pub protocol: String,
    /// Empty when the mapping applies to every host address.
    #[serde(rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

impl<'de> Deserialize<'de> for PortMapping {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let o = CiObject::deserialize(d)?;
        let port = |k: &str| -> Result<u16, D::Error> {
            let n: i64 = o.field(k).map_err(D::Error::custom)?.unwrap_or(0);
            u16::try_from(n)
                .map_err(|_| D::Error::custom(format!("field {k:?}: {n} is not a valid port")))
        };
        Ok(PortMapping {
            host_port: port("hostPort")?,
            container_port: port("containerPort")?,
            protocol: o
                .field::<String>("protocol")
                .map_err(D::Error::custom)?
                .unwrap_or_default()
                .to_ascii_lowercase(),
            host_ip: o
                .field::<String>("hostIP")
                .map_err(D::Error::custom)?
                .unwrap_or_default(),
        })
    }
}

/// The `bandwidth` capability (and the bandwidth plugin's static fields): rates in bit/s,
/// bursts in bits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BandwidthEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress_rate: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress_burst: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress_rate: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress_burst: Option<u64>,
}

impl BandwidthEntry {
    /// Reads the four fields from any object (a plugin config or `runtimeConfig.bandwidth`).
    pub fn from_object(o: &CiObject) -> Result<BandwidthEntry, FieldError> {
        Ok(BandwidthEntry {
            ingress_rate: o.field("ingressRate")?,
            ingress_burst: o.field("ingressBurst")?,
            egress_rate: o.field("egressRate")?,
            egress_burst: o.field("egressBurst")?,
        })
    }

    pub fn is_empty(&self) -> bool {
        *self == BandwidthEntry::default()
    }
}

impl<'de> Deserialize<'de> for BandwidthEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let o = CiObject::deserialize(d)?;
        BandwidthEntry::from_object(&o).map_err(D::Error::custom)
    }
}

/// Decodes a capability value, mapping failures to a CNI decode error naming the capability.
pub fn decode<T: DeserializeOwned>(capability: &str, v: &Value) -> Result<T, CniError> {
    T::deserialize(v).map_err(|e| {
        CniError::new(
            ErrorCode::Decode,
            format!("invalid runtimeConfig.{capability}: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn port_mapping_containerd_and_camel_case() {
        let go: PortMapping = serde_json::from_value(
            json!({"HostPort":8080,"ContainerPort":80,"Protocol":"TCP","HostIP":""}),
        )
        .unwrap();
        let camel: PortMapping =
            serde_json::from_value(json!({"hostPort":8080,"containerPort":80,"protocol":"tcp"}))
                .unwrap();
        assert_eq!(go, camel);
        assert_eq!(go.protocol, "tcp");
        let lower: PortMapping = serde_json::from_value(
            json!({"hostport":1,"containerport":2,"protocol":"udp","hostip":"192.0.2.1"}),
        )
        .unwrap();
        assert_eq!(lower.host_ip, "192.0.2.1");
    }

    #[test]
    fn exact_key_wins_over_other_case() {
        let m: PortMapping = serde_json::from_value(
            json!({"HOSTPORT":1,"hostPort":2,"containerPort":3,"protocol":"tcp"}),
        )
        .unwrap();
        assert_eq!(m.host_port, 2);
    }

    #[test]
    fn bad_ports_name_the_field() {
        let e = serde_json::from_value::<PortMapping>(json!({"hostPort":70000,"containerPort":80}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("hostPort") && e.contains("70000"), "{e}");
        let e = serde_json::from_value::<PortMapping>(json!({"hostPort":"x","containerPort":80}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("hostPort"), "{e}");
        let e: CniError =
            decode::<Vec<PortMapping>>("portMappings", &json!([{"hostPort":-1}])).unwrap_err();
        assert_eq!(e.code, ErrorCode::Decode);
        assert!(e.msg.contains("runtimeConfig.portMappings"));
    }

    #[test]
    fn bandwidth_both_spellings() {
        let go: BandwidthEntry = serde_json::from_value(json!({
            "IngressRate":1000000,"IngressBurst":4294967295u64,"EgressRate":2000000,"EgressBurst":4294967295u64
        }))
        .unwrap();
        let camel: BandwidthEntry = serde_json::from_value(json!({
            "ingressRate":1000000,"ingressBurst":4294967295u64,"egressRate":2000000,"egressBurst":4294967295u64
        }))
        .unwrap();
        assert_eq!(go, camel);
        assert_eq!(go.ingress_burst, Some(4_294_967_295));
        assert!(serde_json::from_value::<BandwidthEntry>(json!({}))
            .unwrap()
            .is_empty());
        let e = serde_json::from_value::<BandwidthEntry>(json!({"egressRate":-5}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("egressRate"), "{e}");
    }

    #[test]
    fn serialises_camel_case() {
        let m = PortMapping {
            host_port: 1,
            container_port: 2,
            protocol: "tcp".into(),
            host_ip: String::new(),
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"hostPort":1,"containerPort":2,"protocol":"tcp"})
        );
    }
}
