//! The Deployment controller: rolls a Deployment's pods from one pod template to the next
//! through ReplicaSets, one per template.
//!
//! The loop, for one Deployment key, judging from the caches. Each step is one function, and
//! `sync` calls them in this order:
//! 1. **get the Deployment** from the cache, with a valid, non-empty selector;
//! 2. **claim** the ReplicaSets it controls (adopt matching orphans, release the others), like
//!    the ReplicaSet controller claims pods (`DeploymentController::claim_replica_sets`), and
//!    wait until the cache holds every ReplicaSet as of our own last write to it;
//! 3. **find the new and old** ReplicaSets (`split_by_template`): the new one runs the
//!    Deployment's template (ignoring the `pod-template-hash` label); the others are old,
//!    oldest first;
//! 4. **pick the step** (`choose_step`): only the status while paused or being deleted; a
//!    proportional resize when `replicas` changed mid-rollout; otherwise the strategy,
//!    `RollingUpdate` or `Recreate`. Before rolling, a **rollback** target (an old ReplicaSet
//!    whose template `kubectl rollout undo` wrote back) gets the next revision number;
//! 5. **scale**: `RollingUpdate` grows the new ReplicaSet within `maxSurge` and shrinks old
//!    ones only by pods available beyond `replicas - maxUnavailable` ([`rollout`]), counting
//!    pods that are *available* (ready for `minReadySeconds`), so a template whose pods never
//!    become ready stops the rollout with the old pods still serving; `Recreate` scales every
//!    old ReplicaSet to 0, waits until their pods are gone, then scales the new one up. A
//!    missing new ReplicaSet is created as `<deployment>-<hash>`, where `hash` is a hash of the
//!    template, put on the ReplicaSet's selector, template and so its pods as the
//!    `pod-template-hash` label, so ReplicaSets of different templates never fight over pods.
//!    Its `deployment.kubernetes.io/revision` is one more than the highest of the old ones;
//! 6. **sync the status** ([`status`]), and say when to look again (progress deadline,
//!    `minReadySeconds`) as the sync's [`Action`];
//! 7. **clean up history**: once complete, delete old empty ReplicaSets beyond
//!    `revisionHistoryLimit` (default 10), lowest revision first.
//!
//! The decisions are pure functions (`choose_step`, [`rollout`], `history_to_delete`,
//! ...) with unit tests below; the `DeploymentController` methods only read caches and write.
//!
//! What it keeps true (tests in `test/tests/controller_deployment.rs`): with `maxUnavailable`
//! 0, the number of available pods never drops below `replicas` during a rollout; it never
//! acts on a ReplicaSet whose cached copy is older than its own last write to it (it waits for
//! the cache, so a stale `spec.replicas` cannot make it scale twice).
//!
//! When `replicas` changes in the middle of a rollout, the running ReplicaSets are first resized
//! in proportion to their share ([`rollout::proportional_scale`]; each ReplicaSet records the
//! sizes it was last scaled for in the `deployment.kubernetes.io/desired-replicas` and
//! `max-replicas` annotations), so a stuck rollout does not hand all new pods to the broken
//! template.
//!
//! Not promised: hash collisions (`status.collisionCount`) are reported as errors, not resolved.

pub mod rollout;
pub mod status;

use kube_core::ResourceExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use prometheus::Registry;
use rkube_api::selector::LabelSelector;
use rkube_client::events::{EventRecorder, EventType};
use rkube_client::{Api, Client, DeleteParams, Patch, PatchParams, PostParams};
use rkube_informer::ObjectKey;
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::handler::{Deleted, HandlerFns};
use rkube_informer::store::{NAMESPACE_INDEX, OWNER_UID_INDEX, Store};
use rkube_informer::workqueue::{RateLimiter, WorkQueue};
use serde_json::{Value, json};

use crate::Error;
use crate::controller_ref::{adopt_patch, controller_of, new_controller_ref, release_patch};
use crate::podutil::{is_active, is_available, is_ready};
use crate::worker::{Action, Syncer};
use rollout::{ReplicaSetAvailability, ScaledReplicaSet, fenceposts, proportional_scale, rolling_update_step};
use status::{PodCounts, Rollout, is_complete, status_for};

/// Label on a ReplicaSet, its selector and its pods: the hash of the pod template.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Annotation on ReplicaSets (and the Deployment): the rollout revision.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Annotation on ReplicaSets: the Deployment's `replicas` when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// Annotation on ReplicaSets: the Deployment's `replicas + maxSurge` when it was last scaled.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const KIND: &str = "Deployment";
const API_VERSION: &str = "apps/v1";

/// How soon a sync that found the cache behind our own last write looks again.
const CACHE_CATCH_UP_RETRY: Duration = Duration::from_millis(200);

/// The Deployment controller. Build with [`DeploymentController::new`], run workers over its queue.
pub struct DeploymentController {
    client: Client,
    deployments: Store<Deployment>,
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    queue: WorkQueue<ObjectKey>,
    /// ReplicaSet uid → resourceVersion of our last write to it, until the cache has it.
    last_writes: Mutex<HashMap<String, u64>>,
    /// `ScalingReplicaSet` Events on the Deployment.
    events: EventRecorder,
}

/// Records `ScalingReplicaSet` on the Deployment controlling `rs`: "Scaled up replica set
/// web-5d4 from 0 to 3", as kube-controller-manager words it.
fn record_scaling(events: &EventRecorder, rs: &ReplicaSet, from: i32, to: i32) {
    let Some(owner) = controller_of(&rs.metadata) else { return };
    let deployment = ObjectReference {
        api_version: Some(owner.api_version.clone()),
        kind: Some(owner.kind.clone()),
        name: Some(owner.name.clone()),
        namespace: rs.metadata.namespace.clone(),
        uid: Some(owner.uid.clone()),
        ..ObjectReference::default()
    };
    let direction = if to > from { "up" } else { "down" };
    let message = format!("Scaled {direction} replica set {} from {from} to {to}", rs.name_any());
    events.record(&deployment, EventType::Normal, "ScalingReplicaSet", "Scale", message);
}

