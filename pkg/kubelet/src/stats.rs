//! Resource usage of the node and of its running containers: the kubelet's summary API
//! (`GET /stats/summary`), which the apiserver turns into `metrics.k8s.io` for `kubectl top`.
//!
//! Usage is read from the kernel at each request: the node's from `/proc/stat` and
//! `/proc/meminfo`, each container's from its cgroup (v2: `cpu.stat` `usage_usec`,
//! `memory.current`, `memory.stat` `inactive_file`; v1: `cpuacct.usage`,
//! `memory.usage_in_bytes`, `memory.stat` `total_inactive_file`), found through
//! [`crate::runtime::Runtime::running_cgroups`]. CPU is a counter, so its rate
//! (`usageNanoCores`) needs two readings: each request reads twice, [`WINDOW`] apart, so every
//! rate is the average over the same, known window (what `metrics.k8s.io` reports as
//! `window`), at the price of that second of latency; nothing is sampled between requests.
//! Memory is the working set (usage minus inactive file pages), what Kubernetes evicts on and
//! `kubectl top` shows. A pod's figures are the sums of its containers'.
//!
//! Runtimes without processes (the fake one) have no cgroups: their pods are not listed, as
//! a real kubelet lists no pod it has no stats for.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::logs::RuntimeSlot;
use crate::runtime::ContainerCgroup;

/// The span every CPU rate is measured over.
pub const WINDOW: Duration = Duration::from_secs(1);

/// Resource use at one moment: CPU time so far, memory now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used since the start, in nanoseconds (all cores together).
    pub cpu_nanoseconds: u64,
    /// Memory in use, page cache included.
    pub memory_bytes: u64,
    /// Memory in use minus inactive file pages: what cannot be reclaimed easily.
    pub working_set_bytes: u64,
}

/// One reading of the node and its containers.
#[derive(Debug)]
struct Reading {
    at: Instant,
    time: Timestamp,
    node: Usage,
    /// By (pod uid, container name).
    containers: HashMap<(String, String), Usage>,
}

struct StatsState {
    node_name: String,
    root_dir: PathBuf,
    runtime: RuntimeSlot,
}

/// The router serving `/stats/summary` for node `node_name`; pods are named from their log
/// directories under `root_dir` (as for logs), containers found through `runtime`.
pub fn router(node_name: String, root_dir: PathBuf, runtime: RuntimeSlot) -> Router {
    let state = StatsState { node_name, root_dir, runtime };
    Router::new().route("/stats/summary", get(summary)).with_state(Arc::new(state))
}

