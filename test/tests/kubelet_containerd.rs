//! The real `rkubelet` on a real, private containerd (with runc) against real etcd and the
//! real apiserver: pods run real processes from the test image (busybox-static), and their
//! status tells the truth. Needs root and `make deps` (containerd, runc, busybox-static).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use rkube_client::{Api, Client, Config, DeleteParams, PostParams};
use rkube_tests::node::{Containerd, Kubelet, SYNC_FREQUENCY, TEST_IMAGE};
use rkube_tests::{Cluster, eventually, stays_true};

const WAIT: Duration = Duration::from_secs(60);

fn client(cluster: &Cluster) -> Client {
    Client::new(Config::new(cluster.url().parse().expect("apiserver URL"))).expect("client")
}

fn pod(name: &str, node: &str, restart_policy: &str, container: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": node, "restartPolicy": restart_policy, "terminationGracePeriodSeconds": 1, "containers": [container]}
    }))
    .expect("pod")
}

async fn wait_phase(pods: &Api<Pod>, name: &str, phase: &str, kubelet: &Kubelet) -> Pod {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(pod) = pods.get(name).await
                && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase)
            {
                return pod;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    match found {
        Ok(pod) => pod,
        Err(_) => panic!(
            "pod {name} not {phase} after {WAIT:?}: {:?}\nkubelet log:\n{}",
            pods.get(name).await.ok().and_then(|p| p.status),
            kubelet.log_tail(40)
        ),
    }
}

fn terminated_exit_code(pod: &Pod) -> Option<i32> {
    let status = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    Some(status.state.as_ref()?.terminated.as_ref()?.exit_code)
}

fn log_of(kubelet: &Kubelet, pod: &Pod, container: &str) -> String {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let path = kubelet.root_dir().join("pods").join(format!("default_{name}_{uid}")).join(container).join("0.log");
    std::fs::read_to_string(&path).unwrap_or_else(|error| format!("(cannot read {}: {error})", path.display()))
}

#[tokio::test]
async fn containers_exit_codes_decide_succeeded_and_failed() {
    let cluster = Cluster::start().await.expect("cluster");
    let containerd = Containerd::start().await.expect("containerd");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "node-c1").await.expect("kubelet");
    let pods: Api<Pod> = Api::namespaced(client(&cluster), "default");
    let shell =
        |script: &str| serde_json::json!({"name": "main", "image": TEST_IMAGE, "command": ["sh", "-c", script]});
    pods.create(&PostParams::default(), &pod("fails", "node-c1", "Never", shell("echo hi; exit 3")))
        .await
        .expect("create");
    pods.create(&PostParams::default(), &pod("works", "node-c1", "Never", shell("echo fine"))).await.expect("create");
    pods.create(
        &PostParams::default(),
        &pod("noimage", "node-c1", "Never", serde_json::json!({"name": "main", "image": "no-such-image:v1"})),
    )
    .await
    .expect("create");

    let failed = wait_phase(&pods, "fails", "Failed", &kubelet).await;
    assert_eq!(terminated_exit_code(&failed), Some(3), "{:?}", failed.status);
    assert!(log_of(&kubelet, &failed, "main").contains("hi"), "{}", log_of(&kubelet, &failed, "main"));
    let container_id = failed.status.as_ref().and_then(|s| s.container_statuses.as_ref()?[0].container_id.clone());
    assert!(container_id.is_some_and(|id| id.starts_with("containerd://")));

    let succeeded = wait_phase(&pods, "works", "Succeeded", &kubelet).await;
    assert_eq!(terminated_exit_code(&succeeded), Some(0));
    assert!(log_of(&kubelet, &succeeded, "main").contains("fine"));

    // The image is nowhere (these machines reach no registry): the pull fails, and the
    // container waits with ErrImagePull, then ImagePullBackOff between retries.
    let (reason, message) = eventually(WAIT, "pod noimage waiting with ErrImagePull", || async {
        let pod = pods.get("noimage").await.ok()?;
        let waiting = pod.status?.container_statuses?.first()?.state.clone()?.waiting?;
        let reason = waiting.reason.filter(|reason| reason == "ErrImagePull" || reason == "ImagePullBackOff")?;
        Some((reason, waiting.message.unwrap_or_default()))
    })
    .await;
    assert!(message.contains("no-such-image"), "{reason}: {message}");
    assert_eq!(pods.get("noimage").await.expect("pod").status.and_then(|s| s.phase).as_deref(), Some("Pending"));
}

#[tokio::test]
async fn command_args_env_and_working_dir_reach_the_process() {
    let cluster = Cluster::start().await.expect("cluster");
    let containerd = Containerd::start().await.expect("containerd");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "node-c2").await.expect("kubelet");
    let pods: Api<Pod> = Api::namespaced(client(&cluster), "default");
    let container = serde_json::json!({
        "name": "main",
        "image": TEST_IMAGE,
        "command": ["sh", "-c"],
        "args": ["echo \"$GREETING from $(hostname) in $(pwd) as $(id -u)\""],
        "env": [{"name": "GREETING", "value": "hello"}],
        "workingDir": "/tmp"
    });
    pods.create(&PostParams::default(), &pod("envpod", "node-c2", "Never", container)).await.expect("create");
    let done = wait_phase(&pods, "envpod", "Succeeded", &kubelet).await;
    let log = log_of(&kubelet, &done, "main");
    assert!(log.contains("hello from envpod in /tmp as 0"), "log: {log:?}");
}

