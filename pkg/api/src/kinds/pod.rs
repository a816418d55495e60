//! Pod (core/v1): one or more containers run together on a node.
//!
//! Its strategy: a new pod starts `Pending` whatever status the client sent (the kubelet
//! owns the status); only images, `activeDeadlineSeconds` (downwards), tolerations (added)
//! and a negative grace period may change on update; a pod bound to a node and still
//! running is deleted gracefully: it is marked, its kubelet stops the containers within
//! the grace period and then deletes it for good.

use std::collections::BTreeSet;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus};
use serde_json::Value;

use crate::columns::{
    AGE, Column, NAME, at, column, flag, has_condition, int, list, or_none, since, since_timestamp, text, timestamp,
};
use crate::defaulting;
use crate::field::FieldError;
use crate::registry::{ResourceDef, Subresource};
use crate::strategy::{Strategy, StrategyFor};
use crate::validation;

/// The grace period of a pod that names none (`terminationGracePeriodSeconds`' default).
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    kind: "Pod",
    plural: "pods",
    singular: "pod",
    namespaced: true,
    short_names: &["po"],
    categories: &["all"],
    subresources: &[
        Subresource::Status,
        Subresource::Binding,
        Subresource::Log,
        Subresource::Eviction,
        Subresource::EphemeralContainers,
    ],
    field_labels: &[
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ],
    strategy: &StrategyFor::<Pod>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for Pod {
    fn set_defaults(&mut self) {
        defaulting::default_pod(self);
    }

    /// The status is the kubelet's: a new pod is `Pending`.
    fn prepare_for_create(&mut self) {
        self.status = Some(PodStatus { phase: Some("Pending".to_string()), ..Default::default() });
    }

    fn validate(&self) -> Vec<FieldError> {
        validation::validate_pod_spec(self.spec.as_ref().unwrap_or(&PodSpec::default()), "spec")
    }

    /// Ephemeral containers come through the `ephemeralcontainers` subresource only.
    fn validate_create(&self) -> Vec<FieldError> {
        let ephemeral = self.spec.as_ref().and_then(|spec| spec.ephemeral_containers.as_ref());
        if ephemeral.is_some_and(|list| !list.is_empty()) {
            return vec![FieldError::forbidden("spec.ephemeralContainers", "cannot be set on create")];
        }
        Vec::new()
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let empty = PodSpec::default();
        validation::validate_pod_spec_update(self.spec.as_ref().unwrap_or(&empty), old.spec.as_ref().unwrap_or(&empty))
    }

    /// Only a pod bound to a node and not finished waits (its kubelet stops it, then
    /// deletes it with grace 0): the client's period, else the pod's
    /// `terminationGracePeriodSeconds`, else 30 s.
    fn deletion_grace_period(&self, requested: Option<i64>) -> i64 {
        let spec = self.spec.as_ref();
        let bound = spec.and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
        let phase = self.status.as_ref().and_then(|s| s.phase.as_deref());
        if !bound || matches!(phase, Some("Succeeded" | "Failed")) {
            return 0;
        }
        requested
            .or_else(|| spec.and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS)
            .max(0)
    }
}

const COLUMNS: &[Column] = &[
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
    column("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness.", 1),
];

