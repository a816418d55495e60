//! rkube-client watches against a real apiserver: Added, Modified and Deleted in order from a
//! list's resourceVersion, bookmarks when asked for, selectors, and the stream ending when the
//! server's `timeoutSeconds` runs out.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use rkube_client::{Api, Client, Config, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams, WatchStream};
use rkube_tests::Cluster;
use rkube_tests::resources::config_map;
use serde_json::{Value, json};

/// How long a test waits for an event that must come.
const EVENT_WAIT: Duration = Duration::from_secs(10);

/// How often the apiserver sends a quiet watch that asked for them a bookmark, in the test
/// that sets it (`--watch-bookmark-interval-seconds`).
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

async fn start_with(args: &[&str]) -> (Cluster, Api<ConfigMap>) {
    let cluster = Cluster::start_with_args(args).await.expect("cluster starts");
    let client = Client::new(Config::new(cluster.url().parse().expect("cluster URL"))).expect("client");
    (cluster, Api::namespaced(client, "default"))
}

fn cm(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(config_map("default", name, data)).expect("a ConfigMap")
}

/// The next event that is not a bookmark, as `TYPE name`.
async fn next_change(events: &mut WatchStream<ConfigMap>) -> String {
    loop {
        let event = tokio::time::timeout(EVENT_WAIT, events.next())
            .await
            .expect("an event in time")
            .expect("the stream is still open")
            .expect("the event decodes");
        let (kind, obj) = match event {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(status) => panic!("unexpected ERROR event: {status:?}"),
        };
        return format!("{kind} {}", obj.metadata.name.unwrap_or_default());
    }
}

async fn list_rv(api: &Api<ConfigMap>) -> String {
    api.list(&ListParams::default()).await.expect("list").metadata.resource_version.expect("list resourceVersion")
}

#[tokio::test]
async fn a_watch_from_a_lists_resource_version_sees_added_modified_and_deleted_in_order() {
    let (_cluster, api) = start_with(&[]).await;
    api.create(&PostParams::default(), &cm("before", json!({}))).await.unwrap();
    let rv = list_rv(&api).await;
    let mut events = api.watch(&WatchParams::default(), &rv).await.unwrap();

    let created = api.create(&PostParams::default(), &cm("a", json!({"v": "1"}))).await.unwrap();
    let mut changed = created.clone();
    changed.data = Some([("v".to_string(), "2".to_string())].into());
    api.replace("a", &PostParams::default(), &changed).await.unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();

    assert_eq!(next_change(&mut events).await, "ADDED a");
    assert_eq!(next_change(&mut events).await, "MODIFIED a");
    assert_eq!(next_change(&mut events).await, "DELETED a");
}

#[tokio::test]
async fn a_deleted_event_carries_the_objects_last_state() {
    let (_cluster, api) = start_with(&[]).await;
    api.create(&PostParams::default(), &cm("gone", json!({"last": "state"}))).await.unwrap();
    let rv = list_rv(&api).await;
    let mut events = api.watch(&WatchParams::default(), &rv).await.unwrap();
    api.delete("gone", &DeleteParams::default()).await.unwrap();
    let event = tokio::time::timeout(EVENT_WAIT, events.next()).await.expect("in time").expect("open").unwrap();
    match event {
        WatchEvent::Deleted(obj) => assert_eq!(obj.data.unwrap()["last"], "state"),
        other => panic!("expected DELETED, got {other:?}"),
    }
}

#[tokio::test]
async fn bookmarks_arrive_when_asked_for_and_carry_a_newer_resource_version() {
    let interval = BOOKMARK_INTERVAL.as_secs().to_string();
    let (_cluster, api) = start_with(&["--watch-bookmark-interval-seconds", &interval]).await;
    let rv = list_rv(&api).await;
    let mut events = api.watch(&WatchParams::default(), &rv).await.unwrap();
    let created = api.create(&PostParams::default(), &cm("marked", json!({}))).await.unwrap();
    let created_rv: i64 = created.metadata.resource_version.unwrap().parse().unwrap();

    let deadline = Instant::now() + EVENT_WAIT;
    let mut saw_added = false;
    loop {
        let event = tokio::time::timeout_at(deadline.into(), events.next())
            .await
            .expect("a bookmark within the wait")
            .expect("open")
            .expect("decodes");
        match event {
            WatchEvent::Added(_) => saw_added = true,
            WatchEvent::Bookmark(bookmark) if saw_added => {
                let rv: i64 = bookmark.metadata.resource_version.parse().expect("numeric RV");
                assert!(rv >= created_rv, "a bookmark after an event is not older than it: {rv} < {created_rv}");
                break;
            }
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    // Without bookmarks asked for, none come. Watched for as long as a watch started after it,
    // asking for bookmarks, takes to get two of them (and at least two intervals): the quiet
    // watch was open through a whole interval in which the server was sending bookmarks.
    let rv = list_rv(&api).await;
    let mut quiet = api.watch(&WatchParams::default().disable_bookmarks(), &rv).await.unwrap();
    let quiet_since = tokio::time::Instant::now();
    let mut asking = api.watch(&WatchParams::default(), &rv).await.unwrap();
    let two_bookmarks = async {
        for _ in 0..2 {
            match asking.next().await {
                Some(Ok(WatchEvent::Bookmark(_))) => {}
                other => panic!("nothing but bookmarks on the watch that asked for them: {other:?}"),
            }
        }
        tokio::time::sleep_until(quiet_since + BOOKMARK_INTERVAL * 2).await;
    };
    let window = async {
        tokio::select! {
            event = quiet.next() => panic!("nothing happened, so nothing arrives: {event:?}"),
            () = two_bookmarks => {}
        }
    };
    tokio::time::timeout(EVENT_WAIT, window).await.expect("two bookmarks for the watch that asked, within the wait");
}

#[tokio::test]
async fn a_label_selector_filters_the_watch() {
    let (_cluster, api) = start_with(&[]).await;
    let rv = list_rv(&api).await;
    let mut events = api.watch(&WatchParams::default().labels("team=blue"), &rv).await.unwrap();
    let mut red = cm("red", json!({}));
    red.metadata.labels = Some([("team".to_string(), "red".to_string())].into());
    api.create(&PostParams::default(), &red).await.unwrap();
    let mut blue = cm("blue", json!({}));
    blue.metadata.labels = Some([("team".to_string(), "blue".to_string())].into());
    api.create(&PostParams::default(), &blue).await.unwrap();
    assert_eq!(next_change(&mut events).await, "ADDED blue");
}

#[tokio::test]
async fn the_stream_ends_when_the_servers_timeout_runs_out() {
    let (_cluster, api) = start_with(&[]).await;
    let rv = list_rv(&api).await;
    let started = Instant::now();
    let mut events = api.watch(&WatchParams::default().timeout(1).disable_bookmarks(), &rv).await.unwrap();
    let end = tokio::time::timeout(EVENT_WAIT, events.next()).await.expect("the server ends the watch in time");
    assert!(end.is_none(), "no event, just the end: {end:?}");
    assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
}
