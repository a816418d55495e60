//! Who may use the kubelet's API (container logs and exec: reading any container's output
//! and running commands in it).
//!
//! With `--client-ca-file`, a request must come with a client certificate that CA signed
//! (checked in the TLS handshake, [`rkube_server::tls`]) whose subject is in the group
//! `system:masters`: the apiserver's kubelet client certificate, which the apiserver
//! presents when it proxies `kubectl logs` and `kubectl exec`. Without a certificate the
//! answer is 401, with another identity 403. Kubernetes' kubelet asks the apiserver instead
//! (a SubjectAccessReview on `nodes/proxy`); rkube's accepts only the apiserver for now.
//!
//! Health and metrics stay open: probes and Prometheus carry no certificate.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rkube_server::ClientIdentity;

/// The group whose members may use the API.
pub const ALLOWED_GROUP: &str = "system:masters";

/// Lets a request through only with a client certificate of [`ALLOWED_GROUP`].
pub async fn require_apiserver(request: Request, next: Next) -> Response {
    match request.extensions().get::<ClientIdentity>() {
        None => (StatusCode::UNAUTHORIZED, "Unauthorized: a client certificate is required\n").into_response(),
        Some(identity) if !identity.organizations.iter().any(|o| o == ALLOWED_GROUP) => {
            (StatusCode::FORBIDDEN, format!("Forbidden: user {:?} may not use the kubelet API\n", identity.common_name))
                .into_response()
        }
        Some(_) => next.run(request).await,
    }
}
