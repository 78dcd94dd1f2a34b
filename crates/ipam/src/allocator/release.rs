//! Releasing addresses: by handle (CNI DEL) and by address (GC, rollback, admin).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

use ipnetwork::IpNetwork;
use log::{debug, warn};

use super::pools::{enabled_of, node_key, pools_from, pools_prefix};
use super::typed::{is_lost_race, lost_race, BlockKv};
use super::{check_handle, Ipam};
use crate::error::{IpamError, IpamResult};
use crate::keys::{IpVersion, Key};
use crate::model::{AllocationBlock, IpamHandle, Node, AFFINITY_HOST_PREFIX};
use crate::store::{Answers, KvPair, Read, StoreError, StoreResult, WriteOp};

/// One address to release, optionally guarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRequest {
    pub ip: IpAddr,
    /// Only release if the address is held by this handle (otherwise `ReleaseRefused`).
    pub handle_id: Option<String>,
    /// Only release if the allocation carries this sequence number (ABA protection for
    /// asynchronous releasers).
    pub sequence_number: Option<u64>,
}

impl ReleaseRequest {
    /// Unguarded release of `ip`.
    pub fn ip(ip: IpAddr) -> Self {
        ReleaseRequest {
            ip,
            handle_id: None,
            sequence_number: None,
        }
    }
}

/// The pools and `host`'s Node, read with a handle's blocks for the affinity check after
/// the release (see [`Ipam::release_handles`]).
struct AffinityCheckReads<'h> {
    host: &'h str,
    pools: StoreResult<Vec<KvPair>>,
    node: StoreResult<Option<KvPair>>,
}

