//! Watches: resuming from a resourceVersion, 410 Expired after compaction, bookmarks,
//! `sendInitialEvents` watch-lists, selectors (objects leaving a selector arrive as DELETED) and
//! `timeoutSeconds`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rkube_tests::resources::{CONFIG_MAPS, PODS, binding, config_map, pod, resource_version};
use rkube_tests::{Api, Cluster, StatusCode, WatchStream, assert_status, escape_query};
use serde_json::{Value, json};

/// How long a test waits for an event that must come.
const EVENT_WAIT: Duration = Duration::from_secs(10);
/// How long a test listens to be sure an event does not come.
const QUIET_WINDOW: Duration = Duration::from_millis(1500);

async fn start_with(args: &[&str]) -> (Cluster, Api) {
    let cluster = Cluster::start_with_args(args).await.expect("cluster starts");
    let api = Api::new(cluster.url());
    (cluster, api)
}

fn name_of(event: &Value) -> &str {
    event["object"]["metadata"]["name"].as_str().unwrap_or_default()
}

fn describe(event: &Value) -> String {
    format!("{} {}", event["type"].as_str().unwrap_or("?"), name_of(event))
}

/// The current resourceVersion of the config map collection in `default`.
async fn list_rv(api: &Api, collection: &str) -> String {
    let list = api.get_ok(collection).await;
    list["metadata"]["resourceVersion"].as_str().expect("list resourceVersion").to_string()
}

async fn open(api: &Api, path: &str) -> WatchStream {
    let watch = api.watch(path).await;
    assert_eq!(watch.status, StatusCode::OK, "watch {path}");
    watch
}

#[tokio::test]
async fn watch_from_a_resource_version_delivers_exactly_the_later_events_in_order() {
    let (_cluster, api) = start_with(&[]).await;
    let collection = CONFIG_MAPS.collection("default");
    let a = api.create(&collection, &config_map("default", "a", json!({ "v": "1" }))).await;
    let b = api.create(&collection, &config_map("default", "b", json!({ "v": "1" }))).await;
    let mut a_changed = a.clone();
    a_changed["data"]["v"] = json!("2");
    let (status, a_changed) = api.put(&CONFIG_MAPS.item("default", "a"), &a_changed).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.delete(&CONFIG_MAPS.item("default", "b")).await;
    assert!(status.is_success());

    let mut watch = open(&api, &format!("{collection}?watch=true&resourceVersion={}", resource_version(&a))).await;
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(watch.expect_non_bookmark(EVENT_WAIT).await);
    }
    let seen: Vec<String> = events.iter().map(describe).collect();
    assert_eq!(seen, ["ADDED b", "MODIFIED a", "DELETED b"], "events after a's creation, in order");
    assert_eq!(events[0]["object"], b, "ADDED carries the created object");
    assert_eq!(events[1]["object"], a_changed, "MODIFIED carries the updated object");
    assert_eq!(events[2]["object"]["data"]["v"], "1", "DELETED carries the last state: {}", events[2]);
    assert_eq!(events[0]["object"]["kind"], "ConfigMap", "watch objects carry kind");
    let revisions: Vec<i64> = events.iter().map(|event| resource_version(&event["object"])).collect();
    assert!(revisions.windows(2).all(|pair| pair[0] < pair[1]), "resourceVersions must increase: {revisions:?}");

    // The watch continues with live events, and delivers nothing twice.
    api.create(&collection, &config_map("default", "c", json!({}))).await;
    let live = watch.expect_non_bookmark(EVENT_WAIT).await;
    assert_eq!(describe(&live), "ADDED c");
    let extra = watch.non_bookmarks_within(QUIET_WINDOW).await;
    assert!(extra.is_empty(), "no further events expected: {extra:?}");
}

