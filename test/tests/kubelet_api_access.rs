//! The kubelet's API (logs, exec) over HTTPS, open only to the apiserver's client
//! certificate; and the apiserver reaching it with that certificate. Real apiserver, etcd
//! and rkubelet (fake runtime), certificates from rkube-pki.

use std::time::Duration;

use rkube_pki::Ca;
use rkube_tests::certs::{https_client, write_pem};
use rkube_tests::node::Kubelet;
use rkube_tests::{Api, Cluster, Method, StatusCode, eventually};
use serde_json::json;

#[tokio::test]
async fn only_the_apiserver_reads_logs_through_the_kubelet_api() {
    let ca = Ca::new("rkube-ca").expect("CA");
    let dir = tempfile::tempdir().expect("directory");
    let serving = ca.serving("system:node:secure", &["secure"], &["127.0.0.1".parse().expect("ip")]).expect("serving");
    let apiserver_client = ca.client("kube-apiserver-kubelet-client", &["system:masters"]).expect("client");
    let ca_file = write_pem(dir.path(), "ca.crt", &ca.cert_pem());
    let kubelet_cert = write_pem(dir.path(), "kubelet.crt", &serving.cert_pem);
    let kubelet_key = write_pem(dir.path(), "kubelet.key", &serving.key_pem);
    let client_cert = write_pem(dir.path(), "client.crt", &apiserver_client.cert_pem);
    let client_key = write_pem(dir.path(), "client.key", &apiserver_client.key_pem);
    let cluster = Cluster::start_with_args(&[
        "--kubelet-certificate-authority",
        &ca_file,
        "--kubelet-client-certificate",
        &client_cert,
        "--kubelet-client-key",
        &client_key,
    ])
    .await
    .expect("cluster");
    let kubelet = Kubelet::start_fake(
        &cluster,
        "secure",
        &["--tls-cert-file", &kubelet_cert, "--tls-private-key-file", &kubelet_key, "--client-ca-file", &ca_file],
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
    let exec = format!("{base}/exec/default/web/app?command=id");
    assert_eq!(https_client(&ca, Some(&alice)).get(&exec).send().await.expect("exec").status(), StatusCode::FORBIDDEN);
    let allowed = https_client(&ca, Some(&apiserver_client)).get(&logs).send().await.expect("apiserver");
    assert!(!matches!(allowed.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN), "{}", allowed.status());
    // Plain HTTP gets nothing.
    let plain = base.replacen("https://", "http://", 1);
    let answer = reqwest::Client::new().get(format!("{plain}/containerLogs/default/web/app")).send().await;
    assert!(answer.is_err() || answer.is_ok_and(|r| !r.status().is_success()), "plain HTTP was served");

    // Through the apiserver: it dials the kubelet over HTTPS with its certificate.
    let api = Api::new(cluster.url());
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
