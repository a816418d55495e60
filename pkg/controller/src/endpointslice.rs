//! The EndpointSlice controller (kube-controller-manager's `endpointslice`, with the
//! `endpoints` controller's v1 Endpoints beside it): for every Service with a selector, the
//! pods it selects become its endpoints, which the proxy and DNS read.
//!
//! For a Service (key `namespace/name`) the sync takes the pods of its namespace that its
//! selector selects, have an IP and have not ended, and makes each an endpoint: its IP, its
//! node, the pod as `targetRef`, and the conditions `ready` (Ready and not being deleted, or
//! always with `publishNotReadyAddresses`), `serving` (Ready) and `terminating` (being
//! deleted). Each Service port's `targetPort` is resolved per pod (a number, or the name of
//! one of the pod's container ports), so pods that resolve the ports alike share slices;
//! slices hold at most [`MAX_ENDPOINTS`] endpoints, are labelled `kubernetes.io/service-name`
//! and `endpointslice.kubernetes.io/managed-by`, and are owned by the Service. Existing slices
//! are updated in place when their ports match, surplus ones deleted, and a Service without
//! endpoints keeps one empty slice, as Kubernetes does. The v1 Endpoints named after the
//! Service get the same pods as `addresses` (ready) and `notReadyAddresses` (not ready, not
//! being deleted), for clients that still read those.
//!
//! A Service without a selector has its endpoints written by hand, as v1 Endpoints: those are
//! mirrored into slices managed by `endpointslicemirroring-controller.k8s.io` (Kubernetes'
//! `endpointslicemirroring` controller), ready addresses as ready endpoints, so the proxies
//! reach them too; Endpoints labelled `endpointslice.kubernetes.io/skip-mirror` are not.
//! `ExternalName` Services have no endpoints.
//!
//! A Service is synced when it changes, when a pod it selects (before or after a change) is
//! added, changes or goes, when its Endpoints change, and when one of its slices is changed or
//! deleted by someone else.
//!
//! The slices this controller wrote are remembered ([`SliceTracker`], Kubernetes'
//! `endpointSliceTracker`): a sync whose slice cache has not yet seen them (a slice created
//! but not yet listed, an update older in the cache, a deleted one still there) waits and
//! runs again, so a lagging cache never makes it create a second slice for the same ports.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as MetaSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube_core::ResourceExt;
use prometheus::Registry;
use rkube_api::kinds::endpointslice::SERVICE_NAME_LABEL;
use rkube_api::selector::LabelSelector;
use rkube_client::{Api, Client, DeleteParams, PostParams};
use rkube_informer::ObjectKey;
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::handler::{Deleted, HandlerFns};
use rkube_informer::store::Store;
use rkube_informer::workqueue::{RateLimiter, WorkQueue};

use crate::Error;
use crate::podutil::is_ready;
use crate::worker::{Action, Syncer};

/// The most endpoints one slice gets (Kubernetes' `--max-endpoints-per-slice` default).
pub const MAX_ENDPOINTS: usize = 100;
/// The label naming who manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// [`MANAGED_BY_LABEL`] of the slices mirrored from Endpoints written by hand.
pub const MIRRORED_BY: &str = "endpointslicemirroring-controller.k8s.io";
/// The label on Endpoints that must not be mirrored (the `kubernetes` Service's, whose slice
/// the apiserver writes).
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";

/// Keeps every selecting Service's EndpointSlices and Endpoints current.
pub struct EndpointSliceController {
    client: Client,
    services: Store<Service>,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
    endpoints: Store<Endpoints>,
    queue: WorkQueue<ObjectKey>,
    tracker: SliceTracker,
}

/// What this controller last wrote of each Service's slices, and when: slice name → the
/// resourceVersion written, or `None` for a slice it deleted.
#[derive(Default)]
struct SliceTracker(std::sync::Mutex<Writes>);

