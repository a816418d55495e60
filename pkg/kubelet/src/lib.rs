//! rkube's node agent, the kubelet: registers its Node, heartbeats a Lease, and runs the pods
//! bound to its node.
//!
//! How it fits together (each module's docs say what it keeps true):
//! - [`node`]: registers the Node (create, or update on restart) with the machine's capacity,
//!   and keeps its conditions (Ready, MemoryPressure, DiskPressure, PIDPressure) current;
//! - [`lease`]: the heartbeat, a Lease in `kube-node-lease` renewed every few seconds;
//! - a pod informer with `fieldSelector=spec.nodeName=<node>` tells the [`podworkers`] about
//!   every change; one worker per pod drives the [`runtime`] and the [`status`] manager writes
//!   `pods/status` when something changed;
//! - [`pleg`]: containers that changed on their own (exits, probe results) get their pods
//!   synced at once;
//! - [`runtime`]: the `Runtime` trait, with the [`runtime::containerd`] runtime (real
//!   containers through containerd and runc, with restart policies and crash-loop back-off)
//!   and the [`runtime::fake`] runtime (hollow pods);
//! - [`volumes`]: the content of `configMap`, `secret`, `downwardAPI` and `projected`
//!   volumes (the ServiceAccount token among them), written before containers start and kept
//!   current; [`envvars`]: `env` and `envFrom` resolved when a container is created, with
//!   the Services' variables from a Service informer (all namespaces, containerd runtime);
//! - [`cni`]: one network namespace per pod, bridge + host-local + loopback plugins;
//! - [`crilog`]: container log files in the CRI format, written by the log driver that
//!   containerd's shim runs for each container, rotated by size;
//! - [`logs`]: container logs served on the kubelet's port (`/containerLogs/...`);
//! - [`exec`]: `kubectl exec` on the kubelet's port (`/exec/...`, WebSocket, with a terminal
//!   for `-t`);
//! - [`stats`]: CPU and memory of the node and its containers (`/stats/summary`), which the
//!   apiserver serves as `metrics.k8s.io` for `kubectl top`;
//! - [`probes`]: readiness and liveness probes (exec, httpGet, tcpSocket);
//! - [`startup`]: where each pod's start-up time goes (the start-up SLI and a histogram per
//!   step).
//!
//! docs/kubelet.md walks through a pod becoming a container.

pub mod access;
pub mod cni;
pub mod crilog;
pub mod envvars;
mod error;
pub mod exec;
pub mod lease;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod pleg;
pub mod podworkers;
pub mod portforward;
pub mod probes;
pub mod runtime;
pub mod spdy;
pub mod startup;
pub mod stats;
pub mod status;
pub mod volumes;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use prometheus::Registry;
use rkube_api::backoff::{Backoff, BackoffConfig};
use rkube_client::Client;
use rkube_client::events::EventRecorder;
use rkube_component::Readiness;
use rkube_informer::ObjectKey;
use rkube_informer::factory::{Selectors, SharedInformerFactory};
use rkube_informer::handler::HandlerFns;
use rkube_informer::informer::SharedInformer;
use rkube_informer::store::Store;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};

use crate::envvars::{ObjectSource, ServiceLister};
use crate::volumes::VolumeManager;

use crate::cni::Network;
use crate::metrics::Metrics;
use crate::node::NodeConfig;
use crate::podworkers::{PodWorkers, Settings};
use crate::probes::ProbeManager;
use crate::runtime::Runtime;
use crate::runtime::containerd::{ContainerLogs, ContainerdConfig, ContainerdRuntime};
use crate::runtime::fake::{FakeConfig, FakeRuntime, PodCidr};
use crate::startup::PodStartTracker;

/// Which container runtime runs the pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    /// Real containers through containerd.
    Containerd,
    /// No containers: pods "run" at once (hollow nodes, tests).
    Fake,
}

/// Everything the kubelet is told at start (the flags of `rkubelet`).
#[derive(Clone, Debug)]
pub struct Config {
    /// Describes the Node (name, labels, taints, pod CIDR, address, port, root dir).
    pub node: NodeConfig,
    /// Which runtime runs pods.
    pub runtime: RuntimeKind,
    /// containerd's socket (used by the containerd runtime).
    pub containerd_address: PathBuf,
    /// Registries (`host:port`) the containerd runtime pulls from over plain HTTP, besides
    /// loopback ones (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
    /// Where the CNI plugins are (`bridge`, `host-local`, `loopback`).
    pub cni_bin_dir: PathBuf,
    /// Make the fake runtime fail every container start.
    pub fake_fail_start: bool,
    /// How often the node Lease is renewed.
    pub lease_renew_interval: Duration,
    /// How often every pod is synced even without a change.
    pub resync_interval: Duration,
    /// The container log driver and rotation (containerd runtime).
    pub container_logs: ContainerLogs,
    /// Where the log server ([`logs::router`]) finds the runtime once it is connected.
    pub log_runtime: logs::RuntimeSlot,
    /// The cluster DNS pods use (`--cluster-dns`, `--cluster-domain`); `None`: pods get the
    /// node's resolv.conf.
    pub cluster_dns: Option<runtime::containerd::ClusterDns>,
}

