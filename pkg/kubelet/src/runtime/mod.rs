//! The container runtime as the kubelet sees it: the `Runtime` trait.
//!
//! The pod workers ([`crate::podworkers`]) talk to a runtime only through this trait, so the
//! same kubelet drives real containers or none at all ([`fake`], for hollow nodes). The
//! Kubernetes kubelet calls this layer `kubecontainer.Runtime` (on top of CRI).
//!
//! Contract every implementation keeps (checked by the fake's unit tests and the integration
//! tests in `test/tests/kubelet_*.rs`):
//! - [`Runtime::sync_pod`] is idempotent: calling it again for a pod whose containers already
//!   run changes nothing;
//! - [`Runtime::pod_status`] reports what runs, keyed by pod uid, never by name: a pod deleted
//!   and recreated under the same name is a different pod;
//! - [`Runtime::kill_pod`] stops every container of the pod within the grace period and frees
//!   what the pod held (its IP); killing a pod the runtime does not know is not an error.
//!
//! Restart policies are the runtime's to apply (the containerd runtime does, with crash-loop
//! back-off; the fake never restarts).
//! The [`containerd`] runtime runs real containers; the [`fake`] runs none.

pub mod containerd;
pub mod fake;

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use rkube_informer::ObjectKey;

/// Why the runtime could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A container could not be started.
    #[error("starting container {container} of pod {pod}: {message}")]
    StartContainer {
        /// The pod's key.
        pod: ObjectKey,
        /// The container's name.
        container: String,
        /// What went wrong.
        message: String,
    },
    /// A container's configuration could not be made: a ConfigMap, Secret or key its `env`
    /// or `envFrom` names is missing, or a field it asks for is unknown.
    #[error("container {container} of pod {pod}: {message}")]
    ContainerConfig {
        /// The pod's key.
        pod: ObjectKey,
        /// The container's name.
        container: String,
        /// What is missing.
        message: String,
    },
    /// The container is not running (for exec and kill).
    #[error("container {container} of pod {uid} is not running")]
    NotRunning {
        /// The pod's uid.
        uid: String,
        /// The container's name.
        container: String,
    },
    /// The container runs without stdin or tty, so its process has no streams to attach to:
    /// its output is only in its log (which is what attaching then shows).
    #[error("container {container} was started without stdin or tty")]
    NoStreams {
        /// The container's name.
        container: String,
    },
    /// Nothing answers on a port of a pod (port forwarding).
    #[error("failed to connect to localhost:{port} inside the network namespace of pod {uid}: {message}")]
    PortForward {
        /// The pod's uid.
        uid: String,
        /// The pod's port.
        port: u16,
        /// Why, e.g. `Connection refused (os error 111)`.
        message: String,
    },
    /// The pod has no uid (it did not come from the apiserver).
    #[error("pod {0} has no metadata.uid")]
    NoUid(ObjectKey),
    /// A containerd call failed.
    #[error("containerd {step}: {source}")]
    Containerd {
        /// Which call, e.g. `tasks.create`.
        step: &'static str,
        /// What containerd answered.
        #[source]
        source: Box<tonic::Status>,
    },
    /// Connecting to containerd's socket failed.
    #[error("connecting to containerd at {address}: {source}")]
    Connect {
        /// The socket path.
        address: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// The image is not in containerd after a pull or a check, or is unusable.
    #[error("image {image}: {message}")]
    Image {
        /// The normalized image reference.
        image: String,
        /// What is wrong.
        message: String,
    },
    /// The image could not be pulled, is backing off after failed pulls, or may not be pulled
    /// (`imagePullPolicy: Never`); `reason` is the container's waiting reason.
    #[error("{message}")]
    ImagePull {
        /// The normalized image reference.
        image: String,
        /// `ErrImagePull`, `ImagePullBackOff` or `ErrImageNeverPull`.
        reason: &'static str,
        /// What failed, e.g. `pulling 127.0.0.1:5000/x:v1: manifest unknown (404)`.
        message: String,
    },
    /// A file the runtime needs (log file, spec) could not be written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The pod's network could not be set up or torn down.
    #[error("pod network: {0}")]
    Network(#[from] crate::cni::CniError),
    /// The runtime cannot do this at all.
    #[error("{0}")]
    Unsupported(String),
    /// The pod's IP could not be allocated.
    #[error("allocating an IP for pod {pod}: {message}")]
    Ipam {
        /// The pod's key.
        pod: ObjectKey,
        /// What went wrong.
        message: String,
    },
}

impl RuntimeError {
    /// The container's waiting reason while this error keeps it from starting, as the
    /// Kubernetes kubelet reports it (`ErrImagePull`, `RunContainerError`, ...).
    pub fn waiting_reason(&self) -> &'static str {
        match self {
            RuntimeError::Image { .. } => "ErrImagePull",
            RuntimeError::ImagePull { reason, .. } => reason,
            RuntimeError::ContainerConfig { .. } => "CreateContainerConfigError",
            _ => "RunContainerError",
        }
    }
}

