//! rkube's apiserver: the Kubernetes REST API over etcd.
//!
//! One generic set of operations (create, get, list, watch, update, patch, delete,
//! deletecollection and the `status`, `scale` and `binding` subresources) serves every
//! resource of [`rkube_api::registry`]; nothing is written per kind. Errors are Kubernetes
//! `Status` objects ([`error`]); objects are stored as JSON in etcd ([`rkube_storage`]).
//!
//! Transport and access: [`router`] builds the whole application independent of
//! transport, and [`serve`] runs it on a TCP listener, over TLS ([`tls`]) when configured.
//! [`authentication`] and [`authorization`] run as a layer on the router before every
//! handler.
//!
//! Read the request path top-down: [`dispatch::api`] → [`request`] (what the path and query
//! mean) → [`admission`] → [`rest`] (the generic storage logic, which asks the kind's
//! strategy what differs between kinds) → [`rkube_storage::Store`]; subresources in
//! [`subresource`].

pub mod admission;
pub mod allocator;
pub mod apiextensions;
pub mod authentication;
pub mod authorization;
pub mod cacher;
pub mod compaction;
pub mod conversion;
pub mod decode;
pub mod discovery;
pub mod dispatch;
pub mod error;
pub mod fieldmanager;
pub mod frames;
pub mod kubernetes_service;
pub mod limits;
pub mod metadata;
pub mod metrics;
pub mod namespace;
pub mod openapi;
pub mod own_writes;
pub mod patch;
pub mod request;
pub mod resource_metrics;
pub mod rest;
pub mod review;
pub mod serviceaccount_token;
pub mod stored;
pub mod subresource;
pub mod table;
#[cfg(test)]
mod testing;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};
use rkube_api::backoff::{Backoff, BackoffConfig};
use rkube_api::registry::ResourceDef;
use rkube_storage::{Keys, Store};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use metrics::Metrics;
pub use rkube_server::{connections, tls};

/// Settings of the apiserver.
#[derive(Debug, Clone)]
pub struct Config {
    /// Prefix of every storage key (`/registry`).
    pub etcd_prefix: String,
    /// Largest request body accepted; larger ones get a 413.
    pub max_body_bytes: usize,
    /// How often a watch with `allowWatchBookmarks=true` gets a bookmark when quiet.
    pub bookmark_interval: Duration,
    /// How often terminating namespaces are checked even when nothing wakes the cleaner.
    pub namespace_cleanup_interval: Duration,
    /// How often etcd history is compacted; `None` never compacts.
    pub compaction_interval: Option<Duration>,
    /// The watch cache of every resource (`--watch-cache`); `None` serves every list and
    /// watch from etcd.
    pub watch_cache: Option<cacher::CacheConfig>,
    /// Request timeout and in-flight limits.
    pub limits: limits::Limits,
    /// The shortest a watch without `timeoutSeconds` lasts; each lasts a random time between
    /// this and twice this, so clients do not all reconnect at once (`--min-request-timeout`).
    pub min_request_timeout: Duration,
    /// Who sent a request (`--token-auth-file`, `--anonymous-auth`).
    pub authentication: authentication::Authenticator,
    /// Who may do what, the modes asked in order (`--authorization-mode`).
    pub authorization: Vec<authorization::Mode>,
    /// TLS (`--tls-cert-file` and friends); `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How to reach kubelets over HTTPS (`--kubelet-certificate-authority`,
    /// `--kubelet-client-certificate`, `--kubelet-client-key`); `None` dials plain HTTP.
    pub kubelet_tls: Option<Arc<rustls::ClientConfig>>,
    /// Signs and verifies ServiceAccount tokens (`--service-account-signing-key-file`);
    /// `None` issues none and accepts none.
    pub service_account_tokens: Option<Arc<serviceaccount_token::TokenIssuer>>,
    /// Where Services' IPs and node ports come from (`--service-cluster-ip-range`,
    /// `--service-node-port-range`).
    pub services: allocator::ServiceRanges,
    /// The address and port pods reach this apiserver at (`--advertise-address`, the secure
    /// port): the `kubernetes` Service's endpoint. `None` makes no `kubernetes` Service.
    pub advertise: Option<std::net::SocketAddr>,
    /// How long this apiserver's Lease, and so its address in the `kubernetes` Service's
    /// endpoints, outlives its last renewal (`--endpoint-lease-duration`; see
    /// [`kubernetes_service`]). Whole seconds, rounded up.
    pub endpoint_lease_duration: Duration,
    /// How often this apiserver renews its Lease and writes the `kubernetes` Service's endpoints
    /// to the apiservers whose Leases are current (`--endpoint-reconcile-interval`).
    pub endpoint_reconcile_interval: Duration,
    /// How often Service IP and node port allocations are checked against the stored
    /// Services ([`allocator::repair`]).
    pub allocation_repair_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            etcd_prefix: "/registry".into(),
            max_body_bytes: 3 * 1024 * 1024,
            bookmark_interval: Duration::from_secs(60),
            namespace_cleanup_interval: Duration::from_secs(5),
            compaction_interval: Some(Duration::from_secs(300)),
            watch_cache: Some(cacher::CacheConfig::default()),
            limits: limits::Limits::default(),
            min_request_timeout: Duration::from_secs(1800),
            authentication: authentication::Authenticator::default(),
            authorization: vec![authorization::Mode::AlwaysAllow],
            tls: None,
            kubelet_tls: None,
            service_account_tokens: None,
            services: allocator::ServiceRanges::default(),
            advertise: None,
            endpoint_lease_duration: kubernetes_service::DEFAULT_LEASE_DURATION,
            endpoint_reconcile_interval: kubernetes_service::DEFAULT_RECONCILE_INTERVAL,
            allocation_repair_interval: Duration::from_secs(180),
        }
    }
}

