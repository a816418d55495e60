//! The garbage collector: deletes objects whose owners are gone (background propagation).
//!
//! Every object may name its owners in `metadata.ownerReferences` (by kind, name and uid).
//! When the owner is deleted, Kubernetes' default (`propagationPolicy: Background`) is that
//! the owner goes at once and its dependents are deleted afterwards by this controller. So a
//! deleted Deployment takes its ReplicaSets with it, and they take their pods.
//!
//! The loop, for one dependent (a Pod or a ReplicaSet, keyed `kind/namespace/name`):
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
//! Foreground and orphan deletion are driven by finalizers on the *owner*, keyed
//! `Finalize/<kind>/<namespace>/<name>`, for owners marked for deletion:
//! - `foregroundDeletion`: delete every dependent, and remove the finalizer (so the apiserver
//!   lets the owner go) only once no dependent whose reference has `blockOwnerDeletion: true`
//!   remains;
//! - `orphan`: remove the owner's reference from every dependent, then remove the finalizer.
//!
//! The apiserver adds these finalizers when a DELETE asks for `propagationPolicy:
//! Foreground` or `Orphan`.
//!
//! Not promised: owners of kinds this controller does not know (anything but Deployment, ReplicaSet and
//! Pod) are assumed to exist, so their dependents are never deleted. A dependent with one
//! owner gone and another alive keeps both references.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube_core::Resource;
use prometheus::Registry;
use rkube_client::{Api, Client, DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::handler::{Deleted, HandlerFns};
use rkube_informer::store::{OWNER_UID_INDEX, Store, key_of};
use rkube_informer::workqueue::{RateLimiter, WorkQueue};
use serde_json::json;

use crate::Error;
use crate::controller_ref::release_patch;
use crate::worker::{Action, Syncer};

/// The kinds whose objects are collected when their owners are gone.
const DEPENDENT_KINDS: &[&str] = &["Pod", "ReplicaSet"];
/// The owner finalizer asking that dependents go first.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The owner finalizer asking that dependents be kept, without the owner's reference.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// How soon an owner waiting for its blocking dependents is looked at again, should their
/// delete events not wake it.
const FOREGROUND_RECHECK: Duration = Duration::from_secs(2);

/// Queues the finalize key of an owner marked for deletion that carries one of our finalizers.
fn enqueue_if_finalizing<K: Resource<DynamicType = ()>>(queue: &WorkQueue<String>, owner: &K) {
    let meta = owner.meta();
    let ours = meta.finalizers.iter().flatten().any(|f| f == FOREGROUND_FINALIZER || f == ORPHAN_FINALIZER);
    if meta.deletion_timestamp.is_some() && ours {
        queue.add(format!("Finalize/{}/{}", K::kind(&()), key_of(owner)));
    }
}

/// Queues the finalize keys of every owner of a dependent that just went away.
fn enqueue_owners(queue: &WorkQueue<String>, meta: &ObjectMeta) {
    let namespace = meta.namespace.clone().unwrap_or_default();
    for owner in meta.owner_references.iter().flatten() {
        queue.add(format!("Finalize/{}/{namespace}/{}", owner.kind, owner.name));
    }
}

/// The garbage collector. Build with [`GarbageCollector::new`], then run workers over its queue.
pub struct GarbageCollector {
    client: Client,
    pods: Store<Pod>,
    replica_sets: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    queue: WorkQueue<String>,
}

/// Queues a dependent if it names any owner.
fn enqueue_if_owned<K: Resource<DynamicType = ()>>(queue: &WorkQueue<String>, object: &K) {
    if object.meta().owner_references.as_ref().is_some_and(|owners| !owners.is_empty()) {
        queue.add(format!("{}/{}", K::kind(&()), key_of(object)));
    }
}

/// Queues every dependent (pods and ReplicaSets) that names `owner_uid`.
fn enqueue_dependents(queue: &WorkQueue<String>, pods: &Store<Pod>, replica_sets: &Store<ReplicaSet>, owner_uid: &str) {
    for pod in pods.by_index(OWNER_UID_INDEX, owner_uid).unwrap_or_default() {
        queue.add(format!("Pod/{}", key_of(pod.as_ref())));
    }
    for rs in replica_sets.by_index(OWNER_UID_INDEX, owner_uid).unwrap_or_default() {
        queue.add(format!("ReplicaSet/{}", key_of(rs.as_ref())));
    }
}

impl GarbageCollector {
    /// Registers handlers on the factory's Pod, ReplicaSet and Deployment informers and a work
    /// queue named `garbagecollector`.
    pub fn new(factory: &SharedInformerFactory, client: Client, registry: Option<&Registry>) -> Arc<Self> {
        let pods = factory.informer::<Pod>(None);
        let replica_sets = factory.informer::<ReplicaSet>(None);
        let deployments = factory.informer::<Deployment>(None);
        let queue = WorkQueue::new("garbagecollector", RateLimiter::default(), registry);
        let collector = Arc::new(GarbageCollector {
            client,
            pods: pods.store(),
            replica_sets: replica_sets.store(),
            deployments: deployments.store(),
            queue: queue.clone(),
        });
        let (q1, q2) = (queue.clone(), queue.clone());
        let (pod_store, rs_store) = (pods.store(), replica_sets.store());
        let (p1, r1) = (pod_store.clone(), rs_store.clone());
        pods.add_handler(
            HandlerFns::new()
                .on_add(move |pod: &Arc<Pod>| {
                    enqueue_if_owned(&q1, pod.as_ref());
                    enqueue_if_finalizing(&q1, pod.as_ref());
                })
                .on_update(move |old: &Arc<Pod>, new: &Arc<Pod>| {
                    if old.metadata.owner_references != new.metadata.owner_references {
                        enqueue_if_owned(&q2, new.as_ref());
                    }
                    enqueue_if_finalizing(&q2, new.as_ref());
                })
                .on_delete({
                    let queue = queue.clone();
                    move |deleted: Deleted<Pod>| {
                        let uid = deleted.object().metadata.uid.clone().unwrap_or_default();
                        enqueue_dependents(&queue, &p1, &r1, &uid);
                        enqueue_owners(&queue, &deleted.object().metadata);
                    }
                }),
        );
        let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
        let (p2, r2) = (pod_store.clone(), rs_store.clone());
        replica_sets.add_handler(
            HandlerFns::new()
                .on_add(move |rs: &Arc<ReplicaSet>| {
                    enqueue_if_owned(&q1, rs.as_ref());
                    enqueue_if_finalizing(&q1, rs.as_ref());
                })
                .on_update(move |old: &Arc<ReplicaSet>, new: &Arc<ReplicaSet>| {
                    if old.metadata.owner_references != new.metadata.owner_references {
                        enqueue_if_owned(&q2, new.as_ref());
                    }
                    enqueue_if_finalizing(&q2, new.as_ref());
                })
                .on_delete(move |deleted: Deleted<ReplicaSet>| {
                    let uid = deleted.object().metadata.uid.clone().unwrap_or_default();
                    enqueue_dependents(&q3, &p2, &r2, &uid);
                    enqueue_owners(&q3, &deleted.object().metadata);
                }),
        );
        let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
        deployments.add_handler(
            HandlerFns::new()
                .on_add(move |d: &Arc<Deployment>| enqueue_if_finalizing(&q1, d.as_ref()))
                .on_update(move |_, d: &Arc<Deployment>| enqueue_if_finalizing(&q2, d.as_ref()))
                .on_delete(move |deleted: Deleted<Deployment>| {
                    let uid = deleted.object().metadata.uid.clone().unwrap_or_default();
                    enqueue_dependents(&q3, &pod_store, &rs_store, &uid);
                }),
        );
        collector
    }

    /// The collector's work queue of `kind/namespace/name` keys.
    pub fn queue(&self) -> WorkQueue<String> {
        self.queue.clone()
    }

    /// Whether an object with the owner's uid exists: the cache first, then the apiserver.
    async fn owner_exists(&self, namespace: &str, owner: &OwnerReference) -> Result<bool, Error> {
        let key = format!("{namespace}/{}", owner.name);
        let cached_uid = match owner.kind.as_str() {
            "Deployment" => self.deployments.get(&key).and_then(|object| object.metadata.uid.clone()),
            "ReplicaSet" => self.replica_sets.get(&key).and_then(|object| object.metadata.uid.clone()),
            "Pod" => self.pods.get(&key).and_then(|object| object.metadata.uid.clone()),
            _ => return Ok(true), // a kind we do not know: never collect on its account
        };
        if cached_uid.as_deref() == Some(owner.uid.as_str()) {
            return Ok(true);
        }
        let fresh = match owner.kind.as_str() {
            "Deployment" => uid_of(Api::<Deployment>::namespaced(self.client.clone(), namespace), &owner.name).await,
            "ReplicaSet" => uid_of(Api::<ReplicaSet>::namespaced(self.client.clone(), namespace), &owner.name).await,
            _ => uid_of(Api::<Pod>::namespaced(self.client.clone(), namespace), &owner.name).await,
        };
        let fresh = fresh.map_err(|source| Error::Read { what: format!("looking up owner {key}"), source })?;
        Ok(fresh.as_deref() == Some(owner.uid.as_str()))
    }
}

impl GarbageCollector {
    /// The cached metadata of the owner `kind/namespace/name`, for the kinds we cache.
    fn owner_meta(&self, kind: &str, key: &str) -> Option<ObjectMeta> {
        match kind {
            "Deployment" => self.deployments.get(key).map(|object| object.metadata.clone()),
            "ReplicaSet" => self.replica_sets.get(key).map(|object| object.metadata.clone()),
            "Pod" => self.pods.get(key).map(|object| object.metadata.clone()),
            _ => None,
        }
    }

    /// Foreground or orphan deletion of one owner marked for deletion.
    async fn finalize(&self, owner_key: &str) -> Result<Action, Error> {
        let Some((kind, key)) = owner_key.split_once('/') else { return Ok(Action::await_change()) };
        let Some(owner) = self.owner_meta(kind, key) else { return Ok(Action::await_change()) };
        let finalizers = owner.finalizers.clone().unwrap_or_default();
        let orphan = finalizers.iter().any(|f| f == ORPHAN_FINALIZER);
        let foreground = finalizers.iter().any(|f| f == FOREGROUND_FINALIZER);
        if owner.deletion_timestamp.is_none() || !(orphan || foreground) {
            return Ok(Action::await_change());
        }
        let uid = owner.uid.clone().unwrap_or_default();
        let namespace = owner.namespace.clone().unwrap_or_default();
        let mut dependents: Vec<(&str, ObjectMeta)> = Vec::new();
        for pod in self.pods.by_index(OWNER_UID_INDEX, &uid)? {
            dependents.push(("Pod", pod.metadata.clone()));
        }
        for rs in self.replica_sets.by_index(OWNER_UID_INDEX, &uid)? {
            dependents.push(("ReplicaSet", rs.metadata.clone()));
        }
        let finished = if orphan {
            for (dependent_kind, meta) in &dependents {
                let name = meta.name.clone().unwrap_or_default();
                let patch = Patch::Merge(release_patch(meta, &uid));
                let released = match *dependent_kind {
                    "Pod" => Api::<Pod>::namespaced(self.client.clone(), &namespace)
                        .patch(&name, &PatchParams::default(), &patch)
                        .await
                        .map(drop),
                    _ => Api::<ReplicaSet>::namespaced(self.client.clone(), &namespace)
                        .patch(&name, &PatchParams::default(), &patch)
                        .await
                        .map(drop),
                };
                match released {
                    Ok(()) => {
                        tracing::info!(owner = %owner_key, dependent = %format!("{dependent_kind}/{name}"), "orphaned")
                    }
                    Err(error) if error.is_not_found() => {}
                    Err(source) => {
                        return Err(Error::Release { object: format!("{dependent_kind} {namespace}/{name}"), source });
                    }
                }
            }
            true
        } else {
            let mut blocking = 0;
            for (dependent_kind, meta) in &dependents {
                let blocks = meta
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == uid && o.block_owner_deletion == Some(true));
                if blocks {
                    blocking += 1;
                }
                if meta.deletion_timestamp.is_some() {
                    continue;
                }
                let name = meta.name.clone().unwrap_or_default();
                let params = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Foreground),
                    preconditions: Some(Preconditions { uid: meta.uid.clone(), resource_version: None }),
                    ..DeleteParams::default()
                };
                let deleted = match *dependent_kind {
                    "Pod" => {
                        Api::<Pod>::namespaced(self.client.clone(), &namespace).delete(&name, &params).await.map(drop)
                    }
                    _ => Api::<ReplicaSet>::namespaced(self.client.clone(), &namespace)
                        .delete(&name, &params)
                        .await
                        .map(drop),
                };
                match deleted {
                    Ok(()) => {
                        tracing::info!(owner = %owner_key, dependent = %format!("{dependent_kind}/{name}"), "deleted in foreground")
                    }
                    Err(error) if error.is_not_found() || error.is_conflict() => {}
                    Err(source) => {
                        return Err(Error::Read {
                            what: format!("deleting {dependent_kind} {namespace}/{name}"),
                            source,
                        });
                    }
                }
            }
            blocking == 0
        };
        if !finished {
            // Woken by the dependents' delete events; the requeue is only a safety net.
            return Ok(Action::requeue(FOREGROUND_RECHECK));
        }
        let done = if orphan { ORPHAN_FINALIZER } else { FOREGROUND_FINALIZER };
        let remaining: Vec<&String> = finalizers.iter().filter(|f| f.as_str() != done).collect();
        let patch =
            Patch::Merge(json!({"metadata": {"finalizers": remaining, "resourceVersion": owner.resource_version}}));
        let name = owner.name.clone().unwrap_or_default();
        let removed = match kind {
            "Deployment" => Api::<Deployment>::namespaced(self.client.clone(), &namespace)
                .patch(&name, &PatchParams::default(), &patch)
                .await
                .map(drop),
            "ReplicaSet" => Api::<ReplicaSet>::namespaced(self.client.clone(), &namespace)
                .patch(&name, &PatchParams::default(), &patch)
                .await
                .map(drop),
            _ => Api::<Pod>::namespaced(self.client.clone(), &namespace)
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

impl Syncer for GarbageCollector {
    async fn sync(&self, key: &str) -> Result<Action, Error> {
        if let Some(owner_key) = key.strip_prefix("Finalize/") {
            return self.finalize(owner_key).await;
        }
        let Some((kind, object_key)) = key.split_once('/') else { return Ok(Action::await_change()) };
        if !DEPENDENT_KINDS.contains(&kind) {
            return Ok(Action::await_change());
        }
        let meta = match kind {
            "Pod" => self.pods.get(object_key).map(|object| object.metadata.clone()),
            _ => self.replica_sets.get(object_key).map(|object| object.metadata.clone()),
        };
        let Some(meta) = meta else { return Ok(Action::await_change()) }; // gone already
        if meta.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let owners = meta.owner_references.clone().unwrap_or_default();
        if owners.is_empty() {
            return Ok(Action::await_change());
        }
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
        let deleted = match kind {
            "Pod" => Api::<Pod>::namespaced(self.client.clone(), &namespace).delete(&name, &params).await.map(drop),
            _ => Api::<ReplicaSet>::namespaced(self.client.clone(), &namespace).delete(&name, &params).await.map(drop),
        };
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
}
