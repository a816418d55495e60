//! Image pulls by the real `rkubelet` from a real loopback registry (Debian's
//! `docker-registry`) into a private containerd, against real etcd and the real apiserver:
//! pods whose image is only in the registry run it, `imagePullPolicy` is honoured, and a
//! failed pull shows as `ErrImagePull`, then `ImagePullBackOff`. Needs root and `make deps`
//! (containerd, runc, busybox-static, docker-registry).

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ContainerStateWaiting, Pod};
use rkube_client::{Api, Client, Config, ListParams, PostParams, WatchEvent, WatchParams};
use rkube_tests::node::{Containerd, Kubelet};
use rkube_tests::registry::{BLOB_BYTES, Format, Registry};
use rkube_tests::{Cluster, eventually};

const WAIT: Duration = Duration::from_secs(90);

fn client(cluster: &Cluster) -> Client {
    Client::new(Config::new(cluster.url().parse().expect("apiserver URL"))).expect("client")
}

/// A pod with one container `main` running `script` in `image`; `policy` None leaves the
/// apiserver's default.
fn pod(name: &str, node: &str, image: &str, policy: Option<&str>, script: &str) -> Pod {
    let mut container = serde_json::json!({"name": "main", "image": image, "command": ["sh", "-c", script]});
    if let Some(policy) = policy {
        container["imagePullPolicy"] = policy.into();
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": node, "restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [container]}
    }))
    .expect("pod")
}

/// The script that proves which image runs: the marker and the checksum of the 3 MiB blob.
const SHOW_IMAGE: &str = "cat /rkube-image; sha256sum /rkube-blob.bin; wc -c < /rkube-blob.bin";

