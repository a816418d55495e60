//! CustomResourceDefinition (apiextensions.k8s.io/v1): a new resource, served by the
//! apiserver once the definition is accepted (see [`crate::customresource`] for what it
//! turns into).
//!
//! Its strategy, after Kubernetes' apiextensions validation: the name is `<plural>.<group>`;
//! the group has a dot; names are DNS labels, the kind a CamelCase word; exactly one version
//! is stored; every version has a structural schema; scale paths point into `.spec`/`.status`;
//! printer columns have a known type and a JSONPath; only the `None` conversion (rkube calls
//! no webhooks); scope and group never change; `status.storedVersions` gains the storage
//! version on every write and only names versions still in the spec. Deleting a CRD first
//! marks it `Terminating` with the cleanup finalizer, and the apiserver deletes its objects
//! before the CRD goes.

use std::collections::HashSet;

use jiff::Timestamp;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceConversion, CustomResourceDefinition, CustomResourceDefinitionCondition,
    CustomResourceDefinitionStatus,
};
use serde_json::Value;

use crate::columns::{Column, NAME, at, column, name_cell};
use crate::customresource::CLEANUP_FINALIZER;
use crate::field::FieldError;
use crate::jsonpath::JsonPath;
use crate::registry::{ResourceDef, Subresource};
use crate::schema::StructuralSchema;
use crate::strategy::{Strategy, StrategyFor};
use crate::validation::{is_dns1035_label, is_dns1123_label, is_dns1123_subdomain};

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "apiextensions.k8s.io",
    version: "v1",
    kind: "CustomResourceDefinition",
    plural: "customresourcedefinitions",
    singular: "customresourcedefinition",
    namespaced: false,
    short_names: &["crd", "crds"],
    categories: &["api-extensions"],
    subresources: &[Subresource::Status],
    field_labels: &[],
    strategy: &StrategyFor::<CustomResourceDefinition>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

/// The condition types of a CRD's status.
pub mod condition {
    /// The names do not clash with another resource's.
    pub const NAMES_ACCEPTED: &str = "NamesAccepted";
    /// The resource is served.
    pub const ESTABLISHED: &str = "Established";
    /// The CRD is being deleted, its objects first.
    pub const TERMINATING: &str = "Terminating";
}

const PRINTER_COLUMN_TYPES: &[&str] = &["integer", "number", "string", "boolean", "date"];

impl Strategy for CustomResourceDefinition {
    fn prepare_for_create(&mut self) {
        self.status = None;
        record_storage_version(self);
    }

    fn prepare_for_update(&mut self, _old: &Self) {
        record_storage_version(self);
    }

