//! The DaemonSet controller: one pod of each DaemonSet's template on every node that should
//! run it, as kube-controller-manager's `pkg/controller/daemon` does.
//!
//! One sync of a DaemonSet key, judging from the caches:
//! 1. **revision**: the template's hash names a ControllerRevision `<ds>-<hash>` holding the
//!    template (`data: {"spec": {"template": {..., "$patch": "replace"}}}`, what
//!    `kubectl rollout undo` applies back); a new template gets the next revision number, an
//!    old template rolled back to gets its revision renumbered to the newest. Revisions beyond
//!    `revisionHistoryLimit` that no pod runs are deleted, oldest first;
//! 2. **placement**: a node should run the pod when the template's `nodeSelector` and required
//!    node affinity select it and the pod (with the DaemonSet's default tolerations:
//!    not-ready and unreachable `NoExecute`, the pressure and unschedulable `NoSchedule`, and
//!    network-unavailable for host-network pods) tolerates its `NoSchedule`/`NoExecute`
//!    taints — so a cordoned node keeps its daemon pods, as in Kubernetes;
//! 3. **manage**, with [`Expectations`] satisfied: create the pod for a node that should run
//!    one and has none — the pod names its node through required node affinity on
//!    `metadata.name` and the scheduler binds it (Kubernetes' design since 1.12); delete pods
//!    on nodes that should not run one, failed pods (`FailedDaemonPod`; replaced next sync)
//!    and all but the oldest of several on one node;
//! 4. **update**: with `RollingUpdate`, old pods (another `controller-revision-hash`) are
//!    deleted where they are unavailable anyway, and where available while fewer than
//!    `maxUnavailable` nodes are unavailable; with `maxSurge`, the new pod starts beside the old
//!    one, which goes once the new one is available. `OnDelete` replaces a pod only once
//!    someone deleted it;
//! 5. **status**: `desiredNumberScheduled`, `currentNumberScheduled`, `numberMisscheduled`,
//!    `numberReady`, `numberAvailable`, `numberUnavailable`, `updatedNumberScheduled` and
//!    `observedGeneration`, written when changed.
//!
//! Not promised: `collisionCount` (hash collisions are not resolved); pods of a node that
//! disappeared are left to the garbage collector and node lifecycle.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube_core::ResourceExt;
use prometheus::Registry;
use rkube_api::placement::{selects_node, untolerated_taint};
use rkube_client::events::{EventRecorder, EventType, object_reference};
use rkube_client::{Api, Client, Patch, PatchParams};
use rkube_informer::ObjectKey;
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::handler::{Deleted, HandlerFns};
use rkube_informer::store::{NAMESPACE_INDEX, Store};
use rkube_informer::workqueue::{RateLimiter, WorkQueue};
use serde_json::json;

use crate::Error;
use crate::controller_ref::{controller_of, new_controller_ref};
use crate::deployment::template_hash;
use crate::expectations::Expectations;
use crate::history::{self, revision_name};
use crate::podcontrol::PodControl;
use crate::podutil::{is_available, is_ready};
use crate::worker::{Action, Syncer};

pub use crate::history::REVISION_HASH;
/// The label with the DaemonSet generation a pod was made from (kept for older tools).
pub const TEMPLATE_GENERATION: &str = "pod-template-generation";
const KIND: &str = "DaemonSet";
const API_VERSION: &str = "apps/v1";

/// The DaemonSet controller; see the module docs.
pub struct DaemonSetController {
    client: Client,
    daemon_sets: Store<DaemonSet>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    queue: WorkQueue<ObjectKey>,
    expectations: Arc<Expectations>,
    events: EventRecorder,
    pod_control: PodControl,
}

/// The key of the DaemonSet controlling `meta`'s object, if any.
fn owner_key(meta: &ObjectMeta) -> Option<ObjectKey> {
    let owner = controller_of(meta)?;
    (owner.kind == KIND && owner.api_version.starts_with("apps/"))
        .then(|| ObjectKey::new(meta.namespace.as_deref(), &owner.name))
}

