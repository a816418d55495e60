//! PodDisruptionBudget (policy/v1): how many of an application's pods must stay up through
//! voluntary disruptions — evictions, such as `kubectl drain` makes.
//!
//! The apiserver's `pods/eviction` refuses (429) an eviction the budget does not allow; the
//! controller-manager's disruption controller keeps `status` (`disruptionsAllowed`,
//! `currentHealthy`, `desiredHealthy`, `expectedPods`) current.
//!
//! Its strategy, as Kubernetes': exactly one of `minAvailable` and `maxUnavailable`, each
//! a non-negative integer or a percentage up to 100%; `unhealthyPodEvictionPolicy` is
//! `IfHealthyBudget` or `AlwaysAllow`; `status` is a subresource a new budget starts
//! without; a change of the spec moves `metadata.generation` (generic).

use jiff::Timestamp;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::columns::{AGE, Column, NAME, age_cell, at, column, name_cell};
use crate::field::FieldError;
use crate::registry::{ResourceDef, Subresource};
use crate::strategy::{Strategy, StrategyFor};
use crate::validation::validate_label_selector;

const EVICTION_POLICIES: &[&str] = &["IfHealthyBudget", "AlwaysAllow"];

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "policy",
    version: "v1",
    kind: "PodDisruptionBudget",
    plural: "poddisruptionbudgets",
    singular: "poddisruptionbudget",
    namespaced: true,
    short_names: &["pdb"],
    categories: &[],
    subresources: &[Subresource::Status],
    field_labels: &[],
    strategy: &StrategyFor::<PodDisruptionBudget>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for PodDisruptionBudget {
    fn prepare_for_create(&mut self) {
        self.status = None;
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = self.spec.clone().unwrap_or_default();
        match (&spec.min_available, &spec.max_unavailable) {
            (Some(_), Some(_)) => errs.push(FieldError::invalid(
                "spec",
                "minAvailable and maxUnavailable",
                "minAvailable and maxUnavailable cannot be both set",
            )),
            (Some(value), None) => validate_amount(value, "spec.minAvailable", &mut errs),
            (None, Some(value)) => validate_amount(value, "spec.maxUnavailable", &mut errs),
            (None, None) => {}
        }
        if let Some(selector) = &spec.selector {
            errs.extend(validate_label_selector(selector, "spec.selector"));
        }
        if let Some(policy) = spec.unhealthy_pod_eviction_policy.as_deref().filter(|p| !EVICTION_POLICIES.contains(p)) {
            errs.push(FieldError::not_supported("spec.unhealthyPodEvictionPolicy", policy, EVICTION_POLICIES));
        }
        errs
    }
}

/// A non-negative integer, or a percentage between 0% and 100%.
fn validate_amount(value: &IntOrString, path: &str, errs: &mut Vec<FieldError>) {
    match value {
        IntOrString::Int(n) if *n < 0 => errs.push(FieldError::invalid(path, n, "must be greater than or equal to 0")),
        IntOrString::Int(_) => {}
        IntOrString::String(text) => match percent(text) {
            Some(p) if p <= 100 => {}
            Some(_) => errs.push(FieldError::invalid(path, text, "must not be greater than 100%")),
            None => errs.push(FieldError::invalid(
                path,
                text,
                "a valid percent string must be a numeric string followed by an ending '%'",
            )),
        },
    }
}

/// `"50%"` → 50.
pub fn percent(text: &str) -> Option<u32> {
    text.strip_suffix('%')?.parse().ok()
}

/// An `IntOrString` amount of `total`: the integer, or the percentage of `total` rounded up
/// (Kubernetes' `GetScaledValueFromIntOrPercent` with rounding up, as the disruption
/// controller uses it).
pub fn scaled(value: &IntOrString, total: i32) -> Option<i32> {
    match value {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(text) => {
            let p = i64::from(percent(text)?);
            i32::try_from((p * i64::from(total) + 99) / 100).ok()
        }
    }
}

const COLUMNS: &[Column] = &[
    NAME,
    column(
        "Min Available",
        "string",
        "The minimum number of pods that must be available simultaneously. This can be either an integer or a string specifying a percentage, e.g. \"28%\".",
        0,
    ),
    column(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable simultaneously. This can be either an integer or a string specifying a percentage, e.g. \"28%\".",
        0,
    ),
    column("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time.", 0),
    AGE,
];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let amount = |field: &str| match at(obj, &["spec", field]) {
        Some(Value::Number(n)) => Value::from(n.to_string()),
        Some(Value::String(s)) => Value::from(s.clone()),
        _ => Value::from("N/A"),
    };
    vec![
        name_cell(obj),
        amount("minAvailable"),
        amount("maxUnavailable"),
        at(obj, &["status", "disruptionsAllowed"]).cloned().unwrap_or(Value::from(0)),
        age_cell(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::tests::fields;
    use serde_json::json;

    fn pdb(spec: Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})).expect("pdb")
    }

    #[test]
    fn one_of_min_available_and_max_unavailable_within_bounds() {
        assert!(pdb(json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}})).validate().is_empty());
        assert!(pdb(json!({"maxUnavailable": "25%"})).validate().is_empty());
        assert_eq!(fields(&pdb(json!({"minAvailable": 1, "maxUnavailable": 1})).validate()), ["spec"]);
        assert_eq!(fields(&pdb(json!({"minAvailable": "150%"})).validate()), ["spec.minAvailable"]);
        assert_eq!(fields(&pdb(json!({"maxUnavailable": -1})).validate()), ["spec.maxUnavailable"]);
        assert_eq!(fields(&pdb(json!({"maxUnavailable": "half"})).validate()), ["spec.maxUnavailable"]);
    }

    #[test]
    fn percentages_scale_and_round_up() {
        assert_eq!(scaled(&IntOrString::String("50%".into()), 3), Some(2));
        assert_eq!(scaled(&IntOrString::String("0%".into()), 3), Some(0));
        assert_eq!(scaled(&IntOrString::Int(4), 3), Some(4));
        let cells = row(
            &json!({"metadata": {"name": "web"}, "spec": {"minAvailable": 2}, "status": {"disruptionsAllowed": 1}}),
            Timestamp::now(),
        );
        assert_eq!((cells[1].clone(), cells[2].clone(), cells[3].clone()), (json!("2"), json!("N/A"), json!(1)));
    }
}
