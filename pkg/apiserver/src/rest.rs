//! Generic REST storage: the create, get, list, update and delete logic shared by every
//! resource (Kubernetes calls this the generic registry `Store`).
//!
//! What it keeps true:
//! - the server owns `uid`, `creationTimestamp`, `generation`, `resourceVersion` and the
//!   deletion fields; clients cannot set them;
//! - `generation` starts at 1 and goes up when `spec` changes, and only then;
//! - a write that carries a resourceVersion fails with 409 if the object moved on; a write
//!   without one is retried on the latest version (read-modify-write);
//! - an update that changes nothing writes nothing and keeps the resourceVersion;
//! - an object with finalizers, or one its kind's strategy makes wait (a running pod's
//!   grace period, a namespace's cleanup), is only marked for deletion (`deletionTimestamp`);
//!   it goes when its finalizers are gone, the strategy awaits nothing and its grace period
//!   is 0.
//!
//! Nothing here names a kind: what differs between kinds is asked of the kind's strategy
//! ([`rkube_api::strategy::RestStrategy`]) through its registry entry.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ObjectMeta};
use rkube_api::Subresource;
use rkube_api::registry::ResourceDef;
use rkube_api::selector::{FieldSelector, LabelSelector};
use rkube_storage::{Continue, ListOptions};
use serde_json::{Map, Value, json};

use crate::ApiState;
use crate::admission;
use crate::error::{ApiError, OBJECT_MODIFIED, Target};
use crate::metadata::{
    finalizers, from_storage, is_terminating, meta_str, metadata_mut, name, now_rfc3339, set_resource_version,
    timestamp, to_storage,
};
use crate::request::{Query, ResourceRequest};

/// How many times a write without a resourceVersion is retried after losing a race.
const MAX_RETRIES: usize = 16;

/// How strictly unknown fields in a body are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop unknown fields silently.
    Ignore,
    /// Drop them and warn (the default, like Kubernetes).
    #[default]
    Warn,
    /// Reject the request with a 400 naming them.
    Strict,
}

/// Options common to writes.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: validate and answer, store nothing.
    pub dry_run: bool,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
}

impl WriteOptions {
    /// Reads `dryRun` and `fieldValidation` from the query.
    pub fn from_query(query: &Query) -> Result<Self, ApiError> {
        let field_validation = match query.get("fieldValidation") {
            None | Some("Warn") => FieldValidation::Warn,
            Some("Ignore") => FieldValidation::Ignore,
            Some("Strict") => FieldValidation::Strict,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "fieldValidation must be one of Ignore, Warn or Strict, not {other:?}"
                )));
            }
        };
        let dry_run = match query.get("dryRun") {
            None => false,
            Some("All") => true,
            Some(other) => return Err(ApiError::BadRequest(format!("dryRun must be All, not {other:?}"))),
        };
        Ok(WriteOptions { dry_run, field_validation })
    }
}

/// The result of a write.
#[derive(Debug, Clone)]
pub struct Written {
    /// The object as stored.
    pub object: Value,
    /// Whether it was created (201) rather than updated (200).
    pub created: bool,
    /// Warnings for the client (unknown fields under `fieldValidation=Warn`).
    pub warnings: Vec<String>,
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The matching objects.
    pub items: Vec<Value>,
    /// The list's resourceVersion.
    pub revision: i64,
    /// The continue token, if there are more pages.
    pub next: Option<String>,
    /// How many keys remain after this page.
    pub remaining: Option<i64>,
}

/// Label and field selectors of a list or watch.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    /// Reads `labelSelector` and `fieldSelector`; unknown field labels are a 400.
    pub fn from_query(res: &ResourceDef, query: &Query) -> Result<Self, ApiError> {
        let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())
            .map_err(|e| ApiError::BadRequest(format!("invalid labelSelector: {e}")))?;
        let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())
            .map_err(|e| ApiError::BadRequest(format!("invalid fieldSelector: {e}")))?;
        for req in fields.requirements() {
            if !res.supports_field_label(&req.field) {
                return Err(ApiError::BadRequest(format!("field label not supported: {}", req.field)));
            }
        }
        Ok(Filter { labels, fields })
    }

    /// Whether an object passes both selectors.
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_object(obj) && self.fields.matches_object(obj)
    }
}

/// The storage key of a named object of the request's resource.
pub fn key(state: &ApiState, req: &ResourceRequest, name: &str) -> String {
    state.keys.object(req.resource.plural, req.namespace.as_deref(), name)
}

/// The storage prefix of the request's collection.
pub fn prefix(state: &ApiState, req: &ResourceRequest) -> String {
    state.keys.collection(req.resource.plural, req.namespace.as_deref())
}

