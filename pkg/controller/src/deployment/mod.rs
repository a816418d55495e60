//! The Deployment controller: rolls a Deployment's pods from one pod template to the next
//! through ReplicaSets, one per template.
//!
//! The loop, for one Deployment key, judging from the caches:
//! 1. **claim** the ReplicaSets it controls (adopt matching orphans, release the others),
//!    like the ReplicaSet controller claims pods;
//! 2. find the **new** ReplicaSet: the one whose template equals the Deployment's (ignoring the
//!    `pod-template-hash` label). If none exists, create `<deployment>-<hash>`, where `hash`
//!    is a hash of the template, put on the ReplicaSet's selector, template and so its pods as
//!    the `pod-template-hash` label, so ReplicaSets of different templates never fight over
//!    pods. Its `deployment.kubernetes.io/revision` annotation is one more than the highest
//!    of the old ones; a rollback (`kubectl rollout undo` writes an old template back into the
//!    Deployment) finds the old ReplicaSet and gives it the new revision number;
//! 3. **roll**: `RollingUpdate` grows the new ReplicaSet within `maxSurge` and shrinks old ones
//!    only by pods available beyond `replicas - maxUnavailable` ([`rollout`]), counting pods
//!    that are *available* (ready for `minReadySeconds`), so a template whose pods never become
//!    ready stops the rollout with the old pods still serving; `Recreate` scales every old
//!    ReplicaSet to 0, waits until their pods are gone, then scales the new one up;
//! 4. **status** ([`status`]) and, once complete, delete old ReplicaSets beyond
//!    `revisionHistoryLimit` (default 10).
//!
//! While `spec.paused`, only the status is kept up to date.
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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use prometheus::Registry;
use rkube_api::selector::LabelSelector;
use rkube_client::{Api, Client, DeleteParams, Patch, PatchParams, PostParams};
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::handler::{Deleted, HandlerFns};
use rkube_informer::store::{NAMESPACE_INDEX, OWNER_UID_INDEX, Store, key_of};
use rkube_informer::workqueue::{RateLimiter, WorkQueue};
use serde_json::{Value, json};

use crate::Error;
use crate::controller_ref::{adopt_patch, controller_of, new_controller_ref, release_patch};
use crate::podutil::{is_active, is_available, is_ready};
use crate::worker::{Action, Syncer};
use rollout::{Replicas, Sized, fenceposts, new_replica_set_replicas, proportional_scale, scale_down_old};
use status::{Counts, Rollout, is_complete, status_for};

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

/// The Deployment controller. Build with [`DeploymentController::new`], run workers over its queue.
pub struct DeploymentController {
    client: Client,
    deployments: Store<Deployment>,
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    queue: WorkQueue<String>,
    /// ReplicaSet uid → resourceVersion of our last write to it.
    written: Mutex<HashMap<String, u64>>,
}

/// Queues the Deployment that controls `rs` (if any and known), else every Deployment of the
/// namespace whose selector matches it.
fn enqueue_for_replica_set(queue: &WorkQueue<String>, deployments: &Store<Deployment>, rs: &ReplicaSet) {
    let namespace = rs.metadata.namespace.clone().unwrap_or_default();
    if let Some(owner) = controller_of(&rs.metadata) {
        if owner.kind == KIND {
            queue.add(format!("{namespace}/{}", owner.name));
        }
        return;
    }
    let labels = rs.metadata.labels.clone().unwrap_or_default();
    for deployment in deployments.by_index(NAMESPACE_INDEX, &namespace).unwrap_or_default() {
        if LabelSelector::from_meta(&deployment.spec.selector).is_ok_and(|s| !s.is_empty() && s.matches(&labels)) {
            queue.add(key_of(deployment.as_ref()));
        }
    }
}

