//! nftables backend: per-attachment state is only set/map elements. An operation looks its keys
//! up (one round trip for all) and then changes them with one nf_tables netlink transaction
//! (DEL retries without keys removed concurrently in between). The static structures (table, sets, chains, rules) are written with
//! one `nft -f -` run when an ADD finds them missing or stale (the node's first ADD, or after
//! someone else rewrote our chains); a steady ADD checks them with one rule dump per chain we own
//! and runs no `nft`.

pub mod render;

use std::collections::HashSet;

use ipnetwork::IpNetwork;

use nf_tables::{ElementChange, ElementLookup, NfSocket};

use crate::error::{PortmapError, ToolFailure};
use crate::exec;
use crate::mapping::Family;
use crate::Request;
use render::{Change, ElemKey, ElemOp, Tag, Txn, TABLE};

/// Runs the static script with `nft -f -`; the error is nft's stderr.
fn run(txn: &Txn) -> Result<(), ToolFailure> {
    let text = txn.text();
    let out = exec::run("nft", &["-f", "-"], Some(&text))
        .map_err(|e| ToolFailure::from(e.to_string()))?;
    if out.success {
        return Ok(());
    }
    Err(ToolFailure::from(out.stderr.trim().to_string()))
}

fn netlink_failure(e: nf_tables::Error) -> ToolFailure {
    ToolFailure::from(e.to_string())
}

/// The nf_tables form of one element change.
fn element(op: &ElemOp) -> Result<nf_tables::Element, nf_tables::Error> {
    use nf_tables::Concat;
    let (fields, owner) = match &op.key {
        ElemKey::Owner { token, key } => (key, Some(token)),
        ElemKey::Mapping(key) => (key, None),
    };
    let mut k = Concat::new();
    if let Some(token) = owner {
        let any = op.family.unspecified();
        k = k.ifname(token)?.addr(fields.host_ip.unwrap_or(any));
    } else if let Some(ip) = fields.host_ip {
        k = k.addr(ip);
    }
    let k = k
        .inet_proto(fields.proto.number())
        .inet_service(fields.port);
    let mut e = match op.data {
        Some((ip, port)) => {
            nf_tables::Element::mapping(k, Concat::new().addr(ip).inet_service(port))
        }
        None => nf_tables::Element::key(k),
    };
    e.comment = op.comment.clone();
    Ok(e)
}

/// A change of an element transaction the kernel refused.
struct Refused {
    tag: Tag,
    errno: i32,
    /// The change in nft syntax, for the error message.
    what: String,
}

impl Refused {
    fn error(&self) -> nf_tables::Error {
        nf_tables::Error::Kernel {
            op: self.what.clone(),
            errno: self.errno,
        }
    }
}

/// Applies the element changes of `txn` as one netlink transaction. Committed: an empty list;
/// refused: every refused change.
fn apply(sock: &mut NfSocket, txn: &Txn) -> Result<Vec<Refused>, nf_tables::Error> {
    let mut batch = nf_tables::Batch::new();
    let mut ops = Vec::new();
    for (tag, op) in txn.elems() {
        let change = match op.change {
            Change::Create => ElementChange::Create,
            Change::Add => ElementChange::Add,
            Change::Delete => ElementChange::Delete,
        };
        batch.element(change, op.family.nf_tables(), TABLE, op.set, &element(op)?)?;
        ops.push((tag, op));
    }
    let refused = sock.apply_or_refusals(&batch)?;
    Ok(refused
        .iter()
        .map(|r| Refused {
            tag: ops[r.index].0,
            errno: r.errno,
            what: ops[r.index].1.text(),
        })
        .collect())
}

/// The tags of the element changes of `txn` selected by `want` whose key exists (a missing
/// table or set counts as absent); one round trip, no transaction. Looking first keeps the
/// common repeated operations (a second DEL, a repeated ADD) from sending a transaction the
/// kernel refuses: an aborted transaction costs an RCU grace period (≈ 10 ms) in the kernel.
fn existing(
    sock: &mut NfSocket,
    txn: &Txn,
    want: impl Fn(Tag) -> bool,
) -> Result<Vec<Tag>, nf_tables::Error> {
    let ops: Vec<(Tag, &ElemOp)> = txn.elems().filter(|(t, _)| want(*t)).collect();
    let elements = ops
        .iter()
        .map(|(_, op)| element(op))
        .collect::<Result<Vec<_>, _>>()?;
    let lookups: Vec<ElementLookup> = ops
        .iter()
        .zip(&elements)
        .map(|((_, op), e)| ElementLookup {
            family: op.family.nf_tables(),
            table: TABLE,
            set: op.set,
            element: e,
        })
        .collect();
    let found = sock.elements_exist(&lookups)?;
    Ok(ops
        .iter()
        .zip(found)
        .filter(|(_, f)| *f)
        .map(|((t, _), _)| *t)
        .collect())
}

