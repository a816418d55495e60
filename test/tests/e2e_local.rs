//! The whole system on one machine, every component a real process: etcd, the apiserver, the
//! controller-manager, the scheduler, a private containerd and one rkubelet with a pod CIDR.
//!
//! The demo app of `make run` (manifests/demo/deployment.yaml, applied with rkubectl) becomes
//! three Ready pods, bound by the scheduler, each answering HTTP on its pod IP; it scales up and
//! down, rolls forward to a new page and back with `rkubectl rollout undo`, and deleting it
//! leaves nothing behind (garbage collector, kubelet, containerd). Each phase prints how long it
//! took to converge.
//!
//! Needs root and `make deps` (containerd, runc, CNI plugins, busybox-static).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rkube_tests::controllers::{is_ready, live_pods, pods};
use rkube_tests::e2e::LocalCluster;
use rkube_tests::kubectl::Rkubectl;
use rkube_tests::{Api, eventually, repo_root};
use serde_json::Value;

/// Generous: two cores shared with other tests, pods start through containerd and CNI.
const WAIT: Duration = Duration::from_secs(90);
const NODE: &str = "e2e-node";
const POD_CIDR: &str = "10.244.91.0/24";
const NAMESPACE: &str = "default";
const SELECTOR: &str = "app=demo";

fn page_of(pod: &Value) -> Option<&str> {
    let env = pod["spec"]["containers"][0]["env"].as_array()?;
    env.iter().find(|var| var["name"] == "PAGE")?["value"].as_str()
}

fn name_of(pod: &Value) -> String {
    pod["metadata"]["name"].as_str().unwrap_or_default().to_string()
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(3)).no_proxy().build().expect("http client")
}

/// GET http://<pod IP>:8080/ once.
async fn fetch(http: &reqwest::Client, ip: &str) -> Option<String> {
    let reply = http.get(format!("http://{ip}:8080/")).send().await.ok()?;
    reply.status().is_success().then_some(())?;
    reply.text().await.ok()
}

/// Waits until the Deployment's pods are exactly `replicas` live pods, all Ready, bound to the
/// node, with a pod IP from the CIDR, all of page `page`, and nothing terminating; then checks
/// every pod answers HTTP with its own page. Prints the time since `started`; returns the pods.
async fn converge(local: &LocalCluster, started: Instant, what: &str, replicas: usize, page: &str) -> Vec<Value> {
    let api = local.api();
    let settled = eventually(WAIT, what, || async {
        let all = pods(&api, NAMESPACE, SELECTOR).await;
        let done = all.len() == replicas
            && all.iter().all(|pod| {
                pod["metadata"]["deletionTimestamp"].is_null()
                    && is_ready(pod)
                    && pod["spec"]["nodeName"] == NODE
                    && page_of(pod) == Some(page)
                    && pod["status"]["podIP"].as_str().is_some_and(|ip| ip.starts_with("10.244.91."))
            });
        done.then_some(all)
    })
    .await;
    let http = http_client();
    for pod in &settled {
        let ip = pod["status"]["podIP"].as_str().expect("podIP");
        let name = name_of(pod);
        let body = eventually(Duration::from_secs(20), &format!("pod {name} at {ip} to answer HTTP"), || async {
            fetch(&http, ip).await
        })
        .await;
        assert_eq!(body.trim(), format!("demo {page} from {name}"), "page served by {name} at {ip}");
    }
    println!("{what}: converged in {:.1}s", started.elapsed().as_secs_f64());
    settled
}

async fn replica_sets(api: &Api) -> Vec<Value> {
    let path = format!("/apis/apps/v1/namespaces/{NAMESPACE}/replicasets?labelSelector=app%3Ddemo");
    api.get_ok(&path).await["items"].as_array().cloned().unwrap_or_default()
}

