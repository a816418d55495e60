//! Custom resources: what a CustomResourceDefinition turns into so that the apiserver serves
//! it like any built-in kind.
//!
//! [`define`] reads a CRD and builds one [`ResourceDef`] per served version: its names and
//! scope from `spec.names`/`spec.scope`, its subresources, its Table columns from
//! `additionalPrinterColumns`, and a [`CustomStrategy`] that does for the version's
//! structural schema what a built-in kind's strategy does for its type: prune unknown
//! fields, default, validate (OpenAPI value validations and CEL rules). The version marked
//! `storage: true` is stored as itself; every other served version converts to it with the
//! `None` strategy (only `apiVersion` changes), through the same [`Conversion`] path as
//! `events.k8s.io/v1` Events. Storage keys are `/registry/<group>/<plural>/...`
//! ([`ResourceDef::storage_name`]).
//!
//! Promises (tests below): versions come in Kubernetes' priority order (GA before beta
//! before alpha, higher first); a CRD whose schema is not structural defines nothing; a
//! custom object's unknown fields are pruned and reported, its defaults applied, its
//! schema and rules enforced; its status is reset on create when `status` is a subresource.

use std::cmp::Ordering;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value, json};

use crate::columns::{AGE, Column, NAME, human_age, name_cell};
use crate::field::{FieldError, unknown_fields};
use crate::jsonpath::JsonPath;
use crate::registry::{Conversion, ResourceDef, Subresource};
use crate::schema::StructuralSchema;
use crate::strategy::{Prepared, RestStrategy, StrategyError};
use crate::validation::{NameFormat, validate_object_meta};

/// The finalizer a CRD carries while its objects are being deleted.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// A column of `additionalPrinterColumns`: its Table definition and where its cells come from.
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    /// The Table column.
    pub column: Column,
    /// Where each object's cell is (`.spec.replicas`).
    pub path: JsonPath,
}

/// The paths of a CRD's `scale` subresource, as JSON pointers (`/spec/replicas`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    /// `specReplicasPath`: the desired replicas.
    pub spec_replicas: String,
    /// `statusReplicasPath`: the replicas seen.
    pub status_replicas: String,
    /// `labelSelectorPath`: where the selector of the replicas is, as a string (`app=web`).
    pub label_selector: Option<String>,
}

/// What a custom resource's [`ResourceDef`] carries beyond a built-in kind's.
#[derive(Debug)]
pub struct CustomResource {
    /// The name of the CRD defining it (`widgets.example.com`).
    pub crd: &'static str,
    /// The Table columns after `Name`, each with its path.
    pub printer_columns: Vec<PrinterColumn>,
    /// The `scale` subresource's paths, when served.
    pub scale: Option<ScalePaths>,
    /// The version's schema (server-side apply reads its list types).
    pub schema: Arc<StructuralSchema>,
    /// Whether the CRD is being deleted: its objects are listed and deleted, not created.
    pub terminating: bool,
}

impl CustomResource {
    /// One object's cells: its name, then each printer column (`null` where the path finds
    /// nothing, which kubectl prints as `<none>`).
    pub fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        let mut cells = vec![name_cell(obj)];
        for printer in &self.printer_columns {
            let found = printer.path.find(obj);
            let cell = match found.as_slice() {
                [] => Value::Null,
                [one] => cell(printer.column.kind, one, now),
                many => Value::String(many.iter().map(|v| text(v)).collect::<Vec<_>>().join(",")),
            };
            cells.push(cell);
        }
        cells
    }
}

/// Server-side apply reads a custom resource's list and map types from its schema.
impl crate::managedfields::TypeInfo for CustomResource {
    fn list_type(&self, path: &str) -> crate::managedfields::ListType {
        self.schema.list_type(path)
    }

    fn map_is_atomic(&self, path: &str) -> bool {
        self.schema.map_is_atomic(path)
    }

    fn key_default(&self, path: &str, key: &str) -> Option<Value> {
        self.schema.key_default(path, key)
    }
}

