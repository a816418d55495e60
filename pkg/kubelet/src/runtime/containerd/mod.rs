//! The containerd runtime: a pod's containers as containerd containers and tasks, run by runc.
//!
//! The kubelet talks to containerd's gRPC API directly (crate `containerd-client`), in its own
//! namespace [`NAMESPACE`], the way containerd's Go client would; containerd fills in nothing
//! (see docs/kubelet.md). One module per part of the job:
//! - [`Runtime::sync_pod`] sets up the pod's network namespace (`sandbox.rs`), reads the runs
//!   of its containers back from containerd (`runs.rs`), and starts what is due
//!   (`container.rs`): init containers first, one at a time, then the app containers. One run
//!   starts in these steps: ensure the image (`image.rs`; pulled by `pull.rs` and
//!   `registry.rs` as `imagePullPolicy` asks) → write the OCI runtime spec (`spec.rs`:
//!   command/args per Kubernetes' rules, env, working dir, hostname, namespaces, default
//!   capabilities, masked paths, cgroup `/rkube/pod<uid>/<container id>`, resources; volumes
//!   from `volumes.rs`) → create the log file → prepare a writable overlay snapshot on the
//!   image's top layer → create the container (labelled with the pod uid and container name)
//!   → create the task with stdout/stderr going to the log driver
//!   (`binary://…/rkube-log-driver`, [`crate::crilog`]) → start it;
//! - [`Runtime::pod_status`] reports each container's latest run (`status.rs`), with the
//!   restart rules and crash-loop back-off of `restart.rs`;
//! - [`Runtime::kill_pod`] stops and removes every run (`task.rs`), then frees the pod's
//!   cgroup, volumes and network (`sandbox.rs`);
//! - probes and `kubectl exec` run extra processes in a running container (`exec.rs`).
//!
//! What it keeps true (`test/tests/kubelet_containerd.rs`):
//! - container IDs are `<pod uid>-<container name>-<restart count>`, so a second sync never
//!   starts a second copy, and the kubelet's view is rebuilt from containerd's labels after a
//!   restart;
//! - restart policies Always / OnFailure / Never: an exited container is restarted at once the
//!   first time, then after 10 s doubling to 5 min (reset after 10 min of running), and waits
//!   meanwhile as `CrashLoopBackOff` with `lastState.terminated` holding the last exit
//!   (`a_crashing_container_restarts_with_growing_back_off`);
//! - the status is read from containerd every time (`tasks.Get`): exit codes are the
//!   process's own;
//! - [`Runtime::kill_pod`] sends SIGTERM, waits the grace period, then SIGKILLs; then deletes
//!   task, container and snapshot, and removes the pod's parent cgroup (runc removes only
//!   the container's own).
//!
//! With a pod CIDR, every container of a pod joins the pod's network namespace
//! ([`crate::cni`]); without one, each container gets its own, empty network namespace.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use rkube_informer::ObjectKey;
use tonic::Request;

use crate::cni::Network;
use crate::startup::Step;

mod container;
mod events;
mod exec;
mod image;
mod pull;
mod registry;
mod restart;
mod runs;
mod sandbox;
mod spec;
mod status;
mod streams;
mod task;
mod volumes;

use container::InitContainers;
pub use restart::backoff;
pub use spec::normalize_image;

use super::{AttachSession, ContainerCgroup, ExecSession, PodStatus, Runtime, RuntimeError, TerminalSize};

/// The containerd namespace holding everything the kubelet creates.
pub const NAMESPACE: &str = "rkube";
/// The snapshotter used for container root filesystems.
pub const SNAPSHOTTER: &str = "overlayfs";
/// Label with the pod's uid on every container.
pub const POD_UID_LABEL: &str = "io.rkube.pod.uid";
/// Label with the container's name in the pod spec.
pub const CONTAINER_NAME_LABEL: &str = "io.rkube.container.name";
/// Label with the run number of a container (0 first, +1 per restart: the restart count).
pub const ATTEMPT_LABEL: &str = "io.rkube.container.attempt";
/// Label with the pod's restart policy (so status is right without the pod at hand).
pub const RESTART_POLICY_LABEL: &str = "io.rkube.pod.restart-policy";
/// The root of the cgroups of pods (below every v1 hierarchy).
const CGROUP_PARENT: &str = "rkube";