/// Everything a request handler needs, shared behind an `Arc`.
pub struct ApiState {
    /// Where objects live (wrapped so that [`ApiState::own_writes`] learns of every write).
    pub store: Arc<dyn Store>,
    /// The revision of this apiserver's last write of each resource (see [`own_writes`]).
    pub own_writes: Arc<own_writes::OwnWrites>,
    /// Builds storage keys.
    pub keys: Keys,
    /// Settings.
    pub config: Config,
    /// Request metrics.
    pub metrics: Metrics,
    /// The Prometheus registry served on `/metrics`.
    pub registry: prometheus::Registry,
    /// Cancelled at shutdown: background tasks and open watches end.
    pub shutdown: CancellationToken,
    /// Wakes the namespace cleaner after a namespace is marked for deletion.
    pub namespace_cleaner: Notify,
    /// Namespaces known to be active (see [`namespace::NamespaceCache`]).
    pub namespace_cache: namespace::NamespaceCache,
    /// HTTP client for kubelets (`pods/log`).
    pub kubelet: reqwest::Client,
    /// The resources served: the built-in kinds and those of CustomResourceDefinitions
    /// ([`apiextensions`] keeps the latter current).
    pub resources: rkube_api::registry::Registry,
    /// The watch cache of each stored resource, by [`ResourceDef::storage_name`], when
    /// enabled. Custom resources gain theirs when their CRD is established.
    cachers: std::sync::RwLock<HashMap<String, Arc<cacher::Cacher>>>,
    /// The watch caches' metrics (custom resources' caches register under the same ones).
    cache_metrics: Option<cacher::CacheMetrics>,
    /// Set once [`ApiState::start_caches`] ran: caches added later start at once.
    caches_started: AtomicBool,
    /// Request timeout and in-flight limits.
    limiter: Arc<limits::Limiter>,
    /// Set once the built-in namespaces exist.
    bootstrapped: AtomicBool,
    /// The OpenAPI documents, with the registry generation they were built for.
    openapi: std::sync::Mutex<Option<(u64, Arc<OpenApi>)>>,
}

/// `/openapi/v3` and its documents by path.
type OpenApi = (Value, BTreeMap<String, Value>);

