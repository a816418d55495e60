//! The ReplicaSet controller: keeps `spec.replicas` active pods matching each ReplicaSet's
//! selector.
//!
//! The loop, for one ReplicaSet key (an [`ObjectKey`]), judging from the informers' caches:
//! 1. **claim**: among the active pods of the namespace, keep those it owns and still match,
//!    *adopt* orphans that match (add a controller reference) and *release* owned pods that no
//!    longer match (remove it) — see [`crate::controller_ref`];
//! 2. **manage**: only when the [`Expectations`] for the key are satisfied (the cache has seen
//!    every create and delete of the last sync), create the missing pods from the template
//!    (generateName `<rs>-`) in slow-start batches of 1, 2, 4, …, stopping at the first batch
//!    that fails, or delete the surplus in [`podutil::deletion_order`]. While they are unmet,
//!    the sync returns [`Action::requeue`] for the moment they expire: the events they wait
//!    for may never come (a create cut off mid-request may never have happened), and nothing
//!    else would wake the key;
//! 3. **status**: write `replicas`, `fullyLabeledReplicas`, `readyReplicas`,
//!    `availableReplicas` (ready for `minReadySeconds`), `observedGeneration` and a
//!    `ReplicaFailure` condition (when a create or delete was refused) through the status
//!    subresource, only when they changed.
//!
//! Event handlers only enqueue keys and tick off expectations, as in kube-controller-manager's
//! `pkg/controller/replicaset/replica_set.go`. The decisions are pure functions with unit
//! tests below: how many pods to create or delete (`replica_change`), in which batches
//! (`slow_start_batches`), which pods go first (`pods_to_delete`), and when to sync again
//! (`next_action`).
//!
//! What it keeps true (tests in `test/tests/controller_replicaset.rs`): a lagging or
//! reconnecting cache never makes it create or delete twice for the same shortfall; pods of
//! other controllers are never touched; a scale-up cut off by an apiserver outage still
//! reaches its replica count (`a_scale_up_cut_off_by_an_apiserver_outage_still_reaches_its_replica_count`,
//! and below, `a_sync_held_back_by_unmet_expectations_requeues_no_later_than_they_expire`). Not promised: at most 500 pods are created or deleted
//! per sync (kube-controller-manager's `BurstReplicas`); more take more syncs.

use kube_core::ResourceExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::core::v1::{ObjectReference, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use prometheus::Registry;
use rkube_api::selector::LabelSelector;
use rkube_client::events::{EventRecorder, EventType, object_reference};
use rkube_client::{Api, Client, Patch, PatchParams, PostParams};
use rkube_informer::ObjectKey;
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::handler::{Deleted, HandlerFns};
use rkube_informer::store::{NAMESPACE_INDEX, Store};
use rkube_informer::workqueue::{RateLimiter, WorkQueue};
use serde_json::{Value, json};

use crate::Error;
use crate::controller_ref::{adopt_patch, controller_of, new_controller_ref, release_patch};
use crate::expectations::Expectations;
use crate::podcontrol::{PodControl, outcome_unknown};
use crate::podutil::{self, deletion_order, is_active, is_available, is_ready};
use crate::worker::{Action, Syncer};

/// Most pods created or deleted in one sync (kube-controller-manager's `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// A kind this controller keeps replicas of: ReplicaSet (apps/v1), and ReplicationController
/// (v1), the older kind with the same fields and a map for a selector. The controller works on
/// a ReplicaSet view of either ([`Replicated::view`]) and writes through the kind's own API.
pub trait Replicated: rkube_client::ApiResource + k8s_openapi::Resource {
    /// The work queue's name and the Events' source.
    const CONTROLLER: &'static str;
    /// The object as a ReplicaSet (same metadata, replicas, selector, template and status).
    fn view(this: &Arc<Self>) -> Arc<ReplicaSet>;
}

impl Replicated for ReplicaSet {
    const CONTROLLER: &'static str = "replicaset";
    fn view(this: &Arc<Self>) -> Arc<ReplicaSet> {
        Arc::clone(this)
    }
}

impl Replicated for ReplicationController {
    const CONTROLLER: &'static str = "replicationcontroller";
    fn view(this: &Arc<Self>) -> Arc<ReplicaSet> {
        let spec = this.spec.clone().unwrap_or_default();
        let status = this
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|s| serde_json::from_value(s).ok());
        Arc::new(ReplicaSet {
            metadata: this.metadata.clone(),
            spec: ReplicaSetSpec {
                replicas: spec.replicas,
                min_ready_seconds: spec.min_ready_seconds,
                selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: spec.selector,
                    match_expressions: None,
                },
                template: spec.template,
            },
            status,
        })
    }
}

