//! Watch: a chunked stream of newline-delimited `{"type", "object"}` events.
//!
//! What it keeps true:
//! - from `resourceVersion=N`, every change after N is sent once, in etcd's order;
//! - without a resourceVersion (or with `0`), and with `sendInitialEvents=true`, the current
//!   objects come first as `ADDED`; with `sendInitialEvents=true` they are followed by a
//!   `BOOKMARK` annotated `k8s.io/initial-events-end: "true"` (kubectl's watch-list);
//! - selectors apply to both states of a change: an object that starts matching arrives as
//!   `ADDED`, one that stops matching as `DELETED`;
//! - a compacted resourceVersion yields one `ERROR` event carrying a 410 `Expired` Status;
//! - with `allowWatchBookmarks=true`, a quiet watch gets periodic `BOOKMARK`s with the
//!   current resourceVersion, so clients can resume without relisting.
//!
//! Not promised: a stream lasts forever; it ends after `timeoutSeconds` (default 30 to 60
//! minutes), when etcd breaks the watch, when the watcher does not keep up with the changes
//! (its queue in the watch cache fills), or at shutdown, and clients resume from the last
//! resourceVersion they saw.
//!
//! Served from the resource's watch cache ([`crate::cacher`]) whenever it is ready: no etcd
//! watch per client, the same encoded object for every watcher. When it is not (disabled, or
//! still listing at start-up), straight from an etcd watch, with the same promises.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use rkube_api::registry::ResourceDef;
use rkube_storage::{ListOptions, WatchEvent};
use serde_json::{Value, json};

use crate::ApiState;
use crate::cacher::{CachedEvent, Cacher, Start};
use crate::error::ApiError;
use crate::frames::Frames;
use crate::metadata::{from_storage, set_resource_version};
use crate::request::{Query, Rendering, ResourceRequest};
use crate::rest::{self, Filter};
use crate::stored::StoredObject;
use crate::table;

/// Where a watch starts, from `resourceVersion` and `sendInitialEvents` (Kubernetes'
/// semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WatchStart {
    /// No resourceVersion: the current objects first, as fresh as a consistent read.
    Consistent,
    /// `resourceVersion=0`: the current objects first, from any state the server has.
    Any,
    /// `sendInitialEvents=true` with `resourceVersion=N`: the current objects first, from a
    /// state at N or later.
    NotOlderThan(i64),
    /// `resourceVersion=N`: every change after N.
    After(i64),
}

/// Options of one watch, read from the query.
struct WatchParams {
    filter: Filter,
    start: WatchStart,
    /// Mark the end of the initial objects with an annotated bookmark.
    initial_end_bookmark: bool,
    bookmarks: bool,
    timeout: Duration,
}

impl WatchParams {
    fn from_query(res: &ResourceDef, query: &Query, min_timeout: Duration) -> Result<Self, ApiError> {
        let filter = Filter::from_query(res, query)?;
        let send_initial = query.flag("sendInitialEvents");
        if send_initial && query.get("resourceVersionMatch") != Some("NotOlderThan") {
            return Err(ApiError::BadRequest(
                "sendInitialEvents=true requires resourceVersionMatch=NotOlderThan".into(),
            ));
        }
        let rv = query.get("resourceVersion").map(rest::parse_rv).transpose()?;
        let start = match (send_initial, rv) {
            (_, None) => WatchStart::Consistent,
            (_, Some(0)) => WatchStart::Any,
            (true, Some(rv)) => WatchStart::NotOlderThan(rv),
            (false, Some(rv)) => WatchStart::After(rv),
        };
        let timeout = match query.int("timeoutSeconds")? {
            Some(secs) if secs > 0 => Duration::from_secs(secs.unsigned_abs()),
            // Like Kubernetes' --min-request-timeout: a random time between it and twice it, so
            // that clients do not all reconnect at once.
            _ => min_timeout.mul_f64(1.0 + rand::random::<f64>()),
        };
        Ok(WatchParams {
            filter,
            start,
            initial_end_bookmark: send_initial,
            bookmarks: query.flag("allowWatchBookmarks"),
            timeout,
        })
    }
}

/// Starts a watch and returns the streaming response.
pub async fn watch(
    state: Arc<ApiState>,
    req: ResourceRequest,
    query: &Query,
    rendering: Rendering,
) -> Result<Response, ApiError> {
    let view = req.resource;
    watch_as(state, req, query, rendering, view).await
}

