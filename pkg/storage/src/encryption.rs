//! Encryption at rest (`--encryption-provider-config`): a [`Store`] that encrypts the values
//! of chosen resources before they reach etcd and decrypts them on the way back, as
//! kube-apiserver's value transformers do.
//!
//! The configuration is Kubernetes' `EncryptionConfiguration`: for each list of resources,
//! providers in order; the first encrypts new writes, and every one can read what it wrote.
//! rkube knows Kubernetes' local providers, with Kubernetes' layouts:
//! - `aesgcm` (AES-GCM, 16- or 32-byte keys, ring): `k8s:enc:aesgcm:v1:<key name>:` + a
//!   random 12-byte nonce + the sealed value, with the etcd key as additional authenticated
//!   data (a value moved to another key does not open);
//! - `aescbc` (AES-CBC with PKCS#7 padding, 16-, 24- or 32-byte keys):
//!   `k8s:enc:aescbc:v1:<key name>:` + a random 16-byte IV + the ciphertext (unauthenticated,
//!   as in Kubernetes, which recommends the others);
//! - `secretbox` (XSalsa20-Poly1305, 32-byte keys): `k8s:enc:secretbox:v1:<key name>:` + a
//!   random 24-byte nonce + the sealed value;
//! - `identity` (plain).
//!
//! A value without the `k8s:enc:` prefix is read as plain, so turning encryption on needs no
//! migration (rewrite objects to encrypt the old ones).
//!
//! Not here: `kms` (a clear error names it), and key rotation beyond "add a key, it is read;
//! move it first, it writes".

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use futures::StreamExt;
use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;

use crate::{Error, KeyValue, ListOptions, ListPage, PrefixSummary, Result, Store, WatchEvent, WatchStream};

const PREFIX: &[u8] = b"k8s:enc:";

/// One `aesgcm` key.
struct AesGcmKey {
    name: String,
    key: LessSafeKey,
}

/// One `aescbc` or `secretbox` key: its bytes.
struct RawKey {
    name: String,
    bytes: Vec<u8>,
}

/// A provider, as configured.
enum Provider {
    AesGcm(Vec<AesGcmKey>),
    AesCbc(Vec<RawKey>),
    Secretbox(Vec<RawKey>),
    Identity,
}

impl Provider {
    /// The name in the stored prefix (`k8s:enc:<name>:v1:`).
    fn name(&self) -> &'static str {
        match self {
            Provider::AesGcm(_) => "aesgcm",
            Provider::AesCbc(_) => "aescbc",
            Provider::Secretbox(_) => "secretbox",
            Provider::Identity => "identity",
        }
    }

    /// The names of its keys, the first writing.
    fn key_names(&self) -> Vec<&str> {
        match self {
            Provider::AesGcm(keys) => keys.iter().map(|k| k.name.as_str()).collect(),
            Provider::AesCbc(keys) | Provider::Secretbox(keys) => keys.iter().map(|k| k.name.as_str()).collect(),
            Provider::Identity => Vec::new(),
        }
    }
}

/// The providers of one set of resources, the first writing.
struct Rule {
    /// Storage key prefixes, e.g. `/registry/secrets/`.
    prefixes: Vec<String>,
    providers: Vec<Provider>,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("--encryption-provider-config: {0}")]
pub struct ConfigError(String);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptionConfiguration {
    kind: String,
    resources: Vec<ResourceConfig>,
}

#[derive(Deserialize)]
struct ResourceConfig {
    resources: Vec<String>,
    providers: Vec<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct KeysConfig {
    keys: Vec<NamedKey>,
}

#[derive(Deserialize)]
struct NamedKey {
    name: String,
    secret: String,
}

/// The encryption rules of an `EncryptionConfiguration` document (YAML or JSON).
pub struct Encryption {
    rules: Vec<Rule>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefixes: Vec<&String> = self.rules.iter().flat_map(|r| &r.prefixes).collect();
        f.debug_struct("Encryption").field("prefixes", &prefixes).finish_non_exhaustive()
    }
}

