//! The `kubernetes` Service in `default`, and its endpoints kept to the apiservers that are alive.
//!
//! Pods reach the apiserver at the first IP of the Service range (`10.96.0.1` by default), port
//! 443; rkube-proxy sends those connections to the addresses in the Endpoints and EndpointSlice
//! `default/kubernetes`. The Service has no selector, so no controller writes them: the
//! apiservers do. With two or three apiservers behind one Service, the address of one that is
//! gone must leave, or pods' connections go to a dead apiserver.
//!
//! This is Kubernetes' lease endpoint reconciler (`--endpoint-reconciler-type=lease`, its
//! default):
//! - every apiserver holds a Lease `kube-system/apiserver-<ip>-<port>` ([`lease_name`]),
//!   labelled `apiserver.kubernetes.io/identity=kube-apiserver` and annotated with its address
//!   ([`ADVERTISE_ANNOTATION`]), and renews it every `--endpoint-reconcile-interval` (10 s); a
//!   Lease not renewed for `--endpoint-lease-duration` (15 s) has expired;
//! - right after renewing ([`reconcile`]), it lists those Leases and writes the Endpoints and
//!   the EndpointSlice with the addresses of the unexpired ones, sorted by IP, and its own port;
//!   only when the stored objects differ, so apiservers that agree write nothing. Leases that
//!   have expired are deleted, as Kubernetes' apiserver lease garbage collector does;
//! - at a graceful shutdown ([`run`] when `state.shutdown` is cancelled) it deletes its Lease
//!   and writes the others' addresses ([`remove`], Kubernetes' `RemoveEndpoints`).
//!
//! Kubernetes keeps this liveness in etcd keys with a TTL (`/registry/masterleases/<ip>`), which
//! kubectl cannot show; rkube uses Lease objects instead, so `kubectl get leases -n kube-system`
//! shows who is in, and decides expiry by comparing `renewTime` with the wall clock.
//!
//! Promised (`test/tests/apiserver_endpoints.rs`; the tests below show the rest of this doc):
//! - an apiserver that stops renewing its Lease (the test kills one) leaves the Endpoints and
//!   the EndpointSlice within its lease duration plus one reconcile interval, provided another
//!   apiserver runs to notice; it comes back at its first renewal after a restart;
//! - one stopped gracefully (SIGTERM) leaves at once, without waiting for its Lease to expire.
//!
//! Not promised:
//! - agreeing clocks are assumed: a Lease's `renewTime` comes from its holder's clock and is
//!   compared with the reader's. Clocks further apart than the duration minus the interval drop
//!   live apiservers or keep dead ones (Kubernetes' etcd TTLs need no clock). An apiserver counts
//!   itself alive right after renewing, whatever the clocks say;
//! - one port: Endpoints carry a single port, the writer's own (Kubernetes' rule). Apiservers
//!   on different ports overwrite each other's port at every round (each logs a warning): give
//!   every apiserver the same `--port`;
//! - the last apiserver to stop leaves its address behind: with no other Lease left, the objects
//!   stay as they are (Kubernetes refuses "to erase all endpoints"), so the pods of a single
//!   restarting apiserver keep their route; a killed apiserver stays listed while no other runs;
//! - an apiserver that listed the Leases just before another's goodbye may write that address
//!   back once; its next round, one interval later, takes it out again.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, MicroTime, Preconditions};
use rkube_api::backoff::{Backoff, BackoffConfig};
use rkube_api::registry::ResourceDef;
use serde_json::{Value, json};

use crate::ApiState;
use crate::error::ApiError;
use crate::request::{Query, ResourceRequest};
use crate::rest;

