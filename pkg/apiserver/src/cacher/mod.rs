//! The watch cache: one list and one watch of etcd per resource, and every client list and
//! watch of that resource served from memory (Kubernetes' `Cacher`).
//!
//! Where an event goes, from etcd to a watcher:
//! 1. [`Cacher::run`] lists the resource's prefix once, then keeps one etcd watch on it from
//!    the list's revision (resuming from the last revision seen after a break; relisting
//!    only when etcd compacted that revision away).
//! 2. Each change becomes a [`CachedEvent`]: the object is decoded once, its
//!    resourceVersion set, encoded once ([`StoredObject`]), and the cache's copy of the
//!    collection updated.
//! 3. The event goes into the *window*, the last `capacity` events, so a watcher that asks to
//!    resume from a recent resourceVersion gets the changes since, from memory.
//! 4. The event is handed to every watcher of a matching prefix: an `Arc` into its bounded
//!    queue, no copy. Each watcher's stream (`crate::watch`) applies its selectors and writes
//!    the shared bytes to its connection.
//!
//! What it keeps true (tests below, and test/tests/watch_cache.rs against real etcd):
//! - a watcher sees every change after its starting revision exactly once, in etcd's order;
//! - a watcher that cannot keep up (its queue of `watcher_buffer` events is full) is
//!   disconnected, never buffered without bound: its client resumes from the last
//!   resourceVersion it saw, as every Kubernetes client does after a closed watch;
//! - a watch from a revision older than the window is refused as 410 Expired;
//! - a consistent read (a list or a watch without a resourceVersion) is served from the cache
//!   only once the cache is *proven* to hold what etcd holds at etcd's current revision R: a
//!   keys-only list of etcd (keys and revisions, no values) equals the cache's. The answer then
//!   carries R, so it never shows data older than a write that finished before it started.
//!
//! Why not etcd's progress notifications (Kubernetes 1.31+ waits for one instead): etcd
//! guarantees their order against the events of a watch only from 3.4.25 and 3.5.8
//! (etcd-io/etcd#15220), and Debian 12 ships 3.4.23. The keys-only comparison costs one
//! cheap read of etcd per consistent request and holds on any etcd.
//!
//! Not promised: the cache's memory stays small for a large collection (it holds every object
//! of the resource once, as JSON), and lists at an exact old revision come from it (those
//! go to etcd).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use futures::StreamExt;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use rkube_api::backoff::{Backoff, BackoffConfig};
use rkube_api::registry::ResourceDef;
use rkube_storage::{KeyValue, ListOptions, PrefixSummary, Store, WatchEvent};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::rest::Filter;
use crate::stored::StoredObject;

/// How big a cache is.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// Events kept in the window (`--watch-cache-size`).
    pub capacity: usize,
    /// Events a watcher may have waiting before it is disconnected as too slow.
    pub watcher_buffer: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { capacity: 10_000, watcher_buffer: 1_000 }
    }
}

/// One change, as every watcher of the resource receives it.
#[derive(Debug)]
pub struct CachedEvent {
    /// The change's revision.
    pub revision: i64,
    /// Whether the object was deleted (`object` is then its last state, at `revision`).
    pub deleted: bool,
    /// The object after the change.
    pub object: Arc<StoredObject>,
    /// The object before it, if it existed.
    pub prev: Option<Arc<StoredObject>>,
}

/// Where a watcher starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At the cache's current revision; with the current objects first when `initial`.
    Now {
        /// Send the current objects first.
        initial: bool,
    },
    /// After this revision: every change since, then live ones.
    After(i64),
}

/// A page of a list served from the cache.
#[derive(Debug)]
pub struct Snapshot {
    /// The matching objects, in key order.
    pub objects: Vec<Arc<StoredObject>>,
    /// The revision the page shows.
    pub revision: i64,
    /// The key (relative to the listed prefix) of the last object of this page, when more
    /// objects follow.
    pub next: Option<String>,
}

/// A registered watcher: what to send first, then the live queue. Unregisters on drop.
pub struct Subscription {
    /// The current objects, when the watch asked for them.
    pub initial: Vec<Arc<StoredObject>>,
    /// The changes after the watcher's starting revision that the window held.
    pub replay: Vec<Arc<CachedEvent>>,
    /// The revision `initial` and `replay` bring the watcher to.
    pub revision: i64,
    /// The watcher receives only changes after this revision.
    after: i64,
    /// Live changes from here on; ends when the watcher is disconnected (too slow, a relist).
    pub events: mpsc::Receiver<Arc<CachedEvent>>,
    cacher: Arc<Cacher>,
    id: u64,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("id", &self.id).field("revision", &self.revision).finish_non_exhaustive()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = self.cacher.write();
        if state.watchers.remove(&self.id).is_some() {
            self.cacher.metrics.watchers.with_label_values(&[self.cacher.resource.plural]).dec();
        }
    }
}

impl Subscription {
    /// The revision for a bookmark: a watcher whose queue is empty has been handed every change
    /// up to the cache's last applied one, and it asked for none before `after`. (Not
    /// `verified`: a change below it may still be on its way, and the watcher must not see a
    /// bookmark newer than a change it is yet to get.)
    pub fn bookmark_revision(&self) -> i64 {
        self.cacher.read().revision.max(self.after)
    }
}

