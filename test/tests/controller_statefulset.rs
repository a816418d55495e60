//! The StatefulSet controller, end to end: real etcd, apiserver and `rkube-controller-manager`
//! (`--controllers=statefulset,garbagecollector`), the real kubectl, and pods marked Ready by
//! the test (or by a stand-in kubelet), as a kubelet would report them.

use std::time::Duration;

use rkube_tests::controllers::{ControllerManager, Kubelet, live_pods, mark_ready};
use rkube_tests::kubectl::real_kubectl as kubectl;
use rkube_tests::{Api, Cluster, eventually, stays_true};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);
const NS: &str = "default";

async fn start() -> (Cluster, ControllerManager, Api) {
    let cluster = Cluster::start().await.expect("cluster starts");
    let manager =
        ControllerManager::start(&cluster, &["--leader-elect=false", "--controllers=statefulset,garbagecollector"])
            .await
            .expect("controller-manager starts");
    let api = Api::new(cluster.url());
    (cluster, manager, api)
}

fn stateful_set(name: &str, replicas: i64, image: &str, extra: Value) -> Value {
    let mut sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "namespace": NS},
        "spec": {"serviceName": name, "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"terminationGracePeriodSeconds": 0,
                "containers": [{"name": "db", "image": image}]}}}});
    if let (Some(spec), Some(extra)) = (sts["spec"].as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    sts
}

fn names(pods: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = pods.iter().filter_map(|p| p["metadata"]["name"].as_str().map(String::from)).collect();
    names.sort();
    names
}

async fn pods_named(api: &Api, app: &str, want: &[&str]) -> Vec<Value> {
    eventually(LONG, &format!("pods {want:?}"), || async {
        let pods = live_pods(api, NS, &format!("app={app}")).await;
        (names(&pods) == want).then_some(pods)
    })
    .await
}

