//! `metrics.k8s.io/v1beta1`: CPU and memory of nodes and pods, for `kubectl top` (what
//! metrics-server serves on a Kubernetes cluster, through the aggregation layer).
//!
//! Served by the apiserver itself, without a store: each request lists the Nodes or Pods it
//! asks for (selectors as for any list), asks the kubelets concerned for their
//! `/stats/summary` at once (over the same authenticated connection as logs and exec, 5 s
//! each at most) and answers `NodeMetrics` / `PodMetrics` built from them: CPU as the
//! kubelet's `usageNanoCores` (`"123456n"`), memory as its working set (`"1234Ki"`),
//! `timestamp` the kubelet's reading and `window` the span it measured over. A node whose
//! kubelet does not answer, and a pod it reports no stats for (a hollow node's, or one not
//! running yet), are left out of lists and a 404 when asked for by name, as metrics-server
//! does; `kubectl top` then says its metrics are not available yet.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::ApiState;
use crate::error::{ApiError, Target};
use crate::request::{Query, ResourceRequest};
use crate::rest;

/// The group version served.
pub const GROUP_VERSION: &str = "metrics.k8s.io/v1beta1";

/// The resources of the group, as discovery lists them: (plural, kind, namespaced).
pub const RESOURCES: [(&str, &str, bool); 2] = [("nodes", "NodeMetrics", false), ("pods", "PodMetrics", true)];

/// How long one kubelet may take to answer.
const KUBELET_TIMEOUT: Duration = Duration::from_secs(5);

/// The window a kubelet's CPU rate is measured over (its `stats::WINDOW`).
const WINDOW: &str = "1s";

/// GET `/apis/metrics.k8s.io/v1beta1/nodes`.
pub async fn list_nodes(State(state): State<Arc<ApiState>>, RawQuery(raw): RawQuery) -> Response {
    respond(node_metrics(&state, None, &Query::parse(raw.as_deref())).await.map(|items| list("NodeMetricsList", items)))
}

/// GET `/apis/metrics.k8s.io/v1beta1/nodes/{name}`.
pub async fn get_node(State(state): State<Arc<ApiState>>, Path(name): Path<String>) -> Response {
    let found = node_metrics(&state, Some(&name), &Query::parse(None)).await;
    respond(found.and_then(|items| one(items, "nodes", &name)))
}

/// GET `/apis/metrics.k8s.io/v1beta1/pods` (every namespace).
pub async fn list_all_pods(State(state): State<Arc<ApiState>>, RawQuery(raw): RawQuery) -> Response {
    let found = pod_metrics(&state, None, None, &Query::parse(raw.as_deref())).await;
    respond(found.map(|items| list("PodMetricsList", items)))
}

/// GET `/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods`.
pub async fn list_pods(
    State(state): State<Arc<ApiState>>,
    Path(namespace): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let found = pod_metrics(&state, Some(&namespace), None, &Query::parse(raw.as_deref())).await;
    respond(found.map(|items| list("PodMetricsList", items)))
}

/// GET `/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/{name}`.
pub async fn get_pod(State(state): State<Arc<ApiState>>, Path((namespace, name)): Path<(String, String)>) -> Response {
    let found = pod_metrics(&state, Some(&namespace), Some(&name), &Query::parse(None)).await;
    respond(found.and_then(|items| one(items, "pods", &name)))
}

fn respond(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(body) => axum::Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": GROUP_VERSION, "metadata": {}, "items": items})
}

/// The only item, or the 404 metrics-server answers for an object without metrics.
fn one(items: Vec<Value>, resource: &str, name: &str) -> Result<Value, ApiError> {
    let kind = RESOURCES.iter().find(|(plural, ..)| *plural == resource).map_or("", |(_, kind, _)| *kind);
    let mut item = items.into_iter().next().ok_or_else(|| {
        ApiError::NotFound(Target { group: "metrics.k8s.io", resource: resource.into(), kind, name: name.into() })
    })?;
    item["kind"] = kind.into();
    item["apiVersion"] = GROUP_VERSION.into();
    Ok(item)
}

/// The stored objects of `resource` that a request selects: the one named `name`, or the list
/// filtered by the query's selectors.
async fn select(
    state: &ApiState,
    resource: &'static rkube_api::registry::ResourceDef,
    namespace: Option<&str>,
    name: Option<&str>,
    query: &Query,
) -> Result<Vec<Value>, ApiError> {
    let req = ResourceRequest {
        resource,
        namespace: namespace.map(String::from),
        name: name.map(String::from),
        subresource: None,
    };
    if let Some(name) = name {
        return match rest::get(state, &req, name).await {
            Ok(object) => Ok(vec![object]),
            Err(ApiError::NotFound(_)) => Ok(Vec::new()),
            Err(other) => Err(other),
        };
    }
    let listed = rest::list(state, &req, query).await?;
    Ok(listed.items.iter().filter_map(|item| serde_json::from_slice(&item.json).ok()).collect())
}

