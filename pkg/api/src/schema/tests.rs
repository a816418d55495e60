//! Tests of the structural schema module, by rule kind. Expected messages are Kubernetes'.

use serde_json::{Value, json};

use super::{ListType, StructuralSchema};
use crate::field::FieldError;

const AT: &str = "spec.versions[0].schema.openAPIV3Schema";

/// A schema from its JSON, which must be structural.
fn schema(props: Value) -> StructuralSchema {
    match try_schema(props) {
        Ok(s) => s,
        Err(errs) => panic!("schema refused: {errs:?}"),
    }
}

/// `new`'s answer as strings.
fn try_schema(props: Value) -> Result<StructuralSchema, Vec<String>> {
    let props = serde_json::from_value(props).map_err(|e| vec![e.to_string()])?;
    StructuralSchema::new(&props, AT).map_err(|errs| strings(&errs))
}

/// The errors `new` reports for a schema that must be refused.
fn refusal(props: Value) -> Vec<String> {
    match try_schema(props) {
        Ok(_) => panic!("schema accepted"),
        Err(errs) => errs,
    }
}

fn strings(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

/// A root schema with `spec` of the given schema.
fn with_spec(spec: Value) -> Value {
    json!({"type": "object", "properties": {"spec": spec}})
}

fn spec_of(props: Value) -> StructuralSchema {
    schema(with_spec(json!({"type": "object", "properties": props})))
}

/// `validate`'s errors as strings, sorted (the order of an object's fields is not part of
/// the contract).
fn errors(s: &StructuralSchema, object: Value) -> Vec<String> {
    let mut errs = strings(&s.validate(&object));
    errs.sort();
    errs
}

fn rule_errors(s: &StructuralSchema, object: Value, old: Option<Value>) -> Vec<String> {
    strings(&s.validate_rules(&object, old.as_ref()))
}

// --- structural schema rules -------------------------------------------------------------

#[test]
fn a_schema_with_types_everywhere_is_structural() {
    let s = spec_of(json!({"replicas": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}}));
    assert!(s.has_path(".spec.replicas"));
}

#[test]
fn a_field_without_type_is_refused() {
    assert_eq!(
        refusal(with_spec(json!({"type": "object", "properties": {"x": {"description": "no type"}}}))),
        vec![format!(
            "{AT}.properties[spec].properties[x].type: Required value: must not be empty for specified object fields"
        )]
    );
}

#[test]
fn array_items_without_type_and_an_untyped_root_are_refused() {
    assert_eq!(
        refusal(json!({"properties": {"l": {"type": "array", "items": {}}}})),
        vec![
            format!("{AT}.type: Required value: must not be empty at the root"),
            format!("{AT}.properties[l].items.type: Required value: must not be empty for specified array items"),
        ]
    );
}

#[test]
fn the_root_must_be_an_object_and_not_nullable() {
    assert_eq!(
        refusal(json!({"type": "string", "nullable": true})),
        vec![
            format!("{AT}.nullable: Forbidden: nullable cannot be true at the root"),
            format!("{AT}.type: Invalid value: \"string\": must be object at the root"),
        ]
    );
}

#[test]
fn int_or_string_and_preserve_unknown_fields_may_leave_out_the_type() {
    let s = spec_of(json!({
        "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
        "free": {"x-kubernetes-preserve-unknown-fields": true},
    }));
    assert!(s.has_path(".spec.free.anything.below"));
}

#[test]
fn additional_properties_beside_properties_or_at_the_root_are_refused() {
    assert_eq!(
        refusal(json!({"type": "object", "additionalProperties": {"type": "string"}})),
        vec![format!("{AT}.additionalProperties: Forbidden: must not be used at the root")]
    );
    assert_eq!(
        refusal(with_spec(json!({
            "type": "object",
            "properties": {"a": {"type": "string"}},
            "additionalProperties": {"type": "string"},
        }))),
        vec![format!(
            "{AT}.properties[spec].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
        )]
    );
}

#[test]
fn an_array_needs_items() {
    assert_eq!(
        refusal(with_spec(json!({"type": "array"}))),
        vec![format!("{AT}.properties[spec].items: Required value: must be specified")]
    );
}

#[test]
fn metadata_at_the_root_may_only_restrict_name_and_generate_name() {
    schema(
        json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}}}}),
    );
    assert_eq!(
        refusal(
            json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}})
        ),
        vec![format!(
            "{AT}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"
        )]
    );
}

