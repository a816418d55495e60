//! What clients discover and render: Table output for `kubectl get`, discovery documents,
//! OpenAPI v3, and the health and metrics endpoints.

use rkube_tests::resources::{ALL, PODS, binding, pod};
use rkube_tests::{Api, Cluster, Method, StatusCode};
use serde_json::{Value, json};

/// The Accept header kubectl sends for `kubectl get`.
const TABLE_ACCEPT: &str =
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

async fn start() -> (Cluster, Api) {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    (cluster, api)
}

async fn get_table(api: &Api, path: &str) -> Value {
    let reply = api.send(Method::GET, path, &[("accept", TABLE_ACCEPT)], None).await;
    assert_eq!(reply.status, StatusCode::OK, "GET {path} as Table: {}", reply.body);
    let table = reply.body;
    assert_eq!(table["kind"], "Table", "{table}");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1", "{table}");
    table
}

fn column_names(table: &Value) -> Vec<&str> {
    table["columnDefinitions"]
        .as_array()
        .unwrap_or_else(|| panic!("columnDefinitions: {table}"))
        .iter()
        .map(|column| column["name"].as_str().unwrap_or(""))
        .collect()
}

#[tokio::test]
async fn pods_render_as_a_table_with_kubectls_columns() {
    let (_cluster, api) = start().await;
    api.create(&PODS.collection("default"), &pod("default", "web-1", json!({ "app": "web" }))).await;
    let (status, reply) =
        api.post(&format!("{}/binding", PODS.item("default", "web-1")), &binding("web-1", "n1")).await;
    assert!(status.is_success(), "{reply}");

    let table = get_table(&api, &PODS.collection("default")).await;
    let columns = column_names(&table);
    assert_eq!(columns[..5], ["Name", "Ready", "Status", "Restarts", "Age"], "{table}");
    assert!(columns.contains(&"IP") && columns.contains(&"Node"), "wide columns: {columns:?}");
    for column in table["columnDefinitions"].as_array().expect("columns") {
        assert!(column["type"].is_string() && column["priority"].is_number(), "column definition: {column}");
    }
    assert!(table["metadata"]["resourceVersion"].is_string(), "{table}");
    let rows = table["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{table}");
    let cells = rows[0]["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), columns.len(), "one cell per column: {table}");
    assert_eq!(cells[0], "web-1");
    assert_eq!(cells[1], "0/1", "ready containers / containers");
    assert_eq!(cells[2], "Pending");
    assert!(cells[3] == 0 || cells[3] == "0", "restarts: {}", cells[3]);
    let node = columns.iter().position(|name| *name == "Node").expect("Node column");
    assert_eq!(cells[node], "n1", "{table}");
    let object = &rows[0]["object"];
    assert_eq!(object["metadata"]["name"], "web-1", "rows carry object metadata: {table}");
    assert_eq!(object["metadata"]["namespace"], "default", "{table}");
    assert!(object["metadata"]["creationTimestamp"].is_string(), "{table}");

    let single = get_table(&api, &PODS.item("default", "web-1")).await;
    assert_eq!(single["rows"].as_array().map(Vec::len), Some(1), "{single}");
    assert_eq!(single["rows"][0]["cells"][0], "web-1");

    let plain = api.get_ok(&PODS.collection("default")).await;
    assert_eq!(plain["kind"], "PodList", "without the Table Accept header the list is a PodList");
}

#[tokio::test]
async fn every_resource_renders_as_a_table_with_a_name_column() {
    let (_cluster, api) = start().await;
    for resource in ALL {
        let name = format!("table-{}", resource.plural);
        api.create(&resource.collection("default"), &resource.sample("default", &name)).await;
        let table = get_table(&api, &resource.collection("default")).await;
        // Most kinds put Name first; events (like kubectl) show it last, at priority 1.
        let column = column_names(&table)
            .iter()
            .position(|column| *column == "Name")
            .unwrap_or_else(|| panic!("{}: no Name column: {table}", resource.kind));
        let found = table["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .any(|row| row["cells"][column] == name.as_str() && row["object"]["metadata"]["name"] == name.as_str());
        assert!(found, "{}: row for {name} missing: {table}", resource.kind);
    }
}

fn find_resource<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("resources: {list}"))
        .iter()
        .find(|resource| resource["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing from {}: {list}", list["groupVersion"]))
}

fn assert_crud_verbs(resource: &Value) {
    let verbs: Vec<&str> = resource["verbs"].as_array().expect("verbs").iter().filter_map(Value::as_str).collect();
    for verb in ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"] {
        assert!(verbs.contains(&verb), "{verb} missing: {resource}");
    }
}

