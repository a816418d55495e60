//! The CronJob controller: creates a Job from each CronJob's `jobTemplate` when its schedule
//! fires, as kube-controller-manager's `cronjob_controllerv2.go` does.
//!
//! One sync of a CronJob key:
//! 1. **status.active**: the Jobs it owns that have not finished (a Job listed there but gone
//!    from the cache is checked uncached before it is dropped); a Job that finished since the
//!    last sync gets a `SawCompletedJob` Event, and `lastSuccessfulTime` follows the newest
//!    completion;
//! 2. **history**: finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`
//!    are deleted, oldest first (with their pods);
//! 3. **schedule**: unless suspended or being deleted, the most recent time the schedule fired
//!    after `lastScheduleTime` (or the creation) and before now is the one to run; a time older
//!    than `startingDeadlineSeconds` is missed (`MissSchedule`); more than 100 missed times
//!    (a controller that was down, a clock jump) are reported (`TooManyMissedTimes`) and only
//!    the most recent one runs;
//! 4. **concurrency**: `Forbid` skips a time while a Job is active, `Replace` deletes the
//!    active Jobs first, `Allow` runs them side by side;
//! 5. **create** the Job `<cronjob>-<scheduled time in minutes since 1970>`: the name makes a
//!    second create for the same time fail with AlreadyExists, so a controller restarted
//!    mid-sync never runs a time twice. Then `active` and `lastScheduleTime` are written and
//!    the key is requeued for the next time the schedule fires.
//!
//! Time zones: `spec.timeZone`, or UTC (Kubernetes uses the controller-manager's local zone).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube_core::ResourceExt;
use kube_core::params::PropagationPolicy;
use prometheus::Registry;
use rkube_api::cron::Schedule;
use rkube_client::events::{EventRecorder, EventType, object_reference};
use rkube_client::{Api, Client, DeleteParams, PostParams};
use rkube_informer::ObjectKey;
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::handler::{Deleted, HandlerFns};
use rkube_informer::store::{NAMESPACE_INDEX, Store};
use rkube_informer::workqueue::{RateLimiter, WorkQueue};

use crate::Error;
use crate::controller_ref::{controller_of, new_controller_ref};
use crate::worker::{Action, Syncer};

/// The annotation holding the time a Job was scheduled for (RFC 3339).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed start times than this are reported as `TooManyMissedTimes`.
pub const MAX_MISSED: usize = 100;
const KIND: &str = "CronJob";
const API_VERSION: &str = "batch/v1";

/// The CronJob controller; see the module docs.
pub struct CronJobController {
    client: Client,
    cronjobs: Store<CronJob>,
    jobs: Store<Job>,
    queue: WorkQueue<ObjectKey>,
    events: EventRecorder,
}

/// The key of the CronJob controlling `job`, if any.
fn owner_key(job: &Job) -> Option<ObjectKey> {
    let owner = controller_of(&job.metadata)?;
    (owner.kind == KIND && owner.api_version.starts_with("batch/"))
        .then(|| ObjectKey::new(job.metadata.namespace.as_deref(), &owner.name))
}

impl CronJobController {
    /// Registers handlers on the factory's CronJob and Job informers and a work queue named
    /// `cronjob`; Events are written as `cronjob-controller`.
    pub fn new(factory: &SharedInformerFactory, client: Client, registry: Option<&Registry>) -> Arc<Self> {
        let cronjobs = factory.informer::<CronJob>(None);
        let jobs = factory.informer::<Job>(None);
        let controller = Arc::new(CronJobController {
            events: EventRecorder::new(client.clone(), "cronjob-controller", None),
            client,
            cronjobs: cronjobs.store(),
            jobs: jobs.store(),
            queue: WorkQueue::new("cronjob", RateLimiter::default(), registry),
        });
        let (q1, q2) = (controller.queue(), controller.queue());
        cronjobs.add_handler(
            HandlerFns::new()
                .on_add(move |cj: &Arc<CronJob>| q1.add(ObjectKey::of(cj.as_ref())))
                .on_update(move |_: &Arc<CronJob>, cj: &Arc<CronJob>| q2.add(ObjectKey::of(cj.as_ref()))),
        );
        let (q1, q2, q3) = (controller.queue(), controller.queue(), controller.queue());
        jobs.add_handler(
            HandlerFns::new()
                .on_add(move |job: &Arc<Job>| {
                    if let Some(key) = owner_key(job) {
                        q1.add(key);
                    }
                })
                .on_update(move |old: &Arc<Job>, job: &Arc<Job>| {
                    if old.metadata.resource_version != job.metadata.resource_version
                        && let Some(key) = owner_key(job)
                    {
                        q2.add(key);
                    }
                })
                .on_delete(move |deleted: Deleted<Job>| {
                    if let Some(key) = owner_key(deleted.object()) {
                        q3.add(key);
                    }
                }),
        );
        controller
    }

