//! A real etcd server (Debian's `etcd-server`, binary `etcd`) on free loopback ports.
//!
//! Data lives in a temporary directory owned by the [`Etcd`] value; [`Etcd::stop`] and
//! [`Etcd::restart`] keep it, so a restart loses nothing that was committed. The process is
//! killed when the value is dropped. A few helpers speak etcd's HTTP/JSON gateway (`/v3/kv/...`)
//! so tests can read raw keys, learn the current revision and compact history without an etcd
//! client library.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::paths::{find_on_path, temp_dir};
use crate::ports::{free_port, log_shows_port_in_use};
use crate::process::{Process, read_log, tail};

/// How long etcd may take to report itself healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a start is retried on new ports when the chosen ones were taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// A running (or stopped) single-member etcd cluster.
pub struct Etcd {
    /// Client URL, e.g. `http://127.0.0.1:40123`; what `--etcd-servers` takes.
    pub client_url: String,
    peer_url: String,
    binary: PathBuf,
    /// With TLS: etcd's certificate files (serving cert, key, trusted client CA).
    tls: Option<[PathBuf; 3]>,
    /// Speaks to etcd's client port (with a client certificate when etcd has TLS).
    http: reqwest::Client,
    process: Option<Process>,
    // Dropped last: the data and the log outlive the process.
    dir: tempfile::TempDir,
}

/// Why one start attempt failed.
enum StartFailure {
    PortInUse,
    Other(anyhow::Error),
}

impl Etcd {
    /// Starts etcd on free loopback ports with its data in a fresh temporary directory and waits
    /// until `/health` reports healthy.
    ///
    /// Fails loudly when the `etcd` binary is missing: "etcd not found: run make deps (installs
    /// Debian's etcd-server)".
    pub async fn start() -> anyhow::Result<Etcd> {
        Etcd::start_with(None).await
    }

    /// Like [`Etcd::start`], serving clients over TLS with a certificate `ca` signs and
    /// requiring client certificates from `ca` (`--client-cert-auth`), as a secured etcd runs.
    /// `client_url` is then `https://`. The gateway helpers ([`Etcd::get`], ...) do not work on
    /// it: etcd's own gateway dials etcd with the serving certificate, which is no client
    /// certificate.
    pub async fn start_tls(ca: &rkube_pki::Ca) -> anyhow::Result<Etcd> {
        Etcd::start_with(Some(ca)).await
    }

