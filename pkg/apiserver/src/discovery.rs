//! Discovery documents (`/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>/<version>`),
//! generated from the resource registry, in both of Kubernetes' forms:
//! - aggregated ([`aggregated`], `apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`): `/api`
//!   and `/apis` answer every group, version, resource and subresource at once when the
//!   client asks for [`AGGREGATED`] in `Accept`, as kubectl and client-go do, so discovery
//!   costs a client two requests;
//! - legacy, one document per group version, for clients that ask for plain JSON
//!   (client-go falls back to these when the answer's content type is not aggregated).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, APIVersions, GroupVersionForDiscovery,
    ServerAddressByClientCIDR,
};
use k8s_openapi::apimachinery::pkg::version::Info;
use rkube_api::Subresource;
use rkube_api::registry::{Registry, ResourceDef};
use serde_json::{Value, json};

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

/// `/apis`: every named group `registry` serves.
pub fn groups(registry: &Registry) -> APIGroupList {
    let mut named = registry.groups();
    let metrics = crate::resource_metrics::GROUP_VERSION.split_once('/').unwrap_or_default();
    for (group, version) in crate::review::RESOURCES.iter().map(|(g, v, ..)| (*g, *v)).chain([metrics]) {
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
pub fn resources(registry: &Registry, group: &str, version: &str) -> Option<APIResourceList> {
    let members: Vec<&ResourceDef> =
        registry.resources().into_iter().filter(|r| r.group == group && r.version == version).collect();
    let mut reviews: Vec<APIResource> = crate::review::RESOURCES
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
    if crate::resource_metrics::GROUP_VERSION == format!("{group}/{version}") {
        reviews.extend(crate::resource_metrics::RESOURCES.iter().map(|(plural, kind, namespaced)| APIResource {
            name: (*plural).into(),
            singular_name: String::new(),
            namespaced: *namespaced,
            kind: (*kind).into(),
            verbs: strings(&["get", "list"]),
            ..Default::default()
        }));
    }
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
                Subresource::Eviction => (Some("policy"), Some("v1"), "Eviction", &["create"]),
                Subresource::EphemeralContainers => (None, None, res.kind, &["get", "patch", "update"]),
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
    if group.is_empty() && version == "v1" {
        // The streaming subresources, served by their own routes (`subresource::exec`).
        let streams = [
            ("pods/exec", "PodExecOptions"),
            ("pods/attach", "PodAttachOptions"),
            ("pods/portforward", "PodPortForwardOptions"),
        ];
        for (name, kind) in streams {
            resources.push(APIResource {
                name: name.into(),
                namespaced: true,
                kind: kind.into(),
                verbs: strings(&["create", "get"]),
                ..Default::default()
            });
        }
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(APIResourceList { group_version, resources })
}

/// The media type of aggregated discovery, exactly as clients ask for it and check it.
pub const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an `Accept` header asks for aggregated discovery.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

/// The aggregated discovery document of `/api` (`core`: the core group) or `/apis` (every
/// named group), built from the same lists as the legacy documents.
pub fn aggregated(registry: &Registry, core: bool) -> Value {
    let named: Vec<(String, Vec<String>)> = if core {
        vec![(String::new(), vec!["v1".to_string()])]
    } else {
        groups(registry)
            .groups
            .into_iter()
            .map(|g| (g.name, g.versions.into_iter().map(|v| v.version).collect()))
            .collect()
    };
    let items: Vec<Value> = named
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .filter_map(|version| {
                    resources(registry, &group, version).map(|list| version_discovery(&group, version, list))
                })
                .collect();
            json!({"metadata": {"name": group}, "versions": versions})
        })
        .collect();
    json!({"apiVersion": "apidiscovery.k8s.io/v2", "kind": "APIGroupDiscoveryList", "metadata": {}, "items": items})
}

/// One `APIVersionDiscovery`: the resources of `list`, each with its subresources.
fn version_discovery(group: &str, version: &str, list: APIResourceList) -> Value {
    let kind_of = |r: &APIResource| {
        json!({
            "group": r.group.clone().unwrap_or_else(|| group.to_string()),
            "version": r.version.clone().unwrap_or_else(|| version.to_string()),
            "kind": r.kind,
        })
    };
    let mut resources: Vec<Value> = Vec::new();
    for r in list.resources.iter().filter(|r| !r.name.contains('/')) {
        let mut resource = json!({
            "resource": r.name,
            "responseKind": kind_of(r),
            "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": r.singular_name,
            "verbs": r.verbs,
        });
        if let Some(short) = &r.short_names {
            resource["shortNames"] = json!(short);
        }
        if let Some(categories) = &r.categories {
            resource["categories"] = json!(categories);
        }
        let prefix = format!("{}/", r.name);
        let subresources: Vec<Value> = list
            .resources
            .iter()
            .filter_map(|sub| {
                let name = sub.name.strip_prefix(&prefix)?;
                Some(json!({"subresource": name, "responseKind": kind_of(sub), "verbs": sub.verbs}))
            })
            .collect();
        if !subresources.is_empty() {
            resource["subresources"] = json!(subresources);
        }
        resources.push(resource);
    }
    json!({"version": version, "resources": resources, "freshness": "Current"})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_discovery_holds_resources_with_their_subresources() {
        let core = aggregated(&Registry::new(), true);
        assert_eq!(core["kind"], "APIGroupDiscoveryList");
        let v1 = &core["items"][0]["versions"][0];
        assert_eq!((core["items"][0]["metadata"]["name"].as_str(), v1["version"].as_str()), (Some(""), Some("v1")));
        let pods =
            v1["resources"].as_array().expect("resources").iter().find(|r| r["resource"] == "pods").expect("pods");
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["shortNames"], json!(["po"]));
        let subs: Vec<&str> =
            pods["subresources"].as_array().expect("subs").iter().filter_map(|s| s["subresource"].as_str()).collect();
        let mut subs = subs;
        subs.sort_unstable();
        assert_eq!(
            subs,
            ["attach", "binding", "ephemeralcontainers", "eviction", "exec", "log", "portforward", "status"],
            "every pod subresource kubectl uses"
        );
        let eviction = pods["subresources"].as_array().expect("subs").iter().find(|s| s["subresource"] == "eviction");
        assert_eq!(
            eviction.map(|e| (&e["responseKind"], &e["verbs"])),
            Some((&json!({"group": "policy", "version": "v1", "kind": "Eviction"}), &json!(["create"])))
        );
        let named = aggregated(&Registry::new(), false);
        let apps =
            named["items"].as_array().expect("items").iter().find(|g| g["metadata"]["name"] == "apps").expect("apps");
        let deployments = apps["versions"][0]["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["resource"] == "deployments")
            .expect("deployments");
        let scale = deployments["subresources"]
            .as_array()
            .expect("subs")
            .iter()
            .find(|s| s["subresource"] == "scale")
            .expect("scale");
        assert_eq!(scale["responseKind"], json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}));
        assert!(named["items"].as_array().expect("items").iter().all(|g| g["metadata"]["name"] != ""));
    }

    #[test]
    fn only_the_v2_aggregated_media_type_is_aggregated() {
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(wants_aggregated("application/json; g=apidiscovery.k8s.io; v=v2; as=APIGroupDiscoveryList"));
        assert!(!wants_aggregated("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"));
        assert!(!wants_aggregated("application/json"));
    }

    #[test]
    fn core_v1_lists_pods_with_subresources_and_short_names() {
        let list = resources(&Registry::new(), "", "v1").expect("core v1");
        let pods = list.resources.iter().find(|r| r.name == "pods").expect("pods");
        assert_eq!(pods.short_names.as_deref(), Some(&["po".to_string()][..]));
        assert!(list.resources.iter().any(|r| r.name == "pods/binding" && r.verbs == ["create"]));
        assert!(list.resources.iter().any(|r| r.name == "pods/exec" && r.kind == "PodExecOptions"));
        assert!(list.resources.iter().any(|r| r.name == "pods/attach" && r.kind == "PodAttachOptions"));
    }

    #[test]
    fn scale_subresource_is_autoscaling_v1() {
        let list = resources(&Registry::new(), "apps", "v1").expect("apps v1");
        let scale = list.resources.iter().find(|r| r.name == "deployments/scale").expect("scale");
        assert_eq!((scale.group.as_deref(), scale.kind.as_str()), (Some("autoscaling"), "Scale"));
    }

    #[test]
    fn metrics_are_discovered_for_kubectl_top() {
        let list = resources(&Registry::new(), "metrics.k8s.io", "v1beta1").expect("metrics.k8s.io/v1beta1");
        let pods = list.resources.iter().find(|r| r.name == "pods").expect("pods");
        assert_eq!(
            (pods.kind.as_str(), pods.namespaced, pods.verbs.clone()),
            ("PodMetrics", true, strings(&["get", "list"]))
        );
        assert!(groups(&Registry::new()).groups.iter().any(|g| g.name == "metrics.k8s.io"));
    }

    #[test]
    fn unknown_group_versions_have_no_document() {
        assert!(resources(&Registry::new(), "apps", "v2").is_none());
        assert!(groups(&Registry::new()).groups.iter().all(|g| !g.name.is_empty()));
    }
}
