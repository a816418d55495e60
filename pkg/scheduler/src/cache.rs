//! The scheduler's cache: every node, and every pod bound to one, with the resources already
//! spoken for on each node.
//!
//! It is fed by the pod and node informers, plus the scheduler itself: when the scheduler picks
//! a node it **assumes** the pod onto it ([`Cache::assume`]) before the binding request has even
//! been sent. The next scheduling cycle therefore sees the node's resources as used, and a burst
//! of pods cannot overfill a node while bindings are in flight. Kubernetes calls this the
//! scheduler cache's "assumed pods".
//!
//! What it keeps true (tests below):
//! - a node's `requested` is the sum of the requests of the pods on it, assumed ones included;
//! - a pod is counted on at most one node, once, whether assumed or seen through the watch;
//! - seeing the pod bound through the watch confirms an assumption (it stays counted once);
//!   [`Cache::forget`] (a failed bind) takes an assumed pod off its node again;
//! - pods that finished (`Succeeded`/`Failed`) or are gone use nothing.
//!
//! The scheduling loop does not read the cache directly: it reads a [`Snapshot`], brought up to
//! date at the start of each cycle by [`Cache::update_snapshot`]. Every change to a node (the
//! node itself, or a pod added to or removed from it) gives that node the cache's next
//! **generation**; the update copies only the nodes whose generation is newer than the
//! snapshot's, as Kubernetes' `Cache.UpdateSnapshot` does. A node is kept as an
//! `Arc<NodeInfo>` shared by cache and snapshot, so "copying" an entry into the snapshot is a
//! reference count, and the cache clones a node's data only when it changes a node the snapshot
//! still holds (copy on write). Unchanged nodes are never copied
//! (`an_unchanged_node_is_not_copied_again_and_a_changed_one_is_seen`).
//!
//! Not promised: assumptions expire. An assumed pod stays until the watch confirms it, it is
//! forgotten after a failed bind, or it is deleted; Kubernetes adds a TTL for binds that
//! succeed but are never seen, which cannot happen here short of a watch that is lost for good.

use kube_core::ResourceExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use rkube_informer::ObjectKey;

use crate::framework::PodInfo;
use crate::resources::{Resources, node_allocatable};

/// What the filters and scores read of a node for nearly every pod, in one small `Copy` value.
///
/// A [`Snapshot`] keeps these in one contiguous array beside its nodes, so a cycle that looks at
/// 500 nodes reads 500 adjacent entries instead of following a pointer to each node: at 5,000
/// nodes, that first read of each `NodeInfo` (a cache miss per node) was 30% of the scheduler's
/// CPU. A plugin reads the whole [`NodeInfo`] only when these do not say enough.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// What the node offers (`status.allocatable`).
    pub allocatable: Resources,
    /// Sum of the filtering requests of the pods on it.
    pub requested: Resources,
    /// Sum of the scoring requests of the pods on it (missing requests count as defaults).
    pub scoring_requested: Resources,
    /// `spec.unschedulable` (cordoned).
    pub cordoned: bool,
    /// Whether its `Ready` condition is `True`.
    pub ready: bool,
    /// Whether it has a `NoSchedule` or `NoExecute` taint (only then does TaintToleration read
    /// the Node).
    pub tainted: bool,
}

/// One node and what is bound (or assumed) to it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// The node as last seen; `None` while only pods that name it are known (node not yet seen,
    /// or deleted with pods still on it). Such entries are never candidates.
    pub node: Option<Arc<Node>>,
    /// What most plugins read: resources, cordoned, Ready, tainted (see [`NodeFacts`]).
    pub facts: NodeFacts,
    /// The pods on the node, by key.
    pub pods: BTreeMap<ObjectKey, Arc<PodInfo>>,
    /// The cache's generation when this entry last changed (see [`Snapshot`]).
    pub generation: u64,
}

/// One node as a plugin reads it: its [`NodeFacts`] (in a cycle, the snapshot's contiguous
/// copy) and its whole entry, which a plugin follows only when the facts do not say enough.
#[derive(Debug, Clone, Copy)]
pub struct NodeRef<'a> {
    /// The node's facts.
    pub facts: &'a NodeFacts,
    /// The whole entry (name, Node object, pods).
    pub info: &'a NodeInfo,
}

