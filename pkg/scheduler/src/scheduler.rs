//! The scheduler itself: informers feed the cache and the queue; one loop takes a pod at a time,
//! finds it a node, assumes it there and hands it to a background binding.
//!
//! One scheduling cycle, as in Kubernetes:
//! 1. [`SchedulingQueue::pop`] hands out the next pending pod (highest priority, oldest first);
//! 2. the pod is re-read from the informer's store (level-triggered: if it was deleted, bound by
//!    someone else or handed to another scheduler meanwhile, it is dropped);
//! 3. the loop's [`Snapshot`] of the nodes is brought up to date (only nodes changed since the
//!    last cycle are looked at), then [`Framework::find_node_among`] filters nodes from where the
//!    last cycle stopped until enough are feasible ([`num_feasible_nodes_to_find`]), scores those
//!    and picks the best, ties at random; the cache's lock is not held meanwhile;
//! 4. found: the pod is **assumed** onto that node in the cache (so the next cycle, which starts
//!    at once, already sees the resources used) and a binding task takes it over; at most
//!    `max_concurrent_binds` bindings are in flight, and a cycle waits for a free slot before it
//!    starts (Kubernetes' scheduling cycle vs binding cycle). A failed binding forgets the
//!    assumption and requeues the pod with back-off;
//! 5. not found: the pod goes to the unschedulable queue, and gets `PodScheduled=False` plus a
//!    `FailedScheduling` Event.
//!
//! Only one cycle runs at a time, so two pods never race for the last room on a node inside
//! one scheduler. Two schedulers racing for one pod are kept apart by leader election, and even
//! without it by the binding subresource, which binds a pod once.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use rand::SeedableRng;
use rkube_informer::ObjectKey;
use rkube_informer::handler::HandlerFns;
use rkube_informer::store::Store;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::binder::{Binder, EventRecorder};
use crate::cache::{Cache, Snapshot};
use crate::framework::{Framework, PodInfo, Search, num_feasible_nodes_to_find};
use crate::metrics::SchedulerMetrics;
use crate::plugins::volume_binding::{self, VolumeFacts};
use crate::queue::SchedulingQueue;