/// Reads one object.
pub async fn get(state: &ApiState, req: &ResourceRequest, name: &str) -> Result<Value, ApiError> {
    let kv = state
        .store
        .get(&key(state, req, name))
        .await
        .map_err(|e| ApiError::from_storage(Target::new(req.resource, name), e))?;
    from_storage(&kv)
}

/// Lists a collection: one page at one revision, filtered by the selectors.
pub async fn list(state: &ApiState, req: &ResourceRequest, query: &Query) -> Result<Listed, ApiError> {
    let filter = Filter::from_query(req.resource, query)?;
    let continue_from = query.get("continue").map(Continue::decode).transpose()?;
    let revision = match (query.get("resourceVersion"), query.get("resourceVersionMatch")) {
        (Some(rv), Some("Exact")) => Some(parse_rv(rv)?),
        (Some(rv), _) => {
            parse_rv(rv)?;
            None
        }
        (None, Some(_)) => {
            return Err(ApiError::BadRequest(
                "resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
            ));
        }
        (None, None) => None,
    };
    let options = ListOptions { limit: query.int("limit")?, continue_from, revision };
    let page = state.store.list(&prefix(state, req), options).await.map_err(|e| match e {
        rkube_storage::Error::Expired { .. } => ApiError::Expired(
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
        ),
        other => ApiError::from(other),
    })?;
    let mut items = Vec::with_capacity(page.items.len());
    for kv in &page.items {
        let obj = from_storage(kv)?;
        if filter.matches(&obj) {
            items.push(obj);
        }
    }
    Ok(Listed { items, revision: page.revision, next: page.next.map(|c| c.encode()), remaining: page.remaining })
}

/// Parses a resourceVersion sent by a client.
pub fn parse_rv(rv: &str) -> Result<i64, ApiError> {
    rv.parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid resourceVersion {rv:?}: must be a non-negative integer")))
}

/// Checks `apiVersion` and `kind` of a body against the resource (filling them in when
/// absent, as the Python client omits them).
pub fn check_type_meta(res: &ResourceDef, body: &mut Value) -> Result<(), ApiError> {
    let api_version = res.api_version();
    let Some(fields) = body.as_object_mut() else {
        return Err(ApiError::BadRequest("the request body must be a JSON object".into()));
    };
    match fields.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {}
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
    }
    match fields.get("kind").and_then(Value::as_str) {
        None | Some("") => {}
        Some(k) if k == res.kind => {}
        Some(k) => {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                res.kind
            )));
        }
    }
    fields.insert("apiVersion".into(), Value::String(api_version));
    fields.insert("kind".into(), Value::String(res.kind.to_string()));
    Ok(())
}

/// Fails with a 400 unless `metadata` (when present) is an `ObjectMeta`: an object whose
/// fields have the right types. Checked before the server touches any metadata field.
pub fn check_metadata_shape(body: &Value) -> Result<(), ApiError> {
    match body.get("metadata") {
        None | Some(Value::Null) => Ok(()),
        Some(meta) => serde_json::from_value::<ObjectMeta>(meta.clone())
            .map(|_| ())
            .map_err(|e| ApiError::BadRequest(format!("invalid metadata: {e}"))),
    }
}

/// Fails with a 400 unless the body names the object of the URL.
fn check_name(body: &Value, name: &str) -> Result<(), ApiError> {
    let body_name = meta_str(body, "name");
    if body_name != name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    Ok(())
}

/// Makes the body's namespace the request's (a different one is a 400).
fn check_namespace(req: &ResourceRequest, body: &mut Value) -> Result<(), ApiError> {
    let meta = metadata_mut(body);
    match (&req.namespace, meta.get("namespace").and_then(Value::as_str)) {
        (Some(url), Some(given)) if !given.is_empty() && given != url => Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request".into(),
        )),
        (Some(url), _) => {
            meta.insert("namespace".into(), Value::String(url.clone()));
            Ok(())
        }
        (None, _) => {
            meta.remove("namespace");
            Ok(())
        }
    }
}

/// Characters Kubernetes uses for `generateName` suffixes (no vowels, no look-alikes).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generated_name(base: &str) -> String {
    let id = uuid::Uuid::new_v4();
    let suffix: String =
        id.as_bytes()[..5].iter().map(|b| NAME_ALPHABET[usize::from(*b) % NAME_ALPHABET.len()] as char).collect();
    format!("{base}{suffix}")
}

