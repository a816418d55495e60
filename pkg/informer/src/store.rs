//! Store: the informer's in-memory, indexed copy of one resource, shared between threads.
//!
//! client-go splits this into `Store` and `Indexer` ("extends Store with multiple indices");
//! here one type does both, and the single-writer rule is in the types, as in kube-rs: the
//! reflector owns the only [`Writer`] (not `Clone`), and everybody else reads through a
//! [`Store`] (cheap to clone, made only from a writer).
//!
//! Three kinds of names appear here, as in client-go's index.go (where all three are strings):
//! - a *key* names one object: an [`ObjectKey`], its namespace (none for cluster-scoped
//!   objects) and its name;
//! - an *index name* names one index function, e.g. [`NAMESPACE_INDEX`];
//! - an *indexed value* is one of the strings an index function returned for an object, e.g.
//!   the namespace `"default"`. Index lookups take an index name and a value and return
//!   objects.
//!
//! What it keeps true (tests below):
//! - objects are handed out as `Arc<K>`: nobody can modify the cache by accident;
//! - every index agrees with the objects at all times (updated under the same lock);
//! - a reader never sees half a relist: [`Writer::replace`] builds the new contents aside and
//!   swaps them in at once;
//! - an index added late covers the objects already stored.
//!
//! Not promised: freshness. The store shows what the reflector has seen so far, which may be
//! behind the server (see [`Store::get`]). Index functions must be deterministic and must not
//! panic.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use k8s_openapi::api::core::v1::Pod;
use kube_core::Resource;

use crate::error::{Error, Result};
use crate::key::ObjectKey;

/// Index of objects by `metadata.namespace` (cluster-scoped objects are not in it).
pub const NAMESPACE_INDEX: &str = "namespace";
/// Index of pods by `spec.nodeName`; a pod not yet scheduled is indexed under `""`.
pub const NODE_NAME_INDEX: &str = "spec.nodeName";
/// Index of objects by the uid of each of their `metadata.ownerReferences`.
pub const OWNER_UID_INDEX: &str = "ownerUid";

/// An index function: the indexed values of one object (none, one or several).
/// client-go calls this `IndexFunc`.
pub type IndexFn<K> = Arc<dyn Fn(&K) -> Vec<String> + Send + Sync>;

/// [`NAMESPACE_INDEX`]'s function: the object's namespace, if it has one.
pub fn namespace_index<K: Resource>(object: &K) -> Vec<String> {
    object.meta().namespace.iter().filter(|namespace| !namespace.is_empty()).cloned().collect()
}

/// [`OWNER_UID_INDEX`]'s function: the uid of every owner reference.
pub fn owner_uid_index<K: Resource>(object: &K) -> Vec<String> {
    object.meta().owner_references.iter().flatten().map(|owner| owner.uid.clone()).collect()
}

/// [`NODE_NAME_INDEX`]'s function: a pod's `spec.nodeName` (`""` when unscheduled); nothing
/// for any other type.
pub fn node_name_index<K: 'static>(object: &K) -> Vec<String> {
    let Some(pod) = (object as &dyn Any).downcast_ref::<Pod>() else {
        return Vec::new();
    };
    vec![pod.spec.as_ref().and_then(|spec| spec.node_name.clone()).unwrap_or_default()]
}

/// What a relist changed, object by object. Produced by [`Writer::replace`].
#[derive(Debug)]
pub enum Change<K> {
    /// In the new list, not in the store before.
    Added(Arc<K>),
    /// In both, with a different resourceVersion.
    Updated {
        /// What the store held.
        old: Arc<K>,
        /// What the list says now.
        new: Arc<K>,
    },
    /// In the store, missing from the new list: deleted at some point while we were not
    /// watching. Carries the last state we knew; the final state is unknown.
    Vanished(Arc<K>),
}

/// Objects plus their indices.
///
/// Invariant: `key ∈ indices[index][value]` if and only if `items[key]` exists and `value` is
/// one of `indexers[index](items[key])`.
struct Indexed<K> {
    items: BTreeMap<ObjectKey, Arc<K>>,
    indexers: BTreeMap<String, IndexFn<K>>,
    /// Index name → indexed value → keys of the objects with that value.
    indices: HashMap<String, HashMap<String, BTreeSet<ObjectKey>>>,
}

