//! Admission: the checks a request passes after it is decoded and authorized and before the
//! kind's strategy and storage see it, as Kubernetes' admission plugins.
//!
//! Each plugin is a module named for what it keeps true; the generic REST code calls the
//! functions here, which call every plugin that cares about the operation. A plugin may
//! name the kinds it is about (that is its job); generic code does not.
//!
//! Plugins today:
//! - [`namespace_lifecycle`] (Kubernetes' `NamespaceLifecycle`): nothing is created in a
//!   namespace that does not exist or is terminating, and the system namespaces are never
//!   deleted.

pub mod namespace_lifecycle;

use crate::ApiState;
use crate::error::ApiError;
use crate::request::ResourceRequest;

/// Admits the creation of the object `name` in `req`'s collection (`name` as the client
/// gave it: empty for a `generateName` object, as in Kubernetes' admission attributes).
pub async fn admit_create(state: &ApiState, req: &ResourceRequest, name: &str) -> Result<(), ApiError> {
    namespace_lifecycle::admit_create(state, req, name).await
}

/// Admits the deletion of the object `name` of `req`'s resource.
pub fn admit_delete(req: &ResourceRequest, name: &str) -> Result<(), ApiError> {
    namespace_lifecycle::admit_delete(req, name)
}