/// A value as a cell of a column of `kind`, as Kubernetes' CRD table convertor writes it: a
/// `date` becomes an age, numbers stay numbers.
fn cell(kind: &str, value: &Value, now: Timestamp) -> Value {
    match (kind, value) {
        ("date", Value::String(at)) => match at.parse::<Timestamp>() {
            Ok(at) => Value::String(human_age(now.duration_since(at).unsigned_abs())),
            Err(_) => Value::String("<invalid>".into()),
        },
        ("integer", Value::Number(n)) if n.is_i64() || n.is_u64() => value.clone(),
        ("number", Value::Number(_)) | ("boolean", Value::Bool(_)) => value.clone(),
        ("string", Value::String(_)) => value.clone(),
        (_, Value::Null) => Value::Null,
        _ => Value::String(text(value)),
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Kubernetes' note (apiextensions-apiserver, `hasBlockingErr`) when the CEL rules were not
/// run because of other errors.
const RULES_NOT_CHECKED: &str = "some validation rules were not checked because the object was invalid; correct the \
                                 existing errors to complete validation";

/// The REST strategy of one version of a custom resource: the rules of [`crate::strategy`]
/// on JSON, from the version's structural schema.
pub struct CustomStrategy {
    namespaced: bool,
    /// Whether `status` is a subresource (then create resets it).
    status: bool,
    schema: Arc<StructuralSchema>,
    /// The schema as the CRD writes it (for OpenAPI).
    raw_schema: Value,
    /// The OpenAPI definition name (`com.example.v1.Widget`).
    definition: String,
}

impl CustomStrategy {
    /// Metadata checked and normalized (unknown metadata fields dropped and reported), the
    /// rest pruned, defaulted and validated; the CEL rules with `old` on updates.
    fn prepare(&self, body: Value, old: Option<&Value>, create: bool) -> Result<Prepared, StrategyError> {
        let Value::Object(mut fields) = body else {
            return Err(StrategyError::Decode("the object must be a JSON object".into()));
        };
        let given_meta = fields.remove("metadata").unwrap_or_else(|| json!({}));
        let meta: ObjectMeta = serde_json::from_value(given_meta.clone())
            .map_err(|e| StrategyError::Decode(format!("invalid metadata: {e}")))?;
        let meta_value = serde_json::to_value(&meta).map_err(|e| StrategyError::Decode(e.to_string()))?;
        let mut unknown: Vec<String> =
            unknown_fields(&given_meta, &meta_value).into_iter().map(|f| format!(".metadata{f}")).collect();
        fields.insert("metadata".into(), meta_value);
        if create && self.status {
            fields.remove("status");
        }
        let mut object = Value::Object(fields);
        unknown.extend(self.schema.prune(&mut object));
        self.schema.apply_defaults(&mut object);
        let mut errors = validate_object_meta(&meta, self.namespaced, NameFormat::Dns1123Subdomain);
        errors.extend(self.schema.validate(&object));
        // As Kubernetes: the CEL rules run unless an error means the object lacks the shape
        // they were written for; then, if there are rules, a note says they were not checked.
        if !errors.iter().any(FieldError::blocks_rules) {
            errors.extend(self.schema.validate_rules(&object, old));
        } else if self.schema.has_rules() {
            errors.push(FieldError::invalid_json("<nil>", &Value::from("null"), RULES_NOT_CHECKED));
        }
        if !errors.is_empty() {
            return Err(StrategyError::Invalid(errors));
        }
        Ok(Prepared { object, unknown_fields: unknown })
    }
}

impl RestStrategy for CustomStrategy {
    fn create(&self, body: Value) -> Result<Prepared, StrategyError> {
        self.prepare(body, None, true)
    }

    fn update(&self, body: Value, old: &Value) -> Result<Prepared, StrategyError> {
        self.prepare(body, Some(old), false)
    }

    fn normalize(&self, body: Value) -> Result<Value, StrategyError> {
        let mut object = body;
        self.schema.apply_defaults(&mut object);
        Ok(object)
    }

    fn deletion_grace_period(&self, _object: &Value, _requested: Option<i64>) -> i64 {
        0
    }

    fn prepare_for_delete(&self, object: Value) -> Result<Value, StrategyError> {
        Ok(object)
    }

    fn awaits_finalization(&self, _object: &Value) -> bool {
        false
    }

    fn generation_changed(&self, new: &Value, old: &Value) -> bool {
        // Everything but metadata and status is the spec of a custom resource.
        fn rest(v: &Value) -> Option<Vec<(&String, &Value)>> {
            v.as_object()
                .map(|fields| fields.iter().filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status")).collect())
        }
        rest(new) != rest(old)
    }

    fn json_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let metadata = Value::from(generator.subschema_for::<ObjectMeta>());
        let mut schema = self.raw_schema.clone();
        if let Some(fields) = schema.as_object_mut() {
            let properties = fields.entry("properties").or_insert_with(|| json!({}));
            if let Some(properties) = properties.as_object_mut() {
                properties.insert(
                    "apiVersion".into(),
                    json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}),
                );
                properties.insert(
                    "kind".into(),
                    json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}),
                );
                properties.insert("metadata".into(), metadata);
            }
        }
        generator.definitions_mut().insert(self.definition.clone(), schema);
        let pointer = generator.settings().definitions_path.trim_end_matches('/').to_string();
        let reference = json!({"$ref": format!("#{pointer}/{}", self.definition)});
        schemars::Schema::try_from(reference).unwrap_or_default()
    }
}

