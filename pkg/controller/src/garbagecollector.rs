//! The garbage collector: deletes objects whose owners are gone (background propagation).
//!
//! Every object may name its owners in `metadata.ownerReferences` (by kind, name and uid).
//! When the owner is deleted, Kubernetes' default (`propagationPolicy: Background`) is that
//! the owner goes at once and its dependents are deleted afterwards by this controller. So a
//! deleted Deployment takes its ReplicaSets with it, and they take their pods.
//!
//! The loop, for one dependent (any of the kinds of [`DependentKind`]: pods, ReplicaSets,
//! claims, revisions, and what controllers and operators make — ConfigMaps, Secrets,
//! Services, Deployments, StatefulSets, DaemonSets, Jobs — queued as [`GcKey::Dependent`],
//! which names its kind and its [`ObjectKey`]):
//! 1. for each owner reference, ask whether an object with that **uid** exists: first the
//!    cache of that kind, then, when the cache says no, an uncached GET by name (the cache may
//!    lag behind a create, and deleting a live object's dependents would be a disaster). An
//!    owner of a kind the collector does not cache — a custom resource — is found through the
//!    apiserver's discovery document of its group version, and its dependents are checked
//!    again every few seconds while it exists (no informer tells the collector it went);
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
//! Not promised: foreground and orphan deletion of owners of kinds the collector does not cache
//! (custom resources): they wait for their finalizers as the apiserver marks them; an owner
//! whose kind is not served at all counts as existing. A dependent with one owner gone and
//! another alive keeps both references.
//!
//! Requests to the apiserver are by path, from each kind's registry entry: one code path for
//! every kind.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube_core::Resource;
use prometheus::Registry;
use rkube_api::ResourceDef;
use rkube_client::Client;
use rkube_informer::ObjectKey;
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::handler::{Deleted, HandlerFns};
use rkube_informer::informer::SharedInformer;
use rkube_informer::store::{OWNER_UID_INDEX, Store};
use rkube_informer::workqueue::{RateLimiter, WorkQueue};
use serde_json::{Value, json};

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

/// The kinds whose objects are collected when their owners are gone: the ones controllers and
/// operators make for their owners.
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
    /// A ConfigMap (owned by an operator's custom resource, say).
    ConfigMap,
    /// A Secret.
    Secret,
    /// A Service.
    Service,
    /// A Deployment.
    Deployment,
    /// A StatefulSet.
    StatefulSet,
    /// A DaemonSet.
    DaemonSet,
    /// A Job (owned by a CronJob, usually).
    Job,
}

impl DependentKind {
    /// The kind's name, as in `kind:` and in owner references.
    pub fn as_str(self) -> &'static str {
        self.resource().kind
    }

    /// The kind's registry entry (its API path).
    pub fn resource(self) -> &'static ResourceDef {
        use rkube_api::kinds;
        match self {
            DependentKind::Pod => &kinds::pod::RESOURCE,
            DependentKind::ReplicaSet => &kinds::replicaset::RESOURCE,
            DependentKind::PersistentVolumeClaim => &kinds::persistentvolumeclaim::RESOURCE,
            DependentKind::ControllerRevision => &kinds::controllerrevision::RESOURCE,
            DependentKind::ConfigMap => &kinds::configmap::RESOURCE,
            DependentKind::Secret => &kinds::secret::RESOURCE,
            DependentKind::Service => &kinds::service::RESOURCE,
            DependentKind::Deployment => &kinds::deployment::RESOURCE,
            DependentKind::StatefulSet => &kinds::statefulset::RESOURCE,
            DependentKind::DaemonSet => &kinds::daemonset::RESOURCE,
            DependentKind::Job => &kinds::job::RESOURCE,
        }
    }
}

impl std::fmt::Display for DependentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The owner kinds the collector caches (and whose foreground and orphan deletions it
/// finishes). Owners of any other kind, custom resources included, are looked up through the
/// apiserver.
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
    /// A CronJob (batch/v1).
    CronJob,
}

impl OwnerKind {
    const ALL: [OwnerKind; 8] = [
        OwnerKind::Deployment,
        OwnerKind::ReplicaSet,
        OwnerKind::Pod,
        OwnerKind::Job,
        OwnerKind::ReplicationController,
        OwnerKind::DaemonSet,
        OwnerKind::StatefulSet,
        OwnerKind::CronJob,
    ];

    /// The owner kind named `kind` (an owner reference's `kind`), if the collector caches it.
    pub fn from_kind(kind: &str) -> Option<OwnerKind> {
        OwnerKind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// The kind's name, as in `kind:` and in owner references.
    pub fn as_str(self) -> &'static str {
        self.resource().kind
    }

