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
    let identity = identity.map(|id| format!("{}{}", id.cert_pem, id.key_pem));
    client_from_pem(&ca.cert_pem(), identity.as_deref())
}

/// The client of a kubeconfig rkube-pki wrote: it trusts the kubeconfig's CA and presents
/// its user's client certificate.
///
/// # Errors
/// When the file cannot be read or lacks the certificate data.
pub fn kubeconfig_client(path: &Path) -> anyhow::Result<reqwest::Client> {
    use anyhow::Context;
    use base64::Engine;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config: serde_json::Value = serde_yaml_ng::from_str(&text).context("a kubeconfig")?;
    let data = |pointer: &str| -> anyhow::Result<String> {
        let encoded = config.pointer(pointer).and_then(|v| v.as_str()).with_context(|| format!("no {pointer}"))?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded)?;
        Ok(String::from_utf8(bytes)?)
    };
    let ca = data("/clusters/0/cluster/certificate-authority-data")?;
    let identity =
        format!("{}{}", data("/users/0/user/client-certificate-data")?, data("/users/0/user/client-key-data")?);
    Ok(client_from_pem(&ca, Some(&identity)))
}

/// A client trusting only `ca_pem`, presenting `identity_pem` (certificate then key) if any.
pub fn client_from_pem(ca_pem: &str, identity_pem: Option<&str>) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA certificate");
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .timeout(Duration::from_secs(10));
    if let Some(pem) = identity_pem {
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