/// Kubernetes' version priority (`CompareKubeAwareVersionStrings`): GA versions first, then
/// beta, then alpha, each by major then minor number, highest first; versions of another
/// shape last, alphabetically.
pub fn version_priority(a: &str, b: &str) -> Ordering {
    fn parse(v: &str) -> Option<(u8, u64, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let major: u64 = rest[..digits].parse().ok()?;
        match &rest[digits..] {
            "" => Some((3, major, 0)),
            tail => {
                let (class, minor) =
                    tail.strip_prefix("beta").map(|m| (2, m)).or_else(|| tail.strip_prefix("alpha").map(|m| (1, m)))?;
                Some((class, major, minor.parse().ok()?))
            }
        }
    }
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn leak_all(list: Option<&Vec<String>>) -> &'static [&'static str] {
    Box::leak(list.into_iter().flatten().map(|s| leak(s)).collect::<Vec<_>>().into_boxed_slice())
}

/// A plain JSONPath (`.spec.replicas`) as a JSON pointer (`/spec/replicas`).
fn pointer(path: &str) -> Result<String, String> {
    let parsed = JsonPath::parse(path)?;
    let fields = parsed.fields().ok_or_else(|| format!("{path:?} must be a path of field names"))?;
    Ok(fields.iter().map(|f| format!("/{}", f.replace('~', "~0").replace('/', "~1"))).collect())
}

/// The columns of a version: `Name`, then its printer columns, or `Age` when it has none
/// (Kubernetes' default for CRDs).
fn printer_columns(version: &CustomResourceDefinitionVersion) -> Result<Vec<PrinterColumn>, String> {
    let given = version.additional_printer_columns.clone().unwrap_or_default();
    if given.is_empty() {
        return Ok(vec![PrinterColumn { column: AGE, path: JsonPath::parse(".metadata.creationTimestamp")? }]);
    }
    given
        .iter()
        .map(|c| {
            Ok(PrinterColumn {
                column: Column {
                    name: leak(&c.name),
                    kind: leak(&c.type_),
                    format: leak(c.format.as_deref().unwrap_or_default()),
                    description: leak(c.description.as_deref().unwrap_or_default()),
                    priority: c.priority.unwrap_or(0),
                },
                path: JsonPath::parse(&c.json_path)?,
            })
        })
        .collect()
}

/// The served versions of `crd`, as registry entries in priority order (the storage version's
/// stored as itself, the others converting to it). An error when the CRD cannot be served
/// (no storage version, a schema that is not structural); the CRD's own validation refuses
/// such a CRD before it is stored, so this only guards against stored data from elsewhere.
pub fn define(crd: &CustomResourceDefinition) -> Result<Vec<&'static ResourceDef>, String> {
    let spec = &crd.spec;
    let name = leak(crd.metadata.name.as_deref().unwrap_or_default());
    let terminating = crd.metadata.deletion_timestamp.is_some();
    let mut versions: Vec<&CustomResourceDefinitionVersion> = spec.versions.iter().collect();
    versions.sort_by(|a, b| version_priority(&a.name, &b.name));
    let storage_version =
        *versions.iter().find(|v| v.storage).ok_or_else(|| format!("{name}: no version has storage: true"))?;
    let group = leak(&spec.group);
    let build = |version: &CustomResourceDefinitionVersion, conversion: Option<&'static Conversion>| {
        version_def(crd, version, (name, group, terminating), conversion)
    };
    let storage = build(storage_version, None)?;
    let mut served = Vec::new();
    for version in versions.into_iter().filter(|v| v.served) {
        if version.name == storage_version.name {
            served.push(storage);
            continue;
        }
        let view_api_version = format!("{group}/{}", version.name);
        let storage_api_version = storage.api_version();
        let to_storage = move |mut object: Value| {
            set_api_version(&mut object, &storage_api_version);
            object
        };
        let from_storage = move |mut object: Value| {
            set_api_version(&mut object, &view_api_version);
            object
        };
        let conversion: &'static Conversion = Box::leak(Box::new(Conversion {
            storage,
            to_storage: Box::leak(Box::new(to_storage)),
            from_storage: Box::leak(Box::new(from_storage)),
            field_label: |label| match label {
                "metadata.name" => Some("metadata.name"),
                "metadata.namespace" => Some("metadata.namespace"),
                _ => None,
            },
        }));
        served.push(build(version, Some(conversion))?);
    }
    Ok(served)
}

