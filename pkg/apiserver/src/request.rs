//! Reading a request: which resource and verb a path names (Kubernetes' RequestInfo),
//! its query parameters, what it accepts, and its body within the size limit.

use std::collections::HashMap;

use http::{HeaderMap, Method};
use rkube_api::registry::{self, ResourceDef, Subresource};

use crate::error::ApiError;

/// What an `/api` or `/apis` path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/api/v1` or `/apis/<group>/<version>`: the group version's resource list.
    GroupVersion {
        /// API group.
        group: String,
        /// Version.
        version: String,
    },
    /// A resource collection, object or subresource.
    Resource(ResourceRequest),
}

/// A request for a resource: collection (`name` is `None`), object, or subresource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRequest {
    /// The resource.
    pub resource: &'static ResourceDef,
    /// The namespace in the path; `None` for cluster-scoped resources and all-namespace lists.
    pub namespace: Option<String>,
    /// The object name, if the path names one.
    pub name: Option<String>,
    /// The subresource, if any.
    pub subresource: Option<Subresource>,
}

/// Parses a path under `/api` or `/apis` like Kubernetes' RequestInfoFactory, naming one of
/// the resources `registry` serves.
pub fn parse_path(path: &str, registry: &registry::Registry) -> Result<Target, ApiError> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::NoSuchResource),
    };
    if rest.is_empty() {
        return Ok(Target::GroupVersion { group: group.to_string(), version: version.to_string() });
    }
    let mut rest = rest;
    let mut namespace = None;
    if rest[0] == "namespaces" && rest.len() > 1 {
        namespace = Some(rest[1].to_string());
        // `namespaces/<ns>/status` and `/finalize` are subresources of the namespace itself.
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest = &rest[2..];
        } else {
            namespace = None;
        }
    }
    let resource = registry.lookup(group, version, rest[0]).ok_or(ApiError::NoSuchResource)?;
    let name = rest.get(1).map(|s| (*s).to_string());
    let subresource = match rest.get(2) {
        None => None,
        Some(sub) => {
            Some(resource.subresources.iter().copied().find(|s| s.name() == *sub).ok_or(ApiError::NoSuchResource)?)
        }
    };
    if rest.len() > 3 {
        return Err(ApiError::NoSuchResource);
    }
    match (resource.namespaced, &namespace) {
        // A cluster-scoped resource under a namespace does not exist.
        (false, Some(_)) => return Err(ApiError::NoSuchResource),
        // A namespaced object needs its namespace; only collections may span all of them.
        (true, None) if name.is_some() => return Err(ApiError::NoSuchResource),
        _ => {}
    }
    if let Some(name) = &name
        && !valid_path_segment(name)
    {
        return Err(ApiError::BadRequest(format!("invalid resource name {name:?}")));
    }
    // No object can live in a namespace whose name is not a DNS-1123 label.
    if let Some(namespace) = &namespace
        && (!valid_path_segment(namespace) || !rkube_api::validation::is_dns1123_label(namespace).is_empty())
    {
        return Err(ApiError::BadRequest(format!(
            "invalid namespace {namespace:?}: a namespace is a lowercase RFC 1123 label"
        )));
    }
    Ok(Target::Resource(ResourceRequest { resource, namespace, name, subresource }))
}

fn valid_path_segment(s: &str) -> bool {
    !matches!(s, "." | "..") && !s.contains('%')
}

/// The verb of a resource request, as Kubernetes names it in audit logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// GET an object.
    Get,
    /// GET a collection.
    List,
    /// GET a collection with `watch=true`.
    Watch,
    /// POST to a collection (or to a `binding` subresource).
    Create,
    /// PUT an object.
    Update,
    /// PATCH an object.
    Patch,
    /// DELETE an object.
    Delete,
    /// DELETE a collection.
    DeleteCollection,
}

impl Verb {
    /// The verb from the method, whether an object is named, and the query.
    pub fn of(method: &Method, named: bool, query: &Query) -> Option<Verb> {
        Some(match (method, named) {
            (&Method::GET, true) => Verb::Get,
            (&Method::GET, false) if query.flag("watch") => Verb::Watch,
            (&Method::GET, false) => Verb::List,
            (&Method::POST, _) => Verb::Create,
            (&Method::PUT, true) => Verb::Update,
            (&Method::PATCH, true) => Verb::Patch,
            (&Method::DELETE, true) => Verb::Delete,
            (&Method::DELETE, false) => Verb::DeleteCollection,
            _ => return None,
        })
    }

