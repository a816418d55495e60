//! The watch cache against real etcd and the real apiserver: one etcd watch per resource
//! however many clients watch, watches that survive an etcd restart and a compaction, 410
//! below the window, a 504 for a resourceVersion from the future, and a watcher that does not
//! read disconnected instead of buffered.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use rkube_tests::resources::{CONFIG_MAPS, NAMESPACES, config_map, resource_version};
use rkube_tests::{Api, Cluster, assert_status, eventually};
use serde_json::{Value, json};

const EVENT_WAIT: Duration = Duration::from_secs(10);

async fn start_with(args: &[&str]) -> (Cluster, Api) {
    let cluster = Cluster::start_with_args(args).await.expect("cluster starts");
    let api = Api::new(cluster.url());
    (cluster, api)
}

async fn etcd_metric(cluster: &Cluster, name: &str) -> f64 {
    cluster.etcd.metric(name).await.expect("etcd's metrics")
}

fn rv(object: &Value) -> i64 {
    resource_version(object)
}

#[tokio::test]
async fn many_client_watches_cost_etcd_no_more_watches_than_one() {
    let (cluster, api) = start_with(&[]).await;
    let collection = CONFIG_MAPS.collection("default");
    // The apiserver's caches are up once a list is answered; count etcd's watchers then.
    api.get_ok(&collection).await;
    let mut first = api.watch(&format!("{collection}?watch=true")).await;
    let before = etcd_metric(&cluster, "etcd_debugging_mvcc_watcher_total").await;
    let mut watches = Vec::new();
    for _ in 0..50 {
        watches.push(api.watch(&format!("{collection}?watch=true")).await);
    }
    let created = api.create(&collection, &config_map("default", "fanout", json!({}))).await;
    for watch in watches.iter_mut().chain([&mut first]) {
        let event = watch.expect_non_bookmark(EVENT_WAIT).await;
        assert_eq!((event["type"].as_str(), rv(&event["object"])), (Some("ADDED"), rv(&created)), "{event}");
    }
    let after = etcd_metric(&cluster, "etcd_debugging_mvcc_watcher_total").await;
    assert_eq!(after, before, "51 client watches, and etcd holds as many watchers as with one");
}

#[tokio::test]
async fn a_watch_served_from_the_cache_survives_an_etcd_restart() {
    let (mut cluster, api) = start_with(&[]).await;
    let collection = CONFIG_MAPS.collection("default");
    let created = api.create(&collection, &config_map("default", "before", json!({}))).await;
    let mut watch = api.watch(&format!("{collection}?watch=true&resourceVersion={}", rv(&created))).await;
    cluster.etcd.stop().await;
    cluster.etcd.restart().await.expect("etcd restarts");
    let after = eventually(Duration::from_secs(20), "writes to work again", || async {
        let (status, reply) = api.post(&collection, &config_map("default", "after", json!({}))).await;
        status.is_success().then_some(reply)
    })
    .await;
    let event = watch.expect_non_bookmark(EVENT_WAIT).await;
    assert_eq!((event["type"].as_str(), rv(&event["object"])), (Some("ADDED"), rv(&after)), "the same watch: {event}");
}

#[tokio::test]
async fn the_window_not_etcds_compaction_decides_how_far_back_a_watch_may_start() {
    let (cluster, api) = start_with(&["--watch-cache-size", "3"]).await;
    let collection = CONFIG_MAPS.collection("default");
    let mut revisions = Vec::new();
    for i in 0..6 {
        revisions.push(rv(&api.create(&collection, &config_map("default", &format!("w{i}"), json!({}))).await));
    }
    // The cache has applied the last write before etcd compacts: a watcher still behind
    // the compaction would be cancelled by etcd and the cache would relist, losing its window.
    api.get_ok(&format!("{collection}?resourceVersion={}&resourceVersionMatch=NotOlderThan", revisions[5])).await;
    let revision = cluster.etcd.current_revision().await.expect("etcd revision");
    cluster.etcd.compact(revision).await.expect("compaction");

    // Compacted in etcd, but in the window: served, every later change once.
    let mut inside = api.watch(&format!("{collection}?watch=true&resourceVersion={}", revisions[3])).await;
    for expected in &revisions[4..] {
        assert_eq!(rv(&inside.expect_non_bookmark(EVENT_WAIT).await["object"]), *expected);
    }
    // Before the window: one ERROR event with a 410 Expired Status, then the stream ends.
    let mut before = api.watch(&format!("{collection}?watch=true&resourceVersion={}", revisions[1])).await;
    let error = before.expect_event(EVENT_WAIT).await;
    assert_eq!(error["type"], "ERROR", "{error}");
    assert_eq!((error["object"]["code"].as_i64(), error["object"]["reason"].as_str()), (Some(410), Some("Expired")));
}