/// Queues the Deployment that controls `rs` (if any and known), else every Deployment of the
/// namespace whose selector matches it.
fn enqueue_for_replica_set(queue: &WorkQueue<ObjectKey>, deployments: &Store<Deployment>, rs: &ReplicaSet) {
    let namespace = rs.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(&rs.metadata) {
        if owner.kind == KIND {
            queue.add(ObjectKey::new(Some(&namespace), &owner.name));
        }
        return;
    }
    let labels = rs.metadata.labels.clone().unwrap_or_default();
    for deployment in deployments.by_index(NAMESPACE_INDEX, &namespace).unwrap_or_default() {
        if LabelSelector::from_meta(&deployment.spec.selector).is_ok_and(|s| !s.is_empty() && s.matches(&labels)) {
            queue.add(ObjectKey::of(deployment.as_ref()));
        }
    }
}

/// Queues the Deployment above the ReplicaSet that controls `pod`.
fn enqueue_for_pod(queue: &WorkQueue<ObjectKey>, replica_sets: &Store<ReplicaSet>, pod: &Pod) {
    let namespace = pod.namespace();
    let Some(owner) = controller_of(&pod.metadata).filter(|owner| owner.kind == "ReplicaSet") else { return };
    if let Some(rs) = replica_sets.get(&ObjectKey::new(namespace.as_deref(), &owner.name))
        && let Some(deployment) = controller_of(&rs.metadata).filter(|owner| owner.kind == KIND)
    {
        queue.add(ObjectKey::new(namespace.as_deref(), &deployment.name));
    }
}

impl DeploymentController {
    /// Registers handlers on the factory's Deployment, ReplicaSet and Pod informers and a work
    /// queue named `deployment`.
    pub fn new(factory: &SharedInformerFactory, client: Client, registry: Option<&Registry>) -> Arc<Self> {
        let deployments = factory.informer::<Deployment>(None);
        let replica_sets = factory.informer::<ReplicaSet>(None);
        let pods = factory.informer::<Pod>(None);
        let queue = WorkQueue::new("deployment", RateLimiter::default(), registry);
        let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
        deployments.add_handler(
            HandlerFns::new()
                .on_add(move |d: &Arc<Deployment>| q1.add(ObjectKey::of(d.as_ref())))
                .on_update(move |_, d: &Arc<Deployment>| q2.add(ObjectKey::of(d.as_ref())))
                .on_delete(move |d: Deleted<Deployment>| q3.add(ObjectKey::of(d.object().as_ref()))),
        );
        let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
        let (d1, d2, d3) = (deployments.store(), deployments.store(), deployments.store());
        replica_sets.add_handler(
            HandlerFns::new()
                .on_add(move |rs: &Arc<ReplicaSet>| enqueue_for_replica_set(&q1, &d1, rs))
                .on_update(move |old: &Arc<ReplicaSet>, new: &Arc<ReplicaSet>| {
                    if controller_of(&old.metadata) != controller_of(&new.metadata) {
                        enqueue_for_replica_set(&q2, &d2, old);
                    }
                    enqueue_for_replica_set(&q2, &d2, new);
                })
                .on_delete(move |rs: Deleted<ReplicaSet>| enqueue_for_replica_set(&q3, &d3, rs.object())),
        );
        let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
        let (r1, r2, r3) = (replica_sets.store(), replica_sets.store(), replica_sets.store());
        pods.add_handler(
            HandlerFns::new()
                .on_add(move |pod: &Arc<Pod>| enqueue_for_pod(&q1, &r1, pod))
                .on_update(move |_, pod: &Arc<Pod>| enqueue_for_pod(&q2, &r2, pod))
                .on_delete(move |pod: Deleted<Pod>| enqueue_for_pod(&q3, &r3, pod.object())),
        );
        Arc::new(DeploymentController {
            events: EventRecorder::new(client.clone(), "deployment-controller", None),
            client,
            deployments: deployments.store(),
            replica_sets: replica_sets.store(),
            pods: pods.store(),
            queue,
            last_writes: Mutex::new(HashMap::new()),
        })
    }

    /// The controller's work queue of Deployment keys.
    pub fn queue(&self) -> WorkQueue<ObjectKey> {
        self.queue.clone()
    }
}

impl Syncer for DeploymentController {
    type Key = ObjectKey;

    async fn sync(&self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(deployment) = self.deployments.get(key) else { return Ok(Action::await_change()) };
        let Some(selector) = selector_of(&deployment) else {
            tracing::warn!(%key, "invalid or empty selector; not syncing");
            return Ok(Action::await_change());
        };
        let owned = self.claim_replica_sets(&deployment, &selector).await?;
        if !self.cache_caught_up(&owned) {
            // Our own last write is not in the cache yet: decide on fresh data only.
            return Ok(Action::requeue(CACHE_CATCH_UP_RETRY));
        }
        let mut sets = split_by_template(&deployment.spec.template, &owned);
        let limits = RolloutLimits::of(&deployment);
        let now = Timestamp::now();
        let created_new = match choose_step(&limits, &owned) {
            RolloutStep::StatusOnly => false,
            RolloutStep::ScaleProportionally => {
                self.scale_proportionally(&deployment, &limits, &owned).await?;
                false
            }
            RolloutStep::Recreate => {
                self.bump_revision_after_rollback(&mut sets).await?;
                self.recreate(&deployment, &limits, &mut sets).await?
            }
            RolloutStep::RollingUpdate => {
                self.bump_revision_after_rollback(&mut sets).await?;
                self.rolling_update(&deployment, &limits, &owned, &mut sets, now).await?
            }
        };
        let counts = self.count_pods(&owned, sets.new.as_deref(), limits.min_ready_seconds, now);
        let recheck = self.sync_status(&deployment, &limits, &sets, counts, created_new, now).await?;
        if limits.active && is_complete(&deployment, &counts) {
            self.clean_up_history(&deployment, &sets.old).await?;
        }
        Ok(next_action(recheck, limits.min_ready_seconds, &counts))
    }
}

