//! `kubectl logs [-f]` end to end: a real container on containerd writes, the real rkubelet
//! serves its log, and the apiserver's `pods/log` proxies it to the real kubectl and to a
//! streaming HTTP client. Needs root and `make deps` (containerd, runc, busybox-static).

use std::time::Duration;

use rkube_tests::kubectl::Rkubectl;
use rkube_tests::node::{Containerd, Kubelet, TEST_IMAGE};
use rkube_tests::{Api, Cluster, eventually, venv_bin};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

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

    // --timestamps and --since reach the kubelet: each line carries the time it was written.
    let out = std::process::Command::new(venv_bin("kubectl"))
        .args(["logs", "talker", "--timestamps", "--since=1h"])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", home.path())
        .output()
        .expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kubectl logs --timestamps failed: {}", String::from_utf8_lossy(&out.stderr));
    let stamped: Vec<(jiff::Timestamp, &str)> = stdout
        .lines()
        .map(|line| {
            let (time, text) = line.split_once(' ').expect("a timestamp before the text");
            (time.parse().unwrap_or_else(|e| panic!("{time:?} is not a time: {e}")), text)
        })
        .collect();
    assert_eq!(stamped.iter().map(|(_, text)| *text).collect::<Vec<_>>(), ["first", "second"]);
    let gap = stamped[1].0.duration_since(stamped[0].0).as_secs_f64();
    assert!((2.5..30.0).contains(&gap), "the script sleeps 3 s between the lines, the times say {gap}s");
}

#[tokio::test]
async fn rkubectl_logs_follow_streams_new_lines_with_timestamps_and_limits() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let containerd = Containerd::start().await.expect("containerd starts");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "logs-node-2").await.expect("kubelet starts");
    let api = Api::new(cluster.url());
    let script = "i=1; while true; do echo tick $i; i=$((i+1)); sleep 0.5; done";
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ticker"},
        "spec": {"nodeName": "logs-node-2", "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sh", "-c", script]}]}});
    api.create("/api/v1/namespaces/default/pods", &pod).await;
    let rkubectl = Rkubectl::new(&cluster);
    let ticks = |text: &str| -> Vec<u64> {
        text.lines().filter_map(|line| line.rsplit(' ').next()?.parse().ok()).collect::<Vec<u64>>()
    };
    let before = eventually(WAIT, "ticks in the log", || async {
        let ran = rkubectl.run(&["logs", "ticker"]).await;
        let seen = ticks(&ran.stdout);
        (ran.code == Some(0) && seen.len() >= 2).then_some(seen)
    })
    .await;
    let last_before = *before.last().expect("a tick");

    // -f: lines written after the command started arrive while it runs.
    let mut follow = rkubectl.command(&["logs", "-f", "ticker", "--timestamps"]).spawn().expect("rkubectl runs");
    let stdout = follow.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let newer = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            let (time, text) = line.split_once(' ').unwrap_or_default();
            let tick: u64 = text.strip_prefix("tick ").and_then(|n| n.parse().ok()).unwrap_or(0);
            assert!(time.parse::<jiff::Timestamp>().is_ok(), "no timestamp in {line:?}");
            if tick > last_before + 2 {
                return Some(tick);
            }
        }
        None
    })
    .await;
    assert!(
        matches!(newer, Ok(Some(_))),
        "rkubectl logs -f did not stream new lines: {newer:?}; kubelet log:\n{}",
        kubelet.log_tail(20)
    );
    assert!(follow.try_wait().expect("wait").is_none(), "logs -f ended while the container runs");
    drop(follow);

    let limited = rkubectl.ok(&["logs", "ticker", "--limit-bytes", "6"]).await;
    assert_eq!(limited, "tick 1");
    let since = rkubectl.ok(&["logs", "ticker", "--since", "1h", "--tail", "1"]).await;
    assert_eq!(ticks(&since).len(), 1, "{since:?}");
    let bad = rkubectl.run(&["logs", "ticker", "--since-time", "yesterday"]).await;
    assert_eq!(bad.code, Some(1), "{}", bad.describe());
    assert!(bad.stderr.contains("RFC 3339"), "{}", bad.describe());
}
