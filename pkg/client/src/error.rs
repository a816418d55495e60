//! The client's error type: the server's `Status` mapped onto variants callers match on.
//!
//! Every failed request ends as exactly one [`Error`]. A non-2xx response whose body is a
//! `meta/v1 Status` keeps that Status whole (message, reason, details and causes), so a caller
//! can match on the variant and still print what the server said. A non-2xx response whose body
//! is not a Status (a proxy's HTML page, an empty body) still gets a variant chosen by its HTTP
//! code, with a synthesized Status whose message is the start of the body.
//!
//! What this module keeps true:
//! - the variant is chosen by HTTP code first, and by `reason` only where Kubernetes uses one
//!   code for two meanings (409 is `AlreadyExists` or `Conflict`);
//! - nothing the server or the network sends makes this module panic.
//!
//! client-go calls the helpers `apierrors.IsNotFound`, `IsConflict`, ...; here they are methods
//! ([`Error::is_not_found`], [`Error::is_conflict`], ...).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Longest stretch of a non-Status error body kept in a synthesized message.
const BODY_SNIPPET_LIMIT: usize = 512;

/// A failed request, by what the caller can do about it.
///
/// Variants carrying a [`Status`] hold the server's own answer; see [`Error::status`].
/// Retrying is the caller's decision: [`Error::Conflict`] is what
/// [`retry_on_conflict`](crate::retry_on_conflict) retries; [`Error::Unavailable`],
/// [`Error::Timeout`] and [`Error::TooManyRequests`] are usually worth retrying with backoff;
/// the others will fail the same way again.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 404: the object (or the namespace, or the resource) does not exist.
    #[error("not found: {}", message(.0))]
    NotFound(Box<Status>),
    /// 409 with reason `AlreadyExists`: a create found an object with that name.
    #[error("already exists: {}", message(.0))]
    AlreadyExists(Box<Status>),
    /// 409 with any other reason: a stale `resourceVersion` or a failed precondition. Read the
    /// object again and retry (see [`retry_on_conflict`](crate::retry_on_conflict)).
    #[error("conflict: {}", message(.0))]
    Conflict(Box<Status>),
    /// 410 `Expired`: the resourceVersion (of a watch or a continue token) has been compacted
    /// away. Start over with a fresh list.
    #[error("gone: {}", message(.0))]
    Gone(Box<Status>),
    /// 422 `Invalid`: the object failed validation; [`Error::causes`] names each bad field.
    #[error("invalid: {}", message(.0))]
    Invalid(Box<Status>),
    /// 400: the request was malformed. Also used for a request this client refused to send
    /// (invalid parameters, an object that does not serialize), with code 400 in the Status.
    #[error("bad request: {}", message(.0))]
    BadRequest(Box<Status>),
    /// 401: no or wrong credentials.
    #[error("unauthorized: {}", message(.0))]
    Unauthorized(Box<Status>),
    /// 403: credentials accepted, action not allowed.
    #[error("forbidden: {}", message(.0))]
    Forbidden(Box<Status>),
    /// 429: the server asks to slow down (`details.retryAfterSeconds` may say for how long).
    #[error("too many requests: {}", message(.0))]
    TooManyRequests(Box<Status>),
    /// 503 from the server, or the server could not be reached at all.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The client's request timeout elapsed, or the server answered 504.
    #[error("timeout: {0}")]
    Timeout(String),
    /// Any other non-2xx answer (405, 413, 415, 500, ...).
    #[error("api error: {}", message(.0))]
    Api(Box<Status>),
    /// The HTTP exchange failed in a way that is neither a timeout nor a refused connection,
    /// e.g. the connection broke before an answer. For a write the outcome is unknown: read
    /// the object again before deciding.
    #[error("transport error: {0}")]
    Transport(#[source] reqwest::Error),
    /// A 2xx body (or one watch line) that is not the JSON expected.
    #[error("decode error: {0}")]
    Decode(String),
    /// The configuration (kubeconfig, URL, files it names) cannot be used.
    #[error("configuration error: {0}")]
    Config(String),
}

fn message(status: &Status) -> String {
    let text = status.message.as_deref().unwrap_or("");
    match (status.code, status.reason.as_deref()) {
        (Some(code), Some(reason)) if !reason.is_empty() => format!("{text} ({code} {reason})"),
        (Some(code), _) => format!("{text} ({code})"),
        _ => text.to_string(),
    }
}