/// The steps of [`DeploymentController::sync`], in the order it runs them.
impl DeploymentController {
    /// Adopts matching orphan ReplicaSets, releases owned ones that stopped matching, and
    /// returns those the Deployment controls.
    async fn claim_replica_sets(
        &self,
        deployment: &Deployment,
        selector: &LabelSelector,
    ) -> Result<Vec<Arc<ReplicaSet>>, Error> {
        let uid = deployment.uid().unwrap_or_default();
        let namespace = deployment.namespace().unwrap_or_default();
        let api = self.replica_set_api(&namespace);
        let mut owned = Vec::new();
        for rs in self.replica_sets.by_index(NAMESPACE_INDEX, &namespace)? {
            let labels = rs.metadata.labels.clone().unwrap_or_default();
            let matches = selector.matches(&labels);
            let name = rs.name_any();
            let patch = match controller_of(&rs.metadata) {
                Some(owner) if owner.uid == uid && matches => {
                    owned.push(rs);
                    continue;
                }
                Some(owner) if owner.uid == uid && deployment.metadata.deletion_timestamp.is_none() => {
                    release_patch(&rs.metadata, &uid)
                }
                None if matches
                    && rs.metadata.deletion_timestamp.is_none()
                    && deployment.metadata.deletion_timestamp.is_none() =>
                {
                    adopt_patch(&rs.metadata, &new_controller_ref(API_VERSION, KIND, &deployment.metadata))
                }
                _ => continue,
            };
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(patched) => {
                    self.remember_write(&patched);
                    if controller_of(&patched.metadata).is_some_and(|owner| owner.uid == uid) {
                        owned.push(Arc::new(patched));
                    }
                }
                Err(error) if error.is_not_found() => {}
                Err(source) => {
                    return Err(Error::Adopt { object: format!("replicaset {}", ObjectKey::of(rs.as_ref())), source });
                }
            }
        }
        Ok(owned)
    }

    /// Records the resourceVersion our write gave `rs`, for `DeploymentController::cache_caught_up`.
    fn remember_write(&self, rs: &ReplicaSet) {
        if let (Some(uid), Some(version)) = (rs.metadata.uid.clone(), resource_version(&rs.metadata)) {
            self.last_writes.lock().unwrap_or_else(PoisonError::into_inner).insert(uid, version);
        }
    }

    /// Whether the cache holds every ReplicaSet at least as new as our last write to it.
    /// Writes the cache has caught up with are forgotten.
    fn cache_caught_up(&self, replica_sets: &[Arc<ReplicaSet>]) -> bool {
        let mut last_writes = self.last_writes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut caught_up = true;
        for rs in replica_sets {
            let uid = rs.uid().unwrap_or_default();
            let Some(wrote) = last_writes.get(&uid).copied() else { continue };
            if resource_version(&rs.metadata).is_some_and(|seen| seen >= wrote) {
                last_writes.remove(&uid);
            } else {
                caught_up = false;
            }
        }
        caught_up
    }

    /// Rollback: the new ReplicaSet found by template is an old one (its template was written
    /// back into the Deployment), so it takes the next revision number.
    async fn bump_revision_after_rollback(&self, sets: &mut ReplicaSetsByTemplate) -> Result<(), Error> {
        if let Some(rs) = &sets.new
            && let Some(revision) = revision_after_rollback(rs, &sets.old)
        {
            sets.new = Some(self.set_revision(rs, revision).await?);
        }
        Ok(())
    }

    /// A scaling event: resizes the running ReplicaSets in proportion to their share.
    async fn scale_proportionally(
        &self,
        deployment: &Deployment,
        limits: &RolloutLimits,
        owned: &[Arc<ReplicaSet>],
    ) -> Result<(), Error> {
        let status_replicas = deployment.status.as_ref().and_then(|status| status.replicas).unwrap_or(0);
        for (rs, target) in proportional_targets(limits, owned, status_replicas) {
            self.scale(&rs, target, limits.sizes()).await?;
        }
        Ok(())
    }

    /// `Recreate`: every old ReplicaSet to 0; once their pods are gone, the new one to
    /// `replicas` (created if missing). Returns whether it created the new ReplicaSet.
    async fn recreate(
        &self,
        deployment: &Deployment,
        limits: &RolloutLimits,
        sets: &mut ReplicaSetsByTemplate,
    ) -> Result<bool, Error> {
        let old_pods: usize = sets.old.iter().map(|rs| self.pods_of(rs).len()).sum();
        for rs in &sets.old {
            self.scale(rs, 0, limits.sizes()).await?;
        }
        let Some(replicas) = recreate_new_replicas(limits, old_pods) else { return Ok(false) };
        self.scale_or_create_new(deployment, limits, sets, replicas).await
    }

    /// `RollingUpdate`: one step of [`rolling_update_step`], the new ReplicaSet first (created
    /// if missing), then the old ones. Returns whether it created the new ReplicaSet.
    async fn rolling_update(
        &self,
        deployment: &Deployment,
        limits: &RolloutLimits,
        owned: &[Arc<ReplicaSet>],
        sets: &mut ReplicaSetsByTemplate,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let total_spec: i32 = owned.iter().map(|rs| spec_replicas(rs)).sum();
        let new_spec = sets.new.as_ref().map_or(0, |rs| spec_replicas(rs));
        let new_available = sets.new.as_ref().map_or(0, |rs| self.available_pods(rs, limits.min_ready_seconds, now));
        let old: Vec<ReplicaSetAvailability> = sets
            .old
            .iter()
            .map(|rs| {
                let spec = spec_replicas(rs);
                ReplicaSetAvailability {
                    spec,
                    available: self.available_pods(rs, limits.min_ready_seconds, now).min(spec),
                }
            })
            .collect();
        let step = rolling_update_step(
            limits.replicas,
            limits.max_surge,
            limits.max_unavailable,
            total_spec,
            new_spec,
            new_available,
            &old,
        );
        let created_new = self.scale_or_create_new(deployment, limits, sets, step.new).await?;
        for (rs, target) in sets.old.iter().zip(step.old) {
            self.scale(rs, target, limits.sizes()).await?;
        }
        Ok(created_new)
    }

    /// Counts the pods of every owned ReplicaSet for the status; `updated` counts those of `new`.
    fn count_pods(
        &self,
        owned: &[Arc<ReplicaSet>],
        new: Option<&ReplicaSet>,
        min_ready_seconds: i32,
        now: Timestamp,
    ) -> PodCounts {
        let mut counts = PodCounts::default();
        for rs in owned {
            let pods = self.pods_of(rs);
            let count =
                |f: &dyn Fn(&Pod) -> bool| i32::try_from(pods.iter().filter(|pod| f(pod)).count()).unwrap_or(i32::MAX);
            counts.replicas += count(&|_| true);
            counts.ready += count(&|pod| is_ready(pod));
            counts.available += count(&|pod| is_available(pod, min_ready_seconds, now));
            if new.is_some_and(|new| new.metadata.uid == rs.metadata.uid) {
                counts.updated += count(&|_| true);
            }
        }
        counts
    }

    /// Writes the status the counts call for; returns how many seconds are left until the
    /// progress deadline should be checked again, when it is running.
    async fn sync_status(
        &self,
        deployment: &Deployment,
        limits: &RolloutLimits,
        sets: &ReplicaSetsByTemplate,
        counts: PodCounts,
        created_new: bool,
        now: Timestamp,
    ) -> Result<Option<i64>, Error> {
        let rollout = Rollout {
            counts,
            max_unavailable: if limits.recreate { 0 } else { limits.max_unavailable },
            new_replica_set: sets.new.as_ref().and_then(|rs| rs.metadata.name.clone()),
            created_new,
        };
        let (status, recheck) = status_for(deployment, &rollout, now);
        self.write_status(deployment, status, sets.new.as_deref()).await?;
        Ok(recheck)
    }

    /// Deletes the old empty ReplicaSets beyond `revisionHistoryLimit`, lowest revision first.
    async fn clean_up_history(&self, deployment: &Deployment, old: &[Arc<ReplicaSet>]) -> Result<(), Error> {
        let limit = usize::try_from(deployment.spec.revision_history_limit.unwrap_or(10)).unwrap_or(0);
        let namespace = deployment.namespace().unwrap_or_default();
        for rs in history_to_delete(old, limit, |rs| self.pods_of(rs).is_empty()) {
            let name = rs.name_any();
            match self.replica_set_api(&namespace).delete(&name, &DeleteParams::default()).await {
                Ok(_) => tracing::info!(rs = %name, "deleted old replica set beyond revisionHistoryLimit"),
                Err(error) if error.is_not_found() => {}
                Err(source) => {
                    return Err(Error::Read {
                        what: format!("deleting replicaset {}", ObjectKey::of(rs.as_ref())),
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The reads and writes the steps share.
impl DeploymentController {
    fn replica_set_api(&self, namespace: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Active pods controlled by `rs`.
    fn pods_of(&self, rs: &ReplicaSet) -> Vec<Arc<Pod>> {
        let uid = rs.uid().unwrap_or_default();
        self.pods
            .by_index(OWNER_UID_INDEX, &uid)
            .unwrap_or_default()
            .into_iter()
            .filter(|pod| is_active(pod) && controller_of(&pod.metadata).is_some_and(|owner| owner.uid == uid))
            .collect()
    }

    /// Pods of `rs` available at `now`.
    fn available_pods(&self, rs: &ReplicaSet, min_ready_seconds: i32, now: Timestamp) -> i32 {
        let available = self.pods_of(rs).iter().filter(|pod| is_available(pod, min_ready_seconds, now)).count();
        i32::try_from(available).unwrap_or(i32::MAX)
    }

    /// Scales the new ReplicaSet to `replicas`, or creates it with that many (at the next
    /// revision) when there is none yet. Returns whether it created one.
    async fn scale_or_create_new(
        &self,
        deployment: &Deployment,
        limits: &RolloutLimits,
        sets: &mut ReplicaSetsByTemplate,
        replicas: i32,
    ) -> Result<bool, Error> {
        if let Some(rs) = &sets.new {
            self.scale(rs, replicas, limits.sizes()).await?;
            return Ok(false);
        }
        let revision = next_revision(&sets.old);
        sets.new = Some(self.create_new(deployment, revision, replicas, limits.sizes()).await?);
        Ok(true)
    }

    /// Sets `rs`'s `spec.replicas` to `replicas`, and its desired- and max-replicas
    /// annotations to `sizes` (the Deployment's replicas and replicas + maxSurge).
    async fn scale(&self, rs: &ReplicaSet, replicas: i32, sizes: (i32, i32)) -> Result<(), Error> {
        let (desired, max) = (sizes.0.to_string(), sizes.1.to_string());
        let annotated = |key: &str, value: &str| annotation(rs, key).as_deref() == Some(value);
        if rs.spec.replicas.unwrap_or(1) == replicas
            && annotated(DESIRED_REPLICAS, &desired)
            && annotated(MAX_REPLICAS, &max)
        {
            return Ok(());
        }
        let namespace = rs.namespace().unwrap_or_default();
        let name = rs.name_any();
        let patch = json!({
            "metadata": {
                "resourceVersion": rs.metadata.resource_version,
                "annotations": {DESIRED_REPLICAS: desired, MAX_REPLICAS: max},
            },
            "spec": {"replicas": replicas},
        });
        match self.replica_set_api(&namespace).patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(scaled) => {
                if rs.spec.replicas.unwrap_or(1) != replicas {
                    tracing::info!(rs = %name, from = rs.spec.replicas.unwrap_or(1), to = replicas, "scaled replica set");
                    record_scaling(&self.events, rs, rs.spec.replicas.unwrap_or(1), replicas);
                }
                self.remember_write(&scaled);
                Ok(())
            }
            Err(source) => {
                Err(Error::Read { what: format!("scaling replicaset {} to {replicas}", ObjectKey::of(rs)), source })
            }
        }
    }

    /// Gives the new ReplicaSet the revision `revision` (after a rollback it had an old one).
    async fn set_revision(&self, rs: &ReplicaSet, revision: i64) -> Result<Arc<ReplicaSet>, Error> {
        let namespace = rs.namespace().unwrap_or_default();
        let name = rs.name_any();
        let patch = json!({"metadata": {"annotations": {REVISION: revision.to_string()}}});
        match self.replica_set_api(&namespace).patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(updated) => {
                self.remember_write(&updated);
                Ok(Arc::new(updated))
            }
            Err(source) => Err(Error::Read { what: format!("annotating replicaset {}", ObjectKey::of(rs)), source }),
        }
    }

    /// Creates the ReplicaSet for the Deployment's current template with `replicas`, annotated
    /// with `sizes` (see [`DeploymentController::scale`]).
    async fn create_new(
        &self,
        deployment: &Deployment,
        revision: i64,
        replicas: i32,
        sizes: (i32, i32),
    ) -> Result<Arc<ReplicaSet>, Error> {
        let namespace = deployment.namespace().unwrap_or_default();
        let hash = template_hash(&deployment.spec.template);
        let name = format!("{}-{hash}", deployment.name_any());
        let mut template = deployment.spec.template.clone();
        let template_meta = template.metadata.get_or_insert_with(ObjectMeta::default);
        template_meta.labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = deployment.spec.selector.clone();
        selector.match_labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                labels: template_meta.labels.clone(),
                annotations: Some(
                    [
                        (REVISION.to_string(), revision.to_string()),
                        (DESIRED_REPLICAS.to_string(), sizes.0.to_string()),
                        (MAX_REPLICAS.to_string(), sizes.1.to_string()),
                    ]
                    .into(),
                ),
                owner_references: Some(vec![new_controller_ref(API_VERSION, KIND, &deployment.metadata)]),
                ..ObjectMeta::default()
            },
            spec: ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: deployment.spec.min_ready_seconds,
                selector,
                template: Some(template),
            },
            status: None,
        };
        let api = self.replica_set_api(&namespace);
        match api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                tracing::info!(rs = %name, revision, replicas, "created new replica set");
                if replicas > 0 {
                    record_scaling(&self.events, &created, 0, replicas);
                }
                self.remember_write(&created);
                Ok(Arc::new(created))
            }
            Err(error) if error.is_already_exists() => {
                // Our cache had not seen it yet, or a hash collision.
                let existing = api
                    .get(&name)
                    .await
                    .map_err(|source| Error::Read { what: format!("reading replicaset {name}"), source })?;
                if controller_of(&existing.metadata)
                    .is_some_and(|owner| Some(&owner.uid) == deployment.metadata.uid.as_ref())
                    && same_template(&existing, &deployment.spec.template)
                {
                    Ok(Arc::new(existing))
                } else {
                    Err(Error::InvalidObject {
                        key: ObjectKey::of(deployment),
                        reason: format!("replicaset {name} exists with another template (hash collision)"),
                    })
                }
            }
            Err(source) => Err(Error::Read { what: format!("creating replicaset {name}"), source }),
        }
    }

    /// Writes the revision annotation of the new ReplicaSet onto the Deployment, then `status`,
    /// each only when it changed.
    async fn write_status(
        &self,
        deployment: &Deployment,
        status: Value,
        new_rs: Option<&ReplicaSet>,
    ) -> Result<(), Error> {
        let namespace = deployment.namespace().unwrap_or_default();
        let name = deployment.name_any();
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &namespace);
        let revision = new_rs.map(|rs| revision_of(rs).to_string());
        let current_revision = deployment.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).cloned();
        if let Some(revision) = revision.filter(|revision| Some(revision) != current_revision.as_ref()) {
            let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => {}
                Err(error) if error.is_not_found() => return Ok(()),
                Err(source) => {
                    return Err(Error::Read {
                        what: format!("annotating deployment {}", ObjectKey::of(deployment)),
                        source,
                    });
                }
            }
        }
        let current = serde_json::to_value(deployment.status.clone().unwrap_or_default()).unwrap_or(Value::Null);
        let unchanged = status.as_object().is_some_and(|fields| {
            fields.iter().all(|(field, value)| {
                let stored = current.get(field).cloned().unwrap_or(Value::Null);
                stored == *value || ((stored.is_null() || stored == json!(0)) && value == &json!(0))
            })
        });
        if unchanged {
            return Ok(());
        }
        match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_not_found() => Ok(()),
            Err(source) => Err(Error::UpdateStatus { key: ObjectKey::of(deployment), source }),
        }
    }
}

