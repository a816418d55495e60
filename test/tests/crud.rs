//! Create, get, list, update and delete for every served resource, and the create-time contract:
//! server-set metadata, defaults, `generateName`, AlreadyExists, a stale-resourceVersion Conflict
//! and a missing namespace.

use std::time::Duration;

use rkube_tests::resources::{
    self, ALL, CONFIG_MAPS, DEPLOYMENTS, PODS, Resource, config_map, item_names, namespace, resource_version,
};
use rkube_tests::{Api, Cluster, StatusCode, assert_status, eventually};
use serde_json::{Value, json};

/// Kinds whose objects carry a user-controlled spec, so Kubernetes sets `metadata.generation`.
const GENERATION_KINDS: &[&str] = &["Pod", "ReplicaSet", "Deployment"];

async fn start() -> (Cluster, Api) {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    (cluster, api)
}

/// The whole lifecycle of one object of `resource`, checked against the Kubernetes contract.
async fn exercise_crud(resource: Resource) {
    let (_cluster, api) = start().await;
    let namespace_name = "crud";
    api.create("/api/v1/namespaces", &namespace(namespace_name)).await;
    let collection = resource.collection(namespace_name);
    let context = resource.kind;

    // An empty list is still a typed list with an empty items array (not null, not absent).
    let list = api.get_ok(&collection).await;
    assert_eq!(list["kind"], format!("{}List", resource.kind), "{context}: {list}");
    assert_eq!(list["apiVersion"], resource.api_version(), "{context}: {list}");
    assert!(list["metadata"]["resourceVersion"].as_str().is_some_and(|rv| !rv.is_empty()), "{context}: {list}");
    if resource.kind == "Namespace" {
        assert!(item_names(&list).contains(&"default".to_string()), "{list}");
    } else if resource.kind == "PriorityClass" {
        // The built-in classes are there from the start.
        assert!(item_names(&list).contains(&"system-node-critical".to_string()), "{list}");
    } else if resource.kind == "StorageClass" {
        // The default class is there from the start.
        assert_eq!(item_names(&list), ["local-path"], "{list}");
    } else {
        assert_eq!(list["items"], json!([]), "{context}: a fresh namespace has no objects: {list}");
    }

    // Create: 201 with the server-set metadata.
    let name = format!("crud-{}", resource.plural);
    let created = api.create(&collection, &resource.sample(namespace_name, &name)).await;
    assert_eq!(created["kind"], resource.kind, "{created}");
    assert_eq!(created["apiVersion"], resource.api_version(), "{created}");
    assert_eq!(created["metadata"]["name"], name.as_str(), "{created}");
    if resource.namespaced {
        assert_eq!(created["metadata"]["namespace"], namespace_name, "{created}");
    } else {
        assert!(created["metadata"].get("namespace").is_none_or(|ns| ns == "" || ns.is_null()), "{created}");
    }
    assert!(created["metadata"]["uid"].as_str().is_some_and(|uid| uid.len() >= 32), "uid: {created}");
    let created_at = created["metadata"]["creationTimestamp"].as_str().unwrap_or_default();
    assert!(
        created_at.len() == 20 && created_at.ends_with('Z') && created_at.as_bytes()[10] == b'T',
        "creationTimestamp must be RFC 3339 in UTC with second precision: {created}"
    );
    let created_rv = resource_version(&created);
    if GENERATION_KINDS.contains(&resource.kind) {
        assert_eq!(created["metadata"]["generation"], 1, "{created}");
    } else {
        let generation = &created["metadata"]["generation"];
        assert!(generation.is_null() || generation == 1, "{created}");
    }

    // Get returns exactly what create returned.
    let item = resource.item(namespace_name, &name);
    let fetched = api.get_ok(&item).await;
    assert_eq!(fetched, created, "GET must return the stored object unchanged");

    // List contains it, with the same metadata.
    let list = api.get_ok(&collection).await;
    let listed = list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|object| object["metadata"]["name"] == name.as_str()))
        .unwrap_or_else(|| panic!("{context}: created object missing from list {list}"));
    assert_eq!(listed["metadata"], created["metadata"], "{context}: listed metadata");
    assert!(resource_version(&list) >= created_rv, "list RV must not be older than its items: {list}");

    // Update: a label change is stored, bumps the resourceVersion, keeps uid and generation.
    let mut changed = fetched.clone();
    changed["metadata"]["labels"] = json!({ "updated": "yes" });
    let (status, updated) = api.put(&item, &changed).await;
    assert_eq!(status, StatusCode::OK, "PUT {item}: {updated}");
    assert_eq!(updated["metadata"]["labels"]["updated"], "yes", "{updated}");
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"], "{updated}");
    assert_eq!(updated["metadata"]["generation"], created["metadata"]["generation"], "labels are not spec: {updated}");
    assert_eq!(updated["metadata"]["creationTimestamp"], created["metadata"]["creationTimestamp"], "{updated}");
    assert!(resource_version(&updated) > created_rv, "an update must advance resourceVersion: {updated}");
    assert_eq!(api.get_ok(&item).await, updated, "GET after PUT");

    // Delete: gone at once (namespaces: once their finalization is done).
    let (status, reply) = api.delete(&item).await;
    assert!(status.is_success(), "DELETE {item}: {status} {reply}");
    if resource.kind == "Namespace" {
        eventually(Duration::from_secs(30), "the deleted namespace to disappear", || async {
            (api.get(&item).await.0 == StatusCode::NOT_FOUND).then_some(())
        })
        .await;
    }
    let (status, reply) = api.get(&item).await;
    assert_status(status, &reply, 404, "NotFound", &format!("GET {item} after DELETE"));
    assert_eq!(reply["details"]["name"], name.as_str(), "NotFound details name the object: {reply}");
    let list = api.get_ok(&collection).await;
    assert!(!item_names(&list).contains(&name), "{context}: deleted object still listed: {list}");
}

