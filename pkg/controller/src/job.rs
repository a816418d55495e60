//! The Job controller: runs each Job's pods until enough of them succeed, or the Job fails.
//!
//! One sync of a Job key, judging from the informers' caches, as kube-controller-manager's
//! `pkg/controller/job/job_controller.go` does it:
//!
//! 1. **count finished pods exactly once** (finalizer tracking). Every pod the Job creates
//!    carries the finalizer `batch.kubernetes.io/job-tracking`, so it cannot vanish before it
//!    is counted. A pod that finished (`Succeeded`/`Failed`), or is being deleted (a failure,
//!    unless it succeeded), is first written into `status.uncountedTerminatedPods` by uid,
//!    then its finalizer is removed, then its uid moves from there into `succeeded`/`failed`.
//!    A controller killed at any point resumes from what is stored: a uid in
//!    `uncountedTerminatedPods` whose pod has lost its finalizer (or is gone) is counted, one
//!    whose pod still has it is finished first; a pod without the finalizer was counted.
//!    The pod failure policy decides on the way: `FailJob` fails the Job, `Ignore` does not
//!    count the failure, `Count` (and no matching rule) counts it.
//! 2. **decide**: the Job has failed when a `FailJob` rule matched, when more pods failed than
//!    `backoffLimit` (`BackoffLimitExceeded`) or when it ran longer than
//!    `activeDeadlineSeconds` (`DeadlineExceeded`): it gets `FailureTarget`. It has succeeded
//!    when `completions` pods succeeded (each index once, when `Indexed`), or, without
//!    `completions`, when one succeeded and none is left running: it gets
//!    `SuccessCriteriaMet`. Either way its remaining pods are deleted, and once none is left
//!    the terminal condition follows: `Failed`, or `Complete` with `completionTime`.
//! 3. **suspend**: a suspended Job deletes its running pods (they are not counted as
//!    failures), has `Suspended: True` and no `startTime`; resumed, it starts the clock again.
//! 4. **manage**: with [`Expectations`] satisfied, create pods up to `parallelism` (never
//!    more than the completions still missing), or delete the surplus. `Indexed` pods get
//!    their index (annotation and label `batch.kubernetes.io/job-completion-index`, hostname
//!    `<job>-<index>`, `JOB_COMPLETION_INDEX` in every container's environment) and the
//!    missing indexes are created lowest first. After failures, new pods wait 10 s × 2^(n-1)
//!    (at most 6 minutes) from the last failure this process counted.
//! 5. **status**: `active`, `ready`, `terminating`, `succeeded`, `failed`,
//!    `completedIndexes`, `startTime`, conditions, written only when changed, with the
//!    resourceVersion the decisions were made on (a conflict retries the sync).
//!
//! Not promised: orphan pods matching a Job's selector are not adopted; the back-off starts
//! from nothing after a controller restart; `backoffLimitPerIndex`, `successPolicy`,
//! `FailIndex` and elastic Indexed Jobs are not acted on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube_core::ResourceExt;
use prometheus::Registry;
use rkube_client::events::{EventRecorder, EventType, object_reference};
use rkube_client::{Api, Client, Patch, PatchParams, PostParams};
use rkube_informer::ObjectKey;
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::handler::{Deleted, HandlerFns};
use rkube_informer::store::{NAMESPACE_INDEX, Store};
use rkube_informer::workqueue::{RateLimiter, WorkQueue};
use serde_json::json;

use crate::Error;
use crate::controller_ref::{controller_of, new_controller_ref};
use crate::expectations::Expectations;
use crate::podcontrol::PodControl;
use crate::podutil::{deletion_order, is_ready};
use crate::worker::{Action, Syncer};

/// The finalizer that keeps a Job's pod until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The annotation and label holding an Indexed Job's pod's index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The environment variable holding an Indexed Job's pod's index.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// The first back-off after a failed pod (doubled per failure).
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// The longest back-off.
pub const BACKOFF_MAX: Duration = Duration::from_secs(360);
/// Most pods created or deleted in one sync.
const BURST: usize = 500;
const KIND: &str = "Job";
const API_VERSION: &str = "batch/v1";

/// The Job controller. Build it with [`JobController::new`], start the factory, then run
/// workers over [`JobController::queue`] with [`crate::worker::run_workers`].
pub struct JobController {
    client: Client,
    jobs: Store<Job>,
    pods: Store<Pod>,
    queue: WorkQueue<ObjectKey>,
    expectations: Arc<Expectations>,
    /// When this process last counted a failed pod of each Job (the back-off's start).
    last_failure: Mutex<HashMap<ObjectKey, Timestamp>>,
    /// The Job's story: completed, failed, suspended.
    events: EventRecorder,
    /// Creates and deletes the pods, with expectations and Events.
    pod_control: PodControl,
}

/// Turns pod events into the keys of the Jobs that own them.
struct PodEventHandler {
    jobs: Store<Job>,
    queue: WorkQueue<ObjectKey>,
    expectations: Arc<Expectations>,
}

impl PodEventHandler {
    /// The key of the Job controlling the pod. A pod whose Job is gone (or was replaced under
    /// the same name) still names its key, so the sync releases its tracking finalizer.
    fn owner_of(&self, pod: &Pod) -> Option<ObjectKey> {
        let owner = controller_of(&pod.metadata)?;
        if owner.kind != KIND || !owner.api_version.starts_with("batch/") {
            return None;
        }
        let key = ObjectKey::new(pod.metadata.namespace.as_deref(), &owner.name);
        let current = self.jobs.get(&key).is_some_and(|job| job.metadata.uid.as_deref() == Some(owner.uid.as_str()));
        (current || has_finalizer(pod)).then_some(key)
    }

