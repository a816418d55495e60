//! The garbage collector: deletes objects whose owners are gone (background propagation).
//!
//! Every object may name its owners in `metadata.ownerReferences` (by kind, name and uid).
//! When the owner is deleted, Kubernetes' default (`propagationPolicy: Background`) is that
//! the owner goes at once and its dependents are deleted afterwards by this controller. So a
//! deleted Deployment takes its ReplicaSets with it, and they take their pods.
//!
//! The loop, for one dependent (a Pod, a ReplicaSet, a PersistentVolumeClaim or a
//! ControllerRevision, queued as [`GcKey::Dependent`], which
//! names its kind and its [`ObjectKey`]):
//! 1. for each owner reference, ask whether an object with that **uid** exists: first the
//!    cache of that kind, then, when the cache says no, an uncached GET by name (the cache may
//!    lag behind a create, and deleting a live object's dependents would be a disaster);
//! 2. if no owner exists any more, delete the dependent with a uid precondition (so a new
//!    object under the same name is never hit) and `propagationPolicy: Background`, so its own
//!    dependents follow in turn.
//!
//! Keys are queued when an owner is deleted (its dependents, via the owner-uid index) and when
//! a dependent is added or its references change (an owner may be long gone, e.g. while the
//! controller-manager was down).
//!
//! Foreground and orphan deletion are driven by finalizers on the *owner*, queued as
//! [`GcKey::Finalize`] (the owner's kind and key), for owners marked for deletion:
//! - `foregroundDeletion`: delete every dependent, and remove the finalizer (so the apiserver
//!   lets the owner go) only once no dependent whose reference has `blockOwnerDeletion: true`
//!   remains;
//! - `orphan`: remove the owner's reference from every dependent, then remove the finalizer.
//!
//! The apiserver adds these finalizers when a DELETE asks for `propagationPolicy:
//! Foreground` or `Orphan`.
//!
//! The decisions are pure functions with unit tests below: which keys the handlers queue
//! (`enqueue_if_owned`, `enqueue_owners`: only kinds the collector handles), which dependents
//! are worth checking (`is_candidate`), when the cache alone proves an owner
//! alive (`alive_by_cache`), which propagation to finish (`propagation_to_finish`: orphan wins
//! over foreground), and what a foreground pass deletes and waits for (`foreground_plan`).
//!
//! Not promised: owners of kinds this controller does not know (anything but Deployment,
//! ReplicaSet, ReplicationController, DaemonSet, StatefulSet, Job and Pod) are assumed to
//! exist, so their dependents are never deleted. A dependent with one owner gone and another
//! alive keeps both references.

use kube_core::ResourceExt;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube_core::Resource;
use prometheus::Registry;
use rkube_client::{Api, Client, DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use rkube_informer::ObjectKey;
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::handler::{Deleted, HandlerFns};
use rkube_informer::store::{OWNER_UID_INDEX, Store};
use rkube_informer::workqueue::{RateLimiter, WorkQueue};
use serde_json::json;

use crate::Error;
use crate::controller_ref::release_patch;
use crate::worker::{Action, Syncer};

/// The owner finalizer asking that dependents go first.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The owner finalizer asking that dependents be kept, without the owner's reference.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// How soon an owner waiting for its blocking dependents is looked at again, should their
/// delete events not wake it.
const FOREGROUND_RECHECK: Duration = Duration::from_secs(2);

/// What one entry of the collector's queue names: a dependent to check, or an owner whose
/// deletion to finish. Its `Display` (for logs) reads `Pod/ns/web-1` or
/// `Finalize/Deployment/ns/web`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GcKey {
    /// A dependent whose owners may be gone.
    Dependent {
        /// The dependent's kind.
        kind: DependentKind,
        /// The dependent.
        key: ObjectKey,
    },
    /// An owner marked for deletion, whose foreground or orphan deletion to finish.
    Finalize {
        /// The owner's kind.
        kind: OwnerKind,
        /// The owner.
        key: ObjectKey,
    },
}

impl std::fmt::Display for GcKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GcKey::Dependent { kind, key } => write!(f, "{kind}/{key}"),
            GcKey::Finalize { kind, key } => write!(f, "Finalize/{kind}/{key}"),
        }
    }
}

/// The kinds whose objects are collected when their owners are gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DependentKind {
    /// A Pod (owned by a ReplicaSet, usually).
    Pod,
    /// A ReplicaSet (owned by a Deployment, usually).
    ReplicaSet,
    /// A PersistentVolumeClaim (owned by a StatefulSet or one of its pods, when the set's
    /// `persistentVolumeClaimRetentionPolicy` says `Delete`).
    PersistentVolumeClaim,
    /// A ControllerRevision (owned by a DaemonSet or a StatefulSet).
    ControllerRevision,
}

impl DependentKind {
    /// The kind's name, as in `kind:` and in owner references.
    pub fn as_str(self) -> &'static str {
        match self {
            DependentKind::Pod => "Pod",
            DependentKind::ReplicaSet => "ReplicaSet",
            DependentKind::PersistentVolumeClaim => "PersistentVolumeClaim",
            DependentKind::ControllerRevision => "ControllerRevision",
        }
    }
}