/// The watch cache of one resource (see the module docs).
pub struct Cacher {
    resource: &'static ResourceDef,
    prefix: String,
    store: Arc<dyn Store>,
    config: CacheConfig,
    state: RwLock<State>,
    /// The revision the cache has caught up to; 0 until its first list.
    reached: watch::Sender<i64>,
    metrics: CacheMetrics,
}

/// Waits for the cache's next change, or 50 ms, whichever comes first (a change on its way
/// from etcd, or etcd itself moving on); `false` once `deadline` has passed.
async fn next_look(reached: &mut watch::Receiver<i64>, deadline: tokio::time::Instant) -> bool {
    let retry = (tokio::time::Instant::now() + Duration::from_millis(50)).min(deadline);
    tokio::select! {
        _ = reached.changed() => {}
        () = tokio::time::sleep_until(retry) => {}
    }
    tokio::time::Instant::now() < deadline
}

/// How many objects the cache holds under `prefix`.
fn count_under(objects: &BTreeMap<String, Arc<StoredObject>>, prefix: &str) -> i64 {
    let under = objects
        .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(|(key, _)| key.starts_with(prefix));
    i64::try_from(under.count()).unwrap_or(i64::MAX)
}

impl std::fmt::Debug for Cacher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cacher").field("resource", &self.resource.plural).finish_non_exhaustive()
    }
}

/// What one cache holds. Invariants: `revision` is the revision of the last change applied
/// (or of the list); every change after `window_start` up to it is in `window`, in order;
/// `objects` are etcd's objects at every revision from `revision` to `verified` (`verified`
/// is raised by a comparison with etcd, and falls back to `revision` with each change: a
/// change that arrives late may belong before an earlier proof).
#[derive(Default)]
struct State {
    ready: bool,
    revision: i64,
    verified: i64,
    objects: BTreeMap<String, Arc<StoredObject>>,
    window: VecDeque<Arc<CachedEvent>>,
    window_start: i64,
    watchers: HashMap<u64, Subscriber>,
    next_id: u64,
}

struct Subscriber {
    prefix: String,
    /// The watcher has every change up to this revision: only later ones are sent.
    after: i64,
    sender: mpsc::Sender<Arc<CachedEvent>>,
}

