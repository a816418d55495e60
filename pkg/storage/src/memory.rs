//! [`Store`] in memory: the same semantics as [`EtcdStore`](crate::EtcdStore) on a real etcd,
//! without etcd.
//!
//! It exists so that code built on [`Store`] (the apiserver's handlers, later a watch cache)
//! can be tested in-process, fast and deterministically, against a store that behaves like the
//! one in production rather than a fake that agrees with whatever the code under test assumes.
//! The shared `conformance` suite (feature `conformance`) runs every case against both this
//! store and real etcd; where they differ, etcd is right and this store is wrong.
//!
//! What it keeps true, as etcd does (each promise is a case of that suite):
//! - one revision counter for the whole store, starting at 1 like a fresh etcd; every write
//!   (create, update, delete) adds exactly one, and a failed write adds nothing;
//! - `mod_revision` is the revision of a key's last write, `create_revision` the revision that
//!   created it (again, after a delete);
//! - every version since the last compaction is kept (MVCC), so lists at an exact revision and
//!   watches from a past revision see the history exactly as it was;
//! - compacting at `c` keeps, per key, the newest version at or below `c` (unless it is a
//!   deletion) and everything after; reads below `c` and watches that would need a revision
//!   below `c` fail with [`Error::Expired`], reported with the same fields as `EtcdStore`.
//!
//! Memory: the history holds every version written since the last compaction, exactly what
//! exact-revision reads need. A watch buffers at most [`MemoryStore::WATCH_BATCH`] events of
//! its own. Like an etcd watcher, a watch that is caught up is handed each change as it is
//! written; one whose buffer is full (its reader stopped reading) or that started in the past
//! reads the shared history at its own pace instead. If a compaction discards revisions such
//! a watch has not read yet, it delivers what it had buffered, then fails with
//! [`Error::Expired`] and ends, as an etcd watcher does once compaction overtakes it (tests
//! `a_reader_that_stops_reading_holds_one_batch_then_gets_expired_once_compaction_overtakes_it`
//! and `a_reader_that_stops_reading_catches_up_from_history_when_nothing_was_compacted`).
//! etcd's buffers are sized differently, so there a slow reader may get the error after a
//! different number of events.
//!
//! Not promised: persistence (everything is gone when the last clone is dropped), sharing
//! across processes, or etcd's cluster behaviour (leases, leader changes, timeouts). Clones
//! share one store; a watch keeps the store alive until the stream is dropped.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{Continue, Error, KeyValue, ListOptions, ListPage, PrefixSummary, Result, Store, WatchEvent, WatchStream};

/// The most history entries a watch scans while holding the store's lock; a watch far
/// behind on a busy store releases the lock between scans so that writers are not starved.
const SCAN_LIMIT: usize = 4096;

/// The largest request etcd accepts by default (`--max-request-bytes`, 1.5 MiB); a write
/// whose key and value pass it is refused with [`Error::TooLarge`], as etcd refuses it.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// An in-memory [`Store`] with etcd's revisions, compare-and-swap, MVCC history, paged lists,
/// watches and compaction. Cheap to clone: clones share one store.
///
/// ```no_run
/// # async fn demo() -> rkube_storage::Result<()> {
/// use rkube_storage::{MemoryStore, Store};
/// let store = MemoryStore::new();
/// let revision = store.create("/registry/pods/default/web", b"{}".to_vec()).await?;
/// assert_eq!(store.get("/registry/pods/default/web").await?.mod_revision, revision);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    db: Arc<Database>,
}

/// Shorthand for [`MemoryStore::WATCH_BATCH`].
const WATCH_BATCH: usize = MemoryStore::WATCH_BATCH;

/// The one database behind every clone and every watch of a store.
struct Database {
    /// Held only for short, synchronous sections (never across an `.await`), so a std mutex.
    state: Mutex<State>,
    /// The current revision, published after every write so that waiting watches wake up.
    /// A `watch` channel holds only the latest value, so a slow watch costs nothing here.
    revision: watch::Sender<i64>,
}