async fn wait_succeeded(pods: &Api<Pod>, name: &str, kubelet: &Kubelet, registry: &Registry) -> Pod {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(pod) = pods.get(name).await {
                match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
                    Some("Succeeded") => return Ok(pod),
                    Some("Failed") => return Err(pod),
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    match found {
        Ok(Ok(pod)) => pod,
        Ok(Err(pod)) => panic!("pod {name} failed: {:?}\nkubelet log:\n{}", pod.status, kubelet.log_tail(40)),
        Err(_) => panic!(
            "pod {name} not Succeeded after {WAIT:?}: {:?}\nkubelet log:\n{}\nregistry log:\n{}",
            pods.get(name).await.ok().and_then(|p| p.status),
            kubelet.log_tail(40),
            registry.log_tail(20)
        ),
    }
}

fn log_of(kubelet: &Kubelet, pod: &Pod) -> String {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let path = kubelet.root_dir().join("pods").join(format!("default_{name}_{uid}")).join("main").join("0.log");
    std::fs::read_to_string(&path).unwrap_or_else(|error| format!("(cannot read {}: {error})", path.display()))
}

/// The value of the sample `name` (with its labels, e.g. `x_total{result="success"}`) on the
/// kubelet's /metrics, 0 when absent.
async fn metric(kubelet: &Kubelet, sample: &str) -> f64 {
    kubelet.metric(sample).await
}

fn images(containerd: &Containerd) -> String {
    let output = containerd.ctr(&["images", "list", "--quiet"]).expect("ctr images list");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn pods_pull_their_image_from_a_registry_once_and_the_image_survives_garbage_collection() {
    let cluster = Cluster::start().await.expect("cluster");
    let containerd = Containerd::start().await.expect("containerd");
    let registry = Registry::start().await.expect("registry");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "node-p1").await.expect("kubelet");
    let pushed = registry.push_test_image("rkube/busybox", "v1", "pushed v1").await.expect("push");
    assert!(!images(&containerd).contains(&pushed.reference), "the image is in containerd before any pull");
    let pods: Api<Pod> = Api::namespaced(client(&cluster), "default");

    // Two pods wanting the absent image at once (policy defaulted: IfNotPresent for a tag).
    for name in ["first", "second"] {
        pods.create(&PostParams::default(), &pod(name, "node-p1", &pushed.reference, None, SHOW_IMAGE))
            .await
            .expect("create");
    }
    for name in ["first", "second"] {
        let done = wait_succeeded(&pods, name, &kubelet, &registry).await;
        let policy = done.spec.as_ref().and_then(|s| s.containers[0].image_pull_policy.clone());
        assert_eq!(policy.as_deref(), Some("IfNotPresent"));
        let log = log_of(&kubelet, &done);
        assert!(log.contains("pushed v1"), "{name}: marker missing from the log: {log}");
        assert!(log.contains(&pushed.blob_sha256), "{name}: the 3 MiB blob arrived damaged: {log}");
        assert!(log.contains(&BLOB_BYTES.to_string()), "{name}: {log}");
    }
    assert!(images(&containerd).contains(&pushed.reference), "{}", images(&containerd));
    // Serialized per image: the second pod found the image the first one pulled.
    assert_eq!(metric(&kubelet, "kubelet_image_pulls_total{result=\"success\"}").await, 1.0);
    assert_eq!(metric(&kubelet, "kubelet_image_pull_duration_seconds_count").await, 1.0);
    assert_eq!(kubelet.log().matches("image pulled").count(), 1, "{}", kubelet.log_tail(40));
    // The pod that pulled says so in its Events: Pulling, then Pulled with the time it took.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client(&cluster), "default");
    let story = eventually(WAIT, "Pulling and Pulled Events", || async {
        let list = events.list(&rkube_client::ListParams::default()).await.ok()?;
        let said: Vec<(String, String)> = list
            .items
            .iter()
            .map(|e| (e.reason.clone().unwrap_or_default(), e.message.clone().unwrap_or_default()))
            .collect();
        let pulled = said.iter().any(|(r, m)| r == "Pulled" && m.starts_with("Successfully pulled image"));
        (pulled && said.iter().any(|(r, _)| r == "Pulling")).then_some(said)
    })
    .await;
    assert!(
        story.iter().any(|(r, m)| r == "Pulling" && m == &format!("Pulling image \"{}\"", pushed.reference)),
        "{story:?}"
    );

    // The GC labels keep content and snapshots alive without the pull's lease: trigger a
    // synchronous garbage collection (removing another image does) and use the image again.
    let labels = String::from_utf8_lossy(&containerd.ctr(&["content", "list"]).expect("ctr content").stdout)
        .lines()
        .find(|line| line.starts_with(&pushed.layer_digest))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(labels.contains("containerd.io/uncompressed=sha256:"), "layer not labelled: {labels:?}");
    let tagged = containerd.ctr(&["images", "tag", &pushed.reference, "example.com/gc-trigger:x"]).expect("tag");
    assert!(tagged.status.success(), "{}", String::from_utf8_lossy(&tagged.stderr));
    let removed = containerd.ctr(&["images", "rm", "--sync", "example.com/gc-trigger:x"]).expect("rm");
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    let content =
        String::from_utf8_lossy(&containerd.ctr(&["content", "list", "--quiet"]).expect("ctr").stdout).into_owned();
    assert!(content.contains(&pushed.layer_digest), "the pulled layer was collected: {content}");
    pods.create(&PostParams::default(), &pod("third", "node-p1", &pushed.reference, None, SHOW_IMAGE))
        .await
        .expect("create");
    let third = wait_succeeded(&pods, "third", &kubelet, &registry).await;
    assert!(log_of(&kubelet, &third).contains(&pushed.blob_sha256));
    assert_eq!(
        metric(&kubelet, "kubelet_image_pulls_total{result=\"success\"}").await,
        1.0,
        "IfNotPresent pulled a present image"
    );
}

#[tokio::test]
async fn pull_policy_always_follows_the_tag_and_never_refuses_to_pull() {
    let cluster = Cluster::start().await.expect("cluster");
    let containerd = Containerd::start().await.expect("containerd");
    let registry = Registry::start().await.expect("registry");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "node-p2").await.expect("kubelet");
    let pods: Api<Pod> = Api::namespaced(client(&cluster), "default");
    let first = registry.push_test_image("rkube/moving", "stable", "first push").await.expect("push");

    // Never: the image is in the registry but not in containerd.
    pods.create(&PostParams::default(), &pod("never", "node-p2", &first.reference, Some("Never"), SHOW_IMAGE))
        .await
        .expect("create");
    let waiting = eventually(WAIT, "pod never waiting with ErrImageNeverPull", || async {
        let waiting = waiting_of(&pods.get("never").await.ok()?)?;
        (waiting.reason.as_deref() == Some("ErrImageNeverPull")).then_some(waiting)
    })
    .await;
    let message = waiting.message.unwrap_or_default();
    assert!(message.contains("not present with pull policy of Never"), "{message}");
    assert!(!images(&containerd).contains(&first.reference), "Never pulled the image");

    // Always: runs what the tag points at, and again after the tag moved.
    pods.create(&PostParams::default(), &pod("always1", "node-p2", &first.reference, Some("Always"), SHOW_IMAGE))
        .await
        .expect("create");
    let done = wait_succeeded(&pods, "always1", &kubelet, &registry).await;
    assert!(log_of(&kubelet, &done).contains("first push"), "{}", log_of(&kubelet, &done));
    let second = registry.push_test_image("rkube/moving", "stable", "second push").await.expect("push");
    assert_ne!(first.digest, second.digest);
    pods.create(&PostParams::default(), &pod("always2", "node-p2", &second.reference, Some("Always"), SHOW_IMAGE))
        .await
        .expect("create");
    let done = wait_succeeded(&pods, "always2", &kubelet, &registry).await;
    let log = log_of(&kubelet, &done);
    assert!(log.contains("second push") && log.contains(&second.blob_sha256), "{log}");
    assert_eq!(kubelet.log().matches("image pulled").count(), 2, "{}", kubelet.log_tail(40));

    // As in Kubernetes, Always with an unreachable registry fails the start although the
    // image is present.
    let host = registry.host();
    drop(registry);
    pods.create(&PostParams::default(), &pod("offline", "node-p2", &second.reference, Some("Always"), SHOW_IMAGE))
        .await
        .expect("create");
    let waiting = eventually(WAIT, "pod offline waiting with an image pull error", || async {
        let waiting = waiting_of(&pods.get("offline").await.ok()?)?;
        waiting.reason.as_deref().is_some_and(|reason| reason.contains("ImagePull")).then_some(waiting)
    })
    .await;
    let message = waiting.message.unwrap_or_default();
    let request = format!("pulling {}: GET http://{host}/v2/rkube/moving/manifests/stable: ", second.reference);
    assert!(message.contains(&request), "{message}");
    assert!(images(&containerd).contains(&second.reference), "the image should still be present");
}

