//! Event (core/v1): a report of something that happened to an object, for `kubectl
//! describe` and `kubectl events`. Only metadata is validated.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use serde_json::Value;

use crate::columns::{Column, NAME, at, column, int, since, text};
use crate::field::FieldError;
use crate::registry::ResourceDef;
use crate::strategy::{Strategy, StrategyFor};

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