impl DaemonSetController {
    /// Registers handlers on the factory's DaemonSet, Pod, Node and ControllerRevision
    /// informers and a work queue named `daemonset`.
    pub fn new(factory: &SharedInformerFactory, client: Client, registry: Option<&Registry>) -> Arc<Self> {
        let daemon_sets = factory.informer::<DaemonSet>(None);
        let pods = factory.informer::<Pod>(None);
        let nodes = factory.informer::<Node>(None);
        let revisions = factory.informer::<ControllerRevision>(None);
        let events = EventRecorder::new(client.clone(), "daemonset-controller", None);
        let expectations = Arc::new(Expectations::default());
        let controller = Arc::new(DaemonSetController {
            pod_control: PodControl::new(client.clone(), Arc::clone(&expectations), events.clone()),
            events,
            client,
            daemon_sets: daemon_sets.store(),
            pods: pods.store(),
            nodes: nodes.store(),
            revisions: revisions.store(),
            queue: WorkQueue::new("daemonset", RateLimiter::default(), registry),
            expectations,
        });
        let (q1, q2, q3) = (controller.queue(), controller.queue(), controller.queue());
        let e3 = Arc::clone(&controller.expectations);
        daemon_sets.add_handler(
            HandlerFns::new()
                .on_add(move |ds: &Arc<DaemonSet>| q1.add(ObjectKey::of(ds.as_ref())))
                .on_update(move |_: &Arc<DaemonSet>, ds: &Arc<DaemonSet>| q2.add(ObjectKey::of(ds.as_ref())))
                .on_delete(move |deleted: Deleted<DaemonSet>| {
                    let key = ObjectKey::of(deleted.object().as_ref());
                    e3.forget(&key);
                    q3.add(key);
                }),
        );
        let (q1, q2, q3) = (controller.queue(), controller.queue(), controller.queue());
        let (e1, e2, e3) = (
            Arc::clone(&controller.expectations),
            Arc::clone(&controller.expectations),
            Arc::clone(&controller.expectations),
        );
        pods.add_handler(
            HandlerFns::new()
                .on_add(move |pod: &Arc<Pod>| {
                    if let Some(key) = owner_key(&pod.metadata) {
                        e1.creation_observed(&key);
                        q1.add(key);
                    }
                })
                .on_update(move |old: &Arc<Pod>, pod: &Arc<Pod>| {
                    if old.metadata.resource_version == pod.metadata.resource_version {
                        return;
                    }
                    if let Some(key) = owner_key(&pod.metadata) {
                        if pod.metadata.deletion_timestamp.is_some() {
                            e2.deletion_observed(&key, &ObjectKey::of(pod.as_ref()));
                        }
                        q2.add(key);
                    }
                })
                .on_delete(move |deleted: Deleted<Pod>| {
                    if let Some(key) = owner_key(&deleted.object().metadata) {
                        e3.deletion_observed(&key, &ObjectKey::of(deleted.object().as_ref()));
                        q3.add(key);
                    }
                }),
        );
        let all = {
            let store = controller.daemon_sets.clone();
            let queue = controller.queue();
            move || {
                for ds in store.list() {
                    queue.add(ObjectKey::of(ds.as_ref()));
                }
            }
        };
        let (a1, a2, a3) = (all.clone(), all.clone(), all);
        nodes.add_handler(
            HandlerFns::new()
                .on_add(move |_: &Arc<Node>| a1())
                .on_update(move |old: &Arc<Node>, node: &Arc<Node>| {
                    if old.metadata.labels != node.metadata.labels || old.spec != node.spec {
                        a2();
                    }
                })
                .on_delete(move |_: Deleted<Node>| a3()),
        );
        controller
    }

