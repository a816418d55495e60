//! The HTTP client under every [`Api`](crate::Api): one connection pool, one rate limiter, one
//! place where answers become [`Error`]s.
//!
//! A [`Client`] is cheap to clone (an `Arc`); clones share the connection pool and the rate
//! limiter. Every request it sends:
//! - first waits for the client-side rate limit ([`Config::qps`], [`Config::burst`]);
//! - carries `User-Agent: rkube/<version>`, `Accept: application/json` unless the request set
//!   its own, and `Authorization: Bearer <token>` when the config has a token;
//! - is bounded by [`Config::timeout`], except watches, which run until the server ends them
//!   (ask the server for an end with [`WatchParams::timeout`](crate::WatchParams)).
//!
//! A non-2xx answer becomes an [`Error`] here and nowhere else (see [`crate::error`]). A GET
//! that gets no answer at all on a reused connection (the server closed it meanwhile) is sent
//! once more on a fresh one; other verbs are never resent, since the server may have acted.
//!
//! Over `https://` it trusts the config's CA bundle, presents its client certificate, or with
//! `insecure-skip-tls-verify` checks nothing (rustls, in [`http_client`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use http::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::ratelimit::RateLimiter;

/// What rkube components announce themselves as.
const USER_AGENT: &str = concat!("rkube/", env!("CARGO_PKG_VERSION"));

/// Longest stretch of a body quoted in a decode error.
const DECODE_SNIPPET_LIMIT: usize = 256;

/// A connection to one apiserver; see the module docs. Create one per process (or per
/// component) and clone it into every [`Api`](crate::Api).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `cluster_url` without a trailing slash; request paths are appended to it.
    base_url: String,
    authorization: Option<HeaderValue>,
    limiter: RateLimiter,
    timeout: Option<Duration>,
    default_namespace: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url)
            .field("default_namespace", &self.inner.default_namespace)
            .finish_non_exhaustive()
    }
}

/// Builds the HTTP client for `config`: plain for `http://`; for `https://`, rustls trusting
/// the config's CA bundle (and the public web roots), presenting its client certificate, or
/// verifying nothing with `insecure_skip_tls_verify`.
fn http_client(config: &Config) -> Result<reqwest::Client> {
    let tls = match config.cluster_url.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        other => {
            return Err(Error::Config(format!(
                "server URL {} has scheme {:?}; expected http:// or https://",
                config.cluster_url,
                other.unwrap_or("")
            )));
        }
    };
    if config.cluster_url.host().is_none() {
        return Err(Error::Config(format!("server URL {} has no host", config.cluster_url)));
    }
    let mut builder = reqwest::Client::builder().user_agent(USER_AGENT);
    if let Some(connect_timeout) = config.connect_timeout {
        builder = builder.connect_timeout(connect_timeout);
    }
    if tls {
        builder = builder.use_rustls_tls();
        if let Some(bundle) = &config.root_cert {
            let roots = reqwest::Certificate::from_pem_bundle(bundle)
                .map_err(|e| Error::Config(format!("certificate-authority: not a PEM certificate bundle: {e}")))?;
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
        }
        if config.insecure_skip_tls_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        match (&config.client_cert, &config.client_key) {
            (Some(cert), Some(key)) => {
                let pem = [cert.as_slice(), b"\n", key.as_slice()].concat();
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| Error::Config(format!("client-certificate and client-key: {e}")))?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => return Err(Error::Config("a client certificate needs its key, and a key its certificate".into())),
        }
    }
    builder.build().map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))
}

