//! `kubectl exec` on the node: the kubelet's `/exec/{namespace}/{pod}/{container}`, a WebSocket
//! speaking Kubernetes' remote-command protocol `v5.channel.k8s.io`, which the apiserver's
//! `pods/exec` relays.
//!
//! The query is Kubernetes' (`command=` once per word, `stdin`, `stdout`, `stderr`, `tty`).
//! Every WebSocket message carries its channel in its first byte: 0 stdin (client → server), 1
//! stdout, 2 stderr, 3 the final status (a `Status` as JSON), 255 "close this channel" (the
//! client sends `[255, 0]` when its stdin ends), 4 a terminal's new size (`{"Width":80,
//! "Height":24}`, with `tty=true`: `kubectl exec -it` sends one at the start and one per
//! resize of the user's terminal). The command runs through
//! [`crate::runtime::Runtime::exec_stream`]; when it has ended and its output is sent, the
//! status says `Success`, or `Failure` with reason `NonZeroExitCode` and the code as the cause
//! `ExitCode`, which `kubectl` turns into its own exit code. The server's messages are binary;
//! the client's may be text too, read as their bytes, as Kubernetes reads them (the Python
//! client sends what it writes to stdin or the resize channel as text when it is a `str`).
//!
//! With `tty=true` the command gets a terminal: its output comes on stdout only (a terminal has
//! one output). The command starts once the client's first size has come (up to
//! [`FIRST_SIZE_WAIT`]), so that it never sees a terminal without a size; the runtime resizes
//! it on every size sent later.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::logs::RuntimeSlot;
use crate::runtime::{AttachSession, Runtime, RuntimeError, StdinMessage, TerminalSize};

pub use rkube_api::remotecommand::PROTOCOL;
use rkube_api::remotecommand::{CLOSE, RESIZE, STATUS, STDERR, STDIN, STDOUT};

/// How long a terminal session waits for the client's first size before it starts the command
/// with the runtime's default.
pub const FIRST_SIZE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// What an exec request asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Whether the client sends stdin.
    pub stdin: bool,
    /// Whether a terminal was asked for.
    pub tty: bool,
}

impl ExecOptions {
    /// Reads the query of an exec request (`command=ls&command=-l&stdin=true`).
    pub fn parse(query: &str) -> ExecOptions {
        let mut options = ExecOptions::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let yes = value == "true" || value == "1";
            match key.as_ref() {
                "command" => options.command.push(value.into_owned()),
                "stdin" => options.stdin = yes,
                "tty" => options.tty = yes,
                _ => {}
            }
        }
        options
    }
}

struct ExecState {
    root_dir: PathBuf,
    runtime: RuntimeSlot,
}

/// The router serving `/exec/{namespace}/{pod}/{container}` and
/// `/attach/{namespace}/{pod}/{container}`; pods are found by their log directories under
/// `root_dir` (as for logs), the runtime through `runtime`.
pub fn router(root_dir: PathBuf, runtime: RuntimeSlot) -> Router {
    Router::new()
        .route("/exec/{namespace}/{pod}/{container}", any(exec))
        .route("/attach/{namespace}/{pod}/{container}", any(attach))
        .with_state(Arc::new(ExecState { root_dir, runtime }))
}

/// A container a streaming request is for, found on this node: its pod's uid and the runtime.
type Target = (String, Arc<dyn Runtime>, WebSocketUpgrade);

/// Checks a streaming request's names and upgrade and finds its container (`what`: `exec`
/// or `attach`, for messages).
fn target(
    state: &ExecState,
    (namespace, pod, container): (&str, &str, &str),
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    what: &str,
) -> Result<Target, (StatusCode, String)> {
    if let Err(message) = crate::logs::check_names(namespace, pod, container) {
        return Err((StatusCode::BAD_REQUEST, message));
    }
    let Ok(upgrade) = upgrade else {
        return Err((StatusCode::BAD_REQUEST, format!("{what} needs a WebSocket upgrade ({PROTOCOL})")));
    };
    let uid = crate::logs::container_dir(&state.root_dir, namespace, pod, container)
        .and_then(|dir| dir.parent()?.file_name()?.to_str()?.rsplit('_').next().map(String::from));
    let (Some(uid), Some(runtime)) = (uid, state.runtime.get()) else {
        let message = format!("container {container} of pod {namespace}/{pod} is not on this node");
        return Err((StatusCode::NOT_FOUND, message));
    };
    Ok((uid, runtime, upgrade))
}

async fn exec(
    State(state): State<Arc<ExecState>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let options = ExecOptions::parse(query.as_deref().unwrap_or_default());
    if options.command.is_empty() {
        return (StatusCode::BAD_REQUEST, "you must specify at least one command for the container").into_response();
    }
    match target(&state, (&namespace, &pod, &container), upgrade, "exec") {
        Ok((uid, runtime, upgrade)) => {
            upgrade.protocols([PROTOCOL]).on_upgrade(move |socket| session(socket, runtime, uid, container, options))
        }
        Err(refusal) => refusal.into_response(),
    }
}

