//! `pods/<name>/log` is proxied to the kubelet of the pod's node, found through the Node's
//! status. A stand-in kubelet (a plain HTTP server in the test) answers here; the real
//! rkubelet's log endpoint is tested with the kubelet.

use std::time::Duration;

use rkube_tests::resources::{NODES, PODS, binding, pod};
use rkube_tests::{Api, Cluster, Method, StatusCode, assert_status};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves one kubelet log request: records its request line, answers with `first`, waits,
/// then sends `second` and ends the chunked body.
async fn stand_in_kubelet(listener: TcpListener, first: &'static str, second: &'static str) -> String {
    let (mut socket, _) = listener.accept().await.expect("apiserver connects");
    let mut buf = vec![0u8; 4096];
    let n = socket.read(&mut buf).await.expect("request");
    let request = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
    socket.write_all(head.as_bytes()).await.expect("head");
    for (i, part) in [first, second].iter().enumerate() {
        if i == 1 {
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        socket.write_all(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes()).await.expect("chunk");
    }
    socket.write_all(b"0\r\n\r\n").await.expect("end");
    request
}

async fn node_with_kubelet(api: &Api, name: &str, port: u16) {
    api.create(&NODES.collection(""), &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})).await;
    let status = json!({"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}});
    let (code, reply) =
        api.patch(&format!("{}/status", NODES.item("", name)), "application/merge-patch+json", &status).await;
    assert!(code.is_success(), "{reply}");
}

#[tokio::test]
async fn pod_logs_stream_from_the_kubelet_of_the_pods_node() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("port");
    let port = listener.local_addr().expect("addr").port();
    node_with_kubelet(&api, "n1", port).await;
    api.create(&PODS.collection("default"), &pod("default", "web", json!({}))).await;
    let item = PODS.item("default", "web");
    let (code, reply) = api.post(&format!("{item}/binding"), &binding("web", "n1")).await;
    assert!(code.is_success(), "{reply}");

    let kubelet = tokio::spawn(stand_in_kubelet(listener, "line one\n", "line two\n"));
    let url = format!("{}{item}/log?follow=true&tailLines=10", cluster.url());
    let mut response = reqwest::get(&url).await.expect("log request");
    assert_eq!(response.status(), 200);
    // The first line arrives while the kubelet is still holding the second: it streams.
    let first = tokio::time::timeout(Duration::from_millis(600), response.chunk()).await;
    let first = first.expect("first line streamed before the rest").expect("chunk").expect("data");
    assert_eq!(String::from_utf8_lossy(&first), "line one\n");
    let rest = response.text().await.expect("rest");
    assert_eq!(rest, "line two\n");
    let request = kubelet.await.expect("stand-in kubelet");
    assert!(request.starts_with("GET /containerLogs/default/web/app?"), "{request}");
    assert!(request.contains("follow=true") && request.contains("tailLines=10"), "{request}");
}

#[tokio::test]
async fn log_requests_that_cannot_be_served_get_clear_errors() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    api.create(&PODS.collection("default"), &pod("default", "loose", json!({}))).await;
    let item = PODS.item("default", "loose");
    let reply = api.send(Method::GET, &format!("{item}/log"), &[], None).await;
    assert_status(reply.status, &reply.body, 400, "BadRequest", "a pod without a node");
    let reply = api.send(Method::GET, &format!("{item}/log?container=nope"), &[], None).await;
    assert_status(reply.status, &reply.body, 400, "BadRequest", "an unknown container");
    let reply = api.send(Method::GET, &format!("{}/log", PODS.item("default", "missing")), &[], None).await;
    assert_status(reply.status, &reply.body, 404, "NotFound", "a missing pod");

    // Bound to a node whose kubelet does not answer: 503, not 500.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("port");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    node_with_kubelet(&api, "gone", port).await;
    let (code, reply) = api.post(&format!("{item}/binding"), &binding("loose", "gone")).await;
    assert!(code.is_success(), "{reply}");
    let reply = api.send(Method::GET, &format!("{item}/log"), &[], None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.body);
}
