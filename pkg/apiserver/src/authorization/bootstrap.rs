//! The roles and bindings every cluster starts with (Kubernetes' bootstrap policy), for the
//! kinds rkube serves: `cluster-admin` bound to `system:masters`; `system:discovery` and
//! `system:public-info-viewer` (the discovery documents, `/healthz`, `/version`, ...), the
//! former for every authenticated user, the latter for anyone; the user-facing `view`,
//! `edit` and `admin`, granted by whoever binds them; and the components' own:
//! `system:kube-scheduler`, `system:kube-controller-manager` and `system:node-proxier` (bound
//! to the users `system:kube-scheduler`, `system:kube-controller-manager` and
//! `system:kube-proxy`, the common names of their certificates) and `system:node` (bound to the group
//! `system:nodes`, so that kubelets work with RBAC alone; it grants no Secrets or
//! ConfigMaps, which only the Node authorizer gives, pod by pod).
//!
//! Created when missing at every start. A bootstrap ClusterRole that exists gains the rules
//! of this version it lacks (an upgraded apiserver's new permissions reach old clusters;
//! rules an administrator added stay), unless it is annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "false"`, as Kubernetes reconciles them;
//! bindings are left as they are.

use rkube_api::kinds::rbac::{CLUSTER_ROLE, CLUSTER_ROLE_BINDING};
use serde_json::{Value, json};

use crate::ApiState;
use crate::authentication::{AUTHENTICATED, MASTERS, UNAUTHENTICATED};
use crate::error::ApiError;
use crate::request::ResourceRequest;
use crate::rest;

const READ: [&str; 3] = ["get", "list", "watch"];
const WRITE: [&str; 6] = ["create", "delete", "deletecollection", "patch", "update", "get"];

/// What `view` may read: everything of a namespace except Secrets and RBAC objects.
fn view_rules() -> Vec<Value> {
    vec![
        json!({"apiGroups": [""], "verbs": READ, "resources": [
            "pods", "pods/log", "pods/status", "configmaps", "endpoints", "services", "services/status",
            "replicationcontrollers", "replicationcontrollers/scale", "replicationcontrollers/status",
            "serviceaccounts", "events", "namespaces", "namespaces/status",
            "resourcequotas", "resourcequotas/status", "limitranges",
            "persistentvolumeclaims", "persistentvolumeclaims/status"]}),
        json!({"apiGroups": ["policy"], "verbs": READ, "resources": ["poddisruptionbudgets", "poddisruptionbudgets/status"]}),
        json!({"apiGroups": ["discovery.k8s.io"], "verbs": READ, "resources": ["endpointslices"]}),
        json!({"apiGroups": ["events.k8s.io"], "verbs": READ, "resources": ["events"]}),
        json!({"apiGroups": ["apps"], "verbs": READ, "resources": [
            "deployments", "deployments/scale", "deployments/status",
            "replicasets", "replicasets/scale", "replicasets/status",
            "daemonsets", "daemonsets/status", "controllerrevisions",
            "statefulsets", "statefulsets/scale", "statefulsets/status"]}),
        json!({"apiGroups": ["batch"], "verbs": READ, "resources": ["jobs", "jobs/status", "cronjobs", "cronjobs/status"]}),
        // Kubernetes' system:aggregated-metrics-reader, aggregated into view: `kubectl top pod`.
        json!({"apiGroups": ["metrics.k8s.io"], "verbs": READ, "resources": ["pods", "nodes"]}),
    ]
}

/// What `edit` adds: writing the workloads and their configuration, Secrets included, and
/// running commands in pods.
fn edit_rules() -> Vec<Value> {
    let mut rules = view_rules();
    rules.extend([
        json!({"apiGroups": [""], "verbs": WRITE, "resources": [
            "pods", "configmaps", "endpoints", "services", "secrets", "serviceaccounts",
            "replicationcontrollers", "replicationcontrollers/scale", "persistentvolumeclaims"]}),
        json!({"apiGroups": [""], "verbs": READ, "resources": ["secrets"]}),
        json!({"apiGroups": [""], "verbs": ["create", "get"], "resources": ["pods/exec", "pods/attach", "pods/portforward"]}),
        json!({"apiGroups": [""], "verbs": ["patch", "update"], "resources": ["pods/ephemeralcontainers"]}),
        json!({"apiGroups": [""], "verbs": ["create"], "resources": ["pods/eviction"]}),
        json!({"apiGroups": ["policy"], "verbs": WRITE, "resources": ["poddisruptionbudgets"]}),
        json!({"apiGroups": ["apps"], "verbs": WRITE, "resources": [
            "deployments", "deployments/scale", "replicasets", "replicasets/scale", "daemonsets",
            "statefulsets", "statefulsets/scale"]}),
        json!({"apiGroups": ["batch"], "verbs": WRITE, "resources": ["jobs", "cronjobs"]}),
    ]);
    rules
}

