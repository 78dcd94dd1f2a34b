//! IPAM delegation: run `ipam.type` from `CNI_PATH` with the same stdin (rewritten only where
//! Calico rewrites it) and `IgnoreUnknown=1` prepended to `CNI_ARGS`.

use cni::delegate::Delegation;
use cni::{CniError, CniResult, Command, ErrorCode, Invocation};
use ipnetwork::IpNetwork;
use serde_json::Value;
use std::net::IpAddr;

/// Override for the node's pod CIDRs (comma separated) behind host-local's `usePodCidr`, used
/// only when no Kubernetes API is configured (single nodes without Kubernetes, tests, builds
/// without the `kubernetes` feature). With an API, the Node's `spec.podCIDRs` are used.
pub const POD_CIDRS_ENV: &str = "CALICO_POD_CIDRS";

/// Where the node's pod CIDRs come from (the Kubernetes Node object in Kubernetes mode).
pub trait PodCidrs {
    /// `None`: no source configured (the [`POD_CIDRS_ENV`] override then applies).
    fn pod_cidrs(&self) -> Option<Result<(String, Vec<IpNetwork>), CniError>>;
}

/// An IPAM plugin run from [`Ipam::start`]; dropped unfinished, the plugin is killed unfed.
pub struct Started(Option<(cni::delegate::Spawned, Vec<u8>)>);

impl Started {
    /// Feeds the plugin its config and waits for it (nothing to do: `Ok`).
    pub fn finish(self) -> Result<(), CniError> {
        match self.0 {
            Some((child, stdin)) => child.finish(&stdin).map(drop),
            None => Ok(()),
        }
    }
}

pub struct Ipam<'a> {
    inv: &'a Invocation,
    plugin: &'a str,
    cni_args: String,
    /// The netconf sent to the plugin when Calico rewrote it (pool annotations).
    config: Option<Value>,
    pod_cidrs: Option<&'a dyn PodCidrs>,
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

/// Picks the CIDR of one family from the node's pod CIDRs, with Calico's rules and errors.
fn pick_pod_cidr(node: &str, cidrs: &[IpNetwork], v4: bool) -> Result<String, CniError> {
    let invalid = |msg: String| CniError::new(ErrorCode::InvalidConfig, msg);
    if cidrs.is_empty() {
        return Err(invalid(format!("no podCidr for node {node}")));
    }
    let of_family: Vec<&IpNetwork> = cidrs.iter().filter(|c| c.is_ipv4() == v4).collect();
    if cidrs.iter().filter(|c| c.is_ipv4()).count() > 1
        || cidrs.iter().filter(|c| c.is_ipv6()).count() > 1
    {
        return Err(invalid(
            "ClusterCIDR contains two ranges of the same type".to_string(),
        ));
    }
    of_family.first().map(|c| c.to_string()).ok_or_else(|| {
        invalid(format!(
            "usePodCidr found but there is no {} CIDR configured",
            if v4 { "IPv4" } else { "IPv6" }
        ))
    })
}

