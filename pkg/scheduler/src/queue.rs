//! The scheduling queue: which pending pod the scheduler looks at next.
//!
//! A pod waiting to be scheduled (by its [`ObjectKey`]) is in exactly one of three places, as in
//! Kubernetes' `PriorityQueue`:
//! - **active**: ready to be tried, ordered by `spec.priority` (highest first), then by age
//!   (first added first);
//! - **backoff**: failed recently; moves to active when its back-off expires (1 s after the
//!   first failure, doubling per attempt, at most 10 s);
//! - **unschedulable**: no node fitted last time, and nothing has changed since. It moves out
//!   when something that could make it fit happens ([`SchedulingQueue::move_all_to_active`]: a
//!   node added or changed, a bound pod deleted), or after [`UNSCHEDULABLE_MAX_STAY`] at the
//!   latest.
//!
//! Besides these, a pod handed out by [`SchedulingQueue::pop`] is *in flight* until the
//! scheduler reports the outcome.
//!
//! What it keeps true (tests below):
//! - a key is queued at most once, however often it is added (adding again updates priority);
//! - a key is never handed out while it is in flight;
//! - if something that could help happened while a pod was in flight (a move request, or an
//!   update of the pod itself), a failure sends it to backoff instead of unschedulable, so the
//!   event is not lost (Kubernetes' "moveRequestCycle").
//!
//! Not promised: strict order between pods whose back-offs expire at the same moment. Cost: each
//! part is kept ordered (active by priority and age, backoff by when it ends, unschedulable by
//! since when), so an operation costs O(log n) in the pending pods, plus the pods it moves;
//! Kubernetes keeps a heap per sub-queue for the same reason.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus::{IntGauge, IntGaugeVec};
use rkube_informer::ObjectKey;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Back-off after the first failed attempt; doubles per attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Longest time a pod stays unschedulable without being retried (Kubernetes: 5 minutes).
pub const UNSCHEDULABLE_MAX_STAY: Duration = Duration::from_secs(300);

/// Where a queued key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    InFlight,
}

#[derive(Debug)]
struct Entry {
    priority: i32,
    /// Order of first arrival: lower is older.
    seq: u64,
    place: Place,
    attempts: u32,
    backoff_until: Option<Instant>,
    unschedulable_since: Option<Instant>,
    /// The move cycle when it was popped.
    popped_at_cycle: u64,
    /// Updated while in flight.
    updated_in_flight: bool,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<ObjectKey, Entry>,
    /// (highest priority first, oldest first, key) of every Active entry.
    active: BTreeSet<(Reverse<i32>, u64, ObjectKey)>,
    /// (back-off end, key) of every Backoff entry.
    backoff: BTreeSet<(Option<Instant>, ObjectKey)>,
    /// (unschedulable since, key) of every Unschedulable entry.
    unschedulable: BTreeSet<(Option<Instant>, ObjectKey)>,
    next_seq: u64,
    move_cycle: u64,
    closed: bool,
}

/// A pod handed out by [`SchedulingQueue::pop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Popped {
    /// The pod's key.
    pub key: ObjectKey,
    /// How many times it has been handed out, this one included.
    pub attempts: u32,
}

/// The scheduling queue; see the module docs. Shared between the informer handlers (which add
/// and move) and the one scheduling loop (which pops).
#[derive(Debug)]
pub struct SchedulingQueue {
    state: Mutex<State>,
    wake: Notify,
    /// The size gauges of active, backoff and unschedulable.
    gauges: Option<[IntGauge; 3]>,
}

