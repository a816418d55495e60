//! The client side of Kubernetes' remote-command protocol (`v5.channel.k8s.io`), shared by
//! `exec`, `attach` and `run -i`: a WebSocket whose binary messages start with their channel
//! (0 stdin, 1 stdout, 2 stderr, 3 the final `Status`, 4 the terminal's size, 255 "close this
//! channel").
//!
//! With a terminal (`-t`, only when `-i` too and this process's stdin is a terminal, as kubectl
//! decides in its `SetupTTY`) the user's terminal is put in raw mode for the session (keys,
//! Ctrl-C among them, go to the remote terminal as typed) and restored when the session ends,
//! also on an error; its size is sent first (`{"Width":W,"Height":H}` on channel 4, before any
//! stdin) and again after every `SIGWINCH` (once a burst of them has settled). Output is written as it arrives; stdin's end is sent
//! as `[255, 0]`. The session ends when the server closes the WebSocket; its `Status` decides
//! the outcome: `Success`, the command's own exit code (`NonZeroExitCode`, kubectl's
//! `command terminated with exit code N`), or the server's error.
//!
//! Not promised: kubectl's escape sequences (there are none), and the SPDY protocol (rkube
//! serves WebSockets only).

use std::io::IsTerminal as _;

use futures::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::context::WebSocket;
use crate::error::{Error, Result};

pub use rkube_api::remotecommand::PROTOCOL;
use rkube_api::remotecommand::{CLOSE, RESIZE, STATUS, STDERR, STDIN, STDOUT};

/// How long a burst of terminal resizes may take; only the size at its end is sent.
const RESIZE_SETTLE: std::time::Duration = std::time::Duration::from_millis(30);

/// Which streams a session carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streams {
    /// This process's stdin goes to the remote process.
    pub stdin: bool,
    /// The remote process has a terminal (then there is no separate stderr).
    pub tty: bool,
}

impl Streams {
    /// kubectl's `SetupTTY`: a terminal only with stdin, and only when this process's stdin is
    /// a terminal; otherwise says so on stderr (as kubectl does) and goes on without one.
    pub fn decide(stdin: bool, tty: bool) -> Streams {
        if !stdin {
            return Streams { stdin, tty: false };
        }
        if tty && !std::io::stdin().is_terminal() {
            eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
            return Streams { stdin, tty: false };
        }
        Streams { stdin, tty }
    }

    /// The query parameters that ask for these streams (stdout always; stderr without a
    /// terminal).
    pub fn query(&self) -> Vec<String> {
        let mut query = vec!["stdout=true".to_string()];
        if !self.tty {
            query.push("stderr=true".into());
        }
        if self.stdin {
            query.push("stdin=true".into());
        }
        if self.tty {
            query.push("tty=true".into());
        }
        query
    }
}

/// The user's terminal in raw mode until dropped, when its settings are put back.
struct RawTerminal {
    saved: rustix::termios::Termios,
}

impl RawTerminal {
    fn enter() -> Result<RawTerminal> {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&stdin)
            .map_err(|e| Error::msg(format!("cannot read the terminal's settings: {e}")))?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw)
            .map_err(|e| Error::msg(format!("cannot put the terminal in raw mode: {e}")))?;
        Ok(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // Best effort: the terminal may be gone already.
        let _ = rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, &self.saved);
    }
}

/// The size of the user's terminal (stdout's, else stdin's) as the resize channel sends it.
fn terminal_size() -> Option<serde_json::Value> {
    let size = rustix::termios::tcgetwinsize(std::io::stdout())
        .or_else(|_| rustix::termios::tcgetwinsize(std::io::stdin()))
        .ok()?;
    (size.ws_col > 0 && size.ws_row > 0).then(|| serde_json::json!({"Width": size.ws_col, "Height": size.ws_row}))
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

/// Where a session's streams come from and go to.
pub struct Io<'a> {
    /// What is sent as stdin (with `Streams::stdin`), until it ends.
    pub input: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    /// Where the remote stdout goes.
    pub stdout: &'a mut dyn std::io::Write,
    /// Where the remote stderr goes.
    pub stderr: &'a mut dyn std::io::Write,
}

impl std::fmt::Debug for Io<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io").finish_non_exhaustive()
    }
}

/// Runs one session over `socket` with this process's stdin, stdout and stderr until the
/// server ends it; see the module docs. `what` names the request in errors (`exec`, `attach`).
pub async fn run(socket: WebSocket, streams: Streams, what: &str) -> Result<()> {
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    let io = Io { input: Box::new(tokio::io::stdin()), stdout: &mut stdout, stderr: &mut stderr };
    run_with(socket, streams, what, io).await
}