fn unknown_field_check(opts: &WriteOptions, unknown: Vec<String>) -> Result<Vec<String>, ApiError> {
    if unknown.is_empty() || opts.field_validation == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let messages: Vec<String> =
        unknown.iter().map(|f| format!("unknown field {:?}", f.trim_start_matches('.'))).collect();
    match opts.field_validation {
        FieldValidation::Strict => Err(ApiError::BadRequest(format!("strict decoding error: {}", messages.join(", ")))),
        _ => Ok(messages),
    }
}

/// Creates an object in the request's collection.
pub async fn create(
    state: &ApiState,
    req: &ResourceRequest,
    mut body: Value,
    opts: &WriteOptions,
) -> Result<Written, ApiError> {
    let res = req.resource;
    check_type_meta(res, &mut body)?;
    check_metadata_shape(&body)?;
    check_namespace(req, &mut body)?;
    let meta = metadata_mut(&mut body);
    let generate = meta.get("generateName").and_then(Value::as_str).unwrap_or_default().to_string();
    let given = meta.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    let object_name = if given.is_empty() && !generate.is_empty() { generated_name(&generate) } else { given };
    if object_name.is_empty() {
        let err = rkube_api::FieldError::required("metadata.name", "name or generateName is required");
        return Err(ApiError::Invalid(Target::new(res, ""), vec![err]));
    }
    meta.insert("name".into(), Value::String(object_name.clone()));
    meta.insert("uid".into(), Value::String(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
    meta.insert("generation".into(), json!(1));
    for server_owned in
        ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"]
    {
        meta.remove(server_owned);
    }
    let target = Target::new(res, &object_name);
    let decoded = res.strategy.create(body).map_err(|e| ApiError::from_strategy(target.clone(), e))?;
    let warnings = unknown_field_check(opts, decoded.unknown_fields)?;
    let mut object = decoded.object;
    admission::admit_create(state, req).await?;
    if opts.dry_run {
        return Ok(Written { object, created: true, warnings });
    }
    let revision = state
        .store
        .create(&key(state, req, &object_name), to_storage(&object))
        .await
        .map_err(|e| ApiError::from_storage(target, e))?;
    set_resource_version(&mut object, revision);
    Ok(Written { object, created: true, warnings })
}

/// Replaces an object (PUT) or its status (PUT `/status`).
pub async fn update(
    state: &ApiState,
    req: &ResourceRequest,
    name: &str,
    mut body: Value,
    opts: &WriteOptions,
) -> Result<Written, ApiError> {
    check_type_meta(req.resource, &mut body)?;
    check_metadata_shape(&body)?;
    check_name(&body, name)?;
    check_namespace(req, &mut body)?;
    let precondition = match meta_str(&body, "resourceVersion") {
        "" => None,
        rv => Some(parse_rv(rv)?),
    };
    guaranteed_update(state, req, name, precondition, opts, |_| Ok(body.clone())).await
}

/// Read-modify-write of one object: `mutate` turns the current object into the desired
/// one, which is then merged with the server-owned fields, defaulted, validated and
/// written with the current resourceVersion as precondition. Without a client
/// `precondition`, a lost race is retried on the newer version.
pub async fn guaranteed_update(
    state: &ApiState,
    req: &ResourceRequest,
    name: &str,
    precondition: Option<i64>,
    opts: &WriteOptions,
    mut mutate: impl FnMut(&Value) -> Result<Value, ApiError>,
) -> Result<Written, ApiError> {
    let target = Target::new(req.resource, name);
    let key = key(state, req, name);
    for _ in 0..MAX_RETRIES {
        let kv = state.store.get(&key).await.map_err(|e| ApiError::from_storage(target.clone(), e))?;
        if precondition.is_some_and(|rv| rv != kv.mod_revision) {
            return Err(ApiError::Conflict(target, OBJECT_MODIFIED.into()));
        }
        let current = from_storage(&kv)?;
        let desired = mutate(&current)?;
        let (mut object, unknown) = prepare_update(req.resource, req.subresource, desired, &current)?;
        let warnings = unknown_field_check(opts, unknown)?;
        set_resource_version(&mut object, kv.mod_revision);
        if object == current || opts.dry_run {
            return Ok(Written { object, created: false, warnings });
        }
        if finalized(req.resource, &object) {
            match state.store.delete(&key, Some(kv.mod_revision)).await {
                Ok((_, revision)) => {
                    set_resource_version(&mut object, revision);
                    return Ok(Written { object, created: false, warnings });
                }
                Err(rkube_storage::Error::Conflict { .. }) if precondition.is_none() => continue,
                Err(e) => return Err(ApiError::from_storage(target, e)),
            }
        }
        match state.store.update(&key, kv.mod_revision, to_storage(&object)).await {
            Ok(revision) => {
                set_resource_version(&mut object, revision);
                return Ok(Written { object, created: false, warnings });
            }
            Err(rkube_storage::Error::Conflict { .. }) if precondition.is_none() => continue,
            Err(e) => return Err(ApiError::from_storage(target, e)),
        }
    }
    Err(ApiError::Conflict(target, OBJECT_MODIFIED.into()))
}

/// Whether an update leaves an object marked for deletion with nothing left to wait for:
/// no finalizers, nothing the kind's strategy waits for, no grace period left.
fn finalized(res: &ResourceDef, obj: &Value) -> bool {
    is_terminating(obj)
        && finalizers(obj).is_empty()
        && !res.strategy.awaits_finalization(obj)
        && obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0) == 0
}

/// Merges a desired object with what the server owns in `old`, then defaults and
/// validates it as an update. Returns the object and the unknown fields of the body.
pub fn prepare_update(
    res: &ResourceDef,
    sub: Option<Subresource>,
    desired: Value,
    old: &Value,
) -> Result<(Value, Vec<String>), ApiError> {
    let name = name(old).to_string();
    let target = Target::new(res, &name);
    check_metadata_shape(&desired)?;
    check_name(&desired, &name)?;
    let mut new = match sub {
        // `/status` changes the status and nothing else.
        Some(Subresource::Status) => {
            let mut merged = old.clone();
            match desired.get("status") {
                Some(status) => merged["status"] = status.clone(),
                None => {
                    if let Some(fields) = merged.as_object_mut() {
                        fields.remove("status");
                    }
                }
            }
            merged
        }
        _ => {
            let mut new = desired;
            // The main resource ignores status changes when status is a subresource.
            if res.has_subresource(Subresource::Status)
                && let Some(fields) = new.as_object_mut()
            {
                match old.get("status") {
                    Some(status) => fields.insert("status".into(), status.clone()),
                    None => fields.remove("status"),
                };
            }
            new
        }
    };
    check_type_meta(res, &mut new)?;
    let old_meta = old.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    let meta = metadata_mut(&mut new);
    for owned in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(owned) {
            Some(v) => meta.insert(owned.into(), v.clone()),
            None => meta.remove(owned),
        };
    }
    meta.remove("managedFields");
    meta.remove("selfLink");
    meta.remove("resourceVersion");
    let mut decoded = res.strategy.update(new, old).map_err(|e| ApiError::from_strategy(target, e))?;
    if decoded.object.get("spec") != old.get("spec") {
        let generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
        metadata_mut(&mut decoded.object).insert("generation".into(), json!(generation));
    }
    Ok((decoded.object, decoded.unknown_fields))
}

