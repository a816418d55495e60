//! `<resource>/<name>/scale`: the `autoscaling/v1` `Scale` view of `spec.replicas`, for
//! every resource whose registry entry lists [`Subresource::Scale`](rkube_api::Subresource::Scale)
//! (ReplicaSets, Deployments). GET, PUT and PATCH read or set the replicas through the
//! generic read-modify-write ([`rest::guaranteed_update`]).

use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec, ScaleStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as MetaSelector, ObjectMeta};
use rkube_api::registry::ResourceDef;
use rkube_api::selector::LabelSelector;
use serde_json::{Value, json};

use crate::ApiState;
use crate::error::{ApiError, Target};
use crate::metadata::meta_str;
use crate::patch::Patch;
use crate::request::ResourceRequest;
use crate::rest::{self, WriteOptions};

/// Where a resource keeps what its Scale shows: a built-in kind's `spec.replicas`,
/// `status.replicas` and `spec.selector`; a custom resource's paths from its CRD.
struct Paths<'r> {
    spec_replicas: &'r str,
    status_replicas: &'r str,
    /// A custom resource's `labelSelectorPath` (a selector written as a string).
    label_selector: Option<&'r str>,
}

impl<'r> Paths<'r> {
    fn of(res: &'r ResourceDef) -> Self {
        match res.custom.and_then(|c| c.scale.as_ref()) {
            Some(paths) => Paths {
                spec_replicas: &paths.spec_replicas,
                status_replicas: &paths.status_replicas,
                label_selector: paths.label_selector.as_deref(),
            },
            None => {
                Paths { spec_replicas: "/spec/replicas", status_replicas: "/status/replicas", label_selector: None }
            }
        }
    }

    /// Sets the desired replicas in `obj`, making the objects on the way.
    fn set_replicas(&self, obj: &mut Value, replicas: Value) {
        let mut at = obj;
        let mut fields = self.spec_replicas.split('/').skip(1).peekable();
        while let Some(field) = fields.next() {
            let field = field.replace("~1", "/").replace("~0", "~");
            if !at.is_object() {
                *at = json!({});
            }
            let Some(map) = at.as_object_mut() else { return };
            if fields.peek().is_none() {
                map.insert(field, replicas);
                return;
            }
            at = map.entry(field).or_insert_with(|| json!({}));
        }
    }
}

/// The `autoscaling/v1` `Scale` view of an object of `res`: a ReplicaSet, Deployment,
/// ReplicationController (whose selector is a plain map of labels), StatefulSet or custom
/// resource with a scale subresource.
pub fn scale_of(res: &ResourceDef, obj: &Value) -> Result<Value, ApiError> {
    let paths = Paths::of(res);
    let selector = match paths.label_selector {
        Some(path) => obj.pointer(path).and_then(Value::as_str).map(str::to_string),
        None => built_in_selector(obj),
    };
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
            replicas: obj.pointer(paths.spec_replicas).and_then(Value::as_i64).and_then(|r| i32::try_from(r).ok()),
        }),
        status: Some(ScaleStatus {
            replicas: obj
                .pointer(paths.status_replicas)
                .and_then(Value::as_i64)
                .and_then(|r| i32::try_from(r).ok())
                .unwrap_or(0),
            selector,
        }),
    };
    serde_json::to_value(scale).map_err(|e| ApiError::Internal(e.to_string()))
}

/// A built-in kind's `spec.selector` as a selector string.
fn built_in_selector(obj: &Value) -> Option<String> {
    obj.pointer("/spec/selector")
        .map(|s| {
            if s.get("matchLabels").is_some() || s.get("matchExpressions").is_some() {
                s.clone()
            } else {
                serde_json::json!({"matchLabels": s})
            }
        })
        .and_then(|s| serde_json::from_value::<MetaSelector>(s).ok())
        .and_then(|s| LabelSelector::from_meta(&s).ok())
        .map(|s| s.to_string())
}

