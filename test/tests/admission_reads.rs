//! What the apiserver reads from etcd to write. Like Kubernetes' admission plugins, which read
//! informers, rkube's read the watch cache, so a pod create costs etcd its one transaction and
//! no more (it cost seven more requests once, and pod creates fell to a fifth); and yet a
//! LimitRange, ServiceAccount or PriorityClass created through the same apiserver just before
//! the pod is always applied to it. Like Kubernetes' storage, an update (a binding, a status
//! write, a PUT) starts from the watch cache's copy and reads etcd only when that copy proves
//! stale, which no client can tell. Needs `make deps` (etcd).

use rkube_tests::resources::{PODS, pod};
use rkube_tests::{Api, Cluster};
use serde_json::json;

async fn namespace(api: &Api, name: &str) {
    api.create("/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
        .await;
}

#[tokio::test]
async fn a_pod_create_costs_etcd_one_transaction_and_no_further_reads() {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    namespace(&api, "reads").await;
    // The first create in a namespace may read what the caches do not hold yet.
    api.create(&PODS.collection("reads"), &pod("reads", "warm", json!({}))).await;

    let ranges_before = cluster.etcd.metric("etcd_mvcc_range_total").await.expect("etcd metrics");
    let creates = 20;
    for i in 0..creates {
        api.create(&PODS.collection("reads"), &pod("reads", &format!("p{i}"), json!({}))).await;
    }
    let ranges = cluster.etcd.metric("etcd_mvcc_range_total").await.expect("etcd metrics") - ranges_before;
    // Each create's transaction reads its key once ("does not exist yet"); a few more may
    // come from the apiserver's own background work meanwhile. Reading LimitRanges,
    // ResourceQuotas, PriorityClasses and the ServiceAccount from etcd would add 7 per pod.
    assert!(ranges <= f64::from(creates) * 2.0, "{ranges} etcd ranges for {creates} pod creates");
}

#[tokio::test]
async fn objects_written_just_before_a_pod_through_the_same_apiserver_are_applied_to_it() {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    for round in 0..10 {
        let ns = format!("fresh-{round}");
        namespace(&api, &ns).await;
        let limits = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults", "namespace": ns},
            "spec": {"limits": [{"type": "Container", "defaultRequest": {"cpu": "150m"}}]}});
        api.create(&format!("/api/v1/namespaces/{ns}/limitranges"), &limits).await;
        let account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "quiet", "namespace": ns},
            "automountServiceAccountToken": false});
        api.create(&format!("/api/v1/namespaces/{ns}/serviceaccounts"), &account).await;
        let class = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": format!("class-{round}")}, "value": 1000 + round});
        api.create("/apis/scheduling.k8s.io/v1/priorityclasses", &class).await;

        let mut body = pod(&ns, "p", json!({}));
        body["spec"]["serviceAccountName"] = json!("quiet");
        body["spec"]["priorityClassName"] = json!(format!("class-{round}"));
        let created = api.create(&PODS.collection(&ns), &body).await;
        let spec = &created["spec"];
        assert_eq!(spec["containers"][0]["resources"]["requests"]["cpu"], "150m", "round {round}: {spec}");
        assert_eq!(spec["priority"], 1000 + round, "round {round}: {spec}");
        let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
        assert!(
            !volumes.iter().any(|v| v["name"].as_str().is_some_and(|n| n.starts_with("kube-api-access-"))),
            "round {round}: the ServiceAccount says no token: {spec}"
        );
    }
}

/// Waits until the watch cache shows the pods of `namespace` as of `revision` (a list at a
/// resourceVersion waits for the cache to reach it).
async fn cache_reaches(api: &Api, namespace: &str, revision: &str) {
    api.get_ok(&format!("{}?resourceVersion={revision}&resourceVersionMatch=NotOlderThan", PODS.collection(namespace)))
        .await;
}

#[tokio::test]
async fn a_binding_or_a_status_write_costs_etcd_one_transaction_when_the_cache_is_current() {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    namespace(&api, "updates").await;
    let count = 20;
    let mut last = String::new();
    for i in 0..count {
        let created = api.create(&PODS.collection("updates"), &pod("updates", &format!("p{i}"), json!({}))).await;
        last = created["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
    }
    cache_reaches(&api, "updates", &last).await;

    let ranges_before = cluster.etcd.metric("etcd_mvcc_range_total").await.expect("etcd metrics");
    for i in 0..count {
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": format!("p{i}")},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"}});
        let (code, body) = api.post(&format!("{}/p{i}/binding", PODS.collection("updates")), &binding).await;
        assert_eq!(code.as_u16(), 201, "{body}");
    }
    let bound = api.get_ok(&PODS.collection("updates")).await;
    cache_reaches(&api, "updates", bound["metadata"]["resourceVersion"].as_str().unwrap_or_default()).await;
    for i in 0..count {
        let path = format!("{}/p{i}/status", PODS.collection("updates"));
        let (code, body) =
            api.patch(&path, "application/merge-patch+json", &json!({"status": {"phase": "Running"}})).await;
        assert!(code.is_success(), "{code} {body}");
    }
    let ranges = cluster.etcd.metric("etcd_mvcc_range_total").await.expect("etcd metrics") - ranges_before;
    let writes = f64::from(count * 2);
    // etcd 3.4 counts two ranges for a write's guarded transaction (81 for these 40 writes);
    // reading the object from etcd first adds a third (121).
    assert!(ranges <= writes * 2.5, "{ranges} etcd ranges for {writes} bindings and status writes");
}

#[tokio::test]
async fn writes_right_after_a_write_see_it_however_far_the_cache_lags() {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    namespace(&api, "chain").await;
    let path = format!("{}/p", PODS.collection("chain"));
    let mut current = api.create(&PODS.collection("chain"), &pod("chain", "p", json!({}))).await;
    // Each write follows the last one's answer at once, when the watch cache has often not
    // seen it yet: its older copy must make neither a 409 for the resourceVersion the PUT
    // carries nor a failed `test` in the JSON patch.
    for round in 0..100 {
        current["metadata"]["labels"] = json!({"round": round.to_string()});
        let (code, body) = api.put(&path, &current).await;
        assert_eq!(code.as_u16(), 200, "round {round}: {body}");
        let patch = json!([
            {"op": "test", "path": "/metadata/labels/round", "value": round.to_string()},
            {"op": "add", "path": "/metadata/labels/patched", "value": round.to_string()}]);
        let (code, body) = api.patch(&path, "application/json-patch+json", &patch).await;
        assert_eq!(code.as_u16(), 200, "round {round}: {body}");
        current = body;
    }
    // A resourceVersion the object has left behind is still refused.
    let mut stale = current.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let (code, body) = api.put(&path, &stale).await;
    assert_eq!(code.as_u16(), 409, "{body}");
}
