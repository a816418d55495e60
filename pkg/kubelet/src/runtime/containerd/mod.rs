//! The containerd runtime: a pod's containers as containerd containers and tasks, run by runc.
//!
//! The kubelet talks to containerd's gRPC API directly (crate `containerd-client`), in its own
//! namespace [`NAMESPACE`], the way containerd's Go client would; containerd fills in nothing
//! (see docs/kubelet.md and /work/shared/research/containerd-rust.md). For each container of a
//! pod, [`Runtime::sync_pod`]:
//! 1. pulls the image as the container's `imagePullPolicy` asks (`pull.rs`, from a registry
//!    into containerd's content store and snapshots), then resolves it to its config and the
//!    chain ID of its top layer;
//! 2. prepares a writable overlay snapshot on that layer (key = the container ID);
//! 3. creates the container with a complete OCI runtime spec (command/args per Kubernetes'
//!    rules, env, working dir, hostname, namespaces, default capabilities, masked paths,
//!    cgroup `/rkube/pod<uid>/<container id>`), labelled with the pod uid and container name;
//! 4. creates the task with the snapshot's mounts as rootfs and stdout/stderr going to the log
//!    driver (`binary://…/rkube-log-driver`, [`crate::crilog`]), which writes
//!    `<root-dir>/pods/<namespace>_<name>_<uid>/<container>/<restart count>.log` in the CRI
//!    format and rotates it, and starts it.
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
//!
//! Volumes are in `volumes.rs`, resource limits and the spec in `spec.rs`, pulls in `pull.rs`
//! and `registry.rs`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use containerd_client::services::v1::container::Runtime as ContainerRuntimeInfo;
use containerd_client::services::v1::snapshots::{PrepareSnapshotRequest, RemoveSnapshotRequest};
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest, DeleteProcessRequest,
    DeleteTaskRequest, ExecProcessRequest, GetImageRequest, GetRequest, KillRequest, ListContainersRequest,
    ReadContentRequest, StartRequest, WaitRequest,
};
use containerd_client::types::v1::Status as TaskStatus;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container as PodContainer, Pod};
use prost::Message;
use tonic::{Code, Request};

use crate::cni::{Network, netns_path};

mod pull;
mod registry;
mod restart;
mod spec;
mod volumes;

pub use restart::backoff;
use restart::{Run, restarts};
pub use spec::normalize_image;
use spec::{ImageInfo, chain_id, linux_resources, oci_spec, process_args, process_env};

use super::{ContainerState, ContainerStatus, ExecSession, PodStatus, Runtime, RuntimeError, Terminated};

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
/// How long a SIGKILLed task may take to be reported stopped.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// containerd's runc shim options (`containerd.runc.v1.Options`), which containerd-client
/// does not ship; field numbers from containerd's runtime/v2/runc/options/oci.proto.
#[derive(Clone, PartialEq, prost::Message)]
struct RuncOptions {
    #[prost(bool, tag = "1")]
    no_pivot_root: bool,
    #[prost(bool, tag = "2")]
    no_new_keyring: bool,
    #[prost(string, tag = "3")]
    shim_cgroup: String,
    #[prost(uint32, tag = "4")]
    io_uid: u32,
    #[prost(uint32, tag = "5")]
    io_gid: u32,
    #[prost(string, tag = "6")]
    binary_name: String,
    #[prost(string, tag = "7")]
    root: String,
    #[prost(string, tag = "8")]
    criu_path: String,
    #[prost(bool, tag = "9")]
    systemd_cgroup: bool,
}

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
    /// Why a container of a pod could not be created, by (pod uid, container name): reported as
    /// the container's waiting reason until a sync succeeds.
    start_errors: Mutex<HashMap<(String, String), (String, String)>>,
    events: tokio::sync::broadcast::Sender<String>,
    /// Pulls images as containers' `imagePullPolicy` asks ([`pull`]).
    puller: pull::Puller,
}

/// A namespaced request.
fn req<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("containerd-namespace", tonic::metadata::MetadataValue::from_static(NAMESPACE));
    request
}

fn grpc(step: &'static str) -> impl FnOnce(tonic::Status) -> RuntimeError {
    move |status| RuntimeError::Containerd { step, source: Box::new(status) }
}

