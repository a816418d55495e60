//! The filter and score plugins, one module each, named as in Kubernetes.
//!
//! Filters, in the order they run on each node (a node is rejected by the first that fails):
//! [`node_unschedulable::NodeUnschedulable`], [`node_ready::NodeReady`],
//! [`node_affinity::NodeAffinity`], [`taint_toleration::TaintToleration`],
//! [`node_ports::NodePorts`], [`node_resources_fit::NodeResourcesFit`],
//! [`volume_binding::VolumeBinding`].
//!
//! Scores: [`least_allocated::LeastAllocated`] and [`selector_spread::SelectorSpread`], each
//! with a weight from [`ScoreWeights`].

pub mod least_allocated;
pub mod node_affinity;
pub mod node_ports;
pub mod node_ready;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod selector_spread;
pub mod taint_toleration;
pub mod volume_binding;

use crate::framework::{FilterPlugin, WeightedScorePlugin};

/// How much each score plugin counts. Kubernetes' defaults weigh resource fit 1 and spreading
/// (PodTopologySpread) 2; so do we.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreWeights {
    /// Weight of [`least_allocated::LeastAllocated`] (prefer emptier nodes).
    pub least_allocated: i64,
    /// Weight of [`selector_spread::SelectorSpread`] (spread pods of one owner).
    pub selector_spread: i64,
}

impl Default for ScoreWeights {
    fn default() -> Self {
        ScoreWeights { least_allocated: 1, selector_spread: 2 }
    }
}

/// The filter plugins, in the order they run.
pub fn default_filters() -> Vec<Box<dyn FilterPlugin>> {
    vec![
        Box::new(node_unschedulable::NodeUnschedulable),
        Box::new(node_ready::NodeReady),
        Box::new(node_affinity::NodeAffinity),
        Box::new(taint_toleration::TaintToleration),
        Box::new(node_ports::NodePorts),
        Box::new(node_resources_fit::NodeResourcesFit),
        Box::new(volume_binding::VolumeBinding),
    ]
}

/// The score plugins with `weights` (a plugin with weight 0 is left out).
pub fn default_scores(weights: ScoreWeights) -> Vec<WeightedScorePlugin> {
    let all: Vec<WeightedScorePlugin> = vec![
        WeightedScorePlugin { plugin: Box::new(least_allocated::LeastAllocated), weight: weights.least_allocated },
        WeightedScorePlugin { plugin: Box::new(selector_spread::SelectorSpread), weight: weights.selector_spread },
    ];
    all.into_iter().filter(|p| p.weight > 0).collect()
}