/// A watch of `req`'s resource whose objects are shown as `view` shows them (the same resource,
/// or one stored as it: see [`crate::conversion`]).
pub async fn watch_as(
    state: Arc<ApiState>,
    req: ResourceRequest,
    query: &Query,
    rendering: Rendering,
    view: &'static ResourceDef,
) -> Result<Response, ApiError> {
    let res = req.resource;
    let mut params = WatchParams::from_query(res, query, state.config.min_request_timeout)?;
    let prefix = rest::prefix(&state, &req);
    if let Some(cacher) = state.cacher(res).filter(|c| c.is_ready()) {
        match watch_cache(&state, cacher, &prefix, params, (rendering, view)).await? {
            Ok(response) => return Ok(response),
            Err(handed_back) => params = handed_back,
        }
    }
    watch_etcd(state, res, &prefix, params, (rendering, view)).await
}

/// A watch served straight from an etcd watch (the watch cache is disabled or not ready).
async fn watch_etcd(
    state: Arc<ApiState>,
    res: &'static ResourceDef,
    prefix: &str,
    params: WatchParams,
    (rendering, view): (Rendering, &'static ResourceDef),
) -> Result<Response, ApiError> {
    let prefix = prefix.to_string();
    let mut first: Vec<Bytes> = Vec::new();
    let start = match params.start {
        WatchStart::After(rv) => rv,
        WatchStart::Consistent | WatchStart::Any | WatchStart::NotOlderThan(_) => {
            // etcd's latest state is at least as fresh as any of them asks.
            let page = state.store.list(&prefix, ListOptions::default()).await?;
            for kv in &page.items {
                let obj = from_storage(kv)?;
                if params.filter.matches(&obj) {
                    first.push(event_line(view, "ADDED", obj, rendering));
                }
            }
            if params.initial_end_bookmark {
                first.push(bookmark(view, page.revision, true, rendering));
            }
            page.revision
        }
    };
    let interval = params.bookmarks.then_some(state.config.bookmark_interval);
    let events = state.store.watch(&prefix, start, interval).await?;
    let gauge = state.metrics.open_watches.with_label_values(&[res.plural]);
    gauge.inc();
    let guard = WatchGuard(gauge);
    let filter = params.filter;
    let bookmarks = params.bookmarks;
    let live = events
        .scan(false, move |ended, event| {
            if *ended {
                return futures::future::ready(None);
            }
            let line = match event {
                Ok(event) => translate(view, &filter, event, bookmarks, rendering),
                Err(rkube_storage::Error::Expired { requested, compacted }) => {
                    *ended = true;
                    let status =
                        ApiError::Expired(format!("too old resource version: {requested} ({compacted})")).to_status();
                    Some(event_bytes("ERROR", &json!(status), rendering))
                }
                Err(e) => {
                    tracing::info!(error = %e, resource = res.plural, "watch ended by storage");
                    *ended = true;
                    None
                }
            };
            futures::future::ready(Some(line))
        })
        .filter_map(futures::future::ready);
    Ok(finish_stream(&state, first, live, params.timeout, guard, rendering))
}

/// The response of a watch: the `first` chunks, then the `live` ones, until the watch's
/// timeout or shutdown, counted as open while it lasts.
fn finish_stream(
    state: &ApiState,
    first: Vec<Bytes>,
    live: impl Stream<Item = Bytes> + Send + 'static,
    timeout: Duration,
    guard: WatchGuard,
    rendering: Rendering,
) -> Response {
    let shutdown = state.shutdown.clone();
    let stream = futures::stream::iter(first)
        .chain(live)
        .take_until(tokio::time::sleep(timeout))
        .take_until(async move { shutdown.cancelled().await })
        .map(move |chunk| {
            let _keep = &guard;
            Ok::<_, std::convert::Infallible>(chunk)
        });
    streaming_response(stream, rendering)
}

/// A watch served by the resource's watch cache; `Err(params)` hands it back to
/// [`watch_etcd`] when the cache cannot show a consistent start in time.
async fn watch_cache(
    state: &Arc<ApiState>,
    cacher: Arc<Cacher>,
    prefix: &str,
    params: WatchParams,
    (rendering, view): (Rendering, &'static ResourceDef),
) -> Result<Result<Response, WatchParams>, ApiError> {
    let res = cacher.resource();
    let subscribed = match params.start {
        WatchStart::After(rv) => {
            cacher.reach(rv, CACHE_WAIT).await?;
            cacher.subscribe(prefix, Start::After(rv))
        }
        WatchStart::Any => cacher.subscribe(prefix, Start::Now { initial: true }),
        WatchStart::NotOlderThan(rv) => {
            cacher.reach(rv, CACHE_WAIT).await?;
            cacher.subscribe(prefix, Start::Now { initial: true })
        }
        // The current objects, once the cache is proven to hold etcd's current state under
        // the prefix; else etcd serves the watch.
        WatchStart::Consistent => match cacher.subscribe_consistent(prefix, CACHE_WAIT).await? {
            Some(subscription) => Ok(subscription),
            None => return Ok(Err(params)),
        },
    };
    let subscription = match subscribed {
        Ok(subscription) => subscription,
        Err(ApiError::Expired(message)) => {
            let status = ApiError::Expired(message).to_status();
            let line = event_bytes("ERROR", &json!(status), rendering);
            let once = futures::stream::iter([Ok::<_, std::convert::Infallible>(line)]);
            return Ok(Ok(streaming_response(once, rendering)));
        }
        Err(other) => return Err(other),
    };
    let gauge = state.metrics.open_watches.with_label_values(&[res.plural]);
    gauge.inc();
    let guard = WatchGuard(gauge);
    let mut first = Frames::new();
    for object in &subscription.initial {
        if params.filter.matches_stored(object) {
            write_stored_event(&mut first, view, "ADDED", object, rendering);
        }
    }
    if params.initial_end_bookmark {
        first.push(&bookmark(view, subscription.revision, true, rendering));
    }
    for event in &subscription.replay {
        for chunk in cached_event(view, &params.filter, event, rendering) {
            first.push(&chunk);
        }
    }
    let first = first.finish();
    let filter = params.filter;
    let bookmarks = params.bookmarks.then_some(state.config.bookmark_interval);
    let live = futures::stream::unfold(
        (
            subscription,
            bookmarks.map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every)),
            filter,
        ),
        move |(mut subscription, mut ticker, filter)| async move {
            loop {
                let tick = async {
                    match &mut ticker {
                        Some(ticker) => ticker.tick().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    event = subscription.events.recv() => {
                        let event = event?; // disconnected: too slow, or the cache relisted
                        let chunks = cached_event(view, &filter, &event, rendering);
                        if !chunks.is_empty() {
                            return Some((chunks, (subscription, ticker, filter)));
                        }
                    }
                    _ = tick => {
                        // Every change up to the cache's revision was queued before it was
                        // published; with none waiting, the watcher has them all.
                        if subscription.events.is_empty() {
                            let revision = subscription.bookmark_revision();
                            return Some((vec![bookmark(view, revision, false, rendering)], (subscription, ticker, filter)));
                        }
                    }
                }
            }
        },
    )
    .flat_map(futures::stream::iter);
    Ok(Ok(finish_stream(state, first, live, params.timeout, guard, rendering)))
}

/// How long a watch waits for the watch cache to reach its resourceVersion.
const CACHE_WAIT: Duration = Duration::from_secs(3);

/// The chunks of one event line for a stored object: one, or for a large object its shared
/// bytes between a head and a tail, so no watcher copies them.
fn stored_event(res: &ResourceDef, kind: &str, object: &StoredObject, rendering: Rendering) -> Vec<Bytes> {
    let mut frames = Frames::new();
    write_stored_event(&mut frames, res, kind, object, rendering);
    frames.finish()
}

/// Appends one event line for a stored object to `frames`: for JSON, the object's shared
/// bytes between a head and a tail.
fn write_stored_event(frames: &mut Frames, res: &ResourceDef, kind: &str, object: &StoredObject, rendering: Rendering) {
    match rendering {
        Rendering::Json if res.conversion.is_none() => {
            frames.extend(format!(r#"{{"type":"{kind}","object":"#).as_bytes());
            frames.push(&object.json);
            frames.extend(b"}\n");
        }
        Rendering::Json | Rendering::Table | Rendering::Protobuf => match object.decode() {
            Ok(value) => frames.push(&event_line(res, kind, value, rendering)),
            Err(error) => tracing::error!(%error, "cannot render a cached object"),
        },
    }
}

/// What a cached change becomes for a watcher with this filter: `ADDED`, `MODIFIED` or
/// `DELETED` by whether the object matched before and after, or nothing.
fn cached_event(res: &ResourceDef, filter: &Filter, event: &CachedEvent, rendering: Rendering) -> Vec<Bytes> {
    let was = event.prev.as_ref().is_some_and(|prev| filter.matches_stored(prev));
    let is = !event.deleted && filter.matches_stored(&event.object);
    let kind = match (was, is) {
        (false, true) => "ADDED",
        (true, true) => "MODIFIED",
        // Deleted, or left the selector (then with its new state, as Kubernetes sends it).
        (true, false) => "DELETED",
        (false, false) => return Vec::new(),
    };
    stored_event(res, kind, &event.object, rendering)
}

/// Decrements the open-watches gauge when the stream is dropped.
struct WatchGuard(prometheus::IntGauge);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn streaming_response(
    stream: impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
    rendering: Rendering,
) -> Response {
    let content_type = match rendering {
        Rendering::Table => table::CONTENT_TYPE,
        Rendering::Json => "application/json",
        Rendering::Protobuf => rkube_protobuf::WATCH_MEDIA_TYPE,
    };
    Response::builder()
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

/// The event a storage change becomes for a watcher with this filter, if any.
fn translate(
    res: &'static ResourceDef,
    filter: &Filter,
    event: WatchEvent,
    bookmarks: bool,
    rendering: Rendering,
) -> Option<Bytes> {
    match event {
        WatchEvent::Put { kv, prev } => {
            let new = from_storage(&kv).ok()?;
            let was = prev.and_then(|p| from_storage(&p).ok()).is_some_and(|old| filter.matches(&old));
            let is = filter.matches(&new);
            let kind = match (was, is) {
                (false, true) => "ADDED",
                (true, true) => "MODIFIED",
                (true, false) => "DELETED",
                (false, false) => return None,
            };
            Some(event_line(res, kind, new, rendering))
        }
        WatchEvent::Delete { revision, prev, .. } => {
            let mut last = from_storage(&prev?).ok()?;
            if !filter.matches(&last) {
                return None;
            }
            set_resource_version(&mut last, revision);
            Some(event_line(res, "DELETED", last, rendering))
        }
        WatchEvent::Progress { revision } => bookmarks.then(|| bookmark(res, revision, false, rendering)),
    }
}

fn event_line(res: &ResourceDef, kind: &str, obj: Value, rendering: Rendering) -> Bytes {
    let obj = match res.conversion {
        Some(conversion) => crate::conversion::to_view(conversion, obj),
        None => obj,
    };
    let object = match rendering {
        Rendering::Table => table::table(res, std::slice::from_ref(&obj), None, table::IncludeObject::Metadata),
        Rendering::Json | Rendering::Protobuf => obj,
    };
    event_bytes(kind, &object, rendering)
}

/// One watch event as the client asked for it: a JSON line, or a protobuf frame.
fn event_bytes(kind: &str, object: &Value, rendering: Rendering) -> Bytes {
    if rendering == Rendering::Protobuf {
        match rkube_protobuf::encode_watch_event(kind, object) {
            Ok(frame) => return Bytes::from(frame),
            Err(error) => tracing::error!(%error, "cannot encode a watch event as protobuf; sending it as JSON"),
        }
    }
    line_of(&json!({"type": kind, "object": object}))
}

fn bookmark(res: &ResourceDef, revision: i64, initial_end: bool, rendering: Rendering) -> Bytes {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_bytes(
        "BOOKMARK",
        &json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": metadata}),
        rendering,
    )
}

fn line_of(value: &Value) -> Bytes {
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rkube_storage::Store;
    use serde_json::json;

    use crate::testing::{MERGE_PATCH, TestApi, config_map, core, resource_version};

    fn rv(object: &serde_json::Value) -> i64 {
        resource_version(object).parse().unwrap()
    }

    #[test]
    fn a_watch_starts_where_its_resource_version_and_send_initial_events_say() {
        use super::{WatchParams, WatchStart};
        let start = |query: &str| {
            let query = crate::request::Query::parse(Some(query));
            let res = &rkube_api::kinds::configmap::RESOURCE;
            WatchParams::from_query(res, &query, Duration::from_secs(60)).map(|params| params.start)
        };
        let cases = [
            ("watch=true", WatchStart::Consistent),
            // Any state the server has, with no proof of freshness (Kubernetes serves it from
            // its cache as it is).
            ("watch=true&resourceVersion=0", WatchStart::Any),
            ("watch=true&resourceVersion=7", WatchStart::After(7)),
            ("watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan", WatchStart::Consistent),
            ("watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=0", WatchStart::Any),
            (
                "watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=7",
                WatchStart::NotOlderThan(7),
            ),
        ];
        for (query, expected) in cases {
            assert_eq!(start(query).ok(), Some(expected), "{query}");
        }
        assert!(start("watch=true&sendInitialEvents=true").is_err(), "needs resourceVersionMatch=NotOlderThan");
    }

    #[tokio::test]
    async fn a_watch_from_a_resource_version_sees_every_later_change_once_in_order() {
        let api = TestApi::start().await;
        let collection = core("default", "configmaps");
        api.create(&collection, config_map("before", json!({}))).await;
        let a = api.create(&collection, config_map("a", json!({}))).await;
        let mut watch = api.watch(&format!("{collection}?watch=true&resourceVersion={}", rv(&a))).await;

        let b = api.create(&collection, config_map("b", json!({}))).await;
        let (_, a2) = api.patch(&format!("{collection}/a"), MERGE_PATCH, json!({"data": {"v": "2"}})).await;
        let (_, b_last) = api.delete(&format!("{collection}/b")).await;
        api.create(&core("kube-system", "configmaps"), config_map("elsewhere", json!({}))).await;

        let added = watch.next().await;
        assert_eq!((&added["type"], &added["object"]), (&json!("ADDED"), &b), "{added}");
        let modified = watch.next().await;
        assert_eq!((&modified["type"], &modified["object"]), (&json!("MODIFIED"), &a2), "{modified}");
        let deleted = watch.next().await;
        assert_eq!(deleted["type"], "DELETED", "{deleted}");
        assert_eq!(deleted["object"]["metadata"]["name"], "b", "a deletion carries the last state");
        assert_eq!(rv(&deleted["object"]), rv(&b_last), "at the deletion's revision, as DELETE answered: {deleted}");
        assert!(rv(&b) < rv(&a2) && rv(&a2) < rv(&b_last), "revisions ascend");
        assert!(watch.next_within(Duration::from_millis(100)).await.is_none(), "another namespace is not watched");
    }

    #[tokio::test]
    async fn a_watch_without_a_resource_version_starts_with_the_current_objects_as_added() {
        let api = TestApi::start().await;
        let collection = core("default", "configmaps");
        let a = api.create(&collection, config_map("a", json!({}))).await;
        let mut watch = api.watch(&format!("{collection}?watch=true")).await;
        let first = watch.next().await;
        assert_eq!((&first["type"], &first["object"]), (&json!("ADDED"), &a));
        let b = api.create(&collection, config_map("b", json!({}))).await;
        let second = watch.next().await;
        assert_eq!((&second["type"], &second["object"]), (&json!("ADDED"), &b));
    }

    #[tokio::test]
    async fn send_initial_events_ends_the_current_objects_with_an_annotated_bookmark() {
        let api = TestApi::start().await;
        let collection = core("default", "configmaps");
        api.create(&collection, config_map("a", json!({}))).await;
        let (status, reply) = api.get(&format!("{collection}?watch=true&sendInitialEvents=true")).await;
        crate::testing::assert_status(status, &reply, 400, "BadRequest");

        let path = format!("{collection}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan");
        let mut watch = api.watch(&path).await;
        assert_eq!(watch.next().await["type"], "ADDED");
        let bookmark = watch.next().await;
        assert_eq!(bookmark["type"], "BOOKMARK", "{bookmark}");
        assert_eq!(bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
        assert_eq!(bookmark["object"]["metadata"]["resourceVersion"], api.revision().await.to_string());
    }

    #[tokio::test]
    async fn a_selector_turns_objects_entering_it_into_added_and_leaving_it_into_deleted() {
        let api = TestApi::start().await;
        let collection = core("default", "configmaps");
        let start = api.revision().await;
        let mut watch =
            api.watch(&format!("{collection}?watch=true&resourceVersion={start}&labelSelector=app%3Dweb")).await;
        let path = format!("{collection}/cm");
        api.create(&collection, config_map("cm", json!({}))).await;
        api.patch(&path, MERGE_PATCH, json!({"metadata": {"labels": {"app": "web"}}})).await;
        api.patch(&path, MERGE_PATCH, json!({"data": {"v": "1"}})).await;
        api.patch(&path, MERGE_PATCH, json!({"metadata": {"labels": {"app": "db"}}})).await;
        api.delete(&path).await;
        let mut other = config_map("other", json!({}));
        other["metadata"]["labels"] = json!({"app": "web"});
        api.create(&collection, other).await;

        let mut seen = Vec::new();
        for _ in 0..4 {
            let event = watch.next().await;
            seen.push((event["type"].as_str().unwrap().to_string(), event["object"]["metadata"]["name"].clone()));
        }
        let expected = [("ADDED", "cm"), ("MODIFIED", "cm"), ("DELETED", "cm"), ("ADDED", "other")];
        let expected: Vec<_> = expected.iter().map(|(t, n)| (t.to_string(), json!(n))).collect();
        assert_eq!(seen, expected);
    }

    #[tokio::test]
    async fn a_watch_from_a_compacted_resource_version_gets_one_410_expired_error_and_ends() {
        let api = TestApi::start().await;
        let collection = core("default", "configmaps");
        let old = api.create(&collection, config_map("a", json!({}))).await;
        api.patch(&format!("{collection}/a"), MERGE_PATCH, json!({"data": {"v": "2"}})).await;
        api.patch(&format!("{collection}/a"), MERGE_PATCH, json!({"data": {"v": "3"}})).await;
        api.store.compact(api.revision().await).await.unwrap();

        let mut watch = api.watch(&format!("{collection}?watch=true&resourceVersion={}", rv(&old))).await;
        let error = watch.next().await;
        assert_eq!(error["type"], "ERROR", "{error}");
        let status = &error["object"];
        assert_eq!((&status["kind"], &status["status"]), (&json!("Status"), &json!("Failure")), "{status}");
        assert_eq!((&status["code"], &status["reason"]), (&json!(410), &json!("Expired")), "{status}");
        assert!(watch.ends_within(Duration::from_secs(1)).await, "the stream ends after the error");
    }

    #[tokio::test]
    async fn a_watch_with_a_field_label_the_kind_does_not_support_is_a_400() {
        let api = TestApi::start().await;
        let (status, reply) =
            api.get(&format!("{}?watch=true&fieldSelector=spec.nodeName%3Dn1", core("default", "configmaps"))).await;
        crate::testing::assert_status(status, &reply, 400, "BadRequest");
    }

    #[tokio::test]
    async fn a_quiet_watch_gets_bookmarks_at_the_current_revision_only_when_it_allows_them() {
        let config = crate::Config { bookmark_interval: Duration::from_millis(50), ..crate::Config::default() };
        let api = TestApi::start_with(config).await;
        let collection = core("default", "configmaps");
        let now = api.revision().await;
        let mut quiet = api.watch(&format!("{collection}?watch=true&resourceVersion={now}")).await;
        let mut bookmarked =
            api.watch(&format!("{collection}?watch=true&resourceVersion={now}&allowWatchBookmarks=true")).await;
        let bookmark = bookmarked.next().await;
        assert_eq!(bookmark["type"], "BOOKMARK", "{bookmark}");
        assert_eq!(bookmark["object"]["kind"], "ConfigMap");
        assert_eq!(bookmark["object"]["metadata"]["resourceVersion"], now.to_string());
        assert!(quiet.next_within(Duration::from_millis(200)).await.is_none(), "no bookmark unless allowed");
    }

    #[tokio::test]
    async fn a_watch_ends_after_its_timeout_seconds() {
        let api = TestApi::start().await;
        let collection = core("default", "configmaps");
        let mut watch = api.watch(&format!("{collection}?watch=true&resourceVersion=1&timeoutSeconds=1")).await;
        assert!(watch.ends_within(Duration::from_secs(3)).await, "the stream ends by itself");
    }
}
