//! rkubectl's other verbs against a real apiserver: label, annotate, patch, scale, run,
//! cordon/uncordon, drain (DaemonSet pods), edit (with a scripted $EDITOR, including a conflict), wait, events,
//! describe, drain, rollout and logs.
//!
//! There is no controller or kubelet in these tests: where a verb waits for one (wait, rollout
//! status), the test plays its part by writing the status the controller would write.

use std::time::Duration;

use rkube_tests::kubectl::{Rkubectl, row_named, rows};
use rkube_tests::{Api, Cluster, StatusCode, eventually};
use serde_json::{Value, json};
use tokio::io::{BufReader, Lines};
use tokio::process::ChildStdout;

/// How long a step may take.
const WAIT: Duration = Duration::from_secs(30);

async fn start() -> Cluster {
    Cluster::start().await.expect("etcd and rkube-apiserver start")
}

/// Waits until the apiserver has started a watch of `resource` beyond the `before` it had: the
/// command under test has read its object and now watches it.
async fn watching(api: &Api, resource: &str, before: f64, what: &str) {
    eventually(WAIT, what, || async { (api.watches_started(resource).await > before).then_some(()) }).await;
}

/// The next line a running command prints on stdout, within [`WAIT`].
async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    next_line_or_end(lines).await.expect("the command still runs")
}

/// The next line a command prints on stdout, or `None` once its stdout has ended, within [`WAIT`].
async fn next_line_or_end(lines: &mut Lines<BufReader<ChildStdout>>) -> Option<String> {
    tokio::time::timeout(WAIT, lines.next_line()).await.expect("a line within the wait").expect("read stdout")
}