fn set_api_version(object: &mut Value, api_version: &str) {
    if let Some(fields) = object.as_object_mut() {
        fields.insert("apiVersion".into(), Value::String(api_version.to_string()));
    }
}

/// The subresources a custom resource may have: `status`, `scale`, both or none.
fn subresources_of(status: bool, scale: bool) -> &'static [Subresource] {
    match (status, scale) {
        (true, true) => &[Subresource::Status, Subresource::Scale],
        (true, false) => &[Subresource::Status],
        (false, true) => &[Subresource::Scale],
        (false, false) => &[],
    }
}

/// The registry entry of one version.
fn version_def(
    crd: &CustomResourceDefinition,
    version: &CustomResourceDefinitionVersion,
    (crd_name, group, terminating): (&'static str, &'static str, bool),
    conversion: Option<&'static Conversion>,
) -> Result<&'static ResourceDef, String> {
    let spec = &crd.spec;
    let props = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .ok_or_else(|| format!("{crd_name}: version {} has no schema", version.name))?;
    let at = format!("spec.versions[{}].schema.openAPIV3Schema", version.name);
    let schema = StructuralSchema::new(props, &at)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?;
    let schema = Arc::new(schema);
    let subresources = version.subresources.as_ref();
    let status = subresources.is_some_and(|s| s.status.is_some());
    let scale = match subresources.and_then(|s| s.scale.as_ref()) {
        Some(scale) => Some(ScalePaths {
            spec_replicas: pointer(&scale.spec_replicas_path)?,
            status_replicas: pointer(&scale.status_replicas_path)?,
            label_selector: scale.label_selector_path.as_deref().map(pointer).transpose()?,
        }),
        None => None,
    };
    let served_subresources = subresources_of(status, scale.is_some());
    let names = &spec.names;
    let namespaced = spec.scope == "Namespaced";
    let reversed_group: Vec<&str> = spec.group.split('.').rev().collect();
    let definition = format!("{}.{}.{}", reversed_group.join("."), version.name, names.kind);
    let raw_schema = serde_json::to_value(props).map_err(|e| e.to_string())?;
    let strategy: &'static CustomStrategy =
        Box::leak(Box::new(CustomStrategy { namespaced, status, schema: Arc::clone(&schema), raw_schema, definition }));
    let printer = printer_columns(version)?;
    let columns: Vec<Column> = std::iter::once(NAME).chain(printer.iter().map(|p| p.column)).collect();
    let custom: &'static CustomResource =
        Box::leak(Box::new(CustomResource { crd: crd_name, printer_columns: printer, scale, schema, terminating }));
    let singular = names.singular.clone().unwrap_or_else(|| names.kind.to_lowercase());
    Ok(Box::leak(Box::new(ResourceDef {
        group,
        version: leak(&version.name),
        kind: leak(&names.kind),
        plural: leak(&names.plural),
        singular: leak(&singular),
        namespaced,
        short_names: leak_all(names.short_names.as_ref()),
        categories: leak_all(names.categories.as_ref()),
        subresources: served_subresources,
        field_labels: &[],
        strategy,
        conversion,
        custom: Some(custom),
        columns: Box::leak(columns.into_boxed_slice()),
        // Unused: [`CustomResource::cells`] makes the rows of custom resources.
        row: crate::columns::default_row,
    })))
}

