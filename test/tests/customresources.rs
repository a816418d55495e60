//! CustomResourceDefinitions against a real apiserver and etcd: a CRD becomes a served
//! resource (routes, discovery, OpenAPI, watch, paging), its schema prunes, defaults and
//! validates objects (each rule kind, CEL included), `status` and `scale` subresources,
//! printer columns in Tables, several versions over one storage version, names that clash,
//! and deleting a CRD deletes its objects and then its routes.

use std::time::Duration;

use reqwest::Method;
use rkube_tests::custom_resources::{CRDS, causes, condition, establish};
use rkube_tests::eventually;
use rkube_tests::{Api, Cluster, StatusCode, assert_status};
use serde_json::{Value, json};

const WIDGETS: &str = "/apis/example.com/v1/namespaces/default/widgets";
const WAIT: Duration = Duration::from_secs(20);

async fn start() -> (Cluster, Api) {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    (cluster, api)
}

/// The schema of the test kind: one rule of each kind the issue names.
fn widget_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["size"],
                "x-kubernetes-validations": [
                    {"rule": "self.size <= self.maxSize", "message": "size may not exceed maxSize"},
                    {"rule": "self.size >= oldSelf.size || self.shrinkable", "message": "size may not shrink"}
                ],
                "properties": {
                    "size": {"type": "integer", "minimum": 1, "maximum": 100},
                    "maxSize": {"type": "integer", "default": 10},
                    "shrinkable": {"type": "boolean", "default": false},
                    "color": {"type": "string", "enum": ["red", "green", "blue"], "default": "red"},
                    "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 12},
                    "port": {"x-kubernetes-int-or-string": true},
                    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3,
                             "x-kubernetes-list-type": "set"},
                    "ports": {"type": "array", "x-kubernetes-list-type": "map",
                              "x-kubernetes-list-map-keys": ["name"],
                              "items": {"type": "object", "required": ["name"], "properties": {
                                  "name": {"type": "string"}, "port": {"type": "integer"}}}},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                }
            },
            "status": {
                "type": "object",
                "properties": {"replicas": {"type": "integer"}, "selector": {"type": "string"},
                               "phase": {"type": "string"}}
            }
        }
    })
}

fn widget_crd(versions: Value) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"],
                      "categories": ["all"]},
            "versions": versions,
        }
    })
}

fn v1(storage: bool) -> Value {
    json!({
        "name": "v1", "served": true, "storage": storage,
        "schema": {"openAPIV3Schema": widget_schema()},
        "subresources": {
            "status": {},
            "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.replicas",
                      "labelSelectorPath": ".status.selector"}
        },
        "additionalPrinterColumns": [
            {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
            {"name": "Color", "type": "string", "jsonPath": ".spec.color", "priority": 1},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
        ]
    })
}

fn widget(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget",
           "metadata": {"name": name, "labels": {"app": "demo"}}, "spec": spec})
}