impl<K> Indexed<K> {
    fn with_indexers(indexers: BTreeMap<String, IndexFn<K>>) -> Self {
        let indices = indexers.keys().map(|name| (name.clone(), HashMap::new())).collect();
        Indexed { items: BTreeMap::new(), indexers, indices }
    }

    fn index(&mut self, key: &ObjectKey, object: &K) {
        for (name, index_fn) in &self.indexers {
            let index = self.indices.entry(name.clone()).or_default();
            for value in index_fn(object) {
                index.entry(value).or_default().insert(key.clone());
            }
        }
    }

    fn unindex(&mut self, key: &ObjectKey, object: &K) {
        for (name, index_fn) in &self.indexers {
            let Some(index) = self.indices.get_mut(name) else { continue };
            for value in index_fn(object) {
                if let Some(keys) = index.get_mut(&value) {
                    keys.remove(key);
                    if keys.is_empty() {
                        index.remove(&value);
                    }
                }
            }
        }
    }

    fn insert(&mut self, key: ObjectKey, object: Arc<K>) -> Option<Arc<K>> {
        let old = self.items.remove(&key);
        if let Some(old) = &old {
            self.unindex(&key, old);
        }
        self.index(&key, &object);
        self.items.insert(key, object);
        old
    }

    fn remove(&mut self, key: &ObjectKey) -> Option<Arc<K>> {
        let old = self.items.remove(key)?;
        self.unindex(key, &old);
        Some(old)
    }
}

/// Read access to the cache. Cheap to clone; made by [`Writer::store`].
///
/// Every read takes a short read lock; no reader ever waits for a relist to be half done.
pub struct Store<K> {
    shared: Arc<RwLock<Indexed<K>>>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store { shared: Arc::clone(&self.shared) }
    }
}

impl<K> std::fmt::Debug for Store<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("len", &self.len()).finish()
    }
}

impl<K> Store<K> {
    fn read(&self) -> RwLockReadGuard<'_, Indexed<K>> {
        // A panicking index function is the only way to poison this lock; the data it guards
        // is still a valid map, so keep serving it.
        self.shared.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The object stored under `key` (see [`ObjectKey::of`]).
    ///
    /// The cache may be stale: it holds what the reflector has seen, which can lag the server
    /// by a few events or, while disconnected, by much more. A controller that acts on a
    /// missing or old object must be ready for its write to fail with a conflict (409) and then
    /// read again; it must never treat "not in the cache" as proof that the object is gone.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.read().items.get(key).cloned()
    }

    /// Every object, in key order (by namespace, then name). May be stale, like [`Store::get`].
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().items.values().cloned().collect()
    }

    /// Every key, in order (by namespace, then name). May be stale, like [`Store::get`].
    pub fn keys(&self) -> Vec<ObjectKey> {
        self.read().items.keys().cloned().collect()
    }

    /// How many objects the store holds.
    pub fn len(&self) -> usize {
        self.read().items.len()
    }

    /// Whether the store holds no object.
    pub fn is_empty(&self) -> bool {
        self.read().items.is_empty()
    }

    /// The objects whose index function `index` returned `value`, in key order.
    /// client-go calls this `ByIndex`. May be stale, like [`Store::get`].
    ///
    /// # Errors
    /// [`Error::UnknownIndex`] when no index named `index` was registered.
    pub fn by_index(&self, index: &str, value: &str) -> Result<Vec<Arc<K>>> {
        let state = self.read();
        let keys = state.indices.get(index).ok_or_else(|| Error::UnknownIndex(index.to_string()))?;
        Ok(keys.get(value).into_iter().flatten().filter_map(|key| state.items.get(key).cloned()).collect())
    }

    /// Every value the index `index` currently holds, sorted.
    /// client-go calls this `ListIndexFuncValues`.
    ///
    /// # Errors
    /// [`Error::UnknownIndex`] when no index named `index` was registered.
    pub fn index_values(&self, index: &str) -> Result<Vec<String>> {
        let state = self.read();
        let values = state.indices.get(index).ok_or_else(|| Error::UnknownIndex(index.to_string()))?;
        let mut values: Vec<String> = values.keys().cloned().collect();
        values.sort();
        Ok(values)
    }
}

