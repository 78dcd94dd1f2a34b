//! IPPool resources in the datastore: get/list, create, apply (create-or-update) and delete,
//! with the semantics of libcalico-go's v3 client:
//! * create fills `uid`/`creationTimestamp` and the spec defaults, and rejects a CIDR that
//!   overlaps another pool;
//! * update keeps `uid`/`creationTimestamp`, refuses to change `cidr` or `blockSize`, and is a
//!   compare-and-swap on the input's `resourceVersion` when given (else on the value just read);
//! * delete first disables the pool (no new allocations), then releases the block affinities
//!   in the pool (empty blocks are deleted, blocks still holding addresses become unaffine
//!   and keep them), then deletes the pool. Addresses still allocated are NOT released: the
//!   workloads keep them until they are deleted or `calicoctl ipam release`d — the same as
//!   calicoctl on etcd. We additionally report how many remain (see [`DeleteOutcome`]).

use ipam::model::IpPool;
use ipam::{IpVersion, Ipam, Key, ListPrefix, ResourceKind, Revision, Store, StoreError};
use ipnetwork::IpNetwork;
use serde_json::Value;

use crate::error::{CtlError, CtlResult};
use crate::meta;
use crate::resource::PoolDoc;
use crate::validate;

/// Attempts of an unconditional apply/delete against concurrent writers.
const RETRIES: usize = 10;

/// A pool as stored, with its revision (`metadata.resourceVersion`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPool {
    pub pool: IpPool,
    pub revision: Revision,
}

impl StoredPool {
    /// The pool with `metadata.resourceVersion` set, as calicoctl shows it.
    pub fn with_resource_version(&self) -> IpPool {
        let mut p = self.pool.clone();
        p.metadata.extra.insert(
            "resourceVersion".into(),
            Value::String(self.revision.to_string()),
        );
        p
    }
}

fn key(name: &str) -> Key {
    Key::resource(ResourceKind::IpPool, name)
}

fn not_found(name: &str) -> CtlError {
    CtlError::NotFound {
        kind: "IPPool",
        name: name.to_string(),
    }
}

fn parse_stored(kv: ipam::KvPair) -> CtlResult<StoredPool> {
    let pool = IpPool::from_json(&kv.value).map_err(|e| CtlError::Parse {
        what: kv.key.path(),
        reason: e.to_string(),
    })?;
    Ok(StoredPool {
        pool,
        revision: kv.revision,
    })
}

/// Every stored pool, by name.
pub fn list(store: &dyn Store) -> CtlResult<Vec<StoredPool>> {
    store
        .list(&ListPrefix::Resources {
            kind: ResourceKind::IpPool,
            namespace: None,
        })?
        .into_iter()
        .map(parse_stored)
        .collect()
}

/// One pool by name.
pub fn get(store: &dyn Store, name: &str) -> CtlResult<StoredPool> {
    match store.get_opt(&key(name))? {
        Some(kv) => parse_stored(kv),
        None => Err(not_found(name)),
    }
}

fn cidr_of(p: &IpPool) -> CtlResult<IpNetwork> {
    p.spec
        .cidr
        .parse()
        .map_err(|e| CtlError::field("spec.cidr", &p.spec.cidr, format!("invalid CIDR: {e}")))
}

fn check_overlap(store: &dyn Store, p: &IpPool) -> CtlResult<()> {
    let cidr = cidr_of(p)?;
    for other in list(store)? {
        if other.pool.metadata.name == p.metadata.name {
            continue;
        }
        let Ok(o) = other.pool.spec.cidr.parse::<IpNetwork>() else {
            continue;
        };
        if o.contains(cidr.network()) || cidr.contains(o.network()) {
            return Err(CtlError::field(
                "spec.cidr",
                cidr,
                format!(
                    "IPPool({}) CIDR overlaps with IPPool({}) CIDR {o}",
                    p.metadata.name, other.pool.metadata.name
                ),
            ));
        }
    }
    Ok(())
}