/// `rkube_apiserver_requests_total` of `verb` on Services that succeeded.
fn service_requests(verb: &str) -> String {
    format!(r#"rkube_apiserver_requests_total{{code="200",resource="services",verb="{verb}"}}"#)
}

#[tokio::test]
async fn service_variables_come_from_the_kubelet_s_informer_without_a_request_per_container() {
    let cluster = Cluster::start().await.expect("cluster");
    let services: Api<Service> = Api::namespaced(client(&cluster), "default");
    let web = serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-front"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 8080}]}});
    let web: Service = serde_json::from_value(web).expect("service");
    let web = services.create(&PostParams::default(), &web).await.expect("create the service");
    let web_ip = web.spec.and_then(|s| s.cluster_ip).expect("a cluster IP");
    let kubernetes =
        eventually(WAIT, "the kubernetes Service", || async { services.get("kubernetes").await.ok() }).await;
    let kubernetes_ip = kubernetes.spec.and_then(|s| s.cluster_ip).expect("a cluster IP");

    let containerd = Containerd::start().await.expect("containerd");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "node-c12").await.expect("kubelet");
    let api = rkube_tests::Api::new(cluster.url());
    // The kubelet's Service informer: one LIST of all namespaces, then a WATCH.
    eventually(WAIT, "the kubelet's Service informer to watch", || async {
        (api.watches_started("services").await >= 1.0).then_some(())
    })
    .await;
    let (lists, gets) = (api.metric(&service_requests("list")).await, api.metric(&service_requests("get")).await);
    assert!(lists >= 1.0, "the informer's LIST is counted (and this test counts the right series)");

    let pods: Api<Pod> = Api::namespaced(client(&cluster), "default");
    let script = "echo \"web=$WEB_FRONT_SERVICE_HOST:$WEB_FRONT_SERVICE_PORT_HTTP api=$KUBERNETES_SERVICE_HOST\"";
    for (name, links) in [("links-1", true), ("links-2", true), ("no-links", false)] {
        let container = serde_json::json!({"name": "main", "image": TEST_IMAGE, "command": ["sh", "-c", script]});
        let mut pod = pod(name, "node-c12", "Never", container);
        pod.spec.as_mut().expect("spec").enable_service_links = Some(links);
        pods.create(&PostParams::default(), &pod).await.expect("create");
    }
    for name in ["links-1", "links-2"] {
        let done = wait_phase(&pods, name, "Succeeded", &kubelet).await;
        let log = log_of(&kubelet, &done, "main");
        assert!(log.contains(&format!("web={web_ip}:8080 api={kubernetes_ip}")), "{name}: {log:?}");
    }
    let done = wait_phase(&pods, "no-links", "Succeeded", &kubelet).await;
    let log = log_of(&kubelet, &done, "main");
    assert!(log.contains(&format!("web=: api={kubernetes_ip}")), "without links only the kubernetes Service: {log:?}");

    // Three containers started, and not one Service read from the apiserver for them.
    assert_eq!(api.metric(&service_requests("list")).await, lists, "a Service LIST per container start");
    assert_eq!(api.metric(&service_requests("get")).await, gets, "a Service GET per container start");
}

#[tokio::test]
async fn deleting_a_running_pod_stops_it_gracefully_then_removes_everything() {
    let cluster = Cluster::start().await.expect("cluster");
    let containerd = Containerd::start().await.expect("containerd");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "node-c3").await.expect("kubelet");
    let pods: Api<Pod> = Api::namespaced(client(&cluster), "default");
    // Handles SIGTERM: the trap runs and the container exits on its own.
    let graceful = serde_json::json!({"name": "main", "image": TEST_IMAGE,
        "command": ["sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo started; while true; do sleep 0.2; done"]});
    // PID 1 without a handler ignores SIGTERM: needs the SIGKILL after the grace period.
    let stubborn = serde_json::json!({"name": "main", "image": TEST_IMAGE, "command": ["sleep", "3600"]});
    pods.create(&PostParams::default(), &pod("graceful", "node-c3", "Always", graceful)).await.expect("create");
    pods.create(&PostParams::default(), &pod("stubborn", "node-c3", "Always", stubborn)).await.expect("create");
    let graceful_pod = wait_phase(&pods, "graceful", "Running", &kubelet).await;
    let running = wait_phase(&pods, "stubborn", "Running", &kubelet).await;
    assert_eq!(
        running
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone()))
            .as_deref(),
        Some("True")
    );
    eventually(WAIT, "graceful container started", || async {
        log_of(&kubelet, &graceful_pod, "main").contains("started").then_some(())
    })
    .await;
    assert_eq!(containerd.container_ids().len(), 2, "{:?}", containerd.container_ids());

    for name in ["graceful", "stubborn"] {
        pods.delete(name, &DeleteParams::default()).await.expect("delete");
    }
    for name in ["graceful", "stubborn"] {
        eventually(WAIT, &format!("pod {name} removed from the API"), || async {
            matches!(pods.get_opt(name).await, Ok(None)).then_some(())
        })
        .await;
    }
    assert!(
        log_of(&kubelet, &graceful_pod, "main").contains("got TERM"),
        "SIGTERM handler did not run: {}",
        log_of(&kubelet, &graceful_pod, "main")
    );
    assert!(containerd.container_ids().is_empty(), "containers left: {:?}", containerd.container_ids());
    assert!(kubelet.log().contains("sending SIGKILL"), "{}", kubelet.log_tail(40));

    // The pod's story, as `kubectl describe pod` shows it: the image, the container created
    // and started, then stopped.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client(&cluster), "default");
    let story = eventually(WAIT, "the kubelet's Events about pod graceful", || async {
        let params = rkube_client::ListParams::default().fields("involvedObject.name=graceful");
        let list = events.list(&params).await.ok()?;
        let said: Vec<(String, String, String)> = list
            .items
            .iter()
            .map(|e| {
                let path = e.involved_object.field_path.clone().unwrap_or_default();
                (e.reason.clone().unwrap_or_default(), e.message.clone().unwrap_or_default(), path)
            })
            .collect();
        said.iter().any(|(reason, ..)| reason == "Killing").then_some(said)
    })
    .await;
    let reasons: Vec<&str> = story.iter().map(|(reason, ..)| reason.as_str()).collect();
    for wanted in ["Pulled", "Created", "Started", "Killing"] {
        assert!(reasons.contains(&wanted), "no {wanted} in {story:?}");
    }
    assert!(
        story.iter().any(|(r, m, path)| r == "Pulled"
            && m.contains("already present on machine")
            && path == "spec.containers{main}"),
        "{story:?}"
    );
    assert!(story.iter().any(|(r, m, _)| r == "Started" && m == "Started container main"), "{story:?}");
    assert!(story.iter().any(|(r, m, _)| r == "Killing" && m == "Stopping container main"), "{story:?}");
}

