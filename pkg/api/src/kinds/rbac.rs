//! The four RBAC kinds (rbac.authorization.k8s.io/v1): Role and ClusterRole (sets of
//! rules: verbs on resources, or on non-resource URLs), RoleBinding and ClusterRoleBinding
//! (grant a role to users, groups and ServiceAccounts). They share their rules and their
//! columns, so they share this file.
//!
//! Their strategy, as Kubernetes' `pkg/apis/rbac/validation`:
//! - names are URL path segments (`system:node` is a valid name);
//! - a rule has verbs, and either API groups and resources, or non-resource URLs (only a
//!   ClusterRole's rules may name those), never both;
//! - a binding's `roleRef` names a `Role` or `ClusterRole` (a ClusterRoleBinding only a
//!   ClusterRole) of `rbac.authorization.k8s.io` and never changes once created; a subject
//!   is a `User` or `Group` (of that group) or a `ServiceAccount` (of the core group; a
//!   ClusterRoleBinding must say its namespace). `apiGroup`s left out are defaulted.
//!
//! Not here: what a binding grants (the apiserver's authorizer reads these objects), and
//! ClusterRole aggregation (an `aggregationRule` is validated and stored, no controller
//! fills its rules yet).

use jiff::Timestamp;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use serde_json::Value;

use crate::columns::{AGE, Column, NAME, age_cell, column, list, name_cell, text};
use crate::field::FieldError;
use crate::registry::ResourceDef;
use crate::strategy::{Strategy, StrategyFor};
use crate::validation::{NameFormat, is_dns1123_subdomain, is_path_segment_name, validate_label_selector};

/// The API group of the RBAC kinds, and of `User` and `Group` subjects.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// The registry entry of Role.
pub static ROLE: ResourceDef = ResourceDef {
    group: GROUP,
    version: "v1",
    kind: "Role",
    plural: "roles",
    singular: "role",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: &[],
    strategy: &StrategyFor::<Role>::new(),
    conversion: None,
    custom: None,
    columns: ROLE_COLUMNS,
    row: role_row,
};

/// The registry entry of ClusterRole.
pub static CLUSTER_ROLE: ResourceDef = ResourceDef {
    group: GROUP,
    version: "v1",
    kind: "ClusterRole",
    plural: "clusterroles",
    singular: "clusterrole",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: &[],
    strategy: &StrategyFor::<ClusterRole>::new(),
    conversion: None,
    custom: None,
    columns: ROLE_COLUMNS,
    row: role_row,
};

/// The registry entry of RoleBinding.
pub static ROLE_BINDING: ResourceDef = ResourceDef {
    group: GROUP,
    version: "v1",
    kind: "RoleBinding",
    plural: "rolebindings",
    singular: "rolebinding",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: &[],
    strategy: &StrategyFor::<RoleBinding>::new(),
    conversion: None,
    custom: None,
    columns: BINDING_COLUMNS,
    row: binding_row,
};

/// The registry entry of ClusterRoleBinding.
pub static CLUSTER_ROLE_BINDING: ResourceDef = ResourceDef {
    group: GROUP,
    version: "v1",
    kind: "ClusterRoleBinding",
    plural: "clusterrolebindings",
    singular: "clusterrolebinding",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: &[],
    strategy: &StrategyFor::<ClusterRoleBinding>::new(),
    conversion: None,
    custom: None,
    columns: BINDING_COLUMNS,
    row: binding_row,
};

impl Strategy for Role {
    const NAME_FORMAT: NameFormat = NameFormat::PathSegment;

    fn validate(&self) -> Vec<FieldError> {
        validate_rules(self.rules.as_deref().unwrap_or_default(), true)
    }
}

impl Strategy for ClusterRole {
    const NAME_FORMAT: NameFormat = NameFormat::PathSegment;

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = validate_rules(self.rules.as_deref().unwrap_or_default(), false);
        let selectors = self.aggregation_rule.as_ref().and_then(|a| a.cluster_role_selectors.as_deref());
        for (i, selector) in selectors.unwrap_or_default().iter().enumerate() {
            errs.extend(validate_label_selector(selector, &format!("aggregationRule.clusterRoleSelectors[{i}]")));
        }
        errs
    }
}

impl Strategy for RoleBinding {
    const NAME_FORMAT: NameFormat = NameFormat::PathSegment;

    fn set_defaults(&mut self) {
        default_binding(&mut self.role_ref, self.subjects.as_deref_mut());
    }

    fn validate(&self) -> Vec<FieldError> {
        validate_binding(&self.role_ref, self.subjects.as_deref(), true)
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        role_ref_unchanged(&self.role_ref, &old.role_ref)
    }
}

impl Strategy for ClusterRoleBinding {
    const NAME_FORMAT: NameFormat = NameFormat::PathSegment;

    fn set_defaults(&mut self) {
        default_binding(&mut self.role_ref, self.subjects.as_deref_mut());
    }

    fn validate(&self) -> Vec<FieldError> {
        validate_binding(&self.role_ref, self.subjects.as_deref(), false)
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        role_ref_unchanged(&self.role_ref, &old.role_ref)
    }
}

