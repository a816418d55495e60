//! `apiserver_scale_bench`: the watch cache under load: one change fanned out to many
//! watchers, big collections, watchers that never read, and what a consistent read costs.
//!
//! Starts its own etcd and `rkube-apiserver` (this build's profile; `make bench` builds
//! release) on loopback ports and runs, each part bounded in count and in time:
//! 1. **Watch fan-out.** For each N in `--watchers`: N watches of one namespace's ConfigMaps,
//!    all from one resourceVersion, spread over `--client-pools` HTTP clients in this process;
//!    then `--writes` updates at `--write-rate` per second. Checks that every watcher got every
//!    update exactly once and in resourceVersion order, and prints the write→event latency
//!    (from the update's response to a watcher receiving its event) p50/p99 over all watchers,
//!    the CPU the apiserver, etcd and this process spent meanwhile, and etcd's
//!    `etcd_debugging_mvcc_watcher_total` before and during: with the cache it must not grow
//!    with the watchers, nor exceed one per cached resource (plus [`OWN_WATCHES`]). The same
//!    for each N in `--baseline-watchers` against an apiserver with `--watch-cache=false`.
//! 2. **Big collections.** `--objects` ConfigMaps of `--object-bytes`, then an unpaged list, a
//!    paged list (500 a page; once quiet, once while ConfigMaps elsewhere change at 20/s), a
//!    watch from scratch (every object `ADDED`, then a live change) and an informer sync, each
//!    against the cached apiserver and against a `--watch-cache=false` apiserver on the same
//!    etcd. Lists and the watch are read off raw TCP connections, so the time is the
//!    apiserver's; the unpaged list is read through reqwest as well, to show what a
//!    hyper-based client spends decoding it. The cached apiserver's RSS once its cache is
//!    filled, and its peak.
//! 3. **Watchers that never read.** `--stuck-watchers` raw TCP connections that each send a
//!    watch of a namespace holding one `--stuck-object-bytes` ConfigMap and never read; the
//!    apiserver's RSS with them open (goal: below the RSS with the filled cache + 100 MiB) and
//!    after they close (goal: within 20% of the RSS before they opened), and the kernel's TCP
//!    buffer memory, which holds what they did not read.
//! 4. **Consistent reads.** A list of a one-object namespace with `resourceVersion=0`, and
//!    consistent (no resourceVersion) right after a ConfigMap write and right after a write to
//!    another resource; alone and 20 at once.
//!
//! Exits non-zero when a correctness check fails (an event lost, duplicated, out of order or
//! of the wrong type, a failed write, list, watch or informer sync, etcd watchers growing with
//! cached watchers); slow numbers and missed memory goals are printed, never a failure.
//! Numbers depend on the machine, and this process shares its cores with the apiserver and
//! etcd; compare figures of one run only. Linux only (it reads `/proc`).

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use rkube_informer::factory::SharedInformerFactory;
use rkube_tests::component::sample_value;
use rkube_tests::resources::{CONFIG_MAPS, NAMESPACES, config_map, namespace};
use rkube_tests::{ApiServer, Etcd, escape_query};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(
    name = "apiserver_scale_bench",
    about = "The apiserver's watch cache under load: fan-out, big collections, watchers that never read"
)]
struct Flags {
    /// Watcher counts of the fan-out with the watch cache, comma-separated (100 as well, to
    /// compare with the baseline at the same count).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 100, 1000])]
    watchers: Vec<usize>,
    /// Watcher counts of the fan-out baseline (`--watch-cache=false`), comma-separated; kept
    /// small because each is an etcd watch.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 100])]
    baseline_watchers: Vec<usize>,
    /// Updates sent while the watchers watch.
    #[arg(long, default_value_t = 200)]
    writes: usize,
    /// Updates per second.
    #[arg(long, default_value_t = 50.0)]
    write_rate: f64,
    /// ConfigMaps the updates cycle through.
    #[arg(long, default_value_t = 20)]
    written_objects: usize,
    /// HTTP clients (connection pools) the watchers are spread over.
    #[arg(long, default_value_t = 4)]
    client_pools: usize,
    /// ConfigMaps in the big collection.
    #[arg(long, default_value_t = 50_000)]
    objects: usize,
    /// Bytes of data in each of them.
    #[arg(long, default_value_t = 1024)]
    object_bytes: usize,
    /// Concurrent creates while filling the big collection.
    #[arg(long, default_value_t = 32)]
    create_concurrency: usize,
    /// Watchers that never read.
    #[arg(long, default_value_t = 1000)]
    stuck_watchers: usize,
    /// Bytes of data of the one ConfigMap they watch.
    #[arg(long, default_value_t = 900 * 1024)]
    stuck_object_bytes: usize,
    /// Parts to run, comma-separated (the watchers that never read and the consistent reads
    /// are part of `collections`: they need the big collection).
    #[arg(long, value_delimiter = ',', default_values_t = [Part::Fanout, Part::Collections])]
    parts: Vec<Part>,
    /// A smoke run of about ten seconds: 1, 20 and 50 watchers (baseline 1 and 20), 40 writes,
    /// 2,000 objects, 50 watchers that never read. Replaces those sizes.
    #[arg(long)]
    quick: bool,
    /// Give up on a part after this many seconds (a failure).
    #[arg(long, default_value_t = 300)]
    part_timeout_seconds: u64,
}

/// One part of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Part {
    /// Watch fan-out, with and without the cache.
    Fanout,
    /// Big collections, then watchers that never read and consistent reads.
    Collections,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::Fanout => "fanout",
            Part::Collections => "collections",
        })
    }
}

impl Flags {
    fn apply_quick(&mut self) {
        if self.quick {
            self.watchers = vec![1, 20, 50];
            self.baseline_watchers = vec![1, 20];
            self.writes = 40;
            self.objects = 2_000;
            self.stuck_watchers = 50;
        }
    }
}

/// etcd watches the apiserver holds besides its watch caches: NamespaceLifecycle's cache of
/// namespaces (`pkg/apiserver/src/namespace.rs`, `run_cache`) and the CustomResourceDefinition
/// reconciler, which serves a CRD's kind as soon as it changes
/// (`pkg/apiserver/src/apiextensions.rs`, `wait_for_change`), each watch for themselves.
const OWN_WATCHES: usize = 2;
/// Namespace of the fan-out.
const FANOUT_NAMESPACE: &str = "fanout";
/// Namespace of the big collection.
const BIG_NAMESPACE: &str = "big";
/// Namespace holding one small ConfigMap, for the cost of a consistent read.
const SMALL_NAMESPACE: &str = "small";
/// Namespace holding the one large ConfigMap that the watchers that never read watch.
const STUCK_NAMESPACE: &str = "stuck";
/// A page of the paged list (and of the informer's list).
const PAGE: usize = 500;
/// Budget for opening the watchers of one fan-out row.
const OPEN_BUDGET: Duration = Duration::from_secs(60);
/// How long the watchers may take to receive the last events after the last write.
const DRAIN_BUDGET: Duration = Duration::from_secs(30);
/// Timeout of one ordinary request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Consistent lists sent at once in the consistent-read cost measurement.
const CONCURRENT_READS: usize = 20;
/// Reads of a consistent-read cost sample.
const READ_SAMPLES: usize = 5;

/// The correctness failures seen so far; any one makes the exit code non-zero.
#[derive(Default)]
struct Checks {
    failures: Vec<String>,
}

impl Checks {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let what = what();
            println!("  FAIL: {what}");
            self.failures.push(what);
        }
    }
}

