//! The CNI glue: turns an [`Invocation`] into a [`Request`] and echoes prevResult.

use cni::error::{CniError, ErrorCode};
use cni::result::CniResult;
use cni::skel::{Invocation, Plugin};

use crate::{Attachment, Container, PortMapConf, PortMapping, Request};

/// The `portmap` plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct Portmap;

/// Config and validated mappings of an invocation.
fn parse(inv: &Invocation) -> Result<(PortMapConf, Vec<PortMapping>), CniError> {
    let conf = PortMapConf::from_json(&inv.config.raw)?;
    let mappings = inv
        .config
        .runtime_config
        .port_mappings
        .iter()
        .enumerate()
        .map(|(i, m)| {
            PortMapping::from_parts(
                i64::from(m.host_port),
                i64::from(m.container_port),
                &m.protocol,
                &m.host_ip,
            )
            .map_err(|e| e.within(&format!("runtimeConfig.portMappings[{i}]")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((conf, mappings))
}

/// Picks at most one address per family, like upstream: an IP whose `interface` index points at
/// an interface other than `CNI_IFNAME` or at a host-side one (no sandbox) is skipped; IPs without
/// an index are accepted. The host interface is the single prevResult interface without sandbox.
pub fn container_from_result(prev: &CniResult, ifname: &str) -> Container {
    let mut c = Container::default();
    for ip in &prev.ips {
        if let Some(iface) = ip.interface.and_then(|i| prev.interfaces.get(i)) {
            let sandboxed = iface.sandbox.as_deref().is_some_and(|s| !s.is_empty());
            if iface.name != ifname || !sandboxed {
                continue;
            }
        }
        match ip.address {
            ipnetwork::IpNetwork::V4(_) if c.v4.is_none() => c.v4 = Some(ip.address),
            ipnetwork::IpNetwork::V6(_) if c.v6.is_none() => c.v6 = Some(ip.address),
            _ => {}
        }
    }
    let mut hosts = prev
        .interfaces
        .iter()
        .filter(|i| i.sandbox.as_deref().is_none_or(str::is_empty));
    if let (Some(only), None) = (hosts.next(), hosts.next()) {
        c.host_ifname = Some(only.name.clone());
    }
    c
}

fn request<'a>(
    inv: &'a Invocation,
    conf: &'a PortMapConf,
    mappings: &'a [PortMapping],
) -> Request<'a> {
    Request {
        conf,
        attachment: Attachment {
            network: &inv.config.name,
            container_id: &inv.container_id,
        },
        mappings,
    }
}

impl Plugin for Portmap {
    /// The logger (stderr, plus `log_file_path` when the config names one), so best-effort
    /// failures are visible.
    fn init(&self, inv: &Invocation) -> Result<(), CniError> {
        cni_log::setup(inv, None)
    }

    fn add(&self, inv: &Invocation) -> Result<CniResult, CniError> {
        let (conf, mappings) = parse(inv)?;
        let prev = inv.config.prev_result.as_ref().ok_or_else(|| {
            CniError::new(
                ErrorCode::InvalidConfig,
                "must be called as chained plugin: prevResult is missing",
            )
        })?;
        prev.check_interface_indexes()?;
        if mappings.is_empty() {
            return Ok(prev.clone());
        }
        let backend = conf.resolve_backend(None)?;
        let container = container_from_result(prev, &inv.ifname);
        crate::add(&request(inv, &conf, &mappings), backend, &container)?;
        Ok(prev.clone())
    }

    fn del(&self, inv: &Invocation) -> Result<(), CniError> {
        let (conf, mappings) = parse(inv)?;
        if mappings.is_empty() {
            return Ok(());
        }
        let backend = conf.resolve_backend(None)?;
        crate::del(&request(inv, &conf, &mappings), backend)?;
        Ok(())
    }

    fn check(&self, inv: &Invocation) -> Result<(), CniError> {
        let (conf, mappings) = parse(inv)?;
        let prev = inv.config.prev_result.as_ref().ok_or_else(|| {
            CniError::new(ErrorCode::InvalidConfig, "Required prevResult missing")
        })?;
        prev.check_interface_indexes()?;
        if mappings.is_empty() {
            return Ok(());
        }
        let backend = conf.resolve_backend(None)?;
        let container = container_from_result(prev, &inv.ifname);
        crate::check(&request(inv, &conf, &mappings), backend, &container)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PortmapError;
    use serde_json::json;

    #[test]
    fn address_selection_follows_upstream() {
        let prev = CniResult::from_value(
            &json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "cali0123456789a"},
                    {"name": "eth0", "sandbox": "/var/run/netns/x"},
                    {"name": "eth1", "sandbox": "/var/run/netns/x"}
                ],
                "ips": [
                    {"address": "10.9.9.9/24", "interface": 0},
                    {"address": "10.8.8.8/24", "interface": 2},
                    {"address": "10.244.1.5/32", "interface": 1},
                    {"address": "10.244.1.6/32"},
                    {"address": "fd00::5/128"}
                ]
            }),
            "1.0.0",
        )
        .unwrap();
        let c = container_from_result(&prev, "eth0");
        assert_eq!(c.v4, Some("10.244.1.5/32".parse().unwrap()));
        assert_eq!(c.v6, Some("fd00::5/128".parse().unwrap()));
        assert_eq!(c.host_ifname.as_deref(), Some("cali0123456789a"));
    }

    #[test]
    fn errors_map_to_cni_codes() {
        let e: CniError = PortmapError::BothBackendsOptions.into();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        let e: CniError = PortmapError::NftSetup("y".to_string().into()).into();
        assert_eq!(e.code.as_u32(), 999);
        assert_eq!(
            e.msg,
            "unable to set up nftables rules for port mappings: y"
        );
    }
}
