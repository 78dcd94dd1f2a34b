//! Reading what IPAM plugins have recorded, from outside: host-local's reservation files and
//! calico-ipam's embedded local store (a SQLite file, read with the `sqlite3` CLI so the harness
//! stays independent of the plugin crates).

use std::path::Path;
use std::process::Command;

use crate::error::{HarnessError, Result};

/// Addresses host-local holds for `network` under its `dataDir` (one file per address).
pub fn host_local_reservations(data_dir: &Path, network: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data_dir.join(network))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Runs one query against the local store `db`; one output line per row, columns `|`-separated.
fn sqlite(db: &Path, query: &str) -> Result<Vec<String>> {
    let out = Command::new("sqlite3")
        .arg("-readonly")
        .arg(db)
        .arg(query)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => HarnessError::ToolMissing {
                tool: "sqlite3".into(),
                hint: "install the Debian package sqlite3 (run-tests.sh does)".into(),
            },
            _ => HarnessError::io("running sqlite3", e),
        })?;
    if !out.status.success() {
        return Err(HarnessError::Command {
            cmd: format!("sqlite3 {} {query:?}", db.display()),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// IPAM handles (one per attachment holding addresses) in calico-ipam's local store: the ids
/// after `/calico/ipam/v2/handle/`. A missing store file means no allocations.
pub fn calico_local_handles(db: &Path) -> Result<Vec<String>> {
    if !db.exists() {
        return Ok(Vec::new());
    }
    let prefix = "/calico/ipam/v2/handle/";
    Ok(sqlite(
        db,
        &format!("SELECT key FROM kv WHERE key LIKE '{prefix}%' ORDER BY key"),
    )?
    .into_iter()
    .map(|k| k.trim_start_matches(prefix).to_string())
    .collect())
}

/// Blocks in calico-ipam's local store with the number of addresses in use in each:
/// (`10.244.5.0-26`, 2) from keys `/calico/ipam/v2/assignment/ipv4/block/<cidr>`.
pub fn calico_local_blocks(db: &Path) -> Result<Vec<(String, usize)>> {
    if !db.exists() {
        return Ok(Vec::new());
    }
    let rows = sqlite(
        db,
        "SELECT key, (SELECT count(*) FROM json_each(kv.value, '$.allocations') \
         WHERE json_each.type != 'null') FROM kv \
         WHERE key LIKE '/calico/ipam/v2/assignment/%' ORDER BY key",
    )?;
    rows.iter()
        .map(|row| {
            let (key, n) = row
                .rsplit_once('|')
                .ok_or_else(|| HarnessError::parse("sqlite3 row", row))?;
            let block = key.rsplit('/').next().unwrap_or(key).to_string();
            let n = n
                .parse()
                .map_err(|e| HarnessError::parse("allocation count", e))?;
            Ok((block, n))
        })
        .collect()
}
