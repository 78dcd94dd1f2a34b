//! The plugin's own configuration keys, defaults, validation and backend choice.

use serde::Deserialize;

use crate::error::PortmapError;

/// Default `markMasqBit` (0x2000): Kubernetes uses bits 14/15, Calico Felix the upper 16 bits.
pub const DEFAULT_MARK_BIT: u8 = 13;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Iptables,
    Nftables,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Iptables => "iptables",
            Backend::Nftables => "nftables",
        }
    }
}

/// The keys as they appear in JSON (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    snat: Option<bool>,
    masq_all: Option<bool>,
    mark_masq_bit: Option<i64>,
    external_set_mark_chain: Option<String>,
    #[serde(rename = "conditionsV4")]
    conditions_v4: Option<Vec<String>>,
    #[serde(rename = "conditionsV6")]
    conditions_v6: Option<Vec<String>>,
    backend: Option<String>,
}

/// Validated portmap options with defaults applied. The backend is resolved lazily
/// ([`PortMapConf::resolve_backend`]) so no-op invocations never probe the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapConf {
    pub snat: bool,
    pub masq_all: bool,
    pub mark_masq_bit: u8,
    pub external_set_mark_chain: Option<String>,
    pub conditions_v4: Vec<String>,
    pub conditions_v6: Vec<String>,
    /// `None` = auto-detect.
    pub backend: Option<Backend>,
}

impl Default for PortMapConf {
    fn default() -> Self {
        PortMapConf {
            snat: true,
            masq_all: false,
            mark_masq_bit: DEFAULT_MARK_BIT,
            external_set_mark_chain: None,
            conditions_v4: Vec::new(),
            conditions_v6: Vec::new(),
            backend: None,
        }
    }
}

/// An iptables chain name as the kernel takes it (at most 28 bytes, no whitespace, not an
/// option): anything else would only fail later inside iptables-restore, mid-ADD.
fn check_chain_name(chain: &str) -> Result<(), PortmapError> {
    let ok = !chain.is_empty()
        && chain.len() <= 28
        && !chain.starts_with(['-', '!'])
        && chain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(PortmapError::field(
            "externalSetMarkChain",
            format!("{chain:?} is not a valid iptables chain name (letters, digits, '-', '_', '.'; at most 28)"),
        ))
    }
}

impl PortMapConf {
    /// Parses and validates the plugin object (the whole stdin config; unknown keys ignored).
    pub fn from_json(v: &serde_json::Value) -> Result<PortMapConf, PortmapError> {
        // parse_named reports type errors with the field's path ("markMasqBit", "snat", …).
        let raw: RawConf =
            cni::config::parse_named(v).map_err(|source| PortmapError::NetConf { source })?;
        if raw.mark_masq_bit.is_some() && raw.external_set_mark_chain.is_some() {
            return Err(PortmapError::field(
                "markMasqBit",
                "Cannot specify externalSetMarkChain and markMasqBit",
            ));
        }
        let mark_masq_bit = match raw.mark_masq_bit {
            None => DEFAULT_MARK_BIT,
            Some(b @ 0..=31) => b as u8,
            Some(b) => {
                return Err(PortmapError::field(
                    "markMasqBit",
                    format!("MasqMarkBit must be between 0 and 31, got {b}"),
                ))
            }
        };
        if let Some(chain) = raw.external_set_mark_chain.as_deref() {
            check_chain_name(chain)?;
        }
        let backend = match raw.backend.as_deref() {
            None | Some("") => None,
            Some("iptables") => Some(Backend::Iptables),
            Some("nftables") => Some(Backend::Nftables),
            Some(other) => {
                return Err(PortmapError::field(
                    "backend",
                    format!("unrecognized backend {other:?}"),
                ))
            }
        };
        let conf = PortMapConf {
            snat: raw.snat.unwrap_or(true),
            masq_all: raw.masq_all.unwrap_or(false),
            mark_masq_bit,
            external_set_mark_chain: raw.external_set_mark_chain.filter(|s| !s.is_empty()),
            conditions_v4: raw.conditions_v4.unwrap_or_default(),
            conditions_v6: raw.conditions_v6.unwrap_or_default(),
            backend,
        };
        // Reject contradictory explicit choices early (also on DEL, like upstream).
        if let Some(b) = conf.backend {
            conf.check_backend_options(b)?;
        }
        Ok(conf)
    }

    /// The mark value `1 << markMasqBit`.
    pub fn mark(&self) -> u32 {
        1u32 << self.mark_masq_bit
    }

