//! `NamespaceLifecycle`: objects are only created in namespaces that exist and are not
//! terminating, and `default`, `kube-system` and `kube-public` may not be deleted.
//!
//! Existence is read from the apiserver's namespace cache ([`crate::namespace::NamespaceCache`])
//! and, on a miss, from storage; the cache is only trusted for "exists and is active".

use rkube_api::kinds::namespace;

use crate::ApiState;
use crate::error::{ApiError, Target};
use crate::metadata::{from_storage, is_terminating};
use crate::request::ResourceRequest;

/// Namespaces that may not be deleted.
pub const PROTECTED: &[&str] = &["default", "kube-system", "kube-public"];

/// Fails unless the request's namespace (if it has one) exists and is not terminating;
/// `name` is the object's, for the message.
pub async fn admit_create(state: &ApiState, req: &ResourceRequest, name: &str) -> Result<(), ApiError> {
    let Some(ns) = req.namespace.as_deref() else { return Ok(()) };
    if state.namespace_cache.is_active(ns) {
        return Ok(());
    }
    let namespaces = &namespace::RESOURCE;
    let key = state.keys.object(namespaces.plural, None, ns);
    let kv = state.store.get(&key).await.map_err(|e| ApiError::from_storage(Target::new(namespaces, ns), e))?;
    if is_terminating(&from_storage(&kv)?) {
        return Err(ApiError::Forbidden(format!(
            "{} {name:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            Target::new(req.resource, name).qualified(),
        )));
    }
    Ok(())
}

/// Fails for a protected namespace.
pub fn admit_delete(req: &ResourceRequest, name: &str) -> Result<(), ApiError> {
    if *req.resource == namespace::RESOURCE && PROTECTED.contains(&name) {
        return Err(ApiError::Forbidden(format!(
            "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use serde_json::json;

    use crate::testing::{MERGE_PATCH, TestApi, apps, assert_status, config_map, core, deployment, namespace};

    /// A namespace `name`, marked for deletion and kept `Terminating` (no cleaner runs here).
    async fn terminating(api: &TestApi, name: &str) {
        api.create("/api/v1/namespaces", namespace(name)).await;
        let (status, marked) = api.delete(&format!("/api/v1/namespaces/{name}")).await;
        assert_eq!(status, StatusCode::OK, "{marked}");
        assert_eq!(marked["status"]["phase"], "Terminating", "{marked}");
    }

    #[tokio::test]
    async fn nothing_is_created_in_a_namespace_that_does_not_exist() {
        let api = TestApi::start().await;
        let (status, reply) = api.post(&core("ghost", "configmaps"), config_map("cm", json!({}))).await;
        assert_status(status, &reply, 404, "NotFound");
        assert_eq!(reply["message"], "namespaces \"ghost\" not found");
    }

    #[tokio::test]
    async fn nothing_is_created_in_a_terminating_namespace() {
        let api = TestApi::start().await;
        terminating(&api, "doomed").await;
        let (status, reply) = api.post(&core("doomed", "configmaps"), config_map("late", json!({}))).await;
        assert_status(status, &reply, 403, "Forbidden");
        let (status, reply) = api.post(&apps("doomed", "deployments"), deployment("web", 1)).await;
        assert_status(status, &reply, 403, "Forbidden");
        assert!(api.is_gone(&format!("{}/late", core("doomed", "configmaps"))).await);
        assert!(api.is_gone(&format!("{}/web", apps("doomed", "deployments"))).await);
    }

    #[tokio::test]
    async fn the_refusal_to_create_in_a_terminating_namespace_names_the_object_as_kubernetes_does() {
        let api = TestApi::start().await;
        terminating(&api, "doomed").await;
        let (_, reply) = api.post(&core("doomed", "configmaps"), config_map("late", json!({}))).await;
        assert_eq!(
            reply["message"],
            "configmaps \"late\" is forbidden: unable to create new content in namespace doomed because it is being terminated"
        );
        let (_, reply) = api.post(&apps("doomed", "deployments"), deployment("web", 1)).await;
        assert_eq!(
            reply["message"],
            "deployments.apps \"web\" is forbidden: unable to create new content in namespace doomed because it is being terminated"
        );
    }

    #[tokio::test]
    async fn objects_already_in_a_terminating_namespace_may_still_be_updated_and_deleted() {
        let api = TestApi::start().await;
        api.create("/api/v1/namespaces", namespace("closing")).await;
        let path = format!("{}/cm", core("closing", "configmaps"));
        api.create(&core("closing", "configmaps"), config_map("cm", json!({}))).await;
        api.delete("/api/v1/namespaces/closing").await;
        let (status, reply) = api.patch(&path, MERGE_PATCH, json!({"data": {"v": "2"}})).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let (status, reply) = api.delete(&path).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
    }

    #[tokio::test]
    async fn the_system_namespaces_may_not_be_deleted() {
        let api = TestApi::start().await;
        for name in super::PROTECTED {
            let path = format!("/api/v1/namespaces/{name}");
            let (status, reply) = api.delete(&path).await;
            assert_status(status, &reply, 403, "Forbidden");
            assert_eq!(
                reply["message"],
                format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted")
            );
            let still = api.get_ok(&path).await;
            assert!(still["metadata"].get("deletionTimestamp").is_none(), "{still}");
        }
        let (status, reply) = api.delete("/api/v1/namespaces/kube-node-lease").await;
        assert_eq!(status, StatusCode::OK, "kube-node-lease is not protected, as in Kubernetes: {reply}");
    }
}
