//! The volume binder (kube-controller-manager's `persistentvolume-binder`) with rkube's
//! local-path provisioner: every PersistentVolumeClaim gets a PersistentVolume, and every
//! volume's `status.phase` says where it is in its life.
//!
//! A claim (key [`VolumeKey::Claim`]):
//! - bound already (`spec.volumeName`): its status is made `Bound` (capacity, access modes),
//!   the volume's `claimRef` set if only the claim named it; a volume that is gone makes the
//!   claim `Lost`;
//! - of a `WaitForFirstConsumer` class, unbound: nothing happens until a pod using it is
//!   bound to a node; that node is written to the claim's
//!   `volume.kubernetes.io/selected-node` annotation (Kubernetes' scheduler writes it; here
//!   the binder does, from the pod's `spec.nodeName`), and only volumes that may live there
//!   are considered;
//! - unbound: the smallest Available volume that fits is bound — same class, capacity at
//!   least the request, every access mode, same `volumeMode`, the claim's `selector`, node
//!   affinity with the selected node; a volume pre-bound to this claim (`claimRef`) first.
//!   Binding writes the volume's `claimRef`, then its phase, then the claim's `volumeName`,
//!   then the claim's phase, as Kubernetes does; each step is checked again on the next sync.
//! - unbound, nothing fits, and the class's provisioner is [`LOCAL_PATH_PROVISIONER`]: a
//!   volume `pvc-<claim uid>` is made — a `hostPath` directory
//!   `<path>/<volume>_<namespace>_<claim>` (`path` is the class parameter, default
//!   [`DEFAULT_LOCAL_PATH_ROOT`]; the kubelet creates the directory when it mounts it) with
//!   node affinity to the selected node, pre-bound to the claim, with the class's reclaim
//!   policy. Events: `ProvisioningSucceeded`, `ProvisioningFailed`, `WaitForFirstConsumer`,
//!   `ExternalProvisioning`, `FailedBinding`.
//!
//! A volume (key [`VolumeKey::Volume`]): `Available` without a claim (or pre-bound to one not
//! made yet), `Bound` with it; once its claim is deleted (confirmed by a live read, not only
//! the cache) it is `Released`, and then, by `persistentVolumeReclaimPolicy`, kept (`Retain`)
//! or deleted (`Delete`, for volumes this provisioner made; any other is `Failed`: rkube has
//! no deleter for it).
//!
//! Not done: the data of a deleted local-path volume stays in its directory on the node (the
//! kubelet does not clean it up yet); `Recycle`; volume expansion; the
//! `kubernetes.io/pvc-protection` finalizer (a claim in use can be deleted).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus, PersistentVolumeSpec, PersistentVolumeStatus,
    Pod, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_core::ResourceExt;
use prometheus::Registry;
use rkube_api::kinds::persistentvolumeclaim::requested_bytes;
use rkube_api::kinds::storageclass::{DEFAULT_LOCAL_PATH_ROOT, LOCAL_PATH_PROVISIONER};
use rkube_api::placement::volume_fits_node;
use rkube_api::quantity;
use rkube_api::selector::LabelSelector;
use rkube_client::events::{EventRecorder, EventType, object_reference};
use rkube_client::{Api, Client, DeleteParams, Patch, PatchParams, PostParams};
use rkube_informer::ObjectKey;
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::handler::{Deleted, HandlerFns};
use rkube_informer::store::Store;
use rkube_informer::workqueue::{RateLimiter, WorkQueue};

use crate::Error;
use crate::worker::{Action, Syncer};

/// The annotation naming the node a `WaitForFirstConsumer` claim's volume must be on.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The annotation a provisioner puts on the volumes it made.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";

/// What the binder's queue holds: a claim or a volume.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VolumeKey {
    /// A PersistentVolumeClaim.
    Claim(ObjectKey),
    /// A PersistentVolume, by name.
    Volume(String),
}

impl fmt::Display for VolumeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VolumeKey::Claim(key) => write!(f, "persistentvolumeclaim {key}"),
            VolumeKey::Volume(name) => write!(f, "persistentvolume {name}"),
        }
    }
}