fn backoff_for(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    INITIAL_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

impl State {
    /// Takes `key` out of the ordered set of its place (before its place or order changes).
    fn unindex(&mut self, key: &ObjectKey) {
        let Some(entry) = self.entries.get(key) else { return };
        match entry.place {
            Place::Active => self.active.remove(&(Reverse(entry.priority), entry.seq, key.clone())),
            Place::Backoff => self.backoff.remove(&(entry.backoff_until, key.clone())),
            Place::Unschedulable => self.unschedulable.remove(&(entry.unschedulable_since, key.clone())),
            Place::InFlight => false,
        };
    }

    /// Puts `key` into the ordered set of its place.
    fn index(&mut self, key: &ObjectKey) {
        let Some(entry) = self.entries.get(key) else { return };
        match entry.place {
            Place::Active => self.active.insert((Reverse(entry.priority), entry.seq, key.clone())),
            Place::Backoff => self.backoff.insert((entry.backoff_until, key.clone())),
            Place::Unschedulable => self.unschedulable.insert((entry.unschedulable_since, key.clone())),
            Place::InFlight => false,
        };
    }

    /// Changes `key`'s entry with `change`, keeping the ordered sets right.
    fn update(&mut self, key: &ObjectKey, change: impl FnOnce(&mut Entry)) {
        self.unindex(key);
        if let Some(entry) = self.entries.get_mut(key) {
            change(entry);
        }
        self.index(key);
    }

    fn make_active(&mut self, key: &ObjectKey) {
        self.update(key, |entry| {
            entry.place = Place::Active;
            entry.unschedulable_since = None;
        });
    }

    /// Backoff entries whose time has come, and unschedulable ones that waited too long, go
    /// to active.
    fn flush(&mut self, now: Instant) {
        while let Some((until, key)) = self.backoff.first().cloned()
            && until.is_none_or(|t| t <= now)
        {
            self.make_active(&key);
        }
        while let Some((since, key)) = self.unschedulable.first().cloned()
            && since.is_none_or(|t| t + UNSCHEDULABLE_MAX_STAY <= now)
        {
            self.make_active(&key);
        }
    }

    /// When the next backoff or unschedulable stay ends.
    fn next_due(&self) -> Option<Instant> {
        let backoff = self.backoff.first().and_then(|(until, _)| *until);
        let unschedulable =
            self.unschedulable.first().and_then(|(since, _)| *since).map(|t| t + UNSCHEDULABLE_MAX_STAY);
        backoff.into_iter().chain(unschedulable).min()
    }

    fn counts(&self) -> [usize; 3] {
        [self.active.len(), self.backoff.len(), self.unschedulable.len()]
    }
}

impl SchedulingQueue {
    /// An empty queue; `gauge` (labelled by `queue`), when given, tracks the size of each part.
    pub fn new(gauge: Option<IntGaugeVec>) -> SchedulingQueue {
        let gauges =
            gauge.map(|gauge| ["active", "backoff", "unschedulable"].map(|queue| gauge.with_label_values(&[queue])));
        SchedulingQueue { state: Mutex::new(State::default()), wake: Notify::new(), gauges }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, state: &State) {
        if let Some(gauges) = &self.gauges {
            for (gauge, n) in gauges.iter().zip(state.counts()) {
                gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }

    /// Adds a pending pod, or updates one already queued. `changed` says whether the pod's
    /// spec or labels changed (not just its status): an unschedulable pod that changed may fit
    /// now, so it is retried.
    pub fn add(&self, key: &ObjectKey, priority: i32, changed: bool) {
        let mut state = self.lock();
        let now = Instant::now();
        match state.entries.get(key).map(|e| e.place) {
            None => {
                let seq = state.next_seq;
                state.next_seq += 1;
                state.entries.insert(
                    key.clone(),
                    Entry {
                        priority,
                        seq,
                        place: Place::Active,
                        attempts: 0,
                        backoff_until: None,
                        unschedulable_since: None,
                        popped_at_cycle: 0,
                        updated_in_flight: false,
                    },
                );
                state.make_active(key);
            }
            Some(Place::Active) => state.update(key, |entry| entry.priority = priority),
            Some(Place::InFlight) => {
                if let Some(entry) = state.entries.get_mut(key) {
                    entry.priority = priority;
                    entry.updated_in_flight |= changed;
                }
            }
            Some(Place::Backoff) => {
                if let Some(entry) = state.entries.get_mut(key) {
                    entry.priority = priority;
                }
            }
            Some(Place::Unschedulable) => state.update(key, |entry| {
                entry.priority = priority;
                if changed {
                    entry.place =
                        if entry.backoff_until.is_some_and(|t| t > now) { Place::Backoff } else { Place::Active };
                    entry.unschedulable_since = None;
                }
            }),
        }
        self.publish(&state);
        drop(state);
        self.wake.notify_one();
    }

    /// Forgets a pod (deleted, or bound by someone else). An in-flight pod is forgotten too;
    /// the outcome reported for it later is ignored.
    pub fn delete(&self, key: &ObjectKey) {
        let mut state = self.lock();
        state.unindex(key);
        state.entries.remove(key);
        self.publish(&state);
    }

    /// Waits for the next pod to try and marks it in flight. `None` once the queue is closed.
    pub async fn pop(&self) -> Option<Popped> {
        loop {
            let wake = self.wake.notified();
            let next_due = {
                let mut state = self.lock();
                if state.closed {
                    return None;
                }
                state.flush(Instant::now());
                if let Some(first) = state.active.pop_first() {
                    let key = first.2;
                    let cycle = state.move_cycle;
                    let mut attempts = 0;
                    if let Some(entry) = state.entries.get_mut(&key) {
                        entry.place = Place::InFlight;
                        entry.attempts += 1;
                        entry.popped_at_cycle = cycle;
                        entry.updated_in_flight = false;
                        attempts = entry.attempts;
                    }
                    self.publish(&state);
                    return Some(Popped { key, attempts });
                }
                self.publish(&state);
                state.next_due()
            };
            match next_due {
                Some(due) => {
                    tokio::select! {
                        _ = wake => {}
                        _ = tokio::time::sleep_until(due) => {}
                    }
                }
                None => wake.await,
            }
        }
    }

    /// Reports that an in-flight pod was placed (assumed and sent to bind): it leaves the
    /// queue. If the binding fails, [`SchedulingQueue::requeue_after_error`] brings it back.
    pub fn done(&self, key: &ObjectKey) {
        let mut state = self.lock();
        if state.entries.get(key).is_some_and(|e| e.place == Place::InFlight) {
            state.entries.remove(key);
        }
        self.publish(&state);
    }

    /// Reports that no node fits an in-flight pod: it waits as unschedulable, or in backoff if
    /// something that might help happened meanwhile (see the module docs).
    pub fn unschedulable(&self, key: &ObjectKey) {
        let mut state = self.lock();
        let cycle = state.move_cycle;
        let now = Instant::now();
        if state.entries.get(key).is_some_and(|entry| entry.place == Place::InFlight) {
            state.update(key, |entry| {
                entry.backoff_until = Some(now + backoff_for(entry.attempts));
                if entry.updated_in_flight || entry.popped_at_cycle < cycle {
                    entry.place = Place::Backoff;
                } else {
                    entry.place = Place::Unschedulable;
                    entry.unschedulable_since = Some(now);
                }
            });
        }
        self.publish(&state);
        drop(state);
        self.wake.notify_one();
    }

    /// Brings a pod back after an error (a failed API call, a failed binding): it is retried
    /// after its back-off. `attempts` carries over the attempts made so far.
    pub fn requeue_after_error(&self, key: &ObjectKey, priority: i32, attempts: u32) {
        let mut state = self.lock();
        let now = Instant::now();
        state.unindex(key);
        let seq = match state.entries.get(key) {
            Some(entry) => entry.seq,
            None => {
                state.next_seq += 1;
                state.next_seq
            }
        };
        state.entries.insert(
            key.clone(),
            Entry {
                priority,
                seq,
                place: Place::Backoff,
                attempts,
                backoff_until: Some(now + backoff_for(attempts)),
                unschedulable_since: None,
                popped_at_cycle: 0,
                updated_in_flight: false,
            },
        );
        state.index(key);
        self.publish(&state);
        drop(state);
        self.wake.notify_one();
    }

    /// Something happened that may make unschedulable pods fit (a node added or changed, a
    /// bound pod deleted): every unschedulable pod moves to active, or to backoff if its
    /// back-off has not expired. Kubernetes: `MoveAllToActiveOrBackoffQueue`.
    pub fn move_all_to_active(&self) {
        let mut state = self.lock();
        state.move_cycle += 1;
        let now = Instant::now();
        let keys: Vec<ObjectKey> = std::mem::take(&mut state.unschedulable).into_iter().map(|(_, key)| key).collect();
        for key in keys {
            // Already out of the unschedulable set: `update` only places it anew.
            state.update(&key, |entry| {
                entry.place = if entry.backoff_until.is_some_and(|t| t > now) { Place::Backoff } else { Place::Active };
                entry.unschedulable_since = None;
            });
        }
        self.publish(&state);
        drop(state);
        self.wake.notify_one();
    }

    /// Sizes of (active, backoff, unschedulable), for metrics and tests.
    pub fn lengths(&self) -> (usize, usize, usize) {
        let [active, backoff, unschedulable] = self.lock().counts();
        (active, backoff, unschedulable)
    }

    /// Whether `key` is queued or in flight.
    pub fn contains(&self, key: &ObjectKey) -> bool {
        self.lock().entries.contains_key(key)
    }

    /// Stops the queue: `pop` returns `None` from now on.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of the pod `ns/<name>`.
    fn key(name: &str) -> ObjectKey {
        ObjectKey::new(Some("ns"), name)
    }

    /// The next key handed out, as text, or `None` if none comes within 50 ms.
    async fn pop_now(queue: &SchedulingQueue) -> Option<String> {
        tokio::time::timeout(Duration::from_millis(50), queue.pop()).await.ok().flatten().map(|p| p.key.to_string())
    }

    #[tokio::test]
    async fn higher_priority_first_then_oldest_first() {
        let queue = SchedulingQueue::new(None);
        queue.add(&key("old-low"), 0, false);
        queue.add(&key("new-high"), 10, false);
        queue.add(&key("young-low"), 0, false);
        assert_eq!(pop_now(&queue).await.as_deref(), Some("ns/new-high"));
        assert_eq!(pop_now(&queue).await.as_deref(), Some("ns/old-low"));
        assert_eq!(pop_now(&queue).await.as_deref(), Some("ns/young-low"));
        assert_eq!(pop_now(&queue).await, None);
    }

    #[tokio::test]
    async fn a_key_is_queued_once_and_never_handed_out_while_in_flight() {
        let queue = SchedulingQueue::new(None);
        queue.add(&key("a"), 0, false);
        queue.add(&key("a"), 0, true);
        assert_eq!(queue.lengths(), (1, 0, 0));
        assert_eq!(pop_now(&queue).await.as_deref(), Some("ns/a"));
        queue.add(&key("a"), 0, true);
        assert_eq!(pop_now(&queue).await, None, "in flight: not handed out again");
        queue.done(&key("a"));
        assert!(!queue.contains(&key("a")));
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_pods_wait_for_a_move_request() {
        let queue = SchedulingQueue::new(None);
        queue.add(&key("a"), 0, false);
        assert!(pop_now(&queue).await.is_some());
        queue.unschedulable(&key("a"));
        assert_eq!(queue.lengths(), (0, 0, 1));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(pop_now(&queue).await, None, "a status-only update or time alone does not retry it");
        queue.add(&key("a"), 0, false);
        assert_eq!(pop_now(&queue).await, None);
        queue.move_all_to_active();
        assert_eq!(pop_now(&queue).await.as_deref(), Some("ns/a"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_move_request_while_in_flight_sends_the_pod_to_backoff_not_unschedulable() {
        let queue = SchedulingQueue::new(None);
        queue.add(&key("a"), 0, false);
        assert!(pop_now(&queue).await.is_some());
        queue.move_all_to_active(); // e.g. a node was added during the attempt
        queue.unschedulable(&key("a"));
        assert_eq!(queue.lengths(), (0, 1, 0));
        tokio::time::advance(INITIAL_BACKOFF).await;
        assert_eq!(pop_now(&queue).await.as_deref(), Some("ns/a"));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_per_attempt_up_to_the_cap() {
        assert_eq!(backoff_for(1), Duration::from_secs(1));
        assert_eq!(backoff_for(2), Duration::from_secs(2));
        assert_eq!(backoff_for(4), Duration::from_secs(8));
        assert_eq!(backoff_for(40), MAX_BACKOFF);
        let queue = SchedulingQueue::new(None);
        queue.requeue_after_error(&key("a"), 0, 3);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(pop_now(&queue).await, None, "4 s back-off not over");
        tokio::time::advance(Duration::from_secs(1)).await;
        let popped = tokio::time::timeout(Duration::from_millis(50), queue.pop()).await.ok().flatten();
        assert_eq!(popped, Some(Popped { key: key("a"), attempts: 4 }));
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_pods_are_retried_after_the_longest_stay_anyway() {
        let queue = SchedulingQueue::new(None);
        queue.add(&key("a"), 0, false);
        assert!(pop_now(&queue).await.is_some());
        queue.unschedulable(&key("a"));
        tokio::time::advance(UNSCHEDULABLE_MAX_STAY).await;
        assert_eq!(pop_now(&queue).await.as_deref(), Some("ns/a"));
    }

    #[tokio::test]
    async fn deleted_pods_leave_and_a_late_outcome_is_ignored() {
        let queue = SchedulingQueue::new(None);
        queue.add(&key("a"), 0, false);
        assert!(pop_now(&queue).await.is_some());
        queue.delete(&key("a"));
        queue.unschedulable(&key("a"));
        assert_eq!(queue.lengths(), (0, 0, 0));
        assert!(!queue.contains(&key("a")));
    }
}
