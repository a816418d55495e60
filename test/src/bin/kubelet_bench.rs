//! `kubelet_bench`: pod start-up latency, from create to `Running` as seen through a watch.
//!
//! Starts its own etcd, `rkube-apiserver` and `rkubelet`s (the binaries of this build's profile)
//! and measures, per pod, the time from the create request to the first watch event that shows
//! the pod `Running` (the Kubernetes SLO: p99 ≤ 5 s; rkube aims for ≤ 1 s). Pods are created
//! already bound (`spec.nodeName`), so no scheduler is involved. Two runs:
//! 1. `--pods` pods on one `rkubelet --runtime containerd` with CNI networking, on a private
//!    containerd with the test image imported (the image is cached: no pull). Needs root and
//!    `make deps`; skipped with `--fake-only` (and says so).
//! 2. `--pods` pods spread over `--hollow-nodes` fake kubelets on this machine.
//!
//! Prints p50, p99 and max per run. Exits non-zero when a pod does not start within 2 minutes.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use rkube_client::{Api, Client, Config, ListParams, PostParams, WatchEvent, WatchParams};
use rkube_tests::Cluster;
use rkube_tests::node::{Containerd, Kubelet, TEST_IMAGE};

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(name = "kubelet_bench", about = "Pod start-up latency on rkubelet (containerd and fake)")]
struct Flags {
    /// Pods per run.
    #[arg(long, default_value_t = 50)]
    pods: usize,
    /// Fake kubelets for the hollow-node run.
    #[arg(long, default_value_t = 5)]
    hollow_nodes: usize,
    /// Skip the containerd run (no root or containerd needed).
    #[arg(long)]
    fake_only: bool,
}

const DEADLINE: Duration = Duration::from_secs(120);

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Creates `count` pods bound round-robin to `nodes` and returns each one's create→Running time.
async fn measure(
    cluster: &Cluster,
    nodes: &[String],
    count: usize,
    container: serde_json::Value,
) -> anyhow::Result<Vec<Duration>> {
    let client = Client::new(Config::new(cluster.url().parse()?))?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let start_rv = pods.list(&ListParams::default()).await?.metadata.resource_version.unwrap_or_default();
    let mut watch = pods.watch(&WatchParams::default().timeout(290), &start_rv).await?;
    let mut created: HashMap<String, Instant> = HashMap::new();
    for i in 0..count {
        let name = format!("bench-{i}");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"nodeName": nodes[i % nodes.len()], "terminationGracePeriodSeconds": 1, "containers": [container]}
        }))?;
        created.insert(name.clone(), Instant::now());
        pods.create(&PostParams::default(), &pod).await.with_context(|| format!("creating {name}"))?;
    }
    let mut latencies = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while latencies.len() < count {
        let event = tokio::time::timeout_at(deadline, watch.next())
            .await
            .map_err(|_| anyhow::anyhow!("only {} of {count} pods Running after {DEADLINE:?}", latencies.len()))?
            .context("watch ended")??;
        if let WatchEvent::Modified(pod) | WatchEvent::Added(pod) = event
            && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            && let Some(at) = pod.metadata.name.as_ref().and_then(|name| created.remove(name))
        {
            latencies.push(at.elapsed());
        }
    }
    latencies.sort();
    Ok(latencies)
}

fn report(what: &str, latencies: &[Duration]) {
    println!(
        "{what}: {} pods, create→Running p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        percentile(latencies, 0.50),
        percentile(latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
}

async fn run(flags: Flags) -> anyhow::Result<()> {
    anyhow::ensure!(flags.pods > 0 && flags.hollow_nodes > 0, "--pods and --hollow-nodes must be positive");
    if flags.fake_only {
        println!("containerd: skipped (--fake-only)");
    } else {
        let cluster = Cluster::start().await?;
        let containerd = Containerd::start().await?;
        let kubelet =
            Kubelet::start_containerd_with(&cluster, &containerd, "bench-node", &["--pod-cidr", "10.98.200.0/24"])
                .await?;
        let container = serde_json::json!({"name": "main", "image": TEST_IMAGE, "command": ["sleep", "3600"]});
        let latencies = measure(&cluster, std::slice::from_ref(&kubelet.node_name), flags.pods, container).await?;
        report("containerd (cached image, CNI)", &latencies);
    }
    let cluster = Cluster::start().await?;
    let mut kubelets = Vec::new();
    for i in 0..flags.hollow_nodes {
        let cidr = format!("10.99.{i}.0/24");
        kubelets.push(Kubelet::start_fake(&cluster, &format!("hollow-{i}"), &["--pod-cidr", &cidr]).await?);
    }
    let nodes: Vec<String> = kubelets.iter().map(|kubelet| kubelet.node_name.clone()).collect();
    let container = serde_json::json!({"name": "main", "image": TEST_IMAGE});
    let latencies = measure(&cluster, &nodes, flags.pods, container).await?;
    report(&format!("fake ({} hollow nodes)", flags.hollow_nodes), &latencies);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Flags::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kubelet_bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
