//! Checks on Kubernetes `Status` error replies: every error the apiserver sends must be a
//! `Status` object whose `code` matches the HTTP status, never plain text.

use reqwest::StatusCode;
use serde_json::Value;

/// Asserts that a reply is a failure `Status` with HTTP status `code` and, unless `reason` is
/// empty, `reason` (e.g. `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `Expired`).
///
/// # Panics
/// When any part differs, showing the whole reply and `context`.
pub fn assert_status(status: StatusCode, body: &Value, code: u16, reason: &str, context: &str) {
    assert_eq!(status.as_u16(), code, "{context}: expected HTTP {code} {reason}, got {status} {body}");
    assert_eq!(body["kind"], "Status", "{context}: error body must be a Status object: {body}");
    assert_eq!(body["apiVersion"], "v1", "{context}: Status apiVersion must be v1: {body}");
    assert_eq!(body["status"], "Failure", "{context}: Status.status must be Failure: {body}");
    assert_eq!(body["code"], code, "{context}: Status.code must match the HTTP status: {body}");
    if !reason.is_empty() {
        assert_eq!(body["reason"], reason, "{context}: Status.reason: {body}");
    }
}

/// Asserts that a reply is a 4xx `Status` (any reason): what every kind of bad input must get.
///
/// # Panics
/// On a 2xx, 5xx or non-`Status` reply, showing `context`.
pub fn assert_client_error(status: StatusCode, body: &Value, context: &str) {
    assert!(status.is_client_error(), "{context}: expected a 4xx, got {status} {body}");
    assert_eq!(body["kind"], "Status", "{context}: error body must be a Status object: {body}");
    assert_eq!(body["code"], status.as_u16(), "{context}: Status.code must match the HTTP status: {body}");
}
