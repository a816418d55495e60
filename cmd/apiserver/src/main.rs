//! `rkube-apiserver`: the Kubernetes REST API over etcd. Thin main: flags → library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rkube_apiserver::authorization::Mode;
use rkube_apiserver::{ApiState, Config};
use rkube_storage::{EtcdConfig, EtcdStore};
use tokio_util::sync::CancellationToken;

/// mimalloc instead of glibc's malloc: a create allocates and frees thousands of small JSON
/// values across the runtime's threads, and glibc's allocator was about 15% of the
/// apiserver's CPU in `rkube-bench` (its arenas' locks and consolidation).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The rkube API server: stores Kubernetes objects in etcd and serves the Kubernetes REST API
/// (discovery, CRUD, list, watch, patch, status/scale/binding subresources) that kubectl,
/// the official clients and every other rkube process talk to.
///
/// Example: rkube-apiserver --etcd-servers http://127.0.0.1:2379 --port 6443
#[derive(Debug, Parser)]
#[command(name = "rkube-apiserver", version, about, long_about)]
struct Flags {
    /// etcd client URLs, comma-separated.
    #[arg(long, env = "RKUBE_ETCD_SERVERS", value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    etcd_servers: Vec<String>,

    /// The CA (PEM) that signed etcd's serving certificate: etcd is then reached over TLS
    /// (`https://` in --etcd-servers).
    #[arg(long)]
    etcd_cafile: Option<PathBuf>,

    /// The client certificate (PEM) presented to etcd (an etcd with --client-cert-auth
    /// requires one); with --etcd-keyfile.
    #[arg(long, requires = "etcd_keyfile")]
    etcd_certfile: Option<PathBuf>,

    /// The key of --etcd-certfile (PEM).
    #[arg(long, requires = "etcd_certfile")]
    etcd_keyfile: Option<PathBuf>,

    /// Prefix of every key rkube writes in etcd.
    #[arg(long, default_value = "/registry")]
    etcd_prefix: String,

    /// Address to listen on. Without --tls-cert-file it serves plain HTTP, which is only fit
    /// for loopback.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: std::net::IpAddr,

    /// Port to listen on.
    #[arg(long, default_value_t = 6443)]
    port: u16,

    /// The address pods and other machines reach this apiserver at: the endpoint of the
    /// `kubernetes` Service in `default`. Default: --bind-address, or for 0.0.0.0 the address
    /// of the interface of the default route.
    #[arg(long)]
    advertise_address: Option<std::net::IpAddr>,

    /// How long this apiserver stays in the `kubernetes` Service's endpoints (where pods reach
    /// the apiservers) after it last renewed its Lease `kube-system/apiserver-<ip>-<port>`, as a
    /// duration like 15s (whole seconds, rounded up). An apiserver that dies without stopping
    /// cleanly drops out this long after its last renewal, plus up to one
    /// --endpoint-reconcile-interval. Kubernetes fixes it at 15s.
    #[arg(long, default_value = "15s", value_parser = rkube_api::duration::parse)]
    endpoint_lease_duration: Duration,

    /// How often this apiserver renews its Lease and sets the `kubernetes` Service's endpoints
    /// to the apiservers whose Leases have not expired, as a duration like 10s or 500ms; must be
    /// shorter than --endpoint-lease-duration. Kubernetes fixes it at 10s.
    #[arg(long, default_value = "10s", value_parser = rkube_api::duration::parse)]
    endpoint_reconcile_interval: Duration,

    /// The range Service cluster IPs come from (IPv4 CIDR); its first address is the
    /// `kubernetes` Service's.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: rkube_apiserver::allocator::Cidr,

    /// How often Service IP and node port allocations are checked against the stored Services,
    /// in seconds: one no Service holds at two checks in a row is given back.
    #[arg(long, default_value_t = 180)]
    service_allocation_repair_interval_seconds: u64,

    /// The range node ports of NodePort (and LoadBalancer) Services come from.
    #[arg(long, default_value = "30000-32767", value_parser = rkube_apiserver::allocator::parse_port_range)]
    service_node_port_range: std::ops::RangeInclusive<u16>,

    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[arg(long, default_value_t = 3 * 1024 * 1024)]
    max_request_body_bytes: usize,

