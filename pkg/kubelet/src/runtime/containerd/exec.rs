//! Commands run in a running container: exec probes ([`ContainerdRuntime::exec_probe`], exit
//! code only) and `kubectl exec` sessions ([`ContainerdRuntime::exec_session`], with streams).
//! Both are extra processes of the container's task (containerd's `tasks.Exec`).
//!
//! What it keeps true:
//! - a probe that does not exit within its timeout is SIGKILLed and reported as timed out;
//! - a session's output streams are FIFOs opened by the kubelet before the process starts, so
//!   nothing the command writes is lost; they end when the command has ended;
//! - shutting down a session's stdin closes the command's stdin (containerd's `CloseIO`);
//! - the exec process is deleted once it exited, and a session's FIFOs with it.
//!
//! - with a terminal (`tty`), the shim owns the pseudo-terminal: it copies the stdin FIFO to it
//!   and its output to the stdout FIFO (there is no stderr); it has the client's size before
//!   the command starts (the OCI process's `consoleSize`), and containerd's `ResizePty` resizes
//!   it later.
//!
//! Sessions run with the container's env and working dir (plus `TERM=xterm` with a terminal, as
//! containerd's CRI plugin does), probes with a fixed `PATH` in `/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::{
    CloseIoRequest, DeleteProcessRequest, ExecProcessRequest, GetContainerRequest, KillRequest, ResizePtyRequest,
    StartRequest, WaitRequest,
};
use tokio::net::unix::pipe;
use tonic::Code;

use super::{ContainerdRuntime, grpc, req, spec};
use crate::runtime::{ExecSession, RuntimeError, TerminalSize};

/// The `PATH` of a probe, and of a session in a container whose spec has no env.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The paths of a process's stdin, stdout and stderr as the shim sees them (empty: none), and
/// whether it gets a terminal.
#[derive(Default)]
struct Stdio {
    stdin: String,
    stdout: String,
    stderr: String,
    terminal: bool,
}

