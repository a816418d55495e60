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
    Ok(rules_allow(&rules_for(state, user, &attrs.namespace).await?, attrs))
}

/// Every rule granted to `user` in `namespace` (cluster-wide only, when empty): the rules
/// of the ClusterRoles of the ClusterRoleBindings that apply to the user, then those of
/// the Roles and ClusterRoles of the namespace's RoleBindings that apply.
///
/// # Errors
/// When the RBAC objects cannot be read.
pub async fn rules_for(state: &ApiState, user: &UserInfo, namespace: &str) -> Result<Vec<PolicyRule>, ApiError> {
    let mut rules = Vec::new();
    for binding in objects::<ClusterRoleBinding>(state, &CLUSTER_ROLE_BINDING, None).await? {
        if applies(binding.subjects.as_deref(), user, "") {
            rules.extend(role_rules(state, "ClusterRole", &binding.role_ref.name, "").await?.unwrap_or_default());
        }
    }
    if namespace.is_empty() {
        return Ok(rules);
    }
    for binding in objects::<RoleBinding>(state, &ROLE_BINDING, Some(namespace)).await? {
        if applies(binding.subjects.as_deref(), user, namespace) {
            let role = &binding.role_ref;
            rules.extend(role_rules(state, &role.kind, &role.name, namespace).await?.unwrap_or_default());
        }
    }
    Ok(rules)
}

/// The rules of the `ClusterRole` or (in `namespace`) `Role` named `name`; `None` when it
/// does not exist.
///
/// # Errors
/// When the object cannot be read.
pub async fn role_rules(
    state: &ApiState,
    kind: &str,
    name: &str,
    namespace: &str,
) -> Result<Option<Vec<PolicyRule>>, ApiError> {
    Ok(match kind {
        "ClusterRole" => {
            object::<ClusterRole>(state, &CLUSTER_ROLE, None, name).await?.map(|r| r.rules.unwrap_or_default())
        }
        "Role" => object::<Role>(state, &ROLE, Some(namespace), name).await?.map(|r| r.rules.unwrap_or_default()),
        _ => None,
    })
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

/// The rules of `wanted` that `held` does not cover, one verb, group, resource and name
/// (or URL) at a time, as Kubernetes' `validation.Covers` breaks them down.
pub fn uncovered(held: &[PolicyRule], wanted: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut missing = Vec::new();
    for rule in wanted {
        for atom in atoms(rule) {
            if !held.iter().any(|h| rule_covers(h, &atom)) {
                missing.push(atom);
            }
        }
    }
    missing
}

/// `rule` broken into rules of one verb and one group, resource and name, or one URL.
fn atoms(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |v: &String| Some(vec![v.clone()]);
    let mut atoms = Vec::new();
    for verb in &rule.verbs {
        for url in rule.non_resource_urls.iter().flatten() {
            atoms.push(PolicyRule { verbs: vec![verb.clone()], non_resource_urls: one(url), ..Default::default() });
        }
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                let atom = PolicyRule {
                    verbs: vec![verb.clone()],
                    api_groups: one(group),
                    resources: one(resource),
                    ..Default::default()
                };
                match rule.resource_names.as_deref() {
                    Some(names) if !names.is_empty() => {
                        atoms.extend(names.iter().map(|n| PolicyRule { resource_names: one(n), ..atom.clone() }))
                    }
                    _ => atoms.push(atom),
                }
            }
        }
    }
    atoms
}

/// Whether `held` covers the one-of-each rule `atom`.
fn rule_covers(held: &PolicyRule, atom: &PolicyRule) -> bool {
    let has = |values: Option<&Vec<String>>, want: &str| values.into_iter().flatten().any(|v| v == "*" || v == want);
    let first = |values: &Option<Vec<String>>| values.as_ref().and_then(|v| v.first()).cloned().unwrap_or_default();
    if !has(Some(&held.verbs), atom.verbs.first().map_or("", String::as_str)) {
        return false;
    }
    if let Some(url) = atom.non_resource_urls.as_ref().and_then(|u| u.first()) {
        return held
            .non_resource_urls
            .iter()
            .flatten()
            .any(|h| h == "*" || h == url || h.strip_suffix('*').is_some_and(|prefix| url.starts_with(prefix)));
    }
    let resource = first(&atom.resources);
    let resource_held = held.resources.iter().flatten().any(|h| {
        h == "*" || *h == resource || resource.split_once('/').is_some_and(|(_, sub)| h.strip_prefix("*/") == Some(sub))
    });
    let names = held.resource_names.as_deref().unwrap_or_default();
    let name = first(&atom.resource_names);
    has(held.api_groups.as_ref(), &first(&atom.api_groups))
        && resource_held
        && (names.is_empty() || (!name.is_empty() && names.contains(&name)))
}

/// Every object of `res` (in `namespace`), decoded; undecodable ones are skipped.
pub(crate) async fn objects<K: DeserializeOwned>(
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
pub(crate) async fn object<K: DeserializeOwned>(
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
    fn a_grant_is_covered_only_by_rules_that_hold_each_of_its_pieces() {
        let held = [
            rule(json!({"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]})),
            rule(json!({"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["*"]})),
            rule(json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["app"], "verbs": ["get"]})),
        ];
        let wanted = [rule(json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "delete"]}))];
        let missing = uncovered(&held, &wanted);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].verbs, vec!["delete"]);
        let within = [
            rule(json!({"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["update"]})),
            rule(json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["app"], "verbs": ["get"]})),
        ];
        assert!(uncovered(&held, &within).is_empty());
        let every_configmap = [rule(json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}))];
        assert_eq!(uncovered(&held, &every_configmap).len(), 1, "one name does not cover all of them");
        let urls = [rule(json!({"nonResourceURLs": ["/metrics"], "verbs": ["get"]}))];
        assert_eq!(uncovered(&held, &urls).len(), 1);
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
