//! `metadata.managedFields` entries: reading them into field sets, writing them back in
//! Kubernetes' order, and the conflict error an apply reports.
//!
//! An entry is identified as Kubernetes identifies it (`BuildManagerIdentifier`): by manager
//! name, operation and subresource, plus the apiVersion for `Update` entries only. So one
//! applier has one `Apply` entry whatever version it applies with (the entry takes the
//! latest), while an updater writing through two versions gets two entries.
//!
//! Written entries are sorted as Kubernetes sorts them: `Apply` before `Update`, then by time
//! (to the second, missing first), manager, apiVersion and subresource. At most
//! [`MAX_UPDATE_MANAGERS`] `Update` entries are kept; the oldest are folded into an
//! `ancient-changes` entry per apiVersion.

use std::fmt;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, Time};

use super::fieldpath::{FieldSet, Path, path_to_string};

/// The most `Update` entries kept on one object (Kubernetes' `DefaultMaxUpdateManagers`).
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// The manager name under which the oldest `Update` entries are folded together.
pub const ANCIENT_CHANGES: &str = "ancient-changes";

/// The manager that takes every field of an object applied to for the first time while its
/// `managedFields` is empty (an object written before fields were tracked).
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// The two kinds of managed-fields entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// Server-side apply: the entry holds exactly the manager's last applied configuration.
    Apply,
    /// Any other write (create, update, patch): the entry holds the fields it changed.
    Update,
}

impl Operation {
    /// The name in `ManagedFieldsEntry.operation`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who an entry belongs to (Kubernetes' manager identifier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerId {
    /// The field manager's name (`kubectl`, `kube-controller-manager`).
    pub manager: String,
    /// Apply or Update.
    pub operation: Operation,
    /// The API version of the entry's fields. Part of the identity for `Update` only.
    pub api_version: String,
    /// The subresource written through (`status`, `scale`), empty for the main resource.
    pub subresource: String,
}

impl ManagerId {
    /// Whether `self` and `other` name the same entry.
    pub fn same_entry(&self, other: &ManagerId) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == Operation::Apply || self.api_version == other.api_version)
    }
}

impl fmt::Display for ManagerId {
    /// As Kubernetes' `printManager`: `"kubectl"`, `"kubectl" with subresource "status"`,
    /// `"kubectl" using apps/v1` for an Update.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.manager)?;
        if !self.subresource.is_empty() {
            write!(f, " with subresource {:?}", self.subresource)?;
        }
        if self.operation == Operation::Update {
            write!(f, " using {}", self.api_version)?;
        }
        Ok(())
    }
}

/// One decoded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Whose fields these are.
    pub id: ManagerId,
    /// When the manager last changed the object (seconds).
    pub time: Option<Timestamp>,
    /// The fields owned.
    pub fields: FieldSet,
}

/// A `managedFields` entry Kubernetes would refuse to decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid managedFields entry {index}: {reason}")]
pub struct InvalidEntry {
    /// The entry's position in the list.
    pub index: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Decodes entries; a later entry with the same identity replaces an earlier one.
pub fn decode(entries: &[ManagedFieldsEntry]) -> Result<Vec<Entry>, InvalidEntry> {
    let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let bad = |reason: String| InvalidEntry { index, reason };
        let operation = match entry.operation.as_deref() {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            _ => return Err(bad("operation must be `Apply` or `Update`".into())),
        };
        let api_version = entry.api_version.clone().unwrap_or_default();
        if api_version.is_empty() {
            return Err(bad("apiVersion must not be empty".into()));
        }
        match entry.fields_type.as_deref() {
            Some("FieldsV1") => {}
            None | Some("") => return Err(bad("missing fieldsType".into())),
            Some(other) => return Err(bad(format!("invalid fieldsType {other:?}"))),
        }
        let fields = match &entry.fields_v1 {
            Some(FieldsV1(value)) => FieldSet::from_fields_v1(value).map_err(|e| bad(e.to_string()))?,
            None => FieldSet::new(),
        };
        let id = ManagerId {
            manager: entry.manager.clone().unwrap_or_default(),
            operation,
            api_version,
            subresource: entry.subresource.clone().unwrap_or_default(),
        };
        let decoded = Entry { id, time: entry.time.as_ref().map(|t| t.0), fields };
        match out.iter_mut().find(|e| e.id.same_entry(&decoded.id)) {
            Some(existing) => *existing = decoded,
            None => out.push(decoded),
        }
    }
    Ok(out)
}