/// Queues the Deployment above the ReplicaSet that controls `pod`.
fn enqueue_for_pod(queue: &WorkQueue<String>, replica_sets: &Store<ReplicaSet>, pod: &Pod) {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let Some(owner) = controller_of(&pod.metadata).filter(|owner| owner.kind == "ReplicaSet") else { return };
    if let Some(rs) = replica_sets.get(&format!("{namespace}/{}", owner.name))
        && let Some(deployment) = controller_of(&rs.metadata).filter(|owner| owner.kind == KIND)
    {
        queue.add(format!("{namespace}/{}", deployment.name));
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
                .on_add(move |d: &Arc<Deployment>| q1.add(key_of(d.as_ref())))
                .on_update(move |_, d: &Arc<Deployment>| q2.add(key_of(d.as_ref())))
                .on_delete(move |d: Deleted<Deployment>| q3.add(key_of(d.object().as_ref()))),
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
            client,
            deployments: deployments.store(),
            replica_sets: replica_sets.store(),
            pods: pods.store(),
            queue,
            written: Mutex::new(HashMap::new()),
        })
    }

    /// The controller's work queue of Deployment keys.
    pub fn queue(&self) -> WorkQueue<String> {
        self.queue.clone()
    }

    fn remember_write(&self, rs: &ReplicaSet) {
        if let (Some(uid), Some(version)) = (rs.metadata.uid.clone(), resource_version(&rs.metadata)) {
            self.written.lock().unwrap_or_else(PoisonError::into_inner).insert(uid, version);
        }
    }

    /// Whether the cache holds every ReplicaSet at least as new as our last write to it.
    /// Writes the cache has caught up with are forgotten.
    fn cache_caught_up(&self, replica_sets: &[Arc<ReplicaSet>]) -> bool {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        let mut caught_up = true;
        for rs in replica_sets {
            let uid = rs.metadata.uid.clone().unwrap_or_default();
            let Some(wrote) = written.get(&uid).copied() else { continue };
            if resource_version(&rs.metadata).is_some_and(|seen| seen >= wrote) {
                written.remove(&uid);
            } else {
                caught_up = false;
            }
        }
        caught_up
    }

    fn replica_set_api(&self, namespace: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Adopts matching orphan ReplicaSets, releases owned ones that stopped matching, and
    /// returns those the Deployment controls.
    async fn claim(&self, deployment: &Deployment, selector: &LabelSelector) -> Result<Vec<Arc<ReplicaSet>>, Error> {
        let uid = deployment.metadata.uid.clone().unwrap_or_default();
        let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
        let api = self.replica_set_api(&namespace);
        let mut owned = Vec::new();
        for rs in self.replica_sets.by_index(NAMESPACE_INDEX, &namespace)? {
            let labels = rs.metadata.labels.clone().unwrap_or_default();
            let matches = selector.matches(&labels);
            let name = rs.metadata.name.clone().unwrap_or_default();
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
                Err(source) => return Err(Error::Adopt { object: format!("replicaset {namespace}/{name}"), source }),
            }
        }
        Ok(owned)
    }

    /// Active pods controlled by `rs`.
    fn pods_of(&self, rs: &ReplicaSet) -> Vec<Arc<Pod>> {
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        self.pods
            .by_index(OWNER_UID_INDEX, &uid)
            .unwrap_or_default()
            .into_iter()
            .filter(|pod| is_active(pod) && controller_of(&pod.metadata).is_some_and(|owner| owner.uid == uid))
            .collect()
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
        let namespace = rs.metadata.namespace.clone().unwrap_or_default();
        let name = rs.metadata.name.clone().unwrap_or_default();
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
                }
                self.remember_write(&scaled);
                Ok(())
            }
            Err(source) => {
                Err(Error::Read { what: format!("scaling replicaset {namespace}/{name} to {replicas}"), source })
            }
        }
    }

    /// Gives the new ReplicaSet the revision `revision` (after a rollback it had an old one).
    async fn set_revision(&self, rs: &ReplicaSet, revision: i64) -> Result<Arc<ReplicaSet>, Error> {
        let namespace = rs.metadata.namespace.clone().unwrap_or_default();
        let name = rs.metadata.name.clone().unwrap_or_default();
        let patch = json!({"metadata": {"annotations": {REVISION: revision.to_string()}}});
        match self.replica_set_api(&namespace).patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(updated) => {
                self.remember_write(&updated);
                Ok(Arc::new(updated))
            }
            Err(source) => Err(Error::Read { what: format!("annotating replicaset {namespace}/{name}"), source }),
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
        let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
        let hash = template_hash(&deployment.spec.template);
        let name = format!("{}-{hash}", deployment.metadata.name.clone().unwrap_or_default());
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
                        key: key_of(deployment),
                        reason: format!("replicaset {name} exists with another template (hash collision)"),
                    })
                }
            }
            Err(source) => Err(Error::Read { what: format!("creating replicaset {name}"), source }),
        }
    }
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

