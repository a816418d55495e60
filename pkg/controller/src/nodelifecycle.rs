//! The node lifecycle controller: notices nodes that went silent, marks them, and evicts their
//! pods so their controllers recreate them elsewhere.
//!
//! Every `monitor_period` (kube-controller-manager: `monitorNodeHealth`), for each Node:
//! 1. **probe**: the node counts as heard from when its Lease in `kube-node-lease` was renewed
//!    or its `Ready` condition's `lastHeartbeatTime` moved. Both are compared with what this
//!    controller saw last, and the time is taken from *its own* clock, so kubelet clocks never
//!    need to agree with ours. A node first seen counts as heard from now.
//! 2. **silent** for longer than `grace_period` (`--node-monitor-grace-period`, default 40 s):
//!    set `Ready=Unknown` (reason `NodeStatusUnknown`) through the node's status subresource,
//!    and add the `node.kubernetes.io/unreachable` taint with effects `NoSchedule` and
//!    `NoExecute`;
//! 3. **evict**: on a node tainted `NoExecute` by us, delete each pod that does not tolerate
//!    the taint once `pod_eviction_timeout` has passed since the taint, and each pod that
//!    tolerates it with `tolerationSeconds` once those have passed. A toleration without
//!    `tolerationSeconds` keeps the pod forever (as DaemonSet pods are kept). Deleting a pod
//!    bound to a node only marks it (`deletionTimestamp`), which is enough for its ReplicaSet to
//!    replace it;
//! 4. **back**: a node heard from again loses the taints (its kubelet reports `Ready` itself).
//!
//! Mass failure (Kubernetes' zone disruption, here with the whole cluster as one zone): when
//! every node is silent, this controller assumes *it* is cut off and evicts nothing; when more
//! than 2 nodes and at least `unhealthy_threshold` (55 %) of them are silent, evictions slow to
//! `secondary_eviction_rate` nodes per second, or stop entirely in clusters of at most
//! `large_cluster_size` (50) nodes. Normally, pods of at most `eviction_rate` nodes per second
//! start being evicted.
//!
//! The decisions are pure functions with unit tests below: when a node is silent
//! (`NodeHealth::observe`), how fast evictions may start (`eviction_rate`,
//! `may_start_evicting`) and which pods go (`pods_to_evict`, `eviction_time`).
//!
//! Not promised: zones (one zone only), `MarkPodsNotReady`, the `not-ready` taint for nodes
//! whose kubelet reports `Ready=False`, or taint-based eviction for taints it did not add.

use kube_core::ResourceExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use rkube_client::events::{EventRecorder, EventType, object_reference};
use rkube_client::{Api, Client, DeleteParams, Patch, PatchParams};
use rkube_informer::ObjectKey;
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::store::{NODE_NAME_INDEX, Store};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// The taint key of a node this controller cannot hear from.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// Namespace of the node heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// Timing and limits of the node lifecycle controller (the `--node-*` flags).
#[derive(Clone, Debug)]
pub struct NodeLifecycleConfig {
    /// How often nodes are checked (`--node-monitor-period`, default 5 s).
    pub monitor_period: Duration,
    /// How long a node may be silent before it is Unknown (`--node-monitor-grace-period`, 40 s).
    pub grace_period: Duration,
    /// How long pods without a toleration stay on an unreachable node (`--pod-eviction-timeout`, 5 min).
    pub pod_eviction_timeout: Duration,
    /// Nodes per second whose pods may start being evicted (`--node-eviction-rate`, 0.1).
    pub eviction_rate: f64,
    /// The same in a partial disruption of a large cluster (`--secondary-node-eviction-rate`, 0.01).
    pub secondary_eviction_rate: f64,
    /// Clusters of at most this many nodes stop evicting in a partial disruption (`--large-cluster-size-threshold`, 50).
    pub large_cluster_size: usize,
    /// Fraction of silent nodes that makes a partial disruption (`--unhealthy-zone-threshold`, 0.55).
    pub unhealthy_threshold: f64,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        NodeLifecycleConfig {
            monitor_period: Duration::from_secs(5),
            grace_period: Duration::from_secs(40),
            pod_eviction_timeout: Duration::from_secs(300),
            eviction_rate: 0.1,
            secondary_eviction_rate: 0.01,
            large_cluster_size: 50,
            unhealthy_threshold: 0.55,
        }
    }
}

