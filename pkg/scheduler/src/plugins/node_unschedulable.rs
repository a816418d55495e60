//! NodeUnschedulable: a cordoned node (`spec.unschedulable: true`, what `kubectl cordon` sets)
//! takes no new pods, unless the pod tolerates the `node.kubernetes.io/unschedulable:NoSchedule`
//! taint (as DaemonSet pods do).

use crate::framework::{FilterPlugin, NodeRef, PodInfo, Rejection};
use crate::plugins::taint_toleration::tolerates;

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct NodeUnschedulable;

/// The reason given for a cordoned node.
pub const UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// The taint key a pod tolerates to land on cordoned nodes anyway.
pub const UNSCHEDULABLE_TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filter(&self, pod: &PodInfo, node: NodeRef<'_>) -> Result<(), Rejection> {
        if !node.facts.cordoned {
            return Ok(());
        }
        let taint = k8s_openapi::api::core::v1::Taint {
            key: UNSCHEDULABLE_TAINT_KEY.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let tolerations = pod.pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
        if tolerates(tolerations, &taint) { Ok(()) } else { Err(vec![UNSCHEDULABLE.into()]) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::{node, node_info, pod};
    use serde_json::json;

    #[test]
    fn cordoned_nodes_are_skipped_unless_tolerated() {
        let cordoned = node_info(node(json!({"spec": {"unschedulable": true}})), vec![]);
        let plain = pod(json!({}));
        assert_eq!(NodeUnschedulable.filter(&plain, cordoned.view()), Err(vec![UNSCHEDULABLE.to_string()]));
        let tolerant = pod(json!({"spec": {"containers": [{"name": "c"}], "tolerations": [
            {"key": UNSCHEDULABLE_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]}}));
        assert_eq!(NodeUnschedulable.filter(&tolerant, cordoned.view()), Ok(()));
        let open = node_info(node(json!({"spec": {"unschedulable": false}})), vec![]);
        assert_eq!(NodeUnschedulable.filter(&plain, open.view()), Ok(()));
    }
}
