//! Informers through failures, against a real apiserver and etcd: the apiserver killed and
//! restarted mid-watch, etcd stopped and restarted, a compaction while disconnected (410 →
//! relist), many writers racing forced disconnects, and the backoff while the apiserver is down.
//! Most run against the apiserver as it ships (with its watch cache); those about resuming from
//! etcd's own history across apiserver restarts run with `--watch-cache=false`, and their
//! cached counterparts say what the cache changes.
//!
//! Writes that must happen while the informer's apiserver is down go through a second
//! apiserver on the same etcd. Every test ends with the informer's store equal to the server's
//! state, object for object.

mod informer_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use informer_support::{
    Kind, Recording, assert_handler_saw_final_states_in_order, assert_store_matches_server, client, config_map, metric,
    quick_config,
};
use k8s_openapi::api::core::v1::ConfigMap;
use rkube_client::{Api, DeleteParams, PostParams};
use rkube_informer::ObjectKey;
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::informer::{InformerConfig, SharedInformer};
use rkube_tests::{ApiServer, Cluster, Method, StatusCode};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Bookmarks every second keep the informer's resourceVersion fresh on a quiet resource.
const APISERVER_ARGS: &[&str] = &["--watch-bookmark-interval-seconds", "1"];

/// The same without the watch cache: every watch is an etcd watch, so a restarted apiserver
/// still serves a watch from any revision etcd keeps (with the cache, a restarted apiserver's
/// window starts at its first list, and an older resourceVersion is answered 410).
const APISERVER_WITHOUT_CACHE: &[&str] = &["--watch-bookmark-interval-seconds", "1", "--watch-cache=false"];

/// How long a step of a test may take.
const WAIT: Duration = Duration::from_secs(30);

/// A cluster, an API for writes, and a synced ConfigMap informer in `default` with a recording
/// handler.
struct Setup {
    cluster: Cluster,
    api: Api<ConfigMap>,
    registry: prometheus::Registry,
    informer: SharedInformer<ConfigMap>,
    recording: Recording,
    shutdown: CancellationToken,
    // Keeps the informers alive.
    _factory: SharedInformerFactory,
}

impl Setup {
    async fn start(config: InformerConfig, initial: usize) -> Setup {
        Setup::start_with(APISERVER_ARGS, config, initial).await
    }

    async fn start_with(args: &[&str], config: InformerConfig, initial: usize) -> Setup {
        let cluster = Cluster::start_with_args(args).await.expect("cluster starts");
        let api = Api::<ConfigMap>::namespaced(client(cluster.url()), "default");
        for i in 0..initial {
            create(&api, &format!("initial-{i}")).await;
        }
        let registry = prometheus::Registry::new();
        let factory =
            SharedInformerFactory::new(client(cluster.url()), &registry).expect("factory").with_config(config);
        let informer = factory.informer::<ConfigMap>(Some("default"));
        let recording = Recording::default();
        informer.add_handler(recording.clone());
        let shutdown = CancellationToken::new();
        factory.start(&shutdown);
        assert!(tokio::time::timeout(Duration::from_secs(30), informer.wait_for_sync()).await.expect("syncs in time"));
        Setup { cluster, api, registry, informer, recording, shutdown, _factory: factory }
    }

    fn metric(&self, name: &str) -> f64 {
        metric(&self.registry, name)
    }

    /// Waits until the informer's watch has broken and a new one failed to start: it backs off
    /// (the gauge is set at a failure and cleared when a watch starts).
    async fn wait_until_backing_off(&self) {
        rkube_tests::eventually(WAIT, "the informer to back off after losing its watch", || async {
            (self.metric("rkube_informer_backoff_seconds") > 0.0).then_some(())
        })
        .await;
    }

    /// Waits until the informer watches again after an outage (the backoff gauge is cleared when
    /// a watch starts).
    async fn wait_until_watching(&self) {
        rkube_tests::eventually(WAIT, "the informer to watch again", || async {
            (self.metric("rkube_informer_backoff_seconds") == 0.0).then_some(())
        })
        .await;
    }

