//! The custom resource API as clients use it, against a real apiserver and etcd, each answer
//! checked against what Kubernetes answers: watches of custom objects (every event type,
//! resuming, 410 Expired, selectors, all namespaces, bookmarks) and the watch cache serving
//! them; a cluster-scoped kind from discovery to its CRD's deletion; selectors and paging
//! across namespaces; schema type errors; namespace deletion; the real kubectl (`scale`,
//! client-side `apply` and `--validate=warn`, `patch --subresource=status`, CEL refusals,
//! `api-resources`); and server-side apply on custom objects (several conflicts at once,
//! ownership shared and handed over by dropping a field).
//!
//! What a CRD is and how its schema, subresources and versions are served:
//! customresources.rs; field ownership on built-in kinds: server_side_apply.rs.

use std::path::PathBuf;
use std::time::Duration;

use rkube_tests::custom_resources::{CRDS, establish};
use rkube_tests::kubectl::{Ran, real_kubectl, real_kubectl_run};
use rkube_tests::resources::{item_names, namespace, resource_version};
use rkube_tests::server_side_apply::{apply, apply_ok, entry, owns};
use rkube_tests::{Api, Cluster, Method, StatusCode, WatchStream, assert_status, escape_query, eventually};
use serde_json::{Value, json};

const GROUP_VERSION: &str = "/apis/example.com/v1";
/// Widgets of every namespace.
const ALL_WIDGETS: &str = "/apis/example.com/v1/widgets";
/// Regions: cluster-scoped.
const REGIONS: &str = "/apis/example.com/v1/regions";
const MERGE: &str = "application/merge-patch+json";
/// How long a test waits for a watch event that must come.
const EVENT_WAIT: Duration = Duration::from_secs(10);
/// How long a test listens to be sure no further event comes.
const QUIET_WINDOW: Duration = Duration::from_millis(1500);
/// How long cleanup (a CRD's, a namespace's) may take.
const CLEANUP_WAIT: Duration = Duration::from_secs(30);

/// The namespaced test kind: a field of each JSON type, a CEL rule, and `status` and `scale`
/// subresources.
fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {
                        "type": "object",
                        "required": ["size"],
                        "x-kubernetes-validations": [
                            {"rule": "self.size <= self.limit", "message": "size may not exceed limit"}
                        ],
                        "properties": {
                            "size": {"type": "integer", "minimum": 0},
                            "limit": {"type": "integer", "default": 10},
                            "name": {"type": "string"},
                            "enabled": {"type": "boolean"},
                            "tags": {"type": "array", "items": {"type": "string"}},
                            "extra": {"type": "object", "properties": {"owner": {"type": "string"}}},
                            "port": {"x-kubernetes-int-or-string": true},
                            "note": {"type": "string"}
                        }
                    },
                    "status": {"type": "object", "properties": {
                        "replicas": {"type": "integer"}, "phase": {"type": "string"}}}
                }}},
                "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.replicas"}
                }
            }]
        }
    })
}

fn widget(name: &str, app: &str, spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget",
           "metadata": {"name": name, "labels": {"app": app}}, "spec": spec})
}

fn widgets(namespace: &str) -> String {
    format!("{GROUP_VERSION}/namespaces/{namespace}/widgets")
}

/// The cluster-scoped test kind.
fn region_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "regions.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"plural": "regions", "singular": "region", "kind": "Region"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"owner": {"type": "string"}}}}}}
            }]
        }
    })
}

fn region(name: &str, tier: &str) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Region",
           "metadata": {"name": name, "labels": {"tier": tier}}, "spec": {"owner": "ops"}})
}

/// A cluster (apiserver started with `args`) serving widgets.
async fn serving_widgets(args: &[&str]) -> (Cluster, Api) {
    let cluster = Cluster::start_with_args(args).await.expect("cluster starts");
    let api = Api::new(cluster.url());
    establish(&api, &widget_crd()).await;
    (cluster, api)
}

/// `<TYPE> <namespace>/<name>` of a watch event (`<name>` alone for a cluster-scoped object).
fn describe(event: &Value) -> String {
    let meta = &event["object"]["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let object = match meta["namespace"].as_str() {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_string(),
    };
    format!("{} {object}", event["type"].as_str().unwrap_or("?"))
}

async fn open(api: &Api, path: &str) -> WatchStream {
    let watch = api.watch(path).await;
    assert_eq!(watch.status, StatusCode::OK, "watch {path}");
    watch
}

/// The next `count` events that are not bookmarks, described.
async fn next_events(watch: &mut WatchStream, count: usize) -> Vec<Value> {
    let mut events = Vec::new();
    for _ in 0..count {
        events.push(watch.expect_non_bookmark(EVENT_WAIT).await);
    }
    events
}

