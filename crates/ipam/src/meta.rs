//! Server-side metadata of v3 resources we create (`uid`, `creationTimestamp`): calicoctl for
//! pools and cluster information, the calico plugin for WorkloadEndpoints.

use std::time::{SystemTime, UNIX_EPOCH};

/// A random RFC 4122 UUID from the kernel; falls back to a time/pid-derived one where
/// `/proc` is unavailable (the value only needs to be unique, not secret).
pub fn new_uid() -> String {
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/random/uuid") {
        let s = s.trim();
        if !s.is_empty() {
            return s.to_string();
        }
    }
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
        ^ (u128::from(std::process::id()) << 64);
    let h = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Now as RFC 3339 (`2026-08-01T10:00:00Z`), Kubernetes' `creationTimestamp` format.
pub fn now() -> String {
    crate::clock::rfc3339(SystemTime::now())
}

#[cfg(test)]
mod tests {
    #[test]
    fn uid_shape() {
        let u = super::new_uid();
        assert_eq!(u.len(), 36, "{u}");
        assert_eq!(u.matches('-').count(), 4);
        assert_ne!(u, super::new_uid());
        assert!(super::now().ends_with('Z'));
    }
}