impl AsRef<NodeInfo> for NodeInfo {
    fn as_ref(&self) -> &NodeInfo {
        self
    }
}

impl NodeInfo {
    fn empty(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            node: None,
            facts: NodeFacts::default(),
            pods: BTreeMap::new(),
            generation: 0,
        }
    }

    /// This entry as plugins read it, with its own facts.
    pub fn view(&self) -> NodeRef<'_> {
        NodeRef { facts: &self.facts, info: self }
    }

    fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.facts.requested = self.facts.requested.plus(pod.requests);
        self.facts.scoring_requested = self.facts.scoring_requested.plus(pod.scoring_requests);
        self.pods.insert(pod.key.clone(), pod);
    }

    fn remove_pod(&mut self, key: &ObjectKey) {
        if let Some(pod) = self.pods.remove(key) {
            self.facts.requested = self.facts.requested.minus(pod.requests);
            self.facts.scoring_requested = self.facts.scoring_requested.minus(pod.scoring_requests);
        }
    }
}

/// Where the cache has a pod.
#[derive(Debug, Clone)]
struct PodPlace {
    node: String,
    /// Placed by this scheduler, not yet seen bound through the watch.
    assumed: bool,
}

/// Nodes and the pods on them; see the module docs. Not thread-safe by itself: the scheduler
/// keeps it behind one mutex.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: BTreeMap<String, Arc<NodeInfo>>,
    pods: HashMap<ObjectKey, PodPlace>,
    /// The last generation handed out; every node change takes the next one.
    generation: u64,
    /// Node name -> the generation of its last change (kept after the node is gone, so that a
    /// snapshot still holding it learns of its removal).
    changed_at: HashMap<String, u64>,
    /// The inverse of `changed_at`: generation -> node name, walked newest-first by
    /// [`Cache::update_snapshot`] (Kubernetes keeps a list ordered by generation instead).
    changes: BTreeMap<u64, String>,
}

