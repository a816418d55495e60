//! Strategic merge patch, as `kubectl apply`, `kubectl cordon` and the Python client send it
//! (`application/strategic-merge-patch+json`), with the semantics of
//! `k8s.io/apimachinery/pkg/util/strategicpatch`.
//!
//! Kubernetes reads each list's merge strategy from struct tags (`patchStrategy`,
//! `patchMergeKey`; `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key` in OpenAPI).
//! Here they live in one table, `MERGE_STRATEGIES`, keyed by kind and by the path of field
//! names from the object's root (list indices left out), with the pod spec entries written once
//! and placed under every kind that embeds a pod spec (`POD_SPEC_ROOTS`).
//!
//! Promises (each has a test below):
//! - maps merge recursively and `null` deletes a key;
//! - a list with no merge strategy is replaced by the patch's list;
//! - a list of objects with a merge key merges element-wise by that key: a patch element
//!   updates the original element with the same key recursively, a new one is appended;
//!   original elements keep their order;
//! - a primitive list with the merge strategy (`metadata.finalizers`) becomes the union,
//!   original order first;
//! - directives are honoured and never remain in the result: `$patch: replace|delete|merge` in a
//!   map or list element, `$setElementOrder/<field>` (the listed elements first, in that order,
//!   then the others in their merged order), `$deleteFromPrimitiveList/<field>` (applied after
//!   the field's own merge) and `$retainKeys`;
//! - a patch that is not an object, a list element without its merge key and an unknown
//!   `$patch` value are errors, never panics.
//!
//! Where we differ from Kubernetes (on purpose, each only where Kubernetes would leave
//! directives or `null`s in the stored object): values added where the original has nothing, and
//! lists replaced wholesale, are cleaned of directives and `null`s as a merge into an empty
//! value; `$patch: merge` is accepted as "merge as usual" (Kubernetes rejects it);
//! `$deleteFromPrimitiveList` only ever removes values, whatever the list's strategy.
//! Not promised: Kubernetes' exact interleaving of server-only elements with patch elements when
//! `$setElementOrder` omits some of them; strategies of kinds missing from the table (their
//! lists are replaced, except `metadata.finalizers` and `metadata.ownerReferences`).

use serde_json::{Map, Value};

/// Why a strategic merge patch could not be applied. Each message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch body is not a JSON object.
    #[error("strategic merge patch must be a JSON object, got {found}")]
    PatchNotObject {
        /// The JSON type found instead.
        found: &'static str,
    },
    /// The object being patched is not a JSON object.
    #[error("object to patch must be a JSON object, got {found}")]
    OriginalNotObject {
        /// The JSON type found instead.
        found: &'static str,
    },
    /// A `$patch` directive has a value other than `replace`, `delete` or `merge`.
    #[error("unknown $patch directive {value} at {path}: expected \"replace\", \"delete\" or \"merge\"")]
    UnknownDirective {
        /// Where in the object (field path).
        path: String,
        /// The directive's value, as JSON.
        value: String,
    },
    /// A list element in the patch lacks the list's merge key.
    #[error("list element {element} at {path} has no merge key {key:?}")]
    MissingMergeKey {
        /// The list's field path.
        path: String,
        /// The merge key of the list.
        key: &'static str,
        /// The offending element, as JSON.
        element: String,
    },
    /// A list merged by key has an element that is not an object.
    #[error("list element {element} at {path} must be an object with merge key {key:?}")]
    ElementNotObject {
        /// The list's field path.
        path: String,
        /// The merge key of the list.
        key: &'static str,
        /// The offending element, as JSON.
        element: String,
    },
    /// A `$setElementOrder`, `$deleteFromPrimitiveList` or `$retainKeys` value is not a list
    /// (of strings, for `$retainKeys`).
    #[error("directive {directive} at {path} must be a list, got {found}")]
    DirectiveNotList {
        /// The directive key as it appears in the patch.
        directive: String,
        /// Where in the object (field path).
        path: String,
        /// The value found, as JSON.
        found: String,
    },
    /// The patch sets a field that its own `$retainKeys` list would drop.
    #[error("field {field:?} at {path} is in the patch but not in its $retainKeys list")]
    NotRetained {
        /// Where in the object (field path).
        path: String,
        /// The field missing from `$retainKeys`.
        field: String,
    },
}