impl Cacher {
    /// A cache of `resource`'s collection under `prefix` (e.g. `/registry/pods/`), not yet
    /// filled: [`Cacher::run`] does that.
    pub fn new(
        resource: &'static ResourceDef,
        prefix: String,
        store: Arc<dyn Store>,
        config: CacheConfig,
        metrics: CacheMetrics,
    ) -> Arc<Cacher> {
        Arc::new(Cacher {
            resource,
            prefix,
            store,
            config,
            state: RwLock::new(State::default()),
            reached: watch::Sender::new(0),
            metrics,
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A poisoned lock means a panic while holding it; no section below can panic halfway
        // through a change (they insert, remove, push and send), so the state is still whole.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The resource this cache holds.
    pub fn resource(&self) -> &'static ResourceDef {
        self.resource
    }

    /// Whether the cache holds the collection (it has listed it at least once).
    pub fn is_ready(&self) -> bool {
        self.read().ready
    }

    /// The latest revision the cache is known to show: what a list from it answers with.
    pub fn shown_revision(&self) -> i64 {
        self.read().verified
    }

    /// Waits until the cache shows a revision at or after `revision`: it has applied a change
    /// at or after it, or a comparison with etcd proves it holds etcd's state at a revision at
    /// or after it. Returns the revision it shows then, or `None` when `timeout` passes first
    /// (or the cache is not ready).
    ///
    /// # Errors
    /// When etcd cannot be read for the comparison.
    pub async fn wait_for(&self, revision: i64, timeout: Duration) -> Result<Option<i64>, ApiError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut reached = self.reached.subscribe();
        loop {
            reached.borrow_and_update();
            let shown = self.shown_revision();
            if self.is_ready() && shown >= revision {
                return Ok(Some(shown));
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.proven(&self.prefix, left, |_, shown| shown).await? {
                Some(proven) if proven >= revision => return Ok(Some(proven)),
                Some(_) => {}
                None => return Ok(None),
            }
            // Etcd itself is not at `revision` yet. Look again after the next change, or soon.
            if !next_look(&mut reached, deadline).await {
                return Ok(None);
            }
        }
    }

    /// [`Cacher::wait_for`] a resourceVersion a client sent: the revision the cache shows
    /// then.
    ///
    /// # Errors
    /// [`ApiError::TooLargeResourceVersion`] when the cache does not reach it within
    /// `timeout`; etcd errors.
    pub async fn reach(&self, revision: i64, timeout: Duration) -> Result<i64, ApiError> {
        match self.wait_for(revision, timeout).await? {
            Some(shown) => Ok(shown),
            None => Err(ApiError::TooLargeResourceVersion { requested: revision, current: self.shown_revision() }),
        }
    }

    /// A consistent read of the objects under `prefix`: once the cache is proven to hold what
    /// etcd holds there at etcd's current revision, the objects `filter` lets through (at
    /// most `limit`), at that revision. `None` when the cache does not catch up within
    /// `timeout` (or is not ready): etcd must answer.
    ///
    /// # Errors
    /// When etcd cannot be read.
    pub async fn consistent_list(
        &self,
        prefix: &str,
        filter: &Filter,
        limit: Option<usize>,
        timeout: Duration,
    ) -> Result<Option<Snapshot>, ApiError> {
        self.proven(prefix, timeout, |state, revision| self.snapshot(state, prefix, filter, limit, None, revision))
            .await
    }

    /// Registers a watcher of `prefix` that gets the current objects first, as fresh as a
    /// consistent read (see [`Cacher::consistent_list`]). `None` when the cache does not
    /// catch up within `timeout`.
    ///
    /// # Errors
    /// When etcd cannot be read.
    pub async fn subscribe_consistent(
        self: &Arc<Self>,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Option<Subscription>, ApiError> {
        let start = |state: &mut State, revision| self.register(state, prefix, Start::Now { initial: true }, revision);
        self.proven(prefix, timeout, start).await?.transpose()
    }

    /// Proves the cache's objects under `prefix` are etcd's at etcd's current revision R and,
    /// still under the lock the proof was made under, hands them to `take` with the revision
    /// they show: R, or a later one when the cache has applied changes after R. Changes still
    /// on their way are waited for, up to `timeout`; `None` then, or when the cache is not
    /// ready.
    ///
    /// The proof: first etcd's current revision (one key read); when the cache shows it
    /// already, nothing more. Else [`Store::written_since`] the revision the cache shows: one
    /// read of etcd, of this prefix only, that sends back nothing when nothing changed. A
    /// proof of the whole resource raises what the cache shows for every later reader.
    async fn proven<T>(
        &self,
        prefix: &str,
        timeout: Duration,
        mut take: impl FnMut(&mut State, i64) -> T,
    ) -> Result<Option<T>, ApiError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut reached = self.reached.subscribe();
        loop {
            reached.borrow_and_update();
            let (ready, since) = {
                let state = self.read();
                (state.ready, state.verified)
            };
            if !ready {
                return Ok(None);
            }
            // The cache already shows etcd's current revision (it applied a change there, or an
            // earlier proof of the whole resource reached it): nothing more to read.
            let current = Some(self.store.current_revision().await?).filter(|current| since >= *current);
            let summary = match current {
                Some(_) => None,
                None => Some(self.store.written_since(prefix, since).await?),
            };
            if let Some(taken) = self.take_if_proven(prefix, since, current.is_some(), summary, &mut take) {
                return Ok(Some(taken));
            }
            // Behind etcd: changes are on their way. Look again after the next one, or soon.
            if !next_look(&mut reached, deadline).await {
                return Ok(None);
            }
        }
    }

    /// The second half of [`Cacher::proven`], under the lock: whether etcd's answer proves the
    /// cache current, and then `take`.
    fn take_if_proven<T>(
        &self,
        prefix: &str,
        since: i64,
        applied_current: bool,
        summary: Option<PrefixSummary>,
        take: &mut impl FnMut(&mut State, i64) -> T,
    ) -> Option<T> {
        let mut state = self.write();
        let shown = match summary {
            _ if applied_current => state.verified,
            Some(summary) if state.verified >= summary.revision => state.verified,
            Some(summary)
                if state.verified == since
                    && summary.written.is_empty()
                    && count_under(&state.objects, prefix) == summary.count =>
            {
                summary.revision
            }
            _ => return None,
        };
        let raised = prefix == self.prefix && shown > state.verified;
        if raised {
            state.verified = shown;
        }
        let taken = take(&mut state, shown);
        drop(state);
        if raised {
            self.reached.send_replace(shown);
        }
        Some(taken)
    }

    /// The objects under `prefix` that `filter` lets through, in key order, from the key
    /// `from` (relative to `prefix`) on and at most `limit` of them, as the cache shows them
    /// now; `None` when the cache is not ready.
    pub fn list(&self, prefix: &str, filter: &Filter, limit: Option<usize>, from: Option<&str>) -> Option<Snapshot> {
        let state = self.read();
        let revision = state.verified;
        state.ready.then(|| self.snapshot(&state, prefix, filter, limit, from, revision))
    }

    /// The object under `key` as the cache shows it now, which may be behind etcd; `None` when
    /// the cache holds none or is not ready. A read-modify-write starts from it and reads etcd
    /// only when it proves stale (Kubernetes' `cachedExistingObject`).
    pub fn get(&self, key: &str) -> Option<Arc<StoredObject>> {
        let state = self.read();
        if !state.ready {
            return None;
        }
        state.objects.get(key).cloned()
    }

    /// A page of the objects under `prefix`, shown as of `revision`.
    fn snapshot(
        &self,
        state: &State,
        prefix: &str,
        filter: &Filter,
        limit: Option<usize>,
        from: Option<&str>,
        revision: i64,
    ) -> Snapshot {
        let start = format!("{prefix}{}", from.unwrap_or_default());
        let mut objects: Vec<Arc<StoredObject>> = Vec::new();
        let mut next = None;
        let candidates = state.objects.range::<String, _>((Bound::Included(start), Bound::Unbounded));
        for (key, object) in candidates.take_while(|(key, _)| key.starts_with(prefix)) {
            if !filter.matches_stored(object) {
                continue;
            }
            if limit.is_some_and(|limit| objects.len() >= limit) {
                next = objects.last().map(|last| last.key[prefix.len()..].to_string());
                break;
            }
            debug_assert_eq!(key, &object.key);
            objects.push(Arc::clone(object));
        }
        self.metrics.lists.with_label_values(&[self.resource.plural]).inc();
        Snapshot { objects, revision, next }
    }

    /// Registers a watcher of `prefix` starting at `start`.
    ///
    /// # Errors
    /// [`ApiError::Expired`] for a revision older than the window, 503 while the cache is not
    /// ready, and [`ApiError::TooLargeResourceVersion`] for a revision the cache has not
    /// reached (callers [`Cacher::wait_for`] it first).
    pub fn subscribe(self: &Arc<Self>, prefix: &str, start: Start) -> Result<Subscription, ApiError> {
        let mut state = self.write();
        let shown = state.verified;
        self.register(&mut state, prefix, start, shown)
    }

    /// Registers a watcher under the lock, with the cache's objects under `prefix` showing
    /// etcd's state at `shown`.
    fn register(
        self: &Arc<Self>,
        state: &mut State,
        prefix: &str,
        start: Start,
        shown: i64,
    ) -> Result<Subscription, ApiError> {
        if !state.ready {
            return Err(ApiError::Unavailable(format!("the watch cache of {} is initializing", self.resource.plural)));
        }
        let (initial, replay, after) = match start {
            Start::Now { initial } => {
                let objects = match initial {
                    true => state
                        .objects
                        .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                        .take_while(|(key, _)| key.starts_with(prefix))
                        .map(|(_, object)| Arc::clone(object))
                        .collect(),
                    false => Vec::new(),
                };
                (objects, Vec::new(), shown)
            }
            Start::After(revision) if revision > shown => {
                return Err(ApiError::TooLargeResourceVersion { requested: revision, current: shown });
            }
            Start::After(revision) if revision < state.window_start => {
                return Err(ApiError::Expired(format!(
                    "too old resource version: {revision} ({})",
                    state.window_start
                )));
            }
            Start::After(revision) => {
                let first = state.window.partition_point(|event| event.revision <= revision);
                let replay =
                    state.window.range(first..).filter(|event| event.object.key.starts_with(prefix)).cloned().collect();
                (Vec::new(), replay, revision)
            }
        };
        let (sender, events) = mpsc::channel(self.config.watcher_buffer);
        let id = state.next_id;
        state.next_id += 1;
        state.watchers.insert(id, Subscriber { prefix: prefix.to_string(), after, sender });
        self.metrics.watchers.with_label_values(&[self.resource.plural]).inc();
        let revision = after.max(state.revision);
        Ok(Subscription { initial, replay, revision, after, events, cacher: Arc::clone(self), id })
    }

    /// Fills the cache and keeps it current until `shutdown`: list, then watch from the
    /// list's revision; after a broken watch, watch again from the last revision seen; relist
    /// only when that revision was compacted away.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(BackoffConfig::doubling(
            Duration::from_millis(100),
            Duration::from_secs(5),
            Duration::from_secs(60),
        ));
        let mut need_list = true;
        loop {
            let result = tokio::select! {
                () = shutdown.cancelled() => return,
                result = self.fill_and_follow(&mut need_list) => result,
            };
            let delay = backoff.next_delay(tokio::time::Instant::now().into_std());
            match result {
                Err(rkube_storage::Error::Expired { .. }) => {
                    tracing::info!(resource = self.resource.plural, "watch cache fell behind a compaction; relisting");
                    need_list = true;
                }
                Err(error) => {
                    tracing::info!(resource = self.resource.plural, %error, retry_in = ?delay, "watch cache lost etcd; resuming");
                }
                Ok(()) => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One round of [`Cacher::run`]: relist if needed, then follow the watch until it breaks.
    async fn fill_and_follow(&self, need_list: &mut bool) -> rkube_storage::Result<()> {
        if *need_list {
            let page = self.store.list(&self.prefix, ListOptions::default()).await?;
            let mut objects = BTreeMap::new();
            for kv in &page.items {
                match StoredObject::new(self.resource, &kv.key, &kv.value, kv.mod_revision) {
                    Ok(object) => {
                        objects.insert(kv.key.clone(), Arc::new(object));
                    }
                    Err(error) => tracing::error!(key = %kv.key, %error, "not caching an object that does not decode"),
                }
            }
            self.replace(objects, page.revision);
            *need_list = false;
        }
        // Resume after the last change applied (not after `verified`: a change below it may
        // still have been on its way).
        let from = self.read().revision;
        let mut changes = self.store.watch(&self.prefix, from, None).await?;
        while let Some(change) = changes.next().await {
            match change? {
                WatchEvent::Put { kv, prev } => {
                    match StoredObject::new(self.resource, &kv.key, &kv.value, kv.mod_revision) {
                        Ok(object) => self.apply(kv.mod_revision, Arc::new(object), false, prev.as_ref()),
                        Err(error) => tracing::error!(key = %kv.key, %error, "skipping a change that does not decode"),
                    }
                }
                WatchEvent::Delete { key, revision, prev } => {
                    let last = match &prev {
                        Some(prev) => StoredObject::new(self.resource, &key, &prev.value, revision),
                        None => self.last_state(&key, revision),
                    };
                    match last {
                        Ok(object) => self.apply(revision, Arc::new(object), true, prev.as_ref()),
                        Err(error) => tracing::error!(%key, %error, "skipping a deletion whose last state is unknown"),
                    }
                }
                // Not requested; the cache proves its freshness by comparing with etcd instead.
                WatchEvent::Progress { .. } => {}
            }
        }
        Err(rkube_storage::Error::Unavailable("etcd closed the watch".into()))
    }

    /// The cached last state of `key`, at the deletion's `revision` (etcd sends none for a
    /// deletion replayed right after a compaction).
    fn last_state(&self, key: &str, revision: i64) -> Result<StoredObject, ApiError> {
        let cached = self.read().objects.get(key).cloned();
        match cached {
            Some(object) => object.deleted_at(self.resource, revision),
            None => Err(ApiError::Internal(format!("{key} deleted at {revision} was not cached"))),
        }
    }

    /// Takes a fresh list: the window starts over at its revision, and every watcher is
    /// disconnected (each resumes from its last revision, older than the new window, and so
    /// gets a 410 and relists, as after an etcd compaction in Kubernetes).
    fn replace(&self, objects: BTreeMap<String, Arc<StoredObject>>, revision: i64) {
        let mut state = self.write();
        let dropped = state.watchers.len();
        state.watchers.clear();
        state.objects = objects;
        state.window.clear();
        state.window_start = revision;
        state.revision = revision;
        state.verified = revision;
        state.ready = true;
        let plural = self.resource.plural;
        self.metrics.watchers.with_label_values(&[plural]).sub(i64::try_from(dropped).unwrap_or(i64::MAX));
        self.metrics.objects.with_label_values(&[plural]).set(i64::try_from(state.objects.len()).unwrap_or(i64::MAX));
        self.metrics.window.with_label_values(&[plural]).set(0);
        self.metrics.relists.with_label_values(&[plural]).inc();
        drop(state);
        self.reached.send_replace(revision);
    }

    /// Applies one change: the collection, the window, then every watcher of its prefix that
    /// started before it. A change at or below `verified` (one still on its way when a
    /// comparison proved the collection current) is already in the collection: it only goes to
    /// the window and to the watchers.
    fn apply(&self, revision: i64, object: Arc<StoredObject>, deleted: bool, etcd_prev: Option<&KeyValue>) {
        let plural = self.resource.plural;
        let mut state = self.write();
        if revision <= state.revision {
            return; // already seen (a resumed watch may repeat the last one)
        }
        let prev = if revision > state.verified {
            state.verified = revision;
            match deleted {
                true => state.objects.remove(&object.key),
                false => state.objects.insert(object.key.clone(), Arc::clone(&object)),
            }
        } else {
            etcd_prev
                .and_then(|kv| StoredObject::new(self.resource, &kv.key, &kv.value, kv.mod_revision).ok())
                .map(Arc::new)
        };
        let event = Arc::new(CachedEvent { revision, deleted, object, prev });
        state.window.push_back(Arc::clone(&event));
        while state.window.len() > self.config.capacity {
            if let Some(evicted) = state.window.pop_front() {
                state.window_start = evicted.revision;
            }
        }
        state.revision = revision;
        let mut gone = Vec::new();
        let mut dispatched = 0;
        for (id, watcher) in &state.watchers {
            if revision <= watcher.after || !event.object.key.starts_with(&watcher.prefix) {
                continue;
            }
            match watcher.sender.try_send(Arc::clone(&event)) {
                Ok(()) => dispatched += 1,
                Err(mpsc::error::TrySendError::Full(_)) => gone.push((*id, true)),
                Err(mpsc::error::TrySendError::Closed(_)) => gone.push((*id, false)),
            }
        }
        for (id, too_slow) in &gone {
            state.watchers.remove(id);
            if *too_slow {
                self.metrics.terminated.with_label_values(&[plural]).inc();
                tracing::info!(resource = plural, "disconnecting a watcher that does not keep up");
            }
        }
        self.metrics.watchers.with_label_values(&[plural]).sub(i64::try_from(gone.len()).unwrap_or(0));
        self.metrics.dispatched.with_label_values(&[plural]).inc_by(dispatched);
        self.metrics.objects.with_label_values(&[plural]).set(i64::try_from(state.objects.len()).unwrap_or(i64::MAX));
        self.metrics.window.with_label_values(&[plural]).set(i64::try_from(state.window.len()).unwrap_or(i64::MAX));
        drop(state);
        self.reached.send_replace(revision);
    }
}

/// The watch caches' metrics, labelled by resource.
#[derive(Debug, Clone)]
pub struct CacheMetrics {
    objects: IntGaugeVec,
    window: IntGaugeVec,
    watchers: IntGaugeVec,
    dispatched: IntCounterVec,
    terminated: IntCounterVec,
    lists: IntCounterVec,
    relists: IntCounterVec,
}

impl CacheMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<CacheMetrics> {
        let gauge = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["resource"]);
        let counter = |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["resource"]);
        let metrics = CacheMetrics {
            objects: gauge("rkube_apiserver_watch_cache_objects", "Objects held by the watch cache, by resource.")?,
            window: gauge(
                "rkube_apiserver_watch_cache_window_events",
                "Recent events the watch cache keeps for resuming watches, by resource.",
            )?,
            watchers: gauge(
                "rkube_apiserver_watch_cache_watchers",
                "Watchers served by the watch cache, by resource.",
            )?,
            dispatched: counter(
                "rkube_apiserver_watch_cache_events_dispatched_total",
                "Events handed to watchers by the watch cache, by resource.",
            )?,
            terminated: counter(
                "rkube_apiserver_watch_cache_terminated_watchers_total",
                "Watchers disconnected because they did not keep up, by resource.",
            )?,
            lists: counter(
                "rkube_apiserver_watch_cache_lists_total",
                "Lists served from the watch cache, by resource.",
            )?,
            relists: counter(
                "rkube_apiserver_watch_cache_relists_total",
                "Times the watch cache listed its resource from etcd, by resource.",
            )?,
        };
        registry.register(Box::new(metrics.objects.clone()))?;
        registry.register(Box::new(metrics.window.clone()))?;
        registry.register(Box::new(metrics.watchers.clone()))?;
        registry.register(Box::new(metrics.dispatched.clone()))?;
        registry.register(Box::new(metrics.terminated.clone()))?;
        registry.register(Box::new(metrics.lists.clone()))?;
        registry.register(Box::new(metrics.relists.clone()))?;
        Ok(metrics)
    }
}

