//! Protobuf answers: a client that names `application/vnd.kubernetes.protobuf` first in
//! `Accept` (client-go's typed clients do) gets objects, lists and watch events as
//! Kubernetes protobuf, for every served kind; read back, they say what the JSON answer says.

use std::time::Duration;

use futures::StreamExt;
use rkube_tests::resources::{ALL, CONFIG_MAPS, namespace};
use rkube_tests::{Api, Cluster, Method, StatusCode};
use serde_json::Value;

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf, application/json";

/// `decoded` holds every field of `expected` with the same value; it may hold more (the
/// zero values protobuf always carries and JSON omits).
fn assert_covers(decoded: &Value, expected: &Value, path: &str) {
    match (decoded, expected) {
        (Value::Object(d), Value::Object(e)) => {
            for (key, value) in e {
                let got = d.get(key).unwrap_or_else(|| panic!("{path}.{key} missing from {decoded}"));
                assert_covers(got, value, &format!("{path}.{key}"));
            }
        }
        (Value::Array(d), Value::Array(e)) => {
            assert_eq!(d.len(), e.len(), "{path}");
            for (i, (got, want)) in d.iter().zip(e).enumerate() {
                assert_covers(got, want, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(decoded, expected, "{path}"),
    }
}

async fn get_protobuf(api: &Api, path: &str) -> Value {
    let reply = api.send(Method::GET, path, &[("accept", PROTOBUF)], None).await;
    assert_eq!(reply.status, StatusCode::OK, "GET {path}: {}", reply.body);
    let content_type = reply.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert_eq!(content_type, "application/vnd.kubernetes.protobuf", "GET {path}");
    // Api::send keeps a body that is not JSON as lossy text; ask again for the bytes.
    let url = api.url(path);
    let bytes = reqwest::Client::new()
        .get(url)
        .header("accept", PROTOBUF)
        .send()
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("body");
    rkube_protobuf::decode(&bytes).unwrap_or_else(|e| panic!("GET {path}: not a protobuf body: {e}"))
}

#[tokio::test]
async fn every_kind_reads_back_the_same_in_protobuf_as_in_json() {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    api.create("/api/v1/namespaces", &namespace("wire")).await;
    for resource in ALL.iter().filter(|r| r.kind != "Namespace") {
        let name = format!("wire-{}", resource.plural);
        api.create(&resource.collection("wire"), &resource.sample("wire", &name)).await;
        let item = resource.item("wire", &name);
        let json = api.get_ok(&item).await;
        let decoded = get_protobuf(&api, &item).await;
        assert_covers(&decoded, &json, resource.kind);
        let list_json = api.get_ok(&resource.collection("wire")).await;
        let list = get_protobuf(&api, &resource.collection("wire")).await;
        assert_eq!(list["kind"], format!("{}List", resource.kind));
        assert_eq!(list["metadata"]["resourceVersion"], list_json["metadata"]["resourceVersion"]);
        assert_eq!(
            list["items"].as_array().map(Vec::len),
            list_json["items"].as_array().map(Vec::len),
            "{}",
            resource.kind
        );
    }
    // JSON stays the default, and a client preferring JSON gets JSON.
    let reply = api
        .send(
            Method::GET,
            "/api/v1/namespaces/wire",
            &[("accept", "application/json, application/vnd.kubernetes.protobuf")],
            None,
        )
        .await;
    assert_eq!(reply.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
    // Errors stay JSON Statuses for a protobuf client too (it decodes by Content-Type).
    let reply = api.send(Method::GET, "/api/v1/namespaces/wire/pods/nobody", &[("accept", PROTOBUF)], None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
    assert_eq!(
        (reply.body["kind"].as_str(), reply.body["reason"].as_str()),
        (Some("Status"), Some("NotFound")),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn watches_stream_length_prefixed_protobuf_events() {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    let collection = CONFIG_MAPS.collection("default");
    api.create(&collection, &CONFIG_MAPS.sample("default", "first")).await;
    let url = api.url(&format!("{collection}?watch=true&resourceVersion=0&allowWatchBookmarks=true"));
    let response = reqwest::Client::new()
        .get(url)
        .header("accept", "application/vnd.kubernetes.protobuf;stream=watch, application/json")
        .send()
        .await
        .expect("watch");
    assert_eq!(
        response.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/vnd.kubernetes.protobuf;stream=watch")
    );
    let mut chunks = response.bytes_stream();
    let mut buffer = Vec::new();
    let mut events = Vec::new();
    let mut created = false;
    while events.len() < 2 {
        // Split off every whole frame: a 4-byte big-endian length, then the WatchEvent.
        while buffer.len() >= 4 {
            let length = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
            if buffer.len() < 4 + length {
                break;
            }
            let frame: Vec<u8> = buffer.drain(..4 + length).collect();
            let (kind, object) = rkube_protobuf::decode_watch_event(&frame).expect("a protobuf watch frame");
            if kind != "BOOKMARK" {
                events.push((kind, object));
            }
        }
        if events.len() == 1 && !created {
            api.create(&collection, &CONFIG_MAPS.sample("default", "second")).await;
            created = true;
        }
        if events.len() >= 2 {
            break;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), chunks.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .expect("a chunk");
        buffer.extend_from_slice(&chunk);
    }
    assert_eq!(events[0].0, "ADDED");
    assert_eq!(events[0].1["metadata"]["name"], "first");
    assert_eq!(events[0].1["data"]["key"], "value");
    assert_eq!((events[1].0.as_str(), &events[1].1["metadata"]["name"]), ("ADDED", &Value::from("second")));
}
