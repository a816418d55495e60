//! `kubectl top` end to end: the real kubectl reads `metrics.k8s.io/v1beta1` from the apiserver,
//! which asks the real rkubelet's `/stats/summary`, which reads the cgroups of real containers
//! on containerd. Needs root and `make deps` (containerd, runc, busybox-static, the venv's
//! kubectl).

use std::process::{Command, Output};
use std::time::Duration;

use rkube_tests::node::{Containerd, Kubelet, TEST_IMAGE};
use rkube_tests::{Api, Cluster, eventually, venv_bin};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// The millicores of a `kubectl top` CPU column (`250m`, or whole cores `1`).
fn millicores(column: &str) -> Option<u64> {
    match column.strip_suffix('m') {
        Some(milli) => milli.parse().ok(),
        None => column.parse::<u64>().ok().map(|cores| cores * 1000),
    }
}

/// The rows of a `kubectl top` table below its header, split into columns.
fn rows(output: &Output) -> Vec<Vec<String>> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().map(String::from).collect())
        .collect()
}

#[tokio::test]
async fn kubectl_top_shows_the_cpu_and_memory_of_real_containers() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let containerd = Containerd::start().await.expect("containerd starts");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "top-node").await.expect("kubelet starts");
    let api = Api::new(cluster.url());
    let pod = |name: &str, script: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"nodeName": "top-node", "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sh", "-c", script]}]}})
    };
    // One pod spins a core; the other sleeps, holding 16 MB in a shell variable (in a loop, so
    // that the shell does not exec sleep and drop it).
    api.create("/api/v1/namespaces/default/pods", &pod("busy", "while :; do :; done")).await;
    let hold = "x=$(head -c 16000000 /dev/zero | tr '\\0' a); while :; do sleep 3600; done";
    api.create("/api/v1/namespaces/default/pods", &pod("idle", hold)).await;
    for name in ["busy", "idle"] {
        eventually(WAIT, "the pod Running", || async {
            let (_, pod) = api.get(&format!("/api/v1/namespaces/default/pods/{name}")).await;
            (pod["status"]["phase"] == "Running").then_some(())
        })
        .await;
    }
    let home = tempfile::tempdir().expect("home");
    let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig");
    let kubectl = |args: &[&str]| {
        Command::new(venv_bin("kubectl"))
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", home.path())
            .output()
            .expect("kubectl runs (make deps installs it)")
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();

    // kubectl top pod: once the sleeping pod holds its memory (it spends a moment building the
    // string), the spinning pod uses a good part of a core and the sleeping one next to nothing.
    let top_pods = || {
        let out = kubectl(&["top", "pod"]);
        let rows = rows(&out);
        let column = |name: &str, index: usize| rows.iter().find(|row| row[0] == name).map(|row| row[index].clone());
        let cpu = |name: &str| column(name, 1).and_then(|cpu| millicores(&cpu));
        let memory = |name: &str| column(name, 2).and_then(|memory| memory.strip_suffix("Mi")?.parse::<u64>().ok());
        (cpu("busy"), cpu("idle"), memory("idle"), text(&out.stdout))
    };
    eventually(WAIT, "kubectl top pod: the sleeping pod holds its 16 MB", || async {
        let (_, _, memory, _) = top_pods();
        memory.is_some_and(|mi| mi >= 15).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // a window without the building
    let (busy, idle, memory, table) = top_pods();
    let (Some(busy), Some(idle)) = (busy, idle) else { panic!("both pods listed:\n{table}") };
    assert!(busy >= 200, "a spinning shell uses a good part of a core:\n{table}");
    assert!(idle < 50, "a sleeping one next to nothing:\n{table}");
    assert!(memory.is_some_and(|mi| (15..64).contains(&mi)), "the 16 MB it holds, in MiB:\n{table}");
    assert!(table.starts_with("NAME") && table.contains("MEMORY(bytes)"), "{table}");

    // Per container, and by label.
    let out = kubectl(&["top", "pod", "busy", "--containers"]);
    let containers = rows(&out);
    assert_eq!(
        containers.first().map(|row| &row[..2]),
        Some(&["busy".to_string(), "main".to_string()][..]),
        "{}",
        text(&out.stdout)
    );
    let out = kubectl(&["top", "pod", "-l", "app=idle"]);
    let names: Vec<String> = rows_names(&out);
    assert_eq!(names, ["idle"], "{}", text(&out.stdout));

    // kubectl top node: the node's CPU and memory with their share of its capacity.
    let out = kubectl(&["top", "node"]);
    let nodes = rows(&out);
    let node = nodes
        .iter()
        .find(|row| row[0] == "top-node")
        .unwrap_or_else(|| panic!("{}\n{}", text(&out.stdout), text(&out.stderr)));
    assert!(millicores(&node[1]).is_some_and(|cpu| cpu >= busy / 2), "the node runs the busy pod: {node:?}");
    assert!(node[2].ends_with('%') && node[3].ends_with("Mi") && node[4].ends_with('%'), "{node:?}");

    // The API itself, as client libraries read it.
    let (status, metrics) = api.get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/busy").await;
    assert_eq!(status.as_u16(), 200, "{metrics}");
    assert_eq!(
        (metrics["kind"].as_str(), metrics["apiVersion"].as_str()),
        (Some("PodMetrics"), Some("metrics.k8s.io/v1beta1"))
    );
    assert_eq!(metrics["containers"][0]["name"], "main");
    assert!(metrics["containers"][0]["usage"]["cpu"].as_str().is_some_and(|cpu| cpu.ends_with('n')), "{metrics}");
    assert_eq!(metrics["window"], "1s");
    let (status, missing) = api.get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nobody").await;
    assert_eq!((status.as_u16(), missing["reason"].as_str()), (404u16, Some("NotFound")), "{missing}");
    let (status, nodes) = api.get("/apis/metrics.k8s.io/v1beta1/nodes").await;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(nodes["kind"], "NodeMetricsList");
    assert!(
        nodes["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|n: &Value| n["metadata"]["name"] == "top-node")),
        "{nodes}"
    );

    // All namespaces (`top pod -A`), one node by name, and field selectors on the API.
    api.create("/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "far"}}))
        .await;
    let mut far = pod("away", "while :; do sleep 3600; done");
    far["metadata"]["namespace"] = json!("far");
    api.create("/api/v1/namespaces/far/pods", &far).await;
    let out = eventually(WAIT, "kubectl top pod -A to show both namespaces", || async {
        let out = kubectl(&["top", "pod", "-A"]);
        let rows = rows(&out);
        let listed = |namespace: &str, name: &str| rows.iter().any(|row| row[0] == namespace && row[1] == name);
        (listed("far", "away") && listed("default", "busy") && listed("default", "idle")).then_some(out)
    })
    .await;
    assert!(text(&out.stdout).starts_with("NAMESPACE"), "{}", text(&out.stdout));
    let out = kubectl(&["top", "node", "top-node"]);
    assert_eq!(rows_names(&out), ["top-node"], "{}", text(&out.stdout));
    let names = |list: &Value| -> Vec<String> {
        let mut names: Vec<String> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| item["metadata"]["name"].as_str().unwrap_or_default().to_string())
            .collect();
        names.sort();
        names
    };
    let defaults = api.get_ok("/apis/metrics.k8s.io/v1beta1/pods?fieldSelector=metadata.namespace%3Ddefault").await;
    assert_eq!(names(&defaults), ["busy", "idle"], "{defaults}");
    let one =
        api.get_ok("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?fieldSelector=metadata.name%3Dbusy").await;
    assert_eq!(names(&one), ["busy"], "{one}");

    // A node whose kubelet accepts connections but never answers is left out of the list
    // (after the apiserver's 5 s wait for it), as metrics-server leaves out a node it cannot
    // scrape; the answering node is still there.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listener");
    let port = silent.local_addr().expect("address").port();
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            connections.push(connection);
        }
    });
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "silent-node"},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}});
    api.create("/api/v1/nodes", &node).await;
    let listed = api.get_ok("/apis/metrics.k8s.io/v1beta1/nodes").await;
    assert_eq!(names(&listed), ["top-node"], "{listed}");
    held.abort();
    drop(kubelet);
}

fn rows_names(output: &Output) -> Vec<String> {
    rows(output).into_iter().filter_map(|row| row.into_iter().next()).collect()
}
