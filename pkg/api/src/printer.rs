//! Server-side printing: the Table columns `kubectl get` shows for each kind, as Kubernetes'
//! `pkg/printers/internalversion/printers.go` defines them.
//!
//! [`columns`] gives a resource's column definitions and [`row`] one object's cells, in the
//! same order. Rows carry every column, priority-1 ("wide") ones included, as the apiserver's
//! Table responses do; clients hide columns with a priority above 0 unless asked for
//! `-o wide`.
//!
//! Invariants (each has a test below):
//! - [`row`] works on the stored JSON and never fails: a missing field prints as Kubernetes
//!   prints its zero value (`<none>`, `<unknown>`, `0` or an empty string, column by column);
//! - every row has exactly as many cells as [`columns`] has columns;
//! - ages read exactly like apimachinery's `duration.HumanDuration` (`90s`, `5m12s`, `3h`).
//!
//! Column types follow printers.go rather than the look of the values: `Age` and
//! `Restarts` are `string` (`Restarts` reads `3 (5m ago)` after a restart), while
//! `Desired`/`Current`/`Ready` of a ReplicaSet are `integer`. Cells are strings, except the
//! integers printers.go puts in cells (ReplicaSet counts, Deployment `Up-to-date` and
//! `Available`, ConfigMap `Data`, event `Count`).
//!
//! Not promised: kinds outside the registry get only `Name` and `Age` (Kubernetes' default
//! table shows `Name` and `Created At`).

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

/// One column of a Table, as `metav1.TableColumnDefinition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The header, e.g. `Name`.
    pub name: &'static str,
    /// The OpenAPI type of the cells: `string`, `integer` or `date`.
    pub kind: &'static str,
    /// `name` for the column holding the object's name, otherwise empty.
    pub format: &'static str,
    /// What the column shows.
    pub description: &'static str,
    /// 0 for columns always shown, 1 for those only `-o wide` shows.
    pub priority: i32,
}

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.";
const CONTAINERS_DESCRIPTION: &str = "Names of each container in the template.";
const IMAGES_DESCRIPTION: &str = "Images referenced by each container in the template.";

const fn column(name: &'static str, kind: &'static str, description: &'static str, priority: i32) -> Column {
    Column { name, kind, format: "", description, priority }
}

const NAME: Column =
    Column { name: "Name", kind: "string", format: "name", description: NAME_DESCRIPTION, priority: 0 };
const AGE: Column = column("Age", "string", AGE_DESCRIPTION, 0);

