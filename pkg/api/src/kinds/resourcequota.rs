//! ResourceQuota (core/v1): a namespace's ceiling on what its objects may use in all — pods,
//! CPU and memory requests and limits, object counts (`count/deployments.apps`).
//!
//! The kind only holds the numbers; enforcement is elsewhere: the apiserver's
//! `ResourceQuota` admission refuses a create that would go over `spec.hard` and adds its
//! cost to `status.used`, and the controller-manager's resource-quota controller recomputes
//! `status.used` from what exists. What an object costs is [`crate::quota`]'s.
//!
//! Its strategy, as Kubernetes': `status` is a subresource a new quota starts without;
//! every `hard` entry is a valid resource name with a non-negative amount; scopes are the
//! known ones, and `scopeSelector` names `PriorityClass` or a known scope.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ResourceQuota;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;

use crate::columns::{AGE, Column, NAME, age_cell, at, column, name_cell};
use crate::field::FieldError;
use crate::quantity::parse_milli;
use crate::quota;
use crate::registry::{ResourceDef, Subresource};
use crate::strategy::{Strategy, StrategyFor};
use crate::validation::is_qualified_name;

/// The scopes a quota may name.
pub const SCOPES: &[&str] = &["Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass"];
const OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist"];

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    kind: "ResourceQuota",
    plural: "resourcequotas",
    singular: "resourcequota",
    namespaced: true,
    short_names: &["quota"],
    categories: &[],
    subresources: &[Subresource::Status],
    field_labels: &[],
    strategy: &StrategyFor::<ResourceQuota>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for ResourceQuota {
    fn prepare_for_create(&mut self) {
        self.status = None;
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = self.spec.clone().unwrap_or_default();
        validate_resource_list(spec.hard.as_ref(), "spec.hard", &mut errs);
        if let Some(status) = &self.status {
            validate_resource_list(status.hard.as_ref(), "status.hard", &mut errs);
            validate_resource_list(status.used.as_ref(), "status.used", &mut errs);
        }
        for (i, scope) in spec.scopes.iter().flatten().enumerate() {
            if !SCOPES.contains(&scope.as_str()) || scope == "PriorityClass" {
                errs.push(FieldError::not_supported(format!("spec.scopes[{i}]"), scope, &SCOPES[..4]));
            }
        }
        let expressions = spec.scope_selector.and_then(|s| s.match_expressions).unwrap_or_default();
        for (i, expression) in expressions.iter().enumerate() {
            let path = format!("spec.scopeSelector.matchExpressions[{i}]");
            if !SCOPES.contains(&expression.scope_name.as_str()) {
                errs.push(FieldError::not_supported(format!("{path}.scopeName"), &expression.scope_name, SCOPES));
            }
            if !OPERATORS.contains(&expression.operator.as_str()) {
                errs.push(FieldError::not_supported(format!("{path}.operator"), &expression.operator, OPERATORS));
            }
            let values = expression.values.as_ref().map_or(0, Vec::len);
            let needs_values = matches!(expression.operator.as_str(), "In" | "NotIn");
            if needs_values && values == 0 {
                errs.push(FieldError::required(
                    format!("{path}.values"),
                    "must be specified when `operator` is 'In' or 'NotIn'",
                ));
            } else if !needs_values && values > 0 {
                errs.push(FieldError::invalid(
                    format!("{path}.values"),
                    values,
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ));
            }
        }
        errs
    }
}

/// Each entry a qualified resource name with a non-negative amount.
pub(crate) fn validate_resource_list(
    list: Option<&std::collections::BTreeMap<String, Quantity>>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    for (name, amount) in list.into_iter().flatten() {
        let problems = is_qualified_name(name);
        if let Some(problem) = problems.first() {
            errs.push(FieldError::invalid(format!("{path}[{name}]"), name, problem.clone()));
        }
        match parse_milli(&amount.0) {
            Ok(milli) if milli < 0 => {
                errs.push(FieldError::invalid(
                    format!("{path}[{name}]"),
                    &amount.0,
                    "must be greater than or equal to 0",
                ));
            }
            Ok(_) => {}
            Err(error) => errs.push(FieldError::invalid(format!("{path}[{name}]"), &amount.0, error.to_string())),
        }
    }
}

const COLUMNS: &[Column] = &[
    NAME,
    AGE,
    column("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume.", 0),
    column(
        "Limit",
        "string",
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
        0,
    ),
];

/// `Request` and `Limit` read `pods: 1/10, requests.cpu: 500m/2` from the status, as
/// printers.go writes them (`limits.*` under `Limit`, the rest under `Request`).
fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let hard = quota::parse_list(at(obj, &["status", "hard"]));
    let used = quota::parse_list(at(obj, &["status", "used"]));
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for (name, amount) in &hard {
        let used = quota::format(name, used.get(name).copied().unwrap_or(0));
        let cell = format!("{name}: {used}/{}", quota::format(name, *amount));
        if name.starts_with("limits.") { limits.push(cell) } else { requests.push(cell) }
    }
    vec![name_cell(obj), age_cell(obj, now), Value::from(requests.join(", ")), Value::from(limits.join(", "))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::tests::fields;
    use serde_json::json;

    fn quota(spec: Value) -> ResourceQuota {
        serde_json::from_value(json!({"metadata": {"name": "q", "namespace": "default"}, "spec": spec})).expect("quota")
    }

    #[test]
    fn hard_amounts_and_scopes_are_checked() {
        assert!(
            quota(json!({"hard": {"pods": "10", "requests.cpu": "2", "count/deployments.apps": "3"}}))
                .validate()
                .is_empty()
        );
        let bad = quota(json!({"hard": {"pods": "-1", "cpu": "lots"}, "scopes": ["Sometimes"],
            "scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In"}]}}));
        assert_eq!(
            fields(&bad.validate()),
            ["spec.hard[cpu]", "spec.hard[pods]", "spec.scopes[0]", "spec.scopeSelector.matchExpressions[0].values"]
        );
    }

    #[test]
    fn a_new_quota_has_no_status_and_the_row_shows_used_over_hard() {
        let mut q = quota(json!({"hard": {"pods": "2"}}));
        q.status = Some(Default::default());
        q.prepare_for_create();
        assert!(q.status.is_none());
        let obj = json!({"metadata": {"name": "compute"}, "status": {
            "hard": {"pods": "10", "requests.cpu": "2", "limits.memory": "1Gi"},
            "used": {"pods": "1", "requests.cpu": "500m"}}});
        let cells = row(&obj, Timestamp::now());
        assert_eq!(cells[2], "pods: 1/10, requests.cpu: 500m/2");
        assert_eq!(cells[3], "limits.memory: 0/1Gi");
    }
}
