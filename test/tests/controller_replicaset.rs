//! The ReplicaSet controller, end to end: real etcd, the real apiserver and the real
//! `rkube-controller-manager`. No kubelet: the test marks pods Ready through their status.

use std::time::Duration;

use rkube_tests::controllers::{ControllerManager, live_pods, mark_ready, pods, replica_set};
use rkube_tests::{Api, Cluster, eventually, stays_true};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

/// How long the controller keeps waiting for a pod create whose outcome is unknown (the
/// connection broke mid-request) before a sync trusts its cache again: `UNCERTAIN_TTL` in
/// pkg/controller/src/expectations.rs, which this crate cannot import.
const UNCERTAIN_TTL: Duration = Duration::from_secs(15);

/// Failed ReplicaSet syncs in the controller-manager's /metrics.
const SYNC_ERRORS: &str = "rkube_controller_sync_errors_total{controller=\"replicaset\"}";
/// The delay before the controller's pod informer tries to watch again; above 0 only while it
/// cannot watch.
const POD_WATCH_BACKOFF: &str = "rkube_informer_backoff_seconds{resource=\"pods\"}";

fn name_of(pod: &Value) -> String {
    pod["metadata"]["name"].as_str().unwrap_or_default().to_string()
}

async fn start() -> (Cluster, ControllerManager, Api) {
    start_with(&[]).await
}

async fn start_with(extra: &[&str]) -> (Cluster, ControllerManager, Api) {
    let cluster = Cluster::start().await.expect("cluster starts");
    let mut args = vec!["--leader-elect=false", "--controllers=replicaset"];
    args.extend_from_slice(extra);
    let manager = ControllerManager::start(&cluster, &args).await.expect("controller-manager starts");
    let api = Api::new(cluster.url());
    (cluster, manager, api)
}

/// Waits until exactly `count` live pods match `app=<name>`, and returns them.
async fn exactly(api: &Api, name: &str, count: usize) -> Vec<Value> {
    eventually(LONG, &format!("exactly {count} live pods of {name}"), || async {
        let pods = live_pods(api, "default", &format!("app={name}")).await;
        (pods.len() == count).then_some(pods)
    })
    .await
}

async fn scale(api: &Api, name: &str, replicas: i64) {
    let path = format!("/apis/apps/v1/namespaces/default/replicasets/{name}/scale");
    let (status, body) =
        api.patch(&path, "application/merge-patch+json", &json!({"spec": {"replicas": replicas}})).await;
    assert!(status.is_success(), "scale {name} to {replicas}: {status} {body}");
}

#[tokio::test]
async fn replica_set_creates_owned_pods_and_reports_ready_and_available_status() {
    let (_cluster, _manager, api) = start().await;
    let rs =
        api.create("/apis/apps/v1/namespaces/default/replicasets", &replica_set("default", "web", 3, "nginx")).await;
    let pods = exactly(&api, "web", 3).await;
    for pod in &pods {
        assert!(name_of(pod).starts_with("web-"), "generateName <rs>-: {pod}");
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(owner["uid"], rs["metadata"]["uid"], "{pod}");
        assert_eq!((owner["kind"].as_str(), owner["controller"].as_bool()), (Some("ReplicaSet"), Some(true)));
        assert_eq!(owner["blockOwnerDeletion"], true);
    }
    eventually(LONG, "status.replicas 3, nothing ready", || async {
        let rs = api.get_ok("/apis/apps/v1/namespaces/default/replicasets/web").await;
        let status = &rs["status"];
        (status["replicas"] == 3 && status["fullyLabeledReplicas"] == 3 && status["observedGeneration"] == 1)
            .then_some(())
    })
    .await;
    for pod in &pods {
        assert!(mark_ready(&api, "default", &name_of(pod)).await);
    }
    eventually(LONG, "readyReplicas and availableReplicas 3", || async {
        let rs = api.get_ok("/apis/apps/v1/namespaces/default/replicasets/web").await;
        (rs["status"]["readyReplicas"] == 3 && rs["status"]["availableReplicas"] == 3).then_some(())
    })
    .await;
}

