//! The limits every request runs under, as kube-apiserver's filters set them: how long a
//! request may take, and how many may run at once.
//!
//! - **Request timeout** (`--request-timeout`, 60 s; a client's `?timeout=` may ask for less):
//!   a request that has not answered by then (reading a slow body included) is answered 504
//!   with Kubernetes' `Timeout` Status and its work is dropped.
//! - **In-flight limits** (`--max-requests-inflight` 400, `--max-mutating-requests-inflight`
//!   200): beyond them a request is answered at once 429 `TooManyRequests` with
//!   `Retry-After: 1`, which every Kubernetes client honours, instead of queueing without
//!   bound.
//! - **Long-running requests** (watches, followed logs, exec) are exempt from both, as in
//!   Kubernetes: a watch's length is its own (`timeoutSeconds`, or a random time between
//!   `--min-request-timeout` and twice that, `crate::watch`).
//!
//! Not here: the time to read a request's headers, which the connection layer bounds
//! ([`crate::serve`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusDetails};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::sync::Semaphore;

use crate::request::Query;

/// The limits (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The longest a non-long-running request may take.
    pub request_timeout: Duration,
    /// Read-only requests running at once, at most.
    pub max_read_only: usize,
    /// Mutating requests running at once, at most.
    pub max_mutating: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { request_timeout: Duration::from_secs(60), max_read_only: 400, max_mutating: 200 }
    }
}

/// The running limits: one semaphore per kind of request, and their metrics.
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    read_only: Semaphore,
    mutating: Semaphore,
    inflight: IntGaugeVec,
    rejected: IntCounterVec,
    timed_out: IntCounterVec,
}

