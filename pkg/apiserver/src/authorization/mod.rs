//! Authorization: may this user do this, as kube-apiserver decides it.
//!
//! Every request is first described by its [`Attributes`] (Kubernetes' `RequestInfo`, read
//! from the path, method and query alone, before anything looks the resource up): a
//! resource request (verb, API group, resource, subresource, namespace, name) or a
//! non-resource one (verb and path, e.g. `get /healthz`). Then the modes of
//! `--authorization-mode` are asked in order; the first that allows, allows:
//! - `AlwaysAllow`: everything (the default, for a cluster on loopback);
//! - `Node`: what kubelets may do, by who they are ([`node`]);
//! - `RBAC`: what the user's Roles and ClusterRoles grant ([`rbac`]); members of
//!   `system:masters` may do anything.
//!
//! A refusal is a 403 whose message is Kubernetes' own (`pods is forbidden: User "alice"
//! cannot list resource "pods" in API group "" in the namespace "default"`).
//!
//! Escalation checks on writes of RBAC objects, and which Node, pods and Lease a kubelet may
//! write, are admission plugins ([`crate::admission::escalation`],
//! [`crate::admission::node_restriction`]).

pub mod bootstrap;
pub mod node;
pub mod rbac;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::Method;

use crate::ApiState;
use rkube_server::ClientIdentity;

use crate::authentication::{UserInfo, bearer_token, service_account_user};
use crate::error::ApiError;

/// One authorization mode of `--authorization-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Allows every request.
    AlwaysAllow,
    /// What kubelets may do, by who they are ([`node`]).
    Node,
    /// Role-based access control over the `rbac.authorization.k8s.io` objects.
    Rbac,
}

impl Mode {
    /// Parses a comma-separated `--authorization-mode` (`RBAC`, `AlwaysAllow`, `RBAC,AlwaysAllow`).
    ///
    /// # Errors
    /// A one-line message naming the unknown mode.
    pub fn parse_list(text: &str) -> Result<Vec<Mode>, String> {
        let modes = text
            .split(',')
            .map(str::trim)
            .map(|mode| match mode {
                "AlwaysAllow" => Ok(Mode::AlwaysAllow),
                "Node" => Ok(Mode::Node),
                "RBAC" => Ok(Mode::Rbac),
                other => Err(format!("unknown authorization mode {other:?}: Node, RBAC or AlwaysAllow")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if modes.is_empty() {
            return Err("--authorization-mode names no mode".into());
        }
        Ok(modes)
    }
}

/// What a request asks to do (`authorizer.Attributes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// The verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection` for resources; the lower-case method for other paths.
    pub verb: String,
    /// Whether the path names a resource (else it is a non-resource path).
    pub resource_request: bool,
    /// The request path (for non-resource requests).
    pub path: String,
    /// The API group (`""` for core).
    pub api_group: String,
    /// The API version.
    pub api_version: String,
    /// The resource's plural name.
    pub resource: String,
    /// The subresource, e.g. `log`.
    pub subresource: String,
    /// The namespace, empty for cluster-scoped requests.
    pub namespace: String,
    /// The object's name, when the path names one.
    pub name: String,
}

impl Attributes {
    /// Reads the attributes from the method, path and query (`RequestInfoFactory`).
    pub fn of(method: &Method, path: &str, query: Option<&str>) -> Attributes {
        let mut attrs = Attributes {
            verb: method.as_str().to_ascii_lowercase(),
            resource_request: false,
            path: path.to_string(),
            api_group: String::new(),
            api_version: String::new(),
            resource: String::new(),
            subresource: String::new(),
            namespace: String::new(),
            name: String::new(),
        };
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let rest = match parts.as_slice() {
            ["api", version, rest @ ..] => {
                attrs.api_version = (*version).to_string();
                rest
            }
            ["apis", group, version, rest @ ..] => {
                attrs.api_group = (*group).to_string();
                attrs.api_version = (*version).to_string();
                rest
            }
            _ => return attrs,
        };
        if rest.is_empty() {
            return attrs;
        }
        let mut rest = rest;
        let watch_prefix = rest.first() == Some(&"watch");
        if watch_prefix {
            rest = &rest[1..];
        }
        if rest.first() == Some(&"namespaces") && rest.len() > 1 {
            attrs.namespace = rest[1].to_string();
            if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
                rest = &rest[2..];
            }
        }
        let Some(resource) = rest.first() else { return attrs };
        attrs.resource_request = true;
        attrs.resource = (*resource).to_string();
        attrs.name = rest.get(1).map(|n| (*n).to_string()).unwrap_or_default();
        attrs.subresource = rest.get(2).map(|s| (*s).to_string()).unwrap_or_default();
        let watch = watch_prefix
            || query.is_some_and(|q| {
                form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "watch" && (v == "true" || v == "1"))
            });
        attrs.verb = match *method {
            Method::POST => "create",
            Method::GET | Method::HEAD if watch => "watch",
            Method::GET | Method::HEAD if attrs.name.is_empty() => "list",
            Method::GET | Method::HEAD => "get",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if attrs.name.is_empty() => "deletecollection",
            Method::DELETE => "delete",
            _ => "",
        }
        .to_string();
        // A list or watch of one object by `fieldSelector=metadata.name=<name>` names it, as
        // Kubernetes' RequestInfo reads it (so a rule with resourceNames may allow it).
        if matches!(attrs.verb.as_str(), "list" | "watch")
            && let Some(selector) = query.and_then(|q| {
                form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "fieldSelector").map(|(_, v)| v.into_owned())
            })
            && let Some(name) = selector.strip_prefix("metadata.name=").filter(|n| !n.contains(','))
        {
            attrs.name = name.to_string();
        }
        attrs
    }

    /// Kubernetes' 403 message for `user` doing this.
    pub fn forbidden(&self, user: &UserInfo) -> ApiError {
        let who = &user.name;
        if !self.resource_request {
            return ApiError::Forbidden(format!("forbidden: User {who:?} cannot {} path {:?}", self.verb, self.path));
        }
        let mut resource = self.resource.clone();
        if !self.subresource.is_empty() {
            resource = format!("{resource}/{}", self.subresource);
        }
        let scope = if self.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {:?}", self.namespace)
        };
        let reason = format!(
            "User {who:?} cannot {} resource {resource:?} in API group {:?} {scope}",
            self.verb, self.api_group
        );
        let qualified = if self.api_group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.api_group)
        };
        if self.name.is_empty() {
            ApiError::Forbidden(format!("{qualified} is forbidden: {reason}"))
        } else {
            ApiError::Forbidden(format!("{qualified} {:?} is forbidden: {reason}", self.name))
        }
    }
}

