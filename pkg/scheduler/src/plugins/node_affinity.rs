//! NodeAffinity: a pod's `spec.nodeSelector` and its required node affinity
//! (`affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`) must both match the
//! node's labels.
//!
//! Required node affinity is a list of terms, any one of which must match (OR); a term is a list
//! of expressions that must all match (AND). Operators: `In`, `NotIn` (also true when the label
//! is missing), `Exists`, `DoesNotExist`, `Gt`, `Lt` (the label and the single value are read as
//! integers). `matchFields` supports `metadata.name` with `In`/`NotIn`. As in Kubernetes, an
//! empty list of terms, or a term with no expressions, matches no node (the matching is
//! `rkube_api::placement`, shared with the DaemonSet controller). Preferred affinity
//! (scoring) is not implemented.

use std::collections::BTreeMap;

use rkube_api::placement::selects_node;

use crate::framework::{FilterPlugin, NodeRef, PodInfo, Rejection};

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct NodeAffinity;

/// The reason given for a node that does not match.
pub const MISMATCH: &str = "node(s) didn't match Pod's node affinity/selector";

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter(&self, pod: &PodInfo, node: NodeRef<'_>) -> Result<(), Rejection> {
        let Some(spec) = pod.pod.spec.as_ref() else { return Ok(()) };
        let required = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
        if spec.node_selector.as_ref().is_none_or(BTreeMap::is_empty) && required.is_none() {
            // Nothing to match: the Node's labels (another cache miss per node) are not read.
            return Ok(());
        }
        let node = node.info;
        let empty = BTreeMap::new();
        let labels = node.node.as_ref().and_then(|n| n.metadata.labels.as_ref()).unwrap_or(&empty);
        if selects_node(spec, labels, &node.name) { Ok(()) } else { Err(vec![MISMATCH.into()]) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::NodeInfo;
    use crate::framework::testing::{node, node_info, pod};
    use serde_json::{Value, json};

    fn labelled(labels: Value) -> NodeInfo {
        node_info(node(json!({"metadata": {"name": "n1", "labels": labels}})), vec![])
    }

    fn requiring(terms: Value) -> PodInfo {
        pod(json!({"spec": {"containers": [{"name": "c"}], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}}))
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> Value {
        json!([{"matchExpressions": [{"key": key, "operator": operator, "values": values}]}])
    }

    #[test]
    fn node_selector_needs_every_label() {
        let n = labelled(json!({"disk": "ssd", "zone": "a"}));
        let p = |selector: Value| pod(json!({"spec": {"containers": [{"name": "c"}], "nodeSelector": selector}}));
        assert_eq!(NodeAffinity.filter(&p(json!({"disk": "ssd"})), n.view()), Ok(()));
        assert_eq!(NodeAffinity.filter(&p(json!({"disk": "ssd", "zone": "b"})), n.view()), Err(vec![MISMATCH.into()]));
        assert_eq!(NodeAffinity.filter(&p(json!({"gpu": "yes"})), n.view()), Err(vec![MISMATCH.into()]));
    }

    #[test]
    fn every_operator_behaves_like_kubernetes() {
        let n = labelled(json!({"disk": "ssd", "cores": "8"}));
        let cases = [
            (expression("disk", "In", &["ssd", "nvme"]), true),
            (expression("disk", "In", &["hdd"]), false),
            (expression("disk", "NotIn", &["hdd"]), true),
            (expression("disk", "NotIn", &["ssd"]), false),
            (expression("gpu", "NotIn", &["yes"]), true),
            (expression("disk", "Exists", &[]), true),
            (expression("gpu", "Exists", &[]), false),
            (expression("gpu", "DoesNotExist", &[]), true),
            (expression("disk", "DoesNotExist", &[]), false),
            (expression("cores", "Gt", &["4"]), true),
            (expression("cores", "Gt", &["8"]), false),
            (expression("cores", "Lt", &["16"]), true),
            (expression("disk", "Lt", &["16"]), false),
            (json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]), true),
            (json!([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}]), false),
            (json!([]), false),
            (json!([{}]), false),
        ];
        for (terms, expected) in cases {
            assert_eq!(NodeAffinity.filter(&requiring(terms.clone()), n.view()).is_ok(), expected, "{terms}");
        }
    }

    #[test]
    fn terms_are_ored_and_expressions_anded() {
        let n = labelled(json!({"disk": "ssd", "zone": "a"}));
        let either = json!([
            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]},
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]);
        assert_eq!(NodeAffinity.filter(&requiring(either), n.view()), Ok(()));
        let both = json!([{"matchExpressions": [
            {"key": "disk", "operator": "In", "values": ["ssd"]},
            {"key": "zone", "operator": "In", "values": ["b"]}]}]);
        assert!(NodeAffinity.filter(&requiring(both), n.view()).is_err());
    }
}
