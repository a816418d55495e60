//! One stored object at one revision, as the apiserver serves it to lists and watches: its
//! JSON with `metadata.resourceVersion` set, encoded once, and what selectors read of it.
//!
//! Why: a list of 50,000 objects and a change seen by 1,000 watchers should not each be
//! decoded, changed and encoded again per reader. A [`StoredObject`] is built once (when read
//! from etcd, or when the watch cache takes in a change) and shared behind an `Arc`: lists
//! write its bytes as they are, watches send the same `Bytes` to every watcher, and label and
//! field selectors match against the values kept beside the bytes, without decoding.
//!
//! Not kept: the decoded object. Table rendering and the few callers that need fields
//! ([`StoredObject::decode`]) decode it again.

use std::collections::BTreeMap;

use bytes::Bytes;
use rkube_api::registry::ResourceDef;
use rkube_api::selector::{FieldSelector, LabelSelector, field_value};
use serde_json::Value;

use crate::error::ApiError;
use crate::metadata::set_resource_version;

/// An object as the apiserver serves it (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    /// Its storage key.
    pub key: String,
    /// Its resourceVersion (for the last state of a deleted object, the deletion's revision).
    pub revision: i64,
    /// The object's JSON, `metadata.resourceVersion` included.
    pub json: Bytes,
    labels: BTreeMap<String, String>,
    /// The values of `metadata.name`, `metadata.namespace` and the resource's field labels.
    fields: Vec<(&'static str, String)>,
}

impl StoredObject {
    /// The object stored as `value` under `key` at `revision` (an etcd value has no
    /// resourceVersion; it is set here).
    pub fn new(res: &ResourceDef, key: &str, value: &[u8], revision: i64) -> Result<StoredObject, ApiError> {
        let mut object: Value =
            serde_json::from_slice(value).map_err(|e| ApiError::Internal(format!("corrupt value at {key}: {e}")))?;
        set_resource_version(&mut object, revision);
        StoredObject::from_value(res, key, &object, revision)
    }

    /// `object` (its resourceVersion already set to `revision`), stored under `key`.
    pub fn from_value(res: &ResourceDef, key: &str, object: &Value, revision: i64) -> Result<StoredObject, ApiError> {
        let json = serde_json::to_vec(object).map_err(|e| ApiError::Internal(format!("encoding {key}: {e}")))?;
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|labels| labels.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default();
        let fields = ["metadata.name", "metadata.namespace"]
            .into_iter()
            .chain(res.field_labels.iter().copied())
            .map(|field| (field, field_value(object, field)))
            .collect();
        Ok(StoredObject { key: key.to_string(), revision, json: Bytes::from(json), labels, fields })
    }

    /// The same object as the last state of its deletion at `revision`: its resourceVersion is
    /// the deletion's, as Kubernetes sends it in a `DELETED` event.
    pub fn deleted_at(&self, res: &ResourceDef, revision: i64) -> Result<StoredObject, ApiError> {
        let mut object = self.decode()?;
        set_resource_version(&mut object, revision);
        StoredObject::from_value(res, &self.key, &object, revision)
    }

    /// The object, decoded.
    pub fn decode(&self) -> Result<Value, ApiError> {
        serde_json::from_slice(&self.json).map_err(|e| ApiError::Internal(format!("corrupt cached {}: {e}", self.key)))
    }

    /// Its `metadata.name`.
    pub fn name(&self) -> &str {
        self.field("metadata.name")
    }

    /// Its `metadata.namespace` (empty for cluster-scoped objects).
    pub fn namespace(&self) -> &str {
        self.field("metadata.namespace")
    }

    fn field(&self, name: &str) -> &str {
        self.fields.iter().find(|(field, _)| *field == name).map_or("", |(_, value)| value.as_str())
    }

    /// Whether both selectors hold. A field the resource does not index reads `""`, which
    /// cannot happen for a selector that passed [`crate::rest::Filter::from_query`].
    pub fn matches(&self, labels: &LabelSelector, fields: &FieldSelector) -> bool {
        labels.matches(&self.labels) && fields.matches(|field| self.field(field).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods() -> &'static ResourceDef {
        &rkube_api::kinds::pod::RESOURCE
    }

    #[test]
    fn the_json_carries_the_revision_as_resource_version() {
        let value = serde_json::to_vec(&json!({"metadata": {"name": "p", "namespace": "ns"}})).unwrap();
        let stored = StoredObject::new(pods(), "/registry/pods/ns/p", &value, 42).unwrap();
        assert_eq!(stored.decode().unwrap()["metadata"]["resourceVersion"], "42");
        assert_eq!((stored.name(), stored.namespace()), ("p", "ns"));
        let deleted = stored.deleted_at(pods(), 50).unwrap();
        assert_eq!(deleted.decode().unwrap()["metadata"]["resourceVersion"], "50");
        assert_eq!(deleted.revision, 50);
    }

    #[test]
    fn selectors_match_the_kept_labels_and_fields_as_they_match_the_object() {
        let object = json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
                            "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let stored = StoredObject::from_value(pods(), "k", &object, 1).unwrap();
        for (labels, fields) in [
            ("app=web", "spec.nodeName=n1"),
            ("app!=db", "status.phase!=Pending"),
            ("", "metadata.name=p,metadata.namespace=ns"),
            ("app=db", ""),
            ("", "spec.nodeName=n2"),
            ("!app", "spec.hostNetwork=false"),
        ] {
            let (l, f) = (LabelSelector::parse(labels).unwrap(), FieldSelector::parse(fields).unwrap());
            assert_eq!(
                stored.matches(&l, &f),
                l.matches_object(&object) && f.matches_object(&object),
                "{labels} {fields}"
            );
        }
    }
}