/// The `involvedObject` of an Event about `rs`, a view of an object of kind `K`.
fn reference<K: Replicated>(rs: &ReplicaSet) -> ObjectReference {
    ObjectReference { api_version: Some(K::API_VERSION.into()), kind: Some(K::KIND.into()), ..object_reference(rs) }
}

/// The ReplicaSet controller (and, as `ReplicaSetController<ReplicationController>`, the
/// ReplicationController one). Build it with [`ReplicaSetController::new`], start the factory,
/// then run workers over [`ReplicaSetController::queue`] with [`crate::worker::run_workers`].
pub struct ReplicaSetController<K: Replicated = ReplicaSet> {
    client: Client,
    replica_sets: Store<K>,
    pods: Store<Pod>,
    queue: WorkQueue<ObjectKey>,
    /// Shared with the event handlers, which tick off what they see.
    expectations: Arc<Expectations>,
    /// `SuccessfulCreate`, `SuccessfulDelete`, `FailedCreate` Events on the ReplicaSet.
    events: EventRecorder,
    /// Deletes surplus pods, with expectations and Events.
    pod_control: PodControl,
}

/// The pod event handler: turns a pod's add, update or delete into the keys of the
/// ReplicaSets it concerns, and ticks off their expectations on the way.
struct PodEventHandler<K: Replicated> {
    /// To find a pod's owner, or the ReplicaSets that may adopt it.
    replica_sets: Store<K>,
    queue: WorkQueue<ObjectKey>,
    expectations: Arc<Expectations>,
}

impl<K: Replicated> ReplicaSetController<K> {
    /// Registers handlers on the factory's informers of `K` and Pods (all namespaces) and a
    /// work queue named [`Replicated::CONTROLLER`] (metrics in `registry`).
    pub fn new(factory: &SharedInformerFactory, client: Client, registry: Option<&Registry>) -> Arc<Self> {
        let replica_sets = factory.informer::<K>(None);
        let pods = factory.informer::<Pod>(None);
        let events = EventRecorder::new(client.clone(), &format!("{}-controller", K::CONTROLLER), None);
        let expectations = Arc::new(Expectations::default());
        let controller = Arc::new(ReplicaSetController {
            pod_control: PodControl::new(client.clone(), Arc::clone(&expectations), events.clone()),
            events,
            client,
            replica_sets: replica_sets.store(),
            pods: pods.store(),
            queue: WorkQueue::new(K::CONTROLLER, RateLimiter::default(), registry),
            expectations,
        });
        let (q1, q2, q3) = (controller.queue(), controller.queue(), controller.queue());
        let (e2, e3) = (Arc::clone(&controller.expectations), Arc::clone(&controller.expectations));
        replica_sets.add_handler(
            HandlerFns::new()
                .on_add(move |rs: &Arc<K>| q1.add(ObjectKey::of(rs.as_ref())))
                .on_update(move |old: &Arc<K>, new: &Arc<K>| {
                    if old.meta().uid != new.meta().uid {
                        // Deleted and recreated under the same name: start clean.
                        e2.forget(&ObjectKey::of(old.as_ref()));
                    }
                    q2.add(ObjectKey::of(new.as_ref()));
                })
                .on_delete(move |deleted: Deleted<K>| {
                    let key = ObjectKey::of(deleted.object().as_ref());
                    e3.forget(&key);
                    q3.add(key);
                }),
        );
        let handler = Arc::new(PodEventHandler {
            replica_sets: controller.replica_sets.clone(),
            queue: controller.queue(),
            expectations: Arc::clone(&controller.expectations),
        });
        let (on_add, on_update, on_delete) = (Arc::clone(&handler), Arc::clone(&handler), handler);
        pods.add_handler(
            HandlerFns::new()
                .on_add(move |pod: &Arc<Pod>| on_add.add_pod(pod))
                .on_update(move |old: &Arc<Pod>, new: &Arc<Pod>| on_update.update_pod(old, new))
                .on_delete(move |deleted: Deleted<Pod>| on_delete.delete_pod(deleted.object())),
        );
        controller
    }

