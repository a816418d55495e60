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

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ObjectMeta};
use rkube_api::Subresource;
use rkube_api::registry::ResourceDef;
use rkube_api::selector::{FieldSelector, LabelSelector};
use rkube_storage::{Continue, ListOptions};
use serde_json::{Map, Value, json};

use crate::ApiState;
use crate::admission;
use crate::allocator;
use crate::cacher::Cacher;
use crate::error::{ApiError, OBJECT_MODIFIED, Target};
use crate::fieldmanager;
use crate::metadata::{
    finalizers, from_storage, is_terminating, meta_str, metadata_mut, name, now_rfc3339, set_resource_version,
    timestamp, to_storage,
};
use crate::request::{Query, ResourceRequest};
use crate::stored::StoredObject;

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
    /// Who writes, for `metadata.managedFields` (`fieldManager`, else the client's default;
    /// empty for the apiserver's own writes).
    pub field_manager: String,
    /// `force=true`: a server-side apply takes conflicting fields from their managers.
    pub force: bool,
    /// Whether this write is a server-side apply (whose entries are already computed).
    pub apply: bool,
}

impl WriteOptions {
    /// Reads `dryRun`, `fieldValidation`, `fieldManager` and `force` from the request.
    pub fn from_request(query: &Query, headers: &http::HeaderMap) -> Result<Self, ApiError> {
        let mut opts = WriteOptions::from_query(query)?;
        opts.field_manager = crate::fieldmanager::manager(query, headers)?;
        opts.force = query.flag("force");
        Ok(opts)
    }

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
        Ok(WriteOptions { dry_run, field_validation, ..WriteOptions::default() })
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
    /// The matching objects, each encoded once (shared with the watch cache when it served
    /// the list).
    pub items: Vec<Arc<StoredObject>>,
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

    /// Whether a stored object passes both selectors (without decoding it).
    pub fn matches_stored(&self, object: &StoredObject) -> bool {
        object.matches(&self.labels, &self.fields)
    }
}

/// The storage key of a named object of the request's resource.
pub fn key(state: &ApiState, req: &ResourceRequest, name: &str) -> String {
    state.keys.object(&req.resource.storage_name(), req.namespace.as_deref(), name)
}

/// The storage prefix of the request's collection.
pub fn prefix(state: &ApiState, req: &ResourceRequest) -> String {
    state.keys.collection(&req.resource.storage_name(), req.namespace.as_deref())
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

/// How fresh a list must be, from `resourceVersion` and `resourceVersionMatch`
/// (Kubernetes' semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    /// No resourceVersion: the latest state, as consistent as a read from etcd.
    Consistent,
    /// `resourceVersion=0`: any state the server has.
    Any,
    /// `resourceVersion=N` (with `NotOlderThan`, or no match): a state at N or later.
    NotOlderThan(i64),
    /// `resourceVersion=N&resourceVersionMatch=Exact`: the state at N exactly.
    Exact(i64),
}

impl Freshness {
    fn from_query(query: &Query) -> Result<Freshness, ApiError> {
        let rv = query.get("resourceVersion").map(parse_rv).transpose()?;
        match (rv, query.get("resourceVersionMatch")) {
            (None, None) => Ok(Freshness::Consistent),
            (None, Some(_)) => {
                Err(ApiError::BadRequest("resourceVersionMatch is forbidden unless resourceVersion is provided".into()))
            }
            (Some(rv), Some("Exact")) if rv > 0 => Ok(Freshness::Exact(rv)),
            (Some(_), Some("Exact")) => Err(ApiError::BadRequest(
                "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"".into(),
            )),
            (Some(0), None | Some("NotOlderThan")) => Ok(Freshness::Any),
            (Some(rv), None | Some("NotOlderThan")) => Ok(Freshness::NotOlderThan(rv)),
            (Some(_), Some(other)) => {
                Err(ApiError::BadRequest(format!("resourceVersionMatch must be Exact or NotOlderThan, not {other:?}")))
            }
        }
    }
}

/// How long a read waits for the watch cache to catch up with a revision before it gives up
/// (Kubernetes waits 3 s too).
const CACHE_WAIT: Duration = Duration::from_secs(3);

/// Lists a collection: one page at one revision, filtered by the selectors. Served from the
/// watch cache whenever the request allows it (see [`crate::cacher`]), else from etcd.
pub async fn list(state: &ApiState, req: &ResourceRequest, query: &Query) -> Result<Listed, ApiError> {
    let filter = Filter::from_query(req.resource, query)?;
    let continue_from = query.get("continue").map(Continue::decode).transpose()?;
    let freshness = Freshness::from_query(query)?;
    let limit = query.int("limit")?.filter(|l| *l > 0);
    if let Some(cacher) = state.cacher(req.resource)
        && let Some(listed) =
            list_from_cache(state, &cacher, req, &filter, limit, continue_from.as_ref(), freshness).await?
    {
        return Ok(listed);
    }
    let revision = match freshness {
        Freshness::Exact(rv) => Some(rv),
        _ => None,
    };
    let options = ListOptions { limit, continue_from, revision };
    let page = state.store.list(&prefix(state, req), options).await.map_err(|e| match e {
        rkube_storage::Error::Expired { .. } => ApiError::Expired(
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
        ),
        other => ApiError::from(other),
    })?;
    let mut items = Vec::with_capacity(page.items.len());
    for kv in &page.items {
        let object = StoredObject::new(req.resource, &kv.key, &kv.value, kv.mod_revision)?;
        if filter.matches_stored(&object) {
            items.push(Arc::new(object));
        }
    }
    Ok(Listed { items, revision: page.revision, next: page.next.map(|c| c.encode()), remaining: page.remaining })
}

