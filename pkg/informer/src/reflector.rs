//! Reflector: keeps a local copy of one resource in step with the apiserver, by LIST then
//! WATCH, for as long as it runs.
//!
//! The protocol (client-go's `ListAndWatch`; kube-rs calls this the `watcher`):
//! 1. LIST in pages of [`ReflectorConfig::page_size`] (consistent reads; every page is served at
//!    the first page's revision) and hand the whole result over at once as [`Delta::Replace`].
//! 2. WATCH from the list's resourceVersion, with bookmarks, a random server-side timeout
//!    between [`ReflectorConfig::watch_timeout_min`] and `watch_timeout_max` (so that clients
//!    spread their reconnects), and a client-side [`ReflectorConfig::idle_timeout`] that notices
//!    a dead connection. Every object event and bookmark moves the resume point forward.
//! 3. When the stream ends after a healthy run, watch again at once from the last
//!    resourceVersion seen, without relisting. When it fails (connection refused or reset,
//!    idle timeout, a non-410 `ERROR` event, or an empty stream ending within a second), wait
//!    for the next [`Backoff`] delay first, then resume the same way.
//! 4. When the server says the resourceVersion is gone (HTTP 410, or an `ERROR` event with
//!    code 410, after a compaction), go back to 1: the new [`Delta::Replace`] lets the store
//!    work out what changed meanwhile, including objects deleted while we were away.
//!
//! What it keeps true (tests below and in `test/tests/informer_recovery.rs`):
//! - deltas come out in the server's order, which is resourceVersion order;
//! - a resume never skips a change: it starts right after the last resourceVersion seen;
//! - a relist happens only after a 410 (counted in `rkube_informer_relists_total`);
//! - one bad attempt never ends the loop; only the shutdown token does. An event that does not
//!   decode is logged and skipped (its object is corrected by its next event or relist).
//!
//! Not promised: seeing every intermediate state. A relist shows only the current state, so
//! changes made while disconnected past a compaction collapse into one update or one delete.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube_core::Resource;
use rand::Rng;
use rkube_client::{ListParams, WatchEvent, WatchParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::{Backoff, BackoffConfig};
use crate::error::{Error, Result};
use crate::lister_watcher::ListerWatcher;
use crate::metrics::ResourceMetrics;

/// A watch that ends sooner than this without a single event counts as a failure
/// (client-go's "very short watch"), so a server that closes every watch at once is not
/// hammered.
const VERY_SHORT_WATCH: Duration = Duration::from_secs(1);

/// How a reflector lists, watches and backs off. The defaults are client-go's.
#[derive(Clone, Debug, PartialEq)]
pub struct ReflectorConfig {
    /// Objects per LIST page (500); 0 lists everything in one response.
    pub page_size: u32,
    /// Shortest server-side watch timeout (`timeoutSeconds`) to pick (5 min).
    pub watch_timeout_min: Duration,
    /// Longest server-side watch timeout to pick (10 min).
    pub watch_timeout_max: Duration,
    /// A watch on which nothing arrives for this long, not even a bookmark, is treated as
    /// broken (3 min: three of the apiserver's default bookmark intervals).
    pub idle_timeout: Duration,
    /// Delays between failed attempts.
    pub backoff: BackoffConfig,
    /// Only objects whose labels match (`labelSelector`).
    pub label_selector: Option<String>,
    /// Only objects whose fields match (`fieldSelector`, e.g. `spec.nodeName=node-1`).
    pub field_selector: Option<String>,
}

impl Default for ReflectorConfig {
    fn default() -> Self {
        ReflectorConfig {
            page_size: 500,
            watch_timeout_min: Duration::from_secs(300),
            watch_timeout_max: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(180),
            backoff: BackoffConfig::default(),
            label_selector: None,
            field_selector: None,
        }
    }
}

/// One change the reflector hands to its store, in the server's order.
#[derive(Debug)]
pub enum Delta<K> {
    /// A complete, consistent list: the store must become exactly this.
    Replace(Vec<K>),
    /// A watch `ADDED` event.
    Added(K),
    /// A watch `MODIFIED` event.
    Modified(K),
    /// A watch `DELETED` event, carrying the object's last state.
    Deleted(K),
}

/// How one watch attempt ended.
enum Outcome {
    /// The shutdown token was cancelled.
    Cancelled,
    /// The stream ended normally; resume at once.
    Ended,
    /// Something failed; back off, then resume.
    Failed(Error),
    /// The resourceVersion expired; relist.
    Expired(Error),
}

/// Lists and watches one resource and hands every change to a sink.
/// client-go calls this `Reflector` too.
pub struct Reflector<K> {
    lister_watcher: Arc<dyn ListerWatcher<K>>,
    config: ReflectorConfig,
    metrics: ResourceMetrics,
    resource: String,
}

impl<K> Reflector<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + 'static,
{
    /// A reflector over `lister_watcher`, counting into `metrics`.
    pub fn new(lister_watcher: Arc<dyn ListerWatcher<K>>, config: ReflectorConfig, metrics: ResourceMetrics) -> Self {
        Reflector { lister_watcher, config, metrics, resource: K::plural(&()).into_owned() }
    }

    /// Lists, then watches, and hands every change to `sink`, until `shutdown` is cancelled.
    ///
    /// `sink` is called from this future only, one delta at a time, in the server's order. It
    /// should not block for long: the watch waits meanwhile.
    #[doc(alias = "ListAndWatch")]
    pub async fn run(self, mut sink: impl FnMut(Delta<K>) + Send, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(self.config.backoff.clone());
        // Where to resume watching; `None` means (re)list first.
        let mut resume: Option<String> = None;
        let mut watched_since_list = false;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let Some(mut resource_version) = resume.take() else {
                let listed = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    listed = self.list_all() => listed,
                };
                match listed {
                    Ok((objects, resource_version)) => {
                        tracing::debug!(resource = %self.resource, objects = objects.len(), %resource_version, "listed");
                        self.metrics.lists.inc();
                        self.metrics.resource_version(&resource_version);
                        sink(Delta::Replace(objects));
                        resume = Some(resource_version);
                        watched_since_list = false;
                    }
                    Err(error) => {
                        tracing::warn!(resource = %self.resource, error = %error_chain(&error), "list failed; backing off");
                        if !self.back_off(&mut backoff, &shutdown).await {
                            return;
                        }
                    }
                }
                continue;
            };
            let first_watch_after_list = !watched_since_list;
            if watched_since_list {
                self.metrics.reconnects.inc();
            }
            watched_since_list = true;
            let outcome = self.watch_once(&mut resource_version, &mut sink, &shutdown).await;
            match outcome {
                Outcome::Cancelled => return,
                Outcome::Ended => {
                    tracing::debug!(resource = %self.resource, %resource_version, "watch ended; resuming");
                    resume = Some(resource_version);
                }
                Outcome::Failed(error) => {
                    tracing::warn!(
                        resource = %self.resource, %resource_version, error = %error_chain(&error),
                        "watch failed; backing off, then resuming"
                    );
                    resume = Some(resource_version);
                    if !self.back_off(&mut backoff, &shutdown).await {
                        return;
                    }
                }
                Outcome::Expired(error) => {
                    tracing::info!(
                        resource = %self.resource, %resource_version, error = %error_chain(&error),
                        "resourceVersion expired; relisting"
                    );
                    self.metrics.relists.inc();
                    // Expired straight after a fresh list: the server is not keeping up with
                    // its own history; do not spin list after list.
                    if first_watch_after_list && !self.back_off(&mut backoff, &shutdown).await {
                        return;
                    }
                }
            }
        }
    }

    /// Every page of one LIST, and the list's resourceVersion.
    async fn list_all(&self) -> Result<(Vec<K>, String)> {
        let mut objects = Vec::new();
        let mut continue_token: Option<String> = None;
        loop {
            let params = ListParams {
                label_selector: self.config.label_selector.clone(),
                field_selector: self.config.field_selector.clone(),
                limit: (self.config.page_size > 0).then_some(self.config.page_size),
                continue_token: continue_token.take(),
                ..ListParams::default()
            };
            let page = self.lister_watcher.list_page(params).await.map_err(Error::List)?;
            objects.extend(page.items);
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => continue_token = Some(token),
                _ => {
                    let resource_version =
                        page.metadata.resource_version.filter(|rv| !rv.is_empty()).ok_or(Error::NoResourceVersion)?;
                    return Ok((objects, resource_version));
                }
            }
        }
    }

    /// One watch from `resource_version`, which follows every event and bookmark.
    async fn watch_once(
        &self,
        resource_version: &mut String,
        sink: &mut (impl FnMut(Delta<K>) + Send),
        shutdown: &CancellationToken,
    ) -> Outcome {
        let params = WatchParams {
            label_selector: self.config.label_selector.clone(),
            field_selector: self.config.field_selector.clone(),
            timeout: Some(self.random_watch_timeout()),
            bookmarks: true,
            send_initial_events: false,
        };
        let started = Instant::now();
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return Outcome::Cancelled,
            stream = self.lister_watcher.watch(params, resource_version.clone()) => stream,
        };
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(error) => return classify(Error::WatchStart(error)),
        };
        self.metrics.watches.inc();
        self.metrics.backoff.set(0.0);
        let idle = self.config.idle_timeout;
        let mut received = 0_u64;
        let outcome = loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break Outcome::Cancelled,
                next = tokio::time::timeout(idle, stream.next()) => next,
            };
            let event = match next {
                Err(_) => break Outcome::Failed(Error::WatchIdle(idle)),
                Ok(None) => {
                    let lasted = started.elapsed();
                    if received == 0 && lasted < VERY_SHORT_WATCH {
                        break Outcome::Failed(Error::VeryShortWatch(lasted));
                    }
                    break Outcome::Ended;
                }
                Ok(Some(Err(rkube_client::Error::Decode(message)))) => {
                    // The client skips the undecodable line and the stream goes on; so do we.
                    // Watching again would only fetch the same line again.
                    tracing::warn!(resource = %self.resource, %message, "skipping a watch event that does not decode");
                    continue;
                }
                Ok(Some(Err(error))) => break classify(Error::WatchStream(error)),
                Ok(Some(Ok(event))) => event,
            };
            received += 1;
            match event {
                WatchEvent::Added(object) => {
                    self.metrics.event("ADDED");
                    self.advance(resource_version, object.meta().resource_version.as_deref());
                    sink(Delta::Added(object));
                }
                WatchEvent::Modified(object) => {
                    self.metrics.event("MODIFIED");
                    self.advance(resource_version, object.meta().resource_version.as_deref());
                    sink(Delta::Modified(object));
                }
                WatchEvent::Deleted(object) => {
                    self.metrics.event("DELETED");
                    self.advance(resource_version, object.meta().resource_version.as_deref());
                    sink(Delta::Deleted(object));
                }
                WatchEvent::Bookmark(bookmark) => {
                    self.metrics.event("BOOKMARK");
                    self.advance(resource_version, Some(&bookmark.metadata.resource_version));
                }
                WatchEvent::Error(status) => {
                    self.metrics.event("ERROR");
                    if status.code == 410 {
                        break Outcome::Expired(Error::Expired(status.message));
                    }
                    break Outcome::Failed(Error::WatchEvent { code: status.code, message: status.message });
                }
            }
        };
        self.metrics.watch_duration.observe(started.elapsed().as_secs_f64());
        outcome
    }

    /// Moves the resume point to `seen`, when the event carried one.
    fn advance(&self, resource_version: &mut String, seen: Option<&str>) {
        match seen {
            Some(seen) if !seen.is_empty() => {
                seen.clone_into(resource_version);
                self.metrics.resource_version(seen);
            }
            _ => {
                tracing::warn!(resource = %self.resource, "watch event without a resourceVersion; keeping the last one")
            }
        }
    }

    /// Waits for the next backoff delay; `false` if shutdown came first.
    async fn back_off(&self, backoff: &mut Backoff, shutdown: &CancellationToken) -> bool {
        let delay = backoff.next_delay(Instant::now().into_std());
        self.metrics.backoff.set(delay.as_secs_f64());
        tracing::debug!(resource = %self.resource, ?delay, "backing off");
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// A server-side watch timeout in whole seconds, uniformly between the configured bounds.
    fn random_watch_timeout(&self) -> u32 {
        let min = self.config.watch_timeout_min.as_secs().max(1);
        let max = self.config.watch_timeout_max.as_secs().max(min);
        let seconds = rand::rng().random_range(min..=max);
        u32::try_from(seconds).unwrap_or(u32::MAX)
    }
}

