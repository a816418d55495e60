//! Startup probes on the real `rkubelet` and containerd: they hold liveness and readiness
//! back until the container has started, and restart a container that never starts.
//! Needs root and `make deps`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use rkube_client::{Api, Client, Config, PostParams};
use rkube_tests::node::{Containerd, Kubelet, TEST_IMAGE};
use rkube_tests::{Cluster, eventually};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn ready(pod: &Pod) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone())
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| c.restart_count)
}

#[tokio::test]
async fn startup_probe_gates_readiness_and_restarts_a_container_that_never_starts() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let containerd = Containerd::start().await.expect("containerd starts");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "startup-node").await.expect("kubelet starts");
    let client = Client::new(Config::new(cluster.url().parse().expect("url"))).expect("client");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let started =
        json!({"exec": {"command": ["test", "-f", "/tmp/started"]}, "periodSeconds": 1, "failureThreshold": 30});
    // Without the startup probe's gate, this liveness probe (failing until /tmp/started
    // exists, after 3 s) would restart the container in its first seconds.
    let liveness =
        json!({"exec": {"command": ["test", "-f", "/tmp/started"]}, "periodSeconds": 1, "failureThreshold": 1});
    let slow: Pod = serde_json::from_value(json!({"metadata": {"name": "slow"}, "spec": {"nodeName": "startup-node",
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sh", "-c", "sleep 3; touch /tmp/started; sleep 3600"],
            "startupProbe": started, "livenessProbe": liveness}]}}))
    .expect("pod");
    pods.create(&PostParams::default(), &slow).await.expect("create slow");
    let running = eventually(WAIT, "slow Running", || async {
        let pod = pods.get("slow").await.ok()?;
        (pod.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(pod)
    })
    .await;
    assert_eq!(ready(&running).as_deref(), Some("False"), "ready before the startup probe passed");
    let ready_pod = eventually(WAIT, "slow Ready", || async {
        let pod = pods.get("slow").await.ok()?;
        (ready(&pod).as_deref() == Some("True")).then_some(pod)
    })
    .await;
    assert_eq!(restarts(&ready_pod), 0, "liveness ran before startup passed; kubelet log:\n{}", kubelet.log_tail(30));

    let never = json!({"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2});
    let stuck: Pod = serde_json::from_value(json!({"metadata": {"name": "stuck"}, "spec": {"nodeName": "startup-node",
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sleep", "3600"], "startupProbe": never}]}}))
    .expect("pod");
    pods.create(&PostParams::default(), &stuck).await.expect("create stuck");
    let restarted = eventually(WAIT, "stuck restarted by its startup probe", || async {
        let pod = pods.get("stuck").await.ok()?;
        (restarts(&pod) >= 1).then_some(pod)
    })
    .await;
    assert_eq!(ready(&restarted).as_deref(), Some("False"));
}