    fn add_pod(&self, pod: &Arc<Pod>) {
        if let Some(key) = self.owner_of(pod) {
            if pod.metadata.deletion_timestamp.is_some() {
                self.expectations.deletion_observed(&key, &ObjectKey::of(pod.as_ref()));
            } else {
                self.expectations.creation_observed(&key);
            }
            self.queue.add(key);
        }
    }

    fn update_pod(&self, old: &Arc<Pod>, new: &Arc<Pod>) {
        if old.metadata.resource_version == new.metadata.resource_version {
            return;
        }
        if let Some(key) = self.owner_of(new) {
            if new.metadata.deletion_timestamp.is_some() && old.metadata.deletion_timestamp.is_none() {
                self.expectations.deletion_observed(&key, &ObjectKey::of(new.as_ref()));
            }
            self.queue.add(key);
        }
    }

    fn delete_pod(&self, pod: &Arc<Pod>) {
        if let Some(key) = self.owner_of(pod) {
            self.expectations.deletion_observed(&key, &ObjectKey::of(pod.as_ref()));
            self.queue.add(key);
        }
    }
}

impl JobController {
    /// Registers handlers on the factory's Job and Pod informers and a work queue named `job`.
    pub fn new(factory: &SharedInformerFactory, client: Client, registry: Option<&Registry>) -> Arc<Self> {
        let jobs = factory.informer::<Job>(None);
        let pods = factory.informer::<Pod>(None);
        let events = EventRecorder::new(client.clone(), "job-controller", None);
        let expectations = Arc::new(Expectations::default());
        let controller = Arc::new(JobController {
            pod_control: PodControl::new(client.clone(), Arc::clone(&expectations), events.clone()),
            events,
            client,
            jobs: jobs.store(),
            pods: pods.store(),
            queue: WorkQueue::new("job", RateLimiter::default(), registry),
            expectations,
            last_failure: Mutex::new(HashMap::new()),
        });
        let (q1, q2, q3) = (controller.queue(), controller.queue(), controller.queue());
        let (e2, e3) = (Arc::clone(&controller.expectations), Arc::clone(&controller.expectations));
        jobs.add_handler(
            HandlerFns::new()
                .on_add(move |job: &Arc<Job>| q1.add(ObjectKey::of(job.as_ref())))
                .on_update(move |old: &Arc<Job>, new: &Arc<Job>| {
                    if old.metadata.uid != new.metadata.uid {
                        e2.forget(&ObjectKey::of(old.as_ref()));
                    }
                    q2.add(ObjectKey::of(new.as_ref()));
                })
                .on_delete(move |deleted: Deleted<Job>| {
                    let key = ObjectKey::of(deleted.object().as_ref());
                    e3.forget(&key);
                    q3.add(key);
                }),
        );
        let handler = Arc::new(PodEventHandler {
            jobs: controller.jobs.clone(),
            queue: controller.queue(),
            expectations: Arc::clone(&controller.expectations),
        });
        let (on_add, on_update, on_delete) = (Arc::clone(&handler), Arc::clone(&handler), handler);
        pods.add_handler(
            HandlerFns::new()
                .on_add(move |pod: &Arc<Pod>| on_add.add_pod(pod))
                .on_update(move |old: &Arc<Pod>, new: &Arc<Pod>| on_update.update_pod(old, new))
                .on_delete(move |deleted: Deleted<Pod>| on_delete.delete_pod(deleted.object())),
        );
        controller
    }

    /// The controller's work queue of Job keys.
    pub fn queue(&self) -> WorkQueue<ObjectKey> {
        self.queue.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// The pure part: what a Job's pods mean.
// ---------------------------------------------------------------------------------------------

/// What became of a finished pod, for the Job's counts.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Succeeded,
    Failed,
    /// A failure whose `FailIndex` rule fails the pod's index at once (with
    /// `backoffLimitPerIndex`).
    FailedIndex,
    /// A failure the pod failure policy ignores, or a pod deleted while the Job is suspended.
    Ignored,
}

/// Whether the pod ran to its end (`Succeeded` or `Failed`).
fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER)
}

/// A pod that still runs: neither terminal nor being deleted.
fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// A pod being deleted that has not reached its end yet.
fn is_terminating(pod: &Pod) -> bool {
    !is_terminal(pod) && pod.metadata.deletion_timestamp.is_some()
}

/// The pod's completion index, when it has a valid one.
fn index_of(pod: &Pod) -> Option<i32> {
    let text = pod.metadata.annotations.as_ref()?.get(COMPLETION_INDEX)?;
    text.parse().ok().filter(|i| *i >= 0)
}

fn condition_true(conditions: &[JobCondition], kind: &str) -> Option<JobCondition> {
    conditions.iter().find(|c| c.type_ == kind && c.status == "True").cloned()
}

