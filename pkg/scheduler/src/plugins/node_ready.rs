//! NodeReady: a node whose `Ready` condition is not `True` takes no new pods.
//!
//! Kubernetes expresses this through the `node.kubernetes.io/not-ready` taint that the node
//! lifecycle controller adds; rkube also checks the condition directly, so nodes created by hand
//! (or before that controller runs) behave the same. A node with no `Ready` condition at all is
//! not ready.

use crate::framework::{FilterPlugin, NodeRef, PodInfo, Rejection};

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct NodeReady;

/// The reason given for a node that is not Ready.
pub const NOT_READY: &str = "node(s) were not ready";

impl FilterPlugin for NodeReady {
    fn name(&self) -> &'static str {
        "NodeReady"
    }

    fn filter(&self, _pod: &PodInfo, node: NodeRef<'_>) -> Result<(), Rejection> {
        if node.facts.ready { Ok(()) } else { Err(vec![NOT_READY.into()]) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::{node, node_info, pod};
    use serde_json::json;

    #[test]
    fn only_nodes_with_ready_true_pass() {
        let p = pod(json!({}));
        let ready = node_info(node(json!({})), vec![]);
        assert_eq!(NodeReady.filter(&p, ready.view()), Ok(()));
        for conditions in [
            json!([{"type": "Ready", "status": "False"}]),
            json!([{"type": "Ready", "status": "Unknown"}]),
            json!([{"type": "MemoryPressure", "status": "True"}]),
        ] {
            let n = node_info(node(json!({"status": {"conditions": conditions}})), vec![]);
            assert_eq!(NodeReady.filter(&p, n.view()), Err(vec![NOT_READY.to_string()]));
        }
    }
}