/// How the patch treats a list field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStrategy {
    /// The patch's list replaces the original (the default for lists not in the table).
    Replace,
    /// Objects merged element-wise by this key.
    MergeByKey(&'static str),
    /// Scalars merged as a set union.
    MergePrimitives,
}

/// Which objects a [`MERGE_STRATEGIES`] entry applies to.
#[derive(Debug, Clone, Copy)]
enum Scope {
    /// Any `ObjectMeta`: the path is relative to `metadata`, at the root or nested
    /// (pod templates, volume claim templates).
    ObjectMeta,
    /// Any pod spec: the path is relative to each of the kind's [`POD_SPEC_ROOTS`].
    PodSpec,
    /// Only these kinds; the path is from the object's root.
    Kinds(&'static [&'static str]),
}

use ListStrategy::{MergeByKey, MergePrimitives, Replace};

/// Kinds whose `status.conditions` merge by `type`.
const CONDITION_KINDS: &[&str] = &[
    "Pod",
    "Node",
    "Namespace",
    "Service",
    "PersistentVolumeClaim",
    "Deployment",
    "ReplicaSet",
    "ReplicationController",
    "StatefulSet",
    "DaemonSet",
    "Job",
];

/// Every list merge strategy rkube knows, from the Kubernetes types' `patchStrategy` and
/// `patchMergeKey` tags. `Replace` rows are the default, listed where a reader would expect a
/// merge, so the table says so.
static MERGE_STRATEGIES: &[(Scope, &str, ListStrategy)] = &[
    // ObjectMeta
    (Scope::ObjectMeta, "finalizers", MergePrimitives),
    (Scope::ObjectMeta, "ownerReferences", MergeByKey("uid")),
    (Scope::ObjectMeta, "managedFields", Replace),
    // PodSpec
    (Scope::PodSpec, "containers", MergeByKey("name")),
    (Scope::PodSpec, "initContainers", MergeByKey("name")),
    (Scope::PodSpec, "ephemeralContainers", MergeByKey("name")),
    (Scope::PodSpec, "volumes", MergeByKey("name")),
    (Scope::PodSpec, "imagePullSecrets", MergeByKey("name")),
    (Scope::PodSpec, "hostAliases", MergeByKey("ip")),
    (Scope::PodSpec, "topologySpreadConstraints", MergeByKey("topologyKey")),
    (Scope::PodSpec, "resourceClaims", MergeByKey("name")),
    (Scope::PodSpec, "schedulingGates", MergeByKey("name")),
    (Scope::PodSpec, "readinessGates", Replace),
    (Scope::PodSpec, "tolerations", Replace),
    // Container, InitContainer and EphemeralContainer
    (Scope::PodSpec, "containers.ports", MergeByKey("containerPort")),
    (Scope::PodSpec, "containers.env", MergeByKey("name")),
    (Scope::PodSpec, "containers.volumeMounts", MergeByKey("mountPath")),
    (Scope::PodSpec, "containers.volumeDevices", MergeByKey("devicePath")),
    (Scope::PodSpec, "initContainers.ports", MergeByKey("containerPort")),
    (Scope::PodSpec, "initContainers.env", MergeByKey("name")),
    (Scope::PodSpec, "initContainers.volumeMounts", MergeByKey("mountPath")),
    (Scope::PodSpec, "initContainers.volumeDevices", MergeByKey("devicePath")),
    (Scope::PodSpec, "ephemeralContainers.ports", MergeByKey("containerPort")),
    (Scope::PodSpec, "ephemeralContainers.env", MergeByKey("name")),
    (Scope::PodSpec, "ephemeralContainers.volumeMounts", MergeByKey("mountPath")),
    (Scope::PodSpec, "ephemeralContainers.volumeDevices", MergeByKey("devicePath")),
    // Status of every kind with conditions.
    (Scope::Kinds(CONDITION_KINDS), "status.conditions", MergeByKey("type")),
    // PodStatus
    (Scope::Kinds(&["Pod"]), "status.podIPs", MergeByKey("ip")),
    (Scope::Kinds(&["Pod"]), "status.hostIPs", MergeByKey("ip")),
    (Scope::Kinds(&["Pod"]), "status.resourceClaimStatuses", MergeByKey("name")),
    (Scope::Kinds(&["Pod"]), "status.containerStatuses", Replace),
    (Scope::Kinds(&["Pod"]), "status.initContainerStatuses", Replace),
    (Scope::Kinds(&["Pod"]), "status.ephemeralContainerStatuses", Replace),
    // Node
    (Scope::Kinds(&["Node"]), "spec.podCIDRs", MergePrimitives),
    (Scope::Kinds(&["Node"]), "spec.taints", Replace),
    (Scope::Kinds(&["Node"]), "status.addresses", MergeByKey("type")),
    (Scope::Kinds(&["Node"]), "status.images", Replace),
    // Service
    (Scope::Kinds(&["Service"]), "spec.ports", MergeByKey("port")),
];

