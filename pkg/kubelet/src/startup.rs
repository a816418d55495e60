//! Where a pod's start-up time goes: the pod start-up tracker.
//!
//! The Kubernetes kubelet keeps a `pod_startup_latency_tracker` that exports the start-up SLI
//! (`kubelet_pod_start_sli_duration_seconds`: from the pod's `creationTimestamp` to the watch
//! showing it running, less image pulls). This one does the same, and also times each step of
//! the start on the way (`kubelet_pod_start_step_duration_seconds{step}`, see [`Step`]), with a
//! tracing span per step (`pod_start_step`, field `step`) for a subscriber that wants them.
//!
//! What it keeps true (unit tests below):
//! - a pod is tracked from the first time the informer shows it, unless it has started
//!   already then (a restarted kubelet adopting running pods records nothing);
//! - steps are recorded only while the pod is tracked and not yet seen running: resyncs,
//!   restarts and deletions of a running pod add nothing to the start-up histograms;
//! - `kubelet_pod_start_duration_seconds` is observed once per pod, when the status that shows
//!   every container running is written; the SLI and the `watch` step once, when the informer
//!   shows that status;
//! - the time spent pulling images ([`PodStartTracker::pulled`]) is left out of the SLI.
//!
//! Not promised: `creationTimestamp` has whole seconds (as on Kubernetes), so the SLI is
//! rounded up by up to a second; the per-step and total figures use the kubelet's monotonic
//! clock and are exact.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use tracing::Instrument;

use crate::metrics::StartupMetrics;

/// One step of a pod's start-up, in the order a pod goes through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// From the informer showing the pod to its worker's first sync.
    Queue,
    /// Writing the pod's content volumes (configMap, secret, projected token).
    Volumes,
    /// The pod's network namespace and CNI ADD (loopback, bridge).
    Sandbox,
    /// Reading back what containerd already runs for the pod.
    Runs,
    /// Ensuring the image is there (a pull is timed apart) and resolving it.
    Image,
    /// Resolving the environment and writing the OCI spec, log file and resolv.conf.
    Spec,
    /// Preparing the container's writable snapshot.
    Snapshot,
    /// Creating the container record.
    Create,
    /// Creating the task: containerd's shim, `runc create`, the log driver.
    Task,
    /// Starting the task (`runc start`).
    Start,
    /// Reading the pod's status from the runtime and writing it to the API.
    Status,
    /// From the Running status being written to the kubelet's watch showing it.
    Watch,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 12] = [
        Step::Queue,
        Step::Volumes,
        Step::Sandbox,
        Step::Runs,
        Step::Image,
        Step::Spec,
        Step::Snapshot,
        Step::Create,
        Step::Task,
        Step::Start,
        Step::Status,
        Step::Watch,
    ];

    /// The step's label value.
    pub fn name(self) -> &'static str {
        match self {
            Step::Queue => "queue",
            Step::Volumes => "volumes",
            Step::Sandbox => "sandbox",
            Step::Runs => "runs",
            Step::Image => "image",
            Step::Spec => "spec",
            Step::Snapshot => "snapshot",
            Step::Create => "create",
            Step::Task => "task",
            Step::Start => "start",
            Step::Status => "status",
            Step::Watch => "watch",
        }
    }
}

/// A pod being started (or started and not yet forgotten).
#[derive(Debug)]
struct Tracked {
    /// When the informer first showed the pod.
    first_seen: Instant,
    /// The pod's `creationTimestamp`.
    created: Option<Timestamp>,
    /// Time spent pulling its images.
    pulling: Duration,
    /// Whether its worker's first sync has begun (the queue step is observed).
    synced: bool,
    /// When the status showing it started was written.
    running_written: Option<Instant>,
    /// Seen started through the watch: nothing more is recorded.
    done: bool,
}

