//! Expectations: what a controller has asked the apiserver to do and not yet seen in its cache.
//!
//! After a ReplicaSet sync creates 5 pods, the pod informer may not have those pods yet. A
//! second sync that trusted the cache would count too few pods and create 5 more. So before it
//! writes, a controller records what it expects to see ([`Expectations::expect_creations`],
//! [`Expectations::expect_deletions`]); the informer's handlers tick them off
//! ([`Expectations::creation_observed`], [`Expectations::deletion_observed`]); and a sync only
//! changes the number of pods when [`Expectations::satisfied`] says the cache has caught up.
//! kube-controller-manager calls this `UIDTrackingControllerExpectations` (its pkg/controller/controller_utils.go).
//!
//! What it keeps true (tests below):
//! - an entry with creations or deletions outstanding is not satisfied until each is observed;
//! - a deletion is counted once per pod key, however many times it is observed (a pod first
//!   gets a `deletionTimestamp`, then is really deleted);
//! - an entry is satisfied anyway once its deadline passes (5 minutes, kube-controller-manager's
//!   `ExpectationsTimeout`): a safety valve for watch events that were lost;
//! - while an entry is unmet, [`Expectations::expires_in`] says how long until that deadline,
//!   never longer than the entry's TTL, so a sync that waits for the cache can ask to run
//!   again when the waiting ends (no event may ever come to wake it).
//!
//! One difference from kube-controller-manager: when a create fails in a way that leaves its outcome unknown
//! (the connection broke mid-request), kube-controller-manager lowers the expectation at once, which can
//! double-create if the pod was in fact written. Here [`Expectations::creation_uncertain`]
//! keeps the expectation but shortens the entry's deadline to [`UNCERTAIN_TTL`]: long enough
//! for a reconnecting informer to see the pod, short enough not to stall the controller.
//!
//! Not promised: anything across processes. A restarted controller starts with no
//! expectations and trusts its freshly listed cache.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rkube_informer::ObjectKey;

/// How long an entry may wait for its events before it counts as satisfied anyway
/// (kube-controller-manager's `ExpectationsTimeout`).
pub const EXPECTATIONS_TTL: Duration = Duration::from_secs(5 * 60);

/// The shortened deadline of an entry after a write whose outcome is unknown.
pub const UNCERTAIN_TTL: Duration = Duration::from_secs(15);

#[derive(Debug)]
struct Entry {
    /// Creations asked for and not yet seen.
    adds: i64,
    /// Keys of pods asked to be deleted and not yet seen going.
    deletes: HashSet<ObjectKey>,
    /// After this, the entry is satisfied whatever it still waits for.
    deadline: Instant,
}

/// Outstanding creations and deletions per controller key (e.g. a ReplicaSet's).
#[derive(Debug)]
pub struct Expectations {
    ttl: Duration,
    entries: Mutex<HashMap<ObjectKey, Entry>>,
}

impl Default for Expectations {
    fn default() -> Self {
        Expectations::new(EXPECTATIONS_TTL)
    }
}

