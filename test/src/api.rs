//! A small HTTP client for tests: Kubernetes JSON in, `(StatusCode, serde_json::Value)` out.
//!
//! Paths are absolute API paths (`/api/v1/namespaces/default/pods`); the client adds the base
//! URL. A transport failure (connection refused, timeout) panics with the request in the message,
//! because no test expects one; use [`Api::try_send`] where one is expected. A body that is not
//! JSON comes back as `Value::String` so an assertion can still show it.
//!
//! [`WatchStream`] reads a watch response as newline-delimited JSON events.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// How long one ordinary (non-watch) request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a watch may take to send its response headers (the stream itself has no limit).
const WATCH_START_TIMEOUT: Duration = Duration::from_secs(30);

/// An API client bound to one apiserver.
#[derive(Clone)]
pub struct Api {
    base: String,
    client: reqwest::Client,
}

/// A full reply: status, headers and body (parsed as JSON when it is JSON).
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body as JSON, or `Value::String` holding the text when it is not JSON.
    pub body: Value,
}

impl Api {
    /// A client for the apiserver at `base_url` (e.g. [`crate::Cluster::url`]).
    pub fn new(base_url: &str) -> Api {
        Api { base: base_url.trim_end_matches('/').to_string(), client: reqwest::Client::new() }
    }

    /// A client for the apiserver at `base_url` sending its requests through `client` (e.g.
    /// one with a CA and a client certificate).
    pub fn with_client(base_url: &str, client: reqwest::Client) -> Api {
        Api { base: base_url.trim_end_matches('/').to_string(), client }
    }

    /// A client for the apiserver at `base_url` that sends `Authorization: Bearer <token>`
    /// with every request (a user of `--token-auth-file`).
    ///
    /// # Panics
    /// When the token cannot be a header value.
    pub fn with_token(base_url: &str, token: &str) -> Api {
        let mut headers = HeaderMap::new();
        let value = format!("Bearer {token}").parse().expect("a token that is a valid header value");
        headers.insert(reqwest::header::AUTHORIZATION, value);
        let client = reqwest::Client::builder().default_headers(headers).build().expect("HTTP client");
        Api { base: base_url.trim_end_matches('/').to_string(), client }
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.json(Method::GET, path, None, None).await
    }

