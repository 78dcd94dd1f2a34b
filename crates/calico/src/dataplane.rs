//! Calico's Linux dataplane for one pod: a veth pair, /32 (/128) addresses, the 169.254.1.1
//! link-local next hop, host-side /32 routes and the sysctls that make proxy ARP/NDP work.
//! All through netlink and /proc/sys; container-side /proc/sys writes run on a thread inside
//! the pod's namespace.

use ipnetwork::IpNetwork;
use netlink::{AddrOptions, Handle, IpFamily, MacAddr, Route, RouteFilter, Scope};
use netns::{in_netns, sysctl, NetNs};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The host side of every pod veth has this MAC, so the pod's neighbour entry for its gateway
/// is the same everywhere.
pub const HOST_MAC: MacAddr = MacAddr([0xee; 6]);
/// The IPv4 next hop every pod uses; the host veth answers ARP for it by proxy.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The host veth's EUI-64 link-local address (from [`HOST_MAC`]): the pod's IPv6 next hop.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Netlink(#[from] netlink::Error),
    #[error(transparent)]
    Netns(#[from] netns::Error),
    #[error("interface {0:?} already exists in the container network namespace")]
    InterfaceExists(String),
    #[error("route {dst} (scope link) already exists for an interface other than {ours:?}: it is on {theirs:?}")]
    RouteConflict {
        dst: IpNetwork,
        ours: String,
        theirs: String,
    },
    /// CHECK (or a setup step's own check) found the pod not as [`setup`] leaves it.
    #[error("check failed: {mismatch}")]
    Check { mismatch: String },
    #[error(
        "host interface {name} belongs to another live container ({owner}, its peer is still in \
         that container's network namespace): refusing to replace it (in plain mode container \
         ids that share their first 11 characters map to the same host interface name)"
    )]
    HostVethInUse { name: String, owner: String },
    /// The host veth has no IPv6 link-local address, or not the EUI-64 one of [`HOST_MAC`]
    /// (`addr_gen_mode` other than eui64 on the host): the pod's IPv6 next hop would be wrong.
    #[error("{problem}")]
    HostLinkLocal { problem: LinkLocalProblem },
}

/// What is wrong with the host veth's IPv6 link-local address (see [`Error::HostLinkLocal`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkLocalProblem {
    #[error(
        "failed to get IPv6 link-local address for host side of the pod interface {name}: check \
         that IPv6 is enabled on the host and net.ipv6.conf.default.addr_gen_mode is 0 (eui64)"
    )]
    Missing { name: String },
    #[error(
        "host-side interface {name} got wrong link-local IP address {got} (expected \
         {GATEWAY_V6}, the EUI-64 address of {HOST_MAC}): check \
         net.ipv6.conf.default.addr_gen_mode on the host (0, eui64, is required)"
    )]
    Wrong { name: String, got: Ipv6Addr },
}

impl Error {
    fn check(mismatch: impl Into<String>) -> Self {
        Error::Check {
            mismatch: mismatch.into(),
        }
    }
}

