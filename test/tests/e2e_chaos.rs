//! Chaos on the highly available lab (`LAB_HA=1`: three masters, each with an etcd member, an
//! apiserver, a controller-manager and a scheduler, HAProxy in front; two workers): while
//! Deployments roll out and scale, a random control-plane component is killed with SIGKILL every
//! few seconds and started again (never two at once), then kubelets and a whole worker are. At
//! the end the cluster must be exactly what was asked for, and etcd must hold exactly the
//! objects the API shows.
//!
//! The random choices come from a seed printed at the start; `CHAOS_SEED=<n>` replays them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use rkube_tests::Api;
use rkube_tests::controllers::{is_ready, pods};
use rkube_tests::eventually;
use rkube_tests::lab::{Lab, LabOptions, WORKERS, node_ready};
use serde_json::{Value, json};

const NS: &str = "default";
/// The Deployments, their starting replicas. `demo` is behind a NodePort Service and polled.
const APPS: [(&str, i64); 3] = [("alpha", 3), ("beta", 2), ("demo", 3)];
/// How long the cluster may take to converge after the last fault.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a write may keep failing (its apiserver or etcd member just died) before the test
/// gives up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Faults of the control-plane phase.
const CONTROL_PLANE_ROUNDS: usize = 12;
/// The leader election of the lab's controller-managers and schedulers: lease duration, renew
/// deadline, retry period.
const LEADER_TIMING: (u64, u64, u64) = (6, 4, 1);

/// A small deterministic generator (xorshift64*), so a failing run can be replayed by its seed.
struct Dice(u64);

