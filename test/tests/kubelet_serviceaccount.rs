//! A pod's identity and secrets on a real node: the apiserver over HTTPS with Node,RBAC
//! authorization and a ServiceAccount signing key, the real `rkubelet` (with its own
//! `system:node:` certificate) on a private containerd, and the official Python client
//! using the credentials the pod found in `/var/run/secrets/kubernetes.io/serviceaccount`.
//! Needs root and `make deps` (containerd, runc, busybox-static, the Python client).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use rkube_client::{Api, Client, Config, DeleteParams, KubeconfigOptions, Patch, PatchParams};
use rkube_pki::{Ca, kubeconfig};
use rkube_tests::certs::{https_client, write_pem};
use rkube_tests::node::{Containerd, Kubelet, TEST_IMAGE};
use rkube_tests::{ApiServer, Cluster, Etcd, StatusCode, eventually, venv_bin};
use serde_json::{Value, json};

const NODE: &str = "sa-node";
const WAIT: Duration = Duration::from_secs(60);

/// The apiserver over HTTPS with Node,RBAC and a token signing key, and an admin client.
async fn secure_cluster(ca: &Ca, dir: &Path) -> (Cluster, Client) {
    let serving = ca.serving("kube-apiserver", &["localhost"], &["127.0.0.1".parse().expect("ip")]).expect("serving");
    let ca_file = write_pem(dir, "ca.crt", &ca.cert_pem());
    let cert = write_pem(dir, "apiserver.crt", &serving.cert_pem);
    let key = write_pem(dir, "apiserver.key", &serving.key_pem);
    let sa_key = write_pem(dir, "sa.key", &rkube_pki::signing_key_pem().expect("signing key"));
    let etcd = Etcd::start().await.expect("etcd");
    let args = [
        "--tls-cert-file",
        cert.as_str(),
        "--tls-private-key-file",
        key.as_str(),
        "--client-ca-file",
        ca_file.as_str(),
        "--authorization-mode=Node,RBAC",
        "--service-account-signing-key-file",
        sa_key.as_str(),
    ];
    let apiserver = ApiServer::start_https(&etcd, &args, https_client(ca, None)).await.expect("apiserver over HTTPS");
    let cluster = Cluster { apiserver, etcd };
    let admin = client_for(ca, dir, &cluster, "kubernetes-admin", &["system:masters"]);
    (cluster, admin)
}

/// Writes `<dir>/<user>.kubeconfig` with a client certificate for `user` in `groups`.
fn kubeconfig_for(ca: &Ca, dir: &Path, cluster: &Cluster, user: &str, groups: &[&str]) -> String {
    let cert = ca.client(user, groups).expect("client certificate");
    let path = dir.join(format!("{}.kubeconfig", user.replace(':', "-")));
    std::fs::write(&path, kubeconfig(cluster.url(), &ca.cert_pem(), user, &cert)).expect("kubeconfig");
    path.display().to_string()
}

fn client_for(ca: &Ca, dir: &Path, cluster: &Cluster, user: &str, groups: &[&str]) -> Client {
    let path = kubeconfig_for(ca, dir, cluster, user, groups);
    let config =
        Config::from_kubeconfig(&KubeconfigOptions { path: Some(path.into()), context: None }).expect("config");
    Client::new(config).expect("client")
}

/// Creates `object` at `path` as the admin.
async fn create(admin: &Client, path: &str, object: Value) {
    let request = http::Request::post(path)
        .header("Content-Type", "application/json")
        .body(object.to_string().into_bytes())
        .expect("request");
    admin.request_json(request).await.unwrap_or_else(|e| panic!("POST {path}: {e}"));
}

