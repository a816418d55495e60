//! The kubelet's API (logs, exec) over HTTPS: callers authenticated by client certificate or
//! bearer token (a TokenReview to the apiserver) and authorized by the apiserver's RBAC (a
//! SubjectAccessReview on `nodes/proxy`); and the apiserver reaching it with its kubelet
//! client certificate. Real apiserver (Node,RBAC), etcd and rkubelet (fake runtime, its own
//! node token), certificates from rkube-pki.

use std::time::Duration;

use rkube_pki::Ca;
use rkube_tests::certs::{https_client, write_pem};
use rkube_tests::node::Kubelet;
use rkube_tests::{Api, Cluster, Method, StatusCode, eventually};
use serde_json::json;

const TOKENS: &str = "admin-token,admin,1,\"system:masters\"\nnode-token,system:node:secure,2,\"system:nodes\"\n\
alice-token,alice,3\nops-token,olga,4,\"ops\"\n";

#[tokio::test]
async fn callers_of_the_kubelet_api_are_authenticated_and_rbac_decides() {
    let ca = Ca::new("rkube-ca").expect("CA");
    let dir = tempfile::tempdir().expect("directory");
    let serving = ca.serving("system:node:secure", &["secure"], &["127.0.0.1".parse().expect("ip")]).expect("serving");
    let apiserver_client = ca.client("kube-apiserver-kubelet-client", &["system:masters"]).expect("client");
    let ca_file = write_pem(dir.path(), "ca.crt", &ca.cert_pem());
    let kubelet_cert = write_pem(dir.path(), "kubelet.crt", &serving.cert_pem);
    let kubelet_key = write_pem(dir.path(), "kubelet.key", &serving.key_pem);
    let client_cert = write_pem(dir.path(), "client.crt", &apiserver_client.cert_pem);
    let client_key = write_pem(dir.path(), "client.key", &apiserver_client.key_pem);
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, TOKENS).expect("token file");
    let tokens = tokens.display().to_string();
    let cluster = Cluster::start_with_args(&[
        "--authorization-mode=Node,RBAC",
        "--token-auth-file",
        &tokens,
        "--kubelet-certificate-authority",
        &ca_file,
        "--kubelet-client-certificate",
        &client_cert,
        "--kubelet-client-key",
        &client_key,
    ])
    .await
    .expect("cluster");
    let node_kubeconfig =
        cluster.write_kubeconfig_as(dir.path(), "node.kubeconfig", Some("node-token")).expect("kubeconfig");
    let node_kubeconfig = node_kubeconfig.display().to_string();
    let kubelet = Kubelet::start_fake(
        &cluster,
        "secure",
        &[
            "--kubeconfig",
            &node_kubeconfig,
            "--tls-cert-file",
            &kubelet_cert,
            "--tls-private-key-file",
            &kubelet_key,
            "--client-ca-file",
            &ca_file,
        ],
    )
    .await
    .expect("kubelet over HTTPS");
    let base = kubelet.url();
    assert!(base.starts_with("https://"), "{base}");
    let logs = format!("{base}/containerLogs/default/web/app");

    // Health stays open; logs need the apiserver's certificate.
    assert_eq!(
        https_client(&ca, None).get(format!("{base}/healthz")).send().await.expect("healthz").status(),
        StatusCode::OK
    );
    let anonymous = https_client(&ca, None).get(&logs).send().await.expect("anonymous");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let alice = ca.client("alice", &["devs"]).expect("alice");
    let refused = https_client(&ca, Some(&alice)).get(&logs).send().await.expect("alice");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let text = refused.text().await.unwrap_or_default();
    assert_eq!(text.trim(), "Forbidden (user=alice, verb=get, resource=nodes, subresource=proxy)");
    let exec = format!("{base}/exec/default/web/app?command=id");
    assert_eq!(https_client(&ca, Some(&alice)).get(&exec).send().await.expect("exec").status(), StatusCode::FORBIDDEN);
    let allowed = https_client(&ca, Some(&apiserver_client)).get(&logs).send().await.expect("apiserver");
    assert!(!matches!(allowed.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN), "{}", allowed.status());

    // Bearer tokens: the kubelet asks the apiserver whose they are, and RBAC decides.
    let with_token = |token: &str| https_client(&ca, None).get(&logs).bearer_auth(token).send();
    assert_eq!(with_token("guessed").await.expect("guessed").status(), StatusCode::UNAUTHORIZED);
    assert_eq!(with_token("alice-token").await.expect("alice").status(), StatusCode::FORBIDDEN);
    assert_eq!(with_token("ops-token").await.expect("olga").status(), StatusCode::FORBIDDEN);
    let admin = Api::with_token(cluster.url(), "admin-token");
    admin
        .create(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            &json!({"metadata": {"name": "node-proxy"},
                "rules": [{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get", "create"]}]}),
        )
        .await;
    admin
        .create(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            &json!({"metadata": {"name": "ops-node-proxy"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "node-proxy"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "ops"}]}),
        )
        .await;
    // A denied answer is trusted for 30 s (as Kubernetes' kubelet caches it).
    eventually(Duration::from_secs(45), "the binding to let olga read logs", || async {
        let status = with_token("ops-token").await.ok()?.status();
        (!matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)).then_some(())
    })
    .await;
    // Plain HTTP gets nothing.
    let plain = base.replacen("https://", "http://", 1);
    let answer = reqwest::Client::new().get(format!("{plain}/containerLogs/default/web/app")).send().await;
    assert!(answer.is_err() || answer.is_ok_and(|r| !r.status().is_success()), "plain HTTP was served");

    // Through the apiserver: it dials the kubelet over HTTPS with its certificate.
    let api = admin;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"nodeName": "secure", "containers": [{"name": "app", "image": "busybox-local:v1"}]}});
    api.create("/api/v1/namespaces/default/pods", &pod).await;
    eventually(Duration::from_secs(30), "the pod to run", || async {
        let pod = api.get_ok("/api/v1/namespaces/default/pods/web").await;
        (pod["status"]["phase"] == "Running").then_some(())
    })
    .await;
    let reply = api.send(Method::GET, "/api/v1/namespaces/default/pods/web/log", &[], None).await;
    let text = reply.body.to_string();
    assert_ne!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "the apiserver did not get through: {text}");
    assert!(!text.contains("401") && !text.contains("403"), "{text}");
}
