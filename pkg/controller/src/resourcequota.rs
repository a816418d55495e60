//! The resource-quota controller (kube-controller-manager's `resourcequota`): every
//! ResourceQuota's `status` says what the namespace uses now — `status.hard` is the
//! quota's `spec.hard`, `status.used` the sum over the objects it tracks — so
//! `kubectl describe quota` is right and what deleted objects used is given back.
//!
//! The apiserver's `ResourceQuota` admission charges each create as it happens; this
//! controller recomputes from what exists, which is what releases usage (a deleted pod, a
//! pod that has ended) and repairs a charge for an object whose create then failed.
//!
//! Keys are quotas (`namespace/name`). A quota is synced when it is added or its spec
//! changes, and all quotas of a namespace when one of its pods is added, deleted or ends.
//! Pods are counted from the informer's cache; the other kinds a quota tracks (Services,
//! ConfigMaps, Secrets, `count/<resource>.<group>`) are listed from the apiserver at each
//! sync, and such quotas are looked at again every [`RECOUNT_PERIOD`], as Kubernetes'
//! periodic full resync does. What an object costs is `rkube_api::quota`'s.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use kube_core::ResourceExt;
use prometheus::Registry;
use rkube_api::quota::{self, Usage};
use rkube_client::{Api, Client, PostParams};
use rkube_informer::ObjectKey;
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::handler::{Deleted, HandlerFns};
use rkube_informer::store::Store;
use rkube_informer::workqueue::{RateLimiter, WorkQueue};
use serde_json::Value;

use crate::Error;
use crate::worker::{Action, Syncer};

/// How often a quota that tracks more than pods is recounted.
pub const RECOUNT_PERIOD: Duration = Duration::from_secs(30);

/// Keeps every ResourceQuota's status current.
pub struct ResourceQuotaController {
    client: Client,
    quotas: Store<ResourceQuota>,
    pods: Store<Pod>,
    queue: WorkQueue<ObjectKey>,
}

impl ResourceQuotaController {
    /// Registers handlers on the factory's ResourceQuota and Pod informers and a work queue
    /// named `resourcequota`.
    pub fn new(factory: &SharedInformerFactory, client: Client, registry: Option<&Registry>) -> Arc<Self> {
        let quotas = factory.informer::<ResourceQuota>(None);
        let pods = factory.informer::<Pod>(None);
        let queue = WorkQueue::new("resourcequota", RateLimiter::default(), registry);
        let controller = Arc::new(ResourceQuotaController {
            client,
            quotas: quotas.store(),
            pods: pods.store(),
            queue: queue.clone(),
        });
        let (q1, q2) = (queue.clone(), queue.clone());
        quotas.add_handler(
            HandlerFns::new().on_add(move |q: &Arc<ResourceQuota>| q1.add(ObjectKey::of(q.as_ref()))).on_update(
                move |old: &Arc<ResourceQuota>, new: &Arc<ResourceQuota>| {
                    if old.spec != new.spec
                        || new.status.as_ref().and_then(|s| s.hard.as_ref())
                            != new.spec.as_ref().and_then(|s| s.hard.as_ref())
                    {
                        q2.add(ObjectKey::of(new.as_ref()));
                    }
                },
            ),
        );
        let (c1, c2, c3) = (controller.clone(), controller.clone(), controller.clone());
        pods.add_handler(
            HandlerFns::new()
                .on_add(move |pod: &Arc<Pod>| c1.enqueue_namespace(pod.namespace().as_deref()))
                .on_update(move |old: &Arc<Pod>, new: &Arc<Pod>| {
                    let phase = |pod: &Pod| pod.status.as_ref().and_then(|s| s.phase.clone());
                    if phase(old) != phase(new) {
                        c2.enqueue_namespace(new.namespace().as_deref());
                    }
                })
                .on_delete(move |deleted: Deleted<Pod>| c3.enqueue_namespace(deleted.object().namespace().as_deref())),
        );
        controller
    }

    /// The work queue (for [`crate::worker::run_workers`]).
    pub fn queue(&self) -> WorkQueue<ObjectKey> {
        self.queue.clone()
    }

    fn enqueue_namespace(&self, namespace: Option<&str>) {
        for q in self.quotas.list().iter().filter(|q| q.namespace().as_deref() == namespace) {
            self.queue.add(ObjectKey::of(q.as_ref()));
        }
    }

