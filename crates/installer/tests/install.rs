//! Installing binaries, kubeconfig and config into a scratch host, re-running, and uninstalling.

mod common;

use common::{identity, mode, Host};
use installer::{BinaryAction, InstallError, SUITE_BINARIES};
use std::fs;

const K8S: [(&str, &str); 3] = [
    ("KUBERNETES_NODE_NAME", "node-1"),
    ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
    ("KUBERNETES_SERVICE_PORT", "443"),
];

#[test]
fn installs_binaries_config_and_kubeconfig_with_their_modes() {
    let h = Host::new();
    h.with_service_account("abc.def.ghi", b"-----BEGIN CERTIFICATE-----\nMIIB\n");
    let r = h.installer(&K8S).install().unwrap();
    for b in SUITE_BINARIES {
        let p = h.bin.join(b);
        assert_eq!(
            fs::read(&p).unwrap(),
            fs::read(h.src.join(b)).unwrap(),
            "{b}"
        );
        assert_eq!(mode(&p), 0o755, "{b}");
    }
    assert!(r
        .binaries
        .iter()
        .all(|b| b.action == BinaryAction::Installed));
    assert_eq!(r.plugin_version.as_deref(), Some("calico-v1"));
    assert_eq!(mode(&h.conf.join("10-calico.conflist")), 0o644);

    let kc = h.conf.join("calico-kubeconfig");
    assert_eq!(mode(&kc), 0o600);
    let expected = "\
# Kubeconfig file for Calico CNI plugin. Installed by install-cni.
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://10.96.0.1:443
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIK
users:
- name: calico
  user:
    token: abc.def.ghi
contexts:
- name: calico-context
  context:
    cluster: local
    user: calico
current-context: calico-context
";
    assert_eq!(fs::read_to_string(&kc).unwrap(), expected);
    // No temporaries or strays: exactly the suite, the config, the kubeconfig and the manifest.
    let mut want: Vec<String> = SUITE_BINARIES
        .iter()
        .map(|b| format!("opt/cni/bin/{b}"))
        .collect();
    want.extend(
        [
            "10-calico.conflist",
            "calico-kubeconfig",
            ".install-cni-manifest",
        ]
        .map(|f| format!("etc/cni/net.d/{f}")),
    );
    want.sort();
    assert_eq!(h.host_files(), want);
}

#[test]
fn kubeconfig_brackets_ipv6_and_can_skip_tls_verify() {
    let h = Host::new();
    h.with_service_account("t0k", b"CA");
    fs::remove_file(h.sa.join("ca.crt")).unwrap();
    let mut env = vec![
        ("KUBERNETES_NODE_NAME", "n"),
        ("KUBERNETES_SERVICE_HOST", "fd00:10:96::1"),
        ("KUBERNETES_SERVICE_PORT", "6443"),
    ];
    // No CA and no SKIP_TLS_VERIFY: refuse rather than write a kubeconfig that cannot verify.
    let err = h.installer(&env).install().unwrap_err();
    assert!(err.to_string().contains("ca.crt"), "{err}");
    assert!(h.host_files().is_empty());

    env.push(("SKIP_TLS_VERIFY", "true"));
    h.installer(&env).install().unwrap();
    let kc = fs::read_to_string(h.conf.join("calico-kubeconfig")).unwrap();
    assert!(
        kc.contains("    server: https://[fd00:10:96::1]:6443\n"),
        "{kc}"
    );
    assert!(kc.contains("    insecure-skip-tls-verify: true\n"), "{kc}");
    assert!(!kc.contains("certificate-authority-data"), "{kc}");
}

#[test]
fn token_without_service_address_is_an_error_before_any_write() {
    let h = Host::new();
    h.with_service_account("t", b"CA");
    let err = h
        .installer(&[("KUBERNETES_NODE_NAME", "n")])
        .install()
        .unwrap_err();
    assert!(err.to_string().contains("KUBERNETES_SERVICE_HOST"), "{err}");
    assert!(h.host_files().is_empty());
}

