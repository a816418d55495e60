//! Defaulting (`pkg/apiserver/schema/defaulting`): dropping `null`s that may not be there,
//! then filling in `default`s.

use serde_json::Value;

use super::{Additional, Node};

/// Whether `value` is a `null` the schema neither allows nor defaults: Kubernetes drops it
/// before defaulting.
fn is_unwanted_null(value: &Value, node: Option<&Node>) -> bool {
    value.is_null() && node.is_some_and(|n| !n.nullable && n.default.is_none())
}

/// Whether `value` is a `null` the schema does not allow (then a default replaces it).
fn is_non_nullable_null(value: &Value, node: Option<&Node>) -> bool {
    value.is_null() && node.is_some_and(|n| !n.nullable)
}

/// The schema of field `key` of an object of schema `node`.
fn field_schema<'a>(node: Option<&'a Node>, key: &str) -> Option<&'a Node> {
    let node = node?;
    match node.properties.get(key) {
        Some(child) => Some(child),
        None => match &node.additional {
            Some(Additional::Schema(child)) => Some(child),
            _ => None,
        },
    }
}

/// Drops the object fields that are `null` though neither nullable nor defaulted.
pub(super) fn prune_nulls(node: &Node, value: &mut Value) {
    prune_nulls_at(Some(node), value);
}

fn prune_nulls_at(node: Option<&Node>, value: &mut Value) {
    match value {
        Value::Object(map) => map.retain(|key, v| {
            let schema = field_schema(node, key);
            if is_unwanted_null(v, schema) {
                return false;
            }
            prune_nulls_at(schema, v);
            true
        }),
        Value::Array(items) => {
            let item = node.and_then(|n| n.items.as_deref());
            for v in items {
                prune_nulls_at(item, v);
            }
        }
        _ => {}
    }
}

/// Fills in the defaults of absent (or non-nullable `null`) fields of present objects, and
/// of non-nullable `null` list items and map values, then recurses into every value.
pub(super) fn apply(node: &Node, value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in &node.properties {
                if let Some(default) = &child.default
                    && map.get(key).is_none_or(|v| is_non_nullable_null(v, Some(child)))
                {
                    map.insert(key.clone(), default.clone());
                }
            }
            for (key, v) in map.iter_mut() {
                match node.properties.get(key) {
                    Some(child) => apply(child, v),
                    None => {
                        if let Some(Additional::Schema(child)) = &node.additional {
                            if let Some(default) = &child.default
                                && is_non_nullable_null(v, Some(child))
                            {
                                *v = default.clone();
                            }
                            apply(child, v);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &node.items {
                for v in items {
                    if let Some(default) = &item.default
                        && is_non_nullable_null(v, Some(item))
                    {
                        *v = default.clone();
                    }
                    apply(item, v);
                }
            }
        }
        _ => {}
    }
}