macro_rules! crud_test {
    ($test:ident, $resource:expr) => {
        #[tokio::test]
        async fn $test() {
            exercise_crud($resource).await;
        }
    };
}

crud_test!(namespaces_support_create_get_list_update_delete, resources::NAMESPACES);
crud_test!(pods_support_create_get_list_update_delete, resources::PODS);
crud_test!(nodes_support_create_get_list_update_delete, resources::NODES);
crud_test!(services_support_create_get_list_update_delete, resources::SERVICES);
crud_test!(endpoints_support_create_get_list_update_delete, resources::ENDPOINTS);
crud_test!(endpoint_slices_support_create_get_list_update_delete, resources::ENDPOINT_SLICES);
crud_test!(events_support_create_get_list_update_delete, resources::EVENTS);
crud_test!(config_maps_support_create_get_list_update_delete, resources::CONFIG_MAPS);
crud_test!(secrets_support_create_get_list_update_delete, resources::SECRETS);
crud_test!(replica_sets_support_create_get_list_update_delete, resources::REPLICA_SETS);
crud_test!(deployments_support_create_get_list_update_delete, resources::DEPLOYMENTS);
crud_test!(jobs_support_create_get_list_update_delete, resources::JOBS);
crud_test!(cron_jobs_support_create_get_list_update_delete, resources::CRON_JOBS);
crud_test!(daemon_sets_support_create_get_list_update_delete, resources::DAEMON_SETS);
crud_test!(stateful_sets_support_create_get_list_update_delete, resources::STATEFUL_SETS);
crud_test!(replication_controllers_support_create_get_list_update_delete, resources::REPLICATION_CONTROLLERS);
crud_test!(controller_revisions_support_create_get_list_update_delete, resources::CONTROLLER_REVISIONS);
crud_test!(leases_support_create_get_list_update_delete, resources::LEASES);
crud_test!(service_accounts_support_create_get_list_update_delete, resources::SERVICE_ACCOUNTS);
crud_test!(roles_support_create_get_list_update_delete, resources::ROLES);
crud_test!(cluster_roles_support_create_get_list_update_delete, resources::CLUSTER_ROLES);
crud_test!(role_bindings_support_create_get_list_update_delete, resources::ROLE_BINDINGS);
crud_test!(cluster_role_bindings_support_create_get_list_update_delete, resources::CLUSTER_ROLE_BINDINGS);
crud_test!(resource_quotas_support_create_get_list_update_delete, resources::RESOURCE_QUOTAS);
crud_test!(limit_ranges_support_create_get_list_update_delete, resources::LIMIT_RANGES);
crud_test!(priority_classes_support_create_get_list_update_delete, resources::PRIORITY_CLASSES);
crud_test!(pod_disruption_budgets_support_create_get_list_update_delete, resources::POD_DISRUPTION_BUDGETS);
crud_test!(persistent_volumes_support_create_get_list_update_delete, resources::PERSISTENT_VOLUMES);
crud_test!(persistent_volume_claims_support_create_get_list_update_delete, resources::PERSISTENT_VOLUME_CLAIMS);
crud_test!(storage_classes_support_create_get_list_update_delete, resources::STORAGE_CLASSES);

