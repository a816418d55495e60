//! rkube-client's typed errors, each produced by a real apiserver (or a real network failure):
//! NotFound, AlreadyExists, Conflict, Invalid with causes, BadRequest, Forbidden, Gone (a watch
//! and a continue token after compaction), Api for the other codes, Unavailable and Timeout.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use rkube_client::config::DEFAULT_TIMEOUT;
use rkube_client::{
    Api, Client, Config, DeleteParams, Error, ListParams, Patch, PatchParams, PostParams, Preconditions, WatchEvent,
    WatchParams,
};
use rkube_tests::Cluster;
use rkube_tests::resources::{config_map, pod};
use serde_json::{Value, json};

async fn start_with(args: &[&str]) -> (Cluster, Client) {
    let cluster = Cluster::start_with_args(args).await.expect("cluster starts");
    let client = Client::new(Config::new(cluster.url().parse().expect("cluster URL"))).expect("client");
    (cluster, client)
}

fn typed<T: k8s_openapi::serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("test object matches its type")
}

fn reason(err: &Error) -> &str {
    err.status().and_then(|s| s.reason.as_deref()).unwrap_or("")
}

#[tokio::test]
async fn a_missing_object_or_namespace_is_not_found() {
    let (_cluster, client) = start_with(&[]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let err = pods.get("ghost").await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)) && err.is_not_found(), "{err}");
    assert_eq!(err.code(), Some(404));
    assert_eq!(reason(&err), "NotFound");
    assert!(err.to_string().contains("ghost"), "{err}");
    assert!(pods.get_opt("ghost").await.unwrap().is_none());
    assert!(pods.delete("ghost", &DeleteParams::default()).await.unwrap_err().is_not_found());
    let patch = Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}));
    assert!(pods.patch("ghost", &PatchParams::default(), &patch).await.unwrap_err().is_not_found());

    let elsewhere: Api<Pod> = Api::namespaced(client, "no-such-namespace");
    let err = elsewhere.create(&PostParams::default(), &typed(pod("no-such-namespace", "p", json!({})))).await;
    assert!(err.unwrap_err().is_not_found());
}

#[tokio::test]
async fn creating_a_taken_name_is_already_exists_not_conflict() {
    let (_cluster, client) = start_with(&[]).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm: ConfigMap = typed(config_map("default", "taken", json!({})));
    config_maps.create(&PostParams::default(), &cm).await.unwrap();
    let err = config_maps.create(&PostParams::default(), &cm).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err}");
    assert!(err.is_already_exists() && !err.is_conflict());
    assert_eq!(err.code(), Some(409));
}

#[tokio::test]
async fn a_stale_resource_version_or_a_failed_precondition_is_a_conflict() {
    let (_cluster, client) = start_with(&[]).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let first = config_maps
        .create(&PostParams::default(), &typed(config_map("default", "cm", json!({"v": "1"}))))
        .await
        .unwrap();
    let mut second = first.clone();
    second.data = Some([("v".to_string(), "2".to_string())].into());
    config_maps.replace("cm", &PostParams::default(), &second).await.unwrap();

    // `first` still carries the old resourceVersion.
    let err = config_maps.replace("cm", &PostParams::default(), &first).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)) && err.is_conflict(), "{err}");
    assert_eq!(err.code(), Some(409));
    assert_eq!(reason(&err), "Conflict");

    let stale = DeleteParams {
        preconditions: Some(Preconditions { resource_version: first.metadata.resource_version.clone(), uid: None }),
        ..DeleteParams::default()
    };
    assert!(config_maps.delete("cm", &stale).await.unwrap_err().is_conflict());
    let wrong_uid = DeleteParams {
        preconditions: Some(Preconditions { resource_version: None, uid: Some("not-the-uid".into()) }),
        ..DeleteParams::default()
    };
    assert!(config_maps.delete("cm", &wrong_uid).await.unwrap_err().is_conflict());
    // The right uid, with a propagation policy, deletes.
    let right = DeleteParams::background()
        .preconditions(Preconditions { resource_version: None, uid: first.metadata.uid.clone() });
    config_maps.delete("cm", &right).await.unwrap();
}

#[tokio::test]
async fn an_invalid_object_is_invalid_with_one_cause_per_field() {
    let (_cluster, client) = start_with(&[]).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut bad: Pod = typed(pod("default", "bad", json!({})));
    if let Some(spec) = bad.spec.as_mut() {
        spec.containers[0].image = None;
        spec.restart_policy = Some("Sometimes".into());
    }
    let err = pods.create(&PostParams::default(), &bad).await.unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert_eq!(err.code(), Some(422));
    let fields: Vec<String> = err.causes().iter().filter_map(|c| c.field.clone()).collect();
    assert!(fields.iter().any(|f| f.contains("image")), "{fields:?}");
    assert!(fields.iter().any(|f| f.contains("restartPolicy")), "{fields:?}");
}

