//! PATCH in its four Kubernetes flavours: strategic merge (lists merged by key), JSON merge
//! (RFC 7386), JSON patch (RFC 6902) and server-side apply.

use rkube_tests::resources::{CONFIG_MAPS, DEPLOYMENTS, PODS, config_map, resource_version};
use rkube_tests::{Api, Cluster, Method, StatusCode, assert_client_error, assert_status};
use serde_json::json;

const STRATEGIC: &str = "application/strategic-merge-patch+json";
const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const APPLY: &str = "application/apply-patch+yaml";

async fn start() -> (Cluster, Api) {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    (cluster, api)
}

#[tokio::test]
async fn strategic_merge_patch_merges_containers_by_name() {
    let (_cluster, api) = start().await;
    let item = PODS.item("default", "two");
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "two", "labels": { "app": "x", "drop": "me" } },
        "spec": { "containers": [
            { "name": "a", "image": "registry.example/a:1" },
            { "name": "b", "image": "registry.example/b:1" }
        ] }
    });
    api.create(&PODS.collection("default"), &pod).await;
    let patch = json!({
        "metadata": { "labels": { "drop": null, "added": "yes" } },
        "spec": { "containers": [{ "name": "b", "image": "registry.example/b:2" }] }
    });
    let (status, patched) = api.patch(&item, STRATEGIC, &patch).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    let containers = patched["spec"]["containers"].as_array().expect("containers");
    let summary: Vec<(&str, &str)> =
        containers.iter().map(|c| (c["name"].as_str().unwrap_or(""), c["image"].as_str().unwrap_or(""))).collect();
    assert_eq!(summary, [("a", "registry.example/a:1"), ("b", "registry.example/b:2")], "merged by name: {patched}");
    assert_eq!(containers[1]["imagePullPolicy"], "IfNotPresent", "the rest of b is kept: {patched}");
    assert_eq!(patched["metadata"]["labels"], json!({ "app": "x", "added": "yes" }), "null removes a key");
    assert_eq!(api.get_ok(&item).await, patched);
}

#[tokio::test]
async fn json_merge_patch_merges_maps_removes_nulls_and_replaces_lists() {
    let (_cluster, api) = start().await;
    let item = CONFIG_MAPS.item("default", "m");
    api.create(&CONFIG_MAPS.collection("default"), &config_map("default", "m", json!({ "a": "1", "b": "2" }))).await;
    let (status, patched) = api.patch(&item, MERGE, &json!({ "data": { "a": null, "c": "3" } })).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["data"], json!({ "b": "2", "c": "3" }));

    let deployment_item = DEPLOYMENTS.item("default", "d");
    let mut deployment = DEPLOYMENTS.sample("default", "d");
    deployment["spec"]["template"]["spec"]["containers"] =
        json!([{ "name": "a", "image": "registry.example/a:1" }, { "name": "b", "image": "registry.example/b:1" }]);
    api.create(&DEPLOYMENTS.collection("default"), &deployment).await;
    let replacement = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "c", "image": "registry.example/c:1" }] } } } });
    let (status, patched) = api.patch(&deployment_item, MERGE, &replacement).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    let names: Vec<&str> = patched["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["c"], "a JSON merge patch replaces lists wholesale: {patched}");
}

#[tokio::test]
async fn json_patch_applies_operations_in_order_or_not_at_all() {
    let (_cluster, api) = start().await;
    let item = CONFIG_MAPS.item("default", "j");
    let created = api
        .create(&CONFIG_MAPS.collection("default"), &config_map("default", "j", json!({ "a": "1", "b": "2" })))
        .await;
    let operations = json!([
        { "op": "add", "path": "/data/c", "value": "3" },
        { "op": "remove", "path": "/data/a" },
        { "op": "replace", "path": "/data/b", "value": "two" },
        { "op": "copy", "from": "/data/c", "path": "/data/d" }
    ]);
    let (status, patched) = api.patch(&item, JSON_PATCH, &operations).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["data"], json!({ "b": "two", "c": "3", "d": "3" }));
    assert!(resource_version(&patched) > resource_version(&created));

    let failing = json!([
        { "op": "add", "path": "/data/e", "value": "5" },
        { "op": "test", "path": "/data/b", "value": "not-two" }
    ]);
    let (status, reply) = api.patch(&item, JSON_PATCH, &failing).await;
    assert_client_error(status, &reply, "JSON patch whose test op fails");
    assert_eq!(api.get_ok(&item).await, patched, "a failed JSON patch changes nothing");
}

#[tokio::test]
async fn patch_with_a_stale_resource_version_returns_409_and_patch_of_a_missing_object_404() {
    let (_cluster, api) = start().await;
    let item = CONFIG_MAPS.item("default", "p");
    let created =
        api.create(&CONFIG_MAPS.collection("default"), &config_map("default", "p", json!({ "v": "0" }))).await;
    let stale_rv = created["metadata"]["resourceVersion"].clone();
    assert_eq!(api.patch(&item, MERGE, &json!({ "data": { "v": "1" } })).await.0, StatusCode::OK);
    let (status, reply) =
        api.patch(&item, MERGE, &json!({ "metadata": { "resourceVersion": stale_rv }, "data": { "v": "2" } })).await;
    assert_status(status, &reply, 409, "Conflict", "merge patch carrying a stale resourceVersion");
    assert_eq!(api.get_ok(&item).await["data"]["v"], "1");

    let (status, reply) = api.patch(&CONFIG_MAPS.item("default", "ghost"), MERGE, &json!({ "data": {} })).await;
    assert_status(status, &reply, 404, "NotFound", "patch of a missing object");
}

#[tokio::test]
async fn server_side_apply_creates_then_updates() {
    let (_cluster, api) = start().await;
    let item = CONFIG_MAPS.item("default", "applied");
    let path = format!("{item}?fieldManager=rkube-tests");
    let first =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: default\ndata:\n  a: \"1\"\n";
    let reply = api.send(Method::PATCH, &path, &[("content-type", APPLY)], Some(first.as_bytes().to_vec())).await;
    assert_eq!(reply.status, StatusCode::CREATED, "apply of a missing object creates it: {}", reply.body);
    assert_eq!(reply.body["data"], json!({ "a": "1" }), "{}", reply.body);
    assert_eq!(reply.body["kind"], "ConfigMap");
    assert!(reply.body["metadata"]["uid"].as_str().is_some_and(|uid| !uid.is_empty()), "{}", reply.body);

    let second = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: default\ndata:\n  a: \"2\"\n  b: \"3\"\n";
    let reply = api.send(Method::PATCH, &path, &[("content-type", APPLY)], Some(second.as_bytes().to_vec())).await;
    assert_eq!(reply.status, StatusCode::OK, "apply of an existing object updates it: {}", reply.body);
    assert_eq!(reply.body["data"], json!({ "a": "2", "b": "3" }), "{}", reply.body);
    assert_eq!(api.get_ok(&item).await, reply.body);
}
