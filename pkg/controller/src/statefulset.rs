//! The StatefulSet controller: pods with stable names `<set>-<ordinal>`, made and replaced in
//! order, as kube-controller-manager's `pkg/controller/statefulset` does.
//!
//! One sync of a StatefulSet key:
//! 1. **revisions** ([`crate::history`]): the template's ControllerRevision is the *update
//!    revision*; `status.currentRevision` is the one the pods ran before, until every pod runs
//!    the update revision;
//! 2. **plan** ([`plan`], pure): walk the ordinals `start … start+replicas-1` in order — a
//!    missing pod is created, a failed one deleted (to be made again); with `OrderedReady`
//!    (the default) the walk stops at the first pod that is not Running and Ready, so pod
//!    `n+1` starts only once pod `n` is Ready. Then the pods beyond the replicas go, highest
//!    ordinal first (one at a time, and only with every other pod Ready, when ordered). Then
//!    a `RollingUpdate` deletes the highest-ordinal pod not on the update revision, down to
//!    `partition`, one at a time and only while the others are Ready; the deleted pod comes
//!    back on the update revision at the next sync. `Parallel` creates and deletes without
//!    waiting; `OnDelete` replaces a pod only once someone deleted it;
//! 3. **pods** are named `<set>-<ordinal>` (the name is the guard against making one twice,
//!    so no expectations are needed), with `hostname` the pod's name and `subdomain` the
//!    set's `serviceName`, so the headless Service's DNS answers `<set>-0.<service>.<ns>…`,
//!    and the labels `controller-revision-hash`, `statefulset.kubernetes.io/pod-name` and
//!    `apps.kubernetes.io/pod-index`. An ordinal below the partition is made from the current
//!    revision's template;
//! 4. **status**: `replicas`, `readyReplicas`, `availableReplicas`, `currentReplicas`,
//!    `updatedReplicas`, `currentRevision`, `updateRevision`, `observedGeneration`.
//!
//! **Claims**: each of `volumeClaimTemplates` becomes a PersistentVolumeClaim
//! `<template>-<set>-<ordinal>` ([`claims_for`]), created before the pod (an existing one is
//! kept, so a pod made again finds the same data) and mounted by the pod as the volume named
//! like the template. `persistentVolumeClaimRetentionPolicy`: `whenDeleted: Delete` gives
//! each claim an owner reference to the set (the garbage collector deletes the claims with
//! the set); `whenScaled: Delete` deletes a condemned ordinal's claims with its pod on
//! scale-down. Both default to `Retain`: claims outlive the set and its pods.
//!
//! A `RollingUpdate` takes down at most `rollingUpdate.maxUnavailable` pods at once (an
//! integer or a percentage of `replicas` rounded down, at least 1; default 1), counting the
//! pods of the range that are unavailable already.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_core::ResourceExt;
use prometheus::Registry;
use rkube_client::events::{EventRecorder, EventType, object_reference};
use rkube_client::{Api, Client, DeleteParams, Patch, PatchParams, PostParams};
use rkube_informer::ObjectKey;
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::handler::{Deleted, HandlerFns};
use rkube_informer::store::{NAMESPACE_INDEX, Store};
use rkube_informer::workqueue::{RateLimiter, WorkQueue};
use serde_json::json;

use crate::Error;
use crate::controller_ref::{controller_of, new_controller_ref};
use crate::deployment::template_hash;
use crate::history::{self, REVISION_HASH, revision_name, template_of};
use crate::podutil::{is_available, is_ready};
use crate::worker::{Action, Syncer};

/// The label with the pod's name, so a Service can select one pod of the set.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
const KIND: &str = "StatefulSet";
const API_VERSION: &str = "apps/v1";

/// The StatefulSet controller; see the module docs.
pub struct StatefulSetController {
    client: Client,
    sets: Store<StatefulSet>,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    queue: WorkQueue<ObjectKey>,
    events: EventRecorder,
}

fn owner_key(pod: &Pod) -> Option<ObjectKey> {
    let owner = controller_of(&pod.metadata)?;
    (owner.kind == KIND && owner.api_version.starts_with("apps/"))
        .then(|| ObjectKey::new(pod.metadata.namespace.as_deref(), &owner.name))
}