async fn deployment_status(api: &Api) -> Value {
    api.get_ok(&format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments/demo")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_deployment_runs_scales_rolls_back_and_is_cleaned_up_across_all_components() {
    let total = Instant::now();
    let mut local = LocalCluster::start(NODE, POD_CIDR).await.expect("whole cluster");
    println!("cluster up in {:.1}s", total.elapsed().as_secs_f64());
    let api = local.api();
    let rkubectl = Rkubectl::new(&local.cluster);
    let manifest = repo_root().join("manifests/demo/deployment.yaml");

    // Deploy: the scheduler binds, the kubelet runs, every replica serves its page.
    let started = Instant::now();
    rkubectl.ok(&["apply", "-f", manifest.to_str().expect("UTF-8 path")]).await;
    let first = converge(&local, started, "3 Ready demo pods serving v1", 3, "v1").await;
    let ips: BTreeSet<&str> = first.iter().filter_map(|pod| pod["status"]["podIP"].as_str()).collect();
    assert_eq!(ips.len(), 3, "pod IPs must be distinct: {ips:?}");
    for pod in &first {
        let scheduled = pod["status"]["conditions"]
            .as_array()
            .and_then(|conditions| conditions.iter().find(|c| c["type"] == "PodScheduled").cloned());
        assert_eq!(scheduled.as_ref().map(|c| c["status"].clone()), Some("True".into()), "{pod}");
    }
    let deployment = eventually(WAIT, "Deployment status to show 3 ready replicas", || async {
        let deployment = deployment_status(&api).await;
        (deployment["status"]["readyReplicas"] == 3 && deployment["status"]["updatedReplicas"] == 3)
            .then_some(deployment)
    })
    .await;
    assert_eq!(deployment["status"]["replicas"], 3, "{deployment}");

    // Scale up, then down: exact counts.
    let started = Instant::now();
    rkubectl.ok(&["scale", "deploy", "demo", "--replicas=5"]).await;
    converge(&local, started, "scaled up to 5", 5, "v1").await;
    let started = Instant::now();
    rkubectl.ok(&["scale", "deploy", "demo", "--replicas=2"]).await;
    converge(&local, started, "scaled down to 2", 2, "v1").await;
    assert_eq!(replica_sets(&api).await.len(), 1, "scaling must not create a ReplicaSet");

    // Rolling update to a new template: every pod serves the new page.
    let patch =
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"httpd","env":[{"name":"PAGE","value":"v2"}]}]}}}}"#;
    let started = Instant::now();
    rkubectl.ok(&["patch", "deploy", "demo", "-p", patch]).await;
    converge(&local, started, "rolling update to v2", 2, "v2").await;
    let sets = replica_sets(&api).await;
    assert_eq!(sets.len(), 2, "old and new ReplicaSet are kept: {sets:?}");
    let replicas: BTreeSet<i64> = sets.iter().filter_map(|rs| rs["spec"]["replicas"].as_i64()).collect();
    assert_eq!(replicas, BTreeSet::from([0, 2]), "the old ReplicaSet is scaled to 0");

    // Roll back: the old template (and the old ReplicaSet) serve again.
    let started = Instant::now();
    rkubectl.ok(&["rollout", "undo", "deploy/demo"]).await;
    converge(&local, started, "rollout undo back to v1", 2, "v1").await;
    assert_eq!(replica_sets(&api).await.len(), 2, "undo reuses the old ReplicaSet");

    // Delete: the garbage collector removes the ReplicaSets and pods, the kubelet the containers.
    let started = Instant::now();
    rkubectl.ok(&["delete", "deploy", "demo"]).await;
    eventually(WAIT, "ReplicaSets and pods of the deleted Deployment to be gone", || async {
        (replica_sets(&api).await.is_empty() && pods(&api, NAMESPACE, SELECTOR).await.is_empty()).then_some(())
    })
    .await;
    eventually(WAIT, "containers of the demo to be removed from containerd", || async {
        local.containerd.container_ids().is_empty().then_some(())
    })
    .await;
    println!("delete and garbage collection: converged in {:.1}s", started.elapsed().as_secs_f64());
    assert!(live_pods(&api, NAMESPACE, SELECTOR).await.is_empty());
    assert!(local.kubelet.is_running(), "{}", local.logs(20));
    println!("whole scenario: {:.1}s", total.elapsed().as_secs_f64());
}

fn pod_phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or_default()
}

/// The example pods of manifests/ that docs/lab.md walks through behave as the guide says, on
/// the whole cluster: run-once ends Succeeded without a restart, crashloop is restarted with a
/// back-off, pinned waits Unschedulable until the node gets its label, tolerant and resources run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_pods_of_the_lab_guide_behave_as_described() {
    let local = LocalCluster::start("e2e-examples", "10.244.92.0/24").await.expect("whole cluster");
    let api = local.api();
    let rkubectl = Rkubectl::new(&local.cluster);
    for file in [
        "pod-run-once.yaml",
        "pod-crashloop.yaml",
        "pod-nodeselector.yaml",
        "pod-toleration.yaml",
        "pod-resources.yaml",
    ] {
        let path = repo_root().join("manifests").join(file);
        rkubectl.ok(&["apply", "-f", path.to_str().expect("UTF-8 path")]).await;
    }
    let pod = |name: &'static str| {
        let api = api.clone();
        async move { api.get_ok(&format!("/api/v1/namespaces/{NAMESPACE}/pods/{name}")).await }
    };
    let started = Instant::now();

    let done = eventually(WAIT, "run-once to end Succeeded", || async {
        let run_once = pod("run-once").await;
        (pod_phase(&run_once) == "Succeeded").then_some(run_once)
    })
    .await;
    assert_eq!(done["status"]["containerStatuses"][0]["restartCount"], 0, "{done}");
    assert_eq!(done["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 0, "{done}");

    for name in ["tolerant", "resources"] {
        eventually(WAIT, &format!("{name} to run"), || async {
            let running = pod(name).await;
            (pod_phase(&running) == "Running" && running["spec"]["nodeName"] == "e2e-examples").then_some(())
        })
        .await;
    }

    let crashing = eventually(WAIT, "crashloop to be restarted and back off", || async {
        let crashing = pod("crashloop").await;
        let status = &crashing["status"]["containerStatuses"][0];
        (status["restartCount"].as_i64().unwrap_or_default() >= 1 && status["lastState"]["terminated"]["exitCode"] == 1)
            .then_some(crashing)
    })
    .await;
    assert_eq!(pod_phase(&crashing), "Running", "restartPolicy Always keeps the pod Running: {crashing}");

    let pending = pod("pinned").await;
    assert!(pending["spec"]["nodeName"].is_null(), "pinned was bound without its label: {pending}");
    eventually(WAIT, "pinned to be reported Unschedulable", || async {
        let pinned = pod("pinned").await;
        let conditions = pinned["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions.iter().any(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable").then_some(())
    })
    .await;
    rkubectl.ok(&["label", "node", "e2e-examples", "disktype=ssd"]).await;
    eventually(WAIT, "pinned to run once the node has the label", || async {
        let pinned = pod("pinned").await;
        (pod_phase(&pinned) == "Running" && pinned["spec"]["nodeName"] == "e2e-examples").then_some(())
    })
    .await;
    println!("example pods: converged in {:.1}s", started.elapsed().as_secs_f64());
}
