//! [`DatastoreSettings`]: which datastore, and how to reach it — one rule for `calico`,
//! `calico-ipam` and `calicoctl`, the one libcalico-go's `apiconfig` applies.
//!
//! Two sources, as in Calico:
//! * a network config (`calico` / `calico-ipam`): keys matched like Go's `encoding/json`
//!   (exact, else case-insensitive). Calico exports the config keys to the environment and
//!   then loads the environment, so a config value wins over the environment;
//! * calicoctl's environment alone ([`DatastoreSettings::from_env`]).
//!
//! Environment variables are looked up with the `CALICO_` prefix first, then without (what
//! `envconfig.Process("calico", …)` does).
//!
//! Defaults (`applyConfigDefaults` in libcalico-go): no `datastore_type` means `etcdv3` when
//! etcd endpoints are given, else `kubernetes`. `local` (our embedded store) only when asked
//! for. etcd endpoint `http://127.0.0.1:2379` when etcdv3 is asked for without endpoints or
//! an SRV domain (calicoctl's default). Kubernetes: the kubeconfig named, else an API
//! endpoint, else `$HOME/.kube/config` when it exists, else the in-cluster service account
//! (`KUBERNETES_SERVICE_HOST`/`_PORT`).

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

/// Where a pod's service-account token and CA live (in-cluster configuration).
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// `datastore_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatastoreKind {
    /// Our embedded SQLite store (single node, zero setup).
    Local,
    /// Calico's etcd v3 layout.
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
            _ => Err(DatastoreError::UnknownDatastoreType {
                value: s.to_string(),
            }),
        }
    }
}

/// Which API group holds Calico's resources in the Kubernetes datastore
/// (`calico_api_group` / `CALICO_API_GROUP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiGroup {
    /// `crd.projectcalico.org/v1`: the CRDs Calico has always used (default).
    #[default]
    CrdV1,
    /// `projectcalico.org/v3`: Calico's native v3 CRDs.
    V3,
}

impl ApiGroup {
    /// The `group/version` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiGroup::CrdV1 => "crd.projectcalico.org/v1",
            ApiGroup::V3 => "projectcalico.org/v3",
        }
    }
}

impl ApiGroup {
    /// An explicit `calico_api_group` as libcalico-go reads it: `projectcalico.org/v3` (any
    /// case) is v3, anything else `crd.projectcalico.org/v1`, so a typo lands on Calico's
    /// long-standing default (whose writes fail with 404 where only v3 CRDs exist) rather
    /// than on an error Calico would not raise. Empty means unset (discover).
    pub fn from_setting(s: &str) -> Option<ApiGroup> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        if s.eq_ignore_ascii_case(ApiGroup::V3.as_str()) {
            return Some(ApiGroup::V3);
        }
        if !s.eq_ignore_ascii_case(ApiGroup::CrdV1.as_str()) {
            log::warn!(
                "calico_api_group {s:?} is neither {} nor {}: using {} as Calico does",
                ApiGroup::CrdV1.as_str(),
                ApiGroup::V3.as_str(),
                ApiGroup::CrdV1.as_str()
            );
        }
        Some(ApiGroup::CrdV1)
    }
}

/// How to reach the Kubernetes API server besides a kubeconfig: Calico's
/// `kubernetes.k8s_api_root` / `policy.k8s_*` keys and `K8S_*` variables, and the in-cluster
/// service account.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct KubeSettings {
    /// `kubernetes.k8s_api_root` (else `policy.k8s_api_root`) / `K8S_API_ENDPOINT`.
    pub api_endpoint: Option<String>,
    /// `policy.k8s_auth_token` / `K8S_API_TOKEN`.
    pub token: Option<String>,
    /// `policy.k8s_client_certificate` / `K8S_CERT_FILE`.
    pub cert_file: Option<PathBuf>,
    /// `policy.k8s_client_key` / `K8S_KEY_FILE`.
    pub key_file: Option<PathBuf>,
    /// `policy.k8s_certificate_authority` / `K8S_CA_FILE`.
    pub ca_file: Option<PathBuf>,
    /// `K8S_INSECURE_SKIP_TLS_VERIFY`.
    pub insecure_skip_tls_verify: bool,
    /// `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` when both are set.
    pub in_cluster_server: Option<String>,
    /// Service-account directory (`token`, `ca.crt`) used with `in_cluster_server`; always
    /// [`SERVICE_ACCOUNT_DIR`] outside tests.
    pub service_account_dir: PathBuf,
    /// `calico_api_group` / `CALICO_API_GROUP`; `None` (unset or empty): ask the API server
    /// which group it serves, as Calico does (`datastore::kube_api_group`, and the IPAM store
    /// on its first call).
    pub api_group: Option<ApiGroup>,
}

