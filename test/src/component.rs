//! A control-plane component under test (`rkube-scheduler`, `rkube-controller-manager`): the
//! real binary started against a [`Cluster`] with a private kubeconfig and log, on a free port
//! (retried on another port when the chosen one was taken meanwhile), killed when dropped.
//! [`crate::scheduler::Scheduler`] and [`crate::controllers::ControllerManager`] are this with
//! their binary, health endpoint and metric helpers.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::cluster::Cluster;
use crate::paths::{binary, temp_dir};
use crate::ports::{free_port, log_shows_port_in_use};
use crate::process::{Process, read_log, spawn_until_healthy, tail};

/// How many ports a start tries.
const PORT_ATTEMPTS: usize = 5;

/// What to start: the binary, where its health answers, how long it may take.
#[derive(Debug, Clone, Copy)]
pub struct ComponentKind {
    /// The binary's name, e.g. `rkube-scheduler`.
    pub binary: &'static str,
    /// The health path the start waits for, e.g. `/readyz`.
    pub health: &'static str,
    /// How long it may take to answer there.
    pub start_timeout: Duration,
}

/// A running component (see the module docs).
pub struct Component {
    /// Base URL of its `/healthz`, `/readyz` and `/metrics`, e.g. `http://127.0.0.1:40125`.
    pub url: String,
    kind: ComponentKind,
    process: Option<Process>,
    program: PathBuf,
    args: Vec<String>,
    dir: tempfile::TempDir,
}

impl Component {
    /// Starts `<binary> --kubeconfig <cluster's> --bind-address 127.0.0.1 --port <free>` plus
    /// `extra_args` and waits until its health path answers 200.
    ///
    /// # Panics
    /// When the binary has not been built (see [`crate::binary`]).
    pub async fn start(cluster: &Cluster, kind: ComponentKind, extra_args: &[&str]) -> anyhow::Result<Component> {
        let program = binary(kind.binary);
        let mut dir = temp_dir(&format!("{}-", kind.binary))
            .with_context(|| format!("cannot create a temporary directory for {}", kind.binary))?;
        let kubeconfig = cluster.write_kubeconfig(dir.path())?;
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let mut args: Vec<String> = vec![
                "--kubeconfig".into(),
                kubeconfig.display().to_string(),
                "--bind-address".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
            ];
            args.extend(extra_args.iter().map(ToString::to_string));
            let url = format!("http://127.0.0.1:{port}");
            let mut component = Component { url, kind, process: None, program: program.clone(), args, dir };
            match component.spawn_and_wait().await {
                Ok(()) => return Ok(component),
                Err(error) if log_shows_port_in_use(&component.log_tail(20)) => {
                    eprintln!("{}'s port was taken, retrying on another: {error}", kind.binary);
                    last_error = Some(error);
                    dir = component.dir;
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("{} could not find a free port", kind.binary)))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.kind.binary))
    }

    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let health = format!("{}{}", self.url, self.kind.health);
        let log_path = self.log_path();
        let process =
            spawn_until_healthy(&self.program, &self.args, &log_path, &health, self.kind.start_timeout).await?;
        self.process = Some(process);
        Ok(())
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        read_log(&self.log_path())
    }

    /// The last `lines` lines of its log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// Kills it (SIGKILL, as a crash would).
    pub fn kill(&mut self) {
        self.process = None;
    }

    /// Starts it again with the same flags on the same port and waits until it is healthy.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn_and_wait().await
    }

    /// Its process id, while it runs (for reading `/proc/<pid>/stat`).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::id)
    }

    /// Whether the process is still running (it exits on lost leadership or a fatal error).
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(|process| process.exited().is_none())
    }

    /// The Prometheus text of its `/metrics`.
    ///
    /// # Errors
    /// When `/metrics` does not answer.
    pub async fn metrics_text(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.url)).await?.text().await?)
    }
}

/// The value of `sample` (name plus labels exactly as printed) in Prometheus text; 0 if absent.
pub fn sample_value(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}