/// The namespace of the apiservers' Leases.
pub const LEASE_NAMESPACE: &str = "kube-system";
/// The label every apiserver's Lease carries, with the value [`IDENTITY`] (Kubernetes labels its
/// apiserver identity Leases so).
pub const IDENTITY_LABEL: &str = "apiserver.kubernetes.io/identity";
/// The value of [`IDENTITY_LABEL`].
pub const IDENTITY: &str = "kube-apiserver";
/// The annotation of a Lease naming its apiserver's advertised address, e.g. `10.250.0.10:6443`.
pub const ADVERTISE_ANNOTATION: &str = "rkube.io/advertise-address";
/// How long a Lease lasts unless renewed (Kubernetes' `DefaultEndpointReconcilerTTL`).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often an apiserver renews its Lease and reconciles the endpoints (Kubernetes'
/// `DefaultEndpointReconcilerInterval`).
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(10);
/// How long [`run`] tries to take this apiserver out at shutdown before it gives up (its Lease
/// then expires as if it had been killed).
pub const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The Service's name, and its Endpoints' and EndpointSlice's.
const NAME: &str = "kubernetes";
/// Tells the EndpointSlice mirroring to leave these Endpoints alone: the apiservers write the
/// slice themselves.
const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";

/// The name of the Lease of the apiserver advertised at `advertised`: `apiserver-<ip>-<port>`,
/// the IP's dots (or colons) as dashes, e.g. `apiserver-10-250-0-10-6443`. The same after a
/// restart, so a restarted apiserver renews its old Lease.
pub fn lease_name(advertised: SocketAddr) -> String {
    let ip = advertised.ip().to_string().replace(['.', ':'], "-");
    format!("apiserver-{ip}-{}", advertised.port())
}