/// The numbers a rollout works with, read from the Deployment's spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RolloutLimits {
    /// `spec.replicas` (default 1).
    replicas: i32,
    /// The strategy is `Recreate` (else `RollingUpdate`).
    recreate: bool,
    /// `maxSurge` as a pod count (0 for `Recreate`).
    max_surge: i32,
    /// `maxUnavailable` as a pod count (`replicas` for `Recreate`).
    max_unavailable: i32,
    /// `spec.minReadySeconds`.
    min_ready_seconds: i32,
    /// Neither paused nor being deleted: the controller may scale.
    active: bool,
}

impl RolloutLimits {
    fn of(deployment: &Deployment) -> RolloutLimits {
        let spec = &deployment.spec;
        let replicas = spec.replicas.unwrap_or(1);
        let strategy = spec.strategy.clone().unwrap_or_default();
        let recreate = strategy.type_.as_deref() == Some("Recreate");
        let rolling = strategy.rolling_update.unwrap_or_default();
        let (max_surge, max_unavailable) = if recreate {
            (0, replicas)
        } else {
            fenceposts(rolling.max_surge.as_ref(), rolling.max_unavailable.as_ref(), replicas)
        };
        RolloutLimits {
            replicas,
            recreate,
            max_surge,
            max_unavailable,
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            active: deployment.metadata.deletion_timestamp.is_none() && spec.paused != Some(true),
        }
    }

