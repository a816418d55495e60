//! Serving HTTP connections: accept, (with TLS) complete the handshake and note the client
//! certificate's identity, serve each connection with HTTP/1.1 or HTTP/2 (and upgrades, for
//! exec's WebSocket), and stop cleanly at shutdown.
//!
//! What it adds to axum's own `serve`: a client must send its request headers within
//! [`HEADER_READ_TIMEOUT`] (Kubernetes' `ReadHeaderTimeout`), so one that sends a header line
//! at a time cannot hold a connection forever; the time for the rest of a request is the
//! request timeout ([`crate::limits`]). At shutdown, open connections get
//! [`SHUTDOWN_GRACE`] to finish, then are dropped (watches end at once: they watch the same
//! shutdown signal).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ClientIdentity;

/// The longest a client may take to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(32);

/// How long open connections get to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The length of the queue of connections the kernel has completed but the server has not
/// accepted yet. The kernel caps it at `net.core.somaxconn` (4096 on current kernels), the
/// value Go, and so kube-apiserver, asks for. With the default of 128, a burst of connects
/// (a thousand informers after a restart) overflows it: the kernel drops the SYN and each
/// dropped client waits a second for its retransmission.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Listens on `addr` with a backlog of [`LISTEN_BACKLOG`].
///
/// # Errors
/// When the address cannot be bound (in use, or not this machine's).
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As every server does, so that a restart does not wait for the old connections' TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How long a client may take to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown`, over TLS when `tls` is set.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, app, tls, shutdown, HEADER_READ_TIMEOUT).await
}

/// [`serve`] with another header read timeout (for tests).
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
    header_read_timeout: Duration,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
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
        let Some(acceptor) = acceptor.clone() else {
            let service = TowerToHyperService::new(app.clone());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
            });
            continue;
        };
        // The handshake runs in the connection's own task, so a slow client holds up no one.
        let (app, builder, watcher) = (app.clone(), builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(crate::tls::certificate_identity);
            let service = tower::ServiceBuilder::new().map_request(with_extension(user)).service(app);
            let service = TowerToHyperService::new(service);
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
            if let Err(error) = watcher.watch(connection).await {
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

/// Adds the connection's client certificate identity (if any) to every request it carries.
fn with_extension<B>(user: Option<ClientIdentity>) -> impl Fn(http::Request<B>) -> http::Request<B> + Clone {
    move |mut request| {
        if let Some(user) = &user {
            request.extensions_mut().insert(user.clone());
        }
        request
    }
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
        tokio::spawn(serve_with(listener, app, None, shutdown.clone(), Duration::from_millis(300)));
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

    #[tokio::test]
    async fn a_burst_of_connections_waits_in_the_backlog_instead_of_being_dropped() {
        let listener = listen("127.0.0.1:0".parse().expect("address")).expect("listen");
        let address = listener.local_addr().expect("address");
        // The kernel caps the backlog at somaxconn; expect as many as it allows, up to 1000.
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(128);
        let burst = somaxconn.min(1000);
        // Nobody accepts: every connect must still complete at once, from the backlog (with
        // the default backlog of 128 the 130th waits a second for a SYN retransmission).
        let connected = tokio::task::spawn_blocking(move || {
            (0..burst)
                .map(|_| std::net::TcpStream::connect_timeout(&address, Duration::from_millis(500)))
                .collect::<Result<Vec<_>, _>>()
                .map(|streams| streams.len())
        });
        assert_eq!(connected.await.expect("thread").expect("every connect completes"), burst);
        drop(listener);
    }
}