#[tokio::test]
async fn pod_gets_an_ip_from_the_pod_cidr_and_serves_http_to_the_host() {
    let cluster = Cluster::start().await.expect("cluster");
    let containerd = Containerd::start().await.expect("containerd");
    let kubelet = Kubelet::start_containerd_with(&cluster, &containerd, "node-c4", &["--pod-cidr", "10.98.7.0/24"])
        .await
        .expect("kubelet");
    let pods: Api<Pod> = Api::namespaced(client(&cluster), "default");
    let web =
        serde_json::json!({"name": "web", "image": TEST_IMAGE, "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"]});
    pods.create(&PostParams::default(), &pod("web", "node-c4", "Always", web)).await.expect("create");
    let running = wait_phase(&pods, "web", "Running", &kubelet).await;
    let uid = running.metadata.uid.clone().expect("uid");
    let pod_ip =
        eventually(WAIT, "pod web to get an IP", || async { pods.get("web").await.ok()?.status?.pod_ip }).await;
    assert!(pod_ip.starts_with("10.98.7.") && pod_ip != "10.98.7.1", "podIP {pod_ip} not from 10.98.7.0/24");
    assert!(rkube_tests::node::pod_netns_exists(&uid));

    // A real HTTP request from the host to busybox httpd in the pod, through the bridge.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build().expect("http client");
    let body = eventually(WAIT, "httpd in the pod to answer", || async {
        let reply = http.get(format!("http://{pod_ip}:8080/passwd")).send().await.ok()?;
        reply.status().is_success().then_some(())?;
        reply.text().await.ok()
    })
    .await;
    assert!(body.contains("root:x:0:0"), "{body}");

    pods.delete("web", &DeleteParams::default()).await.expect("delete");
    eventually(WAIT, "pod web removed", || async { matches!(pods.get_opt("web").await, Ok(None)).then_some(()) }).await;
    assert!(!rkube_tests::node::pod_netns_exists(&uid), "the pod's network namespace outlived it");
    assert!(containerd.container_ids().is_empty(), "containers left: {:?}", containerd.container_ids());
}