/// The volume binder and local-path provisioner; see the module docs.
pub struct VolumeBinder {
    client: Client,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    queue: WorkQueue<VolumeKey>,
    events: EventRecorder,
}

fn claim_key(namespace: &str, name: &str) -> VolumeKey {
    VolumeKey::Claim(ObjectKey::new(Some(namespace), name))
}

/// The claims `pod` mounts.
fn claims_of(pod: &Pod) -> Vec<String> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    volumes.filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.clone())).collect()
}

impl VolumeBinder {
    /// Registers handlers on the factory's claim, volume, StorageClass, pod and node informers
    /// and a work queue named `persistentvolume-binder`.
    pub fn new(factory: &SharedInformerFactory, client: Client, registry: Option<&Registry>) -> Arc<Self> {
        let claims = factory.informer::<PersistentVolumeClaim>(None);
        let volumes = factory.informer::<PersistentVolume>(None);
        let classes = factory.informer::<StorageClass>(None);
        let pods = factory.informer::<Pod>(None);
        let nodes = factory.informer::<Node>(None);
        let queue = WorkQueue::new("persistentvolume-binder", RateLimiter::default(), registry);
        let binder = Arc::new(VolumeBinder {
            events: EventRecorder::new(client.clone(), "persistentvolume-controller", None),
            client,
            claims: claims.store(),
            volumes: volumes.store(),
            classes: classes.store(),
            pods: pods.store(),
            nodes: nodes.store(),
            queue: queue.clone(),
        });
        let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
        claims.add_handler(
            HandlerFns::new()
                .on_add(move |c: &Arc<PersistentVolumeClaim>| q1.add(VolumeKey::Claim(ObjectKey::of(c.as_ref()))))
                .on_update(move |_: &Arc<PersistentVolumeClaim>, c: &Arc<PersistentVolumeClaim>| {
                    q2.add(VolumeKey::Claim(ObjectKey::of(c.as_ref())));
                })
                .on_delete(move |deleted: Deleted<PersistentVolumeClaim>| {
                    if let Some(volume) = deleted.object().spec.as_ref().and_then(|s| s.volume_name.clone()) {
                        q3.add(VolumeKey::Volume(volume));
                    }
                }),
        );
        let on_volume = {
            let queue = queue.clone();
            move |volume: &PersistentVolume| {
                queue.add(VolumeKey::Volume(volume.name_any()));
                if let Some(claim) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref())
                    && let (Some(namespace), Some(name)) = (&claim.namespace, &claim.name)
                {
                    queue.add(claim_key(namespace, name));
                }
            }
        };
        let (v1, v2, v3) = (on_volume.clone(), on_volume.clone(), on_volume);
        volumes.add_handler(
            HandlerFns::new()
                .on_add(move |v: &Arc<PersistentVolume>| v1(v))
                .on_update(move |_: &Arc<PersistentVolume>, v: &Arc<PersistentVolume>| v2(v))
                .on_delete(move |deleted: Deleted<PersistentVolume>| v3(deleted.object())),
        );
        // A pod bound to a node decides where a WaitForFirstConsumer claim's volume goes.
        let on_pod = {
            let queue = queue.clone();
            move |pod: &Pod| {
                if pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                    let namespace = pod.namespace().unwrap_or_default();
                    for claim in claims_of(pod) {
                        queue.add(claim_key(&namespace, &claim));
                    }
                }
            }
        };
        let (p1, p2) = (on_pod.clone(), on_pod);
        pods.add_handler(
            HandlerFns::new().on_add(move |p: &Arc<Pod>| p1(p)).on_update(move |_: &Arc<Pod>, p: &Arc<Pod>| p2(p)),
        );
        binder
    }

    /// The work queue (for [`crate::worker::run_workers`]).
    pub fn queue(&self) -> WorkQueue<VolumeKey> {
        self.queue.clone()
    }

    async fn sync_claim(&self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(claim) = self.claims.get(key) else { return Ok(Action::await_change()) };
        if claim.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let spec = claim.spec.clone().unwrap_or_default();
        if let Some(volume_name) = spec.volume_name.as_deref().filter(|n| !n.is_empty()) {
            return self.sync_bound_claim(&claim, volume_name).await;
        }
        let class_name = spec.storage_class_name.clone().unwrap_or_default();
        let class = (!class_name.is_empty()).then(|| self.classes.get(&ObjectKey::new(None, &class_name))).flatten();
        let waits = class.as_ref().and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer");
        let mut node = claim.annotations().get(SELECTED_NODE).cloned();
        if waits && node.is_none() {
            match self.consumer_node(&claim) {
                Some(chosen) => {
                    self.annotate_selected_node(&claim, &chosen).await?;
                    node = Some(chosen);
                }
                None => {
                    self.event(
                        claim.as_ref(),
                        EventType::Normal,
                        "WaitForFirstConsumer",
                        "waiting for first consumer to be created before binding",
                    );
                    return Ok(Action::await_change());
                }
            }
        }
        if let Some(volume) = self.best_volume(&claim, &class_name, node.as_deref()) {
            return self.bind(&claim, &volume).await;
        }
        match &class {
            Some(class) if class.provisioner == LOCAL_PATH_PROVISIONER => {
                self.provision(&claim, class, node.as_deref()).await
            }
            Some(class) => {
                let message = format!(
                    "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                    class.provisioner
                );
                self.event(claim.as_ref(), EventType::Normal, "ExternalProvisioning", message);
                Ok(Action::await_change())
            }
            None if !class_name.is_empty() => {
                let message = format!("storageclass.storage.k8s.io \"{class_name}\" not found");
                self.event(claim.as_ref(), EventType::Warning, "ProvisioningFailed", message);
                Ok(Action::await_change())
            }
            None => {
                let message = "no persistent volumes available for this claim and no storage class is set";
                self.event(claim.as_ref(), EventType::Normal, "FailedBinding", message);
                Ok(Action::await_change())
            }
        }
    }

    /// A claim that names its volume: finish the binding or report the volume lost.
    async fn sync_bound_claim(&self, claim: &PersistentVolumeClaim, volume_name: &str) -> Result<Action, Error> {
        let volume = match self.volumes.get(&ObjectKey::new(None, volume_name)) {
            Some(volume) => volume,
            None => {
                let api: Api<PersistentVolume> = Api::all(self.client.clone());
                let live = api.get_opt(volume_name).await.map_err(|source| Error::Read {
                    what: format!("reading persistentvolume {volume_name}"),
                    source,
                })?;
                if live.is_some() {
                    return Ok(Action::requeue(std::time::Duration::from_millis(200)));
                }
                if phase_of_claim(claim) != "Lost" {
                    let message = "Bound claim has lost its PersistentVolume. Data on the volume is lost!";
                    self.event(claim, EventType::Warning, "ClaimLost", message);
                    self.set_claim_phase(claim, "Lost", None).await?;
                }
                return Ok(Action::await_change());
            }
        };
        let claim_ref = volume.spec.as_ref().and_then(|s| s.claim_ref.clone());
        match claim_ref {
            None => self.bind(claim, &volume).await,
            Some(r) if refers_to(&r, claim) => {
                if r.uid.as_deref().is_none_or(str::is_empty) {
                    return self.bind(claim, &volume).await;
                }
                if phase_of_volume(&volume) != "Bound" {
                    self.set_volume_phase(&volume, "Bound").await?;
                }
                self.finish_claim(claim, &volume).await
            }
            Some(_) => {
                if phase_of_claim(claim) != "Lost" {
                    let message = "Two claims are bound to the same volume, this one is bound incorrectly";
                    self.event(claim, EventType::Warning, "ClaimMisbound", message);
                    self.set_claim_phase(claim, "Lost", None).await?;
                }
                Ok(Action::await_change())
            }
        }
    }

    /// The node of a pod that uses `claim` and is bound already.
    fn consumer_node(&self, claim: &PersistentVolumeClaim) -> Option<String> {
        let namespace = claim.namespace();
        let name = claim.name_any();
        self.pods
            .list()
            .into_iter()
            .filter(|pod| pod.namespace() == namespace && pod.metadata.deletion_timestamp.is_none())
            .filter(|pod| claims_of(pod).contains(&name))
            .find_map(|pod| pod.spec.as_ref().and_then(|s| s.node_name.clone()))
    }

    /// The volume to bind `claim` to: pre-bound to it first, else the smallest that fits.
    fn best_volume(
        &self,
        claim: &PersistentVolumeClaim,
        class: &str,
        node: Option<&str>,
    ) -> Option<Arc<PersistentVolume>> {
        let node_labels = node.map(|n| {
            let labels = self.nodes.get(&ObjectKey::new(None, n)).map(|n| n.labels().clone());
            (n.to_string(), labels.unwrap_or_default())
        });
        let fits = |volume: &PersistentVolume| {
            fits(claim, volume, class)
                && node_labels.as_ref().is_none_or(|(name, labels)| volume_fits_node(volume, labels, name))
        };
        let candidates: Vec<Arc<PersistentVolume>> = self.volumes.list().into_iter().filter(|v| fits(v)).collect();
        let pre_bound = candidates
            .iter()
            .find(|v| v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some_and(|r| refers_to(r, claim)));
        pre_bound.cloned().or_else(|| candidates.into_iter().min_by_key(|v| capacity_bytes(v).unwrap_or(i64::MAX)))
    }

    /// Binds `claim` and `volume` one step at a time (see the module docs).
    async fn bind(&self, claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> Result<Action, Error> {
        let mut bound_volume = volume.clone();
        let claim_ref = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolumeClaim".into()),
            namespace: claim.namespace(),
            name: Some(claim.name_any()),
            uid: claim.metadata.uid.clone(),
            resource_version: claim.metadata.resource_version.clone(),
            ..Default::default()
        };
        let spec = bound_volume.spec.get_or_insert_with(Default::default);
        let was_unclaimed = spec.claim_ref.is_none();
        if spec.claim_ref.as_ref().and_then(|r| r.uid.as_deref()) != claim.metadata.uid.as_deref() {
            spec.claim_ref = Some(claim_ref);
            if was_unclaimed {
                bound_volume.annotations_mut().insert(BOUND_BY_CONTROLLER.into(), "yes".into());
            }
            let api: Api<PersistentVolume> = Api::all(self.client.clone());
            match api.replace(&volume.name_any(), &PostParams::default(), &bound_volume).await {
                Ok(written) => bound_volume = written,
                Err(rkube_client::Error::Conflict(_) | rkube_client::Error::NotFound(_)) => {
                    return Ok(Action::requeue(std::time::Duration::from_millis(100)));
                }
                Err(source) => {
                    return Err(Error::Read {
                        what: format!("binding persistentvolume {}", volume.name_any()),
                        source,
                    });
                }
            }
        }
        if phase_of_volume(&bound_volume) != "Bound" {
            self.set_volume_phase(&bound_volume, "Bound").await?;
        }
        self.finish_claim(claim, &bound_volume).await
    }

    /// Writes the claim's side of a binding: `volumeName` and annotations, then its status.
    async fn finish_claim(&self, claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> Result<Action, Error> {
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &claim.namespace().unwrap_or_default());
        let mut claim = claim.clone();
        let volume_name = volume.name_any();
        let named = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(volume_name.as_str());
        if !named || claim.annotations().get(BIND_COMPLETED).is_none_or(|v| v != "yes") {
            claim.spec.get_or_insert_with(Default::default).volume_name = Some(volume_name.clone());
            let annotations = claim.annotations_mut();
            annotations.insert(BIND_COMPLETED.into(), "yes".into());
            if !named {
                annotations.insert(BOUND_BY_CONTROLLER.into(), "yes".into());
            }
            claim = match api.replace(&claim.name_any(), &PostParams::default(), &claim).await {
                Ok(written) => written,
                Err(rkube_client::Error::Conflict(_) | rkube_client::Error::NotFound(_)) => {
                    return Ok(Action::requeue(std::time::Duration::from_millis(100)));
                }
                Err(source) => {
                    return Err(Error::Read { what: format!("binding claim {}", claim.name_any()), source });
                }
            };
        }
        let spec = volume.spec.clone().unwrap_or_default();
        let wanted = PersistentVolumeClaimStatus {
            phase: Some("Bound".into()),
            capacity: spec.capacity.clone(),
            access_modes: spec.access_modes.clone(),
            ..claim.status.clone().unwrap_or_default()
        };
        if claim.status.as_ref() != Some(&wanted) {
            self.set_claim_phase(&claim, "Bound", Some(wanted)).await?;
        }
        Ok(Action::await_change())
    }

    /// Makes a local-path volume for `claim` on `node` (see the module docs).
    async fn provision(
        &self,
        claim: &PersistentVolumeClaim,
        class: &StorageClass,
        node: Option<&str>,
    ) -> Result<Action, Error> {
        let Some(node) = node else {
            let message = format!(
                "the {LOCAL_PATH_PROVISIONER} provisioner makes a volume on one node, so its StorageClass {:?} needs volumeBindingMode: WaitForFirstConsumer",
                class.name_any()
            );
            self.event(claim, EventType::Warning, "ProvisioningFailed", message);
            return Ok(Action::await_change());
        };
        if claim.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some() {
            self.event(claim, EventType::Warning, "ProvisioningFailed", "claim Selector is not supported");
            return Ok(Action::await_change());
        }
        let volume = local_path_volume(claim, class, node);
        let name = volume.name_any();
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        match api.create(&PostParams::default(), &volume).await {
            Ok(_) => {
                let message = format!("Successfully provisioned volume {name} on node {node}");
                self.event(claim, EventType::Normal, "ProvisioningSucceeded", message);
            }
            Err(rkube_client::Error::AlreadyExists(_)) => {}
            Err(error) => {
                self.event(claim, EventType::Warning, "ProvisioningFailed", format!("creating volume {name}: {error}"));
                return Err(Error::Read { what: format!("creating persistentvolume {name}"), source: error });
            }
        }
        // The volume's add event brings the claim back to be bound.
        Ok(Action::await_change())
    }

    async fn sync_volume(&self, name: &str) -> Result<Action, Error> {
        let Some(volume) = self.volumes.get(&ObjectKey::new(None, name)) else { return Ok(Action::await_change()) };
        if volume.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let Some(claim_ref) = volume.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
            if phase_of_volume(&volume) != "Available" {
                self.set_volume_phase(&volume, "Available").await?;
            }
            return Ok(Action::await_change());
        };
        let (namespace, claim_name) =
            (claim_ref.namespace.clone().unwrap_or_default(), claim_ref.name.clone().unwrap_or_default());
        let mut claim = self.claims.get(&ObjectKey::new(Some(&namespace), &claim_name));
        if claim.is_none() {
            // The cache may not have seen the claim yet: ask the apiserver before releasing.
            let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &namespace);
            claim = api
                .get_opt(&claim_name)
                .await
                .map_err(|source| Error::Read { what: format!("reading claim {namespace}/{claim_name}"), source })?
                .map(Arc::new);
        }
        let uid = claim_ref.uid.as_deref().filter(|u| !u.is_empty());
        let ours = claim.as_ref().filter(|c| uid.is_none_or(|uid| c.metadata.uid.as_deref() == Some(uid)));
        match ours {
            Some(claim) => {
                let claims_it = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref());
                let phase = match claims_it {
                    Some(v) if v == name => "Bound",
                    // Pre-bound, or bound by this controller to a claim that went elsewhere.
                    None | Some("") => "Available",
                    Some(_) if volume.annotations().contains_key(BOUND_BY_CONTROLLER) => {
                        return self.unbind(&volume).await;
                    }
                    Some(_) => "Available",
                };
                if phase_of_volume(&volume) != phase {
                    self.set_volume_phase(&volume, phase).await?;
                }
                Ok(Action::await_change())
            }
            // Pre-bound to a claim that does not exist yet.
            None if uid.is_none() => {
                if phase_of_volume(&volume) != "Available" {
                    self.set_volume_phase(&volume, "Available").await?;
                }
                Ok(Action::await_change())
            }
            None => self.reclaim(&volume).await,
        }
    }

    /// A volume whose claim is gone: `Released`, then kept or deleted by its reclaim policy.
    async fn reclaim(&self, volume: &PersistentVolume) -> Result<Action, Error> {
        let policy =
            volume.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()).unwrap_or("Retain");
        let ours = volume.annotations().get(PROVISIONED_BY).is_some_and(|p| p == LOCAL_PATH_PROVISIONER);
        match policy {
            "Delete" if ours => {
                let api: Api<PersistentVolume> = Api::all(self.client.clone());
                match api.delete(&volume.name_any(), &DeleteParams::default()).await {
                    Ok(_) | Err(rkube_client::Error::NotFound(_)) => Ok(Action::await_change()),
                    Err(source) => {
                        Err(Error::Read { what: format!("deleting persistentvolume {}", volume.name_any()), source })
                    }
                }
            }
            "Delete" => {
                if phase_of_volume(volume) != "Failed" {
                    let message = format!(
                        "no deleter for volume {}: rkube deletes only the volumes its local-path provisioner made",
                        volume.name_any()
                    );
                    self.event(volume, EventType::Warning, "VolumeFailedDelete", message.clone());
                    self.set_volume_phase(volume, "Failed").await?;
                }
                Ok(Action::await_change())
            }
            _ => {
                if phase_of_volume(volume) != "Released" {
                    self.set_volume_phase(volume, "Released").await?;
                }
                Ok(Action::await_change())
            }
        }
    }

    /// Takes `claimRef` off a volume this controller bound to a claim that chose another.
    async fn unbind(&self, volume: &PersistentVolume) -> Result<Action, Error> {
        let mut unbound = volume.clone();
        unbound.spec.get_or_insert_with(Default::default).claim_ref = None;
        unbound.annotations_mut().remove(BOUND_BY_CONTROLLER);
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        match api.replace(&volume.name_any(), &PostParams::default(), &unbound).await {
            Ok(_) | Err(rkube_client::Error::Conflict(_) | rkube_client::Error::NotFound(_)) => {
                Ok(Action::await_change())
            }
            Err(source) => {
                Err(Error::Read { what: format!("unbinding persistentvolume {}", volume.name_any()), source })
            }
        }
    }

    async fn annotate_selected_node(&self, claim: &PersistentVolumeClaim, node: &str) -> Result<(), Error> {
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &claim.namespace().unwrap_or_default());
        let patch = serde_json::json!({"metadata": {"annotations": {SELECTED_NODE: node}}});
        api.patch(&claim.name_any(), &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(|_| ())
            .map_err(|source| Error::Read { what: format!("annotating claim {}", claim.name_any()), source })
    }

    async fn set_volume_phase(&self, volume: &PersistentVolume, phase: &str) -> Result<(), Error> {
        let mut updated = volume.clone();
        updated.status = Some(PersistentVolumeStatus { phase: Some(phase.into()), ..Default::default() });
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        match api.replace_status(&volume.name_any(), &PostParams::default(), &updated).await {
            // A newer version is in the cache's way: the next sync decides again.
            Ok(_) | Err(rkube_client::Error::Conflict(_) | rkube_client::Error::NotFound(_)) => Ok(()),
            Err(source) => Err(Error::UpdateStatus { key: ObjectKey::new(None, &volume.name_any()), source }),
        }
    }

    async fn set_claim_phase(
        &self,
        claim: &PersistentVolumeClaim,
        phase: &str,
        status: Option<PersistentVolumeClaimStatus>,
    ) -> Result<(), Error> {
        let mut updated = claim.clone();
        updated.status = Some(
            status.unwrap_or_else(|| PersistentVolumeClaimStatus { phase: Some(phase.into()), ..Default::default() }),
        );
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &claim.namespace().unwrap_or_default());
        match api.replace_status(&claim.name_any(), &PostParams::default(), &updated).await {
            Ok(_) | Err(rkube_client::Error::Conflict(_) | rkube_client::Error::NotFound(_)) => Ok(()),
            Err(source) => Err(Error::UpdateStatus { key: ObjectKey::of(claim), source }),
        }
    }

    fn event<K>(&self, object: &K, type_: EventType, reason: &str, message: impl Into<String>)
    where
        K: k8s_openapi::Resource + k8s_openapi::Metadata<Ty = ObjectMeta>,
    {
        self.events.record(&object_reference(object), type_, reason, "", message);
    }
}