/// What this controller remembers about one node's health.
#[derive(Debug)]
struct NodeHealth {
    /// When we last heard from it, on our clock.
    probed: Instant,
    lease_renewed: Option<Timestamp>,
    heartbeat: Option<Timestamp>,
    /// When we found it silent (None while it is healthy).
    silent_since: Option<Instant>,
    /// When its pods became eligible for eviction (rate-limited across nodes).
    evicting_since: Option<Instant>,
}

/// The node lifecycle controller. Build with [`NodeLifecycleController::new`], then [`NodeLifecycleController::run`].
pub struct NodeLifecycleController {
    client: Client,
    config: NodeLifecycleConfig,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    health: Mutex<HashMap<String, NodeHealth>>,
    last_node_eviction: Mutex<Option<Instant>>,
    /// `NodeNotReady` on the node and its pods, `TaintManagerEviction` on evicted pods.
    events: EventRecorder,
}

fn ready_condition(node: &Node) -> Option<&k8s_openapi::api::core::v1::NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

fn has_our_taints(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|spec| spec.taints.as_ref())
        .is_some_and(|taints| taints.iter().any(|t| t.key == UNREACHABLE_TAINT))
}

/// When a pod on a node tainted unreachable (`NoExecute`) since `tainted` must go: `None` for
/// never (tolerated forever).
fn eviction_time(pod: &Pod, tainted: Instant, default_timeout: Duration) -> Option<Instant> {
    let tolerations: &[Toleration] = pod.spec.as_ref().and_then(|spec| spec.tolerations.as_deref()).unwrap_or_default();
    let tolerating = tolerations.iter().find(|t| {
        let key_matches = match t.operator.as_deref() {
            Some("Exists") => t.key.as_deref().is_none_or(|key| key.is_empty() || key == UNREACHABLE_TAINT),
            _ => t.key.as_deref() == Some(UNREACHABLE_TAINT),
        };
        key_matches && t.effect.as_deref().is_none_or(|effect| effect.is_empty() || effect == "NoExecute")
    });
    match tolerating {
        None => Some(tainted + default_timeout),
        Some(toleration) => toleration
            .toleration_seconds
            .map(|seconds| tainted + Duration::from_secs(u64::try_from(seconds.max(0)).unwrap_or(0))),
    }
}

impl NodeHealth {
    /// A node seen for the first time counts as heard from `now`.
    fn first_seen(now: Instant) -> NodeHealth {
        NodeHealth { probed: now, lease_renewed: None, heartbeat: None, silent_since: None, evicting_since: None }
    }

    /// Takes in the node's Lease renewal and Ready heartbeat as seen `now`, and returns whether
    /// the node is silent: nothing moved for longer than `grace_period`. A node heard from again
    /// forgets when it went silent and started evicting.
    fn observe(
        &mut self,
        lease_renewed: Option<Timestamp>,
        heartbeat: Option<Timestamp>,
        now: Instant,
        grace_period: Duration,
    ) -> bool {
        if self.lease_renewed != lease_renewed || self.heartbeat != heartbeat {
            self.probed = now;
            self.lease_renewed = lease_renewed;
            self.heartbeat = heartbeat;
        }
        if now.duration_since(self.probed) > grace_period {
            self.silent_since.get_or_insert(now);
            true
        } else {
            self.silent_since = None;
            self.evicting_since = None;
            false
        }
    }
}

/// The rate (nodes per second) at which silent nodes' pods may start being evicted, with
/// `silent` of `total` nodes silent: none when all are (we are probably the ones cut off),
/// slower or none in a partial disruption, `eviction_rate` otherwise.
fn eviction_rate(config: &NodeLifecycleConfig, total: usize, silent: usize) -> f64 {
    if total == 0 || silent == total {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)] // node counts are far below 2^52
    let fraction = silent as f64 / total as f64;
    if silent > 2 && fraction >= config.unhealthy_threshold {
        if total > config.large_cluster_size { config.secondary_eviction_rate } else { 0.0 }
    } else {
        config.eviction_rate
    }
}

