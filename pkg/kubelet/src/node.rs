//! This node's Node object: registration, capacity from the machine, and status conditions.
//!
//! What it keeps true (`test/tests/kubelet_fake.rs`):
//! - on start the Node is created, or, if it exists (a restart), its labels are brought up to
//!   date and the kubelet carries on: a restart never fails on AlreadyExists
//!   (`kubelet_restart_re_registers_the_existing_node`);
//! - `capacity` and `allocatable` hold the machine's CPUs and memory and `pods: 110`; labels
//!   hold `kubernetes.io/hostname`, `kubernetes.io/os` and `--node-labels`; `--register-with-taints`
//!   are set at registration (Kubernetes, too, applies them only when it creates the Node);
//! - the conditions Ready, MemoryPressure, DiskPressure and PIDPressure are written through
//!   `nodes/status` whenever one changes, and at least every [`STATUS_REPORT_INTERVAL`];
//!   `lastTransitionTime` moves only when a condition's status changes;
//! - each change of a condition is an Event on the Node, with the kubelet's reasons
//!   (`NodeReady`, `NodeNotReady`, `NodeHasSufficientMemory`, `NodeHasDiskPressure`, …,
//!   [`transitions`]), and the kubelet's start is a `Starting` Event.
//!
//! Pressure thresholds are Kubernetes' hard eviction defaults: less than 100 MiB of memory
//! available, less than 10 % of the root dir's filesystem free, more than 90 % of `pid_max` in
//! use. Not promised: eviction (the conditions only report).

use std::collections::BTreeMap;
use std::net::{IpAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use rkube_client::events::{EventRecorder, EventType, object_reference};
use rkube_client::{Api, Client, Patch, PatchParams, PostParams};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::runtime::Runtime;

/// How often the kubelet looks at the machine and the runtime to recompute the conditions.
pub const STATUS_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// How long an unchanged status may go unwritten (Kubernetes' `nodeStatusReportFrequency`).
pub const STATUS_REPORT_INTERVAL: Duration = Duration::from_secs(60);
/// `capacity.pods`: how many pods the node accepts.
pub const MAX_PODS: u32 = 110;
/// The kubelet version reported in `nodeInfo`.
pub const KUBELET_VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"), "-rkube");

/// What the kubelet needs to know to describe its node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The Node's name.
    pub name: String,
    /// Extra labels (`--node-labels`).
    pub labels: BTreeMap<String, String>,
    /// Taints set when the Node is created (`--register-with-taints`).
    pub taints: Vec<Taint>,
    /// `spec.podCIDR`, if the kubelet was given one.
    pub pod_cidr: Option<String>,
    /// The address other components reach the kubelet on (`InternalIP`).
    pub node_ip: IpAddr,
    /// Where the kubelet serves `/healthz`, `/metrics` (and later logs).
    pub port: u16,
    /// The kubelet's root dir (its filesystem decides DiskPressure).
    pub root_dir: std::path::PathBuf,
}

/// Facts about the machine, read from `/proc` and `/etc`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineInfo {
    /// Logical CPUs.
    pub cpus: usize,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// The machine's hostname.
    pub hostname: String,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
    /// `uname -r`.
    pub kernel_version: String,
    /// `PRETTY_NAME` from `/etc/os-release`.
    pub os_image: String,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|text| text.trim().to_string()).unwrap_or_default()
}

/// The value in kB of `field` in `/proc/meminfo` text, in bytes.
fn meminfo_bytes(meminfo: &str, field: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with(field) && line[field.len()..].starts_with(':'))?;
    let kb: u64 = line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

impl MachineInfo {
    /// Reads the machine's facts; what cannot be read is left empty (or 1 CPU).
    pub fn read() -> MachineInfo {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let os_image = os_release
            .lines()
            .find_map(|line| line.strip_prefix("PRETTY_NAME="))
            .map(|value| value.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".into());
        MachineInfo {
            cpus: std::thread::available_parallelism().map(std::num::NonZero::get).unwrap_or(1),
            memory_bytes: meminfo_bytes(&meminfo, "MemTotal").unwrap_or(0),
            hostname: read_trimmed("/proc/sys/kernel/hostname"),
            machine_id: read_trimmed("/etc/machine-id"),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
            os_image,
        }
    }
}

/// The address this machine uses to reach the outside (the source address of a route to a
/// public address; nothing is sent), or loopback when there is no route.
pub fn default_node_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.connect("192.0.2.1:80")?; // TEST-NET-1: routing only, no packet
        Ok(socket.local_addr()?.ip())
    };
    probe().unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// Parses a byte size flag such as `10Mi` or `1048576` (a Kubernetes quantity).
///
/// # Errors
/// A one-line message for anything that is not a non-negative quantity.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let units = rkube_api::quantity::parse_units(text).map_err(|error| error.to_string())?;
    u64::try_from(units).map_err(|_| format!("{text:?} is negative"))
}

