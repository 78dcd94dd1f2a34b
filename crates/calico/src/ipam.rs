//! IPAM delegation: run `ipam.type` from `CNI_PATH` with the same stdin (rewritten only where
//! Calico rewrites it) and `IgnoreUnknown=1` prepended to `CNI_ARGS`.

use cni::delegate::Delegation;
use cni::{CniError, CniResult, Command, ErrorCode, Invocation};
use ipnetwork::IpNetwork;
use serde_json::Value;

/// Environment variable naming the node's pod CIDRs (comma separated) for host-local's
/// `usePodCidr` when no Kubernetes API is configured (tests, single nodes).
pub const POD_CIDRS_ENV: &str = "CALICO_POD_CIDRS";

pub struct Ipam<'a> {
    inv: &'a Invocation,
    plugin: &'a str,
    cni_args: String,
}

fn is_placeholder(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("usePodCidr") {
        Some(true)
    } else if s.eq_ignore_ascii_case("usePodCidrIPv6") {
        Some(false)
    } else {
        None
    }
}

/// Replaces `usePodCidr`/`usePodCidrIPv6` in `ipam.subnet` and `ipam.ranges[][].subnet` with what
/// `pick(v4)` returns. Returns whether anything was replaced.
fn replace_pod_cidr(
    conf: &mut Value,
    pick: &mut dyn FnMut(bool) -> Result<String, CniError>,
) -> Result<bool, CniError> {
    let Some(ipam) = conf.get_mut("ipam").and_then(Value::as_object_mut) else {
        return Ok(false);
    };
    // Every place a subnet can be written: the legacy top-level range and each ranges[][] entry.
    let mut slots: Vec<&mut Value> = Vec::new();
    for (key, value) in ipam.iter_mut() {
        match (key.as_str(), value) {
            ("subnet", v) => slots.push(v),
            ("ranges", Value::Array(sets)) => slots.extend(
                sets.iter_mut()
                    .filter_map(Value::as_array_mut)
                    .flat_map(|set| set.iter_mut())
                    .filter_map(|range| range.get_mut("subnet")),
            ),
            _ => {}
        }
    }
    let mut changed = false;
    for slot in slots {
        if let Some(v4) = slot.as_str().and_then(is_placeholder) {
            *slot = Value::String(pick(v4)?);
            changed = true;
        }
    }
    Ok(changed)
}

/// The node's pod CIDRs from [`POD_CIDRS_ENV`]; the Kubernetes Node lookup replaces this when
/// a kubeconfig is usable.
fn pod_cidr(v4: bool) -> Result<String, CniError> {
    let family = if v4 { "IPv4" } else { "IPv6" };
    let raw = std::env::var(POD_CIDRS_ENV).map_err(|_| {
        CniError::new(
            ErrorCode::InvalidConfig,
            format!(
                "ipam.subnet is usePodCidr but the node's podCIDR is unknown: no Kubernetes Node lookup is available, set {POD_CIDRS_ENV}"
            ),
        )
    })?;
    raw.split(',')
        .map(str::trim)
        .filter_map(|c| c.parse::<IpNetwork>().ok())
        .find(|c| c.is_ipv4() == v4)
        .map(|c| c.to_string())
        .ok_or_else(|| {
            CniError::new(
                ErrorCode::InvalidConfig,
                format!("usePodCidr found but there is no {family} CIDR configured in {POD_CIDRS_ENV}={raw:?}"),
            )
        })
}

impl<'a> Ipam<'a> {
    pub fn new(inv: &'a Invocation) -> Result<Ipam<'a>, CniError> {
        let plugin = inv
            .config
            .ipam_type()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                CniError::new(
                    ErrorCode::InvalidConfig,
                    "missing ipam.type in the calico config",
                )
            })?;
        let cni_args = if inv.args.ignore_unknown() {
            inv.args_raw.clone()
        } else if inv.args_raw.is_empty() {
            "IgnoreUnknown=1".to_string()
        } else {
            format!("IgnoreUnknown=1;{}", inv.args_raw)
        };
        Ok(Ipam {
            inv,
            plugin,
            cni_args,
        })
    }

    pub fn plugin(&self) -> &str {
        self.plugin
    }

    /// stdin for the IPAM plugin: unchanged, except host-local's `usePodCidr` placeholders, which
    /// become the node's CIDRs on ADD/CHECK and match-anything networks on DEL/GC (host-local
    /// releases by container id; the subnet only has to parse).
    fn stdin(&self, command: Command) -> Result<Vec<u8>, CniError> {
        if self.plugin != "host-local" {
            return Ok(self.inv.stdin.clone());
        }
        let mut conf = self.inv.config.raw.clone();
        let changed = match command {
            Command::Add | Command::Check => replace_pod_cidr(&mut conf, &mut pod_cidr)?,
            _ => replace_pod_cidr(&mut conf, &mut |v4| {
                Ok(if v4 { "0.0.0.0/0" } else { "::/0" }.to_string())
            })?,
        };
        Ok(if changed {
            serde_json::to_vec(&conf).expect("config re-serialises")
        } else {
            self.inv.stdin.clone()
        })
    }

    fn delegation(&self) -> Delegation<'_> {
        Delegation::new(self.plugin, &self.inv.cni_path).env("CNI_ARGS", &self.cni_args)
    }

    pub fn add(&self) -> Result<CniResult, CniError> {
        let stdin = self.stdin(Command::Add)?;
        self.delegation().add(&stdin, &self.inv.config.cni_version)
    }

    pub fn run(&self, command: Command) -> Result<(), CniError> {
        let stdin = self.stdin(command)?;
        self.delegation().run(command, &stdin)
    }

    /// Releases what ADD allocated; used on ADD failure, where the original error matters more.
    pub fn release_after_failure(&self) {
        if let Err(e) = self.run(Command::Del) {
            log::error!("failed to release IPs after a failed ADD: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_in_subnet_and_ranges() {
        let mut c = json!({"ipam":{"type":"host-local","subnet":"usePodCidr",
            "ranges":[[{"subnet":"usePodCidrIPv6"}],[{"subnet":"10.9.0.0/24"}]]}});
        let changed = replace_pod_cidr(&mut c, &mut |v4| {
            Ok(if v4 { "10.244.3.0/24" } else { "fd00:3::/64" }.to_string())
        })
        .unwrap();
        assert!(changed);
        assert_eq!(c["ipam"]["subnet"], "10.244.3.0/24");
        assert_eq!(c["ipam"]["ranges"][0][0]["subnet"], "fd00:3::/64");
        assert_eq!(c["ipam"]["ranges"][1][0]["subnet"], "10.9.0.0/24");
        let mut plain = json!({"ipam":{"type":"host-local","subnet":"10.0.0.0/24"}});
        assert!(!replace_pod_cidr(&mut plain, &mut |_| unreachable!()).unwrap());
    }

    #[test]
    fn case_insensitive_placeholder() {
        assert_eq!(is_placeholder("USEPODCIDR"), Some(true));
        assert_eq!(is_placeholder("usepodcidripv6"), Some(false));
        assert_eq!(is_placeholder("10.0.0.0/8"), None);
    }
}
