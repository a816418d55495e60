//! The TTL-after-finished controller: deletes a finished Job (`Complete` or `Failed`)
//! `spec.ttlSecondsAfterFinished` seconds after it finished, with its pods, as
//! kube-controller-manager's `ttlafterfinished` controller does.
//!
//! The finish time is the `lastTransitionTime` of the Job's `Complete` or `Failed` condition.
//! Before deleting, it reads the Job again from the apiserver (the cache may be stale: the TTL
//! may have been raised or removed) and deletes with a uid precondition and `Foreground`
//! propagation, so the Job goes after its pods.
//!
//! Not promised: a Job whose TTL is lowered after it expired is deleted at once, as upstream;
//! nothing but Jobs (upstream also only handles Jobs).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube_core::ResourceExt;
use kube_core::params::{Preconditions, PropagationPolicy};
use prometheus::Registry;
use rkube_client::{Api, Client, DeleteParams};
use rkube_informer::ObjectKey;
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::handler::HandlerFns;
use rkube_informer::store::Store;
use rkube_informer::workqueue::{RateLimiter, WorkQueue};

use crate::Error;
use crate::worker::{Action, Syncer};

/// The TTL-after-finished controller; see the module docs.
pub struct TtlAfterFinishedController {
    client: Client,
    jobs: Store<Job>,
    queue: WorkQueue<ObjectKey>,
}

impl TtlAfterFinishedController {
    /// Registers handlers on the factory's Job informer and a work queue named `ttl-after-finished`.
    pub fn new(factory: &SharedInformerFactory, client: Client, registry: Option<&Registry>) -> Arc<Self> {
        let jobs = factory.informer::<Job>(None);
        let controller = Arc::new(TtlAfterFinishedController {
            client,
            jobs: jobs.store(),
            queue: WorkQueue::new("ttl-after-finished", RateLimiter::default(), registry),
        });
        let (q1, q2) = (controller.queue(), controller.queue());
        jobs.add_handler(
            HandlerFns::new()
                .on_add(move |job: &Arc<Job>| {
                    if needs_cleanup(job) {
                        q1.add(ObjectKey::of(job.as_ref()));
                    }
                })
                .on_update(move |_: &Arc<Job>, job: &Arc<Job>| {
                    if needs_cleanup(job) {
                        q2.add(ObjectKey::of(job.as_ref()));
                    }
                }),
        );
        controller
    }

    /// The controller's work queue of Job keys.
    pub fn queue(&self) -> WorkQueue<ObjectKey> {
        self.queue.clone()
    }
}

/// When the Job finished: its `Complete` or `Failed` condition's transition time.
fn finished_at(job: &Job) -> Option<Timestamp> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let done = conditions.iter().find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?;
    Some(done.last_transition_time.as_ref().map_or_else(Timestamp::now, |t| t.0))
}

/// A finished Job with a TTL, not already being deleted.
fn needs_cleanup(job: &Job) -> bool {
    job.metadata.deletion_timestamp.is_none()
        && job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished).is_some()
        && finished_at(job).is_some()
}

/// How long until the Job may be deleted; `Some(ZERO)` once it may, `None` when it never will.
fn time_left(job: &Job, now: Timestamp) -> Option<Duration> {
    if !needs_cleanup(job) {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let expires = finished_at(job)?.checked_add(jiff::SignedDuration::from_secs(i64::from(ttl))).ok()?;
    Some(Duration::try_from(expires.duration_since(now)).unwrap_or(Duration::ZERO))
}

impl Syncer for TtlAfterFinishedController {
    type Key = ObjectKey;

    async fn sync(&self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(cached) = self.jobs.get(key) else { return Ok(Action::await_change()) };
        match time_left(&cached, Timestamp::now()) {
            None => return Ok(Action::await_change()),
            Some(left) if !left.is_zero() => return Ok(Action::requeue(left)),
            Some(_) => {}
        }
        let api: Api<Job> = Api::namespaced(self.client.clone(), key.namespace().unwrap_or_default());
        let fresh = match api.get_opt(key.name()).await {
            Ok(Some(job)) => job,
            Ok(None) => return Ok(Action::await_change()),
            Err(source) => return Err(Error::Read { what: format!("job {key}"), source }),
        };
        match time_left(&fresh, Timestamp::now()) {
            None => return Ok(Action::await_change()),
            Some(left) if !left.is_zero() => return Ok(Action::requeue(left)),
            Some(_) => {}
        }
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(Preconditions { uid: fresh.uid(), resource_version: None }),
            ..DeleteParams::default()
        };
        match api.delete(key.name(), &params).await {
            Ok(_) => {
                tracing::info!(job = %key, "deleted: ttlSecondsAfterFinished passed");
                Ok(Action::await_change())
            }
            Err(error) if error.is_not_found() || error.is_conflict() => Ok(Action::await_change()),
            Err(source) => Err(Error::Read { what: format!("deleting job {key}"), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(ttl: Option<i32>, condition: Option<(&str, &str)>) -> Job {
        let conditions: Vec<serde_json::Value> = condition
            .map(|(kind, at)| json!({"type": kind, "status": "True", "lastTransitionTime": at}))
            .into_iter()
            .collect();
        serde_json::from_value(json!({"metadata": {"name": "j", "namespace": "default"},
            "spec": {"ttlSecondsAfterFinished": ttl, "template": {}}, "status": {"conditions": conditions}}))
        .expect("job")
    }

    #[test]
    fn a_finished_job_expires_its_ttl_after_its_terminal_condition() {
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().expect("now");
        let done = Some(("Complete", "2026-01-01T00:00:30Z"));
        assert_eq!(time_left(&job(Some(100), done), now), Some(Duration::from_secs(70)));
        assert_eq!(time_left(&job(Some(10), done), now), Some(Duration::ZERO));
        assert_eq!(time_left(&job(Some(0), Some(("Failed", "2026-01-01T00:00:59Z"))), now), Some(Duration::ZERO));
        assert_eq!(time_left(&job(None, done), now), None, "no TTL: kept");
        assert_eq!(time_left(&job(Some(10), None), now), None, "still running");
        assert_eq!(time_left(&job(Some(10), Some(("SuccessCriteriaMet", "2026-01-01T00:00:00Z"))), now), None);
    }
}