impl ApiState {
    /// State over `store`, with metrics registered in `registry`.
    pub fn new(
        store: Arc<dyn Store>,
        config: Config,
        registry: prometheus::Registry,
        shutdown: CancellationToken,
    ) -> Result<Self, prometheus::Error> {
        let metrics = Metrics::new(&registry)?;
        let keys = Keys::new(&config.etcd_prefix);
        let own_writes = Arc::new(own_writes::OwnWrites::new(&keys));
        let store: Arc<dyn Store> = Arc::new(own_writes::RecordingStore::new(store, Arc::clone(&own_writes)));
        let limiter = Arc::new(limits::Limiter::new(config.limits, &registry)?);
        let mut cachers = HashMap::new();
        let cache_metrics = match config.watch_cache {
            Some(_) => Some(cacher::CacheMetrics::new(&registry)?),
            None => None,
        };
        if let (Some(cache), Some(metrics)) = (config.watch_cache, &cache_metrics) {
            // A resource stored as another shares that one's cache.
            for res in rkube_api::registry::resources().iter().filter(|res| res.conversion.is_none()) {
                let prefix = keys.collection(&res.storage_name(), None);
                let cacher = cacher::Cacher::new(res, prefix, Arc::clone(&store), cache, metrics.clone());
                cachers.insert(res.storage_name().into_owned(), cacher);
            }
        }
        let kubelet = kubelet_client(config.kubelet_tls.as_ref());
        Ok(ApiState {
            store,
            own_writes,
            keys,
            config,
            metrics,
            registry,
            shutdown,
            namespace_cleaner: Notify::new(),
            namespace_cache: namespace::NamespaceCache::default(),
            kubelet,
            resources: rkube_api::registry::Registry::new(),
            cachers: std::sync::RwLock::new(cachers),
            cache_metrics,
            caches_started: AtomicBool::new(false),
            limiter,
            bootstrapped: AtomicBool::new(false),
            openapi: std::sync::Mutex::new(None),
        })
    }

    /// The watch cache of `res` (of the resource storing it), when caches are enabled.
    pub fn cacher(&self, res: &ResourceDef) -> Option<Arc<cacher::Cacher>> {
        let cachers = self.cachers.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        cachers.get(res.storage_name().as_ref()).cloned()
    }

    /// Gives the stored resource `res` a watch cache if it has none (a custom resource whose
    /// CRD was just established), started at once when the others run. Caches of resources no
    /// longer served stay until restart: a CRD deleted and made again finds its cache warm.
    pub fn ensure_cacher(&self, res: &'static ResourceDef) {
        let (Some(cache), Some(metrics)) = (self.config.watch_cache, &self.cache_metrics) else { return };
        let name = res.storage_name().into_owned();
        let mut cachers = self.cachers.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cachers.contains_key(&name) {
            return;
        }
        let prefix = self.keys.collection(&name, None);
        let cacher = cacher::Cacher::new(res, prefix, Arc::clone(&self.store), cache, metrics.clone());
        if self.caches_started.load(Ordering::Acquire) {
            tokio::spawn(Arc::clone(&cacher).run(self.shutdown.clone()));
        }
        cachers.insert(name, cacher);
    }

    /// Starts filling every watch cache; each runs until `state.shutdown`.
    pub fn start_caches(&self) {
        let cachers = self.cachers.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.caches_started.store(true, Ordering::Release);
        for cacher in cachers.values() {
            tokio::spawn(Arc::clone(cacher).run(self.shutdown.clone()));
        }
    }

    /// The OpenAPI documents of what is served now (rebuilt when a CRD changes the registry).
    fn openapi(&self) -> Arc<OpenApi> {
        let generation = self.resources.generation();
        let mut cached = self.openapi.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*cached {
            Some((built, docs)) if *built == generation => Arc::clone(docs),
            _ => {
                let docs = Arc::new((openapi::root(&self.resources), openapi::documents(&self.resources)));
                *cached = Some((generation, Arc::clone(&docs)));
                docs
            }
        }
    }
}