/// Where the containerd runtime connects and keeps its files.
#[derive(Clone, Debug)]
pub struct ContainerdConfig {
    /// containerd's gRPC socket.
    pub address: PathBuf,
    /// The kubelet's root dir: logs go to `pods/`, runc's state to `runc/`.
    pub root_dir: PathBuf,
    /// Pod networking; `None`: each container gets its own empty network namespace.
    pub network: Option<Network>,
    /// Registries (`host:port`) pulled from over plain HTTP besides loopback ones
    /// (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
    /// Where image pulls are counted; `None`: not counted.
    pub pull_metrics: Option<crate::metrics::PullMetrics>,
    /// Where container starts are counted; `None`: not counted.
    pub start_metrics: Option<crate::metrics::StartMetrics>,
    /// How containers' output reaches their log files.
    pub logs: ContainerLogs,
    /// Where `env`/`envFrom` references to ConfigMaps and Secrets are read; `None`: such a
    /// reference fails the container's start.
    pub env_source: Option<crate::envvars::ObjectSource>,
    /// The node's IP, for the downward API's `status.hostIP`.
    pub host_ip: String,
    /// The cluster DNS written into pods' `/etc/resolv.conf`; `None`: the node's.
    pub cluster_dns: Option<ClusterDns>,
    /// Records the pods' Events (`Pulling`, `Pulled`, `Created`, `Started`, `Failed`,
    /// `BackOff`); `None`: none are recorded.
    pub events: Option<rkube_client::events::EventRecorder>,
    /// Times the steps of pods' start-up and the runtime's operations ([`crate::startup`]);
    /// `None`: not timed.
    pub startup: Option<std::sync::Arc<crate::startup::PodStartTracker>>,
}

/// The cluster DNS of pods with `dnsPolicy: ClusterFirst` (`--cluster-dns`, `--cluster-domain`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterDns {
    /// The DNS Service's IP(s).
    pub servers: Vec<String>,
    /// The cluster domain, e.g. `cluster.local`.
    pub domain: String,
}

/// Where container logs go: the log driver containerd's shim runs for every container
/// ([`crate::crilog`]), and when it rotates.
#[derive(Clone, Debug)]
pub struct ContainerLogs {
    /// The `rkube-log-driver` binary (absolute path).
    pub driver: PathBuf,
    /// Rotate a log file when it would exceed this many bytes (0: never).
    pub max_size: u64,
    /// Log files kept per container run, the current one included.
    pub max_files: usize,
}

/// The containerd runtime (see the module docs).
pub struct ContainerdRuntime {
    client: containerd_client::Client,
    config: ContainerdConfig,
    /// Why a container of a pod could not be created: reported as the container's waiting
    /// reason until a sync succeeds.
    start_errors: Mutex<StartErrors>,
    /// The uid of a pod one of whose containers exited ([`Runtime::events`], from containerd's
    /// event stream: [`events`]).
    events: tokio::sync::broadcast::Sender<String>,
    /// Pulls images as containers' `imagePullPolicy` asks ([`pull`]).
    puller: pull::Puller,
    /// The streams of containers with `stdin` or `tty` ([`streams`]).
    streams: streams::StreamTable,
    /// What each image says, by the digest of its image record's target ([`image`]).
    image_infos: Mutex<HashMap<String, spec::ImageInfo>>,
}

/// Why containers could not be started: (waiting reason, message) by (pod uid, container name).
type StartErrors = HashMap<(String, String), (String, String)>;

/// The `involvedObject` of an Event about `container` of `pod`: the pod, with the field path
/// `spec.containers{<name>}` (`spec.initContainers{<name>}` for an init container), as the
/// kubelet writes it.
pub(crate) fn container_reference(pod: &Pod, container: &str) -> ObjectReference {
    let spec = pod.spec.as_ref();
    let init =
        spec.and_then(|s| s.init_containers.as_ref()).is_some_and(|list| list.iter().any(|c| c.name == container));
    let field = if init { "spec.initContainers" } else { "spec.containers" };
    ObjectReference {
        field_path: Some(format!("{field}{{{container}}}")),
        ..rkube_client::events::object_reference(pod)
    }
}

/// A namespaced request.
fn req<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("containerd-namespace", tonic::metadata::MetadataValue::from_static(NAMESPACE));
    request
}

