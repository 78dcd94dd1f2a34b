//! nftables backend: one `nft -f -` transaction per operation (two when a first attempt reports
//! elements that must be treated differently); nothing is ever listed.

pub mod render;

use ipnetwork::IpNetwork;

use crate::error::PortmapError;
use crate::exec;
use crate::mapping::Family;
use crate::Request;
use render::{Tag, Txn};

/// A failed transaction: nft's stderr and the (1-based line, message) pairs it reported.
#[derive(Debug)]
struct Failure {
    stderr: String,
    lines: Vec<(usize, String)>,
}

/// Extracts `(line, message)` from nft's `/dev/stdin:LINE:COLS: Error: MESSAGE` lines.
fn parse_errors(stderr: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for l in stderr.lines() {
        let Some((location, msg)) = l.split_once(": Error: ") else {
            continue;
        };
        let mut parts = location.rsplitn(3, ':');
        let _cols = parts.next();
        if let Some(Ok(n)) = parts.next().map(str::parse::<usize>) {
            out.push((n, msg.trim().to_string()));
        }
    }
    out
}

fn run(txn: &Txn) -> Result<(), Failure> {
    let text = txn.text();
    let out = exec::run("nft", &["-f", "-"], Some(&text)).map_err(|e| Failure {
        stderr: e.to_string(),
        lines: Vec::new(),
    })?;
    if out.success {
        return Ok(());
    }
    Err(Failure {
        lines: parse_errors(&out.stderr),
        stderr: out.stderr.trim().to_string(),
    })
}

fn setup_error(f: &Failure) -> PortmapError {
    PortmapError::NftSetup(f.stderr.clone().into())
}

/// Installs static structures and this attachment's elements for `addrs` (one per family).
pub fn add(req: &Request, addrs: &[IpNetwork]) -> Result<(), PortmapError> {
    let txn = render::add(req, addrs);
    let failure = match run(&txn) {
        Ok(()) => return Ok(()),
        Err(f) => f,
    };
    if failure.lines.is_empty() {
        return Err(setup_error(&failure));
    }
    let groups = render::add_groups(req, addrs);
    // Our own owner element exists: a repeated ADD; those keys are replaced below.
    let mut owned: Vec<usize> = failure
        .lines
        .iter()
        .filter(|(_, msg)| msg.contains("File exists"))
        .filter_map(|(line, _)| match txn.tag_of_line(*line) {
            Some(Tag::Owner(g)) => Some(g),
            _ => None,
        })
        .collect();
    owned.sort_unstable();
    owned.dedup();
    for (line, _) in &failure.lines {
        match txn.tag_of_line(*line) {
            Some(Tag::Owner(g)) | Some(Tag::Dnat(g)) | Some(Tag::Other(g))
                if owned.contains(&g) => {}
            Some(Tag::Dnat(g)) => {
                let (family, key, _) = &groups[g];
                return Err(PortmapError::HostPortTaken {
                    family: family.to_string(),
                    proto: key.proto.to_string(),
                    port: key.port,
                    host_ip: key.host_ip,
                });
            }
            _ => return Err(setup_error(&failure)),
        }
    }
    log::debug!(
        "replacing {} existing port mapping(s) of this attachment",
        owned.len()
    );
    let mut retry = txn.without_groups(&owned);
    let replaced: Vec<_> = owned.iter().map(|g| (*g, groups[*g].clone())).collect();
    retry.append(render::replace(req, &replaced));
    run(&retry).map_err(|f| setup_error(&f))
}

/// The families whose `cni_hostport` table exists (both when that cannot be told: the
/// transaction then reports what is missing, if slowly).
fn existing_families() -> Vec<Family> {
    let mut sock = match nf_tables::NfSocket::new() {
        Ok(s) => s,
        Err(e) => {
            log::debug!("nf_tables socket: {e}; assuming both tables exist");
            return Family::BOTH.to_vec();
        }
    };
    Family::BOTH
        .into_iter()
        .filter(|f| {
            let nf = match f {
                Family::V4 => nf_tables::Family::Ipv4,
                Family::V6 => nf_tables::Family::Ipv6,
            };
            // Both our layout and upstream's have the `prerouting` base chain.
            match sock.chain(nf, render::TABLE, "prerouting") {
                Ok(found) => found.is_some(),
                Err(e) => {
                    log::debug!("looking up {f} {}: {e}", render::TABLE);
                    true
                }
            }
        })
        .collect()
}

/// At most this many transactions per DEL: the first reports every element this attachment
/// does not own (the kernel reports each failed message), the second removes the rest; a third
/// covers a concurrent change in between.
const DEL_ATTEMPTS: usize = 3;

/// Removes this attachment's elements from both families, in one transaction when everything is
/// there. Keys that do not exist or belong to someone else are skipped (their owner element is
/// missing, so their group fails and is dropped). A family without our table is not touched.
pub fn del(req: &Request) -> Result<(), PortmapError> {
    let families = existing_families();
    let mut txn = render::del_existing(req, &families);
    for _ in 0..DEL_ATTEMPTS {
        if !txn.lines.iter().any(|(t, _)| t.group().is_some()) {
            return Ok(());
        }
        let failure = match run(&txn) {
            Ok(()) => return Ok(()),
            Err(f) => f,
        };
        // Only element lines may fail; anything else (no line, a set line) is not a key
        // this attachment lacks and would fail again.
        let failed: Option<Vec<usize>> = failure
            .lines
            .iter()
            .map(|(l, _)| txn.tag_of_line(*l).and_then(Tag::group))
            .collect();
        let Some(mut failed) = failed.filter(|f| !f.is_empty()) else {
            return Err(PortmapError::NftRemove(failure.stderr.into()));
        };
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
    run(&txn).map_err(|f| PortmapError::ElementsMissing {
        table: render::TABLE,
        source: f.stderr.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines() {
        let stderr =
            "/dev/stdin:1:26-33: Error: Could not process rule: No such file or directory\n\
                      delete element ip6 t w { tcp . 81 }\n\
                      ^^^^\n\
                      /dev/stdin:12:20-23: Error: Could not process rule: File exists\n";
        assert_eq!(
            parse_errors(stderr),
            vec![
                (
                    1,
                    "Could not process rule: No such file or directory".to_string()
                ),
                (12, "Could not process rule: File exists".to_string())
            ]
        );
        assert!(parse_errors("Error: syntax error").is_empty());
    }
}