/// Whether one more silent node may start evicting `now`, the last one having started at
/// `last`: one every `1/rate` seconds.
fn may_start_evicting(last: Option<Instant>, now: Instant, rate: f64) -> bool {
    let gap = Duration::try_from_secs_f64(1.0 / rate).unwrap_or(Duration::MAX);
    last.is_none_or(|last| now.duration_since(last) >= gap)
}

/// The pods of a node tainted unreachable since `tainted` that must go `now`: not already
/// being deleted, and past their [`eviction_time`].
fn pods_to_evict(pods: Vec<Arc<Pod>>, tainted: Instant, default_timeout: Duration, now: Instant) -> Vec<Arc<Pod>> {
    pods.into_iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| eviction_time(pod, tainted, default_timeout).is_some_and(|due| due <= now))
        .collect()
}

impl NodeLifecycleController {
    /// Asks the factory for the Node, node Lease and Pod informers.
    pub fn new(factory: &SharedInformerFactory, client: Client, config: NodeLifecycleConfig) -> Arc<Self> {
        Arc::new(NodeLifecycleController {
            events: EventRecorder::new(client.clone(), "node-controller", None),
            client,
            config,
            nodes: factory.informer::<Node>(None).store(),
            leases: factory.informer::<Lease>(Some(NODE_LEASE_NAMESPACE)).store(),
            pods: factory.informer::<Pod>(None).store(),
            health: Mutex::new(HashMap::new()),
            last_node_eviction: Mutex::new(None),
        })
    }

    /// Checks every node each `monitor_period` until `shutdown`. A failed write is logged and
    /// retried at the next pass.
    pub async fn run(
        self: Arc<Self>,
        shutdown: CancellationToken,
        errors: prometheus::IntCounterVec,
        syncs: prometheus::IntCounterVec,
    ) {
        let mut ticker = tokio::time::interval(self.config.monitor_period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            syncs.with_label_values(&["nodelifecycle"]).inc();
            if let Err(error) = self.monitor().await {
                errors.with_label_values(&["nodelifecycle"]).inc();
                tracing::warn!(%error, "node monitor pass failed; retrying next period");
            }
        }
    }

