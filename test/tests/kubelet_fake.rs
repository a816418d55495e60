//! The real `rkubelet` (fake runtime) against real etcd and the real apiserver: node
//! registration and heartbeat, restarts, pods bound to the node, deletion, two nodes on one
//! machine.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use rkube_client::{Api, Client, Config, DeleteParams, Patch, PatchParams, PostParams};
use rkube_tests::node::{Kubelet, SYNC_FREQUENCY};
use rkube_tests::{Cluster, eventually, stays_true};

const WAIT: Duration = Duration::from_secs(30);

fn client(cluster: &Cluster) -> Client {
    Client::new(Config::new(cluster.url().parse().expect("apiserver URL"))).expect("client")
}

fn pod(name: &str, node: &str, annotations: serde_json::Value, restart_policy: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "nodeName": node,
            "restartPolicy": restart_policy,
            "containers": [
                {"name": "main", "image": "busybox"},
                {"name": "sidecar", "image": "busybox"}
            ]
        }
    }))
    .expect("pod")
}

fn condition(pod: &Pod, type_: &str) -> Option<String> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_).map(|c| c.status.clone())
}

fn node_condition(node: &Node, type_: &str) -> Option<String> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_).map(|c| c.status.clone())
}

async fn lease_renew_time(leases: &Api<Lease>, node: &str) -> Option<Timestamp> {
    leases.get_opt(node).await.ok()??.spec?.renew_time.map(|time| time.0)
}

/// Waits until `node` has its Ready condition True and returns the Node.
async fn ready_node(nodes: &Api<Node>, node: &str) -> Node {
    eventually(WAIT, &format!("node {node} registered and Ready"), || async {
        let found = nodes.get_opt(node).await.ok()??;
        (node_condition(&found, "Ready").as_deref() == Some("True")).then_some(found)
    })
    .await
}

#[tokio::test]
async fn node_registers_with_capacity_labels_and_taints_and_heartbeats() {
    let cluster = Cluster::start().await.expect("cluster");
    let kubelet = Kubelet::start_fake(
        &cluster,
        "node-a",
        &["--node-labels", "zone=west,disk=ssd", "--register-with-taints", "dedicated=gpu:NoSchedule"],
    )
    .await
    .expect("kubelet");
    let client = client(&cluster);
    let nodes: Api<Node> = Api::all(client.clone());
    let node = ready_node(&nodes, "node-a").await;

    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("kubernetes.io/hostname").map(String::as_str), Some("node-a"));
    assert_eq!(labels.get("kubernetes.io/os").map(String::as_str), Some("linux"));
    assert_eq!(labels.get("zone").map(String::as_str), Some("west"));
    assert_eq!(labels.get("disk").map(String::as_str), Some("ssd"));
    let taints = node.spec.as_ref().and_then(|spec| spec.taints.clone()).unwrap_or_default();
    assert_eq!(taints.len(), 1, "{taints:?}");
    assert_eq!(
        (taints[0].key.as_str(), taints[0].value.as_deref(), taints[0].effect.as_str()),
        ("dedicated", Some("gpu"), "NoSchedule")
    );

    let status = node.status.clone().expect("node status");
    let capacity = status.capacity.clone().expect("capacity");
    let cpus = std::thread::available_parallelism().expect("cpus").get().to_string();
    assert_eq!(capacity.get("cpu").map(|q| q.0.as_str()), Some(cpus.as_str()));
    assert_eq!(capacity.get("pods").map(|q| q.0.as_str()), Some("110"));
    let memory = capacity.get("memory").map(|q| q.0.clone()).unwrap_or_default();
    let kib: u64 = memory.trim_end_matches("Ki").parse().unwrap_or(0);
    assert!(kib > 64 * 1024, "memory capacity {memory:?} should be the machine's");
    assert_eq!(status.allocatable, Some(capacity));
    let addresses = status.addresses.clone().unwrap_or_default();
    assert!(addresses.iter().any(|a| a.type_ == "InternalIP" && a.address == "127.0.0.1"), "{addresses:?}");
    assert!(addresses.iter().any(|a| a.type_ == "Hostname" && !a.address.is_empty()), "{addresses:?}");
    for type_ in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert!(node_condition(&node, type_).is_some(), "condition {type_} missing");
    }
    let info = status.node_info.expect("nodeInfo");
    assert_eq!(info.operating_system, "linux");
    assert!(!info.kubelet_version.is_empty());
    assert_eq!(status.daemon_endpoints.and_then(|d| d.kubelet_endpoint).map(|e| e.port), Some(i32::from(kubelet.port)));

    // The heartbeat: the Lease exists, belongs to the Node, and its renewTime advances.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let first = eventually(WAIT, "node lease created", || lease_renew_time(&leases, "node-a")).await;
    let lease = leases.get("node-a").await.expect("lease");
    assert_eq!(lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()), Some("node-a"));
    eventually(WAIT, "lease renewTime to advance", || async {
        lease_renew_time(&leases, "node-a").await.filter(|renewed| *renewed > first)
    })
    .await;

    // The story, as `kubectl describe node` shows it: the kubelet started, the node is Ready.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    eventually(WAIT, "Starting and NodeReady Events on the node", || async {
        let list = events.list(&Default::default()).await.ok()?;
        let reasons: Vec<String> = list
            .items
            .iter()
            .filter(|e| {
                e.involved_object.kind.as_deref() == Some("Node") && e.involved_object.name.as_deref() == Some("node-a")
            })
            .filter_map(|e| e.reason.clone())
            .collect();
        (reasons.iter().any(|r| r == "Starting") && reasons.iter().any(|r| r == "NodeReady")).then_some(())
    })
    .await;

    // Health endpoints of the component.
    let health = reqwest::get(format!("{}/readyz", kubelet.url())).await.expect("readyz");
    assert!(health.status().is_success(), "/readyz: {}", health.status());
    let metrics =
        reqwest::get(format!("{}/metrics", kubelet.url())).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("kubelet_lease_renewals_total"), "{metrics}");
}

