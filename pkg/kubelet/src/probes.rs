//! Probes: readiness and liveness checks of running containers (client-go has no name for
//! this; the Kubernetes kubelet's `prober.Manager` with one worker per probe).
//!
//! For every running container that has a readiness or liveness probe, one task runs the
//! probe every `periodSeconds` (after `initialDelaySeconds`), each run bounded by
//! `timeoutSeconds`: `exec` (a command in the container; exit 0 passes), `httpGet` (a GET to
//! the pod IP, or `host`; a status from 200 to 399 passes) or `tcpSocket` (a connect passes).
//! `successThreshold` passes in a row make it pass, `failureThreshold` failures make it fail.
//!
//! What it keeps true (`test/tests/kubelet_containerd.rs`: `readiness_probe_flips_ready`,
//! `failing_liveness_probe_restarts_the_container`):
//! - a container with a readiness probe is not ready until the probe passes, and is ready only
//!   while it passes; the pod's `Ready` and `ContainersReady` conditions follow;
//! - a failed liveness probe stops the container (SIGTERM, grace period, SIGKILL); its restart
//!   policy decides what follows;
//! - results belong to one run of a container (its container ID): a restarted container starts
//!   unready;
//! - a changed result makes the pod's worker sync at once.
//!
//! - a container with a startup probe runs no readiness or liveness probe until its startup
//!   probe passes; a startup probe that fails `failureThreshold` times stops the container like
//!   a failed liveness probe (`startup_probe_gates_readiness_and_restarts_a_container_that_never_starts`).
//!
//! Not yet: gRPC probes, HTTPS, HTTP headers; the fake runtime runs no probes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use prometheus::IntCounterVec;
use rkube_client::events::{EventRecorder, EventType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::runtime::{ContainerState, PodStatus, Runtime};

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Decides whether the container is ready.
    Readiness,
    /// Restarts the container when it fails.
    Liveness,
    /// Holds the other two back until the container has started; restarts it if it never does.
    Startup,
}

impl Kind {
    /// The name Kubernetes' `prober_probe_total` uses for it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Readiness => "Readiness",
            Kind::Liveness => "Liveness",
            Kind::Startup => "Startup",
        }
    }
}

/// (pod uid, container name, container ID, kind): one run's probe.
type Key = (String, String, String, Kind);
/// Readiness results by (pod uid, container name, container ID).
type Results = Arc<Mutex<HashMap<(String, String, String), bool>>>;
/// The runs whose startup probe has passed, by (pod uid, container name, container ID).
type Started = Arc<Mutex<std::collections::HashSet<(String, String, String)>>>;

struct Worker {
    stop: CancellationToken,
}

/// Runs the probes of this node's containers (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct ProbeManager {
    runtime: Arc<dyn Runtime>,
    /// Readiness results by (uid, container, container ID).
    ready: Results,
    /// Runs whose startup probe passed.
    started: Started,
    workers: Arc<Mutex<HashMap<Key, Worker>>>,
    /// Pod uids whose probe results changed.
    changed: UnboundedSender<String>,
    /// `prober_probe_total{probe_type,result}`.
    results: IntCounterVec,
    shutdown: CancellationToken,
    /// `Unhealthy` and `Killing` Events (`None`: none are recorded).
    events: Option<EventRecorder>,
}

impl ProbeManager {
    /// A manager probing through `runtime` (exec) and the network; pod uids whose results
    /// change are sent to `changed`, and every probe is counted in `results` (labels
    /// `probe_type`, `result`).
    pub fn new(
        runtime: Arc<dyn Runtime>,
        changed: UnboundedSender<String>,
        results: IntCounterVec,
        shutdown: CancellationToken,
    ) -> ProbeManager {
        ProbeManager {
            runtime,
            ready: Arc::default(),
            started: Arc::default(),
            workers: Arc::default(),
            changed,
            results,
            shutdown,
            events: None,
        }
    }

    /// Records a failed probe as an `Unhealthy` Warning and a container stopped by its
    /// liveness or startup probe as `Killing`, on the pod, as Kubernetes' kubelet does.
    #[must_use]
    pub fn with_events(mut self, events: EventRecorder) -> ProbeManager {
        self.events = Some(events);
        self
    }

    fn record(&self, target: &Target, kind: EventType, reason: &str, message: String) {
        if let Some(events) = &self.events {
            events.record(&target.reference, kind, reason, "", message);
        }
    }