#[test]
fn junctors_may_not_specify_types_defaults_or_fields_the_schema_lacks() {
    assert_eq!(
        refusal(with_spec(json!({
            "type": "object",
            "properties": {"a": {"type": "string"}},
            "anyOf": [{"type": "object", "default": {}}, {"properties": {"b": {"minLength": 1}}}],
        }))),
        vec![
            format!("{AT}.properties[spec].anyOf[0].type: Forbidden: must be empty to be structural"),
            format!("{AT}.properties[spec].anyOf[0].default: Forbidden: must be undefined to be structural"),
        ]
    );
    assert_eq!(
        refusal(with_spec(json!({
            "type": "object",
            "properties": {"a": {"type": "string"}},
            "anyOf": [{"properties": {"b": {"minLength": 1}}}],
        }))),
        vec![format!(
            "{AT}.properties[spec].properties[b]: Required value: because it is defined in {AT}.properties[spec].anyOf[0].properties[b]"
        )]
    );
}

#[test]
fn unsupported_openapi_keywords_and_types_are_refused() {
    let errs = refusal(with_spec(json!({"type": "thing", "$ref": "#/x", "uniqueItems": true})));
    assert_eq!(
        errs,
        vec![
            format!(
                "{AT}.properties[spec].type: Unsupported value: \"thing\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\""
            ),
            format!("{AT}.properties[spec].$ref: Forbidden: $ref is not supported"),
            format!(
                "{AT}.properties[spec].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
            ),
        ]
    );
}

#[test]
fn an_invalid_pattern_is_refused() {
    let errs = refusal(spec_field(json!({"type": "string", "pattern": "a("})));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with(&format!(
            "{AT}.properties[spec].properties[f].pattern: Invalid value: \"a(\": must be a valid regular expression, but isn't: "
        )),
        "{errs:?}"
    );
}

/// A schema with one field `spec.f` of the given schema.
fn spec_field(f: Value) -> Value {
    with_spec(json!({"type": "object", "properties": {"f": f}}))
}

#[test]
fn list_types_are_checked() {
    assert_eq!(
        refusal(spec_field(json!({"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "bag"}))),
        vec![format!(
            "{AT}.properties[spec].properties[f].x-kubernetes-list-type: Unsupported value: \"bag\": supported values: \"atomic\", \"set\", \"map\""
        )]
    );
    assert_eq!(
        refusal(spec_field(json!({"type": "string", "x-kubernetes-list-type": "set"}))),
        vec![format!(
            "{AT}.properties[spec].properties[f].type: Invalid value: \"string\": must be array if x-kubernetes-list-type is specified"
        )]
    );
}

#[test]
fn map_list_keys_must_be_required_or_defaulted_scalar_properties() {
    let list = |items: Value, keys: Value| {
        spec_field(
            json!({"type": "array", "items": items, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": keys}),
        )
    };
    assert_eq!(
        refusal(list(json!({"type": "object", "properties": {"name": {"type": "string"}}}), json!(["name"]))),
        vec![format!(
            "{AT}.properties[spec].properties[f].items.properties[name].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"
        )]
    );
    assert_eq!(
        refusal(list(
            json!({"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}),
            json!(["nome"])
        )),
        vec![format!(
            "{AT}.properties[spec].properties[f].x-kubernetes-list-map-keys: Invalid value: [\"nome\"]: entries must all be names of item properties"
        )]
    );
    assert_eq!(
        refusal(list(
            json!({"type": "object", "required": ["o"], "properties": {"o": {"type": "object"}}}),
            json!(["o"])
        )),
        vec![format!(
            "{AT}.properties[spec].properties[f].items.properties[o].type: Invalid value: \"object\": must be a scalar type if parent array's x-kubernetes-list-type is map"
        )]
    );
    assert_eq!(
        refusal(spec_field(json!({"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "map"}))),
        vec![
            format!(
                "{AT}.properties[spec].properties[f].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"
            ),
            format!(
                "{AT}.properties[spec].properties[f].items.type: Invalid value: \"string\": must be object if parent array's x-kubernetes-list-type is map"
            ),
        ]
    );
}

#[test]
fn defaults_must_be_valid_and_pruned() {
    assert_eq!(
        refusal(spec_field(json!({"type": "integer", "maximum": 5, "default": 7}))),
        vec![format!(
            "{AT}.properties[spec].properties[f].default: Invalid value: 7: {AT}.properties[spec].properties[f].default in body should be less than or equal to 5"
        )]
    );
    assert_eq!(
        refusal(spec_field(
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "default": {"a": "x", "b": 1}})
        )),
        vec![format!(
            "{AT}.properties[spec].properties[f].default: Invalid value: {{\"a\":\"x\",\"b\":1}}: must not have unknown fields"
        )]
    );
}

#[test]
fn defaults_in_top_level_metadata_are_refused() {
    assert_eq!(
        refusal(
            json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"name": {"type": "string", "default": "x"}}}}})
        ),
        vec![format!(
            "{AT}.properties[metadata].properties[name].default: Forbidden: must not be set in top-level metadata"
        )]
    );
}

// --- pruning -------------------------------------------------------------------------------

#[test]
fn pruning_drops_unknown_fields_and_reports_them() {
    let s = spec_of(json!({"a": {"type": "string"}}));
    let mut object =
        json!({"apiVersion": "v", "kind": "K", "metadata": {"name": "x"}, "spec": {"a": "1", "b": 2}, "extra": true});
    assert_eq!(s.prune(&mut object), vec![".extra", ".spec.b"]);
    assert_eq!(object, json!({"apiVersion": "v", "kind": "K", "metadata": {"name": "x"}, "spec": {"a": "1"}}));
}

#[test]
fn pruning_reaches_into_list_items_and_additional_properties_values() {
    let s = spec_of(json!({
        "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
        "byName": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "integer"}}}},
    }));
    let mut object = json!({"spec": {
        "items": [{"name": "a", "junk": 1}, {"name": "b"}],
        "byName": {"k": {"v": 1, "w": 2}},
    }});
    assert_eq!(s.prune(&mut object), vec![".spec.byName.k.w", ".spec.items[0].junk"]);
    assert_eq!(object, json!({"spec": {"items": [{"name": "a"}, {"name": "b"}], "byName": {"k": {"v": 1}}}}));
}

#[test]
fn pruning_stops_at_preserve_unknown_fields_but_prunes_what_is_specified_below() {
    let s = spec_of(json!({
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}},
    }));
    let mut object = json!({"spec": {"free": {"anything": {"deep": 1}, "known": {"a": "x", "b": "y"}}}});
    assert_eq!(s.prune(&mut object), vec![".spec.free.known.b"]);
    assert_eq!(object, json!({"spec": {"free": {"anything": {"deep": 1}, "known": {"a": "x"}}}}));
}

