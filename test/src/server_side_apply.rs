//! Server-side apply from tests: a PATCH as an apply by one field manager, and who owns which
//! field in an object's `metadata.managedFields`.

use serde_json::Value;

use crate::{Api, StatusCode};

/// The content type of a server-side apply.
pub const APPLY: &str = "application/apply-patch+yaml";

/// PATCHes `body` to `path` as a server-side apply by `manager`, forced or not.
pub async fn apply(api: &Api, path: &str, manager: &str, force: bool, body: &Value) -> (StatusCode, Value) {
    let force = if force { "&force=true" } else { "" };
    api.patch(&format!("{path}?fieldManager={manager}{force}"), APPLY, body).await
}

/// [`apply`] without force, insisting on 200 or 201; returns the object.
///
/// # Panics
/// On any other status, showing the reply.
pub async fn apply_ok(api: &Api, path: &str, manager: &str, body: &Value) -> Value {
    let (status, reply) = apply(api, path, manager, false, body).await;
    assert!(status == StatusCode::OK || status == StatusCode::CREATED, "apply by {manager}: {status} {reply}");
    reply
}

/// The entry of `manager` (and `operation`: `Apply` or `Update`) in an object's
/// `managedFields`.
pub fn entry<'o>(object: &'o Value, manager: &str, operation: &str) -> Option<&'o Value> {
    object["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
}

/// Whether `manager`'s entry owns the field at `path` (FieldsV1 keys, e.g. `["f:data", "f:a"]`).
pub fn owns(object: &Value, manager: &str, operation: &str, path: &[&str]) -> bool {
    let Some(entry) = entry(object, manager, operation) else { return false };
    path.iter().try_fold(&entry["fieldsV1"], |node, key| node.get(*key)).is_some()
}

/// Every entry of an object's `managedFields` as `<manager>/<operation>`, in order.
pub fn managers(object: &Value) -> Vec<String> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| format!("{}/{}", e["manager"].as_str().unwrap_or(""), e["operation"].as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default()
}