    /// The controller's work queue of CronJob keys.
    pub fn queue(&self) -> WorkQueue<ObjectKey> {
        self.queue.clone()
    }
}

/// `Complete` or `Failed`, when the Job has finished.
fn finished(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().filter(|c| c.status == "True").find_map(|c| match c.type_.as_str() {
        "Complete" => Some("Complete"),
        "Failed" => Some("Failed"),
        _ => None,
    })
}

/// The time to run now, if any: the most recent time the schedule fired in
/// `(earliest, now]`, and how many times it fired in that window (capped past [`MAX_MISSED`]).
fn due(schedule: &Schedule, earliest: Timestamp, now: Timestamp) -> (Option<Timestamp>, usize) {
    let Some(latest) = schedule.last_at_or_before(now).filter(|t| *t > earliest) else { return (None, 0) };
    let mut missed = 0;
    let mut at = earliest;
    while let Some(next) = schedule.next_after(at).filter(|t| *t <= now) {
        missed += 1;
        if missed > MAX_MISSED {
            break;
        }
        at = next;
    }
    (Some(latest), missed)
}

/// The name of the Job for the time `scheduled`: `<cronjob>-<minutes since 1970>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// The Job a CronJob creates for `scheduled`.
pub fn job_for(cronjob: &CronJob, scheduled: Timestamp) -> Job {
    let template = cronjob.spec.job_template.clone();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), scheduled.to_string());
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cronjob.name_any(), scheduled)),
            namespace: cronjob.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![new_controller_ref(API_VERSION, KIND, &cronjob.metadata)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference { field_path: None, ..object_reference(job) }
}

impl Syncer for CronJobController {
    type Key = ObjectKey;

