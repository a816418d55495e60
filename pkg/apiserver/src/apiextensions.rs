//! Serving CustomResourceDefinitions: what Kubernetes' apiextensions-apiserver controllers do
//! (naming, establishing, finalizing), in one loop inside the apiserver.
//!
//! [`run`] watches the stored CRDs and, whenever one changes, reconciles all of them:
//! 1. **names**: a CRD whose plural or kind another resource of its group already has is not
//!    served (`NamesAccepted=False`, reason `NameConflict`); otherwise `NamesAccepted=True`
//!    and `status.acceptedNames` are its names;
//! 2. **serving**: each accepted CRD becomes registry entries ([`rkube_api::customresource`]),
//!    one per served version; they replace the registry's custom resources at once, so
//!    routes, discovery and OpenAPI change together; a stored resource new to this apiserver
//!    gets a watch cache; then `Established=True`;
//! 3. **storage version**: objects stored in another version than the storage one (the CRD's
//!    storage version changed) are rewritten into it, once per change;
//! 4. **deletion**: a CRD marked for deletion (`Terminating`, with the cleanup finalizer)
//!    stays served for reads and deletes while its objects are deleted (each honouring its
//!    own finalizers); once none is left the finalizer goes, and with it the CRD and its
//!    routes.
//!
//! Several apiservers may run this loop at once: each serves what the stored CRDs say, and
//! the status each writes is the same, so their writes agree (an unchanged status is not
//! written).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions;
use rkube_api::backoff::{Backoff, BackoffConfig};
use rkube_api::customresource::{self, CLEANUP_FINALIZER};
use rkube_api::kinds::customresourcedefinition::{self as crd_kind, condition};
use rkube_api::registry::{ResourceDef, Subresource};
use rkube_storage::ListOptions;
use serde_json::Value;

use crate::ApiState;
use crate::error::ApiError;
use crate::metadata::{from_storage, is_terminating, meta_str};
use crate::request::ResourceRequest;
use crate::rest::{self, WriteOptions};

/// How often terminating CRDs are looked at again while their objects finalize.
const CLEANUP_PERIOD: Duration = Duration::from_secs(1);
/// How often everything is reconciled even when nothing changed.
const RESYNC_PERIOD: Duration = Duration::from_secs(30);

fn crds() -> &'static ResourceDef {
    &crd_kind::RESOURCE
}

/// The registry entries built for one CRD, with the spec they were built from.
struct Defined {
    fingerprint: String,
    resources: Vec<&'static ResourceDef>,
    /// Whether every stored object is in the storage version of `resources`.
    migrated: bool,
}

