//! Shared by the `informer_*.rs` tests: clients, a recording handler, metric reads, and the
//! check every informer test ends with: the informer's store equals the server's state.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use rkube_client::{Api, Client, Config, ListParams};
use rkube_informer::ObjectKey;
use rkube_informer::backoff::BackoffConfig;
use rkube_informer::handler::{Deleted, EventHandler};
use rkube_informer::informer::InformerConfig;
use rkube_informer::reflector::ReflectorConfig;
use rkube_informer::store::Store;
use serde_json::Value;

/// A client for `url` whose rate limit never gets in a test's way.
pub fn client(url: &str) -> Client {
    let mut config = Config::new(url.parse().expect("the cluster URL parses"));
    config.qps = 100_000.0;
    config.burst = 100_000;
    Client::new(config).expect("client")
}

/// A ConfigMap `default/<name>` with `data`.
pub fn config_map(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(rkube_tests::resources::config_map("default", name, data)).expect("a ConfigMap")
}

/// Informer settings for tests: fast backoff (100 ms, capped at 2 s), defaults otherwise.
pub fn quick_config() -> InformerConfig {
    InformerConfig {
        reflector: ReflectorConfig {
            backoff: BackoffConfig {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(2),
                ..BackoffConfig::default()
            },
            ..ReflectorConfig::default()
        },
        resync_period: None,
    }
}

/// The value of the series `name{resource="configmaps", extra...}` in `registry`, or 0.
pub fn metric(registry: &prometheus::Registry, name: &str) -> f64 {
    for family in registry.gather() {
        if family.name() != name {
            continue;
        }
        for series in family.get_metric() {
            if series.get_label().iter().any(|label| label.name() == "resource" && label.value() == "configmaps") {
                return match family.get_field_type() {
                    prometheus::proto::MetricType::COUNTER => series.get_counter().get_value(),
                    _ => series.get_gauge().get_value(),
                };
            }
        }
    }
    0.0
}

/// What a handler was told about one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Add,
    Update,
    Delete,
    DeleteUnknown,
}

/// One handler call: the object's key, the call, the object's resourceVersion.
#[derive(Clone, Debug)]
pub struct Seen {
    pub key: String,
    pub kind: Kind,
    pub rv: u64,
}

/// A handler that records every call.
#[derive(Clone, Default)]
pub struct Recording {
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn rv_of(object: &ConfigMap) -> u64 {
    object.metadata.resource_version.as_deref().and_then(|rv| rv.parse().ok()).expect("numeric resourceVersion")
}

impl Recording {
    fn push(&self, object: &ConfigMap, kind: Kind) {
        let seen = Seen { key: ObjectKey::of(object).to_string(), kind, rv: rv_of(object) };
        self.seen.lock().expect("recording lock").push(seen);
    }

    /// Everything recorded so far, in call order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("recording lock").clone()
    }

    /// The calls for each key, in call order.
    pub fn by_key(&self) -> BTreeMap<String, Vec<Seen>> {
        let mut by_key: BTreeMap<String, Vec<Seen>> = BTreeMap::new();
        for seen in self.seen() {
            by_key.entry(seen.key.clone()).or_default().push(seen);
        }
        by_key
    }
}

impl EventHandler<ConfigMap> for Recording {
    fn on_add(&self, object: &Arc<ConfigMap>) {
        self.push(object, Kind::Add);
    }

    fn on_update(&self, _old: &Arc<ConfigMap>, new: &Arc<ConfigMap>) {
        self.push(new, Kind::Update);
    }

    fn on_delete(&self, deleted: Deleted<ConfigMap>) {
        let kind = if deleted.is_final_state_unknown() { Kind::DeleteUnknown } else { Kind::Delete };
        self.push(deleted.object(), kind);
    }
}

/// The server's ConfigMaps in `default`, by key, from one consistent (paged) list.
pub async fn server_state(api: &Api<ConfigMap>) -> BTreeMap<String, ConfigMap> {
    let list = api.list_all(&ListParams::default()).await.expect("list the server's state");
    list.items.into_iter().map(|object| (ObjectKey::of(&object).to_string(), object)).collect()
}