    /// The controller's work queue of DaemonSet keys.
    pub fn queue(&self) -> WorkQueue<ObjectKey> {
        self.queue.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Placement and pods.
// ---------------------------------------------------------------------------------------------

/// The tolerations every daemon pod gets (Kubernetes' `AddOrUpdateDaemonPodTolerations`).
fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let toleration = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    };
    let mut tolerations = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        tolerations.push(toleration("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    tolerations
}

/// The template's pod spec with the default tolerations added.
fn daemon_pod_spec(ds: &DaemonSet) -> PodSpec {
    let mut spec = ds.spec.template.spec.clone().unwrap_or_default();
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for toleration in default_tolerations(spec.host_network == Some(true)) {
        if !tolerations.iter().any(|t| t.key == toleration.key && t.effect == toleration.effect) {
            tolerations.push(toleration);
        }
    }
    spec
}

/// Whether the DaemonSet's pod belongs on `node`.
pub fn should_run(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    selects_node(spec, labels, &node.name_any()) && untolerated_taint(spec, node).is_none()
}

/// The node a daemon pod is for: where it runs, or the node its affinity names.
fn node_of(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(node);
    }
    let required =
        spec.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?;
    required.node_selector_terms.iter().flat_map(|t| t.match_fields.iter().flatten()).find_map(|r| {
        (r.key == "metadata.name" && r.operator == "In").then(|| r.values.as_ref()?.first().cloned()).flatten()
    })
}

/// The pod for `node`: the template with the default tolerations, pinned to the node by
/// required node affinity on `metadata.name` (replacing the template's required affinity, as
/// Kubernetes does), labelled with the revision hash.
pub fn pod_for(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let meta = ds.spec.template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(REVISION_HASH.into(), hash.into());
    labels.insert(TEMPLATE_GENERATION.into(), ds.metadata.generation.unwrap_or(1).to_string());
    let mut spec = daemon_pod_spec(ds);
    let pin = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
            match_expressions: None,
        }],
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default)
        .required_during_scheduling_ignored_during_execution = Some(pin);
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![new_controller_ref(API_VERSION, KIND, &ds.metadata)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn hash_of(pod: &Pod) -> Option<&str> {
    pod.metadata.labels.as_ref()?.get(REVISION_HASH).map(String::as_str)
}

fn is_failed(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
}

/// `value` of `total` (a number, or a percentage rounded up).
fn scaled(value: Option<&IntOrString>, total: usize) -> usize {
    match value {
        Some(IntOrString::Int(n)) => usize::try_from(*n).unwrap_or(0),
        Some(IntOrString::String(text)) => {
            let percent: usize = text.trim_end_matches('%').parse().unwrap_or(0);
            (percent * total).div_ceil(100)
        }
        None => 0,
    }
}

/// What one sync changes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// Nodes to create a pod on.
    create: Vec<String>,
    /// Pods to delete, by name.
    delete: Vec<String>,
}

/// The per-node decisions of steps 3 and 4 (see the module docs), given every node, whether
/// it should run the pod, and the DaemonSet's pods by node.
fn plan(
    ds: &DaemonSet,
    hash: &str,
    nodes: &[(String, bool)],
    by_node: &HashMap<String, Vec<Arc<Pod>>>,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    let desired = nodes.iter().filter(|(_, run)| *run).count();
    let strategy = ds.spec.update_strategy.as_ref();
    let rolling = strategy.and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate";
    let rolling_params = strategy.and_then(|s| s.rolling_update.as_ref());
    let max_unavailable = scaled(rolling_params.and_then(|r| r.max_unavailable.as_ref()), desired)
        .max(usize::from(scaled(rolling_params.and_then(|r| r.max_surge.as_ref()), desired) == 0));
    let max_surge = scaled(rolling_params.and_then(|r| r.max_surge.as_ref()), desired);
    let mut unavailable = 0;
    let mut candidates = Vec::new();
    let mut surging = 0;
    for (node, run) in nodes {
        let pods: Vec<&Arc<Pod>> = by_node.get(node).map(|p| p.iter().collect()).unwrap_or_default();
        let live: Vec<&Arc<Pod>> = pods.iter().copied().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        if !run {
            plan.delete.extend(live.iter().map(|p| p.name_any()));
            continue;
        }
        let (failed, mut running): (Vec<&Arc<Pod>>, Vec<&Arc<Pod>>) = live.iter().partition(|p| is_failed(p));
        plan.delete.extend(failed.iter().map(|p| p.name_any()));
        if running.is_empty() {
            unavailable += 1;
            if pods.iter().all(|p| p.metadata.deletion_timestamp.is_some() || is_failed(p)) {
                plan.create.push(node.clone());
            }
            continue;
        }
        running.sort_by_key(|p| (p.metadata.creation_timestamp.as_ref().map(|t| t.0), p.name_any()));
        let (new, old): (Vec<&Arc<Pod>>, Vec<&Arc<Pod>>) = running.iter().partition(|p| hash_of(p) == Some(hash));
        if !rolling || old.is_empty() {
            // Several pods on one node: keep the oldest.
            plan.delete.extend(running.iter().skip(1).map(|p| p.name_any()));
            if !running.iter().any(|p| is_available(p, min_ready, now)) {
                unavailable += 1;
            }
            continue;
        }
        match new.first() {
            // Surged: the old pods go once the new one is available.
            Some(fresh) => {
                if is_available(fresh, min_ready, now) {
                    plan.delete.extend(old.iter().map(|p| p.name_any()));
                    plan.delete.extend(new.iter().skip(1).map(|p| p.name_any()));
                } else {
                    unavailable += usize::from(!old.iter().any(|p| is_available(p, min_ready, now)));
                }
            }
            None => {
                let available = old.iter().any(|p| is_available(p, min_ready, now));
                if !available {
                    unavailable += 1;
                    plan.delete.extend(old.iter().map(|p| p.name_any()));
                } else {
                    candidates.push((node.clone(), old.iter().map(|p| p.name_any()).collect::<Vec<_>>()));
                }
            }
        }
        if !new.is_empty() && !old.is_empty() {
            surging += 1;
        }
    }
    for (node, old) in candidates {
        if max_surge > 0 {
            if surging < max_surge {
                surging += 1;
                plan.create.push(node);
            }
        } else if unavailable < max_unavailable {
            unavailable += 1;
            plan.delete.extend(old);
        }
    }
    plan
}

