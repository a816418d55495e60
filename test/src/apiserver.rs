//! The real `rkube-apiserver` binary, started against an [`Etcd`] on a free loopback port.
//!
//! [`ApiServer::start`] returns once `/readyz` answers 200, so a test can send requests right
//! away. The process is killed when the value is dropped. [`ApiServer::kill`] and
//! [`ApiServer::restart`] take it down and bring it back on the same port (same URL), as a crash
//! and a restart would, so clients can be tested reconnecting.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::etcd::Etcd;
use crate::paths::{binary, temp_dir};
use crate::ports::{free_port, log_shows_port_in_use};
use crate::process::{Process, read_log, spawn_until_healthy, tail};

/// How long the apiserver may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a start is retried on a new port when the chosen one was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// A running `rkube-apiserver`.
pub struct ApiServer {
    /// Base URL, e.g. `http://127.0.0.1:40124` (no trailing slash).
    pub url: String,
    /// `None` between [`ApiServer::kill`] and [`ApiServer::restart`].
    process: Option<Process>,
    program: PathBuf,
    args: Vec<String>,
    // Dropped after the process: the log outlives it.
    dir: tempfile::TempDir,
}

impl ApiServer {
    /// Starts `rkube-apiserver --etcd-servers <etcd> --bind-address 127.0.0.1 --port <free>`
    /// followed by `extra_args` (e.g. `["--max-request-body-bytes", "4096"]`), and waits until
    /// `/readyz` answers 200.
    ///
    /// # Panics
    /// When the binary has not been built (see [`crate::binary`]).
    pub async fn start(etcd: &Etcd, extra_args: &[&str]) -> anyhow::Result<ApiServer> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        ApiServer::launch(etcd, extra_args, "http", client).await
    }

    /// Like [`ApiServer::start`] for an apiserver serving HTTPS: `extra_args` carry its
    /// `--tls-cert-file` and `--tls-private-key-file`, and `client` trusts their CA (it asks
    /// `/readyz`). [`ApiServer::restart`] is for plain HTTP only.
    pub async fn start_https(etcd: &Etcd, extra_args: &[&str], client: reqwest::Client) -> anyhow::Result<ApiServer> {
        ApiServer::launch(etcd, extra_args, "https", client).await
    }

    async fn launch(
        etcd: &Etcd,
        extra_args: &[&str],
        scheme: &str,
        client: reqwest::Client,
    ) -> anyhow::Result<ApiServer> {
        let program = binary("rkube-apiserver");
        let dir = temp_dir("rkube-apiserver-").context("cannot create a temporary directory for the apiserver")?;
        let log_path = dir.path().join("apiserver.log");
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let url = format!("{scheme}://127.0.0.1:{port}");
            let mut args: Vec<String> = vec![
                "--etcd-servers".into(),
                etcd.client_url.clone(),
                "--bind-address".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
            ];
            args.extend(extra_args.iter().map(ToString::to_string));
            let mut process = Process::spawn(&program, &args, &log_path)?;
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if let Some(status) = process.exited() {
                    let log = process.log();
                    if log_shows_port_in_use(&log) {
                        last_error = Some(anyhow::anyhow!("port {port} was taken:\n{}", tail(&log, 20)));
                        break;
                    }
                    anyhow::bail!(
                        "rkube-apiserver exited during start ({status}); args {args:?}; log tail:\n{}",
                        tail(&log, 40)
                    );
                }
                if let Ok(reply) = client.get(format!("{url}/readyz")).send().await
                    && reply.status().is_success()
                {
                    return Ok(ApiServer { url, process: Some(process), program, args, dir });
                }
                if Instant::now() > deadline {
                    anyhow::bail!(
                        "rkube-apiserver at {url} not ready after {START_TIMEOUT:?}; args {args:?}; log tail:\n{}",
                        process.log_tail(40)
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("rkube-apiserver did not start")))
    }

    /// The last `lines` lines of the apiserver's log (stdout and stderr), for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&read_log(&self.dir.path().join("apiserver.log")), lines)
    }

    /// Kills the apiserver (SIGKILL, as a crash would): open watches break, new connections are
    /// refused until [`ApiServer::restart`].
    pub fn kill(&mut self) {
        // Dropping the process kills and reaps it.
        self.process = None;
    }

    /// The apiserver's process id, to signal it (SIGSTOP, SIGTERM); `None` after
    /// [`ApiServer::kill`].
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::id)
    }

    /// Whether the apiserver is running under this handle (not killed).
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Starts the apiserver again with the same flags on the same port (so [`ApiServer::url`]
    /// stays valid), killing it first if it runs, and waits until `/readyz` answers 200.
    ///
    /// Fails if the port was taken meanwhile or the apiserver does not become ready.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let log_path = self.dir.path().join("apiserver.log");
        let health = format!("{}/readyz", self.url);
        self.process = Some(spawn_until_healthy(&self.program, &self.args, &log_path, &health, START_TIMEOUT).await?);
        Ok(())
    }

    /// The directory holding the apiserver's log file.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