#[tokio::test]
async fn kubelet_restart_re_registers_the_existing_node() {
    let cluster = Cluster::start().await.expect("cluster");
    let mut kubelet = Kubelet::start_fake(&cluster, "node-r", &["--pod-cidr", "10.244.7.0/24"]).await.expect("kubelet");
    let client = client(&cluster);
    let nodes: Api<Node> = Api::all(client.clone());
    let before = ready_node(&nodes, "node-r").await;

    kubelet.restart().await.expect("restart");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let restarted_at = Timestamp::now();
    eventually(WAIT, "lease renewed by the restarted kubelet", || async {
        lease_renew_time(&leases, "node-r").await.filter(|renewed| *renewed > restarted_at)
    })
    .await;
    let ready = eventually(WAIT, "restarted kubelet ready", || async {
        let reply = reqwest::get(format!("{}/readyz", kubelet.url())).await.ok()?;
        reply.status().is_success().then_some(())
    })
    .await;
    let _: () = ready;
    assert!(kubelet.is_running(), "kubelet exited after restart:\n{}", kubelet.log_tail(40));
    let after = nodes.get("node-r").await.expect("node");
    assert_eq!(after.metadata.uid, before.metadata.uid, "the Node must be kept, not recreated");
    assert_eq!(after.spec.and_then(|s| s.pod_cidr).as_deref(), Some("10.244.7.0/24"));
    assert!(!kubelet.log().contains("ERROR"), "errors in the log:\n{}", kubelet.log_tail(60));
}

