//! Root requirement: the harness fails loudly (never skips) when not run as root.

use crate::error::{HarnessError, Result};

/// Returns an error naming the problem when the process is not root.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        Ok(())
    } else {
        Err(HarnessError::NotRoot(euid))
    }
}
