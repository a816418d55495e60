//! Job (batch/v1): runs pods until `completions` of them succeed (or, without `completions`,
//! until one does and the rest finish), retrying failed ones up to `backoffLimit` times. The
//! controller-manager's `job` controller does the work; this file is what the apiserver keeps
//! true.
//!
//! Its strategy, as Kubernetes' `pkg/registry/batch/job/strategy.go` and the batch/v1
//! defaulters:
//! - defaults: `parallelism: 1` (and `completions: 1` when neither is set), `backoffLimit: 6`,
//!   `completionMode: NonIndexed`, `suspend: false`, `manualSelector: false`,
//!   `podReplacementPolicy` (`Failed` with a `podFailurePolicy`, else `TerminatingOrFailed`),
//!   a pod failure rule's condition `status: True`, and the Job's labels from its template's
//!   when it has none;
//! - create resets the status and, unless `manualSelector: true`, generates the selector:
//!   `batch.kubernetes.io/controller-uid: <uid>`, with that label, `batch.kubernetes.io/job-name`
//!   and their legacy forms (`controller-uid`, `job-name`) added to the template; a selector the
//!   client sent without `manualSelector` is refused;
//! - validation: non-negative counts, a template whose pods restart `OnFailure` or `Never`
//!   (`Never` with a `podFailurePolicy`), an `Indexed` Job with `completions`, the pod
//!   failure policy's rules (one of `onExitCodes` or `onPodConditions`; `In`/`NotIn`; unique
//!   values; no 0 with `In`);
//! - an update may not change the selector, `completionMode`, `podFailurePolicy` or
//!   `completions`, nor the template unless the Job is suspended.

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobStatus, PodFailurePolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use crate::columns::{
    AGE, CONTAINERS_DESCRIPTION, Column, IMAGES_DESCRIPTION, NAME, age_cell, at, column, container_cells,
    format_selector, human_age, int, list, name_cell, text,
};
use crate::defaulting;
use crate::field::FieldError;
use crate::registry::{ResourceDef, Subresource};
use crate::strategy::{Strategy, StrategyFor};
use crate::validation::{non_negative, validate_controller_template};

