//! Work queue of keys for controllers: client-go's `workqueue` (its plain, delaying and
//! rate-limiting queues in one type), in async Rust.
//!
//! The queue is generic over its key type; controllers use `WorkQueue<ObjectKey>`
//! ([`crate::key::ObjectKey`]: an object's namespace and name, where client-go queues the
//! string `namespace/name`). An informer's event handler calls [`WorkQueue::add`] with the key
//! of the object that changed; N workers loop on [`WorkQueue::get`], reconcile the key, and then call
//! [`WorkQueue::forget`] on success or [`WorkQueue::add_rate_limited`] on error, and always
//! [`WorkQueue::done`]. Handlers stay fast, and the expensive work happens in the workers.
//!
//! Invariants (each has a test of that name at the bottom of this file):
//! - a key waiting in the queue appears once, however often it is added
//!   (`a_key_waiting_appears_once_however_often_added`);
//! - a key is never handed to two workers at once
//!   (`a_key_is_never_handed_to_two_workers_at_once`);
//! - adding a key while it is being processed queues it again for after `done`
//!   (`adding_a_key_while_it_is_processed_queues_it_again_after_done`);
//! - retries back off per key, exponentially and up to a cap, and `forget` resets the count
//!   (`retries_back_off_per_key_exponentially_with_a_cap_and_forget_resets`); an overall token
//!   bucket bounds the retry rate across all keys
//!   (`the_token_bucket_limits_retries_across_keys`);
//! - `add_after` hands the key out once its delay has passed, not before
//!   (`add_after_fires_after_the_delay`);
//! - shutting down wakes every waiting `get` with `None`
//!   (`shutdown_wakes_waiting_getters_with_none`);
//! - `shut_down_with_drain` hands out what is still queued and returns once every key handed
//!   out has been `done` (`drain_waits_for_in_flight_items`).
//!
//! Keys that are ready are handed out in the order they became ready
//! (`ready_keys_are_handed_out_in_the_order_they_were_added`).
//!
//! Not promised:
//! - any order between different keys once delays or retries are involved;
//! - that a key's pending backoff holds it back: a plain `add` queues the key at once even
//!   while an `add_rate_limited` or `add_after` for it is still waiting, and the waiting copy
//!   is handed out again when its time comes (client-go does the same);
//! - anything about delayed or backing-off keys after shutdown: they are dropped.
//!
//! Delayed keys move to the ready queue when a `get` (or `len`, or an add) looks at the
//! queue; client-go runs a separate goroutine for this. There is no background task, so a
//! `WorkQueue` can be created outside a tokio runtime and leaks nothing when dropped.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long [`WorkQueue::add_rate_limited`] waits before a key is handed out again.
///
/// The delay is the larger of two limits, as in client-go's `DefaultControllerRateLimiter`:
/// - per key: `base_delay × 2^failures`, capped at `max_delay`, where `failures` counts the
///   `add_rate_limited` calls since the key was last [`forget`](WorkQueue::forget)-ed;
/// - overall: a token bucket refilled at `qps` tokens per second and holding at most `burst`,
///   shared by every key. Each retry takes a token, waiting for one if the bucket is empty.
///   A `qps` that is zero, negative or not finite turns the bucket off.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimiter {
    /// Delay of a key's first retry (client-go: 5 ms).
    pub base_delay: Duration,
    /// Largest delay of any single retry of one key (client-go: 1000 s).
    pub max_delay: Duration,
    /// Token bucket refill rate, in retries per second over all keys (client-go: 10).
    pub qps: f64,
    /// Token bucket size: retries allowed at once before `qps` applies (client-go: 100).
    pub burst: u32,
}

impl Default for RateLimiter {
    /// client-go's `DefaultControllerRateLimiter`: 5 ms doubling to 1000 s per key, and
    /// 10 qps with a burst of 100 overall.
    fn default() -> Self {
        Self { base_delay: Duration::from_millis(5), max_delay: Duration::from_secs(1000), qps: 10.0, burst: 100 }
    }
}

