//! `calico-ipam`'s command-line flags, as Calico's binary has them: `-v` prints the version;
//! `-upgrade` runs Calico's one-off migration of a node from host-local to calico-ipam on the
//! Kubernetes datastore (see `upgrade`). Runtimes exec the plugin without arguments, which is
//! the CNI path.

use cni::flags::{self, Flag};

/// Printed by `-v`: one line, `v` and the version, as Calico prints its release.
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

const FLAGS: &[Flag] = &[
    Flag {
        name: "v",
        usage: "Display version",
    },
    Flag {
        name: "upgrade",
        usage: "Upgrade from host-local",
    },
];

/// Handles the flags; `None` means "no flags: run as a CNI plugin", else the exit code.
pub fn run(args: &[String]) -> Option<i32> {
    let set = match flags::parse_or_exit("calico-ipam", FLAGS, args) {
        Ok(set) => set,
        Err(code) => return Some(code),
    };
    if set.contains(&"v") {
        println!("{VERSION}");
        return Some(0);
    }
    if set.contains(&"upgrade") {
        return Some(upgrade());
    }
    None
}

#[cfg(feature = "kubernetes")]
fn upgrade() -> i32 {
    crate::upgrade::run(|k| std::env::var(k).ok())
}

/// The migration talks to the Kubernetes API, which this build leaves out.
#[cfg(not(feature = "kubernetes"))]
fn upgrade() -> i32 {
    eprintln!(
        "calico-ipam -upgrade needs the Kubernetes datastore, but this calico-ipam was built without the `kubernetes` feature"
    );
    1
}
