//! portmap: hostPort DNAT for chained CNI attachments, with iptables and nftables backends.
//!
//! Owns: the `portmap` plugin's config (`snat`, `masqAll`, `markMasqBit`,
//! `externalSetMarkChain`, `conditionsV4/V6`, `backend`), validation of
//! `runtimeConfig.portMappings`, pure rendering of netfilter changes
//! ([`iptables::render`], [`nft::render`], golden-tested under `testdata/portmap/`), applying
//! them in one transaction per family and operation (nf_tables netlink, `iptables-restore
//! --noflush -w`, `nft -f -`), `route_localnet` for 127.0.0.1 access and best-effort UDP conntrack cleanup.
//!
//! * iptables: upstream's chains, rule shapes, comments and marks (`CNI-HOSTPORT-DNAT`,
//!   `CNI-DN-<hash>`, `CNI-HOSTPORT-SETMARK`, `CNI-HOSTPORT-MASQ`), so a node can switch between
//!   this plugin and the Go one in both directions and each DEL removes the other's rules. On
//!   iptables-nft nodes a pod's rules are written and removed over nf_tables netlink, encoded
//!   exactly as iptables-nft encodes them and found again by rule handle ([`iptables::direct`]),
//!   because `iptables-restore` loads every rule of the nat table for any `-A`/`-D`; the shared
//!   rules are checked over netlink too, so a steady ADD/DEL execs nothing. The first
//!   ADD on a node, iptables-legacy nodes and rules outside that encoder go through
//!   `iptables-restore`, reading state with per-chain listings (`iptables -S <chain>`);
//!   `iptables-save` is a last resort. What still grows with the node's mappings is the kernel's
//!   own work on this layout (validating every chain reachable from the base chains when a rule
//!   is added, rebuilding the 10,000-rule `CNI-HOSTPORT-DNAT` on every change).
//! * nftables: upstream's `cni_hostport` tables and base chains, with per-attachment state kept
//!   in set/map elements so ADD and DEL never list the ruleset and never add rules (see
//!   [`nft::render`]): the backend whose cost does not grow with the node's mappings. Elements
//!   are changed over nf_tables netlink; `nft -f -` writes the static structures only when an
//!   ADD finds them missing or stale (one rule dump per chain we own tells), so a steady
//!   ADD/DEL/CHECK execs nothing.
//!
//! Everything an attachment owns is found from network name + container ID (+ the mappings),
//! never from prevResult, so DEL works with nothing but the config and the environment.
//!
//! Must NOT: modify the result it is chained with, touch chains/tables of other software, list
//! the whole ruleset on the ADD/DEL fast paths, or do any netfilter work (not even backend
//! detection) when there are no port mappings.

pub mod config;
mod conntrack;
pub mod error;
mod exec;
pub mod iptables;
mod localnet;
pub mod mapping;
pub mod naming;
pub mod nft;
pub mod plugin;

use ipnetwork::IpNetwork;

pub use config::{Backend, PortMapConf};
pub use error::PortmapError;
pub use mapping::{Family, PortMapping, Protocol};
pub use naming::Attachment;
pub use plugin::Portmap;

/// One invocation's inputs that rendering depends on.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub conf: &'a PortMapConf,
    pub attachment: Attachment<'a>,
    pub mappings: &'a [PortMapping],
}

#[cfg(test)]
impl<'a> Request<'a> {
    /// What the rendering unit tests use: container "c" on network "n".
    pub(crate) fn for_test(conf: &'a PortMapConf, mappings: &'a [PortMapping]) -> Request<'a> {
        Request {
            conf,
            attachment: Attachment {
                network: "n",
                container_id: "c",
            },
            mappings,
        }
    }
}

/// The container side of an ADD/CHECK, taken from prevResult.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Container {
    /// At most one address per family; the prefix length is kept (it scopes the hairpin match).
    pub v4: Option<IpNetwork>,
    pub v6: Option<IpNetwork>,
    /// The host-side interface listed in prevResult (no sandbox), used for `route_localnet` when
    /// the route lookup finds nothing.
    pub host_ifname: Option<String>,
}

