//! A Deployment's status: counts from the pods of its ReplicaSets, and the `Available` and
//! `Progressing` conditions that `kubectl rollout status` reads.
//!
//! `Progressing` (Kubernetes' `syncRolloutStatus`, pkg/controller/deployment/progress.go):
//! - `Unknown`, reason `DeploymentPaused`, while paused;
//! - `True`, reason `NewReplicaSetAvailable`, once every replica is updated and available;
//! - `True`, reason `ReplicaSetUpdated`, with `lastUpdateTime` now, whenever the rollout moved
//!   (a new spec, a new ReplicaSet, or any count changed);
//! - `False`, reason `ProgressDeadlineExceeded`, when it has not moved for
//!   `progressDeadlineSeconds` since that `lastUpdateTime`. A timed-out rollout is not stopped
//!   (neither is it in Kubernetes); it simply cannot progress past its surge.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

/// PodCounts of one Deployment's pods, by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodCounts {
    /// Active pods of every ReplicaSet.
    pub replicas: i32,
    /// Active pods of the new ReplicaSet.
    pub updated: i32,
    /// Ready pods of every ReplicaSet.
    pub ready: i32,
    /// Available pods of every ReplicaSet.
    pub available: i32,
}

/// What the controller knows about the rollout this sync.
#[derive(Clone, Debug)]
pub struct Rollout {
    /// Pod counts.
    pub counts: PodCounts,
    /// `maxUnavailable` as a count (0 for Recreate).
    pub max_unavailable: i32,
    /// Name of the new ReplicaSet, if there is one.
    pub new_replica_set: Option<String>,
    /// This sync created the new ReplicaSet.
    pub created_new: bool,
}

fn condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status["conditions"].as_array()?.iter().find(|c| c["type"] == kind)
}

/// Builds a condition, keeping `lastTransitionTime` when the status did not change.
fn make(old: Option<&Value>, kind: &str, status: &str, reason: &str, message: &str, now: &str, touch: bool) -> Value {
    let same = old.is_some_and(|old| old["status"] == status);
    let transition = if same { old.map(|old| old["lastTransitionTime"].clone()) } else { None };
    let update = if same && !touch && old.is_some_and(|old| old["reason"] == reason) {
        old.map(|old| old["lastUpdateTime"].clone())
    } else {
        None
    };
    json!({
        "type": kind, "status": status, "reason": reason, "message": message,
        "lastTransitionTime": transition.unwrap_or_else(|| json!(now)),
        "lastUpdateTime": update.unwrap_or_else(|| json!(now)),
    })
}

/// Whether the rollout is done: every replica updated and available, and no old pods left.
pub fn is_complete(deployment: &Deployment, counts: &PodCounts) -> bool {
    let replicas = deployment.spec.replicas.unwrap_or(1);
    counts.updated == replicas && counts.available >= replicas && counts.replicas == replicas
}

