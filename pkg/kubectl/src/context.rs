//! [`Connection`]: the connection and namespace every command works with, built from the global flags.
//!
//! The kubeconfig is found as kubectl finds it (`--kubeconfig`, else `$KUBECONFIG`, else
//! `~/.kube/config`); `--context` picks a context, `--server` overrides its URL and
//! `-n/--namespace` its namespace. Every request goes through [`rkube_client::Client`] (rate
//! limit, timeout, error mapping); streams (watches, followed logs) have no request timeout and
//! are read line by line with [`Lines`].

use futures::StreamExt;
use http::Method;
use rkube_api::ResourceDef;
use rkube_client::config::Kubeconfig;
use rkube_client::{Client, Config};
use serde_json::Value;

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};

/// The `Accept` header that asks the apiserver to render kubectl's table.
pub const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// A client plus the namespace flags; see the module docs.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The apiserver client.
    pub client: Client,
    /// The namespace to use: `-n`, else the context's, else `default`.
    pub namespace: String,
    /// Whether `-A/--all-namespaces` was given.
    pub all_namespaces: bool,
    /// Whether `-n/--namespace` was given (objects from files must then agree with it).
    pub explicit_namespace: bool,
    base_url: String,
    token: Option<String>,
    /// TLS for WebSockets (`None` for a plain `http://` server).
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// A WebSocket to the apiserver (exec, port forwarding).
pub type WebSocket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads the kubeconfig the global flags point at (as kubectl would).
pub fn load_kubeconfig(global: &GlobalArgs) -> Result<Kubeconfig> {
    let kubeconfig = match &global.kubeconfig {
        Some(path) => Kubeconfig::read(path)?,
        None => Kubeconfig::discover()?,
    };
    Ok(kubeconfig)
}

impl Connection {
    /// Builds the context from the global flags. With `--server` and no usable kubeconfig,
    /// the server URL alone is enough.
    pub fn new(global: &GlobalArgs) -> Result<Connection> {
        let config = match (load_kubeconfig(global), &global.server) {
            (Ok(kubeconfig), server) => {
                let mut config = match Config::from_custom_kubeconfig(&kubeconfig, global.context.as_deref()) {
                    Ok(config) => config,
                    Err(_) if server.is_some() => Config::new(parse_url(server.as_deref().unwrap_or_default())?),
                    Err(e) => return Err(e.into()),
                };
                if let Some(server) = server {
                    config.cluster_url = parse_url(server)?;
                }
                config
            }
            (Err(_), Some(server)) => Config::new(parse_url(server)?),
            (Err(e), None) => return Err(e),
        };
        let namespace = global.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
        let base_url = config.cluster_url.to_string().trim_end_matches('/').to_string();
        let token = config.token.clone();
        let tls = rkube_client::tls::rustls_config(&config)?;
        let client = Client::new(config)?;
        Ok(Connection {
            client,
            namespace,
            all_namespaces: global.all_namespaces,
            explicit_namespace: global.namespace.is_some(),
            base_url,
            token,
            tls,
        })
    }

    /// The namespace for `def` on a single-object verb: `None` for cluster-scoped kinds.
    pub fn ns_for(&self, def: &ResourceDef) -> Option<&str> {
        def.namespaced.then_some(self.namespace.as_str())
    }

    /// The namespace for `def` on list and watch: `None` for cluster-scoped kinds and `-A`.
    pub fn list_ns(&self, def: &ResourceDef) -> Option<&str> {
        if self.all_namespaces { None } else { self.ns_for(def) }
    }

