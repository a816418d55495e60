//! Recording Events about objects, as client-go's `tools/record` does: what a controller or
//! the kubelet did and why, for `kubectl describe` and `kubectl events --for`.
//!
//! [`EventRecorder::record`] never blocks and never fails: Events go to a background task
//! that writes core/v1 Events, and are dropped (with a debug log) when the buffer is full or
//! the apiserver refuses them; an Event is a hint, never a reason to fail a sync. On the way,
//! as client-go's `EventCorrelator`:
//! - **aggregation**: an Event identical to one recorded less than 10 minutes ago (same
//!   object, type, reason, message and source) is not written again: the first one's `count`
//!   goes up and its `lastTimestamp` moves (a PATCH), which is why `kubectl describe` shows
//!   `(x5 over 3m)`;
//! - **spam filtering**: each object gets a bucket of 25 Events from one source, refilled by
//!   one every 5 minutes; what does not fit is dropped, so a crash-looping object cannot flood
//!   the apiserver.
//!
//! Not done: client-go's "combined from similar events" merging of events whose messages
//! differ; events.k8s.io `series`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube_core::params::{Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::mpsc;

use crate::{Api, Client};

/// How many Events may wait to be written before new ones are dropped.
const BUFFER: usize = 1024;
/// How long an Event stays eligible for aggregation.
pub const AGGREGATION_WINDOW: Duration = Duration::from_secs(600);
/// Events an object may get from one source at once.
pub const SPAM_BURST: f64 = 25.0;
/// One more Event allowed per object every this long.
pub const SPAM_REFILL: Duration = Duration::from_secs(300);
/// Entries kept for aggregation and spam filtering before the oldest state is forgotten.
const MAX_TRACKED: usize = 4096;

/// `Normal` or `Warning`, the two Event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something may need attention.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// A reference to `object` for an Event's `involvedObject`.
pub fn object_reference<K>(object: &K) -> ObjectReference
where
    K: k8s_openapi::Resource + k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    let meta = object.metadata();
    ObjectReference {
        api_version: Some(K::API_VERSION.into()),
        kind: Some(K::KIND.into()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

/// One Event to write.
struct Pending {
    object: ObjectReference,
    type_: EventType,
    reason: String,
    action: String,
    message: String,
}

/// Records Events from one component (`source.component`, `reportingComponent`); cheap to
/// clone. The writer task stops when every clone is dropped.
#[derive(Clone, Debug)]
pub struct EventRecorder {
    sender: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.reason, self.object.name)
    }
}

impl EventRecorder {
    /// Starts the writer task (on the current tokio runtime). `component` names the source,
    /// e.g. `job-controller`; `host` is the node for the kubelet's Events.
    pub fn new(client: Client, component: &str, host: Option<&str>) -> EventRecorder {
        let (sender, receiver) = mpsc::channel(BUFFER);
        let writer = Writer {
            client,
            component: component.to_string(),
            host: host.map(str::to_string),
            correlator: Correlator::default(),
        };
        tokio::spawn(writer.run(receiver));
        EventRecorder { sender }
    }

    /// Records an Event about `object`: `reason` is a CamelCase word (`SuccessfulCreate`),
    /// `action` what was done (`Create`), `message` a sentence for people.
    pub fn record(
        &self,
        object: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        message: impl Into<String>,
    ) {
        let pending = Pending {
            object: object.clone(),
            type_,
            reason: reason.into(),
            action: action.into(),
            message: message.into(),
        };
        if self.sender.try_send(pending).is_err() {
            tracing::debug!(reason, "event dropped: the buffer is full");
        }
    }
}

/// What the correlator decides for an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    /// Write a new Event.
    Create,
    /// Bump the Event `name` (in its namespace) to `count`.
    Bump { name: String, count: i32 },
    /// Drop it: the object's spam bucket is empty.
    Drop,
}

/// The state behind aggregation and spam filtering.
#[derive(Default)]
struct Correlator {
    /// By aggregation key: the Event written, its count, when last seen.
    seen: HashMap<String, (String, i32, Instant)>,
    /// By object and source: tokens left, when last refilled.
    buckets: HashMap<String, (f64, Instant)>,
}

impl Correlator {
    fn judge(&mut self, aggregation_key: &str, spam_key: &str, now: Instant) -> Verdict {
        if self.buckets.len() > MAX_TRACKED {
            self.buckets.clear();
        }
        let (tokens, refilled) = self.buckets.entry(spam_key.to_string()).or_insert((SPAM_BURST, now));
        let gained = now.duration_since(*refilled).as_secs_f64() / SPAM_REFILL.as_secs_f64();
        *tokens = (*tokens + gained).min(SPAM_BURST);
        *refilled = now;
        if *tokens < 1.0 {
            return Verdict::Drop;
        }
        *tokens -= 1.0;
        match self.seen.get_mut(aggregation_key) {
            Some((name, count, last)) if now.duration_since(*last) < AGGREGATION_WINDOW => {
                *count += 1;
                *last = now;
                Verdict::Bump { name: name.clone(), count: *count }
            }
            _ => Verdict::Create,
        }
    }

