//! OpenAPI value validation of a custom resource, as kube-openapi's `SchemaValidator` does it
//! for Kubernetes (`k8s.io/kube-openapi/pkg/validation/validate`, converted to field errors by
//! apiextensions' `kubeOpenAPIResultToFieldErrors`), and the uniqueness of `set` and `map`
//! lists (`pkg/apiserver/schema/listtype`).
//!
//! Messages carry the value's path the way kube-openapi builds it: fields joined by `.` (keys
//! of `additionalProperties` too), list items as `[i]`.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{Additional, Checks, FieldPath, JsonType, ListType, Node, formats};
use crate::field::{FieldError, go_float};

/// Validates the whole object (the root has the empty path).
pub(super) fn validate(root: &Node, value: &Value) -> Vec<FieldError> {
    validate_at(root, value, &FieldPath::default())
}

/// Validates `value` against `node`, with errors under `at`.
pub(super) fn validate_at(node: &Node, value: &Value, at: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_node(node, value, at, &mut errs);
    errs
}

/// The `set` and `map` lists' uniqueness over the whole object.
pub(super) fn validate_lists(root: &Node, value: &Value) -> Vec<FieldError> {
    validate_lists_at(root, value, &FieldPath::default())
}

/// The `set` and `map` lists' uniqueness in `value`, with errors under `at`.
pub(super) fn validate_lists_at(node: &Node, value: &Value, at: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    lists(node, value, at, &mut errs);
    errs
}

/// The JSON type of a value as kube-openapi names it.
fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::String(_) => "string",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Whether `value` is of one of `types`: an integral float counts as an integer, and an
/// integer as a number.
fn has_type(value: &Value, types: &[JsonType]) -> bool {
    let actual = type_of(value);
    types.iter().any(|t| {
        t.name() == actual
            || (*t == JsonType::Integer && actual == "number" && value.as_f64().is_some_and(|f| f.fract() == 0.0))
            || (*t == JsonType::Number && actual == "integer")
    })
}

fn validate_node(node: &Node, value: &Value, at: &FieldPath, errs: &mut Vec<FieldError>) {
    let types: Vec<JsonType> =
        if node.int_or_string { vec![JsonType::Integer, JsonType::String] } else { node.type_.into_iter().collect() };
    type_check(&types, node.nullable, value, at, errs);
    if value.is_null() {
        enum_check(&node.checks, value, at, errs);
        return;
    }
    apply_checks(&node.checks, value, at, errs);
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match node.properties.get(key) {
                    Some(child) => validate_node(child, v, &at.child(key), errs),
                    None => match &node.additional {
                        Some(Additional::Schema(child)) => validate_node(child, v, &at.child(key), errs),
                        Some(Additional::Allows(false)) => errs.push(FieldError::invalid_json(
                            at.field(),
                            &Value::from(key.clone()),
                            format!("{}.{key} in body is a forbidden property", at.0),
                        )),
                        _ => {}
                    },
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &node.items {
                for (i, v) in items.iter().enumerate() {
                    validate_node(item, v, &at.index(i), errs);
                }
            }
        }
        _ => {}
    }
}

fn type_check(types: &[JsonType], nullable: bool, value: &Value, at: &FieldPath, errs: &mut Vec<FieldError>) {
    if types.is_empty() || (value.is_null() && nullable) || has_type(value, types) {
        return;
    }
    let expected: Vec<&str> = types.iter().map(|t| t.name()).collect();
    let actual = type_of(value);
    errs.push(FieldError::type_invalid(
        at.field(),
        &Value::from(actual),
        format!("{} in body must be of type {}: {actual:?}", at.0, expected.join(",")),
    ));
}

/// The value validations of `checks` on `value` (not null), in kube-openapi's order:
/// junctors, string, format, number, list, enum, object.
fn apply_checks(checks: &Checks, value: &Value, at: &FieldPath, errs: &mut Vec<FieldError>) {
    if let Some(t) = checks.type_ {
        type_check(&[t], false, value, at, errs);
    }
    junctors(checks, value, at, errs);
    match value {
        Value::String(s) => string_checks(checks, s, at, errs),
        Value::Number(_) => number_checks(checks, value, at, errs),
        Value::Array(items) => list_checks(checks, items, at, errs),
        _ => {}
    }
    enum_check(checks, value, at, errs);
    if let Value::Object(map) = value {
        object_checks(checks, map, at, errs);
    }
}

/// Errors of the nested schema `checks` on `value`.
fn nested(checks: &Checks, value: &Value, at: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if value.is_null() {
        if let Some(t) = checks.type_ {
            type_check(&[t], false, value, at, &mut errs);
        }
        enum_check(checks, value, at, &mut errs);
    } else {
        apply_checks(checks, value, at, &mut errs);
    }
    errs
}

