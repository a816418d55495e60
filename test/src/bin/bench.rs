//! `rkube-bench`: how much the apiserver costs over writing straight to etcd.
//!
//! Starts its own etcd and `rkube-apiserver` (the binary of this build's profile; `make bench`
//! builds release), then, in one run:
//! 1. creates `--count` pods through the apiserver with `--concurrency` clients;
//! 2. puts `--count` values of the same byte size as a stored pod straight into etcd (gRPC,
//!    `etcd-client`) with the same concurrency.
//!
//! Prints throughput, p50 and p99 latency of both and the apiserver/etcd throughput ratio.
//! Exits non-zero if any request fails. Numbers depend on the machine and on where etcd keeps
//! its data (see `RKUBE_TEST_TMPDIR`); compare runs on the same machine only.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rkube_tests::resources::{PODS, pod};
use rkube_tests::{ApiServer, Etcd};
use serde_json::json;

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(name = "rkube-bench", about = "Pod creates through rkube-apiserver versus raw etcd puts")]
struct Flags {
    /// Number of pods to create (and of raw etcd puts).
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// Number of concurrent clients.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Namespace to create the pods in.
    #[arg(long, default_value = "default")]
    namespace: String,
}

/// What one phase measured.
struct Measurement {
    name: &'static str,
    operations: usize,
    failures: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Measurement {
    fn throughput(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of the latencies, nearest-rank.
    fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let flags = Flags::parse();
    match run(&flags).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("rkube-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs both phases and prints the table; `Ok(false)` when any request failed.
async fn run(flags: &Flags) -> anyhow::Result<bool> {
    anyhow::ensure!(flags.count > 0 && flags.concurrency > 0, "--count and --concurrency must be positive");
    let etcd = Etcd::start().await?;
    let apiserver = ApiServer::start(&etcd, &[]).await?;
    eprintln!(
        "rkube-bench: etcd {} apiserver {} ({} pods, {} clients)",
        etcd.client_url, apiserver.url, flags.count, flags.concurrency
    );

    let (through_apiserver, stored_size) = create_pods(&apiserver.url, flags).await?;
    let direct = put_values(&etcd.client_url, flags, stored_size).await?;

    print_table(&[&through_apiserver, &direct], flags.concurrency, stored_size);
    let failures = through_apiserver.failures + direct.failures;
    if failures > 0 {
        eprintln!("rkube-bench: {failures} requests failed");
        eprintln!("apiserver log tail:\n{}", apiserver.log_tail(20));
    }
    Ok(failures == 0)
}

/// Phase 1: POSTs `count` pods with `concurrency` workers. Also returns the byte size of one
/// stored pod (the created object as the apiserver returned it).
async fn create_pods(url: &str, flags: &Flags) -> anyhow::Result<(Measurement, usize)> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(flags.concurrency).build()?;
    let collection = format!("{url}{}", PODS.collection(&flags.namespace));
    let next = Arc::new(AtomicUsize::new(0));
    let stored_size = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..flags.concurrency {
        let (client, collection, next, stored_size) =
            (client.clone(), collection.clone(), next.clone(), stored_size.clone());
        let (count, namespace) = (flags.count, flags.namespace.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    break;
                }
                let body = pod(&namespace, &format!("bench-{index}"), json!({ "app": "bench" }));
                let begun = Instant::now();
                let result = client.post(&collection).json(&body).send().await;
                let outcome = match result {
                    Ok(response) if response.status() == reqwest::StatusCode::CREATED => response.bytes().await.ok(),
                    Ok(response) => {
                        let status = response.status();
                        let text = response.text().await.unwrap_or_default();
                        eprintln!("create bench-{index}: {status} {text}");
                        None
                    }
                    Err(error) => {
                        eprintln!("create bench-{index}: {error}");
                        None
                    }
                };
                latencies.push(begun.elapsed());
                match outcome {
                    Some(bytes) => {
                        stored_size.store(bytes.len(), Ordering::Relaxed);
                    }
                    None => failures += 1,
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for worker in workers {
        let (worker_latencies, worker_failures) = worker.await.context("apiserver worker panicked")?;
        latencies.extend(worker_latencies);
        failures += worker_failures;
    }
    let elapsed = started.elapsed();
    let size = stored_size.load(Ordering::Relaxed).max(1);
    Ok((Measurement { name: "apiserver pod create", operations: flags.count, failures, elapsed, latencies }, size))
}

/// Phase 2: puts `count` values of `size` bytes straight into etcd with `concurrency` workers.
async fn put_values(etcd_url: &str, flags: &Flags, size: usize) -> anyhow::Result<Measurement> {
    let client = etcd_client::Client::connect([etcd_url], None).await.context("connecting to etcd")?;
    let value = vec![b'x'; size];
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..flags.concurrency {
        let (mut kv, next, value, count) = (client.kv_client(), next.clone(), value.clone(), flags.count);
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    break;
                }
                let begun = Instant::now();
                let result = kv.put(format!("/bench/raw/{index}"), value.clone(), None).await;
                latencies.push(begun.elapsed());
                if let Err(error) = result {
                    eprintln!("etcd put {index}: {error}");
                    failures += 1;
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for worker in workers {
        let (worker_latencies, worker_failures) = worker.await.context("etcd worker panicked")?;
        latencies.extend(worker_latencies);
        failures += worker_failures;
    }
    let elapsed = started.elapsed();
    Ok(Measurement { name: "etcd put (same size)", operations: flags.count, failures, elapsed, latencies })
}

fn print_table(rows: &[&Measurement], concurrency: usize, size: usize) {
    println!(
        "{:<22} {:>7} {:>8} {:>6} {:>10} {:>9} {:>9}",
        "target", "ops", "failed", "conc", "ops/s", "p50 ms", "p99 ms"
    );
    for row in rows {
        println!(
            "{:<22} {:>7} {:>8} {:>6} {:>10.1} {:>9.2} {:>9.2}",
            row.name,
            row.operations,
            row.failures,
            concurrency,
            row.throughput(),
            row.quantile(0.50).as_secs_f64() * 1000.0,
            row.quantile(0.99).as_secs_f64() * 1000.0,
        );
    }
    if let [apiserver, etcd] = rows {
        println!("value size: {size} bytes");
        println!("throughput ratio apiserver/etcd: {:.3}", apiserver.throughput() / etcd.throughput());
    }
}
