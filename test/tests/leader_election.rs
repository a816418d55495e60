//! Leader election through a Lease (rkube_component::leaderelection) against the real
//! apiserver: one leader at a time, hand-over on release, take-over after expiry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use rkube_client::{Api as TypedApi, Client, Config};
use rkube_component::leaderelection::{LeaderElectionConfig, LeaderElector};
use rkube_tests::{Cluster, eventually, stays_true};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn client(cluster: &Cluster) -> Client {
    Client::new(Config::new(cluster.url().parse().expect("url"))).expect("client")
}

fn fast(identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(200),
        ..LeaderElectionConfig::new("kube-system", "test-component", identity)
    }
}

/// Starts a candidate whose work counts itself in `leaders` while it leads and records the
/// highest count ever seen in `most`.
fn candidate(
    elector: Arc<LeaderElector>,
    shutdown: CancellationToken,
    leaders: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let result = elector
            .run(&shutdown, |token| async move {
                let now = leaders.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                token.cancelled().await;
                leaders.fetch_sub(1, Ordering::SeqCst);
            })
            .await;
        assert!(result.is_ok(), "{result:?}");
    })
}

async fn holder(cluster: &Cluster) -> String {
    let leases: TypedApi<Lease> = TypedApi::namespaced(client(cluster), "kube-system");
    let lease = leases.get("test-component").await.expect("lease exists");
    lease.spec.and_then(|s| s.holder_identity).unwrap_or_default()
}

#[tokio::test]
async fn one_candidate_leads_at_a_time_and_the_other_takes_over_when_it_steps_down() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let (leaders, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let a = Arc::new(LeaderElector::new(client(&cluster), fast("a")));
    let b = Arc::new(LeaderElector::new(client(&cluster), fast("b")));
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let run_a = candidate(a.clone(), stop_a.clone(), leaders.clone(), most.clone());
    let run_b = candidate(b.clone(), stop_b.clone(), leaders.clone(), most.clone());

    eventually(Duration::from_secs(10), "a leader", || async { (a.is_leader() || b.is_leader()).then_some(()) }).await;
    // Both keep trying; the leader keeps the Lease and the other never leads meanwhile. Had the
    // leader's renewals stopped reaching the server, the other would have led within one retry
    // (to see the last renewal), a lease duration (unchanged) and one more retry (to take it),
    // retries jittered by up to 20%: the window, from the configured timing, is longer.
    let a_leads = a.is_leader();
    assert!(a_leads ^ b.is_leader(), "exactly one leader");
    let config = fast("a");
    let window = config.lease_duration + config.retry_period * 3;
    stays_true(window, "one leader, the same one, while it renews", || async {
        a.is_leader() == a_leads && b.is_leader() != a_leads
    })
    .await;
    let (first, first_stop, second, second_name) =
        if a.is_leader() { (&a, &stop_a, &b, "b") } else { (&b, &stop_b, &a, "a") };

    first_stop.cancel();
    eventually(Duration::from_secs(5), "the other candidate to take over", || async {
        second.is_leader().then_some(())
    })
    .await;
    assert!(!first.is_leader());
    assert_eq!(holder(&cluster).await, second_name);
    assert_eq!(most.load(Ordering::SeqCst), 1, "two candidates led at the same time");

    stop_a.cancel();
    stop_b.cancel();
    run_a.await.expect("candidate a");
    run_b.await.expect("candidate b");
    assert_eq!(leaders.load(Ordering::SeqCst), 0);
}

/// How long the holder that never renews (the "ghost") holds its Lease.
const GHOST_LEASE_DURATION: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_holder_that_stops_renewing_loses_the_lease_after_its_duration() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = rkube_tests::Api::new(cluster.url());
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let ghost = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "test-component", "namespace": "kube-system"},
        "spec": {"holderIdentity": "ghost", "leaseDurationSeconds": GHOST_LEASE_DURATION.as_secs(),
            "renewTime": now, "acquireTime": now, "leaseTransitions": 0}});
    api.create("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases", &ghost).await;

    let (leaders, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let b = Arc::new(LeaderElector::new(client(&cluster), fast("b")));
    let stop = CancellationToken::new();
    // b measures the ghost's duration from its own first look at the Lease, which comes after
    // this start: for the whole duration from here on the Lease is still the ghost's.
    let run = candidate(b.clone(), stop.clone(), leaders, most);
    stays_true(GHOST_LEASE_DURATION, "the silent holder keeps the lease within its duration", || async {
        !b.is_leader()
    })
    .await;
    eventually(Duration::from_secs(10), "the silent holder's lease to be taken over", || async {
        b.is_leader().then_some(())
    })
    .await;
    assert_eq!(holder(&cluster).await, "b");
    stop.cancel();
    run.await.expect("candidate");
}