#[tokio::test]
async fn watch_without_a_resource_version_starts_with_the_current_objects() {
    // What the official Python client's `Watch().stream(list_fn)` relies on.
    let (_cluster, api) = start_with(&[]).await;
    let collection = CONFIG_MAPS.collection("default");
    for name in ["a", "b"] {
        api.create(&collection, &config_map("default", name, json!({}))).await;
    }
    let mut watch = open(&api, &format!("{collection}?watch=true")).await;
    let mut initial = BTreeSet::new();
    for _ in 0..2 {
        let event = watch.expect_non_bookmark(EVENT_WAIT).await;
        assert_eq!(event["type"], "ADDED", "{event}");
        initial.insert(name_of(&event).to_string());
    }
    assert_eq!(initial, BTreeSet::from(["a".to_string(), "b".to_string()]));
    api.create(&collection, &config_map("default", "c", json!({}))).await;
    assert_eq!(describe(&watch.expect_non_bookmark(EVENT_WAIT).await), "ADDED c");
    assert!(watch.non_bookmarks_within(QUIET_WINDOW).await.is_empty(), "nothing is delivered twice");
}

#[tokio::test]
async fn without_the_watch_cache_a_watch_from_a_compacted_resource_version_fails_with_410_expired() {
    // With the watch cache the window decides, not etcd's compaction: test/tests/watch_cache.rs.
    let (cluster, api) = start_with(&["--watch-cache=false"]).await;
    let collection = CONFIG_MAPS.collection("default");
    let item = CONFIG_MAPS.item("default", "churn");
    let created = api.create(&collection, &config_map("default", "churn", json!({ "v": "0" }))).await;
    for round in 1..=3 {
        let mut object = api.get_ok(&item).await;
        object["data"]["v"] = json!(round.to_string());
        assert_eq!(api.put(&item, &object).await.0, StatusCode::OK);
    }
    let revision = cluster.etcd.current_revision().await.expect("etcd revision");
    cluster.etcd.compact(revision).await.expect("compaction");

    let mut watch = api.watch(&format!("{collection}?watch=true&resourceVersion={}", resource_version(&created))).await;
    let first = watch.expect_event(EVENT_WAIT).await;
    if watch.status == StatusCode::OK {
        // Kubernetes' shape: the watch starts, then an ERROR event carries the Status.
        assert_eq!(first["type"], "ERROR", "{first}");
        let status = &first["object"];
        assert_eq!(status["kind"], "Status", "{first}");
        assert_eq!(status["code"], 410, "{first}");
        assert_eq!(status["reason"], "Expired", "{first}");
    } else {
        assert_status(watch.status, &first, 410, "Expired", "watch from a compacted revision");
    }

    // The client's recovery works: relist, then watch from the list's revision.
    let rv = list_rv(&api, &collection).await;
    let mut watch = open(&api, &format!("{collection}?watch=true&resourceVersion={rv}")).await;
    let mut object = api.get_ok(&item).await;
    object["data"]["v"] = json!("after");
    assert_eq!(api.put(&item, &object).await.0, StatusCode::OK);
    let event = watch.expect_non_bookmark(EVENT_WAIT).await;
    assert_eq!(describe(&event), "MODIFIED churn");
}

#[tokio::test]
async fn continue_token_from_a_compacted_revision_fails_with_410_expired() {
    let (cluster, api) = start_with(&[]).await;
    let collection = CONFIG_MAPS.collection("default");
    for index in 0..5 {
        api.create(&collection, &config_map("default", &format!("c{index}"), json!({}))).await;
    }
    let first = api.get_ok(&format!("{collection}?limit=2")).await;
    let token = first["metadata"]["continue"].as_str().expect("continue token").to_string();
    api.create(&collection, &config_map("default", "later", json!({}))).await;
    let revision = cluster.etcd.current_revision().await.expect("etcd revision");
    cluster.etcd.compact(revision).await.expect("compaction");

    let (status, reply) = api.get(&format!("{collection}?limit=2&continue={}", escape_query(&token))).await;
    assert_status(status, &reply, 410, "Expired", "continue at a compacted revision");
}

