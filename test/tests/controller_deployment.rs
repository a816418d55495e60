//! The Deployment controller, end to end: real etcd, the real apiserver and the real
//! `rkube-controller-manager` (ReplicaSet and Deployment controllers). A [`Kubelet`] stand-in
//! marks pods Ready, except pods whose image contains `broken`.

use std::collections::HashMap;
use std::time::Duration;

use rkube_tests::controllers::{ControllerManager, Kubelet, deployment, is_ready, live_pods};
use rkube_tests::{Api, Cluster, eventually};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

async fn start() -> (Cluster, ControllerManager, Api) {
    let cluster = Cluster::start().await.expect("cluster starts");
    let manager = ControllerManager::start(&cluster, &["--leader-elect=false", "--controllers=replicaset,deployment"])
        .await
        .expect("controller-manager starts");
    let api = Api::new(cluster.url());
    (cluster, manager, api)
}

/// What `kubectl rollout status` waits for (kubectl's `DeploymentStatusViewer`).
fn rolled_out(deployment: &Value) -> bool {
    let (spec, status) = (&deployment["spec"], &deployment["status"]);
    let number = |value: &Value| value.as_i64().unwrap_or(0);
    let deadline_exceeded = status["conditions"].as_array().is_some_and(|conditions| {
        conditions.iter().any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded")
    });
    number(&deployment["metadata"]["generation"]) <= number(&status["observedGeneration"])
        && !deadline_exceeded
        && number(&status["updatedReplicas"]) >= number(&spec["replicas"])
        && number(&status["replicas"]) <= number(&status["updatedReplicas"])
        && number(&status["availableReplicas"]) >= number(&status["updatedReplicas"])
}

async fn wait_rolled_out(api: &Api, name: &str) -> Value {
    eventually(LONG, &format!("deployment {name} rolled out"), || async {
        let deployment = api.get_ok(&format!("{DEPLOYMENTS}/{name}")).await;
        rolled_out(&deployment).then_some(deployment)
    })
    .await
}

async fn set_image(api: &Api, name: &str, image: &str) {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}});
    let (status, body) = api.patch(&format!("{DEPLOYMENTS}/{name}"), "application/merge-patch+json", &patch).await;
    assert!(status.is_success(), "{body}");
}

fn image_of(pod: &Value) -> &str {
    pod["spec"]["containers"][0]["image"].as_str().unwrap_or_default()
}

