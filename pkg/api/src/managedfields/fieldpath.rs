//! Field paths and sets of them, and their wire form `FieldsV1`
//! (sigs.k8s.io/structured-merge-diff `fieldpath`).
//!
//! A [`Path`] walks from the object's root to one field: map fields by name, elements of a
//! map list by their key fields, elements of a set list by their value. A [`FieldSet`] is a tree
//! of such paths; a path is a *member* when the set owns that node itself (a leaf such as
//! `.spec.replicas`, or a list element as a whole), while *children* only lead to members
//! further down. FieldsV1 writes that tree as nested JSON objects: `f:<name>` for a field,
//! `k:<json>` for a map-list element, `v:<json>` for a set-list value, `i:<n>` for an index
//! (never produced here: atomic lists are owned whole), and `"."` inside an element that is
//! both a member and has children.
//!
//! Invariants: a [`FieldSet`] never holds an empty child set, so two sets with the same paths
//! compare equal; path elements are ordered as structured-merge-diff orders them (field names
//! before keys before values before indices; numbers before strings before booleans before
//! lists before maps before `null`).
//! Not promised: FieldsV1 object keys come out in `serde_json`'s map order (sorted as strings),
//! not in structured-merge-diff's emission order; both decode to the same set.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a [`Path`].
#[derive(Debug, Clone)]
pub enum PathElement {
    /// A field of a map (`f:name`).
    Field(String),
    /// The element of a map list whose key fields have these values, sorted by field name
    /// (`k:{"name":"web"}`).
    Key(Vec<(String, Value)>),
    /// The element of a set list equal to this value (`v:"x"`).
    Value(Value),
    /// A list position (`i:0`). Read from FieldsV1 for completeness; never produced here.
    Index(i64),
}

/// A path from the object's root, e.g. `.spec.containers[name="web"].image`.
pub type Path = Vec<PathElement>;

impl PathElement {
    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// The FieldsV1 key of this element (`f:spec`, `k:{"name":"web"}`, `v:"x"`, `i:0`).
    pub fn to_fields_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                // Written by hand so that the key fields keep their sorted order whatever
                // serde_json's map does.
                let parts: Vec<String> =
                    fields.iter().map(|(name, value)| format!("{}:{}", Value::String(name.clone()), value)).collect();
                format!("k:{{{}}}", parts.join(","))
            }
            PathElement::Value(value) => format!("v:{value}"),
            PathElement::Index(index) => format!("i:{index}"),
        }
    }

    /// Parses a FieldsV1 key. `Ok(None)` for a well-formed key of an unknown type, which
    /// Kubernetes skips.
    pub fn from_fields_key(key: &str) -> Result<Option<PathElement>, FieldsV1Error> {
        let bad = |reason: &str| FieldsV1Error { key: key.to_string(), reason: reason.to_string() };
        let Some((kind, rest)) = key.split_once(':') else {
            return Err(bad("missing colon"));
        };
        if kind.len() != 1 {
            return Err(bad("the type must be one character"));
        }
        match kind {
            "f" => Ok(Some(PathElement::Field(rest.to_string()))),
            "v" => {
                let value: Value = serde_json::from_str(rest).map_err(|e| bad(&e.to_string()))?;
                Ok(Some(PathElement::Value(value)))
            }
            "k" => {
                let value: Value = serde_json::from_str(rest).map_err(|e| bad(&e.to_string()))?;
                let Value::Object(map) = value else {
                    return Err(bad("a key must be a JSON object"));
                };
                // serde_json's map is sorted by name, as Kubernetes sorts key fields.
                Ok(Some(PathElement::Key(map.into_iter().collect())))
            }
            "i" => rest.parse::<i64>().map(|i| Some(PathElement::Index(i))).map_err(|e| bad(&e.to_string())),
            _ => Ok(None),
        }
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => compare_fields(a, b),
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

impl fmt::Display for PathElement {
    /// As structured-merge-diff prints it in conflict messages: `.name`, `[name="web"]`,
    /// `[="x"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> =
                    fields.iter().map(|(name, value)| format!("{name}={}", value_to_string(value))).collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(value) => write!(f, "[={}]", value_to_string(value)),
            PathElement::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// A path printed as Kubernetes prints it: `.spec.containers[name="web"].image`.
pub fn path_to_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// structured-merge-diff's `value.ToString`: strings quoted, maps as `k=v` pairs.
fn value_to_string(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!("[{}]", items.iter().map(value_to_string).collect::<Vec<_>>().join(",")),
        Value::Object(map) => map.iter().map(|(k, v)| format!("{k}={}", value_to_string(v))).collect(),
    }
}

fn type_rank(value: &Value) -> u8 {
    match value {
        Value::Number(_) => 0,
        Value::String(_) => 1,
        Value::Bool(_) => 2,
        Value::Array(_) => 3,
        Value::Object(_) => 4,
        Value::Null => 5,
    }
}

fn compare_numbers(a: &serde_json::Number, b: &serde_json::Number) -> Ordering {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x.cmp(&y);
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x.cmp(&y);
    }
    let x = a.as_f64().unwrap_or(f64::NAN);
    let y = b.as_f64().unwrap_or(f64::NAN);
    x.total_cmp(&y)
}