/// Runs one session over `socket` with the streams of `io` (with a terminal: this process's
/// terminal, whatever `io` says about input).
pub async fn run_with(socket: WebSocket, streams: Streams, what: &str, io: Io<'_>) -> Result<()> {
    let Io { input, stdout, stderr } = io;
    let (mut sink, mut incoming) = socket.split();
    let raw = if streams.tty { Some(RawTerminal::enter()?) } else { None };
    // One writer owns the sink; stdin and resizes queue their frames to it.
    let (frames, mut queued) = mpsc::channel::<Message>(16);
    if streams.tty
        && let Some(size) = terminal_size()
    {
        let _ = frames.send(frame(RESIZE, size.to_string().as_bytes())).await; // the writer starts below
    }
    let writer = tokio::spawn(async move {
        while let Some(message) = queued.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
    });
    let mut tasks = Vec::new();
    if streams.stdin {
        let frames = frames.clone();
        let mut stdin = input;
        tasks.push(tokio::spawn(async move {
            let mut buffer = vec![0u8; 32 * 1024];
            loop {
                match stdin.read(&mut buffer).await {
                    Ok(0) | Err(_) => {
                        let _ = frames.send(frame(CLOSE, &[STDIN])).await; // the session ended
                        return;
                    }
                    Ok(read) => {
                        if frames.send(frame(STDIN, &buffer[..read])).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }));
    }
    if streams.tty {
        let frames = frames.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut changes) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) else {
                return;
            };
            let mut last = terminal_size();
            while changes.recv().await.is_some() {
                // A resize often comes as a burst (`stty cols 77 rows 22` is two changes, a
                // dragged window many): let it settle, then send the size it settled at.
                tokio::time::sleep(RESIZE_SETTLE).await;
                let size = terminal_size();
                if size != last
                    && let Some(size) = &size
                    && frames.send(frame(RESIZE, size.to_string().as_bytes())).await.is_err()
                {
                    return;
                }
                last = size;
            }
        }));
    }
    drop(frames);
    let mut outcome = Err(Error::msg(format!("{what}: the connection ended before the command's status arrived")));
    while let Some(message) = incoming.next().await {
        let data = match message {
            Ok(Message::Binary(data)) => data,
            Ok(Message::Close(_)) => break,
            Ok(_) => continue,
            Err(e) => {
                outcome = Err(Error::msg(format!("{what}: {e}")));
                break;
            }
        };
        match data.split_first() {
            Some((&STDOUT, bytes)) => write(stdout, bytes)?,
            Some((&STDERR, bytes)) => write(stderr, bytes)?,
            Some((&STATUS, bytes)) => outcome = status(bytes),
            _ => {}
        }
    }
    for task in tasks {
        task.abort();
    }
    writer.abort();
    drop(raw);
    outcome
}

fn write(to: &mut dyn std::io::Write, bytes: &[u8]) -> Result<()> {
    to.write_all(bytes)?;
    to.flush()?;
    Ok(())
}

/// What the final `Status` of a session means for rkubectl.
pub fn status(bytes: &[u8]) -> Result<()> {
    let status: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| Error::msg(format!("unreadable status: {e}")))?;
    if status["status"] == "Success" {
        return Ok(());
    }
    if status["reason"] == "NonZeroExitCode" {
        let code = status["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|cause| cause["reason"] == "ExitCode")
            .and_then(|cause| cause["message"].as_str()?.parse().ok())
            .unwrap_or(1);
        return Err(Error::Exit(code));
    }
    Err(Error::Server {
        reason: status["reason"].as_str().unwrap_or("Unknown").to_string(),
        message: status["message"].as_str().unwrap_or_default().to_string(),
        code: u16::try_from(status["code"].as_u64().unwrap_or(500)).unwrap_or(500),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_decides_the_exit_code() {
        assert!(status(br#"{"metadata":{},"status":"Success"}"#).is_ok());
        let failed = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        assert_eq!(status(failed).map_err(|e| e.exit_code()), Err(3));
        let broken = br#"{"status":"Failure","reason":"InternalError","message":"container main of pod x is not running","code":500}"#;
        let error = status(broken).expect_err("a failure");
        assert_eq!((error.exit_code(), error.to_string().contains("is not running")), (1, true));
        assert!(status(b"nonsense").is_err());
    }

    #[test]
    fn a_terminal_drops_stderr_and_needs_stdin() {
        assert_eq!(Streams { stdin: true, tty: true }.query(), ["stdout=true", "stdin=true", "tty=true"]);
        assert_eq!(Streams { stdin: false, tty: false }.query(), ["stdout=true", "stderr=true"]);
        assert_eq!(Streams::decide(false, true), Streams { stdin: false, tty: false });
    }
}