    /// Store equals server, and the handler saw every final state in order.
    async fn assert_converged(&self) {
        let server = assert_store_matches_server(&self.informer.store(), &self.api, Duration::from_secs(30)).await;
        assert_handler_saw_final_states_in_order(&self.recording, &server, Duration::from_secs(10)).await;
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn create(api: &Api<ConfigMap>, name: &str) {
    api.create(&PostParams::default(), &config_map(name, json!({ "v": "0" })))
        .await
        .unwrap_or_else(|error| panic!("create {name}: {error}"));
}

async fn update(api: &Api<ConfigMap>, name: &str, value: &str) {
    let mut object = api.get(name).await.unwrap_or_else(|error| panic!("get {name}: {error}"));
    object.data.get_or_insert_default().insert("v".into(), value.into());
    api.replace(name, &PostParams::default(), &object).await.unwrap_or_else(|error| panic!("update {name}: {error}"));
}

async fn delete(api: &Api<ConfigMap>, name: &str) {
    api.delete(name, &DeleteParams::default()).await.unwrap_or_else(|error| panic!("delete {name}: {error}"));
}

#[tokio::test]
async fn the_apiserver_killed_mid_watch_is_resumed_without_relisting() {
    let mut setup = Setup::start_with(APISERVER_WITHOUT_CACHE, quick_config(), 20).await;
    create(&setup.api, "live-1").await;
    // Writes while the informer's apiserver is down go through a second one.
    let other = ApiServer::start(&setup.cluster.etcd, APISERVER_WITHOUT_CACHE).await.expect("second apiserver");
    let other_api = Api::<ConfigMap>::namespaced(client(&other.url), "default");
    for round in 0..2 {
        setup.cluster.apiserver.kill();
        create(&other_api, &format!("while-down-{round}")).await;
        update(&other_api, "initial-1", &format!("down-{round}")).await;
        delete(&other_api, &format!("initial-{}", 10 + round)).await;
        setup.wait_until_backing_off().await;
        setup.cluster.apiserver.restart().await.expect("apiserver restarts");
        create(&setup.api, &format!("after-restart-{round}")).await;
        setup.assert_converged().await;
    }
    assert_eq!(setup.metric("rkube_informer_relists_total"), 0.0, "resumed from the last resourceVersion");
    assert_eq!(setup.metric("rkube_informer_lists_total"), 1.0);
    assert!(setup.metric("rkube_informer_reconnects_total") >= 2.0);
    let deletes = setup.recording.seen().into_iter().filter(|seen| seen.kind == Kind::Delete).count();
    assert_eq!(deletes, 2, "deletes seen as watch events, not inferred from a relist");
}

#[tokio::test]
async fn etcd_stopped_for_seconds_and_restarted_is_survived() {
    let mut setup = Setup::start_with(APISERVER_WITHOUT_CACHE, quick_config(), 10).await;
    setup.cluster.etcd.stop().await;
    // The outage is seen by the apiserver (not ready) and, through it, by the informer (its
    // watch ended and a new one cannot start).
    let api = rkube_tests::Api::new(setup.cluster.url());
    rkube_tests::eventually(WAIT, "/readyz to report 503 without etcd", || async {
        (api.send(Method::GET, "/readyz", &[], None).await.status == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
    setup.wait_until_backing_off().await;
    setup.cluster.etcd.restart().await.expect("etcd restarts");
    // The apiserver reconnects to etcd by itself; writes succeed again soon.
    rkube_tests::eventually(Duration::from_secs(20), "writes to work again", || async {
        setup.api.create(&PostParams::default(), &config_map("after-outage", json!({}))).await.ok()
    })
    .await;
    update(&setup.api, "initial-2", "after").await;
    delete(&setup.api, "initial-3").await;
    setup.assert_converged().await;
    assert_eq!(setup.metric("rkube_informer_relists_total"), 0.0, "etcd kept its history: no relist");
}

#[tokio::test]
async fn with_a_watch_cache_an_etcd_outage_does_not_break_the_informers_watch() {
    let mut setup = Setup::start(quick_config(), 10).await;
    let reconnects = setup.metric("rkube_informer_reconnects_total");
    setup.cluster.etcd.stop().await;
    let api = rkube_tests::Api::new(setup.cluster.url());
    rkube_tests::eventually(WAIT, "/readyz to report 503 without etcd", || async {
        (api.send(Method::GET, "/readyz", &[], None).await.status == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
    setup.cluster.etcd.restart().await.expect("etcd restarts");
    rkube_tests::eventually(Duration::from_secs(20), "writes to work again", || async {
        setup.api.create(&PostParams::default(), &config_map("after-outage", json!({}))).await.ok()
    })
    .await;
    update(&setup.api, "initial-2", "after").await;
    delete(&setup.api, "initial-3").await;
    setup.assert_converged().await;
    // The watch cache resumed its own etcd watch; the informer's watch never ended.
    assert_eq!(setup.metric("rkube_informer_reconnects_total"), reconnects, "the informer's watch stayed open");
    assert_eq!(setup.metric("rkube_informer_relists_total"), 0.0, "no relist");
}

#[tokio::test]
async fn with_a_watch_cache_a_restarted_apiserver_makes_the_informer_relist_once_and_converge() {
    let mut setup = Setup::start(quick_config(), 10).await;
    let other = ApiServer::start(&setup.cluster.etcd, APISERVER_ARGS).await.expect("second apiserver");
    let other_api = Api::<ConfigMap>::namespaced(client(&other.url), "default");
    setup.cluster.apiserver.kill();
    create(&other_api, "while-down").await;
    update(&other_api, "initial-1", "down").await;
    delete(&other_api, "initial-2").await;
    setup.wait_until_backing_off().await;
    setup.cluster.apiserver.restart().await.expect("apiserver restarts");
    create(&setup.api, "after-restart").await;
    setup.assert_converged().await;
    // The restarted apiserver's cache starts its window at its own first list: the informer's
    // resourceVersion is older, so it is answered 410 and relists, once (as with Kubernetes).
    assert_eq!(setup.metric("rkube_informer_relists_total"), 1.0, "one relist after the restart");
}

#[tokio::test]
async fn a_compaction_while_disconnected_relists_and_reports_vanished_objects_as_final_state_unknown() {
    let mut setup = Setup::start(quick_config(), 10).await;
    let other = ApiServer::start(&setup.cluster.etcd, APISERVER_ARGS).await.expect("second apiserver");
    let other_api = Api::<ConfigMap>::namespaced(client(&other.url), "default");
    // The informer has seen initial-0's first version; remember it to check the tombstone.
    let initial_0 = ObjectKey::new(Some("default"), "initial-0");
    let last_known_rv = setup.informer.store().get(&initial_0).expect("cached").metadata.resource_version.clone();

    setup.cluster.apiserver.kill();
    for i in 0..3 {
        update(&other_api, &format!("initial-{i}"), "changed").await;
        delete(&other_api, &format!("initial-{i}")).await;
    }
    update(&other_api, "initial-4", "changed").await;
    create(&other_api, "created-while-away").await;
    let revision = setup.cluster.etcd.current_revision().await.expect("etcd revision");
    setup.cluster.etcd.compact(revision).await.expect("compaction");
    setup.cluster.apiserver.restart().await.expect("apiserver restarts");

    setup.assert_converged().await;
    assert_eq!(setup.metric("rkube_informer_relists_total"), 1.0, "410 after the compaction → one relist");
    let seen = setup.recording.seen();
    let unknown: Vec<&str> =
        seen.iter().filter(|seen| seen.kind == Kind::DeleteUnknown).map(|seen| seen.key.as_str()).collect();
    assert_eq!(unknown.len(), 3, "{seen:?}");
    for i in 0..3 {
        assert!(unknown.contains(&format!("default/initial-{i}").as_str()), "{unknown:?}");
    }
    let tombstone = seen.iter().find(|seen| seen.key == "default/initial-0" && seen.kind == Kind::DeleteUnknown);
    assert_eq!(
        tombstone.map(|seen| seen.rv.to_string()),
        last_known_rv,
        "the tombstone carries the last state the informer knew"
    );
}

/// A small deterministic random number generator (xorshift64*), one per writer.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % sides
    }
}

/// Random creates, updates and deletes on a shared pool of names until `stop`, counting each
/// one that succeeds in `writes`; conflicts and races with the other writers are expected and
/// ignored.
async fn write_randomly(api: Api<ConfigMap>, seed: u64, writes: Arc<AtomicUsize>, stop: CancellationToken) {
    let mut dice = Dice(seed);
    while !stop.is_cancelled() {
        let name = format!("pool-{}", dice.roll(30));
        let done = match dice.roll(3) {
            0 => api.create(&PostParams::default(), &config_map(&name, json!({ "v": "0" }))).await.is_ok(),
            1 => match api.get(&name).await {
                Ok(mut object) => {
                    object.data.get_or_insert_default().insert("v".into(), dice.roll(1000).to_string());
                    api.replace(&name, &PostParams::default(), &object).await.is_ok()
                }
                Err(_) => false,
            },
            _ => api.delete(&name, &DeleteParams::default()).await.is_ok(),
        };
        if done {
            writes.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Waits until `writes` has grown by `more` from `from`.
async fn wait_for_writes(writes: &AtomicUsize, from: usize, more: usize, phase: &str) {
    rkube_tests::eventually(WAIT, &format!("{more} more successful writes {phase}"), || async {
        (writes.load(Ordering::Relaxed) >= from + more).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_writers_and_forced_disconnects_leave_handlers_with_every_final_state_in_order() {
    // Without the watch cache: the test counts on a restarted apiserver resuming watches from
    // any revision etcd keeps (no relist).
    let mut config = quick_config();
    // Short server-side timeouts: watches also end normally and resume.
    config.reflector.watch_timeout_min = Duration::from_secs(2);
    config.reflector.watch_timeout_max = Duration::from_secs(3);
    let mut setup = Setup::start_with(APISERVER_WITHOUT_CACHE, config, 0).await;
    let other = ApiServer::start(&setup.cluster.etcd, APISERVER_WITHOUT_CACHE).await.expect("second apiserver");
    let stop = CancellationToken::new();
    let writes = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|seed| {
            let api = Api::<ConfigMap>::namespaced(client(&other.url), "default");
            tokio::spawn(write_randomly(api, 0x9e37_79b9_7f4a_7c15 ^ (seed + 1), writes.clone(), stop.clone()))
        })
        .collect();
    // Each phase lasts a number of writes, not of milliseconds, and a different one each round:
    // the informer watches while the writers race it, then misses writes while its apiserver is
    // down (they go through the other one) and has to resume past them.
    for round in 0..4_usize {
        setup.wait_until_watching().await;
        wait_for_writes(&writes, writes.load(Ordering::Relaxed), 150 + 50 * round, "while the informer watches").await;
        setup.cluster.apiserver.kill();
        setup.wait_until_backing_off().await;
        wait_for_writes(&writes, writes.load(Ordering::Relaxed), 75 + 75 * round, "while it is cut off").await;
        setup.cluster.apiserver.restart().await.expect("apiserver restarts");
    }
    setup.wait_until_watching().await;
    wait_for_writes(&writes, writes.load(Ordering::Relaxed), 150, "after the last restart").await;
    stop.cancel();
    for writer in writers {
        writer.await.expect("writer task");
    }
    eprintln!("{} successful writes", writes.load(Ordering::Relaxed));
    setup.assert_converged().await;
    assert!(setup.metric("rkube_informer_reconnects_total") >= 4.0);
    assert_eq!(setup.metric("rkube_informer_relists_total"), 0.0, "no compaction, so no relist");
}

#[tokio::test]
async fn backoff_grows_and_is_capped_while_the_apiserver_is_down() {
    let mut setup = Setup::start(quick_config(), 3).await;
    assert_eq!(setup.metric("rkube_informer_backoff_seconds"), 0.0);
    setup.cluster.apiserver.kill();
    // Delays 0.1, 0.2, 0.4, 0.8, 1.6 s (each up to twice that with jitter), then the 2 s cap.
    // Sampled every 20 ms (well under the first delay) until the cap is reached, then through
    // two more attempts at the cap, which must not move it.
    let backoff = quick_config().reflector.backoff;
    let (initial, cap) = (backoff.initial.as_secs_f64(), backoff.max.as_secs_f64());
    let mut delays: Vec<f64> = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut capped_at: Option<tokio::time::Instant> = None;
    while capped_at.is_none_or(|at| at.elapsed() < backoff.max * 2) {
        assert!(tokio::time::Instant::now() < deadline, "no {cap} s cap within {WAIT:?}: {delays:?}");
        let delay = setup.metric("rkube_informer_backoff_seconds");
        if delays.last() != Some(&delay) {
            delays.push(delay);
        }
        if delay == cap && capped_at.is_none() {
            capped_at = Some(tokio::time::Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("backoff delays seen: {delays:?}");
    let waits: Vec<f64> = delays.iter().copied().filter(|delay| *delay > 0.0).collect();
    assert!(waits.len() >= 4, "several growing delays: {delays:?}");
    assert!(waits.windows(2).all(|pair| pair[0] <= pair[1]), "delays never shrink while down: {delays:?}");
    assert!(waits.iter().all(|delay| *delay <= cap), "no delay above the {cap} s cap: {delays:?}");
    assert_eq!(waits.last(), Some(&cap), "the delay stays at the cap: {delays:?}");
    assert!(waits[0] < 4.0 * initial, "the first delays are about the initial {initial} s: {delays:?}");

    setup.cluster.apiserver.restart().await.expect("apiserver restarts");
    create(&setup.api, "after-outage").await;
    setup.assert_converged().await;
    rkube_tests::eventually(Duration::from_secs(5), "the backoff gauge to drop to 0", || async {
        (setup.metric("rkube_informer_backoff_seconds") == 0.0).then_some(())
    })
    .await;
    assert_eq!(setup.metric("rkube_informer_relists_total"), 0.0);
}