/// What the informer handlers, the scheduling loop and the binding tasks share: the cache of
/// nodes and assumed pods, and the queue.
pub(crate) struct SchedulingState {
    pub(crate) scheduler_name: String,
    pub(crate) cache: Mutex<Cache>,
    pub(crate) queue: SchedulingQueue,
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

fn finished(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// What of a node matters for scheduling (not heartbeats).
fn node_fingerprint(node: &Node) -> impl PartialEq + use<> {
    let status = node.status.as_ref();
    let conditions: Vec<(String, String)> = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .map(|c| (c.type_.clone(), c.status.clone()))
        .collect();
    (
        node.metadata.labels.clone(),
        node.spec.clone(),
        status.and_then(|s| s.allocatable.clone()),
        status.and_then(|s| s.capacity.clone()),
        conditions,
    )
}

impl SchedulingState {
    pub(crate) fn new(scheduler_name: &str, queue: SchedulingQueue) -> SchedulingState {
        SchedulingState { scheduler_name: scheduler_name.to_string(), cache: Mutex::new(Cache::default()), queue }
    }

    pub(crate) fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this scheduler should place `pod`: unbound, not being deleted, and naming us.
    pub(crate) fn responsible_for(&self, pod: &Pod) -> bool {
        let name = pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()).unwrap_or("default-scheduler");
        node_name(pod).is_none()
            && pod.metadata.deletion_timestamp.is_none()
            && !finished(pod)
            && name == self.scheduler_name
    }

    /// A pod was added (`old == None`) or updated.
    pub(crate) fn on_pod(&self, old: Option<&Pod>, pod: &Arc<Pod>) {
        let key = ObjectKey::of(pod.as_ref());
        if node_name(pod).is_some() {
            self.queue.delete(&key);
            let freed = finished(pod) && !old.is_some_and(finished);
            self.cache().update_pod(Arc::clone(pod));
            if freed {
                self.queue.move_all_to_active();
            }
            return;
        }
        if !self.responsible_for(pod) {
            self.queue.delete(&key);
            return;
        }
        if self.cache().is_assumed(&key) {
            return; // our binding is in flight; the watch has not caught up yet
        }
        let changed = old.is_none_or(|old| old.spec != pod.spec || old.metadata.labels != pod.metadata.labels);
        self.queue.add(&key, priority(pod), changed);
    }

    /// A pod was deleted: it leaves the queue, and if it used a node, that room may fit others.
    pub(crate) fn on_pod_deleted(&self, pod: &Pod) {
        let key = ObjectKey::of(pod);
        self.queue.delete(&key);
        let was_on_a_node = {
            let mut cache = self.cache();
            let was = cache.node_of(&key).is_some();
            cache.remove_pod(&key);
            was
        };
        if was_on_a_node {
            self.queue.move_all_to_active();
        }
    }

    /// A node was added (`old == None`), updated or deleted (`node == None`).
    pub(crate) fn on_node(&self, old: Option<&Node>, node: Option<&Arc<Node>>) {
        match node {
            Some(node) => {
                self.cache().set_node(Arc::clone(node));
                if old.is_none_or(|old| node_fingerprint(old) != node_fingerprint(node)) {
                    self.queue.move_all_to_active();
                }
            }
            None => {
                if let Some(old) = old {
                    self.cache().remove_node(old.metadata.name.as_deref().unwrap_or_default());
                }
            }
        }
    }
}

/// Registers the pod and node handlers that feed `shared`.
pub(crate) fn register_handlers(
    shared: &Arc<SchedulingState>,
    pods: &rkube_informer::informer::SharedInformer<Pod>,
    nodes: &rkube_informer::informer::SharedInformer<Node>,
) {
    let (on_add, on_update, on_delete) = (Arc::clone(shared), Arc::clone(shared), Arc::clone(shared));
    pods.add_handler(
        HandlerFns::new()
            .on_add(move |pod: &Arc<Pod>| on_add.on_pod(None, pod))
            .on_update(move |old: &Arc<Pod>, new: &Arc<Pod>| on_update.on_pod(Some(old), new))
            .on_delete(move |deleted| on_delete.on_pod_deleted(deleted.object())),
    );
    let (on_add, on_update, on_delete) = (Arc::clone(shared), Arc::clone(shared), Arc::clone(shared));
    nodes.add_handler(
        HandlerFns::new()
            .on_add(move |node: &Arc<Node>| on_add.on_node(None, Some(node)))
            .on_update(move |old: &Arc<Node>, new: &Arc<Node>| on_update.on_node(Some(old), Some(new)))
            .on_delete(move |deleted| on_delete.on_node(Some(deleted.object()), None)),
    );
}

/// Registers handlers on the claim, volume and StorageClass informers: a change may make a
/// pod waiting for its volumes schedulable.
pub(crate) fn register_volume_handlers(
    shared: &Arc<SchedulingState>,
    claims: &rkube_informer::informer::SharedInformer<PersistentVolumeClaim>,
    volumes: &rkube_informer::informer::SharedInformer<PersistentVolume>,
    classes: &rkube_informer::informer::SharedInformer<StorageClass>,
) {
    let (a, b) = (Arc::clone(shared), Arc::clone(shared));
    claims.add_handler(
        HandlerFns::new().on_add(move |_: &Arc<PersistentVolumeClaim>| a.queue.move_all_to_active()).on_update(
            move |_: &Arc<PersistentVolumeClaim>, _: &Arc<PersistentVolumeClaim>| b.queue.move_all_to_active(),
        ),
    );
    let (a, b) = (Arc::clone(shared), Arc::clone(shared));
    volumes.add_handler(
        HandlerFns::new()
            .on_add(move |_: &Arc<PersistentVolume>| a.queue.move_all_to_active())
            .on_update(move |_: &Arc<PersistentVolume>, _: &Arc<PersistentVolume>| b.queue.move_all_to_active()),
    );
    let a = Arc::clone(shared);
    classes.add_handler(HandlerFns::new().on_add(move |_: &Arc<StorageClass>| a.queue.move_all_to_active()));
}

/// The claims, volumes and StorageClasses the VolumeBinding filter reads.
pub(crate) struct VolumeStores {
    pub(crate) claims: Store<PersistentVolumeClaim>,
    pub(crate) volumes: Store<PersistentVolume>,
    pub(crate) classes: Store<StorageClass>,
}

impl VolumeStores {
    fn facts(&self, pod: &Pod) -> VolumeFacts {
        volume_binding::facts(
            pod,
            |namespace, name| self.claims.get(&ObjectKey::new(Some(namespace), name)),
            |name| self.volumes.get(&ObjectKey::new(None, name)),
            |name| self.classes.get(&ObjectKey::new(None, name)),
        )
    }
}

/// Plugin durations are recorded for one cycle in this many (Kubernetes samples 10%).
const PLUGIN_TIMING_EVERY: u64 = 10;

/// How the loop searches the nodes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SearchConfig {
    /// `--percentage-of-nodes-to-score` (0: adaptive).
    pub(crate) percentage_of_nodes_to_score: u32,
    /// Threads that may filter nodes at once.
    pub(crate) parallelism: usize,
}