/// How the pod failure policy judges a failed pod: the action of the first rule that
/// matches, with the message a `FailJob` gives.
fn failure_policy_action(job: &Job, pod: &Pod) -> Option<(String, String)> {
    let policy = job.spec.as_ref()?.pod_failure_policy.as_ref()?;
    let status = pod.status.as_ref();
    for (i, rule) in policy.rules.iter().enumerate() {
        if let Some(codes) = &rule.on_exit_codes {
            for container in status.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten() {
                if codes.container_name.as_ref().is_some_and(|name| *name != container.name) {
                    continue;
                }
                let Some(terminated) = container.state.as_ref().and_then(|s| s.terminated.as_ref()) else { continue };
                let code = terminated.exit_code;
                let listed = codes.values.contains(&code);
                let matches = if codes.operator == "In" { listed } else { !listed && code != 0 };
                if matches {
                    let message = format!(
                        "Container {} for pod {}/{} failed with exit code {code} matching {} rule at index {i}",
                        container.name,
                        pod.namespace().unwrap_or_default(),
                        pod.name_any(),
                        rule.action
                    );
                    return Some((rule.action.clone(), message));
                }
            }
        }
        for pattern in rule.on_pod_conditions.iter().flatten() {
            let wanted = pattern.status.as_deref().unwrap_or("True");
            let conditions = status.and_then(|s| s.conditions.as_ref());
            if conditions.into_iter().flatten().any(|c| c.type_ == pattern.type_ && c.status == wanted) {
                let message = format!(
                    "Pod {}/{} has condition {} matching {} rule at index {i}",
                    pod.namespace().unwrap_or_default(),
                    pod.name_any(),
                    pattern.type_,
                    rule.action
                );
                return Some((rule.action.clone(), message));
            }
        }
    }
    None
}

/// What a finished (or deleted) pod counts as.
fn outcome_of(job: &Job, pod: &Pod, suspended: bool) -> (Outcome, Option<String>) {
    if phase(pod) == "Succeeded" {
        return (Outcome::Succeeded, None);
    }
    if suspended && phase(pod) != "Failed" {
        return (Outcome::Ignored, None);
    }
    match failure_policy_action(job, pod) {
        Some((action, _)) if action == "Ignore" => (Outcome::Ignored, None),
        Some((action, message)) if action == "FailJob" => (Outcome::Failed, Some(message)),
        Some((action, _)) if action == "FailIndex" => (Outcome::FailedIndex, None),
        _ => (Outcome::Failed, None),
    }
}

/// Indexes as Kubernetes writes `completedIndexes`: ascending, each run of consecutive
/// indexes as `first-last`, e.g. `1,3-5,7-8`.
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if end == start { start.to_string() } else { format!("{start}-{end}") });
    }
    parts.join(",")
}

/// Reads `completedIndexes` (`1,3-5,7`); what does not parse is skipped.
pub fn parse_indexes(text: &str) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    set.extend(a..=b);
                }
            }
            None => {
                if let Ok(i) = part.parse() {
                    set.insert(i);
                }
            }
        }
    }
    set
}

/// The back-off before a new pod after `failed` failures, the last at `last`.
/// The index of the first `successPolicy` rule the succeeded indexes `completed` meet: all of
/// its `succeededIndexes`, or `succeededCount` of them (of all indexes without a list).
fn matched_rule(policy: &k8s_openapi::api::batch::v1::SuccessPolicy, completed: &BTreeSet<i32>) -> Option<usize> {
    policy.rules.iter().position(|rule| {
        let wanted = rule.succeeded_indexes.as_deref().map(parse_indexes);
        let matched = wanted.as_ref().map_or(completed.len(), |wanted| wanted.intersection(completed).count());
        match (rule.succeeded_count, &wanted) {
            (Some(count), _) => usize::try_from(count).is_ok_and(|count| matched >= count),
            (None, Some(wanted)) => !wanted.is_empty() && matched == wanted.len(),
            (None, None) => false,
        }
    })
}

fn backoff_remaining(failed: i32, last: Option<Timestamp>, now: Timestamp) -> Option<Duration> {
    let last = last?;
    if failed <= 0 {
        return None;
    }
    let exponent = u32::try_from(failed - 1).unwrap_or(0).min(10);
    let delay = BACKOFF_BASE.saturating_mul(2u32.saturating_pow(exponent)).min(BACKOFF_MAX);
    let elapsed = Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO);
    delay.checked_sub(elapsed).filter(|d| !d.is_zero())
}

/// A condition of `kind`, `True`, at `now`.
fn condition(kind: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets `new` in `conditions`, replacing one of its type (keeping the transition time when the
/// status did not change).
fn set_condition(conditions: &mut Vec<JobCondition>, new: JobCondition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) if existing.status == new.status && existing.reason == new.reason => {}
        Some(existing) => *existing = new,
        None => conditions.push(new),
    }
}

/// The pods a Job wants created now, as their indexes (`None` for a NonIndexed pod), and how
/// many of its active pods to delete.
fn pod_changes(job: &Job, active: &[Arc<Pod>], succeeded: i32, completed: &BTreeSet<i32>) -> (Vec<Option<i32>>, usize) {
    let Some(spec) = job.spec.as_ref() else { return (Vec::new(), 0) };
    let parallelism = usize::try_from(spec.parallelism.unwrap_or(1)).unwrap_or(0);
    let active_count = active.len();
    if spec.completion_mode.as_deref() == Some("Indexed") {
        let completions = spec.completions.unwrap_or(0);
        let running: BTreeSet<i32> = active.iter().filter_map(|pod| index_of(pod)).collect();
        let missing = usize::try_from(completions).unwrap_or(0).saturating_sub(completed.len());
        let want = parallelism.min(missing);
        if active_count > want {
            return (Vec::new(), active_count - want);
        }
        let pending = (0..completions).filter(|i| !completed.contains(i) && !running.contains(i));
        let create: Vec<Option<i32>> = pending.take((want - active_count).min(BURST)).map(Some).collect();
        return (create, 0);
    }
    let want = match spec.completions {
        Some(completions) => parallelism.min(usize::try_from(completions - succeeded).unwrap_or(0)),
        // Work-queue Jobs: once one pod succeeded, no new ones; the rest finish on their own.
        None if succeeded > 0 => return (Vec::new(), 0),
        None => parallelism,
    };
    if active_count > want {
        (Vec::new(), (active_count - want).min(BURST))
    } else {
        (vec![None; (want - active_count).min(BURST)], 0)
    }
}