#[test]
fn every_served_resource_has_a_crud_test() {
    // Guards the list above: adding a resource to resources::ALL without a test fails here.
    let tested = [
        "namespaces",
        "pods",
        "nodes",
        "services",
        "endpoints",
        "endpointslices",
        "events",
        "configmaps",
        "secrets",
        "serviceaccounts",
        "replicasets",
        "deployments",
        "jobs",
        "cronjobs",
        "daemonsets",
        "statefulsets",
        "controllerrevisions",
        "replicationcontrollers",
        "leases",
        "roles",
        "clusterroles",
        "rolebindings",
        "clusterrolebindings",
        "resourcequotas",
        "limitranges",
        "priorityclasses",
        "poddisruptionbudgets",
        "persistentvolumes",
        "persistentvolumeclaims",
        "storageclasses",
    ];
    let all: Vec<&str> = ALL.iter().map(|resource| resource.plural).collect();
    assert_eq!(all, tested);
}

#[tokio::test]
async fn initial_namespaces_exist_at_start() {
    let (_cluster, api) = start().await;
    let list = api.get_ok("/api/v1/namespaces").await;
    let names = item_names(&list);
    for expected in ["default", "kube-system", "kube-node-lease"] {
        assert!(names.contains(&expected.to_string()), "missing namespace {expected}: {list}");
    }
    let default = api.get_ok("/api/v1/namespaces/default").await;
    assert_eq!(default["status"]["phase"], "Active", "{default}");
}

#[tokio::test]
async fn pod_create_applies_kubernetes_defaults() {
    let (_cluster, api) = start().await;
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "defaults" },
        "spec": { "containers": [
            { "name": "tagged", "image": "registry.example/app:1.0" },
            { "name": "latest", "image": "registry.example/app:latest" },
            { "name": "untagged", "image": "registry.example/app" },
            { "name": "explicit", "image": "registry.example/app:1.0", "imagePullPolicy": "Never" }
        ] }
    });
    let created = api.create(&PODS.collection("default"), &pod).await;
    let spec = &created["spec"];
    assert_eq!(created["metadata"]["namespace"], "default", "namespace comes from the URL: {created}");
    assert_eq!(spec["restartPolicy"], "Always", "{created}");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30, "{created}");
    assert_eq!(spec["dnsPolicy"], "ClusterFirst", "{created}");
    assert_eq!(spec["schedulerName"], "default-scheduler", "{created}");
    let pull_policies: Vec<&Value> =
        spec["containers"].as_array().expect("containers").iter().map(|c| &c["imagePullPolicy"]).collect();
    assert_eq!(pull_policies, [&json!("IfNotPresent"), &json!("Always"), &json!("Always"), &json!("Never")]);
    assert_eq!(created["status"]["phase"], "Pending", "a new pod is Pending: {created}");

    let mut never = resources::pod("default", "never", json!({}));
    never["spec"]["restartPolicy"] = json!("Never");
    let created = api.create(&PODS.collection("default"), &never).await;
    assert_eq!(created["spec"]["restartPolicy"], "Never", "an explicit value is kept: {created}");
}

#[tokio::test]
async fn deployment_create_applies_kubernetes_defaults() {
    let (_cluster, api) = start().await;
    let mut deployment = DEPLOYMENTS.sample("default", "web");
    deployment["spec"].as_object_mut().expect("spec").remove("replicas");
    let created = api.create(&DEPLOYMENTS.collection("default"), &deployment).await;
    let spec = &created["spec"];
    assert_eq!(spec["replicas"], 1, "{created}");
    assert_eq!(spec["strategy"]["type"], "RollingUpdate", "{created}");
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxSurge"], "25%", "{created}");
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], "25%", "{created}");
    assert_eq!(spec["revisionHistoryLimit"], 10, "{created}");
    assert_eq!(spec["progressDeadlineSeconds"], 600, "{created}");
    assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always", "pod template defaults apply: {created}");
    assert_eq!(spec["template"]["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent", "{created}");
}