// ---------------------------------------------------------------------------------------------
// The sync.
// ---------------------------------------------------------------------------------------------

impl Syncer for DaemonSetController {
    type Key = ObjectKey;

    async fn sync(&self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(ds) = self.daemon_sets.get(key) else {
            self.expectations.forget(key);
            return Ok(Action::await_change());
        };
        let uid = ds.uid().unwrap_or_default();
        let namespace = key.namespace().unwrap_or_default().to_string();
        let hash = template_hash(&ds.spec.template);
        let pods: Vec<Arc<Pod>> = self
            .pods
            .by_index(NAMESPACE_INDEX, &namespace)?
            .into_iter()
            .filter(|pod| controller_of(&pod.metadata).is_some_and(|owner| owner.uid == uid))
            .collect();
        self.sync_revisions(&ds, &hash, &pods).await?;
        let spec = daemon_pod_spec(&ds);
        let mut nodes: Vec<(String, bool)> =
            self.nodes.list().iter().map(|node| (node.name_any(), should_run(&spec, node))).collect();
        nodes.sort();
        let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        for pod in &pods {
            if let Some(node) = node_of(pod) {
                by_node.entry(node).or_default().push(Arc::clone(pod));
            }
        }
        let now = Timestamp::now();
        let expire = self.expectations.expires_in(key);
        let mut action = expire.map_or_else(Action::await_change, Action::requeue);
        if expire.is_none() && ds.metadata.deletion_timestamp.is_none() {
            let plan = plan(&ds, &hash, &nodes, &by_node, now);
            for name in &plan.delete {
                if let Some(pod) = pods.iter().find(|p| p.name_any() == *name).filter(|p| is_failed(p)) {
                    let message = format!(
                        "Found failed daemon pod {namespace}/{} on node {}, will try to kill it",
                        pod.name_any(),
                        node_of(pod).unwrap_or_default()
                    );
                    self.events.record(
                        &object_reference(ds.as_ref()),
                        EventType::Warning,
                        "FailedDaemonPod",
                        "",
                        message,
                    );
                }
            }
            self.apply(key, &ds, &hash, &plan, &pods).await?;
            // A pod becomes available minReadySeconds after it is ready: look again then.
            let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
            if min_ready > 0 && pods.iter().any(|p| is_ready(p) && !is_available(p, min_ready, now)) {
                action = action.sooner(Action::requeue(Duration::from_secs(u64::try_from(min_ready).unwrap_or(0) + 1)));
            }
        }
        self.update_status(&ds, &hash, &nodes, &by_node, now).await?;
        Ok(action)
    }
}

