//! rkube's scheduler: places pending pods on nodes (filter, score, bind).
//!
//! A pod created without `spec.nodeName` runs nowhere until a scheduler picks a node for it and
//! says so through the pod's `binding` subresource. This crate is that scheduler, shaped like
//! kube-scheduler but small enough to read in one sitting:
//!
//! | module | what it holds | Kubernetes name |
//! |---|---|---|
//! | [`queue`] | pending pods: active (priority, then age), backoff, unschedulable | `PriorityQueue` (activeQ, backoffQ, unschedulablePods) |
//! | [`cache`] | nodes and the pods bound to them, plus pods we *assumed* onto a node | scheduler cache, assumed pods |
//! | [`framework`] | what filter and score plugins are; one attempt's filter → score → pick | scheduling framework |
//! | [`plugins`] | one module per plugin | `NodeResourcesFit`, `TaintToleration`, ... |
//! | [`binder`] | bindings, the `PodScheduled` condition, Events | `DefaultBinder`, event recorder |
//! | `scheduler` | the informer handlers and the loop | `scheduleOne` |
//! | [`metrics`] | Prometheus metrics | `scheduler_*` metrics |
//! | [`quantity`], [`resources`] | `100m`, `512Mi` as numbers; what pods request and nodes offer | `resource.Quantity` |
//!
//! [`run`] is the whole process: informers on pods and nodes, leader election (optional), and the
//! scheduling loop. The learner's guide is `docs/scheduler.md`.
//!
//! What it keeps true: a pod is bound at most once (the apiserver's binding subresource refuses
//! a second binding); a node is not overcommitted by this scheduler, because pods in flight are
//! counted on their node before their binding is sent; a pod that does not fit is retried when a
//! node is added or changes, a bound pod goes away, or after at most 5 minutes.
//! Not promised: preemption, pod affinity, topology spread constraints, volumes, preferred node
//! affinity; the best node of the whole cluster (on more than 100 nodes an attempt stops once
//! enough nodes are feasible, see [`framework::num_feasible_nodes_to_find`]).

pub mod binder;
pub mod cache;
pub mod framework;
pub mod metrics;
pub mod plugins;
pub use rkube_api::quantity;
pub mod queue;
pub mod resources;
mod scheduler;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use prometheus::Registry;
use rkube_client::Client;
use rkube_component::Readiness;
use rkube_component::leaderelection::{LeaderElectionConfig, LeaderElector};
use rkube_informer::factory::SharedInformerFactory;
use tokio_util::sync::CancellationToken;

pub use plugins::ScoreWeights;

/// The scheduler name pods get when they do not set `spec.schedulerName`.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// Bindings in flight at once unless configured: enough to keep the apiserver busy at several
/// thousand bindings per second with round trips of a few milliseconds, and well under the
/// apiserver's default `--max-mutating-requests-inflight` (200), beyond which it answers 429
/// and every binding over the limit would fail and wait out a back-off (measured: 256 in
/// flight sent 10,303 bindings for 5,000 pods).
pub const DEFAULT_MAX_CONCURRENT_BINDS: usize = 100;

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Pods whose `spec.schedulerName` is this are ours (default `default-scheduler`).
    pub scheduler_name: String,
    /// Weights of the score plugins.
    pub weights: ScoreWeights,
    /// Leader election: `Some` to schedule only while holding the Lease (namespace, name and
    /// this process's identity inside); `None` to schedule at once.
    pub leader_election: Option<LeaderElectionConfig>,
    /// Client for Events, with its own rate limit so that Events never delay bindings (as
    /// kube-scheduler's separate event client); `None` sends them with the main client.
    pub event_client: Option<Client>,
    /// How many feasible nodes an attempt looks for, as a percentage of the nodes: 0 adapts to
    /// the cluster's size (Kubernetes' default), 100 looks at every node; see
    /// [`framework::num_feasible_nodes_to_find`].
    pub percentage_of_nodes_to_score: u32,
    /// Threads that may filter nodes at once (a cycle filters its first
    /// [`framework::PARALLEL_FILTER_MIN_NODES`] nodes on its own thread).
    pub parallelism: usize,
    /// Bindings that may be in flight at once; a scheduling cycle waits for a free one.
    pub max_concurrent_binds: usize,
}

