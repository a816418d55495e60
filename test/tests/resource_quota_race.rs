//! Racing creates against the last units of a ResourceQuota: admission charges `status.used`
//! with optimistic concurrency, so twelve pods created at once in a namespace allowed three
//! give exactly three created and nine 403 `exceeded quota`, and `status.used` says three.
//! Needs `make deps` (etcd).

use rkube_tests::resources::{PODS, pod};
use rkube_tests::{Api, Cluster, StatusCode};
use serde_json::json;

#[tokio::test]
async fn racing_creates_never_share_the_last_unit_of_a_quota() {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    api.create("/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "race"}}))
        .await;
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "three", "namespace": "race"},
        "spec": {"hard": {"pods": "3"}}});
    api.create("/api/v1/namespaces/race/resourcequotas", &quota).await;

    let creates = (0..12).map(|i| {
        let api = api.clone();
        tokio::spawn(async move {
            let reply = api.post(&PODS.collection("race"), &pod("race", &format!("p{i}"), json!({}))).await;
            (reply.0, reply.1["message"].as_str().unwrap_or_default().to_string())
        })
    });
    let mut created = 0;
    for create in creates.collect::<Vec<_>>() {
        let (status, message) = create.await.expect("create task");
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::FORBIDDEN => assert!(
                message.starts_with("pods \"p")
                    && message.contains(
                        "is forbidden: exceeded quota: three, requested: pods=1, used: pods=3, limited: pods=3"
                    ),
                "{message}"
            ),
            other => panic!("unexpected {other}: {message}"),
        }
    }
    assert_eq!(created, 3, "exactly the three units the quota has");
    let pods = api.get_ok(&PODS.collection("race")).await;
    assert_eq!(pods["items"].as_array().map(Vec::len), Some(3));
    let quota = api.get_ok("/api/v1/namespaces/race/resourcequotas/three").await;
    assert_eq!(quota["status"]["used"]["pods"], "3", "{quota}");
}
