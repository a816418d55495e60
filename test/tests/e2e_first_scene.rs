//! The first scene of docs/lab.md, in its order, with the real kubectl 1.37 against the whole
//! cluster on real containerd (every component a real process, pods with CNI addresses):
//! `create deployment` (a protobuf body) → `get deploy,pods -o wide` → `expose` → `scale` →
//! `port-forward deploy/… svc/…` → `set env` + `rollout status`/`history` → `exec deploy/…` → `top pod` → `run -i --rm` →
//! `create pdb` → `drain` refused by the budget after one eviction → `uncordon`. Each command's
//! output is checked, and what it did is checked through the API.
//!
//! Needs root and `make deps` (containerd, runc, CNI plugins, busybox-static, the venv's kubectl).

use std::path::Path;
use std::time::{Duration, Instant};

use rkube_tests::controllers::{is_ready, live_pods, pods as all_pods};
use rkube_tests::e2e::LocalCluster;
use rkube_tests::forward::Forward;
use rkube_tests::kubectl::{Ran, real_kubectl_run, row_named, rows};
use rkube_tests::node::TEST_IMAGE;
use rkube_tests::{Api, eventually};
use serde_json::Value;

/// Generous: two cores shared with other tests; pods start through containerd and CNI.
const WAIT: Duration = Duration::from_secs(120);
const NODE: &str = "scene-node";
const POD_CIDR: &str = "10.244.93.0/24";

/// The real kubectl for one cluster.
struct Kubectl<'a> {
    kubeconfig: &'a Path,
    home: &'a Path,
}

impl Kubectl<'_> {
    async fn run(&self, args: &[&str]) -> Ran {
        real_kubectl_run(self.kubeconfig, self.home, args, None).await
    }

    /// Runs a command that must succeed; returns its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let ran = self.run(args).await;
        assert_eq!(ran.code, Some(0), "{}", ran.describe());
        ran.stdout
    }
}

/// The web Deployment's pods that are not being deleted.
async fn web_pods(api: &Api) -> Vec<Value> {
    live_pods(api, "default", "app=web").await
}

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or_default()
}