/// Create a pool; `AlreadyExists` becomes calicoctl's message.
pub fn create(store: &dyn Store, doc: &PoolDoc) -> CtlResult<()> {
    let mut p = doc.pool.clone();
    validate::pool(&p)?;
    validate::apply_defaults(&mut p);
    p.spec.cidr = cidr_of(&p)?.to_string();
    check_overlap(store, &p)?;
    p.metadata.uid = Some(meta::new_uid());
    p.metadata.creation_timestamp = Some(meta::now());
    match store.create(&key(&p.metadata.name), &p.to_json()) {
        Ok(_) => Ok(()),
        Err(StoreError::AlreadyExists(_)) => Err(CtlError::AlreadyExists {
            kind: "IPPool",
            name: p.metadata.name.clone(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Replace `old` by `doc` (CAS on `rev`).
fn update(store: &dyn Store, old: &StoredPool, doc: &PoolDoc, rev: &Revision) -> CtlResult<()> {
    let mut p = doc.pool.clone();
    validate::pool(&p)?;
    validate::apply_defaults(&mut p);
    let new_cidr = cidr_of(&p)?;
    let old_cidr = cidr_of(&old.pool)?;
    if new_cidr != old_cidr {
        return Err(CtlError::field(
            "spec.cidr",
            &p.spec.cidr,
            "IPPool CIDR cannot be modified",
        ));
    }
    p.spec.cidr = new_cidr.to_string();
    let v6 = new_cidr.is_ipv6();
    let old_bs = old.pool.spec.effective_block_size(v6);
    if p.spec.effective_block_size(v6) != old_bs {
        return Err(CtlError::field(
            "spec.blockSize",
            p.spec.effective_block_size(v6),
            format!("IPPool BlockSize cannot be modified (is {old_bs})"),
        ));
    }
    p.metadata.uid = old.pool.metadata.uid.clone();
    p.metadata.creation_timestamp = old.pool.metadata.creation_timestamp.clone();
    store.update(&key(&p.metadata.name), &p.to_json(), rev)?;
    Ok(())
}

/// Create or update. With a `resourceVersion` in the input the update is conditional on it.
pub fn apply(store: &dyn Store, doc: &PoolDoc) -> CtlResult<()> {
    let name = &doc.pool.metadata.name;
    for _ in 0..RETRIES {
        let r = match store.get_opt(&key(name))? {
            None if doc.resource_version.is_some() => return Err(not_found(name)),
            None => match create(store, doc) {
                // Created concurrently: update it instead.
                Err(CtlError::AlreadyExists { .. }) => continue,
                r => return r,
            },
            Some(kv) => {
                let old = parse_stored(kv)?;
                let rev = doc
                    .resource_version
                    .as_deref()
                    .map(Revision::new)
                    .unwrap_or_else(|| old.revision.clone());
                update(store, &old, doc, &rev)
            }
        };
        match r {
            Err(CtlError::Store(StoreError::Conflict(_))) if doc.resource_version.is_none() => {
                continue
            }
            Err(CtlError::Store(StoreError::Conflict(_))) => {
                return Err(CtlError::StaleResourceVersion {
                    kind: "IPPool",
                    name: name.to_string(),
                    resource_version: doc.resource_version.clone().unwrap_or_default(),
                })
            }
            r => return r,
        }
    }
    Err(CtlError::KeptChanging {
        kind: "IPPool",
        name: name.to_string(),
    })
}

/// What [`delete`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeleteOutcome {
    /// Addresses still allocated in the pool's former range.
    pub allocated: usize,
    /// Blocks kept (unaffine) because they still hold addresses.
    pub blocks_kept: usize,
}

fn set_disabled(store: &dyn Store, name: &str) -> CtlResult<()> {
    for _ in 0..RETRIES {
        let cur = get(store, name)?;
        if cur.pool.spec.disabled {
            return Ok(());
        }
        let mut p = cur.pool.clone();
        p.spec.disabled = true;
        match store.update(&key(name), &p.to_json(), &cur.revision) {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict(_)) => continue,
            Err(StoreError::NotFound(_)) => return Err(not_found(name)),
            Err(e) => return Err(e.into()),
        }
    }
    Err(CtlError::KeptChanging {
        kind: "IPPool",
        name: name.to_string(),
    })
}

/// Delete pool `name` (see module docs for the steps).
pub fn delete(store: &dyn Store, name: &str) -> CtlResult<DeleteOutcome> {
    let cur = get(store, name)?;
    let cidr = cidr_of(&cur.pool)?;
    set_disabled(store, name)?;
    let ipam = Ipam::new(store);
    let version = IpVersion::of_net(&cidr);
    for kv in store.list(&ListPrefix::Affinities {
        host: None,
        version: Some(version),
    })? {
        if let Key::Affinity {
            affinity_type,
            host,
            cidr: b,
        } = &kv.key
        {
            if affinity_type == ipam::keys::AFFINITY_TYPE_HOST && cidr.contains(b.network()) {
                ipam.release_block_affinity(host, *b, None)?;
            }
        }
    }
    match store.delete(&key(name), None) {
        Ok(()) | Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let mut out = DeleteOutcome::default();
    for b in ipam.block_infos(Some(version))? {
        if cidr.contains(b.cidr.network()) && b.allocated > 0 {
            out.allocated += b.allocated;
            out.blocks_kept += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::parse_pools;
    use ipam::MemoryStore;

    fn doc(yaml: &str) -> PoolDoc {
        parse_pools(yaml, "t").unwrap().remove(0)
    }

    fn pool_yaml(name: &str, cidr: &str, extra: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\nspec:\n  cidr: {cidr}\n{extra}"
        )
    }

    #[test]
    fn create_apply_and_immutables() {
        let s = MemoryStore::new();
        create(&s, &doc(&pool_yaml("a", "10.1.0.0/16", ""))).unwrap();
        let a = get(&s, "a").unwrap();
        assert!(a.pool.metadata.uid.is_some() && a.pool.metadata.creation_timestamp.is_some());
        assert_eq!(a.pool.spec.block_size, Some(26));
        let e = create(&s, &doc(&pool_yaml("a", "10.1.0.0/16", ""))).unwrap_err();
        assert_eq!(e.to_string(), "resource already exists: IPPool(a)");
        let e = create(&s, &doc(&pool_yaml("b", "10.1.128.0/17", ""))).unwrap_err();
        assert!(e.to_string().contains("overlaps with IPPool(a)"), "{e}");

        apply(
            &s,
            &doc(&pool_yaml("a", "10.1.0.0/16", "  natOutgoing: true\n")),
        )
        .unwrap();
        let a2 = get(&s, "a").unwrap();
        assert!(a2.pool.spec.nat_outgoing);
        assert_eq!(a2.pool.metadata.uid, a.pool.metadata.uid);
        assert_ne!(a2.revision, a.revision);
        let e = apply(&s, &doc(&pool_yaml("a", "10.2.0.0/16", ""))).unwrap_err();
        assert!(e.to_string().contains("spec.cidr"), "{e}");
        let e = apply(
            &s,
            &doc(&pool_yaml("a", "10.1.0.0/16", "  blockSize: 28\n")),
        )
        .unwrap_err();
        assert!(e.to_string().contains("spec.blockSize"), "{e}");

        // Stale resourceVersion: refused, not overwritten.
        let mut stale = doc(&pool_yaml("a", "10.1.0.0/16", "  disabled: true\n"));
        stale.resource_version = Some(a.revision.to_string());
        let e = apply(&s, &stale).unwrap_err();
        assert!(e.to_string().contains("update conflict"), "{e}");
        assert!(!get(&s, "a").unwrap().pool.spec.disabled);
        stale.resource_version = Some(a2.revision.to_string());
        apply(&s, &stale).unwrap();
        assert!(get(&s, "a").unwrap().pool.spec.disabled);
    }

    #[test]
    fn delete_keeps_allocations_and_reports_them() {
        let s = MemoryStore::new();
        create(&s, &doc(&pool_yaml("p", "10.3.0.0/16", ""))).unwrap();
        let ipam = Ipam::with_options(
            &s,
            ipam::IpamOptions {
                require_node: false,
                ..Default::default()
            },
        );
        let req = |h: &str| ipam::AutoAssignRequest {
            num_v4: 1,
            handle_id: h.into(),
            hostname: "n1".into(),
            ..Default::default()
        };
        let r = ipam.auto_assign(&req("h1")).unwrap();
        let ip = r.ipv4[0].ip();
        let out = delete(&s, "p").unwrap();
        assert_eq!(
            out,
            DeleteOutcome {
                allocated: 1,
                blocks_kept: 1
            }
        );
        assert!(matches!(get(&s, "p"), Err(CtlError::NotFound { .. })));
        let info = ipam.get_assignment(ip).unwrap().unwrap();
        assert_eq!(info.handle_id.as_deref(), Some("h1"));
        let blocks = ipam.block_infos(None).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].affinity, None, "affinity released");
        assert!(matches!(delete(&s, "p"), Err(CtlError::NotFound { .. })));
    }
}
