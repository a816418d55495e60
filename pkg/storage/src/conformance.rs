//! The conformance suite of [`Store`]: one async function per promise of the trait's docs,
//! run against every implementation, so that [`MemoryStore`](crate::MemoryStore) keeps
//! behaving like [`EtcdStore`](crate::EtcdStore) on a real etcd.
//!
//! Each case is named as the sentence it proves and takes a store and a key prefix (ending
//! in `/`) that no one else uses, so cases can share one etcd. It returns `Ok(())` or the
//! [`Failure`] that shows the promise broken; it never panics.
//!
//! Where the two implementations could disagree, the cases pin what etcd does, including a
//! few things the trait docs do not promise but the apiserver would notice (what a list at a
//! future revision answers, which fields [`Error::Expired`] fills, when a replayed change has
//! no previous value). When etcd and `MemoryStore` disagree, etcd is right.
//!
//! Entry points: [`run_all`] runs every case one after another on one store and reports each
//! failure; [`CASES`] lists them by name; [`for_each_conformance_case!`](crate::for_each_conformance_case)
//! hands the names to a macro of yours, to generate one `#[test]` per case.
//!
//! What a case assumes: nothing else writes to the store while it runs (some cases check that
//! a write advances the revision by exactly one), and nothing else depends on old revisions
//! of the store (the compaction cases compact the whole store). [`run_all`] runs cases
//! sequentially for that reason. Not promised: timing. Watch cases wait up to
//! [`EVENT_TIMEOUT`] for an event, and the cases that check for the absence of an event
//! watch for [`QUIET`] only.

use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;

use crate::{Continue, Error, KeyValue, ListOptions, ListPage, Store, WatchEvent, WatchStream};

/// How long a watch case waits for an event before it fails.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a case watches to check that an event does not come.
pub const QUIET: Duration = Duration::from_millis(500);

/// How a case found a promise broken.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The store answered, but not what the promise says.
    #[error("{0}")]
    Broken(String),
    /// A store call that the promise says succeeds failed.
    #[error("unexpected storage error: {0}")]
    Storage(#[from] Error),
    /// A watch delivered nothing within [`EVENT_TIMEOUT`].
    #[error("no watch event within {0:?}")]
    Silent(Duration),
    /// A watch stream ended where an event was expected.
    #[error("the watch stream ended")]
    Ended,
}

/// What one case returns.
pub type Outcome = Result<(), Failure>;

/// One case: its name (the sentence it proves) and how to run it.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's function name.
    pub name: &'static str,
    /// Runs the case on a store, under a key prefix (ending in `/`) no one else uses.
    pub run: for<'a> fn(&'a dyn Store, &'a str) -> BoxFuture<'a, Outcome>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish_non_exhaustive()
    }
}

/// The cases of [`run_all`] that failed.
#[derive(Debug, thiserror::Error)]
#[error("{} of {total} storage conformance cases failed:{}", failures.len(), list(failures))]
pub struct SuiteFailed {
    /// How many cases ran.
    pub total: usize,
    /// Each failed case's name and why it failed.
    pub failures: Vec<(&'static str, Failure)>,
}

fn list(failures: &[(&'static str, Failure)]) -> String {
    failures.iter().map(|(name, why)| format!("\n- {name}: {why}")).collect()
}

/// Calls `$callback! { case_a, case_b, ... }` with the name of every case, so a test crate can
/// generate one test per case that cannot miss a case added later:
///
/// ```no_run
/// macro_rules! memory_cases {
///     ($($case:ident),* $(,)?) => {$(
///         #[tokio::test]
///         async fn $case() {
///             let store = rkube_storage::MemoryStore::new();
///             rkube_storage::conformance::$case(&store, "/conformance/").await.unwrap();
///         }
///     )*};
/// }
/// rkube_storage::for_each_conformance_case!(memory_cases);
/// ```
#[macro_export]
macro_rules! for_each_conformance_case {
    ($callback:ident) => {
        $callback! {
            create_returns_the_revision_that_get_reports_as_mod_and_create_revision,
            every_successful_write_advances_the_global_revision_by_exactly_one,
            update_moves_mod_revision_and_keeps_create_revision,
            delete_returns_the_last_value_and_the_deletion_revision,
            a_key_created_again_after_its_delete_has_a_new_create_revision,
            create_of_an_existing_key_fails_with_already_exists_and_writes_nothing,
            update_with_a_stale_revision_fails_with_conflict_naming_expected_and_actual,
            delete_with_a_stale_revision_fails_with_conflict_naming_expected_and_actual,
            reads_and_writes_of_a_missing_key_fail_with_not_found_and_write_nothing,
            update_expecting_revision_zero_creates_a_missing_key,
            a_list_returns_only_the_keys_under_its_prefix_in_key_order,
            every_page_is_read_at_the_first_pages_revision_while_writes_happen_between_pages,
            remaining_counts_the_keys_after_each_page,
            a_list_at_an_exact_revision_shows_the_objects_as_they_were_then,
            written_since_counts_the_keys_and_names_those_written_after_the_revision,
            a_list_at_a_revision_not_written_yet_fails_with_future_revision,
            a_watch_from_a_past_revision_replays_every_change_in_order,
            a_watch_delivers_live_changes_in_order_after_replaying_history,
            a_watch_ignores_keys_outside_its_prefix,
            delete_events_carry_the_deletion_revision_and_the_last_state,
            a_watch_from_a_future_revision_starts_after_it,
            a_caught_up_watch_with_progress_every_reports_progress_at_the_current_revision,
            a_watch_without_progress_every_reports_no_progress,
            a_watch_from_a_compacted_revision_fails_with_expired_and_ends,
            a_list_at_a_compacted_revision_fails_with_expired,
            continuing_a_paged_list_after_its_revision_was_compacted_fails_with_expired,
            the_compaction_revision_itself_can_still_be_listed_and_watched_from,
            a_replayed_change_at_the_compaction_revision_has_no_previous_value,
            compaction_keeps_every_current_object_readable_and_watchable,
            a_caught_up_watch_survives_a_compaction_and_keeps_delivering,
            compacting_at_or_below_the_last_compaction_succeeds_and_changes_nothing,
            compacting_a_revision_not_written_yet_fails_with_future_revision,
            ping_succeeds_and_current_revision_is_the_last_writes_revision,
            a_write_larger_than_etcd_accepts_fails_with_too_large_and_writes_nothing,
        }
    };
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        /// Every case, in the order [`run_all`] runs them.
        pub const CASES: &[Case] = &[
            $(Case { name: stringify!($case), run: |store, prefix| Box::pin($case(store, prefix)) }),*
        ];
    };
}
crate::for_each_conformance_case!(cases);

/// Runs every case in [`CASES`] on `store`, one after another, each under its own prefix
/// `{prefix}{case name}/`; returns every case that failed. `prefix` must end in `/`.
pub async fn run_all(store: &dyn Store, prefix: &str) -> Result<(), SuiteFailed> {
    let mut failures = Vec::new();
    for case in CASES {
        let case_prefix = format!("{prefix}{}/", case.name);
        if let Err(failure) = (case.run)(store, &case_prefix).await {
            failures.push((case.name, failure));
        }
    }
    if failures.is_empty() { Ok(()) } else { Err(SuiteFailed { total: CASES.len(), failures }) }
}

/// Fails the case with a message unless `$cond` holds.
macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(Failure::Broken(format!($($why)+)));
        }
    };
}