/// Whether the chains we own in `family` end with this config's marker (one dump per chain).
fn static_is_current(sock: &mut NfSocket, req: &Request, family: Family) -> bool {
    let marker = render::static_marker(req, family);
    render::marked_chains(req).iter().all(|chain| {
        match sock.rules(family.nf_tables(), TABLE, chain) {
            Ok(rules) => rules.last().and_then(|r| r.comment.as_deref()) == Some(&marker),
            Err(e) => {
                log::debug!("listing {family} {TABLE} {chain}: {e}");
                false
            }
        }
    })
}

/// Writes the static structures of `families` with one `nft -f` run (the node's first ADD, or
/// a repair after someone else changed our chains).
fn install_static(req: &Request, families: &[Family]) -> Result<(), PortmapError> {
    if families.is_empty() {
        return Ok(());
    }
    log::debug!("installing the static nftables structures of {families:?}");
    run(&render::static_txn(req, families)).map_err(PortmapError::NftSetup)
}

/// Installs this attachment's elements for `addrs` (one per family) in one netlink transaction,
/// after making sure the static structures are in place (`nft -f` only when they are not).
pub fn add(req: &Request, addrs: &[IpNetwork]) -> Result<(), PortmapError> {
    let setup = |e| PortmapError::NftSetup(netlink_failure(e));
    let mut sock = NfSocket::new().map_err(setup)?;
    let families = render::families_of(addrs);
    let stale: Vec<Family> = families
        .iter()
        .copied()
        .filter(|f| !static_is_current(&mut sock, req, *f))
        .collect();
    install_static(req, &stale)?;
    let mut repaired = !stale.is_empty();
    let groups = render::add_groups(req, addrs);
    let fresh = render::add_elements(req, addrs);
    // Our own owner element exists: a repeated ADD, whose keys are replaced. A DNAT key that
    // exists without our owner element belongs to another attachment.
    let present = existing(&mut sock, &fresh, |t| {
        matches!(t, Tag::Owner(_) | Tag::Dnat(_))
    })
    .map_err(setup)?;
    let owned: Vec<usize> = present
        .iter()
        .filter_map(|t| match t {
            Tag::Owner(g) => Some(*g),
            _ => None,
        })
        .collect();
    let owned_set: HashSet<usize> = owned.iter().copied().collect();
    let taken = |g: usize| {
        let (family, key, _) = &groups[g];
        PortmapError::HostPortTaken {
            family: family.to_string(),
            proto: key.proto.to_string(),
            port: key.port,
            host_ip: key.host_ip,
        }
    };
    if let Some(g) = present.iter().find_map(|t| match t {
        Tag::Dnat(g) if !owned_set.contains(g) => Some(*g),
        _ => None,
    }) {
        return Err(taken(g));
    }
    if !owned.is_empty() {
        log::debug!(
            "replacing {} existing port mapping(s) of this attachment",
            owned.len()
        );
    }
    let mut txn = fresh.without_groups(&owned);
    let replaced: Vec<_> = owned.iter().map(|g| (*g, groups[*g])).collect();
    txn.append(render::replace(req, &replaced));
    loop {
        let refused = apply(&mut sock, &txn).map_err(setup)?;
        // A set missing although our chains are intact (deleted by hand): restore once.
        if !repaired && refused.iter().any(|r| r.errno == libc::ENOENT) {
            install_static(req, &families)?;
            repaired = true;
            continue;
        }
        let Some(first) = refused.first() else {
            return Ok(());
        };
        // The kernel's create semantics still decide: a concurrent ADD may have taken a key
        // since the lookup.
        let raced = refused.iter().find_map(|r| match r.tag {
            Tag::Dnat(g) if r.errno == libc::EEXIST => Some(g),
            _ => None,
        });
        return Err(match raced {
            Some(g) => taken(g),
            None => setup(first.error()),
        });
    }
}

/// The families whose `cni_hostport` table exists (both when that cannot be told: the
/// transaction then reports what is missing).
fn existing_families(sock: &mut NfSocket) -> Vec<Family> {
    Family::BOTH
        .into_iter()
        .filter(|f| {
            // Both our layout and upstream's have the `prerouting` base chain.
            match sock.chain(f.nf_tables(), TABLE, "prerouting") {
                Ok(found) => found.is_some(),
                Err(e) => {
                    log::debug!("looking up {f} {TABLE}: {e}");
                    true
                }
            }
        })
        .collect()
}

