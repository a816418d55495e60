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

    // Through a Service: its cluster IP from a pod on worker1 reaches pods on both workers
    // (rkube-proxy's rules on worker1 pick one per connection), and its node port on worker2's
    // address from the lab host does too.
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": APP, "namespace": NS},
        "spec": {"type": "NodePort", "selector": {"app": APP}, "ports": [{"port": 80, "targetPort": 8080}]}});
    let service = api.create(&format!("/api/v1/namespaces/{NS}/services"), &service).await;
    let cluster_ip = service["spec"]["clusterIP"].as_str().expect("cluster IP").to_string();
    let node_port = service["spec"]["ports"][0]["nodePort"].as_u64().expect("node port");
    let client = on("worker1");
    let uid = client["metadata"]["uid"].as_str().expect("uid").to_string();
    let url = format!("http://{cluster_ip}/");
    let started = Instant::now();
    let mut answered_by = std::collections::BTreeSet::new();
    while answered_by.len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{url} from a pod on worker1: only pods on {answered_by:?} answered\n{}",
            lab.all_logs(10)
        );
        if let Ok(body) = lab.fetch_from_pod(&uid, &url).await
            && let Some(pod) = live.iter().find(|pod| pod["metadata"]["name"] == body.trim())
        {
            answered_by.insert(pod["spec"]["nodeName"].as_str().unwrap_or_default().to_string());
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    println!(
        "Service {url} from a pod on worker1: pods on both workers answered within {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let node_url = format!("http://{}:{node_port}/", lab.host_ip("worker2"));
    let body = eventually(Duration::from_secs(30), &format!("{node_url} from the lab host"), || {
        let node_url = node_url.clone();
        async move {
            let out = tokio::process::Command::new("curl").args(["-fsS", "-m", "5", &node_url]).output().await.ok()?;
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        }
    })
    .await;
    assert!(live.iter().any(|pod| pod["metadata"]["name"] == body), "{node_url} answered {body:?}");

    // By name: a pod resolves the Service through the cluster DNS (its resolv.conf names the
    // kube-dns Service, which rkube-proxy sends to rkube-dns on the master), with busybox's
    // nslookup.
    let client_name = client["metadata"]["name"].as_str().expect("name").to_string();
    let name = format!("{APP}.{NS}.svc.cluster.local");
    let started = Instant::now();
    let lookup = loop {
        match lab.rkubectl(&["exec", &client_name, "--", "nslookup", &name]).await {
            Ok(lookup) if lookup.contains(&cluster_ip) => break lookup,
            outcome => {
                let resolv = lab.rkubectl(&["exec", &client_name, "--", "cat", "/etc/resolv.conf"]).await;
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "nslookup {name} in {client_name}: {outcome:?}\nresolv.conf: {resolv:?}\n{}",
                    lab.all_logs(10)
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    assert!(lookup.contains("Server:\t\t10.96.0.10"), "{lookup}");
    println!("{name} resolved in a pod on worker1 through the cluster DNS: {cluster_ip}");

    // A guestbook-like pair: a frontend whose page calls the backend (the web pods) by its
    // Service's DNS name, reached through the frontend's NodePort from the lab host and by name
    // from a pod on worker1.
    api.create(&format!("/apis/apps/v1/namespaces/{NS}/deployments"), &frontend_deployment(&name)).await;
    let frontend = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "frontend", "namespace": NS},
        "spec": {"type": "NodePort", "selector": {"app": "frontend"}, "ports": [{"port": 80, "targetPort": 8080}]}});
    let frontend = api.create(&format!("/api/v1/namespaces/{NS}/services"), &frontend).await;
    let frontend_port = frontend["spec"]["ports"][0]["nodePort"].as_i64().expect("nodePort");
    let page_url = format!("http://{}:{frontend_port}/cgi-bin/page", lab.host_ip("worker1"));
    let started = Instant::now();
    let mut backends = std::collections::BTreeSet::new();
    while backends.len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{page_url} from the lab host: only backends {backends:?} answered\n{}",
            lab.all_logs(10)
        );
        let out = tokio::process::Command::new("curl").args(["-fsS", "-m", "5", &page_url]).output().await;
        let page =
            out.ok().filter(|out| out.status.success()).map(|out| String::from_utf8_lossy(&out.stdout).into_owned());
        match page.as_deref().and_then(|page| page.trim().split_once(" -> backend ")) {
            Some((_, backend)) if live.iter().any(|pod| pod["metadata"]["name"] == backend) => {
                backends.insert(backend.to_string());
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    println!(
        "frontend -> http://{name}/ through the frontend's NodePort: {} backends answered within {:.1}s",
        backends.len(),
        started.elapsed().as_secs_f64()
    );
    let frontend_name = format!("frontend.{NS}.svc.cluster.local");
    let page = lab
        .rkubectl(&["exec", &client_name, "--", "wget", "-q", "-O-", &format!("http://{frontend_name}/cgi-bin/page")])
        .await
        .expect("the frontend by name from a pod on worker1");
    assert!(page.starts_with("frontend ") && page.contains(" -> backend "), "{page}");
}

/// A frontend of two busybox httpd pods whose CGI page `/cgi-bin/page` fetches the backend
/// `http://<backend>/` by name (busybox wget, the cluster DNS) and says who answered:
/// `frontend <pod> -> backend <pod>`.
fn frontend_deployment(backend: &str) -> Value {
    let page = format!(
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho \"frontend $(hostname) -> backend $(wget -q -O- http://{backend}/)\"\n"
    );
    let script = "mkdir -p /www/cgi-bin && printf '%s' \"$PAGE\" > /www/cgi-bin/page && chmod +x /www/cgi-bin/page && exec httpd -f -p 8080 -h /www";
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "frontend", "namespace": NS},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "frontend"}},
            "template": {
                "metadata": {"labels": {"app": "frontend"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "frontend",
                        "image": TEST_IMAGE,
                        "command": ["sh", "-c", script],
                        "env": [{"name": "PAGE", "value": page}],
                        "ports": [{"containerPort": 8080}]
                    }]
                }
            }
        }
    })
}