impl Database {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic while holding it; no section below can panic halfway
        // through a change (they only push, drain and compare), so the state is still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One version of a key: its value at `revision`, or its deletion.
#[derive(Debug, Clone)]
struct Version {
    revision: i64,
    create_revision: i64,
    /// `None` when this version is the key's deletion (etcd's tombstone).
    value: Option<Vec<u8>>,
}

/// Where one watch is in the history. Invariant: every change under `prefix` from the watch's
/// start revision up to (not including) `next` is in `pending` or has been delivered, in
/// order; no change at or after `next` is.
struct Cursor {
    prefix: String,
    /// The first revision this watch has not looked at yet.
    next: i64,
    /// Events found but not delivered yet; at most [`WATCH_BATCH`].
    pending: VecDeque<WatchEvent>,
}

/// The store's data. Invariants:
/// - every version and every `log` entry has a revision in `compacted..=revision`, except the
///   one version per key kept at or below `compacted`;
/// - each key's versions ascend by revision and are never empty (a key without versions is
///   removed);
/// - `log` ascends by revision and has one entry per write after `compacted` (plus the write
///   at `compacted`), so a watch can find every change from any revision it may still ask for;
/// - a watch whose cursor is at `revision + 1` is caught up: each write hands it the change
///   (if under its prefix and its buffer has room) and moves its cursor on.
struct State {
    revision: i64,
    /// The revision of the last compaction; 0 before the first.
    compacted: i64,
    keys: BTreeMap<String, Vec<Version>>,
    log: VecDeque<(i64, String)>,
    watches: HashMap<u64, Cursor>,
    next_watch: u64,
}

impl State {
    /// The version of `key` visible at `at`, if the key existed then.
    fn visible(&self, key: &str, at: i64) -> Option<&Version> {
        let versions = self.keys.get(key)?;
        let newer = versions.partition_point(|v| v.revision <= at);
        let version = versions.get(newer.checked_sub(1)?)?;
        version.value.is_some().then_some(version)
    }

    /// Records a write of `key` (a deletion when `value` is `None`) at the next revision and
    /// hands it to the caught-up watches.
    fn write(&mut self, key: &str, create_revision: Option<i64>, value: Option<Vec<u8>>) -> i64 {
        self.revision += 1;
        let revision = self.revision;
        let version = Version { revision, create_revision: create_revision.unwrap_or(revision), value };
        self.keys.entry(key.to_string()).or_default().push(version);
        self.log.push_back((revision, key.to_string()));
        if self.watches.is_empty() {
            return revision;
        }
        let event = Self::event_in(&self.keys, self.compacted, key, revision);
        for cursor in self.watches.values_mut().filter(|c| c.next == revision) {
            if !key.starts_with(&cursor.prefix) {
                cursor.next = revision + 1;
            } else if cursor.pending.len() < WATCH_BATCH {
                cursor.pending.extend(event.clone());
                cursor.next = revision + 1;
            }
            // Else the buffer is full: the cursor stays behind and reads the history later.
        }
        revision
    }

    /// Etcd's range revision rules: `None` or a revision ≤ 0 reads the latest state, a future
    /// revision is [`Error::FutureRevision`], and one below the last compaction is [`Error::Expired`] (with
    /// `compacted: 0`, because etcd's range error does not say where it compacted).
    fn read_revision(&self, requested: Option<i64>) -> Result<i64> {
        match requested {
            Some(rev) if rev > self.revision => Err(Error::FutureRevision { requested: rev, current: self.revision }),
            Some(rev) if rev > 0 && rev < self.compacted => Err(Error::Expired { requested: rev, compacted: 0 }),
            Some(rev) if rev > 0 => Ok(rev),
            _ => Ok(self.revision),
        }
    }

    /// The watch event for the write of `key` at `revision`, if it is still in the history.
    fn event_in(keys: &BTreeMap<String, Vec<Version>>, compacted: i64, key: &str, revision: i64) -> Option<WatchEvent> {
        let versions = keys.get(key)?;
        let found = versions.binary_search_by_key(&revision, |v| v.revision).ok()?;
        let version = versions.get(found)?;
        // Like etcd, the previous value is read at `revision - 1`: absent on a create, and
        // absent when that revision has been compacted away (`revision - 1 < compacted`).
        let prev = match found.checked_sub(1).and_then(|i| versions.get(i)) {
            Some(prev) if version.create_revision != revision && revision > compacted => {
                prev.value.as_ref().map(|_| to_kv(key, prev))
            }
            _ => None,
        };
        Some(match &version.value {
            Some(_) => WatchEvent::Put { kv: to_kv(key, version), prev },
            None => WatchEvent::Delete { key: key.to_string(), revision, prev },
        })
    }

