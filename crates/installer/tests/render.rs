//! Template rendering through a real install: every placeholder, the seed templates, defaults,
//! and rejection of configs that would not load (nothing is written then).

mod common;

use cni::config::NetConfList;
use common::{testdata, Host};
use installer::template::PLACEHOLDERS;
use installer::InstallError;
use serde_json::{json, Value};
use std::fs;

fn read_json(p: &std::path::Path) -> Value {
    serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
}

/// A conflist whose calico entry has one key per placeholder, named after it.
fn all_placeholders_template() -> String {
    let mut fields = String::new();
    for p in PLACEHOLDERS {
        let key = p.trim_matches('_');
        match *p {
            // Unquoted in Calico's templates: a number and a boolean.
            "__CNI_MTU__" | "__REQUIRE_MTU_FILE__" => {
                fields.push_str(&format!("\"{key}\": {p},\n"))
            }
            _ => fields.push_str(&format!("\"{key}\": \"{p}\",\n")),
        }
    }
    format!(
        r#"{{"name":"k8s-pod-network","cniVersion":"0.3.1","plugins":[{{
{fields}"type":"calico"}},{{"type":"portmap","capabilities":{{"portMappings":true}}}}]}}"#
    )
}

#[test]
fn every_placeholder_is_replaced_with_its_env_value() {
    let h = Host::new();
    h.with_service_account("eyJhbGciOi.tok-en_1", b"CA");
    let tls = h.dir.path().join("calico-secrets");
    fs::create_dir_all(&tls).unwrap();
    for n in ["etcd-cert", "etcd-key", "etcd-ca"] {
        fs::write(tls.join(n), format!("{n}-pem")).unwrap();
    }
    let template = all_placeholders_template();
    let env = [
        ("CNI_NETWORK_CONFIG", template.as_str()),
        ("CNI_NET_DIR", "/etc/cni/net.d"),
        ("TLS_ASSETS_DIR", tls.to_str().unwrap()),
        ("LOG_LEVEL", "debug"),
        ("LOG_FILE_PATH", "/var/log/x/cni.log"),
        ("LOG_FILE_MAX_SIZE", "7"),
        ("LOG_FILE_MAX_AGE", "8"),
        ("LOG_FILE_MAX_COUNT", "9"),
        ("DATASTORE_TYPE", "etcdv3"),
        ("KUBERNETES_NODE_NAME", "node-1"),
        ("CNI_MTU", "1440"),
        ("REQUIRE_MTU_FILE", "true"),
        ("CALICO_API_GROUP", "projectcalico.org/v3"),
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
        ("KUBERNETES_SERVICE_PORT", "443"),
        ("ETCD_ENDPOINTS", "https://e1:2379,https://e2:2379"),
        ("ETCD_DISCOVERY_SRV", "example.com"),
    ];
    let report = h.installer(&env).install().unwrap();
    let text = fs::read_to_string(&report.conf_path).unwrap();
    assert!(!text.contains("__"), "placeholder left:\n{text}");
    NetConfList::parse(text.as_bytes()).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let expected = json!({
        "LOG_LEVEL": "debug",
        "LOG_FILE_PATH": "/var/log/x/cni.log",
        "LOG_FILE_MAX_SIZE": "7",
        "LOG_FILE_MAX_AGE": "8",
        "LOG_FILE_MAX_COUNT": "9",
        "DATASTORE_TYPE": "etcdv3",
        "KUBERNETES_NODE_NAME": "node-1",
        // Paths inside the config use CNI_NET_DIR (the host's view), not the write dir.
        "KUBECONFIG_FILEPATH": "/etc/cni/net.d/calico-kubeconfig",
        "KUBECONFIG_FILENAME": "calico-kubeconfig",
        "CNI_MTU": 1440,
        "REQUIRE_MTU_FILE": true,
        "CALICO_API_GROUP": "projectcalico.org/v3",
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "SERVICEACCOUNT_TOKEN": "eyJhbGciOi.tok-en_1",
        "ETCD_CERT_FILE": "/etc/cni/net.d/calico-tls/etcd-cert",
        "ETCD_KEY_FILE": "/etc/cni/net.d/calico-tls/etcd-key",
        "ETCD_CA_CERT_FILE": "/etc/cni/net.d/calico-tls/etcd-ca",
        "ETCD_ENDPOINTS": "https://e1:2379,https://e2:2379",
        "ETCD_DISCOVERY_SRV": "example.com",
        "type": "calico",
    });
    assert_eq!(v["plugins"][0], expected);
    // The TLS assets were copied where the config points (relative to the write dir), 0600.
    for n in ["etcd-cert", "etcd-key", "etcd-ca"] {
        let p = h.conf.join("calico-tls").join(n);
        assert_eq!(fs::read_to_string(&p).unwrap(), format!("{n}-pem"));
        assert_eq!(common::mode(&p), 0o600);
    }
}