impl Encryption {
    /// Reads an `EncryptionConfiguration`; `registry_prefix` is the apiserver's key prefix
    /// (`/registry`).
    ///
    /// # Errors
    /// A one-line message for a malformed document, an unknown provider or a bad key.
    pub fn parse(text: &str, registry_prefix: &str) -> Result<Encryption, ConfigError> {
        let config: EncryptionConfiguration =
            serde_yaml_ng::from_str(text).map_err(|e| ConfigError(format!("not an EncryptionConfiguration: {e}")))?;
        if config.kind != "EncryptionConfiguration" {
            return Err(ConfigError(format!("kind is {:?}, not EncryptionConfiguration", config.kind)));
        }
        let mut rules = Vec::new();
        for resource in config.resources {
            let prefixes = resource
                .resources
                .iter()
                .map(|r| {
                    // `secrets` or `secrets.` (core), `deployments.apps`: rkube's keys use the plural.
                    let plural = r.split('.').next().unwrap_or_default();
                    format!("{}/{plural}/", registry_prefix.trim_end_matches('/'))
                })
                .collect();
            let mut providers = Vec::new();
            for provider in resource.providers {
                let (name, value) =
                    provider.into_iter().next().ok_or_else(|| ConfigError("an empty provider".into()))?;
                providers.push(match name.as_str() {
                    "identity" => Provider::Identity,
                    "aesgcm" => {
                        Provider::AesGcm(keys(&name, value)?.into_iter().map(aes_key).collect::<Result<_, _>>()?)
                    }
                    "aescbc" => Provider::AesCbc(raw_keys(&name, value, &[16, 24, 32])?),
                    "secretbox" => Provider::Secretbox(raw_keys(&name, value, &[32])?),
                    other => {
                        return Err(ConfigError(format!(
                            "provider {other:?} is not supported by rkube (use aesgcm, aescbc, secretbox or identity)"
                        )));
                    }
                });
            }
            if providers.is_empty() {
                return Err(ConfigError("a resource list without providers".into()));
            }
            rules.push(Rule { prefixes, providers });
        }
        Ok(Encryption { rules, rng: SystemRandom::new() })
    }

