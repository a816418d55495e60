//! The apiserver over HTTPS with client certificates, against the real etcd, reqwest (rustls)
//! and the real kubectl: certificates made by rkube-pki, identities read from them, RBAC on.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rkube_pki::{Ca, kubeconfig};
use rkube_tests::certs::{https_client, write_pem};
use rkube_tests::{ApiServer, Etcd, StatusCode, binary, venv_bin};

/// A CA, the apiserver's serving certificate and key files, and an apiserver using them.
struct Secure {
    ca: Ca,
    dir: tempfile::TempDir,
    apiserver: ApiServer,
    _etcd: Etcd,
}

impl Secure {
    async fn start() -> Secure {
        Secure::start_with("--authorization-mode=RBAC").await
    }

    async fn start_with(authorization: &str) -> Secure {
        let ca = Ca::new("rkube-ca").expect("CA");
        let dir = tempfile::tempdir().expect("temporary directory");
        let serving = ca
            .serving("kube-apiserver", &["localhost"], &["127.0.0.1".parse().expect("address")])
            .expect("serving certificate");
        let ca_file = write_pem(dir.path(), "ca.crt", &ca.cert_pem());
        let cert_file = write_pem(dir.path(), "apiserver.crt", &serving.cert_pem);
        let key_file = write_pem(dir.path(), "apiserver.key", &serving.key_pem);
        let etcd = Etcd::start().await.expect("etcd");
        let args = [
            "--tls-cert-file",
            cert_file.as_str(),
            "--tls-private-key-file",
            key_file.as_str(),
            "--client-ca-file",
            ca_file.as_str(),
            authorization,
        ];
        let apiserver =
            ApiServer::start_https(&etcd, &args, https_client(&ca, None)).await.expect("apiserver over HTTPS");
        Secure { ca, dir, apiserver, _etcd: etcd }
    }

    fn kubeconfig(&self, user: &str, groups: &[&str]) -> PathBuf {
        let cert = self.ca.client(user, groups).expect("client certificate");
        let path = self.dir.path().join(format!("{user}.kubeconfig"));
        std::fs::write(&path, kubeconfig(&self.apiserver.url, &self.ca.cert_pem(), user, &cert)).expect("kubeconfig");
        path
    }
}

async fn get(client: &reqwest::Client, url: String) -> (StatusCode, serde_json::Value) {
    let reply = client.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e:#}"));
    let status = reply.status();
    (status, reply.json().await.unwrap_or_default())
}

