//! `ServiceAccount` admission: every new pod runs as a ServiceAccount and, unless it opts
//! out, gets that account's credentials mounted, as Kubernetes' admission plugin of that name.
//!
//! On the create of a pod it:
//! - sets `spec.serviceAccountName` to `default` when the pod names none;
//! - adds the projected volume `kube-api-access-<random>` — a bound token
//!   (`serviceAccountToken`, 3607 s, refreshed by the kubelet), the cluster CA
//!   (`ca.crt` from the ConfigMap `kube-root-ca.crt`) and the pod's `namespace` — and mounts
//!   it read-only at [`MOUNT_PATH`] in every container and init container, so in-cluster
//!   clients (client-go's `rest.InClusterConfig`, the Python client's
//!   `load_incluster_config`) find their credentials where they look.
//!
//! Nothing is mounted when the pod or its ServiceAccount sets
//! `automountServiceAccountToken: false`, when a container already mounts something at
//! [`MOUNT_PATH`], or when this apiserver issues no tokens (no
//! `--service-account-signing-key-file`): a token volume it could never fill would keep
//! every pod from starting.
//!
//! Unlike Kubernetes, a pod naming a ServiceAccount that does not exist (yet) is admitted:
//! the kubelet's token request fails until it exists, and the pod waits.

use serde_json::{Value, json};

use crate::ApiState;
use crate::error::ApiError;
use crate::request::ResourceRequest;

/// Where the token, `ca.crt` and `namespace` appear in every container.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The ServiceAccount of a pod that names none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// The prefix of the projected volume's name.
pub const VOLUME_PREFIX: &str = "kube-api-access-";
/// The ConfigMap every namespace holds the cluster CA in (the root CA publisher's).
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// The projected token's lifetime: an hour plus seven seconds, as Kubernetes (the extra
/// seconds tell its metrics a kubelet-refreshed token from others).
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

/// Sets the ServiceAccount of a pod being created and mounts its credentials (see the
/// module docs). Other resources pass untouched.
///
/// # Errors
/// When the ServiceAccount cannot be read (storage unavailable).
pub async fn admit_create(state: &ApiState, req: &ResourceRequest, pod: &mut Value) -> Result<(), ApiError> {
    if (req.resource.group, req.resource.plural) != ("", "pods") || !pod.is_object() {
        return Ok(());
    }
    if !pod.get("spec").is_some_and(Value::is_object) {
        return Ok(()); // validation says what is wrong
    }
    let spec = &mut pod["spec"];
    let account = match spec.get("serviceAccountName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        Some(name) => name.to_string(),
        None => {
            // The deprecated `serviceAccount` field, then `default`.
            let name = spec.get("serviceAccount").and_then(Value::as_str).filter(|n| !n.is_empty());
            let name = name.unwrap_or(DEFAULT_SERVICE_ACCOUNT).to_string();
            spec["serviceAccountName"] = json!(name);
            name
        }
    };
    if state.config.service_account_tokens.is_none() || !automounts(state, req, spec, &account).await? {
        return Ok(());
    }
    mount_credentials(spec, &random_suffix());
    Ok(())
}

/// Whether the pod's token is to be mounted: the pod's `automountServiceAccountToken`
/// wins, then its ServiceAccount's; the default is yes.
async fn automounts(state: &ApiState, req: &ResourceRequest, spec: &Value, account: &str) -> Result<bool, ApiError> {
    if let Some(pod_says) = spec.get("automountServiceAccountToken").and_then(Value::as_bool) {
        return Ok(pod_says);
    }
    match super::get_in(state, &rkube_api::kinds::serviceaccount::RESOURCE, req.namespace.as_deref(), account).await {
        Ok(sa) => Ok(sa.get("automountServiceAccountToken").and_then(Value::as_bool).unwrap_or(true)),
        Err(ApiError::NotFound(_)) => Ok(true),
        Err(error) => Err(error),
    }
}

/// Adds the `kube-api-access-<suffix>` volume to `spec` and mounts it in every container
/// that does not already mount something at [`MOUNT_PATH`]; does nothing when one does.
pub fn mount_credentials(spec: &mut Value, suffix: &str) {
    let containers = ["containers", "initContainers"];
    let mounts_already = containers.iter().any(|field| {
        spec.get(*field).and_then(Value::as_array).into_iter().flatten().any(|container| {
            let mounts = container.get("volumeMounts").and_then(Value::as_array);
            mounts.into_iter().flatten().any(|m| m.get("mountPath").and_then(Value::as_str) == Some(MOUNT_PATH))
        })
    });
    if mounts_already {
        return;
    }
    let name = format!("{VOLUME_PREFIX}{suffix}");
    let volume = json!({
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ]
        }
    });
    push(spec, "volumes", volume);
    for field in containers {
        for container in spec.get_mut(field).and_then(Value::as_array_mut).into_iter().flatten() {
            if container.is_object() {
                push(container, "volumeMounts", json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH}));
            }
        }
    }
}

/// Appends `item` to the array `object[field]`, making the array when it is missing.
fn push(object: &mut Value, field: &str, item: Value) {
    match object.get_mut(field).and_then(Value::as_array_mut) {
        Some(items) => items.push(item),
        None => object[field] = json!([item]),
    }
}

/// Five characters of the alphabet Kubernetes' generated names use.
fn random_suffix() -> String {
    crate::rest::generated_name("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_mounts_the_credentials_read_only() {
        let mut spec = json!({"containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "initContainers": [{"name": "init"}], "volumes": [{"name": "data", "emptyDir": {}}]});
        mount_credentials(&mut spec, "x7k2p");
        let volumes = spec["volumes"].as_array().expect("volumes");
        assert_eq!(volumes.len(), 2);
        assert_eq!(volumes[1]["name"], "kube-api-access-x7k2p");
        let sources = volumes[1]["projected"]["sources"].as_array().expect("sources");
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"], "metadata.namespace");
        for container in [&spec["containers"][0], &spec["containers"][1], &spec["initContainers"][0]] {
            let mounts = container["volumeMounts"].as_array().expect("mounts");
            let mount = mounts.last().expect("a mount");
            assert_eq!(mount, &json!({"name": "kube-api-access-x7k2p", "readOnly": true, "mountPath": MOUNT_PATH}));
        }
        assert_eq!(spec["containers"][1]["volumeMounts"][0]["name"], "data", "existing mounts stay");
    }

    #[test]
    fn a_pod_mounting_its_own_credentials_is_left_alone() {
        let own = json!({"name": "mine", "mountPath": MOUNT_PATH});
        let mut spec = json!({"containers": [{"name": "a", "volumeMounts": [own]}], "volumes": [{"name": "mine", "emptyDir": {}}]});
        let before = spec.clone();
        mount_credentials(&mut spec, "abcde");
        assert_eq!(spec, before);
    }
}
