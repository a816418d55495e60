//! `LimitRanger` admission: the namespace's LimitRanges give a new pod's containers their
//! default requests and limits, and refuse a pod outside their bounds, as Kubernetes'
//! admission plugin of that name.
//!
//! For each `Container` item of each LimitRange in the pod's namespace, every container and
//! init container without a limit (request) for a resource gets the item's `default`
//! (`defaultRequest`); the pod is annotated `kubernetes.io/limit-ranger` with what was set.
//! A limit without a request is first copied into the request, as Kubernetes' defaulting
//! (which runs before admission there) does. Then each container must keep
//! `min <= request`, `limit <= max` and `limit / request <= maxLimitRequestRatio`, and for
//! `Pod` items the pod's sums must; any breach is a 403 naming it in Kubernetes' words
//! (`maximum cpu usage per Container is 1, but limit is 2`).

use std::collections::BTreeMap;

use rkube_api::kinds::limitrange;
use rkube_api::quota::format;
use serde_json::{Map, Value, json};

use super::{list_in, pod_name};
use crate::ApiState;
use crate::error::ApiError;
use crate::request::ResourceRequest;

/// The annotation listing what the plugin set.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";
const CONTAINER_KINDS: [&str; 2] = ["containers", "initContainers"];

/// Applies the namespace's LimitRanges to a pod being created (see the module docs).
///
/// # Errors
/// 403 when the pod breaks a bound; storage errors.
pub async fn admit_create(state: &ApiState, req: &ResourceRequest, pod: &mut Value) -> Result<(), ApiError> {
    if (req.resource.group, req.resource.plural) != ("", "pods") || !pod.get("spec").is_some_and(Value::is_object) {
        return Ok(());
    }
    let ranges = list_in(state, &limitrange::RESOURCE, req.namespace.as_deref()).await?;
    let items: Vec<&Value> = ranges
        .iter()
        .flat_map(|range| range.pointer("/spec/limits").and_then(Value::as_array).into_iter().flatten())
        .collect();
    if items.is_empty() {
        return Ok(());
    }
    let mut set = Vec::new();
    let (default_limits, default_requests) = container_defaults(&items);
    apply_defaults(&mut pod["spec"], &default_limits, &default_requests, &mut set);
    if !set.is_empty() {
        let annotations = pod
            .as_object_mut()
            .map(|pod| pod.entry("metadata").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
            .map(|meta| meta.entry("annotations").or_insert_with(|| json!({})));
        if let Some(Value::Object(annotations)) = annotations {
            annotations.insert(ANNOTATION.into(), json!(format!("LimitRanger plugin set: {}", set.join("; "))));
        }
    }
    let mut breaches = Vec::new();
    for item in &items {
        match item.get("type").and_then(Value::as_str) {
            Some("Container") => {
                for container in containers(&pod["spec"]) {
                    check(
                        item,
                        "Container",
                        &resources(container, "requests"),
                        &resources(container, "limits"),
                        &mut breaches,
                    );
                }
            }
            Some("Pod") => {
                let (requests, limits) = pod_totals(&pod["spec"]);
                check(item, "Pod", &requests, &limits, &mut breaches);
            }
            _ => {}
        }
    }
    match breaches.as_slice() {
        [] => Ok(()),
        [one] => Err(ApiError::Forbidden(format!("pods {:?} is forbidden: {one}", pod_name(pod)))),
        many => Err(ApiError::Forbidden(format!("pods {:?} is forbidden: [{}]", pod_name(pod), many.join(", ")))),
    }
}

fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    CONTAINER_KINDS.into_iter().flat_map(|kind| spec.get(kind).and_then(Value::as_array).into_iter().flatten())
}

/// A container's `requests` or `limits`, in thousandths.
fn resources(container: &Value, field: &str) -> BTreeMap<String, i64> {
    rkube_api::quota::parse_list(container.get("resources").and_then(|r| r.get(field)))
}

/// The `default` limits and `defaultRequest` requests of all `Container` items, a later
/// item's amount winning (Kubernetes' `defaultContainerResourceRequirements`).
fn container_defaults(items: &[&Value]) -> (Map<String, Value>, Map<String, Value>) {
    let (mut limits, mut requests) = (Map::new(), Map::new());
    for item in items.iter().filter(|item| item.get("type").and_then(Value::as_str) == Some("Container")) {
        for (field, into) in [("defaultRequest", &mut requests), ("default", &mut limits)] {
            into.extend(item.get(field).and_then(Value::as_object).cloned().unwrap_or_default());
        }
    }
    (limits, requests)
}