/// How long a sync waits for the cache to show its writes before it goes ahead anyway (a
/// slice someone else deleted meanwhile would otherwise be waited for for ever).
const CACHE_PATIENCE: Duration = Duration::from_secs(5);

type Writes = HashMap<ObjectKey, (Instant, HashMap<String, Option<u64>>)>;

impl SliceTracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Writes> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `cached` (the slices of `key` in the cache, by name and resourceVersion) shows
    /// every write remembered for `key` (or they are older than [`CACHE_PATIENCE`]); once it
    /// does, they are forgotten.
    fn caught_up(&self, key: &ObjectKey, cached: &HashMap<String, u64>) -> bool {
        let mut written = self.lock();
        let Some((at, writes)) = written.get(key) else { return true };
        let fresh = at.elapsed() > CACHE_PATIENCE
            || writes.iter().all(|(name, version)| match version {
                Some(version) => cached.get(name).is_some_and(|seen| seen >= version),
                None => !cached.contains_key(name),
            });
        if fresh {
            written.remove(key);
        }
        fresh
    }

    fn record(&self, key: &ObjectKey, name: String, version: Option<u64>) {
        let mut written = self.lock();
        let entry = written.entry(key.clone()).or_insert_with(|| (Instant::now(), HashMap::new()));
        entry.0 = Instant::now();
        entry.1.insert(name, version);
    }

    fn wrote(&self, key: &ObjectKey, slice: &EndpointSlice) {
        let version = slice.metadata.resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
        self.record(key, slice.name_any(), Some(version));
    }

    fn deleted(&self, key: &ObjectKey, name: &str) {
        self.record(key, name.to_string(), None);
    }
}

impl EndpointSliceController {
    /// Registers handlers on the factory's Service, Pod, EndpointSlice and Endpoints informers
    /// and a work queue named `endpointslice`.
    pub fn new(factory: &SharedInformerFactory, client: Client, registry: Option<&Registry>) -> Arc<Self> {
        let services = factory.informer::<Service>(None);
        let pods = factory.informer::<Pod>(None);
        let slices = factory.informer::<EndpointSlice>(None);
        let endpoints = factory.informer::<Endpoints>(None);
        let queue = WorkQueue::new("endpointslice", RateLimiter::default(), registry);
        let controller = Arc::new(EndpointSliceController {
            client,
            services: services.store(),
            pods: pods.store(),
            slices: slices.store(),
            endpoints: endpoints.store(),
            queue: queue.clone(),
            tracker: SliceTracker::default(),
        });
        let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
        services.add_handler(
            HandlerFns::new()
                .on_add(move |s: &Arc<Service>| q1.add(ObjectKey::of(s.as_ref())))
                .on_update(move |_: &Arc<Service>, s: &Arc<Service>| q2.add(ObjectKey::of(s.as_ref())))
                .on_delete(move |d: Deleted<Service>| q3.add(ObjectKey::of(d.object().as_ref()))),
        );
        let (c1, c2, c3) = (controller.clone(), controller.clone(), controller.clone());
        pods.add_handler(
            HandlerFns::new()
                .on_add(move |pod: &Arc<Pod>| c1.enqueue_selecting(pod))
                .on_update(move |old: &Arc<Pod>, pod: &Arc<Pod>| {
                    c2.enqueue_selecting(old);
                    c2.enqueue_selecting(pod);
                })
                .on_delete(move |deleted: Deleted<Pod>| c3.enqueue_selecting(deleted.object())),
        );
        let (e1, e2, e3) = (queue.clone(), queue.clone(), queue.clone());
        endpoints.add_handler(
            HandlerFns::new()
                .on_add(move |e: &Arc<Endpoints>| e1.add(ObjectKey::of(e.as_ref())))
                .on_update(move |_: &Arc<Endpoints>, e: &Arc<Endpoints>| e2.add(ObjectKey::of(e.as_ref())))
                .on_delete(move |d: Deleted<Endpoints>| e3.add(ObjectKey::of(d.object().as_ref()))),
        );
        let (q4, q5) = (queue.clone(), queue);
        let owner_of = |slice: &EndpointSlice| {
            let labels = slice.labels();
            matches!(labels.get(MANAGED_BY_LABEL).map(String::as_str), Some(MANAGED_BY | MIRRORED_BY))
                .then(|| labels.get(SERVICE_NAME_LABEL))
                .flatten()
                .map(|service| ObjectKey::new(slice.namespace().as_deref(), service))
        };
        slices.add_handler(
            HandlerFns::new()
                .on_update(move |_: &Arc<EndpointSlice>, slice: &Arc<EndpointSlice>| {
                    if let Some(key) = owner_of(slice) {
                        q4.add(key);
                    }
                })
                .on_delete(move |deleted: Deleted<EndpointSlice>| {
                    if let Some(key) = owner_of(deleted.object()) {
                        q5.add(key);
                    }
                }),
        );
        controller
    }