    /// The lower-case name (`get`, `list`, `watch`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// Query parameters, decoded; unknown ones are ignored like Kubernetes does.
#[derive(Debug, Clone, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = form_urlencoded::parse(raw.unwrap_or_default().as_bytes());
        Query(pairs.map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    /// The same query with `key` set to `value`.
    pub fn with(&self, key: &str, value: String) -> Query {
        let mut query = self.clone();
        query.0.insert(key.to_string(), value);
        query
    }

    /// A parameter's value, if present and not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A boolean parameter, read leniently (`true`, `True`, `1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.0.get(key).map(|v| v.to_ascii_lowercase()).as_deref(), Some("true" | "1"))
    }

    /// An integer parameter; a malformed one is a 400.
    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                v.parse().map(Some).map_err(|_| ApiError::BadRequest(format!("invalid {key} {v:?}: not an integer")))
            }
        }
    }
}

/// How the client wants objects rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendering {
    /// Plain JSON objects and lists.
    Json,
    /// `meta.k8s.io/v1` Table (server-side printing for `kubectl get`).
    Table,
    /// Kubernetes protobuf (`application/vnd.kubernetes.protobuf`), when the client names it
    /// first in `Accept`, as client-go's typed clients do; watches are then length-prefixed
    /// protobuf `WatchEvent` frames (`;stream=watch`).
    Protobuf,
}

impl Rendering {
    /// Reads the `Accept` header: Table when it asks for `as=Table` in `meta.k8s.io`,
    /// protobuf when its first media type is Kubernetes protobuf, else JSON.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let accept = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let wants_table = accept.split(',').any(|media| {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
        });
        let first = accept.split(',').next().and_then(|media| media.split(';').next()).unwrap_or_default();
        if wants_table {
            Rendering::Table
        } else if first.trim().eq_ignore_ascii_case(rkube_protobuf::MEDIA_TYPE) {
            Rendering::Protobuf
        } else {
            Rendering::Json
        }
    }
}

/// The media type of a request body, from `Content-Type` (parameters ignored).
pub fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(path: &str) -> ResourceRequest {
        match parse_path(path, &registry::Registry::new()) {
            Ok(Target::Resource(r)) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn every_registry_resource_is_reachable_by_its_paths() {
        for res in registry::resources() {
            let prefix = res.path_prefix();
            let (collection, object) = if res.namespaced {
                (format!("{prefix}/namespaces/ns1/{}", res.plural), format!("{prefix}/namespaces/ns1/{}/x", res.plural))
            } else {
                (format!("{prefix}/{}", res.plural), format!("{prefix}/{}/x", res.plural))
            };
            let c = resource(&collection);
            assert_eq!((c.resource.plural, c.name), (res.plural, None));
            let o = resource(&object);
            assert_eq!(o.name.as_deref(), Some("x"));
            for sub in res.subresources {
                assert_eq!(resource(&format!("{object}/{}", sub.name())).subresource, Some(*sub));
            }
        }
    }

    #[test]
    fn namespace_status_is_a_subresource_of_the_namespace() {
        let r = resource("/api/v1/namespaces/foo/status");
        assert_eq!(
            (r.resource.plural, r.name.as_deref(), r.subresource),
            ("namespaces", Some("foo"), Some(Subresource::Status))
        );
        let pods = resource("/api/v1/namespaces/foo/pods");
        assert_eq!((pods.resource.plural, pods.namespace.as_deref()), ("pods", Some("foo")));
    }

    #[test]
    fn unknown_resources_and_misplaced_scopes_are_not_found() {
        for path in [
            "/api/v1/widgets",
            "/api/v1/namespaces/a/nodes",
            "/api/v1/pods/x",
            "/apis/apps/v1/namespaces/a/pods",
            "/api/v1/namespaces/a/pods/x/log/extra",
        ] {
            assert!(matches!(parse_path(path, &registry::Registry::new()), Err(ApiError::NoSuchResource)), "{path}");
        }
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let q = Query::parse(Some("labelSelector=app%3Dweb%2Ctier+in+(a)&watch=True&x"));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert!(!q.flag("x"));
    }

    #[test]
    fn table_rendering_needs_the_meta_group() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json".parse().unwrap(),
        );
        assert_eq!(Rendering::from_headers(&h), Rendering::Table);
        h.insert(http::header::ACCEPT, "application/json".parse().unwrap());
        assert_eq!(Rendering::from_headers(&h), Rendering::Json);
        h.insert(http::header::ACCEPT, "application/vnd.kubernetes.protobuf, application/json".parse().unwrap());
        assert_eq!(Rendering::from_headers(&h), Rendering::Protobuf);
        h.insert(http::header::ACCEPT, "application/json, application/vnd.kubernetes.protobuf".parse().unwrap());
        assert_eq!(Rendering::from_headers(&h), Rendering::Json);
    }
}
