//! rkube's controllers, run together by `rkube-controller-manager`.
//!
//! Each controller is a loop of the same shape (see `docs/controllers.md`): shared informers
//! keep caches of the objects it reads, their handlers put keys on a work queue, and workers
//! take keys and make the object under each key right, judging from the caches (level
//! triggered: they look at the current state, not at the event). Controllers write only
//! through the apiserver, with the client.
//!
//! - [`replicaset`]: keeps `spec.replicas` pods per ReplicaSet (and per ReplicationController);
//! - [`deployment`]: rolls ReplicaSets per pod template (RollingUpdate, Recreate, rollback);
//! - [`garbagecollector`]: deletes objects whose owners are gone (background propagation);
//! - [`nodelifecycle`]: marks silent nodes Unknown and tainted, and evicts their pods;
//! - [`job`]: runs Jobs' pods to completion, counting each finished pod once;
//! - [`ttlafterfinished`]: deletes finished Jobs once their `ttlSecondsAfterFinished` passed;
//! - [`cronjob`]: creates a Job each time a CronJob's schedule fires;
//! - [`daemonset`]: one pod of each DaemonSet on every node that should run it;
//! - [`statefulset`]: pods with stable names, made and updated in order;
//! - [`podgc`]: deletes pods bound to Nodes that no longer exist;
//! - [`volumebinder`]: binds PersistentVolumeClaims to PersistentVolumes, making local-path
//!   volumes for claims of that class;
//! - shared pieces: [`expectations`], [`controller_ref`] (adoption and release), [`podutil`]
//!   (active, ready, available, deletion order), [`worker`] (the loop that syncs keys and
//!   does what each sync's [`worker::Action`] asks: requeue later, wait for a change, or
//!   retry an error with backoff) and [`metrics`].
//!
//! [`run`] is the whole controller-manager: endpoints, leader election, then
//! [`run_controllers`]. Tests and benchmarks that want the controllers in-process can call
//! [`run_controllers`] directly.
//!
//! Not promised: anything while the process is not the leader (it runs nothing), and nothing
//! about objects it cannot see (the caches are eventually consistent and may be stale).

use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ReplicationController;
use prometheus::Registry;
use rkube_client::Client;
use rkube_component::Readiness;
use rkube_component::leaderelection::{LeaderElectionConfig, LeaderElector};
use rkube_informer::ObjectKey;
use rkube_informer::factory::SharedInformerFactory;
use tokio_util::sync::CancellationToken;

pub mod controller_ref;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpointslice;
pub mod expectations;
pub mod garbagecollector;
pub mod history;
pub mod job;
pub mod metrics;
pub mod nodelifecycle;
pub mod podcontrol;
pub mod podgc;
pub mod podutil;
pub mod replicaset;
pub mod resourcequota;
pub mod root_ca_publisher;
pub mod serviceaccount;
pub mod statefulset;
pub mod ttlafterfinished;
pub mod volumebinder;
pub mod worker;

/// Every controller this binary knows, by the name `--controllers` uses.
pub const KNOWN_CONTROLLERS: &[&str] = &[
    "replicaset",
    "deployment",
    "garbagecollector",
    "nodelifecycle",
    "serviceaccount",
    "root-ca-cert-publisher",
    "resourcequota",
    "disruption",
    "endpointslice",
    "job",
    "ttl-after-finished",
    "cronjob",
    "daemonset",
    "replicationcontroller",
    "statefulset",
    "persistentvolume-binder",
    "podgc",
];

/// Namespace and name of the controller-manager's leader-election Lease.
pub const LEASE_NAMESPACE: &str = "kube-system";
/// Name of the controller-manager's leader-election Lease.
pub const LEASE_NAME: &str = "rkube-controller-manager";