/// A goal on a measured number: printed met or missed, never a failure.
struct Goal {
    name: String,
    met: bool,
    detail: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut flags = Flags::parse();
    flags.apply_quick();
    // Everything runs in a spawned task, on a runtime worker: a future in main's `block_on`
    // thread pays a cross-thread wake-up for every body frame hyper's client hands over, which
    // made a 50,000-item list through reqwest read 4 to 10 times slower than from a worker.
    let outcome = tokio::spawn(async move {
        let mut checks = Checks::default();
        let mut goals = Vec::new();
        let result = run(&flags, &mut checks, &mut goals).await;
        (result, checks, goals)
    })
    .await;
    let (checks, goals) = match outcome {
        Ok((Ok(()), checks, goals)) => (checks, goals),
        Ok((Err(error), _, _)) => {
            eprintln!("apiserver_scale_bench: {error:#}");
            return ExitCode::FAILURE;
        }
        Err(error) => {
            eprintln!("apiserver_scale_bench: the benchmark task failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("\n== goals");
    for goal in &goals {
        println!("  {:<7} {}: {}", if goal.met { "met" } else { "MISSED" }, goal.name, goal.detail);
    }
    if checks.failures.is_empty() {
        println!("\nall correctness checks passed");
        ExitCode::SUCCESS
    } else {
        println!("\n{} correctness checks failed:", checks.failures.len());
        for failure in &checks.failures {
            println!("  {failure}");
        }
        ExitCode::FAILURE
    }
}

async fn run(flags: &Flags, checks: &mut Checks, goals: &mut Vec<Goal>) -> anyhow::Result<()> {
    anyhow::ensure!(flags.writes > 0 && flags.write_rate > 0.0, "--writes and --write-rate must be positive");
    anyhow::ensure!(
        flags.written_objects > 0 && flags.client_pools > 0,
        "--written-objects and --client-pools must be positive"
    );
    anyhow::ensure!(
        flags.objects > 0 && flags.create_concurrency > 0,
        "--objects and --create-concurrency must be positive"
    );
    let connections = flags.watchers.iter().chain(&flags.baseline_watchers).chain([&flags.stuck_watchers]).max();
    check_file_limit(connections.copied().unwrap_or(0))?;
    println!("apiserver_scale_bench: {} cores; {flags:?}", std::thread::available_parallelism().map_or(0, usize::from));
    let limit = Duration::from_secs(flags.part_timeout_seconds);
    if flags.parts.contains(&Part::Fanout) {
        match tokio::time::timeout(limit, fan_out_part(flags, checks)).await {
            Ok(result) => result?,
            Err(_) => checks.check(false, || format!("the fan-out did not finish within {limit:?}")),
        }
    }
    if flags.parts.contains(&Part::Collections) {
        match tokio::time::timeout(limit, collections_part(flags, checks, goals)).await {
            Ok(result) => result?,
            Err(_) => checks.check(false, || format!("the big collections did not finish within {limit:?}")),
        }
    }
    Ok(())
}

/// Fails early when this process (and so the apiserver it starts, which inherits the limit)
/// may not open enough files for `connections` connections.
fn check_file_limit(connections: usize) -> anyhow::Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    let soft = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse::<usize>().ok());
    let needed = connections + 512;
    match soft {
        Some(soft) if soft < needed => {
            bail!(
                "the open-file limit is {soft}, {needed} are needed for {connections} connections: raise it (ulimit -n {needed})"
            )
        }
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Part 1: watch fan-out.

/// What one fan-out row measured.
struct FanOut {
    cache: bool,
    watchers: usize,
    opened_in: Duration,
    expected_events: usize,
    received: usize,
    lost: usize,
    duplicated: usize,
    reordered: usize,
    unexpected: usize,
    /// Events that arrived before the response of their write (counted as 0 ms).
    before_response: usize,
    latencies_ms: Vec<f64>,
    etcd_watchers_before: f64,
    etcd_watchers_during: f64,
    /// CPU seconds of the apiserver, etcd and this process from the first write until every
    /// watcher was done.
    cpu: [f64; 3],
    cpu_window: Duration,
}

async fn fan_out_part(flags: &Flags, checks: &mut Checks) -> anyhow::Result<()> {
    println!(
        "\n== 1. watch fan-out: {} updates at {}/s of {} ConfigMaps",
        flags.writes, flags.write_rate, flags.written_objects
    );
    let mut rows = Vec::new();
    for (cache, counts) in [(true, &flags.watchers), (false, &flags.baseline_watchers)] {
        if counts.is_empty() {
            continue;
        }
        let etcd = Etcd::start().await?;
        let args: &[&str] = if cache { &[] } else { &["--watch-cache=false"] };
        let apiserver = ApiServer::start(&etcd, args).await?;
        let http = http_client()?;
        create_namespace(&http, &apiserver.url, FANOUT_NAMESPACE).await?;
        let collection = format!("{}{}", apiserver.url, CONFIG_MAPS.collection(FANOUT_NAMESPACE));
        for i in 0..flags.written_objects {
            let body = config_map(FANOUT_NAMESPACE, &written_name(i), json!({ "seq": "none" }));
            post(&http, &collection, &body).await?;
        }
        let cached_resources = cached_resource_count(&http, &apiserver.url).await?;
        for &watchers in counts {
            let row = fan_out(flags, &etcd, &apiserver, &collection, cache, watchers).await?;
            print_fan_out(&row);
            let label = if cache { "cache" } else { "no cache" };
            checks.check(row.lost == 0, || format!("fan-out ({label}, {watchers} watchers): {} events lost", row.lost));
            checks.check(row.duplicated == 0, || {
                format!("fan-out ({label}, {watchers} watchers): {} events duplicated", row.duplicated)
            });
            checks.check(row.reordered == 0, || {
                format!("fan-out ({label}, {watchers} watchers): {} events out of order", row.reordered)
            });
            checks.check(row.unexpected == 0, || {
                format!("fan-out ({label}, {watchers} watchers): {} unexpected events", row.unexpected)
            });
            if cache {
                checks.check(row.etcd_watchers_during <= row.etcd_watchers_before, || {
                    format!(
                        "etcd watchers grew with {watchers} cached watchers: {} before, {} during",
                        row.etcd_watchers_before, row.etcd_watchers_during
                    )
                });
                let allowed = cached_resources + OWN_WATCHES;
                checks.check(row.etcd_watchers_during <= allowed as f64, || {
                    format!(
                        "etcd holds {} watchers for {cached_resources} cached resources (+{OWN_WATCHES} of the apiserver's own)",
                        row.etcd_watchers_during
                    )
                });
            }
            rows.push(row);
        }
    }
    print_fan_out_ratios(&rows);
    Ok(())
}

fn written_name(index: usize) -> String {
    format!("written-{index:03}")
}

/// One event as a watcher received it.
struct Received {
    kind: String,
    revision: i64,
    at: Instant,
}

/// What one watcher saw.
#[derive(Default)]
struct WatcherLog {
    events: Vec<Received>,
    error: Option<String>,
}

/// Counts of the watchers that have their response headers, and of those that failed first.
#[derive(Default)]
struct Opening {
    opened: AtomicUsize,
    failed: AtomicUsize,
}

async fn fan_out(
    flags: &Flags,
    etcd: &Etcd,
    apiserver: &ApiServer,
    collection: &str,
    cache: bool,
    watchers: usize,
) -> anyhow::Result<FanOut> {
    let http = http_client()?;
    let start = list_revision(&http, collection).await?;
    let etcd_watchers_before = etcd_watchers(&http, &etcd.client_url).await?;
    let pools = (0..flags.client_pools)
        .map(|_| reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build())
        .collect::<Result<Vec<_>, _>>()?;
    let writing = Duration::from_secs_f64(flags.writes as f64 / flags.write_rate);
    let deadline = Instant::now() + OPEN_BUDGET + writing + DRAIN_BUDGET;
    let opening = Arc::new(Opening::default());
    let open_slots = Arc::new(tokio::sync::Semaphore::new(64));
    let url = format!("{collection}?watch=true&resourceVersion={start}");
    let began = Instant::now();
    let mut tasks = Vec::with_capacity(watchers);
    for index in 0..watchers {
        let client = pools[index % pools.len()].clone();
        let (url, opening, open_slots) = (url.clone(), Arc::clone(&opening), Arc::clone(&open_slots));
        let expected = flags.writes;
        tasks.push(tokio::spawn(
            async move { watch_events(client, url, expected, deadline, opening, open_slots).await },
        ));
    }
    while opening.opened.load(Ordering::SeqCst) + opening.failed.load(Ordering::SeqCst) < watchers
        && began.elapsed() < OPEN_BUDGET
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let opened_in = began.elapsed();
    let etcd_at_open = etcd_watchers(&http, &etcd.client_url).await?;
    let pids = [Some(apiserver_pid(apiserver)?), Some(etcd_pid(etcd)?), None];
    let cpu_before = pids.map(cpu_seconds);
    let writes_began = Instant::now();
    // Halfway through the writes, etcd's watchers again.
    let (writes, etcd_mid) = tokio::join!(write_updates(&http, collection, flags), async {
        tokio::time::sleep(writing / 2).await;
        etcd_watchers(&http, &etcd.client_url).await
    });
    let etcd_watchers_during = etcd_at_open.max(etcd_mid?);
    let mut done_at = HashMap::new();
    let mut write_failures = 0;
    for write in writes {
        match write {
            Ok((revision, at)) => {
                done_at.insert(revision, at);
            }
            Err(error) => {
                write_failures += 1;
                eprintln!("  write failed: {error}");
            }
        }
    }
    let mut logs = Vec::with_capacity(watchers);
    for task in tasks {
        logs.push(task.await.unwrap_or_else(|error| WatcherLog {
            events: Vec::new(),
            error: Some(format!("watcher task failed: {error}")),
        }));
    }
    let mut cpu = [0.0; 3];
    for (slot, (pid, before)) in pids.into_iter().zip(cpu_before).enumerate() {
        cpu[slot] = cpu_seconds(pid)? - before?;
    }
    let mut row = FanOut {
        cpu,
        cpu_window: writes_began.elapsed(),
        cache,
        watchers,
        opened_in,
        expected_events: flags.writes * watchers,
        received: 0,
        lost: write_failures * watchers,
        duplicated: 0,
        reordered: 0,
        unexpected: 0,
        before_response: 0,
        latencies_ms: Vec::with_capacity(flags.writes * watchers),
        etcd_watchers_before,
        etcd_watchers_during,
    };
    let mut errors: HashMap<String, usize> = HashMap::new();
    for log in &logs {
        if let Some(error) = &log.error {
            *errors.entry(error.clone()).or_default() += 1;
        }
        tally(&mut row, log, &done_at);
    }
    for (error, count) in errors {
        println!("  {count} watchers: {error}");
    }
    if row.lost > 0 || row.unexpected > 0 {
        eprintln!("apiserver log tail:\n{}", apiserver.log_tail(20));
    }
    Ok(row)
}

/// Adds what one watcher saw to `row`: its events against the writes' revisions.
fn tally(row: &mut FanOut, log: &WatcherLog, done_at: &HashMap<i64, Instant>) {
    row.received += log.events.len();
    let mut seen: HashMap<i64, usize> = HashMap::new();
    let mut last = i64::MIN;
    for event in &log.events {
        if event.revision <= last {
            row.reordered += 1;
        }
        last = last.max(event.revision);
        *seen.entry(event.revision).or_default() += 1;
        let Some(done) = done_at.get(&event.revision) else {
            row.unexpected += 1;
            continue;
        };
        if event.kind != "MODIFIED" {
            row.unexpected += 1;
        }
        match event.at.checked_duration_since(*done) {
            Some(latency) => row.latencies_ms.push(latency.as_secs_f64() * 1000.0),
            None => {
                row.before_response += 1;
                row.latencies_ms.push(0.0);
            }
        }
    }
    row.duplicated += seen.values().map(|count| count - 1).sum::<usize>();
    row.lost += done_at.keys().filter(|revision| !seen.contains_key(revision)).count();
}

/// One watcher: opens the watch (at most 64 open at once), then reads until it has `expected`
/// events, the stream ends or `deadline` passes.
async fn watch_events(
    client: reqwest::Client,
    url: String,
    expected: usize,
    deadline: Instant,
    opening: Arc<Opening>,
    open_slots: Arc<tokio::sync::Semaphore>,
) -> WatcherLog {
    let deadline = tokio::time::Instant::from_std(deadline);
    let mut log = WatcherLog { events: Vec::with_capacity(expected), error: None };
    let response = {
        let _slot = open_slots.acquire().await;
        tokio::time::timeout_at(deadline, client.get(&url).send()).await
    };
    let response = match response {
        Ok(Ok(response)) if response.status().is_success() => response,
        Ok(Ok(response)) => {
            let status = response.status();
            log.error = Some(format!("watch answered {status}: {}", response.text().await.unwrap_or_default()));
            opening.failed.fetch_add(1, Ordering::SeqCst);
            return log;
        }
        Ok(Err(error)) => {
            log.error = Some(format!("watch failed: {error}"));
            opening.failed.fetch_add(1, Ordering::SeqCst);
            return log;
        }
        Err(_) => {
            log.error = Some("watch sent no headers in time".into());
            opening.failed.fetch_add(1, Ordering::SeqCst);
            return log;
        }
    };
    opening.opened.fetch_add(1, Ordering::SeqCst);
    let mut chunks = response.bytes_stream();
    let mut buffer = Vec::new();
    while log.events.len() < expected {
        let chunk = match tokio::time::timeout_at(deadline, chunks.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(error))) => {
                log.error = Some(format!("watch broke: {error}"));
                break;
            }
            Ok(None) => {
                log.error = Some("the apiserver ended the watch".into());
                break;
            }
            Err(_) => {
                log.error = Some("not every event arrived in time".into());
                break;
            }
        };
        let at = Instant::now();
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let event: Value = serde_json::from_slice(&line).unwrap_or_else(|_| json!({ "type": "UNPARSABLE" }));
            let kind = event["type"].as_str().unwrap_or_default().to_string();
            if kind == "BOOKMARK" {
                continue;
            }
            if kind == "ERROR" {
                log.error = Some(format!("ERROR event: {}", event["object"]));
            }
            log.events.push(Received { kind, revision: revision_of(&event["object"]), at });
        }
    }
    log
}