/// Makes the `kubernetes` Service if it is missing, then runs one [`reconcile`]: this
/// apiserver's Lease and address are in place before it reports ready.
pub async fn ensure(state: &ApiState, advertised: SocketAddr) -> Result<(), ApiError> {
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": state.config.services.cluster_ips.first().to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": advertised.port()}],
            "sessionAffinity": "None",
        },
    });
    let services = &rkube_api::kinds::service::RESOURCE;
    match rest::get(state, &request(services, "default", Some(NAME)), NAME).await {
        Ok(_) => {}
        Err(ApiError::NotFound(_)) => {
            match rest::create(state, &request(services, "default", None), service, &rest::WriteOptions::default())
                .await
            {
                Ok(_) | Err(ApiError::AlreadyExists(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Err(error) => return Err(error),
    }
    // A shutdown that began during start-up has taken this apiserver out already, or will.
    if state.shutdown.is_cancelled() {
        return Ok(());
    }
    reconcile(state, advertised).await
}

/// Every `config.endpoint_reconcile_interval` (the first after one interval: [`ensure`] made
/// the first round), [`reconcile`]; after a failure (etcd unavailable) again sooner, from 100 ms
/// doubling up to the interval. When `state.shutdown` is cancelled, [`remove`]s this apiserver
/// (within [`REMOVE_TIMEOUT`]) and returns.
pub async fn run(state: Arc<ApiState>, advertised: SocketAddr) {
    let interval = state.config.endpoint_reconcile_interval;
    let config = BackoffConfig::doubling(Duration::from_millis(100).min(interval), interval, Duration::MAX);
    let mut backoff = Backoff::new(config);
    let mut delay = interval;
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
        let result = tokio::select! {
            () = state.shutdown.cancelled() => break,
            result = reconcile(&state, advertised) => result,
        };
        delay = match result {
            Ok(()) => {
                backoff.reset();
                interval
            }
            Err(error) => {
                let retry_in = backoff.next_delay(tokio::time::Instant::now().into_std());
                tracing::warn!(%error, ?retry_in, "cannot renew this apiserver's Lease or the kubernetes Service's endpoints");
                retry_in
            }
        };
    }
    match tokio::time::timeout(REMOVE_TIMEOUT, remove(&state, advertised)).await {
        Ok(Ok(())) => tracing::info!(%advertised, "left the kubernetes Service's endpoints"),
        Ok(Err(error)) => {
            tracing::warn!(%error, %advertised, "cannot leave the kubernetes Service's endpoints; they drop this address when its Lease expires");
        }
        Err(_) => tracing::warn!(
            %advertised,
            timeout = ?REMOVE_TIMEOUT,
            "leaving the kubernetes Service's endpoints took too long; they drop this address when its Lease expires"
        ),
    }
}

/// One round: renews this apiserver's Lease (makes it if missing), then writes the Endpoints
/// and EndpointSlice `default/kubernetes` to the addresses of the unexpired Leases (this one's
/// included) if they differ, and deletes the expired Leases.
pub async fn reconcile(state: &ApiState, advertised: SocketAddr) -> Result<(), ApiError> {
    renew(state, advertised).await?;
    let own = lease_name(advertised);
    let leases = apiserver_leases(state).await?;
    // The wall clock: `renewTime` is written by the apiservers themselves (see the module's
    // "not promised" on clocks).
    let now = Timestamp::now();
    let (current, expired): (Vec<&Lease>, Vec<&Lease>) = leases.iter().partition(|lease| is_current(lease, now));
    // This apiserver has just renewed its Lease, so it counts whatever the clocks say.
    let mut live: Vec<SocketAddr> = current.iter().filter_map(|lease| advertised_address(lease)).collect();
    live.push(advertised);
    write_endpoints(state, advertised, &live).await?;
    for lease in expired.into_iter().filter(|lease| lease.metadata.name.as_deref() != Some(own.as_str())) {
        delete_expired(state, lease).await;
    }
    Ok(())
}

/// Takes this apiserver out at once: deletes its Lease and writes the Endpoints and
/// EndpointSlice to the other unexpired Leases' addresses. When no other is left, leaves them
/// as they are (Kubernetes refuses to erase all endpoints of the `kubernetes` Service).
pub async fn remove(state: &ApiState, advertised: SocketAddr) -> Result<(), ApiError> {
    let own = lease_name(advertised);
    let req = request(&rkube_api::kinds::lease::RESOURCE, LEASE_NAMESPACE, Some(&own));
    match rest::delete(state, &req, &own, &DeleteOptions::default(), false).await {
        Ok(_) | Err(ApiError::NotFound(_)) => {}
        Err(error) => return Err(error),
    }
    let leases = apiserver_leases(state).await?;
    let now = Timestamp::now();
    let live: Vec<SocketAddr> = leases
        .iter()
        .filter(|lease| lease.metadata.name.as_deref() != Some(own.as_str()) && is_current(lease, now))
        .filter_map(advertised_address)
        .collect();
    if live.is_empty() {
        tracing::info!("no other apiserver holds a Lease: the kubernetes Service's endpoints stay as they are");
        return Ok(());
    }
    write_endpoints(state, advertised, &live).await
}

/// Creates or renews this apiserver's Lease: holder, duration and `renewTime` now.
async fn renew(state: &ApiState, advertised: SocketAddr) -> Result<(), ApiError> {
    let name = lease_name(advertised);
    let req = request(&rkube_api::kinds::lease::RESOURCE, LEASE_NAMESPACE, Some(&name));
    let now = micro_time(Timestamp::now())?;
    let seconds = lease_duration_seconds(state.config.endpoint_lease_duration);
    let address = advertised.to_string();
    let renewed = rest::guaranteed_update(state, &req, &name, None, &rest::WriteOptions::default(), |current| {
        let mut lease = current.clone();
        lease["metadata"]["labels"][IDENTITY_LABEL] = json!(IDENTITY);
        lease["metadata"]["annotations"][ADVERTISE_ANNOTATION] = json!(address);
        lease["spec"]["holderIdentity"] = json!(name);
        lease["spec"]["leaseDurationSeconds"] = json!(seconds);
        lease["spec"]["renewTime"] = now.clone();
        Ok(lease)
    })
    .await;
    match renewed {
        Ok(_) => return Ok(()),
        Err(ApiError::NotFound(_)) => {}
        Err(error) => return Err(error),
    }
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": LEASE_NAMESPACE,
                     "labels": {IDENTITY_LABEL: IDENTITY},
                     "annotations": {ADVERTISE_ANNOTATION: address}},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": seconds, "acquireTime": now, "renewTime": now},
    });
    let collection = request(&rkube_api::kinds::lease::RESOURCE, LEASE_NAMESPACE, None);
    match rest::create(state, &collection, lease, &rest::WriteOptions::default()).await {
        // Made meanwhile (the start-up round and the loop's may overlap): renewed next round.
        Ok(_) | Err(ApiError::AlreadyExists(_)) => Ok(()),
        Err(error) => Err(error),
    }
}

