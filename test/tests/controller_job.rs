//! The Job controller, end to end: real etcd, the real apiserver and the real
//! `rkube-controller-manager` (`--controllers=job`), and the real kubectl for `create job`,
//! `get jobs` and `wait`. No kubelet: the test ends pods the way a kubelet reports it, through
//! `pods/<name>/status` (phase and the container's exit code).

use std::collections::BTreeSet;
use std::time::Duration;

use rkube_tests::controllers::{ControllerManager, pods};
use rkube_tests::kubectl::real_kubectl as kubectl;
use rkube_tests::{Api, Cluster, eventually};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);
const FINALIZER: &str = "batch.kubernetes.io/job-tracking";

async fn start() -> (Cluster, ControllerManager, Api) {
    start_with("job").await
}

async fn start_with(controllers: &str) -> (Cluster, ControllerManager, Api) {
    let cluster = Cluster::start().await.expect("cluster starts");
    let flag = format!("--controllers={controllers}");
    let manager =
        ControllerManager::start(&cluster, &["--leader-elect=false", &flag]).await.expect("controller-manager starts");
    let api = Api::new(cluster.url());
    (cluster, manager, api)
}

/// A Job `name` running busybox, with `spec` merged into its spec.
fn job(name: &str, spec: Value) -> Value {
    let mut job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "exit 0"]}]}}}});
    if let (Some(target), Some(extra)) = (job["spec"].as_object_mut(), spec.as_object()) {
        for (key, value) in extra {
            target.insert(key.clone(), value.clone());
        }
    }
    job
}

fn job_path(name: &str) -> String {
    format!("/apis/batch/v1/namespaces/default/jobs/{name}")
}

fn name_of(pod: &Value) -> String {
    pod["metadata"]["name"].as_str().unwrap_or_default().to_string()
}

fn is_live(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && !matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

/// The Job's pods that still run.
async fn running(api: &Api, job: &str, count: usize) -> Vec<Value> {
    eventually(LONG, &format!("{count} running pods of job {job}"), || async {
        let live: Vec<Value> = pods(api, "default", &format!("batch.kubernetes.io/job-name={job}"))
            .await
            .into_iter()
            .filter(is_live)
            .collect();
        (live.len() == count).then_some(live)
    })
    .await
}

/// Ends the pod as a kubelet reports it: `Succeeded` for exit code 0, else `Failed`.
async fn finish(api: &Api, pod: &str, exit_code: i32) {
    let phase = if exit_code == 0 { "Succeeded" } else { "Failed" };
    let reason = if exit_code == 0 { "Completed" } else { "Error" };
    let status = json!({"status": {"phase": phase, "containerStatuses": [{"name": "main", "image": "busybox",
        "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": exit_code, "reason": reason}}}]}});
    let path = format!("/api/v1/namespaces/default/pods/{pod}/status");
    let (code, body) = api.patch(&path, "application/merge-patch+json", &status).await;
    assert!(code.is_success(), "finishing {pod}: {code} {body}");
}

/// Waits for the Job's condition `kind` to be True and returns the Job.
async fn condition(api: &Api, name: &str, kind: &str) -> Value {
    condition_is(api, name, kind, "True").await
}

/// Waits for the Job's `kind` condition to have `status`: the controller writes status after it acts on pods, so a
/// test that has seen the pods change polls for the status too.
async fn condition_is(api: &Api, name: &str, kind: &str, status: &str) -> Value {
    eventually(LONG, &format!("job {name} {kind}={status}"), || async {
        let job = api.get_ok(&job_path(name)).await;
        (condition_of(&job, kind)["status"] == status).then_some(job)
    })
    .await
}

fn condition_of<'a>(job: &'a Value, kind: &str) -> &'a Value {
    job["status"]["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == kind)).unwrap_or(&Value::Null)
}