/// Fails the case unless `$actual == $expected`, naming `$what`.
macro_rules! ensure_eq {
    ($actual:expr, $expected:expr, $what:expr) => {{
        let (actual, expected) = (&$actual, &$expected);
        if actual != expected {
            return Err(Failure::Broken(format!("{}:\n  expected {:?}\n  got      {:?}", $what, expected, actual)));
        }
    }};
}

fn value(text: &str) -> Vec<u8> {
    format!("{{\"v\":\"{text}\"}}").into_bytes()
}

fn kv(key: &str, text: &str, mod_revision: i64, create_revision: i64) -> KeyValue {
    KeyValue { key: key.to_string(), value: value(text), mod_revision, create_revision }
}

fn put(kv: KeyValue, prev: Option<KeyValue>) -> WatchEvent {
    WatchEvent::Put { kv, prev }
}

fn keys(page: &ListPage) -> Vec<&str> {
    page.items.iter().map(|kv| kv.key.as_str()).collect()
}

fn paged(limit: i64, continue_from: Option<Continue>) -> ListOptions {
    ListOptions { limit: Some(limit), continue_from, ..ListOptions::default() }
}

fn at(revision: i64) -> ListOptions {
    ListOptions { revision: Some(revision), ..ListOptions::default() }
}

/// The next item of a watch: an event or the error that ended it; `None` if the stream ended.
async fn next_item(watch: &mut WatchStream) -> Result<Option<crate::Result<WatchEvent>>, Failure> {
    tokio::time::timeout(EVENT_TIMEOUT, watch.next()).await.map_err(|_| Failure::Silent(EVENT_TIMEOUT))
}

/// The next event of a watch, progress included.
async fn next_event(watch: &mut WatchStream) -> Result<WatchEvent, Failure> {
    match next_item(watch).await? {
        Some(event) => Ok(event?),
        None => Err(Failure::Ended),
    }
}

/// The next change (put or delete) of a watch, skipping progress.
async fn next_change(watch: &mut WatchStream) -> Result<WatchEvent, Failure> {
    loop {
        match next_event(watch).await? {
            WatchEvent::Progress { .. } => {}
            change => return Ok(change),
        }
    }
}

/// The next `count` changes of a watch.
async fn changes(watch: &mut WatchStream, count: usize) -> Result<Vec<WatchEvent>, Failure> {
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        seen.push(next_change(watch).await?);
    }
    Ok(seen)
}

/// The create's revision becomes both revisions of the key, and the store's current revision.
pub async fn create_returns_the_revision_that_get_reports_as_mod_and_create_revision(
    store: &dyn Store,
    prefix: &str,
) -> Outcome {
    let key = format!("{prefix}a");
    let before = store.current_revision().await?;
    let created = store.create(&key, value("1")).await?;
    ensure!(created > before, "create returned {created}, not after the revision before it ({before})");
    ensure_eq!(store.get(&key).await?, kv(&key, "1", created, created), "the created key");
    ensure_eq!(store.current_revision().await?, created, "the current revision after the create");
    Ok(())
}