impl Limiter {
    /// A limiter for `limits`, with its metrics registered in `registry`.
    pub fn new(limits: Limits, registry: &Registry) -> prometheus::Result<Limiter> {
        let inflight = IntGaugeVec::new(
            Opts::new("rkube_apiserver_current_inflight_requests", "Requests running, by kind (readOnly, mutating)."),
            &["request_kind"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new("rkube_apiserver_dropped_requests_total", "Requests answered 429 over the in-flight limit."),
            &["request_kind"],
        )?;
        let timed_out = IntCounterVec::new(
            Opts::new("rkube_apiserver_request_timeouts_total", "Requests answered 504 at the request timeout."),
            &["request_kind"],
        )?;
        registry.register(Box::new(inflight.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(timed_out.clone()))?;
        Ok(Limiter {
            limits,
            read_only: Semaphore::new(limits.max_read_only),
            mutating: Semaphore::new(limits.max_mutating),
            inflight,
            rejected,
            timed_out,
        })
    }
}

/// Whether a request runs as long as it needs: a watch, a followed log, exec.
pub fn is_long_running(request: &Request) -> bool {
    let path = request.uri().path();
    let query = Query::parse(request.uri().query());
    query.flag("watch")
        || path.contains("/watch/")
        || path.ends_with("/exec")
        || path.ends_with("/attach")
        || path.ends_with("/portforward")
        || (path.ends_with("/log") && query.flag("follow"))
}

/// The axum middleware that applies the limits.
pub async fn limit(State(limiter): State<Arc<Limiter>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    // Health, metrics and discovery are what operators and load balancers read when things go
    // wrong: never refused or cut short.
    if !(path.starts_with("/api/") || path.starts_with("/apis/")) || is_long_running(&request) {
        return next.run(request).await;
    }
    let mutating = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let (semaphore, kind) = match mutating {
        true => (&limiter.mutating, "mutating"),
        false => (&limiter.read_only, "readOnly"),
    };
    let Ok(_permit) = semaphore.try_acquire() else {
        limiter.rejected.with_label_values(&[kind]).inc();
        return too_many_requests();
    };
    let gauge = limiter.inflight.with_label_values(&[kind]);
    gauge.inc();
    let timeout = requested_timeout(&request)
        .map_or(limiter.limits.request_timeout, |asked| asked.min(limiter.limits.request_timeout));
    let answer = tokio::time::timeout(timeout, next.run(request)).await;
    gauge.dec();
    match answer {
        Ok(response) => response,
        Err(_) => {
            limiter.timed_out.with_label_values(&[kind]).inc();
            timeout_response()
        }
    }
}

/// A client's `?timeout=` (Go duration text such as `30s`), if it is readable.
fn requested_timeout(request: &Request) -> Option<Duration> {
    let query = Query::parse(request.uri().query());
    rkube_api::duration::parse(query.get("timeout")?).ok().filter(|d| !d.is_zero())
}

fn status_response(code: StatusCode, reason: &str, message: &str, retry_after: Option<i32>) -> Response {
    let status = Status {
        code: Some(i32::from(code.as_u16())),
        message: Some(message.to_string()),
        reason: Some(reason.to_string()),
        status: Some("Failure".into()),
        details: retry_after.map(|seconds| StatusDetails { retry_after_seconds: Some(seconds), ..Default::default() }),
        ..Default::default()
    };
    let body = crate::error::status_body(&status);
    let mut response = (code, [(http::header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(seconds) = retry_after
        && let Ok(value) = http::HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(http::header::RETRY_AFTER, value);
    }
    response
}

fn too_many_requests() -> Response {
    status_response(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        "Too many requests, please try again later.",
        Some(1),
    )
}

fn timeout_response() -> Response {
    status_response(
        StatusCode::GATEWAY_TIMEOUT,
        "Timeout",
        "Timeout: request did not complete within the requested timeout - context deadline exceeded",
        None,
    )
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    fn app(limits: Limits, release: Arc<tokio::sync::Notify>) -> Router {
        let limiter = Arc::new(Limiter::new(limits, &Registry::new()).expect("metrics"));
        Router::new()
            .route(
                "/api/v1/slow",
                get(move || {
                    let release = Arc::clone(&release);
                    async move {
                        release.notified().await;
                        "done"
                    }
                }),
            )
            .route("/api/v1/fast", get(|| async { "fast" }))
            .route("/healthz", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(limiter, limit))
    }

    async fn send(app: &Router, path: &str) -> (StatusCode, serde_json::Value, Option<String>) {
        let request = Request::builder().uri(path).body(axum::body::Body::empty()).expect("request");
        let response = app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let retry = response.headers().get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(String::from);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null), retry)
    }

    #[tokio::test]
    async fn a_request_past_the_timeout_is_a_504_timeout_status() {
        let limits = Limits { request_timeout: Duration::from_millis(50), ..Limits::default() };
        let app = app(limits, Arc::new(tokio::sync::Notify::new()));
        let (status, body, _) = send(&app, "/api/v1/slow").await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!((body["kind"].as_str(), body["reason"].as_str()), (Some("Status"), Some("Timeout")));
        assert_eq!(send(&app, "/api/v1/fast").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn over_the_in_flight_limit_a_request_is_a_429_with_retry_after_and_health_still_answers() {
        let release = Arc::new(tokio::sync::Notify::new());
        let limits = Limits { max_read_only: 1, ..Limits::default() };
        let app = app(limits, Arc::clone(&release));
        let held = tokio::spawn({
            let app = app.clone();
            async move { send(&app, "/api/v1/slow").await.0 }
        });
        // Wait until the first request holds the one permit.
        let mut refused = None;
        for _ in 0..100 {
            let answer = send(&app, "/api/v1/fast").await;
            if answer.0 == StatusCode::TOO_MANY_REQUESTS {
                refused = Some(answer);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (_, body, retry) = refused.expect("a second request is refused while the first runs");
        assert_eq!((body["reason"].as_str(), retry.as_deref()), (Some("TooManyRequests"), Some("1")));
        assert_eq!(body["details"]["retryAfterSeconds"], 1);
        assert_eq!(send(&app, "/healthz").await.0, StatusCode::OK, "health is never limited");
        release.notify_one();
        assert_eq!(held.await.expect("task"), StatusCode::OK);
    }

    #[test]
    fn watches_followed_logs_and_exec_are_long_running() {
        let long = |uri: &str| is_long_running(&Request::builder().uri(uri).body(axum::body::Body::empty()).unwrap());
        assert!(long("/api/v1/pods?watch=true"));
        assert!(long("/api/v1/namespaces/a/pods/p/log?follow=true"));
        assert!(long("/api/v1/namespaces/a/pods/p/exec?command=ls"));
        assert!(!long("/api/v1/namespaces/a/pods/p/log"));
        assert!(!long("/api/v1/pods?limit=5"));
    }
}
