//! SharedInformer: one reflector and one store per resource, shared by any number of event
//! handlers.
//!
//! client-go calls this `SharedIndexInformer`; its `DeltaFIFO` is replaced here by doing each
//! step directly: the reflector hands a [`Delta`] to the informer, which updates the
//! [`Store`] and queues the resulting notification to every handler, all under one lock.
//! kube-rs's closest equivalent is a `reflector` plus `watcher` with shared streams.
//!
//! What it keeps true (tests below and in `test/tests/informer_*.rs`):
//! - one reflector per informer, however many handlers;
//! - per object, handlers see changes in resourceVersion order, and the store has applied a
//!   change before any handler hears of it;
//! - after a relist (410), handlers get exactly the difference: `on_add` for new objects,
//!   `on_update` for objects whose resourceVersion changed, and `on_delete` with
//!   [`Deleted::FinalStateUnknown`] for objects that vanished meanwhile;
//! - a handler added after sync first gets `on_add` for everything in the store;
//! - [`SharedInformer::has_synced`] turns true once the first complete list is in the store.
//!
//! Not promised: freshness (the store may be stale; see [`Store::get`]), or seeing every
//! intermediate state of an object. Events may be lost in the sense that matters for cleanup:
//! a delete during a disconnect arrives late and without its final state. Use finalizers for
//! cleanup that must not be missed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kube_core::Resource;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::handler::{Deleted, Delivery, EventHandler, HandlerRegistration, Notification};
use crate::key::ObjectKey;
use crate::lister_watcher::ListerWatcher;
use crate::metrics::ResourceMetrics;
use crate::reflector::{Delta, Reflector, ReflectorConfig};
use crate::store::{Change, IndexFn, Store, Writer};

/// How a shared informer lists, watches and resyncs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InformerConfig {
    /// How the reflector lists, watches and backs off (selectors included).
    pub reflector: ReflectorConfig,
    /// Every this often, call `on_update(object, object)` for every object in the store
    /// (client-go's resync: it replays the cache and never asks the apiserver). `None`: never.
    pub resync_period: Option<Duration>,
}

/// Where the first list stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SyncState {
    Syncing,
    Synced,
    /// Stopped before the first list completed.
    Stopped,
}

/// A handler's queue, as the informer sees it.
struct Listener<K> {
    id: u64,
    queue: UnboundedSender<Notification<K>>,
    /// Still waiting for the first list; gets `InitialDone` after it.
    awaiting_first_list: bool,
}

/// The store writer and the handler queues: changed together, under one lock, so that a
/// handler added late sees the store exactly as of its registration and every change after it.
struct Processor<K> {
    writer: Writer<K>,
    listeners: Vec<Listener<K>>,
    /// Handler tasks that could not be spawned yet (added outside a runtime); spawned by `run`.
    unspawned: Vec<Delivery<K>>,
    /// The runtime `run` runs on, for handlers added later from outside any runtime.
    runtime: Option<tokio::runtime::Handle>,
    synced: bool,
    stopped: bool,
}

impl<K> Processor<K> {
    /// Queues `notification` to every handler (except those still waiting for the first list,
    /// which would get it from the list anyway). Forgets handlers whose task is gone.
    fn notify(&mut self, notification: &Notification<K>) {
        self.listeners
            .retain(|listener| listener.awaiting_first_list || listener.queue.send(notification.clone()).is_ok());
    }
}

struct Inner<K> {
    resource: String,
    lister_watcher: Arc<dyn ListerWatcher<K>>,
    config: InformerConfig,
    metrics: ResourceMetrics,
    store: Store<K>,
    processor: Mutex<Processor<K>>,
    sync: watch::Sender<SyncState>,
    started: AtomicBool,
    next_handler_id: AtomicU64,
}