fn timestamp(time: Option<&prost_types::Timestamp>) -> Option<Timestamp> {
    let time = time?;
    Timestamp::new(time.seconds, time.nanos).ok()
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
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
        Ok(ContainerdRuntime {
            puller,
            client,
            config,
            start_errors: Mutex::new(HashMap::new()),
            events: tokio::sync::broadcast::channel(1024).0,
        })
    }

    fn start_errors(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), (String, String)>> {
        self.start_errors.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn read_content(&self, digest: &str) -> Result<Vec<u8>, RuntimeError> {
        let mut stream = self
            .client
            .content()
            .read(req(ReadContentRequest { digest: digest.into(), offset: 0, size: 0 }))
            .await
            .map_err(grpc("content.read"))?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(grpc("content.read"))? {
            bytes.extend_from_slice(&chunk.data);
        }
        Ok(bytes)
    }

    async fn read_json(&self, image: &str, digest: &str) -> Result<serde_json::Value, RuntimeError> {
        let bytes = self.read_content(digest).await?;
        serde_json::from_slice(&bytes)
            .map_err(|error| RuntimeError::Image { image: image.into(), message: format!("blob {digest}: {error}") })
    }

    /// Resolves `image` (normalized) to what a container needs from it.
    async fn image_info(&self, image: &str) -> Result<ImageInfo, RuntimeError> {
        let bad = |message: String| RuntimeError::Image { image: image.into(), message };
        let found = match self.client.images().get(req(GetImageRequest { name: image.into() })).await {
            Ok(response) => response.into_inner().image,
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => return Err(grpc("images.get")(status)),
        };
        let target = found.and_then(|image| image.target).ok_or_else(|| bad("not present in containerd".into()))?;
        let mut manifest_digest = target.digest.clone();
        if target.media_type.contains("index") || target.media_type.contains("manifest.list") {
            let index = self.read_json(image, &target.digest).await?;
            let arch = match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                other => other,
            };
            manifest_digest = index["manifests"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|entry| entry["platform"]["os"] == "linux" && entry["platform"]["architecture"] == arch)
                .and_then(|entry| entry["digest"].as_str())
                .ok_or_else(|| bad(format!("no linux/{arch} manifest in the index")))?
                .to_string();
        }
        let manifest = self.read_json(image, &manifest_digest).await?;
        let config_digest =
            manifest["config"]["digest"].as_str().ok_or_else(|| bad("manifest without config".into()))?.to_string();
        let config = self.read_json(image, &config_digest).await?;
        let strings = |value: &serde_json::Value| -> Vec<String> {
            value.as_array().into_iter().flatten().filter_map(|item| item.as_str().map(String::from)).collect()
        };
        let diff_ids = strings(&config["rootfs"]["diff_ids"]);
        Ok(ImageInfo {
            chain_id: chain_id(&diff_ids).ok_or_else(|| bad("image has no layers".into()))?,
            entrypoint: strings(&config["config"]["Entrypoint"]),
            cmd: strings(&config["config"]["Cmd"]),
            env: strings(&config["config"]["Env"]),
            working_dir: config["config"]["WorkingDir"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// The log file of a container (created empty if missing: the shim appends to it).
    fn log_path(&self, pod: &Pod, uid: &str, container: &str, attempt: u32) -> PathBuf {
        log_file(
            &self.config.root_dir,
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or_default(),
            uid,
            container,
            attempt,
        )
    }

    /// Creates and starts one container of a pod.
    async fn start_container(
        &self,
        pod: &Pod,
        uid: &str,
        container: &PodContainer,
        attempt: u32,
        restart_policy: &str,
    ) -> Result<(), RuntimeError> {
        let id = format!("{uid}-{}-{attempt}", container.name);
        let image = normalize_image(container.image.as_deref().unwrap_or_default());
        self.puller.ensure(&image, pull::PullPolicy::of(container)).await?;
        let info = self.image_info(&image).await?;
        let hostname = pod.metadata.name.clone().unwrap_or_default();
        let args = process_args(container, &info);
        if args.is_empty() {
            return Err(RuntimeError::Image {
                image,
                message: "no command: neither the pod nor the image names one".into(),
            });
        }
        let env = process_env(container, &info, &hostname);
        let cwd = container
            .working_dir
            .clone()
            .filter(|dir| !dir.is_empty())
            .unwrap_or_else(|| if info.working_dir.is_empty() { "/".into() } else { info.working_dir.clone() });
        let cgroups_path = format!("/{CGROUP_PARENT}/pod{uid}/{id}");
        let netns = self.config.network.as_ref().map(|_| netns_path(uid));
        let start_error = |message: String| RuntimeError::StartContainer {
            pod: pod_key(pod),
            container: container.name.clone(),
            message,
        };
        let pod_dir = pod_dir(
            &self.config.root_dir,
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or_default(),
            uid,
        );
        let mounts = volumes::mounts(pod, container, &pod_dir).map_err(start_error)?;
        let resources = linux_resources(container).map_err(start_error)?;
        let spec = oci_spec(&args, &env, &cwd, &hostname, &cgroups_path, netns.as_deref(), mounts, resources);

        let log_path = self.log_path(pod, uid, &container.name, attempt);
        let io_error = |what: String| move |source| RuntimeError::Io { what, source };
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_error(format!("creating {}", log_path.display())))?;
        let runc_root = self.config.root_dir.join("runc");
        std::fs::create_dir_all(&runc_root).map_err(io_error(format!("creating {}", runc_root.display())))?;

        // The snapshot first, then the container that references it (and keeps it from GC).
        let labels: HashMap<String, String> = [
            (POD_UID_LABEL.to_string(), uid.to_string()),
            (CONTAINER_NAME_LABEL.to_string(), container.name.clone()),
            (ATTEMPT_LABEL.to_string(), attempt.to_string()),
            (RESTART_POLICY_LABEL.to_string(), restart_policy.to_string()),
            ("io.rkube.pod.name".to_string(), hostname.clone()),
            ("io.rkube.pod.namespace".to_string(), pod.metadata.namespace.clone().unwrap_or_default()),
        ]
        .into();
        let mounts = match self
            .client
            .snapshots()
            .prepare(req(PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: id.clone(),
                parent: info.chain_id.clone(),
                labels: HashMap::new(),
            }))
            .await
        {
            Ok(response) => response.into_inner().mounts,
            Err(status) if status.code() == Code::AlreadyExists => {
                // Left over from an interrupted start: reuse it.
                self.client
                    .snapshots()
                    .mounts(req(containerd_client::services::v1::snapshots::MountsRequest {
                        snapshotter: SNAPSHOTTER.into(),
                        key: id.clone(),
                    }))
                    .await
                    .map_err(grpc("snapshots.mounts"))?
                    .into_inner()
                    .mounts
            }
            Err(status) => return Err(grpc("snapshots.prepare")(status)),
        };
        let runc_options = RuncOptions { root: runc_root.display().to_string(), ..RuncOptions::default() };
        let record = Container {
            id: id.clone(),
            labels,
            image: image.clone(),
            runtime: Some(ContainerRuntimeInfo {
                name: "io.containerd.runc.v2".into(),
                options: Some(prost_types::Any {
                    type_url: "containerd.runc.v1.Options".into(),
                    value: runc_options.encode_to_vec(),
                }),
            }),
            spec: Some(prost_types::Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
                value: spec.to_string().into_bytes(),
            }),
            snapshotter: SNAPSHOTTER.into(),
            snapshot_key: id.clone(),
            ..Container::default()
        };
        match self.client.containers().create(req(CreateContainerRequest { container: Some(record) })).await {
            Ok(_) => {}
            Err(status) if status.code() == Code::AlreadyExists => {}
            Err(status) => return Err(grpc("containers.create")(status)),
        }
        let log = crate::crilog::driver::uri(
            &self.config.logs.driver,
            &crate::crilog::driver::Options {
                path: log_path.clone(),
                max_size: self.config.logs.max_size,
                max_files: self.config.logs.max_files,
            },
        );
        self.client
            .tasks()
            .create(req(CreateTaskRequest {
                container_id: id.clone(),
                rootfs: mounts,
                stdout: log.clone(),
                stderr: log,
                ..CreateTaskRequest::default()
            }))
            .await
            .map_err(grpc("tasks.create"))?;
        // Wait before start, so that even an instant exit is seen; it tells the kubelet.
        let mut tasks = self.client.tasks();
        let events = self.events.clone();
        let (wait_id, wait_uid) = (id.clone(), uid.to_string());
        tokio::spawn(async move {
            let _ = tasks.wait(req(WaitRequest { container_id: wait_id, exec_id: String::new() })).await;
            let _ = events.send(wait_uid); // no receiver: nobody to tell
        });
        self.client
            .tasks()
            .start(req(StartRequest { container_id: id.clone(), exec_id: String::new() }))
            .await
            .map_err(grpc("tasks.start"))?;
        tracing::info!(pod = %pod_key(pod), container = %container.name, %id, "container started");
        Ok(())
    }

    /// The containers of pod `uid` (every pod when `None`).
    async fn containers(&self, uid: Option<&str>) -> Result<Vec<Container>, RuntimeError> {
        let filters = uid.map(|uid| vec![format!("labels.\"{POD_UID_LABEL}\"=={uid}")]).unwrap_or_default();
        Ok(self
            .client
            .containers()
            .list(req(ListContainersRequest { filters }))
            .await
            .map_err(grpc("containers.list"))?
            .into_inner()
            .containers)
    }

    /// The runs of each container of pod `uid`, oldest first, with their current state.
    async fn attempts(&self, uid: &str) -> Result<HashMap<String, Vec<Run>>, RuntimeError> {
        let mut runs: HashMap<String, Vec<Run>> = HashMap::new();
        for container in self.containers(Some(uid)).await? {
            let name = container.labels.get(CONTAINER_NAME_LABEL).cloned().unwrap_or_default();
            let attempt = container.labels.get(ATTEMPT_LABEL).and_then(|a| a.parse().ok()).unwrap_or(0);
            let created = timestamp(container.created_at.as_ref());
            let task = self.task(&container.id).await?;
            let state = match &task {
                Some(task) if task.status == TaskStatus::Running as i32 => {
                    ContainerState::Running { started_at: created.unwrap_or_else(Timestamp::now) }
                }
                Some(task) if task.status == TaskStatus::Stopped as i32 => ContainerState::Terminated(Terminated {
                    exit_code: i32::try_from(task.exit_status).unwrap_or(i32::MAX),
                    reason: match task.exit_status {
                        0 => "Completed",
                        137 if oom_killed(uid, &container.id) => "OOMKilled",
                        _ => "Error",
                    }
                    .into(),
                    started_at: created,
                    finished_at: timestamp(task.exited_at.as_ref()).unwrap_or_else(Timestamp::now),
                }),
                _ => ContainerState::Waiting { reason: "ContainerCreating".into(), message: None },
            };
            runs.entry(name).or_default().push(Run {
                id: container.id.clone(),
                attempt,
                image: container.image.clone(),
                restart_policy: container.labels.get(RESTART_POLICY_LABEL).cloned().unwrap_or_else(|| "Always".into()),
                has_task: task.is_some(),
                state,
            });
        }
        for list in runs.values_mut() {
            list.sort_by_key(|run| run.attempt);
        }
        Ok(runs)
    }

    /// The task of container `id`, `None` when it has none.
    async fn task(&self, id: &str) -> Result<Option<containerd_client::types::v1::Process>, RuntimeError> {
        match self.client.tasks().get(req(GetRequest { container_id: id.into(), exec_id: String::new() })).await {
            Ok(response) => Ok(response.into_inner().process),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(grpc("tasks.get")(status)),
        }
    }

    /// Waits until container `id`'s task is not running, up to `limit`. Returns whether it stopped.
    async fn wait_stopped(&self, id: &str, limit: Duration) -> Result<bool, RuntimeError> {
        let deadline = Instant::now() + limit;
        loop {
            let running = self.task(id).await?.is_some_and(|task| task.status == TaskStatus::Running as i32);
            if !running {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), RuntimeError> {
        match self
            .client
            .tasks()
            .kill(req(KillRequest { container_id: id.into(), exec_id: String::new(), signal, all }))
            .await
        {
            Ok(_) => Ok(()),
            // No task, or it already exited.
            Err(status) if matches!(status.code(), Code::NotFound | Code::FailedPrecondition) => Ok(()),
            Err(status) => Err(grpc("tasks.kill")(status)),
        }
    }

    /// Stops one container (SIGTERM, `grace`, SIGKILL) and deletes task, container and snapshot.
    async fn remove_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        const SIGTERM: u32 = 15;
        const SIGKILL: u32 = 9;
        let running = self.task(id).await?.is_some_and(|task| task.status == TaskStatus::Running as i32);
        if running {
            self.kill(id, SIGTERM, false).await?;
            if !self.wait_stopped(id, grace).await? {
                tracing::info!(%id, ?grace, "container ignored SIGTERM for its grace period; sending SIGKILL");
                self.kill(id, SIGKILL, true).await?;
                self.wait_stopped(id, KILL_TIMEOUT).await?;
            }
        }
        let ignore_missing = |step: &'static str| {
            move |result: Result<(), tonic::Status>| match result {
                Err(status) if status.code() != Code::NotFound => Err(grpc(step)(status)),
                _ => Ok(()),
            }
        };
        let deleted = self.client.tasks().delete(req(DeleteTaskRequest { container_id: id.into() })).await.map(|_| ());
        ignore_missing("tasks.delete")(deleted)?;
        let deleted = self.client.containers().delete(req(DeleteContainerRequest { id: id.into() })).await.map(|_| ());
        ignore_missing("containers.delete")(deleted)?;
        let removed = self
            .client
            .snapshots()
            .remove(req(RemoveSnapshotRequest { snapshotter: SNAPSHOTTER.into(), key: id.into() }))
            .await
            .map(|_| ());
        ignore_missing("snapshots.remove")(removed)
    }
}