/// Gives containers the default limits and requests they lack, and notes what it set per
/// container in Kubernetes' words: `cpu, memory request for container web`, then
/// `cpu, memory limit for container web`.
fn apply_defaults(
    spec: &mut Value,
    default_limits: &Map<String, Value>,
    default_requests: &Map<String, Value>,
    set: &mut Vec<String>,
) {
    if default_limits.is_empty() && default_requests.is_empty() {
        return;
    }
    for kind in CONTAINER_KINDS {
        let label = if kind == "containers" { "container" } else { "init container" };
        for container in spec.get_mut(kind).and_then(Value::as_array_mut).into_iter().flatten() {
            let Some(container) = container.as_object_mut() else { continue };
            let name = container.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let Some(resources) = container.entry("resources").or_insert_with(|| json!({})).as_object_mut() else {
                continue;
            };
            // A limit alone is also the request (Kubernetes' pod defaulting).
            let limits = resources.get("limits").and_then(Value::as_object).cloned().unwrap_or_default();
            let requests = object_at(resources, "requests");
            for (resource, amount) in &limits {
                requests.entry(resource.clone()).or_insert_with(|| amount.clone());
            }
            let mut fill = |field: &str, defaults: &Map<String, Value>| {
                let current = object_at(resources, field);
                let mut names = Vec::new();
                for (resource, amount) in defaults {
                    if !current.contains_key(resource) {
                        names.push(resource.clone());
                        current.insert(resource.clone(), amount.clone());
                    }
                }
                names.sort();
                names
            };
            let set_limits = fill("limits", default_limits);
            let set_requests = fill("requests", default_requests);
            for (names, what) in [(set_requests, "request"), (set_limits, "limit")] {
                if !names.is_empty() {
                    set.push(format!("{} {what} for {label} {name}", names.join(", ")));
                }
            }
            for field in ["requests", "limits"] {
                if resources.get(field).and_then(Value::as_object).is_some_and(Map::is_empty) {
                    resources.remove(field);
                }
            }
        }
    }
}

fn object_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = map.entry(key).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    match entry {
        Value::Object(object) => object,
        _ => unreachable!("just made an object"),
    }
}

/// The pod's requests and limits for `Pod` items: sums over containers; a resource counts
/// only when every container sets it.
fn pod_totals(spec: &Value) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
    let total = |field: &str| {
        let all: Vec<BTreeMap<String, i64>> = spec
            .get("containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| resources(c, field))
            .collect();
        let mut sums = BTreeMap::new();
        for name in all.iter().flat_map(BTreeMap::keys) {
            if all.iter().all(|r| r.contains_key(name)) {
                sums.insert(
                    name.clone(),
                    all.iter().filter_map(|r| r.get(name)).fold(0i64, |a, b| a.saturating_add(*b)),
                );
            }
        }
        sums
    };
    (total("requests"), total("limits"))
}

/// The bounds of `item` against one container's (or pod's) requests and limits.
fn check(
    item: &Value,
    per: &str,
    requests: &BTreeMap<String, i64>,
    limits: &BTreeMap<String, i64>,
    out: &mut Vec<String>,
) {
    let bound = |field: &str| rkube_api::quota::parse_list(item.get(field));
    for (resource, min) in bound("min") {
        let shown = format(&resource, min);
        // The first breach only, as Kubernetes' minConstraint.
        match (requests.get(&resource), limits.get(&resource)) {
            (None, _) => out.push(format!("minimum {resource} usage per {per} is {shown}.  No request is specified")),
            (Some(request), _) if *request < min => out.push(format!(
                "minimum {resource} usage per {per} is {shown}, but request is {}",
                format(&resource, *request)
            )),
            (_, Some(limit)) if *limit < min => out.push(format!(
                "minimum {resource} usage per {per} is {shown}, but limit is {}",
                format(&resource, *limit)
            )),
            _ => {}
        }
    }
    for (resource, max) in bound("max") {
        let shown = format(&resource, max);
        // The first breach only, as Kubernetes' maxConstraint.
        match (limits.get(&resource), requests.get(&resource)) {
            (None, _) => out.push(format!("maximum {resource} usage per {per} is {shown}.  No limit is specified")),
            (Some(limit), _) if *limit > max => out.push(format!(
                "maximum {resource} usage per {per} is {shown}, but limit is {}",
                format(&resource, *limit)
            )),
            (_, Some(request)) if *request > max => out.push(format!(
                "maximum {resource} usage per {per} is {shown}, but request is {}",
                format(&resource, *request)
            )),
            _ => {}
        }
    }
    for (resource, ratio) in bound("maxLimitRequestRatio") {
        let shown = format_milli_plain(ratio);
        let request = requests.get(&resource).copied().filter(|r| *r > 0);
        let limit = limits.get(&resource).copied().filter(|l| *l > 0);
        match (request, limit) {
            (None, _) => out.push(format!(
                "{resource} max limit to request ratio per {per} is {shown}, but no request is specified or request is 0"
            )),
            (_, None) => out.push(format!(
                "{resource} max limit to request ratio per {per} is {shown}, but no limit is specified or limit is 0"
            )),
            (Some(request), Some(limit)) => {
                #[allow(clippy::cast_precision_loss)] // amounts far below 2^52 thousandths
                let observed = limit as f64 / request as f64;
                #[allow(clippy::cast_precision_loss)]
                if observed > ratio as f64 / 1000.0 {
                    out.push(format!(
                        "{resource} max limit to request ratio per {per} is {shown}, but provided ratio is {observed:.6}"
                    ));
                }
            }
        }
    }
}