/// One revision counter for the whole store: each create, update and delete adds one.
pub async fn every_successful_write_advances_the_global_revision_by_exactly_one(
    store: &dyn Store,
    prefix: &str,
) -> Outcome {
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    let start = store.current_revision().await?;
    let created_a = store.create(&a, value("1")).await?;
    ensure_eq!(created_a, start + 1, "the revision of the first create");
    ensure_eq!(store.create(&b, value("1")).await?, start + 2, "the revision of a create of another key");
    ensure_eq!(store.update(&a, created_a, value("2")).await?, start + 3, "the revision of an update");
    ensure_eq!(store.delete(&b, None).await?.1, start + 4, "the revision of a delete");
    ensure_eq!(store.current_revision().await?, start + 4, "the current revision after four writes");
    Ok(())
}

/// An update's revision becomes the key's mod_revision; its create_revision stays.
pub async fn update_moves_mod_revision_and_keeps_create_revision(store: &dyn Store, prefix: &str) -> Outcome {
    let key = format!("{prefix}a");
    let created = store.create(&key, value("1")).await?;
    let updated = store.update(&key, created, value("2")).await?;
    ensure_eq!(store.get(&key).await?, kv(&key, "2", updated, created), "the key after one update");
    let again = store.update(&key, updated, value("3")).await?;
    ensure_eq!(store.get(&key).await?, kv(&key, "3", again, created), "the key after two updates");
    Ok(())
}

/// A delete (with or without an expected revision) returns the key's last value and the
/// revision of the deletion; the key is gone afterwards.
pub async fn delete_returns_the_last_value_and_the_deletion_revision(store: &dyn Store, prefix: &str) -> Outcome {
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    let created = store.create(&a, value("1")).await?;
    let updated = store.update(&a, created, value("2")).await?;
    let (last, deleted) = store.delete(&a, Some(updated)).await?;
    ensure_eq!(last, kv(&a, "2", updated, created), "the value a delete with a revision returns");
    ensure_eq!(deleted, updated + 1, "the revision of the delete");
    ensure_eq!(store.get(&a).await, Err(Error::NotFound { key: a.clone() }), "a get after the delete");
    let created_b = store.create(&b, value("b")).await?;
    let (last, deleted) = store.delete(&b, None).await?;
    ensure_eq!(last, kv(&b, "b", created_b, created_b), "the value a delete without a revision returns");
    ensure_eq!(deleted, created_b + 1, "the revision of the unconditional delete");
    Ok(())
}

/// A key deleted and created again starts a new life: its create_revision is the new create's.
pub async fn a_key_created_again_after_its_delete_has_a_new_create_revision(
    store: &dyn Store,
    prefix: &str,
) -> Outcome {
    let key = format!("{prefix}a");
    store.create(&key, value("1")).await?;
    let (_, deleted) = store.delete(&key, None).await?;
    let again = store.create(&key, value("2")).await?;
    ensure_eq!(again, deleted + 1, "the revision of the second create");
    ensure_eq!(store.get(&key).await?, kv(&key, "2", again, again), "the key created again");
    Ok(())
}

/// Create never overwrites: an existing key fails with AlreadyExists, and nothing is written.
pub async fn create_of_an_existing_key_fails_with_already_exists_and_writes_nothing(
    store: &dyn Store,
    prefix: &str,
) -> Outcome {
    let key = format!("{prefix}a");
    let created = store.create(&key, value("1")).await?;
    let before = store.current_revision().await?;
    ensure_eq!(
        store.create(&key, value("2")).await,
        Err(Error::AlreadyExists { key: key.clone() }),
        "a second create of the key"
    );
    ensure_eq!(store.current_revision().await?, before, "the revision after the failed create");
    ensure_eq!(store.get(&key).await?, kv(&key, "1", created, created), "the key after the failed create");
    Ok(())
}

/// Compare-and-swap: an update expecting an old revision fails with Conflict, whose
/// `expected` is the caller's revision and `actual` the key's mod_revision; nothing is written.
pub async fn update_with_a_stale_revision_fails_with_conflict_naming_expected_and_actual(
    store: &dyn Store,
    prefix: &str,
) -> Outcome {
    let key = format!("{prefix}a");
    let created = store.create(&key, value("1")).await?;
    let updated = store.update(&key, created, value("2")).await?;
    let before = store.current_revision().await?;
    ensure_eq!(
        store.update(&key, created, value("3")).await,
        Err(Error::Conflict { key: key.clone(), expected: created, actual: updated }),
        "an update expecting the create's revision after another update"
    );
    ensure_eq!(store.current_revision().await?, before, "the revision after the failed update");
    ensure_eq!(store.get(&key).await?, kv(&key, "2", updated, created), "the key after the failed update");
    Ok(())
}

/// A delete expecting an old revision fails with Conflict like an update, and deletes nothing.
pub async fn delete_with_a_stale_revision_fails_with_conflict_naming_expected_and_actual(
    store: &dyn Store,
    prefix: &str,
) -> Outcome {
    let key = format!("{prefix}a");
    let created = store.create(&key, value("1")).await?;
    let updated = store.update(&key, created, value("2")).await?;
    let before = store.current_revision().await?;
    ensure_eq!(
        store.delete(&key, Some(created)).await,
        Err(Error::Conflict { key: key.clone(), expected: created, actual: updated }),
        "a delete expecting the create's revision after an update"
    );
    ensure_eq!(store.current_revision().await?, before, "the revision after the failed delete");
    ensure_eq!(store.get(&key).await?, kv(&key, "2", updated, created), "the key after the failed delete");
    Ok(())
}

