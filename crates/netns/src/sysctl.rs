//! `/proc/sys` read/write. Keys are slash-separated paths below `/proc/sys` (`net/ipv4/ip_forward`),
//! so interface names containing dots (`eth0.100`) need no escaping; [`from_dotted`] converts the
//! `sysctl(8)` dotted form.
//!
//! `/proc/sys/net` resolves against the netns of the calling thread: call these inside
//! [`crate::in_netns`] to reach a container's values.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::Error;

const PROC_SYS: &str = "/proc/sys";

/// Reads a sysctl, trimmed of surrounding whitespace.
pub fn read(key: &str) -> Result<String, Error> {
    read_at(Path::new(PROC_SYS), key)
}

/// Writes a sysctl unless it already has `value`. Returns true when a write happened.
pub fn write(key: &str, value: &str) -> Result<bool, Error> {
    write_at(Path::new(PROC_SYS), key, value)
}

/// Key of `net.ipv4.conf.<ifname>.<name>` (use `all`/`default` as ifname for the global ones).
pub fn ipv4_conf(ifname: &str, name: &str) -> Result<String, Error> {
    iface_key("net/ipv4/conf", ifname, name)
}

/// Key of `net.ipv6.conf.<ifname>.<name>`.
pub fn ipv6_conf(ifname: &str, name: &str) -> Result<String, Error> {
    iface_key("net/ipv6/conf", ifname, name)
}

/// Key of `net.ipv4.neigh.<ifname>.<name>` (e.g. `proxy_delay`).
pub fn ipv4_neigh(ifname: &str, name: &str) -> Result<String, Error> {
    iface_key("net/ipv4/neigh", ifname, name)
}

/// Key of `net.ipv6.neigh.<ifname>.<name>`.
pub fn ipv6_neigh(ifname: &str, name: &str) -> Result<String, Error> {
    iface_key("net/ipv6/neigh", ifname, name)
}

/// Converts the `sysctl(8)` dotted form to a key: dots separate components and a `/` stands for a
/// literal dot, so `net.ipv4.conf.eth0/100.rp_filter` → `net/ipv4/conf/eth0.100/rp_filter`.
pub fn from_dotted(dotted: &str) -> String {
    dotted
        .chars()
        .map(|c| match c {
            '.' => '/',
            '/' => '.',
            c => c,
        })
        .collect()
}

fn iface_key(prefix: &str, ifname: &str, name: &str) -> Result<String, Error> {
    validate_ifname(ifname).map_err(|reason| Error::InvalidKey {
        key: format!("{prefix}/{ifname}/{name}"),
        reason,
    })?;
    Ok(format!("{prefix}/{ifname}/{name}"))
}

/// The kernel's `dev_valid_name` rules, so a name cannot escape its directory.
fn validate_ifname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 15 {
        return Err("interface name must be 1 to 15 bytes");
    }
    if name == "." || name == ".." {
        return Err("interface name cannot be . or ..");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err("interface name contains '/', ':' or whitespace");
    }
    Ok(())
}

fn resolve(root: &Path, key: &str) -> Result<PathBuf, Error> {
    let invalid = |reason| Error::InvalidKey {
        key: key.to_string(),
        reason,
    };
    if key.is_empty() || key.starts_with('/') {
        return Err(invalid("key must be a relative path below /proc/sys"));
    }
    if key
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(invalid("key has an empty, . or .. component"));
    }
    Ok(root.join(key))
}

fn read_at(root: &Path, key: &str) -> Result<String, Error> {
    let path = resolve(root, key)?;
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|source| sysctl_err(key, source))
}

fn write_at(root: &Path, key: &str, value: &str) -> Result<bool, Error> {
    if same_value(&read_at(root, key)?, value) {
        return Ok(false);
    }
    let path = resolve(root, key)?;
    // No create/truncate: /proc/sys entries exist or the key is wrong.
    let mut file = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|source| sysctl_err(key, source))?;
    file.write_all(value.as_bytes())
        .map_err(|source| sysctl_err(key, source))?;
    Ok(true)
}

/// Multi-value sysctls print tab-separated values; compare field by field.
fn same_value(current: &str, wanted: &str) -> bool {
    current.split_whitespace().eq(wanted.split_whitespace())
}

fn sysctl_err(key: &str, source: io::Error) -> Error {
    Error::Sysctl {
        key: key.to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_keys_keep_dots_literal() {
        assert_eq!(
            ipv4_conf("eth0.100", "rp_filter").unwrap(),
            "net/ipv4/conf/eth0.100/rp_filter"
        );
        assert_eq!(
            ipv6_conf("cali1234", "accept_dad").unwrap(),
            "net/ipv6/conf/cali1234/accept_dad"
        );
        assert_eq!(
            ipv4_neigh("cali1234", "proxy_delay").unwrap(),
            "net/ipv4/neigh/cali1234/proxy_delay"
        );
        assert_eq!(ipv6_neigh("all", "x").unwrap(), "net/ipv6/neigh/all/x");
    }

    #[test]
    fn bad_interface_names_are_rejected() {
        for bad in ["", "..", ".", "a/b", "a b", "a:1", "sixteen_chars_xx"] {
            assert!(ipv4_conf(bad, "forwarding").is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn dotted_form_converts() {
        assert_eq!(from_dotted("net.ipv4.ip_forward"), "net/ipv4/ip_forward");
        assert_eq!(
            from_dotted("net.ipv4.conf.eth0/100.rp_filter"),
            "net/ipv4/conf/eth0.100/rp_filter"
        );
    }

    #[test]
    fn keys_cannot_escape_root() {
        let root = Path::new("/proc/sys");
        assert!(resolve(root, "/etc/passwd").is_err());
        assert!(resolve(root, "net/../../etc").is_err());
        assert!(resolve(root, "net//x").is_err());
        assert!(resolve(root, "").is_err());
    }

    #[test]
    fn write_skips_equal_value_and_writes_other() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("net/ipv4")).unwrap();
        let file = dir.path().join("net/ipv4/ip_forward");
        std::fs::write(&file, "1\n").unwrap();
        assert!(!write_at(dir.path(), "net/ipv4/ip_forward", "1").unwrap());
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "1\n",
            "file untouched"
        );
        assert!(write_at(dir.path(), "net/ipv4/ip_forward", "0").unwrap());
        assert_eq!(read_at(dir.path(), "net/ipv4/ip_forward").unwrap(), "0");
    }

    #[test]
    fn multi_value_compare_ignores_whitespace_kind() {
        assert!(same_value("4096\t131072\t6291456", "4096 131072 6291456"));
        assert!(!same_value("1", "0"));
    }

    #[test]
    fn missing_key_is_not_found() {
        let err = read("net/ipv4/conf/definitely-absent0/forwarding").unwrap_err();
        assert!(err.is_not_found(), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = write_at(dir.path(), "nope", "1").unwrap_err();
        assert!(err.is_not_found(), "{err}");
    }

    #[test]
    fn reads_real_proc_sys() {
        let v = read("net/ipv4/ip_forward").unwrap();
        assert!(v == "0" || v == "1", "{v}");
    }
}
