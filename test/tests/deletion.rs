//! Deletion: graceful deletion of bound pods, finalizers, preconditions, deletecollection and
//! namespace deletion (Terminating, contents deleted, then the namespace removed).

use std::time::Duration;

use rkube_tests::resources::{
    CONFIG_MAPS, DEPLOYMENTS, LEASES, PODS, binding, config_map, item_names, namespace, pod, resource_version,
};
use rkube_tests::{Api, Cluster, StatusCode, assert_status, escape_query, eventually};
use serde_json::json;

const EVENT_WAIT: Duration = Duration::from_secs(10);

async fn start() -> (Cluster, Api) {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    (cluster, api)
}

#[tokio::test]
async fn deleting_an_unbound_pod_removes_it_at_once() {
    let (_cluster, api) = start().await;
    let item = PODS.item("default", "loose");
    api.create(&PODS.collection("default"), &pod("default", "loose", json!({}))).await;
    let (status, reply) = api.delete(&item).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (status, reply) = api.get(&item).await;
    assert_status(status, &reply, 404, "NotFound", "an unbound pod has no kubelet to wait for");
}

#[tokio::test]
async fn deleting_a_bound_pod_marks_it_and_grace_period_zero_removes_it() {
    let (_cluster, api) = start().await;
    let item = PODS.item("default", "bound");
    let collection = PODS.collection("default");
    api.create(&collection, &pod("default", "bound", json!({}))).await;
    let (status, reply) = api.post(&format!("{item}/binding"), &binding("bound", "n1")).await;
    assert!(status.is_success(), "{reply}");
    let bound = api.get_ok(&item).await;
    let mut watch = api.watch(&format!("{collection}?watch=true&resourceVersion={}", resource_version(&bound))).await;

    let (status, marked) = api.delete(&item).await;
    // Kubernetes answers 200 here (delete.go keeps 202 for orphanDependents=false only);
    // clients treat both alike.
    assert!(status == StatusCode::OK || status == StatusCode::ACCEPTED, "{status} {marked}");
    assert!(marked["metadata"]["deletionTimestamp"].is_string(), "a bound pod is only marked: {marked}");
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30, "the pod's grace period: {marked}");
    let still_there = api.get_ok(&item).await;
    assert_eq!(still_there["metadata"]["deletionTimestamp"], marked["metadata"]["deletionTimestamp"]);
    let event = watch.expect_non_bookmark(EVENT_WAIT).await;
    assert_eq!(event["type"], "MODIFIED", "the kubelet learns of the deletion as a MODIFIED: {event}");
    assert!(event["object"]["metadata"]["deletionTimestamp"].is_string(), "{event}");

    let options = json!({ "apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0 });
    let (status, reply) = api.delete_with(&item, &options).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (status, reply) = api.get(&item).await;
    assert_status(status, &reply, 404, "NotFound", "after gracePeriodSeconds=0");
    let event = watch.expect_non_bookmark(EVENT_WAIT).await;
    assert_eq!(event["type"], "DELETED", "{event}");
}

#[tokio::test]
async fn finalizers_hold_a_deleted_object_until_they_are_removed() {
    let (_cluster, api) = start().await;
    let item = CONFIG_MAPS.item("default", "held");
    let mut held = config_map("default", "held", json!({ "v": "1" }));
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    api.create(&CONFIG_MAPS.collection("default"), &held).await;

    let (status, reply) = api.delete(&item).await;
    assert!(status == StatusCode::OK || status == StatusCode::ACCEPTED, "{status} {reply}");
    let marked = api.get_ok(&item).await;
    assert!(marked["metadata"]["deletionTimestamp"].is_string(), "marked for deletion: {marked}");
    assert_eq!(marked["metadata"]["finalizers"], json!(["example.com/hold"]), "{marked}");

    // Deleting again does not remove it either.
    let (status, reply) = api.delete(&item).await;
    assert!(status.is_success(), "{status} {reply}");
    assert_eq!(api.get(&item).await.0, StatusCode::OK, "finalizers still hold the object");

    let (status, reply) =
        api.patch(&item, "application/merge-patch+json", &json!({ "metadata": { "finalizers": null } })).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    eventually(Duration::from_secs(5), "the object to go once its finalizers are empty", || async {
        (api.get(&item).await.0 == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
}

#[tokio::test]
async fn delete_preconditions_on_resource_version_and_uid_are_enforced() {
    let (_cluster, api) = start().await;
    let item = CONFIG_MAPS.item("default", "guarded");
    let created = api.create(&CONFIG_MAPS.collection("default"), &config_map("default", "guarded", json!({}))).await;
    let (status, updated) = api.patch(&item, "application/merge-patch+json", &json!({ "data": { "v": "2" } })).await;
    assert_eq!(status, StatusCode::OK);

    let stale = json!({ "kind": "DeleteOptions", "apiVersion": "v1",
        "preconditions": { "resourceVersion": created["metadata"]["resourceVersion"] } });
    let (status, reply) = api.delete_with(&item, &stale).await;
    assert_status(status, &reply, 409, "Conflict", "delete with a stale resourceVersion precondition");
    let wrong_uid = json!({ "kind": "DeleteOptions", "apiVersion": "v1",
        "preconditions": { "uid": "00000000-0000-0000-0000-000000000000" } });
    let (status, reply) = api.delete_with(&item, &wrong_uid).await;
    assert_status(status, &reply, 409, "Conflict", "delete with another object's uid");
    assert_eq!(api.get(&item).await.0, StatusCode::OK, "failed preconditions delete nothing");

    let current = json!({ "kind": "DeleteOptions", "apiVersion": "v1",
        "preconditions": { "resourceVersion": updated["metadata"]["resourceVersion"], "uid": updated["metadata"]["uid"] } });
    let (status, reply) = api.delete_with(&item, &current).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(api.get(&item).await.0, StatusCode::NOT_FOUND);

    let (status, reply) = api.delete(&item).await;
    assert_status(status, &reply, 404, "NotFound", "deleting twice");
}

#[tokio::test]
async fn delete_collection_removes_only_the_selected_objects() {
    let (_cluster, api) = start().await;
    let collection = CONFIG_MAPS.collection("default");
    for (name, group) in [("old-1", "old"), ("old-2", "old"), ("new-1", "new")] {
        let mut object = config_map("default", name, json!({}));
        object["metadata"]["labels"] = json!({ "group": group });
        api.create(&collection, &object).await;
    }
    let (status, reply) = api.delete(&format!("{collection}?labelSelector={}", escape_query("group=old"))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(item_names(&api.get_ok(&collection).await), ["new-1"]);
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_contents_then_the_namespace() {
    let (_cluster, api) = start().await;
    api.create("/api/v1/namespaces", &namespace("doomed")).await;
    let mut contents = Vec::new();
    for index in 0..3 {
        let name = format!("cm-{index}");
        api.create(&CONFIG_MAPS.collection("doomed"), &config_map("doomed", &name, json!({}))).await;
        contents.push(CONFIG_MAPS.item("doomed", &name));
    }
    api.create(&PODS.collection("doomed"), &pod("doomed", "p", json!({}))).await;
    contents.push(PODS.item("doomed", "p"));
    api.create(&DEPLOYMENTS.collection("doomed"), &DEPLOYMENTS.sample("doomed", "d")).await;
    contents.push(DEPLOYMENTS.item("doomed", "d"));
    api.create(&LEASES.collection("doomed"), &LEASES.sample("doomed", "l")).await;
    contents.push(LEASES.item("doomed", "l"));
    api.create(&CONFIG_MAPS.collection("default"), &config_map("default", "survivor", json!({}))).await;

    let (status, reply) = api.delete("/api/v1/namespaces/doomed").await;
    assert!(status.is_success(), "{status} {reply}");
    assert_eq!(reply["status"]["phase"], "Terminating", "the namespace first turns Terminating: {reply}");
    assert!(reply["metadata"]["deletionTimestamp"].is_string(), "{reply}");

    eventually(Duration::from_secs(30), "namespace doomed and its contents to be gone", || async {
        for path in contents.iter().map(String::as_str).chain(["/api/v1/namespaces/doomed"]) {
            if api.get(path).await.0 != StatusCode::NOT_FOUND {
                return None;
            }
        }
        Some(())
    })
    .await;
    assert_eq!(api.get(&CONFIG_MAPS.item("default", "survivor")).await.0, StatusCode::OK, "other namespaces untouched");
    let (status, reply) = api.post(&CONFIG_MAPS.collection("doomed"), &config_map("doomed", "late", json!({}))).await;
    assert_status(status, &reply, 404, "NotFound", "create in the deleted namespace");
}

#[tokio::test]
async fn foreground_and_orphan_deletion_hand_the_object_to_the_garbage_collector() {
    let (_cluster, api) = start().await;
    let collection = CONFIG_MAPS.collection("default");
    for (name, policy, finalizer) in [("fg", "Foreground", "foregroundDeletion"), ("or", "Orphan", "orphan")] {
        let item = CONFIG_MAPS.item("default", name);
        api.create(&collection, &config_map("default", name, json!({}))).await;
        let (status, reply) = api.delete_with(&item, &json!({ "propagationPolicy": policy })).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let marked = api.get_ok(&item).await;
        assert!(marked["metadata"]["deletionTimestamp"].is_string(), "{marked}");
        assert_eq!(marked["metadata"]["finalizers"], json!([finalizer]), "{marked}");
        // The garbage collector's part: once dependents are handled it drops the finalizer,
        // and the object goes.
        let (status, reply) =
            api.patch(&item, "application/merge-patch+json", &json!({ "metadata": { "finalizers": null } })).await;
        assert!(status.is_success(), "{reply}");
        let (status, reply) = api.get(&item).await;
        assert_status(status, &reply, 404, "NotFound", "finalized object");
    }
    // Background (the default) deletes at once.
    let item = CONFIG_MAPS.item("default", "bg");
    api.create(&collection, &config_map("default", "bg", json!({}))).await;
    let (status, _) = api.delete_with(&item, &json!({ "propagationPolicy": "Background" })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.get(&item).await.0, StatusCode::NOT_FOUND);
}