/// Writes entries back: empty ones dropped, `Update` entries capped, Kubernetes' order.
pub fn encode(mut entries: Vec<Entry>) -> Vec<ManagedFieldsEntry> {
    entries.retain(|e| !e.fields.is_empty());
    cap_update_entries(&mut entries);
    entries.sort_by(|p, q| {
        let seconds = |e: &Entry| e.time.map_or(0, |t| t.as_second());
        p.id.operation
            .cmp(&q.id.operation)
            .then_with(|| seconds(p).cmp(&seconds(q)))
            .then_with(|| p.id.manager.cmp(&q.id.manager))
            .then_with(|| p.id.api_version.cmp(&q.id.api_version))
            .then_with(|| p.id.subresource.cmp(&q.id.subresource))
    });
    entries
        .into_iter()
        .map(|e| ManagedFieldsEntry {
            api_version: Some(e.id.api_version),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(FieldsV1(e.fields.to_fields_v1())),
            manager: Some(e.id.manager),
            operation: Some(e.id.operation.as_str().into()),
            subresource: (!e.id.subresource.is_empty()).then_some(e.id.subresource),
            time: e.time.map(Time),
        })
        .collect()
}

/// Kubernetes' `capManagersManager`: while there are more than [`MAX_UPDATE_MANAGERS`]
/// `Update` entries, the oldest (by time, then identity) are folded into one
/// [`ANCIENT_CHANGES`] entry per apiVersion, which takes the folded entry's time.
fn cap_update_entries(entries: &mut Vec<Entry>) {
    let mut updaters: Vec<usize> =
        (0..entries.len()).filter(|&i| entries[i].id.operation == Operation::Update).collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort_by(|&a, &b| {
        let seconds = |e: &Entry| e.time.map_or(0, |t| t.as_second());
        seconds(&entries[a])
            .cmp(&seconds(&entries[b]))
            .then_with(|| identity_key(&entries[a].id).cmp(&identity_key(&entries[b].id)))
    });
    let mut count = updaters.len();
    // apiVersion → the first (oldest) entry seen with it, which becomes the bucket.
    let mut first_of_version: Vec<(String, usize)> = Vec::new();
    let mut folded: Vec<usize> = Vec::new();
    for &i in &updaters {
        if count <= MAX_UPDATE_MANAGERS {
            break;
        }
        let version = entries[i].id.api_version.clone();
        match first_of_version.iter().find(|(v, _)| *v == version) {
            Some(&(_, bucket)) => {
                let fields = entries[i].fields.clone();
                let time = entries[i].time;
                let target = &mut entries[bucket];
                target.id.manager = ANCIENT_CHANGES.into();
                target.id.subresource = String::new();
                target.fields = target.fields.union(&fields);
                target.time = time;
                folded.push(i);
                count -= 1;
            }
            None => first_of_version.push((version, i)),
        }
    }
    folded.sort_unstable();
    for i in folded.into_iter().rev() {
        entries.remove(i);
    }
}

/// A stable string for tie-breaks, like the JSON identifier Kubernetes compares.
fn identity_key(id: &ManagerId) -> String {
    format!("{}\u{0}{}\u{0}{}\u{0}{}", id.manager, id.operation.as_str(), id.api_version, id.subresource)
}

/// One field another manager owns with a different value than the applied configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The manager owning the field.
    pub manager: ManagerId,
    /// The field, as Kubernetes prints it (`.spec.replicas`).
    pub field: String,
    /// The field as a path.
    pub path: Path,
}

