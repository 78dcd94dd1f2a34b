//! TLS options from Calico's `etcd_ca_cert_file` / `etcd_cert_file` / `etcd_key_file`.

use etcd_client::{Certificate, Identity, TlsOptions};

use crate::config::EtcdConfig;
use crate::error::EtcdError;

fn read(what: &str, path: &std::path::Path) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path)
        .map_err(|e| EtcdError::Config(format!("cannot read {what} {}: {e}", path.display())))
}

/// TLS settings for https endpoints: the CA file (or the system roots when absent) and,
/// when both are given, the client certificate and key. A lone cert or key is an error
/// rather than a silent fallback to server-only TLS.
pub(crate) fn tls_options(cfg: &EtcdConfig) -> Result<TlsOptions, EtcdError> {
    let mut tls = TlsOptions::new();
    tls = match &cfg.ca_cert_file {
        Some(ca) => tls.ca_certificate(Certificate::from_pem(read("etcd_ca_cert_file", ca)?)),
        None => tls.with_native_roots(),
    };
    match (&cfg.cert_file, &cfg.key_file) {
        (Some(cert), Some(key)) => {
            let cert = read("etcd_cert_file", cert)?;
            let key = read("etcd_key_file", key)?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        (None, None) => {}
        _ => {
            return Err(EtcdError::Config(
                "etcd_cert_file and etcd_key_file must be given together".into(),
            ))
        }
    }
    Ok(tls)
}
