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
//! Plugins are pure functions of ([`PodInfo`], [`NodeRef`]): no I/O, no clock, no randomness,
//! so each is unit tested on its own (see `plugins/`). A [`NodeRef`] gives a node's compact
//! [`NodeFacts`] (resources, cordoned, Ready, tainted) beside its whole [`NodeInfo`]; plugins
//! read the facts first, since in a cycle they lie in one contiguous array of the snapshot.
//!
//! On a large cluster one attempt does not look at every node ([`Framework::find_node_among`]):
//! filtering stops once [`num_feasible_nodes_to_find`] nodes have passed (Kubernetes'
//! `percentageOfNodesToScore`), each attempt starts where the last one stopped so that every
//! node gets its turn, and the nodes are filtered by several threads when there are enough of
//! them ([`Search::parallelism`]). Not promised: the best node of the whole cluster; the best of
//! the nodes looked at, as in Kubernetes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::HistogramVec;

use k8s_openapi::api::core::v1::Pod;
use rkube_informer::ObjectKey;

use crate::cache::Snapshot;
pub use crate::cache::{NodeFacts, NodeInfo, NodeRef};
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
    fn filter(&self, pod: &PodInfo, node: NodeRef<'_>) -> Result<(), Rejection>;
}

/// Ranks the nodes that passed every filter (Kubernetes: Score plus NormalizeScore).
pub trait ScorePlugin: Send + Sync {
    /// The plugin's name, as Kubernetes spells it (`NodeResourcesLeastAllocated`, ...).
    fn name(&self) -> &'static str;
    /// A raw score for `node`; after [`ScorePlugin::normalize`] it must lie in
    /// `0..=MAX_NODE_SCORE`.
    fn score(&self, pod: &PodInfo, node: NodeRef<'_>) -> i64;
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

/// Below this many nodes, every node is looked at (Kubernetes' `minFeasibleNodesToFind`).
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never falls below this (Kubernetes' `minFeasibleNodesPercentageToFind`).
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// How many feasible nodes one attempt looks for among `all_nodes`, given
/// `--percentage-of-nodes-to-score` (Kubernetes' `numFeasibleNodesToFind`):
/// - fewer than [`MIN_FEASIBLE_NODES_TO_FIND`] nodes, or a percentage of 100 or more: all;
/// - percentage 0 means adaptive: 50% minus 1% per 125 nodes, at least
///   [`MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND`] (about 46% of 500 nodes, 10% of 5,000, 5% from
///   5,625 nodes on);
/// - never fewer than [`MIN_FEASIBLE_NODES_TO_FIND`].
pub fn num_feasible_nodes_to_find(percentage: u32, all_nodes: usize) -> usize {
    if all_nodes < MIN_FEASIBLE_NODES_TO_FIND || percentage >= 100 {
        return all_nodes;
    }
    let percentage = match usize::try_from(percentage).unwrap_or(100) {
        0 => 50usize.saturating_sub(all_nodes / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND),
        given => given,
    };
    (all_nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Where one attempt looks and how hard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Search {
    /// Index of the first node to filter; the search goes round from there.
    pub start: usize,
    /// Stop filtering once this many nodes passed (see [`num_feasible_nodes_to_find`]).
    pub to_find: usize,
    /// Threads that may filter at once (1: this thread only). More than one are used only for
    /// the nodes past the first [`PARALLEL_FILTER_MIN_NODES`] a cycle filters.
    pub parallelism: usize,
    /// Record each plugin's time in `plugin_duration` this attempt (Kubernetes samples 10% of
    /// attempts, since reading the clock around every plugin on every node costs more than
    /// most plugins).
    pub timed: bool,
}

impl Search {
    /// Every node, from the first, on this thread, timed.
    pub fn all(nodes: usize) -> Search {
        Search { start: 0, to_find: nodes, parallelism: 1, timed: true }
    }
}

/// A cycle filters this many nodes on its own thread before it calls in other threads for the
/// rest: most cycles have found enough nodes by then (at 5,000 nodes, 500 are wanted), and for
/// them waking threads would cost more than the filters.
pub const PARALLEL_FILTER_MIN_NODES: usize = 1000;
/// Nodes a filtering thread takes at a time.
const FILTER_CHUNK: usize = 64;

/// The outcome of a successful attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The chosen node.
    pub node: String,
    /// How many nodes were filtered; the next attempt starts this many nodes further on.
    pub examined: usize,
    /// How many of them passed.
    pub feasible: usize,
}

/// The nodes one attempt chooses among, by position: a [`Snapshot`] in the scheduling loop (facts
/// from its contiguous array), or a list of [`NodeInfo`]s.
pub trait Candidates: Sync {
    /// How many nodes there are.
    fn count(&self) -> usize;
    /// The node at `i` (`i < count()`).
    fn at(&self, i: usize) -> NodeRef<'_>;
}

impl Candidates for Snapshot {
    fn count(&self) -> usize {
        self.len()
    }

    fn at(&self, i: usize) -> NodeRef<'_> {
        self.node(i)
    }
}

impl<N: AsRef<NodeInfo> + Sync> Candidates for [N] {
    fn count(&self) -> usize {
        self.len()
    }

    fn at(&self, i: usize) -> NodeRef<'_> {
        self[i].as_ref().view()
    }
}

impl<N: AsRef<NodeInfo> + Sync> Candidates for Vec<N> {
    fn count(&self) -> usize {
        self.len()
    }

    fn at(&self, i: usize) -> NodeRef<'_> {
        self[i].as_ref().view()
    }
}

/// What filtering a run of nodes found.
struct Filtered {
    /// Positions (in search order) of the nodes that passed.
    feasible: Vec<usize>,
    examined: usize,
    reasons: BTreeMap<String, usize>,
    time: Vec<Duration>,
}

impl Filtered {
    /// Nothing found yet; `time` has an entry per filter when the attempt is timed.
    fn new(timed: bool, filters: usize) -> Filtered {
        Filtered {
            feasible: Vec::new(),
            examined: 0,
            reasons: BTreeMap::new(),
            time: vec![Duration::ZERO; if timed { filters } else { 0 }],
        }
    }

