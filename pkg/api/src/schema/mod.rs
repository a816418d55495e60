//! Structural schemas of custom resources: what a CustomResourceDefinition's
//! `openAPIV3Schema` means for the objects stored under it.
//!
//! Kubernetes only serves CRDs whose schemas are *structural* (k8s.io/apiextensions-apiserver,
//! `pkg/apiserver/schema`): every node names its `type` (except where
//! `x-kubernetes-int-or-string` or `x-kubernetes-preserve-unknown-fields` say otherwise), value
//! validations under `allOf`/`anyOf`/`oneOf`/`not` only restrict what the plain nodes already
//! specify, `metadata` at the root may only restrict `name` and `generateName`, and so on.
//! [`StructuralSchema::new`] checks those rules (and the rest of what CRD validation checks of
//! a schema: list and map types, defaults, CEL rules) and builds the schema once, so that every
//! request afterwards is cheap:
//!
//! 1. [`StructuralSchema::prune`] drops the fields the schema does not specify,
//! 2. [`StructuralSchema::apply_defaults`] fills in `default`s,
//! 3. [`StructuralSchema::validate`] checks the OpenAPI value validations and the uniqueness
//!    of `set` and `map` lists,
//! 4. [`StructuralSchema::validate_rules`] runs the CEL rules (`x-kubernetes-validations`),
//!    with `oldSelf` on updates.
//!
//! That is the order in which Kubernetes' custom resource handler applies them. Errors read as
//! Kubernetes writes them: the OpenAPI ones in kube-openapi's words
//! (`spec.replicas in body should be less than or equal to 10`), field paths as the
//! validator builds them. The module does no I/O.
//!
//! # Where it differs from Kubernetes
//!
//! - The summary errors of `allOf`/`anyOf`/`oneOf`/`not` are reported at the node's path;
//!   Kubernetes reports them at `<nil>` (kube-openapi gives them no field).
//! - Default values are validated with their full path in the message
//!   (`...properties[f].default in body ...`), where Kubernetes starts the message empty.
//! - Embedded resources (`x-kubernetes-embedded-resource`) are checked structurally and keep
//!   their `apiVersion`, `kind` and `metadata` when pruned, but their metadata is not
//!   validated as ObjectMeta.
//! - CEL: see the `cel` submodule (no static type checking, no cost budget, no
//!   Kubernetes-specific libraries).
//! - `format: int32`/`int64` check nothing beyond the type, as in Kubernetes; of the string
//!   formats, `isbn`, `creditcard` and `password` accept anything.

mod cel;
mod defaulting;
mod formats;
mod pruning;
mod structural;
#[cfg(test)]
mod tests;
mod validation;

use std::collections::BTreeMap;

use serde_json::Value;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;

use crate::field::FieldError;

/// How a list is merged and owned (`x-kubernetes-list-type`): the same type server-side
/// apply reads for built-in kinds.
pub use crate::managedfields::ListType;

/// A custom resource's schema, checked to be structural and compiled (regular expressions,
/// CEL rules) once.
///
/// Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug, Clone)]
pub struct StructuralSchema {
    root: Node,
}

impl StructuralSchema {
    /// Checks `props` is a structural schema and builds it.
    ///
    /// The checks are Kubernetes' (CRD validation plus `ValidateStructural`): `type` on every
    /// node except where `x-kubernetes-int-or-string` or `x-kubernetes-preserve-unknown-fields`
    /// allow leaving it out, `items` for arrays, no `additionalProperties` beside `properties`
    /// nor at the root, an object at the root, `metadata` at the root restricting only `name`
    /// and `generateName`, no types, defaults or extensions under `allOf`/`anyOf`/`oneOf`/`not`
    /// and nothing there the plain schema does not specify, valid list and map types (a `map`
    /// list keyed by required or defaulted scalar properties), defaults that are pruned and
    /// valid against their schema, valid `pattern`s, and CEL rules that compile.
    ///
    /// Errors are field errors whose paths start at `path`, the place of the schema in the CRD
    /// (`spec.versions[0].schema.openAPIV3Schema`).
    pub fn new(props: &JSONSchemaProps, path: &str) -> Result<Self, Vec<FieldError>> {
        structural::build(props, path).map(|root| Self { root })
    }

