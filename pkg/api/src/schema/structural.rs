//! Building a [`Node`] tree from a CRD's `JSONSchemaProps`, checking on the way everything
//! Kubernetes checks of a CRD schema: the generic OpenAPI restrictions of CRD validation
//! (`pkg/apis/apiextensions/validation`), the structural-schema invariants
//! (`pkg/apiserver/schema/validation.go`, `complete.go`), list and map types, CEL rules, and
//! finally the defaults (`pkg/apiserver/schema/defaulting/validation.go`).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;

use super::{Additional, Checks, FieldPath, JsonType, ListType, Node, Pattern, cel, pruning, validation};
use crate::field::FieldError;

/// Where a structural node sits: Kubernetes words the missing-`type` error by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

/// What the position of a node forbids: inherited downwards.
#[derive(Debug, Clone, Default)]
struct Context {
    /// Why defaults are forbidden here (`in top-level metadata`), if they are.
    no_defaults: Option<String>,
    /// Inside `metadata`, `apiVersion` or `kind` of a resource (the root or an embedded one).
    inside_meta: bool,
    /// The list whose items cannot be matched with their old values, if `oldSelf` is
    /// forbidden here.
    no_old_self: Option<String>,
}

/// Builds the schema, or returns every error found.
pub(super) fn build(props: &JSONSchemaProps, path: &str) -> Result<Node, Vec<FieldError>> {
    let at = FieldPath::new(path);
    let mut b = Builder { errs: Vec::new() };
    if props.nullable == Some(true) {
        b.errs.push(FieldError::forbidden(at.child("nullable").field(), "nullable cannot be true at the root"));
    }
    let root = b.node(props, &at, Level::Root, &Context::default());
    if b.errs.is_empty() {
        b.completeness_of(props, &root, &at);
    }
    if b.errs.is_empty() {
        b.defaults(&root, &at, true);
    }
    if b.errs.is_empty() { Ok(root) } else { Err(b.errs) }
}

struct Builder {
    errs: Vec<FieldError>,
}

/// The names Kubernetes accepts in `type`, in the order its error lists them.
const TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

impl Builder {
    fn forbid(&mut self, at: &FieldPath, name: &str, detail: &str) {
        self.errs.push(FieldError::forbidden(at.child(name).field(), detail));
    }

    fn require(&mut self, at: &FieldPath, name: &str, detail: &str) {
        self.errs.push(FieldError::required(at.child(name).field(), detail));
    }

    fn invalid(&mut self, at: &FieldPath, value: &Value, detail: &str) {
        self.errs.push(FieldError::invalid_json(at.field(), value, detail));
    }

