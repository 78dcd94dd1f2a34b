//! Pool selection: which IPPools a request may allocate from.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use log::warn;

use super::{IntendedUse, Ipam};
use crate::error::{InvalidArgument, IpamError, IpamResult, NoPools};
use crate::keys::{IpVersion, Key, ListPrefix, ResourceKind};
use crate::model::{IpPool, Node};
use crate::selector::Selector;
use crate::store::{KvPair, StoreError, StoreResult};

/// A pool usable for allocation, with its parsed CIDR and effective block size.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pub name: String,
    pub cidr: IpNetwork,
    pub block_prefix: u8,
    pub pool: IpPool,
}

impl Pool {
    /// Block containing `ip` in this pool.
    pub(crate) fn block_of(&self, ip: IpAddr) -> Option<IpNetwork> {
        crate::blockgen::block_of(ip, self.block_prefix)
    }

    /// Calico's `SelectsNode`. A selector that does not parse is an error naming the pool
    /// (Calico fails the request rather than silently skipping the pool).
    pub(crate) fn selects_node(&self, labels: &BTreeMap<String, String>) -> IpamResult<bool> {
        self.selects(
            "nodeSelector",
            self.pool.spec.node_selector.as_deref(),
            labels,
        )
    }

    /// Calico's `SelectsNamespace` (same rules over the namespace's labels).
    pub(crate) fn selects_namespace(&self, labels: &BTreeMap<String, String>) -> IpamResult<bool> {
        let sel = self.pool.spec.namespace_selector.as_deref();
        self.selects("namespaceSelector", sel, labels)
    }

    fn selects(
        &self,
        field: &'static str,
        selector: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> IpamResult<bool> {
        let Some(sel) = selector.filter(|s| !s.is_empty()) else {
            return Ok(true);
        };
        let parsed = Selector::parse(sel).map_err(|e| IpamError::InvalidPoolSelector {
            pool: self.name.clone(),
            field,
            selector: sel.to_string(),
            source: e,
        })?;
        Ok(parsed.matches(labels))
    }
}

/// What [`Ipam::determine_pools`] found.
pub(crate) struct PoolChoice {
    /// Pools this request may allocate from (selected and allowing the intended use).
    pub usable: Vec<Pool>,
    /// Pools selecting the node (and namespace), or the requested ones, before the use filter.
    pub selecting: Vec<Pool>,
    /// Every enabled pool of the family.
    pub enabled: Vec<Pool>,
    /// The host's node labels.
    pub node_labels: BTreeMap<String, String>,
}

fn parse_pool(p: IpPool) -> Option<Pool> {
    let name = p.metadata.name.clone();
    let cidr: IpNetwork = match p.spec.cidr.parse() {
        Ok(c) => c,
        Err(e) => {
            warn!("pool {name}: bad cidr {:?}: {e}", p.spec.cidr);
            return None;
        }
    };
    let block_prefix = p.spec.effective_block_size(cidr.is_ipv6());
    let range = if cidr.is_ipv4() { 20..=32 } else { 116..=128 };
    if cidr.network() != cidr.ip() || !range.contains(&block_prefix) || block_prefix < cidr.prefix()
    {
        warn!("pool {name}: invalid cidr/blockSize {cidr}/{block_prefix}");
        return None;
    }
    Some(Pool {
        name,
        cidr,
        block_prefix,
        pool: p,
    })
}

/// What [`Ipam::all_pools`] lists.
pub(crate) fn pools_prefix() -> ListPrefix {
    ListPrefix::Resources {
        kind: ResourceKind::IpPool,
        namespace: None,
    }
}

/// The key of `host`'s Calico Node.
pub(crate) fn node_key(host: &str) -> Key {
    Key::resource(ResourceKind::Node, host)
}

/// The pools of a listing of [`pools_prefix`] that parse, in name order.
pub(crate) fn pools_from(listed: Vec<KvPair>) -> Vec<Pool> {
    listed
        .into_iter()
        .filter_map(|kv| match IpPool::from_json(&kv.value) {
            Ok(p) => parse_pool(p),
            Err(e) => {
                warn!("skipping pool {}: {e}", kv.key);
                None
            }
        })
        .collect()
}

/// The enabled pools of a family among `all` (see [`Ipam::enabled_pools`]).
pub(crate) fn enabled_of(all: Vec<Pool>, version: IpVersion) -> Vec<Pool> {
    all.into_iter()
        .filter(|p| {
            !p.pool.spec.disabled
                && p.pool.metadata.deletion_timestamp.is_none()
                && p.pool.is_allocatable()
                && IpVersion::of_net(&p.cidr) == version
        })
        .collect()
}

impl Ipam<'_> {
    /// Every stored pool that parses (enabled or not), in name order.
    pub(crate) fn all_pools(&self) -> IpamResult<Vec<Pool>> {
        Ok(pools_from(self.store.list(&pools_prefix())?))
    }

    /// Whether any stored pool has a namespaceSelector (only then do callers need to look up
    /// the pod's namespace labels).
    pub fn uses_namespace_selectors(&self) -> IpamResult<bool> {
        Ok(self.all_pools()?.iter().any(|p| {
            p.pool
                .spec
                .namespace_selector
                .as_deref()
                .is_some_and(|s| !s.trim().is_empty())
        }))
    }

    /// The stored IPPool resources (for admin tools).
    pub fn list_pools(&self) -> IpamResult<Vec<IpPool>> {
        Ok(self.all_pools()?.into_iter().map(|p| p.pool).collect())
    }