    /// Removes the fields the schema does not specify, as Kubernetes prunes a custom resource
    /// before storing it, and returns their paths (`.spec.foo`, `.spec.items[0].bar`) so that
    /// the caller can warn about them or refuse them (`fieldValidation`).
    ///
    /// Under `x-kubernetes-preserve-unknown-fields` nothing unknown is removed (what the
    /// schema does specify below it is still pruned). At the root `apiVersion`, `kind` and
    /// `metadata` are never pruned: metadata is the caller's business.
    pub fn prune(&self, object: &mut Value) -> Vec<String> {
        pruning::prune(&self.root, object)
    }

    /// Applies the schema's `default`s, as Kubernetes does when it reads or writes a custom
    /// resource: first `null`s of fields that are neither nullable nor defaulted are dropped,
    /// then each absent field (or non-nullable `null`) of an object that is present gets its
    /// default, recursively, including in list items and `additionalProperties` values.
    ///
    /// A default below an absent object is not applied unless that object is defaulted itself
    /// (then the defaults inside its default are applied as well).
    pub fn apply_defaults(&self, object: &mut Value) {
        defaulting::prune_nulls(&self.root, object);
        defaulting::apply(&self.root, object);
    }

    /// Validates `object` against the schema's OpenAPI value validations (type, nullable,
    /// required, enum, pattern, format, bounds, lengths, sizes, `allOf`/`anyOf`/`oneOf`/`not`)
    /// and the uniqueness of `set` and `map` lists, as kube-openapi and Kubernetes' list-type
    /// validation report them.
    ///
    /// CEL rules are separate: [`StructuralSchema::validate_rules`].
    pub fn validate(&self, object: &Value) -> Vec<FieldError> {
        let mut errs = validation::validate(&self.root, object);
        errs.extend(validation::validate_lists(&self.root, object));
        errs
    }

    /// Evaluates the CEL rules (`x-kubernetes-validations`) with `self` bound to the value at
    /// each node that has rules.
    ///
    /// Transition rules (those using `oldSelf`) run only on updates (`old` given) and only
    /// where the old object has a value at the same place: object fields are matched by name,
    /// items of `map` lists by their keys, other list items not at all. A failed rule is an
    /// error at the node (or at its `fieldPath`) with the rule's `message`, its
    /// `messageExpression`, or `failed rule: <rule>`; an evaluation error is an `Invalid` error
    /// too.
    pub fn validate_rules(&self, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
        cel::validate(&self.root, object, old)
    }

    /// Whether the schema has any CEL rule (`x-kubernetes-validations`), at any depth.
    pub fn has_rules(&self) -> bool {
        self.root.has_rules()
    }

    /// The list type at `path`: field names from the root joined by `.`, list positions left
    /// out (`spec.ports`, `spec.template.containers.ports`). [`ListType::Atomic`] for a list
    /// without `x-kubernetes-list-type` and for a path the schema does not know.
    pub fn list_type(&self, path: &str) -> ListType {
        self.node_at(path).and_then(|n| n.list_type.clone()).unwrap_or(ListType::Atomic)
    }

    /// Whether the object at `path` (as for [`StructuralSchema::list_type`]) is atomic
    /// (`x-kubernetes-map-type: atomic`): replaced and owned as a whole.
    /// A list's path asks about its items.
    pub fn map_is_atomic(&self, path: &str) -> bool {
        let mut node = self.node_at(path);
        while let Some(n) = node.filter(|n| n.type_ == Some(JsonType::Array)) {
            node = n.items.as_deref();
        }
        node.is_some_and(|n| n.map_atomic)
    }

    /// The default of the key field `key` of items of the `map` list at `path`: what server-side
    /// apply uses when an item leaves a key out.
    pub fn key_default(&self, path: &str, key: &str) -> Option<Value> {
        self.node_at(path)?.items.as_ref()?.properties.get(key)?.default.clone()
    }

    /// Whether the schema specifies the field at `path`, a simple JSON path such as
    /// `.spec.replicas` (the leading `.` is optional): each field is a property, a key of
    /// `additionalProperties`, or lies below `x-kubernetes-preserve-unknown-fields`. What a
    /// CRD's scale subresource's `specReplicasPath` must point to.
    pub fn has_path(&self, path: &str) -> bool {
        let path = path.strip_prefix('.').unwrap_or(path);
        if path.is_empty() {
            return true;
        }
        let mut node = &self.root;
        for name in path.split('.') {
            if name.is_empty() {
                return false;
            }
            match node.child(name) {
                Some(next) => node = next,
                None => return node.preserve_unknown_fields,
            }
        }
        true
    }