impl Expectations {
    /// Expectations whose entries expire `ttl` after they are set.
    pub fn new(ttl: Duration) -> Self {
        Expectations { ttl, entries: Mutex::new(HashMap::new()) }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<ObjectKey, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the cache has caught up with every write recorded for `key`: nothing is
    /// outstanding, the entry expired, or there is no entry.
    pub fn satisfied(&self, key: &ObjectKey) -> bool {
        self.expires_in(key).is_none()
    }

    /// While the expectations for `key` are unmet, how long until they expire and count as
    /// satisfied anyway; `None` when they are satisfied already.
    ///
    /// A sync that skips work because of unmet expectations must come back after this long:
    /// the events it waits for may never arrive (a create whose outcome is unknown may never
    /// have happened), and then nothing else wakes its key.
    pub fn expires_in(&self, key: &ObjectKey) -> Option<Duration> {
        let entries = self.entries();
        let entry = entries.get(key)?;
        if entry.adds <= 0 && entry.deletes.is_empty() {
            return None;
        }
        let left = entry.deadline.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// Records that `count` pods are about to be created for `key` (replacing any old entry).
    /// Call it before sending the creates, so an informer event can never arrive first.
    pub fn expect_creations(&self, key: &ObjectKey, count: usize) {
        let adds = i64::try_from(count).unwrap_or(i64::MAX);
        self.entries()
            .insert(key.clone(), Entry { adds, deletes: HashSet::new(), deadline: Instant::now() + self.ttl });
    }

    /// Records that the pods `pod_keys` are about to be deleted for `key` (replacing any old
    /// entry).
    pub fn expect_deletions(&self, key: &ObjectKey, pod_keys: impl IntoIterator<Item = ObjectKey>) {
        self.entries().insert(
            key.clone(),
            Entry { adds: 0, deletes: pod_keys.into_iter().collect(), deadline: Instant::now() + self.ttl },
        );
    }

    /// One creation for `key` was seen in the cache, or will never be (the create failed).
    pub fn creation_observed(&self, key: &ObjectKey) {
        if let Some(entry) = self.entries().get_mut(key) {
            entry.adds -= 1;
        }
    }

    /// A create for `key` may or may not have happened: keep waiting for it, but no longer
    /// than [`UNCERTAIN_TTL`] from now.
    pub fn creation_uncertain(&self, key: &ObjectKey) {
        if let Some(entry) = self.entries().get_mut(key) {
            entry.deadline = entry.deadline.min(Instant::now() + UNCERTAIN_TTL);
        }
    }

    /// The pod `pod_key` was seen going (deletionTimestamp set, or deleted), or its delete
    /// failed. Counts only if `key` was waiting for that pod; later calls for it do nothing.
    pub fn deletion_observed(&self, key: &ObjectKey, pod_key: &ObjectKey) {
        if let Some(entry) = self.entries().get_mut(key) {
            entry.deletes.remove(pod_key);
        }
    }

    /// Forgets `key` (its controller was deleted), so a new one of the same name starts clean.
    pub fn forget(&self, key: &ObjectKey) {
        self.entries().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The controller key these tests expect for.
    fn rs() -> ObjectKey {
        ObjectKey::new(Some("ns"), "rs")
    }

    fn pod(name: &str) -> ObjectKey {
        ObjectKey::new(Some("ns"), name)
    }

    #[test]
    fn creations_are_outstanding_until_each_is_observed() {
        let expectations = Expectations::default();
        assert!(expectations.satisfied(&rs()), "no entry means satisfied");
        expectations.expect_creations(&rs(), 2);
        assert!(!expectations.satisfied(&rs()));
        expectations.creation_observed(&rs());
        assert!(!expectations.satisfied(&rs()));
        expectations.creation_observed(&rs());
        assert!(expectations.satisfied(&rs()));
    }

    #[test]
    fn a_deletion_counts_once_per_pod_however_often_it_is_observed() {
        let expectations = Expectations::default();
        expectations.expect_deletions(&rs(), [pod("a"), pod("b")]);
        expectations.deletion_observed(&rs(), &pod("a"));
        expectations.deletion_observed(&rs(), &pod("a"));
        assert!(!expectations.satisfied(&rs()), "ns/b is still expected to go");
        expectations.deletion_observed(&rs(), &pod("unrelated"));
        assert!(!expectations.satisfied(&rs()));
        expectations.deletion_observed(&rs(), &pod("b"));
        assert!(expectations.satisfied(&rs()));
    }

    #[test]
    fn an_entry_is_satisfied_after_its_ttl_even_with_events_missing() {
        let expectations = Expectations::new(Duration::from_millis(20));
        expectations.expect_creations(&rs(), 3);
        assert!(!expectations.satisfied(&rs()));
        std::thread::sleep(Duration::from_millis(40));
        assert!(expectations.satisfied(&rs()));
    }

    #[test]
    fn an_uncertain_creation_keeps_the_expectation_but_shortens_the_deadline() {
        let expectations = Expectations::default();
        expectations.expect_creations(&rs(), 1);
        expectations.creation_uncertain(&rs());
        assert!(!expectations.satisfied(&rs()), "the pod may still show up");
        let deadline = expectations.entries().get(&rs()).map(|entry| entry.deadline);
        assert!(deadline.is_some_and(|deadline| deadline <= Instant::now() + UNCERTAIN_TTL));
    }

    #[test]
    fn unmet_expectations_expire_no_later_than_their_ttl_and_met_ones_not_at_all() {
        let expectations = Expectations::default();
        assert_eq!(expectations.expires_in(&rs()), None, "no entry");
        expectations.expect_creations(&rs(), 2);
        let left = expectations.expires_in(&rs());
        assert!(left.is_some_and(|left| left <= EXPECTATIONS_TTL && left > EXPECTATIONS_TTL / 2), "{left:?}");
        expectations.creation_uncertain(&rs());
        let left = expectations.expires_in(&rs());
        assert!(left.is_some_and(|left| left <= UNCERTAIN_TTL), "an uncertain create shortens it: {left:?}");
        expectations.creation_observed(&rs());
        expectations.creation_observed(&rs());
        assert_eq!(expectations.expires_in(&rs()), None, "everything observed");
    }

    #[test]
    fn forgetting_a_key_starts_it_clean() {
        let expectations = Expectations::default();
        expectations.expect_creations(&rs(), 1);
        expectations.forget(&rs());
        assert!(expectations.satisfied(&rs()));
    }
}
