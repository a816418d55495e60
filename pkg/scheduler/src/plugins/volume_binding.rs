//! VolumeBinding: a pod goes only where its PersistentVolumeClaims can be used.
//!
//! Before filtering, the scheduler reads the pod's claims once ([`facts`]):
//! - a claim that does not exist, or is being deleted, makes the pod unschedulable
//!   (`persistentvolumeclaim "data" not found`), as does a claim of an `Immediate` class that
//!   is not bound yet (`pod has unbound immediate PersistentVolumeClaims`);
//! - a bound claim's PersistentVolume brings its node affinity: only nodes it matches pass
//!   (`node(s) had volume node affinity conflict`) — a local volume's pod comes back to the
//!   node that holds its data;
//! - an unbound claim of a `WaitForFirstConsumer` class fits any node: the volume binder makes
//!   or binds its volume where the pod was placed.
//!
//! Not done (Kubernetes' scheduler does it): checking that a static volume able to serve an
//! unbound `WaitForFirstConsumer` claim exists on the node, and writing the
//! `selected-node` annotation itself (the binder derives it from the bound pod).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use rkube_api::placement::volume_fits_node;

use crate::framework::{FilterPlugin, NodeRef, PodInfo, Rejection};

/// What a pod's claims allow, computed once per scheduling attempt.
#[derive(Debug, Clone, Default)]
pub struct VolumeFacts {
    /// Why no node can take the pod now, if so.
    pub unusable: Option<String>,
    /// The bound volumes whose node affinity a node must match.
    pub bound: Vec<Arc<PersistentVolume>>,
}

/// The reason given for a node a bound volume cannot be used on.
pub const CONFLICT: &str = "node(s) had volume node affinity conflict";

/// Reads `pod`'s claims through the lookups (claim by namespace and name, volume and class
/// by name); see the module docs.
pub fn facts(
    pod: &Pod,
    claim: impl Fn(&str, &str) -> Option<Arc<PersistentVolumeClaim>>,
    volume: impl Fn(&str) -> Option<Arc<PersistentVolume>>,
    class: impl Fn(&str) -> Option<Arc<StorageClass>>,
) -> VolumeFacts {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut facts = VolumeFacts::default();
    let claims =
        pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()).filter_map(|v| v.persistent_volume_claim.as_ref());
    for source in claims {
        let name = &source.claim_name;
        let Some(found) = claim(namespace, name).filter(|c| c.metadata.deletion_timestamp.is_none()) else {
            facts.unusable = Some(format!("persistentvolumeclaim \"{name}\" not found"));
            return facts;
        };
        let spec = found.spec.clone().unwrap_or_default();
        match spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
            Some(bound) => match volume(bound) {
                Some(pv) => facts.bound.push(pv),
                None => {
                    facts.unusable = Some(format!("persistentvolume \"{bound}\" of claim \"{name}\" not found"));
                    return facts;
                }
            },
            None => {
                let class_name = spec.storage_class_name.unwrap_or_default();
                let waits = class(&class_name)
                    .and_then(|c| c.volume_binding_mode.clone())
                    .is_some_and(|mode| mode == "WaitForFirstConsumer");
                if !waits {
                    facts.unusable = Some("pod has unbound immediate PersistentVolumeClaims".into());
                    return facts;
                }
            }
        }
    }
    facts
}

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct VolumeBinding;

impl FilterPlugin for VolumeBinding {
    fn name(&self) -> &'static str {
        "VolumeBinding"
    }

    fn filter(&self, pod: &PodInfo, node: NodeRef<'_>) -> Result<(), Rejection> {
        if let Some(why) = &pod.volumes.unusable {
            return Err(vec![why.clone()]);
        }
        if pod.volumes.bound.is_empty() {
            return Ok(());
        }
        let node = node.info;
        let empty = std::collections::BTreeMap::new();
        let labels = node.node.as_ref().and_then(|n| n.metadata.labels.as_ref()).unwrap_or(&empty);
        if pod.volumes.bound.iter().all(|pv| volume_fits_node(pv, labels, &node.name)) {
            Ok(())
        } else {
            Err(vec![CONFLICT.into()])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::NodeInfo;
    use crate::framework::testing::{node, node_info, pod};
    use serde_json::{Value, json};

    fn object<T: serde::de::DeserializeOwned>(value: Value) -> Arc<T> {
        Arc::new(serde_json::from_value(value).expect("object"))
    }

    fn claims_pod() -> PodInfo {
        pod(json!({"metadata": {"namespace": "default"}, "spec": {"containers": [{"name": "c"}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}))
    }

    fn with(claim: Option<Value>, volume: Option<Value>, mode: &str) -> PodInfo {
        let mut info = claims_pod();
        let claim = claim.map(object::<PersistentVolumeClaim>);
        let volume = volume.map(object::<PersistentVolume>);
        let class = object::<StorageClass>(
            json!({"metadata": {"name": "local-path"}, "provisioner": "p", "volumeBindingMode": mode}),
        );
        info.volumes = facts(&info.pod.clone(), |_, _| claim.clone(), |_| volume.clone(), |_| Some(class.clone()));
        info
    }

    fn on(name: &str) -> NodeInfo {
        node_info(node(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}})), vec![])
    }

    #[test]
    fn a_bound_local_volume_keeps_its_pod_on_its_node() {
        let claim =
            json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pv1", "storageClassName": "local-path"}});
        let volume = json!({"metadata": {"name": "pv1"}, "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["w1"]}]}]}}}});
        let info = with(Some(claim), Some(volume), "WaitForFirstConsumer");
        assert!(VolumeBinding.filter(&info, on("w1").view()).is_ok());
        assert_eq!(VolumeBinding.filter(&info, on("w2").view()), Err(vec![CONFLICT.to_string()]));
    }

    #[test]
    fn missing_and_unbound_immediate_claims_fit_nowhere_but_waiting_ones_fit_anywhere() {
        let missing = with(None, None, "Immediate");
        assert_eq!(
            VolumeBinding.filter(&missing, on("w1").view()),
            Err(vec!["persistentvolumeclaim \"data\" not found".into()])
        );
        let unbound = json!({"metadata": {"name": "data"}, "spec": {"storageClassName": "local-path"}});
        let immediate = with(Some(unbound.clone()), None, "Immediate");
        assert!(VolumeBinding.filter(&immediate, on("w1").view()).is_err());
        let waiting = with(Some(unbound), None, "WaitForFirstConsumer");
        assert!(VolumeBinding.filter(&waiting, on("w1").view()).is_ok());
    }
}
