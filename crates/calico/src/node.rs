//! Node name and MTU, resolved the way Calico resolves them.

use crate::config::{CalicoConfig, DEFAULT_MTU, MTU_FILE};
use cni::{CniError, ErrorCode};
use datastore::NodeNameSources;
use std::path::Path;

/// The node name (see [`datastore::node_name`] for the order of sources).
pub fn node_name(conf: &CalicoConfig) -> Result<String, CniError> {
    datastore::node_name(NodeNameSources {
        nodename: conf.nodename.as_deref(),
        nodename_file: Path::new(conf.nodename_file()),
        hostname: conf.hostname.as_deref(),
    })
}

/// Calico refuses to work until calico-node has written its nodename file, so pods are not wired
/// before policy can be programmed. Our embedded store has no calico-node, so `local` skips it.
pub fn require_nodename_file(conf: &CalicoConfig) -> Result<(), CniError> {
    if conf.nodename_file_optional || conf.datastore() == "local" {
        return Ok(());
    }
    let path = conf.nodename_file();
    // Code 11: calico-node writes the file when it starts, so a retry can succeed.
    std::fs::metadata(path).map(|_| ()).map_err(|e| {
        CniError::new(
            ErrorCode::TryAgainLater,
            format!(
                "stat {path}: {e}: check that the calico/node container is running and has mounted /var/lib/calico/"
            ),
        )
    })
}

/// Config `mtu` when set, else `/var/lib/calico/mtu` (written by calico-node's MTU detection),
/// else the kernel default.
pub fn mtu(conf: &CalicoConfig) -> Result<u32, CniError> {
    mtu_from(conf, Path::new(MTU_FILE))
}

fn mtu_from(conf: &CalicoConfig, file: &Path) -> Result<u32, CniError> {
    if conf.mtu > 0 {
        return Ok(conf.mtu as u32);
    }
    match std::fs::read_to_string(file) {
        Ok(s) => s
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|m| *m >= 68)
            .ok_or_else(|| {
                CniError::new(
                    ErrorCode::InvalidConfig,
                    format!(
                        "failed to parse MTU file {}: {:?} is not an MTU",
                        file.display(),
                        s.trim()
                    ),
                )
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !conf.require_mtu_file => {
            Ok(DEFAULT_MTU)
        }
        Err(e) => Err(CniError::new(
            ErrorCode::Io,
            format!("failed to read MTU file {}: {e}", file.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conf(v: serde_json::Value) -> CalicoConfig {
        CalicoConfig::from_value(&v).unwrap()
    }

    /// Each config field reaches the resolver (its precedence is tested in `datastore`).
    #[test]
    fn node_name_reads_the_config_fields() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("nodename");
        std::fs::write(&f, "node-from-file\n").unwrap();
        let file = f.to_str().unwrap();
        assert_eq!(
            node_name(&conf(json!({"nodename":"n1","nodename_file":file}))).unwrap(),
            "n1"
        );
        assert_eq!(
            node_name(&conf(json!({"nodename_file":file,"hostname":"h"}))).unwrap(),
            "node-from-file"
        );
        let missing = d.path().join("none");
        let c = conf(json!({"nodename_file":missing.to_str().unwrap(),"hostname":"legacy"}));
        assert_eq!(node_name(&c).unwrap(), "legacy");
    }

    #[test]
    fn nodename_file_requirement() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("nodename");
        let m = missing.to_str().unwrap();
        let e = require_nodename_file(&conf(json!({"nodename_file":m}))).unwrap_err();
        assert!(
            e.msg.contains("calico/node container is running"),
            "{}",
            e.msg
        );
        assert_eq!(e.code, ErrorCode::TryAgainLater);
        require_nodename_file(&conf(
            json!({"nodename_file":m,"nodename_file_optional":true}),
        ))
        .unwrap();
        require_nodename_file(&conf(json!({"nodename_file":m,"datastore_type":"local"}))).unwrap();
        std::fs::write(&missing, "n").unwrap();
        require_nodename_file(&conf(json!({"nodename_file":m}))).unwrap();
    }

    #[test]
    fn mtu_sources() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("mtu");
        assert_eq!(mtu_from(&conf(json!({"mtu":1440})), &f).unwrap(), 1440);
        assert_eq!(mtu_from(&conf(json!({"mtu":0})), &f).unwrap(), DEFAULT_MTU);
        let e = mtu_from(&conf(json!({"require_mtu_file":true})), &f).unwrap_err();
        assert!(e.msg.contains("MTU file"));
        std::fs::write(&f, "1410\n").unwrap();
        assert_eq!(mtu_from(&conf(json!({})), &f).unwrap(), 1410);
        std::fs::write(&f, "jumbo").unwrap();
        assert!(mtu_from(&conf(json!({})), &f)
            .unwrap_err()
            .msg
            .contains("jumbo"));
    }
}
