//! The review APIs: questions about access that are answered, never stored (Kubernetes'
//! `authorization.k8s.io` and `authentication.k8s.io` "virtual" resources):
//! - `selfsubjectaccessreviews`: may *I* do this? (`kubectl auth can-i`);
//! - `subjectaccessreviews`: may *this user* do this? (for components that authorize
//!   callers of their own, as a kubelet does);
//! - `selfsubjectrulesreviews`: what may I do in this namespace? (`kubectl auth can-i --list`);
//! - `selfsubjectreviews`: who am I? (`kubectl auth whoami`);
//! - `tokenreviews`: whose is this bearer token? (for components that authenticate callers
//!   of their own, as a kubelet does).
//!
//! Each is a `POST` of the kind's JSON; the answer is the same object with its `status`
//! filled in, `201 Created`. Asking needs the `create` verb on the resource (the bootstrap
//! role `system:basic-user` grants the self reviews to every authenticated user).

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use k8s_openapi::api::authentication::v1::{
    SelfSubjectReview, SelfSubjectReviewStatus, TokenReview, TokenReviewStatus, UserInfo as ReviewUser,
};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, NonResourceRule, ResourceAttributes, ResourceRule, SelfSubjectAccessReview,
    SelfSubjectRulesReview, SubjectAccessReview, SubjectAccessReviewStatus, SubjectRulesReviewStatus,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ApiState;
use crate::authentication::UserInfo;
use crate::authorization::{Attributes, Mode, RequestUser, authorize, rbac};
use crate::decode::{decode_object, read_body};
use crate::error::ApiError;
use crate::request::content_type;

/// The paths served here.
pub const SELF_SUBJECT_ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
/// See [`SELF_SUBJECT_ACCESS_REVIEWS`].
pub const SUBJECT_ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
/// See [`SELF_SUBJECT_ACCESS_REVIEWS`].
pub const SELF_SUBJECT_RULES_REVIEWS: &str = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";
/// See [`SELF_SUBJECT_ACCESS_REVIEWS`].
pub const SELF_SUBJECT_REVIEWS: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
/// See [`SELF_SUBJECT_ACCESS_REVIEWS`].
pub const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// The review resources for discovery: (group, version, plural, kind).
pub const RESOURCES: [(&str, &str, &str, &str); 5] = [
    ("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview"),
    ("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview"),
    ("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview"),
    ("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview"),
    ("authentication.k8s.io", "v1", "tokenreviews", "TokenReview"),
];

async fn decode<T: DeserializeOwned>(
    state: &ApiState,
    headers: &HeaderMap,
    body: Body,
    kind: &str,
) -> Result<T, ApiError> {
    let bytes = read_body(body, headers, state.config.max_body_bytes).await?;
    let value = decode_object(bytes, content_type(headers).as_deref()).await?;
    serde_json::from_value(value).map_err(|e| ApiError::BadRequest(format!("error decoding {kind}: {e}")))
}

