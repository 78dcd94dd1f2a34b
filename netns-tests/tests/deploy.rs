//! deploy/: the kustomization that swaps Calico's calico/cni image in calico.yaml, and the
//! Debian package built by deploy/deb/build.sh. Asserted from outside: what `kubectl kustomize`
//! renders from Calico's manifest (testdata/calico-manifest, an excerpt of v3.32.1), and what
//! dpkg-deb says the package holds and runs.
//!
//! Needs `kubectl` (Debian: kubernetes-client) and `dpkg-deb`; `run-tests.sh` installs them.
//! The package test packs the debug binaries (`cargo build --bins`): it checks the packaging,
//! not the static build (the image test covers that).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use netns_tests::bins;

fn top() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a tool, failing the test with its stderr (or a hint when it is not installed).
fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let o = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (run-tests.sh installs it)"));
    assert!(
        o.status.success(),
        "{program} {args:?}: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// `kubectl kustomize` of Calico's manifest with `kustomization` beside it.
fn kustomize(kustomization: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(
        top().join("testdata/calico-manifest/calico.yaml"),
        dir.path().join("calico.yaml"),
    )
    .unwrap();
    fs::write(dir.path().join("kustomization.yaml"), kustomization).unwrap();
    run("kubectl", &["kustomize", dir.path().to_str().unwrap()], &[])
}

#[test]
fn kustomization_swaps_only_the_cni_image() {
    let ours = fs::read_to_string(top().join("deploy/kustomize/kustomization.yaml")).unwrap();
    let patched = kustomize(&ours);
    // The same manifest through kustomize without the image swap: same formatting and order.
    let plain = kustomize("resources:\n  - calico.yaml\n");
    let (p, q): (Vec<&str>, Vec<&str>) = (plain.lines().collect(), patched.lines().collect());
    assert_eq!(p.len(), q.len(), "the patch adds or removes lines");
    let changed: Vec<(&str, &str)> = p
        .iter()
        .zip(&q)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| (a.trim(), b.trim()))
        .collect();
    // upgrade-ipam and install-cni use calico/cni; calico-node and ebpf-bootstrap keep theirs.
    assert_eq!(
        changed,
        vec![
            (
                "image: quay.io/calico/cni:v3.32.1",
                "image: localhost/calico-cni-rs:0.1.0"
            );
            2
        ],
        "{patched}"
    );
    assert!(patched.contains("image: quay.io/calico/node:v3.32.1"));
    assert!(!patched.contains("quay.io/calico/cni"));
    // The commands the manifest gives them are what our image provides.
    assert!(patched.contains("- /opt/cni/bin/install"), "{patched}");
    assert!(patched.contains("- /opt/cni/bin/calico-ipam"), "{patched}");
}

#[test]
fn debian_package_holds_the_plugins_calicoctl_and_an_example_and_runs_nothing() {
    let bin_dir = bins::binary("calico")
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let out = tempfile::tempdir().unwrap();
    let script = top().join("deploy/deb/build.sh");
    let deb = run(
        script.to_str().unwrap(),
        &[out.path().to_str().unwrap()],
        // Debug binaries are large: xz would cost minutes for nothing this test checks.
        &[("BIN_DIR", bin_dir.to_str().unwrap()), ("COMPRESS", "none")],
    );
    let deb = deb.trim();
    assert!(
        deb.ends_with("_amd64.deb") && Path::new(deb).is_file(),
        "{deb}"
    );
    let name = Path::new(deb).file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("calico-cni-rs_"), "{name}");

    // Control: the package's identity, and no maintainer scripts (nothing runs on install).
    let info = run("dpkg-deb", &["--info", deb], &[]);
    let field = |f: &str| {
        run("dpkg-deb", &["--field", deb, f], &[])
            .trim()
            .to_string()
    };
    assert_eq!(field("Package"), "calico-cni-rs");
    assert_eq!(field("Architecture"), "amd64");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    let ctrl = tempfile::tempdir().unwrap();
    run(
        "dpkg-deb",
        &["--control", deb, ctrl.path().to_str().unwrap()],
        &[],
    );
    let mut members: Vec<String> = fs::read_dir(ctrl.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    members.sort();
    assert_eq!(members, ["control", "md5sums"], "{info}");

    // Contents: exactly these files, owned by root, executables executable.
    let listing = run("dpkg-deb", &["--contents", deb], &[]);
    let mut files: Vec<(String, String, String)> = listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (
                cols[5].trim_start_matches('.').to_string(),
                cols[0].to_string(),
                cols[1].to_string(),
            )
        })
        .collect();
    files.sort();
    let mut want: Vec<(String, String, String)> = [
        "bandwidth",
        "calico",
        "calico-ipam",
        "host-local",
        "loopback",
        "portmap",
    ]
    .iter()
    .map(|b| {
        (
            format!("/opt/cni/bin/{b}"),
            "-rwxr-xr-x".into(),
            "root/root".into(),
        )
    })
    .chain([
        (
            "/usr/bin/calicoctl".into(),
            "-rwxr-xr-x".into(),
            "root/root".into(),
        ),
        (
            "/usr/share/doc/calico-cni-rs/README.md".into(),
            "-rw-r--r--".into(),
            "root/root".into(),
        ),
        (
            "/usr/share/doc/calico-cni-rs/copyright".into(),
            "-rw-r--r--".into(),
            "root/root".into(),
        ),
        (
            "/usr/share/doc/calico-cni-rs/examples/calico-local.conflist".into(),
            "-rw-r--r--".into(),
            "root/root".into(),
        ),
    ])
    .collect();
    want.sort();
    assert_eq!(files, want, "{listing}");
    assert!(
        !listing.contains("systemd") && !listing.contains("/etc/"),
        "{listing}"
    );

    // What it unpacks works: each plugin answers VERSION, calicoctl runs, the example parses
    // and names plugins the package ships.
    let root = tempfile::tempdir().unwrap();
    run("dpkg-deb", &["-x", deb, root.path().to_str().unwrap()], &[]);
    for b in [
        "calico",
        "calico-ipam",
        "portmap",
        "bandwidth",
        "host-local",
        "loopback",
    ] {
        let p = root.path().join("opt/cni/bin").join(b);
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let v = run(p.to_str().unwrap(), &[], &[("CNI_COMMAND", "VERSION")]);
        let v: serde_json::Value = serde_json::from_str(&v).unwrap();
        assert!(
            v["supportedVersions"]
                .as_array()
                .unwrap()
                .contains(&"1.0.0".into()),
            "{b}: {v}"
        );
    }
    let ctl = root.path().join("usr/bin/calicoctl");
    assert!(run(ctl.to_str().unwrap(), &["--help"], &[]).contains("calicoctl"));
    let example = root
        .path()
        .join("usr/share/doc/calico-cni-rs/examples/calico-local.conflist");
    let conf: serde_json::Value = serde_json::from_slice(&fs::read(example).unwrap()).unwrap();
    let types: Vec<&str> = conf["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["calico", "portmap", "bandwidth"]);
    assert_eq!(conf["plugins"][0]["datastore_type"], "local");
    assert_eq!(conf["plugins"][0]["ipam"]["type"], "calico-ipam");
}
