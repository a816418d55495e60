//! `rkubelet`: rkube's node agent. Thin main: flags → `rkube_kubelet::run`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use rkube_client::{Client, Config as ClientConfig, KubeconfigOptions};
use rkube_component::Readiness;
use rkube_kubelet::node::{default_node_ip, parse_labels, parse_taints};
use rkube_kubelet::{Config, RuntimeKind};
use tokio_util::sync::CancellationToken;

/// The rkube node agent: registers this machine as a Node, heartbeats a Lease in
/// kube-node-lease, and runs the pods the scheduler binds to this node, reporting their status
/// to the apiserver.
///
/// Example (a hollow node, no containers): rkubelet --kubeconfig ~/.kube/config
/// --node-name node-1 --runtime fake --pod-cidr 10.244.1.0/24 --port 10250
#[derive(Debug, Parser)]
// A flag given twice takes its last value, so a harness's defaults can be overridden.
#[command(name = "rkubelet", version, about, long_about, args_override_self = true)]
struct Flags {
    /// Kubeconfig naming the apiserver (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,

    /// This node's name (default: the machine's hostname). Several kubelets on one machine
    /// need different names.
    #[arg(long)]
    node_name: Option<String>,

    /// Which runtime runs the pods: `fake` runs nothing (pods go Running at once; for tests
    /// and hollow nodes); `containerd` runs real containers through containerd (--containerd-address)
    /// with runc, pulling images from registries as each container's imagePullPolicy asks
    /// (into containerd's `rkube` namespace).
    #[arg(long, value_enum, default_value_t = RuntimeFlag::Fake)]
    runtime: RuntimeFlag,

    /// containerd's socket (for --runtime containerd).
    #[arg(long, default_value = "/run/containerd/containerd.sock")]
    containerd_address: PathBuf,

    /// A registry (`host:port`) to pull from over plain HTTP instead of HTTPS (repeatable).
    /// Registries on loopback (localhost, 127.0.0.1, [::1]) always use plain HTTP.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registries: Vec<String>,

    /// Where the kubelet keeps its files.
    #[arg(long, default_value = "/var/lib/rkubelet")]
    root_dir: PathBuf,

    /// This node's pod network (IPv4 CIDR, e.g. 10.244.1.0/24): pod IPs come from it and it
    /// is written to the Node's spec.podCIDR. With --runtime containerd it turns on CNI
    /// networking (one bridge per CIDR); without it, containers get an empty network namespace.
    #[arg(long)]
    pod_cidr: Option<String>,

    /// The cluster DNS server(s) (the kube-dns Service IP, e.g. 10.96.0.10), comma-separated:
    /// pods with dnsPolicy ClusterFirst (the default) get them in /etc/resolv.conf with the
    /// search path of their namespace. Without it pods get this node's resolv.conf.
    #[arg(long, value_delimiter = ',')]
    cluster_dns: Vec<std::net::IpAddr>,

    /// The cluster domain (Service names are <service>.<namespace>.svc.<domain>).
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,

    /// Where the CNI plugin binaries are (`bridge`, `host-local`, `loopback`; used by the
    /// containerd runtime when --pod-cidr is set).
    #[arg(long, default_value = "/usr/lib/cni")]
    cni_bin_dir: PathBuf,

    /// Where CNI network configs are (not read yet: the bridge config is generated from
    /// --pod-cidr).
    #[arg(long, default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,

    /// Address to serve /healthz, /readyz, /metrics and container logs on.
    #[arg(long, default_value = "0.0.0.0")]
    address: IpAddr,

    /// Port for /healthz, /readyz, /metrics and container logs (/containerLogs/{namespace}/
    /// {pod}/{container}); written to the Node's status.daemonEndpoints.kubeletEndpoint.
    #[arg(long, default_value_t = 10250)]
    port: u16,

    /// The address the Node reports as InternalIP and pods as hostIP (default: the machine's
    /// outbound address).
    #[arg(long)]
    node_ip: Option<IpAddr>,

    /// Extra Node labels, e.g. `zone=west,disk=ssd`.
    #[arg(long, default_value = "")]
    node_labels: String,

    /// Taints put on the Node when it is created, e.g. `dedicated=gpu:NoSchedule`.
    #[arg(long, default_value = "")]
    register_with_taints: String,

    /// How often the node's Lease is renewed, in seconds.
    #[arg(long, default_value_t = 10.0)]
    node_lease_renew_interval: f64,

    /// How often every pod is re-synced even when nothing changed, in seconds.
    #[arg(long, default_value_t = 10.0)]
    sync_frequency: f64,

    /// Rotate a container's log file when it would grow past this size (a quantity such as
    /// 10Mi; 0 turns rotation off).
    #[arg(long, default_value = "10Mi")]
    container_log_max_size: String,

    /// How many log files to keep per container run, the current one included (at least 2).
    #[arg(long, default_value_t = 5)]
    container_log_max_files: usize,

    /// The `rkube-log-driver` binary containerd's shim runs to write each container's log
    /// (default: next to rkubelet).
    #[arg(long)]
    log_driver: Option<PathBuf>,

    /// Make the fake runtime fail every container start (to test failure handling).
    #[arg(long)]
    fake_fail_start: bool,

    /// Log format: `text` for people, `json` for machines.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,

    /// The kubelet API's serving certificate (PEM): serve HTTPS on --port; with
    /// --tls-private-key-file.
    #[arg(long, requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,