/// The pod a Job creates for `index` (or a NonIndexed one): its template, named
/// `<job>-[<index>-]<random>`, with the tracking finalizer, controlled by the Job.
pub fn pod_for(job: &Job, index: Option<i32>) -> Pod {
    let spec = job.spec.clone().unwrap_or_default();
    let template = spec.template;
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    let mut pod_spec = template.spec.unwrap_or_default();
    let name = job.name_any();
    let mut generate_name = format!("{name}-");
    if let Some(index) = index {
        labels.insert(COMPLETION_INDEX.into(), index.to_string());
        annotations.insert(COMPLETION_INDEX.into(), index.to_string());
        generate_name = format!("{name}-{index}-");
        if pod_spec.hostname.as_deref().is_none_or(str::is_empty) {
            pod_spec.hostname = Some(format!("{name}-{index}"));
        }
        let env = EnvVar {
            name: COMPLETION_INDEX_ENV.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: Some("v1".into()),
                    field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                }),
                ..EnvVarSource::default()
            }),
        };
        for container in pod_spec.containers.iter_mut().chain(pod_spec.init_containers.iter_mut().flatten()) {
            let vars = container.env.get_or_insert_with(Vec::new);
            if !vars.iter().any(|v| v.name == COMPLETION_INDEX_ENV) {
                vars.push(env.clone());
            }
        }
    }
    let mut finalizers = meta.finalizers.unwrap_or_default();
    finalizers.push(TRACKING_FINALIZER.into());
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![new_controller_ref(API_VERSION, KIND, &job.metadata)]),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

/// The annotation that carries how many earlier pods of an index failed (with
/// `backoffLimitPerIndex`).
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";

/// How many times each index has failed so far, from its pods: the count a pod was made with
/// plus one if it failed (a failure the policy ignores does not count).
fn index_failures(job: &Job, pods: &[Arc<Pod>]) -> BTreeMap<i32, i32> {
    let mut failures = BTreeMap::new();
    for pod in pods {
        let Some(index) = index_of(pod) else { continue };
        let before = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(INDEX_FAILURE_COUNT))
            .and_then(|c| c.parse::<i32>().ok())
            .unwrap_or(0);
        let failed = phase(pod) == "Failed" && !matches!(outcome_of(job, pod, false).0, Outcome::Ignored);
        let count = before + i32::from(failed);
        let entry = failures.entry(index).or_insert(0);
        *entry = (*entry).max(count);
    }
    failures
}

/// The counts of a Job's status once `uncounted` is folded in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Tally {
    succeeded: Vec<String>,
    failed: Vec<String>,
}

fn uncounted(status: &JobStatus) -> Tally {
    let u = status.uncounted_terminated_pods.clone().unwrap_or_default();
    Tally { succeeded: u.succeeded.unwrap_or_default(), failed: u.failed.unwrap_or_default() }
}

fn with_uncounted(status: &mut JobStatus, tally: &Tally) {
    status.uncounted_terminated_pods =
        Some(UncountedTerminatedPods { succeeded: Some(tally.succeeded.clone()), failed: Some(tally.failed.clone()) });
}

// ---------------------------------------------------------------------------------------------
// The sync.
// ---------------------------------------------------------------------------------------------

impl Syncer for JobController {
    type Key = ObjectKey;

