//! `kubectl logs [-f]` end to end: a real container on containerd writes, the real rkubelet
//! serves its log, and the apiserver's `pods/log` proxies it to the real kubectl and to a
//! streaming HTTP client. Needs root and `make deps` (containerd, runc, busybox-static).

use std::time::Duration;

use rkube_tests::node::{Containerd, Kubelet, TEST_IMAGE};
use rkube_tests::{Api, Cluster, eventually, venv_bin};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn logs_and_follow_stream_from_a_real_container_through_the_apiserver() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let containerd = Containerd::start().await.expect("containerd starts");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "logs-node").await.expect("kubelet starts");
    let api = Api::new(cluster.url());
    let script = "echo first; sleep 3; echo second; sleep 60";
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talker"},
        "spec": {"nodeName": "logs-node", "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sh", "-c", script]}]}});
    api.create("/api/v1/namespaces/default/pods", &pod).await;
    let log_url = format!("{}/api/v1/namespaces/default/pods/talker/log", cluster.url());
    eventually(WAIT, "the container's first line in its log", || async {
        let text = reqwest::get(&log_url).await.ok()?.text().await.ok()?;
        text.contains("first").then_some(())
    })
    .await;

    // Follow: the stream delivers "second" when the container writes it, without ending.
    let mut response = reqwest::get(format!("{log_url}?follow=true")).await.expect("follow request");
    assert_eq!(response.status(), 200);
    let mut seen = String::new();
    let followed = tokio::time::timeout(Duration::from_secs(20), async {
        while !seen.contains("second") {
            match response.chunk().await {
                Ok(Some(bytes)) => seen.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return false,
            }
        }
        true
    })
    .await;
    assert_eq!(
        followed,
        Ok(true),
        "follow did not stream 'second' (got {seen:?}); kubelet log:\n{}",
        kubelet.log_tail(30)
    );
    assert!(seen.contains("first"), "{seen:?}");

    // The real kubectl reads the same log through the apiserver.
    let home = tempfile::tempdir().expect("home");
    let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig");
    let out = std::process::Command::new(venv_bin("kubectl"))
        .args(["logs", "talker"])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", home.path())
        .output()
        .expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kubectl logs failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["first", "second"], "{stdout}");
}