    /// Whether the readiness probe of this run of a container last passed (`false` before its
    /// first result).
    pub fn is_ready(&self, uid: &str, container: &str, container_id: &str) -> bool {
        let ready = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
        ready.get(&(uid.to_string(), container.to_string(), container_id.to_string())).copied().unwrap_or(false)
    }

    /// Starts probe workers for the running containers of `pod` that have probes, and stops
    /// those of runs that are no longer running.
    pub fn sync(&self, pod: &Pod, status: Option<&PodStatus>) {
        let Some(uid) = pod.metadata.uid.clone() else { return };
        let mut wanted = Vec::new();
        for container in pod.spec.as_ref().map(|spec| spec.containers.as_slice()).unwrap_or_default() {
            let Some(reported) = status.and_then(|s| s.containers.iter().find(|c| c.name == container.name)) else {
                continue;
            };
            let (ContainerState::Running { .. }, Some(id)) = (&reported.state, &reported.container_id) else {
                continue;
            };
            let run = (uid.clone(), container.name.clone(), id.clone());
            let starting = container.startup_probe.is_some()
                && !self.started.lock().unwrap_or_else(PoisonError::into_inner).contains(&run);
            let probes = if starting {
                vec![(Kind::Startup, &container.startup_probe)]
            } else {
                vec![(Kind::Readiness, &container.readiness_probe), (Kind::Liveness, &container.liveness_probe)]
            };
            for (kind, probe) in probes {
                if let Some(probe) = probe {
                    wanted.push((
                        (uid.clone(), container.name.clone(), id.clone(), kind),
                        probe.clone(),
                        container.clone(),
                    ));
                }
            }
        }
        let pod_ip = status.and_then(|s| s.pod_ip.clone());
        let grace = pod.spec.as_ref().and_then(|spec| spec.termination_grace_period_seconds).unwrap_or(30);
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let wanted_keys: Vec<Key> = wanted.iter().map(|(key, _, _)| key.clone()).collect();
        workers.retain(|key, worker| {
            let keep = key.0 != uid || wanted_keys.contains(key);
            if !keep {
                worker.stop.cancel();
            }
            keep
        });
        for (key, probe, container) in wanted {
            if workers.contains_key(&key) {
                continue;
            }
            let stop = self.shutdown.child_token();
            workers.insert(key.clone(), Worker { stop: stop.clone() });
            let manager = self.clone();
            let reference = crate::runtime::containerd::container_reference(pod, &container.name);
            let target = Target { pod_ip: pod_ip.clone(), container, reference };
            let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
            tokio::spawn(async move { manager.run(key, probe, target, grace, stop).await });
        }
    }

    /// Forgets everything about pod `uid` and stops its probe workers.
    pub fn forget(&self, uid: &str) {
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        workers.retain(|key, worker| {
            let keep = key.0 != uid;
            if !keep {
                worker.stop.cancel();
            }
            keep
        });
        self.ready.lock().unwrap_or_else(PoisonError::into_inner).retain(|key, _| key.0 != uid);
        self.started.lock().unwrap_or_else(PoisonError::into_inner).retain(|key| key.0 != uid);
    }

