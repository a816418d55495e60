//! Starting a pod's containers: which run of each container to start now, and the steps that
//! create and start one run.
//!
//! A sync starts containers in this order ([`ContainerdRuntime::sync_init_containers`], then
//! [`ContainerdRuntime::sync_containers`]): init containers one at a time, each only after the
//! one before exited 0; then every app container that [`super::restart::next_attempt`] says
//! to start.
//!
//! One run is started in these steps ([`ContainerdRuntime::start_container`]):
//! 1. ensure the image ([`super::image`]: pulled as `imagePullPolicy` asks, then resolved);
//! 2. write the OCI runtime spec ([`super::spec`], with the volumes of [`super::volumes`]);
//! 3. create the log file and runc's state dir;
//! 4. prepare the writable snapshot on the image's top layer (key = the container ID);
//! 5. create the container record (labels, runc options, spec, snapshot);
//! 6. create the task with the snapshot's mounts as rootfs and stdout/stderr going to the log
//!    driver ([`crate::crilog`]), or, for a container with `stdin` or `tty`, to FIFOs the
//!    kubelet copies to the log and to attached clients ([`super::streams`]);
//! 7. start it. Its exit reaches the pod worker through containerd's event stream
//!    ([`super::events`], subscribed when the runtime connects, before the pod workers start,
//!    so even an instant exit is seen).
//!
//! What it keeps true:
//! - a run's container ID is `<pod uid>-<container name>-<attempt>`, so a second sync never
//!   starts a second copy of a run;
//! - a snapshot or container record left by a start interrupted before step 6 is reused, not
//!   an error;
//! - a failed start is remembered as the container's waiting reason (with the message) until a
//!   start of it succeeds, and counted by container type and reason.

use kube_core::ResourceExt;
use std::collections::HashMap;
use std::path::PathBuf;

use containerd_client::services::v1::container::Runtime as ContainerRuntimeInfo;
use containerd_client::services::v1::snapshots::{MountsRequest, PrepareSnapshotRequest};
use containerd_client::services::v1::{Container, CreateContainerRequest, CreateTaskRequest, StartRequest};
use containerd_client::types::Mount;
use k8s_openapi::api::core::v1::{Container as PodContainer, Pod};
use prost::Message;
use rkube_client::events::EventType;
use rkube_informer::ObjectKey;
use tonic::Code;

use super::restart::{backing_off, next_attempt};
use super::runs::Run;
use super::spec::{ImageInfo, linux_resources, namespaces, oci_spec, process_args, process_env, resolv_conf};
use super::{
    ATTEMPT_LABEL, CGROUP_PARENT, CONTAINER_NAME_LABEL, ContainerdRuntime, POD_UID_LABEL, RESTART_POLICY_LABEL,
    SNAPSHOTTER, container_reference, grpc, log_file, operation, pod_dir, req, step, streams, volumes,
};
use crate::cni::netns_path;
use crate::envvars::{self, PodFacts};
use crate::runtime::{ContainerState, RuntimeError};
use crate::startup::Step;

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

/// Whether a pod's init containers let its app containers start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum InitContainers {
    /// Every init container exited 0 (or there are none).
    Done,
    /// One is running, backing off, being started, or failed for good (the pod fails).
    Pending,
}

/// The run of a pod's container that is about to be created.
struct NewRun<'a> {
    pod: &'a Pod,
    uid: &'a str,
    container: &'a PodContainer,
    /// The run number: 0 first, +1 per restart.
    attempt: u32,
    /// The restart policy applied to this container (stored as a label).
    restart_policy: &'a str,
    /// The containerd ID: `<pod uid>-<container name>-<attempt>`.
    id: String,
}

impl<'a> NewRun<'a> {
    fn new(pod: &'a Pod, uid: &'a str, container: &'a PodContainer, attempt: u32, restart_policy: &'a str) -> Self {
        let id = format!("{uid}-{}-{attempt}", container.name);
        NewRun { pod, uid, container, attempt, restart_policy, id }
    }

    fn namespace(&self) -> &'a str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }

    fn pod_name(&self) -> &'a str {
        self.pod.metadata.name.as_deref().unwrap_or_default()
    }

    /// The labels that let the kubelet rebuild its view from containerd ([`super::runs`]).
    fn labels(&self) -> HashMap<String, String> {
        [
            (POD_UID_LABEL.to_string(), self.uid.to_string()),
            (CONTAINER_NAME_LABEL.to_string(), self.container.name.clone()),
            (ATTEMPT_LABEL.to_string(), self.attempt.to_string()),
            (RESTART_POLICY_LABEL.to_string(), self.restart_policy.to_string()),
            ("io.rkube.pod.name".to_string(), self.pod.name_any()),
            ("io.rkube.pod.namespace".to_string(), self.pod.namespace().unwrap_or_default()),
        ]
        .into()
    }

    /// A [`RuntimeError::StartContainer`] for this run.
    fn start_error(&self, message: String) -> RuntimeError {
        RuntimeError::StartContainer { pod: ObjectKey::of(self.pod), container: self.container.name.clone(), message }
    }
}

/// An [`RuntimeError::Io`] for `what`.
fn io_error(what: String) -> impl FnOnce(std::io::Error) -> RuntimeError {
    move |source| RuntimeError::Io { what, source }
}

impl ContainerdRuntime {
    /// Starts the first init container of `pod` that has not exited 0, if it is due (taking
    /// its runs out of `runs`). Under `Always` an init container restarts as under `OnFailure`,
    /// as in Kubernetes.
    pub(super) async fn sync_init_containers(
        &self,
        pod: &Pod,
        uid: &str,
        restart_policy: &str,
        runs: &mut HashMap<String, Vec<Run>>,
    ) -> Result<InitContainers, RuntimeError> {
        let init_policy = if restart_policy == "Never" { "Never" } else { "OnFailure" };
        let init_containers = pod.spec.as_ref().and_then(|spec| spec.init_containers.as_deref()).unwrap_or_default();
        for container in init_containers {
            let runs = runs.remove(&container.name).unwrap_or_default();
            if runs.last().is_some_and(
                |latest| matches!(&latest.state, ContainerState::Terminated(ended) if ended.exit_code == 0),
            ) {
                continue;
            }
            if let Some(next) = self.next_run(&runs, init_policy).await? {
                let run = NewRun::new(pod, uid, container, next, init_policy);
                self.start_recorded(&run, "init_container").await?;
            }
            return Ok(InitContainers::Pending); // running, backing off, or failed for good
        }
        Ok(InitContainers::Done)
    }

