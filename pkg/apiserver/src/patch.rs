//! PATCH: the four patch types Kubernetes accepts, applied to the current object inside a
//! read-modify-write so that concurrent writers never lose each other's changes.
//!
//! - `application/json-patch+json` (RFC 6902),
//! - `application/merge-patch+json` (RFC 7386),
//! - `application/strategic-merge-patch+json` (lists merged by their patch merge key, as
//!   `kubectl apply` and the Python client send),
//! - `application/apply-patch+yaml` (server-side apply, with field ownership: see
//!   [`crate::fieldmanager`]); it creates the object when missing. The scale subresource
//!   applies like a strategic merge patch of its `Scale` view.

use serde_json::Value;

use crate::decode::{Format, decode};
use crate::error::{ApiError, OBJECT_MODIFIED, Target};
use crate::metadata::meta_str;

/// A patch type, from the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 6902 JSON patch.
    Json,
    /// RFC 7386 JSON merge patch.
    Merge,
    /// Kubernetes strategic merge patch.
    Strategic,
    /// Server-side apply.
    Apply,
}

impl PatchType {
    /// The patch type of a media type; anything else is a 415.
    pub fn from_media(media: Option<&str>) -> Result<Self, ApiError> {
        match media {
            Some("application/json-patch+json") => Ok(PatchType::Json),
            Some("application/merge-patch+json") => Ok(PatchType::Merge),
            Some("application/strategic-merge-patch+json") => Ok(PatchType::Strategic),
            Some("application/apply-patch+yaml" | "application/apply-patch+json") => Ok(PatchType::Apply),
            other => Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format ({}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json",
                other.unwrap_or("no Content-Type")
            ))),
        }
    }
}

/// A parsed patch document.
#[derive(Debug, Clone)]
pub struct Patch {
    /// Its type.
    pub kind: PatchType,
    /// The document.
    pub document: Value,
}

impl Patch {
    /// Server-side apply needs a field manager (`?fieldManager=`); a 400 without one.
    pub fn check_field_manager(&self, query: &crate::request::Query) -> Result<(), ApiError> {
        if self.kind == PatchType::Apply && query.get("fieldManager").is_none() {
            return Err(ApiError::BadRequest("PATCH requests with apply content type must have a fieldManager".into()));
        }
        Ok(())
    }

    /// The object server-side apply creates when `name` does not exist: the applied
    /// configuration named `name` (a 400 when it names another object).
    pub fn object_to_create(&self, name: &str) -> Result<Value, ApiError> {
        let mut body = self.document.clone();
        let given = crate::metadata::meta_str(&body, "name");
        if !given.is_empty() && given != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
        crate::metadata::metadata_mut(&mut body).insert("name".into(), Value::String(name.to_string()));
        Ok(body)
    }

    /// Parses a patch body of the given type (through [`crate::decode`]: bounded depth, large
    /// bodies off the executor).
    pub async fn parse(kind: PatchType, body: bytes::Bytes) -> Result<Self, ApiError> {
        let format = match kind {
            PatchType::Apply => Format::Yaml,
            _ => Format::Json,
        };
        let document = decode(body, format).await.map_err(|e| match e {
            ApiError::BadRequest(message) if format == Format::Json => ApiError::BadRequest(
                message.replace("the request body is not valid JSON", "the patch is not valid JSON"),
            ),
            other => other,
        })?;
        match (kind, &document) {
            (PatchType::Json, Value::Array(_)) => {}
            (PatchType::Json, _) => {
                return Err(ApiError::BadRequest("a JSON patch must be a JSON array of operations".into()));
            }
            (_, Value::Object(_)) => {}
            _ => return Err(ApiError::BadRequest("the patch must be a JSON object".into())),
        }
        Ok(Patch { kind, document })
    }