#[tokio::test]
async fn a_malformed_request_is_bad_request_and_forbidden_is_forbidden() {
    let (_cluster, client) = start_with(&[]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // The body's namespace differs from the URL's.
    let err = pods.create(&PostParams::default(), &typed(pod("other", "p", json!({})))).await.unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "{err}");
    assert_eq!(err.code(), Some(400));
    // A JSON patch whose test fails is refused too, as Kubernetes does.
    pods.create(&PostParams::default(), &typed(pod("default", "p", json!({})))).await.unwrap();
    let failing: Patch<Value> =
        Patch::Json(serde_json::from_value(json!([{"op": "test", "path": "/metadata/name", "value": "q"}])).unwrap());
    let err = pods.patch("p", &PatchParams::default(), &failing).await.unwrap_err();
    assert!(err.code().is_some_and(|c| (400..500).contains(&c)), "{err}");

    let namespaces: Api<Namespace> = Api::all(client);
    let err = namespaces.delete("default", &DeleteParams::default()).await.unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err}");
    assert_eq!(err.code(), Some(403));
}

#[tokio::test]
async fn other_error_codes_are_api_errors_with_the_servers_status() {
    let (_cluster, client) = start_with(&["--max-request-body-bytes", "4096"]).await;
    // 405: PUT on a collection, through the raw escape hatch.
    let req = http::Request::put("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(b"{}".to_vec())
        .unwrap();
    let err = client.request_json(req).await.unwrap_err();
    assert!(matches!(err, Error::Api(_)), "{err}");
    assert_eq!(err.code(), Some(405));
    assert_eq!(reason(&err), "MethodNotAllowed");

    // 413: a body over the server's limit.
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let big: ConfigMap = typed(config_map("default", "big", json!({"blob": "x".repeat(8192)})));
    let err = config_maps.create(&PostParams::default(), &big).await.unwrap_err();
    assert!(matches!(err, Error::Api(_)), "{err}");
    assert_eq!(err.code(), Some(413));
}

#[tokio::test]
async fn a_watch_or_a_continue_token_from_before_a_compaction_is_gone() {
    // A watch cache of 3 events: the first revision is older than its window by the end, as
    // it is older than etcd's history after the compaction.
    let (cluster, client) = start_with(&["--watch-cache-size", "3"]).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let first =
        config_maps.create(&PostParams::default(), &typed(config_map("default", "c0", json!({})))).await.unwrap();
    for index in 1..5 {
        let cm = typed(config_map("default", &format!("c{index}"), json!({})));
        config_maps.create(&PostParams::default(), &cm).await.unwrap();
    }
    let page = config_maps.list(&ListParams::default().limit(2)).await.unwrap();
    let token = page.metadata.continue_.clone().expect("continue token");
    config_maps.create(&PostParams::default(), &typed(config_map("default", "later", json!({})))).await.unwrap();
    let revision = cluster.etcd.current_revision().await.expect("etcd revision");
    cluster.etcd.compact(revision).await.expect("compaction");

    let err = config_maps.list(&ListParams::default().limit(2).continue_token(&token)).await.unwrap_err();
    assert!(matches!(err, Error::Gone(_)) && err.is_gone(), "{err}");
    assert_eq!(err.code(), Some(410));
    assert_eq!(reason(&err), "Expired");

    // A watch from before the compaction (and the watch cache's window): the server starts it,
    // then sends an ERROR event.
    let rv = first.metadata.resource_version.unwrap();
    let mut events = config_maps.watch(&WatchParams::default(), &rv).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), events.next()).await.expect("an event in time");
    match event {
        Some(Ok(WatchEvent::Error(status))) => {
            assert_eq!(status.code, 410, "{status:?}");
            assert_eq!(status.reason, "Expired");
        }
        other => panic!("expected an ERROR event with 410, got {other:?}"),
    }
}

#[tokio::test]
async fn etcd_down_is_unavailable_and_a_stopped_apiserver_is_unavailable_too() {
    let (mut cluster, client) = start_with(&["--etcd-request-timeout-seconds", "1"]).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    config_maps.list(&ListParams::default()).await.unwrap();

    cluster.etcd.stop().await;
    let err = config_maps.get("anything").await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "503 from the apiserver: {err}");

    drop(cluster);
    let err = config_maps.get("anything").await.unwrap_err();
    assert!(matches!(&err, Error::Unavailable(m) if m.contains("cannot connect")), "nothing listening: {err}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout() {
    // Accepts connections (the kernel does, through the backlog) but never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let mut config = Config::new(url.parse().expect("url"));
    config.timeout = Some(Duration::from_millis(300));
    let pods: Api<Pod> = Api::namespaced(Client::new(config).expect("client"), "default");
    // A hang guard, not a speed check: only the client's own timeout may end this request. The
    // guard is 50 times that timeout, so no machine load makes it fire first, and half the
    // default timeout, so a client that ignored `config.timeout` (none, or the default) fails
    // here, saying so, instead of hanging or passing late.
    let guard = DEFAULT_TIMEOUT / 2;
    let err = tokio::time::timeout(guard, pods.get("p"))
        .await
        .unwrap_or_else(|_| panic!("no answer and no timeout after {guard:?}: the 300 ms timeout was not applied"))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    let message = err.to_string();
    assert!(message.starts_with("timeout: GET /api/v1/namespaces/default/pods/p"), "names the request: {message}");
    drop(listener);
}
