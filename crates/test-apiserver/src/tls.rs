//! Generated PKI: a CA, a server certificate for `127.0.0.1`/`localhost`, and a client
//! certificate (for client-cert auth); plus the rustls server config.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::Error;

/// PEM material handed to clients, and the server's TLS config.
pub struct Pki {
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub server_config: Arc<ServerConfig>,
}

fn tls(e: impl std::fmt::Display) -> Error {
    Error::Tls(e.to_string())
}

pub fn generate() -> Result<Pki, Error> {
    let ca_key = KeyPair::generate().map_err(tls)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test-apiserver-ca");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(tls)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = |sans: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().map_err(tls)?;
        let mut p = CertificateParams::new(sans).map_err(tls)?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        let cert = p.signed_by(&key, &issuer).map_err(tls)?;
        Ok::<_, Error>((cert, key))
    };
    let (srv_cert, srv_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        "test-apiserver",
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let (cli_cert, cli_key) = leaf(
        Vec::new(),
        "system:node:test",
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(ca_cert.der().clone()).map_err(tls)?;
    // Client certificates are optional (bearer tokens are the usual way) but verified when sent.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(tls)?;
    let chain: Vec<CertificateDer<'static>> = vec![srv_cert.der().clone(), ca_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(srv_key.serialize_der()));
    let server_config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(tls)?;
    Ok(Pki {
        ca_pem: ca_cert.pem(),
        client_cert_pem: cli_cert.pem(),
        client_key_pem: cli_key.serialize_pem(),
        server_config: Arc::new(server_config),
    })
}
