//! The DaemonSet controller, end to end: real etcd, apiserver, `rkube-controller-manager`
//! (`--controllers=daemonset`) and `rkube-scheduler` (which binds each daemon pod to the node
//! its affinity names), the real kubectl for `rollout status/history/undo`, and a stand-in
//! kubelet that marks pods Ready.

use std::collections::BTreeMap;
use std::time::Duration;

use rkube_tests::controllers::{ControllerManager, Kubelet, live_pods};
use rkube_tests::kubectl::real_kubectl as kubectl;
use rkube_tests::scheduler::{NodeSpec, Scheduler, create_node};
use rkube_tests::{Api, Cluster, eventually};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);
const NS: &str = "default";

async fn start(nodes: &[NodeSpec]) -> (Cluster, ControllerManager, Scheduler, Api) {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    for node in nodes {
        create_node(&api, node).await;
    }
    let manager = ControllerManager::start(&cluster, &["--leader-elect=false", "--controllers=daemonset"])
        .await
        .expect("controller-manager starts");
    let scheduler = Scheduler::start(&cluster, &["--leader-elect=false"]).await.expect("scheduler starts");
    (cluster, manager, scheduler, api)
}

fn daemon_set(image: &str, node_selector: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": NS},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"nodeSelector": node_selector,
                "terminationGracePeriodSeconds": 0, "containers": [{"name": "agent", "image": image}]}}}})
}

/// The live pods of the DaemonSet by the node they are bound to, once there are `count`, all
/// bound.
async fn placed(api: &Api, count: usize) -> BTreeMap<String, Value> {
    eventually(LONG, &format!("{count} daemon pods bound to their nodes"), || async {
        let pods = live_pods(api, NS, "app=agent").await;
        let bound: BTreeMap<String, Value> =
            pods.iter().filter_map(|p| p["spec"]["nodeName"].as_str().map(|n| (n.to_string(), p.clone()))).collect();
        (pods.len() == count && bound.len() == count).then_some(bound)
    })
    .await
}

