//! Node name resolution (shared with the `calico` plugin: [`datastore::node_name`]). calico-ipam
//! does not require the nodename file to exist (only the `calico` plugin does).

use cni::CniError;
use datastore::NodeNameSources;

use crate::config::IpamConf;

/// The node this invocation allocates for.
pub fn node_name(conf: &IpamConf) -> Result<String, CniError> {
    datastore::node_name(NodeNameSources {
        nodename: conf.nodename.as_deref(),
        nodename_file: &conf.nodename_file,
        hostname: conf.hostname.as_deref(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cni::NetConf;

    fn conf(v: serde_json::Value) -> IpamConf {
        let nc = NetConf::parse(v.to_string().as_bytes()).unwrap();
        IpamConf::from_netconf(&nc, |_| None).unwrap()
    }

    /// Each config field reaches the resolver (its precedence is tested in `datastore`).
    #[test]
    fn node_name_reads_the_config_fields() {
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
    }
}
