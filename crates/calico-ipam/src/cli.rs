//! `calico-ipam`'s command-line flags, as Calico's binary has them: `-v` prints the version;
//! `-upgrade` (Calico's one-off migration of a node from host-local to calico-ipam on the
//! Kubernetes datastore) is refused with a message saying so. Runtimes exec the plugin without
//! arguments, which is the CNI path.

use cni::flags::{self, Flag, Parsed};

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
    let set = match flags::parse("calico-ipam", FLAGS, args) {
        Parsed::Set(set) => set,
        Parsed::Help(usage) => {
            eprint!("{usage}");
            return Some(0);
        }
        Parsed::Error(msg) => {
            eprint!("{msg}");
            return Some(2);
        }
    };
    if set.contains(&"v") {
        println!("{VERSION}");
        return Some(0);
    }
    if set.contains(&"upgrade") {
        eprintln!(
            "calico-ipam -upgrade is not supported by this calico-ipam (calico-cni-rs): it does not migrate host-local allocations to calico-ipam. Keep the node on host-local, or drain it and switch its conflist to calico-ipam (new pods then get calico-ipam addresses)."
        );
        return Some(1);
    }
    None
}