    /// The node at a dotted path whose list positions are left out: list items are stepped
    /// into implicitly.
    fn node_at(&self, path: &str) -> Option<&Node> {
        let mut node = &self.root;
        if path.is_empty() {
            return Some(node);
        }
        for name in path.split('.') {
            while node.type_ == Some(JsonType::Array) {
                node = node.items.as_deref()?;
            }
            node = node.child(name)?;
        }
        Some(node)
    }
}

/// The JSON types a schema can name in `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonType {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
}

impl JsonType {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "object" => Self::Object,
            "array" => Self::Array,
            "string" => Self::String,
            "integer" => Self::Integer,
            "number" => Self::Number,
            "boolean" => Self::Boolean,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Object => "object",
            Self::Array => "array",
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
        }
    }
}

/// One node of the structural schema: the parts that shape the value (type, properties,
/// items, extensions, default) plus its value validations and CEL rules.
#[derive(Debug, Clone, Default)]
struct Node {
    type_: Option<JsonType>,
    nullable: bool,
    int_or_string: bool,
    preserve_unknown_fields: bool,
    embedded_resource: bool,
    default: Option<Value>,
    /// `None` when `x-kubernetes-list-type` is not set.
    list_type: Option<ListType>,
    map_atomic: bool,
    properties: BTreeMap<String, Node>,
    additional: Option<Additional>,
    items: Option<Box<Node>>,
    checks: Checks,
    rules: Vec<cel::Rule>,
}

impl Node {
    /// Whether this node or one below it has CEL rules.
    fn has_rules(&self) -> bool {
        !self.rules.is_empty()
            || self.properties.values().any(Node::has_rules)
            || matches!(&self.additional, Some(Additional::Schema(node)) if node.has_rules())
            || self.items.as_deref().is_some_and(Node::has_rules)
    }

    /// The schema of field `name` of an object: its property, else `additionalProperties`.
    fn child(&self, name: &str) -> Option<&Node> {
        match self.properties.get(name) {
            Some(node) => Some(node),
            None => match &self.additional {
                Some(Additional::Schema(node)) => Some(node),
                _ => None,
            },
        }
    }
}

/// `additionalProperties`: a schema for every value, or a bare `true`/`false`.
#[derive(Debug, Clone)]
enum Additional {
    Schema(Box<Node>),
    Allows(bool),
}

/// Value validations: of a node, or of a schema under `allOf`/`anyOf`/`oneOf`/`not` (then
/// with its own `properties`, `items` and `additionalProperties`, which only add validations
/// to what the node specifies).
#[derive(Debug, Clone, Default)]
struct Checks {
    /// Only in the int-or-string pattern of a nested schema (`anyOf: [{type: integer}, {type:
    /// string}]`): structural nodes keep their type in [`Node`].
    type_: Option<JsonType>,
    format: Option<String>,
    enum_: Vec<Value>,
    pattern: Option<Pattern>,
    max_length: Option<i64>,
    min_length: Option<i64>,
    maximum: Option<f64>,
    exclusive_maximum: bool,
    minimum: Option<f64>,
    exclusive_minimum: bool,
    multiple_of: Option<f64>,
    max_items: Option<i64>,
    min_items: Option<i64>,
    max_properties: Option<i64>,
    min_properties: Option<i64>,
    required: Vec<String>,
    all_of: Vec<Checks>,
    any_of: Vec<Checks>,
    one_of: Vec<Checks>,
    not: Option<Box<Checks>>,
    properties: BTreeMap<String, Checks>,
    items: Option<Box<Checks>>,
    additional: Option<Box<Checks>>,
}

/// A `pattern`, compiled once.
#[derive(Debug, Clone)]
struct Pattern {
    source: String,
    regex: regex::Regex,
}

/// Field paths as Kubernetes' `field.Path` prints them: `spec.items[1].name`,
/// `spec.labels[key]`; the root is the empty path (printed `<nil>`).
#[derive(Debug, Clone, Default)]
struct FieldPath(String);

impl FieldPath {
    fn new(root: &str) -> Self {
        Self(root.to_string())
    }

    fn child(&self, name: &str) -> Self {
        if self.0.is_empty() { Self(name.to_string()) } else { Self(format!("{}.{name}", self.0)) }
    }

    fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }

    /// The path as a field error's field: `<nil>` for the root, as Go prints a nil path.
    fn field(&self) -> String {
        if self.0.is_empty() { "<nil>".to_string() } else { self.0.clone() }
    }
}
