//! rkube-client against a real apiserver: typed CRUD of pods, deployments and nodes, paged
//! lists, the three patch types, the `status`, `scale` and `binding` subresources, and a client
//! configured from a kubeconfig file.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Node, NodeCondition, NodeStatus, Pod, PodStatus};
use rkube_client::{Api, Client, Config, DeleteParams, KubeconfigOptions, ListParams, Patch, PatchParams, PostParams};
use rkube_tests::Cluster;
use rkube_tests::resources::{DEPLOYMENTS, NODES, config_map, pod};
use serde_json::{Value, json};

async fn start() -> (Cluster, Client) {
    let cluster = Cluster::start().await.expect("cluster starts");
    let client = Client::new(Config::new(cluster.url().parse().expect("cluster URL"))).expect("client");
    (cluster, client)
}

/// A typed object from test JSON.
fn typed<T: k8s_openapi::serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("test object matches its type")
}

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn name_of<K: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>>(
    obj: &K,
) -> String {
    obj.metadata().name.clone().unwrap_or_default()
}

#[tokio::test]
async fn pods_are_created_read_listed_replaced_and_deleted_as_typed_objects() {
    let (_cluster, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    assert_eq!(pods.resource_url(), "/api/v1/namespaces/default/pods");

    let created =
        pods.create(&PostParams::default(), &typed(pod("default", "web", json!({"app": "web"})))).await.unwrap();
    assert_eq!(name_of(&created), "web");
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    assert_eq!(created.spec.as_ref().unwrap().containers[0].image.as_deref(), Some("registry.example/app:1.0"));
    pods.create(&PostParams::default(), &typed(pod("default", "db", json!({"app": "db"})))).await.unwrap();

    let got = pods.get("web").await.unwrap();
    assert_eq!(got.metadata.resource_version, created.metadata.resource_version);
    assert!(pods.get_opt("missing").await.unwrap().is_none());
    assert_eq!(name_of(&pods.get_opt("web").await.unwrap().unwrap()), "web");

    let selected = pods.list(&ListParams::default().labels("app=web")).await.unwrap();
    assert_eq!(selected.items.iter().map(name_of).collect::<Vec<_>>(), ["web"]);
    assert!(selected.metadata.resource_version.is_some());
    let all = Api::<Pod>::all(client).list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 2);

    let mut changed = got.clone();
    changed.metadata.labels = labels(&[("app", "web"), ("tier", "front")]);
    let replaced = pods.replace("web", &PostParams::default(), &changed).await.unwrap();
    assert_eq!(replaced.metadata.labels.as_ref().unwrap()["tier"], "front");
    assert_ne!(replaced.metadata.resource_version, got.metadata.resource_version);

    // An unbound pod is deleted at once; the answer is the object as it was.
    let deleted = pods.delete("db", &DeleteParams::default()).await.unwrap();
    assert_eq!(name_of(&deleted), "db");
    assert!(pods.get("db").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn deployments_are_scaled_through_the_scale_subresource() {
    let (_cluster, client) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    deployments.create(&PostParams::default(), &typed(DEPLOYMENTS.sample("default", "api"))).await.unwrap();

    let scale = deployments.get_scale("api").await.unwrap();
    assert_eq!(scale.spec.as_ref().and_then(|s| s.replicas), Some(1));
    assert_eq!(scale.metadata.name.as_deref(), Some("api"));

    let patched = deployments
        .patch_scale("api", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}})))
        .await
        .unwrap();
    assert_eq!(patched.spec.as_ref().and_then(|s| s.replicas), Some(3));

    let replaced = deployments
        .replace_scale(
            "api",
            &PostParams::default(),
            &Scale { metadata: patched.metadata.clone(), spec: Some(ScaleSpec { replicas: Some(5) }), status: None },
        )
        .await
        .unwrap();
    assert_eq!(replaced.spec.as_ref().and_then(|s| s.replicas), Some(5));
    assert_eq!(deployments.get("api").await.unwrap().spec.replicas, Some(5));

    // The Scale's resourceVersion is the Deployment's: a stale one conflicts.
    let stale = Scale { metadata: patched.metadata, spec: Some(ScaleSpec { replicas: Some(7) }), status: None };
    let err = deployments.replace_scale("api", &PostParams::default(), &stale).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
}

