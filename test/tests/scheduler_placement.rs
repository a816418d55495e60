//! Where the real `rkube-scheduler` puts pods, against real etcd and the real apiserver.
//! Nodes are plain Node objects (allocatable and Ready written through the status subresource)
//! and pods are created directly; no kubelet runs.

use std::collections::BTreeMap;
use std::time::Duration;

use rkube_tests::scheduler::{
    NodeSpec, Scheduler, create_node, node_of, pending_pod, sample_value, scheduled_condition,
};
use rkube_tests::{Api, Cluster, eventually};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const PODS: &str = "/api/v1/namespaces/default/pods";

async fn start() -> (Cluster, Api, Scheduler) {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    let scheduler = Scheduler::start(&cluster, &["--leader-elect=false"]).await.expect("scheduler starts");
    (cluster, api, scheduler)
}

/// A pending pod with `spec` fields merged in (nodeSelector, affinity, tolerations, ...).
fn pod_with(name: &str, cpu: &str, extra_spec: Value) -> Value {
    let mut pod = pending_pod("default", name, cpu, "64Mi");
    if let (Some(spec), Some(extra)) = (pod["spec"].as_object_mut(), extra_spec.as_object()) {
        for (key, value) in extra {
            spec.insert(key.clone(), value.clone());
        }
    }
    pod
}

fn only_on(nodes: &[&str]) -> Value {
    json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "name", "operator": "In", "values": nodes}]}]}}})
}