    async fn start_with(ca: Option<&rkube_pki::Ca>) -> anyhow::Result<Etcd> {
        let binary = find_on_path("etcd")
            .or_else(|| Some(PathBuf::from("/usr/bin/etcd")).filter(|path| path.is_file()))
            .context("etcd not found: run make deps (installs Debian's etcd-server)")?;
        let mut dir = temp_dir("rkube-etcd-").context("cannot create a temporary directory for etcd")?;
        let (tls, http, scheme) = match ca {
            Some(ca) => {
                let serving = ca.serving("etcd", &["localhost"], &["127.0.0.1".parse()?])?;
                let files = [
                    crate::certs::write_pem(dir.path(), "etcd.crt", &serving.cert_pem).into(),
                    crate::certs::write_pem(dir.path(), "etcd.key", &serving.key_pem).into(),
                    crate::certs::write_pem(dir.path(), "ca.crt", &ca.cert_pem()).into(),
                ];
                let identity = ca.client("rkube-test-harness", &[])?;
                (Some(files), crate::certs::https_client(ca, Some(&identity)), "https")
            }
            None => (None, reqwest::Client::new(), "http"),
        };
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let client_url = format!("{scheme}://127.0.0.1:{}", free_port()?);
            let peer_url = format!("http://127.0.0.1:{}", free_port()?);
            let mut etcd = Etcd {
                client_url,
                peer_url,
                binary: binary.clone(),
                tls: tls.clone(),
                http: http.clone(),
                process: None,
                dir,
            };
            match etcd.launch().await {
                Ok(()) => return Ok(etcd),
                Err(StartFailure::PortInUse) => {
                    last_error = Some(anyhow::anyhow!("etcd ports were taken: {}", etcd.log_tail(20)));
                    // Take the directory back for the next attempt; the process is gone.
                    etcd.process = None;
                    dir = etcd.into_dir();
                    // A half-initialised member remembers the old peer URL; start clean.
                    let _ = std::fs::remove_dir_all(dir.path().join("data"));
                }
                Err(StartFailure::Other(error)) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("etcd did not start")))
    }

    /// Kills etcd (SIGKILL, as a crash would) and keeps its data for [`Etcd::restart`].
    pub async fn stop(&mut self) {
        // Dropping the process kills and reaps it.
        self.process = None;
    }

    /// Starts etcd again on the same ports with the same data, and waits until it is healthy.
    /// Stops it first if it is running.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        match self.launch().await {
            Ok(()) => Ok(()),
            Err(StartFailure::PortInUse) => {
                bail!("etcd cannot restart: its ports were taken meanwhile\n{}", self.log_tail(20))
            }
            Err(StartFailure::Other(error)) => Err(error),
        }
    }

    /// etcd's process id (to read its CPU time in `/proc`); `None` while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::id)
    }

    /// Whether etcd is currently running under this handle.
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// One unlabelled sample of etcd's `/metrics`, e.g. `etcd_mvcc_range_total` (how many
    /// ranges etcd served, the reads inside transactions included).
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.client_url))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .context("etcd /metrics")?
            .text()
            .await?;
        text.lines()
            .find_map(|line| {
                line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok())
            })
            .with_context(|| format!("{name} not in etcd's metrics"))
    }

    /// The etcd revision right now (the header revision of a read).
    pub async fn current_revision(&self) -> anyhow::Result<i64> {
        let reply = self.gateway("/v3/kv/range", json!({ "key": BASE64.encode("\0") })).await?;
        revision_of(&reply["header"]["revision"])
    }

    /// Compacts etcd's history up to `revision` (physically), so older revisions cannot be read
    /// or watched any more.
    pub async fn compact(&self, revision: i64) -> anyhow::Result<()> {
        self.gateway("/v3/kv/compaction", json!({ "revision": revision.to_string(), "physical": true })).await?;
        Ok(())
    }

    /// The raw value stored under `key`, if any.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let reply = self.gateway("/v3/kv/range", json!({ "key": BASE64.encode(key) })).await?;
        let Some(value) = reply["kvs"].get(0).map(|kv| kv["value"].as_str().unwrap_or_default()) else {
            return Ok(None);
        };
        Ok(Some(BASE64.decode(value).context("etcd gateway returned a value that is not base64")?))
    }

    /// The `mod_revision` of `key` (the revision that last wrote it), if the key exists.
    pub async fn mod_revision(&self, key: &str) -> anyhow::Result<Option<i64>> {
        let reply = self.gateway("/v3/kv/range", json!({ "key": BASE64.encode(key) })).await?;
        reply["kvs"].get(0).map(|kv| revision_of(&kv["mod_revision"])).transpose()
    }

    /// Writes `value` under `key` directly (bypassing the apiserver).
    pub async fn put(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        self.gateway("/v3/kv/put", json!({ "key": BASE64.encode(key), "value": BASE64.encode(value) })).await?;
        Ok(())
    }

    /// The keys that start with `prefix`, in order.
    pub async fn keys_with_prefix(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let range_end = prefix_end(prefix.as_bytes());
        let reply = self
            .gateway(
                "/v3/kv/range",
                json!({ "key": BASE64.encode(prefix), "range_end": BASE64.encode(range_end), "keys_only": true }),
            )
            .await?;
        let mut keys = Vec::new();
        for kv in reply["kvs"].as_array().into_iter().flatten() {
            let key = BASE64.decode(kv["key"].as_str().unwrap_or_default())?;
            keys.push(String::from_utf8_lossy(&key).into_owned());
        }
        Ok(keys)
    }

    /// The last `lines` lines of etcd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&read_log(&self.log_path()), lines)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn into_dir(self) -> tempfile::TempDir {
        let Etcd { dir, .. } = self;
        dir
    }

    /// Starts the process with this handle's ports and data and waits until it is healthy.
    async fn launch(&mut self) -> Result<(), StartFailure> {
        let name = "rkube-test";
        let mut args: Vec<String> = [
            "--name",
            name,
            "--data-dir",
            &self.dir.path().join("data").display().to_string(),
            "--listen-client-urls",
            &self.client_url,
            "--advertise-client-urls",
            &self.client_url,
            "--listen-peer-urls",
            &self.peer_url,
            "--initial-advertise-peer-urls",
            &self.peer_url,
            "--initial-cluster",
            &format!("{name}={}", self.peer_url),
            "--initial-cluster-state",
            "new",
            // A single member elects itself after one election timeout; keep that short.
            "--heartbeat-interval",
            "20",
            "--election-timeout",
            "200",
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        if let Some([cert, key, ca]) = &self.tls {
            for (flag, path) in [("--cert-file", cert), ("--key-file", key), ("--trusted-ca-file", ca)] {
                args.extend([flag.to_string(), path.display().to_string()]);
            }
            args.push("--client-cert-auth".into());
        }
        let log_path = self.log_path();
        let process = Process::spawn(&self.binary, &args, &log_path).map_err(StartFailure::Other)?;
        self.process = Some(process);

        let client = self.http.clone();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(process) = self.process.as_mut()
                && let Some(status) = process.exited()
            {
                let log = process.log();
                self.process = None;
                if log_shows_port_in_use(&log) {
                    return Err(StartFailure::PortInUse);
                }
                return Err(StartFailure::Other(anyhow::anyhow!(
                    "etcd exited during start ({status}); log tail:\n{}",
                    tail(&log, 30)
                )));
            }
            if let Ok(reply) =
                client.get(format!("{}/health", self.client_url)).timeout(Duration::from_secs(2)).send().await
                && let Ok(body) = reply.json::<Value>().await
                && body["health"] == "true"
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                let tail = self.log_tail(30);
                self.process = None;
                return Err(StartFailure::Other(anyhow::anyhow!(
                    "etcd at {} not healthy after {START_TIMEOUT:?}; log tail:\n{tail}",
                    self.client_url
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Calls etcd's HTTP/JSON gateway and returns the JSON reply; a non-2xx reply is an error.
    async fn gateway(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let reply = self
            .http
            .post(format!("{}{path}", self.client_url))
            .timeout(Duration::from_secs(10))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("etcd gateway {path}"))?;
        let status = reply.status();
        let text = reply.text().await?;
        if !status.is_success() {
            bail!("etcd gateway {path} answered {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("etcd gateway {path} answered non-JSON: {text}"))
    }
}

/// etcd's gateway encodes int64 as a JSON string.
fn revision_of(value: &Value) -> anyhow::Result<i64> {
    match value {
        Value::String(text) => Ok(text.parse()?),
        Value::Number(number) => number.as_i64().context("revision out of range"),
        other => bail!("no revision in etcd reply: {other}"),
    }
}

/// The smallest key greater than every key starting with `prefix` (etcd's `range_end`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
