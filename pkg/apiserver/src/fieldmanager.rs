//! Field ownership on every write (Kubernetes' `fieldmanager`): who set which field, kept in
//! `metadata.managedFields`, and server-side apply on top of it.
//!
//! The rules live in [`rkube_api::managedfields`]; this module gives them what a request
//! knows: the manager (`?fieldManager=`, else the client's `User-Agent` up to its first `/`,
//! as Kubernetes defaults it), the API version and subresource written through, the kind's
//! list types (its schema for a custom resource, Kubernetes' patch strategies for a built-in
//! kind) and the fields the write may not touch (a main resource's `status` when `status` is
//! a subresource).
//!
//! - [`track`] runs on every create and update after the kind's strategy: the writer's
//!   `Update` entry takes what it changed.
//! - [`apply`] is server-side apply: it merges an applied configuration into the live object
//!   and computes the entries, or fails with a 409 naming each conflicting field and manager.

use http::HeaderMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use rkube_api::Subresource;
use rkube_api::managedfields::{self, ApplyError, BuiltinTypes, TypeInfo, Writer};
use rkube_api::registry::ResourceDef;
use serde_json::Value;

use crate::error::ApiError;
use crate::request::{Query, ResourceRequest};
use crate::rest::WriteOptions;

/// The manager of the apiserver's own writes (namespace finalization, CRD status, bootstrap).
pub const APISERVER: &str = "rkube-apiserver";

/// The longest field manager name Kubernetes accepts.
const MAX_MANAGER_LENGTH: usize = 128;

/// The field manager of a request: `?fieldManager=`, else the `User-Agent` up to its first
/// `/` (`kubectl/v1.37.0 …` → `kubectl`), else `unknown`.
pub fn manager(query: &Query, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(given) = query.get("fieldManager") {
        if given.chars().count() > MAX_MANAGER_LENGTH {
            return Err(ApiError::BadRequest(format!(
                "fieldManager: Invalid value: must be at most {MAX_MANAGER_LENGTH} characters"
            )));
        }
        if given.chars().any(|c| c.is_control()) {
            return Err(ApiError::BadRequest("fieldManager: Invalid value: must be printable".into()));
        }
        return Ok(given.to_string());
    }
    let agent = headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let prefix: String = agent.split('/').next().unwrap_or_default().chars().take(MAX_MANAGER_LENGTH).collect();
    Ok(if prefix.is_empty() { "unknown".to_string() } else { prefix })
}

/// The list and map types of a resource's objects: its CRD schema's, or Kubernetes' patch
/// strategies for a built-in kind.
enum Types {
    Custom(&'static rkube_api::customresource::CustomResource),
    Builtin(BuiltinTypes<'static>),
}

impl Types {
    fn of(res: &'static ResourceDef) -> Self {
        match res.custom {
            Some(custom) => Types::Custom(custom),
            None => Types::Builtin(BuiltinTypes { kind: res.kind }),
        }
    }

    fn as_dyn(&self) -> &dyn TypeInfo {
        match self {
            Types::Custom(custom) => *custom,
            Types::Builtin(builtin) => builtin,
        }
    }
}

/// Fields a write through `sub` never records nor takes: the status of a main resource whose
/// status is a subresource, and the deletion marks the server sets.
fn ignored(res: &ResourceDef, sub: Option<Subresource>) -> Vec<&'static str> {
    let mut ignored = vec!["metadata.deletionTimestamp", "metadata.deletionGracePeriodSeconds"];
    if sub.is_none() && res.has_subresource(Subresource::Status) {
        ignored.push("status");
    }
    ignored
}

/// What a [`Writer`] borrows, for one request: the resource's types, the fields it may not
/// touch, its API version and subresource.
struct Write {
    types: Types,
    ignored: Vec<&'static str>,
    api_version: String,
    subresource: Option<&'static str>,
}

impl Write {
    fn of(req: &ResourceRequest) -> Self {
        let res = req.resource;
        Write {
            types: Types::of(res),
            ignored: ignored(res, req.subresource),
            api_version: res.api_version(),
            subresource: req.subresource.map(Subresource::name),
        }
    }