// --- defaulting ----------------------------------------------------------------------------

#[test]
fn defaults_fill_absent_fields_of_present_objects_only() {
    let s = spec_of(json!({
        "replicas": {"type": "integer", "default": 1},
        "strategy": {"type": "object", "properties": {"kind": {"type": "string", "default": "Rolling"}}},
    }));
    let mut object = json!({"spec": {}});
    s.apply_defaults(&mut object);
    assert_eq!(object, json!({"spec": {"replicas": 1}}), "strategy is absent: its field's default waits");
    let mut object = json!({"spec": {"strategy": {}}});
    s.apply_defaults(&mut object);
    assert_eq!(object, json!({"spec": {"replicas": 1, "strategy": {"kind": "Rolling"}}}));
}

#[test]
fn a_defaulted_parent_gets_the_defaults_inside_it() {
    let s = spec_of(json!({
        "strategy": {"type": "object", "default": {}, "properties": {"kind": {"type": "string", "default": "Rolling"}}},
    }));
    let mut object = json!({"spec": {}});
    s.apply_defaults(&mut object);
    assert_eq!(object, json!({"spec": {"strategy": {"kind": "Rolling"}}}));
}

#[test]
fn defaults_apply_in_list_items_and_additional_properties_values() {
    let s = spec_of(json!({
        "ports": {"type": "array", "items": {"type": "object", "properties": {"protocol": {"type": "string", "default": "TCP"}}}},
        "limits": {"type": "object", "additionalProperties": {"type": "object", "properties": {"max": {"type": "integer", "default": 3}}}},
    }));
    let mut object = json!({"spec": {"ports": [{}, {"protocol": "UDP"}], "limits": {"a": {}}}});
    s.apply_defaults(&mut object);
    assert_eq!(
        object,
        json!({"spec": {"ports": [{"protocol": "TCP"}, {"protocol": "UDP"}], "limits": {"a": {"max": 3}}}})
    );
}

#[test]
fn non_nullable_nulls_are_dropped_or_defaulted_and_nullable_ones_stay() {
    let s = spec_of(json!({
        "a": {"type": "string"},
        "b": {"type": "string", "default": "B"},
        "c": {"type": "string", "nullable": true, "default": "C"},
    }));
    let mut object = json!({"spec": {"a": null, "b": null, "c": null}});
    s.apply_defaults(&mut object);
    assert_eq!(object, json!({"spec": {"b": "B", "c": null}}));
}