/// `anyOf`, `oneOf`, `allOf` and `not`, each reported as kube-openapi does: a summary error at
/// the node plus the errors of the best failing branch.
fn junctors(checks: &Checks, value: &Value, at: &FieldPath, errs: &mut Vec<FieldError>) {
    let summary = |detail: String| FieldError::invalid_json(at.field(), &Value::from(""), detail);
    if !checks.any_of.is_empty() {
        let results: Vec<Vec<FieldError>> = checks.any_of.iter().map(|c| nested(c, value, at)).collect();
        if results.iter().all(|r| !r.is_empty()) {
            errs.push(summary(format!("{:?} must validate at least one schema (anyOf)", at.0)));
            if let Some(best) = results.into_iter().min_by_key(Vec::len) {
                errs.extend(best);
            }
        }
    }
    if !checks.one_of.is_empty() {
        let results: Vec<Vec<FieldError>> = checks.one_of.iter().map(|c| nested(c, value, at)).collect();
        let valid = results.iter().filter(|r| r.is_empty()).count();
        if valid != 1 {
            let found =
                if valid == 0 { "Found none valid".to_string() } else { format!("Found {valid} valid alternatives") };
            errs.push(summary(format!("{:?} must validate one and only one schema (oneOf). {found}", at.0)));
            if valid == 0
                && let Some(best) = results.into_iter().min_by_key(Vec::len)
            {
                errs.extend(best);
            }
        }
    }
    if !checks.all_of.is_empty() {
        let mut valid = 0;
        for c in &checks.all_of {
            let result = nested(c, value, at);
            if result.is_empty() {
                valid += 1;
            }
            errs.extend(result);
        }
        if valid != checks.all_of.len() {
            let none = if valid == 0 { ". None validated" } else { "" };
            errs.push(summary(format!("{:?} must validate all the schemas (allOf){none}", at.0)));
        }
    }
    if let Some(not) = &checks.not
        && nested(not, value, at).is_empty()
    {
        errs.push(summary(format!("{:?} must not validate the schema (not)", at.0)));
    }
}

fn string_checks(checks: &Checks, s: &str, at: &FieldPath, errs: &mut Vec<FieldError>) {
    let len = s.chars().count() as i64;
    if let Some(max) = checks.max_length
        && len > max
    {
        errs.push(FieldError::too_long_bytes(at.field(), max));
    }
    if let Some(min) = checks.min_length
        && len < min
    {
        let detail = format!("{} in body should be at least {min} chars long", at.0);
        errs.push(FieldError::invalid_json(at.field(), &Value::from(s), detail));
    }
    if let Some(pattern) = &checks.pattern
        && !pattern.regex.is_match(s)
    {
        let detail = format!("{} in body should match '{}'", at.0, pattern.source);
        errs.push(FieldError::invalid_json(at.field(), &Value::from(s), detail));
    }
    if let Some(format) = &checks.format
        && !formats::check(format, s)
    {
        let detail = format!("{} in body must be of type {format}: {s:?}", at.0);
        errs.push(FieldError::type_invalid(at.field(), &Value::from(s), detail));
    }
}

/// A bound as kube-openapi prints it: as an integer when compared with an integer.
fn bound(value: &Value, b: f64) -> String {
    if (value.is_i64() || value.is_u64()) && b.fract() == 0.0 && b.abs() < 9.0e15 {
        format!("{}", b as i64)
    } else {
        go_float(b)
    }
}

fn number_checks(checks: &Checks, value: &Value, at: &FieldPath, errs: &mut Vec<FieldError>) {
    let Some(x) = value.as_f64() else { return };
    if let Some(factor) = checks.multiple_of {
        if factor <= 0.0 {
            let detail = format!("factor MultipleOf declared for {} must be positive: {}", at.0, go_float(factor));
            errs.push(FieldError::invalid_json(at.field(), &Value::from(factor), detail));
        } else if !is_multiple(value, x, factor) {
            let detail = format!("{} in body should be a multiple of {}", at.0, bound(value, factor));
            errs.push(FieldError::invalid_json(at.field(), value, detail));
        }
    }
    if let Some(min) = checks.minimum {
        let below =
            if checks.exclusive_minimum { compare(value, x, min).is_le() } else { compare(value, x, min).is_lt() };
        if below {
            let how = if checks.exclusive_minimum { "greater than" } else { "greater than or equal to" };
            let detail = format!("{} in body should be {how} {}", at.0, bound(value, min));
            errs.push(FieldError::invalid_json(at.field(), value, detail));
        }
    }
    if let Some(max) = checks.maximum {
        let above =
            if checks.exclusive_maximum { compare(value, x, max).is_ge() } else { compare(value, x, max).is_gt() };
        if above {
            let how = if checks.exclusive_maximum { "less than" } else { "less than or equal to" };
            let detail = format!("{} in body should be {how} {}", at.0, bound(value, max));
            errs.push(FieldError::invalid_json(at.field(), value, detail));
        }
    }
}

