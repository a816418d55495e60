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
//! - [`runtime`]: the `Runtime` trait, with the [`runtime::containerd`] runtime (real
//!   containers through containerd and runc, with restart policies and crash-loop back-off)
//!   and the [`runtime::fake`] runtime (hollow pods);
//! - [`cni`]: one network namespace per pod, bridge + host-local + loopback plugins;
//! - [`crilog`]: container log files in the CRI format, written by the log driver that
//!   containerd's shim runs for each container, rotated by size;
//! - [`logs`]: container logs served on the kubelet's port (`/containerLogs/...`);
//! - [`exec`]: `kubectl exec` on the kubelet's port (`/exec/...`, WebSocket);
//! - [`probes`]: readiness and liveness probes (exec, httpGet, tcpSocket).
//!
//! docs/kubelet.md walks through a pod becoming a container.

pub mod cni;
pub mod crilog;
mod error;
pub mod exec;
pub mod lease;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod podworkers;
pub mod probes;
pub mod runtime;
pub mod status;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use prometheus::Registry;
use rkube_client::Client;
use rkube_component::Readiness;
use rkube_informer::factory::{Selectors, SharedInformerFactory};
use rkube_informer::handler::HandlerFns;
use rkube_informer::store::key_of;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};

use crate::cni::Network;
use crate::metrics::Metrics;
use crate::node::NodeConfig;
use crate::podworkers::{PodWorkers, Settings};
use crate::probes::ProbeManager;
use crate::runtime::Runtime;
use crate::runtime::containerd::{ContainerLogs, ContainerdConfig, ContainerdRuntime};
use crate::runtime::fake::{FakeConfig, FakeRuntime, PodCidr};

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
            lease_renew_interval: Duration::from_secs(10),
            resync_interval: Duration::from_secs(10),
            container_logs: ContainerLogs { driver: default_log_driver(), max_size: 10 * 1024 * 1024, max_files: 5 },
            log_runtime: logs::RuntimeSlot::default(),
        }
    }
}

/// The kubelet's own HTTP API besides health and metrics: container logs ([`logs`]) and exec
/// ([`exec`]), served from the files under `root_dir` and the runtime in `runtime` (filled in
/// by [`run`] through [`Config::log_runtime`]).
pub fn server_routes(root_dir: PathBuf, runtime: logs::RuntimeSlot) -> axum::Router {
    logs::router(root_dir.clone(), runtime.clone()).merge(exec::router(root_dir, runtime))
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
    let runtime: Arc<dyn Runtime> = match config.runtime {
        RuntimeKind::Fake => {
            let pod_cidr = config.node.pod_cidr.as_deref().map(PodCidr::parse).transpose().map_err(Error::Config)?;
            Arc::new(FakeRuntime::new(FakeConfig { pod_cidr, fail_start: config.fake_fail_start }))
        }
        RuntimeKind::Containerd => Arc::new(
            ContainerdRuntime::connect(ContainerdConfig {
                address: config.containerd_address.clone(),
                root_dir: config.node.root_dir.clone(),
                network: config
                    .node
                    .pod_cidr
                    .as_deref()
                    .map(|cidr| Network::new(config.cni_bin_dir.clone(), config.node.root_dir.join("cni"), cidr)),
                logs: config.container_logs.clone(),
                insecure_registries: config.insecure_registries.clone(),
                pull_metrics: Some(metrics.image_pulls.clone()),
                start_metrics: Some(metrics.container_starts.clone()),
            })
            .await?,
        ),
    };
    config.log_runtime.set(Arc::clone(&runtime));
    std::fs::create_dir_all(&config.node.root_dir).map_err(|error| {
        Error::Config(format!("cannot create root dir {}: {error}", config.node.root_dir.display()))
    })?;

    // 1. The Node, retried until the apiserver takes it: nothing else makes sense before.
    let mut backoff = Duration::from_millis(200);
    loop {
        match node::register(&client, &config.node).await {
            Ok(_) => break,
            Err(error) => {
                tracing::warn!(%error, "node registration failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(7));
            }
        }
    }

    // 2. Heartbeat and node status.
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(lease::run(
        client.clone(),
        config.node.name.clone(),
        config.lease_renew_interval,
        Arc::clone(&metrics),
        shutdown.clone(),
    ));
    tasks.spawn(node::run_status_loop(
        client.clone(),
        config.node.clone(),
        Arc::clone(&runtime),
        Arc::clone(&metrics),
        shutdown.clone(),
    ));

    // 3. This node's pods: informer -> one worker per pod.
    let factory = SharedInformerFactory::new(client.clone(), registry).map_err(Error::Informer)?;
    let selectors = Selectors { label: None, field: Some(format!("spec.nodeName={}", config.node.name)) };
    let informer = factory.informer_with_selectors::<Pod>(None, &selectors);
    // Probes run against real containers only; their result changes come back as events.
    let (probe_events, mut probe_changes) = tokio::sync::mpsc::unbounded_channel();
    let probes = (config.runtime == RuntimeKind::Containerd)
        .then(|| ProbeManager::new(Arc::clone(&runtime), probe_events, metrics.probes.clone(), shutdown.clone()));
    let workers = PodWorkers::new(
        client.clone(),
        informer.store(),
        Arc::clone(&runtime),
        Arc::clone(&metrics),
        Settings { host_ip: config.node.node_ip.to_string(), resync_interval: config.resync_interval },
        shutdown.clone(),
        probes,
    );
    let (on_add, on_update, on_delete) = (workers.clone(), workers.clone(), workers.clone());
    informer.add_handler(
        HandlerFns::new()
            .on_add(move |pod: &Arc<Pod>| on_add.update(&key_of(pod.as_ref())))
            .on_update(move |_old, new: &Arc<Pod>| on_update.update(&key_of(new.as_ref())))
            .on_delete(move |deleted| on_delete.update(&key_of(deleted.object().as_ref()))),
    );
    // Containers that changed on their own (exits, probe results): sync their pods now, not
    // at the resync.
    let store = informer.store();
    let (pleg_workers, mut events, pleg_shutdown) = (workers.clone(), runtime.events(), shutdown.clone());
    tasks.spawn(async move {
        loop {
            let uid = tokio::select! {
                () = pleg_shutdown.cancelled() => return,
                event = events.recv() => event,
                Some(uid) = probe_changes.recv() => Ok(uid),
            };
            let pods = store.list();
            let wanted: Vec<&Arc<Pod>> = match &uid {
                Ok(uid) => pods.iter().filter(|pod| pod.metadata.uid.as_ref() == Some(uid)).collect(),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => pods.iter().collect(),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            for pod in wanted {
                pleg_workers.update(&key_of(pod.as_ref()));
            }
        }
    });
    factory.start(&shutdown);
    if !factory.wait_for_cache_sync().await {
        return Ok(()); // stopped before the first list
    }
    readiness.set(true);
    tracing::info!(node = %config.node.name, runtime = runtime.name(), "kubelet running");

    // 4. Housekeeping: orphans of pods the API no longer has.
    loop {
        if let Err(error) = workers.cleanup_orphans().await {
            tracing::warn!(%error, "cleaning up orphaned pods failed");
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(config.resync_interval) => {}
        }
    }
    readiness.set(false);
    while tasks.join_next().await.is_some() {}
    Ok(())
}
