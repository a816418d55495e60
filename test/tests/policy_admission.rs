//! Namespace policy at admission, against real etcd, the real apiserver and (for quota
//! usage) the real controller-manager: PriorityClasses resolved into pod priorities,
//! LimitRange defaults and bounds, ResourceQuota limits and their usage.

use std::time::Duration;

use rkube_tests::controllers::ControllerManager;
use rkube_tests::resources::{CONFIG_MAPS, LIMIT_RANGES, PODS, PRIORITY_CLASSES, RESOURCE_QUOTAS, config_map};
use rkube_tests::{Api, Cluster, StatusCode, eventually};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn pod(name: &str, extra_spec: Value, resources: Value) -> Value {
    let mut spec = json!({"containers": [{"name": "app", "image": "busybox", "resources": resources}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

/// POSTs `body` and expects a 403 whose message is exactly `message`.
async fn refused(api: &Api, path: &str, body: &Value, message: &str) {
    let (status, reply) = api.post(path, body).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
    assert_eq!(reply["reason"], "Forbidden", "{reply}");
    assert_eq!(reply["message"], message, "{reply}");
}

#[tokio::test]
async fn priority_classes_become_pod_priorities() {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    // The built-in classes are there from the start and cannot be deleted.
    let critical = eventually(WAIT, "system-node-critical exists", || async {
        let (status, class) = api.get(&PRIORITY_CLASSES.item("", "system-node-critical")).await;
        (status == StatusCode::OK).then_some(class)
    })
    .await;
    assert_eq!(critical["value"], 2_000_001_000);
    let (status, reply) = api.delete(&PRIORITY_CLASSES.item("", "system-node-critical")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
    let class = |name: &str, value: i64, default: bool| {
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
               "value": value, "globalDefault": default})
    };
    let (status, reply) = api.post(&PRIORITY_CLASSES.collection(""), &class("system-mine", 5, false)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "reserved prefix: {reply}");

    let pods = PODS.collection("default");
    // No class and no default: priority 0.
    let plain = api.create(&pods, &pod("plain", json!({}), json!({}))).await;
    assert_eq!(
        (plain["spec"]["priority"].clone(), plain["spec"]["preemptionPolicy"].clone()),
        (json!(0), json!("PreemptLowerPriority"))
    );
    // A named class gives its value and policy.
    api.create(&PRIORITY_CLASSES.collection(""), &class("batch", 1000, false)).await;
    let batch = api.create(&pods, &pod("batch", json!({"priorityClassName": "batch"}), json!({}))).await;
    assert_eq!(batch["spec"]["priority"], 1000);
    refused(
        &api,
        &pods,
        &pod("lost", json!({"priorityClassName": "nope"}), json!({})),
        "pods \"lost\" is forbidden: no PriorityClass with name nope was found",
    )
    .await;
    refused(
        &api,
        &pods,
        &pod("liar", json!({"priorityClassName": "batch", "priority": 7}), json!({})),
        "pods \"liar\" is forbidden: the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name",
    )
    .await;
    // A global default applies to pods naming none; a second default is refused.
    api.create(&PRIORITY_CLASSES.collection(""), &class("normal", 100, true)).await;
    let defaulted = api.create(&pods, &pod("defaulted", json!({}), json!({}))).await;
    assert_eq!(
        (defaulted["spec"]["priority"].clone(), defaulted["spec"]["priorityClassName"].clone()),
        (json!(100), json!("normal"))
    );
    refused(
        &api,
        &PRIORITY_CLASSES.collection(""),
        &class("other-default", 50, true),
        "priorityclasses.scheduling.k8s.io \"other-default\" is forbidden: PriorityClass normal is already marked as default. Only one default can exist",
    )
    .await;
    // A class's value is fixed.
    let mut changed = api.get_ok(&PRIORITY_CLASSES.item("", "batch")).await;
    changed["value"] = json!(2000);
    let (status, reply) = api.put(&PRIORITY_CLASSES.item("", "batch"), &changed).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
}

#[tokio::test]
async fn limit_ranges_default_and_bound_container_resources() {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    let range = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "cpu-mem"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "50m"},
                             "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"memory": "128Mi"}}]}});
    let stored = api.create(&LIMIT_RANGES.collection("default"), &range).await;
    // Defaulted on write: a default request for cpu comes from the default limit.
    assert_eq!(stored["spec"]["limits"][0]["defaultRequest"], json!({"cpu": "500m", "memory": "128Mi"}));

    let pods = PODS.collection("default");
    let bare = api.create(&pods, &pod("bare", json!({}), json!({}))).await;
    assert_eq!(
        bare["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "500m", "memory": "128Mi"}})
    );
    assert_eq!(
        bare["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app",
        "{bare}"
    );
    // What the user set is kept.
    let own = api.create(&pods, &pod("own", json!({}), json!({"limits": {"cpu": "200m"}}))).await;
    assert_eq!(own["spec"]["containers"][0]["resources"]["requests"]["cpu"], "200m", "{own}");
    refused(
        &api,
        &pods,
        &pod("greedy", json!({}), json!({"limits": {"cpu": "2"}})),
        "pods \"greedy\" is forbidden: maximum cpu usage per Container is 1, but limit is 2",
    )
    .await;
    refused(
        &api,
        &pods,
        &pod("tiny", json!({}), json!({"requests": {"cpu": "10m"}, "limits": {"cpu": "20m"}})),
        "pods \"tiny\" is forbidden: minimum cpu usage per Container is 50m, but request is 10m",
    )
    .await;
    // Other namespaces are not limited.
    let elsewhere =
        api.create(&PODS.collection("kube-system"), &pod("free", json!({}), json!({"limits": {"cpu": "4"}}))).await;
    assert!(elsewhere["metadata"]["annotations"]["kubernetes.io/limit-ranger"].is_null(), "{elsewhere}");
}

#[tokio::test]
async fn resource_quotas_refuse_what_exceeds_them_and_track_usage() {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    let _controllers =
        ControllerManager::start(&cluster, &["--controllers", "resourcequota"]).await.expect("controller-manager");
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"},
        "spec": {"hard": {"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi", "configmaps": "2"}}});
    api.create(&RESOURCE_QUOTAS.collection("default"), &quota).await;
    let item = RESOURCE_QUOTAS.item("default", "compute");
    // The controller fills in the status of a new quota (one ConfigMap may exist already).
    let status = eventually(WAIT, "quota status written", || async {
        let q = api.get_ok(&item).await;
        q["status"]["used"]["pods"].is_string().then_some(q)
    })
    .await;
    assert_eq!(status["status"]["hard"], quota["spec"]["hard"]);
    assert_eq!(status["status"]["used"]["requests.cpu"], "0");

    let pods = PODS.collection("default");
    let sized =
        |name: &str, cpu: &str| pod(name, json!({}), json!({"requests": {"cpu": cpu}, "limits": {"memory": "256Mi"}}));
    refused(
        &api,
        &pods,
        &pod("unsized", json!({}), json!({})),
        "pods \"unsized\" is forbidden: failed quota: compute: must specify requests.cpu,limits.memory",
    )
    .await;
    api.create(&pods, &sized("one", "400m")).await;
    let used = api.get_ok(&item).await["status"]["used"].clone();
    assert_eq!(
        (used["pods"].clone(), used["requests.cpu"].clone(), used["limits.memory"].clone()),
        (json!("1"), json!("400m"), json!("256Mi")),
        "charged at admission: {used}"
    );
    refused(
        &api,
        &pods,
        &sized("two", "700m"),
        "pods \"two\" is forbidden: exceeded quota: compute, requested: requests.cpu=700m, used: requests.cpu=400m, limited: requests.cpu=1",
    )
    .await;
    api.create(&pods, &sized("two", "600m")).await;
    refused(
        &api,
        &pods,
        &sized("three", "0"),
        "pods \"three\" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2",
    )
    .await;
    // A dry run is checked but not charged.
    let (status, reply) = api.post(&format!("{pods}?dryRun=All"), &sized("three", "0")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
    // Deleting a pod gives its share back (the controller recounts).
    let (status, reply) = api.delete(&PODS.item("default", "one")).await;
    assert!(status.is_success(), "{reply}");
    eventually(WAIT, "the deleted pod's share is released", || async {
        let used = api.get_ok(&item).await["status"]["used"].clone();
        (used["pods"] == "1" && used["requests.cpu"] == "600m").then_some(())
    })
    .await;
    api.create(&pods, &sized("three", "100m")).await;
    // Object counts: ConfigMaps.
    let existing = api.get_ok(&CONFIG_MAPS.collection("default")).await["items"].as_array().map_or(0, Vec::len);
    for i in existing..2 {
        api.create(&CONFIG_MAPS.collection("default"), &config_map("default", &format!("cm-{i}"), json!({"k": "v"})))
            .await;
    }
    let (status, reply) =
        api.post(&CONFIG_MAPS.collection("default"), &config_map("default", "cm-extra", json!({"k": "v"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
    assert!(
        reply["message"].as_str().unwrap_or_default().contains("exceeded quota: compute, requested: configmaps=1"),
        "{reply}"
    );
}
