//! The three operations on a whole configuration (all range sets), independent of the CNI
//! protocol crate: ADD allocates one address per set, DEL releases, CHECK looks for a lease.

use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::Value;

use crate::allocator::{Allocation, Allocator};
use crate::config::IpamConfig;
use crate::dns::{parse_resolv_conf, Dns};
use crate::error::{Error, Result};
use crate::store::{Locked, Store};

/// What ADD hands back for the result: one address per range set, routes, DNS.
#[derive(Debug, Clone, PartialEq)]
pub struct AddOutcome {
    pub ips: Vec<Allocation>,
    pub routes: Vec<Value>,
    pub dns: Option<Dns>,
}

/// Allocates one address per range set for `id`/`ifname`. Requested addresses are matched to
/// range sets before anything is written, and on any later failure the addresses this call
/// reserved are released and the round-robin markers it moved are put back, so a failed ADD
/// leaves the store as it found it.
pub fn add(conf: &IpamConfig, id: &str, ifname: &str) -> Result<AddOutcome> {
    let dns = conf
        .resolv_conf
        .as_deref()
        .map(parse_resolv_conf)
        .transpose()?;
    let wanted = match_requested(conf)?;
    let store = Store::open(&conf.data_dir, &conf.name)?;
    let lock = store.lock()?;
    let mut done = Vec::with_capacity(conf.ranges.len());
    let mut ips = Vec::with_capacity(conf.ranges.len());
    for (index, set) in conf.ranges.iter().enumerate() {
        let before = lock.last_reserved_ip(index);
        match Allocator::new(set, index).get(&lock, id, ifname, wanted[index]) {
            Ok(a) => {
                done.push((index, a.address.ip(), before));
                ips.push(a);
            }
            Err(e) => {
                undo(&lock, id, ifname, &done);
                return Err(Error::RangeAllocation {
                    index,
                    source: Box::new(e),
                });
            }
        }
    }
    Ok(AddOutcome {
        ips,
        routes: conf.routes.clone(),
        dns,
    })
}

/// The requested address for each range set (the first set containing it takes it, at most one
/// per set, like upstream); an address no set takes is refused before anything is reserved.
fn match_requested(conf: &IpamConfig) -> Result<Vec<Option<IpAddr>>> {
    // Duplicates collapse (upstream keys them by string); order is kept for determinism.
    let mut seen = HashSet::new();
    let mut requested: Vec<IpAddr> = conf
        .requested_ips
        .iter()
        .copied()
        .filter(|ip| seen.insert(*ip))
        .collect();
    let wanted = conf
        .ranges
        .iter()
        .map(|set| {
            requested
                .iter()
                .position(|ip| set.contains(*ip))
                .map(|i| requested.remove(i))
        })
        .collect();
    if requested.is_empty() {
        Ok(wanted)
    } else {
        Err(Error::RequestedLeftOver(requested))
    }
}

/// Releases what a failed ADD reserved and restores the round-robin markers it moved.
fn undo(lock: &Locked<'_>, id: &str, ifname: &str, done: &[(usize, IpAddr, Option<IpAddr>)]) {
    // Best effort: the ADD's own error is what the runtime needs to see, and its DEL releases
    // by id whatever is left.
    for (index, ip, before) in done.iter().rev() {
        let _ = lock.release_ip(*ip, id, ifname);
        let _ = lock.restore_last_reserved_ip(*index, *before);
    }
}

/// Releases every address of `id`/`ifname`; succeeds when there is nothing to release.
pub fn del(conf: &IpamConfig, id: &str, ifname: &str) -> Result<()> {
    let store = Store::open(&conf.data_dir, &conf.name)?;
    let lock = store.lock()?;
    lock.release_by_id(id, ifname)
}

/// Succeeds when `id`/`ifname` holds at least one address in this network.
pub fn check(conf: &IpamConfig, id: &str, ifname: &str) -> Result<()> {
    let store = Store::open(&conf.data_dir, &conf.name)?;
    let lock = store.lock()?;
    if lock.find_by_id(id, ifname)? {
        Ok(())
    } else {
        Err(Error::NotFound(id.to_string()))
    }
}