/// The Leases labelled [`IDENTITY_LABEL`]=[`IDENTITY`] in [`LEASE_NAMESPACE`].
async fn apiserver_leases(state: &ApiState) -> Result<Vec<Lease>, ApiError> {
    let req = request(&rkube_api::kinds::lease::RESOURCE, LEASE_NAMESPACE, None);
    let query = Query::parse(None).with("labelSelector", format!("{IDENTITY_LABEL}={IDENTITY}"));
    let listed = rest::list(state, &req, &query).await?;
    let mut leases = Vec::with_capacity(listed.items.len());
    for item in &listed.items {
        let lease = serde_json::from_value(item.decode()?).map_err(|e| ApiError::Internal(e.to_string()))?;
        leases.push(lease);
    }
    Ok(leases)
}

/// Whether `lease` has not expired at `now`: `renewTime` + `leaseDurationSeconds` is not past.
/// One without either has expired.
fn is_current(lease: &Lease, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else { return false };
    let (Some(renewed), Some(seconds)) = (&spec.renew_time, spec.lease_duration_seconds) else { return false };
    renewed.0.checked_add(SignedDuration::from_secs(i64::from(seconds))).is_ok_and(|until| until >= now)
}

/// The address a Lease's [`ADVERTISE_ANNOTATION`] names, if it names one.
fn advertised_address(lease: &Lease) -> Option<SocketAddr> {
    lease.metadata.annotations.as_ref()?.get(ADVERTISE_ANNOTATION)?.parse().ok()
}

/// Deletes an expired Lease unless it was renewed meanwhile (the resourceVersion it was read
/// at is the precondition). Failures are only logged: the next round tries again.
async fn delete_expired(state: &ApiState, lease: &Lease) {
    let Some(name) = lease.metadata.name.as_deref() else { return };
    let options = DeleteOptions {
        preconditions: Some(Preconditions { resource_version: lease.metadata.resource_version.clone(), uid: None }),
        ..DeleteOptions::default()
    };
    let req = request(&rkube_api::kinds::lease::RESOURCE, LEASE_NAMESPACE, Some(name));
    match rest::delete(state, &req, name, &options, false).await {
        Ok(_) => tracing::info!(lease = name, "deleted an expired apiserver Lease"),
        // Renewed or deleted meanwhile.
        Err(ApiError::Conflict(..) | ApiError::NotFound(_)) => {}
        Err(error) => tracing::warn!(%error, lease = name, "cannot delete an expired apiserver Lease"),
    }
}

/// `leaseDurationSeconds` for `duration`: whole seconds, rounded up, at least 1.
fn lease_duration_seconds(duration: Duration) -> i32 {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(seconds.max(1)).unwrap_or(i32::MAX)
}

