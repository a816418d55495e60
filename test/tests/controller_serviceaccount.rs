//! The ServiceAccount controller against the real apiserver and etcd: every active namespace
//! gets a `default` ServiceAccount, and gets it back when it is deleted.

use std::time::Duration;

use rkube_tests::controllers::ControllerManager;
use rkube_tests::{Api, Cluster, StatusCode, eventually};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

async fn has_default(api: &Api, namespace: &str) -> Option<()> {
    let (status, _) = api.get(&format!("/api/v1/namespaces/{namespace}/serviceaccounts/default")).await;
    (status == StatusCode::OK).then_some(())
}

#[tokio::test]
async fn every_namespace_gets_a_default_service_account_back_when_it_is_deleted() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let _manager = ControllerManager::start(&cluster, &["--leader-elect=false"]).await.expect("controller-manager");
    let api = Api::new(cluster.url());
    // The built-in namespaces, and a new one.
    for namespace in ["default", "kube-system"] {
        eventually(WAIT, &format!("a default ServiceAccount in {namespace}"), || has_default(&api, namespace)).await;
    }
    api.create("/api/v1/namespaces", &json!({"metadata": {"name": "team"}})).await;
    eventually(WAIT, "a default ServiceAccount in team", || has_default(&api, "team")).await;
    let (status, _) = api.delete("/api/v1/namespaces/team/serviceaccounts/default").await;
    assert_eq!(status, StatusCode::OK);
    eventually(WAIT, "the default ServiceAccount back in team", || has_default(&api, "team")).await;
}
