//! PersistentVolumes, PersistentVolumeClaims and StorageClasses end to end: real etcd, the
//! apiserver, `rkube-controller-manager` (volume binder, StatefulSet controller, garbage
//! collector), the scheduler and two fake-runtime kubelets, driven as a user would with the
//! real kubectl.
//!
//! What a user relies on: a static volume is bound to a claim that fits and released when the
//! claim goes; a claim of the default class gets a local-path volume on the node its pod was
//! scheduled to, and a pod made again comes back to that node; a StatefulSet's pods keep
//! their claims across re-creation and scale-down, and `whenDeleted: Delete` takes the
//! claims (and their volumes) with the set.

use std::time::Duration;

use rkube_tests::controllers::ControllerManager;
use rkube_tests::kubectl::real_kubectl as kubectl;
use rkube_tests::node::Kubelet;
use rkube_tests::scheduler::Scheduler;
use rkube_tests::{Api, Cluster, StatusCode, eventually};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const CLAIMS: &str = "/api/v1/namespaces/default/persistentvolumeclaims";
const VOLUMES: &str = "/api/v1/persistentvolumes";

struct Lab {
    cluster: Cluster,
    api: Api,
    _manager: ControllerManager,
    _scheduler: Scheduler,
    _kubelets: Vec<Kubelet>,
}

async fn start() -> Lab {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    let manager = ControllerManager::start(
        &cluster,
        &["--leader-elect=false", "--controllers=persistentvolume-binder,statefulset,garbagecollector"],
    )
    .await
    .expect("controller-manager");
    let scheduler = Scheduler::start(&cluster, &[]).await.expect("scheduler");
    let a = Kubelet::start_fake(&cluster, "node-a", &["--pod-cidr", "10.244.1.0/24"]).await.expect("kubelet a");
    let b = Kubelet::start_fake(&cluster, "node-b", &["--pod-cidr", "10.244.2.0/24"]).await.expect("kubelet b");
    Lab { cluster, api, _manager: manager, _scheduler: scheduler, _kubelets: vec![a, b] }
}

async fn phase_of(api: &Api, path: &str, phase: &str) -> Value {
    eventually(WAIT, &format!("{path} {phase}"), || async {
        let (status, object) = api.get(path).await;
        (status == StatusCode::OK && object["status"]["phase"] == phase).then_some(object)
    })
    .await
}

async fn running_on(api: &Api, pod: &str, old_uid: Option<&Value>) -> (Value, String) {
    eventually(WAIT, &format!("pod {pod} running"), || async {
        let (_, pod) = api.get(&format!("/api/v1/namespaces/default/pods/{pod}")).await;
        let fresh = old_uid.is_none_or(|old| &pod["metadata"]["uid"] != old);
        let node = pod["spec"]["nodeName"].as_str().map(String::from);
        (fresh && pod["status"]["phase"] == "Running").then(|| (pod.clone(), node.unwrap_or_default()))
    })
    .await
}

#[tokio::test]
async fn a_static_volume_is_bound_to_a_claim_that_fits_and_released_when_it_goes() {
    let lab = start().await;
    let api = &lab.api;
    let home = tempfile::tempdir().expect("HOME");
    let kubeconfig = lab.cluster.write_kubeconfig(home.path()).expect("kubeconfig");
    let classes = kubectl(&kubeconfig, home.path(), &["get", "storageclass"]).await;
    assert!(classes.contains("local-path (default)") && classes.contains("WaitForFirstConsumer"), "{classes}");

    for (name, size) in [("small", "500Mi"), ("big", "5Gi"), ("right", "2Gi")] {
        api.create(
            VOLUMES,
            &json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                     "hostPath": {"path": format!("/srv/{name}")}}}),
        )
        .await;
    }
    phase_of(api, &format!("{VOLUMES}/right"), "Available").await;
    api.create(CLAIMS, &json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"storageClassName": "manual", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
        .await;
    // The smallest volume that is large enough.
    let claim = phase_of(api, &format!("{CLAIMS}/data"), "Bound").await;
    assert_eq!(
        (&claim["spec"]["volumeName"], &claim["status"]["capacity"]["storage"]),
        (&json!("right"), &json!("2Gi"))
    );
    let volume = phase_of(api, &format!("{VOLUMES}/right"), "Bound").await;
    assert_eq!(volume["spec"]["claimRef"]["uid"], claim["metadata"]["uid"]);
    let listed = kubectl(&kubeconfig, home.path(), &["get", "pvc", "data"]).await;
    assert!(listed.contains("Bound") && listed.contains("right") && listed.contains("RWO"), "{listed}");

    // A claim no volume fits waits, saying why.
    api.create(CLAIMS, &json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "huge"},
        "spec": {"storageClassName": "", "accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Ti"}}}}))
        .await;
    eventually(WAIT, "a FailedBinding event", || async {
        let described = kubectl(&kubeconfig, home.path(), &["describe", "pvc", "huge"]).await;
        described.contains("FailedBinding").then_some(())
    })
    .await;
    assert_eq!(api.get_ok(&format!("{CLAIMS}/huge")).await["status"]["phase"], "Pending");

    // Retain (the default for a volume made by hand): the volume outlives its claim.
    assert!(api.delete(&format!("{CLAIMS}/data")).await.0.is_success());
    phase_of(api, &format!("{VOLUMES}/right"), "Released").await;
}

