//! rkube-proxy: makes Service IPs and node ports reach their pods on this node, by programming
//! the kernel's nftables from the Services and EndpointSlices it list-watches.
//!
//! [`rules`] turns the informers' caches into one complete ruleset (a pure function); [`run`]
//! applies it with `nft -f -` (one transaction: the table is replaced whole) whenever a Service
//! or EndpointSlice changes (changes within [`BATCH`] are applied together) and every
//! `sync_period` regardless, which puts back rules someone deleted by hand. Metrics:
//! `rkube_proxy_sync_duration_seconds`, `rkube_proxy_syncs_total`,
//! `rkube_proxy_sync_errors_total`, `rkube_proxy_services` and `rkube_proxy_endpoints`.

pub mod rules;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};
use rkube_client::Client;
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::handler::{Deleted, HandlerFns};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long a change waits for others to be applied with it.
pub const BATCH: Duration = Duration::from_millis(50);

/// What can stop the proxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The informers failed.
    #[error("informer: {0}")]
    Informer(#[from] rkube_informer::Error),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The caches never filled.
    #[error("the Service and EndpointSlice caches did not sync")]
    CacheSync,
}

/// How the proxy runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The rules' options (node name, cluster CIDR).
    pub rules: rules::Options,
    /// The `nft` program and arguments before `-f -` (default `["nft"]`).
    pub nft: Vec<String>,
    /// How often the whole ruleset is applied even when nothing changed.
    pub sync_period: Duration,
}

struct Metrics {
    duration: Histogram,
    syncs: IntCounter,
    errors: IntCounter,
    services: IntGauge,
    endpoints: IntGauge,
}

impl Metrics {
    fn register(registry: &Registry) -> Result<Metrics, prometheus::Error> {
        let duration = Histogram::with_opts(HistogramOpts::new(
            "rkube_proxy_sync_duration_seconds",
            "How long one sync of the nftables rules took (computing and applying them).",
        ))?;
        let syncs = IntCounter::new("rkube_proxy_syncs_total", "Syncs of the nftables rules.")?;
        let errors =
            IntCounter::new("rkube_proxy_sync_errors_total", "Syncs whose rules nft refused or could not apply.")?;
        let services = IntGauge::new("rkube_proxy_services", "Service ports with endpoints in the applied rules.")?;
        let endpoints = IntGauge::new("rkube_proxy_endpoints", "Endpoint chains in the applied rules.")?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(syncs.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(services.clone()))?;
        registry.register(Box::new(endpoints.clone()))?;
        Ok(Metrics { duration, syncs, errors, services, endpoints })
    }
}

/// Applies `script` with `nft -f -` (the command `nft`); nft's complaint on failure.
pub async fn apply(nft: &[String], script: &str) -> Result<(), String> {
    let (program, args) = nft.split_first().ok_or("no nft command")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("running {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await.map_err(|e| format!("writing the rules to nft: {e}"))?;
    }
    let output = child.wait_with_output().await.map_err(|e| format!("waiting for nft: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("nft refused the rules ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// Handlers that wake the sync loop on every add, update and delete.
fn notify_on_change<K: Send + Sync + 'static>(changed: &Arc<Notify>) -> HandlerFns<K> {
    let (a, b, c) = (changed.clone(), changed.clone(), changed.clone());
    HandlerFns::new()
        .on_add(move |_: &Arc<K>| a.notify_one())
        .on_update(move |_: &Arc<K>, _: &Arc<K>| b.notify_one())
        .on_delete(move |_: Deleted<K>| c.notify_one())
}

/// Runs the proxy until `shutdown`: informers, then a sync per batch of changes and every
/// `sync_period`. `readiness` turns true after the first successful sync.
pub async fn run(
    client: Client,
    config: Config,
    registry: &Registry,
    readiness: impl Fn(bool),
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let metrics = Metrics::register(registry)?;
    let factory = SharedInformerFactory::new(client, registry)?;
    let services = factory.informer::<Service>(None);
    let slices = factory.informer::<EndpointSlice>(None);
    let changed = Arc::new(Notify::new());
    services.add_handler(notify_on_change(&changed));
    slices.add_handler(notify_on_change(&changed));
    factory.start(&shutdown);
    tokio::select! {
        synced = factory.wait_for_cache_sync() => if !synced { return Err(Error::CacheSync) },
        () = shutdown.cancelled() => return Ok(()),
    }
    let (service_store, slice_store) = (services.store(), slices.store());
    tracing::info!(node = %config.rules.node_name, "caches synced; programming nftables");
    loop {
        let started = Instant::now();
        let ruleset = rules::ruleset(&service_store.list(), &slice_store.list(), &config.rules);
        metrics.syncs.inc();
        match apply(&config.nft, &ruleset.script).await {
            Ok(()) => {
                metrics.services.set(i64::try_from(ruleset.services).unwrap_or(i64::MAX));
                metrics.endpoints.set(i64::try_from(ruleset.endpoints).unwrap_or(i64::MAX));
                readiness(true);
                tracing::debug!(services = ruleset.services, endpoints = ruleset.endpoints, "rules applied");
            }
            Err(error) => {
                metrics.errors.inc();
                tracing::warn!(%error, "cannot apply the rules; retrying at the next change or sync");
            }
        }
        metrics.duration.observe(started.elapsed().as_secs_f64());
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = changed.notified() => tokio::time::sleep(BATCH).await,
            () = tokio::time::sleep(config.sync_period) => {}
        }
    }
}
