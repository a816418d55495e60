//! The CronJob controller, end to end: real etcd, the real apiserver and the real
//! `rkube-controller-manager` (`--controllers=cronjob`), and the real kubectl.
//!
//! Schedules fire on minute boundaries, so a test that needs a run *now* moves the CronJob's
//! `status.lastScheduleTime` into the past (as an outage would leave it): the most recent
//! minute is then due at once. Tests that need a second run wait for the next minute (at
//! most 60 s; they run in parallel). Jobs are finished by writing their status, as the Job
//! controller would (it does not run here).

use std::time::Duration;

use rkube_tests::controllers::ControllerManager;
use rkube_tests::kubectl::real_kubectl as kubectl;
use rkube_tests::{Api, Cluster, escape_query, eventually};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(90);

async fn start() -> (Cluster, ControllerManager, Api) {
    let cluster = Cluster::start().await.expect("cluster starts");
    let manager = ControllerManager::start(&cluster, &["--leader-elect=false", "--controllers=cronjob"])
        .await
        .expect("controller-manager starts");
    let api = Api::new(cluster.url());
    (cluster, manager, api)
}

fn cronjob(name: &str, schedule: &str, extra: Value) -> Value {
    let mut cj = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name, "namespace": "default"},
        "spec": {"schedule": schedule, "jobTemplate": {"metadata": {"labels": {"app": name}}, "spec": {"template": {"spec": {
            "restartPolicy": "OnFailure", "containers": [{"name": "hello", "image": "busybox", "command": ["date"]}]}}}}}});
    if let (Some(spec), Some(extra)) = (cj["spec"].as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    cj
}

fn path(name: &str) -> String {
    format!("/apis/batch/v1/namespaces/default/cronjobs/{name}")
}

/// Sets `status.lastScheduleTime` `seconds_ago` in the past.
async fn last_scheduled(api: &Api, name: &str, seconds_ago: i64) {
    let then = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(seconds_ago);
    let then = then.round(jiff::Unit::Second).expect("rounds");
    let body = json!({"status": {"lastScheduleTime": then.to_string()}});
    let (code, reply) = api.patch(&format!("{}/status", path(name)), "application/merge-patch+json", &body).await;
    assert!(code.is_success(), "{code} {reply}");
}

/// The Jobs labelled `app=<name>`, oldest first.
async fn jobs(api: &Api, name: &str) -> Vec<Value> {
    let list = api.get_ok(&format!("/apis/batch/v1/namespaces/default/jobs?labelSelector=app%3D{name}")).await;
    let mut items = list["items"].as_array().cloned().unwrap_or_default();
    items.sort_by_key(|job| job["metadata"]["name"].as_str().unwrap_or_default().to_string());
    items
}

async fn wait_jobs(api: &Api, name: &str, count: usize) -> Vec<Value> {
    eventually(LONG, &format!("{count} jobs of cronjob {name}"), || async {
        let items = jobs(api, name).await;
        (items.len() == count).then_some(items)
    })
    .await
}