/// Get, update and delete of a key that never existed, or no longer exists, fail with
/// NotFound; none of them writes anything.
pub async fn reads_and_writes_of_a_missing_key_fail_with_not_found_and_write_nothing(
    store: &dyn Store,
    prefix: &str,
) -> Outcome {
    let never = format!("{prefix}never");
    let gone = format!("{prefix}gone");
    let created = store.create(&gone, value("1")).await?;
    store.delete(&gone, None).await?;
    let before = store.current_revision().await?;
    for key in [&never, &gone] {
        let not_found = Error::NotFound { key: key.clone() };
        ensure_eq!(store.get(key).await, Err(not_found.clone()), format!("a get of {key}"));
        ensure_eq!(
            store.update(key, created, value("2")).await,
            Err(not_found.clone()),
            format!("an update of {key} expecting revision {created}")
        );
        ensure_eq!(store.delete(key, None).await, Err(not_found.clone()), format!("a delete of {key}"));
        ensure_eq!(
            store.delete(key, Some(created)).await,
            Err(not_found.clone()),
            format!("a delete of {key} expecting revision {created}")
        );
    }
    ensure_eq!(store.current_revision().await?, before, "the revision after the failed calls");
    Ok(())
}

/// etcd compares a missing key's mod_revision as 0, so an update expecting revision 0 creates
/// the key (and conflicts once it exists). Not a promise to build on; pinned so that
/// `MemoryStore` answers as etcd does.
pub async fn update_expecting_revision_zero_creates_a_missing_key(store: &dyn Store, prefix: &str) -> Outcome {
    let key = format!("{prefix}a");
    let created = store.update(&key, 0, value("1")).await?;
    ensure_eq!(store.get(&key).await?, kv(&key, "1", created, created), "the key an update expecting 0 created");
    ensure_eq!(
        store.update(&key, 0, value("2")).await,
        Err(Error::Conflict { key: key.clone(), expected: 0, actual: created }),
        "an update expecting 0 of an existing key"
    );
    Ok(())
}

/// A list holds exactly the keys that start with its prefix, ordered by key, read at the
/// current revision; unpaged, it has no continue token and no remaining count.
pub async fn a_list_returns_only_the_keys_under_its_prefix_in_key_order(store: &dyn Store, prefix: &str) -> Outcome {
    let listed = format!("{prefix}items/");
    // Neighbours that sort right before and right after the listed range.
    for name in ["items/b", "items-x/a", "items/c/d", "items0/a", "items/a", "itemsz"] {
        store.create(&format!("{prefix}{name}"), value(name)).await?;
    }
    let page = store.list(&listed, ListOptions::default()).await?;
    let expected: Vec<String> = ["a", "b", "c/d"].iter().map(|name| format!("{listed}{name}")).collect();
    ensure_eq!(keys(&page), expected, "the keys listed");
    for item in &page.items {
        let name = item.key.strip_prefix(prefix).unwrap_or_default();
        ensure_eq!(item.value, value(name), format!("the value of {}", item.key));
    }
    ensure_eq!(page.revision, store.current_revision().await?, "the revision of an unpaged list");
    ensure_eq!((page.next, page.remaining), (None, None), "the continue token and remaining count of an unpaged list");
    let empty = store.list(&format!("{prefix}nothing/"), ListOptions::default()).await?;
    ensure!(empty.items.is_empty(), "a list of an empty prefix returned {:?}", keys(&empty));
    Ok(())
}

/// Paged lists are consistent: every page is read at the first page's revision, so a write,
/// update or delete between pages does not show, and the pages add up to one snapshot.
pub async fn every_page_is_read_at_the_first_pages_revision_while_writes_happen_between_pages(
    store: &dyn Store,
    prefix: &str,
) -> Outcome {
    let mut revisions = Vec::new();
    for name in ["k0", "k1", "k2", "k3", "k4"] {
        revisions.push(store.create(&format!("{prefix}{name}"), value(name)).await?);
    }
    let snapshot = store.list(prefix, ListOptions::default()).await?;
    let first = store.list(prefix, paged(2, None)).await?;
    ensure_eq!(first.revision, snapshot.revision, "the first page's revision");
    // Between pages: change a key of a later page, delete one, and add keys inside and after.
    let k3 = format!("{prefix}k3");
    store.update(&k3, revisions[3], value("changed")).await?;
    store.delete(&format!("{prefix}k2"), None).await?;
    store.create(&format!("{prefix}k2a"), value("new")).await?;
    store.create(&format!("{prefix}k9"), value("new")).await?;
    let second = store.list(prefix, paged(2, first.next.clone())).await?;
    ensure_eq!(second.revision, first.revision, "the second page's revision");
    let third = store.list(prefix, paged(2, second.next.clone())).await?;
    ensure_eq!(third.revision, first.revision, "the third page's revision");
    ensure_eq!(third.next, None, "the last page's continue token");
    let pages: Vec<KeyValue> = [first, second, third].into_iter().flat_map(|page| page.items).collect();
    ensure_eq!(pages, snapshot.items, "the pages, joined");
    Ok(())
}

