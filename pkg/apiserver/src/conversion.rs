//! Requests for a resource served in one version and stored as another (a registry entry with
//! a [`Conversion`]: `events.k8s.io/v1` Events are core `v1` Events in storage).
//!
//! Every operation runs on the storage resource (same keys, its strategy, admission, watch
//! cache) and only the edges convert, as Kubernetes' apiserver converts between a request's
//! version and the storage version: a body is validated by this version's strategy and
//! converted in; objects, lists and watch events are converted out; field selectors are
//! translated to the storage version's labels. Subresources are not served.

use std::sync::Arc;

use rkube_api::registry::{Conversion, ResourceDef};
use rkube_api::selector::FieldSelector;
use serde_json::Value;

use crate::ApiState;
use crate::error::{ApiError, Target};
use crate::patch::{Patch, PatchType};
use crate::request::{Query, ResourceRequest};
use crate::rest::{self, Listed, WriteOptions, Written};
use crate::stored::StoredObject;

/// The conversion of `res`, if it is served as another resource.
pub fn of(res: &ResourceDef) -> Option<&'static Conversion> {
    res.conversion
}

/// The same request on the storage resource.
pub fn storage_request(req: &ResourceRequest, conversion: &Conversion) -> ResourceRequest {
    ResourceRequest { resource: conversion.storage, ..req.clone() }
}

/// The query with its field selector in the storage resource's labels; a label this version
/// does not offer is a 400, as for any resource.
pub fn storage_query(query: &Query, res: &ResourceDef, conversion: &Conversion) -> Result<Query, ApiError> {
    let Some(selector) = query.get("fieldSelector") else { return Ok(query.clone()) };
    let parsed =
        FieldSelector::parse(selector).map_err(|e| ApiError::BadRequest(format!("invalid fieldSelector: {e}")))?;
    let mut terms = Vec::new();
    for requirement in parsed.requirements() {
        let label = res
            .supports_field_label(&requirement.field)
            .then(|| (conversion.field_label)(&requirement.field))
            .flatten()
            .ok_or_else(|| ApiError::BadRequest(format!("field label not supported: {}", requirement.field)))?;
        let mut term = requirement.clone();
        term.field = label.to_string();
        terms.push(term.to_string());
    }
    Ok(query.with("fieldSelector", terms.join(",")))
}

/// A stored object as the converted version shows it (a `Status`, as a deletion may answer,
/// is left alone).
pub fn to_view(conversion: &Conversion, object: Value) -> Value {
    if object.get("kind").and_then(Value::as_str) == Some(conversion.storage.kind) {
        (conversion.from_storage)(object)
    } else {
        object
    }
}

/// A list of stored objects as `res` shows them.
pub fn listed_view(res: &'static ResourceDef, conversion: &Conversion, listed: Listed) -> Result<Listed, ApiError> {
    let mut items = Vec::with_capacity(listed.items.len());
    for item in &listed.items {
        let view = to_view(conversion, item.decode()?);
        items.push(Arc::new(StoredObject::from_value(res, &item.key, &view, item.revision)?));
    }
    Ok(Listed { items, ..listed })
}

/// A written object as the converted version shows it.
fn written_view(conversion: &Conversion, written: Written) -> Written {
    Written { object: to_view(conversion, written.object), ..written }
}

/// Validates a body of this version (as a new object, or as an update of `old`, in this
/// version) and converts it for storage; the unknown fields of the body become warnings or
/// errors as `opts` says.
fn to_storage(
    req: &ResourceRequest,
    conversion: &Conversion,
    mut body: Value,
    old: Option<&Value>,
    opts: &WriteOptions,
) -> Result<(Value, Vec<String>), ApiError> {
    let res = req.resource;
    rest::check_type_meta(res, &mut body)?;
    rest::check_metadata_shape(&body)?;
    rest::check_namespace(req, &mut body)?;
    let name = crate::metadata::meta_str(&body, "name").to_string();
    let target = Target::new(res, &name);
    // Validation needs a name; a generated one is chosen here, before the storage create.
    let generate = crate::metadata::meta_str(&body, "generateName").to_string();
    if name.is_empty() && !generate.is_empty() {
        crate::metadata::metadata_mut(&mut body).insert("name".into(), Value::String(rest::generated_name(&generate)));
    }
    let prepared = match old {
        None => res.strategy.create(body),
        Some(old) => res.strategy.update(body, old),
    }
    .map_err(|e| ApiError::from_strategy(target, e))?;
    let warnings = rest::unknown_field_check(opts, prepared.unknown_fields)?;
    Ok(((conversion.to_storage)(prepared.object), warnings))
}

/// Creates an object sent in this version.
pub async fn create(
    state: &ApiState,
    req: &ResourceRequest,
    conversion: &Conversion,
    body: Value,
    opts: &WriteOptions,
) -> Result<Written, ApiError> {
    let (stored, warnings) = to_storage(req, conversion, body, None, opts)?;
    let mut written = rest::create(state, &storage_request(req, conversion), stored, opts).await?;
    written.warnings.extend(warnings);
    Ok(written_view(conversion, written))
}

/// Replaces an object with one sent in this version (PUT).
pub async fn update(
    state: &ApiState,
    req: &ResourceRequest,
    conversion: &Conversion,
    name: &str,
    body: Value,
    opts: &WriteOptions,
) -> Result<Written, ApiError> {
    let storage = storage_request(req, conversion);
    let old = to_view(conversion, rest::get(state, &storage, name).await?);
    let (stored, warnings) = to_storage(req, conversion, body, Some(&old), opts)?;
    let mut written = rest::update(state, &storage, name, stored, opts).await?;
    written.warnings.extend(warnings);
    Ok(written_view(conversion, written))
}

/// Patches an object as this version shows it; server-side apply creates a missing one.
pub async fn patch(
    state: &ApiState,
    req: &ResourceRequest,
    conversion: &Conversion,
    name: &str,
    patch: &Patch,
    query: &Query,
    opts: &WriteOptions,
) -> Result<Written, ApiError> {
    patch.check_field_manager(query)?;
    let res = req.resource;
    let target = Target::new(res, name);
    let storage = storage_request(req, conversion);
    let apply = patch.kind == PatchType::Apply;
    let opts = &WriteOptions { apply, ..opts.clone() };
    let result = rest::guaranteed_update(state, &storage, name, None, opts, |current| {
        let view = to_view(conversion, current.clone());
        let patched = match apply {
            true => {
                patch.check_resource_version(&view, &target)?;
                crate::fieldmanager::apply(req, opts, Some(&view), &patch.document)?
            }
            false => patch.apply_to(res.kind, &view, &target)?,
        };
        Ok(to_storage(req, conversion, patched, Some(&view), opts)?.0)
    })
    .await;
    match result {
        Err(ApiError::NotFound(_)) if apply => {
            let object = crate::fieldmanager::apply(req, opts, None, &patch.object_to_create(name)?)?;
            create(state, req, conversion, object, opts).await
        }
        other => other.map(|written| written_view(conversion, written)),
    }
}