impl Config {
    /// A config with the defaults for a node named `name` reachable at `node_ip`.
    pub fn new(name: &str, node_ip: IpAddr) -> Config {
        Config {
            node: NodeConfig {
                name: name.into(),
                labels: Default::default(),
                taints: Vec::new(),
                pod_cidr: None,
                node_ip,
                port: 10250,
                root_dir: PathBuf::from("/var/lib/rkubelet"),
            },
            runtime: RuntimeKind::Fake,
            containerd_address: PathBuf::from("/run/containerd/containerd.sock"),
            insecure_registries: Vec::new(),
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            fake_fail_start: false,
            cluster_dns: None,
            lease_renew_interval: Duration::from_secs(10),
            resync_interval: Duration::from_secs(10),
            container_logs: ContainerLogs { driver: default_log_driver(), max_size: 10 * 1024 * 1024, max_files: 5 },
            log_runtime: logs::RuntimeSlot::default(),
        }
    }
}

/// The kubelet's own HTTP API besides health and metrics: container logs ([`logs`]), exec and
/// attach ([`exec`]), port forwarding ([`portforward`]) and resource usage ([`stats`]) of node `node_name`, served from the files under
/// `root_dir` and the runtime in `runtime` (filled in by [`run`] through
/// [`Config::log_runtime`]). With `access`, only callers it authenticates and authorizes may
/// use them ([`access`]).
pub fn server_routes(
    node_name: String,
    root_dir: PathBuf,
    runtime: logs::RuntimeSlot,
    access: Option<Arc<access::Access>>,
) -> axum::Router {
    let routes = logs::router(root_dir.clone(), runtime.clone())
        .merge(exec::router(root_dir.clone(), runtime.clone()))
        .merge(portforward::router(root_dir.clone(), runtime.clone()))
        .merge(stats::router(node_name, root_dir, runtime));
    match access {
        Some(access) => routes.layer(axum::middleware::from_fn_with_state(access, access::check)),
        None => routes,
    }
}

/// `rkube-log-driver` next to the running program (how `make build` lays out the binaries).
pub fn default_log_driver() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("rkube-log-driver")))
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin/rkube-log-driver"))
}

