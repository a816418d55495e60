//! Compatibility with the real `kubectl` (v1.37, installed into `.venv` by `make deps`).
//!
//! Each test starts its own cluster (etcd + `rkube-apiserver`), writes a kubeconfig for it and
//! runs kubectl with `HOME` set to a fresh temporary directory, so the discovery cache
//! (`~/.kube/cache`) belongs to that test alone and every test starts with cold discovery, as a
//! new user would. Assertions check what a user sees (exit status, stdout, stderr) and, where
//! the output alone would not prove it, the object as the API returns it.
//!
//! What each command sends on the wire is described in the project's kubectl protocol notes
//! (discovery, Table output, strategic merge patch, server-side apply, watch-list on delete).
//! Not covered here yet: `describe` (needs `involvedObject` field selectors on events), `logs`,
//! `exec`, `rollout status` (need the kubelet and the controllers). `scale` is here on a
//! Deployment (`typed_commands_send_protobuf_and_work`); on a custom resource's `scale`
//! subresource, in custom_resource_api.rs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rkube_tests::{Api, Cluster, StatusCode, repo_root, venv_bin};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

/// How long one kubectl command may take before the test fails (and the command is killed).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `kubectl get -w` may take to print an expected line.
const WATCH_LINE_TIMEOUT: Duration = Duration::from_secs(30);

const POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  containers:
  - name: main
    image: busybox:1.37
    command: [\"sleep\", \"3600\"]
";

/// A Deployment whose `tier` label and image the tests vary.
fn deployment(tier: &str, image: &str) -> String {
    format!(
        "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
    tier: {tier}
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: httpd
        image: {image}
        command: [\"httpd\", \"-f\", \"-p\", \"8080\"]
        ports:
        - containerPort: 8080
"
    )
}

/// A ConfigMap for server-side apply.
fn config_map(name: &str, greeting: &str) -> String {
    format!(
        "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
data:
  greeting: {greeting}
"
    )
}

/// What a finished kubectl command left behind.
struct Ran {
    args: Vec<String>,
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn describe(&self) -> String {
        format!(
            "kubectl {} exited with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

/// The real kubectl, pointed at one test's cluster, with a private `HOME`.
struct Kubectl<'a> {
    cluster: &'a Cluster,
    program: PathBuf,
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl<'a> Kubectl<'a> {
    fn new(cluster: &'a Cluster) -> Kubectl<'a> {
        let program = venv_bin("kubectl");
        let home = tempfile::Builder::new().prefix("rkube-kubectl-home-").tempdir().expect("temporary HOME");
        let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig written");
        Kubectl { cluster, program, kubeconfig, home }
    }

    /// A kubectl command with this test's KUBECONFIG and HOME; killed if dropped while running.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .env_remove("KUBECTL_COMMAND_HEADERS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs kubectl to completion (failing the test after [`COMMAND_TIMEOUT`]).
    async fn run(&self, args: &[&str]) -> Ran {
        let child = self.command(args).spawn().expect("kubectl starts");
        let output = match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
            Ok(output) => output.expect("kubectl output"),
            Err(_) => panic!(
                "kubectl {} did not finish within {COMMAND_TIMEOUT:?}\n--- apiserver log ---\n{}",
                args.join(" "),
                self.cluster.apiserver.log_tail(40)
            ),
        };
        Ran {
            args: args.iter().map(ToString::to_string).collect(),
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs kubectl, asserts it succeeded, and returns its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let ran = self.run(args).await;
        assert!(ran.success, "{}\n--- apiserver log ---\n{}", ran.describe(), self.cluster.apiserver.log_tail(40));
        ran.stdout
    }

    /// Runs kubectl and asserts it failed (exit status 1, as kubectl exits on a server error).
    async fn fails(&self, args: &[&str]) -> Ran {
        let ran = self.run(args).await;
        assert_eq!(ran.code, Some(1), "expected kubectl to fail with status 1: {}", ran.describe());
        ran
    }

    /// Writes `text` to a file in this test's temporary directory and returns its path.
    fn manifest(&self, name: &str, text: &str) -> String {
        let path = self.home.path().join(name);
        std::fs::write(&path, text).expect("manifest written");
        path.to_str().expect("UTF-8 temporary path").to_string()
    }
}

/// Splits kubectl's column output into rows of whitespace-separated cells.
fn rows(text: &str) -> Vec<Vec<&str>> {
    text.lines().map(|line| line.split_whitespace().collect()).filter(|row: &Vec<&str>| !row.is_empty()).collect()
}

/// The first row whose first cell is `name`.
fn row_named<'t>(table: &'t [Vec<&'t str>], name: &str) -> Option<&'t Vec<&'t str>> {
    table.iter().find(|row| row.first() == Some(&name))
}

async fn start() -> Cluster {
    Cluster::start().await.expect("etcd and rkube-apiserver start")
}

/// GETs `path` and asserts 200.
async fn get_object(api: &Api, path: &str) -> Value {
    let (status, body) = api.get(path).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body
}

#[tokio::test]
async fn version_reports_the_server() {
    let cluster = start().await;
    let kubectl = Kubectl::new(&cluster);
    let out = kubectl.ok(&["version"]).await;
    assert!(out.contains("Client Version: v1.37."), "{out}");
    assert!(out.contains("Server Version: v"), "{out}");
}

#[tokio::test]
async fn api_resources_lists_every_kind_with_its_short_names() {
    let cluster = start().await;
    let kubectl = Kubectl::new(&cluster);
    let out = kubectl.ok(&["api-resources"]).await;
    let table = rows(&out);
    assert_eq!(table.first(), Some(&vec!["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]), "{out}");
    let expected: &[&[&str]] = &[
        &["pods", "po", "v1", "true", "Pod"],
        &["deployments", "deploy", "apps/v1", "true", "Deployment"],
        &["replicasets", "rs", "apps/v1", "true", "ReplicaSet"],
        &["namespaces", "ns", "v1", "false", "Namespace"],
        &["nodes", "no", "v1", "false", "Node"],
        &["services", "svc", "v1", "true", "Service"],
        &["endpoints", "ep", "v1", "true", "Endpoints"],
        &["events", "ev", "v1", "true", "Event"],
        &["configmaps", "cm", "v1", "true", "ConfigMap"],
        &["secrets", "v1", "true", "Secret"],
        &["leases", "coordination.k8s.io/v1", "true", "Lease"],
        &["serviceaccounts", "sa", "v1", "true", "ServiceAccount"],
        &["roles", "rbac.authorization.k8s.io/v1", "true", "Role"],
        &["clusterroles", "rbac.authorization.k8s.io/v1", "false", "ClusterRole"],
        &["rolebindings", "rbac.authorization.k8s.io/v1", "true", "RoleBinding"],
        &["clusterrolebindings", "rbac.authorization.k8s.io/v1", "false", "ClusterRoleBinding"],
        &["resourcequotas", "quota", "v1", "true", "ResourceQuota"],
        &["limitranges", "limits", "v1", "true", "LimitRange"],
        &["priorityclasses", "pc", "scheduling.k8s.io/v1", "false", "PriorityClass"],
        &["poddisruptionbudgets", "pdb", "policy/v1", "true", "PodDisruptionBudget"],
        &["persistentvolumes", "pv", "v1", "false", "PersistentVolume"],
        &["persistentvolumeclaims", "pvc", "v1", "true", "PersistentVolumeClaim"],
        &["storageclasses", "sc", "storage.k8s.io/v1", "false", "StorageClass"],
        &["replicationcontrollers", "rc", "v1", "true", "ReplicationController"],
        &["daemonsets", "ds", "apps/v1", "true", "DaemonSet"],
        &["statefulsets", "sts", "apps/v1", "true", "StatefulSet"],
        &["controllerrevisions", "apps/v1", "true", "ControllerRevision"],
        &["jobs", "batch/v1", "true", "Job"],
        &["cronjobs", "cj", "batch/v1", "true", "CronJob"],
        &["endpointslices", "discovery.k8s.io/v1", "true", "EndpointSlice"],
        &["customresourcedefinitions", "crd,crds", "apiextensions.k8s.io/v1", "false", "CustomResourceDefinition"],
        &["tokenreviews", "authentication.k8s.io/v1", "false", "TokenReview"],
        &["selfsubjectreviews", "authentication.k8s.io/v1", "false", "SelfSubjectReview"],
        &["subjectaccessreviews", "authorization.k8s.io/v1", "false", "SubjectAccessReview"],
        &["selfsubjectaccessreviews", "authorization.k8s.io/v1", "false", "SelfSubjectAccessReview"],
        &["selfsubjectrulesreviews", "authorization.k8s.io/v1", "false", "SelfSubjectRulesReview"],
        &["nodes", "metrics.k8s.io/v1beta1", "false", "NodeMetrics"],
        &["pods", "metrics.k8s.io/v1beta1", "true", "PodMetrics"],
    ];
    for want in expected {
        // Rows are keyed by name and API version: `pods` and `nodes` are also metrics kinds.
        let version = want[want.len() - 3];
        let got = table.iter().find(|row| row.first() == Some(&want[0]) && row.contains(&version));
        assert_eq!(got.map(Vec::as_slice), Some(*want), "row for {} {version} in:\n{out}", want[0]);
    }
    // events.k8s.io/v1 Events beside core v1's.
    assert!(table.iter().any(|row| row[0] == "events" && row.contains(&"events.k8s.io/v1")), "{out}");
    // Short names resolve through discovery, as users type them.
    kubectl.ok(&["get", "po"]).await;
    kubectl.ok(&["get", "deploy"]).await;
}

#[tokio::test]
async fn create_pod_then_get_it_as_a_table_yaml_and_json() {
    let cluster = start().await;
    let kubectl = Kubectl::new(&cluster);
    let pod = kubectl.manifest("pod.yaml", POD);

    let out = kubectl.ok(&["create", "-f", &pod]).await;
    assert_eq!(out.trim(), "pod/web created");

    let again = kubectl.fails(&["create", "-f", &pod]).await;
    assert!(again.stderr.contains("(AlreadyExists)"), "{}", again.describe());

    let out = kubectl.ok(&["get", "pods"]).await;
    let table = rows(&out);
    assert_eq!(table.first().map(Vec::as_slice), Some(&["NAME", "READY", "STATUS", "RESTARTS", "AGE"][..]), "{out}");
    assert!(row_named(&table, "web").is_some(), "no row for the pod in:\n{out}");
    assert_eq!(table.len(), 2, "one header and one pod:\n{out}");

    let one = kubectl.ok(&["get", "pod", "web"]).await;
    assert!(row_named(&rows(&one), "web").is_some(), "{one}");

    let yaml = kubectl.ok(&["get", "pod", "web", "-o", "yaml"]).await;
    for needle in [
        "apiVersion: v1",
        "kind: Pod",
        "  name: web",
        "  namespace: default",
        "  uid: ",
        "  resourceVersion: ",
        "  creationTimestamp: ",
        "    app: web",
        "image: busybox:1.37",
    ] {
        assert!(yaml.contains(needle), "{needle:?} missing from:\n{yaml}");
    }

    let json: Value = serde_json::from_str(&kubectl.ok(&["get", "pod", "web", "-o", "json"]).await).expect("JSON");
    assert_eq!(json["metadata"]["name"], "web");
    assert_eq!(json["spec"]["containers"][0]["name"], "main");

    let names = kubectl.ok(&["get", "pods", "-o", "name"]).await;
    assert_eq!(names.trim(), "pod/web");

    let missing = kubectl.fails(&["get", "pod", "nope"]).await;
    assert!(missing.stderr.contains("(NotFound)") && missing.stderr.contains("\"nope\""), "{}", missing.describe());
}

#[tokio::test]
async fn apply_reports_created_configured_and_unchanged() {
    let cluster = start().await;
    let kubectl = Kubectl::new(&cluster);
    let api = Api::new(cluster.url());
    let path = "/apis/apps/v1/namespaces/default/deployments/web";

    let first = kubectl.manifest("web-v1.yaml", &deployment("web", "busybox:1.37"));
    assert_eq!(kubectl.ok(&["apply", "-f", &first]).await.trim(), "deployment.apps/web created");
    let created = get_object(&api, path).await;
    let last_applied = created["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap_or_default();
    assert!(last_applied.contains("\"tier\":\"web\""), "last-applied annotation: {created}");
    assert_eq!(created["metadata"]["generation"], 1, "{created}");

    assert_eq!(kubectl.ok(&["apply", "-f", &first]).await.trim(), "deployment.apps/web unchanged");

    let relabelled = kubectl.manifest("web-v2.yaml", &deployment("frontend", "busybox:1.37"));
    assert_eq!(kubectl.ok(&["apply", "-f", &relabelled]).await.trim(), "deployment.apps/web configured");
    let object = get_object(&api, path).await;
    assert_eq!(object["metadata"]["labels"]["tier"], "frontend", "{object}");
    assert_eq!(object["metadata"]["labels"]["app"], "web", "{object}");
    assert_eq!(object["metadata"]["generation"], 1, "a label change is not a spec change: {object}");

    assert_eq!(kubectl.ok(&["apply", "-f", &relabelled]).await.trim(), "deployment.apps/web unchanged");

    let new_image = kubectl.manifest("web-v3.yaml", &deployment("frontend", "busybox:1.36"));
    assert_eq!(kubectl.ok(&["apply", "-f", &new_image]).await.trim(), "deployment.apps/web configured");
    let object = get_object(&api, path).await;
    let containers = object["spec"]["template"]["spec"]["containers"].as_array().cloned().unwrap_or_default();
    assert_eq!(containers.len(), 1, "{object}");
    assert_eq!(containers[0]["image"], "busybox:1.36", "{object}");
    assert_eq!(containers[0]["command"], json!(["httpd", "-f", "-p", "8080"]), "{object}");
    assert_eq!(object["metadata"]["generation"], 2, "a spec change bumps generation: {object}");

    let out = kubectl.ok(&["get", "deployments"]).await;
    let table = rows(&out);
    assert_eq!(
        table.first().map(Vec::as_slice),
        Some(&["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"][..]),
        "{out}"
    );
    assert!(row_named(&table, "web").is_some(), "{out}");
}

/// Reads `kubectl get -w` output line by line in the background.
struct WatchOutput {
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl WatchOutput {
    /// Waits until a line (new since the last call) satisfies `wanted`; fails after a timeout.
    async fn wait_for(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WATCH_LINE_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Ok(None) => panic!("kubectl get -w ended before {what}; it printed:\n{}", self.seen.join("\n")),
                Err(_) => {
                    panic!("no {what} within {WATCH_LINE_TIMEOUT:?}; kubectl get -w printed:\n{}", self.seen.join("\n"))
                }
            }
        }
    }
}

#[tokio::test]
async fn get_pods_watch_prints_changes_made_after_it_started() {
    let cluster = start().await;
    let kubectl = Kubectl::new(&cluster);
    let api = Api::new(cluster.url());
    let pod = kubectl.manifest("pod.yaml", POD);
    kubectl.ok(&["create", "-f", &pod]).await;

    let mut child = kubectl.command(&["get", "pods", "-w"]).spawn().expect("kubectl get -w starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, lines) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut output = WatchOutput { lines, seen: Vec::new() };

    let header = output.wait_for("the header line", |line| line.starts_with("NAME")).await;
    assert!(header.split_whitespace().eq(["NAME", "READY", "STATUS", "RESTARTS", "AGE"]), "{header}");
    output.wait_for("the existing pod's row", |line| line.starts_with("web ")).await;

    // A change through kubectl (a merge patch of the labels) arrives as a new row for the pod.
    assert_eq!(kubectl.ok(&["label", "pod", "web", "color=blue"]).await.trim(), "pod/web labeled");
    output.wait_for("a second row for web after `kubectl label`", |line| line.starts_with("web ")).await;

    // A pod created through the API appears as a new row.
    let second = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "second", "labels": {"app": "second"}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.37"}]},
    });
    let (status, body) = api.post("/api/v1/namespaces/default/pods", &second).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    output.wait_for("a row for the pod created through the API", |line| line.starts_with("second ")).await;

    assert!(child.try_wait().expect("try_wait").is_none(), "kubectl get -w exited early:\n{}", output.seen.join("\n"));
    child.kill().await.expect("kubectl get -w killed");
}

#[tokio::test]
async fn patch_applies_strategic_merge_json_merge_and_json_patches() {
    let cluster = start().await;
    let kubectl = Kubectl::new(&cluster);
    let api = Api::new(cluster.url());
    let path = "/apis/apps/v1/namespaces/default/deployments/web";
    let manifest = kubectl.manifest("web.yaml", &deployment("web", "busybox:1.37"));
    assert_eq!(kubectl.ok(&["create", "-f", &manifest]).await.trim(), "deployment.apps/web created");

    // Strategic merge (kubectl's default): containers merge by name, so `command` survives.
    let strategic = r#"{"spec":{"template":{"spec":{"containers":[{"name":"httpd","image":"busybox:1.36"}]}}}}"#;
    let out = kubectl.ok(&["patch", "deployment", "web", "-p", strategic]).await;
    assert_eq!(out.trim(), "deployment.apps/web patched");
    let object = get_object(&api, path).await;
    let containers = &object["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().map(Vec::len), Some(1), "{object}");
    assert_eq!(containers[0]["image"], "busybox:1.36", "{object}");
    assert_eq!(containers[0]["command"], json!(["httpd", "-f", "-p", "8080"]), "merged by name: {object}");

    // JSON merge patch: maps merge, null deletes a key.
    let merge = r#"{"metadata":{"labels":{"patched":"merge","tier":null}}}"#;
    let out = kubectl.ok(&["patch", "deployment", "web", "--type", "merge", "-p", merge]).await;
    assert_eq!(out.trim(), "deployment.apps/web patched");
    let object = get_object(&api, path).await;
    assert_eq!(object["metadata"]["labels"], json!({"app": "web", "patched": "merge"}), "{object}");

    // JSON patch (RFC 6902).
    let json_patch = r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#;
    let out = kubectl.ok(&["patch", "deployment", "web", "--type", "json", "-p", json_patch]).await;
    assert_eq!(out.trim(), "deployment.apps/web patched");
    let object = get_object(&api, path).await;
    assert_eq!(object["spec"]["replicas"], 3, "{object}");

    // A patch of something that does not exist is a NotFound, not a crash.
    let missing = kubectl.fails(&["patch", "deployment", "nope", "--type", "merge", "-p", merge]).await;
    assert!(missing.stderr.contains("(NotFound)"), "{}", missing.describe());
}

#[tokio::test]
async fn delete_pod_completes_and_the_pod_is_gone() {
    let cluster = start().await;
    let kubectl = Kubectl::new(&cluster);
    let api = Api::new(cluster.url());
    let pod = kubectl.manifest("pod.yaml", POD);
    kubectl.ok(&["create", "-f", &pod]).await;

    // kubectl waits for the deletion (a watch on the pod) before it prints and exits.
    let out = kubectl.ok(&["delete", "pod", "web", "--timeout=60s"]).await;
    assert!(out.starts_with("pod \"web\" deleted"), "{out}");

    let (status, body) = api.get("/api/v1/namespaces/default/pods/web").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let gone = kubectl.fails(&["get", "pod", "web"]).await;
    assert!(gone.stderr.contains("(NotFound)"), "{}", gone.describe());

    let again = kubectl.fails(&["delete", "pod", "web"]).await;
    assert!(again.stderr.contains("(NotFound)"), "{}", again.describe());
}

#[tokio::test]
async fn apply_server_side_creates_then_updates() {
    let cluster = start().await;
    let kubectl = Kubectl::new(&cluster);
    let api = Api::new(cluster.url());
    let path = "/api/v1/namespaces/default/configmaps/settings";

    let v1 = kubectl.manifest("settings-v1.yaml", &config_map("settings", "hello"));
    let out = kubectl.ok(&["apply", "--server-side", "-f", &v1]).await;
    assert_eq!(out.trim(), "configmap/settings serverside-applied");
    assert_eq!(get_object(&api, path).await["data"], json!({"greeting": "hello"}));

    let v2 = kubectl.manifest("settings-v2.yaml", &config_map("settings", "goodbye"));
    let out = kubectl.ok(&["apply", "--server-side", "-f", &v2]).await;
    assert_eq!(out.trim(), "configmap/settings serverside-applied");
    assert_eq!(get_object(&api, path).await["data"], json!({"greeting": "goodbye"}));

    // An object first applied client-side (it carries the last-applied annotation) can move to
    // server-side apply; kubectl then also patches that annotation under its own field manager.
    let client_side = kubectl.manifest("other.yaml", &config_map("other", "client"));
    assert_eq!(kubectl.ok(&["apply", "-f", &client_side]).await.trim(), "configmap/other created");
    let server_side = kubectl.manifest("other-ssa.yaml", &config_map("other", "server"));
    let out = kubectl.ok(&["apply", "--server-side", "-f", &server_side]).await;
    assert_eq!(out.trim(), "configmap/other serverside-applied");
    let other = get_object(&api, "/api/v1/namespaces/default/configmaps/other").await;
    assert_eq!(other["data"], json!({"greeting": "server"}), "{other}");
}

#[tokio::test]
async fn example_manifests_apply_and_reapply_unchanged() {
    let cluster = start().await;
    let kubectl = Kubectl::new(&cluster);
    let dir = manifests_dir();
    let dir = dir.to_str().expect("UTF-8 path");

    let out = kubectl.ok(&["apply", "-f", dir]).await;
    let created: Vec<&str> = out.lines().collect();
    assert!(!created.is_empty() && created.iter().all(|line| line.ends_with(" created")), "{out}");
    for object in ["namespace/rkube-lab", "pod/hello", "deployment.apps/web", "service/web", "configmap/web-settings"] {
        assert!(out.contains(&format!("{object} created")), "{object} missing from:\n{out}");
    }

    let out = kubectl.ok(&["apply", "-f", dir]).await;
    assert!(out.lines().all(|line| line.ends_with(" unchanged")), "{out}");
    assert_eq!(out.lines().count(), created.len(), "{out}");

    kubectl.ok(&["get", "-f", dir]).await;
}

fn manifests_dir() -> PathBuf {
    let dir = repo_root().join("manifests");
    assert!(Path::new(&dir).is_dir(), "{} is missing", dir.display());
    dir
}

#[tokio::test]
async fn secrets_apply_from_string_data_and_print_type_and_data_count() {
    let cluster = start().await;
    let kubectl = Kubectl::new(&cluster);
    let manifest = kubectl.manifest(
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: kubernetes.io/basic-auth\nstringData:\n  username: admin\n  password: s3cret\n",
    );
    let out = kubectl.ok(&["apply", "-f", &manifest]).await;
    assert!(out.contains("secret/db created"), "{out}");
    // stringData is written into data (base64) and never stored.
    let password = kubectl.ok(&["get", "secret", "db", "-o", "jsonpath={.data.password}"]).await;
    assert_eq!(password.trim(), "czNjcmV0", "base64 of s3cret");
    let string_data = kubectl.ok(&["get", "secret", "db", "-o", "jsonpath={.stringData}"]).await;
    assert_eq!(string_data.trim(), "", "stringData is not stored");
    let out = kubectl.ok(&["get", "secrets"]).await;
    let table = rows(&out);
    assert_eq!(table.first(), Some(&vec!["NAME", "TYPE", "DATA", "AGE"]), "{out}");
    let db = row_named(&table, "db").expect("db listed");
    assert_eq!(&db[1..3], &["kubernetes.io/basic-auth", "2"], "{out}");
    // A type's required keys are checked, in Kubernetes' words.
    let bad = kubectl.manifest(
        "tls.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: cert\ntype: kubernetes.io/tls\ndata: {}\n",
    );
    let failed = kubectl.run(&["apply", "-f", &bad]).await;
    assert!(!failed.success, "{}", failed.describe());
    assert!(failed.stderr.contains("data[tls.key]: Required value"), "{}", failed.describe());
}

#[tokio::test]
async fn rbac_objects_apply_and_print_with_their_subjects() {
    // Applied from manifests (`kubectl create role|rolebinding|...`, which sends protobuf, is
    // in `typed_commands_send_protobuf_and_work`).
    let cluster = start().await;
    let kubectl = Kubectl::new(&cluster);
    let manifest = kubectl.manifest(
        "rbac.yaml",
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: pod-reader
rules:
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: read-pods
roleRef:
  kind: Role
  name: pod-reader
subjects:
- kind: User
  name: alice
- kind: ServiceAccount
  name: bot
  namespace: default
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:health-reader
rules:
- nonResourceURLs: ["/healthz"]
  verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: health
roleRef:
  kind: ClusterRole
  name: system:health-reader
subjects:
- kind: Group
  name: devs
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: bot
"#,
    );
    let out = kubectl.ok(&["apply", "-f", &manifest]).await;
    for created in [
        "role.rbac.authorization.k8s.io/pod-reader created",
        "rolebinding.rbac.authorization.k8s.io/read-pods created",
        "clusterrole.rbac.authorization.k8s.io/system:health-reader created",
        "clusterrolebinding.rbac.authorization.k8s.io/health created",
        "serviceaccount/bot created",
    ] {
        assert!(out.contains(created), "{created} in:\n{out}");
    }
    // The groups left out are defaulted as Kubernetes defaults them.
    let groups = kubectl
        .ok(&["get", "rolebinding", "read-pods", "-o", "jsonpath={.roleRef.apiGroup} {.subjects[0].apiGroup}"])
        .await;
    assert_eq!(groups.trim(), "rbac.authorization.k8s.io rbac.authorization.k8s.io");
    let out = kubectl.ok(&["get", "rolebindings", "-o", "wide"]).await;
    let table = rows(&out);
    assert_eq!(table.first(), Some(&vec!["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]), "{out}");
    let binding = row_named(&table, "read-pods").expect("read-pods listed");
    // The empty GROUPS cell is only blanks, so the service account is the fifth word.
    assert_eq!((binding[1], binding[3], binding[4]), ("Role/pod-reader", "alice", "default/bot"), "{out}");
    kubectl.ok(&["get", "clusterrole", "system:health-reader"]).await;
    let out = kubectl.ok(&["get", "sa", "bot"]).await;
    assert_eq!(rows(&out).first(), Some(&vec!["NAME", "SECRETS", "AGE"]), "{out}");
    // A binding's role never changes, in Kubernetes' words.
    let failed = kubectl
        .run(&["patch", "rolebinding", "read-pods", "--type=merge", "-p", r#"{"roleRef":{"name":"other"}}"#])
        .await;
    assert!(!failed.success, "{}", failed.describe());
    assert!(failed.stderr.contains("cannot change roleRef"), "{}", failed.describe());
    // A namespaced Role may not name URLs.
    let bad = kubectl.manifest(
        "bad-role.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: bad\nrules:\n- nonResourceURLs: [\"/healthz\"]\n  verbs: [\"get\"]\n",
    );
    let failed = kubectl.run(&["apply", "-f", &bad]).await;
    assert!(!failed.success, "{}", failed.describe());
    assert!(failed.stderr.contains("namespaced rules cannot apply to non-resource URLs"), "{}", failed.describe());
}

/// kubectl 1.37 sends the objects of `create <kind>`, `create token` and `auth ...` as
/// protobuf (`application/vnd.kubernetes.protobuf`): they work, and RBAC answers `auth can-i`.
/// Over HTTPS with client certificates (kubectl 1.37 sends no bearer token to an http://
/// server).
#[tokio::test]
async fn typed_commands_send_protobuf_and_work() {
    let ca = rkube_pki::Ca::new("rkube-ca").expect("CA");
    let dir = tempfile::tempdir().expect("directory");
    let serving = ca.serving("kube-apiserver", &["localhost"], &["127.0.0.1".parse().expect("ip")]).expect("serving");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("file");
        path.display().to_string()
    };
    let (cert, key) = (write("apiserver.crt", &serving.cert_pem), write("apiserver.key", &serving.key_pem));
    let (ca_file, sa_key) =
        (write("ca.crt", &ca.cert_pem()), write("sa.key", &rkube_pki::signing_key_pem().expect("key")));
    let etcd = rkube_tests::Etcd::start().await.expect("etcd");
    let args = [
        "--tls-cert-file",
        &cert,
        "--tls-private-key-file",
        &key,
        "--client-ca-file",
        &ca_file,
        "--authorization-mode=RBAC",
        "--service-account-signing-key-file",
        &sa_key,
    ];
    let apiserver = rkube_tests::ApiServer::start_https(&etcd, &args, rkube_tests::certs::https_client(&ca, None))
        .await
        .expect("apiserver over HTTPS");
    let cluster = Cluster { apiserver, etcd };
    let user = |name: &str, groups: &[&str]| {
        let identity = ca.client(name, groups).expect("client certificate");
        let mut kubectl = Kubectl::new(&cluster);
        kubectl.kubeconfig = kubectl.home.path().join(format!("{name}.kubeconfig"));
        std::fs::write(&kubectl.kubeconfig, rkube_pki::kubeconfig(cluster.url(), &ca.cert_pem(), name, &identity))
            .expect("kubeconfig");
        (kubectl, identity)
    };
    let (admin, admin_identity) = user("kubernetes-admin", &["system:masters"]);
    let (alice, _) = user("alice", &[]);

    assert!(admin.ok(&["create", "namespace", "team"]).await.contains("namespace/team created"));
    admin.ok(&["create", "configmap", "settings", "--from-literal=greeting=hello", "-n", "team"]).await;
    admin.ok(&["create", "secret", "generic", "db", "--from-literal=password=s3cret", "-n", "team"]).await;
    admin.ok(&["create", "deployment", "web", "--image=busybox:1.37", "--replicas=2", "-n", "team"]).await;
    admin.ok(&["create", "serviceaccount", "bot", "-n", "team"]).await;
    admin.ok(&["create", "rolebinding", "alice-views", "--clusterrole=view", "--user=alice", "-n", "team"]).await;
    let token = admin.ok(&["create", "token", "bot", "-n", "team"]).await;
    assert_eq!(token.trim().split('.').count(), 3, "a JWT: {token}");

    let api = Api::with_client(cluster.url(), rkube_tests::certs::https_client(&ca, Some(&admin_identity)));
    let settings = get_object(&api, "/api/v1/namespaces/team/configmaps/settings").await;
    assert_eq!(settings["data"]["greeting"], "hello");
    let secret = get_object(&api, "/api/v1/namespaces/team/secrets/db").await;
    assert_eq!(secret["data"]["password"], "czNjcmV0", "base64 of s3cret");
    let web = get_object(&api, "/apis/apps/v1/namespaces/team/deployments/web").await;
    assert_eq!(web["spec"]["replicas"], 2);
    assert_eq!(web["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:1.37");
    // The first scene of docs/lab.md: expose, scale and a changed template.
    let exposed = admin.ok(&["expose", "deployment", "web", "--port=80", "--target-port=8080", "-n", "team"]).await;
    assert!(exposed.contains("service/web exposed"), "{exposed}");
    let service = get_object(&api, "/api/v1/namespaces/team/services/web").await;
    assert_eq!(service["spec"]["selector"]["app"], "web");
    assert_eq!(
        (&service["spec"]["ports"][0]["port"], &service["spec"]["ports"][0]["targetPort"]),
        (&json!(80), &json!(8080))
    );
    assert!(admin.ok(&["scale", "deployment", "web", "--replicas=5", "-n", "team"]).await.contains("scaled"));
    assert!(admin.ok(&["set", "env", "deployment/web", "PAGE=v2", "-n", "team"]).await.contains("env updated"));
    let web = get_object(&api, "/apis/apps/v1/namespaces/team/deployments/web").await;
    assert_eq!(web["spec"]["replicas"], 5);
    assert_eq!(web["spec"]["template"]["spec"]["containers"][0]["env"], json!([{"name": "PAGE", "value": "v2"}]));

    let whoami = alice.ok(&["auth", "whoami"]).await;
    assert!(whoami.contains("alice"), "{whoami}");
    assert_eq!(alice.ok(&["auth", "can-i", "list", "pods", "-n", "team"]).await.trim(), "yes");
    assert_eq!(alice.fails(&["auth", "can-i", "delete", "pods", "-n", "team"]).await.stdout.trim(), "no");
    assert_eq!(alice.fails(&["auth", "can-i", "list", "pods", "-n", "default"]).await.stdout.trim(), "no");
    // A typed delete (client-go may send its DeleteOptions as protobuf) goes through.
    admin.ok(&["delete", "deployment", "web", "-n", "team"]).await;
}

/// `kubectl explain` finds each kind's schema in `/openapi/v3` by its
/// `x-kubernetes-group-version-kind` and prints the field documentation of k8s-openapi.
#[tokio::test]
async fn explain_prints_kinds_and_fields_from_the_openapi_documents() {
    let cluster = start().await;
    let kubectl = Kubectl::new(&cluster);
    let pods = kubectl.ok(&["explain", "pods"]).await;
    assert!(pods.contains("KIND:       Pod"), "{pods}");
    assert!(pods.contains("Pod is a collection of containers"), "{pods}");
    assert!(pods.contains("FIELDS:") && pods.contains("spec\t<PodSpec>"), "{pods}");
    let replicas = kubectl.ok(&["explain", "deployment.spec.replicas"]).await;
    assert!(replicas.contains("GROUP:      apps"), "{replicas}");
    assert!(replicas.contains("FIELD: replicas <integer>"), "{replicas}");
    assert!(replicas.contains("Number of desired pods"), "{replicas}");
    let binding = kubectl.ok(&["explain", "rolebinding.roleRef"]).await;
    assert!(binding.contains("rbac.authorization.k8s.io"), "{binding}");
    let missing = kubectl.fails(&["explain", "pods.spec.nosuchfield"]).await;
    assert!(missing.stderr.contains("nosuchfield"), "{}", missing.describe());
}

/// kubectl asks `/api` and `/apis` for aggregated discovery (`apidiscovery.k8s.io/v2`) and,
/// getting it, needs no per-group-version request: two requests for the whole API.
#[tokio::test]
async fn discovery_is_aggregated_and_costs_kubectl_two_requests() {
    let cluster = start().await;
    let kubectl = Kubectl::new(&cluster);
    let ran = kubectl.run(&["api-resources", "-v=6"]).await;
    assert!(ran.success, "{}", ran.describe());
    let discovery: Vec<&str> = ran
        .stderr
        .lines()
        .filter(|l| l.contains("\"Response\"") && l.contains("verb=\"GET\""))
        .filter_map(|l| l.split("url=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(discovery.len(), 2, "{discovery:#?}");
    assert!(
        discovery.iter().any(|u| u.contains("/api?")) && discovery.iter().any(|u| u.contains("/apis?")),
        "{discovery:#?}"
    );
    let table = rows(&ran.stdout);
    assert_eq!(
        row_named(&table, "deployments").expect("deployments"),
        &vec!["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );

    // The document itself: the exact media type, subresources with their kinds.
    let reply = Api::new(cluster.url())
        .send(rkube_tests::Method::GET, "/apis", &[("Accept", AGGREGATED_DISCOVERY)], None)
        .await;
    assert_eq!(reply.headers["content-type"], AGGREGATED_DISCOVERY);
    let apps = reply.body["items"].as_array().expect("items").iter().find(|g| g["metadata"]["name"] == "apps").cloned();
    let deployments = apps.expect("apps")["versions"][0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["resource"] == "deployments")
        .cloned()
        .expect("deployments");
    assert!(deployments["subresources"].as_array().expect("subresources").iter().any(|s| s["subresource"] == "scale"));
}

/// The media type of aggregated discovery, as kubectl asks for it.
const AGGREGATED_DISCOVERY: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// `kubectl create priorityclass` and `create quota` (protobuf bodies), a LimitRange from a
/// manifest, and what `get`/`describe` print once the resource-quota controller has counted.
#[tokio::test]
async fn priority_classes_quotas_and_limit_ranges_from_kubectl() {
    let cluster = start().await;
    let kubectl = Kubectl::new(&cluster);
    let _controllers =
        rkube_tests::controllers::ControllerManager::start(&cluster, &["--controllers", "resourcequota"])
            .await
            .expect("controller-manager");
    let out = kubectl.ok(&["create", "priorityclass", "high", "--value=1000", "--description=for the web"]).await;
    assert!(out.contains("priorityclass.scheduling.k8s.io/high created"), "{out}");
    let out = kubectl.ok(&["get", "pc"]).await;
    let table = rows(&out);
    assert_eq!(table[0], ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"], "{out}");
    let high = row_named(&table, "high").unwrap_or_else(|| panic!("no row high: {out}"));
    assert_eq!((high[1], high[2], high[4]), ("1000", "false", "PreemptLowerPriority"), "{out}");
    assert!(row_named(&table, "system-node-critical").is_some_and(|row| row[1] == "2000001000"), "{out}");

    let out = kubectl.ok(&["create", "quota", "compute", "--hard=pods=2,requests.cpu=1,limits.memory=1Gi"]).await;
    assert!(out.contains("resourcequota/compute created"), "{out}");
    let limits = kubectl.manifest(
        "limits.yaml",
        "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: defaults\nspec:\n  limits:\n  - type: Container\n    default: {cpu: 500m, memory: 256Mi}\n    defaultRequest: {cpu: 250m}\n",
    );
    kubectl.ok(&["apply", "-f", &limits]).await;
    assert!(row_named(&rows(&kubectl.ok(&["get", "limits"]).await), "defaults").is_some());
    // A pod with no resources gets the defaults, so the quota can count it; its class sets its priority.
    let pod = kubectl.manifest(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  priorityClassName: high\n  containers:\n  - name: main\n    image: busybox:1.37\n",
    );
    kubectl.ok(&["apply", "-f", &pod]).await;
    let priority = kubectl
        .ok(&["get", "pod", "web", "-o", "jsonpath={.spec.priority} {.spec.containers[0].resources.requests.cpu}"])
        .await;
    assert_eq!(priority.trim(), "1000 250m");
    let out = rkube_tests::eventually(WATCH_LINE_TIMEOUT, "the quota shows the pod", || async {
        let out = kubectl.ok(&["get", "quota", "compute"]).await;
        out.contains("pods: 1/2, requests.cpu: 250m/1").then_some(out)
    })
    .await;
    assert!(out.contains("limits.memory: 256Mi/1Gi"), "{out}");
    let described = kubectl.ok(&["describe", "quota", "compute"]).await;
    let table = rows(&described);
    assert_eq!(row_named(&table, "requests.cpu"), Some(&vec!["requests.cpu", "250m", "1"]), "{described}");
    assert_eq!(row_named(&table, "pods"), Some(&vec!["pods", "1", "2"]), "{described}");
    let second = kubectl.manifest(
        "pod2.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: big\nspec:\n  containers:\n  - name: main\n    image: busybox:1.37\n    resources: {requests: {cpu: '2'}, limits: {cpu: '2'}}\n",
    );
    let refused = kubectl.fails(&["apply", "-f", &second]).await;
    assert!(
        refused.stderr.contains(
            "exceeded quota: compute, requested: requests.cpu=2, used: requests.cpu=250m, limited: requests.cpu=1"
        ),
        "{}",
        refused.stderr
    );
}

/// The CRD path as a kubectl user walks it: apply a CRD, wait for it to be established, apply
/// and list custom objects (their printer columns), `explain` their schema, and delete the CRD
/// with its objects.
#[tokio::test]
async fn custom_resources_apply_list_explain_and_go_with_their_crd() {
    let cluster = start().await;
    let kubectl = Kubectl::new(&cluster);
    let crd = kubectl.manifest(
        "crd.yaml",
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: backups.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: backups, singular: backup, kind: Backup, shortNames: [bk]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [schedule]
            properties:
              schedule: {type: string, description: When the backup runs, in cron syntax.}
              keep: {type: integer, minimum: 1, default: 7}
    additionalPrinterColumns:
    - {name: Schedule, type: string, jsonPath: .spec.schedule}
    - {name: Keep, type: integer, jsonPath: .spec.keep}
"#,
    );
    assert_eq!(
        kubectl.ok(&["apply", "-f", &crd]).await.trim(),
        "customresourcedefinition.apiextensions.k8s.io/backups.example.com created"
    );
    kubectl.ok(&["wait", "--for=condition=Established", "crd/backups.example.com", "--timeout=30s"]).await;
    let backup = kubectl.manifest(
        "backup.yaml",
        "apiVersion: example.com/v1\nkind: Backup\nmetadata:\n  name: nightly\nspec:\n  schedule: \"0 3 * * *\"\n",
    );
    assert_eq!(kubectl.ok(&["apply", "-f", &backup]).await.trim(), "backup.example.com/nightly created");
    let listed = kubectl.ok(&["get", "bk"]).await;
    let table = rows(&listed);
    assert_eq!(table[0], ["NAME", "SCHEDULE", "KEEP"], "{listed}");
    assert_eq!(row_named(&table, "nightly").map(|r| r[r.len() - 1]), Some("7"), "the default: {listed}");
    let explained = kubectl.ok(&["explain", "backup.spec.schedule"]).await;
    assert!(explained.contains("When the backup runs"), "{explained}");
    let invalid = kubectl.manifest(
        "invalid.yaml",
        "apiVersion: example.com/v1\nkind: Backup\nmetadata:\n  name: broken\nspec:\n  keep: 0\n",
    );
    let refused = kubectl.fails(&["apply", "-f", &invalid]).await;
    assert!(refused.stderr.contains("spec.schedule: Required value"), "{}", refused.describe());
    kubectl.ok(&["delete", "crd", "backups.example.com", "--timeout=60s"]).await;
    let gone = kubectl.fails(&["get", "backups"]).await;
    // kubectl's discovery cache still names the resource; the server no longer serves it.
    assert!(gone.stderr.contains("could not find the requested resource"), "{}", gone.describe());
}

/// `kubectl apply --server-side` from two sources: the second is refused with the conflicting
/// field and manager, as on Kubernetes, until `--force-conflicts` takes the field.
#[tokio::test]
async fn apply_server_side_conflicts_until_forced() {
    let cluster = start().await;
    let kubectl = Kubectl::new(&cluster);
    let api = Api::new(cluster.url());
    let mine = kubectl.manifest("mine.yaml", &config_map("shared", "mine"));
    kubectl.ok(&["apply", "--server-side", "-f", &mine]).await;
    let theirs = kubectl.manifest("theirs.yaml", &config_map("shared", "theirs"));
    let refused = kubectl.fails(&["apply", "--server-side", "--field-manager=other-team", "-f", &theirs]).await;
    assert!(refused.stderr.contains("conflict with \"kubectl\""), "{}", refused.describe());
    assert!(refused.stderr.contains(".data.greeting"), "{}", refused.describe());
    assert!(refused.stderr.contains("--force-conflicts"), "kubectl explains the way out: {}", refused.describe());
    let path = "/api/v1/namespaces/default/configmaps/shared";
    assert_eq!(get_object(&api, path).await["data"]["greeting"], "mine");
    let forced =
        kubectl.ok(&["apply", "--server-side", "--field-manager=other-team", "--force-conflicts", "-f", &theirs]).await;
    assert_eq!(forced.trim(), "configmap/shared serverside-applied");
    let object = get_object(&api, path).await;
    assert_eq!(object["data"]["greeting"], "theirs");
    let managers: Vec<&str> = object["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .filter_map(|e| e["manager"].as_str())
        .collect();
    assert!(managers.contains(&"other-team"), "{object}");
    let shown = kubectl.ok(&["get", "configmap", "shared", "-o", "yaml", "--show-managed-fields"]).await;
    assert!(shown.contains("manager: other-team"), "{shown}");
}

/// A manifest of a kind the server does not serve is refused the way Kubernetes refuses it:
/// kubectl's validation finds no CustomResourceDefinition for it and says so.
#[tokio::test]
async fn apply_of_a_kind_the_server_lacks_says_no_matches_for_kind() {
    let cluster = start().await;
    let kubectl = Kubectl::new(&cluster);
    let unknown = kubectl
        .manifest("gadget.yaml", "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g\nspec:\n  size: 1\n");
    let refused = kubectl.fails(&["apply", "-f", &unknown]).await;
    assert!(
        refused.stderr.contains(r#"no matches for kind "Gadget" in version "example.com/v1""#),
        "{}",
        refused.describe()
    );
}
