//! Object keys: which object a store entry, a work-queue item or a log line is about.
//!
//! client-go names an object with a string, `namespace/name` or just `name` for cluster-scoped
//! objects (`MetaNamespaceKeyFunc`), and splits it apart again where it needs the parts
//! (`SplitMetaNamespaceKey`). rkube does what kube-rs does with its reflector's `ObjectRef`: an
//! [`ObjectKey`] keeps the namespace and the name apart, so nothing ever builds a key by hand or
//! parses one back. Its [`Display`](std::fmt::Display) is client-go's string, for logs and error
//! messages.
//!
//! What it keeps true (tests below):
//! - an empty namespace is no namespace, so a cluster-scoped object has exactly one key
//!   (`an_empty_namespace_is_no_namespace`, `cluster_scoped_keys_have_no_namespace`);
//! - it displays as `namespace/name`, or `name` without a namespace, the same text as
//!   client-go's key function, and rebuilding a key from its parts gives the same key
//!   (`display_is_client_go_key_text_and_the_parts_round_trip`);
//! - keys order by namespace (cluster-scoped keys first), then by name
//!   (`keys_order_by_namespace_then_name`).
//!
//! Not promised: that an object exists under a key, or that a key names one object over time.
//! A key is a name, not a uid: an object deleted and created again under the same name has the
//! same key. Compare `metadata.uid` when that matters.

use std::fmt;

use kube_core::Resource;

/// The key of one object: its namespace (none for cluster-scoped objects) and its name.
/// client-go uses the string `namespace/name` instead; kube-rs calls this `ObjectRef`.
///
/// Made only by [`ObjectKey::new`] and [`ObjectKey::of`], which keep the invariant that the
/// namespace, when there is one, is not empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// `None` for cluster-scoped objects; never `Some("")`.
    namespace: Option<String>,
    name: String,
}

impl ObjectKey {
    /// The key of `name` in `namespace` (`None`, or `Some("")`, for a cluster-scoped object).
    pub fn new(namespace: Option<&str>, name: &str) -> Self {
        ObjectKey {
            namespace: namespace.filter(|namespace| !namespace.is_empty()).map(str::to_string),
            name: name.to_string(),
        }
    }

    /// The key of `object`, from its `metadata.namespace` and `metadata.name` (empty when it
    /// has no name yet, as for an object that only has a `generateName`).
    pub fn of<K: Resource>(object: &K) -> Self {
        let meta = object.meta();
        ObjectKey::new(meta.namespace.as_deref(), meta.name.as_deref().unwrap_or_default())
    }

    /// The namespace, or `None` for a cluster-scoped object. Never `Some("")`.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for ObjectKey {
    /// `namespace/name`, or `name` for a cluster-scoped object (client-go's key text).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{namespace}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ConfigMap, Node};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
        ObjectMeta { namespace: namespace.map(String::from), name: Some(name.into()), ..ObjectMeta::default() }
    }

    #[test]
    fn display_is_client_go_key_text_and_the_parts_round_trip() {
        let config_map = ConfigMap { metadata: meta(Some("ns"), "a"), ..ConfigMap::default() };
        let node = Node { metadata: meta(None, "n1"), ..Node::default() };
        for (key, text) in [(ObjectKey::of(&config_map), "ns/a"), (ObjectKey::of(&node), "n1")] {
            assert_eq!(key.to_string(), text);
            assert_eq!(ObjectKey::new(key.namespace(), key.name()), key);
        }
        assert_eq!(ObjectKey::new(Some("ns"), "a"), ObjectKey::of(&config_map));
    }

    #[test]
    fn cluster_scoped_keys_have_no_namespace() {
        let node = Node { metadata: meta(None, "n1"), ..Node::default() };
        let key = ObjectKey::of(&node);
        assert_eq!((key.namespace(), key.name()), (None, "n1"));
        assert_eq!(key, ObjectKey::new(None, "n1"));
    }

    #[test]
    fn an_empty_namespace_is_no_namespace() {
        assert_eq!(ObjectKey::new(Some(""), "n1"), ObjectKey::new(None, "n1"));
        assert_eq!(ObjectKey::new(Some(""), "n1").namespace(), None);
        let node = Node { metadata: meta(Some(""), "n1"), ..Node::default() };
        assert_eq!(ObjectKey::of(&node), ObjectKey::new(None, "n1"));
        assert_eq!(ObjectKey::of(&node).to_string(), "n1");
    }

    #[test]
    fn an_object_without_a_name_has_an_empty_name() {
        let unnamed = ConfigMap {
            metadata: ObjectMeta { namespace: Some("ns".into()), ..ObjectMeta::default() },
            ..ConfigMap::default()
        };
        assert_eq!(ObjectKey::of(&unnamed), ObjectKey::new(Some("ns"), ""));
    }

    #[test]
    fn keys_order_by_namespace_then_name() {
        let mut keys = [
            ObjectKey::new(Some("b"), "a"),
            ObjectKey::new(Some("a-x"), "a"),
            ObjectKey::new(Some("a"), "z"),
            ObjectKey::new(None, "m"),
            ObjectKey::new(Some("a"), "b"),
        ];
        keys.sort();
        let texts: Vec<String> = keys.iter().map(ToString::to_string).collect();
        // Unlike the strings, where "a-x/a" < "a/b" because '-' < '/'.
        assert_eq!(texts, ["m", "a/b", "a/z", "a-x/a", "b/a"]);
    }
}
