//! `replicaset_bench`: a ReplicaSet scaled from 0 to `--replicas` (default 1000), with a
//! simulated node loop that binds every new pod to one of `--nodes` fake nodes and reports it
//! Running and Ready, as kubelets would.
//!
//! Starts its own etcd, `rkube-apiserver` and `rkube-controller-manager` (the binaries of this
//! build's profile: `cargo build --release --bins` first for release numbers), then prints:
//! - the time until the ReplicaSet's status says every replica is ready;
//! - the API requests made during the run, from the apiserver's
//!   `rkube_apiserver_requests_total`, by verb and resource, and how many of them came from
//!   the controller-manager (everything but the simulated nodes' bindings, status writes and
//!   watch, and this program's polling).
//!
//! Run: `cargo run --release -p rkube-tests --bin replicaset_bench -- --replicas 1000`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rkube_tests::controllers::{ControllerManager, bind, is_ready, mark_ready, replica_set};
use rkube_tests::{Api, Cluster};
use serde_json::{Value, json};

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(name = "replicaset_bench", about = "Scale a ReplicaSet 0 -> N with simulated nodes; time and API calls")]
struct Flags {
    /// Replicas to scale to.
    #[arg(long, default_value_t = 1000)]
    replicas: usize,
    /// Fake nodes the pods are spread over.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// The controller-manager's client rate limit (requests per second; burst is the same).
    #[arg(long, default_value_t = 500)]
    qps: u32,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

/// Sums `rkube_apiserver_requests_total` by `verb resource`.
async fn request_counts(url: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    let mut counts = BTreeMap::new();
    for line in text.lines().filter(|line| line.starts_with("rkube_apiserver_requests_total{")) {
        let label = |name: &str| {
            line.split(&format!("{name}=\"")).nth(1).and_then(|rest| rest.split('"').next()).unwrap_or("?").to_string()
        };
        let value: f64 = line.rsplit(' ').next().and_then(|value| value.parse().ok()).unwrap_or(0.0);
        *counts.entry(format!("{} {}", label("verb"), label("resource"))).or_insert(0.0) += value;
    }
    Ok(counts)
}

/// The simulated nodes: watch the namespace's pods; bind each unbound one, then mark it Ready.
fn start_nodes(url: &str, nodes: usize, bench_calls: Arc<AtomicUsize>) -> tokio::task::JoinHandle<()> {
    let api = Api::new(url);
    tokio::spawn(async move {
        let next = Arc::new(AtomicUsize::new(0));
        let limit = Arc::new(tokio::sync::Semaphore::new(32));
        loop {
            let list = api.get_ok("/api/v1/namespaces/default/pods?limit=1").await;
            bench_calls.fetch_add(2, Ordering::Relaxed);
            let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
            let mut watch =
                api.watch(&format!("/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}")).await;
            // Pods created before this watch started: handle them from a full list.
            let all = api.get_ok("/api/v1/namespaces/default/pods").await;
            bench_calls.fetch_add(1, Ordering::Relaxed);
            let mut events: Vec<Value> = all["items"].as_array().cloned().unwrap_or_default();
            loop {
                for pod in events.drain(..) {
                    let (api, next, limit) = (api.clone(), Arc::clone(&next), Arc::clone(&limit));
                    let Ok(permit) = limit.acquire_owned().await else { return };
                    tokio::spawn(async move {
                        let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
                        let live = pod["metadata"]["deletionTimestamp"].is_null();
                        if live && pod["spec"]["nodeName"].as_str().unwrap_or_default().is_empty() {
                            let node = format!("node-{}", next.fetch_add(1, Ordering::Relaxed) % nodes);
                            bind(&api, "default", &name, &node).await;
                        } else if live && !is_ready(&pod) {
                            mark_ready(&api, "default", &name).await;
                        }
                        drop(permit);
                    });
                }
                match watch.next().await {
                    Some(event) if event["type"] == "ADDED" || event["type"] == "MODIFIED" => {
                        events.push(event["object"].clone())
                    }
                    Some(_) => {}
                    None => break, // the watch ended: start another
                }
            }
        }
    })
}

async fn run(flags: Flags) -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let qps = flags.qps.to_string();
    let manager = ControllerManager::start(
        &cluster,
        &["--leader-elect=false", "--controllers=replicaset", "--kube-api-qps", &qps, "--kube-api-burst", &qps],
    )
    .await?;
    let api = Api::new(cluster.url());
    api.create("/apis/apps/v1/namespaces/default/replicasets", &replica_set("default", "bench", 0, "nginx")).await;
    let bench_calls = Arc::new(AtomicUsize::new(1));
    let nodes = start_nodes(cluster.url(), flags.nodes, Arc::clone(&bench_calls));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = request_counts(cluster.url()).await?;
    let before_bench = bench_calls.load(Ordering::Relaxed);

    let started = Instant::now();
    let path = "/apis/apps/v1/namespaces/default/replicasets/bench/scale";
    let (status, body) =
        api.patch(path, "application/merge-patch+json", &json!({"spec": {"replicas": flags.replicas}})).await;
    anyhow::ensure!(status.is_success(), "scaling: {status} {body}");
    let mut polls = 1;
    let elapsed = loop {
        let rs = api.get_ok("/apis/apps/v1/namespaces/default/replicasets/bench").await;
        polls += 1;
        let ready = rs["status"]["readyReplicas"].as_u64().unwrap_or(0);
        if usize::try_from(ready).unwrap_or(0) >= flags.replicas {
            break started.elapsed();
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(flags.timeout),
            "not ready after {}s ({ready} ready); controller-manager log:\n{}",
            flags.timeout,
            manager.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let after = request_counts(cluster.url()).await?;
    nodes.abort();
    let pods = api.get_ok("/api/v1/namespaces/default/pods").await;
    let count = pods["items"].as_array().map_or(0, Vec::len);

    println!(
        "replicaset 0 -> {} ({} fake nodes): all ready in {:.2}s",
        flags.replicas,
        flags.nodes,
        elapsed.as_secs_f64()
    );
    println!("pods existing at the end: {count} (must equal replicas)");
    println!("API requests during the run, by verb and resource:");
    let mut total = 0.0;
    let mut node_side = 0.0;
    for (key, value) in &after {
        let delta = value - before.get(key).copied().unwrap_or(0.0);
        if delta > 0.0 {
            println!("  {delta:>8.0}  {key}");
            total += delta;
            if key.ends_with("pods/binding") || key.ends_with("pods/status") {
                node_side += delta;
            }
        }
    }
    let bench_side =
        f64::from(u32::try_from(bench_calls.load(Ordering::Relaxed) - before_bench + polls).unwrap_or(u32::MAX));
    println!("  {total:>8.0}  total");
    println!(
        "  {:>8.0}  by the controller-manager (total minus simulated nodes and bench polling)",
        total - node_side - bench_side
    );
    anyhow::ensure!(count == flags.replicas, "expected {} pods, found {count}", flags.replicas);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let flags = Flags::parse();
    match run(flags).await.context("replicaset_bench failed") {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
