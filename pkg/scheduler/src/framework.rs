//! The plugin framework: what a filter plugin and a score plugin are, and the facts about a pod
//! that plugins read.
//!
//! Kubernetes' scheduling framework has many extension points (PreFilter, Filter, PostFilter,
//! PreScore, Score, NormalizeScore, Reserve, Permit, PreBind, Bind, PostBind). rkube keeps the
//! three that decide where a pod goes:
//! - a [`FilterPlugin`] says whether a pod *can* run on a node, and if not, why (the reason is
//!   what users read in "0/3 nodes are available: ...");
//! - a [`ScorePlugin`] says how *good* a feasible node is (0 to [`MAX_NODE_SCORE`]), optionally
//!   normalising the scores of all feasible nodes together;
//! - the scheduler multiplies each plugin's score by its weight, adds them up, and picks the
//!   best node, breaking ties at random.
//!
//! Plugins are pure functions of ([`PodInfo`], [`NodeInfo`]): no I/O, no clock, no randomness,
//! so each is unit tested on its own (see `plugins/`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::HistogramVec;

use k8s_openapi::api::core::v1::Pod;
use rkube_informer::ObjectKey;

pub use crate::cache::NodeInfo;
use crate::plugins::volume_binding::VolumeFacts;
use crate::resources::{Resources, pod_requests};

/// The highest score a plugin gives a node (Kubernetes' `MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

/// A host port a container asks for: (protocol, host IP, port). An empty or `0.0.0.0` host IP
/// means every address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// `TCP`, `UDP` or `SCTP` (default `TCP`).
    pub protocol: String,
    /// The host IP, `0.0.0.0` when unset.
    pub ip: String,
    /// The port number.
    pub port: i32,
}

impl HostPort {
    /// Whether two host ports cannot both be bound on one node.
    pub fn conflicts_with(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// A pod plus the facts plugins need, computed once per scheduling attempt (or once when the
/// pod enters the cache).
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// The pod's key.
    pub key: ObjectKey,
    /// The pod as last seen.
    pub pod: Arc<Pod>,
    /// Requests for filtering (missing requests are zero).
    pub requests: Resources,
    /// Requests for scoring (missing CPU and memory requests count as defaults).
    pub scoring_requests: Resources,
    /// Host ports the pod's containers ask for.
    pub host_ports: Vec<HostPort>,
    /// The uid of the pod's controller owner (`ownerReferences[].controller == true`), if any.
    pub controller_uid: Option<String>,
    /// What the pod's PersistentVolumeClaims allow (filled in by the scheduling loop, which
    /// can read claims; empty for a pod without any).
    pub volumes: VolumeFacts,
}

impl PodInfo {
    /// Computes the facts about `pod`.
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let key = ObjectKey::of(pod.as_ref());
        let host_ports = pod
            .spec
            .iter()
            .flat_map(|spec| spec.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let port = p.host_port.filter(|port| *port > 0)?;
                let ip = p.host_ip.clone().filter(|ip| !ip.is_empty()).unwrap_or_else(|| "0.0.0.0".into());
                Some(HostPort { protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()), ip, port })
            })
            .collect();
        let controller_uid = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|owner| owner.controller == Some(true))
            .map(|owner| owner.uid.clone());
        PodInfo {
            key,
            requests: pod_requests(&pod, false),
            scoring_requests: pod_requests(&pod, true),
            host_ports,
            controller_uid,
            pod,
            volumes: VolumeFacts::default(),
        }
    }
}

/// Why a node cannot take a pod: one or more user-readable reasons, e.g. `Insufficient cpu`.
pub type Rejection = Vec<String>;

/// Decides whether a pod can run on a node (Kubernetes: a Filter plugin).
pub trait FilterPlugin: Send + Sync {
    /// The plugin's name, as Kubernetes spells it (`NodeResourcesFit`, `TaintToleration`, ...).
    fn name(&self) -> &'static str;
    /// `Ok` if `pod` fits `node`, else the reasons it does not.
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection>;
}

/// Ranks the nodes that passed every filter (Kubernetes: Score plus NormalizeScore).
pub trait ScorePlugin: Send + Sync {
    /// The plugin's name, as Kubernetes spells it (`NodeResourcesLeastAllocated`, ...).
    fn name(&self) -> &'static str;
    /// A raw score for `node`; after [`ScorePlugin::normalize`] it must lie in
    /// `0..=MAX_NODE_SCORE`.
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64;
    /// Rescales the raw scores of all feasible nodes together (default: leave them).
    fn normalize(&self, scores: &mut [i64]) {
        let _ = scores;
    }
}

