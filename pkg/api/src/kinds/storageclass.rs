//! StorageClass (storage.k8s.io/v1, cluster-scoped): how volumes of a class are made — by
//! which provisioner, with what parameters, reclaimed how, and bound when
//! (`volumeBindingMode`). The apiserver creates [`LOCAL_PATH`] at start, marked default,
//! so a claim without a class (a StatefulSet's `volumeClaimTemplates`) gets a volume.
//!
//! Its strategy, as Kubernetes': `provisioner` is required; `reclaimPolicy` defaults to
//! `Delete` and `volumeBindingMode` to `Immediate`; provisioner, parameters, reclaim policy
//! and binding mode never change.

use jiff::Timestamp;
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::Value;

use crate::columns::{AGE, Column, NAME, age_cell, at, column, flag, text};
use crate::field::FieldError;
use crate::registry::ResourceDef;
use crate::strategy::{Strategy, StrategyFor};

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "storage.k8s.io",
    version: "v1",
    kind: "StorageClass",
    plural: "storageclasses",
    singular: "storageclass",
    namespaced: false,
    short_names: &["sc"],
    categories: &[],
    subresources: &[],
    field_labels: &[],
    strategy: &StrategyFor::<StorageClass>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

/// The annotation that makes a class the default (`"true"`).
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// The provisioner name of rkube's local-path provisioner (in the controller-manager).
pub const LOCAL_PATH_PROVISIONER: &str = "rkube.io/local-path";
/// The class the apiserver creates at start.
pub const LOCAL_PATH: &str = "local-path";
/// Where the local-path provisioner puts volumes when the class names no `path` parameter.
pub const DEFAULT_LOCAL_PATH_ROOT: &str = "/var/lib/rkube/local-path";

const RECLAIM_POLICIES: &[&str] = &["Delete", "Retain"];
const BINDING_MODES: &[&str] = &["Immediate", "WaitForFirstConsumer"];

/// Whether `class` is marked default.
pub fn is_default(class: &StorageClass) -> bool {
    class.metadata.annotations.as_ref().and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION)).is_some_and(|v| v == "true")
}

/// The class the apiserver creates at start: local-path, default, `WaitForFirstConsumer`
/// (a local volume can only be made once the node is known), reclaim `Delete`.
pub fn local_path() -> Value {
    serde_json::json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": LOCAL_PATH, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "provisioner": LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    })
}

impl Strategy for StorageClass {
    fn set_defaults(&mut self) {
        self.reclaim_policy.get_or_insert_with(|| "Delete".into());
        self.volume_binding_mode.get_or_insert_with(|| "Immediate".into());
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if self.provisioner.is_empty() {
            errs.push(FieldError::required("provisioner", ""));
        }
        if let Some(policy) = self.reclaim_policy.as_deref()
            && !RECLAIM_POLICIES.contains(&policy)
        {
            errs.push(FieldError::not_supported("reclaimPolicy", policy, RECLAIM_POLICIES));
        }
        if let Some(mode) = self.volume_binding_mode.as_deref()
            && !BINDING_MODES.contains(&mode)
        {
            errs.push(FieldError::not_supported("volumeBindingMode", mode, BINDING_MODES));
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if self.provisioner != old.provisioner {
            errs.push(FieldError::forbidden("provisioner", "updates to provisioner are forbidden."));
        }
        if self.parameters != old.parameters {
            errs.push(FieldError::forbidden("parameters", "updates to parameters are forbidden."));
        }
        if self.reclaim_policy != old.reclaim_policy {
            errs.push(FieldError::forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden."));
        }
        if self.volume_binding_mode != old.volume_binding_mode {
            errs.push(FieldError::forbidden("volumeBindingMode", "field is immutable"));
        }
        errs
    }
}

const COLUMNS: &[Column] = &[
    NAME,
    column("Provisioner", "string", "Indicates the type of the provisioner.", 0),
    column("ReclaimPolicy", "string", "Dynamically provisioned volumes of this class are reclaimed so.", 0),
    column("VolumeBindingMode", "string", "When volumes of this class are bound.", 0),
    column("AllowVolumeExpansion", "string", "Whether claims of this class may grow.", 0),
    AGE,
];

/// printers.go's `printStorageClass`: the name gains ` (default)` on the default class.
fn row(class: &Value, now: Timestamp) -> Vec<Value> {
    let mut name = text(class, &["metadata", "name"]).to_string();
    if text(class, &["metadata", "annotations", DEFAULT_CLASS_ANNOTATION]) == "true" {
        name.push_str(" (default)");
    }
    let or = |value: &str, fallback: &str| if value.is_empty() { fallback.to_string() } else { value.to_string() };
    vec![
        name.into(),
        text(class, &["provisioner"]).into(),
        or(text(class, &["reclaimPolicy"]), "Delete").into(),
        or(text(class, &["volumeBindingMode"]), "Immediate").into(),
        (at(class, &["allowVolumeExpansion"]).is_some() && flag(class, &["allowVolumeExpansion"])).to_string().into(),
        age_cell(class, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_local_path_class_is_valid_default_and_frozen() {
        let mut class: StorageClass = serde_json::from_value(local_path()).expect("class");
        class.set_defaults();
        assert!(class.validate().is_empty());
        assert!(is_default(&class));
        let mut changed = class.clone();
        changed.volume_binding_mode = Some("Immediate".into());
        changed.provisioner = "other".into();
        assert_eq!(changed.validate_update(&class).len(), 2);
        let row = row(&local_path(), Timestamp::now());
        assert_eq!(
            row[..5],
            [
                json!("local-path (default)"),
                json!(LOCAL_PATH_PROVISIONER),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!("false")
            ]
        );
    }
}