/// Where each kind keeps its pod spec.
static POD_SPEC_ROOTS: &[(&str, &str)] = &[
    ("Pod", "spec"),
    ("PodTemplate", "template.spec"),
    ("ReplicaSet", "spec.template.spec"),
    ("ReplicationController", "spec.template.spec"),
    ("Deployment", "spec.template.spec"),
    ("StatefulSet", "spec.template.spec"),
    ("DaemonSet", "spec.template.spec"),
    ("Job", "spec.template.spec"),
    ("CronJob", "spec.jobTemplate.spec.template.spec"),
];

/// The key by which the list at `path` (field names joined by `.`, e.g.
/// `spec.template.spec.containers`) in an object of `kind` merges element-wise, if it does:
/// what a client computing a patch needs to know (`kubectl apply`'s `$patch: delete`).
pub fn merge_key(kind: &str, path: &str) -> Option<&'static str> {
    match list_strategy(kind, path) {
        MergeByKey(key) => Some(key),
        Replace | MergePrimitives => None,
    }
}

/// The strategy of the list at `path` (field names joined by `.`) in an object of `kind`.
fn list_strategy(kind: &str, path: &str) -> ListStrategy {
    for (scope, relative, strategy) in MERGE_STRATEGIES {
        let applies = match scope {
            Scope::ObjectMeta => path
                .strip_suffix(relative)
                .and_then(|p| p.strip_suffix('.'))
                .is_some_and(|p| p == "metadata" || p.ends_with(".metadata")),
            Scope::PodSpec => POD_SPEC_ROOTS.iter().any(|(k, root)| {
                *k == kind && path.strip_prefix(root).and_then(|p| p.strip_prefix('.')).is_some_and(|p| p == *relative)
            }),
            Scope::Kinds(kinds) => kinds.contains(&kind) && path == *relative,
        };
        if applies {
            return *strategy;
        }
    }
    Replace
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Applies a strategic merge patch to `original` (an object of `kind`, e.g. "Pod",
/// "Deployment", "Service", "Node", or "Scale") and returns the patched object. `original` is
/// not modified. Both must be JSON objects.
pub fn strategic_merge(
    kind: &str,
    original: &serde_json::Value,
    patch: &serde_json::Value,
) -> Result<serde_json::Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::PatchNotObject { found: json_type(patch) });
    };
    let Value::Object(original) = original else {
        return Err(PatchError::OriginalNotObject { found: json_type(original) });
    };
    let merger = Merger { kind };
    merger.merge_map("", original.clone(), patch).map(Value::Object)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// How a path reads in an error message.