impl StatefulSetController {
    /// Registers handlers on the factory's StatefulSet, Pod and ControllerRevision informers
    /// and a work queue named `statefulset`.
    pub fn new(factory: &SharedInformerFactory, client: Client, registry: Option<&Registry>) -> Arc<Self> {
        let sets = factory.informer::<StatefulSet>(None);
        let pods = factory.informer::<Pod>(None);
        let revisions = factory.informer::<ControllerRevision>(None);
        let controller = Arc::new(StatefulSetController {
            events: EventRecorder::new(client.clone(), "statefulset-controller", None),
            client,
            sets: sets.store(),
            pods: pods.store(),
            revisions: revisions.store(),
            queue: WorkQueue::new("statefulset", RateLimiter::default(), registry),
        });
        let (q1, q2, q3) = (controller.queue(), controller.queue(), controller.queue());
        sets.add_handler(
            HandlerFns::new()
                .on_add(move |s: &Arc<StatefulSet>| q1.add(ObjectKey::of(s.as_ref())))
                .on_update(move |_: &Arc<StatefulSet>, s: &Arc<StatefulSet>| q2.add(ObjectKey::of(s.as_ref())))
                .on_delete(move |d: Deleted<StatefulSet>| q3.add(ObjectKey::of(d.object().as_ref()))),
        );
        let (q1, q2, q3) = (controller.queue(), controller.queue(), controller.queue());
        pods.add_handler(
            HandlerFns::new()
                .on_add(move |pod: &Arc<Pod>| {
                    if let Some(key) = owner_key(pod) {
                        q1.add(key);
                    }
                })
                .on_update(move |old: &Arc<Pod>, pod: &Arc<Pod>| {
                    if old.metadata.resource_version != pod.metadata.resource_version
                        && let Some(key) = owner_key(pod)
                    {
                        q2.add(key);
                    }
                })
                .on_delete(move |d: Deleted<Pod>| {
                    if let Some(key) = owner_key(d.object()) {
                        q3.add(key);
                    }
                }),
        );
        controller
    }

    /// The controller's work queue of StatefulSet keys.
    pub fn queue(&self) -> WorkQueue<ObjectKey> {
        self.queue.clone()
    }
}

/// What the planner needs to know about one pod of the set.
#[derive(Clone, Debug)]
pub struct Member {
    /// The pod's name.
    pub name: String,
    /// The ControllerRevision it was made from.
    pub revision: String,
    /// Its phase is `Failed`.
    pub failed: bool,
    /// It is being deleted.
    pub terminating: bool,
    /// Running and Ready.
    pub ready: bool,
}

/// One change a sync makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Create the pod of this ordinal from this revision.
    Create(i32, String),
    /// Delete this pod.
    Delete(String),
}

/// How the set is run, for [`plan`].
#[derive(Clone, Debug)]
pub struct Rules {
    /// The first ordinal (`spec.ordinals.start`).
    pub start: i32,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `OrderedReady` (true) or `Parallel`.
    pub ordered: bool,
    /// The `RollingUpdate` partition; `None` for `OnDelete`.
    pub partition: Option<i32>,
    /// The revision pods below the partition are made from.
    pub current: String,
    /// The revision of the template now.
    pub update: String,
    /// How many pods a rolling update may have down at once (`rollingUpdate.maxUnavailable`,
    /// at least 1).
    pub max_unavailable: i32,
}