impl std::fmt::Display for DependentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The owner kinds the collector caches and can look up; owners of any other kind count as
/// alive, and their deletion is not the collector's to finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OwnerKind {
    /// A Deployment.
    Deployment,
    /// A ReplicaSet.
    ReplicaSet,
    /// A Pod.
    Pod,
    /// A Job (batch/v1).
    Job,
    /// A ReplicationController (v1).
    ReplicationController,
    /// A DaemonSet (apps/v1).
    DaemonSet,
    /// A StatefulSet (apps/v1).
    StatefulSet,
}

impl OwnerKind {
    /// The owner kind named `kind` (an owner reference's `kind`), if the collector knows it.
    pub fn from_kind(kind: &str) -> Option<OwnerKind> {
        match kind {
            "Deployment" => Some(OwnerKind::Deployment),
            "ReplicaSet" => Some(OwnerKind::ReplicaSet),
            "Pod" => Some(OwnerKind::Pod),
            "Job" => Some(OwnerKind::Job),
            "ReplicationController" => Some(OwnerKind::ReplicationController),
            "DaemonSet" => Some(OwnerKind::DaemonSet),
            "StatefulSet" => Some(OwnerKind::StatefulSet),
            _ => None,
        }
    }

    /// The kind's name, as in `kind:` and in owner references.
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerKind::Deployment => "Deployment",
            OwnerKind::ReplicaSet => "ReplicaSet",
            OwnerKind::Pod => "Pod",
            OwnerKind::Job => "Job",
            OwnerKind::ReplicationController => "ReplicationController",
            OwnerKind::DaemonSet => "DaemonSet",
            OwnerKind::StatefulSet => "StatefulSet",
        }
    }
}

impl std::fmt::Display for OwnerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Queues the finalize key of an owner marked for deletion that carries one of our finalizers.
fn enqueue_if_finalizing<K: Resource>(queue: &WorkQueue<GcKey>, kind: OwnerKind, owner: &K) {
    let meta = owner.meta();
    let ours = meta.finalizers.iter().flatten().any(|f| f == FOREGROUND_FINALIZER || f == ORPHAN_FINALIZER);
    if meta.deletion_timestamp.is_some() && ours {
        queue.add(GcKey::Finalize { kind, key: ObjectKey::of(owner) });
    }
}

/// Queues the finalize keys of every owner of a dependent that just went away (owners of kinds
/// the collector does not know have nothing for it to finish).
fn enqueue_owners(queue: &WorkQueue<GcKey>, meta: &ObjectMeta) {
    for owner in meta.owner_references.iter().flatten() {
        if let Some(kind) = OwnerKind::from_kind(&owner.kind) {
            queue.add(GcKey::Finalize { kind, key: ObjectKey::new(meta.namespace.as_deref(), &owner.name) });
        }
    }
}

/// The garbage collector. Build with [`GarbageCollector::new`], then run workers over its queue.
pub struct GarbageCollector {
    client: Client,
    dependents: DependentStores,
    pods: Store<Pod>,
    replica_sets: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    jobs: Store<Job>,
    replication_controllers: Store<ReplicationController>,
    daemon_sets: Store<DaemonSet>,
    stateful_sets: Store<StatefulSet>,
    queue: WorkQueue<GcKey>,
}

/// Queues a dependent if it names any owner.
fn enqueue_if_owned<K: Resource>(queue: &WorkQueue<GcKey>, kind: DependentKind, object: &K) {
    if object.meta().owner_references.as_ref().is_some_and(|owners| !owners.is_empty()) {
        queue.add(GcKey::Dependent { kind, key: ObjectKey::of(object) });
    }
}

/// The caches of the dependent kinds.
#[derive(Clone)]
struct DependentStores {
    pods: Store<Pod>,
    replica_sets: Store<ReplicaSet>,
    claims: Store<PersistentVolumeClaim>,
    revisions: Store<ControllerRevision>,
}

impl DependentStores {
    /// Every cached dependent that names `owner_uid`.
    fn of(&self, owner_uid: &str) -> Result<Vec<Dependent>, rkube_informer::Error> {
        let mut dependents = Vec::new();
        for pod in self.pods.by_index(OWNER_UID_INDEX, owner_uid)? {
            dependents.push(Dependent { kind: DependentKind::Pod, meta: pod.metadata.clone() });
        }
        for rs in self.replica_sets.by_index(OWNER_UID_INDEX, owner_uid)? {
            dependents.push(Dependent { kind: DependentKind::ReplicaSet, meta: rs.metadata.clone() });
        }
        for claim in self.claims.by_index(OWNER_UID_INDEX, owner_uid)? {
            dependents.push(Dependent { kind: DependentKind::PersistentVolumeClaim, meta: claim.metadata.clone() });
        }
        for revision in self.revisions.by_index(OWNER_UID_INDEX, owner_uid)? {
            dependents.push(Dependent { kind: DependentKind::ControllerRevision, meta: revision.metadata.clone() });
        }
        Ok(dependents)
    }

