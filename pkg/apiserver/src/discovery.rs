//! Discovery documents (`/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>/<version>`),
//! in Kubernetes' legacy (unaggregated) form, generated from the resource registry.
//!
//! kubectl asks for aggregated discovery first and falls back to these when the answer is
//! plain `application/json` (client-go's discovery client checks the response's content type).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, APIVersions, GroupVersionForDiscovery,
    ServerAddressByClientCIDR,
};
use k8s_openapi::apimachinery::pkg::version::Info;
use rkube_api::Subresource;
use rkube_api::registry::{self, ResourceDef};

/// The Kubernetes version rkube's API corresponds to.
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "37");

const OBJECT_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_string()).collect()
}

/// `/version`.
pub fn version() -> Info {
    let (major, minor) = KUBERNETES_VERSION;
    Info {
        major: major.into(),
        minor: minor.into(),
        git_version: format!("v{major}.{minor}.0-rkube.{}", env!("CARGO_PKG_VERSION")),
        git_commit: "rkube".into(),
        git_tree_state: "clean".into(),
        build_date: "1970-01-01T00:00:00Z".into(),
        go_version: "none (rkube is written in Rust)".into(),
        compiler: "rustc".into(),
        platform: format!("{}/{}", std::env::consts::OS, go_arch()),
        ..Default::default()
    }
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `/api`: the core group's versions.
pub fn core_versions(server_address: &str) -> APIVersions {
    APIVersions {
        versions: vec!["v1".into()],
        server_address_by_client_cidrs: vec![ServerAddressByClientCIDR {
            client_cidr: "0.0.0.0/0".into(),
            server_address: server_address.into(),
        }],
    }
}

/// `/apis`: every named group.
pub fn groups() -> APIGroupList {
    let mut named = registry::groups();
    for (group, version, ..) in crate::review::RESOURCES {
        if !named.iter().any(|(g, _)| *g == group) {
            named.push((group, vec![version]));
        }
    }
    let groups = named
        .into_iter()
        .filter(|(group, _)| !group.is_empty())
        .map(|(group, versions)| {
            let versions: Vec<GroupVersionForDiscovery> = versions
                .iter()
                .map(|v| GroupVersionForDiscovery { group_version: format!("{group}/{v}"), version: (*v).to_string() })
                .collect();
            APIGroup {
                name: group.to_string(),
                preferred_version: versions.first().cloned(),
                versions,
                server_address_by_client_cidrs: None,
            }
        })
        .collect();
    APIGroupList { groups }
}

/// `/api/v1` or `/apis/<group>/<version>`: the resources of one group version, or `None`.
pub fn resources(group: &str, version: &str) -> Option<APIResourceList> {
    let members: Vec<&ResourceDef> =
        registry::resources().iter().copied().filter(|r| r.group == group && r.version == version).collect();
    let reviews: Vec<APIResource> = crate::review::RESOURCES
        .iter()
        .filter(|(g, v, ..)| *g == group && *v == version)
        .map(|(_, _, plural, kind)| APIResource {
            name: (*plural).into(),
            singular_name: kind.to_lowercase(),
            namespaced: false,
            kind: (*kind).into(),
            verbs: strings(&["create"]),
            ..Default::default()
        })
        .collect();
    if members.is_empty() && reviews.is_empty() {
        return None;
    }
    let mut resources = reviews;
    for res in members {
        resources.push(APIResource {
            name: res.plural.into(),
            singular_name: res.singular.into(),
            namespaced: res.namespaced,
            kind: res.kind.into(),
            verbs: strings(OBJECT_VERBS),
            short_names: (!res.short_names.is_empty()).then(|| strings(res.short_names)),
            categories: (!res.categories.is_empty()).then(|| strings(res.categories)),
            ..Default::default()
        });
        for sub in res.subresources {
            let (group, version, kind, verbs): (Option<&str>, Option<&str>, &str, &[&str]) = match sub {
                Subresource::Status => (None, None, res.kind, &["get", "patch", "update"]),
                Subresource::Scale => (Some("autoscaling"), Some("v1"), "Scale", &["get", "patch", "update"]),
                Subresource::Binding => (None, None, "Binding", &["create"]),
                Subresource::Log => (None, None, "Pod", &["get"]),
                Subresource::Token => (Some("authentication.k8s.io"), Some("v1"), "TokenRequest", &["create"]),
            };
            resources.push(APIResource {
                name: format!("{}/{}", res.plural, sub.name()),
                singular_name: String::new(),
                namespaced: res.namespaced,
                group: group.map(str::to_string),
                version: version.map(str::to_string),
                kind: kind.into(),
                verbs: strings(verbs),
                ..Default::default()
            });
        }
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(APIResourceList { group_version, resources })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_v1_lists_pods_with_subresources_and_short_names() {
        let list = resources("", "v1").expect("core v1");
        let pods = list.resources.iter().find(|r| r.name == "pods").expect("pods");
        assert_eq!(pods.short_names.as_deref(), Some(&["po".to_string()][..]));
        assert!(list.resources.iter().any(|r| r.name == "pods/binding" && r.verbs == ["create"]));
    }

    #[test]
    fn scale_subresource_is_autoscaling_v1() {
        let list = resources("apps", "v1").expect("apps v1");
        let scale = list.resources.iter().find(|r| r.name == "deployments/scale").expect("scale");
        assert_eq!((scale.group.as_deref(), scale.kind.as_str()), (Some("autoscaling"), "Scale"));
    }

    #[test]
    fn unknown_group_versions_have_no_document() {
        assert!(resources("apps", "v2").is_none());
        assert!(groups().groups.iter().all(|g| !g.name.is_empty()));
    }
}