    fn rule(&self, key: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.prefixes.iter().any(|p| key.starts_with(p.as_str())))
    }

    /// `value` as stored under `key`.
    fn seal(&self, key: &str, value: Vec<u8>) -> Result<Vec<u8>> {
        let Some(rule) = self.rule(key) else { return Ok(value) };
        let Some(provider) = rule.providers.first() else { return Ok(value) };
        let Some(name) = provider.key_names().first().map(|n| n.to_string()) else { return Ok(value) };
        let failed = || Error::Internal(format!("encrypting {key}"));
        let mut out = format!("k8s:enc:{}:v1:{name}:", provider.name()).into_bytes();
        match provider {
            Provider::AesGcm(keys) => {
                let mut nonce = [0u8; NONCE_LEN];
                self.random(&mut nonce)?;
                let mut sealed = value;
                keys[0]
                    .key
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(key.as_bytes()),
                        &mut sealed,
                    )
                    .map_err(|_| failed())?;
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&sealed);
            }
            Provider::AesCbc(keys) => {
                let mut iv = [0u8; 16];
                self.random(&mut iv)?;
                out.extend_from_slice(&iv);
                out.extend_from_slice(&cbc_encrypt(&keys[0].bytes, &iv, &value).ok_or_else(failed)?);
            }
            Provider::Secretbox(keys) => {
                use crypto_secretbox::aead::{Aead, KeyInit};
                let mut nonce = [0u8; 24];
                self.random(&mut nonce)?;
                let cipher =
                    crypto_secretbox::XSalsa20Poly1305::new_from_slice(&keys[0].bytes).map_err(|_| failed())?;
                let sealed = cipher.encrypt(&nonce.into(), value.as_slice()).map_err(|_| failed())?;
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&sealed);
            }
            Provider::Identity => return Ok(value),
        }
        Ok(out)
    }

    fn random(&self, bytes: &mut [u8]) -> Result<()> {
        self.rng.fill(bytes).map_err(|_| Error::Internal("no random bytes for a nonce".into()))
    }

    /// The value stored under `key`, opened.
    fn open(&self, key: &str, stored: Vec<u8>) -> Result<Vec<u8>> {
        if !stored.starts_with(PREFIX) {
            return Ok(stored);
        }
        let undecryptable =
            || Error::Internal(format!("{key}: the stored value cannot be decrypted with the configured keys"));
        // <provider>:v1:<key name>:<payload>
        let mut parts = stored[PREFIX.len()..].splitn(4, |b| *b == b':');
        let (Some(kind), Some(b"v1"), Some(name), Some(payload)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(undecryptable());
        };
        let provider = self
            .rule(key)
            .into_iter()
            .flat_map(|r| &r.providers)
            .find(|p| p.name().as_bytes() == kind && p.key_names().iter().any(|n| n.as_bytes() == name))
            .ok_or_else(undecryptable)?;
        let index = provider.key_names().iter().position(|n| n.as_bytes() == name).ok_or_else(undecryptable)?;
        match provider {
            Provider::AesGcm(keys) => {
                if payload.len() < NONCE_LEN {
                    return Err(undecryptable());
                }
                let (nonce, sealed) = payload.split_at(NONCE_LEN);
                let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| undecryptable())?;
                let mut buffer = sealed.to_vec();
                let plain = keys[index]
                    .key
                    .open_in_place(nonce, Aad::from(key.as_bytes()), &mut buffer)
                    .map_err(|_| undecryptable())?;
                Ok(plain.to_vec())
            }
            Provider::AesCbc(keys) => {
                if payload.len() < 16 {
                    return Err(undecryptable());
                }
                let (iv, data) = payload.split_at(16);
                cbc_decrypt(&keys[index].bytes, iv, data).ok_or_else(undecryptable)
            }
            Provider::Secretbox(keys) => {
                use crypto_secretbox::aead::{Aead, KeyInit};
                if payload.len() < 24 {
                    return Err(undecryptable());
                }
                let (nonce, sealed) = payload.split_at(24);
                let cipher = crypto_secretbox::XSalsa20Poly1305::new_from_slice(&keys[index].bytes)
                    .map_err(|_| undecryptable())?;
                let nonce = crypto_secretbox::Nonce::from_slice(nonce);
                cipher.decrypt(nonce, sealed).map_err(|_| undecryptable())
            }
            Provider::Identity => Err(undecryptable()),
        }
    }

    fn open_kv(&self, mut kv: KeyValue) -> Result<KeyValue> {
        kv.value = self.open(&kv.key, std::mem::take(&mut kv.value))?;
        Ok(kv)
    }
}

/// The `keys` of provider `provider`.
fn keys(provider: &str, value: serde_json::Value) -> Result<Vec<NamedKey>, ConfigError> {
    let keys: KeysConfig = serde_json::from_value(value).map_err(|e| ConfigError(format!("{provider}: {e}")))?;
    if keys.keys.is_empty() {
        return Err(ConfigError(format!("{provider}: no keys")));
    }
    Ok(keys.keys)
}

/// The keys of an `aescbc` or `secretbox` provider, each of one of the `lengths`.
fn raw_keys(provider: &str, value: serde_json::Value, lengths: &[usize]) -> Result<Vec<RawKey>, ConfigError> {
    let mut out = Vec::new();
    for named in keys(provider, value)? {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(named.secret.trim())
            .map_err(|e| ConfigError(format!("{provider} key {:?}: not base64: {e}", named.name)))?;
        if !lengths.contains(&bytes.len()) {
            return Err(ConfigError(format!(
                "{provider} key {:?} is {} bytes; it must be {}",
                named.name,
                bytes.len(),
                lengths.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            )));
        }
        out.push(RawKey { name: named.name, bytes });
    }
    Ok(out)
}

