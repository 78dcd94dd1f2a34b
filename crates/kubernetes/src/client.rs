//! The client: kubeconfig + Calico's overrides → a kube-rs client on a private current-thread
//! runtime, with connect and per-request deadlines so an unreachable API server fails fast
//! instead of hanging a pod's sandbox creation.

use crate::error::{chain, Error};
use kube::config::{
    AuthInfo, Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster,
    NamedContext,
};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// TCP + TLS connect deadline.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-request deadline (kube-rs has none by default).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the client comes from: Calico's `kubernetes` and `policy` config keys.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `kubernetes.kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `kubernetes.k8s_api_root`, else `policy.k8s_api_root` (anything from `/api/` on is
    /// dropped, as Calico does for old configs).
    pub api_root: Option<String>,
    /// `policy.k8s_auth_token`.
    pub token: Option<String>,
    /// `policy.k8s_client_certificate` / `policy.k8s_client_key` (paths).
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// `policy.k8s_certificate_authority` (path).
    pub certificate_authority: Option<PathBuf>,
    /// `K8S_INSECURE_SKIP_TLS_VERIFY`.
    pub insecure_skip_tls_verify: bool,
    /// The pod's own service account, used when neither a kubeconfig nor an API root is given
    /// (client-go's in-cluster fallback).
    pub in_cluster: Option<InCluster>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            kubeconfig: None,
            api_root: None,
            token: None,
            client_certificate: None,
            client_key: None,
            certificate_authority: None,
            insecure_skip_tls_verify: false,
            in_cluster: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// In-cluster configuration: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`
/// with the service account's `token` and `ca.crt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InCluster {
    pub server: String,
    /// Normally `/var/run/secrets/kubernetes.io/serviceaccount`.
    pub service_account_dir: PathBuf,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl ClientOptions {
    /// True when there is something to build a client from.
    pub fn is_configured(&self) -> bool {
        self.kubeconfig.is_some()
            || non_empty(&self.api_root).is_some()
            || self.in_cluster.is_some()
    }

    /// The kubeconfig with the overrides applied to its current context's cluster and user,
    /// or a one-context kubeconfig made of the overrides alone (or of the in-cluster service
    /// account when nothing else names a server).
    pub fn to_kubeconfig(&self) -> Result<Kubeconfig, Error> {
        let mut kc = match &self.kubeconfig {
            Some(path) => Kubeconfig::read_from(path).map_err(|e| {
                Error::Config(format!("kubeconfig {}: {}", path.display(), chain(&e)))
            })?,
            None => Kubeconfig::default(),
        };
        let ctx_name = match kc.current_context.clone().filter(|c| !c.is_empty()) {
            Some(c) => c,
            None if kc.contexts.len() == 1 => kc.contexts[0].name.clone(),
            None if kc.contexts.is_empty() => {
                kc.contexts.push(NamedContext {
                    name: "cni".into(),
                    context: Some(Context {
                        cluster: "cni".into(),
                        user: Some("cni".into()),
                        ..Default::default()
                    }),
                    other: Default::default(),
                });
                "cni".into()
            }
            None => {
                return Err(Error::Config(
                    "kubeconfig has several contexts and no current-context".into(),
                ))
            }
        };
        kc.current_context = Some(ctx_name.clone());
        let ctx = kc
            .contexts
            .iter()
            .find(|c| c.name == ctx_name)
            .and_then(|c| c.context.clone())
            .ok_or_else(|| Error::Config(format!("kubeconfig has no context {ctx_name:?}")))?;
        let user_name = ctx.user.clone().unwrap_or_else(|| "cni".into());
        if let Some(c) = kc.contexts.iter_mut().find(|c| c.name == ctx_name) {
            if let Some(inner) = c.context.as_mut() {
                inner.user = Some(user_name.clone());
            }
        }

        if !kc.clusters.iter().any(|c| c.name == ctx.cluster) {
            kc.clusters.push(NamedCluster {
                name: ctx.cluster.clone(),
                cluster: Some(Cluster::default()),
                other: Default::default(),
            });
        }
        let cluster = kc
            .clusters
            .iter_mut()
            .find(|c| c.name == ctx.cluster)
            .expect("inserted above")
            .cluster
            .get_or_insert_with(Cluster::default);
        let in_cluster = match &self.in_cluster {
            Some(ic) if self.kubeconfig.is_none() && non_empty(&self.api_root).is_none() => {
                Some(ic)
            }
            _ => None,
        };
        if let Some(root) = non_empty(&self.api_root) {
            // Old configs carried the full `https://host:6443/api/v1/` URL.
            let root = root.split("/api/").next().unwrap_or(root);
            cluster.server = Some(root.trim_end_matches('/').to_string());
        }
        if let Some(ic) = in_cluster {
            cluster.server = Some(ic.server.clone());
            cluster.certificate_authority =
                Some(ic.service_account_dir.join("ca.crt").display().to_string());
        }
        if self.insecure_skip_tls_verify {
            cluster.insecure_skip_tls_verify = Some(true);
        }
        if let Some(ca) = &self.certificate_authority {
            cluster.certificate_authority = Some(ca.display().to_string());
            cluster.certificate_authority_data = None;
        }

        if !kc.auth_infos.iter().any(|a| a.name == user_name) {
            kc.auth_infos.push(NamedAuthInfo {
                name: user_name.clone(),
                auth_info: Some(AuthInfo::default()),
                other: Default::default(),
            });
        }
        let user = kc
            .auth_infos
            .iter_mut()
            .find(|a| a.name == user_name)
            .expect("inserted above")
            .auth_info
            .get_or_insert_with(AuthInfo::default);
        if let Some(ic) = in_cluster {
            // A file, not its contents: kube-rs re-reads projected tokens when they rotate.
            user.token_file = Some(ic.service_account_dir.join("token").display().to_string());
        }
        if let Some(token) = non_empty(&self.token) {
            user.token = Some(token.to_string().into());
            user.token_file = None;
        }
        if let Some(cert) = &self.client_certificate {
            user.client_certificate = Some(cert.display().to_string());
            user.client_certificate_data = None;
        }
        if let Some(key) = &self.client_key {
            user.client_key = Some(key.display().to_string());
            user.client_key_data = None;
        }
        Ok(kc)
    }
}

