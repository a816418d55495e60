//! Who may use the kubelet's API (container logs and exec: reading any container's output
//! and running commands in it), decided as Kubernetes' kubelet does when it serves HTTPS:
//!
//! 1. **Authentication.** A client certificate the `--client-ca-file` CA signed (checked in
//!    the TLS handshake, [`rkube_server::tls`]) names the user (CN) and groups (O). Else a
//!    bearer token is sent to the apiserver in a TokenReview (Kubernetes'
//!    `--authentication-token-webhook`), which answers who it belongs to (a ServiceAccount, a
//!    static token). Neither: 401, unless `--anonymous-auth` makes the caller
//!    `system:anonymous`.
//! 2. **Authorization** (`--authorization-mode`): `Webhook` (the default) asks the apiserver
//!    in a SubjectAccessReview whether the user may `<verb>` the resource `nodes`, name
//!    `<this node>`, subresource `proxy` for logs and exec (`log` for `/logs`), the verb
//!    following the HTTP method (GET → get, POST → create, ...). So RBAC decides: the
//!    apiserver's kubelet client certificate (`system:masters`) may, and so may anyone bound
//!    to a role with `nodes/proxy`. No: 403 with Kubernetes' words. `AlwaysAllow` lets every
//!    authenticated caller in.
//!
//! Answers are cached as the kubelet does: a token for 2 minutes, an allowed decision for 5
//! minutes and a denied one for 30 seconds, so a burst of log requests is one review.
//! Health and metrics stay open: probes and Prometheus carry no credentials.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rkube_client::Client;
use rkube_server::ClientIdentity;
use serde_json::{Value, json};

/// How long a TokenReview's answer is trusted.
const TOKEN_TTL: Duration = Duration::from_secs(120);
/// How long an allowed decision is trusted.
const ALLOWED_TTL: Duration = Duration::from_secs(300);
/// How long a denied decision is trusted.
const DENIED_TTL: Duration = Duration::from_secs(30);
/// Past this many cached answers, expired ones are dropped before another is added.
const CACHE_ENTRIES: usize = 1024;

/// `--authorization-mode` of the kubelet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorizationMode {
    /// Every authenticated caller may do anything.
    AlwaysAllow,
    /// The apiserver decides (SubjectAccessReview).
    Webhook,
}

/// A caller of the kubelet's API.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Caller {
    /// The user name.
    pub user: String,
    /// Its groups.
    pub groups: Vec<String>,
}

/// What a request asks for, in the apiserver's terms.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeRequest {
    /// get, create, update, patch or delete.
    pub verb: &'static str,
    /// The subresource of `nodes`: `proxy`, `log`, ...
    pub subresource: &'static str,
}

/// The kubelet's access control (see the module docs).
pub struct Access {
    client: Client,
    node: String,
    mode: AuthorizationMode,
    anonymous: bool,
    tokens: Mutex<HashMap<String, (Option<Caller>, Instant)>>,
    decisions: Mutex<HashMap<(Caller, NodeRequest), (bool, Instant)>>,
}

impl Access {
    /// Access control for the kubelet of `node`, asking the apiserver through `client`.
    pub fn new(client: Client, node: String, mode: AuthorizationMode, anonymous: bool) -> Access {
        Access { client, node, mode, anonymous, tokens: Mutex::default(), decisions: Mutex::default() }
    }