/// The error of containerd call `step`.
fn grpc(step: &'static str) -> impl FnOnce(tonic::Status) -> RuntimeError {
    move |status| RuntimeError::Containerd { step, source: Box::new(status) }
}

/// Runs `work`, step `step` of pod `uid`'s start-up, timed by `runtime`'s tracker.
async fn step<F: std::future::Future>(
    runtime: &ContainerdRuntime,
    uid: &str,
    step: crate::startup::Step,
    work: F,
) -> F::Output {
    crate::startup::timed(runtime.config.startup.as_deref(), uid, step, work).await
}

/// Runs `work`, runtime operation `operation` (named after the CRI call Kubernetes' kubelet
/// times: `run_podsandbox`, `create_container`, ...), observed in
/// `kubelet_runtime_operations_duration_seconds`.
async fn operation<F: std::future::Future>(runtime: &ContainerdRuntime, operation: &str, work: F) -> F::Output {
    let began = std::time::Instant::now();
    let output = work.await;
    if let Some(tracker) = &runtime.config.startup {
        tracker.metrics().operation(operation, began.elapsed());
    }
    output
}

/// A protobuf timestamp as a [`Timestamp`] (`None` when absent or out of range).
fn timestamp(time: Option<&prost_types::Timestamp>) -> Option<Timestamp> {
    let time = time?;
    Timestamp::new(time.seconds, time.nanos).ok()
}

impl ContainerdRuntime {
    /// Connects to containerd at `config.address`.
    ///
    /// # Errors
    /// [`RuntimeError::Connect`] when the socket does not answer.
    pub async fn connect(config: ContainerdConfig) -> Result<ContainerdRuntime, RuntimeError> {
        if !config.logs.driver.is_absolute() || !config.logs.driver.is_file() {
            return Err(RuntimeError::Io {
                what: format!(
                    "the log driver {} (build it with `make build`, or point --log-driver at rkube-log-driver)",
                    config.logs.driver.display()
                ),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not an absolute path to a file"),
            });
        }
        let client = containerd_client::Client::from_path(&config.address)
            .await
            .map_err(|source| RuntimeError::Connect { address: config.address.display().to_string(), source })?;
        let puller = pull::Puller::new(
            containerd_client::Client::from(client.channel()),
            config.insecure_registries.clone(),
            config.pull_metrics.clone(),
        )?;
        let runtime = ContainerdRuntime {
            puller,
            client,
            config,
            start_errors: Mutex::new(HashMap::new()),
            events: tokio::sync::broadcast::channel(1024).0,
            streams: streams::StreamTable::default(),
            image_infos: Mutex::new(HashMap::new()),
        };
        tokio::spawn(events::follow_exits(runtime.client.channel(), runtime.events.clone()));
        runtime.adopt_streams().await;
        Ok(runtime)
    }

    /// The start errors, locked.
    fn start_errors(&self) -> MutexGuard<'_, StartErrors> {
        self.start_errors.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl Runtime for ContainerdRuntime {
    fn name(&self) -> &'static str {
        "containerd"
    }

    async fn healthy(&self) -> Result<(), RuntimeError> {
        self.client.version().version(()).await.map_err(grpc("version"))?;
        Ok(())
    }

    /// Network → runs → init containers → app containers (see the module docs).
    async fn sync_pod(&self, pod: &Pod) -> Result<(), RuntimeError> {
        let uid = pod.metadata.uid.clone().ok_or_else(|| RuntimeError::NoUid(ObjectKey::of(pod)))?;
        // A pod on the node's network (hostNetwork) has no namespace of its own to set up. While
        // the network is made (CNI plugins, seconds under load), what does not need it is read:
        // the pod's runs and its images.
        let host_network = pod.spec.as_ref().and_then(|spec| spec.host_network).unwrap_or(false);
        let network = async {
            if host_network { Ok(()) } else { step(self, &uid, Step::Sandbox, self.set_up_network(&uid)).await }
        };
        let runs = async {
            let runs = step(self, &uid, Step::Runs, self.runs(&uid)).await;
            if runs.as_ref().is_ok_and(HashMap::is_empty) {
                self.resolve_present_images(pod).await;
            }
            runs
        };
        let (network, runs) = tokio::join!(network, runs);
        network?;
        let mut runs = runs?;
        let restart_policy =
            pod.spec.as_ref().and_then(|spec| spec.restart_policy.clone()).unwrap_or_else(|| "Always".into());
        let ephemeral = crate::runtime::ephemeral_containers(pod);
        let ephemeral_runs: HashMap<String, Vec<runs::Run>> =
            ephemeral.iter().filter_map(|c| Some((c.name.clone(), runs.remove(&c.name)?))).collect();
        if self.sync_init_containers(pod, &uid, &restart_policy, &mut runs).await? == InitContainers::Pending {
            return Ok(());
        }
        let synced = self.sync_containers(pod, &uid, &restart_policy, runs).await;
        let started = self.sync_ephemeral_containers(pod, &uid, &ephemeral, &ephemeral_runs).await;
        synced.and(started)
    }