/// The scheduling loop's tools, and what it carries from one cycle to the next.
pub(crate) struct Loop {
    pub(crate) shared: Arc<SchedulingState>,
    pub(crate) pods: Store<Pod>,
    pub(crate) volumes: VolumeStores,
    pub(crate) framework: Framework,
    pub(crate) binder: Binder,
    pub(crate) events: EventRecorder,
    pub(crate) metrics: SchedulerMetrics,
    pub(crate) search: SearchConfig,
    /// One permit per binding in flight.
    pub(crate) binds: Arc<Semaphore>,
    /// The nodes as of the current cycle.
    pub(crate) snapshot: Snapshot,
    /// Where the next cycle starts filtering (Kubernetes' `nextStartNodeIndex`).
    pub(crate) next_start: usize,
    /// Cycles run so far.
    pub(crate) cycles: u64,
}

impl Loop {
    /// Runs scheduling cycles until `stop` is cancelled.
    pub(crate) async fn run(mut self, stop: CancellationToken) {
        let mut rng = rand::rngs::StdRng::from_os_rng();
        loop {
            // A free binding slot first: with every slot taken, placing more pods would only
            // grow the assumed set while the apiserver is the bottleneck.
            let permit = tokio::select! {
                permit = Arc::clone(&self.binds).acquire_owned() => permit.ok(),
                _ = stop.cancelled() => None,
            };
            let Some(permit) = permit else { break };
            let popped = tokio::select! {
                popped = self.shared.queue.pop() => popped,
                _ = stop.cancelled() => None,
            };
            let Some(popped) = popped else { break };
            self.schedule_one(&popped.key, popped.attempts, permit, &mut rng, &stop);
        }
    }

    /// One scheduling cycle (see the module docs). Never fails: every outcome ends in the
    /// queue's `done`, `unschedulable` or `delete`. `permit` goes with the binding, if any.
    fn schedule_one(
        &mut self,
        key: &ObjectKey,
        attempts: u32,
        permit: OwnedSemaphorePermit,
        rng: &mut rand::rngs::StdRng,
        stop: &CancellationToken,
    ) {
        let shared = &self.shared;
        let Some(pod) = self.pods.get(key) else {
            shared.queue.delete(key);
            return;
        };
        if !shared.responsible_for(&pod) || shared.cache().is_assumed(key) {
            shared.queue.delete(key);
            return;
        }
        let started = Instant::now();
        let mut info = PodInfo::new(Arc::clone(&pod));
        info.volumes = self.volumes.facts(&pod);
        shared.cache().update_snapshot(&mut self.snapshot);
        let nodes = &self.snapshot;
        let search = Search {
            start: self.next_start,
            to_find: num_feasible_nodes_to_find(self.search.percentage_of_nodes_to_score, nodes.len()),
            parallelism: self.search.parallelism,
            timed: self.cycles.is_multiple_of(PLUGIN_TIMING_EVERY),
        };
        self.cycles += 1;
        let decision = self.framework.find_node_among(&info, nodes, search, rng);
        if let Ok(placement) = &decision {
            self.next_start = (self.next_start + placement.examined) % nodes.len().max(1);
            shared.cache().assume(info, &placement.node);
        }
        match decision.map(|placement| placement.node) {
            Ok(node) => {
                shared.queue.done(key);
                tracing::debug!(pod = %key, node, "assumed; binding");
                let task = BindTask {
                    shared: Arc::clone(shared),
                    binder: self.binder.clone(),
                    events: self.events.clone(),
                    metrics: self.metrics.clone(),
                };
                let (key, stop) = (key.clone(), stop.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = task.bind(&key, pod, &node, attempts, started) => {}
                        _ = stop.cancelled() => {}
                    }
                    drop(permit);
                });
            }
            Err(fit) => {
                self.metrics.attempts.with_label_values(&["unschedulable"]).inc();
                shared.queue.unschedulable(key);
                let message = fit.to_string();
                tracing::info!(pod = %key, %message, "unschedulable");
                self.events.record(&pod, "Warning", "FailedScheduling", message.clone());
                let binder = self.binder.clone();
                let key = key.clone();
                tokio::spawn(async move {
                    if let Err(error) = binder.mark_unschedulable(&pod, &message).await
                        && !error.is_not_found()
                    {
                        tracing::warn!(pod = %key, %error, "cannot set the PodScheduled condition");
                    }
                });
            }
        }
        self.metrics.cycle_duration.observe(started.elapsed().as_secs_f64());
    }
}