#[tokio::test]
async fn a_job_runs_parallelism_pods_at_a_time_until_completions_succeed() {
    let (_cluster, manager, api) = start().await;
    api.create("/apis/batch/v1/namespaces/default/jobs", &job("pi", json!({"completions": 3, "parallelism": 2}))).await;
    let first = running(&api, "pi", 2).await;
    for pod in &first {
        assert!(name_of(pod).starts_with("pi-"), "{pod}");
        assert_eq!(pod["metadata"]["finalizers"], json!([FINALIZER]), "{pod}");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "Job");
        assert_eq!(pod["metadata"]["labels"]["job-name"], "pi");
    }
    // The controller writes the Job's status after creating its pods: wait for it.
    eventually(LONG, "the Job's startTime", || async {
        let job = api.get_ok(&job_path("pi")).await;
        job["status"]["startTime"].is_string().then_some(())
    })
    .await;
    for pod in &first {
        finish(&api, &name_of(pod), 0).await;
    }
    let third = running(&api, "pi", 1).await;
    finish(&api, &name_of(&third[0]), 0).await;
    let job = condition(&api, "pi", "Complete").await;
    let status = &job["status"];
    assert_eq!(
        (status["succeeded"].as_i64(), status["failed"].as_i64(), status["active"].as_i64()),
        (Some(3), Some(0), Some(0)),
        "{job}\n{}",
        manager.log_tail(20)
    );
    assert!(status["completionTime"].is_string(), "{job}");
    assert_eq!(condition_of(&job, "SuccessCriteriaMet")["status"], "True", "{job}");
    assert_eq!(condition_of(&job, "Complete")["reason"], "CompletionsReached");
    let all = pods(&api, "default", "batch.kubernetes.io/job-name=pi").await;
    assert_eq!(all.len(), 3, "exactly three pods ever: {all:?}");
    assert!(
        all.iter().all(|pod| pod["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty)),
        "finalizers removed: {all:?}"
    );
}

#[tokio::test]
async fn failures_past_the_backoff_limit_fail_the_job_after_a_back_off() {
    let (_cluster, _manager, api) = start().await;
    api.create("/apis/batch/v1/namespaces/default/jobs", &job("flaky", json!({"backoffLimit": 1}))).await;
    let pod = running(&api, "flaky", 1).await;
    finish(&api, &name_of(&pod[0]), 1).await;
    let failed_at = std::time::Instant::now();
    let retry = running(&api, "flaky", 1).await;
    assert_ne!(name_of(&retry[0]), name_of(&pod[0]));
    assert!(
        failed_at.elapsed() >= Duration::from_secs(8),
        "the replacement waited for the 10 s back-off: {:?}",
        failed_at.elapsed()
    );
    eventually(LONG, "the Job counting its first failure", || async {
        let job = api.get_ok(&job_path("flaky")).await;
        (job["status"]["failed"] == 1).then_some(())
    })
    .await;
    finish(&api, &name_of(&retry[0]), 1).await;
    let job = condition(&api, "flaky", "Failed").await;
    assert_eq!(condition_of(&job, "Failed")["reason"], "BackoffLimitExceeded", "{job}");
    let reasons = eventually(LONG, "a BackoffLimitExceeded Event", || async {
        let list = api.get_ok("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dflaky").await;
        let reasons: Vec<String> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["reason"].as_str().map(String::from))
            .collect();
        reasons.iter().any(|r| r == "BackoffLimitExceeded").then_some(reasons)
    })
    .await;
    assert_eq!(reasons.iter().filter(|r| *r == "SuccessfulCreate").count(), 2, "{reasons:?}");
    assert_eq!(condition_of(&job, "FailureTarget")["status"], "True", "{job}");
    assert_eq!(job["status"]["failed"], 2, "{job}");
    assert!(job["status"]["completionTime"].is_null(), "a failed Job has no completionTime: {job}");
}