/// Tracks pods from first sight to running (see the module docs). Shared by the pod workers,
/// the informer's handlers and the runtime.
pub struct PodStartTracker {
    metrics: StartupMetrics,
    /// By pod uid; an entry stays (as `done`) until [`PodStartTracker::forget`], so a pod is
    /// never tracked twice.
    pods: Mutex<HashMap<String, Tracked>>,
}

impl std::fmt::Debug for PodStartTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodStartTracker").finish_non_exhaustive()
    }
}

/// Whether `status` shows the pod started as Kubernetes' SLI counts it: phase `Running` and
/// every container running.
fn started(status: Option<&PodStatus>) -> bool {
    let Some(status) = status else { return false };
    status.phase.as_deref() == Some("Running")
        && status
            .container_statuses
            .iter()
            .flatten()
            .all(|container| container.state.as_ref().is_some_and(|state| state.running.is_some()))
}

impl PodStartTracker {
    /// A tracker observing into `metrics`.
    pub fn new(metrics: StartupMetrics) -> PodStartTracker {
        PodStartTracker { metrics, pods: Mutex::new(HashMap::new()) }
    }

    /// The runtime's operation histogram (`kubelet_runtime_operations_duration_seconds`).
    pub fn metrics(&self) -> &StartupMetrics {
        &self.metrics
    }