    /// Enabled pools of a family, as Calico's `GetEnabledPools`: not disabled, not being
    /// deleted, not marked `Allocatable=False` by the pool controller.
    pub(crate) fn enabled_pools(&self, version: IpVersion) -> IpamResult<Vec<Pool>> {
        Ok(enabled_of(self.all_pools()?, version))
    }

    /// Labels of the host's Calico Node, from the answer to a get of its [`node_key`]
    /// (empty, or `NodeNotFound`, when it does not exist — see `IpamOptions::require_node`).
    pub(crate) fn node_labels_from(
        &self,
        host: &str,
        got: StoreResult<Option<KvPair>>,
    ) -> IpamResult<BTreeMap<String, String>> {
        let key = node_key(host);
        match got? {
            Some(kv) => Ok(Node::from_json(&kv.value)
                .map_err(|e| IpamError::corrupt(&key, e))?
                .metadata
                .labels),
            None if self.opts.require_node => Err(IpamError::NodeNotFound(host.to_string())),
            None => Ok(Default::default()),
        }
    }

    /// Calico's `determinePools` + `filterPoolsByUse`: explicitly requested pools (exact CIDR
    /// of an enabled pool, selectors ignored) or else every automatic pool whose nodeSelector
    /// matches the host and whose namespaceSelector matches `namespace` (its labels; `None`
    /// evaluates the selector on no labels); then filtered by intended use. `pools` and
    /// `node` are the answers to a list of [`pools_prefix`] and a get of the host's
    /// [`node_key`] (read together with the request's other opening reads); the node's
    /// answer only counts when some pool is enabled, as if it were read after them.
    pub(crate) fn determine_pools(
        &self,
        version: IpVersion,
        requested: &[IpNetwork],
        host: &str,
        namespace: Option<&BTreeMap<String, String>>,
        use_: IntendedUse,
        (pools, node): (StoreResult<Vec<KvPair>>, StoreResult<Option<KvPair>>),
    ) -> IpamResult<PoolChoice> {
        let enabled = enabled_of(pools_from(pools?), version);
        if enabled.is_empty() {
            return Err(NoPools::NoneEnabled.into());
        }
        let node_labels = self.node_labels_from(host, node)?;
        let chosen: Vec<Pool> = if !requested.is_empty() {
            requested
                .iter()
                .map(|r| {
                    enabled
                        .iter()
                        .find(|p| p.cidr == *r)
                        .cloned()
                        .ok_or_else(|| NoPools::RequestedNotEnabled { pool: *r }.into())
                })
                .collect::<IpamResult<_>>()?
        } else {
            let no_labels = BTreeMap::new();
            let ns_labels = namespace.unwrap_or(&no_labels);
            let mut selected = Vec::new();
            for p in &enabled {
                if p.pool.spec.is_automatic()
                    && p.selects_node(&node_labels)?
                    && p.selects_namespace(ns_labels)?
                {
                    selected.push(p.clone());
                }
            }
            if selected.is_empty() {
                return Err(NoPools::NoneForNode {
                    host: host.to_string(),
                }
                .into());
            }
            selected
        };
        let usable: Vec<Pool> = chosen
            .iter()
            .filter(|p| p.pool.spec.allows_use(use_.as_str()))
            .cloned()
            .collect();
        if usable.is_empty() {
            return Err(NoPools::NoneForUse {
                intended_use: use_.as_str(),
            }
            .into());
        }
        Ok(PoolChoice {
            usable,
            selecting: chosen,
            enabled,
            node_labels,
        })
    }

    /// Resolve `ipv4_pools`/`ipv6_pools` entries (pool names or CIDRs) to pool CIDRs, checking
    /// the family. Errors use Calico's wording.
    pub fn resolve_pools(
        &self,
        entries: &[String],
        version: IpVersion,
    ) -> IpamResult<Vec<IpNetwork>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let all = self.all_pools()?;
        entries
            .iter()
            .map(|e| {
                let cidr = match e.parse::<IpNetwork>() {
                    Ok(c) => c,
                    Err(_) => all
                        .iter()
                        .find(|p| p.name == *e)
                        .map(|p| p.cidr)
                        .ok_or_else(|| InvalidArgument::UnknownPool { pool: e.clone() })?,
                };
                if IpVersion::of_net(&cidr) != version {
                    return Err(InvalidArgument::PoolFamily {
                        ip: cidr.ip(),
                        version: version.number(),
                    }
                    .into());
                }
                Ok(cidr)
            })
            .collect()
    }

    /// Create an IPPool resource (fails with `AlreadyExists` if the name is taken). Validates
    /// CIDR and block size and rejects overlap with existing pools.
    pub fn create_pool(&self, pool: &IpPool) -> IpamResult<()> {
        let name = &pool.metadata.name;
        let parsed = parse_pool(pool.clone())
            .ok_or_else(|| InvalidArgument::PoolCidr { name: name.clone() })?;
        let key = Key::resource(ResourceKind::IpPool, name);
        if !key.is_valid() {
            return Err(InvalidArgument::PoolName { name: name.clone() }.into());
        }
        for p in self.all_pools()? {
            // Same name: report it as the store would. Checked before overlap because a pool
            // created concurrently under this name (two processes initialising one store) also
            // overlaps, and callers treat AlreadyExists as "someone else did it".
            if p.name == *name {
                return Err(StoreError::AlreadyExists(key.to_string()).into());
            }
            if p.cidr.contains(parsed.cidr.network()) || parsed.cidr.contains(p.cidr.network()) {
                return Err(InvalidArgument::PoolOverlap {
                    name: name.clone(),
                    other: p.name.clone(),
                    other_cidr: p.cidr,
                }
                .into());
            }
        }
        self.store.create(&key, &pool.to_json())?;
        Ok(())
    }
}