/// A list as Go's `%#v` prints it in a field error (`[]string{"/healthz"}`).
fn go_strings(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// Checks each rule (`ValidatePolicyRule`); `namespaced` rules may not name URLs.
fn validate_rules(rules: &[PolicyRule], namespaced: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let at = |field: &str| format!("rules[{i}].{field}");
        let is_empty = |v: &Option<Vec<String>>| v.as_ref().is_none_or(Vec::is_empty);
        if rule.verbs.is_empty() {
            errs.push(FieldError::required(at("verbs"), "verbs must contain at least one value"));
        }
        if let Some(urls) = rule.non_resource_urls.as_ref().filter(|u| !u.is_empty()) {
            if namespaced {
                errs.push(FieldError::invalid(
                    at("nonResourceURLs"),
                    go_strings(urls),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if !is_empty(&rule.api_groups) || !is_empty(&rule.resources) || !is_empty(&rule.resource_names) {
                errs.push(FieldError::invalid(
                    at("nonResourceURLs"),
                    go_strings(urls),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if is_empty(&rule.api_groups) {
            errs.push(FieldError::required(at("apiGroups"), "resource rules must supply at least one api group"));
        }
        if is_empty(&rule.resources) {
            errs.push(FieldError::required(at("resources"), "resource rules must supply at least one resource"));
        }
    }
    errs
}

/// `SetDefaults_RoleBinding` and `SetDefaults_Subject`: the RBAC group where left out, except
/// for ServiceAccounts, which are in the core group.
fn default_binding(role_ref: &mut RoleRef, subjects: Option<&mut [Subject]>) {
    if role_ref.api_group.as_deref().unwrap_or_default().is_empty() {
        role_ref.api_group = Some(GROUP.to_string());
    }
    for subject in subjects.unwrap_or_default() {
        if subject.api_group.as_deref().unwrap_or_default().is_empty()
            && matches!(subject.kind.as_str(), "User" | "Group")
        {
            subject.api_group = Some(GROUP.to_string());
        }
    }
}

/// Checks a binding's `roleRef` and subjects; `namespaced` for a RoleBinding.
fn validate_binding(role_ref: &RoleRef, subjects: Option<&[Subject]>, namespaced: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let api_group = role_ref.api_group.as_deref().unwrap_or_default();
    if api_group != GROUP {
        errs.push(FieldError::not_supported("roleRef.apiGroup", api_group, &[GROUP]));
    }
    let kinds: &[&str] = if namespaced { &["Role", "ClusterRole"] } else { &["ClusterRole"] };
    if !kinds.contains(&role_ref.kind.as_str()) {
        errs.push(FieldError::not_supported("roleRef.kind", &role_ref.kind, kinds));
    }
    if role_ref.name.is_empty() {
        errs.push(FieldError::required("roleRef.name", ""));
    }
    for message in is_path_segment_name(&role_ref.name, false) {
        errs.push(FieldError::invalid("roleRef.name", &role_ref.name, message));
    }
    for (i, subject) in subjects.unwrap_or_default().iter().enumerate() {
        errs.extend(validate_subject(subject, namespaced, &format!("subjects[{i}]")));
    }
    errs
}

/// `ValidateRoleBindingSubject`.
fn validate_subject(subject: &Subject, namespaced: bool, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if subject.name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    }
    let api_group = subject.api_group.as_deref().unwrap_or_default();
    match subject.kind.as_str() {
        "ServiceAccount" => {
            if !subject.name.is_empty() {
                for message in is_dns1123_subdomain(&subject.name) {
                    errs.push(FieldError::invalid(format!("{path}.name"), &subject.name, message));
                }
            }
            if !api_group.is_empty() {
                errs.push(FieldError::not_supported(format!("{path}.apiGroup"), api_group, &[""]));
            }
            if !namespaced && subject.namespace.as_deref().unwrap_or_default().is_empty() {
                errs.push(FieldError::required(format!("{path}.namespace"), ""));
            }
        }
        "User" | "Group" => {
            if api_group != GROUP {
                errs.push(FieldError::not_supported(format!("{path}.apiGroup"), api_group, &[GROUP]));
            }
        }
        other => {
            errs.push(FieldError::not_supported(format!("{path}.kind"), other, &["ServiceAccount", "User", "Group"]))
        }
    }
    errs
}

/// A binding's role is fixed at creation (delete and re-create to change it).
fn role_ref_unchanged(new: &RoleRef, old: &RoleRef) -> Vec<FieldError> {
    if new == old {
        return Vec::new();
    }
    let shown = format!("{}/{}/{}", new.api_group.as_deref().unwrap_or_default(), new.kind, new.name);
    vec![FieldError::invalid("roleRef", shown, "cannot change roleRef")]
}

const CREATED_AT_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.";

const ROLE_COLUMNS: &[Column] = &[NAME, column("Created At", "date", CREATED_AT_DESCRIPTION, 0)];

fn role_row(obj: &Value, _now: Timestamp) -> Vec<Value> {
    vec![name_cell(obj), Value::from(text(obj, &["metadata", "creationTimestamp"]))]
}

const BINDING_COLUMNS: &[Column] = &[
    NAME,
    column(
        "Role",
        "string",
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
        0,
    ),
    AGE,
    column("Users", "string", "Users in the roleBinding", 1),
    column("Groups", "string", "Groups in the roleBinding", 1),
    column("ServiceAccounts", "string", "ServiceAccounts in the roleBinding", 1),
];

fn binding_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let role = format!("{}/{}", text(obj, &["roleRef", "kind"]), text(obj, &["roleRef", "name"]));
    let subjects = list(obj, &["subjects"]);
    let of_kind = |kind: &str| -> Value {
        let names: Vec<String> = subjects
            .iter()
            .filter(|s| text(s, &["kind"]) == kind)
            .map(|s| match kind {
                "ServiceAccount" => format!("{}/{}", text(s, &["namespace"]), text(s, &["name"])),
                _ => text(s, &["name"]).to_string(),
            })
            .collect();
        Value::from(names.join(", "))
    };
    vec![
        name_cell(obj),
        Value::from(role),
        age_cell(obj, now),
        of_kind("User"),
        of_kind("Group"),
        of_kind("ServiceAccount"),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::field::tests::fields;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], urls: &[&str]) -> PolicyRule {
        let strings =
            |v: &[&str]| Some(v.iter().map(ToString::to_string).collect::<Vec<_>>()).filter(|v| !v.is_empty());
        PolicyRule {
            verbs: verbs.iter().map(ToString::to_string).collect(),
            api_groups: strings(groups),
            resources: strings(resources),
            non_resource_urls: strings(urls),
            resource_names: None,
        }
    }

    #[test]
    fn a_rule_names_verbs_and_either_resources_or_urls() {
        let rules = [
            rule(&["get"], &[""], &["pods"], &[]),
            rule(&[], &[""], &["pods"], &[]),
            rule(&["get"], &[], &[], &[]),
            rule(&["get"], &[""], &["pods"], &["/healthz"]),
        ];
        assert_eq!(
            fields(&validate_rules(&rules, false)),
            vec!["rules[1].verbs", "rules[2].apiGroups", "rules[2].resources", "rules[3].nonResourceURLs"]
        );
        let url_rule = [rule(&["get"], &[], &[], &["/healthz"])];
        assert!(validate_rules(&url_rule, false).is_empty());
        let errs = validate_rules(&url_rule, true);
        assert_eq!(
            errs[0].to_string(),
            "rules[0].nonResourceURLs: Invalid value: \"[]string{\\\"/healthz\\\"}\": namespaced rules cannot apply to non-resource URLs"
        );
    }

    #[test]
    fn names_are_path_segments_so_colons_are_fine() {
        assert!(NameFormat::PathSegment.check("system:node", false).is_empty());
        assert_eq!(NameFormat::PathSegment.check("a/b", false), vec!["may not contain '/'"]);
        assert_eq!(NameFormat::PathSegment.check("..", false), vec!["may not be '..'"]);
    }

    #[test]
    fn bindings_default_their_groups_and_check_their_subjects() {
        let mut binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "b", "namespace": "default"},
            "roleRef": {"kind": "Role", "name": "reader"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "bot"},
                         {"kind": "Robot", "name": "r2"}]
        }))
        .expect("a binding");
        binding.set_defaults();
        assert_eq!(binding.role_ref.api_group.as_deref(), Some(GROUP));
        let subjects = binding.subjects.as_deref().unwrap_or_default();
        assert_eq!(subjects[0].api_group.as_deref(), Some(GROUP));
        assert_eq!(subjects[1].api_group, None);
        assert_eq!(fields(&binding.validate()), vec!["subjects[2].kind"]);

        let cluster: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "b"},
            "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "bot"}]
        }))
        .expect("a binding");
        assert_eq!(fields(&cluster.validate()), vec!["roleRef.kind", "subjects[0].namespace"]);
    }

    #[test]
    fn a_binding_keeps_its_role() {
        let old = RoleRef { api_group: Some(GROUP.into()), kind: "Role".into(), name: "reader".into() };
        let new = RoleRef { name: "writer".into(), ..old.clone() };
        assert!(role_ref_unchanged(&old, &old).is_empty());
        assert_eq!(
            role_ref_unchanged(&new, &old)[0].to_string(),
            "roleRef: Invalid value: \"rbac.authorization.k8s.io/Role/writer\": cannot change roleRef"
        );
    }

    #[test]
    fn binding_rows_split_subjects_by_kind() {
        let obj = json!({
            "metadata": {"name": "b", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"},
                         {"kind": "Group", "name": "devs"},
                         {"kind": "ServiceAccount", "name": "bot", "namespace": "ci"}]
        });
        let row = binding_row(&obj, "2026-01-01T00:01:00Z".parse().expect("time"));
        assert_eq!(
            row,
            vec![
                json!("b"),
                json!("ClusterRole/view"),
                json!("60s"),
                json!("alice, bob"),
                json!("devs"),
                json!("ci/bot")
            ]
        );
        assert_eq!(BINDING_COLUMNS.len(), row.len());
    }
}