#[test]
fn calico_manifest_template_renders() {
    let h = Host::new();
    h.with_service_account("tok", b"CA");
    let tpl = testdata().join("cni_network_config.template.json");
    let env = [
        ("CNI_NETWORK_CONFIG_FILE", tpl.to_str().unwrap()),
        ("KUBERNETES_NODE_NAME", "worker-3"),
        ("CNI_MTU", "8950"),
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
        ("KUBERNETES_SERVICE_PORT", "443"),
    ];
    let r = h.installer(&env).install().unwrap();
    let text = fs::read_to_string(&r.conf_path).unwrap();
    let list = NetConfList::parse(text.as_bytes()).unwrap();
    assert_eq!(list.plugins.len(), 3);
    let calico = &list.plugins[0];
    assert_eq!(calico["nodename"], "worker-3");
    assert_eq!(calico["mtu"], 8950);
    let kc = h.conf.join("calico-kubeconfig");
    assert_eq!(calico["kubernetes"]["kubeconfig"], kc.to_str().unwrap());
    assert!(kc.is_file());
}

#[test]
fn old_etcd_template_renders() {
    let h = Host::new();
    h.with_service_account("sa.token.value", b"CA");
    let tpl = fs::read_to_string(testdata().join("cni_network_config.etcd.template.json")).unwrap();
    let env = [
        ("CNI_NETWORK_CONFIG", tpl.as_str()),
        ("CNI_NET_DIR", "/etc/cni/net.d"),
        ("ETCD_ENDPOINTS", "https://10.0.0.1:2379"),
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
        ("KUBERNETES_SERVICE_PORT", "443"),
    ];
    let r = h.installer(&env).install().unwrap();
    let text = fs::read_to_string(&r.conf_path).unwrap();
    assert!(!text.contains("__"), "{text}");
    let list = NetConfList::parse(text.as_bytes()).unwrap();
    let c = &list.plugins[0];
    assert_eq!(list.cni_version, "0.3.0");
    assert_eq!(c["etcd_endpoints"], "https://10.0.0.1:2379");
    assert_eq!(c["policy"]["k8s_api_root"], "https://10.96.0.1:443");
    assert_eq!(c["policy"]["k8s_auth_token"], "sa.token.value");
    assert_eq!(
        c["kubernetes"]["kubeconfig"],
        "/etc/cni/net.d/calico-kubeconfig"
    );
}

#[test]
fn literal_conflists_pass_through_unchanged() {
    for name in [
        "10-calico-kdd-hostlocal.conflist",
        "10-calico-etcd-tls.conflist",
    ] {
        let h = Host::new();
        let src = testdata().join(name);
        let env = [
            ("CNI_NETWORK_CONFIG_FILE", src.to_str().unwrap()),
            ("KUBERNETES_NODE_NAME", "n"),
        ];
        let r = h.installer(&env).install().unwrap();
        assert_eq!(read_json(&r.conf_path), read_json(&src), "{name}");
        NetConfList::parse(&fs::read(&r.conf_path).unwrap()).unwrap();
    }
}