fn created(object: &impl Serialize) -> Response {
    match serde_json::to_vec(object) {
        Ok(bytes) => (StatusCode::CREATED, [(http::header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

/// The attributes a review asks about.
fn attributes(
    resource: Option<&ResourceAttributes>,
    non_resource: Option<&NonResourceAttributes>,
) -> Result<Attributes, ApiError> {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    if let Some(r) = resource {
        return Ok(Attributes {
            verb: text(&r.verb),
            resource_request: true,
            path: String::new(),
            api_group: text(&r.group),
            api_version: text(&r.version),
            resource: text(&r.resource),
            subresource: text(&r.subresource),
            namespace: text(&r.namespace),
            name: text(&r.name),
        });
    }
    if let Some(n) = non_resource {
        return Ok(Attributes {
            verb: text(&n.verb),
            resource_request: false,
            path: text(&n.path),
            api_group: String::new(),
            api_version: String::new(),
            resource: String::new(),
            subresource: String::new(),
            namespace: String::new(),
            name: String::new(),
        });
    }
    Err(ApiError::BadRequest("exactly one of resourceAttributes or nonResourceAttributes is required".into()))
}

async fn decide(state: &ApiState, user: &UserInfo, attrs: &Attributes) -> Result<SubjectAccessReviewStatus, ApiError> {
    let allowed = authorize(state, user, attrs).await?;
    // No reason for a denial, as Kubernetes' RBAC (no opinion) gives none: `kubectl auth
    // can-i` then prints a plain `no`.
    let reason = allowed.then(|| "allowed by the configured authorizers".to_string());
    Ok(SubjectAccessReviewStatus { allowed, reason, ..Default::default() })
}

/// POST `selfsubjectaccessreviews`.
pub async fn self_subject_access_review(
    State(state): State<Arc<ApiState>>,
    Extension(RequestUser(user)): Extension<RequestUser>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let answer = async {
        let mut review: SelfSubjectAccessReview = decode(&state, &headers, body, "SelfSubjectAccessReview").await?;
        let attrs = attributes(review.spec.resource_attributes.as_ref(), review.spec.non_resource_attributes.as_ref())?;
        review.status = Some(decide(&state, &user, &attrs).await?);
        Ok::<_, ApiError>(review)
    };
    answer.await.map_or_else(IntoResponse::into_response, |review| created(&review))
}

/// POST `subjectaccessreviews`.
pub async fn subject_access_review(State(state): State<Arc<ApiState>>, headers: HeaderMap, body: Body) -> Response {
    let answer = async {
        let mut review: SubjectAccessReview = decode(&state, &headers, body, "SubjectAccessReview").await?;
        let spec = &review.spec;
        let name = spec.user.clone().unwrap_or_default();
        if name.is_empty() && spec.groups.as_ref().is_none_or(Vec::is_empty) {
            return Err(ApiError::BadRequest("at least one of user or group must be specified".into()));
        }
        let subject = UserInfo {
            name,
            uid: spec.uid.clone().unwrap_or_default(),
            groups: spec.groups.clone().unwrap_or_default(),
        };
        let attrs = attributes(spec.resource_attributes.as_ref(), spec.non_resource_attributes.as_ref())?;
        review.status = Some(decide(&state, &subject, &attrs).await?);
        Ok(review)
    };
    answer.await.map_or_else(IntoResponse::into_response, |review| created(&review))
}

/// POST `selfsubjectrulesreviews`: the rules RBAC grants the caller in `spec.namespace`.
pub async fn self_subject_rules_review(
    State(state): State<Arc<ApiState>>,
    Extension(RequestUser(user)): Extension<RequestUser>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let answer = async {
        let mut review: SelfSubjectRulesReview = decode(&state, &headers, body, "SelfSubjectRulesReview").await?;
        let namespace = review.spec.namespace.clone().unwrap_or_default();
        let all = state.config.authorization.first() == Some(&Mode::AlwaysAllow)
            || user.in_group(crate::authentication::MASTERS);
        let rules = if all {
            vec![
                serde_json::from_value(serde_json::json!({
                    "apiGroups": ["*"], "resources": ["*"], "verbs": ["*"], "nonResourceURLs": ["*"]
                }))
                .map_err(|e| ApiError::Internal(e.to_string()))?,
            ]
        } else {
            rbac::rules_for(&state, &user, &namespace).await?
        };
        let mut status = SubjectRulesReviewStatus { incomplete: false, ..Default::default() };
        for rule in rules {
            if let Some(urls) = rule.non_resource_urls.clone().filter(|u| !u.is_empty()) {
                status
                    .non_resource_rules
                    .push(NonResourceRule { non_resource_urls: Some(urls), verbs: rule.verbs.clone() });
            }
            if rule.resources.as_ref().is_some_and(|r| !r.is_empty()) {
                status.resource_rules.push(ResourceRule {
                    api_groups: rule.api_groups,
                    resource_names: rule.resource_names,
                    resources: rule.resources,
                    verbs: rule.verbs,
                });
            }
        }
        review.status = Some(status);
        Ok::<_, ApiError>(review)
    };
    answer.await.map_or_else(IntoResponse::into_response, |review| created(&review))
}

/// POST `selfsubjectreviews`: the caller's identity.
pub async fn self_subject_review(
    State(state): State<Arc<ApiState>>,
    Extension(RequestUser(user)): Extension<RequestUser>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let answer = async {
        let mut review: SelfSubjectReview = decode(&state, &headers, body, "SelfSubjectReview").await?;
        let uid = Some(user.uid.clone()).filter(|u| !u.is_empty());
        review.status = Some(SelfSubjectReviewStatus {
            user_info: Some(ReviewUser { username: Some(user.name), uid, groups: Some(user.groups), extra: None }),
        });
        Ok::<_, ApiError>(review)
    };
    answer.await.map_or_else(IntoResponse::into_response, |review| created(&review))
}

/// POST `tokenreviews`: whose `spec.token` is, by the same authenticators as a request's
/// bearer token (ServiceAccount tokens, then the token file). An unknown token is an
/// answer (`authenticated: false`), not an error.
pub async fn token_review(State(state): State<Arc<ApiState>>, headers: HeaderMap, body: Body) -> Response {
    let answer = async {
        let mut review: TokenReview = decode(&state, &headers, body, "TokenReview").await?;
        let token = review.spec.token.clone();
        let user = match crate::authentication::service_account_user(&state, &token).await? {
            Some(user) => Some(user),
            None => state.config.authentication.token_user(&token),
        };
        let audiences = state.config.service_account_tokens.as_ref().map(|issuer| issuer.audiences.clone());
        review.status = Some(match user {
            Some(user) => TokenReviewStatus {
                authenticated: Some(true),
                user: Some(ReviewUser {
                    username: Some(user.name),
                    uid: Some(user.uid).filter(|u| !u.is_empty()),
                    groups: Some(user.groups),
                    extra: None,
                }),
                audiences,
                error: None,
            },
            None => TokenReviewStatus { authenticated: Some(false), ..TokenReviewStatus::default() },
        });
        Ok::<_, ApiError>(review)
    };
    answer.await.map_or_else(IntoResponse::into_response, |review| created(&review))
}