    async fn pod_status(&self, uid: &str) -> Result<Option<PodStatus>, RuntimeError> {
        self.status_of_pod(uid).await
    }

    /// Removes every run of the pod, forgets its start errors, then frees its sandbox.
    async fn kill_pod(&self, uid: &str, grace: Duration) -> Result<(), RuntimeError> {
        let containers = self.containers(Some(uid)).await?;
        let removals = containers.iter().map(|container| self.remove_container(&container.id, grace));
        for result in futures::future::join_all(removals).await {
            result?;
        }
        self.start_errors().retain(|(pod, _), _| pod != uid);
        self.remove_sandbox(uid).await
    }

    async fn pod_uids(&self) -> Result<Vec<String>, RuntimeError> {
        let mut uids: HashSet<String> =
            self.containers(None).await?.into_iter().filter_map(|c| c.labels.get(POD_UID_LABEL).cloned()).collect();
        uids.extend(self.config.network.iter().flat_map(Network::pod_uids));
        Ok(uids.into_iter().collect())
    }

    fn events(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.events.subscribe()
    }

    async fn exec(
        &self,
        uid: &str,
        container: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<i32, RuntimeError> {
        self.exec_probe(uid, container, command, timeout).await
    }

    async fn exec_stream(
        &self,
        uid: &str,
        container: &str,
        command: &[String],
        stdin: bool,
        tty: Option<TerminalSize>,
    ) -> Result<ExecSession, RuntimeError> {
        self.exec_session(uid, container, command, stdin, tty).await
    }

    async fn attach(&self, uid: &str, container: &str) -> Result<AttachSession, RuntimeError> {
        self.attach_to(uid, container).await
    }

    async fn running_cgroups(&self) -> Result<Vec<ContainerCgroup>, RuntimeError> {
        self.container_cgroups().await
    }

    async fn port_forward(&self, uid: &str, port: u16) -> Result<tokio::net::TcpStream, RuntimeError> {
        let failed = |message: String| RuntimeError::PortForward { uid: uid.to_string(), port, message };
        // The network namespace of the pod's first running container: the pod's (with CNI), the
        // node's (hostNetwork), or, without CNI, the one runc made for that container.
        let mut netns = None;
        for run in self.runs(uid).await?.into_values().flatten() {
            if matches!(run.state, crate::runtime::ContainerState::Running { .. })
                && let Some(task) = self.task(&run.id).await?
                && task.pid > 0
            {
                netns = Some(std::path::PathBuf::from(format!("/proc/{}/ns/net", task.pid)));
                break;
            }
        }
        let Some(netns) = netns else { return Err(failed("no container of the pod runs on this node".into())) };
        crate::cni::connect_in(netns, port).await.map_err(|error| failed(error.to_string()))
    }

    async fn kill_container(&self, uid: &str, container: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.stop_container(uid, container, grace).await
    }
}

/// The path of the log file of a container run (CRI format, written by the log driver).
/// `<root-dir>/pods/<namespace>_<pod>_<uid>/<container>/<restart count>.log`, as the Kubernetes
/// kubelet lays them out.
pub fn log_file(root_dir: &Path, namespace: &str, pod: &str, uid: &str, container: &str, attempt: u32) -> PathBuf {
    pod_dir(root_dir, namespace, pod, uid).join(container).join(format!("{attempt}.log"))
}

/// The directory of a pod's logs and `emptyDir` volumes: `<root-dir>/pods/<namespace>_<pod>_<uid>`.
pub fn pod_dir(root_dir: &Path, namespace: &str, pod: &str, uid: &str) -> PathBuf {
    root_dir.join("pods").join(format!("{namespace}_{pod}_{uid}"))
}