    /// One probe worker: probe every period until stopped; act on threshold crossings.
    async fn run(self, key: Key, probe: Probe, target: Target, grace: Duration, stop: CancellationToken) {
        let (uid, name, id, kind) = key.clone();
        let seconds = |value: Option<i32>, default: u64| {
            Duration::from_secs(value.map_or(default, |v| u64::try_from(v).unwrap_or(default)))
        };
        let period = seconds(probe.period_seconds, 10).max(Duration::from_secs(1));
        let timeout = seconds(probe.timeout_seconds, 1).max(Duration::from_secs(1));
        let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
        let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
        let mut delay = seconds(probe.initial_delay_seconds, 0);
        let (mut successes, mut failures) = (0, 0);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            delay = period;
            let passed = self.probe_once(&uid, &probe, &target, timeout).await;
            let result = if passed { "successful" } else { "failed" };
            self.results.with_label_values(&[kind.name(), result]).inc();
            if passed {
                successes += 1;
                failures = 0;
            } else {
                failures += 1;
                successes = 0;
                let probe_name = match kind {
                    Kind::Readiness => "Readiness",
                    Kind::Liveness => "Liveness",
                    Kind::Startup => "Startup",
                };
                self.record(&target, EventType::Warning, "Unhealthy", format!("{probe_name} probe failed"));
            }
            match kind {
                Kind::Readiness => {
                    let result = if successes >= success_threshold {
                        Some(true)
                    } else if failures >= failure_threshold {
                        Some(false)
                    } else {
                        None
                    };
                    if let Some(result) = result {
                        let previous = self
                            .ready
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert((uid.clone(), name.clone(), id.clone()), result);
                        if previous != Some(result) {
                            tracing::info!(%uid, container = %name, ready = result, "readiness changed");
                            let _ = self.changed.send(uid.clone()); // receiver gone: shutting down
                        }
                    }
                }
                Kind::Startup if successes >= success_threshold => {
                    tracing::info!(%uid, container = %name, "startup probe passed");
                    self.started.lock().unwrap_or_else(PoisonError::into_inner).insert((
                        uid.clone(),
                        name.clone(),
                        id.clone(),
                    ));
                    if target.container.readiness_probe.is_none() {
                        // Started and nothing else to wait for: ready.
                        self.ready
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert((uid.clone(), name.clone(), id.clone()), true);
                    }
                    // The next sync starts the readiness and liveness probes of this run.
                    let _ = self.changed.send(uid.clone());
                    return;
                }
                Kind::Liveness | Kind::Startup if failures >= failure_threshold => {
                    if kind == Kind::Startup {
                        tracing::info!(%uid, container = %name, "startup probe failed; stopping the container");
                    } else {
                        tracing::info!(%uid, container = %name, "liveness probe failed; stopping the container");
                    }
                    let which = if kind == Kind::Startup { "startup" } else { "liveness" };
                    let message = format!("Container {name} failed {which} probe, will be restarted");
                    self.record(&target, EventType::Normal, "Killing", message);
                    if let Err(error) = self.runtime.kill_container(&uid, &name, grace).await {
                        tracing::warn!(%uid, container = %name, %error, "stopping a container after its liveness probe failed");
                    }
                    let _ = self.changed.send(uid.clone());
                    return; // this run is over; the next run gets a new worker
                }
                Kind::Liveness | Kind::Startup => {}
            }
        }
    }

    async fn probe_once(&self, uid: &str, probe: &Probe, target: &Target, timeout: Duration) -> bool {
        if let Some(exec) = &probe.exec {
            let command = exec.command.clone().unwrap_or_default();
            return matches!(self.runtime.exec(uid, &target.container.name, &command, timeout).await, Ok(0));
        }
        let check = async {
            if let Some(http) = &probe.http_get {
                let host = http.host.clone().or_else(|| target.pod_ip.clone())?;
                let port = target.port(&http.port)?;
                let path = http.path.clone().unwrap_or_else(|| "/".into());
                return Some(http_get(&host, port, &path).await.is_some_and(|code| (200..400).contains(&code)));
            }
            if let Some(tcp) = &probe.tcp_socket {
                let host = tcp.host.clone().or_else(|| target.pod_ip.clone())?;
                let port = target.port(&tcp.port)?;
                return Some(TcpStream::connect((host.as_str(), port)).await.is_ok());
            }
            None
        };
        tokio::time::timeout(timeout, check).await.ok().flatten().unwrap_or(false)
    }
}

/// What a network probe connects to, and whom its Events are about.
struct Target {
    pod_ip: Option<String>,
    container: Container,
    /// The pod, with the container's field path.
    reference: ObjectReference,
}

impl Target {
    /// A probe's port: a number, or the name of one of the container's ports.
    fn port(&self, port: &IntOrString) -> Option<u16> {
        match port {
            IntOrString::Int(number) => u16::try_from(*number).ok(),
            IntOrString::String(name) => self
                .container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok()),
        }
    }
}

/// The status code of `GET http://host:port/path` (HTTP/1.0, so the server closes).
async fn http_get(host: &str, port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect((host, port)).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: rkube-probe/1.0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0; 64];
    let mut read = 0;
    while read < 12 {
        let n = stream.read(&mut head[read..]).await.ok()?;
        if n == 0 {
            break;
        }
        read += n;
    }
    parse_status(&head[..read])
}

/// The code of an HTTP status line (`HTTP/1.1 200 OK`).
fn parse_status(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head).ok()?;
    let mut parts = text.split_whitespace();
    parts.next().filter(|version| version.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 404 Not Found"), Some(404));
        assert_eq!(parse_status(b"garbage"), None);
    }

    #[test]
    fn named_ports_resolve_through_the_container() {
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "web", "ports": [{"name": "http", "containerPort": 8080}]
        }))
        .expect("container");
        let target = Target { pod_ip: None, container, reference: ObjectReference::default() };
        assert_eq!(target.port(&IntOrString::String("http".into())), Some(8080));
        assert_eq!(target.port(&IntOrString::Int(81)), Some(81));
        assert_eq!(target.port(&IntOrString::String("nope".into())), None);
    }
}