#[cfg(test)]
mod tests {
    use rkube_storage::MemoryStore;
    use serde_json::json;

    use super::*;
    use crate::rest::Filter;

    const WAIT: Duration = Duration::from_secs(5);

    fn configmaps() -> &'static ResourceDef {
        &rkube_api::kinds::configmap::RESOURCE
    }

    fn value(name: &str, v: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "ns"}, "data": {"v": v}}))
        .expect("json")
    }

    fn key(name: &str) -> String {
        format!("/registry/configmaps/ns/{name}")
    }

    /// A running cache over a fresh MemoryStore, ready.
    async fn cache(config: CacheConfig) -> (Arc<Cacher>, MemoryStore, CancellationToken, prometheus::Registry) {
        let store = MemoryStore::new();
        let registry = prometheus::Registry::new();
        let metrics = CacheMetrics::new(&registry).expect("metrics");
        let prefix = "/registry/configmaps/".to_string();
        let cacher = Cacher::new(configmaps(), prefix, Arc::new(store.clone()), config, metrics);
        let shutdown = CancellationToken::new();
        tokio::spawn(Arc::clone(&cacher).run(shutdown.clone()));
        tokio::time::timeout(WAIT, async {
            while !cacher.is_ready() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the cache lists its resource");
        (cacher, store, shutdown, registry)
    }

    async fn next(subscription: &mut Subscription) -> Arc<CachedEvent> {
        tokio::time::timeout(WAIT, subscription.events.recv()).await.expect("in time").expect("open")
    }

    fn counter(registry: &prometheus::Registry, name: &str) -> f64 {
        registry
            .gather()
            .iter()
            .filter(|family| family.name() == name)
            .flat_map(|family| family.get_metric().iter().map(|m| m.get_counter().get_value()).collect::<Vec<_>>())
            .sum()
    }

    #[tokio::test]
    async fn a_watcher_gets_every_change_after_its_start_once_in_order_with_the_previous_state() {
        let (cacher, store, _stop, _registry) = cache(CacheConfig::default()).await;
        let before = store.create(&key("a"), value("a", "1")).await.expect("create");
        assert!(cacher.wait_for(before, WAIT).await.expect("wait").is_some());
        let mut watch = cacher.subscribe("/registry/configmaps/ns/", Start::After(before)).expect("subscribe");
        let updated = store.update(&key("a"), before, value("a", "2")).await.expect("update");
        let (_, deleted) = store.delete(&key("a"), None).await.expect("delete");
        let first = next(&mut watch).await;
        assert_eq!((first.revision, first.deleted), (updated, false));
        assert_eq!(first.prev.as_ref().map(|p| p.revision), Some(before), "the state before the change");
        let second = next(&mut watch).await;
        assert_eq!((second.revision, second.deleted), (deleted, true));
        assert_eq!(second.object.decode().expect("json")["data"]["v"], "2", "a deletion carries the last state");
        assert!(watch.events.try_recv().is_err(), "nothing more");
    }

    #[tokio::test]
    async fn a_watch_from_before_the_window_is_expired_and_one_inside_replays_from_memory() {
        let config = CacheConfig { capacity: 2, ..CacheConfig::default() };
        let (cacher, store, _stop, _registry) = cache(config).await;
        let mut revisions = Vec::new();
        for i in 0..5 {
            revisions.push(store.create(&key(&format!("c{i}")), value("c", "1")).await.expect("create"));
        }
        assert!(cacher.wait_for(revisions[4], WAIT).await.expect("wait").is_some());
        let expired = cacher.subscribe("/registry/configmaps/", Start::After(revisions[1]));
        assert!(matches!(expired, Err(ApiError::Expired(_))), "{expired:?}");
        let inside = cacher.subscribe("/registry/configmaps/", Start::After(revisions[2])).expect("in the window");
        let replayed: Vec<i64> = inside.replay.iter().map(|e| e.revision).collect();
        assert_eq!(replayed, revisions[3..], "the changes after the start, from the window");
    }

    #[tokio::test]
    async fn a_watcher_that_does_not_keep_up_is_disconnected_and_counted() {
        let config = CacheConfig { watcher_buffer: 2, ..CacheConfig::default() };
        let (cacher, store, _stop, registry) = cache(config).await;
        let mut watch = cacher.subscribe("/registry/configmaps/", Start::Now { initial: false }).expect("subscribe");
        let mut last = 0;
        for i in 0..5 {
            last = store.create(&key(&format!("s{i}")), value("s", "1")).await.expect("create");
        }
        assert!(cacher.wait_for(last, WAIT).await.expect("wait").is_some());
        // What was queued is delivered, then the stream ends: the client resumes from there.
        assert!(next(&mut watch).await.revision < last);
        assert!(next(&mut watch).await.revision < last);
        assert!(tokio::time::timeout(WAIT, watch.events.recv()).await.expect("in time").is_none(), "disconnected");
        assert_eq!(counter(&registry, "rkube_apiserver_watch_cache_terminated_watchers_total"), 1.0);
    }

    #[tokio::test]
    async fn a_consistent_read_sees_every_write_that_finished_before_it() {
        let (cacher, store, _stop, _registry) = cache(CacheConfig::default()).await;
        for i in 0..20 {
            let written = store.create(&key(&format!("w{i:02}")), value("w", "1")).await.expect("create");
            let snapshot = cacher
                .consistent_list("/registry/configmaps/", &Filter::default(), None, WAIT)
                .await
                .expect("etcd")
                .expect("caught up");
            assert!(snapshot.revision >= written, "a consistent read right after a write shows it");
            assert_eq!(snapshot.objects.len(), i + 1);
        }
        // A write elsewhere moves etcd's revision; the quiet cache is still proven current.
        let elsewhere = store.create("/registry/secrets/ns/x", b"{}".to_vec()).await.expect("create");
        let snapshot = cacher.consistent_list("/registry/configmaps/ns/", &Filter::default(), None, WAIT).await;
        assert_eq!(snapshot.expect("etcd").expect("caught up").revision, elsewhere);
        assert_eq!(cacher.wait_for(elsewhere, WAIT).await.expect("etcd"), Some(elsewhere));
    }

    /// A cache filled from `store`'s current state that does not follow it: what it holds
    /// stays put while the test writes "changes still on their way".
    async fn standing_cache(store: &MemoryStore) -> Arc<Cacher> {
        let metrics = CacheMetrics::new(&prometheus::Registry::new()).expect("metrics");
        let shared: Arc<dyn Store> = Arc::new(store.clone());
        let prefix = "/registry/configmaps/";
        let cacher = Cacher::new(configmaps(), prefix.into(), shared, CacheConfig::default(), metrics);
        let page = store.list(prefix, ListOptions::default()).await.expect("list");
        let objects = page
            .items
            .iter()
            .map(|kv| {
                let object = StoredObject::new(configmaps(), &kv.key, &kv.value, kv.mod_revision).expect("object");
                (kv.key.clone(), Arc::new(object))
            })
            .collect();
        cacher.replace(objects, page.revision);
        cacher
    }

    #[tokio::test]
    async fn a_consistent_read_proves_only_its_own_prefix_and_waits_for_a_change_on_its_way_there() {
        let store = MemoryStore::new();
        let ns = |ns: &str, name: &str| format!("/registry/configmaps/{ns}/{name}");
        store.create(&ns("a", "x"), value("x", "1")).await.expect("create");
        store.create(&ns("b", "y"), value("y", "1")).await.expect("create");
        let cacher = standing_cache(&store).await;
        // A change in namespace b the cache has not seen yet.
        let on_its_way = store.create(&ns("b", "z"), value("z", "1")).await.expect("create");
        let short = Duration::from_millis(200);
        let a = cacher.consistent_list("/registry/configmaps/a/", &Filter::default(), None, short).await;
        let a = a.expect("etcd").expect("namespace a is proven current without b");
        assert_eq!((a.objects.len(), a.revision), (1, on_its_way), "a shows etcd's current revision");
        let b = cacher.consistent_list("/registry/configmaps/b/", &Filter::default(), None, short).await;
        assert!(b.expect("etcd").is_none(), "b waits for its change, then gives up (etcd answers)");
        let all = cacher.consistent_list("/registry/configmaps/", &Filter::default(), None, short).await;
        assert!(all.expect("etcd").is_none(), "so does the whole resource");
        assert!(cacher.shown_revision() < on_its_way, "a proof of one namespace proves nothing for the others");
        // A watcher of a, started consistently, gets x first and nothing from before its start.
        let watch = cacher.subscribe_consistent("/registry/configmaps/a/", short).await.expect("etcd");
        let watch = watch.expect("proven");
        assert_eq!(watch.initial.len(), 1);
        assert_eq!(watch.after, on_its_way);
        // The change arrives: now b, and the whole resource, are current too.
        let page = store.list("/registry/configmaps/b/", ListOptions::default()).await.expect("list");
        let z = page.items.iter().find(|kv| kv.key.ends_with("/z")).expect("z");
        let object = StoredObject::new(configmaps(), &z.key, &z.value, z.mod_revision).expect("object");
        cacher.apply(z.mod_revision, Arc::new(object), false, None);
        let b = cacher.consistent_list("/registry/configmaps/b/", &Filter::default(), None, short).await;
        assert_eq!(b.expect("etcd").expect("proven").objects.len(), 2);
        assert_eq!(cacher.wait_for(on_its_way, short).await.expect("etcd"), Some(on_its_way));
    }

    #[tokio::test]
    async fn a_key_created_and_deleted_while_on_its_way_does_not_fool_the_proof() {
        let store = MemoryStore::new();
        let key_a = "/registry/configmaps/a/x";
        store.create(key_a, value("x", "1")).await.expect("create");
        let cacher = standing_cache(&store).await;
        // Both changes are on their way: the namespace holds the same keys as the cache.
        let created = store.create("/registry/configmaps/a/tmp", value("tmp", "1")).await.expect("create");
        let (_, deleted) = store.delete("/registry/configmaps/a/tmp", None).await.expect("delete");
        let a = cacher.consistent_list("/registry/configmaps/a/", &Filter::default(), None, WAIT).await;
        assert_eq!(a.expect("etcd").expect("proven").revision, deleted, "the net effect is nothing");
        // The create arrives first: until the delete does, the namespace is not proven.
        let tmp = StoredObject::new(configmaps(), "/registry/configmaps/a/tmp", &value("tmp", "1"), created);
        cacher.apply(created, Arc::new(tmp.expect("object")), false, None);
        let short = Duration::from_millis(200);
        let a = cacher.consistent_list("/registry/configmaps/a/", &Filter::default(), None, short).await;
        assert!(a.expect("etcd").is_none(), "the state in between is never shown as etcd's current one");
    }

    #[tokio::test]
    async fn pages_continue_from_the_key_after_the_last_one() {
        let (cacher, store, _stop, _registry) = cache(CacheConfig::default()).await;
        let mut last = 0;
        for name in ["a", "b", "c", "d", "e"] {
            last = store.create(&key(name), value(name, "1")).await.expect("create");
        }
        assert!(cacher.wait_for(last, WAIT).await.expect("wait").is_some());
        let prefix = "/registry/configmaps/";
        let first = cacher.list(prefix, &Filter::default(), Some(2), None).expect("ready");
        let names: Vec<&str> = first.objects.iter().map(|o| o.name()).collect();
        assert_eq!(names, ["a", "b"]);
        let next = format!("{}\u{0}", first.next.expect("more"));
        let second = cacher.list(prefix, &Filter::default(), Some(2), Some(&next)).expect("ready");
        let names: Vec<&str> = second.objects.iter().map(|o| o.name()).collect();
        assert_eq!(names, ["c", "d"]);
    }

    #[test]
    fn a_change_on_its_way_when_freshness_was_proven_reaches_only_earlier_watchers() {
        let metrics = CacheMetrics::new(&prometheus::Registry::new()).expect("metrics");
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let cacher = Cacher::new(configmaps(), "/registry/configmaps/".into(), store, CacheConfig::default(), metrics);
        cacher.replace(BTreeMap::new(), 10);
        let old = cacher.subscribe("/registry/", Start::Now { initial: false }).expect("subscribe");
        // A comparison proved the (empty) collection current at 20; a create at 12 and its
        // delete at 14 were still on their way.
        cacher.write().verified = 20;
        let mut new = cacher.subscribe("/registry/", Start::Now { initial: false }).expect("subscribe");
        let stored = |revision| {
            Arc::new(StoredObject::new(configmaps(), &key("x"), &value("x", "1"), revision).expect("object"))
        };
        cacher.apply(12, stored(12), false, None);
        cacher.apply(14, stored(14), true, None);
        assert!(cacher.read().objects.is_empty(), "the collection already showed their net effect");
        let mut old = old;
        assert_eq!(old.events.try_recv().map(|e| e.revision).ok(), Some(12));
        assert_eq!(old.events.try_recv().map(|e| e.revision).ok(), Some(14));
        assert!(new.events.try_recv().is_err(), "a watcher started at 20 gets nothing from before");
        assert_eq!(new.bookmark_revision(), 20, "nor a bookmark older than its start");
    }
}
