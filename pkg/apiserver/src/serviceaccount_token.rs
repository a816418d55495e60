//! ServiceAccount tokens: JWTs the apiserver signs (`--service-account-signing-key-file`)
//! for the TokenRequest subresource, and verifies when one comes back as a bearer token.
//!
//! A token is an ES256 JWT (ECDSA P-256, ring) with Kubernetes' claims: `iss`
//! (`--service-account-issuer`), `aud` (the request's audiences, else the issuer), `sub`
//! (`system:serviceaccount:<namespace>:<name>`), `iat`/`nbf`/`exp`, and `kubernetes.io`
//! naming the namespace, the ServiceAccount (name and uid) and, for a bound token, the pod.
//!
//! Verifying checks the signature, the issuer, that one audience is the apiserver's, and
//! the times; the caller then checks that the ServiceAccount (and the pod) still exist with
//! the same uid, so deleting either revokes the token.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, UnparsedPublicKey,
};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

/// The default issuer, as kubeadm configures it.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Why the signing key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("--service-account-signing-key-file {path}: {why}")]
pub struct KeyError {
    path: String,
    why: String,
}

/// The `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    /// The ServiceAccount's namespace.
    pub namespace: String,
    /// The ServiceAccount.
    pub serviceaccount: ObjectClaim,
    /// The pod the token is bound to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectClaim>,
}

/// A name and uid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectClaim {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
}

/// The claims of a ServiceAccount token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The issuer.
    pub iss: String,
    /// The audiences.
    pub aud: Vec<String>,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub sub: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expires at.
    pub exp: i64,
    /// What the token is for.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

/// Signs and verifies ServiceAccount tokens.
pub struct TokenIssuer {
    key: EcdsaKeyPair,
    /// The public keys tokens are verified with (uncompressed P-256 points): the signing
    /// key's, then those of `--service-account-key-file`.
    public: Vec<Vec<u8>>,
    /// `--service-account-issuer`.
    pub issuer: String,
    /// The audiences the apiserver accepts (`--api-audiences`, default the issuer).
    pub audiences: Vec<String>,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// An issuer signing with the PKCS#8 P-256 key in `key_file` (PEM).
    ///
    /// # Errors
    /// When the file cannot be read or is not a P-256 PKCS#8 key.
    pub fn from_file(key_file: &Path, issuer: &str, audiences: Vec<String>) -> Result<TokenIssuer, KeyError> {
        let error = |why: String| KeyError { path: key_file.display().to_string(), why };
        let der = PrivatePkcs8KeyDer::from_pem_file(key_file).map_err(|e| error(e.to_string()))?;
        TokenIssuer::from_pkcs8(der.secret_pkcs8_der(), issuer, audiences).map_err(error)
    }

    /// An issuer signing with a PKCS#8 P-256 key (DER).
    ///
    /// # Errors
    /// When the key is not a P-256 PKCS#8 key.
    pub fn from_pkcs8(der: &[u8], issuer: &str, audiences: Vec<String>) -> Result<TokenIssuer, String> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| format!("not an ECDSA P-256 PKCS#8 key: {e}"))?;
        let public = vec![key.public_key().as_ref().to_vec()];
        let audiences = if audiences.is_empty() { vec![issuer.to_string()] } else { audiences };
        Ok(TokenIssuer { key, public, issuer: issuer.to_string(), audiences, rng })
    }

    /// Also accepts tokens signed with the keys in `files` (`--service-account-key-file`: PEM
    /// P-256 public keys, or private keys whose public half is taken), e.g. the key of another
    /// apiserver of the cluster, or the previous key while keys are rotated.
    ///
    /// # Errors
    /// When a file cannot be read or holds no P-256 key.
    pub fn with_verification_keys(mut self, files: &[std::path::PathBuf]) -> Result<TokenIssuer, KeyError> {
        for file in files {
            let error = |why: String| KeyError { path: file.display().to_string(), why };
            let point = match rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_file(file) {
                Ok(spki) => p256_point(spki.as_ref()).ok_or_else(|| error("not an ECDSA P-256 public key".into()))?,
                Err(_) => {
                    let der = PrivatePkcs8KeyDer::from_pem_file(file)
                        .map_err(|e| error(format!("neither a PUBLIC KEY nor a PRIVATE KEY in PEM: {e}")))?;
                    let pair =
                        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_pkcs8_der(), &self.rng)
                            .map_err(|e| error(format!("not an ECDSA P-256 PKCS#8 key: {e}")))?;
                    pair.public_key().as_ref().to_vec()
                }
            };
            self.public.push(point);
        }
        Ok(self)
    }

    /// A signed token carrying `claims`.
    ///
    /// # Errors
    /// When signing fails (it does not with a valid key).
    pub fn sign(&self, claims: &Claims) -> Result<String, String> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(|e| e.to_string())?);
        let signing_input = format!("{header}.{payload}");
        let signature = self.key.sign(&self.rng, signing_input.as_bytes()).map_err(|e| e.to_string())?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())))
    }

    /// The claims of `token` when this issuer signed it, it is for one of the apiserver's
    /// audiences and it is valid at `now` (seconds since the epoch); `None` otherwise
    /// (including any token that is not a JWT at all).
    pub fn verify(&self, token: &str, now: i64) -> Option<Claims> {
        let mut parts = token.split('.');
        let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let signed = format!("{header}.{payload}");
        let verifies = |public: &Vec<u8>| {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public).verify(signed.as_bytes(), &signature).is_ok()
        };
        if !self.public.iter().any(verifies) {
            return None;
        }
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let for_us = claims.aud.iter().any(|a| self.audiences.contains(a));
        (claims.iss == self.issuer && for_us && claims.nbf <= now && now < claims.exp).then_some(claims)
    }
}