/// The columns `kubectl get <plural>` shows, in order; `Name` and `Age` for resources
/// without columns of their own.
pub fn columns(plural: &str) -> Vec<Column> {
    match plural {
        "pods" => vec![
            NAME,
            column("Ready", "string", "The aggregate readiness state of this pod for accepting traffic.", 0),
            column("Status", "string", "The aggregate status of the containers in this pod.", 0),
            column(
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                0,
            ),
            AGE,
            column(
                "IP",
                "string",
                "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
                1,
            ),
            column("Node", "string", "NodeName indicates in which node this pod is scheduled.", 1),
            column(
                "Nominated Node",
                "string",
                "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
                1,
            ),
            column(
                "Readiness Gates",
                "string",
                "If specified, all readiness gates will be evaluated for pod readiness.",
                1,
            ),
        ],
        "nodes" => vec![
            NAME,
            column("Status", "string", "The status of the node", 0),
            column("Roles", "string", "The roles of the node", 0),
            AGE,
            column("Version", "string", "Kubelet Version reported by the node.", 0),
            column("Internal-IP", "string", "List of addresses reachable to the node.", 1),
            column("External-IP", "string", "List of addresses reachable to the node.", 1),
            column(
                "OS-Image",
                "string",
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
                1,
            ),
            column(
                "Kernel-Version",
                "string",
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
                1,
            ),
            column(
                "Container-Runtime",
                "string",
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
                1,
            ),
        ],
        "replicasets" => vec![
            NAME,
            column("Desired", "integer", "Replicas is the number of desired pods.", 0),
            column("Current", "integer", "Replicas is the most recently observed number of non-terminating pods.", 0),
            column(
                "Ready",
                "integer",
                "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.",
                0,
            ),
            AGE,
            column("Containers", "string", CONTAINERS_DESCRIPTION, 1),
            column("Images", "string", IMAGES_DESCRIPTION, 1),
            column("Selector", "string", "Selector is a label query over pods that should match the replica count.", 1),
        ],
        "deployments" => vec![
            NAME,
            column("Ready", "string", "Number of the pod with ready state", 0),
            column(
                "Up-to-date",
                "string",
                "Total number of non-terminating pods targeted by this deployment that have the desired template spec.",
                0,
            ),
            column(
                "Available",
                "string",
                "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment.",
                0,
            ),
            AGE,
            column("Containers", "string", CONTAINERS_DESCRIPTION, 1),
            column("Images", "string", IMAGES_DESCRIPTION, 1),
            column("Selector", "string", "Label selector for pods.", 1),
        ],
        "services" => vec![
            NAME,
            column("Type", "string", "type determines how the Service is exposed.", 0),
            column(
                "Cluster-IP",
                "string",
                "clusterIP is the IP address of the service and is usually assigned randomly.",
                0,
            ),
            column(
                "External-IP",
                "string",
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
                0,
            ),
            column("Port(s)", "string", "The list of ports that are exposed by this service.", 0),
            AGE,
            column(
                "Selector",
                "string",
                "Route service traffic to pods with label keys and values matching this selector.",
                1,
            ),
        ],
        "endpoints" => {
            vec![NAME, column("Endpoints", "string", "The set of all endpoints is the union of all subsets.", 0), AGE]
        }
        "events" => vec![
            column(
                "Last Seen",
                "string",
                "The time at which the most recent occurrence of this event was recorded.",
                0,
            ),
            column("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future", 0),
            column(
                "Reason",
                "string",
                "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
                0,
            ),
            column("Object", "string", "The object that this event is about.", 0),
            column(
                "Subobject",
                "string",
                "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.",
                1,
            ),
            column("Source", "string", "The component reporting this event.", 1),
            column("Message", "string", "A human-readable description of the status of this operation.", 0),
            column("First Seen", "string", "The time at which the event was first recorded.", 1),
            column("Count", "string", "The number of times this event has occurred.", 1),
            Column { priority: 1, ..NAME },
        ],
        "namespaces" => vec![NAME, column("Status", "string", "The status of the namespace", 0), AGE],
        "configmaps" => vec![NAME, column("Data", "string", "Data contains the configuration data.", 0), AGE],
        "leases" => vec![
            NAME,
            column("Holder", "string", "holderIdentity contains the identity of the holder of a current lease.", 0),
            AGE,
        ],
        _ => vec![NAME, AGE],
    }
}

/// The cells of `obj` (stored JSON of a `plural` resource) under [`columns`]`(plural)`, ages
/// measured at `now`.
pub fn row(plural: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    let name = || Value::from(text(obj, &["metadata", "name"]));
    let age = || Value::from(since(text(obj, &["metadata", "creationTimestamp"]), now));
    match plural {
        "pods" => pod_row(obj, now),
        "nodes" => node_row(obj, now),
        "replicasets" => {
            let (containers, images) = container_cells(obj);
            vec![
                name(),
                Value::from(int(obj, &["spec", "replicas"])),
                Value::from(int(obj, &["status", "replicas"])),
                Value::from(int(obj, &["status", "readyReplicas"])),
                age(),
                containers.into(),
                images.into(),
                format_selector(at(obj, &["spec", "selector"])).into(),
            ]
        }
        "deployments" => {
            let (containers, images) = container_cells(obj);
            let ready = format!("{}/{}", int(obj, &["status", "readyReplicas"]), int(obj, &["spec", "replicas"]));
            vec![
                name(),
                ready.into(),
                Value::from(int(obj, &["status", "updatedReplicas"])),
                Value::from(int(obj, &["status", "availableReplicas"])),
                age(),
                containers.into(),
                images.into(),
                format_selector(at(obj, &["spec", "selector"])).into(),
            ]
        }
        "services" => service_row(obj, now),
        "endpoints" => vec![name(), format_endpoints(obj).into(), age()],
        "events" => event_row(obj, now),
        "namespaces" => vec![name(), Value::from(text(obj, &["status", "phase"])), age()],
        "configmaps" => {
            let count = |field: &str| at(obj, &[field]).and_then(Value::as_object).map_or(0, serde_json::Map::len);
            vec![name(), Value::from(count("data") + count("binaryData")), age()]
        }
        "leases" => vec![name(), Value::from(text(obj, &["spec", "holderIdentity"])), age()],
        _ => vec![name(), age()],
    }
}

