//! The RBAC authorizer: a request is allowed when a binding that applies to the user grants
//! a role with a rule that covers it (Kubernetes' `rbac.RBACAuthorizer`).
//!
//! For a request in namespace N it looks at every ClusterRoleBinding, then at the
//! RoleBindings of N (a RoleBinding may grant a Role of N or a ClusterRole, within N
//! only). A binding applies to a `User` by name, to a `Group` the user is in, and to a
//! `ServiceAccount` whose user name is `system:serviceaccount:<namespace>:<name>`. A rule
//! covers a request when its verbs, API groups, resources (`pods`, `pods/log`, `*/scale`,
//! `*`) and resource names all match, or, for a non-resource path, its verbs and URLs (`*`,
//! the path itself, or a prefix ending in `*`). Members of `system:masters` are allowed
//! everything without a look at the objects.
//!
//! The objects are read from the watch caches (etcd when caches are off) and decoded for
//! each request that needs them: cheap for the few dozen bindings of a small cluster. A
//! missing role grants nothing; it is not an error.

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject};
use rkube_api::kinds::rbac::{CLUSTER_ROLE, CLUSTER_ROLE_BINDING, ROLE, ROLE_BINDING};
use rkube_api::registry::ResourceDef;
use rkube_storage::ListOptions;
use serde::de::DeserializeOwned;

use super::Attributes;
use crate::ApiState;
use crate::authentication::{MASTERS, UserInfo};
use crate::error::ApiError;
use crate::rest::Filter;