    fn set_defaults(&mut self) {
        let names = &mut self.spec.names;
        if names.singular.as_deref().is_none_or(str::is_empty) {
            names.singular = Some(names.kind.to_lowercase());
        }
        if names.list_kind.as_deref().is_none_or(str::is_empty) {
            names.list_kind = Some(format!("{}List", names.kind));
        }
        if self.spec.conversion.is_none() {
            self.spec.conversion = Some(CustomResourceConversion { strategy: "None".into(), webhook: None });
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = &self.spec;
        let names = &spec.names;
        let expected = format!("{}.{}", names.plural, spec.group);
        if self.metadata.name.as_deref() != Some(expected.as_str()) {
            errs.push(FieldError::invalid(
                "metadata.name",
                self.metadata.name.as_deref().unwrap_or_default(),
                format!("must be spec.names.plural+\".\"+spec.group ({expected})"),
            ));
        }
        if spec.group.is_empty() {
            errs.push(FieldError::required("spec.group", ""));
        } else {
            errs.extend(
                is_dns1123_subdomain(&spec.group)
                    .into_iter()
                    .map(|m| FieldError::invalid("spec.group", &spec.group, m)),
            );
            if !spec.group.contains('.') {
                errs.push(FieldError::invalid("spec.group", &spec.group, "should be a domain with at least one dot"));
            }
        }
        if !matches!(spec.scope.as_str(), "Namespaced" | "Cluster") {
            errs.push(FieldError::not_supported("spec.scope", &spec.scope, &["Cluster", "Namespaced"]));
        }
        let label = |at: &str, value: &str, errs: &mut Vec<FieldError>| {
            if value.is_empty() {
                errs.push(FieldError::required(at, ""));
            } else {
                errs.extend(is_dns1035_label(value).into_iter().map(|m| FieldError::invalid(at, value, m)));
            }
        };
        label("spec.names.plural", &names.plural, &mut errs);
        label("spec.names.singular", names.singular.as_deref().unwrap_or_default(), &mut errs);
        for (i, short) in names.short_names.iter().flatten().enumerate() {
            let at = format!("spec.names.shortNames[{i}]");
            errs.extend(is_dns1123_label(short).into_iter().map(|m| FieldError::invalid(&at, short, m)));
        }
        for (i, category) in names.categories.iter().flatten().enumerate() {
            let at = format!("spec.names.categories[{i}]");
            errs.extend(is_dns1123_label(category).into_iter().map(|m| FieldError::invalid(&at, category, m)));
        }
        for (at, kind) in [
            ("spec.names.kind", names.kind.as_str()),
            ("spec.names.listKind", names.list_kind.as_deref().unwrap_or_default()),
        ] {
            if kind.is_empty() {
                errs.push(FieldError::required(at, ""));
            } else if !kind.chars().all(|c| c.is_ascii_alphanumeric())
                || !kind.starts_with(|c: char| c.is_ascii_alphabetic())
            {
                errs.push(FieldError::invalid(
                    at,
                    kind,
                    "may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?",
                ));
            }
        }
        if names.list_kind.as_deref() == Some(names.kind.as_str()) {
            errs.push(FieldError::invalid("spec.names.listKind", &names.kind, "kind and listKind may not be the same"));
        }
        if let Some(conversion) = &spec.conversion
            && conversion.strategy != "None"
        {
            errs.push(FieldError::not_supported("spec.conversion.strategy", &conversion.strategy, &["None"]));
        }
        errs.extend(validate_versions(self));
        if let Some(status) = &self.status {
            for (i, stored) in status.stored_versions.iter().flatten().enumerate() {
                if !spec.versions.iter().any(|v| &v.name == stored) {
                    errs.push(FieldError::invalid(
                        format!("status.storedVersions[{i}]"),
                        stored,
                        "must appear in spec.versions",
                    ));
                }
            }
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if self.spec.scope != old.spec.scope {
            errs.push(FieldError::invalid("spec.scope", &self.spec.scope, "field is immutable"));
        }
        if self.spec.group != old.spec.group {
            errs.push(FieldError::invalid("spec.group", &self.spec.group, "field is immutable"));
        }
        errs
    }

    fn prepare_for_delete(&mut self) {
        let finalizers = self.metadata.finalizers.get_or_insert_with(Vec::new);
        if !finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
            finalizers.push(CLEANUP_FINALIZER.to_string());
        }
        set_condition(
            self,
            condition::TERMINATING,
            "True",
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
        );
    }
}

/// Adds the storage version to `status.storedVersions` (as Kubernetes does on every write:
/// objects may now be stored in it).
fn record_storage_version(crd: &mut CustomResourceDefinition) {
    let Some(storage) = crd.spec.versions.iter().find(|v| v.storage).map(|v| v.name.clone()) else { return };
    let status = crd.status.get_or_insert_with(CustomResourceDefinitionStatus::default);
    let stored = status.stored_versions.get_or_insert_with(Vec::new);
    if !stored.contains(&storage) {
        stored.push(storage);
    }
}

/// The rules of `spec.versions`: one storage version, at least one served, unique names,
/// structural schemas, scale paths and printer columns.
fn validate_versions(crd: &CustomResourceDefinition) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let versions = &crd.spec.versions;
    if versions.is_empty() {
        errs.push(FieldError::required("spec.versions", "must have exactly one version marked as storage version"));
        return errs;
    }
    let storage = versions.iter().filter(|v| v.storage).count();
    if storage != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            format!("{storage} storage versions"),
            "must have exactly one version marked as storage version",
        ));
    }
    if !versions.iter().any(|v| v.served) {
        errs.push(FieldError::invalid(
            "spec.versions",
            "no served version",
            "must have at least one version marked as served",
        ));
    }
    let mut seen = HashSet::new();
    for (i, version) in versions.iter().enumerate() {
        let at = format!("spec.versions[{i}]");
        if !seen.insert(version.name.as_str()) {
            errs.push(FieldError::duplicate(format!("{at}.name"), &version.name));
        }
        errs.extend(
            is_dns1035_label(&version.name)
                .into_iter()
                .map(|m| FieldError::invalid(format!("{at}.name"), &version.name, m)),
        );
        let schema_at = format!("{at}.schema.openAPIV3Schema");
        let schema = match version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()) {
            None => {
                errs.push(FieldError::required(&schema_at, "schemas are required"));
                None
            }
            Some(props) => match StructuralSchema::new(props, &schema_at) {
                Ok(schema) => Some(schema),
                Err(schema_errs) => {
                    errs.extend(schema_errs);
                    None
                }
            },
        };
        if let Some(scale) = version.subresources.as_ref().and_then(|s| s.scale.as_ref()) {
            let checks = [
                ("specReplicasPath", Some(&scale.spec_replicas_path), &[".spec."][..]),
                ("statusReplicasPath", Some(&scale.status_replicas_path), &[".status."][..]),
                ("labelSelectorPath", scale.label_selector_path.as_ref(), &[".spec.", ".status."][..]),
            ];
            for (field, path, prefixes) in checks {
                let Some(path) = path else { continue };
                let field_at = format!("{at}.subresources.scale.{field}");
                let plain = JsonPath::parse(path).ok().and_then(|p| p.fields().map(|f| f.len()));
                if plain.is_none() || !prefixes.iter().any(|p| path.starts_with(p)) {
                    errs.push(FieldError::invalid(
                        &field_at,
                        path,
                        format!("should be a json path under {}", prefixes.join(" or ")),
                    ));
                } else if field == "specReplicasPath"
                    && let Some(schema) = &schema
                    && !schema.has_path(path)
                {
                    errs.push(FieldError::invalid(
                        &field_at,
                        path,
                        "should be a json path under .spec that the schema specifies",
                    ));
                }
            }
        }
        for (j, column) in version.additional_printer_columns.iter().flatten().enumerate() {
            let column_at = format!("{at}.additionalPrinterColumns[{j}]");
            if column.name.is_empty() {
                errs.push(FieldError::required(format!("{column_at}.name"), ""));
            }
            if !PRINTER_COLUMN_TYPES.contains(&column.type_.as_str()) {
                errs.push(FieldError::not_supported(format!("{column_at}.type"), &column.type_, PRINTER_COLUMN_TYPES));
            }
            if let Err(e) = JsonPath::parse(&column.json_path) {
                errs.push(FieldError::invalid(format!("{column_at}.jsonPath"), &column.json_path, e));
            }
            if column.priority.is_some_and(|p| p < 0) {
                errs.push(FieldError::invalid(
                    format!("{column_at}.priority"),
                    column.priority.unwrap_or(0),
                    "must be greater than or equal to 0",
                ));
            }
        }
    }
    errs
}

