//! Subresources: `status` (writes only status; the main resource ignores status), `scale`
//! (autoscaling/v1 Scale over replicas), `binding` (sets spec.nodeName once), and
//! `metadata.generation` counting spec changes only.

use rkube_tests::resources::{DEPLOYMENTS, NODES, PODS, REPLICA_SETS, Resource, binding, pod, resource_version};
use rkube_tests::{Api, Cluster, StatusCode, assert_status};
use serde_json::json;

async fn start() -> (Cluster, Api) {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    (cluster, api)
}

#[tokio::test]
async fn pod_status_subresource_writes_only_status_and_the_main_resource_ignores_status() {
    let (_cluster, api) = start().await;
    let item = PODS.item("default", "p");
    let created = api.create(&PODS.collection("default"), &pod("default", "p", json!({ "app": "x" }))).await;

    let mut status_update = created.clone();
    status_update["status"]["phase"] = json!("Running");
    status_update["status"]["podIP"] = json!("10.0.0.5");
    status_update["spec"]["containers"][0]["image"] = json!("registry.example/other:2");
    let (status, reply) = api.put(&format!("{item}/status"), &status_update).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["status"]["phase"], "Running", "{reply}");
    assert_eq!(reply["status"]["podIP"], "10.0.0.5", "{reply}");
    assert_eq!(reply["spec"]["containers"][0]["image"], "registry.example/app:1.0", "status PUT ignores spec: {reply}");
    assert_eq!(reply["metadata"]["generation"], 1, "a status write is not a spec change: {reply}");
    assert_eq!(api.get_ok(&item).await, reply);

    // A status write is optimistic too: the kubelet must re-read on 409.
    let (status, stale_reply) = api.put(&format!("{item}/status"), &status_update).await;
    assert_status(status, &stale_reply, 409, "Conflict", "PUT status with a replaced resourceVersion");

    // The kubelet patches status.
    let (status, reply) = api
        .patch(&format!("{item}/status"), "application/merge-patch+json", &json!({ "status": { "podIP": "10.0.0.6" } }))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["status"]["podIP"], "10.0.0.6");
    assert_eq!(reply["status"]["phase"], "Running");

    let mut main_update = reply.clone();
    main_update["status"]["phase"] = json!("Failed");
    main_update["metadata"]["labels"]["extra"] = json!("yes");
    let (status, reply) = api.put(&item, &main_update).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["metadata"]["labels"]["extra"], "yes", "{reply}");
    assert_eq!(reply["status"]["phase"], "Running", "the main resource ignores status: {reply}");
}

#[tokio::test]
async fn deployment_status_subresource_ignores_spec_and_main_resource_ignores_status() {
    let (_cluster, api) = start().await;
    let item = DEPLOYMENTS.item("default", "web");
    let created = api.create(&DEPLOYMENTS.collection("default"), &DEPLOYMENTS.sample("default", "web")).await;

    let mut status_update = created.clone();
    status_update["spec"]["replicas"] = json!(5);
    status_update["status"] = json!({ "replicas": 1, "readyReplicas": 1, "observedGeneration": 1 });
    let (status, reply) = api.put(&format!("{item}/status"), &status_update).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["spec"]["replicas"], 1, "status PUT ignores spec: {reply}");
    assert_eq!(reply["status"]["readyReplicas"], 1, "{reply}");
    assert_eq!(reply["metadata"]["generation"], 1, "{reply}");

    let mut main_update = reply.clone();
    main_update["status"]["readyReplicas"] = json!(7);
    let (status, reply) = api.put(&item, &main_update).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["status"]["readyReplicas"], 1, "the main resource ignores status: {reply}");
}

#[tokio::test]
async fn node_status_subresource_writes_capacity_and_conditions() {
    let (_cluster, api) = start().await;
    let item = NODES.item("", "n1");
    let created = api.create(&NODES.collection(""), &NODES.sample("", "n1")).await;
    let mut update = created.clone();
    update["status"] = json!({
        "capacity": { "cpu": "4", "memory": "8Gi", "pods": "110" },
        "conditions": [{ "type": "Ready", "status": "True", "reason": "KubeletReady" }]
    });
    update["spec"]["unschedulable"] = json!(true);
    let (status, reply) = api.put(&format!("{item}/status"), &update).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["status"]["capacity"]["cpu"], "4", "{reply}");
    assert_eq!(reply["status"]["conditions"][0]["type"], "Ready", "{reply}");
    assert!(reply["spec"]["unschedulable"].is_null() || reply["spec"]["unschedulable"] == false, "{reply}");

    let mut main_update = reply.clone();
    main_update["status"]["capacity"]["cpu"] = json!("64");
    main_update["spec"]["unschedulable"] = json!(true);
    let (status, reply) = api.put(&item, &main_update).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["spec"]["unschedulable"], true, "{reply}");
    assert_eq!(reply["status"]["capacity"]["cpu"], "4", "the main resource ignores status: {reply}");
}