    fn absorb(&mut self, other: Filtered) {
        self.feasible.extend(other.feasible);
        self.examined += other.examined;
        for (reason, n) in other.reasons {
            *self.reasons.entry(reason).or_default() += n;
        }
        for (sum, spent) in self.time.iter_mut().zip(other.time) {
            *sum += spent;
        }
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
    /// random with `rng`. With one feasible node, scoring is skipped. Looks at every node; the
    /// scheduling loop uses [`Framework::find_node_among`].
    pub fn find_node<'a>(
        &self,
        pod: &PodInfo,
        nodes: impl Iterator<Item = &'a NodeInfo>,
        rng: &mut impl rand::Rng,
    ) -> Result<String, FitError> {
        let nodes: Vec<&NodeInfo> = nodes.collect();
        self.find_node_among(pod, &nodes, Search::all(nodes.len()), rng).map(|placement| placement.node)
    }

    /// Picks a node for `pod` among `nodes` as `search` says: filter from `search.start` round
    /// until `search.to_find` nodes passed (or every node was filtered), score those, best total
    /// wins, ties broken at random. A [`FitError`] means every node was filtered and none passed.
    pub fn find_node_among(
        &self,
        pod: &PodInfo,
        nodes: &(impl Candidates + ?Sized),
        search: Search,
        rng: &mut impl rand::Rng,
    ) -> Result<Placement, FitError> {
        let total = nodes.count();
        let to_find = search.to_find.clamp(1, total.max(1));
        let start = if total == 0 { 0 } else { search.start % total };
        let at = |position: usize| nodes.at((start + position) % total);
        // This thread alone first: most cycles find enough nodes long before other threads
        // could even be woken (on 2 busy cores, waking them made a cycle 2.7 times as long).
        let alone = if search.parallelism > 1 { PARALLEL_FILTER_MIN_NODES.min(total) } else { total };
        let found = AtomicUsize::new(0);
        let mut filtered = self.filter_range(pod, 0..alone, to_find, &found, search.timed, &at);
        if alone < total && found.load(Ordering::Relaxed) < to_find {
            let rest = self.filter_parallel(pod, alone..total, to_find, &found, search.parallelism, search.timed, &at);
            filtered.absorb(rest);
        }
        if let (Some(histogram), true) = (&self.plugin_duration, search.timed) {
            for (plugin, spent) in self.filters.iter().zip(&filtered.time) {
                histogram.with_label_values(&[plugin.name()]).observe(spent.as_secs_f64());
            }
        }
        let feasible: Vec<NodeRef<'_>> = filtered.feasible.iter().map(|&position| at(position)).collect();
        let placement = |node: NodeRef<'_>| Placement {
            node: node.info.name.clone(),
            examined: filtered.examined,
            feasible: feasible.len(),
        };
        match feasible.len() {
            0 => return Err(FitError { num_nodes: total, reasons: filtered.reasons }),
            1 => return Ok(placement(feasible[0])),
            _ => {}
        }
        let mut totals = vec![0i64; feasible.len()];
        for weighted in &self.scores {
            let started = search.timed.then(Instant::now);
            let mut scores: Vec<i64> = feasible.iter().map(|&node| weighted.plugin.score(pod, node)).collect();
            weighted.plugin.normalize(&mut scores);
            for (total, score) in totals.iter_mut().zip(scores) {
                *total = total.saturating_add(score.clamp(0, MAX_NODE_SCORE).saturating_mul(weighted.weight));
            }
            if let (Some(histogram), Some(started)) = (&self.plugin_duration, started) {
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
        Ok(placement(feasible[best.1]))
    }

    /// Filters the nodes at `positions` in order, stopping once `found` (shared with other
    /// threads) reaches `to_find`.
    fn filter_range<'a>(
        &self,
        pod: &PodInfo,
        positions: std::ops::Range<usize>,
        to_find: usize,
        found: &AtomicUsize,
        timed: bool,
        at: &(impl Fn(usize) -> NodeRef<'a> + Sync),
    ) -> Filtered {
        let mut out = Filtered::new(timed, self.filters.len());
        for position in positions {
            if found.load(Ordering::Relaxed) >= to_find {
                break;
            }
            out.examined += 1;
            match self.run_filters(pod, at(position), &mut out.time) {
                Ok(()) => {
                    if found.fetch_add(1, Ordering::Relaxed) < to_find {
                        out.feasible.push(position);
                    }
                }
                Err(reasons) => {
                    for reason in reasons {
                        *out.reasons.entry(reason).or_default() += 1;
                    }
                }
            }
        }
        out
    }

    /// Filters `positions` with `threads` workers (this thread and jobs on rayon's pool, whose
    /// threads are started once and kept), each taking [`FILTER_CHUNK`] nodes at a time in search
    /// order, all stopping once `found` reaches `to_find`; the feasible nodes come back in search
    /// order.
    #[allow(clippy::too_many_arguments)]
    fn filter_parallel<'a>(
        &self,
        pod: &PodInfo,
        positions: std::ops::Range<usize>,
        to_find: usize,
        found: &AtomicUsize,
        threads: usize,
        timed: bool,
        at: &(impl Fn(usize) -> NodeRef<'a> + Sync),
    ) -> Filtered {
        let next_chunk = AtomicUsize::new(0);
        let work = || {
            let mut mine = Filtered::new(timed, self.filters.len());
            loop {
                let first = positions.start + next_chunk.fetch_add(1, Ordering::Relaxed) * FILTER_CHUNK;
                if first >= positions.end || found.load(Ordering::Relaxed) >= to_find {
                    return mine;
                }
                let chunk = first..(first + FILTER_CHUNK).min(positions.end);
                mine.absorb(self.filter_range(pod, chunk, to_find, found, timed, at));
            }
        };
        let helpers = Mutex::new(Vec::new());
        let mut all = rayon::in_place_scope(|scope| {
            for _ in 1..threads.min(positions.len().div_ceil(FILTER_CHUNK)) {
                scope.spawn(|_| {
                    // A filter plugin that panicked is a bug; its nodes then count as not examined.
                    if let Ok(part) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
                        helpers.lock().unwrap_or_else(PoisonError::into_inner).push(part);
                    }
                });
            }
            work()
        });
        for part in helpers.into_inner().unwrap_or_else(PoisonError::into_inner) {
            all.absorb(part);
        }
        all.feasible.sort_unstable();
        all
    }

