//! Lease (coordination.k8s.io/v1): a named, renewable claim, for node heartbeats and
//! leader election.
//!
//! Its strategy: a positive `leaseDurationSeconds`, non-negative `leaseTransitions`.

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use serde_json::Value;

use crate::columns::{AGE, Column, NAME, age_cell, column, name_cell, text};
use crate::field::FieldError;
use crate::registry::ResourceDef;
use crate::strategy::{Strategy, StrategyFor};
use crate::validation::non_negative;

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "coordination.k8s.io",
    version: "v1",
    kind: "Lease",
    plural: "leases",
    singular: "lease",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: &[],
    strategy: &StrategyFor::<Lease>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for Lease {
    fn validate(&self) -> Vec<FieldError> {
        validate_lease_spec(self.spec.as_ref().unwrap_or(&LeaseSpec::default()))
    }
}

/// Checks a Lease's spec: a positive `leaseDurationSeconds`, non-negative `leaseTransitions`.
pub fn validate_lease_spec(spec: &LeaseSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(duration) = spec.lease_duration_seconds.filter(|d| *d <= 0) {
        errs.push(FieldError::invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"));
    }
    non_negative(spec.lease_transitions, "spec.leaseTransitions", &mut errs);
    errs
}

const COLUMNS: &[Column] = &[
    NAME,
    column("Holder", "string", "holderIdentity contains the identity of the holder of a current lease.", 0),
    AGE,
];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name_cell(obj), Value::from(text(obj, &["spec", "holderIdentity"])), age_cell(obj, now)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::tests::fields;

    #[test]
    fn lease_durations_are_positive() {
        let spec = LeaseSpec { lease_duration_seconds: Some(0), lease_transitions: Some(-1), ..Default::default() };
        assert_eq!(fields(&validate_lease_spec(&spec)), vec!["spec.leaseDurationSeconds", "spec.leaseTransitions"]);
    }
}
