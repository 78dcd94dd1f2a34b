//! The network config template: Calico's placeholders, their values, and validation of the result.
//!
//! Values are inserted verbatim, as Calico does (`__CNI_MTU__` sits unquoted in templates); a
//! value that breaks the JSON is caught by [`validate`] before anything is written.
//! Substitution is a single left-to-right pass, so a value that happens to contain a placeholder
//! (a token, a path) is never expanded again.

use crate::error::InstallError;
use crate::settings::Settings;
use cni::config::{NetConf, NetConfList};
use std::path::Path;

/// The config written when the operator gives no template: Calico's current default
/// (cniVersion 1.0.0, calico + calico-ipam with the k8s datastore, then portmap).
pub const DEFAULT_TEMPLATE: &str = r#"{
  "name": "k8s-pod-network",
  "cniVersion": "1.0.0",
  "plugins": [
    {
      "type": "calico",
      "log_level": "__LOG_LEVEL__",
      "log_file_path": "__LOG_FILE_PATH__",
      "datastore_type": "__DATASTORE_TYPE__",
      "nodename": "__KUBERNETES_NODE_NAME__",
      "mtu": __CNI_MTU__,
      "ipam": {"type": "calico-ipam"},
      "policy": {"type": "k8s"},
      "kubernetes": {"kubeconfig": "__KUBECONFIG_FILEPATH__"},
      "require_mtu_file": __REQUIRE_MTU_FILE__,
      "calico_api_group": "__CALICO_API_GROUP__"
    },
    {
      "type": "portmap",
      "snat": true,
      "capabilities": {"portMappings": true}
    }
  ]
}
"#;

/// File name of the kubeconfig the installer writes into the conf dir.
pub const KUBECONFIG_NAME: &str = "calico-kubeconfig";
/// Sub-directory of the conf dir receiving the etcd TLS assets.
pub const TLS_DIR_NAME: &str = "calico-tls";

/// Every placeholder Calico's installer (Go and the older shell script) replaces.
pub const PLACEHOLDERS: &[&str] = &[
    "__LOG_LEVEL__",
    "__LOG_FILE_PATH__",
    "__LOG_FILE_MAX_SIZE__",
    "__LOG_FILE_MAX_AGE__",
    "__LOG_FILE_MAX_COUNT__",
    "__DATASTORE_TYPE__",
    "__KUBERNETES_NODE_NAME__",
    "__KUBECONFIG_FILEPATH__",
    "__KUBECONFIG_FILENAME__",
    "__CNI_MTU__",
    "__REQUIRE_MTU_FILE__",
    "__CALICO_API_GROUP__",
    "__KUBERNETES_SERVICE_HOST__",
    "__KUBERNETES_SERVICE_PORT__",
    "__SERVICEACCOUNT_TOKEN__",
    "__ETCD_CERT_FILE__",
    "__ETCD_KEY_FILE__",
    "__ETCD_CA_CERT_FILE__",
    "__ETCD_ENDPOINTS__",
    "__ETCD_DISCOVERY_SRV__",
];

/// Which etcd TLS assets were installed under `<conf dir>/calico-tls`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EtcdTls {
    pub cert: bool,
    pub key: bool,
    pub ca: bool,
}

/// What the placeholders are computed from, besides the environment.
pub struct RenderContext<'a> {
    pub settings: &'a Settings,
    /// The conf dir as the host (the plugin) sees it: paths in the config point there.
    pub host_conf_dir: &'a Path,
    /// `KUBERNETES_NODE_NAME` or the host name, lower-cased.
    pub node_name: &'a str,
    /// The service-account token, empty outside a cluster.
    pub token: &'a str,
    pub etcd_tls: EtcdTls,
}

/// The value of every placeholder, with Calico's defaults.
pub fn substitutions(ctx: &RenderContext) -> Vec<(&'static str, String)> {
    let s = ctx.settings;
    let in_conf_dir = |name: &str| ctx.host_conf_dir.join(name).display().to_string();
    // An installed TLS asset wins (Calico's behaviour); otherwise a host path the operator gave
    // in ETCD_*_FILE (our extension for installs without a secret mount); otherwise empty.
    let tls = |installed: bool, file: &str, var: &str| {
        if installed {
            in_conf_dir(&format!("{TLS_DIR_NAME}/{file}"))
        } else {
            s.var_or(var, "")
        }
    };
    vec![
        ("__LOG_LEVEL__", s.var_or("LOG_LEVEL", "info")),
        (
            "__LOG_FILE_PATH__",
            s.var_or("LOG_FILE_PATH", "/var/log/calico/cni/cni.log"),
        ),
        (
            "__LOG_FILE_MAX_SIZE__",
            s.var_or("LOG_FILE_MAX_SIZE", "100"),
        ),
        ("__LOG_FILE_MAX_AGE__", s.var_or("LOG_FILE_MAX_AGE", "30")),
        (
            "__LOG_FILE_MAX_COUNT__",
            s.var_or("LOG_FILE_MAX_COUNT", "10"),
        ),
        (
            "__DATASTORE_TYPE__",
            s.var_or("DATASTORE_TYPE", "kubernetes"),
        ),
        ("__KUBERNETES_NODE_NAME__", ctx.node_name.to_string()),
        ("__KUBECONFIG_FILEPATH__", in_conf_dir(KUBECONFIG_NAME)),
        ("__KUBECONFIG_FILENAME__", KUBECONFIG_NAME.to_string()),
        ("__CNI_MTU__", s.var_or("CNI_MTU", "1500")),
        (
            "__REQUIRE_MTU_FILE__",
            s.var_or("REQUIRE_MTU_FILE", "false"),
        ),
        ("__CALICO_API_GROUP__", s.var_or("CALICO_API_GROUP", "")),
        (
            "__KUBERNETES_SERVICE_HOST__",
            s.var_or("KUBERNETES_SERVICE_HOST", ""),
        ),
        (
            "__KUBERNETES_SERVICE_PORT__",
            s.var_or("KUBERNETES_SERVICE_PORT", ""),
        ),
        ("__SERVICEACCOUNT_TOKEN__", ctx.token.to_string()),
        (
            "__ETCD_CERT_FILE__",
            tls(ctx.etcd_tls.cert, "etcd-cert", "ETCD_CERT_FILE"),
        ),
        (
            "__ETCD_KEY_FILE__",
            tls(ctx.etcd_tls.key, "etcd-key", "ETCD_KEY_FILE"),
        ),
        (
            "__ETCD_CA_CERT_FILE__",
            tls(ctx.etcd_tls.ca, "etcd-ca", "ETCD_CA_CERT_FILE"),
        ),
        ("__ETCD_ENDPOINTS__", s.var_or("ETCD_ENDPOINTS", "")),
        ("__ETCD_DISCOVERY_SRV__", s.var_or("ETCD_DISCOVERY_SRV", "")),
    ]
}