/// What `admin` adds: the namespace's own Roles and RoleBindings.
fn admin_rules() -> Vec<Value> {
    let mut rules = edit_rules();
    let mut verbs = WRITE.to_vec();
    verbs.extend(["list", "watch"]);
    rules.push(
        json!({"apiGroups": ["rbac.authorization.k8s.io"], "verbs": verbs, "resources": ["roles", "rolebindings"]}),
    );
    rules
}

/// The bootstrap ClusterRoles.
pub fn cluster_roles() -> Vec<Value> {
    let role = |name: &str, rules: Vec<Value>| {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "rules": rules
        })
    };
    let public = ["/healthz", "/livez", "/readyz", "/version", "/version/"];
    let mut discovery: Vec<&str> = vec!["/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*"];
    discovery.extend(public);
    vec![
        role(
            "cluster-admin",
            vec![
                json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
                json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
            ],
        ),
        role("system:discovery", vec![json!({"nonResourceURLs": discovery, "verbs": ["get"]})]),
        role("system:public-info-viewer", vec![json!({"nonResourceURLs": public, "verbs": ["get"]})]),
        role(
            "system:basic-user",
            vec![
                json!({"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]}),
                json!({"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]}),
            ],
        ),
        role("view", view_rules()),
        role("edit", edit_rules()),
        role("admin", admin_rules()),
        role("system:kube-scheduler", scheduler_rules()),
        role("system:kube-controller-manager", controller_manager_rules()),
        // What every node's rkube-proxy reads (Kubernetes' name and rules).
        role(
            "system:node-proxier",
            vec![
                json!({"apiGroups": [""], "resources": ["services", "endpoints", "nodes"], "verbs": READ}),
                json!({"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ}),
                json!({"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]}),
            ],
        ),
        role("system:node", super::node::node_rules()),
        role(
            "system:auth-delegator",
            vec![
                json!({"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}),
                json!({"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}),
            ],
        ),
    ]
}

/// The scheduler reads everything it scores by, binds pods, writes their status (why one
/// is unschedulable), events and its leader-election Lease.
fn scheduler_rules() -> Vec<Value> {
    vec![
        json!({"apiGroups": ["", "apps"], "resources": ["*"], "verbs": READ}),
        json!({"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": READ}),
        json!({"apiGroups": [""], "resources": ["pods/binding", "bindings"], "verbs": ["create"]}),
        json!({"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch", "update"]}),
        json!({"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]}),
        json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create", "get", "update"]}),
    ]
}

/// Every controller of rkube-controller-manager runs under its one identity (Kubernetes
/// gives each controller a ServiceAccount of its own, which rkube does not have yet), and
/// between them they manage every kind: everything on resources, nothing on other paths.
fn controller_manager_rules() -> Vec<Value> {
    vec![json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]})]
}

/// The bootstrap ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<Value> {
    let binding = |name: &str, subjects: &[(&str, &str)]| {
        let subjects: Vec<Value> = subjects
            .iter()
            .map(|(kind, name)| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}))
            .collect();
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": subjects
        })
    };
    vec![
        binding("cluster-admin", &[("Group", MASTERS)]),
        binding("system:discovery", &[("Group", AUTHENTICATED)]),
        binding("system:basic-user", &[("Group", AUTHENTICATED)]),
        binding("system:public-info-viewer", &[("Group", AUTHENTICATED), ("Group", UNAUTHENTICATED)]),
        binding("system:kube-scheduler", &[("User", "system:kube-scheduler")]),
        binding("system:kube-controller-manager", &[("User", "system:kube-controller-manager")]),
        binding("system:node-proxier", &[("User", "system:kube-proxy")]),
        binding("system:node", &[("Group", "system:nodes")]),
    ]
}

/// Creates every bootstrap role and binding that does not exist.
///
/// # Errors
/// When etcd cannot be written.
pub async fn ensure(state: &ApiState) -> Result<(), ApiError> {
    let objects = cluster_roles().into_iter().map(|o| (&CLUSTER_ROLE, o));
    let objects = objects.chain(cluster_role_bindings().into_iter().map(|o| (&CLUSTER_ROLE_BINDING, o)));
    for (res, body) in objects {
        let req = ResourceRequest { resource: res, namespace: None, name: None, subresource: None };
        let name = body.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        let wanted = body.clone();
        match rest::create(state, &req, body, &rest::WriteOptions::default()).await {
            Ok(_) => {}
            Err(ApiError::AlreadyExists(_)) if std::ptr::eq(res, &CLUSTER_ROLE) => {
                let opts = rest::WriteOptions::default();
                rest::guaranteed_update(state, &req, &name, None, &opts, |current| Ok(reconciled(current, &wanted)))
                    .await?;
            }
            Err(ApiError::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The annotation that, set to `"false"`, keeps the apiserver from updating a bootstrap role.
pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// A stored bootstrap ClusterRole brought up to date, as kube-apiserver's RBAC bootstrap
/// does at every start: the rules of this version that it lacks are added (rules someone
/// added stay), unless its `autoupdate` annotation is `"false"`.
pub fn reconciled(current: &Value, wanted: &Value) -> Value {
    let mut out = current.clone();
    if current.pointer(&format!("/metadata/annotations/{}", AUTOUPDATE.replace('/', "~1"))).and_then(Value::as_str)
        == Some("false")
    {
        return out;
    }
    let mut rules = current.get("rules").and_then(Value::as_array).cloned().unwrap_or_default();
    for rule in wanted.get("rules").and_then(Value::as_array).into_iter().flatten() {
        if !rules.contains(rule) {
            rules.push(rule.clone());
        }
    }
    out["rules"] = Value::Array(rules);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_bootstrap_role_gains_new_rules_and_keeps_added_ones_unless_it_opts_out() {
        let wanted = json!({"rules": [{"verbs": ["get"], "resources": ["pods"]}, {"verbs": ["create"], "resources": ["tokenreviews"]}]});
        let stored = json!({"metadata": {"name": "system:node"},
            "rules": [{"verbs": ["get"], "resources": ["pods"]}, {"verbs": ["list"], "resources": ["extra"]}]});
        let updated = reconciled(&stored, &wanted);
        assert_eq!(updated["rules"].as_array().map(Vec::len), Some(3));
        assert!(
            updated["rules"]
                .as_array()
                .expect("rules")
                .contains(&json!({"verbs": ["create"], "resources": ["tokenreviews"]}))
        );
        let pinned = json!({"metadata": {"name": "system:node", "annotations": {AUTOUPDATE: "false"}}, "rules": []});
        assert_eq!(reconciled(&pinned, &wanted), pinned);
    }

    /// Whether the bootstrap ClusterRole `role` allows `method` on `path`.
    fn role_allows(role: &str, method: http::Method, path: &str) -> bool {
        let role = cluster_roles().into_iter().find(|r| r["metadata"]["name"] == role).expect("a bootstrap role");
        let rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule> =
            serde_json::from_value(role["rules"].clone()).expect("rules");
        crate::authorization::rbac::rules_allow(&rules, &super::super::Attributes::of(&method, path, None))
    }

    #[test]
    fn view_reads_metrics_and_edit_streams_and_debugs() {
        use http::Method;
        let pod = "/api/v1/namespaces/default/pods/web";
        for role in ["view", "edit", "admin"] {
            assert!(role_allows(role, Method::GET, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods"), "{role}");
            assert!(role_allows(role, Method::GET, "/apis/metrics.k8s.io/v1beta1/nodes"), "{role}");
        }
        for role in ["edit", "admin"] {
            for sub in ["exec", "attach", "portforward"] {
                assert!(role_allows(role, Method::POST, &format!("{pod}/{sub}")), "{role} {sub}");
                assert!(role_allows(role, Method::GET, &format!("{pod}/{sub}")), "{role} {sub}");
            }
            assert!(role_allows(role, Method::PATCH, &format!("{pod}/ephemeralcontainers")), "{role}");
            assert!(role_allows(role, Method::POST, &format!("{pod}/eviction")), "{role}");
        }
        for sub in ["exec", "portforward", "ephemeralcontainers"] {
            assert!(!role_allows("view", Method::POST, &format!("{pod}/{sub}")), "view may not {sub}");
        }
        assert!(!role_allows("view", Method::PATCH, &format!("{pod}/ephemeralcontainers")));
    }

    #[test]
    fn every_bootstrap_object_is_valid() {
        for role in cluster_roles() {
            let prepared = CLUSTER_ROLE.strategy.create(role.clone());
            assert!(prepared.is_ok(), "{role}: {prepared:?}");
        }
        for binding in cluster_role_bindings() {
            let prepared = CLUSTER_ROLE_BINDING.strategy.create(binding.clone());
            assert!(prepared.is_ok(), "{binding}: {prepared:?}");
        }
    }
}
