//! The `kubernetes` Service's endpoints follow the live apiservers
//! (`pkg/apiserver/src/kubernetes_service.rs`): three real apiservers on one etcd, each
//! advertising its own loopback address (127.0.0.1, .2, .3; they all listen on 127.0.0.1, on
//! different ports), with short Leases. A killed one leaves once its Lease expires and comes
//! back when restarted; one stopped with SIGTERM leaves at once, long before its Lease could
//! expire.

use std::time::Duration;

use rkube_tests::{Api, ApiServer, Etcd, eventually};
use serde_json::Value;

const ENDPOINTS: &str = "/api/v1/namespaces/default/endpoints/kubernetes";
const SLICE: &str = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases?labelSelector=apiserver.kubernetes.io%2Fidentity%3Dkube-apiserver";

/// Short Leases, so a killed apiserver leaves within 2.5 s.
const SHORT_LEASE: &[&str] = &["--endpoint-lease-duration", "2s", "--endpoint-reconcile-interval", "500ms"];
/// A Lease that would outlive the test: the apiserver holding it can only leave by saying so.
const LONG_LEASE: &[&str] = &["--endpoint-lease-duration", "1h", "--endpoint-reconcile-interval", "500ms"];
/// The limit for every change to show: the promise is lease duration + interval (2.5 s with
/// [`SHORT_LEASE`]); the rest is room for a loaded machine. Far below [`LONG_LEASE`]'s hour.
const LIMIT: Duration = Duration::from_secs(30);

async fn start(etcd: &Etcd, advertise: &str, lease: &[&str]) -> ApiServer {
    let mut args = vec!["--advertise-address", advertise];
    args.extend_from_slice(lease);
    ApiServer::start(etcd, &args).await.expect("apiserver starts")
}

fn port(apiserver: &ApiServer) -> u16 {
    apiserver.url.rsplit(':').next().and_then(|port| port.parse().ok()).expect("a port in the url")
}

/// The addresses of the Endpoints and of the EndpointSlice, and their ports.
struct Seen {
    endpoints: Vec<String>,
    slice: Vec<String>,
    ports: (u16, u16),
}

async fn seen(api: &Api) -> Seen {
    let endpoints = api.get_ok(ENDPOINTS).await;
    let slice = api.get_ok(SLICE).await;
    let strings = |values: Option<&Vec<Value>>, field: &str| -> Vec<String> {
        let values = values.map(Vec::as_slice).unwrap_or_default();
        values.iter().filter_map(|value| value.pointer(field)?.as_str().map(String::from)).collect()
    };
    let port = |value: &Value| value.as_u64().and_then(|port| u16::try_from(port).ok()).unwrap_or_default();
    Seen {
        endpoints: strings(endpoints["subsets"][0]["addresses"].as_array(), "/ip"),
        slice: strings(slice["endpoints"].as_array(), "/addresses/0"),
        ports: (port(&endpoints["subsets"][0]["ports"][0]["port"]), port(&slice["ports"][0]["port"])),
    }
}

/// Waits until both the Endpoints and the EndpointSlice name exactly `ips` (sorted), and
/// checks that their port is one of the apiservers': each writes its own (Kubernetes' rule),
/// and these apiservers' ports differ.
async fn wait_for(api: &Api, ips: &[&str], ports: &[u16], what: &str) {
    let seen = eventually(LIMIT, what, || async {
        let seen = seen(api).await;
        (seen.endpoints == ips && seen.slice == ips).then_some(seen)
    })
    .await;
    assert!(ports.contains(&seen.ports.0) && ports.contains(&seen.ports.1), "ports {:?} of {ports:?}", seen.ports);
}

/// The names of the apiservers' Leases, sorted.
async fn lease_names(api: &Api) -> Vec<String> {
    let list = api.get_ok(LEASES).await;
    let items = list["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut names: Vec<String> =
        items.iter().filter_map(|lease| lease["metadata"]["name"].as_str().map(String::from)).collect();
    names.sort();
    names
}

/// Whether `pid` runs (exists and is not a zombie waiting to be reaped).
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

#[tokio::test]
async fn the_kubernetes_service_endpoints_follow_the_live_apiservers() {
    let etcd = Etcd::start().await.expect("etcd starts");
    let first = start(&etcd, "127.0.0.1", SHORT_LEASE).await;
    let mut second = start(&etcd, "127.0.0.2", SHORT_LEASE).await;
    let third = start(&etcd, "127.0.0.3", LONG_LEASE).await;
    let ports = [port(&first), port(&second), port(&third)];
    let api = Api::new(&first.url);

    // All three, in both objects, each with a Lease named after its address and port.
    wait_for(&api, &["127.0.0.1", "127.0.0.2", "127.0.0.3"], &ports, "all three apiservers").await;
    let mut expected: Vec<String> = [("127-0-0-1", ports[0]), ("127-0-0-2", ports[1]), ("127-0-0-3", ports[2])]
        .iter()
        .map(|(ip, port)| format!("apiserver-{ip}-{port}"))
        .collect();
    expected.sort();
    assert_eq!(lease_names(&api).await, expected);
    let lease =
        api.get_ok(&format!("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{}", expected[0])).await;
    assert_eq!(lease["metadata"]["annotations"]["rkube.io/advertise-address"], format!("127.0.0.1:{}", ports[0]));
    assert_eq!(lease["spec"]["holderIdentity"], expected[0], "{lease}");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 2, "{lease}");

    // Killed (SIGKILL), the second says nothing: it leaves when its Lease expires, and the
    // expired Lease is deleted.
    second.kill();
    wait_for(&api, &["127.0.0.1", "127.0.0.3"], &ports, "the killed apiserver to leave").await;
    let second_lease = format!("apiserver-127-0-0-2-{}", ports[1]);
    eventually(LIMIT, "the killed apiserver's Lease to be deleted", || async {
        (!lease_names(&api).await.contains(&second_lease)).then_some(())
    })
    .await;

    // Restarted, it is back.
    second.restart().await.expect("the second apiserver restarts");
    wait_for(&api, &["127.0.0.1", "127.0.0.2", "127.0.0.3"], &ports, "the restarted apiserver to return").await;
    assert!(lease_names(&api).await.contains(&second_lease));

    // Stopped with SIGTERM, the third takes itself out while it shuts down: its Lease would
    // last an hour, so its address can only leave because it said so.
    let pid = third.pid().expect("the third apiserver runs");
    let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill runs");
    assert!(status.success(), "kill -TERM {pid}");
    eventually(LIMIT, "the third apiserver to exit", || async { (!process_alive(pid)).then_some(()) }).await;
    assert!(third.log_tail(50).contains("left the kubernetes Service's endpoints"), "{}", third.log_tail(50));
    assert!(!lease_names(&api).await.contains(&format!("apiserver-127-0-0-3-{}", ports[2])), "its Lease is deleted");
    wait_for(&api, &["127.0.0.1", "127.0.0.2"], &ports, "the stopped apiserver to leave").await;
}