#[test]
fn rerun_leaves_unchanged_binaries_alone_and_replaces_changed_ones() {
    let h = Host::new();
    h.installer(&K8S).install().unwrap();
    let before: Vec<_> = SUITE_BINARIES
        .iter()
        .map(|b| identity(&h.bin.join(b)))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    h.write_source("portmap", 2);

    let r = h.installer(&K8S).install().unwrap();
    for (b, id) in SUITE_BINARIES.iter().zip(&before) {
        let action = r.binaries.iter().find(|o| o.name == *b).unwrap().action;
        let now = identity(&h.bin.join(b));
        if *b == "portmap" {
            assert_eq!(action, BinaryAction::Installed);
            assert_ne!(now.0, id.0, "portmap must be a new inode (renamed in)");
            assert_eq!(
                fs::read_to_string(h.bin.join(b)).unwrap(),
                "#!/bin/sh\necho portmap-v2\n"
            );
        } else {
            assert_eq!(action, BinaryAction::Unchanged, "{b}");
            assert_eq!(
                &now, id,
                "{b}: inode/mtime changed although content was identical"
            );
        }
    }
}

#[test]
fn skip_list_and_update_false_leave_host_binaries_alone() {
    let h = Host::new();
    fs::create_dir_all(&h.bin).unwrap();
    fs::write(h.bin.join("host-local"), b"foreign host-local").unwrap();
    fs::remove_file(h.src.join("bandwidth")).unwrap(); // skipped, so not needed in the source
    let mut env = K8S.to_vec();
    env.push(("SKIP_CNI_BINARIES", "bandwidth,loopback"));
    env.push(("UPDATE_CNI_BINARIES", "false"));
    let r = h.installer(&env).install().unwrap();
    let action = |n: &str| r.binaries.iter().find(|o| o.name == n).unwrap().action;
    assert_eq!(action("bandwidth"), BinaryAction::Skipped);
    assert_eq!(action("loopback"), BinaryAction::Skipped);
    assert_eq!(action("host-local"), BinaryAction::KeptExisting);
    assert_eq!(action("calico"), BinaryAction::Installed);
    assert!(!h.bin.join("bandwidth").exists() && !h.bin.join("loopback").exists());
    assert_eq!(
        fs::read(h.bin.join("host-local")).unwrap(),
        b"foreign host-local"
    );
    assert!(h.bin.join("calico").is_file());
}

#[test]
fn missing_source_binary_fails_before_any_write() {
    let h = Host::new();
    fs::remove_file(h.src.join("calico-ipam")).unwrap();
    let err = h.installer(&K8S).install().unwrap_err();
    assert!(matches!(err, InstallError::MissingBinaries { .. }), "{err}");
    assert!(err.to_string().contains("calico-ipam"), "{err}");
    assert!(
        !h.bin.exists() && !h.conf.exists(),
        "host dirs created before the check"
    );
}

#[test]
fn renamed_config_removes_the_old_name() {
    let h = Host::new();
    h.installer(&K8S).install().unwrap();
    let mut env = K8S.to_vec();
    env.push(("CNI_CONF_NAME", "05-calico.conflist"));
    let r = h.installer(&env).install().unwrap();
    assert_eq!(r.removed_old_conf, Some(h.conf.join("10-calico.conflist")));
    assert!(!h.conf.join("10-calico.conflist").exists());
    assert!(h.conf.join("05-calico.conflist").is_file());
}