/// Sends `--writes` merge patches at `--write-rate` per second (each in its own task, so a slow
/// one does not slow the rate), cycling through the written ConfigMaps; returns each one's
/// resourceVersion and when its response arrived.
async fn write_updates(
    client: &reqwest::Client,
    collection: &str,
    flags: &Flags,
) -> Vec<Result<(i64, Instant), String>> {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / flags.write_rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = Vec::with_capacity(flags.writes);
    for index in 0..flags.writes {
        ticker.tick().await;
        let url = format!("{collection}/{}", written_name(index % flags.written_objects));
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({ "data": { "seq": index.to_string() } });
            let reply = client
                .patch(&url)
                .header("content-type", "application/merge-patch+json")
                .body(body.to_string())
                .timeout(REQUEST_TIMEOUT)
                .send()
                .await
                .map_err(|error| format!("PATCH {url}: {error}"))?;
            let status = reply.status();
            let bytes = reply.bytes().await.map_err(|error| format!("PATCH {url}: {error}"))?;
            let at = Instant::now();
            if !status.is_success() {
                return Err(format!("PATCH {url}: {status} {}", String::from_utf8_lossy(&bytes)));
            }
            let object: Value = serde_json::from_slice(&bytes).map_err(|error| format!("PATCH {url}: {error}"))?;
            Ok((revision_of(&object), at))
        }));
    }
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.unwrap_or_else(|error| Err(format!("write task failed: {error}"))));
    }
    results
}