impl Syncer for DeploymentController {
    async fn sync(&self, key: &str) -> Result<Action, Error> {
        let Some(deployment) = self.deployments.get(key) else { return Ok(Action::await_change()) };
        let selector = match LabelSelector::from_meta(&deployment.spec.selector) {
            Ok(selector) if !selector.is_empty() => selector,
            _ => {
                tracing::warn!(%key, "invalid or empty selector; not syncing");
                return Ok(Action::await_change());
            }
        };
        let owned = self.claim(&deployment, &selector).await?;
        if !self.cache_caught_up(&owned) {
            // Our own last write is not in the cache yet: decide on fresh data only.
            return Ok(Action::requeue(Duration::from_millis(200)));
        }
        let mut new_rs: Option<Arc<ReplicaSet>> =
            owned.iter().find(|rs| same_template(rs, &deployment.spec.template)).cloned();
        let mut old: Vec<Arc<ReplicaSet>> = owned
            .iter()
            .filter(|rs| new_rs.as_ref().is_none_or(|new| new.metadata.uid != rs.metadata.uid))
            .cloned()
            .collect();
        old.sort_by_key(|rs| (rs.metadata.creation_timestamp.as_ref().map(|t| t.0), rs.metadata.name.clone()));
        let replicas = deployment.spec.replicas.unwrap_or(1);
        let strategy = deployment.spec.strategy.clone().unwrap_or_default();
        let recreate = strategy.type_.as_deref() == Some("Recreate");
        let rolling = strategy.rolling_update.unwrap_or_default();
        let (max_surge, max_unavailable) = if recreate {
            (0, replicas)
        } else {
            fenceposts(rolling.max_surge.as_ref(), rolling.max_unavailable.as_ref(), replicas)
        };
        let min_ready = deployment.spec.min_ready_seconds.unwrap_or(0);
        let now = Timestamp::now();
        let mut created_new = false;
        let active = deployment.metadata.deletion_timestamp.is_none() && deployment.spec.paused != Some(true);
        let sizes = (replicas, replicas + max_surge);

        // A scaling event (spec.replicas changed since the running ReplicaSets were last sized):
        // resize them in proportion first; rolling resumes on the next sync.
        let mut running: Vec<Arc<ReplicaSet>> =
            owned.iter().filter(|rs| rs.spec.replicas.unwrap_or(1) > 0).cloned().collect();
        let scaling_event = running.iter().any(|rs| {
            annotation(rs, DESIRED_REPLICAS)
                .and_then(|desired| desired.parse::<i32>().ok())
                .is_some_and(|d| d != replicas)
        });
        let resize = active && scaling_event && (running.len() == 1 || !recreate);
        if resize {
            running.sort_by_key(|rs| {
                std::cmp::Reverse((rs.metadata.creation_timestamp.as_ref().map(|t| t.0), rs.metadata.name.clone()))
            });
            let sets: Vec<Sized> = running
                .iter()
                .map(|rs| Sized {
                    spec: rs.spec.replicas.unwrap_or(1),
                    max_replicas: annotation(rs, MAX_REPLICAS).and_then(|max| max.parse().ok()),
                })
                .collect();
            let status_replicas = deployment.status.as_ref().and_then(|status| status.replicas).unwrap_or(0);
            let targets = if running.len() == 1 {
                vec![replicas]
            } else {
                proportional_scale(replicas, max_surge, status_replicas, &sets)
            };
            for (rs, target) in running.iter().zip(targets) {
                self.scale(rs, target, sizes).await?;
            }
        }

        if active && !resize {
            let max_old_revision = old.iter().map(|rs| revision_of(rs)).max().unwrap_or(0);
            if let Some(rs) = &new_rs
                && revision_of(rs) <= max_old_revision
            {
                new_rs = Some(self.set_revision(rs, max_old_revision + 1).await?);
            }
            let old_pods: usize = old.iter().map(|rs| self.pods_of(rs).len()).sum();
            if recreate {
                for rs in &old {
                    self.scale(rs, 0, sizes).await?;
                }
                if old_pods == 0 {
                    match &new_rs {
                        Some(rs) => self.scale(rs, replicas, sizes).await?,
                        None => {
                            new_rs = Some(self.create_new(&deployment, max_old_revision + 1, replicas, sizes).await?);
                            created_new = true;
                        }
                    }
                }
            } else {
                let total_spec: i32 = owned.iter().map(|rs| rs.spec.replicas.unwrap_or(1)).sum();
                let new_spec = new_rs.as_ref().map_or(0, |rs| rs.spec.replicas.unwrap_or(1));
                let target = new_replica_set_replicas(replicas, max_surge, total_spec, new_spec);
                match &new_rs {
                    Some(rs) => self.scale(rs, target, sizes).await?,
                    None => {
                        new_rs = Some(self.create_new(&deployment, max_old_revision + 1, target, sizes).await?);
                        created_new = true;
                    }
                }
                let view = |rs: &ReplicaSet, spec: i32| {
                    let available = self.pods_of(rs).iter().filter(|pod| is_available(pod, min_ready, now)).count();
                    Replicas { spec, available: i32::try_from(available).unwrap_or(i32::MAX).min(spec) }
                };
                // The new ReplicaSet as it is now (its scale-up above has no pods yet).
                let new_view = new_rs.as_ref().map_or(Replicas { spec: 0, available: 0 }, |rs| view(rs, target));
                let old_views: Vec<Replicas> = old.iter().map(|rs| view(rs, rs.spec.replicas.unwrap_or(1))).collect();
                let targets = scale_down_old(replicas, max_unavailable, &new_view, &old_views);
                for (rs, target) in old.iter().zip(targets) {
                    self.scale(rs, target, sizes).await?;
                }
            }
        }

        // Status, from the pods in the cache.
        let mut counts = Counts::default();
        for rs in &owned {
            let pods = self.pods_of(rs);
            let count =
                |f: &dyn Fn(&Pod) -> bool| i32::try_from(pods.iter().filter(|pod| f(pod)).count()).unwrap_or(i32::MAX);
            counts.replicas += count(&|_| true);
            counts.ready += count(&|pod| is_ready(pod));
            counts.available += count(&|pod| is_available(pod, min_ready, now));
            if new_rs.as_ref().is_some_and(|new| new.metadata.uid == rs.metadata.uid) {
                counts.updated += count(&|_| true);
            }
        }
        let rollout = Rollout {
            counts,
            max_unavailable: if recreate { 0 } else { max_unavailable },
            new_replica_set: new_rs.as_ref().and_then(|rs| rs.metadata.name.clone()),
            created_new,
        };
        let (status, recheck) = status_for(&deployment, &rollout, now);
        self.write_status(&deployment, status, new_rs.as_deref()).await?;
        let mut action = Action::await_change();
        if let Some(seconds) = recheck {
            // The progress deadline runs: look again just after it would pass.
            action = Action::requeue(Duration::from_secs(u64::try_from(seconds.max(0)).unwrap_or(0) + 1));
        }
        if min_ready > 0 && counts.ready > counts.available {
            // Ready pods become available as minReadySeconds pass.
            action = action.sooner(Action::requeue(Duration::from_secs(1)));
        }
        if active && is_complete(&deployment, &counts) {
            self.clean_up_history(&deployment, &old).await?;
        }
        Ok(action)
    }
}

