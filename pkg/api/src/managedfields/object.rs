//! Reading an object as a tree of owned fields: its field set (structured-merge-diff's
//! `ToFieldSet`) and the difference between two versions of it (`Compare`).
//!
//! Leaves are scalars, `null`, empty maps, atomic maps and atomic lists. Elements of set and
//! map lists are owned as a whole *and* through their fields, so a map-list element appears as
//! `k:{…}` with `"."` next to its fields. A list whose elements do not fit its declared type
//! (a map-list element that is not an object or carries none of the key fields, a set element
//! that is not a scalar) is read as atomic rather than rejected, so reading never fails; the
//! applied configuration is checked strictly by [`validate`] instead.

use std::collections::BTreeMap;

use serde_json::Value;

use super::fieldpath::{FieldSet, Path, PathElement, path_to_string, values_equal};
use super::typeinfo::{ListType, TypeInfo};

/// The type path of field `name` below `parent` (`""` is the root).
pub(crate) fn child_type_path(parent: &str, name: &str) -> String {
    if parent.is_empty() { name.to_string() } else { format!("{parent}.{name}") }
}

/// Why a list element cannot be placed in its list.
pub(crate) fn element_id(
    types: &dyn TypeInfo,
    type_path: &str,
    list_type: &ListType,
    item: &Value,
) -> Result<PathElement, &'static str> {
    match list_type {
        ListType::Atomic => Err("atomic lists have no element identity"),
        ListType::Set => match item {
            Value::Object(_) => Err("a set list may not hold an object"),
            Value::Array(_) => Err("a set list may not hold a list"),
            Value::Null => Err("a set list may not hold null"),
            scalar => Ok(PathElement::Value(scalar.clone())),
        },
        ListType::Map(keys) => {
            let Value::Object(map) = item else {
                return Err("a map list may only hold objects");
            };
            let mut fields: Vec<(String, Value)> = Vec::with_capacity(keys.len());
            for key in keys {
                if let Some(value) = map.get(key) {
                    fields.push((key.clone(), value.clone()));
                } else if let Some(default) = types.key_default(type_path, key) {
                    fields.push((key.clone(), default));
                }
            }
            if !keys.is_empty() && fields.is_empty() {
                return Err("the element has none of the list's key fields");
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(PathElement::Key(fields))
        }
    }
}

/// The identities of a granular list's elements, or `None` when the list is atomic or does
/// not fit its declared type.
pub(crate) fn element_ids(types: &dyn TypeInfo, type_path: &str, items: &[Value]) -> Option<Vec<PathElement>> {
    let list_type = types.list_type(type_path);
    if list_type == ListType::Atomic {
        return None;
    }
    items.iter().map(|item| element_id(types, type_path, &list_type, item).ok()).collect()
}

/// Whether the map at `type_path` is owned as a whole (the root never is).
pub(crate) fn atomic_map(types: &dyn TypeInfo, type_path: &str, at_root: bool) -> bool {
    !at_root && types.map_is_atomic(type_path)
}

/// The fields `object` sets, as an applier would own them.
pub fn field_set(object: &Value, types: &dyn TypeInfo) -> FieldSet {
    let mut set = FieldSet::new();
    collect(object, "", &mut Vec::new(), &mut set, types);
    set
}

fn collect(value: &Value, type_path: &str, path: &mut Path, set: &mut FieldSet, types: &dyn TypeInfo) {
    match value {
        Value::Object(map) => {
            if atomic_map(types, type_path, path.is_empty()) {
                set.insert(path);
                return;
            }
            for (name, child) in map {
                let child_path = child_type_path(type_path, name);
                path.push(PathElement::Field(name.clone()));
                collect(child, &child_path, path, set, types);
                let empty_map = matches!(child, Value::Object(m) if m.is_empty());
                if child.is_null() || empty_map {
                    set.insert(path);
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            let Some(ids) = element_ids(types, type_path, items) else {
                set.insert(path);
                return;
            };
            let mut count: BTreeMap<&PathElement, usize> = BTreeMap::new();
            for id in &ids {
                *count.entry(id).or_default() += 1;
            }
            for (id, item) in ids.iter().zip(items) {
                path.push(id.clone());
                if count.get(id).copied().unwrap_or(0) < 2 {
                    collect(item, type_path, path, set, types);
                }
                // A duplicated element is owned as a whole, without its fields.
                set.insert(path);
                path.pop();
            }
        }
        _ => set.insert(path),
    }
}

/// What changed between two versions of an object (structured-merge-diff's `Comparison`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Paths present only in the new version (including the maps and elements that hold
    /// them, when those are new too).
    pub added: FieldSet,
    /// Leaves present in both whose value differs.
    pub modified: FieldSet,
    /// Paths present only in the old version.
    pub removed: FieldSet,
}

impl Comparison {
    /// Drops every path at or below a member of `ignored`.
    pub fn exclude(&self, ignored: &FieldSet) -> Comparison {
        Comparison {
            added: self.added.recursive_difference(ignored),
            modified: self.modified.recursive_difference(ignored),
            removed: self.removed.recursive_difference(ignored),
        }
    }

    /// Added or modified paths: what the writer takes from everyone else.
    pub fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }
}