#[tokio::test]
async fn a_crashing_container_restarts_with_growing_back_off() {
    let cluster = Cluster::start().await.expect("cluster");
    let containerd = Containerd::start().await.expect("containerd");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "node-c5").await.expect("kubelet");
    let pods: Api<Pod> = Api::namespaced(client(&cluster), "default");
    let crasher =
        serde_json::json!({"name": "main", "image": TEST_IMAGE, "command": ["sh", "-c", "echo crash; exit 7"]});
    pods.create(&PostParams::default(), &pod("crasher", "node-c5", "Always", crasher)).await.expect("create");

    let restarts = |pod: &Pod| pod.status.as_ref()?.container_statuses.as_ref()?.first().map(|s| s.restart_count);
    // The first restart is immediate; then the container waits in CrashLoopBackOff.
    let backing_off = eventually(WAIT, "crasher in CrashLoopBackOff after a restart", || async {
        let pod = pods.get("crasher").await.ok()?;
        let status = pod.status.as_ref()?.container_statuses.as_ref()?.first()?.clone();
        let waiting = status.state.as_ref()?.waiting.as_ref()?.reason.clone()?;
        (waiting == "CrashLoopBackOff" && status.restart_count >= 1).then_some(pod)
    })
    .await;
    let first_restarts = restarts(&backing_off).unwrap_or_default();
    let status = backing_off.status.clone().expect("status");
    let container = status.container_statuses.clone().unwrap_or_default()[0].clone();
    let last = container.last_state.and_then(|s| s.terminated).expect("lastState.terminated");
    assert_eq!(last.exit_code, 7);
    assert_eq!(status.phase.as_deref(), Some("Running"), "a restarting pod stays Running");
    let ready = status.conditions.unwrap_or_default().into_iter().find(|c| c.type_ == "Ready").map(|c| c.status);
    assert_eq!(ready.as_deref(), Some("False"));

    // The next restart waits for the back-off (10 s after the previous exit).
    let seen_at = std::time::Instant::now();
    eventually(WAIT, "crasher restarted again after its back-off", || async {
        let pod = pods.get("crasher").await.ok()?;
        (restarts(&pod)? > first_restarts).then_some(())
    })
    .await;
    let waited = seen_at.elapsed();
    assert!(
        waited >= Duration::from_secs(5),
        "restarted after {waited:?}: back-off not applied\n{}",
        kubelet.log_tail(30)
    );
    // The previous run's output is served with previous=true.
    let previous = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
        .get(format!("{}/containerLogs/default/crasher/main?previous=true", kubelet.url()))
        .send()
        .await
        .expect("previous logs");
    assert!(previous.status().is_success(), "{}", previous.status());
    assert_eq!(previous.text().await.expect("text"), "crash\n");
    let said = pod_events(&cluster, "crasher", "BackOff").await;
    assert!(
        said.iter().any(|(r, m)| r == "BackOff"
            && m.starts_with("Back-off restarting failed container main in pod crasher_default(")),
        "{said:?}"
    );
    pods.delete("crasher", &DeleteParams::default()).await.expect("delete");
    eventually(WAIT, "crasher removed", || async { matches!(pods.get_opt("crasher").await, Ok(None)).then_some(()) })
        .await;
    assert!(containerd.container_ids().is_empty(), "containers left: {:?}", containerd.container_ids());
}

#[tokio::test]
async fn a_restarted_kubelet_adopts_running_containers_without_restarting_them() {
    let cluster = Cluster::start().await.expect("cluster");
    let containerd = Containerd::start().await.expect("containerd");
    let mut kubelet = Kubelet::start_containerd(&cluster, &containerd, "node-c6").await.expect("kubelet");
    let pods: Api<Pod> = Api::namespaced(client(&cluster), "default");
    let sleeper = serde_json::json!({"name": "main", "image": TEST_IMAGE, "command": ["sleep", "3600"]});
    pods.create(&PostParams::default(), &pod("sleeper", "node-c6", "Always", sleeper)).await.expect("create");
    let before = wait_phase(&pods, "sleeper", "Running", &kubelet).await;
    let ids_before = containerd.container_ids();
    let pid_of = || {
        let output = containerd.ctr(&["tasks", "list"]).expect("ctr tasks list");
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    let tasks_before = pid_of();

    kubelet.restart().await.expect("restart");
    eventually(WAIT, "restarted kubelet to report ready", || async {
        let reply = reqwest::get(format!("{}/readyz", kubelet.url())).await.ok()?;
        reply.status().is_success().then_some(())
    })
    .await;
    // Ready means its informer has listed the pod, so the adopting sync has begun. Over two sync
    // periods it syncs the pod again at least once; neither sync may replace the container.
    let container_id = |pod: &Pod| pod.status.as_ref()?.container_statuses.as_ref()?.first()?.container_id.clone();
    let restart_count = |pod: &Pod| pod.status.as_ref()?.container_statuses.as_ref()?.first().map(|s| s.restart_count);
    stays_true(SYNC_FREQUENCY * 2, "the container, its task and the pod's status kept across the restart", || async {
        let after = pods.get("sleeper").await.expect("pod");
        container_id(&after) == container_id(&before)
            && restart_count(&after) == Some(0)
            && after.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            && containerd.container_ids() == ids_before
            && pid_of() == tasks_before
    })
    .await;
    let syncs = kubelet.metric("kubelet_pod_worker_duration_seconds_count").await;
    assert!(syncs >= 2.0, "the restarted kubelet synced the pod {syncs} times: adoption and a resync expected");
    let after = pods.get("sleeper").await.expect("pod");
    assert_eq!(container_id(&after), container_id(&before), "the container was replaced");
    assert_eq!(restart_count(&after), Some(0));
    assert_eq!(after.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Running"));
    assert_eq!(containerd.container_ids(), ids_before);
    assert_eq!(pid_of(), tasks_before, "the task (pid) changed across the kubelet restart");
    pods.delete("sleeper", &DeleteParams::default()).await.expect("delete");
    eventually(WAIT, "sleeper removed", || async { matches!(pods.get_opt("sleeper").await, Ok(None)).then_some(()) })
        .await;
}

#[tokio::test]
async fn logs_are_served_with_tail_lines_previous_and_follow() {
    let cluster = Cluster::start().await.expect("cluster");
    let containerd = Containerd::start().await.expect("containerd");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "node-c7").await.expect("kubelet");
    let pods: Api<Pod> = Api::namespaced(client(&cluster), "default");
    // Prints line 1..: a few at once, then one every 0.3 s, for following.
    let script = "i=1; while [ $i -le 200 ]; do echo line $i; i=$((i+1)); [ $i -gt 3 ] && sleep 0.3; done";
    let talker = serde_json::json!({"name": "main", "image": TEST_IMAGE, "command": ["sh", "-c", script]});
    pods.create(&PostParams::default(), &pod("talker", "node-c7", "Never", talker)).await.expect("create");
    wait_phase(&pods, "talker", "Running", &kubelet).await;
    let http = reqwest::Client::builder().no_proxy().build().expect("http client");
    let url = |query: &str| format!("{}/containerLogs/default/talker/main{query}", kubelet.url());

    let all = eventually(WAIT, "three lines logged", || async {
        let text = http.get(url("")).send().await.ok()?.text().await.ok()?;
        text.contains("line 3\n").then_some(text)
    })
    .await;
    assert!(all.starts_with("line 1\nline 2\nline 3\n"), "{all:?}");
    let last = http.get(url("?tailLines=1")).send().await.expect("tail").text().await.expect("text");
    assert_eq!(last.lines().count(), 1, "{last:?}");
    assert!(last.starts_with("line "), "{last:?}");

    // follow: lines keep arriving on one response.
    let mut follow = http.get(url("?follow=true&tailLines=1")).send().await.expect("follow");
    assert!(follow.status().is_success());
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    let start_lines = all.lines().count();
    while seen.lines().count() < 4 {
        let chunk = tokio::time::timeout_at(deadline, follow.chunk()).await.expect("follow stalled").expect("chunk");
        seen.push_str(&String::from_utf8_lossy(&chunk.expect("stream ended early")));
    }
    let numbers: Vec<u32> = seen.lines().filter_map(|line| line.strip_prefix("line ")?.parse().ok()).collect();
    assert!(numbers.windows(2).all(|pair| pair[1] == pair[0] + 1), "out of order: {seen:?}");
    assert!(numbers.last().is_some_and(|last| *last as usize > start_lines), "{seen:?}");

    let missing = http.get(url("?previous=true")).send().await.expect("previous");
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND, "no previous run yet");
    let nobody = http.get(format!("{}/containerLogs/default/nobody/main", kubelet.url())).send().await.expect("get");
    assert_eq!(nobody.status(), reqwest::StatusCode::NOT_FOUND);
    pods.delete("talker", &DeleteParams::default()).await.expect("delete");
    eventually(WAIT, "talker removed", || async { matches!(pods.get_opt("talker").await, Ok(None)).then_some(()) })
        .await;
}