/// Sets one condition of a CRD's status (the transition time moves only when the status
/// does).
pub fn set_condition(crd: &mut CustomResourceDefinition, type_: &str, status: &str, reason: &str, message: &str) {
    let conditions =
        crd.status.get_or_insert_with(CustomResourceDefinitionStatus::default).conditions.get_or_insert_with(Vec::new);
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now());
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = Some(now);
            }
            existing.status = status.to_string();
            existing.reason = Some(reason.to_string());
            existing.message = Some(message.to_string());
        }
        None => conditions.push(CustomResourceDefinitionCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            last_transition_time: Some(now),
            observed_generation: None,
        }),
    }
}

const COLUMNS: &[Column] = &[NAME, column("Created At", "date", "The time the definition was created.", 0)];

fn row(obj: &Value, _now: Timestamp) -> Vec<Value> {
    let created = at(obj, &["metadata", "creationTimestamp"]).cloned().unwrap_or(Value::Null);
    vec![name_cell(obj), created]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::StrategyError;
    use serde_json::json;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}},
                    "subresources": {"scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}}}]}
        })
    }

    fn errors(body: Value) -> Vec<String> {
        match RESOURCE.strategy.create(body) {
            Err(StrategyError::Invalid(errs)) => errs.iter().map(ToString::to_string).collect(),
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_crd_is_defaulted_and_records_its_storage_version() {
        let prepared = RESOURCE.strategy.create(crd()).expect("valid");
        let object = prepared.object;
        assert_eq!(object["spec"]["names"]["singular"], "widget");
        assert_eq!(object["spec"]["names"]["listKind"], "WidgetList");
        assert_eq!(object["spec"]["conversion"]["strategy"], "None");
        assert_eq!(object["status"]["storedVersions"], json!(["v1"]));
    }

    #[test]
    fn the_name_must_be_plural_dot_group_and_the_group_needs_a_dot() {
        let mut body = crd();
        body["metadata"]["name"] = json!("widgets.other.com");
        body["spec"]["group"] = json!("example");
        let errs = errors(body);
        assert!(errs.iter().any(|e| e.starts_with("metadata.name: Invalid value")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("spec.group") && e.contains("at least one dot")), "{errs:?}");
    }

    #[test]
    fn exactly_one_storage_version_and_schemas_are_required() {
        let mut body = crd();
        body["spec"]["versions"] = json!([{"name": "v1", "served": true, "storage": false},
                                           {"name": "v2", "served": true, "storage": false, "schema": {"openAPIV3Schema": {"type": "object"}}}]);
        let errs = errors(body);
        assert!(errs.iter().any(|e| e.contains("exactly one version marked as storage")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.starts_with("spec.versions[0].schema.openAPIV3Schema: Required value")),
            "{errs:?}"
        );
    }

    #[test]
    fn scale_paths_and_printer_columns_are_checked() {
        let mut body = crd();
        body["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"] = json!(".status.size");
        body["spec"]["versions"][0]["additionalPrinterColumns"] =
            json!([{"name": "Size", "type": "float", "jsonPath": "spec.size"}]);
        let errs = errors(body);
        assert!(errs.iter().any(|e| e.starts_with("spec.versions[0].subresources.scale.specReplicasPath")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.starts_with("spec.versions[0].additionalPrinterColumns[0].type: Unsupported value")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.starts_with("spec.versions[0].additionalPrinterColumns[0].jsonPath")),
            "{errs:?}"
        );
    }

    #[test]
    fn webhook_conversion_is_refused_as_unsupported() {
        let mut body = crd();
        body["spec"]["conversion"] = json!({"strategy": "Webhook"});
        let errs = errors(body);
        assert!(
            errs.iter().any(|e| e.starts_with("spec.conversion.strategy: Unsupported value: \"Webhook\"")),
            "{errs:?}"
        );
    }

    #[test]
    fn scope_and_group_never_change() {
        let old = RESOURCE.strategy.create(crd()).expect("valid").object;
        let mut new = old.clone();
        new["spec"]["scope"] = json!("Cluster");
        match RESOURCE.strategy.update(new, &old) {
            Err(StrategyError::Invalid(errs)) => {
                assert!(errs.iter().any(|e| e.to_string().starts_with("spec.scope: Invalid value")))
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn deleting_marks_terminating_with_the_cleanup_finalizer() {
        let object = RESOURCE.strategy.create(crd()).expect("valid").object;
        let marked = RESOURCE.strategy.prepare_for_delete(object).expect("marked");
        assert_eq!(marked["metadata"]["finalizers"], json!([CLEANUP_FINALIZER]));
        let conditions = marked["status"]["conditions"].as_array().expect("conditions");
        assert!(conditions.iter().any(|c| c["type"] == "Terminating" && c["status"] == "True"));
    }
}