#[tokio::test]
async fn pods_start_in_order_each_once_the_previous_is_ready_and_keep_their_names() {
    let (_cluster, _manager, api) = start().await;
    api.create(&format!("/apis/apps/v1/namespaces/{NS}/statefulsets"), &stateful_set("db", 3, "db:1", json!({}))).await;
    let first = pods_named(&api, "db", &["db-0"]).await;
    let pod = &first[0];
    assert_eq!(pod["spec"]["hostname"], "db-0");
    assert_eq!(pod["spec"]["subdomain"], "db");
    assert_eq!(pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"], "db-0");
    assert_eq!(pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"], "0");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
    stays_true(Duration::from_secs(2), "only db-0 while it is not Ready", || async {
        live_pods(&api, NS, "app=db").await.len() == 1
    })
    .await;
    assert!(mark_ready(&api, NS, "db-0").await);
    pods_named(&api, "db", &["db-0", "db-1"]).await;
    assert!(mark_ready(&api, NS, "db-1").await);
    pods_named(&api, "db", &["db-0", "db-1", "db-2"]).await;
    assert!(mark_ready(&api, NS, "db-2").await);

    // A deleted pod comes back under its name.
    let old = api.get_ok(&format!("/api/v1/namespaces/{NS}/pods/db-1")).await;
    let (code, body) = api.delete(&format!("/api/v1/namespaces/{NS}/pods/db-1")).await;
    assert!(code.is_success(), "{body}");
    let back = eventually(LONG, "db-1 made again", || async {
        let pod = api.get(&format!("/api/v1/namespaces/{NS}/pods/db-1")).await.1;
        (pod["metadata"]["uid"].is_string() && pod["metadata"]["uid"] != old["metadata"]["uid"]).then_some(pod)
    })
    .await;
    assert_eq!(back["spec"]["hostname"], "db-1");
    assert!(mark_ready(&api, NS, "db-1").await);

    // Scaling down removes the highest ordinal first: the watch sees db-2 go before db-1.
    let list = api.get_ok(&format!("/api/v1/namespaces/{NS}/pods?labelSelector=app%3Ddb")).await;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
    let mut watch = api
        .watch(&format!("/api/v1/namespaces/{NS}/pods?watch=true&labelSelector=app%3Ddb&resourceVersion={rv}"))
        .await;
    let (code, body) = api
        .patch(
            &format!("/apis/apps/v1/namespaces/{NS}/statefulsets/db/scale"),
            "application/merge-patch+json",
            &json!({"spec": {"replicas": 1}}),
        )
        .await;
    assert!(code.is_success(), "{body}");
    let mut deleted = Vec::new();
    while deleted.len() < 2 {
        let event = watch.expect_non_bookmark(LONG).await;
        if event["type"] == "DELETED" {
            deleted.push(event["object"]["metadata"]["name"].as_str().unwrap_or_default().to_string());
        }
    }
    assert_eq!(deleted, ["db-2", "db-1"], "highest ordinal first");
    pods_named(&api, "db", &["db-0"]).await;
    let sts = eventually(LONG, "status of 1 replica", || async {
        let sts = api.get_ok(&format!("/apis/apps/v1/namespaces/{NS}/statefulsets/db")).await;
        (sts["status"]["replicas"] == 1 && sts["status"]["readyReplicas"] == 1).then_some(sts)
    })
    .await;
    assert_eq!(sts["status"]["currentRevision"], sts["status"]["updateRevision"], "{sts}");

    // Deleting the set takes its pods and its ControllerRevisions (the garbage collector).
    let revisions = format!("/apis/apps/v1/namespaces/{NS}/controllerrevisions");
    assert!(!api.get_ok(&revisions).await["items"].as_array().is_none_or(Vec::is_empty), "the set has revisions");
    let (code, body) = api.delete(&format!("/apis/apps/v1/namespaces/{NS}/statefulsets/db")).await;
    assert!(code.is_success(), "{body}");
    pods_named(&api, "db", &[]).await;
    eventually(LONG, "the set's revisions gone", || async {
        api.get_ok(&revisions).await["items"].as_array().is_some_and(Vec::is_empty).then_some(())
    })
    .await;
}

#[tokio::test]
async fn parallel_pods_start_together_and_each_gets_the_claims_of_its_templates() {
    let (_cluster, _manager, api) = start().await;
    let body = stateful_set("fast", 3, "db:1", json!({"podManagementPolicy": "Parallel"}));
    api.create(&format!("/apis/apps/v1/namespaces/{NS}/statefulsets"), &body).await;
    pods_named(&api, "fast", &["fast-0", "fast-1", "fast-2"]).await;

    let claims = json!({"podManagementPolicy": "Parallel", "volumeClaimTemplates": [{"metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]});
    api.create(&format!("/apis/apps/v1/namespaces/{NS}/statefulsets"), &stateful_set("stored", 2, "db:1", claims))
        .await;
    let pods = pods_named(&api, "stored", &["stored-0", "stored-1"]).await;
    for pod in &pods {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let claim_name = format!("data-{name}");
        assert_eq!(
            pod["spec"]["volumes"][0],
            json!({"name": "data", "persistentVolumeClaim": {"claimName": claim_name}})
        );
        let claim = api.get_ok(&format!("/api/v1/namespaces/{NS}/persistentvolumeclaims/{claim_name}")).await;
        assert_eq!(claim["metadata"]["labels"]["app"], "stored", "{claim}");
        assert!(claim["metadata"]["ownerReferences"].is_null(), "Retain by default: the claim outlives the set");
    }
    // The claims outlive the set (whenDeleted defaults to Retain).
    assert!(api.delete(&format!("/apis/apps/v1/namespaces/{NS}/statefulsets/stored")).await.0.is_success());
    eventually(LONG, "stored's pods gone", || async {
        live_pods(&api, NS, "app=stored").await.is_empty().then_some(())
    })
    .await;
    assert_eq!(api.get(&format!("/api/v1/namespaces/{NS}/persistentvolumeclaims/data-stored-1")).await.0.as_u16(), 200);
}

fn image_of(pod: &Value) -> &str {
    pod["spec"]["containers"][0]["image"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_rolling_update_goes_from_the_highest_ordinal_down_and_stops_at_the_partition() {
    let (cluster, manager, api) = start().await;
    let home = tempfile::tempdir().expect("a temporary HOME");
    let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig");
    let _kubelet = Kubelet::start(cluster.url(), NS, "broken");
    api.create(&format!("/apis/apps/v1/namespaces/{NS}/statefulsets"), &stateful_set("web", 3, "web:1", json!({})))
        .await;
    let out = kubectl(&kubeconfig, home.path(), &["rollout", "status", "statefulset/web", "--timeout=60s"]).await;
    assert!(
        out.contains("roll out complete")
            || out.contains("rolling update complete")
            || out.contains("partitioned roll out complete"),
        "{out}\n{}",
        manager.log_tail(20)
    );

    // Partition 2: only web-2 moves to web:2.
    let patch = json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
        "template": {"spec": {"containers": [{"name": "db", "image": "web:2"}]}}}});
    let (code, body) = api
        .patch(
            &format!("/apis/apps/v1/namespaces/{NS}/statefulsets/web"),
            "application/strategic-merge-patch+json",
            &patch,
        )
        .await;
    assert!(code.is_success(), "{body}");
    eventually(LONG, "web-2 on web:2, the others on web:1", || async {
        let pods = live_pods(&api, NS, "app=web").await;
        let images: Vec<(String, String)> = pods
            .iter()
            .map(|p| (p["metadata"]["name"].as_str().unwrap_or_default().to_string(), image_of(p).to_string()))
            .collect();
        let want = [("web-0", "web:1"), ("web-1", "web:1"), ("web-2", "web:2")];
        (images.len() == 3 && want.iter().all(|(n, i)| images.iter().any(|(a, b)| a == n && b == i))).then_some(())
    })
    .await;
    let out = kubectl(&kubeconfig, home.path(), &["rollout", "status", "statefulset/web", "--timeout=60s"]).await;
    assert!(out.contains("partitioned roll out complete"), "{out}");
    stays_true(Duration::from_secs(2), "web-0 and web-1 stay on web:1 behind the partition", || async {
        live_pods(&api, NS, "app=web").await.iter().filter(|p| image_of(p) == "web:1").count() == 2
    })
    .await;

    // Partition 0: the rest follow, highest first; the current revision becomes the update one.
    let patch = json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}});
    let (code, body) = api
        .patch(&format!("/apis/apps/v1/namespaces/{NS}/statefulsets/web"), "application/merge-patch+json", &patch)
        .await;
    assert!(code.is_success(), "{body}");
    let out = kubectl(&kubeconfig, home.path(), &["rollout", "status", "statefulset/web", "--timeout=60s"]).await;
    assert!(out.contains("complete"), "{out}");
    eventually(LONG, "every pod on web:2", || async {
        let pods = live_pods(&api, NS, "app=web").await;
        (pods.len() == 3 && pods.iter().all(|p| image_of(p) == "web:2")).then_some(())
    })
    .await;
    let history = kubectl(&kubeconfig, home.path(), &["rollout", "history", "statefulset/web"]).await;
    assert!(history.contains('1') && history.contains('2'), "{history}");
    let out = kubectl(&kubeconfig, home.path(), &["get", "statefulsets"]).await;
    let header: Vec<&str> = out.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "AGE"], "{out}");
    assert!(out.contains("3/3"), "{out}");
}