    /// One structural node, and everything below it.
    fn node(&mut self, p: &JSONSchemaProps, at: &FieldPath, level: Level, ctx: &Context) -> Node {
        self.generic(p, at, ctx);
        let type_name = p.type_.as_deref().unwrap_or("");
        let type_ = JsonType::parse(type_name);
        let int_or_string = p.x_kubernetes_int_or_string == Some(true);
        let embedded = p.x_kubernetes_embedded_resource == Some(true);
        let preserve = p.x_kubernetes_preserve_unknown_fields == Some(true);
        let check_meta = level == Level::Root || embedded;

        // Structural invariants.
        if type_name.is_empty() && !int_or_string && !preserve && !embedded {
            let detail = match level {
                Level::Root => "must not be empty at the root",
                Level::Item => "must not be empty for specified array items",
                Level::Field => "must not be empty for specified object fields",
            };
            self.require(at, "type", detail);
        }
        if level == Level::Root && !type_name.is_empty() && type_name != "object" {
            self.invalid(&at.child("type"), &Value::from(type_name), "must be object at the root");
        }
        if type_name == "array" && p.items.is_none() {
            self.require(at, "items", "must be specified");
        }
        if embedded && type_name != "object" {
            if type_name.is_empty() {
                self.require(at, "type", "must be object if x-kubernetes-embedded-resource is true");
            } else {
                let detail = "must be object if x-kubernetes-embedded-resource is true";
                self.invalid(&at.child("type"), &Value::from(type_name), detail);
            }
        }
        if embedded && !preserve && p.properties.as_ref().is_none_or(BTreeMap::is_empty) {
            let detail = "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields";
            self.require(at, "properties", detail);
        }
        if int_or_string && preserve {
            let detail = "must be false if x-kubernetes-int-or-string is true";
            self.invalid(&at.child("x-kubernetes-preserve-unknown-fields"), &Value::Bool(true), detail);
        }
        if int_or_string && embedded {
            let detail = "must be false if x-kubernetes-int-or-string is true";
            self.invalid(&at.child("x-kubernetes-embedded-resource"), &Value::Bool(true), detail);
        }
        if p.x_kubernetes_preserve_unknown_fields == Some(false) {
            self.invalid(
                &at.child("x-kubernetes-preserve-unknown-fields"),
                &Value::Bool(false),
                "must be true or undefined",
            );
        }
        if check_meta {
            for name in ["kind", "apiVersion"] {
                if let Some(s) = p.properties.as_ref().and_then(|m| m.get(name))
                    && s.type_.as_deref() != Some("string")
                {
                    let value = Value::from(s.type_.clone().unwrap_or_default());
                    self.invalid(&at.child("properties").key(name).child("type"), &value, "must be string");
                }
            }
        }
        if let Some(meta) = p.properties.as_ref().and_then(|m| m.get("metadata")) {
            self.metadata(meta, &at.child("properties").key("metadata"), check_meta, level == Level::Root);
        }

        // additionalProperties
        let has_properties = p.properties.as_ref().is_some_and(|m| !m.is_empty());
        let additional = match &p.additional_properties {
            None => None,
            Some(ap) => {
                let ap_at = at.child("additionalProperties");
                if has_properties && !matches!(ap, JSONSchemaPropsOrBool::Bool(true)) {
                    self.forbid(at, "additionalProperties", "additionalProperties and properties are mutual exclusive");
                }
                if level == Level::Root {
                    self.forbid(at, "additionalProperties", "must not be used at the root");
                }
                if embedded {
                    self.forbid(
                        at,
                        "additionalProperties",
                        "must not be used if x-kubernetes-embedded-resource is set",
                    );
                }
                Some(match ap {
                    JSONSchemaPropsOrBool::Bool(b) => Additional::Allows(*b),
                    JSONSchemaPropsOrBool::Schema(s) => {
                        let mut sub = ctx.clone();
                        if ctx.inside_meta {
                            sub.no_defaults =
                                Some("inside additionalProperties applying to object metadata".to_string());
                        }
                        Additional::Schema(Box::new(self.node(s, &ap_at, Level::Field, &sub)))
                    }
                })
            }
        };

        // properties
        let mut properties = BTreeMap::new();
        for (name, s) in p.properties.iter().flatten() {
            let mut sub = ctx.clone();
            if check_meta && matches!(name.as_str(), "metadata" | "apiVersion" | "kind") {
                sub.inside_meta = true;
                if level == Level::Root {
                    sub.no_defaults = Some(format!("in top-level {name}"));
                }
            }
            let child = self.node(s, &at.child("properties").key(name), Level::Field, &sub);
            properties.insert(name.clone(), child);
        }

        // items
        let list_type = self.list_type(p, at);
        let items = match &p.items {
            None => None,
            Some(JSONSchemaPropsOrArray::Schemas(_)) => {
                self.forbid(at, "items", "items must be a schema object and not an array");
                None
            }
            Some(JSONSchemaPropsOrArray::Schema(s)) => {
                let mut sub = ctx.clone();
                if !matches!(list_type, Some(ListType::Map(_))) && sub.no_old_self.is_none() {
                    sub.no_old_self = Some(at.field());
                }
                Some(Box::new(self.node(s, &at.child("items"), Level::Item, &sub)))
            }
        };

        let map_atomic = self.map_type(p, at);
        let checks = self.checks(p, at, false, is_int_or_string_any_of(p), is_int_or_string_all_of(p));
        let rules = self.rules(p, at, ctx);

        Node {
            type_,
            nullable: p.nullable == Some(true),
            int_or_string,
            preserve_unknown_fields: preserve,
            embedded_resource: embedded,
            default: p.default.as_ref().map(|d| d.0.clone()),
            list_type,
            map_atomic,
            properties,
            additional,
            items,
            checks,
            rules,
        }
    }