/// Expired errors relist; everything else backs off and resumes.
fn classify(error: Error) -> Outcome {
    if error.is_expired() { Outcome::Expired(error) } else { Outcome::Failed(error) }
}

/// An error and its sources on one line, for logs.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;
    use crate::testing::{FakeApi, bookmark, config_map, eventually, expired, send};

    /// Runs a reflector over `api` and records its deltas as lines like `replace a@1 b@2`.
    struct Running {
        deltas: Arc<Mutex<Vec<String>>>,
        metrics: ResourceMetrics,
        shutdown: CancellationToken,
    }

    impl Running {
        fn start(api: &FakeApi, config: ReflectorConfig) -> Running {
            let metrics = ResourceMetrics::unregistered("configmaps").expect("metrics register in a fresh registry");
            let deltas = Arc::new(Mutex::new(Vec::new()));
            let shutdown = CancellationToken::new();
            let reflector = Reflector::<ConfigMap>::new(Arc::new(api.clone()), config, metrics.clone());
            let sink = {
                let deltas = Arc::clone(&deltas);
                move |delta: Delta<ConfigMap>| {
                    let line = match delta {
                        Delta::Replace(objects) => {
                            let names: Vec<String> = objects.iter().map(describe).collect();
                            format!("replace {}", names.join(" ")).trim_end().to_string()
                        }
                        Delta::Added(object) => format!("added {}", describe(&object)),
                        Delta::Modified(object) => format!("modified {}", describe(&object)),
                        Delta::Deleted(object) => format!("deleted {}", describe(&object)),
                    };
                    deltas.lock().expect("deltas lock").push(line);
                }
            };
            tokio::spawn(reflector.run(sink, shutdown.clone()));
            Running { deltas, metrics, shutdown }
        }

        async fn wait_for(&self, count: usize) -> Vec<String> {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let deltas = self.deltas.lock().expect("deltas lock").clone();
                if deltas.len() >= count || Instant::now() > deadline {
                    return deltas;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.shutdown.cancel();
        }
    }

    fn describe(object: &ConfigMap) -> String {
        format!(
            "{}@{}",
            object.metadata.name.as_deref().unwrap_or_default(),
            object.metadata.resource_version.as_deref().unwrap_or_default()
        )
    }

    fn quick_config() -> ReflectorConfig {
        ReflectorConfig {
            page_size: 2,
            backoff: BackoffConfig {
                initial: Duration::from_millis(5),
                max: Duration::from_millis(20),
                ..BackoffConfig::default()
            },
            ..ReflectorConfig::default()
        }
    }

    #[tokio::test]
    async fn a_list_follows_continue_tokens_in_pages_of_the_configured_size_and_is_handed_over_whole() {
        let api = FakeApi::default();
        api.push_list(vec![config_map("a", 1), config_map("b", 2)], "5", Some("page-2"));
        api.push_list(vec![config_map("c", 3)], "5", None);
        let running = Running::start(&api, quick_config());
        assert_eq!(running.wait_for(1).await, ["replace a@1 b@2 c@3"]);
        let pages: Vec<(Option<u32>, Option<String>)> =
            api.list_calls().into_iter().map(|params| (params.limit, params.continue_token)).collect();
        assert_eq!(pages, [(Some(2), None), (Some(2), Some("page-2".into()))]);
        eventually("the watch from the list's resourceVersion", || api.watch_calls() == ["5"]).await;
        assert_eq!(running.metrics.lists.get(), 1);
    }

    #[tokio::test]
    async fn a_broken_watch_resumes_from_the_last_resource_version_without_relisting() {
        let api = FakeApi::default();
        api.push_list(vec![config_map("a", 1)], "1", None);
        let first = api.push_watch();
        api.push_watch_error(rkube_client::Error::Unavailable("connection refused".into()));
        let second = api.push_watch();
        let running = Running::start(&api, quick_config());
        send(&first, WatchEvent::Added(config_map("b", 5)));
        send(&first, bookmark(9));
        first.unbounded_send(Err(rkube_client::Error::Unavailable("connection reset".into()))).expect("watching");
        eventually("the reconnects", || api.watch_calls().len() == 3).await;
        send(&second, WatchEvent::Modified(config_map("a", 10)));
        send(&second, WatchEvent::Deleted(config_map("b", 11)));
        assert_eq!(running.wait_for(4).await, ["replace a@1", "added b@5", "modified a@10", "deleted b@11"]);
        // Resumed from the bookmark, twice (after the broken stream, after the refused start).
        assert_eq!(api.watch_calls(), ["1", "9", "9"]);
        assert_eq!(running.metrics.lists.get(), 1);
        assert_eq!(running.metrics.relists.get(), 0);
        assert_eq!(running.metrics.reconnects.get(), 2);
        assert_eq!(running.metrics.watches.get(), 2);
    }

    #[tokio::test]
    async fn an_expired_watch_relists_and_watches_from_the_new_list() {
        let api = FakeApi::default();
        api.push_list(vec![config_map("a", 1)], "1", None);
        let feed = api.push_watch();
        api.push_list(vec![config_map("a", 4)], "6", None);
        let running = Running::start(&api, quick_config());
        send(&feed, WatchEvent::Modified(config_map("a", 4)));
        send(&feed, expired());
        assert_eq!(running.wait_for(3).await, ["replace a@1", "modified a@4", "replace a@4"]);
        eventually("the watch from the relist", || api.watch_calls() == ["1", "6"]).await;
        assert_eq!(running.metrics.relists.get(), 1);
    }

    #[tokio::test]
    async fn an_event_that_does_not_decode_is_skipped_and_the_watch_goes_on() {
        let api = FakeApi::default();
        api.push_list(vec![], "1", None);
        let feed = api.push_watch();
        let running = Running::start(&api, quick_config());
        feed.unbounded_send(Err(rkube_client::Error::Decode("not JSON".into()))).expect("still watching");
        send(&feed, WatchEvent::Added(config_map("a", 2)));
        assert_eq!(running.wait_for(2).await, ["replace", "added a@2"]);
        assert_eq!(api.watch_calls(), ["1"]);
        assert_eq!(running.metrics.reconnects.get(), 0);
    }

    #[tokio::test]
    async fn a_silent_watch_is_abandoned_after_the_idle_timeout_and_resumed() {
        let api = FakeApi::default();
        api.push_list(vec![], "7", None);
        let config = ReflectorConfig { idle_timeout: Duration::from_millis(30), ..quick_config() };
        let running = Running::start(&api, config);
        // With nothing scripted, every watch stays silent.
        eventually("several idle watches", || api.watch_calls().len() >= 3).await;
        assert!(api.watch_calls().iter().all(|rv| rv == "7"), "{:?}", api.watch_calls());
        assert_eq!(running.metrics.lists.get(), 1);
    }

    #[tokio::test]
    async fn a_watch_that_ends_at_once_without_events_counts_as_a_failure() {
        let api = FakeApi::default();
        api.push_list(vec![], "1", None);
        drop(api.push_watch());
        let backoff = BackoffConfig {
            initial: Duration::from_millis(300),
            max: Duration::from_millis(300),
            jitter: false,
            ..BackoffConfig::default()
        };
        let running = Running::start(&api, ReflectorConfig { backoff, ..quick_config() });
        eventually("the backoff after the empty watch", || running.metrics.backoff.get() > 0.0).await;
        assert_eq!(api.watch_calls(), ["1"], "no second watch before the backoff delay");
        eventually("the watch after the backoff", || api.watch_calls().len() == 2).await;
    }

    #[tokio::test]
    async fn a_failing_list_is_retried_with_growing_delays() {
        let api = FakeApi::default();
        let backoff = BackoffConfig {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(40),
            jitter: false,
            ..BackoffConfig::default()
        };
        let running = Running::start(&api, ReflectorConfig { backoff, ..quick_config() });
        let mut delays = Vec::new();
        eventually("the backoff to reach its cap", || {
            let delay = running.metrics.backoff.get();
            if delays.last() != Some(&delay) {
                delays.push(delay);
            }
            delay >= 0.04
        })
        .await;
        let waits: Vec<f64> = delays.iter().copied().filter(|delay| *delay > 0.0).collect();
        assert!(waits.len() >= 3, "10, 20, 40 ms: {delays:?}");
        assert!(waits.windows(2).all(|pair| pair[0] < pair[1]), "growing: {delays:?}");
        assert!((waits[0] - 0.01).abs() < 1e-6, "starting at 10 ms: {delays:?}");
        assert!(running.deltas.lock().expect("deltas lock").is_empty());
    }
}
