//! The resource registry: every resource rkube serves, described once.
//!
//! Discovery documents, apiserver routes, storage keys, OpenAPI documents, Table columns
//! and the CLI's resource names are all derived from [`resources`]. Each kind keeps its
//! entry ([`ResourceDef`]), its strategy and its columns together in `kinds/<kind>.rs`;
//! adding a kind is that file plus one line in `RESOURCES` below, never a copy of handlers
//! (docs/adding-a-kind.md walks through one).

use crate::columns::{Column, RowFn};
use crate::customresource::CustomResource;
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
    pub to_storage: &'static ConvertFn,
    /// A stored object as this version shows it.
    pub from_storage: &'static ConvertFn,
    /// A field label of this version as the storage version names it (`None`: not
    /// selectable).
    pub field_label: fn(&str) -> Option<&'static str>,
}

/// One direction of a [`Conversion`]: a function for built-in kinds, a closure naming the
/// versions for custom resources.
pub type ConvertFn = dyn Fn(serde_json::Value) -> serde_json::Value + Send + Sync;

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
    /// For a resource a CustomResourceDefinition defines: what it adds (printer columns,
    /// scale paths, its schema). `None` for built-in kinds.
    pub custom: Option<&'static CustomResource>,
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

    /// Whether `label` may be used in a field selector on this resource: `metadata.name`,
    /// `metadata.namespace` (but not on a cluster-scoped custom resource, which Kubernetes'
    /// custom resource handler refuses it for) and [`ResourceDef::field_labels`].
    pub fn supports_field_label(&self, label: &str) -> bool {
        match label {
            "metadata.name" => true,
            "metadata.namespace" => self.namespaced || self.custom.is_none(),
            _ => self.field_labels.contains(&label),
        }
    }

    /// The resource's segment of its storage keys: the plural for built-in kinds
    /// (`/registry/pods/...`), `<group>/<plural>` for custom resources
    /// (`/registry/example.com/widgets/...`), as Kubernetes lays them out. A CRD's group has
    /// a dot and a built-in plural none, so the two never share a prefix.
    pub fn storage_name(&self) -> std::borrow::Cow<'static, str> {
        match self.custom {
            Some(_) => std::borrow::Cow::Owned(format!("{}/{}", self.group, self.plural)),
            None => std::borrow::Cow::Borrowed(self.plural),
        }
    }

    /// One object's Table cells under [`ResourceDef::columns`], ages measured at `now`.
    pub fn cells(&self, obj: &serde_json::Value, now: jiff::Timestamp) -> Vec<serde_json::Value> {
        match self.custom {
            Some(custom) => custom.cells(obj, now),
            None => (self.row)(obj, now),
        }
    }
}

/// The resources one apiserver serves: the built-in kinds of [`resources`] and, beside them,
/// those its CustomResourceDefinitions define, which come and go while it runs.
///
/// Built-in and custom resources are the same [`ResourceDef`]s, so routes, discovery,
/// OpenAPI, Tables and storage treat them alike. A custom resource's definition is built
/// once per change of its CRD's spec and lives as long as the process (requests and watch
/// caches hold `&'static` references to it); a CRD changes rarely, so that costs a few
/// kilobytes per change.
#[derive(Debug, Default)]
pub struct Registry {
    custom: std::sync::RwLock<std::sync::Arc<Vec<&'static ResourceDef>>>,
    generation: std::sync::atomic::AtomicU64,
}

impl Registry {
    /// A registry serving the built-in kinds only.
    pub fn new() -> Self {
        Registry::default()
    }

    fn custom(&self) -> std::sync::Arc<Vec<&'static ResourceDef>> {
        match self.custom.read() {
            Ok(custom) => std::sync::Arc::clone(&custom),
            Err(poisoned) => std::sync::Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the custom resources served (each served version of each established CRD).
    pub fn set_custom(&self, resources: Vec<&'static ResourceDef>) {
        let resources = std::sync::Arc::new(resources);
        match self.custom.write() {
            Ok(mut custom) => *custom = resources,
            Err(poisoned) => *poisoned.into_inner() = resources,
        }
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Whether `resources` differ from the custom resources served now (the same entries in
    /// the same order are no change).
    pub fn custom_changed(&self, resources: &[&'static ResourceDef]) -> bool {
        let current = self.custom();
        current.len() != resources.len() || current.iter().zip(resources).any(|(a, b)| !std::ptr::eq(*a, *b))
    }

    /// A number that changes whenever the custom resources do (documents derived from the
    /// registry, as OpenAPI, are rebuilt when it moves).
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Every resource served: the built-in ones, then the custom ones.
    pub fn resources(&self) -> Vec<&'static ResourceDef> {
        RESOURCES.iter().copied().chain(self.custom().iter().copied()).collect()
    }

    /// The resource with this group, version and plural name.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
        lookup(group, version, plural).or_else(|| {
            self.custom().iter().copied().find(|r| r.group == group && r.version == version && r.plural == plural)
        })
    }

    /// The API groups served, in discovery order (core first, then the built-in groups,
    /// then the custom ones), each with its versions (a custom group's in the order its CRD
    /// prefers them).
    pub fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        group_versions(&self.resources())
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
    &kinds::customresourcedefinition::RESOURCE,
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

/// The API groups of the built-in kinds, in discovery order (core `""` first), each with its
/// versions.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    group_versions(RESOURCES)
}

fn group_versions(resources: &[&'static ResourceDef]) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in resources {
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