/// With a limit, each page says how many keys come after it, and the last page has no
/// continue token; a limit of at least the number of keys gives one page and 0 remaining.
pub async fn remaining_counts_the_keys_after_each_page(store: &dyn Store, prefix: &str) -> Outcome {
    for name in ["a", "b", "c", "d", "e"] {
        store.create(&format!("{prefix}{name}"), value(name)).await?;
    }
    let mut next = None;
    for (page_number, (expected_items, expected_remaining)) in [(2, 3), (2, 1), (1, 0)].into_iter().enumerate() {
        let page = store.list(prefix, paged(2, next)).await?;
        ensure_eq!(page.items.len(), expected_items, format!("the items of page {page_number}"));
        ensure_eq!(page.remaining, Some(expected_remaining), format!("the remaining count after page {page_number}"));
        ensure_eq!(page.next.is_some(), expected_remaining > 0, format!("whether page {page_number} continues"));
        next = page.next;
    }
    for limit in [5, 10] {
        let page = store.list(prefix, paged(limit, None)).await?;
        ensure_eq!(page.items.len(), 5, format!("the items of a list limited to {limit}"));
        ensure_eq!((page.next, page.remaining), (None, Some(0)), format!("the end of a list limited to {limit}"));
    }
    Ok(())
}

/// A list at an exact revision (also paged) shows the keys and values of that revision and
/// reports that revision, whatever was written since.
pub async fn a_list_at_an_exact_revision_shows_the_objects_as_they_were_then(
    store: &dyn Store,
    prefix: &str,
) -> Outcome {
    let (a, b, c) = (format!("{prefix}a"), format!("{prefix}b"), format!("{prefix}c"));
    let created_a = store.create(&a, value("a1")).await?;
    let created_b = store.create(&b, value("b1")).await?;
    store.update(&a, created_a, value("a2")).await?;
    store.delete(&b, None).await?;
    store.create(&c, value("c1")).await?;
    let then = vec![kv(&a, "a1", created_a, created_a), kv(&b, "b1", created_b, created_b)];
    let page = store.list(prefix, at(created_b)).await?;
    ensure_eq!(page.items, then, "a list at the revision of the second create");
    ensure_eq!(page.revision, created_b, "the revision of a list at an exact revision");
    let page = store.list(prefix, at(created_a)).await?;
    ensure_eq!(page.items, then[..1], "a list at the revision of the first create");
    let first =
        store.list(prefix, ListOptions { limit: Some(1), revision: Some(created_b), ..ListOptions::default() }).await?;
    ensure_eq!(
        (first.items.as_slice(), first.revision),
        (&then[..1], created_b),
        "the first page at an exact revision"
    );
    let second = store.list(prefix, paged(1, first.next)).await?;
    ensure_eq!((second.items.as_slice(), second.revision), (&then[1..], created_b), "the second page");
    ensure_eq!(second.next, None, "the continue token of the last page at an exact revision");
    Ok(())
}

/// A list at a revision the store has not reached yet fails with [`Error::FutureRevision`]
/// (etcd: OutOfRange, "required revision is a future revision"), naming the revision asked
/// for and the store's.
pub async fn a_list_at_a_revision_not_written_yet_fails_with_future_revision(
    store: &dyn Store,
    prefix: &str,
) -> Outcome {
    store.create(&format!("{prefix}a"), value("1")).await?;
    let future = store.current_revision().await? + 10;
    let current = store.current_revision().await?;
    let result = store.list(prefix, at(future)).await;
    ensure!(
        matches!(result, Err(Error::FutureRevision { requested, current: c }) if requested == future && c == current),
        "a list at future revision {future} (store at {current}) answered {result:?}"
    );
    Ok(())
}

/// A watch from a past revision first replays every change under its prefix after that
/// revision, in order, each put with the value it replaced and each delete with the last value.
pub async fn a_watch_from_a_past_revision_replays_every_change_in_order(store: &dyn Store, prefix: &str) -> Outcome {
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    let start = store.current_revision().await?;
    let created_a = store.create(&a, value("1")).await?;
    let updated_a = store.update(&a, created_a, value("2")).await?;
    let created_b = store.create(&b, value("b")).await?;
    let (_, deleted_a) = store.delete(&a, None).await?;
    let history = vec![
        put(kv(&a, "1", created_a, created_a), None),
        put(kv(&a, "2", updated_a, created_a), Some(kv(&a, "1", created_a, created_a))),
        put(kv(&b, "b", created_b, created_b), None),
        WatchEvent::Delete { key: a.clone(), revision: deleted_a, prev: Some(kv(&a, "2", updated_a, created_a)) },
    ];
    let mut watch = store.watch(prefix, start, None).await?;
    ensure_eq!(changes(&mut watch, 4).await?, history, "the changes replayed from before the first write");
    let mut watch = store.watch(prefix, created_a, None).await?;
    ensure_eq!(changes(&mut watch, 3).await?, history[1..], "the changes replayed from after the first write");
    Ok(())
}

/// After the history, a watch delivers each new change as it is written, in order.
pub async fn a_watch_delivers_live_changes_in_order_after_replaying_history(
    store: &dyn Store,
    prefix: &str,
) -> Outcome {
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    let start = store.current_revision().await?;
    let created_a = store.create(&a, value("1")).await?;
    let mut watch = store.watch(prefix, start, None).await?;
    ensure_eq!(next_change(&mut watch).await?, put(kv(&a, "1", created_a, created_a), None), "the replayed create");
    let updated_a = store.update(&a, created_a, value("2")).await?;
    let created_b = store.create(&b, value("b")).await?;
    let live = vec![
        put(kv(&a, "2", updated_a, created_a), Some(kv(&a, "1", created_a, created_a))),
        put(kv(&b, "b", created_b, created_b), None),
    ];
    ensure_eq!(changes(&mut watch, 2).await?, live, "the live changes");
    Ok(())
}

