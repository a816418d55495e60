//! The Node authorizer (`--authorization-mode=Node`): what a kubelet may do, decided by
//! who it is rather than by RBAC objects, as Kubernetes' `NodeAuthorizer`.
//!
//! A kubelet is a user `system:node:<name>` in the group `system:nodes` (its client
//! certificate says so). It may:
//! - ask TokenReviews and SubjectAccessReviews about the callers of its own API;
//! - read Nodes, pods, Services, Endpoints and Namespaces, write events, and write Nodes,
//!   their status, pod status, pod deletions and Leases ([`node_rules`]); *which* Node,
//!   pod or Lease it may write is NodeRestriction's to decide
//!   ([`crate::admission::node_restriction`]);
//! - read a Secret or ConfigMap only when a pod bound to it uses it (a volume, an `env` or
//!   `envFrom` reference, an image pull secret): a kubelet cannot read the Secrets of pods
//!   that run elsewhere;
//! - read a PersistentVolumeClaim only when a pod bound to it mounts it, and a
//!   PersistentVolume only when such a claim is bound to it;
//! - request a token (`serviceaccounts/token`) only for the ServiceAccount of a pod bound
//!   to it (NodeRestriction checks the token is bound to such a pod).
//!
//! For anything else it has no opinion, and the next mode (RBAC) decides. Other users are
//! never its business.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodSpec};
use rkube_api::kinds::{persistentvolumeclaim, pod};
use serde_json::{Value, json};

use super::Attributes;
use super::rbac::{object, objects, rules_allow};
use crate::ApiState;
use crate::authentication::UserInfo;
use crate::error::ApiError;

/// The group of every kubelet.
pub const NODES_GROUP: &str = "system:nodes";
/// The prefix of a kubelet's user name.
pub const NODE_USER_PREFIX: &str = "system:node:";

/// The node a user is the kubelet of, if it is one.
pub fn node_of(user: &UserInfo) -> Option<&str> {
    user.name.strip_prefix(NODE_USER_PREFIX).filter(|n| !n.is_empty() && user.in_group(NODES_GROUP))
}

