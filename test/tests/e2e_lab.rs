//! End-to-end tests on the multi-node lab (`hack/lab-up.sh`): three hosts as network namespaces,
//! real etcd, apiserver, controller-manager and scheduler in the master, a real containerd and
//! rkubelet in each worker, CNI bridge networking and host-gw routes between the workers.
//!
//! Each test builds its own lab (its own namespaces and networks, see `rkube_tests::lab`), so
//! they run in parallel; the lab is taken down when the test ends, also when it fails.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rkube_tests::Api;
use rkube_tests::controllers::{is_ready, live_pods, pods};
use rkube_tests::eventually;
use rkube_tests::lab::{Lab, LabOptions, WORKERS, node_ready};
use rkube_tests::node::TEST_IMAGE;
use serde_json::{Value, json};

const NS: &str = "default";
const APP: &str = "web";
const SELECTOR: &str = "app=web";
/// How long the Deployment's pods may take to be created, started and Ready.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(60);

/// A Deployment of `replicas` busybox httpd pods, each serving its own hostname (the pod name)
/// at `/` on port 8080.
fn web_deployment(replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": APP, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": APP}},
            "template": {
                "metadata": {"labels": {"app": APP}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "web",
                        "image": TEST_IMAGE,
                        "command": ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"],
                        "ports": [{"containerPort": 8080}]
                    }]
                }
            }
        }
    })
}