impl ContainerdRuntime {
    /// Runs `command` in the running `container` of pod `uid` and returns its exit code; kills
    /// it after `timeout`.
    pub(super) async fn exec_probe(
        &self,
        uid: &str,
        container: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<i32, RuntimeError> {
        let id = self.running_id(uid, container).await?;
        let exec_id = format!("probe-{:016x}", rand::random::<u64>());
        let process = spec::process(command, &[DEFAULT_PATH.to_string()], "/");
        self.exec_process(&id, &exec_id, &process, Stdio::default()).await?;
        let result = self.run_probe(&id, &exec_id, timeout).await;
        let delete = DeleteProcessRequest { container_id: id, exec_id };
        if let Err(status) = self.client.tasks().delete_process(req(delete)).await
            && status.code() != Code::NotFound
        {
            tracing::debug!(%status, "deleting an exec process failed");
        }
        result
    }

    /// Starts exec process `exec_id` of container `id` and waits up to `timeout` for its exit
    /// code, SIGKILLing it when the time is up.
    async fn run_probe(&self, id: &str, exec_id: &str, timeout: Duration) -> Result<i32, RuntimeError> {
        let mut tasks = self.client.tasks();
        let wait = tasks.wait(req(WaitRequest { container_id: id.into(), exec_id: exec_id.into() }));
        let start = StartRequest { container_id: id.into(), exec_id: exec_id.into() };
        if let Err(status) = self.client.tasks().start(req(start)).await {
            return Err(grpc("tasks.start (exec)")(status));
        }
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(response)) => Ok(i32::try_from(response.into_inner().exit_status).unwrap_or(i32::MAX)),
            Ok(Err(status)) => Err(grpc("tasks.wait (exec)")(status)),
            Err(_) => {
                let kill = KillRequest { container_id: id.into(), exec_id: exec_id.into(), signal: 9, all: false };
                let _ = self.client.tasks().kill(req(kill)).await;
                Err(RuntimeError::Io {
                    what: format!("exec probe in {id}"),
                    source: std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no exit after {timeout:?}")),
                })
            }
        }
    }

    /// Starts `command` in the running `container` of pod `uid` with its streams (and stdin,
    /// a terminal, if asked): FIFOs → exec → start → close stdin on shutdown → delete once
    /// exited.
    pub(super) async fn exec_session(
        &self,
        uid: &str,
        container: &str,
        command: &[String],
        stdin: bool,
        tty: Option<TerminalSize>,
    ) -> Result<ExecSession, RuntimeError> {
        if command.is_empty() {
            return Err(RuntimeError::Unsupported("no command given to exec".into()));
        }
        let id = self.running_id(uid, container).await?;
        let exec_id = format!("exec-{:016x}", rand::random::<u64>());
        let dir = self.config.root_dir.join("exec").join(&exec_id);
        let fifos = Fifos::open(&dir, stdin, tty.is_some())?;
        let (env, cwd) = self.process_env(&id).await?;
        let env = terminal_env(env, tty.is_some());
        let mut process = spec::process(command, &env, &cwd);
        if let Some(size) = tty {
            process["terminal"] = true.into();
            if size.width > 0 && size.height > 0 {
                process["consoleSize"] = serde_json::json!({"width": size.width, "height": size.height});
            }
        }
        self.exec_process(&id, &exec_id, &process, fifos.stdio()).await?;
        if let Err(status) =
            self.client.tasks().start(req(StartRequest { container_id: id.clone(), exec_id: exec_id.clone() })).await
        {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(grpc("tasks.start (exec)")(status));
        }
        let stdin = fifos.stdin.map(|pipe| self.close_stdin_on_shutdown(pipe, &id, &exec_id));
        let resize = tty.map(|_| self.resize_on_request(&id, &exec_id));
        let exit = self.delete_when_exited(id, exec_id, dir);
        let stderr: Box<dyn tokio::io::AsyncRead + Send + Unpin> = match fifos.stderr {
            Some(pipe) => Box::new(pipe),
            None => Box::new(tokio::io::empty()),
        };
        Ok(ExecSession {
            stdin: stdin.map(|writer| Box::new(writer) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>),
            stdout: Box::new(fifos.stdout),
            stderr,
            exit,
            resize,
        })
    }

    /// Where a terminal session's window sizes go: each becomes a `ResizePty` of exec process
    /// `exec_id` (`""`: the container's own process), until the session drops the sender.
    pub(super) fn resize_on_request(&self, id: &str, exec_id: &str) -> tokio::sync::mpsc::Sender<TerminalSize> {
        let (sizes, mut requests) = tokio::sync::mpsc::channel::<TerminalSize>(4);
        let mut tasks = self.client.tasks();
        let (container_id, exec_id) = (id.to_string(), exec_id.to_string());
        tokio::spawn(async move {
            while let Some(size) = requests.recv().await {
                let resize = ResizePtyRequest {
                    container_id: container_id.clone(),
                    exec_id: exec_id.clone(),
                    width: size.width.into(),
                    height: size.height.into(),
                };
                if let Err(status) = tasks.resize_pty(req(resize)).await {
                    tracing::debug!(%status, "resizing an exec's terminal failed");
                }
            }
        });
        sizes
    }

    /// Adds exec process `exec_id` running `process` (an OCI process spec) to container `id`.
    async fn exec_process(
        &self,
        id: &str,
        exec_id: &str,
        process: &serde_json::Value,
        stdio: Stdio,
    ) -> Result<(), RuntimeError> {
        self.client
            .tasks()
            .exec(req(ExecProcessRequest {
                container_id: id.into(),
                exec_id: exec_id.into(),
                stdin: stdio.stdin,
                stdout: stdio.stdout,
                stderr: stdio.stderr,
                terminal: stdio.terminal,
                spec: Some(prost_types::Any {
                    type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                    value: process.to_string().into_bytes(),
                }),
            }))
            .await
            .map_err(grpc("tasks.exec"))?;
        Ok(())
    }

    /// The session's stdin. The shim keeps its stdin FIFO open for writing itself, so our
    /// closing it is no EOF: CloseIO closes the command's stdin once the writer is shut down.
    fn close_stdin_on_shutdown(&self, pipe: pipe::Sender, id: &str, exec_id: &str) -> ExecStdin {
        let (closed, on_close) = tokio::sync::oneshot::channel();
        let mut tasks = self.client.tasks();
        let (container_id, exec_id) = (id.to_string(), exec_id.to_string());
        tokio::spawn(async move {
            if on_close.await.is_ok() {
                let close = CloseIoRequest { container_id, exec_id, stdin: true };
                if let Err(status) = tasks.close_io(req(close)).await {
                    tracing::debug!(%status, "closing an exec's stdin failed");
                }
            }
        });
        ExecStdin { pipe, closed: Some(closed) }
    }

    /// Waits for exec process `exec_id` of container `id` to exit, then deletes it and its
    /// FIFOs in `dir`; the receiver hears its exit code. An exec process stays (with its exit
    /// status) until deleted, so waiting after the start misses nothing.
    fn delete_when_exited(
        &self,
        id: String,
        exec_id: String,
        dir: PathBuf,
    ) -> tokio::sync::oneshot::Receiver<Result<i32, RuntimeError>> {
        let (exit_tx, exit) = tokio::sync::oneshot::channel();
        let mut tasks = self.client.tasks();
        tokio::spawn(async move {
            let wait = tasks.wait(req(WaitRequest { container_id: id.clone(), exec_id: exec_id.clone() })).await;
            let code = match wait {
                Ok(response) => Ok(i32::try_from(response.into_inner().exit_status).unwrap_or(i32::MAX)),
                Err(status) => Err(grpc("tasks.wait (exec)")(status)),
            };
            let delete = DeleteProcessRequest { container_id: id, exec_id };
            if let Err(status) = tasks.delete_process(req(delete)).await {
                tracing::debug!(%status, "deleting an exec process failed");
            }
            let _ = exit_tx.send(code); // the session is gone: nobody to tell
            let _ = tokio::fs::remove_dir_all(&dir).await;
        });
        exit
    }

    /// The environment and working directory of container `id`'s process (from its OCI spec),
    /// for commands exec'd in it.
    async fn process_env(&self, id: &str) -> Result<(Vec<String>, String), RuntimeError> {
        let container = self
            .client
            .containers()
            .get(req(GetContainerRequest { id: id.into() }))
            .await
            .map_err(grpc("containers.get"))?
            .into_inner()
            .container;
        let spec: serde_json::Value = container
            .and_then(|container| container.spec)
            .and_then(|spec| serde_json::from_slice(&spec.value).ok())
            .unwrap_or_default();
        let env = spec["process"]["env"]
            .as_array()
            .map(|env| env.iter().filter_map(|item| item.as_str().map(String::from)).collect())
            .unwrap_or_else(|| vec![DEFAULT_PATH.to_string()]);
        let cwd = spec["process"]["cwd"].as_str().unwrap_or("/").to_string();
        Ok((env, cwd))
    }
}