/// AES-CBC with PKCS#7 padding under a 16-, 24- or 32-byte key.
fn cbc_encrypt(key: &[u8], iv: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    use cbc::cipher::{BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
    Some(match key.len() {
        16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(key, iv).ok()?.encrypt_padded_vec_mut::<Pkcs7>(data),
        24 => cbc::Encryptor::<aes::Aes192>::new_from_slices(key, iv).ok()?.encrypt_padded_vec_mut::<Pkcs7>(data),
        32 => cbc::Encryptor::<aes::Aes256>::new_from_slices(key, iv).ok()?.encrypt_padded_vec_mut::<Pkcs7>(data),
        _ => return None,
    })
}

/// The inverse of [`cbc_encrypt`]; `None` for a wrong key or padding.
fn cbc_decrypt(key: &[u8], iv: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    use cbc::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
    match key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv).ok()?.decrypt_padded_vec_mut::<Pkcs7>(data).ok(),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(key, iv).ok()?.decrypt_padded_vec_mut::<Pkcs7>(data).ok(),
        32 => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv).ok()?.decrypt_padded_vec_mut::<Pkcs7>(data).ok(),
        _ => None,
    }
}

fn aes_key(named: NamedKey) -> Result<AesGcmKey, ConfigError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(named.secret.trim())
        .map_err(|e| ConfigError(format!("aesgcm key {:?}: not base64: {e}", named.name)))?;
    let algorithm = match bytes.len() {
        16 => &AES_128_GCM,
        32 => &AES_256_GCM,
        n => return Err(ConfigError(format!("aesgcm key {:?} is {n} bytes; it must be 16 or 32", named.name))),
    };
    let key = UnboundKey::new(algorithm, &bytes).map_err(|_| ConfigError(format!("aesgcm key {:?}", named.name)))?;
    Ok(AesGcmKey { name: named.name, key: LessSafeKey::new(key) })
}

/// A [`Store`] that encrypts and decrypts the values [`Encryption`] covers.
pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    encryption: Arc<Encryption>,
}

impl EncryptedStore {
    /// `inner`, with `encryption` applied to the values it stores.
    pub fn new(inner: Arc<dyn Store>, encryption: Encryption) -> EncryptedStore {
        EncryptedStore { inner, encryption: Arc::new(encryption) }
    }
}

#[async_trait]
impl Store for EncryptedStore {
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<i64> {
        self.inner.create(key, self.encryption.seal(key, value)?).await
    }

    async fn get(&self, key: &str) -> Result<KeyValue> {
        self.encryption.open_kv(self.inner.get(key).await?)
    }