/// Removes the pod's cgroup directory `/rkube/pod<uid>` in every v1 hierarchy (runc removed
/// the containers' own). Missing directories are fine.
/// Whether the kernel OOM-killed a process of container `id` of pod `uid`: its memory cgroup
/// (still there while the stopped task exists) counts an `oom_kill` (cgroup v1
/// `memory.oom_control`, v2 `memory.events`).
fn oom_killed(uid: &str, id: &str) -> bool {
    let relative = format!("{CGROUP_PARENT}/pod{uid}/{id}");
    let candidates = [
        Path::new("/sys/fs/cgroup/memory").join(&relative).join("memory.oom_control"),
        Path::new("/sys/fs/cgroup").join(&relative).join("memory.events"),
    ];
    candidates.iter().filter_map(|file| std::fs::read_to_string(file).ok()).any(|text| {
        text.lines()
            .filter_map(|line| line.strip_prefix("oom_kill "))
            .any(|count| count.trim().parse::<u64>().is_ok_and(|n| n > 0))
    })
}

/// Removes the `emptyDir` volumes of pod `uid` (its containers are gone).
fn remove_pod_volumes(root_dir: &Path, uid: &str) {
    let Ok(pods) = std::fs::read_dir(root_dir.join("pods")) else { return };
    for dir in pods.filter_map(std::result::Result::ok) {
        if dir.file_name().to_string_lossy().ends_with(&format!("_{uid}")) {
            let volumes = volumes::pod_volumes_dir(&dir.path());
            if volumes.exists()
                && let Err(error) = std::fs::remove_dir_all(&volumes)
            {
                tracing::warn!(dir = %volumes.display(), %error, "cannot remove the pod's emptyDir volumes");
            }
        }
    }
}