/// Everything that can go wrong in a controller-manager; a sync's error requeues its key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Creating pods for a controller failed (the first error of the batch).
    #[error("creating pods for {key}: {source}")]
    CreatePods {
        /// The controller's key.
        key: ObjectKey,
        /// The apiserver's answer.
        #[source]
        source: rkube_client::Error,
    },
    /// Deleting surplus pods failed.
    #[error("deleting pods of {key}: {source}")]
    DeletePods {
        /// The controller's key.
        key: ObjectKey,
        /// The apiserver's answer.
        #[source]
        source: rkube_client::Error,
    },
    /// Adopting an orphan failed (409: someone else changed it first; retried).
    #[error("adopting {object}: {source}")]
    Adopt {
        /// The object being adopted.
        object: String,
        /// The apiserver's answer.
        #[source]
        source: rkube_client::Error,
    },
    /// Releasing an object that stopped matching failed.
    #[error("releasing {object}: {source}")]
    Release {
        /// The object being released.
        object: String,
        /// The apiserver's answer.
        #[source]
        source: rkube_client::Error,
    },
    /// Writing an object's status failed.
    #[error("updating the status of {key}: {source}")]
    UpdateStatus {
        /// The object's key.
        key: ObjectKey,
        /// The apiserver's answer.
        #[source]
        source: rkube_client::Error,
    },
    /// Reading, creating, updating or deleting an object failed.
    #[error("{what}: {source}")]
    Read {
        /// What was being done.
        what: String,
        /// The apiserver's answer.
        #[source]
        source: rkube_client::Error,
    },
    /// An object cannot be acted on as it is (e.g. a ReplicaSet without a template).
    #[error("{key}: {reason}")]
    InvalidObject {
        /// The object's key.
        key: ObjectKey,
        /// What is wrong with it.
        reason: String,
    },
    /// The informer library failed (an unknown index, metrics already registered).
    #[error("informer: {0}")]
    Informer(#[from] rkube_informer::Error),
    /// Registering metrics failed.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The endpoints server failed.
    #[error("serving endpoints: {0}")]
    Serve(#[from] std::io::Error),
    /// `--controllers` named a controller this binary does not have.
    #[error("unknown controller {0:?} (known: {KNOWN_CONTROLLERS:?})")]
    UnknownController(String),
    /// The informers stopped before their first list completed.
    #[error("caches did not sync before shutdown")]
    CacheSync,
    /// This process led and lost the Lease; it must exit so a fresh start can compete again.
    #[error("lost leadership of the leader-election lease")]
    LostLeadership,
    /// Leader election could not talk to the apiserver.
    #[error("leader election: {0}")]
    LeaderElection(#[source] rkube_client::Error),
}

/// Which controllers run and how many workers each has.
#[derive(Clone, Debug)]
pub struct ControllersConfig {
    /// `--controllers`: `*` for all, a name to enable one, `-name` to disable one
    /// (e.g. `*,-garbagecollector`).
    pub controllers: Vec<String>,
    /// Workers of the ReplicaSet controller (`--concurrent-replicaset-syncs`, default 5).
    pub concurrent_replicaset_syncs: usize,
    /// Workers of the Deployment controller (`--concurrent-deployment-syncs`, default 5).
    pub concurrent_deployment_syncs: usize,
    /// Workers of the garbage collector (`--concurrent-gc-syncs`, default 20).
    pub concurrent_gc_syncs: usize,
    /// Timing and limits of the node lifecycle controller.
    pub node_lifecycle: nodelifecycle::NodeLifecycleConfig,
    /// The cluster CA (PEM) the root CA publisher puts in every namespace (`--root-ca-file`);
    /// `None`: that controller does not run.
    pub root_ca: Option<String>,
    /// How long a Node must be missing before the pod GC deletes its pods
    /// (`--podgc-orphan-quarantine`, default 40 s as in Kubernetes).
    pub podgc_quarantine: std::time::Duration,
}

impl Default for ControllersConfig {
    fn default() -> Self {
        ControllersConfig {
            controllers: vec!["*".into()],
            concurrent_replicaset_syncs: 5,
            concurrent_deployment_syncs: 5,
            concurrent_gc_syncs: 20,
            node_lifecycle: nodelifecycle::NodeLifecycleConfig::default(),
            root_ca: None,
            podgc_quarantine: podgc::DEFAULT_QUARANTINE,
        }
    }
}

impl ControllersConfig {
    /// Whether `name` runs under this `--controllers` list; fails on names it does not know.
    ///
    /// # Errors
    /// [`Error::UnknownController`] for a name (with or without `-`) that is not in
    /// [`KNOWN_CONTROLLERS`].
    pub fn is_enabled(&self, name: &str) -> Result<bool, Error> {
        let mut enabled = false;
        for entry in &self.controllers {
            let entry = entry.trim();
            let (negated, bare) = entry.strip_prefix('-').map_or((false, entry), |rest| (true, rest));
            if bare != "*" && !KNOWN_CONTROLLERS.contains(&bare) {
                return Err(Error::UnknownController(bare.to_string()));
            }
            if bare == "*" || bare == name {
                enabled = !negated;
            }
        }
        Ok(enabled)
    }
}

/// The whole controller-manager's configuration (what the flags say).
#[derive(Clone, Debug)]
pub struct Config {
    /// How to reach the apiserver.
    pub client: Client,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub bind_address: SocketAddr,
    /// Which controllers run, with how many workers.
    pub controllers: ControllersConfig,
    /// Run only while holding this leader-election Lease (`--leader-elect`); `None`: always.
    pub leader_election: Option<LeaderElectionConfig>,
}

/// Runs the controller-manager until `shutdown`: serves the endpoints, takes the Lease (when
/// `leader_elect`), then runs the enabled controllers.
///
/// # Errors
/// A bad `--controllers` list, an address that cannot be bound, or [`Error::LostLeadership`]
/// when the Lease was lost (the caller should exit, and be restarted).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    for name in KNOWN_CONTROLLERS {
        config.controllers.is_enabled(name)?;
    }
    let registry = Registry::new();
    let readiness = Readiness::default();
    let listener = tokio::net::TcpListener::bind(config.bind_address).await?;
    tracing::info!(address = %listener.local_addr()?, "serving /healthz, /readyz and /metrics");
    let server_stop = CancellationToken::new();
    let server = tokio::spawn(rkube_component::serve_endpoints(
        listener,
        registry.clone(),
        readiness.clone(),
        None,
        None,
        server_stop.clone(),
    ));
    let result = if let Some(election) = config.leader_election.clone() {
        let elector = LeaderElector::new(config.client.clone(), election);
        // A standby is healthy and ready: it is doing its job, which is waiting.
        readiness.set(true);
        let mut outcome = Ok(());
        let led = elector
            .run(&shutdown, |token| async {
                // Leading: ready again only once the caches have synced.
                readiness.set(false);
                outcome =
                    run_controllers(config.client.clone(), &config.controllers, &registry, &readiness, token).await;
            })
            .await;
        match (led, outcome) {
            (Err(error), _) => Err(Error::LeaderElection(error)),
            (Ok(()), Err(error)) => Err(error),
            (Ok(()), Ok(())) if !shutdown.is_cancelled() => Err(Error::LostLeadership),
            (Ok(()), Ok(())) => Ok(()),
        }
    } else {
        run_controllers(config.client.clone(), &config.controllers, &registry, &readiness, shutdown.clone()).await
    };
    server_stop.cancel();
    match server.await {
        Ok(Err(error)) => tracing::warn!(%error, "endpoints server failed"),
        Err(error) => tracing::warn!(%error, "endpoints server task failed"),
        Ok(Ok(())) => {}
    }
    result
}