fn print_fan_out(row: &FanOut) {
    let mut sorted = row.latencies_ms.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "  {:<8} {:>5} watchers (opened in {:.2} s): events {}/{}, lost {}, duplicated {}, reordered {}, unexpected {}",
        if row.cache { "cache" } else { "no cache" },
        row.watchers,
        row.opened_in.as_secs_f64(),
        row.received,
        row.expected_events,
        row.lost,
        row.duplicated,
        row.reordered,
        row.unexpected,
    );
    println!(
        "           write->event p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} events before their write's response); \
         etcd watchers {} -> {}; CPU in {:.1} s: apiserver {:.2} s, etcd {:.2} s, this process {:.2} s",
        quantile(&sorted, 0.50),
        quantile(&sorted, 0.99),
        sorted.last().copied().unwrap_or(0.0),
        row.before_response,
        row.etcd_watchers_before,
        row.etcd_watchers_during,
        row.cpu_window.as_secs_f64(),
        row.cpu[0],
        row.cpu[1],
        row.cpu[2],
    );
}

/// For each watcher count measured both ways, the latency ratios cache/no cache.
fn print_fan_out_ratios(rows: &[FanOut]) {
    for cached in rows.iter().filter(|row| row.cache) {
        let Some(baseline) = rows.iter().find(|row| !row.cache && row.watchers == cached.watchers) else { continue };
        let (mut a, mut b) = (cached.latencies_ms.clone(), baseline.latencies_ms.clone());
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        println!(
            "  ratio cache/no cache at {} watchers: p50 {:.2}, p99 {:.2}",
            cached.watchers,
            quantile(&a, 0.50) / quantile(&b, 0.50),
            quantile(&a, 0.99) / quantile(&b, 0.99)
        );
    }
}

/// The `q` quantile (0..=1) of sorted values, nearest rank; 0 when empty.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

// ---------------------------------------------------------------------------------------------
// Part 2: big collections, then watchers that never read.

/// The duration of one operation against each apiserver.
struct Timed {
    name: &'static str,
    cache: Duration,
    no_cache: Duration,
    note: String,
}

async fn collections_part(flags: &Flags, checks: &mut Checks, goals: &mut Vec<Goal>) -> anyhow::Result<()> {
    println!("\n== 2. big collections: {} ConfigMaps of {} bytes", flags.objects, flags.object_bytes);
    let etcd = Etcd::start().await?;
    let cached = ApiServer::start(&etcd, &[]).await?;
    let cached_pid = apiserver_pid(&cached)?;
    let http = http_client()?;
    create_namespace(&http, &cached.url, BIG_NAMESPACE).await?;
    let started_rss = memory(cached_pid)?;
    println!("  apiserver (cache) at start: RSS {}", mib(started_rss.rss));

    let began = Instant::now();
    let failures = create_big_collection(&http, &cached.url, flags).await;
    let elapsed = began.elapsed();
    println!(
        "  created {} ConfigMaps in {:.1} s ({:.0}/s, {} clients), {} failed",
        flags.objects,
        elapsed.as_secs_f64(),
        flags.objects as f64 / elapsed.as_secs_f64(),
        flags.create_concurrency,
        failures.len()
    );
    for failure in failures.iter().take(5) {
        println!("    {failure}");
    }
    checks.check(failures.is_empty(), || format!("{} creates failed", failures.len()));
    let all_objects = flags.objects - failures.len();
    let sample = r#"rkube_apiserver_watch_cache_objects{resource="configmaps"}"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut held = metric(&http, &cached.url, sample).await?;
    while held < all_objects as f64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        held = metric(&http, &cached.url, sample).await?;
    }
    checks.check(held >= all_objects as f64, || format!("the cache holds {held} ConfigMaps, not {all_objects}"));
    let filled = memory(cached_pid)?;
    println!(
        "  apiserver (cache) with the cache filled ({held} objects): RSS {}, peak so far {}",
        mib(filled.rss),
        mib(filled.peak)
    );

    let uncached = ApiServer::start(&etcd, &["--watch-cache=false"]).await?;
    let uncached_pid = apiserver_pid(&uncached)?;
    let uncached_start = memory(uncached_pid)?;
    println!("  apiserver (no cache, same etcd) at start: RSS {}", mib(uncached_start.rss));

    // The namespace the consistent-read measurement and the writes "elsewhere" use.
    create_namespace(&http, &cached.url, SMALL_NAMESPACE).await?;
    let small = format!("{}{}", cached.url, CONFIG_MAPS.collection(SMALL_NAMESPACE));
    post(&http, &small, &config_map(SMALL_NAMESPACE, "one", json!({ "v": "0" }))).await?;

    let servers = [&cached, &uncached];
    let mut rows = Vec::new();
    for (name, through) in [("unpaged list (wire)", Through::Wire), ("unpaged list (reqwest)", Through::Reqwest)] {
        let mut times = [Duration::ZERO; 2];
        for (slot, server) in servers.into_iter().enumerate() {
            times[slot] = unpaged_list(&http, &server.url, through, all_objects, checks).await?;
        }
        rows.push(Timed { name, cache: times[0], no_cache: times[1], note: String::new() });
    }
    let quiet_or_busy = [("paged list (wire)", None), ("paged list (wire), busy", Some(20.0))];
    for (name, writes_per_second) in quiet_or_busy {
        let (mut times, mut notes) = ([Duration::ZERO; 2], Vec::new());
        for (slot, server) in servers.into_iter().enumerate() {
            let (took, note) = paged_list(&http, &server.url, all_objects, writes_per_second, checks).await?;
            times[slot] = took;
            notes.push(note);
        }
        rows.push(Timed { name, cache: times[0], no_cache: times[1], note: notes.join(" | ") });
    }
    let (mut times, mut notes) = ([Duration::ZERO; 2], Vec::new());
    for (slot, server) in servers.into_iter().enumerate() {
        let (took, note) = watch_from_scratch(&http, &server.url, all_objects, checks).await?;
        times[slot] = took;
        notes.push(note);
    }
    rows.push(Timed { name: "watch from scratch", cache: times[0], no_cache: times[1], note: notes.join(" | ") });
    let mut times = [Duration::ZERO; 2];
    for (slot, server) in servers.into_iter().enumerate() {
        times[slot] = informer_sync(&server.url, all_objects, checks).await?;
    }
    rows.push(Timed { name: "informer sync", cache: times[0], no_cache: times[1], note: String::new() });
    println!("  {:<24} {:>10} {:>10} {:>8}", "operation", "cache s", "no cache s", "ratio");
    for row in &rows {
        println!(
            "  {:<24} {:>10.3} {:>10.3} {:>8.2}  {}",
            row.name,
            row.cache.as_secs_f64(),
            row.no_cache.as_secs_f64(),
            row.cache.as_secs_f64() / row.no_cache.as_secs_f64(),
            row.note
        );
    }
    let after_reads = memory(cached_pid)?;
    let uncached_after = memory(uncached_pid)?;
    println!(
        "  apiserver (cache) after the reads: RSS {}, peak {}; apiserver (no cache): RSS {}, peak {}",
        mib(after_reads.rss),
        mib(after_reads.peak),
        mib(uncached_after.rss),
        mib(uncached_after.peak)
    );

    stuck_watchers(flags, &http, &cached, cached_pid, filled, checks, goals).await?;
    consistent_read_cost(&http, &cached, cached_pid, &uncached).await?;
    Ok(())
}

