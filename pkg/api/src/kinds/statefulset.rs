//! StatefulSet (apps/v1): pods with stable identities — `<name>-0`, `<name>-1`, … — created
//! in order, each reachable by name through its headless Service (`hostname` and `subdomain`),
//! and updated one at a time from the highest ordinal down (the controller-manager's
//! `statefulset` controller).
//!
//! Its strategy, as Kubernetes' apps/v1 defaulters and validation: `replicas: 1`,
//! `podManagementPolicy: OrderedReady`, `updateStrategy: RollingUpdate` with `partition: 0`,
//! `revisionHistoryLimit: 10`, `persistentVolumeClaimRetentionPolicy` `Retain`/`Retain` and the
//! template's pod defaults; a new StatefulSet's status is reset; the selector must match the
//! template's labels (pods restart `Always`); an update may change only `replicas`,
//! `ordinals`, `template`, `updateStrategy`, `persistentVolumeClaimRetentionPolicy` and
//! `minReadySeconds`, as Kubernetes says.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetStatus,
    StatefulSetUpdateStrategy,
};
use serde_json::Value;

use crate::columns::{
    AGE, CONTAINERS_DESCRIPTION, Column, IMAGES_DESCRIPTION, NAME, age_cell, column, container_cells, int, name_cell,
};
use crate::defaulting;
use crate::field::FieldError;
use crate::registry::{ResourceDef, Subresource};
use crate::strategy::{Strategy, StrategyFor};
use crate::validation::{non_negative, validate_controller_template};

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "apps",
    version: "v1",
    kind: "StatefulSet",
    plural: "statefulsets",
    singular: "statefulset",
    namespaced: true,
    short_names: &["sts"],
    categories: &["all"],
    subresources: &[Subresource::Status, Subresource::Scale],
    field_labels: &[],
    strategy: &StrategyFor::<StatefulSet>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for StatefulSet {
    fn set_defaults(&mut self) {
        let spec = &mut self.spec;
        spec.replicas.get_or_insert(1);
        spec.pod_management_policy.get_or_insert_with(|| "OrderedReady".into());
        let strategy = spec.update_strategy.get_or_insert_with(StatefulSetUpdateStrategy::default);
        if strategy.type_.as_deref().is_none_or(str::is_empty) {
            strategy.type_ = Some("RollingUpdate".into());
        }
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            strategy
                .rolling_update
                .get_or_insert_with(RollingUpdateStatefulSetStrategy::default)
                .partition
                .get_or_insert(0);
        }
        spec.revision_history_limit.get_or_insert(10);
        let policy = spec
            .persistent_volume_claim_retention_policy
            .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
        policy.when_deleted.get_or_insert_with(|| "Retain".into());
        policy.when_scaled.get_or_insert_with(|| "Retain".into());
        defaulting::default_pod_template(&mut spec.template);
    }

    /// The status is the controller's.
    fn prepare_for_create(&mut self) {
        self.status = Some(StatefulSetStatus::default());
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = &self.spec;
        non_negative(spec.replicas, "spec.replicas", &mut errs);
        non_negative(spec.min_ready_seconds, "spec.minReadySeconds", &mut errs);
        non_negative(spec.revision_history_limit, "spec.revisionHistoryLimit", &mut errs);
        if let Some(start) = spec.ordinals.as_ref().and_then(|o| o.start) {
            non_negative(Some(start), "spec.ordinals.start", &mut errs);
        }
        // A container may mount a volumeClaimTemplate by its name: the controller adds the
        // claim as a volume of that name to each pod.
        let mut template = spec.template.clone();
        if let Some(pod) = template.spec.as_mut() {
            let volumes = pod.volumes.get_or_insert_with(Vec::new);
            for claim in spec.volume_claim_templates.iter().flatten() {
                let name = claim.metadata.name.clone().unwrap_or_default();
                volumes.retain(|v| v.name != name);
                volumes.push(k8s_openapi::api::core::v1::Volume {
                    name: name.clone(),
                    persistent_volume_claim: Some(k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource {
                        claim_name: name,
                        read_only: None,
                    }),
                    ..Default::default()
                });
            }
        }
        validate_controller_template(&spec.selector, Some(&template), &["Always"], &mut errs);
        for (i, claim) in spec.volume_claim_templates.iter().flatten().enumerate() {
            if claim.metadata.name.as_deref().is_none_or(str::is_empty) {
                errs.push(FieldError::required(format!("spec.volumeClaimTemplates[{i}].metadata.name"), ""));
            }
        }
        let policy = spec.pod_management_policy.as_deref().unwrap_or("OrderedReady");
        if !matches!(policy, "OrderedReady" | "Parallel") {
            errs.push(FieldError::not_supported("spec.podManagementPolicy", policy, &["OrderedReady", "Parallel"]));
        }
        let strategy = spec.update_strategy.as_ref();
        match strategy.and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") {
            "RollingUpdate" => {
                let partition = strategy.and_then(|s| s.rolling_update.as_ref()).and_then(|r| r.partition);
                non_negative(partition, "spec.updateStrategy.rollingUpdate.partition", &mut errs);
                let max = strategy.and_then(|s| s.rolling_update.as_ref()).and_then(|r| r.max_unavailable.as_ref());
                if let Some(max) = max {
                    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
                    let valid = match max {
                        IntOrString::Int(n) => *n > 0,
                        IntOrString::String(text) => text
                            .strip_suffix('%')
                            .and_then(|p| p.parse::<i64>().ok())
                            .is_some_and(|p| (1..=100).contains(&p)),
                    };
                    if !valid {
                        let shown = match max {
                            IntOrString::Int(n) => n.to_string(),
                            IntOrString::String(text) => text.clone(),
                        };
                        errs.push(FieldError::invalid(
                            "spec.updateStrategy.rollingUpdate.maxUnavailable",
                            shown,
                            "must be greater than 0, or a percentage from 1% to 100%",
                        ));
                    }
                }
            }
            "OnDelete" => {
                if strategy.and_then(|s| s.rolling_update.as_ref()).is_some() {
                    errs.push(FieldError::invalid(
                        "spec.updateStrategy.rollingUpdate",
                        "",
                        "only allowed for updateStrategy 'RollingUpdate'",
                    ));
                }
            }
            other => {
                errs.push(FieldError::not_supported("spec.updateStrategy.type", other, &["OnDelete", "RollingUpdate"]))
            }
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mutable = |spec: &k8s_openapi::api::apps::v1::StatefulSetSpec| {
            let mut spec = spec.clone();
            spec.replicas = None;
            spec.ordinals = None;
            spec.template = Default::default();
            spec.update_strategy = None;
            spec.persistent_volume_claim_retention_policy = None;
            spec.min_ready_seconds = None;
            spec
        };
        if mutable(&self.spec) != mutable(&old.spec) {
            return vec![FieldError::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            )];
        }
        Vec::new()
    }
}