fn finished(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

impl Cache {
    /// Adds or replaces a node (from the node informer).
    pub fn set_node(&mut self, node: Arc<Node>) {
        let name = node.name_any();
        let info = self.node_mut(&name);
        info.facts.allocatable = node_allocatable(&node);
        info.facts.cordoned = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        info.facts.tainted = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|taints| taints.iter().any(|t| t.effect == "NoSchedule" || t.effect == "NoExecute"));
        info.facts.ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        info.node = Some(node);
    }

    /// Removes a node. Pods still bound to it keep a placeholder entry (not a candidate) until
    /// they are deleted too.
    pub fn remove_node(&mut self, name: &str) {
        if self.nodes.contains_key(name) {
            let info = self.node_mut(name);
            info.node = None;
            info.facts = NodeFacts {
                requested: info.facts.requested,
                scoring_requested: info.facts.scoring_requested,
                ..NodeFacts::default()
            };
            if info.pods.is_empty() {
                self.nodes.remove(name);
            }
        }
    }

    /// Records a pod seen through the watch. A bound, unfinished pod is counted on its node
    /// (confirming it if it was assumed); anything else is removed from the cache.
    pub fn update_pod(&mut self, pod: Arc<Pod>) {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty());
        let key = ObjectKey::of(pod.as_ref());
        match node {
            Some(node) if !finished(&pod) => {
                self.remove_pod(&key);
                self.place(Arc::new(PodInfo::new(pod)), &node, false);
            }
            // Not bound: keep an assumption (the watch has not caught up with our bind yet).
            None if self.is_assumed(&key) => {}
            _ => self.remove_pod(&key),
        }
    }

    /// Removes a pod (deleted, or finished).
    pub fn remove_pod(&mut self, key: &ObjectKey) {
        if let Some(place) = self.pods.remove(key)
            && self.nodes.contains_key(&place.node)
        {
            let info = self.node_mut(&place.node);
            info.remove_pod(key);
            if info.node.is_none() && info.pods.is_empty() {
                self.nodes.remove(&place.node);
            }
        }
    }

    /// Counts `pod` on `node` before the binding is confirmed (see the module docs).
    pub fn assume(&mut self, pod: PodInfo, node: &str) {
        self.remove_pod(&pod.key);
        self.place(Arc::new(pod), node, true);
    }

    /// Takes an assumed pod off its node again (its binding failed). A pod already confirmed
    /// through the watch is left alone.
    pub fn forget(&mut self, key: &ObjectKey) {
        if self.is_assumed(key) {
            self.remove_pod(key);
        }
    }

    /// Whether `key` is assumed (placed by us, not yet seen bound).
    pub fn is_assumed(&self, key: &ObjectKey) -> bool {
        self.pods.get(key).is_some_and(|place| place.assumed)
    }

    /// The node a pod is counted on, if any.
    pub fn node_of(&self, key: &ObjectKey) -> Option<&str> {
        self.pods.get(key).map(|place| place.node.as_str())
    }

    /// One node's entry.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name).map(AsRef::as_ref)
    }

    /// The nodes that can be candidates (seen through the node informer), in name order.
    pub fn candidate_nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values().map(AsRef::as_ref).filter(|info| info.node.is_some())
    }

    /// Brings `snapshot` up to date: the nodes changed since its generation are put in (or
    /// taken out, if gone or no longer candidates); the others are left untouched. Returns how
    /// many entries it looked at.
    pub fn update_snapshot(&self, snapshot: &mut Snapshot) -> usize {
        let mut looked_at = 0;
        for name in self.changes.range(snapshot.generation + 1..).map(|(_, name)| name) {
            looked_at += 1;
            match self.nodes.get(name).filter(|info| info.node.is_some()) {
                Some(info) => snapshot.put(Arc::clone(info)),
                None => snapshot.remove(name),
            }
        }
        snapshot.generation = self.generation;
        looked_at
    }

    /// How many pods are assumed and not yet confirmed.
    pub fn assumed_count(&self) -> usize {
        self.pods.values().filter(|place| place.assumed).count()
    }

    fn place(&mut self, pod: Arc<PodInfo>, node: &str, assumed: bool) {
        self.pods.insert(pod.key.clone(), PodPlace { node: node.to_string(), assumed });
        self.node_mut(node).add_pod(pod);
    }

    /// The entry of node `name` (created empty if missing), to be changed: it takes the next
    /// generation, and is cloned first if a snapshot still shares it.
    fn node_mut(&mut self, name: &str) -> &mut NodeInfo {
        self.generation += 1;
        let generation = self.generation;
        if let Some(previous) = self.changed_at.insert(name.to_string(), generation) {
            self.changes.remove(&previous);
        }
        self.changes.insert(generation, name.to_string());
        let entry = self.nodes.entry(name.to_string()).or_insert_with(|| Arc::new(NodeInfo::empty(name)));
        let info = Arc::make_mut(entry);
        info.generation = generation;
        info
    }
}

/// The nodes one scheduling cycle looks at: the cache's candidate nodes as of one generation,
/// readable without the cache's lock (Kubernetes: the scheduler's `Snapshot`).
///
/// Nodes are kept in a `Vec` so that a cycle can start anywhere and go round
/// ([`Snapshot::node`]); their order is stable except where a node was removed (the last one
/// takes its place). Beside them, a second `Vec` holds each node's [`NodeFacts`] by value, so
/// that filters scanning hundreds of nodes read adjacent memory. Filled and refreshed by
/// [`Cache::update_snapshot`].
#[derive(Debug, Default)]
pub struct Snapshot {
    nodes: Vec<Arc<NodeInfo>>,
    /// `facts[i]` is `nodes[i].facts`.
    facts: Vec<NodeFacts>,
    index: HashMap<String, usize>,
    /// The cache generation this snapshot reflects.
    generation: u64,
}

impl Snapshot {
    /// The candidate nodes.
    pub fn nodes(&self) -> &[Arc<NodeInfo>] {
        &self.nodes
    }

