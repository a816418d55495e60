//! LeastAllocated: prefer the node with the most CPU and memory left after placing the pod
//! (Kubernetes: `NodeResourcesFit` with the `LeastAllocated` scoring strategy).
//!
//! Score = mean over CPU and memory of `(allocatable - requested) * 100 / allocatable`, where
//! requested includes this pod and counts missing requests as small defaults (100m, 200Mi), so
//! that pods without requests still spread out.

use crate::framework::{MAX_NODE_SCORE, NodeRef, PodInfo, ScorePlugin};

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct LeastAllocated;

fn free_fraction(allocatable: i64, requested: i64) -> i64 {
    if allocatable <= 0 || requested > allocatable {
        return 0;
    }
    let free = i128::from(allocatable - requested) * i128::from(MAX_NODE_SCORE) / i128::from(allocatable);
    i64::try_from(free).unwrap_or(0)
}

impl ScorePlugin for LeastAllocated {
    fn name(&self) -> &'static str {
        "NodeResourcesLeastAllocated"
    }

    fn score(&self, pod: &PodInfo, node: NodeRef<'_>) -> i64 {
        let requested = node.facts.scoring_requested.plus(pod.scoring_requests);
        let cpu = free_fraction(node.facts.allocatable.milli_cpu, requested.milli_cpu);
        let memory = free_fraction(node.facts.allocatable.memory, requested.memory);
        (cpu + memory) / 2
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
    fn emptier_nodes_score_higher() {
        let alloc = json!({"status": {"allocatable": {"cpu": "4", "memory": "4Gi", "pods": "10"}}});
        let empty = node_info(node(alloc.clone()), vec![]);
        let busy = node_info(node(alloc), vec![requesting("2", "2Gi")]);
        let p = requesting("1", "1Gi");
        assert_eq!(LeastAllocated.score(&p, empty.view()), 75);
        assert_eq!(LeastAllocated.score(&p, busy.view()), 25);
    }

    #[test]
    fn an_overfull_or_empty_allocatable_scores_zero() {
        let n = node_info(node(json!({"status": {"allocatable": {"pods": "10"}}})), vec![]);
        assert_eq!(LeastAllocated.score(&requesting("1", "1Gi"), n.view()), 0);
    }
}