    /// The metadata of the cached dependent `key` of `kind`.
    fn meta(&self, kind: DependentKind, key: &ObjectKey) -> Option<ObjectMeta> {
        match kind {
            DependentKind::Pod => self.pods.get(key).map(|object| object.metadata.clone()),
            DependentKind::ReplicaSet => self.replica_sets.get(key).map(|object| object.metadata.clone()),
            DependentKind::PersistentVolumeClaim => self.claims.get(key).map(|object| object.metadata.clone()),
            DependentKind::ControllerRevision => self.revisions.get(key).map(|object| object.metadata.clone()),
        }
    }
}

/// Queues every dependent that names `owner_uid`.
fn enqueue_dependents(queue: &WorkQueue<GcKey>, stores: &DependentStores, owner_uid: &str) {
    for dependent in stores.of(owner_uid).unwrap_or_default() {
        let key =
            ObjectKey::new(dependent.meta.namespace.as_deref(), dependent.meta.name.as_deref().unwrap_or_default());
        queue.add(GcKey::Dependent { kind: dependent.kind, key });
    }
}

impl GarbageCollector {
    /// Registers handlers on the factory's Pod, ReplicaSet and Deployment informers and a work
    /// queue named `garbagecollector`.
    pub fn new(factory: &SharedInformerFactory, client: Client, registry: Option<&Registry>) -> Arc<Self> {
        let pods = factory.informer::<Pod>(None);
        let replica_sets = factory.informer::<ReplicaSet>(None);
        let deployments = factory.informer::<Deployment>(None);
        let jobs = factory.informer::<Job>(None);
        let replication_controllers = factory.informer::<ReplicationController>(None);
        let daemon_sets = factory.informer::<DaemonSet>(None);
        let stateful_sets = factory.informer::<StatefulSet>(None);
        let claims = factory.informer::<PersistentVolumeClaim>(None);
        let revisions = factory.informer::<ControllerRevision>(None);
        let queue = WorkQueue::new("garbagecollector", RateLimiter::default(), registry);
        let dependents = DependentStores {
            pods: pods.store(),
            replica_sets: replica_sets.store(),
            claims: claims.store(),
            revisions: revisions.store(),
        };
        let collector = Arc::new(GarbageCollector {
            client,
            dependents: dependents.clone(),
            pods: pods.store(),
            replica_sets: replica_sets.store(),
            deployments: deployments.store(),
            jobs: jobs.store(),
            replication_controllers: replication_controllers.store(),
            daemon_sets: daemon_sets.store(),
            stateful_sets: stateful_sets.store(),
            queue: queue.clone(),
        });
        let (q1, q2) = (queue.clone(), queue.clone());
        revisions.add_handler(
            HandlerFns::new()
                .on_add(move |revision: &Arc<ControllerRevision>| {
                    enqueue_if_owned(&q1, DependentKind::ControllerRevision, revision.as_ref());
                })
                .on_update(move |old: &Arc<ControllerRevision>, new: &Arc<ControllerRevision>| {
                    if old.metadata.owner_references != new.metadata.owner_references {
                        enqueue_if_owned(&q2, DependentKind::ControllerRevision, new.as_ref());
                    }
                }),
        );
        let (q1, q2) = (queue.clone(), queue.clone());
        claims.add_handler(
            HandlerFns::new()
                .on_add(move |claim: &Arc<PersistentVolumeClaim>| {
                    enqueue_if_owned(&q1, DependentKind::PersistentVolumeClaim, claim.as_ref());
                })
                .on_update(move |old: &Arc<PersistentVolumeClaim>, new: &Arc<PersistentVolumeClaim>| {
                    if old.metadata.owner_references != new.metadata.owner_references {
                        enqueue_if_owned(&q2, DependentKind::PersistentVolumeClaim, new.as_ref());
                    }
                }),
        );
        let (q1, q2) = (queue.clone(), queue.clone());
        let d1 = dependents.clone();
        pods.add_handler(
            HandlerFns::new()
                .on_add(move |pod: &Arc<Pod>| {
                    enqueue_if_owned(&q1, DependentKind::Pod, pod.as_ref());
                    enqueue_if_finalizing(&q1, OwnerKind::Pod, pod.as_ref());
                })
                .on_update(move |old: &Arc<Pod>, new: &Arc<Pod>| {
                    if old.metadata.owner_references != new.metadata.owner_references {
                        enqueue_if_owned(&q2, DependentKind::Pod, new.as_ref());
                    }
                    enqueue_if_finalizing(&q2, OwnerKind::Pod, new.as_ref());
                })
                .on_delete({
                    let queue = queue.clone();
                    move |deleted: Deleted<Pod>| {
                        let uid = deleted.object().uid().unwrap_or_default();
                        enqueue_dependents(&queue, &d1, &uid);
                        enqueue_owners(&queue, &deleted.object().metadata);
                    }
                }),
        );
        let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
        let d2 = dependents.clone();
        replica_sets.add_handler(
            HandlerFns::new()
                .on_add(move |rs: &Arc<ReplicaSet>| {
                    enqueue_if_owned(&q1, DependentKind::ReplicaSet, rs.as_ref());
                    enqueue_if_finalizing(&q1, OwnerKind::ReplicaSet, rs.as_ref());
                })
                .on_update(move |old: &Arc<ReplicaSet>, new: &Arc<ReplicaSet>| {
                    if old.metadata.owner_references != new.metadata.owner_references {
                        enqueue_if_owned(&q2, DependentKind::ReplicaSet, new.as_ref());
                    }
                    enqueue_if_finalizing(&q2, OwnerKind::ReplicaSet, new.as_ref());
                })
                .on_delete(move |deleted: Deleted<ReplicaSet>| {
                    let uid = deleted.object().uid().unwrap_or_default();
                    enqueue_dependents(&q3, &d2, &uid);
                    enqueue_owners(&q3, &deleted.object().metadata);
                }),
        );
        let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
        let d3 = dependents.clone();
        jobs.add_handler(
            HandlerFns::new()
                .on_add(move |job: &Arc<Job>| enqueue_if_finalizing(&q1, OwnerKind::Job, job.as_ref()))
                .on_update(move |_, job: &Arc<Job>| enqueue_if_finalizing(&q2, OwnerKind::Job, job.as_ref()))
                .on_delete(move |deleted: Deleted<Job>| {
                    let uid = deleted.object().uid().unwrap_or_default();
                    enqueue_dependents(&q3, &d3, &uid);
                }),
        );
        let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
        let d4 = dependents.clone();
        replication_controllers.add_handler(
            HandlerFns::new()
                .on_add(move |rc: &Arc<ReplicationController>| {
                    enqueue_if_finalizing(&q1, OwnerKind::ReplicationController, rc.as_ref());
                })
                .on_update(move |_, rc: &Arc<ReplicationController>| {
                    enqueue_if_finalizing(&q2, OwnerKind::ReplicationController, rc.as_ref());
                })
                .on_delete(move |deleted: Deleted<ReplicationController>| {
                    let uid = deleted.object().uid().unwrap_or_default();
                    enqueue_dependents(&q3, &d4, &uid);
                }),
        );
        let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
        let d5 = dependents.clone();
        daemon_sets.add_handler(
            HandlerFns::new()
                .on_add(move |ds: &Arc<DaemonSet>| enqueue_if_finalizing(&q1, OwnerKind::DaemonSet, ds.as_ref()))
                .on_update(move |_, ds: &Arc<DaemonSet>| enqueue_if_finalizing(&q2, OwnerKind::DaemonSet, ds.as_ref()))
                .on_delete(move |deleted: Deleted<DaemonSet>| {
                    enqueue_dependents(&q3, &d5, &deleted.object().uid().unwrap_or_default());
                }),
        );
        let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
        let d6 = dependents.clone();
        stateful_sets.add_handler(
            HandlerFns::new()
                .on_add(move |s: &Arc<StatefulSet>| enqueue_if_finalizing(&q1, OwnerKind::StatefulSet, s.as_ref()))
                .on_update(move |_, s: &Arc<StatefulSet>| {
                    enqueue_if_finalizing(&q2, OwnerKind::StatefulSet, s.as_ref())
                })
                .on_delete(move |deleted: Deleted<StatefulSet>| {
                    enqueue_dependents(&q3, &d6, &deleted.object().uid().unwrap_or_default());
                }),
        );
        let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
        deployments.add_handler(
            HandlerFns::new()
                .on_add(move |d: &Arc<Deployment>| enqueue_if_finalizing(&q1, OwnerKind::Deployment, d.as_ref()))
                .on_update(move |_, d: &Arc<Deployment>| enqueue_if_finalizing(&q2, OwnerKind::Deployment, d.as_ref()))
                .on_delete(move |deleted: Deleted<Deployment>| {
                    let uid = deleted.object().uid().unwrap_or_default();
                    enqueue_dependents(&q3, &dependents, &uid);
                }),
        );
        collector
    }

