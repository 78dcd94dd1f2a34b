//! The install-cni binary: flags, environment, exit codes and messages, end to end.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SUITE: [&str; 6] = [
    "calico",
    "calico-ipam",
    "bandwidth",
    "host-local",
    "loopback",
    "portmap",
];

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let h = Host {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(h.p("src")).unwrap();
        for b in SUITE {
            let p = h.p("src").join(b);
            fs::write(&p, format!("#!/bin/sh\necho {b}\n")).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        h
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs `exe` with a clean environment plus `env`, and the standard dir flags.
    fn run_exe(&self, exe: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(exe);
        c.env_clear()
            .arg("--bin-dir")
            .arg(self.p("bin"))
            .arg(format!("--conf-dir={}", self.p("net.d").display()))
            .arg("--serviceaccount-dir")
            .arg(self.p("sa"))
            .args(extra)
            .envs(env.iter().copied());
        // A binary copied just before (see source_dir_defaults_…) can be ETXTBSY for a moment:
        // a child forked by a parallel test may still hold the copy's write descriptor until
        // it execs. Retry briefly instead of failing on that race.
        for _ in 0..50 {
            match c.output() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                other => return other.unwrap(),
            }
        }
        c.output().unwrap()
    }

    fn run(&self, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let src = self.p("src");
        let mut args = vec!["--source-dir", src.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.run_exe(Path::new(env!("CARGO_BIN_EXE_install-cni")), &args, env)
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn installs_then_uninstalls() {
    let h = Host::new();
    let o = h.run(&[], &[("KUBERNETES_NODE_NAME", "n1"), ("CNI_MTU", "1410")]);
    assert!(o.status.success(), "{}", stderr(&o));
    for b in SUITE {
        assert!(h.p("bin").join(b).is_file(), "{b}");
    }
    let conf: serde_json::Value =
        serde_json::from_slice(&fs::read(h.p("net.d/10-calico.conflist")).unwrap()).unwrap();
    assert_eq!(conf["plugins"][0]["nodename"], "n1");
    assert_eq!(conf["plugins"][0]["mtu"], 1410);
    // Config paths are absolute even though the flags were too: it is the host's view.
    assert_eq!(
        conf["plugins"][0]["kubernetes"]["kubeconfig"],
        h.p("net.d/calico-kubeconfig").to_str().unwrap()
    );
    assert!(
        stderr(&o).contains("CNI plugin version: calico"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());

    fs::write(h.p("bin/foreign"), b"x").unwrap();
    let o = h.run(&["--uninstall"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let left: Vec<_> = fs::read_dir(h.p("bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["foreign"]);
    assert_eq!(fs::read_dir(h.p("net.d")).unwrap().count(), 0);
}

#[test]
fn source_dir_defaults_to_the_executables_directory() {
    let h = Host::new();
    let exe = h.p("src/install-cni");
    fs::copy(env!("CARGO_BIN_EXE_install-cni"), &exe).unwrap();
    let o = h.run_exe(&exe, &[], &[("KUBERNETES_NODE_NAME", "n")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(h.p("bin/calico-ipam").is_file());
    assert!(
        !h.p("bin/install-cni").exists(),
        "the installer is not a plugin"
    );
}

/// (what, extra args, env, expected exit code, expected stderr excerpt)
type Case<'a> = (
    &'a str,
    &'a [&'a str],
    &'a [(&'a str, &'a str)],
    i32,
    &'a str,
);

#[test]
fn bad_input_fails_clearly_without_touching_the_host() {
    let cases: &[Case] = &[
        (
            "bad mtu",
            &[],
            &[("CNI_MTU", "15x0")],
            1,
            "10-calico.conflist is invalid",
        ),
        (
            "bad bool",
            &[],
            &[("UPDATE_CNI_BINARIES", "maybe")],
            1,
            "UPDATE_CNI_BINARIES",
        ),
        (
            "template file missing",
            &[],
            &[("CNI_NETWORK_CONFIG_FILE", "/nonexistent/tpl.json")],
            1,
            "/nonexistent/tpl.json",
        ),
        (
            "unknown flag",
            &["--frobnicate"],
            &[],
            2,
            "unknown argument",
        ),
        (
            "flag without value",
            &["--bin-dir"],
            &[],
            2,
            "needs a value",
        ),
    ];
    for (what, args, env, code, needle) in cases {
        let h = Host::new();
        let mut env = env.to_vec();
        env.push(("KUBERNETES_NODE_NAME", "n"));
        let o = if *what == "flag without value" {
            // The flag must be last to lack its value.
            Command::new(env!("CARGO_BIN_EXE_install-cni"))
                .env_clear()
                .args(*args)
                .output()
                .unwrap()
        } else {
            h.run(args, &env)
        };
        assert_eq!(o.status.code(), Some(*code), "{what}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{what}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{what}: {}", stderr(&o));
        assert!(
            !h.p("bin").exists() && !h.p("net.d").exists(),
            "{what}: host touched"
        );
    }
}

#[test]
fn missing_source_binaries_are_named() {
    let h = Host::new();
    fs::remove_file(h.p("src/bandwidth")).unwrap();
    let o = h.run(&[], &[("KUBERNETES_NODE_NAME", "n")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("bandwidth") && stderr(&o).contains("SKIP_CNI_BINARIES"),
        "{}",
        stderr(&o)
    );
    let o = h.run(
        &[],
        &[
            ("KUBERNETES_NODE_NAME", "n"),
            ("SKIP_CNI_BINARIES", "bandwidth"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!h.p("bin/bandwidth").exists());
}

#[test]
fn uninstall_without_a_manifest_removes_nothing() {
    let h = Host::new();
    fs::create_dir_all(h.p("bin")).unwrap();
    fs::create_dir_all(h.p("net.d")).unwrap();
    fs::write(h.p("bin/calico"), b"someone else's").unwrap();
    fs::write(h.p("net.d/10-calico.conflist"), b"{}").unwrap();
    let o = h.run(&["--uninstall"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing removed"), "{}", stderr(&o));
    assert!(h.p("bin/calico").is_file() && h.p("net.d/10-calico.conflist").is_file());
}

#[test]
fn help_and_version() {
    let o = Command::new(env!("CARGO_BIN_EXE_install-cni"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("--uninstall"));
    let o = Command::new(env!("CARGO_BIN_EXE_install-cni"))
        .arg("-v")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("install-cni "));
}
