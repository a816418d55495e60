//! Which nodes a pod may run on, by its own rules: `nodeSelector`, required node affinity and
//! tolerations of the node's taints. The scheduler's NodeAffinity and TaintToleration filters
//! and the DaemonSet controller (which decides where its pods belong) share these functions, and
//! the volume binder and the scheduler read a PersistentVolume's node affinity with them.
//!
//! Required node affinity is a list of terms, any one of which must match (OR); a term is a list
//! of expressions that must all match (AND). Operators: `In`, `NotIn` (also true when the label
//! is missing), `Exists`, `DoesNotExist`, `Gt`, `Lt` (the label and the single value are read as
//! integers). `matchFields` supports `metadata.name` with `In`/`NotIn`. As in Kubernetes, an
//! empty list of terms, or a term with no expressions, matches no node.
//!
//! Toleration matching follows Kubernetes (`Toleration.ToleratesTaint`): a toleration with an
//! empty effect matches every effect; operator `Exists` matches any value (and, with an empty
//! key, any taint); operator `Equal` (the default) needs key and value to be equal.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolume, PodSpec, Taint, Toleration,
};

/// Whether `requirement` holds for the label (or field) `value`.
pub fn requirement_matches(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    let as_integer = |text: &str| text.parse::<i64>().ok();
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|w| w == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|w| w == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), [want]) = (value.and_then(as_integer), values) else { return false };
            let Some(want) = as_integer(want) else { return false };
            if requirement.operator == "Gt" { have > want } else { have < want }
        }
        _ => false,
    }
}

/// Whether the node selector term matches a node with `labels` named `name`.
pub fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions.iter().all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| r.key == "metadata.name" && requirement_matches(r, Some(name)))
}

/// Whether the pod's `nodeSelector` and required node affinity both match the node.
pub fn selects_node(spec: &PodSpec, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let selector_ok = spec.node_selector.iter().flatten().all(|(key, value)| labels.get(key) == Some(value));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
    selector_ok
        && required.is_none_or(|selector| selector.node_selector_terms.iter().any(|t| term_matches(t, labels, name)))
}

/// Whether a PersistentVolume may be used on the node: its required `nodeAffinity` (if
/// any) has a term that matches (a local volume lives on one node).
pub fn volume_fits_node(volume: &PersistentVolume, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let required = volume.spec.as_ref().and_then(|s| s.node_affinity.as_ref()).and_then(|a| a.required.as_ref());
    required.is_none_or(|selector| selector.node_selector_terms.iter().any(|t| term_matches(t, labels, name)))
}

/// Whether `toleration` tolerates `taint`.
pub fn toleration_matches(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration.effect.as_deref().is_some_and(|effect| !effect.is_empty() && effect != taint.effect) {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        "Equal" | "" => {
            key == taint.key
                && toleration.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| toleration_matches(t, taint))
}

/// The first `NoSchedule` or `NoExecute` taint of the node the pod does not tolerate.
pub fn untolerated_taint<'a>(spec: &PodSpec, node: &'a Node) -> Option<&'a Taint> {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    taints
        .iter()
        .filter(|taint| taint.effect == "NoSchedule" || taint.effect == "NoExecute")
        .find(|taint| !tolerates(tolerations, taint))
}