/// At most this many transactions per DEL: the first reports every element this attachment
/// does not own (the kernel reports each refused change), the second removes the rest; a third
/// covers a concurrent change in between.
const DEL_ATTEMPTS: usize = 3;

/// Removes this attachment's elements from both families, in one netlink transaction when
/// everything is there. Keys that do not exist or belong to someone else are skipped (their
/// owner element is missing, so their group fails and is dropped), as are keys of a table
/// without our sets (upstream's). A family without our table is not touched.
pub fn del(req: &Request) -> Result<(), PortmapError> {
    let remove = |e| PortmapError::NftRemove(netlink_failure(e));
    let mut sock = NfSocket::new().map_err(remove)?;
    let families = existing_families(&mut sock);
    let all = render::del_existing(req, &families);
    // Keys whose owner element (ours) is absent are not ours to remove: drop them up front.
    let owners: HashSet<Tag> = existing(&mut sock, &all, |t| matches!(t, Tag::Owner(_)))
        .map_err(remove)?
        .into_iter()
        .collect();
    let absent: Vec<usize> = all
        .elems()
        .filter_map(|(t, _)| match t {
            Tag::Owner(g) if !owners.contains(&t) => Some(g),
            _ => None,
        })
        .collect();
    let mut txn = all.without_groups(&absent);
    for _ in 0..DEL_ATTEMPTS {
        if txn.elems().next().is_none() {
            return Ok(());
        }
        let refused = apply(&mut sock, &txn).map_err(remove)?;
        if refused.is_empty() {
            return Ok(());
        }
        // Only elements removed since the lookup are expected; anything else would fail again.
        if let Some(r) = refused.iter().find(|r| r.errno != libc::ENOENT) {
            return Err(remove(r.error()));
        }
        let mut failed: Vec<usize> = refused.iter().filter_map(|r| r.tag.group()).collect();
        failed.sort_unstable();
        failed.dedup();
        log::debug!("nft DEL: {} key group(s) not present", failed.len());
        txn = txn.without_groups(&failed);
    }
    Err(PortmapError::NftRemoveRetries {
        attempts: DEL_ATTEMPTS,
    })
}

/// Verifies every expected element exists (and re-asserts it) in one transaction.
pub fn check(req: &Request, addrs: &[IpNetwork]) -> Result<(), PortmapError> {
    let txn = render::check(req, addrs);
    if txn.is_empty() {
        return Ok(());
    }
    let missing = |source| PortmapError::ElementsMissing {
        table: TABLE,
        source,
    };
    let mut sock = NfSocket::new().map_err(|e| missing(netlink_failure(e)))?;
    match apply(&mut sock, &txn)
        .map_err(|e| missing(netlink_failure(e)))?
        .first()
    {
        None => Ok(()),
        Some(r) => Err(missing(netlink_failure(r.error()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Protocol;
    use render::Key;

    #[test]
    fn element_keys_follow_the_set_types() {
        // hostport_owner in ip6: ifname . ipv6_addr . inet_proto . inet_service = 16+16+4+4.
        let key = Key {
            host_ip: None,
            proto: Protocol::Udp,
            port: 53,
        };
        let owner = ElemOp {
            change: Change::Create,
            family: Family::V6,
            set: "hostport_owner",
            key: ElemKey::Owner {
                token: "ce0bd88d2c9cb28".into(),
                key,
            },
            data: None,
            comment: Some("net cid".into()),
        };
        let e = element(&owner).unwrap();
        let k = e.key.as_bytes();
        assert_eq!(k.len(), 40);
        assert_eq!(&k[..16], b"ce0bd88d2c9cb28\0");
        assert_eq!(&k[16..32], [0; 16], "any address");
        assert_eq!(&k[32..], [17, 0, 0, 0, 0, 53, 0, 0]);
        assert_eq!(e.comment.as_deref(), Some("net cid"));
        // hostip_hostport_dnat in ip: ipv4_addr . inet_proto . inet_service : ipv4_addr .
        // inet_service.
        let dnat = ElemOp {
            change: Change::Create,
            family: Family::V4,
            set: "hostip_hostport_dnat",
            key: ElemKey::Mapping(Key {
                host_ip: Some("192.0.2.1".parse().unwrap()),
                proto: Protocol::Sctp,
                port: 8080,
            }),
            data: Some(("10.244.1.5".parse().unwrap(), 80)),
            comment: None,
        };
        let e = element(&dnat).unwrap();
        assert_eq!(
            e.key.as_bytes(),
            [192, 0, 2, 1, 132, 0, 0, 0, 0x1f, 0x90, 0, 0]
        );
        assert_eq!(e.data.unwrap().as_bytes(), [10, 244, 1, 5, 0, 80, 0, 0]);
    }
}
