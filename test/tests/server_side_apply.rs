//! Server-side apply and field ownership against a real apiserver and etcd, checked against
//! the results Kubernetes documents (reference/using-api/server-side-apply): every write
//! records its manager in `metadata.managedFields`; an apply sets exactly its fields and
//! removes those its manager no longer applies; another manager's field is a 409 conflict
//! naming field and manager unless forced or applied with the same value; an update takes
//! ownership; the replicas hand-over to a controller; list types (atomic, set, map) for
//! built-in kinds and for a CRD's `x-kubernetes-list-type`.

use std::time::Duration;

use reqwest::Method;
use rkube_tests::server_side_apply::{apply, apply_ok, entry, managers, owns};
use rkube_tests::{Api, Cluster, StatusCode, assert_status, eventually};
use serde_json::{Value, json};

const CONFIG_MAPS: &str = "/api/v1/namespaces/default/configmaps";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

async fn start() -> (Cluster, Api) {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    (cluster, api)
}

fn config_map(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "default"}, "data": data})
}

#[tokio::test]
async fn every_write_records_its_manager_operation_and_fields() {
    let (_cluster, api) = start().await;
    let created = api.create(&format!("{CONFIG_MAPS}?fieldManager=creator"), &config_map(json!({"a": "1"}))).await;
    let first = entry(&created, "creator", "Update").unwrap_or_else(|| panic!("no creator entry: {created}"));
    assert_eq!((first["apiVersion"].as_str(), first["fieldsType"].as_str()), (Some("v1"), Some("FieldsV1")), "{first}");
    assert!(first["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{first}");
    assert!(owns(&created, "creator", "Update", &["f:data", "f:a"]), "{created}");

    // Without fieldManager the client's User-Agent names it, up to its first '/'.
    let reply = api
        .send(
            Method::PATCH,
            &format!("{CONFIG_MAPS}/cm"),
            &[("Content-Type", "application/merge-patch+json"), ("User-Agent", "mytool/1.2 (linux)")],
            Some(br#"{"data":{"b":"2"}}"#.to_vec()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(owns(&reply.body, "mytool", "Update", &["f:data", "f:b"]), "{}", reply.body);
    assert!(!owns(&reply.body, "mytool", "Update", &["f:data", "f:a"]), "only what it changed: {}", reply.body);
    assert!(owns(&reply.body, "creator", "Update", &["f:data", "f:a"]), "{}", reply.body);

    // A write through the status subresource is recorded with its subresource.
    let deployment =
        api.create(&format!("{DEPLOYMENTS}?fieldManager=creator"), &deployment(json!({"replicas": 1}))).await;
    let mut status = deployment.clone();
    status["status"] = json!({"replicas": 1, "observedGeneration": 1});
    let (code, reply) = api.put(&format!("{DEPLOYMENTS}/web/status?fieldManager=controller"), &status).await;
    assert_eq!(code, StatusCode::OK, "{reply}");
    let status_entry = entry(&reply, "controller", "Update").unwrap_or_else(|| panic!("{reply}"));
    assert_eq!(status_entry["subresource"], "status", "{status_entry}");
    assert!(owns(&reply, "controller", "Update", &["f:status", "f:replicas"]), "{reply}");

    // A no-op write changes nothing; a client strips the record by sending an empty list.
    let mut reset = api.get_ok(&format!("{CONFIG_MAPS}/cm")).await;
    let before = reset.clone();
    let (code, same) = api.put(&format!("{CONFIG_MAPS}/cm?fieldManager=creator"), &before).await;
    assert_eq!(
        (code, &same["metadata"]["resourceVersion"]),
        (StatusCode::OK, &before["metadata"]["resourceVersion"]),
        "{same}"
    );
    reset["metadata"]["managedFields"] = json!([]);
    reset["data"]["c"] = json!("3");
    let (code, reply) = api.put(&format!("{CONFIG_MAPS}/cm?fieldManager=resetter"), &reset).await;
    assert_eq!(code, StatusCode::OK, "{reply}");
    assert!(managers(&reply).is_empty(), "stripped, as the Kubernetes documentation says: {reply}");
}

#[tokio::test]
async fn apply_sets_exactly_the_applied_fields_and_removes_what_its_manager_drops() {
    let (_cluster, api) = start().await;
    let path = format!("{CONFIG_MAPS}/cm");
    let created = apply_ok(&api, &path, "m1", &config_map(json!({"a": "1", "b": "2"}))).await;
    assert_eq!(created["data"], json!({"a": "1", "b": "2"}));
    assert_eq!(managers(&created), ["m1/Apply"]);
    let fields = &entry(&created, "m1", "Apply").expect("entry")["fieldsV1"];
    assert_eq!(fields["f:data"], json!({"f:a": {}, "f:b": {}}), "{fields}");

    let reduced = apply_ok(&api, &path, "m1", &config_map(json!({"a": "1"}))).await;
    assert_eq!(reduced["data"], json!({"a": "1"}), "a field the manager no longer applies is removed");

    // Another writer's field, which m1 never applied, is not m1's to remove: it stays when m1
    // applies again. (A value m1 shares with another applier and then drops:
    // custom_resource_api.rs, `a_shared_field_dropped_by_one_applier_stays_with_the_other`.)
    let (code, reply) = api
        .patch(&format!("{path}?fieldManager=editor"), "application/merge-patch+json", &json!({"data": {"e": "x"}}))
        .await;
    assert_eq!(code, StatusCode::OK, "{reply}");
    let kept = apply_ok(&api, &path, "m1", &config_map(json!({"a": "1"}))).await;
    assert_eq!(kept["data"], json!({"a": "1", "e": "x"}), "{kept}");

    let mut with_fields = config_map(json!({"a": "1"}));
    with_fields["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Apply"}]);
    let (code, reply) = apply(&api, &path, "m1", false, &with_fields).await;
    assert_status(code, &reply, 400, "BadRequest", "managedFields in an applied configuration");
}

#[tokio::test]
async fn conflicts_name_field_and_manager_unless_the_value_is_shared_or_forced() {
    let (_cluster, api) = start().await;
    let path = format!("{CONFIG_MAPS}/cm");
    apply_ok(&api, &path, "m1", &config_map(json!({"a": "1"}))).await;

    let (code, reply) = apply(&api, &path, "m2", false, &config_map(json!({"a": "2"}))).await;
    assert_status(code, &reply, 409, "Conflict", "applying another manager's field with another value");
    assert_eq!(reply["message"], "Apply failed with 1 conflict: conflict with \"m1\": .data.a", "{reply}");
    let cause = &reply["details"]["causes"][0];
    assert_eq!(
        (cause["reason"].as_str(), cause["field"].as_str()),
        (Some("FieldManagerConflict"), Some(".data.a")),
        "{reply}"
    );
    assert_eq!(api.get_ok(&path).await["data"]["a"], "1", "nothing was written");

    // The same value is shared ownership, no conflict.
    let shared = apply_ok(&api, &path, "m2", &config_map(json!({"a": "1"}))).await;
    assert!(
        owns(&shared, "m1", "Apply", &["f:data", "f:a"]) && owns(&shared, "m2", "Apply", &["f:data", "f:a"]),
        "{shared}"
    );

    // force takes the field: the other manager loses it.
    let (code, forced) = apply(&api, &path, "m2", true, &config_map(json!({"a": "3"}))).await;
    assert_eq!(code, StatusCode::OK, "{forced}");
    assert_eq!(forced["data"]["a"], "3");
    assert!(!owns(&forced, "m1", "Apply", &["f:data", "f:a"]), "{forced}");
    // m1 no longer owns it, so dropping it from m1's configuration leaves it.
    let after = apply_ok(&api, &path, "m1", &config_map(json!({"z": "9"}))).await;
    assert_eq!(after["data"], json!({"a": "3", "z": "9"}), "{after}");
}

#[tokio::test]
async fn an_update_takes_ownership_and_the_appliers_next_change_conflicts() {
    let (_cluster, api) = start().await;
    let path = format!("{CONFIG_MAPS}/cm");
    apply_ok(&api, &path, "m1", &config_map(json!({"a": "1"}))).await;
    let (code, reply) = api
        .patch(&format!("{path}?fieldManager=editor"), "application/merge-patch+json", &json!({"data": {"a": "5"}}))
        .await;
    assert_eq!(code, StatusCode::OK, "an update never conflicts: {reply}");
    assert!(
        owns(&reply, "editor", "Update", &["f:data", "f:a"]) && !owns(&reply, "m1", "Apply", &["f:data", "f:a"]),
        "{reply}"
    );
    let (code, reply) = apply(&api, &path, "m1", false, &config_map(json!({"a": "1"}))).await;
    assert_status(code, &reply, 409, "Conflict", "applying a field an update took");
    assert_eq!(reply["message"], "Apply failed with 1 conflict: conflict with \"editor\" using v1: .data.a", "{reply}");
}

fn deployment(spec_extra: Value) -> Value {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    });
    for (k, v) in spec_extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

