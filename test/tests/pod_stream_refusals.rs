//! What the apiserver refuses on `pods/exec`, `pods/attach` and `pods/portforward` before it
//! reaches a kubelet, each a `Status` with Kubernetes' code and words: a missing pod (404), no
//! command, an unknown container, a completed pod, a request that is not a WebSocket upgrade
//! (the SPDY fallback of old clients), bad `ports`, and a WebSocket offering no protocol rkube
//! speaks (400). Needs `make deps` (etcd).

use rkube_tests::resources::{PODS, pod};
use rkube_tests::{Api, Cluster, StatusCode};
use serde_json::json;

/// The headers of a WebSocket upgrade offering `protocol`.
fn websocket(protocol: &str) -> Vec<(&'static str, String)> {
    vec![
        ("connection", "Upgrade".into()),
        ("upgrade", "websocket".into()),
        ("sec-websocket-version", "13".into()),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==".into()),
        ("sec-websocket-protocol", protocol.into()),
    ]
}

#[tokio::test]
async fn stream_requests_the_apiserver_refuses_get_statuses_in_kubernetes_words() {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}});
    api.create("/api/v1/nodes", &node).await;
    for (name, phase) in [("live", "Running"), ("done", "Succeeded")] {
        let mut object = pod("default", name, json!({}));
        object["spec"]["nodeName"] = json!("n1");
        api.create(&PODS.collection("default"), &object).await;
        let status = json!({"status": {"phase": phase}});
        let (code, reply) =
            api.patch(&format!("{}/status", PODS.item("default", name)), "application/merge-patch+json", &status).await;
        assert!(code.is_success(), "{reply}");
    }
    let refused = |path: String, headers: Vec<(&'static str, String)>| {
        let api = api.clone();
        async move {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let reply = api.send(reqwest::Method::GET, &path, &headers, None).await;
            assert_eq!(
                reply.headers.get("content-type").and_then(|v| v.to_str().ok()),
                Some("application/json"),
                "{path}"
            );
            assert_eq!(reply.body["kind"], "Status", "{path}: {}", reply.body);
            (reply.status, reply.body["message"].as_str().unwrap_or_default().to_string())
        }
    };
    let exec = |pod: &str, query: &str| format!("{}/exec?{query}", PODS.item("default", pod));
    let v5 = || websocket("v5.channel.k8s.io");

    assert_eq!(
        refused(exec("nobody", "command=ls"), v5()).await,
        (StatusCode::NOT_FOUND, "pods \"nobody\" not found".into())
    );
    assert_eq!(
        refused(exec("live", "stdout=true"), v5()).await,
        (StatusCode::BAD_REQUEST, "you must specify at least one command for the container".into())
    );
    let (code, message) = refused(exec("live", "command=ls&container=nope"), v5()).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(message, "container nope is not valid for pod live");
    assert_eq!(
        refused(exec("done", "command=ls"), v5()).await,
        (StatusCode::BAD_REQUEST, "cannot exec into a container in a completed pod; current phase is Succeeded".into())
    );
    let attach = format!("{}/attach?stdout=true", PODS.item("default", "done"));
    assert_eq!(
        refused(attach, v5()).await,
        (StatusCode::BAD_REQUEST, "cannot attach to a container in a completed pod; current phase is Succeeded".into())
    );
    // The SPDY fallback (an Upgrade to SPDY/3.1, not to a WebSocket) is not served.
    let spdy = vec![("connection", "Upgrade".to_string()), ("upgrade", "SPDY/3.1".to_string())];
    assert_eq!(
        refused(exec("live", "command=ls"), spdy.clone()).await,
        (
            StatusCode::BAD_REQUEST,
            "exec needs a WebSocket upgrade with the subprotocol v5.channel.k8s.io (SPDY is not supported)".into()
        )
    );

    let forward = |query: &str| format!("{}/portforward?{query}", PODS.item("default", "live"));
    for ports in ["0", "65536", "http"] {
        assert_eq!(
            refused(forward(&format!("ports={ports}")), websocket("v4.channel.k8s.io")).await,
            (StatusCode::BAD_REQUEST, format!("invalid port \"{ports}\": ports must be 1 to 65535")),
        );
    }
    let protocols = "SPDY/3.1+portforward.k8s.io, v4.channel.k8s.io";
    assert_eq!(
        refused(forward("ports=80"), spdy).await,
        (
            StatusCode::BAD_REQUEST,
            format!(
                "portforward needs a WebSocket upgrade with a subprotocol of {protocols} (plain SPDY is not supported)"
            )
        )
    );
    assert_eq!(
        refused(forward("ports=80"), websocket("v1.channel.k8s.io")).await,
        (StatusCode::BAD_REQUEST, format!("portforward speaks only the subprotocols {protocols}"))
    );
}