/// The label (and selector) naming the Job a pod belongs to, by uid.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The label naming the Job a pod belongs to, by name.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// The legacy form of [`CONTROLLER_UID_LABEL`], still set for older selectors.
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
/// The legacy form of [`JOB_NAME_LABEL`].
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";
/// The most completions (and parallelism) of an Indexed Job.
pub const MAX_INDEXED_COMPLETIONS: i32 = 100_000;

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "batch",
    version: "v1",
    kind: "Job",
    plural: "jobs",
    singular: "job",
    namespaced: true,
    short_names: &[],
    categories: &["all"],
    subresources: &[Subresource::Status],
    field_labels: &["status.successful"],
    strategy: &StrategyFor::<Job>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for Job {
    fn set_defaults(&mut self) {
        let Some(spec) = self.spec.as_mut() else { return };
        if spec.completions.is_none() && spec.parallelism.is_none() {
            spec.completions = Some(1);
        }
        spec.parallelism.get_or_insert(1);
        if spec.backoff_limit.is_none() {
            spec.backoff_limit = Some(if spec.backoff_limit_per_index.is_some() { i32::MAX } else { 6 });
        }
        spec.completion_mode.get_or_insert_with(|| "NonIndexed".into());
        spec.suspend.get_or_insert(false);
        spec.manual_selector.get_or_insert(false);
        let replacement = if spec.pod_failure_policy.is_some() { "Failed" } else { "TerminatingOrFailed" };
        spec.pod_replacement_policy.get_or_insert_with(|| replacement.into());
        for rule in spec.pod_failure_policy.iter_mut().flat_map(|policy| policy.rules.iter_mut()) {
            for pattern in rule.on_pod_conditions.iter_mut().flatten() {
                if pattern.status.as_deref().is_none_or(str::is_empty) {
                    pattern.status = Some("True".into());
                }
            }
        }
        defaulting::default_pod_template(&mut spec.template);
        let template_labels = spec.template.metadata.as_ref().and_then(|meta| meta.labels.clone());
        if self.metadata.labels.as_ref().is_none_or(|labels| labels.is_empty())
            && let Some(labels) = template_labels.filter(|labels| !labels.is_empty())
        {
            self.metadata.labels = Some(labels);
        }
    }

    /// The status is the controller's; the selector is generated from the Job's uid.
    fn prepare_for_create(&mut self) {
        self.status = Some(JobStatus::default());
        let uid = self.metadata.uid.clone().unwrap_or_default();
        let name = self.metadata.name.clone().unwrap_or_default();
        let Some(spec) = self.spec.as_mut() else { return };
        if spec.manual_selector == Some(true) || spec.selector.is_some() {
            return; // validated below: a selector needs manualSelector
        }
        let labels =
            spec.template.metadata.get_or_insert_with(Default::default).labels.get_or_insert_with(Default::default);
        for (key, value) in [
            (CONTROLLER_UID_LABEL, &uid),
            (JOB_NAME_LABEL, &name),
            (LEGACY_CONTROLLER_UID_LABEL, &uid),
            (LEGACY_JOB_NAME_LABEL, &name),
        ] {
            labels.insert(key.into(), value.clone());
        }
        spec.selector = Some(LabelSelector {
            match_labels: Some([(CONTROLLER_UID_LABEL.to_string(), uid)].into()),
            ..LabelSelector::default()
        });
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let Some(spec) = self.spec.as_ref() else {
            return vec![FieldError::required("spec", "")];
        };
        non_negative(spec.parallelism, "spec.parallelism", &mut errs);
        non_negative(spec.completions, "spec.completions", &mut errs);
        non_negative(spec.backoff_limit, "spec.backoffLimit", &mut errs);
        non_negative(spec.ttl_seconds_after_finished, "spec.ttlSecondsAfterFinished", &mut errs);
        if let Some(deadline) = spec.active_deadline_seconds.filter(|d| *d <= 0) {
            errs.push(FieldError::invalid("spec.activeDeadlineSeconds", deadline, "must be greater than 0"));
        }
        let mode = spec.completion_mode.as_deref().unwrap_or("NonIndexed");
        match mode {
            "NonIndexed" => {}
            "Indexed" => {
                match spec.completions {
                    None => errs.push(FieldError::required("spec.completions", "when completion mode is Indexed")),
                    Some(n) if n > MAX_INDEXED_COMPLETIONS => errs.push(FieldError::invalid(
                        "spec.completions",
                        n,
                        format!(
                            "must be less than or equal to {MAX_INDEXED_COMPLETIONS} when completion mode is Indexed"
                        ),
                    )),
                    Some(_) => {}
                }
                if let Some(n) = spec.parallelism.filter(|n| *n > MAX_INDEXED_COMPLETIONS) {
                    errs.push(FieldError::invalid(
                        "spec.parallelism",
                        n,
                        format!(
                            "must be less than or equal to {MAX_INDEXED_COMPLETIONS} when completion mode is Indexed"
                        ),
                    ));
                }
            }
            other => errs.push(FieldError::not_supported("spec.completionMode", other, &["NonIndexed", "Indexed"])),
        }
        if let Some(policy) = spec.pod_replacement_policy.as_deref()
            && !matches!(policy, "TerminatingOrFailed" | "Failed")
        {
            errs.push(FieldError::not_supported(
                "spec.podReplacementPolicy",
                policy,
                &["TerminatingOrFailed", "Failed"],
            ));
        }
        match spec.selector.as_ref() {
            Some(selector) if spec.manual_selector == Some(true) || generated(selector, self) => {
                let restart: &[&str] =
                    if spec.pod_failure_policy.is_some() { &["Never"] } else { &["OnFailure", "Never"] };
                validate_controller_template(selector, Some(&spec.template), restart, &mut errs);
            }
            Some(_) => errs.push(FieldError::invalid(
                "spec.selector",
                "",
                "`selector` not auto-generated; set `manualSelector: true` to choose your own",
            )),
            None => errs.push(FieldError::required("spec.selector", "")),
        }
        if let Some(policy) = &spec.success_policy {
            if spec.completion_mode.as_deref() != Some("Indexed") {
                errs.push(FieldError::invalid("spec.successPolicy", "", "requires indexed completion mode"));
            }
            if policy.rules.is_empty() || policy.rules.len() > 20 {
                errs.push(FieldError::invalid(
                    "spec.successPolicy.rules",
                    policy.rules.len(),
                    "must have 1 to 20 rules",
                ));
            }
            for (i, rule) in policy.rules.iter().enumerate() {
                let field = format!("spec.successPolicy.rules[{i}]");
                if rule.succeeded_indexes.is_none() && rule.succeeded_count.is_none() {
                    errs.push(FieldError::required(
                        field.clone(),
                        "at least one of succeededCount or succeededIndexes must be specified",
                    ));
                }
                if let Some(count) = rule.succeeded_count
                    && (count < 0 || spec.completions.is_some_and(|c| count > c))
                {
                    errs.push(FieldError::invalid(
                        format!("{field}.succeededCount"),
                        count,
                        "must be between 0 and completions",
                    ));
                }
                if let Some(indexes) = &rule.succeeded_indexes
                    && !valid_indexes(indexes, spec.completions.unwrap_or(0))
                {
                    errs.push(FieldError::invalid(
                        format!("{field}.succeededIndexes"),
                        indexes,
                        "must be a list of indexes below completions, such as 0,2-5",
                    ));
                }
            }
        }
        if let Some(policy) = &spec.pod_failure_policy {
            for (i, rule) in policy.rules.iter().enumerate() {
                validate_failure_rule(
                    rule,
                    &format!("spec.podFailurePolicy.rules[{i}]"),
                    spec.backoff_limit_per_index.is_some(),
                    &mut errs,
                );
            }
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let (Some(new), Some(old)) = (self.spec.as_ref(), old.spec.as_ref()) else { return errs };
        let immutable =
            |field: &str, value: String| FieldError::invalid(format!("spec.{field}"), value, "field is immutable");
        if new.selector != old.selector {
            errs.push(immutable("selector", format_selector(serde_json::to_value(&new.selector).ok().as_ref())));
        }
        if new.completion_mode != old.completion_mode {
            errs.push(immutable("completionMode", new.completion_mode.clone().unwrap_or_default()));
        }
        if new.completions != old.completions {
            errs.push(immutable("completions", new.completions.map(|n| n.to_string()).unwrap_or_default()));
        }
        if new.pod_failure_policy != old.pod_failure_policy {
            errs.push(immutable("podFailurePolicy", String::new()));
        }
        if new.template != old.template && old.suspend != Some(true) {
            errs.push(FieldError::invalid("spec.template", "", "field is immutable (unless the Job is suspended)"));
        }
        errs
    }
}

/// Whether `selector` is the one [`Strategy::prepare_for_create`] generates for `job`.
fn generated(selector: &LabelSelector, job: &Job) -> bool {
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
        && selector.match_labels.as_ref().is_some_and(|labels| {
            labels.len() == 1
                && (labels.get(CONTROLLER_UID_LABEL).map(String::as_str) == Some(uid)
                    || labels.get(LEGACY_CONTROLLER_UID_LABEL).map(String::as_str) == Some(uid))
        })
}

fn validate_failure_rule(rule: &PodFailurePolicyRule, at: &str, per_index: bool, errs: &mut Vec<FieldError>) {
    let actions: &[&str] =
        if per_index { &["Count", "FailIndex", "FailJob", "Ignore"] } else { &["Count", "FailJob", "Ignore"] };
    if !actions.contains(&rule.action.as_str()) {
        errs.push(FieldError::not_supported(format!("{at}.action"), &rule.action, actions));
    }
    match (&rule.on_exit_codes, &rule.on_pod_conditions) {
        (Some(codes), None) => {
            let path = format!("{at}.onExitCodes");
            if !matches!(codes.operator.as_str(), "In" | "NotIn") {
                errs.push(FieldError::not_supported(format!("{path}.operator"), &codes.operator, &["In", "NotIn"]));
            }
            if codes.values.is_empty() {
                errs.push(FieldError::required(format!("{path}.values"), "at least one value is required"));
            } else if codes.values.len() > 255 {
                errs.push(FieldError::too_long(format!("{path}.values"), 255));
            }
            let mut seen = std::collections::BTreeSet::new();
            for (i, value) in codes.values.iter().enumerate() {
                if !seen.insert(value) {
                    errs.push(FieldError::duplicate(format!("{path}.values[{i}]"), value));
                }
                if *value == 0 && codes.operator == "In" {
                    errs.push(FieldError::invalid(
                        format!("{path}.values[{i}]"),
                        value,
                        "must not be 0 for the In operator",
                    ));
                }
            }
        }
        (None, Some(patterns)) => {
            for (i, pattern) in patterns.iter().enumerate() {
                let status = pattern.status.as_deref().unwrap_or_default();
                if !matches!(status, "True" | "False" | "Unknown") {
                    errs.push(FieldError::not_supported(
                        format!("{at}.onPodConditions[{i}].status"),
                        status,
                        &["True", "False", "Unknown"],
                    ));
                }
            }
        }
        _ => errs.push(FieldError::invalid(at, "", "specifying one of OnExitCodes and OnPodConditions is required")),
    }
}

const COLUMNS: &[Column] = &[
    NAME,
    column("Status", "string", "Status of the job.", 0),
    column("Completions", "string", "The completion status of the job.", 0),
    column("Duration", "string", "Time required to complete the job.", 0),
    AGE,
    column("Containers", "string", CONTAINERS_DESCRIPTION, 1),
    column("Images", "string", IMAGES_DESCRIPTION, 1),
    column("Selector", "string", "Selector is a label query over pods that should match the pod count.", 1),
];

/// Whether the Job has a condition of `kind` that is `True`.
fn has_condition(job: &Value, kind: &str) -> bool {
    list(job, &["status", "conditions"]).iter().any(|c| c["type"] == kind && c["status"] == "True")
}

/// printers.go's `printJob`.
fn row(job: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = int(job, &["status", "succeeded"]);
    let completions = match at(job, &["spec", "completions"]).and_then(Value::as_i64) {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => match int(job, &["spec", "parallelism"]) {
            parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let time = |field: &str| text(job, &["status", field]).parse::<Timestamp>().ok();
    let duration = match (time("startTime"), time("completionTime")) {
        (None, _) => String::new(),
        (Some(start), end) => {
            let seconds = end.unwrap_or(now).duration_since(start).as_secs().max(0);
            human_age(std::time::Duration::from_secs(seconds.unsigned_abs()))
        }
    };
    let status = if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if at(job, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_null()) {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (containers, images) = container_cells(job);
    vec![
        name_cell(job),
        status.into(),
        completions.into(),
        duration.into(),
        age_cell(job, now),
        containers.into(),
        images.into(),
        format_selector(at(job, &["spec", "selector"])).into(),
    ]
}

/// Whether `text` is a list of indexes (`0,2-5`) all below `completions`, ascending.
fn valid_indexes(text: &str, completions: i32) -> bool {
    let mut last = -1;
    text.split(',').all(|part| {
        let (from, to) = part.split_once('-').unwrap_or((part, part));
        match (from.parse::<i32>(), to.parse::<i32>()) {
            (Ok(from), Ok(to)) if from > last && from <= to && to < completions => {
                last = to;
                true
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(body: Value) -> Job {
        serde_json::from_value(body).expect("job")
    }

    fn created(body: Value) -> Job {
        let mut job = job(body);
        job.metadata.uid = Some("u-1".into());
        job.prepare_for_create();
        job.set_defaults();
        job
    }

    fn pi() -> Value {
        json!({"metadata": {"name": "pi", "namespace": "default"}, "spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}}})
    }

    fn fields(errs: &[FieldError]) -> Vec<&str> {
        errs.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_new_job_gets_kubernetes_defaults_and_a_selector_from_its_uid() {
        let job = created(pi());
        let spec = job.spec.as_ref().expect("spec");
        assert_eq!((spec.completions, spec.parallelism, spec.backoff_limit), (Some(1), Some(1), Some(6)));
        assert_eq!(spec.completion_mode.as_deref(), Some("NonIndexed"));
        assert_eq!(spec.pod_replacement_policy.as_deref(), Some("TerminatingOrFailed"));
        let selector = serde_json::to_value(&spec.selector).expect("json");
        assert_eq!(selector, json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}));
        let labels = spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
        assert_eq!(labels.get(JOB_NAME_LABEL).map(String::as_str), Some("pi"));
        assert_eq!(labels.get(LEGACY_CONTROLLER_UID_LABEL).map(String::as_str), Some("u-1"));
        assert_eq!(job.metadata.labels, Some(labels), "the Job's labels come from its template's");
        assert!(job.validate().is_empty(), "{:?}", job.validate());
    }

    #[test]
    fn parallelism_alone_leaves_completions_unset() {
        let mut body = pi();
        body["spec"]["parallelism"] = json!(3);
        let job = created(body);
        let spec = job.spec.as_ref().expect("spec");
        assert_eq!((spec.completions, spec.parallelism), (None, Some(3)));
    }

    #[test]
    fn jobs_need_pods_that_do_not_restart_always_and_an_indexed_job_needs_completions() {
        let mut body = pi();
        body["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        body["spec"]["completionMode"] = json!("Indexed");
        body["spec"]["parallelism"] = json!(-1);
        body["spec"]["completions"] = Value::Null;
        let job = created(body);
        let errs = job.validate();
        assert_eq!(fields(&errs), ["spec.parallelism", "spec.completions", "spec.template.spec.restartPolicy"]);
    }

    #[test]
    fn a_selector_needs_manual_selector() {
        let mut body = pi();
        body["spec"]["selector"] = json!({"matchLabels": {"app": "pi"}});
        body["spec"]["template"]["metadata"] = json!({"labels": {"app": "pi"}});
        assert_eq!(fields(&created(body.clone()).validate()), ["spec.selector"]);
        body["spec"]["manualSelector"] = json!(true);
        assert!(created(body).validate().is_empty());
    }

    #[test]
    fn pod_failure_rules_are_checked() {
        let mut body = pi();
        body["spec"]["podFailurePolicy"] = json!({"rules": [
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [0, 42, 42]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "Explode", "onExitCodes": {"operator": "Between", "values": []}}]});
        let job = created(body);
        let policy = job.spec.as_ref().and_then(|s| s.pod_failure_policy.as_ref()).expect("policy");
        assert_eq!(policy.rules[1].on_pod_conditions.as_ref().expect("conditions")[0].status.as_deref(), Some("True"));
        assert_eq!(
            fields(&job.validate()),
            [
                "spec.podFailurePolicy.rules[0].onExitCodes.values[0]",
                "spec.podFailurePolicy.rules[0].onExitCodes.values[2]",
                "spec.podFailurePolicy.rules[2].action",
                "spec.podFailurePolicy.rules[2].onExitCodes.operator",
                "spec.podFailurePolicy.rules[2].onExitCodes.values",
            ]
        );
    }

    #[test]
    fn completions_and_the_template_of_a_running_job_are_immutable() {
        let old = created(pi());
        let mut new = old.clone();
        let spec = new.spec.as_mut().expect("spec");
        spec.completions = Some(5);
        spec.template.spec.as_mut().expect("pod spec").containers[0].image = Some("perl:2".into());
        assert_eq!(fields(&new.validate_update(&old)), ["spec.completions", "spec.template"]);
        let mut suspended = old.clone();
        suspended.spec.as_mut().expect("spec").suspend = Some(true);
        let mut resumed = suspended.clone();
        resumed.spec.as_mut().expect("spec").template.spec.as_mut().expect("pod spec").containers[0].image =
            Some("perl:2".into());
        assert!(resumed.validate_update(&suspended).is_empty());
    }

    #[test]
    fn rows_show_status_completions_and_duration() {
        let now: Timestamp = "2026-01-01T00:10:00Z".parse().expect("now");
        let job = json!({"metadata": {"name": "pi", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"completions": 3, "parallelism": 1, "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
            "status": {"succeeded": 3, "startTime": "2026-01-01T00:00:01Z", "completionTime": "2026-01-01T00:00:43Z",
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}});
        let cells = row(&job, now);
        assert_eq!(cells[..5], [json!("pi"), json!("Complete"), json!("3/3"), json!("42s"), json!("10m")]);
        let running = json!({"metadata": {"name": "w"}, "spec": {"parallelism": 2},
            "status": {"startTime": "2026-01-01T00:09:00Z"}});
        assert_eq!(row(&running, now)[1..4], [json!("Running"), json!("0/1 of 2"), json!("60s")]);
    }
}