    /// What CRD validation forbids anywhere in a schema, nested or not.
    fn generic(&mut self, p: &JSONSchemaProps, at: &FieldPath, ctx: &Context) {
        if let Some(t) = p.type_.as_deref()
            && !t.is_empty()
        {
            if !TYPES.contains(&t) {
                let value = Value::from(t);
                self.errs.push(FieldError::not_supported_json(
                    at.child("type").field(),
                    &value,
                    TYPES.iter().map(|s| (*s).to_string()).collect(),
                ));
            }
            if t == "null" {
                self.forbid(at, "type", "type cannot be set to null, use nullable as an alternative");
            }
        }
        if p.default.is_some()
            && let Some(reason) = &ctx.no_defaults
        {
            self.forbid(at, "default", &format!("must not be set {reason}"));
        }
        if p.id.is_some() {
            self.forbid(at, "id", "id is not supported");
        }
        if p.additional_items.is_some() {
            self.forbid(at, "additionalItems", "additionalItems is not supported");
        }
        if p.pattern_properties.as_ref().is_some_and(|m| !m.is_empty()) {
            self.forbid(at, "patternProperties", "patternProperties is not supported");
        }
        if p.definitions.as_ref().is_some_and(|m| !m.is_empty()) {
            self.forbid(at, "definitions", "definitions is not supported");
        }
        if p.dependencies.is_some() {
            self.forbid(at, "dependencies", "dependencies is not supported");
        }
        if p.ref_path.is_some() {
            self.forbid(at, "$ref", "$ref is not supported");
        }
        if p.unique_items == Some(true) {
            let detail = "uniqueItems cannot be set to true since the runtime complexity becomes quadratic";
            self.forbid(at, "uniqueItems", detail);
        }
        if ctx.inside_meta && p.x_kubernetes_embedded_resource == Some(true) {
            self.forbid(at, "x-kubernetes-embedded-resource", "must not be used inside of resource meta");
        }
    }

    /// `metadata` of a resource: an object, and at the root nothing but `name` and
    /// `generateName` may be restricted.
    fn metadata(&mut self, p: &JSONSchemaProps, at: &FieldPath, check_meta: bool, root: bool) {
        if check_meta && p.type_.as_deref() != Some("object") {
            self.invalid(&at.child("type"), &Value::from(p.type_.clone().unwrap_or_default()), "must be object");
        }
        if root {
            let mut rest = p.clone();
            rest.type_ = None;
            rest.default = None;
            if let Some(props) = &rest.properties
                && props.keys().all(|k| k == "name" || k == "generateName")
            {
                rest.properties = None;
            }
            if rest != JSONSchemaProps::default() {
                let detail =
                    "must not specify anything other than name and generateName, but metadata is implicitly specified";
                self.errs.push(FieldError::forbidden(at.field(), detail));
            }
        }
    }