/// A watch sees only keys that start with its prefix, not those of neighbouring prefixes.
pub async fn a_watch_ignores_keys_outside_its_prefix(store: &dyn Store, prefix: &str) -> Outcome {
    let watched = format!("{prefix}in/");
    let start = store.current_revision().await?;
    for name in ["in-x/a", "in0", "inner/a"] {
        store.create(&format!("{prefix}{name}"), value(name)).await?;
    }
    let inside = format!("{watched}a");
    let created = store.create(&inside, value("in")).await?;
    let mut watch = store.watch(&watched, start, None).await?;
    ensure_eq!(next_change(&mut watch).await?, put(kv(&inside, "in", created, created), None), "the first change");
    store.create(&format!("{prefix}in-x/b"), value("outside")).await?;
    let second = format!("{watched}b");
    let created = store.create(&second, value("in")).await?;
    ensure_eq!(next_change(&mut watch).await?, put(kv(&second, "in", created, created), None), "the second change");
    Ok(())
}

/// A delete event carries the deletion's revision and the key's last value; a create of the
/// same key afterwards is a put with no previous value.
pub async fn delete_events_carry_the_deletion_revision_and_the_last_state(store: &dyn Store, prefix: &str) -> Outcome {
    let key = format!("{prefix}a");
    let created = store.create(&key, value("1")).await?;
    let updated = store.update(&key, created, value("2")).await?;
    let mut watch = store.watch(prefix, updated, None).await?;
    let (_, deleted) = store.delete(&key, Some(updated)).await?;
    let again = store.create(&key, value("3")).await?;
    let expected = vec![
        WatchEvent::Delete { key: key.clone(), revision: deleted, prev: Some(kv(&key, "2", updated, created)) },
        put(kv(&key, "3", again, again), None),
    ];
    ensure_eq!(changes(&mut watch, 2).await?, expected, "the delete and the create again");
    Ok(())
}

/// A watch after a revision the store has not reached yet waits for it and delivers only
/// the changes after it.
pub async fn a_watch_from_a_future_revision_starts_after_it(store: &dyn Store, prefix: &str) -> Outcome {
    let start = store.current_revision().await?;
    let mut watch = store.watch(prefix, start + 2, None).await?;
    let mut last = start;
    for name in ["a", "b", "c"] {
        last = store.create(&format!("{prefix}{name}"), value(name)).await?;
    }
    let c = format!("{prefix}c");
    ensure_eq!(next_change(&mut watch).await?, put(kv(&c, "c", last, last), None), "the first change delivered");
    Ok(())
}

/// With `progress_every`, a quiet watch that has delivered everything reports progress at the
/// store's current revision, and again after it delivers a change.
pub async fn a_caught_up_watch_with_progress_every_reports_progress_at_the_current_revision(
    store: &dyn Store,
    prefix: &str,
) -> Outcome {
    let start = store.current_revision().await?;
    let mut watch = store.watch(prefix, start, Some(Duration::from_millis(100))).await?;
    ensure_eq!(next_event(&mut watch).await?, WatchEvent::Progress { revision: start }, "the first event");
    let key = format!("{prefix}a");
    let created = store.create(&key, value("1")).await?;
    ensure_eq!(next_change(&mut watch).await?, put(kv(&key, "1", created, created), None), "the change");
    ensure_eq!(next_event(&mut watch).await?, WatchEvent::Progress { revision: created }, "the event after the change");
    Ok(())
}

/// Without `progress_every`, a quiet watch says nothing until a change comes.
pub async fn a_watch_without_progress_every_reports_no_progress(store: &dyn Store, prefix: &str) -> Outcome {
    let start = store.current_revision().await?;
    let mut watch = store.watch(prefix, start, None).await?;
    if let Ok(item) = tokio::time::timeout(QUIET, watch.next()).await {
        return Err(Failure::Broken(format!("a quiet watch without progress delivered {item:?}")));
    }
    let key = format!("{prefix}a");
    let created = store.create(&key, value("1")).await?;
    ensure_eq!(next_event(&mut watch).await?, put(kv(&key, "1", created, created), None), "the first event");
    Ok(())
}

/// A watch that needs a revision older than the last compaction yields one
/// [`Error::Expired`] naming the revision it was asked to watch after and the compaction
/// revision, then ends.
pub async fn a_watch_from_a_compacted_revision_fails_with_expired_and_ends(store: &dyn Store, prefix: &str) -> Outcome {
    let key = format!("{prefix}a");
    let start = store.current_revision().await?;
    let created = store.create(&key, value("1")).await?;
    let updated = store.update(&key, created, value("2")).await?;
    let compacted = store.update(&key, updated, value("3")).await?;
    store.compact(compacted).await?;
    let mut watch = store.watch(prefix, start, None).await?;
    let first = next_item(&mut watch).await?;
    ensure_eq!(
        first,
        Some(Err(Error::Expired { requested: start, compacted })),
        "the first item of a watch from a compacted revision"
    );
    ensure_eq!(next_item(&mut watch).await?, None, "the item after the error");
    Ok(())
}

/// A list at a revision older than the last compaction fails with [`Error::Expired`] naming
/// that revision. etcd's answer does not say where it compacted, so `compacted` is 0.
pub async fn a_list_at_a_compacted_revision_fails_with_expired(store: &dyn Store, prefix: &str) -> Outcome {
    let key = format!("{prefix}a");
    let created = store.create(&key, value("1")).await?;
    let updated = store.update(&key, created, value("2")).await?;
    store.compact(updated).await?;
    ensure_eq!(
        store.list(prefix, at(created)).await,
        Err(Error::Expired { requested: created, compacted: 0 }),
        "a list at a compacted revision"
    );
    Ok(())
}

