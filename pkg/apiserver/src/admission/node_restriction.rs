//! `NodeRestriction`: a kubelet (`system:node:<name>`) writes only what is its own, as
//! Kubernetes' admission plugin of that name:
//! - its own Node (and its status), never the `node-restriction.kubernetes.io/` labels;
//! - the status of pods bound to it, and their deletion; no pods of its own making
//!   (Kubernetes allows mirror pods, which rkube's kubelet does not create);
//! - its own Lease in `kube-node-lease`;
//! - tokens (`serviceaccounts/token`) bound to a pod that runs on it.
//!
//! With the Node authorizer this closes what the issue called SSRF: only a node's own
//! kubelet sets the addresses the apiserver dials for its logs and exec.
//!
//! Other users pass untouched; so does the apiserver's own work.

use rkube_api::kinds::{node, pod};
use serde_json::Value;

use crate::ApiState;
use crate::authorization::current_user;
use crate::authorization::node::node_of;
use crate::error::{ApiError, Target};
use crate::metadata::from_storage;
use crate::request::ResourceRequest;

/// The label prefix a kubelet may not set or change on its Node.
pub const RESTRICTED_LABEL_PREFIX: &str = "node-restriction.kubernetes.io/";
/// The namespace of the node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

fn forbidden(req: &ResourceRequest, name: &str, why: String) -> ApiError {
    ApiError::Forbidden(format!("{} {name:?} is forbidden: {why}", Target::new(req.resource, name).qualified()))
}

fn text<'v>(object: &'v Value, pointer: &str) -> &'v str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// The labels under [`RESTRICTED_LABEL_PREFIX`], as (key, value).
fn restricted_labels(object: Option<&Value>) -> Vec<(String, String)> {
    let labels = object.and_then(|o| o.pointer("/metadata/labels")).and_then(Value::as_object);
    labels
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(RESTRICTED_LABEL_PREFIX))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

/// Admits a TokenRequest for the ServiceAccount `name`, bound to a pod on `bound_node`
/// (`None`: bound to no pod): a kubelet asks only for tokens of pods bound to it.
///
/// # Errors
/// 403 when a kubelet asks for any other token.
pub fn admit_token_request(req: &ResourceRequest, name: &str, bound_node: Option<&str>) -> Result<(), ApiError> {
    let Some(user) = current_user() else { return Ok(()) };
    let Some(node_name) = node_of(&user) else { return Ok(()) };
    match bound_node {
        Some(node) if node == node_name => Ok(()),
        Some(_) => Err(forbidden(req, name, format!("node {node_name:?} can only get tokens for pods bound to it"))),
        None => Err(forbidden(req, name, format!("node {node_name:?} can only get tokens bound to a pod"))),
    }
}

/// Admits the write of `object` (a create when `old` is `None`).
///
/// # Errors
/// 403 when a kubelet writes what is not its own.
pub fn admit_write(req: &ResourceRequest, object: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let Some(user) = current_user() else { return Ok(()) };
    let Some(node_name) = node_of(&user) else { return Ok(()) };
    let name = text(object, "/metadata/name");
    match (req.resource.group, req.resource.plural) {
        ("", "nodes") => {
            if name != node_name {
                return Err(forbidden(req, name, format!("node {node_name:?} is not allowed to modify node {name:?}")));
            }
            let (before, after) = (restricted_labels(old), restricted_labels(Some(object)));
            let mut changed: Vec<String> =
                after.iter().filter(|l| !before.contains(l)).map(|(k, _)| k.clone()).collect();
            changed.extend(before.iter().filter(|l| !after.contains(l)).map(|(k, _)| k.clone()));
            changed.sort();
            changed.dedup();
            if !changed.is_empty() {
                return Err(forbidden(req, name, format!("is not allowed to modify labels: {}", changed.join(", "))));
            }
        }
        ("", "pods") => match old {
            None => {
                return Err(forbidden(
                    req,
                    name,
                    format!(
                        "pod does not have \"kubernetes.io/config.mirror\" annotation, node {node_name:?} can only create mirror pods"
                    ),
                ));
            }
            Some(old) if text(old, "/spec/nodeName") != node_name => {
                return Err(forbidden(
                    req,
                    name,
                    format!("node {node_name:?} can only update pod status for pods with spec.nodeName set to itself"),
                ));
            }
            Some(_) => {}
        },
        ("coordination.k8s.io", "leases")
            if name != node_name || req.namespace.as_deref() != Some(NODE_LEASE_NAMESPACE) =>
        {
            return Err(forbidden(
                req,
                name,
                "can only access node lease with the same name as the requesting node".into(),
            ));
        }
        _ => {}
    }
    Ok(())
}

/// Admits the deletion of `name`.
///
/// # Errors
/// 403 when a kubelet deletes what is not its own; etcd errors while reading a pod.
pub async fn admit_delete(state: &ApiState, req: &ResourceRequest, name: &str) -> Result<(), ApiError> {
    let Some(user) = current_user() else { return Ok(()) };
    let Some(node_name) = node_of(&user) else { return Ok(()) };
    if *req.resource == node::RESOURCE && name != node_name {
        return Err(forbidden(req, name, format!("node {node_name:?} is not allowed to modify node {name:?}")));
    }
    if *req.resource == pod::RESOURCE {
        let key = state.keys.object(req.resource.plural, req.namespace.as_deref(), name);
        let kv = state.store.get(&key).await.map_err(|e| ApiError::from_storage(Target::new(req.resource, name), e))?;
        if text(&from_storage(&kv)?, "/spec/nodeName") != node_name {
            return Err(forbidden(
                req,
                name,
                format!("node {node_name:?} can only delete pods with spec.nodeName set to itself"),
            ));
        }
    }
    if (req.resource.group, req.resource.plural) == ("coordination.k8s.io", "leases")
        && (name != node_name || req.namespace.as_deref() != Some(NODE_LEASE_NAMESPACE))
    {
        return Err(forbidden(
            req,
            name,
            "can only access node lease with the same name as the requesting node".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn restricted_labels_are_read_from_metadata() {
        let node = json!({"metadata": {"labels": {"node-restriction.kubernetes.io/zone": "a", "app": "x"}}});
        assert_eq!(
            restricted_labels(Some(&node)),
            vec![("node-restriction.kubernetes.io/zone".to_string(), "a".to_string())]
        );
        assert!(restricted_labels(None).is_empty());
    }
}
