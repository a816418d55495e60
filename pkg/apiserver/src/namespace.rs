//! Namespaces: the built-in ones exist from the start, and deleting one removes
//! everything in it before the namespace itself goes.
//!
//! Deletion follows Kubernetes: a DELETE marks the namespace like any object, and its
//! strategy (`rkube_api::kinds::namespace`) makes it `Terminating` and keeps it while
//! `spec.finalizers` holds `kubernetes`; no new content may be created in it (admission's
//! `namespace_lifecycle`); the cleaner here, the apiserver's namespace controller, deletes
//! every namespaced object in it (pods bound to a node get their grace period, objects with
//! finalizers wait for them), and once nothing is left it removes the namespace. The
//! namespace cache wakes the cleaner when it sees a namespace turn terminating, and the
//! cleaner also runs periodically, so a restart mid-way finishes the job.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions;
use rkube_api::registry::{self, ResourceDef};
use rkube_storage::ListOptions;
use serde_json::{Value, json};

use crate::ApiState;
use crate::error::ApiError;
use crate::metadata::{from_storage, is_terminating, meta_str};
use crate::request::ResourceRequest;
use crate::rest;

/// Namespaces created at start-up.
pub const INITIAL: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

fn namespaces() -> &'static ResourceDef {
    &rkube_api::kinds::namespace::RESOURCE
}

/// Creates the initial namespaces that do not exist yet.
pub async fn ensure_initial(state: &ApiState) -> Result<(), ApiError> {
    let res = namespaces();
    for name in INITIAL {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        let req = ResourceRequest { resource: res, namespace: None, name: None, subresource: None };
        match rest::create(state, &req, body, &rest::WriteOptions::default()).await {
            Ok(_) | Err(ApiError::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs until shutdown: finishes the deletion of every terminating namespace, when woken
/// and every `period`.
pub async fn run_cleaner(state: Arc<ApiState>, period: Duration) {
    loop {
        if let Err(e) = clean_all(&state).await {
            tracing::warn!(error = %e, "namespace cleanup failed; will retry");
        }
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = state.namespace_cleaner.notified() => {}
            _ = tokio::time::sleep(period) => {}
        }
    }
}

async fn clean_all(state: &ApiState) -> Result<(), ApiError> {
    let page = state.store.list(&state.keys.collection(namespaces().plural, None), ListOptions::default()).await?;
    for kv in &page.items {
        let ns = from_storage(kv)?;
        if is_terminating(&ns) {
            clean_one(state, meta_str(&ns, "name")).await?;
        }
    }
    Ok(())
}

/// Deletes what is left in one terminating namespace; removes it once empty.
async fn clean_one(state: &ApiState, namespace: &str) -> Result<(), ApiError> {
    let mut remaining = 0;
    let options = DeleteOptions::default();
    for res in registry::resources().iter().filter(|r| r.namespaced) {
        let req =
            ResourceRequest { resource: res, namespace: Some(namespace.to_string()), name: None, subresource: None };
        let page = state.store.list(&rest::prefix(state, &req), ListOptions::default()).await?;
        for kv in &page.items {
            remaining += 1;
            let obj = from_storage(kv)?;
            if is_terminating(&obj) {
                continue;
            }
            match rest::delete(state, &req, meta_str(&obj, "name"), &options, false).await {
                Ok((_, true)) => remaining -= 1,
                Ok((_, false)) | Err(ApiError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    if remaining > 0 {
        tracing::debug!(namespace, remaining, "namespace still has content");
        return Ok(());
    }
    let key = state.keys.object(namespaces().plural, None, namespace);
    let kv = match state.store.get(&key).await {
        Ok(kv) => kv,
        Err(rkube_storage::Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    match state.store.delete(&key, Some(kv.mod_revision)).await {
        Ok(_) => {
            tracing::info!(namespace, "namespace deleted");
            Ok(())
        }
        // Changed meanwhile (or already gone): the next round looks again.
        Err(rkube_storage::Error::Conflict { .. } | rkube_storage::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Which namespaces exist and whether they are terminating, kept current by a watch, so
/// that creating an object does not cost an extra etcd read (Kubernetes' namespace
/// lifecycle admission does the same with an informer).
///
/// It may lag behind etcd by a moment: a miss, or a namespace seen as terminating, is
/// always checked against etcd; only "exists and is active" is trusted. An object created
/// into a namespace whose deletion the cache has not seen yet is removed by the cleaner,
/// which keeps deleting until the namespace is empty.
#[derive(Debug, Default)]
pub struct NamespaceCache {
    active: std::sync::RwLock<std::collections::HashSet<String>>,
}

impl NamespaceCache {
    /// Whether the cache has seen `name` existing and not terminating.
    pub fn is_active(&self, name: &str) -> bool {
        self.active.read().map(|set| set.contains(name)).unwrap_or(false)
    }

    fn record(&self, ns: &Value) {
        let name = meta_str(ns, "name").to_string();
        if let Ok(mut set) = self.active.write() {
            if is_terminating(ns) {
                set.remove(&name);
            } else {
                set.insert(name);
            }
        }
    }

    fn forget(&self, name: &str) {
        if let Ok(mut set) = self.active.write() {
            set.remove(name);
        }
    }

    fn replace(&self, namespaces: &[Value]) {
        if let Ok(mut set) = self.active.write() {
            set.clear();
            set.extend(namespaces.iter().filter(|ns| !is_terminating(ns)).map(|ns| meta_str(ns, "name").to_string()));
        }
    }
}

/// Keeps `state.namespace_cache` current until shutdown: list, then watch; relist after
/// any error.
pub async fn run_cache(state: Arc<ApiState>) {
    use futures::StreamExt;
    let prefix = state.keys.collection(namespaces().plural, None);
    loop {
        let result: Result<(), ApiError> = async {
            let page = state.store.list(&prefix, ListOptions::default()).await?;
            let listed = page.items.iter().map(from_storage).collect::<Result<Vec<_>, _>>()?;
            state.namespace_cache.replace(&listed);
            let mut events = state.store.watch(&prefix, page.revision, None).await?;
            while let Some(event) = events.next().await {
                match event? {
                    rkube_storage::WatchEvent::Put { kv, .. } => {
                        let namespace = from_storage(&kv)?;
                        if is_terminating(&namespace) {
                            state.namespace_cleaner.notify_one();
                        }
                        state.namespace_cache.record(&namespace);
                    }
                    rkube_storage::WatchEvent::Delete { key, .. } => {
                        state.namespace_cache.forget(key.rsplit('/').next().unwrap_or_default())
                    }
                    rkube_storage::WatchEvent::Progress { .. } => {}
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "namespace cache watch ended; relisting");
        }
        state.namespace_cache.replace(&[]);
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
