use std::io;

/// Errors of the netlink layer. Kernel refusals keep their errno ([`Error::errno`]) so callers can
/// match `EEXIST`, `ENOENT`, `ENODEV`, `ESRCH`, ...
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel answered a request with an error.
    #[error("{op}: {}{}", io::Error::from_raw_os_error(*errno), ext_msg.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kernel {
        op: String,
        errno: i32,
        /// The kernel's extended-ack message, when it sent one.
        ext_msg: Option<String>,
    },
    /// Socket-level failure (creating, sending, receiving).
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    /// A reply that could not be decoded or did not follow the protocol.
    #[error("netlink protocol: {0}")]
    Protocol(String),
    /// Opening the socket inside another netns failed.
    #[error(transparent)]
    Netns(#[from] netns::Error),
    #[error("link {0:?} not found")]
    LinkNotFound(String),
    #[error("interface {0:?} was not a veth interface")]
    NotVeth(String),
    #[error("container interface {0:?} has no veth peer")]
    NoVethPeer(String),
    /// A request that cannot be expressed (checked before anything is sent).
    #[error("invalid request: {0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The positive errno of a kernel or socket error.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            Error::Io(e) => e.raw_os_error(),
            _ => None,
        }
    }

    /// "Does not exist" in any of the flavours the kernel uses: ENODEV (links), ENOENT (qdiscs,
    /// neighbours), ESRCH (routes), EADDRNOTAVAIL (addresses), or our own [`Error::LinkNotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::LinkNotFound(_))
            || matches!(
                self.errno(),
                Some(libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL)
            )
    }

    /// The object already exists (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_error_keeps_errno_and_message() {
        let e = Error::Kernel {
            op: "add route 10.0.0.0/24".into(),
            errno: libc::EEXIST,
            ext_msg: Some("Route exists".into()),
        };
        assert_eq!(e.errno(), Some(libc::EEXIST));
        assert!(e.is_exists());
        assert!(!e.is_not_found());
        let s = e.to_string();
        assert!(s.starts_with("add route 10.0.0.0/24: File exists"), "{s}");
        assert!(s.ends_with("(Route exists)"), "{s}");
    }

    #[test]
    fn not_found_flavours() {
        for errno in [libc::ENODEV, libc::ENOENT, libc::ESRCH] {
            let e = Error::Kernel {
                op: "x".into(),
                errno,
                ext_msg: None,
            };
            assert!(e.is_not_found());
        }
        assert!(Error::LinkNotFound("eth0".into()).is_not_found());
        assert!(!Error::NotVeth("eth0".into()).is_not_found());
    }
}