impl Container {
    pub fn addrs(&self) -> Vec<IpNetwork> {
        self.v4.iter().chain(self.v6.iter()).copied().collect()
    }
}

fn udp_ports(req: &Request, family: Family) -> Vec<u16> {
    let mut ports: Vec<u16> = req
        .mappings
        .iter()
        .filter(|m| m.protocol == Protocol::Udp && m.applies_to(family))
        .map(|m| m.host_port)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Installs the mappings for the container's addresses. Everything that can be refused (the
/// `route_localnet` interface) is decided before the first change; if a step fails after the
/// first change, this attachment's rules are removed again, so a failed ADD leaves nothing.
pub fn add(req: &Request, backend: Backend, container: &Container) -> Result<(), PortmapError> {
    if req.mappings.is_empty() {
        return Ok(());
    }
    let addrs = container.addrs();
    if addrs.is_empty() {
        log::warn!("prevResult has no container address; no port mappings installed");
        return Ok(());
    }
    let localnet_dev = localnet_device(req, container)?;
    let mut changed = false;
    let r = install(req, backend, &addrs, localnet_dev.as_deref(), &mut changed);
    if r.is_err() && changed {
        if let Err(e) = del(req, backend) {
            log::warn!("rollback of the failed ADD: {e}");
        }
    }
    r
}

/// The host interface that needs `route_localnet` (snat and an IPv4 pod), checked to exist.
fn localnet_device(req: &Request, container: &Container) -> Result<Option<String>, PortmapError> {
    let (true, Some(IpNetwork::V4(v4))) = (req.conf.snat, container.v4) else {
        return Ok(None);
    };
    let Some(dev) = localnet::host_interface(v4.ip(), container.host_ifname.as_deref()) else {
        return Ok(None);
    };
    // The name may come from prevResult (no route to the pod): a name that is not an interface
    // here would only fail after the rules are in place.
    let exists = !dev.contains('/')
        && std::path::Path::new(&format!("/proc/sys/net/ipv4/conf/{dev}")).is_dir();
    if !exists {
        return Err(PortmapError::field(
            "prevResult.interfaces",
            format!(
                "host interface {dev:?} (no sandbox) does not exist on this host and there is \
                 no route to {}",
                v4.ip()
            ),
        ));
    }
    Ok(Some(dev))
}

/// The changes of an ADD in order; `changed` is set once netfilter state may have changed.
fn install(
    req: &Request,
    backend: Backend,
    addrs: &[IpNetwork],
    localnet_dev: Option<&str>,
    changed: &mut bool,
) -> Result<(), PortmapError> {
    match backend {
        Backend::Iptables => {
            for addr in addrs {
                // One family's restore/netlink transaction is atomic; a failure in the second
                // family leaves the first one's rules, which the rollback removes.
                iptables::add(req, addr)?;
                *changed = true;
            }
        }
        Backend::Nftables => {
            // One transaction (or a failed first one and a retry): nothing changed on failure.
            nft::add(req, addrs)?;
            *changed = true;
        }
    }
    for addr in addrs {
        conntrack::flush_udp(
            Family::of(&addr.ip()),
            &udp_ports(req, Family::of(&addr.ip())),
        );
    }
    if let Some(dev) = localnet_dev {
        localnet::enable(dev)?;
    }
    Ok(())
}

/// Removes everything this attachment installed, in both families. Needs no container address.
pub fn del(req: &Request, backend: Backend) -> Result<(), PortmapError> {
    if req.mappings.is_empty() {
        return Ok(());
    }
    match backend {
        Backend::Iptables => iptables::del(req)?,
        Backend::Nftables => nft::del(req)?,
    }
    for family in Family::BOTH {
        conntrack::flush_udp(family, &udp_ports(req, family));
    }
    Ok(())
}

/// Verifies the rules for the families the container has an address in.
pub fn check(req: &Request, backend: Backend, container: &Container) -> Result<(), PortmapError> {
    if req.mappings.is_empty() {
        return Ok(());
    }
    let addrs = container.addrs();
    match backend {
        Backend::Iptables => {
            for addr in &addrs {
                iptables::check(req, addr)?;
            }
            Ok(())
        }
        Backend::Nftables => nft::check(req, &addrs),
    }
}