/// Creates the big collection with `--create-concurrency` clients; returns the failures.
async fn create_big_collection(http: &reqwest::Client, url: &str, flags: &Flags) -> Vec<String> {
    let collection = format!("{url}{}", CONFIG_MAPS.collection(BIG_NAMESPACE));
    let payload = "x".repeat(flags.object_bytes);
    futures::stream::iter(0..flags.objects)
        .map(|index| {
            let body = config_map(BIG_NAMESPACE, &format!("cm-{index:05}"), json!({ "payload": payload }));
            let collection = &collection;
            async move { post(http, collection, &body).await.err().map(|error| format!("{error:#}")) }
        })
        .buffer_unordered(flags.create_concurrency)
        .filter_map(futures::future::ready)
        .collect()
        .await
}

/// GET the whole collection in one response, read off a raw connection (the apiserver's time
/// to the last byte) or through reqwest (what a hyper-based client spends, its decoding of
/// the chunked body included); checks every object is in it once.
async fn unpaged_list(
    http: &reqwest::Client,
    url: &str,
    through: Through,
    expected: usize,
    checks: &mut Checks,
) -> anyhow::Result<Duration> {
    let path = CONFIG_MAPS.collection(BIG_NAMESPACE);
    let (status, body, took) = match through {
        Through::Wire => {
            let reply = raw_get(url, &path).await?;
            (reply.status, reply.body, reply.took)
        }
        Through::Reqwest => {
            let began = Instant::now();
            let reply = http.get(format!("{url}{path}")).timeout(REQUEST_TIMEOUT).send().await?;
            let status = reply.status().as_u16();
            let bytes = reply.bytes().await?;
            (status, bytes.to_vec(), began.elapsed())
        }
    };
    checks.check(status == 200, || format!("unpaged list at {url}: {status}"));
    let list: Value = serde_json::from_slice(&body).unwrap_or_default();
    let names = names_of(&list["items"]);
    checks.check(names.len() == expected && list["items"].as_array().map(Vec::len) == Some(expected), || {
        format!("unpaged list at {url}: {} distinct of {expected}", names.len())
    });
    Ok(took)
}

/// How a list is read.
#[derive(Clone, Copy)]
enum Through {
    /// A raw TCP connection: the time is the apiserver's, to the last byte.
    Wire,
    /// reqwest, as rkube's own client reads it.
    Reqwest,
}

/// GET the collection in pages of 500 to the end, each page off a raw connection; checks
/// every object comes once. The time is spent in requests, the parsing of the pages excluded.
/// With `writes_per_second`, a task meanwhile updates a ConfigMap in another namespace that
/// often, as a busy cluster would.
async fn paged_list(
    http: &reqwest::Client,
    url: &str,
    expected: usize,
    writes_per_second: Option<f64>,
    checks: &mut Checks,
) -> anyhow::Result<(Duration, String)> {
    let path = CONFIG_MAPS.collection(BIG_NAMESPACE);
    let lists_sample = r#"rkube_apiserver_watch_cache_lists_total{resource="configmaps"}"#;
    let cache_lists_before = metric(http, url, lists_sample).await?;
    let stop = CancellationToken::new();
    let writer = writes_per_second.map(|rate| {
        let (http, stop) = (http.clone(), stop.clone());
        let target = format!("{url}{}/one", CONFIG_MAPS.collection(SMALL_NAMESPACE));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            let mut written = 0_u32;
            // Bounded by the list's own bound (at most `expected / PAGE + 10` pages).
            while !stop.is_cancelled() && written < 100_000 {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                if merge_patch(&http, &target, &json!({ "data": { "w": written.to_string() } })).await.is_ok() {
                    written += 1;
                }
            }
            written
        })
    });
    let mut names = HashSet::new();
    let (mut items, mut pages, mut took) = (0, 0, Duration::ZERO);
    let mut token: Option<String> = None;
    loop {
        pages += 1;
        if pages > expected / PAGE + 10 {
            checks.check(false, || format!("paged list at {url}: more than {} pages", pages - 1));
            break;
        }
        let page_path = match &token {
            Some(token) => format!("{path}?limit={PAGE}&continue={}", escape_query(token)),
            None => format!("{path}?limit={PAGE}"),
        };
        let reply = raw_get(url, &page_path).await?;
        took += reply.took;
        if reply.status != 200 {
            let (status, text) = (reply.status, String::from_utf8_lossy(&reply.body).into_owned());
            checks.check(false, || format!("paged list at {url}, page {pages}: {status} {text}"));
            break;
        }
        let page: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        items += page["items"].as_array().map_or(0, Vec::len);
        names.extend(names_of(&page["items"]));
        token = page["metadata"]["continue"].as_str().filter(|token| !token.is_empty()).map(String::from);
        if token.is_none() {
            break;
        }
    }
    stop.cancel();
    let written = match writer {
        Some(writer) => Some(writer.await.unwrap_or(0)),
        None => None,
    };
    checks.check(items == expected && names.len() == expected, || {
        format!("paged list at {url}: {items} items, {} distinct, of {expected}", names.len())
    });
    let from_cache = metric(http, url, lists_sample).await? - cache_lists_before;
    let mut note = format!("{pages} pages");
    if from_cache > 0.0 {
        note += &format!(", {from_cache} from the cache");
    }
    if let Some(written) = written {
        note += &format!(", {written} ConfigMap writes in another namespace meanwhile");
    }
    Ok((took, note))
}

/// A watch without a resourceVersion, read off a raw connection: every object `ADDED` (timed
/// until the last one), then one live update, which must arrive as `MODIFIED` at its
/// resourceVersion.
async fn watch_from_scratch(
    http: &reqwest::Client,
    url: &str,
    expected: usize,
    checks: &mut Checks,
) -> anyhow::Result<(Duration, String)> {
    let path = CONFIG_MAPS.collection(BIG_NAMESPACE);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let address = url.trim_start_matches("http://");
    let began = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!("GET {path}?watch=true HTTP/1.1\r\nHost: {address}\r\nAccept: application/json\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut body = Vec::new();
    let mut dechunker = Dechunker::default();
    let mut buffer = vec![0; 256 * 1024];
    let (mut lines, mut headers_in, mut initial_in, mut probe, mut live) = (0, None, None, None, None);
    while live.is_none() {
        let read = match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Err(_) => {
                checks.check(false, || format!("watch from scratch at {url}: ended or timed out after {lines} events"));
                break;
            }
            Ok(Ok(read)) => read,
            Ok(Err(error)) => {
                checks.check(false, || format!("watch from scratch at {url} broke after {lines} events: {error}"));
                break;
            }
        };
        let mut input = &buffer[..read];
        if headers_in.is_none() {
            head.extend_from_slice(input);
            let Some(end) = find(&head, b"\r\n\r\n") else { continue };
            headers_in = Some(began.elapsed());
            let status = String::from_utf8_lossy(&head[..end]).into_owned();
            if !status.starts_with("HTTP/1.1 200") {
                checks.check(false, || format!("watch from scratch at {url}: {status}"));
                return Ok((began.elapsed(), String::new()));
            }
            let rest = head.split_off(end + 4);
            let before = body.len();
            dechunker.feed(&rest, &mut body)?;
            lines += body[before..].iter().filter(|&&byte| byte == b'\n').count();
            input = &[];
        }
        let before = body.len();
        dechunker.feed(input, &mut body)?;
        lines += body[before..].iter().filter(|&&byte| byte == b'\n').count();
        if lines >= expected && initial_in.is_none() {
            initial_in = Some(began.elapsed());
            // Now a live change: it must come after every initial object.
            let target = format!("{url}{path}/cm-00000");
            let object = merge_patch(http, &target, &json!({ "data": { "probe": url } })).await?;
            probe = Some(revision_of(&object));
        }
        if lines > expected {
            live = Some(began.elapsed());
        }
    }
    let mut events = body.split(|&byte| byte == b'\n').filter(|line| !line.is_empty());
    let mut names = HashSet::new();
    let mut wrong = 0;
    for line in events.by_ref().take(expected) {
        let event: Value = serde_json::from_slice(line).unwrap_or_default();
        if event["type"] != "ADDED" {
            wrong += 1;
        }
        names.insert(event["object"]["metadata"]["name"].as_str().unwrap_or_default().to_string());
    }
    checks.check(names.len() == expected && wrong == 0, || {
        format!(
            "watch from scratch at {url}: {} distinct initial objects of {expected}, {wrong} not ADDED",
            names.len()
        )
    });
    if let Some(line) = events.next() {
        let event: Value = serde_json::from_slice(line).unwrap_or_default();
        checks.check(event["type"] == "MODIFIED" && Some(revision_of(&event["object"])) == probe, || {
            format!(
                "watch from scratch at {url}: the live event is {} at {}, not MODIFIED at {probe:?}",
                event["type"],
                revision_of(&event["object"])
            )
        });
    }
    let initial_in = initial_in.unwrap_or_else(|| began.elapsed());
    let note = format!(
        "headers after {:.3} s, live event {:.0} ms after the update",
        headers_in.unwrap_or_default().as_secs_f64(),
        live.map_or(0.0, |live| (live - initial_in).as_secs_f64() * 1000.0)
    );
    Ok((initial_in, note))
}