/// The only write access to a store. Not `Clone`: it is not safe for two reflectors to write
/// one store, since each would undo the other's relists.
pub struct Writer<K> {
    shared: Arc<RwLock<Indexed<K>>>,
}

impl<K> std::fmt::Debug for Writer<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl<K: Resource + 'static> Default for Writer<K> {
    /// A writer of an empty store with the standard indices: [`NAMESPACE_INDEX`],
    /// [`OWNER_UID_INDEX`], and for pods [`NODE_NAME_INDEX`].
    fn default() -> Self {
        let mut indexers: BTreeMap<String, IndexFn<K>> = BTreeMap::new();
        indexers.insert(NAMESPACE_INDEX.to_string(), Arc::new(namespace_index::<K>));
        indexers.insert(OWNER_UID_INDEX.to_string(), Arc::new(owner_uid_index::<K>));
        if std::any::TypeId::of::<K>() == std::any::TypeId::of::<Pod>() {
            indexers.insert(NODE_NAME_INDEX.to_string(), Arc::new(node_name_index::<K>));
        }
        Writer { shared: Arc::new(RwLock::new(Indexed::with_indexers(indexers))) }
    }
}

impl<K: Resource> Writer<K> {
    fn write(&self) -> RwLockWriteGuard<'_, Indexed<K>> {
        self.shared.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// A reader of this writer's store.
    pub fn store(&self) -> Store<K> {
        Store { shared: Arc::clone(&self.shared) }
    }

    /// Registers (or replaces) the index `name`, and indexes every object already stored.
    /// client-go calls this `AddIndexers`.
    pub fn add_indexer(&mut self, name: &str, index_fn: IndexFn<K>) {
        let mut state = self.write();
        let objects: Vec<(ObjectKey, Arc<K>)> = state.items.iter().map(|(k, v)| (k.clone(), Arc::clone(v))).collect();
        let mut index: HashMap<String, BTreeSet<ObjectKey>> = HashMap::new();
        for (key, object) in &objects {
            for value in index_fn(object) {
                index.entry(value).or_default().insert(key.clone());
            }
        }
        state.indexers.insert(name.to_string(), index_fn);
        state.indices.insert(name.to_string(), index);
    }

    /// Stores `object` (added or modified) and returns what it replaced.
    pub fn apply(&mut self, object: Arc<K>) -> Option<Arc<K>> {
        let key = ObjectKey::of(object.as_ref());
        self.write().insert(key, object)
    }

    /// Removes the object under `key` and returns it.
    pub fn delete(&mut self, key: &ObjectKey) -> Option<Arc<K>> {
        self.write().remove(key)
    }

    /// Replaces the whole contents with `objects` (a fresh list) and returns what changed:
    /// objects that are new, objects whose resourceVersion changed, and objects that vanished.
    /// An object listed again with the same resourceVersion is not a change, and the store
    /// keeps handing out the same `Arc` for it.
    ///
    /// The new contents are built aside and swapped in under one write lock, so readers see
    /// either all of the old contents or all of the new.
    pub fn replace(&mut self, objects: Vec<K>) -> Vec<Change<K>> {
        let indexers = self.write().indexers.clone();
        let mut next = Indexed::with_indexers(indexers);
        let mut changes = Vec::new();
        {
            // Only this writer changes the store, so the old contents stay put while we read.
            let current = self.store();
            let current = current.read();
            for object in objects {
                let key = ObjectKey::of(&object);
                let object = match current.items.get(&key) {
                    Some(old) if old.meta().resource_version == object.meta().resource_version => Arc::clone(old),
                    Some(old) => {
                        let new = Arc::new(object);
                        changes.push(Change::Updated { old: Arc::clone(old), new: Arc::clone(&new) });
                        new
                    }
                    None => {
                        let new = Arc::new(object);
                        changes.push(Change::Added(Arc::clone(&new)));
                        new
                    }
                };
                next.insert(key, object);
            }
            for (key, old) in &current.items {
                if !next.items.contains_key(key) {
                    changes.push(Change::Vanished(Arc::clone(old)));
                }
            }
        }
        *self.write() = next;
        changes
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ConfigMap, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;

    fn config_map(namespace: &str, name: &str, rv: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    fn owned(mut object: ConfigMap, owner_uid: &str) -> ConfigMap {
        object.metadata.owner_references =
            Some(vec![OwnerReference { uid: owner_uid.into(), name: "owner".into(), ..OwnerReference::default() }]);
        object
    }

    fn pod(name: &str, node: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec { node_name: node.map(String::from), ..PodSpec::default() }),
            ..Pod::default()
        }
    }