    async fn sync(&self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(cronjob) = self.cronjobs.get(key) else { return Ok(Action::await_change()) };
        let uid = cronjob.uid().unwrap_or_default();
        let namespace = key.namespace().unwrap_or_default().to_string();
        let jobs: Vec<Arc<Job>> = self
            .jobs
            .by_index(NAMESPACE_INDEX, &namespace)?
            .into_iter()
            .filter(|job| controller_of(&job.metadata).is_some_and(|owner| owner.uid == uid))
            .collect();
        let job_api: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
        let mut status = cronjob.status.clone().unwrap_or_default();
        let this = object_reference(cronjob.as_ref());

        // 1. Active Jobs.
        let by_name: BTreeMap<String, &Arc<Job>> = jobs.iter().map(|job| (job.name_any(), job)).collect();
        let mut active = Vec::new();
        for listed in status.active.take().unwrap_or_default() {
            let name = listed.name.clone().unwrap_or_default();
            match by_name.get(&name) {
                Some(job) if job.metadata.uid == listed.uid => {
                    if let Some(how) = finished(job) {
                        let message = format!("Saw completed job: {name}, condition: {how}");
                        self.events.record(&this, EventType::Normal, "SawCompletedJob", "", message);
                    } else {
                        active.push(listed);
                    }
                }
                Some(_) => {}
                None => match job_api.get_opt(&name).await {
                    Ok(Some(job)) if job.metadata.uid == listed.uid && finished(&job).is_none() => active.push(listed),
                    Ok(_) => {}
                    Err(source) => return Err(Error::Read { what: format!("job {namespace}/{name}"), source }),
                },
            }
        }
        for job in &jobs {
            let name = job.name_any();
            if finished(job).is_none() && !active.iter().any(|r| r.name.as_deref() == Some(name.as_str())) {
                active.push(reference(job));
            }
        }
        let newest_success = jobs
            .iter()
            .filter(|job| finished(job) == Some("Complete"))
            .filter_map(|job| job.status.as_ref()?.completion_time.clone())
            .max_by_key(|t| t.0);
        if let Some(newest) = newest_success
            && status.last_successful_time.as_ref().is_none_or(|t| t.0 < newest.0)
        {
            status.last_successful_time = Some(newest);
        }

        // 2. History.
        let spec = &cronjob.spec;
        for (outcome, limit) in [
            ("Complete", spec.successful_jobs_history_limit.unwrap_or(3)),
            ("Failed", spec.failed_jobs_history_limit.unwrap_or(1)),
        ] {
            let mut done: Vec<&Arc<Job>> = jobs.iter().filter(|job| finished(job) == Some(outcome)).collect();
            let limit = usize::try_from(limit).unwrap_or(0);
            if done.len() <= limit {
                continue;
            }
            done.sort_by_key(|job| {
                job.status
                    .as_ref()
                    .and_then(|s| s.start_time.clone())
                    .or_else(|| job.metadata.creation_timestamp.clone())
                    .map(|t| t.0)
            });
            for job in &done[..done.len() - limit] {
                self.delete_job(&job_api, &this, job).await?;
            }
        }
        status.active = (!active.is_empty()).then_some(active);

        // 3. Schedule.
        let now = Timestamp::now();
        let mut action = Action::await_change();
        if cronjob.metadata.deletion_timestamp.is_none() && spec.suspend != Some(true) {
            match Schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
                Err(message) => {
                    self.events.record(&this, EventType::Warning, "UnparseableSchedule", "", message);
                }
                Ok(schedule) => {
                    action = self.run_schedule(&cronjob, &schedule, &mut status, &jobs, &job_api, now).await?;
                }
            }
        }
        if cronjob.status.as_ref() != Some(&status) {
            let api: Api<CronJob> = Api::namespaced(self.client.clone(), &namespace);
            let mut updated = (*cronjob).clone();
            updated.status = Some(status);
            match api.replace_status(&cronjob.name_any(), &PostParams::default(), &updated).await {
                Ok(_) => {}
                Err(error) if error.is_not_found() => {}
                Err(source) => return Err(Error::UpdateStatus { key: key.clone(), source }),
            }
        }
        Ok(action)
    }
}