/// The uncompressed point of a P-256 SubjectPublicKeyInfo (DER): the fixed header of
/// `id-ecPublicKey` + `prime256v1`, then the 65-byte point.
fn p256_point(spki: &[u8]) -> Option<Vec<u8>> {
    const HEADER: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
        0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    let point = spki.strip_prefix(HEADER.as_slice())?;
    (point.len() == 65 && point[0] == 0x04).then(|| point.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        TokenIssuer::from_pkcs8(pkcs8.as_ref(), DEFAULT_ISSUER, vec![]).expect("issuer")
    }

    fn claims(aud: &str, exp: i64) -> Claims {
        Claims {
            iss: DEFAULT_ISSUER.into(),
            aud: vec![aud.into()],
            sub: "system:serviceaccount:default:bot".into(),
            iat: 100,
            nbf: 100,
            exp,
            kubernetes: KubernetesClaims {
                namespace: "default".into(),
                serviceaccount: ObjectClaim { name: "bot".into(), uid: "u1".into() },
                pod: None,
            },
        }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let issuer = issuer();
        let token = issuer.sign(&claims(DEFAULT_ISSUER, 200)).expect("signed");
        assert_eq!(issuer.verify(&token, 150).map(|c| c.sub), Some("system:serviceaccount:default:bot".into()));
        assert_eq!(issuer.verify(&token, 200), None, "expired");
        assert_eq!(issuer.verify(&token, 99), None, "not yet valid");
    }

    #[test]
    fn tokens_of_another_key_verify_once_its_public_key_is_given() {
        let rng = SystemRandom::new();
        let old = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let old_issuer = TokenIssuer::from_pkcs8(old.as_ref(), DEFAULT_ISSUER, vec![]).expect("old");
        let token = old_issuer.sign(&claims(DEFAULT_ISSUER, 200)).expect("signed");
        let dir = tempfile::tempdir().expect("dir");
        // The public half, as `openssl ec -pubout` writes it (SPKI in PEM).
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, old.as_ref(), &rng).expect("pair");
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
            0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        let b64 = base64::engine::general_purpose::STANDARD.encode(&spki);
        let public = dir.path().join("old.pub");
        std::fs::write(&public, format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")).expect("pem");
        assert_eq!(issuer().verify(&token, 150), None, "not without the old key");
        let rotated = issuer().with_verification_keys(&[public]).expect("public key file");
        assert!(rotated.verify(&token, 150).is_some(), "the old key's token verifies");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "nothing").expect("file");
        assert!(issuer().with_verification_keys(&[garbage]).is_err());
    }

    #[test]
    fn tampered_foreign_and_other_audience_tokens_do_not_verify() {
        let issuer = issuer();
        let token = issuer.sign(&claims(DEFAULT_ISSUER, 200)).expect("signed");
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(DEFAULT_ISSUER, 9_999)).expect("json"));
        parts[1] = &forged;
        assert_eq!(issuer.verify(&parts.join("."), 150), None, "changed claims");
        assert_eq!(self::issuer().verify(&token, 150), None, "another key");
        let vault = issuer.sign(&claims("vault", 200)).expect("signed");
        assert_eq!(issuer.verify(&vault, 150), None, "not for the apiserver");
        assert_eq!(issuer.verify("not-a-jwt", 150), None);
    }
}