/// A `MicroTime` as the API writes it (`2024-05-01T10:00:00.123456Z`).
fn micro_time(at: Timestamp) -> Result<Value, ApiError> {
    serde_json::to_value(MicroTime(at)).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Writes the Endpoints and EndpointSlice `default/kubernetes` to `live`'s IPs, sorted and
/// once each, with `own`'s port; each only if it differs.
async fn write_endpoints(state: &ApiState, own: SocketAddr, live: &[SocketAddr]) -> Result<(), ApiError> {
    let mut ips: Vec<IpAddr> = live.iter().map(SocketAddr::ip).collect();
    ips.sort_unstable();
    ips.dedup();
    let endpoints_written = write_endpoints_object(state, &ips, own.port()).await?;
    let slice_written = write_slice(state, &ips, own).await?;
    if endpoints_written || slice_written {
        let ports: std::collections::BTreeSet<u16> = live.iter().map(SocketAddr::port).collect();
        if ports.len() > 1 {
            tracing::warn!(
                ?ports,
                "the apiservers advertise different ports, and the kubernetes Service's endpoints carry one, the \
                 writer's: they overwrite each other at every round; give every apiserver the same --port"
            );
        }
        tracing::info!(?ips, port = own.port(), "the kubernetes Service's endpoints now name these apiservers");
    }
    Ok(())
}

/// The Endpoints' `subsets`: one subset of `ips` on `port`.
fn endpoints_subsets(ips: &[IpAddr], port: u16) -> Value {
    let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
    json!([{"addresses": addresses, "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}])
}

/// Makes or updates the Endpoints; returns whether it wrote.
async fn write_endpoints_object(state: &ApiState, ips: &[IpAddr], port: u16) -> Result<bool, ApiError> {
    let resource = &rkube_api::kinds::endpoints::RESOURCE;
    let subsets = endpoints_subsets(ips, port);
    let req = request(resource, "default", Some(NAME));
    match rest::get(state, &req, NAME).await {
        Ok(current) if current["subsets"] == subsets && current["metadata"]["labels"][SKIP_MIRROR] == "true" => {
            Ok(false)
        }
        Ok(_) => {
            rest::guaranteed_update(state, &req, NAME, None, &rest::WriteOptions::default(), |current| {
                let mut updated = current.clone();
                updated["metadata"]["labels"][SKIP_MIRROR] = json!("true");
                updated["subsets"] = subsets.clone();
                Ok(updated)
            })
            .await?;
            Ok(true)
        }
        Err(ApiError::NotFound(_)) => {
            let endpoints = json!({
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": NAME, "namespace": "default", "labels": {SKIP_MIRROR: "true"}},
                "subsets": subsets,
            });
            match rest::create(state, &request(resource, "default", None), endpoints, &rest::WriteOptions::default())
                .await
            {
                // Another apiserver made it meanwhile; the next round compares again.
                Ok(_) | Err(ApiError::AlreadyExists(_)) => Ok(true),
                Err(error) => Err(error),
            }
        }
        Err(error) => Err(error),
    }
}

/// Makes or updates the EndpointSlice (of `own`'s address family, as a slice holds one);
/// returns whether it wrote.
async fn write_slice(state: &ApiState, ips: &[IpAddr], own: SocketAddr) -> Result<bool, ApiError> {
    let resource = &rkube_api::kinds::endpointslice::RESOURCE;
    let address_type = if own.is_ipv4() { "IPv4" } else { "IPv6" };
    let endpoints: Vec<Value> = ips
        .iter()
        .filter(|ip| ip.is_ipv4() == own.is_ipv4())
        .map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}}))
        .collect();
    let endpoints = json!(endpoints);
    let ports = json!([{"name": "https", "port": own.port(), "protocol": "TCP"}]);
    let req = request(resource, "default", Some(NAME));
    match rest::get(state, &req, NAME).await {
        Ok(current) if current["endpoints"] == endpoints && current["ports"] == ports => Ok(false),
        Ok(_) => {
            rest::guaranteed_update(state, &req, NAME, None, &rest::WriteOptions::default(), |current| {
                let mut updated = current.clone();
                updated["endpoints"] = endpoints.clone();
                updated["ports"] = ports.clone();
                Ok(updated)
            })
            .await?;
            Ok(true)
        }
        Err(ApiError::NotFound(_)) => {
            let slice = json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {"name": NAME, "namespace": "default",
                             "labels": {"kubernetes.io/service-name": NAME,
                                        "endpointslice.kubernetes.io/managed-by": "rkube-apiserver"}},
                "addressType": address_type,
                "endpoints": endpoints,
                "ports": ports,
            });
            match rest::create(state, &request(resource, "default", None), slice, &rest::WriteOptions::default()).await
            {
                Ok(_) | Err(ApiError::AlreadyExists(_)) => Ok(true),
                Err(error) => Err(error),
            }
        }
        Err(error) => Err(error),
    }
}