/// The next page of a list whose revision has been compacted since fails with
/// [`Error::Expired`] naming the list's revision (`compacted` is 0, as for every list).
pub async fn continuing_a_paged_list_after_its_revision_was_compacted_fails_with_expired(
    store: &dyn Store,
    prefix: &str,
) -> Outcome {
    let mut created = 0;
    for name in ["a", "b", "c"] {
        created = store.create(&format!("{prefix}{name}"), value(name)).await?;
    }
    let first = store.list(prefix, paged(1, None)).await?;
    let updated = store.update(&format!("{prefix}c"), created, value("changed")).await?;
    store.compact(updated).await?;
    ensure_eq!(
        store.list(prefix, paged(1, first.next)).await,
        Err(Error::Expired { requested: first.revision, compacted: 0 }),
        "the second page after a compaction"
    );
    Ok(())
}

/// Compaction at `c` keeps revision `c` itself: a list at `c` and a watch after `c - 1`
/// still work, while a watch after `c - 2` fails.
pub async fn the_compaction_revision_itself_can_still_be_listed_and_watched_from(
    store: &dyn Store,
    prefix: &str,
) -> Outcome {
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    let before = store.create(&a, value("a")).await?;
    let compacted = store.create(&b, value("b")).await?;
    store.compact(compacted).await?;
    let page = store.list(prefix, at(compacted)).await?;
    ensure_eq!(page.items, vec![kv(&a, "a", before, before), kv(&b, "b", compacted, compacted)], "a list at it");
    let mut watch = store.watch(prefix, compacted - 1, None).await?;
    ensure_eq!(next_change(&mut watch).await?, put(kv(&b, "b", compacted, compacted), None), "the change at it");
    let mut watch = store.watch(prefix, compacted - 2, None).await?;
    ensure_eq!(
        next_item(&mut watch).await?,
        Some(Err(Error::Expired { requested: compacted - 2, compacted })),
        "a watch from before it"
    );
    Ok(())
}

/// etcd reads a replayed change's previous value at the revision before it, so the change at
/// the compaction revision comes without `prev` even when it was an update. Pinned so that
/// `MemoryStore` does the same; a watcher must not take a missing `prev` to mean a create.
pub async fn a_replayed_change_at_the_compaction_revision_has_no_previous_value(
    store: &dyn Store,
    prefix: &str,
) -> Outcome {
    let key = format!("{prefix}a");
    let created = store.create(&key, value("1")).await?;
    let compacted = store.update(&key, created, value("2")).await?;
    let after = store.update(&key, compacted, value("3")).await?;
    store.compact(compacted).await?;
    let mut watch = store.watch(prefix, compacted - 1, None).await?;
    let expected = vec![
        put(kv(&key, "2", compacted, created), None),
        put(kv(&key, "3", after, created), Some(kv(&key, "2", compacted, created))),
    ];
    ensure_eq!(changes(&mut watch, 2).await?, expected, "the changes from the compaction revision on");
    Ok(())
}

/// Compaction discards history, not objects: every current key still reads, lists and is
/// watched as before.
pub async fn compaction_keeps_every_current_object_readable_and_watchable(store: &dyn Store, prefix: &str) -> Outcome {
    let (a, b, c) = (format!("{prefix}a"), format!("{prefix}b"), format!("{prefix}c"));
    let created_a = store.create(&a, value("1")).await?;
    let updated_a = store.update(&a, created_a, value("2")).await?;
    store.create(&b, value("b")).await?;
    store.delete(&b, None).await?;
    let created_c = store.create(&c, value("c")).await?;
    store.compact(created_c).await?;
    let current = vec![kv(&a, "2", updated_a, created_a), kv(&c, "c", created_c, created_c)];
    ensure_eq!(store.get(&a).await?, current[0], "a key updated before the compaction");
    ensure_eq!(store.get(&b).await, Err(Error::NotFound { key: b.clone() }), "a key deleted before the compaction");
    let page = store.list(prefix, ListOptions::default()).await?;
    ensure_eq!((page.items, page.revision), (current.clone(), created_c), "a list after the compaction");
    let first = store.list(prefix, paged(1, None)).await?;
    let second = store.list(prefix, paged(1, first.next)).await?;
    ensure_eq!(second.items, current[1..], "the second page after the compaction");
    let mut watch = store.watch(prefix, created_c, None).await?;
    let updated_c = store.update(&c, created_c, value("c2")).await?;
    ensure_eq!(
        next_change(&mut watch).await?,
        put(kv(&c, "c2", updated_c, created_c), Some(current[1].clone())),
        "a change after the compaction"
    );
    Ok(())
}

/// A watch that has delivered everything is not hurt by a compaction, even of revisions
/// written after it started under other prefixes: it goes on delivering new changes.
pub async fn a_caught_up_watch_survives_a_compaction_and_keeps_delivering(store: &dyn Store, prefix: &str) -> Outcome {
    let (watched, other) = (format!("{prefix}watched/"), format!("{prefix}other/"));
    let start = store.current_revision().await?;
    let mut watch = store.watch(&watched, start, None).await?;
    let mut last = start;
    for name in ["a", "b", "c"] {
        last = store.create(&format!("{other}{name}"), value(name)).await?;
    }
    store.compact(last).await?;
    let key = format!("{watched}a");
    let created = store.create(&key, value("1")).await?;
    ensure_eq!(next_item(&mut watch).await?, Some(Ok(put(kv(&key, "1", created, created), None))), "the next item");
    Ok(())
}