    /// The sizes a ReplicaSet scaled now is annotated with: the Deployment's `replicas` and
    /// `replicas + maxSurge` (see [`DESIRED_REPLICAS`], [`MAX_REPLICAS`]).
    fn sizes(&self) -> (i32, i32) {
        (self.replicas, self.replicas + self.max_surge)
    }
}

/// What one sync does to a Deployment's ReplicaSets, decided by `choose_step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RolloutStep {
    /// Paused or being deleted: only the status is kept up to date.
    StatusOnly,
    /// `spec.replicas` changed since the running ReplicaSets were last sized: resize them in
    /// proportion; rolling resumes on the next sync.
    ScaleProportionally,
    /// Old ReplicaSets to 0, then the new one up.
    Recreate,
    /// The new ReplicaSet up within `maxSurge`, old ones down within `maxUnavailable`.
    RollingUpdate,
}

/// Picks this sync's step. A scaling event is seen on a running ReplicaSet whose
/// desired-replicas annotation differs from `replicas`; under `Recreate` it is handled by
/// resizing only when a single ReplicaSet runs (several: the recreate itself fixes the sizes).
fn choose_step(limits: &RolloutLimits, owned: &[Arc<ReplicaSet>]) -> RolloutStep {
    if !limits.active {
        return RolloutStep::StatusOnly;
    }
    let running: Vec<&Arc<ReplicaSet>> = owned.iter().filter(|rs| spec_replicas(rs) > 0).collect();
    let scaling_event = running.iter().any(|rs| {
        annotation(rs, DESIRED_REPLICAS)
            .and_then(|desired| desired.parse::<i32>().ok())
            .is_some_and(|desired| desired != limits.replicas)
    });
    if scaling_event && (running.len() == 1 || !limits.recreate) {
        RolloutStep::ScaleProportionally
    } else if limits.recreate {
        RolloutStep::Recreate
    } else {
        RolloutStep::RollingUpdate
    }
}