    /// Runs the filters on one node; the first that fails rejects it. Adds each plugin's time to
    /// `time` when `time` has an entry per filter.
    fn run_filters(&self, pod: &PodInfo, node: NodeRef<'_>, time: &mut [Duration]) -> Result<(), Rejection> {
        if time.is_empty() {
            return self.filters.iter().try_for_each(|plugin| plugin.filter(pod, node));
        }
        for (plugin, spent) in self.filters.iter().zip(time.iter_mut()) {
            let started = Instant::now();
            let outcome = plugin.filter(pod, node);
            *spent += started.elapsed();
            outcome?;
        }
        Ok(())
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

    #[test]
    fn the_number_of_nodes_to_find_adapts_to_the_cluster_like_kubernetes() {
        // Small clusters: every node.
        assert_eq!(num_feasible_nodes_to_find(0, 0), 0);
        assert_eq!(num_feasible_nodes_to_find(0, 99), 99);
        assert_eq!(num_feasible_nodes_to_find(0, 100), 100, "50% of 100 is less than the minimum of 100");
        // Adaptive: 50% - nodes/125, at least 5%, at least 100 nodes.
        assert_eq!(num_feasible_nodes_to_find(0, 500), 230, "46% of 500");
        assert_eq!(num_feasible_nodes_to_find(0, 1000), 420, "42% of 1,000");
        assert_eq!(num_feasible_nodes_to_find(0, 5000), 500, "10% of 5,000");
        assert_eq!(num_feasible_nodes_to_find(0, 6000), 300, "5% from 5,625 nodes on");
        assert_eq!(num_feasible_nodes_to_find(0, 100_000), 5000);
        // Given: that percentage, at least 100; 100% means all.
        assert_eq!(num_feasible_nodes_to_find(20, 5000), 1000);
        assert_eq!(num_feasible_nodes_to_find(1, 5000), 100);
        assert_eq!(num_feasible_nodes_to_find(100, 5000), 5000);
        assert_eq!(num_feasible_nodes_to_find(1, 50), 50);
    }

    fn many_nodes(n: usize) -> Vec<NodeInfo> {
        (0..n).map(|i| node_info(node(json!({"metadata": {"name": format!("n{i:04}")}})), vec![])).collect()
    }

    #[test]
    fn filtering_stops_once_enough_nodes_fit_and_starts_where_it_is_told() {
        let nodes = many_nodes(300);
        let p = pod(json!({}));
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let search = Search { start: 290, to_find: 20, parallelism: 1, timed: false };
        let placement = framework().find_node_among(&p, &nodes, search, &mut rng).unwrap();
        assert_eq!((placement.examined, placement.feasible), (20, 20));
        // From node 290 round to node 9: the chosen node is one of those.
        let index: usize = placement.node[1..].parse().unwrap();
        assert!(!(10..290).contains(&index), "{placement:?}");
    }

    #[test]
    fn successive_attempts_go_round_the_nodes() {
        // What the scheduling loop does: start the next attempt where the last one stopped.
        let nodes = many_nodes(250);
        let p = pod(json!({}));
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut start = 0;
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..5 {
            let search = Search { start, to_find: 100, parallelism: 1, timed: false };
            let placement = framework().find_node_among(&p, &nodes, search, &mut rng).unwrap();
            seen.insert(placement.node);
            start = (start + placement.examined) % nodes.len();
        }
        assert_eq!(start, 500 % 250, "5 attempts of 100 nodes each moved the start 500 nodes on");
        // Each attempt looked at a different stretch, so the choices spread over the cluster.
        assert!(seen.len() >= 3, "{seen:?}");
    }

    #[test]
    fn nodes_that_fail_count_as_examined_and_a_fit_error_names_every_node() {
        let mut nodes = many_nodes(200);
        for info in nodes.iter_mut().take(150) {
            info.facts.allocatable.milli_cpu = 0; // nothing fits there
        }
        let p = pod(json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}));
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let search = Search { start: 0, to_find: 10, parallelism: 1, timed: false };
        let placement = framework().find_node_among(&p, &nodes, search, &mut rng).unwrap();
        assert_eq!((placement.examined, placement.feasible), (160, 10));
        let error = framework().find_node_among(&p, &nodes[..150], search, &mut rng).unwrap_err();
        assert_eq!(error.num_nodes, 150);
        assert_eq!(error.reasons.get("Insufficient cpu"), Some(&150));
    }