#[tokio::test]
async fn a_consistent_read_after_a_write_elsewhere_comes_from_the_cache_and_shows_that_write() {
    let (_cluster, api) = start_with(&[]).await;
    let collection = CONFIG_MAPS.collection("default");
    api.create(&collection, &config_map("default", "mine", json!({}))).await;
    let lists = r#"rkube_apiserver_watch_cache_lists_total{resource="configmaps"}"#;
    for round in 0..5 {
        // Each write to another resource moves etcd's revision past the ConfigMaps' last change.
        let namespace =
            api.create(&NAMESPACES.collection(""), &json!({"metadata": {"name": format!("other-{round}")}})).await;
        let before = api.metric(lists).await;
        let list = api.get_ok(&collection).await;
        let shown: i64 = list["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse().ok()).expect("an rv");
        assert!(shown >= rv(&namespace), "a consistent list shows every write that finished before it: {list}");
        assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
        assert_eq!(api.metric(lists).await, before + 1.0, "served from the watch cache, proven current");
        // A watch without a resourceVersion starts there as well, from the cache.
        let mut watch = api.watch(&format!("{collection}?watch=true")).await;
        let added = watch.expect_non_bookmark(EVENT_WAIT).await;
        assert_eq!(added["object"]["metadata"]["name"], "mine", "{added}");
    }
}

#[tokio::test]
async fn a_resource_version_from_the_future_is_a_504_for_a_watch_and_a_list() {
    let (_cluster, api) = start_with(&[]).await;
    let collection = CONFIG_MAPS.collection("default");
    let (status, reply) = api.get(&format!("{collection}?watch=true&resourceVersion=99999999")).await;
    assert_status(status, &reply, 504, "Timeout", "a watch from a future resourceVersion");
    assert_eq!(reply["details"]["causes"][0]["reason"], "ResourceVersionTooLarge", "{reply}");
    let (status, reply) = api.get(&format!("{collection}?resourceVersion=99999999")).await;
    assert_status(status, &reply, 504, "Timeout", "a NotOlderThan list at a future resourceVersion");
}

#[tokio::test]
async fn a_watcher_that_does_not_read_is_disconnected_and_the_apiserver_keeps_serving() {
    let (cluster, api) = start_with(&["--watch-cache-watcher-queue-length", "20"]).await;
    let collection = CONFIG_MAPS.collection("default");
    api.get_ok(&collection).await;
    // A client that opens a watch and never reads it.
    let address = cluster.url().trim_start_matches("http://").to_string();
    let mut stuck = TcpStream::connect(&address).expect("connect");
    write!(stuck, "GET {collection}?watch=true&resourceVersion=0 HTTP/1.1\r\nHost: {address}\r\n\r\n").expect("send");
    // Enough changes of 64 KB to fill its socket buffers, then its queue of 20 events.
    let payload = "x".repeat(64 * 1024);
    for i in 0..200 {
        let body = config_map("default", &format!("big-{i:03}"), json!({ "payload": payload }));
        let (status, reply) = api.post(&collection, &body).await;
        assert!(status.is_success(), "{reply}");
    }
    let terminated = eventually(EVENT_WAIT, "the stuck watcher to be disconnected", || async {
        let value = api.metric("rkube_apiserver_watch_cache_terminated_watchers_total{resource=\"configmaps\"}").await;
        (value >= 1.0).then_some(value)
    })
    .await;
    assert!(terminated >= 1.0);
    // Everyone else is served as before.
    let list = api.get_ok(&collection).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(200));
    drop(stuck);
}
