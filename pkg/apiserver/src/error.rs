//! Every failure the API can answer with, and the single place that turns one into a
//! Kubernetes `Status` response with the right code and reason.
//!
//! Handlers return `Result<_, ApiError>`; nothing else writes an error status. Internal
//! detail (etcd messages) goes to the log, not to the client.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};
use rkube_api::FieldError;
use rkube_api::registry::ResourceDef;
use rkube_api::strategy::StrategyError;

/// Identifies the object an error is about, for the message and `Status.details`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// API group (`""` for core).
    pub group: &'static str,
    /// Plural resource, e.g. `pods` (or `pods/binding` for a subresource).
    pub resource: String,
    /// Kind, e.g. `Pod`.
    pub kind: &'static str,
    /// Object name.
    pub name: String,
}

impl Target {
    /// The object `name` of resource `res`.
    pub fn new(res: &ResourceDef, name: &str) -> Self {
        Target { group: res.group, resource: res.plural.to_string(), kind: res.kind, name: name.to_string() }
    }

    /// `pods` or `deployments.apps`, as Kubernetes names a resource in messages.
    pub(crate) fn qualified(&self) -> String {
        if self.group.is_empty() { self.resource.clone() } else { format!("{}.{}", self.resource, self.group) }
    }

    /// `Pod` or `Deployment.apps`, as Kubernetes names a kind in messages (`GroupKind`).
    pub(crate) fn qualified_kind(&self) -> String {
        if self.group.is_empty() { self.kind.to_string() } else { format!("{}.{}", self.kind, self.group) }
    }
}

/// An error the API answers with; converts into a `Status` response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 404: the object does not exist.
    #[error("{} {:?} not found", .0.qualified(), .0.name)]
    NotFound(Target),
    /// 404: no such resource or path.
    #[error("the server could not find the requested resource")]
    NoSuchResource,
    /// 401: the request carries credentials that prove no one (a bad token), or none where
    /// anonymous requests are off.
    #[error("Unauthorized")]
    Unauthorized,
    /// 403: the request is understood but refused (e.g. writing into a terminating namespace).
    #[error("{0}")]
    Forbidden(String),
    /// 405: the resource does not support this verb.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: the object already exists.
    #[error("{} {:?} already exists", .0.qualified(), .0.name)]
    AlreadyExists(Target),
    /// 409: a precondition (resourceVersion, uid, already bound) failed.
    #[error("Operation cannot be fulfilled on {} {:?}: {}", .0.qualified(), .0.name, .1)]
    Conflict(Target, String),
    /// 409: a server-side apply would change fields other managers own; each cause names
    /// one (reason `FieldManagerConflict`, the field as `.spec.replicas`).
    #[error("{message}")]
    ApplyConflict {
        /// Kubernetes' summary (`Apply failed with 1 conflict: ...`).
        message: String,
        /// Each conflict: its message (`conflict with "m" using apps/v1`) and field.
        causes: Vec<(String, String)>,
    },
    /// 410: the resourceVersion is too old.
    #[error("{0}")]
    Expired(String),
    /// 413: the body is larger than the configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// 415: a content type the endpoint does not accept.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: the object breaks validation rules.
    #[error("{} {:?} is invalid: {}", .0.qualified_kind(), .0.name, format_causes(.1))]
    Invalid(Target, Vec<FieldError>),
    /// 504: the resourceVersion asked for is newer than the store's: a client's version from
    /// the future or from another cluster. Retried after a second by client-go, which
    /// recognises it by its cause `ResourceVersionTooLarge`.
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion {
        /// The resourceVersion asked for.
        requested: i64,
        /// The store's current revision.
        current: i64,
    },
    /// 429: an eviction the pod's PodDisruptionBudget does not allow now; the detail (which
    /// budget, how many pods it needs) is the Status's cause `DisruptionBudget`. `kubectl
    /// drain` retries on it.
    #[error("Cannot evict pod as it would violate the pod's disruption budget.")]
    DisruptionBudget(String),
    /// 503: etcd is unavailable; nothing was written.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug; the message is logged, the client sees a generic one.
    #[error("internal error: {0}")]
    Internal(String),
    /// 500 that is not a bug but a refusal Kubernetes words as an internal error
    /// (`NewInternalError`), its reason shown to the client (e.g. an eviction of a pod two
    /// disruption budgets select).
    #[error("Internal error occurred: {0}")]
    InternalRefusal(String),
}