    /// Who sent the request: its certificate, else its token (TokenReview), else anonymous
    /// when allowed; `None`: 401.
    async fn authenticate(
        &self,
        certificate: Option<ClientIdentity>,
        bearer: Option<String>,
    ) -> Result<Option<Caller>, String> {
        if let Some(identity) = certificate {
            let mut groups = identity.organizations;
            groups.push("system:authenticated".into());
            return Ok(Some(Caller { user: identity.common_name, groups }));
        }
        let Some(token) =
            bearer.as_deref().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).filter(|t| !t.is_empty())
        else {
            let anonymous = Caller { user: "system:anonymous".into(), groups: vec!["system:unauthenticated".into()] };
            return Ok(self.anonymous.then_some(anonymous));
        };
        if let Some((caller, at)) = self.tokens.lock().unwrap_or_else(PoisonError::into_inner).get(token)
            && at.elapsed() < TOKEN_TTL
        {
            return Ok(caller.clone());
        }
        let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}});
        let answer = self.post("/apis/authentication.k8s.io/v1/tokenreviews", &review).await?;
        let status = &answer["status"];
        let caller = (status["authenticated"] == true).then(|| Caller {
            user: status["user"]["username"].as_str().unwrap_or_default().to_string(),
            groups: strings(&status["user"]["groups"]),
        });
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.to_string(), (caller.clone(), Instant::now()));
        Ok(caller)
    }

    /// Whether `caller` may do `what` on this node.
    async fn authorize(&self, caller: &Caller, what: &NodeRequest) -> Result<bool, String> {
        if self.mode == AuthorizationMode::AlwaysAllow {
            return Ok(true);
        }
        let key = (caller.clone(), what.clone());
        if let Some((allowed, at)) = self.decisions.lock().unwrap_or_else(PoisonError::into_inner).get(&key)
            && at.elapsed() < if *allowed { ALLOWED_TTL } else { DENIED_TTL }
        {
            return Ok(*allowed);
        }
        let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
            "user": caller.user, "groups": caller.groups,
            "resourceAttributes": {"verb": what.verb, "resource": "nodes", "subresource": what.subresource, "name": self.node}
        }});
        let answer = self.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", &review).await?;
        let allowed = answer["status"]["allowed"] == true;
        let mut decisions = self.decisions.lock().unwrap_or_else(PoisonError::into_inner);
        if decisions.len() >= CACHE_ENTRIES {
            decisions.retain(|_, (allowed, at)| at.elapsed() < if *allowed { ALLOWED_TTL } else { DENIED_TTL });
        }
        decisions.insert(key, (allowed, Instant::now()));
        Ok(allowed)
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        let request = http::Request::post(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string().into_bytes())
            .map_err(|e| e.to_string())?;
        self.client.request_json(request).await.map_err(|e| format!("asking the apiserver ({path}): {e}"))
    }
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect()
}

/// The attributes of a request to the kubelet's API (Kubernetes' kubelet `GetRequestAttributes`).
pub fn node_request(method: &Method, path: &str) -> NodeRequest {
    let verb = match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "get",
    };
    let subresource = match path.trim_start_matches('/').split('/').next().unwrap_or_default() {
        "logs" => "log",
        "stats" => "stats",
        "metrics" => "metrics",
        "spec" => "spec",
        _ => "proxy",
    };
    NodeRequest { verb, subresource }
}

/// Lets a request through only when its caller is authenticated and authorized (see the
/// module docs).
pub async fn check(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    let certificate = request.extensions().get::<ClientIdentity>().cloned();
    let bearer = request.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(String::from);
    let caller = match access.authenticate(certificate, bearer).await {
        Ok(Some(caller)) => caller,
        Ok(None) => return (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response(),
        Err(error) => {
            tracing::warn!(%error, "cannot authenticate a kubelet API request");
            return (StatusCode::SERVICE_UNAVAILABLE, "cannot reach the apiserver to authenticate\n").into_response();
        }
    };
    let what = node_request(request.method(), request.uri().path());
    match access.authorize(&caller, &what).await {
        Ok(true) => next.run(request).await,
        Ok(false) => {
            let message = format!(
                "Forbidden (user={}, verb={}, resource=nodes, subresource={})\n",
                caller.user, what.verb, what.subresource
            );
            (StatusCode::FORBIDDEN, message).into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "cannot authorize a kubelet API request");
            (StatusCode::SERVICE_UNAVAILABLE, "cannot reach the apiserver to authorize\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_and_exec_are_node_proxy_and_the_method_names_the_verb() {
        let get = node_request(&Method::GET, "/containerLogs/default/web/app");
        assert_eq!(get, NodeRequest { verb: "get", subresource: "proxy" });
        assert_eq!(
            node_request(&Method::POST, "/exec/default/web/app"),
            NodeRequest { verb: "create", subresource: "proxy" }
        );
        assert_eq!(node_request(&Method::GET, "/logs/syslog"), NodeRequest { verb: "get", subresource: "log" });
    }
}
