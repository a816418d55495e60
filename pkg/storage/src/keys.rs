//! Storage keys: `/registry/<resource>/<namespace>/<name>`, or without the namespace for
//! cluster-scoped resources. This is the only place keys are built.

/// Builds the etcd keys of objects and collections under one prefix (default `/registry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (a trailing `/` is ignored).
    pub fn new(prefix: &str) -> Self {
        Keys { prefix: prefix.trim_end_matches('/').to_string() }
    }

    /// The key of one object; `namespace` is `None` for cluster-scoped resources.
    pub fn object(&self, resource: &str, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) => format!("{}/{resource}/{ns}/{name}", self.prefix),
            None => format!("{}/{resource}/{name}", self.prefix),
        }
    }

    /// The prefix of a collection: one namespace, or all of them when `namespace` is `None`.
    pub fn collection(&self, resource: &str, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) => format!("{}/{resource}/{ns}/", self.prefix),
            None => format!("{}/{resource}/", self.prefix),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_and_cluster_keys_follow_the_kubernetes_layout() {
        let keys = Keys::new("/registry/");
        assert_eq!(keys.object("pods", Some("default"), "web"), "/registry/pods/default/web");
        assert_eq!(keys.object("nodes", None, "n1"), "/registry/nodes/n1");
        assert_eq!(keys.collection("pods", Some("default")), "/registry/pods/default/");
        assert_eq!(keys.collection("pods", None), "/registry/pods/");
    }

    #[test]
    fn a_namespace_collection_does_not_contain_a_namespace_with_a_longer_name() {
        let keys = Keys::new("/registry");
        let web = keys.object("pods", Some("web-2"), "a");
        assert!(!web.starts_with(&keys.collection("pods", Some("web"))));
    }
}