const COLUMNS: &[Column] = &[
    NAME,
    column("Ready", "string", "Number of the pod with ready state", 0),
    AGE,
    column("Containers", "string", CONTAINERS_DESCRIPTION, 1),
    column("Images", "string", IMAGES_DESCRIPTION, 1),
];

/// printers.go's `printStatefulSet`: `ready/replicas`.
fn row(sts: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(sts);
    let ready = format!("{}/{}", int(sts, &["status", "readyReplicas"]), int(sts, &["spec", "replicas"]));
    vec![name_cell(sts), ready.into(), age_cell(sts, now), containers.into(), images.into()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sts() -> StatefulSet {
        let mut sts: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "w", "image": "nginx"}]}}}}))
        .expect("sts");
        sts.set_defaults();
        sts
    }

    #[test]
    fn defaults_are_ordered_ready_and_a_rolling_update_from_partition_0() {
        let sts = sts();
        assert_eq!(sts.spec.pod_management_policy.as_deref(), Some("OrderedReady"));
        let strategy = serde_json::to_value(&sts.spec.update_strategy).expect("json");
        assert_eq!(strategy, json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
        assert!(sts.validate().is_empty(), "{:?}", sts.validate());
    }

    #[test]
    fn only_replicas_template_and_strategy_may_change() {
        let old = sts();
        let mut scaled = old.clone();
        scaled.spec.replicas = Some(5);
        scaled.spec.template.spec.as_mut().expect("spec").containers[0].image = Some("nginx:2".into());
        assert!(scaled.validate_update(&old).is_empty());
        let mut renamed = old.clone();
        renamed.spec.service_name = Some("other".into());
        assert_eq!(renamed.validate_update(&old)[0].field, "spec");
    }

    #[test]
    fn rows_show_ready_of_replicas() {
        let sts = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3}, "status": {"readyReplicas": 2}});
        assert_eq!(row(&sts, Timestamp::now())[1], json!("2/3"));
    }

    #[test]
    fn containers_may_mount_a_volume_claim_template_by_name() {
        let mut set = sts();
        let pod = set.spec.template.spec.as_mut().expect("spec");
        pod.containers[0].volume_mounts =
            Some(vec![serde_json::from_value(json!({"name": "data", "mountPath": "/data"})).expect("mount")]);
        assert_eq!(set.validate().len(), 1, "no volume named data yet");
        set.spec.volume_claim_templates = Some(vec![
            serde_json::from_value(json!({"metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
            .expect("claim"),
        ]);
        assert!(set.validate().is_empty(), "{:?}", set.validate());
    }
}
