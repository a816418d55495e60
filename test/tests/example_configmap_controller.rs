//! The `configmap_controller` example, run as its own process against a real cluster: it
//! converges every ConfigMap (those there before it started, created after, and changed after),
//! serves the informer and work-queue metrics on `/metrics`, and exits cleanly on SIGINT.
//!
//! The binary comes from `cargo build --workspace --examples` (part of `make test`);
//! `cargo test --workspace` builds it too, `cargo test -p rkube-tests` alone does not.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rkube_tests::resources::config_map;
use rkube_tests::{Api, Cluster, eventually};
use serde_json::{Value, json};

const CONFIG_MAPS: &str = "/api/v1/namespaces/default/configmaps";

/// Kills the example when the test ends, also when it panics.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn example_binary() -> PathBuf {
    let apiserver = rkube_tests::binary("rkube-apiserver");
    let dir = apiserver.parent().expect("binaries live in a directory");
    let path = dir.join("examples").join("configmap_controller");
    assert!(path.is_file(), "{} not found: build it first: cargo build --workspace --examples", path.display());
    path
}

fn size_annotation(cm: &Value) -> Option<&str> {
    cm["metadata"]["annotations"]["rkube.dev/size"].as_str()
}

async fn wait_for_size(api: &Api, name: &str, size: &str) {
    let path = format!("{CONFIG_MAPS}/{name}");
    eventually(Duration::from_secs(30), &format!("{name} annotated with size {size}"), || async {
        let cm = api.get_ok(&path).await;
        (size_annotation(&cm) == Some(size)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn configmap_controller_example_converges_configmaps_and_serves_metrics() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    let home = tempfile::tempdir().expect("temporary directory");
    let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig written");

    // Found by the informer's initial list.
    api.create(CONFIG_MAPS, &config_map("default", "before", json!({"a": "1", "b": "2"}))).await;

    let child = Command::new(example_binary())
        .args(["--workers", "3", "--metrics-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("example starts");
    let mut running = Running(child);
    let stdout = running.0.stdout.take().expect("stdout is piped");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("example: {line}");
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let metrics_url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.recv().await {
            if let Some(url) = line.strip_prefix("metrics on ") {
                return url.to_string();
            }
        }
        panic!("the example exited before serving metrics");
    })
    .await
    .expect("the example prints its metrics address");

    wait_for_size(&api, "before", "2").await;

    // Found by the watch: new objects, and a change to a converged one.
    for n in 0..5 {
        let data: serde_json::Map<String, Value> = (0..n).map(|k| (format!("k{k}"), json!("v"))).collect();
        api.create(CONFIG_MAPS, &config_map("default", &format!("after-{n}"), Value::Object(data))).await;
    }
    let (status, reply) =
        api.patch(&format!("{CONFIG_MAPS}/before"), "application/merge-patch+json", &json!({"data": {"c": "3"}})).await;
    assert!(status.is_success(), "{reply}");
    for n in 0..5 {
        wait_for_size(&api, &format!("after-{n}"), &n.to_string()).await;
    }
    wait_for_size(&api, "before", "3").await;

    let metrics = reqwest::get(&metrics_url).await.expect("GET /metrics").text().await.expect("metrics body");
    for series in [
        r#"rkube_workqueue_depth{name="configmaps"}"#,
        r#"rkube_workqueue_adds_total{name="configmaps"}"#,
        r#"rkube_workqueue_queue_duration_seconds_count{name="configmaps"}"#,
        r#"rkube_workqueue_work_duration_seconds_count{name="configmaps"}"#,
        r#"rkube_workqueue_retries_total{name="configmaps"}"#,
        r#"rkube_informer_lists_total{resource="configmaps"}"#,
        r#"rkube_informer_watches_total{resource="configmaps"}"#,
        r#"rkube_informer_events_total{resource="configmaps",type="ADDED"}"#,
    ] {
        assert!(metrics.contains(series), "/metrics lacks {series}:\n{metrics}");
    }

    // Ctrl-C: the workers drain, the informer and the server stop, the process exits 0.
    let pid = running.0.id().to_string();
    let signalled = Command::new("kill").args(["-INT", &pid]).status().expect("kill runs");
    assert!(signalled.success());
    let status = eventually(Duration::from_secs(20), "the example to exit after SIGINT", || {
        let exited = running.0.try_wait().expect("try_wait");
        async move { exited }
    })
    .await;
    assert!(status.success(), "the example exited with {status}");
}