/// Parses `--node-labels` (`k=v,k2=v2`).
pub fn parse_labels(text: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    text.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            let (key, value) = part.split_once('=').ok_or_else(|| format!("label {part:?} is not key=value"))?;
            if key.trim().is_empty() {
                return Err(format!("label {part:?} has an empty key"));
            }
            Ok((key.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}

/// Parses `--register-with-taints` (`key=value:Effect,key2:Effect`).
pub fn parse_taints(text: &str) -> std::result::Result<Vec<Taint>, String> {
    text.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            let (key_value, effect) =
                part.trim().rsplit_once(':').ok_or_else(|| format!("taint {part:?} is not key[=value]:Effect"))?;
            if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
                return Err(format!("taint {part:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"));
            }
            let (key, value) = match key_value.split_once('=') {
                Some((key, value)) => (key, Some(value.to_string())),
                None => (key_value, None),
            };
            if key.is_empty() {
                return Err(format!("taint {part:?} has an empty key"));
            }
            Ok(Taint { key: key.into(), value, effect: effect.into(), time_added: None })
        })
        .collect()
}

/// The Node as this kubelet registers it (metadata and spec; the status is written separately).
pub fn desired_node(config: &NodeConfig) -> Node {
    let mut labels = config.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), config.name.clone());
    labels.insert("kubernetes.io/os".into(), std::env::consts::OS.into());
    labels.insert("kubernetes.io/arch".into(), go_arch().into());
    Node {
        metadata: ObjectMeta { name: Some(config.name.clone()), labels: Some(labels), ..ObjectMeta::default() },
        spec: Some(NodeSpec {
            pod_cidr: config.pod_cidr.clone(),
            pod_cidrs: config.pod_cidr.clone().map(|cidr| vec![cidr]),
            taints: (!config.taints.is_empty()).then(|| config.taints.clone()),
            ..NodeSpec::default()
        }),
        status: None,
    }
}

/// Kubernetes' name for the CPU architecture (Go's `GOARCH`).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Creates this node's Node, or updates the labels of the existing one. Returns the Node.
///
/// # Errors
/// [`Error::RegisterNode`] when the apiserver refuses both.
pub async fn register(client: &Client, config: &NodeConfig) -> Result<Node> {
    let api: Api<Node> = Api::all(client.clone());
    let node = desired_node(config);
    let register_error = |source| Error::RegisterNode { node: config.name.clone(), source };
    match api.create(&PostParams::default(), &node).await {
        Ok(created) => {
            tracing::info!(node = %config.name, "registered node");
            Ok(created)
        }
        Err(error) if error.is_already_exists() => {
            // A restart: keep the Node (its uid, and what others set on it) and refresh labels.
            let mut patch = serde_json::json!({ "metadata": { "labels": node.metadata.labels } });
            if let Some(cidr) = &config.pod_cidr {
                patch["spec"] = serde_json::json!({ "podCIDR": cidr, "podCIDRs": [cidr] });
            }
            let updated =
                api.patch(&config.name, &PatchParams::default(), &Patch::Merge(patch)).await.map_err(register_error)?;
            tracing::info!(node = %config.name, "node already registered; updated it");
            Ok(updated)
        }
        Err(error) => Err(register_error(error)),
    }
}

/// Readings that decide the pressure conditions.
#[derive(Clone, Copy, Debug, Default)]
struct Pressure {
    memory: bool,
    disk: bool,
    pid: bool,
}

fn read_pressure(root_dir: &Path) -> Pressure {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo_bytes(&meminfo, "MemAvailable").is_some_and(|available| available < 100 * 1024 * 1024);
    let disk = rustix::fs::statvfs(root_dir)
        .map(|stats| stats.f_blocks > 0 && stats.f_bavail * 10 < stats.f_blocks)
        .unwrap_or(false);
    let pid_max: u64 = read_trimmed("/proc/sys/kernel/pid_max").parse().unwrap_or(0);
    let processes = std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(std::result::Result::ok)
                .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
                .count()
        })
        .unwrap_or(0) as u64;
    let pid = pid_max > 0 && processes * 10 > pid_max * 9;
    Pressure { memory, disk, pid }
}