    /// The collector's work queue of dependents to check and owners to finalize.
    pub fn queue(&self) -> WorkQueue<GcKey> {
        self.queue.clone()
    }

    /// Whether an object with the owner's uid exists: the cache first ([`alive_by_cache`]),
    /// then the apiserver.
    async fn owner_exists(&self, namespace: &str, owner: &OwnerReference) -> Result<bool, Error> {
        let key = ObjectKey::new(Some(namespace), &owner.name);
        let cached_uid =
            OwnerKind::from_kind(&owner.kind).and_then(|kind| self.owner_meta(kind, &key)).and_then(|meta| meta.uid);
        if alive_by_cache(owner, cached_uid.as_deref()) {
            return Ok(true);
        }
        let fresh = match owner.kind.as_str() {
            "Deployment" => uid_of(Api::<Deployment>::namespaced(self.client.clone(), namespace), &owner.name).await,
            "ReplicaSet" => uid_of(Api::<ReplicaSet>::namespaced(self.client.clone(), namespace), &owner.name).await,
            "Job" => uid_of(Api::<Job>::namespaced(self.client.clone(), namespace), &owner.name).await,
            "ReplicationController" => {
                uid_of(Api::<ReplicationController>::namespaced(self.client.clone(), namespace), &owner.name).await
            }
            "DaemonSet" => uid_of(Api::<DaemonSet>::namespaced(self.client.clone(), namespace), &owner.name).await,
            "StatefulSet" => uid_of(Api::<StatefulSet>::namespaced(self.client.clone(), namespace), &owner.name).await,
            _ => uid_of(Api::<Pod>::namespaced(self.client.clone(), namespace), &owner.name).await,
        };
        let fresh = fresh.map_err(|source| Error::Read { what: format!("looking up owner {key}"), source })?;
        Ok(fresh.as_deref() == Some(owner.uid.as_str()))
    }