impl Config {
    /// Defaults: `default-scheduler`, default weights, leader election on the Lease
    /// `kube-system/rkube-scheduler` as `identity`.
    pub fn new(identity: &str) -> Config {
        Config {
            scheduler_name: DEFAULT_SCHEDULER_NAME.into(),
            weights: ScoreWeights::default(),
            leader_election: Some(LeaderElectionConfig::new("kube-system", "rkube-scheduler", identity)),
            event_client: None,
            percentage_of_nodes_to_score: 0,
            parallelism: std::thread::available_parallelism().map_or(1, usize::from),
            max_concurrent_binds: DEFAULT_MAX_CONCURRENT_BINDS,
        }
    }
}

/// Why the scheduler stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The metrics could not be registered (a name registered twice in `registry`).
    #[error("cannot register metrics: {0}")]
    Metrics(#[source] prometheus::Error),
    /// The informers could not be set up.
    #[error("cannot set up informers: {0}")]
    Informer(#[source] rkube_informer::Error),
    /// Leader election failed.
    #[error("leader election failed: {0}")]
    LeaderElection(#[source] rkube_client::Error),
    /// This process led and lost the Lease; like kube-scheduler it stops, to be restarted as a
    /// follower, rather than risk acting as a second leader.
    #[error("lost the leader lease {0}; exiting so that only the new leader schedules")]
    LostLeadership(String),
}

/// Runs the scheduler until `shutdown` is cancelled: starts informers on pods and nodes, sets
/// `readiness` once their caches have synced, and runs the scheduling loop (while leading, if
/// leader election is configured). Metrics go into `registry`.
///
/// Returns `Ok` on shutdown, [`Error::LostLeadership`] if it led and lost the Lease.
pub async fn run(
    client: Client,
    config: Config,
    registry: &Registry,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let metrics = metrics::SchedulerMetrics::register(registry).map_err(Error::Metrics)?;
    let factory = SharedInformerFactory::new(client.clone(), registry).map_err(Error::Informer)?;
    let pods = factory.informer::<Pod>(None);
    let nodes = factory.informer::<Node>(None);
    let shared = Arc::new(scheduler::SchedulingState::new(
        &config.scheduler_name,
        queue::SchedulingQueue::new(Some(metrics.pending.clone())),
    ));
    scheduler::register_handlers(&shared, &pods, &nodes);
    let (claims, volumes, classes) = (
        factory.informer::<PersistentVolumeClaim>(None),
        factory.informer::<PersistentVolume>(None),
        factory.informer::<StorageClass>(None),
    );
    scheduler::register_volume_handlers(&shared, &claims, &volumes, &classes);
    // Informers run until the process stops; the loop only while leading.
    let informers = shutdown.child_token();
    factory.start(&informers);
    let synced = tokio::select! {
        synced = factory.wait_for_cache_sync() => synced,
        _ = shutdown.cancelled() => return Ok(()),
    };
    if !synced {
        return Ok(()); // stopped before syncing: shutdown
    }
    tracing::info!(nodes = nodes.store().len(), pods = pods.store().len(), "caches synced");
    readiness.set(true);

    let event_client = config.event_client.clone().unwrap_or_else(|| client.clone());
    let events = binder::EventRecorder::start(event_client, &config.scheduler_name, metrics.clone(), shutdown.clone());
    let scheduling_loop = scheduler::Loop {
        shared: Arc::clone(&shared),
        pods: pods.store(),
        volumes: scheduler::VolumeStores { claims: claims.store(), volumes: volumes.store(), classes: classes.store() },
        framework: framework::Framework {
            filters: plugins::default_filters(),
            scores: plugins::default_scores(config.weights),
            plugin_duration: Some(metrics.plugin_duration.clone()),
        },
        binder: binder::Binder::new(client.clone(), metrics.clone()),
        events,
        metrics,
        search: scheduler::SearchConfig {
            percentage_of_nodes_to_score: config.percentage_of_nodes_to_score,
            parallelism: config.parallelism.max(1),
        },
        binds: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_binds.max(1))),
        snapshot: cache::Snapshot::default(),
        next_start: 0,
        cycles: 0,
    };
    let result = match config.leader_election {
        None => {
            scheduling_loop.run(shutdown.clone()).await;
            Ok(())
        }
        Some(election) => {
            let lease = format!("{}/{}", election.namespace, election.name);
            let elector = LeaderElector::new(client, election);
            match elector.run(&shutdown, |lead| scheduling_loop.run(lead)).await {
                Err(error) => Err(Error::LeaderElection(error)),
                Ok(()) if shutdown.is_cancelled() => Ok(()),
                Ok(()) => Err(Error::LostLeadership(lease)),
            }
        }
    };
    shared.queue.close();
    // Binding tasks stop with the loop's token; a binding cut short is retried by whoever
    // schedules next, since the pod is still unbound.
    informers.cancel();
    result
}
