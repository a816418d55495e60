//! The disruption controller (kube-controller-manager's `disruption`): every
//! PodDisruptionBudget's `status` says how many of its pods may be disrupted now, which is
//! what the apiserver's `pods/eviction` (and so `kubectl drain`) obeys.
//!
//! For a budget (key `namespace/name`) the sync ([`compute`]) takes the pods of its
//! namespace its selector selects (an empty selector selects none, as in policy/v1) that
//! have not ended, and:
//! - `expectedPods`: with an integer `minAvailable`, the number of those pods; otherwise
//!   (a percentage, or `maxUnavailable`) the desired scale of their controllers — the
//!   `spec.replicas` of each ReplicaSet owning some — so a pod being replaced still counts;
//! - `currentHealthy`: those Ready, not being deleted and not in `disruptedPods`;
//! - `desiredHealthy`: `minAvailable` (a percentage of `expectedPods`, rounded up), or
//!   `expectedPods - maxUnavailable`;
//! - `disruptionsAllowed`: `currentHealthy - desiredHealthy`, at least 0, with the
//!   condition `DisruptionAllowed` (`SufficientPods`/`InsufficientPods`) and
//!   `observedGeneration`, which the apiserver checks before it trusts the numbers.
//!
//! `disruptedPods` is where the apiserver's eviction notes each pod it took a disruption for,
//! before the pod's deletion reaches this controller's cache: such a pod does not count as
//! healthy, so a sync that still sees it cannot hand the same disruption out twice. An entry
//! is dropped once the pod is gone or terminating, or after [`DELETION_TIMEOUT`] (the
//! deletion never came), and the budget is synced again then.
//!
//! A budget is synced when it is added or changed, and the budgets of a namespace when one of
//! its pods is added, changes or is deleted (an eviction makes its pod terminating, which
//! lowers `currentHealthy` here).

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube_core::ResourceExt;
use prometheus::Registry;
use rkube_api::kinds::poddisruptionbudget::scaled;
use rkube_api::selector::LabelSelector;
use rkube_client::{Api, Client, PostParams};
use rkube_informer::ObjectKey;
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::handler::{Deleted, HandlerFns};
use rkube_informer::store::Store;
use rkube_informer::workqueue::{RateLimiter, WorkQueue};

use crate::Error;
use crate::controller_ref::controller_of;
use crate::podutil::is_ready;
use crate::worker::{Action, Syncer};

/// How long a pod in `disruptedPods` stays uncounted while its deletion has not been seen
/// (Kubernetes' `DeletionTimeout`).
pub const DELETION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Keeps every PodDisruptionBudget's status current.
pub struct DisruptionController {
    client: Client,
    budgets: Store<PodDisruptionBudget>,
    pods: Store<Pod>,
    replica_sets: Store<ReplicaSet>,
    queue: WorkQueue<ObjectKey>,
}

impl DisruptionController {
    /// Registers handlers on the factory's PodDisruptionBudget, Pod and ReplicaSet informers
    /// and a work queue named `disruption`.
    pub fn new(factory: &SharedInformerFactory, client: Client, registry: Option<&Registry>) -> Arc<Self> {
        let budgets = factory.informer::<PodDisruptionBudget>(None);
        let pods = factory.informer::<Pod>(None);
        let replica_sets = factory.informer::<ReplicaSet>(None);
        let queue = WorkQueue::new("disruption", RateLimiter::default(), registry);
        let controller = Arc::new(DisruptionController {
            client,
            budgets: budgets.store(),
            pods: pods.store(),
            replica_sets: replica_sets.store(),
            queue: queue.clone(),
        });
        let (q1, q2) = (queue.clone(), queue);
        budgets.add_handler(
            HandlerFns::new().on_add(move |b: &Arc<PodDisruptionBudget>| q1.add(ObjectKey::of(b.as_ref()))).on_update(
                move |_: &Arc<PodDisruptionBudget>, b: &Arc<PodDisruptionBudget>| {
                    q2.add(ObjectKey::of(b.as_ref()));
                },
            ),
        );
        let (c1, c2, c3, c4) = (controller.clone(), controller.clone(), controller.clone(), controller.clone());
        pods.add_handler(
            HandlerFns::new()
                .on_add(move |pod: &Arc<Pod>| c1.enqueue_namespace(pod.namespace().as_deref()))
                .on_update(move |_: &Arc<Pod>, pod: &Arc<Pod>| c2.enqueue_namespace(pod.namespace().as_deref()))
                .on_delete(move |deleted: Deleted<Pod>| c3.enqueue_namespace(deleted.object().namespace().as_deref())),
        );
        replica_sets.add_handler(HandlerFns::new().on_update(move |old: &Arc<ReplicaSet>, rs: &Arc<ReplicaSet>| {
            if old.spec.replicas != rs.spec.replicas {
                c4.enqueue_namespace(rs.namespace().as_deref());
            }
        }));
        controller
    }