/// Paths that answer anonymous requests even when anonymous requests are off.
const HEALTH_PATHS: [&str; 3] = ["/healthz", "/livez", "/readyz"];

/// The user a request was authenticated as, set by [`filter`] for the handlers.
#[derive(Debug, Clone)]
pub struct RequestUser(pub UserInfo);

tokio::task_local! {
    /// The user of the request being served, for checks deep in the write path (RBAC's
    /// escalation check); unset in the apiserver's own work (bootstrap, namespace cleanup).
    static USER: UserInfo;
}

/// The user of the request this task serves; `None` for the apiserver's own work.
pub fn current_user() -> Option<UserInfo> {
    USER.try_with(Clone::clone).ok()
}

/// Whether RBAC decides this apiserver's requests (it is a mode and `AlwaysAllow` is not
/// asked before it).
pub fn rbac_decides(modes: &[Mode]) -> bool {
    modes.iter().take_while(|m| **m != Mode::AlwaysAllow).any(|m| *m == Mode::Rbac)
}

/// Authenticates and authorizes every request before its handler runs: 401 for bad or
/// missing credentials, 403 when no mode allows it. The user goes on as a
/// [`RequestUser`] extension.
pub async fn filter(State(state): State<Arc<ApiState>>, mut request: Request, next: Next) -> Response {
    let certificate = request.extensions().get::<ClientIdentity>();
    let service_account = match bearer_token(request.headers()).filter(|_| certificate.is_none()) {
        Some(token) => match service_account_user(&state, token).await {
            Ok(user) => user,
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    let authenticated = match service_account {
        Some(user) => Ok(user),
        None => state.config.authentication.authenticate(request.headers(), certificate),
    };
    let user = match authenticated {
        Ok(user) => user,
        // Probes of the health paths carry no credentials: they stay anonymous even with
        // `--anonymous-auth=false`, as Kubernetes' `anonymous.conditions` lets them.
        Err(_)
            if HEALTH_PATHS.contains(&request.uri().path())
                && !request.headers().contains_key(http::header::AUTHORIZATION) =>
        {
            UserInfo::anonymous()
        }
        Err(e) => return e.into_response(),
    };
    if state.config.authorization.first() == Some(&Mode::AlwaysAllow) {
        request.extensions_mut().insert(RequestUser(user.clone()));
        return USER.scope(user, next.run(request)).await;
    }
    let attrs = Attributes::of(request.method(), request.uri().path(), request.uri().query());
    match authorize(&state, &user, &attrs).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(user = %user.name, verb = %attrs.verb, resource = %attrs.resource, path = %attrs.path, "forbidden");
            return attrs.forbidden(&user).into_response();
        }
        Err(e) => return e.into_response(),
    }
    request.extensions_mut().insert(RequestUser(user.clone()));
    USER.scope(user, next.run(request)).await
}