/// Reads `DeleteOptions` from the body (possibly empty) and the query.
pub fn delete_options(body: &[u8], query: &Query) -> Result<DeleteOptions, ApiError> {
    let mut options: DeleteOptions = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))?
    };
    if let Some(grace) = query.int("gracePeriodSeconds")? {
        options.grace_period_seconds = Some(grace);
    }
    if let Some(policy) = query.get("propagationPolicy") {
        options.propagation_policy = Some(policy.to_string());
    }
    if let Some(policy) = &options.propagation_policy
        && !matches!(policy.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::BadRequest(format!(
            "propagationPolicy must be one of Orphan, Background or Foreground, not {policy:?}"
        )));
    }
    if options.grace_period_seconds.is_some_and(|g| g < 0) {
        return Err(ApiError::BadRequest("gracePeriodSeconds must not be negative".into()));
    }
    Ok(options)
}

/// Deletes an object, or marks it for deletion when it must wait: for finalizers, for
/// what the kind's strategy awaits (a namespace's cleanup) or for the grace period the
/// strategy gives it (a running pod). Returns the object's last state and whether it is
/// gone.
pub async fn delete(
    state: &ApiState,
    req: &ResourceRequest,
    name: &str,
    options: &DeleteOptions,
    dry_run: bool,
) -> Result<(Value, bool), ApiError> {
    let target = Target::new(req.resource, name);
    let key = key(state, req, name);
    for _ in 0..MAX_RETRIES {
        let kv = state.store.get(&key).await.map_err(|e| ApiError::from_storage(target.clone(), e))?;
        let current = from_storage(&kv)?;
        check_preconditions(&target, &current, options)?;
        let requested = options.grace_period_seconds;
        let mut marked = current.clone();
        // Foreground and orphan propagation hand the object to the garbage collector,
        // which removes these finalizers once dependents are gone or released.
        if !is_terminating(&current)
            && let Some(gc_finalizer) = propagation_finalizer(options)
            && !finalizers(&current).iter().any(|f| f == gc_finalizer)
        {
            let meta = metadata_mut(&mut marked);
            let list = meta.entry("finalizers").or_insert_with(|| json!([]));
            if let Some(items) = list.as_array_mut() {
                items.push(json!(gc_finalizer));
            }
        }
        if !is_terminating(&current) {
            marked = req
                .resource
                .strategy
                .prepare_for_delete(marked)
                .map_err(|e| ApiError::from_strategy(target.clone(), e))?;
        }
        let waiting_on_finalizers =
            !finalizers(&marked).is_empty() || req.resource.strategy.awaits_finalization(&marked);
        let grace = if is_terminating(&current) {
            // Already terminating: a shorter grace period may speed it up, nothing else changes.
            let pending = current.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0);
            let grace = requested.map_or(pending, |r| r.min(pending));
            if grace == pending && (grace > 0 || waiting_on_finalizers) {
                return Ok((current, false));
            }
            grace
        } else {
            req.resource.strategy.deletion_grace_period(&current, requested)
        };
        if grace > 0 || waiting_on_finalizers {
            let now = jiff::Timestamp::now();
            let when = now.checked_add(jiff::SignedDuration::from_secs(grace)).unwrap_or(now);
            let meta = metadata_mut(&mut marked);
            meta.insert("deletionTimestamp".into(), Value::String(timestamp(when)));
            meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            if dry_run {
                return Ok((marked, false));
            }
            match state.store.update(&key, kv.mod_revision, to_storage(&marked)).await {
                Ok(revision) => {
                    set_resource_version(&mut marked, revision);
                    return Ok((marked, false));
                }
                Err(rkube_storage::Error::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_storage(target, e)),
            }
        }
        if dry_run {
            return Ok((current, true));
        }
        match state.store.delete(&key, Some(kv.mod_revision)).await {
            Ok((_, revision)) => {
                set_resource_version(&mut marked, revision);
                return Ok((marked, true));
            }
            Err(rkube_storage::Error::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::from_storage(target, e)),
        }
    }
    Err(ApiError::Conflict(target, OBJECT_MODIFIED.into()))
}