/// Runs the kubelet until `shutdown`: registers the Node, then heartbeats, reports node
/// status and runs this node's pods. Sets `readiness` once the Node is registered and the pod
/// cache has synced.
///
/// The steps, in order: connect the runtime → register the Node → start the heartbeat (Lease
/// and node status) → start the pod informer (and, for the containerd runtime, the Service
/// informer that containers' environment is built from, [`envvars::ServiceLister`]) → start
/// the pod workers → start the PLEG → wait for the pod cache → clean up orphans until
/// shutdown. Readiness waits for the pod cache only: a container start waits for (or fails
/// without) the Service cache by itself. The kubelet's HTTP API is not served here: `rkubelet`
/// mounts [`server_routes`] next to health and metrics.
///
/// # Errors
/// Only at start: a bad config, a runtime that is not available, a registry that already holds
/// the metrics. Registration is retried until it works or `shutdown`; after that nothing
/// returns an error (loops log, count and retry).
pub async fn run(
    client: Client,
    config: Config,
    registry: &Registry,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<()> {
    let metrics = Arc::new(Metrics::register(registry).map_err(Error::Metrics)?);
    let startup = Arc::new(PodStartTracker::new(metrics.startup.clone()));
    let factory = SharedInformerFactory::new(client.clone(), registry).map_err(Error::Informer)?;
    let runtime = connect_runtime(&config, &metrics, &client, &startup, &factory).await?;
    config.log_runtime.set(Arc::clone(&runtime));
    create_root_dir(&config.node.root_dir)?;
    let kubelet = Kubelet { client, config, runtime, metrics, startup, shutdown };

    if !kubelet.register_node().await {
        return Ok(()); // stopped before the apiserver took the Node
    }
    let mut tasks = tokio::task::JoinSet::new();
    kubelet.start_heartbeat(&mut tasks);
    let pods = kubelet.pod_informer(&factory);
    let (workers, probe_changes) = kubelet.start_pod_workers(&pods);
    kubelet.start_pleg(&mut tasks, pods.store(), &workers, probe_changes);
    if !kubelet.sync_pod_cache(&factory, &pods).await {
        return Ok(()); // stopped before the first list
    }
    readiness.set(true);
    tracing::info!(node = %kubelet.config.node.name, runtime = kubelet.runtime.name(), "kubelet running");
    kubelet.clean_up_orphans_until_shutdown(&workers).await;
    readiness.set(false);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// The runtime `config` asks for, connected (containerd) or built (fake). The containerd
/// runtime builds containers' environment with a Service informer of all namespaces from
/// `factory` (started with the pod informer); hollow pods get no environment, so the fake
/// runtime asks for none.
async fn connect_runtime(
    config: &Config,
    metrics: &Metrics,
    client: &Client,
    startup: &Arc<PodStartTracker>,
    factory: &SharedInformerFactory,
) -> Result<Arc<dyn Runtime>> {
    Ok(match config.runtime {
        RuntimeKind::Fake => {
            let pod_cidr = config.node.pod_cidr.as_deref().map(PodCidr::parse).transpose().map_err(Error::Config)?;
            Arc::new(FakeRuntime::new(FakeConfig {
                pod_cidr,
                fail_start: config.fake_fail_start,
                log_dir: Some(config.node.root_dir.join("pods")),
            }))
        }
        RuntimeKind::Containerd => {
            let services = factory.informer::<Service>(None);
            let mut containerd = containerd_config(config, metrics, client, services);
            containerd.startup = Some(Arc::clone(startup));
            Arc::new(ContainerdRuntime::connect(containerd).await?)
        }
    })
}

/// What the containerd runtime is told: the socket, the root dir, the pod network (with a pod
/// CIDR), logs, insecure registries, where pulls and starts are counted, and where
/// containers' environment comes from (the apiserver for ConfigMaps and Secrets, the Service
/// informer `services` for Services).
fn containerd_config(
    config: &Config,
    metrics: &Metrics,
    client: &Client,
    services: SharedInformer<Service>,
) -> ContainerdConfig {
    let network = config
        .node
        .pod_cidr
        .as_deref()
        .map(|cidr| Network::new(config.cni_bin_dir.clone(), config.node.root_dir.join("cni"), cidr));
    ContainerdConfig {
        address: config.containerd_address.clone(),
        root_dir: config.node.root_dir.clone(),
        network,
        logs: config.container_logs.clone(),
        insecure_registries: config.insecure_registries.clone(),
        pull_metrics: Some(metrics.image_pulls.clone()),
        start_metrics: Some(metrics.container_starts.clone()),
        env_source: Some(ObjectSource::new(client.clone()).with_services(ServiceLister::new(services))),
        host_ip: config.node.node_ip.to_string(),
        cluster_dns: config.cluster_dns.clone(),
        events: Some(EventRecorder::new(client.clone(), "kubelet", Some(&config.node.name))),
        startup: None,
    }
}

/// Creates the kubelet's root dir (logs, volumes, runc state) if it is missing.
fn create_root_dir(root_dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(root_dir)
        .map_err(|error| Error::Config(format!("cannot create root dir {}: {error}", root_dir.display())))
}

/// What the steps of [`run`] share once the runtime is connected.
struct Kubelet {
    client: Client,
    config: Config,
    runtime: Arc<dyn Runtime>,
    metrics: Arc<Metrics>,
    /// Times pods' start-up ([`startup`]).
    startup: Arc<PodStartTracker>,
    shutdown: CancellationToken,
}

impl Kubelet {
    /// Registers the Node, retrying with back-off (200 ms doubling to 7 s) until the apiserver
    /// takes it: nothing else makes sense before. Returns false when `shutdown` came first.
    async fn register_node(&self) -> bool {
        let config = BackoffConfig::doubling(Duration::from_millis(200), Duration::from_secs(7), Duration::MAX);
        let mut backoff = Backoff::new(config);
        loop {
            match node::register(&self.client, &self.config.node).await {
                Ok(_) => return true,
                Err(error) => {
                    let delay = backoff.next_delay(tokio::time::Instant::now().into_std());
                    tracing::warn!(%error, retry_in = ?delay, "node registration failed; retrying");
                    tokio::select! {
                        () = self.shutdown.cancelled() => return false,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Starts the heartbeat: the node Lease ([`lease`]) and the Node's status ([`node`]).
    fn start_heartbeat(&self, tasks: &mut tokio::task::JoinSet<()>) {
        tasks.spawn(lease::run(
            self.client.clone(),
            self.config.node.name.clone(),
            self.config.lease_renew_interval,
            Arc::clone(&self.metrics),
            self.shutdown.clone(),
        ));
        tasks.spawn(node::run_status_loop(
            self.client.clone(),
            self.config.node.clone(),
            Arc::clone(&self.runtime),
            Arc::clone(&self.metrics),
            EventRecorder::new(self.client.clone(), "kubelet", Some(&self.config.node.name)),
            self.shutdown.clone(),
        ));
    }

    /// The informer of the pods bound to this node (`fieldSelector=spec.nodeName=<node>`).
    fn pod_informer(&self, factory: &SharedInformerFactory) -> SharedInformer<Pod> {
        let selectors = Selectors { label: None, field: Some(format!("spec.nodeName={}", self.config.node.name)) };
        factory.informer_with_selectors::<Pod>(None, &selectors)
    }

    /// Starts the pod workers (one per pod, [`podworkers`]) and tells them about every change
    /// `pods` sees. Probes run against real containers only; the receiver returned hears the
    /// uids of pods whose probe results changed.
    fn start_pod_workers(&self, pods: &SharedInformer<Pod>) -> (PodWorkers, UnboundedReceiver<String>) {
        let (probe_events, probe_changes) = tokio::sync::mpsc::unbounded_channel();
        let probes = (self.config.runtime == RuntimeKind::Containerd).then(|| {
            ProbeManager::new(
                Arc::clone(&self.runtime),
                probe_events,
                self.metrics.probes.clone(),
                self.shutdown.clone(),
            )
            .with_events(EventRecorder::new(self.client.clone(), "kubelet", Some(&self.config.node.name)))
        });
        let workers = PodWorkers::new(
            self.client.clone(),
            pods.store(),
            Arc::clone(&self.runtime),
            Arc::clone(&self.metrics),
            Settings {
                host_ip: self.config.node.node_ip.to_string(),
                resync_interval: self.config.resync_interval,
                volumes: (self.config.runtime == RuntimeKind::Containerd).then(|| {
                    Arc::new(VolumeManager::new(
                        ObjectSource::new(self.client.clone()),
                        self.config.node.root_dir.clone(),
                        self.config.node.node_ip.to_string(),
                    ))
                }),
                events: (self.config.runtime == RuntimeKind::Containerd)
                    .then(|| EventRecorder::new(self.client.clone(), "kubelet", Some(&self.config.node.name))),
                startup: Some(Arc::clone(&self.startup)),
            },
            self.shutdown.clone(),
            probes,
        );
        let (on_add, on_update, on_delete) = (workers.clone(), workers.clone(), workers.clone());
        let (added, updated, deleted) =
            (Arc::clone(&self.startup), Arc::clone(&self.startup), Arc::clone(&self.startup));
        pods.add_handler(
            HandlerFns::new()
                .on_add(move |pod: &Arc<Pod>| {
                    added.observe(pod, std::time::Instant::now(), jiff::Timestamp::now());
                    on_add.update(&ObjectKey::of(pod.as_ref()));
                })
                .on_update(move |old: &Arc<Pod>, new: &Arc<Pod>| {
                    updated.observe(new, std::time::Instant::now(), jiff::Timestamp::now());
                    if podworkers::needs_sync(old, new) {
                        on_update.update(&ObjectKey::of(new.as_ref()));
                    }
                })
                .on_delete(move |gone| {
                    if let Some(uid) = gone.object().metadata.uid.as_deref() {
                        deleted.forget(uid);
                    }
                    on_delete.update(&ObjectKey::of(gone.object().as_ref()));
                }),
        );
        (workers, probe_changes)
    }

    /// Starts the [`pleg`]: pods whose containers changed on their own (exits, probe results)
    /// are synced now, not at the resync.
    fn start_pleg(
        &self,
        tasks: &mut tokio::task::JoinSet<()>,
        pods: Store<Pod>,
        workers: &PodWorkers,
        probe_changes: UnboundedReceiver<String>,
    ) {
        let events = pleg::Events { runtime: self.runtime.events(), probes: probe_changes };
        tasks.spawn(pleg::run(pods, workers.clone(), events, self.shutdown.clone()));
    }

    /// Starts the informers (pods, and Services for the containerd runtime) and waits for the
    /// first list of `pods`. Returns false when `shutdown` came first. The Service informer is
    /// not waited for here (see [`envvars::ServiceLister`]).
    async fn sync_pod_cache(&self, factory: &SharedInformerFactory, pods: &SharedInformer<Pod>) -> bool {
        factory.start(&self.shutdown);
        pods.wait_for_sync().await
    }

    /// Housekeeping until `shutdown`: every resync interval, kills what the runtime still runs
    /// for pods the API no longer has.
    async fn clean_up_orphans_until_shutdown(&self, workers: &PodWorkers) {
        loop {
            if let Err(error) = workers.cleanup_orphans().await {
                tracing::warn!(%error, "cleaning up orphaned pods failed");
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(self.config.resync_interval) => {}
            }
        }
    }
}