impl Error {
    /// The server's Status, for the variants that carry one.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Error::NotFound(s)
            | Error::AlreadyExists(s)
            | Error::Conflict(s)
            | Error::Gone(s)
            | Error::Invalid(s)
            | Error::BadRequest(s)
            | Error::Unauthorized(s)
            | Error::Forbidden(s)
            | Error::TooManyRequests(s)
            | Error::Api(s) => Some(s),
            Error::Unavailable(_) | Error::Timeout(_) | Error::Transport(_) | Error::Decode(_) | Error::Config(_) => {
                None
            }
        }
    }

    /// The HTTP code of the answer, when there was one with a Status (or a transport error
    /// that knows its status). `None` for errors that never reached a server answer.
    pub fn code(&self) -> Option<u16> {
        if let Some(status) = self.status() {
            return status.code.and_then(|c| u16::try_from(c).ok());
        }
        match self {
            Error::Transport(e) => e.status().map(|s| s.as_u16()),
            _ => None,
        }
    }

    /// Whether this is a 404 (client-go: `apierrors.IsNotFound`).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }

    /// Whether this is a 409 Conflict, i.e. a stale resourceVersion or a failed precondition
    /// (client-go: `apierrors.IsConflict`). An `AlreadyExists` is not a conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict(_))
    }

    /// Whether a create found an object of that name (client-go: `apierrors.IsAlreadyExists`).
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Error::AlreadyExists(_))
    }

    /// Whether the resourceVersion asked for is compacted away (410; client-go:
    /// `apierrors.IsResourceExpired` / `IsGone`).
    pub fn is_gone(&self) -> bool {
        matches!(self, Error::Gone(_))
    }

    /// The per-field causes of the Status (`details.causes`), empty when there are none.
    pub fn causes(&self) -> Vec<StatusCause> {
        self.status().and_then(|s| s.details.as_ref()).and_then(|d| d.causes.clone()).unwrap_or_default()
    }

    /// A request this client refused to build or send; reported as [`Error::BadRequest`].
    pub(crate) fn request_not_sent(what: impl std::fmt::Display) -> Error {
        Error::BadRequest(Box::new(Status {
            code: Some(400),
            message: Some(format!("request not sent: {what}")),
            reason: Some("BadRequest".into()),
            status: Some("Failure".into()),
            ..Status::default()
        }))
    }

    /// Maps a non-2xx answer onto a variant. `body` is the raw response body.
    pub(crate) fn from_response(code: u16, body: &[u8]) -> Error {
        let status = parse_status(code, body);
        let reason = status.reason.clone().unwrap_or_default();
        let boxed = Box::new(status);
        match code {
            400 => Error::BadRequest(boxed),
            401 => Error::Unauthorized(boxed),
            403 => Error::Forbidden(boxed),
            404 => Error::NotFound(boxed),
            409 if reason == "AlreadyExists" => Error::AlreadyExists(boxed),
            409 => Error::Conflict(boxed),
            410 => Error::Gone(boxed),
            422 => Error::Invalid(boxed),
            429 => Error::TooManyRequests(boxed),
            503 => Error::Unavailable(message(&boxed)),
            504 => Error::Timeout(message(&boxed)),
            _ => Error::Api(boxed),
        }
    }

    /// Maps a transport failure: timeouts and refused connections get their own variants.
    pub(crate) fn from_transport(e: reqwest::Error, what: &str) -> Error {
        if e.is_timeout() {
            Error::Timeout(format!("{what}: {e}"))
        } else if e.is_connect() {
            Error::Unavailable(format!("{what}: cannot connect: {}", error_chain(&e)))
        } else {
            Error::Transport(e)
        }
    }
}