// --- validation ----------------------------------------------------------------------------

#[test]
fn types_are_checked_integer_against_number() {
    let s = spec_of(json!({"replicas": {"type": "integer"}, "ratio": {"type": "number"}, "on": {"type": "boolean"}}));
    assert_eq!(
        errors(&s, json!({"spec": {"replicas": "3", "ratio": 1, "on": "yes"}})),
        vec![
            "spec.on: Invalid value: \"string\": spec.on in body must be of type boolean: \"string\"",
            "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
        ]
    );
    assert_eq!(
        errors(&s, json!({"spec": {"replicas": 1.5}})),
        vec!["spec.replicas: Invalid value: \"number\": spec.replicas in body must be of type integer: \"number\""]
    );
    assert!(errors(&s, json!({"spec": {"replicas": 2.0, "ratio": 0.5}})).is_empty());
}

#[test]
fn int_or_string_accepts_both_and_nothing_else() {
    let s = spec_of(json!({"port": {"x-kubernetes-int-or-string": true}}));
    assert!(errors(&s, json!({"spec": {"port": 80}})).is_empty());
    assert!(errors(&s, json!({"spec": {"port": "http"}})).is_empty());
    assert_eq!(
        errors(&s, json!({"spec": {"port": true}})),
        vec!["spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\""]
    );
}

#[test]
fn null_is_refused_unless_nullable() {
    let s = spec_of(json!({"a": {"type": "string"}, "b": {"type": "string", "nullable": true}}));
    assert_eq!(
        errors(&s, json!({"spec": {"a": null, "b": null}})),
        vec!["spec.a: Invalid value: \"null\": spec.a in body must be of type string: \"null\""]
    );
}