fn image_of(pod: &Value) -> &str {
    pod["spec"]["containers"][0]["image"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn one_pod_per_eligible_node_following_nodes_that_join_and_labels_that_change() {
    let gpu_taint = json!([{"key": "gpu", "value": "true", "effect": "NoSchedule"}]);
    let nodes = [
        NodeSpec::new("n1").labels(json!({"role": "worker"})),
        NodeSpec::new("n2").labels(json!({"role": "worker"})),
        NodeSpec::new("tainted").labels(json!({"role": "worker"})).taints(gpu_taint),
        NodeSpec::new("other").labels(json!({"role": "db"})),
    ];
    let (_cluster, manager, _scheduler, api) = start(&nodes).await;
    let _kubelet = Kubelet::start(&api.url(""), NS, "broken");
    api.create(&format!("/apis/apps/v1/namespaces/{NS}/daemonsets"), &daemon_set("agent:1", json!({"role": "worker"})))
        .await;
    let by_node = placed(&api, 2).await;
    assert_eq!(
        by_node.keys().collect::<Vec<_>>(),
        ["n1", "n2"],
        "not on the tainted or the db node\n{}",
        manager.log_tail(20)
    );
    let pod = &by_node["n1"];
    assert_eq!(
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchFields"][0]["values"],
        json!(["n1"])
    );
    let tolerations = pod["spec"]["tolerations"].to_string();
    assert!(
        tolerations.contains("node.kubernetes.io/unreachable")
            && tolerations.contains("node.kubernetes.io/unschedulable"),
        "{tolerations}"
    );

    // A worker joins: it gets its pod. The db node becomes a worker: it gets one too.
    create_node(&api, &NodeSpec::new("n3").labels(json!({"role": "worker"}))).await;
    let (code, body) = api
        .patch(
            "/api/v1/nodes/other",
            "application/merge-patch+json",
            &json!({"metadata": {"labels": {"role": "worker"}}}),
        )
        .await;
    assert!(code.is_success(), "{body}");
    let by_node = placed(&api, 4).await;
    assert_eq!(by_node.keys().collect::<Vec<_>>(), ["n1", "n2", "n3", "other"]);
    // A node that stops matching loses its pod.
    let (code, body) = api
        .patch("/api/v1/nodes/n2", "application/merge-patch+json", &json!({"metadata": {"labels": {"role": "db"}}}))
        .await;
    assert!(code.is_success(), "{body}");
    let by_node = placed(&api, 3).await;
    assert!(!by_node.contains_key("n2"), "{:?}", by_node.keys());
    let ds = eventually(LONG, "status counts", || async {
        let ds = api.get_ok(&format!("/apis/apps/v1/namespaces/{NS}/daemonsets/agent")).await;
        let s = &ds["status"];
        (s["desiredNumberScheduled"] == 3
            && s["numberReady"] == 3
            && s["numberAvailable"] == 3
            && s["updatedNumberScheduled"] == 3)
            .then_some(ds)
    })
    .await;
    assert_eq!(ds["status"]["observedGeneration"], ds["metadata"]["generation"]);
}

#[tokio::test]
async fn a_rolling_update_replaces_one_node_at_a_time_and_kubectl_rolls_it_back() {
    let nodes: Vec<NodeSpec> = (1..=3).map(|i| NodeSpec::new(&format!("n{i}"))).collect();
    let (cluster, manager, _scheduler, api) = start(&nodes).await;
    let home = tempfile::tempdir().expect("a temporary HOME");
    let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig");
    let _kubelet = Kubelet::start(&api.url(""), NS, "broken");
    api.create(&format!("/apis/apps/v1/namespaces/{NS}/daemonsets"), &daemon_set("agent:1", json!({}))).await;
    placed(&api, 3).await;
    let out = kubectl(&kubeconfig, home.path(), &["rollout", "status", "daemonset/agent", "--timeout=60s"]).await;
    assert!(out.contains("successfully rolled out"), "{out}\n{}", manager.log_tail(20));

    kubectl(&kubeconfig, home.path(), &["set", "image", "daemonset/agent", "agent=agent:2"]).await;
    // maxUnavailable 1: never two nodes without a Ready pod of either version.
    let watcher = {
        let api = api.clone();
        tokio::spawn(async move {
            let mut worst = 0;
            for _ in 0..600 {
                let pods = live_pods(&api, NS, "app=agent").await;
                let ready_nodes: std::collections::BTreeSet<String> = pods
                    .iter()
                    .filter(|p| rkube_tests::controllers::is_ready(p))
                    .filter_map(|p| p["spec"]["nodeName"].as_str().map(String::from))
                    .collect();
                worst = worst.max(3usize.saturating_sub(ready_nodes.len()));
                if pods.len() == 3
                    && pods.iter().all(|p| image_of(p) == "agent:2" && rkube_tests::controllers::is_ready(p))
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            worst
        })
    };
    let out = kubectl(&kubeconfig, home.path(), &["rollout", "status", "daemonset/agent", "--timeout=60s"]).await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let worst = watcher.await.expect("watcher");
    assert!(worst <= 1, "{worst} nodes were without a Ready daemon pod at once");
    let by_node = placed(&api, 3).await;
    assert!(by_node.values().all(|p| image_of(p) == "agent:2"), "{by_node:?}");

    let history = kubectl(&kubeconfig, home.path(), &["rollout", "history", "daemonset/agent"]).await;
    assert!(history.contains('1') && history.contains('2'), "{history}");
    let revisions = kubectl(&kubeconfig, home.path(), &["get", "controllerrevisions"]).await;
    assert!(revisions.contains("daemonset.apps/agent"), "{revisions}");

    kubectl(&kubeconfig, home.path(), &["rollout", "undo", "daemonset/agent"]).await;
    let out = kubectl(&kubeconfig, home.path(), &["rollout", "status", "daemonset/agent", "--timeout=60s"]).await;
    assert!(out.contains("successfully rolled out"), "{out}");
    eventually(LONG, "agent:1 on every node again", || async {
        let pods = live_pods(&api, NS, "app=agent").await;
        (pods.len() == 3 && pods.iter().all(|p| image_of(p) == "agent:1")).then_some(())
    })
    .await;
    let out = kubectl(&kubeconfig, home.path(), &["get", "daemonsets"]).await;
    let header: Vec<&str> = out.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE", "SELECTOR", "AGE"],
        "{out}"
    );
    let story = kubectl(&kubeconfig, home.path(), &["events", "--for", "daemonset/agent"]).await;
    assert!(story.contains("SuccessfulCreate") && story.contains("SuccessfulDelete"), "{story}");
}

#[tokio::test]
async fn a_worker_that_leaves_loses_its_pod_to_the_pod_gc_and_gets_a_new_one_when_it_joins_again() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    for name in ["n1", "n2"] {
        create_node(&api, &NodeSpec::new(name)).await;
    }
    let _manager = ControllerManager::start(
        &cluster,
        &["--leader-elect=false", "--controllers=daemonset,podgc", "--podgc-orphan-quarantine=1s"],
    )
    .await
    .expect("controller-manager starts");
    let _scheduler = Scheduler::start(&cluster, &["--leader-elect=false"]).await.expect("scheduler starts");
    api.create(&format!("/apis/apps/v1/namespaces/{NS}/daemonsets"), &daemon_set("agent:1", json!({}))).await;
    let before = placed(&api, 2).await;
    let old_uid = before["n2"]["metadata"]["uid"].clone();

    // n2 leaves: its Node is deleted; the pod still bound to it is collected.
    let (code, body) = api.delete("/api/v1/nodes/n2").await;
    assert!(code.is_success(), "{body}");
    eventually(LONG, "the pod of n2 gone", || async {
        let (status, _) =
            api.get(&format!("/api/v1/namespaces/{NS}/pods/{}", before["n2"]["metadata"]["name"].as_str()?)).await;
        (status.as_u16() == 404).then_some(())
    })
    .await;
    assert_eq!(live_pods(&api, NS, "app=agent").await.len(), 1, "n1 keeps its pod");

    // A worker named n2 joins again: it gets a daemon pod of its own.
    create_node(&api, &NodeSpec::new("n2")).await;
    let after = placed(&api, 2).await;
    assert_ne!(after["n2"]["metadata"]["uid"], old_uid, "a new pod for the new node");
    assert_eq!(after["n1"]["metadata"]["uid"], before["n1"]["metadata"]["uid"]);
}
