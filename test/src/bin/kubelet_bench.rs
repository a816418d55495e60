//! `kubelet_bench`: pod start-up latency, from create to `Running` as seen through a watch, and
//! where it goes; and the kubelet's CPU at idle with many pods.
//!
//! Starts its own etcd, `rkube-apiserver` and `rkubelet`s (the binaries of this build's profile)
//! and measures, per pod, the time from the create request to the first watch event that shows
//! the pod `Running` (the Kubernetes SLO: p99 ≤ 5 s; rkube aims for ≤ 1 s). Pods are created
//! already bound (`spec.nodeName`), so no scheduler is involved. Runs:
//! 1. `--pods` pods on one `rkubelet --runtime containerd` with CNI networking, on a private
//!    containerd with the test image imported (the image is cached: no pull). Needs root and
//!    `make deps`; skipped with `--fake-only` (and says so). Afterwards the kubelet's `/metrics`
//!    give the per-step breakdown (`kubelet_pod_start_step_duration_seconds{step}`, p50 and
//!    p99 interpolated within buckets as Prometheus' `histogram_quantile` does, and the mean),
//!    and `/proc` the kubelet's CPU time per pod started.
//! 2. `--pods` pods spread over `--hollow-nodes` fake kubelets on this machine: the baseline
//!    (everything but the runtime), printed as a ratio beside the containerd figure.
//! 3. With `--idle-pods N` (containerd): N pods on a fresh containerd kubelet started with the
//!    production defaults (`--sync-frequency 10`, lease every 10 s); once all run and
//!    `--settle` seconds passed, the kubelet's CPU (utime + stime from `/proc/<pid>/stat`) over
//!    `--idle-seconds`, as a share of one core and per pod.
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
    /// Pods per start-up run.
    #[arg(long, default_value_t = 50)]
    pods: usize,
    /// Fake kubelets for the hollow-node run.
    #[arg(long, default_value_t = 5)]
    hollow_nodes: usize,
    /// Skip the containerd runs (no root or containerd needed).
    #[arg(long)]
    fake_only: bool,
    /// Also measure the kubelet's CPU at idle with this many running pods (0: not measured).
    #[arg(long, default_value_t = 0)]
    idle_pods: usize,
    /// How long the idle kubelet's CPU is measured, in seconds.
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// How long to wait after the idle pods all run before measuring, in seconds.
    #[arg(long, default_value_t = 15)]
    settle: u64,
}

const DEADLINE: Duration = Duration::from_secs(120);

/// The start-up steps the kubelet times (`rkube_kubelet::startup::Step`), in order.
const STEPS: [&str; 12] =
    ["queue", "volumes", "sandbox", "runs", "image", "spec", "snapshot", "create", "task", "start", "status", "watch"];

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Creates `count` pods (named `<prefix>-<i>`) bound round-robin to `nodes` and returns each
/// one's create→Running time.
async fn measure(
    cluster: &Cluster,
    nodes: &[String],
    count: usize,
    prefix: &str,
    container: serde_json::Value,
) -> anyhow::Result<Vec<Duration>> {
    let client = Client::new(Config::new(cluster.url().parse()?))?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let start_rv = pods.list(&ListParams::default()).await?.metadata.resource_version.unwrap_or_default();
    let mut watch = pods.watch(&WatchParams::default().timeout(290), &start_rv).await?;
    let mut created: HashMap<String, Instant> = HashMap::new();
    for i in 0..count {
        let name = format!("{prefix}-{i}");
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

/// CPU time (user + system) process `pid` has used so far, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("unexpected /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks = |at: usize| -> anyhow::Result<u64> {
        fields.get(at - 3).context("short /proc/<pid>/stat")?.parse::<u64>().context("bad tick count")
    };
    let total = ticks(14)? + ticks(15)?;
    let per_second = clock_ticks_per_second();
    Ok(Duration::from_secs_f64(total as f64 / per_second))
}

/// CPU time the whole machine spent busy so far (every state of `/proc/stat`'s `cpu` line but
/// idle and iowait).
fn machine_busy() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|field| field.parse().ok()).collect();
    let busy: u64 = ticks.iter().enumerate().filter(|(at, _)| *at != 3 && *at != 4).map(|(_, n)| n).sum();
    Ok(Duration::from_secs_f64(busy as f64 / clock_ticks_per_second()))
}