/// Waits until pod `name` is bound and returns its node.
async fn bound_node(api: &Api, scheduler: &Scheduler, name: &str) -> String {
    let path = format!("{PODS}/{name}");
    let found = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(node) = node_of(&api.get_ok(&path).await) {
                return node;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    match found {
        Ok(node) => node,
        Err(_) => panic!("pod {name} not bound within {WAIT:?}; scheduler log:\n{}", scheduler.log_tail(40)),
    }
}

/// Waits until pod `name` carries PodScheduled=False and returns that condition.
async fn unschedulable_condition(api: &Api, name: &str) -> Value {
    let path = format!("{PODS}/{name}");
    eventually(WAIT, &format!("PodScheduled=False on {name}"), || async {
        scheduled_condition(&api.get_ok(&path).await).filter(|c| c["status"] == "False")
    })
    .await
}

/// The events about pod `name` with `reason`.
async fn events_for(api: &Api, name: &str, reason: &str) -> Vec<Value> {
    let list = api.get_ok("/api/v1/namespaces/default/events").await;
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["name"] == name && e["reason"] == reason)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_filter_keeps_pods_off_the_nodes_that_fail_it() {
    let (_cluster, api, scheduler) = start().await;
    let named = |name: &str| NodeSpec::new(name).labels(json!({"name": name}));
    let nodes = [
        named("tainted").taints(json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])),
        NodeSpec { ready: false, ..named("notready") },
        NodeSpec { unschedulable: true, ..named("cordoned") },
        named("ssd").labels(json!({"name": "ssd", "disk": "ssd", "cores": "8"})),
        named("small").allocatable("500m", "1Gi", 110),
        named("plain").labels(json!({"name": "plain", "cores": "2"})),
    ];
    for node in &nodes {
        create_node(&api, node).await;
    }
    let gpu_toleration = json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
    let cases = [
        // NodeSelector: only ssd has disk=ssd.
        ("selector", pod_with("selector", "100m", json!({"nodeSelector": {"disk": "ssd"}})), "ssd"),
        // Required affinity with Gt on a numeric label.
        (
            "affinity-gt",
            pod_with(
                "affinity-gt",
                "100m",
                json!({"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "cores", "operator": "Gt", "values": ["4"]}]}]}}}}),
            ),
            "ssd",
        ),
        // TaintToleration + NodeReady + NodeUnschedulable: of the three, only the tainted node is
        // usable, and only by a pod tolerating its taint...
        (
            "tolerant",
            pod_with(
                "tolerant",
                "100m",
                json!({"tolerations": gpu_toleration, "affinity": only_on(&["tainted", "notready", "cordoned"])}),
            ),
            "tainted",
        ),
        // ...a pod without the toleration goes to the one other node it may use.
        (
            "intolerant",
            pod_with("intolerant", "100m", json!({"affinity": only_on(&["tainted", "notready", "cordoned", "plain"])})),
            "plain",
        ),
        // NodeResourcesFit: 1 CPU does not fit in small's 500m.
        ("big", pod_with("big", "1", json!({"affinity": only_on(&["small", "plain"])})), "plain"),
    ];
    for (_, pod, _) in &cases {
        api.create(PODS, pod).await;
    }
    for (name, _, expected) in &cases {
        assert_eq!(&bound_node(&api, &scheduler, name).await, expected, "pod {name}");
    }

    // NodePorts: two pods wanting host port 8080 on {ssd, plain} end up on different nodes.
    let port = |name: &str| {
        let mut pod = pod_with(name, "100m", json!({"affinity": only_on(&["ssd", "plain"])}));
        pod["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 8080}]);
        pod
    };
    api.create(PODS, &port("port-a")).await;
    api.create(PODS, &port("port-b")).await;
    let (a, b) = (bound_node(&api, &scheduler, "port-a").await, bound_node(&api, &scheduler, "port-b").await);
    assert_ne!(a, b, "two pods with hostPort 8080 on one node");
    // A third cannot go anywhere, and says so.
    api.create(PODS, &port("port-c")).await;
    let condition = unschedulable_condition(&api, "port-c").await;
    assert_eq!(
        condition["message"],
        "0/6 nodes are available: 1 node(s) were not ready, 1 node(s) were unschedulable, \
         2 node(s) didn't have free ports for the requested pod ports, 2 node(s) didn't match Pod's node affinity/selector."
    );

    // Every filter's reason, counted per node, in Kubernetes' format.
    let stuck = pod_with("stuck", "1", json!({"affinity": only_on(&["notready", "cordoned", "small", "tainted"])}));
    api.create(PODS, &stuck).await;
    let condition = unschedulable_condition(&api, "stuck").await;
    assert_eq!(condition["reason"], "Unschedulable");
    assert_eq!(
        condition["message"],
        "0/6 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}, \
         1 node(s) were not ready, 1 node(s) were unschedulable, 2 node(s) didn't match Pod's node affinity/selector."
    );
    assert!(node_of(&api.get_ok(&format!("{PODS}/stuck")).await).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_pods_never_overcommits_a_node() {
    let (_cluster, api, scheduler) = start().await;
    // Room for exactly 10 pods of 100m on each node; 33 pods arrive at once.
    for name in ["n1", "n2", "n3"] {
        create_node(&api, &NodeSpec::new(name).allocatable("1", "4Gi", 110)).await;
    }
    let creates = (0..33).map(|i| {
        let api = api.clone();
        async move { api.create(PODS, &pending_pod("default", &format!("burst-{i}"), "100m", "64Mi")).await }
    });
    futures::future::join_all(creates).await;

    let per_node = eventually(WAIT, "30 pods bound and 3 marked unschedulable", || async {
        let list = api.get_ok(PODS).await;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let mut per_node = BTreeMap::<String, usize>::new();
        let mut unschedulable = 0;
        for pod in &items {
            match node_of(pod) {
                Some(node) => *per_node.entry(node).or_default() += 1,
                None if scheduled_condition(pod).is_some_and(|c| c["status"] == "False") => unschedulable += 1,
                None => {}
            }
        }
        (per_node.values().sum::<usize>() == 30 && unschedulable == 3).then_some((per_node, items))
    })
    .await;
    let (per_node, items) = per_node;
    assert_eq!(per_node, BTreeMap::from([("n1".into(), 10), ("n2".into(), 10), ("n3".into(), 10)]));
    for pod in items.iter().filter(|p| node_of(p).is_none()) {
        assert_eq!(
            scheduled_condition(pod).map(|c| c["message"].clone()),
            Some(json!("0/3 nodes are available: 3 Insufficient cpu."))
        );
    }

    // The metrics saw it all.
    let metrics = scheduler.metrics().await.expect("metrics");
    assert_eq!(sample_value(&metrics, "rkube_scheduler_schedule_attempts_total{result=\"scheduled\"}"), 30.0);
    assert!(sample_value(&metrics, "rkube_scheduler_schedule_attempts_total{result=\"unschedulable\"}") >= 3.0);
    assert_eq!(sample_value(&metrics, "rkube_scheduler_e2e_scheduling_duration_seconds_count"), 30.0);
    // Plugin durations are recorded for one attempt in ten: at least 4 of the 33 or more.
    assert!(
        sample_value(&metrics, "rkube_scheduler_plugin_duration_seconds_count{plugin=\"NodeResourcesFit\"}") >= 4.0
    );
    assert_eq!(sample_value(&metrics, "rkube_scheduler_api_calls_total{call=\"bind\"}"), 30.0);
    eventually(WAIT, "3 pods in the unschedulable queue", || async {
        let waiting = scheduler.metric("rkube_scheduler_pending_pods{queue=\"unschedulable\"}").await.ok()?;
        (waiting == 3.0).then_some(())
    })
    .await;

    // Deleting a bound pod frees room: exactly one waiting pod takes it, the others keep waiting.
    let victim = items.iter().find(|p| node_of(p).as_deref() == Some("n2")).expect("a pod on n2");
    let victim_name = victim["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let (status, reply) = api.delete_with(&format!("{PODS}/{victim_name}"), &json!({"gracePeriodSeconds": 0})).await;
    assert!(status.is_success(), "{reply}");
    let per_node = eventually(WAIT, "a waiting pod placed on n2", || async {
        let list = api.get_ok(PODS).await;
        let mut per_node = BTreeMap::<String, usize>::new();
        for pod in list["items"].as_array().into_iter().flatten() {
            if let Some(node) = node_of(pod) {
                *per_node.entry(node).or_default() += 1;
            }
        }
        (per_node.get("n2") == Some(&10)).then_some(per_node)
    })
    .await;
    assert_eq!(per_node, BTreeMap::from([("n1".into(), 10), ("n2".into(), 10), ("n3".into(), 10)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_pod_is_placed_once_a_fitting_node_appears() {
    let (_cluster, api, scheduler) = start().await;
    create_node(&api, &NodeSpec::new("small").allocatable("1", "2Gi", 110)).await;
    api.create(PODS, &pending_pod("default", "large", "2", "1Gi")).await;

    let condition = unschedulable_condition(&api, "large").await;
    assert_eq!(condition["reason"], "Unschedulable");
    assert_eq!(condition["message"], "0/1 nodes are available: 1 Insufficient cpu.");
    let failed = eventually(WAIT, "a FailedScheduling event", || async {
        let events = events_for(&api, "large", "FailedScheduling").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(failed[0]["type"], "Warning");
    assert_eq!(failed[0]["message"], "0/1 nodes are available: 1 Insufficient cpu.");

    create_node(&api, &NodeSpec::new("large-node").allocatable("4", "8Gi", 110)).await;
    assert_eq!(bound_node(&api, &scheduler, "large").await, "large-node");
    let pod = api.get_ok(&format!("{PODS}/large")).await;
    assert_eq!(scheduled_condition(&pod).map(|c| c["status"].clone()), Some(json!("True")));
    let scheduled = eventually(WAIT, "a Scheduled event", || async {
        let events = events_for(&api, "large", "Scheduled").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(scheduled[0]["message"], "Successfully assigned default/large to large-node");
    assert_eq!(scheduled[0]["type"], "Normal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_sets_pods_are_spread_over_distinct_nodes() {
    let (_cluster, api, scheduler) = start().await;
    for name in ["a", "b", "c", "d"] {
        create_node(&api, &NodeSpec::new(name)).await;
    }
    let owned = |name: &str, uid: &str| {
        let mut pod = pending_pod("default", name, "10m", "16Mi");
        pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": "web", "uid": uid, "controller": true, "blockOwnerDeletion": true}]);
        pod
    };
    // Another owner's pods are placed first; they must not count against web's spreading.
    for i in 0..3 {
        api.create(PODS, &owned(&format!("other-{i}"), "uid-other")).await;
    }
    for i in 0..3 {
        bound_node(&api, &scheduler, &format!("other-{i}")).await;
    }
    let creates = (0..8).map(|i| {
        let api = api.clone();
        let pod = owned(&format!("web-{i}"), "uid-web");
        async move { api.create(PODS, &pod).await }
    });
    futures::future::join_all(creates).await;
    let mut per_node = BTreeMap::<String, usize>::new();
    for i in 0..8 {
        *per_node.entry(bound_node(&api, &scheduler, &format!("web-{i}")).await).or_default() += 1;
    }
    assert_eq!(per_node, BTreeMap::from([("a".into(), 2), ("b".into(), 2), ("c".into(), 2), ("d".into(), 2)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_for_another_scheduler_or_already_bound_are_left_alone() {
    let (_cluster, api, scheduler) = start().await;
    create_node(&api, &NodeSpec::new("n1")).await;
    let mut foreign = pending_pod("default", "foreign", "10m", "16Mi");
    foreign["spec"]["schedulerName"] = json!("someone-else");
    api.create(PODS, &foreign).await;
    api.create(PODS, &pending_pod("default", "ours", "10m", "16Mi")).await;
    assert_eq!(bound_node(&api, &scheduler, "ours").await, "n1");
    // "ours" was created after "foreign" and is bound: the scheduler has seen both.
    let pod = api.get_ok(&format!("{PODS}/foreign")).await;
    assert!(node_of(&pod).is_none(), "a pod naming another scheduler was bound: {pod}");
    assert!(scheduled_condition(&pod).is_none(), "{pod}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_answer_and_help_names_every_flag() {
    let (_cluster, _api, scheduler) = start().await;
    for path in ["/healthz", "/livez", "/readyz"] {
        let reply = reqwest::get(format!("{}{path}", scheduler.url)).await.expect("endpoint answers");
        assert_eq!(reply.status(), 200, "{path}");
    }
    let metrics = scheduler.metrics().await.expect("metrics");
    assert!(metrics.contains("rkube_scheduler_pending_pods{queue=\"active\"} 0"), "{metrics}");
    assert!(metrics.contains("rkube_informer_lists_total"), "informer metrics are served too");

    let help =
        std::process::Command::new(rkube_tests::binary("rkube-scheduler")).arg("--help").output().expect("--help runs");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--kubeconfig",
        "--leader-elect",
        "--scheduler-name",
        "--bind-address",
        "--port",
        "--least-allocated-weight",
        "--selector-spread-weight",
        "--log-format",
    ] {
        assert!(text.contains(flag), "--help does not mention {flag}:\n{text}");
    }
}
