//! SelectorSpread: spread the pods of one controller (the same `ownerReferences` entry with
//! `controller: true`, e.g. one ReplicaSet) across nodes, so that losing one node loses few of
//! them. Kubernetes' old `SelectorSpread` plugin did this by selector; its successor is
//! `PodTopologySpread`.
//!
//! Raw score: how many pods of the same controller a node already has (assumed ones included).
//! Normalised: `100 * (max - count) / max`, so the nodes with the fewest score 100; when no node
//! has any (or the pod has no controller), every node scores 100.

use crate::framework::{MAX_NODE_SCORE, NodeRef, PodInfo, ScorePlugin};

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct SelectorSpread;

impl ScorePlugin for SelectorSpread {
    fn name(&self) -> &'static str {
        "SelectorSpread"
    }

    fn score(&self, pod: &PodInfo, node: NodeRef<'_>) -> i64 {
        let Some(owner) = pod.controller_uid.as_deref() else { return 0 };
        let same = node.info.pods.values().filter(|other| other.controller_uid.as_deref() == Some(owner)).count();
        i64::try_from(same).unwrap_or(i64::MAX)
    }

    fn normalize(&self, scores: &mut [i64]) {
        let max = scores.iter().copied().max().unwrap_or(0);
        for score in scores.iter_mut() {
            *score = if max == 0 { MAX_NODE_SCORE } else { MAX_NODE_SCORE * (max - *score) / max };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::{node, node_info, pod};
    use serde_json::json;

    fn owned_by(uid: &str) -> PodInfo {
        pod(json!({"metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true}]}}))
    }

    #[test]
    fn nodes_with_fewer_pods_of_the_same_owner_score_higher() {
        let p = owned_by("rs-1");
        let none = node_info(node(json!({"metadata": {"name": "a"}})), vec![owned_by("rs-2")]);
        let one = node_info(node(json!({"metadata": {"name": "b"}})), vec![owned_by("rs-1")]);
        let two = node_info(node(json!({"metadata": {"name": "c"}})), vec![owned_by("rs-1"), owned_by("rs-1")]);
        let mut scores: Vec<i64> = [&none, &one, &two].iter().map(|n| SelectorSpread.score(&p, n.view())).collect();
        assert_eq!(scores, vec![0, 1, 2]);
        SelectorSpread.normalize(&mut scores);
        assert_eq!(scores, vec![100, 50, 0]);
    }

    #[test]
    fn pods_without_a_controller_score_the_same_everywhere() {
        let p = pod(json!({}));
        let n = node_info(node(json!({})), vec![owned_by("rs-1")]);
        let mut scores = vec![SelectorSpread.score(&p, n.view())];
        SelectorSpread.normalize(&mut scores);
        assert_eq!(scores, vec![100]);
    }
}