fn waiting_of(pod: &Pod) -> Option<ContainerStateWaiting> {
    pod.status.as_ref()?.container_statuses.as_ref()?.first()?.state.as_ref()?.waiting.clone()
}

#[tokio::test]
async fn a_missing_tag_is_err_image_pull_then_image_pull_back_off_and_a_docker_manifest_pulls() {
    let cluster = Cluster::start().await.expect("cluster");
    let containerd = Containerd::start().await.expect("containerd");
    let registry = Registry::start().await.expect("registry");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "node-p3").await.expect("kubelet");
    registry.push_test_image("rkube/busybox", "v1", "present").await.expect("push");
    let pods: Api<Pod> = Api::namespaced(client(&cluster), "default");
    let image = format!("{}/rkube/busybox:no-such-tag", registry.host());

    // Every status write is an event: the short-lived ErrImagePull is seen, not polled for.
    let rv = pods.list(&ListParams::default()).await.expect("list").metadata.resource_version.expect("rv");
    let mut events = pods.watch(&WatchParams::default(), &rv).await.expect("watch");
    pods.create(&PostParams::default(), &pod("missing", "node-p3", &image, None, "true")).await.expect("create");
    let mut reasons: Vec<(String, String)> = Vec::new();
    let seen = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            let (WatchEvent::Added(pod) | WatchEvent::Modified(pod)) = event.expect("watch event") else { continue };
            if pod.metadata.name.as_deref() != Some("missing") {
                continue;
            }
            if let Some(waiting) = waiting_of(&pod) {
                let entry = (waiting.reason.unwrap_or_default(), waiting.message.unwrap_or_default());
                if reasons.last() != Some(&entry) {
                    reasons.push(entry);
                }
            }
            if reasons.iter().any(|(reason, _)| reason == "ImagePullBackOff") {
                return;
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "no ImagePullBackOff after {WAIT:?}; reasons seen: {reasons:?}\n{}", kubelet.log_tail(30));
    let pulled = reasons.iter().position(|(reason, _)| reason == "ErrImagePull");
    let backoff = reasons.iter().position(|(reason, _)| reason == "ImagePullBackOff");
    assert!(pulled.is_some_and(|at| Some(at) < backoff), "ErrImagePull must come first: {reasons:?}");
    for (reason, message) in reasons.iter().filter(|(reason, _)| reason.contains("ImagePull")) {
        assert!(
            message.contains(&format!("pulling {image}: manifest unknown (404)")),
            "{reason} message does not name the registry's answer: {message}"
        );
    }
    let phase = pods.get("missing").await.expect("pod").status.and_then(|s| s.phase);
    assert_eq!(phase.as_deref(), Some("Pending"));
    assert_eq!(metric(&kubelet, "kubelet_image_pulls_total{result=\"error\"}").await, 1.0, "one pull per back-off");
    assert!(!images(&containerd).contains("no-such-tag"));

    // The Docker layout (schema 2 manifest and Docker media types, no index) pulls too.
    let docker = registry.push("rkube/docker", "v1", "docker layout", Format::DockerManifest).await.expect("push");
    pods.create(&PostParams::default(), &pod("docker", "node-p3", &docker.reference, None, SHOW_IMAGE))
        .await
        .expect("create");
    let done = wait_succeeded(&pods, "docker", &kubelet, &registry).await;
    let log = log_of(&kubelet, &done);
    assert!(log.contains("docker layout") && log.contains(&docker.blob_sha256), "{log}");
}