/// Runs until shutdown: keeps the served custom resources equal to the stored CRDs.
pub async fn run(state: Arc<ApiState>) {
    let mut defined: HashMap<String, Defined> = HashMap::new();
    let config = BackoffConfig::doubling(Duration::from_millis(100), Duration::from_secs(5), Duration::MAX);
    let mut backoff = Backoff::new(config.clone());
    loop {
        let wait = match reconcile(&state, &mut defined).await {
            Ok((revision, terminating)) => {
                backoff = Backoff::new(config.clone());
                let period = if terminating { CLEANUP_PERIOD } else { RESYNC_PERIOD };
                wait_for_change(&state, revision, period).await;
                continue;
            }
            Err(e) => {
                let delay = backoff.next_delay(tokio::time::Instant::now().into_std());
                tracing::warn!(error = %e, retry_in = ?delay, "cannot reconcile CustomResourceDefinitions yet");
                delay
            }
        };
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Returns when a CRD changes after `revision`, after `period`, or at shutdown.
async fn wait_for_change(state: &ApiState, revision: i64, period: Duration) {
    let prefix = state.keys.collection(&crds().storage_name(), None);
    let changed = async {
        match state.store.watch(&prefix, revision, None).await {
            Ok(mut events) => {
                while let Some(event) = events.next().await {
                    match event {
                        Ok(rkube_storage::WatchEvent::Progress { .. }) => continue,
                        _ => return,
                    }
                }
            }
            // A broken watch: reconcile again after the period.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = state.shutdown.cancelled() => {}
        _ = changed => {}
        _ = tokio::time::sleep(period) => {}
    }
}

/// One pass over every stored CRD. Returns the revision read at and whether a CRD is
/// terminating (then the next pass comes soon).
async fn reconcile(state: &ApiState, defined: &mut HashMap<String, Defined>) -> Result<(i64, bool), ApiError> {
    let prefix = state.keys.collection(&crds().storage_name(), None);
    let page = state.store.list(&prefix, ListOptions::default()).await?;
    let mut stored: Vec<CustomResourceDefinition> = Vec::new();
    for kv in &page.items {
        match serde_json::from_value(from_storage(kv)?) {
            Ok(crd) => stored.push(crd),
            Err(e) => tracing::warn!(key = kv.key, error = %e, "skipping a stored CRD that does not decode"),
        }
    }
    // When two CRDs claim the same names, the one already serving them keeps them, else the
    // older one (as Kubernetes' naming controller decides).
    let order = |c: &CustomResourceDefinition| {
        let accepted = c.status.as_ref().and_then(|s| s.accepted_names.as_ref()) == Some(&c.spec.names);
        (!accepted, c.metadata.creation_timestamp.as_ref().map(|t| t.0), c.metadata.name.clone())
    };
    stored.sort_by_key(order);
    let mut served: Vec<&'static ResourceDef> = Vec::new();
    let mut verdicts = Vec::new();
    for crd in &stored {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let verdict = match name_conflict(crd, &served) {
            Some(conflict) => Verdict::Conflict(conflict),
            None => match definitions(crd, defined) {
                Ok(resources) => {
                    served.extend(resources.iter().copied());
                    Verdict::Served
                }
                Err(e) => Verdict::Invalid(e),
            },
        };
        verdicts.push((name, verdict));
    }
    defined.retain(|uid, _| stored.iter().any(|c| c.metadata.uid.as_deref() == Some(uid)));
    for res in &served {
        state.ensure_cacher(res.conversion.map_or(*res, |c| c.storage));
    }
    for entry in defined.values_mut().filter(|d| !d.migrated) {
        let Some(storage) = entry.resources.first().map(|r| r.conversion.map_or(*r, |c| c.storage)) else { continue };
        match migrate(state, storage).await {
            Ok(()) => entry.migrated = true,
            Err(e) => {
                tracing::warn!(resource = %storage.storage_name(), error = %e, "cannot move objects to the storage version yet")
            }
        }
    }
    if state.resources.custom_changed(&served) {
        state.resources.set_custom(served);
        tracing::info!(crds = stored.len(), "custom resources served");
    }
    let mut terminating = false;
    for (crd, (name, verdict)) in stored.iter().zip(verdicts) {
        if let Err(e) = write_status(state, crd, &verdict).await {
            tracing::warn!(crd = name, error = %e, "cannot write the CRD's status");
        }
        if crd.metadata.deletion_timestamp.is_some() {
            terminating = true;
            if let Err(e) = finalize(state, crd).await {
                tracing::warn!(crd = name, error = %e, "cannot finish the CRD's deletion yet");
            }
        }
    }
    Ok((page.revision, terminating))
}

/// What became of one CRD.
enum Verdict {
    /// Served.
    Served,
    /// Not served: its names clash with another resource's.
    Conflict(String),
    /// Not served: it cannot be (see [`customresource::define`]).
    Invalid(String),
}

/// The registry entries of `crd`, built again only when its spec (or its deletion) changed.
fn definitions(
    crd: &CustomResourceDefinition,
    defined: &mut HashMap<String, Defined>,
) -> Result<Vec<&'static ResourceDef>, String> {
    let uid = crd.metadata.uid.clone().unwrap_or_default();
    let fingerprint =
        serde_json::to_string(&(&crd.spec, crd.metadata.deletion_timestamp.is_some())).map_err(|e| e.to_string())?;
    if let Some(known) = defined.get(&uid)
        && known.fingerprint == fingerprint
    {
        return Ok(known.resources.clone());
    }
    let resources = customresource::define(crd)?;
    defined.insert(uid, Defined { fingerprint, resources: resources.clone(), migrated: false });
    Ok(resources)
}

/// Rewrites every object of `storage` stored in another version into its version (the `None`
/// conversion: only `apiVersion` changes), so that each served version reads every object
/// as itself, as Kubernetes' storage version migration leaves them. Each write is a
/// compare-and-swap: an object changed meanwhile is written in the storage version anyway.
async fn migrate(state: &ApiState, storage: &'static ResourceDef) -> Result<(), ApiError> {
    let all = ResourceRequest { resource: storage, namespace: None, name: None, subresource: None };
    let page = state.store.list(&rest::prefix(state, &all), ListOptions::default()).await?;
    let api_version = Value::String(storage.api_version());
    let mut moved = 0;
    for kv in &page.items {
        let mut object = from_storage(kv)?;
        if object.get("apiVersion") == Some(&api_version) {
            continue;
        }
        if let Some(fields) = object.as_object_mut() {
            fields.insert("apiVersion".into(), api_version.clone());
        }
        match state.store.update(&kv.key, kv.mod_revision, crate::metadata::to_storage(&object)).await {
            Ok(_) => moved += 1,
            Err(rkube_storage::Error::Conflict { .. } | rkube_storage::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if moved > 0 {
        tracing::info!(resource = %storage.storage_name(), objects = moved, version = storage.version, "objects moved to the storage version");
    }
    Ok(())
}

/// Why `crd`'s names cannot be served beside the built-in kinds and the CRDs already
/// accepted (`served`), if they cannot.
fn name_conflict(crd: &CustomResourceDefinition, served: &[&'static ResourceDef]) -> Option<String> {
    let spec = &crd.spec;
    let names = &spec.names;
    let taken = rkube_api::registry::resources().iter().chain(served.iter()).filter(|r| r.group == spec.group);
    for other in taken {
        if other.plural == names.plural {
            return Some(format!("{:?} is already in use", names.plural));
        }
        if other.kind == names.kind {
            return Some(format!("{:?} is already in use", names.kind));
        }
        if names.short_names.iter().flatten().any(|s| other.short_names.contains(&s.as_str())) {
            return Some(format!("one of the short names {:?} is already in use", names.short_names));
        }
    }
    None
}

/// Writes the conditions and accepted names `verdict` calls for, when they differ from the
/// stored ones.
async fn write_status(state: &ApiState, crd: &CustomResourceDefinition, verdict: &Verdict) -> Result<(), ApiError> {
    let mut desired = crd.clone();
    // (NamesAccepted, Established), each as (status, reason, message).
    let (names, established) = match verdict {
        Verdict::Served => (
            ("True", "NoConflicts", "no conflicts found"),
            ("True", "InitialNamesAccepted", "the initial names have been accepted"),
        ),
        Verdict::Conflict(message) => {
            (("False", "NameConflict", message.as_str()), ("False", "NotAccepted", "not all names are accepted"))
        }
        Verdict::Invalid(message) => {
            (("True", "NoConflicts", "no conflicts found"), ("False", "Installing", message.as_str()))
        }
    };
    for (kind, (status, reason, message)) in [(condition::NAMES_ACCEPTED, names), (condition::ESTABLISHED, established)]
    {
        crd_kind::set_condition(&mut desired, kind, status, reason, message);
    }
    if matches!(verdict, Verdict::Served) {
        desired.status.get_or_insert_with(Default::default).accepted_names = Some(crd.spec.names.clone());
    }
    if desired.status == crd.status {
        return Ok(());
    }
    let name = crd.metadata.name.clone().unwrap_or_default();
    let req = ResourceRequest {
        resource: crds(),
        namespace: None,
        name: Some(name.clone()),
        subresource: Some(Subresource::Status),
    };
    let status = serde_json::to_value(&desired.status).map_err(|e| ApiError::Internal(e.to_string()))?;
    let precondition = crd.metadata.resource_version.as_deref().and_then(|rv| rv.parse().ok());
    let result = rest::guaranteed_update(state, &req, &name, precondition, &WriteOptions::default(), |current| {
        let mut next = current.clone();
        next["status"] = status.clone();
        Ok(next)
    })
    .await;
    match result {
        // Changed meanwhile: the watch brings the next pass.
        Ok(_) | Err(ApiError::Conflict(..) | ApiError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes the objects of a terminating CRD; once none is left, removes the cleanup
/// finalizer (and with the last finalizer the CRD goes).
async fn finalize(state: &ApiState, crd: &CustomResourceDefinition) -> Result<(), ApiError> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    if !crd.metadata.finalizers.iter().flatten().any(|f| f == CLEANUP_FINALIZER) {
        return Ok(());
    }
    let remaining = delete_objects(state, crd).await?;
    if remaining > 0 {
        tracing::debug!(crd = name, remaining, "waiting for the custom objects to go");
        return Ok(());
    }
    let req = ResourceRequest { resource: crds(), namespace: None, name: Some(name.clone()), subresource: None };
    let result = rest::guaranteed_update(state, &req, &name, None, &WriteOptions::default(), |current| {
        let mut next = current.clone();
        if let Some(list) = next.pointer_mut("/metadata/finalizers").and_then(Value::as_array_mut) {
            list.retain(|f| f != CLEANUP_FINALIZER);
        }
        Ok(next)
    })
    .await;
    match result {
        Ok(_) => {
            tracing::info!(crd = name, "custom resource definition deleted with its objects");
            Ok(())
        }
        Err(ApiError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Asks every object of the CRD's storage to be deleted; returns how many are still stored.
async fn delete_objects(state: &ApiState, crd: &CustomResourceDefinition) -> Result<usize, ApiError> {
    let Some(storage) = storage_def(state, crd) else { return Ok(0) };
    let all = ResourceRequest { resource: storage, namespace: None, name: None, subresource: None };
    let page = state.store.list(&rest::prefix(state, &all), ListOptions::default()).await?;
    let mut remaining = page.items.len();
    for kv in &page.items {
        let object = from_storage(kv)?;
        if is_terminating(&object) {
            continue;
        }
        let namespace = Some(meta_str(&object, "namespace")).filter(|ns| !ns.is_empty()).map(str::to_string);
        let req = ResourceRequest { resource: storage, namespace, name: None, subresource: None };
        match rest::delete(state, &req, meta_str(&object, "name"), &DeleteOptions::default(), false).await {
            Ok((_, true)) => remaining -= 1,
            Ok((_, false)) | Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(remaining)
}

/// The registry entry storing `crd`'s objects, among those served now.
fn storage_def(state: &ApiState, crd: &CustomResourceDefinition) -> Option<&'static ResourceDef> {
    let group = &crd.spec.group;
    let plural = &crd.spec.names.plural;
    state
        .resources
        .resources()
        .into_iter()
        .find(|r| r.custom.is_some() && r.group == group && r.plural == plural)
        .map(|r| r.conversion.map_or(r, |c| c.storage))
}