    /// The work queue (for [`crate::worker::run_workers`]).
    pub fn queue(&self) -> WorkQueue<ObjectKey> {
        self.queue.clone()
    }

    fn enqueue_namespace(&self, namespace: Option<&str>) {
        for budget in self.budgets.list().iter().filter(|b| b.namespace().as_deref() == namespace) {
            self.queue.add(ObjectKey::of(budget.as_ref()));
        }
    }
}

/// The numbers of a budget's status at `now` (see the module docs); `scale_of` gives the
/// desired replicas of a pod's ReplicaSet by the ReplicaSet's name.
pub fn compute(
    budget: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    scale_of: impl Fn(&str) -> Option<i32>,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let spec = budget.spec.clone().unwrap_or_default();
    let selector = spec
        .selector
        .as_ref()
        .filter(|s| {
            s.match_labels.as_ref().is_some_and(|m| !m.is_empty())
                || s.match_expressions.as_ref().is_some_and(|e| !e.is_empty())
        })
        .and_then(|s| LabelSelector::from_meta(s).ok());
    let selected: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|pod| selector.as_ref().is_some_and(|s| s.matches(&pod.labels().clone())))
        .filter(|pod| !matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
        .collect();
    let disrupted: BTreeMap<String, Time> = budget
        .status
        .as_ref()
        .and_then(|s| s.disrupted_pods.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|(name, at)| {
            let alive = selected.iter().any(|pod| pod.name_any() == *name && pod.metadata.deletion_timestamp.is_none());
            alive && at.0 + DELETION_TIMEOUT > now
        })
        .collect();
    let healthy = selected
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none() && is_ready(pod))
        .filter(|pod| !disrupted.contains_key(&pod.name_any()))
        .count();
    let healthy = i32::try_from(healthy).unwrap_or(i32::MAX);
    let count = i32::try_from(selected.len()).unwrap_or(i32::MAX);
    let by_scale = || {
        let mut scales = BTreeMap::new();
        let mut loose = 0;
        for pod in &selected {
            match controller_of(&pod.metadata).filter(|owner| owner.kind == "ReplicaSet") {
                Some(owner) => {
                    scales.entry(owner.name.clone()).or_insert_with(|| scale_of(&owner.name).unwrap_or(0));
                }
                None => loose += 1,
            }
        }
        scales.values().fold(loose, |a: i32, b| a.saturating_add(*b))
    };
    let (expected, desired) = match (&spec.min_available, &spec.max_unavailable) {
        (Some(IntOrString::Int(min)), _) => (count, *min),
        (Some(min), _) => {
            let expected = by_scale();
            (expected, scaled(min, expected).unwrap_or(expected))
        }
        (None, Some(max)) => {
            let expected = by_scale();
            (expected, (expected - scaled(max, expected).unwrap_or(0)).max(0))
        }
        (None, None) => (count, 0),
    };
    let allowed = (healthy - desired).max(0);
    PodDisruptionBudgetStatus {
        observed_generation: budget.metadata.generation,
        disruptions_allowed: Some(allowed),
        current_healthy: Some(healthy),
        desired_healthy: Some(desired),
        expected_pods: Some(expected),
        conditions: Some(vec![Condition {
            type_: "DisruptionAllowed".into(),
            status: if allowed > 0 { "True" } else { "False" }.into(),
            reason: if allowed > 0 { "SufficientPods" } else { "InsufficientPods" }.into(),
            message: String::new(),
            observed_generation: budget.metadata.generation,
            last_transition_time: Time(Timestamp::now()),
        }]),
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
    }
}

/// When the first entry of `disruptedPods` times out: the budget must be synced again then.
fn recheck_at(status: &PodDisruptionBudgetStatus) -> Option<Timestamp> {
    status.disrupted_pods.as_ref()?.values().map(|at| at.0 + DELETION_TIMEOUT).min()
}

/// Whether two statuses say the same, transition times aside.
fn same(a: &PodDisruptionBudgetStatus, b: &PodDisruptionBudgetStatus) -> bool {
    let strip = |s: &PodDisruptionBudgetStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        }
        s
    };
    strip(a) == strip(b)
}

impl Syncer for DisruptionController {
    type Key = ObjectKey;

