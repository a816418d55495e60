//! Everything the scheduler writes to the apiserver: bindings, the `PodScheduled` condition of
//! pods that do not fit, and Events.
//!
//! - **Binding**: `POST /api/v1/namespaces/<ns>/pods/<name>/binding` ([`Binder::bind`]). The
//!   apiserver sets `spec.nodeName` only if it is still empty, with a compare-and-swap on the
//!   pod's resourceVersion, so a pod is bound at most once however many schedulers race
//!   (the loser gets 409 Conflict).
//! - **Unschedulable**: `PodScheduled=False`, reason `Unschedulable`, with the "0/N nodes are
//!   available: ..." message, written through the `status` subresource
//!   ([`Binder::mark_unschedulable`]); skipped when the pod already says exactly that.
//! - **Events**: `Scheduled` ("Successfully assigned ns/pod to node") and `FailedScheduling`,
//!   core/v1 Events sent in the background by an [`EventRecorder`] so that the scheduling loop
//!   never waits for them.
//!
//! Not promised: every Event is delivered. Like client-go's event broadcaster, the recorder
//! drops events (and counts them in the log) when its buffer is full or the apiserver refuses
//! them; Events are for people, not for correctness.

use kube_core::ResourceExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use rkube_client::{Api, Client, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::SchedulerMetrics;

/// How many Events may wait to be sent before new ones are dropped.
const EVENT_BUFFER: usize = 4096;
/// How many Events are sent at once.
const EVENT_CONCURRENCY: usize = 8;

/// Sends core/v1 Events about pods in the background; cheap to clone.
#[derive(Clone, Debug)]
pub struct EventRecorder {
    sender: mpsc::Sender<Event>,
    component: String,
}

impl EventRecorder {
    /// Starts the background sender (it stops when `shutdown` is cancelled). `component` is
    /// the Event's `source.component` and `reportingComponent` (the scheduler's name).
    pub fn start(client: Client, component: &str, metrics: SchedulerMetrics, shutdown: CancellationToken) -> Self {
        let (sender, receiver) = mpsc::channel::<Event>(EVENT_BUFFER);
        let stream = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|event| (event, receiver))
        });
        let send_all = stream.for_each_concurrent(EVENT_CONCURRENCY, move |event| {
            let client = client.clone();
            let metrics = metrics.clone();
            async move {
                let namespace = event.metadata.namespace.clone().unwrap_or_else(|| "default".into());
                let api: Api<Event> = Api::namespaced(client, &namespace);
                metrics.api_calls.with_label_values(&["event"]).inc();
                if let Err(error) = api.create(&PostParams::default(), &event).await {
                    tracing::warn!(%error, reason = ?event.reason, "event dropped: the apiserver refused it");
                }
            }
        });
        tokio::spawn(async move {
            tokio::select! {
                _ = send_all => {}
                _ = shutdown.cancelled() => {}
            }
        });
        EventRecorder { sender, component: component.to_string() }
    }

    /// Queues an Event about `pod`; `type_` is `Normal` or `Warning`.
    pub fn record(&self, pod: &Pod, type_: &str, reason: &str, message: String) {
        let now = Time(jiff::Timestamp::now());
        let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let name = pod.name_any();
        let event = Event {
            metadata: ObjectMeta {
                // Kubernetes' event recorder names events `<object>.<unix nanos in hex>`.
                name: Some(format!("{name}.{:x}", unique_suffix())),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name),
                namespace: Some(namespace),
                uid: pod.metadata.uid.clone(),
                resource_version: pod.metadata.resource_version.clone(),
                ..ObjectReference::default()
            },
            reason: Some(reason.into()),
            message: Some(message),
            type_: Some(type_.into()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource { component: Some(self.component.clone()), host: None }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            action: Some(if reason == "Scheduled" { "Binding".into() } else { "Scheduling".into() }),
            ..Event::default()
        };
        if self.sender.try_send(event).is_err() {
            tracing::debug!(reason, "event dropped: buffer full");
        }
    }
}

/// A number unique within this process and unlikely to repeat across processes: the time in
/// nanoseconds, bumped past the last value handed out.
fn unique_suffix() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = u64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(0);
    let previous = LAST.fetch_max(now, Ordering::AcqRel);
    if previous >= now { LAST.fetch_add(1, Ordering::AcqRel) + 1 } else { now }
}

/// Writes bindings and pod conditions; see the module docs.
#[derive(Clone, Debug)]
pub struct Binder {
    client: Client,
    metrics: SchedulerMetrics,
}

/// The `PodScheduled` condition a pod carries now, as (status, reason, message).
fn scheduled_condition(pod: &Pod) -> Option<(String, Option<String>, Option<String>)> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let condition = conditions.iter().find(|c| c.type_ == "PodScheduled")?;
    Some((condition.status.clone(), condition.reason.clone(), condition.message.clone()))
}

impl Binder {
    /// A binder sending through `client`, counting calls in `metrics`.
    pub fn new(client: Client, metrics: SchedulerMetrics) -> Binder {
        Binder { client, metrics }
    }

    /// Binds `pod` to `node` through the `binding` subresource.
    pub async fn bind(&self, pod: &Pod, node: &str) -> rkube_client::Result<()> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        self.metrics.api_calls.with_label_values(&["bind"]).inc();
        Api::<Pod>::namespaced(self.client.clone(), namespace).bind(name, node).await
    }

    /// Sets `PodScheduled=False` (reason `Unschedulable`, `message`) on `pod` through the status
    /// subresource, unless the pod already carries exactly that. Other conditions are kept.
    pub async fn mark_unschedulable(&self, pod: &Arc<Pod>, message: &str) -> rkube_client::Result<()> {
        let wanted = ("False".to_string(), Some("Unschedulable".to_string()), Some(message.to_string()));
        if scheduled_condition(pod).as_ref() == Some(&wanted) {
            return Ok(());
        }
        let mut conditions: Vec<serde_json::Value> = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| c.type_ != "PodScheduled")
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect();
        conditions.push(json!({
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": jiff::Timestamp::now().to_string(),
        }));
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let patch = json!({"status": {"conditions": conditions}});
        self.metrics.api_calls.with_label_values(&["status"]).inc();
        Api::<Pod>::namespaced(self.client.clone(), namespace)
            .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(|_| ())
    }
}