#[test]
fn default_template_uses_calico_defaults_and_host_name() {
    let h = Host::new();
    let r = h.installer(&[]).install().unwrap();
    let v = read_json(&r.conf_path);
    NetConfList::parse(&fs::read(&r.conf_path).unwrap()).unwrap();
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let c = &v["plugins"][0];
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(c["nodename"], host.trim().to_lowercase());
    assert_eq!(c["mtu"], 1500);
    assert_eq!(c["log_level"], "info");
    assert_eq!(c["log_file_path"], "/var/log/calico/cni/cni.log");
    assert_eq!(c["datastore_type"], "kubernetes");
    assert_eq!(c["require_mtu_file"], false);
    assert_eq!(v["plugins"][1]["type"], "portmap");
    // No token mounted: no kubeconfig written.
    assert!(r.kubeconfig.is_none());
    assert!(!h.conf.join("calico-kubeconfig").exists());
}

#[test]
fn etcd_file_env_fills_tls_placeholders_without_a_secret_mount() {
    let h = Host::new();
    let tpl = r#"{"name":"n","cniVersion":"0.3.1","plugins":[{"type":"calico",
        "etcd_cert_file":"__ETCD_CERT_FILE__","etcd_key_file":"__ETCD_KEY_FILE__",
        "etcd_ca_cert_file":"__ETCD_CA_CERT_FILE__"}]}"#;
    let env = [
        ("CNI_NETWORK_CONFIG", tpl),
        ("KUBERNETES_NODE_NAME", "n"),
        ("TLS_ASSETS_DIR", "/nonexistent-secrets"),
        ("ETCD_CERT_FILE", "/pki/c.pem"),
        ("ETCD_CA_CERT_FILE", "/pki/ca.pem"),
    ];
    let r = h.installer(&env).install().unwrap();
    let c = &read_json(&r.conf_path)["plugins"][0];
    assert_eq!(c["etcd_cert_file"], "/pki/c.pem");
    assert_eq!(c["etcd_key_file"], "");
    assert_eq!(c["etcd_ca_cert_file"], "/pki/ca.pem");
}

#[test]
fn file_template_wins_over_env_template() {
    let h = Host::new();
    let f = h.dir.path().join("tpl.json");
    fs::write(
        &f,
        r#"{"name":"from-file","cniVersion":"0.4.0","plugins":[{"type":"calico"}]}"#,
    )
    .unwrap();
    let env = [
        (
            "CNI_NETWORK_CONFIG",
            r#"{"name":"from-env","plugins":[{"type":"calico"}]}"#,
        ),
        ("CNI_NETWORK_CONFIG_FILE", f.to_str().unwrap()),
        ("KUBERNETES_NODE_NAME", "n"),
    ];
    let r = h.installer(&env).install().unwrap();
    assert_eq!(read_json(&r.conf_path)["name"], "from-file");
}

/// (what, env, expected error excerpt)
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

/// Templates that would not load: an error naming the problem, and the host untouched.
#[test]
fn invalid_results_are_rejected_before_any_write() {
    let cases: &[Case] = &[
        ("non-numeric MTU", &[("CNI_MTU", "abc")], "not valid JSON"),
        (
            "value breaking a string",
            &[("LOG_LEVEL", "in\"fo")],
            "not valid JSON",
        ),
        (
            "no plugins",
            &[(
                "CNI_NETWORK_CONFIG",
                r#"{"name":"x","cniVersion":"0.3.1","plugins":[]}"#,
            )],
            "no plugins",
        ),
        (
            "array",
            &[("CNI_NETWORK_CONFIG", "[1]")],
            "not a JSON object",
        ),
        (
            "plugin without type",
            &[(
                "CNI_NETWORK_CONFIG",
                r#"{"name":"x","plugins":[{"mtu":1}]}"#,
            )],
            "type",
        ),
        (
            "single conf without type",
            &[
                ("CNI_CONF_NAME", "10-calico.conf"),
                ("CNI_NETWORK_CONFIG", r#"{"name":"x","cniVersion":"0.3.1"}"#),
            ],
            "type",
        ),
    ];
    for (what, env, needle) in cases {
        let h = Host::new();
        let mut env = env.to_vec();
        env.push(("KUBERNETES_NODE_NAME", "n"));
        let err = h.installer(&env).install().unwrap_err();
        assert!(
            matches!(err, InstallError::InvalidConfig { .. }),
            "{what}: {err}"
        );
        assert!(err.to_string().contains(needle), "{what}: {err}");
        assert!(
            h.host_files().is_empty(),
            "{what}: wrote {:?}",
            h.host_files()
        );
    }
}
