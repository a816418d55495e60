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

/// Fails unless the request's namespace (if it has one) exists and is not terminating.
pub async fn admit_create(state: &ApiState, req: &ResourceRequest) -> Result<(), ApiError> {
    let Some(ns) = req.namespace.as_deref() else { return Ok(()) };
    if state.namespace_cache.is_active(ns) {
        return Ok(());
    }
    let namespaces = &namespace::RESOURCE;
    let key = state.keys.object(namespaces.plural, None, ns);
    let kv = state.store.get(&key).await.map_err(|e| ApiError::from_storage(Target::new(namespaces, ns), e))?;
    if is_terminating(&from_storage(&kv)?) {
        return Err(ApiError::Forbidden(format!(
            "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            req.resource.plural,
            req.name.as_deref().unwrap_or_default()
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