/// Compacting at or below the last compaction is done already: it succeeds and changes nothing.
pub async fn compacting_at_or_below_the_last_compaction_succeeds_and_changes_nothing(
    store: &dyn Store,
    prefix: &str,
) -> Outcome {
    let key = format!("{prefix}a");
    let created = store.create(&key, value("1")).await?;
    let compacted = store.update(&key, created, value("2")).await?;
    store.compact(compacted).await?;
    store.compact(compacted).await?;
    store.compact(compacted - 1).await?;
    ensure_eq!(store.current_revision().await?, compacted, "the revision after the compactions");
    ensure_eq!(store.get(&key).await?, kv(&key, "2", compacted, created), "the key after the compactions");
    Ok(())
}

/// Compacting a revision the store has not reached fails with [`Error::FutureRevision`].
pub async fn compacting_a_revision_not_written_yet_fails_with_future_revision(
    store: &dyn Store,
    prefix: &str,
) -> Outcome {
    store.create(&format!("{prefix}a"), value("1")).await?;
    let future = store.current_revision().await? + 10;
    let result = store.compact(future).await;
    ensure!(
        matches!(result, Err(Error::FutureRevision { requested, .. }) if requested == future),
        "compacting future revision {future} answered {result:?}"
    );
    Ok(())
}

/// A reachable store answers ping, and its current revision is the revision of its last write.
pub async fn ping_succeeds_and_current_revision_is_the_last_writes_revision(
    store: &dyn Store,
    prefix: &str,
) -> Outcome {
    store.ping().await?;
    let created = store.create(&format!("{prefix}a"), value("1")).await?;
    ensure_eq!(store.current_revision().await?, created, "the current revision after a create");
    store.ping().await?;
    Ok(())
}

/// A value over etcd's request limit (1.5 MiB by default) fails with [`Error::TooLarge`] naming
/// the key and size, on create and on update, and writes nothing; one under it is stored.
pub async fn a_write_larger_than_etcd_accepts_fails_with_too_large_and_writes_nothing(
    store: &dyn Store,
    prefix: &str,
) -> Outcome {
    let key = format!("{prefix}big");
    let before = store.current_revision().await?;
    // Etcd refuses both: over 1.5 MiB itself, over 2 MiB already at its gRPC server.
    for size in [1600 * 1024, 3 * 1024 * 1024] {
        let result = store.create(&key, vec![b'x'; size]).await;
        ensure!(
            matches!(&result, Err(Error::TooLarge { key: k, size: s }) if *k == key && *s == size),
            "a create of {size} bytes answered {result:?}"
        );
    }
    let big = vec![b'x'; 1600 * 1024];
    ensure_eq!(store.current_revision().await?, before, "the revision after the refused create");
    let created = store.create(&key, vec![b'x'; 1024 * 1024]).await?;
    let result = store.update(&key, created, big).await;
    ensure!(matches!(&result, Err(Error::TooLarge { .. })), "an update to 1.6 MiB answered {result:?}");
    ensure_eq!(store.get(&key).await?.value.len(), 1024 * 1024, "the value after the refused update");
    Ok(())
}

/// `written_since` counts every key under the prefix and names exactly those whose last
/// write came after the revision, so an unchanged prefix shows an empty list and the same
/// count, and every kind of change since shows in one or the other.
pub async fn written_since_counts_the_keys_and_names_those_written_after_the_revision(
    store: &dyn Store,
    prefix: &str,
) -> Outcome {
    let key = |name: &str| format!("{prefix}{name}");
    for name in ["a", "b", "c"] {
        store.create(&key(name), value(name)).await?;
    }
    let since = store.current_revision().await?;
    // A write elsewhere moves the revision, not the prefix.
    store.create(&format!("{prefix}-other/x"), value("x")).await?;
    let quiet = store.written_since(prefix, since).await?;
    ensure_eq!((quiet.count, quiet.written.len()), (4, 1), "the prefix holds its own four keys, one written since");
    let own = store.written_since(&key("b"), since).await?;
    ensure_eq!((own.count, own.written), (1, Vec::<String>::new()), "a prefix untouched since");
    ensure_eq!(own.revision, store.current_revision().await?, "the summary's revision is the current one");
    let updated = store.update(&key("b"), store.get(&key("b")).await?.mod_revision, value("2")).await?;
    let after_update = store.written_since(&key("b"), since).await?;
    ensure_eq!((after_update.count, after_update.written), (1, vec![key("b")]), "an update since");
    store.delete(&key("b"), None).await?;
    let after_delete = store.written_since(&key("b"), since).await?;
    ensure_eq!((after_delete.count, after_delete.written.len()), (0, 0), "a delete since lowers the count");
    // A key created and deleted again since changes neither.
    store.create(&key("c2"), value("c2")).await?;
    store.delete(&key("c2"), None).await?;
    let net_zero = store.written_since(&key("c"), updated).await?;
    ensure_eq!((net_zero.count, net_zero.written.len()), (1, 0), "a key created and deleted since");
    Ok(())
}
