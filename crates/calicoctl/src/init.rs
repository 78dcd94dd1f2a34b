//! `calicoctl datastore init`: prepare an empty datastore the way calico-node's startup does,
//! so `calico`/`calico-ipam` can run against it without a calico-node:
//! * ClusterInformation `default` with `datastoreReady: true`, a `clusterGUID` and a
//!   `calicoVersion` (an existing one is only marked ready / given a GUID);
//! * per IP family, when the datastore has no pool of that family and a CIDR is configured,
//!   calico-node's default pool (`default-ipv4-ippool`: blockSize 26, `ipipMode: Always`,
//!   `vxlanMode: Never`, `natOutgoing: true`, `nodeSelector: all()`; `default-ipv6-ippool`:
//!   blockSize 122, no encapsulation, no NAT);
//! * the IPAM config `/calico/ipam/v2/config` with Calico's defaults when absent.
//!
//! Idempotent: running it again changes nothing (every write is create-if-absent or a CAS
//! from not-ready to ready).

use ipam::model::{ClusterInformation, IpPool, IpPoolSpec, IpamConfig};
use ipam::{IpVersion, Key, ResourceKind, Store, StoreError};
use ipnetwork::IpNetwork;

use ipam_store_local::init::{ensure_initialised, LocalDefaults};

use crate::args::InitOptions;
use crate::error::{CtlError, CtlResult};
use crate::meta;
use crate::pools;
use crate::resource::PoolDoc;

/// What `init` did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InitReport {
    /// Pools created (name, CIDR).
    pub created_pools: Vec<(String, String)>,
    pub cluster_info_created: bool,
    /// An existing ClusterInformation was marked ready (or given a GUID).
    pub cluster_info_updated: bool,
    pub ipam_config_created: bool,
}

impl InitReport {
    /// Lines printed by the command.
    pub fn lines(&self) -> Vec<String> {
        let mut v = Vec::new();
        v.push(
            match (self.cluster_info_created, self.cluster_info_updated) {
                (true, _) => {
                    "Created ClusterInformation default (datastoreReady: true)".to_string()
                }
                (_, true) => "Marked ClusterInformation default ready".to_string(),
                _ => "ClusterInformation default already ready".to_string(),
            },
        );
        for (n, c) in &self.created_pools {
            v.push(format!("Created IPPool {n} ({c})"));
        }
        if self.created_pools.is_empty() {
            v.push("No default IPPool created".to_string());
        }
        if self.ipam_config_created {
            v.push("Created IPAM configuration with defaults".to_string());
        }
        v.push("Datastore initialised".to_string());
        v
    }
}

/// calico-node's `calicoVersion` slot: ours names this implementation.
pub fn calico_version() -> String {
    format!("rust-calico-v{}", env!("CARGO_PKG_VERSION"))
}

fn default_pool(cidr: IpNetwork, block: u8) -> PoolDoc {
    let v4 = cidr.is_ipv4();
    let name = if v4 {
        "default-ipv4-ippool"
    } else {
        "default-ipv6-ippool"
    };
    let spec = IpPoolSpec {
        cidr: cidr.to_string(),
        block_size: Some(block),
        ipip_mode: Some(if v4 { "Always" } else { "Never" }.into()),
        vxlan_mode: Some("Never".into()),
        nat_outgoing: v4,
        node_selector: Some("all()".into()),
        ..Default::default()
    };
    PoolDoc {
        pool: IpPool::new("IPPool", name, spec),
        resource_version: None,
    }
}