impl RateLimiter {
    /// The per-key delay after `failures` earlier failures: `base_delay × 2^failures`, capped.
    fn backoff(&self, failures: u32) -> Duration {
        if self.base_delay.is_zero() {
            return Duration::ZERO;
        }
        1u32.checked_shl(failures)
            .and_then(|factor| self.base_delay.checked_mul(factor))
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    fn bucket_enabled(&self) -> bool {
        self.qps.is_finite() && self.qps > 0.0
    }
}

/// The token bucket's state: `tokens` may go negative, which means retries are already
/// booked into the future (golang.org/x/time/rate's `Reserve`, which client-go uses).
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    /// Takes one token at `now` and returns how long until that token exists.
    fn reserve(&mut self, limiter: &RateLimiter, now: Instant) -> Duration {
        if !limiter.bucket_enabled() {
            return Duration::ZERO;
        }
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limiter.qps).min(f64::from(limiter.burst));
        self.updated = self.updated.max(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64(-self.tokens / limiter.qps).unwrap_or(Duration::MAX)
        }
    }
}

/// A queue's Prometheus series; each carries the constant label `name`.
#[derive(Debug, Clone)]
struct Metrics {
    depth: IntGauge,
    adds: IntCounter,
    queue_duration: Histogram,
    work_duration: Histogram,
    retries: IntCounter,
}

impl Metrics {
    fn new(name: &str) -> prometheus::Result<Self> {
        let opts = |metric: &str, help: &str| Opts::new(metric, help).const_label("name", name);
        // 1 µs to 1000 s, one bucket per decade.
        let buckets = prometheus::exponential_buckets(1e-6, 10.0, 10)?;
        let histogram = |metric: &str, help: &str| {
            Histogram::with_opts(HistogramOpts::from(opts(metric, help)).buckets(buckets.clone()))
        };
        Ok(Self {
            depth: IntGauge::with_opts(opts(
                "rkube_workqueue_depth",
                "Keys ready to be handed to a worker (delayed keys not counted).",
            ))?,
            adds: IntCounter::with_opts(opts(
                "rkube_workqueue_adds_total",
                "Adds that queued a key (adds of a key already waiting are not counted).",
            ))?,
            queue_duration: histogram(
                "rkube_workqueue_queue_duration_seconds",
                "Time a key waited in the queue, from add (or end of its delay) to get.",
            )?,
            work_duration: histogram(
                "rkube_workqueue_work_duration_seconds",
                "Time a worker held a key, from get to done.",
            )?,
            retries: IntCounter::with_opts(opts("rkube_workqueue_retries_total", "Calls to add_rate_limited."))?,
        })
    }

    fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.depth.clone()))?;
        registry.register(Box::new(self.adds.clone()))?;
        registry.register(Box::new(self.queue_duration.clone()))?;
        registry.register(Box::new(self.work_duration.clone()))?;
        registry.register(Box::new(self.retries.clone()))?;
        Ok(())
    }
}

/// Everything behind the lock.
struct State<T> {
    /// Keys ready to be handed out, oldest first. Every key in `queue` is in `dirty` and not
    /// in `processing`, and appears once.
    queue: VecDeque<T>,
    /// Keys that need processing: those in `queue`, plus those added again while a worker
    /// holds them (they go back to `queue` on `done`).
    dirty: HashSet<T>,
    /// Keys held by a worker, with the time `get` handed them out.
    processing: HashMap<T, Instant>,
    /// When each dirty key was added, for the queue-duration histogram.
    added_at: HashMap<T, Instant>,
    /// Delayed keys by ready time; `seq` breaks ties in insertion order. A key appears at
    /// most once here, and `delayed` maps it back to its entry.
    waiting: BTreeMap<(Instant, u64), T>,
    /// The `waiting` entry of each delayed key (its earliest ready time wins).
    delayed: HashMap<T, (Instant, u64)>,
    seq: u64,
    /// Failures per key since its last `forget`.
    failures: HashMap<T, u32>,
    bucket: Bucket,
    shutting_down: bool,
    /// Set by `shut_down_with_drain`, cleared by `shut_down`.
    drain: bool,
}

