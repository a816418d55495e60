//! ReplicaSet (apps/v1): keeps `spec.replicas` copies of a pod template running.
//!
//! Its strategy: `replicas: 1` by default; a new ReplicaSet's status is reset (the
//! controller writes it); the selector must match the template's labels and never
//! changes.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use serde_json::Value;

use crate::columns::{
    AGE, CONTAINERS_DESCRIPTION, Column, IMAGES_DESCRIPTION, NAME, age_cell, at, column, container_cells,
    format_selector, int, name_cell,
};
use crate::defaulting;
use crate::field::FieldError;
use crate::registry::{ResourceDef, Subresource};
use crate::strategy::{Strategy, StrategyFor};
use crate::validation;

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "apps",
    version: "v1",
    kind: "ReplicaSet",
    plural: "replicasets",
    singular: "replicaset",
    namespaced: true,
    short_names: &["rs"],
    categories: &["all"],
    subresources: &[Subresource::Status, Subresource::Scale],
    field_labels: &["status.replicas"],
    strategy: &StrategyFor::<ReplicaSet>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for ReplicaSet {
    fn set_defaults(&mut self) {
        defaulting::default_replica_set(self);
    }

    /// The status is the controller's.
    fn prepare_for_create(&mut self) {
        self.status = Some(ReplicaSetStatus::default());
    }

    fn validate(&self) -> Vec<FieldError> {
        validation::validate_replica_set_spec(&self.spec)
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        validation::validate_selector_update(&self.spec.selector, &old.spec.selector)
    }
}

const COLUMNS: &[Column] = &[
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
];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(obj);
    vec![
        name_cell(obj),
        Value::from(int(obj, &["spec", "replicas"])),
        Value::from(int(obj, &["status", "replicas"])),
        Value::from(int(obj, &["status", "readyReplicas"])),
        age_cell(obj, now),
        containers.into(),
        images.into(),
        format_selector(at(obj, &["spec", "selector"])).into(),
    ]
}
