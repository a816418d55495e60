//! ReplicationController (v1): the ReplicaSet's predecessor, still in older manifests and in
//! client libraries' examples. Same job (keep `replicas` pods of a template), a plain map for
//! a selector; the controller-manager runs it on the ReplicaSet controller's code.
//!
//! Its strategy, as Kubernetes' v1 defaulters and validation: the selector defaults to the
//! template's labels, and so do the object's own labels; `replicas: 1`; a new one's status is
//! reset; the selector must be non-empty and match the template's labels, whose pods restart
//! `Always`.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ReplicationController, ReplicationControllerStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use crate::columns::{
    AGE, CONTAINERS_DESCRIPTION, Column, IMAGES_DESCRIPTION, NAME, age_cell, at, column, container_cells, int,
    name_cell,
};
use crate::defaulting;
use crate::field::FieldError;
use crate::registry::{ResourceDef, Subresource};
use crate::strategy::{Strategy, StrategyFor};
use crate::validation::{non_negative, validate_controller_template};

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    kind: "ReplicationController",
    plural: "replicationcontrollers",
    singular: "replicationcontroller",
    namespaced: true,
    short_names: &["rc"],
    categories: &["all"],
    subresources: &[Subresource::Status, Subresource::Scale],
    field_labels: &["status.replicas"],
    strategy: &StrategyFor::<ReplicationController>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for ReplicationController {
    fn set_defaults(&mut self) {
        let Some(spec) = self.spec.as_mut() else { return };
        let template_labels = spec.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone());
        if spec.selector.as_ref().is_none_or(|s| s.is_empty()) {
            spec.selector.clone_from(&template_labels);
        }
        if self.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
            self.metadata.labels = template_labels;
        }
        spec.replicas.get_or_insert(1);
        if let Some(template) = spec.template.as_mut() {
            defaulting::default_pod_template(template);
        }
    }

    /// The status is the controller's.
    fn prepare_for_create(&mut self) {
        self.status = Some(ReplicationControllerStatus::default());
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let Some(spec) = self.spec.as_ref() else { return vec![FieldError::required("spec", "")] };
        non_negative(spec.replicas, "spec.replicas", &mut errs);
        non_negative(spec.min_ready_seconds, "spec.minReadySeconds", &mut errs);
        let selector = LabelSelector { match_labels: spec.selector.clone(), match_expressions: None };
        validate_controller_template(&selector, spec.template.as_ref(), &["Always"], &mut errs);
        errs
    }
}

const COLUMNS: &[Column] = &[
    NAME,
    column("Desired", "integer", "Replicas is the number of desired replicas.", 0),
    column("Current", "integer", "Replicas is the most recently observed number of replicas.", 0),
    column("Ready", "integer", "The number of ready replicas for this replication controller.", 0),
    AGE,
    column("Containers", "string", CONTAINERS_DESCRIPTION, 1),
    column("Images", "string", IMAGES_DESCRIPTION, 1),
    column("Selector", "string", "Selector is a label query over pods that should match the Replicas count.", 1),
];

/// printers.go's `printReplicationController`: the selector as `key=value` pairs.
fn row(rc: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(rc);
    let mut pairs: Vec<String> = at(rc, &["spec", "selector"])
        .and_then(Value::as_object)
        .map(|labels| labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect())
        .unwrap_or_default();
    pairs.sort();
    let selector = if pairs.is_empty() { "<none>".to_string() } else { pairs.join(",") };
    vec![
        name_cell(rc),
        Value::from(int(rc, &["spec", "replicas"])),
        Value::from(int(rc, &["status", "replicas"])),
        Value::from(int(rc, &["status", "readyReplicas"])),
        age_cell(rc, now),
        containers.into(),
        images.into(),
        selector.into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_selector_and_labels_default_to_the_templates() {
        let mut rc: ReplicationController = serde_json::from_value(json!({"metadata": {"name": "nginx", "namespace": "default"},
            "spec": {"template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [{"name": "n", "image": "nginx"}]}}}}))
        .expect("rc");
        rc.set_defaults();
        let spec = rc.spec.as_ref().expect("spec");
        assert_eq!(spec.selector, Some([("app".to_string(), "nginx".to_string())].into()));
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(rc.metadata.labels, spec.selector);
        assert!(rc.validate().is_empty(), "{:?}", rc.validate());
        let cells = row(&serde_json::to_value(&rc).expect("json"), Timestamp::now());
        assert_eq!(cells[7], json!("app=nginx"));
    }

    #[test]
    fn a_selector_must_match_the_template() {
        let rc: ReplicationController = serde_json::from_value(json!({"metadata": {"name": "x"}, "spec": {
            "selector": {"app": "other"},
            "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                "containers": [{"name": "n", "image": "nginx", "imagePullPolicy": "Always", "terminationMessagePolicy": "File"}]}}}}))
        .expect("rc");
        assert_eq!(rc.validate()[0].field, "spec.template.metadata.labels");
    }
}
