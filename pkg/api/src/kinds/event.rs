//! Event (core/v1): a report of something that happened to an object, for `kubectl
//! describe` and `kubectl events`. Only metadata is validated.
//!
//! The same Events are served as `events.k8s.io/v1` ([`EVENTS_V1`]), stored as core `v1`:
//! `regarding` is `involvedObject`, `note` is `message`, `reportingController` is
//! `reportingComponent`, and the `deprecated*` fields are `source`, `firstTimestamp`,
//! `lastTimestamp` and `count`; everything else has the same name. Events written through
//! `events.k8s.io/v1` are validated as Kubernetes validates them there.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::api::events::v1::Event as EventV1;
use serde_json::Value;

use crate::columns::{Column, NAME, at, column, int, since, text};
use crate::field::FieldError;
use crate::registry::{Conversion, ResourceDef};
use crate::strategy::{Strategy, StrategyFor};
use crate::validation::is_qualified_name;

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    kind: "Event",
    plural: "events",
    singular: "event",
    namespaced: true,
    short_names: &["ev"],
    categories: &[],
    subresources: &[],
    field_labels: &[
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ],
    strategy: &StrategyFor::<Event>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for Event {
    fn validate(&self) -> Vec<FieldError> {
        Vec::new()
    }
}

const COLUMNS: &[Column] = &[
    column("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded.", 0),
    column("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future", 0),
    column(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
        0,
    ),
    column("Object", "string", "The object that this event is about.", 0),
    column(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.",
        1,
    ),
    column("Source", "string", "The component reporting this event.", 1),
    column("Message", "string", "A human-readable description of the status of this operation.", 0),
    column("First Seen", "string", "The time at which the event was first recorded.", 1),
    column("Count", "string", "The number of times this event has occurred.", 1),
    Column { priority: 1, ..NAME },
];

