//! Namespace (core/v1): a scope for names. Cluster-scoped; its name is a DNS-1123 label.
//!
//! Deletion follows Kubernetes: marking a namespace for deletion turns it `Terminating`
//! and (like every namespace since its creation) it carries the `kubernetes` entry in
//! `spec.finalizers`, so it stays until the apiserver's namespace cleaner has deleted
//! everything in it and removed the namespace.

use k8s_openapi::api::core::v1::{Namespace, NamespaceSpec, NamespaceStatus};
use serde_json::Value;

use crate::columns::{AGE, Column, NAME, age_cell, column, name_cell, text};
use crate::field::FieldError;
use crate::registry::{ResourceDef, Subresource};
use crate::strategy::{Strategy, StrategyFor};
use crate::validation::NameFormat;

/// The finalizer in `spec.finalizers` that the namespace cleaner removes once the namespace
/// is empty.
pub const KUBERNETES_FINALIZER: &str = "kubernetes";

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    kind: "Namespace",
    plural: "namespaces",
    singular: "namespace",
    namespaced: false,
    short_names: &["ns"],
    categories: &[],
    subresources: &[Subresource::Status],
    field_labels: &["status.phase"],
    strategy: &StrategyFor::<Namespace>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for Namespace {
    const NAME_FORMAT: NameFormat = NameFormat::Dns1123Label;

    /// `status.phase: Active` when the phase is missing.
    fn set_defaults(&mut self) {
        let status = self.status.get_or_insert_with(Default::default);
        if status.phase.is_none() {
            status.phase = Some("Active".to_string());
        }
    }

    /// A new namespace is `Active` and carries the `kubernetes` finalizer.
    fn prepare_for_create(&mut self) {
        self.status = Some(NamespaceStatus { phase: Some("Active".to_string()), ..Default::default() });
        let spec = self.spec.get_or_insert_with(NamespaceSpec::default);
        let finalizers = spec.finalizers.get_or_insert_with(Vec::new);
        if !finalizers.iter().any(|f| f == KUBERNETES_FINALIZER) {
            finalizers.push(KUBERNETES_FINALIZER.to_string());
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        Vec::new()
    }

    /// `Terminating`, and the `kubernetes` finalizer (namespaces stored before rkube set it
    /// on create may lack it).
    fn prepare_for_delete(&mut self) {
        let status = self.status.get_or_insert_with(Default::default);
        status.phase = Some("Terminating".to_string());
        let spec = self.spec.get_or_insert_with(NamespaceSpec::default);
        let finalizers = spec.finalizers.get_or_insert_with(Vec::new);
        if !finalizers.iter().any(|f| f == KUBERNETES_FINALIZER) {
            finalizers.push(KUBERNETES_FINALIZER.to_string());
        }
    }

    /// A namespace goes only once its `spec.finalizers` are empty.
    fn awaits_finalization(&self) -> bool {
        self.spec.as_ref().and_then(|s| s.finalizers.as_ref()).is_some_and(|f| !f.is_empty())
    }
}

const COLUMNS: &[Column] = &[NAME, column("Status", "string", "The status of the namespace", 0), AGE];

fn row(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![name_cell(obj), Value::from(text(obj, &["status", "phase"])), age_cell(obj, now)]
}
