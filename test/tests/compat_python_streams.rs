//! The official Kubernetes Python client against a real rkubelet on containerd: the node
//! steps of `test/compat/python_client.py`, each a separate run of the script against one
//! cluster and node.
//!
//! - `metrics`: `CustomObjectsApi` on `metrics.k8s.io/v1beta1` (NodeMetrics, PodMetrics by
//!   name, by label and across namespaces), which the apiserver answers from the kubelet's
//!   cgroup readings;
//! - `attach`: `stream(connect_get_namespaced_pod_attach)` to a container reading its stdin
//!   (closed with the v5 protocol's close frame) and to one only printing;
//! - `tty`: `stream(connect_get_namespaced_pod_exec, tty=True)` with sizes sent on the resize
//!   channel, checked by `stty size` in the container, and the exit code as `returncode`;
//! - `debug`: `patch_namespaced_pod_ephemeralcontainers` adding a debug container that shares
//!   the target's processes, its status and log read back.
//!
//! Needs root and `make deps` (containerd, runc, busybox-static, the venv's Python client).

use std::time::Duration;

use rkube_tests::Cluster;
use rkube_tests::node::{Containerd, Kubelet, TEST_IMAGE};
use rkube_tests::python_client::run_step;

/// How long one step may take: pods are started on a slow shared machine, and the metrics
/// step waits for a CPU reading.
const STEP_TIMEOUT: Duration = Duration::from_secs(240);

#[tokio::test]
async fn python_client_streams_debugs_and_reads_metrics_on_a_containerd_node() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let containerd = Containerd::start().await.expect("containerd starts");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "py-node").await.expect("kubelet starts");
    let env = [("RKUBE_COMPAT_NODE", kubelet.node_name.as_str()), ("RKUBE_COMPAT_IMAGE", TEST_IMAGE)];
    for step in ["metrics", "attach", "tty", "debug"] {
        run_step(cluster.url(), step, &env, STEP_TIMEOUT, || {
            format!(
                "--- kubelet log ---\n{}\n--- apiserver log ---\n{}\n--- containerd log ---\n{}",
                kubelet.log_tail(30),
                cluster.apiserver.log_tail(30),
                containerd.log_tail(10)
            )
        })
        .await;
    }
}
