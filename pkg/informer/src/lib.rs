//! rkube's list-watch machinery: how every process other than the apiserver sees the cluster.
//!
//! The pieces, bottom up, with client-go's names:
//! - [`reflector`]: a `Reflector` lists a resource, then watches it from the list's
//!   resourceVersion, resumes after breaks with [`backoff`], and relists after a 410;
//! - [`key`]: the [`ObjectKey`] that names one object (client-go's `namespace/name` string,
//!   typed);
//! - [`store`]: the `Store`/`Indexer`, an in-memory, indexed, thread-safe copy that hands out
//!   `Arc<K>`, keyed by [`ObjectKey`];
//! - [`informer`]: the `SharedInformer`, one reflector and one store per resource, telling any
//!   number of [`handler`]s about adds, updates and deletes;
//! - [`factory`]: the `SharedInformerFactory`, which makes sure a process has only one informer
//!   per resource and namespace;
//! - [`workqueue`]: where handlers put keys (usually [`ObjectKey`]s) for controllers' workers;
//! - [`metrics`]: Prometheus counters for all of the above.
//!
//! ```no_run
//! # async fn demo(client: rkube_client::Client) -> Result<(), rkube_informer::Error> {
//! use k8s_openapi::api::core::v1::Pod;
//! use rkube_informer::factory::SharedInformerFactory;
//! use rkube_informer::handler::HandlerFns;
//!
//! let registry = prometheus::Registry::new();
//! let factory = SharedInformerFactory::new(client, &registry)?;
//! let pods = factory.informer::<Pod>(None);
//! pods.add_handler(HandlerFns::new().on_add(|pod: &std::sync::Arc<Pod>| println!("{:?}", pod.metadata.name)));
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! factory.start(&shutdown);
//! factory.wait_for_cache_sync().await;
//! println!("{} pods cached", pods.store().len());
//! # Ok(()) }
//! ```
//!
//! What the whole keeps true, and what it does not promise, is written at the top of each
//! module. The short version: the cache is eventually consistent and may be stale; per object,
//! handlers see states in resourceVersion order; deletes that happen while disconnected arrive
//! late, as [`handler::Deleted::FinalStateUnknown`].

/// Reconnect delays: rkube's one backoff type, from `rkube_api`.
pub use rkube_api::backoff;
mod error;
pub mod factory;
pub mod handler;
pub mod informer;
pub mod key;
pub mod lister_watcher;
pub mod metrics;
pub mod reflector;
pub mod store;
#[cfg(test)]
mod testing;
pub mod workqueue;

pub use error::{Error, Result};
pub use key::ObjectKey;