/// Keeps a cached, indexed copy of one resource and tells handlers about every change.
///
/// Cheap to clone; clones share everything. Build one with [`SharedInformer::new`], or get the
/// process-wide one for a type from [`crate::factory::SharedInformerFactory::informer`].
#[doc(alias = "informer")]
#[doc(alias = "SharedIndexInformer")]
pub struct SharedInformer<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for SharedInformer<K> {
    fn clone(&self) -> Self {
        SharedInformer { inner: Arc::clone(&self.inner) }
    }
}

impl<K> std::fmt::Debug for SharedInformer<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedInformer")
            .field("resource", &self.inner.resource)
            .field("synced", &*self.inner.sync.borrow())
            .finish()
    }
}

impl<K> SharedInformer<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    /// An informer (not yet running) over `lister_watcher`, counting into `metrics`.
    pub fn new(lister_watcher: impl ListerWatcher<K>, config: InformerConfig, metrics: ResourceMetrics) -> Self {
        let writer = Writer::default();
        let store = writer.store();
        let (sync, _) = watch::channel(SyncState::Syncing);
        SharedInformer {
            inner: Arc::new(Inner {
                resource: K::plural(&()).into_owned(),
                lister_watcher: Arc::new(lister_watcher),
                config,
                metrics,
                store,
                processor: Mutex::new(Processor {
                    writer,
                    listeners: Vec::new(),
                    unspawned: Vec::new(),
                    runtime: None,
                    synced: false,
                    stopped: false,
                }),
                sync,
                started: AtomicBool::new(false),
                next_handler_id: AtomicU64::new(0),
            }),
        }
    }

    /// A reader of the informer's store (client-go: `GetStore`, `GetIndexer`, or a lister).
    /// The store may be stale; see [`Store::get`].
    pub fn store(&self) -> Store<K> {
        self.inner.store.clone()
    }

    /// Registers (or replaces) the index `name`; objects already stored are indexed at once.
    /// client-go calls this `AddIndexers`.
    pub fn add_indexer(&self, name: &str, index_fn: IndexFn<K>) {
        self.inner.processor().writer.add_indexer(name, index_fn);
    }

    /// Adds a handler. If the informer has synced, the handler first gets `on_add` for every
    /// object in the store; otherwise it gets the first list as adds like every handler.
    /// client-go calls this `AddEventHandler`.
    pub fn add_handler(&self, handler: impl EventHandler<K>) -> HandlerRegistration {
        let (queue, receiver) = unbounded_channel();
        let synced = Arc::new(AtomicBool::new(false));
        let id = self.inner.next_handler_id.fetch_add(1, Ordering::Relaxed);
        let delivery = Delivery { queue: receiver, handler: Arc::new(handler), synced: Arc::clone(&synced) };
        let mut processor = self.inner.processor();
        if !processor.stopped {
            if processor.synced {
                for object in self.inner.store.list() {
                    // The receiver is in `delivery`, alive until spawned: sending cannot fail.
                    let _ = queue.send(Notification::Add(object));
                }
                let _ = queue.send(Notification::InitialDone);
            }
            let awaiting_first_list = !processor.synced;
            processor.listeners.push(Listener { id, queue, awaiting_first_list });
        }
        match tokio::runtime::Handle::try_current().ok().or_else(|| processor.runtime.clone()) {
            Some(runtime) => {
                runtime.spawn(delivery.run());
            }
            None => processor.unspawned.push(delivery),
        }
        HandlerRegistration { id, synced }
    }

    /// Removes a handler; it gets no notification queued after this call.
    pub fn remove_handler(&self, registration: &HandlerRegistration) {
        self.inner.processor().listeners.retain(|listener| listener.id != registration.id);
    }

    /// Whether the first complete list is in the store. client-go calls this `HasSynced`.
    pub fn has_synced(&self) -> bool {
        *self.inner.sync.borrow() == SyncState::Synced
    }

    /// Waits until the first complete list is in the store: `true`, or `false` if the informer
    /// stopped first. client-go calls this `WaitForCacheSync`.
    pub async fn wait_for_sync(&self) -> bool {
        let mut state = self.inner.sync.subscribe();
        match state.wait_for(|state| *state != SyncState::Syncing).await {
            Ok(state) => *state == SyncState::Synced,
            Err(_) => false,
        }
    }

    /// Spawns [`SharedInformer::run`] on the current runtime, unless it already runs.
    ///
    /// # Panics
    /// Outside a tokio runtime (like `tokio::spawn`).
    pub fn start(&self, shutdown: CancellationToken) {
        if !self.inner.started.swap(true, Ordering::AcqRel) {
            let inner = Arc::clone(&self.inner);
            tokio::spawn(async move { inner.run(shutdown).await });
        }
    }

    /// Lists, watches and delivers events until `shutdown` is cancelled. Returns at once if the
    /// informer already runs (or ran): one reflector per informer.
    pub async fn run(&self, shutdown: CancellationToken) {
        if self.inner.started.swap(true, Ordering::AcqRel) {
            tracing::warn!(resource = %self.inner.resource, "informer already started; not starting it twice");
            return;
        }
        Arc::clone(&self.inner).run(shutdown).await;
    }
}

