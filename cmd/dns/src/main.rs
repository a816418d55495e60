//! `rkube-dns`: the cluster's DNS server. Thin main: flags → `rkube_dns::run`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use rkube_client::{Client, KubeconfigOptions};
use rkube_component::Process;

/// The rkube cluster DNS: answers `<service>.<namespace>.svc.cluster.local` (a Service's
/// cluster IP, or a headless Service's ready pods), `<pod>.<service>.<namespace>.svc...` and
/// `_<port>._<protocol>.<service>...` (SRV) from the Services and EndpointSlices it
/// list-watches, and forwards every other name to the upstream resolver.
///
/// It makes the Service kube-system/kube-dns (--service-ip, port 53) pointing at
/// --advertise-address: the kubelets' --cluster-dns is that Service IP.
///
/// Example: rkube-dns --kubeconfig ~/.kube/config --listen 0.0.0.0:1053
/// --advertise-address 10.244.1.1
#[derive(Debug, Parser)]
#[command(name = "rkube-dns", version, about, long_about)]
struct Flags {
    /// Kubeconfig file saying where the apiserver is (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use (default: its current-context).
    #[arg(long)]
    context: Option<String>,

    /// Where to answer DNS (UDP and TCP).
    #[arg(long, default_value = "0.0.0.0:1053")]
    listen: SocketAddr,

    /// The cluster domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,

    /// Where other names go (default: the first nameserver of /etc/resolv.conf; without one
    /// they get SERVFAIL).
    #[arg(long)]
    upstream: Option<SocketAddr>,

    /// The address pods reach this server at: the endpoint of the kube-dns Service. Without
    /// it no Service is made.
    #[arg(long)]
    advertise_address: Option<IpAddr>,

    /// The cluster IP of the kube-dns Service (within the apiserver's Service range).
    #[arg(long, default_value = "10.96.0.10")]
    service_ip: String,

    /// Address to serve /healthz, /readyz and /metrics on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,

    /// Port to serve /healthz, /readyz and /metrics on (0: any free port, logged at start).
    #[arg(long, default_value_t = 10055)]
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
    let upstream = flags.upstream.or_else(|| {
        let found = rkube_dns::resolv_conf_nameserver(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
        if found.is_none() {
            tracing::warn!(
                "no --upstream and no nameserver in /etc/resolv.conf: names outside the cluster get SERVFAIL"
            );
        }
        found
    });
    let socket =
        tokio::net::UdpSocket::bind(flags.listen).await.with_context(|| format!("binding {}", flags.listen))?;
    let listening = socket.local_addr()?;
    let tcp = tokio::net::TcpListener::bind(listening).await.with_context(|| format!("binding {listening} (TCP)"))?;
    let config = rkube_dns::Config {
        domain: flags.cluster_domain.clone(),
        upstream,
        service: flags.advertise_address.map(|ip| (flags.service_ip.clone(), SocketAddr::new(ip, listening.port()))),
    };

    let address = SocketAddr::new(flags.bind_address, flags.port);
    let process = Process::start(address).await.with_context(|| format!("binding {address}"))?;
    let ready = process.readiness.clone();
    let sockets = (socket, tcp);
    let result =
        rkube_dns::run(client, config, sockets, &process.registry, move |ok| ready.set(ok), process.shutdown.clone())
            .await;
    process.finish().await.context("serving health endpoints")?;
    result.context("rkube-dns")
}