fn remove_pod_cgroups(uid: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else { return };
    for hierarchy in hierarchies.filter_map(std::result::Result::ok) {
        let dir = hierarchy.path().join(CGROUP_PARENT).join(format!("pod{uid}"));
        if dir.is_dir()
            && let Err(error) = std::fs::remove_dir(&dir)
        {
            tracing::debug!(dir = %dir.display(), %error, "cannot remove pod cgroup");
        }
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

    async fn sync_pod(&self, pod: &Pod) -> Result<(), RuntimeError> {
        let uid = pod.metadata.uid.clone().ok_or_else(|| RuntimeError::NoUid(pod_key(pod)))?;
        if let Some(network) = self.config.network.clone() {
            let pod_uid = uid.clone();
            tokio::task::spawn_blocking(move || network.set_up(&pod_uid)).await.map_err(|error| {
                RuntimeError::Io { what: "pod network set-up".into(), source: std::io::Error::other(error) }
            })??;
        }
        let restart_policy =
            pod.spec.as_ref().and_then(|spec| spec.restart_policy.clone()).unwrap_or_else(|| "Always".into());
        let mut attempts = self.attempts(&uid).await?;
        // Init containers first, one at a time, in order: each must exit 0 before the next
        // starts. A failed one is restarted (with back-off) unless the pod's policy is Never;
        // under Always it behaves as OnFailure, as in Kubernetes.
        let init_policy = if restart_policy == "Never" { "Never" } else { "OnFailure" };
        let init_containers = pod.spec.as_ref().and_then(|spec| spec.init_containers.as_deref()).unwrap_or_default();
        for container in init_containers {
            let runs = attempts.remove(&container.name).unwrap_or_default();
            if runs.last().is_some_and(
                |latest| matches!(&latest.state, ContainerState::Terminated(ended) if ended.exit_code == 0),
            ) {
                continue;
            }
            return match self.next_attempt(&runs, init_policy).await? {
                Some(next) => self.start_recorded(pod, &uid, container, next, init_policy, "init_container").await,
                None => Ok(()), // running, backing off, or failed for good (the pod fails)
            };
        }
        let mut first_error = None;
        for container in pod.spec.as_ref().map(|spec| spec.containers.as_slice()).unwrap_or_default() {
            let runs = attempts.remove(&container.name).unwrap_or_default();
            let Some(next) = self.next_attempt(&runs, &restart_policy).await? else { continue };
            if let Err(error) = self.start_recorded(pod, &uid, container, next, &restart_policy, "container").await {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn pod_status(&self, uid: &str) -> Result<Option<PodStatus>, RuntimeError> {
        let attempts = self.attempts(uid).await?;
        let errors: Vec<((String, String), (String, String))> = self
            .start_errors()
            .iter()
            .filter(|((pod, _), _)| pod == uid)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let pod_ip = self.config.network.as_ref().and_then(|network| network.pod_ip(uid));
        if attempts.is_empty() && errors.is_empty() && pod_ip.is_none() {
            return Ok(None);
        }
        let mut statuses = Vec::new();
        for (name, runs) in attempts {
            let Some(latest) = runs.last() else { continue };
            let previous = runs.len().checked_sub(2).and_then(|at| runs.get(at));
            let mut last_terminated = previous.and_then(|run| match &run.state {
                ContainerState::Terminated(ended) => Some(ended.clone()),
                _ => None,
            });
            let mut state = latest.state.clone();
            if let ContainerState::Terminated(ended) = &latest.state
                && restarts(&latest.restart_policy, ended.exit_code)
            {
                let delay = backoff(latest.attempt + 1, ended);
                state = ContainerState::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(format!("back-off {}s restarting failed container={name}", delay.as_secs())),
                };
                last_terminated = Some(ended.clone());
            }
            statuses.push(ContainerStatus {
                name,
                image: latest.image.clone(),
                container_id: Some(format!("containerd://{}", latest.id)),
                state,
                restart_count: i32::try_from(latest.attempt).unwrap_or(i32::MAX),
                last_terminated,
            });
        }
        for ((_, name), (reason, message)) in errors {
            if !statuses
                .iter()
                .any(|status| status.name == name && !matches!(status.state, ContainerState::Waiting { .. }))
            {
                statuses.retain(|status| status.name != name);
                statuses.push(ContainerStatus {
                    name,
                    image: String::new(),
                    container_id: None,
                    state: ContainerState::Waiting { reason, message: Some(message) },
                    restart_count: 0,
                    last_terminated: None,
                });
            }
        }
        Ok(Some(PodStatus { pod_ip, containers: statuses }))
    }

    async fn kill_pod(&self, uid: &str, grace: Duration) -> Result<(), RuntimeError> {
        let containers = self.containers(Some(uid)).await?;
        let removals = containers.iter().map(|container| self.remove_container(&container.id, grace));
        for result in futures::future::join_all(removals).await {
            result?;
        }
        self.start_errors().retain(|(pod, _), _| pod != uid);
        remove_pod_cgroups(uid);
        remove_pod_volumes(&self.config.root_dir, uid);
        if let Some(network) = self.config.network.clone() {
            let pod_uid = uid.to_string();
            tokio::task::spawn_blocking(move || network.tear_down(&pod_uid)).await.map_err(|error| {
                RuntimeError::Io { what: "pod network tear-down".into(), source: std::io::Error::other(error) }
            })??;
        }
        Ok(())
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
        let id = self.running_id(uid, container).await?;
        let exec_id = format!("probe-{:016x}", rand::random::<u64>());
        let env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()];
        let process = spec::process(command, &env, "/");
        self.client
            .tasks()
            .exec(req(ExecProcessRequest {
                container_id: id.clone(),
                exec_id: exec_id.clone(),
                spec: Some(prost_types::Any {
                    type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                    value: process.to_string().into_bytes(),
                }),
                ..ExecProcessRequest::default()
            }))
            .await
            .map_err(grpc("tasks.exec"))?;
        let mut tasks = self.client.tasks();
        let wait = tasks.wait(req(WaitRequest { container_id: id.clone(), exec_id: exec_id.clone() }));
        let started =
            self.client.tasks().start(req(StartRequest { container_id: id.clone(), exec_id: exec_id.clone() })).await;
        let result = match started {
            Err(status) => Err(grpc("tasks.start (exec)")(status)),
            Ok(_) => match tokio::time::timeout(timeout, wait).await {
                Ok(Ok(response)) => Ok(i32::try_from(response.into_inner().exit_status).unwrap_or(i32::MAX)),
                Ok(Err(status)) => Err(grpc("tasks.wait (exec)")(status)),
                Err(_) => {
                    let kill =
                        KillRequest { container_id: id.clone(), exec_id: exec_id.clone(), signal: 9, all: false };
                    let _ = self.client.tasks().kill(req(kill)).await;
                    Err(RuntimeError::Io {
                        what: format!("exec probe in {id}"),
                        source: std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no exit after {timeout:?}")),
                    })
                }
            },
        };
        let delete = DeleteProcessRequest { container_id: id, exec_id };
        if let Err(status) = self.client.tasks().delete_process(req(delete)).await
            && status.code() != Code::NotFound
        {
            tracing::debug!(%status, "deleting an exec process failed");
        }
        result
    }

    async fn exec_stream(
        &self,
        uid: &str,
        container: &str,
        command: &[String],
        stdin: bool,
    ) -> Result<ExecSession, RuntimeError> {
        if command.is_empty() {
            return Err(RuntimeError::Unsupported("no command given to exec".into()));
        }
        let id = self.running_id(uid, container).await?;
        let exec_id = format!("exec-{:016x}", rand::random::<u64>());
        // The streams are FIFOs the shim writes (and reads, for stdin); ours are opened before
        // the process starts, so nothing it writes is lost.
        let dir = self.config.root_dir.join("exec").join(&exec_id);
        let io_error = |what: String| move |source| RuntimeError::Io { what, source };
        std::fs::create_dir_all(&dir).map_err(io_error(format!("creating {}", dir.display())))?;
        let fifo = |name: &str| -> Result<PathBuf, RuntimeError> {
            let path = dir.join(name);
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &path,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o600),
                0,
            )
            .map_err(|errno| RuntimeError::Io { what: format!("mkfifo {}", path.display()), source: errno.into() })?;
            Ok(path)
        };
        let (stdout_path, stderr_path) = (fifo("stdout")?, fifo("stderr")?);
        let stdin_path = if stdin { Some(fifo("stdin")?) } else { None };
        let open = tokio::net::unix::pipe::OpenOptions::new();
        let stdout = open.open_receiver(&stdout_path).map_err(io_error("opening the exec's stdout".into()))?;
        let stderr = open.open_receiver(&stderr_path).map_err(io_error("opening the exec's stderr".into()))?;
        let stdin_writer = match &stdin_path {
            // Read-write, so that opening does not wait for the shim to open its end.
            Some(path) => Some(
                tokio::net::unix::pipe::OpenOptions::new()
                    .read_write(true)
                    .open_sender(path)
                    .map_err(io_error("opening the exec's stdin".into()))?,
            ),
            None => None,
        };
        let (env, cwd) = self.process_env(&id).await?;
        let process = spec::process(command, &env, &cwd);
        let path_text = |path: &Path| path.display().to_string();
        self.client
            .tasks()
            .exec(req(ExecProcessRequest {
                container_id: id.clone(),
                exec_id: exec_id.clone(),
                stdin: stdin_path.as_deref().map(path_text).unwrap_or_default(),
                stdout: path_text(&stdout_path),
                stderr: path_text(&stderr_path),
                terminal: false,
                spec: Some(prost_types::Any {
                    type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                    value: process.to_string().into_bytes(),
                }),
            }))
            .await
            .map_err(grpc("tasks.exec"))?;
        if let Err(status) =
            self.client.tasks().start(req(StartRequest { container_id: id.clone(), exec_id: exec_id.clone() })).await
        {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(grpc("tasks.start (exec)")(status));
        }
        // The shim keeps its stdin FIFO open for writing itself, so our closing it is no EOF:
        // CloseIO closes the command's stdin once the session's stdin writer is shut down.
        let stdin_writer = stdin_writer.map(|pipe| {
            let (closed, on_close) = tokio::sync::oneshot::channel();
            let mut tasks = self.client.tasks();
            let (container_id, exec_id) = (id.clone(), exec_id.clone());
            tokio::spawn(async move {
                if on_close.await.is_ok() {
                    let close = containerd_client::services::v1::CloseIoRequest { container_id, exec_id, stdin: true };
                    if let Err(status) = tasks.close_io(req(close)).await {
                        tracing::debug!(%status, "closing an exec's stdin failed");
                    }
                }
            });
            ExecStdin { pipe, closed: Some(closed) }
        });
        let (exit_tx, exit) = tokio::sync::oneshot::channel();
        // An exec process stays (with its exit status) until deleted, so waiting after the
        // start misses nothing.
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
        Ok(ExecSession {
            stdin: stdin_writer.map(|writer| Box::new(writer) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>),
            stdout: Box::new(stdout),
            stderr: Box::new(stderr),
            exit,
        })
    }

    async fn kill_container(&self, uid: &str, container: &str, grace: Duration) -> Result<(), RuntimeError> {
        const SIGTERM: u32 = 15;
        const SIGKILL: u32 = 9;
        let id = self.running_id(uid, container).await?;
        self.kill(&id, SIGTERM, false).await?;
        if !self.wait_stopped(&id, grace).await? {
            self.kill(&id, SIGKILL, true).await?;
            self.wait_stopped(&id, KILL_TIMEOUT).await?;
        }
        Ok(())
    }
}