    async fn sync(&self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(current) = self.budgets.get(key) else { return Ok(Action::await_change()) };
        let namespace = key.namespace().unwrap_or_default();
        let pods: Vec<Arc<Pod>> =
            self.pods.list().into_iter().filter(|p| p.namespace().as_deref() == Some(namespace)).collect();
        let scale_of =
            |name: &str| self.replica_sets.get(&ObjectKey::new(Some(namespace), name)).and_then(|rs| rs.spec.replicas);
        let now = Timestamp::now();
        let mut status = compute(&current, &pods, scale_of, now);
        let next = match recheck_at(&status) {
            Some(at) => Action::requeue(now.duration_until(at).unsigned_abs()),
            None => Action::await_change(),
        };
        if let Some(old) = &current.status {
            if same(old, &status) {
                return Ok(next);
            }
            // Keep the transition time when the condition did not flip.
            let old_condition = old.conditions.iter().flatten().find(|c| c.type_ == "DisruptionAllowed");
            for condition in status.conditions.iter_mut().flatten() {
                if let Some(old) = old_condition.filter(|old| old.status == condition.status) {
                    condition.last_transition_time = old.last_transition_time.clone();
                }
            }
        }
        let mut updated = (*current).clone();
        updated.status = Some(status);
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), namespace);
        match api.replace_status(key.name(), &PostParams::default(), &updated).await {
            Ok(_) => Ok(next),
            // An eviction took a disruption meanwhile, or the budget went: look again.
            Err(rkube_client::Error::Conflict(_) | rkube_client::Error::NotFound(_)) => {
                Ok(Action::requeue(std::time::Duration::from_millis(100)))
            }
            Err(source) => Err(Error::UpdateStatus { key: key.clone(), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ready: bool, owner: Option<&str>) -> Arc<Pod> {
        let owners = owner.map(
            |o| json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": o, "uid": "u", "controller": true}]),
        );
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}, "ownerReferences": owners},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
            }))
            .expect("pod"),
        )
    }

    fn budget(spec: serde_json::Value) -> PodDisruptionBudget {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "web"}});
        serde_json::from_value(json!({"metadata": {"name": "web", "generation": 3}, "spec": spec})).expect("pdb")
    }

    #[test]
    fn min_available_counts_the_selected_pods() {
        let pods = [pod("a", true, None), pod("b", true, None), pod("c", false, None)];
        let status = compute(&budget(json!({"minAvailable": 1})), &pods, |_| None, Timestamp::now());
        assert_eq!(
            (status.expected_pods, status.current_healthy, status.desired_healthy, status.disruptions_allowed),
            (Some(3), Some(2), Some(1), Some(1))
        );
        assert_eq!(status.observed_generation, Some(3));
        let status = compute(&budget(json!({"minAvailable": 2})), &pods, |_| None, Timestamp::now());
        assert_eq!(status.disruptions_allowed, Some(0));
        assert_eq!(status.conditions.expect("condition")[0].reason, "InsufficientPods");
    }

    #[test]
    fn max_unavailable_and_percentages_use_the_controllers_scale() {
        // A ReplicaSet of 4: one pod is missing (being replaced), so 3 exist, all ready.
        let pods = [pod("a", true, Some("rs")), pod("b", true, Some("rs")), pod("c", true, Some("rs"))];
        let status = compute(&budget(json!({"maxUnavailable": 1})), &pods, |_| Some(4), Timestamp::now());
        assert_eq!(
            (status.expected_pods, status.desired_healthy, status.disruptions_allowed),
            (Some(4), Some(3), Some(0))
        );
        let status = compute(&budget(json!({"minAvailable": "50%"})), &pods, |_| Some(4), Timestamp::now());
        assert_eq!((status.desired_healthy, status.disruptions_allowed), (Some(2), Some(1)));
    }

    #[test]
    fn a_pod_the_apiserver_disrupted_is_not_healthy_until_its_deletion_is_seen() {
        let now = Timestamp::now();
        let pods = [pod("a", true, None), pod("b", true, None), pod("c", true, None)];
        let mut pdb = budget(json!({"minAvailable": 2}));
        let evicted = Time(now - std::time::Duration::from_secs(5));
        pdb.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: Some([("a".to_string(), evicted.clone()), ("gone".to_string(), evicted)].into()),
            ..Default::default()
        });
        // The cache still holds `a`: it is not counted, so nothing more may go.
        let status = compute(&pdb, &pods, |_| None, now);
        assert_eq!((status.current_healthy, status.disruptions_allowed), (Some(2), Some(0)));
        let kept: Vec<&String> = status.disrupted_pods.iter().flatten().map(|(name, _)| name).collect();
        assert_eq!(kept, ["a"], "a pod no longer there leaves the map");
        assert_eq!(recheck_at(&status), Some(now - std::time::Duration::from_secs(5) + DELETION_TIMEOUT));
        // Its deletion never came: after the timeout it counts again.
        let status = compute(&pdb, &pods, |_| None, now + DELETION_TIMEOUT);
        assert_eq!((status.current_healthy, status.disrupted_pods), (Some(3), None));
    }
}