    fn created(&mut self, aggregation_key: &str, name: &str, now: Instant) {
        if self.seen.len() > MAX_TRACKED {
            self.seen.retain(|_, (_, _, last)| now.duration_since(*last) < AGGREGATION_WINDOW);
        }
        self.seen.insert(aggregation_key.to_string(), (name.to_string(), 1, now));
    }
}

struct Writer {
    client: Client,
    component: String,
    host: Option<String>,
    correlator: Correlator,
}

impl Writer {
    async fn run(mut self, mut receiver: mpsc::Receiver<Pending>) {
        while let Some(pending) = receiver.recv().await {
            self.write(pending).await;
        }
    }

    async fn write(&mut self, pending: Pending) {
        let object = &pending.object;
        let namespace = object.namespace.clone().unwrap_or_else(|| "default".into());
        let object_key = format!(
            "{}/{}/{}/{}",
            object.kind.as_deref().unwrap_or_default(),
            namespace,
            object.name.as_deref().unwrap_or_default(),
            object.uid.as_deref().unwrap_or_default()
        );
        let spam_key = format!("{}/{object_key}", self.component);
        let aggregation_key = format!("{spam_key}/{}/{}/{}", pending.type_.as_str(), pending.reason, pending.message);
        let now = Time(jiff::Timestamp::now());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let verdict = self.correlator.judge(&aggregation_key, &spam_key, Instant::now());
        if let Verdict::Bump { name, count } = &verdict {
            let patch = json!({"count": count, "lastTimestamp": now});
            match api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => return,
                Err(error) if error.is_not_found() => {} // expired or deleted: write it anew
                Err(error) => {
                    tracing::debug!(%error, reason = pending.reason, "event dropped: the apiserver refused it");
                    return;
                }
            }
        }
        if verdict == Verdict::Drop {
            tracing::debug!(reason = pending.reason, object = object_key, "event dropped: too many for this object");
            return;
        }
        let name = format!("{}.{:x}", object.name.as_deref().unwrap_or("object"), unique_suffix());
        let event = Event {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(namespace), ..ObjectMeta::default() },
            involved_object: object.clone(),
            reason: Some(pending.reason.clone()),
            message: Some(pending.message.clone()),
            type_: Some(pending.type_.as_str().into()),
            action: Some(pending.action.clone()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource { component: Some(self.component.clone()), host: self.host.clone() }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone().unwrap_or_else(|| self.component.clone())),
            ..Event::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => self.correlator.created(&aggregation_key, &name, Instant::now()),
            Err(error) => tracing::debug!(%error, reason = pending.reason, "event dropped: the apiserver refused it"),
        }
    }
}

/// A number unique within this process and unlikely to repeat across processes: the time in
/// nanoseconds, bumped past the last value handed out (Kubernetes names Events
/// `<object>.<nanoseconds in hex>`).
fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = u64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(0);
    let previous = LAST.fetch_max(now, Ordering::AcqRel);
    if previous >= now { LAST.fetch_add(1, Ordering::AcqRel) + 1 } else { now }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_event_within_ten_minutes_is_counted_not_written_again() {
        let mut correlator = Correlator::default();
        let start = Instant::now();
        assert_eq!(correlator.judge("a", "obj", start), Verdict::Create);
        correlator.created("a", "pod.1", start);
        assert_eq!(correlator.judge("a", "obj", start), Verdict::Bump { name: "pod.1".into(), count: 2 });
        assert_eq!(correlator.judge("a", "obj", start), Verdict::Bump { name: "pod.1".into(), count: 3 });
        assert_eq!(correlator.judge("b", "obj", start), Verdict::Create, "another message is another event");
        let later = start + AGGREGATION_WINDOW + Duration::from_secs(1);
        assert_eq!(correlator.judge("a", "obj", later), Verdict::Create, "too old to aggregate");
    }

    #[test]
    fn an_object_gets_25_events_then_one_per_five_minutes() {
        let mut correlator = Correlator::default();
        let start = Instant::now();
        for i in 0..25 {
            assert_ne!(correlator.judge(&format!("m{i}"), "obj", start), Verdict::Drop, "event {i}");
        }
        assert_eq!(correlator.judge("m25", "obj", start), Verdict::Drop);
        assert_ne!(correlator.judge("x", "other", start), Verdict::Drop, "another object has its own bucket");
        assert_ne!(correlator.judge("m26", "obj", start + SPAM_REFILL), Verdict::Drop);
        assert_eq!(correlator.judge("m27", "obj", start + SPAM_REFILL), Verdict::Drop);
    }
}