/// Runs the enabled controllers with one shared informer factory until `shutdown`; sets
/// `readiness` once the caches have synced.
///
/// # Errors
/// A bad `--controllers` list, metrics already registered in `registry`, or caches that
/// never synced before shutdown.
pub async fn run_controllers(
    client: Client,
    config: &ControllersConfig,
    registry: &Registry,
    readiness: &Readiness,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let factory = SharedInformerFactory::new(client.clone(), registry)?;
    let metrics = metrics::ControllerMetrics::register(registry)?;
    let mut loops = Vec::new();
    if config.is_enabled("replicaset")? {
        let controller = replicaset::ReplicaSetController::new(&factory, client.clone(), Some(registry));
        loops.push(("replicaset", config.concurrent_replicaset_syncs, WorkQueueController::ReplicaSet(controller)));
    }
    if config.is_enabled("replicationcontroller")? {
        let controller =
            replicaset::ReplicaSetController::<ReplicationController>::new(&factory, client.clone(), Some(registry));
        loops.push((
            "replicationcontroller",
            config.concurrent_replicaset_syncs,
            WorkQueueController::ReplicationController(controller),
        ));
    }
    if config.is_enabled("deployment")? {
        let controller = deployment::DeploymentController::new(&factory, client.clone(), Some(registry));
        loops.push(("deployment", config.concurrent_deployment_syncs, WorkQueueController::Deployment(controller)));
    }
    if config.is_enabled("garbagecollector")? {
        let controller = garbagecollector::GarbageCollector::new(&factory, client.clone(), Some(registry));
        loops.push(("garbagecollector", config.concurrent_gc_syncs, WorkQueueController::GarbageCollector(controller)));
    }
    if config.is_enabled("serviceaccount")? {
        let controller = serviceaccount::ServiceAccountController::new(&factory, client.clone(), Some(registry));
        loops.push(("serviceaccount", 1, WorkQueueController::ServiceAccount(controller)));
    }
    if config.is_enabled("root-ca-cert-publisher")? {
        match &config.root_ca {
            Some(root_ca) => {
                let controller =
                    root_ca_publisher::RootCaPublisher::new(&factory, client.clone(), root_ca.clone(), Some(registry));
                loops.push(("root-ca-cert-publisher", 1, WorkQueueController::RootCaPublisher(controller)));
            }
            None => tracing::info!("root-ca-cert-publisher not started: no --root-ca-file"),
        }
    }
    if config.is_enabled("resourcequota")? {
        let controller = resourcequota::ResourceQuotaController::new(&factory, client.clone(), Some(registry));
        loops.push(("resourcequota", 1, WorkQueueController::ResourceQuota(controller)));
    }
    if config.is_enabled("disruption")? {
        let controller = disruption::DisruptionController::new(&factory, client.clone(), Some(registry));
        loops.push(("disruption", 1, WorkQueueController::Disruption(controller)));
    }
    if config.is_enabled("endpointslice")? {
        let controller = endpointslice::EndpointSliceController::new(&factory, client.clone(), Some(registry));
        loops.push(("endpointslice", 2, WorkQueueController::EndpointSlice(controller)));
    }
    if config.is_enabled("job")? {
        let controller = job::JobController::new(&factory, client.clone(), Some(registry));
        loops.push(("job", 5, WorkQueueController::Job(controller)));
    }
    if config.is_enabled("ttl-after-finished")? {
        let controller = ttlafterfinished::TtlAfterFinishedController::new(&factory, client.clone(), Some(registry));
        loops.push(("ttl-after-finished", 1, WorkQueueController::TtlAfterFinished(controller)));
    }
    if config.is_enabled("cronjob")? {
        let controller = cronjob::CronJobController::new(&factory, client.clone(), Some(registry));
        loops.push(("cronjob", 1, WorkQueueController::CronJob(controller)));
    }
    if config.is_enabled("daemonset")? {
        let controller = daemonset::DaemonSetController::new(&factory, client.clone(), Some(registry));
        loops.push(("daemonset", 2, WorkQueueController::DaemonSet(controller)));
    }
    if config.is_enabled("statefulset")? {
        let controller = statefulset::StatefulSetController::new(&factory, client.clone(), Some(registry));
        loops.push(("statefulset", 2, WorkQueueController::StatefulSet(controller)));
    }
    if config.is_enabled("persistentvolume-binder")? {
        let controller = volumebinder::VolumeBinder::new(&factory, client.clone(), Some(registry));
        loops.push(("persistentvolume-binder", 2, WorkQueueController::VolumeBinder(controller)));
    }
    if config.is_enabled("podgc")? {
        let controller =
            podgc::PodGarbageCollector::new(&factory, client.clone(), config.podgc_quarantine, Some(registry));
        loops.push(("podgc", 1, WorkQueueController::PodGc(controller)));
    }
    let node_lifecycle = if config.is_enabled("nodelifecycle")? {
        Some(nodelifecycle::NodeLifecycleController::new(&factory, client.clone(), config.node_lifecycle.clone()))
    } else {
        None
    };
    factory.start(&shutdown);
    tokio::select! {
        synced = factory.wait_for_cache_sync() => if !synced { return Err(Error::CacheSync) },
        () = shutdown.cancelled() => return Ok(()),
    }
    readiness.set(true);
    tracing::info!(controllers = ?loops.iter().map(|(name, ..)| *name).collect::<Vec<_>>(), "caches synced; controllers started");
    let mut tasks = Vec::new();
    if let Some(controller) = node_lifecycle {
        let (errors, syncs) = (metrics.errors.clone(), metrics.syncs.clone());
        tasks.push(tokio::spawn(controller.run(shutdown.clone(), errors, syncs)));
    }
    for (name, workers, runner) in loops {
        let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            match runner {
                WorkQueueController::ReplicaSet(c) => {
                    let queue = c.queue();
                    worker::run_workers(name, c, queue, workers, metrics, shutdown).await
                }
                WorkQueueController::Deployment(c) => {
                    let queue = c.queue();
                    worker::run_workers(name, c, queue, workers, metrics, shutdown).await
                }
                WorkQueueController::GarbageCollector(c) => {
                    let queue = c.queue();
                    worker::run_workers(name, c, queue, workers, metrics, shutdown).await
                }
                WorkQueueController::ServiceAccount(c) => {
                    let queue = c.queue();
                    worker::run_workers(name, c, queue, workers, metrics, shutdown).await
                }
                WorkQueueController::RootCaPublisher(c) => {
                    let queue = c.queue();
                    worker::run_workers(name, c, queue, workers, metrics, shutdown).await
                }
                WorkQueueController::ResourceQuota(c) => {
                    let queue = c.queue();
                    worker::run_workers(name, c, queue, workers, metrics, shutdown).await
                }
                WorkQueueController::Disruption(c) => {
                    let queue = c.queue();
                    worker::run_workers(name, c, queue, workers, metrics, shutdown).await
                }
                WorkQueueController::EndpointSlice(c) => {
                    let queue = c.queue();
                    worker::run_workers(name, c, queue, workers, metrics, shutdown).await
                }
                WorkQueueController::Job(c) => {
                    let queue = c.queue();
                    worker::run_workers(name, c, queue, workers, metrics, shutdown).await
                }
                WorkQueueController::TtlAfterFinished(c) => {
                    let queue = c.queue();
                    worker::run_workers(name, c, queue, workers, metrics, shutdown).await
                }
                WorkQueueController::CronJob(c) => {
                    let queue = c.queue();
                    worker::run_workers(name, c, queue, workers, metrics, shutdown).await
                }
                WorkQueueController::DaemonSet(c) => {
                    let queue = c.queue();
                    worker::run_workers(name, c, queue, workers, metrics, shutdown).await
                }
                WorkQueueController::ReplicationController(c) => {
                    let queue = c.queue();
                    worker::run_workers(name, c, queue, workers, metrics, shutdown).await
                }
                WorkQueueController::StatefulSet(c) => {
                    let queue = c.queue();
                    worker::run_workers(name, c, queue, workers, metrics, shutdown).await
                }
                WorkQueueController::PodGc(c) => {
                    let queue = c.queue();
                    worker::run_workers(name, c, queue, workers, metrics, shutdown).await
                }
                WorkQueueController::VolumeBinder(c) => {
                    let queue = c.queue();
                    worker::run_workers(name, c, queue, workers, metrics, shutdown).await
                }
            }
        }));
    }
    for task in tasks {
        if let Err(error) = task.await {
            tracing::error!(%error, "controller task failed");
        }
    }
    Ok(())
}

