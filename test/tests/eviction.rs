//! Evictions and PodDisruptionBudgets: `pods/eviction` deletes a pod only when its budget
//! allows it (the controller-manager's disruption controller keeps the budget's status), and
//! the real `kubectl drain` moves a Deployment's pods off a node of real (fake-runtime)
//! kubelets without breaking the budget.

use std::time::Duration;

use rkube_tests::controllers::{ControllerManager, mark_ready};
use rkube_tests::node::Kubelet;
use rkube_tests::resources::{PODS, pod};
use rkube_tests::scheduler::Scheduler;
use rkube_tests::{Api, Cluster, StatusCode, eventually, venv_bin};
use serde_json::{Value, json};
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(60);

const BUDGETS: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";

fn eviction(name: &str) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}})
}

async fn budget_allows(api: &Api, name: &str, allowed: i64) -> Value {
    eventually(WAIT, &format!("budget {name} allows {allowed}"), || async {
        let budget = api.get_ok(&format!("{BUDGETS}/{name}")).await;
        (budget["status"]["disruptionsAllowed"] == allowed).then_some(budget)
    })
    .await
}

#[tokio::test]
async fn evictions_take_from_the_budget_and_stop_at_its_floor() {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    let _controllers =
        ControllerManager::start(&cluster, &["--controllers", "disruption"]).await.expect("controller-manager");
    for name in ["a", "b", "c"] {
        api.create(&PODS.collection("default"), &pod("default", name, json!({"app": "web"}))).await;
        assert!(mark_ready(&api, "default", name).await);
    }
    api.create(&PODS.collection("default"), &pod("default", "loner", json!({"app": "other"}))).await;
    assert!(mark_ready(&api, "default", "loner").await);
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}});
    api.create(BUDGETS, &pdb).await;
    let budget = budget_allows(&api, "web", 1).await;
    assert_eq!(
        (&budget["status"]["currentHealthy"], &budget["status"]["desiredHealthy"], &budget["status"]["expectedPods"]),
        (&json!(3), &json!(2), &json!(3)),
        "{budget}"
    );

    // One may go; the eviction answers 201 Success and the pod is deleted.
    let (status, reply) = api.post(&format!("{}/eviction", PODS.item("default", "a")), &eviction("a")).await;
    assert_eq!((status, &reply["status"]), (StatusCode::CREATED, &json!("Success")), "{reply}");
    let (status, _) = api.get(&PODS.item("default", "a")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an unbound pod goes at once");
    // The eviction noted `a` in the budget's disruptedPods; once the controller has seen the
    // deletion it drops that entry and counts two healthy pods.
    eventually(WAIT, "the controller counts the eviction", || async {
        let budget = api.get_ok(&format!("{BUDGETS}/web")).await;
        (budget["status"]["currentHealthy"] == 2 && budget["status"]["disruptedPods"].is_null()).then_some(())
    })
    .await;
    // The next would break the budget: 429 with the budget's numbers.
    let (status, reply) = api.post(&format!("{}/eviction", PODS.item("default", "b")), &eviction("b")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{reply}");
    assert_eq!(reply["message"], "Cannot evict pod as it would violate the pod's disruption budget.");
    assert_eq!(
        reply["details"]["causes"][0],
        json!({"reason": "DisruptionBudget", "message": "The disruption budget web needs 2 healthy pods and has 2 currently"})
    );
    assert_eq!(api.get(&PODS.item("default", "b")).await.0, StatusCode::OK, "nothing was deleted");
    // A pod no budget covers is evicted freely; a missing pod is a 404.
    let (status, reply) = api.post(&format!("{}/eviction", PODS.item("default", "loner")), &eviction("loner")).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let (status, _) = api.post(&format!("{}/eviction", PODS.item("default", "gone")), &eviction("gone")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A fourth healthy pod makes room again.
    api.create(&PODS.collection("default"), &pod("default", "d", json!({"app": "web"}))).await;
    assert!(mark_ready(&api, "default", "d").await);
    budget_allows(&api, "web", 1).await;
    let (status, reply) = api.post(&format!("{}/eviction", PODS.item("default", "b")), &eviction("b")).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
}

/// Sets a pod's `status` to `phase`, Ready or not.
async fn set_status(api: &Api, name: &str, phase: &str, ready: bool) {
    let ready = if ready { "True" } else { "False" };
    let status = json!({"status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}]}});
    let (code, reply) =
        api.patch(&format!("{}/status", PODS.item("default", name)), "application/merge-patch+json", &status).await;
    assert!(code.is_success(), "{reply}");
}

/// The pods Kubernetes evicts without asking the budget, and the budgets it refuses to choose
/// between: a `Pending` pod goes even when the budget allows nothing; an unhealthy (not Ready)
/// pod goes only when the budget is met (`IfHealthyBudget`, the default) or always
/// (`AlwaysAllow`); a pod two budgets select is a 500.
#[tokio::test]
async fn evictions_skip_the_budget_where_kubernetes_does() {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    let _controllers =
        ControllerManager::start(&cluster, &["--controllers", "disruption"]).await.expect("controller-manager");
    for name in ["p1", "p2", "starting", "sick"] {
        api.create(&PODS.collection("default"), &pod("default", name, json!({"app": "db"}))).await;
    }
    for name in ["p1", "p2"] {
        assert!(mark_ready(&api, "default", name).await);
    }
    set_status(&api, "starting", "Pending", false).await;
    set_status(&api, "sick", "Running", false).await;
    // Three healthy pods wanted, two there: nothing may be disrupted.
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db"},
        "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "db"}}}});
    api.create(BUDGETS, &pdb).await;
    let budget = budget_allows(&api, "db", 0).await;
    assert_eq!(
        (&budget["status"]["currentHealthy"], &budget["status"]["desiredHealthy"]),
        (&json!(2), &json!(3)),
        "{budget}"
    );
    let evict = |name: &'static str| {
        let api = api.clone();
        async move { api.post(&format!("{}/eviction", PODS.item("default", name)), &eviction(name)).await }
    };

    let (status, reply) = evict("starting").await;
    assert_eq!(status, StatusCode::CREATED, "a Pending pod costs no budget: {reply}");
    let (status, reply) = evict("sick").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "an unready pod waits for a met budget by default: {reply}");
    assert_eq!(
        reply["details"]["causes"][0]["message"], "The disruption budget db needs 3 healthy pods and has 2 currently",
        "{reply}"
    );
    let always = json!({"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}});
    let (code, reply) = api.patch(&format!("{BUDGETS}/db"), "application/merge-patch+json", &always).await;
    assert!(code.is_success(), "{reply}");
    let (status, reply) = evict("sick").await;
    assert_eq!(status, StatusCode::CREATED, "AlwaysAllow lets an unready pod go: {reply}");
    let (status, reply) = evict("p1").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "a healthy pod still needs the budget: {reply}");

    let second = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db-too"},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "db"}}}});
    api.create(BUDGETS, &second).await;
    let (status, reply) = evict("p1").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{reply}");
    // Kubernetes' NewInternalError: the reason in the message and as the one cause.
    let why = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.";
    assert_eq!(reply["message"], format!("Internal error occurred: {why}"), "{reply}");
    assert_eq!(reply["details"]["causes"], json!([{"message": why}]), "{reply}");
    for (name, gone) in [("starting", true), ("sick", true), ("p1", false), ("p2", false)] {
        let (status, _) = api.get(&PODS.item("default", name)).await;
        assert_eq!(status == StatusCode::NOT_FOUND, gone, "pod {name}");
    }
}

/// Runs kubectl; returns (success, stdout, stderr).
async fn kubectl(kubeconfig: &std::path::Path, home: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(venv_bin("kubectl"));
    command.args(args).env("KUBECONFIG", kubeconfig).env("HOME", home).kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish"))
        .expect("kubectl runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn kubectl_drain_moves_a_deployment_off_a_node_within_its_budget() {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    let _controllers = ControllerManager::start(&cluster, &["--leader-elect=false"]).await.expect("controller-manager");
    let _scheduler = Scheduler::start(&cluster, &[]).await.expect("scheduler");
    let _a = Kubelet::start_fake(&cluster, "node-a", &["--pod-cidr", "10.244.1.0/24"]).await.expect("kubelet a");
    let _b = Kubelet::start_fake(&cluster, "node-b", &["--pod-cidr", "10.244.2.0/24"]).await.expect("kubelet b");
    let home = tempfile::tempdir().expect("HOME");
    let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig");
    let run = |args: &'static [&'static str]| {
        let (kubeconfig, home) = (kubeconfig.clone(), home.path().to_path_buf());
        async move { kubectl(&kubeconfig, &home, args).await }
    };
    let (ok, _, err) = run(&["create", "deployment", "web", "--image=busybox:1.37", "--replicas=3"]).await;
    assert!(ok, "{err}");
    let (ok, out, err) = run(&["create", "pdb", "web", "--selector=app=web", "--min-available=3"]).await;
    assert!(ok && out.contains("poddisruptionbudget.policy/web created"), "{out}{err}");
    let ready = || async {
        let pods = api.get_ok("/api/v1/namespaces/default/pods?labelSelector=app%3Dweb").await;
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        let ready: Vec<Value> = items
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .collect();
        (ready.len() == 3).then_some(ready)
    };
    let pods = eventually(WAIT, "three web pods Ready", ready).await;
    let busy = pods[0]["spec"]["nodeName"].as_str().unwrap_or_default().to_string();
    let other = if busy == "node-a" { "node-b" } else { "node-a" };

    // minAvailable 3 of 3: no pod may go, and drain says why when it gives up.
    let (ok, _, err) = kubectl(
        &kubeconfig,
        home.path(),
        &["drain", &busy, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=8s"],
    )
    .await;
    assert!(!ok, "the drain must not break the budget");
    assert!(err.contains("Cannot evict pod as it would violate the pod's disruption budget"), "{err}");
    let (_, out, _) = run(&["get", "pdb", "web"]).await;
    let row: Vec<&str> = out.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(row[..4], ["web", "3", "N/A", "0"], "{out}");

    // minAvailable 2: pods go one at a time, each replaced on the other node first.
    let (ok, _, err) = run(&["patch", "pdb", "web", "--type=merge", "-p", r#"{"spec":{"minAvailable":2}}"#]).await;
    assert!(ok, "{err}");
    let (ok, out, err) = kubectl(
        &kubeconfig,
        home.path(),
        &["drain", &busy, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=150s"],
    )
    .await;
    assert!(ok, "drain failed: {out}\n{err}");
    assert!(out.contains(&format!("node/{busy} drained")), "{out}");
    assert!(out.contains("evicting pod default/web-"), "{out}{err}");
    let node = api.get_ok(&format!("/api/v1/nodes/{busy}")).await;
    assert_eq!(node["spec"]["unschedulable"], true, "drain cordons the node");
    let pods = eventually(WAIT, "three web pods Ready again", ready).await;
    for pod in &pods {
        assert_eq!(pod["spec"]["nodeName"], other, "{pod}");
    }
}
