//! `calico`'s command-line flags, as Calico's binary has them: `-v` prints the version, `-t`
//! tests the datastore connection for the netconf on stdin (install-cni gates on it). Runtimes
//! exec the plugin without arguments, which is the CNI path.

use crate::config::CalicoConfig;
use cni::flags::{self, Flag};
use cni::{CniArgs, CniError, Command, ErrorCode, Invocation, NetConf};
use std::io::Read;

/// Printed by `-v` (Calico prints its release the same way: one line, `v` and the version).
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

const FLAGS: &[Flag] = &[
    Flag {
        name: "v",
        usage: "Display version",
    },
    Flag {
        name: "t",
        usage: "Test datastore connection",
    },
];

/// Handles the flags; `None` means "no flags: run as a CNI plugin", else the exit code.
pub fn run(args: &[String]) -> Option<i32> {
    let set = match flags::parse_or_exit("Calico", FLAGS, args) {
        Ok(set) => set,
        Err(code) => return Some(code),
    };
    if set.contains(&"v") {
        println!("{VERSION}");
        return Some(0);
    }
    if set.contains(&"t") {
        let mut stdin = Vec::new();
        let tested = std::io::stdin()
            .read_to_end(&mut stdin)
            .map_err(|e| CniError::new(ErrorCode::Io, format!("failed to read from stdin: {e}")))
            .and_then(|_| test_connection(&stdin));
        return Some(match tested {
            Ok(()) => 0,
            Err(e) => {
                // Calico's shape: code 100, the failure in `details`.
                let doc = CniError::new(ErrorCode::Other(100), "data store connection failed")
                    .details(e.msg)
                    .to_json(cni::version::LATEST);
                println!("{doc}");
                1
            }
        });
    }
    None
}

/// Calico's `-t`: the datastore the netconf names is reachable and marked ready.
pub fn test_connection(stdin: &[u8]) -> Result<(), CniError> {
    let config = NetConf::parse(stdin)?;
    let conf = CalicoConfig::from_value(&config.raw)?;
    let inv = Invocation {
        command: Command::Add,
        container_id: String::new(),
        netns: None,
        ifname: String::new(),
        args: CniArgs::default(),
        args_raw: String::new(),
        cni_path: Vec::new(),
        config,
        stdin: stdin.to_vec(),
    };
    let node = crate::node::node_name(&conf)?;
    crate::k8s::Kube::new(&inv, &conf, &node).require_datastore_ready()?;
    if let Some(store) = crate::endpoint::open_store(&conf)? {
        crate::endpoint::require_datastore_ready(store.as_ref())?;
    }
    Ok(())
}