    /// The cached metadata of the object `key` of `kind`.
    fn owner_meta(&self, kind: OwnerKind, key: &ObjectKey) -> Option<ObjectMeta> {
        match kind {
            OwnerKind::Deployment => self.deployments.get(key).map(|object| object.metadata.clone()),
            OwnerKind::ReplicaSet => self.replica_sets.get(key).map(|object| object.metadata.clone()),
            OwnerKind::Pod => self.pods.get(key).map(|object| object.metadata.clone()),
            OwnerKind::Job => self.jobs.get(key).map(|object| object.metadata.clone()),
            OwnerKind::ReplicationController => {
                self.replication_controllers.get(key).map(|object| object.metadata.clone())
            }
            OwnerKind::DaemonSet => self.daemon_sets.get(key).map(|object| object.metadata.clone()),
            OwnerKind::StatefulSet => self.stateful_sets.get(key).map(|object| object.metadata.clone()),
        }
    }
}

impl Syncer for GarbageCollector {
    type Key = GcKey;

    async fn sync(&self, key: &GcKey) -> Result<Action, Error> {
        match key {
            GcKey::Finalize { kind, key } => self.finalize(*kind, key).await,
            GcKey::Dependent { kind, key: object_key } => self.collect(*kind, object_key, key).await,
        }
    }
}

