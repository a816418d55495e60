//! The node's heartbeat: a Lease named after the node in `kube-node-lease`, renewed every
//! `--node-lease-renew-interval`.
//!
//! The node lifecycle controller reads `spec.renewTime`: a node whose lease is older than its
//! grace period is NotReady. What this keeps true (`kubelet_fake.rs`:
//! `node_registers_with_capacity_labels_and_taints_and_heartbeats`): the lease exists while the
//! kubelet runs and its `renewTime` advances every interval; it is owned by the Node (so it goes
//! when the Node goes). A failed renewal is logged, counted and retried after a short backoff;
//! it never stops the loop.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use rkube_api::backoff::{Backoff, BackoffConfig};
use rkube_client::{Api, Client, PostParams};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// The namespace holding node leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// `spec.leaseDurationSeconds` of node leases (Kubernetes' default, 40 s).
pub const LEASE_DURATION_SECONDS: i32 = 40;

/// Renews the lease of `node_name` every `interval` until `shutdown`.
pub async fn run(
    client: Client,
    node_name: String,
    interval: Duration,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    // Failed renewals retry sooner than the interval: 200 ms doubling up to the interval.
    let mut backoff = Backoff::new(BackoffConfig::doubling(Duration::from_millis(200), interval, Duration::MAX));
    loop {
        let wait = match renew(&client, &node_name).await {
            Ok(()) => {
                metrics.lease_renewals.with_label_values(&["success"]).inc();
                backoff.reset();
                interval
            }
            Err(error) => {
                metrics.lease_renewals.with_label_values(&["error"]).inc();
                let wait = backoff.next_delay(tokio::time::Instant::now().into_std());
                tracing::warn!(%error, node = %node_name, retry_in = ?wait, "lease renewal failed; retrying");
                wait
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Creates the lease, or sets its `renewTime` and holder to now and this node.
///
/// # Errors
/// [`Error::Lease`] when the apiserver refuses (a 409 from a concurrent writer included: the
/// next round reads again).
pub async fn renew(client: &Client, node_name: &str) -> Result<()> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let now = MicroTime(Timestamp::now());
    match api.get_opt(node_name).await.map_err(Error::Lease)? {
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.renew_time = Some(now);
            spec.holder_identity = Some(node_name.into());
            spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
            api.replace(node_name, &PostParams::default(), &lease).await.map_err(Error::Lease)?;
        }
        None => {
            let owner = owner_reference(client, node_name).await;
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(node_name.into()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    owner_references: owner.map(|owner| vec![owner]),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(node_name.into()),
                    lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                    renew_time: Some(now),
                    ..LeaseSpec::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await.map_err(Error::Lease)?;
        }
    }
    Ok(())
}

/// An owner reference to the Node, if it can be read now (the lease works without one).
async fn owner_reference(client: &Client, node_name: &str) -> Option<OwnerReference> {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let node = nodes.get_opt(node_name).await.ok().flatten()?;
    Some(OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node_name.into(),
        uid: node.metadata.uid?,
        ..OwnerReference::default()
    })
}
