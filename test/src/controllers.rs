//! Harness for the controllers tests: the real `rkube-controller-manager` binary, and a
//! stand-in for the kubelet that marks pods Running and Ready through the status subresource.
//!
//! There is no kubelet in these tests. [`mark_ready`] does what a kubelet would report for a
//! started pod; [`Kubelet`] does it in a loop for every pod of a namespace, optionally only for
//! pods whose image it can "run", so a rollout to a broken image can be tested.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::api::Api;
use crate::cluster::Cluster;
use crate::component::{Component, ComponentKind};

/// `rkube-controller-manager`, started once `/healthz` answers.
const CONTROLLER_MANAGER: ComponentKind =
    ComponentKind { binary: "rkube-controller-manager", health: "/healthz", start_timeout: Duration::from_secs(30) };

/// A running `rkube-controller-manager` (a [`Component`]: `url`, `kill`, `restart`,
/// `is_running`, `log_tail`, ...), killed when dropped.
pub struct ControllerManager(Component);

impl ControllerManager {
    /// Starts `rkube-controller-manager --kubeconfig <cluster> --port <free>` plus
    /// `extra_args`, and waits until `/healthz` answers 200.
    pub async fn start(cluster: &Cluster, extra_args: &[&str]) -> anyhow::Result<ControllerManager> {
        Component::start(cluster, CONTROLLER_MANAGER, extra_args).await.map(ControllerManager)
    }

    /// The text of its `/metrics`.
    ///
    /// # Panics
    /// When `/metrics` does not answer.
    pub async fn metrics(&self) -> String {
        match self.0.metrics_text().await {
            Ok(text) => text,
            Err(error) => panic!("GET {}/metrics failed: {error}", self.0.url),
        }
    }

    /// The value of the Prometheus sample `name` (e.g. `rkube_controller_syncs_total{controller="replicaset"}`),
    /// or 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        crate::component::sample_value(&self.metrics().await, sample)
    }
}

impl std::ops::Deref for ControllerManager {
    type Target = Component;
    fn deref(&self) -> &Component {
        &self.0
    }
}

impl std::ops::DerefMut for ControllerManager {
    fn deref_mut(&mut self) -> &mut Component {
        &mut self.0
    }
}

/// A ReplicaSet `name` in `namespace` with `replicas`, selecting and labelling `app: <name>`,
/// one container running `image`.
pub fn replica_set(namespace: &str, name: &str, replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]}
            }
        }
    })
}

/// A Deployment `name` with `replicas`, selecting `app: <name>`, running `image`, with a
/// RollingUpdate strategy of `max_surge` and `max_unavailable`.
pub fn deployment(
    namespace: &str,
    name: &str,
    replicas: i64,
    image: &str,
    max_surge: i64,
    max_unavailable: i64,
) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": max_unavailable}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]}
            }
        }
    })
}

/// The pods of `namespace` whose labels match `selector` (e.g. `app=web`), all of them
/// (terminating ones too).
pub async fn pods(api: &Api, namespace: &str, selector: &str) -> Vec<Value> {
    let list = api
        .get_ok(&format!("/api/v1/namespaces/{namespace}/pods?labelSelector={}", crate::escape_query(selector)))
        .await;
    list["items"].as_array().cloned().unwrap_or_default()
}

/// The pods of [`pods`] that are not being deleted.
pub async fn live_pods(api: &Api, namespace: &str, selector: &str) -> Vec<Value> {
    pods(api, namespace, selector)
        .await
        .into_iter()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

/// Whether a pod's Ready condition is True.
pub fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Marks the pod Running and Ready through `pods/<name>/status`, as a kubelet would once its
/// containers started and passed their readiness probes.
pub async fn mark_ready(api: &Api, namespace: &str, name: &str) -> bool {
    let now = jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now());
    let status = json!({"status": {
        "phase": "Running",
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now.to_string()},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now.to_string()},
        ]
    }});
    let path = format!("/api/v1/namespaces/{namespace}/pods/{name}/status");
    api.patch(&path, "application/merge-patch+json", &status).await.0.is_success()
}