    /// The keys of `objects`, as text.
    fn names<K: Resource>(objects: &[Arc<K>]) -> Vec<String> {
        objects.iter().map(|object| ObjectKey::of(object.as_ref()).to_string()).collect()
    }

    /// The store's keys, as text.
    fn keys<K>(store: &Store<K>) -> Vec<String> {
        store.keys().iter().map(ToString::to_string).collect()
    }

    fn key(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey::new(Some(namespace), name)
    }

    #[test]
    fn objects_are_stored_under_their_namespace_and_name_or_just_their_name_when_cluster_scoped() {
        let mut writer = Writer::default();
        writer.apply(Arc::new(config_map("ns", "a", "1")));
        assert!(writer.store().get(&key("ns", "a")).is_some());
        let mut nodes = Writer::default();
        nodes.apply(Arc::new(k8s_openapi::api::core::v1::Node {
            metadata: ObjectMeta { name: Some("n1".into()), ..ObjectMeta::default() },
            ..Default::default()
        }));
        assert_eq!(nodes.store().keys(), [ObjectKey::new(None, "n1")]);
    }

    #[test]
    fn store_hands_out_what_the_writer_applied_and_forgets_deletes() {
        let mut writer = Writer::default();
        let store = writer.store();
        assert!(writer.apply(Arc::new(config_map("ns", "a", "1"))).is_none());
        let old = writer.apply(Arc::new(config_map("ns", "a", "2"))).expect("replaced the first version");
        assert_eq!(old.metadata.resource_version.as_deref(), Some("1"));
        assert_eq!(store.get(&key("ns", "a")).expect("stored").metadata.resource_version.as_deref(), Some("2"));
        writer.apply(Arc::new(config_map("ns", "b", "3")));
        assert_eq!(keys(&store), ["ns/a", "ns/b"]);
        assert_eq!(writer.delete(&key("ns", "a")).map(|o| ObjectKey::of(o.as_ref())), Some(key("ns", "a")));
        assert!(store.get(&key("ns", "a")).is_none());
        assert_eq!(names(&store.list()), ["ns/b"]);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn namespace_and_owner_indices_follow_updates_and_deletes() {
        let mut writer = Writer::default();
        let store = writer.store();
        writer.apply(Arc::new(owned(config_map("one", "a", "1"), "uid-1")));
        writer.apply(Arc::new(owned(config_map("one", "b", "2"), "uid-2")));
        writer.apply(Arc::new(config_map("two", "c", "3")));
        let by_ns = |ns: &str| names(&store.by_index(NAMESPACE_INDEX, ns).expect("namespace index exists"));
        let by_owner = |uid: &str| names(&store.by_index(OWNER_UID_INDEX, uid).expect("owner index exists"));
        assert_eq!(by_ns("one"), ["one/a", "one/b"]);
        assert_eq!(by_ns("two"), ["two/c"]);
        assert_eq!(by_owner("uid-1"), ["one/a"]);
        // b changes owner: the old value no longer finds it.
        writer.apply(Arc::new(owned(config_map("one", "b", "4"), "uid-1")));
        assert_eq!(by_owner("uid-1"), ["one/a", "one/b"]);
        assert!(by_owner("uid-2").is_empty());
        assert_eq!(store.index_values(OWNER_UID_INDEX).expect("owner index exists"), ["uid-1"]);
        writer.delete(&key("one", "a"));
        assert_eq!(by_ns("one"), ["one/b"]);
        assert_eq!(by_owner("uid-1"), ["one/b"]);
    }

    #[test]
    fn pods_are_indexed_by_node_name_and_unscheduled_ones_under_the_empty_string() {
        let mut writer = Writer::<Pod>::default();
        let store = writer.store();
        writer.apply(Arc::new(pod("a", Some("node-1"))));
        writer.apply(Arc::new(pod("b", None)));
        writer.apply(Arc::new(pod("c", Some("node-1"))));
        let on = |node: &str| names(&store.by_index(NODE_NAME_INDEX, node).expect("pods have a node index"));
        assert_eq!(on("node-1"), ["default/a", "default/c"]);
        assert_eq!(on(""), ["default/b"]);
        writer.apply(Arc::new(pod("b", Some("node-2"))));
        assert!(on("").is_empty());
        assert_eq!(on("node-2"), ["default/b"]);
    }

    #[test]
    fn other_types_have_no_node_name_index() {
        let store = Writer::<ConfigMap>::default().store();
        assert!(matches!(store.by_index(NODE_NAME_INDEX, "x"), Err(Error::UnknownIndex(_))));
    }

    #[test]
    fn a_custom_index_added_late_covers_objects_already_stored() {
        let mut writer = Writer::default();
        let store = writer.store();
        writer.apply(Arc::new(config_map("ns", "a", "1")));
        writer.apply(Arc::new(config_map("ns", "bb", "2")));
        writer.add_indexer(
            "name-length",
            Arc::new(|cm: &ConfigMap| vec![cm.metadata.name.as_deref().unwrap_or_default().len().to_string()]),
        );
        assert_eq!(names(&store.by_index("name-length", "2").expect("index exists")), ["ns/bb"]);
        writer.apply(Arc::new(config_map("ns", "cc", "3")));
        assert_eq!(names(&store.by_index("name-length", "2").expect("index exists")), ["ns/bb", "ns/cc"]);
        assert!(store.by_index("name-length", "7").expect("index exists").is_empty());
    }

    #[test]
    fn replace_reports_new_changed_and_vanished_objects_but_not_unchanged_ones() {
        let mut writer = Writer::default();
        let store = writer.store();
        writer.apply(Arc::new(config_map("ns", "same", "1")));
        writer.apply(Arc::new(config_map("ns", "changed", "2")));
        writer.apply(Arc::new(config_map("ns", "gone", "3")));
        let kept = store.get(&key("ns", "same")).expect("stored");
        let changes = writer.replace(vec![
            config_map("ns", "same", "1"),
            config_map("ns", "changed", "5"),
            config_map("ns", "new", "6"),
        ]);
        let mut summary: Vec<String> = changes
            .iter()
            .map(|change| match change {
                Change::Added(new) => format!("added {}", ObjectKey::of(new.as_ref())),
                Change::Updated { old, new } => format!(
                    "updated {} {}->{}",
                    ObjectKey::of(new.as_ref()),
                    old.metadata.resource_version.as_deref().unwrap_or_default(),
                    new.metadata.resource_version.as_deref().unwrap_or_default()
                ),
                Change::Vanished(old) => format!("vanished {}", ObjectKey::of(old.as_ref())),
            })
            .collect();
        summary.sort();
        assert_eq!(summary, ["added ns/new", "updated ns/changed 2->5", "vanished ns/gone"]);
        assert_eq!(keys(&store), ["ns/changed", "ns/new", "ns/same"]);
        assert!(Arc::ptr_eq(&kept, &store.get(&key("ns", "same")).expect("still stored")));
        assert_eq!(names(&store.by_index(NAMESPACE_INDEX, "ns").expect("index exists")).len(), 3);
    }

    #[test]
    fn readers_never_see_half_a_replace() {
        let mut writer = Writer::default();
        let store = writer.store();
        let generation = |label: &str| -> Vec<ConfigMap> {
            (0..500).map(|i| config_map("ns", &format!("{label}-{i}"), label)).collect()
        };
        writer.replace(generation("a"));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                    let objects = store.list();
                    assert_eq!(objects.len(), 500, "a reader saw a half-done replace");
                    let first = objects[0].metadata.resource_version.clone();
                    assert!(objects.iter().all(|o| o.metadata.resource_version == first), "mixed generations");
                    reads += 1;
                }
                reads
            })
        };
        for round in 0..50 {
            writer.replace(generation(if round % 2 == 0 { "b" } else { "a" }));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().expect("the reader thread did not panic") > 0);
    }
}
