//! What admission reads when a pod is created: like Kubernetes' plugins, which read informers,
//! rkube's read the watch cache, so a pod create costs etcd its one transaction and no more
//! (it cost seven more requests once, and pod creates fell to a fifth); and yet a LimitRange,
//! ServiceAccount or PriorityClass created through the same apiserver just before the pod is
//! always applied to it. Needs `make deps` (etcd).

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