async fn summary(State(state): State<Arc<StatsState>>) -> Response {
    let cgroups = match state.runtime.get() {
        Some(runtime) => match runtime.running_cgroups().await {
            Ok(cgroups) => cgroups,
            Err(error) => {
                let message = format!("cannot list the running containers: {error}");
                return (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
            }
        },
        None => return (StatusCode::SERVICE_UNAVAILABLE, "the container runtime is not connected yet").into_response(),
    };
    let earlier = read(&cgroups);
    tokio::time::sleep(WINDOW).await;
    let now = read(&cgroups);
    let pods = pod_names(&state.root_dir);
    axum::Json(document(&state.node_name, &cgroups, &pods, &earlier, &now)).into_response()
}

/// Reads the node's and every container's usage now.
fn read(cgroups: &[ContainerCgroup]) -> Reading {
    let containers = cgroups
        .iter()
        .filter_map(|c| Some(((c.uid.clone(), c.name.clone()), cgroup_usage(Path::new("/sys/fs/cgroup"), &c.cgroup)?)))
        .collect();
    Reading { at: Instant::now(), time: Timestamp::now(), node: node_usage().unwrap_or_default(), containers }
}

/// The summary document (Kubernetes' `stats/v1alpha1` `Summary`, the fields metrics are made
/// of) for the containers in `cgroups`, rates measured from `earlier` to `now`.
fn document(
    node_name: &str,
    cgroups: &[ContainerCgroup],
    pods: &HashMap<String, (String, String)>,
    earlier: &Reading,
    now: &Reading,
) -> Value {
    let seconds = now.at.duration_since(earlier.at).as_secs_f64().max(f64::EPSILON);
    let time = now.time.to_string();
    let stats = |before: Option<&Usage>, usage: &Usage| {
        let mut cpu = json!({"time": time, "usageCoreNanoSeconds": usage.cpu_nanoseconds});
        if let Some(before) = before {
            let used = usage.cpu_nanoseconds.saturating_sub(before.cpu_nanoseconds);
            // Rounded nanocores; f64 holds every count a machine reaches exactly enough.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
            let nano_cores = (used as f64 / seconds).round() as u64;
            cpu["usageNanoCores"] = json!(nano_cores);
        }
        let memory =
            json!({"time": time, "usageBytes": usage.memory_bytes, "workingSetBytes": usage.working_set_bytes});
        (cpu, memory)
    };
    let (cpu, memory) = stats(Some(&earlier.node), &now.node);
    let node = json!({"nodeName": node_name, "cpu": cpu, "memory": memory});
    let mut by_pod: Vec<(&str, Vec<&ContainerCgroup>)> = Vec::new();
    for cgroup in cgroups {
        match by_pod.iter_mut().find(|(uid, _)| *uid == cgroup.uid) {
            Some((_, list)) => list.push(cgroup),
            None => by_pod.push((&cgroup.uid, vec![cgroup])),
        }
    }
    let pods: Vec<Value> = by_pod
        .into_iter()
        .filter_map(|(uid, list)| {
            let (namespace, name) = pods.get(uid)?;
            let mut total = Usage::default();
            let mut total_before = Some(Usage::default());
            let mut containers = Vec::new();
            for cgroup in &list {
                let key = (cgroup.uid.clone(), cgroup.name.clone());
                let Some(usage) = now.containers.get(&key) else { continue };
                let before = earlier.containers.get(&key);
                let (cpu, memory) = stats(before, usage);
                containers.push(json!({"name": cgroup.name, "startTime": cgroup.started_at.to_string(), "cpu": cpu, "memory": memory}));
                total = add(&total, usage);
                total_before = match (total_before, before) {
                    (Some(sum), Some(before)) => Some(add(&sum, before)),
                    _ => None, // a container started within the window: no pod rate yet
                };
            }
            let started = list.iter().map(|c| c.started_at).min()?;
            let (cpu, memory) = stats(total_before.as_ref(), &total);
            Some(json!({
                "podRef": {"name": name, "namespace": namespace, "uid": uid},
                "startTime": started.to_string(),
                "containers": containers,
                "cpu": cpu,
                "memory": memory,
            }))
        })
        .collect();
    json!({"node": node, "pods": pods})
}

fn add(a: &Usage, b: &Usage) -> Usage {
    Usage {
        cpu_nanoseconds: a.cpu_nanoseconds.saturating_add(b.cpu_nanoseconds),
        memory_bytes: a.memory_bytes.saturating_add(b.memory_bytes),
        working_set_bytes: a.working_set_bytes.saturating_add(b.working_set_bytes),
    }
}

/// Pod uid → (namespace, name), from the pod directories `<namespace>_<name>_<uid>` under
/// `root_dir/pods` (names hold no `_`: they are DNS names).
fn pod_names(root_dir: &Path) -> HashMap<String, (String, String)> {
    let Ok(entries) = std::fs::read_dir(root_dir.join("pods")) else { return HashMap::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let file_name = entry.file_name().into_string().ok()?;
            let mut parts = file_name.splitn(3, '_');
            let (namespace, name, uid) = (parts.next()?, parts.next()?, parts.next()?);
            Some((uid.to_string(), (namespace.to_string(), name.to_string())))
        })
        .collect()
}

/// The node's usage: CPU from `/proc/stat` (every state but idle and iowait), memory from
/// `/proc/meminfo` (total minus free; working set minus inactive file pages too).
fn node_usage() -> Option<Usage> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some(node_usage_from(&stat, &meminfo, USER_HZ))
}

/// [`node_usage`] from the files' text; `ticks` is `USER_HZ` (jiffies a second).
fn node_usage_from(stat: &str, meminfo: &str, ticks: u64) -> Usage {
    let jiffies: Vec<u64> = stat
        .lines()
        .find_map(|line| line.strip_prefix("cpu "))
        .map(|rest| rest.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    // user nice system idle iowait irq softirq steal (guest time is within user already).
    let busy: u64 = jiffies.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, n)| n).sum();
    let cpu_nanoseconds = busy.saturating_mul(1_000_000_000 / ticks.max(1));
    let kib = |key: &str| {
        meminfo
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(':')?.split_whitespace().next()?.parse::<u64>().ok())
    };
    let used = kib("MemTotal").unwrap_or(0).saturating_sub(kib("MemFree").unwrap_or(0));
    let working = used.saturating_sub(kib("Inactive(file)").unwrap_or(0));
    Usage { cpu_nanoseconds, memory_bytes: used * 1024, working_set_bytes: working * 1024 }
}

/// `USER_HZ`, the unit of `/proc/stat`: 100 on every Linux architecture rkube builds for.
const USER_HZ: u64 = 100;

