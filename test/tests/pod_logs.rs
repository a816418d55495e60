//! `pods/<name>/log` is proxied to the kubelet of the pod's node, found through the Node's
//! status. A stand-in kubelet (a plain HTTP server in the test) answers here; the real
//! rkubelet's log endpoint is tested with the kubelet.

use std::time::Duration;

use rkube_tests::resources::{NODES, PODS, binding, pod};
use rkube_tests::{Api, Cluster, Method, StatusCode, assert_status};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How long the first streamed line may take.
const WAIT: Duration = Duration::from_secs(30);

/// Serves one kubelet log request: records its request line, answers with `first`, holds the
/// rest of the body until `release` fires, then sends `second` and ends the chunked body.
async fn stand_in_kubelet(
    listener: TcpListener,
    first: &'static str,
    release: oneshot::Receiver<()>,
    second: &'static str,
) -> String {
    let (mut socket, _) = listener.accept().await.expect("apiserver connects");
    let mut buf = vec![0u8; 4096];
    let n = socket.read(&mut buf).await.expect("request");
    let request = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
    socket.write_all(head.as_bytes()).await.expect("head");
    socket.write_all(format!("{:x}\r\n{first}\r\n", first.len()).as_bytes()).await.expect("first chunk");
    release.await.expect("the test releases the rest");
    socket.write_all(format!("{:x}\r\n{second}\r\n", second.len()).as_bytes()).await.expect("second chunk");
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

    let (release, released) = oneshot::channel();
    let kubelet = tokio::spawn(stand_in_kubelet(listener, "line one\n", released, "line two\n"));
    let url = format!("{}{item}/log?follow=true&tailLines=10", cluster.url());
    // The first line arrives while the kubelet still holds the rest of its body, which it sends
    // only once the test has that line: an apiserver that buffered the body would never pass it.
    let response = tokio::time::timeout(WAIT, reqwest::get(&url)).await;
    let mut response = response.unwrap_or_else(|_| panic!("no answer within {WAIT:?}")).expect("log request");
    assert_eq!(response.status(), 200);
    let mut first = Vec::new();
    while !first.ends_with(b"\n") {
        let chunk = tokio::time::timeout(WAIT, response.chunk()).await;
        let chunk = chunk.unwrap_or_else(|_| panic!("no first line within {WAIT:?}: the log is not streamed"));
        first.extend_from_slice(&chunk.expect("chunk").expect("the body goes on"));
    }
    assert_eq!(String::from_utf8_lossy(&first), "line one\n");
    release.send(()).expect("the stand-in kubelet waits");
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
