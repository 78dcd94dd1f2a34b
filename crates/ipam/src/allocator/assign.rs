//! Assignment: automatic (N addresses per family) and of one specific address.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use log::{debug, info, warn};

use super::claim::Claim;
use super::pools::{node_key, pools_prefix, Pool, PoolChoice};
use super::release::ReleaseRequest;
use super::typed::{
    affinities_from, handle_change, is_lost_race, with_block_prefix, AffinityKv, BlockKv,
};
use super::{check_handle, check_host, IntendedUse, Ipam};
use crate::blockgen;
use crate::error::{InvalidArgument, IpamError, IpamResult, NoPools};
use crate::keys::{IpVersion, Key, ListPrefix};
use crate::model::IpamConfig;
use crate::reserved::Reservations;
use crate::store::{Answers, KvPair, Read, StoreError, StoreResult, WriteOp};

/// Calico's `AutoAssignArgs`.
#[derive(Debug, Clone, Default)]
pub struct AutoAssignRequest {
    pub num_v4: usize,
    pub num_v6: usize,
    /// Handle the addresses are recorded under (`<network>.<containerID>` for CNI).
    pub handle_id: String,
    /// Node name.
    pub hostname: String,
    /// Restrict to these pools (exact pool CIDRs); empty = every pool selecting the node.
    pub ipv4_pools: Vec<IpNetwork>,
    pub ipv6_pools: Vec<IpNetwork>,
    /// Allocation attributes (`node`, `timestamp`, `pod`, `namespace`, ...).
    pub attrs: BTreeMap<String, String>,
    /// Per-request cap on affine blocks (0 = use the config / default 20).
    pub max_blocks_per_host: u32,
    pub intended_use: IntendedUse,
    /// Labels of the pod's namespace, for pools' `namespaceSelector` (`None`: no namespace,
    /// selectors see no labels, as Calico's).
    pub namespace_labels: Option<BTreeMap<String, String>>,
}

/// Assigned addresses, each carrying its block's prefix length (e.g. `10.244.1.5/26`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoAssignResult {
    pub ipv4: Vec<IpNetwork>,
    pub ipv6: Vec<IpNetwork>,
}

/// The answers to [`Ipam::auto_assign`]'s opening reads, each consumed where the single
/// read used to be made (so errors surface in the same order as before).
struct Opening {
    config: StoreResult<Option<KvPair>>,
    reservations: StoreResult<Vec<KvPair>>,
    pools: StoreResult<Vec<KvPair>>,
    node: StoreResult<Option<KvPair>>,
    /// The host's affinities of each requested family.
    affinities: Vec<(IpVersion, StoreResult<Vec<KvPair>>)>,
}

/// Calico's `AssignIPArgs`.
#[derive(Debug, Clone, Default)]
pub struct AssignIpRequest {
    pub ip: Option<IpAddr>,
    pub handle_id: String,
    pub hostname: String,
    pub attrs: BTreeMap<String, String>,
    pub intended_use: IntendedUse,
}

