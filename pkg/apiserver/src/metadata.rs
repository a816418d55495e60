//! Small accessors on objects kept as JSON: metadata fields the apiserver reads and sets.

use serde_json::{Map, Value};

/// `metadata` of an object, created empty if missing.
///
/// Objects reaching the apiserver's logic are always JSON objects (bodies that are not
/// are rejected when parsed); anything else is replaced by an empty object here.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let Value::Object(fields) = obj else { unreachable!("made an object above") };
    let meta = fields.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let Value::Object(m) = meta else { unreachable!("made an object above") };
    m
}

/// A string field of `metadata`, empty if missing.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_str).unwrap_or_default()
}

/// The object's name.
pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name")
}

/// Sets `metadata.resourceVersion` from a storage revision.
pub fn set_resource_version(obj: &mut Value, revision: i64) {
    metadata_mut(obj).insert("resourceVersion".into(), Value::String(revision.to_string()));
}

/// Parses bytes from storage into an object carrying its resourceVersion.
pub fn from_storage(kv: &rkube_storage::KeyValue) -> Result<Value, crate::ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| crate::ApiError::Internal(format!("corrupt value at {}: {e}", kv.key)))?;
    set_resource_version(&mut obj, kv.mod_revision);
    Ok(obj)
}

/// Serializes an object for storage, without its resourceVersion (that is etcd's revision).
pub fn to_storage(obj: &Value) -> Vec<u8> {
    if obj.pointer("/metadata/resourceVersion").is_none() {
        // A new object has none: no copy needed.
        return serde_json::to_vec(obj).unwrap_or_default();
    }
    let mut copy = obj.clone();
    if let Some(Value::Object(m)) = copy.get_mut("metadata") {
        m.remove("resourceVersion");
    }
    serde_json::to_vec(&copy).unwrap_or_default()
}

/// The finalizers of an object.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Whether the object is marked for deletion.
pub fn is_terminating(obj: &Value) -> bool {
    !meta_str(obj, "deletionTimestamp").is_empty()
}

/// The current time as Kubernetes writes timestamps (RFC 3339, seconds, UTC).
pub fn now_rfc3339() -> String {
    timestamp(jiff::Timestamp::now())
}

/// A timestamp as Kubernetes writes it.
pub fn timestamp(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
