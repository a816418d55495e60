//! Informers against a real apiserver and etcd: the initial sync of 10,000 ConfigMaps through
//! paged lists, and a factory sharing one informer per (type, namespace).

mod informer_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use informer_support::{
    Recording, assert_handler_saw_final_states_in_order, assert_store_matches_server, client, config_map, metric,
    quick_config,
};
use k8s_openapi::api::core::v1::ConfigMap;
use rkube_client::{Api, ListParams, ObjectList, PostParams, WatchParams, WatchStream};
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::informer::SharedInformer;
use rkube_informer::lister_watcher::ListerWatcher;
use rkube_informer::metrics::InformerMetrics;
use rkube_tests::Cluster;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The real API, counting the LIST pages the reflector asks for.
struct CountingPages {
    api: Api<ConfigMap>,
    pages: Arc<AtomicUsize>,
}

impl ListerWatcher<ConfigMap> for CountingPages {
    fn list_page(&self, params: ListParams) -> BoxFuture<'static, rkube_client::Result<ObjectList<ConfigMap>>> {
        self.pages.fetch_add(1, Ordering::SeqCst);
        self.api.list_page(params)
    }

    fn watch(
        &self,
        params: WatchParams,
        rv: String,
    ) -> BoxFuture<'static, rkube_client::Result<WatchStream<ConfigMap>>> {
        ListerWatcher::watch(&self.api, params, rv)
    }
}

async fn create_config_maps(api: &Api<ConfigMap>, names: impl Iterator<Item = String>) {
    futures::stream::iter(names)
        .map(|name| async move {
            api.create(&PostParams::default(), &config_map(&name, json!({ "n": name })))
                .await
                .unwrap_or_else(|error| panic!("create {name}: {error}"))
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_sync_of_10000_config_maps_goes_through_paged_lists() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::<ConfigMap>::namespaced(client(cluster.url()), "default");
    let started = Instant::now();
    create_config_maps(&api, (0..10_000).map(|i| format!("cm-{i:05}"))).await;
    eprintln!("created 10,000 ConfigMaps in {:?}", started.elapsed());

    let registry = prometheus::Registry::new();
    let metrics = InformerMetrics::register(&registry).expect("metrics register");
    let pages = Arc::new(AtomicUsize::new(0));
    let informer = SharedInformer::new(
        CountingPages { api: api.clone(), pages: Arc::clone(&pages) },
        quick_config(),
        metrics.resource("configmaps"),
    );
    let recording = Recording::default();
    informer.add_handler(recording.clone());
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    informer.start(shutdown.clone());
    let synced = tokio::time::timeout(Duration::from_secs(60), informer.wait_for_sync()).await;
    assert_eq!(synced, Ok(true), "the informer syncs");
    eprintln!("synced 10,000 ConfigMaps in {:?}", started.elapsed());

    assert_eq!(informer.store().len(), 10_000);
    assert_eq!(pages.load(Ordering::SeqCst), 20, "10,000 objects in pages of 500");
    assert_eq!(metric(&registry, "rkube_informer_lists_total"), 1.0);
    let server = assert_store_matches_server(&informer.store(), &api, Duration::from_secs(10)).await;
    assert_handler_saw_final_states_in_order(&recording, &server, Duration::from_secs(10)).await;
    shutdown.cancel();
}

#[tokio::test]
async fn a_factory_shares_one_informer_per_type_and_namespace() {
    let cluster = Cluster::start_with_args(&["--watch-bookmark-interval-seconds", "1"]).await.expect("cluster starts");
    let client = client(cluster.url());
    let api = Api::<ConfigMap>::namespaced(client.clone(), "default");
    create_config_maps(&api, (0..3).map(|i| format!("before-{i}"))).await;

    let registry = prometheus::Registry::new();
    let factory = SharedInformerFactory::new(client, &registry).expect("factory").with_config(quick_config());
    assert!(SharedInformerFactory::new(client_for_error(), &registry).is_err(), "metrics register once per registry");
    let first = factory.informer::<ConfigMap>(Some("default"));
    let second = factory.informer::<ConfigMap>(Some("default"));
    let everywhere = factory.informer::<ConfigMap>(None);
    let (one, two) = (Recording::default(), Recording::default());
    first.add_handler(one.clone());
    second.add_handler(two.clone());
    let shutdown = CancellationToken::new();
    factory.start(&shutdown);
    factory.start(&shutdown);
    assert!(tokio::time::timeout(Duration::from_secs(30), factory.wait_for_cache_sync()).await.expect("syncs in time"));
    assert!(first.has_synced() && second.has_synced() && everywhere.has_synced());
    create_config_maps(&api, (0..3).map(|i| format!("after-{i}"))).await;

    let server = assert_store_matches_server(&first.store(), &api, Duration::from_secs(10)).await;
    assert_store_matches_server(&everywhere.store(), &api, Duration::from_secs(10)).await;
    for recording in [&one, &two] {
        assert_handler_saw_final_states_in_order(recording, &server, Duration::from_secs(10)).await;
        assert_eq!(recording.seen().len(), 6, "each object once per handler");
    }
    // One list per informer: `default` and all namespaces, however many handlers and starts.
    assert_eq!(metric(&registry, "rkube_informer_lists_total"), 2.0);
    assert_eq!(metric(&registry, "rkube_informer_watches_total"), 2.0);
    shutdown.cancel();
}

/// Any client: the factory fails before using it.
fn client_for_error() -> rkube_client::Client {
    client("http://127.0.0.1:1")
}