    /// The serving certificate's private key (PEM).
    #[arg(long, requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,

    /// A CA bundle (PEM): client certificates it signed identify callers of the kubelet API
    /// (the apiserver's among them). Needs --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    client_ca_file: Option<PathBuf>,

    /// Who may use logs and exec once authenticated (HTTPS only): `Webhook` asks the apiserver
    /// (a SubjectAccessReview on nodes/proxy, so RBAC decides), `AlwaysAllow` lets everyone in.
    #[arg(long, default_value = "Webhook", value_parser = ["Webhook", "AlwaysAllow"])]
    authorization_mode: String,

    /// Treat requests without a certificate or token as system:anonymous (then authorized
    /// like anyone else) instead of refusing them with 401.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    anonymous_auth: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RuntimeFlag {
    Containerd,
    Fake,
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|duration| !duration.is_zero())
        .with_context(|| format!("{flag} must be a positive number of seconds, not {value}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    rkube_component::init_tracing(&flags.log_format);

    let client_config =
        ClientConfig::from_kubeconfig(&KubeconfigOptions { path: flags.kubeconfig.clone(), context: None })
            .context("reading the kubeconfig (--kubeconfig)")?;
    let client = Client::new(client_config).context("building the API client")?;

    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_lowercase();
    let node_name = flags.node_name.clone().unwrap_or(hostname);
    anyhow::ensure!(!node_name.is_empty(), "no --node-name given and the hostname is empty");
    let mut config = Config::new(&node_name, flags.node_ip.unwrap_or_else(default_node_ip));
    config.node.labels = parse_labels(&flags.node_labels).map_err(anyhow::Error::msg).context("--node-labels")?;
    config.node.taints =
        parse_taints(&flags.register_with_taints).map_err(anyhow::Error::msg).context("--register-with-taints")?;
    config.node.pod_cidr = flags.pod_cidr.clone();
    config.cluster_dns = (!flags.cluster_dns.is_empty()).then(|| rkube_kubelet::runtime::containerd::ClusterDns {
        servers: flags.cluster_dns.iter().map(ToString::to_string).collect(),
        domain: flags.cluster_domain.trim_end_matches('.').to_string(),
    });
    config.node.port = flags.port;
    config.node.root_dir = flags.root_dir.clone();
    config.runtime = match flags.runtime {
        RuntimeFlag::Containerd => RuntimeKind::Containerd,
        RuntimeFlag::Fake => RuntimeKind::Fake,
    };
    config.containerd_address = flags.containerd_address.clone();
    config.insecure_registries = flags.insecure_registries.clone();
    config.fake_fail_start = flags.fake_fail_start;
    config.cni_bin_dir = flags.cni_bin_dir.clone();
    config.lease_renew_interval = seconds(flags.node_lease_renew_interval, "--node-lease-renew-interval")?;
    config.resync_interval = seconds(flags.sync_frequency, "--sync-frequency")?;
    config.container_logs.max_size = rkube_kubelet::node::parse_size(&flags.container_log_max_size)
        .map_err(anyhow::Error::msg)
        .context("--container-log-max-size")?;
    anyhow::ensure!(flags.container_log_max_files >= 2, "--container-log-max-files must be at least 2");
    config.container_logs.max_files = flags.container_log_max_files;
    if let Some(driver) = &flags.log_driver {
        config.container_logs.driver = std::path::absolute(driver).context("--log-driver")?;
    }

    let tls = match (&flags.tls_cert_file, &flags.tls_private_key_file) {
        (Some(cert), Some(key)) => Some(rkube_server::tls::server_config(cert, key, flags.client_ca_file.as_deref())?),
        _ => None,
    };
    if tls.is_none() && !flags.address.is_loopback() {
        tracing::warn!(
            address = %flags.address,
            "serving the kubelet API (logs, exec) as PLAIN HTTP with no authentication on a non-loopback address: \
             anyone who reaches it can run commands in every container; use --tls-cert-file and --client-ca-file"
        );
    }
    // Over HTTPS every caller of logs and exec is authenticated and authorized.
    let access = tls.is_some().then(|| {
        let mode = if flags.authorization_mode == "AlwaysAllow" {
            rkube_kubelet::access::AuthorizationMode::AlwaysAllow
        } else {
            rkube_kubelet::access::AuthorizationMode::Webhook
        };
        Arc::new(rkube_kubelet::access::Access::new(client.clone(), node_name.clone(), mode, flags.anonymous_auth))
    });
    let registry = prometheus::Registry::new();
    let readiness = Readiness::default();
    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind((flags.address, flags.port))
        .await
        .with_context(|| format!("binding {}:{}", flags.address, flags.port))?;
    tracing::info!(address = %listener.local_addr()?, "serving /healthz, /readyz, /metrics");
    let server = tokio::spawn(rkube_component::serve_endpoints(
        listener,
        registry.clone(),
        readiness.clone(),
        Some(rkube_kubelet::server_routes(
            node_name.clone(),
            flags.root_dir.clone(),
            config.log_runtime.clone(),
            access,
        )),
        tls,
        shutdown.clone(),
    ));
    rkube_component::cancel_on_signal(&shutdown);

    let result = rkube_kubelet::run(client, config, &registry, readiness, shutdown.clone()).await;
    shutdown.cancel();
    server.await.context("endpoint server task")?.context("endpoint server")?;
    result.context("kubelet")
}