fn shown(path: &str) -> String {
    if path.is_empty() { "the top level".to_owned() } else { path.to_owned() }
}

/// The value of a `$patch` directive.
enum Directive {
    Replace,
    Delete,
    Merge,
}

fn directive(path: &str, value: &Value) -> Result<Directive, PatchError> {
    match value.as_str() {
        Some("replace") => Ok(Directive::Replace),
        Some("delete") => Ok(Directive::Delete),
        Some("merge") => Ok(Directive::Merge),
        _ => Err(PatchError::UnknownDirective { path: shown(path), value: value.to_string() }),
    }
}

fn directive_list<'p>(path: &str, key: &str, value: &'p Value) -> Result<&'p [Value], PatchError> {
    value.as_array().map(Vec::as_slice).ok_or_else(|| PatchError::DirectiveNotList {
        directive: key.to_owned(),
        path: shown(path),
        found: value.to_string(),
    })
}

struct Merger<'k> {
    kind: &'k str,
}

impl Merger<'_> {
    /// Merges `patch` into `original`, the map at `path`.
    fn merge_map(
        &self,
        path: &str,
        mut original: Map<String, Value>,
        patch: &Map<String, Value>,
    ) -> Result<Map<String, Value>, PatchError> {
        if let Some(value) = patch.get(DIRECTIVE) {
            match directive(path, value)? {
                Directive::Delete => return Ok(Map::new()),
                // The rest of the patch is the new map, cleaned of directives.
                Directive::Replace => original = Map::new(),
                Directive::Merge => {}
            }
        }

        if let Some(retain) = patch.get(RETAIN_KEYS) {
            self.retain_keys(path, &mut original, patch, retain)?;
        }

        // Plain fields first, then the directives that act on the merged lists.
        for (key, value) in patch {
            if key.starts_with(SET_ELEMENT_ORDER)
                || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
                || key == DIRECTIVE
                || key == RETAIN_KEYS
            {
                continue;
            }
            if value.is_null() {
                original.remove(key);
                continue;
            }
            let before = original.remove(key);
            let merged = self.merge_value(&child_path(path, key), before, value)?;
            original.insert(key.clone(), merged);
        }

        for (key, value) in patch {
            if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
                let doomed = directive_list(path, key, value)?;
                if let Some(Value::Array(list)) = original.get_mut(field) {
                    list.retain(|item| !doomed.contains(item));
                }
            }
        }

        for (key, value) in patch {
            if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
                let order = directive_list(path, key, value)?;
                let field_path = child_path(path, field);
                let strategy = list_strategy(self.kind, &field_path);
                if let Some(Value::Array(list)) = original.get_mut(field) {
                    reorder(&field_path, list, order, strategy)?;
                }
            }
        }

        Ok(original)
    }

    /// Applies `$retainKeys`: drops every original field not listed, after checking that the
    /// patch sets no field outside the list.
    fn retain_keys(
        &self,
        path: &str,
        original: &mut Map<String, Value>,
        patch: &Map<String, Value>,
        retain: &Value,
    ) -> Result<(), PatchError> {
        let bad = || PatchError::DirectiveNotList {
            directive: RETAIN_KEYS.to_owned(),
            path: shown(path),
            found: retain.to_string(),
        };
        let keep: Vec<&str> =
            retain.as_array().ok_or_else(bad)?.iter().map(|k| k.as_str().ok_or_else(bad)).collect::<Result<_, _>>()?;
        for (key, value) in patch {
            let is_directive = key == DIRECTIVE
                || key == RETAIN_KEYS
                || key.starts_with(SET_ELEMENT_ORDER)
                || key.starts_with(DELETE_FROM_PRIMITIVE_LIST);
            if !is_directive && !value.is_null() && !keep.contains(&key.as_str()) {
                return Err(PatchError::NotRetained { path: shown(path), field: key.clone() });
            }
        }
        original.retain(|key, _| keep.contains(&key.as_str()));
        Ok(())
    }

    /// Merges one non-null patch value into what the original has at `path` (if anything).
    fn merge_value(&self, path: &str, original: Option<Value>, patch: &Value) -> Result<Value, PatchError> {
        match patch {
            Value::Object(patch) => {
                let original = match original {
                    Some(Value::Object(map)) => map,
                    _ => Map::new(),
                };
                self.merge_map(path, original, patch).map(Value::Object)
            }
            Value::Array(patch) => {
                let original = match original {
                    Some(Value::Array(list)) => list,
                    _ => Vec::new(),
                };
                self.merge_list(path, original, patch).map(Value::Array)
            }
            scalar => Ok(scalar.clone()),
        }
    }

    /// Merges a patch list into the original list at `path`, by the list's strategy.
    fn merge_list(&self, path: &str, original: Vec<Value>, patch: &[Value]) -> Result<Vec<Value>, PatchError> {
        let strategy = list_strategy(self.kind, path);

        // Handle `$patch` elements first, as Kubernetes does.
        let mut replace = false;
        let mut deletions = Vec::new();
        let mut elements = Vec::with_capacity(patch.len());
        for element in patch {
            let Some(value) = element.get(DIRECTIVE) else {
                elements.push(element);
                continue;
            };
            match directive(path, value)? {
                Directive::Replace => replace = true,
                Directive::Delete => deletions.push(element),
                Directive::Merge => {
                    if element.as_object().is_some_and(|m| m.len() > 1) {
                        elements.push(element);
                    }
                }
            }
        }

        let mut merged = if replace || strategy == Replace { Vec::new() } else { original };

        match strategy {
            MergeByKey(key) => {
                for element in deletions {
                    let value = merge_key_of(path, key, element)?;
                    merged.retain(|item| item.get(key) != Some(value));
                }
                for element in elements {
                    let value = merge_key_of(path, key, element)?;
                    let patch_map = element.as_object().ok_or_else(|| PatchError::ElementNotObject {
                        path: shown(path),
                        key,
                        element: element.to_string(),
                    })?;
                    let found = merged.iter().position(|item| item.is_object() && item.get(key) == Some(value));
                    match found {
                        Some(i) => {
                            let before = std::mem::take(&mut merged[i]);
                            merged[i] = self.merge_value(path, Some(before), element)?;
                        }
                        None => merged.push(Value::Object(self.merge_map(path, Map::new(), patch_map)?)),
                    }
                }
            }
            MergePrimitives => {
                for element in elements {
                    let element = self.merge_value(path, None, element)?;
                    if !merged.contains(&element) {
                        merged.push(element);
                    }
                }
            }
            Replace => {
                for element in elements {
                    merged.push(self.merge_value(path, None, element)?);
                }
            }
        }
        Ok(merged)
    }
}

