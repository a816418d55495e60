//! What an object costs against a ResourceQuota, as Kubernetes' quota evaluators count it.
//!
//! Both sides of quota use this: the apiserver's `ResourceQuota` admission adds a new
//! object's cost to a quota's `status.used` and refuses what goes over `spec.hard`, and the
//! controller-manager's resource-quota controller recomputes `status.used` from what exists
//! (so deletions give room back). Amounts are kept in thousandths ([`Usage`]), exact for CPU
//! millicores and for byte counts alike.
//!
//! What an object uses, as Kubernetes:
//! - every object: `count/<resource>` (core) or `count/<resource>.<group>`, one each;
//! - the legacy core names: `pods`, `services`, `configmaps`, `secrets`, `resourcequotas`,
//!   `replicationcontrollers`, `persistentvolumeclaims`;
//! - a pod that has not ended (not `Succeeded`/`Failed`): its requests as `requests.<name>`
//!   (and `cpu`, `memory`, `ephemeral-storage` alone mean requests) and its limits as
//!   `limits.<name>`, each the larger of the sum over containers and the largest init
//!   container; an ended pod costs nothing, not even its count;
//! - a Service: `services.nodeports` (its node ports) and `services.loadbalancers`.
//!
//! Scopes narrow a quota to some pods: `Terminating`/`NotTerminating`
//! (`activeDeadlineSeconds` set or not), `BestEffort`/`NotBestEffort` (no requests or
//! limits at all), and `scopeSelector` on `PriorityClass` (`In`, `NotIn`, `Exists`,
//! `DoesNotExist`). A scoped quota tracks pods only.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::quantity::{format_milli, parse_milli};

/// Amounts per resource name, in thousandths of the resource's unit.
pub type Usage = BTreeMap<String, i64>;

/// The core resources quota counts under their bare plural.
const LEGACY_COUNTED: &[&str] = &[
    "pods",
    "services",
    "configmaps",
    "secrets",
    "resourcequotas",
    "replicationcontrollers",
    "persistentvolumeclaims",
];

/// Compute resources a quota may track for pods, with the container field they come from.
const COMPUTE: &[(&str, &str, &str)] = &[
    ("cpu", "requests", "cpu"),
    ("memory", "requests", "memory"),
    ("ephemeral-storage", "requests", "ephemeral-storage"),
    ("requests.cpu", "requests", "cpu"),
    ("requests.memory", "requests", "memory"),
    ("requests.ephemeral-storage", "requests", "ephemeral-storage"),
    ("limits.cpu", "limits", "cpu"),
    ("limits.memory", "limits", "memory"),
    ("limits.ephemeral-storage", "limits", "ephemeral-storage"),
];

/// The `count/...` name of a resource.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() { format!("count/{plural}") } else { format!("count/{plural}.{group}") }
}

/// Every resource name [`usage`] may report for objects of `group`/`plural`: which quotas
/// a kind can count against.
pub fn resource_names(group: &str, plural: &str) -> Vec<String> {
    let mut names = vec![count_name(group, plural)];
    if group.is_empty() && LEGACY_COUNTED.contains(&plural) {
        names.push(plural.to_string());
    }
    match (group, plural) {
        ("", "pods") => names.extend(COMPUTE.iter().map(|(name, _, _)| (*name).to_string())),
        ("", "services") => names.extend(["services.nodeports".to_string(), "services.loadbalancers".to_string()]),
        _ => {}
    }
    names
}

/// Whether a pod has ended (and no longer costs quota).
fn is_terminal(pod: &Value) -> bool {
    matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"))
}

