//! The resource registry: every resource rkube serves, described once.
//!
//! Discovery documents, apiserver routes, storage keys, OpenAPI documents and the CLI's
//! resource names are all derived from [`resources`]; adding a kind means adding an entry
//! here (and its [`Object`] rules), never copying handlers.

use std::marker::PhantomData;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Event, Namespace, Node, Pod, Service};
use serde_json::Value;

use crate::object::{FieldError, Object, unknown_fields};

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
}

impl Subresource {
    /// The path segment, e.g. `status`.
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Log => "log",
        }
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
    /// Decoding, defaulting and validation for this kind.
    pub codec: &'static dyn Codec,
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

/// Why a body could not become a valid object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The JSON does not fit the kind's type (wrong types, wrong kind or apiVersion).
    #[error("{0}")]
    Decode(String),
    /// The object decoded but breaks validation rules.
    #[error("{} field error(s)", .0.len())]
    Invalid(Vec<FieldError>),
}

/// A body turned into a normalized, defaulted and validated object.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The object as it will be stored (re-encoded from the typed form).
    pub object: Value,
    /// Fields of the body the kind does not know (dropped from `object`).
    pub unknown_fields: Vec<String>,
}

/// Type-erased access to a kind's [`Object`] rules, so the registry can hold every kind.
pub trait Codec: Send + Sync {
    /// Decodes, defaults and validates a new object.
    fn create(&self, body: Value) -> Result<Decoded, CodecError>;
    /// Decodes, defaults and validates `body` as an update of `old`.
    fn update(&self, body: Value, old: &Value) -> Result<Decoded, CodecError>;
    /// Decodes and defaults without validating (to normalize objects for display or tests).
    fn normalize(&self, body: Value) -> Result<Value, CodecError>;
    /// The JSON schema of the kind (for the OpenAPI documents).
    fn json_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema;
}

/// The [`Codec`] of a k8s-openapi type.
pub struct Typed<K>(PhantomData<fn() -> K>);

impl<K> Typed<K> {
    /// The codec of `K`.
    pub const fn new() -> Self {
        Typed(PhantomData)
    }
}

impl<K> Default for Typed<K> {
    fn default() -> Self {
        Self::new()
    }
}

fn decode<K: Object>(body: &Value) -> Result<K, CodecError> {
    K::deserialize(body).map_err(|e| CodecError::Decode(e.to_string()))
}

fn encode<K: Object>(object: &K) -> Result<Value, CodecError> {
    serde_json::to_value(object).map_err(|e| CodecError::Decode(e.to_string()))
}

fn finish<K: Object>(body: &Value, object: &K, errors: Vec<FieldError>) -> Result<Decoded, CodecError> {
    if !errors.is_empty() {
        return Err(CodecError::Invalid(errors));
    }
    let encoded = encode(object)?;
    let unknown = unknown_fields(body, &encoded);
    Ok(Decoded { object: encoded, unknown_fields: unknown })
}

impl<K: Object> Codec for Typed<K> {
    fn create(&self, body: Value) -> Result<Decoded, CodecError> {
        let mut object: K = decode(&body)?;
        object.set_defaults();
        let errors = object.validate_create();
        finish(&body, &object, errors)
    }

    fn update(&self, body: Value, old: &Value) -> Result<Decoded, CodecError> {
        let mut object: K = decode(&body)?;
        object.set_defaults();
        let old: K = decode(old)?;
        let errors = object.validate_update(&old);
        finish(&body, &object, errors)
    }

    fn normalize(&self, body: Value) -> Result<Value, CodecError> {
        let mut object: K = decode(&body)?;
        object.set_defaults();
        encode(&object)
    }

    fn json_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<K>()
    }
}

const POD_FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];

const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

static RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        subresources: &[Subresource::Status],
        field_labels: &["status.phase"],
        codec: &Typed::<Namespace>::new(),
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        subresources: &[Subresource::Status, Subresource::Binding, Subresource::Log],
        field_labels: POD_FIELDS,
        codec: &Typed::<Pod>::new(),
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        subresources: &[Subresource::Status],
        field_labels: &["spec.unschedulable"],
        codec: &Typed::<Node>::new(),
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        singular: "service",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        subresources: &[Subresource::Status],
        field_labels: &[],
        codec: &Typed::<Service>::new(),
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Endpoints",
        plural: "endpoints",
        singular: "endpoints",
        namespaced: true,
        short_names: &["ep"],
        categories: &[],
        subresources: &[],
        field_labels: &[],
        codec: &Typed::<Endpoints>::new(),
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
        field_labels: EVENT_FIELDS,
        codec: &Typed::<Event>::new(),
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        subresources: &[],
        field_labels: &[],
        codec: &Typed::<ConfigMap>::new(),
    },
    ResourceDef {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        namespaced: true,
        short_names: &["rs"],
        categories: &["all"],
        subresources: &[Subresource::Status, Subresource::Scale],
        field_labels: &["status.replicas"],
        codec: &Typed::<ReplicaSet>::new(),
    },
    ResourceDef {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        subresources: &[Subresource::Status, Subresource::Scale],
        field_labels: &[],
        codec: &Typed::<Deployment>::new(),
    },
    ResourceDef {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        field_labels: &[],
        codec: &Typed::<Lease>::new(),
    },
];

/// Every resource rkube serves.
pub fn resources() -> &'static [ResourceDef] {
    RESOURCES
}

/// The resource with this group, version and plural name.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource serving `kind` in `group`.
pub fn by_kind(group: &str, kind: &str) -> Option<&'static ResourceDef> {
    RESOURCES.iter().find(|r| r.group == group && r.kind == kind)
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
    fn codec_rejects_a_body_of_the_wrong_kind() {
        let pods = lookup("", "v1", "pods").expect("pods registered");
        let err = pods.codec.create(serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "x"}}));
        assert!(matches!(err, Err(CodecError::Decode(_))), "{err:?}");
    }
}