/// The merge key's value of a patch list element, or an error naming the element.
fn merge_key_of<'e>(path: &str, key: &'static str, element: &'e Value) -> Result<&'e Value, PatchError> {
    match element {
        Value::Object(map) => map.get(key).ok_or_else(|| PatchError::MissingMergeKey {
            path: shown(path),
            key,
            element: element.to_string(),
        }),
        _ => Err(PatchError::ElementNotObject { path: shown(path), key, element: element.to_string() }),
    }
}

/// Applies `$setElementOrder`: the elements named in `order` first, in that order, then the
/// rest in their current order. Names not in the list are ignored.
fn reorder(path: &str, list: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) -> Result<(), PatchError> {
    let identity = |item: &Value| -> Option<Value> {
        match strategy {
            MergeByKey(key) => item.get(key).cloned(),
            _ => Some(item.clone()),
        }
    };
    let mut wanted = Vec::with_capacity(order.len());
    for entry in order {
        let id = match strategy {
            MergeByKey(key) => merge_key_of(path, key, entry)?.clone(),
            _ => entry.clone(),
        };
        wanted.push(id);
    }
    let mut rest = std::mem::take(list);
    for id in &wanted {
        let mut i = 0;
        while i < rest.len() {
            if identity(&rest[i]).as_ref() == Some(id) {
                list.push(rest.remove(i));
            } else {
                i += 1;
            }
        }
    }
    list.append(&mut rest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(kind: &str, original: Value, patch: Value) -> Value {
        strategic_merge(kind, &original, &patch).unwrap()
    }

    fn web_pod() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "containers": [{
                    "name": "main",
                    "image": "nginx:1.27",
                    "imagePullPolicy": "IfNotPresent",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
                }],
                "restartPolicy": "Always"
            }
        })
    }

    #[test]
    fn kubectl_apply_body_updates_the_image_and_keeps_everything_else() {
        let patch = json!({
            "metadata": {
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"v1\"}\n"},
                "labels": {"tier": "web"}
            },
            "spec": {
                "$setElementOrder/containers": [{"name": "main"}],
                "containers": [{"image": "nginx:1.28", "name": "main"}]
            }
        });
        let got = apply("Pod", web_pod(), patch);
        let containers = got["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0]["image"], "nginx:1.28");
        assert_eq!(containers[0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(containers[0]["ports"][0]["containerPort"], 80);
        assert_eq!(got["metadata"]["labels"], json!({"app": "web", "tier": "web"}));
        assert_eq!(
            got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            "{\"apiVersion\":\"v1\"}\n"
        );
        assert_eq!(got["spec"]["restartPolicy"], "Always");
        assert!(got["spec"].get("$setElementOrder/containers").is_none());
    }

    #[test]
    fn cordon_sets_unschedulable_and_uncordon_removes_it() {
        let node = json!({"kind": "Node", "metadata": {"name": "n1"}, "spec": {"podCIDR": "10.0.0.0/24"}});
        let cordoned = apply("Node", node, json!({"spec": {"unschedulable": true}}));
        assert_eq!(cordoned["spec"], json!({"podCIDR": "10.0.0.0/24", "unschedulable": true}));
        let uncordoned = apply("Node", cordoned, json!({"spec": {"unschedulable": null}}));
        assert_eq!(uncordoned["spec"], json!({"podCIDR": "10.0.0.0/24"}));
    }

    #[test]
    fn null_deletes_a_key_and_maps_merge_recursively() {
        let got = apply(
            "Pod",
            json!({"metadata": {"labels": {"a": "1", "b": "2"}, "name": "p"}}),
            json!({"metadata": {"labels": {"a": null, "c": "3"}}}),
        );
        assert_eq!(got, json!({"metadata": {"labels": {"b": "2", "c": "3"}, "name": "p"}}));
    }

    #[test]
    fn patch_delete_directive_removes_a_container_by_name() {
        let mut pod = web_pod();
        pod["spec"]["containers"].as_array_mut().unwrap().push(json!({"name": "sidecar", "image": "envoy"}));
        let got = apply("Pod", pod, json!({"spec": {"containers": [{"$patch": "delete", "name": "main"}]}}));
        assert_eq!(got["spec"]["containers"], json!([{"name": "sidecar", "image": "envoy"}]));
    }

    #[test]
    fn patch_replace_directive_in_a_list_replaces_the_whole_list() {
        let got = apply(
            "Pod",
            web_pod(),
            json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "busybox"}]}}),
        );
        assert_eq!(got["spec"]["containers"], json!([{"name": "only", "image": "busybox"}]));
    }

    #[test]
    fn patch_replace_directive_in_a_map_replaces_the_map() {
        let got = apply("Pod", web_pod(), json!({"metadata": {"labels": {"$patch": "replace", "new": "x"}}}));
        assert_eq!(got["metadata"]["labels"], json!({"new": "x"}));
        let got = apply("Pod", web_pod(), json!({"metadata": {"labels": {"$patch": "delete"}}}));
        assert_eq!(got["metadata"]["labels"], json!({}));
    }

    #[test]
    fn finalizers_become_the_union_and_delete_from_primitive_list_removes_them() {
        let original = json!({"metadata": {"finalizers": ["a", "b"]}});
        let got = apply("Pod", original, json!({"metadata": {"finalizers": ["b", "c"]}}));
        assert_eq!(got["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let got = apply("Pod", got, json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zz"]}}));
        assert_eq!(got["metadata"], json!({"finalizers": ["b", "c"]}));
    }

    #[test]
    fn env_merges_by_name() {
        let got = apply(
            "Pod",
            web_pod(),
            json!({"spec": {"containers": [{"name": "main", "env": [
                {"name": "B", "value": "changed"}, {"name": "C", "value": "3"}
            ]}]}}),
        );
        assert_eq!(
            got["spec"]["containers"][0]["env"],
            json!([
                {"name": "A", "value": "1"},
                {"name": "B", "value": "changed"},
                {"name": "C", "value": "3"}
            ])
        );
    }

    #[test]
    fn deployment_template_containers_merge_by_name() {
        let deployment = json!({
            "kind": "Deployment",
            "spec": {"replicas": 1, "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "main", "image": "nginx:1.27", "args": ["-a"]},
                    {"name": "sidecar", "image": "envoy"}
                ]}
            }}
        });
        let got = apply(
            "Deployment",
            deployment,
            json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
                {"name": "main", "image": "nginx:1.28"},
                {"name": "logger", "image": "fluent"}
            ]}}}}),
        );
        assert_eq!(got["spec"]["replicas"], 3);
        assert_eq!(
            got["spec"]["template"]["spec"]["containers"],
            json!([
                {"name": "main", "image": "nginx:1.28", "args": ["-a"]},
                {"name": "sidecar", "image": "envoy"},
                {"name": "logger", "image": "fluent"}
            ])
        );
        assert_eq!(got["spec"]["template"]["metadata"]["labels"]["app"], "web");
    }

    #[test]
    fn service_ports_merge_by_port() {
        let service = json!({"kind": "Service", "spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": 8080},
            {"name": "https", "port": 443, "targetPort": 8443}
        ]}});
        let got = apply(
            "Service",
            service,
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 53, "protocol": "UDP"}]}}),
        );
        assert_eq!(
            got["spec"]["ports"],
            json!([
                {"name": "http", "port": 80, "targetPort": 9090},
                {"name": "https", "port": 443, "targetPort": 8443},
                {"port": 53, "protocol": "UDP"}
            ])
        );
    }

    #[test]
    fn lists_without_a_strategy_are_replaced() {
        let pod = json!({"spec": {"tolerations": [{"key": "a"}], "containers": [
            {"name": "main", "args": ["x", "y"]}
        ]}});
        let got = apply(
            "Pod",
            pod,
            json!({"spec": {"tolerations": [{"key": "b"}], "containers": [{"name": "main", "args": ["z"]}]}}),
        );
        assert_eq!(got["spec"]["tolerations"], json!([{"key": "b"}]));
        assert_eq!(got["spec"]["containers"][0]["args"], json!(["z"]));
    }

    #[test]
    fn node_status_merges_conditions_and_addresses_by_type_but_replaces_images() {
        let node = json!({"kind": "Node", "status": {
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "status": "False"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
            "images": [{"names": ["a"]}]
        }});
        let got = apply(
            "Node",
            node,
            json!({"status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "Hostname", "address": "n1"}],
                "images": [{"names": ["b"]}]
            }}),
        );
        assert_eq!(
            got["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}])
        );
        assert_eq!(got["status"]["addresses"].as_array().unwrap().len(), 2);
        assert_eq!(got["status"]["images"], json!([{"names": ["b"]}]));
    }

    #[test]
    fn set_element_order_puts_listed_elements_first_in_that_order() {
        let pod = json!({"spec": {"containers": [
            {"name": "a"}, {"name": "b"}, {"name": "c"}
        ]}});
        let got = apply(
            "Pod",
            pod,
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "c"}, {"name": "new"}, {"name": "a"}],
                "containers": [{"name": "new"}]
            }}),
        );
        assert_eq!(got["spec"]["containers"], json!([{"name": "c"}, {"name": "new"}, {"name": "a"}, {"name": "b"}]));
    }

    #[test]
    fn retain_keys_drops_unlisted_fields() {
        let deployment = json!({"kind": "Deployment", "spec": {"strategy": {
            "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}
        }}});
        let got = apply(
            "Deployment",
            deployment.clone(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        );
        assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));
        let err = strategic_merge(
            "Deployment",
            &deployment,
            &json!({"spec": {"strategy": {"$retainKeys": ["type"], "other": 1}}}),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::NotRetained { .. }));
    }

    #[test]
    fn directives_never_remain_in_values_the_original_did_not_have() {
        let got = apply(
            "Deployment",
            json!({"kind": "Deployment"}),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "main"}],
                "containers": [{"name": "main", "image": "x", "env": [{"$patch": "delete", "name": "gone"}], "ports": null}]
            }}}}),
        );
        assert_eq!(got["spec"]["template"]["spec"], json!({"containers": [{"name": "main", "image": "x", "env": []}]}));
    }

    #[test]
    fn owner_references_merge_by_uid() {
        let got = apply(
            "Pod",
            json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "rs-a"}]}}),
            json!({"metadata": {"ownerReferences": [{"uid": "1", "controller": true}, {"uid": "2", "name": "rs-b"}]}}),
        );
        assert_eq!(
            got["metadata"]["ownerReferences"],
            json!([{"uid": "1", "name": "rs-a", "controller": true}, {"uid": "2", "name": "rs-b"}])
        );
    }

    #[test]
    fn scale_patch_sets_replicas() {
        let got = apply(
            "Scale",
            json!({"kind": "Scale", "spec": {"replicas": 1}, "status": {"replicas": 1}}),
            json!({"spec": {"replicas": 5}}),
        );
        assert_eq!(got["spec"]["replicas"], 5);
        assert_eq!(got["status"]["replicas"], 1);
    }

    #[test]
    fn non_object_patch_is_an_error() {
        for patch in [json!([1]), json!("x"), json!(null), json!(3)] {
            let err = strategic_merge("Pod", &web_pod(), &patch).unwrap_err();
            assert!(matches!(err, PatchError::PatchNotObject { .. }), "{patch}");
        }
    }

    #[test]
    fn malformed_directives_and_missing_merge_keys_are_errors() {
        let cases = [
            json!({"spec": {"containers": [{"image": "x"}]}}),
            json!({"spec": {"containers": ["main"]}}),
            json!({"spec": {"containers": [{"$patch": "delete"}]}}),
            json!({"spec": {"$patch": "explode"}}),
            json!({"spec": {"$setElementOrder/containers": "main"}}),
            json!({"spec": {"$setElementOrder/containers": [{"image": "x"}]}}),
            json!({"spec": {"$retainKeys": "x"}}),
        ];
        for patch in cases {
            assert!(strategic_merge("Pod", &web_pod(), &patch).is_err(), "{patch}");
        }
    }

    #[test]
    fn patch_merge_directive_means_merge_as_usual() {
        let got = apply("Pod", web_pod(), json!({"metadata": {"labels": {"$patch": "merge", "x": "y"}}}));
        assert_eq!(got["metadata"]["labels"], json!({"app": "web", "x": "y"}));
    }
}