#[tokio::test]
async fn generate_name_creates_unique_names_with_the_prefix() {
    let (_cluster, api) = start().await;
    let body = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "generateName": "settings-" },
        "data": { "a": "1" }
    });
    let first = api.create(&CONFIG_MAPS.collection("default"), &body).await;
    let second = api.create(&CONFIG_MAPS.collection("default"), &body).await;
    for created in [&first, &second] {
        let name = created["metadata"]["name"].as_str().unwrap_or_default();
        assert!(name.starts_with("settings-") && name.len() == "settings-".len() + 5, "name {name:?}: {created}");
        assert_eq!(created["metadata"]["generateName"], "settings-", "{created}");
        let fetched = api.get_ok(&CONFIG_MAPS.item("default", name)).await;
        assert_eq!(&fetched, created);
    }
    assert_ne!(first["metadata"]["name"], second["metadata"]["name"]);
}

#[tokio::test]
async fn creating_an_existing_name_returns_409_already_exists() {
    let (_cluster, api) = start().await;
    let collection = CONFIG_MAPS.collection("default");
    let original = api.create(&collection, &config_map("default", "taken", json!({ "v": "first" }))).await;
    let (status, reply) = api.post(&collection, &config_map("default", "taken", json!({ "v": "second" }))).await;
    assert_status(status, &reply, 409, "AlreadyExists", "second create of one name");
    assert_eq!(reply["details"]["name"], "taken", "{reply}");
    let stored = api.get_ok(&CONFIG_MAPS.item("default", "taken")).await;
    assert_eq!(stored, original, "the failed create must not change the stored object");
}

#[tokio::test]
async fn update_with_a_stale_resource_version_returns_409_conflict() {
    let (_cluster, api) = start().await;
    let item = CONFIG_MAPS.item("default", "contended");
    let stale =
        api.create(&CONFIG_MAPS.collection("default"), &config_map("default", "contended", json!({ "v": "0" }))).await;

    let mut first = stale.clone();
    first["data"]["v"] = json!("1");
    let (status, winner) = api.put(&item, &first).await;
    assert_eq!(status, StatusCode::OK, "{winner}");

    let mut second = stale.clone();
    second["data"]["v"] = json!("2");
    let (status, reply) = api.put(&item, &second).await;
    assert_status(status, &reply, 409, "Conflict", "PUT with the resourceVersion the first writer replaced");
    assert_eq!(api.get_ok(&item).await, winner, "the losing write must not be applied");
}

#[tokio::test]
async fn update_of_a_missing_object_returns_404() {
    let (_cluster, api) = start().await;
    let body = config_map("default", "absent", json!({}));
    let (status, reply) = api.put(&CONFIG_MAPS.item("default", "absent"), &body).await;
    assert_status(status, &reply, 404, "NotFound", "PUT of an object that was never created");
}

#[tokio::test]
async fn creating_in_a_missing_namespace_returns_404() {
    let (_cluster, api) = start().await;
    let (status, reply) = api.post(&CONFIG_MAPS.collection("nowhere"), &config_map("nowhere", "x", json!({}))).await;
    assert_status(status, &reply, 404, "NotFound", "create in a namespace that does not exist");
    let (status, reply) = api.get(&CONFIG_MAPS.item("nowhere", "x")).await;
    assert_status(status, &reply, 404, "NotFound", "nothing was stored");
}

#[tokio::test]
async fn lists_across_all_namespaces_include_every_namespace() {
    let (_cluster, api) = start().await;
    api.create("/api/v1/namespaces", &namespace("other")).await;
    api.create(&CONFIG_MAPS.collection("default"), &config_map("default", "here", json!({}))).await;
    api.create(&CONFIG_MAPS.collection("other"), &config_map("other", "there", json!({}))).await;
    let list = api.get_ok(&CONFIG_MAPS.all_namespaces()).await;
    assert_eq!(list["kind"], "ConfigMapList");
    let mut found: Vec<(String, String)> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            (
                item["metadata"]["namespace"].as_str().unwrap_or_default().to_string(),
                item["metadata"]["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(found, [("default".to_string(), "here".to_string()), ("other".to_string(), "there".to_string())]);
    let only_other = api.get_ok(&CONFIG_MAPS.collection("other")).await;
    assert_eq!(item_names(&only_other), ["there"]);
}