/// The changes of one sync (see the module docs), given the pods by ordinal.
pub fn plan(rules: &Rules, members: &BTreeMap<i32, Member>) -> Vec<Step> {
    let mut steps = Vec::new();
    let end = rules.start + rules.replicas.max(0);
    let in_range = |i: &i32| (rules.start..end).contains(i);
    let revision_for = |i: i32| match rules.partition {
        Some(partition) if i < rules.start + partition => rules.current.clone(),
        _ => rules.update.clone(),
    };
    for i in rules.start..end {
        match members.get(&i) {
            None => {
                steps.push(Step::Create(i, revision_for(i)));
                if rules.ordered {
                    return steps;
                }
            }
            Some(m) if m.failed && !m.terminating => {
                steps.push(Step::Delete(m.name.clone()));
                if rules.ordered {
                    return steps;
                }
            }
            Some(m) if (m.terminating || !m.ready) && rules.ordered => return steps,
            Some(_) => {}
        }
    }
    let all_ready = members.iter().filter(|(i, _)| in_range(i)).all(|(_, m)| m.ready && !m.terminating);
    for (_, m) in members.iter().rev().filter(|(i, _)| !in_range(i)) {
        if m.terminating {
            if rules.ordered {
                return steps;
            }
            continue;
        }
        if rules.ordered && !all_ready {
            return steps;
        }
        steps.push(Step::Delete(m.name.clone()));
        if rules.ordered {
            return steps;
        }
    }
    let Some(partition) = rules.partition else { return steps };
    if !steps.is_empty() {
        return steps;
    }
    // RollingUpdate: at most `maxUnavailable` pods of the range down at once, counting those
    // unavailable already; outdated pods go from the highest ordinal, down to the partition.
    let unavailable = members.iter().filter(|(i, m)| in_range(i) && (!m.ready || m.terminating)).count();
    let room = usize::try_from(rules.max_unavailable.max(1)).unwrap_or(1).saturating_sub(unavailable);
    let outdated = ((rules.start + partition.max(0))..end)
        .rev()
        .filter_map(|i| members.get(&i))
        .filter(|m| m.revision != rules.update && !m.terminating);
    steps.extend(outdated.take(room).map(|m| Step::Delete(m.name.clone())));
    steps
}

/// An int-or-percent of `total`, a percentage rounded down (as Kubernetes scales
/// `maxUnavailable` for StatefulSets).
fn scaled_down(value: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString, total: i32) -> Option<i32> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match value {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(text) => {
            let percent: i64 = text.strip_suffix('%')?.parse().ok()?;
            i32::try_from(percent * i64::from(total) / 100).ok()
        }
    }
}

/// The ordinal of a pod named `<set>-<ordinal>`.
fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

