//! `pods/<name>/eviction`: deleting a pod only if its PodDisruptionBudget allows it now, as
//! the Kubernetes apiserver does for `kubectl drain` (a policy/v1 `Eviction` whose
//! `deleteOptions` the deletion uses).
//!
//! - A pod that has ended, is still `Pending` or is already being deleted costs no budget: it
//!   is deleted.
//! - A pod no budget selects is deleted; one that several budgets select is refused (500, as
//!   Kubernetes: it cannot tell which to charge).
//! - Otherwise the budget decides: an unhealthy (not Ready) pod may go when the budget is met
//!   anyway (`IfHealthyBudget`, the default) or always (`AlwaysAllow`); a healthy pod only
//!   while `status.disruptionsAllowed > 0`, and the eviction takes one from it (written with
//!   the budget's resourceVersion as precondition, so two evictions cannot both take the
//!   last one). Else 429 `TooManyRequests`, the cause `DisruptionBudget` saying
//!   `The disruption budget web needs 2 healthy pods and has 2 currently`; a budget whose
//!   status the disruption controller has not computed for its current spec refuses the same
//!   way. kubectl drain retries on 429.
//!
//! Success is 201 with a `Status` of `Success`.

use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, Status};
use rkube_api::Subresource;
use rkube_api::kinds::poddisruptionbudget;
use rkube_api::selector::LabelSelector;
use serde_json::{Value, json};

use crate::ApiState;
use crate::error::ApiError;
use crate::request::{Query, ResourceRequest};
use crate::rest::{self, WriteOptions};

/// How many evictions the disruption controller may leave unconfirmed before further ones are
/// refused (Kubernetes' `MaxDisruptedPodSize`).
const MAX_DISRUPTED_PODS: usize = 2000;

/// POST `pods/<name>/eviction` (see the module docs).
///
/// # Errors
/// 400 for a bad body, 404 for a missing pod, 429 when the budget refuses, 500 for a pod
/// several budgets select; storage errors.
pub async fn evict(
    state: &ApiState,
    req: &ResourceRequest,
    name: &str,
    body: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let eviction: Eviction =
        serde_json::from_value(body).map_err(|e| ApiError::BadRequest(format!("error decoding Eviction: {e}")))?;
    if eviction.metadata.name.as_deref().is_some_and(|n| !n.is_empty() && n != name) {
        return Err(ApiError::BadRequest(format!(
            "name in URL does not match name in Eviction object ({name} != {})",
            eviction.metadata.name.unwrap_or_default()
        )));
    }
    let options = eviction.delete_options.unwrap_or_default();
    let pods = ResourceRequest { subresource: None, ..req.clone() };
    let pod = rest::get(state, &pods, name).await?;
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default();
    if matches!(phase, "Succeeded" | "Failed" | "Pending") || crate::metadata::is_terminating(&pod) {
        return delete(state, &pods, name, &options, dry_run).await;
    }
    let budgets = ResourceRequest {
        resource: &poddisruptionbudget::RESOURCE,
        namespace: req.namespace.clone(),
        name: None,
        subresource: None,
    };
    let listed = rest::list(state, &budgets, &Query::parse(None)).await?;
    let mut matching = Vec::new();
    for item in &listed.items {
        let budget = item.decode()?;
        if selects(&budget, &pod) {
            matching.push(budget);
        }
    }
    let budget = match matching.as_slice() {
        [] => return delete(state, &pods, name, &options, dry_run).await,
        [one] => one.clone(),
        _ => {
            return Err(ApiError::InternalRefusal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
                    .into(),
            ));
        }
    };
    let budget_name = budget.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let ready = pod.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten().any(|c| {
        c.get("type").and_then(Value::as_str) == Some("Ready")
            && c.get("status").and_then(Value::as_str) == Some("True")
    });
    let int = |v: &Value, path: &str| v.pointer(path).and_then(Value::as_i64).unwrap_or(0);
    if !ready {
        let policy =
            budget.pointer("/spec/unhealthyPodEvictionPolicy").and_then(Value::as_str).unwrap_or("IfHealthyBudget");
        let met = int(&budget, "/status/currentHealthy") >= int(&budget, "/status/desiredHealthy");
        if policy == "AlwaysAllow" || met {
            return delete(state, &pods, name, &options, dry_run).await;
        }
    }
    let take_one = |current: &Value| -> Result<Value, ApiError> {
        if int(current, "/status/observedGeneration") < int(current, "/metadata/generation") {
            return Err(ApiError::DisruptionBudget(format!(
                "The disruption budget {budget_name} is still being processed by the server."
            )));
        }
        let allowed = int(current, "/status/disruptionsAllowed");
        if allowed <= 0 {
            return Err(ApiError::DisruptionBudget(format!(
                "The disruption budget {budget_name} needs {} healthy pods and has {} currently",
                int(current, "/status/desiredHealthy"),
                int(current, "/status/currentHealthy")
            )));
        }
        let disrupted = current.pointer("/status/disruptedPods").and_then(Value::as_object).map_or(0, |m| m.len());
        if disrupted > MAX_DISRUPTED_PODS {
            return Err(ApiError::Forbidden(
                "DisruptedPods map too big - too many evictions not confirmed by PDB controller".into(),
            ));
        }
        let mut next = current.clone();
        next["status"]["disruptionsAllowed"] = json!(allowed - 1);
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        next["status"]["disruptedPods"][name] = json!(now);
        Ok(next)
    };
    if dry_run {
        take_one(&budget)?;
    } else {
        let status =
            ResourceRequest { name: Some(budget_name.clone()), subresource: Some(Subresource::Status), ..budgets };
        rest::guaranteed_update(state, &status, &budget_name, None, &WriteOptions::default(), take_one).await?;
    }
    delete(state, &pods, name, &options, dry_run).await
}

/// Whether `budget`'s selector selects `pod` (an empty or missing selector selects nothing,
/// as in policy/v1).
fn selects(budget: &Value, pod: &Value) -> bool {
    let Some(selector) = budget.pointer("/spec/selector").and_then(|s| serde_json::from_value(s.clone()).ok()) else {
        return false;
    };
    let selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector = selector;
    if selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    {
        return false;
    }
    LabelSelector::from_meta(&selector).is_ok_and(|s| s.matches_object(pod))
}

async fn delete(
    state: &ApiState,
    pods: &ResourceRequest,
    name: &str,
    options: &DeleteOptions,
    dry_run: bool,
) -> Result<Value, ApiError> {
    crate::admission::admit_delete(state, pods, name).await?;
    rest::delete(state, pods, name, options, dry_run).await?;
    let status = Status { status: Some("Success".into()), code: Some(201), ..Default::default() };
    serde_json::to_value(status).map_err(|e| ApiError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_non_empty_selector_selects() {
        let pod = json!({"metadata": {"labels": {"app": "web"}}});
        assert!(selects(&json!({"spec": {"selector": {"matchLabels": {"app": "web"}}}}), &pod));
        assert!(!selects(&json!({"spec": {"selector": {"matchLabels": {"app": "db"}}}}), &pod));
        assert!(!selects(&json!({"spec": {"selector": {}}}), &pod));
        assert!(!selects(&json!({"spec": {}}), &pod));
    }
}