    /// The work queue (for [`crate::worker::run_workers`]).
    pub fn queue(&self) -> WorkQueue<ObjectKey> {
        self.queue.clone()
    }

    /// Queues the Services of `pod`'s namespace whose selector selects it.
    fn enqueue_selecting(&self, pod: &Pod) {
        let namespace = pod.namespace();
        let labels = pod.labels().clone();
        for service in self.services.list().iter().filter(|s| s.namespace() == namespace) {
            if selector(service).is_some_and(|selector| selector.matches(&labels)) {
                self.queue.add(ObjectKey::of(service.as_ref()));
            }
        }
    }
}

/// A Service's selector, when it has a non-empty one and is not `ExternalName`.
fn selector(service: &Service) -> Option<LabelSelector> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let labels = spec.selector.clone().filter(|labels| !labels.is_empty())?;
    LabelSelector::from_meta(&MetaSelector { match_labels: Some(labels), match_expressions: None }).ok()
}

/// The port of a Service port for `pod`: its `targetPort` as a number, or the container port
/// of that name (and protocol); `None` when the pod has no such port.
fn target_port(port: &k8s_openapi::api::core::v1::ServicePort, pod: &Pod) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(number)) => Some(*number),
        Some(IntOrString::String(name)) => match name.parse::<i32>() {
            Ok(number) => Some(number),
            Err(_) => pod.spec.as_ref()?.containers.iter().flat_map(|c| c.ports.iter().flatten()).find_map(|p| {
                (p.name.as_deref() == Some(name) && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                    .then_some(p.container_port)
            }),
        },
    }
}