    /// Moves the next changes under the watch's prefix from the history into its buffer, up
    /// to [`WATCH_BATCH`] events or [`SCAN_LIMIT`] entries.
    fn catch_up(&mut self, id: u64) {
        let Some(cursor) = self.watches.get_mut(&id) else { return };
        let first = self.log.partition_point(|(rev, _)| *rev < cursor.next);
        for (scanned, (rev, key)) in self.log.range(first..).enumerate() {
            if scanned >= SCAN_LIMIT || cursor.pending.len() >= WATCH_BATCH {
                return;
            }
            cursor.next = rev + 1;
            if key.starts_with(&cursor.prefix) {
                cursor.pending.extend(Self::event_in(&self.keys, self.compacted, key, *rev));
            }
        }
        // The whole history is read: from here on, writes hand this watch their changes.
        cursor.next = cursor.next.max(self.revision + 1);
    }

    /// Discards history older than `revision`, as etcd's compaction does.
    fn compact(&mut self, revision: i64) {
        self.compacted = revision;
        self.keys.retain(|_, versions| {
            let newer = versions.partition_point(|v| v.revision <= revision);
            // Keep the newest version at or below the compaction (it is what reads at
            // `revision` see), unless it is a deletion: then nothing is left to see.
            let keep_from = match newer.checked_sub(1) {
                Some(last) if versions.get(last).is_some_and(|v| v.value.is_some()) => last,
                _ => newer,
            };
            versions.drain(..keep_from);
            !versions.is_empty()
        });
        let first_kept = self.log.partition_point(|(rev, _)| *rev < revision);
        self.log.drain(..first_kept);
    }
}

fn to_kv(key: &str, version: &Version) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: version.value.clone().unwrap_or_default(),
        mod_revision: version.revision,
        create_revision: version.create_revision,
    }
}

impl MemoryStore {
    /// The most events one watch buffers: what a watch whose reader stopped reading holds in
    /// memory, at most. A caught-up watch whose buffer is full stops being handed changes
    /// and reads them from the shared history later.
    pub const WATCH_BATCH: usize = 256;

    /// An empty store at revision 1, like a fresh etcd: the first write gets revision 2.
    pub fn new() -> Self {
        let state = State {
            revision: 1,
            compacted: 0,
            keys: BTreeMap::new(),
            log: VecDeque::new(),
            watches: HashMap::new(),
            next_watch: 0,
        };
        let (revision, _) = watch::channel(state.revision);
        MemoryStore { db: Arc::new(Database { state: Mutex::new(state), revision }) }
    }

    /// Tells waiting watches that `revision` was written.
    fn publish(&self, revision: i64) {
        self.db.revision.send_replace(revision);
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").field("revision", &*self.db.revision.borrow()).finish_non_exhaustive()
    }
}

/// Refuses a write etcd would refuse for its size.
fn check_size(key: &str, value: &[u8]) -> Result<()> {
    if key.len() + value.len() > MAX_REQUEST_BYTES {
        return Err(Error::TooLarge { key: key.to_string(), size: value.len() });
    }
    Ok(())
}

#[async_trait]
impl Store for MemoryStore {
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<i64> {
        check_size(key, &value)?;
        let revision = {
            let mut state = self.db.lock();
            if state.visible(key, state.revision).is_some() {
                return Err(Error::AlreadyExists { key: key.to_string() });
            }
            state.write(key, None, Some(value))
        };
        self.publish(revision);
        Ok(revision)
    }

    async fn get(&self, key: &str) -> Result<KeyValue> {
        let state = self.db.lock();
        match state.visible(key, state.revision) {
            Some(version) => Ok(to_kv(key, version)),
            None => Err(Error::NotFound { key: key.to_string() }),
        }
    }

