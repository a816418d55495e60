//! The node lifecycle controller, end to end: a node whose Lease stops being renewed becomes
//! Ready=Unknown and tainted unreachable, its pods are evicted and recreated elsewhere by their
//! ReplicaSet; it is restored when heard from again; a mass failure evicts nothing.

use std::time::Duration;

use rkube_tests::controllers::{ControllerManager, Heartbeats, bind, live_pods, register_node, replica_set};
use rkube_tests::{Api, Cluster, eventually, stays_true};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

/// How often the controller checks every node (`--node-monitor-period`).
const MONITOR_PERIOD: Duration = Duration::from_millis(300);
/// How long pods stay on a node once it is tainted unreachable (`--pod-eviction-timeout`).
const POD_EVICTION_TIMEOUT: Duration = Duration::from_secs(1);

/// The sample counting the node lifecycle controller's monitor passes (one per period).
const MONITOR_PASSES: &str = "rkube_controller_syncs_total{controller=\"nodelifecycle\"}";

async fn start() -> (Cluster, ControllerManager, Api) {
    let cluster = Cluster::start().await.expect("cluster starts");
    let monitor_period = format!("--node-monitor-period={}ms", MONITOR_PERIOD.as_millis());
    let eviction_timeout = format!("--pod-eviction-timeout={}ms", POD_EVICTION_TIMEOUT.as_millis());
    let args = [
        "--leader-elect=false",
        "--controllers=replicaset,nodelifecycle",
        &monitor_period,
        "--node-monitor-grace-period=2s",
        &eviction_timeout,
        "--node-eviction-rate=100",
    ];
    let manager = ControllerManager::start(&cluster, &args).await.expect("controller-manager starts");
    let api = Api::new(cluster.url());
    (cluster, manager, api)
}

fn node_of(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or_default()
}

fn taint_effects(node: &Value) -> Vec<String> {
    let mut effects: Vec<String> = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|t| t["key"] == "node.kubernetes.io/unreachable")
        .map(|t| t["effect"].as_str().unwrap_or_default().to_string())
        .collect();
    effects.sort();
    effects
}

fn ready_status(node: &Value) -> String {
    node["status"]["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Binds every unbound pod of `app=web` to `node`, as a scheduler would.
async fn schedule_all(api: &Api, node: &str) {
    for pod in live_pods(api, "default", "app=web").await {
        if node_of(&pod).is_empty() {
            bind(api, "default", pod["metadata"]["name"].as_str().unwrap_or_default(), node).await;
        }
    }
}

#[tokio::test]
async fn a_silent_node_is_marked_unknown_tainted_and_its_pods_reappear_elsewhere() {
    let (cluster, manager, api) = start().await;
    for node in ["node-a", "node-b", "node-c"] {
        register_node(&api, node).await;
    }
    let heartbeats = Heartbeats::start(cluster.url(), &["node-a", "node-b", "node-c"]);
    api.create("/apis/apps/v1/namespaces/default/replicasets", &replica_set("default", "web", 2, "nginx")).await;
    eventually(LONG, "2 pods on node-a", || async {
        schedule_all(&api, "node-a").await;
        let pods = live_pods(&api, "default", "app=web").await;
        (pods.len() == 2 && pods.iter().all(|pod| node_of(pod) == "node-a")).then_some(())
    })
    .await;
    // A pod that tolerates unreachable forever stays, as a DaemonSet pod would.
    let mut keeper = rkube_tests::resources::pod("default", "keeper", json!({"role": "agent"}));
    keeper["spec"]["tolerations"] =
        json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]);
    api.create("/api/v1/namespaces/default/pods", &keeper).await;
    assert!(bind(&api, "default", "keeper", "node-a").await);

    heartbeats.silence("node-a");
    eventually(LONG, "node-a Ready=Unknown with both unreachable taints", || async {
        let node = api.get_ok("/api/v1/nodes/node-a").await;
        (ready_status(&node) == "Unknown" && taint_effects(&node) == ["NoExecute", "NoSchedule"]).then_some(())
    })
    .await;
    eventually(LONG, "2 live pods, none on node-a", || async {
        schedule_all(&api, "node-b").await;
        let pods = live_pods(&api, "default", "app=web").await;
        (pods.len() == 2 && pods.iter().all(|pod| node_of(pod) == "node-b")).then_some(())
    })
    .await;
    let keeper = api.get_ok("/api/v1/namespaces/default/pods/keeper").await;
    assert!(keeper["metadata"]["deletionTimestamp"].is_null(), "a tolerating pod is not evicted: {keeper}");
    let healthy = api.get_ok("/api/v1/nodes/node-b").await;
    assert!(taint_effects(&healthy).is_empty(), "a healthy node is left alone");

    heartbeats.resume("node-a");
    eventually(LONG, "node-a untainted", || async {
        taint_effects(&api.get_ok("/api/v1/nodes/node-a").await).is_empty().then_some(())
    })
    .await;
    assert!(manager.log_tail(200).contains("evicted from unreachable node"));
    // The story: the node went NotReady, its pods were told so, and evicted ones marked.
    let reasons = eventually(LONG, "NodeNotReady and TaintManagerEviction Events", || async {
        let list = api.get_ok("/api/v1/namespaces/default/events").await;
        let said: Vec<(String, String, String)> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                (text(&e["reason"]), text(&e["involvedObject"]["kind"]), text(&e["message"]))
            })
            .collect();
        let node = said
            .iter()
            .any(|(r, k, m)| r == "NodeNotReady" && k == "Node" && m == "Node node-a status is now: NodeNotReady");
        let evicted = said.iter().any(|(r, k, m)| {
            r == "TaintManagerEviction" && k == "Pod" && m.starts_with("Marking for deletion Pod default/")
        });
        (node && evicted).then_some(said)
    })
    .await;
    assert!(reasons.iter().any(|(r, k, _)| r == "NodeNotReady" && k == "Pod"), "{reasons:?}");
}

