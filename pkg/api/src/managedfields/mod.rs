//! Field ownership and server-side apply, as Kubernetes defines them
//! (k8s.io/apimachinery `util/managedfields`, sigs.k8s.io/structured-merge-diff `merge`).
//!
//! # The model
//!
//! Every field of an object has zero or more *managers*: the clients that set it. The record
//! lives in the object's `metadata.managedFields`, one entry per manager, each a set of field
//! paths in the FieldsV1 format (`{"f:spec":{"f:replicas":{}}}`, see [`FieldSet`]). A leaf
//! field is owned on its own; an element of a map list (`containers`, keyed by `name`) or a
//! set list (`finalizers`) is owned as a whole and field by field; an atomic list or map is
//! one leaf. Which list is which comes from a [`TypeInfo`] ([`BuiltinTypes`] for built-in
//! kinds, the CRD schema for custom resources).
//!
//! There are two ways to write. An **apply** ([`apply`]) sends a partial object, the
//! manager's *intent*: after it, the manager's `Apply` entry is exactly the set of fields the
//! configuration names. The configuration is merged into the live object (maps key by key,
//! map lists by key, set lists as a union, atomic values replaced). A field the manager
//! applied last time and leaves out now is removed from the object, unless another manager
//! still owns it. A field another manager owns whose value the apply would change is a
//! *conflict* and the apply fails (409), naming each one; with `force` the applier takes the
//! fields instead. Applying the value a field already has is no conflict: the two managers
//! then share it.
//!
//! Any other write (create, update, patch) is an **update** ([`update`]): the writer's
//! `Update` entry takes every field whose value it changed or added, whoever owned it
//! before; fields it removed leave every entry. Updates never conflict.
//!
//! Entries whose set becomes empty disappear. Object metadata the server owns (`apiVersion`,
//! `kind`, `metadata.name`, `namespace`, `uid`, `resourceVersion`, `generation`,
//! `creationTimestamp`, `selfLink`, `managedFields`) is never recorded; fields the caller
//! lists as ignored (a main resource's `status`, a status subresource's `spec`) are neither
//! recorded nor taken from anyone.
//!
//! # Differences from Kubernetes
//!
//! Kubernetes works on typed values; this module on JSON with a [`TypeInfo`]. So a map or
//! struct a write brings into existence (not just its leaves) is recorded for an `Update`
//! entry (`"f:spec":{".":{},…}`), as Kubernetes records it for custom resources; built-in
//! kinds in Kubernetes have empty structs already present and omit that `"."`. A struct
//! field emptied by a removal is dropped rather than left as `null`. Timestamps of an apply
//! that changes nothing are kept (Kubernetes: same), except that a new entry gets one.
//! Not implemented: conversion of entries between API versions (entries are used whatever
//! their apiVersion), the `kubectl.kubernetes.io/last-applied-configuration` upgrade path,
//! and the apply-version check.

mod fieldpath;
mod manager;
mod merge;
mod object;
mod typeinfo;

#[cfg(test)]
mod tests;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use serde_json::{Map, Value};

pub use fieldpath::{FieldSet, FieldsV1Error, Path, PathElement, path_to_string};
pub use manager::{
    ANCIENT_CHANGES, BEFORE_FIRST_APPLY, Conflict, Conflicts, InvalidEntry, MAX_UPDATE_MANAGERS, ManagerId, Operation,
};
pub use object::{Comparison, compare, field_set};
pub use typeinfo::{BuiltinTypes, ListType, TypeInfo, Untyped};

use fieldpath::{dotted, values_equal};
use manager::Entry;

/// Metadata Kubernetes never records in an entry (its `stripMetaManager`): the acting
/// manager's set loses exactly these paths (`metadata` itself, not what lies below it).
const STRIPPED: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "metadata.name",
    "metadata.namespace",
    "metadata.creationTimestamp",
    "metadata.selfLink",
    "metadata.uid",
    "metadata.clusterName",
    "metadata.generation",
    "metadata.managedFields",
    "metadata.resourceVersion",
];

/// Who writes, and how: the context of one [`apply`] or [`update`].
#[derive(Clone, Copy)]
pub struct Writer<'a> {
    /// The field manager's name (`?fieldManager=`, or the client's default).
    pub manager: &'a str,
    /// The API version the request was made with (`apps/v1`); recorded in the entry.
    pub api_version: &'a str,
    /// The subresource written through (`status`, `scale`), `None` for the main resource.
    pub subresource: Option<&'a str>,
    /// The time of the write; recorded to the second.
    pub now: Timestamp,
    /// The kind's list and map types.
    pub types: &'a dyn TypeInfo,
    /// Dotted paths never recorded and never taken from anyone, with everything below them
    /// (Kubernetes' reset fields: `status` for a main resource, `spec` and `metadata` for a
    /// status subresource).
    pub ignored: &'a [&'a str],
}