    async fn sync(&self, key: &ObjectKey) -> Result<Action, Error> {
        let namespace = key.namespace().unwrap_or_default().to_string();
        let job = self.jobs.get(key);
        let uid = job.as_ref().and_then(|job| job.uid()).unwrap_or_default();
        // Pods of a Job of this name that is gone (deleted, or replaced by a new one) keep
        // their tracking finalizer until released here: nobody will count them.
        let (pods, orphans): (Vec<Arc<Pod>>, Vec<Arc<Pod>>) = self
            .pods
            .by_index(NAMESPACE_INDEX, &namespace)?
            .into_iter()
            .filter(|pod| {
                controller_of(&pod.metadata).is_some_and(|owner| owner.kind == KIND && owner.name == key.name())
            })
            .partition(|pod| controller_of(&pod.metadata).is_some_and(|owner| owner.uid == uid));
        let orphans: Vec<Arc<Pod>> = orphans.into_iter().filter(|pod| has_finalizer(pod)).collect();
        if !orphans.is_empty() {
            self.release(&namespace, &orphans).await?;
        }
        let Some(job) = job else {
            self.expectations.forget(key);
            self.last_failure.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
            return Ok(Action::await_change());
        };
        let Some(spec) = job.spec.clone() else { return Ok(Action::await_change()) };
        let now = Timestamp::now();
        let mut current: Job = (*job).clone();
        let original = job.status.clone().unwrap_or_default();
        let mut status = original.clone();
        let indexed = spec.completion_mode.as_deref() == Some("Indexed");
        let suspended = spec.suspend == Some(true);
        let mut conditions = status.conditions.clone().unwrap_or_default();
        let finished =
            condition_true(&conditions, "Complete").is_some() || condition_true(&conditions, "Failed").is_some();
        let mut completed = parse_indexes(status.completed_indexes.as_deref().unwrap_or_default());
        let per_index_limit = spec.backoff_limit_per_index.filter(|_| indexed);
        let mut failed_indexes = parse_indexes(status.failed_indexes.as_deref().unwrap_or_default());

        // 1. Count. (a) uids already recorded whose pods lost the finalizer (or are gone).
        let mut tally = uncounted(&status);
        let by_uid: HashMap<String, &Arc<Pod>> = pods.iter().map(|pod| (pod.uid().unwrap_or_default(), pod)).collect();
        let settled = |uid: &String| by_uid.get(uid).is_none_or(|pod| !has_finalizer(pod));
        let (done_ok, still_ok): (Vec<String>, Vec<String>) = tally.succeeded.iter().cloned().partition(settled);
        let (done_failed, still_failed): (Vec<String>, Vec<String>) = tally.failed.iter().cloned().partition(settled);
        status.succeeded = Some(status.succeeded.unwrap_or(0) + count(&done_ok));
        status.failed = Some(status.failed.unwrap_or(0) + count(&done_failed));
        tally = Tally { succeeded: still_ok, failed: still_failed };
        // (b) newly finished pods, recorded before their finalizer goes.
        let mut fail_job_message = None;
        let mut newly_failed = false;
        let mut release: Vec<Arc<Pod>> = Vec::new();
        for pod in &pods {
            if !has_finalizer(pod) || !(is_terminal(pod) || pod.metadata.deletion_timestamp.is_some() || finished) {
                continue;
            }
            release.push(Arc::clone(pod));
            let pod_uid = pod.uid().unwrap_or_default();
            if tally.succeeded.contains(&pod_uid) || tally.failed.contains(&pod_uid) || finished {
                continue;
            }
            match outcome_of(&job, pod, suspended) {
                (Outcome::Succeeded, _) => {
                    if indexed {
                        match index_of(pod) {
                            Some(i) if i < spec.completions.unwrap_or(0) && completed.insert(i) => {}
                            _ => continue, // a second pod of a completed index, or no index
                        }
                    }
                    tally.succeeded.push(pod_uid);
                }
                (outcome @ (Outcome::Failed | Outcome::FailedIndex), message) => {
                    if let Some(message) = message {
                        fail_job_message.get_or_insert(message);
                    }
                    if let (Some(limit), Some(index)) = (per_index_limit, index_of(pod)) {
                        let failures =
                            index_failures(&job, std::slice::from_ref(pod)).get(&index).copied().unwrap_or(1);
                        if matches!(outcome, Outcome::FailedIndex) || failures > limit {
                            failed_indexes.insert(index);
                        }
                    }
                    tally.failed.push(pod_uid);
                    newly_failed = true;
                }
                (Outcome::Ignored, _) => {}
            }
        }
        if newly_failed {
            self.last_failure.lock().unwrap_or_else(PoisonError::into_inner).insert(key.clone(), now);
        }
        let total_succeeded = status.succeeded.unwrap_or(0) + count(&tally.succeeded);
        let total_failed = status.failed.unwrap_or(0) + count(&tally.failed);
        if let Some(message) = &fail_job_message
            && condition_true(&conditions, "FailureTarget").is_none()
        {
            set_condition(&mut conditions, condition("FailureTarget", "True", "PodFailurePolicy", message, now));
        }
        if indexed {
            status.completed_indexes = Some(format_indexes(&completed));
        }
        if per_index_limit.is_some() {
            status.failed_indexes = Some(format_indexes(&failed_indexes));
        }
        let recorded = uncounted(&original);
        let conditions_changed = !conditions.is_empty() && status.conditions.as_ref() != Some(&conditions);
        let failed_indexes_changed = status.failed_indexes != original.failed_indexes;
        if tally != recorded || conditions_changed || failed_indexes_changed {
            // Phase one: what is about to be counted is stored before any finalizer goes.
            with_uncounted(&mut status, &tally);
            status.conditions = Some(conditions.clone());
            status = self.write_status(&mut current, status).await?;
        }
        // Phase two: finalizers off; what was released is counted.
        let released = self.release(&namespace, &release).await?;
        let released_uids: BTreeSet<String> = released.iter().cloned().collect();
        let (ok_now, ok_later): (Vec<String>, Vec<String>) =
            tally.succeeded.iter().cloned().partition(|u| released_uids.contains(u));
        let (failed_now, failed_later): (Vec<String>, Vec<String>) =
            tally.failed.iter().cloned().partition(|u| released_uids.contains(u));
        status.succeeded = Some(status.succeeded.unwrap_or(0) + count(&ok_now));
        status.failed = Some(status.failed.unwrap_or(0) + count(&failed_now));
        tally = Tally { succeeded: ok_later, failed: failed_later };
        with_uncounted(&mut status, &tally);

        let active: Vec<Arc<Pod>> = pods.iter().filter(|pod| is_active(pod)).cloned().collect();
        let terminating = pods.iter().filter(|pod| is_terminating(pod)).count();
        status.active = Some(count(&active));
        status.ready = Some(count(&active.iter().filter(|pod| is_ready(pod)).collect::<Vec<_>>()));
        status.terminating = Some(i32::try_from(terminating).unwrap_or(i32::MAX));
        let mut action = Action::await_change();
        if finished {
            status.conditions = Some(conditions);
            self.write_if_changed(&mut current, status).await?;
            return Ok(action);
        }

        // 2. Decide.
        let deadline = spec
            .active_deadline_seconds
            .zip(status.start_time.as_ref())
            .map(|(seconds, start)| start.0.checked_add(jiff::SignedDuration::from_secs(seconds)).unwrap_or(start.0));
        let mut failure = condition_true(&conditions, "FailureTarget");
        let mut success = condition_true(&conditions, "SuccessCriteriaMet");
        if failure.is_none() && success.is_none() && !suspended {
            let backoff_limit = spec.backoff_limit.unwrap_or(6);
            let all_indexes_done = per_index_limit.is_some()
                && (0..spec.completions.unwrap_or(0)).all(|i| completed.contains(&i) || failed_indexes.contains(&i));
            let verdict = if spec
                .max_failed_indexes
                .filter(|_| per_index_limit.is_some())
                .is_some_and(|max| i32::try_from(failed_indexes.len()).unwrap_or(i32::MAX) > max)
            {
                Some(("MaxFailedIndexesExceeded", "Job has exceeded the specified maximal number of failed indexes"))
            } else if all_indexes_done && !failed_indexes.is_empty() {
                Some(("FailedIndexes", "Job has failed indexes"))
            } else if total_failed > backoff_limit {
                Some(("BackoffLimitExceeded", "Job has reached the specified backoff limit"))
            } else if deadline.is_some_and(|deadline| deadline <= now) {
                Some(("DeadlineExceeded", "Job was active longer than specified deadline"))
            } else {
                None
            };
            if let Some((reason, message)) = verdict {
                let target = condition("FailureTarget", "True", reason, message, now);
                set_condition(&mut conditions, target.clone());
                failure = Some(target);
            } else {
                let by_policy =
                    spec.success_policy.as_ref().filter(|_| indexed).and_then(|p| matched_rule(p, &completed));
                let met = match spec.completions {
                    Some(completions) if indexed => i32::try_from(completed.len()).unwrap_or(i32::MAX) >= completions,
                    Some(completions) => total_succeeded >= completions,
                    None => total_succeeded > 0 && active.is_empty(),
                };
                if let Some(rule) = by_policy.filter(|_| !met) {
                    let met = condition(
                        "SuccessCriteriaMet",
                        "True",
                        "SuccessPolicy",
                        &format!("Matched rules at index {rule}"),
                        now,
                    );
                    set_condition(&mut conditions, met.clone());
                    success = Some(met);
                } else if met {
                    let met = condition(
                        "SuccessCriteriaMet",
                        "True",
                        "CompletionsReached",
                        "Reached expected number of succeeded pods",
                        now,
                    );
                    set_condition(&mut conditions, met.clone());
                    success = Some(met);
                }
            }
        }
        let expectations_expire_in = self.expectations.expires_in(key);
        if let Some(verdict) = failure.as_ref().or(success.as_ref()) {
            if !active.is_empty() && expectations_expire_in.is_none() {
                self.delete_pods(key, &job, &active).await?;
            }
            let nothing_left = active.is_empty()
                && terminating == 0
                && tally == Tally::default()
                && pods.iter().all(|pod| !has_finalizer(pod) || released_uids.contains(&pod.uid().unwrap_or_default()));
            if nothing_left {
                let reason = verdict.reason.clone().unwrap_or_default();
                let message = verdict.message.clone().unwrap_or_default();
                let this = object_reference(job.as_ref());
                if failure.is_some() {
                    set_condition(&mut conditions, condition("Failed", "True", &reason, &message, now));
                    tracing::info!(%key, %reason, "job failed");
                    self.events.record(&this, EventType::Warning, &reason, "", message);
                } else {
                    set_condition(&mut conditions, condition("Complete", "True", &reason, &message, now));
                    status.completion_time = Some(Time(now));
                    tracing::info!(%key, succeeded = total_succeeded, "job complete");
                    self.events.record(&this, EventType::Normal, "Completed", "", "Job completed");
                }
            }
        } else if suspended {
            if condition_true(&conditions, "Suspended").is_none() {
                set_condition(&mut conditions, condition("Suspended", "True", "JobSuspended", "Job suspended", now));
                self.events.record(
                    &object_reference(job.as_ref()),
                    EventType::Normal,
                    "Suspended",
                    "",
                    "Job suspended",
                );
            }
            status.start_time = None;
            if !active.is_empty() && expectations_expire_in.is_none() {
                self.delete_pods(key, &job, &active).await?;
            }
        } else {
            if conditions.iter().any(|c| c.type_ == "Suspended" && c.status == "True") {
                set_condition(&mut conditions, condition("Suspended", "False", "JobResumed", "Job resumed", now));
                self.events.record(&object_reference(job.as_ref()), EventType::Normal, "Resumed", "", "Job resumed");
            }
            if status.start_time.is_none() {
                status.start_time = Some(Time(now));
            }
            // 4. Manage.
            match expectations_expire_in {
                Some(expire) => action = action.sooner(Action::requeue(expire)),
                None => {
                    let done: BTreeSet<i32> = completed.union(&failed_indexes).copied().collect();
                    let (create, delete) = pod_changes(&job, &active, total_succeeded, &done);
                    if delete > 0 {
                        let mut victims = active.clone();
                        victims.sort_by(|a, b| deletion_order(a, b));
                        victims.truncate(delete);
                        self.delete_pods(key, &job, &victims).await?;
                    }
                    if !create.is_empty() {
                        let last = self.last_failure.lock().unwrap_or_else(PoisonError::into_inner).get(key).copied();
                        match backoff_remaining(total_failed, last, now) {
                            Some(wait) => action = action.sooner(Action::requeue(wait)),
                            None => {
                                let failures = if per_index_limit.is_some() {
                                    index_failures(&job, &pods)
                                } else {
                                    BTreeMap::new()
                                };
                                self.create_pods(key, &job, &create, &failures).await?
                            }
                        }
                    }
                }
            }
            if let Some(deadline) = deadline {
                let left = Duration::try_from(deadline.duration_since(now)).unwrap_or(Duration::ZERO);
                action = action.sooner(Action::requeue(left + Duration::from_millis(100)));
            }
        }
        status.conditions = (!conditions.is_empty()).then_some(conditions);
        self.write_if_changed(&mut current, status).await?;
        Ok(action)
    }
}