/// Marks the Job finished (`Complete` or `Failed`) through its status.
async fn finish_job(api: &Api, name: &str, condition: &str) {
    let now = jiff::Timestamp::now().round(jiff::Unit::Second).expect("rounds").to_string();
    let mut status =
        json!({"startTime": now, "conditions": [{"type": condition, "status": "True", "lastTransitionTime": now}]});
    if condition == "Complete" {
        status["completionTime"] = json!(now);
        status["succeeded"] = json!(1);
        status["conditions"] = json!([{"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
                                      {"type": "Complete", "status": "True", "lastTransitionTime": now}]);
    } else {
        status["conditions"] = json!([{"type": "FailureTarget", "status": "True", "lastTransitionTime": now},
                                      {"type": "Failed", "status": "True", "lastTransitionTime": now}]);
    }
    let path = format!("/apis/batch/v1/namespaces/default/jobs/{name}/status");
    let (code, reply) = api.patch(&path, "application/merge-patch+json", &json!({"status": status})).await;
    assert!(code.is_success(), "{code} {reply}");
}

/// The reasons of the Events about object `name`.
async fn event_reasons(api: &Api, name: &str) -> Vec<String> {
    let selector = escape_query(&format!("involvedObject.name={name}"));
    let list = api.get_ok(&format!("/api/v1/namespaces/default/events?fieldSelector={selector}")).await;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items.iter().filter_map(|e| e["reason"].as_str().map(String::from)).collect()
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_cronjob_runs_its_due_time_once_even_across_a_restart_and_then_each_minute() {
    let (_cluster, mut manager, api) = start().await;
    let cj = api.create("/apis/batch/v1/namespaces/default/cronjobs", &cronjob("tick", "* * * * *", json!({}))).await;
    last_scheduled(&api, "tick", 180).await;
    let first = wait_jobs(&api, "tick", 1).await;
    let job = &first[0];
    let scheduled: jiff::Timestamp = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .expect("scheduled time")
        .parse()
        .expect("RFC 3339");
    assert_eq!(scheduled.as_second() % 60, 0, "a minute boundary: {scheduled}");
    assert_eq!(name_of(job), format!("tick-{}", scheduled.as_second() / 60));
    assert_eq!(job["metadata"]["ownerReferences"][0]["uid"], cj["metadata"]["uid"]);
    assert_eq!(job["spec"]["template"]["spec"]["containers"][0]["command"], json!(["date"]));
    let status = eventually(LONG, "status.active and lastScheduleTime", || async {
        let cj = api.get_ok(&path("tick")).await;
        (cj["status"]["active"][0]["name"] == name_of(job)).then_some(cj["status"].clone())
    })
    .await;
    assert_eq!(status["lastScheduleTime"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()), Some(scheduled));
    // A controller killed and restarted does not run the same time twice.
    manager.kill();
    manager.restart().await.expect("restarts");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = jiff::Timestamp::now();
    if now.as_second() / 60 == scheduled.as_second() / 60 {
        assert_eq!(jobs(&api, "tick").await.len(), 1, "still one Job for {scheduled}");
    }
    finish_job(&api, name_of(job), "Complete").await;
    eventually(LONG, "the finished Job leaves status.active", || async {
        let cj = api.get_ok(&path("tick")).await;
        let active = cj["status"]["active"].as_array().map_or(0, Vec::len);
        (cj["status"]["lastSuccessfulTime"].is_string()
            && !cj["status"]["active"].to_string().contains(name_of(job))
            && active <= 1)
            .then_some(())
    })
    .await;
    // The next minute brings the next Job.
    let two = wait_jobs(&api, "tick", 2).await;
    assert_ne!(name_of(&two[0]), name_of(&two[1]));
    eventually(LONG, "SuccessfulCreate and SawCompletedJob Events on tick", || async {
        let reasons = event_reasons(&api, "tick").await;
        (reasons.iter().any(|r| r == "SuccessfulCreate") && reasons.iter().any(|r| r == "SawCompletedJob"))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn forbid_skips_a_time_while_a_job_runs_and_replace_swaps_it() {
    let (_cluster, _manager, api) = start().await;
    for (name, policy) in [("careful", "Forbid"), ("eager", "Replace")] {
        let body = cronjob(name, "* * * * *", json!({"concurrencyPolicy": policy}));
        api.create("/apis/batch/v1/namespaces/default/cronjobs", &body).await;
        last_scheduled(&api, name, 180).await;
    }
    let careful = wait_jobs(&api, "careful", 1).await;
    let eager = wait_jobs(&api, "eager", 1).await;
    // The next minute: Replace deletes its running Job and starts another.
    let replaced = eventually(LONG, "eager's Job replaced", || async {
        let now = jobs(&api, "eager").await;
        (now.len() == 1 && name_of(&now[0]) != name_of(&eager[0])).then_some(now)
    })
    .await;
    assert!(!replaced.is_empty());
    // Forbid ran nothing new in that minute (it says so in an Event): its first Job still runs.
    eventually(LONG, "a JobAlreadyActive Event on careful", || async {
        event_reasons(&api, "careful").await.iter().any(|r| r == "JobAlreadyActive").then_some(())
    })
    .await;
    let now = jobs(&api, "careful").await;
    assert_eq!(now.len(), 1, "Forbid: no second Job while the first runs: {now:?}");
    assert_eq!(name_of(&now[0]), name_of(&careful[0]));
    eventually(LONG, "a SuccessfulDelete Event on eager", || async {
        event_reasons(&api, "eager").await.iter().any(|r| r == "SuccessfulDelete").then_some(())
    })
    .await;
}

#[tokio::test]
async fn finished_jobs_beyond_the_history_limits_are_deleted_oldest_first() {
    let (_cluster, _manager, api) = start().await;
    let body = cronjob("kept", "0 0 1 1 *", json!({"successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1}));
    let cj = api.create("/apis/batch/v1/namespaces/default/cronjobs", &body).await;
    let owner = json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": "kept", "uid": cj["metadata"]["uid"],
        "controller": true, "blockOwnerDeletion": true}]);
    for (name, outcome) in [
        ("kept-1", "Complete"),
        ("kept-2", "Complete"),
        ("kept-3", "Complete"),
        ("kept-4", "Failed"),
        ("kept-5", "Failed"),
    ] {
        let job = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "kept"}, "ownerReferences": owner},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}});
        api.create("/apis/batch/v1/namespaces/default/jobs", &job).await;
        finish_job(&api, name, outcome).await;
        tokio::time::sleep(Duration::from_millis(1100)).await; // distinct start times
    }
    let left = wait_jobs(&api, "kept", 2).await;
    let names: Vec<&str> = left.iter().map(name_of).collect();
    assert_eq!(names, ["kept-3", "kept-5"], "the newest of each kind stays");
}