    fn writer<'a>(&'a self, opts: &'a WriteOptions) -> Writer<'a> {
        Writer {
            manager: manager_of(opts),
            api_version: &self.api_version,
            subresource: self.subresource,
            now: jiff::Timestamp::now(),
            types: self.types.as_dyn(),
            ignored: &self.ignored,
        }
    }
}

fn manager_of(opts: &WriteOptions) -> &str {
    if opts.field_manager.is_empty() { APISERVER } else { &opts.field_manager }
}

/// The entries stored in `object` (none when absent or not entries).
fn entries_of(object: &Value) -> Vec<ManagedFieldsEntry> {
    object.pointer("/metadata/managedFields").and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
}

/// Records the field ownership of a create (`old` is `None`) or update of `object` (already
/// defaulted and validated). `requested` is the `metadata.managedFields` the request body
/// carried: the entries an apply computed, or what a client sent (Kubernetes lets a client
/// reset them with `[]`).
pub fn track(
    req: &ResourceRequest,
    opts: &WriteOptions,
    old: Option<&Value>,
    requested: Option<Value>,
    object: &mut Value,
) {
    let entries = match (opts.apply, requested) {
        (true, Some(computed)) => serde_json::from_value(computed).unwrap_or_default(),
        (_, requested) => {
            let body = serde_json::json!({"metadata": {"managedFields": requested.unwrap_or(Value::Null)}});
            let base = managedfields::managed_fields_for_update(old, &body, req.subresource.map(Subresource::name));
            let write = Write::of(req);
            managedfields::update(old, object, &base, &write.writer(opts))
        }
    };
    managedfields::set_managed_fields(object, &entries);
}

/// Server-side apply of `config` onto `live` (`None`: the object does not exist yet): the
/// merged object, its `metadata.managedFields` holding the new entries (for [`track`] to keep).
pub fn apply(
    req: &ResourceRequest,
    opts: &WriteOptions,
    live: Option<&Value>,
    config: &Value,
) -> Result<Value, ApiError> {
    let write = Write::of(req);
    let writer = write.writer(opts);
    let managed = live.map(entries_of).unwrap_or_default();
    let mut result = managedfields::apply(live, &managed, config, opts.force, &writer);
    if let Err(ApplyError::Conflicts(conflicts)) = &result
        && upgrades_client_side_apply(live, conflicts, &writer)
    {
        result = managedfields::apply(live, &managed, config, true, &writer);
    }
    let (mut merged, entries) = result.map_err(|e| match e {
        ApplyError::Conflicts(conflicts) => ApiError::ApplyConflict {
            message: conflicts.to_string(),
            causes: conflicts.0.iter().map(|c| (c.cause_message(), c.field.clone())).collect(),
        },
        other => ApiError::BadRequest(other.to_string()),
    })?;
    managedfields::set_managed_fields(&mut merged, &entries);
    // An apply that names no entries keeps the field present so that `track` knows they
    // were computed (and stores none).
    if entries.is_empty()
        && let Some(meta) = merged.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.insert("managedFields".into(), Value::Array(Vec::new()));
    }
    Ok(merged)
}

/// The annotation client-side apply (`kubectl apply` without `--server-side`) keeps its last
/// configuration in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Whether an apply by `kubectl` may take over the fields it conflicts on because they are
/// the ones its own client-side apply set before (they are in the object's last-applied
/// configuration): Kubernetes' upgrade from client-side to server-side apply, so that
/// `kubectl apply --server-side` on an object made by `kubectl apply` does not conflict with
/// `kubectl-client-side-apply`.
fn upgrades_client_side_apply(live: Option<&Value>, conflicts: &managedfields::Conflicts, writer: &Writer<'_>) -> bool {
    if writer.manager != "kubectl" {
        return false;
    }
    let Some(text) =
        live.and_then(|l| l.pointer("/metadata/annotations")).and_then(|a| a.get(LAST_APPLIED)).and_then(Value::as_str)
    else {
        return false;
    };
    let Ok(last_applied) = serde_json::from_str::<Value>(text) else { return false };
    let owned = managedfields::field_set(&last_applied, writer.types);
    conflicts.0.iter().all(|c| owned.has(&c.path))
}

/// Takes the `metadata.managedFields` a body carries out of it.
pub fn take_requested(body: &mut Value) -> Option<Value> {
    body.get_mut("metadata").and_then(Value::as_object_mut).and_then(|meta| meta.remove("managedFields"))
}