impl<T: Hash + Eq + Clone> State<T> {
    /// client-go's `Add`: mark dirty, and queue unless a worker holds the key.
    fn insert(&mut self, item: T, now: Instant, metrics: Option<&Metrics>) -> bool {
        if self.shutting_down || self.dirty.contains(&item) {
            return false;
        }
        if let Some(m) = metrics {
            m.adds.inc();
        }
        self.added_at.insert(item.clone(), now);
        self.dirty.insert(item.clone());
        if !self.processing.contains_key(&item) {
            self.queue.push_back(item);
        }
        true
    }

    /// Moves delayed keys whose time has come into the queue; true if any moved.
    fn promote_ready(&mut self, now: Instant, metrics: Option<&Metrics>) -> bool {
        let mut moved = false;
        while let Some(entry) = self.waiting.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let item = entry.remove();
            self.delayed.remove(&item);
            moved |= self.insert(item, now, metrics);
        }
        moved
    }

    fn next_ready_time(&self) -> Option<Instant> {
        self.waiting.first_key_value().map(|((at, _), _)| *at)
    }

    fn update_depth(&self, metrics: Option<&Metrics>) {
        if let Some(m) = metrics {
            m.depth.set(i64::try_from(self.queue.len()).unwrap_or(i64::MAX));
        }
    }
}

struct Inner<T> {
    name: String,
    limiter: RateLimiter,
    metrics: Option<Metrics>,
    state: Mutex<State<T>>,
    /// Woken (all waiters) on every change a waiting `get` or drain may care about.
    changed: Notify,
}

/// A deduplicating, delaying, rate-limited queue of keys; see the [module docs](self).
///
/// Cloning is cheap and every clone is the same queue. Client-go calls this a
/// `TypedRateLimitingInterface`.
///
/// The worker loop every controller runs (`processNextWorkItem` in client-go's workqueue example):
///
/// ```no_run
/// use rkube_informer::ObjectKey;
/// use rkube_informer::workqueue::{RateLimiter, WorkQueue};
///
/// async fn reconcile(key: &ObjectKey) -> Result<(), String> {
///     println!("reconciling {key}");
///     Ok(())
/// }
///
/// async fn worker(queue: WorkQueue<ObjectKey>) {
///     while let Some(key) = queue.get().await {
///         match reconcile(&key).await {
///             Ok(()) => queue.forget(&key),
///             Err(error) => {
///                 eprintln!("{key}: {error}; retry #{}", queue.num_requeues(&key) + 1);
///                 queue.add_rate_limited(key.clone());
///             }
///         }
///         queue.done(&key);
///     }
/// }
///
/// # async fn run() {
/// let queue = WorkQueue::new("configmaps", RateLimiter::default(), None);
/// queue.add(ObjectKey::new(Some("default"), "settings"));
/// let workers: Vec<_> = (0..2).map(|_| tokio::spawn(worker(queue.clone()))).collect();
/// // ... on shutdown:
/// queue.shut_down_with_drain().await;
/// for w in workers {
///     let _ = w.await;
/// }
/// # }
/// ```
pub struct WorkQueue<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<T> fmt::Debug for WorkQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkQueue")
            .field("name", &self.inner.name)
            .field("limiter", &self.inner.limiter)
            .finish_non_exhaustive()
    }
}

