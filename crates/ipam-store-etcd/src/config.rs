//! Connection settings: Calico's `etcd_*` network-config keys / `ETCD_*` environment variables.

use std::path::PathBuf;
use std::time::Duration;

/// Per-request deadline when the caller gives none. Calico's Go client dials with 10 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach etcd. Field names follow Calico's config keys (`etcd_endpoints`,
/// `etcd_discovery_srv`, `etcd_key_file`, `etcd_cert_file`, `etcd_ca_cert_file`).
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs (`http://host:port`, `https://host:port`; a bare `host:port` means http).
    pub endpoints: Vec<String>,
    /// DNS domain whose `_etcd-client-ssl._tcp` / `_etcd-client._tcp` SRV records list more
    /// endpoints (appended to `endpoints`, like Calico does).
    pub discovery_srv: Option<String>,
    /// PEM private key of the client certificate (mutual TLS).
    pub key_file: Option<PathBuf>,
    /// PEM client certificate (mutual TLS).
    pub cert_file: Option<PathBuf>,
    /// PEM CA bundle that signs the servers' certificates; without it the system roots are used.
    pub ca_cert_file: Option<PathBuf>,
    /// Upper bound for one datastore operation, retries included. Also the connect timeout.
    pub timeout: Duration,
    /// `ETCD_USERNAME` / `ETCD_PASSWORD`: etcd's own user authentication (Calico has no
    /// network-config keys for them). Used only when the username is set.
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for EtcdConfig {
    // Hand-written so the password never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("discovery_srv", &self.discovery_srv)
            .field("key_file", &self.key_file)
            .field("cert_file", &self.cert_file)
            .field("ca_cert_file", &self.ca_cert_file)
            .field("timeout", &self.timeout)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: Vec::new(),
            discovery_srv: None,
            key_file: None,
            cert_file: None,
            ca_cert_file: None,
            timeout: DEFAULT_TIMEOUT,
            username: None,
            password: None,
        }
    }
}

impl EtcdConfig {
    /// Config for a comma-separated endpoint list (the `etcd_endpoints` format).
    pub fn with_endpoints(list: &str) -> Self {
        EtcdConfig {
            endpoints: parse_endpoints(list),
            ..EtcdConfig::default()
        }
    }

    /// Reads `ETCD_ENDPOINTS`, `ETCD_DISCOVERY_SRV`, `ETCD_KEY_FILE`, `ETCD_CERT_FILE`,
    /// `ETCD_CA_CERT_FILE` (the variables Calico exports from its config keys) and
    /// `ETCD_USERNAME` / `ETCD_PASSWORD`.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`EtcdConfig::from_env`], with the variable lookup supplied by the caller
    /// (keeps tests away from the process environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let path = |name: &str| non_empty(name).map(PathBuf::from);
        EtcdConfig {
            endpoints: non_empty("ETCD_ENDPOINTS")
                .map(|v| parse_endpoints(&v))
                .unwrap_or_default(),
            discovery_srv: non_empty("ETCD_DISCOVERY_SRV"),
            key_file: path("ETCD_KEY_FILE"),
            cert_file: path("ETCD_CERT_FILE"),
            ca_cert_file: path("ETCD_CA_CERT_FILE"),
            timeout: DEFAULT_TIMEOUT,
            username: non_empty("ETCD_USERNAME"),
            password: lookup("ETCD_PASSWORD"),
        }
    }
}

/// Splits an `etcd_endpoints` value: comma-separated, whitespace around entries ignored,
/// empty entries dropped, one trailing `/` removed (users often write `http://host:2379/`).
pub fn parse_endpoints(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_suffix('/').unwrap_or(e).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_split_and_trimmed() {
        assert_eq!(
            parse_endpoints(" http://10.0.0.1:2379/, https://b:2379,,127.0.0.1:2379 "),
            vec!["http://10.0.0.1:2379", "https://b:2379", "127.0.0.1:2379"]
        );
        assert!(parse_endpoints("").is_empty());
        assert!(parse_endpoints(" , ").is_empty());
    }

    #[test]
    fn env_lookup_maps_calico_variables() {
        let cfg = EtcdConfig::from_lookup(|k| match k {
            "ETCD_ENDPOINTS" => Some("https://a:2379,https://b:2379".into()),
            "ETCD_DISCOVERY_SRV" => Some("example.test".into()),
            "ETCD_KEY_FILE" => Some("/k.pem".into()),
            "ETCD_CERT_FILE" => Some("/c.pem".into()),
            "ETCD_CA_CERT_FILE" => Some("".into()),
            _ => None,
        });
        assert_eq!(cfg.endpoints, vec!["https://a:2379", "https://b:2379"]);
        assert_eq!(cfg.discovery_srv.as_deref(), Some("example.test"));
        assert_eq!(cfg.key_file, Some(PathBuf::from("/k.pem")));
        assert_eq!(cfg.cert_file, Some(PathBuf::from("/c.pem")));
        // An empty variable means "not set", as in Calico.
        assert_eq!(cfg.ca_cert_file, None);
        assert_eq!(cfg.timeout, DEFAULT_TIMEOUT);
    }
}