/// The list from the watch cache, or `None` when etcd must answer: the cache is not ready,
/// the request wants an exact old revision (or continues a list of one), or the cache could
/// not catch up with etcd in time for a consistent read.
async fn list_from_cache(
    state: &ApiState,
    cacher: &Cacher,
    req: &ResourceRequest,
    filter: &Filter,
    limit: Option<i64>,
    continue_from: Option<&Continue>,
    freshness: Freshness,
) -> Result<Option<Listed>, ApiError> {
    if !cacher.is_ready() {
        return Ok(None);
    }
    let prefix = prefix(state, req);
    let from = continue_from.map(|token| token.start.as_str());
    let limit = limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX));
    let snapshot = match (continue_from, freshness) {
        (Some(token), _) if token.revision != cacher.shown_revision() => return Ok(None),
        (Some(_), _) | (None, Freshness::Any) => cacher.list(&prefix, filter, limit, from),
        (None, Freshness::Exact(_)) => return Ok(None),
        (None, Freshness::NotOlderThan(rv)) => {
            cacher.reach(rv, CACHE_WAIT).await?;
            cacher.list(&prefix, filter, limit, from)
        }
        (None, Freshness::Consistent) => cacher.consistent_list(&prefix, filter, limit, CACHE_WAIT).await?,
    };
    let Some(snapshot) = snapshot else { return Ok(None) };
    // A continued list must still be at its revision: a change between the check above and
    // the read would show a newer state. Then etcd answers at the token's revision.
    if continue_from.is_some_and(|token| token.revision != snapshot.revision) {
        return Ok(None);
    }
    let next =
        snapshot.next.map(|last| Continue { revision: snapshot.revision, start: format!("{last}\u{0}") }.encode());
    Ok(Some(Listed { items: snapshot.objects, revision: snapshot.revision, next, remaining: None }))
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
    // Not a string is a body that does not decode, as in Kubernetes; never replaced silently.
    for field in ["apiVersion", "kind"] {
        if let Some(value) = fields.get(field).filter(|v| !v.is_string() && !v.is_null()) {
            return Err(ApiError::BadRequest(format!("{field} must be a string, not {value}")));
        }
    }
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
        Some(meta) => <ObjectMeta as serde::Deserialize>::deserialize(meta)
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
pub(crate) fn check_namespace(req: &ResourceRequest, body: &mut Value) -> Result<(), ApiError> {
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

/// `base` plus five random characters of Kubernetes' generated-name alphabet.
pub(crate) fn generated_name(base: &str) -> String {
    let id = uuid::Uuid::new_v4();
    let suffix: String =
        id.as_bytes()[..5].iter().map(|b| NAME_ALPHABET[usize::from(*b) % NAME_ALPHABET.len()] as char).collect();
    format!("{base}{suffix}")
}

/// The unknown fields of a body as `fieldValidation` wants them: ignored, warnings, or a 400.
pub(crate) fn unknown_field_check(opts: &WriteOptions, unknown: Vec<String>) -> Result<Vec<String>, ApiError> {
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
    admission::mutate_create(state, req, &mut body).await?;
    let meta = metadata_mut(&mut body);
    let generate = meta.get("generateName").and_then(Value::as_str).unwrap_or_default().to_string();
    let given = meta.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    let object_name = if given.is_empty() && !generate.is_empty() { generated_name(&generate) } else { given.clone() };
    if object_name.is_empty() {
        let err = rkube_api::FieldError::required("metadata.name", "name or generateName is required");
        return Err(ApiError::Invalid(Target::new(res, ""), vec![err]));
    }
    meta.insert("name".into(), Value::String(object_name.clone()));
    meta.insert("uid".into(), Value::String(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
    meta.insert("generation".into(), json!(1));
    for server_owned in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
        meta.remove(server_owned);
    }
    let requested = fieldmanager::take_requested(&mut body);
    let target = Target::new(res, &object_name);
    let decoded = res.strategy.create(body).map_err(|e| ApiError::from_strategy(target.clone(), e))?;
    let warnings = unknown_field_check(opts, decoded.unknown_fields)?;
    let mut object = decoded.object;
    fieldmanager::track(req, opts, None, requested, &mut object);
    admission::admit_create(state, req, &given, &object, opts.dry_run).await?;
    if opts.dry_run {
        return Ok(Written { object, created: true, warnings });
    }
    // A Service's IP and node ports are taken before it is written, and given back if the
    // write fails.
    let taken = match allocator::holds_allocations(res) {
        true => Some(allocator::allocate(state, &mut object, None).await?.0),
        false => None,
    };
    let revision = match state.store.create(&key(state, req, &object_name), to_storage(&object)).await {
        Ok(revision) => revision,
        Err(error) => {
            if let Some(taken) = taken {
                allocator::undo(state, taken).await;
            }
            return Err(ApiError::from_storage(target, error));
        }
    };
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

/// Where a read-modify-write of one object starts: the object and its revision, and whether
/// they were just read from etcd (`fresh`) or are the watch cache's copy, which may be behind.
pub(crate) struct Current {
    pub object: Value,
    pub revision: i64,
    pub fresh: bool,
}

/// Reads the object under `key` for a read-modify-write: the first time from the watch cache
/// when it holds the object (`cached`, taken here), else from etcd. As Kubernetes' storage
/// does with `cachedExistingObject`, the write's revision precondition catches a stale copy,
/// and the next attempt reads etcd; so does anything decided against a copy that is not
/// `fresh` (a refusal, or "nothing to write"). An update costs etcd one transaction, not a
/// read and a transaction.
pub(crate) async fn read_current(
    state: &ApiState,
    key: &str,
    target: &Target,
    cached: &mut Option<Arc<StoredObject>>,
) -> Result<Current, ApiError> {
    if let Some(stored) = cached.take() {
        return Ok(Current { object: stored.decode()?, revision: stored.revision, fresh: false });
    }
    let kv = state.store.get(key).await.map_err(|e| ApiError::from_storage(target.clone(), e))?;
    Ok(Current { object: from_storage(&kv)?, revision: kv.mod_revision, fresh: true })
}

/// The watch cache's copy of the object under `key`, for [`read_current`]'s first read.
pub(crate) fn cached_copy(state: &ApiState, res: &ResourceDef, key: &str) -> Option<Arc<StoredObject>> {
    state.cacher(res).and_then(|cacher| cacher.get(key))
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
    let mut cached = cached_copy(state, req.resource, &key);
    for _ in 0..MAX_RETRIES {
        let Current { object: current, revision, fresh } = read_current(state, &key, &target, &mut cached).await?;
        if precondition.is_some_and(|rv| rv != revision) {
            if !fresh {
                continue;
            }
            return Err(ApiError::Conflict(target, OBJECT_MODIFIED.into()));
        }
        // What is decided on the cache's copy, which may be behind etcd, without a write to
        // prove it current (a refusal, "nothing changed", a dry run's answer) is decided again
        // on etcd's.
        let (mut object, warnings) = match prepare_write(req, opts, &current, revision, &mut mutate) {
            Ok(prepared) => prepared,
            Err(_) if !fresh => continue,
            Err(e) => return Err(e),
        };
        if object == current {
            if !fresh {
                continue;
            }
            return Ok(Written { object, created: false, warnings });
        }
        match admission::admit_update(state, req, &object, &current).await {
            Ok(()) => {}
            Err(_) if !fresh => continue,
            Err(e) => return Err(e),
        }
        if opts.dry_run {
            if !fresh {
                continue;
            }
            return Ok(Written { object, created: false, warnings });
        }
        if finalized(req.resource, &object) {
            match state.store.delete(&key, Some(revision)).await {
                Ok((_, revision)) => {
                    released_on_delete(state, req.resource, &current).await;
                    set_resource_version(&mut object, revision);
                    return Ok(Written { object, created: false, warnings });
                }
                Err(rkube_storage::Error::Conflict { .. }) if precondition.is_none() => continue,
                Err(e) => return Err(ApiError::from_storage(target, e)),
            }
        }
        // A Service keeps its IP and node ports, takes new ones, and gives back the rest once
        // written.
        let (taken, freed) = match allocator::holds_allocations(req.resource) && req.subresource.is_none() {
            true => match allocator::allocate(state, &mut object, Some(&current)).await {
                Ok((taken, freed)) => (Some(taken), Some(freed)),
                Err(_) if !fresh => continue,
                Err(e) => return Err(e),
            },
            false => (None, None),
        };
        match state.store.update(&key, revision, to_storage(&object)).await {
            Ok(revision) => {
                if let Some(freed) = freed {
                    allocator::release(state, freed).await;
                }
                set_resource_version(&mut object, revision);
                return Ok(Written { object, created: false, warnings });
            }
            Err(error) => {
                if let Some(taken) = taken {
                    allocator::undo(state, taken).await;
                }
                match error {
                    rkube_storage::Error::Conflict { .. } if precondition.is_none() => continue,
                    e => return Err(ApiError::from_storage(target, e)),
                }
            }
        }
    }
    Err(ApiError::Conflict(target, OBJECT_MODIFIED.into()))
}

/// The object an update would write, with its warnings: `mutate` applied to `current`, the
/// kind's update rules, unknown fields checked and field ownership recorded.
fn prepare_write(
    req: &ResourceRequest,
    opts: &WriteOptions,
    current: &Value,
    revision: i64,
    mutate: &mut impl FnMut(&Value) -> Result<Value, ApiError>,
) -> Result<(Value, Vec<String>), ApiError> {
    let mut desired = mutate(current)?;
    let requested = fieldmanager::take_requested(&mut desired);
    let (mut object, unknown) = prepare_update(req.resource, req.subresource, desired, current)?;
    let warnings = unknown_field_check(opts, unknown)?;
    fieldmanager::track(req, opts, Some(current), requested, &mut object);
    set_resource_version(&mut object, revision);
    Ok((object, warnings))
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
        // `/ephemeralcontainers` changes `spec.ephemeralContainers` and nothing else.
        Some(Subresource::EphemeralContainers) => {
            let mut merged = old.clone();
            let containers = desired.pointer("/spec/ephemeralContainers").cloned().unwrap_or(Value::Null);
            if let Some(spec) = merged.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("ephemeralContainers".into(), containers);
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
    let mut decoded = match sub {
        Some(Subresource::EphemeralContainers) => {
            // The kind's rule for this subresource, then the pod's own rules against an old
            // pod that already has the new list (the rest of the spec may not change).
            let errors = rkube_api::kinds::pod::validate_ephemeral_containers_update(&new, old);
            if !errors.is_empty() {
                return Err(ApiError::Invalid(target, errors));
            }
            let mut baseline = old.clone();
            baseline["spec"]["ephemeralContainers"] =
                new.pointer("/spec/ephemeralContainers").cloned().unwrap_or(Value::Null);
            res.strategy.update(new, &baseline)
        }
        _ => res.strategy.update(new, old),
    }
    .map_err(|e| ApiError::from_strategy(target, e))?;
    if res.strategy.generation_changed(&decoded.object, old) {
        let generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
        metadata_mut(&mut decoded.object).insert("generation".into(), json!(generation));
    }
    Ok((decoded.object, decoded.unknown_fields))
}

/// Reads `DeleteOptions` from the body (possibly empty; JSON, or protobuf as client-go's
/// typed clients send it) and the query.
pub fn delete_options(body: &[u8], query: &Query) -> Result<DeleteOptions, ApiError> {
    let mut options: DeleteOptions = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else if rkube_protobuf::is_protobuf(body) {
        let value = crate::decode::decode_protobuf(body)?;
        serde_json::from_value(value).map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))?
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
                released_on_delete(state, req.resource, &current).await;
                set_resource_version(&mut marked, revision);
                return Ok((marked, true));
            }
            Err(rkube_storage::Error::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::from_storage(target, e)),
        }
    }
    Err(ApiError::Conflict(target, OBJECT_MODIFIED.into()))
}

