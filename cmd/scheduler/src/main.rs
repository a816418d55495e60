//! `rkube-scheduler`: places pending pods on nodes. Thin main: flags → `rkube_scheduler::run`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rkube_client::{Client, Config as ClientConfig, KubeconfigOptions};
use rkube_component::Readiness;
use rkube_component::leaderelection::LeaderElectionConfig;
use rkube_scheduler::{Config, ScoreWeights};
use tokio_util::sync::CancellationToken;

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

    /// Schedule only while holding the leader Lease, so that several copies can run and only
    /// one acts. Turn off with --leader-elect=false when running exactly one copy.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    leader_elect: bool,

    /// Namespace of the leader Lease.
    #[arg(long, default_value = "kube-system")]
    leader_elect_resource_namespace: String,

    /// Name of the leader Lease.
    #[arg(long, default_value = "rkube-scheduler")]
    leader_elect_resource_name: String,

    /// How long a leader that stopped renewing keeps the Lease before another copy takes over
    /// (e.g. 15s, 1500ms).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: Duration,

    /// How long the leader keeps trying to renew before it stops scheduling and exits.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_renew_deadline: Duration,

    /// How often copies try to take the Lease, and the leader renews it.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: Duration,

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

/// Reads `15s`, `1500ms`, `2m` or a plain number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("{text:?} is not a duration like 15s or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: unit must be ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
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

    let mut config = Config::new(&identity());
    config.scheduler_name = flags.scheduler_name.clone();
    config.event_client = Some(event_client);
    config.weights =
        ScoreWeights { least_allocated: flags.least_allocated_weight, selector_spread: flags.selector_spread_weight };
    config.leader_election = flags.leader_elect.then(|| {
        let mut election = LeaderElectionConfig::new(
            &flags.leader_elect_resource_namespace,
            &flags.leader_elect_resource_name,
            &config.leader_election.as_ref().map(|e| e.identity.clone()).unwrap_or_default(),
        );
        election.lease_duration = flags.leader_elect_lease_duration;
        election.renew_deadline = flags.leader_elect_renew_deadline;
        election.retry_period = flags.leader_elect_retry_period;
        election
    });

    let shutdown = CancellationToken::new();
    let registry = prometheus::Registry::new();
    let readiness = Readiness::default();
    let address = SocketAddr::new(flags.bind_address, flags.port);
    let listener = tokio::net::TcpListener::bind(address).await.with_context(|| format!("binding {address}"))?;
    tracing::info!(address = %listener.local_addr()?, "serving /healthz, /readyz and /metrics");
    let endpoints = tokio::spawn(rkube_component::serve_endpoints(
        listener,
        registry.clone(),
        readiness.clone(),
        None,
        shutdown.clone(),
    ));
    rkube_component::cancel_on_signal(&shutdown);

    let result = rkube_scheduler::run(client, config, &registry, readiness, shutdown.clone()).await;
    shutdown.cancel();
    endpoints.await.context("health endpoint task")?.context("serving health endpoints")?;
    result.context("rkube-scheduler")
}