    /// The controller's work queue of ReplicaSet keys.
    pub fn queue(&self) -> WorkQueue<ObjectKey> {
        self.queue.clone()
    }
}

impl<K: Replicated> PodEventHandler<K> {
    /// The ReplicaSet `owner` points at, if it is one we know with that uid.
    fn resolve(&self, namespace: &str, owner: &OwnerReference) -> Option<Arc<ReplicaSet>> {
        if owner.kind != K::KIND || owner.api_version != K::API_VERSION {
            return None;
        }
        let rs = K::view(&self.replica_sets.get(&ObjectKey::new(Some(namespace), &owner.name))?);
        (rs.metadata.uid.as_deref() == Some(owner.uid.as_str())).then_some(rs)
    }

    fn owner_of(&self, pod: &Pod) -> Option<Arc<ReplicaSet>> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        self.resolve(namespace, controller_of(&pod.metadata)?)
    }

    /// Every ReplicaSet in the pod's namespace whose selector matches its labels.
    fn matching(&self, pod: &Pod) -> Vec<Arc<ReplicaSet>> {
        let namespace = pod.namespace().unwrap_or_default();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let Ok(candidates) = self.replica_sets.by_index(NAMESPACE_INDEX, &namespace) else { return Vec::new() };
        candidates
            .iter()
            .map(K::view)
            .filter(|rs| {
                let selector = LabelSelector::from_meta(&rs.spec.selector);
                selector.is_ok_and(|selector| !selector.is_empty() && selector.matches(&labels))
            })
            .collect()
    }

    fn add_pod(&self, pod: &Arc<Pod>) {
        if pod.metadata.deletion_timestamp.is_some() {
            self.delete_pod(pod);
            return;
        }
        if controller_of(&pod.metadata).is_some() {
            if let Some(rs) = self.owner_of(pod) {
                let key = ObjectKey::of(rs.as_ref());
                self.expectations.creation_observed(&key);
                self.queue.add(key);
            }
            return;
        }
        for rs in self.matching(pod) {
            self.queue.add(ObjectKey::of(rs.as_ref()));
        }
    }

    fn update_pod(&self, old: &Arc<Pod>, new: &Arc<Pod>) {
        if old.metadata.resource_version == new.metadata.resource_version {
            return; // a resync: nothing changed
        }
        let labels_changed = old.metadata.labels != new.metadata.labels;
        if new.metadata.deletion_timestamp.is_some() {
            self.delete_pod(new);
            if labels_changed {
                self.delete_pod(old);
            }
            return;
        }
        let old_owner = controller_of(&old.metadata).map(|owner| owner.uid.clone());
        let new_owner = controller_of(&new.metadata).map(|owner| owner.uid.clone());
        if old_owner != new_owner
            && let Some(rs) = self.owner_of(old)
        {
            self.queue.add(ObjectKey::of(rs.as_ref()));
        }
        if new_owner.is_some() {
            if let Some(rs) = self.owner_of(new) {
                let key = ObjectKey::of(rs.as_ref());
                let min_ready = rs.spec.min_ready_seconds.unwrap_or(0);
                if min_ready > 0 && !is_ready(old) && is_ready(new) {
                    // Becomes available minReadySeconds from now: look again then.
                    let delay = Duration::from_secs(u64::try_from(min_ready).unwrap_or(0) + 1);
                    self.queue.add_after(key.clone(), delay);
                }
                self.queue.add(key);
            }
            return;
        }
        if labels_changed || old_owner != new_owner {
            for rs in self.matching(new) {
                self.queue.add(ObjectKey::of(rs.as_ref()));
            }
        }
    }

    fn delete_pod(&self, pod: &Arc<Pod>) {
        if let Some(rs) = self.owner_of(pod) {
            let key = ObjectKey::of(rs.as_ref());
            self.expectations.deletion_observed(&key, &ObjectKey::of(pod.as_ref()));
            self.queue.add(key);
        }
    }
}

impl<K: Replicated> Syncer for ReplicaSetController<K> {
    type Key = ObjectKey;