#[tokio::test]
async fn a_private_registry_pulls_with_the_pods_image_pull_secret_and_refuses_without() {
    let cluster = Cluster::start().await.expect("cluster");
    let containerd = Containerd::start().await.expect("containerd");
    let registry = Registry::start_with_login("puller", "pull-Pa55").await.expect("registry with a login");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "node-p9").await.expect("kubelet");
    let private = registry.push_test_image("team/private", "v1", "pulled-with-a-secret").await.expect("push");
    let other = registry.push_test_image("team/other", "v1", "never-pulled").await.expect("push");
    let client = client(&cluster);

    let config = serde_json::json!({"auths": {registry.host(): {"username": "puller", "password": "pull-Pa55"}}});
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "regcred"}, "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config.to_string()}
    }))
    .expect("secret");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), "default");
    secrets.create(&PostParams::default(), &secret).await.expect("create the pull secret");

    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut with_secret = pod("private", "node-p9", &private.reference, None, SHOW_IMAGE);
    if let Some(spec) = with_secret.spec.as_mut() {
        spec.image_pull_secrets =
            Some(vec![k8s_openapi::api::core::v1::LocalObjectReference { name: "regcred".into() }]);
    }
    pods.create(&PostParams::default(), &with_secret).await.expect("create");
    let pulled = wait_succeeded(&pods, "private", &kubelet, &registry).await;
    assert!(log_of(&kubelet, &pulled).contains("pulled-with-a-secret"), "{}", log_of(&kubelet, &pulled));

    // Without the secret the registry says no, and the pod says why.
    pods.create(&PostParams::default(), &pod("anonymous", "node-p9", &other.reference, None, SHOW_IMAGE))
        .await
        .expect("create");
    let waiting = eventually(WAIT, "the refused pull in the pod's status", || async {
        let waiting = waiting_of(&pods.get("anonymous").await.ok()?)?;
        matches!(waiting.reason.as_deref(), Some("ErrImagePull" | "ImagePullBackOff")).then_some(waiting)
    })
    .await;
    let message = waiting.message.unwrap_or_default();
    assert!(message.contains("(401)"), "{message}");
    assert!(!kubelet.log_tail(400).contains("pull-Pa55"), "the password reached the kubelet's log");
}
