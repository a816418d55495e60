//! ReplicationControllers, end to end: real etcd, apiserver and `rkube-controller-manager`
//! (`--controllers=replicationcontroller,garbagecollector`), the real kubectl, and a stand-in
//! kubelet that marks pods Ready. The ReplicaSet controller's code runs them, so what matters
//! here is what is their own: the map selector, the v1 owner references, scale and deletion.

use std::time::Duration;

use rkube_tests::controllers::{ControllerManager, Kubelet, live_pods};
use rkube_tests::kubectl::real_kubectl as kubectl;
use rkube_tests::{Api, Cluster, eventually};
use serde_json::json;

const LONG: Duration = Duration::from_secs(60);

async fn exactly(api: &Api, count: usize) -> Vec<serde_json::Value> {
    eventually(LONG, &format!("{count} live nginx pods"), || async {
        let pods = live_pods(api, "default", "app=nginx").await;
        (pods.len() == count).then_some(pods)
    })
    .await
}

#[tokio::test]
async fn a_replication_controller_keeps_its_replicas_scales_and_takes_its_pods_when_deleted() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let manager = ControllerManager::start(
        &cluster,
        &["--leader-elect=false", "--controllers=replicationcontroller,garbagecollector"],
    )
    .await
    .expect("controller-manager starts");
    let api = Api::new(cluster.url());
    let _kubelet = Kubelet::start(cluster.url(), "default", "broken");
    let home = tempfile::tempdir().expect("a temporary HOME");
    let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig");
    // The manifest of Kubernetes' documentation: no selector, it defaults to the template's labels.
    let manifest = "apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: nginx\nspec:\n  replicas: 3\n  template:\n    metadata:\n      name: nginx\n      labels:\n        app: nginx\n    spec:\n      containers:\n      - name: nginx\n        image: nginx\n        ports:\n        - containerPort: 80\n";
    let file = home.path().join("rc.yaml");
    std::fs::write(&file, manifest).expect("manifest written");
    let out = kubectl(&kubeconfig, home.path(), &["apply", "-f", &file.to_string_lossy()]).await;
    assert!(out.contains("replicationcontroller/nginx created"), "{out}");
    let pods = exactly(&api, 3).await;
    let rc = api.get_ok("/api/v1/namespaces/default/replicationcontrollers/nginx").await;
    assert_eq!(rc["spec"]["selector"], json!({"app": "nginx"}));
    for pod in &pods {
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["apiVersion"].as_str(), owner["kind"].as_str()),
            (Some("v1"), Some("ReplicationController")),
            "{pod}"
        );
        assert_eq!(owner["uid"], rc["metadata"]["uid"]);
    }
    eventually(LONG, "readyReplicas 3", || async {
        let rc = api.get_ok("/api/v1/namespaces/default/replicationcontrollers/nginx").await;
        (rc["status"]["readyReplicas"] == 3 && rc["status"]["availableReplicas"] == 3).then_some(())
    })
    .await;
    let out = kubectl(&kubeconfig, home.path(), &["get", "rc", "nginx"]).await;
    let header: Vec<&str> = out.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "DESIRED", "CURRENT", "READY", "AGE"], "{out}");
    assert!(out.lines().nth(1).is_some_and(|row| row.split_whitespace().take(4).eq(["nginx", "3", "3", "3"])), "{out}");

    let out = kubectl(&kubeconfig, home.path(), &["scale", "rc", "nginx", "--replicas=1"]).await;
    assert!(out.contains("scaled"), "{out}");
    exactly(&api, 1).await;
    let story = kubectl(&kubeconfig, home.path(), &["events", "--for", "replicationcontroller/nginx"]).await;
    assert!(
        story.contains("SuccessfulCreate") && story.contains("SuccessfulDelete"),
        "{story}\n{}",
        manager.log_tail(20)
    );

    kubectl(&kubeconfig, home.path(), &["delete", "rc", "nginx"]).await;
    exactly(&api, 0).await;
}
