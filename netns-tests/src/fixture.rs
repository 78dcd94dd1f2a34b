//! The usual test setup in one value: root check, a private host namespace, a temp dir, and
//! factories for container namespaces and chain runners bound to that host.

use std::path::Path;

use serde_json::Value;

use crate::chain::Chain;
use crate::error::{HarnessError, Result};
use crate::netns::Netns;
use crate::root::require_root;

/// Per-test environment; everything it created is removed when it is dropped (also on panic).
pub struct TestEnv {
    /// The node stand-in: plugins run here. `lo` up, `ip_forward=1`.
    pub host: Netns,
    tmp: tempfile::TempDir,
}

impl TestEnv {
    /// Fails with a clear message when not root (tests must not skip silently).
    pub fn new(test_name: &str) -> Result<TestEnv> {
        require_root()?;
        Ok(TestEnv {
            host: Netns::new_host(&format!("{test_name}-host"))?,
            tmp: tempfile::Builder::new()
                .prefix(&format!("netns-tests-{test_name}-"))
                .tempdir()
                .map_err(|e| HarnessError::io("creating temp dir", e))?,
        })
    }

    /// [`TestEnv::new`] with the host set up like a Calico node: IPv6 forwarding on, as
    /// calico-node enables it on real nodes (dual-stack pods need it).
    pub fn calico_node(test_name: &str) -> Result<TestEnv> {
        let env = TestEnv::new(test_name)?;
        env.host.set_sysctl("net.ipv6.conf.all.forwarding", "1")?;
        Ok(env)
    }

    /// A fresh container namespace with `lo` down (as a runtime creates it).
    pub fn container(&self, name: &str) -> Result<Netns> {
        Netns::new(name)
    }

    /// A per-test scratch directory (use it for `dataDir`, logs, …).
    pub fn tmp(&self) -> &Path {
        self.tmp.path()
    }

    /// A chain runner for `conflist`, executing in this env's host namespace.
    pub fn chain(&self, conflist: &Value) -> Result<Chain<'_>> {
        Chain::new(&self.host, conflist)
    }
}
