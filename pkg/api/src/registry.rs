//! The resource registry: every resource rkube serves, described once.
//!
//! Discovery documents, apiserver routes, storage keys, OpenAPI documents, Table columns
//! and the CLI's resource names are all derived from [`resources`]. Each kind keeps its
//! entry ([`ResourceDef`]), its strategy and its columns together in `kinds/<kind>.rs`;
//! adding a kind is that file plus one line in `RESOURCES` below, never a copy of handlers
//! (docs/adding-a-kind.md walks through one).

use crate::columns::{Column, RowFn};
use crate::kinds;
use crate::strategy::RestStrategy;

/// A subresource served under `<resource>/<name>/<subresource>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `status`: read and write `.status` only; the main resource ignores status changes.
    Status,
    /// `scale`: an `autoscaling/v1` `Scale` view of `spec.replicas`.
    Scale,
    /// `binding`: assigns a pod to a node by setting `spec.nodeName` once.
    Binding,
    /// `log`: a container's log, proxied from the kubelet of the pod's node.
    Log,
    /// `token`: a ServiceAccount token (a TokenRequest).
    Token,
    /// `eviction`: a pod's deletion that respects its PodDisruptionBudget (policy/v1
    /// Eviction), as `kubectl drain` asks for it.
    Eviction,
    /// `ephemeralcontainers`: a pod's `spec.ephemeralContainers`, which only grow (`kubectl
    /// debug`); the main resource may not change them.
    EphemeralContainers,
}

impl Subresource {
    /// The path segment, e.g. `status`.
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Log => "log",
            Subresource::Token => "token",
            Subresource::Eviction => "eviction",
            Subresource::EphemeralContainers => "ephemeralcontainers",
        }
    }
}

/// How a resource served in one version is stored as another, as Kubernetes serves a resource
/// in several group versions over one storage version: the same storage keys, objects
/// converted on the way in and out, field selectors translated.
pub struct Conversion {
    /// The resource whose stored objects these are.
    pub storage: &'static ResourceDef,
    /// An object of this version (already validated) as the storage version stores it.
    pub to_storage: fn(serde_json::Value) -> serde_json::Value,
    /// A stored object as this version shows it.
    pub from_storage: fn(serde_json::Value) -> serde_json::Value,
    /// A field label of this version as the storage version names it (`None`: not
    /// selectable).
    pub field_label: fn(&str) -> Option<&'static str>,
}

impl std::fmt::Debug for Conversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversion").field("storage", &self.storage.api_version()).finish_non_exhaustive()
    }
}

/// One resource: its names, scope, subresources and the rules of its kind.
pub struct ResourceDef {
    /// API group; `""` is the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// Kind, e.g. `Pod`.
    pub kind: &'static str,
    /// Plural resource name used in URLs and storage keys, e.g. `pods`.
    pub plural: &'static str,
    /// Singular name, e.g. `pod`.
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names kubectl accepts, e.g. `po`.
    pub short_names: &'static [&'static str],
    /// Categories such as `all` (for `kubectl get all`).
    pub categories: &'static [&'static str],
    /// Subresources served.
    pub subresources: &'static [Subresource],
    /// Field-selector labels beyond `metadata.name` and `metadata.namespace`.
    pub field_labels: &'static [&'static str],
    /// The kind's REST strategy: decoding, defaulting, validation, deletion rules.
    pub strategy: &'static dyn RestStrategy,
    /// For a second version of a resource stored as another (`events.k8s.io/v1` Events are
    /// core `v1` Events in storage): how objects convert. `None` for a resource stored as
    /// itself.
    pub conversion: Option<&'static Conversion>,
    /// The columns `kubectl get` shows (server-side printing).
    pub columns: &'static [Column],
    /// One object's cells under [`ResourceDef::columns`].
    pub row: RowFn,
}

impl std::fmt::Debug for ResourceDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceDef").field("group", &self.group).field("plural", &self.plural).finish_non_exhaustive()
    }
}

