//! Merging an applied configuration into the live object, and removing fields from it
//! (structured-merge-diff's `typed.Merge` and `RemoveItems`).
//!
//! Merge rules, by the node's type:
//! - maps merge key by key; an atomic map, or a node whose kind differs between the two
//!   sides, is replaced by the configuration's value;
//! - atomic lists are replaced;
//! - set and map lists merge element by element (by value, by key fields). Order: elements
//!   only in the live list keep their place, shared elements follow the configuration's order,
//!   and new elements come right after the configuration element before them (SMD's walk).
//!
//! Removal drops members of a field set from an object: a field, a whole list element, a set
//! value. Where Kubernetes would leave `null` behind a map or list emptied by the removal (a
//! typed round trip turns that into "absent"), this module drops the field, the same object
//! once stored.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::fieldpath::{FieldSet, PathElement};
use super::object::{atomic_map, child_type_path, element_ids};
use super::typeinfo::TypeInfo;

/// Merges `config` into `live` (the object after the apply, before pruning).
pub fn merge(live: &Value, config: &Value, types: &dyn TypeInfo) -> Value {
    merge_node(Some(live), config, "", true, types)
}

fn merge_node(lhs: Option<&Value>, rhs: &Value, type_path: &str, at_root: bool, types: &dyn TypeInfo) -> Value {
    let Some(lhs) = lhs else {
        return rhs.clone();
    };
    match (lhs, rhs) {
        (Value::Object(l), Value::Object(r)) => {
            if atomic_map(types, type_path, at_root) || (l.is_empty() && r.is_empty()) {
                return rhs.clone();
            }
            let mut out = l.clone();
            for (name, value) in r {
                let child_path = child_type_path(type_path, name);
                let merged = merge_node(l.get(name), value, &child_path, false, types);
                out.insert(name.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(r)) => {
            if l.is_empty() && r.is_empty() {
                return rhs.clone();
            }
            match (element_ids(types, type_path, l), element_ids(types, type_path, r)) {
                (Some(lids), Some(rids)) => Value::Array(merge_lists(l, &lids, r, &rids, type_path, types)),
                _ => rhs.clone(),
            }
        }
        _ => rhs.clone(),
    }
}

/// structured-merge-diff's list walk: two cursors, one per list. A live element that the
/// configuration does not have is emitted where it stands; a live element that the
/// configuration does have is emitted when the configuration reaches it, except that when
/// both cursors point at the next shared element it is merged in place.
fn merge_lists(
    l: &[Value],
    lids: &[PathElement],
    r: &[Value],
    rids: &[PathElement],
    type_path: &str,
    types: &dyn TypeInfo,
) -> Vec<Value> {
    // Live elements by identity; a duplicated identity merges as if absent (SMD sets it nil).
    let mut live_by_id: BTreeMap<&PathElement, Option<&Value>> = BTreeMap::new();
    for (id, item) in lids.iter().zip(l) {
        live_by_id.entry(id).and_modify(|v| *v = None).or_insert(Some(item));
    }
    let in_config: BTreeSet<&PathElement> = rids.iter().collect();
    // Shared elements in the configuration's order.
    let shared: Vec<&PathElement> = rids.iter().filter(|id| live_by_id.contains_key(id)).collect();
    let mut next_shared = 0usize;
    let mut emitted: BTreeSet<&PathElement> = BTreeSet::new();
    let mut out = Vec::with_capacity(l.len().max(r.len()));
    let merge_item = |id: &PathElement, rv: &Value| -> Value {
        let live = live_by_id.get(id).copied().flatten();
        merge_node(live, rv, type_path, false, types)
    };
    let (mut li, mut ri) = (0usize, 0usize);
    while li < l.len() || ri < r.len() {
        if li < l.len() && ri < r.len() {
            if lids[li] == rids[ri] {
                emitted.insert(&rids[ri]);
                out.push(merge_item(&rids[ri], &r[ri]));
                li += 1;
                ri += 1;
                advance_shared(&shared, &mut next_shared, &rids[ri - 1]);
                continue;
            }
            let waiting_for = shared.get(next_shared);
            if in_config.contains(&lids[li]) && waiting_for.is_some_and(|id| **id != lids[li]) {
                // Shared, but the configuration places another shared element first.
                li += 1;
                continue;
            }
        }
        if li < l.len() {
            if !in_config.contains(&lids[li]) {
                out.push(l[li].clone());
                li += 1;
                continue;
            } else if emitted.contains(&lids[li]) {
                li += 1;
            }
        }
        if ri < r.len() {
            emitted.insert(&rids[ri]);
            out.push(merge_item(&rids[ri], &r[ri]));
            advance_shared(&shared, &mut next_shared, &rids[ri]);
            ri += 1;
        }
    }
    out
}

fn advance_shared(shared: &[&PathElement], next: &mut usize, merged: &PathElement) {
    if shared.get(*next).is_some_and(|id| *id == merged) {
        *next += 1;
    }
}

/// Removes the members of `set` from `object`. The root always stays an object.
pub fn remove(object: &Value, set: &FieldSet, types: &dyn TypeInfo) -> Value {
    if set.is_empty() {
        return object.clone();
    }
    match remove_node(object, set, "", true, types) {
        Some(value) => value,
        None => Value::Object(Map::new()),
    }
}

/// `None`: the node became empty because of the removal and should go too.
fn remove_node(value: &Value, set: &FieldSet, type_path: &str, at_root: bool, types: &dyn TypeInfo) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.is_empty() || atomic_map(types, type_path, at_root) {
                return Some(value.clone());
            }
            let mut out = Map::new();
            for (name, child) in map {
                let pe = PathElement::Field(name.clone());
                if set.has(std::slice::from_ref(&pe)) {
                    continue;
                }
                match set.child(&pe) {
                    Some(below) => {
                        let child_path = child_type_path(type_path, name);
                        if let Some(kept) = remove_node(child, below, &child_path, false, types) {
                            out.insert(name.clone(), kept);
                        }
                    }
                    None => {
                        out.insert(name.clone(), child.clone());
                    }
                }
            }
            if out.is_empty() { None } else { Some(Value::Object(out)) }
        }
        Value::Array(items) => {
            if items.is_empty() {
                return Some(value.clone());
            }
            let Some(ids) = element_ids(types, type_path, items) else {
                return Some(value.clone());
            };
            let mut out = Vec::with_capacity(items.len());
            for (id, item) in ids.iter().zip(items) {
                if set.has(std::slice::from_ref(id)) {
                    continue;
                }
                match set.child(id) {
                    Some(below) => {
                        if let Some(kept) = remove_node(item, below, type_path, false, types) {
                            out.push(kept);
                        }
                    }
                    None => out.push(item.clone()),
                }
            }
            if out.is_empty() { None } else { Some(Value::Array(out)) }
        }
        _ => Some(value.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::typeinfo::{BuiltinTypes, ListType, TypeInfo};
    use super::*;
    use serde_json::json;

    struct Lists;
    impl TypeInfo for Lists {
        fn list_type(&self, path: &str) -> ListType {
            match path {
                "set" => ListType::Set,
                "map" => ListType::Map(vec!["k".into()]),
                _ => ListType::Atomic,
            }
        }
    }

    #[test]
    fn set_lists_keep_live_order_and_append_new_values() {
        let merged = merge(&json!({"set": ["a", "b", "c"]}), &json!({"set": ["c", "x", "a"]}), &Lists);
        // SMD: "a" waits for the configuration to reach it; "b" (live only) stays; "c" merges
        // in place; "x" and "a" follow in the configuration's order.
        assert_eq!(merged, json!({"set": ["b", "c", "x", "a"]}));
        let merged = merge(&json!({"set": ["a", "b"]}), &json!({"set": ["b", "z"]}), &Lists);
        assert_eq!(merged, json!({"set": ["a", "b", "z"]}));
    }

    #[test]
    fn map_lists_merge_elements_by_key_and_atomic_lists_are_replaced() {
        let live = json!({"map": [{"k": 1, "a": 1}, {"k": 2, "a": 2}], "atomic": [1, 2, 3]});
        let config = json!({"map": [{"k": 2, "b": 3}, {"k": 3}], "atomic": [4]});
        assert_eq!(
            merge(&live, &config, &Lists),
            json!({"map": [{"k": 1, "a": 1}, {"k": 2, "a": 2, "b": 3}, {"k": 3}], "atomic": [4]})
        );
    }

    #[test]
    fn atomic_maps_are_replaced_and_other_maps_merge() {
        let types = BuiltinTypes { kind: "Deployment" };
        let live = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "replicas": 1}});
        let config = json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}});
        assert_eq!(
            merge(&live, &config, &types),
            json!({"spec": {"selector": {"matchLabels": {"b": "2"}}, "replicas": 1}})
        );
    }

    #[test]
    fn removal_drops_members_and_maps_it_empties() {
        let obj = json!({"spec": {"a": 1}, "set": ["x", "y"], "map": [{"k": 1, "v": 1}, {"k": 2}], "keep": 1});
        let mut set = FieldSet::new();
        set.insert(&[PathElement::Field("spec".into()), PathElement::Field("a".into())]);
        set.insert(&[PathElement::Field("set".into()), PathElement::Value(json!("x"))]);
        set.insert(&[PathElement::Field("map".into()), PathElement::Key(vec![("k".into(), json!(1))])]);
        assert_eq!(remove(&obj, &set, &Lists), json!({"set": ["y"], "map": [{"k": 2}], "keep": 1}));
    }
}