    /// The kind's registry entry (its API path).
    pub fn resource(self) -> &'static ResourceDef {
        use rkube_api::kinds;
        match self {
            OwnerKind::Deployment => &kinds::deployment::RESOURCE,
            OwnerKind::ReplicaSet => &kinds::replicaset::RESOURCE,
            OwnerKind::Pod => &kinds::pod::RESOURCE,
            OwnerKind::Job => &kinds::job::RESOURCE,
            OwnerKind::ReplicationController => &kinds::replicationcontroller::RESOURCE,
            OwnerKind::DaemonSet => &kinds::daemonset::RESOURCE,
            OwnerKind::StatefulSet => &kinds::statefulset::RESOURCE,
            OwnerKind::CronJob => &kinds::cronjob::RESOURCE,
        }
    }
}

impl std::fmt::Display for OwnerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Queues the finalize key of an owner marked for deletion that carries one of our finalizers.
fn enqueue_if_finalizing(queue: &WorkQueue<GcKey>, kind: OwnerKind, meta: &ObjectMeta) {
    let ours = meta.finalizers.iter().flatten().any(|f| f == FOREGROUND_FINALIZER || f == ORPHAN_FINALIZER);
    if meta.deletion_timestamp.is_some() && ours {
        let key = ObjectKey::new(meta.namespace.as_deref(), meta.name.as_deref().unwrap_or_default());
        queue.add(GcKey::Finalize { kind, key });
    }
}

/// Queues the finalize keys of every owner of a dependent that just went away (owners of kinds
/// the collector does not cache have nothing for it to finish).
fn enqueue_owners(queue: &WorkQueue<GcKey>, meta: &ObjectMeta) {
    for owner in meta.owner_references.iter().flatten() {
        if let Some(kind) = OwnerKind::from_kind(&owner.kind) {
            queue.add(GcKey::Finalize { kind, key: ObjectKey::new(meta.namespace.as_deref(), &owner.name) });
        }
    }
}

/// A cache of one kind as the collector reads it: metadata only.
trait MetaStore: Send + Sync {
    /// The cached objects that name `uid` as an owner.
    fn by_owner(&self, uid: &str) -> Vec<ObjectMeta>;
    /// The cached object `key`.
    fn meta(&self, key: &ObjectKey) -> Option<ObjectMeta>;
}

impl<K: Resource + Send + Sync> MetaStore for Store<K> {
    fn by_owner(&self, uid: &str) -> Vec<ObjectMeta> {
        self.by_index(OWNER_UID_INDEX, uid).unwrap_or_default().iter().map(|o| o.meta().clone()).collect()
    }

    fn meta(&self, key: &ObjectKey) -> Option<ObjectMeta> {
        self.get(key).map(|o| o.meta().clone())
    }
}

/// The garbage collector. Build with [`GarbageCollector::new`], then run workers over its queue.
pub struct GarbageCollector {
    client: Client,
    dependents: DependentStores,
    owners: Arc<Vec<(OwnerKind, Arc<dyn MetaStore>)>>,
    queue: WorkQueue<GcKey>,
}

/// Queues a dependent if it names any owner.
fn enqueue_if_owned(queue: &WorkQueue<GcKey>, kind: DependentKind, meta: &ObjectMeta) {
    if meta.owner_references.as_ref().is_some_and(|owners| !owners.is_empty()) {
        let key = ObjectKey::new(meta.namespace.as_deref(), meta.name.as_deref().unwrap_or_default());
        queue.add(GcKey::Dependent { kind, key });
    }
}

/// The caches of the dependent kinds.
#[derive(Clone, Default)]
struct DependentStores(Arc<Vec<(DependentKind, Arc<dyn MetaStore>)>>);

impl DependentStores {
    /// Every cached dependent that names `owner_uid`.
    fn of(&self, owner_uid: &str) -> Vec<Dependent> {
        self.0
            .iter()
            .flat_map(|(kind, store)| store.by_owner(owner_uid).into_iter().map(|meta| Dependent { kind: *kind, meta }))
            .collect()
    }

    /// The metadata of the cached dependent `key` of `kind`.
    fn meta(&self, kind: DependentKind, key: &ObjectKey) -> Option<ObjectMeta> {
        self.0.iter().find(|(k, _)| *k == kind).and_then(|(_, store)| store.meta(key))
    }
}

/// Queues every dependent that names `owner_uid`.
fn enqueue_dependents(queue: &WorkQueue<GcKey>, stores: &DependentStores, owner_uid: &str) {
    for dependent in stores.of(owner_uid) {
        let key =
            ObjectKey::new(dependent.meta.namespace.as_deref(), dependent.meta.name.as_deref().unwrap_or_default());
        queue.add(GcKey::Dependent { kind: dependent.kind, key });
    }
}

