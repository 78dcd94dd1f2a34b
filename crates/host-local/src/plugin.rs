//! CNI glue: maps invocations onto [`crate::ops`] (error codes: see [`crate::error`]).

use cni::skel::{Invocation, Plugin};
use cni::{CniError, CniResult, Dns, IpConfig, Route};

use crate::config::IpamConfig;
use crate::ops;

/// The host-local IPAM plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostLocal;

fn load(inv: &Invocation) -> Result<IpamConfig, CniError> {
    IpamConfig::from_value(&inv.config.raw, &inv.args_raw).map_err(CniError::from)
}

fn routes(conf: &IpamConfig) -> Result<Vec<Route>, CniError> {
    conf.routes
        .iter()
        .map(|r| {
            serde_json::from_value(r.clone()).map_err(|source| {
                crate::error::Error::InvalidRoute {
                    route: r.to_string(),
                    source,
                }
                .into()
            })
        })
        .collect()
}

impl Plugin for HostLocal {
    fn add(&self, inv: &Invocation) -> Result<CniResult, CniError> {
        let conf = load(inv)?;
        let routes = routes(&conf)?;
        let out = ops::add(&conf, &inv.container_id, &inv.ifname).map_err(CniError::from)?;
        // Run by calico that has died meanwhile (its DEL may have run): keep nothing.
        if let Err(e) = cni::delegate::ensure_delegator_alive() {
            let _ = ops::del(&conf, &inv.container_id, &inv.ifname);
            return Err(e);
        }
        let dns = out.dns.map_or_else(Dns::default, |d| Dns {
            nameservers: d.nameservers,
            domain: d.domain.unwrap_or_default(),
            search: d.search,
            options: d.options,
        });
        Ok(CniResult {
            interfaces: Vec::new(),
            ips: out
                .ips
                .into_iter()
                .map(|a| IpConfig {
                    address: a.address,
                    gateway: Some(a.gateway),
                    interface: None,
                })
                .collect(),
            routes,
            dns,
        })
    }

    fn del(&self, inv: &Invocation) -> Result<(), CniError> {
        let conf = load(inv)?;
        ops::del(&conf, &inv.container_id, &inv.ifname).map_err(CniError::from)
    }

    fn check(&self, inv: &Invocation) -> Result<(), CniError> {
        let conf = load(inv)?;
        ops::check(&conf, &inv.container_id, &inv.ifname).map_err(CniError::from)
    }

    /// Releases reservations of attachments the runtime no longer knows (spec 1.1 GC).
    fn gc(&self, inv: &Invocation) -> Result<(), CniError> {
        let conf = load(inv)?;
        let valid: Vec<(&str, &str)> = inv
            .config
            .valid_attachments
            .iter()
            .flatten()
            .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
            .collect();
        Ok(ops::gc(&conf, &valid).map(drop)?)
    }
}