/// The live pods of the Deployment once exactly `count` of them are Ready with an IP, all on
/// nodes in `nodes`.
async fn wait_for_ready_pods(api: &Api, lab: &Lab, count: usize, nodes: &[&str], what: &str) -> Vec<Value> {
    let start = Instant::now();
    let limit = ROLLOUT_TIMEOUT;
    let ready = tokio::time::timeout(limit, async {
        loop {
            let live = live_pods(api, NS, SELECTOR).await;
            let settled = live.len() == count
                && live.iter().all(|pod| {
                    is_ready(pod)
                        && pod["status"]["podIP"].is_string()
                        && nodes.contains(&pod["spec"]["nodeName"].as_str().unwrap_or_default())
                });
            if settled {
                return live;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    match ready {
        Ok(live) => {
            println!("{what}: converged in {:.1}s", start.elapsed().as_secs_f64());
            live
        }
        Err(_) => {
            let summary: Vec<String> = pods(api, NS, SELECTOR).await.iter().map(summary).collect();
            panic!(
                "{what}: not {count} Ready pods on {nodes:?} after {limit:?}; pods:\n{}\n{}",
                summary.join("\n"),
                lab.all_logs(30)
            );
        }
    }
}

/// One line about a pod, for messages.
fn summary(pod: &Value) -> String {
    format!(
        "{} node={} ip={} phase={} ready={} deleting={}",
        pod["metadata"]["name"],
        pod["spec"]["nodeName"],
        pod["status"]["podIP"],
        pod["status"]["phase"],
        is_ready(pod),
        !pod["metadata"]["deletionTimestamp"].is_null()
    )
}

/// The number of pods on each node.
fn per_node(pods: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for pod in pods {
        *counts.entry(pod["spec"]["nodeName"].as_str().unwrap_or_default().to_string()).or_insert(0) += 1;
    }
    counts
}

/// Whether `ip` is in the lab's `/24` `cidr`.
fn in_cidr(ip: &str, cidr: &str) -> bool {
    let network = cidr.trim_end_matches(".0/24");
    ip.strip_prefix(network).is_some_and(|rest| rest.starts_with('.'))
}

/// Checks every pod got its IP from its node's pod CIDR and reports its node's address.
fn assert_pod_addresses(lab: &Lab, pods: &[Value]) {
    for pod in pods {
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
        assert!(in_cidr(ip, &lab.pod_cidr(node)), "pod IP not from {}: {}", lab.pod_cidr(node), summary(pod));
        assert_eq!(pod["status"]["hostIP"], lab.host_ip(node), "hostIP of {}", summary(pod));
    }
}

#[tokio::test]
async fn a_deployment_spreads_over_both_workers_and_pods_reach_each_other_across_nodes() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab up");
    let api = lab.api();

    // Each Node advertises its worker's address.
    for worker in WORKERS {
        let node = api.get_ok(&format!("/api/v1/nodes/{worker}")).await;
        let addresses = node["status"]["addresses"].as_array().cloned().unwrap_or_default();
        let internal: Vec<&Value> = addresses.iter().filter(|a| a["type"] == "InternalIP").collect();
        assert_eq!(internal.len(), 1, "{worker} addresses: {addresses:?}");
        assert_eq!(internal[0]["address"], lab.host_ip(worker), "{worker} InternalIP");
        assert_eq!(node["spec"]["podCIDR"], lab.pod_cidr(worker), "{worker} podCIDR");
    }

    api.create(&format!("/apis/apps/v1/namespaces/{NS}/deployments"), &web_deployment(4)).await;
    let live = wait_for_ready_pods(&api, &lab, 4, &WORKERS, "4 replicas Ready").await;

    let counts = per_node(&live);
    assert_eq!(counts.values().sum::<usize>(), 4, "{counts:?}");
    assert_eq!(counts.len(), 2, "pods not spread over both workers: {counts:?}");
    for worker in WORKERS {
        assert!(counts.get(worker).copied().unwrap_or(0) >= 1, "no pod on {worker}: {counts:?}");
    }
    assert_pod_addresses(&lab, &live);

    // Pod to pod across nodes, both ways: from inside one pod's network namespace to the other
    // pod's IP, through the bridges and the host-gw routes. Each pod serves its own name.
    let on = |worker: &str| live.iter().find(|pod| pod["spec"]["nodeName"] == worker).cloned().expect("a pod");
    for (from, to) in [("worker1", "worker2"), ("worker2", "worker1")] {
        let client = on(from);
        let server = on(to);
        let uid = client["metadata"]["uid"].as_str().expect("uid").to_string();
        let url = format!("http://{}:8080/", server["status"]["podIP"].as_str().expect("podIP"));
        let started = Instant::now();
        let body = eventually(Duration::from_secs(20), &format!("{url} to answer from a pod on {from}"), || {
            let (lab, uid, url) = (&lab, &uid, &url);
            async move { lab.fetch_from_pod(uid, url).await.ok() }
        })
        .await;
        assert_eq!(body.trim(), server["metadata"]["name"], "reply from {url} (a pod on {to})");
        println!("pod on {from} -> pod on {to} ({url}): answered in {:.1}s", started.elapsed().as_secs_f64());
    }
}

#[tokio::test]
async fn a_lost_worker_goes_unknown_its_pods_are_recreated_on_the_other_worker_and_it_comes_back() {
    let options = LabOptions {
        lease_renew_seconds: 1,
        node_monitor_period: "1s".into(),
        node_monitor_grace: "8s".into(),
        pod_eviction_timeout: "4s".into(),
        node_eviction_rate: "100".into(),
    };
    let lab = Lab::start(options).await.expect("lab up");
    let api = lab.api();

    api.create(&format!("/apis/apps/v1/namespaces/{NS}/deployments"), &web_deployment(4)).await;
    let before = wait_for_ready_pods(&api, &lab, 4, &WORKERS, "4 replicas Ready").await;
    let counts = per_node(&before);
    assert!(counts.get("worker2").copied().unwrap_or(0) >= 1, "no pod on worker2 to lose: {counts:?}");
    let lost: Vec<String> = before
        .iter()
        .filter(|pod| pod["spec"]["nodeName"] == "worker2")
        .map(|pod| pod["metadata"]["name"].as_str().unwrap_or_default().to_string())
        .collect();

    // worker2's kubelet dies: no more Lease renewals or status updates.
    lab.kill("worker2", "kubelet").expect("kill worker2's kubelet");
    let killed = Instant::now();

    eventually(Duration::from_secs(30), "worker2 to go Ready=Unknown", || {
        let api = api.clone();
        async move {
            let node = api.get_ok("/api/v1/nodes/worker2").await;
            (node_ready(&node) == Some("Unknown")).then_some(())
        }
    })
    .await;
    println!("worker2 Ready=Unknown {:.1}s after its kubelet was killed", killed.elapsed().as_secs_f64());

    let after = wait_for_ready_pods(&api, &lab, 4, &["worker1"], "4 replicas Ready on worker1").await;
    let converged = killed.elapsed();
    println!("pods back to 4 Ready on worker1 {:.1}s after worker2's kubelet was killed", converged.as_secs_f64());
    // Grace period + eviction timeout, plus time to reschedule and start 4 pods.
    assert!(converged < Duration::from_secs(8 + 4 + 20), "recovery took {converged:?}");

    // Exactly: 4 live pods, all on worker1, none of them a former worker2 pod; the lost ones are
    // being deleted (their kubelet is gone, so they stay Terminating); worker1 is still Ready.
    assert_eq!(per_node(&after), BTreeMap::from([("worker1".to_string(), 4)]));
    assert_pod_addresses(&lab, &after);
    for pod in &after {
        assert!(!lost.contains(&pod["metadata"]["name"].as_str().unwrap_or_default().to_string()), "{}", summary(pod));
    }
    for pod in pods(&api, NS, SELECTOR).await {
        if pod["spec"]["nodeName"] == "worker2" {
            assert!(
                !pod["metadata"]["deletionTimestamp"].is_null(),
                "a pod on worker2 was not evicted: {}",
                summary(&pod)
            );
        }
    }
    let worker1 = api.get_ok("/api/v1/nodes/worker1").await;
    assert_eq!(node_ready(&worker1), Some("True"), "worker1 must stay Ready");
    let worker2 = api.get_ok("/api/v1/nodes/worker2").await;
    let taints: Vec<&Value> = worker2["spec"]["taints"].as_array().map(|t| t.iter().collect()).unwrap_or_default();
    assert!(
        taints.iter().any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute"),
        "worker2 taints: {taints:?}"
    );

    // worker2 comes back: its kubelet renews the Lease again, the Node is Ready without the
    // taints, and the kubelet finishes the evicted pods' deletion, leaving exactly the 4 pods on
    // worker1.
    lab.restart_kubelet("worker2").await.expect("restart worker2's kubelet");
    let restarted = Instant::now();
    eventually(Duration::from_secs(30), "worker2 Ready again, untainted, its evicted pods gone", || {
        let api = api.clone();
        async move {
            let node = api.get_ok("/api/v1/nodes/worker2").await;
            let untainted = node["spec"]["taints"].as_array().is_none_or(|taints| {
                !taints.iter().any(|t| t["key"].as_str().is_some_and(|key| key.starts_with("node.kubernetes.io/")))
            });
            let all = pods(&api, NS, SELECTOR).await;
            let settled = node_ready(&node) == Some("True") && untainted && all.len() == 4;
            settled.then_some(())
        }
    })
    .await;
    println!(
        "worker2 back and its evicted pods gone {:.1}s after its kubelet restarted",
        restarted.elapsed().as_secs_f64()
    );
    let all = pods(&api, NS, SELECTOR).await;
    assert_eq!(per_node(&all), BTreeMap::from([("worker1".to_string(), 4)]));
    assert!(all.iter().all(|pod| is_ready(pod) && pod["metadata"]["deletionTimestamp"].is_null()));
}