/// One of the controllers driven by a work queue and [`worker::run_workers`] (all but node
/// lifecycle), for [`run_controllers`]'s loop.
enum WorkQueueController {
    ReplicaSet(Arc<replicaset::ReplicaSetController>),
    Deployment(Arc<deployment::DeploymentController>),
    GarbageCollector(Arc<garbagecollector::GarbageCollector>),
    ServiceAccount(Arc<serviceaccount::ServiceAccountController>),
    RootCaPublisher(Arc<root_ca_publisher::RootCaPublisher>),
    ResourceQuota(Arc<resourcequota::ResourceQuotaController>),
    Disruption(Arc<disruption::DisruptionController>),
    EndpointSlice(Arc<endpointslice::EndpointSliceController>),
    Job(Arc<job::JobController>),
    TtlAfterFinished(Arc<ttlafterfinished::TtlAfterFinishedController>),
    CronJob(Arc<cronjob::CronJobController>),
    DaemonSet(Arc<daemonset::DaemonSetController>),
    ReplicationController(Arc<replicaset::ReplicaSetController<ReplicationController>>),
    StatefulSet(Arc<statefulset::StatefulSetController>),
    VolumeBinder(Arc<volumebinder::VolumeBinder>),
    PodGc(Arc<podgc::PodGarbageCollector>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(list: &[&str]) -> ControllersConfig {
        ControllersConfig {
            controllers: list.iter().map(ToString::to_string).collect(),
            ..ControllersConfig::default()
        }
    }

    #[test]
    fn controllers_flag_enables_all_some_or_all_but_some() {
        assert!(config(&["*"]).is_enabled("deployment").unwrap());
        assert!(!config(&["replicaset"]).is_enabled("deployment").unwrap());
        assert!(config(&["replicaset", "deployment"]).is_enabled("deployment").unwrap());
        assert!(!config(&["*", "-deployment"]).is_enabled("deployment").unwrap());
        assert!(config(&["nonsense"]).is_enabled("replicaset").is_err());
    }
}
