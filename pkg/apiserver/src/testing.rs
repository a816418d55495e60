//! Test fixture: the whole apiserver in-process over a [`MemoryStore`], reached through
//! [`crate::router`] exactly as a client reaches it over HTTP (methods, paths, headers,
//! status codes, `Status` bodies), without a server, a socket or etcd.
//!
//! [`TestApi::start`] does what [`crate::serve`] does before it answers: it creates the
//! built-in namespaces. No background task runs unless a test starts one: the namespace
//! cache stays empty, so admission reads namespaces from storage (its documented fallback);
//! the namespace cleaner runs only when a test calls it; nothing is compacted unless a test
//! compacts [`TestApi::store`] itself. `/readyz` stays not ready: its flag belongs to
//! `serve`'s bootstrap task, which does not run here.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use rkube_storage::{MemoryStore, Store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::{ApiState, Config};

/// How long a test waits for a watch event (or a background task) before failing.
pub const WAIT: Duration = Duration::from_secs(5);

/// Media type of a JSON merge patch.
pub const MERGE_PATCH: &str = "application/merge-patch+json";

/// The `Accept` header `kubectl get` sends for server-side printing.
pub const ACCEPT_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// An apiserver over a fresh [`MemoryStore`], bootstrapped, answering requests in-process.
pub struct TestApi {
    /// The state every request sees (for tests that call internal functions or start tasks).
    pub state: Arc<ApiState>,
    /// The store behind it (a clone of the one in `state`), to inspect or compact.
    pub store: MemoryStore,
    router: Router,
}

impl TestApi {
    /// A bootstrapped apiserver: the built-in namespaces exist, no task runs.
    pub async fn start() -> Self {
        Self::start_with(Config::default()).await
    }

    /// [`TestApi::start`] with these settings (`compaction_interval` is not used: no task runs).
    pub async fn start_with(config: Config) -> Self {
        let store = MemoryStore::new();
        let state =
            ApiState::new(Arc::new(store.clone()), config, prometheus::Registry::new(), CancellationToken::new())
                .expect("metrics register in a fresh registry");
        let state = Arc::new(state);
        crate::namespace::ensure_initial(&state).await.expect("the built-in namespaces are created");
        TestApi { router: crate::router(state.clone()), state, store }
    }

    /// Sends a request as it is and returns the response as it is.
    pub async fn request(&self, request: Request<Body>) -> Response<Body> {
        match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// Sends `body` with the given headers and returns the response as it is.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Response<Body> {
        let mut builder = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.request(builder.body(body.into()).expect("a valid request")).await
    }

    /// Sends `body` (as `application/json`, when given) and returns the response as it is,
    /// for tests that read its headers.
    pub async fn respond(&self, method: Method, path: &str, body: Option<Value>) -> Response<Body> {
        match body {
            Some(body) => self.raw(method, path, &[("content-type", "application/json")], body.to_string()).await,
            None => self.raw(method, path, &[], Body::empty()).await,
        }
    }

