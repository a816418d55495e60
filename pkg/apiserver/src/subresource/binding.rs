//! `pods/<name>/binding`: the scheduler's way to assign a pod to a node, once. The pod gets
//! `spec.nodeName` and a `PodScheduled=True` condition in one write; a pod already assigned,
//! being deleted, or with another UID than the binding names is a 409.

use k8s_openapi::api::core::v1::Binding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use serde_json::{Value, json};

use crate::ApiState;
use crate::error::{ApiError, Target};
use crate::metadata::{from_storage, is_terminating, meta_str, now_rfc3339, set_resource_version, to_storage};
use crate::request::ResourceRequest;
use crate::rest;

/// How many times a bind is retried after losing a race with another write to the pod.
const MAX_RETRIES: usize = 16;

/// POST `pods/<name>/binding`: assigns the pod to a node, once.
pub async fn bind(state: &ApiState, req: &ResourceRequest, name: &str, body: Value) -> Result<Value, ApiError> {
    let binding: Binding =
        serde_json::from_value(body).map_err(|e| ApiError::BadRequest(format!("error decoding Binding: {e}")))?;
    let target = Target { resource: "pods/binding".into(), ..Target::new(req.resource, name) };
    if binding.metadata.name.as_deref().is_some_and(|n| !n.is_empty() && n != name) {
        return Err(ApiError::BadRequest(format!(
            "the name of the binding ({}) does not match the name on the URL ({name})",
            binding.metadata.name.unwrap_or_default()
        )));
    }
    let node = binding.target.name.unwrap_or_default();
    if node.is_empty() {
        let cause = rkube_api::FieldError::required("target.name", "");
        return Err(ApiError::Invalid(Target { kind: "Binding", ..target }, vec![cause]));
    }
    let key = rest::key(state, req, name);
    for _ in 0..MAX_RETRIES {
        let kv = state.store.get(&key).await.map_err(|e| ApiError::from_storage(Target::new(req.resource, name), e))?;
        let mut pod = from_storage(&kv)?;
        if let Some(uid) = binding.metadata.uid.as_deref()
            && !uid.is_empty()
            && uid != meta_str(&pod, "uid")
        {
            return Err(ApiError::Conflict(target, format!("the UID in the binding ({uid}) does not match the pod's")));
        }
        let assigned = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default().to_string();
        if !assigned.is_empty() {
            return Err(ApiError::Conflict(target, format!("pod {name} is already assigned to node {assigned:?}")));
        }
        if is_terminating(&pod) {
            return Err(ApiError::Conflict(
                target,
                format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        pod["spec"]["nodeName"] = Value::String(node.clone());
        set_scheduled_condition(&mut pod);
        match state.store.update(&key, kv.mod_revision, to_storage(&pod)).await {
            Ok(revision) => {
                set_resource_version(&mut pod, revision);
                let status = Status { status: Some("Success".into()), code: Some(201), ..Default::default() };
                return serde_json::to_value(status).map_err(|e| ApiError::Internal(e.to_string()));
            }
            Err(rkube_storage::Error::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::from_storage(Target::new(req.resource, name), e)),
        }
    }
    Err(ApiError::Conflict(target, crate::error::OBJECT_MODIFIED.into()))
}

/// Sets the pod's `PodScheduled` condition to True, as the binding registry does.
fn set_scheduled_condition(pod: &mut Value) {
    let condition =
        json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_rfc3339()});
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let conditions = &mut pod["status"]["conditions"];
    match conditions.as_array_mut() {
        Some(list) => {
            list.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            list.push(condition);
        }
        None => *conditions = json!([condition]),
    }
}