impl<K> Inner<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    fn processor(&self) -> MutexGuard<'_, Processor<K>> {
        // Nothing panics while holding this lock except a panicking index function; the data
        // stays usable, so keep going rather than poison every later call.
        self.processor.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        {
            let mut processor = self.processor();
            processor.runtime = tokio::runtime::Handle::try_current().ok();
            if let Some(runtime) = processor.runtime.clone() {
                for delivery in std::mem::take(&mut processor.unspawned) {
                    runtime.spawn(delivery.run());
                }
            }
        }
        let reflector =
            Reflector::new(Arc::clone(&self.lister_watcher), self.config.reflector.clone(), self.metrics.clone());
        let sink = {
            let inner = Arc::clone(&self);
            move |delta| inner.process(delta)
        };
        let resync = {
            let inner = Arc::clone(&self);
            async move {
                match inner.config.resync_period {
                    Some(period) if !period.is_zero() => {
                        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                        loop {
                            ticks.tick().await;
                            inner.resync();
                        }
                    }
                    _ => std::future::pending::<()>().await,
                }
            }
        };
        tokio::select! {
            () = reflector.run(sink, shutdown.clone()) => {}
            () = resync => {}
        }
        let mut processor = self.processor();
        processor.stopped = true;
        // Closing the queues ends the handler tasks once they have drained them.
        processor.listeners.clear();
        drop(processor);
        self.sync.send_if_modified(|state| {
            let syncing = *state == SyncState::Syncing;
            if syncing {
                *state = SyncState::Stopped;
            }
            syncing
        });
        tracing::debug!(resource = %self.resource, "informer stopped");
    }

    /// Applies one delta to the store and tells every handler.
    fn process(&self, delta: Delta<K>) {
        let mut processor = self.processor();
        match delta {
            Delta::Replace(objects) => {
                for change in processor.writer.replace(objects) {
                    let notification = match change {
                        Change::Added(object) => Notification::Add(object),
                        Change::Updated { old, new } => Notification::Update(old, new),
                        Change::Vanished(object) => Notification::Delete(Deleted::FinalStateUnknown(object)),
                    };
                    processor.notify(&notification);
                }
                if !processor.synced {
                    processor.synced = true;
                    // Handlers that joined before the first list get all of it, as adds.
                    let objects = self.store.list();
                    processor.listeners.retain_mut(|listener| {
                        if !listener.awaiting_first_list {
                            return true;
                        }
                        listener.awaiting_first_list = false;
                        objects.iter().all(|object| listener.queue.send(Notification::Add(Arc::clone(object))).is_ok())
                            && listener.queue.send(Notification::InitialDone).is_ok()
                    });
                    self.sync.send_replace(SyncState::Synced);
                }
            }
            Delta::Added(object) | Delta::Modified(object) => {
                let new = Arc::new(object);
                let notification = match processor.writer.apply(Arc::clone(&new)) {
                    Some(old) => Notification::Update(old, new),
                    None => Notification::Add(new),
                };
                processor.notify(&notification);
            }
            Delta::Deleted(object) => {
                processor.writer.delete(&ObjectKey::of(&object));
                processor.notify(&Notification::Delete(Deleted::Known(Arc::new(object))));
            }
        }
    }

    /// Replays the store to every handler as updates with old = new.
    fn resync(&self) {
        let mut processor = self.processor();
        if !processor.synced {
            return;
        }
        for object in self.store.list() {
            processor.notify(&Notification::Update(Arc::clone(&object), object));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::api::core::v1::ConfigMap;
    use rkube_client::WatchEvent;

    use super::*;
    use crate::backoff::BackoffConfig;
    use crate::handler::HandlerFns;
    use crate::testing::{FakeApi, Recorder, config_map, eventually, expired, send};
    use kube_core::ResourceExt;

    fn quick_config() -> InformerConfig {
        InformerConfig {
            reflector: ReflectorConfig {
                page_size: 2,
                backoff: BackoffConfig {
                    initial: Duration::from_millis(5),
                    max: Duration::from_millis(20),
                    ..BackoffConfig::default()
                },
                ..ReflectorConfig::default()
            },
            resync_period: None,
        }
    }

    /// The informer's store keys, as text.
    fn keys(informer: &SharedInformer<ConfigMap>) -> Vec<String> {
        informer.store().keys().iter().map(ToString::to_string).collect()
    }

    fn informer(api: &FakeApi, config: InformerConfig) -> (SharedInformer<ConfigMap>, ResourceMetrics) {
        let metrics = ResourceMetrics::unregistered("configmaps").expect("metrics register in a fresh registry");
        (SharedInformer::new(api.clone(), config, metrics.clone()), metrics)
    }

    #[tokio::test]
    async fn the_first_list_reaches_handlers_as_adds_and_marks_the_informer_synced() {
        let api = FakeApi::default();
        api.push_list(vec![config_map("a", 1), config_map("b", 2)], "5", Some("page-2"));
        api.push_list(vec![config_map("c", 3)], "5", None);
        let (informer, metrics) = informer(&api, quick_config());
        let recorder = Recorder::default();
        let registration = informer.add_handler(recorder.clone());
        assert!(!informer.has_synced());
        let shutdown = CancellationToken::new();
        informer.start(shutdown.clone());
        assert!(informer.wait_for_sync().await);
        assert_eq!(recorder.wait_for(3).await, ["add a@1", "add b@2", "add c@3"]);
        eventually("the handler to have synced", || registration.has_synced()).await;
        assert_eq!(keys(&informer), ["default/a", "default/b", "default/c"]);
        assert_eq!(metrics.lists.get(), 1);
        eventually("the watch to start from the list's resourceVersion", || api.watch_calls() == ["5"]).await;
        shutdown.cancel();
    }

    #[tokio::test]
    async fn relist_after_410_emits_deletes_for_vanished_objects() {
        let api = FakeApi::default();
        api.push_list(vec![config_map("a", 1), config_map("b", 2), config_map("c", 3)], "3", None);
        let feed = api.push_watch();
        api.push_list(vec![config_map("a", 4), config_map("b", 5), config_map("d", 6)], "6", None);
        let (informer, metrics) = informer(&api, quick_config());
        let recorder = Recorder::default();
        informer.add_handler(recorder.clone());
        let shutdown = CancellationToken::new();
        informer.start(shutdown.clone());
        assert!(informer.wait_for_sync().await);
        send(&feed, WatchEvent::Modified(config_map("a", 4)));
        send(&feed, expired());
        let lines = recorder.wait_for(7).await;
        assert_eq!(lines[..4], ["add a@1", "add b@2", "add c@3", "update a@1->a@4"]);
        // After the relist: a is unchanged (same resourceVersion), so not reported again.
        let mut relisted = lines[4..].to_vec();
        relisted.sort();
        assert_eq!(relisted, ["add d@6", "delete-unknown c@3", "update b@2->b@5"]);
        assert_eq!(keys(&informer), ["default/a", "default/b", "default/d"]);
        assert_eq!(metrics.relists.get(), 1);
        assert_eq!(metrics.lists.get(), 2);
        eventually("the watch to start from the relist", || api.watch_calls() == ["3", "6"]).await;
        shutdown.cancel();
    }

    #[tokio::test]
    async fn http_410_when_starting_a_watch_also_relists() {
        let api = FakeApi::default();
        api.push_list(vec![config_map("a", 1)], "1", None);
        api.push_watch_error(rkube_client::Error::Gone(Box::default()));
        api.push_list(vec![], "9", None);
        let (informer, metrics) = informer(&api, quick_config());
        let recorder = Recorder::default();
        informer.add_handler(recorder.clone());
        let shutdown = CancellationToken::new();
        informer.start(shutdown.clone());
        assert_eq!(recorder.wait_for(2).await, ["add a@1", "delete-unknown a@1"]);
        assert_eq!(metrics.relists.get(), 1);
        assert!(informer.store().is_empty());
        shutdown.cancel();
    }

    #[tokio::test]
    async fn events_for_one_object_reach_every_handler_in_resource_version_order() {
        let api = FakeApi::default();
        api.push_list(vec![], "1", None);
        let feed = api.push_watch();
        let (informer, _) = informer(&api, quick_config());
        let recorders = [Recorder::default(), Recorder::default(), Recorder::default()];
        for recorder in &recorders {
            informer.add_handler(recorder.clone());
        }
        let shutdown = CancellationToken::new();
        informer.start(shutdown.clone());
        assert!(informer.wait_for_sync().await);
        send(&feed, WatchEvent::Added(config_map("a", 2)));
        for rv in 3..200 {
            send(&feed, WatchEvent::Modified(config_map("a", rv)));
        }
        let mut expected = vec!["add a@2".to_string()];
        expected.extend((3..200).map(|rv| format!("update a@{}->a@{rv}", rv - 1)));
        for recorder in &recorders {
            assert_eq!(recorder.wait_for(expected.len()).await, expected);
        }
        // One reflector for three handlers.
        assert_eq!(api.list_calls().len(), 1);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_handler_added_late_first_gets_adds_for_everything_in_the_store() {
        let api = FakeApi::default();
        api.push_list(vec![config_map("a", 1), config_map("b", 2)], "2", None);
        let feed = api.push_watch();
        let (informer, _) = informer(&api, quick_config());
        let shutdown = CancellationToken::new();
        informer.start(shutdown.clone());
        assert!(informer.wait_for_sync().await);
        send(&feed, WatchEvent::Deleted(config_map("a", 3)));
        send(&feed, WatchEvent::Added(config_map("c", 4)));
        eventually("the watch events to be applied", || keys(&informer) == ["default/b", "default/c"]).await;
        let late = Recorder::default();
        let registration = informer.add_handler(late.clone());
        eventually("the late handler to have synced", || registration.has_synced()).await;
        send(&feed, WatchEvent::Modified(config_map("b", 5)));
        assert_eq!(late.wait_for(3).await, ["add b@2", "add c@4", "update b@2->b@5"]);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn resync_redelivers_every_object_as_an_update_with_old_equal_new() {
        let api = FakeApi::default();
        api.push_list(vec![config_map("a", 1)], "1", None);
        let config = InformerConfig { resync_period: Some(Duration::from_millis(50)), ..quick_config() };
        let (informer, _) = informer(&api, config);
        let recorder = Recorder::default();
        informer.add_handler(recorder.clone());
        let shutdown = CancellationToken::new();
        informer.start(shutdown.clone());
        assert_eq!(recorder.wait_for(3).await[..3], ["add a@1", "update a@1->a@1", "update a@1->a@1"]);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_panicking_handler_keeps_receiving_the_next_events() {
        let api = FakeApi::default();
        api.push_list(vec![], "1", None);
        let feed = api.push_watch();
        let (informer, _) = informer(&api, quick_config());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler = {
            let seen = Arc::clone(&seen);
            HandlerFns::new().on_add(move |object: &Arc<ConfigMap>| {
                let name = object.name_any();
                assert_ne!(name, "bad", "this handler panics on purpose");
                seen.lock().unwrap_or_else(PoisonError::into_inner).push(name);
            })
        };
        informer.add_handler(handler);
        let shutdown = CancellationToken::new();
        informer.start(shutdown.clone());
        assert!(informer.wait_for_sync().await);
        send(&feed, WatchEvent::Added(config_map("bad", 2)));
        send(&feed, WatchEvent::Added(config_map("good", 3)));
        eventually("the event after the panic", || seen.lock().unwrap_or_else(PoisonError::into_inner).len() == 1)
            .await;
        assert_eq!(*seen.lock().unwrap_or_else(PoisonError::into_inner), ["good"]);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn wait_for_sync_says_false_when_the_informer_stops_before_its_first_list() {
        let api = FakeApi::default();
        let (informer, _) = informer(&api, quick_config());
        let shutdown = CancellationToken::new();
        informer.start(shutdown.clone());
        eventually("a few failed lists", || api.list_calls().len() >= 3).await;
        shutdown.cancel();
        assert!(!informer.wait_for_sync().await);
        assert!(!informer.has_synced());
    }

    #[tokio::test]
    async fn a_removed_handler_is_told_nothing_more() {
        let api = FakeApi::default();
        api.push_list(vec![config_map("a", 1)], "1", None);
        let feed = api.push_watch();
        let (informer, _) = informer(&api, quick_config());
        let (kept, removed) = (Recorder::default(), Recorder::default());
        informer.add_handler(kept.clone());
        let registration = informer.add_handler(removed.clone());
        let shutdown = CancellationToken::new();
        informer.start(shutdown.clone());
        assert_eq!(removed.wait_for(1).await, ["add a@1"]);
        informer.remove_handler(&registration);
        send(&feed, WatchEvent::Modified(config_map("a", 2)));
        assert_eq!(kept.wait_for(2).await, ["add a@1", "update a@1->a@2"]);
        assert_eq!(removed.lines(), ["add a@1"]);
        shutdown.cancel();
    }

    #[test]
    fn handlers_added_outside_a_runtime_are_called_once_the_informer_runs() {
        let api = FakeApi::default();
        api.push_list(vec![config_map("a", 1)], "1", None);
        let (informer, _) = informer(&api, quick_config());
        let before = Recorder::default();
        informer.add_handler(before.clone());
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
        let shutdown = CancellationToken::new();
        runtime.block_on(async {
            informer.start(shutdown.clone());
            assert_eq!(before.wait_for(1).await, ["add a@1"]);
        });
        let after = Recorder::default();
        let registration = std::thread::scope(|scope| {
            scope.spawn(|| informer.add_handler(after.clone())).join().expect("the thread did not panic")
        });
        runtime.block_on(async {
            assert_eq!(after.wait_for(1).await, ["add a@1"]);
            eventually("the late handler to have synced", || registration.has_synced()).await;
        });
        shutdown.cancel();
    }

    #[tokio::test]
    async fn starting_twice_runs_one_reflector() {
        let api = FakeApi::default();
        api.push_list(vec![], "1", None);
        let (informer, metrics) = informer(&api, quick_config());
        let shutdown = CancellationToken::new();
        informer.start(shutdown.clone());
        informer.start(shutdown.clone());
        informer.run(shutdown.clone()).await;
        assert!(informer.wait_for_sync().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(metrics.lists.get(), 1);
        assert_eq!(api.watch_calls(), ["1"]);
        shutdown.cancel();
    }
}
