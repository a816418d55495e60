//! ServiceAccount (core/v1): an identity for processes that run in pods, named in RBAC
//! bindings as `system:serviceaccount:<namespace>:<name>`.
//!
//! Its strategy: a DNS-1123 subdomain name, as every kind's; nothing of its own to check
//! (`secrets` and `imagePullSecrets` name Secrets of its namespace, which need not exist
//! yet).
//!
//! Elsewhere: the `default` ServiceAccount of each namespace (the controller-manager's
//! `serviceaccount` controller) and the tokens that prove a ServiceAccount's identity (the
//! `token` subresource, served by the apiserver).

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ServiceAccount;
use serde_json::Value;

use crate::columns::{AGE, Column, NAME, age_cell, column, list, name_cell};
use crate::field::FieldError;
use crate::registry::{ResourceDef, Subresource};
use crate::strategy::{Strategy, StrategyFor};

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    kind: "ServiceAccount",
    plural: "serviceaccounts",
    singular: "serviceaccount",
    namespaced: true,
    short_names: &["sa"],
    categories: &[],
    subresources: &[Subresource::Token],
    field_labels: &[],
    strategy: &StrategyFor::<ServiceAccount>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for ServiceAccount {
    fn validate(&self) -> Vec<FieldError> {
        Vec::new()
    }
}

const COLUMNS: &[Column] = &[
    NAME,
    column(
        "Secrets",
        "string",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
        0,
    ),
    AGE,
];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name_cell(obj), Value::from(list(obj, &["secrets"]).len()), age_cell(obj, now)]
}
