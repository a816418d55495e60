//! Optimistic concurrency under load: writers that retry on 409 never lose an update, and
//! concurrent creates of one name let exactly one win.

use rkube_tests::resources::{CONFIG_MAPS, config_map};
use rkube_tests::{Api, Cluster, StatusCode, assert_status};
use serde_json::json;

const WRITERS: usize = 64;
const INCREMENTS_PER_WRITER: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_writers_retrying_on_conflict_lose_no_increment() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    let item = CONFIG_MAPS.item("default", "counter");
    api.create(&CONFIG_MAPS.collection("default"), &config_map("default", "counter", json!({ "count": "0" }))).await;

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (api, item) = (api.clone(), item.clone());
        writers.push(tokio::spawn(async move {
            let mut conflicts = 0usize;
            for _ in 0..INCREMENTS_PER_WRITER {
                loop {
                    let current = api.get_ok(&item).await;
                    let count: usize = current["data"]["count"]
                        .as_str()
                        .and_then(|text| text.parse().ok())
                        .unwrap_or_else(|| panic!("counter is not a number: {current}"));
                    let mut next = current.clone();
                    next["data"]["count"] = json!((count + 1).to_string());
                    let (status, reply) = api.put(&item, &next).await;
                    if status == StatusCode::OK {
                        break;
                    }
                    assert_status(status, &reply, 409, "Conflict", &format!("writer {writer}"));
                    conflicts += 1;
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for writer in writers {
        conflicts += writer.await.expect("writer panicked");
    }
    let counter = api.get_ok(&item).await;
    assert_eq!(
        counter["data"]["count"],
        (WRITERS * INCREMENTS_PER_WRITER).to_string(),
        "every successful PUT must count exactly once ({conflicts} conflicts were retried)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_name_let_exactly_one_win() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    let mut creators = Vec::new();
    for creator in 0..16 {
        let api = api.clone();
        creators.push(tokio::spawn(async move {
            let body = config_map("default", "race", json!({ "creator": creator.to_string() }));
            let (status, reply) = api.post(&CONFIG_MAPS.collection("default"), &body).await;
            (creator, status, reply)
        }));
    }
    let mut winners = Vec::new();
    for creator in creators {
        let (creator, status, reply) = creator.await.expect("creator panicked");
        if status == StatusCode::CREATED {
            winners.push((creator, reply));
        } else {
            assert_status(status, &reply, 409, "AlreadyExists", &format!("creator {creator}"));
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create wins: {winners:?}");
    let stored = api.get_ok(&CONFIG_MAPS.item("default", "race")).await;
    assert_eq!(stored, winners[0].1, "the stored object is the winner's");
}