    fn pods(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracked>> {
        self.pods.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The informer shows `pod` at `now` (`wall` on the clock of `creationTimestamp`): starts
    /// tracking a pod seen for the first time that has not started; for a tracked pod whose
    /// status shows it started, records the SLI and the `watch` step, once.
    pub fn observe(&self, pod: &Pod, now: Instant, wall: Timestamp) {
        let Some(uid) = pod.metadata.uid.as_deref() else { return };
        let status = pod.status.as_ref();
        let mut pods = self.pods();
        let Some(tracked) = pods.get_mut(uid) else {
            let terminal = matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
            if !started(status) && !terminal && pod.metadata.deletion_timestamp.is_none() {
                let created = pod.metadata.creation_timestamp.as_ref().map(|time| time.0);
                let tracked = Tracked {
                    first_seen: now,
                    created,
                    pulling: Duration::ZERO,
                    synced: false,
                    running_written: None,
                    done: false,
                };
                pods.insert(uid.to_string(), tracked);
            }
            return;
        };
        if tracked.done || !started(status) {
            return;
        }
        tracked.done = true;
        if let Some(written) = tracked.running_written {
            self.observe_step(Step::Watch, now.saturating_duration_since(written));
        }
        if let Some(created) = tracked.created {
            let since_creation = wall.duration_since(created);
            let seconds = since_creation.as_secs_f64() - tracked.pulling.as_secs_f64();
            self.metrics.sli.observe(seconds.max(0.0));
        }
    }

    /// The worker of pod `uid` begins a sync at `now`: the first one observes the `queue` step.
    pub fn sync_started(&self, uid: &str, now: Instant) {
        let mut pods = self.pods();
        let Some(tracked) = pods.get_mut(uid).filter(|tracked| !tracked.done && !tracked.synced) else { return };
        tracked.synced = true;
        let waited = now.saturating_duration_since(tracked.first_seen);
        drop(pods);
        self.observe_step(Step::Queue, waited);
    }

    /// Whether pod `uid` is being started (tracked and not yet seen running).
    pub fn starting(&self, uid: &str) -> bool {
        self.pods().get(uid).is_some_and(|tracked| !tracked.done)
    }

    /// Step `step` of pod `uid` took `took`: observed if the pod is being started.
    pub fn step(&self, uid: &str, step: Step, took: Duration) {
        if self.starting(uid) {
            self.observe_step(step, took);
        }
    }

    fn observe_step(&self, step: Step, took: Duration) {
        self.metrics.steps.with_label_values(&[step.name()]).observe(took.as_secs_f64());
    }

    /// Pod `uid` spent `took` pulling an image (left out of its SLI).
    pub fn pulled(&self, uid: &str, took: Duration) {
        if let Some(tracked) = self.pods().get_mut(uid) {
            tracked.pulling += took;
        }
    }

    /// `status` was written for pod `uid` at `now`: the first one that shows it started
    /// observes `kubelet_pod_start_duration_seconds`.
    pub fn status_written(&self, uid: &str, status: &PodStatus, now: Instant) {
        if !started(Some(status)) {
            return;
        }
        let mut pods = self.pods();
        // The watch may show the write before the PUT's answer arrives: `done` does not matter.
        let Some(tracked) = pods.get_mut(uid).filter(|t| t.running_written.is_none()) else { return };
        tracked.running_written = Some(now);
        let took = now.saturating_duration_since(tracked.first_seen);
        drop(pods);
        self.metrics.total.observe(took.as_secs_f64());
    }

    /// Forgets pod `uid` (deleted).
    pub fn forget(&self, uid: &str) {
        self.pods().remove(uid);
    }

    /// Runs `work`, step `step` of pod `uid`, in a `pod_start_step` span, and observes how
    /// long it took if the pod was being started when it began.
    pub async fn timed<F: Future>(&self, uid: &str, step: Step, work: F) -> F::Output {
        let (began, starting) = (Instant::now(), self.starting(uid));
        let output = work.instrument(tracing::debug_span!("pod_start_step", step = step.name(), pod_uid = uid)).await;
        if starting {
            self.observe_step(step, began.elapsed());
        }
        output
    }
}

/// [`PodStartTracker::timed`] with a tracker that may be missing (then `work` just runs).
pub async fn timed<F: Future>(tracker: Option<&PodStartTracker>, uid: &str, step: Step, work: F) -> F::Output {
    match tracker {
        Some(tracker) => tracker.timed(uid, step, work).await,
        None => work.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateRunning, ContainerStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn tracker() -> PodStartTracker {
        PodStartTracker::new(StartupMetrics::new().expect("metrics"))
    }

    fn running_status() -> PodStatus {
        PodStatus {
            phase: Some("Running".into()),
            container_statuses: Some(vec![ContainerStatus {
                name: "main".into(),
                state: Some(ContainerState { running: Some(ContainerStateRunning::default()), ..Default::default() }),
                ..Default::default()
            }]),
            ..PodStatus::default()
        }
    }

    fn pod(created: Timestamp, status: Option<PodStatus>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                uid: Some("uid-1".into()),
                creation_timestamp: Some(Time(created)),
                ..ObjectMeta::default()
            },
            status,
            ..Pod::default()
        }
    }

    fn step_count(tracker: &PodStartTracker, step: Step) -> u64 {
        tracker.metrics.steps.with_label_values(&[step.name()]).get_sample_count()
    }

    fn step_sum(tracker: &PodStartTracker, step: Step) -> f64 {
        tracker.metrics.steps.with_label_values(&[step.name()]).get_sample_sum()
    }

    #[test]
    fn a_pod_is_timed_from_first_sight_to_running_seen_through_the_watch() {
        let tracker = tracker();
        let (t0, created) = (Instant::now(), Timestamp::from_second(1_000).expect("time"));
        tracker.observe(&pod(created, None), t0, created);
        tracker.sync_started("uid-1", t0 + Duration::from_millis(10));
        tracker.step("uid-1", Step::Task, Duration::from_millis(200));
        tracker.status_written("uid-1", &running_status(), t0 + Duration::from_millis(300));
        let seen = created.checked_add(jiff::SignedDuration::from_millis(500)).expect("time");
        tracker.observe(&pod(created, Some(running_status())), t0 + Duration::from_millis(500), seen);

        assert_eq!((step_count(&tracker, Step::Queue), step_count(&tracker, Step::Task)), (1, 1));
        assert!((step_sum(&tracker, Step::Queue) - 0.010).abs() < 1e-9);
        assert!((step_sum(&tracker, Step::Watch) - 0.200).abs() < 1e-9, "watch: written → observed");
        assert_eq!(tracker.metrics.total.get_sample_count(), 1);
        assert!((tracker.metrics.total.get_sample_sum() - 0.300).abs() < 1e-9, "total: first seen → written");
        assert!((tracker.metrics.sli.get_sample_sum() - 0.500).abs() < 1e-9, "sli: created → observed");
    }

    #[test]
    fn nothing_is_recorded_once_the_pod_was_seen_running() {
        let tracker = tracker();
        let (t0, created) = (Instant::now(), Timestamp::from_second(1_000).expect("time"));
        tracker.observe(&pod(created, None), t0, created);
        tracker.status_written("uid-1", &running_status(), t0);
        tracker.observe(&pod(created, Some(running_status())), t0, created);
        // A resync, a restart, another watch event: no further observation.
        tracker.sync_started("uid-1", t0);
        futures::executor::block_on(tracker.timed("uid-1", Step::Runs, async {}));
        assert_eq!(step_count(&tracker, Step::Runs), 0);
        tracker.step("uid-1", Step::Start, Duration::from_millis(5));
        tracker.status_written("uid-1", &running_status(), t0);
        tracker.observe(&pod(created, Some(running_status())), t0, created);
        assert_eq!(step_count(&tracker, Step::Start), 0);
        assert_eq!(step_count(&tracker, Step::Queue), 0, "the first sync came after the pod ran");
        assert_eq!((tracker.metrics.total.get_sample_count(), tracker.metrics.sli.get_sample_count()), (1, 1));
        assert!(!tracker.starting("uid-1"));
    }

    #[test]
    fn a_pod_running_when_first_seen_is_adopted_not_timed() {
        let tracker = tracker();
        let created = Timestamp::from_second(1_000).expect("time");
        tracker.observe(&pod(created, Some(running_status())), Instant::now(), created);
        tracker.step("uid-1", Step::Sandbox, Duration::from_millis(5));
        assert!(!tracker.starting("uid-1"));
        assert_eq!(step_count(&tracker, Step::Sandbox), 0);
        assert_eq!(tracker.metrics.sli.get_sample_count(), 0);
    }

    #[test]
    fn a_status_write_answered_after_the_watch_showed_it_still_counts() {
        let tracker = tracker();
        let (t0, created) = (Instant::now(), Timestamp::from_second(1_000).expect("time"));
        tracker.observe(&pod(created, None), t0, created);
        tracker.observe(&pod(created, Some(running_status())), t0 + Duration::from_millis(90), created);
        tracker.status_written("uid-1", &running_status(), t0 + Duration::from_millis(100));
        assert_eq!(tracker.metrics.total.get_sample_count(), 1);
        assert_eq!(step_count(&tracker, Step::Watch), 0, "no write seen before the watch: no watch step");
    }

    #[test]
    fn the_sli_leaves_out_image_pulls_and_a_pending_status_is_not_a_start() {
        let tracker = tracker();
        let (t0, created) = (Instant::now(), Timestamp::from_second(1_000).expect("time"));
        tracker.observe(&pod(created, None), t0, created);
        tracker.pulled("uid-1", Duration::from_secs(3));
        let pending = PodStatus { phase: Some("Pending".into()), ..PodStatus::default() };
        tracker.status_written("uid-1", &pending, t0);
        tracker.observe(&pod(created, Some(pending)), t0, created);
        assert_eq!(tracker.metrics.total.get_sample_count(), 0);
        let seen = Timestamp::from_second(1_004).expect("time");
        tracker.observe(&pod(created, Some(running_status())), t0, seen);
        assert!((tracker.metrics.sli.get_sample_sum() - 1.0).abs() < 1e-9, "4 s less 3 s of pulling");
        tracker.forget("uid-1");
        assert!(!tracker.starting("uid-1"));
    }

    #[test]
    fn every_step_has_its_own_label() {
        let names: std::collections::HashSet<&str> = Step::ALL.iter().map(|step| step.name()).collect();
        assert_eq!(names.len(), Step::ALL.len());
    }
}
