//! `kubectl port-forward` on the node: the kubelet's `/portForward/{namespace}/{pod}`, which the
//! apiserver's `pods/portforward` relays.
//!
//! kubectl (1.31 and later) opens a WebSocket with the subprotocol `SPDY/3.1+portforward.k8s.io`
//! and speaks SPDY/3.1 inside it ([`crate::spdy`]). For every TCP connection it accepts on its
//! local port, kubectl opens two SPDY streams with the headers `streamType` (`error`, then
//! `data`), `port` (the pod's port) and `requestID` (the same for both): the kubelet accepts each
//! (`SYN_REPLY`) and, once it has the pair, connects to `localhost:<port>` inside the pod's
//! network namespace ([`crate::runtime::Runtime::port_forward`]). Bytes then flow between the
//! data stream and that connection; the client's `FIN` on the data stream half-closes the
//! connection, the pod's end of the connection is a `FIN` on the data stream. A connection that
//! cannot be made is a message on the error stream, in Kubernetes' words (`error forwarding
//! port 80 to pod web, uid …: …`), which kubectl prints. Either way the error stream ends with a
//! `FIN`, which kubectl waits for. `RST_STREAM` on the data stream (kubectl sends it once its
//! local connection is done) stops the forwarding; `PING`s are answered; `GOAWAY` or the end of
//! the WebSocket ends every forwarded connection.
//!
//! The Python client (and other WebSocket-only clients) speak the older channel protocol
//! `v4.channel.k8s.io` instead, with the ports in the query (`ports=8080` or `port=8080`): one
//! connection per port for the whole session (see [`channel_session`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::logs::RuntimeSlot;
use crate::runtime::Runtime;
use crate::spdy::{self, Decoder, Encoder, Frame};

/// The streaming protocol of port forwarding, tunnelled as SPDY in a WebSocket.
pub const PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// The WebSocket channel protocol of port forwarding (what the Python client speaks).
pub const CHANNEL_PROTOCOL: &str = "v4.channel.k8s.io";

struct ForwardState {
    root_dir: PathBuf,
    runtime: RuntimeSlot,
}

/// The router serving `/portForward/{namespace}/{pod}`; pods are found by their log
/// directories under `root_dir` (as for logs), the runtime through `runtime`.
pub fn router(root_dir: PathBuf, runtime: RuntimeSlot) -> Router {
    Router::new()
        .route("/portForward/{namespace}/{pod}", any(port_forward))
        .with_state(Arc::new(ForwardState { root_dir, runtime }))
}