async fn attach(
    State(state): State<Arc<ExecState>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let options = ExecOptions::parse(query.as_deref().unwrap_or_default());
    match target(&state, (&namespace, &pod, &container), upgrade, "attach") {
        Ok((uid, runtime, upgrade)) => upgrade.protocols([PROTOCOL]).on_upgrade(move |socket| async move {
            let session = match runtime.attach(&uid, &container).await {
                Err(RuntimeError::NoStreams { .. }) => {
                    // No process streams: the output from its log, as Kubernetes shows it.
                    let names = (namespace.as_str(), pod.as_str(), container.as_str());
                    let output = crate::logs::attach_to_log(&state.root_dir, names, state.runtime.clone()).await;
                    output
                        .map(|output| AttachSession { output, stdin: None, resize: None })
                        .ok_or_else(|| RuntimeError::NotRunning { uid: uid.clone(), container: container.clone() })
                }
                session => session,
            };
            attach_session(socket, session, uid, container, options.stdin).await
        }),
        Err(refusal) => refusal.into_response(),
    }
}

/// An attached client: the container's output from now on (stdout, stderr apart unless it has
/// a terminal), its stdin (with `stdin`) and terminal sizes, until the process ends (then a
/// `Success` status) or the client leaves.
async fn attach_session(
    socket: WebSocket,
    session: Result<AttachSession, RuntimeError>,
    uid: String,
    container: String,
    stdin: bool,
) {
    let (mut sink, mut incoming) = socket.split();
    let AttachSession { mut output, stdin: input, resize } = match session {
        Ok(session) => session,
        Err(error) => {
            let text = status(&Err(error.to_string())).to_string();
            let _ = sink.send(frame(STATUS, text.as_bytes())).await;
            let _ = sink.send(normal_close()).await;
            return;
        }
    };
    tracing::info!(%uid, %container, stdin, "attached");
    let mut input = if stdin { input } else { None };
    let mut reader = tokio::spawn(async move {
        while let Some(Ok(message)) = incoming.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
            let Some(data) = payload(&message) else { continue };
            match data.split_first() {
                Some((&STDIN, bytes)) => {
                    if let Some(sender) = &input {
                        let _ = sender.send(StdinMessage::Data(bytes.to_vec())).await; // stdin closed
                    }
                }
                Some((&RESIZE, json)) => {
                    if let (Some(resize), Ok(size)) = (&resize, serde_json::from_slice::<TerminalSize>(json)) {
                        let _ = resize.send(size).await; // the process has ended
                    }
                }
                Some((&CLOSE, [STDIN])) => {
                    if let Some(sender) = input.take() {
                        let _ = sender.send(StdinMessage::End).await;
                    }
                }
                _ => {}
            }
        }
        // The client left: for `stdinOnce` that ends the container's stdin too.
        if let Some(sender) = input {
            let _ = sender.send(StdinMessage::End).await;
        }
    });
    loop {
        tokio::select! {
            _ = &mut reader => return, // the client left
            received = output.recv() => match received {
                Ok(chunk) => {
                    let channel = if chunk.stderr { STDERR } else { STDOUT };
                    if sink.send(frame(channel, &chunk.data)).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!(%uid, %container, skipped, "an attached client fell behind");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    }
    tracing::info!(%uid, %container, "the attached process ended");
    let _ = sink.send(frame(STATUS, status(&Ok(0)).to_string().as_bytes())).await;
    let _ = sink.send(normal_close()).await;
    reader.abort();
}

/// A `Status` as Kubernetes' remote-command protocol ends a session with.
pub fn status(result: &Result<i32, String>) -> serde_json::Value {
    match result {
        Ok(0) => serde_json::json!({"metadata": {}, "status": "Success"}),
        Ok(code) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}
        }),
        Err(message) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "code": 500
        }),
    }
}

/// The bytes of a client's data message, binary or text (`None` for control messages).
fn payload(message: &Message) -> Option<&[u8]> {
    match message {
        Message::Binary(data) => Some(data),
        Message::Text(text) => Some(text.as_str().as_bytes()),
        _ => None,
    }
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

/// A close with code 1000: clients read it as the end of every stream (a close without a
/// code is an error to kubectl, which would drop output it has not read yet).
fn normal_close() -> Message {
    Message::Close(Some(CloseFrame { code: 1000, reason: "".into() }))
}

/// Copies one output stream into `frames` on `channel` until it ends.
async fn pump(mut from: Box<dyn AsyncRead + Send + Unpin>, channel: u8, frames: mpsc::Sender<Message>) {
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => {
                if frames.send(frame(channel, &buffer[..read])).await.is_err() {
                    return; // the client is gone
                }
            }
        }
    }
}