impl fmt::Debug for KubeSettings {
    // Hand-written so the token never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeSettings")
            .field("api_endpoint", &self.api_endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("ca_file", &self.ca_file)
            .field("insecure_skip_tls_verify", &self.insecure_skip_tls_verify)
            .field("in_cluster_server", &self.in_cluster_server)
            .field("service_account_dir", &self.service_account_dir)
            .field("api_group", &self.api_group)
            .finish()
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
    /// The other ways to reach the API server, and the API group.
    pub kubernetes: KubeSettings,
}

impl Default for DatastoreSettings {
    /// Nothing configured: Calico's rule picks `kubernetes`.
    fn default() -> Self {
        DatastoreSettings {
            kind: DatastoreKind::Kubernetes,
            local_path: PathBuf::from(DEFAULT_LOCAL_PATH),
            etcd: EtcdConfig::with_endpoints(DEFAULT_ETCD_ENDPOINT),
            kubeconfig: None,
            kubernetes: KubeSettings {
                service_account_dir: PathBuf::from(SERVICE_ACCOUNT_DIR),
                ..KubeSettings::default()
            },
        }
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

fn string(o: &CiObject, key: &str) -> Result<Option<String>, DatastoreError> {
    let v: Option<String> = o.field(key).map_err(DatastoreError::Field)?;
    Ok(non_empty(v))
}

/// A nested object of the network config (`kubernetes`, `policy`); absent/null is empty.
fn object(top: &CiObject, key: &'static str) -> Result<CiObject, DatastoreError> {
    match top.get(key) {
        None | Some(Value::Null) => Ok(CiObject::default()),
        Some(v) => CiObject::from_value(v).ok_or(DatastoreError::FieldNotAnObject { field: key }),
    }
}

/// Calico's variables: `CALICO_`-prefixed first, then the plain name (envconfig's order).
fn env_lookup(env: impl Fn(&str) -> Option<String>) -> impl Fn(&str) -> Option<String> {
    move |name: &str| non_empty(env(&format!("CALICO_{name}"))).or_else(|| non_empty(env(name)))
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
    /// `ETCD_USERNAME` / `ETCD_PASSWORD` (environment only, as in Calico's CNI config).
    etcd_username: Option<String>,
    etcd_password: Option<String>,
    kubeconfig: Option<String>,
    k8s_api_endpoint: Option<String>,
    k8s_token: Option<String>,
    k8s_cert_file: Option<String>,
    k8s_key_file: Option<String>,
    k8s_ca_file: Option<String>,
    k8s_insecure: Option<String>,
    api_group: Option<String>,
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
            etcd_username: env("ETCD_USERNAME"),
            etcd_password: env("ETCD_PASSWORD"),
            kubeconfig: env("KUBECONFIG"),
            k8s_api_endpoint: env("K8S_API_ENDPOINT"),
            k8s_token: env("K8S_API_TOKEN"),
            k8s_cert_file: env("K8S_CERT_FILE"),
            k8s_key_file: env("K8S_KEY_FILE"),
            k8s_ca_file: env("K8S_CA_FILE"),
            k8s_insecure: env("K8S_INSECURE_SKIP_TLS_VERIFY"),
            api_group: env("CALICO_API_GROUP"),
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
            etcd_username: self.etcd_username.or(fallback.etcd_username),
            etcd_password: self.etcd_password.or(fallback.etcd_password),
            kubeconfig: self.kubeconfig.or(fallback.kubeconfig),
            k8s_api_endpoint: self.k8s_api_endpoint.or(fallback.k8s_api_endpoint),
            k8s_token: self.k8s_token.or(fallback.k8s_token),
            k8s_cert_file: self.k8s_cert_file.or(fallback.k8s_cert_file),
            k8s_key_file: self.k8s_key_file.or(fallback.k8s_key_file),
            k8s_ca_file: self.k8s_ca_file.or(fallback.k8s_ca_file),
            k8s_insecure: self.k8s_insecure.or(fallback.k8s_insecure),
            api_group: self.api_group.or(fallback.api_group),
        }
    }