/// A duration as apimachinery's `duration.HumanDuration` writes it: seconds below 2
/// minutes, minutes and seconds below 10 minutes, then ever coarser (`3h`, `4d5h`, `2y30d`).
pub fn human_age(d: std::time::Duration) -> String {
    human_seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `HumanDuration` on a whole number of seconds, which may be negative (a clock skew):
/// down to -1s reads `0s`, below that `<invalid>`.
fn human_seconds(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 2 * 60 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        let years = hours / 24 / 365;
        return if days == 0 { format!("{years}y") } else { format!("{years}y{days}d") };
    }
    format!("{}y", hours / 24 / 365)
}

// ---------------------------------------------------------------------------------------------
// JSON access that never fails.
// ---------------------------------------------------------------------------------------------

fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path).and_then(Value::as_str).unwrap_or_default()
}

fn int(value: &Value, path: &[&str]) -> i64 {
    at(value, path).and_then(Value::as_i64).unwrap_or(0)
}

fn flag(value: &Value, path: &[&str]) -> bool {
    at(value, path).and_then(Value::as_bool).unwrap_or(false)
}

fn list<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    at(value, path).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn or_none(s: &str) -> String {
    if s.is_empty() { "<none>".to_string() } else { s.to_string() }
}

fn timestamp(value: &Value, path: &[&str]) -> Option<Timestamp> {
    text(value, path).parse().ok()
}

/// Kubernetes' `translateTimestampSince`: `<unknown>` for a missing (or unreadable) time.
fn since(rfc3339: &str, now: Timestamp) -> String {
    match rfc3339.parse::<Timestamp>() {
        Ok(t) => since_timestamp(t, now),
        Err(_) => "<unknown>".to_string(),
    }
}

fn since_timestamp(t: Timestamp, now: Timestamp) -> String {
    human_seconds(now.duration_since(t).as_secs())
}

fn has_condition(conditions: &[Value], condition_type: &str) -> bool {
    conditions.iter().any(|c| text(c, &["type"]) == condition_type && text(c, &["status"]) == "True")
}

// ---------------------------------------------------------------------------------------------
// Rows.
// ---------------------------------------------------------------------------------------------

