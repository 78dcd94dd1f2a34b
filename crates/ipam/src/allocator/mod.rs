//! The allocator: Calico's block IPAM algorithm over any [`Store`].
//!
//! Every write is a compare-and-swap against the revision just read, inside a loop bounded by
//! [`IpamOptions::max_retries`]; a lost race re-reads and retries, it never overwrites.
//! Write ordering keeps two safety properties even if the process dies between steps:
//! * **no duplicates** — an address is handed out only by a successful CAS write of its block;
//! * **no leaks** — the handle index is incremented *before* the block write that allocates
//!   under it and is only deleted *after* the block writes that free its addresses, so every
//!   allocation is always reachable from its handle (a crash can at worst leave a handle that
//!   over-counts, which release-by-handle cleans up).
//!
//! On stores that commit several keys atomically ([`Store::commits_atomically`]: etcd,
//! SQLite, memory) an assignment writes the handle and the block in one commit, and a release
//! by handle its blocks and the handle's deletion in one commit, each with a compare on every
//! object: strictly safer than the ordering above (no half-done state exists at all), and one
//! round trip and durable commit instead of two.

mod admin;
mod assign;
mod claim;
mod pools;
mod release;
mod typed;

use std::cell::{Cell, RefCell};
use std::time::Duration;

pub use admin::{AllocationInfo, BlockInfo, PoolUsage};
pub use assign::{AssignIpRequest, AutoAssignRequest, AutoAssignResult};
pub use release::ReleaseRequest;

use crate::error::{InvalidArgument, IpamError, IpamResult};
use crate::keys::Key;
use crate::reserved::Reservations;
use crate::store::Store;

/// What an address is for (pool `allowedUses`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntendedUse {
    #[default]
    Workload,
    Tunnel,
    LoadBalancer,
}

impl IntendedUse {
    /// The value in pool `allowedUses`.
    pub fn as_str(self) -> &'static str {
        match self {
            IntendedUse::Workload => "Workload",
            IntendedUse::Tunnel => "Tunnel",
            IntendedUse::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Tunables.
#[derive(Debug, Clone)]
pub struct IpamOptions {
    /// CAS retry budget per loop (Calico: 100).
    pub max_retries: usize,
    /// Fail when the host has no Calico `Node` object (Calico's behaviour). When false, a
    /// missing node is treated as a node without labels (used by the embedded local store,
    /// where no calico-node creates Node objects).
    pub require_node: bool,
    /// Minimum age of another host's empty block before we may take it over (Calico: 1 min).
    pub reclaim_min_age: Duration,
}

impl Default for IpamOptions {
    fn default() -> Self {
        IpamOptions {
            max_retries: 100,
            require_node: true,
            reclaim_min_age: Duration::from_secs(60),
        }
    }
}

/// The allocator. Cheap to construct; holds no state besides the store reference, so any
/// number of instances (threads, processes) may work on one datastore concurrently.
pub struct Ipam<'a> {
    store: &'a dyn Store,
    opts: IpamOptions,
    /// Lost CAS races so far (for logs and contention measurements).
    conflicts: Cell<usize>,
    /// `ipCooldownSeconds` from the last config read (see [`Ipam::cooldown_secs`]).
    cooldown: Cell<Option<i64>>,
    /// IPReservations loaded at the start of the current `auto_assign` (Calico also reads
    /// them once per request); consulted wherever addresses or blocks are picked.
    reserved: RefCell<Reservations>,
}

impl<'a> Ipam<'a> {
    /// An allocator with default options.
    pub fn new(store: &'a dyn Store) -> Self {
        Self::with_options(store, IpamOptions::default())
    }

    /// An allocator with explicit options.
    pub fn with_options(store: &'a dyn Store, opts: IpamOptions) -> Self {
        Ipam {
            store,
            opts,
            conflicts: Cell::new(0),
            cooldown: Cell::new(None),
            reserved: RefCell::default(),
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &'a dyn Store {
        self.store
    }

    /// The options in use.
    pub fn options(&self) -> &IpamOptions {
        &self.opts
    }

    /// How many times an operation of this allocator lost a race and retried.
    pub fn conflicts(&self) -> usize {
        self.conflicts.get()
    }

    /// Run `f` until it returns `Some`, at most `max_retries` times (`None` = lost a race).
    fn retry<T>(&self, mut f: impl FnMut() -> IpamResult<Option<T>>) -> IpamResult<T> {
        for _ in 0..self.opts.max_retries.max(1) {
            if let Some(v) = f()? {
                return Ok(v);
            }
            self.conflicts.set(self.conflicts.get() + 1);
        }
        Err(IpamError::MaxRetries)
    }
}

fn check_host(host: &str) -> IpamResult<()> {
    if host.is_empty() || host.contains('/') {
        return Err(InvalidArgument::HostName {
            host: host.to_string(),
        }
        .into());
    }
    Ok(())
}

fn check_handle(handle: &str) -> IpamResult<()> {
    if !Key::handle(handle).is_valid() {
        return Err(InvalidArgument::Handle {
            handle: handle.to_string(),
        }
        .into());
    }
    Ok(())
}