/// The replicas a Scale asks for: a negative number is invalid (422, as Kubernetes'
/// `ValidateScale`), anything but an `int32` does not decode (400).
fn replicas_of(scale: &Value, name: &str) -> Result<Value, ApiError> {
    match scale.pointer("/spec/replicas") {
        Some(Value::Number(n)) if n.as_i64().is_some_and(|r| r >= 0 && r <= i64::from(i32::MAX)) => {
            Ok(Value::Number(n.clone()))
        }
        Some(Value::Number(n)) if n.as_i64().is_some_and(|r| r < 0 && r >= i64::from(i32::MIN)) => {
            let target = Target { group: "autoscaling", resource: "scale".into(), kind: "Scale", name: name.into() };
            let cause = rkube_api::FieldError::invalid("spec.replicas", n, "must be greater than or equal to 0");
            Err(ApiError::Invalid(target, vec![cause]))
        }
        Some(other) => Err(ApiError::BadRequest(format!("spec.replicas must be a non-negative integer, not {other}"))),
        None => Ok(json!(0)),
    }
}

/// GET `…/scale`.
pub async fn get_scale(state: &ApiState, req: &ResourceRequest, name: &str) -> Result<Value, ApiError> {
    scale_of(req.resource, &rest::get(state, req, name).await?)
}