/// A Deployment's ReplicaSets, split by template.
#[derive(Clone, Debug, Default)]
struct ReplicaSetsByTemplate {
    /// The one running the Deployment's template, if any.
    new: Option<Arc<ReplicaSet>>,
    /// Every other one, oldest first (by creation time, then name).
    old: Vec<Arc<ReplicaSet>>,
}

/// Finds the new ReplicaSet (the first running `template`) and the old ones.
fn split_by_template(template: &PodTemplateSpec, owned: &[Arc<ReplicaSet>]) -> ReplicaSetsByTemplate {
    let new = owned.iter().find(|rs| same_template(rs, template)).cloned();
    let mut old: Vec<Arc<ReplicaSet>> =
        owned.iter().filter(|rs| new.as_ref().is_none_or(|new| new.metadata.uid != rs.metadata.uid)).cloned().collect();
    old.sort_by_key(|rs| (rs.metadata.creation_timestamp.as_ref().map(|t| t.0), rs.metadata.name.clone()));
    ReplicaSetsByTemplate { new, old }
}

/// The revision a new ReplicaSet gets: one more than the highest old one (1 with none).
fn next_revision(old: &[Arc<ReplicaSet>]) -> i64 {
    old.iter().map(|rs| revision_of(rs)).max().unwrap_or(0) + 1
}

/// The revision `new` must take because it is a rollback target (its revision is not above
/// every old one's), or `None` when it already is the latest.
fn revision_after_rollback(new: &ReplicaSet, old: &[Arc<ReplicaSet>]) -> Option<i64> {
    let next = next_revision(old);
    (revision_of(new) < next).then_some(next)
}

/// The proportional resize of the running ReplicaSets, newest first: a lone one simply gets
/// `replicas`; several share `replicas + maxSurge` by [`proportional_scale`].
fn proportional_targets(
    limits: &RolloutLimits,
    owned: &[Arc<ReplicaSet>],
    status_replicas: i32,
) -> Vec<(Arc<ReplicaSet>, i32)> {
    let mut running: Vec<Arc<ReplicaSet>> = owned.iter().filter(|rs| spec_replicas(rs) > 0).cloned().collect();
    running.sort_by_key(|rs| {
        std::cmp::Reverse((rs.metadata.creation_timestamp.as_ref().map(|t| t.0), rs.metadata.name.clone()))
    });
    let targets = if running.len() == 1 {
        vec![limits.replicas]
    } else {
        let sets: Vec<ScaledReplicaSet> = running
            .iter()
            .map(|rs| ScaledReplicaSet {
                spec: spec_replicas(rs),
                max_replicas: annotation(rs, MAX_REPLICAS).and_then(|max| max.parse().ok()),
            })
            .collect();
        proportional_scale(limits.replicas, limits.max_surge, status_replicas, &sets)
    };
    running.into_iter().zip(targets).collect()
}

/// Under `Recreate`, the new ReplicaSet's size: `replicas` once no old pod is left, else
/// `None` (it waits).
fn recreate_new_replicas(limits: &RolloutLimits, old_pods: usize) -> Option<i32> {
    (old_pods == 0).then_some(limits.replicas)
}

/// The old ReplicaSets to delete for `revisionHistoryLimit` = `limit`: only empty ones
/// (`spec.replicas` 0, no pods per `has_no_pods`, not already being deleted), and only those
/// beyond the limit, lowest revision first.
fn history_to_delete(
    old: &[Arc<ReplicaSet>],
    limit: usize,
    has_no_pods: impl Fn(&ReplicaSet) -> bool,
) -> Vec<Arc<ReplicaSet>> {
    let mut empty: Vec<Arc<ReplicaSet>> = old
        .iter()
        .filter(|rs| rs.spec.replicas == Some(0) && rs.metadata.deletion_timestamp.is_none() && has_no_pods(rs))
        .cloned()
        .collect();
    if empty.len() <= limit {
        return Vec::new();
    }
    empty.sort_by_key(|rs| revision_of(rs));
    empty.truncate(empty.len() - limit);
    empty
}

