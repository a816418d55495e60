//! The EndpointSlice controller over real etcd, rkube-apiserver and rkube-controller-manager:
//! pods selected by a Service become its EndpointSlices and Endpoints, with their conditions
//! and per-pod ports, and follow readiness changes, scaling and deletion. Pod statuses are
//! written by the test, as a kubelet would.

use std::time::Duration;

use rkube_tests::controllers::ControllerManager;
use rkube_tests::{Api, Cluster, eventually, venv_bin};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";

async fn create_pod(api: &Api, name: &str, port: i64, ip: &str, ready: bool) {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "web", "ports": [{"name": "http", "containerPort": port}]}]}});
    api.create("/api/v1/namespaces/default/pods", &pod).await;
    set_status(api, name, ip, ready).await;
}

async fn set_status(api: &Api, name: &str, ip: &str, ready: bool) {
    let condition = if ready { "True" } else { "False" };
    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": condition}]}});
    let (code, body) = api
        .patch(&format!("/api/v1/namespaces/default/pods/{name}/status"), "application/merge-patch+json", &status)
        .await;
    assert!(code.is_success(), "{body}");
}

/// An endpoint as (ip, ready, serving, terminating).
type Conditions = (String, bool, bool, bool);

/// The Service's slices as (ports, endpoints), sorted.
async fn slices(api: &Api, service: &str) -> Vec<(Vec<i64>, Vec<Conditions>)> {
    let list = api.get_ok(&format!("{SLICES}?labelSelector=kubernetes.io%2Fservice-name%3D{service}")).await;
    let mut slices: Vec<(Vec<i64>, Vec<Conditions>)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|slice| {
            let ports = slice["ports"].as_array().into_iter().flatten().filter_map(|p| p["port"].as_i64()).collect();
            let mut endpoints: Vec<Conditions> = slice["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    let c = &e["conditions"];
                    let flag = |v: &Value| v.as_bool().unwrap_or(false);
                    (
                        e["addresses"][0].as_str().unwrap_or_default().to_string(),
                        flag(&c["ready"]),
                        flag(&c["serving"]),
                        flag(&c["terminating"]),
                    )
                })
                .collect();
            endpoints.sort();
            (ports, endpoints)
        })
        .collect();
    slices.sort();
    slices
}

