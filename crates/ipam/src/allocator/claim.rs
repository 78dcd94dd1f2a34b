//! Block ownership: claiming a block for a host (two-phase affinity), recovering half-done
//! claims, finding a block to claim, and releasing a host's affinity.
//!
//! Claim protocol (Calico's): (1) create the host's affinity as `pending`; (2) create the block
//! with `affinity: host:<node>` — the create is the arbiter between racing hosts, since only
//! one create of a key can succeed; (3) flip the affinity to `confirmed`. A loser deletes its
//! pending affinity. A crash between steps leaves a pending affinity that the next
//! [`Ipam::block_from_affinity`] of that host completes or removes.

use std::collections::HashMap;
use std::time::SystemTime;

use ipnetwork::IpNetwork;
use log::{debug, info, warn};

use super::pools::Pool;
use super::typed::{lost_race, AffinityKv};
use super::Ipam;
use crate::blockgen;
use crate::clock;
use crate::error::IpamResult;
use crate::keys::{IpVersion, Key};
use crate::model::{AffinityState, AllocationBlock, BlockAffinity, AFFINITY_HOST_PREFIX};
use crate::reserved::Reservations;
use crate::store::StoreError;

/// Outcome of claiming one CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The block exists, is affine to us and our affinity is confirmed.
    Claimed,
    /// Another host won the block.
    Lost,
}

/// What [`Ipam::find_usable_block`] found.
enum Candidate {
    /// No block object exists for this subnet.
    Free(IpNetwork),
    /// A block already affine to us with free space (e.g. claimed by a concurrent process
    /// of this host).
    Mine(IpNetwork),
    /// An empty block of another host, old enough to take over.
    Reclaim {
        cidr: IpNetwork,
        owner: String,
        seq: u64,
    },
}

/// Reads a claim may spend probing subnets before it reads every block instead. A pool with
/// as many blocks as this in a row from a host's start is crowded enough that one list is
/// cheaper than more probes.
const PROBE_LIMIT: usize = 8;

/// What [`Ipam::probe_for_block`] could decide.
enum Probe {
    Found(Candidate),
    NoneFree,
    Undecided,
}