impl Client {
    /// A client for `config`. Does not contact the server. Fails for a URL that is not http(s)
    /// or has no host, certificates that are not PEM, or a token that cannot be a header value.
    pub fn new(config: Config) -> Result<Client> {
        let http = http_client(&config)?;
        let authorization = match &config.token {
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                    Error::Config("the bearer token contains characters not allowed in a header".into())
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let base_url = config.cluster_url.to_string().trim_end_matches('/').to_string();
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base_url,
                authorization,
                limiter: RateLimiter::new(config.qps, config.burst),
                timeout: config.timeout,
                default_namespace: config.default_namespace,
            }),
        })
    }

    /// A client from [`Config::infer`]: `KUBECONFIG`, else `~/.kube/config`.
    pub fn try_default() -> Result<Client> {
        Client::new(Config::infer()?)
    }

    /// A client from the kubeconfig `options` name (a component's `--kubeconfig`, `--context`).
    pub fn from_kubeconfig(options: &crate::config::KubeconfigOptions) -> Result<Client> {
        Client::new(Config::from_kubeconfig(options)?)
    }

    /// The namespace [`Api::default_namespaced`](crate::Api::default_namespaced) uses.
    pub fn default_namespace(&self) -> &str {
        &self.inner.default_namespace
    }

    /// Sends any request (its URI is a path and query, e.g. `/api/v1/namespaces`) and returns
    /// the JSON answer; an empty 2xx body is `Value::Null`. The escape hatch for what
    /// [`Api`](crate::Api) does not cover; rate limit, timeout and error mapping apply as usual.
    pub async fn request_json(&self, req: http::Request<Vec<u8>>) -> Result<serde_json::Value> {
        let what = describe(&req);
        let body = self.request_bytes(req).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        decode(&what, &body)
    }

    /// Sends `req` and decodes the 2xx answer as `T`.
    pub(crate) async fn request<T: DeserializeOwned>(&self, req: http::Request<Vec<u8>>) -> Result<T> {
        let what = describe(&req);
        let body = self.request_bytes(req).await?;
        decode(&what, &body)
    }

    /// Sends `req` and returns the whole 2xx body.
    async fn request_bytes(&self, req: http::Request<Vec<u8>>) -> Result<Bytes> {
        let what = describe(&req);
        let response = self.send(req, false).await?;
        response.bytes().await.map_err(|e| Error::from_transport(e, &what))
    }

    /// Sends `req` without a request timeout and returns the 2xx body as a stream of chunks,
    /// for watches and followed logs. The stream ends when the server ends the response; rate
    /// limit and error mapping apply as for [`Client::request_json`].
    pub async fn request_stream(
        &self,
        req: http::Request<Vec<u8>>,
    ) -> Result<impl Stream<Item = Result<Bytes>> + Send + 'static> {
        let what = describe(&req);
        let response = self.send(req, true).await?;
        Ok(response.bytes_stream().map_err(move |e| Error::from_transport(e, &what)))
    }

    /// The one place a request goes out: rate limit, headers, timeout, error mapping.
    async fn send(&self, req: http::Request<Vec<u8>>, streaming: bool) -> Result<reqwest::Response> {
        let what = describe(&req);
        self.inner.limiter.acquire().await;
        let (parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let url = format!("{}{path}", self.inner.base_url);
        let mut headers = parts.headers;
        if !headers.contains_key(ACCEPT) {
            headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        }
        if let Some(auth) = &self.inner.authorization {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        let retry_safe = parts.method == http::Method::GET;
        let mut builder = self.inner.http.request(parts.method, url).headers(headers).body(body);
        if !streaming && let Some(timeout) = self.inner.timeout {
            builder = builder.timeout(timeout);
        }
        let request = builder.build().map_err(|e| Error::request_not_sent(format!("{what}: {e}")))?;
        let started = Instant::now();
        let response = match request.try_clone().filter(|_| retry_safe) {
            None => self.inner.http.execute(request).await,
            Some(second) => match self.inner.http.execute(request).await {
                // A pooled connection the server has closed meanwhile fails without an answer;
                // a GET is safe to send once more on a fresh connection (Go's net/http does
                // the same for idempotent requests, which is why client-go rarely sees this).
                Err(e) if e.is_request() && !e.is_connect() && !e.is_timeout() => {
                    tracing::debug!(request = %what, error = %e, "no answer on a pooled connection; retrying once");
                    self.inner.limiter.acquire().await;
                    self.inner.http.execute(second).await
                }
                other => other,
            },
        };
        let response = response.map_err(|e| Error::from_transport(e, &what))?;
        let status = response.status();
        tracing::debug!(request = %what, status = status.as_u16(), elapsed = ?started.elapsed(), "apiserver answered");
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.map_err(|e| Error::from_transport(e, &what))?;
        Err(Error::from_response(status.as_u16(), &body))
    }
}

/// `GET /api/v1/...`, for messages.
fn describe(req: &http::Request<Vec<u8>>) -> String {
    format!("{} {}", req.method(), req.uri())
}

/// Decodes a 2xx body, or says what was wrong with it and how it started.
fn decode<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::Decode(format!("{what}: {e}; body starts: {}", snippet(body))))
}

