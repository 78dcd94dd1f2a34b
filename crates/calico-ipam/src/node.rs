//! Node name resolution, Calico's order: `nodename` → contents of `nodename_file` (if readable
//! and non-empty) → deprecated `hostname` → the OS hostname, lower-cased. calico-ipam does not
//! require the nodename file to exist (only the `calico` plugin does).
//! Values are trimmed: a trailing newline in the file would otherwise end up in datastore keys.

use cni::{CniError, ErrorCode};

use crate::config::IpamConf;

/// The node this invocation allocates for.
pub fn node_name(conf: &IpamConf) -> Result<String, CniError> {
    if let Some(n) = conf
        .nodename
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        return Ok(n.to_string());
    }
    match cni::file::read_small_string(&conf.nodename_file, "nodename_file") {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        // Calico reads the file only "if readable": absent is fine, a FIFO or device is not.
        Err(e @ cni::file::FileError::NotRegular { .. }) => return Err(e.into()),
        _ => {}
    }
    if let Some(h) = conf
        .hostname
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
    {
        return Ok(h.to_string());
    }
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_err(|e| CniError::new(ErrorCode::Io, format!("failed to read the hostname: {e}")))?;
    Ok(h.trim().to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cni::NetConf;

    fn conf(v: serde_json::Value) -> IpamConf {
        let nc = NetConf::parse(v.to_string().as_bytes()).unwrap();
        IpamConf::from_netconf(&nc, |_| None).unwrap()
    }

    #[test]
    fn precedence() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nodename");
        let f = file.to_str().unwrap();
        let c = conf(
            serde_json::json!({"name":"n","nodename":"explicit","nodename_file":f,"hostname":"h"}),
        );
        assert_eq!(node_name(&c).unwrap(), "explicit");
        std::fs::write(&file, "from-file\n").unwrap();
        let c = conf(serde_json::json!({"name":"n","nodename_file":f,"hostname":"h"}));
        assert_eq!(node_name(&c).unwrap(), "from-file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(node_name(&c).unwrap(), "h");
        let c = conf(serde_json::json!({"name":"n","nodename_file":"/nonexistent/x"}));
        let os = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(node_name(&c).unwrap(), os.trim().to_lowercase());
    }
}