#[tokio::test]
async fn services_get_endpoint_slices_and_endpoints_of_the_pods_they_select() {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    let _controllers = ControllerManager::start(&cluster, &["--controllers", "endpointslice,garbagecollector"])
        .await
        .expect("controller-manager");
    create_pod(&api, "web-1", 8080, "10.244.1.1", true).await;
    create_pod(&api, "web-2", 8080, "10.244.1.2", false).await;
    create_pod(&api, "web-3", 9090, "10.244.1.3", true).await;
    let other = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "other", "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "c", "image": "db"}]}});
    api.create("/api/v1/namespaces/default/pods", &other).await;
    set_status(&api, "other", "10.244.1.9", true).await;
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}});
    let service = api.create("/api/v1/namespaces/default/services", &service).await;

    // One slice per port mapping: the named targetPort resolved per pod.
    let expected = vec![
        (
            vec![8080],
            vec![("10.244.1.1".to_string(), true, true, false), ("10.244.1.2".to_string(), false, false, false)],
        ),
        (vec![9090], vec![("10.244.1.3".to_string(), true, true, false)]),
    ];
    eventually(WAIT, "the Service's slices", || async { (slices(&api, "web").await == expected).then_some(()) }).await;
    let list = api.get_ok(SLICES).await;
    let slice = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|slice| slice["ports"][0]["port"] == 8080)
        .expect("the 8080 slice");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["uid"], service["metadata"]["uid"], "{slice}");
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert!(slice["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("web-")), "{slice}");
    assert_eq!(slice["endpoints"][0]["targetRef"]["name"], "web-1", "{slice}");
    assert_eq!(slice["endpoints"][0]["nodeName"], "n1", "{slice}");

    // The v1 Endpoints mirror: ready pods as addresses, the others as notReadyAddresses.
    let endpoints = eventually(WAIT, "the Endpoints", || async {
        let (code, endpoints) = api.get("/api/v1/namespaces/default/endpoints/web").await;
        (code.as_u16() == 200).then_some(endpoints)
    })
    .await;
    assert_eq!(endpoints["subsets"][0]["addresses"][0]["ip"], "10.244.1.1", "{endpoints}");
    assert_eq!(endpoints["subsets"][0]["notReadyAddresses"][0]["ip"], "10.244.1.2", "{endpoints}");
    assert_eq!(endpoints["subsets"][0]["ports"][0], json!({"name": "web", "port": 8080, "protocol": "TCP"}));

    // Readiness changes show; a pod being deleted is terminating, still serving.
    set_status(&api, "web-2", "10.244.1.2", true).await;
    set_status(&api, "web-1", "10.244.1.1", false).await;
    let expected = vec![
        (
            vec![8080],
            vec![("10.244.1.1".to_string(), false, false, false), ("10.244.1.2".to_string(), true, true, false)],
        ),
        (vec![9090], vec![("10.244.1.3".to_string(), true, true, false)]),
    ];
    eventually(WAIT, "readiness in the slices", || async { (slices(&api, "web").await == expected).then_some(()) })
        .await;

    // kubectl shows them with Kubernetes' columns.
    let home = tempfile::tempdir().expect("home");
    let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig");
    let out = std::process::Command::new(venv_bin("kubectl"))
        .args(["get", "endpointslices", "-l", "kubernetes.io/service-name=web", "--sort-by=.ports[0].port"])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", home.path())
        .output()
        .expect("kubectl runs (make deps installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text.lines().map(|line| line.split_whitespace().collect()).collect();
    assert_eq!(rows[0][..4], ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS"], "{text}");
    assert_eq!(rows[1][1..4], ["IPv4", "8080", "10.244.1.1,10.244.1.2"], "{text}");

    // More than 100 endpoints are cut into slices of 100.
    for i in 0..110 {
        create_pod(&api, &format!("many-{i}"), 8080, &format!("10.244.2.{}", i + 1), true).await;
    }
    eventually(WAIT, "slices of at most 100", || async {
        let sizes: Vec<usize> = slices(&api, "web").await.iter().map(|(_, e)| e.len()).collect();
        (sizes.iter().sum::<usize>() == 113 && sizes.iter().all(|n| *n <= 100)).then_some(())
    })
    .await;

    // A Service without a selector: the Endpoints written by hand are mirrored into a slice.
    let external = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
        "spec": {"ports": [{"name": "pg", "port": 5432}]}});
    api.create("/api/v1/namespaces/default/services", &external).await;
    let endpoints = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "db"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "notReadyAddresses": [{"ip": "192.0.2.11"}],
                     "ports": [{"name": "pg", "port": 5432}]}]});
    api.create("/api/v1/namespaces/default/endpoints", &endpoints).await;
    let mirrored = vec![(
        vec![5432],
        vec![("192.0.2.10".to_string(), true, true, false), ("192.0.2.11".to_string(), false, false, false)],
    )];
    eventually(WAIT, "the mirrored slice", || async { (slices(&api, "db").await == mirrored).then_some(()) }).await;
    let list = api.get_ok(&format!("{SLICES}?labelSelector=kubernetes.io%2Fservice-name%3Ddb")).await;
    assert_eq!(
        list["items"][0]["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslicemirroring-controller.k8s.io"
    );

    // The Service goes: its slices and Endpoints go with it.
    let (code, _) = api.delete("/api/v1/namespaces/default/services/web").await;
    assert_eq!(code.as_u16(), 200);
    eventually(WAIT, "the slices and Endpoints to go", || async {
        let gone = slices(&api, "web").await.is_empty()
            && api.get("/api/v1/namespaces/default/endpoints/web").await.0.as_u16() == 404;
        gone.then_some(())
    })
    .await;
}
