//! Encryption at rest against the real apiserver and etcd: a Secret's value in etcd is
//! sealed, the API hands it back in the clear, ConfigMaps stay plain.

use rkube_tests::{Api, Cluster};
use serde_json::json;

const CONFIG: &str = "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - aesgcm:
      keys:
      - name: key1
        secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
  - identity: {}
";

#[tokio::test]
async fn secrets_are_encrypted_in_etcd_and_plain_through_the_api() {
    let dir = tempfile::tempdir().expect("directory");
    let config = dir.path().join("encryption.yaml");
    std::fs::write(&config, CONFIG).expect("config");
    let config = config.display().to_string();
    let cluster = Cluster::start_with_args(&["--encryption-provider-config", &config]).await.expect("cluster");
    let api = Api::new(cluster.url());
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": "hunter2"}});
    api.create("/api/v1/namespaces/default/secrets", &secret).await;
    let config_map =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "visible"}});
    api.create("/api/v1/namespaces/default/configmaps", &config_map).await;

    let raw = cluster.etcd.get("/registry/secrets/default/db").await.expect("etcd read").expect("the key exists");
    assert!(raw.starts_with(b"k8s:enc:aesgcm:v1:key1:"), "{}", String::from_utf8_lossy(&raw));
    let base64_password = "aHVudGVyMg==";
    assert!(!String::from_utf8_lossy(&raw).contains(base64_password), "the value is in the clear in etcd");
    let plain = cluster.etcd.get("/registry/configmaps/default/c").await.expect("etcd read").expect("the key exists");
    assert!(String::from_utf8_lossy(&plain).contains("visible"));

    let read = api.get_ok("/api/v1/namespaces/default/secrets/db").await;
    assert_eq!(read["data"]["password"], base64_password, "{read}");
    let listed = api.get_ok("/api/v1/namespaces/default/secrets").await;
    assert_eq!(listed["items"][0]["data"]["password"], base64_password, "{listed}");
}
