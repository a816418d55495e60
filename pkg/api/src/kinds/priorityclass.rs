//! PriorityClass (scheduling.k8s.io/v1): a named pod priority. A pod's
//! `priorityClassName` is resolved into `spec.priority` at admission (the apiserver's
//! priority plugin), and the scheduler places higher priorities first.
//!
//! Its strategy, as Kubernetes':
//! - names starting with `system-` are reserved for the two built-in classes
//!   ([`SYSTEM_CLUSTER_CRITICAL`], [`SYSTEM_NODE_CRITICAL`]), which the apiserver creates at
//!   start with their fixed values;
//! - a user class's value is at most [`HIGHEST_USER_DEFINABLE_PRIORITY`] (one billion);
//! - `preemptionPolicy` defaults to `PreemptLowerPriority`; neither it nor `value` may change.

use jiff::Timestamp;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use serde_json::Value;

use crate::columns::{AGE, Column, NAME, age_cell, at, column, flag, name_cell, text};
use crate::field::FieldError;
use crate::registry::ResourceDef;
use crate::strategy::{Strategy, StrategyFor};

/// The highest value a user's class may have.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i32 = 1_000_000_000;
/// The built-in class for cluster add-ons that must run.
pub const SYSTEM_CLUSTER_CRITICAL: (&str, i32) = ("system-cluster-critical", 2_000_000_000);
/// The built-in class for what a node cannot work without.
pub const SYSTEM_NODE_CRITICAL: (&str, i32) = ("system-node-critical", 2_000_001_000);
/// The built-in classes, created by the apiserver at start.
pub const SYSTEM_CLASSES: [(&str, i32); 2] = [SYSTEM_NODE_CRITICAL, SYSTEM_CLUSTER_CRITICAL];
/// The prefix reserved for [`SYSTEM_CLASSES`].
pub const SYSTEM_PREFIX: &str = "system-";
/// The default `preemptionPolicy`.
pub const PREEMPT_LOWER_PRIORITY: &str = "PreemptLowerPriority";
const PREEMPTION_POLICIES: &[&str] = &[PREEMPT_LOWER_PRIORITY, "Never"];

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "scheduling.k8s.io",
    version: "v1",
    kind: "PriorityClass",
    plural: "priorityclasses",
    singular: "priorityclass",
    namespaced: false,
    short_names: &["pc"],
    categories: &[],
    subresources: &[],
    field_labels: &[],
    strategy: &StrategyFor::<PriorityClass>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for PriorityClass {
    fn set_defaults(&mut self) {
        self.value.get_or_insert(0);
        if self.preemption_policy.as_deref().is_none_or(str::is_empty) {
            self.preemption_policy = Some(PREEMPT_LOWER_PRIORITY.to_string());
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        validate_priority_class(self)
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if self.value != old.value {
            errs.push(FieldError::forbidden("value", "may not be changed in an update."));
        }
        if self.preemption_policy != old.preemption_policy {
            errs.push(FieldError::invalid(
                "preemptionPolicy",
                self.preemption_policy.as_deref().unwrap_or_default(),
                "field is immutable",
            ));
        }
        errs
    }
}

/// Checks a PriorityClass: the reserved prefix, the highest user value, a known policy.
pub fn validate_priority_class(class: &PriorityClass) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = class.metadata.name.as_deref().unwrap_or_default();
    let value = class.value.unwrap_or(0);
    if name.starts_with(SYSTEM_PREFIX) {
        match SYSTEM_CLASSES.iter().find(|(system, _)| *system == name) {
            Some((_, fixed)) if *fixed == value => {}
            Some((_, fixed)) => errs.push(FieldError::forbidden(
                "metadata.name",
                format!("{name} is a system priority class whose value must be {fixed}"),
            )),
            None => errs.push(FieldError::forbidden(
                "metadata.name",
                format!("priority class names with '{SYSTEM_PREFIX}' prefix are reserved for system use only"),
            )),
        }
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        errs.push(FieldError::forbidden(
            "value",
            format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"),
        ));
    }
    if let Some(policy) = class.preemption_policy.as_deref().filter(|p| !PREEMPTION_POLICIES.contains(p)) {
        errs.push(FieldError::not_supported("preemptionPolicy", policy, PREEMPTION_POLICIES));
    }
    errs
}

const COLUMNS: &[Column] = &[
    NAME,
    column(
        "Value",
        "integer",
        "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.",
        0,
    ),
    column(
        "Global-Default",
        "boolean",
        "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class.",
        0,
    ),
    AGE,
    column("PreemptionPolicy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority.", 0),
];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        at(obj, &["value"]).cloned().unwrap_or(Value::from(0)),
        Value::from(flag(obj, &["globalDefault"])),
        age_cell(obj, now),
        Value::from(text(obj, &["preemptionPolicy"])),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::tests::fields;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn class(name: &str, value: i32) -> PriorityClass {
        PriorityClass {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            value: Some(value),
            ..Default::default()
        }
    }

    #[test]
    fn system_names_are_reserved_and_user_values_capped() {
        assert!(validate_priority_class(&class("high", HIGHEST_USER_DEFINABLE_PRIORITY)).is_empty());
        assert_eq!(fields(&validate_priority_class(&class("higher", HIGHEST_USER_DEFINABLE_PRIORITY + 1))), ["value"]);
        assert_eq!(fields(&validate_priority_class(&class("system-mine", 5))), ["metadata.name"]);
        assert!(validate_priority_class(&class(SYSTEM_NODE_CRITICAL.0, SYSTEM_NODE_CRITICAL.1)).is_empty());
        assert_eq!(fields(&validate_priority_class(&class(SYSTEM_NODE_CRITICAL.0, 7))), ["metadata.name"]);
    }

    #[test]
    fn value_and_policy_are_fixed_once_created() {
        let mut old = class("batch", 10);
        old.set_defaults();
        assert_eq!(old.preemption_policy.as_deref(), Some(PREEMPT_LOWER_PRIORITY));
        let mut new = old.clone();
        new.value = Some(11);
        new.preemption_policy = Some("Never".into());
        assert_eq!(fields(&new.validate_update(&old)), ["value", "preemptionPolicy"]);
        let mut described = old.clone();
        described.description = Some("for batch jobs".into());
        assert!(described.validate_update(&old).is_empty());
    }
}
