//! The environment interface of Calico's installer (`cni-plugin/pkg/install`), read once.
//!
//! Calico's `getEnv` semantics are kept: a variable that is set but empty means "empty", not
//! "default" (only unset variables take defaults).

use crate::error::InstallError;
use std::path::PathBuf;

/// Calico's default config file name (also the default `CNI_OLD_CONF_NAME`).
pub const DEFAULT_CONF_NAME: &str = "10-calico.conflist";
/// Where Calico's manifests mount the etcd TLS secret.
pub const DEFAULT_TLS_ASSETS_DIR: &str = "/calico-secrets";
/// The in-cluster service-account mount.
pub const DEFAULT_SERVICEACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Everything the installer takes from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `CNI_NET_DIR`: the host's conf dir, used for paths written *into* the config.
    pub net_dir: Option<PathBuf>,
    /// `CNI_CONF_NAME` (default `10-calico.conflist`).
    pub conf_name: String,
    /// `CNI_OLD_CONF_NAME` (default `10-calico.conflist`): removed when it differs from `conf_name`.
    pub old_conf_name: String,
    /// `CNI_NETWORK_CONFIG`: the template text (empty = unset).
    pub network_config: Option<String>,
    /// `CNI_NETWORK_CONFIG_FILE`: a template file; wins over `CNI_NETWORK_CONFIG` like Calico's.
    pub network_config_file: Option<PathBuf>,
    /// `SKIP_CNI_BINARIES`: comma list of binary names not to install.
    pub skip_binaries: Vec<String>,
    /// `UPDATE_CNI_BINARIES` (default true): false keeps any binary already on the host.
    pub update_binaries: bool,
    /// `TLS_ASSETS_DIR` (default `/calico-secrets`): etcd-ca/etcd-cert/etcd-key to copy.
    pub tls_assets_dir: PathBuf,
    /// `SLEEP`: block after installing (Calico's long-running container mode). Calico defaults
    /// this to true; we default to false because this is also a command run by hand, and
    /// Calico's own manifests set `SLEEP=false` for the install-cni init container.
    pub sleep: bool,
    /// `SKIP_TLS_VERIFY=true`: kubeconfig with `insecure-skip-tls-verify` instead of the CA.
    pub skip_tls_verify: bool,
    /// `KUBERNETES_SERVICE_PROTOCOL` (default https).
    pub service_protocol: String,
    /// `KUBERNETES_SERVICE_HOST` / `KUBERNETES_SERVICE_PORT`.
    pub service_host: Option<String>,
    pub service_port: Option<String>,
    /// The raw values the template placeholders draw on, by variable name.
    vars: Vec<(&'static str, Option<String>)>,
}