/// Binds the pod to `node` through `pods/<name>/binding`, as the scheduler would.
pub async fn bind(api: &Api, namespace: &str, name: &str, node: &str) -> bool {
    let path = format!("/api/v1/namespaces/{namespace}/pods/{name}/binding");
    api.post(&path, &crate::resources::binding(name, node)).await.0.is_success()
}

/// A stand-in for kubelets: every `interval`, marks Ready each live pod of `namespace` that is
/// not Ready yet and whose first container's image does not contain `broken`. Stops when
/// dropped.
pub struct Kubelet {
    task: JoinHandle<()>,
}

impl Kubelet {
    /// Starts the loop against the apiserver at `url`.
    pub fn start(url: &str, namespace: &str, broken: &str) -> Kubelet {
        let (api, namespace, broken) = (Api::new(url), namespace.to_string(), broken.to_string());
        let task = tokio::spawn(async move {
            loop {
                let (status, list) = api.get(&format!("/api/v1/namespaces/{namespace}/pods")).await;
                if status.is_success() {
                    for pod in list["items"].as_array().cloned().unwrap_or_default() {
                        let image = pod["spec"]["containers"][0]["image"].as_str().unwrap_or_default();
                        if pod["metadata"]["deletionTimestamp"].is_null() && !is_ready(&pod) && !image.contains(&broken)
                        {
                            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                            mark_ready(&api, &namespace, name).await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Kubelet { task }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Registers Node `name` and reports it Ready (as a kubelet does when it starts).
pub async fn register_node(api: &Api, name: &str) {
    api.create("/api/v1/nodes", &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})).await;
    let now = jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now()).to_string();
    let status = json!({"status": {"conditions": [{
        "type": "Ready", "status": "True", "reason": "KubeletReady",
        "lastHeartbeatTime": now, "lastTransitionTime": now,
    }]}});
    let (code, body) =
        api.patch(&format!("/api/v1/nodes/{name}/status"), "application/merge-patch+json", &status).await;
    assert!(code.is_success(), "reporting node {name} Ready: {body}");
}

/// Creates or renews node `name`'s Lease in `kube-node-lease`, as a kubelet's heartbeat does.
pub async fn renew_lease(api: &Api, name: &str) -> bool {
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}");
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let (status, _) = api.patch(&path, "application/merge-patch+json", &json!({"spec": {"renewTime": now}})).await;
    if status.is_success() {
        return true;
    }
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now},
    });
    api.post("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", &lease).await.0.is_success()
}

/// Kubelet heartbeats for a set of nodes: every 300 ms, renews the Lease of each node in the
/// set. Remove a node from [`Heartbeats::nodes`] to make it go silent. Stops when dropped.
pub struct Heartbeats {
    /// The nodes whose Leases are renewed.
    pub nodes: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Heartbeats {
    /// Starts renewing the Leases of `nodes` against the apiserver at `url`.
    pub fn start(url: &str, nodes: &[&str]) -> Heartbeats {
        let shared =
            std::sync::Arc::new(std::sync::Mutex::new(nodes.iter().map(ToString::to_string).collect::<Vec<_>>()));
        let (api, list) = (Api::new(url), std::sync::Arc::clone(&shared));
        let task = tokio::spawn(async move {
            loop {
                let names = list.lock().map(|names| names.clone()).unwrap_or_default();
                for name in names {
                    renew_lease(&api, &name).await;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        Heartbeats { nodes: shared, task }
    }

    /// Stops renewing `node`'s Lease.
    pub fn silence(&self, node: &str) {
        if let Ok(mut names) = self.nodes.lock() {
            names.retain(|name| name != node);
        }
    }

    /// Renews `node`'s Lease again.
    pub fn resume(&self, node: &str) {
        if let Ok(mut names) = self.nodes.lock() {
            names.push(node.to_string());
        }
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.task.abort();
    }
}
