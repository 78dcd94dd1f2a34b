//! The kube-rs client on a private current-thread runtime, with timeouts and error
//! classification into [`StoreError`].

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use ipam::StoreError;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Client timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP + TLS connect.
    pub connect: Duration,
    /// Waiting for a response.
    pub read: Duration,
    /// Whole call (an upper bound even if the server trickles bytes).
    pub call: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        // The CNI call has ~90 s in total and retries writes; one stuck request must not eat it.
        Timeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(10),
            call: Duration::from_secs(15),
        }
    }
}

/// A client plus the runtime that drives it (kube needs tokio; the store API is synchronous).
pub struct Kube {
    rt: tokio::runtime::Runtime,
    pub client: Client,
    call_timeout: Duration,
    /// End of the whole plugin call: no API call runs past it.
    pub deadline: Option<Instant>,
}

impl Kube {
    /// From a kubeconfig file (current context).
    pub fn from_kubeconfig(path: &Path, t: Timeouts) -> Result<Self, StoreError> {
        let kc = Kubeconfig::read_from(path).map_err(|e| {
            StoreError::Other(format!("reading kubeconfig {}: {e}", path.display()))
        })?;
        Self::from_kubeconfig_value(kc, &path.display().to_string(), t)
    }

    /// From a kubeconfig already in memory (current context); `origin` names it in errors.
    pub fn from_kubeconfig_value(
        kc: Kubeconfig,
        origin: &str,
        t: Timeouts,
    ) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Other(format!("starting the client runtime: {e}")))?;
        let config = rt
            .block_on(Config::from_custom_kubeconfig(
                kc,
                &KubeConfigOptions::default(),
            ))
            .map_err(|e| StoreError::Other(format!("kubeconfig {origin}: {e}")))?;
        Self::with_runtime(rt, config, t)
    }

    /// From a ready client configuration.
    pub fn from_config(config: Config, t: Timeouts) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Other(format!("starting the client runtime: {e}")))?;
        Self::with_runtime(rt, config, t)
    }

    fn with_runtime(
        rt: tokio::runtime::Runtime,
        mut config: Config,
        t: Timeouts,
    ) -> Result<Self, StoreError> {
        config.connect_timeout = Some(t.connect);
        config.read_timeout = Some(t.read);
        config.write_timeout = Some(t.read);
        // The client spawns its request buffer on the current runtime: build it inside.
        let client = rt
            .block_on(async { Client::try_from(config) })
            .map_err(|e| StoreError::Other(format!("building the Kubernetes client: {e}")))?;
        Ok(Kube {
            rt,
            client,
            call_timeout: t.call,
            deadline: None,
        })
    }

    /// Run one API call to completion, bounded by the call timeout.
    pub fn run<T, F>(&self, what: &str, fut: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, kube::Error>>,
    {
        let budget = match self.deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(StoreError::Unavailable(format!(
                        "{what}: the plugin call's deadline has passed"
                    )));
                }
                left.min(self.call_timeout)
            }
            None => self.call_timeout,
        };
        match self
            .rt
            .block_on(async { tokio::time::timeout(budget, fut).await })
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(what, e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "{what}: timed out after {budget:?}"
            ))),
        }
    }
}

/// Map a client error onto the store's classes: 404/409 are the CAS outcomes, throttling and
/// server-side unavailability are "try again later", transport failures are unavailability.
pub fn classify(what: &str, e: kube::Error) -> StoreError {
    match e {
        kube::Error::Api(s) => {
            let msg = format!("{what}: {} ({})", s.message, s.code);
            match (s.code, s.reason.as_str()) {
                (404, _) => StoreError::NotFound(msg),
                (409, "AlreadyExists") => StoreError::AlreadyExists(msg),
                (409, _) => StoreError::Conflict(msg),
                (429 | 500 | 502 | 503 | 504, _) => StoreError::Unavailable(msg),
                _ => StoreError::Other(msg),
            }
        }
        kube::Error::SerdeError(e) => StoreError::Other(format!("{what}: bad response: {e}")),
        kube::Error::BuildRequest(e) => StoreError::Other(format!("{what}: {e}")),
        other => StoreError::Unavailable(format!("{what}: {other}")),
    }
}