impl DeploymentController {
    async fn write_status(
        &self,
        deployment: &Deployment,
        status: Value,
        new_rs: Option<&ReplicaSet>,
    ) -> Result<(), Error> {
        let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
        let name = deployment.metadata.name.clone().unwrap_or_default();
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &namespace);
        let revision = new_rs.map(|rs| revision_of(rs).to_string());
        let current_revision = deployment.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).cloned();
        if let Some(revision) = revision.filter(|revision| Some(revision) != current_revision.as_ref()) {
            let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => {}
                Err(error) if error.is_not_found() => return Ok(()),
                Err(source) => {
                    return Err(Error::Read { what: format!("annotating deployment {namespace}/{name}"), source });
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
            Err(source) => Err(Error::UpdateStatus { key: key_of(deployment), source }),
        }
    }

    /// Deletes the oldest empty old ReplicaSets beyond `revisionHistoryLimit`.
    async fn clean_up_history(&self, deployment: &Deployment, old: &[Arc<ReplicaSet>]) -> Result<(), Error> {
        let limit = usize::try_from(deployment.spec.revision_history_limit.unwrap_or(10)).unwrap_or(0);
        let mut empty: Vec<&Arc<ReplicaSet>> = old
            .iter()
            .filter(|rs| {
                rs.spec.replicas == Some(0) && rs.metadata.deletion_timestamp.is_none() && self.pods_of(rs).is_empty()
            })
            .collect();
        if empty.len() <= limit {
            return Ok(());
        }
        empty.sort_by_key(|rs| revision_of(rs));
        let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
        for rs in &empty[..empty.len() - limit] {
            let name = rs.metadata.name.clone().unwrap_or_default();
            match self.replica_set_api(&namespace).delete(&name, &DeleteParams::default()).await {
                Ok(_) => tracing::info!(rs = %name, "deleted old replica set beyond revisionHistoryLimit"),
                Err(error) if error.is_not_found() => {}
                Err(source) => {
                    return Err(Error::Read { what: format!("deleting replicaset {namespace}/{name}"), source });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

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