/// printers.go's `printPod`: readiness, the most telling reason, restarts and wide columns.
fn row(pod: &Value, now: Timestamp) -> Vec<Value> {
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

/// The fields an ephemeral container may not set (it gets no ports, probes, resources or
/// lifecycle hooks of its own), as Kubernetes' validation names them.
const EPHEMERAL_FORBIDDEN: [&str; 8] = [
    "ports",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "resources",
    "lifecycle",
    "resizePolicy",
    "restartPolicy",
];

/// The rules of the `ephemeralcontainers` subresource, from the old pod to the new one (both
/// as JSON): ephemeral containers are only added, never changed or removed; a new one has a
/// unique DNS-1123 name among all the pod's containers, an image, none of the fields of
/// [`EPHEMERAL_FORBIDDEN`], and a `targetContainerName` that names one of the pod's
/// containers.
pub fn validate_ephemeral_containers_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let path = "spec.ephemeralContainers";
    let list = |pod: &Value, key: &str| {
        pod.pointer(&format!("/spec/{key}")).and_then(Value::as_array).cloned().unwrap_or_default()
    };
    let name = |container: &Value| container.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    let (new_list, old_list) = (list(new, "ephemeralContainers"), list(old, "ephemeralContainers"));
    let mut errors = Vec::new();
    for existing in &old_list {
        match new_list.iter().find(|c| name(c) == name(existing)) {
            None => errors.push(FieldError::forbidden(
                path,
                format!("existing ephemeral containers \"{}\" may not be removed", name(existing)),
            )),
            Some(kept) if kept != existing => errors.push(FieldError::forbidden(
                path,
                format!("existing ephemeral containers \"{}\" may not be changed", name(existing)),
            )),
            Some(_) => {}
        }
    }
    let regular: Vec<String> =
        list(old, "containers").iter().chain(list(old, "initContainers").iter()).map(name).collect();
    let mut seen: BTreeSet<String> = regular.iter().cloned().collect();
    for (index, container) in new_list.iter().enumerate() {
        let field = format!("{path}[{index}]");
        let container_name = name(container);
        if old_list.iter().any(|c| name(c) == container_name) {
            seen.insert(container_name);
            continue;
        }
        if container_name.is_empty() {
            errors.push(FieldError::required(format!("{field}.name"), ""));
        } else if let Some(problem) = validation::is_dns1123_label(&container_name).into_iter().next() {
            errors.push(FieldError::invalid(format!("{field}.name"), &container_name, problem));
        } else if !seen.insert(container_name.clone()) {
            errors.push(FieldError::duplicate(format!("{field}.name"), &container_name));
        }
        if container.get("image").and_then(Value::as_str).is_none_or(str::is_empty) {
            errors.push(FieldError::required(format!("{field}.image"), ""));
        }
        for key in EPHEMERAL_FORBIDDEN {
            // Empty counts as unset (kubectl debug sends `resources: {}`).
            let empty = |value: &Value| {
                value.is_null()
                    || value.as_object().is_some_and(serde_json::Map::is_empty)
                    || value.as_array().is_some_and(Vec::is_empty)
            };
            if container.get(key).is_some_and(|value| !empty(value)) {
                errors
                    .push(FieldError::forbidden(format!("{field}.{key}"), "cannot be set for an Ephemeral Container"));
            }
        }
        if let Some(target) = container.get("targetContainerName").and_then(Value::as_str)
            && !regular.iter().any(|c| c == target)
        {
            let detail = "must be the name of a container or init container of the pod";
            errors.push(FieldError::invalid(format!("{field}.targetContainerName"), target, detail));
        }
    }
    errors
}

#[cfg(test)]
mod ephemeral_tests {
    use super::*;
    use serde_json::json;

    fn pod(ephemeral: Value) -> Value {
        json!({"spec": {"containers": [{"name": "main", "image": "app"}], "ephemeralContainers": ephemeral}})
    }

    #[test]
    fn ephemeral_containers_are_only_added_and_checked() {
        let debugger = json!({"name": "debugger", "image": "busybox", "targetContainerName": "main", "stdin": true});
        let old = pod(json!(null));
        assert!(validate_ephemeral_containers_update(&pod(json!([debugger.clone()])), &old).is_empty());

        let with = pod(json!([debugger.clone()]));
        let removed = validate_ephemeral_containers_update(&pod(json!([])), &with);
        assert!(removed[0].detail.contains("may not be removed"), "{removed:?}");
        let changed = json!({"name": "debugger", "image": "other", "targetContainerName": "main", "stdin": true});
        assert!(
            validate_ephemeral_containers_update(&pod(json!([changed])), &with)[0]
                .detail
                .contains("may not be changed")
        );

        let bad = json!([{"name": "main", "ports": [{"containerPort": 80}], "targetContainerName": "nope"}]);
        let fields: Vec<String> =
            validate_ephemeral_containers_update(&pod(bad), &old).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "spec.ephemeralContainers[0].name",
                "spec.ephemeralContainers[0].image",
                "spec.ephemeralContainers[0].ports",
                "spec.ephemeralContainers[0].targetContainerName"
            ]
        );
    }
}