    async fn sync(&self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(rs) = self.replica_sets.get(key).as_ref().map(K::view) else {
            self.expectations.forget(key);
            return Ok(Action::await_change());
        };
        // `None`: the cache has caught up with our last writes, so its pod count can be trusted.
        let expectations_expire_in = self.expectations.expires_in(key);
        let selector = match LabelSelector::from_meta(&rs.spec.selector) {
            Ok(selector) if !selector.is_empty() => selector,
            Ok(_) | Err(_) => {
                tracing::warn!(%key, "invalid or empty selector; not syncing");
                return Ok(Action::await_change());
            }
        };
        let namespace = rs.namespace().unwrap_or_default();
        let pods: Vec<Arc<Pod>> =
            self.pods.by_index(NAMESPACE_INDEX, &namespace)?.into_iter().filter(|pod| is_active(pod)).collect();
        let owned = self.claim_pods(&rs, &selector, pods).await?;
        let mut manage_error = None;
        if expectations_expire_in.is_none() && rs.metadata.deletion_timestamp.is_none() {
            manage_error = self.manage_replicas(key, &rs, &owned).await.err();
        }
        self.update_status(&rs, &owned, manage_error.as_ref()).await?;
        if let Some(error) = manage_error {
            return Err(error);
        }
        let min_ready_seconds = rs.spec.min_ready_seconds.unwrap_or(0);
        Ok(next_action(expectations_expire_in, &owned, min_ready_seconds, Timestamp::now()))
    }
}

impl<K: Replicated> ReplicaSetController<K> {
    /// Adopts matching orphans, releases owned pods that stopped matching, and returns the
    /// pods this ReplicaSet owns afterwards.
    async fn claim_pods(
        &self,
        rs: &ReplicaSet,
        selector: &LabelSelector,
        pods: Vec<Arc<Pod>>,
    ) -> Result<Vec<Arc<Pod>>, Error> {
        let uid = rs.uid().unwrap_or_default();
        let namespace = rs.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let mut owned = Vec::new();
        let mut may_adopt: Option<bool> = None;
        for pod in pods {
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            let matches = selector.matches(&labels);
            let pod_name = pod.name_any();
            match controller_of(&pod.metadata) {
                Some(owner) if owner.uid == uid => {
                    if matches {
                        owned.push(pod);
                    } else if rs.metadata.deletion_timestamp.is_none() {
                        let patch = release_patch(&pod.metadata, &uid);
                        match api.patch(&pod_name, &PatchParams::default(), &Patch::Merge(patch)).await {
                            Ok(_) => tracing::info!(pod = %pod_name, rs = ?rs.metadata.name, "released"),
                            Err(error) if error.is_not_found() => {}
                            Err(source) => return Err(Error::Release { object: pod_name, source }),
                        }
                    }
                }
                Some(_) => {} // another controller's
                None if matches && pod.metadata.deletion_timestamp.is_none() => {
                    // Recheck, uncached, that the ReplicaSet still exists and is not being
                    // deleted before adopting (kube-controller-manager's `RecheckDeletionTimestamp`).
                    if may_adopt.is_none() {
                        may_adopt = Some(self.may_adopt(rs).await?);
                    }
                    if may_adopt != Some(true) {
                        continue;
                    }
                    let reference = new_controller_ref(K::API_VERSION, K::KIND, &rs.metadata);
                    let patch = adopt_patch(&pod.metadata, &reference);
                    match api.patch(&pod_name, &PatchParams::default(), &Patch::Merge(patch)).await {
                        Ok(adopted) => {
                            tracing::info!(pod = %pod_name, rs = ?rs.metadata.name, "adopted");
                            owned.push(Arc::new(adopted));
                        }
                        Err(error) if error.is_not_found() => {}
                        Err(source) => return Err(Error::Adopt { object: pod_name, source }),
                    }
                }
                None => {}
            }
        }
        Ok(owned)
    }

    async fn may_adopt(&self, rs: &ReplicaSet) -> Result<bool, Error> {
        let namespace = rs.namespace().unwrap_or_default();
        let api: Api<K> = Api::namespaced(self.client.clone(), &namespace);
        let name = rs.name_any();
        match api.get_opt(&name).await {
            Ok(Some(fresh)) => Ok(fresh.meta().uid == rs.metadata.uid && fresh.meta().deletion_timestamp.is_none()),
            Ok(None) => Ok(false),
            Err(source) => Err(Error::Read { what: format!("replicaset {}", ObjectKey::of(rs)), source }),
        }
    }