impl Ipam<'_> {
    /// Claim `cidr` for `host` (see module docs). Idempotent for a host that already owns it.
    pub(crate) fn claim_block(&self, host: &str, cidr: IpNetwork) -> IpamResult<Claim> {
        let aff_key = Key::host_affinity(host, cidr);
        let pending =
            serde_json::to_string(&BlockAffinity::new(AffinityState::Pending)).unwrap_or_default();
        // (1) pending affinity (or adopt an existing one of ours).
        let aff_rev = self.retry(|| match self.store.create(&aff_key, &pending) {
            Ok(rev) => Ok(Some(rev)),
            Err(StoreError::AlreadyExists(_)) => {
                let Some(a) = self.get_affinity(host, cidr)? else {
                    return Ok(None);
                };
                if a.affinity.state.is_confirmed() {
                    return Ok(Some(a.rev));
                }
                match self.set_affinity_state(&a, AffinityState::Pending) {
                    Ok(rev) => Ok(Some(rev)),
                    Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        })?;

        // (2) the block itself.
        let now = SystemTime::now();
        let block = AllocationBlock::new(
            cidr,
            Some(format!("{AFFINITY_HOST_PREFIX}{host}")),
            Some(clock::rfc3339(now)),
            clock::unix_nanos(now),
        );
        match self.store.create(&Key::block(cidr), &block.to_json()) {
            Ok(_) => debug!("host {host} created block {cidr}"),
            Err(StoreError::AlreadyExists(_)) => {
                let ours = self
                    .get_block(cidr)?
                    .is_some_and(|b| b.block.is_affine_to(host));
                if !ours {
                    debug!("host {host} lost the claim race for {cidr}");
                    match self.store.delete(&aff_key, Some(&aff_rev)) {
                        Ok(()) | Err(StoreError::NotFound(_) | StoreError::Conflict(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                    return Ok(Claim::Lost);
                }
            }
            Err(e) => return Err(e.into()),
        }
        // (3) confirm.
        self.confirm_affinity(host, cidr)?;
        info!("host {host} claimed block {cidr}");
        Ok(Claim::Claimed)
    }

    /// Make `host`'s affinity for `cidr` confirmed, given that the block is affine to `host`.
    /// Returns `Lost` if the block turns out not to be ours (any more).
    pub(crate) fn confirm_affinity(&self, host: &str, cidr: IpNetwork) -> IpamResult<Claim> {
        let confirmed = serde_json::to_string(&BlockAffinity::new(AffinityState::Confirmed))
            .unwrap_or_default();
        self.retry(|| {
            let Some(a) = self.get_affinity(host, cidr)? else {
                // Affinity vanished: recreate it only if the block still names us.
                let ours = self
                    .get_block(cidr)?
                    .is_some_and(|b| b.block.is_affine_to(host));
                if !ours {
                    return Ok(Some(Claim::Lost));
                }
                let key = Key::host_affinity(host, cidr);
                return Ok(lost_race(self.store.create(&key, &confirmed).map(|_| ()))?
                    .map(|_| Claim::Claimed));
            };
            if a.affinity.state.is_confirmed() {
                return Ok(Some(Claim::Claimed));
            }
            Ok(lost_race(
                self.set_affinity_state(&a, AffinityState::Confirmed)
                    .map(|_| ()),
            )?
            .map(|_| Claim::Claimed))
        })
    }

    /// Calico's `getBlockFromAffinity`: make sure the block behind one of our affinities exists,
    /// is ours and the affinity is confirmed — a `pending` or `pendingDeletion` affinity whose
    /// block still names us is confirmed again (a release that marked it has not got to the
    /// block yet, and our block write below makes that release's CAS fail). `false` if the
    /// affinity was stale (removed) or is gone.
    pub(crate) fn block_from_affinity(&self, a: &AffinityKv) -> IpamResult<bool> {
        let mut given = Some(a);
        let mut reread = None;
        self.retry(|| {
            let a = match given.take() {
                Some(a) => a,
                None => match self.get_affinity(&a.host, a.cidr)? {
                    Some(fresh) => reread.insert(fresh),
                    None => return Ok(Some(false)),
                },
            };
            self.block_from_affinity_once(a)
        })
    }

    /// One attempt of [`Self::block_from_affinity`]; `None` = lost a race, re-read and retry.
    fn block_from_affinity_once(&self, a: &AffinityKv) -> IpamResult<Option<bool>> {
        let Some(mut b) = self.get_block(a.cidr)? else {
            // Crash between claim steps (or block deleted): finish the claim.
            return Ok(Some(self.claim_block(&a.host, a.cidr)? == Claim::Claimed));
        };
        if !b.block.is_affine_to(&a.host) {
            warn!("removing stale affinity of {} for {}", a.host, a.cidr);
            let key = Key::host_affinity(&a.host, a.cidr);
            match self.store.delete(&key, Some(&a.rev)) {
                Ok(()) | Err(StoreError::NotFound(_) | StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(Some(false));
        }
        if a.affinity.state.is_confirmed() {
            return Ok(Some(true));
        }
        info!(
            "confirming {:?} affinity of {} for {}",
            a.affinity.state, a.host, a.cidr
        );
        // Pending first, then rewrite the block so any writer working from an older read of
        // it (a claim in flight, a release that marked the affinity) must re-read, then
        // confirm. A lost race at any step starts over from a fresh read.
        if lost_race(
            self.set_affinity_state(a, AffinityState::Pending)
                .map(|_| ()),
        )?
        .is_none()
        {
            return Ok(None);
        }
        match self.update_block(&mut b) {
            Ok(_) => {}
            Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        Ok(Some(
            self.confirm_affinity(&a.host, a.cidr)? == Claim::Claimed,
        ))
    }

    /// Find a block for `host` to claim in `pools` and claim it. `None` when every pool is full.
    pub(crate) fn claim_new_block(
        &self,
        host: &str,
        pools: &[Pool],
        version: IpVersion,
    ) -> IpamResult<Option<IpNetwork>> {
        self.retry(|| {
            // Probing a few subnets costs a few reads whatever the cluster's size; reading
            // every block (what Calico does) grows with it. The full read is kept for what a
            // probe cannot decide: crowded pools and reclaiming other hosts' empty blocks.
            let found = match self.probe_for_block(host, pools)? {
                Probe::Found(c) => Some(c),
                Probe::NoneFree => None,
                Probe::Undecided => {
                    let blocks: HashMap<IpNetwork, AllocationBlock> = self
                        .list_blocks(Some(version))?
                        .into_iter()
                        .map(|b| (b.block.cidr, b.block))
                        .collect();
                    self.find_usable_block(host, pools, &blocks)
                }
            };
            match found {
                None => Ok(Some(None)),
                Some(Candidate::Free(cidr)) => Ok(match self.claim_block(host, cidr)? {
                    Claim::Claimed => Some(Some(cidr)),
                    Claim::Lost => None,
                }),
                Some(Candidate::Mine(cidr)) => Ok(match self.confirm_affinity(host, cidr)? {
                    Claim::Claimed => Some(Some(cidr)),
                    Claim::Lost => None,
                }),
                Some(Candidate::Reclaim { cidr, owner, seq }) => {
                    info!("host {host} reclaiming empty block {cidr} from {owner}");
                    self.release_affinity(&owner, cidr, true, Some(seq))?;
                    Ok(None)
                }
            }
        })
    }

    /// The walk of [`Ipam::find_usable_block`] done with one read per subnet, in the same
    /// order, for up to [`PROBE_LIMIT`] subnets per pool. Decides only what the full walk
    /// would decide the same way: the first subnet without a block (or with one of ours with
    /// room). A pool it could not walk to the end hands over to the full walk.
    fn probe_for_block(&self, host: &str, pools: &[Pool]) -> IpamResult<Probe> {
        let mut reads = 0usize;
        for pool in pools {
            let n = blockgen::num_blocks(&pool.cidr, pool.block_prefix);
            let mut idx = blockgen::start_index(host, n);
            let mut walked: u128 = 0;
            while walked < n {
                if reads == PROBE_LIMIT {
                    return Ok(Probe::Undecided);
                }
                let subnet = blockgen::subnet_at(&pool.cidr, pool.block_prefix, idx);
                reads += 1;
                // The same rules as the full walk: a wholly reserved subnet is never claimed,
                // and a block of ours has room only in addresses no reservation covers.
                if !self.reserved.borrow().matches_whole(&subnet) {
                    match self.get_block(subnet)? {
                        None => return Ok(Probe::Found(Candidate::Free(subnet))),
                        Some(b)
                            if b.block.is_affine_to(host)
                                && self.reserved.borrow().free_in(&b.block) > 0 =>
                        {
                            return Ok(Probe::Found(Candidate::Mine(subnet)))
                        }
                        Some(_) => {}
                    }
                }
                walked += 1;
                idx = if idx + 1 >= n { 0 } else { idx + 1 };
            }
        }
        // Every pool is full of blocks: only the full read can find one to reclaim.
        Ok(if pools.is_empty() {
            Probe::NoneFree
        } else {
            Probe::Undecided
        })
    }

    /// Calico's `findUsableBlock`: walk each pool from the host's start index; first subnet
    /// without a block object wins (or one of ours with room); else an old empty block of
    /// another host.
    fn find_usable_block(
        &self,
        host: &str,
        pools: &[Pool],
        blocks: &HashMap<IpNetwork, AllocationBlock>,
    ) -> Option<Candidate> {
        for pool in pools {
            let n = blockgen::num_blocks(&pool.cidr, pool.block_prefix);
            let in_pool = blocks.keys().filter(|c| pool.cidr.contains(c.ip())).count() as u128;
            if in_pool >= n {
                // Full of block objects: a walk would find nothing free.
                if let Some(c) = mine_with_room(blocks, pool, host, &self.reserved.borrow()) {
                    return Some(Candidate::Mine(c));
                }
                continue;
            }
            let start = blockgen::start_index(host, n);
            // Each probe hits an existing block, a wholly reserved subnet, or wins.
            let probes = in_pool
                .saturating_add(
                    self.reserved
                        .borrow()
                        .max_whole_blocks(pool.cidr, pool.block_prefix),
                )
                .min(n - 1);
            let mut idx = start;
            for _ in 0..=probes {
                let subnet = blockgen::subnet_at(&pool.cidr, pool.block_prefix, idx);
                match blocks.get(&subnet) {
                    _ if self.reserved.borrow().matches_whole(&subnet) => {}
                    None => return Some(Candidate::Free(subnet)),
                    Some(b) if b.is_affine_to(host) && self.reserved.borrow().free_in(b) > 0 => {
                        return Some(Candidate::Mine(subnet))
                    }
                    Some(_) => {}
                }
                idx = if idx + 1 >= n { 0 } else { idx + 1 };
            }
        }
        let now = SystemTime::now();
        for pool in pools {
            let mut old_empty: Vec<&AllocationBlock> = blocks
                .values()
                .filter(|b| {
                    pool.cidr.contains(b.cidr.ip())
                        && b.is_empty()
                        && b.host().is_some_and(|h| h != host)
                        && claim_age_ok(b, now, self.opts.reclaim_min_age)
                })
                .collect();
            old_empty.sort_by_key(|b| b.cidr);
            if let Some(b) = old_empty.first() {
                return Some(Candidate::Reclaim {
                    cidr: b.cidr,
                    owner: b.host().unwrap_or_default().to_string(),
                    seq: b.sequence_number,
                });
            }
        }
        None
    }

    /// Release `host`'s affinity for `cidr`: an empty block is deleted, a non-empty one becomes
    /// unaffine (its addresses stay allocated). With `only_if_seq`, nothing happens unless the
    /// block is empty and still at that sequence number (reclaim safety). Returns whether the
    /// affinity is gone.
    pub fn release_block_affinity(
        &self,
        host: &str,
        cidr: IpNetwork,
        only_if_seq: Option<u64>,
    ) -> IpamResult<bool> {
        self.release_affinity(host, cidr, only_if_seq.is_some(), only_if_seq)
    }

    /// Calico's `releaseBlockAffinity`: read the block; refuse (`false`) when `require_empty`
    /// and it holds addresses (cooling ones count) or when its sequence number moved on from
    /// `only_if_seq`; mark the affinity `pendingDeletion`; delete (empty) or unaffine the block
    /// *as read before the mark*, so an owner that used or re-confirmed it meanwhile makes the
    /// CAS fail and we start over; then delete the affinity.
    pub(crate) fn release_affinity(
        &self,
        host: &str,
        cidr: IpNetwork,
        require_empty: bool,
        only_if_seq: Option<u64>,
    ) -> IpamResult<bool> {
        let aff_key = Key::host_affinity(host, cidr);
        let delete_affinity = |rev: Option<&crate::store::Revision>| -> IpamResult<Option<bool>> {
            match self.store.delete(&aff_key, rev) {
                Ok(()) | Err(StoreError::NotFound(_)) => Ok(Some(true)),
                Err(StoreError::Conflict(_)) => Ok(None),
                Err(e) => Err(e.into()),
            }
        };
        self.retry(|| {
            let aff = self.get_affinity(host, cidr)?;
            let Some(mut b) = self.get_block(cidr)? else {
                return delete_affinity(aff.as_ref().map(|a| &a.rev));
            };
            if !b.block.is_affine_to(host) {
                // Stale affinity: the block belongs to someone else (or no one).
                return delete_affinity(aff.as_ref().map(|a| &a.rev));
            }
            let moved_on = only_if_seq.is_some_and(|s| s != b.block.sequence_number);
            if moved_on || (require_empty && !b.block.is_empty()) {
                return Ok(Some(false));
            }
            let aff_rev = match &aff {
                Some(a) if a.affinity.state == AffinityState::PendingDeletion => {
                    Some(a.rev.clone())
                }
                Some(a) => match self.set_affinity_state(a, AffinityState::PendingDeletion) {
                    Ok(rev) => Some(rev),
                    Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => return Ok(None),
                    Err(e) => return Err(e.into()),
                },
                None => None,
            };
            let r = if b.block.is_empty() {
                self.store.delete(&b.key(), Some(&b.rev))
            } else {
                b.block.affinity = None;
                b.block.host_affinity = None;
                b.block.affinity_claim_time = None;
                self.update_block(&mut b).map(|_| ())
            };
            match r {
                Ok(()) | Err(StoreError::NotFound(_)) => {}
                // The owner wrote the block since we read it; the affinity stays
                // pendingDeletion until the owner re-confirms it or we succeed next round.
                Err(StoreError::Conflict(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
            delete_affinity(aff_rev.as_ref())
        })
    }
}

fn mine_with_room(
    blocks: &HashMap<IpNetwork, AllocationBlock>,
    pool: &Pool,
    host: &str,
    reserved: &Reservations,
) -> Option<IpNetwork> {
    blocks
        .values()
        .filter(|b| {
            pool.cidr.contains(b.cidr.ip()) && b.is_affine_to(host) && reserved.free_in(b) > 0
        })
        .map(|b| b.cidr)
        .min()
}

fn claim_age_ok(b: &AllocationBlock, now: SystemTime, min_age: std::time::Duration) -> bool {
    match b
        .affinity_claim_time
        .as_deref()
        .and_then(clock::parse_rfc3339)
    {
        Some(t) => now.duration_since(t).is_ok_and(|age| age >= min_age),
        // Blocks from older Calico versions carry no claim time: old enough.
        None => true,
    }
}