fn ready_condition(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone())
}

#[tokio::test]
async fn readiness_probe_flips_ready() {
    let cluster = Cluster::start().await.expect("cluster");
    let containerd = Containerd::start().await.expect("containerd");
    let kubelet = Kubelet::start_containerd_with(&cluster, &containerd, "node-c8", &["--pod-cidr", "10.98.8.0/24"])
        .await
        .expect("kubelet");
    let pods: Api<Pod> = Api::namespaced(client(&cluster), "default");
    // httpd serves /srv; /srv/ready appears after 3 s and goes away 4 s later.
    let script = "mkdir -p /srv; httpd -p 8080 -h /srv; sleep 3; touch /srv/ready; sleep 4; rm /srv/ready; sleep 3600";
    let web = serde_json::json!({"name": "web", "image": TEST_IMAGE, "command": ["sh", "-c", script],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1}});
    pods.create(&PostParams::default(), &pod("web", "node-c8", "Always", web)).await.expect("create");

    let running = wait_phase(&pods, "web", "Running", &kubelet).await;
    assert_eq!(ready_condition(&running).as_deref(), Some("False"), "ready before the probe passed");
    let state = |want: &'static str| {
        let pods = pods.clone();
        async move {
            eventually(WAIT, &format!("Ready={want}"), || async {
                let pod = pods.get("web").await.ok()?;
                (ready_condition(&pod).as_deref() == Some(want)).then_some(pod)
            })
            .await
        }
    };
    let ready = state("True").await;
    let containers = ready.status.and_then(|s| s.container_statuses).unwrap_or_default();
    assert!(containers[0].ready);
    let unready = state("False").await;
    assert_eq!(unready.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Running"));
    assert_eq!(
        unready.status.and_then(|s| s.container_statuses).unwrap_or_default()[0].restart_count,
        0,
        "readiness must never restart a container"
    );
    // Every probe is counted, by type and result; the relist runs every --sync-frequency.
    let probes = |result: &str| format!("prober_probe_total{{probe_type=\"Readiness\",result=\"{result}\"}}");
    assert!(kubelet.metric(&probes("successful")).await >= 1.0 && kubelet.metric(&probes("failed")).await >= 1.0);
    assert_eq!(kubelet.metric("kubelet_started_containers_total{container_type=\"container\"}").await, 1.0);
    assert!(kubelet.metric("kubelet_pleg_relist_duration_seconds_count").await >= 1.0);
    pods.delete("web", &DeleteParams::default()).await.expect("delete");
    eventually(WAIT, "web removed", || async { matches!(pods.get_opt("web").await, Ok(None)).then_some(()) }).await;
}

