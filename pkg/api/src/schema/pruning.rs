//! Pruning: dropping the fields a structural schema does not specify
//! (`pkg/apiserver/schema/pruning`).

use serde_json::Value;

use super::{Additional, Node};

/// Fields of a resource that belong to its type and object metadata: never pruned at the root
/// of a resource (or of an embedded one).
const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Prunes the whole object and returns the removed fields' paths, sorted.
pub(super) fn prune(root: &Node, object: &mut Value) -> Vec<String> {
    let mut removed = Vec::new();
    walk(Some(root), object, true, false, &mut String::new(), &mut removed);
    removed.sort();
    removed
}

/// Prunes `value` against `node` (a default value against its own schema), `resource` when
/// the node is a resource's root.
pub(super) fn prune_at(node: &Node, value: &mut Value, resource: bool) {
    walk(Some(node), value, resource, false, &mut String::new(), &mut Vec::new());
}

/// Prunes `value`; `node` is `None` where the schema specifies nothing (everything below is
/// unknown), `resource` where `value` is a resource whose type and metadata stay, `preserve`
/// where an enclosing list preserves unknown fields (its items do too).
fn walk(
    node: Option<&Node>,
    value: &mut Value,
    resource: bool,
    preserve: bool,
    path: &mut String,
    removed: &mut Vec<String>,
) {
    let preserve = preserve || node.is_some_and(|n| n.preserve_unknown_fields);
    let resource = resource || node.is_some_and(|n| n.embedded_resource);
    match (node, value) {
        (None, _) if preserve => {}
        (None, Value::Object(map)) => {
            for key in map.keys() {
                removed.push(format!("{path}.{key}"));
            }
            map.clear();
        }
        (Some(node), Value::Object(map)) => map.retain(|key, v| {
            if resource && META_FIELDS.contains(&key.as_str()) {
                return true;
            }
            let len = path.len();
            path.push('.');
            path.push_str(key);
            let keep = match node.properties.get(key) {
                Some(child) => {
                    walk(Some(child), v, false, false, path, removed);
                    true
                }
                None => match &node.additional {
                    Some(Additional::Schema(child)) => {
                        walk(Some(child), v, false, false, path, removed);
                        true
                    }
                    Some(Additional::Allows(_)) => {
                        walk(None, v, false, false, path, removed);
                        true
                    }
                    None if preserve => true,
                    None => {
                        removed.push(path.clone());
                        false
                    }
                },
            };
            path.truncate(len);
            keep
        }),
        (node, Value::Array(items)) => {
            let item = node.and_then(|n| n.items.as_deref());
            for (i, v) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, v, false, preserve, path, removed);
                path.truncate(len);
            }
        }
        _ => {}
    }
}