impl Ipam<'_> {
    /// Assign `num_v4` IPv4 and `num_v6` IPv6 addresses. All or nothing: on any failure the
    /// addresses this call already took are released again before the error is returned
    /// (if even that fails because the datastore went away, they stay recorded under the
    /// handle, so a later release-by-handle frees them).
    pub fn auto_assign(&self, req: &AutoAssignRequest) -> IpamResult<AutoAssignResult> {
        check_host(&req.hostname)?;
        check_handle(&req.handle_id)?;
        let opening = self.read_opening(req);
        let config = self.config_from(opening.config.clone())?;
        *self.reserved.borrow_mut() = Reservations::from_listing(opening.reservations.clone())?;
        let mut out = AutoAssignResult::default();
        let families = [(IpVersion::V4, req.num_v4), (IpVersion::V6, req.num_v6)];
        for (version, num) in families {
            if num == 0 {
                continue;
            }
            let mut got = Vec::new();
            let r = self.assign_family(version, num, req, &config, &opening, &mut got);
            let failed = match r {
                Ok(()) if got.len() == num => None,
                Ok(()) => unreachable_shortfall(version, num, got.len()),
                Err(e) => Some(e),
            };
            match version {
                IpVersion::V4 => out.ipv4 = got,
                IpVersion::V6 => out.ipv6 = got,
            }
            if let Some(e) = failed {
                self.rollback(&req.handle_id, out.ipv4.iter().chain(&out.ipv6));
                return Err(e);
            }
        }
        Ok(out)
    }

    /// The request's opening reads, in one [`Store::read_many`]: one round trip and one
    /// snapshot on stores that can (etcd, SQLite, memory), else one call each, in the
    /// order they used to be made one by one.
    fn read_opening(&self, req: &AutoAssignRequest) -> Opening {
        let families: Vec<IpVersion> = [(IpVersion::V4, req.num_v4), (IpVersion::V6, req.num_v6)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(v, _)| v)
            .collect();
        let mut reads = vec![
            Read::Get(Key::IpamConfig),
            Read::List(Reservations::list_prefix()),
            Read::List(pools_prefix()),
            Read::Get(node_key(&req.hostname)),
        ];
        reads.extend(families.iter().map(|v| {
            Read::List(ListPrefix::Affinities {
                host: Some(req.hostname.clone()),
                version: Some(*v),
            })
        }));
        let mut got = Answers::new(self.store.read_many(&reads));
        Opening {
            config: got.get(),
            reservations: got.list(),
            pools: got.list(),
            node: got.get(),
            affinities: families.into_iter().map(|v| (v, got.list())).collect(),
        }
    }

    /// Best-effort release of addresses taken by a failed request.
    fn rollback<'a>(&self, handle: &str, ips: impl Iterator<Item = &'a IpNetwork>) {
        let reqs: Vec<ReleaseRequest> = ips
            .map(|n| ReleaseRequest {
                ip: n.ip(),
                handle_id: Some(handle.to_string()),
                sequence_number: None,
            })
            .collect();
        if reqs.is_empty() {
            return;
        }
        if let Err(e) = self.release_ips(&reqs) {
            warn!(
                "rollback of {} addresses of handle {handle} failed: {e}",
                reqs.len()
            );
        }
    }

    /// Assign `num` addresses of one family into `out`; `Err(Exhausted)` on shortfall,
    /// `Err(BlockLimit)` when the host would need a block beyond its limit.
    fn assign_family(
        &self,
        version: IpVersion,
        num: usize,
        req: &AutoAssignRequest,
        config: &IpamConfig,
        opening: &Opening,
        out: &mut Vec<IpNetwork>,
    ) -> IpamResult<()> {
        let host = req.hostname.as_str();
        let requested = match version {
            IpVersion::V4 => &req.ipv4_pools,
            IpVersion::V6 => &req.ipv6_pools,
        };
        let choice = self.determine_pools(
            version,
            requested,
            host,
            req.namespace_labels.as_ref(),
            req.intended_use,
            (opening.pools.clone(), opening.node.clone()),
        )?;
        let pools = &choice.usable;
        let cap = config.effective_block_cap(req.max_blocks_per_host);
        let mut msgs: Vec<String> = Vec::new();

        // 1. Blocks this host already owns. Calico counts every affinity in a usable pool
        // towards the block limit, whatever its state.
        let listed = opening
            .affinities
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, l)| l.clone())
            .unwrap_or_else(|| {
                self.store.list(&ListPrefix::Affinities {
                    host: Some(host.to_string()),
                    version: Some(version),
                })
            });
        let affine = self.prepare_affine_blocks(host, &choice, listed)?;
        let mut owned = affine.len();
        // Finish (or drop) claims a crashed process left pending, and take back blocks a
        // release left pendingDeletion, before anything else, so the datastore converges on
        // every request rather than only when that block is needed.
        let mut usable = Vec::with_capacity(affine.len());
        for a in affine {
            if a.affinity.state.is_confirmed() {
                usable.push((a, false));
            } else if self.block_from_affinity(&a)? {
                usable.push((a, true));
            }
        }
        for (a, verified) in &usable {
            if out.len() >= num {
                return Ok(());
            }
            // A confirmed affinity's block is used straight away (the steady path: one read of
            // block and handle). Only when it is missing or not ours is the affinity checked
            // and repaired as Calico's `getBlockFromAffinity` does (finish the claim, or drop
            // the stale affinity), and the block tried once more.
            let ips = match self.assign_from_block(a.cidr, num - out.len(), req, Some(host))? {
                Some(ips) => ips,
                None if !*verified && self.block_from_affinity(a)? => self
                    .assign_from_block(a.cidr, num - out.len(), req, Some(host))?
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            out.extend(ips);
        }

        // 2. Claim new blocks.
        let mut attempts = 0;
        while out.len() < num {
            if owned >= cap as usize {
                // Calico fails the request here: no borrowing from other hosts' blocks.
                warn!("host {host} already has {owned} blocks, the per-host limit is {cap}");
                return Err(IpamError::BlockLimit {
                    version,
                    limit: cap,
                });
            }
            if !config.auto_allocate_blocks {
                msgs.push("automatic block allocation is disabled".into());
                break;
            }
            attempts += 1;
            if attempts > self.opts.max_retries {
                return Err(IpamError::MaxRetries);
            }
            let Some(cidr) = self.claim_new_block(host, pools, version)? else {
                msgs.push("No more free blocks in pools".into());
                break;
            };
            owned += 1;
            let ips = self.assign_from_block(cidr, num - out.len(), req, Some(host))?;
            out.extend(ips.unwrap_or_default());
        }

        // 3. Borrow from other hosts' blocks.
        if out.len() < num {
            if config.strict_affinity {
                msgs.push("No more free affine blocks and strict affinity enabled".into());
            } else {
                self.borrow(version, num, pools, req, out)?;
                if out.len() < num {
                    let names: Vec<String> = pools.iter().map(|p| p.cidr.to_string()).collect();
                    msgs.push(format!("No IPs available in pools: [{}]", names.join(" ")));
                }
            }
        }
        if out.len() < num {
            return Err(IpamError::Exhausted {
                version,
                message: format!(
                    "Assigned {} out of {num} requested IPv{} addresses; {}",
                    out.len(),
                    version.number(),
                    msgs.join("; ")
                ),
            });
        }
        Ok(())
    }

    /// Calico's `prepareAffinityBlocksForHost`: the host's affinities in pools this request
    /// may use; on the way, the affinity of an empty block whose (enabled) pool no longer
    /// selects the node is released so other hosts can have the block.
    fn prepare_affine_blocks(
        &self,
        host: &str,
        choice: &PoolChoice,
        listed: StoreResult<Vec<KvPair>>,
    ) -> IpamResult<Vec<AffinityKv>> {
        let within = |pools: &[Pool], c: &IpNetwork| pools.iter().any(|p| p.cidr.contains(c.ip()));
        let mut allowed = Vec::new();
        for a in affinities_from(listed?) {
            if within(&choice.usable, &a.cidr) {
                allowed.push(a);
                continue;
            }
            if within(&choice.selecting, &a.cidr) {
                continue;
            }
            let Some(pool) = choice.enabled.iter().find(|p| p.cidr.contains(a.cidr.ip())) else {
                continue;
            };
            match pool.selects_node(&choice.node_labels) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    warn!("not releasing {} of {host}: {e}", a.cidr);
                    continue;
                }
            }
            match self.release_affinity(host, a.cidr, true, None) {
                Ok(true) => info!(
                    "released block {} of {host}: pool {} no longer selects the node",
                    a.cidr, pool.name
                ),
                Ok(false) => debug!("block {} of {host} is not empty, keeping it", a.cidr),
                Err(e) => warn!("releasing block {} of {host} failed: {e}", a.cidr),
            }
        }
        Ok(allowed)
    }

    /// Allocate from any existing block with room (not requiring affinity), walking each pool
    /// from the host's start index.
    fn borrow(
        &self,
        version: IpVersion,
        num: usize,
        pools: &[Pool],
        req: &AutoAssignRequest,
        out: &mut Vec<IpNetwork>,
    ) -> IpamResult<()> {
        let blocks = self.list_blocks(Some(version))?;
        for pool in pools {
            let n = blockgen::num_blocks(&pool.cidr, pool.block_prefix);
            let start = blockgen::start_index(&req.hostname, n);
            let mut cands: Vec<(u128, IpNetwork)> = blocks
                .iter()
                .filter(|b| {
                    pool.cidr.contains(b.block.cidr.ip())
                        && self.reserved.borrow().free_in(&b.block) > 0
                })
                .map(|b| {
                    let idx = blockgen::index_of(&pool.cidr, pool.block_prefix, &b.block.cidr);
                    (blockgen::walk_position(idx, start, n), b.block.cidr)
                })
                .collect();
            cands.sort();
            for (_, cidr) in cands {
                if out.len() >= num {
                    return Ok(());
                }
                debug!("host {} borrowing from block {cidr}", req.hostname);
                let ips = self.assign_from_block(cidr, num - out.len(), req, None)?;
                out.extend(ips.unwrap_or_default());
            }
        }
        Ok(())
    }

    /// Take up to `num` addresses from one block (CAS loop). With `affine_to`, only while the
    /// block is affine to that host. `None` when the block does not exist or is not affine
    /// to `affine_to`. See [`Ipam::record_assignment`] for how the handle and the block are
    /// written.
    fn assign_from_block(
        &self,
        cidr: IpNetwork,
        num: usize,
        req: &AutoAssignRequest,
        affine_to: Option<&str>,
    ) -> IpamResult<Option<Vec<IpNetwork>>> {
        let atomic = self.store.commits_atomically();
        self.retry(|| {
            let (b, handle) = if atomic {
                self.get_block_and_handle(cidr, &req.handle_id)?
            } else {
                (self.get_block(cidr)?, None)
            };
            let Some(mut b) = b else {
                return Ok(Some(None));
            };
            if affine_to.is_some_and(|h| !b.block.is_affine_to(h)) {
                return Ok(Some(None));
            }
            let reserved = self.reserved.borrow();
            let taken = b
                .block
                .auto_assign_skipping(num, &req.handle_id, &req.attrs, |ip| {
                    reserved.matches_ip(ip)
                });
            drop(reserved);
            if taken.is_empty() {
                return Ok(Some(Some(Vec::new())));
            }
            let ips = taken
                .iter()
                .map(|t| with_block_prefix(t.ip, &cidr))
                .collect();
            let written = self.record_assignment(&mut b, &req.handle_id, taken.len(), handle)?;
            Ok(written.then_some(Some(ips)))
        })
    }

    /// Write block `b` (with `n` addresses newly assigned to `handle` in memory) and the
    /// handle's count. `Ok(false)`: lost a race, nothing is left written, re-read and retry.
    ///
    /// On a store that commits atomically (etcd, SQLite, memory) both objects are one commit
    /// whose compares cover both (`handle`: the handle object read with the block). That
    /// is strictly safer than Calico's two writes: no crash or lost answer can leave the
    /// block allocating under a handle that does not count it, nor a handle over-counting,
    /// and a lost race writes nothing, so there is no undo write either. It is also one
    /// datastore round trip and one durable commit (Raft entry, WAL fsync) instead of two.
    ///
    /// Elsewhere (Kubernetes has no multi-object transaction) Calico's order: the handle is
    /// incremented first, then the block CAS-written, and a lost block race undoes the
    /// increment. A crash in between leaves a handle that over-counts, which
    /// release-by-handle cleans up; never an allocation its handle does not reach.
    fn record_assignment(
        &self,
        b: &mut BlockKv,
        handle: &str,
        n: usize,
        handle_kv: Option<KvPair>,
    ) -> IpamResult<bool> {
        let cidr = b.block.cidr;
        if self.store.commits_atomically() {
            // `n` is positive, so the handle is always written (created or updated).
            let mut ops: Vec<WriteOp> = handle_change(handle, &cidr, n as i64, handle_kv)?
                .into_iter()
                .collect();
            ops.push(self.block_write(b, false));
            return match self.store.commit(&ops) {
                Ok(revs) => {
                    if let Some(Some(rev)) = revs.into_iter().last() {
                        b.rev = rev;
                    }
                    Ok(true)
                }
                Err(e) if is_lost_race(&e.error) => Ok(false),
                // Possibly written (both or neither): the handle reaches it either way.
                Err(e) => Err(e.error.into()),
            };
        }
        self.increment_handle(handle, &cidr, n)?;
        match self.update_block(b) {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {
                // Definitely not written: undo the handle increment and retry.
                self.decrement_handle(handle, &cidr, n)?;
                Ok(false)
            }
            // Possibly written: keep the handle count so the addresses stay reachable.
            Err(e) => Err(e.into()),
        }
    }

    /// Assign one specific address (Calico `AssignIP`, used for `IP=` in CNI_ARGS). Claims
    /// the address's block for the host if no block exists yet. Returns the address with its
    /// block prefix.
    pub fn assign_ip(&self, req: &AssignIpRequest) -> IpamResult<IpNetwork> {
        check_host(&req.hostname)?;
        check_handle(&req.handle_id)?;
        let ip = req.ip.ok_or(InvalidArgument::NoAddress)?;
        let config = self.get_config()?;
        let pool = self
            .enabled_pools(IpVersion::of(ip))?
            .into_iter()
            .find(|p| p.cidr.contains(ip))
            .ok_or(IpamError::NotInPool(ip))?;
        if !pool.pool.spec.allows_use(req.intended_use.as_str()) {
            return Err(NoPools::UseNotAllowed {
                pool: pool.name.clone(),
                intended_use: req.intended_use.as_str(),
            }
            .into());
        }
        let cidr = pool
            .block_of(ip)
            .ok_or(InvalidArgument::BadAddress { ip })?;
        let host = req.hostname.as_str();
        let atomic = self.store.commits_atomically();
        self.retry(|| {
            let (b, handle) = if atomic {
                self.get_block_and_handle(cidr, &req.handle_id)?
            } else {
                (self.get_block(cidr)?, None)
            };
            let Some(mut b) = b else {
                if !config.auto_allocate_blocks {
                    return Err(NoPools::NoBlock { block: cidr }.into());
                }
                // Lost → someone else created it; re-read on the next round.
                let _: Claim = self.claim_block(host, cidr)?;
                return Ok(None);
            };
            if config.strict_affinity && !b.block.is_affine_to(host) {
                return Err(IpamError::NotAffine(cidr.to_string()));
            }
            let ordinal = b
                .block
                .ip_to_ordinal(ip)
                .ok_or(InvalidArgument::NotInBlock { ip, block: cidr })?;
            if !b.block.assign_ordinal(ordinal, &req.handle_id, &req.attrs) {
                return Err(IpamError::AlreadyAssigned(ip));
            }
            let written = self.record_assignment(&mut b, &req.handle_id, 1, handle)?;
            Ok(written.then_some(with_block_prefix(ip, &cidr)))
        })
    }
}

/// `assign_family` returns `Err(Exhausted)` on shortfall, so `Ok` with fewer addresses is a
/// bug; report it as exhaustion instead of panicking.
fn unreachable_shortfall(version: IpVersion, num: usize, got: usize) -> Option<IpamError> {
    Some(IpamError::Exhausted {
        version,
        message: format!(
            "Assigned {got} out of {num} requested IPv{} addresses",
            version.number()
        ),
    })
}