/// The endpoints of a Service, grouped by the ports their pods resolve (see the module docs):
/// each group's ports and its endpoints, sorted by pod name.
pub fn desired(service: &Service, pods: &[Arc<Pod>]) -> Vec<(Vec<EndpointPort>, Vec<Endpoint>)> {
    let Some(selector) = selector(service) else { return Vec::new() };
    let spec = service.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let mut pods: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|pod| pod.namespace() == service.namespace() && selector.matches(&pod.labels().clone()))
        .filter(|pod| !matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
        .filter(|pod| pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).is_some_and(|ip| !ip.is_empty()))
        .collect();
    pods.sort_by_key(|pod| pod.name_any());
    let mut groups: BTreeMap<Vec<(String, i32, String)>, Vec<Endpoint>> = BTreeMap::new();
    for pod in pods {
        let ports: Vec<(String, i32, String)> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|port| {
                let number = target_port(port, pod)?;
                Some((
                    port.name.clone().unwrap_or_default(),
                    number,
                    port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ))
            })
            .collect();
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let serving = is_ready(pod);
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
        // A pod whose `subdomain` names this Service is known by its `hostname` (Kubernetes'
        // rule): `<hostname>.<service>.<namespace>.svc` in the cluster DNS.
        let hostname = pod.spec.as_ref().and_then(|s| {
            let named = s.subdomain.as_deref() == service.metadata.name.as_deref();
            s.hostname.clone().filter(|h| named && !h.is_empty())
        });
        let endpoint = Endpoint {
            addresses: vec![ip],
            hostname,
            conditions: Some(EndpointConditions {
                ready: Some(publish_not_ready || (serving && !terminating)),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.namespace(),
                name: Some(pod.name_any()),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        groups.entry(ports).or_default().push(endpoint);
    }
    groups
        .into_iter()
        .map(|(ports, endpoints)| {
            let ports = ports
                .into_iter()
                .map(|(name, port, protocol)| EndpointPort {
                    name: Some(name),
                    port: Some(port),
                    protocol: Some(protocol),
                    app_protocol: None,
                })
                .collect();
            (ports, endpoints)
        })
        .collect()
}

/// The v1 Endpoints subsets of the same groups: ready pods as `addresses`, the others (not
/// being deleted) as `notReadyAddresses`.
pub fn subsets(groups: &[(Vec<EndpointPort>, Vec<Endpoint>)]) -> Vec<EndpointSubset> {
    let address = |endpoint: &Endpoint| EndpointAddress {
        ip: endpoint.addresses.first().cloned().unwrap_or_default(),
        node_name: endpoint.node_name.clone(),
        target_ref: endpoint.target_ref.clone(),
        hostname: endpoint.hostname.clone(),
    };
    groups
        .iter()
        .filter_map(|(ports, endpoints)| {
            let conditions = |e: &Endpoint| e.conditions.clone().unwrap_or_default();
            let ready: Vec<EndpointAddress> =
                endpoints.iter().filter(|e| conditions(e).ready == Some(true)).map(address).collect();
            let not_ready: Vec<EndpointAddress> = endpoints
                .iter()
                .filter(|e| conditions(e).ready != Some(true) && conditions(e).terminating != Some(true))
                .map(address)
                .collect();
            if ready.is_empty() && not_ready.is_empty() {
                return None;
            }
            let ports = ports
                .iter()
                .map(|p| CorePort {
                    name: p.name.clone().filter(|n| !n.is_empty()),
                    port: p.port.unwrap_or_default(),
                    protocol: p.protocol.clone(),
                    app_protocol: None,
                })
                .collect();
            Some(EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: Some(ports),
            })
        })
        .collect()
}

impl EndpointSliceController {
    /// The slices of Service `key` managed by `managed_by`, by name.
    fn owned_slices(&self, key: &ObjectKey, managed_by: &str) -> Vec<Arc<EndpointSlice>> {
        let mut slices: Vec<Arc<EndpointSlice>> = self
            .slices
            .list()
            .into_iter()
            .filter(|slice| slice.namespace().as_deref() == key.namespace())
            .filter(|slice| {
                let labels = slice.labels();
                labels.get(SERVICE_NAME_LABEL).map(String::as_str) == Some(key.name())
                    && labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(managed_by)
            })
            .collect();
        slices.sort_by_key(|slice| slice.name_any());
        slices
    }