/// What a client knows of a resource from a server's discovery document and nothing else
/// (rkubectl learning the server's custom resources): names, scope and subresources. Its
/// strategy passes objects through: the server holds the schema and validates.
#[allow(clippy::too_many_arguments)]
pub fn discovered(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    singular: &str,
    namespaced: bool,
    short_names: &[String],
    subresources: &[String],
) -> &'static ResourceDef {
    let served_subresources =
        subresources_of(subresources.iter().any(|s| s == "status"), subresources.iter().any(|s| s == "scale"));
    let singular = if singular.is_empty() { kind.to_lowercase() } else { singular.to_string() };
    Box::leak(Box::new(ResourceDef {
        group: leak(group),
        version: leak(version),
        kind: leak(kind),
        plural: leak(plural),
        singular: leak(&singular),
        namespaced,
        short_names: leak_all(Some(&short_names.to_vec())),
        categories: &[],
        subresources: served_subresources,
        field_labels: &[],
        strategy: &PassThrough,
        conversion: None,
        custom: None,
        columns: crate::columns::DEFAULT_COLUMNS,
        row: crate::columns::default_row,
    }))
}

/// The strategy of a [`discovered`] resource: the object as given.
struct PassThrough;

impl RestStrategy for PassThrough {
    fn create(&self, body: Value) -> Result<Prepared, StrategyError> {
        Ok(Prepared { object: body, unknown_fields: Vec::new() })
    }

    fn update(&self, body: Value, _old: &Value) -> Result<Prepared, StrategyError> {
        Ok(Prepared { object: body, unknown_fields: Vec::new() })
    }

    fn normalize(&self, body: Value) -> Result<Value, StrategyError> {
        Ok(body)
    }

    fn deletion_grace_period(&self, _object: &Value, _requested: Option<i64>) -> i64 {
        0
    }

    fn prepare_for_delete(&self, object: Value) -> Result<Value, StrategyError> {
        Ok(object)
    }

    fn awaits_finalization(&self, _object: &Value) -> bool {
        false
    }

    fn json_schema(&self, _generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::Schema::default()
    }
}

