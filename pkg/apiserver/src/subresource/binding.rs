//! `pods/<name>/binding`: the scheduler's way to assign a pod to a node, once. The pod gets
//! `spec.nodeName` and a `PodScheduled=True` condition in one write; a pod already assigned,
//! being deleted, or with another UID than the binding names is a 409.

use k8s_openapi::api::core::v1::Binding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use serde_json::{Value, json};

use crate::ApiState;
use crate::error::{ApiError, Target};
use crate::metadata::{is_terminating, meta_str, now_rfc3339, to_storage};
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
    let pod_target = Target::new(req.resource, name);
    let mut cached = rest::cached_copy(state, req.resource, &key);
    for _ in 0..MAX_RETRIES {
        let rest::Current { object: mut pod, revision, fresh } =
            rest::read_current(state, &key, &pod_target, &mut cached).await?;
        if let Some(why) = refusal(binding.metadata.uid.as_deref(), &pod, name) {
            // The watch cache's copy may be behind: only etcd's may refuse.
            if !fresh {
                continue;
            }
            return Err(ApiError::Conflict(target, why));
        }
        pod["spec"]["nodeName"] = Value::String(node.clone());
        set_scheduled_condition(&mut pod);
        match state.store.update(&key, revision, to_storage(&pod)).await {
            Ok(_) => {
                let status = Status { status: Some("Success".into()), code: Some(201), ..Default::default() };
                return serde_json::to_value(status).map_err(|e| ApiError::Internal(e.to_string()));
            }
            Err(rkube_storage::Error::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::from_storage(pod_target, e)),
        }
    }
    Err(ApiError::Conflict(target, crate::error::OBJECT_MODIFIED.into()))
}

/// Why the pod cannot take this binding, if it cannot: another UID than the binding names,
/// a node already assigned, or a deletion under way.
fn refusal(uid: Option<&str>, pod: &Value, name: &str) -> Option<String> {
    if let Some(uid) = uid.filter(|uid| !uid.is_empty())
        && uid != meta_str(pod, "uid")
    {
        return Some(format!("the UID in the binding ({uid}) does not match the pod's"));
    }
    let assigned = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default();
    if !assigned.is_empty() {
        return Some(format!("pod {name} is already assigned to node {assigned:?}"));
    }
    is_terminating(pod).then(|| format!("pod {name} is being deleted, cannot be assigned to a host"))
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
    use http::StatusCode;
    use serde_json::json;

    use crate::testing::{TestApi, assert_status, binding, core, pod};

    fn pod_path(name: &str) -> String {
        format!("{}/{name}", core("default", "pods"))
    }

    #[tokio::test]
    async fn binding_assigns_the_pod_to_its_node_and_marks_it_scheduled() {
        let api = TestApi::start().await;
        api.create(&core("default", "pods"), pod("p")).await;
        let (status, reply) = api.post(&format!("{}/binding", pod_path("p")), binding("p", "n1")).await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
        assert_eq!((&reply["kind"], &reply["status"]), (&json!("Status"), &json!("Success")), "{reply}");
        let bound = api.get_ok(&pod_path("p")).await;
        assert_eq!(bound["spec"]["nodeName"], "n1");
        let conditions = bound["status"]["conditions"].as_array().unwrap();
        assert!(conditions.iter().any(|c| c["type"] == "PodScheduled" && c["status"] == "True"), "{bound}");
        assert_eq!(bound["status"]["phase"], "Pending", "the rest of the status stays");
    }

    #[tokio::test]
    async fn a_pod_is_bound_only_once_and_a_second_binding_is_a_409() {
        let api = TestApi::start().await;
        api.create(&core("default", "pods"), pod("p")).await;
        api.post(&format!("{}/binding", pod_path("p")), binding("p", "n1")).await;
        let bound = api.get_ok(&pod_path("p")).await;
        let (status, reply) = api.post(&format!("{}/binding", pod_path("p")), binding("p", "n2")).await;
        assert_status(status, &reply, 409, "Conflict");
        assert_eq!(reply["details"]["kind"], "pods/binding", "{reply}");
        assert_eq!(api.get_ok(&pod_path("p")).await, bound, "still on n1, nothing written");
    }

    #[tokio::test]
    async fn a_binding_must_name_a_node_and_the_pod_it_is_for() {
        let api = TestApi::start().await;
        let created = api.create(&core("default", "pods"), pod("p")).await;
        let mut no_node = binding("p", "");
        no_node["target"]["name"] = json!("");
        let (status, reply) = api.post(&format!("{}/binding", pod_path("p")), no_node).await;
        assert_status(status, &reply, 422, "Invalid");
        let (status, reply) = api.post(&format!("{}/binding", pod_path("p")), binding("other", "n1")).await;
        assert_status(status, &reply, 400, "BadRequest");
        let mut other_uid = binding("p", "n1");
        other_uid["metadata"]["uid"] = json!("00000000-0000-0000-0000-000000000000");
        let (status, reply) = api.post(&format!("{}/binding", pod_path("p")), other_uid).await;
        assert_status(status, &reply, 409, "Conflict");
        let (status, reply) = api.post(&format!("{}/binding", pod_path("missing")), binding("missing", "n1")).await;
        assert_status(status, &reply, 404, "NotFound");
        assert_eq!(api.get_ok(&pod_path("p")).await, created, "no failed binding wrote anything");
    }

    #[tokio::test]
    async fn a_pod_being_deleted_cannot_be_bound() {
        let api = TestApi::start().await;
        let mut held = pod("p");
        held["metadata"]["finalizers"] = json!(["example.com/hold"]);
        api.create(&core("default", "pods"), held).await;
        api.delete(&pod_path("p")).await;
        let (status, reply) = api.post(&format!("{}/binding", pod_path("p")), binding("p", "n1")).await;
        assert_status(status, &reply, 409, "Conflict");
        assert!(api.get_ok(&pod_path("p")).await["spec"].get("nodeName").is_none());
    }
}