/// The text the pod's container `main` wrote so far (its CRI log file on the node).
fn log_of(kubelet: &Kubelet, pod: &Pod) -> String {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let dir = kubelet.root_dir().join("pods").join(format!("team_{name}_{uid}")).join("main");
    let Ok(entries) = std::fs::read_dir(&dir) else { return String::new() };
    let mut text = String::new();
    for entry in entries.flatten() {
        text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    // CRI lines: "<time> stdout F <text>".
    text.lines().filter_map(|line| line.splitn(4, ' ').nth(3)).collect::<Vec<_>>().join("\n")
}

/// Runs the Python client with the pod's token and CA against the apiserver: lists the pods
/// of `team` and of `default`, printing the names or the HTTP status of the refusal.
async fn python_lists(url: &str, ca_file: &Path, token_file: &Path) -> String {
    let script = r#"
import sys
from kubernetes import client
conf = client.Configuration()
conf.host = sys.argv[1]
conf.ssl_ca_cert = sys.argv[2]
conf.api_key = {"authorization": open(sys.argv[3]).read().strip()}
conf.api_key_prefix = {"authorization": "Bearer"}
api = client.CoreV1Api(client.ApiClient(conf))
for namespace in ["team", "default"]:
    try:
        names = sorted(p.metadata.name for p in api.list_namespaced_pod(namespace).items)
        print(namespace, "allowed", ",".join(names))
    except client.ApiException as e:
        print(namespace, "refused", e.status)
"#;
    let output = tokio::process::Command::new(venv_bin("python"))
        .arg("-c")
        .arg(script)
        .arg(url)
        .arg(ca_file)
        .arg(token_file)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "python failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[tokio::test]
async fn a_pod_reads_its_token_and_secrets_and_acts_only_as_far_as_rbac_allows() {
    let ca = Ca::new("rkube-ca").expect("CA");
    let dir = tempfile::tempdir().expect("directory");
    let (cluster, admin) = secure_cluster(&ca, dir.path()).await;
    let node_kubeconfig = kubeconfig_for(&ca, dir.path(), &cluster, &format!("system:node:{NODE}"), &["system:nodes"]);
    let containerd = Containerd::start().await.expect("containerd");
    let kubelet = Kubelet::start_containerd_with(&cluster, &containerd, NODE, &["--kubeconfig", &node_kubeconfig])
        .await
        .expect("kubelet with its node certificate");

    create(
        &admin,
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
    )
    .await;
    // What the root-ca-cert-publisher writes (it has its own test).
    create(
        &admin,
        "/api/v1/namespaces/team/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": ca.cert_pem()}}),
    )
    .await;
    create(
        &admin,
        "/api/v1/namespaces/team/serviceaccounts",
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "reader"}}),
    )
    .await;
    create(
        &admin,
        "/api/v1/namespaces/team/secrets",
        json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db"}, "stringData": {"password": "s3cret"}}),
    )
    .await;
    create(
        &admin,
        "/api/v1/namespaces/team/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings"}, "data": {"MODE": "prod"}}),
    )
    .await;
    create(
        &admin,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings",
        json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "reader-views"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "team"}]}),
    )
    .await;

    // A Service of the namespace: its variables reach the container, as the kubernetes
    // Service's do.
    create(
        &admin,
        "/api/v1/namespaces/team/services",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db-svc"},
            "spec": {"selector": {"app": "db"}, "ports": [{"name": "pg", "port": 5432}]}}),
    )
    .await;
    let script = r#"d=/var/run/secrets/kubernetes.io/serviceaccount
