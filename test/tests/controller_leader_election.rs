//! Two controller-managers: one leads (holds the Lease and acts), the other waits; when the
//! leader dies mid-rollout, the other takes over and finishes the rollout.

use std::time::Duration;

use rkube_tests::controllers::{ControllerManager, Kubelet, deployment, live_pods};
use rkube_tests::{Api, Cluster, eventually};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);
const SYNCS: &str = "rkube_controller_syncs_total{controller=\"deployment\"}";

async fn manager(cluster: &Cluster, identity: &str) -> ControllerManager {
    let args = [
        "--identity",
        identity,
        "--controllers=replicaset,deployment",
        "--leader-elect-lease-duration=3s",
        "--leader-elect-renew-deadline=2s",
        "--leader-elect-retry-period=500ms",
    ];
    ControllerManager::start(cluster, &args).await.expect("controller-manager starts")
}

async fn holder(api: &Api) -> Option<String> {
    let (status, lease) =
        api.get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/rkube-controller-manager").await;
    status.is_success().then(|| lease["spec"]["holderIdentity"].as_str().unwrap_or_default().to_string())
}

fn image_of(pod: &Value) -> &str {
    pod["spec"]["containers"][0]["image"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn only_the_leader_acts_and_the_standby_finishes_a_rollout_when_the_leader_dies() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    let mut a = manager(&cluster, "cm-a").await;
    let mut b = manager(&cluster, "cm-b").await;
    let first = eventually(LONG, "a leader", || async { holder(&api).await.filter(|h| !h.is_empty()) }).await;
    let (leader, standby) = if first == "cm-a" { (&mut a, &mut b) } else { (&mut b, &mut a) };

    let _kubelet = Kubelet::start(cluster.url(), "default", "broken");
    api.create("/apis/apps/v1/namespaces/default/deployments", &deployment("default", "web", 3, "nginx:1", 1, 0)).await;
    eventually(LONG, "3 ready pods", || async {
        let pods = live_pods(&api, "default", "app=web").await;
        (pods.len() == 3 && pods.iter().all(rkube_tests::controllers::is_ready)).then_some(())
    })
    .await;
    assert!(leader.metric(SYNCS).await > 0.0, "the leader synced the deployment");
    assert_eq!(standby.metric(SYNCS).await, 0.0, "the standby did nothing");

    // Start a rollout, and kill the leader as soon as it has begun.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}}});
    let (status, body) =
        api.patch("/apis/apps/v1/namespaces/default/deployments/web", "application/merge-patch+json", &patch).await;
    assert!(status.is_success(), "{body}");
    eventually(LONG, "the rollout to begin", || async {
        live_pods(&api, "default", "app=web").await.iter().any(|pod| image_of(pod) == "nginx:2").then_some(())
    })
    .await;
    leader.kill();
    let standby_name = if first == "cm-a" { "cm-b" } else { "cm-a" };
    eventually(LONG, "the standby to take the lease", || async {
        (holder(&api).await.as_deref() == Some(standby_name)).then_some(())
    })
    .await;
    eventually(LONG, "the rollout finished by the new leader", || async {
        let pods = live_pods(&api, "default", "app=web").await;
        let web = api.get_ok("/apis/apps/v1/namespaces/default/deployments/web").await;
        let done = pods.len() == 3
            && pods.iter().all(|pod| image_of(pod) == "nginx:2" && rkube_tests::controllers::is_ready(pod))
            && web["status"]["updatedReplicas"] == 3
            && web["status"]["availableReplicas"] == 3
            && web["status"]["observedGeneration"] == web["metadata"]["generation"];
        done.then_some(())
    })
    .await;
    assert!(standby.metric(SYNCS).await > 0.0, "the new leader did the work");
    assert!(standby.is_running(), "{}", standby.log_tail(20));
}
