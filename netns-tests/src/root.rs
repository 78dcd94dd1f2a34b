//! Root requirement: the harness fails loudly (never skips) when not run as root.

use crate::error::{HarnessError, Result};

/// Returns an error naming the problem when the process is not root.
pub fn require_root() -> Result<()> {
    netns::testutil::check_root().map_err(|e| HarnessError::NotRoot(e.euid))
}