/// `getconf CLK_TCK` (100 on Linux, whatever the kernel's HZ).
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// One histogram of a `/metrics` text: cumulative counts by upper bound, sum and count.
#[derive(Debug, Default)]
struct Histogram {
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl Histogram {
    /// The histogram `name` whose labels include `label` (e.g. `step="task"`; empty: any).
    fn parse(text: &str, name: &str, label: &str) -> Histogram {
        let mut histogram = Histogram::default();
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
            if !labels.contains(label) {
                continue;
            }
            if metric == format!("{name}_bucket") {
                let le = labels.split("le=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap_or_default();
                let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
                histogram.buckets.push((bound, value));
            } else if metric == format!("{name}_sum") {
                histogram.sum = value;
            } else if metric == format!("{name}_count") {
                histogram.count = value;
            }
        }
        histogram.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        histogram
    }

    /// The `q` quantile, interpolated linearly within its bucket (Prometheus'
    /// `histogram_quantile`); the highest finite bound when it falls in `+Inf`.
    fn quantile(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        let rank = q * self.count;
        let mut lower = (0.0, 0.0);
        for &(bound, cumulative) in &self.buckets {
            if cumulative >= rank {
                if bound.is_infinite() {
                    return Some(lower.0);
                }
                let in_bucket = cumulative - lower.1;
                let fraction = if in_bucket > 0.0 { (rank - lower.1) / in_bucket } else { 1.0 };
                return Some(lower.0 + (bound - lower.0) * fraction);
            }
            lower = (bound, cumulative);
        }
        None
    }

    fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }
}

fn ms(seconds: Option<f64>) -> String {
    seconds.map_or_else(|| "-".into(), |s| format!("{:.0} ms", s * 1000.0))
}

/// Prints the kubelet's start-up histograms: the SLI, the total, and each step.
fn report_steps(metrics: &str) {
    let row = |what: &str, histogram: &Histogram| {
        println!(
            "  {what:<10} n={:<4} p50 {:>8}  p99 {:>8}  mean {:>8}",
            histogram.count,
            ms(histogram.quantile(0.5)),
            ms(histogram.quantile(0.99)),
            ms(histogram.mean())
        );
    };
    println!("  per step (kubelet_pod_start_step_duration_seconds; steps overlap across pods):");
    for step in STEPS {
        let histogram =
            Histogram::parse(metrics, "kubelet_pod_start_step_duration_seconds", &format!("step=\"{step}\""));
        if histogram.count > 0.0 {
            row(step, &histogram);
        }
    }
    let total = Histogram::parse(metrics, "kubelet_pod_start_duration_seconds", "");
    let sli = Histogram::parse(metrics, "kubelet_pod_start_sli_duration_seconds", "");
    println!("  (Kubernetes' buckets from 0.5 s: quantiles are coarse, means exact)");
    row("first-seen→written", &total);
    row("sli", &sli);
}

/// The containerd start-up run: latencies, then the kubelet's breakdown and CPU per pod.
async fn containerd_startup(flags: &Flags) -> anyhow::Result<Duration> {
    let cluster = Cluster::start().await?;
    let containerd = Containerd::start().await?;
    let kubelet =
        Kubelet::start_containerd_with(&cluster, &containerd, "bench-node", &["--pod-cidr", "10.98.200.0/24"]).await?;
    let pid = kubelet.pid().context("the kubelet is not running")?;
    let (cpu_before, busy_before) = (cpu_time(pid)?, machine_busy()?);
    let container = serde_json::json!({"name": "main", "image": TEST_IMAGE, "command": ["sleep", "3600"]});
    let latencies = measure(&cluster, std::slice::from_ref(&kubelet.node_name), flags.pods, "bench", container).await?;
    let cpu = cpu_time(pid)?.saturating_sub(cpu_before);
    let busy = machine_busy()?.saturating_sub(busy_before);
    report("containerd (cached image, CNI)", &latencies);
    let per_pod = |cpu: Duration| cpu.as_secs_f64() * 1000.0 / flags.pods as f64;
    println!(
        "  CPU while starting: kubelet {:.2} s = {:.1} ms per pod; whole machine (containerd, shims, runc, CNI, \
         apiserver, etcd, and anyone else) {:.2} s = {:.1} ms per pod",
        cpu.as_secs_f64(),
        per_pod(cpu),
        busy.as_secs_f64(),
        per_pod(busy)
    );
    let metrics = reqwest::get(format!("{}/metrics", kubelet.url())).await?.text().await?;
    report_steps(&metrics);
    Ok(percentile(&latencies, 0.99))
}