/// The finalizer a deletion's propagation policy asks for: `foregroundDeletion` (the owner
/// waits for its dependents) or `orphan` (dependents are released); none for background.
fn propagation_finalizer(options: &DeleteOptions) -> Option<&'static str> {
    match options.propagation_policy.as_deref() {
        Some("Foreground") => Some("foregroundDeletion"),
        Some("Orphan") => Some("orphan"),
        Some(_) => None,
        None => options.orphan_dependents.is_some_and(|o| o).then_some("orphan"),
    }
}

fn check_preconditions(target: &Target, obj: &Value, options: &DeleteOptions) -> Result<(), ApiError> {
    let Some(pre) = &options.preconditions else { return Ok(()) };
    if let Some(uid) = &pre.uid
        && uid != meta_str(obj, "uid")
    {
        let msg =
            format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", meta_str(obj, "uid"));
        return Err(ApiError::Conflict(target.clone(), msg));
    }
    if let Some(rv) = &pre.resource_version
        && rv != meta_str(obj, "resourceVersion")
    {
        let msg = format!(
            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
            meta_str(obj, "resourceVersion")
        );
        return Err(ApiError::Conflict(target.clone(), msg));
    }
    Ok(())
}

/// Deletes every object of a collection that matches the query's selectors.
pub async fn delete_collection(
    state: &ApiState,
    req: &ResourceRequest,
    query: &Query,
    options: &DeleteOptions,
    dry_run: bool,
) -> Result<Listed, ApiError> {
    let mut listed = list(state, req, query).await?;
    let mut deleted = Vec::with_capacity(listed.items.len());
    for obj in &listed.items {
        let one = ResourceRequest {
            namespace: req.resource.namespaced.then(|| meta_str(obj, "namespace").to_string()),
            ..req.clone()
        };
        match delete(state, &one, name(obj), options, dry_run).await {
            Ok((gone, _)) => deleted.push(gone),
            Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    listed.items = deleted;
    Ok(listed)
}

/// A `<Kind>List` object.
pub fn list_object(res: &ResourceDef, listed: Listed) -> Value {
    let mut meta = Map::new();
    meta.insert("resourceVersion".into(), Value::String(listed.revision.to_string()));
    if let Some(next) = listed.next {
        meta.insert("continue".into(), Value::String(next));
        if let Some(remaining) = listed.remaining {
            meta.insert("remainingItemCount".into(), json!(remaining));
        }
    }
    json!({"kind": res.list_kind(), "apiVersion": res.api_version(), "metadata": meta, "items": listed.items})
}