fn format_causes(causes: &[FieldError]) -> String {
    match causes {
        [one] => one.to_string(),
        many => format!("[{}]", many.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
    }
}

impl ApiError {
    /// The HTTP status code.
    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) | ApiError::NoSuchResource => StatusCode::NOT_FOUND,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::AlreadyExists(_) | ApiError::Conflict(..) | ApiError::ApplyConflict { .. } => {
                StatusCode::CONFLICT
            }
            ApiError::Expired(_) => StatusCode::GONE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid(..) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooLargeResourceVersion { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::DisruptionBudget(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) | ApiError::InternalRefusal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `Status.reason`, as Kubernetes spells it.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::NotFound(_) | ApiError::NoSuchResource => "NotFound",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::AlreadyExists(_) => "AlreadyExists",
            ApiError::Conflict(..) | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Expired(_) => "Expired",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Invalid(..) => "Invalid",
            ApiError::TooLargeResourceVersion { .. } => "Timeout",
            ApiError::DisruptionBudget(_) => "TooManyRequests",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::Internal(_) | ApiError::InternalRefusal(_) => "InternalError",
        }
    }

    /// The error as a Kubernetes `Status` object.
    pub fn to_status(&self) -> Status {
        let details = match self {
            ApiError::NotFound(t) | ApiError::AlreadyExists(t) | ApiError::Conflict(t, _) => Some(StatusDetails {
                name: Some(t.name.clone()),
                group: Some(t.group.to_string()).filter(|g| !g.is_empty()),
                kind: Some(t.resource.clone()),
                ..Default::default()
            }),
            ApiError::Invalid(t, causes) => Some(StatusDetails {
                name: Some(t.name.clone()),
                group: Some(t.group.to_string()).filter(|g| !g.is_empty()),
                kind: Some(t.kind.to_string()),
                causes: Some(
                    causes
                        .iter()
                        .map(|c| StatusCause {
                            field: Some(c.field.clone()),
                            message: Some(c.message()),
                            reason: Some(c.reason().to_string()),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ApiError::ApplyConflict { causes, .. } => Some(StatusDetails {
                causes: Some(
                    causes
                        .iter()
                        .map(|(message, field)| StatusCause {
                            reason: Some("FieldManagerConflict".into()),
                            message: Some(message.clone()),
                            field: Some(field.clone()),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ApiError::TooLargeResourceVersion { .. } => Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ResourceVersionTooLarge".into()),
                    message: Some("Too large resource version".into()),
                    field: None,
                }]),
                retry_after_seconds: Some(1),
                ..Default::default()
            }),
            ApiError::InternalRefusal(reason) => Some(StatusDetails {
                causes: Some(vec![StatusCause { reason: None, message: Some(reason.clone()), field: None }]),
                ..Default::default()
            }),
            ApiError::DisruptionBudget(detail) => Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("DisruptionBudget".into()),
                    message: Some(detail.clone()),
                    field: None,
                }]),
                ..Default::default()
            }),
            _ => None,
        };
        let message = match self {
            ApiError::Internal(_) => "an internal error occurred; see the apiserver log".to_string(),
            other => other.to_string(),
        };
        Status {
            code: Some(i32::from(self.code().as_u16())),
            details,
            message: Some(message),
            metadata: Default::default(),
            reason: Some(self.reason().to_string()),
            status: Some("Failure".into()),
        }
    }

    /// The error for a body that failed to decode or validate as `target`.
    pub fn from_strategy(target: Target, err: StrategyError) -> Self {
        match err {
            StrategyError::Decode(msg) => ApiError::BadRequest(format!("error decoding {}: {msg}", target.kind)),
            StrategyError::Invalid(causes) => ApiError::Invalid(target, causes),
        }
    }

    /// The error for a failed storage operation on `target`.
    pub fn from_storage(target: Target, err: rkube_storage::Error) -> Self {
        use rkube_storage::Error as S;
        match err {
            S::NotFound { .. } => ApiError::NotFound(target),
            S::AlreadyExists { .. } => ApiError::AlreadyExists(target),
            S::Conflict { .. } => ApiError::Conflict(target, OBJECT_MODIFIED.into()),
            other => ApiError::from(other),
        }
    }
}

