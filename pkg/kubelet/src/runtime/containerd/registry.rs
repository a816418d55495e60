//! A client of the OCI distribution protocol (a Docker/OCI registry's `/v2/` API), by hand
//! over `reqwest`: just what a pull needs.
//!
//! - [`Reference`] splits a normalized image name (`docker.io/library/busybox:latest`,
//!   `127.0.0.1:5000/rkube/busybox@sha256:…`) into registry, repository and tag or digest,
//!   and knows which host serves the API (`docker.io` → `registry-1.docker.io`).
//! - [`RegistryClient::manifest`] fetches a manifest or index as raw bytes (containerd
//!   verifies the digest of exactly what is stored, so they are never re-serialized), asking
//!   for the four media types a registry may hold (OCI index and manifest, Docker manifest list
//!   and schema 2 manifest).
//! - [`RegistryClient::blob`] opens a blob as a byte stream.
//! - A `401` with `WWW-Authenticate: Bearer realm=…,service=…,scope=…` is answered with the
//!   anonymous token flow (GET the realm, retry with `Authorization: Bearer <token>`); tokens are
//!   cached per registry, repository and user. That is what public registries (Docker Hub,
//!   ghcr.io, quay.io) need for public images.
//! - Credentials (a pod's `imagePullSecrets`, gathered in a [`Keyring`]) answer a `Basic`
//!   challenge, and are sent to the token realm of a `Bearer` one, as Docker does.
//! - Plain HTTP for registries on loopback (`localhost`, `127.0.0.1`, `[::1]`) and for those
//!   named insecure (`--insecure-registry host:port`), HTTPS (rustls, webpki roots) otherwise.
//!
//! Every failure is a [`RegistryError`] that says which request failed and what the registry
//! answered; nothing read from the network is trusted without a check.
//!
//! Why by hand rather than the `oci-client` crate (0.18 was evaluated): it looks for the bearer
//! challenge only on `GET /v2/` and never answers the 401 of the request itself, so
//! `anonymous_bearer_tokens_are_fetched_on_a_401_…` below fails with "Not authorized"; its
//! errors drop the causes (`error sending request for url (…)`) and the HTTP status; its
//! `rustls` feature brings aws-lc-rs, not ring. It would replace only this file's protocol
//! part; the containerd side of a pull (`pull.rs`) stays ours either way.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE};

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list (the Docker name of an index).
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Manifests larger than this are refused (real ones are a few KiB).
const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// How long connecting to a registry may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a registry may stay silent in the middle of an answer.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What went wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The image name cannot be split into registry, repository and tag or digest.
    #[error("invalid image reference {0:?}")]
    Reference(String),
    /// The request did not get an answer (connection refused, DNS, TLS, timeout), or the
    /// answer broke off.
    #[error("{what}: {cause}")]
    Http {
        /// Which request, e.g. `GET https://registry-1.docker.io/v2/library/busybox/manifests/latest`.
        what: String,
        /// The innermost causes, e.g. `client error (Connect): dns error: failed to lookup
        /// address information` (reqwest's own message only repeats the URL).
        cause: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an error status.
    #[error("{message} ({status})")]
    Status {
        /// The HTTP status code, e.g. 404.
        status: u16,
        /// The registry's own message (`errors[0].message` of its JSON body), or the status
        /// text, e.g. `manifest unknown`.
        message: String,
    },
    /// The registry's answer is not what the protocol promises.
    #[error("{0}")]
    Protocol(String),
}

impl RegistryError {
    /// An [`RegistryError::Http`] for request `what`, naming the causes of `source`.
    pub fn http(what: String, source: reqwest::Error) -> RegistryError {
        let mut causes = Vec::new();
        let mut next = std::error::Error::source(&source);
        while let Some(cause) = next {
            causes.push(cause.to_string());
            next = cause.source();
        }
        let cause = if causes.is_empty() { source.to_string() } else { causes.join(": ") };
        RegistryError::Http { what, cause, source }
    }
}

/// A normalized image reference, split into its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// The registry as written in the name, e.g. `docker.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// The repository, e.g. `library/busybox`.
    pub repository: String,
    /// The tag, if any (`latest` when neither tag nor digest was given).
    pub tag: Option<String>,
    /// The digest, if the name pins one (`sha256:…`).
    pub digest: Option<String>,
    /// The credentials to pull with, if any (from the pod's `imagePullSecrets`).
    pub credentials: Option<Credentials>,
}

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password (or token).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    /// The user name only: a password never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