    /// Starts every app container of `pod` that is due (see [`next_attempt`]). A failed start
    /// does not keep the others from starting; the first failure is returned.
    pub(super) async fn sync_containers(
        &self,
        pod: &Pod,
        uid: &str,
        restart_policy: &str,
        mut runs: HashMap<String, Vec<Run>>,
    ) -> Result<(), RuntimeError> {
        let mut first_error = None;
        for container in pod.spec.as_ref().map(|spec| spec.containers.as_slice()).unwrap_or_default() {
            let runs = runs.remove(&container.name).unwrap_or_default();
            let Some(next) = self.next_run(&runs, restart_policy).await? else {
                if backing_off(&runs, restart_policy, jiff::Timestamp::now())
                    && let Some(events) = &self.config.events
                {
                    let message = format!(
                        "Back-off restarting failed container {} in pod {}_{}({uid})",
                        container.name,
                        pod.name_any(),
                        pod.namespace().unwrap_or_default()
                    );
                    events.record(
                        &container_reference(pod, &container.name),
                        EventType::Warning,
                        "BackOff",
                        "",
                        message,
                    );
                }
                continue;
            };
            let run = NewRun::new(pod, uid, container, next, restart_policy);
            if let Err(error) = self.start_recorded(&run, "container").await {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Starts every ephemeral container of `pod` (`kubectl debug`) that has no run yet: once,
    /// never restarted, in the PID namespace of its `targetContainerName` when it names one.
    pub(super) async fn sync_ephemeral_containers(
        &self,
        pod: &Pod,
        uid: &str,
        ephemeral: &[PodContainer],
        runs: &HashMap<String, Vec<Run>>,
    ) -> Result<(), RuntimeError> {
        let mut first_error = None;
        for container in ephemeral {
            if runs.get(&container.name).is_some_and(|runs| !runs.is_empty()) {
                continue;
            }
            let run = NewRun::new(pod, uid, container, 0, "Never");
            if let Err(error) = self.start_recorded(&run, "ephemeral_container").await {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The PID of the running process of the container `run`'s ephemeral container targets
    /// (`targetContainerName`), whose PID namespace it joins; `None` for other containers.
    async fn target_pid(&self, run: &NewRun<'_>) -> Result<Option<u32>, RuntimeError> {
        let ephemeral = run.pod.spec.as_ref().and_then(|spec| spec.ephemeral_containers.as_deref()).unwrap_or_default();
        let Some(target) =
            ephemeral.iter().find(|e| e.name == run.container.name).and_then(|e| e.target_container_name.as_deref())
        else {
            return Ok(None);
        };
        let id = self.running_id(run.uid, target).await.map_err(|_| {
            run.start_error(format!("the target container {target} is not running: its processes cannot be shared"))
        })?;
        Ok(self.task(&id).await?.map(|task| task.pid).filter(|pid| *pid > 0))
    }

    /// The run number to start next for a container with `runs` (see [`next_attempt`]).
    /// Before a restart, runs older than the one that just ended are removed (that one stays,
    /// for `lastState`).
    async fn next_run(&self, runs: &[Run], restart_policy: &str) -> Result<Option<u32>, RuntimeError> {
        let next = next_attempt(runs, restart_policy, jiff::Timestamp::now());
        if let (Some(next), Some((latest, older))) = (next, runs.split_last())
            && next > latest.attempt
        {
            for old in older {
                self.remove_container(&old.id, std::time::Duration::ZERO).await?;
            }
        }
        Ok(next)
    }

    /// Starts `run` of a container of type `container_type` (`container` or
    /// `init_container`, for the metrics), remembering a failure as the container's waiting
    /// reason (until a start succeeds).
    async fn start_recorded(&self, run: &NewRun<'_>, container_type: &str) -> Result<(), RuntimeError> {
        let key = (run.uid.to_string(), run.container.name.clone());
        let started = self.start_container(run).await;
        let metrics = self.config.start_metrics.as_ref();
        match &started {
            Ok(()) => {
                self.start_errors().remove(&key);
                metrics.inspect(|m| m.started.with_label_values(&[container_type]).inc());
            }
            Err(error) => {
                let reason = error.waiting_reason();
                if !matches!(error, RuntimeError::ImagePull { .. }) {
                    self.record(run, EventType::Warning, "Failed", format!("Error: {error}"));
                }
                self.start_errors().insert(key, (reason.into(), error.to_string()));
                metrics.inspect(|m| m.errors.with_label_values(&[container_type, reason]).inc());
            }
        }
        started
    }

    /// Creates and starts `run`, in the steps of the module docs.
    async fn start_container(&self, run: &NewRun<'_>) -> Result<(), RuntimeError> {
        let uid = run.uid;
        let (image, info) = step(self, uid, Step::Image, self.ensure_image(run.pod, run.container)).await?;
        let (spec, log_path, runc_root) = step(self, uid, Step::Spec, self.write_spec(run, &image, &info)).await?;
        let created_at = std::time::Instant::now();
        // The snapshot first, then the container that references it (and keeps it from GC).
        let rootfs = step(self, uid, Step::Snapshot, self.prepare_snapshot(&run.id, &info.chain_id)).await?;
        step(self, uid, Step::Create, self.create_container(run, &image, &spec, &runc_root)).await?;
        self.record(run, EventType::Normal, "Created", format!("Created container: {}", run.container.name));
        let streams = step(self, uid, Step::Task, self.create_task(run, rootfs, &log_path)).await?;
        if let Some(metrics) = self.config.startup.as_ref().map(|tracker| tracker.metrics()) {
            metrics.operation("create_container", created_at.elapsed());
        }
        if let Some(streams) = streams {
            self.start_streams(streams);
        }
        step(self, uid, Step::Start, operation(self, "start_container", self.start_task(&run.id))).await?;
        self.record(run, EventType::Normal, "Started", format!("Started container {}", run.container.name));
        tracing::info!(pod = %ObjectKey::of(run.pod), container = %run.container.name, id = %run.id, "container started");
        Ok(())
    }

    /// The environment, OCI spec, log file and runc state dir of `run` from image `image`:
    /// returns the spec, the log file and runc's root.
    async fn write_spec(
        &self,
        run: &NewRun<'_>,
        image: &str,
        info: &ImageInfo,
    ) -> Result<(serde_json::Value, PathBuf, PathBuf), RuntimeError> {
        let env = self.container_env(run).await?;
        let mut spec = self.oci_spec(run, image, info, &env)?;
        if let Some(pid) = self.target_pid(run).await?
            && let Some(namespace) = spec["linux"]["namespaces"].as_array_mut().and_then(|list| list.first_mut())
            && namespace["type"] == "pid"
        {
            *namespace = serde_json::json!({"type": "pid", "path": format!("/proc/{pid}/ns/pid")});
        }
        let log_path = self.create_log_file(run)?;
        let runc_root = self.create_runc_root()?;
        Ok((spec, log_path, runc_root))
    }

    /// Records an Event about `run`'s container.
    fn record(&self, run: &NewRun<'_>, kind: EventType, reason: &str, message: String) {
        if let Some(events) = &self.config.events {
            events.record(&container_reference(run.pod, &run.container.name), kind, reason, "", message);
        }
    }

    /// The container's `env` and `envFrom`, resolved now ([`crate::envvars`]).
    async fn container_env(&self, run: &NewRun<'_>) -> Result<Vec<(String, String)>, RuntimeError> {
        let Some(source) = &self.config.env_source else {
            let literal = run.container.env.iter().flatten().filter(|var| var.value_from.is_none());
            return Ok(literal.map(|var| (var.name.clone(), var.value.clone().unwrap_or_default())).collect());
        };
        let facts = PodFacts {
            host_ip: self.config.host_ip.clone(),
            pod_ip: self.config.network.as_ref().and_then(|n| n.pod_ip(run.uid)).unwrap_or_default(),
        };
        envvars::container_env(source, run.pod, run.container, &facts).await.map_err(|message| {
            RuntimeError::ContainerConfig {
                pod: ObjectKey::of(run.pod),
                container: run.container.name.clone(),
                message,
            }
        })
    }

    /// The complete OCI runtime spec of `run` from image `image` with environment `env`
    /// (creating its volumes' directories).
    fn oci_spec(
        &self,
        run: &NewRun<'_>,
        image: &str,
        info: &ImageInfo,
        env: &[(String, String)],
    ) -> Result<serde_json::Value, RuntimeError> {
        let container = run.container;
        let pod_spec = run.pod.spec.clone().unwrap_or_default();
        let host_network = pod_spec.host_network.unwrap_or(false);
        // With the node's network the container sees the node's hostname (no UTS namespace).
        let hostname = if host_network {
            std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string()
        } else {
            run.pod.name_any()
        };
        let args = process_args(container, info);
        if args.is_empty() {
            return Err(RuntimeError::Image {
                image: image.into(),
                message: "no command: neither the pod nor the image names one".into(),
            });
        }
        let env = process_env(env, info, &hostname);
        let cwd = container
            .working_dir
            .clone()
            .filter(|dir| !dir.is_empty())
            .unwrap_or_else(|| if info.working_dir.is_empty() { "/".into() } else { info.working_dir.clone() });
        let cgroups_path = format!("/{CGROUP_PARENT}/pod{}/{}", run.uid, run.id);
        let netns = self.config.network.as_ref().map(|_| netns_path(run.uid));
        let namespaces = namespaces(&pod_spec, netns.as_deref());
        let pod_dir = pod_dir(&self.config.root_dir, run.namespace(), run.pod_name(), run.uid);
        let mut mounts = volumes::mounts(run.pod, container, &pod_dir).map_err(|message| run.start_error(message))?;
        mounts.push(self.resolv_conf_mount(run, &pod_dir)?);
        let resources = linux_resources(container).map_err(|message| run.start_error(message))?;
        let spec_hostname = if host_network { "" } else { hostname.as_str() };
        let mut spec = oci_spec(&args, &env, &cwd, spec_hostname, &cgroups_path, namespaces, mounts, resources);
        if container.tty.unwrap_or(false) {
            spec["process"]["terminal"] = true.into();
        }
        Ok(spec)
    }

    /// Writes the pod's `resolv.conf` (see [`resolv_conf`]) into its directory and returns the
    /// read-only bind mount that makes it the container's `/etc/resolv.conf`.
    fn resolv_conf_mount(
        &self,
        run: &NewRun<'_>,
        pod_dir: &std::path::Path,
    ) -> Result<serde_json::Value, RuntimeError> {
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let text = resolv_conf(run.pod, self.config.cluster_dns.as_ref(), &host);
        let path = pod_dir.join("resolv.conf");
        std::fs::create_dir_all(pod_dir)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|error| run.start_error(format!("writing {}: {error}", path.display())))?;
        Ok(
            serde_json::json!({"destination": "/etc/resolv.conf", "type": "bind", "source": path, "options": ["rbind", "ro"]}),
        )
    }

    /// Creates `run`'s log file, empty, if it is missing: the log driver appends to it.
    fn create_log_file(&self, run: &NewRun<'_>) -> Result<PathBuf, RuntimeError> {
        let root_dir = &self.config.root_dir;
        let path = log_file(root_dir, run.namespace(), run.pod_name(), run.uid, &run.container.name, run.attempt);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(format!("creating {}", path.display())))?;
        Ok(path)
    }

    /// Creates the directory runc keeps its state in (`<root-dir>/runc`).
    fn create_runc_root(&self) -> Result<PathBuf, RuntimeError> {
        let runc_root = self.config.root_dir.join("runc");
        std::fs::create_dir_all(&runc_root).map_err(io_error(format!("creating {}", runc_root.display())))?;
        Ok(runc_root)
    }

    /// Prepares the writable snapshot `id` on the layer `parent`, or reuses the one an
    /// interrupted start left; returns its mounts.
    async fn prepare_snapshot(&self, id: &str, parent: &str) -> Result<Vec<Mount>, RuntimeError> {
        let prepare = PrepareSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: id.into(),
            parent: parent.into(),
            labels: HashMap::new(),
        };
        match self.client.snapshots().prepare(req(prepare)).await {
            Ok(response) => Ok(response.into_inner().mounts),
            Err(status) if status.code() == Code::AlreadyExists => {
                // Left over from an interrupted start: reuse it.
                let mounts = MountsRequest { snapshotter: SNAPSHOTTER.into(), key: id.into() };
                Ok(self
                    .client
                    .snapshots()
                    .mounts(req(mounts))
                    .await
                    .map_err(grpc("snapshots.mounts"))?
                    .into_inner()
                    .mounts)
            }
            Err(status) => Err(grpc("snapshots.prepare")(status)),
        }
    }

    /// Creates the container record of `run` (unless an interrupted start created it): its
    /// labels, image, runc options with `runc_root`, `spec`, and snapshot.
    async fn create_container(
        &self,
        run: &NewRun<'_>,
        image: &str,
        spec: &serde_json::Value,
        runc_root: &std::path::Path,
    ) -> Result<(), RuntimeError> {
        let runc_options = RuncOptions { root: runc_root.display().to_string(), ..RuncOptions::default() };
        let record = Container {
            id: run.id.clone(),
            labels: run.labels(),
            image: image.into(),
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
            snapshot_key: run.id.clone(),
            ..Container::default()
        };
        match self.client.containers().create(req(CreateContainerRequest { container: Some(record) })).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::AlreadyExists => Ok(()),
            Err(status) => Err(grpc("containers.create")(status)),
        }
    }

    /// Creates `run`'s task on `rootfs`: its stdout and stderr going to the log driver, which
    /// writes `log_path`, or, for a container with `stdin` or `tty`, to FIFOs the kubelet
    /// copies to `log_path` and to attached clients ([`super::streams`]; returned, to be
    /// started once the task exists).
    async fn create_task(
        &self,
        run: &NewRun<'_>,
        rootfs: Vec<Mount>,
        log_path: &std::path::Path,
    ) -> Result<Option<streams::OpenStreams>, RuntimeError> {
        let (stdin, tty) = (run.container.stdin.unwrap_or(false), run.container.tty.unwrap_or(false));
        let (streams, stdio) = if stdin || tty {
            let stdin_once = run.container.stdin_once.unwrap_or(false);
            let (streams, stdio) = self.open_streams(&run.id, log_path, stdin, tty, stdin_once)?;
            (Some(streams), stdio)
        } else {
            let log = crate::crilog::driver::uri(
                &self.config.logs.driver,
                &crate::crilog::driver::Options {
                    path: log_path.to_path_buf(),
                    max_size: self.config.logs.max_size,
                    max_files: self.config.logs.max_files,
                },
            );
            (None, streams::TaskStdio { stdin: String::new(), stdout: log.clone(), stderr: log, terminal: false })
        };
        let created = self
            .client
            .tasks()
            .create(req(CreateTaskRequest {
                container_id: run.id.clone(),
                rootfs,
                stdin: stdio.stdin,
                stdout: stdio.stdout,
                stderr: stdio.stderr,
                terminal: stdio.terminal,
                ..CreateTaskRequest::default()
            }))
            .await;
        if let Err(status) = created {
            if streams.is_some() {
                self.remove_streams(&run.id);
            }
            return Err(grpc("tasks.create")(status));
        }
        Ok(streams)
    }

    /// Starts container `id`'s task.
    async fn start_task(&self, id: &str) -> Result<(), RuntimeError> {
        self.client
            .tasks()
            .start(req(StartRequest { container_id: id.into(), exec_id: String::new() }))
            .await
            .map_err(grpc("tasks.start"))?;
        Ok(())
    }
}
