//! Node (core/v1): a machine that runs pods, registered by its kubelet.
//!
//! Its strategy: `status.allocatable` defaults to the capacity; taints are checked;
//! `podCIDRs` and `providerID` may be set once, never changed.

use std::collections::{BTreeSet, HashSet};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, NodeSpec};
use serde_json::Value;

use crate::columns::{AGE, Column, NAME, at, column, flag, list, or_none, since, text};
use crate::field::FieldError;
use crate::registry::{ResourceDef, Subresource};
use crate::strategy::{Strategy, StrategyFor};
use crate::validation::{is_qualified_name, is_valid_label_value, validate_taint_effect};

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    kind: "Node",
    plural: "nodes",
    singular: "node",
    namespaced: false,
    short_names: &["no"],
    categories: &[],
    subresources: &[Subresource::Status],
    field_labels: &["spec.unschedulable"],
    strategy: &StrategyFor::<Node>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for Node {
    /// `status.allocatable` is a copy of `status.capacity` when missing.
    fn set_defaults(&mut self) {
        if let Some(status) = self.status.as_mut()
            && status.allocatable.is_none()
        {
            status.allocatable = status.capacity.clone();
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        validate_node_spec(self.spec.as_ref().unwrap_or(&NodeSpec::default()))
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let empty = NodeSpec::default();
        validate_node_update(self.spec.as_ref().unwrap_or(&empty), old.spec.as_ref().unwrap_or(&empty))
    }
}

/// Checks a Node's spec: taints with qualified-name keys, label-value values, a known
/// effect, and unique per key and effect.
pub fn validate_node_spec(spec: &NodeSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for (i, taint) in spec.taints.iter().flatten().enumerate() {
        let at = format!("spec.taints[{i}]");
        errs.extend(
            is_qualified_name(&taint.key).into_iter().map(|m| FieldError::invalid(format!("{at}.key"), &taint.key, m)),
        );
        let value = taint.value.as_deref().unwrap_or_default();
        let msgs = is_valid_label_value(value);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(format!("{at}.value"), value, msgs.join(";")));
        }
        validate_taint_effect(&taint.effect, false, &format!("{at}.effect"), &mut errs);
        if !seen.insert((taint.key.as_str(), taint.effect.as_str())) {
            let mut err = FieldError::duplicate(&at, format!("{}:{}", taint.key, taint.effect));
            err.detail = "taints must be unique by key and effect pair".to_string();
            errs.push(err);
        }
    }
    errs
}

/// Checks a Node update: `podCIDRs` and `providerID` may be set once, never changed.
pub fn validate_node_update(new: &NodeSpec, old: &NodeSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if old.pod_cidrs.as_ref().is_some_and(|c| !c.is_empty()) && new.pod_cidrs != old.pod_cidrs {
        errs.push(FieldError::forbidden(
            "spec.podCIDRs",
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    let old_provider = old.provider_id.as_deref().unwrap_or_default();
    if !old_provider.is_empty() && new.provider_id.as_deref().unwrap_or_default() != old_provider {
        errs.push(FieldError::forbidden(
            "spec.providerID",
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
    errs
}

const COLUMNS: &[Column] = &[
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
];

/// printers.go's `printNode`: Ready condition, cordon, roles from labels, node info.
fn row(node: &Value, now: Timestamp) -> Vec<Value> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::tests::fields;
    use serde_json::json;

    #[test]
    fn node_taints_are_unique_by_key_and_effect() {
        let spec: NodeSpec = serde_json::from_value(json!({"taints": [
            {"key": "k", "effect": "NoSchedule"}, {"key": "k", "effect": "NoSchedule"}, {"key": "k", "effect": "Sometimes"}
        ]}))
        .expect("valid node spec");
        assert_eq!(fields(&validate_node_spec(&spec)), vec!["spec.taints[1]", "spec.taints[2].effect"]);
    }

    #[test]
    fn node_pod_cidrs_and_provider_id_are_set_once() {
        let old = NodeSpec {
            pod_cidrs: Some(vec!["10.244.0.0/24".into()]),
            provider_id: Some("p".into()),
            ..Default::default()
        };
        let new = NodeSpec {
            pod_cidrs: Some(vec!["10.244.1.0/24".into()]),
            provider_id: Some("q".into()),
            ..Default::default()
        };
        assert_eq!(fields(&validate_node_update(&new, &old)), vec!["spec.podCIDRs", "spec.providerID"]);
        assert!(validate_node_update(&old, &NodeSpec::default()).is_empty());
    }
}