/// The pod of ordinal `ordinal`, from `template` of revision `revision`.
pub fn pod_for(
    set: &StatefulSet,
    ordinal: i32,
    revision: &str,
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
) -> Pod {
    let name = format!("{}-{ordinal}", set.name_any());
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(REVISION_HASH.into(), revision.into());
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    let mut spec = template.spec.clone().unwrap_or_default();
    for claim in set.spec.volume_claim_templates.iter().flatten() {
        let volume_name = claim.name_any();
        let volumes = spec.volumes.get_or_insert_with(Vec::new);
        volumes.retain(|v| v.name != volume_name);
        volumes.push(Volume {
            name: volume_name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&volume_name, set, ordinal),
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    spec.hostname = Some(name.clone());
    if let Some(service) = set.spec.service_name.clone().filter(|s| !s.is_empty()) {
        spec.subdomain = Some(service);
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![new_controller_ref(API_VERSION, KIND, &set.metadata)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The name of the claim of template `template` for ordinal `ordinal`.
fn claim_name(template: &str, set: &StatefulSet, ordinal: i32) -> String {
    format!("{template}-{}-{ordinal}", set.name_any())
}

/// The claims of ordinal `ordinal`, one per `volumeClaimTemplates` entry, labelled with the
/// set's selector labels; owned by the set when its retention policy deletes them with it.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let selector_labels = set.spec.selector.match_labels.clone().unwrap_or_default();
    let delete_with_set =
        set.spec.persistent_volume_claim_retention_policy.as_ref().and_then(|p| p.when_deleted.as_deref())
            == Some("Delete");
    set.spec
        .volume_claim_templates
        .iter()
        .flatten()
        .map(|template| {
            let mut claim = template.clone();
            let mut labels = claim.metadata.labels.take().unwrap_or_default();
            labels.extend(selector_labels.clone());
            claim.metadata = ObjectMeta {
                name: Some(claim_name(&template.name_any(), set, ordinal)),
                namespace: set.metadata.namespace.clone(),
                labels: Some(labels),
                annotations: claim.metadata.annotations.take(),
                owner_references: delete_with_set.then(|| vec![new_controller_ref(API_VERSION, KIND, &set.metadata)]),
                ..ObjectMeta::default()
            };
            claim.status = None;
            claim
        })
        .collect()
}

fn revision_label(pod: &Pod) -> String {
    pod.metadata.labels.as_ref().and_then(|l| l.get(REVISION_HASH)).cloned().unwrap_or_default()
}

impl Syncer for StatefulSetController {
    type Key = ObjectKey;

    async fn sync(&self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(set) = self.sets.get(key) else { return Ok(Action::await_change()) };
        let namespace = key.namespace().unwrap_or_default().to_string();
        let uid = set.uid().unwrap_or_default();
        let name = set.name_any();
        let pods: Vec<Arc<Pod>> = self
            .pods
            .by_index(NAMESPACE_INDEX, &namespace)?
            .into_iter()
            .filter(|pod| controller_of(&pod.metadata).is_some_and(|owner| owner.uid == uid))
            .collect();
        let hash = template_hash(&set.spec.template);
        let update = revision_name(&set.metadata, &hash);
        let in_use: Vec<String> = pods.iter().map(|p| revision_label(p)).collect();
        let owner = history::Owner { meta: &set.metadata, api_version: API_VERSION, kind: KIND };
        let limit = set.spec.revision_history_limit.unwrap_or(10);
        let revisions =
            history::record(&self.client, &self.revisions, &owner, &set.spec.template, &hash, limit, &in_use).await?;
        let status = set.status.clone().unwrap_or_default();
        let current = status.current_revision.clone().filter(|c| !c.is_empty()).unwrap_or_else(|| update.clone());
        let members: BTreeMap<i32, Member> = pods
            .iter()
            .filter_map(|pod| {
                let ordinal = ordinal_of(&name, &pod.name_any())?;
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default();
                Some((
                    ordinal,
                    Member {
                        name: pod.name_any(),
                        revision: revision_label(pod),
                        failed: phase == "Failed",
                        terminating: pod.metadata.deletion_timestamp.is_some(),
                        ready: phase == "Running" && is_ready(pod),
                    },
                ))
            })
            .collect();
        let strategy = set.spec.update_strategy.as_ref();
        let rolling = strategy.and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate";
        let rules = Rules {
            start: set.spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0),
            replicas: set.spec.replicas.unwrap_or(1),
            ordered: set.spec.pod_management_policy.as_deref() != Some("Parallel"),
            partition: rolling
                .then(|| strategy.and_then(|s| s.rolling_update.as_ref()).and_then(|r| r.partition).unwrap_or(0)),
            current: current.clone(),
            update: update.clone(),
            max_unavailable: strategy
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.max_unavailable.as_ref())
                .and_then(|m| scaled_down(m, set.spec.replicas.unwrap_or(1)))
                .unwrap_or(1)
                .max(1),
        };
        if set.metadata.deletion_timestamp.is_none() {
            let steps = plan(&rules, &members);
            self.apply(&set, &steps, &revisions, rules.start + rules.replicas).await?;
        }
        // Status.
        let now = Timestamp::now();
        let min_ready = set.spec.min_ready_seconds.unwrap_or(0);
        let live: Vec<&Arc<Pod>> = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        let count = |f: &dyn Fn(&Pod) -> bool| i32::try_from(live.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX);
        let updated = count(&|p| revision_label(p) == update);
        let replicas = set.spec.replicas.unwrap_or(1);
        let current = if updated >= replicas && i32::try_from(live.len()).unwrap_or(0) == replicas {
            update.clone()
        } else {
            current
        };
        let new_status = json!({
            "observedGeneration": set.metadata.generation,
            "replicas": i32::try_from(live.len()).unwrap_or(i32::MAX),
            "readyReplicas": count(&|p| is_ready(p)),
            "availableReplicas": count(&|p| is_available(p, min_ready, now)),
            "currentReplicas": count(&|p| revision_label(p) == current),
            "updatedReplicas": updated,
            "currentRevision": current,
            "updateRevision": update,
        });
        let old = serde_json::to_value(&status).unwrap_or_default();
        let changed = new_status.as_object().is_some_and(|fields| {
            fields
                .iter()
                .any(|(k, v)| old.get(k).unwrap_or(&json!(0)) != v && !(v == &json!(0) && old.get(k).is_none()))
        });
        if changed {
            let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &namespace);
            match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": new_status}))).await {
                Ok(_) => {}
                Err(error) if error.is_not_found() => {}
                Err(source) => return Err(Error::UpdateStatus { key: key.clone(), source }),
            }
        }
        let waiting_for_available =
            min_ready > 0 && live.iter().any(|p| is_ready(p) && !is_available(p, min_ready, now));
        Ok(if waiting_for_available {
            Action::requeue(std::time::Duration::from_secs(u64::try_from(min_ready).unwrap_or(0) + 1))
        } else {
            Action::await_change()
        })
    }
}

