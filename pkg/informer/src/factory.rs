//! SharedInformerFactory: at most one informer per (type, namespace, selectors) in a process.
//!
//! Controllers ask the factory for the informers they need; two controllers that both watch
//! pods get the same [`SharedInformer`], so the process runs one pod reflector and holds one
//! pod cache. client-go calls this `SharedInformerFactory` too, and behaves the same way:
//! [`SharedInformerFactory::start`] starts the informers created so far, so call it again after
//! asking for more.
//!
//! What it keeps true (tests in `test/tests/informer_sync.rs`):
//! - the same (type, namespace, selectors) always gives the same informer;
//! - starting twice never starts a second reflector.
//!
//! Not promised: informers asked for after `start` run by themselves; they wait for the next
//! `start`.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::future::BoxFuture;
use prometheus::Registry;
use rkube_client::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::informer::{InformerConfig, SharedInformer};
use crate::metrics::InformerMetrics;

/// Label and field selectors that narrow an informer to part of a resource.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selectors {
    /// `labelSelector`, e.g. `app=web`.
    pub label: Option<String>,
    /// `fieldSelector`, e.g. `spec.nodeName=node-1`.
    pub field: Option<String>,
}

/// What makes two informers the same one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct InformerKey {
    type_id: TypeId,
    namespace: Option<String>,
    selectors: Selectors,
}

/// What the factory can do with an informer without knowing its type.
trait Control: Send + Sync {
    fn start(&self, shutdown: CancellationToken);
    fn wait_for_sync(&self) -> BoxFuture<'static, bool>;
}

impl<K> Control for SharedInformer<K>
where
    K: kube_core::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    fn start(&self, shutdown: CancellationToken) {
        SharedInformer::start(self, shutdown);
    }

    fn wait_for_sync(&self) -> BoxFuture<'static, bool> {
        let informer = self.clone();
        Box::pin(async move { informer.wait_for_sync().await })
    }
}

struct Entry {
    /// A `SharedInformer<K>` for the key's type.
    informer: Box<dyn Any + Send + Sync>,
    control: Arc<dyn Control>,
}

/// Hands out shared informers, one per (type, namespace, selectors), all built on one client
/// and counting into one set of metrics.
pub struct SharedInformerFactory {
    client: Client,
    metrics: InformerMetrics,
    config: InformerConfig,
    informers: Mutex<HashMap<InformerKey, Entry>>,
}

impl std::fmt::Debug for SharedInformerFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedInformerFactory").field("informers", &self.entries().len()).finish()
    }
}

impl SharedInformerFactory {
    /// A factory whose informers use `client` and register their metrics in `registry`.
    ///
    /// # Errors
    /// [`Error::Metrics`] when the informer metrics are already registered in `registry`
    /// (one factory per registry).
    pub fn new(client: Client, registry: &Registry) -> Result<SharedInformerFactory> {
        Ok(SharedInformerFactory {
            client,
            metrics: InformerMetrics::register(registry).map_err(Error::Metrics)?,
            config: InformerConfig::default(),
            informers: Mutex::new(HashMap::new()),
        })
    }

    /// Uses `config` (backoff, timeouts, page size, resync) for informers created from now on.
    /// Its selectors are ignored: they come with each [`SharedInformerFactory::informer_with_selectors`].
    #[must_use]
    pub fn with_config(mut self, config: InformerConfig) -> SharedInformerFactory {
        self.config = config;
        self
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<InformerKey, Entry>> {
        self.informers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The shared informer for `K` in `namespace` (`None`: all namespaces, or a cluster-scoped
    /// type). The same arguments always give the same informer.
    pub fn informer<K>(&self, namespace: Option<&str>) -> SharedInformer<K>
    where
        K: rkube_client::ApiResource,
    {
        self.informer_with_selectors(namespace, &Selectors::default())
    }

    /// The shared informer for the objects of `K` in `namespace` that match `selectors`.
    pub fn informer_with_selectors<K>(&self, namespace: Option<&str>, selectors: &Selectors) -> SharedInformer<K>
    where
        K: rkube_client::ApiResource,
    {
        let namespace = namespace.filter(|namespace| !namespace.is_empty());
        let key = InformerKey {
            type_id: TypeId::of::<K>(),
            namespace: namespace.map(String::from),
            selectors: selectors.clone(),
        };
        let mut entries = self.entries();
        if let Some(informer) = entries.get(&key).and_then(|entry| entry.informer.downcast_ref::<SharedInformer<K>>()) {
            return informer.clone();
        }
        let api = match namespace {
            Some(namespace) => Api::<K>::namespaced(self.client.clone(), namespace),
            None => Api::<K>::all(self.client.clone()),
        };
        let mut config = self.config.clone();
        config.reflector.label_selector = selectors.label.clone();
        config.reflector.field_selector = selectors.field.clone();
        let informer = SharedInformer::new(api, config, self.metrics.resource(&K::plural(&())));
        entries.insert(key, Entry { informer: Box::new(informer.clone()), control: Arc::new(informer.clone()) });
        informer
    }

    /// Starts every informer created so far that is not running yet; each runs until
    /// `shutdown` is cancelled.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(&self, shutdown: &CancellationToken) {
        for entry in self.entries().values() {
            entry.control.start(shutdown.clone());
        }
    }

    /// Waits until every informer created so far has its first list in its store: `true`, or
    /// `false` if one of them stopped first. client-go calls this `WaitForCacheSync`.
    pub async fn wait_for_cache_sync(&self) -> bool {
        let waits: Vec<BoxFuture<'static, bool>> =
            self.entries().values().map(|entry| entry.control.wait_for_sync()).collect();
        futures::future::join_all(waits).await.into_iter().all(|synced| synced)
    }
}
