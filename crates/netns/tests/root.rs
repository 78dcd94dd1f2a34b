//! Root tests: real namespaces, checked from outside (`ip`, `/proc/sys`).
use std::process::Command;

use netns::testutil::{unshare_current_thread_netns, TempNetNs};
use netns::{in_netns, sysctl, NetNs};

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn in_netns_runs_closure_in_target_namespace() {
    unshare_current_thread_netns().unwrap();
    let host = NetNs::current_thread().unwrap();
    let tmp = TempNetNs::new().unwrap();
    assert!(!host.same_as(tmp.netns()).unwrap());

    // Create a veth in the host netns, with its peer moved into tmp by ip(8).
    ip(&["link", "add", "h0", "type", "veth", "peer", "name", "c0"]);
    ip(&["link", "set", "c0", "netns", tmp.path().to_str().unwrap()]);

    let seen = in_netns(tmp.netns(), || {
        let me = NetNs::current_thread().unwrap();
        let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
        (me.id().unwrap(), String::from_utf8(out.stdout).unwrap())
    })
    .unwrap();
    assert_eq!(seen.0, tmp.netns().id().unwrap());
    assert!(seen.1.contains("c0@"), "c0 not in tmp netns: {}", seen.1);
    assert!(!ip(&["-o", "link"]).contains("c0@"));
    // The calling thread did not move.
    assert!(NetNs::current_thread().unwrap().same_as(&host).unwrap());
}

#[test]
fn in_netns_returns_panics_as_errors() {
    unshare_current_thread_netns().unwrap();
    let tmp = TempNetNs::new().unwrap();
    let err = in_netns(tmp.netns(), || -> u32 { panic!("boom in netns") }).unwrap_err();
    assert!(err.to_string().contains("boom in netns"), "{err}");
    // Still usable afterwards.
    assert_eq!(tmp.run(|| 7).unwrap(), 7);
}

#[test]
fn sysctl_writes_land_in_the_thread_netns() {
    unshare_current_thread_netns().unwrap();
    let tmp = TempNetNs::new().unwrap();
    let host_before = sysctl::read("net/ipv4/ip_forward").unwrap();
    let wrote = tmp
        .run(|| {
            // A new namespace inherits IPv4 settings from the root one (forwarding is on on
            // most nodes): start from a known value so the first write is a change.
            sysctl::write("net/ipv4/ip_forward", "0").unwrap();
            let first = sysctl::write("net/ipv4/ip_forward", "1").unwrap();
            let second = sysctl::write("net/ipv4/ip_forward", "1").unwrap();
            (first, second, sysctl::read("net/ipv4/ip_forward").unwrap())
        })
        .unwrap();
    assert_eq!(wrote, (true, false, "1".to_string()));
    assert_eq!(sysctl::read("net/ipv4/ip_forward").unwrap(), host_before);

    // Per-interface key on a name with a dot.
    tmp.run(|| {
        ip(&[
            "link", "add", "v.100", "type", "veth", "peer", "name", "p.100",
        ]);
        let key = sysctl::ipv4_conf("v.100", "proxy_arp").unwrap();
        assert!(sysctl::write(&key, "1").unwrap());
        let out = Command::new("sysctl")
            .arg("-n")
            .arg("net.ipv4.conf.v/100.proxy_arp")
            .output();
        // sysctl(8) may be absent; /proc is the ground truth.
        if let Ok(out) = out {
            if out.status.success() {
                assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
            }
        }
        assert_eq!(
            std::fs::read_to_string("/proc/sys/net/ipv4/conf/v.100/proxy_arp")
                .unwrap()
                .trim(),
            "1"
        );
    })
    .unwrap();
}

#[test]
fn temp_netns_path_is_openable_by_children_and_vanishes_on_drop() {
    unshare_current_thread_netns().unwrap();
    let tmp = TempNetNs::new().unwrap();
    let path = tmp.path().to_path_buf();
    // A child process (like a CNI plugin) can enter it by path.
    let out = Command::new("nsenter")
        .arg(format!("--net={}", path.display()))
        .args(["ip", "-o", "link"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("lo:"));
    drop(tmp);
    // The keeper thread has been joined, but the kernel unhashes an exiting task from /proc
    // a moment after the joiner is woken: until then the path may still open, or fail with
    // another error. It must be gone (ENOENT) shortly after.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let gone = loop {
        match NetNs::open(&path) {
            Err(e) if e.is_not_found() => break true,
            _ if std::time::Instant::now() >= deadline => break false,
            _ => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    };
    assert!(gone, "{} still resolves 2 s after drop", path.display());
}
