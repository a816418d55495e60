//! Deployment (apps/v1): rolls a pod template out through ReplicaSets.
//!
//! Its strategy: defaults as apps/v1 (`replicas: 1`, `RollingUpdate` with 25% surge and
//! unavailability, history limit 10, progress deadline 600 s); a new Deployment's status
//! is reset (the controller writes it); the ReplicaSet rules plus a valid strategy; the
//! selector never changes.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
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
    kind: "Deployment",
    plural: "deployments",
    singular: "deployment",
    namespaced: true,
    short_names: &["deploy"],
    categories: &["all"],
    subresources: &[Subresource::Status, Subresource::Scale],
    field_labels: &[],
    strategy: &StrategyFor::<Deployment>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for Deployment {
    fn set_defaults(&mut self) {
        defaulting::default_deployment(self);
    }

    /// The status is the controller's.
    fn prepare_for_create(&mut self) {
        self.status = Some(DeploymentStatus::default());
    }

    fn validate(&self) -> Vec<FieldError> {
        validation::validate_deployment_spec(&self.spec)
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        validation::validate_selector_update(&self.spec.selector, &old.spec.selector)
    }
}

const COLUMNS: &[Column] = &[
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
];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(obj);
    let ready = format!("{}/{}", int(obj, &["status", "readyReplicas"]), int(obj, &["spec", "replicas"]));
    vec![
        name_cell(obj),
        ready.into(),
        Value::from(int(obj, &["status", "updatedReplicas"])),
        Value::from(int(obj, &["status", "availableReplicas"])),
        age_cell(obj, now),
        containers.into(),
        images.into(),
        format_selector(at(obj, &["spec", "selector"])).into(),
    ]
}
