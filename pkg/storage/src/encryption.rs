//! Encryption at rest (`--encryption-provider-config`): a [`Store`] that encrypts the values
//! of chosen resources before they reach etcd and decrypts them on the way back, as
//! kube-apiserver's value transformers do.
//!
//! The configuration is Kubernetes' `EncryptionConfiguration`: for each list of resources,
//! providers in order; the first encrypts new writes, and every one can read what it wrote.
//! rkube knows the providers `aesgcm` (AES-GCM with a 16- or 32-byte key, ring) and
//! `identity` (plain). A value written by `aesgcm` is stored as
//! `k8s:enc:aesgcm:v1:<key name>:` + a random 12-byte nonce + the sealed value, with the
//! etcd key as additional authenticated data (a value moved to another key does not open),
//! the layout Kubernetes uses. A value without the `k8s:enc:` prefix is read as plain, so
//! turning encryption on needs no migration (rewrite objects to encrypt the old ones).
//!
//! Not here: `aescbc`, `secretbox` and `kms` (a clear error names them), and key
//! rotation beyond "add a key, it is read; move it first, it writes".

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

/// A provider, as configured.
enum Provider {
    AesGcm(Vec<AesGcmKey>),
    Identity,
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
                        let keys: KeysConfig =
                            serde_json::from_value(value).map_err(|e| ConfigError(format!("aesgcm: {e}")))?;
                        Provider::AesGcm(keys.keys.into_iter().map(aes_key).collect::<Result<_, _>>()?)
                    }
                    other => {
                        return Err(ConfigError(format!(
                            "provider {other:?} is not supported by rkube (use aesgcm or identity)"
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
        match rule.providers.first() {
            Some(Provider::AesGcm(keys)) => {
                let Some(first) = keys.first() else { return Ok(value) };
                let mut nonce = [0u8; NONCE_LEN];
                self.rng.fill(&mut nonce).map_err(|_| Error::Internal("no random nonce".into()))?;
                let mut sealed = value;
                first
                    .key
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(key.as_bytes()),
                        &mut sealed,
                    )
                    .map_err(|_| Error::Internal(format!("encrypting {key}")))?;
                let mut out = format!("k8s:enc:aesgcm:v1:{}:", first.name).into_bytes();
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&sealed);
                Ok(out)
            }
            Some(Provider::Identity) | None => Ok(value),
        }
    }

    /// The value stored under `key`, opened.
    fn open(&self, key: &str, stored: Vec<u8>) -> Result<Vec<u8>> {
        if !stored.starts_with(PREFIX) {
            return Ok(stored);
        }
        let undecryptable =
            || Error::Internal(format!("{key}: the stored value cannot be decrypted with the configured keys"));
        let rest = &stored[PREFIX.len()..];
        let Some(rest) = rest.strip_prefix(b"aesgcm:v1:".as_slice()) else { return Err(undecryptable()) };
        let colon = rest.iter().position(|b| *b == b':').ok_or_else(undecryptable)?;
        let (name, payload) = (&rest[..colon], &rest[colon + 1..]);
        let keys = self.rule(key).into_iter().flat_map(|r| &r.providers).filter_map(|p| match p {
            Provider::AesGcm(keys) => Some(keys),
            Provider::Identity => None,
        });
        let aes = keys.flatten().find(|k| k.name.as_bytes() == name).ok_or_else(undecryptable)?;
        if payload.len() < NONCE_LEN {
            return Err(undecryptable());
        }
        let (nonce, sealed) = payload.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| undecryptable())?;
        let mut buffer = sealed.to_vec();
        let plain =
            aes.key.open_in_place(nonce, Aad::from(key.as_bytes()), &mut buffer).map_err(|_| undecryptable())?;
        Ok(plain.to_vec())
    }

    fn open_kv(&self, mut kv: KeyValue) -> Result<KeyValue> {
        kv.value = self.open(&kv.key, std::mem::take(&mut kv.value))?;
        Ok(kv)
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

    #[test]
    fn unsupported_providers_and_bad_keys_are_named() {
        let cbc = CONFIG.replace("aesgcm", "aescbc");
        assert!(
            Encryption::parse(&cbc, "/registry")
                .expect_err("aescbc")
                .to_string()
                .contains("\"aescbc\" is not supported")
        );
        let short = CONFIG.replace("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "c2hvcnQ=");
        assert!(Encryption::parse(&short, "/registry").expect_err("short").to_string().contains("must be 16 or 32"));
    }
}
