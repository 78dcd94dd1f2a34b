//! [`DatastoreSettings`]: which datastore, and how to reach it.
//!
//! Two sources, as in Calico:
//! * a network config (`calico` / `calico-ipam`): keys matched like Go's `encoding/json`
//!   (exact, else case-insensitive); a config value wins over the environment; the
//!   environment variables may carry a `CALICO_` prefix;
//! * calicoctl's environment alone ([`DatastoreSettings::from_env`]).
//!
//! Defaults: `datastore_type` `etcdv3` (Calico's documented default), etcd endpoint
//! `http://127.0.0.1:2379` when neither endpoints nor an SRV domain are given (calicoctl's
//! default), local store at `/var/lib/calico/ipam.db`, kubeconfig `$KUBECONFIG`, else
//! `$HOME/.kube/config` when that file exists.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use cni::caps::CiObject;
use ipam_store_etcd::{parse_endpoints, EtcdConfig};
use serde_json::Value;

use crate::error::DatastoreError;

/// Default `datastore_path` / `DATASTORE_PATH`.
pub const DEFAULT_LOCAL_PATH: &str = ipam_store_local::DEFAULT_PATH;

/// The endpoint used when etcd is selected but no endpoint is configured.
pub const DEFAULT_ETCD_ENDPOINT: &str = "http://127.0.0.1:2379";

/// `datastore_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DatastoreKind {
    /// Our embedded SQLite store (single node, zero setup).
    Local,
    /// Calico's etcd v3 layout.
    #[default]
    Etcdv3,
    /// Calico's CRDs through the Kubernetes API server.
    Kubernetes,
}

impl DatastoreKind {
    /// The `datastore_type` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DatastoreKind::Local => "local",
            DatastoreKind::Etcdv3 => "etcdv3",
            DatastoreKind::Kubernetes => "kubernetes",
        }
    }
}

impl fmt::Display for DatastoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatastoreKind {
    type Err = DatastoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "local" => Ok(DatastoreKind::Local),
            "etcdv3" => Ok(DatastoreKind::Etcdv3),
            "kubernetes" => Ok(DatastoreKind::Kubernetes),
            _ => Err(DatastoreError::Config(format!(
                "unknown datastore_type {s:?} (expected etcdv3, kubernetes or local)"
            ))),
        }
    }
}

/// Everything needed to open a datastore. Only the fields of the selected `kind` matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatastoreSettings {
    pub kind: DatastoreKind,
    /// SQLite file of the local store.
    pub local_path: PathBuf,
    /// etcd connection (endpoints, SRV domain, TLS files, timeout).
    pub etcd: EtcdConfig,
    /// kubeconfig for the Kubernetes datastore.
    pub kubeconfig: Option<PathBuf>,
}