#[tokio::test]
async fn replica_set_scales_up_and_down_deleting_not_ready_pods_first() {
    let (_cluster, _manager, api) = start().await;
    api.create("/apis/apps/v1/namespaces/default/replicasets", &replica_set("default", "web", 2, "nginx")).await;
    let first = exactly(&api, "web", 2).await;
    for pod in &first {
        assert!(mark_ready(&api, "default", &name_of(pod)).await);
    }
    scale(&api, "web", 5).await;
    exactly(&api, "web", 5).await;
    // Three new pods are not ready: scaling to 2 must delete exactly those.
    scale(&api, "web", 2).await;
    let left = exactly(&api, "web", 2).await;
    let mut kept: Vec<String> = left.iter().map(name_of).collect();
    let mut ready: Vec<String> = first.iter().map(name_of).collect();
    kept.sort();
    ready.sort();
    assert_eq!(kept, ready, "the ready pods are kept, the not-ready ones go");
    scale(&api, "web", 0).await;
    exactly(&api, "web", 0).await;
    eventually(LONG, "status.replicas 0", || async {
        let rs = api.get_ok("/apis/apps/v1/namespaces/default/replicasets/web").await;
        (rs["status"]["replicas"].as_i64().unwrap_or(0) == 0 && rs["status"]["observedGeneration"] == 4).then_some(())
    })
    .await;
}