impl DaemonSetController {
    /// Step 1: the current template's ControllerRevision, and old ones beyond the history limit.
    async fn sync_revisions(&self, ds: &DaemonSet, hash: &str, pods: &[Arc<Pod>]) -> Result<(), Error> {
        let owner = history::Owner { meta: &ds.metadata, api_version: API_VERSION, kind: KIND };
        let in_use: Vec<String> =
            pods.iter().filter_map(|p| hash_of(p)).map(|h| revision_name(&ds.metadata, h)).collect();
        let limit = ds.spec.revision_history_limit.unwrap_or(10);
        history::record(&self.client, &self.revisions, &owner, &ds.spec.template, hash, limit, &in_use).await?;
        Ok(())
    }

    /// Creates and deletes what `plan` says, with expectations and Events.
    async fn apply(
        &self,
        key: &ObjectKey,
        ds: &DaemonSet,
        hash: &str,
        plan: &Plan,
        pods: &[Arc<Pod>],
    ) -> Result<(), Error> {
        let this = object_reference(ds);
        let victims: Vec<Arc<Pod>> = pods.iter().filter(|p| plan.delete.contains(&p.name_any())).cloned().collect();
        let deleted = if victims.is_empty() { Ok(()) } else { self.pod_control.delete(key, &this, &victims).await };
        let created = if plan.create.is_empty() {
            Ok(())
        } else {
            tracing::info!(%key, nodes = ?plan.create, "creating daemon pods");
            let new_pods: Vec<Pod> = plan.create.iter().map(|node| pod_for(ds, node, hash)).collect();
            self.pod_control.create(key, &this, &new_pods).await
        };
        deleted.and(created)
    }

