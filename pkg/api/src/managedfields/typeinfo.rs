//! What server-side apply needs to know about a kind's schema: how each list merges
//! (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`) and which maps are atomic
//! (`x-kubernetes-map-type: atomic`, `structType=atomic`).
//!
//! Paths are field names from the object's root joined by `.`, list positions left out
//! (`spec.template.spec.containers.ports`). Built-in kinds answer from
//! [`crate::strategic_merge::merge_key`] plus the few places where Kubernetes' server-side
//! apply schema says more than the strategic merge tags ([`BuiltinTypes`]); CRDs answer from
//! their structural schema by implementing [`TypeInfo`] themselves.

use serde_json::Value;

/// How a list is merged and owned (`x-kubernetes-list-type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole and owned as one leaf (`atomic`, the default).
    Atomic,
    /// A set of scalars: merged as a union, each value owned on its own (`set`).
    Set,
    /// A list of objects identified by these key fields (`map` with `list-map-keys`): merged
    /// element by element, each element and each of its fields owned on its own.
    Map(Vec<String>),
}

/// Schema facts about one kind, looked up by dotted field path.
pub trait TypeInfo {
    /// The merge strategy of the list at `path`.
    fn list_type(&self, path: &str) -> ListType;

    /// Whether the map (or struct) at `path` is atomic: replaced and owned as a whole.
    fn map_is_atomic(&self, _path: &str) -> bool {
        false
    }

    /// The default of key field `key` of the map list at `path`, used when an element omits
    /// it (Kubernetes keys container ports by `containerPort` and `protocol`, `protocol`
    /// defaulting to `"TCP"`).
    fn key_default(&self, _path: &str, _key: &str) -> Option<Value> {
        None
    }
}

/// No schema at all: every list atomic, every map granular (what Kubernetes does for a
/// schema-less object: the "deduced" type).
#[derive(Debug, Clone, Copy, Default)]
pub struct Untyped;

impl TypeInfo for Untyped {
    fn list_type(&self, _path: &str) -> ListType {
        ListType::Atomic
    }
}

/// The built-in kinds' schema facts.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinTypes<'a> {
    /// The object's kind, e.g. "Deployment".
    pub kind: &'a str,
}

/// Kinds whose `spec.selector` is a `LabelSelector`, which Kubernetes marks
/// `structType=atomic`.
const LABEL_SELECTOR_KINDS: &[&str] = &["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job"];

/// Where each kind's pod spec sits, for the pod-spec facts that `merge_key` does not carry.
fn pod_spec_relative<'p>(kind: &str, path: &'p str) -> Option<&'p str> {
    let root = match kind {
        "Pod" => "spec",
        "PodTemplate" => "template.spec",
        "ReplicaSet" | "ReplicationController" | "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => {
            "spec.template.spec"
        }
        "CronJob" => "spec.jobTemplate.spec.template.spec",
        _ => return None,
    };
    path.strip_prefix(root)?.strip_prefix('.')
}

fn is_container_ports(relative: &str) -> bool {
    matches!(relative, "containers.ports" | "initContainers.ports" | "ephemeralContainers.ports")
}

impl TypeInfo for BuiltinTypes<'_> {
    fn list_type(&self, path: &str) -> ListType {
        // ObjectMeta.finalizers is listType=set, at the root and in templates.
        if path == "metadata.finalizers" || path.ends_with(".metadata.finalizers") {
            return ListType::Set;
        }
        if self.kind == "Node" && path == "spec.podCIDRs" {
            return ListType::Set;
        }
        if self.kind == "Service" && path == "spec.ports" {
            return ListType::Map(vec!["port".into(), "protocol".into()]);
        }
        if let Some(relative) = pod_spec_relative(self.kind, path) {
            if is_container_ports(relative) {
                return ListType::Map(vec!["containerPort".into(), "protocol".into()]);
            }
            if relative == "topologySpreadConstraints" {
                return ListType::Map(vec!["topologyKey".into(), "whenUnsatisfiable".into()]);
            }
        }
        match crate::strategic_merge::merge_key(self.kind, path) {
            Some(key) => ListType::Map(vec![key.to_string()]),
            None => ListType::Atomic,
        }
    }

    fn map_is_atomic(&self, path: &str) -> bool {
        if path == "spec.selector" {
            // LabelSelector is structType=atomic; a Service's selector is mapType=atomic.
            return LABEL_SELECTOR_KINDS.contains(&self.kind) || self.kind == "Service";
        }
        // PodSpec.nodeSelector is mapType=atomic.
        pod_spec_relative(self.kind, path).is_some_and(|relative| relative == "nodeSelector")
    }

    fn key_default(&self, path: &str, key: &str) -> Option<Value> {
        if key != "protocol" {
            return None;
        }
        let ports = (self.kind == "Service" && path == "spec.ports")
            || pod_spec_relative(self.kind, path).is_some_and(is_container_ports);
        ports.then(|| Value::String("TCP".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_types_follow_kubernetes_list_types() {
        let deploy = BuiltinTypes { kind: "Deployment" };
        assert_eq!(deploy.list_type("spec.template.spec.containers"), ListType::Map(vec!["name".into()]));
        assert_eq!(
            deploy.list_type("spec.template.spec.containers.ports"),
            ListType::Map(vec!["containerPort".into(), "protocol".into()])
        );
        assert_eq!(deploy.list_type("metadata.finalizers"), ListType::Set);
        assert_eq!(deploy.list_type("spec.template.metadata.finalizers"), ListType::Set);
        assert_eq!(deploy.list_type("spec.template.spec.containers.args"), ListType::Atomic);
        assert_eq!(deploy.list_type("spec.template.spec.tolerations"), ListType::Atomic);
        assert!(deploy.map_is_atomic("spec.selector"));
        assert!(deploy.map_is_atomic("spec.template.spec.nodeSelector"));
        assert!(!deploy.map_is_atomic("metadata.labels"));
        assert_eq!(deploy.key_default("spec.template.spec.containers.ports", "protocol"), Some("TCP".into()));
        let svc = BuiltinTypes { kind: "Service" };
        assert_eq!(svc.list_type("spec.ports"), ListType::Map(vec!["port".into(), "protocol".into()]));
    }
}
