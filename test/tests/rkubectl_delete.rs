//! `rkubectl delete` against a real apiserver: by name, file, selector and `--all`; waiting
//! until objects are really gone; `--grace-period`; and its errors.

use std::process::Stdio;
use std::time::Duration;

use rkube_tests::kubectl::Rkubectl;
use rkube_tests::{Api, Cluster, StatusCode, eventually};
use serde_json::json;

/// How long a step may take.
const WAIT: Duration = Duration::from_secs(30);

async fn start() -> Cluster {
    Cluster::start().await.expect("etcd and rkube-apiserver start")
}

fn config_maps(names: &[(&str, &str)]) -> String {
    names
        .iter()
        .map(|(name, app)| {
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {{app: {app}}}\n")
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

#[tokio::test]
async fn delete_by_name_file_selector_and_all() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    let file = k.file("cms.yaml", &config_maps(&[("a", "web"), ("b", "web"), ("c", "db"), ("d", "db"), ("e", "x")]));
    k.ok(&["apply", "-f", &file]).await;
    assert_eq!(k.ok(&["delete", "cm", "a"]).await, "configmap \"a\" deleted from default namespace\n");
    assert_eq!(
        k.ok(&["delete", "configmaps", "-l", "app=web"]).await,
        "configmap \"b\" deleted from default namespace\n"
    );
    assert_eq!(k.ok(&["get", "cm", "-o", "name"]).await, "configmap/c\nconfigmap/d\nconfigmap/e\n");
    let only_c = k.file("c.yaml", &config_maps(&[("c", "db")]));
    assert_eq!(k.ok(&["delete", "-f", &only_c]).await, "configmap \"c\" deleted from default namespace\n");
    assert_eq!(k.ok(&["delete", "cm/d", "cm/e"]).await.lines().count(), 2);
    k.ok(&["apply", "-f", &file]).await;
    assert_eq!(k.ok(&["delete", "cm", "--all"]).await.lines().count(), 5);
    let ran = k.run(&["get", "cm"]).await;
    assert_eq!(ran.stderr.trim(), "No resources found in default namespace.");

    let ran = k.fails(&["delete", "cm", "gone"]).await;
    assert_eq!(ran.stderr.trim(), r#"Error from server (NotFound): configmaps "gone" not found"#);
    assert_eq!(k.ok(&["delete", "cm", "gone", "--ignore-not-found"]).await, "");
    let ran = k.fails(&["delete", "cm"]).await;
    assert!(ran.stderr.contains("no name was specified"), "{}", ran.describe());
    // A cluster-scoped object has no namespace in the message.
    k.ok(&["create", "-f", &k.file("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: scratch}\n")]).await;
    assert_eq!(k.ok(&["delete", "ns", "scratch", "--wait=false"]).await, "namespace \"scratch\" deleted\n");
}

#[tokio::test]
async fn delete_waits_until_the_object_is_gone() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    let api = Api::new(cluster.url());
    let held = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\n";
    k.ok(&["create", "-f", &k.file("held.yaml", held)]).await;

    // --wait=false returns with the object only marked.
    k.ok(&["delete", "cm", "held", "--wait=false"]).await;
    let marked = api.get_ok("/api/v1/namespaces/default/configmaps/held").await;
    assert!(marked["metadata"]["deletionTimestamp"].is_string(), "{marked}");

    // The default waits, and returns once the finalizer is removed and the object is gone. It
    // must not return while the object exists: checked until it watches the object (from then
    // on only a change of the object can end it), and once more before the finalizer goes.
    let watches_before = api.watches_started("configmaps").await;
    let mut child = k.command(&["delete", "cm", "held"]).stdout(Stdio::piped()).spawn().expect("delete starts");
    eventually(WAIT, "rkubectl delete to watch the held object", || {
        let exited = child.try_wait().expect("delete's status");
        let api = &api;
        async move {
            assert!(exited.is_none(), "delete returned while the object still existed");
            (api.watches_started("configmaps").await > watches_before).then_some(())
        }
    })
    .await;
    assert!(child.try_wait().expect("delete's status").is_none(), "delete returned while the object still existed");
    let (status, body) = api
        .patch(
            "/api/v1/namespaces/default/configmaps/held",
            "application/merge-patch+json",
            &json!({"metadata": {"finalizers": null}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let status = tokio::time::timeout(WAIT, child.wait()).await.expect("delete returns once gone").unwrap();
    assert!(status.success());
    let ran = k.run(&["delete", "cm", "held2", "--wait", "--timeout=1s", "--ignore-not-found"]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.describe());

    // --timeout bounds the wait.
    k.ok(&["create", "-f", &k.file("held3.yaml", &held.replace("held", "held3"))]).await;
    let ran = k.fails(&["delete", "cm", "held3", "--timeout=1s"]).await;
    assert_eq!(ran.stderr.trim(), "error: timed out waiting for the condition on configmap/held3");
}

#[tokio::test]
async fn grace_period_zero_deletes_a_bound_pod_at_once() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    let api = Api::new(cluster.url());
    let pod = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: n1\n  containers:\n  - {{name: c, image: busybox}}\n"
        )
    };
    k.ok(&["create", "-f", &k.file("p.yaml", &format!("{}---\n{}", pod("slow"), pod("quick")))]).await;
    // A pod bound to a node waits for its kubelet: without one it stays, marked.
    k.ok(&["delete", "pod", "slow", "--wait=false"]).await;
    let (status, marked) = api.get("/api/v1/namespaces/default/pods/slow").await;
    assert_eq!(status, StatusCode::OK);
    assert!(marked["metadata"]["deletionTimestamp"].is_string(), "{marked}");
    // --grace-period=0 skips the wait, and --wait (default) sees it gone.
    k.ok(&["delete", "pod", "quick", "--grace-period=0"]).await;
    let (status, _) = api.get("/api/v1/namespaces/default/pods/quick").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    eventually(Duration::from_secs(5), "the pod list to show only the marked pod", || async {
        let names = k.ok(&["get", "pods", "-o", "name"]).await;
        (names == "pod/slow\n").then_some(())
    })
    .await;
}