    /// libcalico-go's `applyConfigDefaults`: etcdv3 when etcd endpoints are given, else
    /// kubernetes.
    fn kind(&self) -> Result<DatastoreKind, DatastoreError> {
        match &self.kind {
            Some(k) => k.parse(),
            None if self.endpoints.is_some() => Ok(DatastoreKind::Etcdv3),
            None => Ok(DatastoreKind::Kubernetes),
        }
    }

    fn finish(self, ctx: &Context) -> Result<DatastoreSettings, DatastoreError> {
        let kind = self.kind()?;
        let endpoints = match &self.endpoints {
            Some(e) => checked_endpoints(e)?,
            None => Vec::new(),
        };
        let mut etcd = EtcdConfig {
            endpoints,
            discovery_srv: self.discovery_srv,
            key_file: self.key_file.map(PathBuf::from),
            cert_file: self.cert_file.map(PathBuf::from),
            ca_cert_file: self.ca_cert_file.map(PathBuf::from),
            username: self.etcd_username,
            password: self.etcd_password,
            ..EtcdConfig::default()
        };
        if etcd.endpoints.is_empty() && etcd.discovery_srv.is_none() {
            etcd.endpoints = vec![DEFAULT_ETCD_ENDPOINT.to_string()];
        }
        let api_group = self.api_group.as_deref().and_then(ApiGroup::from_setting);
        let kubernetes = KubeSettings {
            api_endpoint: self.k8s_api_endpoint,
            token: self.k8s_token,
            cert_file: self.k8s_cert_file.map(PathBuf::from),
            key_file: self.k8s_key_file.map(PathBuf::from),
            ca_file: self.k8s_ca_file.map(PathBuf::from),
            insecure_skip_tls_verify: self
                .k8s_insecure
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true") || v.trim() == "1"),
            in_cluster_server: ctx.in_cluster_server.clone(),
            service_account_dir: PathBuf::from(SERVICE_ACCOUNT_DIR),
            api_group,
        };
        // `$HOME/.kube/config` only when no other means is configured (as Calico).
        let kubeconfig = self.kubeconfig.map(PathBuf::from).or_else(|| {
            if kubernetes.api_endpoint.is_some() {
                return None;
            }
            let p = PathBuf::from(ctx.home.clone()?).join(".kube/config");
            p.is_file().then_some(p)
        });
        Ok(DatastoreSettings {
            kind,
            local_path: PathBuf::from(self.path.unwrap_or_else(|| DEFAULT_LOCAL_PATH.into())),
            etcd,
            kubeconfig,
            kubernetes,
        })
    }
}

/// Process facts that are not Calico settings but change defaults.
struct Context {
    home: Option<String>,
    in_cluster_server: Option<String>,
}

impl Context {
    fn new(plain_env: &dyn Fn(&str) -> Option<String>) -> Context {
        let host = non_empty(plain_env("KUBERNETES_SERVICE_HOST"));
        let port = non_empty(plain_env("KUBERNETES_SERVICE_PORT"));
        let in_cluster_server = match (host, port) {
            (Some(h), Some(p)) if h.contains(':') => Some(format!("https://[{h}]:{p}")),
            (Some(h), Some(p)) => Some(format!("https://{h}:{p}")),
            _ => None,
        };
        Context {
            home: non_empty(plain_env("HOME")),
            in_cluster_server,
        }
    }
}

/// `etcd_endpoints` split and checked: each entry a `host:port` or an `http(s)://host:port`
/// URL. A typo is a configuration error naming the key, not an unreachable datastore.
fn checked_endpoints(list: &str) -> Result<Vec<String>, DatastoreError> {
    let endpoints = parse_endpoints(list);
    for e in &endpoints {
        if let Err(why) = check_endpoint(e) {
            return Err(DatastoreError::InvalidEtcdEndpoint {
                list: list.to_string(),
                endpoint: e.clone(),
                reason: why,
            });
        }
    }
    Ok(endpoints)
}

fn check_endpoint(e: &str) -> Result<(), &'static str> {
    let rest = match e.split_once("://") {
        Some(("http" | "https", rest)) => rest,
        Some(_) => return Err("has a scheme other than http or https"),
        None => e,
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (addr, port) = v6.split_once(']').ok_or("has an unclosed '['")?;
            addr.parse::<std::net::Ipv6Addr>()
                .map_err(|_| "has an invalid IPv6 address")?;
            (addr, port.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if !host_ok {
        return Err("has no valid host");
    }
    match port {
        Some(p) if p.parse::<u16>().map_or(true, |p| p == 0) => Err("has an invalid port"),
        _ => Ok(()),
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
        let top = CiObject::from_value(conf).ok_or(DatastoreError::NotAnObject)?;
        let k8s = object(&top, "kubernetes")?;
        let policy = object(&top, "policy")?;
        let from_conf = Raw {
            kind: string(&top, "datastore_type")?,
            path: string(&top, "datastore_path")?,
            endpoints: string(&top, "etcd_endpoints")?,
            discovery_srv: string(&top, "etcd_discovery_srv")?,
            key_file: string(&top, "etcd_key_file")?,
            cert_file: string(&top, "etcd_cert_file")?,
            ca_cert_file: string(&top, "etcd_ca_cert_file")?,
            kubeconfig: string(&k8s, "kubeconfig")?,
            // Calico's pod lookups fall back to the older `policy.k8s_api_root`.
            k8s_api_endpoint: string(&k8s, "k8s_api_root")?.or(string(&policy, "k8s_api_root")?),
            k8s_token: string(&policy, "k8s_auth_token")?,
            k8s_cert_file: string(&policy, "k8s_client_certificate")?,
            k8s_key_file: string(&policy, "k8s_client_key")?,
            k8s_ca_file: string(&policy, "k8s_certificate_authority")?,
            k8s_insecure: None,
            etcd_username: None,
            etcd_password: None,
            api_group: string(&top, "calico_api_group")?,
        };
        let ctx = Context::new(&env);
        let env = env_lookup(env);
        from_conf.or(Raw::from_env(&env)).finish(&ctx)
    }

    /// From calicoctl's environment: `DATASTORE_TYPE`, `ETCD_ENDPOINTS`,
    /// `ETCD_DISCOVERY_SRV`, `ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`, `ETCD_KEY_FILE`,
    /// `KUBECONFIG`, `K8S_API_ENDPOINT`, `K8S_API_TOKEN`, `K8S_CERT_FILE`, `K8S_KEY_FILE`,
    /// `K8S_CA_FILE`, `K8S_INSECURE_SKIP_TLS_VERIFY`, `CALICO_API_GROUP` and our
    /// `DATASTORE_PATH` (each also accepted with a `CALICO_` prefix).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, DatastoreError> {
        let ctx = Context::new(&env);
        let env = env_lookup(env);
        Raw::from_env(&env).finish(&ctx)
    }

    /// A one-line description for logs and error messages (no secrets: paths only).
    pub fn describe(&self) -> String {
        match self.kind {
            DatastoreKind::Local => format!("local ({})", self.local_path.display()),
            DatastoreKind::Etcdv3 => match &self.etcd.discovery_srv {
                Some(d) if self.etcd.endpoints.is_empty() => format!("etcdv3 (SRV {d})"),
                _ => format!("etcdv3 ({})", self.etcd.endpoints.join(",")),
            },
            DatastoreKind::Kubernetes => {
                let via = match (
                    &self.kubeconfig,
                    &self.kubernetes.api_endpoint,
                    &self.kubernetes.in_cluster_server,
                ) {
                    (Some(k), _, _) => k.display().to_string(),
                    (None, Some(api), _) => api.clone(),
                    (None, None, Some(s)) => format!("in-cluster {s}"),
                    (None, None, None) => return "kubernetes".into(),
                };
                format!("kubernetes ({via})")
            }
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
    fn nothing_given_means_kubernetes_as_calico() {
        let s = DatastoreSettings::from_calico_config(&json!({"name":"n"}), env(&[])).unwrap();
        assert_eq!(s, DatastoreSettings::default());
        assert_eq!(s.kind, DatastoreKind::Kubernetes);
        assert_eq!(s.local_path, PathBuf::from("/var/lib/calico/ipam.db"));
        let s = DatastoreSettings::from_env(env(&[])).unwrap();
        assert_eq!(s.kind, DatastoreKind::Kubernetes);
    }

    #[test]
    fn etcd_endpoints_anywhere_mean_etcdv3() {
        let conf = json!({"etcd_endpoints": "http://10.0.0.1:2379"});
        let s = DatastoreSettings::from_calico_config(&conf, env(&[])).unwrap();
        assert_eq!(s.kind, DatastoreKind::Etcdv3);
        let s = DatastoreSettings::from_calico_config(
            &json!({}),
            env(&[("ETCD_ENDPOINTS", "http://10.0.0.1:2379")]),
        )
        .unwrap();
        assert_eq!(s.kind, DatastoreKind::Etcdv3);
        assert_eq!(s.etcd.endpoints, vec!["http://10.0.0.1:2379"]);
        let s = DatastoreSettings::from_env(env(&[("CALICO_ETCD_ENDPOINTS", "h:2379")])).unwrap();
        assert_eq!(s.kind, DatastoreKind::Etcdv3);
        // etcdv3 asked for without endpoints: calicoctl's local default.
        let s = DatastoreSettings::from_env(env(&[("DATASTORE_TYPE", "etcdv3")])).unwrap();
        assert_eq!(s.etcd.endpoints, vec![DEFAULT_ETCD_ENDPOINT]);
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
    fn calico_prefix_wins_as_envconfig() {
        let s = DatastoreSettings::from_env(env(&[
            ("DATASTORE_TYPE", "etcdv3"),
            ("CALICO_DATASTORE_TYPE", "local"),
        ]))
        .unwrap();
        assert_eq!(s.kind, DatastoreKind::Local);
    }

    #[test]
    fn kubernetes_connection_keys_and_variables() {
        let conf = json!({
            "kubernetes": {"k8s_api_root": "https://10.96.0.1:443"},
            "policy": {"type": "k8s", "k8s_auth_token": "s3cr3t-t0ken", "k8s_client_certificate": "/c",
                       "k8s_client_key": "/k", "k8s_certificate_authority": "/ca"},
            "calico_api_group": "projectcalico.org/v3"
        });
        let s = DatastoreSettings::from_calico_config(&conf, env(&[])).unwrap();
        let k = &s.kubernetes;
        assert_eq!(s.kind, DatastoreKind::Kubernetes);
        assert_eq!(k.api_endpoint.as_deref(), Some("https://10.96.0.1:443"));
        assert_eq!(k.token.as_deref(), Some("s3cr3t-t0ken"));
        assert_eq!(
            (
                k.cert_file.as_deref(),
                k.key_file.as_deref(),
                k.ca_file.as_deref()
            ),
            (
                Some(std::path::Path::new("/c")),
                Some(std::path::Path::new("/k")),
                Some(std::path::Path::new("/ca"))
            )
        );
        assert_eq!(k.api_group, Some(ApiGroup::V3));
        assert!(
            !format!("{s:?}").contains("s3cr3t"),
            "token kept out of logs"
        );
        assert_eq!(s.describe(), "kubernetes (https://10.96.0.1:443)");

        let s = DatastoreSettings::from_calico_config(
            &json!({"policy": {"k8s_api_root": "https://old/api/v1/"}}),
            env(&[
                ("K8S_API_TOKEN", "t2"),
                ("K8S_CA_FILE", "/ca2"),
                ("K8S_INSECURE_SKIP_TLS_VERIFY", "true"),
                ("CALICO_API_GROUP", "crd.projectcalico.org/v1"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.kubernetes.api_endpoint.as_deref(),
            Some("https://old/api/v1/")
        );
        assert_eq!(s.kubernetes.token.as_deref(), Some("t2"));
        assert!(s.kubernetes.insecure_skip_tls_verify);
        assert_eq!(s.kubernetes.api_group, Some(ApiGroup::CrdV1));
        let s = DatastoreSettings::from_env(env(&[("K8S_API_ENDPOINT", "http://127.0.0.1:8080")]))
            .unwrap();
        assert_eq!(
            s.kubernetes.api_endpoint.as_deref(),
            Some("http://127.0.0.1:8080")
        );
    }

    #[test]
    fn etcd_credentials_come_from_the_environment() {
        let s = DatastoreSettings::from_calico_config(
            &json!({"etcd_endpoints": "http://10.0.0.1:2379", "etcd_username": "ignored"}),
            env(&[
                ("CALICO_ETCD_USERNAME", "calico"),
                ("ETCD_PASSWORD", " pw "),
            ]),
        )
        .unwrap();
        assert_eq!(s.etcd.username.as_deref(), Some("calico"));
        assert_eq!(s.etcd.password.as_deref(), Some(" pw "), "kept verbatim");
        assert!(
            !format!("{s:?}").contains(" pw "),
            "password kept out of logs"
        );
    }

    #[test]
    fn calico_api_group_values_read_as_calico_reads_them() {
        let group = |conf: Value, vars: &[(&str, &str)]| {
            DatastoreSettings::from_calico_config(&conf, env(vars))
                .unwrap()
                .kubernetes
                .api_group
        };
        for (v, want) in [
            ("projectcalico.org/v3", Some(ApiGroup::V3)),
            (" ProjectCalico.org/V3 ", Some(ApiGroup::V3)),
            ("crd.projectcalico.org/v1", Some(ApiGroup::CrdV1)),
            // Unrecognised: Calico's fallback, not an error.
            ("projectcalico.org", Some(ApiGroup::CrdV1)),
            ("example.org/v9", Some(ApiGroup::CrdV1)),
            // Empty (the installer's unset placeholder): discover.
            ("", None),
        ] {
            assert_eq!(group(json!({"calico_api_group": v}), &[]), want, "{v:?}");
        }
        assert_eq!(group(json!({}), &[]), None);
        assert_eq!(
            group(
                json!({"calico_api_group": ""}),
                &[("CALICO_API_GROUP", "projectcalico.org/v3")]
            ),
            Some(ApiGroup::V3),
            "an empty key defers to the environment"
        );
        assert_eq!(
            group(json!({}), &[("CALICO_API_GROUP", "projectcalico.org/v3")]),
            Some(ApiGroup::V3)
        );
    }

    #[test]
    fn in_cluster_service_account() {
        let vars = [
            ("KUBERNETES_SERVICE_HOST", "fd00::1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
        ];
        let s = DatastoreSettings::from_calico_config(&json!({}), env(&vars)).unwrap();
        assert_eq!(
            s.kubernetes.in_cluster_server.as_deref(),
            Some("https://[fd00::1]:443")
        );
        assert_eq!(
            s.kubernetes.service_account_dir,
            PathBuf::from(SERVICE_ACCOUNT_DIR)
        );
        assert_eq!(
            s.describe(),
            "kubernetes (in-cluster https://[fd00::1]:443)"
        );
    }

    #[test]
    fn bad_values_are_config_errors_naming_the_key() {
        for (conf, field) in [
            (json!({"datastore_type": "consul"}), "datastore_type"),
            (json!({"datastore_type": 3}), "datastore_type"),
            (json!({"etcd_endpoints": ["a"]}), "etcd_endpoints"),
            (json!({"etcd_endpoints": 1}), "etcd_endpoints"),
            (json!({"etcd_endpoints": "http://a:b"}), "etcd_endpoints"),
            (json!({"etcd_endpoints": "ftp://a:1"}), "etcd_endpoints"),
            (
                json!({"etcd_endpoints": "http://[::1:2379"}),
                "etcd_endpoints",
            ),
            (json!({"etcd_endpoints": "http:// :2379"}), "etcd_endpoints"),
            (json!({"kubernetes": "x"}), "kubernetes"),
            (json!({"policy": 1}), "policy"),
        ] {
            let e = DatastoreSettings::from_calico_config(&conf, env(&[])).unwrap_err();
            assert_eq!(
                cni::CniCode::cni_code(&e),
                cni::ErrorCode::InvalidConfig,
                "{conf}: {e:?}"
            );
            assert!(e.to_string().contains(field), "{conf}: {e}");
        }
        assert!(DatastoreSettings::from_calico_config(&json!([1]), env(&[])).is_err());
        for ok in [
            "127.0.0.1:2379",
            "http://[fd00::1]:2379",
            "https://etcd-0.etcd:2379/",
            "http://etcd",
        ] {
            DatastoreSettings::from_calico_config(&json!({ "etcd_endpoints": ok }), env(&[]))
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn calicoctl_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".kube")).unwrap();
        std::fs::write(dir.path().join(".kube/config"), "{}").unwrap();
        let home = dir.path().to_str().unwrap();
        let s = DatastoreSettings::from_env(env(&[("HOME", home)])).unwrap();
        assert_eq!(s.kind, DatastoreKind::Kubernetes);
        assert_eq!(s.kubeconfig, Some(dir.path().join(".kube/config")));
        // An API endpoint is "another means": no $HOME default then (as Calico).
        let s = DatastoreSettings::from_env(env(&[
            ("HOME", home),
            ("K8S_API_ENDPOINT", "http://127.0.0.1:1"),
        ]))
        .unwrap();
        assert_eq!(s.kubeconfig, None);
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
        let s = DatastoreSettings::from_env(env(&[
            ("DATASTORE_TYPE", "etcdv3"),
            ("ETCD_DISCOVERY_SRV", "example.test"),
        ]))
        .unwrap();
        assert!(
            s.etcd.endpoints.is_empty(),
            "SRV replaces the default endpoint"
        );
    }
}