/// PUT `…/scale`: sets `spec.replicas`; a resourceVersion in the Scale is a precondition.
pub async fn update_scale(
    state: &ApiState,
    req: &ResourceRequest,
    name: &str,
    body: &Value,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    let given = meta_str(body, "name");
    if !given.is_empty() && given != name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    let replicas = replicas_of(body, name)?;
    let precondition = match meta_str(body, "resourceVersion") {
        "" => None,
        rv => Some(rest::parse_rv(rv)?),
    };
    let written = rest::guaranteed_update(state, req, name, precondition, opts, |current| {
        let mut desired = current.clone();
        Paths::of(req.resource).set_replicas(&mut desired, replicas.clone());
        Ok(desired)
    })
    .await?;
    scale_of(req.resource, &written.object)
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
        let patched = patch.apply_to("Scale", &scale_of(req.resource, current)?, &target)?;
        let mut desired = current.clone();
        Paths::of(req.resource).set_replicas(&mut desired, replicas_of(&patched, name)?);
        Ok(desired)
    })
    .await?;
    scale_of(req.resource, &written.object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_view_carries_replicas_and_selector() {
        let rs = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 2}});
        let scale = scale_of(&rkube_api::kinds::replicaset::RESOURCE, &rs).unwrap();
        assert_eq!(scale["kind"], "Scale");
        assert_eq!(scale["apiVersion"], "autoscaling/v1");
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"], json!({"replicas": 2, "selector": "app=web"}));
        let rc = json!({"metadata": {"name": "nginx", "namespace": "default"},
            "spec": {"replicas": 3, "selector": {"app": "nginx"}}, "status": {"replicas": 3}});
        assert_eq!(
            scale_of(&rkube_api::kinds::replicationcontroller::RESOURCE, &rc).expect("scale")["status"]["selector"],
            "app=nginx"
        );
        assert_eq!(scale["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn negative_replicas_are_invalid_and_non_integers_do_not_decode() {
        assert!(matches!(replicas_of(&json!({"spec": {"replicas": -1}}), "x"), Err(ApiError::Invalid(..))));
        assert!(matches!(replicas_of(&json!({"spec": {"replicas": "3"}}), "x"), Err(ApiError::BadRequest(_))));
        assert!(matches!(replicas_of(&json!({"spec": {"replicas": 1e10}}), "x"), Err(ApiError::BadRequest(_))));
    }

    use http::StatusCode;

    use crate::testing::{MERGE_PATCH, TestApi, apps, assert_status, core, deployment, pod, resource_version};

    fn scale_path(name: &str) -> String {
        format!("{}/{name}/scale", apps("default", "deployments"))
    }

    #[tokio::test]
    async fn scale_reads_and_sets_spec_replicas_through_get_put_and_patch() {
        let api = TestApi::start().await;
        api.create(&apps("default", "deployments"), deployment("web", 2)).await;
        let scale = api.get_ok(&scale_path("web")).await;
        assert_eq!((&scale["kind"], &scale["apiVersion"]), (&json!("Scale"), &json!("autoscaling/v1")));
        assert_eq!(scale["spec"]["replicas"], 2);
        assert_eq!(scale["status"]["selector"], "app=web");

        let mut put = scale.clone();
        put["spec"]["replicas"] = json!(5);
        let (status, scaled) = api.put(&scale_path("web"), put).await;
        assert_eq!(status, StatusCode::OK, "{scaled}");
        assert_eq!(scaled["spec"]["replicas"], 5);
        let deployment = api.get_ok(&format!("{}/web", apps("default", "deployments"))).await;
        assert_eq!(deployment["spec"]["replicas"], 5);
        assert_eq!(deployment["metadata"]["generation"], 2, "scaling changes the spec");
        assert_eq!(resource_version(&scaled), resource_version(&deployment));

        let (status, patched) = api.patch(&scale_path("web"), MERGE_PATCH, json!({"spec": {"replicas": 1}})).await;
        assert_eq!(status, StatusCode::OK, "{patched}");
        assert_eq!(patched["spec"]["replicas"], 1);
        assert_eq!(api.get_ok(&format!("{}/web", apps("default", "deployments"))).await["spec"]["replicas"], 1);
    }

    #[tokio::test]
    async fn negative_replicas_are_refused_and_change_nothing() {
        let api = TestApi::start().await;
        let created = api.create(&apps("default", "deployments"), deployment("web", 2)).await;
        let mut put = api.get_ok(&scale_path("web")).await;
        put["spec"]["replicas"] = json!(-1);
        let (status, reply) = api.put(&scale_path("web"), put).await;
        assert_status(status, &reply, 422, "Invalid");
        assert_eq!((&reply["details"]["kind"], &reply["details"]["group"]), (&json!("Scale"), &json!("autoscaling")));
        let cause = &reply["details"]["causes"][0];
        assert_eq!((&cause["field"], &cause["reason"]), (&json!("spec.replicas"), &json!("FieldValueInvalid")));
        assert!(reply["message"].as_str().unwrap().ends_with("must be greater than or equal to 0"), "{reply}");
        let (status, reply) = api.patch(&scale_path("web"), MERGE_PATCH, json!({"spec": {"replicas": -1}})).await;
        assert_status(status, &reply, 422, "Invalid");
        let (status, reply) = api.patch(&scale_path("web"), MERGE_PATCH, json!({"spec": {"replicas": "3"}})).await;
        assert_status(status, &reply, 400, "BadRequest");
        assert_eq!(api.get_ok(&format!("{}/web", apps("default", "deployments"))).await, created);
    }

    #[tokio::test]
    async fn a_scale_with_a_stale_resource_version_is_a_409_conflict() {
        let api = TestApi::start().await;
        api.create(&apps("default", "deployments"), deployment("web", 2)).await;
        let stale = api.get_ok(&scale_path("web")).await;
        api.patch(&scale_path("web"), MERGE_PATCH, json!({"spec": {"replicas": 3}})).await;
        let mut put = stale;
        put["spec"]["replicas"] = json!(4);
        let (status, reply) = api.put(&scale_path("web"), put).await;
        assert_status(status, &reply, 409, "Conflict");
        assert_eq!(api.get_ok(&scale_path("web")).await["spec"]["replicas"], 3);
    }

    #[tokio::test]
    async fn scale_is_only_served_for_existing_objects_of_kinds_that_have_it() {
        let api = TestApi::start().await;
        let (status, reply) = api.get(&scale_path("missing")).await;
        assert_status(status, &reply, 404, "NotFound");
        assert_eq!(reply["message"], "deployments.apps \"missing\" not found");
        api.create(&core("default", "pods"), pod("p")).await;
        let (status, reply) = api.get(&format!("{}/p/scale", core("default", "pods"))).await;
        assert_status(status, &reply, 404, "NotFound");
    }
}