impl CronJobController {
    /// Steps 3 to 5 of the module docs; returns when to look again.
    async fn run_schedule(
        &self,
        cronjob: &CronJob,
        schedule: &Schedule,
        status: &mut k8s_openapi::api::batch::v1::CronJobStatus,
        jobs: &[Arc<Job>],
        job_api: &Api<Job>,
        now: Timestamp,
    ) -> Result<Action, Error> {
        let spec = &cronjob.spec;
        let this = object_reference(cronjob);
        let created = cronjob.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
        let mut earliest = status.last_schedule_time.as_ref().map_or(created, |t| t.0);
        if let Some(deadline) = spec.starting_deadline_seconds {
            let window_start = now.checked_sub(jiff::SignedDuration::from_secs(deadline)).unwrap_or(now);
            earliest = earliest.max(window_start);
        }
        let next = schedule.next_after(now);
        let wait_for_next = || match next {
            Some(next) => Action::requeue(
                Duration::try_from(next.duration_since(now)).unwrap_or(Duration::ZERO) + Duration::from_millis(100),
            ),
            None => Action::await_change(),
        };
        let (scheduled, missed) = due(schedule, earliest, now);
        let Some(scheduled) = scheduled else { return Ok(wait_for_next()) };
        if missed > MAX_MISSED {
            let message = format!(
                "too many missed start times: > {MAX_MISSED}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
            );
            self.events.record(&this, EventType::Warning, "TooManyMissedTimes", "", message);
        }
        if let Some(deadline) = spec.starting_deadline_seconds
            && scheduled.checked_add(jiff::SignedDuration::from_secs(deadline)).is_ok_and(|late| late < now)
        {
            let message = format!("Missed scheduled time to start a job: {scheduled}");
            self.events.record(&this, EventType::Warning, "MissSchedule", "", message);
            return Ok(wait_for_next());
        }
        let name = job_name(&cronjob.name_any(), scheduled);
        if jobs.iter().any(|job| job.name_any() == name) {
            status.last_schedule_time.get_or_insert(Time(scheduled));
            return Ok(wait_for_next());
        }
        let active = status.active.clone().unwrap_or_default();
        match spec.concurrency_policy.as_deref().unwrap_or("Allow") {
            "Forbid" if !active.is_empty() => {
                tracing::info!(cronjob = %ObjectKey::of(cronjob), "not starting a job: the previous one still runs (Forbid)");
                let message = "Not starting job because prior execution is running and concurrency policy is Forbid";
                self.events.record(&this, EventType::Normal, "JobAlreadyActive", "", message);
                return Ok(wait_for_next());
            }
            "Replace" => {
                for listed in &active {
                    if let Some(job) = jobs.iter().find(|job| job.metadata.uid == listed.uid) {
                        self.delete_job(job_api, &this, job).await?;
                    }
                }
                status.active = None;
            }
            _ => {}
        }
        let job = job_for(cronjob, scheduled);
        let created = match job_api.create(&PostParams::default(), &job).await {
            Ok(created) => created,
            Err(error) if error.is_already_exists() => match job_api.get_opt(&name).await {
                Ok(Some(existing)) => existing,
                Ok(None) => return Ok(Action::requeue(Duration::from_secs(1))),
                Err(source) => return Err(Error::Read { what: format!("job {name}"), source }),
            },
            Err(source) => {
                let message = format!("Error creating job: {source}");
                self.events.record(&this, EventType::Warning, "FailedCreate", "", message);
                return Err(Error::Read { what: format!("creating job {name}"), source });
            }
        };
        tracing::info!(cronjob = %ObjectKey::of(cronjob), job = %name, %scheduled, "created job");
        self.events.record(&this, EventType::Normal, "SuccessfulCreate", "", format!("Created job {name}"));
        let mut active = status.active.take().unwrap_or_default();
        if controller_of(&created.metadata)
            .is_some_and(|owner| Some(owner.uid.as_str()) == cronjob.metadata.uid.as_deref())
            && !active.iter().any(|r| r.uid == created.metadata.uid)
        {
            active.push(reference(&created));
        }
        status.active = (!active.is_empty()).then_some(active);
        status.last_schedule_time = Some(Time(scheduled));
        Ok(wait_for_next())
    }

    async fn delete_job(&self, api: &Api<Job>, this: &ObjectReference, job: &Job) -> Result<(), Error> {
        let params =
            DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..DeleteParams::default() };
        let name = job.name_any();
        match api.delete(&name, &params).await {
            Ok(_) => {
                self.events.record(this, EventType::Normal, "SuccessfulDelete", "", format!("Deleted job {name}"));
                Ok(())
            }
            Err(error) if error.is_not_found() => Ok(()),
            Err(source) => Err(Error::DeletePods { key: ObjectKey::of(job), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("time")
    }

    #[test]
    fn the_most_recent_missed_time_runs_and_long_outages_are_counted() {
        let every_minute = Schedule::parse("* * * * *", None).expect("schedule");
        let (time, missed) = due(&every_minute, at("2026-01-01T00:00:00Z"), at("2026-01-01T00:03:30Z"));
        assert_eq!((time, missed), (Some(at("2026-01-01T00:03:00Z")), 3));
        let (time, missed) = due(&every_minute, at("2026-01-01T00:03:00Z"), at("2026-01-01T00:03:59Z"));
        assert_eq!((time, missed), (None, 0), "already ran 00:03");
        let (time, missed) = due(&every_minute, at("2026-01-01T00:00:00Z"), at("2026-01-02T00:00:00Z"));
        assert_eq!(time, Some(at("2026-01-02T00:00:00Z")));
        assert!(missed > MAX_MISSED, "a day of minutes is too many: {missed}");
    }

    #[test]
    fn a_jobs_name_is_its_scheduled_minute() {
        assert_eq!(job_name("hello", at("2026-01-01T00:03:00Z")), format!("hello-{}", 1_767_225_780 / 60));
    }
}