/// The message of a resourceVersion conflict, word for word as Kubernetes sends it.
pub const OBJECT_MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

impl From<rkube_storage::Error> for ApiError {
    fn from(err: rkube_storage::Error) -> Self {
        use rkube_storage::Error as S;
        match err {
            S::Expired { requested, compacted } => {
                ApiError::Expired(format!("too old resource version: {requested} ({compacted})"))
            }
            S::InvalidContinue(why) => ApiError::BadRequest(format!("invalid continue token: {why}")),
            S::FutureRevision { requested, current } => ApiError::TooLargeResourceVersion { requested, current },
            S::TooLarge { size, .. } => ApiError::TooLarge(format!(
                "etcdserver: request is too large: the object is {size} bytes, over what etcd stores in one write"
            )),
            S::Unavailable(why) => {
                tracing::warn!(error = %why, "etcd unavailable");
                ApiError::Unavailable("storage is unavailable (etcd cannot be reached); nothing was changed".into())
            }
            S::NotFound { key } => ApiError::Internal(format!("unexpected not found: {key}")),
            S::AlreadyExists { key } => ApiError::Internal(format!("unexpected already exists: {key}")),
            S::Conflict { key, .. } => ApiError::Internal(format!("unexpected conflict: {key}")),
            S::Internal(why) => ApiError::Internal(why),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "internal error");
        }
        (self.code(), [(http::header::CONTENT_TYPE, "application/json")], status_body(&self.to_status()))
            .into_response()
    }
}

/// A `Status` as kube-apiserver writes it: its fields in Go's order (`kind`, `apiVersion`,
/// `metadata`, `status`, `message`, `reason`, `details`, `code`; inside the details `name`,
/// `group`, `kind`, `uid`, `causes`, `retryAfterSeconds`; in a cause `reason`, `message`,
/// `field`) and a trailing newline, so clients that compare bytes find what they expect.
pub fn status_body(status: &Status) -> Vec<u8> {
    let mut value = serde_json::to_value(status).unwrap_or_default();
    value["kind"] = "Status".into();
    value["apiVersion"] = "v1".into();
    if value.get("metadata").is_none_or(serde_json::Value::is_null) {
        value["metadata"] = serde_json::json!({});
    }
    let mut out = ordered(&value, &STATUS_ORDER);
    out.push('\n');
    out.into_bytes()
}

const STATUS_ORDER: [&str; 8] = ["kind", "apiVersion", "metadata", "status", "message", "reason", "details", "code"];
const DETAILS_ORDER: [&str; 6] = ["name", "group", "kind", "uid", "causes", "retryAfterSeconds"];
const CAUSE_ORDER: [&str; 3] = ["reason", "message", "field"];