    /// POST `body` as `application/json`.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.json(Method::POST, path, Some("application/json"), Some(body)).await
    }

    /// PUT `body` as `application/json`.
    pub async fn put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.json(Method::PUT, path, Some("application/json"), Some(body)).await
    }

    /// PATCH with the given patch content type, e.g. `application/merge-patch+json`,
    /// `application/strategic-merge-patch+json` or `application/json-patch+json`.
    pub async fn patch(&self, path: &str, content_type: &str, body: &Value) -> (StatusCode, Value) {
        self.json(Method::PATCH, path, Some(content_type), Some(body)).await
    }

    /// DELETE without a body.
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.json(Method::DELETE, path, None, None).await
    }

    /// DELETE with `DeleteOptions` as the body.
    pub async fn delete_with(&self, path: &str, options: &Value) -> (StatusCode, Value) {
        self.json(Method::DELETE, path, Some("application/json"), Some(options)).await
    }

    /// POST `body` and insist on 201 Created; returns the created object.
    ///
    /// # Panics
    /// On any other status, showing the reply.
    pub async fn create(&self, path: &str, body: &Value) -> Value {
        let (status, reply) = self.post(path, body).await;
        assert_eq!(status, StatusCode::CREATED, "POST {path} {body}\nreplied {reply}");
        reply
    }

    /// GET `path` and insist on 200; returns the body.
    ///
    /// # Panics
    /// On any other status, showing the reply.
    pub async fn get_ok(&self, path: &str) -> Value {
        let (status, reply) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}\nreplied {reply}");
        reply
    }

    /// Sends any request with raw body bytes and extra headers; panics on a transport failure.
    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Reply {
        let description = format!("{method} {path}");
        self.try_send(method, path, headers, body)
            .await
            .unwrap_or_else(|error| panic!("{description} failed in transport: {error:#}"))
    }

    /// Like [`Api::send`], returning a transport failure instead of panicking.
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> reqwest::Result<Reply> {
        let mut request = self.client.request(method, self.url(path)).timeout(REQUEST_TIMEOUT);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Reply { status, headers, body })
    }

    /// The value of one sample on the apiserver's `/metrics`, named with its labels as the text
    /// format writes them (e.g. `rkube_apiserver_open_watches{resource="pods"}`); 0 when absent.
    ///
    /// # Panics
    /// When `/metrics` does not answer 200.
    pub async fn metric(&self, sample: &str) -> f64 {
        let response = self.client.get(self.url("/metrics")).timeout(REQUEST_TIMEOUT).send().await;
        let response = response.unwrap_or_else(|error| panic!("GET /metrics failed in transport: {error:#}"));
        assert_eq!(response.status(), StatusCode::OK, "GET /metrics");
        let text = response.text().await.unwrap_or_else(|error| panic!("GET /metrics body: {error:#}"));
        crate::component::sample_value(&text, sample)
    }

    /// How many watches of `resource` (a plural, e.g. `pods`) this apiserver has started so far.
    /// A count, not the number open: it only grows, so a test that saw it grow past an earlier
    /// value knows a new watch began (a client reached its watching phase), whatever happened to
    /// the watches before.
    pub async fn watches_started(&self, resource: &str) -> f64 {
        self.metric(&format!(r#"rkube_apiserver_requests_total{{code="200",resource="{resource}",verb="watch"}}"#))
            .await
    }

    /// Opens a watch (`path` must carry `watch=true` or be a watch path). The response status is
    /// in [`WatchStream::status`]; a non-2xx body (a `Status`) is yielded as the first item.
    pub async fn watch(&self, path: &str) -> WatchStream {
        let response = tokio::time::timeout(WATCH_START_TIMEOUT, self.client.get(self.url(path)).send())
            .await
            .unwrap_or_else(|_| panic!("GET {path} (watch) sent no response headers within {WATCH_START_TIMEOUT:?}"))
            .unwrap_or_else(|error| panic!("GET {path} (watch) failed in transport: {error:#}"));
        let status = response.status();
        let headers = response.headers().clone();
        let chunks = response.bytes_stream().map(|chunk| chunk.map(|bytes| bytes.to_vec()));
        WatchStream { status, headers, chunks: Box::pin(chunks), buffer: Vec::new(), ended: false }
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let headers: Vec<(&str, &str)> = content_type.map(|value| ("content-type", value)).into_iter().collect();
        let body = body.map(|body| serde_json::to_vec(body).expect("a Value always serializes"));
        let reply = self.send(method, path, &headers, body).await;
        (reply.status, reply.body)
    }
}

/// An open watch: yields each event line as parsed JSON (`{"type": ..., "object": ...}`).
pub struct WatchStream {
    /// The HTTP status of the watch response.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    chunks: Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send>>,
    buffer: Vec<u8>,
    ended: bool,
}

impl WatchStream {
    /// The next event, or `None` once the server has ended the stream (or it broke).
    /// A line that is not JSON is yielded as `Value::String`.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(newline) = self.buffer.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=newline).collect();
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                return Some(parse_line(line));
            }
            if self.ended {
                let rest = std::mem::take(&mut self.buffer);
                let rest = rest.trim_ascii();
                return (!rest.is_empty()).then(|| parse_line(rest));
            }
            match self.chunks.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(_)) | None => self.ended = true,
            }
        }
    }

    /// The next event within `limit`: `Err` on timeout, `Ok(None)` when the stream ended.
    pub async fn next_within(&mut self, limit: Duration) -> Result<Option<Value>, tokio::time::error::Elapsed> {
        tokio::time::timeout(limit, self.next()).await
    }

    /// The next event within `limit`.
    ///
    /// # Panics
    /// When none arrives in time or the stream ends.
    pub async fn expect_event(&mut self, limit: Duration) -> Value {
        match self.next_within(limit).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!("watch stream ended while an event was expected"),
            Err(_) => panic!("no watch event within {limit:?}"),
        }
    }

    /// The next event that is not a BOOKMARK, within `limit` overall.
    ///
    /// # Panics
    /// When none arrives in time or the stream ends.
    pub async fn expect_non_bookmark(&mut self, limit: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.expect_event(left).await;
            if event["type"] != "BOOKMARK" {
                return event;
            }
        }
    }

    /// Collects every non-BOOKMARK event that arrives within `window` (or until the stream ends).
    pub async fn non_bookmarks_within(&mut self, window: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + window;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Ok(Some(event)) if event["type"] == "BOOKMARK" => {}
                Ok(Some(event)) => events.push(event),
                Ok(None) | Err(_) => return events,
            }
        }
    }
}

fn parse_line(line: &[u8]) -> Value {
    serde_json::from_slice(line).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(line).into_owned()))
}

/// Percent-encodes a query parameter value (selectors, continue tokens) so that `=`, `,`, `!`,
/// spaces, parentheses and base64's `+`/`/` survive the trip.
pub fn escape_query(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
