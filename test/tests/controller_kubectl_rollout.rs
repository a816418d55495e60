//! The real `kubectl` (from `.venv`, installed by `make deps`) driving a rollout against
//! rkube: `rollout status` converges, `set image` rolls forward and `rollout undo` rolls back.

use std::time::Duration;

use rkube_tests::controllers::{ControllerManager, Kubelet, deployment, live_pods};
use rkube_tests::kubectl::real_kubectl as kubectl;
use rkube_tests::{Api, Cluster, eventually};

const LONG: Duration = Duration::from_secs(90);

fn image_of(pod: &serde_json::Value) -> &str {
    pod["spec"]["containers"][0]["image"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn kubectl_rollout_status_set_image_and_undo_work_end_to_end() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let manager =
        ControllerManager::start(&cluster, &["--leader-elect=false"]).await.expect("controller-manager starts");
    let home = tempfile::tempdir().expect("a temporary HOME");
    let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig");
    let api = Api::new(cluster.url());
    let _kubelet = Kubelet::start(cluster.url(), "default", "broken");
    api.create("/apis/apps/v1/namespaces/default/deployments", &deployment("default", "web", 2, "nginx:1", 1, 0)).await;

    let out = kubectl(&kubeconfig, home.path(), &["rollout", "status", "deployment/web", "--timeout=60s"]).await;
    assert!(out.contains("successfully rolled out"), "{out}\n{}", manager.log_tail(20));
    kubectl(&kubeconfig, home.path(), &["set", "image", "deployment/web", "app=nginx:2"]).await;
    let out = kubectl(&kubeconfig, home.path(), &["rollout", "status", "deployment/web", "--timeout=60s"]).await;
    assert!(out.contains("successfully rolled out"), "{out}");
    eventually(LONG, "2 nginx:2 pods", || async {
        let pods = live_pods(&api, "default", "app=web").await;
        (pods.len() == 2 && pods.iter().all(|pod| image_of(pod) == "nginx:2")).then_some(())
    })
    .await;

    kubectl(&kubeconfig, home.path(), &["rollout", "undo", "deployment/web"]).await;
    let out = kubectl(&kubeconfig, home.path(), &["rollout", "status", "deployment/web", "--timeout=60s"]).await;
    assert!(out.contains("successfully rolled out"), "{out}");
    eventually(LONG, "2 nginx:1 pods again", || async {
        let pods = live_pods(&api, "default", "app=web").await;
        (pods.len() == 2 && pods.iter().all(|pod| image_of(pod) == "nginx:1")).then_some(())
    })
    .await;
    let history = kubectl(&kubeconfig, home.path(), &["rollout", "history", "deployment/web"]).await;
    assert!(history.contains('2') && history.contains('3'), "revisions 2 and 3 listed: {history}");

    // The story, as Kubernetes tells it: the Deployment scaled its ReplicaSets, and they
    // created and deleted pods.
    let story = kubectl(&kubeconfig, home.path(), &["events", "--for", "deployment/web"]).await;
    assert!(story.contains("ScalingReplicaSet") && story.contains("Scaled up replica set web-"), "{story}");
    assert!(story.contains("Scaled down replica set web-"), "{story}");
    let described = kubectl(&kubeconfig, home.path(), &["describe", "deployment", "web"]).await;
    assert!(described.contains("ScalingReplicaSet") && described.contains("deployment-controller"), "{described}");
    // (kubectl shows no Events when describing by label selector: name the ReplicaSet.)
    let first = live_pods(&api, "default", "app=web").await;
    let rs = first[0]["metadata"]["ownerReferences"][0]["name"].as_str().expect("owner").to_string();
    let described = kubectl(&kubeconfig, home.path(), &["describe", "replicaset", &rs]).await;
    assert!(described.contains("SuccessfulCreate") && described.contains("Created pod: web-"), "{described}");
}