#[tokio::test]
async fn a_local_path_claim_is_made_on_its_pods_node_and_keeps_the_pod_there() {
    let lab = start().await;
    let api = &lab.api;
    // No class named: the default (local-path, WaitForFirstConsumer) is filled in.
    let claim = api
        .create(
            CLAIMS,
            &json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "cache"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
        )
        .await;
    assert_eq!(claim["spec"]["storageClassName"], "local-path");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(api.get_ok(&format!("{CLAIMS}/cache")).await["status"]["phase"], "Pending", "waits for its first pod");

    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user"},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "c", "image": "busybox"}],
                 "volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": "cache"}}]}});
    api.create("/api/v1/namespaces/default/pods", &pod).await;
    let (first, node) = running_on(api, "user", None).await;
    let claim = phase_of(api, &format!("{CLAIMS}/cache"), "Bound").await;
    assert_eq!(claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"], node.as_str());
    let volume_name = claim["spec"]["volumeName"].as_str().expect("bound").to_string();
    assert_eq!(volume_name, format!("pvc-{}", claim["metadata"]["uid"].as_str().unwrap_or_default()));
    let volume = api.get_ok(&format!("{VOLUMES}/{volume_name}")).await;
    assert_eq!(
        volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
        json!([node])
    );
    assert_eq!(volume["spec"]["persistentVolumeReclaimPolicy"], "Delete");

    // Made again (three times, so chance would show), the pod lands where its data is.
    let mut uid = first["metadata"]["uid"].clone();
    for _ in 0..3 {
        assert!(api.delete("/api/v1/namespaces/default/pods/user").await.0.is_success());
        eventually(WAIT, "the old pod gone", || async {
            (api.get("/api/v1/namespaces/default/pods/user").await.0 == StatusCode::NOT_FOUND).then_some(())
        })
        .await;
        api.create("/api/v1/namespaces/default/pods", &pod).await;
        let (again, again_node) = running_on(api, "user", Some(&uid)).await;
        assert_eq!(again_node, node, "the pod follows its local volume");
        uid = again["metadata"]["uid"].clone();
    }

    // A pod whose claim does not exist is not scheduled, and says why.
    let orphan = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lost"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}],
                 "volumes": [{"name": "x", "persistentVolumeClaim": {"claimName": "missing"}}]}});
    api.create("/api/v1/namespaces/default/pods", &orphan).await;
    eventually(WAIT, "lost is unschedulable", || async {
        let pod = api.get_ok("/api/v1/namespaces/default/pods/lost").await;
        let message = pod["status"]["conditions"][0]["message"].as_str().unwrap_or_default().to_string();
        message.contains("persistentvolumeclaim \"missing\" not found").then_some(())
    })
    .await;

    // Reclaim policy Delete: the claim's deletion takes its volume.
    assert!(api.delete("/api/v1/namespaces/default/pods/user").await.0.is_success());
    assert!(api.delete(&format!("{CLAIMS}/cache")).await.0.is_success());
    eventually(WAIT, "the volume deleted", || async {
        (api.get(&format!("{VOLUMES}/{volume_name}")).await.0 == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_stateful_sets_pods_keep_their_claims_and_the_set_takes_them_when_it_goes() {
    let lab = start().await;
    let api = &lab.api;
    let set = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"serviceName": "db", "replicas": 2, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "db"}},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"terminationGracePeriodSeconds": 0,
                "containers": [{"name": "db", "image": "busybox", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}});
    api.create("/apis/apps/v1/namespaces/default/statefulsets", &set).await;
    let mut placed = Vec::new();
    for ordinal in 0..2 {
        let (pod, node) = running_on(api, &format!("db-{ordinal}"), None).await;
        assert_eq!(pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"], format!("data-db-{ordinal}"));
        let claim = phase_of(api, &format!("{CLAIMS}/data-db-{ordinal}"), "Bound").await;
        assert_eq!(claim["metadata"]["labels"]["app"], "db");
        assert_eq!(claim["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
        placed.push((pod["metadata"]["uid"].clone(), node, claim["spec"]["volumeName"].clone()));
    }

    // A pod made again gets the same claim, on the same node.
    let (old_uid, node, volume) = placed[1].clone();
    assert!(api.delete("/api/v1/namespaces/default/pods/db-1").await.0.is_success());
    let (_, again_node) = running_on(api, "db-1", Some(&old_uid)).await;
    assert_eq!(again_node, node);
    assert_eq!(api.get_ok(&format!("{CLAIMS}/data-db-1")).await["spec"]["volumeName"], volume);

    // whenScaled: Retain keeps the claim of a removed ordinal.
    let (status, body) = api
        .patch(
            "/apis/apps/v1/namespaces/default/statefulsets/db",
            "application/merge-patch+json",
            &json!({"spec": {"replicas": 1}}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    eventually(WAIT, "db-1 gone", || async {
        (api.get("/api/v1/namespaces/default/pods/db-1").await.0 == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    assert_eq!(api.get(&format!("{CLAIMS}/data-db-1")).await.0, StatusCode::OK);

    // whenDeleted: Delete: the set's claims, and so their volumes, go with it.
    assert!(api.delete("/apis/apps/v1/namespaces/default/statefulsets/db").await.0.is_success());
    eventually(WAIT, "claims and volumes gone", || async {
        let claims = api.get_ok(CLAIMS).await["items"].as_array().map_or(0, Vec::len);
        let volumes = api.get_ok(VOLUMES).await["items"].as_array().map_or(0, Vec::len);
        (claims == 0 && volumes == 0).then_some(())
    })
    .await;
}