impl Dice {
    fn pick(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// The demo app (manifests/demo/deployment.yaml) renamed `name`, with `replicas`.
fn app(name: &str, replicas: i64) -> Value {
    let path = rkube_tests::repo_root().join("manifests/demo/deployment.yaml");
    let text = std::fs::read_to_string(&path).expect("manifests/demo/deployment.yaml readable");
    let mut app: Value = serde_yaml_ng::from_str(&text).expect("manifests/demo/deployment.yaml is YAML");
    app["metadata"] = json!({"name": name, "namespace": NS, "labels": {"app": name}});
    app["spec"]["replicas"] = json!(replicas);
    app["spec"]["selector"] = json!({"matchLabels": {"app": name}});
    app["spec"]["template"]["metadata"]["labels"] = json!({"app": name});
    app
}

/// Sends a request through the load balancer until it gets an answer that is not a transport
/// failure or a 5xx (the apiserver or etcd member it reached may just have been killed);
/// counts the retries in `retried`.
async fn call(api: &Api, method: Method, path: &str, body: Option<&Value>, retried: &Mutex<usize>) -> (u16, Value) {
    let started = Instant::now();
    let headers: &[(&str, &str)] = match method {
        Method::PATCH => &[("Content-Type", "application/merge-patch+json")],
        _ => &[("Content-Type", "application/json")],
    };
    loop {
        let bytes = body.map(|body| serde_json::to_vec(body).expect("JSON"));
        let outcome = api.try_send(method.clone(), path, headers, bytes).await;
        let failure = match outcome {
            Ok(reply) if !reply.status.is_server_error() => return (reply.status.as_u16(), reply.body),
            Ok(reply) => format!("{} {}", reply.status, reply.body),
            Err(error) => format!("{error:#}"),
        };
        assert!(started.elapsed() < WRITE_TIMEOUT, "{method} {path} kept failing for {WRITE_TIMEOUT:?}: {failure}");
        if let Ok(mut retried) = retried.lock() {
            *retried += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What each Deployment was last asked for: replicas and the number of templates it had.
#[derive(Default)]
struct Asked {
    replicas: BTreeMap<String, i64>,
    templates: BTreeMap<String, usize>,
}

/// Rolls `name` out to a new template (a new `PAGE`) or scales it, as the dice say.
async fn act(api: &Api, dice: &mut Dice, asked: &mut Asked, names: &[&str], retried: &Mutex<usize>) -> String {
    let name = names[dice.pick(names.len())];
    let path = format!("/apis/apps/v1/namespaces/{NS}/deployments/{name}");
    if dice.pick(2) == 0 {
        let revision = asked.templates.get(name).copied().unwrap_or(1) + 1;
        let page = format!("v{revision}");
        // Read-modify-write, again on a conflict (a controller wrote the status meanwhile).
        loop {
            let (_, mut current) = call(api, Method::GET, &path, None, retried).await;
            current["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "PAGE", "value": page}]);
            let (status, body) = call(api, Method::PUT, &path, Some(&current), retried).await;
            if status != 409 {
                assert!(status < 300, "roll out {name}: {status} {body}");
                break;
            }
        }
        asked.templates.insert(name.to_string(), revision);
        format!("roll out {name} to {page}")
    } else {
        let replicas = [2, 3, 4][dice.pick(3)];
        let patch = json!({"spec": {"replicas": replicas}});
        let (status, body) = call(api, Method::PATCH, &format!("{path}/scale"), Some(&patch), retried).await;
        assert!(status < 300, "scale {name}: {status} {body}");
        asked.replicas.insert(name.to_string(), replicas);
        format!("scale {name} to {replicas}")
    }
}

/// The holder of a leader-election Lease in kube-system (the lab names holders after masters).
async fn leader(api: &Api, lease: &str, retried: &Mutex<usize>) -> String {
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{lease}");
    let (_, body) = call(api, Method::GET, &path, None, retried).await;
    body["spec"]["holderIdentity"].as_str().unwrap_or_default().to_string()
}

/// A client polling the demo through its NodePort on both workers, recording every outcome.
struct Poller {
    outcomes: Arc<Mutex<Vec<Result<(), String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Poller {
    fn start(urls: Vec<String>) -> Poller {
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&outcomes);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .pool_max_idle_per_host(0)
            .no_proxy()
            .build()
            .expect("HTTP client");
        let task = tokio::spawn(async move {
            for turn in 0usize.. {
                let url = &urls[turn % urls.len()];
                let outcome = match http.get(url).send().await {
                    Ok(reply) if reply.status().is_success() => match reply.text().await {
                        Ok(body) if body.starts_with("demo ") => Ok(()),
                        Ok(body) => Err(format!("{url}: unexpected page {body:?}")),
                        Err(error) => Err(format!("{url}: body: {error:#}")),
                    },
                    Ok(reply) => Err(format!("{url}: {}", reply.status())),
                    Err(error) => Err(format!("{url}: {error:?}")),
                };
                if let Ok(mut outcomes) = record.lock() {
                    outcomes.push(outcome);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Poller { outcomes, task }
    }

    /// Stops polling; returns how many requests were sent and the failures.
    fn stop(self) -> (usize, Vec<String>) {
        self.task.abort();
        let outcomes = self.outcomes.lock().map(|o| o.clone()).unwrap_or_default();
        let failures = outcomes.iter().filter_map(|o| o.as_ref().err().cloned()).collect();
        (outcomes.len(), failures)
    }
}

/// Kills `component` of `host` (SIGKILL), lets the cluster run without it for `down`, and
/// starts it again, waiting until it is healthy.
async fn kill_and_restart(lab: &Lab, host: &str, component: &str, down: Duration) {
    lab.kill(host, component).unwrap_or_else(|error| panic!("kill {component} on {host}: {error:#}"));
    tokio::time::sleep(down).await;
    lab.restart(host, component).await.unwrap_or_else(|error| {
        panic!("restart {component} on {host}: {error:#}\n{}", lab.log_tail(host, component, 30))
    });
}

/// The Deployments' state when converged to `asked`, or `None` (with why) while not yet.
async fn converged(api: &Api, asked: &Asked, retried: &Mutex<usize>) -> Result<(), String> {
    for (name, _) in APPS {
        let path = format!("/apis/apps/v1/namespaces/{NS}/deployments/{name}");
        let (_, deployment) = call(api, Method::GET, &path, None, retried).await;
        let want = asked.replicas[name];
        let status = &deployment["status"];
        let counts = ["replicas", "updatedReplicas", "readyReplicas", "availableReplicas"].map(|f| status[f].as_i64());
        if deployment["metadata"]["generation"] != status["observedGeneration"]
            || counts.iter().any(|c| *c != Some(want))
        {
            let summaries: Vec<String> = pods(api, NS, &format!("app={name}")).await.iter().map(summary).collect();
            return Err(format!("{name}: want {want}, status {status}; pods:\n{}", summaries.join("\n")));
        }
        let all = pods(api, NS, &format!("app={name}")).await;
        let hashes: BTreeSet<&str> =
            all.iter().filter_map(|pod| pod["metadata"]["labels"]["pod-template-hash"].as_str()).collect();
        let ready = all.iter().filter(|pod| is_ready(pod) && pod["metadata"]["deletionTimestamp"].is_null()).count();
        if all.len() != usize::try_from(want).unwrap_or(0) || hashes.len() != 1 || ready != all.len() {
            let summaries: Vec<String> = all.iter().map(summary).collect();
            return Err(format!(
                "{name}: {} pods ({ready} Ready), template hashes {hashes:?}:\n{}",
                all.len(),
                summaries.join("\n")
            ));
        }
    }
    Ok(())
}

/// One line about a pod, for messages.
fn summary(pod: &Value) -> String {
    format!(
        "{} node={} phase={} ready={} deleting={} hash={}",
        pod["metadata"]["name"],
        pod["spec"]["nodeName"],
        pod["status"]["phase"],
        is_ready(pod),
        !pod["metadata"]["deletionTimestamp"].is_null(),
        pod["metadata"]["labels"]["pod-template-hash"]
    )
}

/// The names of `resource` objects in the default namespace as etcd holds them (their keys).
async fn etcd_names(lab: &Lab, prefix: &str) -> BTreeSet<String> {
    let keys = lab.etcdctl(&["get", prefix, "--prefix", "--keys-only"]).await.expect("etcdctl get");
    keys.lines().filter(|l| !l.is_empty()).filter_map(|key| key.strip_prefix(prefix)).map(String::from).collect()
}

/// The names of the objects of a list.
async fn api_names(api: &Api, path: &str, retried: &Mutex<usize>) -> BTreeSet<String> {
    let (_, list) = call(api, Method::GET, path, None, retried).await;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items.iter().filter_map(|item| item["metadata"]["name"].as_str()).map(String::from).collect()
}

#[tokio::test]
async fn kill_9_of_random_components_during_rollouts_and_the_ha_cluster_still_converges_exactly() {
    let test = Instant::now();
    let seed = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
    });
    println!("chaos seed {seed} (replay with CHAOS_SEED={seed})");
    let mut dice = Dice(seed);
    let (lease, renew, retry) = LEADER_TIMING;
    let options = LabOptions {
        ha: true,
        leader_election_timing: format!("{lease}s {renew}s {retry}s"),
        node_monitor_grace: "8s".into(),
        pod_eviction_timeout: "4s".into(),
        node_eviction_rate: "100".into(),
        podgc_quarantine: "10s".into(),
        ..LabOptions::default()
    };
    let lab = Lab::start(options).await.expect("HA lab up");
    println!("HA lab up in {:.1}s", test.elapsed().as_secs_f64());
    let api = lab.api();
    let retried = Mutex::new(0usize);

    // Each master's apiserver is in the `kubernetes` Service's endpoints; three etcd members.
    let masters: Vec<String> = lab.masters().iter().map(|m| lab.host_ip(m)).collect();
    eventually(Duration::from_secs(30), "three apiservers in the kubernetes Endpoints", || async {
        let (_, endpoints) =
            call(&api, Method::GET, "/api/v1/namespaces/default/endpoints/kubernetes", None, &retried).await;
        let ips: BTreeSet<String> = endpoints["subsets"][0]["addresses"]
            .as_array()
            .map(|a| a.iter().filter_map(|a| a["ip"].as_str()).map(String::from).collect())
            .unwrap_or_default();
        (ips == masters.iter().cloned().collect()).then_some(())
    })
    .await;
    let members = lab.etcdctl(&["member", "list"]).await.expect("etcdctl member list");
    assert_eq!(members.lines().filter(|l| l.contains("started")).count(), 3, "{members}");

    let mut asked = Asked::default();
    let started = Instant::now();
    for (name, replicas) in APPS {
        let path = "/apis/apps/v1/namespaces/default/deployments";
        let (status, body) = call(&api, Method::POST, path, Some(&app(name, replicas)), &retried).await;
        // 409: a retried create whose first try was stored before its apiserver died.
        assert!(status == 201 || status == 409, "create {name}: {status} {body}");
        asked.replicas.insert(name.into(), replicas);
        asked.templates.insert(name.into(), 1);
    }
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "demo", "namespace": NS},
        "spec": {"type": "NodePort", "selector": {"app": "demo"}, "ports": [{"port": 80, "targetPort": 8080}]}});
    let (status, service) =
        call(&api, Method::POST, "/api/v1/namespaces/default/services", Some(&service), &retried).await;
    assert_eq!(status, 201, "create the demo Service: {service}");
    let node_port = service["spec"]["ports"][0]["nodePort"].as_u64().expect("a node port");
    wait_converged(&lab, &api, &asked, &retried, started, "the three Deployments up").await;
    let urls: Vec<String> = WORKERS.iter().map(|w| format!("http://{}:{node_port}/", lab.host_ip(w))).collect();
    eventually(Duration::from_secs(30), "the demo answering on both node ports", || async {
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().ok()?;
        for url in &urls {
            http.get(url).send().await.ok()?.error_for_status().ok()?;
        }
        Some(())
    })
    .await;

    // Phase 1: the control plane. Every few seconds one component of one master dies (kill -9)
    // while alpha and beta roll out and scale and demo scales up; it is back before the next.
    // The demo is polled throughout: a control-plane fault must not fail one request.
    let poller = Poller::start(urls.clone());
    let phase = Instant::now();
    let components = ["etcd", "apiserver", "controller-manager", "scheduler"];
    for round in 1..=CONTROL_PLANE_ROUNDS {
        // Round 2 is always the leading controller-manager (its failover is measured).
        let component = if round == 2 { "controller-manager" } else { components[dice.pick(components.len())] };
        // The controller-manager and scheduler that die are the leading ones, found by their
        // Lease (the lab names holders after their master).
        let host = match component {
            "controller-manager" => leader(&api, "rkube-controller-manager", &retried).await,
            "scheduler" => leader(&api, "rkube-scheduler", &retried).await,
            _ => lab.masters()[dice.pick(3)].to_string(),
        };
        assert!(lab.masters().contains(&host.as_str()), "{component} leader {host:?} is not a master");
        // The component dies first; the write then goes through the rest of the control plane
        // while it is down (a dead apiserver or etcd member may cost the write a retry).
        lab.kill(&host, component).unwrap_or_else(|error| panic!("kill {component} on {host}: {error:#}"));
        let killed = Instant::now();
        let action = if round % 4 == 0 {
            let more = asked.replicas["demo"] + 1;
            let patch = json!({"spec": {"replicas": more}});
            let path = "/apis/apps/v1/namespaces/default/deployments/demo/scale";
            let (status, body) = call(&api, Method::PATCH, path, Some(&patch), &retried).await;
            assert!(status < 300, "scale demo: {status} {body}");
            asked.replicas.insert("demo".into(), more);
            format!("scale demo up to {more}")
        } else {
            act(&api, &mut dice, &mut asked, &["alpha", "beta"], &retried).await
        };
        println!("round {round} at {:.1}s: kill -9 {component} on {host}; {action}", phase.elapsed().as_secs_f64());
        if round == 2 {
            // It stays dead until its Lease has moved to another master, which must happen
            // within the lease duration (plus a retry period or two).
            let after = eventually(Duration::from_secs(lease + 10), "the controller-manager Lease to move", || async {
                let now = leader(&api, "rkube-controller-manager", &retried).await;
                (!now.is_empty() && now != host).then_some(now)
            })
            .await;
            let took = killed.elapsed();
            println!("  the controller-manager Lease moved from {host} to {after} in {:.1}s", took.as_secs_f64());
            assert!(took < Duration::from_secs(lease + 2 * retry + 2), "failover took {took:?}");
        } else {
            tokio::time::sleep(Duration::from_secs(2).saturating_sub(killed.elapsed())).await;
        }
        lab.restart(&host, component).await.unwrap_or_else(|error| {
            panic!("restart {component} on {host}: {error:#}\n{}", lab.log_tail(&host, component, 30))
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (requests, failures) = poller.stop();
    println!(
        "control-plane phase: {CONTROL_PLANE_ROUNDS} faults in {:.1}s; {requests} demo requests, {} failed; {} API retries",
        phase.elapsed().as_secs_f64(),
        failures.len(),
        retried.lock().map(|r| *r).unwrap_or_default()
    );
    assert!(requests > 200, "the demo poller sent only {requests} requests");
    assert!(failures.is_empty(), "demo requests failed while one control-plane member was down: {failures:#?}");
    let settled = Instant::now();
    wait_converged(&lab, &api, &asked, &retried, settled, "after the control-plane faults").await;

    // Phase 2: the workers. A kubelet dies and comes back during a rollout; then a whole worker
    // goes (every process and container on it) while the demo rolls out, and comes back.
    let action = act(&api, &mut dice, &mut asked, &["alpha", "beta", "demo"], &retried).await;
    let worker = WORKERS[dice.pick(2)];
    println!("kill -9 the kubelet of {worker}; {action}");
    kill_and_restart(&lab, worker, "kubelet", Duration::from_secs(3)).await;
    let worker = WORKERS[dice.pick(2)];
    let action = act(&api, &mut dice, &mut asked, &["alpha", "beta", "demo"], &retried).await;
    println!("{worker} powered off (all its processes and containers killed); {action}");
    let off = Instant::now();
    lab.power_off(worker).expect("power off a worker");
    eventually(Duration::from_secs(60), &format!("{worker} Ready=Unknown"), || async {
        let (_, node) = call(&api, Method::GET, &format!("/api/v1/nodes/{worker}"), None, &retried).await;
        (node_ready(&node) == Some("Unknown")).then_some(())
    })
    .await;
    println!("  {worker} Ready=Unknown after {:.1}s", off.elapsed().as_secs_f64());
    // Its pods are evicted and replaced on the other worker before it comes back.
    let other = WORKERS.iter().find(|w| **w != worker).copied().unwrap_or_default();
    eventually(CONVERGE_TIMEOUT, &format!("every app Ready on {other} alone"), || async {
        for (name, _) in APPS {
            let live: Vec<Value> = pods(&api, NS, &format!("app={name}"))
                .await
                .into_iter()
                .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
                .collect();
            let settled = live.len() == usize::try_from(asked.replicas[name]).unwrap_or(0)
                && live.iter().all(|pod| is_ready(pod) && pod["spec"]["nodeName"] == other);
            if !settled {
                return None;
            }
        }
        Some(())
    })
    .await;
    println!("  its pods replaced on {other} after {:.1}s", off.elapsed().as_secs_f64());
    lab.power_on(worker).await.expect("power the worker on");
    println!("  {worker} back after {:.1}s", off.elapsed().as_secs_f64());
    let settled = Instant::now();
    wait_converged(&lab, &api, &asked, &retried, settled, "after the worker faults").await;

    // Exactly what was asked, nothing more: every pod of the current template, on a Ready node,
    // running there (its containers in that worker's containerd) and nowhere else.
    let nodes = api.get_ok("/api/v1/nodes").await;
    for node in nodes["items"].as_array().cloned().unwrap_or_default() {
        assert_eq!(node_ready(&node), Some("True"), "{}", node["metadata"]["name"]);
    }
    let mut running: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut containers = BTreeMap::new();
    for worker in WORKERS {
        containers.insert(worker, lab.running_pod_uids(worker).await.expect("containerd tasks"));
    }
    for (worker, uids) in &containers {
        for uid in uids {
            running.entry(uid.clone()).or_default().push(worker);
        }
    }
    let all = api.get_ok("/api/v1/namespaces/default/pods").await;
    let all = all["items"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = all.iter().filter_map(|p| p["metadata"]["name"].as_str()).collect();
    assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), names.len(), "two pods with one name: {names:?}");
    for pod in &all {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        assert_eq!(running.get(uid).cloned().unwrap_or_default(), vec![node], "where pod {name} runs");
    }
    let known: BTreeSet<&str> = all.iter().filter_map(|p| p["metadata"]["uid"].as_str()).collect();
    let strays: Vec<&String> = running.keys().filter(|uid| !known.contains(uid.as_str())).collect();
    assert!(strays.is_empty(), "containers of pods the API does not know still run: {strays:?}");

    // etcd holds exactly what the API lists (nothing lost, nothing duplicated), and exactly the
    // Deployments asked for, and ReplicaSets of the templates they had (below).
    for (resource, prefix, path) in [
        ("deployments", "/registry/deployments/default/", "/apis/apps/v1/namespaces/default/deployments"),
        ("replicasets", "/registry/replicasets/default/", "/apis/apps/v1/namespaces/default/replicasets"),
        ("pods", "/registry/pods/default/", "/api/v1/namespaces/default/pods"),
        ("services", "/registry/services/default/", "/api/v1/namespaces/default/services"),
    ] {
        let stored = etcd_names(&lab, prefix).await;
        let listed = api_names(&api, path, &retried).await;
        assert_eq!(stored, listed, "{resource}: etcd and the API differ");
    }
    let deployments = api_names(&api, "/apis/apps/v1/namespaces/default/deployments", &retried).await;
    assert_eq!(deployments, APPS.iter().map(|(n, _)| n.to_string()).collect(), "Deployments");
    for (name, _) in APPS {
        let path = format!("/apis/apps/v1/namespaces/default/replicasets?labelSelector=app%3D{name}");
        let sets = api.get_ok(&path).await["items"].as_array().cloned().unwrap_or_default();
        // One ReplicaSet per template the controller saw, never two: a template overwritten
        // before the controller saw it (its informer relisting after an apiserver kill) never
        // gets one, as on Kubernetes. The newest template's is the only one with replicas.
        let page = |set: &Value| -> String {
            let env = set["spec"]["template"]["spec"]["containers"][0]["env"].as_array().cloned().unwrap_or_default();
            env.iter().find(|var| var["name"] == "PAGE").and_then(|var| var["value"].as_str()).unwrap_or("").to_string()
        };
        let pages: Vec<String> = sets.iter().map(page).collect();
        let distinct: BTreeSet<&String> = pages.iter().collect();
        assert_eq!(distinct.len(), pages.len(), "{name}: two ReplicaSets for one template: {pages:?}");
        let newest = format!("v{}", asked.templates[name]);
        let applied: Vec<String> = (1..=asked.templates[name]).map(|n| format!("v{n}")).collect();
        assert!(pages.iter().all(|p| applied.contains(p)), "{name}: a ReplicaSet of no applied template: {pages:?}");
        let scaled: Vec<(String, i64)> = sets
            .iter()
            .filter_map(|s| Some((page(s), s["spec"]["replicas"].as_i64()?)))
            .filter(|(_, replicas)| *replicas > 0)
            .collect();
        assert_eq!(scaled, vec![(newest, asked.replicas[name])], "{name}: only the newest ReplicaSet has replicas");
    }
    println!("test took {:.1}s", test.elapsed().as_secs_f64());
}

/// Waits until the Deployments are exactly `asked` and prints how long it took since `since`.
async fn wait_converged(lab: &Lab, api: &Api, asked: &Asked, retried: &Mutex<usize>, since: Instant, what: &str) {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        match converged(api, asked, retried).await {
            Ok(()) => break,
            Err(why) if Instant::now() > deadline => {
                panic!("{what}: not converged after {CONVERGE_TIMEOUT:?}: {why}\n{}", lab.all_logs(20))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    println!("{what}: converged in {:.1}s", since.elapsed().as_secs_f64());
}