/// What differs between the store and the server (empty when they are equal).
fn differences(store: &Store<ConfigMap>, server: &BTreeMap<String, ConfigMap>) -> Vec<String> {
    let mut differences = Vec::new();
    let cached: HashMap<String, Arc<ConfigMap>> =
        store.list().into_iter().map(|object| (ObjectKey::of(object.as_ref()).to_string(), object)).collect();
    for (key, object) in server {
        match cached.get(key) {
            None => differences.push(format!("{key}: on the server (rv {}), not in the store", rv_of(object))),
            Some(cached) if cached.as_ref() != object => {
                differences.push(format!("{key}: store has rv {}, server rv {}", rv_of(cached), rv_of(object)))
            }
            Some(_) => {}
        }
    }
    for (key, object) in &cached {
        if !server.contains_key(key) {
            differences.push(format!("{key}: in the store (rv {}), not on the server", rv_of(object)));
        }
    }
    differences.sort();
    differences
}

/// Waits until the informer's store equals the server's state, object for object (every field,
/// resourceVersion included), and returns that state; panics with the differences otherwise.
pub async fn assert_store_matches_server(
    store: &Store<ConfigMap>,
    api: &Api<ConfigMap>,
    limit: Duration,
) -> BTreeMap<String, ConfigMap> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let server = server_state(api).await;
        let differences = differences(store, &server);
        if differences.is_empty() {
            return server;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "the store still differs from the server after {limit:?} ({} differences):\n{}",
                differences.len(),
                differences.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks what a handler saw against the server's final state: per object, calls in
/// resourceVersion order (a relist's FinalStateUnknown delete repeats the last known version),
/// no update or delete of an object the handler was not told about, and the last call showing
/// the object's final state: its current version, or a delete if it is gone.
pub fn check_handler_saw_final_states_in_order(
    recording: &Recording,
    server: &BTreeMap<String, ConfigMap>,
) -> Result<(), String> {
    let by_key = recording.by_key();
    for (key, calls) in &by_key {
        let mut present = false;
        let mut last_rv = 0;
        for call in calls {
            let fine = match call.kind {
                Kind::Add => !present && call.rv > last_rv,
                Kind::Update | Kind::Delete => present && call.rv > last_rv,
                // A FinalStateUnknown delete carries the last state the handler was told.
                Kind::DeleteUnknown => present && call.rv == last_rv,
            };
            if !fine {
                return Err(format!("{key}: {:?} at rv {} after rv {last_rv}: {calls:?}", call.kind, call.rv));
            }
            last_rv = call.rv;
            present = matches!(call.kind, Kind::Add | Kind::Update);
        }
        match server.get(key) {
            Some(object) if !present => {
                return Err(format!(
                    "{key}: on the server at rv {}, but the handler's last call was a delete",
                    rv_of(object)
                ));
            }
            Some(object) if last_rv != rv_of(object) => {
                return Err(format!("{key}: the handler's last state is rv {last_rv}, the server's {}", rv_of(object)));
            }
            None if present => return Err(format!("{key}: gone from the server, but the handler was not told")),
            _ => {}
        }
    }
    if let Some(key) = server.keys().find(|key| !by_key.contains_key(*key)) {
        return Err(format!("{key}: on the server, never reached the handler"));
    }
    Ok(())
}

/// Waits until [`check_handler_saw_final_states_in_order`] passes (handlers run a little behind
/// the store); panics with its complaint otherwise.
pub async fn assert_handler_saw_final_states_in_order(
    recording: &Recording,
    server: &BTreeMap<String, ConfigMap>,
    limit: Duration,
) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match check_handler_saw_final_states_in_order(recording, server) {
            Ok(()) => return,
            Err(complaint) if tokio::time::Instant::now() > deadline => {
                panic!("the handler's view is wrong after {limit:?}: {complaint}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