/// The idle run: `--idle-pods` pods on a kubelet with the production defaults, then its CPU.
async fn containerd_idle(flags: &Flags) -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let containerd = Containerd::start().await?;
    // Later flags override the harness's (2 s resync, 1 s lease): the production defaults.
    let args = ["--pod-cidr", "10.98.201.0/24", "--sync-frequency", "10", "--node-lease-renew-interval", "10"];
    let kubelet = Kubelet::start_containerd_with(&cluster, &containerd, "idle-node", &args).await?;
    let container = serde_json::json!({"name": "main", "image": TEST_IMAGE, "command": ["sleep", "3600"]});
    let latencies =
        measure(&cluster, std::slice::from_ref(&kubelet.node_name), flags.idle_pods, "idle", container).await?;
    report(&format!("idle run start-up ({} pods at once)", flags.idle_pods), &latencies);
    tokio::time::sleep(Duration::from_secs(flags.settle)).await;
    let pid = kubelet.pid().context("the kubelet is not running")?;
    let (before, began) = (cpu_time(pid)?, Instant::now());
    tokio::time::sleep(Duration::from_secs(flags.idle_seconds)).await;
    let (cpu, wall) = (cpu_time(pid)?.saturating_sub(before), began.elapsed());
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    println!(
        "idle: {} running pods, kubelet CPU {:.2} s over {:.0} s = {:.2}% of a core ({:.3}% per pod; goal < 5%)",
        flags.idle_pods,
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        share * 100.0,
        share * 100.0 / flags.idle_pods as f64
    );
    Ok(())
}

async fn run(flags: Flags) -> anyhow::Result<()> {
    anyhow::ensure!(flags.pods > 0 && flags.hollow_nodes > 0, "--pods and --hollow-nodes must be positive");
    println!(
        "machine: {} CPUs ({}); {}",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        cpu_model(),
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC")
    );
    let containerd_p99 = if flags.fake_only {
        println!("containerd: skipped (--fake-only)");
        None
    } else {
        Some(containerd_startup(&flags).await?)
    };
    let cluster = Cluster::start().await?;
    let mut kubelets = Vec::new();
    for i in 0..flags.hollow_nodes {
        let cidr = format!("10.99.{i}.0/24");
        kubelets.push(Kubelet::start_fake(&cluster, &format!("hollow-{i}"), &["--pod-cidr", &cidr]).await?);
    }
    let nodes: Vec<String> = kubelets.iter().map(|kubelet| kubelet.node_name.clone()).collect();
    let container = serde_json::json!({"name": "main", "image": TEST_IMAGE});
    let latencies = measure(&cluster, &nodes, flags.pods, "bench", container).await?;
    report(&format!("fake ({} hollow nodes)", flags.hollow_nodes), &latencies);
    if let Some(p99) = containerd_p99 {
        let fake_p99 = percentile(&latencies, 0.99);
        println!(
            "ratio: containerd p99 / fake p99 = {:.1} (the runtime's share: {:?})",
            p99.as_secs_f64() / fake_p99.as_secs_f64().max(1e-6),
            p99.saturating_sub(fake_p99)
        );
    }
    drop(kubelets);
    drop(cluster);
    if flags.idle_pods > 0 && !flags.fake_only {
        containerd_idle(&flags).await?;
    }
    Ok(())
}

/// The CPU's model name from `/proc/cpuinfo` (`lscpu`'s "Model name").
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets_as_prometheus_does() {
        let text = "\
# TYPE kubelet_pod_start_step_duration_seconds histogram
kubelet_pod_start_step_duration_seconds_bucket{step=\"task\",le=\"0.1\"} 0
kubelet_pod_start_step_duration_seconds_bucket{step=\"task\",le=\"0.2\"} 50
kubelet_pod_start_step_duration_seconds_bucket{step=\"task\",le=\"0.4\"} 100
kubelet_pod_start_step_duration_seconds_bucket{step=\"task\",le=\"+Inf\"} 100
kubelet_pod_start_step_duration_seconds_sum{step=\"task\"} 20
kubelet_pod_start_step_duration_seconds_count{step=\"task\"} 100
kubelet_pod_start_step_duration_seconds_bucket{step=\"start\",le=\"0.1\"} 7
";
        let task = Histogram::parse(text, "kubelet_pod_start_step_duration_seconds", "step=\"task\"");
        assert_eq!(task.count, 100.0);
        assert!((task.quantile(0.5).expect("p50") - 0.2).abs() < 1e-9);
        assert!((task.quantile(0.75).expect("p75") - 0.3).abs() < 1e-9);
        assert!((task.mean().expect("mean") - 0.2).abs() < 1e-9);
        let none = Histogram::parse(text, "kubelet_pod_start_step_duration_seconds", "step=\"gone\"");
        assert_eq!(none.quantile(0.5), None);
    }
}
