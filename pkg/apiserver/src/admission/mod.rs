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
//!   deleted;
//! - [`escalation`] (the RBAC registry's `ConfirmNoEscalation`): nobody grants through a
//!   Role or a binding what they do not hold themselves;
//! - [`node_restriction`] (`NodeRestriction`): a kubelet writes only its own Node, Lease
//!   and the pods bound to it;
//! - [`service_account`] (`ServiceAccount`, mutating): a new pod runs as a ServiceAccount
//!   and gets its credentials mounted.

pub mod escalation;
pub mod namespace_lifecycle;
pub mod node_restriction;
pub mod service_account;

use serde_json::Value;

use crate::ApiState;
use crate::error::ApiError;
use crate::request::ResourceRequest;

/// The mutating plugins on a create: they may change the object before it is decoded,
/// defaulted and validated (Kubernetes runs mutating admission before validation too).
pub async fn mutate_create(state: &ApiState, req: &ResourceRequest, object: &mut Value) -> Result<(), ApiError> {
    service_account::admit_create(state, req, object).await
}

/// Admits the creation of `object` as `name` in `req`'s collection (`name` as the client
/// gave it: empty for a `generateName` object, as in Kubernetes' admission attributes).
pub async fn admit_create(state: &ApiState, req: &ResourceRequest, name: &str, object: &Value) -> Result<(), ApiError> {
    namespace_lifecycle::admit_create(state, req, name).await?;
    node_restriction::admit_write(req, object, None)?;
    escalation::admit(state, req, object).await
}

/// Admits an update of `old` that stores `object`.
pub async fn admit_update(
    state: &ApiState,
    req: &ResourceRequest,
    object: &Value,
    old: &Value,
) -> Result<(), ApiError> {
    node_restriction::admit_write(req, object, Some(old))?;
    escalation::admit(state, req, object).await
}

/// Admits the deletion of the object `name` of `req`'s resource.
pub async fn admit_delete(state: &ApiState, req: &ResourceRequest, name: &str) -> Result<(), ApiError> {
    namespace_lifecycle::admit_delete(req, name)?;
    node_restriction::admit_delete(state, req, name).await
}