echo "token=$(cat $d/token)"
sed 's/^/ca: /' $d/ca.crt
echo "services=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT db=$DB_SVC_SERVICE_HOST:$DB_SVC_SERVICE_PORT_PG link=$DB_SVC_PORT"
echo "namespace=$(cat $d/namespace) password=$DB_PASSWORD mode=$APP_MODE pod=$POD_NAME"
while true; do echo "file=$(cat /etc/db/password)"; sleep 1; done"#;
    create(
        &admin,
        "/api/v1/namespaces/team/pods",
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app"},
        "spec": {"nodeName": NODE, "serviceAccountName": "reader", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sh", "-c", script],
                "env": [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "envFrom": [{"prefix": "APP_", "configMapRef": {"name": "settings"}}],
                "volumeMounts": [{"name": "db", "mountPath": "/etc/db"}]}],
            "volumes": [{"name": "db", "secret": {"secretName": "db"}}]}}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "team");
    let pod = pods.get("app").await.expect("the pod");
    let spec = pod.spec.clone().expect("spec");
    let access = spec.volumes.iter().flatten().find(|v| v.name.starts_with("kube-api-access-"));
    assert!(access.is_some(), "the ServiceAccount admission added no credentials volume: {:?}", spec.volumes);

    let log = eventually(WAIT, "the pod to print its credentials", || async {
        let log = log_of(&kubelet, &pod);
        log.contains("file=").then_some(log)
    })
    .await;
    assert!(log.contains("namespace=team password=s3cret mode=prod pod=app"), "{log}\n{}", kubelet.log_tail(30));
    assert!(log.contains("file=s3cret"), "{log}");
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(admin.clone(), "team");
    let db_ip = services.get("db-svc").await.expect("db-svc").spec.and_then(|s| s.cluster_ip).unwrap_or_default();
    assert!(
        log.contains(&format!("services=10.96.0.1:443 db={db_ip}:5432 link=tcp://{db_ip}:5432")),
        "the Services' variables: {log}"
    );
    let token = log.lines().find_map(|l| l.strip_prefix("token=")).expect("a token line").to_string();
    let ca_pem: String = log.lines().filter_map(|l| l.strip_prefix("ca: ")).map(|l| format!("{l}\n")).collect();
    assert_eq!(ca_pem.trim(), ca.cert_pem().trim(), "ca.crt is the cluster CA");

    // A changed Secret reaches the running container's volume without a restart.
    let patch = json!({"stringData": {"password": "rotated"}});
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(admin.clone(), "team");
    secrets.patch("db", &PatchParams::default(), &Patch::Merge(patch)).await.expect("patch the secret");
    eventually(WAIT, "the rotated password in the volume", || async {
        log_of(&kubelet, &pod).contains("file=rotated").then_some(())
    })
    .await;

    // The Python client, with what the pod found, over TLS: its view binding and no more.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token).expect("token file");
    let pod_ca = dir.path().join("pod-ca.crt");
    std::fs::write(&pod_ca, &ca_pem).expect("ca file");
    let answer = python_lists(cluster.url(), &pod_ca, &token_file).await;
    assert!(answer.contains("team allowed app"), "{answer}");
    assert!(answer.contains("default refused 403"), "{answer}");

    // A reference to a Secret that does not exist keeps the container from being created.
    create(
        &admin,
        "/api/v1/namespaces/team/pods",
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "broken"},
        "spec": {"nodeName": NODE, "serviceAccountName": "reader", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sleep", "3600"],
                "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "x"}}}]}]}}),
    )
    .await;
    let reason = eventually(WAIT, "the broken pod's waiting reason", || async {
        let pod = pods.get("broken").await.ok()?;
        let status = pod.status?.container_statuses?.into_iter().next()?;
        let waiting = status.state?.waiting?;
        (waiting.reason.as_deref() == Some("CreateContainerConfigError")).then(|| waiting.message.unwrap_or_default())
    })
    .await;
    assert!(reason.contains("missing"), "{reason}");

    // The token is bound to the pod: deleting the pod revokes it.
    pods.delete("app", &DeleteParams::default()).await.expect("delete the pod");
    let bearer = format!("Bearer {token}");
    let url = format!("{}/api/v1/namespaces/team/pods", cluster.url());
    eventually(WAIT, "the token to stop working", || async {
        let reply = https_client(&ca, None).get(&url).header("Authorization", &bearer).send().await.ok()?;
        (reply.status() == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
}