/// A command running in a container with its standard streams (`kubectl exec`).
pub struct ExecSession {
    /// The command's stdin, when it was asked for; shutting it down (`AsyncWriteExt::shutdown`)
    /// closes the command's stdin.
    pub stdin: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    /// The command's stdout; ends when the command has ended.
    pub stdout: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    /// The command's stderr; ends when the command has ended.
    pub stderr: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    /// The command's exit code, once it ended.
    pub exit: tokio::sync::oneshot::Receiver<Result<i32, RuntimeError>>,
    /// With a terminal: where new window sizes go (`kubectl exec -t` sends one at the start and
    /// one whenever the user's terminal is resized).
    pub resize: Option<tokio::sync::mpsc::Sender<TerminalSize>>,
}

/// A pod's ephemeral containers (`kubectl debug`) as containers to run: the same fields, none
/// of the ones an ephemeral container may not have (ports, probes, resources, lifecycle).
pub fn ephemeral_containers(pod: &Pod) -> Vec<k8s_openapi::api::core::v1::Container> {
    let ephemeral = pod.spec.as_ref().and_then(|spec| spec.ephemeral_containers.as_deref()).unwrap_or_default();
    ephemeral
        .iter()
        .map(|e| k8s_openapi::api::core::v1::Container {
            name: e.name.clone(),
            image: e.image.clone(),
            image_pull_policy: e.image_pull_policy.clone(),
            command: e.command.clone(),
            args: e.args.clone(),
            env: e.env.clone(),
            env_from: e.env_from.clone(),
            working_dir: e.working_dir.clone(),
            volume_mounts: e.volume_mounts.clone(),
            volume_devices: e.volume_devices.clone(),
            security_context: e.security_context.clone(),
            stdin: e.stdin,
            stdin_once: e.stdin_once,
            tty: e.tty,
            termination_message_path: e.termination_message_path.clone(),
            termination_message_policy: e.termination_message_policy.clone(),
            ..Default::default()
        })
        .collect()
}

/// A chunk of a container's output, as attached clients receive it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// From stderr (else stdout, or the terminal).
    pub stderr: bool,
    /// The bytes, as the process wrote them.
    pub data: bytes::Bytes,
}

/// What an attached client sends to a container's stdin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StdinMessage {
    /// Bytes for the process.
    Data(Vec<u8>),
    /// This client's stdin ended (or it left): with `stdinOnce` the container's stdin closes.
    End,
}

/// The running process of a container with `stdin` or `tty`, attached to (`kubectl attach`,
/// `kubectl run -i`).
#[derive(Debug)]
pub struct AttachSession {
    /// Its output from now on; closed when the process has ended.
    pub output: tokio::sync::broadcast::Receiver<Output>,
    /// Its stdin, when the container has one (`stdin: true`) that is still open.
    pub stdin: Option<tokio::sync::mpsc::Sender<StdinMessage>>,
    /// With a terminal (`tty: true`): where new window sizes go.
    pub resize: Option<tokio::sync::mpsc::Sender<TerminalSize>>,
}

/// A terminal's size in characters, as Kubernetes' resize channel sends it
/// (`{"Width":80,"Height":24}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct TerminalSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession").field("stdin", &self.stdin.is_some()).finish_non_exhaustive()
    }
}

/// Where a running container's resource usage is counted (`/stats/summary`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerCgroup {
    /// The pod's uid.
    pub uid: String,
    /// The container's name in the pod spec.
    pub name: String,
    /// The cgroup path below the cgroup mount (the OCI spec's `cgroupsPath`).
    pub cgroup: String,
    /// When this run of the container started.
    pub started_at: Timestamp,
}

/// How a container ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terminated {
    /// The process's exit code (128 + signal when killed by a signal).
    pub exit_code: i32,
    /// `Completed` for exit code 0, `Error` otherwise, `OOMKilled` when the kernel killed it.
    pub reason: String,
    /// When it started.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Timestamp,
}

/// What one container is doing now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// Not running yet (or not again), with a CamelCase reason such as `ContainerCreating`.
    Waiting {
        /// e.g. `ContainerCreating`, `RunContainerError`.
        reason: String,
        /// Detail for people.
        message: Option<String>,
    },
    /// Running since `started_at`.
    Running {
        /// When the process started.
        started_at: Timestamp,
    },
    /// Exited.
    Terminated(Terminated),
}

