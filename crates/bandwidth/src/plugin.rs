//! The CNI glue: config → [`Shaping`], host veth discovery, echo of prevResult (+ ifb).

use cni::error::CniError;
use cni::result::{CniResult, Interface};
use cni::skel::{Invocation, Plugin};
use netlink::{Handle, Link};

use crate::config::Shaping;
use crate::dataplane;
use crate::error::BandwidthError;
use crate::naming::ifb_name;
use crate::tbf::TickFactor;
use crate::veth;

/// Upstream supports 0.3.0 and later: older results carry no interfaces.
const VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The `bandwidth` plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct Bandwidth;

fn host_handle() -> Result<Handle, BandwidthError> {
    Handle::new().map_err(BandwidthError::netlink("netlink socket"))
}

/// prevResult, refused (code 7) when an IP's `interface` index points past its interfaces.
fn prev_result(inv: &Invocation) -> Result<&CniResult, BandwidthError> {
    let prev = inv
        .config
        .prev_result
        .as_ref()
        .ok_or(BandwidthError::NoPrevResult)?;
    prev.check_interface_indexes()?;
    Ok(prev)
}

/// The host veth of this attachment, checked against prevResult.
fn host_veth(inv: &Invocation, host: &Handle, prev: &CniResult) -> Result<Link, BandwidthError> {
    let netns = inv.netns.as_deref().ok_or(BandwidthError::NoNetns)?;
    let link = veth::peer_in_host(host, netns, &inv.ifname)?;
    veth::require_in_result(prev, &link.name)?;
    Ok(link)
}

fn add(inv: &Invocation) -> Result<CniResult, BandwidthError> {
    let shaping = Shaping::from_netconf(&inv.config)?;
    let prev = prev_result(inv)?;
    if shaping.is_none() {
        return Ok(prev.clone());
    }
    let tick = TickFactor::from_system()?;
    let host = host_handle()?;
    let veth = host_veth(inv, &host, prev)?;
    let ifb = ifb_name(&inv.config.name, &inv.container_id);
    let mut result = prev.clone();
    if let Some(ifb) = dataplane::setup(&host, &veth, &ifb, &shaping, tick)? {
        result.interfaces.push(Interface {
            name: ifb.name,
            mac: ifb.mac.map(|m| m.to_string()).unwrap_or_default(),
            ..Default::default()
        });
    }
    log::info!(
        "shaped {} (ingress {:?}, egress {:?})",
        veth.name,
        shaping.ingress,
        shaping.egress
    );
    Ok(result)
}

fn del(inv: &Invocation) -> Result<(), BandwidthError> {
    // The ifb name depends only on the identity, so bad values must not block teardown.
    if let Err(e) = Shaping::from_netconf(&inv.config) {
        log::warn!("ignoring invalid bandwidth config on DEL: {e}");
    }
    dataplane::teardown(
        &host_handle()?,
        &ifb_name(&inv.config.name, &inv.container_id),
    )
}

fn check(inv: &Invocation) -> Result<(), BandwidthError> {
    let shaping = Shaping::from_netconf(&inv.config)?;
    let prev = prev_result(inv)?;
    if shaping.is_none() {
        return Ok(());
    }
    let tick = TickFactor::from_system()?;
    let host = host_handle()?;
    let veth = host_veth(inv, &host, prev)?;
    let ifb = ifb_name(&inv.config.name, &inv.container_id);
    dataplane::verify(&host, &veth, &ifb, &shaping, tick)
}

impl Plugin for Bandwidth {
    fn supported_versions(&self) -> &'static [&'static str] {
        VERSIONS
    }

    fn init(&self, inv: &Invocation) -> Result<(), CniError> {
        cni_log::setup(inv, None)
    }

    fn add(&self, inv: &Invocation) -> Result<CniResult, CniError> {
        Ok(add(inv)?)
    }

    fn del(&self, inv: &Invocation) -> Result<(), CniError> {
        Ok(del(inv)?)
    }

    fn check(&self, inv: &Invocation) -> Result<(), CniError> {
        Ok(check(inv)?)
    }
}
