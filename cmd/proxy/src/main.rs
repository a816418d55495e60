//! `rkube-proxy`: Services' IPs and node ports on this node. Thin main: flags →
//! `rkube_proxy::run`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rkube_client::{Client, KubeconfigOptions};
use rkube_component::Process;

/// The rkube node proxy: list-watches Services and EndpointSlices and programs this node's
/// nftables (table `ip rkube-proxy`) so that a Service's cluster IP and node ports reach its
/// ready pods, picked at random per connection (with `sessionAffinity: ClientIP`, the same
/// pod per client). Run one on every node, as root.
///
/// See the rules with `nft list table ip rkube-proxy`.
///
/// Example: rkube-proxy --kubeconfig /etc/rkube/proxy.kubeconfig --node-name worker1
/// --cluster-cidr 10.244.0.0/16
#[derive(Debug, Parser)]
#[command(name = "rkube-proxy", version, about, long_about)]
struct Flags {
    /// Kubeconfig file saying where the apiserver is (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use (default: its current-context).
    #[arg(long)]
    context: Option<String>,

    /// This node's name, as its kubelet registered it (for externalTrafficPolicy: Local).
    /// Default: the hostname.
    #[arg(long)]
    node_name: Option<String>,

    /// The pods' addresses (e.g. 10.244.0.0/16). Traffic to a cluster IP from elsewhere (the
    /// node itself, other machines) is masqueraded so replies come back; without this flag
    /// all Service traffic is.
    #[arg(long)]
    cluster_cidr: Option<String>,

    /// How often the whole ruleset is applied again even when nothing changed (which puts back
    /// rules deleted by hand), e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = rkube_component::flags::parse_duration)]
    sync_period: Duration,

    /// The nft program (from Debian's nftables package).
    #[arg(long, default_value = "nft")]
    nft: String,

    /// Address to serve /healthz, /readyz and /metrics on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,

    /// Port to serve /healthz, /readyz and /metrics on (0: any free port, logged at start).
    #[arg(long, default_value_t = 10256)]
    port: u16,

    /// Log format: `text` for people, `json` for machines (filter with RUST_LOG, default info).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    rkube_component::init_tracing(&flags.log_format);
    let options = KubeconfigOptions { path: flags.kubeconfig.clone(), context: flags.context.clone() };
    let client = Client::from_kubeconfig(&options).context("reading the kubeconfig")?;
    let node_name = match &flags.node_name {
        Some(name) => name.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_string())
            .context("reading the hostname for --node-name")?,
    };
    let config = rkube_proxy::Config {
        rules: rkube_proxy::rules::Options { node_name, cluster_cidr: flags.cluster_cidr.clone() },
        nft: vec![flags.nft.clone()],
        sync_period: flags.sync_period,
    };

    let address = SocketAddr::new(flags.bind_address, flags.port);
    let process = Process::start(address).await.with_context(|| format!("binding {address}"))?;
    let ready = process.readiness.clone();
    let result =
        rkube_proxy::run(client, config, &process.registry, move |ok| ready.set(ok), process.shutdown.clone()).await;
    process.finish().await.context("serving health endpoints")?;
    result.context("rkube-proxy")
}
