//! rkube-client under contention and under its own rate limit: `retry_on_conflict` lets many
//! writers increment one counter without losing an update, and the token bucket spaces requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use rkube_client::{Api, Client, Config, Error, PostParams, retry_on_conflict};
use rkube_tests::Cluster;
use rkube_tests::resources::config_map;
use serde_json::json;

const WRITERS: u32 = 16;
const INCREMENTS_PER_WRITER: u32 = 5;

fn client(cluster: &Cluster) -> Client {
    Client::new(Config::new(cluster.url().parse().expect("cluster URL"))).expect("client")
}

fn count(cm: &ConfigMap) -> u32 {
    cm.data.as_ref().and_then(|d| d.get("count")).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// One read-modify-write of the counter: get, add one, replace with the resourceVersion read.
async fn increment(api: &Api<ConfigMap>, conflicts: &AtomicU32) -> rkube_client::Result<ConfigMap> {
    let mut cm = api.get("counter").await?;
    let next = count(&cm) + 1;
    cm.data.get_or_insert_with(Default::default).insert("count".into(), next.to_string());
    let result = api.replace("counter", &PostParams::default(), &cm).await;
    if matches!(result, Err(Error::Conflict(_))) {
        conflicts.fetch_add(1, Ordering::Relaxed);
    }
    result
}

#[tokio::test]
async fn sixteen_writers_retrying_on_conflict_lose_no_increment() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let seed: ConfigMap = serde_json::from_value(config_map("default", "counter", json!({"count": "0"}))).unwrap();
    Api::<ConfigMap>::namespaced(client(&cluster), "default").create(&PostParams::default(), &seed).await.unwrap();

    let conflicts = Arc::new(AtomicU32::new(0));
    let exhausted = Arc::new(AtomicU32::new(0));
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        // One client per writer, as separate processes would have.
        let api: Api<ConfigMap> = Api::namespaced(client(&cluster), "default");
        let (conflicts, exhausted) = (conflicts.clone(), exhausted.clone());
        writers.push(tokio::spawn(async move {
            for _ in 0..INCREMENTS_PER_WRITER {
                // retry_on_conflict gives up after five conflicts (client-go's DefaultRetry);
                // under this much contention that can happen, and the writer tries again.
                loop {
                    match retry_on_conflict(|| increment(&api, &conflicts)).await {
                        Ok(_) => break,
                        Err(e) if e.is_conflict() => {
                            exhausted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("only conflicts are expected: {e}"),
                    }
                }
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer finished");
    }
    let final_cm = Api::<ConfigMap>::namespaced(client(&cluster), "default").get("counter").await.unwrap();
    assert_eq!(count(&final_cm), WRITERS * INCREMENTS_PER_WRITER, "every increment counted exactly once");
    let conflicts = conflicts.load(Ordering::Relaxed);
    assert!(conflicts > 0, "sixteen concurrent writers must have collided at least once");
    eprintln!("conflicts retried: {conflicts}; retry_on_conflict gave up {} times", exhausted.load(Ordering::Relaxed));
}

#[tokio::test]
async fn with_qps_5_and_burst_1_six_requests_take_at_least_a_second() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let mut config = Config::new(cluster.url().parse().expect("cluster URL"));
    config.qps = 5.0;
    config.burst = 1;
    let api: Api<ConfigMap> = Api::namespaced(Client::new(config).expect("client"), "default");

    let started = Instant::now();
    for _ in 0..6 {
        api.get_opt("anything").await.unwrap();
    }
    let elapsed = started.elapsed();
    // One at once, then one every 200ms: the sixth starts at 1s.
    assert!(elapsed >= Duration::from_millis(950), "6 requests at qps=5 burst=1 took only {elapsed:?}");

    // The default limit (50 qps, burst 100) does not slow six requests down noticeably.
    let fast: Api<ConfigMap> = Api::namespaced(client(&cluster), "default");
    let started = Instant::now();
    for _ in 0..6 {
        fast.get_opt("anything").await.unwrap();
    }
    assert!(started.elapsed() < Duration::from_millis(950), "{:?}", started.elapsed());
}