impl Writer<'_> {
    fn ignored_set(&self) -> FieldSet {
        let mut set = FieldSet::new();
        for path in self.ignored {
            set.insert(&dotted(path));
        }
        set
    }

    fn id(&self, operation: Operation) -> ManagerId {
        ManagerId {
            manager: self.manager.to_string(),
            operation,
            api_version: self.api_version.to_string(),
            subresource: self.subresource.unwrap_or_default().to_string(),
        }
    }

    fn seconds(&self) -> Timestamp {
        Timestamp::from_second(self.now.as_second()).unwrap_or(self.now)
    }
}

fn stripped_set() -> FieldSet {
    let mut set = FieldSet::new();
    for path in STRIPPED {
        set.insert(&dotted(path));
    }
    set
}

/// Why an apply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Other managers own fields the apply would change (HTTP 409, reason `Conflict`, one
    /// `FieldManagerConflict` cause per [`Conflict`]).
    #[error("{0}")]
    Conflicts(Conflicts),
    /// The configuration carries `metadata.managedFields` (HTTP 400, as Kubernetes).
    #[error("metadata.managedFields must be nil")]
    ManagedFieldsInBody,
    /// The configuration is not a JSON object (HTTP 400).
    #[error("apply configuration must be a JSON object")]
    NotAnObject,
    /// A list in the configuration does not fit its list type: an element without
    /// identity, or two elements with the same key. Kubernetes reports it as
    /// `failed to create typed patch object (…)`; the caller picks the status.
    #[error("invalid apply configuration at {path}: {reason}")]
    InvalidConfig {
        /// Where, as Kubernetes prints paths.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The live object's `managedFields` cannot be decoded (HTTP 500, as Kubernetes).
    #[error("failed to decode managed fields: {0}")]
    InvalidManagedFields(#[source] InvalidEntry),
}

/// A copy of `object` without `metadata.managedFields`.
fn without_managed_fields(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    copy
}

/// Server-side apply of `config` by `writer` onto `live` (`None`: the object does not exist
/// yet), whose entries are `managed`. Returns the object to store, without
/// `metadata.managedFields`, and its new entries (see [`set_managed_fields`]).
///
/// An object that exists but has no entries (written before fields were tracked) is first
/// credited wholly to [`BEFORE_FIRST_APPLY`], as Kubernetes does, so the apply conflicts on
/// every field it would change.
pub fn apply(
    live: Option<&Value>,
    managed: &[ManagedFieldsEntry],
    config: &Value,
    force: bool,
    writer: &Writer<'_>,
) -> Result<(Value, Vec<ManagedFieldsEntry>), ApplyError> {
    if !config.is_object() {
        return Err(ApplyError::NotAnObject);
    }
    if config.pointer("/metadata/managedFields").is_some_and(|v| !v.is_null()) {
        return Err(ApplyError::ManagedFieldsInBody);
    }
    let types = writer.types;
    object::validate(config, types).map_err(|e| ApplyError::InvalidConfig { path: e.path, reason: e.reason })?;
    let mut entries = manager::decode(managed).map_err(ApplyError::InvalidManagedFields)?;
    let live_value = live.map(without_managed_fields).unwrap_or_else(|| Value::Object(Map::new()));
    let config = without_managed_fields(config);
    let ignored = writer.ignored_set();

    if entries.is_empty() && live.is_some() {
        let before = Writer { manager: BEFORE_FIRST_APPLY, ..*writer };
        entries = update_entries(&Value::Object(Map::new()), &live_value, entries, &before, &ignored);
    }

    let merged = merge::merge(&live_value, &config, types);
    let id = writer.id(Operation::Apply);
    let applied = field_set(&config, types).recursive_difference(&ignored);
    let position = entries.iter().position(|e| e.id.same_entry(&id));
    let (own, last, is_new) = match position {
        Some(i) => {
            let last = std::mem::replace(&mut entries[i].fields, applied);
            entries[i].id.api_version = writer.api_version.to_string();
            (i, last, false)
        }
        None => {
            entries.push(Entry { id, time: None, fields: applied });
            (entries.len() - 1, FieldSet::new(), true)
        }
    };

    // Prune: what this manager applied last time, no longer applies, and nobody owns.
    let mut result = merged;
    if !last.is_empty() {
        let owned = entries.iter().fold(FieldSet::new(), |acc, e| acc.union(&e.fields));
        result = merge::remove(&result, &last.difference(&owned).without_owned_parents(&owned), types);
    }

    let comparison = compare(&live_value, &result, types).exclude(&ignored);
    let changed = comparison.changed();
    let mut conflicts = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if i == own {
            continue;
        }
        let theirs = entry.fields.intersection(&changed);
        if !theirs.is_empty() {
            conflicts.push((entry.id.clone(), theirs));
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(ApplyError::Conflicts(Conflicts::from_sets(conflicts)));
    }
    for (i, entry) in entries.iter_mut().enumerate() {
        if i == own {
            entry.fields = entry.fields.difference(&stripped_set());
            if is_new || !values_equal(&live_value, &result) {
                entry.time = Some(writer.seconds());
            }
        } else {
            entry.fields = entry.fields.difference(&changed).difference(&comparison.removed);
        }
    }
    Ok((result, manager::encode(entries)))
}

/// Ownership after a non-apply write (create, update, any patch) by `writer`: `old` is the
/// object before (`None` for a create), `new` the object stored, `managed` the entries to
/// start from (see [`managed_fields_for_update`]). Fields whose value changed or appeared move
/// to the writer's `Update` entry, leaving everyone else; removed fields leave everyone.
/// The writer's entry gets the new time only when it took fields.
///
/// As in Kubernetes, an existing object without entries stays untracked until its first
/// apply (undecodable entries count as none).
pub fn update(
    old: Option<&Value>,
    new: &Value,
    managed: &[ManagedFieldsEntry],
    writer: &Writer<'_>,
) -> Vec<ManagedFieldsEntry> {
    let entries = manager::decode(managed).unwrap_or_default();
    if entries.is_empty() && old.is_some() {
        return Vec::new();
    }
    let old_value = old.map(without_managed_fields).unwrap_or_else(|| Value::Object(Map::new()));
    let new_value = without_managed_fields(new);
    manager::encode(update_entries(&old_value, &new_value, entries, writer, &writer.ignored_set()))
}

fn update_entries(
    old: &Value,
    new: &Value,
    mut entries: Vec<Entry>,
    writer: &Writer<'_>,
    ignored: &FieldSet,
) -> Vec<Entry> {
    let comparison = compare(old, new, writer.types).exclude(ignored);
    let changed = comparison.changed();
    for entry in &mut entries {
        entry.fields = entry.fields.difference(&changed).difference(&comparison.removed);
    }
    let taken = changed.difference(&stripped_set());
    if !taken.is_empty() {
        let id = writer.id(Operation::Update);
        let time = Some(writer.seconds());
        match entries.iter_mut().find(|e| e.id.same_entry(&id)) {
            Some(entry) => {
                entry.fields = entry.fields.union(&taken);
                entry.time = time;
            }
            None => entries.push(Entry { id, time, fields: taken }),
        }
    }
    entries
}

/// Which entries an update starts from (Kubernetes' `decodeLiveOrNew`): through a
/// subresource, always the live object's; otherwise the request's own `managedFields` when
/// it sets valid, non-empty ones (a client may edit them), none at all when it resets them
/// (`[]` or `[{}]`), and the live object's when it leaves them out or sends garbage.
pub fn managed_fields_for_update(
    live: Option<&Value>,
    new: &Value,
    subresource: Option<&str>,
) -> Vec<ManagedFieldsEntry> {
    let read = |object: Option<&Value>| -> Option<Vec<ManagedFieldsEntry>> {
        let raw = object?.pointer("/metadata/managedFields")?;
        if raw.is_null() {
            return None;
        }
        serde_json::from_value(raw.clone()).ok()
    };
    let valid = |entries: Vec<ManagedFieldsEntry>| -> Vec<ManagedFieldsEntry> {
        if manager::decode(&entries).is_ok() { entries } else { Vec::new() }
    };
    let from_live = || read(live).map(valid).unwrap_or_default();
    if subresource.is_some_and(|s| !s.is_empty()) {
        return from_live();
    }
    match read(Some(new)) {
        Some(entries) if entries.is_empty() => Vec::new(),
        Some(entries) if entries.len() == 1 && entries[0] == ManagedFieldsEntry::default() => Vec::new(),
        Some(entries) if manager::decode(&entries).is_ok_and(|d| !d.is_empty()) => entries,
        _ => from_live(),
    }
}

/// Stores `entries` as `object.metadata.managedFields` (removing the field when there are
/// none).
pub fn set_managed_fields(object: &mut Value, entries: &[ManagedFieldsEntry]) {
    let Some(root) = object.as_object_mut() else {
        return;
    };
    let meta = root.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    if entries.is_empty() {
        meta.remove("managedFields");
        return;
    }
    let encoded: Vec<Value> = entries.iter().filter_map(|e| serde_json::to_value(e).ok()).collect();
    meta.insert("managedFields".into(), Value::Array(encoded));
}