#[tokio::test]
async fn failing_liveness_probe_restarts_the_container() {
    let cluster = Cluster::start().await.expect("cluster");
    let containerd = Containerd::start().await.expect("containerd");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "node-c9").await.expect("kubelet");
    let pods: Api<Pod> = Api::namespaced(client(&cluster), "default");
    let script = "touch /tmp/alive; sleep 2; rm /tmp/alive; sleep 3600";
    let app = serde_json::json!({"name": "main", "image": TEST_IMAGE, "command": ["sh", "-c", script],
        "livenessProbe": {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1, "failureThreshold": 2}});
    pods.create(&PostParams::default(), &pod("app", "node-c9", "Always", app)).await.expect("create");
    wait_phase(&pods, "app", "Running", &kubelet).await;
    let restarted = eventually(WAIT, "app restarted after its liveness probe failed", || async {
        let pod = pods.get("app").await.ok()?;
        let status = pod.status?.container_statuses?.first()?.clone();
        (status.restart_count >= 1).then_some(status)
    })
    .await;
    let last = restarted.last_state.and_then(|s| s.terminated).expect("lastState.terminated");
    assert_eq!(last.exit_code, 137, "sh as PID 1 ignores SIGTERM, so the kill is a SIGKILL");
    assert!(kubelet.log().contains("liveness probe failed"), "{}", kubelet.log_tail(30));
    let said = pod_events(&cluster, "app", "Killing").await;
    assert!(said.iter().any(|(r, m)| r == "Unhealthy" && m == "Liveness probe failed"), "{said:?}");
    assert!(
        said.iter().any(|(r, m)| r == "Killing" && m == "Container main failed liveness probe, will be restarted"),
        "{said:?}"
    );
    pods.delete("app", &DeleteParams::default()).await.expect("delete");
    eventually(WAIT, "app removed", || async { matches!(pods.get_opt("app").await, Ok(None)).then_some(()) }).await;
}

/// The (reason, message) of every Event about pod `name`, once one with `reason` is there.
async fn pod_events(cluster: &Cluster, name: &str, reason: &str) -> Vec<(String, String)> {
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client(cluster), "default");
    eventually(WAIT, &format!("a {reason} Event about pod {name}"), || async {
        let params = rkube_client::ListParams::default().fields(&format!("involvedObject.name={name}"));
        let list = events.list(&params).await.ok()?;
        let said: Vec<(String, String)> = list
            .items
            .iter()
            .map(|e| (e.reason.clone().unwrap_or_default(), e.message.clone().unwrap_or_default()))
            .collect();
        said.iter().any(|(r, _)| r == reason).then_some(said)
    })
    .await
}

/// The numbers `n` of the `<word> n` lines in `text`.
fn numbered(text: &str, word: &str) -> Vec<u64> {
    text.lines().filter_map(|line| line.strip_prefix(word)?.trim().parse().ok()).collect()
}

fn consecutive(numbers: &[u64]) -> bool {
    numbers.windows(2).all(|pair| pair[1] == pair[0] + 1)
}

