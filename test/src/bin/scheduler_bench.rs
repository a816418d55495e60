//! `scheduler_bench`: how fast `rkube-scheduler` binds pods, and how many API calls it spends.
//!
//! Starts its own etcd, `rkube-apiserver` and `rkube-scheduler` (the **release** binaries in
//! `target/release`; it refuses to run otherwise, because debug builds measure nothing useful),
//! creates `--nodes` Node objects (Ready, with room for every pod), then creates `--pods`
//! pending pods as fast as `--concurrency` clients can, while a watch records when each pod is
//! seen bound. Prints:
//! - pods bound per second, from the first creation to the last binding seen;
//! - p50 / p99 / max latency from a pod's creation (the create reply) to its binding being
//!   visible through the watch;
//! - the API calls the scheduler made (its `rkube_scheduler_api_calls_total`, plus the
//!   informers' lists and watches), in total and per pod;
//! - the CPU time (user + system, from `/proc/<pid>/stat`) the scheduler process used over the
//!   measured period, per scheduled pod and as pods per CPU-second: figures that depend much
//!   less on how many cores the machine has, or how busy it is, than pods per second do.
//!
//! Run: `cargo build --release --bins && ./target/release/scheduler_bench --nodes 500 --pods 5000`.
//! Numbers depend on the machine; compare runs on the same machine only.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rkube_tests::scheduler::{NodeSpec, Scheduler, create_node, pending_pod, sample_value};
use rkube_tests::{Api, Cluster, repo_root};
use tokio::sync::Mutex;

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(name = "scheduler_bench", about = "Pods bound per second by rkube-scheduler, latency and API calls")]
struct Flags {
    /// Number of Node objects (each Ready, 32 CPUs, 256Gi, 110 pods).
    #[arg(long, default_value_t = 500)]
    nodes: usize,
    /// Number of pending pods to create (100m CPU, 128Mi each).
    #[arg(long, default_value_t = 5000)]
    pods: usize,
    /// Concurrent clients creating pods.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Extra flags for rkube-scheduler, space-separated, e.g. "--kube-api-qps 1000".
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    scheduler_args: String,
    /// Create every pod first and start the scheduler only then: measures how fast it drains a
    /// backlog (its own speed), rather than how fast it keeps up with pod creation.
    #[arg(long)]
    backlog: bool,
    /// Give up if not every pod is bound after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let flags = Flags::parse();
    match run(&flags).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("scheduler_bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Fails unless the binaries this bench starts are release builds.
fn require_release_binaries() -> anyhow::Result<()> {
    anyhow::ensure!(
        !cfg!(debug_assertions),
        "scheduler_bench is a debug build: build and run it with --release \
         (`cargo build --release --bins && ./target/release/scheduler_bench`)"
    );
    for name in ["rkube-apiserver", "rkube-scheduler"] {
        let path = repo_root().join("target").join("release").join(name);
        anyhow::ensure!(
            path.is_file(),
            "{} is missing: run `cargo build --release --bins` (make bench) first",
            path.display()
        );
    }
    Ok(())
}

/// The `q` quantile (0..=1) of sorted `values`, nearest-rank.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

async fn run(flags: &Flags) -> anyhow::Result<()> {
    anyhow::ensure!(
        flags.nodes > 0 && flags.pods > 0 && flags.concurrency > 0,
        "--nodes, --pods and --concurrency must be positive"
    );
    require_release_binaries()?;
    let cluster = Cluster::start().await?;
    let api = Api::new(cluster.url());
    let mut scheduler_args = vec!["--leader-elect=false"];
    scheduler_args.extend(flags.scheduler_args.split_whitespace());
    let mut scheduler = if flags.backlog { None } else { Some(Scheduler::start(&cluster, &scheduler_args).await?) };
    eprintln!("scheduler_bench: apiserver {}; creating {} nodes", cluster.url(), flags.nodes);

    // Nodes, concurrently.
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..flags.concurrency)
        .map(|_| {
            let (api, next, count) = (api.clone(), next.clone(), flags.nodes);
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    create_node(&api, &NodeSpec::new(&format!("node-{i}")).allocatable("32", "256Gi", 110)).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.context("creating nodes")?;
    }

    // Watch pods from now on; record when each is first seen bound.
    let list = api.get_ok("/api/v1/namespaces/default/pods").await;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
    let mut watch = api.watch(&format!("/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}")).await;
    let bound_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watcher = {
        let (bound_at, total) = (bound_at.clone(), flags.pods);
        tokio::spawn(async move {
            while let Some(event) = watch.next().await {
                if event["object"]["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty()) {
                    let name = event["object"]["metadata"]["name"].as_str().unwrap_or_default().to_string();
                    let mut bound = bound_at.lock().await;
                    bound.entry(name).or_insert_with(Instant::now);
                    if bound.len() >= total {
                        return;
                    }
                }
            }
        })
    };

    let cpu_before = match &scheduler {
        Some(scheduler) => cpu_seconds(scheduler)?,
        None => 0.0, // backlog: counted from the scheduler's start
    };
    let calls_before: HashMap<String, f64> = match &scheduler {
        Some(scheduler) => scheduler_calls(scheduler).await?.into_iter().collect(),
        None => HashMap::new(),
    };
    eprintln!("scheduler_bench: creating {} pods with {} clients", flags.pods, flags.concurrency);
    let servers_at_start = server_cpu_seconds(&cluster)?;
    let started = Instant::now();
    let created_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..flags.concurrency)
        .map(|_| {
            let (api, next, count, created_at) = (api.clone(), next.clone(), flags.pods, created_at.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let name = format!("pod-{i}");
                    api.create("/api/v1/namespaces/default/pods", &pending_pod("default", &name, "100m", "128Mi"))
                        .await;
                    created_at.lock().await.insert(name, Instant::now());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.context("creating pods")?;
    }
    let created_in = started.elapsed();
    // Where the throughput is measured from: the first creation, or (backlog) the scheduler's start.
    let measured_from = if flags.backlog { Instant::now() } else { started };
    let servers_before = if flags.backlog { server_cpu_seconds(&cluster)? } else { servers_at_start };
    // Backlog: the scheduler's CPU once its caches have synced (its first list of every pod
    // and node done; it starts scheduling at once, so a little of that is in here too).
    let mut cpu_at_sync = None;
    let scheduler = match scheduler.take() {
        Some(scheduler) => scheduler,
        None => {
            eprintln!("scheduler_bench: {} pods pending; starting the scheduler", flags.pods);
            let scheduler = Scheduler::start(&cluster, &scheduler_args).await?;
            cpu_at_sync = Some(cpu_seconds(&scheduler)?);
            scheduler
        }
    };

    let limit = Duration::from_secs(flags.timeout_seconds);
    if tokio::time::timeout(limit.saturating_sub(started.elapsed()), watcher).await.is_err() {
        let bound = bound_at.lock().await.len();
        anyhow::bail!(
            "only {bound} of {} pods bound after {limit:?}; scheduler log:\n{}",
            flags.pods,
            scheduler.log_tail(30)
        );
    }
    let cpu = cpu_seconds(&scheduler)? - cpu_before;
    let servers_after = server_cpu_seconds(&cluster)?;
    let (apiserver_cpu, etcd_cpu) = (servers_after.0 - servers_before.0, servers_after.1 - servers_before.1);
    let bound_at = bound_at.lock().await.clone();
    let created_at = created_at.lock().await.clone();
    let last_bound = bound_at.values().max().copied().unwrap_or(started);
    let elapsed = last_bound.duration_since(measured_from);
    let mut latencies: Vec<Duration> = bound_at
        .iter()
        .filter_map(|(name, bound)| created_at.get(name).map(|created| bound.saturating_duration_since(*created)))
        .collect();
    latencies.sort();

    let calls_after = scheduler_calls(&scheduler).await?;
    let calls: Vec<(String, f64)> = calls_after
        .iter()
        .map(|(name, after)| (name.clone(), after - calls_before.get(name).copied().unwrap_or(0.0)))
        .collect();
    let total_calls: f64 = calls.iter().map(|(_, n)| n).sum();

    println!(
        "scheduler_bench: {} pods on {} nodes ({} creating clients{})",
        flags.pods,
        flags.nodes,
        flags.concurrency,
        if flags.backlog { "; backlog: scheduler started after the pods were created" } else { "" }
    );
    println!(
        "  pods created in        {:>10.2} s ({:.0} pods/s)",
        created_in.as_secs_f64(),
        flags.pods as f64 / created_in.as_secs_f64()
    );
    println!(
        "  all bound after        {:>10.2} s (counted from {})",
        elapsed.as_secs_f64(),
        if flags.backlog { "the scheduler's start" } else { "the first create" }
    );
    println!("  pods bound per second  {:>10.0}", flags.pods as f64 / elapsed.as_secs_f64());
    println!(
        "  create→bound latency   p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        ms(quantile(&latencies, 0.5)),
        ms(quantile(&latencies, 0.99)),
        ms(quantile(&latencies, 1.0))
    );
    println!(
        "  scheduler CPU          {cpu:>10.2} s ({:.2} ms per pod, {:.0} pods per CPU-second, {:.2} cores busy{})",
        cpu * 1000.0 / flags.pods as f64,
        flags.pods as f64 / cpu.max(f64::EPSILON),
        cpu / elapsed.as_secs_f64(),
        if flags.backlog { "; from its start, first list included" } else { "" }
    );
    if let Some(at_sync) = cpu_at_sync {
        let scheduling = (cpu - at_sync).max(0.0);
        println!(
            "    after caches synced  {scheduling:>10.2} s ({:.2} ms per pod, {:.0} pods per CPU-second); first list {at_sync:.2} s",
            scheduling * 1000.0 / flags.pods as f64,
            flags.pods as f64 / scheduling.max(f64::EPSILON),
        );
    }
    println!(
        "  apiserver, etcd CPU    {apiserver_cpu:>10.2} s, {etcd_cpu:.2} s ({:.2} and {:.2} cores busy; {:.2} ms per pod together{})",
        apiserver_cpu / elapsed.as_secs_f64(),
        etcd_cpu / elapsed.as_secs_f64(),
        (apiserver_cpu + etcd_cpu) * 1000.0 / flags.pods as f64,
        if flags.backlog { "" } else { "; pod creation included" }
    );
    let metrics = scheduler.metrics().await?;
    let cycles = sample_value(&metrics, "rkube_scheduler_scheduling_cycle_duration_seconds_count");
    let in_cycles = sample_value(&metrics, "rkube_scheduler_scheduling_cycle_duration_seconds_sum");
    if cycles > 0.0 {
        // Cycles run one after another: their mean wall time bounds pods/s on any core count.
        println!(
            "  scheduling loop        {in_cycles:>10.2} s over {cycles:.0} cycles ({:.3} ms per cycle, wall; alone it could place {:.0} pods/s)",
            in_cycles * 1000.0 / cycles,
            cycles / in_cycles.max(f64::EPSILON),
        );
    }
    println!("  scheduler API calls    {total_calls:>10.0} ({:.2} per pod)", total_calls / flags.pods as f64);
    for (name, n) in &calls {
        println!("    {name:<40} {n:>8.0}");
    }
    let events = api.get_ok("/api/v1/namespaces/default/events").await;
    println!("  events stored so far   {:>10}", events["items"].as_array().map_or(0, Vec::len));
    let log = scheduler.log();
    let warnings: Vec<&str> = log.lines().filter(|line| line.contains("WARN") || line.contains("ERROR")).collect();
    if !warnings.is_empty() {
        println!("  scheduler warnings     {:>10} (first: {})", warnings.len(), warnings[0]);
    }
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// CPU seconds (user + system) the scheduler's process has used so far, from `/proc/<pid>/stat`.
fn cpu_seconds(scheduler: &Scheduler) -> anyhow::Result<f64> {
    process_cpu_seconds(scheduler.pid().context("the scheduler is not running")?)
}

/// The apiserver's and etcd's CPU time so far (user + system, seconds): the other side of
/// every binding, on the same cores.
fn server_cpu_seconds(cluster: &Cluster) -> anyhow::Result<(f64, f64)> {
    Ok((
        process_cpu_seconds(cluster.apiserver.pid().context("the apiserver is not running")?)?,
        process_cpu_seconds(cluster.etcd.pid().context("etcd is not running")?)?,
    ))
}

/// A process's CPU time so far (user + system, seconds), from `/proc/<pid>/stat`.
fn process_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading a /proc stat")?;
    // Fields after the command (which may hold spaces) in parentheses: state is field 3, utime
    // and stime fields 14 and 15 (proc(5)).
    let after_command = stat.rsplit_once(')').map(|(_, rest)| rest).context("unexpected /proc stat format")?;
    let fields: Vec<&str> = after_command.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).context("unexpected /proc stat format");
    Ok((ticks(11)? + ticks(12)?) / clock_ticks_per_second())
}

/// `getconf CLK_TCK`: the unit of `/proc/<pid>/stat` times (100 on every common Linux).
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|ticks| *ticks > 0.0)
        .unwrap_or(100.0)
}

/// The scheduler's own API calls by kind, from its `/metrics`.
async fn scheduler_calls(scheduler: &Scheduler) -> anyhow::Result<Vec<(String, f64)>> {
    let text = scheduler.metrics().await?;
    let mut calls: Vec<(String, f64)> = ["bind", "status", "event"]
        .iter()
        .map(|call| {
            let sample = format!("rkube_scheduler_api_calls_total{{call=\"{call}\"}}");
            (call.to_string(), sample_value(&text, &sample))
        })
        .collect();
    for (metric, label) in [("rkube_informer_lists_total", "list"), ("rkube_informer_watches_total", "watch")] {
        let total: f64 = text
            .lines()
            .filter(|line| line.starts_with(metric))
            .filter_map(|line| line.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum();
        calls.push((format!("{label} (pods and nodes informers)"), total));
    }
    Ok(calls)
}