/// Replaces every known placeholder in one pass.
pub fn render(template: &str, subs: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(i) = rest.find("__") {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        match subs.iter().find(|(p, _)| rest.starts_with(p)) {
            Some((p, v)) => {
                out.push_str(v);
                rest = &rest[p.len()..];
            }
            None => {
                // Not a placeholder start: emit one '_' and keep scanning (handles "___X__").
                out.push('_');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `__NAME__` tokens left after rendering (unknown placeholders): worth a warning, since the
/// plugin would see them literally.
pub fn leftover_placeholders(rendered: &str) -> Vec<String> {
    let mut found = Vec::new();
    let b = rendered.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'_' && b[i + 1] == b'_' {
            let start = i + 2;
            let mut j = start;
            while j < b.len()
                && (b[j].is_ascii_uppercase() || b[j].is_ascii_digit() || b[j] == b'_')
            {
                j += 1;
            }
            // The run must end in "__" and have a name of at least one character before it.
            if j >= start + 3 && &b[j - 2..j] == b"__" && b[start] != b'_' {
                found.push(rendered[i..j].to_string());
                i = j;
                continue;
            }
        }
        i += 1;
    }
    found
}

/// Checks the rendered text is a JSON object that the CNI library accepts: a conflist when the
/// file name is `*.conflist` or the object has `plugins`, else a single network config.
pub fn validate(rendered: &str, conf_name: &str) -> Result<(), InstallError> {
    let invalid = |reason: String| InstallError::InvalidConfig {
        name: conf_name.to_string(),
        reason,
    };
    let v: serde_json::Value =
        serde_json::from_str(rendered).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("not a JSON object".into()))?;
    if conf_name.ends_with(".conflist") || obj.contains_key("plugins") {
        NetConfList::parse(rendered.as_bytes()).map_err(|e| invalid(e.to_string()))?;
    } else {
        let conf = NetConf::parse(rendered.as_bytes()).map_err(|e| invalid(e.to_string()))?;
        // libcni refuses to run a config without a plugin type; the cni crate leaves that to it.
        if conf.plugin_type.is_empty() || conf.plugin_type.contains('/') {
            return Err(invalid("missing or invalid \"type\"".into()));
        }
    }
    Ok(())
}

/// The template to render: `CNI_NETWORK_CONFIG_FILE`, else `CNI_NETWORK_CONFIG`, else the default.
pub fn load_template(settings: &Settings) -> Result<String, InstallError> {
    if let Some(path) = &settings.network_config_file {
        return std::fs::read_to_string(path)
            .map_err(InstallError::io("read CNI_NETWORK_CONFIG_FILE", path));
    }
    Ok(settings
        .network_config
        .clone()
        .unwrap_or_else(|| DEFAULT_TEMPLATE.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_pass_does_not_expand_values() {
        let subs = vec![("__A__", "__B__".to_string()), ("__B__", "b".to_string())];
        assert_eq!(render("x__A__y__B__z", &subs), "x__B__ybz");
        assert_eq!(render("___A__", &subs), "___B__");
        assert_eq!(render("a_b__c", &subs), "a_b__c");
    }

    #[test]
    fn finds_leftovers() {
        assert_eq!(
            leftover_placeholders(r#"{"a":"__NOT_KNOWN__","b":"x__Y1__"}"#),
            ["__NOT_KNOWN__", "__Y1__"]
        );
        assert!(leftover_placeholders(r#"{"a":"a__b","c":"____"}"#).is_empty());
    }

    #[test]
    fn every_placeholder_has_a_value() {
        let s = Settings::from_lookup(|_| None).unwrap();
        let ctx = RenderContext {
            settings: &s,
            host_conf_dir: Path::new("/etc/cni/net.d"),
            node_name: "n",
            token: "",
            etcd_tls: EtcdTls::default(),
        };
        let subs = substitutions(&ctx);
        for p in PLACEHOLDERS {
            assert!(subs.iter().any(|(k, _)| k == p), "{p} has no value");
        }
        assert_eq!(subs.len(), PLACEHOLDERS.len());
    }
}