/// What the collector does with one cached kind: collect its objects (as `dependent`), finish
/// the deletions of its objects (as `owner`), or both. One handler per kind does it all.
fn watch_kind<K>(
    informer: &SharedInformer<K>,
    queue: &WorkQueue<GcKey>,
    stores: &DependentStores,
    dependent: Option<DependentKind>,
    owner: Option<OwnerKind>,
) where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
    let stores = stores.clone();
    informer.add_handler(
        HandlerFns::new()
            .on_add(move |object: &Arc<K>| {
                if let Some(kind) = dependent {
                    enqueue_if_owned(&q1, kind, object.meta());
                }
                if let Some(kind) = owner {
                    enqueue_if_finalizing(&q1, kind, object.meta());
                }
            })
            .on_update(move |old: &Arc<K>, new: &Arc<K>| {
                if let Some(kind) = dependent
                    && old.meta().owner_references != new.meta().owner_references
                {
                    enqueue_if_owned(&q2, kind, new.meta());
                }
                if let Some(kind) = owner {
                    enqueue_if_finalizing(&q2, kind, new.meta());
                }
            })
            .on_delete(move |deleted: Deleted<K>| {
                let meta = deleted.object().meta();
                enqueue_dependents(&q3, &stores, meta.uid.as_deref().unwrap_or_default());
                if dependent.is_some() {
                    enqueue_owners(&q3, meta);
                }
            }),
    );
}

/// How soon a dependent whose owner is of a kind the collector does not cache (a custom
/// resource) is checked again: no informer tells it when that owner goes.
const UNCACHED_OWNER_RECHECK: Duration = Duration::from_secs(5);