/// The HTTP client for kubelets: over HTTPS with `tls` (the cluster CA, the apiserver's
/// kubelet client certificate), else plain.
fn kubelet_client(tls: Option<&Arc<rustls::ClientConfig>>) -> reqwest::Client {
    let builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
    let builder = match tls {
        Some(tls) => builder.use_preconfigured_tls(rustls::ClientConfig::clone(tls)),
        None => builder,
    };
    builder.build().unwrap_or_default()
}

/// The whole HTTP application.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/version", get(|| async { json_ok(&discovery::version()) }))
        .route("/api", get(core_versions))
        .route("/apis", get(named_groups))
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3", get(openapi_root))
        .route("/openapi/v3/{*path}", get(openapi_document))
        .route("/api/v1/namespaces/{namespace}/pods/{name}/exec", axum::routing::any(subresource::exec::handle))
        .route("/api/v1/namespaces/{namespace}/pods/{name}/attach", axum::routing::any(subresource::exec::attach))
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/portforward",
            axum::routing::any(subresource::exec::port_forward),
        )
        .route(review::SELF_SUBJECT_ACCESS_REVIEWS, post(review::self_subject_access_review))
        .route(review::SUBJECT_ACCESS_REVIEWS, post(review::subject_access_review))
        .route(review::SELF_SUBJECT_RULES_REVIEWS, post(review::self_subject_rules_review))
        .route(review::SELF_SUBJECT_REVIEWS, post(review::self_subject_review))
        .route(review::TOKEN_REVIEWS, post(review::token_review))
        .route("/apis/metrics.k8s.io/v1beta1/nodes", get(resource_metrics::list_nodes))
        .route("/apis/metrics.k8s.io/v1beta1/nodes/{name}", get(resource_metrics::get_node))
        .route("/apis/metrics.k8s.io/v1beta1/pods", get(resource_metrics::list_all_pods))
        .route("/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods", get(resource_metrics::list_pods))
        .route("/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/{name}", get(resource_metrics::get_pod))
        .route("/api/{*rest}", axum::routing::any(dispatch::api))
        .route("/apis/{*rest}", axum::routing::any(dispatch::api))
        .fallback(|| async { ApiError::NoSuchResource })
        .layer(axum::middleware::map_response(status_for_bare_405))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), authorization::filter))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state.limiter), limits::limit))
        .with_state(state)
}

/// A 405 the router made itself (a method a fixed route does not serve, as `TRACE /api`)
/// becomes a Kubernetes `Status`, as every other error is.
async fn status_for_bare_405(response: Response) -> Response {
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && !response.headers().contains_key(http::header::CONTENT_TYPE)
    {
        return ApiError::MethodNotAllowed("the server does not allow this method on the requested resource".into())
            .into_response();
    }
    response
}