    async fn update(&self, key: &str, expected: i64, value: Vec<u8>) -> Result<i64> {
        check_size(key, &value)?;
        let revision = {
            let mut state = self.db.lock();
            let current = state.visible(key, state.revision).map(|v| (v.revision, v.create_revision));
            // etcd compares the key's mod_revision, which is 0 for a missing key: so, as with
            // `EtcdStore`, expecting 0 creates a missing key.
            let actual = current.map_or(0, |(mod_revision, _)| mod_revision);
            if actual != expected {
                return Err(match current {
                    Some(_) => Error::Conflict { key: key.to_string(), expected, actual },
                    None => Error::NotFound { key: key.to_string() },
                });
            }
            state.write(key, current.map(|(_, created)| created), Some(value))
        };
        self.publish(revision);
        Ok(revision)
    }

    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<(KeyValue, i64)> {
        let (last, revision) = {
            let mut state = self.db.lock();
            let current = state.visible(key, state.revision).map(|v| to_kv(key, v));
            let actual = current.as_ref().map_or(0, |kv| kv.mod_revision);
            if let Some(expected) = expected
                && actual != expected
            {
                return Err(match current {
                    Some(_) => Error::Conflict { key: key.to_string(), expected, actual },
                    None => Error::NotFound { key: key.to_string() },
                });
            }
            // Deleting nothing writes nothing, as in etcd.
            let Some(last) = current else { return Err(Error::NotFound { key: key.to_string() }) };
            let revision = state.write(key, Some(last.create_revision), None);
            (last, revision)
        };
        self.publish(revision);
        Ok((last, revision))
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListPage> {
        let (start, requested) = match &options.continue_from {
            Some(token) => (format!("{prefix}{}", token.start), Some(token.revision)),
            None => (prefix.to_string(), options.revision),
        };
        let limit = options.limit.filter(|l| *l > 0);
        let mut items = Vec::new();
        let mut count: i64 = 0;
        let at = {
            let state = self.db.lock();
            let at = state.read_revision(requested)?;
            let visible = state
                .keys
                .range::<str, _>((Bound::Included(start.as_str()), Bound::Unbounded))
                .take_while(|(key, _)| key.starts_with(prefix))
                .filter_map(|(key, _)| state.visible(key, at).map(|version| (key, version)));
            for (key, version) in visible {
                count += 1;
                if limit.is_none_or(|limit| count <= limit) {
                    items.push(to_kv(key, version));
                }
            }
            at
        };
        // As `EtcdStore` does, a list at an explicit revision reports that revision, and one at
        // the latest state (no revision, or one ≤ 0) the store's revision.
        let revision = requested.filter(|r| *r > 0).unwrap_or(at);
        let returned = i64::try_from(items.len()).unwrap_or(i64::MAX);
        let next = match (count > returned, items.last()) {
            (true, Some(last)) => Some(Continue {
                revision,
                start: format!("{}\u{0}", last.key.strip_prefix(prefix).unwrap_or(&last.key)),
            }),
            _ => None,
        };
        let remaining = limit.map(|_| count - returned);
        Ok(ListPage { items, revision, next, remaining })
    }

    async fn watch(&self, prefix: &str, after_revision: i64, progress_every: Option<Duration>) -> Result<WatchStream> {
        let changes = self.db.revision.subscribe();
        let id = {
            let mut state = self.db.lock();
            // etcd's start revision 0 (ours -1) means "from now"; every negative one does here.
            let next = if after_revision < 0 { state.revision + 1 } else { after_revision + 1 };
            let id = state.next_watch;
            state.next_watch += 1;
            state.watches.insert(id, Cursor { prefix: prefix.to_string(), next, pending: VecDeque::new() });
            id
        };
        let ticker = progress_every.map(|every| {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker
        });
        let watcher =
            Watcher { db: Arc::clone(&self.db), id, after_revision, changes, ticker, progress_due: false, done: false };
        Ok(Box::pin(futures::stream::unfold(watcher, Watcher::next)))
    }

    async fn written_since(&self, prefix: &str, since: i64) -> Result<PrefixSummary> {
        let state = self.db.lock();
        let mut count = 0;
        let mut written = Vec::new();
        let visible = state
            .keys
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter_map(|(key, _)| state.visible(key, state.revision).map(|version| (key, version)));
        for (key, version) in visible {
            count += 1;
            if version.revision > since {
                written.push(key.clone());
            }
        }
        Ok(PrefixSummary { revision: state.revision, count, written })
    }

    async fn current_revision(&self) -> Result<i64> {
        Ok(self.db.lock().revision)
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        let mut state = self.db.lock();
        if revision <= state.compacted {
            // etcd answers "already compacted", which `EtcdStore` treats as done.
            return Ok(());
        }
        if revision > state.revision {
            return Err(Error::FutureRevision { requested: revision, current: state.revision });
        }
        state.compact(revision);
        Ok(())
    }
}

/// One watch stream: delivers its cursor's buffer, refills it from the history when behind,
/// and waits for writes (or progress ticks) when caught up. Unregisters its cursor on drop.
struct Watcher {
    db: Arc<Database>,
    id: u64,
    /// What the caller asked for; reported in [`Error::Expired`], as `EtcdStore` does.
    after_revision: i64,
    changes: watch::Receiver<i64>,
    ticker: Option<tokio::time::Interval>,
    /// A tick passed: report progress as soon as the watch is caught up.
    progress_due: bool,
    done: bool,
}

/// What one look at the store found for a watch.
enum Step {
    Deliver(Result<WatchEvent>),
    /// More history to read, after letting writers in.
    Behind,
    /// Nothing to deliver until the next write or tick.
    Wait,
}

impl Watcher {
    async fn next(mut self) -> Option<(Result<WatchEvent>, Self)> {
        loop {
            if self.done {
                return None;
            }
            // Marks the published revision as seen before reading the state, so a write
            // after this point wakes the wait below.
            self.changes.borrow_and_update();
            match self.step() {
                Step::Deliver(event) => {
                    self.done = event.is_err();
                    return Some((event, self));
                }
                Step::Behind => tokio::task::yield_now().await,
                Step::Wait => match &mut self.ticker {
                    Some(ticker) => tokio::select! {
                        changed = self.changes.changed() => {
                            // Unreachable: this watch holds the store, which holds the sender.
                            self.done = changed.is_err();
                        }
                        _ = ticker.tick() => self.progress_due = true,
                    },
                    None => self.done = self.changes.changed().await.is_err(),
                },
            }
        }
    }