/// Variables only the template uses (see `template::PLACEHOLDERS`).
const TEMPLATE_VARS: &[&str] = &[
    "LOG_LEVEL",
    "LOG_FILE_PATH",
    "LOG_FILE_MAX_SIZE",
    "LOG_FILE_MAX_AGE",
    "LOG_FILE_MAX_COUNT",
    "DATASTORE_TYPE",
    "KUBERNETES_NODE_NAME",
    "CNI_MTU",
    "REQUIRE_MTU_FILE",
    "CALICO_API_GROUP",
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
    "ETCD_ENDPOINTS",
    "ETCD_DISCOVERY_SRV",
    "ETCD_CERT_FILE",
    "ETCD_KEY_FILE",
    "ETCD_CA_CERT_FILE",
];

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Settings, InstallError> {
        Settings::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads from any lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, InstallError> {
        let nonempty = |k: &str| get(k).filter(|v| !v.is_empty());
        Ok(Settings {
            net_dir: nonempty("CNI_NET_DIR").map(PathBuf::from),
            conf_name: conf_name("CNI_CONF_NAME", get("CNI_CONF_NAME"))?,
            old_conf_name: conf_name("CNI_OLD_CONF_NAME", get("CNI_OLD_CONF_NAME"))?,
            network_config: nonempty("CNI_NETWORK_CONFIG"),
            network_config_file: nonempty("CNI_NETWORK_CONFIG_FILE").map(PathBuf::from),
            skip_binaries: get("SKIP_CNI_BINARIES")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            update_binaries: parse_bool("UPDATE_CNI_BINARIES", get("UPDATE_CNI_BINARIES"), true)?,
            tls_assets_dir: nonempty("TLS_ASSETS_DIR")
                .map_or_else(|| PathBuf::from(DEFAULT_TLS_ASSETS_DIR), PathBuf::from),
            sleep: parse_bool("SLEEP", get("SLEEP"), false)?,
            // Calico compares with exactly "true".
            skip_tls_verify: get("SKIP_TLS_VERIFY").as_deref() == Some("true"),
            service_protocol: nonempty("KUBERNETES_SERVICE_PROTOCOL")
                .unwrap_or_else(|| "https".into()),
            service_host: nonempty("KUBERNETES_SERVICE_HOST"),
            service_port: nonempty("KUBERNETES_SERVICE_PORT"),
            vars: TEMPLATE_VARS.iter().map(|k| (*k, get(k))).collect(),
        })
    }

    /// A template variable: its value if set (even empty), else `default`.
    pub fn var_or(&self, name: &str, default: &str) -> String {
        self.var(name).unwrap_or(default).to_string()
    }

    /// A template variable if set.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// Go's `strconv.ParseBool`, which Calico's envconfig uses; anything else is an error.
fn parse_bool(var: &'static str, v: Option<String>, default: bool) -> Result<bool, InstallError> {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    match v.as_str() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(InstallError::InvalidEnv {
            var,
            value: v,
            reason: "expected true or false".into(),
        }),
    }
}

/// A file name inside the conf dir: no path separators, so the variable cannot point elsewhere.
fn conf_name(var: &'static str, v: Option<String>) -> Result<String, InstallError> {
    let v = v
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_CONF_NAME.into());
    if v.contains('/') || v == "." || v == ".." {
        return Err(InstallError::InvalidEnv {
            var,
            value: v,
            reason: "must be a file name, not a path".into(),
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, InstallError> {
        Settings::from_lookup(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults() {
        let s = with(&[]).unwrap();
        assert_eq!(s.conf_name, "10-calico.conflist");
        assert_eq!(s.old_conf_name, "10-calico.conflist");
        assert!(s.update_binaries);
        assert!(!s.sleep);
        assert!(s.skip_binaries.is_empty());
        assert_eq!(s.tls_assets_dir, PathBuf::from("/calico-secrets"));
        assert_eq!(s.service_protocol, "https");
        assert_eq!(s.var_or("CNI_MTU", "1500"), "1500");
    }

    #[test]
    fn set_but_empty_is_not_default() {
        let s = with(&[("LOG_LEVEL", "")]).unwrap();
        assert_eq!(s.var_or("LOG_LEVEL", "info"), "");
    }

    #[test]
    fn parses_lists_and_bools() {
        let s = with(&[
            ("SKIP_CNI_BINARIES", "portmap, bandwidth,,"),
            ("UPDATE_CNI_BINARIES", "false"),
        ])
        .unwrap();
        assert_eq!(s.skip_binaries, ["portmap", "bandwidth"]);
        assert!(!s.update_binaries);
        let e = with(&[("UPDATE_CNI_BINARIES", "nope")]).unwrap_err();
        assert!(e.to_string().contains("UPDATE_CNI_BINARIES"), "{e}");
    }

    #[test]
    fn conf_name_cannot_escape_the_conf_dir() {
        assert!(with(&[("CNI_CONF_NAME", "../x.conflist")]).is_err());
        assert!(with(&[("CNI_OLD_CONF_NAME", "/etc/passwd")]).is_err());
    }
}