    /// What the quota's namespace uses of the resources `hard` names.
    async fn usage(&self, key: &ObjectKey, spec: &Value, hard: &Usage) -> Result<Usage, Error> {
        let namespace = key.namespace().unwrap_or_default();
        let mut used: Usage = hard.keys().map(|name| (name.clone(), 0)).collect();
        let mut add = |group: &str, plural: &str, object: &Value| {
            if quota::in_scope(spec, plural, object) {
                for (name, amount) in quota::usage(group, plural, object) {
                    if let Some(total) = used.get_mut(&name) {
                        *total = total.saturating_add(amount);
                    }
                }
            }
        };
        for pod in self.pods.list().iter().filter(|p| p.namespace().as_deref() == Some(namespace)) {
            add("", "pods", &serde_json::to_value(pod.as_ref()).unwrap_or_default());
        }
        for res in others_tracked(hard) {
            let prefix = res.path_prefix();
            let uri = format!("{prefix}/namespaces/{namespace}/{}", res.plural);
            let request = http::Request::get(&uri)
                .body(Vec::new())
                .map_err(|e| Error::InvalidObject { key: key.clone(), reason: format!("{uri}: {e}") })?;
            let list = self.client.request_json(request).await.map_err(|source| Error::Read { what: uri, source })?;
            for item in list.get("items").and_then(Value::as_array).into_iter().flatten() {
                add(res.group, res.plural, item);
            }
        }
        Ok(used)
    }
}

/// The namespaced kinds other than pods whose objects `hard` counts.
fn others_tracked(hard: &Usage) -> Vec<&'static rkube_api::ResourceDef> {
    rkube_api::registry::resources()
        .iter()
        .copied()
        .filter(|r| r.namespaced && !(r.group.is_empty() && r.plural == "pods"))
        .filter(|r| quota::resource_names(r.group, r.plural).iter().any(|name| hard.contains_key(name)))
        .collect()
}

/// The status a quota should have, given what is used.
pub fn wanted_status(quota_object: &ResourceQuota, used: &Usage) -> Value {
    let hard = quota_object.spec.as_ref().and_then(|s| s.hard.clone()).unwrap_or_default();
    serde_json::json!({"hard": hard, "used": quota::to_list(used)})
}

impl Syncer for ResourceQuotaController {
    type Key = ObjectKey;

    async fn sync(&self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(current) = self.quotas.get(key) else { return Ok(Action::await_change()) };
        let namespace = key.namespace().unwrap_or_default();
        let spec = serde_json::to_value(current.spec.clone().unwrap_or_default()).unwrap_or_default();
        let hard = quota::parse_list(spec.get("hard"));
        let used = self.usage(key, &spec, &hard).await?;
        let status = wanted_status(&current, &used);
        let then =
            if others_tracked(&hard).is_empty() { Action::await_change() } else { Action::requeue(RECOUNT_PERIOD) };
        let now = serde_json::to_value(&current.status).unwrap_or_default();
        if quota::parse_list(now.get("used")) == used && now.get("hard") == status.get("hard") {
            return Ok(then);
        }
        let mut updated = (*current).clone();
        updated.status = serde_json::from_value(status).ok();
        let api: Api<ResourceQuota> = Api::namespaced(self.client.clone(), namespace);
        match api.replace_status(key.name(), &PostParams::default(), &updated).await {
            Ok(_) => {
                tracing::debug!(quota = %key, "resource quota usage recomputed");
                Ok(then)
            }
            // A newer version (an admission charge) or a deletion: its event brings it back.
            Err(rkube_client::Error::Conflict(_) | rkube_client::Error::NotFound(_)) => {
                Ok(Action::requeue(Duration::from_millis(200)))
            }
            Err(source) => Err(Error::Read { what: format!("updating the status of quota {key}"), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kinds_a_quota_names_are_listed() {
        let hard = quota::parse_list(Some(&serde_json::json!({"pods": "5", "requests.cpu": "2"})));
        assert!(others_tracked(&hard).is_empty(), "pods come from the cache");
        let hard = quota::parse_list(Some(&serde_json::json!({"configmaps": "5", "count/deployments.apps": "1"})));
        let plurals: Vec<&str> = others_tracked(&hard).iter().map(|r| r.plural).collect();
        assert_eq!(plurals, ["configmaps", "deployments"]);
    }

    #[test]
    fn the_status_mirrors_hard_and_writes_usage_canonically() {
        let q: ResourceQuota =
            serde_json::from_value(serde_json::json!({"spec": {"hard": {"pods": "5", "requests.memory": "1Gi"}}}))
                .expect("quota");
        let used = Usage::from([("pods".into(), 2000), ("requests.memory".into(), 256 * 1024 * 1024 * 1000)]);
        assert_eq!(
            wanted_status(&q, &used),
            serde_json::json!({"hard": {"pods": "5", "requests.memory": "1Gi"}, "used": {"pods": "2", "requests.memory": "256Mi"}})
        );
    }
}