/// Credentials by registry, read from Secrets of type `kubernetes.io/dockerconfigjson`
/// (`{"auths": {"<registry>": {...}}}` under `.dockerconfigjson`) or the older
/// `kubernetes.io/dockercfg` (the `auths` map itself under `.dockercfg`). An entry has
/// `username` and `password`, or `auth` (base64 of `user:password`). Registry keys may be
/// written as URLs (`https://index.docker.io/v1/`): only the host and port count.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    entries: Vec<(String, Credentials)>,
}

/// The host (and port) of a registry key or name, lower-cased; Docker Hub's names are one.
fn registry_key(text: &str) -> String {
    let text = text.trim();
    let text = text.split_once("://").map_or(text, |(_, rest)| rest);
    let host = text.split('/').next().unwrap_or_default().to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".into(),
        _ => host,
    }
}

impl Keyring {
    /// Adds the entries of a Secret's data: `.dockerconfigjson` or `.dockercfg`.
    ///
    /// # Errors
    /// When the document is not the JSON Docker writes; the message never holds a password.
    pub fn add_secret(&mut self, data: &std::collections::BTreeMap<String, Vec<u8>>) -> Result<(), String> {
        let (document, auths) = if let Some(json) = data.get(".dockerconfigjson") {
            (json, "/auths")
        } else if let Some(json) = data.get(".dockercfg") {
            (json, "")
        } else {
            return Err("neither .dockerconfigjson nor .dockercfg in its data".into());
        };
        let parsed: serde_json::Value =
            serde_json::from_slice(document).map_err(|e| format!("not a Docker config: {e}"))?;
        let entries = parsed.pointer(auths).and_then(serde_json::Value::as_object).ok_or("no auths map")?;
        for (registry, entry) in entries {
            let field = |name: &str| entry.get(name).and_then(serde_json::Value::as_str).unwrap_or_default();
            let (username, password) = if !field("username").is_empty() {
                (field("username").to_string(), field("password").to_string())
            } else if !field("auth").is_empty() {
                use base64::Engine;
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(field("auth"))
                    .map_err(|_| format!("the auth of {registry:?} is not base64"))?;
                let text = String::from_utf8(decoded).map_err(|_| format!("the auth of {registry:?} is not text"))?;
                let (user, password) =
                    text.split_once(':').ok_or(format!("the auth of {registry:?} is not user:password"))?;
                (user.to_string(), password.to_string())
            } else {
                continue;
            };
            self.entries.push((registry_key(registry), Credentials { username, password }));
        }
        Ok(())
    }

    /// The credentials for the registry of `image`'s reference, the first that match.
    pub fn lookup(&self, registry: &str) -> Option<Credentials> {
        let wanted = registry_key(registry);
        self.entries.iter().find(|(key, _)| *key == wanted).map(|(_, credentials)| credentials.clone())
    }
}

impl Reference {
    /// Splits a name as [`super::normalize_image`] writes it: `registry/repository[:tag][@digest]`.
    ///
    /// # Errors
    /// [`RegistryError::Reference`] when a part is missing or malformed.
    pub fn parse(name: &str) -> Result<Reference, RegistryError> {
        let invalid = || RegistryError::Reference(name.to_string());
        let (rest, digest) = match name.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest.to_string())),
            None => (name, None),
        };
        if let Some(digest) = &digest {
            let (algorithm, hex) = digest.split_once(':').ok_or_else(invalid)?;
            if algorithm.is_empty() || hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid());
            }
        }
        let (registry, path) = rest.split_once('/').ok_or_else(invalid)?;
        let last_slash = path.rfind('/').map_or(0, |at| at + 1);
        let (repository, tag) = match path[last_slash..].split_once(':') {
            Some((_, tag)) => (&path[..path.len() - tag.len() - 1], Some(tag.to_string())),
            None => (path, None),
        };
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_string()) } else { tag };
        let valid_repository = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            });
        if registry.is_empty() || !valid_repository || tag.as_deref().is_some_and(str::is_empty) {
            return Err(invalid());
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
            credentials: None,
        })
    }

    /// What to ask `/v2/<repository>/manifests/` for: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// The host (and port) that serves the registry API: Docker Hub's names say `docker.io`,
    /// its API is at `registry-1.docker.io`.
    pub fn api_host(&self) -> &str {
        if self.registry == "docker.io" || self.registry == "index.docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }
}

