//! Finding the host side of the pod's veth: the kernel's peer of `CNI_IFNAME` inside the
//! container netns, which prevResult must list by name without a `sandbox` (upstream's rule,
//! so a main plugin that lists the wrong interface fails loudly instead of shaping another pod).

use std::path::Path;

use cni::result::CniResult;
use netlink::{Handle, Link};

use crate::error::BandwidthError;

/// The host veth's ifindex in `host` for container interface `ifname` in `netns_path`.
pub fn peer_in_host(
    host: &Handle,
    netns_path: &Path,
    ifname: &str,
) -> Result<Link, BandwidthError> {
    let ns = netns::NetNs::open(netns_path).map_err(|source| BandwidthError::OpenNetns {
        path: netns_path.to_path_buf(),
        source,
    })?;
    let ctr = Handle::in_netns(&ns).map_err(BandwidthError::netlink(format!(
        "netlink socket in netns {}",
        netns_path.display()
    )))?;
    let peer = ctr.veth_peer_index(ifname).map_err(|e| match e {
        netlink::Error::LinkNotFound(_) => BandwidthError::NoContainerInterface {
            ifname: ifname.to_string(),
            netns: netns_path.to_path_buf(),
        },
        netlink::Error::NotVeth(_) => BandwidthError::NotVeth {
            ifname: ifname.to_string(),
        },
        netlink::Error::NoVethPeer(_) => BandwidthError::NoVethPeer {
            ifname: ifname.to_string(),
        },
        other => BandwidthError::Netlink {
            op: format!("get container interface {ifname:?}"),
            source: other,
        },
    })?;
    match host
        .link_by_index(peer)
        .map_err(BandwidthError::netlink(format!("get host link #{peer}")))?
    {
        Some(link) if link.is_veth() => Ok(link),
        _ => Err(BandwidthError::PeerNotInHost { peer }),
    }
}

/// Requires prevResult to list `host_name` as a host-side interface (no sandbox).
pub fn require_in_result(prev: &CniResult, host_name: &str) -> Result<(), BandwidthError> {
    if prev.interfaces.is_empty() {
        return Err(BandwidthError::NoInterfaces);
    }
    let listed = prev
        .interfaces
        .iter()
        .any(|i| i.name == host_name && i.sandbox.as_deref().is_none_or(str::is_empty));
    if listed {
        Ok(())
    } else {
        Err(BandwidthError::HostVethNotInResult {
            host_veth: host_name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(v: serde_json::Value) -> CniResult {
        CniResult::from_value(&v, "1.0.0").unwrap()
    }

    #[test]
    fn host_interface_must_be_listed_without_sandbox() {
        let ok = result(json!({"interfaces":[
            {"name":"cali12345678901"},{"name":"eth0","sandbox":"/run/netns/x"}]}));
        assert!(require_in_result(&ok, "cali12345678901").is_ok());
        // Calico 3.2.x put a sandbox on the host veth (plugins#242): refused.
        let sandboxed = result(json!({"interfaces":[{"name":"cali12345678901","sandbox":"eth0"}]}));
        let e = require_in_result(&sandboxed, "cali12345678901").unwrap_err();
        assert!(matches!(e, BandwidthError::HostVethNotInResult { .. }));
        assert!(e.to_string().contains("cali12345678901"), "{e}");
        let e = require_in_result(&result(json!({"ips":[]})), "cali1").unwrap_err();
        assert_eq!(e.to_string(), "no interfaces provided in prevResult");
        // An empty sandbox string counts as "host side".
        let empty = result(json!({"interfaces":[{"name":"veth1","sandbox":""}]}));
        assert!(require_in_result(&empty, "veth1").is_ok());
        assert!(require_in_result(&empty, "veth2").is_err());
    }
}
