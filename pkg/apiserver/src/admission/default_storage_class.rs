//! `DefaultStorageClass` admission: a new PersistentVolumeClaim that names no
//! `storageClassName` gets the default StorageClass (the one annotated
//! `storageclass.kubernetes.io/is-default-class: "true"`; of several, the newest, as
//! Kubernetes since 1.26). A claim with `storageClassName: ""` asks for no class and keeps it.
//!
//! The apiserver creates the local-path class at start when no StorageClass exists at all
//! ([`ensure_local_path`]), so a fresh cluster has a default; one an administrator deleted
//! after making another class stays deleted as long as some class exists.

use rkube_api::kinds::{persistentvolumeclaim, storageclass};
use serde_json::{Value, json};

use super::list_in;
use crate::ApiState;
use crate::error::ApiError;
use crate::request::ResourceRequest;

/// Gives a new claim without a class the default class (see the module docs).
///
/// # Errors
/// Storage errors.
pub async fn admit_create(state: &ApiState, req: &ResourceRequest, claim: &mut Value) -> Result<(), ApiError> {
    if !std::ptr::eq(req.resource, &persistentvolumeclaim::RESOURCE) {
        return Ok(());
    }
    let Some(spec) = claim.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    if spec.get("storageClassName").is_some_and(|name| !name.is_null()) {
        return Ok(());
    }
    let classes = list_in(state, &storageclass::RESOURCE, None).await?;
    let default = classes
        .iter()
        .filter(|class| {
            class.pointer(&format!(
                "/metadata/annotations/{}",
                storageclass::DEFAULT_CLASS_ANNOTATION.replace('/', "~1")
            )) == Some(&json!("true"))
        })
        .max_by_key(|class| {
            let created = class.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or_default();
            (
                created.to_string(),
                class.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string(),
            )
        });
    if let Some(name) = default.and_then(|class| class.pointer("/metadata/name")) {
        spec.insert("storageClassName".into(), name.clone());
    }
    Ok(())
}

/// Creates the local-path StorageClass when there is no StorageClass at all.
///
/// # Errors
/// Storage errors.
pub async fn ensure_local_path(state: &ApiState) -> Result<(), ApiError> {
    if !list_in(state, &storageclass::RESOURCE, None).await?.is_empty() {
        return Ok(());
    }
    let req = ResourceRequest { resource: &storageclass::RESOURCE, namespace: None, name: None, subresource: None };
    match crate::rest::create(state, &req, storageclass::local_path(), &crate::rest::WriteOptions::default()).await {
        Ok(_) | Err(ApiError::AlreadyExists(_)) => Ok(()),
        Err(error) => Err(error),
    }
}
