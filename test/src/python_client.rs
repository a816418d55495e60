//! The official Kubernetes Python client (`kubernetes`, in `.venv`) run against a cluster:
//! one step of `test/compat/python_client.py` per call.
//!
//! The script does the checks and exits non-zero naming the first mismatch; [`run_step`]
//! turns that into a test failure carrying the script's output and whatever the caller adds
//! (the tails of its components' logs). The requests go straight to the cluster, never
//! through a proxy.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::paths::{repo_root, venv_bin};

/// What the script prints last when every check of the step passed.
const PASSED: &str = "python client: all checks passed";

/// Runs `python_client.py <url> <step>` with `env` added to its environment (the node steps
/// read `RKUBE_COMPAT_NODE` and `RKUBE_COMPAT_IMAGE`), and returns its stdout.
///
/// # Panics
/// When the step fails or does not finish within `timeout`: the message holds the script's
/// stdout and stderr, then `diagnostics()`.
pub async fn run_step(
    url: &str,
    step: &str,
    env: &[(&str, &str)],
    timeout: Duration,
    diagnostics: impl Fn() -> String,
) -> String {
    let script = repo_root().join("test").join("compat").join("python_client.py");
    assert!(script.is_file(), "{} is missing", script.display());
    let child = Command::new(venv_bin("python"))
        .arg(&script)
        .arg(url)
        .arg(step)
        .envs(env.iter().copied())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts");
    let Ok(output) = tokio::time::timeout(timeout, child.wait_with_output()).await else {
        panic!("python_client.py {step} did not finish within {timeout:?}\n{}", diagnostics());
    };
    let output = output.expect("python output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(PASSED),
        "python_client.py {step} failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n{}",
        output.status,
        diagnostics()
    );
    stdout
}