    async fn write_slices(
        &self,
        service: &Service,
        groups: Vec<(Vec<EndpointPort>, Vec<Endpoint>)>,
        managed_by: &str,
    ) -> Result<(), Error> {
        let key = ObjectKey::of(service);
        let namespace = key.namespace().unwrap_or_default();
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), namespace);
        let failed = |what: String| move |source| Error::Read { what, source };
        // Every group cut into slices of at most MAX_ENDPOINTS; an empty Service keeps one
        // empty slice.
        let mut wanted: Vec<(Vec<EndpointPort>, Vec<Endpoint>)> = groups
            .into_iter()
            .flat_map(|(ports, endpoints)| {
                endpoints.chunks(MAX_ENDPOINTS).map(|chunk| (ports.clone(), chunk.to_vec())).collect::<Vec<_>>()
            })
            .collect();
        if wanted.is_empty() {
            wanted.push((Vec::new(), Vec::new()));
        }
        let mut existing = self.owned_slices(&key, managed_by);
        for (ports, endpoints) in wanted {
            let reuse = existing.iter().position(|slice| slice.ports.clone().unwrap_or_default() == ports);
            match reuse.map(|at| existing.remove(at)) {
                Some(slice) => {
                    if slice.endpoints.clone().unwrap_or_default() == endpoints {
                        continue;
                    }
                    let mut updated = (*slice).clone();
                    updated.endpoints = Some(endpoints);
                    let written = api
                        .replace(&slice.name_any(), &PostParams::default(), &updated)
                        .await
                        .map_err(failed(format!("updating EndpointSlice {namespace}/{}", slice.name_any())))?;
                    self.tracker.wrote(&key, &written);
                }
                None => {
                    let slice = new_slice(service, ports, endpoints, managed_by);
                    let written = api
                        .create(&PostParams::default(), &slice)
                        .await
                        .map_err(failed(format!("creating an EndpointSlice for {key}")))?;
                    self.tracker.wrote(&key, &written);
                }
            }
        }
        for surplus in existing {
            match api.delete(&surplus.name_any(), &DeleteParams::default()).await {
                Ok(_) | Err(rkube_client::Error::NotFound(_)) => self.tracker.deleted(&key, &surplus.name_any()),
                Err(source) => {
                    return Err(Error::Read { what: format!("deleting EndpointSlice {}", surplus.name_any()), source });
                }
            }
        }
        Ok(())
    }

    async fn write_endpoints(&self, service: &Service, subsets: Vec<EndpointSubset>) -> Result<(), Error> {
        let key = ObjectKey::of(service);
        let namespace = key.namespace().unwrap_or_default();
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), namespace);
        let labels = service.metadata.labels.clone();
        match self.endpoints.get(&key) {
            Some(current)
                if current.subsets.clone().unwrap_or_default() == subsets && current.metadata.labels == labels =>
            {
                Ok(())
            }
            Some(current) => {
                let mut updated = (*current).clone();
                updated.subsets = Some(subsets);
                updated.metadata.labels = labels;
                api.replace(key.name(), &PostParams::default(), &updated)
                    .await
                    .map(|_| ())
                    .map_err(|source| Error::Read { what: format!("updating Endpoints {key}"), source })
            }
            None => {
                let endpoints = Endpoints {
                    metadata: ObjectMeta { name: Some(key.name().to_string()), labels, ..Default::default() },
                    subsets: Some(subsets),
                };
                match api.create(&PostParams::default(), &endpoints).await {
                    Ok(_) | Err(rkube_client::Error::AlreadyExists(_)) => Ok(()),
                    Err(source) => Err(Error::Read { what: format!("creating Endpoints {key}"), source }),
                }
            }
        }
    }
}

/// A new slice of `service` (named by the apiserver from `<service>-`), owned by it.
fn new_slice(service: &Service, ports: Vec<EndpointPort>, endpoints: Vec<Endpoint>, managed_by: &str) -> EndpointSlice {
    let name = service.name_any();
    let labels = BTreeMap::from([
        (SERVICE_NAME_LABEL.to_string(), name.clone()),
        (MANAGED_BY_LABEL.to_string(), managed_by.to_string()),
    ]);
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name,
                uid: service.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: Some(endpoints),
        ports: Some(ports),
    }
}

impl Syncer for EndpointSliceController {
    type Key = ObjectKey;

