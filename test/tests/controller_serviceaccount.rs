//! The ServiceAccount controller against the real apiserver and etcd: every active namespace
//! gets a `default` ServiceAccount and the ConfigMap `kube-root-ca.crt`, and gets them back
//! when they are deleted; new pods get their ServiceAccount's credentials mounted.

use std::time::Duration;

use rkube_tests::controllers::ControllerManager;
use rkube_tests::{Api, Cluster, StatusCode, eventually};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

async fn has_default(api: &Api, namespace: &str) -> Option<()> {
    let (status, _) = api.get(&format!("/api/v1/namespaces/{namespace}/serviceaccounts/default")).await;
    (status == StatusCode::OK).then_some(())
}

#[tokio::test]
async fn every_namespace_gets_a_default_service_account_back_when_it_is_deleted() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let _manager = ControllerManager::start(&cluster, &["--leader-elect=false"]).await.expect("controller-manager");
    let api = Api::new(cluster.url());
    // The built-in namespaces, and a new one.
    for namespace in ["default", "kube-system"] {
        eventually(WAIT, &format!("a default ServiceAccount in {namespace}"), || has_default(&api, namespace)).await;
    }
    api.create("/api/v1/namespaces", &json!({"metadata": {"name": "team"}})).await;
    eventually(WAIT, "a default ServiceAccount in team", || has_default(&api, "team")).await;
    let (status, _) = api.delete("/api/v1/namespaces/team/serviceaccounts/default").await;
    assert_eq!(status, StatusCode::OK);
    eventually(WAIT, "the default ServiceAccount back in team", || has_default(&api, "team")).await;
}

async fn root_ca(api: &Api, namespace: &str) -> Option<String> {
    let (status, cm) = api.get(&format!("/api/v1/namespaces/{namespace}/configmaps/kube-root-ca.crt")).await;
    (status == StatusCode::OK).then(|| cm["data"]["ca.crt"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn every_namespace_gets_the_cluster_ca_and_gets_it_back_when_changed_or_deleted() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let dir = tempfile::tempdir().expect("directory");
    let ca = rkube_pki::Ca::new("rkube-ca").expect("CA").cert_pem();
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &ca).expect("CA file");
    let ca_file = ca_file.display().to_string();
    let _manager = ControllerManager::start(&cluster, &["--leader-elect=false", "--root-ca-file", &ca_file])
        .await
        .expect("controller-manager");
    let api = Api::new(cluster.url());
    api.create("/api/v1/namespaces", &json!({"metadata": {"name": "team"}})).await;
    for namespace in ["default", "kube-system", "team"] {
        let published =
            eventually(WAIT, &format!("kube-root-ca.crt in {namespace}"), || root_ca(&api, namespace)).await;
        assert_eq!(published, ca, "{namespace}");
    }
    let path = "/api/v1/namespaces/team/configmaps/kube-root-ca.crt";
    let (status, _) = api.patch(path, "application/merge-patch+json", &json!({"data": {"ca.crt": "forged"}})).await;
    assert_eq!(status, StatusCode::OK);
    eventually(WAIT, "the CA put back", || async { (root_ca(&api, "team").await? == ca).then_some(()) }).await;
    let (status, _) = api.delete(path).await;
    assert_eq!(status, StatusCode::OK);
    eventually(WAIT, "the CA published again", || async { (root_ca(&api, "team").await? == ca).then_some(()) }).await;
}

#[tokio::test]
async fn pods_run_as_a_service_account_and_get_its_credentials_unless_they_opt_out() {
    let dir = tempfile::tempdir().expect("directory");
    let key = dir.path().join("sa.key");
    std::fs::write(&key, rkube_pki::signing_key_pem().expect("key")).expect("key file");
    let key = key.display().to_string();
    let cluster = Cluster::start_with_args(&["--service-account-signing-key-file", &key]).await.expect("cluster");
    let api = Api::new(cluster.url());
    let pod = |name: &str, extra: serde_json::Value| {
        let mut spec = json!({"containers": [{"name": "a", "image": "busybox"}], "initContainers": [{"name": "i", "image": "busybox"}]});
        spec.as_object_mut().expect("spec").extend(extra.as_object().cloned().unwrap_or_default());
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
    };
    let created = api.create("/api/v1/namespaces/default/pods", &pod("plain", json!({}))).await;
    assert_eq!(created["spec"]["serviceAccountName"], "default");
    let volume = created["spec"]["volumes"][0]["name"].as_str().expect("a volume").to_string();
    assert!(volume.starts_with("kube-api-access-"), "{volume}");
    for container in ["containers", "initContainers"] {
        let mount = &created["spec"][container][0]["volumeMounts"][0];
        assert_eq!(mount["mountPath"], "/var/run/secrets/kubernetes.io/serviceaccount", "{container}");
        assert_eq!(mount["name"], volume.as_str());
        assert_eq!(mount["readOnly"], true);
    }
    let opted_out = api
        .create("/api/v1/namespaces/default/pods", &pod("quiet", json!({"automountServiceAccountToken": false})))
        .await;
    assert!(opted_out["spec"]["volumes"].is_null(), "{opted_out}");
    // A ServiceAccount may opt out for its pods.
    api.create(
        "/api/v1/namespaces/default/serviceaccounts",
        &json!({"metadata": {"name": "batch"}, "automountServiceAccountToken": false}),
    )
    .await;
    let batch =
        api.create("/api/v1/namespaces/default/pods", &pod("job", json!({"serviceAccountName": "batch"}))).await;
    assert!(batch["spec"]["volumes"].is_null(), "{batch}");

    // Without a signing key no token could ever be issued: nothing is mounted.
    let keyless = Cluster::start().await.expect("cluster without a signing key");
    let api = Api::new(keyless.url());
    let created = api.create("/api/v1/namespaces/default/pods", &pod("plain", json!({}))).await;
    assert_eq!(created["spec"]["serviceAccountName"], "default");
    assert!(created["spec"]["volumes"].is_null(), "{created}");
}