/// What `object` of resource `group`/`plural` uses (see the module docs).
pub fn usage(group: &str, plural: &str, object: &Value) -> Usage {
    let mut used = Usage::new();
    if plural == "pods" && group.is_empty() && is_terminal(object) {
        return used;
    }
    used.insert(count_name(group, plural), 1000);
    if group.is_empty() && LEGACY_COUNTED.contains(&plural) {
        used.insert(plural.to_string(), 1000);
    }
    match (group, plural) {
        ("", "pods") => {
            for (name, field, resource) in COMPUTE {
                used.insert((*name).to_string(), pod_amount(object, field, resource));
            }
        }
        ("", "services") => {
            let type_ = object.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
            let ports = object.pointer("/spec/ports").and_then(Value::as_array).map_or(0, Vec::len);
            let node_ports = match type_ {
                "NodePort" | "LoadBalancer" => ports,
                _ => 0,
            };
            used.insert("services.nodeports".into(), i64::try_from(node_ports).unwrap_or(i64::MAX) * 1000);
            used.insert("services.loadbalancers".into(), if type_ == "LoadBalancer" { 1000 } else { 0 });
        }
        _ => {}
    }
    used
}

/// A pod's `field` (`requests`/`limits`) of `resource`: the larger of the sum over its
/// containers and the largest init container, in thousandths (unparseable amounts count 0;
/// validation refused them already).
fn pod_amount(pod: &Value, field: &str, resource: &str) -> i64 {
    let amount = |container: &Value| {
        container
            .get("resources")
            .and_then(|r| r.get(field))
            .and_then(|r| r.get(resource))
            .and_then(Value::as_str)
            .and_then(|q| parse_milli(q).ok())
            .unwrap_or(0)
    };
    let containers = |key: &str| pod.pointer(&format!("/spec/{key}")).and_then(Value::as_array).cloned();
    // Saturating: amounts are the user's, and a sum must not overflow.
    let sum = containers("containers").unwrap_or_default().iter().map(amount).fold(0i64, i64::saturating_add);
    let init = containers("initContainers").unwrap_or_default().iter().map(amount).max().unwrap_or(0);
    sum.max(init)
}

/// The compute resources `hard` tracks that a container of `pod` does not set: a quota on
/// `requests.cpu` needs every container to request CPU, or usage could not be counted.
/// Returns them sorted, e.g. `["limits.memory", "requests.cpu"]`.
pub fn unspecified(hard: &Usage, pod: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    for (name, field, resource) in COMPUTE {
        if !hard.contains_key(*name) || !name.contains('.') {
            continue; // `cpu`/`memory` alone do not demand that containers say so
        }
        let lacks = ["containers", "initContainers"].iter().any(|key| {
            pod.pointer(&format!("/spec/{key}")).and_then(Value::as_array).into_iter().flatten().any(|container| {
                container.get("resources").and_then(|r| r.get(*field)).and_then(|r| r.get(*resource)).is_none()
            })
        });
        if lacks {
            missing.push((*name).to_string());
        }
    }
    missing
}

/// Whether a quota with `spec` tracks `object` of `plural` at all (its scopes, see the
/// module docs). A quota without scopes tracks everything.
pub fn in_scope(spec: &Value, plural: &str, object: &Value) -> bool {
    let scopes: Vec<&str> =
        spec.get("scopes").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let expressions = spec.pointer("/scopeSelector/matchExpressions").and_then(Value::as_array);
    if scopes.is_empty() && expressions.is_none_or(Vec::is_empty) {
        return true;
    }
    if plural != "pods" {
        return false;
    }
    let terminating = object.pointer("/spec/activeDeadlineSeconds").is_some_and(|v| !v.is_null());
    let best_effort = COMPUTE.iter().all(|(_, field, resource)| pod_amount(object, field, resource) == 0);
    let scope_holds = |scope: &str| match scope {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        _ => false,
    };
    let class = object.pointer("/spec/priorityClassName").and_then(Value::as_str).filter(|c| !c.is_empty());
    let expression_holds = |expression: &Value| {
        let scope = expression.get("scopeName").and_then(Value::as_str).unwrap_or_default();
        let operator = expression.get("operator").and_then(Value::as_str).unwrap_or_default();
        let values: Vec<&str> = expression
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if scope != "PriorityClass" {
            return operator == "Exists" && scope_holds(scope);
        }
        match operator {
            "In" => class.is_some_and(|c| values.contains(&c)),
            "NotIn" => class.is_none_or(|c| !values.contains(&c)),
            "Exists" => class.is_some(),
            "DoesNotExist" => class.is_none(),
            _ => false,
        }
    };
    scopes.iter().all(|scope| scope_holds(scope)) && expressions.into_iter().flatten().all(expression_holds)
}

