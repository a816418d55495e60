//! TaintToleration: a node's `NoSchedule` and `NoExecute` taints keep off every pod that does
//! not tolerate them. `PreferNoSchedule` taints are a preference, not a rule, and do not filter.
//!
//! Matching follows Kubernetes (`Toleration.ToleratesTaint`): a toleration with an empty effect
//! matches every effect; operator `Exists` matches any value (and, with an empty key, any taint);
//! operator `Equal` (the default) needs key and value to be equal.

use rkube_api::placement::untolerated_taint;
pub use rkube_api::placement::{tolerates, toleration_matches};

use crate::framework::{FilterPlugin, NodeRef, PodInfo, Rejection};

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct TaintToleration;

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn filter(&self, pod: &PodInfo, node: NodeRef<'_>) -> Result<(), Rejection> {
        if !node.facts.tainted {
            return Ok(());
        }
        let Some(spec) = pod.pod.spec.as_ref() else { return Ok(()) };
        let Some(node) = node.info.node.as_ref() else { return Ok(()) };
        let untolerated = untolerated_taint(spec, node);
        match untolerated {
            None => Ok(()),
            Some(taint) => Err(vec![format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or_default()
            )]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::NodeInfo;
    use crate::framework::testing::{node, node_info, pod};
    use serde_json::{Value, json};

    fn tainted(taints: Value) -> NodeInfo {
        node_info(node(json!({"spec": {"taints": taints}})), vec![])
    }

    fn with_tolerations(tolerations: Value) -> PodInfo {
        pod(json!({"spec": {"containers": [{"name": "c"}], "tolerations": tolerations}}))
    }

    #[test]
    fn no_schedule_and_no_execute_taints_filter_prefer_no_schedule_does_not() {
        let p = pod(json!({}));
        let no_schedule = tainted(json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]));
        assert_eq!(
            TaintToleration.filter(&p, no_schedule.view()),
            Err(vec!["node(s) had untolerated taint {dedicated: gpu}".into()])
        );
        let no_execute = tainted(json!([{"key": "k", "effect": "NoExecute"}]));
        assert_eq!(
            TaintToleration.filter(&p, no_execute.view()),
            Err(vec!["node(s) had untolerated taint {k: }".into()])
        );
        let prefer = tainted(json!([{"key": "k", "effect": "PreferNoSchedule"}]));
        assert_eq!(TaintToleration.filter(&p, prefer.view()), Ok(()));
    }

    #[test]
    fn tolerations_match_like_kubernetes() {
        let n = tainted(json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]));
        let passes = [
            json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]),
            json!([{"key": "dedicated", "value": "gpu"}]),
            json!([{"key": "dedicated", "operator": "Exists"}]),
            json!([{"operator": "Exists"}]),
        ];
        for tolerations in passes {
            assert_eq!(
                TaintToleration.filter(&with_tolerations(tolerations.clone()), n.view()),
                Ok(()),
                "{tolerations}"
            );
        }
        let fails = [
            json!([{"key": "dedicated", "value": "cpu"}]),
            json!([{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}]),
            json!([{"key": "other", "operator": "Exists"}]),
        ];
        for tolerations in fails {
            assert!(TaintToleration.filter(&with_tolerations(tolerations.clone()), n.view()).is_err(), "{tolerations}");
        }
    }
}