#[tokio::test]
async fn a_lost_worker_goes_unknown_its_pods_are_recreated_on_the_other_worker_and_it_comes_back() {
    let options = LabOptions {
        lease_renew_seconds: 1,
        node_monitor_period: "1s".into(),
        node_monitor_grace: "8s".into(),
        pod_eviction_timeout: "4s".into(),
        node_eviction_rate: "100".into(),
        podgc_quarantine: "40s".into(),
        ..LabOptions::default()
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

// ---------------------------------------------------------------------------------------------
// The demo app (manifests/demo/deployment.yaml) on the lab: scaling, a rolling update under
// traffic and its rollback, control-plane crashes during a rollout, an etcd restart.

const DEMO: &str = "demo";
const DEMO_SELECTOR: &str = "app=demo";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

/// The demo Deployment of manifests/demo/deployment.yaml with `replicas`.
fn demo_deployment(replicas: i64) -> Value {
    let path = rkube_tests::repo_root().join("manifests/demo/deployment.yaml");
    let text = std::fs::read_to_string(&path).expect("manifests/demo/deployment.yaml readable");
    let mut demo: Value = serde_yaml_ng::from_str(&text).expect("manifests/demo/deployment.yaml is YAML");
    demo["spec"]["replicas"] = json!(replicas);
    demo
}

/// The `PAGE` environment variable of a pod's (or a pod template's spec's) first container.
fn page_of(spec: &Value) -> Option<&str> {
    let env = spec["containers"][0]["env"].as_array()?;
    env.iter().find(|var| var["name"] == "PAGE")?["value"].as_str()
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

async fn demo_replica_sets(api: &Api) -> Vec<Value> {
    let path = format!("/apis/apps/v1/namespaces/{NS}/replicasets?labelSelector=app%3Ddemo");
    api.get_ok(&path).await["items"].as_array().cloned().unwrap_or_default()
}

/// Sets the demo template's `PAGE` (a new template: a rollout) with a read-modify-write.
async fn set_page(api: &Api, page: &str) {
    let path = format!("{DEPLOYMENTS}/{DEMO}");
    let mut demo = api.get_ok(&path).await;
    demo["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "PAGE", "value": page}]);
    let (status, body) = api.put(&path, &demo).await;
    assert!(status.is_success(), "PUT {path} with PAGE={page}: {status} {body}");
}

/// Sets the demo's replicas through the scale subresource.
async fn scale_demo(api: &Api, replicas: i64) {
    let path = format!("{DEPLOYMENTS}/{DEMO}/scale");
    let (status, body) =
        api.patch(&path, "application/merge-patch+json", &json!({"spec": {"replicas": replicas}})).await;
    assert!(status.is_success(), "scale {DEMO} to {replicas}: {status} {body}");
}

/// What the demo must settle to.
struct Want<'a> {
    replicas: usize,
    page: &'a str,
    nodes: &'a [&'a str],
    /// How many ReplicaSets the Deployment has (one per template it ever had).
    replica_sets: usize,
}

/// Waits until the demo is exactly `want`, and returns its pods:
/// - exactly `replicas` pods with the label, none being deleted, each Ready with a pod IP, on
///   one of `nodes`, with template page `page`;
/// - exactly `replica_sets` ReplicaSets: the one of page `page` wants and has `replicas` Ready
///   pods, every other one is scaled to 0 and has no pods;
/// - the Deployment's status observed its latest generation and counts `replicas` replicas, all
///   updated, Ready and available.
///
/// Prints how long it took since `started`.
async fn settle(api: &Api, lab: &Lab, started: Instant, what: &str, want: &Want<'_>) -> Vec<Value> {
    let settled = tokio::time::timeout(ROLLOUT_TIMEOUT, async {
        loop {
            if let Some(pods) = demo_state(api, want).await {
                return pods;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    match settled {
        Ok(pods) => {
            println!("{what}: converged in {:.1}s", started.elapsed().as_secs_f64());
            pods
        }
        Err(_) => {
            let pods: Vec<String> = pods(api, NS, DEMO_SELECTOR)
                .await
                .iter()
                .map(|pod| format!("{} page={:?}", summary(pod), page_of(&pod["spec"])))
                .collect();
            let sets: Vec<String> = demo_replica_sets(api)
                .await
                .iter()
                .map(|rs| {
                    format!(
                        "{} page={:?} spec.replicas={} status={}",
                        name_of(rs),
                        page_of(&rs["spec"]["template"]["spec"]),
                        rs["spec"]["replicas"],
                        rs["status"]
                    )
                })
                .collect();
            let deployment = api.get_ok(&format!("{DEPLOYMENTS}/{DEMO}")).await;
            panic!(
                "{what}: not settled after {ROLLOUT_TIMEOUT:?} (want {} pods of page {} on {:?}, {} ReplicaSets)\n\
                 pods:\n{}\nReplicaSets:\n{}\nDeployment generation {} status {}\n{}",
                want.replicas,
                want.page,
                want.nodes,
                want.replica_sets,
                pods.join("\n"),
                sets.join("\n"),
                deployment["metadata"]["generation"],
                deployment["status"],
                lab.all_logs(30)
            );
        }
    }
}

/// The demo's pods when it is exactly as `want` says (see [`settle`]), else `None`.
async fn demo_state(api: &Api, want: &Want<'_>) -> Option<Vec<Value>> {
    let all = pods(api, NS, DEMO_SELECTOR).await;
    let pods_ok = all.len() == want.replicas
        && all.iter().all(|pod| {
            pod["metadata"]["deletionTimestamp"].is_null()
                && is_ready(pod)
                && pod["status"]["podIP"].is_string()
                && want.nodes.contains(&pod["spec"]["nodeName"].as_str().unwrap_or_default())
                && page_of(&pod["spec"]) == Some(want.page)
        });
    if !pods_ok {
        return None;
    }
    let sets = demo_replica_sets(api).await;
    let replicas = want.replicas as i64;
    let sets_ok = sets.len() == want.replica_sets
        && sets.iter().all(|rs| {
            let (spec, status) = (rs["spec"]["replicas"].as_i64(), &rs["status"]);
            let count = |field: &str| status[field].as_i64().unwrap_or(0);
            if page_of(&rs["spec"]["template"]["spec"]) == Some(want.page) {
                spec == Some(replicas) && count("replicas") == replicas && count("readyReplicas") == replicas
            } else {
                spec == Some(0) && count("replicas") == 0
            }
        });
    if !sets_ok {
        return None;
    }
    let deployment = api.get_ok(&format!("{DEPLOYMENTS}/{DEMO}")).await;
    let status = &deployment["status"];
    let deployment_ok = deployment["spec"]["replicas"].as_i64() == Some(replicas)
        && status["observedGeneration"].as_i64() >= deployment["metadata"]["generation"].as_i64()
        && ["replicas", "updatedReplicas", "readyReplicas", "availableReplicas"]
            .iter()
            .all(|field| status[*field].as_i64() == Some(replicas));
    deployment_ok.then_some(all)
}

/// Checks that pods are on both workers, and returns the count per node.
fn assert_spread(pods: &[Value], what: &str) -> BTreeMap<String, usize> {
    let counts = per_node(pods);
    for worker in WORKERS {
        assert!(counts.get(worker).copied().unwrap_or(0) >= 1, "{what}: no pod on {worker}: {counts:?}");
    }
    println!("{what}: pods per node {counts:?}");
    counts
}

#[tokio::test]
async fn the_demo_scales_up_and_down_over_both_workers() {
    let test = Instant::now();
    let lab = Lab::start(LabOptions::default()).await.expect("lab up");
    let api = lab.api();

    let started = Instant::now();
    api.create(DEPLOYMENTS, &demo_deployment(2)).await;
    let want = |replicas| Want { replicas, page: "v1", nodes: &WORKERS, replica_sets: 1 };
    let two = settle(&api, &lab, started, "deploy 2 replicas", &want(2)).await;
    assert_spread(&two, "2 replicas");
    assert_pod_addresses(&lab, &two);

    let started = Instant::now();
    scale_demo(&api, 6).await;
    let six = settle(&api, &lab, started, "scale 2 -> 6", &want(6)).await;
    assert_spread(&six, "6 replicas");
    assert_pod_addresses(&lab, &six);
    // Scaling up keeps the pods that were there.
    let names: Vec<&str> = six.iter().map(name_of).collect();
    for pod in &two {
        assert!(names.contains(&name_of(pod)), "{} was replaced while scaling up: {names:?}", name_of(pod));
    }

    let started = Instant::now();
    scale_demo(&api, 1).await;
    let one = settle(&api, &lab, started, "scale 6 -> 1", &want(1)).await;
    assert!(names.contains(&name_of(&one[0])), "scaling down created a pod: {}", summary(&one[0]));
    assert_pod_addresses(&lab, &one);
    println!("test took {:.1}s", test.elapsed().as_secs_f64());
}

/// One answer of the demo, as the [`Traffic`] client saw it.
struct Answer {
    /// The page the pod served (`v1`, `v2`).
    page: String,
    /// When the endpoint list the request was sent from was fetched.
    listed_at: Instant,
}

/// What the [`Traffic`] client saw.
#[derive(Default)]
struct Seen {
    answers: Vec<Answer>,
    /// Failed requests: connection errors, timeouts, non-200 replies, a reply that is not the
    /// page of the pod it was sent to, or no Ready pod to send to.
    failures: Vec<String>,
}

/// The Ready, live pods of the demo with their IPs, as an endpoints controller would publish
/// them, and when they were listed.
type Endpoints = (Instant, Vec<(String, String)>);

/// A client of the demo app, doing what a Service with kube-proxy would do for it (rkube has
/// neither): every 100 ms it lists the demo's pods and keeps those that are Ready, have a pod
/// IP and are not being deleted (the endpoints); meanwhile it sends GET `http://<pod IP>:8080/`
/// to them in turn, from the machine through the lab's routes, one request every 10 ms, and
/// checks each reply is `demo <page> from <that pod's name>`. Stops when dropped.
struct Traffic {
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    fn start(lab: &Lab) -> Traffic {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen::default()));
        let endpoints: std::sync::Arc<std::sync::Mutex<Option<Endpoints>>> = std::sync::Arc::default();
        let api = lab.api();
        let list = std::sync::Arc::clone(&endpoints);
        let refresher = tokio::spawn(async move {
            let path = format!("/api/v1/namespaces/{NS}/pods?labelSelector=app%3Ddemo");
            loop {
                let listed_at = Instant::now();
                // A failed list keeps the last endpoints, as kube-proxy keeps its rules.
                if let Ok(reply) = api.try_send(rkube_tests::Method::GET, &path, &[], None).await
                    && reply.status.is_success()
                {
                    let ready: Vec<(String, String)> = reply.body["items"]
                        .as_array()
                        .map(|items| {
                            items
                                .iter()
                                .filter(|pod| is_ready(pod) && pod["metadata"]["deletionTimestamp"].is_null())
                                .filter_map(|pod| {
                                    Some((name_of(pod).to_string(), pod["status"]["podIP"].as_str()?.to_string()))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    if let Ok(mut endpoints) = list.lock() {
                        *endpoints = Some((listed_at, ready));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let record = std::sync::Arc::clone(&seen);
        let requester = tokio::spawn(async move {
            let http = demo_client();
            let mut turn = 0usize;
            loop {
                let current = endpoints.lock().ok().and_then(|endpoints| endpoints.clone());
                if let Some((listed_at, pods)) = current {
                    let outcome = match pods.get(turn % pods.len().max(1)) {
                        None => Err("no Ready pod to send to".to_string()),
                        Some((name, ip)) => get_page(&http, name, ip).await,
                    };
                    turn = turn.wrapping_add(1);
                    if let Ok(mut seen) = record.lock() {
                        match outcome {
                            Ok(page) => seen.answers.push(Answer { page, listed_at }),
                            Err(failure) => seen.failures.push(failure),
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Traffic { seen, tasks: vec![refresher, requester] }
    }

    /// (answers, failures) so far.
    fn counts(&self) -> (usize, usize) {
        self.seen.lock().map(|seen| (seen.answers.len(), seen.failures.len())).unwrap_or_default()
    }

    /// Waits until at least `count` requests were answered from endpoints listed after `since`,
    /// and returns the pages of those answers.
    async fn pages_after(&self, since: Instant, count: usize) -> Vec<String> {
        eventually(Duration::from_secs(20), &format!("{count} answers from endpoints listed after convergence"), || {
            let pages: Vec<String> = self
                .seen
                .lock()
                .map(|seen| {
                    seen.answers.iter().filter(|answer| answer.listed_at > since).map(|a| a.page.clone()).collect()
                })
                .unwrap_or_default();
            std::future::ready((pages.len() >= count).then_some(pages))
        })
        .await
    }

    /// The failures so far (at most the first 20).
    fn failures(&self) -> Vec<String> {
        self.seen.lock().map(|seen| seen.failures.iter().take(20).cloned().collect()).unwrap_or_default()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// An HTTP client for the demo: a short timeout, and no connection reuse (busybox httpd closes
/// each connection after its reply).
fn demo_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()
        .expect("HTTP client")
}

/// GET `http://<ip>:8080/` of pod `name`: its page (`v1`) when it answers `demo v1 from <name>`.
async fn get_page(http: &reqwest::Client, name: &str, ip: &str) -> Result<String, String> {
    let url = format!("http://{ip}:8080/");
    let reply = http.get(&url).send().await.map_err(|error| format!("{url} ({name}): {error:?}"))?;
    let status = reply.status();
    let body = reply.text().await.map_err(|error| format!("{url} ({name}): body: {error:#}"))?;
    if !status.is_success() {
        return Err(format!("{url} ({name}): {status} {body}"));
    }
    let page = body.trim().strip_prefix("demo ").and_then(|rest| rest.strip_suffix(&format!(" from {name}")));
    page.map(str::to_string).ok_or_else(|| format!("{url} ({name}): unexpected page {body:?}"))
}

#[tokio::test]
async fn a_rolling_update_under_traffic_fails_no_request_and_rolls_back() {
    let test = Instant::now();
    let lab = Lab::start(LabOptions::default()).await.expect("lab up");
    let api = lab.api();

    let started = Instant::now();
    api.create(DEPLOYMENTS, &demo_deployment(3)).await;
    let v1 = Want { replicas: 3, page: "v1", nodes: &WORKERS, replica_sets: 1 };
    let first = settle(&api, &lab, started, "deploy 3 replicas of v1", &v1).await;
    assert_spread(&first, "3 replicas");

    let traffic = Traffic::start(&lab);
    // Traffic flows before the rollout starts: the machine reaches the pods of both workers.
    let before = Instant::now();
    let pages = traffic.pages_after(before, 20).await;
    assert!(pages.iter().all(|page| page == "v1"), "before the rollout: {pages:?}");

    // Roll out page v2: maxSurge 1, maxUnavailable 0, every old pod serves for 2 s after its
    // SIGTERM, the client stops sending to it once it sees the deletionTimestamp.
    let started = Instant::now();
    let (requests_before, _) = traffic.counts();
    set_page(&api, "v2").await;
    let v2 = Want { replicas: 3, page: "v2", nodes: &WORKERS, replica_sets: 2 };
    let rolled = settle(&api, &lab, started, "rolling update v1 -> v2 under traffic", &v2).await;
    let converged = Instant::now();
    let (requests, failures) = traffic.counts();
    let during = requests - requests_before;
    println!("rollout: {during} requests answered during it, {failures} failed");
    assert!(during >= MIN_REQUESTS_PER_ROLLOUT, "only {during} requests during the rollout: the client stalled");
    let pages = traffic.pages_after(converged, 30).await;
    assert!(pages.iter().all(|page| page == "v2"), "after the rollout, answers not all from v2 pods: {pages:?}");
    assert_eq!(traffic.counts().1, 0, "requests failed during the rollout: {:#?}", traffic.failures());
    assert_spread(&rolled, "after the rollout");
    assert_pod_addresses(&lab, &rolled);

    // Roll back (`rollout undo`): the v1 ReplicaSet is scaled up again, still without a failure.
    let started = Instant::now();
    let (requests_before, _) = traffic.counts();
    let undo = lab.rkubectl(&["rollout", "undo", "deploy/demo"]).await.expect("rkubectl rollout undo");
    println!("{}", undo.trim());
    let back = settle(&api, &lab, started, "rollout undo v2 -> v1 under traffic", &v1_with_sets(2)).await;
    let converged = Instant::now();
    let (requests, failures) = traffic.counts();
    let during = requests - requests_before;
    println!("undo: {during} requests answered during it, {failures} failed");
    assert!(during >= MIN_REQUESTS_PER_ROLLOUT, "only {during} requests during the undo: the client stalled");
    let pages = traffic.pages_after(converged, 30).await;
    assert!(pages.iter().all(|page| page == "v1"), "after the undo, answers not all from v1 pods: {pages:?}");
    let (requests, failures) = traffic.counts();
    assert_eq!(failures, 0, "requests failed during the rollback: {:#?}", traffic.failures());
    assert_spread(&back, "after the undo");
    // The undo reused the first ReplicaSet (same template, same pod-template-hash).
    let hash = |pod: &Value| pod["metadata"]["labels"]["pod-template-hash"].clone();
    assert!(back.iter().all(|pod| hash(pod) == hash(&first[0])), "undo did not return to the first ReplicaSet");
    println!("{requests} requests in all, 0 failed; test took {:.1}s", test.elapsed().as_secs_f64());
}

#[tokio::test]
async fn a_rolling_update_behind_a_service_fails_no_request_from_a_client_of_its_node_port() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab up");
    let api = lab.api();
    let started = Instant::now();
    api.create(DEPLOYMENTS, &demo_deployment(3)).await;
    let v1 = Want { replicas: 3, page: "v1", nodes: &WORKERS, replica_sets: 1 };
    settle(&api, &lab, started, "deploy 3 replicas of v1", &v1).await;
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": DEMO, "namespace": NS},
        "spec": {"type": "NodePort", "selector": {"app": DEMO}, "ports": [{"port": 80, "targetPort": 8080}]}});
    let service = api.create(&format!("/api/v1/namespaces/{NS}/services"), &service).await;
    let node_port = service["spec"]["ports"][0]["nodePort"].as_u64().expect("node port");
    // The client: the lab host polling the node port on worker1, one request every 10 ms;
    // rkube-proxy on worker1 sends each to a ready pod on either worker.
    let url = format!("http://{}:{node_port}/", lab.host_ip("worker1"));
    let http = demo_client();
    let get = |http: reqwest::Client, url: String| async move {
        let reply = http.get(&url).send().await.map_err(|e| format!("{e:?}"))?;
        let status = reply.status();
        let body = reply.text().await.map_err(|e| format!("{e:?}"))?;
        let page = body.trim().strip_prefix("demo ").and_then(|rest| rest.split(' ').next()).map(String::from);
        match (status.is_success(), page) {
            (true, Some(page)) => Ok(page),
            _ => Err(format!("{status} {body:?}")),
        }
    };
    eventually(Duration::from_secs(30), &format!("{url} to answer"), || {
        let fetch = get(http.clone(), url.clone());
        async move { fetch.await.ok() }
    })
    .await;
    let answers = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(Instant, Result<String, String>)>::new()));
    let record = std::sync::Arc::clone(&answers);
    let (poll_http, poll_url) = (http.clone(), url.clone());
    let poller = tokio::spawn(async move {
        loop {
            let outcome = get(poll_http.clone(), poll_url.clone()).await;
            if let Ok(mut answers) = record.lock() {
                answers.push((Instant::now(), outcome));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let started = Instant::now();
    set_page(&api, "v2").await;
    let v2 = Want { replicas: 3, page: "v2", nodes: &WORKERS, replica_sets: 2 };
    settle(&api, &lab, started, "rolling update v1 -> v2 behind the Service", &v2).await;
    let converged = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    poller.abort();
    let answers = answers.lock().map(|answers| answers.clone()).unwrap_or_default();
    let failures: Vec<&String> = answers.iter().filter_map(|(_, outcome)| outcome.as_ref().err()).collect();
    let during = answers.iter().filter(|(at, _)| *at < converged).count();
    println!(
        "{} requests through the node port, {during} during the rollout, {} failed",
        answers.len(),
        failures.len()
    );
    assert!(during >= MIN_REQUESTS_PER_ROLLOUT, "only {during} requests during the rollout: the client stalled");
    assert!(failures.is_empty(), "requests failed during the rollout: {:#?}", &failures[..failures.len().min(20)]);
    // Once the rules have caught up (the old pods are gone), only v2 answers.
    let late: Vec<&String> = answers
        .iter()
        .filter(|(at, _)| *at > converged + Duration::from_secs(2))
        .filter_map(|(_, outcome)| outcome.as_ref().ok())
        .collect();
    assert!(!late.is_empty() && late.iter().all(|page| *page == "v2"), "after the rollout: {late:?}");
}

/// Fewer answered requests than this while a rollout of 3 pods runs (about 3 s) means the
/// client was not polling continuously (it answers about 80 a second when the machine is idle).
const MIN_REQUESTS_PER_ROLLOUT: usize = 50;

/// The demo back on page v1 after a rollout: 3 replicas, two ReplicaSets.
fn v1_with_sets(replica_sets: usize) -> Want<'static> {
    Want { replicas: 3, page: "v1", nodes: &WORKERS, replica_sets }
}

/// The demo of page `page` with `replicas`, rolled out one pod at a time: each new pod must
/// have been Ready for `minReadySeconds` before the next step, so a rollout of 4 takes several
/// seconds, long enough to crash components in the middle of it.
fn slow_rolling_demo(replicas: i64, min_ready_seconds: i64) -> Value {
    let mut demo = demo_deployment(replicas);
    demo["spec"]["minReadySeconds"] = json!(min_ready_seconds);
    demo
}

/// The control plane on the master, in the order it starts.
const COMPONENTS: [&str; 3] = ["apiserver", "controller-manager", "scheduler"];

#[tokio::test]
async fn kill_9_of_apiserver_controller_manager_and_scheduler_during_a_rollout_then_it_converges() {
    let test = Instant::now();
    let lab = Lab::start(LabOptions::default()).await.expect("lab up");
    let api = lab.api();

    let started = Instant::now();
    api.create(DEPLOYMENTS, &slow_rolling_demo(4, 2)).await;
    let v1 = Want { replicas: 4, page: "v1", nodes: &WORKERS, replica_sets: 1 };
    settle(&api, &lab, started, "deploy 4 replicas of v1", &v1).await;

    let started = Instant::now();
    set_page(&api, "v2").await;
    // Twice in the middle of the rollout: as soon as its first v2 pod exists, and again once
    // two v2 pods are Ready while v1 pods still run.
    let mut killed = Instant::now();
    for (round, ready_v2) in [(1, 0), (2, 2)] {
        let (new, ready, old) = eventually(ROLLOUT_TIMEOUT, &format!("{ready_v2} Ready v2 pods"), || {
            let api = api.clone();
            async move {
                let live = live_pods(&api, NS, DEMO_SELECTOR).await;
                let new: Vec<&Value> = live.iter().filter(|pod| page_of(&pod["spec"]) == Some("v2")).collect();
                let ready = new.iter().filter(|pod| is_ready(pod)).count();
                (!new.is_empty() && ready >= ready_v2).then_some((new.len(), ready, live.len() - new.len()))
            }
        })
        .await;
        assert!(old >= 1, "the rollout finished before kill {round} ({new} v2 pods, {old} v1)");
        let pids: Vec<u32> = COMPONENTS.iter().map(|component| lab.pid("master", component).expect("pid")).collect();
        for component in COMPONENTS {
            lab.kill("master", component).expect("kill -9");
        }
        killed = Instant::now();
        println!(
            "kill {round}: apiserver, controller-manager and scheduler killed (kill -9) {:.1}s into the rollout, \
             with {new} v2 pods ({ready} Ready) and {old} v1 pods live",
            started.elapsed().as_secs_f64()
        );
        // Started again with the same flags, the apiserver first (the others need it to start).
        for component in COMPONENTS {
            lab.restart("master", component).await.unwrap_or_else(|error| panic!("restart {component}: {error:#}"));
        }
        println!("kill {round}: control plane back {:.1}s later", killed.elapsed().as_secs_f64());
        for (component, old_pid) in COMPONENTS.iter().zip(&pids) {
            assert_ne!(lab.pid("master", component).expect("pid"), *old_pid, "{component} was not restarted");
        }
    }

    // The rollout resumes and completes: exactly 4 Ready v2 pods, the v1 ReplicaSet at 0 with no
    // pods, nothing left over.
    let v2 = Want { replicas: 4, page: "v2", nodes: &WORKERS, replica_sets: 2 };
    let done = settle(&api, &lab, killed, "rollout resumed after the second kill -9 of the control plane", &v2).await;
    assert_spread(&done, "after the rollout");
    assert_pod_addresses(&lab, &done);
    println!(
        "rollout took {:.1}s in all; test took {:.1}s",
        started.elapsed().as_secs_f64(),
        test.elapsed().as_secs_f64()
    );
}

/// Name, uid and resourceVersion of every Deployment, ReplicaSet and pod of the default
/// namespace and every Node, keyed `<resource>/<name>`; and the highest list resourceVersion.
async fn objects(api: &Api) -> (BTreeMap<String, (String, String)>, u64) {
    let mut objects = BTreeMap::new();
    let mut newest = 0;
    for (resource, path) in [
        ("deployments", format!("/apis/apps/v1/namespaces/{NS}/deployments")),
        ("replicasets", format!("/apis/apps/v1/namespaces/{NS}/replicasets")),
        ("pods", format!("/api/v1/namespaces/{NS}/pods")),
        ("nodes", "/api/v1/nodes".to_string()),
    ] {
        let list = api.get_ok(&path).await;
        let version = list["metadata"]["resourceVersion"].as_str().and_then(|rv| rv.parse().ok());
        newest = newest.max(version.expect("a list resourceVersion"));
        for item in list["items"].as_array().cloned().unwrap_or_default() {
            let field = |name: &str| item["metadata"][name].as_str().unwrap_or_default().to_string();
            objects.insert(format!("{resource}/{}", name_of(&item)), (field("uid"), field("resourceVersion")));
        }
    }
    (objects, newest)
}

/// Checks nothing was lost or changed: the same objects with the same uids and
/// resourceVersions. A Node may have moved on (its kubelet reports its status every minute,
/// which may fall between the two lists), but only forward.
fn assert_same_objects(before: &BTreeMap<String, (String, String)>, after: &BTreeMap<String, (String, String)>) {
    let names = |map: &BTreeMap<String, (String, String)>| map.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(after), names(before), "objects before and after");
    for (key, (uid, version)) in before {
        let (uid_after, version_after) = &after[key];
        assert_eq!(uid_after, uid, "uid of {key}");
        if key.starts_with("nodes/") && version_after != version {
            let number = |rv: &str| rv.parse::<u64>().expect("numeric resourceVersion");
            assert!(number(version_after) > number(version), "{key}: resourceVersion {version} -> {version_after}");
            println!("{key}: its kubelet reported status meanwhile (resourceVersion {version} -> {version_after})");
        } else {
            assert_eq!(version_after, version, "resourceVersion of {key}");
        }
    }
}

/// Waits until the apiserver's `/readyz` answers `ready` (200) or not (503).
async fn wait_readyz(lab: &Lab, ready: bool, what: &str) {
    let url = format!("{}/readyz", lab.url());
    let http = lab.anonymous_client();
    eventually(Duration::from_secs(30), what, || {
        let (http, url) = (&http, &url);
        async move {
            let status = http.get(url).send().await.ok()?.status();
            (status.is_success() == ready).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn etcd_stopped_and_killed_then_restarted_loses_nothing_and_the_cluster_keeps_working() {
    let test = Instant::now();
    // One etcd, the only copy of the state (with three members, one down changes nothing:
    // e2e_chaos kills members of the HA control plane).
    let lab = Lab::start(LabOptions { ha: false, ..LabOptions::default() }).await.expect("lab up");
    let api = lab.api();

    let started = Instant::now();
    api.create(DEPLOYMENTS, &demo_deployment(3)).await;
    let three = Want { replicas: 3, page: "v1", nodes: &WORKERS, replica_sets: 1 };
    let deployed = settle(&api, &lab, started, "deploy 3 replicas", &three).await;

    // Once stopped the polite way (SIGTERM), once crashed (SIGKILL); each time started again on
    // the same data directory.
    for crash in [false, true] {
        let how = if crash { "killed (SIGKILL)" } else { "stopped (SIGTERM)" };
        let (before, newest_before) = objects(&api).await;
        if crash {
            lab.kill("master", "etcd").expect("kill -9 etcd");
        } else {
            lab.stop("master", "etcd", Duration::from_secs(20)).await.expect("stop etcd");
        }
        let down = Instant::now();
        // The apiserver notices: it is not ready without etcd.
        wait_readyz(&lab, false, "the apiserver to report not ready without etcd").await;
        lab.restart("master", "etcd").await.expect("restart etcd");
        wait_readyz(&lab, true, "the apiserver to be ready again").await;
        println!("etcd {how}: the apiserver was ready again {:.1}s later", down.elapsed().as_secs_f64());

        let (after, newest_after) = objects(&api).await;
        assert!(newest_after >= newest_before, "etcd's revision went back: {newest_before} -> {newest_after}");
        assert_same_objects(&before, &after);
        println!("etcd {how}: the same {} objects (uids, resourceVersions)", before.len());
    }

    // The cluster keeps working: the controller-manager, the scheduler and both kubelets had their
    // watches broken twice; a scale-up goes through all of them.
    let started = Instant::now();
    scale_demo(&api, 5).await;
    let five = Want { replicas: 5, page: "v1", nodes: &WORKERS, replica_sets: 1 };
    let scaled = settle(&api, &lab, started, "scale 3 -> 5 after the etcd restarts", &five).await;
    assert_spread(&scaled, "5 replicas");
    let names: Vec<&str> = scaled.iter().map(name_of).collect();
    for pod in &deployed {
        assert!(names.contains(&name_of(pod)), "{} did not survive the etcd restarts: {names:?}", name_of(pod));
    }
    // And a new template rolls out.
    let started = Instant::now();
    set_page(&api, "v2").await;
    let v2 = Want { replicas: 5, page: "v2", nodes: &WORKERS, replica_sets: 2 };
    settle(&api, &lab, started, "rolling update to v2 after the etcd restarts", &v2).await;
    println!("test took {:.1}s", test.elapsed().as_secs_f64());
}

#[tokio::test]
async fn the_lab_speaks_tls_and_every_identity_stays_in_its_lane() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab up");
    let api = lab.api();
    let master = lab.host_ip("master");

    // Plain HTTP gets nothing; a stranger with no certificate is anonymous and may not list.
    let plain = reqwest::Client::builder().timeout(Duration::from_secs(5)).no_proxy().build().expect("client");
    let answer = plain.get(format!("http://{master}:6443/api/v1/pods")).send().await;
    assert!(answer.is_err() || answer.is_ok_and(|r| !r.status().is_success()), "plain HTTP was served");
    let stranger = lab.anonymous_client().get(format!("{}/api/v1/pods", lab.url())).send().await.expect("anonymous");
    assert_eq!(stranger.status(), reqwest::StatusCode::FORBIDDEN);

    // worker1's kubelet certificate reads its own Node and may not touch worker2's.
    let worker1 = Api::with_client(
        &lab.url(),
        rkube_tests::certs::kubeconfig_client(&lab.pki().join("kubelet-worker1.kubeconfig")).expect("worker1"),
    );
    assert_eq!(worker1.get("/api/v1/nodes/worker1").await.0, reqwest::StatusCode::OK);
    let forged = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Forged"}]}});
    let (status, body) =
        worker1.patch("/api/v1/nodes/worker2/status", "application/strategic-merge-patch+json", &forged).await;
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{body}");

    // A pod's own identity, from its own network namespace, over TLS to the master.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "whoami", "namespace": NS},
        "spec": {"nodeName": "worker1", "terminationGracePeriodSeconds": 1, "containers": [{"name": "main",
            "image": TEST_IMAGE, "command": ["sh", "-c",
                "echo token=$(cat /var/run/secrets/kubernetes.io/serviceaccount/token); sleep 3600"]}]}});
    api.create(&format!("/api/v1/namespaces/{NS}/pods"), &pod).await;
    // The log comes through the apiserver, which reaches the kubelet over TLS with its
    // certificate (the kubelet asks the apiserver whether that certificate may).
    let token = eventually(ROLLOUT_TIMEOUT, "the pod's token in its log", || {
        let api = &api;
        async move {
            let reply =
                api.send(reqwest::Method::GET, &format!("/api/v1/namespaces/{NS}/pods/whoami/log"), &[], None).await;
            let text = reply.body.as_str()?.to_string();
            text.lines().find_map(|l| l.strip_prefix("token=")).filter(|t| !t.is_empty()).map(String::from)
        }
    })
    .await;
    let uid = api.get_ok(&format!("/api/v1/namespaces/{NS}/pods/whoami")).await["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    let ca = lab.pki().join("ca.crt");
    let review = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;
    let url = format!("{}/apis/authentication.k8s.io/v1/selfsubjectreviews", lab.url());
    let header = format!("Authorization: Bearer {token}");
    let args = [
        "-sS",
        "-m",
        "5",
        "--cacert",
        &ca.display().to_string(),
        "-H",
        &header,
        "-H",
        "Content-Type: application/json",
        "-d",
        review,
        &url,
    ]
    .map(String::from);
    let reply = lab.curl_from_pod(&uid, &args).await.expect("curl from the pod");
    let reply: Value = serde_json::from_str(&reply).unwrap_or_else(|_| panic!("not JSON: {reply}"));
    assert_eq!(reply["status"]["userInfo"]["username"], "system:serviceaccount:default:default", "{reply}");
}

#[tokio::test]
async fn an_indexed_job_runs_to_completion_across_both_workers() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab up");
    let api = lab.api();
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "squares", "namespace": NS},
        "spec": {"completions": 4, "parallelism": 4, "completionMode": "Indexed", "template": {"spec": {
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            // Spread over the workers: no two pods of the Job on one node while both have room.
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"batch.kubernetes.io/job-name": "squares"}}}],
            "containers": [{"name": "square", "image": TEST_IMAGE,
                "command": ["sh", "-c", "echo \"$JOB_COMPLETION_INDEX squared is $((JOB_COMPLETION_INDEX * JOB_COMPLETION_INDEX))\""]}]}}}});
    api.create(&format!("/apis/batch/v1/namespaces/{NS}/jobs"), &job).await;
    let started = Instant::now();
    let done = eventually(Duration::from_secs(90), "job squares Complete", || async {
        let job = api.get_ok(&format!("/apis/batch/v1/namespaces/{NS}/jobs/squares")).await;
        let conditions = job["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions.iter().any(|c| c["type"] == "Complete" && c["status"] == "True").then_some(job)
    })
    .await;
    println!("Indexed Job of 4 completed in {:.1}s", started.elapsed().as_secs_f64());
    assert_eq!(done["status"]["completedIndexes"], "0-3", "{done}");
    assert_eq!(done["status"]["succeeded"], 4, "{done}");
    let all = pods(&api, NS, "batch.kubernetes.io/job-name=squares").await;
    assert_eq!(all.len(), 4, "one pod per index: {all:?}");
    let nodes: std::collections::BTreeSet<&str> =
        all.iter().filter_map(|pod| pod["spec"]["nodeName"].as_str()).collect();
    assert_eq!(nodes.len(), 2, "pods on both workers: {nodes:?}");
    for pod in &all {
        let index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"].as_str().expect("index");
        let name = pod["metadata"]["name"].as_str().expect("name");
        let logs = lab.rkubectl(&["logs", name]).await.expect("logs");
        let n: i64 = index.parse().expect("a number");
        assert_eq!(logs.trim(), format!("{index} squared is {}", n * n), "{name}");
    }
    // kubectl picks one pod of the Job for `logs job/<name>`.
    let output = std::process::Command::new(rkube_tests::venv_bin("kubectl"))
        .args(["logs", "job/squares"])
        .env("KUBECONFIG", lab.kubeconfig())
        .output()
        .expect("kubectl runs");
    let logs = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && logs.contains("squared is"),
        "{logs}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_daemon_set_runs_on_every_worker_follows_one_that_joins_and_a_cron_job_fires_each_minute() {
    let lab = Lab::start(LabOptions { podgc_quarantine: "2s".into(), ..LabOptions::default() }).await.expect("lab up");
    let api = lab.api();
    let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "node-agent", "namespace": NS},
        "spec": {"selector": {"matchLabels": {"app": "node-agent"}}, "template": {"metadata": {"labels": {"app": "node-agent"}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "agent", "image": TEST_IMAGE,
                "command": ["sh", "-c", "echo agent on $NODE; exec sleep 3600"],
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}]}}}});
    api.create(&format!("/apis/apps/v1/namespaces/{NS}/daemonsets"), &ds).await;
    let cron = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "minutely", "namespace": NS},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"metadata": {"labels": {"app": "minutely"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "tick", "image": TEST_IMAGE, "command": ["date"]}]}}}}}});
    api.create(&format!("/apis/batch/v1/namespaces/{NS}/cronjobs"), &cron).await;

    let started = Instant::now();
    let agents = eventually(Duration::from_secs(60), "a Ready node-agent pod on each worker", || async {
        let live = live_pods(&api, NS, "app=node-agent").await;
        let nodes: std::collections::BTreeSet<&str> =
            live.iter().filter(|p| is_ready(p)).filter_map(|p| p["spec"]["nodeName"].as_str()).collect();
        (live.len() == WORKERS.len() && nodes.len() == WORKERS.len()).then_some(live.clone())
    })
    .await;
    println!("DaemonSet on both workers in {:.1}s", started.elapsed().as_secs_f64());
    for pod in &agents {
        let (name, node) =
            (pod["metadata"]["name"].as_str().expect("name"), pod["spec"]["nodeName"].as_str().expect("node"));
        let logs = lab.rkubectl(&["logs", name]).await.expect("logs");
        assert_eq!(logs.trim(), format!("agent on {node}"), "{name}");
    }

    // worker2 leaves: its kubelet stops and its Node is deleted, and the pod GC takes the agent
    // still bound to it. Then worker2 joins again (its kubelet registers a new Node): the
    // DaemonSet gives it an agent of its own.
    let old_uid = agents
        .iter()
        .find(|p| p["spec"]["nodeName"] == "worker2")
        .map(|p| p["metadata"]["uid"].clone())
        .expect("an agent on worker2");
    lab.stop("worker2", "kubelet", Duration::from_secs(30)).await.expect("stop worker2's kubelet");
    let (code, body) = api.delete("/api/v1/nodes/worker2").await;
    assert!(code.is_success(), "{body}");
    eventually(Duration::from_secs(60), "worker2's agent collected", || async {
        let live = live_pods(&api, NS, "app=node-agent").await;
        live.iter().all(|p| p["metadata"]["uid"] != old_uid).then_some(())
    })
    .await;
    lab.restart_kubelet("worker2").await.expect("worker2's kubelet starts again");
    let joined = Instant::now();
    eventually(Duration::from_secs(90), "a new Ready agent on worker2", || async {
        let live = live_pods(&api, NS, "app=node-agent").await;
        live.iter()
            .any(|p| p["spec"]["nodeName"] == "worker2" && p["metadata"]["uid"] != old_uid && is_ready(p))
            .then_some(())
    })
    .await;
    println!("worker2 joined again and runs an agent after {:.1}s", joined.elapsed().as_secs_f64());

    // The CronJob fires at the next minute boundary: its Job's pod runs `date` to completion.
    let done = eventually(Duration::from_secs(90), "a Job of the CronJob Complete", || async {
        let list = api.get_ok(&format!("/apis/batch/v1/namespaces/{NS}/jobs")).await;
        let jobs = list["items"].as_array().cloned().unwrap_or_default();
        jobs.into_iter().find(|job| {
            job["metadata"]["ownerReferences"][0]["name"] == "minutely"
                && job["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Complete" && c["status"] == "True"))
        })
    })
    .await;
    println!("CronJob fired: {} complete after {:.1}s", done["metadata"]["name"], started.elapsed().as_secs_f64());
    let cronjob = api.get_ok(&format!("/apis/batch/v1/namespaces/{NS}/cronjobs/minutely")).await;
    assert!(cronjob["status"]["lastScheduleTime"].is_string(), "{cronjob}");
}