    async fn update_status(
        &self,
        ds: &DaemonSet,
        hash: &str,
        nodes: &[(String, bool)],
        by_node: &HashMap<String, Vec<Arc<Pod>>>,
        now: Timestamp,
    ) -> Result<(), Error> {
        let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
        let live = |node: &str| -> Vec<Arc<Pod>> {
            by_node
                .get(node)
                .map(|pods| pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).cloned().collect())
                .unwrap_or_default()
        };
        let count = |f: &dyn Fn(&[Arc<Pod>]) -> bool, run: bool| -> i32 {
            let n = nodes.iter().filter(|(node, r)| *r == run && f(&live(node))).count();
            i32::try_from(n).unwrap_or(i32::MAX)
        };
        let desired = i32::try_from(nodes.iter().filter(|(_, run)| *run).count()).unwrap_or(i32::MAX);
        let available = count(&|pods| pods.iter().any(|p| is_available(p, min_ready, now)), true);
        let status = json!({
            "observedGeneration": ds.metadata.generation,
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": count(&|pods| !pods.is_empty(), true),
            "numberMisscheduled": count(&|pods| !pods.is_empty(), false),
            "numberReady": count(&|pods| pods.iter().any(|p| is_ready(p)), true),
            "numberAvailable": available,
            "numberUnavailable": desired - available,
            "updatedNumberScheduled": count(&|pods| pods.iter().any(|p| hash_of(p) == Some(hash)), true),
        });
        let current = serde_json::to_value(ds.status.clone().unwrap_or_default()).unwrap_or_default();
        let same = status.as_object().is_some_and(|fields| {
            fields
                .iter()
                .all(|(k, v)| current.get(k).unwrap_or(&json!(0)) == v || (v == &json!(0) && current.get(k).is_none()))
        });
        if same {
            return Ok(());
        }
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &ds.namespace().unwrap_or_default());
        match api.patch_status(&ds.name_any(), &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await
        {
            Ok(_) => Ok(()),
            Err(error) if error.is_not_found() => Ok(()),
            Err(source) => Err(Error::UpdateStatus { key: ObjectKey::of(ds), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(strategy: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({"metadata": {"name": "agent", "namespace": "kube-system", "uid": "u1", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "updateStrategy": strategy,
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "a", "image": "agent:2"}]}}}}))
        .expect("daemonset")
    }

    fn node(name: &str, extra: serde_json::Value) -> Node {
        let mut body = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}});
        if let (Some(target), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            target.extend(extra.clone());
        }
        serde_json::from_value(body).expect("node")
    }

    fn pod(name: &str, node: &str, hash: &str, ready: bool) -> Arc<Pod> {
        let conditions = if ready { json!([{"type": "Ready", "status": "True"}]) } else { json!([]) };
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {REVISION_HASH: hash}},
                "spec": {"nodeName": node, "containers": []}, "status": {"phase": "Running", "conditions": conditions}}))
            .expect("pod"),
        )
    }

    #[test]
    fn daemon_pods_tolerate_cordons_and_lost_nodes_but_not_other_taints() {
        let ds = ds(json!({"type": "RollingUpdate"}));
        let spec = daemon_pod_spec(&ds);
        let cordoned = node(
            "n1",
            json!({"spec": {"unschedulable": true, "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}}),
        );
        assert!(should_run(&spec, &cordoned));
        let lost =
            node("n2", json!({"spec": {"taints": [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]}}));
        assert!(should_run(&spec, &lost));
        let gpu = node("n3", json!({"spec": {"taints": [{"key": "gpu", "value": "true", "effect": "NoSchedule"}]}}));
        assert!(!should_run(&spec, &gpu));
        let mut picky = ds.clone();
        picky.spec.template.spec.as_mut().expect("spec").node_selector =
            Some([("disk".to_string(), "ssd".to_string())].into());
        assert!(!should_run(&daemon_pod_spec(&picky), &node("n4", json!({}))));
    }

    #[test]
    fn a_daemon_pod_names_its_node_through_affinity() {
        let pod = pod_for(&ds(json!({})), "worker1", "abc");
        assert_eq!(node_of(&pod).as_deref(), Some("worker1"));
        assert!(pod.spec.as_ref().expect("spec").node_name.is_none(), "the scheduler binds it");
        assert_eq!(hash_of(&pod), Some("abc"));
    }

    #[test]
    fn missing_pods_are_created_and_misplaced_ones_deleted() {
        let ds = ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}));
        let nodes = vec![("n1".to_string(), true), ("n2".to_string(), true), ("n3".to_string(), false)];
        let by_node: HashMap<String, Vec<Arc<Pod>>> =
            [("n1".to_string(), vec![pod("a", "n1", "h", true)]), ("n3".to_string(), vec![pod("c", "n3", "h", true)])]
                .into();
        let plan = plan(&ds, "h", &nodes, &by_node, Timestamp::now());
        assert_eq!(plan, Plan { create: vec!["n2".into()], delete: vec!["c".into()] });
    }

    #[test]
    fn a_rolling_update_replaces_max_unavailable_pods_at_a_time() {
        let ds = ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}));
        let nodes: Vec<(String, bool)> = (1..=3).map(|i| (format!("n{i}"), true)).collect();
        let by_node: HashMap<String, Vec<Arc<Pod>>> =
            (1..=3).map(|i| (format!("n{i}"), vec![pod(&format!("p{i}"), &format!("n{i}"), "old", true)])).collect();
        assert_eq!(plan(&ds, "new", &nodes, &by_node, Timestamp::now()).delete, ["p1"]);
        // While n1's new pod is not ready yet, nothing else goes.
        let mut rolling = by_node.clone();
        rolling.insert("n1".into(), vec![pod("q1", "n1", "new", false)]);
        assert!(plan(&ds, "new", &nodes, &rolling, Timestamp::now()).delete.is_empty());
        let on_delete = self::ds(json!({"type": "OnDelete"}));
        assert!(plan(&on_delete, "new", &nodes, &by_node, Timestamp::now()).delete.is_empty());
    }

    #[test]
    fn with_max_surge_the_new_pod_starts_beside_the_old_one() {
        let ds = ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}));
        let nodes = vec![("n1".to_string(), true)];
        let old: HashMap<String, Vec<Arc<Pod>>> = [("n1".to_string(), vec![pod("p1", "n1", "old", true)])].into();
        assert_eq!(
            plan(&ds, "new", &nodes, &old, Timestamp::now()),
            Plan { create: vec!["n1".into()], delete: vec![] }
        );
        let both: HashMap<String, Vec<Arc<Pod>>> =
            [("n1".to_string(), vec![pod("p1", "n1", "old", true), pod("q1", "n1", "new", true)])].into();
        assert_eq!(plan(&ds, "new", &nodes, &both, Timestamp::now()).delete, ["p1"]);
    }
}
