//! CronJob (batch/v1): creates a Job from its `jobTemplate` at each time its cron `schedule`
//! fires (the controller-manager's `cronjob` controller).
//!
//! Its strategy, as Kubernetes' `pkg/registry/batch/cronjob/strategy.go` and the batch/v1
//! defaulters: defaults `concurrencyPolicy: Allow`, `suspend: false`,
//! `successfulJobsHistoryLimit: 3`, `failedJobsHistoryLimit: 1` and the template's pod spec
//! defaults; a new CronJob's status is reset; validation: a name of at most 52 characters (its
//! Jobs add 11), a schedule that parses ([`crate::cron`]), a known `timeZone`, a known
//! `concurrencyPolicy`, non-negative deadlines and limits, and a job template whose pods
//! restart `OnFailure` or `Never`.

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus};
use serde_json::Value;

use crate::columns::{
    AGE, CONTAINERS_DESCRIPTION, Column, IMAGES_DESCRIPTION, NAME, age_cell, at, column, format_selector, list,
    name_cell, since, text,
};
use crate::cron::{Schedule, is_time_zone};
use crate::defaulting;
use crate::field::FieldError;
use crate::registry::{ResourceDef, Subresource};
use crate::strategy::{Strategy, StrategyFor};
use crate::validation::non_negative;

/// The longest CronJob name: its Jobs are named `<cronjob>-<minutes since 1970>` (11 more).
pub const MAX_NAME_LENGTH: usize = 52;

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "batch",
    version: "v1",
    kind: "CronJob",
    plural: "cronjobs",
    singular: "cronjob",
    namespaced: true,
    short_names: &["cj"],
    categories: &["all"],
    subresources: &[Subresource::Status],
    field_labels: &[],
    strategy: &StrategyFor::<CronJob>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for CronJob {
    fn set_defaults(&mut self) {
        let spec = &mut self.spec;
        spec.concurrency_policy.get_or_insert_with(|| "Allow".into());
        spec.suspend.get_or_insert(false);
        spec.successful_jobs_history_limit.get_or_insert(3);
        spec.failed_jobs_history_limit.get_or_insert(1);
        if let Some(job_spec) = spec.job_template.spec.as_mut() {
            defaulting::default_pod_template(&mut job_spec.template);
        }
    }

    /// The status is the controller's.
    fn prepare_for_create(&mut self) {
        self.status = Some(CronJobStatus::default());
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let name = self.metadata.name.as_deref().unwrap_or_default();
        if name.len() > MAX_NAME_LENGTH {
            errs.push(FieldError::invalid(
                "metadata.name",
                name,
                format!("must be no more than {MAX_NAME_LENGTH} characters"),
            ));
        }
        let spec = &self.spec;
        if spec.schedule.trim().is_empty() {
            errs.push(FieldError::required("spec.schedule", ""));
        } else if let Some(zone) = spec.time_zone.as_deref().filter(|zone| !is_time_zone(zone)) {
            errs.push(FieldError::invalid("spec.timeZone", zone, "unknown time zone"));
        } else if let Err(message) = Schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
            errs.push(FieldError::invalid("spec.schedule", &spec.schedule, message));
        }
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if !matches!(policy, "Allow" | "Forbid" | "Replace") {
            errs.push(FieldError::not_supported("spec.concurrencyPolicy", policy, &["Allow", "Forbid", "Replace"]));
        }
        if let Some(deadline) = spec.starting_deadline_seconds.filter(|d| *d < 0) {
            errs.push(FieldError::invalid(
                "spec.startingDeadlineSeconds",
                deadline,
                "must be greater than or equal to 0",
            ));
        }
        non_negative(spec.successful_jobs_history_limit, "spec.successfulJobsHistoryLimit", &mut errs);
        non_negative(spec.failed_jobs_history_limit, "spec.failedJobsHistoryLimit", &mut errs);
        match spec.job_template.spec.as_ref() {
            None => errs.push(FieldError::required("spec.jobTemplate.spec", "")),
            Some(job) => {
                let template = &job.template;
                let restart = template.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or_default();
                if !matches!(restart, "OnFailure" | "Never") {
                    errs.push(FieldError::not_supported(
                        "spec.jobTemplate.spec.template.spec.restartPolicy",
                        restart,
                        &["OnFailure", "Never"],
                    ));
                }
                errs.extend(crate::validation::validate_pod_template(template, "spec.jobTemplate.spec.template"));
            }
        }
        errs
    }
}