    /// Sends a request and returns the JSON answer (`Null` for an empty body).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        accept: Option<&str>,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value> {
        let mut builder = http::Request::builder().method(method).uri(path);
        if let Some(accept) = accept {
            builder = builder.header(http::header::ACCEPT, accept);
        }
        let bytes = match body {
            Some(body) => {
                builder = builder.header(http::header::CONTENT_TYPE, content_type.unwrap_or("application/json"));
                serde_json::to_vec(body).map_err(Error::msg)?
            }
            None => Vec::new(),
        };
        let request = builder.body(bytes).map_err(|e| Error::msg(format!("invalid request {path}: {e}")))?;
        Ok(self.client.request_json(request).await?)
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.send(Method::GET, path, None, None, None).await
    }

    /// `GET path`, or `None` on 404.
    pub async fn get_opt(&self, path: &str) -> Result<Option<Value>> {
        match self.get(path).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PATCH path` with `content_type` (strategic, merge or JSON patch).
    pub async fn patch(&self, path: &str, content_type: &str, body: &Value) -> Result<Value> {
        self.send(Method::PATCH, path, None, Some(content_type), Some(body)).await
    }

    /// Opens a WebSocket to `path` on the apiserver with the subprotocol `protocol`, with the
    /// kubeconfig's credentials (its bearer token, or its client certificate over TLS). A
    /// refusal is the server's `Status`; `what` names the request in other errors.
    pub async fn websocket(&self, path: &str, protocol: &'static str, what: &str) -> Result<WebSocket> {
        use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
        let base = self.base_url.replacen("https://", "wss://", 1).replacen("http://", "ws://", 1);
        let url = format!("{base}{path}");
        let mut request =
            url.as_str().into_client_request().map_err(|e| Error::msg(format!("{what}: URL {url}: {e}")))?;
        let headers = request.headers_mut();
        headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, http::HeaderValue::from_static(protocol));
        if let Some(token) = &self.token
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            headers.insert(http::header::AUTHORIZATION, value);
        }
        let connector = self.tls.clone().map(tokio_tungstenite::Connector::Rustls);
        match tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector).await {
            Ok((socket, _)) => Ok(socket),
            Err(tungstenite::Error::Http(response)) => {
                let body = response.body().clone().unwrap_or_default();
                Err(Error::from_body(response.status().as_u16(), &body))
            }
            Err(e) => Err(Error::msg(format!("the server could not be reached: {what}: {e}"))),
        }
    }

    /// Opens a streaming `GET` (a watch or followed logs) with no request timeout.
    pub async fn stream(&self, path: &str, accept: &str) -> Result<Lines> {
        let request = http::Request::get(path)
            .header(http::header::ACCEPT, accept)
            .body(Vec::new())
            .map_err(|e| Error::msg(format!("invalid request {path}: {e}")))?;
        let chunks = self.client.request_stream(request).await?;
        Ok(Lines { chunks: Box::pin(chunks), buf: Vec::new(), done: false })
    }
}

fn parse_url(server: &str) -> Result<http::Uri> {
    server.parse().map_err(|e| Error::msg(format!("--server {server:?} is not a valid URL: {e}")))
}

/// The path of `def`'s collection (`ns` = `None`: all namespaces, or cluster-scoped), or of one
/// object when `name` is given.
pub fn path(def: &ResourceDef, ns: Option<&str>, name: Option<&str>) -> String {
    let mut p = def.path_prefix();
    if def.namespaced
        && let Some(ns) = ns
    {
        p.push_str("/namespaces/");
        p.push_str(ns);
    }
    p.push('/');
    p.push_str(def.plural);
    if let Some(name) = name {
        p.push('/');
        p.push_str(name);
    }
    p
}

/// Appends `key=value` query parameters (escaped) to `path`; empty values are left out.
pub fn with_query(path: &str, params: &[(&str, &str)]) -> String {
    let mut out = path.to_string();
    let mut first = !path.contains('?');
    for (k, v) in params {
        if v.is_empty() {
            continue;
        }
        out.push(if first { '?' } else { '&' });
        first = false;
        out.push_str(k);
        out.push('=');
        out.push_str(&escape(v));
    }
    out
}

/// Percent-escapes a query value (`application/x-www-form-urlencoded`, as Go's
/// `url.QueryEscape`).
pub fn escape(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The chunks of a streaming response.
type Chunks = std::pin::Pin<Box<dyn futures::Stream<Item = rkube_client::Result<bytes::Bytes>> + Send>>;

/// A streaming response read one line at a time (watch events, log lines).
pub struct Lines {
    chunks: Chunks,
    buf: Vec<u8>,
    done: bool,
}

impl std::fmt::Debug for Lines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lines").field("buffered", &self.buf.len()).field("done", &self.done).finish_non_exhaustive()
    }
}

impl Lines {
    /// The next line without its newline; `None` when the server ended the stream.
    pub async fn next_line(&mut self) -> Result<Option<String>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Ok(Some(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned()));
            }
            if self.done {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let rest = std::mem::take(&mut self.buf);
                return Ok(Some(String::from_utf8_lossy(&rest).into_owned()));
            }
            match self.chunks.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                None => self.done = true,
                Some(Err(e)) => return Err(Error::msg(format!("the stream broke: {e}"))),
            }
        }
    }

    /// The next raw chunk of bytes; `None` at the end (for logs, printed as they come).
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        if !self.buf.is_empty() {
            return Ok(Some(std::mem::take(&mut self.buf)));
        }
        match self.chunks.next().await {
            Some(Ok(chunk)) => Ok(Some(chunk.to_vec())),
            None => Ok(None),
            Some(Err(e)) => Err(Error::msg(format!("the stream broke: {e}"))),
        }
    }

    /// The next watch event (`type`, `object`), skipping blank lines; `None` at the end.
    pub async fn next_event(&mut self) -> Result<Option<(String, Value)>> {
        while let Some(line) = self.next_line().await? {
            if line.trim().is_empty() {
                continue;
            }
            let event: Value = serde_json::from_str(&line)
                .map_err(|e| Error::msg(format!("the server sent a watch event that is not JSON: {e}")))?;
            let kind = event["type"].as_str().unwrap_or("").to_string();
            if kind == "ERROR" {
                return Err(Error::from_body(
                    event["object"]["code"].as_u64().and_then(|c| u16::try_from(c).ok()).unwrap_or(500),
                    event["object"].to_string().as_bytes(),
                ));
            }
            return Ok(Some((kind, event["object"].clone())));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_scope_and_namespace() {
        let pods = rkube_api::registry::lookup("", "v1", "pods").unwrap();
        let nodes = rkube_api::registry::lookup("", "v1", "nodes").unwrap();
        assert_eq!(path(pods, Some("a"), Some("x")), "/api/v1/namespaces/a/pods/x");
        assert_eq!(path(pods, None, None), "/api/v1/pods");
        assert_eq!(path(nodes, Some("a"), Some("n1")), "/api/v1/nodes/n1");
        assert_eq!(
            with_query("/p", &[("labelSelector", "app=web,x in (a)"), ("fieldSelector", "")]),
            "/p?labelSelector=app%3Dweb%2Cx+in+%28a%29"
        );
    }
}