/// When to look at the Deployment again: just after the progress deadline (`recheck`
/// seconds, when it runs), and each second while ready pods wait out `minReadySeconds`.
fn next_action(recheck: Option<i64>, min_ready_seconds: i32, counts: &PodCounts) -> Action {
    let mut action = Action::await_change();
    if let Some(seconds) = recheck {
        action = Action::requeue(Duration::from_secs(u64::try_from(seconds.max(0)).unwrap_or(0) + 1));
    }
    if min_ready_seconds > 0 && counts.ready > counts.available {
        action = action.sooner(Action::requeue(Duration::from_secs(1)));
    }
    action
}

/// The Deployment's selector, when it is valid and not empty (an empty one would match
/// every ReplicaSet of the namespace).
fn selector_of(deployment: &Deployment) -> Option<LabelSelector> {
    LabelSelector::from_meta(&deployment.spec.selector).ok().filter(|selector| !selector.is_empty())
}

/// `spec.replicas` of a ReplicaSet (default 1).
fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(1)
}

fn annotation(rs: &ReplicaSet, key: &str) -> Option<String> {
    rs.metadata.annotations.as_ref()?.get(key).cloned()
}

fn resource_version(meta: &ObjectMeta) -> Option<u64> {
    meta.resource_version.as_deref()?.parse().ok()
}

/// The revision annotation of a ReplicaSet (0 when absent).
pub fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// The template without the `pod-template-hash` label, as comparable JSON.
fn comparable(template: &PodTemplateSpec) -> Value {
    let mut template = template.clone();
    if let Some(meta) = template.metadata.as_mut()
        && let Some(labels) = meta.labels.as_mut()
    {
        labels.remove(POD_TEMPLATE_HASH);
        if labels.is_empty() {
            meta.labels = None;
        }
    }
    serde_json::to_value(template).unwrap_or(Value::Null)
}

/// Whether `rs` runs `template` (Kubernetes' `EqualIgnoreHash`).
pub fn same_template(rs: &ReplicaSet, template: &PodTemplateSpec) -> bool {
    rs.spec.template.as_ref().is_some_and(|own| comparable(own) == comparable(template))
}

