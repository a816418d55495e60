//! Harness for the scheduler tests: the real `rkube-scheduler` binary against a [`Cluster`],
//! plus builders for Node objects (with `status.allocatable` and a Ready condition, written
//! through the status subresource as a kubelet would) and pending pods.
//!
//! [`Scheduler::start`] returns once the scheduler's `/readyz` answers 200 (its informers have
//! synced). The process is killed when the value is dropped.

use std::time::Duration;

use serde_json::{Value, json};

use crate::api::Api;
use crate::cluster::Cluster;
pub use crate::component::sample_value;
use crate::component::{Component, ComponentKind};

/// `rkube-scheduler`, ready once `/readyz` answers (its informers have synced).
const SCHEDULER: ComponentKind =
    ComponentKind { binary: "rkube-scheduler", health: "/readyz", start_timeout: Duration::from_secs(60) };

/// A running `rkube-scheduler` (a [`Component`]: `url`, `kill`, `restart`, `log_tail`, ...).
pub struct Scheduler(Component);

impl Scheduler {
    /// Starts `rkube-scheduler --kubeconfig <cluster's> --port <free>` plus `extra_args` (e.g.
    /// `["--leader-elect=false"]`) and waits until `/readyz` answers 200.
    ///
    /// # Panics
    /// When the binary has not been built (see [`crate::binary`]).
    pub async fn start(cluster: &Cluster, extra_args: &[&str]) -> anyhow::Result<Scheduler> {
        Component::start(cluster, SCHEDULER, extra_args).await.map(Scheduler)
    }

    /// Whether it has exited on its own.
    pub fn has_exited(&mut self) -> bool {
        !self.0.is_running()
    }

    /// The Prometheus text of its `/metrics`.
    ///
    /// # Errors
    /// When `/metrics` does not answer.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        self.0.metrics_text().await
    }

    /// The value of one sample in its `/metrics`, e.g.
    /// `metric("rkube_scheduler_schedule_attempts_total{result=\"scheduled\"}")`; 0 if absent.
    ///
    /// # Errors
    /// When `/metrics` does not answer.
    pub async fn metric(&self, sample: &str) -> anyhow::Result<f64> {
        Ok(sample_value(&self.metrics().await?, sample))
    }
}

impl std::ops::Deref for Scheduler {
    type Target = Component;
    fn deref(&self) -> &Component {
        &self.0
    }
}

impl std::ops::DerefMut for Scheduler {
    fn deref_mut(&mut self) -> &mut Component {
        &mut self.0
    }
}

/// A Node to create: name, allocatable, labels, taints, Ready or not.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// metadata.name.
    pub name: String,
    /// status.allocatable.cpu, e.g. `"4"`.
    pub cpu: String,
    /// status.allocatable.memory, e.g. `"8Gi"`.
    pub memory: String,
    /// status.allocatable.pods.
    pub pods: u32,
    /// metadata.labels.
    pub labels: Value,
    /// spec.taints (a JSON array).
    pub taints: Value,
    /// spec.unschedulable.
    pub unschedulable: bool,
    /// The Ready condition's status is `True`.
    pub ready: bool,
}

impl NodeSpec {
    /// A Ready node with 4 CPUs, 8Gi and 110 pods, no labels, no taints.
    pub fn new(name: &str) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            cpu: "4".into(),
            memory: "8Gi".into(),
            pods: 110,
            labels: json!({}),
            taints: json!([]),
            unschedulable: false,
            ready: true,
        }
    }

    /// Sets the allocatable CPU, memory and pod count.
    pub fn allocatable(mut self, cpu: &str, memory: &str, pods: u32) -> NodeSpec {
        self.cpu = cpu.into();
        self.memory = memory.into();
        self.pods = pods;
        self
    }

    /// Sets the labels.
    pub fn labels(mut self, labels: Value) -> NodeSpec {
        self.labels = labels;
        self
    }

    /// Sets the taints.
    pub fn taints(mut self, taints: Value) -> NodeSpec {
        self.taints = taints;
        self
    }

    /// The Node object (spec and metadata only; status is written separately).
    pub fn object(&self) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": self.labels},
            "spec": {"taints": self.taints, "unschedulable": self.unschedulable},
        })
    }

    /// The status a kubelet would report.
    pub fn status(&self) -> Value {
        json!({
            "capacity": {"cpu": self.cpu, "memory": self.memory, "pods": self.pods.to_string()},
            "allocatable": {"cpu": self.cpu, "memory": self.memory, "pods": self.pods.to_string()},
            "conditions": [{"type": "Ready", "status": if self.ready { "True" } else { "False" },
                "reason": "KubeletReady", "message": "test node",
                "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        })
    }
}

/// Creates the node, then writes its status through `nodes/<name>/status` (the apiserver, like
/// Kubernetes, ignores status on create).
pub async fn create_node(api: &Api, node: &NodeSpec) {
    api.create("/api/v1/nodes", &node.object()).await;
    set_node_status(api, node).await;
}

/// Writes `node`'s status (allocatable, Ready) through the status subresource.
pub async fn set_node_status(api: &Api, node: &NodeSpec) {
    let path = format!("/api/v1/nodes/{}/status", node.name);
    let (status, reply) = api.patch(&path, "application/merge-patch+json", &json!({"status": node.status()})).await;
    assert!(status.is_success(), "PATCH {path} replied {status} {reply}");
}

/// A pending pod (no nodeName) in `namespace` whose one container requests `cpu` and `memory`.
pub fn pending_pod(namespace: &str, name: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1",
            "resources": {"requests": {"cpu": cpu, "memory": memory}}}]},
    })
}

/// `spec.nodeName` of a pod, if bound.
pub fn node_of(pod: &Value) -> Option<String> {
    pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()).map(String::from)
}

/// The pod's `PodScheduled` condition, if any.
pub fn scheduled_condition(pod: &Value) -> Option<Value> {
    pod["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "PodScheduled").cloned()
}
