//! DaemonSet (apps/v1): one pod of its template on every eligible node (the controller-manager's
//! `daemonset` controller decides which nodes; the scheduler places each pod on its node).
//!
//! Its strategy, as Kubernetes' apps/v1 defaulters and validation: `updateStrategy:
//! RollingUpdate` with `maxUnavailable: 1` and `maxSurge: 0`, `revisionHistoryLimit: 10` and
//! the template's pod defaults; a new DaemonSet's status is reset; the selector must match the
//! template's labels (pods restart `Always`) and never changes; `maxUnavailable` and
//! `maxSurge` are numbers or percentages, not both 0.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::columns::{
    AGE, CONTAINERS_DESCRIPTION, Column, IMAGES_DESCRIPTION, NAME, age_cell, at, column, container_cells,
    format_selector, int, name_cell,
};
use crate::defaulting;
use crate::field::FieldError;
use crate::registry::{ResourceDef, Subresource};
use crate::strategy::{Strategy, StrategyFor};
use crate::validation::{self, int_or_percent, non_negative, validate_controller_template};

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "apps",
    version: "v1",
    kind: "DaemonSet",
    plural: "daemonsets",
    singular: "daemonset",
    namespaced: true,
    short_names: &["ds"],
    categories: &["all"],
    subresources: &[Subresource::Status],
    field_labels: &[],
    strategy: &StrategyFor::<DaemonSet>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for DaemonSet {
    fn set_defaults(&mut self) {
        let spec = &mut self.spec;
        let strategy = spec.update_strategy.get_or_insert_with(DaemonSetUpdateStrategy::default);
        if strategy.type_.as_deref().is_none_or(str::is_empty) {
            strategy.type_ = Some("RollingUpdate".into());
        }
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            let rolling = strategy.rolling_update.get_or_insert_with(RollingUpdateDaemonSet::default);
            rolling.max_unavailable.get_or_insert(IntOrString::Int(1));
            rolling.max_surge.get_or_insert(IntOrString::Int(0));
        }
        spec.revision_history_limit.get_or_insert(10);
        defaulting::default_pod_template(&mut spec.template);
    }

    /// The status is the controller's.
    fn prepare_for_create(&mut self) {
        self.status = Some(DaemonSetStatus::default());
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = &self.spec;
        validate_controller_template(&spec.selector, Some(&spec.template), &["Always"], &mut errs);
        non_negative(spec.min_ready_seconds, "spec.minReadySeconds", &mut errs);
        non_negative(spec.revision_history_limit, "spec.revisionHistoryLimit", &mut errs);
        let strategy = spec.update_strategy.as_ref();
        match strategy.and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") {
            "OnDelete" => {}
            "RollingUpdate" => {
                let path = "spec.updateStrategy.rollingUpdate";
                let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
                let unavailable = rolling
                    .and_then(|r| r.max_unavailable.as_ref())
                    .and_then(|v| int_or_percent(v, &format!("{path}.maxUnavailable"), &mut errs));
                let surge = rolling
                    .and_then(|r| r.max_surge.as_ref())
                    .and_then(|v| int_or_percent(v, &format!("{path}.maxSurge"), &mut errs));
                if unavailable.unwrap_or(0) == 0 && surge.unwrap_or(0) == 0 {
                    errs.push(FieldError::invalid(
                        format!("{path}.maxUnavailable"),
                        unavailable.unwrap_or(0),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
            }
            other => {
                errs.push(FieldError::not_supported("spec.updateStrategy.type", other, &["OnDelete", "RollingUpdate"]))
            }
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        validation::validate_selector_update(&self.spec.selector, &old.spec.selector)
    }
}

const COLUMNS: &[Column] = &[
    NAME,
    column(
        "Desired",
        "integer",
        "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).",
        0,
    ),
    column(
        "Current",
        "integer",
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
        0,
    ),
    column(
        "Ready",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
        0,
    ),
    column("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod", 0),
    column(
        "Available",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
        0,
    ),
    column(
        "Node Selector",
        "string",
        "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node.",
        0,
    ),
    AGE,
    column("Containers", "string", CONTAINERS_DESCRIPTION, 1),
    column("Images", "string", IMAGES_DESCRIPTION, 1),
    column("Selector", "string", "A label query over pods that are managed by the daemon set.", 1),
];

/// printers.go's `printDaemonSet`.
fn row(ds: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(ds);
    let node_selector = at(ds, &["spec", "template", "spec", "nodeSelector"])
        .and_then(Value::as_object)
        .map(|labels| {
            let mut pairs: Vec<String> =
                labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect();
            pairs.sort();
            pairs.join(",")
        })
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "<none>".into());
    vec![
        name_cell(ds),
        Value::from(int(ds, &["status", "desiredNumberScheduled"])),
        Value::from(int(ds, &["status", "currentNumberScheduled"])),
        Value::from(int(ds, &["status", "numberReady"])),
        Value::from(int(ds, &["status", "updatedNumberScheduled"])),
        Value::from(int(ds, &["status", "numberAvailable"])),
        node_selector.into(),
        age_cell(ds, now),
        containers.into(),
        images.into(),
        format_selector(at(ds, &["spec", "selector"])).into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn daemon_set(extra: Value) -> DaemonSet {
        let mut body = json!({"metadata": {"name": "agent", "namespace": "kube-system"}, "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "a", "image": "agent"}]}}}});
        if let (Some(spec), Some(extra)) = (body["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        let mut ds: DaemonSet = serde_json::from_value(body).expect("daemonset");
        ds.set_defaults();
        ds
    }

    #[test]
    fn a_daemon_set_rolls_one_node_at_a_time_by_default() {
        let ds = daemon_set(json!({}));
        let strategy = serde_json::to_value(&ds.spec.update_strategy).expect("json");
        assert_eq!(strategy, json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}));
        assert!(ds.validate().is_empty(), "{:?}", ds.validate());
    }

    #[test]
    fn strategies_and_selectors_are_checked() {
        let zero = daemon_set(
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}}),
        );
        assert_eq!(zero.validate()[0].field, "spec.updateStrategy.rollingUpdate.maxUnavailable");
        let odd = daemon_set(json!({"updateStrategy": {"type": "Sometimes"}}));
        assert_eq!(odd.validate()[0].field, "spec.updateStrategy.type");
        let old = daemon_set(json!({}));
        let mut moved = old.clone();
        moved.spec.selector.match_labels = Some([("app".to_string(), "other".to_string())].into());
        assert_eq!(moved.validate_update(&old).len(), 1);
    }

    #[test]
    fn rows_show_the_counts_and_the_node_selector() {
        let ds = json!({"metadata": {"name": "agent"}, "spec": {"template": {"spec": {"nodeSelector": {"disk": "ssd"}, "containers": []}}},
            "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1, "updatedNumberScheduled": 2, "numberAvailable": 1}});
        assert_eq!(
            row(&ds, Timestamp::now())[..7],
            [json!("agent"), json!(2), json!(2), json!(1), json!(2), json!(1), json!("disk=ssd")]
        );
    }
}