/// The start of `body` as text, for messages.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(DECODE_SNIPPET_LIMIT).collect();
    if text.chars().count() > DECODE_SNIPPET_LIMIT {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_certificates_that_are_not_pem_are_config_errors() {
        let mut config = Config::new("https://10.0.0.1:6443".parse().unwrap());
        assert!(Client::new(config.clone()).is_ok(), "https with the default roots");
        config.client_cert = Some(b"not a certificate".to_vec());
        let err = Client::new(config.clone()).unwrap_err();
        assert!(matches!(&err, Error::Config(m) if m.contains("needs its key")), "{err}");
        config.client_key = Some(b"not a key".to_vec());
        let err = Client::new(config).unwrap_err();
        assert!(matches!(&err, Error::Config(m) if m.starts_with("client-certificate and client-key")), "{err}");
    }

    #[test]
    fn other_schemes_and_missing_hosts_are_refused() {
        assert!(Client::new(Config::new("ftp://h/".parse().unwrap())).is_err());
        assert!(Client::new(Config::new("/just/a/path".parse().unwrap())).is_err());
    }

    #[test]
    fn a_token_with_a_newline_is_a_config_error() {
        let mut config = Config::new("http://127.0.0.1:1".parse().unwrap());
        config.token = Some("a\nb".into());
        assert!(matches!(Client::new(config), Err(Error::Config(_))));
    }

    #[test]
    fn the_base_url_keeps_a_path_prefix_without_a_trailing_slash() {
        let client = Client::new(Config::new("http://127.0.0.1:1/prefix/".parse().unwrap())).unwrap();
        assert_eq!(client.inner.base_url, "http://127.0.0.1:1/prefix");
        let client = Client::new(Config::new("http://127.0.0.1:1".parse().unwrap())).unwrap();
        assert_eq!(client.inner.base_url, "http://127.0.0.1:1");
        assert_eq!(client.default_namespace(), "default");
    }

    #[tokio::test]
    async fn a_refused_connection_is_unavailable() {
        // Port 1 on loopback: nothing listens there.
        let client = Client::new(Config::new("http://127.0.0.1:1".parse().unwrap())).unwrap();
        let req = http::Request::get("/api/v1/namespaces").body(vec![]).unwrap();
        let err = client.request_json(req).await.unwrap_err();
        assert!(matches!(&err, Error::Unavailable(m) if m.contains("/api/v1/namespaces")), "{err}");
    }

    /// A one-shot HTTP server: answers the first request with `response` and hands back the
    /// request's head (request line and headers), lower-cased.
    async fn one_shot_server(response: String) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "request ended early");
                head.extend_from_slice(&buf[..n]);
            }
            socket.write_all(response.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            String::from_utf8_lossy(&head).to_lowercase()
        });
        (url, task)
    }

    /// A complete response with a `content-length` body.
    fn response(status: &str, body: &str) -> String {
        format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len())
    }

    #[tokio::test]
    async fn requests_carry_user_agent_accept_and_the_bearer_token() {
        let (url, server) = one_shot_server(response("200 OK", r#"{"ok": true}"#)).await;
        let mut config = Config::new(url.parse().unwrap());
        config.token = Some("t0ken".into());
        let client = Client::new(config).unwrap();
        let req = http::Request::get("/api/v1/namespaces?limit=1").body(vec![]).unwrap();
        let answer = client.request_json(req).await.unwrap();
        assert_eq!(answer["ok"], true);
        let head = server.await.unwrap();
        assert!(head.starts_with("get /api/v1/namespaces?limit=1 http/1.1"), "{head}");
        assert!(head.contains(&format!("user-agent: rkube/{}", env!("CARGO_PKG_VERSION"))), "{head}");
        assert!(head.contains("accept: application/json"), "{head}");
        assert!(head.contains("authorization: bearer t0ken"), "{head}");
    }

    #[tokio::test]
    async fn a_non_json_error_page_becomes_a_typed_error_with_its_text() {
        let (url, server) = one_shot_server(response("503 Service Unavailable", "<h1>maintenance</h1>")).await;
        let client = Client::new(Config::new(url.parse().unwrap())).unwrap();
        let req = http::Request::get("/api/v1/pods").body(vec![]).unwrap();
        let err = client.request_json(req).await.unwrap_err();
        assert!(matches!(&err, Error::Unavailable(m) if m.contains("maintenance")), "{err}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_chunked_watch_body_is_read_event_by_event() {
        use futures::StreamExt;
        // Two events: the first cut across two HTTP chunks, the second sharing a chunk with
        // the first one's end.
        let chunks = [
            r#"{"type":"ADDED",""#,
            "object\":{\"metadata\":{\"name\":\"a\"}}}\n{\"type\":\"DELETED\",\"object\":{}}\n",
        ];
        let mut text = String::from("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
        for chunk in chunks {
            text.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
        }
        text.push_str("0\r\n\r\n");
        let (url, server) = one_shot_server(text).await;
        let client = Client::new(Config::new(url.parse().unwrap())).unwrap();
        let req = http::Request::get("/api/v1/configmaps?watch=true").body(vec![]).unwrap();
        let body = client.request_stream(req).await.unwrap();
        let events: Vec<_> = crate::watch::event_stream::<serde_json::Value, _>(Box::pin(body)).collect().await;
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(matches!(&events[0], Ok(kube_core::watch::WatchEvent::Added(o)) if o["metadata"]["name"] == "a"));
        assert!(matches!(&events[1], Ok(kube_core::watch::WatchEvent::Deleted(_))));
        server.await.unwrap();
    }

    #[test]
    fn decode_errors_quote_the_start_of_the_body() {
        let err = decode::<serde_json::Value>("GET /x", b"<html>oops</html>").unwrap_err();
        assert!(matches!(&err, Error::Decode(m) if m.contains("GET /x") && m.contains("<html>oops")), "{err}");
    }
}