/// Whether `host` (with or without port) is a loopback name, reached over plain HTTP.
fn is_loopback(host: &str) -> bool {
    let name = if let Some(bracketed) = host.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else if host.matches(':').count() > 1 {
        host // a bare IPv6 address
    } else {
        host.split(':').next().unwrap_or_default()
    };
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A fetched manifest or index: exactly the bytes the registry sent.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// The media type (from `Content-Type`, else the document's own `mediaType`).
    pub media_type: String,
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
    /// The raw document.
    pub bytes: Vec<u8>,
}

/// A registry client shared by every pull of the kubelet (see the module docs).
pub struct RegistryClient {
    http: reqwest::Client,
    /// Registries (`host:port`) reached over plain HTTP although not on loopback.
    insecure: Vec<String>,
    /// `Authorization` values (a bearer token, or Basic credentials) by (API host,
    /// repository, user name or empty).
    tokens: Mutex<HashMap<(String, String, String), String>>,
}

impl RegistryClient {
    /// A client that uses plain HTTP for loopback registries and those in `insecure`.
    ///
    /// # Errors
    /// When the TLS backend cannot be set up.
    pub fn new(insecure: Vec<String>) -> Result<RegistryClient, RegistryError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("rkubelet/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| RegistryError::http("building the registry HTTP client".into(), source))?;
        Ok(RegistryClient { http, insecure, tokens: Mutex::new(HashMap::new()) })
    }