/// A total order on JSON values, structured-merge-diff's: numbers (compared numerically, so
/// `1` equals `1.0`), then strings, booleans, lists, maps, and `null` last.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (l, r) in x.iter().zip(y) {
                let c = compare_values(l, r);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            // serde_json's map iterates in key order.
            for ((lk, lv), (rk, rv)) in x.iter().zip(y) {
                let c = lk.cmp(rk).then_with(|| compare_values(lv, rv));
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Null, Value::Null) => Ordering::Equal,
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

/// Whether two JSON values are equal the way structured-merge-diff compares them (numbers
/// numerically).
pub fn values_equal(a: &Value, b: &Value) -> bool {
    compare_values(a, b) == Ordering::Equal
}

fn compare_fields(a: &[(String, Value)], b: &[(String, Value)]) -> Ordering {
    for ((ln, lv), (rn, rv)) in a.iter().zip(b) {
        let c = ln.cmp(rn).then_with(|| compare_values(lv, rv));
        if c != Ordering::Equal {
            return c;
        }
    }
    a.len().cmp(&b.len())
}

/// A FieldsV1 document that is not a well-formed field set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid FieldsV1 key {key:?}: {reason}")]
pub struct FieldsV1Error {
    /// The offending key (or a description of the offending value).
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A set of field paths: what one manager owns, or what changed between two objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// Nodes owned themselves (leaves, list elements as a whole).
    members: BTreeSet<PathElement>,
    /// Sub-trees; never empty.
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the set has no path at all.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds `path`. The empty path (the root itself) is never a member and is ignored.
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is a member.
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// This set without the members that still have owned paths below them in `owned`: a map
    /// or list element whose own membership (`"."`) goes while fields inside it stay owned is
    /// not removed as a whole (structured-merge-diff adds such items back after pruning).
    pub fn without_owned_parents(&self, owned: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for member in &self.members {
            if owned.child(member).is_none_or(FieldSet::is_empty) {
                out.members.insert(member.clone());
            }
        }
        for (element, below) in &self.children {
            let kept = match owned.child(element) {
                Some(owned_below) => below.without_owned_parents(owned_below),
                None => below.clone(),
            };
            if !kept.is_empty() {
                out.children.insert(element.clone(), kept);
            }
        }
        out
    }

    /// The paths below `element`, relative to it (structured-merge-diff's `WithPrefix`).
    pub fn child(&self, element: &PathElement) -> Option<&FieldSet> {
        self.children.get(element)
    }

    /// Every path in the set (members only), in order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        // Members and children merged in element order, as structured-merge-diff iterates.
        let mut members = self.members.iter().peekable();
        let mut children = self.children.iter().peekable();
        loop {
            let take_member = match (members.peek(), children.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(m), Some((c, _))) => *m <= *c,
            };
            if take_member {
                if let Some(m) = members.next() {
                    prefix.push(m.clone());
                    out.push(prefix.clone());
                    prefix.pop();
                }
            } else if let Some((c, set)) = children.next() {
                prefix.push(c.clone());
                set.collect(prefix, out);
                prefix.pop();
            }
        }
    }

    /// Paths in either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, set) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(set),
                None => set.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    /// Paths in `self` but not in `other` (exact paths: a member of `other` does not take
    /// away what lies below it; see [`FieldSet::recursive_difference`]).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, set) in &self.children {
            let rest = match other.children.get(pe) {
                Some(theirs) => set.difference(theirs),
                None => set.clone(),
            };
            if !rest.is_empty() {
                children.insert(pe.clone(), rest);
            }
        }
        FieldSet { members, children }
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, set) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                let both = set.intersection(theirs);
                if !both.is_empty() {
                    children.insert(pe.clone(), both);
                }
            }
        }
        FieldSet { members, children }
    }

    /// Paths in `self` that are neither in `other` nor below one of `other`'s members: how
    /// ignored fields (`status`, say) are cut out with everything under them.
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, set) in &self.children {
            if other.members.contains(pe) {
                continue;
            }
            let rest = match other.children.get(pe) {
                Some(theirs) => set.recursive_difference(theirs),
                None => set.clone(),
            };
            if !rest.is_empty() {
                children.insert(pe.clone(), rest);
            }
        }
        FieldSet { members, children }
    }

    /// The set in FieldsV1 form, as stored in `ManagedFieldsEntry.fieldsV1`.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.fields_v1_contents(false))
    }

    fn fields_v1_contents(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self && !self.is_empty() {
            out.insert(".".to_string(), Value::Object(Map::new()));
        }
        for member in &self.members {
            if !self.children.contains_key(member) {
                out.insert(member.to_fields_key(), Value::Object(Map::new()));
            }
        }
        for (pe, set) in &self.children {
            let is_member = self.members.contains(pe);
            out.insert(pe.to_fields_key(), Value::Object(set.fields_v1_contents(is_member)));
        }
        out
    }

    /// Reads a FieldsV1 document. Keys of unknown types are skipped, as Kubernetes does.
    pub fn from_fields_v1(fields: &Value) -> Result<FieldSet, FieldsV1Error> {
        let Value::Object(map) = fields else {
            return Err(FieldsV1Error { key: fields.to_string(), reason: "FieldsV1 must be a JSON object".into() });
        };
        Ok(Self::read_contents(map)?.0)
    }

    /// Returns the children read from `map` and whether `map` marks its node as a member
    /// (`"."`, or no children at all).
    fn read_contents(map: &Map<String, Value>) -> Result<(FieldSet, bool), FieldsV1Error> {
        let mut set = FieldSet::new();
        let mut is_member = false;
        for (key, value) in map {
            if key == "." {
                is_member = true;
                continue;
            }
            let Some(pe) = PathElement::from_fields_key(key)? else {
                continue;
            };
            let Value::Object(inner) = value else {
                return Err(FieldsV1Error { key: key.clone(), reason: "value must be a JSON object".into() });
            };
            let (grandchildren, child_is_member) = Self::read_contents(inner)?;
            if child_is_member {
                set.members.insert(pe.clone());
            }
            if !grandchildren.is_empty() {
                set.children.insert(pe, grandchildren);
            }
        }
        if set.is_empty() {
            is_member = true;
        }
        Ok((set, is_member))
    }
}

