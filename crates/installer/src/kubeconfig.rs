//! The kubeconfig the calico plugin uses to reach the API server, built from the installer's
//! own in-cluster service account (token + CA) and `KUBERNETES_SERVICE_HOST`/`PORT`.

use crate::error::InstallError;
use base64::Engine;
use std::io;
use std::path::Path;

/// A service-account mount: `token` and (optionally) `ca.crt`.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    pub token: String,
    pub ca: Option<Vec<u8>>,
}

/// Reads `<dir>/token` and `<dir>/ca.crt`. `Ok(None)` when there is no token (not in a cluster).
pub fn read_service_account(dir: &Path) -> Result<Option<ServiceAccount>, InstallError> {
    let bad = |reason: &str| InstallError::ServiceAccount {
        dir: dir.to_path_buf(),
        reason: reason.into(),
    };
    let token_path = dir.join("token");
    let token = match std::fs::read_to_string(&token_path) {
        Ok(t) => t.trim().to_string(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(InstallError::io("read", &token_path)(e)),
    };
    // The token lands in YAML and JSON unescaped; a real token is base64url + dots.
    if token.is_empty() {
        return Err(bad("token file is empty"));
    }
    if !token
        .bytes()
        .all(|c| c.is_ascii_graphic() && c != b'"' && c != b'\\')
    {
        return Err(bad(
            "token contains whitespace, quotes or non-ASCII characters",
        ));
    }
    let ca_path = dir.join("ca.crt");
    let ca = match std::fs::read(&ca_path) {
        Ok(c) => Some(c),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(InstallError::io("read", &ca_path)(e)),
    };
    Ok(Some(ServiceAccount { token, ca }))
}

/// `protocol://host:port`, brackets around an IPv6 literal (Calico brackets every host, which
/// is not a valid URL for IPv4 addresses or names in most non-Go clients).
pub fn server_url(protocol: &str, host: &str, port: &str) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.contains(':') {
        format!("{protocol}://[{host}]:{port}")
    } else {
        format!("{protocol}://{host}:{port}")
    }
}

/// Renders the kubeconfig (same layout and names as Calico's: cluster `local`, user `calico`,
/// context `calico-context`). Without a CA, `skip_tls_verify` must be set.
pub fn render(
    server: &str,
    sa: &ServiceAccount,
    skip_tls_verify: bool,
    dir: &Path,
) -> Result<String, InstallError> {
    let tls = if skip_tls_verify {
        "insecure-skip-tls-verify: true".to_string()
    } else {
        let ca = sa.ca.as_ref().ok_or_else(|| InstallError::ServiceAccount {
            dir: dir.to_path_buf(),
            reason: "ca.crt is missing (set SKIP_TLS_VERIFY=true to write a kubeconfig without it)"
                .into(),
        })?;
        format!(
            "certificate-authority-data: {}",
            base64::engine::general_purpose::STANDARD.encode(ca)
        )
    };
    Ok(format!(
        "# Kubeconfig file for Calico CNI plugin. Installed by install-cni.\n\
         apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: local\n  cluster:\n    server: {server}\n    {tls}\n\
         users:\n\
         - name: calico\n  user:\n    token: {token}\n\
         contexts:\n\
         - name: calico-context\n  context:\n    cluster: local\n    user: calico\n\
         current-context: calico-context\n",
        token = sa.token
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_only_ipv6() {
        assert_eq!(
            server_url("https", "10.96.0.1", "443"),
            "https://10.96.0.1:443"
        );
        assert_eq!(
            server_url("https", "fd00::1", "6443"),
            "https://[fd00::1]:6443"
        );
        assert_eq!(
            server_url("https", "[fd00::1]", "6443"),
            "https://[fd00::1]:6443"
        );
        assert_eq!(server_url("http", "api.local", "80"), "http://api.local:80");
    }

    #[test]
    fn no_ca_needs_skip_verify() {
        let sa = ServiceAccount {
            token: "t".into(),
            ca: None,
        };
        assert!(render("https://x:1", &sa, false, Path::new("/sa")).is_err());
        let k = render("https://x:1", &sa, true, Path::new("/sa")).unwrap();
        assert!(k.contains("    insecure-skip-tls-verify: true\n"), "{k}");
    }
}