    /// `http` or `https` for the registry of `reference`.
    fn scheme(&self, reference: &Reference) -> &'static str {
        let host = reference.api_host();
        if is_loopback(host) || self.insecure.iter().any(|insecure| insecure == host || *insecure == reference.registry)
        {
            "http"
        } else {
            "https"
        }
    }

    fn url(&self, reference: &Reference, tail: &str) -> String {
        format!("{}://{}/v2/{}/{tail}", self.scheme(reference), reference.api_host(), reference.repository)
    }

    /// GETs `url` with `accept`, answering a bearer or basic challenge once. Returns the
    /// response of a 2xx answer; any other status is [`RegistryError::Status`].
    async fn get(&self, reference: &Reference, url: &str, accept: &str) -> Result<reqwest::Response, RegistryError> {
        let user = reference.credentials.as_ref().map(|c| c.username.clone()).unwrap_or_default();
        let key = (reference.api_host().to_string(), reference.repository.clone(), user);
        let mut retried = false;
        loop {
            let authorization = self.tokens.lock().unwrap_or_else(PoisonError::into_inner).get(&key).cloned();
            let mut request = self.http.get(url).header(ACCEPT, accept);
            if let Some(authorization) = &authorization {
                request = request.header(AUTHORIZATION, authorization);
            }
            let response = request.send().await.map_err(|source| RegistryError::http(format!("GET {url}"), source))?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            if status == StatusCode::UNAUTHORIZED && !retried {
                let authorization = if let Some(challenge) = bearer_challenge(response.headers()) {
                    Some(format!("Bearer {}", self.token(&challenge, reference).await?))
                } else if is_basic_challenge(response.headers()) {
                    reference.credentials.as_ref().map(basic_authorization)
                } else {
                    None
                };
                if let Some(authorization) = authorization {
                    self.tokens.lock().unwrap_or_else(PoisonError::into_inner).insert(key.clone(), authorization);
                    retried = true;
                    continue;
                }
            }
            return Err(status_error(response).await);
        }
    }

    /// The token flow: GET `realm?service=…&scope=…` (with the credentials, if any, as Basic
    /// authorization), read `token` (or `access_token`).
    async fn token(&self, challenge: &HashMap<String, String>, reference: &Reference) -> Result<String, RegistryError> {
        let realm =
            challenge.get("realm").ok_or_else(|| RegistryError::Protocol("bearer challenge without a realm".into()))?;
        let scope =
            challenge.get("scope").cloned().unwrap_or_else(|| format!("repository:{}:pull", reference.repository));
        let mut query = vec![("scope", scope)];
        if let Some(service) = challenge.get("service") {
            query.push(("service", service.clone()));
        }
        let who = if reference.credentials.is_some() { "token" } else { "anonymous token" };
        let what = format!("GET {realm} ({who})");
        let mut request = self.http.get(realm).query(&query);
        if let Some(credentials) = &reference.credentials {
            request = request.header(AUTHORIZATION, basic_authorization(credentials));
        }
        let response = request.send().await.map_err(|source| RegistryError::http(what.clone(), source))?;
        if !response.status().is_success() {
            return Err(status_error(response).await);
        }
        let body: serde_json::Value =
            response.json().await.map_err(|source| RegistryError::http(what.clone(), source))?;
        body.get("token")
            .or_else(|| body.get("access_token"))
            .and_then(serde_json::Value::as_str)
            .filter(|token| !token.is_empty())
            .map(str::to_string)
            .ok_or_else(|| RegistryError::Protocol(format!("{what}: answer without a token")))
    }

    /// Fetches the manifest or index `manifest_ref` (a tag or a digest) of `reference`'s
    /// repository, checking its digest when `manifest_ref` is one.
    ///
    /// # Errors
    /// [`RegistryError`] when the registry cannot be reached, refuses, or sends something
    /// else than asked for.
    pub async fn manifest(&self, reference: &Reference, manifest_ref: &str) -> Result<Fetched, RegistryError> {
        let url = self.url(reference, &format!("manifests/{manifest_ref}"));
        let accept = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].join(", ");
        let response = self.get(reference, &url, &accept).await?;
        if response.content_length().is_some_and(|length| length > MAX_MANIFEST_BYTES as u64) {
            return Err(RegistryError::Protocol(format!("GET {url}: manifest larger than {MAX_MANIFEST_BYTES} bytes")));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.split(';').next().unwrap_or_default().trim().to_string())
            .unwrap_or_default();
        let bytes =
            response.bytes().await.map_err(|source| RegistryError::http(format!("GET {url}"), source))?.to_vec();
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(RegistryError::Protocol(format!("GET {url}: manifest larger than {MAX_MANIFEST_BYTES} bytes")));
        }
        let digest = sha256_digest(&bytes);
        if manifest_ref.contains(':') && manifest_ref != digest {
            return Err(RegistryError::Protocol(format!("GET {url}: the registry sent content with digest {digest}")));
        }
        let media_type = if [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].contains(&content_type.as_str()) {
            content_type
        } else {
            // Some registries answer application/json: the document names its own type.
            let document: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|error| RegistryError::Protocol(format!("GET {url}: not JSON: {error}")))?;
            match document.get("mediaType").and_then(serde_json::Value::as_str) {
                Some(media_type) => media_type.to_string(),
                None if document.get("manifests").is_some() => OCI_INDEX.to_string(),
                None if document.get("layers").is_some() => OCI_MANIFEST.to_string(),
                None => {
                    return Err(RegistryError::Protocol(format!(
                        "GET {url}: unsupported manifest type {content_type:?} (schema 1 images are not supported)"
                    )));
                }
            }
        };
        Ok(Fetched { media_type, digest, bytes })
    }

    /// Opens blob `digest` of `reference`'s repository; read it with `bytes_stream()`.
    ///
    /// # Errors
    /// [`RegistryError`] when the registry cannot be reached or refuses.
    pub async fn blob(&self, reference: &Reference, digest: &str) -> Result<reqwest::Response, RegistryError> {
        let url = self.url(reference, &format!("blobs/{digest}"));
        self.get(reference, &url, "*/*").await
    }

    /// The error for a blob download that broke off.
    pub fn blob_error(&self, reference: &Reference, digest: &str, source: reqwest::Error) -> RegistryError {
        RegistryError::http(format!("GET {}", self.url(reference, &format!("blobs/{digest}"))), source)
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// `Basic <base64(user:password)>`.
fn basic_authorization(credentials: &Credentials) -> String {
    use base64::Engine;
    let pair = format!("{}:{}", credentials.username, credentials.password);
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
}

/// Whether the answer asks for `WWW-Authenticate: Basic` credentials.
fn is_basic_challenge(headers: &HeaderMap) -> bool {
    headers
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split(' ').next())
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("basic"))
}

