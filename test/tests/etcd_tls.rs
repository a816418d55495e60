//! etcd secured as Kubernetes runs it: TLS on its client port and client-certificate
//! authentication (`--client-cert-auth`), and the apiserver reaching it with `--etcd-cafile`,
//! `--etcd-certfile` and `--etcd-keyfile`. Real etcd and apiserver, certificates from
//! rkube-pki.

use std::process::Stdio;
use std::time::Duration;

use rkube_pki::Ca;
use rkube_tests::certs::{https_client, write_pem};
use rkube_tests::{Api, ApiServer, Etcd, StatusCode, binary};
use serde_json::json;

#[tokio::test]
async fn the_apiserver_stores_through_an_etcd_that_demands_client_certificates() {
    let ca = Ca::new("etcd-ca").expect("CA");
    let etcd = Etcd::start_tls(&ca).await.expect("etcd with TLS");
    assert!(etcd.client_url.starts_with("https://"), "{}", etcd.client_url);

    // Without a client certificate etcd answers nobody.
    let anonymous = https_client(&ca, None).get(format!("{}/health", etcd.client_url)).send().await;
    assert!(anonymous.is_err() || anonymous.is_ok_and(|r| !r.status().is_success()), "etcd served a stranger");

    let dir = tempfile::tempdir().expect("directory");
    let client = ca.client("kube-apiserver-etcd-client", &[]).expect("client certificate");
    let ca_file = write_pem(dir.path(), "ca.crt", &ca.cert_pem());
    let cert = write_pem(dir.path(), "client.crt", &client.cert_pem);
    let key = write_pem(dir.path(), "client.key", &client.key_pem);
    let args = ["--etcd-cafile", ca_file.as_str(), "--etcd-certfile", cert.as_str(), "--etcd-keyfile", key.as_str()];
    let apiserver = ApiServer::start(&etcd, &args).await.expect("the apiserver over etcd TLS");
    let api = Api::new(&apiserver.url);
    api.create("/api/v1/namespaces/default/configmaps", &json!({"metadata": {"name": "kept"}, "data": {"k": "v"}}))
        .await;
    let (status, cm) = api.get("/api/v1/namespaces/default/configmaps/kept").await;
    assert_eq!((status, cm["data"]["k"].as_str()), (StatusCode::OK, Some("v")));
}

#[tokio::test]
async fn etcd_tls_flags_that_cannot_work_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("directory");
    let ca_file = write_pem(dir.path(), "ca.crt", &Ca::new("etcd-ca").expect("CA").cert_pem());
    let run = |args: Vec<&str>| {
        let mut command = tokio::process::Command::new(binary("rkube-apiserver"));
        command.args(args).stdin(Stdio::null()).kill_on_drop(true);
        async move { tokio::time::timeout(Duration::from_secs(20), command.output()).await }
    };
    let output = run(vec!["--etcd-servers", "http://127.0.0.1:1", "--etcd-cafile", &ca_file, "--port", "0"])
        .await
        .expect("it exits")
        .expect("it runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--etcd-cafile needs https:// URLs"), "{stderr}");
    let output = run(vec!["--etcd-certfile", &ca_file, "--port", "0"]).await.expect("it exits").expect("it runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--etcd-keyfile"));
}
