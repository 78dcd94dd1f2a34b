//! Which limits apply: static fields vs `runtimeConfig.bandwidth`, and their validation.

use cni::caps::{BandwidthEntry, CiObject};
use cni::config::NetConf;

use crate::error::BandwidthError;

/// One direction's limit, as configured: rate in bit/s, burst in bits (both > 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub rate: u64,
    pub burst: u64,
}

/// The validated shaping of one attachment. `None` = that direction is not shaped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shaping {
    /// Traffic into the pod (tbf on the host veth).
    pub ingress: Option<Limit>,
    /// Traffic out of the pod (tbf on the ifb).
    pub egress: Option<Limit>,
}

impl Shaping {
    pub fn is_none(&self) -> bool {
        self.ingress.is_none() && self.egress.is_none()
    }

    /// Reads and validates the limits of an invocation's config.
    pub fn from_netconf(conf: &NetConf) -> Result<Shaping, BandwidthError> {
        Shaping::from_entry(&effective_entry(conf)?)
    }

    /// Validates both directions (upstream's messages, plus a floor of 8 so nothing rounds to 0
    /// bytes inside tc).
    pub fn from_entry(e: &BandwidthEntry) -> Result<Shaping, BandwidthError> {
        let dir = |direction: &'static str, rate: Option<u64>, burst: Option<u64>| {
            validate(rate.unwrap_or(0), burst.unwrap_or(0))
                .map_err(|reason| BandwidthError::InvalidLimit { direction, reason })
        };
        Ok(Shaping {
            ingress: dir("ingress", e.ingress_rate, e.ingress_burst)?,
            egress: dir("egress", e.egress_rate, e.egress_burst)?,
        })
    }
}

/// Static top-level fields if any of the four keys is present at the top level (then
/// `runtimeConfig.bandwidth` is ignored entirely, like upstream), else the runtime's values.
pub fn effective_entry(conf: &NetConf) -> Result<BandwidthEntry, BandwidthError> {
    let top = CiObject::from_value(&conf.raw).unwrap_or_default();
    let fixed = BandwidthEntry::from_object(&top).map_err(BandwidthError::Field)?;
    if !fixed.is_empty() {
        return Ok(fixed);
    }
    Ok(conf.runtime_config.bandwidth.clone().unwrap_or_default())
}

/// Upstream's checks and messages, in upstream's order; `None` when the direction is unset.
fn validate(rate: u64, burst: u64) -> Result<Option<Limit>, String> {
    match (rate, burst) {
        (0, 0) => return Ok(None),
        (r, 0) if r > 0 => return Err("if rate is set, burst must also be set".into()),
        (0, _) => return Err("if burst is set, rate must also be set".into()),
        _ => {}
    }
    if burst / 8 >= u64::from(u32::MAX) {
        return Err(format!(
            "burst cannot be more than 4GB (got {burst} bits, limit {} bits)",
            u64::from(u32::MAX - 1) * 8 + 7
        ));
    }
    if rate < 8 {
        return Err(format!(
            "rate {rate} bit/s is below 8 bit/s, which tc cannot express (rates are in bytes/s)"
        ));
    }
    if burst < 8 {
        return Err(format!(
            "burst {burst} bits is below 8 bits, which tc cannot express (bursts are in bytes)"
        ));
    }
    Ok(Some(Limit { rate, burst }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conf(v: serde_json::Value) -> NetConf {
        NetConf::parse(v.to_string().as_bytes()).unwrap()
    }

    fn shaping(v: serde_json::Value) -> Result<Shaping, BandwidthError> {
        Shaping::from_netconf(&conf(v))
    }

    #[test]
    fn static_fields_win_over_runtime_config_entirely() {
        let s = shaping(json!({"name":"n","type":"bandwidth",
            "ingressRate": 8000, "ingressBurst": 80,
            "runtimeConfig": {"bandwidth": {"egressRate": 16, "egressBurst": 8}}}))
        .unwrap();
        assert_eq!(
            s.ingress,
            Some(Limit {
                rate: 8000,
                burst: 80
            })
        );
        assert_eq!(s.egress, None, "runtime values are not merged in");
    }

    #[test]
    fn runtime_config_any_case_when_no_static_fields() {
        let s = shaping(json!({"name":"n","runtimeConfig":{"bandwidth":{
            "IngressRate": 10_000_000u64, "IngressBurst": 4_294_967_295u64,
            "egressrate": 16, "EGRESSBURST": 8}}}))
        .unwrap();
        assert_eq!(
            s.ingress,
            Some(Limit {
                rate: 10_000_000,
                burst: 4_294_967_295
            })
        );
        assert_eq!(s.egress, Some(Limit { rate: 16, burst: 8 }));
        // Static keys are case-insensitive too.
        let s = shaping(json!({"name":"n","EgressRate": 1000, "EgressBurst": 1000})).unwrap();
        assert_eq!(
            s.egress,
            Some(Limit {
                rate: 1000,
                burst: 1000
            })
        );
    }

    #[test]
    fn nothing_configured_is_no_shaping() {
        assert!(shaping(json!({"name":"n"})).unwrap().is_none());
        assert!(
            shaping(json!({"name":"n","ingressRate":0,"ingressBurst":0}))
                .unwrap()
                .is_none()
        );
        // All-zero static fields still hide the runtime's values (upstream precedence).
        assert!(shaping(json!({"name":"n","ingressRate":0,
            "runtimeConfig":{"bandwidth":{"ingressRate":8000,"ingressBurst":800}}}))
        .unwrap()
        .is_none());
    }

    #[test]
    fn validation_messages() {
        let err = |v| shaping(v).unwrap_err().to_string();
        assert_eq!(
            err(json!({"name":"n","ingressRate":1000})),
            "ingress: if rate is set, burst must also be set"
        );
        assert_eq!(
            err(json!({"name":"n","egressBurst":1000})),
            "egress: if burst is set, rate must also be set"
        );
        let e = err(json!({"name":"n","egressRate":1000,"egressBurst":34_359_738_360u64}));
        assert!(
            e.starts_with("egress: burst cannot be more than 4GB"),
            "{e}"
        );
        // Largest accepted burst: burst/8 = 2^32 - 2.
        let ok = shaping(json!({"name":"n","egressRate":1000,"egressBurst":34_359_738_359u64}));
        assert!(ok.is_ok());
        assert!(
            err(json!({"name":"n","ingressRate":7,"ingressBurst":800})).contains("below 8 bit/s")
        );
        assert!(
            err(json!({"name":"n","ingressRate":800,"ingressBurst":7})).contains("below 8 bits")
        );
        // Wrong types and out-of-range numbers name the field.
        let e = shaping(json!({"name":"n","ingressRate":-1,"ingressBurst":8})).unwrap_err();
        assert!(matches!(e, BandwidthError::Field(_)));
        assert!(e.to_string().contains("ingressRate"), "{e}");
        let e = err(json!({"name":"n","ingressRate":"fast","ingressBurst":8}));
        assert!(e.contains("ingressRate"), "{e}");
    }
}