    /// How often quiet watches that asked for bookmarks receive one, in seconds.
    #[arg(long, default_value_t = 60)]
    watch_bookmark_interval_seconds: u64,

    /// How long one etcd request may take before it counts as unavailable, in seconds.
    #[arg(long, default_value_t = 10)]
    etcd_request_timeout_seconds: u64,

    /// How often to compact etcd's history, in seconds (history older than one interval
    /// is discarded, as the Kubernetes apiserver does); 0 never compacts.
    #[arg(long, default_value_t = 300)]
    etcd_compaction_interval_seconds: u64,

    /// Serve lists and watches from a watch cache per resource (one etcd list and watch each)
    /// instead of one etcd watch per client; `--watch-cache=false` turns it off.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    watch_cache: bool,

    /// Changes each watch cache keeps for watches that resume from a resourceVersion; a watch
    /// from before the oldest one gets 410 Expired and relists.
    #[arg(long, default_value_t = 10_000)]
    watch_cache_size: usize,

    /// Changes a watcher may have waiting to be sent before the watch cache disconnects it as
    /// too slow (its client then resumes from the last resourceVersion it saw).
    #[arg(long, default_value_t = 1_000)]
    watch_cache_watcher_queue_length: usize,

    /// The longest a request may take (watches, followed logs and exec excepted), as a Go
    /// duration; a slower one is answered 504 Timeout.
    #[arg(long, default_value = "1m0s", value_parser = rkube_api::duration::parse)]
    request_timeout: Duration,

    /// The shortest a watch without timeoutSeconds lasts, in seconds; each lasts a random time
    /// between this and twice this, so that clients do not all reconnect at once.
    #[arg(long, default_value_t = 1800)]
    min_request_timeout: u64,

    /// Read-only requests served at once; more are answered 429 with Retry-After.
    #[arg(long, default_value_t = 400)]
    max_requests_inflight: usize,

    /// Mutating requests served at once; more are answered 429 with Retry-After.
    #[arg(long, default_value_t = 200)]
    max_mutating_requests_inflight: usize,

    /// The serving certificate (PEM, chain first), for HTTPS; with --tls-private-key-file.
    #[arg(long, requires = "tls_private_key_file")]
    tls_cert_file: Option<std::path::PathBuf>,

    /// The serving certificate's private key (PEM).
    #[arg(long, requires = "tls_cert_file")]
    tls_private_key_file: Option<std::path::PathBuf>,

    /// A CA bundle (PEM): client certificates it signed authenticate their subject's common
    /// name as the user and its organizations as the groups. Needs --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    client_ca_file: Option<std::path::PathBuf>,

    /// The CA bundle (PEM) that signed kubelets' serving certificates: kubelets are then
    /// reached over HTTPS (logs, exec). With --kubelet-client-certificate and -key.
    #[arg(long, requires_all = ["kubelet_client_certificate", "kubelet_client_key"])]
    kubelet_certificate_authority: Option<std::path::PathBuf>,

    /// The client certificate (PEM) the apiserver presents to kubelets.
    #[arg(long, requires = "kubelet_certificate_authority")]
    kubelet_client_certificate: Option<std::path::PathBuf>,

    /// The key of --kubelet-client-certificate (PEM).
    #[arg(long, requires = "kubelet_certificate_authority")]
    kubelet_client_key: Option<std::path::PathBuf>,

    /// An ECDSA P-256 private key (PKCS#8 PEM) to sign ServiceAccount tokens with: enables
    /// the serviceaccounts/token subresource and accepts the tokens it issues.
    #[arg(long)]
    service_account_signing_key_file: Option<std::path::PathBuf>,

    /// More keys (PEM, P-256 public or private) whose ServiceAccount tokens are accepted, e.g.
    /// another apiserver's, or the previous key while rotating (repeat for several).
    #[arg(long, requires = "service_account_signing_key_file")]
    service_account_key_file: Vec<std::path::PathBuf>,

    /// The issuer (`iss`) of the ServiceAccount tokens.
    #[arg(long, default_value = rkube_apiserver::serviceaccount_token::DEFAULT_ISSUER)]
    service_account_issuer: String,

