//! Serving HTTP connections: accept, serve each connection with HTTP/1.1 or HTTP/2 (and
//! upgrades, for exec's WebSocket), and stop cleanly at shutdown.
//!
//! What it adds to axum's own `serve`: a client must send its request headers within
//! [`HEADER_READ_TIMEOUT`] (Kubernetes' `ReadHeaderTimeout`), so one that sends a header line
//! at a time cannot hold a connection forever; the time for the rest of a request is the
//! request timeout ([`crate::limits`]). At shutdown, open connections get
//! [`SHUTDOWN_GRACE`] to finish, then are dropped (watches end at once: they watch the same
//! shutdown signal).

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The longest a client may take to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(32);

/// How long open connections get to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    serve_with(listener, app, shutdown, HEADER_READ_TIMEOUT).await
}

/// [`serve`] with another header read timeout (for tests).
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    header_read_timeout: Duration,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::info!("connections still open after the shutdown grace period; dropping them");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use axum::routing::get;

    use super::*;

    #[tokio::test]
    async fn a_client_slower_than_the_header_timeout_is_disconnected_and_others_are_served() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let app = Router::new().route("/healthz", get(|| async { "ok" }));
        let shutdown = CancellationToken::new();
        tokio::spawn(serve_with(listener, app, shutdown.clone(), Duration::from_millis(300)));
        let slow = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(address).expect("connect");
            stream.write_all(b"GET /healthz HTTP/1.1\r\n").expect("first line");
            std::thread::sleep(Duration::from_millis(600));
            // The server has given up: the connection is closed (or answers 408) before our
            // headers are complete.
            let _ = stream.write_all(b"Host: x\r\n\r\n");
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            answer
        });
        let fast = reqwest::get(format!("http://{address}/healthz")).await.expect("fast client");
        assert_eq!(fast.text().await.expect("body"), "ok");
        let answer = slow.await.expect("thread");
        assert!(!answer.contains("200 OK"), "the slow client was not served: {answer:?}");
        shutdown.cancel();
    }
}