/// A status as compared for changes: probe times and empty forms of "nothing uncounted" aside.
fn normalized(status: &JobStatus) -> JobStatus {
    let mut status = status.clone();
    for c in status.conditions.iter_mut().flatten() {
        c.last_probe_time = None;
    }
    let tally = uncounted(&status);
    with_uncounted(&mut status, &tally);
    status
}

fn count<T>(items: &[T]) -> i32 {
    i32::try_from(items.len()).unwrap_or(i32::MAX)
}

impl JobController {
    /// Writes `status` with `job`'s resourceVersion (a conflict fails the sync, which retries
    /// on fresh data); `job` becomes the Job as stored. Returns the stored status.
    async fn write_status(&self, job: &mut Job, status: JobStatus) -> Result<JobStatus, Error> {
        let namespace = job.namespace().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
        job.status = Some(status);
        match api.replace_status(&job.name_any(), &PostParams::default(), job).await {
            Ok(stored) => {
                *job = stored;
                Ok(job.status.clone().unwrap_or_default())
            }
            Err(source) => Err(Error::UpdateStatus { key: ObjectKey::of(&*job), source }),
        }
    }

    /// Writes `status` unless it says what `job`'s status says already.
    async fn write_if_changed(&self, job: &mut Job, status: JobStatus) -> Result<(), Error> {
        if normalized(&status) == normalized(&job.status.clone().unwrap_or_default()) {
            return Ok(());
        }
        match self.write_status(job, status).await {
            Err(Error::UpdateStatus { source, .. }) if source.is_not_found() => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Removes the tracking finalizer from `pods`; returns the uids it is gone from.
    async fn release(&self, namespace: &str, pods: &[Arc<Pod>]) -> Result<Vec<String>, Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let results = join_all(pods.iter().map(|pod| {
            let api = &api;
            async move {
                let finalizers: Vec<String> =
                    pod.metadata.finalizers.iter().flatten().filter(|f| *f != TRACKING_FINALIZER).cloned().collect();
                let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": pod.resource_version()}});
                let result = api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await;
                (pod.uid().unwrap_or_default(), pod.name_any(), result)
            }
        }))
        .await;
        let mut released = Vec::new();
        let mut first_error = None;
        for (uid, name, result) in results {
            match result {
                Ok(_) => released.push(uid),
                Err(error) if error.is_not_found() => released.push(uid),
                Err(error) if error.is_conflict() => {} // changed meanwhile: the next sync sees it
                Err(source) => {
                    first_error.get_or_insert(Error::Release { object: format!("pod {namespace}/{name}"), source });
                }
            }
        }
        match first_error {
            Some(error) if released.is_empty() => Err(error),
            _ => Ok(released),
        }
    }

    /// Creates the pods of `indexes`; with `backoffLimitPerIndex`, each carries how often its
    /// index failed before (`failures`).
    async fn create_pods(
        &self,
        key: &ObjectKey,
        job: &Job,
        indexes: &[Option<i32>],
        failures: &BTreeMap<i32, i32>,
    ) -> Result<(), Error> {
        let per_index = job.spec.as_ref().and_then(|s| s.backoff_limit_per_index).is_some();
        let pods: Vec<Pod> = indexes
            .iter()
            .map(|index| {
                let mut pod = pod_for(job, *index);
                if let (true, Some(index)) = (per_index, index) {
                    let count = failures.get(index).copied().unwrap_or(0);
                    pod.metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert(INDEX_FAILURE_COUNT.into(), count.to_string());
                }
                pod
            })
            .collect();
        tracing::info!(%key, created = pods.len(), "creating pods");
        self.pod_control.create(key, &object_reference(job), &pods).await
    }

    async fn delete_pods(&self, key: &ObjectKey, job: &Job, victims: &[Arc<Pod>]) -> Result<(), Error> {
        tracing::info!(%key, deleted = victims.len(), "deleting pods");
        self.pod_control.delete(key, &object_reference(job), victims).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(body: serde_json::Value) -> Job {
        serde_json::from_value(body).expect("job")
    }

    fn pod(body: serde_json::Value) -> Arc<Pod> {
        Arc::new(serde_json::from_value(body).expect("pod"))
    }

    fn indexed(completions: i32, parallelism: i32) -> Job {
        job(json!({"metadata": {"name": "ix", "namespace": "default", "uid": "j1"},
            "spec": {"completions": completions, "parallelism": parallelism, "completionMode": "Indexed",
                     "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}))
    }

    #[test]
    fn completed_indexes_read_and_write_as_kubernetes_writes_them() {
        let set: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into();
        assert_eq!(format_indexes(&set), "0-2,4,6-7");
        assert_eq!(parse_indexes("0-2,4,6-7"), set);
        assert_eq!(parse_indexes(""), BTreeSet::new());
        assert_eq!(parse_indexes("x,3"), BTreeSet::from([3]));
    }

    #[test]
    fn an_indexed_job_creates_its_missing_indexes_lowest_first_up_to_parallelism() {
        let job = indexed(5, 2);
        let running = pod(json!({"metadata": {"name": "ix-0-a", "annotations": {COMPLETION_INDEX: "0"}}}));
        let completed: BTreeSet<i32> = [1].into();
        assert_eq!(pod_changes(&job, &[running], 1, &completed), (vec![Some(2)], 0));
        let all_done: BTreeSet<i32> = (0..5).collect();
        assert_eq!(pod_changes(&job, &[], 5, &all_done), (vec![], 0));
    }

    #[test]
    fn nonindexed_jobs_run_parallelism_pods_but_never_more_than_the_completions_missing() {
        let mut j = indexed(5, 3);
        j.spec.as_mut().expect("spec").completion_mode = Some("NonIndexed".into());
        assert_eq!(pod_changes(&j, &[], 0, &BTreeSet::new()).0.len(), 3);
        assert_eq!(pod_changes(&j, &[], 4, &BTreeSet::new()).0.len(), 1);
        let running: Vec<Arc<Pod>> = (0..3).map(|i| pod(json!({"metadata": {"name": format!("p{i}")}}))).collect();
        assert_eq!(pod_changes(&j, &running, 3, &BTreeSet::new()), (vec![], 1));
        j.spec.as_mut().expect("spec").completions = None;
        assert_eq!(
            pod_changes(&j, &running[..1], 1, &BTreeSet::new()),
            (vec![], 0),
            "work queue: one success, no more pods"
        );
    }

    #[test]
    fn indexed_pods_carry_their_index_hostname_and_environment() {
        let pod = pod_for(&indexed(3, 1), Some(2));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("ix-2-"));
        assert_eq!(index_of(&pod), Some(2));
        assert_eq!(pod.metadata.labels.as_ref().and_then(|l| l.get(COMPLETION_INDEX)).map(String::as_str), Some("2"));
        assert!(has_finalizer(&pod));
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some("ix-2"));
        let env = spec.containers[0].env.as_ref().expect("env");
        assert_eq!(env[0].name, COMPLETION_INDEX_ENV);
    }

    #[test]
    fn the_pod_failure_policy_picks_the_first_matching_rule() {
        let j = job(json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {
            "podFailurePolicy": {"rules": [
                {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]},
            "template": {"spec": {"containers": []}}}}));
        let failed = |code: i32, conditions: serde_json::Value| {
            pod(json!({"metadata": {"name": "p-x", "namespace": "default"}, "status": {"phase": "Failed",
                "conditions": conditions,
                "containerStatuses": [{"name": "main", "image": "", "imageID": "", "ready": false, "restartCount": 0,
                                       "state": {"terminated": {"exitCode": code}}}]}}))
        };
        let (outcome, message) = outcome_of(&j, &failed(42, json!([])), false);
        assert_eq!(outcome, Outcome::Failed);
        assert!(message.expect("message").contains("failed with exit code 42 matching FailJob rule at index 0"));
        let disrupted = failed(1, json!([{"type": "DisruptionTarget", "status": "True"}]));
        assert_eq!(outcome_of(&j, &disrupted, false).0, Outcome::Ignored);
        assert_eq!(outcome_of(&j, &failed(1, json!([])), false), (Outcome::Failed, None));
    }

    #[test]
    fn a_success_policy_rule_is_met_by_its_indexes_or_its_count() {
        let policy: k8s_openapi::api::batch::v1::SuccessPolicy = serde_json::from_value(serde_json::json!({"rules": [
            {"succeededIndexes": "0,2-3"}, {"succeededIndexes": "4-9", "succeededCount": 2}, {"succeededCount": 5}]}))
        .expect("policy");
        assert_eq!(matched_rule(&policy, &parse_indexes("0,2")), None);
        assert_eq!(matched_rule(&policy, &parse_indexes("0,2,3")), Some(0));
        assert_eq!(matched_rule(&policy, &parse_indexes("1,5,7")), Some(1));
        assert_eq!(matched_rule(&policy, &parse_indexes("1,5,10-12")), Some(2));
    }

    #[test]
    fn an_index_counts_the_failures_of_its_pods_carried_from_one_to_the_next() {
        let job = indexed(3, 3);
        let failed = |index: i32, before: i32| {
            pod(serde_json::json!({"metadata": {"name": format!("p{index}-{before}"), "annotations": {
                COMPLETION_INDEX: index.to_string(), INDEX_FAILURE_COUNT: before.to_string()}},
                "status": {"phase": "Failed"}}))
        };
        let running = pod(serde_json::json!({"metadata": {"name": "r", "annotations": {
            COMPLETION_INDEX: "2", INDEX_FAILURE_COUNT: "1"}}, "status": {"phase": "Running"}}));
        let failures = index_failures(&job, &[failed(0, 0), failed(0, 1), failed(2, 0), running]);
        assert_eq!(failures, BTreeMap::from([(0, 2), (2, 1)]));
    }

    #[test]
    fn backoff_doubles_per_failure_up_to_six_minutes() {
        let last: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let at = |s: i64| last.checked_add(jiff::SignedDuration::from_secs(s)).expect("time");
        assert_eq!(backoff_remaining(1, Some(last), at(4)), Some(Duration::from_secs(6)));
        assert_eq!(backoff_remaining(1, Some(last), at(10)), None);
        assert_eq!(backoff_remaining(3, Some(last), at(0)), Some(Duration::from_secs(40)));
        assert_eq!(backoff_remaining(20, Some(last), at(0)), Some(BACKOFF_MAX));
        assert_eq!(backoff_remaining(2, None, at(0)), None, "no failure seen by this process");
    }
}