impl Syncer for VolumeBinder {
    type Key = VolumeKey;

    async fn sync(&self, key: &VolumeKey) -> Result<Action, Error> {
        match key {
            VolumeKey::Claim(key) => self.sync_claim(key).await,
            VolumeKey::Volume(name) => self.sync_volume(name).await,
        }
    }
}

fn phase_of_claim(claim: &PersistentVolumeClaim) -> &str {
    claim.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

fn phase_of_volume(volume: &PersistentVolume) -> &str {
    volume.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

/// Whether `reference` names `claim` (by namespace and name, and uid when it has one).
fn refers_to(reference: &ObjectReference, claim: &PersistentVolumeClaim) -> bool {
    reference.namespace == claim.namespace()
        && reference.name.as_deref() == Some(claim.name_any().as_str())
        && reference
            .uid
            .as_deref()
            .filter(|u| !u.is_empty())
            .is_none_or(|uid| claim.metadata.uid.as_deref() == Some(uid))
}

fn capacity_bytes(volume: &PersistentVolume) -> Option<i64> {
    let capacity = volume.spec.as_ref()?.capacity.as_ref()?.get("storage")?;
    quantity::parse_units(&capacity.0).ok()
}

/// Whether `volume` can be bound to `claim` of class `class` (node affinity aside): free or
/// pre-bound to it, not being deleted, same class and volume mode, large enough, every access
/// mode, and selected by the claim's selector.
pub fn fits(claim: &PersistentVolumeClaim, volume: &PersistentVolume, class: &str) -> bool {
    let (Some(spec), Some(claim_spec)) = (volume.spec.as_ref(), claim.spec.as_ref()) else { return false };
    if volume.metadata.deletion_timestamp.is_some()
        || spec.claim_ref.as_ref().is_some_and(|r| !refers_to(r, claim))
        || matches!(phase_of_volume(volume), "Released" | "Failed")
        || spec.storage_class_name.as_deref().unwrap_or_default() != class
        || spec.volume_mode.as_deref().unwrap_or("Filesystem")
            != claim_spec.volume_mode.as_deref().unwrap_or("Filesystem")
    {
        return false;
    }
    if capacity_bytes(volume).unwrap_or(0) < requested_bytes(claim).unwrap_or(i64::MAX) {
        return false;
    }
    let modes = spec.access_modes.as_deref().unwrap_or_default();
    if !claim_spec.access_modes.iter().flatten().all(|m| modes.contains(m)) {
        return false;
    }
    match &claim_spec.selector {
        None => true,
        Some(selector) => LabelSelector::from_meta(selector).is_ok_and(|s| s.matches(volume.labels())),
    }
}

/// The volume the local-path provisioner makes for `claim` on `node`.
pub fn local_path_volume(claim: &PersistentVolumeClaim, class: &StorageClass, node: &str) -> PersistentVolume {
    let name = format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or_default());
    let namespace = claim.namespace().unwrap_or_default();
    let root = class.parameters.as_ref().and_then(|p| p.get("path")).map_or(DEFAULT_LOCAL_PATH_ROOT, String::as_str);
    let path = format!("{}/{name}_{namespace}_{}", root.trim_end_matches('/'), claim.name_any());
    let spec = claim.spec.clone().unwrap_or_default();
    let size = spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")).cloned();
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some(BTreeMap::from([(PROVISIONED_BY.to_string(), LOCAL_PATH_PROVISIONER.to_string())])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_string(), size.unwrap_or_else(|| Quantity("0".into())))])),
            access_modes: spec.access_modes.clone(),
            host_path: Some(HostPathVolumeSource { path, type_: Some("DirectoryOrCreate".into()) }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "kubernetes.io/hostname".into(),
                            operator: "In".into(),
                            values: Some(vec![node.to_string()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some(class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into())),
            storage_class_name: Some(class.name_any()),
            volume_mode: spec.volume_mode.clone(),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(namespace),
                name: Some(claim.name_any()),
                uid: claim.metadata.uid.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(spec: serde_json::Value) -> PersistentVolumeClaim {
        let mut spec = spec;
        spec["accessModes"] = json!(["ReadWriteOnce"]);
        spec["resources"] = json!({"requests": {"storage": "1Gi"}});
        serde_json::from_value(json!({"metadata": {"name": "data", "namespace": "default", "uid": "u1"}, "spec": spec}))
            .expect("claim")
    }

    fn volume(name: &str, size: &str, extra: serde_json::Value) -> PersistentVolume {
        let mut spec = json!({"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                              "hostPath": {"path": "/srv"}, "storageClassName": "manual"});
        for (k, v) in extra.as_object().into_iter().flatten() {
            spec[k] = v.clone();
        }
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"tier": "fast"}}, "spec": spec}))
            .expect("pv")
    }

    #[test]
    fn a_volume_fits_by_class_size_modes_selector_and_claim_ref() {
        let wanted = claim(json!({"storageClassName": "manual"}));
        assert!(fits(&wanted, &volume("a", "2Gi", json!({})), "manual"));
        assert!(!fits(&wanted, &volume("a", "512Mi", json!({})), "manual"), "too small");
        assert!(!fits(&wanted, &volume("a", "2Gi", json!({"accessModes": ["ReadOnlyMany"]})), "manual"));
        assert!(!fits(&wanted, &volume("a", "2Gi", json!({})), "other"), "another class");
        let taken = json!({"claimRef": {"namespace": "default", "name": "other", "uid": "u2"}});
        assert!(!fits(&wanted, &volume("a", "2Gi", taken), "manual"));
        let pre_bound = json!({"claimRef": {"namespace": "default", "name": "data"}});
        assert!(fits(&wanted, &volume("a", "2Gi", pre_bound), "manual"));
        let picky = claim(json!({"storageClassName": "manual", "selector": {"matchLabels": {"tier": "slow"}}}));
        assert!(!fits(&picky, &volume("a", "2Gi", json!({})), "manual"));
    }

    #[test]
    fn a_local_path_volume_lives_on_the_selected_node_and_is_pre_bound() {
        let class: StorageClass = serde_json::from_value(json!({"metadata": {"name": "local-path"},
            "provisioner": LOCAL_PATH_PROVISIONER, "reclaimPolicy": "Delete", "parameters": {"path": "/data/"}}))
        .expect("class");
        let wanted = claim(json!({"storageClassName": "local-path"}));
        let made = local_path_volume(&wanted, &class, "worker1");
        let spec = made.spec.clone().expect("spec");
        assert_eq!(made.name_any(), "pvc-u1");
        assert_eq!(spec.host_path.map(|h| h.path), Some("/data/pvc-u1_default_data".to_string()));
        let labels = BTreeMap::from([("kubernetes.io/hostname".to_string(), "worker1".to_string())]);
        assert!(volume_fits_node(&made, &labels, "worker1"));
        let elsewhere = BTreeMap::from([("kubernetes.io/hostname".to_string(), "worker2".to_string())]);
        assert!(!volume_fits_node(&made, &elsewhere, "worker2"));
        assert!(fits(&wanted, &made, "local-path"), "made for this claim, it fits it");
        assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Delete"));
    }
}
