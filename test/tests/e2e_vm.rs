//! The lab on real virtual machines (`hack/vm-lab-up.sh`): a master and two workers booted with
//! QEMU/KVM from a Debian image built with mmdebstrap, provisioned through cloud-init by the same
//! `lima/vm-provision.sh` the Lima templates run. Skipped, loudly, where `/dev/kvm` cannot be
//! used.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rkube_tests::Api;
use rkube_tests::controllers::{is_ready, live_pods};
use rkube_tests::eventually;
use rkube_tests::lab::node_ready;
use rkube_tests::vm::{Accel, VmLab};
use serde_json::{Value, json};

const WORKERS: [&str; 2] = ["worker1", "worker2"];
/// How long anything may take to converge in the VMs with KVM (1 vCPU each, on a 2-core
/// machine); ten times slower emulation (`RKUBE_VM_TEST=tcg`) gets four times as long.
const CONVERGE_KVM: Duration = Duration::from_secs(180);

/// The demo Deployment of manifests/demo/deployment.yaml with `replicas`.
fn demo(replicas: i64) -> Value {
    let path = rkube_tests::repo_root().join("manifests/demo/deployment.yaml");
    let text = std::fs::read_to_string(&path).expect("manifests/demo/deployment.yaml readable");
    let mut demo: Value = serde_yaml_ng::from_str(&text).expect("manifests/demo/deployment.yaml is YAML");
    demo["spec"]["replicas"] = json!(replicas);
    demo
}

/// The demo's pods once exactly `count` are Ready with an IP, on nodes in `nodes`; prints how
/// long that took since `since`.
/// The convergence limit for `lab`.
fn converge(lab: &VmLab) -> Duration {
    if lab.accel() == Accel::Tcg { CONVERGE_KVM * 4 } else { CONVERGE_KVM }
}

