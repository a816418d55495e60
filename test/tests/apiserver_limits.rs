//! What the apiserver does at etcd's limits: collections larger than one gRPC message, objects
//! larger than etcd stores in one write, resourceVersions from the future. Real etcd, real
//! apiserver; each answer is a Kubernetes `Status` with the code Kubernetes gives it, never a
//! 500.

use std::time::Duration;

use futures::StreamExt;
use rkube_tests::resources::{CONFIG_MAPS, PODS, config_map, namespace, pod};
use rkube_tests::{Api, Cluster, assert_status, eventually};
use serde_json::{Value, json};

async fn start() -> (Cluster, Api) {
    start_with_args(&[]).await
}

async fn start_with_args(args: &[&str]) -> (Cluster, Api) {
    let cluster = Cluster::start_with_args(args).await.expect("cluster starts");
    let api = Api::new(cluster.url());
    (cluster, api)
}

/// Creates `count` ConfigMaps of about `size` bytes each in `ns`, 16 at a time.
async fn fill(api: &Api, ns: &str, count: usize, size: usize) {
    let collection = CONFIG_MAPS.collection(ns);
    let payload = "x".repeat(size);
    futures::stream::iter(0..count)
        .for_each_concurrent(16, |index| {
            let (api, collection, payload) = (api.clone(), collection.clone(), payload.clone());
            async move {
                let body = config_map(ns, &format!("cm-{index:05}"), json!({ "payload": payload }));
                let (status, reply) = api.post(&collection, &body).await;
                assert!(status.is_success(), "creating cm-{index:05}: {reply}");
            }
        })
        .await;
}

fn items(list: &Value) -> usize {
    list["items"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn a_collection_larger_than_one_grpc_message_lists_whole_in_pages_and_watches_from_scratch() {
    let (_cluster, api) = start().await;
    api.create("/api/v1/namespaces", &namespace("big")).await;
    // 700 × 8 KiB ≈ 5.6 MiB: over the 4 MiB gRPC message limit that once made this a 500.
    fill(&api, "big", 700, 8 * 1024).await;
    let collection = CONFIG_MAPS.collection("big");

    let whole = api.get_ok(&collection).await;
    assert_eq!(items(&whole), 700, "an unpaged list returns every object");

    let mut seen = 0;
    let mut path = format!("{collection}?limit=300");
    loop {
        let page = api.get_ok(&path).await;
        assert!(items(&page) <= 300, "a page holds at most its limit");
        seen += items(&page);
        match page["metadata"]["continue"].as_str().filter(|t| !t.is_empty()) {
            Some(token) => path = format!("{collection}?limit=300&continue={}", rkube_tests::escape_query(token)),
            None => break,
        }
    }
    assert_eq!(seen, 700, "the pages together hold every object");

    // A watch without a resourceVersion starts with the whole collection as ADDED events.
    let mut watch = api.watch(&format!("{collection}?watch=true")).await;
    for index in 0..700 {
        let event = watch.expect_non_bookmark(Duration::from_secs(30)).await;
        assert_eq!(event["type"], "ADDED", "initial event {index}: {event}");
    }
}

#[tokio::test]
async fn an_object_larger_than_etcd_stores_in_one_write_is_a_413_and_nothing_is_written() {
    let (_cluster, api) = start().await;
    // 1.8 MB: under the apiserver's 3 MiB body limit, valid, over etcd's 1.5 MiB request limit.
    let mut big = pod("default", "big", json!({}));
    big["spec"]["containers"][0]["env"] = json!([{ "name": "BLOB", "value": "y".repeat(1_800_000) }]);
    let (status, reply) = api.post(&PODS.collection("default"), &big).await;
    assert_status(status, &reply, 413, "RequestEntityTooLarge", "create of a 1.8 MB pod");
    let (status, reply) = api.get(&PODS.item("default", "big")).await;
    assert_status(status, &reply, 404, "NotFound", "the refused pod was not stored");

    // An update that grows an object past the limit is refused the same way: a status patch
    // that makes a Node's image list 1.8 MB.
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "grows"}, "spec": {}});
    let (status, reply) = api.post("/api/v1/nodes", &node).await;
    assert!(status.is_success(), "{reply}");
    let growth =
        json!({"metadata": {"labels": {"l": "1"}}, "status": {"images": [{"names": ["a".repeat(1_800_000)]}]}});
    let (status, reply) = api.patch("/api/v1/nodes/grows/status", "application/merge-patch+json", &growth).await;
    assert_status(status, &reply, 413, "RequestEntityTooLarge", "a status patch that grows a node past etcd's limit");
    let stored = api.get_ok("/api/v1/nodes/grows").await;
    assert!(stored["status"]["images"].is_null(), "nothing of the refused patch was written: {stored}");
}