/// The node conditions for the given readings, keeping `lastTransitionTime` from `old` where
/// the status did not change.
fn conditions(
    old: &[NodeCondition],
    runtime_error: Option<String>,
    pressure: Pressure,
    now: Timestamp,
) -> Vec<NodeCondition> {
    let condition = |type_: &str, status: bool, reason: &str, message: String| {
        let status = if status { "True" } else { "False" }.to_string();
        let last_transition_time = match old.iter().find(|c| c.type_ == type_) {
            Some(previous) if previous.status == status => previous.last_transition_time.clone(),
            _ => Some(Time(now)),
        };
        NodeCondition {
            type_: type_.into(),
            status,
            reason: Some(reason.into()),
            message: Some(message),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time,
        }
    };
    let pressure_condition = |type_: &str, pressure: bool, what: &str| {
        if pressure {
            condition(type_, true, &format!("KubeletHas{what}Pressure"), format!("kubelet has {what} pressure"))
        } else {
            condition(type_, false, &format!("KubeletHasSufficient{what}"), format!("kubelet has sufficient {what}"))
        }
    };
    let ready = match runtime_error {
        None => condition("Ready", true, "KubeletReady", "kubelet is posting ready status".into()),
        Some(error) => condition("Ready", false, "KubeletNotReady", format!("container runtime is down: {error}")),
    };
    vec![
        pressure_condition("MemoryPressure", pressure.memory, "Memory"),
        if pressure.disk {
            condition("DiskPressure", true, "KubeletHasDiskPressure", "kubelet has disk pressure".into())
        } else {
            condition("DiskPressure", false, "KubeletHasNoDiskPressure", "kubelet has no disk pressure".into())
        },
        pressure_condition("PIDPressure", pressure.pid, "PID"),
        ready,
    ]
}

/// The status part the kubelet owns: capacity, allocatable, addresses, nodeInfo, endpoints,
/// conditions.
fn node_status(
    config: &NodeConfig,
    machine: &MachineInfo,
    runtime_name: &str,
    conditions: Vec<NodeCondition>,
) -> NodeStatus {
    let resources: BTreeMap<String, Quantity> = [
        ("cpu".to_string(), Quantity(machine.cpus.to_string())),
        ("memory".to_string(), Quantity(format!("{}Ki", machine.memory_bytes / 1024))),
        ("pods".to_string(), Quantity(MAX_PODS.to_string())),
    ]
    .into();
    let hostname = if machine.hostname.is_empty() { config.name.clone() } else { machine.hostname.clone() };
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: config.node_ip.to_string() },
            NodeAddress { type_: "Hostname".into(), address: hostname },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: i32::from(config.port) }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: go_arch().into(),
            boot_id: machine.boot_id.clone(),
            container_runtime_version: format!("{runtime_name}://rkube"),
            kernel_version: machine.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: machine.machine_id.clone(),
            operating_system: std::env::consts::OS.into(),
            os_image: machine.os_image.clone(),
            system_uuid: machine.machine_id.clone(),
            ..NodeSystemInfo::default()
        }),
        conditions: Some(conditions),
        ..NodeStatus::default()
    }
}

/// The Event reasons of the conditions whose status differs between `old` and `new`, as the
/// kubelet's: `Node <name> status is now: <reason>`.
pub fn transitions(old: &[NodeCondition], new: &[NodeCondition]) -> Vec<&'static str> {
    new.iter()
        .filter(|c| old.iter().find(|o| o.type_ == c.type_).is_none_or(|o| o.status != c.status))
        .filter_map(|c| {
            let on = c.status == "True";
            Some(match c.type_.as_str() {
                "Ready" if on => "NodeReady",
                "Ready" => "NodeNotReady",
                "MemoryPressure" if on => "NodeHasInsufficientMemory",
                "MemoryPressure" => "NodeHasSufficientMemory",
                "DiskPressure" if on => "NodeHasDiskPressure",
                "DiskPressure" => "NodeHasNoDiskPressure",
                "PIDPressure" if on => "NodeHasInsufficientPID",
                "PIDPressure" => "NodeHasSufficientPID",
                _ => return None,
            })
        })
        .collect()
}

