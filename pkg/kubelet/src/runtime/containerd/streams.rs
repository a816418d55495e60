//! Containers whose spec asks for `stdin` or `tty`: their standard streams are FIFOs the
//! kubelet holds (as containerd's CRI plugin holds every container's), not the log driver's
//! pipes, so that `kubectl attach` and `kubectl run -i` reach the running process. The log
//! driver cannot serve them: containerd's shim gives a `binary://` logger stdout and stderr
//! only, never a stdin or a terminal.
//!
//! What it keeps true:
//! - the kubelet opens its ends of `<root>/io/<id>/{stdin,stdout,stderr}` before the task is
//!   created (a terminal has no stderr: the shim copies the pseudo-terminal to stdout), so
//!   nothing the process writes is lost;
//! - everything the process writes goes to its log file in the CRI format, as the log driver
//!   writes it (the same [`copy_stream`]), and to every attached client;
//! - the shim keeps a read end of each output FIFO open itself, so a kubelet restart loses
//!   nothing: the process blocks once the pipe is full, and the restarted kubelet takes the
//!   streams up again from `<root>/io/<id>/config.json` ([`ContainerdRuntime::adopt_streams`]);
//! - with `stdinOnce`, the container's stdin closes (containerd's `CloseIO`) when the first
//!   attached client's stdin ends or that client leaves, as Kubernetes does; a closed stdin is
//!   never offered again (`stdin-closed` marks it across restarts);
//! - when the process has ended (both output FIFOs at EOF), attached clients see their output
//!   stream close.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use containerd_client::services::v1::CloseIoRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{broadcast, mpsc};

use super::{ContainerdRuntime, req};
use crate::crilog::{LogWriter, Stream, copy_stream};
use crate::runtime::{AttachSession, Output, RuntimeError, StdinMessage};

/// How a stream-holding container was started; `<root>/io/<id>/config.json`, read again by a
/// restarted kubelet.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamConfig {
    log: PathBuf,
    max_size: u64,
    max_files: usize,
    stdin: bool,
    tty: bool,
    stdin_once: bool,
}

/// The live streams of one container: where its output is broadcast, and its stdin.
pub(super) struct Streams {
    output: broadcast::Sender<Output>,
    stdin: Option<mpsc::Sender<StdinMessage>>,
    tty: bool,
}

/// Live streams by containerd container id.
pub(super) type StreamTable = Arc<Mutex<HashMap<String, Streams>>>;

/// A container's FIFOs, opened by the kubelet, before its task is created.
pub(super) struct OpenStreams {
    id: String,
    dir: PathBuf,
    config: StreamConfig,
    log: LogWriter,
    stdout: pipe::Receiver,
    stderr: Option<pipe::Receiver>,
    stdin: Option<pipe::Sender>,
}

/// The stdio of a task as containerd takes it.
pub(super) struct TaskStdio {
    pub(super) stdin: String,
    pub(super) stdout: String,
    pub(super) stderr: String,
    pub(super) terminal: bool,
}

fn io_error(what: String) -> impl FnOnce(std::io::Error) -> RuntimeError {
    move |source| RuntimeError::Io { what, source }
}

impl ContainerdRuntime {
    /// The directory of container `id`'s FIFOs.
    fn io_dir(&self, id: &str) -> PathBuf {
        self.config.root_dir.join("io").join(id)
    }

    /// Makes and opens the FIFOs of container `id` with `stdin`/`tty`, whose log is `log`;
    /// returns them and the paths for the task.
    pub(super) fn open_streams(
        &self,
        id: &str,
        log: &Path,
        stdin: bool,
        tty: bool,
        stdin_once: bool,
    ) -> Result<(OpenStreams, TaskStdio), RuntimeError> {
        let dir = self.io_dir(id);
        std::fs::create_dir_all(&dir).map_err(io_error(format!("creating {}", dir.display())))?;
        let config = StreamConfig {
            log: log.to_path_buf(),
            max_size: self.config.logs.max_size,
            max_files: self.config.logs.max_files,
            stdin,
            tty,
            stdin_once,
        };
        let text = serde_json::to_vec(&config).unwrap_or_default();
        std::fs::write(dir.join("config.json"), text).map_err(io_error(format!("writing {}", dir.display())))?;
        for name in ["stdout", "stderr", "stdin"] {
            let wanted = match name {
                "stderr" => !tty,
                "stdin" => stdin,
                _ => true,
            };
            if wanted {
                make_fifo(&dir.join(name))?;
            }
        }
        let open = open_fifos(id, &dir, config)?;
        let path =
            |name: &str, present: bool| if present { dir.join(name).display().to_string() } else { String::new() };
        let stdio = TaskStdio {
            stdin: path("stdin", stdin),
            stdout: path("stdout", true),
            stderr: path("stderr", !tty),
            terminal: tty,
        };
        Ok((open, stdio))
    }