impl Default for DatastoreSettings {
    fn default() -> Self {
        DatastoreSettings {
            kind: DatastoreKind::default(),
            local_path: PathBuf::from(DEFAULT_LOCAL_PATH),
            etcd: EtcdConfig::with_endpoints(DEFAULT_ETCD_ENDPOINT),
            kubeconfig: None,
        }
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

fn string(o: &CiObject, key: &str) -> Result<Option<String>, DatastoreError> {
    let v: Option<String> = o
        .field(key)
        .map_err(|e| DatastoreError::Config(format!("failed to load netconf: {e}")))?;
    Ok(non_empty(v))
}

/// Calico's variables with or without the `CALICO_` prefix (plain name first).
fn env_lookup(env: impl Fn(&str) -> Option<String>) -> impl Fn(&str) -> Option<String> {
    move |name: &str| non_empty(env(name)).or_else(|| non_empty(env(&format!("CALICO_{name}"))))
}

/// Values gathered from one source, before defaults.
#[derive(Default)]
struct Raw {
    kind: Option<String>,
    path: Option<String>,
    endpoints: Option<String>,
    discovery_srv: Option<String>,
    key_file: Option<String>,
    cert_file: Option<String>,
    ca_cert_file: Option<String>,
    kubeconfig: Option<String>,
}

impl Raw {
    fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Raw {
        Raw {
            kind: env("DATASTORE_TYPE"),
            path: env("DATASTORE_PATH"),
            endpoints: env("ETCD_ENDPOINTS"),
            discovery_srv: env("ETCD_DISCOVERY_SRV"),
            key_file: env("ETCD_KEY_FILE"),
            cert_file: env("ETCD_CERT_FILE"),
            ca_cert_file: env("ETCD_CA_CERT_FILE"),
            kubeconfig: env("KUBECONFIG"),
        }
    }

    /// `self` where set, else `fallback`.
    fn or(self, fallback: Raw) -> Raw {
        Raw {
            kind: self.kind.or(fallback.kind),
            path: self.path.or(fallback.path),
            endpoints: self.endpoints.or(fallback.endpoints),
            discovery_srv: self.discovery_srv.or(fallback.discovery_srv),
            key_file: self.key_file.or(fallback.key_file),
            cert_file: self.cert_file.or(fallback.cert_file),
            ca_cert_file: self.ca_cert_file.or(fallback.ca_cert_file),
            kubeconfig: self.kubeconfig.or(fallback.kubeconfig),
        }
    }

    fn finish(self, home: Option<String>) -> Result<DatastoreSettings, DatastoreError> {
        let kind = match self.kind {
            Some(k) => k.parse()?,
            None => DatastoreKind::default(),
        };
        let mut etcd = EtcdConfig {
            endpoints: self
                .endpoints
                .map(|e| parse_endpoints(&e))
                .unwrap_or_default(),
            discovery_srv: self.discovery_srv,
            key_file: self.key_file.map(PathBuf::from),
            cert_file: self.cert_file.map(PathBuf::from),
            ca_cert_file: self.ca_cert_file.map(PathBuf::from),
            ..EtcdConfig::default()
        };
        if etcd.endpoints.is_empty() && etcd.discovery_srv.is_none() {
            etcd.endpoints = vec![DEFAULT_ETCD_ENDPOINT.to_string()];
        }
        let kubeconfig = self.kubeconfig.map(PathBuf::from).or_else(|| {
            let p = PathBuf::from(home?).join(".kube/config");
            p.is_file().then_some(p)
        });
        Ok(DatastoreSettings {
            kind,
            local_path: PathBuf::from(self.path.unwrap_or_else(|| DEFAULT_LOCAL_PATH.into())),
            etcd,
            kubeconfig,
        })
    }
}

impl DatastoreSettings {
    /// From a `calico`/`calico-ipam` network config (the whole plugin object) and the
    /// process environment `env` (config values win). Wrong JSON types are errors naming the
    /// key, like Calico's `failed to load netconf: …`.
    pub fn from_calico_config(
        conf: &Value,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, DatastoreError> {
        let top = CiObject::from_value(conf)
            .ok_or_else(|| DatastoreError::Config("network config is not a JSON object".into()))?;
        let kubeconfig = match top.get("kubernetes") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let k = CiObject::from_value(v).ok_or_else(|| {
                    DatastoreError::Config(
                        "failed to load netconf: \"kubernetes\" is not an object".into(),
                    )
                })?;
                string(&k, "kubeconfig")?
            }
        };
        let from_conf = Raw {
            kind: string(&top, "datastore_type")?,
            path: string(&top, "datastore_path")?,
            endpoints: string(&top, "etcd_endpoints")?,
            discovery_srv: string(&top, "etcd_discovery_srv")?,
            key_file: string(&top, "etcd_key_file")?,
            cert_file: string(&top, "etcd_cert_file")?,
            ca_cert_file: string(&top, "etcd_ca_cert_file")?,
            kubeconfig,
        };
        let env = env_lookup(env);
        let home = env("HOME");
        from_conf.or(Raw::from_env(&env)).finish(home)
    }

    /// From calicoctl's environment: `DATASTORE_TYPE`, `ETCD_ENDPOINTS`,
    /// `ETCD_DISCOVERY_SRV`, `ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`, `ETCD_KEY_FILE`,
    /// `KUBECONFIG`, and our `DATASTORE_PATH` (each also accepted with a `CALICO_` prefix).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, DatastoreError> {
        let env = env_lookup(env);
        let home = env("HOME");
        Raw::from_env(&env).finish(home)
    }