    async fn sync(&self, key: &ObjectKey) -> Result<Action, Error> {
        let namespace = key.namespace().unwrap_or_default();
        let cached: HashMap<String, u64> = self
            .slices
            .list()
            .into_iter()
            .filter(|slice| slice.namespace().as_deref() == Some(namespace))
            .filter(|slice| slice.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(key.name()))
            .map(|slice| {
                let version = slice.metadata.resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
                (slice.name_any(), version)
            })
            .collect();
        // A Service that is gone only needs its slices deleted, which a stale cache cannot
        // make go wrong.
        if self.services.get(key).is_some() && !self.tracker.caught_up(key, &cached) {
            return Ok(Action::requeue(Duration::from_millis(100)));
        }
        let Some(service) = self.services.get(key) else {
            // Gone: its slices go (also with their owner) and the Endpoints this controller
            // kept for it.
            self.delete_slices(key, MANAGED_BY).await?;
            self.delete_slices(key, MIRRORED_BY).await?;
            if self.endpoints.get(key).is_some() {
                let api: Api<Endpoints> = Api::namespaced(self.client.clone(), namespace);
                match api.delete(key.name(), &DeleteParams::default()).await {
                    Ok(_) | Err(rkube_client::Error::NotFound(_)) => {}
                    Err(source) => return Err(Error::Read { what: format!("deleting Endpoints {key}"), source }),
                }
            }
            return Ok(Action::await_change());
        };
        if selector(&service).is_some() {
            let pods: Vec<Arc<Pod>> =
                self.pods.list().into_iter().filter(|p| p.namespace().as_deref() == Some(namespace)).collect();
            let groups = desired(&service, &pods);
            self.write_endpoints(&service, subsets(&groups)).await?;
            self.write_slices(&service, groups, MANAGED_BY).await?;
            self.delete_slices(key, MIRRORED_BY).await?;
            return Ok(Action::await_change());
        }
        // No selector: the Endpoints written by hand, mirrored (see the module docs).
        self.delete_slices(key, MANAGED_BY).await?;
        let external_name = service.spec.as_ref().and_then(|spec| spec.type_.as_deref()) == Some("ExternalName");
        let mirrored = self
            .endpoints
            .get(key)
            .filter(|endpoints| !endpoints.labels().contains_key(SKIP_MIRROR_LABEL) && !external_name);
        match mirrored {
            Some(endpoints) => self.write_slices(&service, mirror(&endpoints), MIRRORED_BY).await?,
            None => self.delete_slices(key, MIRRORED_BY).await?,
        }
        Ok(Action::await_change())
    }
}

impl EndpointSliceController {
    /// Deletes the slices of Service `key` managed by `managed_by`.
    async fn delete_slices(&self, key: &ObjectKey, managed_by: &str) -> Result<(), Error> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), key.namespace().unwrap_or_default());
        for slice in self.owned_slices(key, managed_by) {
            match api.delete(&slice.name_any(), &DeleteParams::default()).await {
                Ok(_) | Err(rkube_client::Error::NotFound(_)) => self.tracker.deleted(key, &slice.name_any()),
                Err(source) => {
                    return Err(Error::Read { what: format!("deleting EndpointSlice {}", slice.name_any()), source });
                }
            }
        }
        Ok(())
    }
}

