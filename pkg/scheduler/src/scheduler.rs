//! The scheduler itself: informers feed the cache and the queue; one loop takes a pod at a time,
//! finds it a node, assumes it there and hands it to a background binding.
//!
//! One scheduling cycle, as in Kubernetes:
//! 1. [`SchedulingQueue::pop`] hands out the next pending pod (highest priority, oldest first);
//! 2. the pod is re-read from the informer's store (level-triggered: if it was deleted, bound by
//!    someone else or handed to another scheduler meanwhile, it is dropped);
//! 3. [`Framework::find_node`] runs the filters on every node in the [`Cache`], scores the
//!    feasible ones and picks the best, ties at random;
//! 4. found: the pod is **assumed** onto that node in the cache (so the next cycle, which starts
//!    at once, already sees the resources used) and a task binds it; a failed binding forgets
//!    the assumption and requeues the pod with back-off;
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
use tokio_util::sync::CancellationToken;

use crate::binder::{Binder, EventRecorder};
use crate::cache::Cache;
use crate::framework::{Framework, PodInfo};
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

/// The scheduling loop's tools.
pub(crate) struct Loop {
    pub(crate) shared: Arc<SchedulingState>,
    pub(crate) pods: Store<Pod>,
    pub(crate) volumes: VolumeStores,
    pub(crate) framework: Framework,
    pub(crate) binder: Binder,
    pub(crate) events: EventRecorder,
    pub(crate) metrics: SchedulerMetrics,
}

impl Loop {
    /// Runs scheduling cycles until `stop` is cancelled.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let mut rng = rand::rngs::StdRng::from_os_rng();
        loop {
            let popped = tokio::select! {
                popped = self.shared.queue.pop() => popped,
                _ = stop.cancelled() => None,
            };
            let Some(popped) = popped else { break };
            self.schedule_one(&popped.key, popped.attempts, &mut rng, &stop);
        }
    }

    /// One scheduling cycle (see the module docs). Never fails: every outcome ends in the
    /// queue's `done`, `unschedulable` or `delete`.
    fn schedule_one(&self, key: &ObjectKey, attempts: u32, rng: &mut rand::rngs::StdRng, stop: &CancellationToken) {
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
        let decision = {
            let mut cache = shared.cache();
            let decision = self.framework.find_node(&info, cache.candidate_nodes(), rng);
            if let Ok(node) = &decision {
                cache.assume(info, node);
            }
            decision
        };
        match decision {
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
        match self.binder.bind(&pod, node).await {
            Ok(()) => {
                self.metrics.attempts.with_label_values(&["scheduled"]).inc();
                self.metrics.e2e_duration.observe(started.elapsed().as_secs_f64());
                tracing::debug!(pod = %key, node, "bound");
                self.events.record(&pod, "Normal", "Scheduled", format!("Successfully assigned {key} to {node}"));
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
                self.events.record(&pod, "Warning", "FailedScheduling", format!("Binding rejected: {error}"));
                // If someone else bound it (409), the watch shows it bound and the next pop
                // drops it; otherwise it is tried again after its back-off.
                self.shared.queue.requeue_after_error(key, priority(&pod), attempts);
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
}