impl<T> WorkQueue<T>
where
    T: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Creates an empty queue. `name` labels its metrics (`name="…"`), which are registered in
    /// `metrics` if given: `rkube_workqueue_depth`, `rkube_workqueue_adds_total`,
    /// `rkube_workqueue_queue_duration_seconds`, `rkube_workqueue_work_duration_seconds` and
    /// `rkube_workqueue_retries_total`. Queues with different names can share a registry; if
    /// registration fails (two queues with one name), a warning is logged and the queue works
    /// without exported metrics.
    ///
    /// Needs no tokio runtime; `get` and `shut_down_with_drain` do.
    pub fn new(name: &str, limiter: RateLimiter, metrics: Option<&Registry>) -> Self {
        let metrics =
            metrics.and_then(|registry| match Metrics::new(name).and_then(|m| m.register(registry).map(|()| m)) {
                Ok(m) => Some(m),
                Err(error) => {
                    tracing::warn!(queue = name, %error, "work queue metrics not registered");
                    None
                }
            });
        let state = State {
            queue: VecDeque::new(),
            dirty: HashSet::new(),
            processing: HashMap::new(),
            added_at: HashMap::new(),
            waiting: BTreeMap::new(),
            delayed: HashMap::new(),
            seq: 0,
            failures: HashMap::new(),
            bucket: Bucket { tokens: f64::from(limiter.burst), updated: Instant::now() },
            shutting_down: false,
            drain: false,
        };
        Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                limiter,
                metrics,
                state: Mutex::new(state),
                changed: Notify::new(),
            }),
        }
    }

    /// The name given to [`new`](Self::new).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No code path panics while holding the lock, so a poisoned lock still holds a
        // consistent state.
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn metrics(&self) -> Option<&Metrics> {
        self.inner.metrics.as_ref()
    }

    /// Queues `item`. A key already waiting is not queued twice. A key a worker holds is
    /// queued again when that worker calls [`done`](Self::done), so a change that arrives
    /// during processing gets exactly one more pass. Ignored after shutdown.
    pub fn add(&self, item: T) {
        let mut state = self.lock();
        let now = Instant::now();
        state.promote_ready(now, self.metrics());
        if state.insert(item, now, self.metrics()) {
            state.update_depth(self.metrics());
            drop(state);
            self.inner.changed.notify_waiters();
        }
    }

    /// Queues `item` once `delay` has passed (at once if `delay` is zero). If the key is
    /// already delayed, the earlier of the two times wins. Ignored after shutdown; delayed
    /// keys are dropped at shutdown.
    pub fn add_after(&self, item: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(item);
        }
        let mut state = self.lock();
        if state.shutting_down {
            return;
        }
        let now = Instant::now();
        state.promote_ready(now, self.metrics());
        // Capped so that the addition below cannot overflow.
        let at = now + delay.min(FAR_FUTURE);
        if let Some(&(old_at, old_seq)) = state.delayed.get(&item) {
            if old_at <= at {
                return;
            }
            state.waiting.remove(&(old_at, old_seq));
        }
        state.seq += 1;
        let entry = (at, state.seq);
        state.delayed.insert(item.clone(), entry);
        state.waiting.insert(entry, item);
        state.update_depth(self.metrics());
        drop(state);
        // A waiting `get` may need to wake up earlier than it planned.
        self.inner.changed.notify_waiters();
    }

    /// Queues `item` after its retry delay (see [`RateLimiter`]) and counts one more failure
    /// for it. Call this when processing `item` failed, before [`done`](Self::done).
    pub fn add_rate_limited(&self, item: T) {
        let delay = {
            let mut state = self.lock();
            if state.shutting_down {
                return;
            }
            let limiter = &self.inner.limiter;
            let failures = state.failures.entry(item.clone()).or_insert(0);
            let per_key = limiter.backoff(*failures);
            *failures = failures.saturating_add(1);
            let overall = state.bucket.reserve(limiter, Instant::now());
            per_key.max(overall)
        };
        if let Some(m) = self.metrics() {
            m.retries.inc();
        }
        self.add_after(item, delay);
    }

    /// Resets `item`'s failure count, so its next retry starts from `base_delay` again. Call
    /// this when processing `item` succeeded. It does not cancel a pending delayed add.
    pub fn forget(&self, item: &T) {
        self.lock().failures.remove(item);
    }

    /// How many times `item` went through [`add_rate_limited`](Self::add_rate_limited) since
    /// it was last [`forget`](Self::forget)-ed.
    pub fn num_requeues(&self, item: &T) -> u32 {
        self.lock().failures.get(item).copied().unwrap_or(0)
    }

    /// Waits for a key and hands it to the caller, who now holds it: no other `get` returns
    /// it until the caller calls [`done`](Self::done), which the caller must do.
    ///
    /// Returns `None` once the queue is shut down. After
    /// [`shut_down_with_drain`](Self::shut_down_with_drain) it first hands out the keys still
    /// queued, and returns `None` once the queue is empty and no key is held.
    ///
    /// Cancel-safe: dropping the future never loses a key.
    pub async fn get(&self) -> Option<T> {
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            // Register before looking at the state, so no notification slips in between.
            changed.as_mut().enable();
            let wake_at = {
                let mut state = self.lock();
                let now = Instant::now();
                state.promote_ready(now, self.metrics());
                if state.shutting_down && !state.drain {
                    return None;
                }
                if let Some(item) = state.queue.pop_front() {
                    state.dirty.remove(&item);
                    state.processing.insert(item.clone(), now);
                    let added = state.added_at.remove(&item);
                    if let (Some(m), Some(added)) = (self.metrics(), added) {
                        m.queue_duration.observe(now.saturating_duration_since(added).as_secs_f64());
                    }
                    state.update_depth(self.metrics());
                    drop(state);
                    // A drain may be waiting for the queue to empty.
                    self.inner.changed.notify_waiters();
                    return Some(item);
                }
                if state.shutting_down && state.processing.is_empty() {
                    return None;
                }
                state.next_ready_time()
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        () = &mut changed => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// Releases `item`, which the caller got from [`get`](Self::get). If it was added again
    /// meanwhile, it goes back into the queue now. Calling `done` for a key not held does
    /// nothing.
    pub fn done(&self, item: &T) {
        let mut state = self.lock();
        let Some(started) = state.processing.remove(item) else {
            return;
        };
        if let Some(m) = self.metrics() {
            m.work_duration.observe(Instant::now().saturating_duration_since(started).as_secs_f64());
        }
        if state.dirty.contains(item) {
            state.queue.push_back(item.clone());
            state.update_depth(self.metrics());
        }
        drop(state);
        self.inner.changed.notify_waiters();
    }

    /// Keys ready to be handed out (not counting delayed or held keys). For information only:
    /// it may change before the caller acts on it.
    pub fn len(&self) -> usize {
        let mut state = self.lock();
        state.promote_ready(Instant::now(), self.metrics());
        state.update_depth(self.metrics());
        state.queue.len()
    }

    /// Whether [`len`](Self::len) is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shuts the queue down now: every waiting and future [`get`](Self::get) returns `None`,
    /// adds are ignored, and queued and delayed keys are dropped. Keys held by workers stay
    /// held until `done`. Client-go's `ShutDown` still hands out queued keys; use
    /// [`shut_down_with_drain`](Self::shut_down_with_drain) for that. Also ends a drain
    /// in progress.
    pub fn shut_down(&self) {
        let mut state = self.lock();
        state.shutting_down = true;
        state.drain = false;
        state.queue.clear();
        state.dirty.clear();
        state.added_at.clear();
        state.waiting.clear();
        state.delayed.clear();
        state.update_depth(self.metrics());
        drop(state);
        self.inner.changed.notify_waiters();
    }

    /// Shuts the queue down gracefully: adds are ignored and delayed keys are dropped, but
    /// [`get`](Self::get) keeps handing out queued keys (including those added again while
    /// held, which go back in on `done`). Returns once the queue is empty and every key
    /// handed out has been [`done`](Self::done), or when [`shut_down`](Self::shut_down) is
    /// called. Never returns if a worker holds a key and never calls `done`, so bound it with
    /// [`tokio::time::timeout`] and call `shut_down` after.
    pub async fn shut_down_with_drain(&self) {
        {
            let mut state = self.lock();
            if !state.shutting_down {
                state.shutting_down = true;
                state.drain = true;
                state.waiting.clear();
                state.delayed.clear();
            }
        }
        self.inner.changed.notify_waiters();
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let state = self.lock();
                if !state.drain || (state.queue.is_empty() && state.processing.is_empty()) {
                    break;
                }
            }
            changed.await;
        }
        // Wake getters that were waiting for the last held keys.
        self.inner.changed.notify_waiters();
    }

    /// Whether [`shut_down`](Self::shut_down) or
    /// [`shut_down_with_drain`](Self::shut_down_with_drain) has been called.
    pub fn is_shutting_down(&self) -> bool {
        self.lock().shutting_down
    }
}

