//! The harness itself: etcd starts, keeps its data across a restart, and compacts on request.
//! These run without the apiserver, so they also tell a broken harness from a broken apiserver.

use rkube_tests::Etcd;

#[tokio::test]
async fn etcd_restart_keeps_data_and_client_url() {
    let mut etcd = Etcd::start().await.expect("etcd starts");
    etcd.put("/harness/key", b"value").await.expect("put");
    let url_before = etcd.client_url.clone();

    etcd.stop().await;
    assert!(etcd.get("/harness/key").await.is_err(), "a stopped etcd must not answer");

    etcd.restart().await.expect("etcd restarts");
    assert_eq!(etcd.client_url, url_before);
    assert_eq!(etcd.get("/harness/key").await.expect("get"), Some(b"value".to_vec()));
}

#[tokio::test]
async fn etcd_compaction_moves_the_oldest_readable_revision() {
    let etcd = Etcd::start().await.expect("etcd starts");
    for index in 0..5 {
        etcd.put("/harness/counter", index.to_string().as_bytes()).await.expect("put");
    }
    let revision = etcd.current_revision().await.expect("revision");
    assert!(revision >= 6, "five puts after the initial revision 1, got {revision}");
    etcd.compact(revision).await.expect("compaction succeeds");
    let error = etcd.compact(revision - 1).await.expect_err("compacting below the compacted revision fails");
    assert!(format!("{error:#}").contains("compacted"), "{error:#}");
    assert_eq!(etcd.keys_with_prefix("/harness/").await.expect("keys"), vec!["/harness/counter".to_string()]);
}

fn panic_message(result: std::thread::Result<std::path::PathBuf>) -> String {
    let payload = result.expect_err("must panic");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|text| text.to_string()))
        .unwrap_or_default()
}

#[test]
fn a_missing_binary_panics_with_the_build_command() {
    let message = panic_message(std::panic::catch_unwind(|| rkube_tests::binary("rkube-no-such-binary")));
    assert!(message.contains("build it first: cargo build --bins (make build)"), "{message}");
}

#[test]
fn a_missing_venv_tool_panics_with_the_install_command() {
    let message = panic_message(std::panic::catch_unwind(|| rkube_tests::venv_bin("rkube-no-such-tool")));
    assert!(message.contains("not installed") && message.contains("make deps"), "{message}");
}

#[tokio::test]
async fn a_started_cluster_writes_a_kubeconfig_pointing_at_its_apiserver() {
    let cluster = rkube_tests::Cluster::start().await.expect("cluster starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = cluster.write_kubeconfig(dir.path()).expect("kubeconfig");
    let text = std::fs::read_to_string(&path).expect("read kubeconfig");
    assert!(text.contains(&format!("server: {}", cluster.url())), "{text}");
    assert!(text.contains("current-context: rkube"), "{text}");
    let reply = reqwest::get(format!("{}/readyz", cluster.url())).await.expect("apiserver answers");
    assert!(reply.status().is_success());
}