/// Compares two versions of an object.
pub fn compare(old: &Value, new: &Value, types: &dyn TypeInfo) -> Comparison {
    let mut out = Comparison::default();
    compare_node(Some(old), Some(new), "", &mut Vec::new(), &mut out, types);
    out
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Shape {
    Map,
    List,
    Scalar,
}

fn shape(value: &Value) -> Shape {
    match value {
        Value::Object(_) => Shape::Map,
        Value::Array(_) => Shape::List,
        _ => Shape::Scalar,
    }
}

fn empty_or_none(value: Option<&Value>) -> bool {
    match value {
        None => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(l)) => l.is_empty(),
        Some(_) => false,
    }
}

fn compare_node(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    type_path: &str,
    path: &mut Path,
    out: &mut Comparison,
    types: &dyn TypeInfo,
) {
    let at_root = path.is_empty();
    let shape_of = match (lhs, rhs) {
        (None, None) => return,
        (Some(l), Some(r)) if shape(l) != shape(r) => {
            // The node changed kind: it is modified, and the structure on each side was
            // removed or added below it.
            out.modified.insert(path);
            compare_node(Some(l), None, type_path, path, out, types);
            out.removed = out.removed.difference(&single(path));
            compare_node(None, Some(r), type_path, path, out, types);
            out.added = out.added.difference(&single(path));
            return;
        }
        (Some(v), _) | (None, Some(v)) => shape(v),
    };
    let leaf = match shape_of {
        Shape::Scalar => true,
        Shape::Map => atomic_map(types, type_path, at_root) || (empty_or_none(lhs) && empty_or_none(rhs)),
        Shape::List => {
            let granular = [lhs, rhs].into_iter().flatten().all(|v| match v {
                Value::Array(items) => element_ids(types, type_path, items).is_some(),
                _ => false,
            });
            !granular || (empty_or_none(lhs) && empty_or_none(rhs))
        }
    };
    if leaf {
        match (lhs, rhs) {
            (None, Some(_)) => out.added.insert(path),
            (Some(_), None) => out.removed.insert(path),
            (Some(l), Some(r)) if !values_equal(l, r) => out.modified.insert(path),
            _ => {}
        }
        return;
    }
    match shape_of {
        Shape::Map => {
            let empty = serde_json::Map::new();
            let lmap = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let rmap = rhs.and_then(Value::as_object).unwrap_or(&empty);
            let mut names: Vec<&String> = lmap.keys().collect();
            names.extend(rmap.keys().filter(|k| !lmap.contains_key(*k)));
            for name in names {
                let child_path = child_type_path(type_path, name);
                path.push(PathElement::Field(name.clone()));
                compare_node(lmap.get(name), rmap.get(name), &child_path, path, out, types);
                path.pop();
            }
        }
        Shape::List => compare_lists(lhs, rhs, type_path, path, out, types),
        Shape::Scalar => {}
    }
    match (lhs, rhs) {
        (None, Some(_)) => out.added.insert(path),
        (Some(_), None) => out.removed.insert(path),
        _ => {}
    }
}

fn single(path: &[PathElement]) -> FieldSet {
    let mut set = FieldSet::new();
    set.insert(path);
    set
}

fn compare_lists(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    type_path: &str,
    path: &mut Path,
    out: &mut Comparison,
    types: &dyn TypeInfo,
) {
    let items = |v: Option<&Value>| -> Vec<Value> { v.and_then(Value::as_array).cloned().unwrap_or_default() };
    let (litems, ritems) = (items(lhs), items(rhs));
    let lids = element_ids(types, type_path, &litems).unwrap_or_default();
    let rids = element_ids(types, type_path, &ritems).unwrap_or_default();
    // Elements grouped by identity, in first-seen order: old ones first, then new ones.
    let mut order: Vec<PathElement> = Vec::new();
    let mut groups: BTreeMap<PathElement, (Vec<&Value>, Vec<&Value>)> = BTreeMap::new();
    for (id, item) in lids.iter().zip(&litems) {
        let group = groups.entry(id.clone()).or_insert_with(|| {
            order.push(id.clone());
            (Vec::new(), Vec::new())
        });
        group.0.push(item);
    }
    for (id, item) in rids.iter().zip(&ritems) {
        let group = groups.entry(id.clone()).or_insert_with(|| {
            order.push(id.clone());
            (Vec::new(), Vec::new())
        });
        group.1.push(item);
    }
    for id in order {
        let Some((l, r)) = groups.get(&id) else { continue };
        path.push(id);
        match (l.len(), r.len()) {
            (0..=1, 0..=1) => compare_node(l.first().copied(), r.first().copied(), type_path, path, out, types),
            (2.., 2..) => {
                let same = l.len() == r.len() && l.iter().zip(r).all(|(a, b)| values_equal(a, b));
                if !same {
                    out.modified.insert(path);
                }
            }
            (2.., _) => {
                if let Some(first) = r.first() {
                    compare_node(None, Some(first), type_path, path, out, types);
                }
                out.removed.insert(path);
            }
            (_, _) => {
                if let Some(first) = l.first() {
                    compare_node(Some(first), None, type_path, path, out, types);
                }
                out.added.insert(path);
            }
        }
        path.pop();
    }
}