/// `value` (also `x` as a float) against a bound: exactly for integers when the bound is one.
fn compare(value: &Value, x: f64, b: f64) -> std::cmp::Ordering {
    if let Some(i) = value.as_i64()
        && b.fract() == 0.0
        && b.abs() < 9.0e18
    {
        return i.cmp(&(b as i64));
    }
    x.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal)
}

fn is_multiple(value: &Value, x: f64, factor: f64) -> bool {
    if let Some(i) = value.as_i64()
        && factor.fract() == 0.0
        && factor < 9.0e18
    {
        return i % (factor as i64) == 0;
    }
    let m = if factor < 1.0 { (1.0 / factor) * x } else { x / factor };
    if !m.is_finite() {
        return false;
    }
    let diff = (m - m.round()).abs();
    diff == 0.0 || diff / m.abs().max(1.0) < 1e-9
}

fn list_checks(checks: &Checks, items: &[Value], at: &FieldPath, errs: &mut Vec<FieldError>) {
    if let Some(item) = &checks.items {
        for (i, v) in items.iter().enumerate() {
            errs.extend(nested(item, v, &at.index(i)));
        }
    }
    let size = items.len();
    if let Some(min) = checks.min_items
        && (size as i64) < min
    {
        let detail = format!("{} in body should have at least {min} items", at.0);
        errs.push(FieldError::invalid_json(at.field(), &Value::from(size), detail));
    }
    if let Some(max) = checks.max_items
        && (size as i64) > max
    {
        errs.push(FieldError::too_many(at.field(), size, max));
    }
}

/// JSON equality where numbers compare by value (`1` equals `1.0`), as an `enum` compares.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn enum_check(checks: &Checks, value: &Value, at: &FieldPath, errs: &mut Vec<FieldError>) {
    if checks.enum_.is_empty() || checks.enum_.iter().any(|e| json_eq(e, value)) {
        return;
    }
    let supported = checks
        .enum_
        .iter()
        .map(|e| match e {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    errs.push(FieldError::not_supported_json(at.field(), value, supported));
}

fn object_checks(checks: &Checks, map: &Map<String, Value>, at: &FieldPath, errs: &mut Vec<FieldError>) {
    let size = map.len();
    if let Some(min) = checks.min_properties
        && (size as i64) < min
    {
        let detail = format!("{} in body should have at least {min} properties", at.0);
        errs.push(FieldError::invalid_json(at.field(), &Value::from(size), detail));
    }
    if let Some(max) = checks.max_properties
        && (size as i64) > max
    {
        errs.push(FieldError::too_many(at.field(), size, max));
    }
    for (key, v) in map {
        match checks.properties.get(key) {
            Some(c) => errs.extend(nested(c, v, &at.child(key))),
            None => {
                if let Some(c) = &checks.additional {
                    errs.extend(nested(c, v, &at.child(key)));
                }
            }
        }
    }
    for name in &checks.required {
        if !map.contains_key(name) {
            errs.push(FieldError::required(at.child(name).field(), ""));
        }
    }
}

/// The uniqueness of `set` items and of `map` items' keys, everywhere in `value`.
fn lists(node: &Node, value: &Value, at: &FieldPath, errs: &mut Vec<FieldError>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match node.properties.get(key) {
                    Some(child) => lists(child, v, &at.child(key), errs),
                    None => {
                        if let Some(Additional::Schema(child)) = &node.additional {
                            lists(child, v, &at.key(key), errs);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            match &node.list_type {
                Some(ListType::Set) => {
                    for i in first_repeats(items.iter()) {
                        errs.push(FieldError::duplicate_json(at.index(i).field(), items.get(i)));
                    }
                }
                Some(ListType::Map(keys)) => map_list(keys, items, at, errs),
                _ => {}
            }
            if let Some(item) = &node.items {
                for (i, v) in items.iter().enumerate() {
                    lists(item, v, &at.index(i), errs);
                }
            }
        }
        _ => {}
    }
}

/// The positions where a value shows up for the second time (each repeated value once).
fn first_repeats<'a>(values: impl Iterator<Item = &'a Value>) -> Vec<usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, v) in values.enumerate() {
        let count = seen.entry(v.to_string()).or_insert(0);
        *count += 1;
        if *count == 2 {
            out.push(i);
        }
    }
    out
}

fn map_list(keys: &[String], items: &[Value], at: &FieldPath, errs: &mut Vec<FieldError>) {
    for (i, item) in items.iter().enumerate() {
        if !item.is_null() && !item.is_object() {
            let detail = "must be an object for an array of list-type map";
            errs.push(FieldError::invalid_json(at.index(i).field(), item, detail));
            return;
        }
    }
    // Each item's key tuple as an object of the keys it has: {} when it has none.
    let tuples: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut tuple = Map::new();
            for key in keys {
                if let Some(v) = item.get(key) {
                    tuple.insert(key.clone(), v.clone());
                }
            }
            Value::Object(tuple)
        })
        .collect();
    for i in first_repeats(tuples.iter()) {
        errs.push(FieldError::duplicate_json(at.index(i).field(), tuples.get(i)));
    }
}
