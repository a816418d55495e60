//! `rkube-scheduler`: places pending pods on nodes. Thin main: flags → `rkube_scheduler::run`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use rkube_client::{Client, Config as ClientConfig, KubeconfigOptions};
use rkube_component::Process;
use rkube_component::flags::LeaderElectionFlags;
use rkube_scheduler::{Config, ScoreWeights};

/// The rkube scheduler: watches pods that have no node yet (`spec.nodeName` empty) and whose
/// `spec.schedulerName` is ours, picks a node for each one (filter the nodes that can take it,
/// score the rest, pick the best) and binds the pod there through the apiserver.
///
/// Pods that fit nowhere get the condition PodScheduled=False with a message saying why
/// ("0/3 nodes are available: 1 Insufficient cpu, ...") and are retried when nodes change.
/// Run two copies for availability: with --leader-elect (the default) only the one holding the
/// Lease kube-system/rkube-scheduler schedules.
///
/// Example: rkube-scheduler --kubeconfig ~/.kube/config --port 10251
#[derive(Debug, Parser)]
#[command(name = "rkube-scheduler", version, about, long_about)]
struct Flags {
    /// Kubeconfig file saying where the apiserver is (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use (default: its current-context).
    #[arg(long)]
    context: Option<String>,

    #[command(flatten)]
    leader_election: LeaderElectionFlags,

    /// Name of this process in the leader Lease (default: hostname and a random suffix); give
    /// each copy its own, e.g. the machine's name where copies share a hostname.
    #[arg(long)]
    identity: Option<String>,

    /// Pods whose spec.schedulerName is this are scheduled by this process; pods naming another
    /// scheduler are left alone.
    #[arg(long, default_value = rkube_scheduler::DEFAULT_SCHEDULER_NAME)]
    scheduler_name: String,

    /// Address to serve /healthz, /readyz and /metrics on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,

    /// Port to serve /healthz, /readyz and /metrics on (0: any free port, logged at start).
    #[arg(long, default_value_t = 10251)]
    port: u16,

    /// Weight of the LeastAllocated score (prefer nodes with more CPU and memory free); 0 turns it off.
    #[arg(long, default_value_t = ScoreWeights::default().least_allocated)]
    least_allocated_weight: i64,

    /// Weight of the SelectorSpread score (spread pods of one ReplicaSet over nodes); 0 turns it off.
    #[arg(long, default_value_t = ScoreWeights::default().selector_spread)]
    selector_spread_weight: i64,

    /// How many feasible nodes to look for before scoring, as a percentage of all nodes
    /// (Kubernetes' percentageOfNodesToScore): 0 adapts to the cluster's size (every node up to
    /// 100 nodes, then 50% falling by 1% per 125 nodes to 5%, never fewer than 100 nodes);
    /// 100 looks at every node.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    percentage_of_nodes_to_score: u32,

    /// Threads that filter nodes at once once a pod's cycle has looked at 1,000 nodes without
    /// finding enough (default: the number of CPUs).
    #[arg(long)]
    parallelism: Option<usize>,

    /// Bindings that may be in flight at once; scheduling waits while all are taken.
    #[arg(long, default_value_t = rkube_scheduler::DEFAULT_MAX_CONCURRENT_BINDS)]
    max_concurrent_binds: usize,

    /// Requests per second this scheduler may send to the apiserver, Events aside (each
    /// placement costs one binding). kube-scheduler's default of 50 would cap it at 50 pods/s.
    #[arg(long, default_value_t = 2000.0)]
    kube_api_qps: f32,

    /// Requests that may be sent at once above --kube-api-qps.
    #[arg(long, default_value_t = 4000)]
    kube_api_burst: u32,

    /// Events per second this scheduler may send (Scheduled, FailedScheduling); Events over
    /// the limit wait, and are dropped when too many wait.
    #[arg(long, default_value_t = 100.0)]
    event_qps: f32,

    /// Events that may be sent at once above --event-qps.
    #[arg(long, default_value_t = 200)]
    event_burst: u32,

    /// Log format: `text` for people, `json` for machines (filter with RUST_LOG, default info).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// This process's identity in the Lease: hostname plus a random suffix.
fn identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "rkube-scheduler".into());
    format!("{host}_{:08x}", rand::random::<u32>())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    rkube_component::init_tracing(&flags.log_format);
    anyhow::ensure!(
        flags.least_allocated_weight >= 0 && flags.selector_spread_weight >= 0,
        "score weights must not be negative"
    );

    let options = KubeconfigOptions { path: flags.kubeconfig.clone(), context: flags.context.clone() };
    let mut client_config = ClientConfig::from_kubeconfig(&options).context("reading the kubeconfig")?;
    let mut event_config = client_config.clone();
    event_config.qps = flags.event_qps;
    event_config.burst = flags.event_burst;
    client_config.qps = flags.kube_api_qps;
    client_config.burst = flags.kube_api_burst;
    let client = Client::new(client_config).context("building the API client")?;
    let event_client = Client::new(event_config).context("building the event client")?;

    let mut config = Config::new(&flags.identity.clone().unwrap_or_else(identity));
    config.scheduler_name = flags.scheduler_name.clone();
    config.event_client = Some(event_client);
    config.weights =
        ScoreWeights { least_allocated: flags.least_allocated_weight, selector_spread: flags.selector_spread_weight };
    config.percentage_of_nodes_to_score = flags.percentage_of_nodes_to_score;
    if let Some(parallelism) = flags.parallelism {
        config.parallelism = parallelism.max(1);
    }
    config.max_concurrent_binds = flags.max_concurrent_binds.max(1);
    let identity = config.leader_election.as_ref().map(|e| e.identity.clone()).unwrap_or_default();
    config.leader_election = flags.leader_election.config("rkube-scheduler", &identity);

    let address = SocketAddr::new(flags.bind_address, flags.port);
    let process = Process::start(address).await.with_context(|| format!("binding {address}"))?;
    let result =
        rkube_scheduler::run(client, config, &process.registry, process.readiness.clone(), process.shutdown.clone())
            .await;
    process.finish().await.context("serving health endpoints")?;
    result.context("rkube-scheduler")
}