#[tokio::test]
async fn a_resource_version_from_the_future_is_a_504_too_large_resource_version() {
    let (_cluster, api) = start().await;
    let collection = CONFIG_MAPS.collection("default");
    let (status, reply) = api.get(&format!("{collection}?resourceVersion=99999999&resourceVersionMatch=Exact")).await;
    assert_status(status, &reply, 504, "Timeout", "a list at a future exact resourceVersion");
    assert_eq!(reply["details"]["causes"][0]["reason"], "ResourceVersionTooLarge", "{reply}");
    assert_eq!(reply["details"]["retryAfterSeconds"], 1, "{reply}");
    assert!(
        reply["message"].as_str().is_some_and(|m| m.starts_with("Too large resource version: 99999999")),
        "{reply}"
    );
}

/// Opens a POST that announces a body and sends only the start of it, then stalls: a client
/// slower than announced. Returns the connection (kept open by the caller).
fn stalled_post(cluster: &Cluster, path: &str) -> std::net::TcpStream {
    use std::io::Write;
    let address = cluster.url().trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&address).expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"kind\""
    );
    stream.write_all(head.as_bytes()).expect("send");
    stream
}

/// What the server answered on `stream`, once it answers.
fn answer(mut stream: std::net::TcpStream) -> String {
    use std::io::Read;
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut buffer = vec![0; 4096];
    let read = stream.read(&mut buffer).unwrap_or(0);
    String::from_utf8_lossy(&buffer[..read]).into_owned()
}

#[tokio::test]
async fn a_body_slower_than_announced_is_a_504_at_the_request_timeout() {
    let (cluster, _api) = start_with_args(&["--request-timeout", "1s"]).await;
    let stream = stalled_post(&cluster, &CONFIG_MAPS.collection("default"));
    let reply = tokio::task::spawn_blocking(move || answer(stream)).await.expect("thread");
    assert!(reply.starts_with("HTTP/1.1 504"), "{reply}");
    assert!(reply.contains(r#""reason":"Timeout""#), "a Kubernetes Status: {reply}");
}

#[tokio::test]
async fn over_the_in_flight_limit_a_request_is_a_429_with_retry_after() {
    let (cluster, api) = start_with_args(&["--max-mutating-requests-inflight", "1"]).await;
    let collection = CONFIG_MAPS.collection("default");
    let held = stalled_post(&cluster, &collection);
    // The slow write must hold the only slot before the second one is sent: were the second
    // to arrive first, the slow one would be the one refused.
    eventually(Duration::from_secs(10), "the slow write to hold the mutating slot", || async {
        (api.metric(r#"rkube_apiserver_current_inflight_requests{request_kind="mutating"}"#).await == 1.0).then_some(())
    })
    .await;
    let refused = eventually(Duration::from_secs(10), "a second write to be refused", || async {
        let reply = api
            .send(
                rkube_tests::Method::POST,
                &collection,
                &[("Content-Type", "application/json")],
                // A fresh name each time: a write that got in before the slow one took the
                // slot must not make every later try a 409.
                Some(
                    serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"generateName": "second-", "namespace": "default"}}))
                    .expect("json"),
                ),
            )
            .await;
        (reply.status.as_u16() == 429).then_some(reply)
    })
    .await;
    assert_eq!(refused.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    assert_eq!(refused.body["reason"], "TooManyRequests", "{}", refused.body);
    // Reads are counted apart, and health is never limited.
    api.get_ok(&collection).await;
    // Once the slow write's connection is gone (the server notices a moment later), a write
    // gets through again.
    drop(held);
    eventually(Duration::from_secs(10), "a write once the slow one is gone", || async {
        let (status, _) = api.post(&collection, &config_map("default", "third", json!({}))).await;
        status.is_success().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_deeply_nested_body_is_a_400_at_once_and_other_requests_go_on() {
    let (_cluster, api) = start_with_args(&[]).await;
    let collection = CONFIG_MAPS.collection("default");
    // 60 KB of nesting, in YAML and in JSON.
    let yaml: String = (0..340).map(|level| format!("{}k{level}:\n", " ".repeat(level))).collect();
    let json = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    for (content_type, body) in [("application/yaml", yaml), ("application/json", json)] {
        let reply = api
            .send(rkube_tests::Method::POST, &collection, &[("Content-Type", content_type)], Some(body.into_bytes()))
            .await;
        assert_eq!(reply.status.as_u16(), 400, "{content_type}: {}", reply.body);
        assert!(reply.body["message"].as_str().is_some_and(|m| m.contains("nested too deeply")), "{}", reply.body);
    }
    api.get_ok(&collection).await;
}
