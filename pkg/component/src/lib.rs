//! What every rkube process shares (Kubernetes calls this component-base): structured
//! logs, shutdown on signals, the `/healthz`, `/livez`, `/readyz` and `/metrics`
//! endpoints, and [`leaderelection`] through a Lease.
//!
//! A component's `main` calls [`init_tracing`], starts [`serve_endpoints`] on its health
//! port, flips its [`Readiness`] once its caches have synced, and stops when
//! [`shutdown_signal`] resolves (or lets [`cancel_on_signal`] cancel its token).

pub mod flags;
pub mod leaderelection;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use tokio_util::sync::CancellationToken;

/// Sets up `tracing` logs on stderr: `format` is `text` (for people; colours only on a
/// terminal) or `json` (for machines). `RUST_LOG` sets the filter; the default is `info`.
pub fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    // A second call (tests) keeps the first subscriber.
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Cancels `shutdown` when SIGINT or SIGTERM arrives (spawned in the background), so that
/// every loop holding the token stops and `main` can return.
pub fn cancel_on_signal(shutdown: &CancellationToken) {
    let token = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        token.cancel();
    });
}

/// Whether the component is ready to serve (`/readyz`), shared between the code that
/// knows (caches synced, leader elected, ...) and the endpoint.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the component ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether the component is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct EndpointState {
    registry: prometheus::Registry,
    readiness: Readiness,
}

async fn ok() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<EndpointState>) -> Response {
    if state.readiness.is_ready() {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(state): State<EndpointState>) -> Response {
    match prometheus::TextEncoder::new().encode_to_string(&state.registry.gather()) {
        Ok(text) => ([(http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}\n")).into_response(),
    }
}

/// The health and metrics router: `/healthz` and `/livez` (200 while the process runs),
/// `/readyz` (200 once `readiness` is set, 503 before), `/metrics` (Prometheus text of
/// `registry`), with `extra` routes merged in.
pub fn endpoints(registry: prometheus::Registry, readiness: Readiness, extra: Option<Router>) -> Router {
    let router = Router::new()
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(EndpointState { registry, readiness });
    match extra {
        Some(extra) => router.merge(extra),
        None => router,
    }
}

/// Serves [`endpoints`] on `listener` until `shutdown` is cancelled, over TLS when `tls` is
/// set (client certificates reach `extra`'s handlers as [`rkube_server::ClientIdentity`]).
pub async fn serve_endpoints(
    listener: tokio::net::TcpListener,
    registry: prometheus::Registry,
    readiness: Readiness,
    extra: Option<Router>,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    rkube_server::connections::serve(listener, endpoints(registry, readiness, extra), tls, shutdown).await
}

/// What every component's main sets up around its work: a shutdown token cancelled by
/// SIGINT/SIGTERM, the metrics registry, the readiness flag, and `/healthz`, `/readyz` and
/// `/metrics` served on an address until the work is done.
pub struct Process {
    /// Cancelled on SIGINT or SIGTERM, and by [`Process::finish`].
    pub shutdown: CancellationToken,
    /// Where the component registers its metrics.
    pub registry: prometheus::Registry,
    /// What `/readyz` reports.
    pub readiness: Readiness,
    endpoints: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Process {
    /// Binds `address` (logging it, which matters with port 0), serves [`endpoints`] there in a
    /// task of its own and cancels `shutdown` on a signal.
    ///
    /// # Errors
    /// When `address` cannot be bound.
    pub async fn start(address: std::net::SocketAddr) -> std::io::Result<Process> {
        let (shutdown, registry, readiness) =
            (CancellationToken::new(), prometheus::Registry::new(), Readiness::default());
        let listener = tokio::net::TcpListener::bind(address).await?;
        tracing::info!(address = %listener.local_addr()?, "serving /healthz, /readyz and /metrics");
        let endpoints =
            tokio::spawn(serve_endpoints(listener, registry.clone(), readiness.clone(), None, None, shutdown.clone()));
        cancel_on_signal(&shutdown);
        Ok(Process { shutdown, registry, readiness, endpoints })
    }

    /// Stops serving the endpoints once the work is done.
    ///
    /// # Errors
    /// When serving them failed.
    pub async fn finish(self) -> std::io::Result<()> {
        self.shutdown.cancel();
        self.endpoints.await.map_err(std::io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_text(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        let code = out.split_whitespace().nth(1).unwrap_or("0").parse().unwrap_or(0);
        (code, out)
    }

    #[tokio::test]
    async fn readyz_follows_readiness_and_metrics_show_the_registry() {
        let registry = prometheus::Registry::new();
        let counter = prometheus::IntCounter::new("rkube_test_things_total", "things").unwrap();
        registry.register(Box::new(counter.clone())).unwrap();
        counter.inc();
        let readiness = Readiness::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_endpoints(listener, registry, readiness.clone(), None, None, shutdown.clone()));
        assert_eq!(get_text(addr, "/healthz").await.0, 200);
        assert_eq!(get_text(addr, "/readyz").await.0, 503);
        readiness.set(true);
        assert_eq!(get_text(addr, "/readyz").await.0, 200);
        let (code, body) = get_text(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(body.contains("rkube_test_things_total 1"), "{body}");
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