#[tokio::test]
async fn client_certificates_name_the_user_and_rbac_decides() {
    let secure = Secure::start().await;
    let url = &secure.apiserver.url;
    assert!(url.starts_with("https://"), "{url}");
    let admin = secure.ca.client("kubernetes-admin", &["system:masters"]).expect("admin certificate");
    let (status, _) = get(&https_client(&secure.ca, Some(&admin)), format!("{url}/api/v1/nodes")).await;
    assert_eq!(status, StatusCode::OK);
    let alice = secure.ca.client("alice", &["devs"]).expect("alice's certificate");
    let (status, body) =
        get(&https_client(&secure.ca, Some(&alice)), format!("{url}/api/v1/namespaces/default/pods")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["message"],
        r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#
    );
    // Without a certificate: anonymous.
    let (status, body) = get(&https_client(&secure.ca, None), format!("{url}/api/v1/namespaces/default/pods")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["message"].as_str().is_some_and(|m| m.contains(r#"User "system:anonymous""#)), "{body}");
    // A certificate from another CA does not get through the handshake.
    let stranger =
        Ca::new("not-the-cluster-ca").expect("CA").client("kubernetes-admin", &["system:masters"]).expect("cert");
    let refused = https_client(&secure.ca, Some(&stranger)).get(format!("{url}/api/v1/nodes")).send().await;
    assert!(refused.is_err(), "a certificate of another CA was accepted: {refused:?}");
    // Plain HTTP on the TLS port gets no API answer.
    let plain = url.replacen("https://", "http://", 1);
    let answer = reqwest::Client::new().get(format!("{plain}/api/v1/nodes")).send().await;
    assert!(answer.is_err() || answer.is_ok_and(|r| !r.status().is_success()), "plain HTTP was served");
}

async fn kubectl(kubeconfig: &Path, home: &Path, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(venv_bin("kubectl"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("kubectl runs (make deps installs it)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn kubectl_connects_with_a_generated_kubeconfig() {
    let secure = Secure::start().await;
    let home = tempfile::tempdir().expect("HOME");
    let admin = secure.kubeconfig("kubernetes-admin", &["system:masters"]);
    let (ok, out, err) = kubectl(&admin, home.path(), &["get", "namespaces"]).await;
    assert!(ok && out.contains("kube-system"), "{out}{err}");
    let manifest = home.path().join("team.yaml");
    std::fs::write(&manifest, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n").expect("manifest");
    let manifest = manifest.display().to_string();
    let (ok, out, err) = kubectl(&admin, home.path(), &["apply", "-f", &manifest]).await;
    assert!(ok && out.contains("namespace/team created"), "{out}{err}");
    let alice = secure.kubeconfig("alice", &[]);
    let (ok, out, err) = kubectl(&alice, home.path(), &["get", "pods", "-n", "team"]).await;
    assert!(!ok, "{out}");
    assert!(
        err.contains(
            r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "team""#
        ),
        "{err}"
    );
}

#[tokio::test]
async fn rkubectl_and_the_rkube_client_speak_tls_with_client_certificates() {
    let secure = Secure::start().await;
    let home = tempfile::tempdir().expect("HOME");
    let run = |kubeconfig: PathBuf, args: &'static [&'static str]| {
        let home = home.path().to_path_buf();
        async move {
            let output = tokio::process::Command::new(binary("rkubectl"))
                .args(args)
                .env("KUBECONFIG", &kubeconfig)
                .env("HOME", &home)
                .stdin(Stdio::null())
                .output()
                .await
                .expect("rkubectl runs");
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
    };
    let admin = secure.kubeconfig("kubernetes-admin", &["system:masters"]);
    let (ok, out, err) = run(admin.clone(), &["get", "namespaces"]).await;
    assert!(ok && out.contains("kube-system"), "{out}{err}");
    // exec's WebSocket speaks TLS with the same certificate: the apiserver's own answer (the
    // pod has no node yet) comes back, not a TLS or authentication failure.
    let (ok, out, err) = run(admin.clone(), &["run", "idle", "--image", "busybox"]).await;
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run(admin, &["exec", "idle", "--", "true"]).await;
    assert!(!ok, "{out}");
    assert_eq!(err.trim(), "Error from server (BadRequest): pod idle does not have a host assigned", "{err}");
    let alice = secure.kubeconfig("alice", &[]);
    let (ok, out, err) = run(alice, &["get", "pods"]).await;
    assert!(!ok, "{out}");
    assert!(err.contains(r#"User "alice" cannot list resource "pods""#), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

/// Sends `method path` with a JSON `body` (a merge patch for PATCH) through `client`.
async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let mut request = client.request(method.clone(), &url);
    if let Some(body) = body {
        let kind = if method == reqwest::Method::PATCH { "application/merge-patch+json" } else { "application/json" };
        request = request.header("Content-Type", kind).body(body.to_string());
    }
    let reply = request.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e:#}"));
    let status = reply.status();
    (status, reply.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_kubelet_writes_only_its_own_node_lease_and_pods_and_reads_only_its_pods_secrets() {
    use reqwest::Method;
    use serde_json::json;
    let secure = Secure::start_with("--authorization-mode=Node,RBAC").await;
    let url = secure.apiserver.url.clone();
    let admin =
        https_client(&secure.ca, Some(&secure.ca.client("kubernetes-admin", &["system:masters"]).expect("cert")));
    let node_a = https_client(&secure.ca, Some(&secure.ca.client("system:node:a", &["system:nodes"]).expect("cert")));
    let node = |name: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});

    // Its own Node, yes; another's, no.
    assert_eq!(
        send(&node_a, Method::POST, format!("{url}/api/v1/nodes"), Some(node("a"))).await.0,
        StatusCode::CREATED
    );
    let (status, body) = send(&node_a, Method::POST, format!("{url}/api/v1/nodes"), Some(node("b"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["message"], r#"nodes "b" is forbidden: node "a" is not allowed to modify node "b""#);
    assert_eq!(send(&admin, Method::POST, format!("{url}/api/v1/nodes"), Some(node("b"))).await.0, StatusCode::CREATED);
    let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}});
    let (status, _) =
        send(&node_a, Method::PATCH, format!("{url}/api/v1/nodes/b/status"), Some(not_ready.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "node a marked node b not ready");
    let (status, body) = send(&node_a, Method::PATCH, format!("{url}/api/v1/nodes/a/status"), Some(not_ready)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let label = json!({"metadata": {"labels": {"node-restriction.kubernetes.io/zone": "z"}}});
    let (status, body) = send(&node_a, Method::PATCH, format!("{url}/api/v1/nodes/a"), Some(label)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(send(&node_a, Method::DELETE, format!("{url}/api/v1/nodes/b"), None).await.0, StatusCode::FORBIDDEN);

    // Its own Lease, yes; another's, no.
    let lease = |name: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name, "namespace": "kube-node-lease"},
               "spec": {"holderIdentity": name, "leaseDurationSeconds": 40}})
    };
    let leases = format!("{url}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases");
    assert_eq!(send(&node_a, Method::POST, leases.clone(), Some(lease("a"))).await.0, StatusCode::CREATED);
    let (status, body) = send(&node_a, Method::POST, leases, Some(lease("b"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Pods: one on each node, each using a Secret of its own.
    for (node, secret) in [("a", "db-a"), ("b", "db-b")] {
        let secret_body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret}, "stringData": {"password": "p"}});
        assert_eq!(
            send(&admin, Method::POST, format!("{url}/api/v1/namespaces/default/secrets"), Some(secret_body)).await.0,
            StatusCode::CREATED
        );
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("on-{node}")},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox-local:v1",
                "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}]}]}});
        assert_eq!(
            send(&admin, Method::POST, format!("{url}/api/v1/namespaces/default/pods"), Some(pod)).await.0,
            StatusCode::CREATED
        );
    }
    let secrets = format!("{url}/api/v1/namespaces/default/secrets");
    let mut read = StatusCode::FORBIDDEN;
    // The pod may reach the authorizer's cache a moment after it was created.
    for _ in 0..100 {
        read = send(&node_a, Method::GET, format!("{secrets}/db-a"), None).await.0;
        if read == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(read, StatusCode::OK, "node a reads the Secret of its own pod");
    let (status, body) = send(&node_a, Method::GET, format!("{secrets}/db-b"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        body["message"],
        r#"secrets "db-b" is forbidden: User "system:node:a" cannot get resource "secrets" in API group "" in the namespace "default""#
    );
    assert_eq!(send(&node_a, Method::GET, secrets, None).await.0, StatusCode::FORBIDDEN, "a node lists no Secrets");

    // Pod status and deletion: only its own pods.
    let status_patch = json!({"status": {"message": "seen by a"}});
    let pods = format!("{url}/api/v1/namespaces/default/pods");
    assert_eq!(
        send(&node_a, Method::PATCH, format!("{pods}/on-a/status"), Some(status_patch.clone())).await.0,
        StatusCode::OK
    );
    let (status, body) = send(&node_a, Method::PATCH, format!("{pods}/on-b/status"), Some(status_patch)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(send(&node_a, Method::DELETE, format!("{pods}/on-b"), None).await.0, StatusCode::FORBIDDEN);
    let (status, body) = send(
        &node_a,
        Method::POST,
        pods,
        Some(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "mine"}, "spec": {"nodeName": "a", "containers": [{"name": "c", "image": "i"}]}})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn kube_rs_and_the_python_client_connect_with_the_generated_kubeconfigs() {
    let secure = Secure::start().await;
    let admin = secure.kubeconfig("kubernetes-admin", &["system:masters"]);
    let alice = secure.kubeconfig("alice", &[]);

    // kube-rs, as a Rust controller would load it.
    let client = |path: &Path| {
        let path = path.to_path_buf();
        async move {
            let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig parses");
            let options = kube::config::KubeConfigOptions::default();
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.expect("config");
            kube::Client::try_from(config).expect("client")
        }
    };
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client(&admin).await);
    let names: Vec<String> = namespaces
        .list(&Default::default())
        .await
        .expect("the admin lists namespaces")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.iter().any(|n| n == "kube-system"), "{names:?}");
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client(&alice).await, "default");
    match pods.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("alice listed pods: {other:?}"),
    }

    // The official Python client's load_kube_config.
    let script = r#"
import sys
from kubernetes import client, config
for path in sys.argv[1:]:
    config.load_kube_config(config_file=path)
    try:
        names = [n.metadata.name for n in client.CoreV1Api().list_namespace().items]
        print("allowed", "kube-system" in names)
    except client.ApiException as e:
        print("refused", e.status)
"#;
    let output = tokio::process::Command::new(venv_bin("python"))
        .arg("-c")
        .arg(script)
        .arg(&admin)
        .arg(&alice)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["allowed True", "refused 403"], "{stdout}");
}
