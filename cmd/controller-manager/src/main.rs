//! `rkube-controller-manager`: runs rkube's controllers (ReplicaSet, Deployment, garbage
//! collector, node lifecycle, ServiceAccounts, root CA, resource quota, disruption budgets,
//! EndpointSlices, Jobs, CronJobs, DaemonSets, StatefulSets, volume binding, pod GC) against an
//! apiserver. Flags only; the work is `rkube_controller::run`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rkube_client::{Client, Config, KubeconfigOptions};
use rkube_component::flags::{LeaderElectionFlags, parse_duration};
use rkube_controller::ControllersConfig;
use tokio_util::sync::CancellationToken;

/// Runs the control loops that keep workloads (Deployments, ReplicaSets, Jobs, DaemonSets,
/// StatefulSets, ...), their owned objects and volume claims in their desired state. Only one controller-manager acts at a time when several run
/// (--leader-elect); the others wait to take over.
#[derive(Parser, Debug)]
#[command(name = "rkube-controller-manager", version)]
struct Args {
    /// Kubeconfig to reach the apiserver (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Address to serve /healthz, /readyz and /metrics on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    /// Port to serve /healthz, /readyz and /metrics on (0: any free port).
    #[arg(long, default_value_t = 10257)]
    port: u16,
    /// Controllers to run, comma-separated: `*` for all, `name` to enable one, `-name` to
    /// disable one. Known: replicaset, deployment, garbagecollector, nodelifecycle,
    /// serviceaccount, root-ca-cert-publisher, resourcequota, disruption, endpointslice, job,
    /// ttl-after-finished, cronjob, daemonset, replicationcontroller, statefulset,
    /// persistentvolume-binder, podgc.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    controllers: Vec<String>,
    /// How many ReplicaSets are synced at once.
    #[arg(long, default_value_t = 5)]
    concurrent_replicaset_syncs: usize,
    /// How many Deployments are synced at once.
    #[arg(long, default_value_t = 5)]
    concurrent_deployment_syncs: usize,
    /// How many objects the garbage collector checks at once.
    #[arg(long, default_value_t = 20)]
    concurrent_gc_syncs: usize,
    /// How often the node lifecycle controller checks nodes (e.g. 5s).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    node_monitor_period: Duration,
    /// How long a node may go without renewing its Lease (or posting status) before it is
    /// marked Ready=Unknown and tainted unreachable (e.g. 40s).
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
    /// How long pods without a toleration stay on an unreachable node before they are
    /// deleted, so their controllers recreate them elsewhere (e.g. 5m).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pod_eviction_timeout: Duration,
    /// How long a Node must have been gone before the pod GC deletes the pods still bound
    /// to it (Kubernetes' fixed 40s; shorter for tests and labs).
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    podgc_orphan_quarantine: Duration,
    /// Nodes per second whose pods may start being evicted.
    #[arg(long, default_value_t = 0.1)]
    node_eviction_rate: f64,
    /// Nodes per second during a partial disruption of a large cluster.
    #[arg(long, default_value_t = 0.01)]
    secondary_node_eviction_rate: f64,
    /// Clusters of at most this many nodes stop evicting during a partial disruption.
    #[arg(long, default_value_t = 50)]
    large_cluster_size_threshold: usize,
    /// Fraction of silent nodes (with more than 2 silent) that counts as a partial disruption.
    #[arg(long, default_value_t = 0.55)]
    unhealthy_zone_threshold: f64,
    /// The cluster CA (PEM) published as the ConfigMap `kube-root-ca.crt` in every namespace,
    /// for pods to verify the apiserver with (the root-ca-cert-publisher runs only with it).
    #[arg(long)]
    root_ca_file: Option<PathBuf>,
    #[command(flatten)]
    leader_election: LeaderElectionFlags,
    /// Requests per second this process may send to the apiserver (sustained).
    #[arg(long, default_value_t = rkube_client::config::DEFAULT_QPS)]
    kube_api_qps: f32,
    /// Requests this process may send to the apiserver in a burst.
    #[arg(long, default_value_t = rkube_client::config::DEFAULT_BURST)]
    kube_api_burst: u32,
    /// Name of this process in the Lease (default: hostname and process id).
    #[arg(long)]
    identity: Option<String>,
    /// Log format: text or json (filter with RUST_LOG).
    #[arg(long, default_value = "text")]
    log_format: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    rkube_component::init_tracing(&args.log_format);
    let client_config = Config::from_kubeconfig(&KubeconfigOptions { path: args.kubeconfig.clone(), context: None })
        .context("cannot load a kubeconfig (pass --kubeconfig)")?;
    let mut client_config = client_config;
    client_config.qps = args.kube_api_qps;
    client_config.burst = args.kube_api_burst;
    let client = Client::new(client_config)?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}_{}", host.trim(), std::process::id())
    });
    let root_ca = match &args.root_ca_file {
        Some(path) => {
            Some(std::fs::read_to_string(path).with_context(|| format!("reading --root-ca-file {}", path.display()))?)
        }
        None => None,
    };
    let config = rkube_controller::Config {
        client,
        bind_address: SocketAddr::new(args.bind_address, args.port),
        controllers: ControllersConfig {
            controllers: args.controllers,
            concurrent_replicaset_syncs: args.concurrent_replicaset_syncs,
            concurrent_deployment_syncs: args.concurrent_deployment_syncs,
            concurrent_gc_syncs: args.concurrent_gc_syncs,
            node_lifecycle: rkube_controller::nodelifecycle::NodeLifecycleConfig {
                monitor_period: args.node_monitor_period,
                grace_period: args.node_monitor_grace_period,
                pod_eviction_timeout: args.pod_eviction_timeout,
                eviction_rate: args.node_eviction_rate,
                secondary_eviction_rate: args.secondary_node_eviction_rate,
                large_cluster_size: args.large_cluster_size_threshold,
                unhealthy_threshold: args.unhealthy_zone_threshold,
            },
            root_ca,
            podgc_quarantine: args.podgc_orphan_quarantine,
        },
        leader_election: args.leader_election.config(rkube_controller::LEASE_NAME, &identity),
    };
    let shutdown = CancellationToken::new();
    rkube_component::cancel_on_signal(&shutdown);
    rkube_controller::run(config, shutdown).await?;
    Ok(())
}
