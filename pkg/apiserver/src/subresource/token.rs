//! `serviceaccounts/<name>/token` (TokenRequest): a token proving the ServiceAccount's
//! identity, signed by the apiserver ([`crate::serviceaccount_token`]), for
//! `expirationSeconds` (default an hour, at least ten minutes) and the requested audiences
//! (default the apiserver's), optionally bound to a pod: deleting the pod (or the
//! ServiceAccount) revokes it.

use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec, TokenRequestStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

use crate::ApiState;
use crate::error::{ApiError, Target};
use crate::metadata::meta_str;
use crate::request::ResourceRequest;
use crate::rest;
use crate::serviceaccount_token::{Claims, KubernetesClaims, ObjectClaim};

/// A token's lifetime when the request names none (Kubernetes' default).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest lifetime a request may ask for.
pub const MIN_EXPIRATION_SECONDS: i64 = 600;

/// POST `serviceaccounts/<name>/token`.
pub async fn create(
    state: &ApiState,
    req: &ResourceRequest,
    name: &str,
    body: Value,
) -> Result<TokenRequest, ApiError> {
    let issuer = state.config.service_account_tokens.as_ref().ok_or_else(|| {
        ApiError::MethodNotAllowed(
            "this apiserver issues no ServiceAccount tokens (start it with --service-account-signing-key-file)".into(),
        )
    })?;
    let request: TokenRequest =
        serde_json::from_value(body).map_err(|e| ApiError::BadRequest(format!("error decoding TokenRequest: {e}")))?;
    let spec = request.spec.unwrap_or_default();
    let target =
        Target { kind: "TokenRequest", resource: "serviceaccounts/token".into(), ..Target::new(req.resource, name) };
    let expiration = spec.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    if expiration < MIN_EXPIRATION_SECONDS {
        let cause = rkube_api::FieldError::invalid(
            "spec.expirationSeconds",
            expiration,
            "may not specify a duration less than 10 minutes",
        );
        return Err(ApiError::Invalid(target, vec![cause]));
    }
    let account_req = ResourceRequest { subresource: None, ..req.clone() };
    let account = rest::get(state, &account_req, name).await?;
    let namespace = req.namespace.clone().unwrap_or_default();
    let pod = match &spec.bound_object_ref {
        None => None,
        Some(bound) if bound.kind.as_deref() == Some("Pod") => {
            let bound_name = bound.name.clone().unwrap_or_default();
            let pods = ResourceRequest {
                resource: &rkube_api::kinds::pod::RESOURCE,
                namespace: req.namespace.clone(),
                name: Some(bound_name.clone()),
                subresource: None,
            };
            let pod = rest::get(state, &pods, &bound_name).await?;
            let uid = meta_str(&pod, "uid").to_string();
            if bound.uid.as_deref().is_some_and(|want| !want.is_empty() && want != uid) {
                return Err(ApiError::Conflict(
                    Target::new(pods.resource, &bound_name),
                    format!(
                        "the UID in the bound object reference ({}) does not match the pod's ({uid})",
                        bound.uid.clone().unwrap_or_default()
                    ),
                ));
            }
            let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default().to_string();
            Some((ObjectClaim { name: bound_name, uid }, node))
        }
        Some(bound) => {
            return Err(ApiError::BadRequest(format!(
                "cannot bind a token to a {}: only a Pod",
                bound.kind.clone().unwrap_or_default()
            )));
        }
    };
    crate::admission::node_restriction::admit_token_request(req, name, pod.as_ref().map(|(_, node)| node.as_str()))?;
    let pod = pod.map(|(claim, _)| claim);
    let audiences = spec.audiences.clone().unwrap_or_default();
    let audiences = if audiences.is_empty() { issuer.audiences.clone() } else { audiences };
    let now = Timestamp::now().as_second();
    let claims = Claims {
        iss: issuer.issuer.clone(),
        aud: audiences.clone(),
        sub: format!("system:serviceaccount:{namespace}:{name}"),
        iat: now,
        nbf: now,
        exp: now + expiration,
        kubernetes: KubernetesClaims {
            namespace: namespace.clone(),
            serviceaccount: ObjectClaim { name: name.to_string(), uid: meta_str(&account, "uid").to_string() },
            pod,
        },
    };
    let token = issuer.sign(&claims).map_err(ApiError::Internal)?;
    let expires = Timestamp::from_second(claims.exp).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut reply = TokenRequest {
        spec: Some(TokenRequestSpec { audiences: Some(audiences), expiration_seconds: Some(expiration), ..spec }),
        status: Some(TokenRequestStatus { token: Some(token), expiration_timestamp: Some(Time(expires)) }),
        ..Default::default()
    };
    reply.metadata.name = Some(name.to_string());
    reply.metadata.namespace = Some(namespace);
    Ok(reply)
}