    #[test]
    fn parallel_filtering_finds_the_same_as_one_thread() {
        let mut nodes = many_nodes(PARALLEL_FILTER_MIN_NODES * 2);
        for (i, info) in nodes.iter_mut().enumerate() {
            if i % 3 != 0 {
                info.facts.allocatable.milli_cpu = 0;
            }
        }
        let p = pod(json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}));
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let feasible = nodes.len().div_ceil(3);
        for threads in [1, 2, 4] {
            let all = Search { start: 17, to_find: nodes.len(), parallelism: threads, timed: true };
            let placement = framework().find_node_among(&p, &nodes, all, &mut rng).unwrap();
            assert_eq!((placement.examined, placement.feasible), (nodes.len(), feasible), "{threads} threads");
            let some = Search { to_find: 50, ..all };
            let placement = framework().find_node_among(&p, &nodes, some, &mut rng).unwrap();
            assert_eq!(placement.feasible, 50, "{threads} threads stop at 50 feasible nodes");
            assert!(placement.examined >= 140 && placement.examined <= nodes.len(), "{threads}: {placement:?}");
        }
        let none: Vec<NodeInfo> = nodes.iter().filter(|info| info.facts.allocatable.milli_cpu == 0).cloned().collect();
        let error = framework()
            .find_node_among(&p, &none, Search { start: 0, to_find: 10, parallelism: 2, timed: false }, &mut rng)
            .unwrap_err();
        assert_eq!(error.reasons.get("Insufficient cpu"), Some(&none.len()), "every node's reason is counted once");
    }
}