#[tokio::test]
async fn long_outages_run_only_the_latest_time_and_the_starting_deadline_skips_old_ones() {
    let (_cluster, _manager, api) = start().await;
    api.create("/apis/batch/v1/namespaces/default/cronjobs", &cronjob("backlog", "* * * * *", json!({}))).await;
    last_scheduled(&api, "backlog", 86_400).await;
    wait_jobs(&api, "backlog", 1).await;
    // Events are recorded asynchronously, so wait for both rather than assume their order.
    eventually(LONG, "TooManyMissedTimes and SuccessfulCreate Events", || async {
        let reasons = event_reasons(&api, "backlog").await;
        let has = |reason: &str| reasons.iter().any(|r| r == reason);
        (has("TooManyMissedTimes") && has("SuccessfulCreate")).then_some(())
    })
    .await;

    // A yearly schedule last run two years ago, with a 60 s starting deadline: its last time
    // (1 January) is long past the deadline, so nothing runs.
    let body = cronjob("yearly", "0 0 1 1 *", json!({"startingDeadlineSeconds": 60}));
    api.create("/apis/batch/v1/namespaces/default/cronjobs", &body).await;
    last_scheduled(&api, "yearly", 2 * 366 * 86_400).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(jobs(&api, "yearly").await.is_empty(), "a time past the starting deadline ran");
}

#[tokio::test]
async fn kubectl_creates_a_cronjob_lists_it_and_starts_a_job_from_it() {
    let (cluster, _manager, api) = start().await;
    let home = tempfile::tempdir().expect("a temporary HOME");
    let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig");
    let out = kubectl(
        &kubeconfig,
        home.path(),
        &["create", "cronjob", "nightly", "--image=busybox", "--schedule=0 3 * * *", "--", "date"],
    )
    .await;
    assert!(out.contains("cronjob.batch/nightly created"), "{out}");
    let out = kubectl(&kubeconfig, home.path(), &["get", "cronjobs"]).await;
    let header: Vec<&str> = out.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"], "{out}");
    assert!(out.contains("0 3 * * *") && out.contains("<none>") && out.contains("False"), "{out}");
    let out = kubectl(&kubeconfig, home.path(), &["create", "job", "now", "--from=cronjob/nightly"]).await;
    assert!(out.contains("job.batch/now created"), "{out}");
    let job = api.get_ok("/apis/batch/v1/namespaces/default/jobs/now").await;
    assert_eq!(job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"], "manual", "{job}");
    assert_eq!(job["spec"]["template"]["spec"]["containers"][0]["command"], json!(["date"]));
    let (code, body) = api
        .post("/apis/batch/v1/namespaces/default/cronjobs", &cronjob("broken", "every day at noon", json!({})))
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("spec.schedule"), "{body}");
}