/// A session's streams: FIFOs the shim writes (and reads, for stdin), with the kubelet's ends
/// already open. A terminal has no stderr: everything comes out of the terminal.
struct Fifos {
    stdout_path: PathBuf,
    stderr_path: Option<PathBuf>,
    stdin_path: Option<PathBuf>,
    stdout: pipe::Receiver,
    stderr: Option<pipe::Receiver>,
    stdin: Option<pipe::Sender>,
    terminal: bool,
}

impl Fifos {
    /// Makes the FIFOs in `dir` (stdin only if `stdin`, stderr only without a terminal) and
    /// opens the kubelet's ends, before the process starts, so nothing it writes is lost.
    fn open(dir: &Path, stdin: bool, terminal: bool) -> Result<Fifos, RuntimeError> {
        let io_error = |what: String| move |source| RuntimeError::Io { what, source };
        std::fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
        let stdout_path = make_fifo(dir, "stdout")?;
        let stderr_path = if terminal { None } else { Some(make_fifo(dir, "stderr")?) };
        let stdin_path = if stdin { Some(make_fifo(dir, "stdin")?) } else { None };
        let open = pipe::OpenOptions::new();
        let stdout = open.open_receiver(&stdout_path).map_err(io_error("opening the exec's stdout".into()))?;
        let stderr = match &stderr_path {
            Some(path) => Some(open.open_receiver(path).map_err(io_error("opening the exec's stderr".into()))?),
            None => None,
        };
        let stdin = match &stdin_path {
            // Read-write, so that opening does not wait for the shim to open its end.
            Some(path) => Some(
                pipe::OpenOptions::new()
                    .read_write(true)
                    .open_sender(path)
                    .map_err(io_error("opening the exec's stdin".into()))?,
            ),
            None => None,
        };
        Ok(Fifos { stdout_path, stderr_path, stdin_path, stdout, stderr, stdin, terminal })
    }

    /// The FIFOs' paths, for the shim.
    fn stdio(&self) -> Stdio {
        let text = |path: &Path| path.display().to_string();
        Stdio {
            stdin: self.stdin_path.as_deref().map(text).unwrap_or_default(),
            stdout: text(&self.stdout_path),
            stderr: self.stderr_path.as_deref().map(text).unwrap_or_default(),
            terminal: self.terminal,
        }
    }
}

/// Makes FIFO `name` in `dir`.
fn make_fifo(dir: &Path, name: &str) -> Result<PathBuf, RuntimeError> {
    let path = dir.join(name);
    rustix::fs::mknodat(rustix::fs::CWD, &path, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0)
        .map_err(|errno| RuntimeError::Io { what: format!("mkfifo {}", path.display()), source: errno.into() })?;
    Ok(path)
}

/// The stdin of an exec'd command: writes go to its FIFO; shutting it down closes the command's
/// stdin (containerd's CloseIO).
struct ExecStdin {
    pipe: pipe::Sender,
    closed: Option<tokio::sync::oneshot::Sender<()>>,
}

impl tokio::io::AsyncWrite for ExecStdin {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.pipe).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.pipe).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some(closed) = self.closed.take() {
            let _ = closed.send(()); // the process is gone already: nothing to close
        }
        std::pin::Pin::new(&mut self.pipe).poll_shutdown(cx)
    }
}

/// A session's environment: the container's, plus `TERM=xterm` with a terminal unless the
/// container sets `TERM` itself (as Kubernetes' runtimes do).
fn terminal_env(mut env: Vec<String>, tty: bool) -> Vec<String> {
    if tty && !env.iter().any(|entry| entry.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_gets_term_xterm_unless_the_container_sets_term() {
        let env = |entries: &[&str]| entries.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(terminal_env(env(&["PATH=/bin"]), true), env(&["PATH=/bin", "TERM=xterm"]));
        assert_eq!(terminal_env(env(&["TERM=vt100"]), true), env(&["TERM=vt100"]));
        assert_eq!(terminal_env(env(&["PATH=/bin"]), false), env(&["PATH=/bin"]));
    }
}