/// A `ResourceList` (`{"cpu": "500m", "pods": "10"}`) in thousandths; amounts that do not
/// parse are left out.
pub fn parse_list(list: Option<&Value>) -> Usage {
    list.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, q)| Some((name.clone(), parse_milli(q.as_str()?).ok()?)))
        .collect()
}

/// `usage` as a `ResourceList`, each amount written canonically for its resource.
pub fn to_list(usage: &Usage) -> Value {
    usage.iter().map(|(name, milli)| (name.clone(), Value::from(format(name, *milli)))).collect()
}

/// One amount of `resource` as Kubernetes writes it (binary suffixes for bytes).
pub fn format(resource: &str, milli: i64) -> String {
    let bytes = ["memory", "storage", "ephemeral-storage"].iter().any(|b| resource.ends_with(b));
    format_milli(milli, bytes)
}

/// `name=amount` pairs for `names`, comma-separated, as quota errors list them.
pub fn describe(names: &[String], amounts: &Usage) -> String {
    let pairs: Vec<String> =
        names.iter().map(|n| format!("{n}={}", format(n, amounts.get(n).copied().unwrap_or(0)))).collect();
    pairs.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: Value, init: Value) -> Value {
        json!({"spec": {"containers": containers, "initContainers": init}, "status": {"phase": "Running"}})
    }

    #[test]
    fn a_pod_costs_its_count_and_the_larger_of_its_containers_and_init_containers() {
        let p = pod(
            json!([{"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
                   {"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}]),
            json!([{"resources": {"requests": {"cpu": "2"}}}]),
        );
        let used = usage("", "pods", &p);
        assert_eq!(used["pods"], 1000);
        assert_eq!(used["count/pods"], 1000);
        assert_eq!(used["requests.cpu"], 2000, "the init container's 2 CPUs beat the sum 500m");
        assert_eq!(used["cpu"], 2000);
        assert_eq!(used["requests.memory"], 128 * 1024 * 1024 * 1000);
        assert_eq!(used["limits.cpu"], 1000);
        assert_eq!(format("requests.memory", used["requests.memory"]), "128Mi");
    }

    #[test]
    fn ended_pods_cost_nothing_and_services_count_their_node_ports() {
        let mut done = pod(json!([{}]), json!([]));
        done["status"]["phase"] = json!("Succeeded");
        assert!(usage("", "pods", &done).is_empty());
        let service = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}});
        let used = usage("", "services", &service);
        assert_eq!((used["services"], used["services.nodeports"], used["services.loadbalancers"]), (1000, 2000, 0));
        let deployment = usage("apps", "deployments", &json!({}));
        assert_eq!(deployment.keys().collect::<Vec<_>>(), ["count/deployments.apps"]);
        for (group, plural, object) in [("", "pods", pod(json!([{}]), json!([]))), ("", "services", service)] {
            let mut names = resource_names(group, plural);
            names.sort();
            assert_eq!(usage(group, plural, &object).into_keys().collect::<Vec<_>>(), names, "{plural}");
        }
    }

    #[test]
    fn huge_amounts_saturate_instead_of_overflowing() {
        let big = json!({"resources": {"requests": {"cpu": "9P"}}});
        let used = usage("", "pods", &pod(json!([big.clone(), big]), json!([])));
        assert_eq!(used["requests.cpu"], i64::MAX);
    }

    #[test]
    fn a_quota_on_requests_needs_every_container_to_set_them() {
        let hard = parse_list(Some(&json!({"requests.cpu": "1", "limits.memory": "1Gi", "cpu": "2", "pods": "3"})));
        let p = pod(json!([{"resources": {"requests": {"cpu": "100m"}}}, {}]), json!([]));
        assert_eq!(unspecified(&hard, &p), ["requests.cpu", "limits.memory"]);
    }

    #[test]
    fn scopes_pick_the_pods_a_quota_tracks() {
        let best_effort = pod(json!([{}]), json!([]));
        let mut critical = pod(json!([{"resources": {"requests": {"cpu": "1"}}}]), json!([]));
        critical["spec"]["priorityClassName"] = json!("high");
        let be = json!({"scopes": ["BestEffort"]});
        assert!(in_scope(&be, "pods", &best_effort));
        assert!(!in_scope(&be, "pods", &critical));
        assert!(!in_scope(&be, "services", &json!({})));
        let high = json!({"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}});
        assert!(in_scope(&high, "pods", &critical));
        assert!(!in_scope(&high, "pods", &best_effort));
        assert!(in_scope(&json!({}), "configmaps", &json!({})));
    }

    #[test]
    fn terminating_and_best_effort_scopes_split_pods_both_ways() {
        let mut deadline = pod(json!([{"resources": {"limits": {"memory": "64Mi"}}}]), json!([]));
        deadline["spec"]["activeDeadlineSeconds"] = json!(60);
        let forever = pod(json!([{}]), json!([]));
        let scoped = |scopes: &[&str]| json!({"scopes": scopes});
        assert!(in_scope(&scoped(&["Terminating"]), "pods", &deadline));
        assert!(!in_scope(&scoped(&["Terminating"]), "pods", &forever));
        assert!(in_scope(&scoped(&["NotTerminating"]), "pods", &forever));
        assert!(!in_scope(&scoped(&["NotTerminating"]), "pods", &deadline));
        assert!(in_scope(&scoped(&["NotBestEffort"]), "pods", &deadline), "a limit alone is not best effort");
        assert!(!in_scope(&scoped(&["NotBestEffort"]), "pods", &forever));
        assert!(in_scope(&scoped(&["Terminating", "NotBestEffort"]), "pods", &deadline), "every scope must hold");
        assert!(!in_scope(&scoped(&["Terminating", "BestEffort"]), "pods", &deadline));
        let exists =
            json!({"scopeSelector": {"matchExpressions": [{"scopeName": "Terminating", "operator": "Exists"}]}});
        assert!(in_scope(&exists, "pods", &deadline) && !in_scope(&exists, "pods", &forever));
    }

    #[test]
    fn secrets_configmaps_and_load_balancers_count_by_both_names() {
        for plural in ["secrets", "configmaps", "services", "resourcequotas"] {
            let used = usage("", plural, &json!({}));
            assert_eq!((used[plural], used[&format!("count/{plural}")]), (1000, 1000), "{plural}");
        }
        let balancer = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
        let used = usage("", "services", &balancer);
        assert_eq!((used["services.loadbalancers"], used["services.nodeports"]), (1000, 1000));
        let plain = usage("", "services", &json!({"spec": {"ports": [{"port": 80}]}}));
        assert_eq!((plain["services.loadbalancers"], plain["services.nodeports"]), (0, 0));
        assert_eq!(count_name("batch", "jobs"), "count/jobs.batch");
        assert_eq!(usage("batch", "jobs", &json!({})).into_keys().collect::<Vec<_>>(), ["count/jobs.batch"]);
    }

    #[test]
    fn lists_read_and_write_back() {
        let list = json!({"cpu": "1500m", "memory": "1Gi", "pods": "10", "bad": "x"});
        let parsed = parse_list(Some(&list));
        assert_eq!(parsed.len(), 3);
        assert_eq!(to_list(&parsed), json!({"cpu": "1500m", "memory": "1Gi", "pods": "10"}));
        assert_eq!(describe(&["pods".into(), "cpu".into()], &parsed), "pods=10,cpu=1500m");
    }
}