impl GarbageCollector {
    /// Registers handlers on the factory's informers of every dependent and owner kind, and a
    /// work queue named `garbagecollector`.
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
        let config_maps = factory.informer::<ConfigMap>(None);
        let secrets = factory.informer::<Secret>(None);
        let services = factory.informer::<Service>(None);
        let cron_jobs = factory.informer::<CronJob>(None);
        let queue = WorkQueue::new("garbagecollector", RateLimiter::default(), registry);
        let dependents = DependentStores(Arc::new(vec![
            (DependentKind::Pod, Arc::new(pods.store()) as Arc<dyn MetaStore>),
            (DependentKind::ReplicaSet, Arc::new(replica_sets.store())),
            (DependentKind::PersistentVolumeClaim, Arc::new(claims.store())),
            (DependentKind::ControllerRevision, Arc::new(revisions.store())),
            (DependentKind::ConfigMap, Arc::new(config_maps.store())),
            (DependentKind::Secret, Arc::new(secrets.store())),
            (DependentKind::Service, Arc::new(services.store())),
            (DependentKind::Deployment, Arc::new(deployments.store())),
            (DependentKind::StatefulSet, Arc::new(stateful_sets.store())),
            (DependentKind::DaemonSet, Arc::new(daemon_sets.store())),
            (DependentKind::Job, Arc::new(jobs.store())),
        ]));
        let owners: Vec<(OwnerKind, Arc<dyn MetaStore>)> = vec![
            (OwnerKind::Deployment, Arc::new(deployments.store())),
            (OwnerKind::ReplicaSet, Arc::new(replica_sets.store())),
            (OwnerKind::Pod, Arc::new(pods.store())),
            (OwnerKind::Job, Arc::new(jobs.store())),
            (OwnerKind::ReplicationController, Arc::new(replication_controllers.store())),
            (OwnerKind::DaemonSet, Arc::new(daemon_sets.store())),
            (OwnerKind::StatefulSet, Arc::new(stateful_sets.store())),
            (OwnerKind::CronJob, Arc::new(cron_jobs.store())),
        ];
        use DependentKind as D;
        watch_kind(&pods, &queue, &dependents, Some(D::Pod), Some(OwnerKind::Pod));
        watch_kind(&replica_sets, &queue, &dependents, Some(D::ReplicaSet), Some(OwnerKind::ReplicaSet));
        watch_kind(&deployments, &queue, &dependents, Some(D::Deployment), Some(OwnerKind::Deployment));
        watch_kind(&jobs, &queue, &dependents, Some(D::Job), Some(OwnerKind::Job));
        watch_kind(&replication_controllers, &queue, &dependents, None, Some(OwnerKind::ReplicationController));
        watch_kind(&daemon_sets, &queue, &dependents, Some(D::DaemonSet), Some(OwnerKind::DaemonSet));
        watch_kind(&stateful_sets, &queue, &dependents, Some(D::StatefulSet), Some(OwnerKind::StatefulSet));
        watch_kind(&claims, &queue, &dependents, Some(D::PersistentVolumeClaim), None);
        watch_kind(&revisions, &queue, &dependents, Some(D::ControllerRevision), None);
        watch_kind(&config_maps, &queue, &dependents, Some(D::ConfigMap), None);
        watch_kind(&secrets, &queue, &dependents, Some(D::Secret), None);
        watch_kind(&services, &queue, &dependents, Some(D::Service), None);
        watch_kind(&cron_jobs, &queue, &dependents, None, Some(OwnerKind::CronJob));
        Arc::new(GarbageCollector { client, dependents, owners: Arc::new(owners), queue })
    }

    /// The collector's work queue of dependents to check and owners to finalize.
    pub fn queue(&self) -> WorkQueue<GcKey> {
        self.queue.clone()
    }

    /// Whether an object with the owner's uid exists: the cache first ([`alive_by_cache`]),
    /// then the apiserver. An owner whose kind the apiserver does not serve (its CRD being
    /// made or gone) cannot be looked up and counts as existing: deleting on a guess would be
    /// a disaster.
    async fn owner_exists(&self, namespace: &str, owner: &OwnerReference) -> Result<bool, Error> {
        let key = ObjectKey::new(Some(namespace), &owner.name);
        let cached_uid =
            OwnerKind::from_kind(&owner.kind).and_then(|kind| self.owner_meta(kind, &key)).and_then(|meta| meta.uid);
        if alive_by_cache(owner, cached_uid.as_deref()) {
            return Ok(true);
        }
        let lookup = |source| Error::Read { what: format!("looking up owner {}/{key}", owner.kind), source };
        let path = match OwnerKind::from_kind(&owner.kind) {
            Some(kind) => object_path(kind.resource(), namespace, &owner.name),
            None => match self.discover(&owner.api_version, &owner.kind).await.map_err(lookup)? {
                Some(found) => found.path(namespace, &owner.name),
                None => {
                    tracing::debug!(owner = %format!("{}/{key}", owner.kind), api_version = owner.api_version, "owner kind not served; keeping its dependents");
                    return Ok(true);
                }
            },
        };
        let fresh = self.uid_at(&path).await.map_err(lookup)?;
        Ok(fresh.as_deref() == Some(owner.uid.as_str()))
    }

    /// Where the objects of `kind` in `api_version` are served, from the apiserver's discovery
    /// document of that group version; `None` when it does not serve them.
    async fn discover(&self, api_version: &str, kind: &str) -> Result<Option<Discovered>, rkube_client::Error> {
        let prefix =
            if api_version.contains('/') { format!("/apis/{api_version}") } else { format!("/api/{api_version}") };
        let list = match self.client.request_json(request("GET", &prefix, Vec::new())).await {
            Ok(list) => list,
            Err(error) if error.is_not_found() => return Ok(None),
            Err(error) => return Err(error),
        };
        let found = list["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["kind"] == kind && r["name"].as_str().is_some_and(|name| !name.contains('/')));
        Ok(found.map(|r| Discovered {
            prefix,
            plural: r["name"].as_str().unwrap_or_default().to_string(),
            namespaced: r["namespaced"].as_bool().unwrap_or(true),
        }))
    }

    /// The uid of the object at `path` (uncached), or `None` when there is none.
    async fn uid_at(&self, path: &str) -> Result<Option<String>, rkube_client::Error> {
        match self.client.request_json(request("GET", path, Vec::new())).await {
            Ok(object) => Ok(object.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_string)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The cached metadata of the object `key` of `kind`.
    fn owner_meta(&self, kind: OwnerKind, key: &ObjectKey) -> Option<ObjectMeta> {
        self.owners.iter().find(|(k, _)| *k == kind).and_then(|(_, store)| store.meta(key))
    }
}

/// Where discovery says a kind is served.
struct Discovered {
    /// `/apis/<group>/<version>` or `/api/v1`.
    prefix: String,
    plural: String,
    namespaced: bool,
}

impl Discovered {
    fn path(&self, namespace: &str, name: &str) -> String {
        match self.namespaced {
            true => format!("{}/namespaces/{namespace}/{}/{name}", self.prefix, self.plural),
            false => format!("{}/{}/{name}", self.prefix, self.plural),
        }
    }
}

/// The API path of the object `name` of `res` in `namespace`.
fn object_path(res: &ResourceDef, namespace: &str, name: &str) -> String {
    match res.namespaced {
        true => format!("{}/namespaces/{namespace}/{}/{name}", res.path_prefix(), res.plural),
        false => format!("{}/{}/{name}", res.path_prefix(), res.plural),
    }
}

/// A request to the apiserver with a JSON body (empty for none).
fn request(method: &str, path: &str, body: Vec<u8>) -> http::Request<Vec<u8>> {
    let mut builder = http::Request::builder().method(method).uri(path);
    if !body.is_empty() {
        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
    }
    builder.body(body).unwrap_or_default()
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
                // An owner no informer of ours watches is looked at again before long.
                return Ok(match OwnerKind::from_kind(&owner.kind) {
                    Some(_) => Action::await_change(),
                    None => Action::requeue(UNCACHED_OWNER_RECHECK),
                });
            }
        }
        let name = meta.name.clone().unwrap_or_default();
        let deleted = self.delete_dependent(kind, &namespace, &name, "Background", meta.uid.as_deref()).await;
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
        let dependents = self.dependents.of(&uid);
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

    /// Deletes the dependent `name` of `kind` in `namespace` with `propagation`, only if it
    /// still has `uid` (a new object under the same name is never hit).
    async fn delete_dependent(
        &self,
        kind: DependentKind,
        namespace: &str,
        name: &str,
        propagation: &str,
        uid: Option<&str>,
    ) -> Result<(), rkube_client::Error> {
        let options = json!({
            "apiVersion": "v1", "kind": "DeleteOptions",
            "propagationPolicy": propagation,
            "preconditions": {"uid": uid},
        });
        let path = object_path(kind.resource(), namespace, name);
        self.client.request_json(request("DELETE", &path, options.to_string().into_bytes())).await.map(drop)
    }

    /// Merge-patches the object at `path`.
    async fn merge_patch(&self, path: &str, patch: &Value) -> Result<(), rkube_client::Error> {
        let mut req = request("PATCH", path, patch.to_string().into_bytes());
        req.headers_mut()
            .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/merge-patch+json"));
        self.client.request_json(req).await.map(drop)
    }

    /// Removes `owner`'s reference from each of its dependents.
    async fn orphan(&self, owner_key: &str, owner: &ObjectMeta, dependents: &[Dependent]) -> Result<(), Error> {
        let uid = owner.uid.clone().unwrap_or_default();
        let namespace = owner.namespace.clone().unwrap_or_default();
        for Dependent { kind, meta } in dependents {
            let name = meta.name.clone().unwrap_or_default();
            let path = object_path(kind.resource(), &namespace, &name);
            match self.merge_patch(&path, &release_patch(meta, &uid)).await {
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
            let deleted = self.delete_dependent(*kind, &namespace, &name, "Foreground", meta.uid.as_deref()).await;
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
        let patch = json!({"metadata": {"finalizers": remaining, "resourceVersion": owner.resource_version}});
        let name = owner.name.clone().unwrap_or_default();
        match self.merge_patch(&object_path(kind.resource(), &namespace, &name), &patch).await {
            Ok(()) => {
                tracing::info!(owner = %owner_key, finalizer = done, "dependents handled; finalizer removed");
                Ok(Action::await_change())
            }
            Err(error) if error.is_not_found() => Ok(Action::await_change()),
            Err(source) => Err(Error::Read { what: format!("removing finalizer {done} from {owner_key}"), source }),
        }
    }
}

/// Whether a dependent is worth checking: not already being deleted, and naming an owner.
fn is_candidate(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_none() && meta.owner_references.as_ref().is_some_and(|owners| !owners.is_empty())
}

/// Whether the cache alone proves `owner` alive: the cached object under its name has its
/// uid. When not (or when its kind is not cached), only an uncached read can tell: the cache
/// may lag behind a create.
fn alive_by_cache(owner: &OwnerReference, cached_uid: Option<&str>) -> bool {
    cached_uid == Some(owner.uid.as_str())
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
        enqueue_if_owned(&queue, DependentKind::Pod, &pod.metadata);
        pod.metadata.owner_references = None;
        enqueue_if_owned(&queue, DependentKind::Pod, &pod.metadata);
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
    fn only_a_cached_owner_with_the_same_uid_is_alive_without_asking_the_apiserver() {
        let owner = reference("ReplicaSet", "uid-1", None);
        assert!(alive_by_cache(&owner, Some("uid-1")));
        assert!(!alive_by_cache(&owner, Some("uid-2")), "recreated under the same name: not the owner");
        assert!(!alive_by_cache(&owner, None), "the cache may lag behind a create");
        assert!(!alive_by_cache(&reference("Widget", "uid-1", None), None), "a custom owner is looked up");
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
