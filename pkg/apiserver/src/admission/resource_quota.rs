//! `ResourceQuota` admission: a create that would take a namespace over one of its
//! ResourceQuotas is refused, and what it costs is added to the quota's `status.used`, as
//! Kubernetes' admission plugin of that name.
//!
//! For each quota of the namespace that tracks the new object ([`quota::in_scope`]) and
//! any resource it uses ([`quota::usage`]): a pod must set every compute resource the quota
//! limits (`failed quota: compute: must specify limits.memory,requests.cpu`), and
//! `used + requested` may not exceed `hard`
//! (`exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2`), both 403.
//! The charge is written to the quota's status with its resourceVersion as precondition, so
//! two racing creates cannot both take the last unit; a lost race re-reads and re-checks.
//! A quota whose status does not yet say what is used (the controller has not seen it) is
//! counted from the objects in the namespace. Dry runs check and charge nothing.
//!
//! The charge is made before the object is stored; if storing fails, the quota over-counts
//! until the resource-quota controller recomputes it, as in Kubernetes.

use rkube_api::Subresource;
use rkube_api::kinds::resourcequota;
use rkube_api::quota::{self, Usage};
use serde_json::{Value, json};

use super::list_in;
use crate::ApiState;
use crate::error::ApiError;
use crate::request::ResourceRequest;
use crate::rest::WriteOptions;

/// Checks and charges the creation of `object` (see the module docs).
///
/// # Errors
/// 403 over quota or for a pod missing a tracked request or limit; storage errors.
pub async fn admit_create(
    state: &ApiState,
    req: &ResourceRequest,
    object: &Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    let Some(namespace) = req.namespace.as_deref() else { return Ok(()) };
    let (group, plural) = (req.resource.group, req.resource.plural);
    // Most namespaces have no quota: reading the (cached) list first spares every create the
    // usage sums.
    let quotas = list_in(state, &resourcequota::RESOURCE, Some(namespace)).await?;
    if quotas.is_empty() {
        return Ok(());
    }
    let requested = quota::usage(group, plural, object);
    if requested.is_empty() {
        return Ok(());
    }
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let forbidden = |why: String| ApiError::Forbidden(format!("{plural} {name:?} is forbidden: {why}"));
    for found in quotas {
        let quota_name = found.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        let spec = found.get("spec").cloned().unwrap_or_default();
        let hard = quota::parse_list(spec.get("hard"));
        let tracked: Vec<String> = hard.keys().filter(|r| requested.contains_key(*r)).cloned().collect();
        if tracked.is_empty() || !quota::in_scope(&spec, plural, object) {
            continue;
        }
        if plural == "pods" && group.is_empty() {
            let missing = quota::unspecified(&hard, object);
            if !missing.is_empty() {
                return Err(forbidden(format!("failed quota: {quota_name}: must specify {}", missing.join(","))));
            }
        }
        let counted = counted_usage(state, namespace, &found, &tracked).await?;
        let charge = |current: &Value| -> Result<Value, ApiError> {
            let mut used = quota::parse_list(current.pointer("/status/used"));
            for resource in &tracked {
                if !used.contains_key(resource) {
                    used.insert(resource.clone(), counted.get(resource).copied().unwrap_or(0));
                }
            }
            let hard = quota::parse_list(current.pointer("/spec/hard"));
            let over: Vec<String> = tracked
                .iter()
                .filter(|r| hard.get(*r).is_some_and(|limit| used[*r].saturating_add(requested[*r]) > *limit))
                .cloned()
                .collect();
            if !over.is_empty() {
                return Err(forbidden(format!(
                    "exceeded quota: {quota_name}, requested: {}, used: {}, limited: {}",
                    quota::describe(&over, &requested),
                    quota::describe(&over, &used),
                    quota::describe(&over, &hard),
                )));
            }
            for resource in &tracked {
                let total = used.entry(resource.clone()).or_insert(0);
                *total = total.saturating_add(requested[resource]);
            }
            let mut next = current.clone();
            next["status"] = json!({"hard": current.pointer("/spec/hard").cloned().unwrap_or(json!({})),
                                    "used": quota::to_list(&used)});
            Ok(next)
        };
        if dry_run {
            charge(&found)?;
            continue;
        }
        let status = ResourceRequest {
            resource: &resourcequota::RESOURCE,
            namespace: Some(namespace.to_string()),
            name: Some(quota_name.clone()),
            subresource: Some(Subresource::Status),
        };
        match crate::rest::guaranteed_update(state, &status, &quota_name, None, &WriteOptions::default(), charge).await
        {
            Ok(_) => {}
            Err(ApiError::NotFound(_)) => {} // deleted meanwhile: it limits nothing now
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// What the namespace's objects use of `tracked` resources the quota's status does not
/// report yet (empty when it reports them all).
async fn counted_usage(
    state: &ApiState,
    namespace: &str,
    found: &Value,
    tracked: &[String],
) -> Result<Usage, ApiError> {
    let reported = quota::parse_list(found.pointer("/status/used"));
    let unknown: Vec<&String> = tracked.iter().filter(|r| !reported.contains_key(*r)).collect();
    if unknown.is_empty() {
        return Ok(Usage::new());
    }
    let spec = found.get("spec").cloned().unwrap_or_default();
    let mut counted = Usage::new();
    for res in rkube_api::registry::resources().iter().filter(|r| r.namespaced) {
        if !quota::resource_names(res.group, res.plural).iter().any(|name| unknown.contains(&name)) {
            continue;
        }
        for object in list_in(state, res, Some(namespace)).await? {
            if !quota::in_scope(&spec, res.plural, &object) {
                continue;
            }
            for (resource, amount) in quota::usage(res.group, res.plural, &object) {
                let total = counted.entry(resource).or_insert(0);
                *total = total.saturating_add(amount);
            }
        }
    }
    Ok(counted)
}