const COLUMNS: &[Column] = &[
    NAME,
    column("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.", 0),
    column(
        "Timezone",
        "string",
        "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
        0,
    ),
    column("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions.", 0),
    column("Active", "integer", "A list of pointers to currently running jobs.", 0),
    column("Last Schedule", "string", "Information when was the last time the job was successfully scheduled.", 0),
    AGE,
    column("Containers", "string", CONTAINERS_DESCRIPTION, 1),
    column("Images", "string", IMAGES_DESCRIPTION, 1),
    column("Selector", "string", "A label query over pods that should match the pod count.", 1),
];

/// printers.go's `printCronJob`.
fn row(cronjob: &Value, now: Timestamp) -> Vec<Value> {
    let last = match text(cronjob, &["status", "lastScheduleTime"]) {
        "" => "<none>".to_string(),
        time => since(time, now),
    };
    let zone = match text(cronjob, &["spec", "timeZone"]) {
        "" => "<none>",
        zone => zone,
    };
    let suspend = match at(cronjob, &["spec", "suspend"]).and_then(Value::as_bool) {
        Some(true) => "True".to_string(),
        Some(false) => "False".to_string(),
        None => "<unset>".to_string(),
    };
    let containers = list(cronjob, &["spec", "jobTemplate", "spec", "template", "spec", "containers"]);
    let names: Vec<&str> = containers.iter().filter_map(|c| c["name"].as_str()).collect();
    let images: Vec<&str> = containers.iter().filter_map(|c| c["image"].as_str()).collect();
    vec![
        name_cell(cronjob),
        text(cronjob, &["spec", "schedule"]).into(),
        zone.into(),
        suspend.into(),
        Value::from(list(cronjob, &["status", "active"]).len()),
        last.into(),
        age_cell(cronjob, now),
        names.join(",").into(),
        images.join(",").into(),
        format_selector(at(cronjob, &["spec", "jobTemplate", "spec", "selector"])).into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cronjob(name: &str, schedule: &str, extra: Value) -> CronJob {
        let mut body = json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"schedule": schedule,
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                "containers": [{"name": "hello", "image": "busybox"}]}}}}}});
        if let (Some(spec), Some(extra)) = (body["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        let mut cronjob: CronJob = serde_json::from_value(body).expect("cronjob");
        cronjob.set_defaults();
        cronjob
    }

    fn fields(cronjob: &CronJob) -> Vec<String> {
        cronjob.validate().iter().map(|e| e.field.clone()).collect()
    }

    #[test]
    fn a_cronjob_gets_kubernetes_defaults_and_a_valid_one_passes() {
        let cj = cronjob("hello", "*/1 * * * *", json!({}));
        let spec = &cj.spec;
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Allow"));
        assert_eq!((spec.successful_jobs_history_limit, spec.failed_jobs_history_limit), (Some(3), Some(1)));
        assert!(cj.validate().is_empty(), "{:?}", cj.validate());
    }

    #[test]
    fn schedules_zones_policies_and_names_are_checked() {
        assert_eq!(fields(&cronjob("hello", "every minute", json!({}))), ["spec.schedule"]);
        assert_eq!(fields(&cronjob("hello", "TZ=UTC * * * * *", json!({}))), ["spec.schedule"]);
        assert_eq!(fields(&cronjob("hello", "* * * * *", json!({"timeZone": "Mars/Base"}))), ["spec.timeZone"]);
        assert_eq!(
            fields(&cronjob("hello", "* * * * *", json!({"concurrencyPolicy": "Sometimes"}))),
            ["spec.concurrencyPolicy"]
        );
        assert_eq!(fields(&cronjob(&"x".repeat(53), "* * * * *", json!({}))), ["metadata.name"]);
        let mut always = cronjob("hello", "* * * * *", json!({}));
        if let Some(job) = always.spec.job_template.spec.as_mut() {
            job.template.spec.as_mut().expect("pod spec").restart_policy = Some("Always".into());
        }
        assert_eq!(fields(&always), ["spec.jobTemplate.spec.template.spec.restartPolicy"]);
    }

    #[test]
    fn rows_show_schedule_zone_suspend_active_and_last_schedule() {
        let now: Timestamp = "2026-01-01T00:10:00Z".parse().expect("now");
        let cj = json!({"metadata": {"name": "hello", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"schedule": "*/1 * * * *", "suspend": false},
            "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": "2026-01-01T00:09:00Z"}});
        assert_eq!(
            row(&cj, now)[..7],
            [
                json!("hello"),
                json!("*/1 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("60s"),
                json!("10m")
            ]
        );
    }
}
