//! The worker loop every controller runs: take a key, sync it, and do what the sync asked for
//! next.
//!
//! A sync returns its decision as an [`Action`] (kube-rs's
//! `kube::runtime::controller::Action`): [`Action::await_change`] when the object is right
//! and only a change should wake it, or [`Action::requeue`] when the sync knows it must look
//! again at a certain time (a pod becomes available after `minReadySeconds`, expectations
//! expire, a progress deadline passes). The loop, not the sync, puts the key back, so every
//! reason a key comes back is visible in the sync's return value.
//!
//! What it keeps true (tests below):
//! - a requeue hands the key out again once its delay has passed
//!   (`a_requeue_action_hands_the_key_out_again_after_its_delay`);
//! - `await_change` leaves the key alone until something adds it again
//!   (`await_change_leaves_the_key_alone_until_it_is_added_again`);
//! - one bad key never stops the loop: a failed sync is logged, counted in
//!   `rkube_controller_sync_errors_total` and put back with per-key exponential backoff
//!   (`add_rate_limited`); a successful one resets that backoff (`forget`)
//!   (`a_failed_sync_is_retried_with_backoff_and_a_success_forgets_the_failures`).
//!
//! Keys are typed: most controllers queue an [`ObjectKey`](rkube_informer::ObjectKey), the
//! garbage collector its own [`crate::garbagecollector::GcKey`] (see [`Syncer::Key`]); nothing
//! parses a key back from text.
//!
//! The work queue guarantees no key is synced by two workers at once. Not promised: that a
//! requeued key waits for its delay when something else adds it meanwhile (it is synced at
//! once, and again when the delay passes), or anything about requeues pending at shutdown
//! (they are dropped).

use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rkube_informer::workqueue::WorkQueue;
use tokio_util::sync::CancellationToken;

use crate::metrics::ControllerMetrics;

/// What a successful sync asks the loop to do with its key next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    /// `None`: wait for a change; `Some(delay)`: sync the key again after `delay`.
    requeue_after: Option<Duration>,
}

impl Action {
    /// Sync the key again after `delay`, even if nothing changes meanwhile.
    pub fn requeue(delay: Duration) -> Action {
        Action { requeue_after: Some(delay) }
    }

    /// Do nothing until an event adds the key again.
    pub fn await_change() -> Action {
        Action { requeue_after: None }
    }

    /// How long until the key is synced again, or `None` to wait for a change.
    pub fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }

    /// Of two actions, the one that looks again sooner: any requeue beats `await_change`, and
    /// a shorter requeue beats a longer one. A sync with several reasons to come back combines
    /// them with this.
    #[must_use]
    pub fn sooner(self, other: Action) -> Action {
        match (self.requeue_after, other.requeue_after) {
            (Some(a), Some(b)) => Action::requeue(a.min(b)),
            (Some(_), None) => self,
            (None, _) => other,
        }
    }
}

/// Something that can make one key right.
pub trait Syncer: Send + Sync + 'static {
    /// What the work queue holds: an [`ObjectKey`](rkube_informer::ObjectKey) for a controller
    /// of one kind, or a type of the controller's own when a key must say more (the garbage
    /// collector's names a kind). `Display` is for logs.
    type Key: Hash + Eq + Clone + Display + Send + Sync + 'static;

    /// Makes the object under `key` right, judging from the caches, and says when to look at
    /// it again. Safe to call any number of times; an error requeues the key with backoff.
    fn sync(&self, key: &Self::Key) -> impl Future<Output = Result<Action, crate::Error>> + Send;
}

