//! CNI spec versions: parsing, ordering and the families that share a result shape.

use std::cmp::Ordering;
use std::fmt;

/// Every spec version this suite speaks, oldest first.
pub const ALL: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The newest version; VERSION replies carry it as their own `cniVersion`.
pub const LATEST: &str = "1.1.0";

/// A parsed `major.minor.patch` spec version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

/// Result layouts differ per family, not per version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// 0.1.0 and 0.2.0: `ip4` / `ip6` objects.
    Legacy,
    /// 0.3.0, 0.3.1 and 0.4.0: `interfaces`, `ips[].version`, `dns` always present.
    V04,
    /// 1.0.0 and 1.1.0: no `ips[].version`; interface/route extras.
    V1,
}

impl Version {
    pub const V0_4_0: Version = Version::new(0, 4, 0);
    pub const V1_1_0: Version = Version::new(1, 1, 0);

    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Parses a version string; an empty string means 0.1.0 as in the spec's decoder.
    pub fn parse(s: &str) -> Option<Version> {
        if s.is_empty() {
            return Some(Version::new(0, 1, 0));
        }
        let mut parts = s.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Version::new(major, minor, patch))
    }

    pub fn family(&self) -> Family {
        if *self < Version::new(0, 3, 0) {
            Family::Legacy
        } else if *self < Version::new(1, 0, 0) {
            Family::V04
        } else {
            Family::V1
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Compares two version strings; unparsable strings sort first.
pub fn compare(a: &str, b: &str) -> Ordering {
    Version::parse(a).cmp(&Version::parse(b))
}

/// Picks the version a conflist runs at: the highest of `cniVersions` not newer than ours,
/// falling back to `cniVersion` (libcni's rule).
pub fn pick_list_version(cni_version: &str, cni_versions: &[String]) -> String {
    let ours = Version::parse(LATEST).expect("LATEST parses");
    let best = cni_versions
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(cni_version))
        .filter_map(|s| Version::parse(s).map(|v| (v, s)))
        .filter(|(v, _)| *v <= ours)
        .max_by_key(|(v, _)| *v);
    match best {
        Some((_, s)) if !cni_versions.is_empty() => s.to_string(),
        _ => cni_version.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders() {
        assert_eq!(Version::parse("0.3.1"), Some(Version::new(0, 3, 1)));
        assert_eq!(Version::parse(""), Some(Version::new(0, 1, 0)));
        assert_eq!(Version::parse("1.0"), None);
        assert_eq!(Version::parse("1.0.0.0"), None);
        assert_eq!(Version::parse("a.b.c"), None);
        assert!(Version::parse("0.10.0") > Version::parse("0.4.0"));
        assert_eq!(compare("1.0.0", "0.4.0"), Ordering::Greater);
    }

    #[test]
    fn families() {
        assert_eq!(Version::parse("0.2.0").unwrap().family(), Family::Legacy);
        assert_eq!(Version::parse("0.3.0").unwrap().family(), Family::V04);
        assert_eq!(Version::parse("0.4.0").unwrap().family(), Family::V04);
        assert_eq!(Version::parse("1.1.0").unwrap().family(), Family::V1);
    }

    #[test]
    fn list_version_picks_highest_supported() {
        let vs = vec![
            "0.4.0".to_string(),
            "1.0.0".to_string(),
            "9.9.9".to_string(),
        ];
        assert_eq!(pick_list_version("0.3.1", &vs), "1.0.0");
        assert_eq!(pick_list_version("0.3.1", &[]), "0.3.1");
        assert_eq!(pick_list_version("", &[]), "");
    }
}
