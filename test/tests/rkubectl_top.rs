//! `rkubectl top node` and `rkubectl top pod` end to end: rkubectl reads
//! `metrics.k8s.io/v1beta1` from the apiserver, which asks the real rkubelet, which reads the
//! cgroups of real containers on containerd. The tables are checked against what the real
//! kubectl prints for the same cluster (same headers, same rows). Needs root and `make deps`
//! (containerd, runc, busybox-static, the venv's kubectl).

use std::time::Duration;

use rkube_tests::kubectl::{Rkubectl, real_kubectl, row_named, rows};
use rkube_tests::node::{Containerd, Kubelet, TEST_IMAGE};
use rkube_tests::{Api, Cluster, eventually};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// The millicores of a `top` CPU column (`250m`).
fn millicores(column: &str) -> Option<u64> {
    column.strip_suffix('m')?.parse().ok()
}

/// The MiB of a `top` memory column (`16Mi`).
fn mebibytes(column: &str) -> Option<u64> {
    column.strip_suffix("Mi")?.parse().ok()
}

#[tokio::test]
async fn rkubectl_top_shows_the_cpu_and_memory_of_real_containers_as_kubectl_does() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let containerd = Containerd::start().await.expect("containerd starts");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "top-node").await.expect("kubelet starts");
    let api = Api::new(cluster.url());
    let pod = |name: &str, script: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"nodeName": "top-node", "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sh", "-c", script]}]}})
    };
    // One pod spins a core; the other sleeps holding 16 MB in a shell variable.
    api.create("/api/v1/namespaces/default/pods", &pod("busy", "while :; do :; done")).await;
    let hold = "x=$(head -c 16000000 /dev/zero | tr '\\0' a); while :; do sleep 3600; done";
    api.create("/api/v1/namespaces/default/pods", &pod("idle", hold)).await;
    let k = Rkubectl::new(&cluster);
    let kubectl = |args: &'static [&'static str]| real_kubectl(k.kubeconfig(), k.dir(), args);

    // Once the sleeping pod holds its memory, the spinning pod uses a good part of a core and
    // the sleeping one next to nothing.
    eventually(WAIT, "rkubectl top pod: the sleeping pod holds its 16 MB", || async {
        let ran = k.run(&["top", "pod"]).await;
        let table = rows(&ran.stdout);
        let idle = row_named(&table, "idle")?;
        (mebibytes(&idle[2])? >= 15 && row_named(&table, "busy").is_some()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // a window without the building
    let out = k.ok(&["top", "pod"]).await;
    let table = rows(&out);
    assert_eq!(table[0], ["NAME", "CPU(cores)", "MEMORY(bytes)"], "{out}");
    let (Some(busy), Some(idle)) = (row_named(&table, "busy"), row_named(&table, "idle")) else {
        panic!("both pods listed:\n{out}")
    };
    let busy_cpu = millicores(&busy[1]).unwrap_or_else(|| panic!("{out}"));
    assert!(busy_cpu >= 200, "a spinning shell uses a good part of a core:\n{out}");
    assert!(millicores(&idle[1]).is_some_and(|cpu| cpu < 50), "a sleeping one next to nothing:\n{out}");
    assert!(mebibytes(&idle[2]).is_some_and(|mi| (15..64).contains(&mi)), "the 16 MB it holds, in MiB:\n{out}");

    // The same headers and rows as the real kubectl's.
    let theirs = rows(&kubectl(&["top", "pod"]).await);
    assert_eq!(theirs[0], table[0], "kubectl's header");
    let names = |table: &[Vec<String>]| table[1..].iter().map(|row| row[0].clone()).collect::<Vec<_>>();
    assert_eq!(names(&theirs), names(&table));

    // -A adds the namespace, --containers a row per container, -l selects, --sort-by orders.
    let out = k.ok(&["top", "pod", "-A", "--sort-by", "cpu"]).await;
    let all = rows(&out);
    assert_eq!(all[0], ["NAMESPACE", "NAME", "CPU(cores)", "MEMORY(bytes)"], "{out}");
    assert_eq!(all[1][..2], ["default", "busy"], "the busiest first:\n{out}");
    assert_eq!(rows(&kubectl(&["top", "pod", "-A"]).await)[0], all[0], "kubectl's header with -A");
    let out = k.ok(&["top", "pod", "busy", "--containers"]).await;
    let containers = rows(&out);
    assert_eq!(containers[0], ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"], "{out}");
    assert_eq!(containers[1][..2], ["busy", "main"], "{out}");
    assert_eq!(containers.len(), 2, "{out}");
    let theirs = rows(&kubectl(&["top", "pod", "busy", "--containers"]).await);
    assert_eq!((&theirs[0], &theirs[1][..2]), (&containers[0], &containers[1][..2]));
    let out = k.ok(&["top", "pod", "-l", "app=idle", "--no-headers"]).await;
    assert_eq!(rows(&out).iter().map(|row| row[0].as_str()).collect::<Vec<_>>(), ["idle"], "{out}");

    // top node: the node's usage and its share of the node's allocatable resources.
    let out = k.ok(&["top", "node"]).await;
    let nodes = rows(&out);
    assert_eq!(nodes[0], ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"], "{out}");
    let node = row_named(&nodes, "top-node").unwrap_or_else(|| panic!("{out}"));
    assert!(millicores(&node[1]).is_some_and(|cpu| cpu >= busy_cpu / 2), "the node runs the busy pod: {node:?}");
    assert!(node[2].ends_with('%') && mebibytes(&node[3]).is_some() && node[4].ends_with('%'), "{node:?}");
    let allocatable = api.get_ok("/api/v1/nodes/top-node").await["status"]["allocatable"]["cpu"].clone();
    let cores: u64 = allocatable.as_str().and_then(|cpu| cpu.parse().ok()).unwrap_or_else(|| panic!("{allocatable}"));
    let share: u64 = node[2].trim_end_matches('%').parse().unwrap_or_else(|_| panic!("{node:?}"));
    let expected = millicores(&node[1]).unwrap_or_default() * 100 / (cores * 1000);
    assert_eq!(share, expected, "CPU(%) is of the {cores} allocatable cores: {node:?}");
    let theirs = rows(&kubectl(&["top", "node"]).await);
    assert_eq!(theirs[0], nodes[0], "kubectl's header");
    let out = k.ok(&["top", "node", "top-node"]).await;
    assert_eq!(rows(&out).len(), 2, "{out}");

    // What is not there: one line each, kubectl's words where kubectl has them.
    let ran = k.fails(&["top", "pod", "nobody"]).await;
    assert!(ran.stderr.starts_with("Error from server (NotFound): "), "{}", ran.describe());
    let ran = k.run(&["top", "pod", "-n", "empty"]).await;
    assert_eq!((ran.code, ran.stdout.as_str()), (Some(0), ""), "{}", ran.describe());
    assert_eq!(ran.stderr, "No resources found in empty namespace.\n", "{}", ran.describe());
    let ran = k.fails(&["top", "pod", "--sort-by", "name"]).await;
    assert!(ran.stderr.contains("cpu or memory"), "{}", ran.describe());
    drop(kubelet);
}