#[tokio::test]
async fn when_every_node_goes_silent_no_pod_is_evicted() {
    let (cluster, manager, api) = start().await;
    for node in ["node-a", "node-b"] {
        register_node(&api, node).await;
    }
    let heartbeats = Heartbeats::start(cluster.url(), &["node-a", "node-b"]);
    api.create("/apis/apps/v1/namespaces/default/replicasets", &replica_set("default", "web", 2, "nginx")).await;
    eventually(LONG, "2 pods on node-a", || async {
        schedule_all(&api, "node-a").await;
        let pods = live_pods(&api, "default", "app=web").await;
        (pods.len() == 2 && pods.iter().all(|pod| node_of(pod) == "node-a")).then_some(())
    })
    .await;
    heartbeats.silence("node-a");
    heartbeats.silence("node-b");
    eventually(LONG, "both nodes tainted", || async {
        let a = api.get_ok("/api/v1/nodes/node-a").await;
        let b = api.get_ok("/api/v1/nodes/node-b").await;
        (taint_effects(&a).len() == 2 && taint_effects(&b).len() == 2).then_some(())
    })
    .await;
    // Each node was found silent, and tainted, before now: had evictions not been paused, its
    // pods would be due to go within POD_EVICTION_TIMEOUT from here. Watch them until then,
    // and on until two monitor passes have started past that moment (a pass starts only once
    // the one before it has finished, so the first of them has done whatever it would do).
    let pods_stay = || async {
        let pods = live_pods(&api, "default", "app=web").await;
        pods.len() == 2 && pods.iter().all(|pod| node_of(pod) == "node-a")
    };
    let what = "both pods live and still on node-a";
    stays_true(POD_EVICTION_TIMEOUT, what, pods_stay).await;
    let passes_when_due = manager.metric(MONITOR_PASSES).await;
    stays_true(MONITOR_PERIOD * 2, what, pods_stay).await;
    eventually(LONG, "two monitor passes after the eviction timeout", || async {
        (manager.metric(MONITOR_PASSES).await >= passes_when_due + 2.0).then_some(())
    })
    .await;
    let pods = live_pods(&api, "default", "app=web").await;
    assert_eq!(pods.len(), 2, "no pod evicted, none replaced: {pods:?}");
    assert!(pods.iter().all(|pod| node_of(pod) == "node-a"), "the pods stay where they are: {pods:?}");
    let log = manager.log();
    let tail = manager.log_tail(40);
    assert!(log.contains("mass node failure: evictions paused"), "the controller paused evictions; log:\n{tail}");
    assert!(!log.contains("evicted from unreachable node"), "log:\n{tail}");
}