    /// Starts copying `open`'s output (to the log and to attached clients) and serving its
    /// stdin; called once the task exists (its shim holds the other ends).
    pub(super) fn start_streams(&self, open: OpenStreams) {
        let OpenStreams { id, dir, config, log, stdout, stderr, stdin } = open;
        let (output, _) = broadcast::channel(256);
        let writer = Arc::new(Mutex::new(log));
        let mut copies = vec![tokio::spawn(copy_output(stdout, Stream::Stdout, output.clone(), Arc::clone(&writer)))];
        if let Some(stderr) = stderr {
            copies.push(tokio::spawn(copy_output(stderr, Stream::Stderr, output.clone(), writer)));
        }
        let stdin = stdin.map(|fifo| {
            let (sender, messages) = mpsc::channel(64);
            let close = CloseStdin { tasks: self.client.tasks(), id: id.clone(), marker: dir.join("stdin-closed") };
            tokio::spawn(write_stdin(fifo, messages, config.stdin_once.then_some(close)));
            sender
        });
        self.streams().insert(id.clone(), Streams { output, stdin, tty: config.tty });
        let table = Arc::clone(&self.streams);
        tokio::spawn(async move {
            futures::future::join_all(copies).await;
            table.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
            tracing::debug!(%id, "the container's streams ended");
        });
    }

    /// Takes up the streams of every running container that has them (after a restart).
    pub(super) async fn adopt_streams(&self) {
        let Ok(entries) = std::fs::read_dir(self.config.root_dir.join("io")) else { return };
        for entry in entries.filter_map(Result::ok) {
            let Some(id) = entry.file_name().to_str().map(String::from) else { continue };
            if id.starts_with("exec-") || self.streams().contains_key(&id) {
                continue;
            }
            let running = matches!(self.task(&id).await, Ok(Some(task)) if task.status == containerd_client::types::v1::Status::Running as i32);
            let config = std::fs::read(entry.path().join("config.json"))
                .ok()
                .and_then(|bytes| serde_json::from_slice::<StreamConfig>(&bytes).ok());
            match (running, config) {
                (true, Some(config)) => match open_fifos(&id, &entry.path(), config) {
                    Ok(open) => {
                        tracing::info!(%id, "taking up the streams of a running container");
                        self.start_streams(open);
                    }
                    Err(error) => tracing::warn!(%id, %error, "cannot take up a container's streams"),
                },
                _ => self.remove_streams(&id),
            }
        }
    }

    /// Forgets container `id`'s FIFOs (it was deleted).
    pub(super) fn remove_streams(&self, id: &str) {
        let dir = self.io_dir(id);
        if dir.exists()
            && let Err(error) = std::fs::remove_dir_all(&dir)
        {
            tracing::debug!(dir = %dir.display(), %error, "cannot remove a container's FIFOs");
        }
    }

    /// Attaches to running container `container` of pod `uid`.
    pub(super) async fn attach_to(&self, uid: &str, container: &str) -> Result<AttachSession, RuntimeError> {
        let id = self.running_id(uid, container).await?;
        let (output, stdin, tty) = {
            let table = self.streams();
            let streams = table.get(&id).ok_or_else(|| RuntimeError::NoStreams { container: container.into() })?;
            (streams.output.subscribe(), streams.stdin.clone().filter(|s| !s.is_closed()), streams.tty)
        };
        let resize = tty.then(|| self.resize_on_request(&id, ""));
        Ok(AttachSession { output, stdin, resize })
    }