    /// Creates or deletes pods so that `owned` becomes `spec.replicas` (at most
    /// [`BURST_REPLICAS`] at a time), recording expectations first.
    async fn manage_replicas(&self, key: &ObjectKey, rs: &ReplicaSet, owned: &[Arc<Pod>]) -> Result<(), Error> {
        let want = usize::try_from(rs.spec.replicas.unwrap_or(1)).unwrap_or(0);
        match replica_change(want, owned.len()) {
            ReplicaChange::None => Ok(()),
            ReplicaChange::Create(count) => self.create_pods(key, rs, count, want, owned.len()).await,
            ReplicaChange::Delete(count) => {
                let victims = pods_to_delete(owned, count);
                self.delete_pods(key, rs, &victims, want, owned.len()).await
            }
        }
    }

    /// Creates `count` pods from the template in [`slow_start_batches`], stopping after the
    /// first batch with a failure. Every create is expected first; one that failed is ticked
    /// off at once, or, when its outcome is unknown, left to expire soon
    /// ([`Expectations::creation_uncertain`]).
    async fn create_pods(
        &self,
        key: &ObjectKey,
        rs: &ReplicaSet,
        count: usize,
        want: usize,
        had: usize,
    ) -> Result<(), Error> {
        let namespace = rs.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let expectations = &self.expectations;
        let pod = pod_from_template::<K>(rs)?;
        expectations.expect_creations(key, count);
        let params = PostParams::default();
        let mut attempted = 0;
        let mut first_error = None;
        for size in slow_start_batches(count) {
            attempted += size;
            let results = join_all((0..size).map(|_| api.create(&params, &pod))).await;
            for result in results {
                match &result {
                    Ok(created) => self.events.record(
                        &reference::<K>(rs),
                        EventType::Normal,
                        "SuccessfulCreate",
                        "Create",
                        format!("Created pod: {}", created.name_any()),
                    ),
                    Err(error) => self.events.record(
                        &reference::<K>(rs),
                        EventType::Warning,
                        "FailedCreate",
                        "Create",
                        format!("Error creating: {error}"),
                    ),
                }
                if let Err(error) = result {
                    if outcome_unknown(&error) {
                        expectations.creation_uncertain(key);
                    } else {
                        expectations.creation_observed(key);
                    }
                    first_error.get_or_insert(error);
                }
            }
            if first_error.is_some() {
                break;
            }
        }
        // The creates never attempted will never be observed either.
        for _ in attempted..count {
            expectations.creation_observed(key);
        }
        tracing::info!(%key, want, had, created = attempted, "scaled up");
        match first_error {
            Some(source) => Err(Error::CreatePods { key: key.clone(), source }),
            None => Ok(()),
        }
    }

    /// Deletes `victims`, expecting each to go first; a failed delete is ticked off at once.
    async fn delete_pods(
        &self,
        key: &ObjectKey,
        rs: &ReplicaSet,
        victims: &[Arc<Pod>],
        want: usize,
        had: usize,
    ) -> Result<(), Error> {
        let deleted = self.pod_control.delete(key, &reference::<K>(rs), victims).await;
        tracing::info!(%key, want, had, deleted = victims.len(), "scaled down");
        deleted
    }

    async fn update_status(&self, rs: &ReplicaSet, owned: &[Arc<Pod>], error: Option<&Error>) -> Result<(), Error> {
        let status = status_for(rs, owned, error, Timestamp::now());
        let current = serde_json::to_value(rs.status.clone().unwrap_or_default()).unwrap_or(Value::Null);
        if same_status(&current, &status) {
            return Ok(());
        }
        let namespace = rs.namespace().unwrap_or_default();
        let name = rs.name_any();
        let api: Api<K> = Api::namespaced(self.client.clone(), &namespace);
        match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_not_found() => Ok(()),
            Err(source) => Err(Error::UpdateStatus { key: ObjectKey::of(rs), source }),
        }
    }
}

/// How a sync changes the number of pods (at most [`BURST_REPLICAS`] at a time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplicaChange {
    /// As many pods as wanted.
    None,
    /// Create this many.
    Create(usize),
    /// Delete this many.
    Delete(usize),
}