/// printers.go's `printPod`: readiness, the most telling reason, restarts and wide columns.
fn pod_row(pod: &Value, now: Timestamp) -> Vec<Value> {
    let init_containers = list(pod, &["spec", "initContainers"]);
    let conditions = list(pod, &["status", "conditions"]);
    let phase = text(pod, &["status", "phase"]);
    let mut reason = match text(pod, &["status", "reason"]) {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    if conditions.iter().any(|c| text(c, &["type"]) == "PodScheduled" && text(c, &["reason"]) == "SchedulingGated") {
        reason = "SchedulingGated".to_string();
    }

    // Restartable init containers (sidecars) count as containers.
    let sidecars: BTreeSet<&str> = init_containers
        .iter()
        .filter(|c| text(c, &["restartPolicy"]) == "Always")
        .map(|c| text(c, &["name"]))
        .collect();
    let total = list(pod, &["spec", "containers"]).len() + sidecars.len();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let mut initializing = false;
    for (i, status) in list(pod, &["status", "initContainerStatuses"]).iter().enumerate() {
        let count = int(status, &["restartCount"]);
        let finished = timestamp(status, &["lastState", "terminated", "finishedAt"]);
        restarts += count;
        last_restart = last_restart.max(finished);
        let is_sidecar = sidecars.contains(text(status, &["name"]));
        if is_sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = last_sidecar_restart.max(finished);
        }
        let terminated = at(status, &["state", "terminated"]);
        let waiting_reason = text(status, &["state", "waiting", "reason"]);
        if terminated.is_some_and(|t| int(t, &["exitCode"]) == 0) {
            continue;
        }
        if is_sidecar && flag(status, &["started"]) {
            if flag(status, &["ready"]) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(t) = terminated {
            match text(t, &["reason"]) {
                "" if int(t, &["signal"]) != 0 => format!("Init:Signal:{}", int(t, &["signal"])),
                "" => format!("Init:ExitCode:{}", int(t, &["exitCode"])),
                r => format!("Init:{r}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_containers.len())
        };
        initializing = true;
        break;
    }

    if !initializing || has_condition(conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for status in list(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts += int(status, &["restartCount"]);
            last_restart = last_restart.max(timestamp(status, &["lastState", "terminated", "finishedAt"]));
            let waiting_reason = text(status, &["state", "waiting", "reason"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = at(status, &["state", "terminated"]) {
                reason = match text(t, &["reason"]) {
                    "" if int(t, &["signal"]) != 0 => format!("Signal:{}", int(t, &["signal"])),
                    "" => format!("ExitCode:{}", int(t, &["exitCode"])),
                    r => r.to_string(),
                };
            } else if flag(status, &["ready"]) && at(status, &["state", "running"]).is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if has_condition(conditions, "Ready") { "Running" } else { "NotReady" }.to_string();
        }
    }

    let deleting = at(pod, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null());
    if deleting && text(pod, &["status", "reason"]) == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && !matches!(phase, "Succeeded" | "Failed") {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since_timestamp(t, now)),
        _ => restarts.to_string(),
    };

    let pod_ip = list(pod, &["status", "podIPs"]).first().map(|ip| text(ip, &["ip"])).unwrap_or_default();
    let pod_ip = if pod_ip.is_empty() { text(pod, &["status", "podIP"]) } else { pod_ip };
    let gates = list(pod, &["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let passed = gates
            .iter()
            .filter(|gate| {
                let gate_type = text(gate, &["conditionType"]);
                conditions
                    .iter()
                    .find(|c| text(c, &["type"]) == gate_type)
                    .is_some_and(|c| text(c, &["status"]) == "True")
            })
            .count();
        format!("{passed}/{}", gates.len())
    };

    vec![
        Value::from(text(pod, &["metadata", "name"])),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts_cell.into(),
        since(text(pod, &["metadata", "creationTimestamp"]), now).into(),
        or_none(pod_ip).into(),
        or_none(text(pod, &["spec", "nodeName"])).into(),
        or_none(text(pod, &["status", "nominatedNodeName"])).into(),
        readiness_gates.into(),
    ]
}

/// printers.go's `printNode`: Ready condition, cordon, roles from labels, node info.
fn node_row(node: &Value, now: Timestamp) -> Vec<Value> {
    let mut status: Vec<&str> = Vec::new();
    if let Some(ready) = list(node, &["status", "conditions"]).iter().rfind(|c| text(c, &["type"]) == "Ready") {
        status.push(if text(ready, &["status"]) == "True" { "Ready" } else { "NotReady" });
    }
    if status.is_empty() {
        status.push("Unknown");
    }
    if flag(node, &["spec", "unschedulable"]) {
        status.push("SchedulingDisabled");
    }

    let mut roles = BTreeSet::new();
    if let Some(labels) = at(node, &["metadata", "labels"]).and_then(Value::as_object) {
        for (key, value) in labels {
            if let Some(role) = key.strip_prefix("node-role.kubernetes.io/").filter(|r| !r.is_empty()) {
                roles.insert(role.to_string());
            } else if key == "kubernetes.io/role" && value.as_str().is_some_and(|v| !v.is_empty()) {
                roles.insert(value.as_str().unwrap_or_default().to_string());
            }
        }
    }
    let roles = roles.into_iter().collect::<Vec<_>>().join(",");

    let address = |kind: &str| {
        list(node, &["status", "addresses"])
            .iter()
            .find(|a| text(a, &["type"]) == kind)
            .map_or_else(|| "<none>".to_string(), |a| text(a, &["address"]).to_string())
    };
    let info = |field: &str| match text(node, &["status", "nodeInfo", field]) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };

    vec![
        Value::from(text(node, &["metadata", "name"])),
        status.join(",").into(),
        or_none(&roles).into(),
        since(text(node, &["metadata", "creationTimestamp"]), now).into(),
        Value::from(text(node, &["status", "nodeInfo", "kubeletVersion"])),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ]
}

/// printers.go's `printService`.
fn service_row(service: &Value, now: Timestamp) -> Vec<Value> {
    let service_type = text(service, &["spec", "type"]);
    let cluster_ip = list(service, &["spec", "clusterIPs"]).first().and_then(Value::as_str).unwrap_or_default();
    let cluster_ip = if cluster_ip.is_empty() { text(service, &["spec", "clusterIP"]) } else { cluster_ip };
    let external_ips: Vec<&str> = list(service, &["spec", "externalIPs"]).iter().filter_map(Value::as_str).collect();
    let external_ip = match service_type {
        "ClusterIP" | "NodePort" => or_none(&external_ips.join(",")),
        "LoadBalancer" => {
            let mut ips: Vec<&str> = list(service, &["status", "loadBalancer", "ingress"])
                .iter()
                .map(|ingress| match text(ingress, &["ip"]) {
                    "" => text(ingress, &["hostname"]),
                    ip => ip,
                })
                .filter(|s| !s.is_empty())
                .collect();
            ips.extend(&external_ips);
            if ips.is_empty() { "<pending>".to_string() } else { ips.join(",") }
        }
        "ExternalName" => text(service, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = list(service, &["spec", "ports"])
        .iter()
        .map(|port| {
            let protocol = text(port, &["protocol"]);
            match int(port, &["nodePort"]) {
                node_port if node_port > 0 => format!("{}:{node_port}/{protocol}", int(port, &["port"])),
                _ => format!("{}/{protocol}", int(port, &["port"])),
            }
        })
        .collect();
    let selector = at(service, &["spec", "selector"])
        .and_then(Value::as_object)
        .map(|labels| {
            labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")
        })
        .unwrap_or_default();

    vec![
        Value::from(text(service, &["metadata", "name"])),
        Value::from(service_type),
        or_none(cluster_ip).into(),
        external_ip.into(),
        or_none(&ports.join(",")).into(),
        since(text(service, &["metadata", "creationTimestamp"]), now).into(),
        or_none(&selector).into(),
    ]
}

/// printers.go's `printEvent`, wide columns included.
fn event_row(event: &Value, now: Timestamp) -> Vec<Value> {
    let first_seen = match text(event, &["firstTimestamp"]) {
        "" => since(text(event, &["eventTime"]), now),
        t => since(t, now),
    };
    let mut last_seen = match text(event, &["lastTimestamp"]) {
        "" => first_seen.clone(),
        t => since(t, now),
    };
    let mut count = int(event, &["count"]);
    if at(event, &["series"]).is_some_and(|s| !s.is_null()) {
        last_seen = since(text(event, &["series", "lastObservedTime"]), now);
        count = int(event, &["series", "count"]);
    } else if count == 0 {
        count = 1;
    }
    let kind = text(event, &["involvedObject", "kind"]).to_lowercase();
    let object = match text(event, &["involvedObject", "name"]) {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let component = match text(event, &["source", "component"]) {
        "" => text(event, &["reportingComponent"]),
        c => c,
    };
    let instance = match text(event, &["source", "host"]) {
        "" => text(event, &["reportingInstance"]),
        h => h,
    };
    let source = if instance.is_empty() { component.to_string() } else { format!("{component}, {instance}") };

    vec![
        last_seen.into(),
        Value::from(text(event, &["type"])),
        Value::from(text(event, &["reason"])),
        object.into(),
        Value::from(text(event, &["involvedObject", "fieldPath"])),
        source.into(),
        Value::from(text(event, &["message"]).trim()),
        first_seen.into(),
        count.into(),
        Value::from(text(event, &["metadata", "name"])),
    ]
}

/// The template's container names and images, comma-separated (`layoutContainerCells`).
fn container_cells(obj: &Value) -> (String, String) {
    let containers = list(obj, &["spec", "template", "spec", "containers"]);
    let names: Vec<&str> = containers.iter().map(|c| text(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

/// A label selector as `metav1.FormatLabelSelector` writes it: requirements sorted by key,
/// `<none>` when empty, `<error>` for an unknown operator.
fn format_selector(selector: Option<&Value>) -> String {
    let Some(selector) = selector else { return "<none>".to_string() };
    let mut requirements: Vec<(String, String)> = Vec::new();
    if let Some(labels) = at(selector, &["matchLabels"]).and_then(Value::as_object) {
        for (key, value) in labels {
            requirements.push((key.clone(), format!("{key}={}", value.as_str().unwrap_or_default())));
        }
    }
    for requirement in list(selector, &["matchExpressions"]) {
        let key = text(requirement, &["key"]);
        let values: BTreeSet<&str> = list(requirement, &["values"]).iter().filter_map(Value::as_str).collect();
        let values = values.into_iter().collect::<Vec<_>>().join(",");
        let formatted = match text(requirement, &["operator"]) {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<error>".to_string(),
        };
        requirements.push((key.to_string(), formatted));
    }
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    let joined = requirements.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join(",");
    or_none(&joined)
}

/// printers.go's `formatEndpoints`: up to three `ip:port` pairs, then `+ N more...`.
fn format_endpoints(endpoints: &Value) -> String {
    const MAX: usize = 3;
    let subsets = list(endpoints, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut shown: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for subset in subsets {
        let addresses = list(subset, &["addresses"]);
        let ports = list(subset, &["ports"]);
        if ports.is_empty() {
            // A headless service may have endpoints without ports.
            count += addresses.len();
            for address in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                shown.push(text(address, &["ip"]).to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for address in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                let ip = text(address, &["ip"]);
                let port = int(port, &["port"]);
                // net.JoinHostPort brackets IPv6 addresses.
                shown.push(if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") });
            }
        }
    }
    let joined = shown.join(",");
    if more { format!("{joined} + {} more...", count - MAX) } else { joined }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2025-01-01T12:00:00Z".parse().expect("valid timestamp")
    }

    fn strings(cells: &[Value]) -> Vec<String> {
        cells.iter().map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string)).collect()
    }

    #[test]
    fn human_age_matches_apimachinery_human_duration() {
        let cases = [
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (312, "5m12s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 30 * 60, "3h30m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (4 * 86400 + 5 * 3600, "4d5h"),
            (8 * 86400, "8d"),
            (729 * 86400, "729d"),
            (2 * 365 * 86400, "2y"),
            (2 * 365 * 86400 + 30 * 86400, "2y30d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(human_age(std::time::Duration::from_secs(seconds)), expected, "{seconds}s");
        }
        assert_eq!(human_seconds(-1), "0s");
        assert_eq!(human_seconds(-2), "<invalid>");
    }

    #[test]
    fn every_row_has_one_cell_per_column_even_for_empty_objects() {
        for plural in [
            "pods",
            "nodes",
            "replicasets",
            "deployments",
            "services",
            "endpoints",
            "events",
            "namespaces",
            "configmaps",
            "leases",
            "widgets",
        ] {
            for obj in [json!({}), json!(null), json!({"metadata": {"name": 5}, "spec": []})] {
                assert_eq!(row(plural, &obj, now()).len(), columns(plural).len(), "{plural}");
            }
            let names: Vec<_> = columns(plural).iter().filter(|c| c.format == "name").map(|c| c.name).collect();
            assert_eq!(names, vec!["Name"], "{plural}");
        }
    }

    #[test]
    fn missing_fields_print_like_kubectl() {
        let cells = strings(&row("pods", &json!({"metadata": {"name": "p"}}), now()));
        assert_eq!(cells, vec!["p", "0/0", "", "0", "<unknown>", "<none>", "<none>", "<none>", "<none>"]);
        let cells = strings(&row("nodes", &json!({"metadata": {"name": "n"}}), now()));
        assert_eq!(
            cells,
            vec!["n", "Unknown", "<none>", "<unknown>", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"]
        );
    }

    #[test]
    fn running_pod_shows_ready_count_restarts_and_wide_columns() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-01-01T11:55:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.7"}],
                       "containerStatuses": [
                           {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}},
                            "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-01-01T11:59:00Z"}}},
                           {"name": "b", "ready": false, "restartCount": 0, "state": {"running": {}}}]}
        });
        let cells = strings(&row("pods", &pod, now()));
        assert_eq!(cells, vec!["web", "1/2", "Running", "2 (60s ago)", "5m", "10.0.0.7", "n1", "<none>", "<none>"]);
    }

    #[test]
    fn pod_status_shows_the_waiting_reason_init_progress_and_terminating() {
        let crashing = json!({
            "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "a", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        });
        assert_eq!(row("pods", &crashing, now())[2], "CrashLoopBackOff");
        assert_eq!(row("pods", &crashing, now())[3], "4");

        let initializing = json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
                {"name": "i2", "state": {"running": {}}}]}
        });
        assert_eq!(row("pods", &initializing, now())[2], "Init:1/2");

        let deleting = json!({"metadata": {"name": "p", "deletionTimestamp": "2025-01-01T11:00:00Z"},
                              "status": {"phase": "Running"}});
        assert_eq!(row("pods", &deleting, now())[2], "Terminating");
        let done = json!({"metadata": {"name": "p", "deletionTimestamp": "2025-01-01T11:00:00Z"},
                          "status": {"phase": "Succeeded"}});
        assert_eq!(row("pods", &done, now())[2], "Succeeded");
    }

    #[test]
    fn node_status_and_roles_follow_kubectl() {
        let node = json!({
            "metadata": {"name": "n1", "creationTimestamp": "2024-12-30T12:00:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": "",
                                    "kubernetes.io/hostname": "n1"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "Unknown"}],
                       "addresses": [{"type": "InternalIP", "address": "192.168.0.2"}],
                       "nodeInfo": {"kubeletVersion": "v1.37.0", "osImage": "Debian"}}
        });
        let cells = strings(&row("nodes", &node, now()));
        assert_eq!(
            cells,
            vec![
                "n1",
                "NotReady,SchedulingDisabled",
                "control-plane,worker",
                "2d",
                "v1.37.0",
                "192.168.0.2",
                "<none>",
                "Debian",
                "<unknown>",
                "<unknown>"
            ]
        );
    }

    #[test]
    fn workloads_show_counts_containers_and_selectors() {
        let deployment = json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-01-01T11:59:30Z"},
            "spec": {"replicas": 3,
                     "selector": {"matchLabels": {"app": "web"},
                                  "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]},
                                                       {"key": "canary", "operator": "DoesNotExist"}]},
                     "template": {"spec": {"containers": [{"name": "c", "image": "nginx:1"}, {"name": "s", "image": "envoy"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        let cells = row("deployments", &deployment, now());
        assert_eq!(
            cells,
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("30s"),
                json!("c,s"),
                json!("nginx:1,envoy"),
                json!("app=web,!canary,tier in (a,b)")
            ]
        );
        let replica_set = json!({"metadata": {"name": "web-1"}, "spec": {"replicas": 2}, "status": {"replicas": 2}});
        assert_eq!(
            row("replicasets", &replica_set, now()),
            vec![
                json!("web-1"),
                json!(2),
                json!(2),
                json!(0),
                json!("<unknown>"),
                json!(""),
                json!(""),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn services_and_endpoints_print_ports_and_addresses() {
        let service = json!({
            "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}],
                     "selector": {"app": "web", "tier": "fe"}}
        });
        let cells = strings(&row("services", &service, now()));
        assert_eq!(
            cells,
            vec!["web", "NodePort", "10.96.0.10", "<none>", "80:30080/TCP,53/UDP", "<unknown>", "app=web,tier=fe"]
        );
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": []}});
        assert_eq!(strings(&row("services", &lb, now()))[3], "<pending>");

        let endpoints = json!({"metadata": {"name": "web"}, "subsets": [{
            "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}],
            "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(row("endpoints", &endpoints, now())[1], "10.0.0.1:80,10.0.0.2:80,[fd00::3]:80 + 3 more...");
        assert_eq!(row("endpoints", &json!({"metadata": {"name": "x"}}), now())[1], "<none>");
    }

    #[test]
    fn events_name_their_object_and_source() {
        let event = json!({
            "metadata": {"name": "web.1"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{c}"},
            "reason": "Pulled", "type": "Normal", "message": " pulled image \n",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2025-01-01T11:00:00Z", "lastTimestamp": "2025-01-01T11:58:00Z", "count": 3
        });
        assert_eq!(
            row("events", &event, now()),
            vec![
                json!("2m"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web"),
                json!("spec.containers{c}"),
                json!("kubelet, n1"),
                json!("pulled image"),
                json!("60m"),
                json!(3),
                json!("web.1")
            ]
        );
    }

    #[test]
    fn namespaces_configmaps_and_leases_have_their_own_columns() {
        let ns = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
        assert_eq!(strings(&row("namespaces", &ns, now()))[1], "Active");
        let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(row("configmaps", &cm, now())[1], json!(3));
        let lease = json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "node-1"}});
        assert_eq!(row("leases", &lease, now())[1], "node-1");
        assert_eq!(columns("widgets").iter().map(|c| c.name).collect::<Vec<_>>(), vec!["Name", "Age"]);
    }
}