/// `value` as compact JSON with the keys of an object in `order` first (the rest after, in
/// their own order); `details` and its `causes` get theirs.
fn ordered(value: &serde_json::Value, order: &[&str]) -> String {
    let serde_json::Value::Object(map) = value else { return value.to_string() };
    let mut keys: Vec<&String> = order.iter().filter_map(|k| map.get_key_value(*k).map(|(k, _)| k)).collect();
    keys.extend(map.keys().filter(|k| !order.contains(&k.as_str())));
    let fields: Vec<String> = keys
        .into_iter()
        .map(|key| {
            let field = &map[key];
            let text = match (key.as_str(), field) {
                ("details", _) => ordered(field, &DETAILS_ORDER),
                ("causes", serde_json::Value::Array(causes)) => {
                    format!("[{}]", causes.iter().map(|c| ordered(c, &CAUSE_ORDER)).collect::<Vec<_>>().join(","))
                }
                _ => field.to_string(),
            };
            format!("{}:{text}", serde_json::Value::String(key.clone()))
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> Target {
        Target { group: "", resource: "pods".into(), kind: "Pod", name: name.into() }
    }

    #[test]
    fn a_status_is_written_in_kube_apiservers_byte_order() {
        let body = status_body(&ApiError::NotFound(pod("x")).to_status());
        assert_eq!(
            String::from_utf8(body).expect("utf-8"),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"pods \\\"x\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"x\",\"kind\":\"pods\"},\"code\":404}\n"
        );
        let invalid =
            status_body(&ApiError::Invalid(pod("x"), vec![FieldError::required("spec.containers", "")]).to_status());
        let text = String::from_utf8(invalid).expect("utf-8");
        assert!(
            text.contains(
                r#""causes":[{"reason":"FieldValueRequired","message":"Required value","field":"spec.containers"}]"#
            ),
            "{text}"
        );
    }

    #[test]
    fn not_found_reads_like_kubernetes() {
        let status = ApiError::NotFound(pod("x")).to_status();
        assert_eq!(status.message.as_deref(), Some("pods \"x\" not found"));
        assert_eq!(status.code, Some(404));
        assert_eq!(status.reason.as_deref(), Some("NotFound"));
    }

    #[test]
    fn invalid_carries_one_cause_per_field() {
        let err = ApiError::Invalid(pod("x"), vec![FieldError::required("spec.containers", "")]);
        assert_eq!(err.to_string(), "Pod \"x\" is invalid: spec.containers: Required value");
        let status = err.to_status();
        assert_eq!(status.code, Some(422));
        let causes = status.details.and_then(|d| d.causes).unwrap_or_default();
        assert_eq!(causes[0].field.as_deref(), Some("spec.containers"));
    }

    #[test]
    fn group_qualifies_the_resource_in_messages() {
        let t = Target { group: "apps", resource: "deployments".into(), kind: "Deployment", name: "web".into() };
        assert_eq!(ApiError::AlreadyExists(t.clone()).to_string(), "deployments.apps \"web\" already exists");
        let causes = vec![FieldError::required("spec.selector", "")];
        assert_eq!(
            ApiError::Invalid(t, causes).to_string(),
            "Deployment.apps \"web\" is invalid: spec.selector: Required value",
            "a kind is qualified by its group"
        );
    }

    use axum::body::Body;
    use http::Method;
    use serde_json::json;

    use crate::testing::{TestApi, assert_status, config_map, core, json_body};

    /// A request that must fail, and the code and reason of the `Status` it must get.
    struct Case {
        what: &'static str,
        method: Method,
        path: String,
        content_type: &'static str,
        body: Vec<u8>,
        code: u16,
        reason: &'static str,
    }

    fn case(what: &'static str, method: Method, path: &str, content_type: &'static str, body: &[u8]) -> Case {
        Case { what, method, path: path.to_string(), content_type, body: body.to_vec(), code: 0, reason: "" }
    }

    impl Case {
        fn is(self, code: u16, reason: &'static str) -> Case {
            Case { code, reason, ..self }
        }
    }

    #[tokio::test]
    async fn every_error_reaches_the_client_as_a_status_with_its_code_and_reason() {
        let api = TestApi::start().await;
        let list = core("default", "configmaps");
        let item = format!("{list}/cm");
        api.create(&list, config_map("cm", json!({}))).await;
        let existing = config_map("cm", json!({})).to_string();
        let invalid = config_map("Not_A_Name", json!({})).to_string();
        let missing = config_map("nope", json!({})).to_string();
        let too_large = vec![b' '; crate::Config::default().max_body_bytes + 1];
        let json = "application/json";
        let (get, post, put, patch, delete) = (Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE);
        let cases = [
            case("missing object", get.clone(), &format!("{list}/nope"), "", b"").is(404, "NotFound"),
            case("update of a missing object", put.clone(), &format!("{list}/nope"), json, missing.as_bytes())
                .is(404, "NotFound"),
            case("unknown resource", get.clone(), "/api/v1/widgets", "", b"").is(404, "NotFound"),
            case("unknown group", get.clone(), "/apis/nope/v1/things", "", b"").is(404, "NotFound"),
            case("path outside the API", get.clone(), "/nowhere", "", b"").is(404, "NotFound"),
            case("existing name", post.clone(), &list, json, existing.as_bytes()).is(409, "AlreadyExists"),
            case("malformed JSON", post.clone(), &list, json, b"{").is(400, "BadRequest"),
            case("not an object", post.clone(), &list, json, b"[]").is(400, "BadRequest"),
            case("wrong field type", post.clone(), &list, json, br#"{"metadata":{"name":"x"},"data":"oops"}"#)
                .is(400, "BadRequest"),
            case("invalid object", post.clone(), &list, json, invalid.as_bytes()).is(422, "Invalid"),
            case("unknown body type", post.clone(), &list, "text/plain", b"hi").is(415, "UnsupportedMediaType"),
            case("unknown patch type", patch, &item, json, b"{}").is(415, "UnsupportedMediaType"),
            case("body over the limit", post.clone(), &list, json, &too_large).is(413, "RequestEntityTooLarge"),
            case("PUT on a collection", put, &list, json, b"{}").is(405, "MethodNotAllowed"),
            case("write to discovery", post, "/api/v1", "", b"").is(405, "MethodNotAllowed"),
            case("bad resourceVersion", get.clone(), &format!("{list}?resourceVersion=abc"), "", b"")
                .is(400, "BadRequest"),
            case("bad limit", get.clone(), &format!("{list}?limit=ten"), "", b"").is(400, "BadRequest"),
            case("bad continue", get, &format!("{list}?continue=garbage"), "", b"").is(400, "BadRequest"),
            case("bad DeleteOptions", delete, &item, json, br#"{"gracePeriodSeconds":"soon"}"#).is(400, "BadRequest"),
        ];
        for Case { what, method, path, content_type, body, code, reason } in cases {
            let headers: &[(&str, &str)] =
                if content_type.is_empty() { &[] } else { &[("content-type", content_type)] };
            let response = api.raw(method, &path, headers, Body::from(body)).await;
            let status = response.status();
            let media = response.headers().get(http::header::CONTENT_TYPE).cloned();
            let reply = json_body(response).await;
            assert_eq!(media.as_ref().and_then(|v| v.to_str().ok()), Some("application/json"), "{what}");
            assert_eq!(status.as_u16(), code, "{what}: {reply}");
            assert_status(status, &reply, code, reason);
        }
    }

    #[tokio::test]
    async fn an_invalid_object_is_a_422_naming_each_field_in_the_causes() {
        let api = TestApi::start().await;
        let bad = config_map("cm", json!({"not a key!": "v", "also bad!": "w"}));
        let (status, reply) = api.post(&core("default", "configmaps"), bad).await;
        assert_status(status, &reply, 422, "Invalid");
        assert_eq!(reply["details"]["kind"], "ConfigMap");
        assert_eq!(reply["details"]["name"], "cm");
        let fields: Vec<_> =
            reply["details"]["causes"].as_array().unwrap().iter().map(|c| c["field"].clone()).collect();
        assert_eq!(fields, [json!("data[also bad!]"), json!("data[not a key!]")], "{reply}");
        assert!(reply["message"].as_str().unwrap().starts_with("ConfigMap \"cm\" is invalid: "), "{reply}");
    }
}