    /// Applies the patch to `current` (an object of `kind`). A resourceVersion in the
    /// result that differs from the current one is a 409, as in Kubernetes.
    pub fn apply_to(&self, kind: &str, current: &Value, target: &Target) -> Result<Value, ApiError> {
        let mut patched = current.clone();
        match self.kind {
            PatchType::Json => {
                let ops: json_patch::Patch = serde_json::from_value(self.document.clone())
                    .map_err(|e| ApiError::BadRequest(format!("invalid JSON patch: {e}")))?;
                for op in ops.0 {
                    // As Kubernetes' JSON patch library: testing a missing path for `null`
                    // passes (kube-rs adds its first finalizer so).
                    if let json_patch::PatchOperation::Test(test) = &op
                        && test.value.is_null()
                        && patched.pointer(test.path.as_str()).is_none()
                    {
                        continue;
                    }
                    json_patch::patch(&mut patched, &[op])
                        .map_err(|e| ApiError::BadRequest(format!("the JSON patch could not be applied: {e}")))?;
                }
            }
            PatchType::Merge => json_patch::merge(&mut patched, &self.document),
            PatchType::Strategic | PatchType::Apply => {
                patched = rkube_api::strategic_merge::strategic_merge(kind, current, &self.document).map_err(|e| {
                    ApiError::BadRequest(format!("the strategic merge patch could not be applied: {e}"))
                })?;
            }
        }
        if !patched.is_object() {
            return Err(ApiError::BadRequest("the patched document is not an object".into()));
        }
        let rv = meta_str(&patched, "resourceVersion");
        if !rv.is_empty() && rv != meta_str(current, "resourceVersion") {
            return Err(ApiError::Conflict(target.clone(), OBJECT_MODIFIED.into()));
        }
        Ok(patched)
    }

    /// A resourceVersion in the patch is a precondition on `current` (a 409 when it differs),
    /// as in Kubernetes.
    pub fn check_resource_version(&self, current: &Value, target: &Target) -> Result<(), ApiError> {
        let rv = meta_str(&self.document, "resourceVersion");
        if !rv.is_empty() && rv != meta_str(current, "resourceVersion") {
            return Err(ApiError::Conflict(target.clone(), OBJECT_MODIFIED.into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target() -> Target {
        Target { group: "", resource: "pods".into(), kind: "Pod", name: "x".into() }
    }

    #[tokio::test]
    async fn merge_patch_sets_and_removes_keys() {
        let current = json!({"metadata": {"name": "x", "resourceVersion": "5", "labels": {"a": "1", "b": "2"}}});
        let patch =
            Patch::parse(PatchType::Merge, bytes::Bytes::from_static(br#"{"metadata":{"labels":{"a":null,"c":"3"}}}"#))
                .await
                .unwrap();
        let out = patch.apply_to("Pod", &current, &target()).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"b": "2", "c": "3"}));
    }

    #[tokio::test]
    async fn a_stale_resource_version_in_a_patch_is_a_conflict() {
        let current = json!({"metadata": {"name": "x", "resourceVersion": "5"}});
        let patch =
            Patch::parse(PatchType::Merge, bytes::Bytes::from_static(br#"{"metadata":{"resourceVersion":"4"}}"#))
                .await
                .unwrap();
        assert!(matches!(patch.apply_to("Pod", &current, &target()), Err(ApiError::Conflict(..))));
    }

    #[tokio::test]
    async fn json_patch_must_be_an_array_and_apply_cleanly() {
        assert!(Patch::parse(PatchType::Json, bytes::Bytes::from_static(br#"{"op":"add"}"#)).await.is_err());
        let current = json!({"metadata": {"name": "x"}});
        let patch =
            Patch::parse(PatchType::Json, bytes::Bytes::from_static(br#"[{"op":"remove","path":"/spec/missing"}]"#))
                .await
                .unwrap();
        assert!(matches!(patch.apply_to("Pod", &current, &target()), Err(ApiError::BadRequest(_))));
    }

    #[tokio::test]
    async fn testing_a_missing_path_for_null_passes_as_in_kubernetes() {
        let current = json!({"metadata": {"name": "x"}});
        let body = br#"[{"op":"test","path":"/metadata/finalizers","value":null},
                        {"op":"add","path":"/metadata/finalizers","value":["a"]}]"#;
        let patch = Patch::parse(PatchType::Json, bytes::Bytes::from_static(body)).await.unwrap();
        let out = patch.apply_to("Pod", &current, &target()).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a"]));
        let body = br#"[{"op":"test","path":"/metadata/name","value":null}]"#;
        let patch = Patch::parse(PatchType::Json, bytes::Bytes::from_static(body)).await.unwrap();
        assert!(
            matches!(patch.apply_to("Pod", &current, &target()), Err(ApiError::BadRequest(_))),
            "present: compared"
        );
    }

    #[test]
    fn unknown_patch_types_are_unsupported_media() {
        assert!(matches!(PatchType::from_media(Some("text/plain")), Err(ApiError::UnsupportedMediaType(_))));
        assert!(matches!(PatchType::from_media(None), Err(ApiError::UnsupportedMediaType(_))));
    }
}