fn described(events: &[Value]) -> Vec<String> {
    events.iter().map(describe).collect()
}

fn list_rv(list: &Value) -> String {
    list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("a list has a resourceVersion: {list}"))
        .into()
}

fn continue_token(list: &Value) -> Option<String> {
    list["metadata"]["continue"].as_str().filter(|token| !token.is_empty()).map(str::to_string)
}

#[tokio::test]
async fn watches_of_custom_objects_deliver_each_change_once_in_order_and_resume_within_the_window() {
    // A window of 3 events: after 6 changes, a watch may resume from the 3rd but not the 2nd.
    let (_cluster, api) = serving_widgets(&["--watch-cache-size", "3", "--watch-bookmark-interval-seconds", "1"]).await;
    api.create("/api/v1/namespaces", &namespace("other")).await;
    let rv = list_rv(&api.get_ok(ALL_WIDGETS).await);
    let mut in_default = open(&api, &format!("{}?watch=true&resourceVersion={rv}", widgets("default"))).await;
    let mut everywhere =
        open(&api, &format!("{ALL_WIDGETS}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true")).await;
    let selector = escape_query("app=demo");
    let mut demo =
        open(&api, &format!("{}?watch=true&resourceVersion={rv}&labelSelector={selector}", widgets("default"))).await;

    let a = api.create(&widgets("default"), &widget("a", "demo", json!({"size": 1}))).await;
    api.create(&widgets("other"), &widget("b", "demo", json!({"size": 1}))).await;
    let c = api.create(&widgets("default"), &widget("c", "other", json!({"size": 1}))).await;
    let (status, a_grown) = api.patch(&format!("{}/a", widgets("default")), MERGE, &json!({"spec": {"size": 3}})).await;
    assert_eq!(status, StatusCode::OK, "{a_grown}");
    let relabel = json!({"metadata": {"labels": {"app": "demo"}}});
    let (status, reply) = api.patch(&format!("{}/c", widgets("default")), MERGE, &relabel).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (status, reply) = api.delete(&format!("{}/a", widgets("default"))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");

    let events = next_events(&mut in_default, 5).await;
    assert_eq!(
        described(&events),
        ["ADDED default/a", "ADDED default/c", "MODIFIED default/a", "MODIFIED default/c", "DELETED default/a"]
    );
    assert_eq!(events[0]["object"], a, "ADDED carries the created object, kind and all");
    assert_eq!(events[2]["object"], a_grown, "MODIFIED carries the object after the change");
    assert_eq!(
        (events[4]["object"]["spec"].clone(), events[4]["object"]["kind"].clone()),
        (json!({"size": 3, "limit": 10}), json!("Widget")),
        "DELETED carries the last state: {}",
        events[4]
    );
    let revisions: Vec<i64> = events.iter().map(|e| resource_version(&e["object"])).collect();
    assert!(revisions.windows(2).all(|pair| pair[0] < pair[1]), "resourceVersions increase: {revisions:?}");

    let all = next_events(&mut everywhere, 6).await;
    assert_eq!(
        described(&all),
        [
            "ADDED default/a",
            "ADDED other/b",
            "ADDED default/c",
            "MODIFIED default/a",
            "MODIFIED default/c",
            "DELETED default/a"
        ]
    );
    // Kubernetes turns a change that makes an object match the selector into ADDED.
    let selected = next_events(&mut demo, 4).await;
    assert_eq!(described(&selected), ["ADDED default/a", "MODIFIED default/a", "ADDED default/c", "DELETED default/a"]);
    assert!(in_default.non_bookmarks_within(QUIET_WINDOW).await.is_empty(), "nothing is delivered twice");
    assert!(demo.non_bookmarks_within(Duration::ZERO).await.is_empty(), "b is in another namespace");

    // Bookmarks, when asked for, name the kind and do not go back before the last event.
    let bookmark = everywhere.expect_event(Duration::from_secs(5)).await;
    assert_eq!(
        (bookmark["type"].as_str(), bookmark["object"]["kind"].as_str(), bookmark["object"]["apiVersion"].as_str()),
        (Some("BOOKMARK"), Some("Widget"), Some("example.com/v1")),
        "{bookmark}"
    );
    assert!(resource_version(&bookmark["object"]) >= revisions[4], "{bookmark}");

    // Resumed from c's creation, a watch gets exactly the three later changes.
    let mut resumed = open(&api, &format!("{ALL_WIDGETS}?watch=true&resourceVersion={}", resource_version(&c))).await;
    let later = next_events(&mut resumed, 3).await;
    assert_eq!(described(&later), ["MODIFIED default/a", "MODIFIED default/c", "DELETED default/a"]);
    assert!(resumed.non_bookmarks_within(QUIET_WINDOW).await.is_empty());

    // From b's creation, the window no longer holds every change since: one ERROR event with a
    // 410 Expired Status (as Kubernetes' watch cache answers), then the stream ends.
    let b_rv = resource_version(&all[1]["object"]);
    let mut expired = open(&api, &format!("{ALL_WIDGETS}?watch=true&resourceVersion={b_rv}")).await;
    let error = expired.expect_event(EVENT_WAIT).await;
    assert_eq!(error["type"], "ERROR", "{error}");
    assert_eq!(
        (error["object"]["kind"].as_str(), error["object"]["code"].as_i64(), error["object"]["reason"].as_str()),
        (Some("Status"), Some(410), Some("Expired")),
        "{error}"
    );
    let message = error["object"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(&format!("too old resource version: {b_rv} (")), "{error}");
    assert_eq!(expired.next_within(EVENT_WAIT).await.ok(), Some(None), "the stream ends after the ERROR event");
}

#[tokio::test]
async fn custom_resource_lists_and_watches_are_served_from_the_watch_cache() {
    let (_cluster, api) = serving_widgets(&[]).await;
    api.create("/api/v1/namespaces", &namespace("other")).await;
    for (namespace, name) in [("default", "a"), ("other", "b"), ("default", "c")] {
        api.create(&widgets(namespace), &widget(name, "demo", json!({"size": 1}))).await;
    }
    let lists = r#"rkube_apiserver_watch_cache_lists_total{resource="widgets"}"#;
    let before = api.metric(lists).await;

    // resourceVersion=0: any state the cache holds will do.
    let any = api.get_ok(&format!("{ALL_WIDGETS}?resourceVersion=0")).await;
    assert_eq!(item_names(&any), ["a", "c", "b"], "in key order, namespace first: {any}");
    assert_eq!(api.metric(lists).await, before + 1.0, "a resourceVersion=0 list is served from the cache");

    // A paged list and its continuation, at one revision.
    let page = api.get_ok(&format!("{ALL_WIDGETS}?limit=2")).await;
    assert_eq!(item_names(&page), ["a", "c"], "{page}");
    assert_eq!(api.metric(lists).await, before + 2.0, "the first page is served from the cache");
    let token = continue_token(&page).unwrap_or_else(|| panic!("a continue token: {page}"));
    let rest = api.get_ok(&format!("{ALL_WIDGETS}?limit=2&continue={}", escape_query(&token))).await;
    assert_eq!((item_names(&rest), continue_token(&rest)), (vec!["b".to_string()], None), "{rest}");
    assert_eq!(list_rv(&rest), list_rv(&page), "one snapshot");
    assert_eq!(api.metric(lists).await, before + 3.0, "so is the next page");

    // The control: an exact old revision is etcd's to answer, and the count stays.
    let exact =
        api.get_ok(&format!("{ALL_WIDGETS}?resourceVersion={}&resourceVersionMatch=Exact", list_rv(&page))).await;
    assert_eq!(item_names(&exact), ["a", "c", "b"]);
    assert_eq!(api.metric(lists).await, before + 3.0, "an Exact list goes to etcd");
    assert_eq!(api.metric(r#"rkube_apiserver_watch_cache_objects{resource="widgets"}"#).await, 3.0);

    // A watch is one of the cache's watchers, and its events come from the cache.
    let watchers = r#"rkube_apiserver_watch_cache_watchers{resource="widgets"}"#;
    let dispatched = r#"rkube_apiserver_watch_cache_events_dispatched_total{resource="widgets"}"#;
    assert_eq!(api.metric(watchers).await, 0.0);
    let sent = api.metric(dispatched).await;
    let mut watch = open(&api, &format!("{ALL_WIDGETS}?watch=true&resourceVersion={}", list_rv(&page))).await;
    assert_eq!(api.metric(watchers).await, 1.0, "the watch is the cache's");
    api.create(&widgets("other"), &widget("d", "demo", json!({"size": 1}))).await;
    assert_eq!(describe(&watch.expect_non_bookmark(EVENT_WAIT).await), "ADDED other/d");
    // The cache counts the event just after handing it over: by now, or a moment later.
    let counted = eventually(EVENT_WAIT, "the cache to count the event it dispatched", || async {
        Some(api.metric(dispatched).await).filter(|count| *count > sent)
    })
    .await;
    assert_eq!(counted, sent + 1.0, "one event went out through the cache, to its one watcher");
    drop(watch);
    eventually(EVENT_WAIT, "the closed watch to leave the cache", || async {
        (api.metric(watchers).await == 0.0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_cluster_scoped_kind_is_served_without_namespaces_from_discovery_to_its_crds_deletion() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    establish(&api, &region_crd()).await;

    // Discovery says the kind has no namespace, in both forms.
    let legacy = api.get_ok(GROUP_VERSION).await;
    let resource = legacy["resources"].as_array().and_then(|r| r.iter().find(|r| r["name"] == "regions")).cloned();
    let resource = resource.unwrap_or_else(|| panic!("regions in {legacy}"));
    assert_eq!((resource["namespaced"].as_bool(), resource["kind"].as_str()), (Some(false), Some("Region")));
    let aggregated = api
        .send(
            Method::GET,
            "/apis",
            &[("Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")],
            None,
        )
        .await;
    let group =
        aggregated.body["items"].as_array().and_then(|g| g.iter().find(|g| g["metadata"]["name"] == "example.com"));
    let group = group.unwrap_or_else(|| panic!("example.com in {}", aggregated.body));
    assert_eq!(
        (
            group["versions"][0]["resources"][0]["resource"].as_str(),
            group["versions"][0]["resources"][0]["scope"].as_str()
        ),
        (Some("regions"), Some("Cluster")),
        "{group}"
    );

    let rv = list_rv(&api.get_ok(REGIONS).await);
    let mut watch = open(&api, &format!("{REGIONS}?watch=true&resourceVersion={rv}")).await;
    api.create(REGIONS, &region("eu", "gold")).await;
    api.create(REGIONS, &region("us", "silver")).await;
    api.create(REGIONS, &region("ap", "gold")).await;
    let eu = api.get_ok(&format!("{REGIONS}/eu")).await;
    assert_eq!((eu["metadata"].get("namespace"), eu["spec"]["owner"].as_str()), (None, Some("ops")), "{eu}");
    let (status, body) = api.get("/apis/example.com/v1/namespaces/default/regions/eu").await;
    assert_status(status, &body, 404, "NotFound", "a cluster-scoped object under a namespace");

    // List, selectors, paging.
    let all = api.get_ok(REGIONS).await;
    assert_eq!(
        (all["kind"].as_str(), item_names(&all)),
        (Some("RegionList"), vec!["ap".into(), "eu".into(), "us".into()])
    );
    let gold = api.get_ok(&format!("{REGIONS}?labelSelector={}", escape_query("tier=gold"))).await;
    assert_eq!(item_names(&gold), ["ap", "eu"]);
    let named = api.get_ok(&format!("{REGIONS}?fieldSelector={}", escape_query("metadata.name=us"))).await;
    assert_eq!(item_names(&named), ["us"]);
    // Kubernetes serves metadata.namespace as a field label only for namespaced custom kinds.
    let (status, body) =
        api.get(&format!("{REGIONS}?fieldSelector={}", escape_query("metadata.namespace=default"))).await;
    assert_status(status, &body, 400, "BadRequest", "metadata.namespace on a cluster-scoped custom kind");
    assert_eq!(body["message"], "field label not supported: metadata.namespace", "{body}");
    let page = api.get_ok(&format!("{REGIONS}?limit=2")).await;
    assert_eq!(item_names(&page), ["ap", "eu"]);
    let token = continue_token(&page).unwrap_or_else(|| panic!("a continue token: {page}"));
    let rest = api.get_ok(&format!("{REGIONS}?limit=2&continue={}", escape_query(&token))).await;
    assert_eq!((item_names(&rest), continue_token(&rest)), (vec!["us".to_string()], None), "{rest}");

    // Update and delete.
    let mut changed = eu.clone();
    changed["spec"]["owner"] = json!("platform");
    let (status, updated) = api.put(&format!("{REGIONS}/eu"), &changed).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["spec"]["owner"], "platform");
    assert!(resource_version(&updated) > resource_version(&eu), "{updated}");
    let (status, body) = api.delete(&format!("{REGIONS}/us")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api.get(&format!("{REGIONS}/us")).await;
    assert_status(status, &body, 404, "NotFound", "a deleted region");

    let events = next_events(&mut watch, 5).await;
    assert_eq!(described(&events), ["ADDED eu", "ADDED us", "ADDED ap", "MODIFIED eu", "DELETED us"]);
    assert_eq!(events[3]["object"]["spec"]["owner"], "platform");

    // Deleting the CRD deletes the objects: made again, the kind starts empty.
    let (status, body) = api.delete(&format!("{CRDS}/regions.example.com")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually(CLEANUP_WAIT, "the CRD and its route to be gone", || async {
        let (crd, _) = api.get(&format!("{CRDS}/regions.example.com")).await;
        let (route, _) = api.get(REGIONS).await;
        (crd == StatusCode::NOT_FOUND && route == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    establish(&api, &region_crd()).await;
    let empty = api.get_ok(REGIONS).await;
    assert_eq!(empty["items"], json!([]), "{empty}");
}

#[tokio::test]
async fn a_list_across_namespaces_filters_by_namespace_pages_and_refuses_other_field_labels() {
    let (_cluster, api) = serving_widgets(&[]).await;
    api.create("/api/v1/namespaces", &namespace("other")).await;
    for (namespace, name) in [("default", "a"), ("other", "b"), ("default", "c"), ("other", "d")] {
        api.create(&widgets(namespace), &widget(name, "demo", json!({"size": 1}))).await;
    }
    let in_other =
        api.get_ok(&format!("{ALL_WIDGETS}?fieldSelector={}", escape_query("metadata.namespace=other"))).await;
    assert_eq!(item_names(&in_other), ["b", "d"], "{in_other}");
    let elsewhere =
        api.get_ok(&format!("{ALL_WIDGETS}?fieldSelector={}", escape_query("metadata.namespace!=other"))).await;
    assert_eq!(item_names(&elsewhere), ["a", "c"], "{elsewhere}");

    // Kubernetes' custom resources know metadata.name and metadata.namespace as field labels,
    // and no other (unless the CRD names selectableFields): a list or a watch is refused.
    for path in [ALL_WIDGETS.to_string(), format!("{}?watch=true", widgets("default"))] {
        let separator = if path.contains('?') { '&' } else { '?' };
        let (status, body) = api.get(&format!("{path}{separator}fieldSelector={}", escape_query("spec.size=1"))).await;
        assert_status(status, &body, 400, "BadRequest", &format!("{path} by spec.size"));
        assert_eq!(body["message"], "field label not supported: spec.size", "{body}");
    }

    // Pages of the cross-namespace list, in key order (namespace, then name), with and
    // without a selector.
    let mut names = Vec::new();
    let mut next = format!("{ALL_WIDGETS}?limit=3");
    loop {
        let page = api.get_ok(&next).await;
        names.push(item_names(&page));
        let Some(token) = continue_token(&page) else { break };
        next = format!("{ALL_WIDGETS}?limit=3&continue={}", escape_query(&token));
    }
    assert_eq!(names, [vec!["a", "c", "b"], vec!["d"]]);
    let selector = escape_query("metadata.namespace=other");
    let first = api.get_ok(&format!("{ALL_WIDGETS}?limit=1&fieldSelector={selector}")).await;
    assert_eq!(item_names(&first), ["b"], "{first}");
    let token = continue_token(&first).unwrap_or_else(|| panic!("a continue token: {first}"));
    let second =
        api.get_ok(&format!("{ALL_WIDGETS}?limit=1&fieldSelector={selector}&continue={}", escape_query(&token))).await;
    assert_eq!(item_names(&second), ["d"], "{second}");
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_refused_naming_the_field_and_the_type_the_schema_wants() {
    let (_cluster, api) = serving_widgets(&[]).await;
    // Kubernetes' words (kube-openapi's type check, reported as FieldValueTypeInvalid), and,
    // since the kind has CEL rules that a value of the wrong type keeps from running, the note
    // that they were not checked.
    let not_checked = "<nil>: Invalid value: \"null\": some validation rules were not checked because the object \
                       was invalid; correct the existing errors to complete validation";
    let cases = [
        (json!({"size": 1, "name": 5}), "spec.name", "integer", "string"),
        (json!({"size": 1, "enabled": "yes"}), "spec.enabled", "string", "boolean"),
        (json!({"size": 1, "tags": "a"}), "spec.tags", "string", "array"),
        (json!({"size": 1, "extra": ["x"]}), "spec.extra", "array", "object"),
        (json!({"size": 1, "port": 1.5}), "spec.port", "number", "integer,string"),
        (json!({"size": 1, "port": true}), "spec.port", "boolean", "integer,string"),
    ];
    for (i, (spec, field, actual, expected)) in cases.into_iter().enumerate() {
        let name = format!("bad{i}");
        let (status, body) = api.post(&widgets("default"), &widget(&name, "demo", spec.clone())).await;
        assert_status(status, &body, 422, "Invalid", &format!("spec {spec}"));
        let error =
            format!("{field}: Invalid value: \"{actual}\": {field} in body must be of type {expected}: \"{actual}\"");
        assert_eq!(
            body["message"].as_str().unwrap_or_default(),
            format!("Widget.example.com \"{name}\" is invalid: [{error}, {not_checked}]"),
            "spec {spec}"
        );
        let cause = &body["details"]["causes"][0];
        assert_eq!(
            (cause["reason"].as_str(), cause["field"].as_str()),
            (Some("FieldValueTypeInvalid"), Some(field)),
            "spec {spec}: {body}"
        );
        assert_eq!(body["details"]["causes"].as_array().map(Vec::len), Some(2), "{body}");
    }
    // A value of the right type that breaks another rule does not keep the CEL rules from
    // running: both are reported.
    let (status, body) = api.post(&widgets("default"), &widget("both", "demo", json!({"size": -1, "limit": -2}))).await;
    assert_status(status, &body, 422, "Invalid", "a minimum and a CEL rule broken at once");
    assert_eq!(
        body["message"],
        "Widget.example.com \"both\" is invalid: [spec.size: Invalid value: -1: spec.size in body should be greater \
         than or equal to 0, spec: Invalid value: size may not exceed limit]",
        "{body}"
    );
}

#[tokio::test]
async fn deleting_a_namespace_deletes_the_custom_objects_in_it() {
    let (_cluster, api) = serving_widgets(&[]).await;
    api.create("/api/v1/namespaces", &namespace("team")).await;
    api.create(&widgets("team"), &widget("a", "demo", json!({"size": 1}))).await;
    api.create(&widgets("team"), &widget("b", "demo", json!({"size": 1}))).await;
    let mut held = widget("held", "demo", json!({"size": 1}));
    held["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
    api.create(&widgets("team"), &held).await;
    api.create(&widgets("default"), &widget("survivor", "demo", json!({"size": 1}))).await;

    let (status, reply) = api.delete("/api/v1/namespaces/team").await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    // The objects go; the one with a finalizer waits for it, and holds the namespace.
    eventually(CLEANUP_WAIT, "only the held widget to be left, marked for deletion", || async {
        let left = api.get_ok(&widgets("team")).await;
        let marked = left["items"][0]["metadata"]["deletionTimestamp"].is_string();
        (item_names(&left) == ["held"] && marked).then_some(())
    })
    .await;
    let terminating = api.get_ok("/api/v1/namespaces/team").await;
    assert_eq!(terminating["status"]["phase"], "Terminating", "{terminating}");
    let (status, body) = api.post(&widgets("team"), &widget("late", "demo", json!({"size": 1}))).await;
    assert_status(status, &body, 403, "Forbidden", "creating in a terminating namespace");
    assert_eq!(
        body["message"],
        "widgets.example.com \"late\" is forbidden: unable to create new content in namespace team because it is \
         being terminated"
    );

    let (status, body) =
        api.patch(&format!("{}/held", widgets("team")), MERGE, &json!({"metadata": {"finalizers": null}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually(CLEANUP_WAIT, "the namespace to be gone", || async {
        (api.get("/api/v1/namespaces/team").await.0 == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    let left = api.get_ok(ALL_WIDGETS).await;
    assert_eq!(item_names(&left), ["survivor"], "other namespaces keep theirs: {left}");
}

/// The real kubectl against one test's cluster, with its own `HOME` (so its own discovery
/// cache).
struct Kubectl {
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl Kubectl {
    fn new(cluster: &Cluster) -> Kubectl {
        let home = tempfile::Builder::new().prefix("rkube-kubectl-home-").tempdir().expect("temporary HOME");
        let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig written");
        Kubectl { kubeconfig, home }
    }

    /// Runs kubectl, insists it succeeded, and returns its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        real_kubectl(&self.kubeconfig, self.home.path(), args).await
    }

    /// Runs kubectl to completion, whether it succeeds or not.
    async fn run(&self, args: &[&str]) -> Ran {
        real_kubectl_run(&self.kubeconfig, self.home.path(), args, None).await
    }

    /// Runs kubectl, insists it failed with exit status 1 and printed nothing on stdout, and
    /// returns its stderr.
    async fn fails(&self, args: &[&str]) -> String {
        let ran = self.run(args).await;
        assert_eq!((ran.code, ran.stdout.as_str()), (Some(1), ""), "kubectl was to fail: {ran:?}");
        ran.stderr
    }

    /// Writes `text` to `name` in this kubectl's `HOME` and returns the path.
    fn manifest(&self, name: &str, text: &str) -> String {
        let path = self.home.path().join(name);
        std::fs::write(&path, text).expect("manifest written");
        path.to_str().expect("UTF-8 temporary path").to_string()
    }
}

/// Splits kubectl's column output into rows of whitespace-separated cells.
fn rows(text: &str) -> Vec<Vec<&str>> {
    text.lines().map(|line| line.split_whitespace().collect()).collect()
}

#[tokio::test]
async fn kubectl_lists_scales_and_patches_the_status_of_a_custom_resource() {
    let (cluster, api) = serving_widgets(&[]).await;
    let kubectl = Kubectl::new(&cluster);
    let resources = kubectl.ok(&["api-resources", "--api-group=example.com"]).await;
    assert_eq!(
        rows(&resources),
        [
            vec!["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"],
            vec!["widgets", "wd", "example.com/v1", "true", "Widget"]
        ],
        "{resources}"
    );

    let item = format!("{}/w", widgets("default"));
    api.create(&widgets("default"), &widget("w", "demo", json!({"size": 2}))).await;
    let scaled = kubectl.ok(&["scale", "widget", "w", "--replicas=5"]).await;
    assert_eq!(scaled, "widget.example.com/w scaled\n");
    let object = api.get_ok(&item).await;
    assert_eq!(object["spec"], json!({"size": 5, "limit": 10}), "{object}");
    let scale = api.get_ok(&format!("{item}/scale")).await;
    assert_eq!((scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()), (Some("Scale"), Some(5)), "{scale}");
    // By short name, with a precondition on the current count, as kubectl checks it.
    assert_eq!(
        kubectl.ok(&["scale", "wd", "w", "--current-replicas=5", "--replicas=4"]).await,
        "widget.example.com/w scaled\n"
    );
    assert_eq!(api.get_ok(&item).await["spec"]["size"], 4);

    // The status subresource takes the status and ignores the rest.
    let patch = r#"{"status": {"phase": "Ready", "replicas": 4}, "spec": {"size": 1}}"#;
    let patched = kubectl.ok(&["patch", "widget", "w", "--subresource=status", "--type=merge", "-p", patch]).await;
    assert_eq!(patched, "widget.example.com/w patched\n");
    let object = api.get_ok(&item).await;
    assert_eq!(
        (object["status"].clone(), object["spec"]["size"].clone()),
        (json!({"phase": "Ready", "replicas": 4}), json!(4)),
        "{object}"
    );
    let status = api.get_ok(&format!("{item}/scale")).await["status"]["replicas"].clone();
    assert_eq!(status, 4, "the scale's status is read from .status.replicas");
}

/// A Widget manifest for client-side apply.
fn widget_manifest(name: &str, spec: &str) -> String {
    format!("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

#[tokio::test]
async fn kubectl_apply_of_a_custom_resource_merges_three_ways_and_relays_refusals_and_warnings() {
    let (cluster, api) = serving_widgets(&[]).await;
    let kubectl = Kubectl::new(&cluster);
    let item = format!("{}/w", widgets("default"));
    let first = kubectl.manifest("first.yaml", &widget_manifest("w", "  size: 2\n  note: hello\n  tags: [a, b]\n"));
    assert_eq!(kubectl.ok(&["apply", "-f", &first]).await, "widget.example.com/w created\n");
    assert_eq!(kubectl.ok(&["apply", "-f", &first]).await, "widget.example.com/w unchanged\n");

    let grown = kubectl.manifest("grown.yaml", &widget_manifest("w", "  size: 3\n  note: hello\n  tags: [a, b]\n"));
    assert_eq!(kubectl.ok(&["apply", "-f", &grown]).await, "widget.example.com/w configured\n");
    assert_eq!(api.get_ok(&item).await["spec"]["size"], 3);

    // Someone else sets a field the manifests never had.
    let (status, body) = api.patch(&item, MERGE, &json!({"spec": {"name": "theirs"}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The note leaves the manifest: the three-way merge removes it (it was last applied), keeps
    // the other writer's field (it never was), and the defaulted limit stays.
    let dropped = kubectl.manifest("dropped.yaml", &widget_manifest("w", "  size: 3\n  tags: [a, b]\n"));
    assert_eq!(kubectl.ok(&["apply", "-f", &dropped]).await, "widget.example.com/w configured\n");
    let object = api.get_ok(&item).await;
    assert_eq!(object["spec"], json!({"size": 3, "limit": 10, "name": "theirs", "tags": ["a", "b"]}), "{object}");
    let last_applied = object["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .unwrap_or_else(|| panic!("last-applied-configuration: {object}"));
    assert_eq!(last_applied["spec"], json!({"size": 3, "tags": ["a", "b"]}), "{last_applied}");
    assert_eq!(kubectl.ok(&["apply", "-f", &dropped]).await, "widget.example.com/w unchanged\n");

    // A CEL rule refuses, and kubectl shows the rule's message on the field (the object's value
    // left out, as Kubernetes leaves out an object's), on a create and on a patch.
    let refusal = "The Widget \"big\" is invalid: spec: Invalid value: size may not exceed limit\n";
    let big = kubectl.manifest("big.yaml", &widget_manifest("big", "  size: 20\n"));
    assert_eq!(kubectl.fails(&["apply", "-f", &big]).await, refusal);
    let (status, body) = api.get(&format!("{}/big", widgets("default"))).await;
    assert_status(status, &body, 404, "NotFound", "a refused widget");
    let patch = r#"{"spec": {"size": 20}}"#;
    assert_eq!(
        kubectl.fails(&["patch", "widget", "w", "--type=merge", "-p", patch]).await,
        refusal.replace("big", "w")
    );
    assert_eq!(api.get_ok(&item).await["spec"]["size"], 3);

    // An unknown field: kubectl's default (--validate=strict) refuses it; with --validate=warn
    // the server prunes it and kubectl relays the warning.
    let colored = kubectl.manifest("colored.yaml", &widget_manifest("colored", "  size: 1\n  color: blue\n"));
    let strict = kubectl.fails(&["apply", "-f", &colored]).await;
    assert!(strict.contains("unknown field \"spec.color\""), "{strict}");
    let warned = kubectl.run(&["apply", "--validate=warn", "-f", &colored]).await;
    assert_eq!(
        (warned.code, warned.stdout.as_str(), warned.stderr.as_str()),
        (Some(0), "widget.example.com/colored created\n", "Warning: unknown field \"spec.color\"\n"),
        "{warned:?}"
    );
    assert_eq!(api.get_ok(&format!("{}/colored", widgets("default"))).await["spec"], json!({"size": 1, "limit": 10}));
}

/// The configuration a manager applies: widget `w` with `spec`.
fn applied_widget(spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec})
}

#[tokio::test]
async fn several_conflicts_are_listed_per_manager_as_kubernetes_formats_them() {
    let (_cluster, api) = serving_widgets(&[]).await;
    let path = format!("{}/w", widgets("default"));
    apply_ok(&api, &path, "m1", &applied_widget(json!({"size": 2, "name": "one"}))).await;
    let (status, body) =
        api.patch(&format!("{path}?fieldManager=editor"), MERGE, &json!({"spec": {"note": "x"}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let theirs = applied_widget(json!({"size": 4, "name": "two", "note": "y"}));
    let (status, reply) = apply(&api, &path, "m2", false, &theirs).await;
    assert_status(status, &reply, 409, "Conflict", "applying three fields two other managers own");
    assert_eq!(
        reply["message"],
        "Apply failed with 3 conflicts: conflicts with \"editor\" using example.com/v1:\n- .spec.note\n\
         conflicts with \"m1\":\n- .spec.name\n- .spec.size",
        "{reply}"
    );
    let mut causes: Vec<(String, String, String)> = reply["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .map(|c| {
            let text = |key: &str| c[key].as_str().unwrap_or_default().to_string();
            (text("reason"), text("field"), text("message"))
        })
        .collect();
    causes.sort();
    let cause =
        |field: &str, message: &str| ("FieldManagerConflict".to_string(), field.to_string(), message.to_string());
    assert_eq!(
        causes,
        [
            cause(".spec.name", "conflict with \"m1\""),
            cause(".spec.note", "conflict with \"editor\" using example.com/v1"),
            cause(".spec.size", "conflict with \"m1\""),
        ]
    );
    assert_eq!(api.get_ok(&path).await["spec"], json!({"size": 2, "limit": 10, "name": "one", "note": "x"}));

    // Forced, m2 takes all three from both.
    let (status, forced) = apply(&api, &path, "m2", true, &theirs).await;
    assert_eq!(status, StatusCode::OK, "{forced}");
    for field in ["f:size", "f:name", "f:note"] {
        assert!(owns(&forced, "m2", "Apply", &["f:spec", field]), "{field}: {forced}");
        assert!(!owns(&forced, "m1", "Apply", &["f:spec", field]), "{field}: {forced}");
    }
    assert!(entry(&forced, "editor", "Update").is_none(), "the editor owns nothing any more: {forced}");
}

#[tokio::test]
async fn a_shared_field_dropped_by_one_applier_stays_with_the_other() {
    let (_cluster, api) = serving_widgets(&[]).await;
    let path = format!("{}/w", widgets("default"));
    let name = ["f:spec", "f:name"];
    apply_ok(&api, &path, "a", &applied_widget(json!({"size": 2, "name": "shared"}))).await;
    // The same value from another applier: no conflict, both own it.
    let shared = apply_ok(&api, &path, "b", &applied_widget(json!({"size": 2, "name": "shared"}))).await;
    assert!(owns(&shared, "a", "Apply", &name) && owns(&shared, "b", "Apply", &name), "{shared}");

    // a drops it: the value stays, b's alone (Kubernetes' transfer by sharing).
    let handed = apply_ok(&api, &path, "a", &applied_widget(json!({"size": 2}))).await;
    assert_eq!(handed["spec"]["name"], "shared", "{handed}");
    assert!(!owns(&handed, "a", "Apply", &name) && owns(&handed, "b", "Apply", &name), "{handed}");
    assert!(owns(&handed, "a", "Apply", &["f:spec", "f:size"]), "a still shares the size: {handed}");
    // b may now change it without a conflict with a.
    let changed = apply_ok(&api, &path, "b", &applied_widget(json!({"size": 2, "name": "b's"}))).await;
    assert_eq!(changed["spec"]["name"], "b's");

    // Once its last applier drops it too, the field goes.
    let gone = apply_ok(&api, &path, "b", &applied_widget(json!({"size": 2}))).await;
    assert_eq!(gone["spec"], json!({"size": 2, "limit": 10}), "{gone}");
}
