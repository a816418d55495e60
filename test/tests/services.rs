//! Service IPs and node ports over real etcd and rkube-apiserver: allocation from the ranges,
//! conflicts, concurrent creates, release on delete and on type changes, repair after a lost
//! allocation, the `kubernetes` Service, and what kubectl shows.

use std::collections::HashSet;
use std::time::Duration;

use rkube_storage::{EtcdConfig, EtcdStore, Store};
use rkube_tests::{Api, Cluster, venv_bin};
use serde_json::{Value, json};

const SERVICES: &str = "/api/v1/namespaces/default/services";

fn service(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    if spec.get("ports").is_none() {
        spec["ports"] = json!([{"port": 80, "targetPort": 8080}]);
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

fn in_range(ip: &str) -> bool {
    // 10.96.0.0/12, without the kubernetes Service's 10.96.0.1 and the broadcast address.
    let Ok(ip) = ip.parse::<std::net::Ipv4Addr>() else { return false };
    let n = u32::from(ip);
    n > u32::from(std::net::Ipv4Addr::new(10, 96, 0, 1)) && n < u32::from(std::net::Ipv4Addr::new(10, 111, 255, 255))
}

#[tokio::test]
async fn services_get_cluster_ips_and_node_ports_from_their_ranges() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());

    // The kubernetes Service: the first IP, 443 → the apiserver's port, its address in Endpoints.
    let kubernetes = api.get_ok(&format!("{SERVICES}/kubernetes")).await;
    assert_eq!(kubernetes["spec"]["clusterIP"], "10.96.0.1", "{kubernetes}");
    let port: u16 = cluster.url().rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    assert_eq!(kubernetes["spec"]["ports"][0]["targetPort"], port, "{kubernetes}");
    let endpoints = api.get_ok("/api/v1/namespaces/default/endpoints/kubernetes").await;
    assert_eq!(endpoints["subsets"][0]["addresses"][0]["ip"], "127.0.0.1", "{endpoints}");
    assert_eq!(endpoints["subsets"][0]["ports"][0]["port"], port, "{endpoints}");
    let slice = api.get_ok("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes").await;
    assert_eq!(
        (&slice["endpoints"][0]["addresses"][0], &slice["ports"][0]["port"]),
        (&json!("127.0.0.1"), &json!(port)),
        "{slice}"
    );

    // A ClusterIP Service gets a free IP of the range; the fields Kubernetes fills in with it.
    let web = api.create(SERVICES, &service("web", json!({}))).await;
    let ip = web["spec"]["clusterIP"].as_str().expect("an IP").to_string();
    assert!(in_range(&ip), "{web}");
    assert_eq!((&web["spec"]["clusterIPs"], &web["spec"]["ipFamilies"]), (&json!([ip]), &json!(["IPv4"])));
    assert_eq!(web["status"], json!({"loadBalancer": {}}), "{web}");

    // One asked for: granted when free and in the range, else a 422 saying why.
    let fixed = api.create(SERVICES, &service("fixed", json!({"clusterIP": "10.100.0.50"}))).await;
    assert_eq!(fixed["spec"]["clusterIP"], "10.100.0.50");
    let (code, taken) = api.post(SERVICES, &service("thief", json!({"clusterIP": "10.100.0.50"}))).await;
    assert_eq!(code.as_u16(), 422, "{taken}");
    assert_eq!(
        taken["message"],
        "Service \"thief\" is invalid: spec.clusterIP: Invalid value: \"10.100.0.50\": provided IP is already allocated"
    );
    let (code, outside) = api.post(SERVICES, &service("outside", json!({"clusterIP": "192.168.0.9"}))).await;
    assert_eq!(code.as_u16(), 422, "{outside}");
    assert!(
        outside["message"].as_str().is_some_and(|m| m.contains("The range of valid IPs is 10.96.0.0/12")),
        "{outside}"
    );
    let (code, changed) = api
        .patch(
            &format!("{SERVICES}/fixed"),
            "application/merge-patch+json",
            &json!({"spec": {"clusterIP": "10.100.0.51"}}),
        )
        .await;
    assert_eq!((code.as_u16(), changed["details"]["causes"][0]["field"].as_str()), (422, Some("spec.clusterIP")));

    // Headless stays headless.
    let headless = api.create(SERVICES, &service("db", json!({"clusterIP": "None"}))).await;
    assert_eq!((&headless["spec"]["clusterIP"], &headless["spec"]["clusterIPs"]), (&json!("None"), &json!(["None"])));

    // Concurrent creates never share an IP.
    let creates = (0..20).map(|i| {
        let api = &api;
        async move { api.create(SERVICES, &service(&format!("many-{i}"), json!({}))).await }
    });
    let created = futures::future::join_all(creates).await;
    let ips: HashSet<String> =
        created.iter().map(|s| s["spec"]["clusterIP"].as_str().unwrap_or_default().to_string()).collect();
    assert_eq!(ips.len(), 20, "{ips:?}");
    assert!(ips.iter().all(|ip| in_range(ip) && *ip != ip_of(&web)), "{ips:?}");

    // A deleted Service's IP is free again.
    let (code, _) = api.delete(&format!("{SERVICES}/fixed")).await;
    assert_eq!(code.as_u16(), 200);
    let again = api.create(SERVICES, &service("again", json!({"clusterIP": "10.100.0.50"}))).await;
    assert_eq!(again["spec"]["clusterIP"], "10.100.0.50");

    // NodePort: a port of the range for each port; one asked for that is taken is a 422.
    let two_ports = json!([{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}]);
    let np = api.create(SERVICES, &service("np", json!({"type": "NodePort", "ports": two_ports}))).await;
    let node_ports: Vec<u64> =
        np["spec"]["ports"].as_array().expect("ports").iter().filter_map(|p| p["nodePort"].as_u64()).collect();
    assert_eq!(node_ports.len(), 2, "{np}");
    assert!(node_ports.iter().all(|p| (30000..=32767).contains(p)) && node_ports[0] != node_ports[1], "{np}");
    let clash = json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": node_ports[0]}]});
    let (code, refused) = api.post(SERVICES, &service("clash", clash)).await;
    assert_eq!(code.as_u16(), 422, "{refused}");
    assert!(refused["message"].as_str().is_some_and(|m| m.contains("provided port is already allocated")), "{refused}");
    let (code, refused) = api
        .post(SERVICES, &service("low", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 8080}]})))
        .await;
    assert_eq!(code.as_u16(), 422, "{refused}");
    assert!(
        refused["message"].as_str().is_some_and(|m| m.contains("The range of valid ports is 30000-32767")),
        "{refused}"
    );

    // An update that leaves nodePort out keeps it; back to ClusterIP gives the ports back.
    let mut update = np.clone();
    update["spec"]["ports"] = json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}]);
    let (code, kept) = api.put(&format!("{SERVICES}/np"), &update).await;
    assert_eq!((code.as_u16(), &kept["spec"]["ports"][0]["nodePort"]), (200, &json!(node_ports[0])), "{kept}");
    let (code, freed) = api
        .patch(&format!("{SERVICES}/np"), "application/merge-patch+json", &json!({"spec": {"type": "ClusterIP"}}))
        .await;
    assert_eq!(code.as_u16(), 200, "{freed}");
    assert!(freed["spec"]["ports"][0].get("nodePort").is_none(), "{freed}");
    let reuse = json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": node_ports[0]}, {"name": "b", "port": 81, "nodePort": node_ports[1]}]});
    let reused = api.create(SERVICES, &service("reuse", reuse)).await;
    assert_eq!(reused["spec"]["ports"][0]["nodePort"], node_ports[0], "{reused}");

    // LoadBalancer: node ports, and a load balancer nobody provides (EXTERNAL-IP <pending>).
    let lb = api.create(SERVICES, &service("lb", json!({"type": "LoadBalancer"}))).await;
    assert!(lb["spec"]["ports"][0]["nodePort"].as_u64().is_some_and(|p| (30000..=32767).contains(&p)), "{lb}");
    let home = tempfile::tempdir().expect("home");
    let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig");
    let out = std::process::Command::new(venv_bin("kubectl"))
        .args(["get", "svc", "lb", "np", "kubernetes", "--no-headers"])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", home.path())
        .output()
        .expect("kubectl runs (make deps installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Vec<&str>> = text.lines().map(|line| line.split_whitespace().collect()).collect();
    assert_eq!(lines[0][..4], ["lb", "LoadBalancer", ip_of(&lb).as_str(), "<pending>"], "{text}");
    assert_eq!(lines[0][4], format!("80:{}/TCP", lb["spec"]["ports"][0]["nodePort"]), "{text}");
    assert_eq!(lines[1][..5], ["np", "ClusterIP", ip_of(&np).as_str(), "<none>", "80/TCP"], "{text}");
    assert_eq!(lines[2][..5], ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"], "{text}");
}

fn ip_of(service: &Value) -> String {
    service["spec"]["clusterIP"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_lost_allocation_is_recorded_again_and_a_leaked_one_given_back() {
    let mut cluster =
        Cluster::start_with_args(&["--service-allocation-repair-interval-seconds", "1"]).await.expect("cluster starts");
    let api = Api::new(cluster.url());
    api.create(SERVICES, &service("kept", json!({"clusterIP": "10.100.1.1"}))).await;
    let config = EtcdConfig {
        endpoints: vec![cluster.etcd.client_url.clone()],
        request_timeout: Duration::from_secs(10),
        tls: None,
    };
    let etcd = EtcdStore::connect(&config).await.expect("etcd");
    // The allocation of a stored Service lost, and one no Service holds (a crash between
    // allocating and writing).
    etcd.delete("/registry/serviceipallocations/10.100.1.1", None).await.expect("allocation deleted");
    etcd.create("/registry/serviceipallocations/10.100.2.2", b"{}".to_vec()).await.expect("leak made");
    cluster.apiserver.restart().await.expect("apiserver restarts");
    // At start-up the repair records the lost one at once: the IP is not handed out twice.
    let (code, refused) = api.post(SERVICES, &service("thief", json!({"clusterIP": "10.100.1.1"}))).await;
    assert_eq!(code.as_u16(), 422, "{refused}");
    // The leak is only a suspect at the first repair (it might be a create in flight); the
    // next one gives it back, and then a Service may have that IP.
    let late = rkube_tests::eventually(Duration::from_secs(20), "the leaked IP to be given back", || async {
        let (code, created) = api.post(SERVICES, &service("late", json!({"clusterIP": "10.100.2.2"}))).await;
        (code.as_u16() == 201).then_some(created)
    })
    .await;
    assert_eq!(late["spec"]["clusterIP"], "10.100.2.2");
}