/// A connected client. Cheap calls are `block_on` on its own current-thread runtime.
pub struct Client {
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
    request_timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds the client; no request is made yet.
    pub fn connect(opts: &ClientOptions) -> Result<Client, Error> {
        if !opts.is_configured() {
            return Err(Error::Config(
                "neither kubernetes.kubeconfig nor a k8s_api_root is configured, and not running in a cluster".into(),
            ));
        }
        let kubeconfig = opts.to_kubeconfig()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("cannot start the I/O runtime: {e}")))?;
        let mut config = runtime
            .block_on(kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &KubeConfigOptions::default(),
            ))
            .map_err(|e| Error::Config(chain(&e)))?;
        config.connect_timeout = Some(opts.connect_timeout);
        config.read_timeout = Some(opts.request_timeout);
        config.write_timeout = Some(opts.request_timeout);
        // Measure the read deadline from the request, not from when a pooled connection idled.
        config.reset_reader_on_write = true;
        // The client's tower stack spawns its buffer task: it must be built inside the runtime.
        let client = {
            let _guard = runtime.enter();
            kube::Client::try_from(config).map_err(|e| Error::Config(chain(&e)))?
        };
        Ok(Client {
            runtime,
            client,
            request_timeout: opts.request_timeout,
        })
    }

    /// The kube-rs client, for callers with their own resource types (e.g. Calico's CRDs).
    /// Use it only inside [`Client::block_on`].
    pub fn kube(&self) -> &kube::Client {
        &self.client
    }

    /// Runs a future on this client's runtime, on the calling thread.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Runs one API call with the whole-request deadline; `kind`/`name` label errors.
    pub(crate) fn call<T>(
        &self,
        kind: &'static str,
        name: &str,
        f: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, Error> {
        let deadline = self.request_timeout;
        self.runtime
            .block_on(async { tokio::time::timeout(deadline, f).await })
            .map_err(|_| {
                Error::Unavailable(format!(
                    "no answer for {kind} {name:?} within {}s",
                    deadline.as_secs()
                ))
            })?
            .map_err(|e| Error::from_kube(e, kind, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: Zm9v
users:
- name: calico-cni
  user:
    token: from-file
contexts:
- name: calico-context
  context:
    cluster: local
    user: calico-cni
current-context: calico-context
"#;

    fn write(dir: &tempfile::TempDir) -> PathBuf {
        let p = dir.path().join("calico-kubeconfig");
        std::fs::write(&p, KUBECONFIG).unwrap();
        p
    }

    #[test]
    fn overrides_replace_the_current_context_values() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ClientOptions {
            kubeconfig: Some(write(&dir)),
            api_root: Some("https://10.0.0.1:443/api/v1/".into()),
            token: Some("override".into()),
            certificate_authority: Some("/etc/ca.pem".into()),
            ..Default::default()
        };
        let kc = opts.to_kubeconfig().unwrap();
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://10.0.0.1:443"));
        assert_eq!(
            cluster.certificate_authority.as_deref(),
            Some("/etc/ca.pem")
        );
        assert!(cluster.certificate_authority_data.is_none());
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        // The token is a secret type without a comparable value; the override must replace the
        // file's token and disable any token file.
        assert!(user.token.is_some());
        assert!(user.token_file.is_none());
    }

    #[test]
    fn kubeconfig_values_kept_without_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ClientOptions {
            kubeconfig: Some(write(&dir)),
            ..Default::default()
        };
        let kc = opts.to_kubeconfig().unwrap();
        assert_eq!(
            kc.clusters[0].cluster.as_ref().unwrap().server.as_deref(),
            Some("https://127.0.0.1:6443")
        );
    }

    #[test]
    fn api_root_alone_is_enough() {
        let opts = ClientOptions {
            api_root: Some("http://127.0.0.1:8080".into()),
            token: Some("t".into()),
            ..Default::default()
        };
        let kc = opts.to_kubeconfig().unwrap();
        assert_eq!(kc.current_context.as_deref(), Some("cni"));
        assert_eq!(
            kc.clusters[0].cluster.as_ref().unwrap().server.as_deref(),
            Some("http://127.0.0.1:8080")
        );
        Client::connect(&opts).unwrap();
    }

    #[test]
    fn in_cluster_service_account_when_nothing_else_is_given() {
        let ic = InCluster {
            server: "https://10.96.0.1:443".into(),
            service_account_dir: "/sa".into(),
        };
        let opts = ClientOptions {
            in_cluster: Some(ic.clone()),
            ..Default::default()
        };
        assert!(opts.is_configured());
        let kc = opts.to_kubeconfig().unwrap();
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://10.96.0.1:443"));
        assert_eq!(cluster.certificate_authority.as_deref(), Some("/sa/ca.crt"));
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(user.token_file.as_deref(), Some("/sa/token"));
        // An explicit API root wins over the in-cluster fallback.
        let opts = ClientOptions {
            api_root: Some("http://127.0.0.1:8080".into()),
            in_cluster: Some(ic),
            ..Default::default()
        };
        let kc = opts.to_kubeconfig().unwrap();
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(cluster.certificate_authority, None);
    }

    #[test]
    fn missing_configuration_is_a_config_error() {
        let e = Client::connect(&ClientOptions::default()).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");
        let e = Client::connect(&ClientOptions {
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/kubeconfig"), "{e}");
        assert!(!e.is_transient());
    }

    #[test]
    fn refused_connection_is_transient_and_fast() {
        // Bind then drop a listener: nothing listens on that port afterwards.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Client::connect(&ClientOptions {
            api_root: Some(format!("http://127.0.0.1:{port}")),
            ..Default::default()
        })
        .unwrap();
        let started = std::time::Instant::now();
        let e = client.node("n1").unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn silent_server_hits_the_request_deadline() {
        // Accepts connections but never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = Client::connect(&ClientOptions {
            api_root: Some(format!("http://127.0.0.1:{port}")),
            request_timeout: Duration::from_millis(500),
            ..Default::default()
        })
        .unwrap();
        let started = std::time::Instant::now();
        let e = client.pod("default", "p").unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        drop(listener);
    }
}