impl Ipam<'_> {
    /// Release every address held by `handle` and delete the handle. `HandleNotFound` if the
    /// handle does not exist (callers wanting idempotency treat that as success). Returns the
    /// addresses freed.
    pub fn release_by_handle(&self, handle: &str) -> IpamResult<Vec<IpAddr>> {
        check_handle(handle)?;
        // Fresh `ipCooldownSeconds` for this release (Calico reads the config here too).
        if !self.store.commits_atomically() {
            self.get_config()?;
            return self.release_by_handle_in_order(handle);
        }
        match self.read_config_and_handles(&[handle])?.pop().flatten() {
            Some(kv) => self.release_read_handle(handle, kv, None),
            None => Err(IpamError::HandleNotFound(handle.to_string())),
        }
    }

    /// The IPAM config (taking its fresh `ipCooldownSeconds`) and `handles`' objects, in one
    /// [`Store::read_many`](crate::store::Store::read_many).
    fn read_config_and_handles(&self, handles: &[&str]) -> IpamResult<Vec<Option<KvPair>>> {
        let mut reads = vec![Read::Get(Key::IpamConfig)];
        reads.extend(handles.iter().map(|h| Read::Get(Key::handle(h))));
        let mut got = Answers::new(self.store.read_many(&reads));
        self.config_from(got.get())?;
        Ok(handles
            .iter()
            .map(|_| got.get())
            .collect::<StoreResult<_>>()?)
    }

    /// What a CNI DEL releases: every handle of `handles` that exists (the network-scoped
    /// handle and the legacy one Calico also frees); handles that do not exist, or that no
    /// stored handle could have (a legacy name built from odd CNI_ARGS), are skipped.
    /// `host` is the caller's node: its Node and the pools are read together with the
    /// handle's blocks, for Calico's affinity check after a release, so a DEL on a store
    /// that reads several objects at once costs three round trips (the config and the
    /// handles, the blocks with the node and the pools, the commit) instead of eight.
    /// Returns the addresses freed.
    pub fn release_handles(&self, handles: &[&str], host: &str) -> IpamResult<Vec<IpAddr>> {
        let valid: Vec<&str> = handles
            .iter()
            .copied()
            .filter(|h| match check_handle(h) {
                Ok(()) => true,
                Err(e) => {
                    debug!("skipping release of {h:?}: {e}");
                    false
                }
            })
            .collect();
        let mut freed = Vec::new();
        if !self.store.commits_atomically() {
            for h in valid {
                match self.release_by_handle(h) {
                    Ok(ips) => freed.extend(ips),
                    Err(IpamError::HandleNotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(freed);
        }
        let read = self.read_config_and_handles(&valid)?;
        for (h, kv) in valid.into_iter().zip(read) {
            if let Some(kv) = kv {
                match self.release_read_handle(h, kv, Some(host)) {
                    Ok(ips) => freed.extend(ips),
                    // Deleted between the read and the release: nothing left to free.
                    Err(IpamError::HandleNotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(freed)
    }

    /// [`Ipam::release_by_handle`] the way Calico orders it, for stores without atomic
    /// commits: each block on its own, the handle deleted last.
    fn release_by_handle_in_order(&self, handle: &str) -> IpamResult<Vec<IpAddr>> {
        let key = Key::handle(handle);
        let mut freed = Vec::new();
        let mut seen = false;
        self.retry(|| {
            let Some(kv) = self.store.get_opt(&key)? else {
                if !seen {
                    return Err(IpamError::HandleNotFound(handle.to_string()));
                }
                return Ok(Some(()));
            };
            let h: IpamHandle =
                serde_json::from_str(&kv.value).map_err(|e| IpamError::corrupt(&key, e))?;
            seen = true;
            for block in h.block.keys() {
                let Ok(cidr) = block.parse::<IpNetwork>() else {
                    warn!("handle {handle} references unparsable block {block:?}");
                    continue;
                };
                freed.extend(self.release_handle_in_block(cidr, handle)?);
            }
            // Only now drop the index; if it changed meanwhile (a concurrent assign under the
            // same handle), go round again so that allocation is released too.
            lost_race(self.store.delete(&key, Some(&kv.revision)))
        })?;
        debug!("released {} addresses of handle {handle}", freed.len());
        Ok(freed)
    }

    /// Release `handle`, already read as `first`, on a store that commits atomically: the
    /// handle's blocks are read in one round trip (with `host`'s Node and the pools, for the
    /// affinity check) and written together with the handle's deletion in one commit whose
    /// compares cover every object read. Calico writes the blocks first and deletes the
    /// handle last so that a crash in between leaves a handle still reaching whatever it
    /// held; one commit cannot be cut in half, so that holds trivially, and a concurrent
    /// change to any of them (an ADD under the same handle) fails the whole commit, which is
    /// then redone from fresh reads. A handle spanning more blocks than one commit may hold
    /// ([`Store::max_commit_ops`](crate::store::Store::max_commit_ops)) is released in
    /// Calico's order instead.
    fn release_read_handle(
        &self,
        handle: &str,
        first: KvPair,
        host: Option<&str>,
    ) -> IpamResult<Vec<IpAddr>> {
        let key = Key::handle(handle);
        let mut first = Some(first);
        let freed = self.retry(|| {
            let kv = match first.take() {
                Some(kv) => kv,
                None => match self.store.get_opt(&key)? {
                    Some(kv) => kv,
                    // Released by someone else since we read it.
                    None => return Ok(Some(Vec::new())),
                },
            };
            let h: IpamHandle =
                serde_json::from_str(&kv.value).map_err(|e| IpamError::corrupt(&key, e))?;
            // One write per block and the handle's deletion must fit in one commit.
            if h.block.len() + 1 > self.store.max_commit_ops() {
                return self.release_by_handle_in_order(handle).map(Some);
            }
            let blocks: Vec<Key> = h
                .block
                .keys()
                .filter_map(|block| match block.parse::<IpNetwork>() {
                    Ok(cidr) => Some(Key::block(cidr)),
                    Err(_) => {
                        warn!("handle {handle} references unparsable block {block:?}");
                        None
                    }
                })
                .collect();
            let mut reads: Vec<Read> = blocks.iter().cloned().map(Read::Get).collect();
            if let Some(host) = host {
                reads.push(Read::List(pools_prefix()));
                reads.push(Read::Get(node_key(host)));
            }
            let mut got = Answers::new(self.store.read_many(&reads));
            let mut ops = Vec::new();
            let mut freed = Vec::new();
            let mut written = Vec::new();
            for _ in &blocks {
                let Some(kv) = got.get()? else { continue };
                let mut b = self.block_from_kv(kv)?;
                let ords = b.block.ordinals_of_handle(handle);
                if ords.is_empty() {
                    continue;
                }
                b.block
                    .release_ordinals(&ords, SystemTime::now(), self.cooldown_secs()?, false);
                freed.extend(ords.iter().map(|&o| b.block.ordinal_to_ip(o)));
                ops.push(self.block_write(&mut b, true));
                written.push(b.block);
            }
            let read_with = host.map(|host| AffinityCheckReads {
                host,
                pools: got.list(),
                node: got.get(),
            });
            ops.push(WriteOp::Delete {
                key: key.clone(),
                revision: kv.revision,
            });
            match self.store.commit(&ops) {
                Ok(_) => {}
                Err(e) if is_lost_race(&e.error) => return Ok(None),
                Err(e) => return Err(e.error.into()),
            }
            for block in &written {
                self.ensure_consistent_affinity(block, read_with.as_ref());
            }
            Ok(Some(freed))
        })?;
        debug!("released {} addresses of handle {handle}", freed.len());
        Ok(freed)
    }

    fn release_handle_in_block(&self, cidr: IpNetwork, handle: &str) -> IpamResult<Vec<IpAddr>> {
        self.retry(|| {
            let Some(mut b) = self.get_block(cidr)? else {
                return Ok(Some(Vec::new()));
            };
            let ords = b.block.ordinals_of_handle(handle);
            if ords.is_empty() {
                return Ok(Some(Vec::new()));
            }
            b.block
                .release_ordinals(&ords, SystemTime::now(), self.cooldown_secs()?, false);
            let ips = ords.iter().map(|&o| b.block.ordinal_to_ip(o)).collect();
            let written = self.write_released(&mut b)?;
            if written.is_some() {
                self.ensure_consistent_affinity(&b.block, None);
            }
            Ok(written.map(|_| ips))
        })
    }

    /// Calico's `ensureConsistentAffinity`, run after a release: if the enabled pool holding
    /// the block no longer selects the block's host, release that host's affinity when the
    /// block is empty. Failures are only logged (the release itself succeeded). `read_with`
    /// holds the pools and one node already read with the block; another host's node is
    /// read here.
    fn ensure_consistent_affinity(
        &self,
        block: &AllocationBlock,
        read_with: Option<&AffinityCheckReads<'_>>,
    ) {
        if let Err(e) = self.try_ensure_consistent_affinity(block, read_with) {
            warn!(
                "could not check the affinity of block {} after a release: {e}",
                block.cidr
            );
        }
    }

    fn try_ensure_consistent_affinity(
        &self,
        block: &AllocationBlock,
        read_with: Option<&AffinityCheckReads<'_>>,
    ) -> IpamResult<()> {
        let Some(host) = block
            .affinity
            .as_deref()
            .and_then(|a| a.strip_prefix(AFFINITY_HOST_PREFIX))
        else {
            return Ok(());
        };
        let key = node_key(host);
        let node = match read_with.filter(|r| r.host == host) {
            Some(r) => r.node.clone()?,
            None => self.store.get_opt(&key)?,
        };
        let Some(kv) = node else {
            return Ok(());
        };
        let labels = Node::from_json(&kv.value)
            .map_err(|e| IpamError::corrupt(&key, e))?
            .metadata
            .labels;
        let version = IpVersion::of_net(&block.cidr);
        let pools = match read_with {
            Some(r) => enabled_of(pools_from(r.pools.clone()?), version),
            None => self.enabled_pools(version)?,
        };
        let Some(pool) = pools.iter().find(|p| p.cidr.contains(block.cidr.ip())) else {
            return Ok(());
        };
        if pool.selects_node(&labels)? {
            return Ok(());
        }
        if self.release_affinity(host, block.cidr, true, None)? {
            debug!(
                "released block {} of {host}: pool {} no longer selects the node",
                block.cidr, pool.name
            );
        }
        Ok(())
    }

    /// Write a block after releases: delete it when it is empty and unaffine, else CAS update.
    fn write_released(&self, b: &mut BlockKv) -> IpamResult<Option<()>> {
        match self.block_write(b, true).apply_alone(self.store) {
            // A block deleted under us has nothing left to release.
            Err(StoreError::NotFound(_)) => Ok(Some(())),
            r => lost_race(r.map(|_| ())),
        }
    }

    /// Release individual addresses. Returns the addresses that were not allocated (not an
    /// error, as Calico). Guard violations fail the whole call for that block before anything
    /// in it is written.
    pub fn release_ips(&self, reqs: &[ReleaseRequest]) -> IpamResult<Vec<IpAddr>> {
        self.get_config()?;
        let mut unallocated = Vec::new();
        let mut by_block: BTreeMap<IpNetwork, Vec<&ReleaseRequest>> = BTreeMap::new();
        let pools = self.all_pools()?;
        let mut scanned: Option<Vec<IpNetwork>> = None;
        for r in reqs {
            let cidr = match pools.iter().find(|p| p.cidr.contains(r.ip)) {
                Some(p) => p.block_of(r.ip),
                None => {
                    // Outside every pool (pool deleted): find the block by scanning.
                    if scanned.is_none() {
                        scanned = Some(
                            self.list_blocks(None)?
                                .into_iter()
                                .map(|b| b.block.cidr)
                                .collect(),
                        );
                    }
                    scanned
                        .as_ref()
                        .and_then(|s| s.iter().find(|c| c.contains(r.ip)).copied())
                }
            };
            match cidr {
                Some(c) => by_block.entry(c).or_default().push(r),
                None => unallocated.push(r.ip),
            }
        }
        for (cidr, rs) in by_block {
            unallocated.extend(self.release_in_block(cidr, &rs)?);
        }
        Ok(unallocated)
    }

    fn release_in_block(
        &self,
        cidr: IpNetwork,
        reqs: &[&ReleaseRequest],
    ) -> IpamResult<Vec<IpAddr>> {
        let (unallocated, freed) = self.retry(|| {
            let Some(mut b) = self.get_block(cidr)? else {
                return Ok(Some((reqs.iter().map(|r| r.ip).collect(), Vec::new())));
            };
            let mut unallocated = Vec::new();
            let mut ords = Vec::new();
            for r in reqs {
                let ord = b.block.ip_to_ordinal(r.ip);
                // A cooling-down address is not allocated any more (Calico: skipped).
                let Some(ord) = ord.filter(|&o| b.block.is_held(o)) else {
                    unallocated.push(r.ip);
                    continue;
                };
                if let Some(h) = &r.handle_id {
                    if b.block.handle_of(ord) != Some(h.as_str()) {
                        return Err(IpamError::ReleaseRefused {
                            ip: r.ip,
                            reason: format!("address is not held by handle {h}"),
                        });
                    }
                }
                if let Some(seq) = r.sequence_number {
                    if b.block.sequence_number_of(ord) != Some(seq) {
                        return Err(IpamError::ReleaseRefused {
                            ip: r.ip,
                            reason: "sequence number mismatch".into(),
                        });
                    }
                }
                if !ords.contains(&ord) {
                    ords.push(ord);
                }
            }
            if ords.is_empty() {
                return Ok(Some((unallocated, Vec::new())));
            }
            let freed =
                b.block
                    .release_ordinals(&ords, SystemTime::now(), self.cooldown_secs()?, true);
            let written = self.write_released(&mut b)?;
            if written.is_some() {
                self.ensure_consistent_affinity(&b.block, None);
            }
            Ok(written.map(|_| (unallocated.clone(), freed)))
        })?;
        // Block written: now shrink the handle index (after, never before — see module docs).
        let mut per_handle: BTreeMap<String, usize> = BTreeMap::new();
        for (_, h) in freed {
            if let Some(h) = h {
                *per_handle.entry(h).or_default() += 1;
            }
        }
        for (h, n) in per_handle {
            if Key::handle(&h).is_valid() {
                self.decrement_handle(&h, &cidr, n)?;
            }
        }
        Ok(unallocated)
    }

    /// Addresses currently held by `handle` (reads every block the handle references).
    pub fn ips_by_handle(&self, handle: &str) -> IpamResult<Vec<IpAddr>> {
        check_handle(handle)?;
        let key = Key::handle(handle);
        let Some(kv) = self.store.get_opt(&key)? else {
            return Err(IpamError::HandleNotFound(handle.to_string()));
        };
        let h: IpamHandle =
            serde_json::from_str(&kv.value).map_err(|e| IpamError::corrupt(&key, e))?;
        let mut out = Vec::new();
        for block in h.block.keys() {
            let Ok(cidr) = block.parse::<IpNetwork>() else {
                continue;
            };
            if let Some(b) = self.get_block(cidr)? {
                out.extend(
                    b.block
                        .ordinals_of_handle(handle)
                        .into_iter()
                        .map(|o| b.block.ordinal_to_ip(o)),
                );
            }
        }
        Ok(out)
    }

    /// Release every affinity of `host` (node removal): empty blocks are deleted, others
    /// become unaffine. Returns the number of affinities released.
    pub fn release_host_affinities(&self, host: &str) -> IpamResult<usize> {
        let mut n = 0;
        for version in [IpVersion::V4, IpVersion::V6] {
            for a in self.list_affinities(Some(host), Some(version))? {
                if self.release_block_affinity(host, a.cidr, None)? {
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}