/// Keeps the Node's status up to date until `shutdown` (see the module docs), recording its
/// changes as Events.
pub async fn run_status_loop(
    client: Client,
    config: NodeConfig,
    runtime: Arc<dyn Runtime>,
    metrics: Arc<Metrics>,
    events: EventRecorder,
    shutdown: CancellationToken,
) {
    let machine = MachineInfo::read();
    let api: Api<Node> = Api::all(client.clone());
    let mut last: Option<(Vec<(String, String)>, Instant)> = None;
    let mut started = false;
    loop {
        let runtime_error = runtime.healthy().await.err().map(|error| error.to_string());
        let pressure = read_pressure(&config.root_dir);
        let result = async {
            // A Node deleted under a live kubelet is registered again, as Kubernetes' kubelet
            // does when its status update finds no Node.
            let current = match api.get_opt(&config.name).await.map_err(Error::NodeStatus)? {
                Some(node) => node,
                None => {
                    tracing::warn!(node = %config.name, "the Node is gone from the API; registering it again");
                    register(&client, &config).await?
                }
            };
            let reference = object_reference(&current);
            if !started {
                events.record(&reference, EventType::Normal, "Starting", "", "Starting kubelet.");
                started = true;
            }
            let old = current.status.and_then(|status| status.conditions).unwrap_or_default();
            let conditions = conditions(&old, runtime_error, pressure, Timestamp::now());
            for reason in transitions(&old, &conditions) {
                let message = format!("Node {} status is now: {reason}", config.name);
                let type_ = if reason == "NodeReady"
                    || reason.starts_with("NodeHasSufficient")
                    || reason == "NodeHasNoDiskPressure"
                {
                    EventType::Normal
                } else {
                    EventType::Warning
                };
                events.record(&reference, type_, reason, "", message);
            }
            let summary: Vec<(String, String)> =
                conditions.iter().map(|c| (c.type_.clone(), c.status.clone())).collect();
            // Due when the conditions changed since the last report, when the stored ones
            // differ from them (someone else wrote them, or the Node was made again), or when
            // the report interval has passed.
            let stored_differs = summary
                .iter()
                .any(|(type_, status)| old.iter().find(|c| &c.type_ == type_).map(|c| &c.status) != Some(status));
            let due = stored_differs
                || match &last {
                    Some((previous, at)) => *previous != summary || at.elapsed() >= STATUS_REPORT_INTERVAL,
                    None => true,
                };
            if !due {
                return Ok(None);
            }
            let status = node_status(&config, &machine, runtime.name(), conditions);
            let patch = serde_json::json!({ "status": status });
            api.patch_status(&config.name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(Error::NodeStatus)?;
            Ok::<_, Error>(Some(summary))
        }
        .await;
        match result {
            Ok(Some(summary)) => {
                metrics.node_status_updates.with_label_values(&["success"]).inc();
                last = Some((summary, Instant::now()));
            }
            Ok(None) => {}
            Err(error) => {
                metrics.node_status_updates.with_label_values(&["error"]).inc();
                tracing::warn!(%error, node = %config.name, "node status update failed; retrying");
            }
        }
        let wait = if last.is_some() { STATUS_CHECK_INTERVAL } else { Duration::from_secs(1) };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_taints_parse_like_the_kubelet_flags() {
        let labels = parse_labels("a=1, zone=west").expect("valid");
        assert_eq!(labels.get("zone").map(String::as_str), Some("west"));
        assert!(parse_labels("novalue").is_err());
        let taints = parse_taints("dedicated=gpu:NoSchedule,maint:NoExecute").expect("valid");
        assert_eq!(taints[0].key, "dedicated");
        assert_eq!(taints[0].value.as_deref(), Some("gpu"));
        assert_eq!(taints[1].value, None);
        assert_eq!(taints[1].effect, "NoExecute");
        assert!(parse_taints("a=b:Sometimes").is_err());
        assert!(parse_taints("a=b").is_err());
    }

    #[test]
    fn meminfo_is_read_in_bytes() {
        let text = "MemTotal:        2000 kB\nMemAvailable:     100 kB\n";
        assert_eq!(meminfo_bytes(text, "MemTotal"), Some(2_048_000));
        assert_eq!(meminfo_bytes(text, "MemAvailable"), Some(102_400));
        assert_eq!(meminfo_bytes(text, "MemFree"), None);
    }

    #[test]
    fn condition_transition_time_moves_only_on_change() {
        let t0 = Timestamp::UNIX_EPOCH;
        let t1 = t0 + jiff::SignedDuration::from_secs(30);
        let first = conditions(&[], None, Pressure::default(), t0);
        let same = conditions(&first, None, Pressure::default(), t1);
        let ready =
            |conditions: &[NodeCondition]| conditions.iter().find(|c| c.type_ == "Ready").cloned().expect("Ready");
        assert_eq!(ready(&same).last_transition_time, Some(Time(t0)));
        assert_eq!(ready(&same).last_heartbeat_time, Some(Time(t1)));
        let down = conditions(&same, Some("gone".into()), Pressure::default(), t1);
        assert_eq!(ready(&down).status, "False");
        assert_eq!(ready(&down).last_transition_time, Some(Time(t1)));
    }

    #[test]
    fn each_changed_condition_is_told_with_the_kubelets_reason() {
        let t0 = Timestamp::UNIX_EPOCH;
        let up = conditions(&[], None, Pressure::default(), t0);
        assert_eq!(
            transitions(&[], &up),
            ["NodeHasSufficientMemory", "NodeHasNoDiskPressure", "NodeHasSufficientPID", "NodeReady"]
        );
        assert!(transitions(&up, &conditions(&up, None, Pressure::default(), t0)).is_empty());
        let down = conditions(&up, Some("gone".into()), Pressure::default(), t0);
        assert_eq!(transitions(&up, &down), ["NodeNotReady"]);
    }

    #[test]
    fn machine_info_reads_this_machine() {
        let machine = MachineInfo::read();
        assert!(machine.cpus >= 1);
        assert!(machine.memory_bytes > 0);
    }
}