    /// How many candidate nodes there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there is no candidate node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The `i`th node, its facts read from the contiguous array.
    pub fn node(&self, i: usize) -> NodeRef<'_> {
        NodeRef { facts: &self.facts[i], info: &self.nodes[i] }
    }

    /// One node's entry, if it is a candidate.
    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// The cache generation this snapshot reflects.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn put(&mut self, info: Arc<NodeInfo>) {
        match self.index.get(&info.name) {
            Some(&i) => {
                self.facts[i] = info.facts;
                self.nodes[i] = info;
            }
            None => {
                self.index.insert(info.name.clone(), self.nodes.len());
                self.facts.push(info.facts);
                self.nodes.push(info);
            }
        }
    }

    fn remove(&mut self, name: &str) {
        if let Some(i) = self.index.remove(name) {
            self.nodes.swap_remove(i);
            self.facts.swap_remove(i);
            if let Some(moved) = self.nodes.get(i) {
                self.index.insert(moved.name.clone(), i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of the pod `default/<name>`.
    fn key(name: &str) -> ObjectKey {
        ObjectKey::new(Some("default"), name)
    }
    use crate::framework::testing::{node, pod};
    use serde_json::json;

    fn bound(name: &str, node: &str, cpu: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}))
            .unwrap(),
        )
    }

    fn cpu_on(cache: &Cache, name: &str) -> i64 {
        cache.node(name).map_or(0, |info| info.facts.requested.milli_cpu)
    }

    #[test]
    fn assumed_pods_count_until_confirmed_and_are_counted_once_after() {
        let mut cache = Cache::default();
        cache.set_node(Arc::new(node(json!({"metadata": {"name": "n1"}}))));
        let p = pod(json!({"metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}}));
        cache.assume(p, "n1");
        assert!(cache.is_assumed(&key("a")));
        assert_eq!(cpu_on(&cache, "n1"), 500);
        // The watch still shows it unbound (our bind is in flight): the assumption stays.
        let mut unbound = (*bound("a", "n1", "500m")).clone();
        unbound.spec.as_mut().unwrap().node_name = None;
        cache.update_pod(Arc::new(unbound));
        assert_eq!(cpu_on(&cache, "n1"), 500);
        // The watch shows it bound: confirmed, still counted once.
        cache.update_pod(bound("a", "n1", "500m"));
        assert!(!cache.is_assumed(&key("a")));
        assert_eq!(cpu_on(&cache, "n1"), 500);
        cache.forget(&key("a"));
        assert_eq!(cpu_on(&cache, "n1"), 500, "forget leaves a confirmed pod alone");
    }

    #[test]
    fn a_failed_bind_frees_the_node_again() {
        let mut cache = Cache::default();
        cache.set_node(Arc::new(node(json!({"metadata": {"name": "n1"}}))));
        cache.assume(pod(json!({"metadata": {"name": "a"}})), "n1");
        assert_eq!(cache.node("n1").unwrap().facts.requested.pods, 1);
        cache.forget(&key("a"));
        assert_eq!(cache.node("n1").unwrap().facts.requested.pods, 0);
        assert_eq!(cache.assumed_count(), 0);
    }

    #[test]
    fn finished_and_deleted_pods_use_nothing() {
        let mut cache = Cache::default();
        cache.set_node(Arc::new(node(json!({"metadata": {"name": "n1"}}))));
        cache.update_pod(bound("a", "n1", "1"));
        cache.update_pod(bound("b", "n1", "1"));
        assert_eq!(cpu_on(&cache, "n1"), 2000);
        let mut done = (*bound("a", "n1", "1")).clone();
        done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
        cache.update_pod(Arc::new(done));
        assert_eq!(cpu_on(&cache, "n1"), 1000);
        cache.remove_pod(&key("b"));
        assert_eq!(cpu_on(&cache, "n1"), 0);
    }

    #[test]
    fn pods_on_an_unknown_node_are_kept_but_the_node_is_no_candidate() {
        let mut cache = Cache::default();
        cache.update_pod(bound("a", "ghost", "1"));
        assert_eq!(cache.candidate_nodes().count(), 0);
        cache.set_node(Arc::new(node(json!({"metadata": {"name": "ghost"}}))));
        assert_eq!(cache.candidate_nodes().count(), 1);
        assert_eq!(cpu_on(&cache, "ghost"), 1000, "the pod seen before its node still counts");
        cache.remove_node("ghost");
        assert_eq!(cache.candidate_nodes().count(), 0);
        cache.remove_pod(&key("a"));
        assert!(cache.node("ghost").is_none());
    }

    #[test]
    fn an_unchanged_node_is_not_copied_again_and_a_changed_one_is_seen() {
        let mut cache = Cache::default();
        for name in ["n1", "n2", "n3"] {
            cache.set_node(Arc::new(node(json!({"metadata": {"name": name}}))));
        }
        let mut snapshot = Snapshot::default();
        assert_eq!(cache.update_snapshot(&mut snapshot), 3);
        assert_eq!(snapshot.nodes().len(), 3);
        let before_n1 = Arc::clone(snapshot.get("n1").unwrap());
        let before_n2 = Arc::clone(snapshot.get("n2").unwrap());
        assert!(Arc::ptr_eq(&before_n2, cache.nodes.get("n2").unwrap()), "the snapshot shares the cache's entry");

        cache.assume(pod(json!({"metadata": {"name": "a"}})), "n1");
        assert_eq!(before_n1.facts.requested.pods, 0, "what a snapshot holds never changes under it");
        assert_eq!(cache.update_snapshot(&mut snapshot), 1, "only the changed node is looked at");
        assert_eq!(snapshot.get("n1").unwrap().facts.requested.pods, 1, "the change is visible");
        assert!(!Arc::ptr_eq(&before_n1, snapshot.get("n1").unwrap()));
        assert!(Arc::ptr_eq(&before_n2, snapshot.get("n2").unwrap()), "an unchanged node is not copied");
        assert_eq!(cache.update_snapshot(&mut snapshot), 0, "nothing changed since");

        cache.remove_node("n3");
        cache.update_snapshot(&mut snapshot);
        assert!(snapshot.get("n3").is_none());
        assert_eq!(snapshot.nodes().len(), 2);
        assert!(snapshot.get("n1").is_some() && snapshot.get("n2").is_some(), "the index follows a removal");
        assert_eq!(snapshot.generation(), cache.generation);
        for i in 0..snapshot.len() {
            let node = snapshot.node(i);
            assert_eq!(node.facts, &node.info.facts, "the contiguous facts follow changes and removals");
        }
        assert_eq!(snapshot.node(snapshot.index["n1"]).facts.requested.pods, 1);
    }

    #[test]
    fn a_nodes_facts_are_read_from_it_and_its_pods() {
        let mut cache = Cache::default();
        cache.set_node(Arc::new(node(json!({"metadata": {"name": "n1"},
            "spec": {"unschedulable": true, "taints": [{"key": "k", "effect": "PreferNoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]}}))));
        cache.update_pod(bound("a", "n1", "250m"));
        let facts = cache.node("n1").unwrap().facts;
        assert!(facts.cordoned && !facts.ready);
        assert!(!facts.tainted, "PreferNoSchedule does not keep pods off");
        assert_eq!((facts.allocatable.milli_cpu, facts.requested.milli_cpu, facts.requested.pods), (4000, 250, 1));
        for effect in ["NoSchedule", "NoExecute"] {
            cache.set_node(Arc::new(node(json!({"metadata": {"name": "n1"},
                "spec": {"taints": [{"key": "k", "effect": effect}]}}))));
            let facts = cache.node("n1").unwrap().facts;
            assert!(facts.tainted && facts.ready && !facts.cordoned, "{effect}");
        }
        cache.remove_node("n1");
        let facts = cache.node("n1").unwrap().facts;
        assert_eq!(facts.allocatable, Resources::default(), "a deleted node offers nothing");
        assert_eq!(facts.requested.milli_cpu, 250, "its pods still count until they go");
    }

    #[test]
    fn a_snapshot_only_holds_candidate_nodes() {
        let mut cache = Cache::default();
        cache.update_pod(bound("a", "ghost", "1"));
        let mut snapshot = Snapshot::default();
        cache.update_snapshot(&mut snapshot);
        assert!(snapshot.nodes().is_empty(), "a node known only from its pods is no candidate");
        cache.set_node(Arc::new(node(json!({"metadata": {"name": "ghost"}}))));
        cache.update_snapshot(&mut snapshot);
        assert_eq!(snapshot.get("ghost").unwrap().facts.requested.milli_cpu, 1000);
        cache.remove_node("ghost");
        cache.update_snapshot(&mut snapshot);
        assert!(snapshot.nodes().is_empty());
    }
}