    /// Sends `body` (as `application/json`, when given) and returns the status and the JSON
    /// answer (`Null` for an empty body, a string for one that is not JSON).
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let response = self.respond(method, path, body).await;
        (response.status(), json_body(response).await)
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None).await
    }

    /// POST `body` to `path`.
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(body)).await
    }

    /// PUT `body` to `path`.
    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::PUT, path, Some(body)).await
    }

    /// DELETE `path` with no body.
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::DELETE, path, None).await
    }

    /// DELETE `path` with `DeleteOptions` in the body.
    pub async fn delete_with(&self, path: &str, options: Value) -> (StatusCode, Value) {
        self.send(Method::DELETE, path, Some(options)).await
    }

    /// PATCH `path` with a patch of media type `content_type`.
    pub async fn patch(&self, path: &str, content_type: &str, patch: Value) -> (StatusCode, Value) {
        let response = self.raw(Method::PATCH, path, &[("content-type", content_type)], patch.to_string()).await;
        (response.status(), json_body(response).await)
    }

    /// POSTs `body` to `collection` and returns the created object; fails unless 201.
    pub async fn create(&self, collection: &str, body: Value) -> Value {
        let (status, created) = self.post(collection, body).await;
        assert_eq!(status, StatusCode::CREATED, "create in {collection}: {created}");
        created
    }

    /// GETs `path` and returns the object; fails unless 200.
    pub async fn get_ok(&self, path: &str) -> Value {
        let (status, object) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {object}");
        object
    }

    /// Whether GET `path` finds nothing.
    pub async fn is_gone(&self, path: &str) -> bool {
        self.get(path).await.0 == StatusCode::NOT_FOUND
    }

    /// The store's current revision: unchanged when nothing was written.
    pub async fn revision(&self) -> i64 {
        self.store.current_revision().await.expect("a MemoryStore always answers")
    }

    /// Starts a watch (`path` carries `watch=true` and its options); fails unless 200.
    pub async fn watch(&self, path: &str) -> WatchEvents {
        let response = self.raw(Method::GET, path, &[], Body::empty()).await;
        let status = response.status();
        assert_eq!(status, StatusCode::OK, "watch {path}: {}", json_body(response).await);
        WatchEvents { body: response.into_body(), buffer: Vec::new() }
    }
}

/// The JSON body of a response (`Null` when empty, a string when not JSON).
pub async fn json_body(response: Response<Body>) -> Value {
    let bytes = response.into_body().collect().await.expect("an in-memory body never fails").to_bytes();
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
}

/// The events of a watch response, read line by line from its chunked body.
pub struct WatchEvents {
    body: Body,
    buffer: Vec<u8>,
}

impl WatchEvents {
    /// The next event; fails if none comes within [`WAIT`] or the stream ends.
    pub async fn next(&mut self) -> Value {
        match self.next_within(WAIT).await {
            Some(event) => event,
            None => panic!("no watch event within {WAIT:?}"),
        }
    }

    /// Whether the stream ends within `wait` with no further event (an event fails the test).
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            assert!(self.buffer.is_empty(), "an event instead of the end: {}", String::from_utf8_lossy(&self.buffer));
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return false,
                Ok(None) => return true,
                Ok(Some(frame)) => {
                    if let Ok(data) = frame.expect("an in-memory body never fails").into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The next event, or `None` if none comes within `wait` or the stream ends.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).expect("each watch line is one JSON event"));
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame()).await.ok()??;
            if let Ok(data) = frame.expect("an in-memory body never fails").into_data() {
                self.buffer.extend_from_slice(&data);
            }
        }
    }
}

/// Asserts that a response is a failure `Status` with this code and reason, as Kubernetes
/// sends every error.
pub fn assert_status(status: StatusCode, body: &Value, code: u16, reason: &str) {
    assert_eq!(status.as_u16(), code, "HTTP status of {body}");
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["apiVersion"], "v1", "{body}");
    assert_eq!(body["status"], "Failure", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "a Status carries a message: {body}");
}

/// The path of the collection `plural` (core group) in `namespace`.
pub fn core(namespace: &str, plural: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/{plural}")
}

/// The path of the collection `plural` in `apps/v1` in `namespace`.
pub fn apps(namespace: &str, plural: &str) -> String {
    format!("/apis/apps/v1/namespaces/{namespace}/{plural}")
}

/// A valid pod with one container.
pub fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0"}]}
    })
}

/// A ConfigMap with `data`.
pub fn config_map(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

/// A Deployment of `replicas` pods labelled `app: <name>`.
pub fn deployment(name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0"}]}
            }
        }
    })
}

/// A Namespace.
pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// A Binding of pod `name` to `node`, as the scheduler posts it.
pub fn binding(name: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}
    })
}

/// `metadata.resourceVersion` of an object.
pub fn resource_version(object: &Value) -> &str {
    object["metadata"]["resourceVersion"].as_str().unwrap_or_default()
}

/// The names of a list's items, in order.
pub fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}