    async fn update(&self, key: &str, expected: i64, value: Vec<u8>) -> Result<i64> {
        self.inner.update(key, expected, self.encryption.seal(key, value)?).await
    }

    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<(KeyValue, i64)> {
        let (kv, revision) = self.inner.delete(key, expected).await?;
        Ok((self.encryption.open_kv(kv)?, revision))
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListPage> {
        let mut page = self.inner.list(prefix, options).await?;
        page.items = page.items.into_iter().map(|kv| self.encryption.open_kv(kv)).collect::<Result<_>>()?;
        Ok(page)
    }

    async fn watch(&self, prefix: &str, after_revision: i64, progress_every: Option<Duration>) -> Result<WatchStream> {
        let encryption = Arc::clone(&self.encryption);
        let stream = self.inner.watch(prefix, after_revision, progress_every).await?;
        Ok(Box::pin(stream.map(move |event| {
            let open = |kv: Option<KeyValue>| kv.map(|kv| encryption.open_kv(kv)).transpose();
            Ok(match event? {
                WatchEvent::Put { kv, prev } => WatchEvent::Put { kv: encryption.open_kv(kv)?, prev: open(prev)? },
                WatchEvent::Delete { key, revision, prev } => WatchEvent::Delete { key, revision, prev: open(prev)? },
                progress @ WatchEvent::Progress { .. } => progress,
            })
        })))
    }

    async fn written_since(&self, prefix: &str, since: i64) -> Result<PrefixSummary> {
        self.inner.written_since(prefix, since).await
    }

    async fn current_revision(&self) -> Result<i64> {
        self.inner.current_revision().await
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        self.inner.compact(revision).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    const CONFIG: &str = "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - aesgcm:
      keys:
      - name: key1
        secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
  - identity: {}
";

    #[tokio::test]
    async fn secrets_are_sealed_in_the_store_and_read_back_plain() {
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let store = EncryptedStore::new(Arc::clone(&inner), Encryption::parse(CONFIG, "/registry").expect("config"));
        store.create("/registry/secrets/default/db", b"{\"data\":1}".to_vec()).await.expect("create");
        store.create("/registry/configmaps/default/c", b"{\"plain\":1}".to_vec()).await.expect("create");
        let raw = inner.get("/registry/secrets/default/db").await.expect("raw");
        assert!(raw.value.starts_with(b"k8s:enc:aesgcm:v1:key1:"), "{:?}", String::from_utf8_lossy(&raw.value));
        assert!(!raw.value.windows(8).any(|w| w == b"\"data\":1"), "the value is not in the clear");
        assert_eq!(store.get("/registry/secrets/default/db").await.expect("get").value, b"{\"data\":1}");
        assert_eq!(inner.get("/registry/configmaps/default/c").await.expect("raw").value, b"{\"plain\":1}");
        let listed = store.list("/registry/secrets/", ListOptions::default()).await.expect("list");
        assert_eq!(listed.items[0].value, b"{\"data\":1}");
    }

    #[tokio::test]
    async fn plain_values_from_before_still_read_and_a_moved_value_does_not_open() {
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
        inner.create("/registry/secrets/default/old", b"plain".to_vec()).await.expect("create");
        let store = EncryptedStore::new(Arc::clone(&inner), Encryption::parse(CONFIG, "/registry").expect("config"));
        assert_eq!(store.get("/registry/secrets/default/old").await.expect("get").value, b"plain");
        store.create("/registry/secrets/default/a", b"secret".to_vec()).await.expect("create");
        let sealed = inner.get("/registry/secrets/default/a").await.expect("raw").value;
        inner.create("/registry/secrets/default/b", sealed).await.expect("copy");
        assert!(store.get("/registry/secrets/default/b").await.is_err(), "sealed for another key");
    }

    #[tokio::test]
    async fn aescbc_and_secretbox_seal_and_open_and_every_listed_provider_reads() {
        for provider in ["aescbc", "secretbox"] {
            let config = CONFIG.replace("aesgcm", provider);
            let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
            let store =
                EncryptedStore::new(Arc::clone(&inner), Encryption::parse(&config, "/registry").expect("config"));
            store.create("/registry/secrets/default/db", b"{\"data\":1}".to_vec()).await.expect("create");
            let raw = inner.get("/registry/secrets/default/db").await.expect("raw").value;
            assert!(raw.starts_with(format!("k8s:enc:{provider}:v1:key1:").as_bytes()), "{provider}");
            assert!(!raw.windows(8).any(|w| w == b"\"data\":1"), "{provider}: the value is in the clear");
            assert_eq!(store.get("/registry/secrets/default/db").await.expect("get").value, b"{\"data\":1}");
            // A config that lists this provider second still reads it (rotation).
            let rotated = format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - identity: {{}}\n  - {provider}:\n      keys:\n      - name: key1\n        secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"
            );
            let reader =
                EncryptedStore::new(Arc::clone(&inner), Encryption::parse(&rotated, "/registry").expect("config"));
            assert_eq!(reader.get("/registry/secrets/default/db").await.expect("get").value, b"{\"data\":1}");
            // Another key of the same provider does not open it.
            let other = config.replace(
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
                "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=",
            );
            let stranger =
                EncryptedStore::new(Arc::clone(&inner), Encryption::parse(&other, "/registry").expect("config"));
            assert!(stranger.get("/registry/secrets/default/db").await.is_err(), "{provider}: opened with another key");
        }
    }

    #[test]
    fn unsupported_providers_and_bad_keys_are_named() {
        let kms = CONFIG.replace("aesgcm", "kms");
        assert!(
            Encryption::parse(&kms, "/registry").expect_err("kms").to_string().contains("\"kms\" is not supported")
        );
        let sixteen = "MDEyMzQ1Njc4OWFiY2RlZg==";
        let short_box =
            CONFIG.replace("aesgcm", "secretbox").replace("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", sixteen);
        assert!(Encryption::parse(&short_box, "/registry").expect_err("16 bytes").to_string().contains("must be 32"));
        let short = CONFIG.replace("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "c2hvcnQ=");
        assert!(Encryption::parse(&short, "/registry").expect_err("short").to_string().contains("must be 16 or 32"));
    }
}