#[tokio::test]
async fn logs_are_in_the_cri_format_rotate_and_keep_flowing_while_the_kubelet_is_down() {
    let cluster = Cluster::start().await.expect("cluster");
    let containerd = Containerd::start().await.expect("containerd");
    let args = ["--container-log-max-size", "4Ki", "--container-log-max-files", "3"];
    let mut kubelet = Kubelet::start_containerd_with(&cluster, &containerd, "node-c10", &args).await.expect("kubelet");
    let pods: Api<Pod> = Api::namespaced(client(&cluster), "default");
    let http = reqwest::Client::builder().no_proxy().build().expect("http client");
    let base = kubelet.url(); // the same after a restart (same flags)
    let url = |pod: &str, query: &str| format!("{base}/containerLogs/default/{pod}/main{query}");

    // Both streams go to the file, each record saying which. (stdout and stderr are two pipes
    // read by two threads, so lines written close together on both may be logged in either
    // order, as with any container runtime.)
    let streams = serde_json::json!({"name": "main", "image": TEST_IMAGE,
        "command": ["sh", "-c", "echo out; echo err >&2"]});
    pods.create(&PostParams::default(), &pod("streams", "node-c10", "Never", streams)).await.expect("create");
    let streams = wait_phase(&pods, "streams", "Succeeded", &kubelet).await;
    let both = eventually(WAIT, "both streams served", || async {
        let text = http.get(url("streams", "")).send().await.ok()?.text().await.ok()?;
        (text.lines().count() == 2).then_some(text)
    })
    .await;
    assert!(both.contains("out\n") && both.contains("err\n"), "{both:?}");
    let raw = std::fs::read_to_string(
        kubelet
            .root_dir()
            .join("pods")
            .join(format!("default_streams_{}", streams.metadata.uid.clone().unwrap_or_default()))
            .join("main/0.log"),
    )
    .expect("0.log");
    let records: Vec<&str> = raw.lines().filter_map(|line| line.split_once(' ').map(|(_, rest)| rest)).collect();
    assert!(records.contains(&"stdout F out") && records.contains(&"stderr F err"), "{raw:?}");

    // A burst: 400 lines (~18 KB, so several rotations), a 20,000-byte line and "late".
    let script = "i=1; while [ $i -le 400 ]; do echo line $i; i=$((i+1)); done; \
                  head -c 20000 /dev/zero | tr '\\0' x; echo; echo late";
    let burst = serde_json::json!({"name": "main", "image": TEST_IMAGE, "command": ["sh", "-c", script]});
    pods.create(&PostParams::default(), &pod("burst", "node-c10", "Never", burst)).await.expect("create");
    let done = wait_phase(&pods, "burst", "Succeeded", &kubelet).await;
    let text = eventually(WAIT, "the burst's last line served", || async {
        let text = http.get(url("burst", "")).send().await.ok()?.text().await.ok()?;
        text.ends_with("late\n").then_some(text)
    })
    .await;
    // Only the newest 3 files are kept: the oldest lines were rotated away; what is left is
    // whole and in order, the long line reassembled from its 16 KiB parts.
    let lines: Vec<&str> = text.lines().collect();
    let [.., long, late] = lines.as_slice() else { panic!("too few lines: {text:?}") };
    assert_eq!((long.len(), long.trim_matches('x')), (20_000, ""));
    assert_eq!(*late, "late");
    let numbers = numbered(&text, "line ");
    assert!(consecutive(&numbers) && numbers.last() == Some(&400), "{numbers:?}");
    assert!(numbers[0] > 1, "nothing was rotated away: {:?}", &numbers[..3]);
    let uid = done.metadata.uid.clone().unwrap_or_default();
    let dir = kubelet.root_dir().join("pods").join(format!("default_burst_{uid}")).join("main");
    let rotated: Vec<String> = std::fs::read_dir(&dir)
        .expect("log dir")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("0.log."))
        .collect();
    assert_eq!(rotated.len(), 2, "max-files 3 keeps the current file and 2 rotated: {rotated:?}");

    // timestamps, sinceTime, limitBytes.
    let stamped = http.get(url("burst", "?timestamps=true&tailLines=1")).send().await.expect("get");
    let stamped = stamped.text().await.expect("text");
    let (time, rest) = stamped.split_once(' ').expect("a timestamp");
    assert_eq!(rest, "late\n");
    let written: jiff::Timestamp = time.parse().expect("RFC 3339 time");
    assert!(jiff::Timestamp::now().duration_since(written).as_secs() < 120, "{time}");
    let since = http.get(url("burst", &format!("?sinceTime={time}"))).send().await.expect("get");
    let since = since.text().await.expect("text");
    assert!(since.lines().any(|line| line == "late") && !since.contains("line "), "{since:?}");
    let limited = http.get(url("burst", "?limitBytes=3")).send().await.expect("get");
    assert_eq!(limited.text().await.expect("text").len(), 3);
    let bad = http.get(url("burst", "?sinceSeconds=0")).send().await.expect("get");
    assert_eq!(bad.status(), reqwest::StatusCode::BAD_REQUEST);
    // A follow of a container that has stopped ends after what is there.
    let followed = tokio::time::timeout(Duration::from_secs(15), async {
        http.get(url("burst", "?follow=true&tailLines=1")).send().await.ok()?.text().await.ok()
    })
    .await;
    assert_eq!(followed.expect("follow of a stopped container did not end"), Some("late\n".to_string()));

    // A ticker: 20 lines every 0.2 s, so the 4 KiB file rotates about every second.
    let script = "n=1; while true; do j=0; while [ $j -lt 20 ]; do echo tick $n; n=$((n+1)); j=$((j+1)); done; \
                  sleep 0.2; done";
    let ticker = serde_json::json!({"name": "main", "image": TEST_IMAGE, "command": ["sh", "-c", script]});
    let ticker_pod = pods.create(&PostParams::default(), &pod("ticker", "node-c10", "Always", ticker)).await;
    let uid = ticker_pod.expect("create").metadata.uid.unwrap_or_default();
    wait_phase(&pods, "ticker", "Running", &kubelet).await;
    let mut follow = http.get(url("ticker", "?follow=true&tailLines=1")).send().await.expect("follow");
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while numbered(&seen, "tick ").len() < 300 {
        let chunk = tokio::time::timeout_at(deadline, follow.chunk()).await.expect("follow stalled").expect("chunk");
        seen.push_str(&String::from_utf8_lossy(&chunk.expect("stream ended early")));
    }
    let numbers = numbered(&seen, "tick ");
    assert!(consecutive(&numbers), "lines lost or repeated across rotations: {numbers:?}");
    drop(follow);

    // The kubelet dies; the log driver (a child of containerd's shim) keeps writing.
    let log = kubelet.root_dir().join("pods").join(format!("default_ticker_{uid}")).join("main").join("0.log");
    let last_tick = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        numbered(&text.lines().map(crilog_content).collect::<Vec<_>>().join("\n"), "tick ").last().copied()
    };
    kubelet.kill();
    let at_kill = last_tick().unwrap_or(0);
    eventually(WAIT, "the log growing while the kubelet is down", || async {
        last_tick().filter(|tick| *tick > at_kill + 100).map(|_| ())
    })
    .await;
    kubelet.restart().await.expect("kubelet restarts");
    let after = eventually(WAIT, "the log served again after the restart", || async {
        let text = http.get(url("ticker", "?tailLines=5")).send().await.ok()?.text().await.ok()?;
        numbered(&text, "tick ").last().copied().filter(|tick| *tick > at_kill + 100)
    })
    .await;
    assert!(after > at_kill + 100);
    pods.delete("ticker", &DeleteParams::default()).await.expect("delete");
    eventually(WAIT, "ticker removed", || async { matches!(pods.get_opt("ticker").await, Ok(None)).then_some(()) })
        .await;
}