/// Runs `workers` workers over `queue` until `shutdown`, then shuts the queue down and waits for
/// the keys in hand.
pub async fn run_workers<S: Syncer>(
    name: &'static str,
    syncer: Arc<S>,
    queue: WorkQueue<S::Key>,
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
                let result = syncer.sync(&key).await;
                apply_sync_result(name, &queue, &key, result, &metrics);
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

/// Does what a sync of `key` asked for (or what its error calls for). Called while the key is
/// still held, before `done`.
fn apply_sync_result<T>(
    name: &'static str,
    queue: &WorkQueue<T>,
    key: &T,
    result: Result<Action, crate::Error>,
    metrics: &ControllerMetrics,
) where
    T: Hash + Eq + Clone + Display + Send + Sync + 'static,
{
    match result {
        Ok(action) => {
            queue.forget(key);
            if let Some(delay) = action.requeue_after() {
                tracing::debug!(controller = name, %key, ?delay, "requeued as the sync asked");
                queue.add_after(key.clone(), delay);
            }
        }
        Err(error) => {
            metrics.errors.with_label_values(&[name]).inc();
            tracing::warn!(controller = name, %key, %error, retries = queue.num_requeues(key), "sync failed; requeued");
            queue.add_rate_limited(key.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use prometheus::Registry;
    use rkube_informer::ObjectKey;
    use rkube_informer::workqueue::RateLimiter;

    use super::*;
    use crate::Error;

    #[test]
    fn the_sooner_of_two_actions_wins_and_any_requeue_beats_waiting() {
        let (short, long) = (Action::requeue(Duration::from_secs(1)), Action::requeue(Duration::from_secs(9)));
        assert_eq!(short.sooner(long), short);
        assert_eq!(long.sooner(short), short);
        assert_eq!(Action::await_change().sooner(long), long);
        assert_eq!(long.sooner(Action::await_change()), long);
        assert_eq!(Action::await_change().sooner(Action::await_change()), Action::await_change());
    }

    /// A syncer that answers from a script, one entry per call, and records when it was called.
    struct Scripted {
        script: Mutex<VecDeque<Result<Action, Error>>>,
        calls: Mutex<Vec<Instant>>,
        called: tokio::sync::Notify,
    }

    impl Scripted {
        fn new(script: Vec<Result<Action, Error>>) -> Arc<Scripted> {
            Arc::new(Scripted {
                script: Mutex::new(script.into()),
                calls: Mutex::new(Vec::new()),
                called: tokio::sync::Notify::new(),
            })
        }

        fn calls(&self) -> Vec<Instant> {
            self.calls.lock().unwrap().clone()
        }

        /// Waits (at most 5 s) until the syncer has been called `count` times.
        async fn wait_for_calls(&self, count: usize) {
            tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    let notified = self.called.notified();
                    if self.calls().len() >= count {
                        return;
                    }
                    notified.await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{count} syncs expected, saw {}", self.calls().len()));
        }
    }

    impl Syncer for Scripted {
        type Key = ObjectKey;

        async fn sync(&self, _key: &ObjectKey) -> Result<Action, Error> {
            self.calls.lock().unwrap().push(Instant::now());
            let next = self.script.lock().unwrap().pop_front().unwrap_or(Ok(Action::await_change()));
            self.called.notify_waiters();
            next
        }
    }

    fn failure() -> Error {
        Error::InvalidObject { key: key(), reason: "scripted failure".into() }
    }

    /// The one key these tests queue.
    fn key() -> ObjectKey {
        ObjectKey::new(Some("ns"), "a")
    }

    /// Starts one worker over a fresh queue holding `ns/a`.
    fn start(syncer: &Arc<Scripted>) -> (WorkQueue<ObjectKey>, CancellationToken, tokio::task::JoinHandle<()>) {
        let queue = WorkQueue::new("test", RateLimiter::default(), None);
        let metrics = ControllerMetrics::register(&Registry::new()).unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_workers("test", Arc::clone(syncer), queue.clone(), 1, metrics, shutdown.clone()));
        queue.add(key());
        (queue, shutdown, task)
    }

    #[tokio::test]
    async fn a_requeue_action_hands_the_key_out_again_after_its_delay() {
        let delay = Duration::from_millis(100);
        let syncer = Scripted::new(vec![Ok(Action::requeue(delay))]);
        let (_queue, shutdown, task) = start(&syncer);
        syncer.wait_for_calls(2).await;
        let calls = syncer.calls();
        assert!(calls[1] - calls[0] >= delay, "synced again after {:?}", calls[1] - calls[0]);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn await_change_leaves_the_key_alone_until_it_is_added_again() {
        let syncer = Scripted::new(vec![Ok(Action::await_change())]);
        let (queue, shutdown, task) = start(&syncer);
        syncer.wait_for_calls(1).await;
        // Nothing is delayed or waiting: the key can only come back through an add.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!((syncer.calls().len(), queue.len()), (1, 0));
        queue.add(key());
        syncer.wait_for_calls(2).await;
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_sync_is_retried_with_backoff_and_a_success_forgets_the_failures() {
        let syncer = Scripted::new(vec![Err(failure()), Err(failure()), Ok(Action::await_change())]);
        let (queue, shutdown, task) = start(&syncer);
        syncer.wait_for_calls(3).await;
        let calls = syncer.calls();
        // The default limiter waits 5 ms after the first failure and 10 ms after the second.
        assert!(calls[1] - calls[0] >= Duration::from_millis(5));
        assert!(calls[2] - calls[1] >= Duration::from_millis(10));
        // `forget` runs before `done`, which releases the key; wait for that, then look.
        tokio::time::timeout(Duration::from_secs(5), async {
            while queue.num_requeues(&key()) != 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the success resets the failure count");
        shutdown.cancel();
        task.await.unwrap();
    }
}