#[test]
fn required_fields_must_be_present() {
    let s =
        schema(with_spec(json!({"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}})));
    assert_eq!(errors(&s, json!({"spec": {}})), vec!["spec.name: Required value"]);
}

#[test]
fn enum_lists_the_supported_values() {
    let s = spec_of(
        json!({"color": {"type": "string", "enum": ["red", "blue"]}, "n": {"type": "integer", "enum": [1, 2]}}),
    );
    assert_eq!(
        errors(&s, json!({"spec": {"color": "pink", "n": 3}})),
        vec![
            "spec.color: Unsupported value: \"pink\": supported values: \"red\", \"blue\"",
            "spec.n: Unsupported value: 3: supported values: \"1\", \"2\"",
        ]
    );
    assert!(errors(&s, json!({"spec": {"color": "red", "n": 2}})).is_empty());
}

#[test]
fn numeric_bounds_and_multiples() {
    let s = spec_of(json!({
        "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
        "x": {"type": "integer", "minimum": 0, "exclusiveMinimum": true, "maximum": 5, "exclusiveMaximum": true},
        "step": {"type": "integer", "multipleOf": 5},
        "ratio": {"type": "number", "maximum": 1.5},
    }));
    assert_eq!(
        errors(&s, json!({"spec": {"replicas": 20, "x": 0, "step": 7, "ratio": 2.25}})),
        vec![
            "spec.ratio: Invalid value: 2.25: spec.ratio in body should be less than or equal to 1.5",
            "spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10",
            "spec.step: Invalid value: 7: spec.step in body should be a multiple of 5",
            "spec.x: Invalid value: 0: spec.x in body should be greater than 0",
        ]
    );
    assert_eq!(
        errors(&s, json!({"spec": {"replicas": 0, "x": 5}})),
        vec![
            "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
            "spec.x: Invalid value: 5: spec.x in body should be less than 5",
        ]
    );
    assert!(errors(&s, json!({"spec": {"replicas": 10, "x": 4, "step": 15, "ratio": 1.5}})).is_empty());
}

#[test]
fn string_lengths_patterns_and_formats() {
    let s = spec_of(json!({
        "name": {"type": "string", "minLength": 3, "maxLength": 5, "pattern": "^[a-z]+$"},
        "id": {"type": "string", "format": "uuid"},
        "at": {"type": "string", "format": "date-time"},
        "free": {"type": "string", "format": "no-such-format"},
    }));
    assert_eq!(
        errors(&s, json!({"spec": {"name": "AB", "id": "nope", "at": "yesterday", "free": "x"}})),
        vec![
            "spec.at: Invalid value: \"yesterday\": spec.at in body must be of type date-time: \"yesterday\"",
            "spec.id: Invalid value: \"nope\": spec.id in body must be of type uuid: \"nope\"",
            "spec.name: Invalid value: \"AB\": spec.name in body should be at least 3 chars long",
            "spec.name: Invalid value: \"AB\": spec.name in body should match '^[a-z]+$'",
        ]
    );
    assert_eq!(
        errors(&s, json!({"spec": {"name": "abcdef"}})),
        vec!["spec.name: Too long: may not be more than 5 bytes"]
    );
    assert!(
        errors(
            &s,
            json!({"spec": {"name": "abc", "id": "123e4567-e89b-12d3-a456-426614174000", "at": "2024-01-02T03:04:05Z"}})
        )
        .is_empty()
    );
}

#[test]
fn list_and_map_sizes() {
    let s = spec_of(json!({
        "l": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 3},
        "m": {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1, "maxProperties": 2},
    }));
    assert_eq!(
        errors(&s, json!({"spec": {"l": ["a"], "m": {}}})),
        vec![
            "spec.l: Invalid value: 1: spec.l in body should have at least 2 items",
            "spec.m: Invalid value: 0: spec.m in body should have at least 1 properties",
        ]
    );
    assert_eq!(
        errors(&s, json!({"spec": {"l": ["a", "b", "c", "d"], "m": {"a": "1", "b": "2", "c": "3"}}})),
        vec!["spec.l: Too many: 4: must have at most 3 items", "spec.m: Too many: 3: must have at most 2 items"]
    );
}

#[test]
fn validation_reaches_list_items_and_additional_properties_values() {
    let s = spec_of(json!({
        "l": {"type": "array", "items": {"type": "integer", "maximum": 3}},
        "m": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 1}},
    }));
    assert_eq!(
        errors(&s, json!({"spec": {"l": [1, 4], "m": {"k": "long"}}})),
        vec![
            "spec.l[1]: Invalid value: 4: spec.l[1] in body should be less than or equal to 3",
            "spec.m.k: Too long: may not be more than 1 byte",
        ]
    );
}

#[test]
fn junctors_all_of_any_of_one_of_and_not() {
    let s = spec_of(json!({
        "any": {"type": "string", "anyOf": [{"enum": ["a"]}, {"pattern": "^b"}]},
        "one": {"type": "integer", "oneOf": [{"minimum": 0}, {"maximum": 10}]},
        "all": {"type": "integer", "allOf": [{"minimum": 0}, {"maximum": 10}]},
        "not": {"type": "string", "not": {"enum": ["forbidden"]}},
    }));
    assert!(errors(&s, json!({"spec": {"any": "bee", "one": 20, "all": 5, "not": "ok"}})).is_empty());
    assert_eq!(
        errors(&s, json!({"spec": {"any": "c", "one": 5, "all": 11, "not": "forbidden"}})),
        vec![
            "spec.all: Invalid value: \"\": \"spec.all\" must validate all the schemas (allOf)",
            "spec.all: Invalid value: 11: spec.all in body should be less than or equal to 10",
            "spec.any: Invalid value: \"\": \"spec.any\" must validate at least one schema (anyOf)",
            "spec.any: Unsupported value: \"c\": supported values: \"a\"",
            "spec.not: Invalid value: \"\": \"spec.not\" must not validate the schema (not)",
            "spec.one: Invalid value: \"\": \"spec.one\" must validate one and only one schema (oneOf). Found 2 valid alternatives",
        ]
    );
}

#[test]
fn a_junctor_can_require_fields_of_nested_objects() {
    let s = schema(with_spec(json!({
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
    })));
    assert!(errors(&s, json!({"spec": {"a": "x"}})).is_empty());
    assert_eq!(
        errors(&s, json!({"spec": {"a": "x", "b": "y"}})),
        vec![
            "spec: Invalid value: \"\": \"spec\" must validate one and only one schema (oneOf). Found 2 valid alternatives"
        ]
    );
}

#[test]
fn set_lists_refuse_duplicates_once_per_value() {
    let s = spec_of(json!({"items": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"}}));
    assert_eq!(
        errors(&s, json!({"spec": {"items": ["a", "b", "a", "a"]}})),
        vec!["spec.items[2]: Duplicate value: \"a\""]
    );
    assert!(errors(&s, json!({"spec": {"items": ["a", "b"]}})).is_empty());
}

#[test]
fn map_lists_refuse_repeated_keys() {
    let s = spec_of(json!({"ports": {
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["port", "protocol"],
        "items": {"type": "object", "required": ["port"], "properties": {
            "port": {"type": "integer"},
            "protocol": {"type": "string", "default": "TCP"},
        }},
    }}));
    assert_eq!(
        errors(
            &s,
            json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 80, "protocol": "UDP"}, {"port": 80, "protocol": "TCP"}]}})
        ),
        vec!["spec.ports[2]: Duplicate value: {\"port\":80,\"protocol\":\"TCP\"}"]
    );
    assert_eq!(s.list_type("spec.ports"), ListType::Map(vec!["port".into(), "protocol".into()]));
    assert_eq!(s.key_default("spec.ports", "protocol"), Some(json!("TCP")));
}