    /// A one-line description for logs and error messages (no secrets: paths only).
    pub fn describe(&self) -> String {
        match self.kind {
            DatastoreKind::Local => format!("local ({})", self.local_path.display()),
            DatastoreKind::Etcdv3 => match &self.etcd.discovery_srv {
                Some(d) if self.etcd.endpoints.is_empty() => format!("etcdv3 (SRV {d})"),
                _ => format!("etcdv3 ({})", self.etcd.endpoints.join(",")),
            },
            DatastoreKind::Kubernetes => match &self.kubeconfig {
                Some(k) => format!("kubernetes ({})", k.display()),
                None => "kubernetes".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn calico_defaults() {
        let s = DatastoreSettings::from_calico_config(&json!({"name":"n"}), env(&[])).unwrap();
        assert_eq!(s, DatastoreSettings::default());
        assert_eq!(s.kind, DatastoreKind::Etcdv3);
        assert_eq!(s.etcd.endpoints, vec![DEFAULT_ETCD_ENDPOINT]);
        assert_eq!(s.local_path, PathBuf::from("/var/lib/calico/ipam.db"));
    }

    #[test]
    fn config_wins_over_env_and_keys_are_case_insensitive() {
        let conf = json!({
            "Datastore_Type": "LOCAL", "datastore_path": "/tmp/x.db",
            "etcd_endpoints": "https://a:2379/, https://b:2379", "etcd_ca_cert_file": "/ca.pem",
            "kubernetes": {"Kubeconfig": "/etc/cni/net.d/calico-kubeconfig"}
        });
        let vars = [
            ("DATASTORE_TYPE", "etcdv3"),
            ("ETCD_ENDPOINTS", "http://env:2379"),
            ("CALICO_ETCD_KEY_FILE", "/key.pem"),
            ("KUBECONFIG", "/env/kubeconfig"),
        ];
        let s = DatastoreSettings::from_calico_config(&conf, env(&vars)).unwrap();
        assert_eq!(s.kind, DatastoreKind::Local);
        assert_eq!(s.local_path, PathBuf::from("/tmp/x.db"));
        assert_eq!(s.etcd.endpoints, vec!["https://a:2379", "https://b:2379"]);
        assert_eq!(s.etcd.ca_cert_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(
            s.etcd.key_file,
            Some(PathBuf::from("/key.pem")),
            "from CALICO_ env"
        );
        assert_eq!(
            s.kubeconfig,
            Some(PathBuf::from("/etc/cni/net.d/calico-kubeconfig"))
        );
        assert_eq!(s.describe(), "local (/tmp/x.db)");
    }

    #[test]
    fn bad_values_are_config_errors() {
        for conf in [
            json!({"datastore_type": "consul"}),
            json!({"datastore_type": 3}),
            json!({"etcd_endpoints": ["a"]}),
            json!({"kubernetes": "x"}),
            json!([1]),
        ] {
            let e = DatastoreSettings::from_calico_config(&conf, env(&[])).unwrap_err();
            assert!(matches!(e, DatastoreError::Config(_)), "{conf}: {e:?}");
        }
        let e = DatastoreSettings::from_calico_config(&json!({"etcd_endpoints": 1}), env(&[]))
            .unwrap_err();
        assert!(e.to_string().contains("etcd_endpoints"), "{e}");
    }

    #[test]
    fn calicoctl_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".kube")).unwrap();
        std::fs::write(dir.path().join(".kube/config"), "{}").unwrap();
        let home = dir.path().to_str().unwrap();
        let s =
            DatastoreSettings::from_env(env(&[("DATASTORE_TYPE", "kubernetes"), ("HOME", home)]))
                .unwrap();
        assert_eq!(s.kind, DatastoreKind::Kubernetes);
        assert_eq!(s.kubeconfig, Some(dir.path().join(".kube/config")));
        let s = DatastoreSettings::from_env(env(&[
            ("ETCD_ENDPOINTS", "http://10.0.0.1:2379"),
            ("ETCD_CERT_FILE", "/c.pem"),
            ("DATASTORE_PATH", "/ignored-unless-local.db"),
            ("KUBECONFIG", "/k"),
        ]))
        .unwrap();
        assert_eq!(s.kind, DatastoreKind::Etcdv3);
        assert_eq!(s.etcd.endpoints, vec!["http://10.0.0.1:2379"]);
        assert_eq!(s.etcd.cert_file, Some(PathBuf::from("/c.pem")));
        assert_eq!(s.kubeconfig, Some(PathBuf::from("/k")));
        assert_eq!(s.describe(), "etcdv3 (http://10.0.0.1:2379)");
        let s = DatastoreSettings::from_env(env(&[
            ("CALICO_DATASTORE_TYPE", "local"),
            ("DATASTORE_PATH", "/d.db"),
        ]))
        .unwrap();
        assert_eq!(
            (s.kind, s.local_path),
            (DatastoreKind::Local, PathBuf::from("/d.db"))
        );
        let s =
            DatastoreSettings::from_env(env(&[("ETCD_DISCOVERY_SRV", "example.test")])).unwrap();
        assert!(
            s.etcd.endpoints.is_empty(),
            "SRV replaces the default endpoint"
        );
    }
}