/// One container as the runtime reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerStatus {
    /// The container's name in the pod spec.
    pub name: String,
    /// The image it runs.
    pub image: String,
    /// `<runtime>://<id>`, as Kubernetes writes containerIDs.
    pub container_id: Option<String>,
    /// What it is doing now.
    pub state: ContainerState,
    /// How often it was restarted.
    pub restart_count: i32,
    /// How the previous run ended (Kubernetes' `lastState.terminated`).
    pub last_terminated: Option<Terminated>,
}

/// One pod as the runtime reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodStatus {
    /// The pod's IP, once it has one.
    pub pod_ip: Option<String>,
    /// One entry per container the runtime knows of, in spec order.
    pub containers: Vec<ContainerStatus>,
}

/// A container runtime: runs pods' containers and reports on them (see the module docs for
/// the contract).
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Short name, e.g. `fake` or `containerd` (the scheme of container IDs).
    fn name(&self) -> &'static str;

    /// Whether the runtime can take work now; drives the Node's `Ready` condition.
    async fn healthy(&self) -> Result<(), RuntimeError>;

    /// Brings the pod's containers to what its spec asks for: starts those that have not run.
    async fn sync_pod(&self, pod: &Pod) -> Result<(), RuntimeError>;

    /// What runs for the pod with uid `uid`, or `None` if nothing does.
    async fn pod_status(&self, uid: &str) -> Result<Option<PodStatus>, RuntimeError>;

    /// Stops every container of pod `uid` (SIGTERM, then SIGKILL after `grace`) and frees the
    /// pod's resources. Unknown pods are not an error.
    async fn kill_pod(&self, uid: &str, grace: Duration) -> Result<(), RuntimeError>;

    /// The uids of every pod the runtime holds anything for (to clean up orphans after a
    /// restart).
    async fn pod_uids(&self) -> Result<Vec<String>, RuntimeError>;

    /// Runs `command` in the running container `container` of pod `uid` (an exec probe) and
    /// returns its exit code; a command still running after `timeout` is killed and is an error.
    async fn exec(
        &self,
        uid: &str,
        container: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<i32, RuntimeError>;

    /// Starts `command` in the running container `container` of pod `uid` with its streams
    /// connected (`kubectl exec`); with `stdin` the command gets a stdin to write to, with `tty`
    /// a terminal of that size (its output on stdout, stderr empty, resizable through
    /// [`ExecSession::resize`]; a zero size: the runtime's default). Runtimes that run no
    /// processes answer [`RuntimeError::Unsupported`].
    async fn exec_stream(
        &self,
        uid: &str,
        container: &str,
        command: &[String],
        stdin: bool,
        tty: Option<TerminalSize>,
    ) -> Result<ExecSession, RuntimeError> {
        let _ = (uid, container, command, stdin, tty);
        Err(RuntimeError::Unsupported(format!("the {} runtime runs no processes to exec in", self.name())))
    }

    /// Attaches to the running process of `container` in pod `uid` (its output from now on,
    /// its stdin and terminal when it has them). Runtimes without processes, and containers
    /// started without `stdin` or `tty`, answer [`RuntimeError::Unsupported`].
    async fn attach(&self, uid: &str, container: &str) -> Result<AttachSession, RuntimeError> {
        let _ = (uid, container);
        Err(RuntimeError::Unsupported(format!("the {} runtime runs no processes to attach to", self.name())))
    }

    /// A TCP connection to `localhost:port` inside the network namespace of pod `uid`
    /// (`kubectl port-forward`). Runtimes without networks answer
    /// [`RuntimeError::Unsupported`].
    async fn port_forward(&self, uid: &str, port: u16) -> Result<tokio::net::TcpStream, RuntimeError> {
        let _ = (uid, port);
        Err(RuntimeError::Unsupported(format!("the {} runtime runs no pod networks to forward ports to", self.name())))
    }

    /// The cgroups of every running container, for resource usage. Runtimes that run no
    /// processes have none.
    async fn running_cgroups(&self) -> Result<Vec<ContainerCgroup>, RuntimeError> {
        Ok(Vec::new())
    }

    /// Stops the current run of one container (SIGTERM, `grace`, SIGKILL), e.g. after its
    /// liveness probe failed; the restart policy decides what comes next.
    async fn kill_container(&self, uid: &str, container: &str, grace: Duration) -> Result<(), RuntimeError>;

    /// Pod uids whose containers changed on their own (e.g. a process exited), so the kubelet
    /// syncs them at once rather than at the next resync. Client-go has no name for this; the
    /// Kubernetes kubelet calls it the PLEG (pod lifecycle event generator). May lag: a
    /// receiver that falls behind gets `Lagged` and should sync every pod.
    fn events(&self) -> tokio::sync::broadcast::Receiver<String>;
}