/// GC: releases every reservation of this network not held by a `valid` attachment.
pub fn gc(conf: &IpamConfig, valid: &[(&str, &str)]) -> Result<Vec<IpAddr>> {
    let store = Store::open(&conf.data_dir, &conf.name)?;
    let lock = store.lock()?;
    lock.release_all_except(valid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conf(dir: &std::path::Path, ipam: Value, cni_args: &str) -> IpamConfig {
        let mut ipam = ipam;
        ipam["dataDir"] = json!(dir.to_string_lossy());
        IpamConfig::from_value(
            &json!({"cniVersion": "1.0.0", "name": "net", "ipam": ipam}),
            cni_args,
        )
        .unwrap()
    }

    fn addrs(o: &AddOutcome) -> Vec<String> {
        o.ips.iter().map(|a| a.address.to_string()).collect()
    }

    #[test]
    fn dual_stack_add_check_del() {
        let tmp = tempfile::tempdir().unwrap();
        let c = conf(
            tmp.path(),
            json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "2001:db8::/64"}]], "routes": [{"dst": "0.0.0.0/0"}]}),
            "",
        );
        let o = add(&c, "c1", "eth0").unwrap();
        assert_eq!(addrs(&o), ["10.0.0.2/24", "2001:db8::2/64"]);
        assert_eq!(o.ips[0].gateway, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(o.routes, [json!({"dst": "0.0.0.0/0"})]);
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("net/last_reserved_ip.1")).unwrap(),
            "2001:db8::2"
        );
        check(&c, "c1", "eth0").unwrap();
        assert_eq!(
            check(&c, "c2", "eth0").unwrap_err().to_string(),
            "host-local: Failed to find address added by container c2"
        );
        del(&c, "c1", "eth0").unwrap();
        del(&c, "c1", "eth0").unwrap();
        assert!(check(&c, "c1", "eth0").is_err());
        assert!(!tmp.path().join("net/10.0.0.2").exists());
    }

    #[test]
    fn failure_in_a_later_set_releases_earlier_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let c = conf(
            tmp.path(),
            json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.1.0.0/30"}]]}),
            "",
        );
        add(&c, "c1", "eth0").unwrap(); // takes the only address of set 1 (10.1.0.2)
        let e = add(&c, "c2", "eth0").unwrap_err().to_string();
        assert_eq!(e, "failed to allocate for range 1: no IP addresses available in range set: 10.1.0.1-10.1.0.2");
        assert!(
            !tmp.path().join("net/10.0.0.3").exists(),
            "set 0 lease of the failed ADD must be released"
        );
        assert!(tmp.path().join("net/10.0.0.2").exists());
        // The round-robin marker of set 0 is back where the successful ADD left it.
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("net/last_reserved_ip.0")).unwrap(),
            "10.0.0.2"
        );
    }

    #[test]
    fn unmatched_requested_ip_is_refused_before_anything_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let c = IpamConfig::from_value(
            &json!({"cniVersion": "1.0.0", "name": "net",
                "ipam": {"dataDir": tmp.path().to_string_lossy(),
                         "ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.1.0.0/24"}]]},
                "args": {"cni": {"ips": ["10.0.0.7", "10.0.0.8"]}}}),
            "",
        )
        .unwrap();
        let e = add(&c, "c1", "eth0").unwrap_err().to_string();
        assert_eq!(e, "failed to allocate all requested IPs: 10.0.0.8");
        let files: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(files.is_empty(), "{files:?}");
    }

    #[test]
    fn requested_ips_and_leftovers() {
        let tmp = tempfile::tempdir().unwrap();
        let c = conf(tmp.path(), json!({"subnet": "10.0.0.0/24"}), "IP=10.0.0.50");
        assert_eq!(addrs(&add(&c, "c1", "eth0").unwrap()), ["10.0.0.50/24"]);
        assert_eq!(
            add(&c, "c2", "eth0").unwrap_err().to_string(),
            "failed to allocate for range 0: requested IP address 10.0.0.50 is not available in range set 10.0.0.1-10.0.0.254"
        );
        let c = conf(tmp.path(), json!({"subnet": "10.0.0.0/24"}), "IP=10.9.0.1");
        assert_eq!(
            add(&c, "c3", "eth0").unwrap_err().to_string(),
            "failed to allocate all requested IPs: 10.9.0.1"
        );
        assert!(
            check(&c, "c3", "eth0").is_err(),
            "nothing may stay reserved"
        );
    }

    #[test]
    fn concurrent_adds_never_share_an_address() {
        let tmp = tempfile::tempdir().unwrap();
        let c = conf(tmp.path(), json!({"subnet": "10.0.0.0/26"}), "");
        let got: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..40)
                .map(|i| {
                    let c = &c;
                    s.spawn(move || {
                        add(c, &format!("c{i}"), "eth0").unwrap().ips[0]
                            .address
                            .to_string()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let unique: HashSet<&String> = got.iter().collect();
        assert_eq!(unique.len(), 40);
    }

    #[test]
    fn resolv_conf_feeds_dns() {
        let tmp = tempfile::tempdir().unwrap();
        let rc = tmp.path().join("resolv.conf");
        std::fs::write(&rc, "nameserver 192.0.2.53\nsearch example.com\n").unwrap();
        let c = conf(
            tmp.path(),
            json!({"subnet": "10.0.0.0/24", "resolvConf": rc.to_string_lossy()}),
            "",
        );
        let dns = add(&c, "c1", "eth0").unwrap().dns.unwrap();
        assert_eq!(dns.nameservers, ["192.0.2.53"]);
        let c = conf(
            tmp.path(),
            json!({"subnet": "10.0.0.0/24", "resolvConf": "/nonexistent"}),
            "",
        );
        assert!(add(&c, "c2", "eth0").is_err());
    }
}
