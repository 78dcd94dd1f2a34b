//! The `loopback` plugin: brings `lo` up inside `CNI_NETNS` (ADD), down again on DEL, and
//! verifies it is up on CHECK. containerd's CRI refuses to start pods without it.
//!
//! Owns: the loopback interface's up/down state in a container namespace.
//! Must not: add addresses or routes (the kernel gives `lo` its addresses), or touch the host.

use cni::{CniError, CniResult, ErrorCode, Interface, Invocation, IpConfig, Plugin};
use netns::NetNs;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

#[derive(Debug, Default)]
pub struct Loopback;

/// Reads or changes the flags of `lo` with the classic interface ioctls: one syscall each,
/// no netlink socket needed for a single flag.
fn lo_flags(set_up: Option<bool>) -> io::Result<bool> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let fd = sock.as_raw_fd();
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read/write the ifreq we own; `sock` outlives the calls.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    let up = flags & libc::IFF_UP as libc::c_short != 0;
    let Some(want) = set_up else { return Ok(up) };
    if want != up {
        let new = if want {
            flags | libc::IFF_UP as libc::c_short
        } else {
            flags & !(libc::IFF_UP as libc::c_short)
        };
        req.ifr_ifru.ifru_flags = new;
        // SAFETY: as above.
        if unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(want)
}

/// Failures while setting `lo` up or down; all Calico's generic 999.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening or entering the namespace.
    #[error(transparent)]
    Netns(#[from] netns::Error),
    /// The `SIOCGIFFLAGS`/`SIOCSIFFLAGS` ioctls on `lo`.
    #[error("loopback: {0}")]
    Flags(#[source] io::Error),
}

impl cni::CniCode for Error {
    fn cni_code(&self) -> ErrorCode {
        cni::error::GENERIC
    }
}

fn netns_of(inv: &Invocation) -> Result<Option<NetNs>, CniError> {
    let Some(path) = inv.netns.as_deref() else {
        return Ok(None);
    };
    match NetNs::open(path) {
        Ok(ns) => Ok(Some(ns)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(Error::from(e).into()),
    }
}

fn in_ns<T: Send>(ns: &NetNs, f: impl FnOnce() -> io::Result<T> + Send) -> Result<T, Error> {
    netns::in_netns(ns, f)?.map_err(Error::Flags)
}

fn required_netns(inv: &Invocation) -> Result<NetNs, CniError> {
    netns_of(inv)?.ok_or_else(|| {
        CniError::generic(format!(
            "failed to open netns {:?}: it does not exist",
            inv.netns.as_deref().unwrap_or(Path::new(""))
        ))
    })
}

impl Plugin for Loopback {
    fn add(&self, inv: &Invocation) -> Result<CniResult, CniError> {
        let ns = required_netns(inv)?;
        let has_v6 = in_ns(&ns, || {
            lo_flags(Some(true))?;
            // ::1 exists only where IPv6 is enabled in this namespace.
            Ok(Path::new("/proc/sys/net/ipv6/conf/lo").exists())
        })?;
        let mut ips = vec![IpConfig {
            address: "127.0.0.1/8".parse().expect("literal"),
            gateway: None,
            interface: Some(0),
        }];
        if has_v6 {
            ips.push(IpConfig {
                address: "::1/128".parse().expect("literal"),
                gateway: None,
                interface: Some(0),
            });
        }
        Ok(CniResult {
            interfaces: vec![Interface {
                name: "lo".into(),
                mac: "00:00:00:00:00:00".into(),
                sandbox: Some(ns.path().display().to_string()),
                ..Default::default()
            }],
            ips,
            ..Default::default()
        })
    }

    fn del(&self, inv: &Invocation) -> Result<(), CniError> {
        // Nothing to undo once the namespace is gone.
        match netns_of(inv)? {
            Some(ns) => Ok(in_ns(&ns, || lo_flags(Some(false))).map(|_| ())?),
            None => Ok(()),
        }
    }

    fn check(&self, inv: &Invocation) -> Result<(), CniError> {
        let ns = required_netns(inv)?;
        if in_ns(&ns, || lo_flags(None))? {
            Ok(())
        } else {
            Err(CniError::new(
                ErrorCode::Other(999),
                "loopback interface lo is down",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_in_a_private_namespace() {
        netns::testutil::require_root();
        let ns = netns::testutil::TempNetNs::new().unwrap();
        ns.run(|| {
            assert!(!lo_flags(None).unwrap(), "a new netns starts with lo down");
            assert!(lo_flags(Some(true)).unwrap());
            assert!(lo_flags(None).unwrap());
            assert!(!lo_flags(Some(false)).unwrap());
            assert!(!lo_flags(None).unwrap());
        })
        .unwrap();
    }
}