/// printers.go's `printEvent`, wide columns included.
fn row(event: &Value, now: Timestamp) -> Vec<Value> {
    let first_seen = match text(event, &["firstTimestamp"]) {
        "" => since(text(event, &["eventTime"]), now),
        t => since(t, now),
    };
    let mut last_seen = match text(event, &["lastTimestamp"]) {
        "" => first_seen.clone(),
        t => since(t, now),
    };
    let mut count = int(event, &["count"]);
    if at(event, &["series"]).is_some_and(|s| !s.is_null()) {
        last_seen = since(text(event, &["series", "lastObservedTime"]), now);
        count = int(event, &["series", "count"]);
    } else if count == 0 {
        count = 1;
    }
    let kind = text(event, &["involvedObject", "kind"]).to_lowercase();
    let object = match text(event, &["involvedObject", "name"]) {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let component = match text(event, &["source", "component"]) {
        "" => text(event, &["reportingComponent"]),
        c => c,
    };
    let instance = match text(event, &["source", "host"]) {
        "" => text(event, &["reportingInstance"]),
        h => h,
    };
    let source = if instance.is_empty() { component.to_string() } else { format!("{component}, {instance}") };

    vec![
        last_seen.into(),
        Value::from(text(event, &["type"])),
        Value::from(text(event, &["reason"])),
        object.into(),
        Value::from(text(event, &["involvedObject", "fieldPath"])),
        source.into(),
        Value::from(text(event, &["message"]).trim()),
        first_seen.into(),
        count.into(),
        Value::from(text(event, &["metadata", "name"])),
    ]
}

/// The registry entry of `events.k8s.io/v1` Events: the same objects as core `v1` Events
/// (stored as those, under the same keys), with the newer field names. kube-rs's and
/// client-go's event recorders write these.
pub static EVENTS_V1: ResourceDef = ResourceDef {
    group: "events.k8s.io",
    version: "v1",
    kind: "Event",
    plural: "events",
    singular: "event",
    namespaced: true,
    short_names: &["ev"],
    categories: &[],
    subresources: &[],
    field_labels: &[
        "regarding.kind",
        "regarding.namespace",
        "regarding.name",
        "regarding.uid",
        "regarding.apiVersion",
        "regarding.resourceVersion",
        "regarding.fieldPath",
        "reason",
        "reportingController",
        "type",
    ],
    strategy: &StrategyFor::<EventV1>::new(),
    conversion: Some(&Conversion {
        storage: &RESOURCE,
        to_storage: &to_storage,
        from_storage: &from_storage,
        field_label,
    }),
    custom: None,
    columns: COLUMNS,
    row: row_v1,
};

/// The fields whose names differ: `events.k8s.io/v1` name first, core `v1` second.
const RENAMED: [(&str, &str); 7] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Renames the top-level fields of `event` (`from` → `to` by `pick`) and sets its apiVersion.
fn rename(
    mut event: Value,
    api_version: &str,
    pick: fn((&'static str, &'static str)) -> (&'static str, &'static str),
) -> Value {
    if let Value::Object(fields) = &mut event {
        let mut moved = Vec::new();
        for pair in RENAMED {
            let (from, to) = pick(pair);
            if let Some(value) = fields.remove(from) {
                moved.push((to, value));
            }
        }
        fields.extend(moved.into_iter().map(|(to, value)| (to.to_string(), value)));
        fields.insert("apiVersion".into(), Value::from(api_version));
        fields.insert("kind".into(), Value::from("Event"));
    }
    event
}

/// An `events.k8s.io/v1` Event as core `v1` stores it.
fn to_storage(event: Value) -> Value {
    rename(event, "v1", |pair| pair)
}

/// A stored core `v1` Event as `events.k8s.io/v1` shows it.
fn from_storage(event: Value) -> Value {
    rename(event, "events.k8s.io/v1", |(v1, core)| (core, v1))
}

/// An `events.k8s.io/v1` field label as the core Event's (Kubernetes' field label
/// conversion for events).
fn field_label(label: &str) -> Option<&'static str> {
    Some(match label {
        "metadata.name" => "metadata.name",
        "metadata.namespace" => "metadata.namespace",
        "regarding.kind" => "involvedObject.kind",
        "regarding.namespace" => "involvedObject.namespace",
        "regarding.name" => "involvedObject.name",
        "regarding.uid" => "involvedObject.uid",
        "regarding.apiVersion" => "involvedObject.apiVersion",
        "regarding.resourceVersion" => "involvedObject.resourceVersion",
        "regarding.fieldPath" => "involvedObject.fieldPath",
        "reason" => "reason",
        "reportingController" => "reportingComponent",
        "type" => "type",
        _ => return None,
    })
}

/// The same columns as core Events.
fn row_v1(event: &Value, now: Timestamp) -> Vec<Value> {
    row(&to_storage(event.clone()), now)
}

/// What Kubernetes requires of an event written through `events.k8s.io/v1`: when it
/// happened, who reported it, what was done and why, a known type, a short note.
impl Strategy for EventV1 {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.event_time.is_none() {
            errors.push(FieldError::required("eventTime", ""));
        }
        if let Some(series) = &self.series
            && series.count < 2
        {
            errors.push(FieldError::invalid("series.count", series.count, "should be at least 2"));
        }
        for (field, value) in [
            ("reportingController", &self.reporting_controller),
            ("reportingInstance", &self.reporting_instance),
            ("action", &self.action),
            ("reason", &self.reason),
        ] {
            match value.as_deref().unwrap_or_default() {
                "" => errors.push(FieldError::required(field, "")),
                text if text.len() > 128 => errors.push(FieldError::too_long(field, 128)),
                _ => {}
            }
        }
        if let Some(controller) = self.reporting_controller.as_deref().filter(|c| !c.is_empty()) {
            errors.extend(
                is_qualified_name(controller)
                    .into_iter()
                    .map(|m| FieldError::invalid("reportingController", controller, m)),
            );
        }
        match self.type_.as_deref().unwrap_or_default() {
            "Normal" | "Warning" => {}
            other => errors.push(FieldError::not_supported("type", other, &["Normal", "Warning"])),
        }
        if self.note.as_deref().is_some_and(|note| note.len() > 1024) {
            errors.push(FieldError::too_long("note", 1024));
        }
        errors
    }
}