fn ensure_cluster_information(store: &dyn Store, r: &mut InitReport) -> CtlResult<()> {
    let key = Key::resource(ResourceKind::ClusterInformation, "default");
    for _ in 0..10 {
        match store.get_opt(&key)? {
            None => {
                let mut ci = ClusterInformation::new_ready(
                    meta::new_uid().replace('-', ""),
                    calico_version(),
                );
                ci.metadata.uid = Some(meta::new_uid());
                match store.create(&key, &ci.to_json()) {
                    Ok(_) => {
                        r.cluster_info_created = true;
                        return Ok(());
                    }
                    Err(StoreError::AlreadyExists(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            Some(kv) => {
                let mut ci =
                    ClusterInformation::from_json(&kv.value).map_err(|e| CtlError::Parse {
                        what: kv.key.path(),
                        reason: e.to_string(),
                    })?;
                let no_guid = ci.spec.cluster_guid.as_deref().is_none_or(str::is_empty);
                if ci.spec.datastore_ready == Some(true) && !no_guid {
                    return Ok(());
                }
                ci.spec.datastore_ready = Some(true);
                if no_guid {
                    ci.spec.cluster_guid = Some(meta::new_uid().replace('-', ""));
                }
                match store.update(&key, &ci.to_json(), &kv.revision) {
                    Ok(_) => {
                        r.cluster_info_updated = true;
                        return Ok(());
                    }
                    Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Err(CtlError::ClusterInformationKeptChanging)
}

/// `datastore init` on the embedded local store: the pools come from the initialiser the
/// plugins run on first use (`ipam_store_local::init`: `default-ipv4-ippool` =
/// `10.244.0.0/16` unless `--ipv4-pool`/`--no-default-pool` say otherwise, no
/// encapsulation), so calicoctl and calico-ipam never seed the same store differently; the
/// rest is [`init`].
pub fn init_local(store: &dyn Store, o: &InitOptions) -> CtlResult<InitReport> {
    let local = LocalDefaults::default();
    let d = LocalDefaults {
        ipv4_pool: if o.ipv4_pool_given {
            o.ipv4_pool
        } else {
            local.ipv4_pool
        },
        ipv4_block_size: o.ipv4_block_size,
        ipv6_pool: o.ipv6_pool,
        ipv6_block_size: o.ipv6_block_size,
        named_pools: Vec::new(),
    };
    let ci_key = Key::resource(ResourceKind::ClusterInformation, "default");
    let had_ci = store.get_opt(&ci_key)?.is_some();
    let created = ensure_initialised(store, &d)?;
    let rest = InitOptions {
        ipv4_pool: None,
        ipv6_pool: None,
        ..o.clone()
    };
    let mut r = init(store, &rest)?;
    r.cluster_info_created |= !had_ci;
    r.created_pools = created
        .into_iter()
        .map(|name| {
            let cidr = if name.contains("ipv6") {
                d.ipv6_pool
            } else {
                d.ipv4_pool
            };
            let cidr = cidr.map(|c| c.to_string()).unwrap_or_default();
            (name, cidr)
        })
        .collect();
    Ok(r)
}

/// Run `datastore init`.
pub fn init(store: &dyn Store, o: &InitOptions) -> CtlResult<InitReport> {
    let mut r = InitReport::default();
    ensure_cluster_information(store, &mut r)?;
    let existing = pools::list(store)?;
    let has = |v: IpVersion| existing.iter().any(|p| p.pool.spec.ip_version() == Some(v));
    for (cidr, block) in [
        (o.ipv4_pool, o.ipv4_block_size),
        (o.ipv6_pool, o.ipv6_block_size),
    ] {
        let Some(cidr) = cidr else { continue };
        if has(IpVersion::of_net(&cidr)) {
            continue;
        }
        let doc = default_pool(cidr, block);
        match pools::create(store, &doc) {
            Ok(()) => r
                .created_pools
                .push((doc.pool.metadata.name.clone(), cidr.to_string())),
            // Another init raced us: fine.
            Err(CtlError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let cfg = serde_json::to_string(&IpamConfig::default_when_absent()).map_err(|source| {
        CtlError::Encode {
            what: "the IPAM config",
            source,
        }
    })?;
    match store.create(&Key::IpamConfig, &cfg) {
        Ok(_) => r.ipam_config_created = true,
        Err(StoreError::AlreadyExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam::MemoryStore;

    /// The local store gets the pool calico-ipam would create on first use, not
    /// calico-node's `192.168.0.0/16` with IP-in-IP.
    #[test]
    fn local_init_agrees_with_the_plugin() {
        let s = MemoryStore::new();
        let r = init_local(&s, &InitOptions::default()).unwrap();
        assert_eq!(
            r.created_pools,
            vec![(
                "default-ipv4-ippool".into(),
                ipam_store_local::init::DEFAULT_IPV4_POOL.into()
            )]
        );
        assert!(r.cluster_info_created && r.ipam_config_created);
        let p = pools::get(&s, "default-ipv4-ippool").unwrap().pool;
        assert_eq!(p.spec.ipip_mode.as_deref(), Some("Never"));
        // What the plugin's own initialiser would do next finds nothing to add.
        let plugin = ensure_initialised(&s, &LocalDefaults::default()).unwrap();
        assert!(plugin.is_empty());
        let again = init_local(&s, &InitOptions::default()).unwrap();
        assert!(again.created_pools.is_empty() && !again.cluster_info_created);

        let s = MemoryStore::new();
        let o = InitOptions {
            ipv4_pool: "10.5.0.0/16".parse().ok(),
            ipv4_pool_given: true,
            ..Default::default()
        };
        let r = init_local(&s, &o).unwrap();
        assert_eq!(
            r.created_pools,
            vec![("default-ipv4-ippool".into(), "10.5.0.0/16".into())]
        );
    }

    #[test]
    fn init_is_calico_node_like_and_idempotent() {
        let s = MemoryStore::new();
        let r = init(&s, &InitOptions::default()).unwrap();
        assert!(r.cluster_info_created && r.ipam_config_created);
        assert_eq!(
            r.created_pools,
            vec![("default-ipv4-ippool".into(), "192.168.0.0/16".into())]
        );
        let p = pools::get(&s, "default-ipv4-ippool").unwrap().pool;
        assert_eq!(p.spec.block_size, Some(26));
        assert_eq!(p.spec.ipip_mode.as_deref(), Some("Always"));
        assert_eq!(p.spec.vxlan_mode.as_deref(), Some("Never"));
        assert!(p.spec.nat_outgoing);
        let ci = s
            .get(&Key::resource(ResourceKind::ClusterInformation, "default"))
            .unwrap();
        let ci = ClusterInformation::from_json(&ci.value).unwrap();
        assert_eq!(ci.spec.datastore_ready, Some(true));
        assert_eq!(ci.spec.cluster_guid.as_deref().map(str::len), Some(32));
        let before = s.dump();
        let again = init(&s, &InitOptions::default()).unwrap();
        assert_eq!(again, InitReport::default());
        assert_eq!(s.dump(), before, "second init writes nothing");
    }

    #[test]
    fn not_ready_cluster_information_is_marked_ready() {
        let s = MemoryStore::new();
        let key = Key::resource(ResourceKind::ClusterInformation, "default");
        s.create(
            &key,
            r#"{"kind":"ClusterInformation","apiVersion":"projectcalico.org/v3","metadata":{"name":"default"},"spec":{"clusterGUID":"abc","datastoreReady":false}}"#,
        )
        .unwrap();
        let o = InitOptions {
            ipv4_pool: None,
            ..Default::default()
        };
        let r = init(&s, &o).unwrap();
        assert!(r.cluster_info_updated && r.created_pools.is_empty());
        let ci = ClusterInformation::from_json(&s.get(&key).unwrap().value).unwrap();
        assert_eq!(ci.spec.datastore_ready, Some(true));
        assert_eq!(ci.spec.cluster_guid.as_deref(), Some("abc"));
        assert!(pools::list(&s).unwrap().is_empty());
    }
}
