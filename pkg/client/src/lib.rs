//! rkube's REST client: typed access to every resource the apiserver serves.
//!
//! Every rkube process other than the apiserver sees the cluster only through this crate
//! (directly, or through the informers in `rkube-informer`). It is kube-rs's `kube-client` in
//! small, and follows client-go's names where it can:
//!
//! - [`Config`] says where the apiserver is (by hand, or from a kubeconfig: [`Config::infer`]);
//! - [`Client`] sends requests: rate limit, timeout, `User-Agent`, token, error mapping;
//! - [`Api<K>`] is the typed verbs for one kind: get, list (paged), create, replace, patch,
//!   delete, watch, and the `status`, `scale` and `binding` subresources;
//! - [`Error`] is the server's `Status` mapped onto variants to match on (NotFound, Conflict,
//!   Gone, Invalid with causes, ...);
//! - [`retry_on_conflict`] is the read-modify-write loop for optimistic concurrency;
//! - [`events::EventRecorder`] records Events about objects (aggregated, spam-filtered).
//!
//! Types come from k8s-openapi (`Pod`, `Deployment`, ...) and request parameters from kube-core
//! (re-exported here), so code written against kube-rs reads the same.
//!
//! ```no_run
//! use k8s_openapi::api::core::v1::Pod;
//! use rkube_client::{Api, Client, Config, ListParams};
//!
//! # async fn demo() -> rkube_client::Result<()> {
//! let client = Client::new(Config::new("http://127.0.0.1:6443".parse().expect("a URL")))?;
//! let pods: Api<Pod> = Api::namespaced(client, "default");
//! for pod in pods.list_all(&ListParams::default()).await?.items {
//!     println!("{}", pod.metadata.name.unwrap_or_default());
//! }
//! # Ok(()) }
//! ```
//!
//! Credentials: a bearer token or a client certificate; over `https://` the kubeconfig's CA
//! is trusted. Not yet: `exec` and `auth-provider` users.

pub use kube_core::ObjectList;
pub use kube_core::params::{
    DeleteParams, GetParams, ListParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy, WatchParams,
};
pub use kube_core::watch::WatchEvent;

pub mod config;
pub use config::{Config, KubeconfigOptions};
pub mod error;
pub mod events;
pub use error::{Error, Result};

mod api;
mod client;
mod ratelimit;
mod retry;
mod watch;

pub use api::{Api, ApiResource, DEFAULT_PAGE_SIZE, WatchStream};
pub use client::Client;
pub mod tls;
pub use retry::retry_on_conflict;