fn format_milli_plain(milli: i64) -> String {
    rkube_api::quantity::format_milli(milli, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> Value {
        json!({"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"},
               "defaultRequest": {"cpu": "100m", "memory": "128Mi"}, "max": {"cpu": "1"}, "min": {"cpu": "50m"}})
    }

    #[test]
    fn containers_without_resources_get_the_defaults_and_limits_alone_become_requests() {
        let mut spec = json!({"containers": [
            {"name": "web"},
            {"name": "side", "resources": {"limits": {"cpu": "200m"}}}
        ]});
        let mut set = Vec::new();
        let item = item();
        let (limits, requests) = container_defaults(&[&item]);
        apply_defaults(&mut spec, &limits, &requests, &mut set);
        assert_eq!(
            spec["containers"][0]["resources"],
            json!({
            "limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}})
        );
        assert_eq!(spec["containers"][1]["resources"]["requests"]["cpu"], "200m", "the limit, not the default request");
        assert_eq!(spec["containers"][1]["resources"]["limits"]["memory"], "256Mi");
        assert_eq!(
            set,
            [
                "cpu, memory request for container web",
                "cpu, memory limit for container web",
                "memory request for container side",
                "memory limit for container side"
            ],
            "Kubernetes' annotation parts: requests then limits, per container"
        );
    }

    #[test]
    fn bounds_are_reported_in_kubernetes_words() {
        let mut out = Vec::new();
        let requests = BTreeMap::from([("cpu".to_string(), 20)]);
        let limits = BTreeMap::from([("cpu".to_string(), 2000)]);
        check(&item(), "Container", &requests, &limits, &mut out);
        assert_eq!(
            out,
            [
                "minimum cpu usage per Container is 50m, but request is 20m",
                "maximum cpu usage per Container is 1, but limit is 2",
            ]
        );
        let mut out = Vec::new();
        let ratio = json!({"type": "Container", "maxLimitRequestRatio": {"memory": "2"}});
        let requests = BTreeMap::from([("memory".to_string(), 100_000)]);
        let limits = BTreeMap::from([("memory".to_string(), 300_000)]);
        check(&ratio, "Container", &requests, &limits, &mut out);
        assert_eq!(out, ["memory max limit to request ratio per Container is 2, but provided ratio is 3.000000"]);
    }

    #[test]
    fn a_pod_item_bounds_the_sum_of_its_containers() {
        let spec = json!({"containers": [
            {"resources": {"limits": {"cpu": "600m"}, "requests": {"cpu": "100m"}}},
            {"resources": {"limits": {"cpu": "600m"}}}]});
        let (requests, limits) = pod_totals(&spec);
        assert_eq!(limits.get("cpu"), Some(&1200));
        assert_eq!(requests.get("cpu"), None, "one container without a request: no pod total");
        let pod = json!({"type": "Pod", "max": {"cpu": "1"}, "min": {"cpu": "50m"}});
        let mut out = Vec::new();
        check(&pod, "Pod", &requests, &limits, &mut out);
        assert_eq!(
            out,
            [
                "minimum cpu usage per Pod is 50m.  No request is specified",
                "maximum cpu usage per Pod is 1, but limit is 1200m"
            ]
        );
    }

    #[test]
    fn each_bound_reports_only_its_first_breach() {
        let mut out = Vec::new();
        let over = BTreeMap::from([("cpu".to_string(), 2000)]);
        check(&item(), "Container", &over, &over, &mut out);
        assert_eq!(out, ["maximum cpu usage per Container is 1, but limit is 2"]);
        let mut out = Vec::new();
        let requests = BTreeMap::from([("cpu".to_string(), 10)]);
        let limits = BTreeMap::from([("cpu".to_string(), 20)]);
        check(&item(), "Container", &requests, &limits, &mut out);
        assert_eq!(out, ["minimum cpu usage per Container is 50m, but request is 10m"]);
        let mut out = Vec::new();
        check(&item(), "Container", &BTreeMap::new(), &BTreeMap::new(), &mut out);
        assert_eq!(
            out,
            [
                "minimum cpu usage per Container is 50m.  No request is specified",
                "maximum cpu usage per Container is 1.  No limit is specified"
            ]
        );
    }
}
