//! The `kubernetes` Service in `default`: how pods reach the apiserver, at the first IP of the
//! Service range (`10.96.0.1` by default), port 443, with Endpoints and an EndpointSlice naming
//! the apiservers' advertised addresses and secure port. Made at start-up, as the Kubernetes apiserver does;
//! every apiserver adds its own address to the Endpoints.

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::ApiState;
use crate::error::ApiError;
use crate::request::ResourceRequest;
use crate::rest;

/// Makes the `kubernetes` Service and adds `advertised` to its Endpoints.
pub async fn ensure(state: &ApiState, advertised: SocketAddr) -> Result<(), ApiError> {
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": state.config.services.cluster_ips.first().to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": advertised.port()}],
            "sessionAffinity": "None",
        },
    });
    let services = request(&rkube_api::kinds::service::RESOURCE, None);
    match rest::get(state, &request(&rkube_api::kinds::service::RESOURCE, Some("kubernetes")), "kubernetes").await {
        Ok(_) => {}
        Err(ApiError::NotFound(_)) => {
            match rest::create(state, &services, service, &rest::WriteOptions::default()).await {
                Ok(_) | Err(ApiError::AlreadyExists(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Err(error) => return Err(error),
    }
    let address = json!({"ip": advertised.ip().to_string()});
    let port = json!({"name": "https", "port": advertised.port(), "protocol": "TCP"});
    let endpoints = &rkube_api::kinds::endpoints::RESOURCE;
    let created = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [address], "ports": [port]}],
    });
    let made = match rest::create(state, &request(endpoints, None), created, &rest::WriteOptions::default()).await {
        Ok(_) => true,
        Err(ApiError::AlreadyExists(_)) => false,
        Err(error) => return Err(error),
    };
    let req = request(endpoints, Some("kubernetes"));
    if !made {
        rest::guaranteed_update(state, &req, "kubernetes", None, &rest::WriteOptions::default(), |current| {
            let mut updated = current.clone();
            let subsets = updated["subsets"].as_array().cloned().unwrap_or_default();
            let mut addresses: Vec<Value> =
                subsets.first().and_then(|subset| subset["addresses"].as_array().cloned()).unwrap_or_default();
            if !addresses.iter().any(|known| known["ip"] == address["ip"]) {
                addresses.push(address.clone());
            }
            updated["subsets"] = json!([{"addresses": addresses, "ports": [port.clone()]}]);
            Ok(updated)
        })
        .await?;
    }
    // The same as an EndpointSlice, which the proxies read (the Service has no selector, so
    // no controller writes it).
    let slices = &rkube_api::kinds::endpointslice::RESOURCE;
    let endpoint = json!({"addresses": [advertised.ip().to_string()], "conditions": {"ready": true}});
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes",
                                "endpointslice.kubernetes.io/managed-by": "rkube-apiserver"}},
        "addressType": "IPv4",
        "endpoints": [endpoint],
        "ports": [{"name": "https", "port": advertised.port(), "protocol": "TCP"}],
    });
    match rest::create(state, &request(slices, None), slice, &rest::WriteOptions::default()).await {
        Ok(_) => return Ok(()),
        Err(ApiError::AlreadyExists(_)) => {}
        Err(error) => return Err(error),
    }
    let req = request(slices, Some("kubernetes"));
    rest::guaranteed_update(state, &req, "kubernetes", None, &rest::WriteOptions::default(), |current| {
        let mut updated = current.clone();
        let mut endpoints = updated["endpoints"].as_array().cloned().unwrap_or_default();
        if !endpoints.iter().any(|known| known["addresses"] == endpoint["addresses"]) {
            endpoints.push(endpoint.clone());
        }
        updated["endpoints"] = json!(endpoints);
        Ok(updated)
    })
    .await?;
    Ok(())
}

fn request(resource: &'static rkube_api::registry::ResourceDef, name: Option<&str>) -> ResourceRequest {
    ResourceRequest { resource, namespace: Some("default".into()), name: name.map(String::from), subresource: None }
}