/// An informer (`SharedInformerFactory` over `rkube_client`) of the big namespace: the time to
/// its first sync; checks its store holds every object.
async fn informer_sync(url: &str, expected: usize, checks: &mut Checks) -> anyhow::Result<Duration> {
    let mut config = rkube_client::Config::new(url.parse()?);
    config.qps = 0.0; // unlimited: the client's own rate limit is not what is measured
    let client = rkube_client::Client::new(config)?;
    let registry = prometheus::Registry::new();
    let factory = SharedInformerFactory::new(client, &registry)?;
    let informer = factory.informer::<ConfigMap>(Some(BIG_NAMESPACE));
    let shutdown = CancellationToken::new();
    let began = Instant::now();
    factory.start(&shutdown);
    let synced = tokio::time::timeout(Duration::from_secs(120), factory.wait_for_cache_sync()).await;
    let took = began.elapsed();
    let held = informer.store().len();
    shutdown.cancel();
    checks.check(synced == Ok(true) && held == expected, || {
        format!("informer at {url}: synced {synced:?} with {held} of {expected} objects")
    });
    Ok(took)
}

/// What a consistent list of a one-object namespace costs on the cached apiserver: at
/// `resourceVersion=0` (served as the cache is), right after a ConfigMap write (the cache is
/// current by its own last change), and right after a write to another resource (the cache must
/// compare itself with a keys-only list of every ConfigMap in etcd); and on the apiserver
/// without a cache, the baseline.
async fn consistent_read_cost(
    http: &reqwest::Client,
    cached: &ApiServer,
    cached_pid: u32,
    uncached: &ApiServer,
) -> anyhow::Result<()> {
    println!("\n== 4. what a consistent read costs with the big collection in the cache");
    let collection = CONFIG_MAPS.collection(SMALL_NAMESPACE);
    let namespace_url = format!("{}{}/{SMALL_NAMESPACE}", cached.url, NAMESPACES.collection(""));
    let object_url = format!("{}{collection}/one", cached.url);
    let mut any = Vec::new();
    let mut after_own = Vec::new();
    let mut after_other = Vec::new();
    let mut baseline = Vec::new();
    for index in 0..READ_SAMPLES {
        any.push(timed_get(http, &format!("{}{collection}?resourceVersion=0", cached.url)).await?);
        merge_patch(http, &object_url, &json!({ "data": { "v": index.to_string() } })).await?;
        after_own.push(timed_get(http, &format!("{}{collection}", cached.url)).await?);
        merge_patch(http, &namespace_url, &json!({ "metadata": { "labels": { "sample": index.to_string() } } }))
            .await?;
        after_other.push(timed_get(http, &format!("{}{collection}", cached.url)).await?);
        merge_patch(http, &namespace_url, &json!({ "metadata": { "labels": { "sample": "x" } } })).await?;
        baseline.push(timed_get(http, &format!("{}{collection}", uncached.url)).await?);
    }
    let median = |samples: &mut Vec<f64>| {
        samples.sort_by(f64::total_cmp);
        quantile(samples, 0.5)
    };
    let (any, own, other, base) =
        (median(&mut any), median(&mut after_own), median(&mut after_other), median(&mut baseline));
    println!("  a list of a 1-object namespace, median of {READ_SAMPLES}:");
    println!("    cache, resourceVersion=0:                         {any:>8.2} ms");
    println!("    cache, consistent, after a ConfigMap write:       {own:>8.2} ms");
    println!("    cache, consistent, after a write to a Namespace:  {other:>8.2} ms");
    println!("    no cache, consistent (etcd):                      {base:>8.2} ms");
    println!("    ratio after-another-resource / no cache: {:.1}", other / base);
    // A watch at resourceVersion=0 (what informers and kubectl send) asks for no freshness.
    let watch_path = format!("{collection}?watch=true&resourceVersion=0");
    merge_patch(http, &object_url, &json!({ "data": { "v": "watch" } })).await?;
    let own = watch_headers_in(&cached.url, &watch_path).await?;
    merge_patch(http, &namespace_url, &json!({ "metadata": { "labels": { "sample": "watch" } } })).await?;
    let other = watch_headers_in(&cached.url, &watch_path).await?;
    println!(
        "    a watch at resourceVersion=0, headers after: {own:.2} ms after a ConfigMap write, {other:.2} ms after a write to a Namespace"
    );
    // Many at once, as after a write many clients list: does each one compare on its own?
    let list_url = format!("{}{collection}", cached.url);
    let together = |url: String| async move {
        let began = Instant::now();
        let lists = (0..CONCURRENT_READS).map(|_| timed_get(http, &url));
        futures::future::try_join_all(lists).await.map(|_| began.elapsed().as_secs_f64() * 1000.0)
    };
    merge_patch(http, &object_url, &json!({ "data": { "v": "together" } })).await?;
    let own = together(list_url.clone()).await?;
    let memory_before = memory(cached_pid)?;
    merge_patch(http, &namespace_url, &json!({ "metadata": { "labels": { "sample": "together" } } })).await?;
    let other = together(list_url).await?;
    let memory_after = memory(cached_pid)?;
    println!(
        "    {CONCURRENT_READS} at once, cache: {own:.1} ms after a ConfigMap write, {other:.1} ms after a write to a Namespace"
    );
    println!(
        "    apiserver RSS around the {CONCURRENT_READS} after a Namespace write: {} -> {} (peak {} -> {})",
        mib(memory_before.rss),
        mib(memory_after.rss),
        mib(memory_before.peak),
        mib(memory_after.peak)
    );
    Ok(())
}