impl StatefulSetController {
    async fn apply(
        &self,
        set: &StatefulSet,
        steps: &[Step],
        revisions: &[Arc<ControllerRevision>],
        end: i32,
    ) -> Result<(), Error> {
        let namespace = set.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &namespace);
        let delete_claims_on_scale_down =
            set.spec.persistent_volume_claim_retention_policy.as_ref().and_then(|p| p.when_scaled.as_deref())
                == Some("Delete");
        let this = object_reference(set);
        let key = ObjectKey::of(set);
        let results = join_all(steps.iter().map(|step| async {
            match step {
                Step::Create(ordinal, revision) => {
                    let template = revisions
                        .iter()
                        .find(|r| r.name_any() == *revision)
                        .and_then(|r| template_of(r))
                        .unwrap_or_else(|| set.spec.template.clone());
                    let pod = pod_for(set, *ordinal, revision, &template);
                    let name = pod.name_any();
                    for claim in claims_for(set, *ordinal) {
                        match claims.create(&PostParams::default(), &claim).await {
                            Ok(_) => {}
                            // Kept from an earlier pod of this ordinal: its data is why it is kept.
                            Err(error) if error.is_already_exists() => {}
                            Err(source) => {
                                let message = format!(
                                    "create Claim {} for Pod {name} in StatefulSet {} failed error: {source}",
                                    claim.name_any(),
                                    set.name_any()
                                );
                                self.events.record(&this, EventType::Warning, "FailedCreate", "Create", message);
                                return Err(Error::CreatePods { key: key.clone(), source });
                            }
                        }
                    }
                    match api.create(&PostParams::default(), &pod).await {
                        Ok(_) => {
                            let message = format!("create Pod {name} in StatefulSet {} successful", set.name_any());
                            self.events.record(&this, EventType::Normal, "SuccessfulCreate", "Create", message);
                            Ok(())
                        }
                        Err(error) if error.is_already_exists() => Ok(()),
                        Err(source) => {
                            let message =
                                format!("create Pod {name} in StatefulSet {} failed error: {source}", set.name_any());
                            self.events.record(&this, EventType::Warning, "FailedCreate", "Create", message);
                            Err(Error::CreatePods { key: key.clone(), source })
                        }
                    }
                }
                Step::Delete(name) => match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {
                        let message = format!("delete Pod {name} in StatefulSet {} successful", set.name_any());
                        self.events.record(&this, EventType::Normal, "SuccessfulDelete", "Delete", message);
                        let condemned = ordinal_of(&set.name_any(), name).filter(|o| *o >= end);
                        if let Some(ordinal) = condemned.filter(|_| delete_claims_on_scale_down) {
                            for claim in claims_for(set, ordinal) {
                                match claims.delete(&claim.name_any(), &DeleteParams::default()).await {
                                    Ok(_) => {}
                                    Err(error) if error.is_not_found() => {}
                                    Err(source) => return Err(Error::DeletePods { key: key.clone(), source }),
                                }
                            }
                        }
                        Ok(())
                    }
                    Err(error) if error.is_not_found() => Ok(()),
                    Err(source) => Err(Error::DeletePods { key: key.clone(), source }),
                },
            }
        }))
        .await;
        results.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn member(name: &str, revision: &str, ready: bool) -> Member {
        Member { name: name.into(), revision: revision.into(), failed: false, terminating: false, ready }
    }

    fn rules(replicas: i32, ordered: bool, partition: Option<i32>) -> Rules {
        Rules {
            start: 0,
            replicas,
            ordered,
            partition,
            current: "web-1".into(),
            update: "web-2".into(),
            max_unavailable: 1,
        }
    }

    fn members(list: &[(i32, Member)]) -> BTreeMap<i32, Member> {
        list.iter().cloned().collect()
    }

    #[test]
    fn ordered_ready_makes_pod_n_plus_1_only_once_pod_n_is_ready() {
        assert_eq!(plan(&rules(3, true, Some(0)), &BTreeMap::new()), [Step::Create(0, "web-2".into())]);
        let one = members(&[(0, member("web-0", "web-2", false))]);
        assert!(plan(&rules(3, true, Some(0)), &one).is_empty(), "web-0 not Ready yet");
        let ready = members(&[(0, member("web-0", "web-2", true))]);
        assert_eq!(plan(&rules(3, true, Some(0)), &ready), [Step::Create(1, "web-2".into())]);
        assert_eq!(
            plan(&rules(3, false, Some(0)), &BTreeMap::new()),
            [Step::Create(0, "web-2".into()), Step::Create(1, "web-2".into()), Step::Create(2, "web-2".into())],
            "Parallel"
        );
    }

    #[test]
    fn scale_down_removes_the_highest_ordinal_first_one_at_a_time() {
        let three = members(&[
            (0, member("web-0", "web-2", true)),
            (1, member("web-1", "web-2", true)),
            (2, member("web-2", "web-2", true)),
        ]);
        assert_eq!(plan(&rules(1, true, Some(0)), &three), [Step::Delete("web-2".into())]);
        assert_eq!(
            plan(&rules(1, false, Some(0)), &three),
            [Step::Delete("web-2".into()), Step::Delete("web-1".into())]
        );
    }

    #[test]
    fn a_rolling_update_replaces_from_the_highest_ordinal_down_to_the_partition() {
        let old = members(&[
            (0, member("web-0", "web-1", true)),
            (1, member("web-1", "web-1", true)),
            (2, member("web-2", "web-1", true)),
        ]);
        assert_eq!(plan(&rules(3, true, Some(0)), &old), [Step::Delete("web-2".into())]);
        assert_eq!(plan(&rules(3, true, Some(2)), &old), [Step::Delete("web-2".into())]);
        let mut half = old.clone();
        half.insert(2, member("web-2", "web-2", true));
        assert!(plan(&rules(3, true, Some(2)), &half).is_empty(), "the partition keeps web-0 and web-1");
        assert_eq!(plan(&rules(3, true, Some(0)), &half), [Step::Delete("web-1".into())]);
        assert!(plan(&rules(3, true, None), &old).is_empty(), "OnDelete");
        // Below the partition, a missing pod comes back on the current revision.
        let mut gone = half.clone();
        gone.remove(&0);
        assert_eq!(plan(&rules(3, true, Some(2)), &gone), [Step::Create(0, "web-1".into())]);
    }

    #[test]
    fn max_unavailable_lets_a_rolling_update_take_several_at_once_counting_those_down_already() {
        let old = members(&[
            (0, member("web-0", "web-1", true)),
            (1, member("web-1", "web-1", true)),
            (2, member("web-2", "web-1", true)),
            (3, member("web-3", "web-1", true)),
        ]);
        let wide = Rules { max_unavailable: 2, ..rules(4, false, Some(0)) };
        assert_eq!(plan(&wide, &old), [Step::Delete("web-3".into()), Step::Delete("web-2".into())]);
        let mut one_down = old.clone();
        one_down.insert(0, member("web-0", "web-1", false));
        assert_eq!(plan(&wide, &one_down), [Step::Delete("web-3".into())], "web-0 is down already");
        assert_eq!(scaled_down(&IntOrString::String("50%".into()), 5), Some(2), "percentages round down");
    }

    #[test]
    fn ordinals_come_from_names() {
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webby-1"), None);
    }

    #[test]
    fn each_ordinal_gets_its_own_claims_mounted_under_the_template_name() {
        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "default", "uid": "s1"},
            "spec": {"selector": {"matchLabels": {"app": "db"}}, "serviceName": "db",
                     "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete"},
                     "template": {"metadata": {"labels": {"app": "db"}},
                                  "spec": {"containers": [{"name": "c", "image": "db"}],
                                           "volumes": [{"name": "data", "emptyDir": {}}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"},
                         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}
        }))
        .expect("set");
        let claims = claims_for(&set, 2);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].name_any(), "data-db-2");
        assert_eq!(claims[0].labels().get("app").map(String::as_str), Some("db"));
        let owners = claims[0].metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.iter().map(|o| o.uid.as_str()).collect::<Vec<_>>(), ["s1"], "whenDeleted: Delete");
        let pod = pod_for(&set, 2, "db-1", &set.spec.template);
        let volumes = pod.spec.and_then(|s| s.volumes).unwrap_or_default();
        assert_eq!(volumes.len(), 1, "the claim replaces the template's volume of that name");
        assert_eq!(volumes[0].persistent_volume_claim.as_ref().map(|c| c.claim_name.as_str()), Some("data-db-2"));
    }
}