/// Whether RBAC allows `user` to do `attrs`.
///
/// # Errors
/// When the RBAC objects cannot be read.
pub async fn allows(state: &ApiState, user: &UserInfo, attrs: &Attributes) -> Result<bool, ApiError> {
    if user.in_group(MASTERS) {
        return Ok(true);
    }
    for binding in objects::<ClusterRoleBinding>(state, &CLUSTER_ROLE_BINDING, None).await? {
        if applies(binding.subjects.as_deref(), user, "")
            && cluster_role_allows(state, &binding.role_ref.name, attrs).await?
        {
            return Ok(true);
        }
    }
    if attrs.namespace.is_empty() {
        return Ok(false);
    }
    let namespace = attrs.namespace.as_str();
    for binding in objects::<RoleBinding>(state, &ROLE_BINDING, Some(namespace)).await? {
        if !applies(binding.subjects.as_deref(), user, namespace) {
            continue;
        }
        let granted = match binding.role_ref.kind.as_str() {
            "ClusterRole" => cluster_role_allows(state, &binding.role_ref.name, attrs).await?,
            "Role" => {
                let role = object::<Role>(state, &ROLE, Some(namespace), &binding.role_ref.name).await?;
                role.is_some_and(|r| rules_allow(r.rules.as_deref().unwrap_or_default(), attrs))
            }
            _ => false,
        };
        if granted {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn cluster_role_allows(state: &ApiState, name: &str, attrs: &Attributes) -> Result<bool, ApiError> {
    let role = object::<ClusterRole>(state, &CLUSTER_ROLE, None, name).await?;
    Ok(role.is_some_and(|r| rules_allow(r.rules.as_deref().unwrap_or_default(), attrs)))
}

/// Whether a binding with `subjects` (in `namespace`, empty for a ClusterRoleBinding)
/// applies to `user`.
pub fn applies(subjects: Option<&[Subject]>, user: &UserInfo, namespace: &str) -> bool {
    subjects.unwrap_or_default().iter().any(|subject| match subject.kind.as_str() {
        "User" => subject.name == user.name,
        "Group" => user.in_group(&subject.name),
        "ServiceAccount" => {
            let sa_namespace = subject.namespace.as_deref().filter(|ns| !ns.is_empty()).unwrap_or(namespace);
            user.name == format!("system:serviceaccount:{sa_namespace}:{}", subject.name)
        }
        _ => false,
    })
}

/// Whether any of `rules` covers `attrs`.
pub fn rules_allow(rules: &[PolicyRule], attrs: &Attributes) -> bool {
    rules.iter().any(|rule| rule_allows(rule, attrs))
}

fn rule_allows(rule: &PolicyRule, attrs: &Attributes) -> bool {
    let has = |values: &[String], want: &str| values.iter().any(|v| v == "*" || v == want);
    if !has(&rule.verbs, &attrs.verb) {
        return false;
    }
    if !attrs.resource_request {
        return rule.non_resource_urls.as_deref().unwrap_or_default().iter().any(|url| {
            url == "*"
                || *url == attrs.path
                || url.strip_suffix('*').is_some_and(|prefix| attrs.path.starts_with(prefix))
        });
    }
    if !has(rule.api_groups.as_deref().unwrap_or_default(), &attrs.api_group) {
        return false;
    }
    let resources = rule.resources.as_deref().unwrap_or_default();
    let resource_matches = if attrs.subresource.is_empty() {
        has(resources, &attrs.resource)
    } else {
        let combined = format!("{}/{}", attrs.resource, attrs.subresource);
        let any_with_sub = format!("*/{}", attrs.subresource);
        resources.iter().any(|r| r == "*" || *r == combined || *r == any_with_sub)
    };
    if !resource_matches {
        return false;
    }
    let names = rule.resource_names.as_deref().unwrap_or_default();
    names.is_empty() || names.contains(&attrs.name)
}

/// Every object of `res` (in `namespace`), decoded; undecodable ones are skipped.
async fn objects<K: DeserializeOwned>(
    state: &ApiState,
    res: &ResourceDef,
    namespace: Option<&str>,
) -> Result<Vec<K>, ApiError> {
    let prefix = state.keys.collection(res.plural, namespace);
    if let Some(snapshot) = state.cacher(res).and_then(|c| c.list(&prefix, &Filter::default(), None, None)) {
        return Ok(snapshot.objects.iter().filter_map(|o| serde_json::from_slice(&o.json).ok()).collect());
    }
    let page = state.store.list(&prefix, ListOptions::default()).await?;
    Ok(page.items.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect())
}

/// The object `name` of `res` (in `namespace`), if it exists.
async fn object<K: DeserializeOwned>(
    state: &ApiState,
    res: &ResourceDef,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<K>, ApiError> {
    let key = state.keys.object(res.plural, namespace, name);
    if let Some(snapshot) = state.cacher(res).and_then(|c| c.list(&key, &Filter::default(), Some(1), None)) {
        let exact = snapshot.objects.iter().find(|o| o.key == key);
        return Ok(exact.and_then(|o| serde_json::from_slice(&o.json).ok()));
    }
    let found = state.store.get(&key).await;
    match found {
        Ok(kv) => Ok(serde_json::from_slice(&kv.value).ok()),
        Err(rkube_storage::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use http::Method;
    use serde_json::json;

    use super::*;

    fn rule(value: serde_json::Value) -> PolicyRule {
        serde_json::from_value(value).expect("a rule")
    }

    fn request(method: Method, path: &str) -> Attributes {
        Attributes::of(&method, path, None)
    }

    #[test]
    fn a_rule_covers_exactly_its_verbs_groups_resources_and_names() {
        let pods = [rule(json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}))];
        assert!(rules_allow(&pods, &request(Method::GET, "/api/v1/namespaces/a/pods")));
        assert!(rules_allow(&pods, &request(Method::GET, "/api/v1/namespaces/a/pods/p")));
        assert!(!rules_allow(&pods, &request(Method::DELETE, "/api/v1/namespaces/a/pods/p")), "verb");
        assert!(!rules_allow(&pods, &request(Method::GET, "/api/v1/namespaces/a/pods/p/log")), "subresource");
        assert!(!rules_allow(&pods, &request(Method::GET, "/apis/apps/v1/namespaces/a/deployments")), "group");

        let logs = [rule(json!({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}))];
        assert!(rules_allow(&logs, &request(Method::GET, "/api/v1/namespaces/a/pods/p/log")));
        assert!(!rules_allow(&logs, &request(Method::GET, "/api/v1/namespaces/a/pods/p")));

        let scale = [rule(json!({"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["*"]}))];
        assert!(rules_allow(&scale, &request(Method::PATCH, "/apis/apps/v1/namespaces/a/deployments/d/scale")));

        let one =
            [rule(json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["app"], "verbs": ["get"]}))];
        assert!(rules_allow(&one, &request(Method::GET, "/api/v1/namespaces/a/configmaps/app")));
        assert!(!rules_allow(&one, &request(Method::GET, "/api/v1/namespaces/a/configmaps/other")));
        assert!(!rules_allow(&one, &request(Method::GET, "/api/v1/namespaces/a/configmaps")), "a list names nothing");
    }

    #[test]
    fn url_rules_match_paths_and_prefixes() {
        let urls = [rule(json!({"nonResourceURLs": ["/healthz", "/apis/*"], "verbs": ["get"]}))];
        assert!(rules_allow(&urls, &request(Method::GET, "/healthz")));
        assert!(rules_allow(&urls, &request(Method::GET, "/apis/apps/v1")));
        assert!(!rules_allow(&urls, &request(Method::GET, "/metrics")));
        assert!(!rules_allow(&urls, &request(Method::POST, "/healthz")));
        assert!(
            !rules_allow(&urls, &request(Method::GET, "/api/v1/namespaces/a/pods")),
            "a URL rule grants no resource"
        );
    }

    #[test]
    fn subjects_apply_by_user_group_and_service_account() {
        let alice = UserInfo { name: "alice".into(), uid: String::new(), groups: vec!["devs".into()] };
        let bot = UserInfo { name: "system:serviceaccount:ci:bot".into(), uid: String::new(), groups: vec![] };
        let subjects: Vec<Subject> = serde_json::from_value(json!([
            {"kind": "User", "name": "bob"}, {"kind": "Group", "name": "devs"}
        ]))
        .expect("subjects");
        assert!(applies(Some(&subjects), &alice, ""));
        assert!(!applies(Some(&subjects), &bot, ""));
        let sa: Vec<Subject> =
            serde_json::from_value(json!([{"kind": "ServiceAccount", "name": "bot"}])).expect("subjects");
        assert!(applies(Some(&sa), &bot, "ci"), "a RoleBinding's own namespace by default");
        assert!(!applies(Some(&sa), &bot, "prod"));
        assert!(!applies(None, &alice, ""));
    }
}