impl Conflict {
    /// The `StatusCause` message Kubernetes gives this conflict (cause type
    /// `FieldManagerConflict`, field [`Conflict::field`]).
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.manager)
    }
}

/// An apply refused because of conflicts (HTTP 409, reason `Conflict`). Retry with `force`
/// to take the fields, or drop them from the configuration to leave them to their owners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflicts(pub Vec<Conflict>);

impl Conflicts {
    /// Builds the list from each manager's conflicting fields, ordered by manager then path.
    pub(crate) fn from_sets(sets: Vec<(ManagerId, FieldSet)>) -> Conflicts {
        let mut out = Vec::new();
        for (manager, set) in sets {
            for path in set.paths() {
                out.push(Conflict { manager: manager.clone(), field: path_to_string(&path), path });
            }
        }
        out.sort_by(|a, b| a.manager.to_string().cmp(&b.manager.to_string()).then_with(|| a.path.cmp(&b.path)));
        Conflicts(out)
    }
}

impl fmt::Display for Conflicts {
    /// Kubernetes' message: `Apply failed with 1 conflict: conflict with "m": .spec.replicas`,
    /// or for several, `Apply failed with 2 conflicts: conflicts with "m":` followed by one
    /// `- <field>` line per field, managers in sorted order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [only] = self.0.as_slice() {
            return write!(f, "Apply failed with 1 conflict: conflict with {}: {}", only.manager, only.field);
        }
        let mut lines: Vec<String> = Vec::new();
        let mut current: Option<String> = None;
        for conflict in &self.0 {
            let manager = conflict.manager.to_string();
            if current.as_deref() != Some(manager.as_str()) {
                lines.push(format!("conflicts with {manager}:"));
                current = Some(manager);
            }
            lines.push(format!("- {}", conflict.field));
        }
        write!(f, "Apply failed with {} conflicts: {}", self.0.len(), lines.join("\n"))
    }
}

impl std::error::Error for Conflicts {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(manager: &str, operation: &str, api_version: &str, fields: serde_json::Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            api_version: Some(api_version.into()),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(FieldsV1(fields)),
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            subresource: None,
            time: None,
        }
    }

    #[test]
    fn entries_round_trip_and_sort_apply_first() {
        let input = vec![
            entry("kubectl", "Update", "apps/v1", json!({"f:spec": {"f:paused": {}}})),
            entry("ci", "Apply", "apps/v1", json!({"f:spec": {"f:replicas": {}}})),
        ];
        let decoded = decode(&input).unwrap();
        let encoded = encode(decoded);
        assert_eq!(encoded, vec![input[1].clone(), input[0].clone()]);
    }

    #[test]
    fn invalid_entries_are_refused() {
        let mut bad = entry("m", "Patch", "v1", json!({}));
        assert!(decode(&[bad.clone()]).is_err());
        bad.operation = Some("Update".into());
        bad.fields_type = None;
        assert!(decode(&[bad.clone()]).is_err());
        bad.fields_type = Some("FieldsV1".into());
        bad.api_version = None;
        assert!(decode(&[bad]).is_err());
    }

    #[test]
    fn update_entries_beyond_ten_fold_into_ancient_changes() {
        let input: Vec<ManagedFieldsEntry> = (0..12)
            .map(|i| {
                let mut e = entry(&format!("m{i:02}"), "Update", "v1", json!({ format!("f:f{i}"): {} }));
                e.time = Some(Time(Timestamp::from_second(1_700_000_000 + i).unwrap()));
                e
            })
            .collect();
        let encoded = encode(decode(&input).unwrap());
        assert_eq!(encoded.len(), MAX_UPDATE_MANAGERS);
        let ancient = encoded.iter().find(|e| e.manager.as_deref() == Some(ANCIENT_CHANGES)).unwrap();
        assert_eq!(ancient.fields_v1, Some(FieldsV1(json!({"f:f0": {}, "f:f1": {}, "f:f2": {}}))));
        assert_eq!(ancient.time, input[2].time);
    }
}
