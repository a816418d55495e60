//! NodeResourcesFit: the pod's CPU, memory and pod-count requests must fit in what the node
//! has left: `status.allocatable` minus the requests of every pod bound there, assumed pods
//! (bound by us, not yet seen back) included.
//!
//! Reasons, as in Kubernetes: `Insufficient cpu`, `Insufficient memory`, `Too many pods`
//! (several at once when several resources are short).

use crate::framework::{FilterPlugin, NodeRef, PodInfo, Rejection};

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct NodeResourcesFit;

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn filter(&self, pod: &PodInfo, node: NodeRef<'_>) -> Result<(), Rejection> {
        let (want, used, have) = (pod.requests, node.facts.requested, node.facts.allocatable);
        let mut reasons = Vec::new();
        if used.pods.saturating_add(want.pods) > have.pods {
            reasons.push("Too many pods".to_string());
        }
        if want.milli_cpu > 0 && used.milli_cpu.saturating_add(want.milli_cpu) > have.milli_cpu {
            reasons.push("Insufficient cpu".to_string());
        }
        if want.memory > 0 && used.memory.saturating_add(want.memory) > have.memory {
            reasons.push("Insufficient memory".to_string());
        }
        if reasons.is_empty() { Ok(()) } else { Err(reasons) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::{node, node_info, pod};
    use serde_json::json;

    fn requesting(cpu: &str, memory: &str) -> PodInfo {
        pod(json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}))
    }

    #[test]
    fn requests_must_fit_in_allocatable_minus_what_is_bound() {
        let small = node(json!({"status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "3"}}}));
        let empty = node_info(small.clone(), vec![]);
        assert_eq!(NodeResourcesFit.filter(&requesting("1", "1Gi"), empty.view()), Ok(()));
        let half = node_info(small.clone(), vec![requesting("500m", "512Mi")]);
        assert_eq!(NodeResourcesFit.filter(&requesting("500m", "512Mi"), half.view()), Ok(()));
        assert_eq!(
            NodeResourcesFit.filter(&requesting("600m", "600Mi"), half.view()),
            Err(vec!["Insufficient cpu".into(), "Insufficient memory".into()])
        );
        let full = node_info(small, vec![requesting("0", "0"), requesting("0", "0"), requesting("0", "0")]);
        assert_eq!(NodeResourcesFit.filter(&pod(json!({})), full.view()), Err(vec!["Too many pods".into()]));
    }

    #[test]
    fn a_pod_without_requests_fits_a_full_node_that_still_has_pod_slots() {
        let n = node_info(
            node(json!({"status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "5"}}})),
            vec![requesting("1", "1Gi")],
        );
        assert_eq!(NodeResourcesFit.filter(&pod(json!({})), n.view()), Ok(()));
    }
}