#[tokio::test]
async fn replicas_handed_over_to_a_controller_stay_when_the_applier_drops_them() {
    let (_cluster, api) = start().await;
    let path = format!("{DEPLOYMENTS}/web");
    apply_ok(&api, &path, "user", &deployment(json!({"replicas": 3}))).await;
    // An autoscaler scales through the scale subresource.
    let (code, reply) = api
        .patch(
            &format!("{path}/scale?fieldManager=autoscaler"),
            "application/merge-patch+json",
            &json!({"spec": {"replicas": 5}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{reply}");
    let scaled = api.get_ok(&path).await;
    assert!(owns(&scaled, "autoscaler", "Update", &["f:spec", "f:replicas"]), "{scaled}");
    assert_eq!(entry(&scaled, "autoscaler", "Update").expect("entry")["subresource"], "scale");
    let (code, reply) = apply(&api, &path, "user", false, &deployment(json!({"replicas": 3}))).await;
    assert_status(code, &reply, 409, "Conflict", "re-applying replicas the autoscaler owns");
    // The documented hand-over: the user stops applying replicas; the value stays.
    let handed = apply_ok(&api, &path, "user", &deployment(json!({}))).await;
    assert_eq!(handed["spec"]["replicas"], 5, "{handed}");
}

#[tokio::test]
async fn built_in_lists_merge_by_their_kubernetes_list_types() {
    let (_cluster, api) = start().await;
    let path = format!("{DEPLOYMENTS}/web");
    apply_ok(&api, &path, "m1", &deployment(json!({}))).await;
    // containers: a map list keyed by name; another manager adds its own container.
    let mut side = deployment(json!({}));
    side["spec"]["template"]["spec"]["containers"] = json!([{"name": "side", "image": "side:1"}]);
    let both = apply_ok(&api, &path, "m2", &side).await;
    let names: Vec<&str> = both["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["app", "side"], "{both}");
    // m1 drops its container: it goes, m2's stays.
    let mut without = deployment(json!({}));
    without["spec"]["template"]["spec"]["containers"] = json!([]);
    let after = apply_ok(&api, &path, "m1", &without).await;
    let names: Vec<&str> = after["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["side"], "{after}");

    // metadata.finalizers: a set; each manager's values are its own.
    let cm = format!("{CONFIG_MAPS}/cm");
    let mut first = config_map(json!({}));
    first["metadata"]["finalizers"] = json!(["example.com/a"]);
    apply_ok(&api, &cm, "m1", &first).await;
    let mut second = config_map(json!({}));
    second["metadata"]["finalizers"] = json!(["example.com/b"]);
    let union = apply_ok(&api, &cm, "m2", &second).await;
    assert_eq!(union["metadata"]["finalizers"], json!(["example.com/a", "example.com/b"]), "{union}");
    let dropped = apply_ok(&api, &cm, "m1", &config_map(json!({}))).await;
    assert_eq!(dropped["metadata"]["finalizers"], json!(["example.com/b"]), "{dropped}");

    // A container's args: an atomic list, owned as a whole: another value conflicts.
    let mut args = deployment(json!({}));
    args["spec"]["template"]["spec"]["containers"] = json!([{"name": "side", "image": "side:1", "args": ["x"]}]);
    apply_ok(&api, &path, "m2", &args).await;
    let mut other_args = args.clone();
    other_args["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["x", "y"]);
    let (code, reply) = apply(&api, &path, "m3", false, &other_args).await;
    assert_status(code, &reply, 409, "Conflict", "another value of an atomic list");
    assert!(reply["message"].as_str().is_some_and(|m| m.contains(".args")), "{reply}");
}

#[tokio::test]
async fn a_crds_list_types_decide_how_custom_objects_merge() {
    let (_cluster, api) = start().await;
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "boxes.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "boxes", "kind": "Box"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object", "properties": {
                    "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                    "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                              "items": {"type": "object", "required": ["name"],
                                        "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
                    "order": {"type": "array", "items": {"type": "string"}}
                }}}}}}]}
    });
    api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", &crd).await;
    let path = "/apis/example.com/v1/namespaces/default/boxes/b";
    let object =
        |spec: Value| json!({"apiVersion": "example.com/v1", "kind": "Box", "metadata": {"name": "b"}, "spec": spec});
    eventually(Duration::from_secs(20), "boxes to be served", || async {
        let (code, _) = api.get("/apis/example.com/v1/namespaces/default/boxes").await;
        (code == StatusCode::OK).then_some(())
    })
    .await;
    apply_ok(
        &api,
        path,
        "m1",
        &object(json!({"tags": ["a"], "ports": [{"name": "http", "port": 80}], "order": ["x"]})),
    )
    .await;
    let merged =
        apply_ok(&api, path, "m2", &object(json!({"tags": ["b"], "ports": [{"name": "https", "port": 443}]}))).await;
    assert_eq!(merged["spec"]["tags"], json!(["a", "b"]), "set: union {merged}");
    assert_eq!(merged["spec"]["ports"].as_array().map(Vec::len), Some(2), "map: merged by key {merged}");
    let (code, reply) = apply(&api, path, "m2", false, &object(json!({"order": ["y"]}))).await;
    assert_status(code, &reply, 409, "Conflict", "an atomic list owned by m1");
    let dropped = apply_ok(&api, path, "m1", &object(json!({"order": ["x"]}))).await;
    assert_eq!(dropped["spec"]["tags"], json!(["b"]), "{dropped}");
    assert_eq!(dropped["spec"]["ports"], json!([{"name": "https", "port": 443}]), "{dropped}");
}