#[tokio::test]
async fn nodes_are_cluster_scoped_and_their_status_is_written_through_the_status_subresource() {
    let (_cluster, client) = start().await;
    // The namespace is ignored for a cluster-scoped kind.
    let nodes: Api<Node> = Api::namespaced(client.clone(), "default");
    assert_eq!(nodes.resource_url(), "/api/v1/nodes");
    let node = nodes.create(&PostParams::default(), &typed(NODES.sample("", "node-1"))).await.unwrap();
    assert_eq!(node.metadata.namespace, None);
    assert_eq!(Api::<Node>::all(client).list(&ListParams::default()).await.unwrap().items.len(), 1);

    let mut ready = node.clone();
    ready.status = Some(NodeStatus {
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("KubeletReady".into()),
            ..NodeCondition::default()
        }]),
        ..NodeStatus::default()
    });
    // A spec change sent to the status subresource is ignored; the status is taken.
    ready.spec.get_or_insert_with(Default::default).unschedulable = Some(true);
    let written = nodes.replace_status("node-1", &PostParams::default(), &ready).await.unwrap();
    let conditions = written.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    assert_eq!(conditions[0].type_, "Ready");
    assert_ne!(written.spec.as_ref().and_then(|s| s.unschedulable), Some(true));

    let patched = nodes
        .patch_status(
            "node-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"capacity": {"cpu": "4", "pods": "110"}}})),
        )
        .await
        .unwrap();
    let capacity = patched.status.unwrap().capacity.unwrap();
    assert_eq!(capacity["cpu"].0, "4");

    nodes.delete("node-1", &DeleteParams::default()).await.unwrap();
    assert!(nodes.get_opt("node-1").await.unwrap().is_none());
}

#[tokio::test]
async fn pod_status_changes_only_through_the_status_subresource() {
    let (_cluster, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let created = pods.create(&PostParams::default(), &typed(pod("default", "p", json!({})))).await.unwrap();

    let mut with_status = created.clone();
    with_status.status = Some(PodStatus { phase: Some("Running".into()), ..PodStatus::default() });
    let replaced = pods.replace("p", &PostParams::default(), &with_status).await.unwrap();
    assert_ne!(replaced.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Running"), "PUT ignores status");

    let mut with_status = replaced.clone();
    with_status.status = Some(PodStatus { phase: Some("Running".into()), ..PodStatus::default() });
    let written = pods.replace_status("p", &PostParams::default(), &with_status).await.unwrap();
    assert_eq!(written.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Running"));

    let patched = pods
        .patch_status("p", &PatchParams::default(), &Patch::Merge(json!({"status": {"podIP": "10.1.0.7"}})))
        .await
        .unwrap();
    let status = patched.status.unwrap();
    assert_eq!(status.pod_ip.as_deref(), Some("10.1.0.7"));
    assert_eq!(status.phase.as_deref(), Some("Running"));
}

#[tokio::test]
async fn binding_a_pod_sets_its_node_and_a_bound_pod_is_only_marked_for_deletion() {
    let (_cluster, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &typed(pod("default", "p", json!({})))).await.unwrap();

    pods.bind("p", "node-a").await.unwrap();
    let bound = pods.get("p").await.unwrap();
    assert_eq!(bound.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some("node-a"));

    let err = pods.bind("p", "node-b").await.unwrap_err();
    assert!(err.is_conflict(), "a bound pod cannot be bound again: {err}");
    assert!(pods.bind("missing", "node-a").await.unwrap_err().is_not_found());

    // A pod on a node waits for its kubelet: delete only marks it.
    let marked = pods.delete("p", &DeleteParams::default()).await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some(), "{marked:?}");
    assert!(pods.get("p").await.unwrap().metadata.deletion_timestamp.is_some());
}

#[tokio::test]
async fn merge_json_and_strategic_patches_apply() {
    let (_cluster, client) = start().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    config_maps
        .create(&PostParams::default(), &typed(config_map("default", "cm", json!({"a": "1", "b": "2"}))))
        .await
        .unwrap();

    let merged = config_maps
        .patch("cm", &PatchParams::default(), &Patch::Merge(json!({"data": {"a": null, "c": "3"}})))
        .await
        .unwrap();
    let data = merged.data.unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["b", "c"]);

    let json_patch: rkube_client::Patch<Value> = Patch::Json(
        serde_json::from_value(json!([
            {"op": "test", "path": "/data/b", "value": "2"},
            {"op": "replace", "path": "/data/b", "value": "two"},
            {"op": "add", "path": "/metadata/labels", "value": {"patched": "json"}}
        ]))
        .unwrap(),
    );
    let patched = config_maps.patch("cm", &PatchParams::default(), &json_patch).await.unwrap();
    assert_eq!(patched.data.unwrap()["b"], "two");
    assert_eq!(patched.metadata.labels.unwrap()["patched"], "json");

    // Strategic merge: containers merge by name, so adding a sidecar keeps the app container.
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    deployments.create(&PostParams::default(), &typed(DEPLOYMENTS.sample("default", "web"))).await.unwrap();
    let strategic = Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "image": "registry.example/sidecar:1"}
    ]}}}}));
    let patched = deployments.patch("web", &PatchParams::default(), &strategic).await.unwrap();
    let containers = patched.spec.template.spec.unwrap().containers;
    let mut names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["app", "sidecar"]);

    // A JSON merge patch replaces the list instead.
    let merge = Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
        {"name": "only", "image": "registry.example/only:1"}
    ]}}}}));
    let patched = deployments.patch("web", &PatchParams::default(), &merge).await.unwrap();
    let containers = patched.spec.template.spec.unwrap().containers;
    assert_eq!(containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["only"]);
}