/// The usage of cgroup `relative` below the cgroup mount `root`: v2 (unified) when its files
/// are there, else v1 (`cpuacct` and `memory` hierarchies). `None` when neither is there (the
/// container just stopped).
pub fn cgroup_usage(root: &Path, relative: &str) -> Option<Usage> {
    let relative = relative.trim_start_matches('/');
    let read = |path: PathBuf| std::fs::read_to_string(path).ok();
    let number = |text: Option<String>| text.and_then(|t| t.trim().parse::<u64>().ok());
    let stat_value = |text: &str, key: &str| {
        text.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(' ')?.trim().parse::<u64>().ok())
    };
    let v2 = root.join(relative);
    if let Some(cpu_stat) = read(v2.join("cpu.stat")) {
        let usec = stat_value(&cpu_stat, "usage_usec")?;
        let memory = number(read(v2.join("memory.current"))).unwrap_or(0);
        let inactive = read(v2.join("memory.stat")).and_then(|s| stat_value(&s, "inactive_file")).unwrap_or(0);
        return Some(Usage {
            cpu_nanoseconds: usec.saturating_mul(1000),
            memory_bytes: memory,
            working_set_bytes: memory.saturating_sub(inactive),
        });
    }
    let cpu = number(read(root.join("cpuacct").join(relative).join("cpuacct.usage")))?;
    let memory_dir = root.join("memory").join(relative);
    let memory = number(read(memory_dir.join("memory.usage_in_bytes"))).unwrap_or(0);
    let inactive =
        read(memory_dir.join("memory.stat")).and_then(|s| stat_value(&s, "total_inactive_file")).unwrap_or(0);
    Some(Usage { cpu_nanoseconds: cpu, memory_bytes: memory, working_set_bytes: memory.saturating_sub(inactive) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_usage_counts_busy_jiffies_and_memory_less_free_and_inactive_files() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
        let meminfo = "MemTotal:       1000 kB\nMemFree:         300 kB\nInactive(file):  200 kB\n";
        let usage = node_usage_from(stat, meminfo, 100);
        assert_eq!(usage.cpu_nanoseconds, 161 * 10_000_000);
        assert_eq!((usage.memory_bytes, usage.working_set_bytes), (700 * 1024, 500 * 1024));
    }

    #[test]
    fn cgroup_v1_and_v2_files_read_alike() {
        let root = tempfile::tempdir().expect("dir");
        let v2 = root.path().join("rkube/podA/c2");
        std::fs::create_dir_all(&v2).expect("dir");
        std::fs::write(v2.join("cpu.stat"), "usage_usec 2500\nuser_usec 2000\n").expect("write");
        std::fs::write(v2.join("memory.current"), "4096\n").expect("write");
        std::fs::write(v2.join("memory.stat"), "anon 1024\ninactive_file 1024\n").expect("write");
        let usage = cgroup_usage(root.path(), "/rkube/podA/c2").expect("v2");
        assert_eq!(usage, Usage { cpu_nanoseconds: 2_500_000, memory_bytes: 4096, working_set_bytes: 3072 });

        let cpu = root.path().join("cpuacct/rkube/podA/c1");
        let memory = root.path().join("memory/rkube/podA/c1");
        std::fs::create_dir_all(&cpu).expect("dir");
        std::fs::create_dir_all(&memory).expect("dir");
        std::fs::write(cpu.join("cpuacct.usage"), "123456789\n").expect("write");
        std::fs::write(memory.join("memory.usage_in_bytes"), "8192\n").expect("write");
        std::fs::write(memory.join("memory.stat"), "inactive_file 1\ntotal_inactive_file 4096\n").expect("write");
        let usage = cgroup_usage(root.path(), "rkube/podA/c1").expect("v1");
        assert_eq!(usage, Usage { cpu_nanoseconds: 123_456_789, memory_bytes: 8192, working_set_bytes: 4096 });
        assert_eq!(cgroup_usage(root.path(), "rkube/podA/gone"), None);
    }

    #[test]
    fn rates_come_from_two_readings_and_pods_sum_their_containers() {
        let started: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let cgroup = |name: &str| ContainerCgroup {
            uid: "u1".into(),
            name: name.into(),
            cgroup: format!("rkube/podu1/{name}"),
            started_at: started,
        };
        let cgroups = [cgroup("a"), cgroup("b")];
        let usage =
            |cpu: u64, memory: u64| Usage { cpu_nanoseconds: cpu, memory_bytes: memory, working_set_bytes: memory };
        let at = Instant::now();
        let reading = |at: Instant, a: u64, b: u64| Reading {
            at,
            time: Timestamp::now(),
            node: usage(a + b, 1 << 20),
            containers: [(("u1".into(), "a".into()), usage(a, 100)), (("u1".into(), "b".into()), usage(b, 50))]
                .into_iter()
                .collect(),
        };
        let earlier = reading(at, 1_000_000_000, 0);
        let now = reading(at + Duration::from_secs(2), 2_000_000_000, 500_000_000);
        let pods = [("u1".to_string(), ("default".to_string(), "web".to_string()))].into_iter().collect();
        let summary = document("node-1", &cgroups, &pods, &earlier, &now);
        assert_eq!(summary["node"]["nodeName"], "node-1");
        assert_eq!(summary["node"]["cpu"]["usageNanoCores"], 750_000_000);
        let pod = &summary["pods"][0];
        assert_eq!(pod["podRef"], json!({"name": "web", "namespace": "default", "uid": "u1"}));
        assert_eq!(pod["containers"][0]["cpu"]["usageNanoCores"], 500_000_000);
        assert_eq!(pod["containers"][1]["cpu"]["usageNanoCores"], 250_000_000);
        assert_eq!(pod["cpu"]["usageNanoCores"], 750_000_000);
        assert_eq!(pod["memory"]["workingSetBytes"], 150);
        let unnamed = document("node-1", &cgroups, &HashMap::new(), &earlier, &now);
        assert_eq!(unnamed["pods"], json!([]), "a pod the kubelet has no directory of is not listed");
    }
}
