//! A whole controller in one file: shared informer → work queue → reconcile, N workers.
//!
//! It keeps the annotation `rkube.dev/size` on every ConfigMap equal to the number of keys
//! in its `data`. Read it top to bottom:
//! 1. the informer lists and watches ConfigMaps into a local cache (its store);
//! 2. its handler only turns "something changed" into a key (an `ObjectKey`: namespace and
//!    name) on the queue;
//! 3. workers take keys, look at the *current* cached object (not at the event: this is
//!    level-triggered, so missed or merged events do not matter), and fix the annotation;
//! 4. on error the key goes back with per-key backoff (`add_rate_limited`); on success the
//!    backoff is reset (`forget`); `done` always, so a key changed meanwhile runs again.
//!
//! Run: `cargo run -p rkube-examples --example configmap_controller -- --workers 2`, then
//! `kubectl create configmap demo --from-literal=a=1` and watch the annotation appear;
//! `curl localhost:9100/metrics | grep rkube_` shows the informer and the queue at work.

use std::future::IntoFuture;
use std::net::SocketAddr;

use clap::Parser;
use k8s_openapi::api::core::v1::ConfigMap;
use prometheus::{Registry, TextEncoder};
use rkube_client::{Api, Client, Patch, PatchParams, retry_on_conflict};
use rkube_informer::ObjectKey;
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::handler::HandlerFns;
use rkube_informer::store::Store;
use rkube_informer::workqueue::{RateLimiter, WorkQueue};
use tokio_util::sync::CancellationToken;

const ANNOTATION: &str = "rkube.dev/size";

#[derive(Parser)]
struct Args {
    /// How many keys are reconciled at once (never the same key twice).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Where `/metrics` is served (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:9100")]
    metrics_addr: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    let client = Client::try_default()?;
    let registry = Registry::new();
    let shutdown = CancellationToken::new();

    // 1 and 2: one shared informer for ConfigMaps; its handler only enqueues keys.
    let factory = SharedInformerFactory::new(client.clone(), &registry)?;
    let informer = factory.informer::<ConfigMap>(None);
    let queue = WorkQueue::new("configmaps", RateLimiter::default(), Some(&registry));
    let (on_add, on_update) = (queue.clone(), queue.clone());
    informer.add_handler(
        HandlerFns::new()
            .on_add(move |cm: &std::sync::Arc<ConfigMap>| on_add.add(ObjectKey::of(cm.as_ref())))
            .on_update(move |_old, new| on_update.add(ObjectKey::of(new.as_ref()))),
    ); // deletes: nothing left to annotate
    factory.start(&shutdown);

    let listener = tokio::net::TcpListener::bind(args.metrics_addr).await?;
    println!("metrics on http://{}/metrics", listener.local_addr()?);
    let app = axum::Router::new().route("/metrics", axum::routing::get(move || metrics(registry.clone())));
    let server = tokio::spawn(
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned()).into_future(),
    );

    anyhow::ensure!(factory.wait_for_cache_sync().await, "informer stopped before syncing");
    println!("cache synced; {} workers started", args.workers);
    let workers: Vec<_> =
        (0..args.workers).map(|_| tokio::spawn(worker(queue.clone(), informer.store(), client.clone()))).collect();

    // Clean shutdown: finish the keys in hand, then stop the informer and the server.
    tokio::signal::ctrl_c().await?;
    queue.shut_down_with_drain().await;
    shutdown.cancel();
    for worker in workers {
        worker.await?;
    }
    server.await??;
    Ok(())
}

/// 3 and 4: the worker loop every controller has.
async fn worker(queue: WorkQueue<ObjectKey>, store: Store<ConfigMap>, client: Client) {
    while let Some(key) = queue.get().await {
        match reconcile(&key, &store, &client).await {
            Ok(()) => queue.forget(&key),
            Err(error) => {
                tracing::warn!(%key, %error, retries = queue.num_requeues(&key), "reconcile failed");
                queue.add_rate_limited(key.clone());
            }
        }
        queue.done(&key);
    }
}

/// Makes one ConfigMap right, judging from the cache; safe to run any number of times.
async fn reconcile(key: &ObjectKey, store: &Store<ConfigMap>, client: &Client) -> rkube_client::Result<()> {
    let Some(cached) = store.get(key) else { return Ok(()) }; // deleted: nothing to do
    let annotated = |cm: &ConfigMap| cm.metadata.annotations.as_ref()?.get(ANNOTATION).cloned();
    if annotated(&cached) == Some(size(&cached)) {
        return Ok(()); // already right: no write
    }
    let name = key.name();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), key.namespace().unwrap_or("default"));
    // The cache may be stale: read, compute, and write with the resourceVersion read as a
    // precondition; on 409 Conflict, retry_on_conflict does it all again.
    let written = retry_on_conflict(|| async {
        let current = api.get(name).await?;
        let patch = serde_json::json!({"metadata": {
            "resourceVersion": current.metadata.resource_version,
            "annotations": {ANNOTATION: size(&current)},
        }});
        api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await
    })
    .await;
    match written {
        Err(e) if e.is_not_found() => Ok(()), // deleted meanwhile: nothing to do
        result => result.map(|cm| tracing::info!(%key, size = size(&cm), "annotated")),
    }
}

fn size(cm: &ConfigMap) -> String {
    cm.data.as_ref().map_or(0, |data| data.len()).to_string()
}

async fn metrics(registry: Registry) -> Result<String, axum::http::StatusCode> {
    let text = TextEncoder::new().encode_to_string(&registry.gather());
    text.map_err(|_| axum::http::StatusCode::INTERNAL_SERVER_ERROR)
}