/// A problem in an applied configuration that Kubernetes rejects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig {
    /// Where, as Kubernetes prints paths (`.spec.containers`).
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

/// Checks that every granular list of an applied configuration can be merged: each element
/// identifiable by its list type, and no two elements with the same identity.
pub fn validate(config: &Value, types: &dyn TypeInfo) -> Result<(), InvalidConfig> {
    validate_node(config, "", &mut Vec::new(), types)
}

fn validate_node(value: &Value, type_path: &str, path: &mut Path, types: &dyn TypeInfo) -> Result<(), InvalidConfig> {
    match value {
        Value::Object(map) => {
            if atomic_map(types, type_path, path.is_empty()) {
                return Ok(());
            }
            for (name, child) in map {
                let child_path = child_type_path(type_path, name);
                path.push(PathElement::Field(name.clone()));
                validate_node(child, &child_path, path, types)?;
                path.pop();
            }
            Ok(())
        }
        Value::Array(items) => {
            let list_type = types.list_type(type_path);
            if list_type == ListType::Atomic {
                return Ok(());
            }
            let mut seen: BTreeMap<PathElement, ()> = BTreeMap::new();
            for (index, item) in items.iter().enumerate() {
                let id = element_id(types, type_path, &list_type, item).map_err(|reason| InvalidConfig {
                    path: path_to_string(path),
                    reason: format!("element {index}: {reason}"),
                })?;
                if seen.insert(id.clone(), ()).is_some() {
                    return Err(InvalidConfig {
                        path: path_to_string(path),
                        reason: format!("duplicate entries for key {id}"),
                    });
                }
                path.push(id);
                validate_node(item, type_path, path, types)?;
                path.pop();
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::typeinfo::BuiltinTypes;
    use super::*;
    use serde_json::json;

    #[test]
    fn field_set_owns_leaves_elements_and_empty_maps() {
        let types = BuiltinTypes { kind: "Deployment" };
        let obj = json!({
            "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [
                    {"name": "web", "image": "nginx", "args": ["-g"], "ports": [{"containerPort": 80}]}
                ]}}
            }
        });
        let set = field_set(&obj, &types);
        assert_eq!(
            set.to_fields_v1(),
            json!({
                "f:metadata": {"f:name": {}, "f:labels": {"f:app": {}}, "f:annotations": {}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                        ".": {}, "f:name": {}, "f:image": {}, "f:args": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                    }}}}
                }
            })
        );
    }

    #[test]
    fn compare_reports_added_modified_and_removed_paths() {
        let types = BuiltinTypes { kind: "Deployment" };
        let old = json!({"spec": {"replicas": 1, "paused": false}});
        let new = json!({"spec": {"replicas": 2, "minReadySeconds": 5}, "metadata": {"labels": {"a": "b"}}});
        let c = compare(&old, &new, &types);
        assert_eq!(c.modified.to_fields_v1(), json!({"f:spec": {"f:replicas": {}}}));
        assert_eq!(c.removed.to_fields_v1(), json!({"f:spec": {"f:paused": {}}}));
        assert_eq!(
            c.added.to_fields_v1(),
            json!({"f:spec": {"f:minReadySeconds": {}}, "f:metadata": {".": {}, "f:labels": {".": {}, "f:a": {}}}})
        );
    }

    #[test]
    fn malformed_lists_are_read_as_atomic_but_refused_in_a_config() {
        let types = BuiltinTypes { kind: "Pod" };
        let obj = json!({"spec": {"containers": ["not-an-object"]}});
        assert_eq!(field_set(&obj, &types).to_fields_v1(), json!({"f:spec": {"f:containers": {}}}));
        let err = validate(&obj, &types).unwrap_err();
        assert_eq!(err.path, ".spec.containers");
        let dup = json!({"spec": {"containers": [{"name": "a"}, {"name": "a"}]}});
        assert!(validate(&dup, &types).unwrap_err().reason.contains("duplicate entries"));
    }
}