impl GarbageCollector {
    /// Deletes the dependent `object_key` of `kind` (queued as `key`) if none of its owners
    /// exists any more.
    async fn collect(&self, kind: DependentKind, object_key: &ObjectKey, key: &GcKey) -> Result<Action, Error> {
        let meta = self.dependents.meta(kind, object_key);
        let Some(meta) = meta.filter(is_candidate) else { return Ok(Action::await_change()) };
        let owners = meta.owner_references.clone().unwrap_or_default();
        let namespace = meta.namespace.clone().unwrap_or_default();
        for owner in &owners {
            if self.owner_exists(&namespace, owner).await? {
                return Ok(Action::await_change());
            }
        }
        let name = meta.name.clone().unwrap_or_default();
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(Preconditions { uid: meta.uid.clone(), resource_version: None }),
            ..DeleteParams::default()
        };
        let deleted = self.delete_dependent(kind, &namespace, &name, &params).await;
        match deleted {
            Ok(()) => {
                tracing::info!(%key, owners = ?owners.iter().map(|o| format!("{}/{}", o.kind, o.name)).collect::<Vec<_>>(), "owners gone; deleted");
                Ok(Action::await_change())
            }
            // Gone already, or replaced by a new object under the same name (uid precondition).
            Err(error) if error.is_not_found() || error.is_conflict() => Ok(Action::await_change()),
            Err(source) => Err(Error::Read { what: format!("deleting {key}"), source }),
        }
    }

    /// Foreground or orphan deletion of the owner `key` of `kind`, marked for deletion: handle
    /// its dependents, then remove our finalizer so the apiserver lets it go.
    async fn finalize(&self, kind: OwnerKind, key: &ObjectKey) -> Result<Action, Error> {
        let Some(owner) = self.owner_meta(kind, key) else { return Ok(Action::await_change()) };
        let Some(propagation) = propagation_to_finish(&owner) else { return Ok(Action::await_change()) };
        // For logs and errors: `Deployment/ns/web`.
        let owner_key = format!("{kind}/{key}");
        let uid = owner.uid.clone().unwrap_or_default();
        let dependents = self.dependents.of(&uid)?;
        match propagation {
            Propagation::Orphan => self.orphan(&owner_key, &owner, &dependents).await?,
            Propagation::Foreground => {
                let plan = foreground_plan(&dependents, &uid);
                self.delete_in_foreground(&owner_key, &owner, &plan.to_delete).await?;
                if plan.blocking > 0 {
                    // Woken by the dependents' delete events; the requeue is only a safety net.
                    return Ok(Action::requeue(FOREGROUND_RECHECK));
                }
            }
        }
        self.remove_finalizer(kind, &owner_key, &owner, propagation.finalizer()).await
    }

    /// Deletes the dependent `name` of `kind` in `namespace`.
    async fn delete_dependent(
        &self,
        kind: DependentKind,
        namespace: &str,
        name: &str,
        params: &DeleteParams,
    ) -> Result<(), rkube_client::Error> {
        match kind {
            DependentKind::Pod => {
                Api::<Pod>::namespaced(self.client.clone(), namespace).delete(name, params).await.map(drop)
            }
            DependentKind::ReplicaSet => {
                Api::<ReplicaSet>::namespaced(self.client.clone(), namespace).delete(name, params).await.map(drop)
            }
            DependentKind::PersistentVolumeClaim => {
                Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), namespace)
                    .delete(name, params)
                    .await
                    .map(drop)
            }
            DependentKind::ControllerRevision => Api::<ControllerRevision>::namespaced(self.client.clone(), namespace)
                .delete(name, params)
                .await
                .map(drop),
        }
    }

    /// Removes `owner`'s reference from each of its dependents.
    async fn orphan(&self, owner_key: &str, owner: &ObjectMeta, dependents: &[Dependent]) -> Result<(), Error> {
        let uid = owner.uid.clone().unwrap_or_default();
        let namespace = owner.namespace.clone().unwrap_or_default();
        for Dependent { kind, meta } in dependents {
            let name = meta.name.clone().unwrap_or_default();
            let patch = Patch::Merge(release_patch(meta, &uid));
            let params = PatchParams::default();
            let released = match *kind {
                DependentKind::Pod => Api::<Pod>::namespaced(self.client.clone(), &namespace)
                    .patch(&name, &params, &patch)
                    .await
                    .map(drop),
                DependentKind::ReplicaSet => Api::<ReplicaSet>::namespaced(self.client.clone(), &namespace)
                    .patch(&name, &params, &patch)
                    .await
                    .map(drop),
                DependentKind::PersistentVolumeClaim => {
                    Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), &namespace)
                        .patch(&name, &params, &patch)
                        .await
                        .map(drop)
                }
                DependentKind::ControllerRevision => {
                    Api::<ControllerRevision>::namespaced(self.client.clone(), &namespace)
                        .patch(&name, &params, &patch)
                        .await
                        .map(drop)
                }
            };
            match released {
                Ok(()) => tracing::info!(owner = %owner_key, dependent = %format!("{kind}/{name}"), "orphaned"),
                Err(error) if error.is_not_found() => {}
                Err(source) => {
                    return Err(Error::Release {
                        object: format!("{kind} {}", ObjectKey::new(Some(&namespace), &name)),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Deletes `dependents` with foreground propagation and a uid precondition.
    async fn delete_in_foreground(
        &self,
        owner_key: &str,
        owner: &ObjectMeta,
        dependents: &[&Dependent],
    ) -> Result<(), Error> {
        let namespace = owner.namespace.clone().unwrap_or_default();
        for Dependent { kind, meta } in dependents {
            let name = meta.name.clone().unwrap_or_default();
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Foreground),
                preconditions: Some(Preconditions { uid: meta.uid.clone(), resource_version: None }),
                ..DeleteParams::default()
            };
            let deleted = self.delete_dependent(*kind, &namespace, &name, &params).await;
            match deleted {
                Ok(()) => {
                    tracing::info!(owner = %owner_key, dependent = %format!("{kind}/{name}"), "deleted in foreground")
                }
                Err(error) if error.is_not_found() || error.is_conflict() => {}
                Err(source) => {
                    return Err(Error::Read {
                        what: format!("deleting {kind} {}", ObjectKey::new(Some(&namespace), &name)),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Removes the finalizer `done` from the owner (with its resourceVersion as precondition).
    async fn remove_finalizer(
        &self,
        kind: OwnerKind,
        owner_key: &str,
        owner: &ObjectMeta,
        done: &str,
    ) -> Result<Action, Error> {
        let namespace = owner.namespace.clone().unwrap_or_default();
        let remaining = finalizers_without(owner.finalizers.as_deref().unwrap_or_default(), done);
        let patch =
            Patch::Merge(json!({"metadata": {"finalizers": remaining, "resourceVersion": owner.resource_version}}));
        let name = owner.name.clone().unwrap_or_default();
        let removed = match kind {
            OwnerKind::Deployment => Api::<Deployment>::namespaced(self.client.clone(), &namespace)
                .patch(&name, &PatchParams::default(), &patch)
                .await
                .map(drop),
            OwnerKind::ReplicaSet => Api::<ReplicaSet>::namespaced(self.client.clone(), &namespace)
                .patch(&name, &PatchParams::default(), &patch)
                .await
                .map(drop),
            OwnerKind::Pod => Api::<Pod>::namespaced(self.client.clone(), &namespace)
                .patch(&name, &PatchParams::default(), &patch)
                .await
                .map(drop),
            OwnerKind::Job => Api::<Job>::namespaced(self.client.clone(), &namespace)
                .patch(&name, &PatchParams::default(), &patch)
                .await
                .map(drop),
            OwnerKind::ReplicationController => {
                Api::<ReplicationController>::namespaced(self.client.clone(), &namespace)
                    .patch(&name, &PatchParams::default(), &patch)
                    .await
                    .map(drop)
            }
            OwnerKind::DaemonSet => Api::<DaemonSet>::namespaced(self.client.clone(), &namespace)
                .patch(&name, &PatchParams::default(), &patch)
                .await
                .map(drop),
            OwnerKind::StatefulSet => Api::<StatefulSet>::namespaced(self.client.clone(), &namespace)
                .patch(&name, &PatchParams::default(), &patch)
                .await
                .map(drop),
        };
        match removed {
            Ok(()) => {
                tracing::info!(owner = %owner_key, finalizer = done, "dependents handled; finalizer removed");
                Ok(Action::await_change())
            }
            Err(error) if error.is_not_found() => Ok(Action::await_change()),
            Err(source) => Err(Error::Read { what: format!("removing finalizer {done} from {owner_key}"), source }),
        }
    }
}

/// The uid of the object `name` (uncached), or `None` when there is none.
async fn uid_of<K>(api: Api<K>, name: &str) -> Result<Option<String>, rkube_client::Error>
where
    K: rkube_client::ApiResource,
{
    Ok(api.get_opt(name).await?.and_then(|object| Resource::meta(&object).uid.clone()))
}

/// Whether a dependent is worth checking: not already being deleted, and naming an owner.
fn is_candidate(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_none() && meta.owner_references.as_ref().is_some_and(|owners| !owners.is_empty())
}

/// Whether the cache alone proves `owner` alive: it is of a kind the collector does not know
/// (never collected on its account), or the cached object under its name has its uid. When
/// not, only an uncached read can tell: the cache may lag behind a create.
fn alive_by_cache(owner: &OwnerReference, cached_uid: Option<&str>) -> bool {
    OwnerKind::from_kind(&owner.kind).is_none() || cached_uid == Some(owner.uid.as_str())
}

/// How an owner marked for deletion wants its dependents handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Propagation {
    /// [`ORPHAN_FINALIZER`]: keep them, without the owner's reference.
    Orphan,
    /// [`FOREGROUND_FINALIZER`]: delete them before the owner goes.
    Foreground,
}

impl Propagation {
    fn finalizer(self) -> &'static str {
        match self {
            Propagation::Orphan => ORPHAN_FINALIZER,
            Propagation::Foreground => FOREGROUND_FINALIZER,
        }
    }
}

/// The propagation the collector must finish for `owner`: `None` unless it is marked for
/// deletion and carries one of our finalizers; orphan wins when it carries both.
fn propagation_to_finish(owner: &ObjectMeta) -> Option<Propagation> {
    // Not marked for deletion: nothing to finish yet.
    owner.deletion_timestamp.as_ref()?;
    let finalizers = owner.finalizers.as_deref().unwrap_or_default();
    let has = |name: &str| finalizers.iter().any(|f| f == name);
    if has(ORPHAN_FINALIZER) {
        Some(Propagation::Orphan)
    } else if has(FOREGROUND_FINALIZER) {
        Some(Propagation::Foreground)
    } else {
        None
    }
}

/// One dependent of an owner, as the cache has it.
#[derive(Clone, Debug)]
struct Dependent {
    kind: DependentKind,
    meta: ObjectMeta,
}

/// What a foreground deletion does with an owner's dependents this pass.
#[derive(Debug)]
struct ForegroundPlan<'a> {
    /// Dependents to delete now: those not being deleted yet.
    to_delete: Vec<&'a Dependent>,
    /// Dependents, going or not, whose reference to the owner has `blockOwnerDeletion: true`:
    /// while any is left, the owner stays.
    blocking: usize,
}

fn foreground_plan<'a>(dependents: &'a [Dependent], owner_uid: &str) -> ForegroundPlan<'a> {
    let blocks = |meta: &ObjectMeta| {
        meta.owner_references.iter().flatten().any(|o| o.uid == owner_uid && o.block_owner_deletion == Some(true))
    };
    ForegroundPlan {
        to_delete: dependents.iter().filter(|d| d.meta.deletion_timestamp.is_none()).collect(),
        blocking: dependents.iter().filter(|d| blocks(&d.meta)).count(),
    }
}

/// The owner's finalizers once `done` is removed; the others stay, in order.
fn finalizers_without(finalizers: &[String], done: &str) -> Vec<String> {
    finalizers.iter().filter(|f| f.as_str() != done).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn reference(kind: &str, uid: &str, blocks: Option<bool>) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: "owner".into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: blocks,
        }
    }

    fn marked_for_deletion() -> Option<Time> {
        Some(Time(Timestamp::from_second(1).unwrap()))
    }

    fn meta(owners: Vec<OwnerReference>, deleting: bool, finalizers: &[&str]) -> ObjectMeta {
        ObjectMeta {
            owner_references: Some(owners),
            deletion_timestamp: if deleting { marked_for_deletion() } else { None },
            finalizers: Some(finalizers.iter().map(ToString::to_string).collect()),
            ..ObjectMeta::default()
        }
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new(Some("ns"), name)
    }

    /// Everything waiting in `queue`, in order.
    async fn drain(queue: &WorkQueue<GcKey>) -> Vec<GcKey> {
        let mut keys = Vec::new();
        while !queue.is_empty() {
            let Some(key) = queue.get().await else { break };
            queue.done(&key);
            keys.push(key);
        }
        keys
    }

    #[test]
    fn keys_display_their_kind_and_object_for_logs() {
        let dependent = GcKey::Dependent { kind: DependentKind::Pod, key: key("web-1") };
        assert_eq!(dependent.to_string(), "Pod/ns/web-1");
        let owner = GcKey::Finalize { kind: OwnerKind::Deployment, key: key("web") };
        assert_eq!(owner.to_string(), "Finalize/Deployment/ns/web");
    }

    #[test]
    fn owner_kinds_are_read_from_owner_references_by_name() {
        for kind in [OwnerKind::Deployment, OwnerKind::ReplicaSet, OwnerKind::Pod] {
            assert_eq!(OwnerKind::from_kind(kind.as_str()), Some(kind));
        }
        assert_eq!(OwnerKind::from_kind("Widget"), None);
    }

    #[tokio::test]
    async fn a_dependent_is_queued_under_its_kind_only_while_it_names_owners() {
        let queue = WorkQueue::new("test", RateLimiter::default(), None);
        let mut pod = Pod { metadata: meta(vec![reference("ReplicaSet", "u", None)], false, &[]), ..Pod::default() };
        pod.metadata.namespace = Some("ns".into());
        pod.metadata.name = Some("web-1".into());
        enqueue_if_owned(&queue, DependentKind::Pod, &pod);
        pod.metadata.owner_references = None;
        enqueue_if_owned(&queue, DependentKind::Pod, &pod);
        assert_eq!(drain(&queue).await, [GcKey::Dependent { kind: DependentKind::Pod, key: key("web-1") }]);
    }

    #[tokio::test]
    async fn a_gone_dependent_queues_its_owners_of_known_kinds_for_finalizing() {
        let queue = WorkQueue::new("test", RateLimiter::default(), None);
        let mut gone = meta(vec![reference("ReplicaSet", "u1", None), reference("Widget", "u2", None)], true, &[]);
        gone.namespace = Some("ns".into());
        enqueue_owners(&queue, &gone);
        // `reference` names every owner "owner"; a Widget (a custom kind) is not ours to finalize.
        assert_eq!(drain(&queue).await, [GcKey::Finalize { kind: OwnerKind::ReplicaSet, key: key("owner") }]);
    }

    #[test]
    fn a_dependent_is_checked_only_while_it_names_owners_and_is_not_being_deleted() {
        assert!(is_candidate(&meta(vec![reference("ReplicaSet", "u", None)], false, &[])));
        assert!(!is_candidate(&meta(vec![reference("ReplicaSet", "u", None)], true, &[])));
        assert!(!is_candidate(&meta(vec![], false, &[])));
        assert!(!is_candidate(&ObjectMeta::default()));
    }

    #[test]
    fn only_a_cached_owner_with_the_same_uid_or_an_unknown_kind_is_alive_without_asking_the_apiserver() {
        let owner = reference("ReplicaSet", "uid-1", None);
        assert!(alive_by_cache(&owner, Some("uid-1")));
        assert!(!alive_by_cache(&owner, Some("uid-2")), "recreated under the same name: not the owner");
        assert!(!alive_by_cache(&owner, None), "the cache may lag behind a create");
        assert!(alive_by_cache(&reference("Widget", "uid-1", None), None), "never collected on its account");
    }

    #[test]
    fn orphan_wins_over_foreground_and_neither_applies_before_the_owner_is_marked_for_deletion() {
        let both = [ORPHAN_FINALIZER, FOREGROUND_FINALIZER];
        assert_eq!(propagation_to_finish(&meta(vec![], true, &both)), Some(Propagation::Orphan));
        let foreground = meta(vec![], true, &["other", FOREGROUND_FINALIZER]);
        assert_eq!(propagation_to_finish(&foreground), Some(Propagation::Foreground));
        assert_eq!(propagation_to_finish(&meta(vec![], false, &both)), None, "not marked for deletion");
        assert_eq!(propagation_to_finish(&meta(vec![], true, &["other"])), None, "not ours");
    }

    #[test]
    fn a_foreground_deletion_deletes_dependents_not_yet_going_and_waits_for_those_that_block_the_owner() {
        let dependents = [
            Dependent {
                kind: DependentKind::Pod,
                meta: meta(vec![reference("ReplicaSet", "owner", Some(true))], false, &[]),
            },
            Dependent {
                kind: DependentKind::Pod,
                meta: meta(vec![reference("ReplicaSet", "owner", Some(true))], true, &[]),
            },
            Dependent {
                kind: DependentKind::Pod,
                meta: meta(vec![reference("ReplicaSet", "owner", None)], false, &[]),
            },
            Dependent {
                kind: DependentKind::Pod,
                meta: meta(vec![reference("ReplicaSet", "other", Some(true))], false, &[]),
            },
        ];
        let plan = foreground_plan(&dependents, "owner");
        assert_eq!(plan.to_delete.len(), 3, "every dependent not already going");
        assert_eq!(plan.blocking, 2, "only blockOwnerDeletion references to this owner hold it back");
        assert_eq!(foreground_plan(&dependents[2..], "owner").blocking, 0);
    }

    #[test]
    fn removing_our_finalizer_keeps_the_others_in_order() {
        let finalizers = ["a".to_string(), FOREGROUND_FINALIZER.to_string(), "b".to_string()];
        assert_eq!(finalizers_without(&finalizers, FOREGROUND_FINALIZER), ["a", "b"]);
    }
}