#[tokio::test]
async fn replica_set_adopts_matching_orphans_and_releases_pods_that_stop_matching() {
    let (_cluster, manager, api) = start().await;
    for name in ["orphan-a", "orphan-b"] {
        api.create(
            "/api/v1/namespaces/default/pods",
            &rkube_tests::resources::pod("default", name, json!({"app": "web"})),
        )
        .await;
    }
    // The orphans must be in the controller's cache before the ReplicaSet appears, or it
    // rightly creates pods of its own first (the pod and ReplicaSet watches are separate
    // streams with no order between them).
    eventually(LONG, "the controller's pod informer to see both orphans", || async {
        let text = manager.metrics().await;
        let added: f64 = text
            .lines()
            .filter(|l| l.starts_with("rkube_informer_events_total{"))
            .filter(|l| l.contains("resource=\"pods\"") && l.contains("type=\"ADDED\""))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum();
        (added >= 2.0).then_some(())
    })
    .await;
    let rs =
        api.create("/apis/apps/v1/namespaces/default/replicasets", &replica_set("default", "web", 3, "nginx")).await;
    let pods = exactly(&api, "web", 3).await;
    let names: Vec<String> = pods.iter().map(name_of).collect();
    assert!(names.contains(&"orphan-a".to_string()) && names.contains(&"orphan-b".to_string()), "{names:?}");
    eventually(LONG, "both orphans adopted", || async {
        let pods = live_pods(&api, "default", "app=web").await;
        pods.iter().all(|pod| pod["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]).then_some(())
    })
    .await;
    // Relabel one: it no longer matches, so it is released and replaced.
    let (status, body) = api
        .patch(
            "/api/v1/namespaces/default/pods/orphan-a",
            "application/merge-patch+json",
            &json!({"metadata": {"labels": {"app": "debug"}}}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    eventually(LONG, "orphan-a released", || async {
        let pod = api.get_ok("/api/v1/namespaces/default/pods/orphan-a").await;
        pod["metadata"]["ownerReferences"].as_array().is_none_or(Vec::is_empty).then_some(())
    })
    .await;
    exactly(&api, "web", 3).await;
}

#[tokio::test]
async fn a_deleted_pod_is_replaced() {
    let (_cluster, _manager, api) = start().await;
    api.create("/apis/apps/v1/namespaces/default/replicasets", &replica_set("default", "web", 2, "nginx")).await;
    let before = exactly(&api, "web", 2).await;
    let victim = name_of(&before[0]);
    let (status, _) = api.delete(&format!("/api/v1/namespaces/default/pods/{victim}")).await;
    assert!(status.is_success());
    let after = eventually(LONG, "a replacement pod", || async {
        let pods = live_pods(&api, "default", "app=web").await;
        (pods.len() == 2 && pods.iter().all(|pod| name_of(pod) != victim)).then_some(pods)
    })
    .await;
    assert_eq!(after.len(), 2);
}

#[tokio::test]
async fn a_refused_create_shows_as_replica_failure_and_is_counted_in_metrics() {
    let (_cluster, manager, api) = start().await;
    // A template may leave the image empty; a pod may not, so every create gets 422.
    api.create("/apis/apps/v1/namespaces/default/replicasets", &replica_set("default", "broken", 2, "")).await;
    eventually(LONG, "ReplicaFailure=True reason FailedCreate", || async {
        let rs = api.get_ok("/apis/apps/v1/namespaces/default/replicasets/broken").await;
        let conditions = rs["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions
            .iter()
            .any(|c| c["type"] == "ReplicaFailure" && c["status"] == "True" && c["reason"] == "FailedCreate")
            .then_some(())
    })
    .await;
    assert!(pods(&api, "default", "app=broken").await.is_empty());
    // The failures are requeued with backoff and counted; the endpoints are up.
    eventually(LONG, "sync errors counted", || async {
        (manager.metric("rkube_controller_sync_errors_total{controller=\"replicaset\"}").await > 0.0).then_some(())
    })
    .await;
    let metrics = manager.metrics().await;
    for name in ["rkube_workqueue_retries_total", "rkube_informer_watches_total", "rkube_controller_syncs_total"] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    let readyz = reqwest::get(format!("{}/readyz", manager.url)).await.expect("GET /readyz");
    assert_eq!(readyz.status(), 200);
}

/// The cache-lag case: the apiserver dies in the middle of a scale-up and comes back. Every
/// pod carries a finalizer, so a pod created too many and then deleted would stay visible:
/// the total ever created must be exactly the replicas asked for.
#[tokio::test]
async fn no_pod_is_created_twice_when_the_apiserver_restarts_mid_scale_up() {
    // 20 creates per second: the scale-up takes about 3 s, so the apiserver dies in its middle.
    let (mut cluster, manager, api) = start_with(&["--kube-api-qps=20", "--kube-api-burst=1"]).await;
    let mut rs = replica_set("default", "web", 0, "nginx");
    rs["spec"]["template"]["metadata"]["finalizers"] = json!(["rkube.dev/test-hold"]);
    api.create("/apis/apps/v1/namespaces/default/replicasets", &rs).await;
    scale(&api, "web", 60).await;
    let at_kill = eventually(LONG, "the scale-up to start", || async {
        let count = pods(&api, "default", "app=web").await.len();
        (count >= 3).then_some(count)
    })
    .await;
    let errors_before_kill = manager.metric(SYNC_ERRORS).await;
    cluster.apiserver.kill();
    let killed_at = tokio::time::Instant::now();
    assert!(at_kill < 60, "the apiserver must die mid scale-up, not after ({at_kill} pods)");
    // The controller is cut off before the apiserver comes back: a create of its scale-up
    // failed, and its pod watch broke and cannot start again, so its cache must catch up
    // through a resumed watch.
    eventually(LONG, "a failed sync and the controller's pod watch backing off", || async {
        let errors = manager.metric(SYNC_ERRORS).await;
        (errors > errors_before_kill && manager.metric(POD_WATCH_BACKOFF).await > 0.0).then_some(())
    })
    .await;
    cluster.apiserver.restart().await.expect("apiserver restarts");
    let restarted_at = tokio::time::Instant::now();
    let all = eventually(LONG, "60 pods", || async {
        let all = pods(&api, "default", "app=web").await;
        (all.len() >= 60).then_some(all)
    })
    .await;
    assert_eq!(all.len(), 60, "exactly 60 pods created; controller log:\n{}", manager.log_tail(30));
    eventually(LONG, "status.replicas 60: the controller's cache has every pod", || async {
        let rs = api.get_ok("/apis/apps/v1/namespaces/default/replicasets/web").await;
        (rs["status"]["replicas"] == 60 && rs["status"]["observedGeneration"] == 2).then_some(())
    })
    .await;
    // A controller trusting a stale cache would overshoot at one of its syncs that no event
    // wakes: when the expectations left by a create cut off by the outage expire (at most
    // UNCERTAIN_TTL after it failed, which was before the restart), or when the retry of a
    // sync that failed during the outage comes due (the per-key backoff doubles from 5 ms, so
    // the last one is due within about the outage's length after the restart). Watch the pods
    // until both have passed, plus a second for such a sync to send its first create (at 20
    // per second).
    let outage = restarted_at - killed_at;
    let quiet_until = restarted_at + UNCERTAIN_TTL.max(outage) + Duration::from_secs(1);
    let window = quiet_until.saturating_duration_since(tokio::time::Instant::now());
    eprintln!("outage {outage:?}; watching the pods for {window:?} more");
    stays_true(window, "exactly 60 pods ever created, none deleted", || async {
        let all = pods(&api, "default", "app=web").await;
        let terminating = all.iter().filter(|pod| !pod["metadata"]["deletionTimestamp"].is_null()).count();
        let exact = all.len() == 60 && terminating == 0;
        if !exact {
            eprintln!("{} pods, {terminating} terminating; controller log:\n{}", all.len(), manager.log_tail(30));
        }
        exact
    })
    .await;
}

#[tokio::test]
async fn available_replicas_wait_for_min_ready_seconds() {
    let (_cluster, _manager, api) = start().await;
    let mut rs = replica_set("default", "web", 2, "nginx");
    rs["spec"]["minReadySeconds"] = json!(5);
    api.create("/apis/apps/v1/namespaces/default/replicasets", &rs).await;
    for pod in exactly(&api, "web", 2).await {
        assert!(mark_ready(&api, "default", &name_of(&pod)).await);
    }
    let early = eventually(LONG, "readyReplicas 2", || async {
        let rs = api.get_ok("/apis/apps/v1/namespaces/default/replicasets/web").await;
        (rs["status"]["readyReplicas"] == 2).then_some(rs)
    })
    .await;
    assert_eq!(early["status"]["availableReplicas"].as_i64().unwrap_or(0), 0, "ready, not yet available: {early}");
    eventually(LONG, "availableReplicas 2 after minReadySeconds", || async {
        let rs = api.get_ok("/apis/apps/v1/namespaces/default/replicasets/web").await;
        (rs["status"]["availableReplicas"] == 2).then_some(())
    })
    .await;
}

/// Whether a connection to `url`'s port holds request bytes its server has not read: with
/// the server frozen, a request is then in flight and will never be answered.
fn a_request_waits_unread_at(url: &str) -> bool {
    let port: u16 = url.rsplit(':').next().and_then(|port| port.parse().ok()).expect("port in url");
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    // Each line: `sl local_address rem_address st tx_queue:rx_queue ...`, addresses as hex
    // `IP:PORT`.
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local_port = fields.get(1).and_then(|address| address.rsplit(':').next());
        let rx_queue = fields.get(4).and_then(|queues| queues.rsplit(':').next());
        local_port.and_then(|hex| u16::from_str_radix(hex, 16).ok()) == Some(port)
            && rx_queue.and_then(|hex| u64::from_str_radix(hex, 16).ok()).is_some_and(|bytes| bytes > 0)
    })
}

/// The fault-audit case: the apiserver dies while pod creates are in flight, so their outcome
/// is unknown and the ReplicaSet's expectations stay unmet until their shortened deadline
/// (15 s). By then every event has been seen and nothing else wakes the key: the sync that
/// skipped creating must itself ask to run again when the expectations expire.
///
/// To cut a create off mid-request every time, the apiserver is frozen (SIGSTOP) once the
/// scale-up has started, killed as soon as a create waits unread in its socket, and restarted
/// 2 s later.
#[tokio::test]
async fn a_scale_up_cut_off_by_an_apiserver_outage_still_reaches_its_replica_count() {
    // 20 creates per second: the 40 new pods take about 2 s, so the apiserver dies among them.
    let (mut cluster, manager, api) = start_with(&["--kube-api-qps=20", "--kube-api-burst=1"]).await;
    api.create("/apis/apps/v1/namespaces/default/replicasets", &replica_set("default", "web", 20, "nginx")).await;
    exactly(&api, "web", 20).await;
    scale(&api, "web", 60).await;
    let at_freeze = eventually(LONG, "the scale-up to start", || async {
        let count = live_pods(&api, "default", "app=web").await.len();
        (count > 20).then_some(count)
    })
    .await;
    let pid = cluster.apiserver.pid().expect("the apiserver runs");
    let frozen = std::process::Command::new("kill").args(["-STOP", &pid.to_string()]).status();
    assert!(frozen.is_ok_and(|status| status.success()), "SIGSTOP the apiserver");
    let url = cluster.url().to_string();
    eventually(LONG, "a pod create in flight to the frozen apiserver", || async {
        a_request_waits_unread_at(&url).then_some(())
    })
    .await;
    cluster.apiserver.kill();
    assert!(at_freeze < 60, "the apiserver must die mid scale-up, not after ({at_freeze} pods)");
    // The outage itself: for this long, creates and status writes are refused.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.apiserver.restart().await.expect("apiserver restarts");
    eventually(LONG, "60 live pods and status.replicas 60", || async {
        let count = live_pods(&api, "default", "app=web").await.len();
        let rs = api.get_ok("/apis/apps/v1/namespaces/default/replicasets/web").await;
        (count == 60 && rs["status"]["replicas"] == 60).then_some(())
    })
    .await;
    let log = manager.log();
    assert!(log.contains("transport"), "a create was cut off mid-request (outcome unknown); log:\n{log}");
}