/// Whether any of the configured modes allows `user` to do `attrs`.
///
/// # Errors
/// When the RBAC objects cannot be read.
pub async fn authorize(state: &ApiState, user: &UserInfo, attrs: &Attributes) -> Result<bool, ApiError> {
    for mode in &state.config.authorization {
        let allowed = match mode {
            Mode::AlwaysAllow => true,
            Mode::Node => node::allows(state, user, attrs).await?,
            Mode::Rbac => rbac::allows(state, user, attrs).await?,
        };
        if allowed {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(method: Method, path: &str, query: Option<&str>) -> Attributes {
        Attributes::of(&method, path, query)
    }

    #[test]
    fn paths_read_as_kubernetes_request_info() {
        let a = attrs(Method::GET, "/api/v1/namespaces/default/pods", None);
        assert_eq!(
            (a.verb.as_str(), a.resource.as_str(), a.namespace.as_str(), a.name.as_str()),
            ("list", "pods", "default", "")
        );
        let a = attrs(Method::GET, "/api/v1/namespaces/default/pods", Some("watch=true&resourceVersion=5"));
        assert_eq!(a.verb, "watch");
        let a = attrs(Method::GET, "/api/v1/namespaces/default/pods/web/log", None);
        assert_eq!((a.verb.as_str(), a.name.as_str(), a.subresource.as_str()), ("get", "web", "log"));
        let a = attrs(Method::PATCH, "/apis/apps/v1/namespaces/x/deployments/d/scale", None);
        assert_eq!(
            (a.verb.as_str(), a.api_group.as_str(), a.resource.as_str(), a.subresource.as_str()),
            ("patch", "apps", "deployments", "scale")
        );
        let a = attrs(Method::DELETE, "/api/v1/namespaces/x/configmaps", None);
        assert_eq!(a.verb, "deletecollection");
        let a = attrs(Method::DELETE, "/api/v1/namespaces/x", None);
        assert_eq!((a.resource.as_str(), a.name.as_str(), a.namespace.as_str()), ("namespaces", "x", "x"));
        let a = attrs(Method::GET, "/api/v1/nodes", None);
        assert_eq!((a.verb.as_str(), a.namespace.as_str()), ("list", ""));
        let a = attrs(Method::GET, "/api/v1/namespaces/x/secrets", Some("watch=1&fieldSelector=metadata.name%3Ddb"));
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("watch", "db"));
        for discovery in ["/api", "/api/v1", "/apis", "/apis/apps/v1", "/healthz", "/openapi/v3"] {
            let a = attrs(Method::GET, discovery, None);
            assert!(!a.resource_request, "{discovery}");
            assert_eq!(a.verb, "get");
        }
    }

    #[test]
    fn refusals_read_as_kubernetes_writes_them() {
        let alice = UserInfo { name: "alice".into(), uid: String::new(), groups: vec![] };
        let message = |a: Attributes| a.forbidden(&alice).to_string();
        assert_eq!(
            message(attrs(Method::GET, "/api/v1/namespaces/default/pods", None)),
            r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#
        );
        assert_eq!(
            message(attrs(Method::GET, "/apis/apps/v1/namespaces/default/deployments/web", None)),
            r#"deployments.apps "web" is forbidden: User "alice" cannot get resource "deployments" in API group "apps" in the namespace "default""#
        );
        assert_eq!(
            message(attrs(Method::GET, "/api/v1/namespaces/default/pods/web/log", None)),
            r#"pods "web" is forbidden: User "alice" cannot get resource "pods/log" in API group "" in the namespace "default""#
        );
        assert_eq!(
            message(attrs(Method::DELETE, "/api/v1/nodes/n1", None)),
            r#"nodes "n1" is forbidden: User "alice" cannot delete resource "nodes" in API group "" at the cluster scope"#
        );
        assert_eq!(
            message(attrs(Method::GET, "/metrics", None)),
            r#"forbidden: User "alice" cannot get path "/metrics""#
        );
    }

    #[test]
    fn modes_parse_from_the_flag() {
        assert_eq!(Mode::parse_list("RBAC"), Ok(vec![Mode::Rbac]));
        assert_eq!(Mode::parse_list("RBAC,AlwaysAllow"), Ok(vec![Mode::Rbac, Mode::AlwaysAllow]));
        assert!(Mode::parse_list("Node,Webhook").is_err());
    }
}