#[tokio::test]
async fn bookmarks_arrive_when_allowed_and_track_delivered_events() {
    let (_cluster, api) = start_with(&["--watch-bookmark-interval-seconds", "1"]).await;
    let collection = CONFIG_MAPS.collection("default");
    let rv = list_rv(&api, &collection).await;
    let start_rv: i64 = rv.parse().expect("numeric RV");
    let mut with_bookmarks =
        open(&api, &format!("{collection}?watch=true&allowWatchBookmarks=true&resourceVersion={rv}")).await;
    let mut without_bookmarks = open(&api, &format!("{collection}?watch=true&resourceVersion={rv}")).await;

    let bookmark = with_bookmarks.expect_event(Duration::from_secs(5)).await;
    assert_eq!(bookmark["type"], "BOOKMARK", "{bookmark}");
    assert_eq!(bookmark["object"]["kind"], "ConfigMap", "a bookmark carries the watched kind: {bookmark}");
    assert_eq!(bookmark["object"]["apiVersion"], "v1", "{bookmark}");
    assert!(resource_version(&bookmark["object"]) >= start_rv, "{bookmark}");

    let created = api.create(&collection, &config_map("default", "marked", json!({}))).await;
    let event = with_bookmarks.expect_non_bookmark(EVENT_WAIT).await;
    assert_eq!(describe(&event), "ADDED marked");
    let later = with_bookmarks.expect_event(Duration::from_secs(5)).await;
    assert_eq!(later["type"], "BOOKMARK", "{later}");
    assert!(
        resource_version(&later["object"]) >= resource_version(&created),
        "a bookmark after an event must not go back before it: {later}"
    );

    let deadline = Instant::now() + Duration::from_secs(3);
    while let Ok(Some(event)) = without_bookmarks.next_within(deadline.saturating_duration_since(Instant::now())).await
    {
        assert_ne!(event["type"], "BOOKMARK", "bookmarks only when allowWatchBookmarks=true: {event}");
    }
}

#[tokio::test]
async fn send_initial_events_lists_existing_objects_then_marks_the_end_with_a_bookmark() {
    let (_cluster, api) = start_with(&[]).await;
    let collection = CONFIG_MAPS.collection("default");
    let mut newest = 0;
    for name in ["a", "b", "c"] {
        newest = resource_version(&api.create(&collection, &config_map("default", name, json!({}))).await);
    }
    let path = format!(
        "{collection}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan"
    );
    let mut watch = open(&api, &path).await;
    let mut initial = BTreeSet::new();
    let end = loop {
        let event = watch.expect_event(EVENT_WAIT).await;
        match event["type"].as_str() {
            Some("ADDED") => assert!(initial.insert(name_of(&event).to_string()), "duplicate initial event {event}"),
            Some("BOOKMARK") if event["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true" => {
                break event;
            }
            Some("BOOKMARK") => {}
            _ => panic!("only ADDED events precede the initial-events-end bookmark: {event}"),
        }
    };
    assert_eq!(initial, BTreeSet::from(["a".to_string(), "b".to_string(), "c".to_string()]));
    assert!(resource_version(&end["object"]) >= newest, "the end bookmark covers the initial state: {end}");

    let mut b = api.get_ok(&CONFIG_MAPS.item("default", "b")).await;
    b["data"] = json!({ "changed": "yes" });
    assert_eq!(api.put(&CONFIG_MAPS.item("default", "b"), &b).await.0, StatusCode::OK);
    assert_eq!(describe(&watch.expect_non_bookmark(EVENT_WAIT).await), "MODIFIED b");
}

#[tokio::test]
async fn label_selector_watch_turns_leaving_and_entering_the_selector_into_deleted_and_added() {
    let (_cluster, api) = start_with(&[]).await;
    let collection = PODS.collection("default");
    let rv = list_rv(&api, &collection).await;
    let mut watch =
        open(&api, &format!("{collection}?watch=true&resourceVersion={rv}&labelSelector={}", escape_query("app=web")))
            .await;
    let item = PODS.item("default", "p");
    let merge = "application/merge-patch+json";

    api.create(&collection, &pod("default", "p", json!({ "app": "web" }))).await;
    api.create(&collection, &pod("default", "q", json!({ "app": "db" }))).await;
    assert_eq!(api.patch(&item, merge, &json!({ "metadata": { "labels": { "app": "db" } } })).await.0, StatusCode::OK);
    assert_eq!(api.patch(&item, merge, &json!({ "metadata": { "labels": { "app": "web" } } })).await.0, StatusCode::OK);
    assert_eq!(
        api.patch(&item, merge, &json!({ "metadata": { "annotations": { "note": "x" } } })).await.0,
        StatusCode::OK
    );

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(describe(&watch.expect_non_bookmark(EVENT_WAIT).await));
    }
    assert_eq!(seen, ["ADDED p", "DELETED p", "ADDED p", "MODIFIED p"]);
    let extra = watch.non_bookmarks_within(QUIET_WINDOW).await;
    assert!(extra.is_empty(), "q never matched app=web: {extra:?}");
}

