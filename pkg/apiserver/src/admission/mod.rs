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
//!   and gets its credentials mounted;
//! - [`limit_ranger`] (`LimitRanger`, mutating): a new pod's containers get the namespace's
//!   default requests and limits, and stay within its bounds;
//! - [`priority`] (`Priority`, mutating): a new pod's `priorityClassName` becomes its
//!   priority; one global default class; the system classes stay;
//! - [`default_storage_class`] (`DefaultStorageClass`, mutating): a new claim without a
//!   class gets the default StorageClass;
//! - [`resource_quota`] (`ResourceQuota`, last, as in Kubernetes): nothing is created past
//!   the namespace's quotas, and what is created is charged to them.

pub mod default_storage_class;
pub mod escalation;
pub mod limit_ranger;
pub mod namespace_lifecycle;
pub mod node_restriction;
pub mod priority;
pub mod resource_quota;
pub mod service_account;

use serde_json::Value;

use crate::ApiState;
use crate::error::ApiError;
use crate::request::ResourceRequest;

/// The mutating plugins on a create: they may change the object before it is decoded,
/// defaulted and validated (Kubernetes runs mutating admission before validation too).
pub async fn mutate_create(state: &ApiState, req: &ResourceRequest, object: &mut Value) -> Result<(), ApiError> {
    service_account::admit_create(state, req, object).await?;
    limit_ranger::admit_create(state, req, object).await?;
    default_storage_class::admit_create(state, req, object).await?;
    priority::admit_create(state, req, object).await
}

/// Admits the creation of `object` as `name` in `req`'s collection (`name` as the client
/// gave it: empty for a `generateName` object, as in Kubernetes' admission attributes).
/// Quota is charged unless `dry_run`.
pub async fn admit_create(
    state: &ApiState,
    req: &ResourceRequest,
    name: &str,
    object: &Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    namespace_lifecycle::admit_create(state, req, name).await?;
    node_restriction::admit_write(req, object, None)?;
    escalation::admit(state, req, object).await?;
    priority::admit_write(state, req, object).await?;
    resource_quota::admit_create(state, req, object, dry_run).await
}

/// Admits an update of `old` that stores `object`.
pub async fn admit_update(
    state: &ApiState,
    req: &ResourceRequest,
    object: &Value,
    old: &Value,
) -> Result<(), ApiError> {
    node_restriction::admit_write(req, object, Some(old))?;
    escalation::admit(state, req, object).await?;
    priority::admit_write(state, req, object).await
}

/// Admits the deletion of the object `name` of `req`'s resource.
pub async fn admit_delete(state: &ApiState, req: &ResourceRequest, name: &str) -> Result<(), ApiError> {
    namespace_lifecycle::admit_delete(req, name)?;
    priority::admit_delete(req, name)?;
    node_restriction::admit_delete(state, req, name).await
}

/// Every object of `resource` in `namespace` (all of them for cluster-scoped resources), as
/// the plugins that consult other objects read them: like Kubernetes' plugins, which read
/// informers, from the watch cache without asking etcd, once the cache shows this apiserver's
/// last write of `resource` (see [`crate::own_writes`]: an object created through this
/// apiserver just before is seen). Without a cache, or when it does not catch up in time, a
/// consistent list.
async fn list_in(
    state: &ApiState,
    resource: &'static rkube_api::ResourceDef,
    namespace: Option<&str>,
) -> Result<Vec<Value>, ApiError> {
    list_matching(state, resource, namespace, None).await
}

/// One object of `resource`, read as [`list_in`] reads (Kubernetes' plugins use a lister's
/// get): 404 when it does not exist.
async fn get_in(
    state: &ApiState,
    resource: &'static rkube_api::ResourceDef,
    namespace: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    let selector = form_urlencoded::Serializer::new(String::new())
        .append_pair("fieldSelector", &format!("metadata.name={name}"))
        .finish();
    let found = list_matching(state, resource, namespace, Some(&selector)).await?;
    found.into_iter().next().ok_or_else(|| {
        let key = state.keys.object(&resource.storage_name(), namespace, name);
        ApiError::from_storage(crate::error::Target::new(resource, name), rkube_storage::Error::NotFound { key })
    })
}

/// [`list_in`] with extra query parameters (`extra`, already encoded).
async fn list_matching(
    state: &ApiState,
    resource: &'static rkube_api::ResourceDef,
    namespace: Option<&str>,
    extra: Option<&str>,
) -> Result<Vec<Value>, ApiError> {
    let req = ResourceRequest { resource, namespace: namespace.map(String::from), name: None, subresource: None };
    let written = state.own_writes.last(&resource.storage_name());
    let with = |query: String| match extra {
        Some(extra) if query.is_empty() => extra.to_string(),
        Some(extra) => format!("{query}&{extra}"),
        None => query,
    };
    let cached = with(format!("resourceVersion={written}"));
    let listed = match crate::rest::list(state, &req, &crate::request::Query::parse(Some(&cached))).await {
        Err(ApiError::TooLargeResourceVersion { .. }) => {
            crate::rest::list(state, &req, &crate::request::Query::parse(Some(&with(String::new())))).await?
        }
        other => other?,
    };
    listed.items.iter().map(|item| item.decode()).collect()
}

/// The name a pod being created is known by in errors: its name, else its `generateName`.
fn pod_name(pod: &Value) -> &str {
    let meta = |key: &str| pod.pointer(&format!("/metadata/{key}")).and_then(Value::as_str).filter(|n| !n.is_empty());
    meta("name").or_else(|| meta("generateName")).unwrap_or_default()
}
