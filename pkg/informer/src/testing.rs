//! Test fixtures: an in-memory apiserver that plays scripted LIST and WATCH answers, and a
//! handler that records what it was told.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_core::watch::{Bookmark, BookmarkMeta};
use kube_core::{ListMeta, ObjectList, TypeMeta};
use rkube_client::{ListParams, WatchEvent, WatchParams, WatchStream};

use crate::handler::{Deleted, EventHandler};
use crate::lister_watcher::ListerWatcher;

/// Feeds one scripted watch stream; dropping it ends the stream cleanly.
pub(crate) type WatchFeed = UnboundedSender<rkube_client::Result<WatchEvent<ConfigMap>>>;

enum WatchScript {
    Stream(futures::channel::mpsc::UnboundedReceiver<rkube_client::Result<WatchEvent<ConfigMap>>>),
    Fail(rkube_client::Error),
}

#[derive(Default)]
struct Script {
    lists: VecDeque<rkube_client::Result<ObjectList<ConfigMap>>>,
    watches: VecDeque<WatchScript>,
    list_calls: Vec<ListParams>,
    watch_calls: Vec<String>,
}

/// A scripted apiserver. With nothing scripted, a LIST fails with "unavailable" and a WATCH
/// hangs without events.
#[derive(Clone, Default)]
pub(crate) struct FakeApi {
    script: Arc<Mutex<Script>>,
}

impl FakeApi {
    fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next LIST returns one page.
    pub(crate) fn push_list(&self, items: Vec<ConfigMap>, resource_version: &str, continue_token: Option<&str>) {
        let list = ObjectList {
            types: TypeMeta { api_version: "v1".into(), kind: "ConfigMapList".into() },
            metadata: ListMeta {
                resource_version: Some(resource_version.into()),
                continue_: continue_token.map(String::from),
                ..ListMeta::default()
            },
            items,
        };
        self.script().lists.push_back(Ok(list));
    }

    /// The next WATCH starts a stream fed through the returned sender.
    pub(crate) fn push_watch(&self) -> WatchFeed {
        let (feed, stream) = unbounded();
        self.script().watches.push_back(WatchScript::Stream(stream));
        feed
    }

    /// The next WATCH fails to start with `error`.
    pub(crate) fn push_watch_error(&self, error: rkube_client::Error) {
        self.script().watches.push_back(WatchScript::Fail(error));
    }

    /// The resourceVersions every WATCH so far started from.
    pub(crate) fn watch_calls(&self) -> Vec<String> {
        self.script().watch_calls.clone()
    }

    /// The parameters of every LIST page so far.
    pub(crate) fn list_calls(&self) -> Vec<ListParams> {
        self.script().list_calls.clone()
    }
}

impl ListerWatcher<ConfigMap> for FakeApi {
    fn list_page(&self, params: ListParams) -> BoxFuture<'static, rkube_client::Result<ObjectList<ConfigMap>>> {
        let mut script = self.script();
        script.list_calls.push(params);
        let answer = script
            .lists
            .pop_front()
            .unwrap_or_else(|| Err(rkube_client::Error::Unavailable("nothing scripted".into())));
        Box::pin(async move { answer })
    }

    fn watch(
        &self,
        _params: WatchParams,
        resource_version: String,
    ) -> BoxFuture<'static, rkube_client::Result<WatchStream<ConfigMap>>> {
        let mut script = self.script();
        script.watch_calls.push(resource_version);
        let answer = match script.watches.pop_front() {
            Some(WatchScript::Stream(stream)) => Ok(stream.boxed()),
            Some(WatchScript::Fail(error)) => Err(error),
            None => Ok(futures::stream::pending().boxed()),
        };
        Box::pin(async move { answer })
    }
}

/// A ConfigMap `default/<name>` at resourceVersion `rv`.
pub(crate) fn config_map(name: &str, rv: u64) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some(name.into()),
            resource_version: Some(rv.to_string()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

/// A BOOKMARK event at `rv`.
pub(crate) fn bookmark(rv: u64) -> WatchEvent<ConfigMap> {
    WatchEvent::Bookmark(Bookmark {
        types: TypeMeta { api_version: "v1".into(), kind: "ConfigMap".into() },
        metadata: BookmarkMeta { resource_version: rv.to_string(), annotations: Default::default() },
    })
}

/// An ERROR event with a 410 Expired Status.
pub(crate) fn expired() -> WatchEvent<ConfigMap> {
    WatchEvent::Error(Box::new(kube_core::Status {
        code: 410,
        message: "too old resource version".into(),
        reason: "Expired".into(),
        ..kube_core::Status::default()
    }))
}

fn describe(object: &ConfigMap) -> String {
    format!(
        "{}@{}",
        object.metadata.name.as_deref().unwrap_or_default(),
        object.metadata.resource_version.as_deref().unwrap_or_default()
    )
}

/// Records every call as a line: `add a@1`, `update a@1->a@4`, `delete a@5`,
/// `delete-unknown a@3`.
#[derive(Clone, Default)]
pub(crate) struct Recorder {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn push(&self, line: String) {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner).push(line);
    }

    /// Waits (up to 5 s) until at least `count` lines were recorded, and returns them.
    pub(crate) async fn wait_for(&self, count: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let lines = self.lines();
            if lines.len() >= count || tokio::time::Instant::now() > deadline {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl EventHandler<ConfigMap> for Recorder {
    fn on_add(&self, object: &Arc<ConfigMap>) {
        self.push(format!("add {}", describe(object)));
    }

    fn on_update(&self, old: &Arc<ConfigMap>, new: &Arc<ConfigMap>) {
        self.push(format!("update {}->{}", describe(old), describe(new)));
    }

    fn on_delete(&self, deleted: Deleted<ConfigMap>) {
        let kind = if deleted.is_final_state_unknown() { "delete-unknown" } else { "delete" };
        self.push(format!("{kind} {}", describe(deleted.object())));
    }
}

/// Waits (5 s at most) until `check` holds; panics naming `what` otherwise.
pub(crate) async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends one watch event on a scripted stream.
pub(crate) fn send(feed: &WatchFeed, event: WatchEvent<ConfigMap>) {
    feed.unbounded_send(Ok(event)).expect("the reflector is still watching");
}
