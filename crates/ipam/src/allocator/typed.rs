//! Typed reads/writes of blocks, affinities, handles and config (JSON ↔ model), plus the handle
//! counters. Parsing failures become `IpamError::Corrupt` so we never write over data we do
//! not understand.

use std::net::IpAddr;
use std::time::SystemTime;

use ipnetwork::IpNetwork;
use log::warn;

use super::Ipam;
use crate::error::{InvalidArgument, IpamError, IpamResult};
use crate::keys::{IpVersion, Key, ListPrefix};
use crate::model::{AffinityState, AllocationBlock, BlockAffinity, IpamConfig, IpamHandle};
use crate::store::{KvPair, Revision, StoreError, StoreResult, WriteOp};

/// A block as read, with the revision to CAS against.
pub(crate) struct BlockKv {
    pub block: AllocationBlock,
    pub rev: Revision,
}

impl BlockKv {
    pub(crate) fn key(&self) -> Key {
        Key::block(self.block.cidr)
    }
}

/// An affinity as read.
pub(crate) struct AffinityKv {
    pub host: String,
    pub cidr: IpNetwork,
    pub affinity: BlockAffinity,
    pub rev: Revision,
}

/// Block CIDR with a given address's host part zeroed, for result addresses.
pub(crate) fn with_block_prefix(ip: IpAddr, block: &IpNetwork) -> IpNetwork {
    IpNetwork::new(ip, block.prefix()).unwrap_or(*block)
}

fn parse_block(key: &Key, value: &str) -> IpamResult<AllocationBlock> {
    let b = AllocationBlock::from_json(value).map_err(|e| IpamError::corrupt(key, e.reason))?;
    if Key::block(b.cidr) != *key {
        return Err(IpamError::corrupt(key, "cidr does not match key"));
    }
    Ok(b)
}

