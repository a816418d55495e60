//! PersistentVolume (v1, cluster-scoped): a piece of storage with a size, access modes and
//! a source (rkube's kubelets mount `hostPath` and `local` ones), bound to at most one
//! PersistentVolumeClaim through `spec.claimRef`. The controller-manager's volume binder
//! binds claims to volumes and keeps `status.phase`; its local-path provisioner makes
//! volumes for claims of a StorageClass that names it.
//!
//! Its strategy, as Kubernetes':
//! - `capacity.storage` is required and a valid quantity; `accessModes` are required, each
//!   one of `ReadWriteOnce`, `ReadOnlyMany`, `ReadWriteMany`, `ReadWriteOncePod`;
//! - exactly one volume source; a `local` volume needs `nodeAffinity`;
//! - `persistentVolumeReclaimPolicy` defaults to `Retain`, `volumeMode` to `Filesystem`;
//! - a new volume's status is `Pending`, until the binder has seen it;
//! - the source and `volumeMode` never change.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeSpec};
use serde_json::Value;

use crate::columns::{AGE, Column, NAME, age_cell, column, list, name_cell, text};
use crate::field::FieldError;
use crate::quantity;
use crate::registry::{ResourceDef, Subresource};
use crate::strategy::{Strategy, StrategyFor};

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    kind: "PersistentVolume",
    plural: "persistentvolumes",
    singular: "persistentvolume",
    namespaced: false,
    short_names: &["pv"],
    categories: &[],
    subresources: &[Subresource::Status],
    field_labels: &[],
    strategy: &StrategyFor::<PersistentVolume>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

/// The access modes Kubernetes knows, with the abbreviations kubectl prints.
pub const ACCESS_MODES: &[(&str, &str)] =
    &[("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")];

/// The reclaim policies (`Recycle` is deprecated and refused).
const RECLAIM_POLICIES: &[&str] = &["Retain", "Delete"];
const VOLUME_MODES: &[&str] = &["Filesystem", "Block"];

impl Strategy for PersistentVolume {
    fn set_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.persistent_volume_reclaim_policy.get_or_insert_with(|| "Retain".into());
        spec.volume_mode.get_or_insert_with(|| "Filesystem".into());
    }

    fn prepare_for_create(&mut self) {
        self.status = Some(k8s_openapi::api::core::v1::PersistentVolumeStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        });
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let Some(spec) = &self.spec else {
            return vec![FieldError::required("spec", "")];
        };
        match spec.capacity.as_ref().and_then(|c| c.get("storage")) {
            None => errs.push(FieldError::required("spec.capacity.storage", "")),
            Some(size) => {
                if quantity::parse_units(&size.0).is_err() {
                    errs.push(FieldError::invalid("spec.capacity.storage", &size.0, "must be a valid quantity"));
                }
            }
        }
        validate_access_modes(spec.access_modes.as_deref(), "spec.accessModes", &mut errs);
        match sources(spec).as_slice() {
            [] => errs.push(FieldError::required("spec", "must specify a volume type")),
            [_] => {}
            [_, second, ..] => {
                errs.push(FieldError::forbidden(format!("spec.{second}"), "may not specify more than 1 volume type"))
            }
        }
        if spec.local.is_some() && spec.node_affinity.is_none() {
            errs.push(FieldError::required("spec.nodeAffinity", "Local volume requires node affinity"));
        }
        if let Some(host) = &spec.host_path
            && !host.path.starts_with('/')
        {
            errs.push(FieldError::invalid("spec.hostPath.path", &host.path, "must be an absolute path"));
        }
        if let Some(policy) = spec.persistent_volume_reclaim_policy.as_deref()
            && !RECLAIM_POLICIES.contains(&policy)
        {
            errs.push(FieldError::not_supported("spec.persistentVolumeReclaimPolicy", policy, RECLAIM_POLICIES));
        }
        if let Some(mode) = spec.volume_mode.as_deref()
            && !VOLUME_MODES.contains(&mode)
        {
            errs.push(FieldError::not_supported("spec.volumeMode", mode, VOLUME_MODES));
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let (Some(new), Some(old)) = (&self.spec, &old.spec) else { return Vec::new() };
        let mut errs = Vec::new();
        let source = |s: &PersistentVolumeSpec| {
            (s.host_path.clone(), s.local.clone(), s.nfs.clone(), s.csi.clone(), s.iscsi.clone())
        };
        if source(new) != source(old) {
            errs.push(FieldError::forbidden(
                "spec.persistentvolumesource",
                "spec.persistentvolumesource is immutable after creation",
            ));
        }
        if new.volume_mode != old.volume_mode {
            errs.push(FieldError::invalid(
                "spec.volumeMode",
                new.volume_mode.as_deref().unwrap_or_default(),
                "field is immutable",
            ));
        }
        errs
    }
}

