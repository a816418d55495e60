//! The pod garbage collector (kube-controller-manager's `podgc`): a pod bound to a Node that
//! no longer exists is deleted, so that what its controller counts is true again — a
//! DaemonSet makes a new pod when a worker of that name joins again, a ReplicaSet replaces
//! it elsewhere.
//!
//! A pod is an orphan when its `spec.nodeName` names no Node in the cache. It is deleted only
//! once the Node has been missing for the quarantine (Kubernetes: 40 s; `--podgc-orphan-quarantine`)
//! and a read from the apiserver (not the cache) confirms it is gone: a Node that is only late
//! in the cache, or re-registered meanwhile, keeps its pods. The pod is first marked `Failed`
//! with the condition `DisruptionTarget` (reason `DeletionByPodGC`), as Kubernetes does, then
//! deleted at once (grace period 0: no kubelet will ever stop its containers).
//!
//! Not done: Kubernetes' other two duties (terminated pods beyond
//! `--terminated-pod-gc-threshold`, and terminating pods on out-of-service nodes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube_core::ResourceExt;
use prometheus::Registry;
use rkube_client::{Api, Client, DeleteParams, Patch, PatchParams};
use rkube_informer::ObjectKey;
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::handler::{Deleted, HandlerFns};
use rkube_informer::store::Store;
use rkube_informer::workqueue::{RateLimiter, WorkQueue};
use serde_json::json;

use crate::Error;
use crate::worker::{Action, Syncer};

/// How long a Node must have been missing before its pods are collected (Kubernetes' 40 s).
pub const DEFAULT_QUARANTINE: Duration = Duration::from_secs(40);

/// The pod garbage collector; see the module docs.
pub struct PodGarbageCollector {
    client: Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    queue: WorkQueue<ObjectKey>,
    quarantine: Duration,
    /// Since when each missing node has been seen missing.
    missing_since: Mutex<HashMap<String, Instant>>,
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

impl PodGarbageCollector {
    /// Registers handlers on the factory's Pod and Node informers and a work queue named
    /// `podgc`; orphans are collected `quarantine` after their Node was first missed.
    pub fn new(
        factory: &SharedInformerFactory,
        client: Client,
        quarantine: Duration,
        registry: Option<&Registry>,
    ) -> Arc<Self> {
        let pods = factory.informer::<Pod>(None);
        let nodes = factory.informer::<Node>(None);
        let queue = WorkQueue::new("podgc", RateLimiter::default(), registry);
        let collector = Arc::new(PodGarbageCollector {
            client,
            pods: pods.store(),
            nodes: nodes.store(),
            queue: queue.clone(),
            quarantine,
            missing_since: Mutex::new(HashMap::new()),
        });
        let (q1, q2) = (queue.clone(), queue.clone());
        pods.add_handler(
            HandlerFns::new()
                .on_add(move |pod: &Arc<Pod>| {
                    if node_of(pod).is_some() {
                        q1.add(ObjectKey::of(pod.as_ref()));
                    }
                })
                .on_update(move |old: &Arc<Pod>, pod: &Arc<Pod>| {
                    if node_of(old) != node_of(pod) {
                        q2.add(ObjectKey::of(pod.as_ref()));
                    }
                }),
        );
        let pod_store = pods.store();
        nodes.add_handler(HandlerFns::new().on_delete(move |deleted: Deleted<Node>| {
            let name = deleted.object().name_any();
            for pod in pod_store.list().iter().filter(|pod| node_of(pod) == Some(name.as_str())) {
                queue.add(ObjectKey::of(pod.as_ref()));
            }
        }));
        collector
    }

    /// The work queue (for [`crate::worker::run_workers`]).
    pub fn queue(&self) -> WorkQueue<ObjectKey> {
        self.queue.clone()
    }

    /// How much longer `node` must stay missing before its pods go (zero: now).
    fn quarantine_left(&self, node: &str) -> Duration {
        let mut missing = self.missing_since.lock().unwrap_or_else(PoisonError::into_inner);
        let since = *missing.entry(node.to_string()).or_insert_with(Instant::now);
        self.quarantine.saturating_sub(since.elapsed())
    }

    fn forget(&self, node: &str) {
        self.missing_since.lock().unwrap_or_else(PoisonError::into_inner).remove(node);
    }
}

impl Syncer for PodGarbageCollector {
    type Key = ObjectKey;

    async fn sync(&self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(pod) = self.pods.get(key) else { return Ok(Action::await_change()) };
        let Some(node) = node_of(&pod).map(String::from) else { return Ok(Action::await_change()) };
        if self.nodes.get(&ObjectKey::new(None, &node)).is_some() {
            self.forget(&node);
            return Ok(Action::await_change());
        }
        let left = self.quarantine_left(&node);
        if !left.is_zero() {
            return Ok(Action::requeue(left + Duration::from_millis(100)));
        }
        let nodes: Api<Node> = Api::all(self.client.clone());
        let live = nodes
            .get_opt(&node)
            .await
            .map_err(|source| Error::Read { what: format!("reading node {node}"), source })?;
        if live.is_some() {
            // Only late in the cache: its add event will arrive.
            self.forget(&node);
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        let namespace = key.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let terminal = matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
        if !terminal {
            let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
            let status = json!({"status": {"phase": "Failed", "conditions": [{"type": "DisruptionTarget",
                "status": "True", "reason": "DeletionByPodGC", "lastTransitionTime": now,
                "message": "PodGC: node no longer exists"}]}});
            match api.patch_status(key.name(), &PatchParams::default(), &Patch::Strategic(status)).await {
                Ok(_) => {}
                Err(error) if error.is_not_found() => return Ok(Action::await_change()),
                Err(source) => return Err(Error::UpdateStatus { key: key.clone(), source }),
            }
        }
        let params = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
        match api.delete(key.name(), &params).await {
            Ok(_) => {
                tracing::info!(pod = %key, %node, "deleted a pod whose node no longer exists");
                Ok(Action::await_change())
            }
            Err(error) if error.is_not_found() => Ok(Action::await_change()),
            Err(source) => Err(Error::DeletePods { key: key.clone(), source }),
        }
    }
}