impl Ipam<'_> {
    pub(crate) fn get_block(&self, cidr: IpNetwork) -> IpamResult<Option<BlockKv>> {
        let key = Key::block(cidr);
        let Some(kv) = self.store.get_opt(&key)? else {
            return Ok(None);
        };
        self.block_from_kv(kv).map(Some)
    }

    /// A block object as read (parsed, cooled-down addresses freed).
    pub(crate) fn block_from_kv(&self, kv: KvPair) -> IpamResult<BlockKv> {
        let mut block = parse_block(&kv.key, &kv.value)?;
        self.collect_cooled(&mut block)?;
        Ok(BlockKv {
            block,
            rev: kv.revision,
        })
    }

    /// Block `cidr` and the object of `handle`, read in one round trip (on stores that
    /// commit atomically; they all read several keys at one revision).
    pub(crate) fn get_block_and_handle(
        &self,
        cidr: IpNetwork,
        handle: &str,
    ) -> IpamResult<(Option<BlockKv>, Option<KvPair>)> {
        let mut got = self
            .store
            .get_many(&[Key::block(cidr), Key::handle(handle)])?
            .into_iter();
        let block = got
            .next()
            .flatten()
            .map(|kv| self.block_from_kv(kv))
            .transpose()?;
        Ok((block, got.next().flatten()))
    }

    /// The CAS write of a block (bumping its sequence number, as every block write does):
    /// a delete when the block is empty and unaffine and `may_delete`, else an update.
    pub(crate) fn block_write(&self, b: &mut BlockKv, may_delete: bool) -> WriteOp {
        if may_delete && b.block.is_empty() && !b.block.has_affinity() {
            return WriteOp::Delete {
                key: b.key(),
                revision: b.rev.clone(),
            };
        }
        b.block.sequence_number = b.block.sequence_number.wrapping_add(1);
        WriteOp::Update {
            key: b.key(),
            value: b.block.to_json(),
            revision: b.rev.clone(),
        }
    }

    /// Calico's `blockFromBackend`: every block read for IPAM first frees the addresses whose
    /// cooldown is over (in memory; the next write of the block stores it).
    fn collect_cooled(&self, block: &mut AllocationBlock) -> IpamResult<()> {
        if block.attributes.iter().any(|a| a.released_at.is_some()) {
            block.garbage_collect(SystemTime::now(), self.cooldown_secs()?);
        }
        Ok(())
    }

    /// `ipCooldownSeconds`, read with the config once per allocator unless [`Self::get_config`]
    /// re-read it since.
    pub(crate) fn cooldown_secs(&self) -> IpamResult<i64> {
        match self.cooldown.get() {
            Some(c) => Ok(c),
            None => Ok(self.get_config()?.ip_cooldown_seconds),
        }
    }

    pub(crate) fn list_blocks(&self, version: Option<IpVersion>) -> IpamResult<Vec<BlockKv>> {
        let mut out = Vec::new();
        for kv in self.store.list(&ListPrefix::Blocks { version })? {
            match parse_block(&kv.key, &kv.value) {
                Ok(mut block) => {
                    self.collect_cooled(&mut block)?;
                    out.push(BlockKv {
                        block,
                        rev: kv.revision,
                    })
                }
                // One unreadable block must not stop allocation elsewhere; it is never written.
                Err(e) => warn!("skipping block: {e}"),
            }
        }
        Ok(out)
    }

    /// CAS-write a block, bumping its sequence number (every block write does).
    pub(crate) fn update_block(&self, b: &mut BlockKv) -> Result<Revision, StoreError> {
        b.block.sequence_number = b.block.sequence_number.wrapping_add(1);
        let rev = self.store.update(&b.key(), &b.block.to_json(), &b.rev)?;
        b.rev = rev.clone();
        Ok(rev)
    }

    pub(crate) fn get_affinity(
        &self,
        host: &str,
        cidr: IpNetwork,
    ) -> IpamResult<Option<AffinityKv>> {
        let key = Key::host_affinity(host, cidr);
        let Some(kv) = self.store.get_opt(&key)? else {
            return Ok(None);
        };
        let affinity =
            BlockAffinity::from_json(&kv.value).map_err(|e| IpamError::corrupt(&key, e))?;
        Ok(Some(AffinityKv {
            host: host.to_string(),
            cidr,
            affinity,
            rev: kv.revision,
        }))
    }

    /// Affinities of `host` (type `host`), optionally of one family, in key order.
    pub(crate) fn list_affinities(
        &self,
        host: Option<&str>,
        version: Option<IpVersion>,
    ) -> IpamResult<Vec<AffinityKv>> {
        let prefix = ListPrefix::Affinities {
            host: host.map(str::to_string),
            version,
        };
        Ok(affinities_from(self.store.list(&prefix)?))
    }

    /// CAS-write an affinity state.
    pub(crate) fn set_affinity_state(
        &self,
        a: &AffinityKv,
        state: AffinityState,
    ) -> Result<Revision, StoreError> {
        let mut v = a.affinity.clone();
        v.state = state;
        let json = serde_json::to_string(&v).unwrap_or_default();
        self.store
            .update(&Key::host_affinity(&a.host, a.cidr), &json, &a.rev)
    }

    /// The IPAM config, or Calico's defaults when none is stored.
    pub fn get_config(&self) -> IpamResult<IpamConfig> {
        self.config_from(self.store.get_opt(&Key::IpamConfig))
    }

    /// The IPAM config from the answer to a get of [`Key::IpamConfig`] (as
    /// [`Self::get_config`] reads it).
    pub(crate) fn config_from(&self, got: StoreResult<Option<KvPair>>) -> IpamResult<IpamConfig> {
        let config: IpamConfig = match got? {
            None => IpamConfig::default_when_absent(),
            Some(kv) => serde_json::from_str(&kv.value)
                .map_err(|e| IpamError::corrupt(&Key::IpamConfig, e))?,
        };
        self.cooldown.set(Some(config.ip_cooldown_seconds));
        Ok(config)
    }

    /// Validate and store the IPAM config (CAS; creates it when absent).
    pub fn set_config(&self, cfg: &IpamConfig) -> IpamResult<()> {
        cfg.validate().map_err(InvalidArgument::from)?;
        let json = serde_json::to_string(cfg).unwrap_or_default();
        self.retry(|| {
            let r = match self.store.get_opt(&Key::IpamConfig)? {
                None => self.store.create(&Key::IpamConfig, &json),
                Some(kv) => self.store.update(&Key::IpamConfig, &json, &kv.revision),
            };
            lost_race(r.map(|_| ()))
        })
    }

    /// Add `n` to `handle`'s count for block `cidr` (creating the handle).
    pub(crate) fn increment_handle(
        &self,
        handle: &str,
        cidr: &IpNetwork,
        n: usize,
    ) -> IpamResult<()> {
        self.change_handle(handle, cidr, n as i64)
    }

    /// Subtract `n`; the handle object is deleted when no block counts remain.
    pub(crate) fn decrement_handle(
        &self,
        handle: &str,
        cidr: &IpNetwork,
        n: usize,
    ) -> IpamResult<()> {
        self.change_handle(handle, cidr, -(n as i64))
    }

    fn change_handle(&self, handle: &str, cidr: &IpNetwork, delta: i64) -> IpamResult<()> {
        let key = Key::handle(handle);
        self.retry(|| {
            let current = self.store.get_opt(&key)?;
            match handle_change(handle, cidr, delta, current)? {
                Some(op) => lost_race(op.apply_alone(self.store).map(|_| ())),
                None => Ok(Some(())),
            }
        })
    }
}