/// Waits until the web Deployment has `replicas` live pods, all Ready on the node with a pod IP
/// from its CIDR, and its status says they are all updated and available.
async fn settled(api: &Api, what: &str, replicas: usize) -> Vec<Value> {
    let want = i64::try_from(replicas).expect("small");
    eventually(WAIT, what, || async {
        let pods = web_pods(api).await;
        let deployment = api.get_ok("/apis/apps/v1/namespaces/default/deployments/web").await;
        let status = &deployment["status"];
        let done = pods.len() == replicas
            && pods.iter().all(|pod| {
                is_ready(pod)
                    && pod["spec"]["nodeName"] == NODE
                    && pod["status"]["podIP"].as_str().is_some_and(|ip| ip.starts_with("10.244.93."))
            })
            && status["updatedReplicas"] == want
            && status["availableReplicas"] == want
            && status["observedGeneration"] == deployment["metadata"]["generation"];
        done.then_some(pods)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_scene_of_the_lab_guide_works_with_kubectl_on_containerd() {
    let local = LocalCluster::start(NODE, POD_CIDR).await.expect("whole cluster");
    let api = local.api();
    let home = tempfile::tempdir().expect("home");
    let kubeconfig = local.cluster.write_kubeconfig(home.path()).expect("kubeconfig");
    let kubectl = Kubectl { kubeconfig: &kubeconfig, home: home.path() };
    let started = Instant::now();
    let image = format!("--image={TEST_IMAGE}");

    // create deployment (kubectl sends it as protobuf) with a command; three pods run.
    let out =
        kubectl.ok(&["create", "deployment", "web", &image, "--replicas=3", "--", "httpd", "-f", "-p", "8080"]).await;
    assert_eq!(out, "deployment.apps/web created\n");
    let pods = settled(&api, "3 web pods Ready", 3).await;
    assert_eq!(pods[0]["spec"]["containers"][0]["command"], serde_json::json!(["httpd", "-f", "-p", "8080"]));
    let wide = kubectl.ok(&["get", "deploy,pods", "-o", "wide"]).await;
    let table = rows(&wide);
    let deployment = row_named(&table, "deployment.apps/web").unwrap_or_else(|| panic!("no deployment row:\n{wide}"));
    assert_eq!(&deployment[1..4], ["3/3", "3", "3"], "READY UP-TO-DATE AVAILABLE:\n{wide}");
    assert_eq!(&deployment[5..8], ["busybox-local", TEST_IMAGE, "app=web"], "CONTAINERS IMAGES SELECTOR:\n{wide}");
    for pod in &pods {
        let name = format!("pod/{}", pod["metadata"]["name"].as_str().unwrap_or_default());
        let row = row_named(&table, &name).unwrap_or_else(|| panic!("no row {name}:\n{wide}"));
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
        assert_eq!(
            (row[1].as_str(), row[2].as_str(), row[5].as_str(), row[6].as_str()),
            ("1/1", "Running", ip, NODE),
            "{wide}"
        );
    }
    println!("create deployment: 3 pods Ready after {:.1}s", started.elapsed().as_secs_f64());

    // expose: a Service with a cluster IP whose EndpointSlice lists the three pods.
    assert_eq!(
        kubectl.ok(&["expose", "deployment", "web", "--port=80", "--target-port=8080"]).await,
        "service/web exposed\n"
    );
    let service = api.get_ok("/api/v1/namespaces/default/services/web").await;
    assert!(service["spec"]["clusterIP"].as_str().is_some_and(|ip| ip.starts_with("10.")), "{service}");
    assert_eq!(service["spec"]["selector"], serde_json::json!({"app": "web"}), "{service}");
    eventually(WAIT, "the web EndpointSlice to list 3 ready endpoints", || async {
        let slices =
            api.get_ok("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io/service-name=web").await;
        let ready = slices["items"][0]["endpoints"]
            .as_array()
            .map(|endpoints| endpoints.iter().filter(|e| e["conditions"]["ready"] == true).count());
        (ready == Some(3) && slices["items"][0]["ports"][0]["port"] == 8080).then_some(())
    })
    .await;

    // port-forward to the Deployment (kubectl picks one of its pods) and to the Service (its
    // port 80 becomes the pods' targetPort 8080): busybox's httpd answers through each.
    for (target, remote) in [("deploy/web", "8080"), ("svc/web", "80")] {
        let (kubeconfig, home) = (kubeconfig.clone(), home.path().to_path_buf());
        let (status, forward) = tokio::task::spawn_blocking(move || {
            let forward = Forward::start(&kubeconfig, &home, target, remote);
            (forward.get("/").0, forward)
        })
        .await
        .expect("port-forward");
        let stderr = forward.stop();
        assert!(status.starts_with("HTTP/1."), "port-forward {target}: {status:?}, kubectl said: {stderr}");
    }

    // scale, then a new template: a second revision rolls out to all five.
    assert_eq!(kubectl.ok(&["scale", "deployment", "web", "--replicas=5"]).await, "deployment.apps/web scaled\n");
    settled(&api, "5 web pods Ready", 5).await;
    assert_eq!(kubectl.ok(&["set", "env", "deployment/web", "PAGE=v2"]).await, "deployment.apps/web env updated\n");
    let status = kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=180s"]).await;
    assert!(status.ends_with("deployment \"web\" successfully rolled out\n"), "{status}");
    let pods = settled(&api, "5 web pods of the new template Ready", 5).await;
    for pod in &pods {
        assert_eq!(pod["spec"]["containers"][0]["env"], serde_json::json!([{"name": "PAGE", "value": "v2"}]), "{pod}");
    }
    let history = kubectl.ok(&["rollout", "history", "deployment/web"]).await;
    let revisions: Vec<Vec<String>> = rows(&history).into_iter().skip(1).collect();
    assert_eq!(revisions, [vec!["REVISION", "CHANGE-CAUSE"], vec!["1", "<none>"], vec!["2", "<none>"]], "{history}");
    println!("scale + rollout: done after {:.1}s", started.elapsed().as_secs_f64());

    // exec deploy/web runs in one of the Deployment's pods.
    let hello = kubectl.ok(&["exec", "deploy/web", "--", "sh", "-c", "echo hello from $(hostname)"]).await;
    let from = hello.trim().strip_prefix("hello from ").unwrap_or_else(|| panic!("exec printed {hello:?}"));
    assert!(pods.iter().any(|pod| pod["metadata"]["name"] == from), "exec ran in {from}, not a web pod");

    // top pod: the kubelet's cgroup figures for every web pod.
    let names: Vec<String> =
        pods.iter().map(|pod| pod["metadata"]["name"].as_str().unwrap_or_default().to_string()).collect();
    let top = eventually(WAIT, "kubectl top pod to show every web pod", || async {
        let ran = kubectl.run(&["top", "pod", "-l", "app=web"]).await;
        let table = rows(&ran.stdout);
        let shown = names.iter().all(|name| {
            row_named(&table, name).is_some_and(|row| row.len() == 3 && row[1].ends_with('m') && row[2].ends_with("Mi"))
        });
        (ran.code == Some(0) && shown && table.first().is_some_and(|h| h == &["NAME", "CPU(cores)", "MEMORY(bytes)"]))
            .then_some(ran.stdout)
    })
    .await;
    println!("{top}");

    // run -i --rm: stdin reaches a one-off pod's process, its output comes back, the pod goes.
    let ran = real_kubectl_run(
        &kubeconfig,
        home.path(),
        &["run", "shell", "-i", "--rm", "--restart=Never", &image, "--", "sh", "-c", "read line; echo got $line"],
        Some("ping\n"),
    )
    .await;
    assert_eq!(ran.code, Some(0), "{}", ran.describe());
    assert!(ran.stdout.contains("got ping\n"), "{}", ran.describe());
    assert!(ran.stdout.contains("pod \"shell\" deleted"), "{}", ran.describe());

    // A budget of 4 of the 5 pods: drain evicts one, then the budget refuses the rest until
    // kubectl's timeout; the evicted pod's replacement waits Pending on the cordoned node. (First
    // the old template's pods finish terminating: `httpd` as PID 1 ignores SIGTERM, so each takes
    // its 30 s grace period, and drain would wait for them too.)
    eventually(WAIT, "the old template's pods to be gone", || async {
        (all_pods(&api, "default", "app=web").await.len() == 5).then_some(())
    })
    .await;
    assert_eq!(
        kubectl.ok(&["create", "pdb", "web", "--selector=app=web", "--min-available=4"]).await,
        "poddisruptionbudget.policy/web created\n"
    );
    eventually(WAIT, "the budget to allow one disruption", || async {
        let pdb = api.get_ok("/apis/policy/v1/namespaces/default/poddisruptionbudgets/web").await;
        (pdb["status"]["disruptionsAllowed"] == 1 && pdb["status"]["currentHealthy"] == 5).then_some(())
    })
    .await;
    let drain = kubectl.run(&["drain", NODE, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=15s"]).await;
    assert_ne!(drain.code, Some(0), "the budget must stop the drain: {}", drain.describe());
    assert!(drain.stdout.contains(&format!("node/{NODE} cordoned")), "{}", drain.describe());
    let evicting: std::collections::BTreeSet<&str> =
        drain.stdout.lines().filter_map(|line| line.strip_prefix("evicting pod default/web-")).collect();
    assert_eq!(evicting.len(), 5, "kubectl asks to evict every web pod (again while refused): {}", drain.describe());
    assert!(
        drain.stderr.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{}",
        drain.describe()
    );
    assert!(drain.stderr.contains("global timeout reached: 15s"), "{}", drain.describe());
    // Exactly one eviction got through: one pod terminating (for its 30 s), four untouched.
    let all = all_pods(&api, "default", "app=web").await;
    let terminating: Vec<&Value> = all.iter().filter(|pod| !pod["metadata"]["deletionTimestamp"].is_null()).collect();
    assert_eq!(terminating.len(), 1, "exactly one pod may go within the budget: {}", drain.describe());
    let node = api.get_ok(&format!("/api/v1/nodes/{NODE}")).await;
    assert_eq!(node["spec"]["unschedulable"], true, "{node}");
    let pending = eventually(WAIT, "the evicted pod's replacement Pending", || async {
        let pods = web_pods(&api).await;
        let pending: Vec<Value> = pods.into_iter().filter(|pod| phase(pod) == "Pending").collect();
        (pending.len() == 1 && pending[0]["spec"]["nodeName"].is_null()).then_some(pending)
    })
    .await;
    let listed = kubectl.ok(&["get", "pods"]).await;
    let pending_name = pending[0]["metadata"]["name"].as_str().unwrap_or_default();
    let row = row_named(&rows(&listed), pending_name).unwrap_or_else(|| panic!("no row {pending_name}:\n{listed}"));
    assert_eq!((row[1].as_str(), row[2].as_str()), ("0/1", "Pending"), "{listed}");

    // uncordon: the replacement is scheduled and all five run again.
    assert_eq!(kubectl.ok(&["uncordon", NODE]).await, format!("node/{NODE} uncordoned\n"));
    settled(&api, "5 web pods Ready after uncordon", 5).await;
    println!("drain + uncordon: done after {:.1}s", started.elapsed().as_secs_f64());

    let out = kubectl.ok(&["delete", "deployment", "web"]).await;
    assert_eq!(out, "deployment.apps \"web\" deleted from default namespace\n");
    let out = kubectl.ok(&["delete", "service", "web"]).await;
    assert_eq!(out, "service \"web\" deleted from default namespace\n");
}