/// The change that takes `have` owned active pods towards `want`, capped at [`BURST_REPLICAS`].
fn replica_change(want: usize, have: usize) -> ReplicaChange {
    if have < want {
        ReplicaChange::Create((want - have).min(BURST_REPLICAS))
    } else if have > want {
        ReplicaChange::Delete((have - want).min(BURST_REPLICAS))
    } else {
        ReplicaChange::None
    }
}

/// Batch sizes for `count` creates: 1, 2, 4, ... doubling, the last one cut to what is left
/// (kube-controller-manager's `slowStartBatch`), so a template the apiserver refuses costs one request.
fn slow_start_batches(count: usize) -> impl Iterator<Item = usize> {
    let mut sent = 0;
    let mut next = 1;
    std::iter::from_fn(move || {
        let size = next.min(count - sent);
        (size > 0).then(|| {
            sent += size;
            next = next.saturating_mul(2);
            size
        })
    })
}

/// The `count` pods to delete first on scale-down, in [`podutil::deletion_order`].
fn pods_to_delete(owned: &[Arc<Pod>], count: usize) -> Vec<Arc<Pod>> {
    let mut victims: Vec<Arc<Pod>> = owned.to_vec();
    victims.sort_by(|a, b| deletion_order(a, b));
    victims.truncate(count);
    victims
}

/// When to sync a ReplicaSet again after a successful sync: when its unmet expectations
/// expire (`expectations_expire_in`: the events they wait for may never arrive, e.g. a create
/// cut off mid-request that never happened, and then nothing else wakes the key), and
/// `minReadySeconds` after a pod that is ready but not yet available, to count it then.
fn next_action(
    expectations_expire_in: Option<Duration>,
    owned: &[Arc<Pod>],
    min_ready_seconds: i32,
    now: Timestamp,
) -> Action {
    let mut action = expectations_expire_in.map_or_else(Action::await_change, Action::requeue);
    if min_ready_seconds > 0 && owned.iter().any(|pod| is_ready(pod) && !is_available(pod, min_ready_seconds, now)) {
        let min_ready = Duration::from_secs(u64::try_from(min_ready_seconds).unwrap_or(0));
        action = action.sooner(Action::requeue(min_ready));
    }
    action
}

/// The pod a ReplicaSet creates: its template, named `<rs>-<random>`, controlled by it (an
/// owner of kind `K`, a ReplicaSet or a ReplicationController).
pub fn pod_from_template<K: Replicated>(rs: &ReplicaSet) -> Result<Pod, Error> {
    let template = rs
        .spec
        .template
        .clone()
        .ok_or_else(|| Error::InvalidObject { key: ObjectKey::of(rs), reason: "spec.template is missing".into() })?;
    let template_meta = template.metadata.unwrap_or_default();
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.metadata.namespace.clone(),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![new_controller_ref(K::API_VERSION, K::KIND, &rs.metadata)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    })
}

/// The status a ReplicaSet should have, as the JSON written to `/status`.
fn status_for(rs: &ReplicaSet, owned: &[Arc<Pod>], error: Option<&Error>, now: Timestamp) -> Value {
    let spec = rs.spec.clone();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let template_labels: BTreeMap<String, String> =
        spec.template.and_then(|template| template.metadata).and_then(|meta| meta.labels).unwrap_or_default();
    let fully_labeled = owned
        .iter()
        .filter(|pod| {
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            template_labels.iter().all(|(key, value)| labels.get(key) == Some(value))
        })
        .count();
    let ready = owned.iter().filter(|pod| podutil::is_ready(pod)).count();
    let available = owned.iter().filter(|pod| is_available(pod, min_ready, now)).count();
    let old_conditions: Vec<Value> = rs
        .status
        .as_ref()
        .and_then(|status| status.conditions.clone())
        .map(|conditions| conditions.iter().filter_map(|condition| serde_json::to_value(condition).ok()).collect())
        .unwrap_or_default();
    let mut conditions: Vec<Value> =
        old_conditions.iter().filter(|condition| condition["type"] != "ReplicaFailure").cloned().collect();
    let failure = match error {
        Some(Error::CreatePods { source, .. }) => Some(("FailedCreate", source.to_string())),
        Some(Error::DeletePods { source, .. }) => Some(("FailedDelete", source.to_string())),
        _ => None,
    };
    if let Some((reason, message)) = failure {
        let old = old_conditions.iter().find(|condition| condition["type"] == "ReplicaFailure");
        let since = old
            .filter(|old| old["reason"] == reason)
            .and_then(|old| old.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now.to_string()));
        conditions.push(json!({
            "type": "ReplicaFailure", "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": since,
        }));
    }
    json!({
        "replicas": owned.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": rs.metadata.generation.unwrap_or(0),
        "conditions": if conditions.is_empty() { Value::Null } else { json!(conditions) },
    })
}

