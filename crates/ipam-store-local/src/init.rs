//! First-use initialisation of an empty local datastore (there is no calico-node to do it).
//!
//! Per IP family, when the store holds no IPPool of that family: if the config names pools of
//! that family by CIDR (`ipv4_pools` / `ipv6_pools`), create exactly those
//! (`ippool-<cidr with dashes>`); else, when a default CIDR is configured, create the default
//! pool (`default-ipv4-ippool` / `default-ipv6-ippool`). Either way natOutgoing, no
//! encapsulation, `nodeSelector: all()`. Also create
//! ClusterInformation `default` with `datastoreReady: true` if absent, so tools and the
//! `calico` plugin's readiness check see a ready datastore. Safe to run concurrently from many
//! processes: every write is create-if-absent. Note: deleting every pool of a family while a
//! default is configured means it comes back on the next use.

use ipam::model::{ClusterInformation, IpPool, IpPoolSpec};
use ipam::{IpVersion, Ipam, IpamError, Key, ResourceKind, Store, StoreError};
use ipnetwork::IpNetwork;

/// IPv4 pool created in an empty local datastore unless configured otherwise. Matches the
/// examples in Calico's docs and kubeadm's common `--pod-network-cidr`.
pub const DEFAULT_IPV4_POOL: &str = "10.244.0.0/16";

/// Defaults for [`ensure_initialised`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDefaults {
    /// `None` = never create an IPv4 pool.
    pub ipv4_pool: Option<IpNetwork>,
    pub ipv4_block_size: u8,
    /// `None` (default) = never create an IPv6 pool.
    pub ipv6_pool: Option<IpNetwork>,
    pub ipv6_block_size: u8,
    /// Pools the network config names by CIDR: created instead of the default of their
    /// family, so a config that names its pool works on an empty store.
    pub named_pools: Vec<IpNetwork>,
}

impl Default for LocalDefaults {
    fn default() -> Self {
        LocalDefaults {
            ipv4_pool: DEFAULT_IPV4_POOL.parse().ok(),
            ipv4_block_size: 26,
            ipv6_pool: None,
            ipv6_block_size: 122,
            named_pools: Vec::new(),
        }
    }
}

/// Name of a pool created for a CIDR the config names: `10.77.0.0/16` → `ippool-10-77-0-0-16`.
pub fn named_pool_name(cidr: &IpNetwork) -> String {
    format!("ippool-{}", cidr.to_string().replace(['.', ':', '/'], "-"))
}

fn default_pool(name: &str, cidr: IpNetwork, block: u8) -> IpPool {
    let mut p = IpPool::new(
        "IPPool",
        name,
        IpPoolSpec {
            cidr: cidr.to_string(),
            block_size: Some(block),
            ipip_mode: Some("Never".into()),
            vxlan_mode: Some("Never".into()),
            // calico-node's defaults: NAT out of the cluster for IPv4 pools only.
            nat_outgoing: cidr.is_ipv4(),
            node_selector: Some("all()".into()),
            allowed_uses: Some(vec!["Workload".into(), "Tunnel".into()]),
            ..Default::default()
        },
    );
    p.metadata.creation_timestamp = Some(ipam::clock::rfc3339(std::time::SystemTime::now()));
    p
}

fn cluster_guid() -> String {
    // The kernel's random UUID, without dashes (Calico's GUIDs are 32 hex chars).
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().replace('-', ""))
        .unwrap_or_default()
}