fn request(resource: &'static ResourceDef, namespace: &str, name: Option<&str>) -> ResourceRequest {
    ResourceRequest { resource, namespace: Some(namespace.into()), name: name.map(String::from), subresource: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::testing::TestApi;

    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";
    const ENDPOINTS: &str = "/api/v1/namespaces/default/endpoints/kubernetes";
    const SLICE: &str = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes";

    fn address(text: &str) -> SocketAddr {
        text.parse().expect("a socket address")
    }

    async fn api() -> TestApi {
        TestApi::start_with(Config { advertise: Some(address("10.0.0.2:6443")), ..Config::default() }).await
    }

    /// Another apiserver's Lease, renewed `ago` before now.
    async fn lease(api: &TestApi, advertised: &str, ago: Duration) {
        let renewed = Timestamp::now() - SignedDuration::try_from(ago).expect("a short duration");
        let name = lease_name(address(advertised));
        api.create(
            LEASES,
            json!({"metadata": {"name": name, "labels": {IDENTITY_LABEL: IDENTITY},
                                "annotations": {ADVERTISE_ANNOTATION: advertised}},
                   "spec": {"holderIdentity": name, "leaseDurationSeconds": 15,
                            "renewTime": micro_time(renewed).expect("a time")}}),
        )
        .await;
    }

    fn ips(endpoints: &Value) -> Vec<&str> {
        let addresses = endpoints["subsets"][0]["addresses"].as_array().map(Vec::as_slice).unwrap_or_default();
        addresses.iter().filter_map(|address| address["ip"].as_str()).collect()
    }

    fn slice_ips(slice: &Value) -> Vec<&str> {
        let endpoints = slice["endpoints"].as_array().map(Vec::as_slice).unwrap_or_default();
        endpoints.iter().filter_map(|endpoint| endpoint["addresses"][0].as_str()).collect()
    }

    #[test]
    fn lease_names_spell_the_address_with_dashes() {
        assert_eq!(lease_name(address("10.250.0.10:6443")), "apiserver-10-250-0-10-6443");
        assert_eq!(lease_name(address("[fd00::1]:443")), "apiserver-fd00--1-443");
    }

    #[test]
    fn lease_durations_are_whole_seconds_rounded_up() {
        assert_eq!(lease_duration_seconds(Duration::from_secs(15)), 15);
        assert_eq!(lease_duration_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(lease_duration_seconds(Duration::from_millis(10)), 1);
    }

    #[tokio::test]
    async fn the_endpoints_name_the_unexpired_leases_sorted_with_this_apiservers_port() {
        let api = api().await;
        lease(&api, "10.0.0.3:6443", Duration::from_secs(1)).await;
        lease(&api, "10.0.0.1:6443", Duration::from_secs(1)).await;
        lease(&api, "10.0.0.9:6443", Duration::from_secs(60)).await;
        ensure(&api.state, address("10.0.0.2:6443")).await.expect("reconciled");

        let endpoints = api.get_ok(ENDPOINTS).await;
        assert_eq!(ips(&endpoints), ["10.0.0.1", "10.0.0.2", "10.0.0.3"], "{endpoints}");
        assert_eq!(endpoints["subsets"][0]["ports"], json!([{"name": "https", "port": 6443, "protocol": "TCP"}]));
        assert_eq!(endpoints["metadata"]["labels"][SKIP_MIRROR], "true", "{endpoints}");
        let slice = api.get_ok(SLICE).await;
        assert_eq!(slice_ips(&slice), ["10.0.0.1", "10.0.0.2", "10.0.0.3"], "{slice}");
        let own = api.get_ok(&format!("{LEASES}/apiserver-10-0-0-2-6443")).await;
        assert_eq!(
            (&own["spec"]["holderIdentity"], &own["spec"]["leaseDurationSeconds"]),
            (&json!("apiserver-10-0-0-2-6443"), &json!(15)),
            "{own}"
        );
        assert_eq!(own["metadata"]["annotations"][ADVERTISE_ANNOTATION], "10.0.0.2:6443", "{own}");
        assert!(api.is_gone(&format!("{LEASES}/apiserver-10-0-0-9-6443")).await, "the expired Lease is deleted");
    }

    #[tokio::test]
    async fn a_round_with_nothing_changed_writes_neither_endpoints_nor_slice() {
        let api = api().await;
        lease(&api, "10.0.0.1:6443", Duration::ZERO).await;
        let own = address("10.0.0.2:6443");
        ensure(&api.state, own).await.expect("reconciled");
        let versions = |endpoints: &Value, slice: &Value| {
            (endpoints["metadata"]["resourceVersion"].clone(), slice["metadata"]["resourceVersion"].clone())
        };
        let before = versions(&api.get_ok(ENDPOINTS).await, &api.get_ok(SLICE).await);
        let renewed = api.get_ok(&format!("{LEASES}/{}", lease_name(own))).await;

        reconcile(&api.state, own).await.expect("reconciled");
        let after = versions(&api.get_ok(ENDPOINTS).await, &api.get_ok(SLICE).await);
        assert_eq!(before, after, "no write when the stored objects already agree");
        // Decided before any write is tried, not only by the update finding nothing to change.
        let ips = [own.ip(), "10.0.0.1".parse().expect("an IP")];
        let mut sorted = ips;
        sorted.sort_unstable();
        assert!(!write_endpoints_object(&api.state, &sorted, 6443).await.expect("compared"));
        assert!(!write_slice(&api.state, &sorted, own).await.expect("compared"));
        let renewed_again = api.get_ok(&format!("{LEASES}/{}", lease_name(own))).await;
        assert_ne!(renewed["spec"]["renewTime"], renewed_again["spec"]["renewTime"], "the Lease is renewed");
    }

    #[tokio::test]
    async fn an_apiserver_that_leaves_takes_its_lease_and_address_out_at_once() {
        let api = api().await;
        lease(&api, "10.0.0.1:6443", Duration::ZERO).await;
        let own = address("10.0.0.2:6443");
        ensure(&api.state, own).await.expect("reconciled");
        assert_eq!(ips(&api.get_ok(ENDPOINTS).await), ["10.0.0.1", "10.0.0.2"]);

        remove(&api.state, own).await.expect("removed");
        assert!(api.is_gone(&format!("{LEASES}/{}", lease_name(own))).await);
        assert_eq!(ips(&api.get_ok(ENDPOINTS).await), ["10.0.0.1"]);
        assert_eq!(slice_ips(&api.get_ok(SLICE).await), ["10.0.0.1"]);
    }

    #[tokio::test]
    async fn the_last_apiserver_to_leave_leaves_the_endpoints_as_they_are() {
        let api = api().await;
        let own = address("10.0.0.2:6443");
        ensure(&api.state, own).await.expect("reconciled");

        remove(&api.state, own).await.expect("removed");
        assert!(api.is_gone(&format!("{LEASES}/{}", lease_name(own))).await);
        assert_eq!(ips(&api.get_ok(ENDPOINTS).await), ["10.0.0.2"], "not erased: Kubernetes' rule");
    }

    #[tokio::test]
    async fn a_stopped_apiserver_comes_back_at_its_next_round() {
        let api = api().await;
        lease(&api, "10.0.0.1:6443", Duration::ZERO).await;
        let own = address("10.0.0.2:6443");
        ensure(&api.state, own).await.expect("reconciled");
        remove(&api.state, own).await.expect("removed");

        reconcile(&api.state, own).await.expect("reconciled");
        assert_eq!(ips(&api.get_ok(ENDPOINTS).await), ["10.0.0.1", "10.0.0.2"]);
        api.get_ok(&format!("{LEASES}/{}", lease_name(own))).await;
    }
}