    /// `x-kubernetes-list-type` and `x-kubernetes-list-map-keys`.
    fn list_type(&mut self, p: &JSONSchemaProps, at: &FieldPath) -> Option<ListType> {
        let keys = p.x_kubernetes_list_map_keys.clone().unwrap_or_default();
        let Some(list_type) = p.x_kubernetes_list_type.as_deref() else {
            if !keys.is_empty() {
                self.require(at, "x-kubernetes-list-type", "must be map if x-kubernetes-list-map-keys is non-empty");
            }
            return None;
        };
        let type_name = p.type_.as_deref().unwrap_or("");
        if type_name != "array" {
            let detail = "must be array if x-kubernetes-list-type is specified";
            if type_name.is_empty() {
                self.require(at, "type", detail);
            } else {
                self.invalid(&at.child("type"), &Value::from(type_name), detail);
            }
        }
        if !matches!(list_type, "atomic" | "set" | "map") {
            let value = Value::from(list_type);
            let supported = ["atomic", "set", "map"].iter().map(|s| (*s).to_string()).collect();
            self.errs.push(FieldError::not_supported_json(
                at.child("x-kubernetes-list-type").field(),
                &value,
                supported,
            ));
        }
        if !keys.is_empty() && list_type != "map" {
            let detail = "must be map if x-kubernetes-list-map-keys is non-empty";
            self.invalid(&at.child("x-kubernetes-list-type"), &Value::from(list_type), detail);
        }
        let item = match &p.items {
            Some(JSONSchemaPropsOrArray::Schema(s)) => Some(s.as_ref()),
            _ => None,
        };
        let items_at = at.child("items");
        if let Some(item) = item
            && matches!(list_type, "set" | "map")
            && item.nullable == Some(true)
        {
            self.forbid(
                &items_at,
                "nullable",
                &format!("cannot be nullable when x-kubernetes-list-type is {list_type}"),
            );
        }
        match list_type {
            "set" => {
                if let Some(item) = item {
                    let detail = "must be atomic as item of a list with x-kubernetes-list-type=set";
                    match item.type_.as_deref() {
                        Some("array") if item.x_kubernetes_list_type.as_deref().is_some_and(|t| t != "atomic") => {
                            let value = Value::from(item.x_kubernetes_list_type.clone());
                            self.invalid(&items_at.child("x-kubernetes-list-type"), &value, detail);
                        }
                        Some("object") if item.x_kubernetes_map_type.as_deref() != Some("atomic") => {
                            let value = Value::from(item.x_kubernetes_list_type.clone());
                            self.invalid(&items_at.child("x-kubernetes-map-type"), &value, detail);
                        }
                        _ => {}
                    }
                }
                Some(ListType::Set)
            }
            "map" => {
                self.map_keys(p, item, at, &keys);
                Some(ListType::Map(keys))
            }
            "atomic" => Some(ListType::Atomic),
            _ => None,
        }
    }