#[tokio::test]
async fn field_selector_watch_sees_only_the_selected_object() {
    let (_cluster, api) = start_with(&[]).await;
    let collection = CONFIG_MAPS.collection("default");
    let rv = list_rv(&api, &collection).await;
    let selector = escape_query("metadata.name=a");
    let mut watch = open(&api, &format!("{collection}?watch=true&resourceVersion={rv}&fieldSelector={selector}")).await;
    api.create(&collection, &config_map("default", "b", json!({ "v": "1" }))).await;
    api.create(&collection, &config_map("default", "a", json!({ "v": "1" }))).await;
    for name in ["b", "a"] {
        let patch = json!({ "data": { "v": "2" } });
        let (status, _) = api.patch(&CONFIG_MAPS.item("default", name), "application/merge-patch+json", &patch).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert!(api.delete(&CONFIG_MAPS.item("default", "a")).await.0.is_success());
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(describe(&watch.expect_non_bookmark(EVENT_WAIT).await));
    }
    assert_eq!(seen, ["ADDED a", "MODIFIED a", "DELETED a"]);
    assert!(watch.non_bookmarks_within(QUIET_WINDOW).await.is_empty());
}

#[tokio::test]
async fn a_node_watch_sees_a_pod_arrive_when_it_is_bound_to_that_node() {
    let (_cluster, api) = start_with(&[]).await;
    let collection = PODS.collection("default");
    api.create(&collection, &pod("default", "unbound", json!({}))).await;
    let selector = escape_query("spec.nodeName=n1");
    let mut watch = open(&api, &format!("{}?watch=true&fieldSelector={selector}", PODS.all_namespaces())).await;
    // Without a resourceVersion the watch starts with the current state: nothing matches yet.
    assert!(watch.non_bookmarks_within(Duration::from_millis(500)).await.is_empty());
    let (status, reply) =
        api.post(&format!("{}/binding", PODS.item("default", "unbound")), &binding("unbound", "n1")).await;
    assert!(status.is_success(), "{reply}");
    let event = watch.expect_non_bookmark(EVENT_WAIT).await;
    assert_eq!(describe(&event), "ADDED unbound", "{event}");
    assert_eq!(event["object"]["spec"]["nodeName"], "n1");
}

#[tokio::test]
async fn timeout_seconds_ends_the_watch() {
    let (_cluster, api) = start_with(&[]).await;
    let begun = Instant::now();
    let mut watch = open(&api, &format!("{}?watch=true&timeoutSeconds=1", CONFIG_MAPS.collection("default"))).await;
    loop {
        match watch.next_within(Duration::from_secs(10)).await {
            Ok(Some(event)) => assert_eq!(event["type"], "BOOKMARK", "nothing changed, so no events: {event}"),
            Ok(None) => break,
            Err(_) => panic!("a watch with timeoutSeconds=1 was still open after 10s"),
        }
    }
    assert!(begun.elapsed() >= Duration::from_millis(900), "ended too early: {:?}", begun.elapsed());
}
