//! The apiserver and its etcd: where objects are stored, what clients see while etcd is down
//! (503, not 500), and that nothing is lost once etcd is back.

use std::time::Duration;

use rkube_tests::resources::{CONFIG_MAPS, DEPLOYMENTS, NODES, PODS, config_map, namespace, pod, resource_version};
use rkube_tests::{Api, ApiServer, Cluster, Etcd, Method, StatusCode, eventually};
use serde_json::{Value, json};

#[tokio::test]
async fn objects_are_stored_under_registry_resource_namespace_name_at_their_resource_version() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    let cm =
        api.create(&CONFIG_MAPS.collection("default"), &config_map("default", "stored", json!({ "k": "v" }))).await;
    api.create(&PODS.collection("default"), &pod("default", "stored", json!({}))).await;
    api.create(&DEPLOYMENTS.collection("default"), &DEPLOYMENTS.sample("default", "stored")).await;
    api.create(&NODES.collection(""), &NODES.sample("", "stored")).await;
    api.create("/api/v1/namespaces", &namespace("stored")).await;

    for key in [
        "/registry/configmaps/default/stored",
        "/registry/pods/default/stored",
        "/registry/deployments/default/stored",
        "/registry/nodes/stored",
        "/registry/namespaces/stored",
    ] {
        let value = cluster.etcd.get(key).await.expect("etcd read").unwrap_or_else(|| panic!("no key {key}"));
        let object: Value = serde_json::from_slice(&value).unwrap_or_else(|_| panic!("{key} does not hold JSON"));
        assert_eq!(object["metadata"]["name"], "stored", "{key}: {object}");
    }
    let mod_revision = cluster.etcd.mod_revision("/registry/configmaps/default/stored").await.expect("etcd read");
    assert_eq!(mod_revision, Some(resource_version(&cm)), "resourceVersion is the key's mod_revision");
}

#[tokio::test]
async fn etcd_prefix_flag_moves_every_key() {
    let etcd = Etcd::start().await.expect("etcd starts");
    let apiserver = ApiServer::start(&etcd, &["--etcd-prefix", "/elsewhere"]).await.expect("apiserver starts");
    let api = Api::new(&apiserver.url);
    api.create(&CONFIG_MAPS.collection("default"), &config_map("default", "moved", json!({}))).await;
    assert!(etcd.get("/elsewhere/configmaps/default/moved").await.expect("etcd read").is_some());
    let strays = etcd.keys_with_prefix("/registry/").await.expect("etcd read");
    assert!(strays.is_empty(), "nothing may be written outside the prefix: {strays:?}");
}

#[tokio::test]
async fn losing_etcd_gives_503_and_restarting_it_loses_nothing() {
    let mut cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    let collection = CONFIG_MAPS.collection("default");
    let mut before = Vec::new();
    for index in 0..5 {
        before.push(
            api.create(
                &collection,
                &config_map("default", &format!("kept-{index}"), json!({ "i": index.to_string() })),
            )
            .await,
        );
    }

    cluster.etcd.stop().await;
    eventually(Duration::from_secs(30), "/readyz to report 503 without etcd", || async {
        (api.send(Method::GET, "/readyz", &[], None).await.status == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
    let (status, reply) = api.post(&collection, &config_map("default", "during-outage", json!({}))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a write without etcd: {reply}");
    assert_eq!(reply["kind"], "Status", "{reply}");
    assert_eq!(reply["code"], 503, "{reply}");
    let (status, reply) = api.get(&CONFIG_MAPS.item("default", "kept-0")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a read without etcd: {reply}");
    let livez = api.send(Method::GET, "/livez", &[], None).await;
    assert_eq!(livez.status, StatusCode::OK, "the process itself is alive: {}", livez.body);

    cluster.etcd.restart().await.expect("etcd restarts");
    eventually(Duration::from_secs(30), "/readyz to recover once etcd is back", || async {
        (api.send(Method::GET, "/readyz", &[], None).await.status == StatusCode::OK).then_some(())
    })
    .await;
    for object in &before {
        let name = object["metadata"]["name"].as_str().expect("name");
        assert_eq!(&api.get_ok(&CONFIG_MAPS.item("default", name)).await, object, "{name} survived");
    }
    assert_eq!(api.get(&CONFIG_MAPS.item("default", "during-outage")).await.0, StatusCode::NOT_FOUND);
    let after = api.create(&collection, &config_map("default", "after", json!({}))).await;
    assert!(resource_version(&after) > resource_version(&before[4]), "revisions continue after the restart");

    // Watches work again too.
    let mut watch = api.watch(&format!("{collection}?watch=true&resourceVersion={}", resource_version(&after))).await;
    api.create(&collection, &config_map("default", "watched", json!({}))).await;
    let event = watch.expect_non_bookmark(Duration::from_secs(10)).await;
    assert_eq!(event["type"], "ADDED", "{event}");
    assert_eq!(event["object"]["metadata"]["name"], "watched", "{event}");
}
