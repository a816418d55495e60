//! Namespaces: the built-in ones exist from the start, and deleting one removes
//! everything in it before the namespace itself goes.
//!
//! Deletion follows Kubernetes: a DELETE marks the namespace like any object, and its
//! strategy (`rkube_api::kinds::namespace`) makes it `Terminating` and keeps it while
//! `spec.finalizers` holds `kubernetes`; no new content may be created in it (admission's
//! `namespace_lifecycle`); the cleaner here, the apiserver's namespace controller, deletes
//! every namespaced object in it (pods bound to a node get their grace period, objects with
//! finalizers wait for them), and once nothing is left it removes `kubernetes` from
//! `spec.finalizers`, which removes the namespace unless its own finalizers still hold it. The
//! namespace cache wakes the cleaner when it sees a namespace turn terminating, and the
//! cleaner also runs periodically, so a restart mid-way finishes the job.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions;
use rkube_api::kinds::namespace::KUBERNETES_FINALIZER;
use rkube_api::registry::ResourceDef;
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
    // Every stored resource once: a resource served only as another version (a CRD whose
    // storage version is not served) is reached through the versions that convert to it.
    let mut stored: Vec<&'static ResourceDef> = Vec::new();
    for res in state.resources.resources().into_iter().filter(|r| r.namespaced) {
        let storage = res.conversion.map_or(res, |c| c.storage);
        if !stored.iter().any(|s| s.storage_name() == storage.storage_name()) {
            stored.push(storage);
        }
    }
    for res in stored {
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
    // Finalize, as Kubernetes' namespace controller does: remove `kubernetes` from
    // `spec.finalizers`. The namespace goes with that write unless other finalizers still
    // hold it (`metadata.finalizers`, or another entry in `spec.finalizers`); then it goes
    // with the write that removes the last of them (`rest::guaranteed_update`).
    let req = ResourceRequest {
        resource: namespaces(),
        namespace: None,
        name: Some(namespace.to_string()),
        subresource: None,
    };
    let finalize = |current: &Value| {
        let mut desired = current.clone();
        if let Some(list) = desired.pointer_mut("/spec/finalizers").and_then(Value::as_array_mut) {
            list.retain(|f| f != KUBERNETES_FINALIZER);
        }
        Ok(desired)
    };
    match rest::guaranteed_update(state, &req, namespace, None, &rest::WriteOptions::default(), finalize).await {
        Ok(_) => {
            tracing::info!(namespace, "namespace finalized");
            Ok(())
        }
        // Already gone: nothing left to do.
        Err(ApiError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
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
            // Shutdown ends the watch too, not only the wait between watches.
            while let Some(event) = state.shutdown.run_until_cancelled(events.next()).await.flatten() {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::StatusCode;
    use serde_json::json;

    use super::{INITIAL, clean_all, ensure_initial};
    use crate::testing::{
        MERGE_PATCH, TestApi, WAIT, apps, binding, config_map, core, deployment, namespace, pod, resource_version,
    };

    /// Creates namespace `name` holding a ConfigMap, a pod and a Deployment, then deletes it.
    async fn doomed_with_content(api: &TestApi, name: &str) -> Vec<String> {
        api.create("/api/v1/namespaces", namespace(name)).await;
        api.create(&core(name, "configmaps"), config_map("cm", json!({}))).await;
        api.create(&core(name, "pods"), pod("p")).await;
        api.create(&apps(name, "deployments"), deployment("d", 1)).await;
        let (status, marked) = api.delete(&format!("/api/v1/namespaces/{name}")).await;
        assert_eq!(status, StatusCode::OK, "{marked}");
        vec![
            format!("{}/cm", core(name, "configmaps")),
            format!("{}/p", core(name, "pods")),
            format!("{}/d", apps(name, "deployments")),
        ]
    }

    #[tokio::test]
    async fn the_built_in_namespaces_exist_from_the_start_and_bootstrap_may_run_again() {
        let api = TestApi::start().await;
        for name in INITIAL {
            let ns = api.get_ok(&format!("/api/v1/namespaces/{name}")).await;
            assert_eq!(ns["status"]["phase"], "Active", "{ns}");
        }
        let revision = api.revision().await;
        ensure_initial(&api.state).await.unwrap();
        assert_eq!(api.revision().await, revision, "a second bootstrap writes nothing");
    }

    #[tokio::test]
    async fn deleting_a_namespace_marks_it_terminating_and_keeps_it_for_the_cleaner() {
        let api = TestApi::start().await;
        let created = api.create("/api/v1/namespaces", namespace("doomed")).await;
        assert_eq!(created["spec"]["finalizers"], json!(["kubernetes"]), "{created}");
        let (status, marked) = api.delete("/api/v1/namespaces/doomed").await;
        assert_eq!(status, StatusCode::OK, "{marked}");
        assert_eq!(marked["status"]["phase"], "Terminating");
        assert!(marked["metadata"]["deletionTimestamp"].is_string(), "{marked}");
        assert_eq!(api.get_ok("/api/v1/namespaces/doomed").await, marked);
    }

    #[tokio::test]
    async fn the_cleaner_deletes_a_terminating_namespaces_content_then_the_namespace() {
        let api = TestApi::start().await;
        let content = doomed_with_content(&api, "doomed").await;
        api.create(&core("default", "configmaps"), config_map("survivor", json!({}))).await;
        clean_all(&api.state).await.unwrap();
        for path in content.iter().map(String::as_str).chain(["/api/v1/namespaces/doomed"]) {
            assert!(api.is_gone(path).await, "{path}");
        }
        api.get_ok(&format!("{}/survivor", core("default", "configmaps"))).await;
        let (status, _) = api.post(&core("doomed", "configmaps"), config_map("late", json!({}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "the namespace is gone");
    }

    #[tokio::test]
    async fn the_cleaner_keeps_the_namespace_while_its_content_waits_for_finalizers_or_a_grace_period() {
        let api = TestApi::start().await;
        api.create("/api/v1/namespaces", namespace("slow")).await;
        let mut held = config_map("held", json!({}));
        held["metadata"]["finalizers"] = json!(["example.com/hold"]);
        api.create(&core("slow", "configmaps"), held).await;
        let pod_path = format!("{}/running", core("slow", "pods"));
        api.create(&core("slow", "pods"), pod("running")).await;
        api.post(&format!("{pod_path}/binding"), binding("running", "n1")).await;
        api.delete("/api/v1/namespaces/slow").await;

        clean_all(&api.state).await.unwrap();
        let held_path = format!("{}/held", core("slow", "configmaps"));
        assert!(api.get_ok(&held_path).await["metadata"]["deletionTimestamp"].is_string());
        let running = api.get_ok(&pod_path).await;
        assert_eq!(running["metadata"]["deletionGracePeriodSeconds"], 30, "a bound pod gets its grace: {running}");
        api.get_ok("/api/v1/namespaces/slow").await;

        api.patch(&held_path, MERGE_PATCH, json!({"metadata": {"finalizers": null}})).await;
        api.delete(&format!("{pod_path}?gracePeriodSeconds=0")).await;
        clean_all(&api.state).await.unwrap();
        assert!(api.is_gone("/api/v1/namespaces/slow").await);
    }

    #[tokio::test]
    async fn the_cleaner_leaves_a_namespace_held_by_its_own_finalizers_until_they_are_removed() {
        let api = TestApi::start().await;
        let mut held = namespace("held");
        held["metadata"]["finalizers"] = json!(["example.com/hold"]);
        api.create("/api/v1/namespaces", held).await;
        api.delete("/api/v1/namespaces/held").await;
        clean_all(&api.state).await.unwrap();
        let kept = api.get_ok("/api/v1/namespaces/held").await;
        assert_eq!(kept["metadata"]["finalizers"], json!(["example.com/hold"]), "{kept}");
        assert_eq!(kept["status"]["phase"], "Terminating", "{kept}");
        assert!(kept["spec"]["finalizers"].as_array().is_none_or(Vec::is_empty), "the cleaner did its part: {kept}");

        let release = json!({"metadata": {"finalizers": null, "resourceVersion": resource_version(&kept)}});
        let (status, reply) = api.patch("/api/v1/namespaces/held", MERGE_PATCH, release).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        clean_all(&api.state).await.unwrap();
        assert!(api.is_gone("/api/v1/namespaces/held").await);
    }

    #[tokio::test]
    async fn the_running_cache_and_cleaner_finish_a_namespace_deletion_on_their_own() {
        let api = TestApi::start().await;
        // A long period: only the cache's wake-up (or the cleaner's first round) can do it.
        let cleaner = tokio::spawn(super::run_cleaner(Arc::clone(&api.state), std::time::Duration::from_secs(3600)));
        let cache = tokio::spawn(super::run_cache(Arc::clone(&api.state)));
        let deadline = tokio::time::Instant::now() + WAIT;
        while !api.state.namespace_cache.is_active("default") {
            assert!(tokio::time::Instant::now() < deadline, "the cache never listed the namespaces");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let content = doomed_with_content(&api, "doomed").await;
        while !api.is_gone("/api/v1/namespaces/doomed").await {
            assert!(tokio::time::Instant::now() < deadline, "the namespace was not cleaned up");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        for path in &content {
            assert!(api.is_gone(path).await, "{path}");
        }
        assert!(!api.state.namespace_cache.is_active("doomed"));
        api.state.shutdown.cancel();
        let ended = tokio::time::timeout(WAIT, async { (cleaner.await, cache.await) }).await;
        assert!(matches!(ended, Ok((Ok(()), Ok(())))), "both tasks end at shutdown, even mid-watch");
    }
}
