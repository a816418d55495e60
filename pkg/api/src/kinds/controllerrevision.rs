//! ControllerRevision (apps/v1): an immutable snapshot of a controller's pod template at one
//! revision. The DaemonSet controller writes one per template it rolled out, so
//! `kubectl rollout history` lists them and `kubectl rollout undo` patches the template back
//! from one.
//!
//! Its strategy: `revision` is not negative; `data` never changes once written.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ControllerRevision;
use serde_json::Value;

use crate::columns::{AGE, Column, NAME, age_cell, column, int, list, name_cell};
use crate::field::FieldError;
use crate::registry::ResourceDef;
use crate::strategy::{Strategy, StrategyFor};

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "apps",
    version: "v1",
    kind: "ControllerRevision",
    plural: "controllerrevisions",
    singular: "controllerrevision",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: &[],
    strategy: &StrategyFor::<ControllerRevision>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for ControllerRevision {
    fn validate(&self) -> Vec<FieldError> {
        if let Some(revision) = self.revision.filter(|r| *r < 0) {
            return vec![FieldError::invalid("revision", revision, "must be greater than or equal to 0")];
        }
        Vec::new()
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        if self.data != old.data {
            return vec![FieldError::invalid("data", "", "field is immutable")];
        }
        Vec::new()
    }
}

const COLUMNS: &[Column] = &[
    NAME,
    column("Controller", "string", "Controller of the object", 0),
    column("Revision", "string", "Revision is the revision number", 0),
    AGE,
];

/// printers.go's `printControllerRevision`: the controller as `<kind>.<group>/<name>`.
fn row(revision: &Value, now: Timestamp) -> Vec<Value> {
    let controller = list(revision, &["metadata", "ownerReferences"])
        .iter()
        .find(|owner| owner["controller"] == true)
        .map(|owner| {
            let kind = owner["kind"].as_str().unwrap_or_default().to_ascii_lowercase();
            let group =
                owner["apiVersion"].as_str().unwrap_or_default().split_once('/').map(|(g, _)| g).unwrap_or_default();
            let name = owner["name"].as_str().unwrap_or_default();
            if group.is_empty() { format!("{kind}/{name}") } else { format!("{kind}.{group}/{name}") }
        })
        .unwrap_or_else(|| "<none>".into());
    vec![name_cell(revision), controller.into(), Value::from(int(revision, &["revision"])), age_cell(revision, now)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_name_the_controller_and_data_never_changes() {
        let revision = json!({"metadata": {"name": "agent-5d4", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "u", "controller": true}]}, "revision": 2});
        assert_eq!(row(&revision, Timestamp::now())[1..3], [json!("daemonset.apps/agent"), json!(2)]);
        let old: ControllerRevision =
            serde_json::from_value(json!({"metadata": {"name": "r"}, "revision": 1, "data": {"a": 1}}))
                .expect("revision");
        let mut new = old.clone();
        new.data = k8s_openapi::apimachinery::pkg::runtime::RawExtension(json!({"a": 2}));
        assert_eq!(new.validate_update(&old).len(), 1);
        new.revision = Some(-1);
        assert_eq!(new.validate().len(), 1);
    }
}