/// The status to write, as JSON, and how long until the progress deadline should be checked
/// again (when it is running).
pub fn status_for(deployment: &Deployment, rollout: &Rollout, now: Timestamp) -> (Value, Option<i64>) {
    let old = serde_json::to_value(deployment.status.clone().unwrap_or_default()).unwrap_or(Value::Null);
    let counts = rollout.counts;
    let replicas = deployment.spec.replicas.unwrap_or(1);
    let now_text = now.round(jiff::Unit::Second).unwrap_or(now).to_string();
    let available = if counts.available >= replicas - rollout.max_unavailable {
        make(
            condition(&old, "Available"),
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            &now_text,
            false,
        )
    } else {
        make(
            condition(&old, "Available"),
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            &now_text,
            false,
        )
    };
    let old_progressing = condition(&old, "Progressing");
    let new_rs = rollout.new_replica_set.clone().unwrap_or_default();
    let generation = deployment.metadata.generation.unwrap_or(0);
    let moved = rollout.created_new
        || old["observedGeneration"].as_i64().unwrap_or(0) < generation
        || [
            ("replicas", counts.replicas),
            ("updatedReplicas", counts.updated),
            ("readyReplicas", counts.ready),
            ("availableReplicas", counts.available),
        ]
        .iter()
        .any(|(field, value)| old[*field].as_i64().unwrap_or(0) != i64::from(*value));
    let deadline = deployment.spec.progress_deadline_seconds.unwrap_or(600);
    let mut recheck = None;
    let progressing = if deployment.spec.paused == Some(true) {
        make(old_progressing, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", &now_text, false)
    } else if is_complete(deployment, &counts) && rollout.new_replica_set.is_some() {
        let message = format!("ReplicaSet \"{new_rs}\" has successfully progressed.");
        make(old_progressing, "Progressing", "True", "NewReplicaSetAvailable", &message, &now_text, false)
    } else if moved
        || old_progressing.is_none()
        || old_progressing.is_some_and(|c| c["reason"] == "NewReplicaSetAvailable" || c["reason"] == "DeploymentPaused")
    {
        recheck = Some(i64::from(deadline));
        let message = format!("ReplicaSet \"{new_rs}\" is progressing.");
        make(old_progressing, "Progressing", "True", "ReplicaSetUpdated", &message, &now_text, true)
    } else {
        let since = old_progressing
            .and_then(|c| c["lastUpdateTime"].as_str())
            .and_then(|text| text.parse::<Timestamp>().ok())
            .unwrap_or(now);
        let left = since.as_second() + i64::from(deadline) - now.as_second();
        if left <= 0 {
            let message = format!("ReplicaSet \"{new_rs}\" has timed out progressing.");
            make(old_progressing, "Progressing", "False", "ProgressDeadlineExceeded", &message, &now_text, false)
        } else {
            recheck = Some(left);
            old_progressing.cloned().unwrap_or(Value::Null)
        }
    };
    let status = json!({
        "observedGeneration": generation,
        "replicas": counts.replicas,
        "updatedReplicas": counts.updated,
        "readyReplicas": counts.ready,
        "availableReplicas": counts.available,
        "unavailableReplicas": (replicas - counts.available).max(0),
        "conditions": [available, progressing],
    });
    (status, recheck)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentSpec;

    fn deployment(deadline: i32) -> Deployment {
        let mut deployment = Deployment::default();
        deployment.metadata.name = Some("web".into());
        deployment.metadata.generation = Some(1);
        deployment.spec = DeploymentSpec {
            replicas: Some(2),
            progress_deadline_seconds: Some(deadline),
            ..DeploymentSpec::default()
        };
        deployment
    }

    fn rollout(updated: i32, available: i32) -> Rollout {
        Rollout {
            counts: PodCounts { replicas: 2, updated, ready: available, available },
            max_unavailable: 0,
            new_replica_set: Some("web-abc".into()),
            created_new: false,
        }
    }

    #[test]
    fn a_rollout_that_stops_moving_exceeds_its_progress_deadline() {
        let mut deployment = deployment(5);
        let start = Timestamp::from_second(1_000_000).unwrap();
        let (status, recheck) = status_for(&deployment, &rollout(1, 1), start);
        assert_eq!(status["conditions"][1]["reason"], "ReplicaSetUpdated");
        assert_eq!(recheck, Some(5));
        deployment.status = serde_json::from_value(status).ok();
        let later = Timestamp::from_second(1_000_006).unwrap();
        let (status, _) = status_for(&deployment, &rollout(1, 1), later);
        assert_eq!(status["conditions"][1]["status"], "False");
        assert_eq!(status["conditions"][1]["reason"], "ProgressDeadlineExceeded");
    }

    #[test]
    fn a_finished_rollout_reports_new_replica_set_available() {
        let (status, _) = status_for(&deployment(5), &rollout(2, 2), Timestamp::now());
        assert_eq!(status["conditions"][0]["status"], "True");
        assert_eq!(status["conditions"][1]["reason"], "NewReplicaSetAvailable");
        assert_eq!(status["unavailableReplicas"], 0);
    }
}