#[tokio::test]
async fn a_stateful_set_comes_up_in_order_with_names_its_headless_service_resolves_and_keeps_its_data() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab up");
    let api = lab.api();
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": NS},
        "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"name": "http", "port": 8080}]}});
    api.create(&format!("/api/v1/namespaces/{NS}/services"), &service).await;
    // Local-path volumes under a directory of this test's own (the lab's nodes share this
    // machine's filesystem, each volume in its own directory).
    let volumes = tempfile::tempdir().expect("volume root");
    api.create(
        "/apis/storage.k8s.io/v1/storageclasses",
        &json!({"apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass", "metadata": {"name": "lab-local"}, "provisioner": "rkube.io/local-path",
        "volumeBindingMode": "WaitForFirstConsumer", "parameters": {"path": volumes.path()}}),
    )
    .await;
    // Each pod serves its hostname and the time its volume was first written.
    let script = "[ -f /data/born ] || date +%s%N > /data/born; mkdir -p /www && { hostname; cat /data/born; } > /www/index.html && exec httpd -f -p 8080 -h /www";
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": NS},
        "spec": {"serviceName": "db", "replicas": 3, "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"terminationGracePeriodSeconds": 1,
                "containers": [{"name": "db", "image": TEST_IMAGE, "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"storageClassName": "lab-local",
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}}}]}});
    api.create(&format!("/apis/apps/v1/namespaces/{NS}/statefulsets"), &sts).await;
    let started = Instant::now();
    let ready = eventually(Duration::from_secs(90), "db-0, db-1, db-2 Ready", || async {
        let pods = live_pods(&api, NS, "app=db").await;
        let mut names: Vec<&str> =
            pods.iter().filter(|p| is_ready(p)).filter_map(|p| p["metadata"]["name"].as_str()).collect();
        names.sort_unstable();
        (names == ["db-0", "db-1", "db-2"]).then(|| pods.clone())
    })
    .await;
    println!("StatefulSet of 3 Ready in {:.1}s", started.elapsed().as_secs_f64());
    // Ordered: each pod was created after the one before it was Ready.
    let created = |name: &str| {
        ready
            .iter()
            .find(|p| p["metadata"]["name"] == name)
            .and_then(|p| p["metadata"]["creationTimestamp"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert!(created("db-0") <= created("db-1") && created("db-1") <= created("db-2"), "{ready:?}");

    // Each pod by its own name, through the cluster DNS, from another pod: db-1 asks for db-2.
    let name = format!("db-2.db.{NS}.svc.cluster.local");
    let answer = eventually(Duration::from_secs(30), &format!("{name} from db-1"), || async {
        lab.rkubectl(&["exec", "db-1", "--", "wget", "-q", "-O-", &format!("http://{name}:8080/")]).await.ok()
    })
    .await;
    let (host, born) = answer.trim().split_once('\n').expect("hostname and birth time");
    assert_eq!(host, "db-2");
    let born = born.to_string();
    let node_of = |pods: &[Value]| {
        pods.iter().find(|p| p["metadata"]["name"] == "db-2").map(|p| p["spec"]["nodeName"].clone()).unwrap_or_default()
    };
    let node = node_of(&ready);

    // A deleted pod comes back under its name, on the node of its volume, with its data, and
    // answers by its name again.
    lab.rkubectl(&["delete", "pod", "db-2"]).await.expect("delete db-2");
    let old_uid = ready
        .iter()
        .find(|p| p["metadata"]["name"] == "db-2")
        .map(|p| p["metadata"]["uid"].clone())
        .unwrap_or_default();
    eventually(Duration::from_secs(60), "db-2 back and Ready", || async {
        let pod = api.get(&format!("/api/v1/namespaces/{NS}/pods/db-2")).await.1;
        (pod["metadata"]["uid"] != old_uid && pod["metadata"]["deletionTimestamp"].is_null() && is_ready(&pod))
            .then_some(())
    })
    .await;
    let answer = eventually(Duration::from_secs(30), &format!("{name} again"), || async {
        lab.rkubectl(&["exec", "db-0", "--", "wget", "-q", "-O-", &format!("http://{name}:8080/")]).await.ok()
    })
    .await;
    assert_eq!(answer.trim(), format!("db-2\n{born}"), "the same volume, not a new one");
    assert_eq!(node_of(&live_pods(&api, NS, "app=db").await), node, "back on the node that holds its data");
    let claim = api.get_ok(&format!("/api/v1/namespaces/{NS}/persistentvolumeclaims/data-db-2")).await;
    assert_eq!(claim["status"]["phase"], "Bound", "{claim}");
}

/// Manifests written the way the Kubernetes documentation's examples are (kubernetes/website
/// `content/en/examples`: `controllers/job.yaml`, `daemonset.yaml`, `replication.yaml`,
/// `statefulset.yaml`, `application/job/cronjob.yaml`, `pods/storage/pv-*.yaml`), with this
/// lab's busybox image in place of perl, nginx and fluentd. `{IMAGE}` and `{HOST_DIR}` are
/// filled in by the test.
const DOCS_SHAPED_MANIFESTS: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: pi
spec:
  template:
    spec:
      containers:
      - name: pi
        image: {IMAGE}
        command: ["awk", "BEGIN { s = 0; for (k = 0; k < 100000; k++) s += (k % 2 ? -4 : 4) / (2 * k + 1); printf \"%.3f\\n\", s }"]
      restartPolicy: Never
  backoffLimit: 4
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: hello
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: hello
            image: {IMAGE}
            imagePullPolicy: IfNotPresent
            command: ["/bin/sh", "-c", "date; echo Hello from the Kubernetes cluster"]
          restartPolicy: OnFailure
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: log-agent
  namespace: kube-system
  labels:
    k8s-app: log-agent
spec:
  selector:
    matchLabels:
      name: log-agent
  template:
    metadata:
      labels:
        name: log-agent
    spec:
      tolerations:
      - key: node-role.kubernetes.io/control-plane
        operator: Exists
        effect: NoSchedule
      containers:
      - name: log-agent
        image: {IMAGE}
        command: ["sh", "-c", "ls /var/log > /dev/null && exec sleep 3600"]
        resources:
          limits:
            memory: 200Mi
          requests:
            cpu: 100m
            memory: 200Mi
        volumeMounts:
        - name: varlog
          mountPath: /var/log
          readOnly: true
      terminationGracePeriodSeconds: 1
      volumes:
      - name: varlog
        hostPath:
          path: /var/log
---
apiVersion: v1
kind: ReplicationController
metadata:
  name: nginx
spec:
  replicas: 3
  selector:
    app: nginx
  template:
    metadata:
      name: nginx
      labels:
        app: nginx
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: nginx
        image: {IMAGE}
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"]
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: nginx-sts
  labels:
    app: nginx-sts
spec:
  ports:
  - port: 80
    name: web
  clusterIP: None
  selector:
    app: nginx-sts
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  selector:
    matchLabels:
      app: nginx-sts
  serviceName: "nginx-sts"
  replicas: 2
  minReadySeconds: 1
  template:
    metadata:
      labels:
        app: nginx-sts
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: nginx
        image: {IMAGE}
        command: ["sh", "-c", "hostname > /usr/share/nginx/html/index.html && exec httpd -f -p 80 -h /usr/share/nginx/html"]
        ports:
        - containerPort: 80
          name: web
        volumeMounts:
        - name: www
          mountPath: /usr/share/nginx/html
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: [ "ReadWriteOnce" ]
      resources:
        requests:
          storage: 1Gi
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: task-pv-volume
  labels:
    type: local
spec:
  storageClassName: manual
  capacity:
    storage: 10Gi
  accessModes:
    - ReadWriteOnce
  hostPath:
    path: "{HOST_DIR}"
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: task-pv-claim
spec:
  storageClassName: manual
  accessModes:
    - ReadWriteOnce
  resources:
    requests:
      storage: 3Gi
---
apiVersion: v1
kind: Pod
metadata:
  name: task-pv-pod
spec:
  volumes:
    - name: task-pv-storage
      persistentVolumeClaim:
        claimName: task-pv-claim
  containers:
    - name: task-pv-container
      image: {IMAGE}
      command: ["httpd", "-f", "-p", "80", "-h", "/usr/share/nginx/html"]
      ports:
        - containerPort: 80
          name: "http-server"
      volumeMounts:
        - mountPath: "/usr/share/nginx/html"
          name: task-pv-storage
"#;

#[tokio::test]
async fn manifests_shaped_like_the_kubernetes_docs_examples_apply_and_act() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab up");
    let api = lab.api();
    let host_dir = tempfile::tempdir().expect("the PersistentVolume's host directory");
    std::fs::write(host_dir.path().join("index.html"), "Hello from Kubernetes storage\n").expect("index.html");
    let manifest = DOCS_SHAPED_MANIFESTS
        .replace("{IMAGE}", TEST_IMAGE)
        .replace("{HOST_DIR}", host_dir.path().to_str().expect("UTF-8 path"));
    let file = host_dir.path().join("examples.yaml");
    std::fs::write(&file, manifest).expect("manifest");
    let kubectl = |args: &[&str]| {
        let output = std::process::Command::new(rkube_tests::venv_bin("kubectl"))
            .args(args)
            .env("KUBECONFIG", lab.kubeconfig())
            .output()
            .expect("kubectl runs");
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "kubectl {args:?}: {out}{}", String::from_utf8_lossy(&output.stderr));
        out
    };
    let applied = kubectl(&["apply", "-f", file.to_str().expect("UTF-8 path")]);
    assert_eq!(applied.lines().filter(|l| l.ends_with(" created")).count(), 9, "{applied}");
    let started = Instant::now();

    // The Job computes and completes; its logs hold the answer.
    eventually(Duration::from_secs(90), "job pi Complete", || async {
        let job = api.get_ok(&format!("/apis/batch/v1/namespaces/{NS}/jobs/pi")).await;
        let conditions = job["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions.iter().any(|c| c["type"] == "Complete" && c["status"] == "True").then_some(())
    })
    .await;
    assert_eq!(kubectl(&["logs", "job/pi"]).trim(), "3.142");
    // The DaemonSet runs on each worker, in kube-system.
    eventually(Duration::from_secs(90), "log-agent on every worker", || async {
        let pods = live_pods(&api, "kube-system", "name=log-agent").await;
        let nodes: std::collections::BTreeSet<String> = pods
            .iter()
            .filter(|p| is_ready(p))
            .filter_map(|p| p["spec"]["nodeName"].as_str().map(String::from))
            .collect();
        (nodes.len() == WORKERS.len()).then_some(())
    })
    .await;
    // The ReplicationController keeps three replicas.
    eventually(Duration::from_secs(90), "3 nginx replicas Ready", || async {
        let rc = api.get_ok(&format!("/api/v1/namespaces/{NS}/replicationcontrollers/nginx")).await;
        (rc["status"]["readyReplicas"] == 3).then_some(())
    })
    .await;
    // The StatefulSet's pods each get a claim of the default class, and serve from it.
    eventually(Duration::from_secs(90), "web-0 and web-1 Ready", || async {
        let set = api.get_ok(&format!("/apis/apps/v1/namespaces/{NS}/statefulsets/web")).await;
        (set["status"]["availableReplicas"] == 2).then_some(())
    })
    .await;
    let claims = kubectl(&["get", "pvc", "www-web-0", "www-web-1"]);
    assert_eq!(claims.lines().filter(|l| l.contains("Bound") && l.contains("local-path")).count(), 2, "{claims}");
    let page = lab.rkubectl(&["exec", "web-1", "--", "cat", "/usr/share/nginx/html/index.html"]).await.expect("exec");
    assert_eq!(page.trim(), "web-1");
    // The hand-made volume is bound to the claim, and the pod serves the file put there.
    eventually(Duration::from_secs(90), "task-pv-pod Running", || async {
        let pod = api.get_ok(&format!("/api/v1/namespaces/{NS}/pods/task-pv-pod")).await;
        (pod["status"]["phase"] == "Running").then_some(())
    })
    .await;
    let volumes = kubectl(&["get", "pv", "task-pv-volume"]);
    assert!(volumes.contains("Bound") && volumes.contains("default/task-pv-claim"), "{volumes}");
    let page =
        lab.rkubectl(&["exec", "task-pv-pod", "--", "cat", "/usr/share/nginx/html/index.html"]).await.expect("exec");
    assert_eq!(page.trim(), "Hello from Kubernetes storage");
    println!("documentation-shaped workloads acting after {:.1}s", started.elapsed().as_secs_f64());
    let cronjob = kubectl(&["get", "cronjob", "hello"]);
    assert!(cronjob.contains("* * * * *"), "{cronjob}");
}
