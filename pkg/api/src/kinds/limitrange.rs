//! LimitRange (core/v1): a namespace's defaults and bounds for the resources of each
//! container and pod.
//!
//! The apiserver's `LimitRanger` admission applies it to every new pod: containers without
//! requests or limits get the defaults, and a pod outside the bounds is refused (403).
//!
//! Its strategy, as Kubernetes': for `Container` items, a missing `default` is the `max`, a
//! missing `defaultRequest` is the `default` or else the `min` (defaulted once, on write, so
//! what admission applies is what `kubectl describe limits` shows); `type` is `Container`,
//! `Pod` or `PersistentVolumeClaim`; `Pod` items have no defaults; and for each resource
//! `min <= defaultRequest <= default <= max`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{LimitRange, LimitRangeItem};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;

use crate::columns::{Column, NAME, name_cell, text};
use crate::field::FieldError;
use crate::kinds::resourcequota::validate_resource_list;
use crate::quantity::parse_milli;
use crate::registry::ResourceDef;
use crate::strategy::{Strategy, StrategyFor};

/// The kinds of item a LimitRange may hold.
pub const TYPES: &[&str] = &["Container", "Pod", "PersistentVolumeClaim"];

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    kind: "LimitRange",
    plural: "limitranges",
    singular: "limitrange",
    namespaced: true,
    short_names: &["limits"],
    categories: &[],
    subresources: &[],
    field_labels: &[],
    strategy: &StrategyFor::<LimitRange>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for LimitRange {
    fn set_defaults(&mut self) {
        for item in self.spec.iter_mut().flat_map(|spec| spec.limits.iter_mut()) {
            if item.type_ == "Container" {
                default_container_item(item);
            }
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for (i, item) in self.spec.iter().flat_map(|spec| spec.limits.iter()).enumerate() {
            validate_item(item, &format!("spec.limits[{i}]"), &mut errs);
        }
        errs
    }
}

/// Kubernetes' `SetDefaults_LimitRangeItem` for a `Container` item.
fn default_container_item(item: &mut LimitRangeItem) {
    let fill = |into: &mut Option<BTreeMap<String, Quantity>>, from: &Option<BTreeMap<String, Quantity>>| {
        for (name, amount) in from.iter().flatten() {
            into.get_or_insert_with(BTreeMap::new).entry(name.clone()).or_insert_with(|| amount.clone());
        }
    };
    fill(&mut item.default, &item.max.clone());
    fill(&mut item.default_request, &item.default.clone());
    fill(&mut item.default_request, &item.min.clone());
}

fn validate_item(item: &LimitRangeItem, path: &str, errs: &mut Vec<FieldError>) {
    if !TYPES.contains(&item.type_.as_str()) {
        errs.push(FieldError::not_supported(format!("{path}.type"), &item.type_, TYPES));
    }
    let lists = [
        ("min", &item.min),
        ("defaultRequest", &item.default_request),
        ("default", &item.default),
        ("max", &item.max),
        ("maxLimitRequestRatio", &item.max_limit_request_ratio),
    ];
    for (field, list) in lists {
        validate_resource_list(list.as_ref(), &format!("{path}.{field}"), errs);
    }
    if item.type_ == "Pod" {
        for (field, list) in [("default", &item.default), ("defaultRequest", &item.default_request)] {
            if list.as_ref().is_some_and(|l| !l.is_empty()) {
                errs.push(FieldError::forbidden(
                    format!("{path}.{field}"),
                    "may not be specified when `type` is 'Pod'",
                ));
            }
        }
    }
    // min <= defaultRequest <= default <= max, resource by resource.
    let amount = |list: &Option<BTreeMap<String, Quantity>>, name: &str| {
        list.as_ref().and_then(|l| l.get(name)).and_then(|q| parse_milli(&q.0).ok())
    };
    let names: std::collections::BTreeSet<&String> =
        lists[..4].iter().flat_map(|(_, l)| l.iter().flatten().map(|(n, _)| n)).collect();
    for name in names {
        let ordered: Vec<(&str, i64)> =
            lists[..4].iter().filter_map(|(field, list)| Some((*field, amount(list, name)?))).collect();
        for pair in ordered.windows(2) {
            let ((low_field, low), (high_field, high)) = (pair[0], pair[1]);
            if low > high {
                errs.push(FieldError::invalid(
                    format!("{path}.{low_field}[{name}]"),
                    crate::quota::format(name, low),
                    format!(
                        "{low_field} value {} must be less than or equal to {high_field} value {}",
                        crate::quota::format(name, low),
                        crate::quota::format(name, high)
                    ),
                ));
            }
        }
    }
}

const COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Created At",
        kind: "date",
        format: "",
        description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
        priority: 0,
    },
];

fn row(obj: &Value, _now: Timestamp) -> Vec<Value> {
    vec![name_cell(obj), Value::from(text(obj, &["metadata", "creationTimestamp"]))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::tests::fields;
    use serde_json::json;

    fn limit_range(limits: Value) -> LimitRange {
        serde_json::from_value(json!({"metadata": {"name": "l", "namespace": "default"}, "spec": {"limits": limits}}))
            .expect("limit range")
    }

    #[test]
    fn container_defaults_come_from_max_then_default_then_min() {
        let mut range = limit_range(json!([{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"},
            "default": {"memory": "256Mi"}}]));
        range.set_defaults();
        let item = &range.spec.as_ref().expect("spec").limits[0];
        let get =
            |l: &Option<BTreeMap<String, Quantity>>, n: &str| l.as_ref().and_then(|l| l.get(n)).map(|q| q.0.clone());
        assert_eq!(get(&item.default, "cpu").as_deref(), Some("2"));
        assert_eq!(get(&item.default_request, "cpu").as_deref(), Some("2"));
        assert_eq!(get(&item.default_request, "memory").as_deref(), Some("256Mi"), "default wins over min");
        assert!(range.validate().is_empty(), "{:?}", range.validate());
    }

    #[test]
    fn bounds_must_be_ordered_and_pod_items_have_no_defaults() {
        let range = limit_range(json!([
            {"type": "Container", "min": {"cpu": "1"}, "max": {"cpu": "500m"}},
            {"type": "Pod", "default": {"cpu": "1"}},
            {"type": "Node"}
        ]));
        assert_eq!(
            fields(&range.validate()),
            ["spec.limits[0].min[cpu]", "spec.limits[1].default", "spec.limits[2].type"]
        );
    }
}
