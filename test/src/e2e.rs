//! Harness for the whole-cluster end-to-end tests: every rkube component as a real process.
//!
//! [`LocalCluster::start`] starts, in order: etcd and `rkube-apiserver` ([`Cluster`]),
//! `rkube-controller-manager`, `rkube-scheduler`, a private containerd with the test image
//! imported ([`Containerd`]) and one `rkubelet --runtime containerd --pod-cidr <cidr>`, and
//! returns once the node is registered and Ready. Dropping it stops the kubelet first, then the
//! scheduler and the controller-manager, then the apiserver and etcd, and last containerd (which
//! kills whatever containers are left).

use std::time::Duration;

use serde_json::Value;

use crate::cluster::Cluster;
use crate::controllers::ControllerManager;
use crate::node::{Containerd, Kubelet};
use crate::scheduler::Scheduler;
use crate::{Api, eventually};

/// How long the node may take to register and report Ready.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The whole system on one machine. Field order is drop order.
pub struct LocalCluster {
    /// The one node's kubelet (`--runtime containerd`).
    pub kubelet: Kubelet,
    /// The scheduler.
    pub scheduler: Scheduler,
    /// The controller-manager (all controllers).
    pub controller_manager: ControllerManager,
    /// etcd and the apiserver.
    pub cluster: Cluster,
    /// The kubelet's containerd; dropped last so that it removes any container left.
    pub containerd: Containerd,
}

impl LocalCluster {
    /// Starts every component, with the kubelet registering node `node_name` and giving pods
    /// IPs from `pod_cidr` (e.g. `10.244.1.0/24`; use a CIDR no other running test uses), and
    /// waits until the node is Ready.
    ///
    /// # Panics
    /// When a prerequisite is missing (binaries not built, `make deps` not run, not root).
    pub async fn start(node_name: &str, pod_cidr: &str) -> anyhow::Result<LocalCluster> {
        let containerd = Containerd::start().await?;
        let cluster = Cluster::start().await?;
        let controller_manager = ControllerManager::start(&cluster, &["--leader-elect=false"]).await?;
        let scheduler = Scheduler::start(&cluster, &["--leader-elect=false"]).await?;
        let kubelet =
            Kubelet::start_containerd_with(&cluster, &containerd, node_name, &["--pod-cidr", pod_cidr]).await?;
        let local = LocalCluster { kubelet, scheduler, controller_manager, cluster, containerd };
        let api = local.api();
        let path = format!("/api/v1/nodes/{node_name}");
        eventually(NODE_READY_TIMEOUT, &format!("node {node_name} to be Ready"), || async {
            let (status, node) = api.get(&path).await;
            (status.is_success() && node_is_ready(&node)).then_some(())
        })
        .await;
        Ok(local)
    }

    /// A client for the apiserver.
    pub fn api(&self) -> Api {
        Api::new(self.cluster.url())
    }

    /// The apiserver's base URL.
    pub fn url(&self) -> &str {
        self.cluster.url()
    }

    /// The last lines of every component's log, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        format!(
            "--- kubelet ---\n{}\n--- scheduler ---\n{}\n--- controller-manager ---\n{}\n--- containerd ---\n{}",
            self.kubelet.log_tail(lines),
            self.scheduler.log_tail(lines),
            self.controller_manager.log_tail(lines),
            self.containerd.log_tail(lines),
        )
    }
}

/// Whether a Node's Ready condition is True.
pub fn node_is_ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}
