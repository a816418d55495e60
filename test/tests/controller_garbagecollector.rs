//! The garbage collector, end to end: deleting an owner deletes its dependents (background
//! propagation), by owner uid, through every level (Deployment → ReplicaSet → Pod).

use std::time::Duration;

use rkube_tests::controllers::{ControllerManager, deployment, pods};
use rkube_tests::{Api, Cluster, eventually};
use serde_json::json;

const LONG: Duration = Duration::from_secs(60);

async fn start() -> (Cluster, ControllerManager, Api) {
    let cluster = Cluster::start().await.expect("cluster starts");
    let manager =
        ControllerManager::start(&cluster, &["--leader-elect=false"]).await.expect("controller-manager starts");
    let api = Api::new(cluster.url());
    (cluster, manager, api)
}

#[tokio::test]
async fn deleting_a_deployment_deletes_its_replica_sets_and_their_pods() {
    let (_cluster, _manager, api) = start().await;
    api.create("/apis/apps/v1/namespaces/default/deployments", &deployment("default", "web", 2, "nginx", 1, 0)).await;
    eventually(LONG, "2 pods", || async { (pods(&api, "default", "app=web").await.len() == 2).then_some(()) }).await;
    // What `kubectl delete deployment web` sends.
    let (status, body) = api
        .delete_with("/apis/apps/v1/namespaces/default/deployments/web", &json!({"propagationPolicy": "Background"}))
        .await;
    assert!(status.is_success(), "{body}");
    eventually(LONG, "the ReplicaSet and the pods gone", || async {
        let sets = api.get_ok("/apis/apps/v1/namespaces/default/replicasets").await;
        let none_left =
            sets["items"].as_array().is_some_and(Vec::is_empty) && pods(&api, "default", "app=web").await.is_empty();
        none_left.then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_dependent_is_kept_while_its_owner_exists_and_collected_only_by_owner_uid() {
    let (_cluster, _manager, api) = start().await;
    let owner = api
        .create("/api/v1/namespaces/default/pods", &rkube_tests::resources::pod("default", "owner", json!({})))
        .await;
    let reference = |uid: &serde_json::Value| json!([{"apiVersion": "v1", "kind": "Pod", "name": "owner", "uid": uid}]);
    let mut alive = rkube_tests::resources::pod("default", "dependent-of-live-owner", json!({"role": "dependent"}));
    alive["metadata"]["ownerReferences"] = reference(&owner["metadata"]["uid"]);
    api.create("/api/v1/namespaces/default/pods", &alive).await;
    // Same owner name, another uid: that owner does not exist.
    let mut stale = rkube_tests::resources::pod("default", "dependent-of-gone-owner", json!({"role": "dependent"}));
    stale["metadata"]["ownerReferences"] = reference(&json!("00000000-0000-0000-0000-000000000000"));
    api.create("/api/v1/namespaces/default/pods", &stale).await;
    let mut foreign = rkube_tests::resources::pod("default", "dependent-of-unknown-kind", json!({"role": "dependent"}));
    foreign["metadata"]["ownerReferences"] = json!([{"apiVersion": "example.com/v1", "kind": "Widget", "name": "w", "uid": "11111111-1111-1111-1111-111111111111"}]);
    api.create("/api/v1/namespaces/default/pods", &foreign).await;
    eventually(LONG, "the dependent of a gone owner collected", || async {
        let (status, _) = api.get("/api/v1/namespaces/default/pods/dependent-of-gone-owner").await;
        (status == rkube_tests::StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    api.get_ok("/api/v1/namespaces/default/pods/dependent-of-live-owner").await;
    api.get_ok("/api/v1/namespaces/default/pods/dependent-of-unknown-kind").await;
    let (status, _) = api.delete("/api/v1/namespaces/default/pods/owner").await;
    assert!(status.is_success());
    eventually(LONG, "the dependent collected after its owner", || async {
        let (status, _) = api.get("/api/v1/namespaces/default/pods/dependent-of-live-owner").await;
        (status == rkube_tests::StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    api.get_ok("/api/v1/namespaces/default/pods/dependent-of-unknown-kind").await;
}

/// An owner deleted with `propagationPolicy: Foreground` (the apiserver adds the
/// `foregroundDeletion` finalizer) stays until its blocking dependents are gone.
#[tokio::test]
async fn foreground_deletion_removes_the_dependents_before_the_owner() {
    let (_cluster, _manager, api) = start().await;
    let rs = rkube_tests::controllers::replica_set("default", "web", 2, "nginx");
    api.create("/apis/apps/v1/namespaces/default/replicasets", &rs).await;
    eventually(LONG, "2 pods", || async { (pods(&api, "default", "app=web").await.len() == 2).then_some(()) }).await;
    let list = api.get_ok("/apis/apps/v1/namespaces/default/replicasets").await;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
    let mut watch =
        api.watch(&format!("/apis/apps/v1/namespaces/default/replicasets?watch=true&resourceVersion={rv}")).await;
    let (status, body) = api
        .delete_with("/apis/apps/v1/namespaces/default/replicasets/web", &json!({"propagationPolicy": "Foreground"}))
        .await;
    assert!(status.is_success(), "{body}");
    assert_eq!(body["metadata"]["finalizers"], json!(["foregroundDeletion"]), "{body}");
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "the ReplicaSet was never deleted");
        let Ok(Some(event)) = watch.next_within(Duration::from_secs(1)).await else { continue };
        if event["type"] == "DELETED" {
            break;
        }
    }
    assert!(pods(&api, "default", "app=web").await.is_empty(), "the owner went before its dependents");
}

/// An owner deleted with `propagationPolicy: Orphan` (the apiserver adds the `orphan`
/// finalizer) goes; its dependents stay, without its reference.
#[tokio::test]
async fn orphan_deletion_keeps_the_dependents_without_the_owner_reference() {
    let (_cluster, _manager, api) = start().await;
    let rs = rkube_tests::controllers::replica_set("default", "web", 2, "nginx");
    api.create("/apis/apps/v1/namespaces/default/replicasets", &rs).await;
    eventually(LONG, "2 pods", || async { (pods(&api, "default", "app=web").await.len() == 2).then_some(()) }).await;
    let (status, body) = api
        .delete_with("/apis/apps/v1/namespaces/default/replicasets/web", &json!({"propagationPolicy": "Orphan"}))
        .await;
    assert!(status.is_success(), "{body}");
    eventually(LONG, "the ReplicaSet gone", || async {
        let (status, _) = api.get("/apis/apps/v1/namespaces/default/replicasets/web").await;
        (status == rkube_tests::StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    let left = pods(&api, "default", "app=web").await;
    assert_eq!(left.len(), 2, "the dependents stay");
    for pod in &left {
        assert!(pod["metadata"]["ownerReferences"].as_array().is_none_or(Vec::is_empty), "{pod}");
        assert!(pod["metadata"]["deletionTimestamp"].is_null(), "{pod}");
    }
}