#[tokio::test]
async fn a_fail_job_rule_fails_the_job_at_once_and_its_other_pods_go() {
    let (_cluster, _manager, api) = start().await;
    let policy = json!({"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}}]});
    let body = job("policy", json!({"parallelism": 3, "completions": 3, "podFailurePolicy": policy}));
    api.create("/apis/batch/v1/namespaces/default/jobs", &body).await;
    let pods_now = running(&api, "policy", 3).await;
    // Exit code 7 is ignored: not a failure, and the pod is replaced at once.
    finish(&api, &name_of(&pods_now[0]), 7).await;
    let replaced = running(&api, "policy", 3).await;
    assert!(replaced.iter().all(|pod| name_of(pod) != name_of(&pods_now[0])));
    let job_now = api.get_ok(&job_path("policy")).await;
    assert_eq!(job_now["status"]["failed"].as_i64().unwrap_or(0), 0, "{job_now}");
    finish(&api, &name_of(&pods_now[1]), 42).await;
    let job = condition(&api, "policy", "Failed").await;
    let failed = condition_of(&job, "Failed");
    assert_eq!(failed["reason"], "PodFailurePolicy", "{job}");
    assert!(
        failed["message"]
            .as_str()
            .unwrap_or_default()
            .contains("failed with exit code 42 matching FailJob rule at index 0"),
        "{job}"
    );
    let left: Vec<Value> =
        pods(&api, "default", "batch.kubernetes.io/job-name=policy").await.into_iter().filter(is_live).collect();
    assert!(left.is_empty(), "the running pods were deleted: {left:?}");
}

#[tokio::test]
async fn an_indexed_job_runs_each_index_once_with_its_index_in_the_pod() {
    let (_cluster, _manager, api) = start().await;
    let body = job("ix", json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"}));
    api.create("/apis/batch/v1/namespaces/default/jobs", &body).await;
    let mut seen = BTreeSet::new();
    while seen.len() < 4 {
        let batch = running(&api, "ix", 2.min(4 - seen.len())).await;
        for pod in &batch {
            let index =
                pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"].as_str().expect("index");
            assert_eq!(pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"], index);
            assert_eq!(pod["spec"]["hostname"], format!("ix-{index}"));
            assert!(name_of(pod).starts_with(&format!("ix-{index}-")), "{}", name_of(pod));
            assert_eq!(pod["spec"]["containers"][0]["env"][0]["name"], "JOB_COMPLETION_INDEX");
            assert!(seen.insert(index.to_string()), "index {index} ran twice");
            finish(&api, &name_of(pod), 0).await;
        }
    }
    let job = condition(&api, "ix", "Complete").await;
    assert_eq!(job["status"]["completedIndexes"], "0-3", "{job}");
    assert_eq!(job["status"]["succeeded"], 4, "{job}");
    assert_eq!(seen, ["0", "1", "2", "3"].map(String::from).into());
}

#[tokio::test]
async fn a_success_policy_completes_an_indexed_job_once_its_leader_index_succeeds() {
    let (_cluster, _manager, api) = start().await;
    let body = job(
        "leader",
        json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
        "successPolicy": {"rules": [{"succeededIndexes": "0"}]}}),
    );
    api.create("/apis/batch/v1/namespaces/default/jobs", &body).await;
    let pods = running(&api, "leader", 3).await;
    let leader = pods
        .iter()
        .find(|p| p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "0")
        .expect("index 0");
    finish(&api, &name_of(leader), 0).await;
    // The rule is met: the other indexes are stopped and the Job completes, saying why.
    let done = condition(&api, "leader", "Complete").await;
    assert_eq!(condition_of(&done, "SuccessCriteriaMet")["reason"], "SuccessPolicy", "{done}");
    assert_eq!(condition_of(&done, "Complete")["message"], "Matched rules at index 0", "{done}");
    assert_eq!(done["status"]["completedIndexes"], "0", "{done}");
    running(&api, "leader", 0).await;
    // A success policy needs an Indexed Job.
    let (code, reply) = api
        .post(
            "/apis/batch/v1/namespaces/default/jobs",
            &job(
                "plain",
                json!({"completions": 2,
            "successPolicy": {"rules": [{"succeededCount": 1}]}}),
            ),
        )
        .await;
    assert_eq!(code.as_u16(), 422, "{reply}");
}

#[tokio::test]
async fn an_index_past_its_own_backoff_limit_fails_alone_and_the_job_fails_at_the_end() {
    let (_cluster, _manager, api) = start().await;
    let body = job(
        "per-index",
        json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
        "backoffLimitPerIndex": 1}),
    );
    api.create("/apis/batch/v1/namespaces/default/jobs", &body).await;
    let index_of = |pod: &Value| pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"].clone();
    let first = running(&api, "per-index", 3).await;
    let one = first.iter().find(|p| index_of(p) == "1").expect("index 1");
    finish(&api, &name_of(one), 1).await;
    // Index 1 gets a second pod, which knows one failure came before it.
    let second = eventually(LONG, "a second pod of index 1", || async {
        let pods = pods(&api, "default", "batch.kubernetes.io/job-name=per-index").await;
        pods.into_iter().find(|p| index_of(p) == "1" && is_live(p))
    })
    .await;
    assert_eq!(second["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"], "1");
    finish(&api, &name_of(&second), 1).await;
    // Past its limit: index 1 has failed, and is not tried again; the others go on.
    let job_now = eventually(LONG, "index 1 failed", || async {
        let job = api.get_ok(&job_path("per-index")).await;
        (job["status"]["failedIndexes"] == "1").then_some(job)
    })
    .await;
    assert!(condition_of(&job_now, "Failed").is_null(), "the other indexes still run: {job_now}");
    for pod in running(&api, "per-index", 2).await {
        assert_ne!(index_of(&pod), "1");
        finish(&api, &name_of(&pod), 0).await;
    }
    let failed = condition(&api, "per-index", "Failed").await;
    assert_eq!(condition_of(&failed, "Failed")["reason"], "FailedIndexes", "{failed}");
    assert_eq!(failed["status"]["completedIndexes"], "0,2", "{failed}");
}