#[tokio::test]
async fn bound_pod_becomes_running_and_ready_then_deleted_pod_is_removed() {
    let cluster = Cluster::start().await.expect("cluster");
    let kubelet = Kubelet::start_fake(&cluster, "node-p", &["--pod-cidr", "10.244.3.0/24"]).await.expect("kubelet");
    let client = client(&cluster);
    ready_node(&Api::all(client.clone()), "node-p").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web", "node-p", serde_json::json!({}), "Always")).await.expect("create");

    let running = eventually(WAIT, "pod web Running and Ready", || async {
        let pod = pods.get("web").await.ok()?;
        (pod.status.as_ref()?.phase.as_deref() == Some("Running")
            && condition(&pod, "Ready").as_deref() == Some("True"))
        .then_some(pod)
    })
    .await;
    for type_ in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert_eq!(condition(&running, type_).as_deref(), Some("True"), "{type_}: {:?}", running.status);
    }
    let status = running.status.clone().expect("status");
    let containers = status.container_statuses.clone().unwrap_or_default();
    assert_eq!(containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["main", "sidecar"]);
    assert!(
        containers.iter().all(|c| c.ready && c.state.as_ref().is_some_and(|s| s.running.is_some())),
        "{containers:?}"
    );
    let pod_ip = status.pod_ip.clone().expect("podIP");
    assert!(pod_ip.starts_with("10.244.3.") && pod_ip != "10.244.3.0" && pod_ip != "10.244.3.1", "podIP {pod_ip}");
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    assert!(status.start_time.is_some());

    // A hollow container printed nothing: its log is an empty 200, as `kubectl logs` expects;
    // a container the pod lacks stays a 400.
    let api = rkube_tests::Api::new(cluster.url());
    let log = api
        .send(rkube_tests::Method::GET, "/api/v1/namespaces/default/pods/web/log?container=sidecar", &[], None)
        .await;
    assert_eq!((log.status.as_u16(), log.body.clone()), (200, serde_json::json!("")), "{:?}", log.body);
    let missing =
        api.send(rkube_tests::Method::GET, "/api/v1/namespaces/default/pods/web/log?container=nope", &[], None).await;
    assert_eq!(missing.status.as_u16(), 400, "{:?}", missing.body);

    // Status is written only on change: resyncs write nothing new (every write, even of an
    // equal status, would move the resourceVersion). Two sync periods hold at least one whole
    // resync, and a sync writes its status before it ends and counts itself.
    let resource_version = running.metadata.resource_version.clone();
    let syncs = kubelet.metric("kubelet_pod_worker_duration_seconds_count").await;
    stays_true(SYNC_FREQUENCY * 2, "pod web's status is not written again without a change", || async {
        pods.get("web").await.expect("pod").metadata.resource_version == resource_version
    })
    .await;
    let resyncs = kubelet.metric("kubelet_pod_worker_duration_seconds_count").await - syncs;
    assert!(resyncs >= 1.0, "no resync of pod web within {:?}: the window showed nothing", SYNC_FREQUENCY * 2);
    let later = pods.get("web").await.expect("pod");
    assert_eq!(later.metadata.resource_version, resource_version, "status rewritten by the resyncs just counted");

    // Deletion: the API only marks a bound pod; the kubelet stops it and removes it.
    pods.delete("web", &DeleteParams::default()).await.expect("delete");
    eventually(WAIT, "pod web removed from the API", || async {
        matches!(pods.get_opt("web").await, Ok(None)).then_some(())
    })
    .await;
    // The kubelet logs its deletion once the DELETE has answered, so the log may trail the API.
    eventually(WAIT, "the kubelet to log that it removed pod web", || async {
        kubelet.log().contains("pod removed from the API").then_some(())
    })
    .await;
}

#[tokio::test]
async fn pods_that_exit_end_succeeded_or_failed_with_their_exit_code() {
    let cluster = Cluster::start().await.expect("cluster");
    let _kubelet = Kubelet::start_fake(&cluster, "node-x", &[]).await.expect("kubelet");
    let client = client(&cluster);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let exit = |code: &str| serde_json::json!({"fake.rkube.dev/exit-code": code});
    pods.create(&PostParams::default(), &pod("ok", "node-x", exit("0"), "Never")).await.expect("create ok");
    pods.create(&PostParams::default(), &pod("bad", "node-x", exit("3"), "Never")).await.expect("create bad");

    let phase_of = |name: &'static str, want: &'static str| {
        let pods = pods.clone();
        async move {
            eventually(WAIT, &format!("pod {name} {want}"), || async {
                let pod = pods.get(name).await.ok()?;
                (pod.status.as_ref()?.phase.as_deref() == Some(want)).then_some(pod)
            })
            .await
        }
    };
    phase_of("ok", "Succeeded").await;
    let failed = phase_of("bad", "Failed").await;
    let terminated = failed.status.and_then(|s| s.container_statuses).unwrap_or_default()[0]
        .state
        .clone()
        .and_then(|s| s.terminated)
        .expect("terminated state");
    assert_eq!(terminated.exit_code, 3);
    assert_eq!(terminated.reason.as_deref(), Some("Error"));
    assert_eq!(condition(&pods.get("bad").await.expect("pod"), "Ready").as_deref(), Some("False"));
}