/// `e` and its sources, joined, so "connection refused" is not hidden behind "error sending".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The Status in `body`, or one synthesized from the HTTP code and the start of the body.
fn parse_status(code: u16, body: &[u8]) -> Status {
    let parsed = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .filter(|v| v.get("kind").and_then(|k| k.as_str()) == Some("Status"))
        .and_then(|v| serde_json::from_value::<Status>(v).ok());
    if let Some(mut status) = parsed {
        if status.code.is_none() {
            status.code = Some(i32::from(code));
        }
        return status;
    }
    let reason =
        http::StatusCode::from_u16(code).ok().and_then(|c| c.canonical_reason()).unwrap_or("Unknown").replace(' ', "");
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() {
        format!("the server answered {code} with an empty body")
    } else {
        let snippet: String = text.chars().take(BODY_SNIPPET_LIMIT).collect();
        format!("the server answered {code}: {snippet}")
    };
    Status {
        code: Some(i32::from(code)),
        message: Some(message),
        reason: Some(reason),
        status: Some("Failure".into()),
        ..Status::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_body(code: u16, reason: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("some {reason}"), "reason": reason, "code": code,
        }))
        .unwrap()
    }

    #[test]
    fn each_status_code_maps_onto_its_variant() {
        assert!(Error::from_response(404, &status_body(404, "NotFound")).is_not_found());
        assert!(Error::from_response(409, &status_body(409, "AlreadyExists")).is_already_exists());
        assert!(Error::from_response(409, &status_body(409, "Conflict")).is_conflict());
        assert!(Error::from_response(410, &status_body(410, "Expired")).is_gone());
        assert!(matches!(Error::from_response(422, &status_body(422, "Invalid")), Error::Invalid(_)));
        assert!(matches!(Error::from_response(400, &status_body(400, "BadRequest")), Error::BadRequest(_)));
        assert!(matches!(Error::from_response(401, &status_body(401, "Unauthorized")), Error::Unauthorized(_)));
        assert!(matches!(Error::from_response(403, &status_body(403, "Forbidden")), Error::Forbidden(_)));
        assert!(matches!(Error::from_response(429, &status_body(429, "TooManyRequests")), Error::TooManyRequests(_)));
        assert!(matches!(Error::from_response(503, &status_body(503, "ServiceUnavailable")), Error::Unavailable(_)));
        assert!(matches!(Error::from_response(504, &status_body(504, "Timeout")), Error::Timeout(_)));
        assert!(matches!(Error::from_response(415, &status_body(415, "UnsupportedMediaType")), Error::Api(_)));
        assert!(matches!(Error::from_response(500, &status_body(500, "InternalError")), Error::Api(_)));
    }

    #[test]
    fn a_conflict_keeps_the_servers_status_and_code() {
        let e = Error::from_response(409, &status_body(409, "Conflict"));
        assert_eq!(e.code(), Some(409));
        let status = e.status().unwrap();
        assert_eq!(status.message.as_deref(), Some("some Conflict"));
        assert_eq!(status.reason.as_deref(), Some("Conflict"));
        assert!(e.to_string().contains("some Conflict"), "{e}");
    }

    #[test]
    fn invalid_exposes_its_causes() {
        let body = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid", "code": 422,
            "message": "Pod \"x\" is invalid",
            "details": {"name": "x", "kind": "Pod", "causes": [
                {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers"}
            ]}
        });
        let e = Error::from_response(422, &serde_json::to_vec(&body).unwrap());
        let causes = e.causes();
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field.as_deref(), Some("spec.containers"));
    }

    #[test]
    fn a_non_status_body_still_gives_a_useful_message() {
        let e = Error::from_response(404, b"<html>no such page</html>");
        assert!(e.is_not_found());
        assert_eq!(e.code(), Some(404));
        assert!(e.to_string().contains("no such page"), "{e}");
        assert_eq!(e.status().unwrap().reason.as_deref(), Some("NotFound"));

        let e = Error::from_response(502, b"");
        assert!(matches!(e, Error::Api(_)));
        assert!(e.to_string().contains("empty body"), "{e}");
    }

    #[test]
    fn garbage_bodies_do_not_panic() {
        for body in [&b"\xff\xfe"[..], b"{", b"null", b"[]", br#"{"kind":"Status","code":"x"}"#] {
            let e = Error::from_response(409, body);
            assert!(e.is_conflict());
            assert_eq!(e.code(), Some(409));
        }
        // A huge body is cut short in the message.
        let big = vec![b'a'; 100_000];
        assert!(Error::from_response(500, &big).to_string().len() < 1_000);
    }

    #[test]
    fn a_status_without_a_code_gets_the_http_code() {
        let body = br#"{"kind":"Status","apiVersion":"v1","reason":"NotFound","message":"gone"}"#;
        assert_eq!(Error::from_response(404, body).code(), Some(404));
    }

    #[test]
    fn a_request_not_sent_is_a_bad_request() {
        let e = Error::request_not_sent("limit must be positive");
        assert!(matches!(e, Error::BadRequest(_)));
        assert!(e.to_string().contains("limit must be positive"));
    }
}