#[test]
fn list_and_map_types_are_looked_up_by_path_without_list_positions() {
    let s = spec_of(json!({
        "groups": {"type": "array", "items": {"type": "object", "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            "sel": {"type": "object", "x-kubernetes-map-type": "atomic", "additionalProperties": {"type": "string"}},
        }}},
    }));
    assert_eq!(s.list_type("spec.groups"), ListType::Atomic);
    assert_eq!(s.list_type("spec.groups.tags"), ListType::Set);
    assert_eq!(s.list_type("spec.nothing"), ListType::Atomic);
    assert!(s.map_is_atomic("spec.groups.sel"));
    assert!(!s.map_is_atomic("spec"));
}

#[test]
fn has_path_follows_properties() {
    let s = spec_of(json!({"replicas": {"type": "integer"}}));
    assert!(s.has_path(".spec.replicas"));
    assert!(s.has_path("spec.replicas"));
    assert!(!s.has_path(".spec.replica"));
    assert!(!s.has_path(".spec..replicas"));
}

// --- CEL rules -----------------------------------------------------------------------------

fn ruled(rules: Value, props: Value) -> StructuralSchema {
    schema(with_spec(json!({"type": "object", "properties": props, "x-kubernetes-validations": rules})))
}

#[test]
fn a_passing_rule_reports_nothing_and_a_failing_one_its_message() {
    let s = ruled(
        json!([
            {"rule": "self.minReplicas <= self.replicas", "message": "replicas must be at least minReplicas"},
            {"rule": "self.replicas < 100"},
        ]),
        json!({"replicas": {"type": "integer"}, "minReplicas": {"type": "integer"}}),
    );
    assert!(rule_errors(&s, json!({"spec": {"replicas": 3, "minReplicas": 1}}), None).is_empty());
    assert_eq!(
        rule_errors(&s, json!({"spec": {"replicas": 300, "minReplicas": 500}}), None),
        vec![
            "spec: Invalid value: replicas must be at least minReplicas",
            "spec: Invalid value: failed rule: self.replicas < 100",
        ]
    );
}

#[test]
fn rules_use_macros_and_string_functions() {
    let s = ruled(
        json!([
            {"rule": "self.names.all(n, n.startsWith('x-'))"},
            {"rule": "has(self.mode) ? self.mode.matches('^[A-Z]+$') : true"},
            {"rule": "size(self.names) == self.names.filter(n, n.size() > 2).size()"},
            {"rule": "self.names.exists(n, n == 'x-main')"},
            {"rule": "self.names.map(n, n + '!').size() == size(self.names)"},
        ]),
        json!({"names": {"type": "array", "items": {"type": "string"}}, "mode": {"type": "string"}}),
    );
    assert!(rule_errors(&s, json!({"spec": {"names": ["x-main", "x-b"]}}), None).is_empty());
    assert!(rule_errors(&s, json!({"spec": {"names": ["x-main"], "mode": "FAST"}}), None).is_empty());
    assert_eq!(
        rule_errors(&s, json!({"spec": {"names": ["x-main", "y"], "mode": "slow"}}), None),
        vec![
            "spec: Invalid value: failed rule: self.names.all(n, n.startsWith('x-'))",
            "spec: Invalid value: failed rule: has(self.mode) ? self.mode.matches('^[A-Z]+$') : true",
            "spec: Invalid value: failed rule: size(self.names) == self.names.filter(n, n.size() > 2).size()",
        ]
    );
}