#[tokio::test]
async fn list_all_follows_continue_tokens_across_pages() {
    let (_cluster, client) = start().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
    for index in 0..25 {
        let name = format!("cm-{index:02}");
        config_maps.create(&PostParams::default(), &typed(config_map("default", &name, json!({})))).await.unwrap();
    }
    let first = config_maps.list(&ListParams::default().limit(10)).await.unwrap();
    assert_eq!(first.items.len(), 10);
    let token = first.metadata.continue_.clone().expect("a continue token after a partial page");
    let second = config_maps.list(&ListParams::default().limit(10).continue_token(&token)).await.unwrap();
    assert_eq!(name_of(&second.items[0]), "cm-10");

    let all = config_maps.list_all(&ListParams::default().limit(10)).await.unwrap();
    let names: Vec<String> = all.items.iter().map(name_of).collect();
    let expected: Vec<String> = (0..25).map(|i| format!("cm-{i:02}")).collect();
    assert_eq!(names, expected, "every object once, in order");
    assert!(all.metadata.continue_.is_none());
    assert!(all.metadata.resource_version.is_some());

    // Without a limit, pages of 500: one page here.
    assert_eq!(config_maps.list_all(&ListParams::default()).await.unwrap().items.len(), 25);
    // Selectors apply to every page.
    let none = config_maps.list_all(&ListParams::default().limit(3).labels("app=none")).await.unwrap();
    assert!(none.items.is_empty());
}

#[tokio::test]
async fn delete_collection_deletes_what_the_selector_matches() {
    let (_cluster, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    for (name, app) in [("a1", "a"), ("a2", "a"), ("b1", "b")] {
        pods.create(&PostParams::default(), &typed(pod("default", name, json!({"app": app})))).await.unwrap();
    }
    let deleted =
        pods.delete_collection(&DeleteParams::default(), &ListParams::default().labels("app=a")).await.unwrap();
    let mut names: Vec<String> = deleted.items.iter().map(name_of).collect();
    names.sort();
    assert_eq!(names, ["a1", "a2"]);
    let left = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(left.items.iter().map(name_of).collect::<Vec<_>>(), ["b1"]);
}

#[tokio::test]
async fn a_client_configured_from_a_kubeconfig_file_reaches_the_cluster() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = cluster.write_kubeconfig(dir.path()).expect("kubeconfig written");

    let config = Config::from_kubeconfig(&KubeconfigOptions { path: Some(path), context: None }).unwrap();
    assert_eq!(config.cluster_url.to_string().trim_end_matches('/'), cluster.url());
    assert_eq!(config.default_namespace, "default");
    let client = Client::new(config).unwrap();
    let config_maps: Api<ConfigMap> = Api::default_namespaced(client.clone());
    assert_eq!(config_maps.resource_url(), "/api/v1/namespaces/default/configmaps");
    let created =
        config_maps.create(&PostParams::default(), &typed(config_map("default", "via-kubeconfig", json!({})))).await;
    assert_eq!(created.unwrap().metadata.namespace.as_deref(), Some("default"));

    // The raw escape hatch goes through the same client.
    let version = client.request_json(http::Request::get("/version").body(vec![]).unwrap()).await.unwrap();
    assert!(version["gitVersion"].is_string(), "{version}");
}
