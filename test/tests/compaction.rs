//! The apiserver compacts etcd's history on its own, as Kubernetes does, so a long-running
//! cluster does not grow without bound; reads of a compacted revision get 410. (Watches are
//! served from the watch cache's own window, which compaction does not shorten:
//! test/tests/watch_cache.rs.)

use std::time::Duration;

use rkube_tests::resources::{CONFIG_MAPS, config_map, resource_version};
use rkube_tests::{Api, Cluster, StatusCode, eventually};
use serde_json::json;

#[tokio::test]
async fn history_older_than_one_compaction_interval_is_discarded() {
    let cluster = Cluster::start_with_args(&["--etcd-compaction-interval-seconds", "1"]).await.expect("cluster starts");
    let api = Api::new(cluster.url());
    let collection = CONFIG_MAPS.collection("default");
    let item = CONFIG_MAPS.item("default", "history");
    let created = api.create(&collection, &config_map("default", "history", json!({ "v": "0" }))).await;
    let first_rv = resource_version(&created).to_string();
    for round in 1..=3 {
        let mut object = api.get_ok(&item).await;
        object["data"]["v"] = json!(round.to_string());
        assert_eq!(api.put(&item, &object).await.0, StatusCode::OK);
    }
    let path = format!("{collection}?resourceVersion={first_rv}&resourceVersionMatch=Exact");
    let status = eventually(Duration::from_secs(15), "the first revision to be compacted away", || async {
        let (status, reply) = api.get(&path).await;
        (status == StatusCode::GONE).then_some(reply)
    })
    .await;
    assert_eq!(status["code"], 410, "{status}");
    assert_eq!(status["reason"], "Expired", "{status}");
    // The object itself is untouched by compaction.
    assert_eq!(api.get_ok(&item).await["data"]["v"], "3");
}