#[test]
fn a_rule_on_a_scalar_shows_the_value_and_integers_stay_integers() {
    let s = spec_of(json!({
        "replicas": {"type": "integer", "x-kubernetes-validations": [{"rule": "self % 2 == 0", "message": "must be even"}]},
        "ratio": {"type": "number", "x-kubernetes-validations": [{"rule": "self < 1.0"}]},
    }));
    assert_eq!(
        rule_errors(&s, json!({"spec": {"replicas": 3, "ratio": 0.5}}), None),
        vec!["spec.replicas: Invalid value: 3: must be even"]
    );
    // A number written without a fraction is still a double for CEL.
    assert_eq!(
        rule_errors(&s, json!({"spec": {"replicas": 2, "ratio": 2}}), None),
        vec!["spec.ratio: Invalid value: 2: failed rule: self < 1.0"]
    );
}

#[test]
fn rules_run_on_list_items_and_map_values() {
    let s = spec_of(json!({
        "l": {"type": "array", "items": {"type": "string", "x-kubernetes-validations": [{"rule": "self != 'bad'"}]}},
        "m": {"type": "object", "additionalProperties": {"type": "integer", "x-kubernetes-validations": [{"rule": "self > 0"}]}},
    }));
    assert_eq!(
        rule_errors(&s, json!({"spec": {"l": ["ok", "bad"], "m": {"a": 1, "b": 0}}}), None),
        vec![
            "spec.l[1]: Invalid value: \"bad\": failed rule: self != 'bad'",
            "spec.m[b]: Invalid value: 0: failed rule: self > 0"
        ]
    );
}

#[test]
fn reason_field_path_and_message_expression_shape_the_error() {
    let s = ruled(
        json!([
            {"rule": "self.a == self.b", "reason": "FieldValueForbidden", "fieldPath": ".b", "message": "b must equal a"},
            {"rule": "self.a.size() < 3", "messageExpression": "'a is too long: ' + self.a"},
        ]),
        json!({"a": {"type": "string"}, "b": {"type": "string"}}),
    );
    assert_eq!(
        rule_errors(&s, json!({"spec": {"a": "long", "b": "x"}}), None),
        vec!["spec.b: Forbidden: b must equal a", "spec: Invalid value: a is too long: long"]
    );
}

#[test]
fn required_and_duplicate_reasons_change_the_error_kind() {
    let s = ruled(
        json!([
            {"rule": "has(self.a)", "reason": "FieldValueRequired", "message": "a is needed"},
            {"rule": "!has(self.b) || self.b != self.c", "reason": "FieldValueDuplicate", "fieldPath": ".c"},
        ]),
        json!({"a": {"type": "string"}, "b": {"type": "string"}, "c": {"type": "string"}}),
    );
    let errs = s.validate_rules(&json!({"spec": {"b": "x", "c": "x"}}), None);
    assert_eq!(strings(&errs), vec!["spec: Required value: a is needed", "spec.c: Duplicate value"]);
    assert_eq!(errs[0].reason(), "FieldValueRequired");
    assert_eq!(errs[1].reason(), "FieldValueDuplicate");
}

#[test]
fn an_evaluation_error_is_an_invalid_error_not_a_panic() {
    let s = ruled(
        json!([{"rule": "self.missing == 1"}, {"rule": "1 / self.zero == 1"}]),
        json!({"zero": {"type": "integer"}}),
    );
    let errs = rule_errors(&s, json!({"spec": {"zero": 0}}), None);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with("spec: Invalid value: \"object\": no such key: missing evaluating rule: self.missing == 1"),
        "{errs:?}"
    );
    assert!(errs[1].starts_with("spec: Invalid value: \"object\": "), "{errs:?}");
    assert!(errs[1].ends_with(" evaluating rule: 1 / self.zero == 1"), "{errs:?}");
}

#[test]
fn transition_rules_compare_with_the_old_value_only_on_update() {
    let s = spec_of(
        json!({"name": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "is immutable"}]}}),
    );
    assert!(rule_errors(&s, json!({"spec": {"name": "b"}}), None).is_empty(), "create: no oldSelf");
    assert!(
        rule_errors(&s, json!({"spec": {"name": "b"}}), Some(json!({"spec": {}}))).is_empty(),
        "no old value there"
    );
    assert!(rule_errors(&s, json!({"spec": {"name": "a"}}), Some(json!({"spec": {"name": "a"}}))).is_empty());
    assert_eq!(
        rule_errors(&s, json!({"spec": {"name": "b"}}), Some(json!({"spec": {"name": "a"}}))),
        vec!["spec.name: Invalid value: \"b\": is immutable"]
    );
}