/// The parameters of a `WWW-Authenticate: Bearer k="v",…` challenge.
fn bearer_challenge(headers: &HeaderMap) -> Option<HashMap<String, String>> {
    let value = headers.get(WWW_AUTHENTICATE)?.to_str().ok()?;
    let (scheme, params) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(parse_challenge_params(params))
}

/// Parses `k="v",k2="v,2",k3=v3` (quoted values may hold commas).
fn parse_challenge_params(params: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = params.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else { break };
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.insert(key, value.trim().to_string());
        rest = after.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// A registry's error answer: its `errors[0].message` (distribution spec) or the status text.
async fn status_error(response: reqwest::Response) -> RegistryError {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|body| body["errors"][0]["message"].as_str().map(str::to_string))
        .filter(|message| !message.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_ascii_lowercase());
    RegistryError::Status { status: status.as_u16(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str) -> Reference {
        Reference::parse(name).unwrap_or_else(|error| panic!("{name}: {error}"))
    }

    #[test]
    fn references_split_into_registry_repository_tag_and_digest() {
        let hub = parse("docker.io/library/busybox:latest");
        assert_eq!((hub.registry.as_str(), hub.repository.as_str()), ("docker.io", "library/busybox"));
        assert_eq!(hub.tag.as_deref(), Some("latest"));
        assert_eq!(hub.api_host(), "registry-1.docker.io");
        let local = parse("127.0.0.1:5000/rkube/busybox:v1");
        assert_eq!((local.registry.as_str(), local.repository.as_str()), ("127.0.0.1:5000", "rkube/busybox"));
        assert_eq!(local.manifest_ref(), "v1");
        assert_eq!(local.api_host(), "127.0.0.1:5000");
        let pinned = parse("quay.io/x/y@sha256:ab12");
        assert_eq!((pinned.tag.as_deref(), pinned.manifest_ref()), (None, "sha256:ab12"));
        let both = parse("localhost:5000/app:2@sha256:ab12");
        assert_eq!((both.tag.as_deref(), both.manifest_ref()), (Some("2"), "sha256:ab12"));
        assert_eq!(parse("localhost/app").tag.as_deref(), Some("latest"));
    }

    #[test]
    fn a_keyring_reads_both_docker_config_formats_and_matches_by_host() {
        let mut keyring = Keyring::default();
        let json = br#"{"auths": {"https://index.docker.io/v1/": {"auth": "YWxpY2U6czNjcmV0"},
            "127.0.0.1:5000": {"username": "bob", "password": "pw"}}}"#;
        keyring.add_secret(&[(".dockerconfigjson".to_string(), json.to_vec())].into()).expect("dockerconfigjson");
        let old = br#"{"quay.io": {"username": "carol", "password": "x"}}"#;
        keyring.add_secret(&[(".dockercfg".to_string(), old.to_vec())].into()).expect("dockercfg");
        let hub = keyring.lookup("docker.io").expect("Docker Hub");
        assert_eq!((hub.username.as_str(), hub.password.as_str()), ("alice", "s3cret"));
        assert_eq!(keyring.lookup("127.0.0.1:5000").map(|c| c.username), Some("bob".into()));
        assert_eq!(keyring.lookup("quay.io").map(|c| c.username), Some("carol".into()));
        assert!(keyring.lookup("127.0.0.1:5001").is_none());
        assert!(!format!("{hub:?}").contains("s3cret"), "a password in Debug output");
        let mut bad = Keyring::default();
        assert!(bad.add_secret(&[("other".to_string(), b"{}".to_vec())].into()).is_err());
        assert!(bad.add_secret(&[(".dockerconfigjson".to_string(), b"nope".to_vec())].into()).is_err());
    }

    #[test]
    fn malformed_references_are_refused() {
        for name in ["busybox", "docker.io/", "docker.io/Upper/case:v1", "x.io/a:", "x.io/a@sha256:zz", "x.io//a"] {
            assert!(Reference::parse(name).is_err(), "{name} accepted");
        }
    }

    #[test]
    fn loopback_and_insecure_registries_use_plain_http() {
        let client = RegistryClient::new(vec!["registry.lab:5000".into()]).expect("client");
        let scheme = |name: &str| client.scheme(&parse(name));
        assert_eq!(scheme("127.0.0.1:5000/a:v1"), "http");
        assert_eq!(scheme("localhost:5000/a:v1"), "http");
        assert_eq!(scheme("[::1]:5000/a:v1"), "http");
        assert_eq!(scheme("registry.lab:5000/a:v1"), "http");
        assert_eq!(scheme("registry.lab/a:v1"), "https");
        assert_eq!(scheme("docker.io/library/busybox:latest"), "https");
    }

    /// A registry that wants an anonymous bearer token (as Docker Hub does): `/token` hands one
    /// out for the right service and scope; `/v2/...` answers 401 with a challenge without it.
    async fn token_registry() -> (String, tokio::task::JoinHandle<()>) {
        use axum::http::{HeaderMap as Headers, StatusCode as Status, header};
        use axum::response::IntoResponse;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let realm = format!("http://{address}/token");
        let authorized = |headers: &Headers| {
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some("Bearer secret-token")
        };
        let challenge = move || {
            let value = format!(r#"Bearer realm="{realm}",service="test-registry",scope="repository:team/app:pull""#);
            (
                Status::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, value)],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            )
                .into_response()
        };
        let manifest_challenge = challenge.clone();
        let app = axum::Router::new()
            .route(
                "/token",
                axum::routing::get(|query: axum::extract::Query<HashMap<String, String>>| async move {
                    let right = query.get("service").map(String::as_str) == Some("test-registry")
                        && query.get("scope").map(String::as_str) == Some("repository:team/app:pull");
                    if right {
                        r#"{"token":"secret-token"}"#.into_response()
                    } else {
                        Status::FORBIDDEN.into_response()
                    }
                }),
            )
            .route(
                "/v2/team/app/manifests/{reference}",
                axum::routing::get(
                    move |headers: Headers, axum::extract::Path(reference): axum::extract::Path<String>| async move {
                        if !authorized(&headers) {
                            return manifest_challenge();
                        }
                        if reference != "v1" {
                            let body = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
                            return (Status::NOT_FOUND, body).into_response();
                        }
                        ([(header::CONTENT_TYPE, OCI_MANIFEST)], r#"{"schemaVersion":2,"layers":[]}"#).into_response()
                    },
                ),
            )
            .route("/v2/team/other/manifests/{reference}", axum::routing::get(move || async move { challenge() }));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (address.to_string(), server)
    }

    #[tokio::test]
    async fn anonymous_bearer_tokens_are_fetched_on_a_401_and_errors_carry_the_registrys_message() {
        let (host, server) = token_registry().await;
        let client = RegistryClient::new(Vec::new()).expect("client");
        let app = parse(&format!("{host}/team/app:v1"));
        let fetched = client.manifest(&app, app.manifest_ref()).await.expect("manifest with a token");
        assert_eq!(fetched.media_type, OCI_MANIFEST);
        assert_eq!(fetched.digest, sha256_digest(br#"{"schemaVersion":2,"layers":[]}"#));
        let missing = client.manifest(&app, "v2").await.expect_err("no such tag").to_string();
        assert_eq!(missing, "manifest unknown (404)");
        // A registry that refuses even with the token: one retry, then its answer, no loop.
        let other = parse(&format!("{host}/team/other:v1"));
        let refused = client.manifest(&other, "v1").await.expect_err("still unauthorized").to_string();
        assert_eq!(refused, "authentication required (401)");
        server.abort();
    }

    #[tokio::test]
    async fn an_unreachable_registry_names_the_request_and_the_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
        let client = RegistryClient::new(Vec::new()).expect("client");
        let gone = parse(&format!("127.0.0.1:{port}/x:v1"));
        let error = client.manifest(&gone, "v1").await.expect_err("nobody listens").to_string();
        assert!(error.starts_with(&format!("GET http://127.0.0.1:{port}/v2/x/manifests/v1: ")), "{error}");
        assert!(error.to_lowercase().contains("connect"), "{error}");
    }

    #[test]
    fn bearer_challenges_are_parsed_with_quoted_commas() {
        let params = parse_challenge_params(
            r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(params["realm"], "https://auth.docker.io/token");
        assert_eq!(params["service"], "registry.docker.io");
        assert_eq!(params["scope"], "repository:library/busybox:pull,push");
        let mut headers = HeaderMap::new();
        headers.insert(WWW_AUTHENTICATE, "Basic realm=\"x\"".parse().expect("header"));
        assert!(bearer_challenge(&headers).is_none());
    }
}
