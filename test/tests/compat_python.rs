//! Compatibility with the official Kubernetes Python client (`kubernetes` 37, in `.venv`).
//!
//! Each test starts its own cluster and runs one API step of `test/compat/python_client.py`
//! against it (see `rkube_tests::python_client`); the script does the checks and exits non-zero
//! naming the first mismatch. What the client sends (no Content-Type on create, pydantic
//! validation of every reply, newline-split watch streams) is why these checks exist: see the
//! script's docstring. The node steps (attach, exec with a terminal, ephemeral containers,
//! metrics) run against a containerd node in `compat_python_streams.rs`.

use std::time::Duration;

use rkube_tests::Cluster;
use rkube_tests::controllers::ControllerManager;
use rkube_tests::python_client::run_step;

/// How long one step of the script may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `step` against a fresh cluster (with a controller-manager running `controllers`, when
/// some are named) and asserts it passed.
async fn run_on_fresh_cluster(step: &str, controllers: Option<&str>) {
    let cluster = Cluster::start().await.expect("etcd and rkube-apiserver start");
    let manager = match controllers {
        Some(names) => {
            Some(ControllerManager::start(&cluster, &["--controllers", names]).await.expect("controller-manager"))
        }
        None => None,
    };
    run_step(cluster.url(), step, &[], STEP_TIMEOUT, || {
        let controllers = manager.as_ref().map(|m| m.log_tail(20)).unwrap_or_default();
        format!(
            "--- apiserver log ---\n{}\n--- controller-manager log ---\n{controllers}",
            cluster.apiserver.log_tail(40)
        )
    })
    .await;
}

#[tokio::test]
async fn python_client_creates_reads_lists_by_label_and_deletes_pods() {
    run_on_fresh_cluster("crud", None).await;
}

#[tokio::test]
async fn python_client_watch_sees_added_modified_and_deleted() {
    run_on_fresh_cluster("watch", None).await;
}

#[tokio::test]
async fn python_client_dynamic_client_discovers_and_creates_a_deployment() {
    run_on_fresh_cluster("dynamic", None).await;
}

#[tokio::test]
async fn python_client_resolves_priorities_and_hits_quotas() {
    run_on_fresh_cluster("policy", None).await;
}

#[tokio::test]
async fn python_client_eviction_is_refused_by_a_budget_until_it_can_spare_a_pod() {
    run_on_fresh_cluster("eviction", Some("disruption")).await;
}

#[tokio::test]
async fn python_client_limit_ranges_default_and_bound_containers() {
    run_on_fresh_cluster("limits", None).await;
}

#[tokio::test]
async fn python_client_events_v1_are_the_core_events_and_list_by_field() {
    run_on_fresh_cluster("events", None).await;
}