/// The longest delay `add_after` honours (about 30 years, as tokio's own timers).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design

    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn no_limits() -> RateLimiter {
        RateLimiter { base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(1), qps: 0.0, burst: 0 }
    }

    fn queue() -> WorkQueue<String> {
        WorkQueue::new("test", no_limits(), None)
    }

    /// `get`, but failing the test instead of hanging.
    async fn get_now(q: &WorkQueue<String>) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(5), q.get()).await.expect("get timed out")
    }

    async fn assert_nothing_ready(q: &WorkQueue<String>) {
        let got = tokio::time::timeout(Duration::from_millis(30), q.get()).await;
        assert!(got.is_err(), "expected no key, got {got:?}");
    }

    #[tokio::test]
    async fn a_key_waiting_appears_once_however_often_added() {
        let q = queue();
        for _ in 0..5 {
            q.add("a".to_owned());
        }
        q.add("b".to_owned());
        q.add("a".to_owned());
        assert_eq!(q.len(), 2);
        assert_eq!(get_now(&q).await.as_deref(), Some("a"));
        assert_eq!(get_now(&q).await.as_deref(), Some("b"));
        assert_nothing_ready(&q).await;
    }

    #[tokio::test]
    async fn ready_keys_are_handed_out_in_the_order_they_were_added() {
        let q = queue();
        for key in ["c", "a", "b"] {
            q.add(key.to_owned());
        }
        for key in ["c", "a", "b"] {
            assert_eq!(get_now(&q).await.as_deref(), Some(key));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_key_is_never_handed_to_two_workers_at_once() {
        let q: WorkQueue<String> = queue();
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        let processed = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..8 {
            let (q, in_flight, processed) = (q.clone(), in_flight.clone(), processed.clone());
            workers.push(tokio::spawn(async move {
                while let Some(key) = q.get().await {
                    assert!(in_flight.lock().unwrap().insert(key.clone()), "{key} handed to two workers");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    in_flight.lock().unwrap().remove(&key);
                    processed.fetch_add(1, Ordering::SeqCst);
                    q.done(&key);
                }
            }));
        }
        for round in 0..200 {
            q.add(format!("key-{}", round % 3));
            if round % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
        q.shut_down_with_drain().await;
        for worker in workers {
            worker.await.unwrap();
        }
        assert!(processed.load(Ordering::SeqCst) >= 3);
    }

    #[tokio::test]
    async fn adding_a_key_while_it_is_processed_queues_it_again_after_done() {
        let q = queue();
        q.add("a".to_owned());
        let held = get_now(&q).await.unwrap();
        q.add("a".to_owned());
        q.add("a".to_owned());
        // Held by a worker: not handed out again, not even counted as queued.
        assert_eq!(q.len(), 0);
        assert_nothing_ready(&q).await;
        q.done(&held);
        assert_eq!(q.len(), 1);
        assert_eq!(get_now(&q).await.as_deref(), Some("a"));
        q.done(&held);
        assert_nothing_ready(&q).await;
    }

    #[test]
    fn retries_back_off_per_key_exponentially_with_a_cap_and_forget_resets() {
        let limiter = RateLimiter::default();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(limiter.backoff(0), ms(5));
        assert_eq!(limiter.backoff(1), ms(10));
        assert_eq!(limiter.backoff(2), ms(20));
        assert_eq!(limiter.backoff(10), ms(5 * 1024));
        assert_eq!(limiter.backoff(18), Duration::from_secs(1000));
        assert_eq!(limiter.backoff(u32::MAX), Duration::from_secs(1000));

        // Through the queue: counts are per key, and forget resets one key only.
        let q: WorkQueue<String> = WorkQueue::new(
            "test",
            RateLimiter { base_delay: Duration::from_secs(60), qps: 0.0, ..RateLimiter::default() },
            None,
        );
        let (a, b) = ("a".to_owned(), "b".to_owned());
        for _ in 0..3 {
            q.add_rate_limited(a.clone());
        }
        q.add_rate_limited(b.clone());
        assert_eq!(q.num_requeues(&a), 3);
        assert_eq!(q.num_requeues(&b), 1);
        // Backing off: nothing ready yet.
        assert_eq!(q.len(), 0);
        q.forget(&a);
        assert_eq!(q.num_requeues(&a), 0);
        assert_eq!(q.num_requeues(&b), 1);
    }

    #[tokio::test]
    async fn rate_limited_keys_are_handed_out_after_their_backoff() {
        let q: WorkQueue<String> = WorkQueue::new(
            "test",
            RateLimiter {
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(40),
                qps: 0.0,
                burst: 0,
            },
            None,
        );
        for expected in [20, 40, 40] {
            let start = Instant::now();
            q.add_rate_limited("a".to_owned());
            let key = get_now(&q).await.unwrap();
            assert!(start.elapsed() >= Duration::from_millis(expected));
            q.done(&key);
        }
        q.forget(&"a".to_owned());
        let start = Instant::now();
        q.add_rate_limited("a".to_owned());
        get_now(&q).await.unwrap();
        assert!(start.elapsed() < Duration::from_millis(40));
    }

    #[test]
    fn the_token_bucket_limits_retries_across_keys() {
        let limiter = RateLimiter { qps: 10.0, burst: 2, ..RateLimiter::default() };
        let start = Instant::now();
        let mut bucket = Bucket { tokens: 2.0, updated: start };
        // The burst goes through at once; then one token per 100 ms, booked in order.
        assert_eq!(bucket.reserve(&limiter, start), Duration::ZERO);
        assert_eq!(bucket.reserve(&limiter, start), Duration::ZERO);
        let third = bucket.reserve(&limiter, start);
        let fourth = bucket.reserve(&limiter, start);
        assert!((third.as_secs_f64() - 0.1).abs() < 1e-9, "{third:?}");
        assert!((fourth.as_secs_f64() - 0.2).abs() < 1e-9, "{fourth:?}");
        // A second later the bucket has refilled to its burst, not beyond.
        let later = start + Duration::from_secs(10);
        assert_eq!(bucket.reserve(&limiter, later), Duration::ZERO);
        assert_eq!(bucket.reserve(&limiter, later), Duration::ZERO);
        assert!(bucket.reserve(&limiter, later) > Duration::ZERO);

        // In the queue, the larger of the two limits applies.
        let q: WorkQueue<String> = WorkQueue::new(
            "test",
            RateLimiter {
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(1),
                qps: 0.001,
                burst: 1,
            },
            None,
        );
        q.add_rate_limited("a".to_owned());
        q.add_rate_limited("b".to_owned());
        std::thread::sleep(Duration::from_millis(20));
        // "a" took the only token and is ready after 1 ms; "b" waits ~1000 s for a token.
        assert_eq!(q.len(), 1);
    }

    #[tokio::test]
    async fn add_after_fires_after_the_delay() {
        let q = queue();
        let start = Instant::now();
        q.add_after("late".to_owned(), Duration::from_millis(80));
        q.add_after("early".to_owned(), Duration::from_millis(40));
        assert_eq!(q.len(), 0);
        assert_eq!(get_now(&q).await.as_deref(), Some("early"));
        assert!(start.elapsed() >= Duration::from_millis(40));
        assert_eq!(get_now(&q).await.as_deref(), Some("late"));
        assert!(start.elapsed() >= Duration::from_millis(80));
    }

    #[tokio::test]
    async fn add_after_keeps_the_earliest_time_of_a_key() {
        let q = queue();
        let start = Instant::now();
        q.add_after("a".to_owned(), Duration::from_secs(3600));
        q.add_after("a".to_owned(), Duration::from_millis(20));
        q.add_after("a".to_owned(), Duration::from_secs(60));
        assert_eq!(get_now(&q).await.as_deref(), Some("a"));
        assert!(start.elapsed() >= Duration::from_millis(20));
        q.done(&"a".to_owned());
        assert_nothing_ready(&q).await;
    }

    #[tokio::test]
    async fn a_getter_waiting_for_a_delay_wakes_for_an_earlier_add() {
        let q = queue();
        q.add_after("slow".to_owned(), Duration::from_secs(3600));
        let getter = tokio::spawn({
            let q = q.clone();
            async move { q.get().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        q.add("now".to_owned());
        let got = tokio::time::timeout(Duration::from_secs(5), getter).await;
        assert_eq!(got.unwrap().unwrap().as_deref(), Some("now"));
    }

    #[tokio::test]
    async fn shutdown_wakes_waiting_getters_with_none() {
        let q = queue();
        let getters: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move { q.get().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        q.add_after("delayed".to_owned(), Duration::from_millis(1));
        q.shut_down();
        for getter in getters {
            let got = tokio::time::timeout(Duration::from_secs(5), getter).await;
            // A getter may have taken "delayed" before shutdown; none may hang.
            let got = got.unwrap().unwrap();
            assert!(got.is_none() || got.as_deref() == Some("delayed"));
        }
        assert!(q.is_shutting_down());
        q.add("ignored".to_owned());
        assert_eq!(get_now(&q).await, None);
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn drain_waits_for_in_flight_items() {
        let q = queue();
        q.add("held".to_owned());
        q.add("queued".to_owned());
        let held = get_now(&q).await.unwrap();
        q.add("held".to_owned()); // changed while held: one more pass is owed

        let drain = tokio::spawn({
            let q = q.clone();
            async move { q.shut_down_with_drain().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!drain.is_finished(), "drain returned while a key was held");
        q.add("after-shutdown".to_owned()); // ignored

        assert_eq!(get_now(&q).await.as_deref(), Some("queued"));
        q.done(&"queued".to_owned());
        q.done(&held);
        assert_eq!(get_now(&q).await.as_deref(), Some("held"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!drain.is_finished(), "drain returned while a key was held");
        q.done(&held);

        tokio::time::timeout(Duration::from_secs(5), drain).await.unwrap().unwrap();
        assert_eq!(get_now(&q).await, None);
    }

    #[tokio::test]
    async fn shut_down_ends_a_drain_that_waits_on_a_stuck_worker() {
        let q = queue();
        q.add("stuck".to_owned());
        let _held = get_now(&q).await.unwrap();
        let drained = tokio::time::timeout(Duration::from_millis(30), q.shut_down_with_drain());
        assert!(drained.await.is_err());
        let drain = tokio::spawn({
            let q = q.clone();
            async move { q.shut_down_with_drain().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        q.shut_down();
        tokio::time::timeout(Duration::from_secs(5), drain).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn metrics_are_exported_per_queue_name() {
        let registry = Registry::new();
        let a: WorkQueue<String> = WorkQueue::new("a", no_limits(), Some(&registry));
        let b: WorkQueue<String> = WorkQueue::new("b", no_limits(), Some(&registry));
        // A second queue with a taken name still works, without metrics.
        let dup: WorkQueue<String> = WorkQueue::new("a", no_limits(), Some(&registry));
        dup.add("x".to_owned());

        a.add("x".to_owned());
        a.add("x".to_owned());
        a.add("y".to_owned());
        let x = get_now(&a).await.unwrap();
        a.done(&x);
        a.add_rate_limited("z".to_owned());
        b.add("x".to_owned());

        let value = |family: &str, queue: &str| -> f64 {
            let families = registry.gather();
            let family = families.iter().find(|f| f.name() == family).unwrap();
            let metric = family.get_metric().iter().find(|m| m.get_label().iter().any(|l| l.value() == queue)).unwrap();
            if family.get_field_type() == prometheus::proto::MetricType::HISTOGRAM {
                metric.get_histogram().get_sample_count() as f64
            } else if family.get_field_type() == prometheus::proto::MetricType::GAUGE {
                metric.get_gauge().get_value()
            } else {
                metric.get_counter().get_value()
            }
        };
        assert_eq!(value("rkube_workqueue_adds_total", "a"), 2.0);
        assert_eq!(value("rkube_workqueue_depth", "a"), 1.0);
        assert_eq!(value("rkube_workqueue_queue_duration_seconds", "a"), 1.0);
        assert_eq!(value("rkube_workqueue_work_duration_seconds", "a"), 1.0);
        assert_eq!(value("rkube_workqueue_retries_total", "a"), 1.0);
        assert_eq!(value("rkube_workqueue_adds_total", "b"), 1.0);
    }
}