/// The `pod-template-hash` of a template: FNV-1a (32 bit) of its JSON (keys sorted), written
/// in decimal, each digit mapped to the consonants and digits Kubernetes uses so it never
/// spells a word.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let text = comparable(template).to_string();
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    // Kubernetes' `rand.SafeEncodeString`: each decimal digit's byte, modulo the alphabet.
    hash.to_string().bytes().map(|digit| char::from(ALPHABET[usize::from(digit) % ALPHABET.len()])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy};
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    /// A ReplicaSet named `name`, created at second `created`, of `spec` replicas running
    /// `image`, with the given annotations.
    fn replica_set(name: &str, created: i64, spec: i32, image: &str, annotations: &[(&str, &str)]) -> Arc<ReplicaSet> {
        Arc::new(ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
                annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..ObjectMeta::default()
            },
            spec: ReplicaSetSpec { replicas: Some(spec), template: Some(template(image)), ..ReplicaSetSpec::default() },
            status: None,
        })
    }

    fn names(sets: &[Arc<ReplicaSet>]) -> Vec<String> {
        sets.iter().map(|rs| rs.metadata.name.clone().unwrap()).collect()
    }

    fn limits(replicas: i32, recreate: bool) -> RolloutLimits {
        let (max_surge, max_unavailable) = if recreate { (0, replicas) } else { (1, 0) };
        RolloutLimits { replicas, recreate, max_surge, max_unavailable, min_ready_seconds: 0, active: true }
    }

    #[test]
    fn recreate_surges_nothing_and_may_take_every_pod_down_and_paused_means_inactive() {
        let mut deployment = Deployment {
            spec: DeploymentSpec {
                replicas: Some(4),
                strategy: Some(DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None }),
                ..DeploymentSpec::default()
            },
            ..Deployment::default()
        };
        let recreate = RolloutLimits::of(&deployment);
        assert_eq!((recreate.max_surge, recreate.max_unavailable, recreate.active), (0, 4, true));
        assert_eq!(recreate.sizes(), (4, 4));
        deployment.spec.strategy = None;
        deployment.spec.paused = Some(true);
        let rolling = RolloutLimits::of(&deployment);
        assert_eq!((rolling.max_surge, rolling.max_unavailable), (1, 1), "25% of 4 each way");
        assert!(!rolling.active);
    }

    #[test]
    fn a_paused_or_deleted_deployment_only_gets_its_status_synced() {
        let owned = [replica_set("a", 1, 3, "a", &[(DESIRED_REPLICAS, "2")])];
        let inactive = RolloutLimits { active: false, ..limits(3, false) };
        assert_eq!(choose_step(&inactive, &owned), RolloutStep::StatusOnly);
    }

    #[test]
    fn a_replicas_change_mid_rollout_resizes_in_proportion_before_rolling() {
        let owned = [
            replica_set("old", 1, 3, "a", &[(DESIRED_REPLICAS, "3")]),
            replica_set("new", 2, 1, "b", &[(DESIRED_REPLICAS, "3")]),
        ];
        assert_eq!(choose_step(&limits(3, false), &owned), RolloutStep::RollingUpdate, "sizes unchanged");
        assert_eq!(choose_step(&limits(6, false), &owned), RolloutStep::ScaleProportionally);
        // Recreate resizes only a lone running ReplicaSet; with several, recreating fixes sizes.
        assert_eq!(choose_step(&limits(6, true), &owned), RolloutStep::Recreate);
        assert_eq!(choose_step(&limits(6, true), &owned[..1]), RolloutStep::ScaleProportionally);
        // A ReplicaSet scaled to 0 is not running: its old size is no scaling event.
        let stopped = [replica_set("old", 1, 0, "a", &[(DESIRED_REPLICAS, "3")])];
        assert_eq!(choose_step(&limits(6, false), &stopped), RolloutStep::RollingUpdate);
    }

    #[test]
    fn the_new_replica_set_runs_the_current_template_and_old_ones_come_oldest_first() {
        let owned =
            [replica_set("c", 3, 1, "c", &[]), replica_set("b", 2, 1, "b", &[]), replica_set("a", 1, 1, "a", &[])];
        let sets = split_by_template(&template("b"), &owned);
        assert_eq!(sets.new.map(|rs| rs.metadata.name.clone().unwrap()), Some("b".into()));
        assert_eq!(names(&sets.old), ["a", "c"]);
        assert!(split_by_template(&template("z"), &owned).new.is_none());
    }

    #[test]
    fn a_rolled_back_replica_set_takes_the_next_revision_and_the_latest_keeps_its_own() {
        let old = [replica_set("a", 1, 0, "a", &[(REVISION, "1")]), replica_set("c", 3, 0, "c", &[(REVISION, "3")])];
        let rolled_back = replica_set("b", 2, 1, "b", &[(REVISION, "2")]);
        assert_eq!(revision_after_rollback(&rolled_back, &old), Some(4));
        let latest = replica_set("d", 4, 1, "d", &[(REVISION, "4")]);
        assert_eq!(revision_after_rollback(&latest, &old), None);
        assert_eq!(next_revision(&[]), 1, "the first ReplicaSet is revision 1");
    }

    #[test]
    fn proportional_resizing_gives_a_lone_replica_set_replicas_and_shares_among_several_newest_first() {
        let lone = [replica_set("a", 1, 3, "a", &[(MAX_REPLICAS, "4")]), replica_set("z", 0, 0, "z", &[])];
        let targets = proportional_targets(&limits(8, false), &lone, 3);
        assert_eq!(
            targets.iter().map(|(rs, n)| (rs.metadata.name.clone().unwrap(), *n)).collect::<Vec<_>>(),
            [("a".into(), 8)]
        );
        // 4 old and 1 new at replicas 4 + surge 1, scaled to 8 (+1): 7 and 2, newest first.
        let two = [
            replica_set("old", 1, 4, "a", &[(MAX_REPLICAS, "5")]),
            replica_set("new", 2, 1, "b", &[(MAX_REPLICAS, "5")]),
        ];
        let targets = proportional_targets(&limits(8, false), &two, 5);
        let named: Vec<(String, i32)> = targets.iter().map(|(rs, n)| (rs.metadata.name.clone().unwrap(), *n)).collect();
        assert_eq!(named, [("new".to_string(), 2), ("old".to_string(), 7)]);
    }

    #[test]
    fn recreate_starts_the_new_replica_set_only_once_every_old_pod_is_gone() {
        assert_eq!(recreate_new_replicas(&limits(3, true), 1), None);
        assert_eq!(recreate_new_replicas(&limits(3, true), 0), Some(3));
    }

    #[test]
    fn only_empty_old_replica_sets_beyond_the_history_limit_go_lowest_revision_first() {
        let mut deleting = ReplicaSet::clone(&replica_set("deleting", 0, 0, "x", &[(REVISION, "1")]));
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(9).unwrap()));
        let old = [
            replica_set("r3", 3, 0, "c", &[(REVISION, "3")]),
            replica_set("r2", 2, 0, "b", &[(REVISION, "2")]),
            replica_set("running", 1, 2, "a", &[(REVISION, "1")]),
            replica_set("pods-left", 4, 0, "d", &[(REVISION, "4")]),
            replica_set("r5", 5, 0, "e", &[(REVISION, "5")]),
            Arc::new(deleting),
        ];
        let has_no_pods = |rs: &ReplicaSet| rs.metadata.name.as_deref() != Some("pods-left");
        // Empty: r2, r3, r5. A limit of 1 keeps r5, the highest revision.
        assert_eq!(names(&history_to_delete(&old, 1, has_no_pods)), ["r2", "r3"]);
        assert!(history_to_delete(&old, 3, has_no_pods).is_empty(), "within the limit");
    }

    #[test]
    fn a_running_progress_deadline_or_pods_not_yet_available_bring_the_deployment_back() {
        let settled = PodCounts { replicas: 2, updated: 2, ready: 2, available: 2 };
        assert_eq!(next_action(None, 5, &settled), Action::await_change());
        assert_eq!(next_action(Some(30), 0, &settled), Action::requeue(Duration::from_secs(31)));
        let waiting = PodCounts { available: 1, ..settled };
        assert_eq!(next_action(None, 5, &waiting), Action::requeue(Duration::from_secs(1)));
        assert_eq!(next_action(Some(30), 5, &waiting), Action::requeue(Duration::from_secs(1)), "the sooner");
        assert_eq!(next_action(None, 0, &waiting), Action::await_change(), "no minReadySeconds to wait out");
    }

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container { name: "app".into(), image: Some(image.into()), ..Container::default() }],
                ..PodSpec::default()
            }),
        }
    }

    #[test]
    fn the_template_hash_is_stable_differs_per_template_and_ignores_its_own_label() {
        assert_eq!(template_hash(&template("a")), template_hash(&template("a")));
        assert_ne!(template_hash(&template("a")), template_hash(&template("b")));
        let mut labelled = template("a");
        labelled.metadata.as_mut().unwrap().labels.as_mut().unwrap().insert(POD_TEMPLATE_HASH.into(), "x".into());
        assert_eq!(template_hash(&labelled), template_hash(&template("a")));
        let rs = ReplicaSet {
            spec: ReplicaSetSpec { template: Some(labelled), ..ReplicaSetSpec::default() },
            ..ReplicaSet::default()
        };
        assert!(same_template(&rs, &template("a")));
        assert!(!same_template(&rs, &template("b")));
    }
}
