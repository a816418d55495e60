//! RBAC escalation prevention: nobody grants, through a Role or a binding, a permission
//! they do not hold themselves (Kubernetes' `ConfirmNoEscalation` in its RBAC registry).
//!
//! - Writing a Role or ClusterRole: every rule must be covered by the writer's own rules
//!   in that namespace (cluster-wide for a ClusterRole), unless the writer may `escalate`
//!   that role.
//! - Writing a RoleBinding or ClusterRoleBinding: the role it names must exist and its
//!   rules be covered likewise, unless the writer may `bind` that role.
//!
//! Members of `system:masters`, the apiserver's own writes (bootstrap) and apiservers that
//! do not decide by RBAC skip the check.

use k8s_openapi::api::rbac::v1::PolicyRule;
use rkube_api::kinds::rbac::GROUP;
use serde_json::Value;

use crate::ApiState;
use crate::authentication::MASTERS;
use crate::authorization::rbac::{role_rules, rules_allow, rules_for, uncovered};
use crate::authorization::{Attributes, current_user, rbac_decides};
use crate::error::ApiError;
use crate::request::ResourceRequest;

/// Admits the write of `object` into `req`'s resource.
///
/// # Errors
/// 403 when the object grants more than its writer holds; etcd errors.
pub async fn admit(state: &ApiState, req: &ResourceRequest, object: &Value) -> Result<(), ApiError> {
    let res = req.resource;
    if res.group != GROUP || !rbac_decides(&state.config.authorization) {
        return Ok(());
    }
    let Some(user) = current_user().filter(|u| !u.in_group(MASTERS)) else {
        return Ok(());
    };
    let namespace = req.namespace.clone().unwrap_or_default();
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let held = rules_for(state, &user, &namespace).await?;
    let may = |verb: &str, resource: &str, resource_name: &str| {
        let attrs = Attributes {
            verb: verb.into(),
            resource_request: true,
            path: String::new(),
            api_group: GROUP.into(),
            api_version: "v1".into(),
            resource: resource.into(),
            subresource: String::new(),
            namespace: namespace.clone(),
            name: resource_name.into(),
        };
        rules_allow(&held, &attrs)
    };
    let forbidden = |why: String| ApiError::Forbidden(format!("{}.{GROUP} {name:?} is forbidden: {why}", res.plural));
    let granted: Vec<PolicyRule> = match res.kind {
        "Role" | "ClusterRole" => {
            if may("escalate", res.plural, name) {
                return Ok(());
            }
            serde_json::from_value(object.get("rules").cloned().unwrap_or(Value::Array(Vec::new())))
                .map_err(|e| ApiError::BadRequest(format!("rules: {e}")))?
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let kind = object.pointer("/roleRef/kind").and_then(Value::as_str).unwrap_or_default();
            let role = object.pointer("/roleRef/name").and_then(Value::as_str).unwrap_or_default();
            let plural = if kind == "Role" { "roles" } else { "clusterroles" };
            if may("bind", plural, role) {
                return Ok(());
            }
            let role_namespace = if kind == "Role" { namespace.as_str() } else { "" };
            role_rules(state, kind, role, role_namespace)
                .await?
                .ok_or_else(|| forbidden(format!("{plural}.{GROUP} {role:?} not found")))?
        }
        _ => return Ok(()),
    };
    let missing = uncovered(&held, &granted);
    if missing.is_empty() {
        return Ok(());
    }
    Err(forbidden(format!(
        "user {:?} (groups={:?}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        user.groups,
        missing.iter().map(compact).collect::<Vec<_>>().join("\n")
    )))
}

/// A rule as Kubernetes prints it in this message: `{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}`.
fn compact(rule: &PolicyRule) -> String {
    let list =
        |name: &str, values: Option<&Vec<String>>| values.filter(|v| !v.is_empty()).map(|v| format!("{name}:{v:?}"));
    let parts: Vec<String> = [
        list("APIGroups", rule.api_groups.as_ref()),
        list("Resources", rule.resources.as_ref()),
        list("ResourceNames", rule.resource_names.as_ref()),
        list("NonResourceURLs", rule.non_resource_urls.as_ref()),
        list("Verbs", Some(&rule.verbs)),
    ]
    .into_iter()
    .flatten()
    .collect();
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_print_as_kubernetes_prints_them() {
        let rule: PolicyRule =
            serde_json::from_value(serde_json::json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}))
                .expect("a rule");
        assert_eq!(compact(&rule), r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#);
    }
}