    /// The live streams, locked.
    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<String, Streams>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Opens the kubelet's ends of the FIFOs in `dir` that `config` says exist, and the log.
fn open_fifos(id: &str, dir: &Path, config: StreamConfig) -> Result<OpenStreams, RuntimeError> {
    let log = LogWriter::open(&config.log, config.max_size, config.max_files)
        .map_err(io_error(format!("opening the log {}", config.log.display())))?;
    let open = pipe::OpenOptions::new();
    let stdout = open.open_receiver(dir.join("stdout")).map_err(io_error(format!("opening {id}'s stdout")))?;
    let stderr = if config.tty {
        None
    } else {
        Some(open.open_receiver(dir.join("stderr")).map_err(io_error(format!("opening {id}'s stderr")))?)
    };
    let stdin = if config.stdin && !dir.join("stdin-closed").exists() {
        // Read-write, so that opening does not wait for the shim.
        let sender = pipe::OpenOptions::new().read_write(true).open_sender(dir.join("stdin"));
        Some(sender.map_err(io_error(format!("opening {id}'s stdin")))?)
    } else {
        None
    };
    Ok(OpenStreams { id: id.to_string(), dir: dir.to_path_buf(), config, log, stdout, stderr, stdin })
}

/// Makes a FIFO at `path` (an existing one is fine).
fn make_fifo(path: &Path) -> Result<(), RuntimeError> {
    if path.exists() {
        return Ok(());
    }
    rustix::fs::mknodat(rustix::fs::CWD, path, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0)
        .map_err(|errno| RuntimeError::Io { what: format!("mkfifo {}", path.display()), source: errno.into() })
}

/// Copies one output FIFO to attached clients and, through a thread running
/// [`copy_stream`], to the log, until EOF (the process ended).
async fn copy_output(
    mut fifo: pipe::Receiver,
    stream: Stream,
    output: broadcast::Sender<Output>,
    writer: Arc<Mutex<LogWriter>>,
) {
    let (to_log, chunks) = std::sync::mpsc::channel::<Vec<u8>>();
    let log = std::thread::spawn(move || {
        if let Err(error) = copy_stream(ChannelReader { chunks, rest: Vec::new() }, stream, &writer) {
            tracing::warn!(%error, "writing a container's log failed");
        }
    });
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        match fifo.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                let data = bytes::Bytes::copy_from_slice(&buffer[..read]);
                let _ = output.send(Output { stderr: stream == Stream::Stderr, data }); // nobody attached
                let _ = to_log.send(buffer[..read].to_vec()); // the log thread failed: said so
            }
        }
    }
    drop(to_log);
    let _ = tokio::task::spawn_blocking(move || log.join()).await;
}

/// A [`Read`] over chunks sent through a channel; EOF when the sender is gone.
struct ChannelReader {
    chunks: std::sync::mpsc::Receiver<Vec<u8>>,
    rest: Vec<u8>,
}

impl Read for ChannelReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.rest.is_empty() {
            match self.chunks.recv() {
                Ok(chunk) => self.rest = chunk,
                Err(_) => return Ok(0),
            }
        }
        let count = buffer.len().min(self.rest.len());
        buffer[..count].copy_from_slice(&self.rest[..count]);
        self.rest.drain(..count);
        Ok(count)
    }
}

/// How a container's stdin is closed for good (`stdinOnce`).
struct CloseStdin {
    tasks: containerd_client::services::v1::tasks_client::TasksClient<containerd_client::tonic::transport::Channel>,
    id: String,
    marker: PathBuf,
}

/// Writes what attached clients send into the stdin FIFO; with `close`, the first client's
/// end closes the container's stdin.
async fn write_stdin(mut fifo: pipe::Sender, mut messages: mpsc::Receiver<StdinMessage>, close: Option<CloseStdin>) {
    while let Some(message) = messages.recv().await {
        match message {
            StdinMessage::Data(data) => {
                if fifo.write_all(&data).await.is_err() {
                    break;
                }
            }
            StdinMessage::End => {
                if let Some(mut close) = close {
                    let _ = std::fs::write(&close.marker, b"");
                    let request =
                        CloseIoRequest { container_id: close.id.clone(), exec_id: String::new(), stdin: true };
                    if let Err(status) = close.tasks.close_io(req(request)).await {
                        tracing::debug!(%status, id = %close.id, "closing a container's stdin failed");
                    }
                    return;
                }
            }
        }
    }
}