/// What every kubelet may do whatever it is about (writes narrowed by NodeRestriction).
pub fn node_rules() -> Vec<Value> {
    let read = ["get", "list", "watch"];
    vec![
        json!({"apiGroups": [""], "resources": ["nodes"], "verbs": ["create", "get", "list", "watch", "patch", "update", "delete"]}),
        json!({"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch", "update"]}),
        json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "create", "delete"]}),
        json!({"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch", "update"]}),
        json!({"apiGroups": [""], "resources": ["services", "endpoints", "namespaces"], "verbs": read}),
        json!({"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]}),
        json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create", "delete", "get", "patch", "update"]}),
        // To authenticate and authorize the callers of its own API.
        json!({"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}),
        json!({"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}),
    ]
}

/// Whether the Node authorizer allows `user` to do `attrs` (`false`: no opinion).
///
/// # Errors
/// When the pods cannot be read.
pub async fn allows(state: &ApiState, user: &UserInfo, attrs: &Attributes) -> Result<bool, ApiError> {
    let Some(node) = node_of(user) else { return Ok(false) };
    if attrs.resource_request
        && attrs.api_group.is_empty()
        && matches!(attrs.resource.as_str(), "secrets" | "configmaps")
    {
        if !matches!(attrs.verb.as_str(), "get" | "list" | "watch")
            || attrs.name.is_empty()
            || !attrs.subresource.is_empty()
        {
            return Ok(false);
        }
        let pods = objects::<Pod>(state, &pod::RESOURCE, Some(&attrs.namespace)).await?;
        return Ok(pods.iter().any(|pod| {
            let spec = pod.spec.as_ref();
            spec.is_some_and(|s| s.node_name.as_deref() == Some(node) && references(s, &attrs.resource, &attrs.name))
        }));
    }
    if attrs.resource_request
        && attrs.api_group.is_empty()
        && attrs.resource == "serviceaccounts"
        && attrs.subresource == "token"
    {
        if attrs.verb != "create" || attrs.name.is_empty() {
            return Ok(false);
        }
        let pods = objects::<Pod>(state, &pod::RESOURCE, Some(&attrs.namespace)).await?;
        return Ok(pods.iter().any(|pod| {
            let spec = pod.spec.as_ref();
            spec.is_some_and(|s| {
                s.node_name.as_deref() == Some(node) && s.service_account_name.as_deref() == Some(&attrs.name)
            })
        }));
    }
    if attrs.resource_request
        && attrs.api_group.is_empty()
        && matches!(attrs.resource.as_str(), "persistentvolumeclaims" | "persistentvolumes")
    {
        if attrs.verb != "get" || attrs.name.is_empty() || !attrs.subresource.is_empty() {
            return Ok(false);
        }
        let claims_namespace = (attrs.resource == "persistentvolumeclaims").then_some(attrs.namespace.as_str());
        let pods = objects::<Pod>(state, &pod::RESOURCE, claims_namespace).await?;
        let claims = pods
            .iter()
            .filter(|pod| pod.spec.as_ref().is_some_and(|s| s.node_name.as_deref() == Some(node)))
            .flat_map(|pod| {
                let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                claims_of(pod).into_iter().map(move |claim| (namespace.clone(), claim))
            });
        if claims_namespace.is_some() {
            return Ok(claims.into_iter().any(|(_, claim)| claim == attrs.name));
        }
        for (namespace, claim) in claims {
            let bound: Option<PersistentVolumeClaim> =
                object(state, &persistentvolumeclaim::RESOURCE, Some(&namespace), &claim).await?;
            if bound.and_then(|c| c.spec).and_then(|s| s.volume_name).is_some_and(|v| v == attrs.name) {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    let rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule> =
        node_rules().into_iter().filter_map(|r| serde_json::from_value(r).ok()).collect();
    Ok(rules_allow(&rules, attrs))
}

/// The claims `pod` mounts (`persistentVolumeClaim` volumes).
fn claims_of(pod: &Pod) -> Vec<String> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    volumes.filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.clone())).collect()
}

/// Whether `spec` uses the Secret or ConfigMap (`resource`) `name`.
pub fn references(spec: &PodSpec, resource: &str, name: &str) -> bool {
    let secret = resource == "secrets";
    let is = |candidate: Option<&str>| candidate == Some(name);
    let volumes = spec.volumes.iter().flatten().any(|v| {
        if secret {
            is(v.secret.as_ref().and_then(|s| s.secret_name.as_deref()))
                || v.projected
                    .iter()
                    .flat_map(|p| p.sources.iter().flatten())
                    .any(|s| is(s.secret.as_ref().map(|x| x.name.as_str())))
        } else {
            is(v.config_map.as_ref().map(|c| c.name.as_str()))
                || v.projected
                    .iter()
                    .flat_map(|p| p.sources.iter().flatten())
                    .any(|s| is(s.config_map.as_ref().map(|x| x.name.as_str())))
        }
    });
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    let env = containers.clone().any(|c| {
        c.env.iter().flatten().filter_map(|e| e.value_from.as_ref()).any(|from| {
            if secret {
                is(from.secret_key_ref.as_ref().map(|r| r.name.as_str()))
            } else {
                is(from.config_map_key_ref.as_ref().map(|r| r.name.as_str()))
            }
        }) || c.env_from.iter().flatten().any(|from| {
            if secret {
                is(from.secret_ref.as_ref().map(|r| r.name.as_str()))
            } else {
                is(from.config_map_ref.as_ref().map(|r| r.name.as_str()))
            }
        })
    });
    let pull = secret && spec.image_pull_secrets.iter().flatten().any(|r| r.name == name);
    volumes || env || pull
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_members_of_system_nodes_named_system_node_are_kubelets() {
        let kubelet = UserInfo { name: "system:node:w1".into(), uid: String::new(), groups: vec![NODES_GROUP.into()] };
        assert_eq!(node_of(&kubelet), Some("w1"));
        let impostor = UserInfo { groups: vec![], ..kubelet.clone() };
        assert_eq!(node_of(&impostor), None);
    }

    #[test]
    fn a_pod_references_the_secrets_and_config_maps_it_mounts_or_reads() {
        let spec: PodSpec = serde_json::from_value(json!({
            "containers": [{"name": "c", "image": "i",
                "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}],
                "envFrom": [{"configMapRef": {"name": "settings"}}]}],
            "volumes": [{"name": "v", "secret": {"secretName": "tls"}},
                        {"name": "p", "projected": {"sources": [{"configMap": {"name": "ca"}}]}}],
            "imagePullSecrets": [{"name": "registry"}]
        }))
        .expect("a pod spec");
        for (resource, name) in [
            ("secrets", "db"),
            ("secrets", "tls"),
            ("secrets", "registry"),
            ("configmaps", "settings"),
            ("configmaps", "ca"),
        ] {
            assert!(references(&spec, resource, name), "{resource}/{name}");
        }
        assert!(!references(&spec, "secrets", "settings"), "a ConfigMap's name is not a Secret");
        assert!(!references(&spec, "configmaps", "other"));
    }
}
