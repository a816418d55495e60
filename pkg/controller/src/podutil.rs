//! What a controller needs to know about a pod: is it active, ready, available, and which pods
//! to delete first when there are too many.
//!
//! Kubernetes' names: `FilterActivePods`, `IsPodReady`, `IsPodAvailable` and
//! `ActivePodsWithRanks` in pkg/controller/controller_utils.go and pkg/api/v1/pod.
//!
//! Not promised: the full 8-rule ranking of upstream. Scale-down here orders by: unassigned
//! before assigned, then Pending before Unknown before Running, then not ready before ready,
//! then the newest first (ties broken by name, so the order is deterministic).

use std::cmp::Ordering;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

/// A pod counts towards a controller's replicas: not Succeeded or Failed, and not being
/// deleted.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|status| status.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// When the pod's `Ready` condition became True, if it is True now.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|condition| condition.type_ == "Ready")?;
    (ready.status == "True").then(|| ready.last_transition_time.as_ref().map(|time| time.0))
}

/// The pod's `Ready` condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// The pod has been ready for at least `min_ready_seconds` at `now` (a pod ready with no
/// transition time recorded counts as available only when `min_ready_seconds` is 0).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => since.as_second() + i64::from(min_ready_seconds) <= now.as_second(),
    }
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|status| status.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Running") => 2,
        Some(_) => 1,
    }
}

fn is_assigned(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()).is_some_and(|node| !node.is_empty())
}

/// Orders pods so that the ones to delete first on scale-down come first.
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    is_assigned(a)
        .cmp(&is_assigned(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        // Newest first: a later creation time sorts earlier.
        .then_with(|| {
            let created = |pod: &Pod| pod.metadata.creation_timestamp.as_ref().map(|time| time.0);
            created(b).cmp(&created(a))
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready_at: Option<i64>, created: i64) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        pod.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        pod.spec = Some(PodSpec { node_name: node.map(String::from), ..PodSpec::default() });
        let conditions = ready_at.map(|at| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(Timestamp::from_second(at).unwrap())),
                ..PodCondition::default()
            }]
        });
        pod.status = Some(PodStatus { phase: Some(phase.into()), conditions, ..PodStatus::default() });
        pod
    }

    #[test]
    fn scale_down_deletes_unassigned_then_pending_then_not_ready_then_newest() {
        let mut pods = [
            pod("ready-old", Some("n"), "Running", Some(10), 1),
            pod("ready-new", Some("n"), "Running", Some(10), 5),
            pod("not-ready", Some("n"), "Running", None, 0),
            pod("pending", Some("n"), "Pending", None, 0),
            pod("unassigned", None, "Pending", None, 0),
        ];
        pods.sort_by(deletion_order);
        let names: Vec<_> = pods.iter().map(|pod| pod.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, ["unassigned", "pending", "not-ready", "ready-new", "ready-old"]);
    }

    #[test]
    fn available_means_ready_for_min_ready_seconds() {
        let ready = pod("p", Some("n"), "Running", Some(100), 0);
        let now = Timestamp::from_second(105).unwrap();
        assert!(is_available(&ready, 0, now));
        assert!(is_available(&ready, 5, now));
        assert!(!is_available(&ready, 6, now));
        assert!(!is_available(&pod("q", Some("n"), "Running", None, 0), 0, now));
    }

    #[test]
    fn terminating_and_finished_pods_are_not_active() {
        let mut terminating = pod("t", None, "Running", None, 0);
        terminating.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1).unwrap()));
        assert!(!is_active(&terminating));
        assert!(!is_active(&pod("s", None, "Succeeded", None, 0)));
        assert!(!is_active(&pod("f", None, "Failed", None, 0)));
        assert!(is_active(&pod("r", None, "Running", None, 0)));
    }
}