/// See module docs. Returns the names of the pools it created.
pub fn ensure_initialised(store: &dyn Store, d: &LocalDefaults) -> Result<Vec<String>, IpamError> {
    let ipam = Ipam::new(store);
    let pools = ipam.list_pools()?;
    let has = |v: IpVersion| pools.iter().any(|p| p.spec.ip_version() == Some(v));
    let mut created = Vec::new();
    let wanted = [
        (
            IpVersion::V4,
            "default-ipv4-ippool",
            d.ipv4_pool,
            d.ipv4_block_size,
        ),
        (
            IpVersion::V6,
            "default-ipv6-ippool",
            d.ipv6_pool,
            d.ipv6_block_size,
        ),
    ];
    for (v, name, cidr, block) in wanted {
        if has(v) {
            continue;
        }
        let named: Vec<(String, IpNetwork)> = d
            .named_pools
            .iter()
            .filter(|c| IpVersion::of_net(c) == v)
            .map(|c| (named_pool_name(c), *c))
            .collect();
        let pools = if named.is_empty() {
            cidr.filter(|c| IpVersion::of_net(c) == v)
                .map(|c| (name.to_string(), c))
                .into_iter()
                .collect()
        } else {
            named
        };
        for (name, cidr) in pools {
            // A block cannot be larger than its pool.
            let block = block.max(cidr.prefix());
            match ipam.create_pool(&default_pool(&name, cidr, block)) {
                Ok(()) => {
                    log::info!("initialised local datastore with pool {name} ({cidr})");
                    created.push(name);
                }
                // A concurrent first use created it.
                Err(IpamError::Store(StoreError::AlreadyExists(_))) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let key = Key::resource(ResourceKind::ClusterInformation, "default");
    if store.get_opt(&key)?.is_none() {
        let mut ci = ClusterInformation::new_ready(
            cluster_guid(),
            // Versioned like calico-node's (`v3.x.y`) and like calicoctl's datastore init.
            format!("rust-calico-v{}", env!("CARGO_PKG_VERSION")),
        );
        ci.spec.cluster_type = Some("local".into());
        match store.create(&key, &ci.to_json()) {
            Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam::MemoryStore;

    #[test]
    fn empty_store_gets_default_pool_and_cluster_information() {
        let s = MemoryStore::new();
        let created = ensure_initialised(&s, &LocalDefaults::default()).unwrap();
        assert_eq!(created, vec!["default-ipv4-ippool"]);
        let pool = s
            .get(&Key::resource(ResourceKind::IpPool, "default-ipv4-ippool"))
            .unwrap();
        let p = IpPool::from_json(&pool.value).unwrap();
        assert_eq!(p.spec.cidr, "10.244.0.0/16");
        assert_eq!(p.spec.block_size, Some(26));
        assert!(p.spec.nat_outgoing);
        let ci = s
            .get(&Key::resource(ResourceKind::ClusterInformation, "default"))
            .unwrap();
        let ci = ClusterInformation::from_json(&ci.value).unwrap();
        assert_eq!(ci.spec.datastore_ready, Some(true));
        assert_eq!(ci.spec.cluster_guid.as_deref().map(str::len), Some(32));
        // Idempotent; an IPv6 default is added only for its family.
        let d = LocalDefaults {
            ipv6_pool: "fd00:10:244::/48".parse().ok(),
            ..Default::default()
        };
        assert_eq!(
            ensure_initialised(&s, &d).unwrap(),
            vec!["default-ipv6-ippool"]
        );
        assert!(ensure_initialised(&s, &d).unwrap().is_empty());
    }

    #[test]
    fn pools_named_by_cidr_replace_the_default() {
        let s = MemoryStore::new();
        let d = LocalDefaults {
            named_pools: vec![
                "10.77.0.0/16".parse().unwrap(),
                "10.78.0.0/28".parse().unwrap(),
            ],
            ..Default::default()
        };
        assert_eq!(
            ensure_initialised(&s, &d).unwrap(),
            vec!["ippool-10-77-0-0-16", "ippool-10-78-0-0-28"]
        );
        let pools = Ipam::new(&s).list_pools().unwrap();
        let cidrs: Vec<_> = pools.iter().map(|p| p.spec.cidr.as_str()).collect();
        assert_eq!(
            cidrs,
            vec!["10.77.0.0/16", "10.78.0.0/28"],
            "no default pool"
        );
        assert_eq!(pools[1].spec.block_size, Some(28), "block fits the pool");
        // Once the family has pools, nothing more is created.
        assert!(ensure_initialised(&s, &LocalDefaults::default())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn existing_pools_are_respected() {
        let s = MemoryStore::new();
        let mine = default_pool("mine", "10.99.0.0/16".parse().unwrap(), 28);
        Ipam::new(&s).create_pool(&mine).unwrap();
        assert!(ensure_initialised(&s, &LocalDefaults::default())
            .unwrap()
            .is_empty());
        let none = LocalDefaults {
            ipv4_pool: None,
            ..Default::default()
        };
        let s = MemoryStore::new();
        assert!(ensure_initialised(&s, &none).unwrap().is_empty());
        assert_eq!(Ipam::new(&s).list_pools().unwrap().len(), 0);
    }
}