/// A score plugin with its weight.
pub struct WeightedScorePlugin {
    /// The plugin.
    pub plugin: Box<dyn ScorePlugin>,
    /// What its (normalised) score is multiplied by; 0 turns it off.
    pub weight: i64,
}

impl std::fmt::Debug for WeightedScorePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightedScorePlugin")
            .field("plugin", &self.plugin.name())
            .field("weight", &self.weight)
            .finish()
    }
}

/// Why no node fits a pod: how many nodes were considered and how many gave each reason.
/// Its `Display` is Kubernetes' message, e.g.
/// `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {key: value}.`
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FitError {
    /// How many candidate nodes there were.
    pub num_nodes: usize,
    /// Reason → how many nodes gave it (a node may give several, e.g. cpu and memory).
    pub reasons: BTreeMap<String, usize>,
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0/{} nodes are available", self.num_nodes)?;
        if self.num_nodes == 0 {
            return write!(f, ": no nodes are registered.");
        }
        // Kubernetes sorts the "<count> <reason>" strings as text.
        let mut parts: Vec<String> = self.reasons.iter().map(|(reason, n)| format!("{n} {reason}")).collect();
        parts.sort();
        write!(f, ": {}.", parts.join(", "))
    }
}

/// The configured plugins and how one scheduling attempt runs them (Kubernetes calls this a
/// scheduling profile's framework).
pub struct Framework {
    /// Filters, in the order they run; a node is rejected by the first that fails.
    pub filters: Vec<Box<dyn FilterPlugin>>,
    /// Weighted scores.
    pub scores: Vec<WeightedScorePlugin>,
    /// Where plugin durations go (`rkube_scheduler_plugin_duration_seconds{plugin}`), if anywhere.
    pub plugin_duration: Option<HistogramVec>,
}

impl std::fmt::Debug for Framework {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let filters: Vec<&str> = self.filters.iter().map(|p| p.name()).collect();
        f.debug_struct("Framework").field("filters", &filters).field("scores", &self.scores).finish()
    }
}