/// Dataplane failures are Calico's generic error (999): the runtime cannot act on them beyond
/// reporting, and DEL retries them anyway.
impl cni::CniCode for Error {
    fn cni_code(&self) -> cni::ErrorCode {
        cni::error::GENERIC
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// What one pod interface should look like.
#[derive(Debug, Clone)]
pub struct PodInterface {
    pub host_veth: String,
    pub ifname: String,
    /// The pod's addresses as /32 and /128.
    pub addresses: Vec<IpNetwork>,
    /// Destinations routed via the link-local next hop inside the pod (default routes unless the
    /// IPAM config says otherwise).
    pub routes: Vec<IpNetwork>,
    pub mtu: u32,
    pub num_queues: u32,
    pub allow_ip_forwarding: bool,
    /// A MAC for the container side (the `hwAddr` annotation); the kernel picks one otherwise.
    pub container_mac: Option<MacAddr>,
    /// Program the host-side /32 routes (Calico leaves them to Felix in a few IPAM cases).
    pub host_routes: bool,
    /// Recorded as the host veth's alias ([`crate::identity::Workload::veth_owner`]).
    pub owner: String,
}

impl PodInterface {
    fn has(&self, family: IpFamily) -> bool {
        self.addresses
            .iter()
            .any(|a| IpFamily::of(&a.ip()) == family)
    }

    fn routes_of(&self, family: IpFamily) -> impl Iterator<Item = &IpNetwork> {
        self.routes
            .iter()
            .filter(move |r| IpFamily::of(&r.ip()) == family)
    }
}

/// Rewrites an address to a host prefix (/32 or /128), as every pod address is.
pub fn host_prefix(addr: IpNetwork) -> IpNetwork {
    let len = if addr.is_ipv4() { 32 } else { 128 };
    IpNetwork::new(addr.ip(), len).expect("full-length prefix is valid")
}

fn gateway(family: IpFamily) -> IpAddr {
    match family {
        IpFamily::V4 => IpAddr::V4(GATEWAY_V4),
        IpFamily::V6 => IpAddr::V6(GATEWAY_V6),
    }
}

fn write_sysctl(key: Result<String>, value: &str, fatal: bool) -> Result<()> {
    let key = key?;
    match sysctl::write(&key, value) {
        Ok(_) => Ok(()),
        Err(e) if !fatal => {
            log::warn!("ignoring failure to set {key}={value}: {e}");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn v4conf(ifname: &str, name: &str) -> Result<String> {
    Ok(sysctl::ipv4_conf(ifname, name)?)
}

fn v6conf(ifname: &str, name: &str) -> Result<String> {
    Ok(sysctl::ipv6_conf(ifname, name)?)
}

/// Host-side sysctls of Calico's dataplane (this thread must be in the host namespace).
fn host_sysctls(pod: &PodInterface) -> Result<()> {
    let h = pod.host_veth.as_str();
    if pod.has(IpFamily::V4) {
        write_sysctl(v4conf(h, "route_localnet"), "1", true)?;
        write_sysctl(Ok(sysctl::ipv4_neigh(h, "proxy_delay")?), "0", false)?;
        write_sysctl(v4conf(h, "proxy_arp"), "1", true)?;
        write_sysctl(v4conf(h, "forwarding"), "1", true)?;
    }
    if pod.has(IpFamily::V6) {
        write_sysctl(v6conf(h, "accept_dad"), "0", true)?;
        write_sysctl(v6conf(h, "disable_ipv6"), "0", true)?;
        write_sysctl(v6conf(h, "proxy_ndp"), "1", true)?;
        write_sysctl(v6conf(h, "forwarding"), "1", true)?;
    }
    write_sysctl(v6conf(h, "accept_ra"), "0", false)
}

/// Fails when the pod interface already exists: an ADD must never take over an interface it did
/// not create. Called before any IP is allocated.
pub fn ensure_absent(ns: &NetNs, ifname: &str) -> Result<()> {
    let cont = Handle::in_netns(ns)?;
    if cont.link_by_name(ifname)?.is_some() {
        return Err(Error::InterfaceExists(ifname.to_string()));
    }
    Ok(())
}

/// The owner recorded on `link` when it is another workload's and still attached: an alias of
/// ours naming someone else, on a veth whose peer is in another namespace. (A veth dies with the
/// namespace of either end, so an existing host veth with a peer elsewhere is in use until its
/// owner's DEL.) A link without an owner record (Calico's, or ours before owners were recorded)
/// or with a peer back in the host namespace is stale and may be replaced, as Calico does.
fn live_foreign_owner(link: &netlink::Link, owner: &str) -> Option<String> {
    let recorded = link
        .alias
        .as_deref()
        .filter(|a| a.starts_with(crate::identity::VETH_OWNER_PREFIX))?;
    let attached = link.is_veth() && link.link_netnsid.is_some();
    (recorded != owner && attached).then(|| recorded.to_string())
}

/// Fails when `name` is another live workload's host veth (its peer is still in another namespace).
/// Called before any IP is allocated; [`setup`] checks again before replacing a link.
pub fn ensure_host_veth_free(name: &str, owner: &str) -> Result<()> {
    let host = Handle::new()?;
    match host.link_by_name(name)? {
        Some(link) => match live_foreign_owner(&link, owner) {
            Some(other) => Err(Error::HostVethInUse {
                name: name.to_string(),
                owner: other,
            }),
            None => Ok(()),
        },
        None => Ok(()),
    }
}

/// Wires the pod. On error the caller runs [`remove`] (the veth may be half configured).
/// Returns the container interface's MAC.
pub fn setup(ns: &NetNs, pod: &PodInterface) -> Result<MacAddr> {
    let host = Handle::new()?;
    let cont = Handle::in_netns(ns)?;
    // A veth left by a previous sandbox of the same pod (Kubernetes names are per pod, not per
    // sandbox) is replaced, as Calico does; another live workload's is not.
    if let Some(stale) = host.link_by_name(&pod.host_veth)? {
        if let Some(other) = live_foreign_owner(&stale, &pod.owner) {
            return Err(Error::HostVethInUse {
                name: pod.host_veth.clone(),
                owner: other,
            });
        }
        log::info!("deleting stale host interface {}", pod.host_veth);
        host.delete_link(stale.index)?;
    }
    let mut spec = netlink::VethSpec::new(&pod.host_veth, &pod.ifname)
        .mac(HOST_MAC)
        .mtu(pod.mtu)
        .num_queues(pod.num_queues)
        .peer_netns(ns);
    if let Some(mac) = pod.container_mac {
        spec = spec.peer_mac(mac);
    }
    let host_link = host.create_veth(&spec)?;
    // Recorded at once so no later ADD mistakes it for a stale veth; a veth we could not mark
    // is removed here, because the caller's undo only removes veths marked as ours.
    if let Err(e) = host.set_alias(host_link.index, &pod.owner) {
        if let Err(de) = host.delete_link(host_link.index) {
            log::warn!("removing unmarked host veth {}: {de}", pod.host_veth);
        }
        return Err(e.into());
    }
    host_sysctls(pod)?;
    let v4 = pod.has(IpFamily::V4);
    let v6 = pod.has(IpFamily::V6);
    let ifname = pod.ifname.clone();
    let allow_fwd = if pod.allow_ip_forwarding { "1" } else { "0" };
    if v6 {
        // DAD would delay the address for seconds; it must be off before the link comes up.
        in_netns(ns, || {
            write_sysctl(v6conf(&ifname, "accept_dad"), "0", true)
        })??;
    }
    host.set_link_up(host_link.index)?;
    let link = cont.link(&pod.ifname)?;
    cont.set_link_up(link.index)?;
    let mac = link
        .mac
        .ok_or_else(|| Error::check(format!("{} has no MAC address", pod.ifname)))?;

    if v4 {
        let gw = IpNetwork::new(IpAddr::V4(GATEWAY_V4), 32).expect("valid");
        cont.add_route(&Route::new(gw).dev(link.index).scope(Scope::Link))?;
        // A permanent entry for the next hop: no ARP round trip before the first packet, and
        // no dependence on the host having a route that makes proxy ARP answer.
        cont.replace_neighbour(link.index, IpAddr::V4(GATEWAY_V4), HOST_MAC)?;
        for dst in pod.routes_of(IpFamily::V4) {
            cont.add_route(&Route::new(*dst).via(IpAddr::V4(GATEWAY_V4)).dev(link.index))?;
        }
    }
    if v6 {
        in_netns(ns, || -> Result<()> {
            for i in ["all", "default", "lo"] {
                write_sysctl(v6conf(i, "disable_ipv6"), "0", true)?;
            }
            Ok(())
        })??;
        let next_hop = host_link_local(&host, host_link.index, &pod.host_veth)?;
        for dst in pod.routes_of(IpFamily::V6) {
            cont.add_route(&Route::new(*dst).via(IpAddr::V6(next_hop)).dev(link.index))?;
        }
    }
    for addr in &pod.addresses {
        let opts = AddrOptions {
            nodad: addr.is_ipv6(),
        };
        cont.add_address(link.index, *addr, opts)?;
    }
    in_netns(ns, || -> Result<()> {
        if v4 {
            write_sysctl(Ok("net/ipv4/ip_forward".into()), allow_fwd, true)?;
        }
        if v6 {
            write_sysctl(v6conf("all", "forwarding"), allow_fwd, true)?;
        }
        Ok(())
    })??;
    if pod.host_routes {
        for addr in &pod.addresses {
            add_host_route(&host, host_link.index, &pod.host_veth, *addr)?;
        }
    }
    Ok(mac)
}

/// The host veth's IPv6 link-local address: the pod's IPv6 next hop, read as Calico reads it.
/// It must be the EUI-64 address of [`HOST_MAC`] (what every pod's neighbour cache and Felix
/// expect). The kernel may still be assigning it, or may have derived it from a MAC set a moment
/// too late: retry, toggling the link, for half a second as Calico does; then fail loudly instead
/// of wiring a pod whose IPv6 cannot work (e.g. `addr_gen_mode` stable-privacy/random/none).
fn host_link_local(host: &Handle, index: u32, name: &str) -> Result<Ipv6Addr> {
    let mut problem = LinkLocalProblem::Missing {
        name: name.to_string(),
    };
    for attempt in 0..10 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let addrs = host.addresses(Some(index), Some(IpFamily::V6))?;
        let link_local = addrs.iter().find_map(|a| match a.addr.ip() {
            IpAddr::V6(ip) if ip.segments()[0] & 0xffc0 == 0xfe80 => Some(ip),
            _ => None,
        });
        match link_local {
            Some(ip) if ip == GATEWAY_V6 => return Ok(ip),
            Some(ip) => {
                problem = LinkLocalProblem::Wrong {
                    name: name.to_string(),
                    got: ip,
                };
                // A re-up recomputes the address from the current MAC.
                host.set_link_down(index)?;
                host.set_link_up(index)?;
            }
            None => {
                problem = LinkLocalProblem::Missing {
                    name: name.to_string(),
                };
            }
        }
    }
    Err(Error::HostLinkLocal { problem })
}

/// `<ip>/32 dev <host veth> scope link`; an identical route (Felix may have been first) is fine,
/// the same destination on another interface is an error naming it.
fn add_host_route(host: &Handle, index: u32, name: &str, addr: IpNetwork) -> Result<()> {
    let route = Route::new(addr).dev(index).scope(Scope::Link);
    match host.add_route(&route) {
        Err(e) if e.is_exists() => {
            let existing = host.routes(RouteFilter {
                family: Some(IpFamily::of(&addr.ip())),
                table: Some(netlink::RT_TABLE_MAIN),
                ..Default::default()
            })?;
            let owner = existing.iter().find(|r| r.dst == addr);
            match owner.and_then(|r| r.oif) {
                Some(oif) if oif == index => Ok(()),
                Some(oif) => Err(Error::RouteConflict {
                    dst: addr,
                    ours: name.to_string(),
                    theirs: host
                        .link_by_index(oif)?
                        .map_or_else(|| format!("#{oif}"), |l| l.name),
                }),
                None => Err(e.into()),
            }
        }
        other => Ok(other?),
    }
}

/// Removes the pod interface (which takes the host veth and its routes with it). A vanished
/// namespace or interface is success: DEL must be repeatable.
pub fn remove(netns_path: Option<&std::path::Path>, ifname: &str) -> Result<()> {
    let Some(path) = netns_path else {
        return Ok(());
    };
    let ns = match NetNs::open(path) {
        Ok(ns) => ns,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let cont = Handle::in_netns(&ns)?;
    match cont.delete_link_by_name(ifname) {
        Err(e) if e.is_not_found() => Ok(()),
        other => Ok(other?),
    }
}

/// Removes a host veth this workload created and left behind (when the container side was
/// never created or moved). A veth recorded as someone else's, or without a record, is not ours.
pub fn remove_host_veth(name: &str, owner: &str) -> Result<()> {
    let host = Handle::new()?;
    match host.link_by_name(name)? {
        Some(link) if link.alias.as_deref() == Some(owner) => match host.delete_link(link.index) {
            Err(e) if e.is_not_found() => Ok(()),
            other => Ok(other?),
        },
        Some(_) => {
            log::info!("leaving host interface {name}: not created by this workload");
            Ok(())
        }
        None => Ok(()),
    }
}

fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(Error::check(what()))
    }
}

/// Verifies that the pod still looks the way [`setup`] left it.
pub fn check(ns: &NetNs, pod: &PodInterface) -> Result<()> {
    let host = Handle::new()?;
    let cont = Handle::in_netns(ns)?;
    let link = cont.link_by_name(&pod.ifname)?.ok_or_else(|| {
        Error::check(format!(
            "interface {} not found in the container",
            pod.ifname
        ))
    })?;
    ensure(link.up, || format!("interface {} is down", pod.ifname))?;
    let peer = cont.veth_peer_index(&pod.ifname)?;
    let host_link = host
        .link_by_name(&pod.host_veth)?
        .ok_or_else(|| Error::check(format!("host interface {} not found", pod.host_veth)))?;
    ensure(host_link.index == peer, || {
        format!("{} is not the veth peer of {}", pod.host_veth, pod.ifname)
    })?;
    ensure(host_link.up, || {
        format!("host interface {} is down", pod.host_veth)
    })?;
    ensure(host_link.mac == Some(HOST_MAC), || {
        format!(
            "host interface {} does not have MAC {HOST_MAC}",
            pod.host_veth
        )
    })?;
    let addrs = cont.addresses(Some(link.index), None)?;
    for want in &pod.addresses {
        ensure(addrs.iter().any(|a| a.addr == *want), || {
            format!("address {want} missing on {}", pod.ifname)
        })?;
    }
    let routes = cont.routes(RouteFilter {
        oif: Some(link.index),
        table: Some(netlink::RT_TABLE_MAIN),
        ..Default::default()
    })?;
    for family in [IpFamily::V4, IpFamily::V6] {
        if !pod.has(family) {
            continue;
        }
        if family == IpFamily::V4 {
            ensure(
                routes.iter().any(|r| {
                    r.dst.ip() == IpAddr::V4(GATEWAY_V4)
                        && r.dst.prefix() == 32
                        && r.scope == Scope::Link
                }),
                || format!("route {GATEWAY_V4}/32 scope link missing on {}", pod.ifname),
            )?;
        }
        for dst in pod.routes_of(family) {
            ensure(
                routes
                    .iter()
                    .any(|r| r.dst == *dst && r.gateway == Some(gateway(family))),
                || {
                    format!(
                        "route {dst} via {} missing in the container",
                        gateway(family)
                    )
                },
            )?;
        }
    }
    if pod.host_routes {
        let host_routes = host.routes(RouteFilter {
            oif: Some(host_link.index),
            table: Some(netlink::RT_TABLE_MAIN),
            ..Default::default()
        })?;
        for addr in &pod.addresses {
            ensure(host_routes.iter().any(|r| r.dst == *addr), || {
                format!("host route {addr} dev {} missing", pod.host_veth)
            })?;
        }
    }
    let expect = |key: Result<String>, value: &str| -> Result<()> {
        let key = key?;
        let got = sysctl::read(&key)?;
        ensure(got == value, || {
            format!("sysctl {key} is {got}, expected {value}")
        })
    };
    let h = pod.host_veth.as_str();
    if pod.has(IpFamily::V4) {
        expect(v4conf(h, "proxy_arp"), "1")?;
        expect(v4conf(h, "route_localnet"), "1")?;
        expect(v4conf(h, "forwarding"), "1")?;
    }
    if pod.has(IpFamily::V6) {
        expect(v6conf(h, "proxy_ndp"), "1")?;
        expect(v6conf(h, "forwarding"), "1")?;
    }
    Ok(())
}
