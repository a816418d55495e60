//! PersistentVolumeClaim (v1): a namespace's request for storage of a size and access modes,
//! from a StorageClass. A pod names it in a `persistentVolumeClaim` volume; the volume
//! binder binds it to a PersistentVolume (`spec.volumeName`) and keeps `status.phase`
//! (`Pending`, `Bound`, `Lost`).
//!
//! Its strategy, as Kubernetes':
//! - `accessModes` are required and known; `resources.requests.storage` is required and
//!   positive;
//! - `volumeMode` defaults to `Filesystem`; a new claim's status is `Pending`;
//! - the spec is immutable, except that `volumeName` may be set once (binding) and
//!   `storageClassName` may be set when it was unset; `resources.requests` may grow.
//!
//! A claim left without `storageClassName` gets the default StorageClass at admission
//! (the apiserver's `DefaultStorageClass` plugin), not here.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::Value;

use super::persistentvolume::{access_modes_cell, unset, validate_access_modes};
use crate::columns::{AGE, Column, NAME, age_cell, column, list, name_cell, text};
use crate::field::FieldError;
use crate::quantity;
use crate::registry::{ResourceDef, Subresource};
use crate::strategy::{Strategy, StrategyFor};

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    kind: "PersistentVolumeClaim",
    plural: "persistentvolumeclaims",
    singular: "persistentvolumeclaim",
    namespaced: true,
    short_names: &["pvc"],
    categories: &[],
    subresources: &[Subresource::Status],
    field_labels: &[],
    strategy: &StrategyFor::<PersistentVolumeClaim>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

/// The size a claim asks for, in bytes (`None` when unset or unreadable).
pub fn requested_bytes(claim: &PersistentVolumeClaim) -> Option<i64> {
    let requests = claim.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?;
    quantity::parse_units(&requests.get("storage")?.0).ok()
}

impl Strategy for PersistentVolumeClaim {
    fn set_defaults(&mut self) {
        self.spec.get_or_insert_with(Default::default).volume_mode.get_or_insert_with(|| "Filesystem".into());
    }

    fn prepare_for_create(&mut self) {
        self.status = Some(k8s_openapi::api::core::v1::PersistentVolumeClaimStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        });
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let Some(spec) = &self.spec else {
            return vec![FieldError::required("spec", "")];
        };
        validate_access_modes(spec.access_modes.as_deref(), "spec.accessModes", &mut errs);
        let storage = spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage"));
        match storage.map(|q| (q, quantity::parse_units(&q.0))) {
            None => errs.push(FieldError::required("spec.resources.requests.storage", "")),
            Some((q, Ok(bytes))) if bytes <= 0 => {
                errs.push(FieldError::invalid("spec.resources.requests.storage", &q.0, "must be greater than zero"));
            }
            Some((q, Err(_))) => {
                errs.push(FieldError::invalid("spec.resources.requests.storage", &q.0, "must be a valid quantity"));
            }
            Some(_) => {}
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let (Some(new), Some(old_spec)) = (&self.spec, &old.spec) else { return Vec::new() };
        // What may change: a first volumeName and storageClassName, and the size (larger only).
        let mut comparable = old_spec.clone();
        if comparable.volume_name.as_deref().is_none_or(str::is_empty) {
            comparable.volume_name = new.volume_name.clone();
        }
        if comparable.storage_class_name.is_none() {
            comparable.storage_class_name = new.storage_class_name.clone();
        }
        comparable.resources = new.resources.clone();
        let mut errs = Vec::new();
        if &comparable != new {
            errs.push(FieldError::forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
        if let (Some(was), Some(now)) = (requested_bytes(old), requested_bytes(self))
            && now < was
        {
            errs.push(FieldError::forbidden(
                "spec.resources.requests.storage",
                "field can not be less than status.capacity",
            ));
        }
        errs
    }
}

const COLUMNS: &[Column] = &[
    NAME,
    column("Status", "string", "Phase of the claim", 0),
    column("Volume", "string", "The volume bound to the claim", 0),
    column("Capacity", "string", "Capacity of the bound volume", 0),
    column("Access Modes", "string", "AccessModes of the bound volume", 0),
    column("StorageClass", "string", "StorageClass of the claim", 0),
    column("VolumeAttributesClass", "string", "VolumeAttributesClass of the claim", 0),
    AGE,
    column("VolumeMode", "string", "Filesystem or Block", 1),
];

/// printers.go's `printPersistentVolumeClaim`: capacity and access modes of the bound volume
/// (empty while pending); `Terminating` while being deleted.
fn row(claim: &Value, now: Timestamp) -> Vec<Value> {
    let phase = if text(claim, &["metadata", "deletionTimestamp"]).is_empty() {
        text(claim, &["status", "phase"])
    } else {
        "Terminating"
    };
    let bound = !text(claim, &["spec", "volumeName"]).is_empty();
    let (capacity, modes) = if bound {
        (text(claim, &["status", "capacity", "storage"]), access_modes_cell(list(claim, &["status", "accessModes"])))
    } else {
        ("", String::new())
    };
    vec![
        name_cell(claim),
        phase.into(),
        text(claim, &["spec", "volumeName"]).into(),
        capacity.into(),
        modes.into(),
        text(claim, &["spec", "storageClassName"]).into(),
        unset(text(claim, &["spec", "volumeAttributesClassName"])).into(),
        age_cell(claim, now),
        text(claim, &["spec", "volumeMode"]).into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(spec: Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "data", "namespace": "default"}, "spec": spec}))
            .expect("claim")
    }

    fn spec() -> Value {
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}})
    }

    #[test]
    fn a_claim_asks_for_a_positive_size_with_access_modes() {
        assert!(claim(spec()).validate().is_empty());
        assert_eq!(requested_bytes(&claim(spec())), Some(1 << 30));
        let mut zero = spec();
        zero["resources"]["requests"]["storage"] = json!("0");
        assert_eq!(claim(zero).validate()[0].field, "spec.resources.requests.storage");
        let mut no_modes = spec();
        no_modes["accessModes"] = json!([]);
        assert_eq!(claim(no_modes).validate()[0].field, "spec.accessModes");
    }

    #[test]
    fn binding_and_growing_are_the_only_changes() {
        let old = claim(spec());
        let mut bound = spec();
        bound["volumeName"] = json!("pv0");
        bound["resources"]["requests"]["storage"] = json!("2Gi");
        let bound = claim(bound);
        assert!(bound.validate_update(&old).is_empty());
        let mut rebound = spec();
        rebound["volumeName"] = json!("pv1");
        assert_eq!(claim(rebound).validate_update(&bound).len(), 2, "another volume, and smaller");
        let mut modes = spec();
        modes["accessModes"] = json!(["ReadWriteMany"]);
        assert_eq!(claim(modes).validate_update(&old)[0].field, "spec");
    }

    #[test]
    fn rows_show_the_bound_volume() {
        let claim = json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pvc-1", "storageClassName": "local-path"},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}});
        assert_eq!(
            row(&claim, Timestamp::now())[1..7],
            [json!("Bound"), json!("pvc-1"), json!("1Gi"), json!("RWO"), json!("local-path"), json!("<unset>")]
        );
    }
}