/// Part 3: `--stuck-watchers` raw connections that send a watch of a namespace holding one big
/// ConfigMap and never read; the apiserver's memory with them open and after they close.
async fn stuck_watchers(
    flags: &Flags,
    http: &reqwest::Client,
    apiserver: &ApiServer,
    pid: u32,
    filled: Memory,
    checks: &mut Checks,
    goals: &mut Vec<Goal>,
) -> anyhow::Result<()> {
    println!(
        "\n== 3. {} watchers that never read, of one ConfigMap of {} KiB",
        flags.stuck_watchers,
        flags.stuck_object_bytes / 1024
    );
    create_namespace(http, &apiserver.url, STUCK_NAMESPACE).await?;
    let collection = CONFIG_MAPS.collection(STUCK_NAMESPACE);
    let payload = "x".repeat(flags.stuck_object_bytes);
    post(
        http,
        &format!("{}{collection}", apiserver.url),
        &config_map(STUCK_NAMESPACE, "big", json!({ "payload": payload })),
    )
    .await?;
    // The cache has the object once a consistent list shows it.
    let (status, _) = get_json(http, &format!("{}{collection}", apiserver.url)).await?;
    checks.check(status.is_success(), || format!("list of {STUCK_NAMESPACE}: {status}"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = memory(pid)?;
    let kernel_before = tcp_buffer_memory()?;
    let open_sample = r#"rkube_apiserver_open_watches{resource="configmaps"}"#;
    let open_before = metric(http, &apiserver.url, open_sample).await?;
    println!("  before: RSS {} (filled cache: {})", mib(before.rss), mib(filled.rss));

    let address = apiserver.url.trim_start_matches("http://").to_string();
    let request = format!("GET {collection}?watch=true&resourceVersion=0 HTTP/1.1\r\nHost: {address}\r\n\r\n");
    let began = Instant::now();
    let mut connections = Vec::with_capacity(flags.stuck_watchers);
    for _ in 0..flags.stuck_watchers {
        let mut stream = tokio::net::TcpStream::connect(&address).await.context("connecting a stuck watcher")?;
        stream.write_all(request.as_bytes()).await.context("sending a stuck watcher's request")?;
        connections.push(stream);
    }
    let sent_in = began.elapsed();
    let wanted = open_before + flags.stuck_watchers as f64;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut open = metric(http, &apiserver.url, open_sample).await?;
    while open < wanted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        open = metric(http, &apiserver.url, open_sample).await?;
    }
    let started_in = began.elapsed();
    checks.check(open >= wanted, || {
        format!("{} of {} watches that never read started", open - open_before, flags.stuck_watchers)
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let with = memory(pid)?;
    let kernel_with = tcp_buffer_memory()?;
    let terminated =
        metric(http, &apiserver.url, r#"rkube_apiserver_watch_cache_terminated_watchers_total{resource="configmaps"}"#)
            .await?;
    println!(
        "  {} open after {:.1} s (requests sent in {:.1} s): RSS {} (+{} over before, {:.1} KiB a watcher), peak {}; \
         {terminated} watchers disconnected as slow",
        open - open_before,
        started_in.as_secs_f64(),
        sent_in.as_secs_f64(),
        mib(with.rss),
        mib(with.rss.saturating_sub(before.rss)),
        with.rss.saturating_sub(before.rss) as f64 / 1024.0 / flags.stuck_watchers as f64,
        mib(with.peak)
    );
    println!(
        "  kernel TCP buffers (all sockets, no process's RSS): {} before, {} with them open",
        mib(kernel_before),
        mib(kernel_with)
    );
    let ceiling = filled.rss + 100 * 1024 * 1024;
    goals.push(Goal {
        name: format!("RSS with {} watchers that never read < filled cache + 100 MiB", flags.stuck_watchers),
        met: with.rss < ceiling,
        detail: format!("{} vs {} + 100 MiB = {}", mib(with.rss), mib(filled.rss), mib(ceiling)),
    });

    drop(connections);
    let closed = Instant::now();
    let deadline = closed + Duration::from_secs(60);
    let mut open = metric(http, &apiserver.url, open_sample).await?;
    while open > open_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        open = metric(http, &apiserver.url, open_sample).await?;
    }
    let gone_in = closed.elapsed();
    checks.check(open <= open_before, || {
        format!("{} watches still open 60 s after their clients closed", open - open_before)
    });
    let target = before.rss + before.rss / 5;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = memory(pid)?;
    while after.rss > target && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        after = memory(pid)?;
    }
    println!(
        "  closed: watches gone after {:.1} s, RSS {} after {:.1} s ({:+.1}% against before)",
        gone_in.as_secs_f64(),
        mib(after.rss),
        closed.elapsed().as_secs_f64(),
        (after.rss as f64 / before.rss as f64 - 1.0) * 100.0
    );
    goals.push(Goal {
        name: "RSS after they close within 20% of before".into(),
        met: after.rss <= target,
        detail: format!("{} vs {} before (limit {})", mib(after.rss), mib(before.rss), mib(target)),
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HTTP, etcd and /proc.

fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build()?)
}

/// POST `body` to `collection`; anything but 201 is an error.
async fn post(http: &reqwest::Client, collection: &str, body: &Value) -> anyhow::Result<Value> {
    let reply = http.post(collection).json(body).timeout(REQUEST_TIMEOUT).send().await?;
    let status = reply.status();
    let text = reply.text().await?;
    if status != reqwest::StatusCode::CREATED {
        bail!("POST {collection}: {status} {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

async fn merge_patch(http: &reqwest::Client, url: &str, patch: &Value) -> anyhow::Result<Value> {
    let reply = http
        .patch(url)
        .header("content-type", "application/merge-patch+json")
        .body(patch.to_string())
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await?;
    let status = reply.status();
    let text = reply.text().await?;
    if !status.is_success() {
        bail!("PATCH {url}: {status} {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

async fn get_json(http: &reqwest::Client, url: &str) -> anyhow::Result<(reqwest::StatusCode, Value)> {
    let reply = http.get(url).timeout(REQUEST_TIMEOUT).send().await?;
    let status = reply.status();
    let bytes = reply.bytes().await?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or_default()))
}

/// GET `url`, insisting on success; the milliseconds until the whole body arrived.
async fn timed_get(http: &reqwest::Client, url: &str) -> anyhow::Result<f64> {
    let began = Instant::now();
    let reply = http.get(url).timeout(REQUEST_TIMEOUT).send().await?;
    let status = reply.status();
    reply.bytes().await?;
    let took = began.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(status.is_success(), "GET {url}: {status}");
    Ok(took)
}

async fn create_namespace(http: &reqwest::Client, url: &str, name: &str) -> anyhow::Result<()> {
    post(http, &format!("{url}{}", NAMESPACES.collection("")), &namespace(name)).await.map(drop)
}

/// The resourceVersion of a (consistent) list of `collection`.
async fn list_revision(http: &reqwest::Client, collection: &str) -> anyhow::Result<i64> {
    let (status, list) = get_json(http, collection).await?;
    anyhow::ensure!(status.is_success(), "GET {collection}: {status} {list}");
    Ok(revision_of(&list))
}

/// `metadata.resourceVersion` of an object or list, as a number; 0 when absent.
fn revision_of(object: &Value) -> i64 {
    object["metadata"]["resourceVersion"].as_str().and_then(|rv| rv.parse().ok()).unwrap_or(0)
}

fn names_of(items: &Value) -> HashSet<String> {
    items
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["metadata"]["name"].as_str().map(String::from))
        .collect()
}

/// One sample of the apiserver's `/metrics` (name with labels, as the text format writes it).
async fn metric(http: &reqwest::Client, url: &str, sample: &str) -> anyhow::Result<f64> {
    let text = http.get(format!("{url}/metrics")).timeout(REQUEST_TIMEOUT).send().await?.text().await?;
    Ok(sample_value(&text, sample))
}

/// How many resources the apiserver keeps a watch cache of (one series each).
async fn cached_resource_count(http: &reqwest::Client, url: &str) -> anyhow::Result<usize> {
    let text = http.get(format!("{url}/metrics")).timeout(REQUEST_TIMEOUT).send().await?.text().await?;
    Ok(text.lines().filter(|line| line.starts_with("rkube_apiserver_watch_cache_relists_total{")).count())
}

/// etcd's `etcd_debugging_mvcc_watcher_total`: the watchers etcd serves.
async fn etcd_watchers(http: &reqwest::Client, etcd_url: &str) -> anyhow::Result<f64> {
    let text = http.get(format!("{etcd_url}/metrics")).timeout(REQUEST_TIMEOUT).send().await?.text().await?;
    text.lines()
        .find_map(|line| line.strip_prefix("etcd_debugging_mvcc_watcher_total ").and_then(|v| v.trim().parse().ok()))
        .context("etcd_debugging_mvcc_watcher_total not in etcd's metrics")
}

/// A response read off a raw connection.
struct RawReply {
    status: u16,
    /// The body, de-chunked.
    body: Vec<u8>,
    /// From connecting to the last byte.
    took: Duration,
}

/// GET `path` from the apiserver at `url` over a fresh TCP connection (`Connection: close`),
/// reading the response to its end without an HTTP library: the time is the apiserver's, not a
/// client's decoding.
async fn raw_get(url: &str, path: &str) -> anyhow::Result<RawReply> {
    let address = url.trim_start_matches("http://");
    let exchange = async {
        let began = Instant::now();
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        anyhow::Ok((raw, began.elapsed()))
    };
    let (raw, took) =
        tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.with_context(|| format!("GET {path} timed out"))??;
    let end = find(&raw, b"\r\n\r\n").with_context(|| format!("GET {path}: no end of the response head"))?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let mut body = Vec::with_capacity(raw.len() - end);
    if head.contains("transfer-encoding: chunked") {
        let mut dechunker = Dechunker::default();
        dechunker.feed(&raw[end + 4..], &mut body)?;
        anyhow::ensure!(dechunker.done(), "GET {path}: the chunked body ends early");
    } else {
        body.extend_from_slice(&raw[end + 4..]);
    }
    Ok(RawReply { status, body, took })
}

/// Opens a watch of `path` over a raw connection: the milliseconds until its response head
/// arrived. The connection is closed then.
async fn watch_headers_in(url: &str, path: &str) -> anyhow::Result<f64> {
    let address = url.trim_start_matches("http://");
    let exchange = async {
        let began = Instant::now();
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: application/json\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::new();
        let mut buffer = vec![0; 64 * 1024];
        while find(&head, b"\r\n\r\n").is_none() {
            let read = stream.read(&mut buffer).await?;
            anyhow::ensure!(read > 0, "GET {path}: closed before the response head");
            head.extend_from_slice(&buffer[..read]);
        }
        anyhow::ensure!(
            head.starts_with(b"HTTP/1.1 200"),
            "GET {path}: {}",
            String::from_utf8_lossy(&head[..40.min(head.len())])
        );
        anyhow::Ok(began.elapsed().as_secs_f64() * 1000.0)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.with_context(|| format!("GET {path} timed out"))?
}

/// The index of the first `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// Undoes HTTP/1.1 chunked transfer encoding, fed as the bytes arrive.
#[derive(Default)]
struct Dechunker {
    state: ChunkState,
    size_line: Vec<u8>,
    remaining: usize,
}

#[derive(Default, PartialEq)]
enum ChunkState {
    /// Reading a chunk-size line.
    #[default]
    Size,
    /// Copying the chunk's data.
    Data,
    /// Skipping the CRLF after the data.
    DataEnd,
    /// The last (empty) chunk came; trailers are ignored.
    Done,
}

impl Dechunker {
    /// Appends the data in `input` to `out`.
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> anyhow::Result<()> {
        while !input.is_empty() {
            match self.state {
                ChunkState::Size => {
                    let Some(end) = input.iter().position(|&byte| byte == b'\n') else {
                        self.size_line.extend_from_slice(input);
                        return Ok(());
                    };
                    self.size_line.extend_from_slice(&input[..end]);
                    input = &input[end + 1..];
                    let line = String::from_utf8_lossy(&self.size_line).into_owned();
                    let hex = line.trim().split(';').next().unwrap_or_default();
                    let size = usize::from_str_radix(hex, 16).with_context(|| format!("chunk size {line:?}"))?;
                    self.size_line.clear();
                    (self.state, self.remaining) = match size {
                        0 => (ChunkState::Done, 0),
                        size => (ChunkState::Data, size),
                    };
                }
                ChunkState::Data => {
                    let take = self.remaining.min(input.len());
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    self.remaining -= take;
                    if self.remaining == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                }
                ChunkState::DataEnd => {
                    let Some(end) = input.iter().position(|&byte| byte == b'\n') else { return Ok(()) };
                    input = &input[end + 1..];
                    self.state = ChunkState::Size;
                }
                ChunkState::Done => return Ok(()),
            }
        }
        Ok(())
    }

    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// The kernel's TCP buffer memory in bytes (`/proc/net/sockstat`, `TCP: ... mem <pages>`):
/// what sockets hold that no process's RSS shows.
fn tcp_buffer_memory() -> anyhow::Result<u64> {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").context("/proc/net/sockstat")?;
    let pages = sockstat
        .lines()
        .find_map(|line| line.strip_prefix("TCP:"))
        .and_then(|fields| fields.split_whitespace().skip_while(|field| *field != "mem").nth(1))
        .and_then(|pages| pages.parse::<u64>().ok())
        .context("no TCP mem in /proc/net/sockstat")?;
    Ok(pages * 4096)
}

/// A process's resident memory now and at its peak, in bytes.
#[derive(Clone, Copy)]
struct Memory {
    rss: u64,
    peak: u64,
}

/// VmRSS and VmHWM of `pid`.
fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok(Memory { rss: field("VmRSS:")?, peak: field("VmHWM:")? })
}

/// The pid of the `program` child of this process whose command line has `flag` followed by
/// `value` (the harness does not hand out pids): the apiserver by `--port`, etcd by
/// `--listen-client-urls`.
fn child_pid(program: &str, flag: &str, value: &str) -> anyhow::Result<u32> {
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // `pid (comm) state ppid ...`; comm may hold spaces, so count from the last ')'.
        let parent = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if parent.and_then(|ppid| ppid.parse::<u32>().ok()) != Some(me) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|&byte| byte == 0).collect();
        let is_program = args.first().is_some_and(|first| first.ends_with(program.as_bytes()));
        if is_program && args.windows(2).any(|pair| pair[0] == flag.as_bytes() && pair[1] == value.as_bytes()) {
            return Ok(pid);
        }
    }
    bail!("no child {program} with {flag} {value}")
}

fn apiserver_pid(apiserver: &ApiServer) -> anyhow::Result<u32> {
    let port = apiserver.url.rsplit(':').next().context("the apiserver URL has no port")?;
    child_pid("rkube-apiserver", "--port", port)
}

fn etcd_pid(etcd: &Etcd) -> anyhow::Result<u32> {
    child_pid("etcd", "--listen-client-urls", &etcd.client_url)
}

/// CPU time (user + system) `pid` has used, in seconds; `None` for this process.
fn cpu_seconds(pid: Option<u32>) -> anyhow::Result<f64> {
    let path = pid.map_or_else(|| "/proc/self/stat".to_string(), |pid| format!("/proc/{pid}/stat"));
    let stat = std::fs::read_to_string(&path).with_context(|| path.clone())?;
    // After the `(comm)`: state is the first field, utime the 12th and stime the 13th.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<f64>().ok());
    let total = ticks(11)
        .zip(ticks(12))
        .map(|(user, system)| user + system)
        .with_context(|| format!("{path}: no CPU times"))?;
    // USER_HZ: 100 on every Linux this runs on (getconf CLK_TCK); without libc we cannot ask.
    Ok(total / 100.0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
