//! The ServiceAccount controller (kube-controller-manager's `serviceaccount-controller`):
//! every active namespace has a ServiceAccount named `default`, which pods run as when
//! they name none.
//!
//! Keys are namespace names. A namespace is synced when it is added or updated, and when a
//! ServiceAccount named `default` is deleted. The sync ([`needs_default`]) creates the
//! ServiceAccount when the namespace exists, is not terminating and has none; a create that
//! finds one already (a race with another writer) is success.
//!
//! Not here: tokens (a ServiceAccount's identity is proven by tokens the apiserver issues).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
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

/// The name of the ServiceAccount every namespace gets.
pub const DEFAULT: &str = "default";

/// Ensures a `default` ServiceAccount in every active namespace.
pub struct ServiceAccountController {
    client: Client,
    namespaces: Store<Namespace>,
    service_accounts: Store<ServiceAccount>,
    queue: WorkQueue<String>,
}

/// Whether the namespace needs its `default` ServiceAccount created: it exists, is not
/// terminating, and has none.
pub fn needs_default(namespace: Option<&Namespace>, has_default: bool) -> bool {
    let Some(namespace) = namespace else { return false };
    let terminating = namespace.metadata.deletion_timestamp.is_some()
        || namespace.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    !terminating && !has_default
}

impl ServiceAccountController {
    /// Registers handlers on the factory's Namespace and ServiceAccount informers and a work
    /// queue named `serviceaccount`.
    pub fn new(factory: &SharedInformerFactory, client: Client, registry: Option<&Registry>) -> Arc<Self> {
        let namespaces = factory.informer::<Namespace>(None);
        let service_accounts = factory.informer::<ServiceAccount>(None);
        let queue = WorkQueue::new("serviceaccount", RateLimiter::default(), registry);
        let controller = Arc::new(ServiceAccountController {
            client,
            namespaces: namespaces.store(),
            service_accounts: service_accounts.store(),
            queue: queue.clone(),
        });
        let (q1, q2, q3) = (queue.clone(), queue.clone(), queue);
        namespaces.add_handler(
            HandlerFns::new()
                .on_add(move |ns: &Arc<Namespace>| q1.add(ns.name_any()))
                .on_update(move |_: &Arc<Namespace>, ns: &Arc<Namespace>| q2.add(ns.name_any())),
        );
        service_accounts.add_handler(HandlerFns::new().on_delete(move |deleted: Deleted<ServiceAccount>| {
            let sa = deleted.object();
            if sa.name_any() == DEFAULT {
                q3.add(sa.namespace().unwrap_or_default());
            }
        }));
        controller
    }

    /// The work queue (for [`crate::worker::run_workers`]).
    pub fn queue(&self) -> WorkQueue<String> {
        self.queue.clone()
    }
}

impl Syncer for ServiceAccountController {
    type Key = String;

    async fn sync(&self, namespace: &String) -> Result<Action, Error> {
        let ns = self.namespaces.get(&ObjectKey::new(None, namespace));
        let has_default = self.service_accounts.get(&ObjectKey::new(Some(namespace), DEFAULT)).is_some();
        if !needs_default(ns.as_deref(), has_default) {
            return Ok(Action::await_change());
        }
        let mut sa = ServiceAccount::default();
        sa.metadata.name = Some(DEFAULT.into());
        sa.metadata.namespace = Some(namespace.clone());
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => {
                tracing::info!(namespace, "created the default ServiceAccount");
                Ok(Action::await_change())
            }
            // Someone else made it, or the namespace started terminating meanwhile.
            Err(rkube_client::Error::AlreadyExists(_) | rkube_client::Error::Forbidden(_)) => {
                Ok(Action::await_change())
            }
            Err(source) => Err(Error::Read { what: format!("creating {namespace}/{DEFAULT}"), source }),
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

    #[test]
    fn only_an_active_namespace_without_one_gets_a_default_service_account() {
        assert!(needs_default(Some(&namespace("Active")), false));
        assert!(!needs_default(Some(&namespace("Active")), true));
        assert!(!needs_default(Some(&namespace("Terminating")), false));
        assert!(!needs_default(None, false));
    }
}