#[test]
fn transition_rules_in_map_lists_correlate_items_by_key() {
    let s = spec_of(json!({"ports": {
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
            "x-kubernetes-validations": [{"rule": "self.port >= oldSelf.port", "message": "port may only grow"}],
        },
    }}));
    let old = json!({"spec": {"ports": [{"name": "a", "port": 10}, {"name": "b", "port": 20}]}});
    assert!(
        rule_errors(
            &s,
            json!({"spec": {"ports": [{"name": "b", "port": 25}, {"name": "a", "port": 10}]}}),
            Some(old.clone())
        )
        .is_empty()
    );
    assert_eq!(
        rule_errors(&s, json!({"spec": {"ports": [{"name": "c", "port": 1}, {"name": "b", "port": 5}]}}), Some(old)),
        vec!["spec.ports[1]: Invalid value: port may only grow"]
    );
}

#[test]
fn optional_old_self_runs_the_rule_on_create_too() {
    let s = spec_of(json!({"name": {"type": "string", "x-kubernetes-validations": [
        {"rule": "!oldSelf.hasValue() || self == oldSelf.value()", "optionalOldSelf": true, "message": "is immutable"}
    ]}}));
    assert!(rule_errors(&s, json!({"spec": {"name": "b"}}), None).is_empty());
    assert_eq!(
        rule_errors(&s, json!({"spec": {"name": "b"}}), Some(json!({"spec": {"name": "a"}}))),
        vec!["spec.name: Invalid value: \"b\": is immutable"]
    );
}

#[test]
fn a_rule_at_the_root_sees_only_name_and_generate_name_of_metadata() {
    let s = schema(json!({
        "type": "object",
        "properties": {"spec": {"type": "object"}},
        "x-kubernetes-validations": [{"rule": "self.metadata.name.startsWith('a')"}, {"rule": "!has(self.metadata.labels)"}],
    }));
    assert!(rule_errors(&s, json!({"metadata": {"name": "abc", "labels": {"x": "y"}}, "spec": {}}), None).is_empty());
    assert_eq!(
        rule_errors(&s, json!({"metadata": {"name": "b"}, "spec": {}}), None),
        vec!["<nil>: Invalid value: failed rule: self.metadata.name.startsWith('a')"]
    );
}

#[test]
fn a_rule_that_does_not_compile_is_refused_by_new() {
    let errs = refusal(spec_field(
        json!({"type": "string", "x-kubernetes-validations": [{"rule": "self ==", "message": "m"}]}),
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(&format!(
            "{AT}.properties[spec].properties[f].x-kubernetes-validations[0].rule: Invalid value: {{\"message\":\"m\",\"rule\":\"self ==\"}}: compilation failed: ERROR: <input>:1:"
        )),
        "{errs:?}"
    );
}

#[test]
fn rule_fields_are_checked_by_new() {
    let errs = refusal(spec_field(
        json!({"type": "object", "properties": {"a": {"type": "string"}}, "x-kubernetes-validations": [
            {"rule": "true", "reason": "Bogus"},
            {"rule": "true", "fieldPath": ".b"},
            {"rule": " "},
        ]}),
    ));
    let base = format!("{AT}.properties[spec].properties[f].x-kubernetes-validations");
    assert_eq!(
        errs,
        vec![
            format!(
                "{base}[0].reason: Unsupported value: \"Bogus\": supported values: \"FieldValueDuplicate\", \"FieldValueForbidden\", \"FieldValueInvalid\", \"FieldValueRequired\""
            ),
            format!("{base}[1].fieldPath: Invalid value: \".b\": must be a valid path"),
            format!("{base}[2].rule: Required value: rule is not specified"),
        ]
    );
}

#[test]
fn old_self_is_refused_below_lists_that_cannot_correlate_items() {
    let errs = refusal(spec_field(
        json!({"type": "array", "items": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}),
    ));
    assert_eq!(
        errs,
        vec![format!(
            "{AT}.properties[spec].properties[f].items.x-kubernetes-validations[0].rule: Invalid value: \"self == oldSelf\": oldSelf cannot be used on the uncorrelatable portion of the schema within {AT}.properties[spec].properties[f]"
        )]
    );
}

#[test]
fn defaults_must_satisfy_the_rules_of_their_schema() {
    let errs = refusal(spec_field(
        json!({"type": "integer", "default": 3, "x-kubernetes-validations": [{"rule": "self % 2 == 0"}]}),
    ));
    assert_eq!(
        errs,
        vec![format!("{AT}.properties[spec].properties[f].default: Invalid value: 3: failed rule: self % 2 == 0")]
    );
}