/// Two definitions are the same resource when group, version and plural agree.
impl PartialEq for ResourceDef {
    fn eq(&self, other: &Self) -> bool {
        (self.group, self.version, self.plural) == (other.group, other.version, other.plural)
    }
}

impl Eq for ResourceDef {}

impl ResourceDef {
    /// `v1` for the core group, `<group>/<version>` otherwise: the objects' `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The URL prefix of the group version: `/api/v1` or `/apis/<group>/<version>`.
    pub fn path_prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The kind of a list of these objects, e.g. `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether `sub` is served for this resource.
    pub fn has_subresource(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// Whether `label` may be used in a field selector on this resource.
    pub fn supports_field_label(&self, label: &str) -> bool {
        matches!(label, "metadata.name" | "metadata.namespace") || self.field_labels.contains(&label)
    }
}

/// Every resource rkube serves: one line per kind, its entry in `kinds/<kind>.rs`.
static RESOURCES: &[&ResourceDef] = &[
    &kinds::namespace::RESOURCE,
    &kinds::pod::RESOURCE,
    &kinds::node::RESOURCE,
    &kinds::service::RESOURCE,
    &kinds::endpoints::RESOURCE,
    &kinds::endpointslice::RESOURCE,
    &kinds::event::RESOURCE,
    &kinds::event::EVENTS_V1,
    &kinds::configmap::RESOURCE,
    &kinds::secret::RESOURCE,
    &kinds::serviceaccount::RESOURCE,
    &kinds::replicaset::RESOURCE,
    &kinds::replicationcontroller::RESOURCE,
    &kinds::deployment::RESOURCE,
    &kinds::daemonset::RESOURCE,
    &kinds::statefulset::RESOURCE,
    &kinds::controllerrevision::RESOURCE,
    &kinds::job::RESOURCE,
    &kinds::cronjob::RESOURCE,
    &kinds::lease::RESOURCE,
    &kinds::rbac::ROLE,
    &kinds::rbac::CLUSTER_ROLE,
    &kinds::rbac::ROLE_BINDING,
    &kinds::rbac::CLUSTER_ROLE_BINDING,
    &kinds::resourcequota::RESOURCE,
    &kinds::limitrange::RESOURCE,
    &kinds::priorityclass::RESOURCE,
    &kinds::poddisruptionbudget::RESOURCE,
    &kinds::persistentvolume::RESOURCE,
    &kinds::persistentvolumeclaim::RESOURCE,
    &kinds::storageclass::RESOURCE,
];

/// Every resource rkube serves.
pub fn resources() -> &'static [&'static ResourceDef] {
    RESOURCES
}

/// The resource with this group, version and plural name.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES.iter().copied().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource serving `kind` in `group`.
pub fn by_kind(group: &str, kind: &str) -> Option<&'static ResourceDef> {
    RESOURCES.iter().copied().find(|r| r.group == group && r.kind == kind)
}

/// The API groups served, in discovery order (core `""` first), each with its versions.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_unique_plural_and_short_names() {
        let mut names = std::collections::HashSet::new();
        for r in resources() {
            assert!(names.insert((r.group, r.plural)), "duplicate plural {}", r.plural);
            for s in r.short_names {
                assert!(names.insert((r.group, s)), "duplicate short name {s}");
            }
        }
    }

    #[test]
    fn groups_list_core_first() {
        let groups = groups();
        assert_eq!(groups[0], ("", vec!["v1"]));
        assert!(groups.iter().any(|(g, _)| *g == "apps"));
        assert!(groups.iter().any(|(g, _)| *g == "coordination.k8s.io"));
    }

    #[test]
    fn strategy_rejects_a_body_of_the_wrong_kind() {
        let pods = lookup("", "v1", "pods").expect("pods registered");
        let err =
            pods.strategy.create(serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "x"}}));
        assert!(matches!(err, Err(crate::strategy::StrategyError::Decode(_))), "{err:?}");
    }
}
