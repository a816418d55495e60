//! The scheduler across restarts and with two copies running (leader election), against real
//! etcd, the real apiserver and real `rkube-scheduler` processes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rkube_tests::scheduler::{NodeSpec, Scheduler, create_node, node_of, pending_pod, sample_value};
use rkube_tests::{Api, Cluster, eventually};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);
const PODS: &str = "/api/v1/namespaces/default/pods";
/// Short leader-election timing so that a takeover happens within seconds.
const FAST_ELECTION: &[&str] = &[
    "--leader-elect=true",
    "--leader-elect-lease-duration",
    "4s",
    "--leader-elect-renew-deadline",
    "3s",
    "--leader-elect-retry-period",
    "500ms",
];

/// Pod name → node for every pod in `default`.
async fn placements(api: &Api) -> BTreeMap<String, Option<String>> {
    let list = api.get_ok(PODS).await;
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|pod| (pod["metadata"]["name"].as_str().unwrap_or_default().to_string(), node_of(pod)))
        .collect()
}

async fn create_pods(api: &Api, prefix: &str, count: usize) {
    let creates = (0..count).map(|i| {
        let api = api.clone();
        let pod = pending_pod("default", &format!("{prefix}-{i}"), "10m", "16Mi");
        async move { api.create(PODS, &pod).await }
    });
    futures::future::join_all(creates).await;
}

async fn wait_all_bound(api: &Api, expected: usize, logs: &[&Scheduler]) {
    let outcome = tokio::time::timeout(WAIT, async {
        loop {
            let placed = placements(api).await;
            if placed.len() == expected && placed.values().all(Option::is_some) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    if outcome.is_err() {
        let logs: Vec<String> = logs.iter().map(|s| s.log_tail(30)).collect();
        panic!(
            "not all {expected} pods bound within {WAIT:?}: {:?}\nlogs:\n{}",
            placements(api).await,
            logs.join("\n---\n")
        );
    }
}

/// Reads `watch` until `count` pods were seen bound, and insists that no pod's nodeName ever
/// changed once set (a second binding would show up as a second node).
async fn assert_each_bound_once(watch: &mut rkube_tests::WatchStream, count: usize) {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut complete = BTreeSet::new();
    while complete.len() < count {
        let event: Value = tokio::time::timeout(WAIT, watch.next())
            .await
            .expect("watch events keep coming")
            .expect("watch stays open");
        let name = event["object"]["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if let Some(node) = node_of(&event["object"]) {
            let nodes = seen.entry(name.clone()).or_default();
            if nodes.last() != Some(&node) {
                nodes.push(node);
            }
            complete.insert(name);
        }
    }
    for (pod, nodes) in &seen {
        assert_eq!(nodes.len(), 1, "pod {pod} was bound to {nodes:?}");
    }
}

/// A watch on pods in `default` from now on.
async fn watch_pods(api: &Api) -> rkube_tests::WatchStream {
    let list = api.get_ok(PODS).await;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
    api.watch(&format!("{PODS}?watch=true&resourceVersion={rv}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_scheduler_loses_nothing() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    create_node(&api, &NodeSpec::new("n1")).await;
    create_node(&api, &NodeSpec::new("n2")).await;
    let mut scheduler = Scheduler::start(&cluster, &["--leader-elect=false"]).await.expect("scheduler starts");
    create_pods(&api, "before", 10).await;
    wait_all_bound(&api, 10, &[&scheduler]).await;
    let before = placements(&api).await;

    // Down: pods created meanwhile wait, including one that fits nowhere yet.
    scheduler.kill();
    create_pods(&api, "while-down", 10).await;
    api.create(PODS, &pending_pod("default", "needs-room", "6", "1Gi")).await;
    scheduler.restart().await.expect("scheduler restarts");
    eventually(WAIT, "the 10 pods created while down to be bound", || async {
        let placed = placements(&api).await;
        placed
            .iter()
            .filter(|(name, node)| name.starts_with("while-down") && node.is_some())
            .count()
            .eq(&10)
            .then_some(())
    })
    .await;
    // The big pod waits for room, and gets it when a bigger node appears.
    create_node(&api, &NodeSpec::new("n3").allocatable("8", "16Gi", 110)).await;
    wait_all_bound(&api, 21, &[&scheduler]).await;
    let after = placements(&api).await;
    assert_eq!(after["needs-room"].as_deref(), Some("n3"));
    for (name, node) in &before {
        assert_eq!(after.get(name), Some(node), "pod {name} moved across the restart");
    }
    let metrics = scheduler.metrics().await.expect("metrics");
    assert_eq!(
        sample_value(&metrics, "rkube_scheduler_schedule_attempts_total{result=\"error\"}"),
        0.0,
        "the restarted scheduler tried to bind an already bound pod:\n{}",
        scheduler.log_tail(30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_bind_each_pod_exactly_once_and_the_follower_takes_over() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    for name in ["n1", "n2", "n3"] {
        create_node(&api, &NodeSpec::new(name)).await;
    }
    let first = Scheduler::start(&cluster, FAST_ELECTION).await.expect("first scheduler starts");
    let second = Scheduler::start(&cluster, FAST_ELECTION).await.expect("second scheduler starts");
    let mut schedulers = [first, second];

    // Every change of every pod, from before the first pod exists.
    let mut watch = watch_pods(&api).await;

    create_pods(&api, "p", 50).await;
    wait_all_bound(&api, 50, &[&schedulers[0], &schedulers[1]]).await;

    assert_each_bound_once(&mut watch, 50).await;

    // Only the leader scheduled; together they bound 50 pods.
    let mut scheduled = Vec::new();
    for scheduler in &schedulers {
        let metrics = scheduler.metrics().await.expect("metrics");
        scheduled.push(sample_value(&metrics, "rkube_scheduler_schedule_attempts_total{result=\"scheduled\"}"));
    }
    assert_eq!(scheduled.iter().sum::<f64>(), 50.0, "{scheduled:?}");
    assert!(scheduled.contains(&0.0), "both schedulers bound pods: {scheduled:?}");
    let leader = if scheduled[0] > 0.0 { 0 } else { 1 };

    // Kill the leader: the follower takes the Lease and binds new pods.
    schedulers[leader].kill();
    let follower = &schedulers[1 - leader];
    create_pods(&api, "after-failover", 10).await;
    wait_all_bound(&api, 60, &[follower]).await;
    let metrics = follower.metrics().await.expect("metrics");
    assert_eq!(sample_value(&metrics, "rkube_scheduler_schedule_attempts_total{result=\"scheduled\"}"), 10.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_racing_without_leader_election_still_bind_each_pod_once() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    for name in ["n1", "n2", "n3", "n4"] {
        create_node(&api, &NodeSpec::new(name)).await;
    }
    let first = Scheduler::start(&cluster, &["--leader-elect=false"]).await.expect("first scheduler starts");
    let second = Scheduler::start(&cluster, &["--leader-elect=false"]).await.expect("second scheduler starts");
    let mut watch = watch_pods(&api).await;
    create_pods(&api, "race", 50).await;
    wait_all_bound(&api, 50, &[&first, &second]).await;
    assert_each_bound_once(&mut watch, 50).await;
    // Both tried most pods; the apiserver let exactly one binding per pod through, and the
    // loser of each race counted an error instead of a second placement.
    let mut scheduled = 0.0;
    for scheduler in [&first, &second] {
        let metrics = scheduler.metrics().await.expect("metrics");
        scheduled += sample_value(&metrics, "rkube_scheduler_schedule_attempts_total{result=\"scheduled\"}");
    }
    assert_eq!(scheduled, 50.0);
}