    fn step(&mut self) -> Step {
        let mut state = self.db.lock();
        let (revision, compacted) = (state.revision, state.compacted);
        let Some(cursor) = state.watches.get_mut(&self.id) else {
            return Step::Deliver(Err(Error::Internal("watch cursor vanished".into())));
        };
        if let Some(event) = cursor.pending.pop_front() {
            return Step::Deliver(Ok(event));
        }
        if cursor.next < compacted {
            return Step::Deliver(Err(Error::Expired { requested: self.after_revision, compacted }));
        }
        if cursor.next <= revision {
            state.catch_up(self.id);
            return match state.watches.get_mut(&self.id).and_then(|c| c.pending.pop_front()) {
                Some(event) => Step::Deliver(Ok(event)),
                None => Step::Behind,
            };
        }
        if std::mem::take(&mut self.progress_due) {
            return Step::Deliver(Ok(WatchEvent::Progress { revision }));
        }
        Step::Wait
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.db.lock().watches.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::conformance;

    /// One test per conformance case, each on a fresh store.
    macro_rules! memory_cases {
        ($($case:ident),* $(,)?) => {
            mod conformance_cases {
                use super::*;
                $(
                    #[tokio::test]
                    async fn $case() {
                        let store = MemoryStore::new();
                        if let Err(failure) = conformance::$case(&store, "/conformance/").await {
                            panic!("{failure}");
                        }
                    }
                )*
            }
        };
    }
    crate::for_each_conformance_case!(memory_cases);

    #[tokio::test]
    async fn every_conformance_case_passes_one_after_another_on_one_shared_store() {
        let store = MemoryStore::new();
        if let Err(failed) = conformance::run_all(&store, "/conformance/").await {
            panic!("{failed}");
        }
    }

    #[test]
    fn conformance_case_names_are_unique() {
        let mut names: Vec<_> = conformance::CASES.iter().map(|case| case.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), conformance::CASES.len());
    }