    /// Options that only make sense for one backend, named like upstream does in its error.
    fn specific_options(&self, backend: Backend) -> Vec<&'static str> {
        let mut out = Vec::new();
        let is_ipt_conditions = |c: &[String]| {
            c.first()
                .is_some_and(|t| t.starts_with('-') || t.starts_with('!'))
        };
        let is_nft_conditions = |c: &[String]| !c.is_empty() && !is_ipt_conditions(c);
        match backend {
            Backend::Iptables => {
                if self.external_set_mark_chain.is_some() {
                    out.push("externalSetMarkChain");
                }
                if is_ipt_conditions(&self.conditions_v4) {
                    out.push("conditionsV4");
                }
                if is_ipt_conditions(&self.conditions_v6) {
                    out.push("conditionsV6");
                }
            }
            Backend::Nftables => {
                if is_nft_conditions(&self.conditions_v4) {
                    out.push("conditionsV4");
                }
                if is_nft_conditions(&self.conditions_v6) {
                    out.push("conditionsV6");
                }
            }
        }
        out
    }

    fn check_backend_options(&self, chosen: Backend) -> Result<(), PortmapError> {
        let other = match chosen {
            Backend::Iptables => Backend::Nftables,
            Backend::Nftables => Backend::Iptables,
        };
        let conflicting = self.specific_options(other);
        if conflicting.is_empty() {
            return Ok(());
        }
        Err(PortmapError::OtherBackendOptions {
            chosen: chosen.name(),
            other: other.name(),
            options: conflicting.iter().map(|o| o.to_string()).collect(),
        })
    }

    /// Picks the backend: explicit choice, else the one the options are written for, else
    /// iptables when `iptables-restore` is installed, else nftables when `nft` is. Detection is a
    /// PATH lookup (no exec), so it is cheap even on busy nodes.
    pub fn resolve_backend(&self, path: Option<&std::ffi::OsStr>) -> Result<Backend, PortmapError> {
        if let Some(b) = self.backend {
            return Ok(b);
        }
        let ipt = !self.specific_options(Backend::Iptables).is_empty();
        let nft = !self.specific_options(Backend::Nftables).is_empty();
        match (ipt, nft) {
            (true, true) => Err(PortmapError::BothBackendsOptions),
            (true, false) => Ok(Backend::Iptables),
            (false, true) => Ok(Backend::Nftables),
            (false, false) => {
                if crate::exec::find_program("iptables-restore", path).is_some() {
                    Ok(Backend::Iptables)
                } else if crate::exec::find_program("nft", path).is_some() {
                    Ok(Backend::Nftables)
                } else {
                    Err(PortmapError::NoBackendTool)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults() {
        let c = PortMapConf::from_json(&json!({"name": "n", "type": "portmap"})).unwrap();
        assert_eq!(c, PortMapConf::default());
        assert_eq!(c.mark(), 0x2000);
    }

    #[test]
    fn mark_bit_range_and_exclusivity() {
        let e = PortMapConf::from_json(&json!({"markMasqBit": 32})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid network config field \"markMasqBit\": MasqMarkBit must be between 0 and 31, got 32"
        );
        let e = PortMapConf::from_json(&json!({"markMasqBit": -1})).unwrap_err();
        assert!(e.to_string().contains("got -1"), "{e}");
        let e = PortMapConf::from_json(
            &json!({"markMasqBit": 5, "externalSetMarkChain": "KUBE-MARK-MASQ"}),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid network config field \"markMasqBit\": Cannot specify externalSetMarkChain and markMasqBit"
        );
        let e = PortMapConf::from_json(&json!({"markMasqBit": "13"})).unwrap_err();
        assert!(e.to_string().contains("\"markMasqBit\""), "{e}");
        let e = PortMapConf::from_json(&json!({"snat": "yes"})).unwrap_err();
        assert!(e.to_string().contains("\"snat\""), "{e}");
        let c = PortMapConf::from_json(&json!({"markMasqBit": 5, "snat": false})).unwrap();
        assert_eq!(c.mark(), 0x20);
        assert!(!c.snat);
    }

    #[test]
    fn backend_validation() {
        let e = PortMapConf::from_json(&json!({"backend": "bpf"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid network config field \"backend\": unrecognized backend \"bpf\""
        );
        let e =
            PortMapConf::from_json(&json!({"backend": "nftables", "externalSetMarkChain": "X"}))
                .unwrap_err();
        assert_eq!(
            e.to_string(),
            "nftables backend was requested but configuration contains iptables-specific options [externalSetMarkChain]"
        );
        let e = PortMapConf::from_json(
            &json!({"backend": "iptables", "conditionsV4": ["ip", "saddr", "1.2.3.4"]}),
        )
        .unwrap_err();
        assert!(e
            .to_string()
            .contains("nftables-specific options [conditionsV4]"));
    }

    #[test]
    fn backend_inferred_from_options() {
        let c =
            PortMapConf::from_json(&json!({"conditionsV4": ["!", "-d", "192.0.2.0/24"]})).unwrap();
        assert_eq!(c.resolve_backend(None).unwrap(), Backend::Iptables);
        let c = PortMapConf::from_json(&json!({"conditionsV6": ["ip6", "saddr", "::1"]})).unwrap();
        assert_eq!(c.resolve_backend(None).unwrap(), Backend::Nftables);
        let empty = std::ffi::OsStr::new("/nonexistent");
        let c = PortMapConf::default();
        assert!(c.resolve_backend(Some(empty)).is_err());
    }
}
