//! Integration harness for the CNI plugin suite: private namespaces, a libcni-like chain
//! runner, traffic and state helpers. Every plugin's end-to-end tests (`tests/*.rs`) use it.
//!
//! * Tests exec the workspace's **built** binaries, so build first:
//!   `cargo build --bins && cargo test -p netns-tests` (as root). Binaries are found in
//!   `$CNI_BIN_DIR`, else `<target dir>/debug` (see [`bins`]).
//! * Every test gets a private "host" namespace ([`TestEnv::host`]) in which plugins run, plus
//!   container namespaces; the machine's root namespace is never touched. Everything is removed
//!   when the values are dropped, also on panic.
//! * Not root → the test fails with [`HarnessError::NotRoot`]; nothing is skipped.
//!
//! What this crate must NOT do: enter a namespace on a test's own thread (it uses scoped
//! threads), touch the root netns, depend on files outside the repository, or depend on plugin
//! crates (it talks to plugins only through their binaries and the CNI protocol; namespaces come
//! from the `netns` crate's test utilities).
//!
//! ```no_run
//! use netns_tests::{Attachment, TestEnv};
//! let env = TestEnv::new("example").unwrap();
//! let ctr = env.container("ctr").unwrap();
//! let chain = env
//!     .chain(&serde_json::json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "loopback"}]}))
//!     .unwrap();
//! let att = Attachment::new("ctr1", &ctr);
//! let result = chain.add(&att).unwrap();
//! assert!(ctr.link_is_up("lo").unwrap());
//! chain.del(&att).unwrap();
//! # let _ = result;
//! ```

pub mod bins;
pub mod cache;
pub mod chain;
pub mod cnitool;
pub mod error;
pub mod exec;
pub mod fixture;
pub mod ipam_state;
pub mod netns;
pub mod node;
pub mod plugin;
pub mod root;
pub mod state;
pub mod traffic;
pub mod version;

pub use chain::{Attachment, Chain, ChainError};
pub use error::{HarnessError, Result};
pub use exec::ExecOutput;
pub use fixture::TestEnv;
pub use netns::Netns;
pub use plugin::{exec_plugin, PluginFailure};
pub use root::require_root;
pub use state::veth_pair;