fn json_ok(body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (StatusCode::OK, [(http::header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<Arc<ApiState>>) -> Response {
    let ping = tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await;
    match ping {
        Ok(Ok(())) if state.bootstrapped.load(Ordering::Acquire) => "ok".into_response(),
        Ok(Ok(())) => {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: creating the built-in namespaces\n").into_response()
        }
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: etcd: {e}\n")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "not ready: etcd did not answer within 2s\n").into_response(),
    }
}

async fn metrics_text(State(state): State<Arc<ApiState>>) -> Response {
    let families = state.registry.gather();
    match prometheus::TextEncoder::new().encode_to_string(&families) {
        Ok(text) => ([(http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

async fn core_versions(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    if let Some(aggregated) = aggregated_discovery(&state, &headers, true) {
        return aggregated;
    }
    let host = headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    json_ok(&discovery::core_versions(host))
}

async fn named_groups(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    aggregated_discovery(&state, &headers, false).unwrap_or_else(|| json_ok(&discovery::groups(&state.resources)))
}

/// The aggregated discovery document, when `Accept` asks for it (see [`discovery`]).
fn aggregated_discovery(state: &ApiState, headers: &HeaderMap, core: bool) -> Option<Response> {
    let accept = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok())?;
    if !discovery::wants_aggregated(accept) {
        return None;
    }
    let body = serde_json::to_vec(&discovery::aggregated(&state.resources, core)).ok()?;
    let headers = [(http::header::CONTENT_TYPE, discovery::AGGREGATED), (http::header::VARY, "Accept")];
    Some((StatusCode::OK, headers, body).into_response())
}

async fn openapi_v2(headers: HeaderMap) -> Response {
    let accept = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let (media, body) = openapi::v2(accept);
    (StatusCode::OK, [(http::header::CONTENT_TYPE, media)], body).into_response()
}

async fn openapi_root(State(state): State<Arc<ApiState>>) -> Response {
    json_ok(&state.openapi().0)
}

async fn openapi_document(State(state): State<Arc<ApiState>>, Path(path): Path<String>) -> Response {
    match state.openapi().1.get(path.trim_matches('/')) {
        Some(doc) => json_ok(doc),
        None => ApiError::NoSuchResource.into_response(),
    }
}

/// Serves the API on `listener` until `state.shutdown` is cancelled; also runs the
/// start-up bootstrap (built-in namespaces), the namespace cleaner and cache, the
/// etcd compactor and, with an advertised address, the `kubernetes` Service's endpoints
/// ([`kubernetes_service::run`]).
pub async fn serve(listener: TcpListener, state: Arc<ApiState>) -> std::io::Result<()> {
    state.start_caches();
    let bootstrap = tokio::spawn(bootstrap(state.clone()));
    let cleaner = tokio::spawn(namespace::run_cleaner(state.clone(), state.config.namespace_cleanup_interval));
    let crds = tokio::spawn(apiextensions::run(state.clone()));
    let cache = tokio::spawn(namespace::run_cache(state.clone()));
    let compactor = state.config.compaction_interval.map(|every| tokio::spawn(compaction::run(state.clone(), every)));
    let repair = tokio::spawn(allocator::run_repair(state.clone(), state.config.allocation_repair_interval));
    let endpoints =
        state.config.advertise.map(|advertised| tokio::spawn(kubernetes_service::run(state.clone(), advertised)));
    let shutdown = state.shutdown.clone();
    let tls = state.config.tls.clone();
    let result = connections::serve(listener, router(state), tls, shutdown).await;
    bootstrap.abort();
    crds.abort();
    repair.abort();
    cleaner.abort();
    cache.abort();
    if let Some(compactor) = compactor {
        compactor.abort();
    }
    // It took this apiserver out of the `kubernetes` Service's endpoints when the shutdown
    // began, within its own timeout; the wait is a bound, not expected to pass.
    if let Some(mut endpoints) = endpoints
        && tokio::time::timeout(kubernetes_service::REMOVE_TIMEOUT, &mut endpoints).await.is_err()
    {
        endpoints.abort();
    }
    result
}

/// The built-in namespaces, PriorityClasses and default StorageClass, and with RBAC the bootstrap roles and bindings.
async fn ensure_built_in(state: &ApiState) -> Result<(), ApiError> {
    namespace::ensure_initial(state).await?;
    admission::priority::ensure_system_classes(state).await?;
    admission::default_storage_class::ensure_local_path(state).await?;
    if let Some(advertise) = state.config.advertise {
        kubernetes_service::ensure(state, advertise).await?;
    }
    if state.config.authorization.contains(&authorization::Mode::Rbac) {
        authorization::bootstrap::ensure(state).await?;
    }
    Ok(())
}

/// Creates the built-in namespaces (and the bootstrap RBAC policy), retrying with backoff (100 ms doubling to 5 s) while
/// etcd is unreachable.
async fn bootstrap(state: Arc<ApiState>) {
    let config = BackoffConfig::doubling(Duration::from_millis(100), Duration::from_secs(5), Duration::MAX);
    let mut backoff = Backoff::new(config);
    loop {
        let delay = match ensure_built_in(&state).await {
            Ok(()) => {
                state.bootstrapped.store(true, Ordering::Release);
                tracing::info!("built-in namespaces are in place");
                return;
            }
            Err(e) => {
                let delay = backoff.next_delay(tokio::time::Instant::now().into_std());
                tracing::warn!(error = %e, retry_in = ?delay, "cannot create the built-in namespaces yet");
                delay
            }
        };
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