#[tokio::test]
async fn a_job_past_its_active_deadline_fails_and_its_pods_go() {
    let (_cluster, _manager, api) = start().await;
    api.create(
        "/apis/batch/v1/namespaces/default/jobs",
        &job("slow", json!({"activeDeadlineSeconds": 2, "parallelism": 2, "completions": 2})),
    )
    .await;
    running(&api, "slow", 2).await;
    let job = condition(&api, "slow", "Failed").await;
    assert_eq!(condition_of(&job, "Failed")["reason"], "DeadlineExceeded", "{job}");
    let left: Vec<Value> =
        pods(&api, "default", "batch.kubernetes.io/job-name=slow").await.into_iter().filter(is_live).collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_suspended_job_runs_nothing_until_resumed() {
    let (_cluster, _manager, api) = start().await;
    api.create(
        "/apis/batch/v1/namespaces/default/jobs",
        &job("later", json!({"suspend": true, "parallelism": 2, "completions": 2})),
    )
    .await;
    let job = condition(&api, "later", "Suspended").await;
    assert_eq!(condition_of(&job, "Suspended")["reason"], "JobSuspended");
    assert!(job["status"]["startTime"].is_null(), "{job}");
    assert!(pods(&api, "default", "batch.kubernetes.io/job-name=later").await.is_empty());
    let (code, body) =
        api.patch(&job_path("later"), "application/merge-patch+json", &json!({"spec": {"suspend": false}})).await;
    assert!(code.is_success(), "{code} {body}");
    running(&api, "later", 2).await;
    let job = condition_is(&api, "later", "Suspended", "False").await;
    assert_eq!(condition_of(&job, "Suspended")["reason"], "JobResumed", "{job}");
    // Suspended again: its running pods go, and are not counted as failures.
    let (code, body) =
        api.patch(&job_path("later"), "application/merge-patch+json", &json!({"spec": {"suspend": true}})).await;
    assert!(code.is_success(), "{code} {body}");
    running(&api, "later", 0).await;
    let job = condition(&api, "later", "Suspended").await;
    assert_eq!(job["status"]["failed"].as_i64().unwrap_or(0), 0, "{job}");
}

#[tokio::test]
async fn a_controller_killed_again_and_again_while_pods_finish_counts_each_exactly_once() {
    let (_cluster, mut manager, api) = start().await;
    api.create("/apis/batch/v1/namespaces/default/jobs", &job("steady", json!({"completions": 8, "parallelism": 4})))
        .await;
    let mut rounds = 0;
    loop {
        let job = api.get_ok(&job_path("steady")).await;
        if condition_of(&job, "Complete")["status"] == "True" {
            break;
        }
        rounds += 1;
        assert!(rounds < 30, "not complete after {rounds} rounds: {job}\n{}", manager.log_tail(30));
        let live: Vec<Value> =
            pods(&api, "default", "batch.kubernetes.io/job-name=steady").await.into_iter().filter(is_live).collect();
        for pod in &live {
            finish(&api, &name_of(pod), 0).await;
        }
        // Killed while it counts (some of these land between its status write and the
        // finalizer removal), then started again.
        tokio::time::sleep(Duration::from_millis(30 * (rounds % 4))).await;
        manager.kill();
        manager.restart().await.expect("controller-manager restarts");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let job = api.get_ok(&job_path("steady")).await;
    assert_eq!(job["status"]["succeeded"], 8, "{job}");
    assert_eq!(job["status"]["failed"].as_i64().unwrap_or(0), 0, "{job}");
    let all = pods(&api, "default", "batch.kubernetes.io/job-name=steady").await;
    assert_eq!(all.len(), 8, "no pod created twice for one completion: {}", all.len());
}

#[tokio::test]
async fn a_finished_job_goes_with_its_pods_once_its_ttl_passed() {
    let (_cluster, manager, api) = start_with("job,ttl-after-finished,garbagecollector").await;
    api.create("/apis/batch/v1/namespaces/default/jobs", &job("brief", json!({"ttlSecondsAfterFinished": 2}))).await;
    let pod = running(&api, "brief", 1).await;
    finish(&api, &name_of(&pod[0]), 0).await;
    let job = condition(&api, "brief", "Complete").await;
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 2);
    eventually(LONG, "the Job and its pod deleted after the TTL", || async {
        let (code, _) = api.get(&job_path("brief")).await;
        let left = pods(&api, "default", "batch.kubernetes.io/job-name=brief").await;
        (code == rkube_tests::StatusCode::NOT_FOUND && left.is_empty()).then_some(())
    })
    .await;
    assert!(manager.log().contains("ttlSecondsAfterFinished passed"), "{}", manager.log_tail(20));
}

#[tokio::test]
async fn a_deleted_jobs_pods_lose_their_tracking_finalizer_and_go() {
    let (_cluster, _manager, api) = start_with("job,garbagecollector").await;
    api.create("/apis/batch/v1/namespaces/default/jobs", &job("gone", json!({"parallelism": 3, "completions": 3})))
        .await;
    running(&api, "gone", 3).await;
    let (code, body) = api.delete(&job_path("gone")).await;
    assert!(code.is_success(), "{code} {body}");
    eventually(LONG, "the deleted Job's pods gone, finalizers and all", || async {
        pods(&api, "default", "batch.kubernetes.io/job-name=gone").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn kubectl_creates_a_job_waits_for_it_and_lists_it() {
    let (cluster, _manager, api) = start().await;
    let home = tempfile::tempdir().expect("a temporary HOME");
    let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig");
    // kubectl 1.37 sends this body as protobuf.
    let out =
        kubectl(&kubeconfig, home.path(), &["create", "job", "hello", "--image=busybox", "--", "echo", "hi"]).await;
    assert!(out.contains("job.batch/hello created"), "{out}");
    let pod = running(&api, "hello", 1).await;
    assert_eq!(pod[0]["spec"]["containers"][0]["command"], json!(["echo", "hi"]));
    let out = kubectl(&kubeconfig, home.path(), &["get", "jobs"]).await;
    let header: Vec<&str> = out.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"], "{out}");
    assert!(out.contains("Running") && out.contains("0/1"), "{out}");
    finish(&api, &name_of(&pod[0]), 0).await;
    let out =
        kubectl(&kubeconfig, home.path(), &["wait", "--for=condition=complete", "job/hello", "--timeout=60s"]).await;
    assert!(out.contains("job.batch/hello condition met"), "{out}");
    let out = kubectl(&kubeconfig, home.path(), &["get", "job", "hello"]).await;
    assert!(out.contains("Complete") && out.contains("1/1"), "{out}");
    let story = kubectl(&kubeconfig, home.path(), &["events", "--for", "job/hello"]).await;
    assert!(story.contains("SuccessfulCreate") && story.contains("Created pod: hello-"), "{story}");
    assert!(story.contains("Completed") && story.contains("Job completed"), "{story}");
}