/// What a deleted object held besides its key (a Service's IP and node ports) goes back.
async fn released_on_delete(state: &ApiState, res: &ResourceDef, object: &Value) {
    if allocator::holds_allocations(res) {
        allocator::release_all(state, object).await;
    }
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
        let one =
            ResourceRequest { namespace: req.resource.namespaced.then(|| obj.namespace().to_string()), ..req.clone() };
        match delete(state, &one, obj.name(), options, dry_run).await {
            Ok((gone, _)) => {
                let revision = gone.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("0");
                let revision = revision.parse().unwrap_or_default();
                deleted.push(Arc::new(StoredObject::from_value(req.resource, &obj.key, &gone, revision)?));
            }
            Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    listed.items = deleted;
    Ok(listed)
}

/// The `metadata` of a `<Kind>List`.
pub fn list_meta(listed: &Listed) -> Value {
    let mut meta = Map::new();
    meta.insert("resourceVersion".into(), Value::String(listed.revision.to_string()));
    if let Some(next) = &listed.next {
        meta.insert("continue".into(), Value::String(next.clone()));
        if let Some(remaining) = listed.remaining {
            meta.insert("remainingItemCount".into(), json!(remaining));
        }
    }
    Value::Object(meta)
}

/// A `<Kind>List` object, decoded (for Tables and tests; lists are sent as
/// [`list_body`]).
pub fn list_object(res: &ResourceDef, listed: &Listed) -> Result<Value, ApiError> {
    let items = listed.items.iter().map(|item| item.decode()).collect::<Result<Vec<_>, _>>()?;
    Ok(json!({"kind": res.list_kind(), "apiVersion": res.api_version(), "metadata": list_meta(listed), "items": items}))
}

/// A `<Kind>List` as JSON chunks: the head, then each item's stored bytes as they are, so a
/// list of any size is neither decoded nor copied into one buffer.
pub fn list_body(res: &ResourceDef, listed: Listed) -> Vec<bytes::Bytes> {
    let head = json!({"kind": res.list_kind(), "apiVersion": res.api_version(), "metadata": list_meta(&listed)});
    let mut head = serde_json::to_vec(&head).unwrap_or_default();
    // `{"kind":...,"metadata":{...}}` → `{"kind":...,"metadata":{...},"items":[`
    head.pop();
    head.extend_from_slice(br#","items":["#);
    let mut body = crate::frames::Frames::new();
    body.extend(&head);
    for (index, item) in listed.items.iter().enumerate() {
        if index > 0 {
            body.extend(b",");
        }
        body.push(&item.json);
    }
    body.extend(b"]}");
    body.finish()
}

#[cfg(test)]
mod tests {
    use http::{Method, StatusCode};
    use rkube_storage::Store;
    use serde_json::{Value, json};

    use crate::error::OBJECT_MODIFIED;
    use crate::testing::{
        MERGE_PATCH, TestApi, apps, assert_status, binding, config_map, core, deployment, json_body, names, pod,
        resource_version,
    };

    fn cm_path(name: &str) -> String {
        format!("{}/{name}", core("default", "configmaps"))
    }

    // --- what the server owns ---

    #[tokio::test]
    async fn create_ignores_the_server_owned_metadata_a_client_sends() {
        let api = TestApi::start().await;
        let mut body = config_map("owned", json!({"k": "v"}));
        body["metadata"]["uid"] = json!("client-uid");
        body["metadata"]["creationTimestamp"] = json!("2000-01-01T00:00:00Z");
        body["metadata"]["generation"] = json!(42);
        body["metadata"]["resourceVersion"] = json!("999");
        body["metadata"]["deletionTimestamp"] = json!("2000-01-01T00:00:00Z");
        body["metadata"]["deletionGracePeriodSeconds"] = json!(5);
        body["metadata"]["selfLink"] = json!("/somewhere");
        let created = api.create(&core("default", "configmaps"), body).await;
        let meta = &created["metadata"];
        assert!(meta["uid"].as_str().is_some_and(|u| uuid::Uuid::parse_str(u).is_ok()), "{created}");
        assert_ne!(meta["creationTimestamp"], "2000-01-01T00:00:00Z", "{created}");
        assert_eq!(meta["generation"], 1, "{created}");
        assert_eq!(resource_version(&created), api.revision().await.to_string(), "{created}");
        for absent in ["deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
            assert!(meta.get(absent).is_none(), "{absent} is the server's: {created}");
        }
        assert_eq!(api.get_ok(&cm_path("owned")).await, created, "what the client got is what is stored");
    }

    #[tokio::test]
    async fn update_keeps_the_server_owned_metadata_whatever_the_client_sends() {
        let api = TestApi::start().await;
        let created = api.create(&core("default", "configmaps"), config_map("owned", json!({"k": "v"}))).await;
        let mut body = created.clone();
        body["data"] = json!({"k": "w"});
        body["metadata"]["uid"] = json!("client-uid");
        body["metadata"]["creationTimestamp"] = json!("2000-01-01T00:00:00Z");
        body["metadata"]["generation"] = json!(42);
        body["metadata"]["deletionTimestamp"] = json!("2000-01-01T00:00:00Z");
        let (status, updated) = api.put(&cm_path("owned"), body).await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        assert_eq!(updated["data"], json!({"k": "w"}));
        for owned in ["uid", "creationTimestamp", "generation"] {
            assert_eq!(updated["metadata"][owned], created["metadata"][owned], "{owned}: {updated}");
        }
        assert!(updated["metadata"].get("deletionTimestamp").is_none(), "an update cannot mark for deletion");
        assert!(resource_version(&updated).parse::<i64>().unwrap() > resource_version(&created).parse().unwrap());
    }

    #[tokio::test]
    async fn generation_starts_at_1_and_goes_up_on_spec_changes_only() {
        let api = TestApi::start().await;
        let path = format!("{}/web", apps("default", "deployments"));
        let created = api.create(&apps("default", "deployments"), deployment("web", 1)).await;
        assert_eq!(created["metadata"]["generation"], 1);

        let (status, labelled) = api.patch(&path, MERGE_PATCH, json!({"metadata": {"labels": {"tier": "a"}}})).await;
        assert_eq!(status, StatusCode::OK, "{labelled}");
        assert_ne!(resource_version(&labelled), resource_version(&created), "the label change was written");
        assert_eq!(labelled["metadata"]["generation"], 1, "metadata is not spec");

        let mut with_status = labelled.clone();
        with_status["status"] = json!({"replicas": 1, "observedGeneration": 1});
        let (status, reported) = api.put(&format!("{path}/status"), with_status).await;
        assert_eq!(status, StatusCode::OK, "{reported}");
        assert_eq!(reported["metadata"]["generation"], 1, "status is not spec");

        let (status, scaled) = api.patch(&path, MERGE_PATCH, json!({"spec": {"replicas": 3}})).await;
        assert_eq!(status, StatusCode::OK, "{scaled}");
        assert_eq!(scaled["metadata"]["generation"], 2, "{scaled}");
        let (_, again) = api.patch(&path, MERGE_PATCH, json!({"spec": {"replicas": 4}})).await;
        assert_eq!(again["metadata"]["generation"], 3, "{again}");
    }

    // --- resourceVersion ---

    #[tokio::test]
    async fn a_write_with_a_stale_resource_version_is_a_409_conflict_status() {
        let api = TestApi::start().await;
        let created = api.create(&core("default", "configmaps"), config_map("cas", json!({"v": "1"}))).await;
        let mut first = created.clone();
        first["data"] = json!({"v": "2"});
        let (status, updated) = api.put(&cm_path("cas"), first).await;
        assert_eq!(status, StatusCode::OK, "{updated}");

        let mut stale = created.clone();
        stale["data"] = json!({"v": "3"});
        let (status, reply) = api.put(&cm_path("cas"), stale).await;
        assert_status(status, &reply, 409, "Conflict");
        assert_eq!(reply["message"], format!("Operation cannot be fulfilled on configmaps \"cas\": {OBJECT_MODIFIED}"));
        assert_eq!(reply["details"], json!({"name": "cas", "kind": "configmaps"}), "no empty group, as kube-apiserver");

        let stale_patch = json!({"metadata": {"resourceVersion": resource_version(&created)}, "data": {"v": "4"}});
        let (status, reply) = api.patch(&cm_path("cas"), MERGE_PATCH, stale_patch).await;
        assert_status(status, &reply, 409, "Conflict");
        assert_eq!(api.get_ok(&cm_path("cas")).await, updated, "neither stale write changed anything");
    }

    #[tokio::test]
    async fn a_write_without_a_resource_version_applies_to_the_latest_version() {
        let api = TestApi::start().await;
        api.create(&core("default", "configmaps"), config_map("latest", json!({"v": "1"}))).await;
        api.patch(&cm_path("latest"), MERGE_PATCH, json!({"data": {"v": "2"}})).await;
        let (status, updated) = api.put(&cm_path("latest"), config_map("latest", json!({"v": "3"}))).await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        assert_eq!(api.get_ok(&cm_path("latest")).await["data"], json!({"v": "3"}));
    }

    #[tokio::test]
    async fn an_update_that_changes_nothing_keeps_the_resource_version() {
        let api = TestApi::start().await;
        let created = api.create(&apps("default", "deployments"), deployment("same", 2)).await;
        let path = format!("{}/same", apps("default", "deployments"));
        let before = api.revision().await;
        let (status, put) = api.put(&path, created.clone()).await;
        assert_eq!(status, StatusCode::OK, "{put}");
        assert_eq!(put, created);
        let (status, patched) = api.patch(&path, MERGE_PATCH, json!({"spec": {"replicas": 2}})).await;
        assert_eq!(status, StatusCode::OK, "{patched}");
        assert_eq!(resource_version(&patched), resource_version(&created));
        assert_eq!(api.revision().await, before, "nothing was written");
    }

    // --- create ---

    #[tokio::test]
    async fn create_resets_the_status_a_client_sends() {
        let api = TestApi::start().await;
        let mut running = pod("eager");
        running["status"] = json!({"phase": "Running", "podIP": "10.0.0.9"});
        let created = api.create(&core("default", "pods"), running).await;
        assert_eq!(created["status"], json!({"phase": "Pending"}), "a new pod is Pending: {created}");

        let mut ready = deployment("eager", 2);
        ready["status"] = json!({"replicas": 2, "readyReplicas": 2, "observedGeneration": 7});
        let created = api.create(&apps("default", "deployments"), ready).await;
        assert!(created.get("status").is_none_or(|s| *s == json!({})), "a new deployment has no status: {created}");
    }

    #[tokio::test]
    async fn generate_name_gives_each_object_a_new_name_with_the_prefix() {
        let api = TestApi::start().await;
        let generated = json!({"metadata": {"generateName": "web-"}, "data": {}});
        let first = api.create(&core("default", "configmaps"), generated.clone()).await;
        let second = api.create(&core("default", "configmaps"), generated).await;
        let (a, b) = (first["metadata"]["name"].as_str().unwrap(), second["metadata"]["name"].as_str().unwrap());
        assert!(a.starts_with("web-") && a.len() == "web-".len() + 5, "{a}");
        assert!(b.starts_with("web-") && a != b, "{a} {b}");
        assert_eq!(first["metadata"]["generateName"], "web-");

        let named = json!({"metadata": {"name": "given", "generateName": "web-"}});
        assert_eq!(api.create(&core("default", "configmaps"), named).await["metadata"]["name"], "given");

        let (status, reply) = api.post(&core("default", "configmaps"), json!({"metadata": {}})).await;
        assert_status(status, &reply, 422, "Invalid");
        assert_eq!(reply["details"]["causes"][0]["field"], "metadata.name", "{reply}");
    }

    #[tokio::test]
    async fn creating_an_existing_name_is_a_409_already_exists() {
        let api = TestApi::start().await;
        api.create(&core("default", "configmaps"), config_map("twice", json!({}))).await;
        let (status, reply) = api.post(&core("default", "configmaps"), config_map("twice", json!({}))).await;
        assert_status(status, &reply, 409, "AlreadyExists");
        assert_eq!(reply["message"], "configmaps \"twice\" already exists");
    }

    #[tokio::test]
    async fn a_body_namespace_other_than_the_urls_is_a_400() {
        let api = TestApi::start().await;
        let mut elsewhere = config_map("cm", json!({}));
        elsewhere["metadata"]["namespace"] = json!("kube-system");
        let (status, reply) = api.post(&core("default", "configmaps"), elsewhere.clone()).await;
        assert_status(status, &reply, 400, "BadRequest");
        assert_eq!(
            reply["message"],
            "the namespace of the provided object does not match the namespace sent on the request"
        );
        let (status, reply) = api.put(&cm_path("cm"), elsewhere).await;
        assert_status(status, &reply, 400, "BadRequest");

        let created = api.create(&core("default", "configmaps"), config_map("cm", json!({}))).await;
        assert_eq!(created["metadata"]["namespace"], "default", "the URL's namespace is filled in");
    }

    #[tokio::test]
    async fn an_api_version_or_kind_other_than_the_resources_is_a_400() {
        let api = TestApi::start().await;
        let mut wrong_kind = config_map("cm", json!({}));
        wrong_kind["kind"] = json!("Secret");
        let (status, reply) = api.post(&core("default", "configmaps"), wrong_kind).await;
        assert_status(status, &reply, 400, "BadRequest");
        assert_eq!(reply["message"], "the kind in the data (Secret) does not match the expected kind (ConfigMap)");

        let mut wrong_version = deployment("web", 1);
        wrong_version["apiVersion"] = json!("apps/v1beta1");
        let (status, reply) = api.post(&apps("default", "deployments"), wrong_version).await;
        assert_status(status, &reply, 400, "BadRequest");
        assert_eq!(
            reply["message"],
            "the API version in the data (apps/v1beta1) does not match the expected API version (apps/v1)"
        );

        let bare = json!({"metadata": {"name": "bare"}});
        let created = api.create(&core("default", "configmaps"), bare).await;
        assert_eq!((&created["apiVersion"], &created["kind"]), (&json!("v1"), &json!("ConfigMap")), "filled in");
    }

    // --- fieldValidation ---

    fn with_unknown_field(name: &str) -> Value {
        let mut body = pod(name);
        body["spec"]["bogus"] = json!(1);
        body
    }

    #[tokio::test]
    async fn field_validation_strict_refuses_unknown_fields_with_a_400() {
        let api = TestApi::start().await;
        let path = format!("{}?fieldValidation=Strict", core("default", "pods"));
        let (status, reply) = api.post(&path, with_unknown_field("strict")).await;
        assert_status(status, &reply, 400, "BadRequest");
        assert_eq!(reply["message"], "strict decoding error: unknown field \"spec.bogus\"");
        assert!(api.is_gone(&format!("{}/strict", core("default", "pods"))).await);
    }

    #[tokio::test]
    async fn field_validation_warn_drops_unknown_fields_and_says_so_in_a_warning_header() {
        let api = TestApi::start().await;
        for query in ["", "?fieldValidation=Warn"] {
            let name = format!("warn{}", query.len());
            let path = format!("{}{query}", core("default", "pods"));
            let response = api.respond(Method::POST, &path, Some(with_unknown_field(&name))).await;
            assert_eq!(response.status(), StatusCode::CREATED, "{query}");
            let warnings: Vec<_> = response.headers().get_all(http::header::WARNING).iter().collect();
            assert_eq!(warnings, ["299 - \"unknown field \\\"spec.bogus\\\"\""], "{query}");
            let created = json_body(response).await;
            assert!(created["spec"].get("bogus").is_none(), "dropped: {created}");
        }
    }

    #[tokio::test]
    async fn field_validation_ignore_drops_unknown_fields_silently() {
        let api = TestApi::start().await;
        let path = format!("{}?fieldValidation=Ignore", core("default", "pods"));
        let response = api.respond(Method::POST, &path, Some(with_unknown_field("quiet"))).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        assert!(response.headers().get(http::header::WARNING).is_none());
        assert!(json_body(response).await["spec"].get("bogus").is_none());

        let path = format!("{}?fieldValidation=Loose", core("default", "pods"));
        let (status, reply) = api.post(&path, pod("loose")).await;
        assert_status(status, &reply, 400, "BadRequest");
    }

    // --- dryRun ---

    #[tokio::test]
    async fn dry_run_all_validates_and_answers_but_stores_nothing() {
        let api = TestApi::start().await;
        let collection = core("default", "configmaps");
        let before = api.revision().await;
        let (status, would_be) = api.post(&format!("{collection}?dryRun=All"), config_map("dry", json!({}))).await;
        assert_eq!(status, StatusCode::CREATED, "{would_be}");
        assert_eq!(would_be["metadata"]["name"], "dry");
        assert!(api.is_gone(&cm_path("dry")).await, "a dry-run create stores nothing");
        let (status, reply) = api.post(&format!("{collection}?dryRun=All"), config_map("bad key", json!({}))).await;
        assert_status(status, &reply, 422, "Invalid");
        assert_eq!(api.revision().await, before);

        let created = api.create(&collection, config_map("wet", json!({"v": "1"}))).await;
        let before = api.revision().await;
        let path = format!("{}?dryRun=All", cm_path("wet"));
        let (status, would_be) = api.patch(&path, MERGE_PATCH, json!({"data": {"v": "2"}})).await;
        assert_eq!((status, &would_be["data"]), (StatusCode::OK, &json!({"v": "2"})), "{would_be}");
        let (status, _) = api.put(&path, config_map("wet", json!({"v": "3"}))).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = api.delete(&path).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = api.delete_with(&cm_path("wet"), json!({"dryRun": ["All"]})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(api.get_ok(&cm_path("wet")).await, created, "dry-run updates and deletes change nothing");
        assert_eq!(api.revision().await, before);

        let (status, reply) = api.post(&format!("{collection}?dryRun=Some"), config_map("x", json!({}))).await;
        assert_status(status, &reply, 400, "BadRequest");
    }

    // --- status ---

    #[tokio::test]
    async fn the_status_subresource_changes_only_the_status() {
        let api = TestApi::start().await;
        let created = api.create(&apps("default", "deployments"), deployment("web", 2)).await;
        let mut body = created.clone();
        body["status"] = json!({"replicas": 2, "readyReplicas": 1});
        body["spec"]["replicas"] = json!(9);
        body["metadata"]["labels"] = json!({"sneaky": "yes"});
        let path = format!("{}/web/status", apps("default", "deployments"));
        let (status, updated) = api.put(&path, body).await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        assert_eq!(updated["status"], json!({"replicas": 2, "readyReplicas": 1}));
        assert_eq!(updated["spec"], created["spec"], "spec is not the status subresource's");
        assert_eq!(updated["metadata"]["labels"], created["metadata"]["labels"]);
        assert_eq!(api.get_ok(&format!("{}/web", apps("default", "deployments"))).await, updated);

        let (status, patched) = api.patch(&path, MERGE_PATCH, json!({"status": {"readyReplicas": 2}})).await;
        assert_eq!(status, StatusCode::OK, "{patched}");
        assert_eq!(patched["status"], json!({"replicas": 2, "readyReplicas": 2}));
    }

    #[tokio::test]
    async fn the_main_resource_ignores_status_changes() {
        let api = TestApi::start().await;
        let created = api.create(&core("default", "pods"), pod("web")).await;
        let path = format!("{}/web", core("default", "pods"));
        let mut body = created.clone();
        body["status"] = json!({"phase": "Running"});
        body["metadata"]["labels"] = json!({"app": "web"});
        let (status, updated) = api.put(&path, body).await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        assert_eq!(updated["status"], json!({"phase": "Pending"}), "{updated}");
        assert_eq!(updated["metadata"]["labels"], json!({"app": "web"}), "the rest of the update applies");
        let (_, patched) = api.patch(&path, MERGE_PATCH, json!({"status": {"phase": "Failed"}})).await;
        assert_eq!(patched["status"], json!({"phase": "Pending"}), "{patched}");
        assert_eq!(resource_version(&patched), resource_version(&updated), "nothing to write");
    }

    // --- deletion ---

    #[tokio::test]
    async fn an_unbound_pod_is_deleted_at_once() {
        let api = TestApi::start().await;
        api.create(&core("default", "pods"), pod("loose")).await;
        let path = format!("{}/loose", core("default", "pods"));
        let (status, last) = api.delete(&path).await;
        assert_eq!(status, StatusCode::OK, "{last}");
        assert!(api.is_gone(&path).await, "no kubelet to wait for");
    }

    #[tokio::test]
    async fn a_bound_running_pod_is_only_marked_until_its_kubelet_deletes_it_with_grace_0() {
        let api = TestApi::start().await;
        api.create(&core("default", "pods"), pod("bound")).await;
        let path = format!("{}/bound", core("default", "pods"));
        let (status, reply) = api.post(&format!("{path}/binding"), binding("bound", "n1")).await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");

        let (status, marked) = api.delete(&path).await;
        assert_eq!(status, StatusCode::OK, "{marked}");
        assert!(marked["metadata"]["deletionTimestamp"].is_string(), "{marked}");
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30, "the default grace period: {marked}");
        assert_eq!(api.get_ok(&path).await, marked, "still there, marked");

        let (status, again) = api.delete(&path).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again, marked, "deleting again changes nothing");
        let (status, shorter) = api.delete(&format!("{path}?gracePeriodSeconds=10")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(shorter["metadata"]["deletionGracePeriodSeconds"], 10, "a shorter grace period applies");

        let (status, _) = api.delete_with(&path, json!({"kind": "DeleteOptions", "gracePeriodSeconds": 0})).await;
        assert_eq!(status, StatusCode::OK);
        assert!(api.is_gone(&path).await);
    }

    #[tokio::test]
    async fn finalizers_keep_a_deleted_object_until_they_are_removed() {
        let api = TestApi::start().await;
        let mut held = config_map("held", json!({}));
        held["metadata"]["finalizers"] = json!(["example.com/hold", "example.com/second"]);
        api.create(&core("default", "configmaps"), held).await;
        let (status, marked) = api.delete(&cm_path("held")).await;
        assert_eq!(status, StatusCode::OK, "{marked}");
        assert!(marked["metadata"]["deletionTimestamp"].is_string(), "{marked}");
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 0);
        assert_eq!(api.get_ok(&cm_path("held")).await, marked);

        let one_left = json!({"metadata": {"finalizers": ["example.com/second"]}});
        let (status, reply) = api.patch(&cm_path("held"), MERGE_PATCH, one_left).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert!(!api.is_gone(&cm_path("held")).await, "one finalizer still holds it");

        let (status, last) = api.patch(&cm_path("held"), MERGE_PATCH, json!({"metadata": {"finalizers": null}})).await;
        assert_eq!(status, StatusCode::OK, "{last}");
        assert!(api.is_gone(&cm_path("held")).await, "gone with its last finalizer");
    }

    #[tokio::test]
    async fn foreground_and_orphan_propagation_add_their_finalizers() {
        let api = TestApi::start().await;
        let collection = core("default", "configmaps");
        for (name, how, finalizer) in [
            ("fg", json!({"propagationPolicy": "Foreground"}), "foregroundDeletion"),
            ("or", json!({"propagationPolicy": "Orphan"}), "orphan"),
            ("od", json!({"orphanDependents": true}), "orphan"),
        ] {
            api.create(&collection, config_map(name, json!({}))).await;
            let (status, marked) = api.delete_with(&cm_path(name), how).await;
            assert_eq!(status, StatusCode::OK, "{marked}");
            assert_eq!(marked["metadata"]["finalizers"], json!([finalizer]), "{name}: {marked}");
            assert!(marked["metadata"]["deletionTimestamp"].is_string(), "{marked}");
        }
        api.create(&collection, config_map("qs", json!({}))).await;
        let (_, marked) = api.delete(&format!("{}?propagationPolicy=Foreground", cm_path("qs"))).await;
        assert_eq!(marked["metadata"]["finalizers"], json!(["foregroundDeletion"]), "from the query too");

        api.create(&collection, config_map("bg", json!({}))).await;
        let (status, _) = api.delete_with(&cm_path("bg"), json!({"propagationPolicy": "Background"})).await;
        assert_eq!(status, StatusCode::OK);
        assert!(api.is_gone(&cm_path("bg")).await, "background deletion goes at once");

        api.create(&collection, config_map("odd", json!({}))).await;
        let (status, reply) = api.delete_with(&cm_path("odd"), json!({"propagationPolicy": "Sideways"})).await;
        assert_status(status, &reply, 400, "BadRequest");
    }

    #[tokio::test]
    async fn delete_preconditions_on_uid_and_resource_version_are_409_conflicts() {
        let api = TestApi::start().await;
        let created = api.create(&core("default", "configmaps"), config_map("guarded", json!({}))).await;
        let (_, updated) = api.patch(&cm_path("guarded"), MERGE_PATCH, json!({"data": {"v": "2"}})).await;

        let stale = json!({"preconditions": {"resourceVersion": resource_version(&created)}});
        let (status, reply) = api.delete_with(&cm_path("guarded"), stale).await;
        assert_status(status, &reply, 409, "Conflict");
        assert!(reply["message"].as_str().unwrap().contains("Precondition failed: ResourceVersion"), "{reply}");
        let other_uid = json!({"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}});
        let (status, reply) = api.delete_with(&cm_path("guarded"), other_uid).await;
        assert_status(status, &reply, 409, "Conflict");
        assert!(reply["message"].as_str().unwrap().contains("Precondition failed: UID"), "{reply}");
        assert_eq!(api.get_ok(&cm_path("guarded")).await, updated, "a failed precondition deletes nothing");

        let current = json!({"preconditions": {
            "resourceVersion": resource_version(&updated), "uid": updated["metadata"]["uid"]}});
        let (status, reply) = api.delete_with(&cm_path("guarded"), current).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let (status, reply) = api.delete(&cm_path("guarded")).await;
        assert_status(status, &reply, 404, "NotFound");
    }

    #[tokio::test]
    async fn delete_collection_deletes_only_the_selected_objects() {
        let api = TestApi::start().await;
        let collection = core("default", "configmaps");
        for (name, group) in [("old-1", "old"), ("old-2", "old"), ("new-1", "new")] {
            let mut object = config_map(name, json!({}));
            object["metadata"]["labels"] = json!({"group": group});
            api.create(&collection, object).await;
        }
        let (status, deleted) = api.delete(&format!("{collection}?labelSelector=group%3Dold")).await;
        assert_eq!(status, StatusCode::OK, "{deleted}");
        assert_eq!(deleted["kind"], "ConfigMapList");
        assert_eq!(names(&deleted), ["old-1", "old-2"]);
        assert_eq!(names(&api.get_ok(&collection).await), ["new-1"]);
    }

    // --- lists ---

    #[tokio::test]
    async fn a_paged_list_returns_every_object_once_as_of_its_first_page() {
        let api = TestApi::start().await;
        let collection = core("default", "configmaps");
        let expected: Vec<String> = (0..5).map(|i| format!("cm-{i}")).collect();
        for name in &expected {
            api.create(&collection, config_map(name, json!({}))).await;
        }
        let first = api.get_ok(&format!("{collection}?limit=2")).await;
        assert_eq!(names(&first), ["cm-0", "cm-1"]);
        assert_eq!(first["metadata"]["remainingItemCount"], 3, "{first}");
        let revision = first["metadata"]["resourceVersion"].clone();
        // Written after the first page: not part of this list.
        api.create(&collection, config_map("cm-late", json!({}))).await;
        api.delete(&format!("{collection}/cm-4")).await;

        let mut seen = names(&first);
        let mut token = first["metadata"]["continue"].as_str().unwrap().to_string();
        loop {
            let page = api.get_ok(&format!("{collection}?limit=2&continue={token}")).await;
            assert_eq!(page["metadata"]["resourceVersion"], revision, "every page is read at one revision");
            seen.extend(names(&page));
            match page["metadata"]["continue"].as_str() {
                Some(next) => token = next.to_string(),
                None => break,
            }
        }
        assert_eq!(seen, expected);
    }

    #[tokio::test]
    async fn label_and_field_selectors_filter_lists() {
        let api = TestApi::start().await;
        let collection = core("default", "configmaps");
        for (name, labels) in
            [("a", json!({"app": "web", "tier": "front"})), ("b", json!({"app": "db"})), ("c", json!({}))]
        {
            let mut object = config_map(name, json!({}));
            object["metadata"]["labels"] = labels;
            api.create(&collection, object).await;
        }
        for (selector, expected) in [
            ("labelSelector=app%3Dweb", vec!["a"]),
            ("labelSelector=app!%3Dweb", vec!["b", "c"]),
            ("labelSelector=app+in+(web,db)", vec!["a", "b"]),
            ("labelSelector=app", vec!["a", "b"]),
            ("labelSelector=!app", vec!["c"]),
            ("labelSelector=app%3Dweb,tier%3Dback", vec![]),
            ("fieldSelector=metadata.name%3Db", vec!["b"]),
            ("fieldSelector=metadata.name!%3Db", vec!["a", "c"]),
            ("fieldSelector=metadata.namespace%3Ddefault&labelSelector=tier", vec!["a"]),
        ] {
            let list = api.get_ok(&format!("{collection}?{selector}")).await;
            assert_eq!(names(&list), expected, "{selector}");
        }

        api.create(&core("default", "pods"), pod("p1")).await;
        api.create(&core("default", "pods"), pod("p2")).await;
        api.post(&format!("{}/p2/binding", core("default", "pods")), binding("p2", "n1")).await;
        let on_n1 = api.get_ok(&format!("{}?fieldSelector=spec.nodeName%3Dn1", core("default", "pods"))).await;
        assert_eq!(names(&on_n1), ["p2"]);
        let unbound = api.get_ok(&format!("{}?fieldSelector=spec.nodeName%3D", core("default", "pods"))).await;
        assert_eq!(names(&unbound), ["p1"]);
        let pending = api.get_ok("/api/v1/pods?fieldSelector=status.phase%3DPending").await;
        assert_eq!(names(&pending), ["p1", "p2"]);
    }

    #[tokio::test]
    async fn a_field_label_the_kind_does_not_support_is_a_400() {
        let api = TestApi::start().await;
        let (status, reply) =
            api.get(&format!("{}?fieldSelector=spec.nodeName%3Dn1", core("default", "configmaps"))).await;
        assert_status(status, &reply, 400, "BadRequest");
        assert_eq!(reply["message"], "field label not supported: spec.nodeName");
        let (status, reply) = api.get(&format!("{}?labelSelector=%3D%3D%3D", core("default", "configmaps"))).await;
        assert_status(status, &reply, 400, "BadRequest");
    }

    #[tokio::test]
    async fn a_list_of_all_namespaces_has_every_namespace() {
        let api = TestApi::start().await;
        api.create(&core("default", "configmaps"), config_map("here", json!({}))).await;
        api.create(&core("kube-system", "configmaps"), config_map("there", json!({}))).await;
        let all = api.get_ok("/api/v1/configmaps").await;
        assert_eq!(all["kind"], "ConfigMapList");
        assert_eq!(all["apiVersion"], "v1");
        assert_eq!(names(&all), ["here", "there"]);
        assert_eq!(names(&api.get_ok(&core("kube-system", "configmaps")).await), ["there"]);
    }

    #[tokio::test]
    async fn a_continue_token_or_exact_resource_version_from_a_compacted_revision_is_410_expired() {
        let api = TestApi::start().await;
        let collection = core("default", "configmaps");
        for i in 0..3 {
            api.create(&collection, config_map(&format!("cm-{i}"), json!({}))).await;
        }
        let first = api.get_ok(&format!("{collection}?limit=1")).await;
        let token = first["metadata"]["continue"].as_str().unwrap().to_string();
        let listed_at = first["metadata"]["resourceVersion"].as_str().unwrap().to_string();
        api.create(&collection, config_map("later", json!({}))).await;
        api.store.compact(api.revision().await).await.unwrap();

        let (status, reply) = api.get(&format!("{collection}?limit=1&continue={token}")).await;
        assert_status(status, &reply, 410, "Expired");
        let exact = format!("{collection}?resourceVersion={listed_at}&resourceVersionMatch=Exact");
        let (status, reply) = api.get(&exact).await;
        assert_status(status, &reply, 410, "Expired");
    }
}