/// The [`POD_CIDRS_ENV`] override, when no Kubernetes API is configured.
fn env_pod_cidrs() -> Result<(String, Vec<IpNetwork>), CniError> {
    let raw = std::env::var(POD_CIDRS_ENV).map_err(|_| {
        CniError::new(
            ErrorCode::InvalidConfig,
            format!(
                "ipam.subnet is usePodCidr but the node's podCIDR is unknown: configure kubernetes.kubeconfig (or set {POD_CIDRS_ENV})"
            ),
        )
    })?;
    let cidrs = raw
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.parse::<IpNetwork>().map_err(|e| {
                CniError::new(
                    ErrorCode::InvalidEnvironment,
                    format!("invalid CIDR {c:?} in {POD_CIDRS_ENV}: {e}"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    Ok((format!("{POD_CIDRS_ENV}={raw:?}"), cidrs))
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
            config: None,
            pod_cidrs: None,
        })
    }

    /// Sends `config` instead of the received netconf (Calico's pool/family annotations).
    pub fn with_config(mut self, config: Value) -> Self {
        self.config = Some(config);
        self
    }

    /// Resolves host-local's `usePodCidr` from `source`.
    pub fn with_pod_cidrs(mut self, source: &'a dyn PodCidrs) -> Self {
        self.pod_cidrs = Some(source);
        self
    }

    /// The netconf the plugin gets (before `usePodCidr` substitution).
    pub fn config(&self) -> &Value {
        self.config.as_ref().unwrap_or(&self.inv.config.raw)
    }

    /// The node's pod CIDRs, looked up at most once per call site (Calico does it lazily).
    fn resolve_pod_cidrs(&self) -> Result<(String, Vec<IpNetwork>), CniError> {
        match self.pod_cidrs.and_then(|s| s.pod_cidrs()) {
            Some(r) => r,
            None => env_pod_cidrs(),
        }
    }

    pub fn plugin(&self) -> &str {
        self.plugin
    }

    /// stdin for the IPAM plugin: unchanged, except host-local's `usePodCidr` placeholders, which
    /// become the node's CIDRs on ADD/CHECK and match-anything networks on DEL/GC (host-local
    /// releases by container id; the subnet only has to parse).
    fn stdin(&self, command: Command) -> Result<Vec<u8>, CniError> {
        if self.plugin != "host-local" {
            return Ok(match &self.config {
                Some(c) => serde_json::to_vec(c).expect("config re-serialises"),
                None => self.inv.stdin.clone(),
            });
        }
        let mut conf = self.config().clone();
        let changed = match command {
            Command::Add | Command::Check => {
                let mut cidrs = None;
                replace_pod_cidr(&mut conf, &mut |v4| {
                    if cidrs.is_none() {
                        cidrs = Some(self.resolve_pod_cidrs()?);
                    }
                    let (node, list) = cidrs.as_ref().expect("set above");
                    pick_pod_cidr(node, list, v4)
                })?
            }
            _ => replace_pod_cidr(&mut conf, &mut |v4| {
                Ok(if v4 { "0.0.0.0/0" } else { "::/0" }.to_string())
            })?,
        };
        Ok(if changed || self.config.is_some() {
            serde_json::to_vec(&conf).expect("config re-serialises")
        } else {
            self.inv.stdin.clone()
        })
    }

    fn delegation(&self) -> Delegation<'_> {
        Delegation::new(self.plugin, &self.inv.cni_path).env("CNI_ARGS", &self.cni_args)
    }

    pub fn add(&self) -> Result<CniResult, CniError> {
        cni::delegate::check_ipam_type(self.plugin)?;
        let stdin = self.stdin(Command::Add)?;
        let result = self
            .delegation()
            .add(&stdin, &self.inv.config.cni_version)?;
        self.checked(result)
    }

    /// The IPAM result, sanity-checked before anything is wired; an unusable one is released.
    fn checked(&self, result: CniResult) -> Result<CniResult, CniError> {
        if let Err(e) = result.validate_ipam(self.plugin) {
            self.release_after_failure();
            return Err(e);
        }
        Ok(result)
    }

    /// ADD asking for one specific address: Calico appends `IP=<ip>` to `CNI_ARGS` for the
    /// `ipAddrs` annotation (calico-ipam honours it).
    pub fn add_ip(&self, ip: IpAddr) -> Result<CniResult, CniError> {
        cni::delegate::check_ipam_type(self.plugin)?;
        let stdin = self.stdin(Command::Add)?;
        let args = format!("{};IP={ip}", self.cni_args);
        let result = Delegation::new(self.plugin, &self.inv.cni_path)
            .env("CNI_ARGS", &args)
            .add(&stdin, &self.inv.config.cni_version)?;
        self.checked(result)
    }

    pub fn run(&self, command: Command) -> Result<(), CniError> {
        self.start(command)?.finish()
    }

    /// Starts the plugin for `command` without letting it act yet: it gets its config (and so
    /// does anything) only at [`Started::finish`]. Lets its exec overlap with other work.
    pub fn start(&self, command: Command) -> Result<Started, CniError> {
        if let Err(e) = cni::delegate::check_ipam_type(self.plugin) {
            if command == Command::Del {
                // ADD refused this config, so that plugin never allocated anything to release.
                log::warn!("{e}; nothing to release");
                return Ok(Started(None));
            }
            return Err(e);
        }
        let stdin = self.stdin(command)?;
        let child = self.delegation().spawn(command)?;
        Ok(Started(Some((child, stdin))))
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
    fn pod_cidr_rules_and_errors() {
        let c = |s: &str| s.parse::<IpNetwork>().unwrap();
        let dual = [c("10.244.3.0/24"), c("fd00:3::/64")];
        assert_eq!(pick_pod_cidr("n", &dual, true).unwrap(), "10.244.3.0/24");
        assert_eq!(pick_pod_cidr("n", &dual, false).unwrap(), "fd00:3::/64");
        let e = pick_pod_cidr("n1", &[], true).unwrap_err();
        assert_eq!(e.msg, "no podCidr for node n1");
        let e = pick_pod_cidr("n", &[c("10.0.0.0/24"), c("10.1.0.0/24")], true).unwrap_err();
        assert!(e.msg.contains("two ranges of the same type"), "{}", e.msg);
        let e = pick_pod_cidr("n", &[c("10.0.0.0/24")], false).unwrap_err();
        assert!(e.msg.contains("no IPv6 CIDR configured"), "{}", e.msg);
    }

    #[test]
    fn case_insensitive_placeholder() {
        assert_eq!(is_placeholder("USEPODCIDR"), Some(true));
        assert_eq!(is_placeholder("usepodcidripv6"), Some(false));
        assert_eq!(is_placeholder("10.0.0.0/8"), None);
    }
}