    async fn fill(store: &MemoryStore, prefix: &str, count: usize) -> i64 {
        let mut last = 0;
        for i in 0..count {
            last = store.create(&format!("{prefix}{i:06}"), b"{}".to_vec()).await.unwrap();
        }
        last
    }

    #[tokio::test]
    async fn a_reader_that_stops_reading_holds_one_batch_then_gets_expired_once_compaction_overtakes_it() {
        let store = MemoryStore::new();
        let start = store.current_revision().await.unwrap();
        let mut watch = store.watch("/p/", start, None).await.unwrap();
        let last = fill(&store, "/p/", MemoryStore::WATCH_BATCH + 100).await;
        {
            let state = store.db.lock();
            let buffered = state.watches.values().map(|c| c.pending.len()).sum::<usize>();
            assert_eq!(buffered, MemoryStore::WATCH_BATCH, "a watch buffers one batch at most");
        }
        store.compact(last).await.unwrap();
        let mut delivered = 0;
        let error = loop {
            match watch.next().await.unwrap() {
                Ok(WatchEvent::Put { .. }) => delivered += 1,
                Ok(other) => panic!("unexpected event {other:?}"),
                Err(e) => break e,
            }
        };
        assert_eq!(delivered, MemoryStore::WATCH_BATCH, "what was buffered is delivered before the error");
        assert_eq!(error, Error::Expired { requested: start, compacted: last });
        assert!(watch.next().await.is_none(), "the watch ends after the error");
    }

    #[tokio::test]
    async fn a_reader_that_stops_reading_catches_up_from_history_when_nothing_was_compacted() {
        let store = MemoryStore::new();
        let start = store.current_revision().await.unwrap();
        let mut watch = store.watch("/p/", start, None).await.unwrap();
        let count = MemoryStore::WATCH_BATCH * 3;
        let last = fill(&store, "/p/", count).await;
        let mut revisions = Vec::new();
        while revisions.len() < count {
            match watch.next().await.unwrap().unwrap() {
                WatchEvent::Put { kv, .. } => revisions.push(kv.mod_revision),
                other => panic!("unexpected event {other:?}"),
            }
        }
        assert_eq!(revisions, ((start + 1)..=last).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_watch_far_behind_finds_its_changes_among_many_changes_of_other_prefixes() {
        let store = MemoryStore::new();
        let start = store.current_revision().await.unwrap();
        let first = store.create("/watched/a", b"{}".to_vec()).await.unwrap();
        fill(&store, "/other/", SCAN_LIMIT * 2 + 10).await;
        let second = store.create("/watched/b", b"{}".to_vec()).await.unwrap();
        let mut watch = store.watch("/watched/", start, None).await.unwrap();
        for expected in [first, second] {
            match watch.next().await.unwrap().unwrap() {
                WatchEvent::Put { kv, .. } => assert_eq!(kv.mod_revision, expected),
                other => panic!("unexpected event {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_dropped_watch_leaves_nothing_behind_in_the_store() {
        let store = MemoryStore::new();
        let watch = store.watch("/p/", 0, Some(Duration::from_millis(10))).await.unwrap();
        fill(&store, "/p/", 3).await;
        assert_eq!(store.db.lock().watches.len(), 1);
        drop(watch);
        assert!(store.db.lock().watches.is_empty());
    }

    #[tokio::test]
    async fn clones_share_one_store() {
        let store = MemoryStore::new();
        let clone = store.clone();
        let created = clone.create("/p/a", b"{}".to_vec()).await.unwrap();
        assert_eq!(store.get("/p/a").await.unwrap().mod_revision, created);
        assert_eq!(store.current_revision().await.unwrap(), created);
    }

    #[tokio::test]
    async fn a_fresh_store_is_at_revision_one_like_a_fresh_etcd() {
        let store = MemoryStore::new();
        assert_eq!(store.current_revision().await.unwrap(), 1);
        assert_eq!(store.create("/p/a", b"{}".to_vec()).await.unwrap(), 2);
    }
}