#[tokio::test]
async fn discovery_documents_list_every_group_version_and_resource() {
    let (_cluster, api) = start().await;
    let versions = api.get_ok("/api").await;
    assert_eq!(versions["kind"], "APIVersions", "{versions}");
    assert_eq!(versions["versions"], json!(["v1"]), "{versions}");

    let core = api.get_ok("/api/v1").await;
    assert_eq!(core["kind"], "APIResourceList", "{core}");
    assert_eq!(core["groupVersion"], "v1", "{core}");
    let expectations = [
        ("pods", "Pod", true, "po"),
        ("nodes", "Node", false, "no"),
        ("namespaces", "Namespace", false, "ns"),
        ("services", "Service", true, "svc"),
        ("endpoints", "Endpoints", true, "ep"),
        ("events", "Event", true, "ev"),
        ("configmaps", "ConfigMap", true, "cm"),
    ];
    for (name, kind, namespaced, short_name) in expectations {
        let resource = find_resource(&core, name);
        assert_eq!(resource["kind"], kind, "{resource}");
        assert_eq!(resource["namespaced"], namespaced, "{resource}");
        assert!(
            resource["shortNames"].as_array().is_some_and(|names| names.contains(&json!(short_name))),
            "{resource}"
        );
        assert!(resource["singularName"].is_string(), "{resource}");
        assert_crud_verbs(resource);
    }
    for subresource in ["pods/status", "pods/binding", "nodes/status"] {
        find_resource(&core, subresource);
    }
    let binding = find_resource(&core, "pods/binding");
    assert_eq!(binding["verbs"], json!(["create"]), "{binding}");

    let groups = api.get_ok("/apis").await;
    assert_eq!(groups["kind"], "APIGroupList", "{groups}");
    for (group, version) in [("apps", "apps/v1"), ("coordination.k8s.io", "coordination.k8s.io/v1")] {
        let entry = groups["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .find(|entry| entry["name"] == group)
            .unwrap_or_else(|| panic!("group {group} missing: {groups}"));
        assert_eq!(entry["preferredVersion"]["groupVersion"], version, "{entry}");
        assert_eq!(entry["versions"][0]["groupVersion"], version, "{entry}");
    }

    let apps = api.get_ok("/apis/apps/v1").await;
    assert_eq!(apps["groupVersion"], "apps/v1", "{apps}");
    for (name, kind, short_name) in [("deployments", "Deployment", "deploy"), ("replicasets", "ReplicaSet", "rs")] {
        let resource = find_resource(&apps, name);
        assert_eq!(resource["kind"], kind);
        assert_eq!(resource["namespaced"], true);
        assert!(
            resource["shortNames"].as_array().is_some_and(|names| names.contains(&json!(short_name))),
            "{resource}"
        );
        assert_crud_verbs(resource);
    }
    for subresource in ["deployments/status", "deployments/scale", "replicasets/status", "replicasets/scale"] {
        find_resource(&apps, subresource);
    }
    let scale = find_resource(&apps, "deployments/scale");
    assert_eq!(scale["kind"], "Scale", "{scale}");
    assert_eq!(scale["group"], "autoscaling", "{scale}");

    let coordination = api.get_ok("/apis/coordination.k8s.io/v1").await;
    assert_crud_verbs(find_resource(&coordination, "leases"));

    let version = api.get_ok("/version").await;
    assert!(version["major"].is_string() && version["minor"].is_string(), "{version}");
    assert!(version["gitVersion"].as_str().is_some_and(|text| text.starts_with('v')), "{version}");
}

/// A path item's parameter names, from the path level and the operation, resolving `$ref`s.
fn parameter_names(document: &Value, path_item: &Value, operation: &Value) -> Vec<String> {
    let mut names = Vec::new();
    for parameters in [&path_item["parameters"], &operation["parameters"]] {
        for parameter in parameters.as_array().into_iter().flatten() {
            let resolved = match parameter["$ref"].as_str() {
                Some(reference) => {
                    let pointer = reference.trim_start_matches('#');
                    document.pointer(pointer).unwrap_or_else(|| panic!("dangling $ref {reference}"))
                }
                None => parameter,
            };
            names.extend(resolved["name"].as_str().map(str::to_string));
        }
    }
    names
}

#[tokio::test]
async fn openapi_v3_documents_patch_operations_with_their_kind_and_field_validation() {
    let (_cluster, api) = start().await;
    let index = api.get_ok("/openapi/v3").await;
    let cases = [
        (
            "api/v1",
            "/api/v1/namespaces/{namespace}/pods/{name}",
            json!({ "group": "", "version": "v1", "kind": "Pod" }),
        ),
        (
            "apis/apps/v1",
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
            json!({ "group": "apps", "version": "v1", "kind": "Deployment" }),
        ),
        (
            "apis/coordination.k8s.io/v1",
            "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}",
            json!({ "group": "coordination.k8s.io", "version": "v1", "kind": "Lease" }),
        ),
    ];
    for (group_version, path, kind) in cases {
        let url = index["paths"][group_version]["serverRelativeURL"]
            .as_str()
            .unwrap_or_else(|| panic!("{group_version} missing from /openapi/v3: {index}"));
        assert!(url.starts_with(&format!("/openapi/v3/{group_version}")), "{url}");
        let document = api.get_ok(url).await;
        assert!(document["openapi"].as_str().is_some_and(|version| version.starts_with("3.")), "{group_version}");
        let path_item = &document["paths"][path];
        let patch = &path_item["patch"];
        assert!(patch.is_object(), "{path} has no patch operation");
        assert_eq!(patch["x-kubernetes-group-version-kind"], kind, "{path}");
        let names = parameter_names(&document, path_item, patch);
        assert!(names.iter().any(|name| name == "fieldValidation"), "{path} patch parameters {names:?}");
        assert!(names.iter().any(|name| name == "fieldManager"), "{path} patch parameters {names:?}");
    }
    let core = api.get_ok(index["paths"]["api/v1"]["serverRelativeURL"].as_str().expect("url")).await;
    assert!(core["components"]["schemas"]["io.k8s.api.core.v1.Pod"].is_object(), "Pod schema for kubectl explain");
}

#[tokio::test]
async fn health_endpoints_answer_ok_and_metrics_are_prometheus_text() {
    let (_cluster, api) = start().await;
    for path in ["/healthz", "/livez", "/readyz"] {
        let reply = api.send(Method::GET, path, &[], None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.body, "ok", "{path}");
    }
    api.get_ok(&PODS.collection("default")).await;
    let reply = api.send(Method::GET, "/metrics", &[], None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = reply.body.as_str().unwrap_or_default();
    assert!(text.contains("# TYPE "), "Prometheus exposition format: {text}");
}
