//! The real `rkubelet` on a real containerd: emptyDir volumes shared between containers,
//! hostPath volumes, a PersistentVolumeClaim whose data outlives its pod (local-path
//! provisioning by the real controller-manager), and resource limits enforced by the kernel (a container past its
//! memory limit is OOM-killed and reported as `OOMKilled`). Needs root and `make deps`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use rkube_client::{Api, Client, Config, PostParams};
use rkube_tests::Cluster;
use rkube_tests::controllers::ControllerManager;
use rkube_tests::node::{Containerd, Kubelet, TEST_IMAGE};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn pods(cluster: &Cluster) -> Api<Pod> {
    Api::namespaced(Client::new(Config::new(cluster.url().parse().expect("url"))).expect("client"), "default")
}

async fn create(pods: &Api<Pod>, spec: serde_json::Value) {
    let pod: Pod = serde_json::from_value(spec).expect("pod");
    pods.create(&PostParams::default(), &pod).await.expect("create pod");
}

/// Waits until the pod reaches `phase`, with the kubelet's log in the failure message.
async fn phase(pods: &Api<Pod>, name: &str, phase: &str, kubelet: &Kubelet) -> Pod {
    let what = format!("pod {name} {phase}");
    let found = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(pod) = pods.get(name).await
                && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase)
            {
                return pod;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{what} not reached; kubelet log:\n{}", kubelet.log_tail(40)))
}

#[tokio::test]
async fn containers_share_an_empty_dir_and_write_through_a_host_path() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let containerd = Containerd::start().await.expect("containerd starts");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "vol-node").await.expect("kubelet starts");
    let pods = pods(&cluster);
    let host = tempfile::tempdir().expect("host dir");
    let reader = "for i in $(seq 1 100); do grep -q hello /data/msg 2>/dev/null && cat /data/msg > /host/copy && exit 0; sleep 0.1; done; exit 1";
    create(
        &pods,
        json!({"metadata": {"name": "sharing"}, "spec": {"nodeName": "vol-node", "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "host", "hostPath": {"path": host.path(), "type": "Directory"}}],
            "containers": [
                {"name": "writer", "image": TEST_IMAGE, "command": ["sh", "-c", "echo hello > /data/msg"],
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "reader", "image": TEST_IMAGE, "command": ["sh", "-c", reader],
                 "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true}, {"name": "host", "mountPath": "/host"}]}]}}),
    )
    .await;
    phase(&pods, "sharing", "Succeeded", &kubelet).await;
    let copied = std::fs::read_to_string(host.path().join("copy")).expect("the reader wrote through the hostPath");
    assert_eq!(copied, "hello\n");
}

#[tokio::test]
async fn a_container_past_its_memory_limit_is_oom_killed_and_reported_so() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let containerd = Containerd::start().await.expect("containerd starts");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "oom-node").await.expect("kubelet starts");
    let pods = pods(&cluster);
    // dd holds one 256 MiB buffer: four times the limit.
    create(
        &pods,
        json!({"metadata": {"name": "hungry"}, "spec": {"nodeName": "oom-node", "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": TEST_IMAGE,
                "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
                "resources": {"limits": {"memory": "64Mi"}}}]}}),
    )
    .await;
    let pod = phase(&pods, "hungry", "Failed", &kubelet).await;
    let status = pod.status.and_then(|s| s.container_statuses).and_then(|c| c.into_iter().next()).expect("status");
    let terminated = status.state.and_then(|s| s.terminated).expect("terminated");
    assert_eq!((terminated.exit_code, terminated.reason.as_deref()), (137, Some("OOMKilled")));

    // The same work within a generous limit completes.
    create(
        &pods,
        json!({"metadata": {"name": "fed"}, "spec": {"nodeName": "oom-node", "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": TEST_IMAGE,
                "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=16M", "count=1"],
                "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}}}]}}),
    )
    .await;
    phase(&pods, "fed", "Succeeded", &kubelet).await;
}

#[tokio::test]
async fn a_claims_data_outlives_its_pod() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let _manager =
        ControllerManager::start(&cluster, &["--leader-elect=false", "--controllers=persistentvolume-binder"])
            .await
            .expect("controller-manager starts");
    let containerd = Containerd::start().await.expect("containerd starts");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "pv-node").await.expect("kubelet starts");
    let api = rkube_tests::Api::new(cluster.url());
    let root = tempfile::tempdir().expect("volume root");
    api.create(
        "/apis/storage.k8s.io/v1/storageclasses",
        &json!({"apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass", "metadata": {"name": "scratch"}, "provisioner": "rkube.io/local-path",
        "volumeBindingMode": "WaitForFirstConsumer", "parameters": {"path": root.path()}}),
    )
    .await;
    api.create("/api/v1/namespaces/default/persistentvolumeclaims", &json!({"apiVersion": "v1",
        "kind": "PersistentVolumeClaim", "metadata": {"name": "notes"},
        "spec": {"storageClassName": "scratch", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}}}))
        .await;
    let pods = pods(&cluster);
    let pod = |name: &str, script: &str| {
        json!({"metadata": {"name": name}, "spec": {"nodeName": "pv-node", "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "notes", "persistentVolumeClaim": {"claimName": "notes"}}],
            "containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "notes", "mountPath": "/notes"}]}]}})
    };
    // The first pod waits for its claim (bound once the pod is on a node), then writes.
    create(&pods, pod("writer", "echo kept > /notes/msg")).await;
    phase(&pods, "writer", "Succeeded", &kubelet).await;
    let claim = api.get_ok("/api/v1/namespaces/default/persistentvolumeclaims/notes").await;
    let uid = claim["metadata"]["uid"].as_str().expect("uid");
    let on_disk = root.path().join(format!("pvc-{uid}_default_notes")).join("msg");
    assert_eq!(std::fs::read_to_string(&on_disk).expect("the data is in the volume's directory"), "kept\n");
    pods.delete("writer", &Default::default()).await.expect("delete writer");

    // Another pod, later, reads what the first wrote.
    create(&pods, pod("reader", "grep -qx kept /notes/msg")).await;
    phase(&pods, "reader", "Succeeded", &kubelet).await;
}