    /// The keys of a `map` list: properties of the items, scalar, unique, required or
    /// defaulted, not nullable.
    fn map_keys(&mut self, p: &JSONSchemaProps, item: Option<&JSONSchemaProps>, at: &FieldPath, keys: &[String]) {
        let items_at = at.child("items");
        let keys_value = Value::from(keys.to_vec());
        if keys.is_empty() {
            self.require(at, "x-kubernetes-list-map-keys", "must not be empty if x-kubernetes-list-type is map");
        }
        match &p.items {
            None => self.require(at, "items", "must have a schema if x-kubernetes-list-type is map"),
            Some(JSONSchemaPropsOrArray::Schemas(_)) => {
                let detail = "must only have a single schema if x-kubernetes-list-type is map";
                self.invalid(&items_at, &Value::String(String::new()), detail);
            }
            Some(JSONSchemaPropsOrArray::Schema(_)) => {}
        }
        let Some(item) = item else { return };
        if item.type_.as_deref() != Some("object") {
            let value = Value::from(item.type_.clone().unwrap_or_default());
            self.invalid(
                &items_at.child("type"),
                &value,
                "must be object if parent array's x-kubernetes-list-type is map",
            );
            return;
        }
        let required: BTreeSet<&str> = item.required.iter().flatten().map(String::as_str).collect();
        let mut seen = BTreeSet::new();
        for key in keys {
            let key_at = items_at.child("properties").key(key);
            match item.properties.as_ref().and_then(|m| m.get(key)) {
                Some(s) => {
                    if matches!(s.type_.as_deref(), Some("array" | "object")) {
                        let detail = "must be a scalar type if parent array's x-kubernetes-list-type is map";
                        self.invalid(&key_at.child("type"), &Value::from(s.type_.clone()), detail);
                    }
                    if !required.contains(key.as_str()) && s.default.is_none() {
                        let detail = "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property";
                        self.require(&key_at, "default", detail);
                    }
                    if s.nullable == Some(true) {
                        self.forbid(
                            &key_at,
                            "nullable",
                            "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                        );
                    }
                }
                None => {
                    let detail = "entries must all be names of item properties";
                    self.invalid(&at.child("x-kubernetes-list-map-keys"), &keys_value, detail);
                }
            }
            if !seen.insert(key.as_str()) {
                let detail = "must not contain duplicate entries";
                self.invalid(&at.child("x-kubernetes-list-map-keys"), &keys_value, detail);
            }
        }
    }

    /// `x-kubernetes-map-type`: whether the object is atomic.
    fn map_type(&mut self, p: &JSONSchemaProps, at: &FieldPath) -> bool {
        let Some(map_type) = p.x_kubernetes_map_type.as_deref() else { return false };
        let type_name = p.type_.as_deref().unwrap_or("");
        if type_name != "object" {
            let detail = "must be object if x-kubernetes-map-type is specified";
            if type_name.is_empty() {
                self.require(at, "type", detail);
            } else {
                self.invalid(&at.child("type"), &Value::from(type_name), detail);
            }
        }
        if !matches!(map_type, "atomic" | "granular") {
            let supported = vec!["atomic".to_string(), "granular".to_string()];
            self.errs.push(FieldError::not_supported_json(
                at.child("x-kubernetes-map-type").field(),
                &Value::from(map_type),
                supported,
            ));
        }
        map_type == "atomic"
    }

    /// The value validations of a schema. `nested` for a schema under a junctor (`allOf`,
    /// `anyOf`, `oneOf`, `not`), where structural parts are forbidden; `skip_any_of` and
    /// `skip_first_all_of_any_of` mark the int-or-string patterns, whose types are allowed.
    fn checks(
        &mut self,
        p: &JSONSchemaProps,
        at: &FieldPath,
        nested: bool,
        skip_any_of: bool,
        skip_first_all_of_any_of: bool,
    ) -> Checks {
        if nested {
            self.generic(p, at, &Context::default());
            self.nested_forbidden(p, at);
        }
        let pattern = p.pattern.as_ref().and_then(|source| match regex::Regex::new(source) {
            Ok(regex) => Some(Pattern { source: source.clone(), regex }),
            Err(e) => {
                let detail = format!("must be a valid regular expression, but isn't: {e}");
                self.invalid(&at.child("pattern"), &Value::from(source.clone()), &detail);
                None
            }
        });
        let mut any_of = Vec::new();
        for (i, s) in p.any_of.iter().flatten().enumerate() {
            let sub_at = at.child("anyOf").index(i);
            any_of.push(if skip_any_of {
                self.int_or_string_branch(s)
            } else {
                self.checks(s, &sub_at, true, false, false)
            });
        }
        let mut all_of = Vec::new();
        for (i, s) in p.all_of.iter().flatten().enumerate() {
            let skip = skip_first_all_of_any_of && i == 0;
            all_of.push(self.checks(s, &at.child("allOf").index(i), true, skip, false));
        }
        let mut one_of = Vec::new();
        for (i, s) in p.one_of.iter().flatten().enumerate() {
            one_of.push(self.checks(s, &at.child("oneOf").index(i), true, false, false));
        }
        let not = p.not.as_ref().map(|s| Box::new(self.checks(s, &at.child("not"), true, false, false)));
        let (mut properties, mut items, mut additional) = (BTreeMap::new(), None, None);
        if nested {
            for (name, s) in p.properties.iter().flatten() {
                properties.insert(name.clone(), self.checks(s, &at.child("properties").key(name), true, false, false));
            }
            if let Some(JSONSchemaPropsOrArray::Schema(s)) = &p.items {
                items = Some(Box::new(self.checks(s, &at.child("items"), true, false, false)));
            }
            if let Some(JSONSchemaPropsOrBool::Schema(s)) = &p.additional_properties {
                additional = Some(Box::new(self.checks(s, &at.child("additionalProperties"), true, false, false)));
            }
        }
        Checks {
            type_: None,
            format: p.format.clone().filter(|f| super::formats::supported(p.type_.as_deref(), f)),
            enum_: p.enum_.iter().flatten().map(|v| v.0.clone()).collect(),
            pattern,
            max_length: p.max_length,
            min_length: p.min_length,
            maximum: p.maximum,
            exclusive_maximum: p.exclusive_maximum == Some(true),
            minimum: p.minimum,
            exclusive_minimum: p.exclusive_minimum == Some(true),
            multiple_of: p.multiple_of,
            max_items: p.max_items,
            min_items: p.min_items,
            max_properties: p.max_properties,
            min_properties: p.min_properties,
            required: p.required.clone().unwrap_or_default(),
            all_of,
            any_of,
            one_of,
            not,
            properties,
            items,
            additional,
        }
    }

    /// A branch of the int-or-string `anyOf`: just its type.
    fn int_or_string_branch(&mut self, p: &JSONSchemaProps) -> Checks {
        Checks { type_: p.type_.as_deref().and_then(JsonType::parse), ..Checks::default() }
    }

    /// What a schema under a junctor may not say: it may only add value validations.
    fn nested_forbidden(&mut self, p: &JSONSchemaProps, at: &FieldPath) {
        if p.type_.as_deref().is_some_and(|t| !t.is_empty()) {
            self.forbid(at, "type", "must be empty to be structural");
        }
        if p.additional_properties.is_some() {
            self.forbid(at, "additionalProperties", "must be undefined to be structural");
        }
        if p.default.is_some() {
            self.forbid(at, "default", "must be undefined to be structural");
        }
        if p.title.as_deref().is_some_and(|t| !t.is_empty()) {
            self.forbid(at, "title", "must be empty to be structural");
        }
        if p.description.as_deref().is_some_and(|t| !t.is_empty()) {
            self.forbid(at, "description", "must be empty to be structural");
        }
        if p.nullable == Some(true) {
            self.forbid(at, "nullable", "must be false to be structural");
        }
        if p.x_kubernetes_preserve_unknown_fields == Some(true) {
            self.forbid(at, "x-kubernetes-preserve-unknown-fields", "must be false to be structural");
        }
        if p.x_kubernetes_embedded_resource == Some(true) {
            self.forbid(at, "x-kubernetes-embedded-resource", "must be false to be structural");
        }
        if p.x_kubernetes_int_or_string == Some(true) {
            self.forbid(at, "x-kubernetes-int-or-string", "must be false to be structural");
        }
        if p.x_kubernetes_list_map_keys.as_ref().is_some_and(|k| !k.is_empty()) {
            self.forbid(at, "x-kubernetes-list-map-keys", "must be empty to be structural");
        }
        if p.x_kubernetes_list_type.is_some() {
            self.forbid(at, "x-kubernetes-list-type", "must be undefined to be structural");
        }
        if p.x_kubernetes_map_type.is_some() {
            self.forbid(at, "x-kubernetes-map-type", "must be undefined to be structural");
        }
        if p.x_kubernetes_validations.as_ref().is_some_and(|v| !v.is_empty()) {
            self.forbid(at, "x-kubernetes-validations", "must be empty to be structural");
        }
        if p.properties.as_ref().is_some_and(|m| m.contains_key("metadata")) {
            let detail = "must not be specified in a nested context";
            self.errs.push(FieldError::forbidden(at.child("properties").key("metadata").field(), detail));
        }
    }

    /// The CEL rules of a node, each checked and compiled.
    fn rules(&mut self, p: &JSONSchemaProps, at: &FieldPath, ctx: &Context) -> Vec<cel::Rule> {
        let mut rules = Vec::new();
        for (i, rule) in p.x_kubernetes_validations.iter().flatten().enumerate() {
            let rule_at = at.child("x-kubernetes-validations").index(i);
            match cel::Rule::compile(rule, p, &rule_at, ctx.no_old_self.as_deref()) {
                Ok(compiled) => rules.push(compiled),
                Err(errs) => self.errs.extend(errs),
            }
        }
        rules
    }

    /// Every property, item or additionalProperties schema a junctor validates must exist in
    /// the structural schema too (`complete.go`).
    fn completeness_of(&mut self, p: &JSONSchemaProps, node: &Node, at: &FieldPath) {
        self.junctors_complete(p, node, at, at);
        for (name, s) in p.properties.iter().flatten() {
            if let Some(child) = node.properties.get(name) {
                self.completeness_of(s, child, &at.child("properties").key(name));
            }
        }
        if let (Some(JSONSchemaPropsOrArray::Schema(s)), Some(items)) = (&p.items, &node.items) {
            self.completeness_of(s, items, &at.child("items"));
        }
        if let (Some(JSONSchemaPropsOrBool::Schema(s)), Some(Additional::Schema(child))) =
            (&p.additional_properties, &node.additional)
        {
            self.completeness_of(s, child, &at.child("additionalProperties"));
        }
    }

    fn junctors_complete(&mut self, p: &JSONSchemaProps, node: &Node, s_at: &FieldPath, v_at: &FieldPath) {
        let branches = [("allOf", &p.all_of), ("anyOf", &p.any_of), ("oneOf", &p.one_of)];
        for (name, list) in branches {
            for (i, s) in list.iter().flatten().enumerate() {
                self.nested_complete(s, node, s_at, &v_at.child(name).index(i));
            }
        }
        if let Some(s) = &p.not {
            self.nested_complete(s, node, s_at, &v_at.child("not"));
        }
    }

    fn nested_complete(&mut self, v: &JSONSchemaProps, node: &Node, s_at: &FieldPath, v_at: &FieldPath) {
        self.junctors_complete(v, node, s_at, v_at);
        if let Some(JSONSchemaPropsOrArray::Schema(vi)) = &v.items {
            let (s_items, v_items) = (s_at.child("items"), v_at.child("items"));
            match &node.items {
                Some(items) => self.nested_complete(vi, items, &s_items, &v_items),
                None => self.errs.push(FieldError::required(
                    s_items.field(),
                    format!("because it is defined in {}", v_items.field()),
                )),
            }
        }
        for (name, vp) in v.properties.iter().flatten() {
            let (s_prop, v_prop) = (s_at.child("properties").key(name), v_at.child("properties").key(name));
            match node.properties.get(name) {
                Some(child) => self.nested_complete(vp, child, &s_prop, &v_prop),
                None => self
                    .errs
                    .push(FieldError::required(s_prop.field(), format!("because it is defined in {}", v_prop.field()))),
            }
        }
    }

    /// Each default must be pruned already, and valid against its own schema (OpenAPI, list
    /// types and CEL rules).
    fn defaults(&mut self, node: &Node, at: &FieldPath, root: bool) {
        if let Some(default) = &node.default {
            let default_at = at.child("default");
            let mut pruned = default.clone();
            pruning::prune_at(node, &mut pruned, node.embedded_resource);
            if &pruned != default {
                self.invalid(&default_at, default, "must not have unknown fields");
            }
            let mut errs = validation::validate_at(node, default, &default_at);
            errs.extend(validation::validate_lists_at(node, default, &default_at));
            if errs.is_empty() {
                errs.extend(cel::validate_at(node, default, None, &default_at, false));
            }
            self.errs.extend(errs);
        }
        for (name, child) in &node.properties {
            // metadata, apiVersion and kind of the root are validated as metadata (defaults
            // there are refused already).
            if root && matches!(name.as_str(), "metadata" | "apiVersion" | "kind") {
                continue;
            }
            self.defaults(child, &at.child("properties").key(name), false);
        }
        if let Some(Additional::Schema(child)) = &node.additional {
            self.defaults(child, &at.child("additionalProperties"), false);
        }
        if let Some(items) = &node.items {
            self.defaults(items, &at.child("items"), false);
        }
    }
}

/// The int-or-string pattern `anyOf: [{type: integer}, {type: string}]`.
fn is_int_or_string_any_of(p: &JSONSchemaProps) -> bool {
    p.any_of.as_deref().is_some_and(is_int_or_string_pair)
}

/// The int-or-string pattern `allOf: [{anyOf: [{type: integer}, {type: string}]}, ...]`.
fn is_int_or_string_all_of(p: &JSONSchemaProps) -> bool {
    p.all_of.as_ref().and_then(|all| all.first()).is_some_and(is_int_or_string_any_of)
}

fn is_int_or_string_pair(any_of: &[JSONSchemaProps]) -> bool {
    let only_type = |s: &JSONSchemaProps, t: &str| {
        let expected = JSONSchemaProps { type_: Some(t.to_string()), ..Default::default() };
        *s == expected
    };
    any_of.len() == 2 && only_type(&any_of[0], "integer") && only_type(&any_of[1], "string")
}