/// The client's first terminal size, read before the command starts; stdin that came before it
/// is kept in `early` for the command.
async fn first_size(incoming: &mut futures::stream::SplitStream<WebSocket>, early: &mut Vec<Message>) -> TerminalSize {
    let wait = async {
        while let Some(Ok(message)) = incoming.next().await {
            if let Some((&RESIZE, json)) = payload(&message).and_then(<[u8]>::split_first)
                && let Ok(size) = serde_json::from_slice::<TerminalSize>(json)
            {
                return size;
            }
            early.push(message);
        }
        TerminalSize::default()
    };
    tokio::time::timeout(FIRST_SIZE_WAIT, wait).await.unwrap_or_default()
}

async fn session(socket: WebSocket, runtime: Arc<dyn Runtime>, uid: String, container: String, options: ExecOptions) {
    let (mut sink, mut incoming) = socket.split();
    let mut early = Vec::new();
    let tty = if options.tty { Some(first_size(&mut incoming, &mut early).await) } else { None };
    let started = runtime.exec_stream(&uid, &container, &options.command, options.stdin, tty).await;
    let session = match started {
        Ok(session) => session,
        Err(error) => {
            let text = status(&Err(error.to_string())).to_string();
            let _ = sink.send(frame(STATUS, text.as_bytes())).await;
            let _ = sink.send(normal_close()).await;
            return;
        }
    };
    tracing::info!(%uid, %container, command = ?options.command, "exec started");
    // Client → stdin and terminal sizes, until the client closes stdin or the session.
    let mut stdin = session.stdin;
    let resize = session.resize;
    let input = tokio::spawn(async move {
        let mut incoming = futures::stream::iter(early.into_iter().map(Ok)).chain(incoming);
        while let Some(Ok(message)) = incoming.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
            match payload(&message).and_then(<[u8]>::split_first) {
                Some((&STDIN, bytes)) => {
                    if let Some(writer) = stdin.as_mut()
                        && writer.write_all(bytes).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Some((&RESIZE, json)) => match (&resize, serde_json::from_slice::<TerminalSize>(json)) {
                    (Some(resize), Ok(size)) => {
                        let _ = resize.send(size).await; // the command has ended
                    }
                    (None, _) => tracing::debug!("a terminal size for a session without a terminal"),
                    (_, Err(error)) => tracing::debug!(%error, "an unreadable terminal size"),
                },
                Some((&CLOSE, [STDIN])) => {
                    // EOF for the command.
                    if let Some(mut writer) = stdin.take() {
                        let _ = writer.shutdown().await;
                    }
                }
                _ => {}
            }
        }
    });
    // stdout and stderr → client, until both end (the command has ended).
    let (frames, mut outgoing) = mpsc::channel(16);
    tokio::spawn(pump(session.stdout, STDOUT, frames.clone()));
    tokio::spawn(pump(session.stderr, STDERR, frames));
    while let Some(message) = outgoing.recv().await {
        if sink.send(message).await.is_err() {
            input.abort();
            return;
        }
    }
    let code = match session.exit.await {
        Ok(Ok(code)) => Ok(code),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(RuntimeError::Unsupported("the exec ended without an exit code".into()).to_string()),
    };
    tracing::info!(%uid, %container, ?code, "exec ended");
    let _ = sink.send(frame(STATUS, status(&code).to_string().as_bytes())).await;
    let _ = sink.send(normal_close()).await;
    input.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_lists_the_command_word_by_word() {
        let options =
            ExecOptions::parse("command=sh&command=-c&command=echo%20hi%3B%20exit%203&stdin=true&stdout=true");
        assert_eq!(options.command, ["sh", "-c", "echo hi; exit 3"]);
        assert!(options.stdin && !options.tty);
        assert!(ExecOptions::parse("command=sh&stdin=true&tty=true").tty);
    }

    #[test]
    fn terminal_sizes_read_as_kubectl_sends_them() {
        let size: TerminalSize = serde_json::from_slice(br#"{"Width":123,"Height":45}"#).expect("size");
        assert_eq!(size, TerminalSize { width: 123, height: 45 });
    }

    #[test]
    fn text_messages_carry_their_channel_as_binary_ones_do() {
        let text = Message::Text("\u{4}{\"Width\":77,\"Height\":22}".into());
        let (channel, json) = payload(&text).and_then(<[u8]>::split_first).expect("a data message");
        assert_eq!(*channel, RESIZE);
        let size: TerminalSize = serde_json::from_slice(json).expect("size");
        assert_eq!(size, TerminalSize { width: 77, height: 22 });
        assert_eq!(payload(&Message::Binary(vec![STDIN, b'x'].into())), Some(&[STDIN, b'x'][..]));
        assert_eq!(payload(&Message::Ping(Vec::new().into())), None);
    }

    #[test]
    fn exit_codes_become_the_status_kubectl_reads() {
        assert_eq!(status(&Ok(0))["status"], "Success");
        let failed = status(&Ok(3));
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0], serde_json::json!({"reason": "ExitCode", "message": "3"}));
        assert_eq!(status(&Err("no such container".into()))["message"], "no such container");
    }
}