/// Whether `current` (the stored status) already says what `wanted` says. Zero counts and
/// absent ones are the same (the apiserver omits zeros).
fn same_status(current: &Value, wanted: &Value) -> bool {
    let Some(fields) = wanted.as_object() else { return false };
    fields.iter().all(|(field, value)| {
        let stored = current.get(field).cloned().unwrap_or(Value::Null);
        let zero = |v: &Value| v.is_null() || v == &json!(0);
        stored == *value || (zero(&stored) && zero(value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{ReplicaSetSpec, ReplicaSetStatus};
    use k8s_openapi::api::core::v1::PodTemplateSpec;

    fn replica_set() -> ReplicaSet {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("uid-1".into()),
                generation: Some(3),
                ..ObjectMeta::default()
            },
            spec: ReplicaSetSpec {
                replicas: Some(2),
                selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..Default::default()
                },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
                    spec: None,
                }),
                ..ReplicaSetSpec::default()
            },
            status: None,
        }
    }

    /// The key of `replica_set()`.
    fn web() -> ObjectKey {
        ObjectKey::new(Some("ns"), "web")
    }

    /// A controller over caches holding `rs` and no pods, with a client that reaches nothing:
    /// any write it attempts fails.
    fn controller_of_cached(rs: ReplicaSet) -> ReplicaSetController {
        let client = Client::new(rkube_client::Config::new("http://127.0.0.1:1".parse().unwrap())).unwrap();
        let mut replica_sets = rkube_informer::store::Writer::default();
        replica_sets.apply(Arc::new(rs));
        let pods = rkube_informer::store::Writer::<Pod>::default();
        let events = EventRecorder::new(client.clone(), "replicaset-controller", None);
        let expectations = Arc::new(Expectations::default());
        ReplicaSetController {
            pod_control: PodControl::new(client.clone(), Arc::clone(&expectations), events.clone()),
            events,
            client,
            replica_sets: replica_sets.store(),
            pods: pods.store(),
            queue: WorkQueue::new("replicaset", RateLimiter::default(), None),
            expectations,
        }
    }

    /// `replica_set()` with a stored status that already says what the controller would write
    /// for no pods, so a sync that creates nothing writes nothing either.
    fn replica_set_with_current_status() -> ReplicaSet {
        let mut rs = replica_set();
        rs.status = Some(ReplicaSetStatus { observed_generation: Some(3), ..ReplicaSetStatus::default() });
        rs
    }

    #[tokio::test]
    async fn a_sync_held_back_by_unmet_expectations_requeues_no_later_than_they_expire() {
        let controller = controller_of_cached(replica_set_with_current_status());
        let expectations = &controller.expectations;
        // The fault: two creates were cut off mid-request and may never have happened.
        expectations.expect_creations(&web(), 2);
        expectations.creation_uncertain(&web());
        // Ok, not an error: the sync did not even try to create (the client reaches nothing).
        let action = controller.sync(&web()).await.unwrap();
        let delay = action.requeue_after().expect("a requeue, or nothing would ever wake the key");
        assert!(delay <= crate::expectations::UNCERTAIN_TTL, "requeued after {delay:?}");
    }

    #[tokio::test]
    async fn a_sync_with_met_expectations_and_nothing_to_do_waits_for_a_change() {
        let mut rs = replica_set_with_current_status();
        rs.spec.replicas = Some(0);
        let controller = controller_of_cached(rs);
        assert_eq!(controller.sync(&web()).await.unwrap(), Action::await_change());
    }

    #[test]
    fn scaling_creates_the_shortfall_and_deletes_the_surplus_at_most_a_burst_at_a_time() {
        assert_eq!(replica_change(5, 2), ReplicaChange::Create(3));
        assert_eq!(replica_change(2, 5), ReplicaChange::Delete(3));
        assert_eq!(replica_change(3, 3), ReplicaChange::None);
        assert_eq!(replica_change(2000, 0), ReplicaChange::Create(BURST_REPLICAS));
        assert_eq!(replica_change(0, 2000), ReplicaChange::Delete(BURST_REPLICAS));
    }

    #[test]
    fn creates_go_out_in_batches_that_double_and_add_up_to_the_count() {
        assert_eq!(slow_start_batches(10).collect::<Vec<_>>(), [1, 2, 4, 3]);
        assert_eq!(slow_start_batches(7).collect::<Vec<_>>(), [1, 2, 4]);
        assert_eq!(slow_start_batches(1).collect::<Vec<_>>(), [1]);
        assert_eq!(slow_start_batches(0).count(), 0);
        assert_eq!(slow_start_batches(BURST_REPLICAS).sum::<usize>(), BURST_REPLICAS);
    }

    /// A pod named `name`, on `node` if any, Ready since second `ready_since` if any.
    fn pod(name: &str, node: Option<&str>, ready_since: Option<i64>) -> Arc<Pod> {
        use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let conditions = ready_since.map(|at| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(Timestamp::from_second(at).unwrap())),
                ..PodCondition::default()
            }]
        });
        Arc::new(Pod {
            metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
            spec: Some(PodSpec { node_name: node.map(String::from), ..PodSpec::default() }),
            status: Some(PodStatus { phase: Some("Running".into()), conditions, ..PodStatus::default() }),
        })
    }

    #[test]
    fn scale_down_deletes_the_pods_ranked_first_by_deletion_order() {
        let owned =
            [pod("ready", Some("n"), Some(1)), pod("unscheduled", None, None), pod("not-ready", Some("n"), None)];
        let names = |pods: Vec<Arc<Pod>>| pods.iter().map(|pod| pod.metadata.name.clone().unwrap()).collect::<Vec<_>>();
        assert_eq!(names(pods_to_delete(&owned, 2)), ["unscheduled", "not-ready"]);
        assert_eq!(names(pods_to_delete(&owned, 5)).len(), 3);
    }

    #[test]
    fn unmet_expectations_requeue_when_they_expire_and_ready_pods_when_they_become_available() {
        let now = Timestamp::from_second(100).unwrap();
        let available = [pod("old", Some("n"), Some(10))];
        assert_eq!(next_action(None, &available, 5, now), Action::await_change());
        let expire = Duration::from_secs(7);
        assert_eq!(next_action(Some(expire), &available, 5, now), Action::requeue(expire));
        let just_ready = [pod("old", Some("n"), Some(10)), pod("new", Some("n"), Some(98))];
        assert_eq!(next_action(None, &just_ready, 5, now), Action::requeue(Duration::from_secs(5)));
        assert_eq!(next_action(Some(expire), &just_ready, 5, now), Action::requeue(Duration::from_secs(5)), "sooner");
        assert_eq!(next_action(None, &just_ready, 0, now), Action::await_change(), "no minReadySeconds");
    }

    #[test]
    fn pods_from_the_template_are_generated_and_controlled_by_the_replica_set() {
        let pod = pod_from_template::<ReplicaSet>(&replica_set()).unwrap();
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
        let owner = controller_of(&pod.metadata).unwrap();
        assert_eq!((owner.uid.as_str(), owner.kind.as_str()), ("uid-1", "ReplicaSet"));
        assert_eq!(owner.block_owner_deletion, Some(true));
    }

    #[test]
    fn status_reports_a_refused_create_as_replica_failure_and_clears_it_after() {
        let rs = replica_set();
        let refused = Error::CreatePods { key: web(), source: rkube_client::Error::Forbidden(Box::default()) };
        let status = status_for(&rs, &[], Some(&refused), Timestamp::now());
        assert_eq!(status["conditions"][0]["type"], "ReplicaFailure");
        assert_eq!(status["conditions"][0]["reason"], "FailedCreate");
        assert_eq!(status["observedGeneration"], 3);
        assert!(status_for(&rs, &[], None, Timestamp::now())["conditions"].is_null());
    }
}
