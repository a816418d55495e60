//! TLS for rkube's servers: a serving certificate (`--tls-cert-file`,
//! `--tls-private-key-file`) and, with `--client-ca-file`, client certificates signed by
//! that CA as a way to authenticate (Kubernetes' x509 authenticator: the subject's common
//! name is the user, its organizations are the groups).
//!
//! rustls with the ring provider; HTTP/2 and HTTP/1.1 offered by ALPN. A client that
//! presents no certificate is still served (it may carry a token, or be anonymous); one
//! whose certificate the CA did not sign fails the handshake.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ClientIdentity;

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// rustls refused the certificates or key.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA could not make a verifier.
    #[error("--client-ca-file: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

fn file_error(path: &Path, why: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.display().to_string(), why: why.to_string() }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The server configuration from PEM files: the serving certificate chain and key, and
/// the CA that signs client certificates, if any.
///
/// # Errors
/// When a file cannot be read or parsed, or rustls refuses what it holds.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| file_error(key_file, e))?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider)).with_safe_default_protocol_versions()?;
    let builder = match client_ca_file {
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca_file)? {
                roots.add(cert).map_err(|e| file_error(ca_file, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration that trusts the CA bundle `ca_file` (only it) and presents the
/// certificate `cert_file` with its key `key_file` (how the apiserver reaches kubelets).
///
/// # Errors
/// When a file cannot be read or parsed, or rustls refuses what it holds.
pub fn client_config(ca_file: &Path, cert_file: &Path, key_file: &Path) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_file)? {
        roots.add(cert).map_err(|e| file_error(ca_file, e))?;
    }
    let chain = certificates(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| file_error(key_file, e))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// The identity a verified client certificate names: its subject's common name and
/// organizations; `None` without a common name.
pub fn certificate_identity(cert: &CertificateDer<'_>) -> Option<ClientIdentity> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let common_name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    if common_name.is_empty() {
        return None;
    }
    let organizations = subject.iter_organization().filter_map(|o| o.as_str().ok()).map(String::from).collect();
    Some(ClientIdentity { common_name, organizations })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_certificate_names_its_user_and_groups() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, "system:node:worker-1");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:nodes");
        let cert = params.self_signed(&key).expect("certificate");
        let identity = certificate_identity(cert.der()).expect("an identity");
        assert_eq!(identity.common_name, "system:node:worker-1");
        assert_eq!(identity.organizations, vec!["system:nodes"]);
    }

    #[test]
    fn unreadable_files_are_named() {
        let missing = Path::new("/nonexistent/apiserver.crt");
        let error = server_config(missing, missing, None).expect_err("no such file");
        assert!(error.to_string().starts_with("/nonexistent/apiserver.crt:"), "{error}");
    }
}