/// The content of one CRI log record (`<time> <stream> <tag> <content>`).
fn crilog_content(line: &str) -> &str {
    line.splitn(4, ' ').nth(3).unwrap_or_default()
}

fn pod_with_init(name: &str, node: &str, restart_policy: &str, init: serde_json::Value, app: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node, "restartPolicy": restart_policy, "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "work", "emptyDir": {}}],
            "initContainers": init,
            "containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sh", "-c", app],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}]}]
        }
    }))
    .expect("pod")
}

fn init_container(name: &str, script: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "image": TEST_IMAGE, "command": ["sh", "-c", script],
        "volumeMounts": [{"name": "work", "mountPath": "/work"}]})
}

fn condition(pod: &Pod, type_: &str) -> Option<String> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_).map(|c| c.status.clone())
}

#[tokio::test]
async fn init_containers_run_in_order_before_the_app_and_a_failed_one_is_retried_or_fails_the_pod() {
    let cluster = Cluster::start().await.expect("cluster");
    let containerd = Containerd::start().await.expect("containerd");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "node-c11").await.expect("kubelet");
    let pods: Api<Pod> = Api::namespaced(client(&cluster), "default");

    // Two init containers in order (the second waits a moment: the app must still wait for
    // it), the first fails once and is retried; then the app reads what they wrote.
    let init = serde_json::json!([
        init_container(
            "setup",
            "if [ -e /work/tried ]; then echo one >> /work/out; else touch /work/tried; exit 3; fi"
        ),
        init_container("migrate", "sleep 2; echo two >> /work/out"),
    ]);
    let app = "cat /work/out; echo app >> /work/out; sleep 3600";
    pods.create(&PostParams::default(), &pod_with_init("ordered", "node-c11", "Always", init, app))
        .await
        .expect("create");
    let pending = eventually(WAIT, "ordered Pending and not Initialized while initializing", || async {
        let pod = pods.get("ordered").await.ok()?;
        let initializing = condition(&pod, "Initialized").as_deref() == Some("False");
        (initializing && pod.status.as_ref()?.phase.as_deref() == Some("Pending")).then_some(pod)
    })
    .await;
    let statuses = pending.status.as_ref().and_then(|s| s.init_container_statuses.clone()).unwrap_or_default();
    assert_eq!(statuses.len(), 2, "{:?}", pending.status);
    let running = wait_phase(&pods, "ordered", "Running", &kubelet).await;
    assert_eq!(condition(&running, "Initialized").as_deref(), Some("True"));
    let init = running.status.as_ref().and_then(|s| s.init_container_statuses.clone()).unwrap_or_default();
    let summary: Vec<(String, i32, Option<i32>)> = init
        .iter()
        .map(|s| {
            let exit = s.state.as_ref().and_then(|state| state.terminated.as_ref()).map(|t| t.exit_code);
            (s.name.clone(), s.restart_count, exit)
        })
        .collect();
    assert_eq!(
        summary,
        [("setup".to_string(), 1, Some(0)), ("migrate".to_string(), 0, Some(0))],
        "setup failed once (exit 3), was retried and exited 0; then migrate ran once"
    );
    let last = init[0].last_state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code);
    assert_eq!(last, Some(3));
    let log = eventually(WAIT, "the app's output", || async {
        let log = log_of(&kubelet, &running, "main");
        log.contains("two").then_some(log)
    })
    .await;
    let printed: Vec<&str> = log.lines().map(|line| line.rsplit(' ').next().unwrap_or_default()).collect();
    assert_eq!(printed, ["one", "two"], "init containers ran in order, both before the app: {log:?}");
    let started = |kind: &str| format!("kubelet_started_containers_total{{container_type=\"{kind}\"}}");
    let starts = (kubelet.metric(&started("init_container")).await, kubelet.metric(&started("container")).await);
    assert_eq!(starts, (3.0, 1.0), "setup twice, migrate once, the app once");

    // Under restartPolicy Never a failed init container fails the pod; the app never starts.
    let init = serde_json::json!([init_container("broken", "echo cannot; exit 1")]);
    pods.create(&PostParams::default(), &pod_with_init("doomed", "node-c11", "Never", init, "echo ran"))
        .await
        .expect("create");
    let failed = wait_phase(&pods, "doomed", "Failed", &kubelet).await;
    let app = failed.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default();
    let reason = app[0].state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.clone());
    assert_eq!(reason.as_deref(), Some("PodInitializing"), "{app:?}");
    let uid = failed.metadata.uid.clone().unwrap_or_default();
    assert!(
        !containerd.container_ids().iter().any(|id| id.starts_with(&uid) && id.contains("-main-")),
        "the app container was created: {:?}",
        containerd.container_ids()
    );
    for name in ["ordered", "doomed"] {
        pods.delete(name, &DeleteParams::default()).await.expect("delete");
    }
    eventually(WAIT, "pods removed", || async {
        let left = pods.list(&Default::default()).await.ok()?.items.len();
        (left == 0).then_some(())
    })
    .await;
}