    /// One pass over all nodes.
    async fn monitor(&self) -> Result<(), Error> {
        let now = Instant::now();
        let nodes = self.nodes.list();
        let mut silent_nodes = Vec::new();
        {
            let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
            health.retain(|name, _| nodes.iter().any(|node| node.metadata.name.as_deref() == Some(name)));
            for node in &nodes {
                let name = node.name_any();
                let lease_renewed = self
                    .leases
                    .get(&ObjectKey::new(Some(NODE_LEASE_NAMESPACE), &name))
                    .and_then(|lease| lease.spec.as_ref()?.renew_time.as_ref().map(|time| time.0));
                let heartbeat = ready_condition(node).and_then(|c| c.last_heartbeat_time.as_ref().map(|time| time.0));
                let entry = health.entry(name.clone()).or_insert_with(|| NodeHealth::first_seen(now));
                if entry.observe(lease_renewed, heartbeat, now, self.config.grace_period) {
                    silent_nodes.push(Arc::clone(node));
                }
            }
        }
        let mut first_error = None;
        for node in &nodes {
            let silent = silent_nodes.iter().any(|s| s.metadata.name == node.metadata.name);
            let result = if silent { self.mark_unreachable(node).await } else { self.restore(node).await };
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        }
        if let Err(error) = self.evict(&nodes, &silent_nodes, now).await {
            first_error.get_or_insert(error);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Sets Ready=Unknown and adds the unreachable taints, unless already done.
    async fn mark_unreachable(&self, node: &Node) -> Result<(), Error> {
        let name = node.name_any();
        let api: Api<Node> = Api::all(self.client.clone());
        if ready_condition(node).is_none_or(|c| c.status != "Unknown") {
            let now = Timestamp::now().to_string();
            let mut conditions: Vec<serde_json::Value> = node
                .status
                .as_ref()
                .and_then(|status| status.conditions.as_ref())
                .map(|conditions| {
                    conditions
                        .iter()
                        .filter(|c| c.type_ != "Ready")
                        .filter_map(|c| serde_json::to_value(c).ok())
                        .collect()
                })
                .unwrap_or_default();
            let since = ready_condition(node).and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0.to_string());
            conditions.push(json!({
                "type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.",
                "lastTransitionTime": now, "lastHeartbeatTime": since,
            }));
            let patch = json!({"status": {"conditions": conditions}});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(|source| Error::UpdateStatus { key: ObjectKey::of(node), source })?;
            tracing::warn!(node = %name, "node silent past the grace period: Ready=Unknown");
            let message = format!("Node {name} status is now: NodeNotReady");
            self.events.record(&object_reference(node), EventType::Normal, "NodeNotReady", "", message);
            for pod in self.pods.by_index(NODE_NAME_INDEX, &name).unwrap_or_default() {
                self.events.record(
                    &object_reference(pod.as_ref()),
                    EventType::Warning,
                    "NodeNotReady",
                    "",
                    "Node is not ready",
                );
            }
        }
        if !has_our_taints(node) {
            let mut taints: Vec<Taint> = node.spec.as_ref().and_then(|spec| spec.taints.clone()).unwrap_or_default();
            for effect in ["NoSchedule", "NoExecute"] {
                taints.push(Taint {
                    key: UNREACHABLE_TAINT.into(),
                    effect: effect.into(),
                    time_added: (effect == "NoExecute")
                        .then(|| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now())),
                    value: None,
                });
            }
            let patch =
                json!({"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": taints}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(|source| Error::Read { what: format!("tainting node {name}"), source })?;
            tracing::warn!(node = %name, "tainted {UNREACHABLE_TAINT}:NoSchedule and :NoExecute");
        }
        Ok(())
    }

    /// Removes our taints from a node heard from again.
    async fn restore(&self, node: &Node) -> Result<(), Error> {
        if !has_our_taints(node) {
            return Ok(());
        }
        let name = node.name_any();
        let taints: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|spec| spec.taints.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.key != UNREACHABLE_TAINT)
            .collect();
        let taints = if taints.is_empty() { serde_json::Value::Null } else { json!(taints) };
        let patch =
            json!({"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": taints}});
        Api::<Node>::all(self.client.clone())
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|source| Error::Read { what: format!("untainting node {name}"), source })?;
        tracing::info!(node = %name, "node heard from again: taints removed");
        Ok(())
    }

    async fn evict(&self, nodes: &[Arc<Node>], silent: &[Arc<Node>], now: Instant) -> Result<(), Error> {
        let rate = eviction_rate(&self.config, nodes.len(), silent.len());
        if rate <= 0.0 {
            if !silent.is_empty() {
                tracing::warn!(silent = silent.len(), total = nodes.len(), "mass node failure: evictions paused");
            }
            return Ok(());
        }
        let mut first_error = None;
        for node in silent {
            let name = node.name_any();
            let tainted = {
                let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(entry) = health.get_mut(&name) else { continue };
                if entry.evicting_since.is_none() {
                    let mut last = self.last_node_eviction.lock().unwrap_or_else(PoisonError::into_inner);
                    if !may_start_evicting(*last, now, rate) {
                        continue;
                    }
                    *last = Some(now);
                    entry.evicting_since = entry.silent_since;
                }
                entry.evicting_since.unwrap_or(now)
            };
            let pods = self.pods.by_index(NODE_NAME_INDEX, &name).unwrap_or_default();
            for pod in pods_to_evict(pods, tainted, self.config.pod_eviction_timeout, now) {
                let namespace = pod.namespace().unwrap_or_default();
                let pod_name = pod.name_any();
                let key = ObjectKey::of(pod.as_ref());
                match Api::<Pod>::namespaced(self.client.clone(), &namespace)
                    .delete(&pod_name, &DeleteParams::default())
                    .await
                {
                    Ok(_) => {
                        tracing::warn!(node = %name, pod = %key, "evicted from unreachable node");
                        let message = format!("Marking for deletion Pod {key}");
                        self.events.record(
                            &object_reference(pod.as_ref()),
                            EventType::Normal,
                            "TaintManagerEviction",
                            "",
                            message,
                        );
                    }
                    Err(error) if error.is_not_found() => {}
                    Err(source) => {
                        first_error.get_or_insert(Error::Read { what: format!("evicting {key}"), source });
                    }
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn pod_tolerating(seconds: Option<Option<i64>>) -> Pod {
        let tolerations = seconds.map(|seconds| {
            vec![Toleration {
                key: Some(UNREACHABLE_TAINT.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: seconds,
                value: None,
            }]
        });
        Pod { spec: Some(PodSpec { tolerations, ..PodSpec::default() }), ..Pod::default() }
    }

    #[test]
    fn tolerations_decide_when_a_pod_leaves_an_unreachable_node() {
        let tainted = Instant::now();
        let timeout = Duration::from_secs(300);
        assert_eq!(eviction_time(&pod_tolerating(None), tainted, timeout), Some(tainted + timeout));
        assert_eq!(
            eviction_time(&pod_tolerating(Some(Some(5))), tainted, timeout),
            Some(tainted + Duration::from_secs(5))
        );
        assert_eq!(eviction_time(&pod_tolerating(Some(None)), tainted, timeout), None, "tolerated forever");
    }

    #[test]
    fn evictions_pause_when_every_node_is_silent_and_slow_in_a_partial_disruption() {
        let config = NodeLifecycleConfig::default();
        assert_eq!(eviction_rate(&config, 3, 3), 0.0);
        assert_eq!(eviction_rate(&config, 10, 1), 0.1);
        assert_eq!(eviction_rate(&config, 10, 6), 0.0, "small cluster, partial disruption: stop");
        assert_eq!(eviction_rate(&config, 100, 60), 0.01, "large cluster, partial disruption: slow");
        assert_eq!(eviction_rate(&config, 4, 2), 0.1, "2 silent nodes are never a disruption");
    }

    #[test]
    fn a_node_is_heard_from_only_when_its_lease_or_heartbeat_moves() {
        let grace = Duration::from_secs(40);
        let start = Instant::now();
        let renewed = |second| Some(Timestamp::from_second(second).unwrap());
        let mut health = NodeHealth::first_seen(start);
        assert!(!health.observe(renewed(1), None, start, grace), "first seen counts as heard from");
        assert!(!health.observe(renewed(1), None, start + Duration::from_secs(40), grace), "within the grace period");
        assert!(health.observe(renewed(1), None, start + Duration::from_secs(41), grace), "silent");
        assert_eq!(health.silent_since, Some(start + Duration::from_secs(41)));
        assert!(health.observe(renewed(1), None, start + Duration::from_secs(50), grace));
        assert_eq!(health.silent_since, Some(start + Duration::from_secs(41)), "silent since the first time");
        health.evicting_since = health.silent_since;
        assert!(!health.observe(renewed(2), None, start + Duration::from_secs(60), grace), "the lease moved");
        assert_eq!((health.silent_since, health.evicting_since), (None, None), "back: starts over");
        assert!(!health.observe(renewed(2), renewed(9), start + Duration::from_secs(101), grace), "a heartbeat");
    }

    #[test]
    fn at_most_rate_silent_nodes_per_second_start_evicting() {
        let now = Instant::now();
        assert!(may_start_evicting(None, now, 0.1), "the first may start at once");
        assert!(!may_start_evicting(Some(now - Duration::from_secs(9)), now, 0.1), "one every 10 s");
        assert!(may_start_evicting(Some(now - Duration::from_secs(10)), now, 0.1));
    }

    #[test]
    fn only_pods_past_their_eviction_time_and_not_already_going_are_evicted() {
        let tainted = Instant::now();
        let timeout = Duration::from_secs(300);
        let named = |name: &str, mut pod: Pod| {
            pod.metadata.name = Some(name.into());
            Arc::new(pod)
        };
        let mut going = pod_tolerating(None);
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::from_second(1).unwrap()));
        let pods = vec![
            named("intolerant", pod_tolerating(None)),
            named("tolerates-5s", pod_tolerating(Some(Some(5)))),
            named("tolerates-forever", pod_tolerating(Some(None))),
            named("going", going),
        ];
        let evicted = |at: Duration| {
            let pods = pods_to_evict(pods.clone(), tainted, timeout, tainted + at);
            pods.iter().map(|pod| pod.metadata.name.clone().unwrap()).collect::<Vec<_>>()
        };
        assert!(evicted(Duration::from_secs(4)).is_empty());
        assert_eq!(evicted(Duration::from_secs(5)), ["tolerates-5s"]);
        assert_eq!(evicted(timeout), ["intolerant", "tolerates-5s"]);
    }
}