async fn patch_status(api: &Api, path: &str, body: Value) {
    let (status, answer) = api.patch(&format!("{path}/status"), "application/merge-patch+json", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

#[tokio::test]
async fn label_annotate_patch_scale_and_run() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    let api = Api::new(cluster.url());
    assert_eq!(
        k.ok(&[
            "run",
            "web",
            "--image",
            "busybox:1.37",
            "--port",
            "80",
            "--env",
            "A=b",
            "--command",
            "--",
            "sleep",
            "1d"
        ])
        .await,
        "pod/web created\n"
    );
    let pod = api.get_ok("/api/v1/namespaces/default/pods/web").await;
    assert_eq!(pod["metadata"]["labels"]["run"], "web");
    assert_eq!(pod["spec"]["containers"][0]["command"], json!(["sleep", "1d"]));
    assert_eq!(pod["spec"]["containers"][0]["env"][0], json!({"name": "A", "value": "b"}));

    assert_eq!(k.ok(&["label", "pod", "web", "tier=front", "team=a"]).await, "pod/web labeled\n");
    let ran = k.fails(&["label", "pod", "web", "tier=back"]).await;
    assert_eq!(ran.stderr.trim(), "error: 'tier' already has a value (front), and --overwrite is false");
    k.ok(&["label", "pod/web", "tier=back", "team-", "--overwrite"]).await;
    assert_eq!(k.ok(&["annotate", "po", "web", "note=hello world"]).await, "pod/web annotated\n");
    let pod = api.get_ok("/api/v1/namespaces/default/pods/web").await;
    assert_eq!(pod["metadata"]["labels"], json!({"run": "web", "tier": "back"}));
    assert_eq!(pod["metadata"]["annotations"]["note"], "hello world");

    k.ok(&[
        "create",
        "-f",
        &k.file("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: '1'}\n"),
    ])
    .await;
    assert_eq!(k.ok(&["patch", "cm", "cfg", "-p", r#"{"data":{"b":"2"}}"#]).await, "configmap/cfg patched\n");
    assert_eq!(
        k.ok(&["patch", "cm", "cfg", "--type", "merge", "-p", r#"{"data":{"b":"2"}}"#]).await,
        "configmap/cfg patched (no change)\n"
    );
    k.ok(&["patch", "cm/cfg", "--type=json", "-p", r#"[{"op":"remove","path":"/data/a"}]"#]).await;
    assert_eq!(api.get_ok("/api/v1/namespaces/default/configmaps/cfg").await["data"], json!({"b": "2"}));
    let ran = k.fails(&["patch", "cm", "cfg", "--type", "json", "-p", r#"[{"op":"remove","path":"/data/zzz"}]"#]).await;
    assert!(ran.stderr.starts_with("Error from server ("), "{}", ran.describe());

    assert_eq!(k.ok(&["run", "app", "--image", "nginx", "--replicas", "2"]).await, "deployment.apps/app created\n");
    let deploy = api.get_ok("/apis/apps/v1/namespaces/default/deployments/app").await;
    assert_eq!(deploy["spec"]["selector"]["matchLabels"], json!({"app": "app"}));
    assert_eq!(k.ok(&["scale", "deploy", "app", "--replicas", "5"]).await, "deployment.apps/app scaled\n");
    assert_eq!(k.ok(&["get", "deploy", "app", "-o", "jsonpath={.spec.replicas}"]).await, "5");
    let ran = k.fails(&["scale", "cm", "cfg", "--replicas", "1"]).await;
    assert!(ran.stderr.contains("cannot be scaled"), "{}", ran.describe());
}

#[tokio::test]
async fn cordon_uncordon_and_drain_a_node() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    let api = Api::new(cluster.url());
    k.ok(&["create", "-f", &k.file("node.yaml", "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n")]).await;
    assert_eq!(k.ok(&["cordon", "n1"]).await, "node/n1 cordoned\n");
    assert_eq!(k.ok(&["cordon", "n1"]).await, "node/n1 already cordoned\n");
    assert!(row_named(&rows(&k.ok(&["get", "nodes"]).await), "n1").unwrap()[1].contains("SchedulingDisabled"));
    assert_eq!(k.ok(&["uncordon", "n1"]).await, "node/n1 uncordoned\n");
    assert_eq!(api.get_ok("/api/v1/nodes/n1").await["spec"].get("unschedulable"), None);

    // A pod no controller owns is refused without --force (the node is cordoned all the same).
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: lone}\nspec:\n  nodeName: n1\n  containers: [{name: c, image: busybox}]\n";
    k.ok(&["create", "-f", &k.file("pod.yaml", pod)]).await;
    let ran = k.fails(&["drain", "n1", "--ignore-daemonsets"]).await;
    assert!(ran.stderr.contains("default/lone") && ran.stderr.contains("--force"), "{}", ran.describe());
    assert_eq!(api.get_ok("/api/v1/nodes/n1").await["spec"]["unschedulable"], true);
    // With --force and grace 0 the pod goes at once (no kubelet needed), and drain finishes.
    let out = k.ok(&["drain", "n1", "--ignore-daemonsets", "--force", "--grace-period=0", "--timeout=30s"]).await;
    assert!(
        out.contains("evicting pod default/lone")
            && out.contains("pod/lone evicted")
            && out.ends_with("node/n1 drained\n"),
        "{out}"
    );
    let (status, _) = api.get("/api/v1/namespaces/default/pods/lone").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A running pod a PodDisruptionBudget guards is not evicted: drain retries, then gives up.
    let guarded = "apiVersion: v1\nkind: Pod\nmetadata: {name: guarded, labels: {app: g}}\nspec:\n  nodeName: n1\n  containers: [{name: c, image: busybox}]\n";
    k.ok(&["create", "-f", &k.file("guarded.yaml", guarded)]).await;
    assert!(rkube_tests::controllers::mark_ready(&api, "default", "guarded").await);
    let pdb = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: g}\nspec:\n  minAvailable: 1\n  selector: {matchLabels: {app: g}}\n";
    k.ok(&["create", "-f", &k.file("pdb.yaml", pdb)]).await;
    let ran = k.run(&["drain", "n1", "--force", "--timeout=3s"]).await;
    let stderr: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(ran.code, Some(1), "{}", ran.describe());
    assert_eq!(stderr.first(), Some(&"Warning: deleting Pods that declare no controller: default/guarded"));
    assert!(
        stderr.len() == 2 && stderr[1].contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{}",
        ran.describe()
    );
    assert_eq!(api.get("/api/v1/namespaces/default/pods/guarded").await.0, StatusCode::OK, "the guarded pod stays");
}

/// A pod on node `n1` whose controller is the `kind` named `owner`.
fn owned_pod(name: &str, kind: &str, api_version: &str, owner: &str, uid: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "ownerReferences": [
            {"apiVersion": api_version, "kind": kind, "name": owner, "uid": uid, "controller": true}]},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}})
}

#[tokio::test]
async fn drain_skips_daemonset_pods_only_when_told() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    let api = Api::new(cluster.url());
    k.ok(&["create", "-f", &k.file("node.yaml", "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n")]).await;
    let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"metadata": {"labels": {"app": "agent"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    let ds = api.create("/apis/apps/v1/namespaces/default/daemonsets", &ds).await;
    let ds_uid = ds["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let pods = "/api/v1/namespaces/default/pods";
    api.create(pods, &owned_pod("agent-x", "DaemonSet", "apps/v1", "agent", &ds_uid)).await;
    api.create(pods, &owned_pod("web-1", "ReplicaSet", "apps/v1", "web", "4b1c7c2e-0000-4000-8000-000000000001")).await;

    // Without --ignore-daemonsets: refused, in kubectl's words, before anything is evicted.
    let ran = k.fails(&["drain", "n1"]).await;
    assert_eq!(
        ran.stderr,
        "error: cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/agent-x\n",
        "{}",
        ran.describe()
    );
    assert_eq!(ran.stdout, "node/n1 cordoned\n", "{}", ran.describe());
    for name in ["agent-x", "web-1"] {
        assert_eq!(api.get(&format!("{pods}/{name}")).await.0, StatusCode::OK, "{name} stays");
    }

    // A pod whose DaemonSet is gone would come back nowhere: refused even with the flag, and
    // every refusal is listed in one line.
    let orphan = owned_pod("ghost-y", "DaemonSet", "apps/v1", "ghost", "4b1c7c2e-0000-4000-8000-000000000002");
    api.create(pods, &orphan).await;
    let ran = k.fails(&["drain", "n1"]).await;
    assert_eq!(
        ran.stderr.trim_end(),
        "error: [cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/agent-x, \
         cannot delete daemonsets.apps \"ghost\" not found: default/ghost-y]",
        "{}",
        ran.describe()
    );
    let ran = k.fails(&["drain", "n1", "--ignore-daemonsets"]).await;
    assert_eq!(ran.stderr.trim_end(), "error: cannot delete daemonsets.apps \"ghost\" not found: default/ghost-y");

    // With --ignore-daemonsets (and --force for the orphan) the DaemonSet's pod is skipped with
    // kubectl's warning, and only the others are evicted.
    let ran = k.run(&["drain", "n1", "--ignore-daemonsets", "--force", "--grace-period=0", "--timeout=30s"]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.describe());
    assert_eq!(ran.stderr, "Warning: ignoring DaemonSet-managed Pods: default/agent-x\n", "{}", ran.describe());
    let mut evicted: Vec<&str> = ran.stdout.lines().filter(|line| line.starts_with("evicting pod ")).collect();
    evicted.sort_unstable();
    assert_eq!(evicted, ["evicting pod default/ghost-y", "evicting pod default/web-1"], "{}", ran.describe());
    assert!(ran.stdout.starts_with("node/n1 already cordoned\n"), "{}", ran.describe());
    assert!(ran.stdout.ends_with("node/n1 drained\n"), "{}", ran.describe());
    assert_eq!(api.get(&format!("{pods}/agent-x")).await.0, StatusCode::OK, "the DaemonSet's pod stays");
    for name in ["ghost-y", "web-1"] {
        assert_eq!(api.get(&format!("{pods}/{name}")).await.0, StatusCode::NOT_FOUND, "{name} evicted");
    }
}

#[tokio::test]
async fn edit_saves_cancels_and_reports_a_conflict() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    let api = Api::new(cluster.url());
    k.ok(&[
        "create",
        "-f",
        &k.file("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {greeting: hello}\n"),
    ])
    .await;
    let editor = k.file("editor.sh", "#!/bin/sh\nsed -i 's/greeting: hello/greeting: edited/' \"$1\"\n");
    let conflicting = k.file(
        "conflict.sh",
        &format!(
            "#!/bin/sh\n'{}' --kubeconfig '{}' annotate cm cfg meanwhile=yes >/dev/null\nsed -i 's/greeting: edited/greeting: lost/' \"$1\"\n",
            k.program().display(),
            k.kubeconfig().display()
        ),
    );
    for script in [&editor, &conflicting] {
        std::fs::set_permissions(script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let ran = k.run_with(&["edit", "cm", "cfg"], &[("EDITOR", &editor)], None).await;
    assert_eq!(ran.stdout, "configmap/cfg edited\n", "{}", ran.describe());
    assert_eq!(api.get_ok("/api/v1/namespaces/default/configmaps/cfg").await["data"]["greeting"], "edited");

    let ran = k.run_with(&["edit", "cm/cfg"], &[("KUBE_EDITOR", "true")], None).await;
    assert_eq!(ran.stdout, "Edit cancelled, no changes made.\n", "{}", ran.describe());

    let ran = k.run_with(&["edit", "cm", "cfg"], &[("EDITOR", &conflicting)], None).await;
    rkube_tests::kubectl::assert_failed(&ran);
    assert!(ran.stderr.starts_with("Error from server (Conflict): "), "{}", ran.describe());
    assert!(ran.stderr.contains("your edits were kept in"), "{}", ran.describe());
    let cm = api.get_ok("/api/v1/namespaces/default/configmaps/cfg").await;
    assert_eq!(
        (cm["data"]["greeting"].as_str(), cm["metadata"]["annotations"]["meanwhile"].as_str()),
        (Some("edited"), Some("yes"))
    );
}

#[tokio::test]
async fn wait_for_a_condition_and_for_deletion() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    let api = Api::new(cluster.url());
    k.ok(&["run", "web", "--image", "busybox"]).await;
    let ran = k.fails(&["wait", "pod/web", "--for=condition=Ready", "--timeout=1s"]).await;
    assert_eq!(ran.stderr.trim(), "error: timed out waiting for the condition on pod/web");

    // The condition comes true only once the waiter watches: it must see it through the watch.
    let watches = api.watches_started("pods").await;
    let waiter =
        k.command(&["wait", "pod/web", "--for=condition=Ready", "--timeout=30s"]).spawn().expect("wait starts");
    watching(&api, "pods", watches, "rkubectl wait to watch pod web").await;
    patch_status(
        &api,
        "/api/v1/namespaces/default/pods/web",
        json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
    )
    .await;
    let out =
        tokio::time::timeout(Duration::from_secs(30), waiter.wait_with_output()).await.expect("wait returns").unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pod/web condition met\n");
    assert_eq!(k.ok(&["wait", "pod", "web", "--for", "condition=ready=true"]).await, "pod/web condition met\n");

    let watches = api.watches_started("pods").await;
    let waiter = k.command(&["wait", "pod/web", "--for=delete", "--timeout=30s"]).spawn().expect("wait starts");
    watching(&api, "pods", watches, "rkubectl wait --for=delete to watch pod web").await;
    k.ok(&["delete", "pod", "web"]).await;
    let out =
        tokio::time::timeout(Duration::from_secs(30), waiter.wait_with_output()).await.expect("wait returns").unwrap();
    assert!(out.status.success(), "{out:?}");
    let ran = k.fails(&["wait", "pod/web", "--for=condition=Ready", "--timeout=5s"]).await;
    assert_eq!(ran.stderr.trim(), r#"Error from server (NotFound): pods "web" not found"#);
    let ran = k.fails(&["wait", "pod/web", "--for=happiness"]).await;
    assert!(ran.stderr.contains("unrecognized condition"), "{}", ran.describe());
}

fn event(name: &str, uid: &str, kind: &str, object: &str, reason: &str, time: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Event\nmetadata: {{name: {name}}}\ninvolvedObject: {{kind: {kind}, name: {object}, namespace: default, uid: '{uid}'}}\n\
         reason: {reason}\nmessage: {reason} happened\ntype: Normal\nsource: {{component: tester}}\nlastTimestamp: '{time}'\n"
    )
}

#[tokio::test]
async fn describe_and_events_show_related_objects_and_events() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    let api = Api::new(cluster.url());
    k.ok(&["create", "-f", &k.file("node.yaml", "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus:\n  capacity: {cpu: '4', memory: 8Gi}\n  allocatable: {cpu: '3', memory: 7Gi}\n")]).await;
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {app: web}}\nspec:\n  nodeName: n1\n  containers:\n  - name: main\n    image: busybox:1.37\n    ports: [{containerPort: 80}]\n    resources: {requests: {cpu: 250m, memory: 64Mi}}\n";
    k.ok(&["create", "-f", &k.file("pod.yaml", pod)]).await;
    patch_status(&api, "/api/v1/namespaces/default/pods/web", json!({"status": {"phase": "Running", "podIP": "10.1.2.3",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "main", "image": "busybox:1.37", "imageID": "", "ready": true, "restartCount": 2, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}})).await;
    let uid = api.get_ok("/api/v1/namespaces/default/pods/web").await["metadata"]["uid"].as_str().unwrap().to_string();
    let events = [
        event("e2", &uid, "Pod", "web", "Started", "2026-01-01T00:02:00Z"),
        event("e1", &uid, "Pod", "web", "Scheduled", "2026-01-01T00:01:00Z"),
        event("other", "x", "Pod", "elsewhere", "Unrelated", "2026-01-01T00:03:00Z"),
    ];
    k.ok(&["create", "-f", &k.file("ev.yaml", &events.join("---\n"))]).await;

    let page = k.ok(&["describe", "pod", "web"]).await;
    for expected in [
        "Name:",
        "web",
        "Node:",
        "n1",
        "IP:",
        "10.1.2.3",
        "Image:",
        "busybox:1.37",
        "80/TCP",
        "Running",
        "Restart Count:",
        "cpu:",
        "250m",
        "Ready",
        "True",
    ] {
        assert!(page.contains(expected), "describe pod lacks {expected:?}:\n{page}");
    }
    let restarts = page.lines().find(|l| l.trim_start().starts_with("Restart Count:")).unwrap();
    assert_eq!(restarts.split_whitespace().last(), Some("2"), "{page}");
    let scheduled = page.find("Scheduled").expect("event listed");
    assert!(scheduled < page.find("Started").expect("event listed"), "events oldest first:\n{page}");
    assert!(!page.contains("Unrelated"), "{page}");

    let page = k.ok(&["describe", "no", "n1"]).await;
    for expected in ["Capacity:", "Allocatable:", "7Gi", "Non-terminated Pods:  (1 in total)", "250m", "64Mi"] {
        assert!(page.contains(expected), "describe node lacks {expected:?}:\n{page}");
    }

    k.ok(&["run", "app", "--image", "nginx", "--replicas", "2"]).await;
    let deploy = api.get_ok("/apis/apps/v1/namespaces/default/deployments/app").await;
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "app-1", "labels": {"app": "app"},
        "annotations": {"deployment.kubernetes.io/revision": "1"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "app", "uid": deploy["metadata"]["uid"], "controller": true}]},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "app"}}, "template": deploy["spec"]["template"]}});
    api.create("/apis/apps/v1/namespaces/default/replicasets", &rs).await;
    let page = k.ok(&["describe", "deploy", "app"]).await;
    assert!(page.contains("2 desired") && page.contains("NewReplicaSet:") && page.contains("app-1"), "{page}");
    let page = k.ok(&["describe", "rs", "app-1"]).await;
    assert!(page.contains("Replicas:") && page.contains("2 desired") && page.contains("Pods Status:"), "{page}");
    let page = k.ok(&["describe", "cm"]).await;
    assert_eq!(page, "", "no configmaps, nothing to describe");

    let table = rows(&k.ok(&["events"]).await);
    assert_eq!(table[0], vec!["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]);
    let reasons: Vec<&str> = table[1..].iter().map(|r| r[2].as_str()).collect();
    assert_eq!(reasons, vec!["Scheduled", "Started", "Unrelated"], "sorted by time");
    let for_web = k.ok(&["events", "--for", "pod/web"]).await;
    assert!(for_web.contains("Started") && !for_web.contains("Unrelated"), "{for_web}");

    // -w prints the existing events, then each new one as it comes.
    let mut child = k.command(&["events", "-w"]).spawn().expect("events -w starts");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let mut seen = Vec::new();
    k.ok(&[
        "create",
        "-f",
        &k.file("late.yaml", &event("late", &uid, "Pod", "web", "Killing", "2026-01-01T00:09:00Z")),
    ])
    .await;
    while !seen.iter().any(|l: &String| l.contains("Killing")) {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.expect("a line within 30s");
        seen.push(line.unwrap().expect("events -w still running"));
    }
    child.kill().await.unwrap();
}

#[tokio::test]
async fn rollout_status_history_undo_and_restart() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    let api = Api::new(cluster.url());
    let path = "/apis/apps/v1/namespaces/default/deployments/app";
    k.ok(&["run", "app", "--image", "nginx:1", "--replicas", "2"]).await;
    let ran = k.fails(&["rollout", "status", "deploy/app", "--timeout=1s"]).await;
    assert_eq!(ran.stderr.trim(), "error: timed out waiting for the condition on deployment.apps/app");
    assert!(ran.stdout.contains("Waiting for deployment spec update to be observed..."), "{}", ran.describe());

    // Play the Deployment controller: observe the spec, then report the replicas. Each step
    // waits for the line that shows `rollout status` saw the one before.
    let mut status = k.command(&["rollout", "status", "deployment", "app", "--timeout=30s"]).spawn().expect("starts");
    let mut progress = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(status.stdout.take().unwrap()));
    assert_eq!(next_line(&mut progress).await, "Waiting for deployment spec update to be observed...");
    patch_status(&api, path, json!({"status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 1}})).await;
    assert_eq!(
        next_line(&mut progress).await,
        "Waiting for deployment \"app\" rollout to finish: 1 out of 2 new replicas have been updated..."
    );
    patch_status(&api, path, json!({"status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "readyReplicas": 2}})).await;
    assert_eq!(next_line(&mut progress).await, "deployment \"app\" successfully rolled out");
    let out = tokio::time::timeout(WAIT, status.wait_with_output()).await.expect("status returns").unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(next_line_or_end(&mut progress).await, None, "nothing after the rollout is done");

    // Two replicasets with revisions, as the controller would have made them.
    let deploy = api.get_ok(path).await;
    for (rev, image) in [("1", "nginx:0"), ("2", "nginx:1")] {
        let mut template = deploy["spec"]["template"].clone();
        template["spec"]["containers"][0]["image"] = json!(image);
        template["metadata"]["labels"]["pod-template-hash"] = json!(format!("h{rev}"));
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": format!("app-{rev}"), "labels": {"app": "app"},
            "annotations": {"deployment.kubernetes.io/revision": rev},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "app", "uid": deploy["metadata"]["uid"], "controller": true}]},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "app"}}, "template": template}});
        api.create("/apis/apps/v1/namespaces/default/replicasets", &rs).await;
    }
    let history = rows(&k.ok(&["rollout", "history", "deploy/app"]).await);
    assert_eq!(
        history,
        vec![vec!["deployment.apps/app"], vec!["REVISION", "CHANGE-CAUSE"], vec!["1", "<none>"], vec!["2", "<none>"]]
    );
    assert_eq!(k.ok(&["rollout", "undo", "deploy/app"]).await, "deployment.apps/app rolled back\n");
    let after = api.get_ok(path).await;
    assert_eq!(after["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:0");
    assert_eq!(after["spec"]["template"]["metadata"]["labels"].get("pod-template-hash"), None);
    assert_eq!(k.ok(&["rollout", "restart", "deploy/app"]).await, "deployment.apps/app restarted\n");
    let after = api.get_ok(path).await;
    assert!(
        after["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string(),
        "{after}"
    );
    let ran = k.fails(&["rollout", "status", "cm/x"]).await;
    assert!(ran.stderr.contains("only deployments"), "{}", ran.describe());
}

#[tokio::test]
async fn logs_checks_the_pod_and_container_before_asking_for_the_log() {
    // The log text itself comes from a kubelet (a later issue); here only the client side.
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    let ran = k.fails(&["logs", "missing"]).await;
    assert_eq!(ran.stderr.trim(), r#"Error from server (NotFound): pods "missing" not found"#);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: two}\nspec:\n  containers: [{name: a, image: busybox}, {name: b, image: busybox}]\n";
    k.ok(&["create", "-f", &k.file("pod.yaml", pod)]).await;
    let ran = k.fails(&["logs", "two"]).await;
    assert!(
        ran.stderr.contains("a container name must be specified for pod two, choose one of: [a b]"),
        "{}",
        ran.describe()
    );
    let ran = k.fails(&["logs", "pod/two", "-c", "zzz"]).await;
    assert!(ran.stderr.contains("container zzz is not valid for pod two"), "{}", ran.describe());
}
