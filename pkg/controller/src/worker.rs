//! The worker loop every controller runs: take a key, sync it, requeue it with backoff on error.
//!
//! What it keeps true: one bad key never stops the loop. A failed sync is logged, counted in
//! `rkube_controller_sync_errors_total`, and put back with per-key exponential backoff
//! (`add_rate_limited`); a successful one resets that backoff (`forget`). The work queue
//! guarantees no key is synced by two workers at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use rkube_informer::workqueue::WorkQueue;
use tokio_util::sync::CancellationToken;

use crate::metrics::ControllerMetrics;

/// Something that can make one key right.
pub trait Syncer: Send + Sync + 'static {
    /// Makes the object under `key` right, judging from the caches. Safe to call any number of
    /// times; an error requeues the key with backoff.
    fn sync(&self, key: &str) -> impl Future<Output = Result<(), crate::Error>> + Send;
}

/// Runs `workers` workers over `queue` until `shutdown`, then shuts the queue down and waits for
/// the keys in hand.
pub async fn run_workers<S: Syncer>(
    name: &'static str,
    syncer: Arc<S>,
    queue: WorkQueue<String>,
    workers: usize,
    metrics: ControllerMetrics,
    shutdown: CancellationToken,
) {
    let mut tasks = Vec::new();
    for _ in 0..workers.max(1) {
        let (syncer, queue, metrics) = (Arc::clone(&syncer), queue.clone(), metrics.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(key) = queue.get().await {
                let started = Instant::now();
                metrics.syncs.with_label_values(&[name]).inc();
                match syncer.sync(&key).await {
                    Ok(()) => queue.forget(&key),
                    Err(error) => {
                        metrics.errors.with_label_values(&[name]).inc();
                        tracing::warn!(controller = name, %key, %error, retries = queue.num_requeues(&key), "sync failed; requeued");
                        queue.add_rate_limited(key.clone());
                    }
                }
                metrics.duration.with_label_values(&[name]).observe(started.elapsed().as_secs_f64());
                queue.done(&key);
            }
        }));
    }
    shutdown.cancelled().await;
    queue.shut_down();
    for task in tasks {
        if let Err(error) = task.await {
            tracing::error!(controller = name, %error, "worker task failed");
        }
    }
}