async fn ready_pods(api: &Api, lab: &VmLab, count: usize, nodes: &[&str], since: Instant, what: &str) -> Vec<Value> {
    let limit = converge(lab);
    let deadline = Instant::now() + limit;
    loop {
        let live = live_pods(api, "default", "app=demo").await;
        let settled = live.len() == count
            && live.iter().all(|pod| {
                is_ready(pod)
                    && pod["status"]["podIP"].is_string()
                    && nodes.contains(&pod["spec"]["nodeName"].as_str().unwrap_or_default())
            });
        if settled {
            println!("{what}: converged in {:.1}s", since.elapsed().as_secs_f64());
            return live;
        }
        if Instant::now() > deadline {
            let summary: Vec<String> = live
                .iter()
                .map(|p| format!("{} {} ready={}", p["metadata"]["name"], p["spec"]["nodeName"], is_ready(p)))
                .collect();
            panic!(
                "{what}: not {count} Ready pods on {nodes:?} after {limit:?}: {summary:#?}\nmaster console:\n{}",
                lab.console_tail("master", 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until Node `name`'s Ready condition is `status` (and, for `True`, the node lifecycle
/// controller has taken its not-ready/unreachable taints off, so pods may land there again);
/// prints how long since `since`.
async fn node_becomes(api: &Api, lab: &VmLab, name: &str, status: &str, since: Instant) {
    eventually(converge(lab), &format!("{name} Ready={status}"), || async {
        let (code, node) = api.get(&format!("/api/v1/nodes/{name}")).await;
        let untainted = node["spec"]["taints"].as_array().is_none_or(|taints| {
            !taints.iter().any(|t| t["key"].as_str().is_some_and(|key| key.starts_with("node.kubernetes.io/")))
        });
        (code.is_success() && node_ready(&node) == Some(status) && (status != "True" || untainted)).then_some(())
    })
    .await;
    println!("{name} Ready={status} after {:.1}s", since.elapsed().as_secs_f64());
}

/// The page a demo pod serves at `ip`, fetched from this machine (across the VM network).
async fn page(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let reply = http.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
    let body = reply.text().await.map_err(|e| format!("{url}: {e}"))?;
    body.starts_with("demo ").then(|| body.trim().to_string()).ok_or_else(|| format!("{url}: {body:?}"))
}

#[tokio::test]
async fn the_demo_spreads_over_two_vms_survives_a_worker_powered_off_and_a_master_reboot() {
    let test = Instant::now();
    let settings = "NODE_MONITOR_GRACE=30s POD_EVICTION_TIMEOUT=5s NODE_EVICTION_RATE=100 PODGC_QUARANTINE=10s";
    let Some(lab) = VmLab::start(settings).await.expect("the VM lab boots") else { return };
    println!("VMs under {:?}", lab.accel());
    println!("VM lab up in {:.1}s", test.elapsed().as_secs_f64());
    let api = lab.api();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).no_proxy().build().expect("client");

    // The demo over both workers, each pod answering from this machine at its pod IP, and the
    // Service's node port of each worker reaching the pods of both.
    let started = Instant::now();
    api.create("/apis/apps/v1/namespaces/default/deployments", &demo(4)).await;
    let pods = ready_pods(&api, &lab, 4, &WORKERS, started, "4 demo pods over both workers").await;
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for pod in &pods {
        *per_node.entry(pod["spec"]["nodeName"].as_str().unwrap_or_default().into()).or_default() += 1;
        let url = format!("http://{}:8080/", pod["status"]["podIP"].as_str().unwrap_or_default());
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let answer = page(&http, &url).await.expect("a pod answers across the VM network");
        assert!(answer.ends_with(name), "{url} answered {answer:?}, not {name}");
    }
    assert_eq!(per_node.len(), 2, "the pods are not on both workers: {per_node:?}");
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "demo", "namespace": "default"},
        "spec": {"type": "NodePort", "selector": {"app": "demo"}, "ports": [{"port": 80, "targetPort": 8080}]}});
    let service = api.create("/api/v1/namespaces/default/services", &service).await;
    let node_port = service["spec"]["ports"][0]["nodePort"].as_u64().expect("a node port");
    for worker in WORKERS {
        let url = format!("http://{}:{node_port}/", lab.ip(worker));
        let names = eventually(Duration::from_secs(60), &format!("{url} to reach pods on both workers"), || {
            let (http, url, pods) = (&http, &url, &pods);
            async move {
                let mut nodes = std::collections::BTreeSet::new();
                for _ in 0..20 {
                    let answer = page(http, url).await.ok()?;
                    let pod = pods.iter().find(|p| answer.ends_with(p["metadata"]["name"].as_str().unwrap_or("?")))?;
                    nodes.insert(pod["spec"]["nodeName"].as_str().unwrap_or_default().to_string());
                }
                (nodes.len() == 2).then_some(nodes)
            }
        })
        .await;
        println!("{url} reaches pods on {names:?}");
    }

    // worker2's plug is pulled: the Node goes Unknown, its pods are replaced on worker1.
    let off = Instant::now();
    lab.run(&["poweroff", "worker2"]).await.expect("power worker2 off");
    node_becomes(&api, &lab, "worker2", "Unknown", off).await;
    ready_pods(&api, &lab, 4, &["worker1"], off, "4 demo pods on worker1 after worker2 powered off").await;

    // Powered on again, it boots, provisions itself and rejoins.
    let on = Instant::now();
    lab.run(&["poweron", "worker2"]).await.expect("power worker2 on");
    node_becomes(&api, &lab, "worker2", "True", on).await;
    let scaled = Instant::now();
    let patch = json!({"spec": {"replicas": 6}});
    let (code, body) = api
        .patch("/apis/apps/v1/namespaces/default/deployments/demo/scale", "application/merge-patch+json", &patch)
        .await;
    assert!(code.is_success(), "{code} {body}");
    let six = ready_pods(&api, &lab, 6, &WORKERS, scaled, "scaled to 6 with worker2 back").await;
    assert!(six.iter().any(|p| p["spec"]["nodeName"] == "worker2"), "nothing scheduled on worker2 after it rejoined");

    // The master reboots (reset button): etcd, the apiserver and the controllers come back from
    // its disk, and the cluster converges to the same state.
    let reboot = Instant::now();
    lab.run(&["reboot", "master"]).await.expect("reboot the master");
    for worker in WORKERS {
        node_becomes(&api, &lab, worker, "True", reboot).await;
    }
    let after = ready_pods(&api, &lab, 6, &WORKERS, reboot, "6 demo pods after the master rebooted").await;
    let names = |pods: &[Value]| {
        let mut names: Vec<String> =
            pods.iter().filter_map(|p| p["metadata"]["name"].as_str()).map(String::from).collect();
        names.sort();
        names
    };
    assert_eq!(names(&after), names(&six), "the master's reboot changed the pods");
    println!("test took {:.1}s", test.elapsed().as_secs_f64());
}