/// The CAS write changing `handle`'s count for block `cidr` by `delta`, given the handle's
/// current object: created when absent, deleted when no block counts remain; `None` when
/// there is nothing to write (a decrement of an absent handle).
pub(crate) fn handle_change(
    handle: &str,
    cidr: &IpNetwork,
    delta: i64,
    current: Option<KvPair>,
) -> IpamResult<Option<WriteOp>> {
    let key = Key::handle(handle);
    let block = cidr.to_string();
    let Some(kv) = current else {
        if delta <= 0 {
            warn!("handle {handle} not found while releasing from {block}");
            return Ok(None);
        }
        let mut h = IpamHandle::default();
        h.block.insert(block, delta as u64);
        let value = serde_json::to_string(&h).unwrap_or_default();
        return Ok(Some(WriteOp::Create { key, value }));
    };
    let mut h: IpamHandle =
        serde_json::from_str(&kv.value).map_err(|e| IpamError::corrupt(&key, e))?;
    let cur = h.block.get(&block).copied().unwrap_or(0);
    let new = cur as i64 + delta;
    if new < 0 {
        warn!("handle {handle} count for {block} would go negative ({cur}{delta:+})");
    }
    if new <= 0 {
        h.block.remove(&block);
    } else {
        h.block.insert(block, new as u64);
    }
    Ok(Some(if h.block.is_empty() {
        WriteOp::Delete {
            key,
            revision: kv.revision,
        }
    } else {
        WriteOp::Update {
            key,
            value: serde_json::to_string(&h).unwrap_or_default(),
            revision: kv.revision,
        }
    }))
}

/// The `host` affinities of a listing of affinities, in key order (unreadable ones skipped).
pub(crate) fn affinities_from(listed: Vec<KvPair>) -> Vec<AffinityKv> {
    let mut out = Vec::new();
    for kv in listed {
        let Key::Affinity {
            host,
            cidr,
            affinity_type,
            ..
        } = &kv.key
        else {
            continue;
        };
        if affinity_type != crate::keys::AFFINITY_TYPE_HOST {
            continue;
        }
        match BlockAffinity::from_json(&kv.value) {
            Ok(affinity) => out.push(AffinityKv {
                host: host.clone(),
                cidr: *cidr,
                affinity,
                rev: kv.revision,
            }),
            Err(e) => warn!("skipping affinity {}: {e}", kv.key),
        }
    }
    out
}

/// Map a write outcome for a retry loop: conflicts (and the races that surface as
/// not-found/already-exists) mean "re-read and try again"; everything else is final.
pub(crate) fn lost_race(r: Result<(), StoreError>) -> IpamResult<Option<()>> {
    match r {
        Ok(()) => Ok(Some(())),
        Err(e) if is_lost_race(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A compare that failed because another writer got there first (see [`lost_race`]).
pub(crate) fn is_lost_race(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Conflict(_) | StoreError::AlreadyExists(_) | StoreError::NotFound(_)
    )
}