/// Parses a dotted field path (`metadata.labels`) into field elements.
pub(crate) fn dotted(path: &str) -> Path {
    path.split('.').filter(|s| !s.is_empty()).map(|s| PathElement::Field(s.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.to_string())
    }

    #[test]
    fn fields_v1_round_trips_members_keys_values_and_dots() {
        let doc = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}, "f:finalizers": {"v:\"a/b\"": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}},
                       "f:replicas": {}}
        });
        let set = FieldSet::from_fields_v1(&doc).unwrap();
        assert!(set.has(&[f("spec"), f("replicas")]));
        assert!(set.has(&[f("metadata"), f("labels")]));
        let web = PathElement::Key(vec![("name".into(), json!("web"))]);
        assert!(set.has(&[f("spec"), f("containers"), web.clone()]));
        assert!(set.has(&[f("spec"), f("containers"), web, f("image")]));
        assert!(set.has(&[f("metadata"), f("finalizers"), PathElement::Value(json!("a/b"))]));
        assert!(!set.has(&[f("spec")]));
        assert_eq!(set.to_fields_v1(), doc);
    }

    #[test]
    fn multi_key_elements_are_written_with_sorted_key_fields() {
        let pe = PathElement::Key(vec![("containerPort".into(), json!(80)), ("protocol".into(), json!("TCP"))]);
        assert_eq!(pe.to_fields_key(), r#"k:{"containerPort":80,"protocol":"TCP"}"#);
        assert_eq!(PathElement::from_fields_key(&pe.to_fields_key()).unwrap(), Some(pe.clone()));
        assert_eq!(pe.to_string(), r#"[containerPort=80,protocol="TCP"]"#);
    }

    #[test]
    fn malformed_fields_v1_is_an_error_and_unknown_key_types_are_skipped() {
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"nocolon": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"k:[1]": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!([])).is_err());
        let set = FieldSet::from_fields_v1(&json!({"x:y": {}, "f:a": {}})).unwrap();
        assert_eq!(set.paths(), vec![vec![f("a")]]);
    }

    #[test]
    fn set_algebra_keeps_no_empty_children() {
        let mut a = FieldSet::new();
        a.insert(&[f("spec"), f("replicas")]);
        a.insert(&[f("spec"), f("paused")]);
        let mut b = FieldSet::new();
        b.insert(&[f("spec"), f("replicas")]);
        b.insert(&[f("spec"), f("paused")]);
        assert!(a.difference(&b).is_empty());
        assert_eq!(a.difference(&b), FieldSet::new());
        assert_eq!(a.intersection(&b), a);
        let mut c = FieldSet::new();
        c.insert(&[f("status")]);
        let u = a.union(&c);
        assert_eq!(u.paths().len(), 3);
        let mut spec = FieldSet::new();
        spec.insert(&[f("spec")]);
        assert_eq!(u.recursive_difference(&spec), c);
        assert_eq!(u.difference(&spec), u);
    }

    #[test]
    fn numbers_compare_numerically_and_types_in_kubernetes_order() {
        assert!(values_equal(&json!(1), &json!(1.0)));
        assert_eq!(compare_values(&json!(9), &json!(10)), Ordering::Less);
        assert_eq!(compare_values(&json!(10), &json!("1")), Ordering::Less);
        assert_eq!(compare_values(&json!("z"), &json!(true)), Ordering::Less);
        assert_eq!(compare_values(&json!({}), &json!(null)), Ordering::Less);
    }
}
