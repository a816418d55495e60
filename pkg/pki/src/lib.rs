//! A cluster's certificates, as kubeadm makes them: one CA, a serving certificate for the
//! apiserver with every name and address clients use, and client certificates whose
//! subject is the identity Kubernetes reads from them (common name = user, organizations =
//! groups: `kubernetes-admin` in `system:masters`, `system:node:<name>` in
//! `system:nodes`); and kubeconfigs that carry them.
//!
//! Keys are ECDSA P-256 (rcgen with ring; no openssl). The CA is valid for ten years and
//! what it signs for one, as kubeadm's defaults.

pub mod cluster;

use std::net::IpAddr;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
#[error("making a certificate: {0}")]
pub struct PkiError(#[from] rcgen::Error);

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedCertificate {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

/// A certificate authority that signs the cluster's certificates.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for clocks a little behind this one.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

impl Ca {
    /// A new CA named `common_name` (e.g. `rkube-ca`) with a new key.
    ///
    /// # Errors
    /// When key generation or signing fails.
    pub fn new(common_name: &str) -> Result<Ca, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity(&mut params, 3650);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Ca { issuer })
    }

    /// The CA's certificate (what clients and servers trust).
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        usages: &[ExtendedKeyUsagePurpose],
    ) -> Result<KeyedCertificate, PkiError> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = usages.to_vec();
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, 365);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(KeyedCertificate { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// A serving certificate for `common_name`, valid for the DNS `names` and `addresses`.
    ///
    /// # Errors
    /// When a name is not a valid DNS name, or signing fails.
    pub fn serving(
        &self,
        common_name: &str,
        names: &[&str],
        addresses: &[IpAddr],
    ) -> Result<KeyedCertificate, PkiError> {
        let mut params = CertificateParams::new(names.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        params.subject_alt_names.extend(addresses.iter().map(|ip| SanType::IpAddress(*ip)));
        params.distinguished_name.push(DnType::CommonName, common_name);
        self.sign(params, &[ExtendedKeyUsagePurpose::ServerAuth])
    }

    /// A certificate that both serves and authenticates as a client, for `common_name`, valid
    /// for the DNS `names` and `addresses`: what etcd members present to each other (kubeadm's
    /// `etcd/peer`), since each one dials the others and answers them.
    ///
    /// # Errors
    /// When a name is not a valid DNS name, or signing fails.
    pub fn peer(&self, common_name: &str, names: &[&str], addresses: &[IpAddr]) -> Result<KeyedCertificate, PkiError> {
        let mut params = CertificateParams::new(names.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        params.subject_alt_names.extend(addresses.iter().map(|ip| SanType::IpAddress(*ip)));
        params.distinguished_name.push(DnType::CommonName, common_name);
        self.sign(params, &[ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth])
    }

    /// A client certificate for the user `user` in `groups`.
    ///
    /// # Errors
    /// When signing fails.
    pub fn client(&self, user: &str, groups: &[&str]) -> Result<KeyedCertificate, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, user);
        for group in groups {
            params.distinguished_name.push(DnType::OrganizationName, *group);
        }
        self.sign(params, &[ExtendedKeyUsagePurpose::ClientAuth])
    }
}

/// A new ECDSA P-256 private key (PKCS#8 PEM), e.g. to sign ServiceAccount tokens with.
///
/// # Errors
/// When key generation fails.
pub fn signing_key_pem() -> Result<String, PkiError> {
    Ok(KeyPair::generate()?.serialize_pem())
}

/// A kubeconfig for `server` that trusts `ca_pem` and authenticates with `client`, with
/// the certificates inline (`*-data`), so the file stands alone.
pub fn kubeconfig(server: &str, ca_pem: &str, user: &str, client: &KeyedCertificate) -> String {
    let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: rkube
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: {user}@rkube
  context:
    cluster: rkube
    user: {user}
    namespace: default
current-context: {user}@rkube
preferences: {{}}
",
        ca = b64(ca_pem),
        cert = b64(&client.cert_pem),
        key = b64(&client.key_pem),
    )
}

#[cfg(test)]
mod tests {
    use x509_parser::pem::parse_x509_pem;

    use super::*;

    fn subject(pem: &str) -> (Vec<String>, Vec<String>, bool) {
        let (_, pem) = parse_x509_pem(pem.as_bytes()).expect("PEM");
        let cert = pem.parse_x509().expect("certificate");
        let subject = cert.subject();
        let texts = |it: Vec<&x509_parser::x509::AttributeTypeAndValue>| {
            it.into_iter().filter_map(|a| a.as_str().ok()).map(String::from).collect::<Vec<_>>()
        };
        (texts(subject.iter_common_name().collect()), texts(subject.iter_organization().collect()), cert.is_ca())
    }

    #[test]
    fn client_certificates_carry_user_and_groups_and_the_ca_is_a_ca() {
        let ca = Ca::new("rkube-ca").expect("CA");
        let (cn, _, is_ca) = subject(&ca.cert_pem());
        assert_eq!((cn, is_ca), (vec!["rkube-ca".to_string()], true));
        let admin = ca.client("kubernetes-admin", &["system:masters"]).expect("client");
        assert_eq!(subject(&admin.cert_pem), (vec!["kubernetes-admin".into()], vec!["system:masters".into()], false));
        assert!(admin.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn serving_certificates_name_every_address() {
        let ca = Ca::new("rkube-ca").expect("CA");
        let serving =
            ca.serving("kube-apiserver", &["localhost"], &["127.0.0.1".parse().expect("ip")]).expect("serving");
        let (_, pem) = parse_x509_pem(serving.cert_pem.as_bytes()).expect("PEM");
        let cert = pem.parse_x509().expect("certificate");
        let names = cert.subject_alternative_name().expect("extension").expect("SANs").value.general_names.len();
        assert_eq!(names, 2);
    }

    #[test]
    fn a_kubeconfig_holds_the_certificates_inline() {
        let ca = Ca::new("rkube-ca").expect("CA");
        let admin = ca.client("kubernetes-admin", &["system:masters"]).expect("client");
        let text = kubeconfig("https://127.0.0.1:6443", &ca.cert_pem(), "admin", &admin);
        let line = text.lines().find(|l| l.trim_start().starts_with("client-key-data:")).expect("key line");
        let encoded = line.split_once(": ").map(|(_, v)| v).unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).expect("base64");
        assert_eq!(String::from_utf8(decoded).expect("utf-8"), admin.key_pem);
        assert!(text.contains("server: https://127.0.0.1:6443"));
    }
}