/// The empty status a CRD starts with, its `storedVersions` holding the storage version.
pub fn initial_status(stored: &str) -> Map<String, Value> {
    let mut status = Map::new();
    status.insert("storedVersions".into(), json!([stored]));
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(versions: Value) -> CustomResourceDefinition {
        serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
                "versions": versions,
            }
        }))
        .expect("a CRD")
    }

    fn schema() -> Value {
        json!({"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "size": {"type": "integer", "minimum": 1, "default": 1},
                "color": {"type": "string", "enum": ["red", "blue"]}
            }},
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
        }}})
    }

    #[test]
    fn versions_come_in_kubernetes_priority_order() {
        let mut versions = vec!["v1alpha1", "foo", "v2", "v1beta2", "v1", "v10beta1", "v1beta1", "bar"];
        versions.sort_by(|a, b| version_priority(a, b));
        assert_eq!(versions, ["v2", "v1", "v10beta1", "v1beta2", "v1beta1", "v1alpha1", "bar", "foo"]);
    }

    #[test]
    fn each_served_version_is_a_resource_and_the_others_convert_to_the_storage_one() {
        let defs = define(&crd(json!([
            {"name": "v1beta1", "served": true, "storage": false, "schema": schema()},
            {"name": "v1", "served": true, "storage": true, "schema": schema(),
             "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}}},
            {"name": "v1alpha1", "served": false, "storage": false, "schema": schema()},
        ])))
        .expect("defined");
        assert_eq!(defs.iter().map(|d| d.version).collect::<Vec<_>>(), ["v1", "v1beta1"]);
        let (v1, beta) = (defs[0], defs[1]);
        assert_eq!(v1.storage_name(), "example.com/widgets");
        assert!(v1.conversion.is_none());
        assert_eq!(v1.subresources, &[Subresource::Status, Subresource::Scale]);
        let conversion = beta.conversion.expect("converts");
        assert_eq!(conversion.storage.version, "v1");
        let stored = (conversion.to_storage)(json!({"apiVersion": "example.com/v1beta1", "kind": "Widget"}));
        assert_eq!(stored["apiVersion"], "example.com/v1");
        assert_eq!((conversion.from_storage)(stored)["apiVersion"], "example.com/v1beta1");
        assert_eq!(v1.custom.and_then(|c| c.scale.clone()).map(|s| s.spec_replicas), Some("/spec/size".into()));
    }

    #[test]
    fn a_custom_object_is_pruned_defaulted_and_validated() {
        let defs = define(&crd(json!([{"name": "v1", "served": true, "storage": true, "schema": schema(),
                                "subresources": {"status": {}}}])))
        .expect("defined");
        let strategy = defs[0].strategy;
        let body = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default"},
            "spec": {"color": "red", "extra": 1}, "status": {"ready": true}, "junk": true});
        let prepared = strategy.create(body).expect("valid");
        assert_eq!(prepared.object["spec"], json!({"color": "red", "size": 1}));
        assert!(prepared.object.get("status").is_none(), "create resets the status subresource");
        assert!(prepared.object.get("junk").is_none());
        assert_eq!(prepared.unknown_fields.len(), 2, "{:?}", prepared.unknown_fields);
        let bad = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default"}, "spec": {"color": "pink", "size": 0}});
        match strategy.create(bad) {
            Err(StrategyError::Invalid(errors)) => assert_eq!(errors.len(), 2, "{errors:?}"),
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn cel_rules_run_unless_an_error_breaks_the_objects_shape() {
        let mut with_rule = schema();
        with_rule["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"] =
            json!([{"rule": "self.size >= 2", "message": "size at least 2"}]);
        let defs = define(&crd(json!([{"name": "v1", "served": true, "storage": true, "schema": with_rule}])))
            .expect("defined");
        let errors = |spec: Value| {
            let body = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "w", "namespace": "default"}, "spec": spec});
            match defs[0].strategy.create(body) {
                Err(StrategyError::Invalid(errors)) => {
                    errors.iter().map(|e| format!("{}: {}", e.field, e.message())).collect::<Vec<_>>()
                }
                other => panic!("expected field errors, got {other:?}"),
            }
        };
        // A value out of range leaves the shape whole: the rule runs too.
        assert_eq!(
            errors(json!({"size": 0, "color": "red"})),
            [
                "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1",
                "spec: Invalid value: size at least 2"
            ]
        );
        assert_eq!(
            errors(json!({"size": 3, "color": "pink"})),
            [
                "spec.color: Unsupported value: \"pink\": supported values: \"red\", \"blue\"",
                "<nil>: Invalid value: \"null\": some validation rules were not checked because the object was \
                 invalid; correct the existing errors to complete validation"
            ]
        );
        let wrong_type = defs[0].strategy.create(json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default"}, "spec": {"size": "big"}}));
        match wrong_type {
            Err(StrategyError::Invalid(errors)) => {
                assert_eq!(
                    errors.iter().map(FieldError::reason).collect::<Vec<_>>(),
                    ["FieldValueTypeInvalid", "FieldValueInvalid"]
                );
            }
            other => panic!("expected field errors, got {other:?}"),
        }
        // Without rules there is nothing to note.
        let defs = define(&crd(json!([{"name": "v1", "served": true, "storage": true, "schema": schema()}])))
            .expect("defined");
        let body = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default"}, "spec": {"size": "big"}});
        match defs[0].strategy.create(body) {
            Err(StrategyError::Invalid(errors)) => assert_eq!(errors.len(), 1, "{errors:?}"),
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn printer_columns_read_their_paths_and_dates_become_ages() {
        let defs = define(&crd(json!([{"name": "v1", "served": true, "storage": true, "schema": schema(),
        "additionalPrinterColumns": [
            {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
            {"name": "Color", "type": "string", "jsonPath": ".spec.color", "priority": 1},
            {"name": "Made", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
        ]}])))
        .expect("defined");
        let def = defs[0];
        assert_eq!(def.columns.iter().map(|c| c.name).collect::<Vec<_>>(), ["Name", "Size", "Color", "Made"]);
        assert_eq!(def.columns[2].priority, 1);
        let now: Timestamp = "2026-01-01T00:10:00Z".parse().expect("time");
        let obj = json!({"metadata": {"name": "w", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"size": 3}});
        assert_eq!(def.cells(&obj, now), vec![json!("w"), json!(3), Value::Null, json!("10m")]);
    }

    #[test]
    fn a_version_without_printer_columns_shows_name_and_age() {
        let defs = define(&crd(json!([{"name": "v1", "served": true, "storage": true, "schema": schema()}])))
            .expect("defined");
        assert_eq!(defs[0].columns.iter().map(|c| c.name).collect::<Vec<_>>(), ["Name", "Age"]);
    }

    #[test]
    fn a_crd_without_a_storage_version_defines_nothing() {
        let result = define(&crd(json!([{"name": "v1", "served": true, "storage": false, "schema": schema()}])));
        assert!(result.is_err());
    }
}