#[test]
fn uninstall_removes_only_what_was_installed() {
    let h = Host::new();
    h.with_service_account("tok", b"CA");
    fs::create_dir_all(&h.bin).unwrap();
    fs::create_dir_all(&h.conf).unwrap();
    // Foreign files: another plugin, another network, and a different host-local kept by
    // UPDATE_CNI_BINARIES=false.
    fs::write(h.bin.join("flannel"), b"flannel").unwrap();
    fs::write(h.bin.join("host-local"), b"distro host-local").unwrap();
    fs::write(h.conf.join("99-other.conflist"), b"{}").unwrap();
    let tls = h.dir.path().join("secrets");
    fs::create_dir_all(&tls).unwrap();
    fs::write(tls.join("etcd-ca"), b"ca").unwrap();
    let mut env = K8S.to_vec();
    env.push(("UPDATE_CNI_BINARIES", "false"));
    let tls_s = tls.to_str().unwrap().to_string();
    env.push(("TLS_ASSETS_DIR", &tls_s));
    h.installer(&env).install().unwrap();
    assert!(h.conf.join("calico-tls/etcd-ca").is_file());
    // Someone replaces our loopback after the install: it is theirs now.
    fs::write(h.bin.join("loopback"), b"admin's loopback").unwrap();

    let r = h.installer(&env).uninstall().unwrap();
    assert!(r.had_manifest);
    assert_eq!(r.kept_modified, [h.bin.join("loopback")]);
    assert_eq!(
        h.host_files(),
        [
            "etc/cni/net.d/99-other.conflist",
            "opt/cni/bin/flannel",
            "opt/cni/bin/host-local",
            "opt/cni/bin/loopback",
        ]
    );
    assert_eq!(
        fs::read(h.bin.join("host-local")).unwrap(),
        b"distro host-local"
    );
    assert!(!h.conf.join("calico-tls").exists());

    // Again: nothing recorded any more, nothing removed.
    let r = h.installer(&env).uninstall().unwrap();
    assert!(!r.had_manifest && r.removed.is_empty());
    assert_eq!(h.host_files().len(), 4);
}

/// `SLEEP=true` keeps the node current: a rotated service-account token or etcd certificate
/// is installed again; unchanged inputs write nothing.
#[test]
fn rotated_token_and_certificates_are_installed_again() {
    let h = Host::new();
    h.with_service_account("token.one", b"CA-1");
    let tls = h.dir.path().join("calico-secrets");
    fs::create_dir_all(&tls).unwrap();
    for n in ["etcd-ca", "etcd-cert", "etcd-key"] {
        fs::write(tls.join(n), format!("{n} v1")).unwrap();
    }
    let tls_s = tls.to_str().unwrap().to_string();
    let mut env = K8S.to_vec();
    env.push(("TLS_ASSETS_DIR", &tls_s));
    let inst = h.installer(&env);
    inst.install().unwrap();
    let mut last = inst.inputs_fingerprint();
    let conf = h.conf.join("10-calico.conflist");
    let before = identity(&conf);
    assert!(inst.reinstall_if_changed(&mut last).unwrap().is_none());
    assert_eq!(
        identity(&conf),
        before,
        "nothing rewritten while nothing changed"
    );

    // The kubelet rotates the projected token.
    h.with_service_account("token.two", b"CA-1");
    assert!(inst.reinstall_if_changed(&mut last).unwrap().is_some());
    let kc = fs::read_to_string(h.conf.join("calico-kubeconfig")).unwrap();
    assert!(kc.contains("token: token.two"), "{kc}");

    // The etcd client certificate is renewed in the secret.
    fs::write(tls.join("etcd-cert"), "etcd-cert v2").unwrap();
    assert!(inst.reinstall_if_changed(&mut last).unwrap().is_some());
    let cert = h.conf.join("calico-tls/etcd-cert");
    assert_eq!(fs::read_to_string(&cert).unwrap(), "etcd-cert v2");
    assert_eq!(mode(&cert), 0o600);
    assert!(inst.reinstall_if_changed(&mut last).unwrap().is_none());

    // A broken input fails the reinstall and is retried (the fingerprint is not taken).
    h.with_service_account("bad token", b"CA-1");
    assert!(inst.reinstall_if_changed(&mut last).is_err());
    assert!(inst.reinstall_if_changed(&mut last).is_err());
    h.with_service_account("token.three", b"CA-1");
    assert!(inst.reinstall_if_changed(&mut last).unwrap().is_some());
    let kc = fs::read_to_string(h.conf.join("calico-kubeconfig")).unwrap();
    assert!(kc.contains("token: token.three"), "{kc}");
}
