//! Compatibility with the official Kubernetes Python client (`kubernetes` 37, in `.venv`).
//!
//! Each test starts its own cluster and runs one step of `test/compat/python_client.py` against
//! it with `.venv/bin/python`; the script does the checks and exits non-zero naming the first
//! mismatch. What the client sends (no Content-Type on create, pydantic validation of every
//! reply, newline-split watch streams) is why these checks exist: see the script's docstring.

use std::process::Stdio;
use std::time::Duration;

use rkube_tests::{Cluster, repo_root, venv_bin};
use tokio::process::Command;

/// How long one step of the script may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `python_client.py <url> <step>` against a fresh cluster and asserts it passed.
async fn run_step(step: &str) {
    let cluster = Cluster::start().await.expect("etcd and rkube-apiserver start");
    let python = venv_bin("python");
    let script = repo_root().join("test").join("compat").join("python_client.py");
    assert!(script.is_file(), "{} is missing", script.display());

    let child = Command::new(&python)
        .arg(&script)
        .arg(cluster.url())
        .arg(step)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // The server is on loopback; never send these requests through a proxy.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts");
    let output = match tokio::time::timeout(STEP_TIMEOUT, child.wait_with_output()).await {
        Ok(output) => output.expect("python output"),
        Err(_) => panic!(
            "python_client.py {step} did not finish within {STEP_TIMEOUT:?}\n--- apiserver log ---\n{}",
            cluster.apiserver.log_tail(40)
        ),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python_client.py {step} failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- apiserver log ---\n{}",
        output.status,
        cluster.apiserver.log_tail(40)
    );
    assert!(stdout.contains("python client: all checks passed"), "{stdout}\n{stderr}");
}

#[tokio::test]
async fn python_client_creates_reads_lists_by_label_and_deletes_pods() {
    run_step("crud").await;
}

#[tokio::test]
async fn python_client_watch_sees_added_modified_and_deleted() {
    run_step("watch").await;
}

#[tokio::test]
async fn python_client_dynamic_client_discovers_and_creates_a_deployment() {
    run_step("dynamic").await;
}

#[tokio::test]
async fn python_client_resolves_priorities_hits_quotas_and_evicts() {
    run_step("policy").await;
}
