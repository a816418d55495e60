//! The root CA publisher (kube-controller-manager's `root-ca-cert-publisher`): every active
//! namespace has a ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster CA
//! (`--root-ca-file`), so pods can verify the apiserver: the ServiceAccount admission plugin
//! projects that key into every pod next to its token.
//!
//! Keys are namespace names. A namespace is synced when it is added or updated, and when its
//! `kube-root-ca.crt` is changed or deleted by someone else. The sync ([`wanted_change`])
//! creates the ConfigMap when it is missing and puts the CA back when its data differs; a
//! create that finds one already is retried as an update on the next event.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube_core::ResourceExt;
use prometheus::Registry;
use rkube_client::{Api, Client, PostParams};
use rkube_informer::ObjectKey;
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::handler::{Deleted, HandlerFns};
use rkube_informer::store::Store;
use rkube_informer::workqueue::{RateLimiter, WorkQueue};

use crate::Error;
use crate::worker::{Action, Syncer};

/// The ConfigMap's name in every namespace.
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
/// The key holding the CA bundle (PEM).
pub const KEY: &str = "ca.crt";

/// Publishes the cluster CA into every active namespace.
pub struct RootCaPublisher {
    client: Client,
    root_ca: String,
    namespaces: Store<Namespace>,
    config_maps: Store<ConfigMap>,
    queue: WorkQueue<String>,
}

/// What a namespace needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing: the namespace is gone or terminating, or its ConfigMap is right.
    None,
    /// The ConfigMap is missing.
    Create,
    /// The ConfigMap's `data` is not exactly the CA.
    Update,
}

/// What the namespace `namespace` needs, given its `kube-root-ca.crt` (if any) and the CA.
pub fn wanted_change(namespace: Option<&Namespace>, config_map: Option<&ConfigMap>, root_ca: &str) -> Change {
    let Some(namespace) = namespace else { return Change::None };
    let terminating = namespace.metadata.deletion_timestamp.is_some()
        || namespace.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    match config_map {
        _ if terminating => Change::None,
        None => Change::Create,
        Some(cm) if cm.data.as_ref() == Some(&data(root_ca)) && cm.binary_data.is_none() => Change::None,
        Some(_) => Change::Update,
    }
}

fn data(root_ca: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(KEY.to_string(), root_ca.to_string())])
}

impl RootCaPublisher {
    /// Registers handlers on the factory's Namespace and ConfigMap informers and a work queue
    /// named `root_ca_cert_publisher`; `root_ca` is the PEM bundle to publish.
    pub fn new(
        factory: &SharedInformerFactory,
        client: Client,
        root_ca: String,
        registry: Option<&Registry>,
    ) -> Arc<Self> {
        let namespaces = factory.informer::<Namespace>(None);
        let config_maps = factory.informer::<ConfigMap>(None);
        let queue = WorkQueue::new("root_ca_cert_publisher", RateLimiter::default(), registry);
        let controller = Arc::new(RootCaPublisher {
            client,
            root_ca,
            namespaces: namespaces.store(),
            config_maps: config_maps.store(),
            queue: queue.clone(),
        });
        let (q1, q2, q3, q4) = (queue.clone(), queue.clone(), queue.clone(), queue);
        namespaces.add_handler(
            HandlerFns::new()
                .on_add(move |ns: &Arc<Namespace>| q1.add(ns.name_any()))
                .on_update(move |_: &Arc<Namespace>, ns: &Arc<Namespace>| q2.add(ns.name_any())),
        );
        config_maps.add_handler(
            HandlerFns::new()
                .on_update(move |_: &Arc<ConfigMap>, cm: &Arc<ConfigMap>| {
                    if cm.name_any() == CONFIG_MAP {
                        q3.add(cm.namespace().unwrap_or_default());
                    }
                })
                .on_delete(move |deleted: Deleted<ConfigMap>| {
                    let cm = deleted.object();
                    if cm.name_any() == CONFIG_MAP {
                        q4.add(cm.namespace().unwrap_or_default());
                    }
                }),
        );
        controller
    }

    /// The work queue (for [`crate::worker::run_workers`]).
    pub fn queue(&self) -> WorkQueue<String> {
        self.queue.clone()
    }
}

impl Syncer for RootCaPublisher {
    type Key = String;

    async fn sync(&self, namespace: &String) -> Result<Action, Error> {
        let ns = self.namespaces.get(&ObjectKey::new(None, namespace));
        let current = self.config_maps.get(&ObjectKey::new(Some(namespace), CONFIG_MAP));
        let change = wanted_change(ns.as_deref(), current.as_deref(), &self.root_ca);
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let written = match (change, current) {
            (Change::None, _) => return Ok(Action::await_change()),
            (Change::Create, _) => {
                let mut cm = ConfigMap { data: Some(data(&self.root_ca)), ..ConfigMap::default() };
                cm.metadata.name = Some(CONFIG_MAP.into());
                cm.metadata.namespace = Some(namespace.clone());
                api.create(&PostParams::default(), &cm).await
            }
            (Change::Update, Some(current)) => {
                let mut cm = (*current).clone();
                cm.data = Some(data(&self.root_ca));
                cm.binary_data = None;
                api.replace(CONFIG_MAP, &PostParams::default(), &cm).await
            }
            (Change::Update, None) => return Ok(Action::await_change()),
        };
        match written {
            Ok(_) => {
                tracing::info!(namespace, "published the root CA");
                Ok(Action::await_change())
            }
            // The namespace started terminating, or a newer version came in: its event
            // brings the key back.
            Err(rkube_client::Error::AlreadyExists(_) | rkube_client::Error::Forbidden(_)) => {
                Ok(Action::await_change())
            }
            Err(source) => Err(Error::Read { what: format!("writing {namespace}/{CONFIG_MAP}"), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(phase: &str) -> Namespace {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "team"}, "status": {"phase": phase}}))
            .expect("a namespace")
    }

    fn config_map(data: serde_json::Value) -> ConfigMap {
        serde_json::from_value(serde_json::json!({"metadata": {"name": CONFIG_MAP}, "data": data})).expect("cm")
    }

    #[test]
    fn an_active_namespace_gets_exactly_the_ca() {
        let active = namespace("Active");
        assert_eq!(wanted_change(Some(&active), None, "PEM"), Change::Create);
        let right = config_map(serde_json::json!({"ca.crt": "PEM"}));
        assert_eq!(wanted_change(Some(&active), Some(&right), "PEM"), Change::None);
        let stale = config_map(serde_json::json!({"ca.crt": "OLD"}));
        assert_eq!(wanted_change(Some(&active), Some(&stale), "PEM"), Change::Update);
        let extra = config_map(serde_json::json!({"ca.crt": "PEM", "other": "x"}));
        assert_eq!(wanted_change(Some(&active), Some(&extra), "PEM"), Change::Update);
        assert_eq!(wanted_change(Some(&namespace("Terminating")), None, "PEM"), Change::None);
        assert_eq!(wanted_change(None, None, "PEM"), Change::None);
    }
}
