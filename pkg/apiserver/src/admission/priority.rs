//! `Priority` admission: a new pod's `priorityClassName` becomes its `spec.priority` and
//! `spec.preemptionPolicy`, as Kubernetes' admission plugin of that name.
//!
//! - A pod naming a class gets that class's value; a class that does not exist is refused
//!   (403 `no PriorityClass with name X was found`).
//! - A pod naming none gets the global default class (the lowest-valued one marked
//!   `globalDefault`), or priority 0 when there is none.
//! - A pod that sets `priority` or `preemptionPolicy` itself must agree with its class.
//! - At most one PriorityClass is `globalDefault`, and the built-in `system-*` classes,
//!   which the apiserver creates at start ([`ensure_system_classes`]), are never deleted.

use rkube_api::kinds::priorityclass::{self, PREEMPT_LOWER_PRIORITY, SYSTEM_CLASSES};
use serde_json::{Value, json};

use super::{list_in, pod_name};
use crate::ApiState;
use crate::error::ApiError;
use crate::request::ResourceRequest;

fn classes() -> ResourceRequest {
    ResourceRequest { resource: &priorityclass::RESOURCE, namespace: None, name: None, subresource: None }
}

fn is_pods(req: &ResourceRequest) -> bool {
    (req.resource.group, req.resource.plural) == ("", "pods")
}

fn is_classes(req: &ResourceRequest) -> bool {
    std::ptr::eq(req.resource, &priorityclass::RESOURCE)
}

/// Resolves a new pod's priority (see the module docs).
///
/// # Errors
/// 403 for an unknown class or a priority that disagrees with it; storage errors.
pub async fn admit_create(state: &ApiState, req: &ResourceRequest, pod: &mut Value) -> Result<(), ApiError> {
    if !is_pods(req) || !pod.get("spec").is_some_and(Value::is_object) {
        return Ok(());
    }
    let pod_name = pod_name(pod).to_string();
    let forbidden = |why: String| ApiError::Forbidden(format!("pods {pod_name:?} is forbidden: {why}"));
    let named = pod["spec"].get("priorityClassName").and_then(Value::as_str).filter(|n| !n.is_empty());
    let (class, value, policy) = match named {
        Some(name) => match super::get_in(state, &priorityclass::RESOURCE, None, name).await {
            Ok(class) => (Some(name.to_string()), value_of(&class), policy_of(&class)),
            Err(ApiError::NotFound(_)) => {
                return Err(forbidden(format!("no PriorityClass with name {name} was found")));
            }
            Err(error) => return Err(error),
        },
        None => match default_class(state).await? {
            Some(class) => {
                let name = class.pointer("/metadata/name").and_then(Value::as_str).map(String::from);
                (name, value_of(&class), policy_of(&class))
            }
            None => (None, 0, PREEMPT_LOWER_PRIORITY.to_string()),
        },
    };
    let spec = &mut pod["spec"];
    if let Some(given) = spec.get("priority").and_then(Value::as_i64).filter(|given| *given != value) {
        return Err(forbidden(format!(
            "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
        )));
    }
    if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str).filter(|given| *given != policy) {
        return Err(forbidden(format!(
            "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
        )));
    }
    if let Some(class) = class {
        spec["priorityClassName"] = json!(class);
    }
    spec["priority"] = json!(value);
    spec["preemptionPolicy"] = json!(policy);
    Ok(())
}

fn value_of(class: &Value) -> i64 {
    class.get("value").and_then(Value::as_i64).unwrap_or(0)
}

fn policy_of(class: &Value) -> String {
    class.get("preemptionPolicy").and_then(Value::as_str).unwrap_or(PREEMPT_LOWER_PRIORITY).to_string()
}

/// The global default class: of those marked `globalDefault`, the lowest value.
async fn default_class(state: &ApiState) -> Result<Option<Value>, ApiError> {
    let all = list_in(state, &priorityclass::RESOURCE, None).await?;
    Ok(all
        .into_iter()
        .filter(|class| class.get("globalDefault").and_then(Value::as_bool) == Some(true))
        .min_by_key(value_of))
}

/// Refuses a second `globalDefault` class (on create and update of PriorityClasses).
///
/// # Errors
/// 403 when another class is the global default already; storage errors.
pub async fn admit_write(state: &ApiState, req: &ResourceRequest, class: &Value) -> Result<(), ApiError> {
    if !is_classes(req) || class.get("globalDefault").and_then(Value::as_bool) != Some(true) {
        return Ok(());
    }
    let name = class.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    if let Some(other) = default_class(state).await?
        && let Some(other) = other.pointer("/metadata/name").and_then(Value::as_str).filter(|other| *other != name)
    {
        return Err(ApiError::Forbidden(format!(
            "priorityclasses.scheduling.k8s.io {name:?} is forbidden: PriorityClass {other} is already marked as default. Only one default can exist"
        )));
    }
    Ok(())
}

/// Refuses the deletion of a built-in `system-*` class.
///
/// # Errors
/// 403 for a system class.
pub fn admit_delete(req: &ResourceRequest, name: &str) -> Result<(), ApiError> {
    if is_classes(req) && SYSTEM_CLASSES.iter().any(|(system, _)| *system == name) {
        return Err(ApiError::Forbidden(format!(
            "priorityclasses.scheduling.k8s.io {name:?} is forbidden: this is a system priority class and cannot be deleted"
        )));
    }
    Ok(())
}

/// Creates the built-in classes `system-node-critical` and `system-cluster-critical` when
/// they are missing (run at start, as Kubernetes' scheduling REST storage does).
///
/// # Errors
/// Storage errors (the caller retries).
pub async fn ensure_system_classes(state: &ApiState) -> Result<(), ApiError> {
    for (name, value) in SYSTEM_CLASSES {
        let body = json!({
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": "Used for system critical pods that must not be moved from their current node.",
        });
        match crate::rest::create(state, &classes(), body, &crate::rest::WriteOptions::default()).await {
            Ok(_) | Err(ApiError::AlreadyExists(_)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
