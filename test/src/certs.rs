//! Certificates for the TLS tests: an HTTPS client that trusts a test CA and presents a
//! client certificate, and PEM files written where the binaries' flags can name them.

use std::path::Path;
use std::time::Duration;

use rkube_pki::{Ca, KeyedCertificate};

/// A client that trusts `ca` (only it) and presents `identity`, if any.
///
/// # Panics
/// When the PEM texts do not parse (they come from rkube-pki).
pub fn https_client(ca: &Ca, identity: Option<&KeyedCertificate>) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).expect("CA certificate");
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .timeout(Duration::from_secs(10));
    if let Some(identity) = identity {
        let pem = format!("{}{}", identity.cert_pem, identity.key_pem);
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    builder.build().expect("client")
}

/// Writes `text` to `dir/name` and returns the path as a flag value.
///
/// # Panics
/// When the file cannot be written.
pub fn write_pem(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a certificate file");
    path.display().to_string()
}
