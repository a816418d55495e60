//! The workload controllers survive `kill -9` of the controller-manager in the middle of
//! their work: real etcd and apiserver, the real `rkube-controller-manager` killed and started
//! again while it creates pods. What must hold, as after any crash of Kubernetes'
//! controller-manager: no pod made twice (every pod creation is watched from the start, so a
//! surplus pod that was made and deleted again would be seen), none missing at the end.
//! (The Job and CronJob controllers have their own kill tests in `controller_job.rs` and
//! `controller_cronjob.rs`.)

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rkube_tests::controllers::{ControllerManager, live_pods};
use rkube_tests::scheduler::{NodeSpec, Scheduler, create_node};
use rkube_tests::{Api, Cluster, eventually};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(90);
const NS: &str = "default";

/// Every pod created in `NS` with `selector` since the watch began: name → uids.
#[derive(Clone, Default)]
struct Creations(Arc<Mutex<BTreeMap<String, Vec<String>>>>);

impl Creations {
    async fn watch(api: &Api, selector: &str) -> Creations {
        let list = api.get_ok(&format!("/api/v1/namespaces/{NS}/pods")).await;
        let rv = list["metadata"]["resourceVersion"].as_str().expect("resourceVersion").to_string();
        let path = format!(
            "/api/v1/namespaces/{NS}/pods?watch=true&labelSelector={}&resourceVersion={rv}",
            rkube_tests::escape_query(selector)
        );
        let mut stream = api.watch(&path).await;
        let creations = Creations::default();
        let seen = creations.clone();
        tokio::spawn(async move {
            while let Some(event) = stream.next().await {
                if event["type"] == "ADDED" {
                    let name = event["object"]["metadata"]["name"].as_str().unwrap_or_default().to_string();
                    let uid = event["object"]["metadata"]["uid"].as_str().unwrap_or_default().to_string();
                    seen.0.lock().expect("lock").entry(name).or_default().push(uid);
                }
            }
        });
        creations
    }

    fn total(&self) -> usize {
        self.0.lock().expect("lock").values().map(Vec::len).sum()
    }

    fn snapshot(&self) -> BTreeMap<String, Vec<String>> {
        self.0.lock().expect("lock").clone()
    }
}

/// Kills the controller-manager and starts it again, `rounds` times, `pause` apart, while it works.
async fn kill_again_and_again(manager: &mut ControllerManager, rounds: u64, pause: Duration) {
    for round in 0..rounds {
        tokio::time::sleep(pause + Duration::from_millis(40 * (round % 3))).await;
        manager.kill();
        manager.restart().await.expect("controller-manager restarts");
    }
}

async fn live_exactly(api: &Api, selector: &str, count: usize) -> Vec<Value> {
    eventually(LONG, &format!("{count} live pods {selector}"), || async {
        let pods = live_pods(api, NS, selector).await;
        (pods.len() == count).then_some(pods)
    })
    .await
}

#[tokio::test]
async fn a_replication_controller_killed_while_it_creates_makes_each_replica_once() {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    let mut manager =
        ControllerManager::start(&cluster, &["--leader-elect=false", "--controllers=replicationcontroller"])
            .await
            .expect("controller-manager");
    let creations = Creations::watch(&api, "app=many").await;
    let rc = json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "many"},
        "spec": {"replicas": 40, "template": {"metadata": {"labels": {"app": "many"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    api.create(&format!("/api/v1/namespaces/{NS}/replicationcontrollers"), &rc).await;
    kill_again_and_again(&mut manager, 4, Duration::from_millis(60)).await;
    live_exactly(&api, "app=many", 40).await;
    // Settled: still 40, and never one more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(live_pods(&api, NS, "app=many").await.len(), 40);
    assert_eq!(creations.total(), 40, "pods made: {:?}\n{}", creations.snapshot(), manager.log_tail(30));
}

#[tokio::test]
async fn a_daemon_set_killed_while_it_places_pods_gives_each_node_one() {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    let nodes = ["n1", "n2", "n3", "n4", "n5"];
    for name in nodes {
        create_node(&api, &NodeSpec::new(name)).await;
    }
    let mut manager = ControllerManager::start(&cluster, &["--leader-elect=false", "--controllers=daemonset"])
        .await
        .expect("controller-manager");
    let _scheduler = Scheduler::start(&cluster, &["--leader-elect=false"]).await.expect("scheduler");
    let creations = Creations::watch(&api, "app=agent").await;
    let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"metadata": {"labels": {"app": "agent"}},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "agent", "image": "agent"}]}}}});
    api.create(&format!("/apis/apps/v1/namespaces/{NS}/daemonsets"), &ds).await;
    kill_again_and_again(&mut manager, 3, Duration::from_millis(40)).await;
    let placed = eventually(LONG, "one agent bound to each node", || async {
        let pods = live_pods(&api, NS, "app=agent").await;
        let mut by_node: Vec<String> =
            pods.iter().filter_map(|p| p["spec"]["nodeName"].as_str().map(String::from)).collect();
        by_node.sort();
        (pods.len() == nodes.len() && by_node == nodes).then_some(by_node)
    })
    .await;
    assert_eq!(placed, nodes);
    assert_eq!(creations.total(), nodes.len(), "pods made: {:?}\n{}", creations.snapshot(), manager.log_tail(30));
}

#[tokio::test]
async fn a_stateful_set_killed_while_it_creates_makes_each_ordinal_and_claim_once() {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    let mut manager = ControllerManager::start(&cluster, &["--leader-elect=false", "--controllers=statefulset"])
        .await
        .expect("controller-manager");
    let creations = Creations::watch(&api, "app=kv").await;
    let set = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "kv"},
        "spec": {"serviceName": "kv", "replicas": 8, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "kv"}},
            "template": {"metadata": {"labels": {"app": "kv"}}, "spec": {"containers": [{"name": "kv", "image": "kv",
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}});
    api.create(&format!("/apis/apps/v1/namespaces/{NS}/statefulsets"), &set).await;
    kill_again_and_again(&mut manager, 3, Duration::from_millis(40)).await;
    let pods = live_exactly(&api, "app=kv", 8).await;
    let mut names: Vec<String> = pods.iter().filter_map(|p| p["metadata"]["name"].as_str().map(String::from)).collect();
    names.sort();
    let want: Vec<String> = (0..8).map(|i| format!("kv-{i}")).collect();
    let mut sorted_want = want.clone();
    sorted_want.sort();
    assert_eq!(names, sorted_want);
    assert_eq!(creations.total(), 8, "pods made: {:?}\n{}", creations.snapshot(), manager.log_tail(30));
    let claims = api.get_ok(&format!("/api/v1/namespaces/{NS}/persistentvolumeclaims")).await;
    let mut claim_names: Vec<String> = claims["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["metadata"]["name"].as_str().map(String::from))
        .collect();
    claim_names.sort();
    let mut want_claims: Vec<String> = want.iter().map(|pod| format!("data-{pod}")).collect();
    want_claims.sort();
    assert_eq!(claim_names, want_claims, "one claim per ordinal");
}