#[tokio::test]
async fn an_established_crd_is_served_like_a_built_in_kind() {
    let (_cluster, api) = start().await;
    let crd = establish(&api, &widget_crd(json!([v1(true)]))).await;
    assert_eq!(condition(&crd, "NamesAccepted").as_deref(), Some("True"), "{crd}");
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "Widget", "{crd}");
    assert_eq!(crd["status"]["storedVersions"], json!(["v1"]), "{crd}");

    // Discovery, legacy and aggregated.
    let list = api.get_ok("/apis/example.com/v1").await;
    let names: Vec<&str> =
        list["resources"].as_array().expect("resources").iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["widgets", "widgets/status", "widgets/scale"], "{list}");
    assert_eq!(list["resources"][0]["shortNames"], json!(["wd"]));
    let groups = api.get_ok("/apis").await;
    assert!(groups["groups"].as_array().expect("groups").iter().any(|g| g["name"] == "example.com"), "{groups}");
    let aggregated = api
        .send(
            Method::GET,
            "/apis",
            &[("Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")],
            None,
        )
        .await;
    let group = aggregated.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|g| g["metadata"]["name"] == "example.com")
        .cloned();
    let group = group.unwrap_or_else(|| panic!("example.com in aggregated discovery: {}", aggregated.body));
    assert_eq!(group["versions"][0]["resources"][0]["resource"], "widgets", "{group}");

    // OpenAPI: kubectl explain finds the kind by its group-version-kind.
    let doc = api.get_ok("/openapi/v3/apis/example.com/v1").await;
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let widget_schema = schemas
        .values()
        .find(|s| s["x-kubernetes-group-version-kind"][0]["kind"] == "Widget")
        .unwrap_or_else(|| panic!("no Widget schema: {:?}", schemas.keys().collect::<Vec<_>>()));
    assert_eq!(widget_schema["properties"]["spec"]["properties"]["size"]["type"], "integer");

    // CRUD, selectors, paging, watch.
    let mut watch = api.watch(&format!("{WIDGETS}?watch=true")).await;
    let created = api.create(WIDGETS, &widget("alpha", json!({"size": 2}))).await;
    assert_eq!(created["metadata"]["generation"], 1);
    let event = watch.expect_non_bookmark(WAIT).await;
    assert_eq!((event["type"].as_str(), event["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some("alpha")));
    api.create(WIDGETS, &widget("beta", json!({"size": 3}))).await;
    let mut other = widget("gamma", json!({"size": 4}));
    other["metadata"]["labels"]["app"] = json!("other");
    api.create(WIDGETS, &other).await;
    let selected = api.get_ok(&format!("{WIDGETS}?labelSelector=app%3Ddemo")).await;
    assert_eq!(selected["items"].as_array().map(Vec::len), Some(2), "{selected}");
    let by_name = api.get_ok(&format!("{WIDGETS}?fieldSelector=metadata.name%3Dbeta")).await;
    assert_eq!(by_name["items"][0]["metadata"]["name"], "beta");
    let page = api.get_ok(&format!("{WIDGETS}?limit=2")).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    let token = page["metadata"]["continue"].as_str().expect("a continue token").to_string();
    let rest = api.get_ok(&format!("{WIDGETS}?limit=2&continue={token}")).await;
    assert_eq!(rest["items"][0]["metadata"]["name"], "gamma");
    let all = api.get_ok("/apis/example.com/v1/widgets").await;
    assert_eq!(all["kind"], "WidgetList");
    assert_eq!(all["items"].as_array().map(Vec::len), Some(3));

    let mut update = created.clone();
    update["spec"]["size"] = json!(5);
    let (status, updated) = api.put(&format!("{WIDGETS}/alpha"), &update).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["metadata"]["generation"], 2, "a spec change counts: {updated}");
    let (status, patched) = api
        .patch(
            &format!("{WIDGETS}/alpha"),
            "application/merge-patch+json",
            &json!({"metadata": {"labels": {"x": "y"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["metadata"]["generation"], 2, "a label is not the spec: {patched}");
    let (status, refused) = api
        .patch(&format!("{WIDGETS}/alpha"), "application/strategic-merge-patch+json", &json!({"spec": {"size": 6}}))
        .await;
    assert_status(status, &refused, 415, "UnsupportedMediaType", "a strategic merge patch of a custom resource");
    let (status, body) = api.delete(&format!("{WIDGETS}/alpha")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api.get(&format!("{WIDGETS}/alpha")).await;
    assert_status(status, &body, 404, "NotFound", "a deleted widget");
}

#[tokio::test]
async fn the_schema_prunes_defaults_and_validates_every_rule_kind() {
    let (_cluster, api) = start().await;
    establish(&api, &widget_crd(json!([v1(true)]))).await;

    // Defaults fill what is absent; unknown fields are pruned (with a warning), except under
    // x-kubernetes-preserve-unknown-fields; int-or-string takes both.
    let body = widget("plain", json!({"size": 2, "unknown": 1, "port": "http", "extra": {"anything": {"goes": true}}}));
    let reply = api
        .send(Method::POST, WIDGETS, &[("Content-Type", "application/json")], Some(body.to_string().into_bytes()))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let spec = &reply.body["spec"];
    assert_eq!(
        (spec["maxSize"].clone(), spec["color"].clone(), spec["shrinkable"].clone()),
        (json!(10), json!("red"), json!(false))
    );
    assert!(spec.get("unknown").is_none(), "pruned: {spec}");
    assert_eq!(spec["extra"], json!({"anything": {"goes": true}}));
    assert_eq!(spec["port"], "http");
    let warning = reply.headers.get("warning").and_then(|w| w.to_str().ok()).unwrap_or_default();
    assert!(warning.contains("unknown field") && warning.contains("spec.unknown"), "warning: {warning:?}");
    let strict = api
        .send(
            Method::POST,
            &format!("{WIDGETS}?fieldValidation=Strict"),
            &[("Content-Type", "application/json")],
            Some(widget("strict", json!({"size": 1, "bogus": true})).to_string().into_bytes()),
        )
        .await;
    assert_status(strict.status, &strict.body, 400, "BadRequest", "Strict with an unknown field");
    let numeric_port = api.create(WIDGETS, &widget("numeric", json!({"size": 1, "port": 8080}))).await;
    assert_eq!(numeric_port["spec"]["port"], 8080);

    // One invalid object per rule kind, each refused with the field and Kubernetes' words.
    let cases = [
        (json!({}), "spec.size", "Required value"),
        (json!({"size": "big"}), "spec.size", "must be of type integer"),
        (json!({"size": 0}), "spec.size", "should be greater than or equal to 1"),
        (json!({"size": 101}), "spec.size", "should be less than or equal to 100"),
        (json!({"size": 1, "color": "pink"}), "spec.color", "Unsupported value: \"pink\""),
        (json!({"size": 1, "name": "Not-Lower"}), "spec.name", "should match '^[a-z]+$'"),
        (json!({"size": 1, "name": "abcdefghijklmnop"}), "spec.name", "may not be more than 12"),
        (json!({"size": 1, "tags": ["a", "b", "c", "d"]}), "spec.tags", "must have at most 3 items"),
        (json!({"size": 1, "tags": ["a", "a"]}), "spec.tags[1]", "Duplicate value"),
        (
            json!({"size": 1, "ports": [{"name": "x", "port": 1}, {"name": "x", "port": 2}]}),
            "spec.ports[1]",
            "Duplicate value",
        ),
        (json!({"size": 1, "port": 1.5}), "spec.port", ""),
        (json!({"size": 20}), "spec", "size may not exceed maxSize"),
    ];
    for (i, (spec, field, words)) in cases.into_iter().enumerate() {
        let (status, body) = api.post(WIDGETS, &widget(&format!("bad{i}"), spec.clone())).await;
        assert_status(status, &body, 422, "Invalid", &format!("spec {spec}"));
        let found = causes(&body);
        assert!(
            found.iter().any(|c| c.starts_with(&format!("{field}: ")) && c.contains(words)),
            "spec {spec}: expected {field} / {words:?} in {found:?}"
        );
    }

    // A transition rule compares with the old object: the size may not shrink unless allowed.
    let item = format!("{WIDGETS}/plain");
    let (status, body) = api.patch(&item, "application/merge-patch+json", &json!({"spec": {"size": 1}})).await;
    assert_status(status, &body, 422, "Invalid", "shrinking");
    assert!(causes(&body).iter().any(|c| c.contains("size may not shrink")), "{body}");
    let (status, body) =
        api.patch(&item, "application/merge-patch+json", &json!({"spec": {"size": 1, "shrinkable": true}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn status_and_scale_subresources_write_only_their_part() {
    let (_cluster, api) = start().await;
    establish(&api, &widget_crd(json!([v1(true)]))).await;
    let item = format!("{WIDGETS}/w");
    let mut body = widget("w", json!({"size": 2}));
    body["status"] = json!({"phase": "Ignored"});
    let created = api.create(WIDGETS, &body).await;
    assert!(created.get("status").is_none(), "create resets status: {created}");

    let mut status_write = created.clone();
    status_write["status"] = json!({"phase": "Ready", "replicas": 2, "selector": "app=demo"});
    status_write["spec"]["size"] = json!(9);
    let (status, reply) = api.put(&format!("{item}/status"), &status_write).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        (reply["status"]["phase"].as_str(), reply["spec"]["size"].as_i64()),
        (Some("Ready"), Some(2)),
        "{reply}"
    );
    assert_eq!(reply["metadata"]["generation"], 1, "{reply}");

    let mut main_write = reply.clone();
    main_write["status"]["phase"] = json!("Broken");
    main_write["spec"]["size"] = json!(3);
    let (status, reply) = api.put(&item, &main_write).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        (reply["status"]["phase"].as_str(), reply["spec"]["size"].as_i64()),
        (Some("Ready"), Some(3)),
        "{reply}"
    );

    let scale = api.get_ok(&format!("{item}/scale")).await;
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(
        (scale["spec"]["replicas"].as_i64(), scale["status"]["replicas"].as_i64()),
        (Some(3), Some(2)),
        "{scale}"
    );
    assert_eq!(scale["status"]["selector"], "app=demo");
    let (status, reply) =
        api.patch(&format!("{item}/scale"), "application/merge-patch+json", &json!({"spec": {"replicas": 7}})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(api.get_ok(&item).await["spec"]["size"], 7);
    // The scale write goes through the schema: the maximum holds there too.
    let (status, reply) =
        api.patch(&format!("{item}/scale"), "application/merge-patch+json", &json!({"spec": {"replicas": 500}})).await;
    assert_status(status, &reply, 422, "Invalid", "scaling past the schema's maximum");
}

#[tokio::test]
async fn printer_columns_make_the_table_kubectl_shows() {
    let (_cluster, api) = start().await;
    establish(&api, &widget_crd(json!([v1(true)]))).await;
    api.create(WIDGETS, &widget("w", json!({"size": 4, "color": "blue"}))).await;
    let reply =
        api.send(Method::GET, WIDGETS, &[("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")], None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let columns: Vec<&str> = reply.body["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Name", "Size", "Color", "Phase", "Age"]);
    assert_eq!(reply.body["columnDefinitions"][2]["priority"], 1);
    let cells = &reply.body["rows"][0]["cells"];
    assert_eq!(
        (cells[0].clone(), cells[1].clone(), cells[2].clone(), cells[3].clone()),
        (json!("w"), json!(4), json!("blue"), Value::Null)
    );
}

#[tokio::test]
async fn versions_are_served_over_one_storage_version() {
    let (_cluster, api) = start().await;
    let beta =
        json!({"name": "v1beta1", "served": true, "storage": false, "schema": {"openAPIV3Schema": widget_schema()}});
    let alpha =
        json!({"name": "v1alpha1", "served": false, "storage": false, "schema": {"openAPIV3Schema": widget_schema()}});
    establish(&api, &widget_crd(json!([beta, v1(true), alpha]))).await;
    let groups = api.get_ok("/apis").await;
    let group = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["name"] == "example.com")
        .cloned()
        .expect("group");
    assert_eq!(group["preferredVersion"]["version"], "v1", "{group}");
    assert_eq!(group["versions"].as_array().map(Vec::len), Some(2), "{group}");

    let beta_path = "/apis/example.com/v1beta1/namespaces/default/widgets";
    let mut body = widget("old", json!({"size": 2}));
    body["apiVersion"] = json!("example.com/v1beta1");
    let created = api.create(beta_path, &body).await;
    assert_eq!(created["apiVersion"], "example.com/v1beta1");
    let as_v1 = api.get_ok(&format!("{WIDGETS}/old")).await;
    assert_eq!(as_v1["apiVersion"], "example.com/v1");
    assert_eq!(as_v1["spec"]["maxSize"], 10);
    let listed = api.get_ok(beta_path).await;
    assert_eq!(listed["items"][0]["apiVersion"], "example.com/v1beta1", "{listed}");
    let (status, body) = api.get("/apis/example.com/v1alpha1/namespaces/default/widgets").await;
    assert_status(status, &body, 404, "NotFound", "a version that is not served");
}

#[tokio::test]
async fn deleting_a_crd_deletes_its_objects_then_its_routes() {
    let (_cluster, api) = start().await;
    establish(&api, &widget_crd(json!([v1(true)]))).await;
    api.create("/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}))
        .await;
    api.create(WIDGETS, &widget("a", json!({"size": 1}))).await;
    api.create("/apis/example.com/v1/namespaces/other/widgets", &widget("b", json!({"size": 1}))).await;
    // One object waits for its own finalizer, which its owner removes later.
    let mut held = widget("held", json!({"size": 1}));
    held["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
    api.create(WIDGETS, &held).await;

    let (status, body) = api.delete(&format!("{CRDS}/widgets.example.com")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let terminating = eventually(WAIT, "the CRD to be terminating with only the held object left", || async {
        let crd = api.get_ok(&format!("{CRDS}/widgets.example.com")).await;
        let left = api.get_ok("/apis/example.com/v1/widgets").await;
        let names: Vec<String> = left["items"]
            .as_array()?
            .iter()
            .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        (condition(&crd, "Terminating").as_deref() == Some("True") && names == ["held"]).then_some(crd)
    })
    .await;
    assert_eq!(terminating["metadata"]["finalizers"], json!(["customresourcecleanup.apiextensions.k8s.io"]));
    let (status, body) = api.post(WIDGETS, &widget("late", json!({"size": 1}))).await;
    assert_status(status, &body, 405, "MethodNotAllowed", "creating while the CRD terminates");

    let (status, body) = api
        .patch(&format!("{WIDGETS}/held"), "application/merge-patch+json", &json!({"metadata": {"finalizers": null}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually(WAIT, "the CRD and its routes to be gone", || async {
        let (crd, _) = api.get(&format!("{CRDS}/widgets.example.com")).await;
        let (route, _) = api.get(WIDGETS).await;
        (crd == StatusCode::NOT_FOUND && route == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    let (status, _) = api.get("/apis/example.com/v1").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the group version left discovery");

    // Made again, it starts empty.
    establish(&api, &widget_crd(json!([v1(true)]))).await;
    let empty = api.get_ok("/apis/example.com/v1/widgets").await;
    assert_eq!(empty["items"], json!([]), "{empty}");
}

#[tokio::test]
async fn invalid_crds_are_refused_and_clashing_names_are_not_accepted() {
    let (_cluster, api) = start().await;
    let mut bad = widget_crd(json!([v1(true)]));
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["size"] =
        json!({"minimum": 1});
    let (status, body) = api.post(CRDS, &bad).await;
    assert_status(status, &body, 422, "Invalid", "a schema that is not structural");
    let mut broken_rule = widget_crd(json!([v1(true)]));
    broken_rule["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"] =
        json!([{"rule": "self.size >>> 2"}]);
    let (status, body) = api.post(CRDS, &broken_rule).await;
    assert_status(status, &body, 422, "Invalid", "a CEL rule that does not compile");

    establish(&api, &widget_crd(json!([v1(true)]))).await;
    let mut twin = widget_crd(json!([v1(true)]));
    twin["metadata"]["name"] = json!("gadgets.example.com");
    twin["spec"]["names"] = json!({"plural": "gadgets", "kind": "Widget"});
    api.create(CRDS, &twin).await;
    let twin = eventually(WAIT, "the clashing CRD's NamesAccepted=False", || async {
        let got = api.get_ok(&format!("{CRDS}/gadgets.example.com")).await;
        (condition(&got, "NamesAccepted").as_deref() == Some("False")).then_some(got)
    })
    .await;
    assert_eq!(condition(&twin, "Established").as_deref(), Some("False"), "{twin}");
    let (status, _) = api.get("/apis/example.com/v1/namespaces/default/gadgets").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cluster_scoped_custom_resources_have_no_namespace() {
    let (_cluster, api) = start().await;
    let mut crd = widget_crd(json!([{"name": "v1", "served": true, "storage": true,
        "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"owner": {"type": "string"}}}}}}}]));
    crd["metadata"]["name"] = json!("regions.example.com");
    crd["spec"]["scope"] = json!("Cluster");
    crd["spec"]["names"] = json!({"plural": "regions", "kind": "Region"});
    establish(&api, &crd).await;
    let region =
        json!({"apiVersion": "example.com/v1", "kind": "Region", "metadata": {"name": "eu"}, "spec": {"owner": "ops"}});
    let created = api.create("/apis/example.com/v1/regions", &region).await;
    assert!(created["metadata"].get("namespace").is_none(), "{created}");
    let (status, _) = api.get("/apis/example.com/v1/namespaces/default/regions").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn changing_a_crd_changes_what_is_served_at_once() {
    let (_cluster, api) = start().await;
    let crd = establish(&api, &widget_crd(json!([v1(true)]))).await;
    api.create(WIDGETS, &widget("kept", json!({"size": 2}))).await;

    // A new storage version: served beside v1, objects read in either; storedVersions grows.
    let mut changed = crd.clone();
    let v2 = json!({"name": "v2", "served": true, "storage": true, "schema": {"openAPIV3Schema": widget_schema()}});
    changed["spec"]["versions"] = json!([v1(false), v2]);
    let (status, reply) = api.put(&format!("{CRDS}/widgets.example.com"), &changed).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["status"]["storedVersions"], json!(["v1", "v2"]), "{reply}");
    // Served at once; the stored object is moved to the new storage version just after.
    let read = eventually(WAIT, "v2 to be served with the object moved to v2", || async {
        let (status, body) = api.get("/apis/example.com/v2/namespaces/default/widgets/kept").await;
        (status == StatusCode::OK && body["apiVersion"] == "example.com/v2").then_some(body)
    })
    .await;
    assert_eq!(read["spec"]["size"], 2);
    let groups = api.get_ok("/apis").await;
    let group = groups["groups"].as_array().expect("groups").iter().find(|g| g["name"] == "example.com").cloned();
    assert_eq!(group.expect("group")["preferredVersion"]["version"], "v2");

    // v1 no longer served: its routes go, v2's stay.
    let mut current = api.get_ok(&format!("{CRDS}/widgets.example.com")).await;
    current["spec"]["versions"][0]["served"] = json!(false);
    let (status, reply) = api.put(&format!("{CRDS}/widgets.example.com"), &current).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    eventually(WAIT, "v1 to be no longer served", || async {
        let (status, _) = api.get(WIDGETS).await;
        (status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    let (status, _) = api.get("/apis/example.com/v2/namespaces/default/widgets/kept").await;
    assert_eq!(status, StatusCode::OK);

    // The scope never changes.
    let mut scoped = api.get_ok(&format!("{CRDS}/widgets.example.com")).await;
    scoped["spec"]["scope"] = json!("Cluster");
    let (status, reply) = api.put(&format!("{CRDS}/widgets.example.com"), &scoped).await;
    assert_status(status, &reply, 422, "Invalid", "changing a CRD's scope");
}