impl ContainerdRuntime {
    /// The environment and working directory of container `id`'s process (from its OCI spec),
    /// for commands exec'd in it.
    async fn process_env(&self, id: &str) -> Result<(Vec<String>, String), RuntimeError> {
        let container = self
            .client
            .containers()
            .get(req(containerd_client::services::v1::GetContainerRequest { id: id.into() }))
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
            .unwrap_or_else(|| vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()]);
        let cwd = spec["process"]["cwd"].as_str().unwrap_or("/").to_string();
        Ok((env, cwd))
    }

    /// The run number to start next for a container with `runs` (oldest first), or `None` when
    /// nothing is to be started now: it runs, its policy does not restart it, or it is backing
    /// off (CrashLoopBackOff: a later sync restarts it). Before a restart, runs older than the
    /// one that just ended are removed (that one stays, for `lastState`).
    async fn next_attempt(&self, runs: &[Run], restart_policy: &str) -> Result<Option<u32>, RuntimeError> {
        let Some(latest) = runs.last() else { return Ok(Some(0)) };
        if !latest.has_task {
            return Ok(Some(latest.attempt)); // creation was interrupted: finish it
        }
        let ContainerState::Terminated(ended) = &latest.state else { return Ok(None) };
        if !restarts(restart_policy, ended.exit_code)
            || Timestamp::now() < ended.finished_at + backoff(latest.attempt + 1, ended)
        {
            return Ok(None);
        }
        for old in &runs[..runs.len() - 1] {
            self.remove_container(&old.id, Duration::ZERO).await?;
        }
        Ok(Some(latest.attempt + 1))
    }

    /// Starts run `attempt` of `container` (of `container_type` `container` or
    /// `init_container`, for the metrics), remembering a failure as the container's waiting
    /// reason (until a start succeeds).
    async fn start_recorded(
        &self,
        pod: &Pod,
        uid: &str,
        container: &PodContainer,
        attempt: u32,
        restart_policy: &str,
        container_type: &str,
    ) -> Result<(), RuntimeError> {
        let key = (uid.to_string(), container.name.clone());
        let started = self.start_container(pod, uid, container, attempt, restart_policy).await;
        let metrics = self.config.start_metrics.as_ref();
        match &started {
            Ok(()) => {
                self.start_errors().remove(&key);
                metrics.inspect(|m| m.started.with_label_values(&[container_type]).inc());
            }
            Err(error) => {
                let reason = error.waiting_reason();
                self.start_errors().insert(key, (reason.into(), error.to_string()));
                metrics.inspect(|m| m.errors.with_label_values(&[container_type, reason]).inc());
            }
        }
        started
    }

    /// The containerd ID of the running run of `container` in pod `uid`.
    async fn running_id(&self, uid: &str, container: &str) -> Result<String, RuntimeError> {
        let mut attempts = self.attempts(uid).await?;
        attempts
            .remove(container)
            .and_then(|runs| runs.into_iter().last())
            .filter(|run| matches!(run.state, ContainerState::Running { .. }))
            .map(|run| run.id)
            .ok_or_else(|| RuntimeError::NotRunning { uid: uid.into(), container: container.into() })
    }
}

/// The stdin of an exec'd command: writes go to its FIFO; shutting it down closes the command's
/// stdin (containerd's CloseIO).
struct ExecStdin {
    pipe: tokio::net::unix::pipe::Sender,
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