/// Checks a list of access modes (required, each known).
pub fn validate_access_modes(modes: Option<&[String]>, field: &str, errs: &mut Vec<FieldError>) {
    let modes = modes.unwrap_or_default();
    if modes.is_empty() {
        errs.push(FieldError::required(field, "at least 1 access mode is required"));
    }
    for mode in modes {
        if !ACCESS_MODES.iter().any(|(known, _)| known == mode) {
            let known: Vec<&str> = ACCESS_MODES.iter().map(|(m, _)| *m).collect();
            errs.push(FieldError::not_supported(field, mode, &known));
        }
    }
    if modes.iter().any(|m| m == "ReadWriteOncePod") && modes.len() > 1 {
        errs.push(FieldError::forbidden(field, "may not use ReadWriteOncePod with other access modes"));
    }
}

/// The names of the volume sources `spec` sets.
fn sources(spec: &PersistentVolumeSpec) -> Vec<&'static str> {
    let set = [
        ("hostPath", spec.host_path.is_some()),
        ("local", spec.local.is_some()),
        ("nfs", spec.nfs.is_some()),
        ("csi", spec.csi.is_some()),
        ("iscsi", spec.iscsi.is_some()),
        ("fc", spec.fc.is_some()),
        ("cephfs", spec.cephfs.is_some()),
        ("rbd", spec.rbd.is_some()),
    ];
    set.into_iter().filter(|(_, on)| *on).map(|(name, _)| name).collect()
}

/// kubectl's abbreviation of access modes (`RWO,ROX`), in Kubernetes' fixed order.
pub fn access_modes_cell(modes: &[Value]) -> String {
    let given: Vec<&str> = modes.iter().filter_map(Value::as_str).collect();
    let cell: Vec<&str> =
        ACCESS_MODES.iter().filter(|(mode, _)| given.contains(mode)).map(|(_, short)| *short).collect();
    cell.join(",")
}

const COLUMNS: &[Column] = &[
    NAME,
    column("Capacity", "string", "Capacity of the volume", 0),
    column("Access Modes", "string", "AccessModes of the volume", 0),
    column("Reclaim Policy", "string", "What happens to a volume when released from its claim", 0),
    column("Status", "string", "Phase of the volume", 0),
    column("Claim", "string", "The claim bound to the volume", 0),
    column("StorageClass", "string", "StorageClass of the volume", 0),
    column("VolumeAttributesClass", "string", "VolumeAttributesClass of the volume", 0),
    column("Reason", "string", "Reason the volume is in its phase", 0),
    AGE,
    column("VolumeMode", "string", "Filesystem or Block", 1),
];

/// kubectl's cell for an optional class name: the name, or `<unset>`.
pub fn unset(name: &str) -> &str {
    if name.is_empty() { "<unset>" } else { name }
}

/// printers.go's `printPersistentVolume`.
fn row(pv: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match (text(pv, &["spec", "claimRef", "namespace"]), text(pv, &["spec", "claimRef", "name"])) {
        (_, "") => String::new(),
        (namespace, name) => format!("{namespace}/{name}"),
    };
    vec![
        name_cell(pv),
        text(pv, &["spec", "capacity", "storage"]).into(),
        access_modes_cell(list(pv, &["spec", "accessModes"])).into(),
        text(pv, &["spec", "persistentVolumeReclaimPolicy"]).into(),
        text(pv, &["status", "phase"]).into(),
        claim.into(),
        text(pv, &["spec", "storageClassName"]).into(),
        unset(text(pv, &["spec", "volumeAttributesClassName"])).into(),
        text(pv, &["status", "reason"]).into(),
        age_cell(pv, now),
        text(pv, &["spec", "volumeMode"]).into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(spec: Value) -> PersistentVolume {
        serde_json::from_value(json!({"metadata": {"name": "pv0"}, "spec": spec})).expect("pv")
    }

    #[test]
    fn a_volume_needs_a_size_access_modes_and_one_source() {
        let good = json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                          "hostPath": {"path": "/srv/pv0"}});
        let mut volume = pv(good.clone());
        volume.set_defaults();
        assert!(volume.validate().is_empty(), "{:?}", volume.validate());
        assert_eq!(volume.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()), Some("Retain"));
        let mut no_size = good.clone();
        no_size["capacity"] = json!({});
        assert_eq!(pv(no_size).validate()[0].field, "spec.capacity.storage");
        let mut two = good.clone();
        two["nfs"] = json!({"server": "s", "path": "/x"});
        assert_eq!(pv(two).validate()[0].field, "spec.nfs");
        let mut none = good.clone();
        none["hostPath"] = Value::Null;
        assert_eq!(pv(none).validate().len(), 1);
        let mut odd = good;
        odd["accessModes"] = json!(["ReadWriteSometimes"]);
        assert_eq!(pv(odd).validate()[0].field, "spec.accessModes");
    }

    #[test]
    fn rows_abbreviate_access_modes_and_name_the_claim() {
        let volume = json!({"metadata": {"name": "pv0"}, "spec": {"capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteMany", "ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Delete",
            "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "local-path"},
            "status": {"phase": "Bound"}});
        let row = row(&volume, Timestamp::now());
        assert_eq!(
            row[1..8],
            [
                json!("1Gi"),
                json!("RWO,RWX"),
                json!("Delete"),
                json!("Bound"),
                json!("default/data"),
                json!("local-path"),
                json!("<unset>")
            ]
        );
    }
}
