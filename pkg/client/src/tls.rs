//! The TLS configuration of a [`Config`] as a rustls `ClientConfig`, for connections the HTTP
//! client does not make itself: the WebSockets of exec, attach and port forwarding.
//!
//! It trusts what the HTTP client trusts (the kubeconfig's CA bundle, else the public web
//! roots), presents the same client certificate, and with `insecure-skip-tls-verify` checks
//! nothing about the server's certificate (signatures still have to verify, so the handshake
//! is real).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::config::Config;
use crate::error::{Error, Result};

/// The rustls configuration for `config`'s server: `None` for a plain `http://` server.
///
/// # Errors
/// When the certificates or key are not PEM, or rustls refuses them.
pub fn rustls_config(config: &Config) -> Result<Option<Arc<rustls::ClientConfig>>> {
    if config.cluster_url.scheme_str() != Some("https") {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let refused = |what: &str, e: &dyn std::fmt::Display| Error::Config(format!("{what}: {e}"));
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| refused("TLS", &e))?;
    let builder = if config.insecure_skip_tls_verify {
        let verifier = AnyServerCertificate { algorithms: provider.signature_verification_algorithms };
        builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier))
    } else {
        let mut roots = RootCertStore::empty();
        match &config.root_cert {
            Some(bundle) => {
                for cert in CertificateDer::pem_slice_iter(bundle) {
                    let cert = cert.map_err(|e| refused("certificate-authority", &e))?;
                    roots.add(cert).map_err(|e| refused("certificate-authority", &e))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&config.client_cert, &config.client_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| refused("client-certificate", &e))?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| refused("client-key", &e))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| refused("client-certificate and client-key", &e))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

/// `insecure-skip-tls-verify`: any certificate is taken; the handshake's signatures are still
/// checked.
#[derive(Debug)]
struct AnyServerCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