#[tokio::test]
async fn generation_increments_on_spec_changes_only() {
    let (_cluster, api) = start().await;
    let item = DEPLOYMENTS.item("default", "web");
    let created = api.create(&DEPLOYMENTS.collection("default"), &DEPLOYMENTS.sample("default", "web")).await;
    assert_eq!(created["metadata"]["generation"], 1);

    let mut relabelled = created.clone();
    relabelled["metadata"]["labels"] = json!({ "team": "a" });
    relabelled["metadata"]["annotations"] = json!({ "note": "metadata only" });
    let (status, relabelled) = api.put(&item, &relabelled).await;
    assert_eq!(status, StatusCode::OK, "{relabelled}");
    assert_eq!(relabelled["metadata"]["generation"], 1, "metadata changes keep the generation: {relabelled}");

    let mut scaled = relabelled.clone();
    scaled["spec"]["replicas"] = json!(2);
    let (status, scaled) = api.put(&item, &scaled).await;
    assert_eq!(status, StatusCode::OK, "{scaled}");
    assert_eq!(scaled["metadata"]["generation"], 2, "a spec change bumps the generation: {scaled}");

    let (status, unchanged) = api.put(&item, &scaled).await;
    assert_eq!(status, StatusCode::OK, "{unchanged}");
    assert_eq!(unchanged["metadata"]["generation"], 2, "a no-op update keeps the generation: {unchanged}");

    let patch = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "app", "image": "registry.example/app:2.0" }] } } } });
    let (status, patched) = api.patch(&item, "application/strategic-merge-patch+json", &patch).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["metadata"]["generation"], 3, "a patched spec bumps the generation: {patched}");
}

async fn exercise_scale(resource: Resource) {
    let (_cluster, api) = start().await;
    let item = resource.item("default", "scaled");
    api.create(&resource.collection("default"), &resource.sample("default", "scaled")).await;
    let scale_path = format!("{item}/scale");

    let scale = api.get_ok(&scale_path).await;
    assert_eq!(scale["kind"], "Scale", "{scale}");
    assert_eq!(scale["apiVersion"], "autoscaling/v1", "{scale}");
    assert_eq!(scale["metadata"]["name"], "scaled", "{scale}");
    assert_eq!(scale["metadata"]["namespace"], "default", "{scale}");
    assert_eq!(scale["spec"]["replicas"], 1, "{scale}");
    assert_eq!(scale["status"]["selector"], "app=scaled", "{scale}");

    let (status, reply) =
        api.patch(&scale_path, "application/merge-patch+json", &json!({ "spec": { "replicas": 3 } })).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["kind"], "Scale", "{reply}");
    assert_eq!(reply["apiVersion"], "autoscaling/v1", "{reply}");
    assert_eq!(reply["spec"]["replicas"], 3, "{reply}");
    let object = api.get_ok(&item).await;
    assert_eq!(object["spec"]["replicas"], 3, "{object}");
    assert_eq!(object["metadata"]["generation"], 2, "scaling is a spec change: {object}");

    // PUT of a Scale honours its resourceVersion precondition.
    let mut stale = scale.clone();
    stale["spec"]["replicas"] = json!(9);
    let (status, reply) = api.put(&scale_path, &stale).await;
    assert_status(status, &reply, 409, "Conflict", "PUT scale with the pre-patch resourceVersion");
    let mut fresh = api.get_ok(&scale_path).await;
    assert_eq!(resource_version(&fresh), resource_version(&object), "scale RV is the object's RV");
    fresh["spec"]["replicas"] = json!(4);
    let (status, reply) = api.put(&scale_path, &fresh).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(api.get_ok(&item).await["spec"]["replicas"], 4);
}

#[tokio::test]
async fn deployment_scale_subresource_reads_and_writes_replicas() {
    exercise_scale(DEPLOYMENTS).await;
}

#[tokio::test]
async fn replica_set_scale_subresource_reads_and_writes_replicas() {
    exercise_scale(REPLICA_SETS).await;
}

#[tokio::test]
async fn binding_sets_the_node_name_once() {
    let (_cluster, api) = start().await;
    let item = PODS.item("default", "x");
    api.create(&PODS.collection("default"), &pod("default", "x", json!({}))).await;

    let (status, reply) = api.post(&format!("{item}/binding"), &binding("x", "n1")).await;
    assert_eq!(status, StatusCode::CREATED, "binding replies 201: {reply}");
    let bound = api.get_ok(&item).await;
    assert_eq!(bound["spec"]["nodeName"], "n1", "{bound}");

    let (status, reply) = api.post(&format!("{item}/binding"), &binding("x", "n2")).await;
    assert_status(status, &reply, 409, "Conflict", "binding an already bound pod");
    assert_eq!(api.get_ok(&item).await["spec"]["nodeName"], "n1");

    let (status, reply) =
        api.post(&format!("{}/binding", PODS.item("default", "ghost")), &binding("ghost", "n1")).await;
    assert_status(status, &reply, 404, "NotFound", "binding a pod that does not exist");
}