async fn port_forward(
    State(state): State<Arc<ForwardState>>,
    UrlPath((namespace, pod)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if let Err(message) = crate::logs::check_names(&namespace, &pod, "portforward") {
        return (StatusCode::BAD_REQUEST, message).into_response();
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade.protocols([PROTOCOL, CHANNEL_PROTOCOL]),
        Err(_) => {
            return (StatusCode::BAD_REQUEST, format!("port forwarding needs a WebSocket upgrade ({PROTOCOL})"))
                .into_response();
        }
    };
    let channels = match upgrade.selected_protocol() {
        None => {
            let message = format!("port forwarding speaks {PROTOCOL} or {CHANNEL_PROTOCOL}");
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
        Some(protocol) => protocol == CHANNEL_PROTOCOL,
    };
    let ports = match ports(query.as_deref().unwrap_or_default()) {
        Ok(ports) => ports,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    if channels && ports.is_empty() {
        return (StatusCode::BAD_REQUEST, "query parameter \"port\" is required").into_response();
    }
    let (Some(uid), Some(runtime)) = (crate::logs::pod_uid(&state.root_dir, &namespace, &pod), state.runtime.get())
    else {
        return (StatusCode::NOT_FOUND, format!("pod {namespace}/{pod} is not on this node")).into_response();
    };
    let pod = Pod { name: pod, uid };
    if channels {
        upgrade.on_upgrade(move |socket| channel_session(socket, runtime, pod, ports))
    } else {
        upgrade.on_upgrade(move |socket| session(socket, runtime, pod))
    }
}

/// The ports of the query (`port=80&port=8080` as the Kubernetes apiserver asks its kubelets,
/// or `ports=80,8080` as clients ask the apiserver), at most 64 (two channels each).
fn ports(query: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key != "port" && key != "ports" {
            continue;
        }
        for port in value.split(',') {
            match port.trim().parse::<u16>() {
                Ok(port @ 1..) => ports.push(port),
                _ => return Err(format!("invalid port {port:?}: ports must be 1 to 65535")),
            }
        }
    }
    if ports.len() > 64 {
        return Err(format!("{} ports asked for, at most 64 may be forwarded at once", ports.len()));
    }
    Ok(ports)
}

/// A `v4.channel.k8s.io` session: one connection per port asked for, made at once. Every
/// binary message starts with a channel: `2 × i` carries the data of the `i`-th port (both
/// ways), `2 × i + 1` its errors (to the client only); each of those channels first says its
/// port (2 bytes, little-endian). The session closes once every port's connection has ended
/// (the client's only sign that the pod closed it) or when the client leaves.
async fn channel_session(socket: WebSocket, runtime: Arc<dyn Runtime>, pod: Pod, ports: Vec<u16>) {
    let (mut sink, mut source) = socket.split();
    let (messages, mut outgoing) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            if sink.send(Message::Binary(message.into())).await.is_err() {
                return;
            }
        }
        let _ = sink.send(Message::Close(Some(CloseFrame { code: 1000, reason: "".into() }))).await;
    });
    let mut inbound = Vec::new();
    let mut forwards = JoinSet::new();
    for (index, port) in (0u8..).zip(ports) {
        for channel in [index * 2, index * 2 + 1] {
            let _ = messages.send(channel_message(channel, &port.to_le_bytes())).await;
        }
        let (sender, receiver) = mpsc::channel(16);
        inbound.push(sender);
        let channel = Channel::WebSocket { messages: messages.clone(), index };
        let stop = CancellationToken::new();
        forwards.spawn(forward(runtime.clone(), pod.clone(), port, receiver, stop, channel));
    }
    drop(messages);
    let reader = async {
        while let Some(Ok(message)) = source.next().await {
            match message {
                Message::Binary(data) => {
                    let Some((&channel, bytes)) = data.split_first() else { continue };
                    let Some(port) = inbound.get(usize::from(channel / 2)).filter(|_| channel % 2 == 0) else {
                        continue;
                    };
                    let _ = port.send(Bytes::copy_from_slice(bytes)).await; // that connection is over
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::select! {
        () = reader => {}
        () = async { while forwards.join_next().await.is_some() {} } => {}
    }
    forwards.shutdown().await;
    let _ = writer.await;
}

/// The pod forwarded to, for messages.
#[derive(Clone, Debug)]
struct Pod {
    name: String,
    uid: String,
}

/// One SPDY connection: reads frames until the client goes away, while one task writes every
/// frame out (header compression needs them in order) and one task per forwarded connection
/// moves its bytes.
async fn session(socket: WebSocket, runtime: Arc<dyn Runtime>, pod: Pod) {
    let (mut sink, mut source) = socket.split();
    let (frames, mut outgoing) = mpsc::channel::<Frame>(64);
    let writer = tokio::spawn(async move {
        let mut encoder = Encoder::default();
        while let Some(frame) = outgoing.recv().await {
            let Ok(bytes) = encoder.encode(&frame) else { continue };
            if sink.send(Message::Binary(bytes.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let mut connection =
        Connection { runtime, pod, frames, pending: HashMap::new(), streams: HashMap::new(), forwards: JoinSet::new() };
    let mut decoder = Decoder::default();
    'read: while let Some(Ok(message)) = source.next().await {
        match message {
            Message::Binary(bytes) => decoder.extend(&bytes),
            Message::Close(_) => break,
            _ => continue,
        }
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    if !connection.handle(frame).await {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::info!(pod = %connection.pod.name, %error, "port forwarding ends: bad SPDY");
                    let _ = connection.frames.send(Frame::GoAway { last_good_stream_id: 0, status: 1 }).await;
                    break 'read;
                }
            }
        }
    }
    connection.forwards.shutdown().await;
    drop(connection);
    let _ = writer.await;
}

/// The first stream of a pair, waiting for the other.
struct Half {
    stream_id: u32,
    /// For a data stream: what the client sends on it.
    inbound: Option<mpsc::Receiver<Bytes>>,
}

/// What the connection knows of a stream the client opened and has not finished.
struct Stream {
    /// Where the client's bytes on a data stream go (until its `FIN`).
    inbound: Option<mpsc::Sender<Bytes>>,
    /// Cancelled by the client's `RST_STREAM`.
    reset: CancellationToken,
}

struct Connection {
    runtime: Arc<dyn Runtime>,
    pod: Pod,
    frames: mpsc::Sender<Frame>,
    /// By `requestID`: one stream of each pair `(error, data)` that is still alone.
    pending: HashMap<String, (Option<Half>, Option<Half>)>,
    streams: HashMap<u32, Stream>,
    forwards: JoinSet<()>,
}

impl Connection {
    /// Acts on one frame from the client; `false` when the connection is over.
    async fn handle(&mut self, frame: Frame) -> bool {
        match frame {
            Frame::SynStream { stream_id, headers, .. } => self.open(stream_id, &headers).await,
            Frame::Data { stream_id, fin, data } => {
                if let Some(stream) = self.streams.get_mut(&stream_id) {
                    if let (Some(inbound), false) = (&stream.inbound, data.is_empty()) {
                        // The forwarding may be over already; then the bytes have nowhere to go.
                        let _ = inbound.send(data).await;
                    }
                    if fin {
                        // An error stream is done with (kubectl finishes it at once); a data
                        // stream's reset still matters.
                        if stream.inbound.take().is_none() {
                            self.streams.remove(&stream_id);
                        }
                    }
                }
            }
            Frame::RstStream { stream_id, .. } => {
                if let Some(stream) = self.streams.remove(&stream_id) {
                    stream.reset.cancel();
                }
            }
            Frame::Ping(id) => {
                let _ = self.frames.send(Frame::Ping(id)).await;
            }
            Frame::GoAway { .. } => return false,
            Frame::SynReply { .. } | Frame::Other(_) => {}
        }
        true
    }

    /// Accepts a stream and starts forwarding once both streams of its pair are open.
    async fn open(&mut self, stream_id: u32, headers: &spdy::Headers) {
        let header = |name: &str| headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
        let port = header("port").and_then(|port| port.parse::<u16>().ok()).filter(|port| *port > 0);
        let (Some(port), Some(kind @ ("data" | "error"))) = (port, header("streamtype")) else {
            tracing::info!(pod = %self.pod.name, stream_id, "refused a stream without a port or streamType");
            let _ = self.frames.send(Frame::RstStream { stream_id, status: spdy::PROTOCOL_ERROR }).await;
            return;
        };
        let data = kind == "data";
        // Clients before requestID paired a data stream with the error stream opened just
        // before it (stream ids go up by 2).
        let request = match header("requestid") {
            Some(id) => id.to_string(),
            None if data => stream_id.saturating_sub(2).to_string(),
            None => stream_id.to_string(),
        };
        let _ = self.frames.send(Frame::SynReply { stream_id, headers: Vec::new(), fin: false }).await;
        let reset = CancellationToken::new();
        let (inbound, receiver) = if data {
            let (sender, receiver) = mpsc::channel(16);
            (Some(sender), Some(receiver))
        } else {
            (None, None)
        };
        self.streams.insert(stream_id, Stream { inbound, reset });
        let pair = self.pending.entry(request.clone()).or_default();
        let half = Half { stream_id, inbound: receiver };
        if data {
            pair.1 = Some(half);
        } else {
            pair.0 = Some(half);
        }
        if let (Some(_), Some(_)) = pair {
            let Some((Some(error), Some(data))) = self.pending.remove(&request) else { return };
            let reset = self.streams.get(&data.stream_id).map(|stream| stream.reset.clone()).unwrap_or_default();
            let channel = Channel::Spdy { frames: self.frames.clone(), data: data.stream_id, error: error.stream_id };
            let inbound = data.inbound.unwrap_or_else(|| mpsc::channel(1).1);
            self.forwards.spawn(forward(self.runtime.clone(), self.pod.clone(), port, inbound, reset, channel));
        }
    }
}

/// Where one forwarded connection's bytes and error go to the client.
enum Channel {
    /// A pair of SPDY streams.
    Spdy { frames: mpsc::Sender<Frame>, data: u32, error: u32 },
    /// Channels `2 × index` (data) and `2 × index + 1` (error) of a `v4.channel.k8s.io`
    /// WebSocket.
    WebSocket { messages: mpsc::Sender<Vec<u8>>, index: u8 },
}

impl Channel {
    /// Sends bytes from the pod; `false` when the client is gone.
    async fn data(&self, data: &[u8]) -> bool {
        match self {
            Channel::Spdy { frames, data: stream_id, .. } => {
                let frame = Frame::Data { stream_id: *stream_id, fin: false, data: Bytes::copy_from_slice(data) };
                frames.send(frame).await.is_ok()
            }
            Channel::WebSocket { messages, index } => messages.send(channel_message(index * 2, data)).await.is_ok(),
        }
    }

    /// Tells the client why there is no connection.
    async fn error(&self, message: &str) {
        match self {
            Channel::Spdy { frames, error, .. } => {
                let data = Bytes::copy_from_slice(message.as_bytes());
                let _ = frames.send(Frame::Data { stream_id: *error, fin: false, data }).await;
            }
            Channel::WebSocket { messages, index } => {
                let _ = messages.send(channel_message(index * 2 + 1, message.as_bytes())).await;
            }
        }
    }

    /// The end of both streams (SPDY: `FIN`s; kubectl waits for the error stream's). A
    /// WebSocket channel has no end of its own: the session closes once every port is done.
    async fn finish(&self) {
        if let Channel::Spdy { frames, data, error } = self {
            for stream_id in [*data, *error] {
                let _ = frames.send(Frame::Data { stream_id, fin: true, data: Bytes::new() }).await;
            }
        }
    }
}

/// A binary message of the channel protocol: the channel, then the bytes.
fn channel_message(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(data.len() + 1);
    message.push(channel);
    message.extend_from_slice(data);
    message
}

/// One forwarded connection: connects to `port` in the pod and moves bytes between it and the
/// client until the pod's side ends, the client's side breaks, or `stop` (the client's reset).
/// What the client sends arrives on `inbound`; its end half-closes the connection.
async fn forward(
    runtime: Arc<dyn Runtime>,
    pod: Pod,
    port: u16,
    mut inbound: mpsc::Receiver<Bytes>,
    stop: CancellationToken,
    channel: Channel,
) {
    match runtime.port_forward(&pod.uid, port).await {
        Ok(connection) => {
            tracing::debug!(pod = %pod.name, port, "forwarding a connection");
            let (mut from_pod, mut to_pod) = connection.into_split();
            let upstream = async {
                while let Some(bytes) = inbound.recv().await {
                    if to_pod.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                // The client sends no more: the pod's side reads an end of file.
                let _ = to_pod.shutdown().await;
                std::future::pending::<()>().await;
            };
            let downstream = async {
                let mut buffer = vec![0u8; spdy::MAX_DATA];
                while let Ok(n @ 1..) = from_pod.read(&mut buffer).await {
                    if !channel.data(&buffer[..n]).await {
                        return;
                    }
                }
            };
            tokio::select! {
                () = downstream => {}
                () = upstream => {}
                () = stop.cancelled() => {}
            }
        }
        Err(error) => {
            tracing::info!(pod = %pod.name, port, %error, "port forwarding failed");
            channel.error(&format!("error forwarding port {port} to pod {}, uid {}: {error}", pod.name, pod.uid)).await;
        }
    }
    channel.finish().await;
}