impl Framework {
    /// Picks a node for `pod` among `nodes`: filter, score, best total wins, ties broken at
    /// random with `rng`. With one feasible node, scoring is skipped.
    pub fn find_node<'a>(
        &self,
        pod: &PodInfo,
        nodes: impl Iterator<Item = &'a NodeInfo>,
        rng: &mut impl rand::Rng,
    ) -> Result<String, FitError> {
        let mut filter_time = vec![Duration::ZERO; self.filters.len()];
        let mut error = FitError::default();
        let mut feasible: Vec<&NodeInfo> = Vec::new();
        for node in nodes {
            error.num_nodes += 1;
            let mut rejected = None;
            for (plugin, spent) in self.filters.iter().zip(filter_time.iter_mut()) {
                let started = Instant::now();
                let outcome = plugin.filter(pod, node);
                *spent += started.elapsed();
                if let Err(reasons) = outcome {
                    rejected = Some(reasons);
                    break;
                }
            }
            match rejected {
                None => feasible.push(node),
                Some(reasons) => {
                    for reason in reasons {
                        *error.reasons.entry(reason).or_default() += 1;
                    }
                }
            }
        }
        if let Some(histogram) = &self.plugin_duration {
            for (plugin, spent) in self.filters.iter().zip(&filter_time) {
                histogram.with_label_values(&[plugin.name()]).observe(spent.as_secs_f64());
            }
        }
        match feasible.len() {
            0 => return Err(error),
            1 => return Ok(feasible[0].name.clone()),
            _ => {}
        }
        let mut totals = vec![0i64; feasible.len()];
        for weighted in &self.scores {
            let started = Instant::now();
            let mut scores: Vec<i64> = feasible.iter().map(|node| weighted.plugin.score(pod, node)).collect();
            weighted.plugin.normalize(&mut scores);
            for (total, score) in totals.iter_mut().zip(scores) {
                *total = total.saturating_add(score.clamp(0, MAX_NODE_SCORE).saturating_mul(weighted.weight));
            }
            if let Some(histogram) = &self.plugin_duration {
                histogram.with_label_values(&[weighted.plugin.name()]).observe(started.elapsed().as_secs_f64());
            }
        }
        // Reservoir sampling over the best totals: each tied node is equally likely.
        let mut best = (i64::MIN, 0usize, 0u32);
        for (index, total) in totals.into_iter().enumerate() {
            if total > best.0 {
                best = (total, index, 1);
            } else if total == best.0 {
                best.2 += 1;
                if rng.random_range(0..best.2) == 0 {
                    best.1 = index;
                }
            }
        }
        Ok(feasible[best.1].name.clone())
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders for plugin tests.
    use super::*;
    use crate::cache::Cache;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::{Value, json};

    /// A pod from JSON (name and namespace filled in when missing).
    pub fn pod(mut value: Value) -> PodInfo {
        if value["metadata"]["name"].is_null() {
            value["metadata"]["name"] = json!("p");
        }
        if value["metadata"]["namespace"].is_null() {
            value["metadata"]["namespace"] = json!("default");
        }
        if value["spec"].is_null() {
            value["spec"] = json!({"containers": [{"name": "c"}]});
        }
        PodInfo::new(Arc::new(serde_json::from_value(value).unwrap()))
    }

    /// A Ready node from JSON with 4 CPUs, 8Gi and 10 pods allocatable unless set.
    pub fn node(mut value: Value) -> Node {
        if value["metadata"]["name"].is_null() {
            value["metadata"]["name"] = json!("n");
        }
        if value["status"]["allocatable"].is_null() {
            value["status"]["allocatable"] = json!({"cpu": "4", "memory": "8Gi", "pods": "10"});
        }
        if value["status"]["conditions"].is_null() {
            value["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        }
        serde_json::from_value(value).unwrap()
    }

    /// A NodeInfo for `node` holding `pods` (bound there).
    pub fn node_info(node: Node, pods: Vec<PodInfo>) -> NodeInfo {
        let name = node.metadata.name.clone().unwrap();
        let mut cache = Cache::default();
        cache.set_node(Arc::new(node));
        for (i, mut p) in pods.into_iter().enumerate() {
            p.key = ObjectKey::new(Some("default"), &format!("bound-{i}"));
            cache.assume(p, &name);
        }
        cache.node(&name).unwrap().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{node, node_info, pod};
    use super::*;
    use crate::plugins::{ScoreWeights, default_filters, default_scores};
    use rand::SeedableRng;
    use serde_json::json;

    fn framework() -> Framework {
        Framework { filters: default_filters(), scores: default_scores(ScoreWeights::default()), plugin_duration: None }
    }

    #[test]
    fn the_message_counts_nodes_per_reason_like_kubernetes() {
        let nodes = [
            node_info(
                node(
                    json!({"metadata": {"name": "a"}, "status": {"allocatable": {"cpu": "100m", "memory": "1Gi", "pods": "5"}}}),
                ),
                vec![],
            ),
            node_info(
                node(
                    json!({"metadata": {"name": "b"}, "spec": {"taints": [{"key": "key", "value": "value", "effect": "NoSchedule"}]}}),
                ),
                vec![],
            ),
            node_info(
                node(
                    json!({"metadata": {"name": "c"}, "spec": {"taints": [{"key": "key", "value": "value", "effect": "NoExecute"}]}}),
                ),
                vec![],
            ),
        ];
        let p = pod(json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}));
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let error = framework().find_node(&p, nodes.iter(), &mut rng).unwrap_err();
        assert_eq!(
            error.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {key: value}."
        );
        let none = framework().find_node(&p, [].iter(), &mut rng).unwrap_err();
        assert_eq!(none.to_string(), "0/0 nodes are available: no nodes are registered.");
    }

    #[test]
    fn the_emptiest_node_wins_and_ties_are_broken_at_random() {
        let busy = pod(
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "3", "memory": "6Gi"}}}]}}),
        );
        let nodes = [
            node_info(node(json!({"metadata": {"name": "a"}})), vec![busy]),
            node_info(node(json!({"metadata": {"name": "b"}})), vec![]),
            node_info(node(json!({"metadata": {"name": "c"}})), vec![]),
        ];
        let p = pod(json!({}));
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut chosen = std::collections::BTreeMap::<String, usize>::new();
        for _ in 0..200 {
            *chosen.entry(framework().find_node(&p, nodes.iter(), &mut rng).unwrap()).or_default() += 1;
        }
        assert!(!chosen.contains_key("a"), "{chosen:?}");
        assert!(chosen["b"] > 50 && chosen["c"] > 50, "ties must be broken at random: {chosen:?}");
    }
}