#[tokio::test]
async fn a_failing_runtime_leaves_pods_pending_with_the_reason() {
    let cluster = Cluster::start().await.expect("cluster");
    let kubelet = Kubelet::start_fake(&cluster, "node-f", &["--fake-fail-start"]).await.expect("kubelet");
    let client = client(&cluster);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("doomed", "node-f", serde_json::json!({}), "Always"))
        .await
        .expect("create");
    let pod = eventually(WAIT, "pod doomed to report RunContainerError", || async {
        let pod = pods.get("doomed").await.ok()?;
        let reason =
            pod.status.as_ref()?.container_statuses.as_ref()?[0].state.as_ref()?.waiting.as_ref()?.reason.clone();
        (reason.as_deref() == Some("RunContainerError")).then_some(pod)
    })
    .await;
    assert_eq!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Pending"));
    assert_eq!(condition(&pod, "Ready").as_deref(), Some("False"));
    let metrics = eventually(WAIT, "sync errors counted", || async {
        let text = reqwest::get(format!("{}/metrics", kubelet.url())).await.ok()?.text().await.ok()?;
        let line = text.lines().find(|line| line.starts_with("kubelet_pod_sync_errors_total"))?.to_string();
        (!line.ends_with(" 0")).then_some(line)
    })
    .await;
    assert!(metrics.starts_with("kubelet_pod_sync_errors_total"));
}

#[tokio::test]
async fn two_fake_kubelets_on_one_machine_run_only_their_own_pods() {
    let cluster = Cluster::start().await.expect("cluster");
    let _one = Kubelet::start_fake(&cluster, "hollow-1", &["--pod-cidr", "10.244.1.0/24"]).await.expect("kubelet 1");
    let _two = Kubelet::start_fake(&cluster, "hollow-2", &["--pod-cidr", "10.244.2.0/24"]).await.expect("kubelet 2");
    let client = client(&cluster);
    let nodes: Api<Node> = Api::all(client.clone());
    ready_node(&nodes, "hollow-1").await;
    ready_node(&nodes, "hollow-2").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("p1", "hollow-1", serde_json::json!({}), "Always")).await.expect("p1");
    pods.create(&PostParams::default(), &pod("p2", "hollow-2", serde_json::json!({}), "Always")).await.expect("p2");
    for (name, prefix) in [("p1", "10.244.1."), ("p2", "10.244.2.")] {
        let ip = eventually(WAIT, &format!("pod {name} Running with an IP"), || async {
            let pod = pods.get(name).await.ok()?;
            let status = pod.status?;
            (status.phase.as_deref() == Some("Running")).then_some(status.pod_ip?)
        })
        .await;
        assert!(ip.starts_with(prefix), "pod {name} got {ip}, expected one from its node's CIDR {prefix}0/24");
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    for node in ["hollow-1", "hollow-2"] {
        eventually(WAIT, &format!("lease of {node}"), || lease_renew_time(&leases, node)).await;
    }
}

/// A Node deleted under a live kubelet comes back, and a Ready condition forged by someone
/// else is corrected at the next status check, not at the next full report (issue 21).
#[tokio::test]
async fn a_deleted_node_registers_again_and_a_forged_condition_is_corrected() {
    let cluster = Cluster::start().await.expect("cluster");
    let _kubelet = Kubelet::start_fake(&cluster, "node-d", &[]).await.expect("kubelet");
    let nodes: Api<Node> = Api::all(client(&cluster));
    let first = ready_node(&nodes, "node-d").await;

    nodes.delete("node-d", &DeleteParams::default()).await.expect("delete the node");
    // One status check (10 s) finds it gone and registers it again.
    let again = ready_node(&nodes, "node-d").await;
    assert_ne!(again.metadata.uid, first.metadata.uid, "a new Node object");

    let forged = serde_json::json!({"status": {"conditions": [
        {"type": "Ready", "status": "False", "reason": "Forged", "message": "written by someone else"}
    ]}});
    nodes.patch_status("node-d", &PatchParams::default(), &Patch::Merge(forged)).await.expect("forge");
    let node = nodes.get("node-d").await.expect("node");
    assert_eq!(node_condition(&node, "Ready").as_deref(), Some("False"), "the forged condition was written");
    // Corrected within a status check or two, well before the 60 s report interval.
    eventually(Duration::from_secs(25), "the kubelet to correct the forged Ready condition", || async {
        let node = nodes.get("node-d").await.ok()?;
        (node_condition(&node, "Ready").as_deref() == Some("True")).then_some(())
    })
    .await;
}
