//! `pods/<name>/log`: a container's log, proxied from the kubelet of the pod's node, as the
//! Kubernetes apiserver does it.
//!
//! The apiserver finds the pod's node, takes the kubelet's address from the Node's status
//! (`InternalIP`, else `Hostname`, and `daemonEndpoints.kubeletEndpoint.Port`, 10250 when
//! unset) and streams `GET http://<address>:<port>/containerLogs/<namespace>/<pod>/<container>`
//! back to the client with the same query (`follow`, `tailLines`, `sinceSeconds`,
//! `timestamps`, `previous`, `limitBytes`). With `follow=true` the response streams until
//! the kubelet ends it or the client goes away.

use axum::body::Body;
use axum::response::Response;
use futures::TryStreamExt;
use serde_json::Value;

use crate::ApiState;
use crate::error::{ApiError, Target};
use crate::request::{Query, ResourceRequest};
use crate::rest;

/// Query parameters passed on to the kubelet unchanged.
const FORWARDED: &[&str] =
    &["follow", "tailLines", "sinceSeconds", "sinceTime", "timestamps", "previous", "limitBytes"];

/// The container a log request is for: the named one (an ephemeral one too), or the only one.
pub(crate) fn container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let names: Vec<&str> = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .filter_map(|list| pod.pointer(&format!("/spec/{list}")).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    match requested {
        Some(c) if names.contains(&c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::BadRequest(format!("container {c} is not valid for pod {name}"))),
        None => match pod.pointer("/spec/containers").and_then(Value::as_array).map(Vec::as_slice) {
            Some([only]) => Ok(only.get("name").and_then(Value::as_str).unwrap_or_default().to_string()),
            _ => Err(ApiError::BadRequest(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            ))),
        },
    }
}

/// The kubelet's base URL from a Node object.
pub(crate) fn kubelet_url(node: &Value) -> Option<String> {
    let addresses = node.pointer("/status/addresses").and_then(Value::as_array)?;
    let address = ["InternalIP", "Hostname", "ExternalIP"].iter().find_map(|kind| {
        addresses
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(kind))
            .and_then(|a| a.get("address").and_then(Value::as_str))
    })?;
    let port = node.pointer("/status/daemonEndpoints/kubeletEndpoint/Port").and_then(Value::as_i64).unwrap_or(10250);
    let host = if address.contains(':') { format!("[{address}]") } else { address.to_string() };
    Some(format!("http://{host}:{port}"))
}

/// GET `pods/<name>/log`.
pub async fn proxy(state: &ApiState, req: &ResourceRequest, name: &str, query: &Query) -> Result<Response, ApiError> {
    let pod = rest::get(state, req, name).await?;
    let container = container(&pod, query.get("container"))?;
    let (node_name, base) = pod_kubelet(state, &pod, name).await?;
    let namespace = req.namespace.as_deref().unwrap_or_default();
    let mut url = format!("{base}/containerLogs/{namespace}/{name}/{container}");
    let forwarded: Vec<String> =
        FORWARDED.iter().filter_map(|key| query.get(key).map(|v| format!("{key}={}", encode(v)))).collect();
    if !forwarded.is_empty() {
        url = format!("{url}?{}", forwarded.join("&"));
    }
    let response =
        state.kubelet.get(&url).send().await.map_err(|e| {
            ApiError::Unavailable(format!("cannot reach the kubelet of node {node_name} at {base}: {e}"))
        })?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(match status.as_u16() {
            404 => ApiError::BadRequest(format!("no log for container {container} of pod {name}: {}", text.trim())),
            400 => ApiError::BadRequest(text.trim().to_string()),
            _ => ApiError::Unavailable(format!("the kubelet of node {node_name} answered {status}: {}", text.trim())),
        });
    }
    let stream = response.bytes_stream().map_err(std::io::Error::other);
    Response::builder()
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// The node of `pod` (named `name`) and the base URL of its kubelet, from the Node's status.
pub(crate) async fn pod_kubelet(state: &ApiState, pod: &Value, name: &str) -> Result<(String, String), ApiError> {
    let node_name = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default();
    if node_name.is_empty() {
        return Err(ApiError::BadRequest(format!("pod {name} does not have a host assigned")));
    }
    let nodes = &rkube_api::kinds::node::RESOURCE;
    let node_req =
        ResourceRequest { resource: nodes, namespace: None, name: Some(node_name.into()), subresource: None };
    let node = rest::get(state, &node_req, node_name).await.map_err(|e| match e {
        ApiError::NotFound(_) => ApiError::NotFound(Target::new(nodes, node_name)),
        other => other,
    })?;
    let base = node_kubelet_url(state, &node)
        .ok_or_else(|| ApiError::Unavailable(format!("node {node_name} reports no address for its kubelet")))?;
    Ok((node_name.to_string(), base))
}

/// The base URL the apiserver reaches `node`'s kubelet at: HTTPS when a kubelet client
/// certificate is configured, else plain HTTP.
pub(crate) fn node_kubelet_url(state: &ApiState, node: &Value) -> Option<String> {
    let base = kubelet_url(node)?;
    Some(if state.config.kubelet_tls.is_some() { base.replacen("http://", "https://", 1) } else { base })
}

/// Percent-escapes a query value (`application/x-www-form-urlencoded`).
pub(crate) fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_only_container_is_the_default_and_others_must_be_named() {
        let one = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "main"}]}});
        assert_eq!(container(&one, None).unwrap(), "main");
        assert!(container(&one, Some("other")).is_err());
        let two = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let err = container(&two, None).unwrap_err().to_string();
        assert!(err.contains("choose one of: [a b]"), "{err}");
        assert_eq!(container(&two, Some("b")).unwrap(), "b");
    }

    #[test]
    fn kubelet_address_prefers_the_internal_ip_and_defaults_the_port() {
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "w1"}, {"type": "InternalIP", "address": "10.0.0.2"}]}});
        assert_eq!(kubelet_url(&node).unwrap(), "http://10.0.0.2:10250");
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "w1"}], "daemonEndpoints": {"kubeletEndpoint": {"Port": 10300}}}});
        assert_eq!(kubelet_url(&node).unwrap(), "http://w1:10300");
        assert!(kubelet_url(&json!({})).is_none());
    }
}