async fn replica_sets(api: &Api) -> Vec<Value> {
    let list = api.get_ok("/apis/apps/v1/namespaces/default/replicasets").await;
    list["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn rolling_update_with_max_unavailable_zero_never_drops_below_the_desired_ready_count() {
    let (cluster, _manager, api) = start().await;
    let _kubelet = Kubelet::start(cluster.url(), "default", "broken");
    let mut web = deployment("default", "web", 3, "nginx:1", 1, 0);
    web["spec"]["revisionHistoryLimit"] = json!(0);
    api.create(DEPLOYMENTS, &web).await;
    let first = wait_rolled_out(&api, "web").await;
    assert_eq!(first["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");
    let rs = replica_sets(&api).await;
    assert_eq!(rs.len(), 1);
    let hash = rs[0]["metadata"]["labels"]["pod-template-hash"].as_str().expect("pod-template-hash label").to_string();
    assert_eq!(rs[0]["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(rs[0]["spec"]["selector"]["matchLabels"]["pod-template-hash"], hash);

    // Watch every pod change from here on; at no moment may fewer than 3 be ready, nor more
    // than 3 + maxSurge exist.
    let list = api.get_ok("/api/v1/namespaces/default/pods").await;
    let mut ready: HashMap<String, bool> = HashMap::new();
    let mut existing: HashMap<String, bool> = HashMap::new();
    for pod in list["items"].as_array().cloned().unwrap_or_default() {
        ready.insert(pod["metadata"]["name"].as_str().unwrap_or_default().into(), is_ready(&pod));
        existing.insert(pod["metadata"]["name"].as_str().unwrap_or_default().into(), true);
    }
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
    let mut watch = api.watch(&format!("/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}")).await;
    set_image(&api, "web", "nginx:2").await;
    let deadline = tokio::time::Instant::now() + LONG;
    let mut lowest = usize::MAX;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "rollout did not finish; lowest ready count {lowest}");
        if let Ok(Some(event)) = watch.next_within(Duration::from_millis(300)).await {
            let pod = &event["object"];
            let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let serving = event["type"] != "DELETED" && pod["metadata"]["deletionTimestamp"].is_null() && is_ready(pod);
            ready.insert(name.clone(), serving);
            let live = event["type"] != "DELETED" && pod["metadata"]["deletionTimestamp"].is_null();
            existing.insert(name, live);
            let count = ready.values().filter(|serving| **serving).count();
            let total = existing.values().filter(|live| **live).count();
            assert!(total <= 4, "{total} pods exist: more than replicas + maxSurge (event {event})");
            lowest = lowest.min(count);
            assert!(count >= 3, "only {count} pods ready during the rollout (event {event})");
            continue;
        }
        let web = api.get_ok(&format!("{DEPLOYMENTS}/web")).await;
        let pods = live_pods(&api, "default", "app=web").await;
        if rolled_out(&web) && pods.len() == 3 && pods.iter().all(|pod| image_of(pod) == "nginx:2") {
            assert_eq!(web["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "2");
            break;
        }
    }
    // revisionHistoryLimit 0: the old, empty ReplicaSet is deleted.
    eventually(LONG, "only the new ReplicaSet left", || async { (replica_sets(&api).await.len() == 1).then_some(()) })
        .await;
}

#[tokio::test]
async fn a_broken_rollout_stops_with_progress_deadline_exceeded_and_rollback_restores_the_old_template() {
    let (cluster, manager, api) = start().await;
    let _kubelet = Kubelet::start(cluster.url(), "default", "broken");
    let mut web = deployment("default", "web", 2, "nginx:1", 1, 0);
    web["spec"]["progressDeadlineSeconds"] = json!(3);
    api.create(DEPLOYMENTS, &web).await;
    wait_rolled_out(&api, "web").await;
    let good_template = replica_sets(&api).await[0]["spec"]["template"].clone();

    set_image(&api, "web", "broken:1").await;
    let stuck = eventually(LONG, "Progressing=False ProgressDeadlineExceeded", || async {
        let web = api.get_ok(&format!("{DEPLOYMENTS}/web")).await;
        let conditions = web["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions
            .iter()
            .any(|c| c["type"] == "Progressing" && c["status"] == "False" && c["reason"] == "ProgressDeadlineExceeded")
            .then_some(web)
    })
    .await;
    let pods = live_pods(&api, "default", "app=web").await;
    let serving: Vec<&Value> = pods.iter().filter(|pod| is_ready(pod) && image_of(pod) == "nginx:1").collect();
    assert_eq!(serving.len(), 2, "the old pods keep serving: {pods:?}\n{}", manager.log_tail(20));
    assert_eq!(pods.len(), 3, "one surge pod of the broken template, no more");
    assert_eq!(stuck["status"]["availableReplicas"], 2);

    // `kubectl rollout undo`: write the previous ReplicaSet's template (minus its hash label)
    // back into the Deployment.
    let mut template = good_template;
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
    }
    let patch = json!([{"op": "replace", "path": "/spec/template", "value": template}]);
    let (status, body) = api.patch(&format!("{DEPLOYMENTS}/web"), "application/json-patch+json", &patch).await;
    assert!(status.is_success(), "{body}");
    let web = wait_rolled_out(&api, "web").await;
    assert_eq!(web["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3");
    let pods = eventually(LONG, "two nginx:1 pods and no broken one", || async {
        let pods = live_pods(&api, "default", "app=web").await;
        (pods.len() == 2 && pods.iter().all(|pod| image_of(pod) == "nginx:1")).then_some(pods)
    })
    .await;
    assert_eq!(pods.len(), 2);
    let revisions: Vec<(String, i64)> = replica_sets(&api)
        .await
        .iter()
        .map(|rs| {
            (
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                rs["spec"]["replicas"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert!(revisions.contains(&("3".into(), 2)) && revisions.contains(&("2".into(), 0)), "{revisions:?}");
}

#[tokio::test]
async fn recreate_removes_every_old_pod_before_creating_new_ones() {
    let (cluster, _manager, api) = start().await;
    let _kubelet = Kubelet::start(cluster.url(), "default", "broken");
    let mut web = deployment("default", "web", 2, "nginx:1", 1, 0);
    web["spec"]["strategy"] = json!({"type": "Recreate"});
    api.create(DEPLOYMENTS, &web).await;
    wait_rolled_out(&api, "web").await;
    let list = api.get_ok("/api/v1/namespaces/default/pods").await;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
    let mut watch = api.watch(&format!("/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}")).await;
    set_image(&api, "web", "nginx:2").await;
    let mut old_left: usize = 2;
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "recreate did not finish");
        if let Ok(Some(event)) = watch.next_within(Duration::from_millis(300)).await {
            let pod = &event["object"];
            if event["type"] == "DELETED" && image_of(pod) == "nginx:1" {
                old_left -= 1;
            }
            if event["type"] == "ADDED" {
                assert_eq!(image_of(pod), "nginx:2");
                assert_eq!(old_left, 0, "a new pod was created while old ones remained");
            }
            continue;
        }
        if rolled_out(&api.get_ok(&format!("{DEPLOYMENTS}/web")).await) && old_left == 0 {
            break;
        }
    }
}

#[tokio::test]
async fn a_paused_deployment_does_not_roll_out_until_resumed() {
    let (cluster, _manager, api) = start().await;
    let _kubelet = Kubelet::start(cluster.url(), "default", "broken");
    api.create(DEPLOYMENTS, &deployment("default", "web", 2, "nginx:1", 1, 0)).await;
    wait_rolled_out(&api, "web").await;
    let (status, body) = api
        .patch(&format!("{DEPLOYMENTS}/web"), "application/merge-patch+json", &json!({"spec": {"paused": true}}))
        .await;
    assert!(status.is_success(), "{body}");
    set_image(&api, "web", "nginx:2").await;
    eventually(LONG, "Progressing=Unknown DeploymentPaused", || async {
        let web = api.get_ok(&format!("{DEPLOYMENTS}/web")).await;
        let conditions = web["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let paused = conditions.iter().any(|c| c["type"] == "Progressing" && c["reason"] == "DeploymentPaused");
        (paused && web["status"]["observedGeneration"] == web["metadata"]["generation"]).then_some(())
    })
    .await;
    assert_eq!(replica_sets(&api).await.len(), 1, "no new ReplicaSet while paused");
    assert!(live_pods(&api, "default", "app=web").await.iter().all(|pod| image_of(pod) == "nginx:1"));
    let (status, body) = api
        .patch(&format!("{DEPLOYMENTS}/web"), "application/merge-patch+json", &json!({"spec": {"paused": false}}))
        .await;
    assert!(status.is_success(), "{body}");
    eventually(LONG, "the rollout after resuming", || async {
        let pods = live_pods(&api, "default", "app=web").await;
        let web = api.get_ok(&format!("{DEPLOYMENTS}/web")).await;
        (rolled_out(&web) && pods.len() == 2 && pods.iter().all(|pod| image_of(pod) == "nginx:2")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn scaling_in_the_middle_of_a_stuck_rollout_keeps_each_replica_set_s_share() {
    let (cluster, _manager, api) = start().await;
    let _kubelet = Kubelet::start(cluster.url(), "default", "broken");
    api.create(DEPLOYMENTS, &deployment("default", "web", 4, "nginx:1", 1, 0)).await;
    wait_rolled_out(&api, "web").await;
    set_image(&api, "web", "broken:1").await;
    let sizes = |sets: &[Value]| {
        let mut sizes: Vec<(String, i64)> = sets
            .iter()
            .map(|rs| {
                let image = rs["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap_or_default();
                (image.to_string(), rs["spec"]["replicas"].as_i64().unwrap_or(-1))
            })
            .collect();
        sizes.sort();
        sizes
    };
    eventually(LONG, "stuck at 4 old + 1 broken", || async {
        let sets = replica_sets(&api).await;
        (sizes(&sets) == [("broken:1".to_string(), 1), ("nginx:1".to_string(), 4)]
            && live_pods(&api, "default", "app=web").await.len() == 5)
            .then_some(())
    })
    .await;
    let (status, body) = api
        .patch(&format!("{DEPLOYMENTS}/web"), "application/merge-patch+json", &json!({"spec": {"replicas": 8}}))
        .await;
    assert!(status.is_success(), "{body}");
    // 8 + surge 1 = 9 pods, shared 4:1 as before: 7 old, 2 new (not 4 old, 5 broken).
    eventually(LONG, "7 old and 2 broken", || async {
        (sizes(&replica_sets(&api).await) == [("broken:1".to_string(), 2), ("nginx:1".to_string(), 7)]).then_some(())
    })
    .await;
    eventually(LONG, "7 old pods serving", || async {
        let pods = live_pods(&api, "default", "app=web").await;
        let serving = pods.iter().filter(|pod| is_ready(pod) && image_of(pod) == "nginx:1").count();
        (serving == 7).then_some(())
    })
    .await;
}