/// The slices of hand-written Endpoints: one group per subset, its addresses ready, its
/// `notReadyAddresses` not.
pub fn mirror(endpoints: &Endpoints) -> Vec<(Vec<EndpointPort>, Vec<Endpoint>)> {
    endpoints
        .subsets
        .iter()
        .flatten()
        .map(|subset| {
            let ports = subset
                .ports
                .iter()
                .flatten()
                .map(|p| EndpointPort {
                    name: Some(p.name.clone().unwrap_or_default()),
                    port: Some(p.port),
                    protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: p.app_protocol.clone(),
                })
                .collect();
            let endpoint = |address: &EndpointAddress, ready: bool| Endpoint {
                addresses: vec![address.ip.clone()],
                conditions: Some(EndpointConditions {
                    ready: Some(ready),
                    serving: Some(ready),
                    terminating: Some(false),
                }),
                hostname: address.hostname.clone(),
                node_name: address.node_name.clone(),
                target_ref: address.target_ref.clone(),
                ..Default::default()
            };
            let mut list: Vec<Endpoint> = subset.addresses.iter().flatten().map(|a| endpoint(a, true)).collect();
            list.extend(subset.not_ready_addresses.iter().flatten().map(|a| endpoint(a, false)));
            (ports, list)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: &str, ready: bool, deleting: bool, port_name: &str, port: i32) -> Arc<Pod> {
        let deletion = deleting.then_some("2026-12-06T10:00:00Z");
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "web"},
                             "deletionTimestamp": deletion},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": port_name, "containerPort": port}]}]},
                "status": {"phase": "Running", "podIP": ip,
                           "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
            }))
            .expect("pod"),
        )
    }

    fn service(ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default", "uid": "svc"},
            "spec": {"selector": {"app": "web"}, "ports": ports}}))
        .expect("service")
    }

    #[test]
    fn pods_become_endpoints_with_their_conditions_and_named_ports_resolved_per_pod() {
        let pods = [
            pod("a", "10.0.0.1", true, false, "http", 8080),
            pod("b", "10.0.0.2", false, false, "http", 8080),
            pod("c", "10.0.0.3", true, true, "http", 8080),
            pod("d", "10.0.0.4", true, false, "http", 9090),
            pod("nobody", "", true, false, "http", 8080),
        ];
        let groups = desired(&service(json!([{"name": "web", "port": 80, "targetPort": "http"}])), &pods);
        type Conditions = (String, bool, bool, bool);
        let summary: Vec<(i32, Vec<Conditions>)> = groups
            .iter()
            .map(|(ports, endpoints)| {
                let conditions = endpoints
                    .iter()
                    .map(|e| {
                        let c = e.conditions.clone().unwrap_or_default();
                        (
                            e.addresses[0].clone(),
                            c.ready == Some(true),
                            c.serving == Some(true),
                            c.terminating == Some(true),
                        )
                    })
                    .collect();
                (ports[0].port.unwrap_or_default(), conditions)
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    8080,
                    vec![
                        ("10.0.0.1".into(), true, true, false),
                        ("10.0.0.2".into(), false, false, false),
                        ("10.0.0.3".into(), false, true, true),
                    ]
                ),
                (9090, vec![("10.0.0.4".into(), true, true, false)]),
            ]
        );
        let subsets = subsets(&groups);
        let ips = |list: &Option<Vec<EndpointAddress>>| list.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>();
        assert_eq!(
            (ips(&subsets[0].addresses), ips(&subsets[0].not_ready_addresses)),
            (vec!["10.0.0.1".to_string()], vec!["10.0.0.2".to_string()])
        );
        assert_eq!(subsets[1].ports.as_ref().map(|p| p[0].port), Some(9090));
    }

    #[test]
    fn a_pod_whose_subdomain_names_the_service_is_known_by_its_hostname() {
        let svc = service(json!([{"port": 80}]));
        let service_name = svc.metadata.name.clone().expect("name");
        let named = |subdomain: &str| {
            let mut pod = (*pod("db-0", "10.0.0.9", true, false, "http", 80)).clone();
            let spec = pod.spec.as_mut().expect("spec");
            spec.hostname = Some("db-0".into());
            spec.subdomain = Some(subdomain.into());
            Arc::new(pod)
        };
        let groups = desired(&svc, &[named(&service_name)]);
        assert_eq!(groups[0].1[0].hostname.as_deref(), Some("db-0"));
        assert_eq!(subsets(&groups)[0].addresses.as_ref().expect("addresses")[0].hostname.as_deref(), Some("db-0"));
        let groups = desired(&svc, &[named("another-service")]);
        assert_eq!(groups[0].1[0].hostname, None, "another Service's subdomain");
    }

    #[test]
    fn a_service_without_a_selector_has_no_managed_endpoints() {
        let mut svc = service(json!([{"port": 80}]));
        svc.spec.as_mut().expect("spec").selector = None;
        assert!(desired(&svc, &[pod("a", "10.0.0.1", true, false, "http", 80)]).is_empty());
    }
}