/// `NodeMetrics` of the selected nodes whose kubelets answered.
async fn node_metrics(state: &ApiState, name: Option<&str>, query: &Query) -> Result<Vec<Value>, ApiError> {
    let nodes = select(state, &rkube_api::kinds::node::RESOURCE, None, name, query).await?;
    let summaries = summaries(state, &nodes).await;
    Ok(nodes
        .iter()
        .filter_map(|node| {
            let node_name = node.pointer("/metadata/name")?.as_str()?;
            let stats = &summaries.get(node_name)?["node"];
            Some(json!({
                "metadata": metadata(node),
                "timestamp": stats.pointer("/cpu/time")?,
                "window": WINDOW,
                "usage": usage(stats)?,
            }))
        })
        .collect())
}

/// `PodMetrics` of the selected pods whose kubelets reported them.
async fn pod_metrics(
    state: &ApiState,
    namespace: Option<&str>,
    name: Option<&str>,
    query: &Query,
) -> Result<Vec<Value>, ApiError> {
    let pods = select(state, &rkube_api::kinds::pod::RESOURCE, namespace, name, query).await?;
    let node_names: Vec<&str> =
        pods.iter().filter_map(|pod| pod.pointer("/spec/nodeName").and_then(Value::as_str)).collect();
    let mut nodes = Vec::new();
    for node_name in node_names.iter().copied().collect::<std::collections::BTreeSet<_>>() {
        nodes.extend(
            select(state, &rkube_api::kinds::node::RESOURCE, None, Some(node_name), &Query::parse(None)).await?,
        );
    }
    let summaries = summaries(state, &nodes).await;
    let stats_by_uid: HashMap<&str, &Value> = summaries
        .values()
        .filter_map(|summary| summary["pods"].as_array())
        .flatten()
        .filter_map(|pod| Some((pod.pointer("/podRef/uid")?.as_str()?, pod)))
        .collect();
    Ok(pods
        .iter()
        .filter_map(|pod| {
            let stats = stats_by_uid.get(pod.pointer("/metadata/uid")?.as_str()?)?;
            let containers: Option<Vec<Value>> = stats["containers"]
                .as_array()?
                .iter()
                .map(|container| Some(json!({"name": container["name"], "usage": usage(container)?})))
                .collect();
            Some(json!({
                "metadata": metadata(pod),
                "timestamp": stats.pointer("/cpu/time")?,
                "window": WINDOW,
                "containers": containers?,
            }))
        })
        .collect())
}

/// The metadata of a metrics object: its object's name, namespace, labels and creation time.
fn metadata(object: &Value) -> Value {
    let mut metadata = json!({});
    for key in ["name", "namespace", "labels", "creationTimestamp"] {
        if let Some(value) = object.pointer(&format!("/metadata/{key}")) {
            metadata[key] = value.clone();
        }
    }
    metadata
}

/// `{"cpu": "<n>n", "memory": "<n>Ki"}` from a summary's stats, when it has a CPU rate.
fn usage(stats: &Value) -> Option<Value> {
    let nano_cores = stats.pointer("/cpu/usageNanoCores")?.as_u64()?;
    let working_set = stats.pointer("/memory/workingSetBytes").and_then(Value::as_u64).unwrap_or(0);
    Some(json!({"cpu": format!("{nano_cores}n"), "memory": format!("{}Ki", working_set / 1024)}))
}

/// The `/stats/summary` of each node's kubelet that answered in time, by node name; all asked
/// at once.
async fn summaries(state: &ApiState, nodes: &[Value]) -> BTreeMap<String, Value> {
    let asks = nodes.iter().filter_map(|node| {
        let name = node.pointer("/metadata/name")?.as_str()?.to_string();
        let base = crate::subresource::log::node_kubelet_url(state, node)?;
        Some(async move {
            let response =
                tokio::time::timeout(KUBELET_TIMEOUT, state.kubelet.get(format!("{base}/stats/summary")).send()).await;
            let summary = match response {
                Ok(Ok(response)) if response.status().is_success() => response.json::<Value>().await.ok(),
                Ok(Ok(response)) => {
                    tracing::debug!(node = %name, status = %response.status(), "the kubelet refused /stats/summary");
                    None
                }
                Ok(Err(error)) => {
                    tracing::debug!(node = %name, %error, "cannot reach the kubelet for /stats/summary");
                    None
                }
                Err(_) => None,
            };
            summary.map(|summary| (name, summary))
        })
    });
    futures::future::join_all(asks).await.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_nanocores_and_kibibytes_of_working_set() {
        let stats = json!({"cpu": {"usageNanoCores": 1_500_000, "time": "t"}, "memory": {"workingSetBytes": 10_240}});
        assert_eq!(usage(&stats), Some(json!({"cpu": "1500000n", "memory": "10Ki"})));
        assert_eq!(usage(&json!({"cpu": {"usageCoreNanoSeconds": 5}})), None, "no rate, no metrics");
    }

    #[test]
    fn metadata_keeps_what_kubectl_top_selects_and_shows() {
        let pod = json!({"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
            "uid": "u", "resourceVersion": "5", "creationTimestamp": "2026-01-01T00:00:00Z"}});
        assert_eq!(
            metadata(&pod),
            json!({"name": "web", "namespace": "default", "labels": {"app": "web"}, "creationTimestamp": "2026-01-01T00:00:00Z"})
        );
    }
}