/// What a binding task needs.
struct BindTask {
    shared: Arc<SchedulingState>,
    binder: Binder,
    events: EventRecorder,
    metrics: SchedulerMetrics,
}

impl BindTask {
    async fn bind(self, key: &ObjectKey, pod: Arc<Pod>, node: &str, attempts: u32, started: Instant) {
        let outcome = self.binder.bind(&pod, node).await;
        self.finish(key, &pod, node, attempts, started, outcome);
    }

    /// Acts on a binding's outcome: counted and reported when accepted; when refused, the
    /// assumption is forgotten (the node's room is free again) and the pod is requeued with
    /// back-off, unless it is gone.
    fn finish(
        &self,
        key: &ObjectKey,
        pod: &Arc<Pod>,
        node: &str,
        attempts: u32,
        started: Instant,
        outcome: rkube_client::Result<()>,
    ) {
        match outcome {
            Ok(()) => {
                self.metrics.attempts.with_label_values(&["scheduled"]).inc();
                self.metrics.e2e_duration.observe(started.elapsed().as_secs_f64());
                tracing::debug!(pod = %key, node, "bound");
                self.events.record(pod, "Normal", "Scheduled", format!("Successfully assigned {key} to {node}"));
            }
            Err(error) => {
                self.metrics.attempts.with_label_values(&["error"]).inc();
                self.shared.cache().forget(key);
                // Room was freed on `node`: others waiting may fit now.
                self.shared.queue.move_all_to_active();
                if error.is_not_found() {
                    tracing::debug!(pod = %key, "pod deleted before it was bound");
                    return;
                }
                tracing::info!(pod = %key, node, %error, "binding failed; will retry");
                self.events.record(pod, "Warning", "FailedScheduling", format!("Binding rejected: {error}"));
                // If someone else bound it (409), the watch shows it bound and the next pop
                // drops it; otherwise it is tried again after its back-off.
                self.shared.queue.requeue_after_error(key, priority(pod), attempts);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of the pod `default/<name>`.
    fn key(name: &str) -> ObjectKey {
        ObjectKey::new(Some("default"), name)
    }
    use serde_json::{Value, json};

    fn shared() -> SchedulingState {
        SchedulingState::new("default-scheduler", SchedulingQueue::new(None))
    }

    fn pod(value: Value) -> Arc<Pod> {
        let mut value = value;
        value["metadata"]["namespace"] = json!("default");
        if value["spec"]["containers"].is_null() {
            value["spec"]["containers"] = json!([{"name": "c"}]);
        }
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn node(value: Value) -> Arc<Node> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    #[test]
    fn only_unbound_pods_naming_this_scheduler_are_queued() {
        let s = shared();
        s.on_pod(None, &pod(json!({"metadata": {"name": "ours"}})));
        s.on_pod(None, &pod(json!({"metadata": {"name": "other"}, "spec": {"schedulerName": "other"}})));
        s.on_pod(None, &pod(json!({"metadata": {"name": "bound"}, "spec": {"nodeName": "n1"}})));
        s.on_pod(None, &pod(json!({"metadata": {"name": "going", "deletionTimestamp": "2026-01-01T00:00:00Z"}})));
        assert!(s.queue.contains(&key("ours")));
        assert!(!s.queue.contains(&key("other")));
        assert!(!s.queue.contains(&key("bound")));
        assert!(!s.queue.contains(&key("going")));
        assert_eq!(s.cache().node_of(&key("bound")), Some("n1"), "bound pods are counted in the cache");
    }

    #[test]
    fn a_pod_bound_elsewhere_leaves_the_queue_and_a_deleted_bound_pod_frees_room() {
        let s = shared();
        let pending = pod(json!({"metadata": {"name": "a"}}));
        s.on_pod(None, &pending);
        let bound = pod(json!({"metadata": {"name": "a"}, "spec": {"nodeName": "n1"}}));
        s.on_pod(Some(&pending), &bound);
        assert!(!s.queue.contains(&key("a")));
        assert_eq!(s.cache().node_of(&key("a")), Some("n1"));
        s.on_pod_deleted(&bound);
        assert_eq!(s.cache().node_of(&key("a")), None);
    }

    #[test]
    fn node_heartbeats_do_not_wake_unschedulable_pods_but_real_changes_do() {
        let s = shared();
        s.on_pod(None, &pod(json!({"metadata": {"name": "a"}})));
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let popped = rt.block_on(s.queue.pop()).unwrap();
        s.queue.unschedulable(&popped.key);
        assert_eq!(s.queue.lengths(), (0, 0, 1));
        let beat = |time: &str, ready: &str| {
            node(json!({"metadata": {"name": "n1"}, "status": {"conditions": [
                {"type": "Ready", "status": ready, "lastHeartbeatTime": time}]}}))
        };
        let old = beat("2026-01-01T00:00:00Z", "True");
        s.on_node(None, Some(&old));
        // The add itself moved the pod; park it again.
        let popped = rt.block_on(s.queue.pop()).unwrap();
        s.queue.unschedulable(&popped.key);
        let heartbeat = beat("2026-01-01T00:00:10Z", "True");
        s.on_node(Some(&old), Some(&heartbeat));
        assert_eq!(s.queue.lengths(), (0, 0, 1), "a heartbeat changes nothing that matters");
        let not_ready = beat("2026-01-01T00:00:20Z", "False");
        s.on_node(Some(&heartbeat), Some(&not_ready));
        assert_eq!(s.queue.lengths().2, 0, "a condition change retries unschedulable pods");
    }

    #[test]
    fn status_only_updates_do_not_retry_an_unschedulable_pod() {
        let s = shared();
        let before = pod(json!({"metadata": {"name": "a"}}));
        s.on_pod(None, &before);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let popped = rt.block_on(s.queue.pop()).unwrap();
        s.queue.unschedulable(&popped.key);
        let with_condition = pod(json!({"metadata": {"name": "a"}, "status": {"conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}}));
        s.on_pod(Some(&before), &with_condition);
        assert_eq!(s.queue.lengths(), (0, 0, 1));
        let relabelled = pod(json!({"metadata": {"name": "a", "labels": {"x": "y"}}}));
        s.on_pod(Some(&with_condition), &relabelled);
        assert_eq!(s.queue.lengths().2, 0, "a changed pod may fit now");
    }

    /// A scheduling loop over one Ready node `n1` (4 CPUs, 10 pods), whose bindings go to a
    /// port where nothing listens, so every binding fails at once (connection refused).
    fn loop_with_failing_binds(pods: &rkube_informer::store::Writer<Pod>) -> Loop {
        let state = Arc::new(shared());
        state.on_node(None, Some(&Arc::new(crate::framework::testing::node(json!({"metadata": {"name": "n1"}})))));
        let nowhere = rkube_client::Config::new("http://127.0.0.1:1".parse().unwrap());
        let client = rkube_client::Client::new(nowhere).unwrap();
        let metrics = SchedulerMetrics::register(&prometheus::Registry::new()).unwrap();
        let stop = CancellationToken::new();
        Loop {
            shared: state,
            pods: pods.store(),
            volumes: VolumeStores {
                claims: rkube_informer::store::Writer::default().store(),
                volumes: rkube_informer::store::Writer::default().store(),
                classes: rkube_informer::store::Writer::default().store(),
            },
            framework: Framework {
                filters: crate::plugins::default_filters(),
                scores: crate::plugins::default_scores(crate::ScoreWeights::default()),
                plugin_duration: None,
            },
            binder: Binder::new(client.clone(), metrics.clone()),
            events: EventRecorder::start(client, "default-scheduler", metrics.clone(), stop),
            metrics,
            search: SearchConfig { percentage_of_nodes_to_score: 0, parallelism: 1 },
            binds: Arc::new(Semaphore::new(2)),
            snapshot: Snapshot::default(),
            next_start: 0,
            cycles: 0,
        }
    }

    #[tokio::test]
    async fn a_failed_bind_frees_the_assumed_room_and_requeues_the_pod_with_back_off() {
        let mut pods = rkube_informer::store::Writer::<Pod>::default();
        let pending = pod(json!({"metadata": {"name": "a"}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}));
        pods.apply(Arc::clone(&pending));
        let mut scheduling = loop_with_failing_binds(&pods);
        scheduling.shared.on_pod(None, &pending);
        let popped = scheduling.shared.queue.pop().await.unwrap();
        let permit = Arc::clone(&scheduling.binds).acquire_owned().await.unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        scheduling.schedule_one(&popped.key, popped.attempts, permit, &mut rng, &CancellationToken::new());

        // The cycle is over before the binding is: the pod is assumed on n1 and holds a slot.
        {
            let cache = scheduling.shared.cache();
            assert!(cache.is_assumed(&key("a")));
            assert_eq!(cache.node("n1").unwrap().facts.requested.milli_cpu, 1000);
        }
        assert_eq!(scheduling.binds.available_permits(), 1);

        // Wait for the binding task to give its slot back: it has failed by then.
        let all = scheduling.binds.acquire_many(2).await.unwrap();
        drop(all);
        let cache = scheduling.shared.cache();
        assert!(!cache.is_assumed(&key("a")), "the assumption is forgotten");
        assert_eq!(cache.node("n1").unwrap().facts.requested.milli_cpu, 0, "the room on n1 is free again");
        assert_eq!(cache.node("n1").unwrap().facts.requested.pods, 0);
        drop(cache);
        assert!(scheduling.shared.queue.contains(&key("a")));
        assert_eq!(scheduling.shared.queue.lengths(), (0, 1, 0), "the pod waits out its back-off");
        assert_eq!(scheduling.metrics.attempts.with_label_values(&["error"]).get(), 1);
        assert_eq!(scheduling.metrics.api_calls.with_label_values(&["bind"]).get(), 1, "one API call per placement");
    }

    #[tokio::test]
    async fn a_cycle_reads_a_node_change_through_the_snapshot() {
        let mut pods = rkube_informer::store::Writer::<Pod>::default();
        let big = pod(json!({"metadata": {"name": "big"}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": "6"}}}]}}));
        pods.apply(Arc::clone(&big));
        let mut scheduling = loop_with_failing_binds(&pods);
        scheduling.shared.on_pod(None, &big);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let popped = scheduling.shared.queue.pop().await.unwrap();
        let permit = Arc::clone(&scheduling.binds).acquire_owned().await.unwrap();
        scheduling.schedule_one(&popped.key, popped.attempts, permit, &mut rng, &CancellationToken::new());
        assert_eq!(scheduling.shared.queue.lengths(), (0, 0, 1), "6 CPUs fit nowhere yet");

        // n1 grows to 8 CPUs: the move request retries the pod, and the cycle sees the change.
        let grown = Arc::new(crate::framework::testing::node(
            json!({"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "8", "memory": "8Gi", "pods": "10"}}}),
        ));
        let old = scheduling.snapshot.get("n1").and_then(|info| info.node.clone()).unwrap();
        scheduling.shared.on_node(Some(&old), Some(&grown));
        let popped = scheduling.shared.queue.pop().await.unwrap();
        let permit = Arc::clone(&scheduling.binds).acquire_owned().await.unwrap();
        scheduling.schedule_one(&popped.key, popped.attempts, permit, &mut rng, &CancellationToken::new());
        assert_eq!(scheduling.snapshot.get("n1").unwrap().facts.allocatable.milli_cpu, 8000);
        assert_eq!(scheduling.shared.cache().node_of(&key("big")), Some("n1"), "assumed on the grown node");
    }
}
