//! The `scale` and `binding` subresources (`status` is handled by the generic update with
//! [`Subresource::Status`](rkube_api::Subresource::Status)).

use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec, ScaleStatus};
use k8s_openapi::api::core::v1::Binding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as MetaSelector, ObjectMeta, Status};
use rkube_api::selector::LabelSelector;
use serde_json::{Value, json};

use crate::ApiState;
use crate::error::{ApiError, Target};
use crate::metadata::{from_storage, is_terminating, meta_str, now_rfc3339, set_resource_version, to_storage};
use crate::patch::Patch;
use crate::request::ResourceRequest;
use crate::rest::{self, WriteOptions};

const MAX_RETRIES: usize = 16;

/// The `autoscaling/v1` `Scale` view of a ReplicaSet or Deployment.
pub fn scale_of(obj: &Value) -> Result<Value, ApiError> {
    let selector = obj
        .pointer("/spec/selector")
        .and_then(|s| serde_json::from_value::<MetaSelector>(s.clone()).ok())
        .and_then(|s| LabelSelector::from_meta(&s).ok())
        .map(|s| s.to_string());
    let scale = Scale {
        metadata: ObjectMeta {
            name: Some(meta_str(obj, "name").to_string()),
            namespace: Some(meta_str(obj, "namespace").to_string()),
            uid: Some(meta_str(obj, "uid").to_string()),
            resource_version: Some(meta_str(obj, "resourceVersion").to_string()),
            creation_timestamp: obj
                .pointer("/metadata/creationTimestamp")
                .and_then(|t| serde_json::from_value(t.clone()).ok()),
            ..Default::default()
        },
        spec: Some(ScaleSpec {
            replicas: obj.pointer("/spec/replicas").and_then(Value::as_i64).and_then(|r| i32::try_from(r).ok()),
        }),
        status: Some(ScaleStatus {
            replicas: obj
                .pointer("/status/replicas")
                .and_then(Value::as_i64)
                .and_then(|r| i32::try_from(r).ok())
                .unwrap_or(0),
            selector,
        }),
    };
    serde_json::to_value(scale).map_err(|e| ApiError::Internal(e.to_string()))
}

fn replicas_of(scale: &Value) -> Result<Value, ApiError> {
    match scale.pointer("/spec/replicas") {
        Some(Value::Number(n)) if n.as_i64().is_some_and(|r| r >= 0 && r <= i64::from(i32::MAX)) => {
            Ok(Value::Number(n.clone()))
        }
        Some(other) => Err(ApiError::BadRequest(format!("spec.replicas must be a non-negative integer, not {other}"))),
        None => Ok(json!(0)),
    }
}

/// GET `…/scale`.
pub async fn get_scale(state: &ApiState, req: &ResourceRequest, name: &str) -> Result<Value, ApiError> {
    scale_of(&rest::get(state, req, name).await?)
}

/// PUT `…/scale`: sets `spec.replicas`; a resourceVersion in the Scale is a precondition.
pub async fn update_scale(
    state: &ApiState,
    req: &ResourceRequest,
    name: &str,
    body: &Value,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    let replicas = replicas_of(body)?;
    let precondition = match meta_str(body, "resourceVersion") {
        "" => None,
        rv => Some(rest::parse_rv(rv)?),
    };
    let written = rest::guaranteed_update(state, req, name, precondition, opts, |current| {
        let mut desired = current.clone();
        desired["spec"]["replicas"] = replicas.clone();
        Ok(desired)
    })
    .await?;
    scale_of(&written.object)
}

/// PATCH `…/scale`: the patch applies to the Scale view, then its replicas to the object.
pub async fn patch_scale(
    state: &ApiState,
    req: &ResourceRequest,
    name: &str,
    patch: &Patch,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    let target = Target::new(req.resource, name);
    let written = rest::guaranteed_update(state, req, name, None, opts, |current| {
        let patched = patch.apply_to("Scale", &scale_of(current)?, &target)?;
        let mut desired = current.clone();
        desired["spec"]["replicas"] = replicas_of(&patched)?;
        Ok(desired)
    })
    .await?;
    scale_of(&written.object)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_view_carries_replicas_and_selector() {
        let rs = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 2}});
        let scale = scale_of(&rs).unwrap();
        assert_eq!(scale["kind"], "Scale");
        assert_eq!(scale["apiVersion"], "autoscaling/v1");
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"], json!({"replicas": 2, "selector": "app=web"}));
        assert_eq!(scale["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn negative_replicas_are_rejected() {
        assert!(replicas_of(&json!({"spec": {"replicas": -1}})).is_err());
        assert!(replicas_of(&json!({"spec": {"replicas": "3"}})).is_err());
    }
}