    /// Audiences the apiserver accepts in ServiceAccount tokens, comma-separated (default:
    /// the issuer).
    #[arg(long, value_delimiter = ',')]
    api_audiences: Vec<String>,

    /// An EncryptionConfiguration (YAML): the values of the resources it lists are encrypted
    /// in etcd (providers aesgcm and identity).
    #[arg(long)]
    encryption_provider_config: Option<std::path::PathBuf>,

    /// A CSV file of bearer tokens, one `token,user,uid,"group1,group2"` per line; a request
    /// with one of them is that user.
    #[arg(long)]
    token_auth_file: Option<std::path::PathBuf>,

    /// Whether a request without credentials is served as `system:anonymous` (what it may do
    /// is then the authorizer's decision); `--anonymous-auth=false` answers it 401.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    anonymous_auth: bool,

    /// Who may do what, comma-separated and asked in order: `RBAC` (Roles and bindings;
    /// creates the bootstrap roles at start) or `AlwaysAllow` (everyone may do everything).
    #[arg(long, default_value = "AlwaysAllow")]
    authorization_mode: String,

    /// Log format: `text` for people, `json` for machines.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `--advertise-address`, else the bind address, else (for 0.0.0.0) the source address of the
/// default route (a UDP socket "connected" nowhere in particular sends nothing), else loopback.
fn advertise_address(flags: &Flags) -> std::net::IpAddr {
    if let Some(address) = flags.advertise_address {
        return address;
    }
    if !flags.bind_address.is_unspecified() {
        return flags.bind_address;
    }
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|socket| {
            socket.connect("192.0.2.1:9")?;
            socket.local_addr()
        })
        .map(|local| local.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

/// TLS towards etcd from `--etcd-cafile`, `--etcd-certfile` and `--etcd-keyfile`.
fn etcd_tls(flags: &Flags) -> anyhow::Result<Option<rkube_storage::EtcdTls>> {
    let read = |path: &PathBuf| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
    let Some(ca) = &flags.etcd_cafile else {
        anyhow::ensure!(flags.etcd_certfile.is_none(), "--etcd-certfile needs --etcd-cafile");
        return Ok(None);
    };
    let identity = match (&flags.etcd_certfile, &flags.etcd_keyfile) {
        (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
        _ => None,
    };
    anyhow::ensure!(
        flags.etcd_servers.iter().all(|url| url.starts_with("https://")),
        "--etcd-cafile needs https:// URLs in --etcd-servers (got {:?})",
        flags.etcd_servers
    );
    Ok(Some(rkube_storage::EtcdTls { ca_pem: read(ca)?, identity }))
}

/// Whether an etcd URL names a loopback host (`127.0.0.1`, `[::1]`, `localhost`).
fn is_loopback_url(url: &str) -> bool {
    let host = url.split("://").nth(1).unwrap_or(url).split('/').next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h).trim_matches(['[', ']']);
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    init_tracing(&flags.log_format);
    anyhow::ensure!(
        !flags.endpoint_reconcile_interval.is_zero()
            && flags.endpoint_reconcile_interval < flags.endpoint_lease_duration,
        "--endpoint-reconcile-interval ({:?}) must be more than 0 and shorter than --endpoint-lease-duration ({:?}), \
         or the Lease expires between two renewals",
        flags.endpoint_reconcile_interval,
        flags.endpoint_lease_duration
    );
    let authorization = Mode::parse_list(&flags.authorization_mode).map_err(anyhow::Error::msg)?;
    let etcd = EtcdConfig {
        endpoints: flags.etcd_servers.clone(),
        request_timeout: Duration::from_secs(flags.etcd_request_timeout_seconds.max(1)),
        tls: etcd_tls(&flags)?,
    };
    if etcd.tls.is_none() && flags.etcd_servers.iter().any(|url| !is_loopback_url(url)) {
        tracing::warn!(
            etcd = ?flags.etcd_servers,
            "talking to etcd over PLAIN HTTP on a non-loopback address: anyone on the network can read and \
             write every object; use --etcd-cafile, --etcd-certfile and --etcd-keyfile"
        );
    }
    let etcd_store =
        EtcdStore::connect(&etcd).await.with_context(|| format!("connecting to etcd at {:?}", flags.etcd_servers))?;
    let store: Arc<dyn rkube_storage::Store> = match &flags.encryption_provider_config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let encryption = rkube_storage::encryption::Encryption::parse(&text, &flags.etcd_prefix)?;
            tracing::info!(?encryption, "encrypting at rest");
            Arc::new(rkube_storage::encryption::EncryptedStore::new(Arc::new(etcd_store), encryption))
        }
        None => Arc::new(etcd_store),
    };
    let config = Config {
        etcd_prefix: flags.etcd_prefix.clone(),
        max_body_bytes: flags.max_request_body_bytes,
        bookmark_interval: Duration::from_secs(flags.watch_bookmark_interval_seconds.max(1)),
        compaction_interval: (flags.etcd_compaction_interval_seconds > 0)
            .then(|| Duration::from_secs(flags.etcd_compaction_interval_seconds)),
        watch_cache: flags.watch_cache.then(|| rkube_apiserver::cacher::CacheConfig {
            capacity: flags.watch_cache_size.max(1),
            watcher_buffer: flags.watch_cache_watcher_queue_length.max(1),
        }),
        limits: rkube_apiserver::limits::Limits {
            request_timeout: flags.request_timeout,
            max_read_only: flags.max_requests_inflight.max(1),
            max_mutating: flags.max_mutating_requests_inflight.max(1),
        },
        min_request_timeout: Duration::from_secs(flags.min_request_timeout.max(1)),
        authentication: rkube_apiserver::authentication::Authenticator::new(
            flags.token_auth_file.as_deref(),
            flags.anonymous_auth,
        )?,
        authorization: authorization.clone(),
        tls: match (&flags.tls_cert_file, &flags.tls_private_key_file) {
            (Some(cert), Some(key)) => {
                Some(rkube_apiserver::tls::server_config(cert, key, flags.client_ca_file.as_deref())?)
            }
            _ => None,
        },
        kubelet_tls: match (
            &flags.kubelet_certificate_authority,
            &flags.kubelet_client_certificate,
            &flags.kubelet_client_key,
        ) {
            (Some(ca), Some(cert), Some(key)) => Some(rkube_apiserver::tls::client_config(ca, cert, key)?),
            _ => None,
        },
        service_account_tokens: match &flags.service_account_signing_key_file {
            Some(key) => Some(Arc::new(
                rkube_apiserver::serviceaccount_token::TokenIssuer::from_file(
                    key,
                    &flags.service_account_issuer,
                    flags.api_audiences.clone(),
                )?
                .with_verification_keys(&flags.service_account_key_file)?,
            )),
            None => None,
        },
        services: rkube_apiserver::allocator::ServiceRanges {
            cluster_ips: flags.service_cluster_ip_range,
            node_ports: flags.service_node_port_range.clone(),
        },
        advertise: Some(SocketAddr::new(advertise_address(&flags), flags.port)),
        endpoint_lease_duration: flags.endpoint_lease_duration,
        endpoint_reconcile_interval: flags.endpoint_reconcile_interval,
        allocation_repair_interval: Duration::from_secs(flags.service_allocation_repair_interval_seconds.max(1)),
        ..Config::default()
    };
    let config_tls = config.tls.is_some();
    let shutdown = CancellationToken::new();
    let state = Arc::new(ApiState::new(store, config, prometheus::Registry::new(), shutdown.clone())?);
    let addr = SocketAddr::new(flags.bind_address, flags.port);
    let listener = rkube_apiserver::connections::listen(addr).with_context(|| format!("listening on {addr}"))?;
    let scheme = if config_tls { "https" } else { "http" };
    tracing::info!(%addr, scheme, etcd = ?flags.etcd_servers, "rkube-apiserver listening");
    if !config_tls && !flags.bind_address.is_loopback() {
        tracing::warn!(
            %addr,
            "serving PLAIN HTTP on a non-loopback address: anyone on the network can read and forge requests; \
             use --tls-cert-file and --tls-private-key-file"
        );
    }
    if authorization.contains(&Mode::AlwaysAllow) {
        tracing::warn!("--authorization-mode includes AlwaysAllow: every request that authenticates is allowed");
    }
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    rkube_apiserver::serve(listener, state).await.context("serving")?;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
